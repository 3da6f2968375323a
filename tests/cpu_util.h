/*
 * cpu_util.h: helpers of the CPU kernel tests (tests/cpu_util.c): random
 * tensors and weights for hand-made cases, and one kernel checked against
 * the float64 reference through the harness (tuner/measure/check.h).
 */
#ifndef MT_CPU_UTIL_H
#define MT_CPU_UTIL_H

#include "runtime/cpu/cpu.h"
#include "tuner/measure/check.h"

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
 * How far the float64 reference ref of (p, q, k, v, w) (all B = q's shape[0]
 * and T = shape[1] rows) moves, as a relative L2 distance, when every float32
 * weight and input moves by one ulp, up or down at random (the largest of
 * four such draws). A float32 kernel
 * rounds its intermediates by about that much, so its error
 * cannot be held below this: a draw whose mixing or convolution sums nearly
 * cancel (a condition number in the hundreds) moves by more than the 1e-5 of
 * mta_tolerance. INFINITY when out of memory or the reference fails.
 */
double mt_condition(const struct mta_problem *p, const struct mta_tensor *q,
		    const struct mta_tensor *k, const struct mta_tensor *v,
		    const struct mta_weights *w, const double *ref);

/*
 * Check backend be's kernel of problem key and variant spec (NULL: the
 * default) on fresh random inputs of size B x T with the harness: the
 * element-wise bound is CHECKed here, the relative L2 error returned
 * (INFINITY on failure, reported with CHECK) for the caller to hold against
 * mta_tolerance. strided: non-contiguous q, k, v and o. nthreads: CPU
 * worker threads (0: the variant's choice).
 */
double mt_kernel_check(const struct mta_backend *be, const char *key, const char *spec,
		       int64_t B, int64_t T, int strided, int nthreads);

/* The same on the cpu backend. */
double mt_cpu_check(const char *key, const char *spec, int64_t B, int64_t T, int strided,
		    int nthreads);

/* One case of a CPU kernel table: problem, variant (NULL: the default), sizes, options. */
struct mt_kcase {
	const char *key, *spec;
	int B, T, strided, threads;
};

/* mt_cpu_check on each of the n cases, each held to mta_tolerance of its dtype. */
void mt_cpu_cases(const struct mt_kcase *c, int n);

#endif
