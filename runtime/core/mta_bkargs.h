/*
 * mta_bkargs.h: the binary interface of a generated C backward kernel
 * (templates/mta_cpu_bwd.c): its forward that saves what the backward needs,
 * and the backward.
 *
 * Kept apart from mta_kargs.h so that the forward's ABI (and kernels built
 * for it) do not change when the backward's does. The arguments embed the
 * forward's struct mta_kargs as their first member: the pool calls a kernel
 * through a pointer to that member (runtime/core/pool.h), which the kernel
 * converts back, a conversion C allows for a struct's first member.
 *
 * Include mta_kargs.h first: the generator pastes both files into a kernel
 * source (gen/cpu/cgen.c), where a nested #include line could not be found.
 *
 * A generated backward library exports three symbols:
 *   int mta_cpu_fwd_save(const struct mta_kargs *a);   the forward, saving
 *   int mta_cpu_bwd(const struct mta_kargs *a);        the backward
 *   const struct mta_kinfo mta_cpu_bwd_info;           ABI, dtype, workspace
 * where a points at the f member of a struct mta_bkargs, and
 * mta_cpu_bwd_info.abi is MTA_BKARGS_ABI, args_size sizeof(struct mta_bkargs).
 */
#ifndef MTA_BKARGS_H
#define MTA_BKARGS_H

#ifndef MTA_KARGS_H
#error "include runtime/core/mta_kargs.h before runtime/core/mta_bkargs.h"
#endif

#define MTA_BKARGS_ABI 1

#define MTA_CPU_FWD_SAVE "mta_cpu_fwd_save"
#define MTA_CPU_BWD "mta_cpu_bwd"
#define MTA_CPU_BWD_INFO "mta_cpu_bwd_info"

/*
 * The saved state, per (problem, B, T), float32, contiguous:
 *   lse  [B][H][T]     log-sum-exp of each softmax row (step 4 of MTA.md),
 *   opre [B][T][H][D]  each output row before group norm and gate (step 7),
 * so MTA_SAVED_FLOATS(H, D, B, T) floats in all, lse first. The backward
 * recomputes the probabilities from q, k and lse; the post-softmax steps,
 * group norm and gate differentiate from opre. O(T): no T x T.
 */
#define MTA_SAVED_FLOATS(H, D, B, T) ((int64_t)(B) * (int64_t)(T) * (int64_t)(H) * (1 + (int64_t)(D)))

struct mta_bkargs {
	/*
	 * The forward's arguments: sizes, q, k, v (the kernel's dtype, strides
	 * in elements), the weights, nthreads and the pool. f.o (with its
	 * strides) is the forward's output; the backward does not read it.
	 */
	struct mta_kargs f;
	float *saved;          /* MTA_SAVED_FLOATS: written by fwd_save, read by bwd */
	const float *dout;     /* dL/do [B,T,H,D], float32, head dim contiguous */
	int64_t do_sb, do_st, do_sh;
	/*
	 * The gradients, float32, contiguous, overwritten: dq [B,T,H,D]; dk, dv
	 * [B,T,Hkv,D]; each weight's gradient in the weight's own shape, set
	 * exactly when the problem uses the weight (dgate_b: one float).
	 */
	float *dq, *dk, *dv;
	float *dkq_pre, *dhead_pre, *dkq_post, *dhead_post, *dhead_post_linear;
	float *dgn_weight, *dgate_w, *dgate_b;
};

#endif
