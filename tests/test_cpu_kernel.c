/*
 * test_cpu_kernel.c: the generated C kernels against the float64 reference:
 * the golden cases' problems on fresh random inputs, every option, awkward
 * sizes, strides, bf16/f16, threads, error paths, bounded memory, and the
 * pool of threads and workspaces a device keeps between calls.
 */
#include "tests/harness.h"
#include "tests/cpu_util.h"
#include "gen/cpu/cgen.h"
#include "runtime/backend.h"

#include <dirent.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

/* The problems of ../shared/golden (same sizes), with random inputs. */
TEST(cpu_kernel_golden_problems)
{
	static const struct mt_kcase c[] = {
		{ "h4kv4d16-pre6x11-hpre-post6x11-hc4-both-gn-gate-f32", NULL, 1, 70, 0, 0 },
		{ "h2kv2d16-pre3x3-both-gnr-gate-f32", NULL, 1, 25, 0, 0 },
		{ "h4kv1d8-pre2x5-both-f32", NULL, 1, 27, 0, 0 },
		{ "h4kv4d8-hc2-both-f32", NULL, 1, 26, 0, 0 },
		{ "h4kv4d8-post2x3-hpost-both-f32", NULL, 1, 19, 0, 0 },
		{ "h4kv4d8-pre2x3-hpre-both-f32", NULL, 2, 24, 0, 0 },
		{ "h2kv2d16-post4x7-both-f32", NULL, 1, 31, 0, 0 },
		{ "h2kv2d16-pre3x5-both-f32", NULL, 1, 29, 0, 0 },
		{ "h2kv2d8-pre2x4-left-f32", NULL, 1, 21, 0, 0 },
		{ "h2kv2d8-pre3x2-right-f32", NULL, 1, 21, 0, 0 },
		{ "h2kv2d4-pre6x11-post6x11-both-f32", NULL, 1, 2, 0, 0 },
	};
	mt_cpu_cases(c, (int)(sizeof c / sizeof c[0]));
}

/* Every option with tiles that do not divide T, several hpb, every vector width. */
TEST(cpu_kernel_options)
{
	static const struct mt_kcase c[] = {
		/* pre + post conv, head conv, gn, gate, custom scale, GQA, odd D */
		{ "h4kv2d13-pre3x5-post2x3-hc2-right-gn-gate-s0.3-f32",
		  "cpu:v1,bq=5,bk=7,hpb=2,vec=4,algo=0", 2, 37, 0, 0 },
		{ "h4kv2d13-pre3x5-post2x3-hc2-right-gn-gate-s0.3-f32",
		  "cpu:v1,bq=16,bk=8,hpb=0,vec=16", 1, 41, 1, 2 },
		/* head mixing both sides, linear after */
		{ "h3kv3d6-pre2x3-hpre-post3x3-hpost-both-gnr-f32",
		  "cpu:v1,bq=4,bk=5,hpb=0,vec=16", 2, 23, 0, 0 },
		/* plain attention, one pass, several tiles, threads */
		{ "h2kv2d8-both-f32", "cpu:v1,bq=16,bk=16,hpb=1,vec=4", 3, 50, 0, 3 },
		{ "h2kv2d8-both-f32", "cpu:v1,bq=16,bk=16,hpb=1,vec=4", 1, 1, 0, 0 },
		/* T smaller than the kernels and the tiles, left pad, T = 1 */
		{ "h2kv1d6-pre5x7-post4x5-both-f32", "cpu:v1,bq=2,bk=2,hpb=1", 1, 3, 0, 0 },
		{ "h3kv1d5-pre2x3-left-gate-f32", "cpu:v1,bq=4,bk=4,hpb=1,vec=16", 2, 1, 0, 0 },
		{ "h3kv1d5-pre2x3-left-gate-f32", "cpu:v1,bq=4,bk=4,hpb=1,vec=16", 1, 9, 1, 0 },
		/* D = 1, one-row and one-column tiles, post conv alone */
		{ "h1kv1d1-post2x2-right-gate-f32", "cpu:v1,hpb=0,bq=1,bk=1", 2, 6, 1, 0 },
	};
	mt_cpu_cases(c, (int)(sizeof c / sizeof c[0]));
}

/*
 * The tile shapes of the tuning space, where rows with their halo span
 * several vectors and the micro-kernels run their remainder blocks: each
 * vector width, one and two passes, T not a multiple of the tiles, T = 1.
 */
TEST(cpu_kernel_space_tiles)
{
	static const struct mt_kcase c[] = {
		{ "h4kv2d13-pre6x11-hpre-post6x11-hc4-both-gn-gate-f32",
		  "cpu:v1,bq=64,bk=128,hpb=0,vec=16", 1, 300, 0, 0 },
		{ "h4kv2d13-pre6x11-hpre-post6x11-hc4-both-gn-gate-f32",
		  "cpu:v1,bq=96,bk=64,hpb=0,vec=8", 1, 229, 1, 2 },
		{ "h4kv4d13-pre6x11-hpre-post6x11-hc4-both-gn-gate-f32",
		  "cpu:v1,bq=32,bk=64,hpb=0,vec=4", 1, 130, 0, 0 },
		{ "h4kv4d13-pre6x11-hpre-post6x11-hc4-both-gn-gate-f32",
		  "cpu:v1,bq=64,bk=128,hpb=0,vec=16", 1, 1, 0, 0 },
		{ "h4kv2d13-pre6x11-hpre-both-f32", "cpu:v1,bq=96,bk=64,hpb=0,vec=16", 2, 257, 0, 0 },
		{ "h4kv2d13-pre6x11-both-f32", "cpu:v1,bq=64,bk=128,hpb=1,vec=8", 1, 200, 0, 2 },
		{ "h8kv2d13-pre6x11-both-f32", "cpu:v1,bq=32,bk=64,hpb=4,vec=4", 1, 1, 0, 0 },
	};
	mt_cpu_cases(c, (int)(sizeof c / sizeof c[0]));
}

/* bf16 and f16 inputs: the reference reads the same rounded values. */
TEST(cpu_kernel_half_inputs)
{
	static const struct mt_kcase c[] = {
		{ "h4kv4d16-pre3x3-hpre-post3x5-hpost-both-gn-gate-bf16",
		  "cpu:v1,bq=8,bk=16,hpb=0", 1, 33, 0, 0 },
		{ "h4kv2d8-pre2x3-hc4-left-gnr-f16", "cpu:v1,bq=8,bk=8,hpb=0,vec=16", 2, 20, 1, 0 },
		{ "h4kv4d16-pre3x3-hpre-post3x5-hpost-both-gn-gate-bf16",
		  "cpu:v2,bq=8,bk=16,hpb=0", 1, 33, 0, 0 },
		{ "h4kv2d8-pre2x3-hc4-left-gnr-f16", "cpu:v2,bq=8,bk=16,hpb=0,vec=16", 2, 20, 1, 2 },
		{ "h4kv2d8-post3x3-hc2-right-f16", "cpu:v2,bq=4,bk=16,hpb=2,vec=8", 2, 300, 1, 2 },
	};
	mt_cpu_cases(c, (int)(sizeof c / sizeof c[0]));
}

/*
 * The v2 family (one pass over whole rows, rings of halo rows): every
 * option, blocks and chunks that do not divide T, chunks barely wider than
 * the convolutions, GQA, each padding, strided tensors, threads (several
 * chains per head block, each recomputing its halo rows), T = 1.
 */
TEST(cpu_kernel_v2_options)
{
	static const struct mt_kcase c[] = {
		{ "h4kv2d13-pre3x5-post2x3-hc2-right-gn-gate-s0.3-f32",
		  "cpu:v2,bq=5,bk=16,hpb=2,vec=4", 2, 37, 0, 0 },
		{ "h4kv2d13-pre3x5-post2x3-hc2-right-gn-gate-s0.3-f32",
		  "cpu:v2,bq=3,bk=32,hpb=0,vec=16", 1, 41, 1, 2 },
		{ "h3kv3d6-pre2x3-hpre-post3x3-hpost-both-gnr-f32",
		  "cpu:v2,bq=4,bk=16,hpb=0,vec=8", 2, 23, 0, 0 },
		{ "h2kv2d8-both-f32", "cpu:v2,bq=16,bk=16,hpb=1,vec=4", 3, 50, 0, 3 },
		{ "h2kv2d8-both-f32", "cpu:v2,bq=16,bk=16,hpb=1,vec=4", 1, 1, 0, 0 },
		{ "h2kv1d6-pre5x7-post4x5-both-f32", "cpu:v2,bq=2,bk=16,hpb=1", 1, 3, 0, 0 },
		{ "h2kv1d6-pre5x7-post4x5-left-f32", "cpu:v2,bq=2,bk=16,hpb=1,vec=16", 2, 40, 1, 2 },
		{ "h3kv1d5-pre2x3-left-gate-f32", "cpu:v2,bq=4,bk=16,hpb=1,vec=16", 2, 1, 0, 0 },
		{ "h3kv1d5-pre2x3-left-gate-f32", "cpu:v2,bq=4,bk=16,hpb=1,vec=16", 1, 9, 1, 0 },
		{ "h1kv1d1-post2x2-right-gate-f32", "cpu:v2,hpb=0,bq=1,bk=16", 2, 6, 1, 0 },
		{ "h2kv2d8-hpre-both-f32", "cpu:v2,bq=3,bk=16,hpb=0,vec=8", 1, 35, 0, 2 },
		{ "h4kv4d8-hc2-both-f32", "cpu:v2,bq=7,bk=32,hpb=2,vec=16", 2, 45, 1, 2 },
		{ "h2kv2d16-post4x7-both-f32", "cpu:v2,bq=8,bk=16,hpb=1,vec=8", 1, 31, 0, 0 },
		/* logits of +-100 (scale 40): row maxima climb chunk after chunk, so the
		 * exps already stored are rescaled to a new reference */
		{ "h2kv2d8-post2x3-hpost-both-s40-f32", "cpu:v2,bq=4,bk=16,hpb=0,vec=4", 1, 90, 0, 0 },
		{ "h2kv1d8-pre2x3-both-gate-s40-f32", "cpu:v2,bq=8,bk=16,hpb=1,vec=16", 2, 70, 0, 2 },
	};
	mt_cpu_cases(c, (int)(sizeof c / sizeof c[0]));
}

/*
 * v2 at the tile shapes of its tuning space, long enough that two threads
 * split each head block into several chains (halo rows recomputed at each
 * chain's start) and that rows span several chunks.
 */
TEST(cpu_kernel_v2_space_tiles)
{
	static const struct mt_kcase c[] = {
		{ "h4kv2d13-pre6x11-hpre-post6x11-hc4-both-gn-gate-f32",
		  "cpu:v2,bq=16,bk=256,hpb=0,vec=16", 1, 600, 0, 2 },
		{ "h4kv2d13-pre6x11-hpre-post6x11-hc4-both-gn-gate-f32",
		  "cpu:v2,bq=32,bk=64,hpb=0,vec=8", 1, 329, 1, 2 },
		{ "h4kv4d16-pre6x11-hpre-post6x11-hc4-both-gn-gate-f32",
		  "cpu:v2,bq=16,bk=32,hpb=0,vec=16", 1, 1, 0, 0 },
		{ "h4kv2d13-pre6x11-both-f32", "cpu:v2,bq=16,bk=64,hpb=1,vec=8", 2, 300, 0, 2 },
		{ "h8kv2d13-post6x11-hc4-both-f32", "cpu:v2,bq=32,bk=512,hpb=4,vec=16", 1, 520, 0, 2 },
	};
	mt_cpu_cases(c, (int)(sizeof c / sizeof c[0]));
}

/*
 * v2's q.k blocks at every width: chunks that are not a multiple of a
 * packed k^T panel (CV vectors: 64 columns at vec=16, 32 at 8), so a chunk
 * starts inside a panel and q.k takes 1..3 vectors there, and rows that end
 * in 1..3 vectors of a panel (ragged T). bk=80 at vec=16 once read past the
 * panel (rel L2 0.017 on the first case).
 */
TEST(cpu_kernel_v2_qk_widths)
{
	static const struct mt_kcase c[] = {
		{ "h4kv2d13-pre6x11-hpre-post6x11-hc4-both-gn-gate-f32",
		  "cpu:v2,bq=16,bk=80,hpb=0,vec=16", 2, 300, 0, 2 },
		{ "h4kv2d13-pre3x5-hpre-post2x3-hc2-right-gnr-gate-f32",
		  "cpu:v2,bq=8,bk=48,hpb=0,vec=16", 2, 211, 1, 0 },
		{ "h4kv2d13-pre3x5-post2x3-hc2-left-gn-gate-f32",
		  "cpu:v2,bq=5,bk=48,hpb=2,vec=8", 2, 173, 0, 2 },
		{ "h2kv1d9-pre2x3-post3x3-both-gate-f32", "cpu:v2,bq=8,bk=16,hpb=1,vec=4", 2, 97, 0, 0 },
	};
	mt_cpu_cases(c, (int)(sizeof c / sizeof c[0]));
}

TEST(cpu_kernel_refuses_bad_calls)
{
	struct mta_problem p, other;
	struct mta_variant v;
	struct mta_cpu_kernel *k = NULL;
	struct mta_tensor q, kt, vv, o;
	struct mta_weights w;
	char *src = NULL;
	mt_kcache();
	REQUIRE(mta_problem_from_key("h2kv2d8-pre2x3-both-f32", &p) == MTA_OK);
	REQUIRE(mta_variant_parse("cpu:v1,hpb=2", &v) == MTA_OK);
	CHECK_EQ_INT(mta_gen_c(&p, &v, &src), MTA_EINVAL);
	CHECK_STR_CONTAINS(mta_last_error(), "hpb=0");
	REQUIRE(mta_variant_parse("cuda:v1", &v) == MTA_OK);
	CHECK_EQ_INT(mta_gen_c(&p, &v, &src), MTA_EINVAL);
	CHECK(src == NULL);
	REQUIRE(mta_variant_parse("cpu:v1,hpb=1,bq=4,bk=4", &v) == MTA_OK);
	REQUIRE(mta_cpu_load(&p, &v, &k) == MTA_OK);
	CHECKF(mta_cpu_workspace(k, 5) > 0, "workspace %lld", mta_cpu_workspace(k, 5));
	void *qb = mt_tensor(MTA_F32, 1, 5, 2, 8, 0, &q), *kb = mt_tensor(MTA_F32, 1, 5, 2, 8, 0, &kt);
	void *vb = mt_tensor(MTA_F32, 1, 5, 2, 8, 0, &vv), *ob = mt_tensor(MTA_F32, 1, 5, 2, 8, 0, &o);
	mt_weights(&p, &w);
	/* a weight the problem needs is missing */
	const float *keep = w.kq_pre;
	w.kq_pre = NULL;
	CHECK_EQ_INT(mta_cpu_run(k, &p, &q, &kt, &vv, &w, &o, 0, NULL), MTA_EINVAL);
	CHECK_STR_CONTAINS(mta_last_error(), "kq_pre");
	w.kq_pre = keep;
	/* the head dimension must be contiguous */
	struct mta_tensor bad = kt;
	bad.stride[3] = 2, bad.shape[1] = 2;
	struct mta_tensor qs = q, vs = vv, os = o;
	qs.shape[1] = vs.shape[1] = os.shape[1] = 2;
	CHECK_EQ_INT(mta_cpu_run(k, &p, &qs, &bad, &vs, &w, &os, 0, NULL), MTA_ESHAPE);
	CHECK_STR_CONTAINS(mta_last_error(), "contiguous");
	/* wrong dtype, wrong problem, negative threads */
	bad = kt;
	bad.dtype = MTA_BF16;
	CHECK_EQ_INT(mta_cpu_run(k, &p, &q, &bad, &vv, &w, &o, 0, NULL), MTA_ESHAPE);
	other = p;
	other.gate = 1;
	CHECK_EQ_INT(mta_cpu_run(k, &other, &q, &kt, &vv, &w, &o, 0, NULL), MTA_EINVAL);
	CHECK_STR_CONTAINS(mta_last_error(), "built for");
	CHECK_EQ_INT(mta_cpu_run(k, &p, &q, &kt, &vv, &w, &o, -1, NULL), MTA_EINVAL);
	CHECK_EQ_INT(mta_cpu_run(k, &p, &q, &kt, &vv, &w, &o, 0, NULL), MTA_OK);
	mta_cpu_free(k);
	mt_weights_free(&w);
	free(qb), free(kb), free(vb), free(ob);
}

/*
 * Memory does not grow with T: the per-thread workspace is a constant of
 * the kernel, and a T = 16384 run (1 GiB as a T x T float matrix) finishes,
 * with rows spot-checked against a direct float64 softmax.
 */
TEST(cpu_kernel_bounded_memory)
{
	struct mta_problem p, pc;
	struct mta_variant v;
	struct mta_cpu_kernel *k = NULL, *kc = NULL;
	const char *conv = "h1kv1d8-pre2x3-post2x3-both-f32", *spec = "cpu:v1,bq=32,bk=128,hpb=0,vec=16";
	struct mta_tensor q, kt, vv, o;
	const int64_t T = 16384, D = 8;
	mt_kcache();
	REQUIRE(mta_problem_from_key("h1kv1d8-both-f32", &p) == MTA_OK);
	REQUIRE(mta_problem_from_key(conv, &pc) == MTA_OK);
	REQUIRE(mta_variant_parse(spec, &v) == MTA_OK);
	REQUIRE(mta_cpu_load(&p, &v, &k) == MTA_OK);
	REQUIRE(mta_cpu_load(&pc, &v, &kc) == MTA_OK);
	/* workspace: tiles only, well under one T x T row block */
	CHECKF(mta_cpu_workspace(k, 5) < 64 * 1024, "workspace %lld", mta_cpu_workspace(k, 5));
	CHECKF(mta_cpu_workspace(kc, T) < 128 * 1024, "workspace %lld", mta_cpu_workspace(kc, T));
	/* the convolution kernel stays exact at a T spanning many tiles */
	double err = mt_cpu_check(conv, spec, 1, 300, 0, 0);
	CHECKF(err < mta_tolerance(MTA_F32), "conv kernel at T=300: rel L2 %g", err);

	void *qb = mt_tensor(MTA_F32, 1, T, 1, D, 0, &q), *kb = mt_tensor(MTA_F32, 1, T, 1, D, 0, &kt);
	void *vb = mt_tensor(MTA_F32, 1, T, 1, D, 0, &vv), *ob = mt_tensor(MTA_F32, 1, T, 1, D, 0, &o);
	REQUIRE(qb && kb && vb && ob);
	for (int64_t i = 0; i < T * D; i++)
		((float *)ob)[i] = NAN;
	CHECKF(mta_cpu_run(k, &p, &q, &kt, &vv, NULL, &o, 0, NULL) == MTA_OK, "%s", mta_last_error());
	const float *qf = qb, *kf = kb, *vf = vb, *of = ob;
	const int64_t rows[] = { 0, 1, 4097, T / 2 + 3, T - 1 };
	for (int r = 0; r < 5; r++) {
		int64_t i = rows[r];
		double mx = -INFINITY, sum = 0, acc[8] = { 0 }, num = 0, den = 0;
		for (int64_t j = 0; j <= i; j++) {
			double s = 0;
			for (int d = 0; d < D; d++)
				s += (double)qf[i * D + d] * kf[j * D + d];
			mx = fmax(mx, s / sqrt((double)D));
		}
		for (int64_t j = 0; j <= i; j++) {
			double s = 0;
			for (int d = 0; d < D; d++)
				s += (double)qf[i * D + d] * kf[j * D + d];
			double e = exp(s / sqrt((double)D) - mx);
			sum += e;
			for (int d = 0; d < D; d++)
				acc[d] += e * vf[j * D + d];
		}
		for (int d = 0; d < D; d++) {
			double x = acc[d] / sum, y = of[i * D + d];
			num += (x - y) * (x - y);
			den += x * x;
		}
		CHECKF(isfinite(num) && sqrt(num / den) < 1e-4, "row %lld: rel L2 %g", (long long)i,
		       sqrt(num / den));
	}
	mta_cpu_free(k);
	mta_cpu_free(kc);
	free(qb), free(kb), free(vb), free(ob);
}

/*
 * v2 keeps whole rows, so its workspace grows with T, but as T (rings of
 * rows, a few per head), never as T^2: at T = 16384 a kernel with both
 * convolutions takes under 4 MB per thread where one T x T float matrix
 * is 1 GiB. A plain-attention run at that T is spot-checked against a
 * direct float64 softmax.
 */
TEST(cpu_kernel_v2_memory_grows_as_T)
{
	struct mta_problem p, pc;
	struct mta_variant v;
	struct mta_cpu_kernel *k = NULL, *kc = NULL;
	const char *spec = "cpu:v2,bq=16,bk=256,hpb=0,vec=16";
	struct mta_tensor q, kt, vv, o;
	const int64_t T = 16384, D = 8;
	mt_kcache();
	REQUIRE(mta_problem_from_key("h1kv1d8-both-f32", &p) == MTA_OK);
	REQUIRE(mta_problem_from_key("h1kv1d8-pre6x11-post6x11-both-f32", &pc) == MTA_OK);
	REQUIRE(mta_variant_parse(spec, &v) == MTA_OK);
	REQUIRE(mta_cpu_load(&p, &v, &k) == MTA_OK);
	REQUIRE(mta_cpu_load(&pc, &v, &kc) == MTA_OK);
	long long w0 = mta_cpu_workspace(kc, 0), w1 = mta_cpu_workspace(kc, T),
		  w2 = mta_cpu_workspace(kc, 2 * T);
	CHECKF(w1 > w0 && w2 - w1 == w1 - w0, "workspace %lld, %lld, %lld bytes at T = 0, %lld, %lld",
	       w0, w1, w2, (long long)T, (long long)(2 * T));
	CHECKF(w1 < 4 << 20, "workspace %lld bytes at T=%lld", w1, (long long)T);

	void *qb = mt_tensor(MTA_F32, 1, T, 1, D, 0, &q), *kb = mt_tensor(MTA_F32, 1, T, 1, D, 0, &kt);
	void *vb = mt_tensor(MTA_F32, 1, T, 1, D, 0, &vv), *ob = mt_tensor(MTA_F32, 1, T, 1, D, 0, &o);
	REQUIRE(qb && kb && vb && ob);
	for (int64_t i = 0; i < T * D; i++)
		((float *)ob)[i] = NAN;
	CHECKF(mta_cpu_run(k, &p, &q, &kt, &vv, NULL, &o, 2, NULL) == MTA_OK, "%s", mta_last_error());
	const float *qf = qb, *kf = kb, *vf = vb, *of = ob;
	const int64_t rows[] = { 0, 1, 4097, T / 2 + 3, T - 1 };
	for (int r = 0; r < 5; r++) {
		int64_t i = rows[r];
		double mx = -INFINITY, sum = 0, acc[8] = { 0 }, num = 0, den = 0;
		for (int64_t j = 0; j <= i; j++) {
			double s = 0;
			for (int d = 0; d < D; d++)
				s += (double)qf[i * D + d] * kf[j * D + d];
			mx = fmax(mx, s / sqrt((double)D));
		}
		for (int64_t j = 0; j <= i; j++) {
			double s = 0;
			for (int d = 0; d < D; d++)
				s += (double)qf[i * D + d] * kf[j * D + d];
			double e = exp(s / sqrt((double)D) - mx);
			sum += e;
			for (int d = 0; d < D; d++)
				acc[d] += e * vf[j * D + d];
		}
		for (int d = 0; d < D; d++) {
			double x = acc[d] / sum, y = of[i * D + d];
			num += (x - y) * (x - y);
			den += x * x;
		}
		CHECKF(isfinite(num) && sqrt(num / den) < 1e-4, "row %lld: rel L2 %g", (long long)i,
		       sqrt(num / den));
	}
	mta_cpu_free(k);
	mta_cpu_free(kc);
	free(qb), free(kb), free(vb), free(ob);
}

/* Threads of this process (entries of /proc/self/task). */
static int threads_now(void)
{
	DIR *d = opendir("/proc/self/task");
	int n = 0;
	if (!d)
		return -1;
	for (struct dirent *e; (e = readdir(d));)
		n += e->d_name[0] != '.';
	closedir(d);
	return n;
}

/*
 * One device (one pool of threads and workspaces) runs kernels of both
 * families and different layouts in turn, each checked against the
 * reference every time: a kernel must not rely on what another left in a
 * shared workspace. The pool's threads start once and stay: hundreds of
 * calls do not add threads.
 */
TEST(cpu_kernel_pool_shared_between_kernels)
{
	static const struct {
		const char *key, *spec;
	} c[] = {
		{ "h4kv2d16-pre3x5-hpre-post3x3-hc2-both-gn-gate-f32", "cpu:v2,bq=8,bk=32,hpb=0,vec=16" },
		{ "h4kv2d16-pre3x5-hpre-post3x3-hc2-both-gn-gate-f32", "cpu:v1,bq=16,bk=32,hpb=0,vec=8" },
		{ "h2kv2d8-pre5x7-post2x5-left-f32", "cpu:v2,bq=5,bk=16,hpb=1,vec=8" },
		{ "h4kv4d16-both-f32", "cpu:v2,bq=16,bk=64,hpb=2,vec=16" },
	};
	const int n = (int)(sizeof c / sizeof c[0]);
	const struct mta_backend *be = &mta_backend_cpu;
	struct mta_runner r[4];
	struct mta_problem p[4];
	mt_kcache();
	struct mta_device *dev = NULL;
	REQUIRE(be->open(0, 2, &dev) == MTA_OK);
	for (int i = 0; i < n; i++) {
		struct mta_variant v;
		r[i] = (struct mta_runner){ be, dev, NULL, NULL };
		REQUIRE(mta_problem_from_key(c[i].key, &p[i]) == MTA_OK);
		REQUIRE(mta_variant_parse(c[i].spec, &v) == MTA_OK);
		REQUIRE(be->load(dev, NULL, &p[i], &v, NULL, 0, &r[i].k) == MTA_OK);
	}
	int before = -1;
	for (int round = 0; round < 3; round++)
		for (int i = 0; i < n; i++) {
			/* T alternates so the rings change size too; 300 is work for two threads */
			struct mta_check_opts o = { 1, round == 1 ? 90 : 300, mt_seed() + 7 * round + i, 0 };
			struct mta_compare cmp;
			CHECKF(mta_check(&r[i], &p[i], &o, &cmp) == MTA_OK, "%s %s round %d: %s", c[i].key,
			       c[i].spec, round, mta_last_error());
			if (round == 0 && i == n - 1)
				before = threads_now();
		}
	int after = threads_now();
	CHECKF(before > 1 && after == before, "threads %d after the first round, %d after %d more "
	       "calls", before, after, 2 * n);
	for (int i = 0; i < n; i++)
		be->unload(r[i].k);
	be->close(dev);
}

/*
 * A context used from a child after fork(): the pool's threads stayed in the
 * parent, so the child's pool starts its own; a call must not wait for
 * threads that do not exist.
 */
TEST(cpu_kernel_pool_after_fork)
{
	struct mta_problem p;
	mta_context *ctx = NULL;
	mt_kcache();
	REQUIRE(mta_problem_from_key("h4kv4d16-pre3x5-both-f32", &p) == MTA_OK);
	REQUIRE(mta_context_create(&ctx, "/nonexistent/none.db", "cpu", 0) == MTA_OK);
	struct mta_runner r = { .ctx = ctx };
	struct mta_check_opts o = { 1, 300, mt_seed(), 0 };
	struct mta_compare cmp;
	REQUIRE(mta_check(&r, &p, &o, &cmp) == MTA_OK);
	fflush(NULL);
	pid_t pid = fork();
	if (pid == 0) {
		alarm(60);
		_exit(mta_check(&r, &p, &o, &cmp) == MTA_OK && cmp.bad == 0 ? 0 : 1);
	}
	int st = 0;
	REQUIRE(pid > 0 && waitpid(pid, &st, 0) == pid);
	CHECKF(WIFEXITED(st) && WEXITSTATUS(st) == 0, "child status %d", st);
	CHECK(mta_check(&r, &p, &o, &cmp) == MTA_OK);
	mta_context_free(ctx);
}
