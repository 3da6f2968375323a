/*
 * mta_kargs.h: the binary interface between mtatune and a generated C kernel.
 *
 * This is the one definition of the layout: runtime/cpu/cpu.h and the
 * exported runtime include it, and the generator (gen/cpu/cgen.c) pastes it
 * into every generated kernel in place of its #include line, so a kernel
 * source needs nothing but libc and libm. Kernels start no threads and
 * allocate nothing: the caller's pool (runtime/core/pool.h) does both. Change the layout only together with MTA_KARGS_ABI: a kernel
 * built for another ABI is refused at load time.
 */
#ifndef MTA_KARGS_H
#define MTA_KARGS_H

#include <stdint.h>

#define MTA_KARGS_ABI 3

/* Return codes of the entry point (0 is success). */
#define MTA_KERR_NOMEM 1 /* a thread's workspace could not be allocated */
#define MTA_KERR_ARGS 2  /* arguments the kernel was not built for, or no pool */

/* pool_mem's slot of the buffer all threads of a call share (others: the thread's tid). */
#define MTA_POOL_SHARED (-1)

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
	/*
	 * ABI 2: the caller's persistent threads and memory (runtime/core/pool.h
	 * says what each does); a kernel runs all its threads through pool_run
	 * and takes all its memory from pool_mem. Fields added for other
	 * operations go after these.
	 */
	void *pool;
	void (*pool_run)(void *pool, int n, void (*fn)(void *arg, int tid), void *arg);
	void *(*pool_mem)(void *pool, int slot, int64_t bytes);
	int pool_cores;   /* cores online: what "all cores" means */
	/*
	 * Packed documents (mta.h, mta_forward_varlen): NULL for a plain
	 * forward. Otherwise B is 1, T is total_T and document d is rows
	 * [cu_seqlens[d], cu_seqlens[d+1]), d < ndocs (checked by the caller),
	 * each computed as if it were alone. The kernel's work items are the
	 * documents' tiles, so one call runs them all.
	 */
	const int64_t *cu_seqlens;
	int64_t ndocs;
	int64_t tmax;     /* the longest document (T when cu_seqlens is NULL) */
};

/* What a kernel reports about itself (exported as mta_cpu_info). */
struct mta_kinfo {
	int abi;           /* MTA_KARGS_ABI it was built with */
	int args_size;     /* sizeof(struct mta_kargs) it was built with */
	int dtype;         /* element type of q, k, v */
	/*
	 * Workspace per thread, at most ws_bytes + ws_per_t * T bytes: a constant
	 * for kernels whose memory does not grow with T (ws_per_t 0). Kernels
	 * that pack k and v also take a shared buffer of about their size.
	 */
	int64_t ws_bytes;
	int64_t ws_per_t;
};

#endif
