/*
 * tune.h: tune one problem at one size on one backend.
 *
 * Enumerates the problem's space (exhaustive, or a seeded random sample of
 * `budget` variants that always includes the default), and for each variant
 * not already recorded for this device and (T, B): generates and compiles it
 * (a compile failure is a record, not an error), then in a child process
 * with a time limit checks it against the float64 reference on fresh random
 * inputs and times it. Each result is written to the database the moment it
 * exists, so a killed run resumes where it stopped. Finally the best few are
 * re-timed side by side, together with the default variant (so speed-ups
 * over it are measured in one phase), and the fastest becomes the winner of
 * the T bucket.
 *
 * CUDA: the device is probed in a child (this process never initialises
 * CUDA, so it can fork the measuring children); without a driver or device
 * mta_tune returns MTA_ENODEV before the database is touched. Every pending
 * variant is compiled with NVRTC for the device's architecture on a thread
 * pool first (tuner/cuda_prep.h): compile failures (log kept) and variants
 * that spill or exceed the device's limits are recorded as compile_failed
 * and pruned, cubins are stored in the database, and only the rest are
 * checked and timed on the GPU, each in a child whose time limit is the
 * watchdog (a hang is recorded as timeout).
 */
#ifndef MTA_TUNE_H
#define MTA_TUNE_H

#include "mta.h"
#include "variant.h"

#include <signal.h>

enum { MTA_TUNE_EXHAUSTIVE = 0, MTA_TUNE_RANDOM = 1 };

struct mta_tune_event {
	int done, total;          /* variants handled so far, of total */
	const char *spec;         /* the variant just handled */
	const char *status;       /* "ok", "verify_failed", ..., "skipped" */
	double median_ms;         /* its time, NAN if none */
	const char *best_spec;    /* best so far, NULL if none */
	double best_ms;
	const char *phase;        /* "tune" or "retime" */
};

struct mta_tune_opts {
	const char *db_path;      /* NULL: the default database */
	int backend;              /* MTA_BACKEND_CPU or MTA_BACKEND_CUDA */
	int device_index;         /* CUDA: device ordinal among the visible ones
				   * (CUDA_VISIBLE_DEVICES applies); default
				   * $MTATUNE_CUDA_DEVICE, else 0 */
	int strategy;             /* MTA_TUNE_EXHAUSTIVE | MTA_TUNE_RANDOM */
	int budget;               /* random: number of variants (0: all) */
	int64_t T, B;
	int warmup, reps;         /* timing: warm-up runs, timed runs */
	int top;                  /* best few re-timed before the winner is named */
	double timeout_s;         /* per candidate (verify + timing) */
	int threads;              /* CPU worker threads (CUDA: NVRTC compile threads), 0: all cores */
	int64_t verify_T;         /* T of the reference check, 0: min(T, 293) */
	unsigned long long seed;  /* 0: from the clock (fresh inputs each run) */
	const char *only_spec;    /* NULL, or tune just this variant */
	/*
	 * Checked before each variant and before the re-timing: once *stop is
	 * non-zero, mta_tune returns MTA_EINTR after the record in hand is
	 * written (a signal handler sets it; NULL: never stop).
	 */
	volatile sig_atomic_t *stop;
	void (*progress)(void *ctx, const struct mta_tune_event *e);
	void *progress_ctx;
};

struct mta_tune_summary {
	int total, tried, skipped, ok, failed;
	char winner[MTA_SPEC_MAX];
	double winner_ms;         /* re-timed median */
	char default_spec[MTA_SPEC_MAX];
	double default_ms;        /* re-timed beside the winner; NAN when it did not run ok */
	char run_id[48];
	char db_path[1024];
};

void mta_tune_defaults(struct mta_tune_opts *o);
/*
 * MTA_OK with a winner, MTA_EVERIFY/EKERNEL when no variant ran ok, MTA_EINTR
 * when o->stop was raised, other codes on errors.
 */
int mta_tune(const struct mta_problem *p, const struct mta_tune_opts *o, struct mta_tune_summary *s);

/*
 * The variants mta_tune would try for p under o (the whole space, the seeded
 * sample, or only_spec), in its order; *out is malloc'd. A random sample
 * with seed 0 differs from call to call.
 */
int mta_tune_candidates(const struct mta_problem *p, const struct mta_tune_opts *o,
			struct mta_variant **out, size_t *n);

/*
 * Check one variant against the reference and time it, in a child process.
 * Used by the tuner and by `mtatune run --check`. On MTA_OK: rel_err and
 * times are set.
 */
struct mta_measure {
	double rel_err, median_ms, p20_ms, p80_ms, min_ms;
	int runs;
};
/* The size of the reference check of a tuning run: B min(B, 2), T verify_T or min(T, 293). */
void mta_check_size(const struct mta_tune_opts *o, int64_t *B, int64_t *T);

int mta_measure_variant(const struct mta_problem *p, const struct mta_variant *v,
			const struct mta_tune_opts *o, int time_it, struct mta_measure *m,
			int *timed_out);

/*
 * The same for a CUDA variant on device o->device_index, in a child: load
 * cubin (NULL: the child compiles it with NVRTC for the device), check it at
 * verify_T on the GPU against the reference, then time it with CUDA events
 * (warm-up, an L2 flush before every timed launch). mta_measure_variant
 * calls this with cubin NULL for CUDA variants.
 */
int mta_measure_cuda(const struct mta_problem *p, const struct mta_variant *v,
		     const struct mta_tune_opts *o, const void *cubin, size_t cubin_size,
		     int time_it, struct mta_measure *m, int *timed_out);

#endif
