/*
 * check.h: the one check-and-time harness (in the spirit of llm.c's
 * dev/cuda): every kernel variant, whoever runs it (the tuner's measuring
 * child, the winner's check through the runtime, the tests, kbench), is
 * checked and timed here and nowhere else.
 *
 *   mta_check  fresh random inputs (tuner/measure/sample.h) at (B, T), the
 *              float64 reference, the output poisoned with NaN, one run,
 *              then mta_compare: relative L2 AND every element within the
 *              dtype's bound (runtime/mta.h), so one wrong element fails.
 *   mta_time   inputs bound once, warm-up runs, then each timed run after a
 *              flush of the caches it would otherwise find warm; median,
 *              20th/80th percentiles and minimum; the last output must be
 *              finite everywhere.
 *   mta_time_rounds
 *              several runners timed side by side in paired rounds (each
 *              round times every runner once, in an order that rotates from
 *              round to round, a flush before each run), until the ratios
 *              against the first runner are known well enough (stats.h) or
 *              a time budget ends.
 *
 * A runner is what is checked: a backend's loaded kernel on its device
 * (runtime/backend.h), or a runtime context (mta_forward, which picks).
 * The backward has its twins, mta_check_bwd and mta_time_bwd (below).
 */
#ifndef MTA_MEASURE_CHECK_H
#define MTA_MEASURE_CHECK_H

#include "runtime/backend.h"

struct mta_runner {
	/* a backend's kernel ... */
	const struct mta_backend *be;
	struct mta_device *dev;
	struct mta_kernel *k;
	/* ... or, when ctx is set, the runtime's pick and mta_forward */
	mta_context *ctx;
};

struct mta_check_opts {
	int64_t B, T;
	unsigned long long seed;
	/*
	 * Non-contiguous tensors: q, k, v laid out [B][heads][T][D+2] with NaN
	 * in the padding (a kernel that ignores strides reads NaN), o as
	 * [T][B][H][D+1].
	 */
	int strided;
};

/*
 * Check runner r on problem p: MTA_OK, or MTA_EVERIFY with mta_compare's
 * message and the size, or the runner's failure. res (may be NULL) gets the
 * comparison either way once the run happened.
 */
int mta_check(const struct mta_runner *r, const struct mta_problem *p,
	      const struct mta_check_opts *o, struct mta_compare *res);

/*
 * The same for packed documents (runtime/mta.h): o->B must be 1 and o->T is
 * total_T; the runner's packed forward (mta_forward_varlen, or the backend's
 * through mta_backend_forward_varlen) against mta_reference_varlen, so every
 * element of every document is compared, poisoned first.
 */
int mta_check_varlen(const struct mta_runner *r, const struct mta_problem *p,
		     const struct mta_check_opts *o, const int64_t *cu_seqlens, int64_t ndocs,
		     struct mta_compare *res);

struct mta_timing {
	double median_ms, p20_ms, p80_ms, min_ms;
	int runs;
};

/* Time runner r on problem p at (B, T): warmup untimed runs, then reps timed ones. */
int mta_time(const struct mta_runner *r, const struct mta_problem *p, int64_t B, int64_t T,
	     unsigned long long seed, int warmup, int reps, struct mta_timing *t);

#define MTA_ROUNDS_MAX_RUNNERS 8
#define MTA_ROUNDS_MAX 64

struct mta_rounds_opts {
	int warmup;          /* untimed runs of each runner first */
	int min_rounds;      /* at least this many rounds (>= 2) ... */
	int max_rounds;      /* ... at most this many (<= MTA_ROUNDS_MAX) */
	double budget_s;     /* stop after min_rounds once this much time has passed */
	double width;        /* stop once every interval against runner 0 has hi/lo < 1 + width */
};

struct mta_rounds {
	int n, rounds;       /* runners, rounds completed */
	double ms[MTA_ROUNDS_MAX_RUNNERS][MTA_ROUNDS_MAX]; /* ms[runner][round] */
};

/*
 * Time n runners (2 <= n <= MTA_ROUNDS_MAX_RUNNERS) on the same inputs of
 * problem p at (B, T) in paired rounds; out->ms holds every time.
 */
int mta_time_rounds(const struct mta_runner *r, int n, const struct mta_problem *p, int64_t B,
		    int64_t T, unsigned long long seed, const struct mta_rounds_opts *o,
		    struct mta_rounds *out);

/* ---- the backward ---------------------------------------------------------- */

/*
 * Check runner r's backward on problem p: r is a backend's training kernel
 * (be->train_load's, on dev) or a context (mta_forward_train, mta_backward).
 * Fresh random inputs (strided as o->strided says), a random dL/do, the
 * output and every gradient poisoned with NaN first; the saving forward,
 * whose output is held to mta_reference (mta_compare), then the backward,
 * every gradient the problem has held to mta_reference_backward
 * (mta_compare_grad_mag on the reference's terms' magnitudes: relative L2
 * and every element, a sum that cancels judged on its terms). A float32
 * gradient whose elements all pass but whose relative L2 error alone
 * exceeds 1e-4 is held instead to 8x the distance an ulp of every input and
 * weight moves the reference's gradient (an ill-conditioned draw: no
 * float32 kernel does better); res->tol then says so. MTA_OK, or
 * MTA_EVERIFY naming the tensor; res (may be NULL) gets the worst
 * gradient's comparison, and its tol the bound it met.
 */
int mta_check_bwd(const struct mta_runner *r, const struct mta_problem *p,
		  const struct mta_check_opts *o, struct mta_compare *res);

/*
 * The same on packed documents cu_seqlens [ndocs+1] (o->B must be 1, o->T
 * is total_T): a context runs mta_forward_train_varlen and
 * mta_backward_varlen; a backend's kernel the same loop over documents
 * (runtime/core/varlen.h, mta_varlen_train) through its fwd_save and
 * backward. Judged against mta_reference_varlen and
 * mta_reference_backward_varlen.
 */
int mta_check_bwd_varlen(const struct mta_runner *r, const struct mta_problem *p,
			 const struct mta_check_opts *o, const int64_t *cu_seqlens, int64_t ndocs,
			 struct mta_compare *res);

/*
 * Time runner r's backward at (B, T): one saving forward, then warmup
 * untimed and reps timed backwards, each after a cache flush.
 */
int mta_time_bwd(const struct mta_runner *r, const struct mta_problem *p, int64_t B, int64_t T,
		 unsigned long long seed, int warmup, int reps, struct mta_timing *t);

/*
 * Paired rounds of n runners' backwards (as mta_time_rounds): each runner's
 * saving forward once on the same inputs into its own saved state, then
 * rounds of backwards, each after a cache flush, in an order that rotates.
 * The last gradients of every runner must be finite.
 */
int mta_time_rounds_bwd(const struct mta_runner *r, int n, const struct mta_problem *p,
			int64_t B, int64_t T, unsigned long long seed,
			const struct mta_rounds_opts *o, struct mta_rounds *out);

/* ---- decode --------------------------------------------------------------- */

/*
 * Check runner r's decode (a context's cache, mta_cache_create_ctx, or
 * without a context a cache of dec, a backend's decode kernel loaded by
 * be->decode_load: mta_cache_create_kernel) on problem p: fresh random
 * inputs at (o->B, o->T), sequence b prefilled with a chunk of its own
 * length (about T/2 - b: ragged, 0 included when B > T/2), then one token
 * per call up to T; every output row, poisoned with NaN first, held to
 * mta_reference of the whole sequences (mta_compare: relative L2 and every
 * element). MTA_OK or MTA_EVERIFY; res (may be NULL) gets the comparison.
 */
int mta_check_decode(const struct mta_runner *r, const struct mta_decoder *dec,
		     const struct mta_problem *p, const struct mta_check_opts *o,
		     struct mta_compare *res);

/*
 * The time of one decode token at cache length T: B sequences filled with
 * T-1 tokens (mta_cache_fill), then warmup untimed and reps timed calls
 * decoding token T-1 of every sequence, each after a cache flush, the token
 * dropped again after each (mta_cache_drop_last). The last outputs must be
 * finite.
 */
int mta_time_decode(const struct mta_runner *r, const struct mta_decoder *dec,
		    const struct mta_problem *p, int64_t B, int64_t T, unsigned long long seed,
		    int warmup, int reps, struct mta_timing *t);

/*
 * Paired rounds of n runners' decode tokens at cache length T (as
 * mta_time_rounds); runner i without a context runs dec[i].
 */
int mta_time_rounds_decode(const struct mta_runner *r, const struct mta_decoder *dec, int n,
			   const struct mta_problem *p, int64_t B, int64_t T,
			   unsigned long long seed, const struct mta_rounds_opts *o,
			   struct mta_rounds *out);

#endif
