/*
 * space.c: the tuning space of the generated CUDA kernels (see gen/space.h
 * and templates/mta_cuda.cu).
 *
 * Families: v1 scalar fp32 (templates/mta_cuda.cu), any dtype; v2 tensor
 * cores (templates/mta_cuda_tc.cu spliced into it), bf16/f16 problems only,
 * bq and bk multiples of 16 (mma tiles), D padded to 16 in shared memory;
 * v2 algo 1 folds the pre-softmax convolution into the logit product; v3
 * (templates/mta_cuda_v3.cu, docs/gpu/design.md) bf16/f16 only: a sliding
 * key window, the pre-softmax convolution as Toeplitz products on the tensor
 * cores, the post-softmax one from register tiles, P.V per own head.
 *
 * Tunables: bq (query rows per block), bk (key columns per tile), hpb (heads
 * per block), warps (threads = 32*warps), algo (v1 has only 0: two passes for
 * post-softmax steps, one pass otherwise). The constraints are the rows of
 * the tables below (each tunable's range, the family and head-mixing rules,
 * the resource limits); a variant that breaks one is never generated, so no
 * kernel can fail to fit at run time.
 */
#include "gen/space.h"
#include "gen/cuda/cudagen.h"
#include "runtime/core/error.h"

#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>

/*
 * Dynamic shared memory every target of the project grants with opt-in:
 * 99 KiB (sm_86/sm_89; sm_80 allows 163, sm_90 227). Above 48 KiB the
 * launcher raises cudaFuncAttributeMaxDynamicSharedMemorySize.
 */
#define SMEM_MAX (99 * 1024)
/*
 * v2 needs sm_80 or later (bf16 mma.sync); sm_80 grants 163 KiB, sm_90 227.
 * On sm_86/sm_89 (99 KiB) the tuner's pruning drops the variants that need
 * more (runtime/cuda/nvrtc.c, mta_nvrtc_prune).
 */
#define SMEM_MAX_TC (163 * 1024)
/* Output accumulators per thread (registers): ceil(hpb*bq/warps)*ceil(D/32). */
#define ACC_MAX 96
/*
 * v3's accumulators live across every phase, so they and the registers the
 * phases need besides them (mma fragments, convolution windows, mixing
 * inputs: about 100 with NVRTC 13.0, 166 - 64 at the paper's configuration
 * with 12 warps) must stay under the per-thread cap of the block size,
 * min(255, 65536 / threads), with headroom: a toolchain that allocates a few
 * more registers must not push a variant into spills (rule v3_regs).
 */
#define ACC_MAX_V3 128
#define V3_WORK 110
/* The largest dynamic shared memory of any target (sm_90: 227 KiB); v3 only. */
#define SMEM_MAX_V3 232448
/* Register arrays of the linear head mixing hold every head of the block. */
#define MIX_MAX 32

static long acc_regs(const struct mta_problem *p, const struct mta_variant *v)
{
	if (v->version == 3) { /* every head's 16x8 tiles of (query, d), dealt round robin,
				* singly or in units of two (cudagen's v3 dims) */
		struct mta_cuda_v3_dims d;
		mta_cuda_v3_dims(p, v, &d);
		return (long)d.ak * 4;
	}
	if (v->version >= 2) { /* 16x8 mma C tiles of (head, query, d), 4 floats a lane */
		long tiles = (long)v->hpb * (v->bq / 16) * ((p->D + 7) / 8);
		return (tiles + v->warps - 1) / v->warps * 4;
	}
	return ((long)v->hpb * v->bq + v->warps - 1) / v->warps * ((p->D + 31) / 32);
}

/* The registers a thread of a block of `warps` warps may take: min(255, 65536 / threads). */
static long reg_cap(int warps)
{
	long cap = 65536 / (32L * warps);
	return cap < 255 ? cap : 255;
}

static int v3_regs(const struct mta_problem *p, const struct mta_variant *v)
{
	return v->version != 3 || acc_regs(p, v) + V3_WORK <= reg_cap(v->warps);
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
static const struct mta_limit limits[] = {
	{ "bytes of shared memory", smem, { SMEM_MAX, SMEM_MAX_TC, SMEM_MAX_V3 } },
	{ "output accumulator registers per thread", acc_regs, { ACC_MAX, ACC_MAX, ACC_MAX_V3 } },
	{ "head-mixing registers per thread", mix_regs, { MIX_MAX, MIX_MAX, MIX_MAX } },
	{ 0 },
};

static int tiles_ok(const struct mta_problem *p, const struct mta_variant *v)
{
	return v->bq >= 1 && v->bk >= 1 && v->hpb >= 1 && v->bq <= 256 && v->bk <= 256;
}
static int warps_ok(const struct mta_problem *p, const struct mta_variant *v)
{
	return v->warps >= 1 && v->warps <= 32;
}
static int algo_ok(const struct mta_problem *p, const struct mta_variant *v)
{
	return v->version == 2 ? v->algo == 0 || v->algo == 1 : v->algo == 0;
}
static int old_sizes(const struct mta_problem *p, const struct mta_variant *v)
{
	return v->version == 3 || (v->warps <= 8 && v->bk <= 32);
}
static int tc_dtype(const struct mta_problem *p, const struct mta_variant *v)
{
	return v->version < 2 || p->dtype == MTA_BF16 || p->dtype == MTA_F16;
}
static int tc_tiles(const struct mta_problem *p, const struct mta_variant *v)
{
	return v->version < 2 || (v->bq % 16 == 0 && v->bk % 16 == 0);
}
/* v3 carries KR and KP halo columns from one key tile to the next */
static int v3_halo(const struct mta_problem *p, const struct mta_variant *v)
{
	int kr = p->cq ? p->ck - 1 : 0, kp = p->cq2 ? p->ck2 - 1 : 0;
	return v->version != 3 || (v->bk >= kr && v->bk >= kp && v->bk <= 128 && v->bq <= 64);
}
/* v3's staging keeps a bit for each of a thread's chunk slots in 32 (q/k, V) */
static int v3_slots(const struct mta_problem *p, const struct mta_variant *v)
{
	struct mta_cuda_v3_dims d;
	if (v->version != 3 || v->warps < 1)
		return 1;
	mta_cuda_v3_dims(p, v, &d);
	return d.ps_n <= 32 && d.vs_n <= 32;
}
static int fold_needs_pre(const struct mta_problem *p, const struct mta_variant *v)
{
	return v->algo != 1 || p->cq;
}
/* cs: the blocks of a cluster (1: none); its heads are hpb x cs */
static int cs_ok(const struct mta_problem *p, const struct mta_variant *v)
{
	return v->cs == 1 || v->cs == 2 || v->cs == 4;
}
/*
 * A cluster (cs > 1) splits the heads of the paper's family between its
 * blocks (templates/mta_cuda_v3.cu): v3, both convolutions, pre-softmax
 * mixing of all H heads (H = 16 or 32: the mixing group, hpb x cs heads)
 * and post-softmax mixing, on the tensor cores; its rows are dealt evenly,
 * so cs divides bq.
 */
static int cs_family(const struct mta_problem *p, const struct mta_variant *v)
{
	return v->cs == 1 || (v->version == 3 && p->cq && p->cq2 && p->head_pre && p->head_post &&
			      (p->H == 16 || p->H == 32) && v->hpb * v->cs == p->H &&
			      v->bq % v->cs == 0);
}
static int hpb_divides(const struct mta_problem *p, const struct mta_variant *v)
{
	return p->H % (v->hpb * v->cs) == 0;
}
static int hpb_linear(const struct mta_problem *p, const struct mta_variant *v)
{
	return !(p->head_pre || p->head_post == MTA_HPOST_LINEAR) || v->hpb * v->cs == p->H;
}
static int hpb_groups(const struct mta_problem *p, const struct mta_variant *v)
{
	return p->head_post != MTA_HPOST_CONV || v->hpb * v->cs % p->hc == 0;
}

#define TILES_MSG "bq={bq}, bk={bk}, hpb={hpb}: bq and bk must be in [1, 256], hpb at least 1"
#define T(name, field) name, offsetof(struct mta_variant, field)
/*
 * Value lists kept small on purpose: `make test` compiles the whole default
 * space of three problems for two architectures with NVRTC on two cores.
 */
static const struct mta_tunable tunables[] = {
	/* tall query tiles in v3 only (v1's and v2's registers hold a row each);
	 * 48 last, so the order of the points tried before it stays: a block
	 * of 48 rows lost to 64 wherever both were tried at 8 warps, so only
	 * a cluster tries it, where D=128 leaves 64 rows no room (v3_tried) */
	{ T("bq", bq), 16, 5, { 8, 16, 32, 64, 48 }, { tiles_ok, TILES_MSG }, { 0, 0, 4, 4, 4 },
	  0 },
	{ T("bk", bk), 32, 2, { 32, 64 }, { tiles_ok, TILES_MSG }, { 0 }, 0 },
	{ T("hpb", hpb), 1, 6, { 1, 2, 4, 8, 16, 32 }, { tiles_ok, TILES_MSG }, { 0 }, 0 },
	{ T("warps", warps), 4, 3, { 4, 8, 12 },
	  { warps_ok, "warps={warps}: a block has 1 to 32 warps" }, { 0 }, 0 },
	{ T("algo", algo), 0, 2, { 0, 1 },
	  { algo_ok, "algo={algo}: cuda v1 and v3 have only algo 0; v2 has algo 0 (convolve the "
		     "logits) and 1 (fold the pre-softmax convolution)" }, { 0 }, 0 },
	/* clusters: v3 on sm_90 (the tuner prunes them elsewhere); quiet, so
	 * the specs of blocks without one read as before it existed */
	{ T("cs", cs), 1, 3, { 1, 2, 4 }, { cs_ok, "cs={cs}: a cluster has 1, 2 or 4 blocks" },
	  { 0, 4, 4 }, 1 },
	{ 0 },
};
#undef T

static const struct mta_rule rules[] = {
	{ old_sizes, "bk={bk}, warps={warps}: cuda v1 and v2 take bk up to 32 and up to 8 warps" },
	{ tc_dtype, "cuda v{v} multiplies bf16/f16 operands on the tensor cores; a {dtype} problem "
		    "takes v1" },
	{ tc_tiles, "bq={bq}, bk={bk}: cuda v{v} needs multiples of 16 (mma tiles)" },
	{ v3_halo, "bq={bq}, bk={bk}: cuda v3 needs bk in [kernel width - 1, 128] (it carries the "
		   "convolutions' halo columns from one key tile to the next) and bq at most 64" },
	{ v3_slots, "bq={bq}, bk={bk}, warps={warps}: cuda v3 stages at most 32 16-byte chunks a "
		    "thread; D={D} needs more warps or smaller tiles" },
	{ v3_regs, "warps={warps}: cuda v3's output accumulators ({hpb} heads x {bq} rows x D={D}) "
		   "leave too few of the registers a thread of {warps} warps has" },
	{ fold_needs_pre, "algo=1 folds the pre-softmax convolution; this problem has none" },
	{ cs_family, "cs={cs}: a cluster of cuda v3 blocks holds all H heads (hpb={hpb} a block) "
		     "of a problem with both convolutions and both head mixings, H=16 or 32, and cs "
		     "divides bq={bq}; this variant or problem is not that" },
	{ hpb_divides, "hpb={hpb}, cs={cs}: hpb x cs must divide H={H}" },
	{ hpb_linear, "hpb={hpb}, cs={cs}: linear head mixing needs all H={H} heads in one block "
		      "(or cluster: hpb x cs)" },
	{ hpb_groups, "hpb={hpb}, cs={cs}: head_post mixes groups of c={hc} heads; hpb x cs must "
		      "be a multiple of c" },
	{ 0 },
};

/*
 * Which valid points the tuner tries: v3's tall query tiles (bq above 16)
 * only where they are predicted to keep 16 registers of headroom under the
 * cap (test_nvrtc.c holds every tried tensor-core point to that). Their
 * registers grow with bq besides the accumulators (the staging plan's chunk
 * slots, q.k's m16 tiles, the softmax's rows) and with D; fitted to NVRTC
 * 13's counts over bq 32-64, hpb 1-8, warps 4-12, D 64-128 (2026-12-03):
 * acc + 110 + 2 (bq - 16) + max(0, D - 64), which no point exceeded at 8
 * warps. At 4 warps (cap 255) ptxas takes up to the cap whatever the need,
 * so the tuner tries tall tiles at 8 warps or more (at 12, cap 170, the
 * prediction lets only small heads and D through); a spec may ask for any.
 * Clusters: below.
 */
static int v3_tried(const struct mta_problem *p, const struct mta_variant *v)
{
	/*
	 * A cluster pays for its exchanges with a taller tile: 12 to 16 rows a
	 * block. Its registers do not follow the prediction below (q resident,
	 * q.k's rows split between warps): with NVRTC 13.0 at 8 warps, cs=4
	 * took 247 registers at D=96 and bq=64 (none spilled held to 239), and
	 * at D=128 255 and 704 bytes spilled at bq=64, 220 and none at bq=48;
	 * cs=2 at bq=32 241 and 255. So the tuner tries cs=4 at 8 warps, 64
	 * rows up to D=96 and 48 above (the cost model, paper's configuration
	 * at D=128: 6.2 ms at 48 rows against 7.3 at 32; test_nvrtc.c holds
	 * what it tries to 16 registers under the cap, no stack frame).
	 * 32 heads mixed before the softmax (H=32): four blocks of 8, 32 rows
	 * up to D=96 (64 rows do not fit the accumulators; by the model at the
	 * paper's shape with H=32, 15.2 ms against 17.8 at 16 rows and 64 keys,
	 * 28.5 for two blocks of 16 at 16 rows, 13.8 with 136 bytes spilled for
	 * eight of 4 at 64 rows) and 16 above (32 rows spill 64 bytes at D=128).
	 */
	if (v->cs > 1 && p->H == 32)
		return v->cs == 4 && v->warps == 8 && v->bq == (p->D <= 96 ? 32 : 16);
	if (v->cs > 1)
		return v->cs == 4 && v->warps == 8 && v->bq == (p->D <= 96 ? 64 : 48);
	if (v->bq == 48)
		return 0; /* a cluster's tile only: above */
	if (v->version != 3 || v->bq <= 16)
		return 1;
	long need = acc_regs(p, v) + V3_WORK + 2L * (v->bq - 16) + (p->D > 64 ? p->D - 64 : 0);
	return v->warps >= 8 && need + 16 <= reg_cap(v->warps);
}

/*
 * Default: for bf16/f16 the first tensor-core shape that fits and that the
 * tuner would try (v3, its tallest query tiles first: at bq=16 a block
 * recomputes the convolutions' halo rows and restages its keys for every 16
 * rows, and the cost model puts bq=64 at a half to a third of bq=16's time
 * where the accumulators let it in; then v2), else the first of a few sound
 * v1 shapes. The head block is the smallest that holds a mixing group; with
 * a convolution, v3 first tries 4 and 2 groups a block and 64 keys a tile
 * (more heads share a tile's waits, and a wider tile its carried halo
 * columns: by the model, H=16 with 6x11 convolutions, D 64 or 96, 30-45%
 * under one group and 32 keys; without one, one group and 32 keys were
 * better: D=128 plain, 3.1 against 3.9 ms at two heads).
 */
static void tailor(const struct mta_problem *p, struct mta_variant *v)
{
	static const int shapes[][4] = { /* version, bq, bk, warps */
		{ 3, 64, 32, 8 }, { 3, 32, 32, 8 },  { 3, 16, 32, 8 }, { 3, 16, 32, 12 },
		{ 3, 16, 32, 16 }, { 2, 16, 32, 8 }, { 1, 16, 32, 4 }, { 1, 16, 32, 8 },
		{ 1, 8, 32, 8 },  { 1, 8, 16, 8 },   { 1, 4, 16, 8 },
	};
	int group = 1;
	if (p->head_pre || p->head_post == MTA_HPOST_LINEAR)
		group = p->H;
	else if (p->head_post == MTA_HPOST_CONV)
		group = p->hc;
	const int conv = p->cq || p->cq2;
	for (size_t i = 0; i < sizeof shapes / sizeof shapes[0]; i++) {
		const int wide = shapes[i][0] == 3 && conv;
		for (int m = wide ? 4 : 1; m >= 1; m /= 2)
			for (int k = wide ? 0 : 1; k < 2; k++) {
				v->version = shapes[i][0];
				v->bq = shapes[i][1];
				v->bk = k == 0 ? 64 : shapes[i][2];
				v->warps = shapes[i][3];
				v->hpb = group * m;
				v->algo = 0;
				if (mta_space_check(&mta_space_cuda, p, v) == MTA_OK && v3_tried(p, v))
					goto out;
			}
	}
out:
	mta_clear_error();
}

/*
 * The default on sm_90 and later: where the portable default is scalar v1
 * for a bf16/f16 problem, because the tensor-core mixing it needs holds more
 * heads than a block's accumulators take (32 heads mixed before the softmax:
 * v1 883 ms by the model at the paper's shape, four v3 blocks of 8 in a
 * cluster 15.2 ms), the first cluster the tuner tries; else the default.
 */
static int arch_default(const struct mta_problem *p, const char *arch, struct mta_variant *v)
{
	struct mta_variant *vs = NULL;
	size_t n = 0;
	int sm = 0, rc;
	if (v->version != 1 || p->dtype == MTA_F32 || sscanf(arch, "sm_%d", &sm) != 1 || sm < 90)
		return MTA_OK;
	if ((rc = mta_variant_space(p, MTA_BACKEND_CUDA, &vs, &n)))
		return rc;
	for (size_t i = 0; i < n; i++)
		if (vs[i].cs > 1) {
			*v = vs[i];
			break;
		}
	free(vs);
	return MTA_OK;
}

const struct mta_space mta_space_cuda = { "cuda", 3, 1, tunables, rules, limits, tailor,
					   v3_tried, arch_default };

/* ---- the backward (templates/mta_cuda_bwd.cu, mta_gen_cuda_bwd) ---- */

/*
 * Its kernel reads three tunables: bq (K_BWD_BQ), the query rows of one task;
 * warps (K_BWD_WARPS), the block's; nb, the most blocks of its persistent
 * grid (the launcher's alone: the kernel takes its grid as it comes, so
 * variants that differ only in nb share one compiled kernel). Its rules
 * are its own: the forward's shared-memory and accumulator limits do not
 * bound it, and its other tunables keep the forward default's values.
 *
 * Halo: a task recomputes the (cq-1) + (cq2-1) rows before its own and
 * after them (the convolutions reach back that far), so a task thinner than
 * its halo spends more on the halo than on its rows: bq must be at least
 * that. Registers: the kernel is launched with __launch_bounds__(threads,
 * 1), so a thread may take min(255, 65536 / threads) registers; it takes
 * 188 (NVRTC 13, sm_80 and sm_90, the paper's problem, every bq and warps:
 * tests/test_cuda_bwd.c compiles every point and refuses spills), which up
 * to 8 warps (255) allow and 16 (128) not. nb: a grid fills a GPU with at
 * least one block per SM (132 on an H100/H200; two blocks of 4 warps fit an
 * SM at 188 registers), and each block holds its own partial dk, dv (at most
 * (B - 1 + nb) T rows in all: gen/cuda/cudagen.h, runtime/mta.h), so the
 * values stop at two blocks per SM.
 */
#define BWD_SMEM_MAX (48 * 1024) /* static launch: no opt-in to more */
#define BWD_REGS_NEED 192 /* 188 measured, and a little room */

static long bwd_smem(const struct mta_problem *p, const struct mta_variant *v)
{
	return 4L * (4L * p->H * p->D + 2L * p->H + 32);
}

static int bwd_regs(const struct mta_problem *p, const struct mta_variant *v)
{
	return reg_cap(v->warps) >= BWD_REGS_NEED;
}

static int bwd_bq_ok(const struct mta_problem *p, const struct mta_variant *v)
{
	return v->bq >= 1 && v->bq <= 64;
}
static int bwd_halo(const struct mta_problem *p, const struct mta_variant *v)
{
	const int halo = (p->cq ? p->cq - 1 : 0) + (p->cq2 ? p->cq2 - 1 : 0);
	return v->bq >= halo;
}
static int bwd_warps_ok(const struct mta_problem *p, const struct mta_variant *v)
{
	return v->warps >= 1 && v->warps <= 16;
}
static int bwd_nb_ok(const struct mta_problem *p, const struct mta_variant *v)
{
	return v->nb >= 1 && v->nb <= 1024;
}

#define T(name, field) name, offsetof(struct mta_variant, field)
static const struct mta_tunable bwd_rows[] = {
	{ T("bq", bq), 16, 0, { 0 }, { bwd_bq_ok, "bq={bq}: a cuda backward task has 1 to 64 query rows" },
	  { 0 }, 0 },
	{ T("warps", warps), 4, 0, { 0 },
	  { bwd_warps_ok, "warps={warps}: a cuda backward block has 1 to 16 warps" }, { 0 }, 0 },
	{ T("nb", nb), 132, 0, { 0 },
	  { bwd_nb_ok, "nb={nb}: the cuda backward's grid has 1 to 1024 blocks" }, { 0 }, 0 },
	{ 0 },
};
#undef T

static const struct mta_rule bwd_rules[] = {
	{ bwd_halo, "bq={bq}: a cuda backward task recomputes the convolutions' halo rows "
		    "before its own, cq-1 + cq2-1 (cq={cq}, cq2={cq2}); bq must be at least that" },
	{ bwd_regs, "warps={warps}: a cuda backward thread of {warps} warps may take "
		    "min(255, 65536 / threads) registers, fewer than the kernel's 192" },
	{ 0 },
};

static const struct mta_limit bwd_limits[] = {
	{ "bytes of shared memory (cuda backward: 4 H D + 2 H + 32 floats)", bwd_smem,
	  { BWD_SMEM_MAX, BWD_SMEM_MAX, BWD_SMEM_MAX } },
	{ 0 },
};

static const struct mta_space bwd_check = { "cuda", 3, 1, bwd_rows, bwd_rules, bwd_limits, NULL,
					    NULL, NULL };

static const struct mta_op_tunable bwd_tunables[] = {
	{ "bq", 16, 3, { 8, 16, 32 } },
	{ "warps", 4, 2, { 4, 8 } },
	{ "nb", 132, 3, { 66, 132, 264 } },
	{ 0 },
};

const struct mta_op_space mta_space_cuda_bwd = { "bwd", bwd_tunables, &bwd_check };

/* ---- decode (templates/mta_cuda_decode.cu, mta_gen_cuda_decode) ---- */

/*
 * Its kernel reads two tunables: warps (K_DEC_WARPS), the warps of the one
 * block each sequence gets, whose threads take a row's key columns in turn;
 * and bk (K_DEC_BK), the keys of one chunk of its P.V step, whose (chunk,
 * head, d) items the threads share before a thread per (head, d) adds the
 * chunks in order: narrow chunks spread a long row's P.V over more threads
 * when H*D is smaller than the block, at one more partial row of H*D
 * floats each. Its rules are its own (the forward's tile rules on bk and
 * warps do not judge it): bk at least MTA_DBLOCK_MIN (32: the scratch a
 * cache gives holds that many partials, runtime/core/mta_dargs.h) and at
 * most 4096; warps 1 to 16, and few enough that the kernel's registers fit
 * (__launch_bounds__(threads, 1): min(255, 65536 / threads) a thread; it
 * takes 192 on the paper's problem, H=16, and 90 on h8 d128 f32, every
 * point, sm_80 and sm_90, no spill and no stack frame: tests/test_nvrtc.c,
 * nvrtc_decode_every_point_without_spills; so 16 warps, 128 a thread,
 * would spill). The dynamic shared memory is two floats a warp.
 */
#define DEC_REGS_NEED 200 /* 192 measured (NVRTC 13, sm_80 and sm_90), and a little room */

static int dec_bk_ok(const struct mta_problem *p, const struct mta_variant *v)
{
	return v->bk >= 32 && v->bk <= 4096;
}
static int dec_warps_ok(const struct mta_problem *p, const struct mta_variant *v)
{
	return v->warps >= 1 && v->warps <= 16;
}
static int dec_regs(const struct mta_problem *p, const struct mta_variant *v)
{
	return reg_cap(v->warps) >= DEC_REGS_NEED;
}

#define T(name, field) name, offsetof(struct mta_variant, field)
static const struct mta_tunable dec_rows[] = {
	{ T("bk", bk), 128, 0, { 0 },
	  { dec_bk_ok, "bk={bk}: a cuda decode P.V chunk has 32 (MTA_DBLOCK_MIN) to 4096 keys" },
	  { 0 }, 0 },
	{ T("warps", warps), 4, 0, { 0 },
	  { dec_warps_ok, "warps={warps}: a cuda decode block has 1 to 16 warps" }, { 0 }, 0 },
	{ 0 },
};
#undef T

static const struct mta_rule dec_rules[] = {
	{ dec_regs, "warps={warps}: a cuda decode thread of {warps} warps may take "
		    "min(255, 65536 / threads) registers, fewer than the kernel's 200" },
	{ 0 },
};

static const struct mta_limit dec_limits[] = { { 0 } };

static const struct mta_space dec_check = { "cuda", 3, 1, dec_rows, dec_rules, dec_limits, NULL,
					    NULL, NULL };

static const struct mta_op_tunable dec_tunables[] = {
	{ "bk", 128, 3, { 32, 128, 512 } },
	{ "warps", 4, 3, { 2, 4, 8 } },
	{ 0 },
};

const struct mta_op_space mta_space_cuda_decode = { "decode", dec_tunables, &dec_check };
