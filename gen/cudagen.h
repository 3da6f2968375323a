/*
 * cudagen.h: the CUDA kernel generator (templates/mta_cuda.cu specialised
 * by #defines) and what a launcher needs to know about its kernels.
 */
#ifndef MTA_CUDAGEN_H
#define MTA_CUDAGEN_H

#include "variant.h"

/* The generated kernel's extern "C" name. */
#define MTA_CUDA_KERNEL "mta_fwd"

/*
 * The kernel's one parameter, passed by value. Mirrors struct mta_args in
 * templates/mta_cuda.cu field for field (the emulator checks the size).
 * Element pointers are of the problem's dtype; strides in elements for
 * b, t, h (d contiguous). head_post carries head_post or head_post_linear.
 * rescale is mta_layer_rescale(layer_id) (used only with gn_rescale).
 */
struct mta_cuda_args {
	const void *q, *k, *v;
	float *o;
	long long sq[3], sk[3], sv[3], so[3];
	const float *kq_pre, *head_pre, *kq_post, *head_post, *gn_w, *gate_w;
	float gate_b, rescale;
	int B, T;
};

struct mta_cuda_launch {
	unsigned grid[3];   /* query tiles, head blocks, batch */
	unsigned block[3];  /* 32*warps, 1, 1 */
	size_t smem_bytes;  /* dynamic shared memory; above 48 KiB the launcher must
			     * raise cudaFuncAttributeMaxDynamicSharedMemorySize */
};

/*
 * Generate the CUDA source of variant v for problem p into *source
 * (malloc'd): a banner naming the problem key and variant spec, the #defines,
 * then the template text. MTA_EINVAL if v does not fit p.
 */
int mta_gen_cuda(const struct mta_problem *p, const struct mta_variant *v, char **source);

/* Dynamic shared memory (bytes) the kernel of (p, v) needs. */
size_t mta_cuda_smem_bytes(const struct mta_problem *p, const struct mta_variant *v);

/* Launch geometry of (p, v) for B batches of length T. */
int mta_cuda_geometry(const struct mta_problem *p, const struct mta_variant *v, int64_t B,
		      int64_t T, struct mta_cuda_launch *g);

/*
 * Fill the kernel arguments from tensors (q, k, v of p's dtype, o float32,
 * all with contiguous d) and weights; checks shapes and that every weight the
 * problem needs is present.
 */
int mta_cuda_args_fill(const struct mta_problem *p, const struct mta_tensor *q,
		       const struct mta_tensor *k, const struct mta_tensor *v,
		       const struct mta_weights *w, struct mta_tensor *o,
		       struct mta_cuda_args *a);

#endif
