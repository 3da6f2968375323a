/*
 * test_varlen.c: packed documents (runtime/mta.h, "packed documents"): the
 * reference equals the plain reference run document by document; every CPU
 * kernel family and option, and the CUDA kernels on the emulator, equal the
 * reference through the harness (mta_check_varlen: fresh random inputs,
 * output poisoned, relative L2 and every element); documents of length 0,
 * 1 and shorter than the kernels and tiles; bad cu_seqlens refused. The
 * packed backward: its reference equals the plain one run document by
 * document (weight gradients summed in order), the CPU and emulated CUDA
 * backwards equal it through the harness (mta_check_bwd_varlen), it is
 * deterministic and refuses bad input before writing.
 */
#include "tests/harness.h"
#include "tests/cpu_util.h"
#include "tests/fixtures.h"
#include "runtime/backend.h"
#include "runtime/core/varlen.h"
#include "runtime/core/kargs_bwd.h"

#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/*
 * Random document lengths summing to at most 'total' into cu (cap nmax
 * documents): lengths drawn from 0..maxlen with 0, 1 and 2 forced among
 * the first ones, so boundaries sit everywhere. Returns ndocs.
 */
static int64_t random_docs(int64_t total, int64_t maxlen, int64_t *cu, int64_t nmax)
{
	static const int64_t forced[] = { 1, 0, 2, 1 };
	int64_t n = 0, at = 0;
	cu[0] = 0;
	while (at < total && n + 1 < nmax) {
		int64_t l = n < 4 ? forced[(n + (int64_t)(mt_seed() % 4)) % 4]
				  : (int64_t)((mt_uniform() + 1) / 2 * (double)(maxlen + 1));
		if (l > total - at)
			l = total - at;
		at += l;
		cu[++n] = at;
	}
	if (at < total)
		cu[n] = total; /* the last document takes the rest */
	return n;
}

/* The packed reference equals mta_reference on each document copied out alone. */
TEST(varlen_reference_equals_per_document)
{
	static const char *keys[] = {
		"h4kv2d8-pre3x5-hpre-post2x3-hc2-both-gn-gate-f32",
		"h2kv1d5-pre2x3-post3x3-hpost-left-gnr-bf16",
		"h3kv3d4-both-f32",
	};
	for (size_t ki = 0; ki < sizeof keys / sizeof keys[0]; ki++) {
		struct mta_problem p;
		struct mta_tensor q, k, v;
		struct mta_weights w;
		int64_t cu[32], T = 40;
		REQUIRE(mta_problem_from_key(keys[ki], &p) == MTA_OK);
		int64_t nd = random_docs(T, 9, cu, 32);
		void *bq = mt_tensor(p.dtype, 1, T, p.H, p.D, 0, &q);
		void *bk = mt_tensor(p.dtype, 1, T, p.Hkv, p.D, 0, &k);
		void *bv = mt_tensor(p.dtype, 1, T, p.Hkv, p.D, 0, &v);
		mt_weights(&p, &w);
		size_t n = (size_t)(T * p.H * p.D);
		double *packed = malloc(n * sizeof *packed), *alone = malloc(n * sizeof *alone);
		double *whole = malloc(n * sizeof *whole);
		REQUIRE(packed && alone && whole);
		for (size_t i = 0; i < n; i++)
			packed[i] = alone[i] = NAN;
		CHECKF(mta_reference_varlen(&p, &q, &k, &v, &w, cu, nd, packed) == MTA_OK, "%s",
		       mta_last_error());
		for (int64_t d = 0; d < nd; d++) {
			const int64_t s = cu[d], l = cu[d + 1] - cu[d];
			if (!l)
				continue;
			/* the document copied into tensors of its own */
			struct mta_tensor qd, kd, vd, x;
			size_t es = mta_dtype_size(p.dtype);
			void *cq = malloc((size_t)(l * p.H * p.D) * es);
			void *ck = malloc((size_t)(l * p.Hkv * p.D) * es);
			void *cv = malloc((size_t)(l * p.Hkv * p.D) * es);
			REQUIRE(cq && ck && cv);
			mta_varlen_view(&q, s, l, &x);
			memcpy(cq, x.data, (size_t)(l * p.H * p.D) * es);
			mta_varlen_view(&k, s, l, &x);
			memcpy(ck, x.data, (size_t)(l * p.Hkv * p.D) * es);
			mta_varlen_view(&v, s, l, &x);
			memcpy(cv, x.data, (size_t)(l * p.Hkv * p.D) * es);
			mta_tensor_init(&qd, cq, p.dtype, 1, l, p.H, p.D);
			mta_tensor_init(&kd, ck, p.dtype, 1, l, p.Hkv, p.D);
			mta_tensor_init(&vd, cv, p.dtype, 1, l, p.Hkv, p.D);
			CHECK(mta_reference(&p, &qd, &kd, &vd, &w, alone + s * p.H * p.D) == MTA_OK);
			free(cq);
			free(ck);
			free(cv);
		}
		for (size_t i = 0; i < n; i++)
			CHECKF(packed[i] == alone[i], "%s element %zu: packed %g, alone %g", keys[ki],
			       i, packed[i], alone[i]);
		/* the boundaries matter: the unpacked forward differs after the first document */
		CHECK(mta_reference(&p, &q, &k, &v, &w, whole) == MTA_OK);
		CHECKF(mt_rel_l2_f64(whole, packed, n) > 1e-3, "%s: packing changed nothing",
		       keys[ki]);
		free(packed);
		free(alone);
		free(whole);
		free(bq);
		free(bk);
		free(bv);
		mt_weights_free(&w);
	}
}

/*
 * Backend be's kernel (spec NULL: the default) on a packed sequence of
 * documents cu, through the harness; the relative L2 error checked against
 * the dtype's tolerance and the element-wise bound, both from mta.h.
 */
static void check_packed(const struct mta_backend *be, const char *key, const char *spec,
			 const int64_t *cu, int64_t nd, int strided, int nthreads)
{
	struct mta_problem p;
	struct mta_variant v;
	struct mta_runner r = { be, NULL, NULL, NULL };
	struct mta_check_opts o = { 1, cu[nd], mt_seed() ^ (unsigned long long)cu[nd], strided };
	struct mta_compare cmp;
	int rc;
	mt_kcache();
	if ((rc = mta_problem_from_key(key, &p)) ||
	    (rc = spec ? mta_variant_parse(spec, &v) : mta_variant_default(&p, be->variants, &v)) ||
	    (rc = be->open(0, nthreads, &r.dev)) ||
	    (rc = be->load(r.dev, NULL, &p, &v, NULL, 0, &r.k))) {
		CHECKF(0, "%s %s %s: %s", be->name, key, spec ? spec : "(default)", mta_last_error());
		goto out;
	}
	cmp.rel_l2 = INFINITY;
	cmp.bad = 1;
	rc = mta_check_varlen(&r, &p, &o, cu, nd, &cmp);
	CHECKF(rc == MTA_OK, "%s %s %s T=%lld ndocs=%lld: %s", be->name, key,
	       spec ? spec : "(default)", (long long)cu[nd], (long long)nd, mta_last_error());
	CHECKF(cmp.bad == 0 && cmp.rel_l2 < mta_tolerance(p.dtype), "%s %s: rel L2 %g, %zu bad",
	       key, spec ? spec : "(default)", cmp.rel_l2, cmp.bad);
out:
	be->unload(r.k);
	be->close(r.dev);
}

struct vcase {
	const char *key, *spec;
	int64_t T, maxlen;
	int strided, threads;
};

static void run_packed(const struct mta_backend *be, const struct vcase *c, int n)
{
	for (int i = 0; i < n; i++) {
		int64_t cu[64];
		int64_t nd = random_docs(c[i].T, c[i].maxlen, cu, 64);
		check_packed(be, c[i].key, c[i].spec, cu, nd, c[i].strided, c[i].threads);
	}
}

/* Both CPU families, every option, tiles and kernels longer than many documents. */
TEST(varlen_cpu_kernels)
{
	static const struct vcase c[] = {
		{ "h4kv2d13-pre3x5-post2x3-hc2-right-gn-gate-s0.3-f32",
		  "cpu:v1,bq=5,bk=7,hpb=2,vec=4,algo=0", 60, 12, 0, 0 },
		{ "h4kv2d13-pre3x5-post2x3-hc2-right-gn-gate-s0.3-f32",
		  "cpu:v2,bq=5,bk=16,hpb=2,vec=4", 60, 12, 1, 2 },
		{ "h3kv3d6-pre2x3-hpre-post3x3-hpost-both-gnr-f32",
		  "cpu:v1,bq=4,bk=5,hpb=0,vec=16", 50, 9, 1, 2 },
		{ "h3kv3d6-pre2x3-hpre-post3x3-hpost-both-gnr-f32",
		  "cpu:v2,bq=4,bk=16,hpb=0,vec=8", 50, 9, 0, 0 },
		{ "h2kv2d8-both-f32", "cpu:v1,bq=16,bk=16,hpb=1,vec=4", 70, 40, 0, 3 },
		{ "h2kv2d8-both-f32", "cpu:v2,bq=16,bk=16,hpb=1,vec=4", 70, 40, 0, 3 },
		{ "h2kv1d6-pre5x7-post4x5-left-f32", "cpu:v1,bq=2,bk=2,hpb=1", 45, 6, 0, 0 },
		{ "h2kv1d6-pre5x7-post4x5-left-f32", "cpu:v2,bq=2,bk=16,hpb=1,vec=16", 45, 6, 1, 2 },
		{ "h4kv4d8-hc2-both-f32", "cpu:v2,bq=7,bk=32,hpb=2,vec=16", 80, 30, 1, 2 },
		{ "h4kv4d16-pre3x3-hpre-post3x5-hpost-both-gn-gate-bf16",
		  "cpu:v2,bq=8,bk=16,hpb=0", 40, 15, 0, 0 },
		{ "h4kv2d8-pre2x3-hc4-left-gnr-f16", "cpu:v1,bq=8,bk=8,hpb=0,vec=16", 40, 15, 1, 0 },
		{ "h4kv2d13-pre6x11-hpre-post6x11-hc4-both-gn-gate-f32", NULL, 90, 25, 0, 0 },
	};
	run_packed(&mta_backend_cpu, c, (int)(sizeof c / sizeof c[0]));
}

/* Long documents: v2 cuts each into several chains (halo rows recomputed at each start). */
TEST(varlen_cpu_long_documents)
{
	static const int64_t cu[] = { 0, 1, 330, 332, 700 };
	check_packed(&mta_backend_cpu, "h4kv2d13-pre6x11-hpre-post6x11-hc4-both-gn-gate-f32",
		     "cpu:v2,bq=16,bk=64,hpb=0,vec=8", cu, 4, 0, 2);
	check_packed(&mta_backend_cpu, "h4kv2d13-pre6x11-both-f32",
		     "cpu:v1,bq=32,bk=64,hpb=1,vec=8", cu, 4, 1, 2);
	/* one document: the packed call is the plain forward */
	static const int64_t one[] = { 0, 77 };
	check_packed(&mta_backend_cpu, "h2kv2d8-post2x3-hpost-both-s40-f32",
		     "cpu:v2,bq=4,bk=16,hpb=0,vec=4", one, 1, 0, 0);
}

/*
 * The CUDA kernels on the emulator: every family takes the packed documents
 * in one launch (blocks mapped to (document, query tile)); documents of
 * length 0, 1, 2, shorter than the tiles (bq) and longer, ragged; small
 * sizes (the emulator is slow).
 */
TEST(varlen_cuda_emu)
{
	static const int64_t cu[] = { 0, 1, 1, 4, 13, 14, 30 };
	/* 0, 2, 1, 20, 0, 5, 1, 19: boundaries inside, at and past 16-row tiles */
	static const int64_t cu16[] = { 0, 0, 2, 3, 23, 23, 28, 29, 48 };
	REQUIRE(mta_backend_cuda_emu.forward_varlen != NULL); /* one launch, not one per document */
	check_packed(&mta_backend_cuda_emu, "h2kv1d8-pre3x5-hpre-post2x3-hc2-both-gn-gate-f32",
		     NULL, cu, 6, 0, 0);
	check_packed(&mta_backend_cuda_emu, "h2kv2d8-both-f32", NULL, cu, 6, 1, 0);
	check_packed(&mta_backend_cuda_emu, "h2kv1d8-pre3x5-hpre-post2x3-hc2-both-gn-gate-f32",
		     "cuda:v1,bq=4,bk=8,hpb=2,warps=2", cu16, 8, 1, 0);
	check_packed(&mta_backend_cuda_emu, "h2kv2d8-pre2x3-post3x3-hpost-left-gnr-bf16",
		     "cuda:v1,bq=8,bk=16,hpb=2,warps=1", cu16, 8, 0, 0);
	check_packed(&mta_backend_cuda_emu, "h2kv1d16-pre3x5-hpre-post2x3-hc2-both-gn-gate-bf16",
		     "cuda:v2,bq=16,bk=16,hpb=2,warps=2", cu16, 8, 0, 0);
	check_packed(&mta_backend_cuda_emu, "h2kv1d16-pre3x5-hpre-post2x3-hc2-both-gn-gate-bf16",
		     "cuda:v3,bq=16,bk=16,hpb=2,warps=2", cu16, 8, 1, 0);
	check_packed(&mta_backend_cuda_emu, "h2kv2d16-both-f16", "cuda:v3,bq=16,bk=16,hpb=1,warps=1",
		     cu16, 8, 0, 0);
	/* tall tiles: boundaries inside, at and past 64-row tiles */
	static const int64_t cu64[] = { 0, 0, 2, 3, 70, 70, 75, 76, 140 };
	check_packed(&mta_backend_cuda_emu, "h2kv1d16-pre3x5-hpre-post2x3-hc2-both-gn-gate-bf16",
		     "cuda:v3,bq=64,bk=32,hpb=2,warps=8", cu64, 8, 0, 0);
	/* random documents */
	int64_t rc[64];
	int64_t nd = random_docs(40, 12, rc, 64);
	check_packed(&mta_backend_cuda_emu, "h2kv1d8-pre3x5-hpre-post2x3-hc2-both-gn-gate-f32",
		     "cuda:v1,bq=4,bk=8,hpb=2,warps=2", rc, nd, 0, 0);
}

/* Bad offsets and shapes are refused with what was wrong and what was expected. */
TEST(varlen_refuses_bad_cu_seqlens)
{
	static const int64_t ok[] = { 0, 3, 3, 8 };
	static const int64_t start[] = { 1, 3, 8 }, dec[] = { 0, 5, 4, 8 }, end[] = { 0, 3, 7 };
	CHECK(mta_check_cu_seqlens(ok, 3, 8) == MTA_OK);
	CHECK(mta_check_cu_seqlens(start, 2, 8) == MTA_EINVAL);
	CHECK_STR_CONTAINS(mta_last_error(), "cu_seqlens[0] is 1, expected 0");
	CHECK(mta_check_cu_seqlens(dec, 3, 8) == MTA_EINVAL);
	CHECK_STR_CONTAINS(mta_last_error(), "decreases at index 2");
	CHECK(mta_check_cu_seqlens(end, 2, 8) == MTA_EINVAL);
	CHECK_STR_CONTAINS(mta_last_error(), "expected total_T = 8");
	CHECK(mta_check_cu_seqlens(ok, 0, 8) == MTA_EINVAL);
	CHECK(mta_check_cu_seqlens(NULL, 3, 8) == MTA_EINVAL);
	int32_t i32[] = { 0, 3, 3, 8 };
	int64_t wide[4];
	mta_cu_seqlens_from_i32(i32, 4, wide);
	CHECK(!memcmp(wide, ok, sizeof wide));

	/* B = 2 is refused by the packed forward, and nothing is written */
	struct mta_problem p;
	struct mta_tensor q, k, v, o;
	mta_problem_init(&p, 2, 2, 4);
	void *bq = mt_tensor(MTA_F32, 2, 8, 2, 4, 0, &q), *bk = mt_tensor(MTA_F32, 2, 8, 2, 4, 0, &k);
	void *bv = mt_tensor(MTA_F32, 2, 8, 2, 4, 0, &v), *bo = mt_tensor(MTA_F32, 2, 8, 2, 4, 0, &o);
	mta_context *ctx = NULL;
	mt_kcache();
	REQUIRE(mta_context_create(&ctx, "/nonexistent/mta.db", "cpu", 0) == MTA_OK);
	float first = ((float *)bo)[0];
	CHECK(mta_forward_varlen(ctx, &p, &q, &k, &v, NULL, ok, 3, &o) == MTA_ESHAPE);
	CHECK_STR_CONTAINS(mta_last_error(), "B=1");
	CHECK(((float *)bo)[0] == first);
	q.shape[0] = k.shape[0] = v.shape[0] = o.shape[0] = 1;
	CHECK(mta_forward_varlen(ctx, &p, &q, &k, &v, NULL, dec, 3, &o) == MTA_EINVAL);
	CHECK_STR_CONTAINS(mta_last_error(), "decreases");
	CHECK(mta_forward_varlen(ctx, &p, &q, &k, &v, NULL, ok, 3, &o) == MTA_OK);
	/*
	 * Tensors marked device memory: refused by name by every host-tensor
	 * call (the packed and training ones dereferenced them on the host),
	 * and nothing is written.
	 */
	for (int x = 0; x < 4; x++) {
		struct mta_tensor qx = q, kx = k, vx = v, ox = o;
		struct mta_tensor *t[4] = { &qx, &kx, &vx, &ox };
		static const char *name[4] = { "tensor q", "tensor k", "tensor v", "tensor o" };
		t[x]->memory = MTA_MEM_DEVICE;
		t[x]->data = (void *)(uintptr_t)16; /* never read */
		for (size_t e = 0; e < 8 * 2 * 4; e++)
			((float *)bo)[e] = NAN;
		int rcs[3];
		char saved[64];
		rcs[0] = mta_forward_varlen(ctx, &p, &qx, &kx, &vx, NULL, ok, 3, &ox);
		CHECK_STR_CONTAINS(mta_last_error(), name[x]);
		rcs[1] = mta_forward(ctx, &p, &qx, &kx, &vx, NULL, &ox);
		CHECK_STR_CONTAINS(mta_last_error(), name[x]);
		rcs[2] = mta_forward_train(ctx, &p, &qx, &kx, &vx, NULL, &ox, saved);
		CHECK_STR_CONTAINS(mta_last_error(), "takes host tensors");
		for (int i = 0; i < 3; i++)
			CHECKF(rcs[i] == MTA_EINVAL, "%s marked device: call %d returned %d", name[x], i,
			       rcs[i]);
		size_t written = 0;
		for (size_t e = 0; e < 8 * 2 * 4; e++)
			written += !isnan(((float *)bo)[e]);
		CHECK_EQ_INT(written, 0);
	}
	mta_context_free(ctx);
	free(bq);
	free(bk);
	free(bv);
	free(bo);
}

/* ---- the packed backward (mta_forward_train_varlen, mta_backward_varlen) ---- */

enum { VG_N = 11 };

/* Double gradients of p at T (NaN-poisoned) as a reference gradients struct; free with vg_free. */
static void vg_alloc(const struct mta_problem *p, int64_t T, double *e[VG_N],
		     struct mta_reference_grads *g)
{
	for (int i = 0; i < VG_N; i++) {
		size_t n = mta_grad_elems(p, 1, T, i);
		e[i] = n ? malloc(n * sizeof *e[i]) : NULL;
		REQUIRE(!n || e[i]);
		for (size_t x = 0; x < n; x++)
			e[i][x] = NAN;
	}
	*g = (struct mta_reference_grads){ e[0], e[1], e[2], e[3], e[4], e[5],
					   e[6], e[7], e[8], e[9], e[10], NULL };
}

static void vg_free(double *e[VG_N])
{
	for (int i = 0; i < VG_N; i++)
		free(e[i]);
}

/*
 * The packed reference backward equals mta_reference_backward on each
 * document copied out alone (dq, dk, dv in its rows, bit for bit), with
 * each weight's gradient the sum over documents in document order (bit for
 * bit); and the boundaries matter (the unpacked backward differs).
 */
TEST(varlen_bwd_reference_equals_per_document)
{
	static const char *keys[] = {
		"h4kv2d8-pre3x5-hpre-post2x3-hc2-both-gn-gate-f32",
		"h2kv1d5-pre2x3-post3x3-hpost-left-gnr-bf16",
		"h3kv3d4-pre4x2-right-gate-f32",
	};
	for (size_t ki = 0; ki < sizeof keys / sizeof keys[0]; ki++) {
		struct mta_problem p;
		struct mta_tensor q, k, v, dout;
		struct mta_weights w;
		int64_t cu[32], T = 36;
		REQUIRE(mta_problem_from_key(keys[ki], &p) == MTA_OK);
		int64_t nd = random_docs(T, 9, cu, 32);
		void *bq = mt_tensor(p.dtype, 1, T, p.H, p.D, 0, &q);
		void *bk = mt_tensor(p.dtype, 1, T, p.Hkv, p.D, 0, &k);
		void *bv = mt_tensor(p.dtype, 1, T, p.Hkv, p.D, 0, &v);
		void *bd = mt_tensor(MTA_F32, 1, T, p.H, p.D, 0, &dout);
		mt_weights(&p, &w);
		double *pk[VG_N], *al[VG_N], *wh[VG_N];
		struct mta_reference_grads gp, ga, gw;
		vg_alloc(&p, T, pk, &gp);
		vg_alloc(&p, T, al, &ga);
		vg_alloc(&p, T, wh, &gw);
		for (int i = 3; i < VG_N; i++) /* the weights' sums start at 0 */
			for (size_t x = 0; x < mta_grad_elems(&p, 1, T, i); x++)
				al[i][x] = 0;
		CHECKF(mta_reference_backward_varlen(&p, &q, &k, &v, &w, &dout, cu, nd, &gp) ==
		       MTA_OK, "%s: %s", keys[ki], mta_last_error());
		int first = 1;
		for (int64_t d = 0; d < nd; d++) {
			const int64_t s = cu[d], l = cu[d + 1] - cu[d];
			if (!l)
				continue;
			/* the document copied into tensors of its own */
			struct mta_tensor qd, kd, vd, dd, x;
			size_t es = mta_dtype_size(p.dtype);
			void *cq = malloc((size_t)(l * p.H * p.D) * es);
			void *ck = malloc((size_t)(l * p.Hkv * p.D) * es);
			void *cv = malloc((size_t)(l * p.Hkv * p.D) * es);
			float *cd = malloc((size_t)(l * p.H * p.D) * sizeof *cd);
			REQUIRE(cq && ck && cv && cd);
			mta_varlen_view(&q, s, l, &x);
			memcpy(cq, x.data, (size_t)(l * p.H * p.D) * es);
			mta_varlen_view(&k, s, l, &x);
			memcpy(ck, x.data, (size_t)(l * p.Hkv * p.D) * es);
			mta_varlen_view(&v, s, l, &x);
			memcpy(cv, x.data, (size_t)(l * p.Hkv * p.D) * es);
			mta_varlen_view(&dout, s, l, &x);
			memcpy(cd, x.data, (size_t)(l * p.H * p.D) * sizeof *cd);
			mta_tensor_init(&qd, cq, p.dtype, 1, l, p.H, p.D);
			mta_tensor_init(&kd, ck, p.dtype, 1, l, p.Hkv, p.D);
			mta_tensor_init(&vd, cv, p.dtype, 1, l, p.Hkv, p.D);
			mta_tensor_init(&dd, cd, MTA_F32, 1, l, p.H, p.D);
			double *one[VG_N];
			struct mta_reference_grads g1;
			vg_alloc(&p, l, one, &g1);
			CHECK(mta_reference_backward(&p, &qd, &kd, &vd, &w, &dd, &g1) == MTA_OK);
			memcpy(al[0] + s * p.H * p.D, one[0], mta_grad_elems(&p, 1, l, 0) * sizeof(double));
			memcpy(al[1] + s * p.Hkv * p.D, one[1], mta_grad_elems(&p, 1, l, 1) * sizeof(double));
			memcpy(al[2] + s * p.Hkv * p.D, one[2], mta_grad_elems(&p, 1, l, 2) * sizeof(double));
			for (int i = 3; i < VG_N; i++)
				for (size_t e = 0; e < mta_grad_elems(&p, 1, l, i); e++)
					al[i][e] = first ? one[i][e] : al[i][e] + one[i][e];
			first = 0;
			vg_free(one);
			free(cq);
			free(ck);
			free(cv);
			free(cd);
		}
		for (int i = 0; i < VG_N; i++)
			for (size_t e = 0; e < mta_grad_elems(&p, 1, T, i); e++)
				CHECKF(pk[i][e] == al[i][e], "%s gradient %d element %zu: packed %g, "
				       "alone %g", keys[ki], i, e, pk[i][e], al[i][e]);
		/* the boundaries matter: the unpacked backward differs */
		CHECK(mta_reference_backward(&p, &q, &k, &v, &w, &dout, &gw) == MTA_OK);
		CHECKF(mt_rel_l2_f64(wh[0], pk[0], mta_grad_elems(&p, 1, T, 0)) > 1e-3,
		       "%s: packing changed nothing in dq", keys[ki]);
		vg_free(pk);
		vg_free(al);
		vg_free(wh);
		free(bq);
		free(bk);
		free(bv);
		free(bd);
		mt_weights_free(&w);
	}
}

/*
 * Backend be's training kernel (the default backward variant) on packed
 * documents cu through the harness (mta_check_bwd_varlen: fresh inputs,
 * output and gradients poisoned, every gradient against
 * mta_reference_backward_varlen by mta_compare_grad); and, when ctx is
 * set, the public API on that context. Returns the worst rel L2.
 */
static double check_packed_bwd(const struct mta_backend *be, mta_context *ctx, const char *key,
			       const int64_t *cu, int64_t nd, int strided)
{
	struct mta_problem p;
	struct mta_variant v;
	struct mta_runner r = { be, NULL, NULL, ctx };
	struct mta_check_opts o = { 1, cu[nd], mt_seed() ^ (unsigned long long)(cu[nd] * 7 + nd),
				    strided };
	struct mta_compare cmp = { .rel_l2 = INFINITY, .bad = 1 };
	double worst = INFINITY;
	int rc;
	mt_kcache();
	if ((rc = mta_problem_from_key(key, &p)) ||
	    (!ctx && ((rc = mta_variant_default_op(&p, be->variants, MTA_OP_BWD, &v)) ||
		      (rc = be->open(0, 2, &r.dev)) || (rc = be->train_load(r.dev, &p, &v, &r.k))))) {
		CHECKF(0, "%s %s: %s", be ? be->name : "context", key, mta_last_error());
		goto out;
	}
	rc = mta_check_bwd_varlen(&r, &p, &o, cu, nd, &cmp);
	CHECKF(rc == MTA_OK, "%s %s T=%lld ndocs=%lld strided=%d: %s", ctx ? "context" : be->name,
	       key, (long long)cu[nd], (long long)nd, strided, mta_last_error());
	CHECKF(rc || (cmp.n > 0 && cmp.bad == 0 && cmp.rel_l2 <= cmp.tol),
	       "%s: worst gradient rel L2 %g, %zu bad", key, cmp.rel_l2, cmp.bad);
	if (!rc)
		worst = cmp.rel_l2;
out:
	if (!ctx) {
		if (r.k)
			be->unload(r.k);
		if (r.dev)
			be->close(r.dev);
	}
	return worst;
}

/*
 * The CPU backward on packed documents: every option on (both head mixings
 * after the softmax, the three paddings, GQA, group norm with rescale,
 * gate), documents of length 0, 1, 2 and shorter than cq and ck, ragged,
 * strided inputs; through a backend kernel and through a context.
 */
TEST(varlen_bwd_cpu)
{
	static const char *keys[] = {
		"h4kv2d16-pre3x5-hpre-post2x3-hc2-both-gnr-gate",
		"h4kv2d8-pre4x3-hpre-post3x3-hpost-left-gn-gate",
		"h2kv1d8-pre2x4-post2x2-right-gate-s0.6",
		"h4kv4d16-pre3x3-hpre-post2x3-hc2-both-gn-gate-bf16",
	};
	/* lengths 1, 0, 2, 4 (< ck=5), 13, 1, 9: every boundary kind */
	static const int64_t fixed[] = { 0, 1, 1, 3, 7, 20, 21, 30 };
	double worst = 0;
	const struct mta_backend *be = NULL;
	REQUIRE(mta_backend_find("cpu", &be) == MTA_OK && be->train_load);
	for (size_t i = 0; i < sizeof keys / sizeof keys[0]; i++) {
		int64_t cu[64];
		int64_t nd = random_docs(45, 11, cu, 64);
		double e1 = check_packed_bwd(be, NULL, keys[i], fixed, 7, (int)(i % 2));
		double e2 = check_packed_bwd(be, NULL, keys[i], cu, nd, (int)((i + 1) % 2));
		if (strstr(keys[i], "bf16"))
			continue;
		worst = e1 > worst ? e1 : worst;
		worst = e2 > worst ? e2 : worst;
	}
	/* through the public API on a context (mta_forward_train_varlen, mta_backward_varlen) */
	char db[600];
	snprintf(db, sizeof db, "%s/no-such-varlen-bwd.db", mt_tmpdir());
	mta_context *ctx = NULL;
	REQUIRE(mta_context_create(&ctx, db, "cpu", 0) == MTA_OK);
	double e = check_packed_bwd(NULL, ctx, keys[0], fixed, 7, 1);
	worst = e > worst ? e : worst;
	mta_context_free(ctx);
	printf("  packed documents, every option, f32: worst gradient rel L2 %.3g (tolerance %g)\n",
	       worst, mta_tolerance_grad(MTA_F32));
}

/* The CUDA backward on the emulator, packed: small sizes (the emulator is slow). */
TEST(varlen_bwd_cuda_emu)
{
	/* lengths 1, 0, 3 (< cq, ck), 17 (past a 16-row task), 1, 6 */
	static const int64_t cu[] = { 0, 1, 1, 4, 21, 22, 28 };
	check_packed_bwd(&mta_backend_cuda_emu, NULL,
			 "h2kv1d8-pre3x5-hpre-post2x3-hc2-both-gnr-gate", cu, 6, 0);
	check_packed_bwd(&mta_backend_cuda_emu, NULL,
			 "h2kv2d8-pre2x3-hpre-post3x3-hpost-left-gn-gate", cu, 6, 1);
	mta_context *ctx = NULL;
	char db[600];
	snprintf(db, sizeof db, "%s/no-such-varlen-bwd-emu.db", mt_tmpdir());
	REQUIRE(mta_context_create(&ctx, db, "cuda-emu", 0) == MTA_OK);
	static const int64_t cu2[] = { 0, 2, 3, 12 };
	check_packed_bwd(NULL, ctx, "h2kv1d8-pre3x5-hpre-post2x3-hc2-both-gn-gate-bf16", cu2, 3, 0);
	mta_context_free(ctx);
}

/*
 * The packed backward is deterministic (same bits twice), refuses bad
 * input before writing anything (B=2, bad cu_seqlens, a missing gradient
 * buffer, no saved state), and its saved state is mta_saved_bytes(p, 1,
 * total_T) bytes: the call reads nothing past it (the buffer is exact).
 */
TEST(varlen_bwd_deterministic_and_refuses_bad_input)
{
	struct mta_problem p;
	struct mta_tensor q, k, v, o, dout;
	struct mta_weights w;
	const int64_t T = 24;
	static const int64_t cu[] = { 0, 5, 5, 6, 24 }, dec[] = { 0, 6, 5, 6, 24 };
	REQUIRE(mta_problem_from_key("h2kv1d8-pre3x3-hpre-post2x3-hc2-both-gn-gate", &p) == MTA_OK);
	void *bq = mt_tensor(p.dtype, 1, T, p.H, p.D, 0, &q);
	void *bk = mt_tensor(p.dtype, 1, T, p.Hkv, p.D, 0, &k);
	void *bv = mt_tensor(p.dtype, 1, T, p.Hkv, p.D, 0, &v);
	void *bd = mt_tensor(MTA_F32, 1, T, p.H, p.D, 0, &dout);
	mt_weights(&p, &w);
	float *ob = malloc((size_t)(T * p.H * p.D) * sizeof *ob);
	mta_tensor_init(&o, ob, MTA_F32, 1, T, p.H, p.D);
	int64_t sb = mta_saved_bytes(&p, 1, T);
	REQUIRE(sb == (int64_t)sizeof(float) * T * p.H * (p.D + 1));
	float *saved = malloc((size_t)sb);
	float *g[2][VG_N];
	struct mta_grads gr[2];
	for (int r = 0; r < 2; r++) {
		for (int i = 0; i < VG_N; i++) {
			size_t n = mta_grad_elems(&p, 1, T, i);
			g[r][i] = n ? malloc(n * sizeof(float)) : NULL;
			for (size_t x = 0; x < n; x++)
				g[r][i][x] = NAN;
		}
		gr[r] = (struct mta_grads){ g[r][0], g[r][1], g[r][2], g[r][3], g[r][4], g[r][5],
					    g[r][6], g[r][7], g[r][8], g[r][9], g[r][10] };
	}
	char db[600];
	snprintf(db, sizeof db, "%s/no-such-varlen-bwd2.db", mt_tmpdir());
	mta_context *ctx = NULL;
	mt_kcache();
	REQUIRE(mta_context_create(&ctx, db, "cpu", 0) == MTA_OK);
	REQUIRE(mta_forward_train_varlen(ctx, &p, &q, &k, &v, &w, cu, 4, &o, saved) == MTA_OK);
	for (int r = 0; r < 2; r++)
		CHECKF(mta_backward_varlen(ctx, &p, &q, &k, &v, &w, saved, &dout, cu, 4, &gr[r]) ==
		       MTA_OK, "%s", mta_last_error());
	for (int i = 0; i < VG_N; i++)
		CHECKF(!g[0][i] || !memcmp(g[0][i], g[1][i], mta_grad_elems(&p, 1, T, i) * sizeof(float)),
		       "gradient %d differs between two calls", i);

	/* bad input: refused, nothing written (gr[1] poisoned again) */
	for (int i = 0; i < VG_N; i++)
		for (size_t x = 0; x < mta_grad_elems(&p, 1, T, i); x++)
			g[1][i][x] = NAN;
	CHECK(mta_backward_varlen(ctx, &p, &q, &k, &v, &w, saved, &dout, dec, 4, &gr[1]) ==
	      MTA_EINVAL);
	CHECK_STR_CONTAINS(mta_last_error(), "decreases at index 2");
	CHECK(mta_backward_varlen(ctx, &p, &q, &k, &v, &w, saved, &dout, cu, 3, &gr[1]) ==
	      MTA_EINVAL);
	CHECK_STR_CONTAINS(mta_last_error(), "expected total_T = 24");
	CHECK(mta_backward_varlen(ctx, &p, &q, &k, &v, &w, NULL, &dout, cu, 4, &gr[1]) ==
	      MTA_EINVAL);
	CHECK_STR_CONTAINS(mta_last_error(), "no saved state");
	struct mta_grads miss = gr[1];
	miss.kq_post = NULL;
	CHECK(mta_backward_varlen(ctx, &p, &q, &k, &v, &w, saved, &dout, cu, 4, &miss) ==
	      MTA_EINVAL);
	CHECK_STR_CONTAINS(mta_last_error(), "kq_post [H,1,cq2,ck2]");
	struct mta_tensor d16 = dout, dshort = dout;
	d16.dtype = MTA_BF16;
	dshort.shape[1] = T - 1;
	CHECK(mta_backward_varlen(ctx, &p, &q, &k, &v, &w, saved, &d16, cu, 4, &gr[1]) ==
	      MTA_ESHAPE);
	CHECK_STR_CONTAINS(mta_last_error(), "dout is bf16, expected f32");
	CHECK(mta_backward_varlen(ctx, &p, &q, &k, &v, &w, saved, &dshort, cu, 4, &gr[1]) ==
	      MTA_ESHAPE);
	CHECK_STR_CONTAINS(mta_last_error(), "expected the output's [1,24,2,8]");
	struct mta_tensor q2 = q, k2 = k, v2 = v, d2 = dout;
	q2.shape[0] = k2.shape[0] = v2.shape[0] = d2.shape[0] = 2;
	q2.shape[1] = k2.shape[1] = v2.shape[1] = d2.shape[1] = T / 2;
	CHECK(mta_backward_varlen(ctx, &p, &q2, &k2, &v2, &w, saved, &d2, cu, 4, &gr[1]) ==
	      MTA_ESHAPE);
	CHECK_STR_CONTAINS(mta_last_error(), "B=1");
	for (int i = 0; i < VG_N; i++)
		for (size_t x = 0; x < mta_grad_elems(&p, 1, T, i); x++)
			CHECKF(isnan(g[1][i][x]), "gradient %d element %zu written by a refused call",
			       i, x);
	/* the reference refuses the same */
	double *e[VG_N];
	struct mta_reference_grads rg;
	vg_alloc(&p, T, e, &rg);
	CHECK(mta_reference_backward_varlen(&p, &q, &k, &v, &w, &dout, dec, 4, &rg) == MTA_EINVAL);
	rg.gate_b = NULL;
	CHECK(mta_reference_backward_varlen(&p, &q, &k, &v, &w, &dout, cu, 4, &rg) == MTA_EINVAL);
	CHECK_STR_CONTAINS(mta_last_error(), "gate_b");
	vg_free(e);
	mta_context_free(ctx);
	for (int r = 0; r < 2; r++)
		for (int i = 0; i < VG_N; i++)
			free(g[r][i]);
	free(saved);
	free(ob);
	free(bq);
	free(bk);
	free(bv);
	free(bd);
	mt_weights_free(&w);
}

/* ---- the command line: mtatune run --cu-seqlens ---- */

#include "tuner/io/inputs.h"
#include "tuner/io/npy.h"

/*
 * A packed case: q, k, v [1,T,...] and every weight kind the key uses, for
 * h2kv1d8-pre3x5-hpre-post2x3-hc2-both-gn-gate.
 */
static const char *packed_case(int64_t T)
{
	static char dir[600];
	snprintf(dir, sizeof dir, "%s/packed", mt_tmpdir());
	mkdir(dir, 0777);
	mt_put_npy(dir, "q", 4, (int64_t)1, T, (int64_t)2, (int64_t)8);
	mt_put_npy(dir, "k", 4, (int64_t)1, T, (int64_t)1, (int64_t)8);
	mt_put_npy(dir, "v", 4, (int64_t)1, T, (int64_t)1, (int64_t)8);
	mt_put_npy(dir, "kq_pre", 4, (int64_t)2, (int64_t)1, (int64_t)3, (int64_t)5);
	mt_put_npy(dir, "head_pre", 2, (int64_t)2, (int64_t)2);
	mt_put_npy(dir, "kq_post", 4, (int64_t)2, (int64_t)1, (int64_t)2, (int64_t)3);
	mt_put_npy(dir, "head_post", 3, (int64_t)1, (int64_t)2, (int64_t)2);
	mt_put_npy(dir, "gn_weight", 1, (int64_t)8);
	mt_put_npy(dir, "gate_w", 2, (int64_t)1, (int64_t)8);
	mt_put_npy(dir, "gate_b", 1, (int64_t)1);
	return dir;
}

/* ref, cpu (tuned pick and --variant of each family) and cuda-emu equal the packed reference. */
TEST(varlen_cli_every_backend)
{
	const int64_t T = 26;
	const char *dir = packed_case(T);
	static const int64_t cu[] = { 0, 1, 4, 4, 12, 13, 26 };
	char c32[700], c64[700], out[700];
	snprintf(c32, sizeof c32, "%s/cu32.npy", mt_tmpdir());
	snprintf(c64, sizeof c64, "%s/cu64.npy", mt_tmpdir());
	mt_put_ints(c32, "<i4", "(7,)", cu, 7);
	mt_put_ints(c64, "<i8", "(7,)", cu, 7);

	struct mta_inputs in;
	struct mta_weights w;
	REQUIRE(mta_inputs_load(dir, NULL, &in) == MTA_OK);
	mta_inputs_weights(&in, &w);
	size_t n = (size_t)(T * 2 * 8);
	double *ref = malloc(n * sizeof *ref);
	REQUIRE(ref && mta_reference_varlen(&in.problem, &in.q, &in.k, &in.v, &w, cu, 6, ref) == 0);
	static const char *runs[] = {
		"--backend ref --cu-seqlens %s",
		"--backend cpu --cu-seqlens %s",
		"--backend cpu --variant cpu:v1,bq=2,bk=4,hpb=0 --cu-seqlens %s",
		"--backend cpu --variant cpu:v2,bq=3,bk=16,hpb=0 --cu-seqlens %s",
		"--backend cuda-emu --cu-seqlens %s",
	};
	mt_kcache();
	for (size_t i = 0; i < sizeof runs / sizeof runs[0]; i++) {
		char opts[900], *o = NULL;
		snprintf(opts, sizeof opts, runs[i], i % 2 ? c32 : c64);
		snprintf(out, sizeof out, "%s/o%zu.npy", mt_tmpdir(), i);
		int rc = mt_sh(&o, "%s run --inputs %s --out %s --db %s/none.db %s", mt_bin(), dir,
			       out, mt_tmpdir(), opts);
		CHECKF(rc == 0, "%s: exit %d: %s", opts, rc, o);
		free(o);
		struct mta_npy a;
		REQUIRE(mta_npy_read(out, &a) == MTA_OK);
		CHECK(a.dtype == MTA_F32 && a.count == n);
		struct mta_compare cmp;
		CHECKF(a.count == n && mta_compare(a.data, ref, n, MTA_F32, &cmp) == MTA_OK, "%s: %s",
		       opts, mta_last_error());
		mta_npy_free(&a);
	}
	free(ref);
	mta_inputs_free(&in);
}

/* Bad cu_seqlens files: exit 3 naming the file and what was expected; no output written. */
TEST(varlen_cli_refuses_bad_cu_seqlens)
{
	const char *dir = packed_case(10);
	static const int64_t start[] = { 2, 5, 10 }, dec[] = { 0, 6, 5, 10 }, end[] = { 0, 5, 9 },
			     good[] = { 0, 5, 10 };
	static const struct {
		const char *descr, *shape;
		const int64_t *x;
		int n;
		const char *says;
	} bad[] = {
		{ "<i8", "(3,)", start, 3, "cu_seqlens[0] is 2, expected 0" },
		{ "<i4", "(4,)", dec, 4, "decreases at index 2 (5 after 6)" },
		{ "<i8", "(3,)", end, 3, "expected total_T = 10" },
		{ "<f8", "(3,)", good, 3, "expected integer offsets ('<i4' int32 or '<i8' int64)" },
		{ "<i2", "(3,)", good, 3, "expected integer offsets" },
		{ "<i8", "(1, 3)", good, 3, "expected one dimension [ndocs+1]" },
		{ "<i8", "(1,)", good, 1, "expected at least 2" },
	};
	for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
		char cu[700], out[700], *o = NULL;
		snprintf(cu, sizeof cu, "%s/bad%zu.npy", mt_tmpdir(), i);
		snprintf(out, sizeof out, "%s/out%zu.npy", mt_tmpdir(), i);
		mt_put_ints(cu, bad[i].descr, bad[i].shape, bad[i].x, bad[i].n);
		int rc = mt_sh(&o, "%s run --inputs %s --out %s --cu-seqlens %s", mt_bin(), dir, out,
			       cu);
		CHECKF(rc == 3, "case %zu: exit %d, expected 3: %s", i, rc, o);
		CHECK_STR_CONTAINS(o, cu);
		CHECK_STR_CONTAINS(o, bad[i].says);
		CHECKF(access(out, F_OK) != 0, "case %zu: %s was written", i, out);
		free(o);
	}
	/* q, k, v with B = 2 are refused: packed documents are one sequence */
	char d2[700], cu[700], *o = NULL;
	snprintf(d2, sizeof d2, "%s/b2", mt_tmpdir());
	mkdir(d2, 0777);
	mt_put_npy(d2, "q", 4, (int64_t)2, (int64_t)10, (int64_t)2, (int64_t)8);
	mt_put_npy(d2, "k", 4, (int64_t)2, (int64_t)10, (int64_t)2, (int64_t)8);
	mt_put_npy(d2, "v", 4, (int64_t)2, (int64_t)10, (int64_t)2, (int64_t)8);
	snprintf(cu, sizeof cu, "%s/good.npy", mt_tmpdir());
	mt_put_ints(cu, "<i8", "(3,)", good, 3);
	int rc = mt_sh(&o, "%s run --inputs %s --out %s/b2.npy --backend cpu --cu-seqlens %s",
		       mt_bin(), d2, mt_tmpdir(), cu);
	CHECKF(rc == 3, "B=2: exit %d: %s", rc, o);
	CHECK_STR_CONTAINS(o, "B=1");
	free(o);
}
