/*
 * cuda_args.h: the CUDA kernels' one parameter, and filling it from the
 * public tensors and weights (core layer: the runtime, the emulator and an
 * exported library's runtime all launch kernels through this).
 *
 * struct mta_cuda_args mirrors struct mta_args in templates/mta_cuda.cu
 * field for field (the emulator checks the size at every launch). Element
 * pointers are of the problem's dtype; strides in elements for b, t, h (d
 * contiguous). head_post carries head_post or head_post_linear. rescale is
 * mta_layer_rescale(layer_id) (used only with gn_rescale).
 */
#ifndef MTA_CORE_CUDA_ARGS_H
#define MTA_CORE_CUDA_ARGS_H

#include "runtime/mta.h"

/* The generated kernel's extern "C" name. */
#define MTA_CUDA_KERNEL "mta_fwd"

struct mta_cuda_args {
	const void *q, *k, *v;
	void *o;                 /* of o_dtype */
	long long sq[3], sk[3], sv[3], so[3];
	const float *kq_pre, *head_pre, *kq_post, *head_post, *gn_w, *gate_w;
	const float *gate_b;     /* [1], read by the kernel (device memory on a GPU) */
	float rescale;
	int B, T;
	int o_dtype;             /* mta_dtype of o: MTA_F32, MTA_BF16 or MTA_F16 */
	/*
	 * Packed documents (mta_forward_varlen): NULL for a plain forward. Else
	 * B = 1, T = total_T, cu the document offsets [ndocs+1] (cu_seqlens)
	 * and tile_off [ndocs+1] each document's first query tile in the grid
	 * (prefix sums of ceil(len / bq), mta_cuda_varlen_tiles): a block finds
	 * its document from its tile, and works inside it as in a forward of
	 * that document alone. Both arrays in the kernel's memory.
	 */
	int ndocs;
	const long long *cu;
	const int *tile_off;
};

/*
 * MTA_OK when the CUDA forward's grid takes B and T (B <= 65535, the grid's
 * y and z; T <= 2^30), else MTA_EINVAL saying so: checked before a kernel
 * is picked or compiled (mta_context_reserve, mta_attention) as well as
 * when the arguments are filled.
 */
int mta_cuda_size_ok(int64_t B, int64_t T);

/*
 * Fill the kernel arguments from tensors (q, k, v of p's dtype, o float32,
 * bf16 or f16, all with contiguous d) and weights; checks shapes and that
 * every weight the problem needs is present. The kernel reads gate_b
 * through a pointer: w->gate_b_ptr when set, else &w->gate_b, which only a
 * kernel running in host memory (the emulator) can read, so a caller
 * launching on a GPU sets gate_b_ptr to device memory.
 */
int mta_cuda_args_fill(const struct mta_problem *p, const struct mta_tensor *q,
		       const struct mta_tensor *k, const struct mta_tensor *v,
		       const struct mta_weights *w, struct mta_tensor *o,
		       struct mta_cuda_args *a);

/*
 * Packed documents: tile_off[d] (d <= ndocs) = the query tiles of bq rows
 * of the documents before d, so tile_off[ndocs] is the grid's x. MTA_EINVAL
 * when that exceeds the grid's limit (2^31 - 1).
 */
int mta_cuda_varlen_tiles(const int64_t *cu, int64_t ndocs, int bq, int *tile_off);

/*
 * Turn a's plain forward (B = 1, T = total_T) into the packed one: cu and
 * tile_off as the kernel will read them (device pointers on a GPU), and
 * each tensor's batch stride set to its row stride, so the kernel's batch
 * index is a document's first row.
 */
void mta_cuda_args_varlen(struct mta_cuda_args *a, const int64_t *cu, int64_t ndocs,
			  const int *tile_off);

#endif
