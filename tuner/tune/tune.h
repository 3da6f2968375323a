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
 * stopped.
 *
 * That first screening times each variant once, in sequence, and on a
 * shared machine whose speed drifts 1.5-2x within a minute its fastest
 * reading says little. So the best few are timed again against the default
 * variant in paired rounds (tuner/measure/check.h, mta_time_rounds: each
 * round runs all of them once, one after the other, a cache flush before
 * each), until each ratio to the default is known to within
 * MTA_TUNE_WIDTH or a time budget ends; a variant replaces the default only
 * when the 95% interval of its ratio (stats.h) lies wholly below
 * 1 - MTA_TUNE_MARGIN, and of those the lowest ratio wins. Otherwise the
 * default stays: the difference is within noise. The winner of the (T
 * bucket, B bucket) is recorded with that evidence.
 */
#ifndef MTA_TUNE_TUNE_H
#define MTA_TUNE_TUNE_H

#include "runtime/backend.h"
#include "tuner/measure/measure.h"

#include <signal.h>

/*
 * Strategies (tuner/tune/search.h): every variant, a seeded random sample,
 * a model-based search, or (the default) auto for spaces larger than
 * MTA_SEARCH_AUTO_ABOVE variants and exhaustive for the others.
 */
enum { MTA_TUNE_EXHAUSTIVE = 0, MTA_TUNE_RANDOM = 1, MTA_TUNE_AUTO = 2, MTA_TUNE_CHOOSE = 3 };
/* Warm start: at most this many recorded winners seed a search. */
#define MTA_TUNE_WARM 4

/* A winner must be faster than the default by this much, with 95% confidence. */
#define MTA_TUNE_MARGIN 0.015
/* Rounds go on until every interval is this narrow (hi/lo - 1), or the budget ends. */
#define MTA_TUNE_WIDTH 0.03

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
	int op;                   /* MTA_OP_FWD (default) or MTA_OP_BWD: the backward over its
				   * space (gen/space.h), each variant checked by mta_check_bwd
				   * and timed by mta_time_bwd; results and winners op "bwd";
				   * or MTA_OP_DECODE: the decode kernel over its space,
				   * checked by mta_check_decode, timed by mta_time_decode (one
				   * token at cache length T, the winners' T bucket); op
				   * "decode" */
	int device_index;         /* the backend's device (CUDA: ordinal among the
				   * visible ones, CUDA_VISIBLE_DEVICES applies); 0 */
	int strategy;             /* MTA_TUNE_* (default MTA_TUNE_CHOOSE) */
	int budget;               /* random, auto: variants to screen (0: all; auto: a third) */
	double time_budget_s;     /* screening starts no variant after this many seconds,
				   * once the default is screened (0: no limit) */
	int64_t T, B;
	int warmup, reps;         /* timing: warm-up runs, timed runs */
	int top;                  /* best few timed against the default in paired rounds */
	int min_rounds, max_rounds; /* paired rounds: at least, at most (<= MTA_ROUNDS_MAX) */
	double rounds_budget_s;   /* paired rounds stop after this many seconds (past min_rounds) */
	double timeout_s;         /* per candidate (verify + timing) */
	int threads;              /* CPU worker threads (CUDA: NVRTC compile threads), 0: all cores */
	int64_t verify_T;         /* T of the reference check, 0: min(T, 293) */
	unsigned long long seed;  /* 0: from the clock (fresh inputs each run) */
	const char *const *only_specs; /* NULL, or tune just these variants (and the default) */
	int n_only;
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
	int strategy;             /* the strategy used (never MTA_TUNE_CHOOSE) */
	int planned;              /* variants the strategy would screen (auto: its budget) */
	int warm;                 /* recorded winners that seeded the search */
	int out_of_time;          /* screening ended at time_budget_s */
	char winner[MTA_SPEC_MAX];
	double winner_ms;         /* its median in the paired rounds */
	char default_spec[MTA_SPEC_MAX];
	double default_ms;        /* the default's median in the same rounds; NAN when it did
				   * not run ok */
	/* The evidence: winner/default time ratio, its 95% interval, rounds (0: none run). */
	double ratio, ci_low, ci_high;
	int rounds, significant;
	/* When the default stays: the best other variant and its ratio (NAN: none compared). */
	char challenger[MTA_SPEC_MAX];
	double ch_ratio, ch_low, ch_high;
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
 * sample, or only_specs with the default), in its order; *out is malloc'd. A random sample
 * with seed 0 differs from call to call.
 */
int mta_tune_candidates(const struct mta_problem *p, const struct mta_tune_opts *o,
			struct mta_variant **out, size_t *n);

/*
 * The strategy a tune under o of the n candidates mta_tune_candidates gave
 * uses (MTA_TUNE_CHOOSE resolved; only_specs and random samples are screened
 * whole), and into *planned (may be NULL) how many it will screen at most.
 */
int mta_tune_strategy(const struct mta_tune_opts *o, size_t n, size_t *planned);

/* The size of the reference check of a tuning run: B min(B, 2), T verify_T or min(T, 293). */
void mta_check_size(const struct mta_tune_opts *o, int64_t *B, int64_t *T);

/*
 * The backend named name if the tuner tunes op on it: a timed backend (cpu,
 * cuda); for the backward and decode also cuda-emu, whose times rank the
 * emulator, not a GPU, but whose tuning walks the CUDA operation's space, checks every
 * point against the reference and records results and a winner under the
 * emulator's device (whose architecture no GPU shares, so no GPU context
 * picks them): the whole loop, tune to runtime, where no GPU is. The
 * forward on cuda-emu stays refused: its space is the GPU's, and nothing
 * but a GPU ranks it. MTA_EINVAL for an unknown name, MTA_EUNSUPPORTED for
 * a backend the tuner does not tune op on (naming those it does).
 */
int mta_tune_backend(const char *name, int op, const struct mta_backend **be);

/*
 * The identity of device index of backend (a name of runtime/backends.c),
 * asked in a child process with a time limit, so that the caller never
 * initialises a driver and may fork afterwards. MTA_EINVAL for an unknown
 * backend.
 */
int mta_tune_identify(const char *backend, int index, double timeout_s,
		      struct mta_device_info *info);

#endif
