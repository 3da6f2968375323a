/*
 * bwd.h: the generated CUDA backward (templates/mta_cuda_bwd.cu) run from
 * host tensors: the saving forward and the backward of the cuda and
 * cuda-emu backends' train_load, fwd_save and backward (runtime/backend.h).
 *
 * One host-side runner serves both: it checks the call (the CPU backward's
 * checks, runtime/core/kargs_bwd.h), packs the tensors dense, moves them
 * through a device's memory, launches the kernel's modes, and unpacks the
 * gradients; a device is the few operations of struct mta_cuda_bwd_dev
 * (the driver's, or the emulator's on host memory), so the emulator runs
 * the very host code a GPU does. An exported CUDA library ships this
 * header, bwd.c and bwd_drv.c (the Makefile's SHIP) and runs its cubins
 * through them: they include only the core layer and the driver's files.
 */
#ifndef MTA_CUDA_BWD_H
#define MTA_CUDA_BWD_H

#include "runtime/core/cuda_bwd.h"
#include "runtime/mta.h"

/* Mirrors struct mta_bargs of templates/mta_cuda_bwd.cu field for field. */
struct mta_cuda_bargs {
	const void *q, *k, *v;
	long long sq[3], sk[3], sv[3];
	float *o;
	long long so[3];
	float *saved;
	const float *dout;
	long long sdo[3];
	float *dq, *dk, *dv;
	float *dw;
	const float *kq_pre, *head_pre, *kq_post, *head_post, *gn_w, *gate_w, *gate_b;
	float rescale;
	float *ws;
	float *part;
	double *wpart;
	const long long *plan;
	long long ws_stride;
	int B, T, mode, nb;
	int *status;
};

/* A place the kernel runs: device memory, copies both ways, a launch that waits. */
struct mta_cuda_bwd_dev {
	void *ctx;
	int (*alloc)(void *ctx, size_t bytes, void **ptr);
	void (*release)(void *ctx, void *ptr);
	int (*put)(void *ctx, void *dst, const void *src, size_t bytes);  /* host -> device */
	int (*get)(void *ctx, void *dst, const void *src, size_t bytes);  /* device -> host */
	int (*launch)(void *ctx, const struct mta_cuda_bargs *a, const unsigned grid[3],
		      unsigned threads, size_t smem_bytes);
};

/*
 * The saving forward: o float32 [B,T,H,D] (any strides), saved
 * mta_saved_bytes(p, B, T) host bytes (lse, then pre-norm rows). s: the
 * shape of the backward variant the device's kernel was generated from
 * (its bq, warps and nb shape the launch, runtime/core/cuda_bwd.h).
 */
int mta_cuda_bwd_forward(const struct mta_cuda_bwd_dev *dev, const struct mta_cuda_bwd_shape *s,
			 const struct mta_problem *p, const struct mta_tensor *q, const struct mta_tensor *k,
			 const struct mta_tensor *v, const struct mta_weights *w,
			 struct mta_tensor *o, void *saved);

/* The backward: dout float32 [B,T,H,D]; g the gradients (mta.h), overwritten. */
int mta_cuda_bwd_backward(const struct mta_cuda_bwd_dev *dev, const struct mta_cuda_bwd_shape *s,
			  const struct mta_problem *p,
			  const struct mta_tensor *q, const struct mta_tensor *k,
			  const struct mta_tensor *v, const struct mta_weights *w,
			  const void *saved, const struct mta_tensor *dout,
			  const struct mta_grads *g);

/* ---- on a GPU through the driver (bwd_drv.c): the cuda backend's training entries ---- */
struct mta_cuda;
struct mta_cuda_train;
/*
 * Load cubin, the backward of shape s generated for p (entry
 * MTA_CUDA_BWD_KERNEL), on c's device: what mta_cuda_train_load
 * (runtime/cuda/cuda.h: generated and compiled by NVRTC) and an exported
 * library (its stored cubin) both end in. MTA_EINVAL for a shape no
 * backward has, MTA_EKERNEL when the driver refuses the image.
 */
int mta_cuda_train_open(struct mta_cuda *c, const struct mta_problem *p,
			const struct mta_cuda_bwd_shape *s, const void *cubin,
			struct mta_cuda_train **out);
void mta_cuda_train_free(struct mta_cuda_train *t); /* NULL is fine */
/* mta_cuda_bwd_forward and mta_cuda_bwd_backward on t's GPU (host tensors in and out). */
int mta_cuda_train_fwd_save(struct mta_cuda_train *t, const struct mta_problem *p,
			    const struct mta_tensor *q, const struct mta_tensor *k,
			    const struct mta_tensor *v, const struct mta_weights *w,
			    struct mta_tensor *o, void *saved);
int mta_cuda_train_backward(struct mta_cuda_train *t, const struct mta_problem *p,
			    const struct mta_tensor *q, const struct mta_tensor *k,
			    const struct mta_tensor *v, const struct mta_weights *w,
			    const void *saved, const struct mta_tensor *dout,
			    const struct mta_grads *g);

#endif
