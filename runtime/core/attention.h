/*
 * attention.h: what mta_attention's two implementations share (core layer:
 * runtime/context.c, and an exported library's templates/export_runtime.c,
 * which ships this file): the checks of a call's arguments, the weights a
 * problem uses, the extent of a strided tensor, host packing, the
 * float32 -> bf16/f16 narrowing of an output for kernels that write
 * float32 only (the CPU kernels), and the host forward staged through
 * device memory.
 */
#ifndef MTA_CORE_ATTENTION_H
#define MTA_CORE_ATTENTION_H

#include "runtime/mta.h"

/*
 * The checks of mta_attention that need neither device nor kernel: o
 * float32, bf16 or f16; q, k, v of p's dtype and agreeing on B, T (*B, *T
 * set); D contiguous in all four; memory fields MTA_MEM_HOST or
 * MTA_MEM_DEVICE; scale 0 or the problem's (kernels compile it in: another
 * value is MTA_EUNSUPPORTED saying so). Messages name the tensor.
 */
int mta_attention_check(const struct mta_problem *p, const struct mta_tensor *q,
			const struct mta_tensor *k, const struct mta_tensor *v,
			const struct mta_tensor *o, float scale, int64_t *B, int64_t *T);

/* Bytes a strided [d0,d1,d2,d3] view spans from its first element to its last. */
size_t mta_tensor_extent(const struct mta_tensor *t);

/* One weight a problem uses: its name ("weight kq_pre"), its slot in w, its floats. */
struct mta_wpart {
	const char *name;
	const float **ptr;
	size_t n;
};
#define MTA_WPARTS_MAX 8

/* The weights p uses, as slots of w (gate_b not among them); returns how many. */
int mta_weight_parts(const struct mta_problem *p, struct mta_weights *w,
		     struct mta_wpart out[MTA_WPARTS_MAX]);

/* Pack (back 0) a strided host tensor into dense [B,T,heads,D], or unpack (back 1). */
void mta_tensor_pack(const struct mta_tensor *t, void *dense, int back);

/* Host tensor o (bf16 or f16, any strides) from dense float32 [B,T,H,D] src. */
void mta_tensor_narrow(const float *src, struct mta_tensor *o);

/*
 * mta_forward on a context whose kernels read device memory: host q, k, v
 * (host[0..2], any strides) packed and copied to device allocations, the
 * forward run there with weights w, and o (host[3]) copied back. Built on
 * the public API only (mta_device_alloc, mta_memcpy, mta_attention, ...),
 * which each implementation defines, so both use this one copy. Checked
 * arguments are the caller's job; everything allocated is freed.
 */
int mta_forward_staged(mta_context *c, const struct mta_problem *p, const mta_wts *w,
		       const struct mta_tensor *host[4]);

#endif
