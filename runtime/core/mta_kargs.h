/*
 * mta_kargs.h: the binary interface between mtatune and a generated C kernel.
 *
 * This is the one definition of the layout: runtime/kernel.h includes it, and
 * the generator (gen/cgen.c) pastes it into every generated kernel in place of
 * its #include line, so a kernel source needs nothing but libc, libm and
 * pthreads. Change the layout only together with MTA_KARGS_ABI: a kernel
 * built for another ABI is refused at load time.
 */
#ifndef MTA_KARGS_H
#define MTA_KARGS_H

#include <stdint.h>

#define MTA_KARGS_ABI 1

/* Return codes of the entry point (0 is success). */
#define MTA_KERR_NOMEM 1 /* a thread's workspace could not be allocated */
#define MTA_KERR_ARGS 2  /* arguments the kernel was not built for */

/*
 * One forward call. Sizes B and T stay run-time values; everything else a
 * kernel depends on is baked into it as constants. q, k, v hold elements of
 * the dtype the kernel was built for (float, or bf16/f16 bits as uint16_t);
 * strides are in elements for the batch, time and head dimensions, and the
 * head dimension D is contiguous. Weights are float32, contiguous, in the
 * shapes of struct mta_weights; a pointer is read only if the kernel's
 * problem uses that part.
 */
struct mta_kargs {
	int64_t B, T;
	const void *q, *k, *v;
	int64_t q_sb, q_st, q_sh;
	int64_t k_sb, k_st, k_sh;
	int64_t v_sb, v_st, v_sh;
	float *o;
	int64_t o_sb, o_st, o_sh;
	const float *kq_pre, *head_pre, *kq_post, *head_post, *head_post_linear;
	const float *gn_weight, *gate_w;
	float gate_b;
	float gn_rescale; /* layer rescale factor, 1 when unused */
	int dtype;        /* mta_dtype of q, k, v: must match the kernel's */
	int nthreads;     /* 0: the variant's choice (0 there: all cores) */
};

/* What a kernel reports about itself (exported as mta_cpu_info). */
struct mta_kinfo {
	int abi;           /* MTA_KARGS_ABI it was built with */
	int args_size;     /* sizeof(struct mta_kargs) it was built with */
	int dtype;         /* element type of q, k, v */
	int64_t ws_bytes;  /* workspace per thread: a constant, independent of T */
};

#endif
