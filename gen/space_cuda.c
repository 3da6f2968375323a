/*
 * space_cuda.c: the tuning space of the generated CUDA kernels (see space.h
 * and templates/mta_cuda.cu).
 *
 * Families: v1 scalar fp32 (templates/mta_cuda.cu), any dtype; v2 tensor
 * cores (templates/mta_cuda_tc.cu spliced into it), bf16/f16 problems only,
 * bq and bk multiples of 16 (mma tiles), D padded to 16 in shared memory;
 * v2 algo 1 folds the pre-softmax convolution into the logit product.
 *
 * Tunables: bq (query rows per block), bk (key columns per tile), hpb (heads
 * per block), warps (threads = 32*warps), algo (v1 has only 0: two passes for
 * post-softmax steps, one pass otherwise). The constraints are the rows of
 * the limits table below plus the divisibility rules in check(); a variant
 * that breaks one is never generated, so no kernel can fail to fit at run
 * time.
 */
#include "space.h"
#include "cudagen.h"
#include "error.h"

#include <stddef.h>

/*
 * Value lists kept small on purpose: `make test` compiles the whole default
 * space of three problems for two architectures with NVRTC on two cores.
 */
static const struct mta_tunable tunables[] = {
	{ "bq", offsetof(struct mta_variant, bq), 16, 2, { 8, 16 } },
	{ "bk", offsetof(struct mta_variant, bk), 32, 1, { 32 } },
	{ "hpb", offsetof(struct mta_variant, hpb), 1, 6, { 1, 2, 4, 8, 16, 32 } },
	{ "warps", offsetof(struct mta_variant, warps), 4, 2, { 4, 8 } },
	{ "algo", offsetof(struct mta_variant, algo), 0, 2, { 0, 1 } },
	{ 0, 0, 0, 0, { 0 } },
};

/*
 * Dynamic shared memory every target of the project grants with opt-in:
 * 99 KiB (sm_86/sm_89; sm_80 allows 163, sm_90 227). Above 48 KiB the
 * launcher raises cudaFuncAttributeMaxDynamicSharedMemorySize.
 */
#define SMEM_MAX (99 * 1024)
/*
 * v2 needs sm_80 or later (bf16 mma.sync); sm_80 grants 163 KiB, sm_90 227.
 * On sm_86/sm_89 (99 KiB) mta_nvrtc_prune drops the variants that need more.
 */
#define SMEM_MAX_TC (163 * 1024)
/* Output accumulators per thread (registers): ceil(hpb*bq/warps)*ceil(D/32). */
#define ACC_MAX 96
/* Register arrays of the linear head mixing hold every head of the block. */
#define MIX_MAX 32

static long acc_regs(const struct mta_problem *p, const struct mta_variant *v)
{
	if (v->version >= 2) { /* 16x8 mma C tiles of (head, query, d), 4 floats a lane */
		long tiles = (long)v->hpb * (v->bq / 16) * ((p->D + 7) / 8);
		return (tiles + v->warps - 1) / v->warps * 4;
	}
	return ((long)v->hpb * v->bq + v->warps - 1) / v->warps * ((p->D + 31) / 32);
}

static long mix_regs(const struct mta_problem *p, const struct mta_variant *v)
{
	if (p->head_pre || p->head_post == MTA_HPOST_LINEAR)
		return v->hpb;
	return p->head_post == MTA_HPOST_CONV ? p->hc : 0;
}

static long smem(const struct mta_problem *p, const struct mta_variant *v)
{
	return (long)mta_cuda_smem_bytes(p, v);
}

/* Resource limits as data: what is measured, its cap for v1 and for v2. */
static const struct {
	const char *what;
	long (*measure)(const struct mta_problem *, const struct mta_variant *);
	long max, max_tc;
} limits[] = {
	{ "bytes of shared memory", smem, SMEM_MAX, SMEM_MAX_TC },
	{ "output accumulator registers per thread", acc_regs, ACC_MAX, ACC_MAX },
	{ "head-mixing registers per thread", mix_regs, MIX_MAX, MIX_MAX },
};

/* The family rules of v2 (tensor cores), beyond the shared ones. */
static int check_tc(const struct mta_problem *p, const struct mta_variant *v)
{
	if (p->dtype != MTA_BF16 && p->dtype != MTA_F16)
		return mta_fail(MTA_EINVAL, "cuda v2 multiplies bf16/f16 operands on the tensor "
				"cores; a %s problem takes v1", mta_dtype_name(p->dtype));
	if (v->bq % 16 || v->bk % 16)
		return mta_fail(MTA_EINVAL, "bq=%d, bk=%d: cuda v2 needs multiples of 16 (mma "
				"tiles)", v->bq, v->bk);
	if (v->algo == 1 && !p->cq)
		return mta_fail(MTA_EINVAL, "algo=1 folds the pre-softmax convolution; this "
				"problem has none");
	if (v->algo > 1)
		return mta_fail(MTA_EINVAL, "algo=%d: cuda v2 has algo 0 (convolve the logits) "
				"and 1 (fold the pre-softmax convolution)", v->algo);
	return MTA_OK;
}

static int check(const struct mta_problem *p, const struct mta_variant *v)
{
	int rc;
	if (v->version < 1 || v->version > 2)
		return mta_fail(MTA_EINVAL, "cuda kernel family v%d does not exist (have v1, v2)",
				v->version);
	if (v->bq < 1 || v->bk < 1 || v->hpb < 1 || v->bq > 256 || v->bk > 256)
		return mta_fail(MTA_EINVAL, "bq=%d, bk=%d, hpb=%d: bq and bk must be in [1, 256], "
				"hpb at least 1", v->bq, v->bk, v->hpb);
	if (v->warps < 1 || v->warps > 32)
		return mta_fail(MTA_EINVAL, "warps=%d: a block has 1 to 32 warps", v->warps);
	if (v->version == 1 && v->algo != 0)
		return mta_fail(MTA_EINVAL, "algo=%d: cuda v1 has only algo 0", v->algo);
	if (v->version == 2 && (rc = check_tc(p, v)))
		return rc;
	if (p->H % v->hpb)
		return mta_fail(MTA_EINVAL, "hpb=%d does not divide H=%d", v->hpb, p->H);
	if ((p->head_pre || p->head_post == MTA_HPOST_LINEAR) && v->hpb != p->H)
		return mta_fail(MTA_EINVAL, "hpb=%d: linear head mixing needs all H=%d heads in "
				"one block", v->hpb, p->H);
	if (p->head_post == MTA_HPOST_CONV && v->hpb % p->hc)
		return mta_fail(MTA_EINVAL, "hpb=%d: head_post mixes groups of c=%d heads; hpb "
				"must be a multiple of c", v->hpb, p->hc);
	for (size_t i = 0; i < sizeof limits / sizeof limits[0]; i++) {
		long m = limits[i].measure(p, v);
		long max = v->version >= 2 ? limits[i].max_tc : limits[i].max;
		if (m > max)
			return mta_fail(MTA_EINVAL, "v%d, bq=%d, bk=%d, hpb=%d, warps=%d need %ld %s, "
					"at most %ld", v->version, v->bq, v->bk, v->hpb, v->warps,
					m, limits[i].what, max);
	}
	return MTA_OK;
}

/*
 * Default: the smallest head block that holds a mixing group, then the first
 * of a few sound tile shapes that fits the limits.
 */
static void tailor(const struct mta_problem *p, struct mta_variant *v)
{
	static const int shapes[][3] = { /* bq, bk, warps */
		{ 16, 32, 4 }, { 16, 32, 8 }, { 8, 32, 8 }, { 8, 16, 8 }, { 4, 16, 8 },
	};
	if (p->head_pre || p->head_post == MTA_HPOST_LINEAR)
		v->hpb = p->H;
	else if (p->head_post == MTA_HPOST_CONV)
		v->hpb = p->hc;
	else
		v->hpb = 1;
	for (size_t i = 0; i < sizeof shapes / sizeof shapes[0]; i++) {
		v->bq = shapes[i][0];
		v->bk = shapes[i][1];
		v->warps = shapes[i][2];
		if (check(p, v) == MTA_OK)
			break;
	}
	mta_clear_error();
}

const struct mta_space mta_space_cuda = { "cuda", tunables, check, tailor, 2 };
