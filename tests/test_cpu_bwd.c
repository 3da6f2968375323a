/*
 * test_cpu_bwd.c: the generated CPU backward (templates/mta_cpu_bwd.c through
 * runtime/cpu/cpu_bwd.c) against the float64 references.
 *
 * Every case draws fresh random inputs (never zeros), poisons the output,
 * the saved state and every gradient with NaN first, runs the saving
 * forward (its output judged by mta_compare against mta_reference) and the
 * backward, and judges every gradient tensor the problem has with
 * mta_compare_grad against mta_reference_backward: relative L2 and every
 * element. Problems cover each option alone and all together, the three
 * key paddings, both kinds of post-softmax head mixing, GQA, the layer
 * rescale, the three input types, strided inputs, lengths shorter than the
 * halos and than a block, and several block sizes and thread counts. The
 * harness's backward check (mta_check_bwd) is exercised on a backend kernel
 * and on a context.
 */
#include "tests/harness.h"
#include "tests/cpu_util.h"
#include "runtime/cpu/cpu_bwd.h"
#include "runtime/core/error.h"
#include "gen/cpu/cgen.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

enum { G_Q, G_K, G_V, G_KQ_PRE, G_HEAD_PRE, G_KQ_POST, G_HEAD_POST, G_HPL, G_GN, G_GW, G_GB,
       G_COUNT };
static const char *const gname[G_COUNT] = { "dq", "dk", "dv", "dkq_pre", "dhead_pre",
					    "dkq_post", "dhead_post", "dhead_post_linear",
					    "dgn_weight", "dgate_w", "dgate_b" };

/* Elements of each gradient for p at B, T; 0 when p does not use it. */
static size_t gcount(const struct mta_problem *p, int64_t B, int64_t T, int i)
{
	size_t bt = (size_t)B * (size_t)T;
	switch (i) {
	case G_Q: return bt * (size_t)(p->H * p->D);
	case G_K:
	case G_V: return bt * (size_t)(p->Hkv * p->D);
	case G_KQ_PRE: return (size_t)(p->H * p->cq * p->ck);
	case G_HEAD_PRE: return p->head_pre ? (size_t)(p->H * p->H) : 0;
	case G_KQ_POST: return (size_t)(p->H * p->cq2 * p->ck2);
	case G_HEAD_POST: return p->head_post == MTA_HPOST_CONV ? (size_t)(p->H * p->hc) : 0;
	case G_HPL: return p->head_post == MTA_HPOST_LINEAR ? (size_t)(p->H * p->H) : 0;
	case G_GN: return p->gn ? (size_t)p->D : 0;
	case G_GW: return p->gate ? (size_t)p->D : 0;
	case G_GB: return p->gate ? 1 : 0;
	}
	return 0;
}

/* One problem's inputs, outputs and gradients, kernel and reference. */
struct run {
	struct mta_problem p;
	int64_t B, T;
	void *qb, *kb, *vb;
	struct mta_tensor q, k, v, o, dout;
	struct mta_weights w;
	float *ob, *dob, *saved;
	float *g[G_COUNT];
	double *e[G_COUNT], *m[G_COUNT]; /* the reference and its terms' magnitudes */
	struct mta_grads grads;
	struct mta_reference_grads rg, mg; /* rg.mag is &mg */
};

static float *poisoned(size_t n)
{
	float *x = malloc((n ? n : 1) * sizeof *x);
	for (size_t i = 0; x && i < (n ? n : 1); i++)
		x[i] = NAN;
	return x;
}

static void run_setup(struct run *r, const char *key, int64_t B, int64_t T, int strided)
{
	memset(r, 0, sizeof *r);
	REQUIRE(mta_problem_from_key(key, &r->p) == MTA_OK);
	const struct mta_problem *p = &r->p;
	r->B = B;
	r->T = T;
	r->qb = mt_tensor(p->dtype, B, T, p->H, p->D, strided, &r->q);
	r->kb = mt_tensor(p->dtype, B, T, p->Hkv, p->D, strided, &r->k);
	r->vb = mt_tensor(p->dtype, B, T, p->Hkv, p->D, strided, &r->v);
	r->dob = mt_tensor(MTA_F32, B, T, p->H, p->D, strided, &r->dout);
	mt_weights(p, &r->w);
	size_t no = gcount(p, B, T, G_Q);
	r->ob = poisoned(no);
	mta_tensor_init(&r->o, r->ob, MTA_F32, B, T, p->H, p->D);
	r->saved = poisoned((size_t)mta_saved_bytes(p, B, T) / sizeof(float));
	for (int i = 0; i < G_COUNT; i++) {
		size_t n = gcount(p, B, T, i);
		r->g[i] = n ? poisoned(n) : NULL;
		r->e[i] = n ? malloc(n * sizeof(double)) : NULL;
		r->m[i] = n ? malloc(n * sizeof(double)) : NULL;
	}
	r->grads = (struct mta_grads){ r->g[G_Q], r->g[G_K], r->g[G_V], r->g[G_KQ_PRE],
				       r->g[G_HEAD_PRE], r->g[G_KQ_POST], r->g[G_HEAD_POST],
				       r->g[G_HPL], r->g[G_GN], r->g[G_GW], r->g[G_GB] };
	r->mg = (struct mta_reference_grads){ r->m[G_Q], r->m[G_K], r->m[G_V], r->m[G_KQ_PRE],
					      r->m[G_HEAD_PRE], r->m[G_KQ_POST], r->m[G_HEAD_POST],
					      r->m[G_HPL], r->m[G_GN], r->m[G_GW], r->m[G_GB], NULL };
	r->rg = (struct mta_reference_grads){ r->e[G_Q], r->e[G_K], r->e[G_V], r->e[G_KQ_PRE],
					      r->e[G_HEAD_PRE], r->e[G_KQ_POST], r->e[G_HEAD_POST],
					      r->e[G_HPL], r->e[G_GN], r->e[G_GW], r->e[G_GB], &r->mg };
}

static void run_free(struct run *r)
{
	free(r->qb);
	free(r->kb);
	free(r->vb);
	free(r->dob);
	free(r->ob);
	free(r->saved);
	mt_weights_free(&r->w);
	for (int i = 0; i < G_COUNT; i++) {
		free(r->g[i]);
		free(r->e[i]);
		free(r->m[i]);
	}
}

/*
 * Load (key, spec) and run the saving forward and the backward on r with
 * nthreads; judge o and every gradient. Returns the worst relative L2 error
 * of the gradients (INFINITY when a step failed).
 */
static double check_run(struct run *r, const char *spec, int nthreads)
{
	struct mta_variant v;
	struct mta_cpu_bwd *k = NULL;
	char key[MTA_KEY_MAX];
	double worst = INFINITY;
	mta_problem_key(&r->p, key, sizeof key);
	if (spec ? mta_variant_parse(spec, &v) : mta_variant_default(&r->p, MTA_BACKEND_CPU, &v)) {
		mt_fail(__FILE__, __LINE__, "%s: variant %s: %s", key, spec, mta_last_error());
		return INFINITY;
	}
	char vs[MTA_SPEC_MAX];
	mta_variant_format(&v, vs, sizeof vs);
	if (mta_cpu_bwd_load(&r->p, &v, &k)) {
		mt_fail(__FILE__, __LINE__, "%s %s: load: %s", key, vs, mta_last_error());
		return INFINITY;
	}
	size_t no = gcount(&r->p, r->B, r->T, G_Q);
	double *eo = malloc(no * sizeof *eo);
	struct mta_compare c;
	if (mta_cpu_fwd_save(k, &r->p, &r->q, &r->k, &r->v, &r->w, &r->o, r->saved, nthreads, NULL)) {
		mt_fail(__FILE__, __LINE__, "%s %s: forward: %s", key, vs, mta_last_error());
		goto out;
	}
	if (mta_reference(&r->p, &r->q, &r->k, &r->v, &r->w, eo) ||
	    mta_compare(r->ob, eo, no, r->p.dtype, &c)) {
		mt_fail(__FILE__, __LINE__, "%s %s B=%lld T=%lld thr=%d: forward output: %s", key, vs,
			(long long)r->B, (long long)r->T, nthreads, mta_last_error());
		goto out;
	}
	if (mta_cpu_bwd_run(k, &r->p, &r->q, &r->k, &r->v, &r->w, r->saved, &r->dout, &r->grads,
			    nthreads, NULL)) {
		mt_fail(__FILE__, __LINE__, "%s %s: backward: %s", key, vs, mta_last_error());
		goto out;
	}
	if (mta_reference_backward(&r->p, &r->q, &r->k, &r->v, &r->w, &r->dout, &r->rg)) {
		mt_fail(__FILE__, __LINE__, "%s: reference backward: %s", key, mta_last_error());
		goto out;
	}
	worst = 0;
	for (int i = 0; i < G_COUNT; i++) {
		size_t n = gcount(&r->p, r->B, r->T, i);
		if (!n)
			continue;
		if (mta_compare_grad_mag(r->g[i], r->e[i], r->m[i], n, r->p.dtype, &c)) {
			mt_fail(__FILE__, __LINE__, "%s %s B=%lld T=%lld thr=%d: gradient %s: %s", key,
				vs, (long long)r->B, (long long)r->T, nthreads, gname[i],
				mta_last_error());
			worst = INFINITY;
		} else if (c.rel_l2 > worst) {
			worst = c.rel_l2;
		}
	}
out:
	free(eo);
	mta_cpu_bwd_free(k);
	return worst;
}

/* check_run on fresh inputs of (key, B, T); the worst error, also held against the tolerance. */
static double check_case(const char *key, const char *spec, int64_t B, int64_t T, int strided,
			 int nthreads)
{
	struct run r;
	run_setup(&r, key, B, T, strided);
	double e = check_run(&r, spec, nthreads);
	CHECKF(e <= mta_tolerance_grad(r.p.dtype), "%s: worst gradient rel L2 %g", key, e);
	run_free(&r);
	return e;
}

TEST(cpu_bwd_matches_reference_option_by_option)
{
	mt_kcache();
	static const char *const keys[] = {
		"h2kv2d8-both",
		"h2kv2d8-pre3x3-both",
		"h2kv2d8-pre2x4-left",
		"h2kv2d8-pre3x2-right",
		"h3kv3d8-hpre-both",
		"h2kv2d8-post2x3-both",
		"h2kv2d8-post3x4-left",
		"h4kv4d8-hc2-both",
		"h3kv3d8-hpost-both",
		"h2kv2d8-both-gn",
		"h2kv2d8-both-gnr",
		"h2kv2d8-both-gate",
		"h4kv2d8-both",
		"h4kv1d8-pre2x3-hpre-both",
		"h2kv2d8-pre2x3-both-s0.7",
	};
	for (size_t i = 0; i < sizeof keys / sizeof keys[0]; i++)
		check_case(keys[i], NULL, 2, 19, 0, 2);
}

TEST(cpu_bwd_matches_reference_every_option)
{
	mt_kcache();
	static const char *const keys[] = {
		"h4kv2d16-pre3x3-hpre-post2x3-hc2-both-gnr-gate",
		"h4kv2d16-pre3x4-hpre-post2x3-hpost-left-gn-gate",
		"h4kv2d16-pre3x4-hpre-post2x3-hc4-right-gnr-gate-s0.4",
		"h4kv1d8-pre4x5-hpre-post3x3-hc2-both-gn-gate",
	};
	double worst = 0;
	for (size_t i = 0; i < sizeof keys / sizeof keys[0]; i++) {
		double e = check_case(keys[i], NULL, 2, 45, 0, 2);
		worst = e > worst ? e : worst;
	}
	printf("  every option, f32: worst gradient rel L2 %.3g (tolerance %g)\n", worst,
	       mta_tolerance_grad(MTA_F32));
}

TEST(cpu_bwd_matches_reference_half_precision_and_strided)
{
	mt_kcache();
	check_case("h4kv2d16-pre3x3-hpre-post2x3-hc2-both-gnr-gate-bf16", NULL, 1, 33, 0, 2);
	check_case("h4kv2d16-pre2x3-hpre-post2x3-hpost-left-gn-gate-f16", NULL, 2, 21, 1, 2);
	check_case("h4kv2d8-pre3x3-hpre-post2x3-hc2-both-gnr-gate", NULL, 2, 30, 1, 1);
}

/*
 * Why some cases are not drawn. Group norm makes the loss invariant to the
 * scale of each post-softmax weight (scaling kq_post, head_post or
 * head_post_linear scales o, which the norm undoes), so the gradient along
 * the weight itself is about 1e-5 (the norm's eps) times its terms: a
 * cancellation float32 cannot resolve. A gradient lies wholly along that
 * direction when the weight has one element, or at T = 1 (one probability,
 * 1). Its rel L2 error is then noise over a near-zero norm, as it would be
 * in any float32 backward; mta_reference_backward's tests cover these cases
 * in double.
 */
static int degenerate(const struct mta_problem *p, int64_t T)
{
	int post = p->cq2 || p->head_post;
	return p->gn && post &&
	       (T == 1 || (p->cq2 && p->cq2 * p->ck2 == 1) ||
		(p->head_post == MTA_HPOST_LINEAR && p->H == 1) ||
		(p->head_post == MTA_HPOST_CONV && p->hc == 1));
}

/* Lengths around the halos and the block, blocks of several sizes, 1 to 3 threads. */
TEST(cpu_bwd_matches_reference_blocks_lengths_threads)
{
	mt_kcache();
	static const char *const specs[] = { "cpu:v2,bq=1,hpb=0", "cpu:v2,bq=5,hpb=0",
					     "cpu:v2,bq=16,hpb=0", "cpu:v1,bq=64,hpb=0" };
	static const int64_t Ts[] = { 1, 2, 4, 7, 17, 70 };
	for (size_t s = 0; s < sizeof specs / sizeof specs[0]; s++)
		for (size_t t = 0; t < sizeof Ts / sizeof Ts[0]; t++)
			/* T=1 without the group norm: see degenerate() */
			check_case(Ts[t] == 1 ? "h2kv1d8-pre3x3-hpre-post3x3-hc2-both-gate"
					      : "h2kv1d8-pre3x3-hpre-post3x3-hc2-both-gn-gate",
				   specs[s], 1 + (int64_t)(t % 2), Ts[t], 0, 1 + (int)(t % 3));
}

/*
 * The register blocks of the template at a head size that fills them (D=64:
 * four d-vectors of 16), lengths that leave every kind of tail: groups of 8
 * rows cut by the task's end (bq=13, 64), rows and key columns past the
 * last block of 4, a partial chunk of 64 key columns with a whole vector
 * and single columns after it (T=150), GQA (two heads per k, v row).
 */
TEST(cpu_bwd_matches_reference_register_blocks)
{
	mt_kcache();
	static const char *const specs[] = { "cpu:v2,bq=13,hpb=0", "cpu:v2,bq=64,hpb=0" };
	for (size_t s = 0; s < sizeof specs / sizeof specs[0]; s++) {
		check_case("h4kv2d64-pre3x5-hpre-post2x3-hc2-both-gn-gate", specs[s], 1, 150, 0, 2);
		check_case("h2kv2d20-pre2x3-post2x2-left-gate", specs[s], 2, 37, 0, 1 + (int)s);
	}
}

/*
 * Random problems: every option on or off, random sizes. Compile-bound: six
 * fresh kernels for the C compiler each run (about 38 s); under the
 * sanitizer the same loader and harness run in the tests above, and the
 * reference's backward on random problems in
 * reference_bwd_matches_finite_differences_random_problems.
 */
TEST_COMPILE_BOUND(cpu_bwd_matches_reference_random_problems)
{
	mt_kcache();
	for (int n = 0; n < 6; n++) {
		struct mta_problem p;
		int64_t T = 1 + (int64_t)((mt_uniform() + 1) * 20);
		int hkv = 1 + (int)((mt_uniform() + 1) * 1.5) % 3, H = hkv * (1 + (int)((mt_uniform() + 1)) % 2);
		mta_problem_init(&p, H, hkv, 4 + 4 * ((int)((mt_uniform() + 1) * 2) % 4));
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
		if (degenerate(&p, T)) {
			n--; /* draw again */
			continue;
		}
		char key[MTA_KEY_MAX];
		REQUIRE(mta_problem_key(&p, key, sizeof key) == MTA_OK);
		check_case(key, NULL, 1 + (n % 2), T, n % 3 == 0, 1 + n % 2);
	}
}

/* Two runs on the same inputs give the same bits; so does a second kernel load. */
TEST(cpu_bwd_is_deterministic)
{
	mt_kcache();
	struct run r;
	run_setup(&r, "h4kv2d16-pre3x3-hpre-post2x3-hc2-both-gnr-gate", 2, 64, 0);
	struct mta_variant v;
	REQUIRE(mta_variant_parse("cpu:v2,bq=8,hpb=0", &v) == MTA_OK);
	struct mta_cpu_bwd *k = NULL;
	REQUIRE(mta_cpu_bwd_load(&r.p, &v, &k) == MTA_OK);
	REQUIRE(mta_cpu_fwd_save(k, &r.p, &r.q, &r.k, &r.v, &r.w, &r.o, r.saved, 3, NULL) == MTA_OK);
	float *first[G_COUNT] = { 0 };
	for (int rep = 0; rep < 2; rep++) {
		for (int i = 0; i < G_COUNT; i++) /* poison again: a skipped write would show */
			for (size_t x = 0; x < gcount(&r.p, r.B, r.T, i); x++)
				r.g[i][x] = NAN;
		REQUIRE(mta_cpu_bwd_run(k, &r.p, &r.q, &r.k, &r.v, &r.w, r.saved, &r.dout, &r.grads,
					3, NULL) == MTA_OK);
		for (int i = 0; i < G_COUNT; i++) {
			size_t n = gcount(&r.p, r.B, r.T, i);
			if (!n)
				continue;
			for (size_t x = 0; x < n; x++)
				CHECKF(isfinite(r.g[i][x]), "%s[%zu] not written", gname[i], x);
			if (rep == 0) {
				first[i] = malloc(n * sizeof(float));
				memcpy(first[i], r.g[i], n * sizeof(float));
			} else {
				CHECKF(!memcmp(first[i], r.g[i], n * sizeof(float)),
				       "gradient %s differs between two runs", gname[i]);
			}
		}
	}
	for (int i = 0; i < G_COUNT; i++)
		free(first[i]);
	mta_cpu_bwd_free(k);
	run_free(&r);
}

/*
 * mta_compare_grad_mag: where the terms cancel by less than 1/MTA_GRAD_CANCEL
 * it is mta_compare_grad, same verdicts and numbers; a sum of -6e-3 from
 * terms of magnitude 91 (the gate bias gradient that failed a correct
 * kernel: 8e-7 off, 1e-8 of its terms) passes, while the same sum off by
 * one term in a thousand fails, and NaN fails.
 */
TEST(cpu_bwd_checker_judges_cancelling_sums_by_their_terms)
{
	const size_t n = 1000;
	float *o = malloc(n * sizeof *o);
	double *e = malloc(n * sizeof *e), *m = malloc(n * sizeof *m);
	for (size_t i = 0; i < n; i++) {
		e[i] = mt_uniform();
		m[i] = fabs(e[i]) * (1 + 99 * fabs(mt_uniform())); /* cancelling by < 100x */
		o[i] = (float)e[i];
	}
	o[17] += 0.01f;
	struct mta_compare a, b;
	CHECK(mta_compare_grad(o, e, n, MTA_F32, &a) == MTA_EVERIFY);
	CHECK(mta_compare_grad_mag(o, e, m, n, MTA_F32, &b) == MTA_EVERIFY);
	CHECK(a.rel_l2 == b.rel_l2 && a.bad == b.bad && a.worst == b.worst && a.rms == b.rms);
	o[17] = (float)e[17];
	CHECK(mta_compare_grad_mag(o, e, m, n, MTA_F32, NULL) == MTA_OK);
	CHECK(mta_compare_grad_mag(o, e, NULL, n, MTA_F32, &b) == MTA_OK);

	double e1 = -0.00606925, m1 = 90.7649;
	float o1 = -0.00607005f;
	CHECK(mta_compare_grad(&o1, &e1, 1, MTA_F32, NULL) == MTA_EVERIFY);
	CHECK(mta_compare_grad_mag(&o1, &e1, &m1, 1, MTA_F32, NULL) == MTA_OK);
	o1 = (float)(e1 + m1 / 1000);
	CHECK(mta_compare_grad_mag(&o1, &e1, &m1, 1, MTA_F32, NULL) == MTA_EVERIFY);
	CHECK_STR_CONTAINS(mta_last_error(), "terms' magnitudes");
	o1 = NAN;
	CHECK(mta_compare_grad_mag(&o1, &e1, &m1, 1, MTA_F32, NULL) == MTA_EVERIFY);
	free(o);
	free(e);
	free(m);
}

/*
 * A correct kernel on a sum that cancels: batch 1 nearly mirrors batch 0
 * (its inputs, dout negated and scaled by 1 + 2^-10), so every weight's
 * gradient is about 1e-3 of its terms' magnitudes and judged on them; the
 * CPU backward passes every check (judged against |e| alone, it failed on
 * dkq_post at 1.5e-4 and dhead_post at 3.3e-4).
 */
TEST(cpu_bwd_passes_on_cancelling_weight_gradients)
{
	mt_kcache();
	struct run r;
	const int64_t T = 37;
	run_setup(&r, "h2kv1d8-pre3x3-hpre-post3x3-hc2-both-gn-gate", 2, T, 0);
	const size_t rq = (size_t)T * (size_t)(r.p.H * r.p.D), rk = (size_t)T * (size_t)(r.p.Hkv * r.p.D);
	REQUIRE(r.q.dtype == MTA_F32);
	memcpy((float *)r.qb + rq, r.qb, rq * sizeof(float));
	memcpy((float *)r.kb + rk, r.kb, rk * sizeof(float));
	memcpy((float *)r.vb + rk, r.vb, rk * sizeof(float));
	for (size_t x = 0; x < rq; x++)
		r.dob[rq + x] = -r.dob[x] * (1.0f + 0x1p-10f);
	double worst = check_run(&r, NULL, 2);
	CHECKF(worst <= mta_tolerance_grad(r.p.dtype), "worst gradient rel L2 %g", worst);
	CHECKF(fabs(r.e[G_GB][0]) < 1e-2 * r.m[G_GB][0], "the gate bias gradient %g does not "
	       "cancel (its terms' magnitudes %g)", r.e[G_GB][0], r.m[G_GB][0]);
	run_free(&r);
}

/* The checker itself fails a wrong gradient: one element moved, or a gradient scaled. */
TEST(cpu_bwd_checker_catches_a_wrong_gradient)
{
	const size_t n = 1000;
	float *o = malloc(n * sizeof *o);
	double *e = malloc(n * sizeof *e);
	for (size_t i = 0; i < n; i++) {
		e[i] = mt_uniform();
		o[i] = (float)e[i];
	}
	CHECK(mta_compare_grad(o, e, n, MTA_F32, NULL) == MTA_OK);
	o[17] += 0.01f; /* rel L2 about 6e-4, one element */
	CHECK(mta_compare_grad(o, e, n, MTA_F32, NULL) == MTA_EVERIFY);
	o[17] = (float)e[17];
	for (size_t i = 0; i < n; i++)
		o[i] = (float)(e[i] * 1.0002);
	CHECK(mta_compare_grad(o, e, n, MTA_F32, NULL) == MTA_EVERIFY);
	o[3] = NAN;
	CHECK(mta_compare_grad(o, e, n, MTA_BF16, NULL) == MTA_EVERIFY);
	free(o);
	free(e);
}

TEST(cpu_bwd_refuses_missing_buffers_by_name)
{
	mt_kcache();
	struct run r;
	run_setup(&r, "h2kv2d8-pre2x3-both-gate", 1, 9, 0);
	struct mta_variant v;
	REQUIRE(mta_variant_default(&r.p, MTA_BACKEND_CPU, &v) == MTA_OK);
	struct mta_cpu_bwd *k = NULL;
	REQUIRE(mta_cpu_bwd_load(&r.p, &v, &k) == MTA_OK);
	REQUIRE(mta_cpu_fwd_save(k, &r.p, &r.q, &r.k, &r.v, &r.w, &r.o, r.saved, 1, NULL) == MTA_OK);
	struct mta_grads g = r.grads;
	g.kq_pre = NULL;
	CHECK(mta_cpu_bwd_run(k, &r.p, &r.q, &r.k, &r.v, &r.w, r.saved, &r.dout, &g, 1, NULL) ==
	      MTA_EINVAL);
	CHECK_STR_CONTAINS(mta_last_error(), "kq_pre [H,1,cq,ck]");
	g = r.grads;
	g.gate_b = NULL;
	CHECK(mta_cpu_bwd_run(k, &r.p, &r.q, &r.k, &r.v, &r.w, r.saved, &r.dout, &g, 1, NULL) ==
	      MTA_EINVAL);
	CHECK_STR_CONTAINS(mta_last_error(), "gate_b");
	CHECK(mta_cpu_bwd_run(k, &r.p, &r.q, &r.k, &r.v, &r.w, NULL, &r.dout, &r.grads, 1, NULL) ==
	      MTA_EINVAL);
	CHECK_STR_CONTAINS(mta_last_error(), "saved state");
	struct mta_tensor bad = r.dout;
	bad.shape[2] = 1;
	CHECK(mta_cpu_bwd_run(k, &r.p, &r.q, &r.k, &r.v, &r.w, r.saved, &bad, &r.grads, 1, NULL) ==
	      MTA_ESHAPE);
	CHECK_STR_CONTAINS(mta_last_error(), "dout");
	mta_cpu_bwd_free(k);
	run_free(&r);
}

/*
 * Memory is linear in T: the saved state is B*T*H*(D+1) floats and the
 * workspace per thread grows by a constant number of rows of T floats,
 * far below one T x T matrix at T = 4096.
 */
TEST(cpu_bwd_memory_is_linear_in_T)
{
	mt_kcache();
	struct mta_problem p;
	REQUIRE(mta_problem_from_key("h8kv8d64-pre6x11-hpre-post6x11-hc8-both-gnr-gate", &p) ==
		MTA_OK);
	CHECK(mta_saved_bytes(&p, 2, 4096) == 4LL * 2 * 4096 * 8 * 65);
	CHECK(mta_saved_bytes(&p, 0, 4096) == -1);
	struct mta_variant v;
	REQUIRE(mta_variant_default(&p, MTA_BACKEND_CPU, &v) == MTA_OK);
	struct mta_cpu_bwd *k = NULL;
	REQUIRE(mta_cpu_bwd_load(&p, &v, &k) == MTA_OK);
	long long w1 = mta_cpu_bwd_workspace(k, 1024), w2 = mta_cpu_bwd_workspace(k, 2048),
		  w4 = mta_cpu_bwd_workspace(k, 4096);
	CHECK(w4 - w2 == 2 * (w2 - w1));
	CHECKF(w4 < 4096LL * 4096 * 4, "workspace %lld bytes at T=4096", w4);
	mta_cpu_bwd_free(k);
}

/*
 * The public API: mta_forward_train and mta_backward on a cpu context give
 * the reference's output and gradients (test_cuda_bwd.c does the same on
 * cuda-emu).
 */
TEST(cpu_bwd_through_the_public_api)
{
	mt_kcache();
	char db[600];
	snprintf(db, sizeof db, "%s/no-such-bwd.db", mt_tmpdir()); /* no winners: the default */
	struct run r;
	run_setup(&r, "h4kv2d8-pre2x3-hpre-post2x3-hpost-both-gnr-gate", 2, 23, 1);
	mta_context *ctx = NULL;
	REQUIRE(mta_context_create(&ctx, db, "cpu", 0) == MTA_OK);
	REQUIRE(mta_forward_train(ctx, &r.p, &r.q, &r.k, &r.v, &r.w, &r.o, r.saved) == MTA_OK);
	REQUIRE(mta_backward(ctx, &r.p, &r.q, &r.k, &r.v, &r.w, r.saved, &r.dout, &r.grads) ==
		MTA_OK);
	size_t no = gcount(&r.p, r.B, r.T, G_Q);
	double *eo = malloc(no * sizeof *eo);
	REQUIRE(mta_reference(&r.p, &r.q, &r.k, &r.v, &r.w, eo) == MTA_OK);
	CHECKF(mta_compare(r.ob, eo, no, r.p.dtype, NULL) == MTA_OK, "output: %s", mta_last_error());
	REQUIRE(mta_reference_backward(&r.p, &r.q, &r.k, &r.v, &r.w, &r.dout, &r.rg) == MTA_OK);
	for (int i = 0; i < G_COUNT; i++) {
		size_t n = gcount(&r.p, r.B, r.T, i);
		if (n)
			CHECKF(mta_compare_grad_mag(r.g[i], r.e[i], r.m[i], n, r.p.dtype, NULL) ==
			       MTA_OK, "%s: %s",
			       gname[i], mta_last_error());
	}
	/* a second call reuses the loaded kernel and gives the same bits */
	float *dq = malloc(no * sizeof *dq);
	memcpy(dq, r.g[G_Q], no * sizeof *dq);
	REQUIRE(mta_backward(ctx, &r.p, &r.q, &r.k, &r.v, &r.w, r.saved, &r.dout, &r.grads) ==
		MTA_OK);
	CHECK(!memcmp(dq, r.g[G_Q], no * sizeof *dq));
	mta_context_free(ctx);
	free(dq);
	free(eo);
	run_free(&r);
}

/*
 * The harness's backward check (tuner/measure/check.c, mta_check_bwd) on a
 * backend's training kernel and on a context, contiguous and strided; it
 * fails a backend without a backward by name; mta_time_bwd times it.
 */
TEST(cpu_bwd_through_the_harness)
{
	mt_kcache();
	static const char *const keys[] = { "h4kv2d16-pre3x3-hpre-post2x3-hc2-both-gnr-gate",
					    "h3kv1d8-pre2x4-post3x2-hpost-left-gate-bf16" };
	const struct mta_backend *be = NULL;
	REQUIRE(mta_backend_find("cpu", &be) == MTA_OK && be->train_load);
	for (size_t i = 0; i < sizeof keys / sizeof keys[0]; i++) {
		struct mta_problem p;
		struct mta_variant v;
		struct mta_device *dev = NULL;
		struct mta_kernel *k = NULL;
		REQUIRE(mta_problem_from_key(keys[i], &p) == MTA_OK);
		REQUIRE(mta_variant_default(&p, MTA_BACKEND_CPU, &v) == MTA_OK);
		REQUIRE(be->open(0, 2, &dev) == MTA_OK);
		REQUIRE(be->train_load(dev, &p, &v, &k) == MTA_OK);
		struct mta_runner r = { be, dev, k, NULL };
		for (int strided = 0; strided < 2; strided++) {
			struct mta_check_opts o = { 2, 37, mt_seed() + i + 10 * (unsigned)strided,
						    strided };
			struct mta_compare c;
			CHECKF(mta_check_bwd(&r, &p, &o, &c) == MTA_OK, "%s strided=%d: %s", keys[i],
			       strided, mta_last_error());
			CHECKF(c.rel_l2 <= c.tol && c.n > 0, "%s: worst %g",
			       keys[i], c.rel_l2);
		}
		struct mta_timing t;
		CHECKF(mta_time_bwd(&r, &p, 1, 64, 5, 1, 3, &t) == MTA_OK && t.runs == 3 &&
		       t.min_ms > 0 && t.median_ms >= t.min_ms, "%s: timing: %s", keys[i],
		       mta_last_error());
		be->unload(k);
		be->close(dev);
	}
	/* a context runner */
	char db[600];
	snprintf(db, sizeof db, "%s/no-such-harness.db", mt_tmpdir());
	struct mta_problem p;
	REQUIRE(mta_problem_from_key(keys[0], &p) == MTA_OK);
	mta_context *ctx = NULL;
	REQUIRE(mta_context_create(&ctx, db, "cpu", 0) == MTA_OK);
	struct mta_runner rc = { NULL, NULL, NULL, ctx };
	struct mta_check_opts o = { 1, 29, mt_seed() + 99, 1 };
	CHECKF(mta_check_bwd(&rc, &p, &o, NULL) == MTA_OK, "context: %s", mta_last_error());
	mta_context_free(ctx);
	/* a backend without a backward (every backend of the table has one now) */
	struct mta_backend none = *be;
	none.name = "nobwd";
	none.train_load = NULL;
	none.fwd_save = NULL;
	none.backward = NULL;
	struct mta_runner re = { &none, NULL, NULL, NULL };
	CHECK(mta_check_bwd(&re, &p, &o, NULL) == MTA_EUNSUPPORTED);
	CHECK_STR_CONTAINS(mta_last_error(), "nobwd backend has no backward");
}

/*
 * The backward check's widening for ill-conditioned float32 draws
 * (mta_check_bwd: 8x the distance an ulp of the inputs moves the
 * reference) waves no real error through: a kernel whose dq is off by
 * 3e-4 of itself everywhere, every element inside the element bound,
 * fails on a well-conditioned draw, while one off by 3e-5 passes at 1e-4.
 */
static const struct mta_backend *scaled_base;
static double scaled_by;

static int scaled_backward(struct mta_kernel *k, const struct mta_problem *p,
			   const struct mta_tensor *q, const struct mta_tensor *kt,
			   const struct mta_tensor *v, const struct mta_weights *w, const void *saved,
			   const struct mta_tensor *dout, const struct mta_grads *g)
{
	int rc = scaled_base->backward(k, p, q, kt, v, w, saved, dout, g);
	size_t n = (size_t)(q->shape[0] * q->shape[1] * q->shape[2] * q->shape[3]);
	for (size_t i = 0; !rc && i < n; i++)
		g->dq[i] *= (float)(1 + scaled_by);
	return rc;
}

TEST(bwd_check_widens_for_the_draw_not_for_an_error)
{
	mt_kcache();
	const char *key = "h4kv2d16-pre3x3-hpre-post2x3-hc2-both-gnr-gate";
	struct mta_problem p;
	struct mta_variant v;
	struct mta_device *dev = NULL;
	struct mta_kernel *k = NULL;
	REQUIRE(mta_backend_find("cpu", &scaled_base) == MTA_OK);
	struct mta_backend be = *scaled_base;
	be.backward = scaled_backward;
	REQUIRE(mta_problem_from_key(key, &p) == MTA_OK);
	REQUIRE(mta_variant_default(&p, MTA_BACKEND_CPU, &v) == MTA_OK);
	REQUIRE(be.open(0, 2, &dev) == MTA_OK);
	REQUIRE(be.train_load(dev, &p, &v, &k) == MTA_OK);
	struct mta_runner r = { &be, dev, k, NULL };
	struct mta_check_opts o = { 2, 37, mt_seed(), 0 };
	struct mta_compare c;
	scaled_by = 3e-5;
	CHECKF(mta_check_bwd(&r, &p, &o, &c) == MTA_OK && c.tol == mta_tolerance_grad(MTA_F32),
	       "off by 3e-5: %s (tol %g)", mta_last_error(), c.tol);
	scaled_by = 3e-4;
	CHECK(mta_check_bwd(&r, &p, &o, &c) == MTA_EVERIFY);
	CHECK_STR_CONTAINS(mta_last_error(), "gradient dq");
	CHECK_STR_CONTAINS(mta_last_error(), "an ulp of the inputs moves the reference");
	CHECKF(c.bad == 0 && c.rel_l2 > 2e-4 && c.rel_l2 < 4e-4, "rel L2 %g, %zu bad", c.rel_l2,
	       c.bad);
	be.unload(k);
	be.close(dev);
}
