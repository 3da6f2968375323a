/*
 * cudagen.h: the CUDA kernel generator (templates/mta_cuda.cu specialised
 * by #defines) and what a launcher needs to know about its kernels: the
 * dynamic shared memory and the launch geometry. The kernel's parameter is
 * runtime/core/cuda_args.h.
 */
#ifndef MTA_GEN_CUDA_CUDAGEN_H
#define MTA_GEN_CUDA_CUDAGEN_H

#include "gen/variant.h"
#include "runtime/core/cuda_args.h"
#include "runtime/core/cuda_bwd.h"

struct mta_cuda_launch {
	unsigned grid[3];   /* query tiles, head blocks, batch */
	unsigned block[3];  /* 32*warps, 1, 1 */
	size_t smem_bytes;  /* dynamic shared memory; above 48 KiB the launcher must
			     * raise cudaFuncAttributeMaxDynamicSharedMemorySize */
};

/*
 * Generate the CUDA source of variant v for problem p into *source
 * (malloc'd): the banner and #defines of gen/defines.c, then the template
 * text. MTA_EINVAL if v does not fit p.
 */
int mta_gen_cuda(const struct mta_problem *p, const struct mta_variant *v, char **source);

/*
 * The derived sizes of a v3 kernel (templates/mta_cuda_v3.cu's V_* and SZ_*
 * macros), for its shared memory and for the cost model's trip counts.
 */
struct mta_cuda_v3_dims {
	int qr, kr, qp, kp, rp, rz, ds, dk, zm, nr8, tk, zr, zs, wtn, ss, tk2, ps, wtn2, pbs, gs;
	int nt8, tph, ak, nstg, vg, vb, qn, pw, tw, runmax;
	int qunits; /* q.k's units a head: column groups x row ranges (V_QC x V_QS) */
	int qh;     /* heads a step of phase A (V_QH) */
	int ps_n, vs_n;      /* a thread's chunk slots: the q/k plan's, V's (V_PS_N, V_VS_N) */
	int qres;            /* q resident, staged once (V_QRES: a cluster's, where it fits) */
	int rpc;             /* logit rows a block mixes (V_RPC: rp, an even share in a cluster) */
	size_t sz_wt, sz_w2, sz_wm1, sz_wm2, sz_stg, sz_z, sz_zc, sz_s, sz_p, sz_pb, sz_pbx, sz_st;
	size_t smem;
};
void mta_cuda_v3_dims(const struct mta_problem *p, const struct mta_variant *v,
		      struct mta_cuda_v3_dims *d);

/* Dynamic shared memory (bytes) the kernel of (p, v) needs. */
size_t mta_cuda_smem_bytes(const struct mta_problem *p, const struct mta_variant *v);

/*
 * The CUDA decode kernel of p and decode variant v (NULL: the default;
 * templates/mta_cuda_decode.cu, entry MTA_CUDA_DECODE_KERNEL, arguments
 * runtime/core/mta_dargs.h): the problem's and the variant's #defines, then
 * K_DEC_WARPS and K_DEC_BK (the decode space's warps and bk, gen/cuda/
 * space.c), then the template. v is held to mta_variant_check_kernel.
 * mta_cuda_decode_dims: its launch, one block of *threads threads per
 * sequence with *smem_bytes of dynamic shared memory.
 */
#define MTA_CUDA_DECODE_KERNEL "mta_decode_row"
int mta_gen_cuda_decode(const struct mta_problem *p, const struct mta_variant *v, char **source);
int mta_cuda_decode_dims(const struct mta_problem *p, const struct mta_variant *v,
			 unsigned *threads, size_t *smem_bytes);

/* Launch geometry of (p, v) for B batches of length T. */
int mta_cuda_geometry(const struct mta_problem *p, const struct mta_variant *v, int64_t B,
		      int64_t T, struct mta_cuda_launch *g);

/* ---- the backward (templates/mta_cuda_bwd.cu) ---- */

/*
 * The backward's geometry comes from its variant (the cuda backward space,
 * gen/cuda/space.c): its shape (bq, warps, nb) makes the launch and its
 * plan, runtime/core/cuda_bwd.h (struct mta_cuda_bwd_dims, MTA_CUDA_BWD_KERNEL).
 *
 * mta_cuda_bwd_plan (runtime/core/cuda_bwd.h) for the backward variant v
 * of p, after holding v to the kernel's rules (mta_variant_check_kernel).
 */
int mta_cuda_bwd_dims(const struct mta_problem *p, const struct mta_variant *v, int64_t B,
		      int64_t T, struct mta_cuda_bwd_dims *d, long long *plan);
/* The shape of backward variant v (its bq, warps, nb): what the host side and exports carry. */
struct mta_cuda_bwd_shape mta_cuda_bwd_shape_of(const struct mta_variant *v);

/*
 * Device bytes the CUDA backward of v allocates for a call at (B, T) beyond
 * the tensors it copies (q, k, v, dout, the gradients, saved): workspace,
 * partials, weight partials, plan (runtime/mta.h documents the formula).
 */
int64_t mta_cuda_bwd_work_bytes(const struct mta_problem *p, const struct mta_variant *v,
				int64_t B, int64_t T);

/*
 * The CUDA backward source of (p, v), v a cuda backward variant
 * (mta_variant_check_kernel with MTA_OP_BWD): templates/mta_cuda_bwd.cu with
 * the defines of gen/defines.c and K_BWD_BQ, K_BWD_WARPS. nb is the
 * launcher's: the source, banner included, is the same for every nb, so
 * variants that differ only in nb share one compiled kernel. *source malloc'd.
 */
int mta_gen_cuda_bwd(const struct mta_problem *p, const struct mta_variant *v, char **source);

#endif
