/*
 * measure.h: check one variant against the float64 reference and time it,
 * inside a child process (isolate.h) so that a crash or a hang is a record
 * rather than the end of the tuning run.
 *
 * The child opens the backend's device, loads the kernel (from the binary
 * the caller holds, else built now), checks it with the harness
 * (check.h) at the check size, then times it at the real size. The check
 * runs at a size smaller than the timing (default min(T, 293): long enough
 * to cross several tiles, ragged against every power-of-two tile, cheap for
 * the O(T^2) reference); kernels are not specialised on T, so it covers
 * every T.
 */
#ifndef MTA_MEASURE_MEASURE_H
#define MTA_MEASURE_MEASURE_H

#include "runtime/backend.h"
#include "tuner/measure/check.h"

#include <signal.h>

struct mta_measure {
	double rel_err, median_ms, p20_ms, p80_ms, min_ms;
	int runs;
};

struct mta_measure_job {
	const struct mta_backend *be;
	int device;                   /* device index of be */
	int threads;                  /* CPU worker threads, 0: the variant's choice */
	const struct mta_problem *p;
	const struct mta_variant *v;
	int op;                       /* MTA_OP_FWD, or MTA_OP_BWD: the backward (be->train_load,
				       * mta_check_bwd, mta_time_bwd; no binary), or
				       * MTA_OP_DECODE (be->decode_load, mta_check_decode,
				       * mta_time_decode at cache length T; no binary) */
	const void *binary;           /* the kernel's binary, or NULL: build it */
	size_t binary_size;
	int64_t check_B, check_T;     /* size of the reference check */
	int64_t B, T;                 /* size of the timing */
	unsigned long long seed;      /* inputs (the timing uses seed + 1) */
	int time_it;                  /* 0: check only */
	int warmup, reps;
	double timeout_s;             /* the child's time limit, check and timing */
	volatile sig_atomic_t *stop;  /* raised: kill the child now (NULL: never) */
};

/*
 * MTA_OK with m set; MTA_EVERIFY (the check failed: m->rel_err set),
 * MTA_EKERNEL (crashed, or *timed_out), MTA_EINTR (j->stop was raised: the
 * child was killed, nothing measured), or another failure of the child,
 * with its message.
 */
int mta_measure(const struct mta_measure_job *j, struct mta_measure *m, int *timed_out);

/*
 * Paired rounds in a child: the n variants of p (v[0] the reference, the
 * default variant), each loaded on one device of be from its binary (NULL:
 * built), timed side by side at (B, T) by mta_time_rounds. MTA_OK with out
 * filled; a crash or the timeout is MTA_EKERNEL (*timed_out); MTA_EINTR when
 * j->stop was raised (the child is killed, nothing is returned).
 */
struct mta_rounds_job {
	const struct mta_backend *be;
	int device, threads;
	const struct mta_problem *p;
	int op;                                  /* MTA_OP_*: as in mta_measure_job */
	int n;
	const struct mta_variant *v;             /* [n] */
	const void *const *binary;               /* [n], entries may be NULL */
	const size_t *binary_size;               /* [n] */
	int64_t B, T;
	unsigned long long seed;
	struct mta_rounds_opts opts;
	double timeout_s;
	volatile sig_atomic_t *stop;  /* raised: kill the child now, MTA_EINTR (NULL: never) */
};
int mta_measure_rounds(const struct mta_rounds_job *j, struct mta_rounds *out, int *timed_out);

#endif
