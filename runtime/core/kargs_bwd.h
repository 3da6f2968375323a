/*
 * kargs_bwd.h: fill a C backward kernel's arguments (runtime/core/mta_bkargs.h)
 * from the public tensors, weights and gradients (runtime/mta.h), the way
 * kargs.h does for the forward. Core layer: an exported library can ship it.
 */
#ifndef MTA_KARGS_BWD_H
#define MTA_KARGS_BWD_H

#include "runtime/mta.h"
#include "runtime/core/mta_kargs.h"
#include "runtime/core/mta_bkargs.h"

/*
 * For the saving forward: o set, dout and g NULL. For the backward: dout
 * (float32 [B,T,H,D], d contiguous) and g set, o NULL. saved must be
 * mta_saved_bytes(p, B, T) bytes. Checks shapes, dtypes, the weights and
 * the gradient buffers the problem needs (naming the first one missing),
 * and fills *a. MTA_OK or MTA_EINVAL / MTA_ESHAPE with a message.
 */
int mta_bkargs_fill(const struct mta_problem *p, const struct mta_tensor *q,
		    const struct mta_tensor *k, const struct mta_tensor *v,
		    const struct mta_weights *w, struct mta_tensor *o, void *saved,
		    const struct mta_tensor *dout, const struct mta_grads *g, int nthreads,
		    struct mta_bkargs *a);

/*
 * Which gradient buffer a problem needs is missing: the same rule for the
 * kernels' float gradients (struct mta_grads) and the reference's double
 * ones (struct mta_reference_grads), so it is written once over the
 * buffers' addresses. NULL when none is missing (g NULL counts as missing),
 * else the buffer's name and shape for a message.
 */
struct mta_grad_buffers {
	const void *dq, *dk, *dv, *kq_pre, *head_pre, *kq_post, *head_post,
		*head_post_linear, *gn_weight, *gate_w, *gate_b;
};
const char *mta_grads_missing_buffer(const struct mta_problem *p,
				    const struct mta_grad_buffers *g);
/*
 * Elements of gradient i of p at (B, T), in the fields' order above (0 dq,
 * 1 dk, 2 dv, then the weights: 3 kq_pre .. 10 gate_b); 0 for a weight p
 * does not use, or i out of range. One count for every loop over them.
 */
size_t mta_grad_elems(const struct mta_problem *p, int64_t B, int64_t T, int i);

/* The same for any struct g with those fields (either gradients struct). */
#define MTA_GRADS_MISSING(p, g)                                                        \
	((g) ? mta_grads_missing_buffer((p), &(const struct mta_grad_buffers){           \
		       (g)->dq, (g)->dk, (g)->dv, (g)->kq_pre, (g)->head_pre, (g)->kq_post, \
		       (g)->head_post, (g)->head_post_linear, (g)->gn_weight, (g)->gate_w,  \
		       (g)->gate_b })                                                     \
	     : mta_grads_missing_buffer((p), NULL))

#endif
