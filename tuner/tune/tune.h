/*
 * tune.h: tune one problem at one size on one backend.
 *
 * The same steps for every backend (runtime/backend.h), none of them
 * knowing which: the device is identified in a child (this process never
 * initialises a driver, so it can fork the measuring children; without a
 * driver or device mta_tune returns MTA_ENODEV before the database is
 * touched). The problem's space is enumerated (exhaustive, or a seeded
 * random sample of `budget` variants that always includes the default); the
 * variants not already recorded for this device and (T, B) are built in one
 * batch on all cores (tuner/tune/prep.h): compile failures (log kept) are
 * recorded as compile_failed, kernels that exceed the device's limits as
 * pruned, binaries the backend keeps in the database are stored. Then each
 * survivor is checked against the float64 reference on fresh random inputs
 * and timed, in a child process with a time limit (tuner/measure/), and its
 * result is written the moment it exists, so a killed run resumes where it
 * stopped. Finally the best few are re-timed side by side, together with the
 * default variant (so speed-ups over it are measured in one phase), and the
 * fastest becomes the winner of the T bucket.
 */
#ifndef MTA_TUNE_TUNE_H
#define MTA_TUNE_TUNE_H

#include "runtime/backend.h"
#include "tuner/measure/measure.h"

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
	const char *backend;      /* a timed backend of runtime/backends.c: "cpu" (default), "cuda" */
	int device_index;         /* the backend's device (CUDA: ordinal among the
				   * visible ones, CUDA_VISIBLE_DEVICES applies); 0 */
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
	 * Checked before each variant and before the re-timing, and while a
	 * measuring child runs: once *stop is non-zero, that child is killed
	 * and mta_tune returns MTA_EINTR; the variant cut short is not recorded
	 * (a signal handler sets it; NULL: never stop).
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

/* The size of the reference check of a tuning run: B min(B, 2), T verify_T or min(T, 293). */
void mta_check_size(const struct mta_tune_opts *o, int64_t *B, int64_t *T);

/*
 * The identity of device index of backend (a name of runtime/backends.c),
 * asked in a child process with a time limit, so that the caller never
 * initialises a driver and may fork afterwards. MTA_EINVAL for an unknown
 * backend, MTA_EUNSUPPORTED for one the tuner cannot time (cuda-emu).
 */
int mta_tune_identify(const char *backend, int index, double timeout_s,
		      struct mta_device_info *info);

#endif
