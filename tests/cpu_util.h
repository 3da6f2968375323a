/*
 * cpu_util.h: helpers of the CPU kernel tests (tests/cpu_util.c): random
 * inputs and weights for a problem, and one kernel run checked against the
 * float64 reference.
 */
#ifndef MT_CPU_UTIL_H
#define MT_CPU_UTIL_H

#include "cpu.h"

/* Point the kernel cache at build/kcache (shared by the suite) unless set. */
void mt_kcache(void);

/*
 * A random tensor of dtype (values from mt_uniform, rounded to dtype). With
 * strided, the layout is [B][heads][T][D+2] with NaN in the padding, so a
 * kernel that ignores the strides reads NaN. Returns the buffer to free.
 */
void *mt_tensor(int dtype, int64_t B, int64_t T, int64_t heads, int64_t D, int strided,
		struct mta_tensor *t);

/* Random weights for every part of p (layer_id 3); mt_weights_free after. */
void mt_weights(const struct mta_problem *p, struct mta_weights *w);
void mt_weights_free(struct mta_weights *w);

/*
 * Run kernel k (built for p) on fresh random inputs of size B x T against
 * mta_reference, output poisoned first; returns the relative L2 error
 * (INFINITY on NaN or failure, reported with CHECK). strided: non-contiguous
 * q, k, v and o.
 */
double mt_cpu_case(struct mta_cpu_kernel *k, const struct mta_problem *p, int64_t B, int64_t T,
		   int strided, int nthreads);

/* Load the kernel of problem key and variant spec (NULL: default) and run one case. */
double mt_cpu_check(const char *key, const char *spec, int64_t B, int64_t T, int strided,
		    int nthreads);

#endif
