/*
 * test_decode.c: decode with a cache (runtime/mta.h, "decode"): every row
 * equals the forward of the same prefix (mta_reference, an implementation
 * that shares no code with the decode engine) under mta_compare, for
 * prefills N = 0, 1, cq-1, T-1 and random, B > 1 with ragged lengths and
 * chunks, every option, fresh random inputs, outputs poisoned; bad calls
 * refused with nothing advanced; memory linear in T.
 */
#include "tests/harness.h"
#include "tests/cpu_util.h"
#include "runtime/core/decode.h"
#include "runtime/core/error.h"
#include "runtime/core/varlen.h"
#include "runtime/core/pool.h"
#include "runtime/cpu/cpu.h"

#include <math.h>
#include <stdint.h>

#define REQUIRE_MSG_CACHE(call)                                                  \
	do {                                                                     \
		int rc_ = (call);                                                \
		CHECKF(rc_ == MTA_OK, "%s: %s", #call, mta_last_error());        \
		if (rc_)                                                         \
			return;                                                  \
	} while (0)

/*
 * Sequences b < B of lengths T[b], prefilled with N[b] tokens in one chunk
 * call (ragged: each its own count), then one token per call (a finished
 * sequence passes 0); every output row compared with mta_reference of the
 * whole sequence.
 */
static void check_decode_on(mta_context *ctx, const struct mta_decoder *dec, const char *key,
			    int B, const int64_t *T, const int64_t *N, float *keep)
{
	struct mta_problem p;
	struct mta_weights w;
	REQUIRE(mta_problem_from_key(key, &p) == MTA_OK);
	int64_t Tmax = 0;
	for (int b = 0; b < B; b++)
		Tmax = T[b] > Tmax ? T[b] : Tmax;
	struct mta_tensor q, k, v, o;
	void *bq = mt_tensor(p.dtype, B, Tmax, p.H, p.D, 1, &q);
	void *bk = mt_tensor(p.dtype, B, Tmax, p.Hkv, p.D, 0, &k);
	void *bv = mt_tensor(p.dtype, B, Tmax, p.Hkv, p.D, 1, &v);
	void *bo = mt_tensor(MTA_F32, B, Tmax, p.H, p.D, 0, &o);
	const size_t no = (size_t)(B * Tmax * p.H * p.D);
	for (size_t i = 0; i < no; i++)
		((float *)bo)[i] = NAN;
	mt_weights(&p, &w);
	mta_cache *c = NULL;
	if (ctx)
		REQUIRE_MSG_CACHE(mta_cache_create_ctx(ctx, &p, B, &c));
	else if (dec)
		REQUIRE_MSG_CACHE(mta_cache_create_kernel(&p, B, dec, &c));
	else
		REQUIRE(mta_cache_create(&p, B, &c) == MTA_OK);

	/* the prefill chunk: rows [0, N[b]) of each */
	int64_t nmax = 0, n_new[16], lens[16];
	for (int b = 0; b < B; b++)
		nmax = N[b] > nmax ? N[b] : nmax;
	if (nmax) {
		struct mta_tensor qc = q, kc = k, vc = v, oc = o;
		struct mta_stats s0, s1;
		qc.shape[1] = kc.shape[1] = vc.shape[1] = oc.shape[1] = nmax;
		int prefills = 0;
		for (int b = 0; b < B; b++)
			prefills += (n_new[b] = N[b]) > 0;
		if (ctx)
			mta_context_stats(ctx, &s0);
		CHECKF(mta_decode(c, &qc, &kc, &vc, &w, n_new, &oc) == MTA_OK, "%s: %s", key,
		       mta_last_error());
		/* through a context, each prefill into an empty cache is one forward call */
		if (ctx) {
			mta_context_stats(ctx, &s1);
			CHECKF(s1.calls - s0.calls == (uint64_t)prefills, "%s: %llu forward calls for "
			       "%d prefills", key, (unsigned long long)(s1.calls - s0.calls), prefills);
		}
	}
	/* then one token per call, each sequence at its own position */
	REQUIRE(mta_cache_seqlens(c, lens) == MTA_OK);
	for (int b = 0; b < B; b++)
		CHECK_EQ_INT(lens[b], N[b]);
	for (int64_t step = 0;; step++) {
		int any = 0;
		/* row r_b = lens[b] of each sequence, gathered into a [B,1,...] call */
		struct mta_tensor q1, k1, v1, o1;
		void *a = mt_tensor(p.dtype, B, 1, p.H, p.D, 0, &q1);
		void *ak = mt_tensor(p.dtype, B, 1, p.Hkv, p.D, 0, &k1);
		void *av = mt_tensor(p.dtype, B, 1, p.Hkv, p.D, 0, &v1);
		void *ao = mt_tensor(MTA_F32, B, 1, p.H, p.D, 0, &o1);
		size_t es = mta_dtype_size(p.dtype);
		for (int b = 0; b < B; b++) {
			n_new[b] = lens[b] < T[b];
			any |= (int)n_new[b];
			if (!n_new[b])
				continue;
			const int64_t r = lens[b];
			for (int64_t h = 0; h < p.H; h++)
				memcpy((char *)a + (size_t)((b * p.H + h) * p.D) * es,
				       (char *)q.data + (size_t)(b * q.stride[0] + r * q.stride[1] +
								 h * q.stride[2]) * es, (size_t)p.D * es);
			for (int64_t h = 0; h < p.Hkv; h++) {
				memcpy((char *)ak + (size_t)((b * p.Hkv + h) * p.D) * es,
				       (char *)k.data + (size_t)(b * k.stride[0] + r * k.stride[1] +
								 h * k.stride[2]) * es, (size_t)p.D * es);
				memcpy((char *)av + (size_t)((b * p.Hkv + h) * p.D) * es,
				       (char *)v.data + (size_t)(b * v.stride[0] + r * v.stride[1] +
								 h * v.stride[2]) * es, (size_t)p.D * es);
			}
		}
		for (int64_t i = 0; i < B * p.H * p.D; i++)
			((float *)ao)[i] = NAN;
		if (any)
			CHECKF(mta_decode(c, &q1, &k1, &v1, &w, n_new, &o1) == MTA_OK, "%s: %s", key,
			       mta_last_error());
		for (int b = 0; b < B; b++)
			if (n_new[b])
				memcpy((float *)bo + (size_t)((b * Tmax + lens[b]) * p.H * p.D),
				       (float *)ao + (size_t)(b * p.H * p.D),
				       (size_t)(p.H * p.D) * sizeof(float));
		free(a);
		free(ak);
		free(av);
		free(ao);
		REQUIRE(mta_cache_seqlens(c, lens) == MTA_OK);
		if (!any)
			break;
	}
	/* each sequence against the forward of all of it */
	for (int b = 0; b < B; b++) {
		CHECK_EQ_INT(lens[b], T[b]);
		struct mta_tensor qb = q, kb = k, vb = v;
		const size_t es = mta_dtype_size(p.dtype);
		qb.data = (char *)q.data + (size_t)(b * q.stride[0]) * es;
		kb.data = (char *)k.data + (size_t)(b * k.stride[0]) * es;
		vb.data = (char *)v.data + (size_t)(b * v.stride[0]) * es;
		qb.shape[0] = kb.shape[0] = vb.shape[0] = 1;
		qb.shape[1] = kb.shape[1] = vb.shape[1] = T[b];
		const size_t n = (size_t)(T[b] * p.H * p.D);
		double *ref = malloc(n * sizeof *ref);
		REQUIRE(ref && mta_reference(&p, &qb, &kb, &vb, &w, ref) == MTA_OK);
		struct mta_compare cmp;
		/* MTA_EVERIFY: judged below, against the draw's condition */
		int rc = mta_compare((float *)bo + (size_t)(b * Tmax * p.H * p.D), ref, n, p.dtype,
				     &cmp);
		CHECKF(rc == MTA_OK || rc == MTA_EVERIFY, "%s b=%d T=%lld N=%lld: %s", key, b,
		       (long long)T[b], (long long)N[b], mta_last_error());
		/*
		 * float32: 1e-5 unless the draw itself is ill-conditioned. A
		 * float32 kernel rounds each intermediate, so no kernel beats
		 * the distance the reference moves when the inputs and weights
		 * move by an ulp (mt_condition); a one-row sequence, whose P is
		 * exactly 1 and whose output is a sum of a few mixing-weight
		 * products, moves by 2.4e-5 when those products nearly cancel
		 * (seed 10708013886934922686). The bound then is 8x that
		 * distance, the element-wise bound unchanged.
		 */
		double tol = mta_tolerance(p.dtype), cond = 0;
		if (p.dtype == MTA_F32 && cmp.rel_l2 >= tol) {
			cond = mt_condition(&p, &qb, &kb, &vb, &w, ref);
			tol = fmax(tol, 8 * cond);
		}
		CHECKF(cmp.rel_l2 < tol && cmp.bad == 0,
		       "%s b=%d T=%lld N=%lld: rel L2 %g (bound %g; an ulp of the inputs moves the "
		       "reference by %g), %zu elements beyond the bound", key, b, (long long)T[b],
		       (long long)N[b], cmp.rel_l2, tol, cond, cmp.bad);
		free(ref);
	}
	if (keep)
		memcpy(keep, bo, no * sizeof(float));
	mta_cache_free(c);
	mt_weights_free(&w);
	free(bq);
	free(bk);
	free(bv);
	free(bo);
}

/* The float64 engine (mta_cache_create), then the cpu backend's generated decode kernel. */
static void check_decode(const char *key, int B, const int64_t *T, const int64_t *N)
{
	mta_context *ctx = NULL;
	check_decode_on(NULL, NULL, key, B, T, N, NULL);
	mt_kcache();
	REQUIRE(mta_context_create(&ctx, "/nonexistent/mta.db", "cpu", 0) == MTA_OK);
	check_decode_on(ctx, NULL, key, B, T, N, NULL);
	mta_context_free(ctx);
}

/* Through a context of backend be's decode kernel (mta_cache_create_ctx). */
static void check_decode_be(const char *be, const char *key, int B, const int64_t *T,
			    const int64_t *N)
{
	mta_context *ctx = NULL;
	mt_kcache();
	REQUIRE(mta_context_create(&ctx, "/nonexistent/mta.db", be, 0) == MTA_OK);
	check_decode_on(ctx, NULL, key, B, T, N, NULL);
	mta_context_free(ctx);
}

static const char *keys[] = {
	"h4kv2d8-pre3x5-hpre-post2x3-hc2-both-gn-gate-f32",
	"h3kv3d6-pre2x3-hpre-post3x3-hpost-right-gnr-f32",
	"h2kv1d5-pre4x3-left-gate-bf16",
	"h2kv2d4-post4x5-hpost-both-s0.7-f16",
	"h2kv2d8-both-f32",
	"h4kv1d13-pre6x11-hpre-post6x11-hc4-both-gn-gate-f32",
};

/*
 * One sequence, prefills N = 0, 1, cq-1, cq+cq2-2, T-1 and random, every
 * option. Through a context, a prefill into an empty cache takes its
 * outputs from the forward and seeds the rings from its last rows
 * (decode.c, kernel_prefill): the rows decoded after it check that seeding
 * (cq+cq2-2 is the shortest prefill whose rings are full).
 */
TEST(decode_equals_forward_every_prefill)
{
	for (size_t i = 0; i < sizeof keys / sizeof keys[0]; i++) {
		struct mta_problem p;
		REQUIRE(mta_problem_from_key(keys[i], &p) == MTA_OK);
		const int64_t T = 23;
		int64_t Ns[] = { 0, 1, p.cq > 1 ? p.cq - 1 : 2, p.cq + p.cq2 > 2 ? p.cq + p.cq2 - 2 : 3, T - 1,
				 (int64_t)((mt_uniform() + 1) / 2 * (double)T) };
		for (size_t j = 0; j < sizeof Ns / sizeof Ns[0]; j++) {
			int64_t t[1] = { T }, n[1] = { Ns[j] };
			check_decode(keys[i], 1, t, n);
		}
	}
}

/* B > 1: ragged lengths and prefills in the same calls, sequences finishing apart. */
TEST(decode_batched_ragged)
{
	for (size_t i = 0; i < sizeof keys / sizeof keys[0]; i++) {
		int64_t T[4] = { 17, 1, 30, 9 }, N[4] = { 5, 0, 29, 9 };
		check_decode(keys[i], 4, T, N);
	}
}

/* Bad calls are refused with a message, and no sequence advances. */
TEST(decode_refuses_bad_calls)
{
	struct mta_problem p;
	struct mta_weights w;
	REQUIRE(mta_problem_from_key("h2kv2d4-pre2x3-both-gate-f32", &p) == MTA_OK);
	mt_weights(&p, &w);
	struct mta_tensor q, k, v, o;
	void *bq = mt_tensor(MTA_F32, 2, 3, 2, 4, 0, &q), *bk = mt_tensor(MTA_F32, 2, 3, 2, 4, 0, &k);
	void *bv = mt_tensor(MTA_F32, 2, 3, 2, 4, 0, &v), *bo = mt_tensor(MTA_F32, 2, 3, 2, 4, 0, &o);
	mta_cache *c = NULL;
	int64_t lens[3];
	CHECK(mta_cache_create(&p, 0, &c) == MTA_EINVAL && !c);
	REQUIRE(mta_cache_create(&p, 3, &c) == MTA_OK);
	CHECK(mta_decode(c, &q, &k, &v, &w, NULL, &o) == MTA_ESHAPE); /* B=2, cache of 3 */
	CHECK_STR_CONTAINS(mta_last_error(), "the cache holds 3 sequences");
	mta_cache_free(c);
	REQUIRE(mta_cache_create(&p, 2, &c) == MTA_OK);
	int64_t bad[2] = { 1, 4 };
	CHECK(mta_decode(c, &q, &k, &v, &w, bad, &o) == MTA_EINVAL);
	CHECK_STR_CONTAINS(mta_last_error(), "n_new[1] = 4 is outside 0..3");
	struct mta_weights now = w;
	now.kq_pre = NULL;
	CHECK(mta_decode(c, &q, &k, &v, &now, NULL, &o) == MTA_EINVAL);
	CHECK_STR_CONTAINS(mta_last_error(), "kq_pre");
	CHECK(mta_cache_seqlens(c, lens) == MTA_OK);
	CHECK(lens[0] == 0 && lens[1] == 0);
	int64_t two[2] = { 3, 2 };
	CHECK(mta_decode(c, &q, &k, &v, &w, two, &o) == MTA_OK);
	CHECK(mta_cache_seqlens(c, lens) == MTA_OK);
	CHECK(lens[0] == 3 && lens[1] == 2);
	CHECK(mta_cache_reset(c, 0) == MTA_OK);
	CHECK(mta_cache_reset(c, 2) == MTA_EINVAL);
	CHECK(mta_cache_seqlens(c, lens) == MTA_OK);
	CHECK(lens[0] == 0 && lens[1] == 2);
	mta_cache_free(c);
	mt_weights_free(&w);
	free(bq);
	free(bk);
	free(bv);
	free(bo);
}

/* The cache holds O(T): doubling the tokens at most doubles its bytes (plus the growth step). */
TEST(decode_memory_linear)
{
	struct mta_problem p;
	struct mta_weights w;
	REQUIRE(mta_problem_from_key("h2kv1d8-pre3x5-post2x3-both-f32", &p) == MTA_OK);
	mt_weights(&p, &w);
	struct mta_tensor q, k, v, o;
	void *bq = mt_tensor(MTA_F32, 1, 1024, 2, 8, 0, &q), *bk = mt_tensor(MTA_F32, 1, 1024, 1, 8, 0, &k);
	void *bv = mt_tensor(MTA_F32, 1, 1024, 1, 8, 0, &v), *bo = mt_tensor(MTA_F32, 1, 1024, 2, 8, 0, &o);
	mta_cache *c = NULL;
	REQUIRE(mta_cache_create(&p, 1, &c) == MTA_OK);
	struct mta_tensor qc = q, kc = k, vc = v, oc = o;
	qc.shape[1] = kc.shape[1] = vc.shape[1] = oc.shape[1] = 512;
	REQUIRE(mta_decode(c, &qc, &kc, &vc, &w, NULL, &oc) == MTA_OK);
	int64_t at512 = mta_cache_bytes(c);
	REQUIRE(mta_decode(c, &qc, &kc, &vc, &w, NULL, &oc) == MTA_OK);
	int64_t at1024 = mta_cache_bytes(c);
	/* per token: k, v (2*Hkv*D) + rings (H*(cq+cq2)) + scratch (2*H) doubles */
	const int64_t per = (2 * 1 * 8 + 2 * (3 + 2) + 2 * 2) * 8;
	CHECKF(at1024 <= 1024 * per && at1024 <= 2 * at512 + per, "%lld bytes at 512, %lld at 1024",
	       (long long)at512, (long long)at1024);
	mta_cache_free(c);
	mt_weights_free(&w);
	free(bq);
	free(bk);
	free(bv);
	free(bo);
}

/* ---- the command line: mtatune run --decode-from N ---- */

#include "tests/fixtures.h"
#include "tuner/io/inputs.h"
#include "tuner/io/npy.h"

#include <sys/stat.h>

/*
 * `run --backend cuda-emu --decode-from N` (the CUDA decode kernel on the
 * emulator) equals the plain `run --backend cuda-emu` forward: both within
 * the forward's tolerances of the float64 reference, every element, and
 * within them of each other, for N = 0, 1, cq-1, T-1 and random.
 */
TEST(decode_cli_cuda_emu_equals_forward)
{
	char dir[600], plain[700], *o = NULL;
	const int64_t T = 11;
	int rc;
	snprintf(dir, sizeof dir, "%s/dec", mt_tmpdir());
	mkdir(dir, 0777);
	mt_put_npy(dir, "q", 4, (int64_t)2, T, (int64_t)4, (int64_t)8);
	mt_put_npy(dir, "k", 4, (int64_t)2, T, (int64_t)2, (int64_t)8);
	mt_put_npy(dir, "v", 4, (int64_t)2, T, (int64_t)2, (int64_t)8);
	mt_put_npy(dir, "kq_pre", 4, (int64_t)4, (int64_t)1, (int64_t)3, (int64_t)5);
	mt_put_npy(dir, "head_pre", 2, (int64_t)4, (int64_t)4);
	mt_put_npy(dir, "kq_post", 4, (int64_t)4, (int64_t)1, (int64_t)2, (int64_t)3);
	mt_put_npy(dir, "head_post", 3, (int64_t)2, (int64_t)2, (int64_t)2);
	mt_put_npy(dir, "gn_weight", 1, (int64_t)8);
	mt_put_npy(dir, "gate_w", 2, (int64_t)1, (int64_t)8);
	mt_put_npy(dir, "gate_b", 1, (int64_t)1);
	struct mta_inputs in;
	struct mta_weights w;
	struct mta_input_options io;
	mta_input_options_init(&io);
	io.layer_id = 3;
	rc = mta_inputs_load(dir, &io, &in);
	CHECKF(rc == MTA_OK, "%s", mta_last_error());
	if (rc)
		return;
	mta_inputs_weights(&in, &w);
	const size_t n = (size_t)(2 * T * 4 * 8);
	double *ref = malloc(n * sizeof *ref), *pd = malloc(n * sizeof *pd);
	REQUIRE(ref && pd && mta_reference(&in.problem, &in.q, &in.k, &in.v, &w, ref) == MTA_OK);
	snprintf(plain, sizeof plain, "%s/plain.npy", mt_tmpdir());
	rc = mt_sh(&o, "%s run --inputs %s --out %s --layer-id 3 --backend cuda-emu --db "
		       "%s/none.db", mt_bin(), dir, plain, mt_tmpdir());
	CHECKF(rc == 0, "plain forward: exit %d: %s", rc, o);
	free(o);
	struct mta_npy pa;
	REQUIRE(mta_npy_read(plain, &pa) == MTA_OK && pa.count == n);
	for (size_t e = 0; e < n; e++)
		pd[e] = ((const float *)pa.data)[e];
	const int64_t Ns[] = { 0, 1, in.problem.cq - 1, T - 1,
			       1 + (int64_t)((mt_uniform() + 1) / 2 * (double)(T - 2)) };
	for (size_t i = 0; i < sizeof Ns / sizeof Ns[0]; i++) {
		char out[700];
		snprintf(out, sizeof out, "%s/o%zu.npy", mt_tmpdir(), i);
		rc = mt_sh(&o, "%s run --inputs %s --out %s --layer-id 3 --backend cuda-emu "
			   "--decode-from %lld --db %s/none.db", mt_bin(), dir, out,
			   (long long)Ns[i], mt_tmpdir());
		CHECKF(rc == 0, "N=%lld: exit %d: %s", (long long)Ns[i], rc, o);
		free(o);
		struct mta_npy a;
		REQUIRE(mta_npy_read(out, &a) == MTA_OK);
		struct mta_compare c1, c2;
		CHECKF(a.count == n && mta_compare(a.data, ref, n, MTA_F32, &c1) == MTA_OK &&
		       mta_compare(a.data, pd, n, MTA_F32, &c2) == MTA_OK,
		       "N=%lld: %s", (long long)Ns[i], mta_last_error());
		CHECKF(c1.bad == 0 && c1.rel_l2 < mta_tolerance(MTA_F32) && c2.bad == 0 &&
		       c2.rel_l2 < mta_tolerance(MTA_F32), "N=%lld: rel L2 %g / %g against the "
		       "reference / the plain forward", (long long)Ns[i], c1.rel_l2, c2.rel_l2);
		mta_npy_free(&a);
	}
	mta_npy_free(&pa);
	free(ref);
	free(pd);
	mta_inputs_free(&in);
}

/* Every backend, prefills 0, 1, cq-1, T-1 and random: the whole output equals the forward. */
TEST(decode_cli_every_backend)
{
	char dir[600];
	const int64_t T = 15;
	snprintf(dir, sizeof dir, "%s/dec", mt_tmpdir());
	mkdir(dir, 0777);
	mt_put_npy(dir, "q", 4, (int64_t)2, T, (int64_t)2, (int64_t)8);
	mt_put_npy(dir, "k", 4, (int64_t)2, T, (int64_t)1, (int64_t)8);
	mt_put_npy(dir, "v", 4, (int64_t)2, T, (int64_t)1, (int64_t)8);
	mt_put_npy(dir, "kq_pre", 4, (int64_t)2, (int64_t)1, (int64_t)3, (int64_t)5);
	mt_put_npy(dir, "kq_post", 4, (int64_t)2, (int64_t)1, (int64_t)2, (int64_t)3);
	mt_put_npy(dir, "head_post_linear", 2, (int64_t)2, (int64_t)2);
	mt_put_npy(dir, "gn_weight", 1, (int64_t)8);
	struct mta_inputs in;
	struct mta_weights w;
	struct mta_input_options io;
	mta_input_options_init(&io);
	io.layer_id = 4;
	REQUIRE(mta_inputs_load(dir, &io, &in) == MTA_OK);
	mta_inputs_weights(&in, &w);
	const size_t n = (size_t)(2 * T * 2 * 8);
	double *ref = malloc(n * sizeof *ref);
	REQUIRE(ref && mta_reference(&in.problem, &in.q, &in.k, &in.v, &w, ref) == MTA_OK);
	static const char *be[] = { "ref", "cpu", "cuda-emu" };
	const int64_t Ns[] = { 0, 1, 2, T - 1, T, 1 + (int64_t)((mt_uniform() + 1) / 2 * 12) };
	for (size_t i = 0; i < sizeof Ns / sizeof Ns[0]; i++) {
		char out[700], *o = NULL;
		snprintf(out, sizeof out, "%s/o%zu.npy", mt_tmpdir(), i);
		int rc = mt_sh(&o, "%s run --inputs %s --out %s --layer-id 4 --backend %s "
			       "--decode-from %lld --db %s/none.db", mt_bin(), dir, out, be[i % 3],
			       (long long)Ns[i], mt_tmpdir());
		CHECKF(rc == 0, "N=%lld: exit %d: %s", (long long)Ns[i], rc, o);
		free(o);
		struct mta_npy a;
		REQUIRE(mta_npy_read(out, &a) == MTA_OK);
		struct mta_compare cmp;
		CHECKF(a.count == n && mta_compare(a.data, ref, n, MTA_F32, &cmp) == MTA_OK,
		       "%s N=%lld: %s", be[i % 3], (long long)Ns[i], mta_last_error());
		mta_npy_free(&a);
	}
	/* refused: beyond T, with --cu-seqlens, not a number */
	char *o = NULL;
	CHECK(mt_sh(&o, "%s run --inputs %s --out %s/x.npy --decode-from 16", mt_bin(), dir,
		    mt_tmpdir()) == 2);
	CHECK_STR_CONTAINS(o, "--decode-from 16 is beyond T=15");
	free(o);
	CHECK(mt_sh(&o, "%s run --inputs %s --out %s/x.npy --decode-from 2 --cu-seqlens %s/c.npy",
		    mt_bin(), dir, mt_tmpdir(), mt_tmpdir()) == 2);
	CHECK_STR_CONTAINS(o, "cannot be combined with --cu-seqlens");
	free(o);
	CHECK(mt_sh(&o, "%s run --inputs %s --out %s/x.npy --decode-from -1", mt_bin(), dir,
		    mt_tmpdir()) == 2);
	free(o);
	free(ref);
	mta_inputs_free(&in);
}

/*
 * The generated CPU decode kernel on one, two and three threads of a pool:
 * rows longer than a key block (MTA_DBLOCK columns) are split over the
 * threads, several sequences at once; the outputs are identical bit for
 * bit (block sums are added in block order whatever thread made them),
 * and each equals the forward.
 */
TEST(decode_cpu_threads_identical)
{
	static const char *tk[] = {
		"h4kv2d8-pre3x5-hpre-post2x3-hc2-both-gn-gate-f32",
		"h2kv1d5-pre4x3-left-gate-bf16",
		"h2kv2d4-post4x5-hpost-both-s0.7-f16",
	};
	mt_kcache();
	for (size_t i = 0; i < sizeof tk / sizeof tk[0]; i++) {
		struct mta_problem p;
		struct mta_cpu_decode *k = NULL;
		struct mta_pool *pool = NULL;
		REQUIRE(mta_problem_from_key(tk[i], &p) == MTA_OK);
		CHECKF(mta_cpu_decode_load(&p, NULL, &k) == MTA_OK, "%s: %s", tk[i], mta_last_error());
		REQUIRE(k && mta_pool_create(&pool) == MTA_OK);
		int64_t T[3] = { 2 * MTA_DBLOCK + 37, 5, MTA_DBLOCK + 1 };
		int64_t N[3] = { MTA_DBLOCK - 3, 0, MTA_DBLOCK };
		const size_t no = (size_t)(3 * T[0] * p.H * p.D);
		float *o1 = malloc(no * sizeof *o1), *o2 = malloc(no * sizeof *o2);
		REQUIRE(o1 && o2);
		struct mta_decoder d1 = { .fn = mta_cpu_decode_entry(k), .pool = pool, .nthreads = 1 };
		struct mta_decoder d2 = { .fn = mta_cpu_decode_entry(k), .pool = pool, .nthreads = 2 };
		const unsigned long long st = mt_rng_save();
		check_decode_on(NULL, &d1, tk[i], 3, T, N, o1);
		mt_rng_restore(st); /* the same inputs */
		check_decode_on(NULL, &d2, tk[i], 3, T, N, o2);
		size_t diff = 0;
		for (size_t e = 0; e < no; e++)
			diff += memcmp(&o1[e], &o2[e], sizeof(float)) != 0;
		CHECKF(diff == 0, "%s: %zu of %zu elements differ between 1 and 2 threads", tk[i],
		       diff, no);
		/* three threads: items do not divide evenly */
		struct mta_decoder d3 = { .fn = mta_cpu_decode_entry(k), .pool = pool, .nthreads = 3 };
		mt_rng_restore(st);
		check_decode_on(NULL, &d3, tk[i], 3, T, N, o2);
		diff = 0;
		for (size_t e = 0; e < no; e++)
			diff += memcmp(&o1[e], &o2[e], sizeof(float)) != 0;
		CHECKF(diff == 0, "%s: %zu of %zu elements differ between 1 and 3 threads", tk[i],
		       diff, no);
		free(o1);
		free(o2);
		mta_pool_free(pool);
		mta_cpu_decode_free(k);
	}
}

/*
 * The CUDA decode kernel (templates/mta_cuda_decode.cu) on the emulator:
 * every option, prefills N = 0, 1, cq-1, T-1 and random, then B > 1 with
 * ragged lengths, each row equal to the forward.
 */
/* The cpu decode kernel, made to fail at one call: fail_at calls from now (-1: never). */
static mta_decode_fn fail_real;
static int fail_at = -1;
static int failing_entry(const struct mta_dargs *a)
{
	if (fail_at == 0) {
		fail_at = -1;
		return MTA_EKERNEL;
	}
	if (fail_at > 0)
		fail_at--;
	return fail_real(a);
}

/* A context's select hook whose kernel for T beyond 8 cannot be had (a compile that fails). */
static int failing_select(void *ctx, const struct mta_problem *p, int64_t B, int64_t T,
			  struct mta_decoder *out)
{
	(void)ctx;
	(void)p;
	(void)B;
	if (T > 8)
		return mta_fail(MTA_ECOMPILE, "no kernel for T=%lld (the test's)", (long long)T);
	*out = (struct mta_decoder){ .fn = failing_entry, .nthreads = 1, .select = failing_select };
	return MTA_OK;
}

/* rows r0 .. r0+n-1 of t */
static struct mta_tensor rows_of(const struct mta_tensor *t, int64_t r0, int64_t n)
{
	struct mta_tensor x = *t;
	x.data = (char *)t->data + (size_t)(r0 * t->stride[1]) * mta_dtype_size(t->dtype);
	x.shape[1] = n;
	return x;
}

/* rows r0 .. r1-1 of both sequences of o and e, bit for bit, none NaN */
static void same_rows(const float *o, const float *e, int64_t r0, int64_t r1, int64_t T,
		      int64_t hd, const char *what)
{
	size_t diff = 0, nan = 0;
	for (int b = 0; b < 2; b++)
		for (int64_t r = r0; r < r1; r++)
			for (int64_t x = 0; x < hd; x++) {
				const size_t at = (size_t)((b * T + r) * hd + x);
				diff += memcmp(o + at, e + at, sizeof(float)) != 0;
				nan += isnan(o[at]);
			}
	CHECKF(diff == 0 && nan == 0, "%s: %zu elements differ from a cache that never failed, "
	       "%zu NaN", what, diff, nan);
}

/*
 * Decode calls that fail (mta.h). A kernel that cannot be had for a later
 * row's T bucket fails the call before any row runs: no sequence advanced
 * or changed, and a call within the buckets that work then runs as if
 * nothing happened. A kernel that fails at a row (on a device, a copy or a
 * launch) leaves the lengths, but the sequences that held rows refuse
 * tokens, naming themselves, until reset; after a reset they run again.
 * Every output is compared, bit for bit, with a cache that never failed.
 */
TEST(decode_failed_call_advances_nothing)
{
	static const char key[] = "h4kv2d8-pre3x5-hpre-post2x3-hc2-both-gn-gate-f32";
	struct mta_problem p;
	struct mta_weights w;
	struct mta_cpu_decode *kd = NULL;
	mta_cache *c = NULL, *ref = NULL;
	struct mta_tensor q, k, v, o, o2;
	int64_t lens[2];
	const int64_t T = 10;
	REQUIRE(mta_problem_from_key(key, &p) == MTA_OK);
	const int64_t hd = p.H * p.D;
	mt_kcache();
	CHECKF(mta_cpu_decode_load(&p, NULL, &kd) == MTA_OK, "%s", mta_last_error());
	REQUIRE(kd != NULL);
	fail_real = mta_cpu_decode_entry(kd);
	struct mta_decoder d = { .fn = failing_entry, .nthreads = 1, .select = failing_select };
	struct mta_decoder d0 = { .fn = fail_real, .nthreads = 1 };
	REQUIRE(mta_cache_create_kernel(&p, 2, &d, &c) == MTA_OK);
	REQUIRE(mta_cache_create_kernel(&p, 2, &d0, &ref) == MTA_OK);
	mt_weights(&p, &w);
	void *bq = mt_tensor(p.dtype, 2, T, p.H, p.D, 0, &q);
	void *bk = mt_tensor(p.dtype, 2, T, p.Hkv, p.D, 0, &k);
	void *bv = mt_tensor(p.dtype, 2, T, p.Hkv, p.D, 0, &v);
	void *bo = mt_tensor(MTA_F32, 2, T, p.H, p.D, 0, &o);
	void *bo2 = mt_tensor(MTA_F32, 2, T, p.H, p.D, 0, &o2);
	REQUIRE(bq && bk && bv && bo && bo2);
	for (size_t i = 0; i < (size_t)(2 * T * hd); i++)
		((float *)bo)[i] = ((float *)bo2)[i] = NAN;
	struct mta_tensor q0 = rows_of(&q, 0, 3), k0 = rows_of(&k, 0, 3), v0 = rows_of(&v, 0, 3);
	struct mta_tensor oa = rows_of(&o, 0, 3), o2a = rows_of(&o2, 0, 3);
	REQUIRE(mta_decode(c, &q0, &k0, &v0, &w, NULL, &oa) == MTA_OK);
	REQUIRE(mta_decode(ref, &q0, &k0, &v0, &w, NULL, &o2a) == MTA_OK);

	/* rows 3..8: row 8's T (9) has no kernel: refused before any row runs */
	struct mta_tensor q6 = rows_of(&q, 3, 6), k6 = rows_of(&k, 3, 6), v6 = rows_of(&v, 3, 6);
	struct mta_tensor o6 = rows_of(&o, 3, 6);
	fail_at = -1;
	CHECK(mta_decode(c, &q6, &k6, &v6, &w, NULL, &o6) != MTA_OK);
	CHECK_STR_CONTAINS(mta_last_error(), "no kernel for T=9");
	REQUIRE(mta_cache_seqlens(c, lens) == MTA_OK);
	CHECK(lens[0] == 3 && lens[1] == 3);
	for (int b = 0; b < 2; b++)
		for (int64_t x = 0; x < 6 * hd; x++)
			CHECKF(isnan(((float *)bo)[(b * T + 3) * hd + x]), "a refused call wrote o");

	/* rows 3..6, the kernel failing at its third row (row 5) */
	struct mta_tensor q1 = rows_of(&q, 3, 4), k1 = rows_of(&k, 3, 4), v1 = rows_of(&v, 3, 4);
	struct mta_tensor ob = rows_of(&o, 3, 4), o2b = rows_of(&o2, 3, 4);
	fail_at = 2;
	CHECK(mta_decode(c, &q1, &k1, &v1, &w, NULL, &ob) != MTA_OK);
	CHECK_STR_CONTAINS(mta_last_error(), "decode kernel returned error");
	CHECK_EQ_INT(fail_at, -1); /* it did fail, at the third row */
	REQUIRE(mta_cache_seqlens(c, lens) == MTA_OK);
	CHECKF(lens[0] == 3 && lens[1] == 3, "after a failed call the lengths are %lld, %lld; "
	       "expected 3, 3", (long long)lens[0], (long long)lens[1]);
	CHECK(mta_decode(c, &q1, &k1, &v1, &w, NULL, &ob) != MTA_OK);
	CHECK_STR_CONTAINS(mta_last_error(), "sequence 0 was left inconsistent");
	/* reset, then all seven rows again, row by row as the control's 3 + 4 */
	REQUIRE(mta_cache_reset(c, 0) == MTA_OK && mta_cache_reset(c, 1) == MTA_OK);
	for (size_t i = 0; i < (size_t)(2 * T * hd); i++)
		((float *)bo)[i] = NAN;
	struct mta_tensor q7 = rows_of(&q, 0, 7), k7 = rows_of(&k, 0, 7), v7 = rows_of(&v, 0, 7);
	struct mta_tensor o7 = rows_of(&o, 0, 7);
	REQUIRE(mta_decode(c, &q7, &k7, &v7, &w, NULL, &o7) == MTA_OK);
	REQUIRE(mta_decode(ref, &q1, &k1, &v1, &w, NULL, &o2b) == MTA_OK);
	REQUIRE(mta_cache_seqlens(c, lens) == MTA_OK);
	CHECK(lens[0] == 7 && lens[1] == 7);
	same_rows(bo, bo2, 0, 7, T, hd, "after a reset, rows 0..6");
	mta_cache_free(c);
	mta_cache_free(ref);
	mta_cpu_decode_free(kd);
	mt_weights_free(&w);
	free(bq);
	free(bk);
	free(bv);
	free(bo);
	free(bo2);
}

/*
 * mt_condition, which widens decode's float32 bound for ill-conditioned
 * draws, measures what it says: a one-row output whose mixing sums cancel
 * to 1/4096 of their terms moves by over 1e-4 under an ulp of the weights,
 * while most ordinary draws of the decode tests' problems move by under
 * 1e-6, so their bound stays mta_tolerance's 1e-5.
 */
TEST(decode_condition_of_a_cancelling_draw)
{
	struct mta_problem p;
	struct mta_weights w;
	struct mta_tensor q, k, v;
	REQUIRE(mta_problem_from_key("h2kv2d8-post1x1-hc2-f32", &p) == MTA_OK);
	mt_weights(&p, &w);
	void *a = mt_tensor(p.dtype, 1, 1, p.H, p.D, 0, &q);
	void *ak = mt_tensor(p.dtype, 1, 1, p.Hkv, p.D, 0, &k);
	void *av = mt_tensor(p.dtype, 1, 1, p.Hkv, p.D, 0, &v);
	REQUIRE(a && ak && av);
	/* P is 1 at T = 1: head h's weight is sum over h' of head_post[0][h'][h] * kq_post[h'] */
	float *kp = (float *)w.kq_post, *hp = (float *)w.head_post;
	kp[0] = kp[1] = 1;
	hp[0] = 1;                         /* in 0 -> out 0 */
	hp[1] = 1;                         /* in 0 -> out 1 */
	hp[2] = -(1 - 1.0f / 4096);        /* in 1 -> out 0 */
	hp[3] = -(1 - 1.0f / 2048);        /* in 1 -> out 1 */
	const size_t n = (size_t)(p.H * p.D);
	double *ref = malloc(n * sizeof *ref);
	REQUIRE(ref && mta_reference(&p, &q, &k, &v, &w, ref) == MTA_OK);
	double c = mt_condition(&p, &q, &k, &v, &w, ref);
	CHECKF(c > 1e-4 && c < 1e-1, "a draw cancelling to 1/4096 moves by %g", c);
	free(ref);
	free(a);
	free(ak);
	free(av);
	mt_weights_free(&w);
	/* the median of 7 draws: one in a hundred draws moves by 1e-6 or more */
	for (size_t i = 0; i < sizeof keys / sizeof keys[0]; i++) {
		const int64_t T = 12;
		double m[7];
		REQUIRE(mta_problem_from_key(keys[i], &p) == MTA_OK);
		if (p.dtype != MTA_F32)
			continue;
		for (int d = 0; d < 7; d++) {
			mt_weights(&p, &w);
			a = mt_tensor(p.dtype, 1, T, p.H, p.D, 0, &q);
			ak = mt_tensor(p.dtype, 1, T, p.Hkv, p.D, 0, &k);
			av = mt_tensor(p.dtype, 1, T, p.Hkv, p.D, 0, &v);
			ref = malloc((size_t)(T * p.H * p.D) * sizeof *ref);
			REQUIRE(a && ak && av && ref &&
				mta_reference(&p, &q, &k, &v, &w, ref) == MTA_OK);
			m[d] = mt_condition(&p, &q, &k, &v, &w, ref);
			CHECKF(m[d] > 0, "%s: a draw moves by %g", keys[i], m[d]);
			free(ref);
			free(a);
			free(ak);
			free(av);
			mt_weights_free(&w);
		}
		int below = 0;
		for (int d = 0; d < 7; d++)
			below += m[d] < 1e-6;
		CHECKF(below >= 4, "%s: %d of 7 ordinary draws move by under 1e-6", keys[i], below);
	}
}

TEST(decode_cuda_emu)
{
	for (size_t i = 0; i < sizeof keys / sizeof keys[0]; i++) {
		struct mta_problem p;
		REQUIRE(mta_problem_from_key(keys[i], &p) == MTA_OK);
		const int64_t T = 12;
		int64_t Ns[] = { 0, 1, p.cq > 1 ? p.cq - 1 : 2, p.cq + p.cq2 > 2 ? p.cq + p.cq2 - 2 : 3, T - 1,
				 (int64_t)((mt_uniform() + 1) / 2 * (double)T) };
		for (size_t j = 0; j < sizeof Ns / sizeof Ns[0]; j++) {
			int64_t t[1] = { T }, n[1] = { Ns[j] };
			check_decode_be("cuda-emu", keys[i], 1, t, n);
		}
		int64_t TB[3] = { 9, 1, 14 }, NB[3] = { 4, 0, 13 };
		check_decode_be("cuda-emu", keys[i], 3, TB, NB);
	}
	/* a row longer than the block's 128 threads: each thread takes several columns */
	int64_t TL[1] = { 133 }, NL[1] = { 129 };
	check_decode_be("cuda-emu", keys[0], 1, TL, NL);
	/* caches that grow (16, 32 tokens) while decoding: the rings moved into new memory */
	int64_t TG[2] = { 37, 20 }, NG[2] = { 2, 15 };
	check_decode_be("cuda-emu", keys[0], 2, TG, NG);
	check_decode_be("cuda-emu", keys[1], 2, TG, NG);
}

#include "runtime/core/attention.h"
#include "runtime/backend.h"
#include "runtime/cuda/cuda.h"
#include "gen/cuda/cudagen.h"

/*
 * A device cache copies the weights to the device only when they change
 * (decode.c, dweights): weights changed in place, at the same addresses,
 * between two passes over one cache reach the kernel. One token per call
 * (every row after the first through the kernel), each pass checked
 * against the reference with the weights it ran with.
 */
TEST(decode_cuda_emu_weights_change_in_place)
{
	static const char key[] = "h4kv2d8-pre3x5-hpre-post2x3-hc2-both-gn-gate-f32";
	const int64_t T = 9;
	struct mta_problem p;
	struct mta_weights w;
	struct mta_wpart parts[MTA_WPARTS_MAX];
	mta_context *ctx = NULL;
	mta_cache *c = NULL;
	REQUIRE(mta_problem_from_key(key, &p) == MTA_OK);
	mt_kcache();
	REQUIRE(mta_context_create(&ctx, "/nonexistent/mta.db", "cuda-emu", 0) == MTA_OK);
	struct mta_tensor q, k, v, o;
	void *bq = mt_tensor(p.dtype, 1, T, p.H, p.D, 0, &q);
	void *bk = mt_tensor(p.dtype, 1, T, p.Hkv, p.D, 0, &k);
	void *bv = mt_tensor(p.dtype, 1, T, p.Hkv, p.D, 0, &v);
	void *bo = mt_tensor(MTA_F32, 1, T, p.H, p.D, 0, &o);
	const size_t no = (size_t)(T * p.H * p.D), es = mta_dtype_size(p.dtype);
	double *ref = malloc(no * sizeof *ref);
	mt_weights(&p, &w);
	REQUIRE(ref && mta_cache_create_ctx(ctx, &p, 1, &c) == MTA_OK);
	REQUIRE(mta_cache_decoder(c) && mta_cache_decoder(c)->mem);
	for (int pass = 0; pass < 2; pass++) {
		if (pass) { /* new values at the same addresses, and the sequence started again */
			const int np = mta_weight_parts(&p, &w, parts);
			for (int i = 0; i < np; i++)
				for (size_t e = 0; e < parts[i].n; e++)
					((float *)*parts[i].ptr)[e] *= (float)(1.5 + 0.5 * mt_uniform());
			REQUIRE(mta_cache_reset(c, 0) == MTA_OK);
		}
		for (size_t e = 0; e < no; e++)
			((float *)bo)[e] = NAN;
		for (int64_t r = 0; r < T; r++) {
			struct mta_tensor q1 = q, k1 = k, v1 = v, o1 = o;
			q1.data = (char *)q.data + (size_t)(r * q.stride[1]) * es;
			k1.data = (char *)k.data + (size_t)(r * k.stride[1]) * es;
			v1.data = (char *)v.data + (size_t)(r * v.stride[1]) * es;
			o1.data = (float *)o.data + r * o.stride[1];
			q1.shape[1] = k1.shape[1] = v1.shape[1] = o1.shape[1] = 1;
			CHECKF(mta_decode(c, &q1, &k1, &v1, &w, NULL, &o1) == MTA_OK, "pass %d row %lld: %s",
			       pass, (long long)r, mta_last_error());
		}
		struct mta_compare cmp;
		REQUIRE(mta_reference(&p, &q, &k, &v, &w, ref) == MTA_OK);
		CHECKF(mta_compare(bo, ref, no, p.dtype, &cmp) == MTA_OK, "%s", mta_last_error());
		CHECKF(cmp.rel_l2 < mta_tolerance(p.dtype) && cmp.bad == 0,
		       "pass %d: rel L2 %g, %zu elements beyond the bound", pass, cmp.rel_l2, cmp.bad);
	}
	mta_cache_free(c);
	mta_context_free(ctx);
	mt_weights_free(&w);
	free(ref);
	free(bq);
	free(bk);
	free(bv);
	free(bo);
}

/*
 * The cuda backend's decode kernel (runtime/cuda/decode_drv.c): its loader
 * refuses a missing device with MTA_ENODEV; without a GPU a cuda context
 * is refused the same way (and `run --backend cuda --decode-from` exits 1
 * naming the missing driver); on a GPU machine, every option, prefills
 * 0, 1, cq-1 and T-1, ragged batches and rows longer than a block's
 * threads, each row equal to the forward.
 */
TEST(decode_cuda_on_the_gpu)
{
	struct mta_problem p;
	struct mta_decoder dec;
	struct mta_cuda_decode *kd = (struct mta_cuda_decode *)&dec;
	mta_context *ctx = NULL;
	char *out = NULL;
	int n = 0;
	REQUIRE(mta_problem_from_key(keys[0], &p) == MTA_OK);
	memset(&dec, 0xff, sizeof dec);
	CHECK_EQ_INT(mta_cuda_decode_load(NULL, &p, NULL, &kd, &dec), MTA_ENODEV);
	CHECK(kd == NULL && dec.fn == NULL && dec.mem == NULL);
	CHECK_STR_CONTAINS(mta_last_error(), "no CUDA device");
	int st = mt_sh(&out, "MTATUNE_LIBCUDA=%s/none.so %s run --backend cuda --inputs %s/dev-gqa "
		       "--decode-from 3 --out %s/o.npy --db %s/none.db", mt_tmpdir(), mt_bin(),
		       mt_golden_dir(), mt_tmpdir(), mt_tmpdir());
	CHECK_EQ_INT(st, 1);
	CHECK_STR_CONTAINS(out, "backend cuda failed (ENODEV): no CUDA driver (libcuda.so.1) found");
	free(out);
	const int have = mta_cuda_device_count(&n) == MTA_OK;
	const int rc = mta_context_create(&ctx, NULL, "cuda", 0);
	if (!have) {
		CHECK_EQ_INT(rc, MTA_ENODEV);
		CHECK(ctx == NULL);
		return;
	}
	REQUIRE(rc == MTA_OK || (mt_fail(__FILE__, __LINE__, "%s", mta_last_error()), 0));
	mta_context_free(ctx);
	for (size_t i = 0; i < sizeof keys / sizeof keys[0]; i++) {
		REQUIRE(mta_problem_from_key(keys[i], &p) == MTA_OK);
		const int64_t T = 40;
		int64_t Ns[] = { 0, 1, p.cq > 1 ? p.cq - 1 : 2, T - 1 };
		for (size_t j = 0; j < sizeof Ns / sizeof Ns[0]; j++) {
			int64_t t[1] = { T }, nn[1] = { Ns[j] };
			check_decode_be("cuda", keys[i], 1, t, nn);
		}
		int64_t TB[3] = { 9, 1, 300 }, NB[3] = { 4, 0, 200 };
		check_decode_be("cuda", keys[i], 3, TB, NB);
	}
}

/*
 * Every point of the CUDA decode space (gen/cuda/space.c: warps 2, 4, 8;
 * P.V chunks of 32, 128, 512 keys) on the emulator, through the backend's
 * decode_load: the kernel loaded is the variant's (its block and chunk,
 * which the loader reads back from it), and its rows, up to 70 columns
 * (three chunks of 32, two columns a thread of 2 warps), B=2 ragged, equal
 * the forward. Emulator-bound (about 70 s of emulated threads): the
 * sanitizer build runs the same decode_load and launches in
 * decode_cuda_emu and decode_cuda_emu_weights_change_in_place.
 */
TEST_COMPILE_BOUND(decode_cuda_emu_every_point)
{
	static const char key[] = "h4kv2d8-pre3x5-hpre-post2x3-hc2-both-gn-gate-f32";
	const struct mta_backend *be = &mta_backend_cuda_emu;
	struct mta_device *dev = NULL;
	struct mta_problem p;
	struct mta_variant *all = NULL;
	size_t n = 0;
	mt_kcache();
	REQUIRE(mta_problem_from_key(key, &p) == MTA_OK);
	REQUIRE(mta_variant_space_op(&p, MTA_BACKEND_CUDA, MTA_OP_DECODE, &all, &n) == MTA_OK);
	CHECK_EQ_INT(n, 9);
	REQUIRE(be->open(0, 0, &dev) == MTA_OK);
	for (size_t i = 0; i < n; i++) {
		struct mta_decoder dec;
		void *h = NULL;
		char spec[MTA_SPEC_MAX];
		REQUIRE(mta_variant_format(&all[i], spec, sizeof spec) == MTA_OK);
		int rc = be->decode_load(dev, &p, &all[i], &h, &dec);
		CHECKF(rc == MTA_OK, "%s: %s", spec, mta_last_error());
		if (rc)
			continue;
		int64_t T[2] = { 70, 20 }, N[2] = { 0, 3 };
		check_decode_on(NULL, &dec, key, 2, T, N, NULL);
		be->decode_unload(h);
	}
	be->close(dev);
	free(all);
}

/* ---- the pool under jobs of changing width ---- */

struct pool_stress {
	int runs[8]; /* atomic: how often each tid ran the current job */
};

static void pool_stress_job(void *arg, int tid)
{
	struct pool_stress *s = arg;
	__atomic_add_fetch(&s->runs[tid], 1, __ATOMIC_RELAXED);
}

/*
 * Jobs of 8, 2, 8, 2, ... threads (more than the cores, so that workers
 * are preempted between reads); each tid of a job runs it exactly once.
 */
static int pool_stress_kernel(const struct mta_kargs *a)
{
	for (int j = 0; j < 20000; j++) {
		const int n = j % 2 ? 2 : 8;
		struct pool_stress s = { { 0 } };
		a->pool_run(a->pool, n, pool_stress_job, &s);
		for (int t = 0; t < 8; t++)
			if (s.runs[t] != (t < n)) {
				fprintf(stderr, "job %d of %d threads: tid %d ran %d times\n", j, n, t,
					s.runs[t]);
				return 1;
			}
	}
	return 0;
}

/*
 * A worker left out of a job (tid 2 of a 2-thread job) may wake after the
 * caller has written the next job's thread count. It once read that count
 * for the old job, ran the next job's function twice, drove the pending
 * count below zero, and the caller waited forever: a rare hang of
 * decode_cpu_threads_identical (2 threads, then 3, then 2). Now a job's
 * count travels with its generation. 20000 jobs of alternating width (8
 * and 2 threads): every tid of every job runs once, none of the rest, no
 * hang.
 */
TEST(pool_jobs_of_changing_width_run_each_tid_once)
{
	struct mta_pool *pool = NULL;
	REQUIRE(mta_pool_create(&pool) == MTA_OK);
	struct mta_kargs a;
	memset(&a, 0, sizeof a);
	CHECK(mta_pool_call(pool, pool_stress_kernel, &a) == 0);
	mta_pool_free(pool);
}
