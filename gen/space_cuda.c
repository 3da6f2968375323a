/*
 * space_cuda.c: the tuning space of the generated CUDA kernels (see space.h
 * and templates/mta_cuda.cu).
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
	{ "algo", offsetof(struct mta_variant, algo), 0, 1, { 0 } },
	{ 0, 0, 0, 0, { 0 } },
};

/*
 * Dynamic shared memory every target of the project grants with opt-in:
 * 99 KiB (sm_86/sm_89; sm_80 allows 163, sm_90 227). Above 48 KiB the
 * launcher raises cudaFuncAttributeMaxDynamicSharedMemorySize.
 */
#define SMEM_MAX (99 * 1024)
/* Output accumulators per thread (registers): ceil(hpb*bq/warps)*ceil(D/32). */
#define ACC_MAX 96
/* Register arrays of the linear head mixing hold every head of the block. */
#define MIX_MAX 32

static long acc_regs(const struct mta_problem *p, const struct mta_variant *v)
{
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

/* Resource limits as data: what is measured, its cap, and why. */
static const struct {
	const char *what;
	long (*measure)(const struct mta_problem *, const struct mta_variant *);
	long max;
} limits[] = {
	{ "bytes of shared memory", smem, SMEM_MAX },
	{ "output accumulator registers per thread", acc_regs, ACC_MAX },
	{ "head-mixing registers per thread", mix_regs, MIX_MAX },
};

static int check(const struct mta_problem *p, const struct mta_variant *v)
{
	if (v->version != 1)
		return mta_fail(MTA_EINVAL, "cuda kernel family v%d does not exist (have v1)", v->version);
	if (v->bq < 1 || v->bk < 1 || v->hpb < 1 || v->bq > 256 || v->bk > 256)
		return mta_fail(MTA_EINVAL, "bq=%d, bk=%d, hpb=%d: bq and bk must be in [1, 256], "
				"hpb at least 1", v->bq, v->bk, v->hpb);
	if (v->warps < 1 || v->warps > 32)
		return mta_fail(MTA_EINVAL, "warps=%d: a block has 1 to 32 warps", v->warps);
	if (v->algo != 0)
		return mta_fail(MTA_EINVAL, "algo=%d: cuda v1 has only algo 0", v->algo);
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
		if (m > limits[i].max)
			return mta_fail(MTA_EINVAL, "bq=%d, bk=%d, hpb=%d, warps=%d need %ld %s, "
					"at most %ld", v->bq, v->bk, v->hpb, v->warps, m,
					limits[i].what, limits[i].max);
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

const struct mta_space mta_space_cuda = { "cuda", tunables, check, tailor };
