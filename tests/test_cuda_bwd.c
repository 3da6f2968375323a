/*
 * test_cuda_bwd.c: the generated CUDA backward (templates/mta_cuda_bwd.cu,
 * runtime/cuda/bwd.c) run through the CPU emulator (cuda-emu) against the
 * float64 references, through the check-and-time harness (mta_check_bwd:
 * fresh random inputs, the output and every gradient poisoned first, the
 * forward's output and every gradient tensor judged by relative L2 and
 * element by element), directly for determinism, and through the public
 * API; and its source compiled by NVRTC for sm_80 and sm_90 without spills.
 * Problems are small: the emulator runs each block's threads as pthreads.
 */
#include "tests/harness.h"
#include "tests/cpu_util.h"
#include "gen/cuda/cudagen.h"
#include "runtime/core/error.h"
#include "runtime/cuda/driver.h"
#include "runtime/cuda/nvrtc.h"
#include "tuner/measure/check.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/*
 * The emulator's backward of key at (B, T) on the draw seed through
 * mta_check_bwd; the worst gradient's comparison into *c, its rel L2 returned.
 */
static double emu_check_seed(const char *key, int64_t B, int64_t T, int strided,
			     unsigned long long seed, struct mta_compare *c)
{
	const struct mta_backend *be = &mta_backend_cuda_emu;
	struct mta_problem p;
	struct mta_variant v;
	struct mta_device *dev = NULL;
	struct mta_kernel *k = NULL;
	double worst = INFINITY;
	memset(c, 0, sizeof *c);
	if (mta_problem_from_key(key, &p) || mta_variant_default_op(&p, MTA_BACKEND_CUDA, MTA_OP_BWD, &v)) {
		mt_fail(__FILE__, __LINE__, "%s: %s", key, mta_last_error());
		return INFINITY;
	}
	if (be->open(0, 0, &dev) || be->train_load(dev, &p, &v, &k)) {
		mt_fail(__FILE__, __LINE__, "%s: load: %s", key, mta_last_error());
		goto out;
	}
	struct mta_runner r = { be, dev, k, NULL };
	struct mta_check_opts o = { B, T, seed, strided };
	if (mta_check_bwd(&r, &p, &o, c) != MTA_OK) {
		mt_fail(__FILE__, __LINE__, "%s B=%lld T=%lld strided=%d: %s", key, (long long)B,
			(long long)T, strided, mta_last_error());
		goto out;
	}
	worst = c->rel_l2;
	CHECKF(c->n > 0 && worst <= c->tol, "%s: worst gradient rel L2 %g (bound %g)", key, worst,
	       c->tol);
out:
	if (k)
		be->unload(k);
	be->close(dev);
	return worst;
}

/* The same on a fresh draw (the run's seed + salt). */
static double emu_check(const char *key, int64_t B, int64_t T, int strided, unsigned salt)
{
	struct mta_compare c;
	return emu_check_seed(key, B, T, strided, mt_seed() + salt, &c);
}

/*
 * The last block's last task a full tile of rows (T = 32, two tasks, two
 * blocks): its rows fill the workspace to the end, so a layout longer than
 * the size formula writes past the buffer, which the emulator's guards
 * catch. (The workspace once held one row of T floats too few: on a GPU
 * each block then overwrote the next block's q rows.)
 */
TEST(cuda_bwd_emu_full_last_tile_stays_in_its_workspace)
{
	mt_kcache();
	emu_check("h1kv1d8-hpre-post1x2-right-f32", 1, 32, 0, 7);
	emu_check("h2kv1d8-pre2x3-post2x3-gn-gate-f32", 1, 48, 0, 8);
}

/* Each option alone (T=19 and 21: not multiples of the 16-row tile; B=2). */
TEST(cuda_bwd_emu_matches_reference_option_by_option)
{
	mt_kcache();
	static const char *const keys[] = {
		"h2kv2d8-both",
		"h2kv2d8-pre3x3-both",
		"h2kv2d8-pre2x4-left",
		"h2kv2d8-pre3x2-right",
		"h3kv3d8-hpre-both",
		"h2kv2d8-post3x4-left",
		"h4kv4d8-hc2-both",
		"h3kv3d8-hpost-both",
		"h2kv2d8-both-gnr",
		"h2kv2d8-both-gate",
		"h4kv1d8-pre2x3-hpre-both",
	};
	for (size_t i = 0; i < sizeof keys / sizeof keys[0]; i++)
		emu_check(keys[i], 2, 19 + 2 * (int64_t)(i % 2), (int)(i % 3 == 1), (unsigned)i);
}

/* Every option at once, GQA, ragged T, B=2; bf16 and f16 inputs; strided tensors. */
TEST(cuda_bwd_emu_matches_reference_every_option)
{
	mt_kcache();
	double worst = 0;
	static const struct { const char *key; int B, T, strided; } cs[] = {
		{ "h4kv2d16-pre3x3-hpre-post2x3-hc2-both-gnr-gate", 2, 37, 0 },
		{ "h4kv2d16-pre3x4-hpre-post2x3-hpost-left-gn-gate", 2, 35, 1 },
		{ "h4kv1d8-pre4x5-hpre-post3x3-hc2-both-gn-gate-bf16", 1, 33, 0 },
		{ "h4kv2d8-pre2x3-hpre-post2x3-hpost-right-gnr-gate-f16", 2, 17, 1 },
		{ "h2kv1d8-pre3x3-hpre-post3x3-hc2-both-gn-gate", 1, 2, 0 }, /* T shorter than the halos */
	};
	for (size_t i = 0; i < sizeof cs / sizeof cs[0]; i++) {
		double e = emu_check(cs[i].key, cs[i].B, cs[i].T, cs[i].strided, 100 + (unsigned)i);
		if (strstr(cs[i].key, "bf16") == NULL && strstr(cs[i].key, "f16") == NULL)
			worst = e > worst ? e : worst;
	}
	printf("  cuda-emu backward, every option, f32: worst gradient rel L2 %.3g (tolerance %g)\n",
	       worst, mta_tolerance_grad(MTA_F32));
}

/*
 * The draw that once failed (seed 13156729006962281429 + 104): at T=2, two
 * rows shorter than the convolutions' halos, with the group norm, dq's
 * relative L2 error is 1.3e-4, every element within its bound, because
 * an ulp of the inputs moves the reference's dq by about that much. The
 * check holds it to 8x that distance, and says so in tol.
 */
TEST(cuda_bwd_emu_ill_conditioned_draw_judged_on_its_condition)
{
	mt_kcache();
	struct mta_compare c;
	emu_check_seed("h2kv1d8-pre3x3-hpre-post3x3-hc2-both-gn-gate", 1, 2, 0,
		       13156729006962281429ULL + 104, &c);
	CHECKF(c.rel_l2 > mta_tolerance_grad(MTA_F32) && c.tol > c.rel_l2 && c.bad == 0,
	       "rel L2 %g, bound %g, %zu bad", c.rel_l2, c.tol, c.bad);
	printf("  an ill-conditioned draw: dq rel L2 %.3g, bound 8x its condition %.3g\n", c.rel_l2,
	       c.tol);
}

/* One problem's backward twice on the same inputs: the same bits; every element written. */
TEST(cuda_bwd_emu_is_deterministic)
{
	mt_kcache();
	const struct mta_backend *be = &mta_backend_cuda_emu;
	struct mta_problem p;
	struct mta_variant v;
	struct mta_device *dev = NULL;
	struct mta_kernel *k = NULL;
	/* 4 tasks on 4 blocks (T=20: tiles of 16 and 4 rows), each adding into dk, dv, weights */
	REQUIRE(mta_problem_from_key("h4kv2d8-pre3x3-hpre-post2x3-hc2-both-gnr-gate", &p) == MTA_OK);
	REQUIRE(mta_variant_default_op(&p, MTA_BACKEND_CUDA, MTA_OP_BWD, &v) == MTA_OK);
	REQUIRE(be->open(0, 0, &dev) == MTA_OK);
	REQUIRE(be->train_load(dev, &p, &v, &k) == MTA_OK ||
		(mt_fail(__FILE__, __LINE__, "train_load: %s", mta_last_error()), 0));
	const int64_t B = 2, T = 20;
	struct mta_tensor q, kt, vt, o, dout;
	void *qb = mt_tensor(p.dtype, B, T, p.H, p.D, 0, &q);
	void *kb = mt_tensor(p.dtype, B, T, p.Hkv, p.D, 0, &kt);
	void *vb = mt_tensor(p.dtype, B, T, p.Hkv, p.D, 0, &vt);
	void *db = mt_tensor(MTA_F32, B, T, p.H, p.D, 0, &dout);
	struct mta_weights w;
	mt_weights(&p, &w);
	const size_t nq = (size_t)(B * T * p.H * p.D), nkv = (size_t)(B * T * p.Hkv * p.D);
	float *ob = malloc(nq * sizeof *ob), *saved = malloc((size_t)mta_saved_bytes(&p, B, T));
	mta_tensor_init(&o, ob, MTA_F32, B, T, p.H, p.D);
	REQUIRE(be->fwd_save(k, &p, &q, &kt, &vt, &w, &o, saved) == MTA_OK);
	const size_t n[11] = { nq, nkv, nkv, (size_t)(p.H * p.cq * p.ck), (size_t)(p.H * p.H),
			       (size_t)(p.H * p.cq2 * p.ck2), (size_t)(p.H * p.hc), 0, (size_t)p.D,
			       (size_t)p.D, 1 };
	float *g[2][11];
	for (int rep = 0; rep < 2; rep++) {
		for (int i = 0; i < 11; i++) {
			g[rep][i] = n[i] ? malloc(n[i] * sizeof(float)) : NULL;
			for (size_t x = 0; x < n[i]; x++)
				g[rep][i][x] = NAN;
		}
		struct mta_grads gr = { g[rep][0], g[rep][1], g[rep][2], g[rep][3], g[rep][4],
					g[rep][5], g[rep][6], g[rep][7], g[rep][8], g[rep][9],
					g[rep][10] };
		REQUIRE(be->backward(k, &p, &q, &kt, &vt, &w, saved, &dout, &gr) == MTA_OK);
	}
	for (int i = 0; i < 11; i++) {
		for (size_t x = 0; x < n[i]; x++)
			CHECKF(isfinite(g[0][i][x]), "gradient %d element %zu not written", i, x);
		CHECKF(!n[i] || !memcmp(g[0][i], g[1][i], n[i] * sizeof(float)),
		       "gradient %d differs between two runs", i);
		free(g[0][i]);
		free(g[1][i]);
	}
	be->unload(k);
	be->close(dev);
	free(qb);
	free(kb);
	free(vb);
	free(db);
	free(ob);
	free(saved);
	mt_weights_free(&w);
}

/*
 * The check fails a wrong gradient: the emulator's dq and dkq_pre of one
 * run, judged against the reference, pass; with one element of either
 * moved, or dq scaled by 1.0003, they fail.
 */
TEST(cuda_bwd_emu_check_fails_a_wrong_gradient)
{
	mt_kcache();
	const struct mta_backend *be = &mta_backend_cuda_emu;
	struct mta_problem p;
	struct mta_variant v;
	struct mta_device *dev = NULL;
	struct mta_kernel *k = NULL;
	REQUIRE(mta_problem_from_key("h2kv2d8-pre3x3-both", &p) == MTA_OK);
	REQUIRE(mta_variant_default_op(&p, MTA_BACKEND_CUDA, MTA_OP_BWD, &v) == MTA_OK);
	REQUIRE(be->open(0, 0, &dev) == MTA_OK);
	REQUIRE(be->train_load(dev, &p, &v, &k) == MTA_OK ||
		(mt_fail(__FILE__, __LINE__, "train_load: %s", mta_last_error()), 0));
	const int64_t B = 1, T = 21;
	struct mta_tensor q, kt, vt, o, dout;
	void *qb = mt_tensor(p.dtype, B, T, p.H, p.D, 0, &q);
	void *kb = mt_tensor(p.dtype, B, T, p.Hkv, p.D, 0, &kt);
	void *vb = mt_tensor(p.dtype, B, T, p.Hkv, p.D, 0, &vt);
	void *db = mt_tensor(MTA_F32, B, T, p.H, p.D, 0, &dout);
	struct mta_weights w;
	mt_weights(&p, &w);
	const size_t nq = (size_t)(B * T * p.H * p.D), nkv = (size_t)(B * T * p.Hkv * p.D);
	const size_t nk1 = (size_t)(p.H * p.cq * p.ck);
	float *ob = malloc(nq * sizeof *ob), *saved = malloc((size_t)mta_saved_bytes(&p, B, T));
	float *dq = malloc(nq * sizeof *dq), *dk = malloc(nkv * sizeof *dk),
	      *dv = malloc(nkv * sizeof *dv), *dk1 = malloc(nk1 * sizeof *dk1);
	double *eq = malloc(nq * sizeof *eq), *ek = malloc(nkv * sizeof *ek),
	       *ev = malloc(nkv * sizeof *ev), *ek1 = malloc(nk1 * sizeof *ek1);
	mta_tensor_init(&o, ob, MTA_F32, B, T, p.H, p.D);
	struct mta_grads g = { .dq = dq, .dk = dk, .dv = dv, .kq_pre = dk1 };
	struct mta_reference_grads rg = { .dq = eq, .dk = ek, .dv = ev, .kq_pre = ek1 };
	REQUIRE(be->fwd_save(k, &p, &q, &kt, &vt, &w, &o, saved) == MTA_OK);
	REQUIRE(be->backward(k, &p, &q, &kt, &vt, &w, saved, &dout, &g) == MTA_OK);
	REQUIRE(mta_reference_backward(&p, &q, &kt, &vt, &w, &dout, &rg) == MTA_OK);
	CHECK(mta_compare_grad(dq, eq, nq, p.dtype, NULL) == MTA_OK);
	CHECK(mta_compare_grad(dk1, ek1, nk1, p.dtype, NULL) == MTA_OK);
	dk1[4] += 0.01f * (fabsf(dk1[4]) + 1.0f);
	CHECK(mta_compare_grad(dk1, ek1, nk1, p.dtype, NULL) == MTA_EVERIFY);
	const float keep = dq[nq / 2];
	dq[nq / 2] += 0.05f * (fabsf(keep) + 1e-3f) + 1e-3f;
	CHECK(mta_compare_grad(dq, eq, nq, p.dtype, NULL) == MTA_EVERIFY);
	dq[nq / 2] = keep;
	for (size_t x = 0; x < nq; x++)
		dq[x] *= 1.0003f;
	CHECK(mta_compare_grad(dq, eq, nq, p.dtype, NULL) == MTA_EVERIFY);
	be->unload(k);
	be->close(dev);
	free(qb);
	free(kb);
	free(vb);
	free(db);
	free(ob);
	free(saved);
	free(dq);
	free(dk);
	free(dv);
	free(dk1);
	free(eq);
	free(ek);
	free(ev);
	free(ek1);
	mt_weights_free(&w);
}

/* The public API on a cuda-emu context: the forward that saves, then the backward, checked. */
TEST(cuda_bwd_emu_through_the_public_api)
{
	mt_kcache();
	char db[600];
	snprintf(db, sizeof db, "%s/no-such-cuda-bwd.db", mt_tmpdir()); /* no winners: the default */
	struct mta_problem p;
	REQUIRE(mta_problem_from_key("h4kv2d8-pre2x3-hpre-post2x3-hpost-both-gnr-gate", &p) ==
		MTA_OK);
	mta_context *ctx = NULL;
	REQUIRE(mta_context_create(&ctx, db, "cuda-emu", 0) == MTA_OK);
	struct mta_runner r = { NULL, NULL, NULL, ctx };
	struct mta_check_opts o = { 2, 23, mt_seed() + 7, 1 };
	struct mta_compare c;
	CHECKF(mta_check_bwd(&r, &p, &o, &c) == MTA_OK, "context: %s", mta_last_error());
	mta_context_free(ctx);
}

/*
 * The backward's space: every point of a small problem's checked on the
 * emulator against the reference (the variants that differ only in nb share
 * one compiled kernel, so this compiles one per (bq, warps)), at lengths
 * that are multiples of bq (a full last task: the workspace's last row);
 * then grids of 1 to 3 blocks, each taking several tasks in turn, across a
 * batch boundary. Emulator-bound (about 75 s): the sanitizer build runs the
 * same train_load and mta_check_bwd in the option tests above.
 */
TEST_COMPILE_BOUND(cuda_bwd_emu_every_point_of_the_space)
{
	mt_kcache();
	const struct mta_backend *be = &mta_backend_cuda_emu;
	struct mta_problem p;
	struct mta_variant *vs = NULL;
	struct mta_device *dev = NULL;
	size_t n = 0;
	REQUIRE(mta_problem_from_key("h2kv1d8-pre2x3-hpre-post2x3-hc2-both-gn-gate", &p) == MTA_OK);
	REQUIRE(mta_variant_space_op(&p, MTA_BACKEND_CUDA, MTA_OP_BWD, &vs, &n) == MTA_OK);
	CHECK_EQ_INT((int)n, 18); /* bq 8, 16, 32 x warps 4, 8 x nb 66, 132, 264 */
	const size_t nspace = n;
	struct mta_variant *more = realloc(vs, (n + 3) * sizeof *vs);
	REQUIRE(more);
	vs = more;
	for (int nb = 1; nb <= 3; nb++) {
		vs[n] = vs[0];
		vs[n].nb = nb;
		vs[n++].bq = 8 * nb;
	}
	REQUIRE(be->open(0, 0, &dev) == MTA_OK);
	double worst = 0;
	for (size_t i = 0; i < n; i++) {
		char spec[MTA_SPEC_MAX];
		struct mta_kernel *k = NULL;
		struct mta_compare c = { 0 };
		REQUIRE(mta_variant_format(&vs[i], spec, sizeof spec) == MTA_OK);
		CHECKF(mta_variant_check_op(&p, &vs[i], MTA_OP_BWD) == MTA_OK, "%s: %s", spec,
		       mta_last_error());
		if (be->train_load(dev, &p, &vs[i], &k)) {
			mt_fail(__FILE__, __LINE__, "%s: load: %s", spec, mta_last_error());
			continue;
		}
		struct mta_runner r = { be, dev, k, NULL };
		/* the space: 2 x 16, 24 or 32 rows; the small grids: 2 x 27 */
		struct mta_check_opts o = { 2, i < nspace ? 16 + (int64_t)(i % 3) * 8 : 27,
					    mt_seed() + 300 + i, (int)(i % 2) };
		CHECKF(mta_check_bwd(&r, &p, &o, &c) == MTA_OK && c.rel_l2 <= c.tol,
		       "%s T=%lld: %s (rel L2 %g)", spec, (long long)o.T, mta_last_error(), c.rel_l2);
		worst = c.rel_l2 > worst ? c.rel_l2 : worst;
		be->unload(k);
	}
	printf("  cuda-emu backward space: %zu points and 3 small grids, worst gradient rel L2 %.3g\n",
	       nspace, worst);
	be->close(dev);
	free(vs);
}

/* Backward specs: printed and parsed back; nb refused on a forward, bad values named. */
TEST(cuda_bwd_specs_parse_print_and_refuse)
{
	struct mta_problem p;
	struct mta_variant v, w, f;
	char spec[MTA_SPEC_MAX], fs[MTA_SPEC_MAX];
	REQUIRE(mta_problem_from_key("h8kv8d64-pre6x11-hpre-post6x11-hc8-both-gnr-gate", &p) ==
		MTA_OK);
	REQUIRE(mta_variant_default_op(&p, MTA_BACKEND_CUDA, MTA_OP_BWD, &v) == MTA_OK);
	REQUIRE(mta_variant_default(&p, MTA_BACKEND_CUDA, &f) == MTA_OK);
	REQUIRE(mta_variant_format(&v, spec, sizeof spec) == MTA_OK);
	REQUIRE(mta_variant_format(&f, fs, sizeof fs) == MTA_OK);
	CHECKF(strstr(spec, ",nb=132") && !strstr(fs, "nb="), "bwd %s, fwd %s", spec, fs);
	REQUIRE(mta_variant_parse(spec, &w) == MTA_OK);
	CHECK(!memcmp(&v, &w, sizeof v));
	/* bq=32, warps=8: over the forward's accumulator limit here, the backward's own rules hold */
	v.bq = 32;
	v.warps = 8;
	v.nb = 264;
	CHECKF(mta_variant_check_op(&p, &v, MTA_OP_BWD) == MTA_OK, "%s", mta_last_error());
	CHECK(mta_variant_check(&p, &v) == MTA_EINVAL); /* nb: not a forward's */
	CHECK_STR_CONTAINS(mta_last_error(), "nb=264 is a tunable of the cuda bwd alone");
	static const struct { const char *tail, *msg; } bad[] = {
		{ ",nb=0", "nb=0: the cuda backward's grid has 1 to 1024 blocks" },
		{ ",nb=5000", "nb=5000: the cuda backward's grid has 1 to 1024 blocks" },
		{ ",nb=64,nb=64", "'nb' given twice" },
		{ ",nb=x", "nb='x' is not a number" },
		{ ",nbb=3", "unknown cuda tunable 'nbb' (expected bq, bk, hpb, warps, algo, cs, nb "
			    "(bwd only))" },
	};
	for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
		char s2[MTA_SPEC_MAX * 2];
		snprintf(s2, sizeof s2, "%s%s", fs, bad[i].tail);
		int rc = mta_variant_parse(s2, &w);
		if (rc == MTA_OK)
			rc = mta_variant_check_op(&p, &w, MTA_OP_BWD);
		CHECKF(rc == MTA_EINVAL, "%s accepted", s2);
		CHECK_STR_CONTAINS(mta_last_error(), bad[i].msg);
	}
	/* the halo rule: cq-1 + cq2-1 = 10 rows before a task's own */
	w = v;
	w.bq = 8;
	CHECK(mta_variant_check_op(&p, &w, MTA_OP_BWD) == MTA_EINVAL);
	CHECK_STR_CONTAINS(mta_last_error(), "bq=8: a cuda backward task recomputes the "
			   "convolutions' halo rows before its own, cq-1 + cq2-1 (cq=6, cq2=6)");
	w = v;
	w.warps = 32;
	CHECK(mta_variant_check_op(&p, &w, MTA_OP_BWD) == MTA_EINVAL);
	CHECK_STR_CONTAINS(mta_last_error(), "1 to 16 warps");
	w.warps = 16; /* 128 registers a thread: the kernel's 188 would spill */
	CHECK(mta_variant_check_op(&p, &w, MTA_OP_BWD) == MTA_EINVAL);
	CHECK_STR_CONTAINS(mta_last_error(), "fewer than the kernel's 192");
	/* a tunable the backward does not read keeps the default's value */
	w = v;
	w.bk = 64;
	CHECK(mta_variant_check_op(&p, &w, MTA_OP_BWD) == MTA_EINVAL);
	CHECK_STR_CONTAINS(mta_last_error(), "reads only bq, warps and nb: bk must keep");
	/* the forward's generator refuses a backward variant; the backward's a forward one */
	char *src = NULL;
	CHECK(mta_gen_cuda(&p, &v, &src) == MTA_EINVAL && !src);
	CHECK(mta_gen_cuda_bwd(&p, &f, &src) == MTA_EINVAL && !src);
	CHECK_STR_CONTAINS(mta_last_error(), "nb=0");
}

/*
 * Every point of the backward's space compiles with NVRTC for sm_80 and
 * sm_90 with no spill and no stack frame, on the paper's problem (the
 * largest rings and mixing loops); one source per (bq, warps).
 */
TEST_COMPILE_BOUND(cuda_bwd_nvrtc_every_point_without_spills)
{
	static const char *const key = "h16kv16d96-pre6x11-hpre-post6x11-hc16-both-gn-gate-bf16";
	static const char *arch[2] = { "sm_80", "sm_90" };
	struct mta_problem p;
	struct mta_variant *vs = NULL;
	size_t n = 0, nj = 0;
	int maj = 0, min = 0;
	REQUIRE(mta_nvrtc_version(&maj, &min) == MTA_OK || (mt_fail(__FILE__, __LINE__, "%s",
			mta_last_error()), 0));
	REQUIRE(mta_problem_from_key(key, &p) == MTA_OK);
	REQUIRE(mta_variant_space_op(&p, MTA_BACKEND_CUDA, MTA_OP_BWD, &vs, &n) == MTA_OK);
	REQUIRE(n > 0);
	struct mta_nvrtc_job *jobs = calloc(2 * n, sizeof *jobs);
	char **src = calloc(n, sizeof *src);
	REQUIRE(jobs && src);
	for (size_t i = 0; i < n; i++) {
		int dup = 0;
		for (size_t j = 0; j < i; j++)
			dup |= vs[j].bq == vs[i].bq && vs[j].warps == vs[i].warps;
		if (dup)
			continue;
		REQUIRE(mta_gen_cuda_bwd(&p, &vs[i], &src[i]) == MTA_OK);
		for (int a = 0; a < 2; a++) {
			jobs[nj].source = src[i];
			jobs[nj].kernel = MTA_CUDA_BWD_KERNEL;
			jobs[nj].arch = arch[a];
			nj++;
		}
	}
	REQUIRE(mta_nvrtc_compile_batch(jobs, nj, 0) == MTA_OK);
	for (size_t j = 0; j < nj; j++) {
		struct mta_nvrtc_job *x = &jobs[j];
		CHECKF(x->status == MTA_OK && x->cubin_size > 0, "%s: %s", x->arch, x->message);
		CHECKF(x->stats.spill_stores == 0 && x->stats.spill_loads == 0 &&
		       x->stats.stack_bytes == 0, "job %zu spills on %s: %d/%d bytes, stack %d", j,
		       x->arch, x->stats.spill_stores, x->stats.spill_loads, x->stats.stack_bytes);
		int bq = 0, warps = 0;
		const char *d = strstr(x->source, "#define K_BWD_BQ");
		if (d)
			sscanf(d, "#define K_BWD_BQ %d\n#define K_BWD_WARPS %d", &bq, &warps);
		printf("  bq=%d warps=%d %s: %d registers, no spill\n", bq, warps, x->arch,
		       x->stats.registers);
		mta_nvrtc_job_free(x);
	}
	for (size_t i = 0; i < n; i++)
		free(src[i]);
	free(src);
	free(jobs);
	free(vs);
}

/*
 * The backward's source compiles with NVRTC for sm_80 and sm_90 with no
 * spill and no stack frame, on small problems and the paper's, every input
 * type; its dynamic shared memory is what the generator says.
 */
TEST_COMPILE_BOUND(cuda_bwd_nvrtc_compiles_without_spills)
{
	static const char *const keys[] = {
		"h16kv16d96-pre6x11-hpre-post6x11-hc16-both-gn-gate-bf16", /* the paper's */
		"h8kv8d64-pre6x11-hpre-post6x11-hpost-left-gnr-gate", /* f32, linear head_post */
		"h2kv1d32-gate-f16",
	};
	static const char *arch[2] = { "sm_80", "sm_90" };
	int maj = 0, min = 0;
	REQUIRE(mta_nvrtc_version(&maj, &min) == MTA_OK || (mt_fail(__FILE__, __LINE__, "%s",
			mta_last_error()), 0));
	const size_t nk = sizeof keys / sizeof keys[0];
	struct mta_nvrtc_job jobs[2 * 3];
	char *src[3] = { 0 };
	memset(jobs, 0, sizeof jobs);
	for (size_t i = 0; i < nk; i++) {
		struct mta_problem p;
		struct mta_variant v;
		REQUIRE(mta_problem_from_key(keys[i], &p) == MTA_OK);
		REQUIRE(mta_variant_default_op(&p, MTA_BACKEND_CUDA, MTA_OP_BWD, &v) == MTA_OK);
		REQUIRE(mta_gen_cuda_bwd(&p, &v, &src[i]) == MTA_OK);
		for (int a = 0; a < 2; a++) {
			jobs[2 * i + a].source = src[i];
			jobs[2 * i + a].kernel = MTA_CUDA_BWD_KERNEL;
			jobs[2 * i + a].arch = arch[a];
		}
	}
	REQUIRE(mta_nvrtc_compile_batch(jobs, 2 * nk, 0) == MTA_OK);
	for (size_t j = 0; j < 2 * nk; j++) {
		struct mta_nvrtc_job *x = &jobs[j];
		CHECKF(x->status == MTA_OK && x->cubin_size > 0, "%s %s: %s", keys[j / 2], x->arch,
		       x->message);
		if (x->status == MTA_OK) {
			struct mta_problem p;
			struct mta_variant v;
			struct mta_cuda_bwd_dims d;
			REQUIRE(mta_problem_from_key(keys[j / 2], &p) == MTA_OK);
			REQUIRE(mta_variant_default_op(&p, MTA_BACKEND_CUDA, MTA_OP_BWD, &v) == MTA_OK);
			REQUIRE(mta_cuda_bwd_dims(&p, &v, 1, 2048, &d, NULL) == MTA_OK);
			CHECKF(x->stats.spill_stores == 0 && x->stats.spill_loads == 0 &&
			       x->stats.stack_bytes == 0, "%s spills on %s: %d/%d bytes, stack %d",
			       keys[j / 2], x->arch, x->stats.spill_stores, x->stats.spill_loads,
			       x->stats.stack_bytes);
			CHECKF(mta_nvrtc_prune(&x->stats, x->arch, (int)d.threads, d.smem_bytes) ==
			       MTA_OK, "%s pruned on %s: %s", keys[j / 2], x->arch, mta_last_error());
			if (j == 1)
				printf("  paper problem, sm_90: %d registers, %zu bytes of shared memory\n",
				       x->stats.registers, d.smem_bytes);
		}
		mta_nvrtc_job_free(x);
	}
	for (size_t i = 0; i < nk; i++)
		free(src[i]);
}

/*
 * Memory: the workspace grows linearly in T (a block's rows, the blocks'
 * partial dk, dv), and the partials stay under (B - 1 + nb) T rows, where
 * one partial per block over all B T keys took nb B T; the plan gives every
 * block tasks, in order, and its partial rows are what its range reaches.
 */
TEST(cuda_bwd_workspace_is_linear_in_T)
{
	struct mta_problem p;
	struct mta_variant v;
	struct mta_cuda_bwd_dims d1, d2, d4;
	REQUIRE(mta_problem_from_key("h8kv8d64-pre6x11-hpre-post6x11-hc8-both-gnr-gate", &p) ==
		MTA_OK);
	REQUIRE(mta_variant_default_op(&p, MTA_BACKEND_CUDA, MTA_OP_BWD, &v) == MTA_OK);
	REQUIRE(mta_cuda_bwd_dims(&p, &v, 1, 1024, &d1, NULL) == MTA_OK);
	REQUIRE(mta_cuda_bwd_dims(&p, &v, 1, 2048, &d2, NULL) == MTA_OK);
	REQUIRE(mta_cuda_bwd_dims(&p, &v, 1, 4096, &d4, NULL) == MTA_OK);
	CHECK(d4.ws_stride - d2.ws_stride == 2 * (d2.ws_stride - d1.ws_stride));
	CHECK(d4.nb == (unsigned)v.nb && d1.nb == (unsigned)(1024 / v.bq < v.nb ? 1024 / v.bq : v.nb));
	/* a block's rows: a constant number of rows of T, below one T x T matrix */
	CHECKF(d4.ws_stride < 4096LL * 4096, "workspace %lld floats per block at T=4096",
	       d4.ws_stride);
	CHECK(mta_cuda_bwd_dims(&p, &v, 0, 16, &d1, NULL) == MTA_EINVAL);
	struct mta_variant f;
	REQUIRE(mta_variant_default(&p, MTA_BACKEND_CUDA, &f) == MTA_OK);
	CHECK(mta_cuda_bwd_dims(&p, &f, 1, 16, &d1, NULL) == MTA_EINVAL); /* a forward variant: nb 0 */
	/* the plan, over batch sizes and grids */
	static const struct { int B, T, bq, nb; } cs[] = {
		{ 1, 4096, 16, 132 }, { 8, 4096, 16, 132 }, { 3, 100, 16, 7 }, { 2, 5, 16, 132 },
		{ 64, 2048, 32, 264 }, { 1, 33, 32, 2 }, { 1, 4096, 16, 264 },
	};
	for (size_t i = 0; i < sizeof cs / sizeof cs[0]; i++) {
		struct mta_variant b = v;
		struct mta_cuda_bwd_dims d;
		b.bq = cs[i].bq;
		b.nb = cs[i].nb;
		REQUIRE(mta_cuda_bwd_dims(&p, &b, cs[i].B, cs[i].T, &d, NULL) == MTA_OK);
		long long *plan = malloc(sizeof *plan * 2 * (d.nb + 1));
		REQUIRE(plan && mta_cuda_bwd_dims(&p, &b, cs[i].B, cs[i].T, &d, plan) == MTA_OK);
		const long long nblk = (cs[i].T + cs[i].bq - 1) / cs[i].bq, nt = cs[i].B * nblk;
		CHECK(d.ntasks == nt && d.nb == (unsigned)(nt < cs[i].nb ? nt : cs[i].nb));
		CHECK(plan[0] == 0 && plan[d.nb] == nt);
		long long rows = 0;
		for (unsigned w = 0; w < d.nb; w++) {
			CHECKF(plan[w + 1] > plan[w], "case %zu: block %u has no task", i, w);
			CHECK(plan[d.nb + 1 + w] == rows);
			const long long t1 = plan[w + 1] - 1, e1 = (t1 % nblk + 1) * cs[i].bq;
			rows += (t1 / nblk - plan[w] / nblk) * cs[i].T + (e1 < cs[i].T ? e1 : cs[i].T);
		}
		CHECK(plan[2 * d.nb + 1] == rows && d.part_rows == rows);
		CHECKF(rows <= (cs[i].B - 1 + (long long)d.nb) * cs[i].T,
		       "case %zu: %lld partial rows, bound %lld", i, rows,
		       (cs[i].B - 1 + (long long)d.nb) * cs[i].T);
		CHECK(d.part_floats == 2 * rows * p.Hkv * p.D);
		if (i < 2)
			printf("  partial dk, dv at B=%d T=%d nb=%u: %lld rows (%.2f x B T; one per block "
			       "over B T: %u x), %.1f MiB\n", cs[i].B, cs[i].T, d.nb, rows,
			       (double)rows / (cs[i].B * cs[i].T), d.nb,
			       (double)d.part_floats * 4 / (1 << 20));
		free(plan);
	}
}

/*
 * The plan from a shape (runtime/core/cuda_bwd.c, what the host side and an
 * exported library use) is the variant's plan (gen's mta_cuda_bwd_dims):
 * the same sizes and the same cuts for every point of the space's values,
 * at several B and T; a shape no backward has is refused by name.
 */
TEST(cuda_bwd_plan_from_the_shape_is_the_variants)
{
	struct mta_problem p;
	struct mta_variant v;
	REQUIRE(mta_problem_from_key("h4kv2d16-pre3x5-hpre-post2x3-hc2-both-gn-gate", &p) == MTA_OK);
	REQUIRE(mta_variant_default_op(&p, MTA_BACKEND_CUDA, MTA_OP_BWD, &v) == MTA_OK);
	static const int bqs[] = { 8, 16, 32 }, warps[] = { 2, 4, 8 }, nbs[] = { 1, 7, 132 };
	static const int64_t BT[][2] = { { 1, 1 }, { 1, 100 }, { 3, 257 } };
	int n = 0;
	for (int a = 0; a < 3; a++)
		for (int b = 0; b < 3; b++)
			for (int c = 0; c < 3; c++)
				for (int t = 0; t < 3; t++) {
					struct mta_variant x = v;
					struct mta_cuda_bwd_dims dv, ds;
					long long pv[2 * 133], ps[2 * 133];
					x.bq = bqs[a];
					x.warps = warps[b];
					x.nb = nbs[c];
					const struct mta_cuda_bwd_shape s = mta_cuda_bwd_shape_of(&x);
					CHECK(s.bq == x.bq && s.warps == x.warps && s.nb == x.nb);
					REQUIRE(mta_cuda_bwd_dims(&p, &x, BT[t][0], BT[t][1], &dv,
								  pv) == MTA_OK);
					REQUIRE(mta_cuda_bwd_plan(&p, &s, BT[t][0], BT[t][1], &ds, ps) ==
						MTA_OK);
					CHECK(!memcmp(&dv, &ds, sizeof dv));
					CHECK(!memcmp(pv, ps, sizeof *pv * 2 * (dv.nb + 1)));
					n++;
				}
	CHECK(n == 81);
	struct mta_cuda_bwd_dims d;
	const struct mta_cuda_bwd_shape bad[] = { { 0, 4, 132 }, { 16, 0, 132 }, { 16, 4, 0 },
						  { 16, 33, 132 } };
	for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
		CHECK(mta_cuda_bwd_plan(&p, &bad[i], 1, 16, &d, NULL) == MTA_EINVAL);
		CHECK_STR_CONTAINS(mta_last_error(), "expected bq and nb 1 or more, warps 1 to 32");
	}
	const struct mta_cuda_bwd_shape ok = { 16, 4, 132 };
	CHECK(mta_cuda_bwd_plan(&p, &ok, 0, 16, &d, NULL) == MTA_EINVAL);
}

/*
 * One saved state for both backwards: the CPU's saving forward, then the
 * CUDA backward on the emulator, gives the reference's gradients (and the
 * other way round), as mta_saved_bytes' one layout promises.
 */
TEST(cuda_bwd_emu_reads_the_cpu_forwards_saved_state)
{
	mt_kcache();
	const struct mta_backend *bes[2] = { &mta_backend_cpu, &mta_backend_cuda_emu };
	struct mta_problem p;
	REQUIRE(mta_problem_from_key("h4kv2d8-pre2x3-hpre-post2x3-hc2-both-gnr-gate", &p) == MTA_OK);
	struct mta_device *dev[2] = { 0 };
	struct mta_kernel *k[2] = { 0 };
	for (int i = 0; i < 2; i++) {
		struct mta_variant v;
		REQUIRE(mta_variant_default_op(&p, i ? MTA_BACKEND_CUDA : MTA_BACKEND_CPU, MTA_OP_BWD,
					       &v) == MTA_OK);
		REQUIRE(bes[i]->open(0, 1, &dev[i]) == MTA_OK);
		REQUIRE(bes[i]->train_load(dev[i], &p, &v, &k[i]) == MTA_OK ||
			(mt_fail(__FILE__, __LINE__, "train_load: %s", mta_last_error()), 0));
	}
	const int64_t B = 2, T = 18;
	struct mta_tensor q, kt, vt, o, dout;
	void *qb = mt_tensor(p.dtype, B, T, p.H, p.D, 0, &q);
	void *kb = mt_tensor(p.dtype, B, T, p.Hkv, p.D, 0, &kt);
	void *vb = mt_tensor(p.dtype, B, T, p.Hkv, p.D, 0, &vt);
	void *db = mt_tensor(MTA_F32, B, T, p.H, p.D, 0, &dout);
	struct mta_weights w;
	mt_weights(&p, &w);
	const size_t n[11] = { (size_t)(B * T * p.H * p.D), (size_t)(B * T * p.Hkv * p.D),
			       (size_t)(B * T * p.Hkv * p.D), (size_t)(p.H * p.cq * p.ck),
			       (size_t)(p.H * p.H), (size_t)(p.H * p.cq2 * p.ck2),
			       (size_t)(p.H * p.hc), 0, (size_t)p.D, (size_t)p.D, 1 };
	float *g[11] = { 0 }, *ob = malloc(n[0] * sizeof *ob);
	double *e[11] = { 0 }, *m[11] = { 0 };
	for (int i = 0; i < 11; i++) {
		g[i] = n[i] ? malloc(n[i] * sizeof(float)) : NULL;
		e[i] = n[i] ? malloc(n[i] * sizeof(double)) : NULL;
		m[i] = n[i] ? malloc(n[i] * sizeof(double)) : NULL;
	}
	struct mta_grads gr = { g[0], g[1], g[2], g[3], g[4], g[5], g[6], g[7], g[8], g[9], g[10] };
	struct mta_reference_grads mg = { m[0], m[1], m[2], m[3], m[4], m[5], m[6], m[7], m[8],
					  m[9], m[10], NULL };
	struct mta_reference_grads rg = { e[0], e[1], e[2], e[3], e[4], e[5], e[6], e[7], e[8],
					  e[9], e[10], &mg };
	REQUIRE(mta_reference_backward(&p, &q, &kt, &vt, &w, &dout, &rg) == MTA_OK);
	const size_t sb = (size_t)mta_saved_bytes(&p, B, T);
	float *saved = malloc(sb);
	mta_tensor_init(&o, ob, MTA_F32, B, T, p.H, p.D);
	for (int f = 0; f < 2; f++) {
		memset(saved, 0xff, sb); /* NaN: a value the forward skipped shows */
		REQUIRE(bes[f]->fwd_save(k[f], &p, &q, &kt, &vt, &w, &o, saved) == MTA_OK);
		for (int i = 0; i < 11; i++)
			for (size_t x = 0; x < n[i]; x++)
				g[i][x] = NAN;
		REQUIRE(bes[1 - f]->backward(k[1 - f], &p, &q, &kt, &vt, &w, saved, &dout, &gr) ==
			MTA_OK);
		for (int i = 0; i < 11; i++)
			CHECKF(!n[i] || mta_compare_grad_mag(g[i], e[i], m[i], n[i], p.dtype, NULL) == MTA_OK,
			       "%s forward, %s backward: gradient %d: %s", bes[f]->name,
			       bes[1 - f]->name, i, mta_last_error());
	}
	for (int i = 0; i < 2; i++) {
		bes[i]->unload(k[i]);
		bes[i]->close(dev[i]);
	}
	for (int i = 0; i < 11; i++) {
		free(g[i]);
		free(e[i]);
		free(m[i]);
	}
	free(qb);
	free(kb);
	free(vb);
	free(db);
	free(ob);
	free(saved);
	mt_weights_free(&w);
}

/*
 * The cuda backend's backward: without a GPU, a context refuses with
 * MTA_ENODEV (the same answer as the forward's); on a GPU machine, the
 * saving forward and the backward through a context against the references
 * (every option, GQA, ragged T, B=2; then bf16), and two runs bit-identical.
 */
TEST(cuda_bwd_on_the_gpu)
{
	mta_context *ctx = NULL;
	int n = 0;
	int have = mta_cuda_device_count(&n) == MTA_OK;
	int rc = mta_context_create(&ctx, NULL, "cuda", 0);
	if (!have) {
		CHECK_EQ_INT(rc, MTA_ENODEV);
		CHECK(ctx == NULL);
		return;
	}
	REQUIRE(rc == MTA_OK || (mt_fail(__FILE__, __LINE__, "%s", mta_last_error()), 0));
	static const char *const keys[] = { "h4kv2d32-pre3x5-hpre-post3x3-hc2-both-gnr-gate",
					    "h4kv1d64-pre2x3-hpre-post2x3-hpost-left-gn-gate-bf16" };
	for (size_t i = 0; i < 2; i++) {
		struct mta_problem p;
		struct mta_runner r = { .ctx = ctx };
		struct mta_check_opts co = { 2, 301, mt_seed() + i, (int)i };
		struct mta_compare cmp;
		REQUIRE(mta_problem_from_key(keys[i], &p) == MTA_OK);
		CHECKF(mta_check_bwd(&r, &p, &co, &cmp) == MTA_OK, "%s: %s", keys[i],
		       mta_last_error());
		printf("  GPU backward %s: worst gradient rel L2 %.3g\n", keys[i], cmp.rel_l2);
	}
	/* the same bits twice: blocks run concurrently on a GPU, unlike on the emulator */
	struct mta_problem p;
	REQUIRE(mta_problem_from_key(keys[0], &p) == MTA_OK);
	const int64_t B = 2, T = 301;
	struct mta_tensor q, kt, vt, o, dout;
	void *qb = mt_tensor(p.dtype, B, T, p.H, p.D, 0, &q);
	void *kb = mt_tensor(p.dtype, B, T, p.Hkv, p.D, 0, &kt);
	void *vb = mt_tensor(p.dtype, B, T, p.Hkv, p.D, 0, &vt);
	void *db = mt_tensor(MTA_F32, B, T, p.H, p.D, 0, &dout);
	struct mta_weights w;
	mt_weights(&p, &w);
	const size_t nq = (size_t)(B * T * p.H * p.D), nkv = (size_t)(B * T * p.Hkv * p.D);
	const size_t nw = (size_t)(p.H * p.cq * p.ck);
	float *ob = malloc(nq * sizeof *ob), *saved = malloc((size_t)mta_saved_bytes(&p, B, T));
	float *g[2][5];
	mta_tensor_init(&o, ob, MTA_F32, B, T, p.H, p.D);
	REQUIRE(mta_forward_train(ctx, &p, &q, &kt, &vt, &w, &o, saved) == MTA_OK);
	for (int rep = 0; rep < 2; rep++) {
		for (int i = 0; i < 5; i++)
			g[rep][i] = malloc((i == 0 ? nq : i < 3 ? nkv : i == 3 ? nw : 64 * 64) *
					   sizeof(float));
		struct mta_grads gr = { g[rep][0], g[rep][1], g[rep][2], g[rep][3], g[rep][4],
					g[rep][4] + 16 * 16, g[rep][4] + 2 * 16 * 16, NULL,
					g[rep][4] + 3 * 16 * 16, g[rep][4] + 3 * 16 * 16 + 64,
					g[rep][4] + 3 * 16 * 16 + 128 };
		REQUIRE(mta_backward(ctx, &p, &q, &kt, &vt, &w, saved, &dout, &gr) == MTA_OK);
	}
	CHECK(!memcmp(g[0][0], g[1][0], nq * sizeof(float)));
	CHECK(!memcmp(g[0][1], g[1][1], nkv * sizeof(float)));
	CHECK(!memcmp(g[0][2], g[1][2], nkv * sizeof(float)));
	CHECK(!memcmp(g[0][3], g[1][3], nw * sizeof(float)));
	for (int rep = 0; rep < 2; rep++)
		for (int i = 0; i < 5; i++)
			free(g[rep][i]);
	free(qb);
	free(kb);
	free(vb);
	free(db);
	free(ob);
	free(saved);
	mt_weights_free(&w);
	mta_context_free(ctx);
}

/*
 * Random problems on the emulator: every option on or off, random sizes and
 * lengths (a fresh draw each run). Not drawn: group norm with a post-softmax
 * weight whose whole gradient lies along its own direction (one element, or
 * T = 1), which float32 cannot resolve (test_cpu_bwd.c: degenerate()).
 */
TEST(cuda_bwd_emu_matches_reference_random_problems)
{
	mt_kcache();
	for (int n = 0; n < 3; n++) {
		struct mta_problem p;
		int64_t T = 1 + (int64_t)((mt_uniform() + 1) * 20);
		int hkv = 1 + (int)((mt_uniform() + 1) * 1.5) % 2;
		int H = hkv * (1 + (int)((mt_uniform() + 1)) % 2);
		mta_problem_init(&p, H, hkv, 4 + 4 * ((int)((mt_uniform() + 1) * 2) % 3));
		p.pad = (int)((mt_uniform() + 1) * 1.5) % 3;
		if (mt_uniform() > -0.3) {
			p.cq = 1 + (int)((mt_uniform() + 1) * 2) % 4;
			p.ck = (1 + (int)((mt_uniform() + 1) * 2) % 4) | (p.pad == MTA_PAD_BOTH);
		}
		p.head_pre = mt_uniform() > 0;
		if (mt_uniform() > -0.3) {
			p.cq2 = 1 + (int)((mt_uniform() + 1) * 2) % 4;
			p.ck2 = (1 + (int)((mt_uniform() + 1) * 2) % 4) | (p.pad == MTA_PAD_BOTH);
		}
		double hp = mt_uniform();
		if (hp > 0.3) {
			p.head_post = MTA_HPOST_LINEAR;
		} else if (hp > -0.3 && H % 2 == 0) {
			p.head_post = MTA_HPOST_CONV;
			p.hc = 2;
		}
		p.gn = mt_uniform() > 0;
		p.gn_rescale = p.gn && mt_uniform() > 0;
		p.gate = mt_uniform() > 0;
		const int post = p.cq2 || p.head_post;
		if (p.gn && post &&
		    (T == 1 || (p.cq2 && p.cq2 * p.ck2 == 1) ||
		     (p.head_post == MTA_HPOST_LINEAR && p.H == 1) ||
		     (p.head_post == MTA_HPOST_CONV && p.hc == 1))) {
			n--; /* draw again */
			continue;
		}
		char key[MTA_KEY_MAX];
		REQUIRE(mta_problem_key(&p, key, sizeof key) == MTA_OK);
		emu_check(key, 1 + (n % 2), T, n == 1, 200 + (unsigned)n);
	}
}
