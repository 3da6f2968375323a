/*
 * sweep.h: tune every item of a grid (grid.h), with one worker process per
 * device, all recording into one database.
 *
 * Shards: item i of the grid (0-based, in the grid's order) belongs to shard
 * i mod nshards, so N processes given shards 0..N-1 of the same grid cover
 * it exactly once, each possibly writing its own database (merged later with
 * mta_db_merge).
 *
 * Workers: one forked process per listed device takes the shard's items one
 * at a time from a shared counter (a worker that finishes early takes the
 * next item, so the load balances itself). Each worker gets the device index
 * in mta_tune_opts.device_index. Rows are keyed by
 * natural keys, so workers writing one database lose and duplicate nothing.
 * Workers ignore SIGINT and SIGTERM (the caller decides when to stop, through
 * o->stop) and die with the calling process (a SIGKILL of it ends them too).
 *
 * Resume: an item is done when every candidate variant has a result for the
 * device at (T, B) other than env_error (a failure of the machine, measured
 * again) and, if any of them ran ok, T's own bucket has a winner (with the
 * auto strategy, which screens what it decides to: when a winner was
 * decided at this very T and B); done items are skipped without measuring
 * anything. A partly done item is
 * resumed by mta_tune, which skips the variants already recorded.
 */
#ifndef MTA_SWEEP_H
#define MTA_SWEEP_H

#include <signal.h>
#include <stddef.h>

#include "tuner/sweep/grid.h"
#include "tuner/tune/tune.h"

#define MTA_SWEEP_MAX_DEVICES 64

enum {
	MTA_SWEEP_RECORD = 0, /* a variant of an item was handled (spec, status, ms) */
	MTA_SWEEP_ITEM,       /* an item ended: status "tuned", "done" (before), "failed" */
};

struct mta_sweep_event {
	int kind;
	int worker, device;       /* who reported it */
	size_t item;              /* index into the grid's items */
	const char *key;          /* the item's problem key */
	int64_t T, B;
	const char *op;           /* the item's operation: "fwd" or "bwd" */
	const char *spec;         /* RECORD: the variant; ITEM: the winner or NULL */
	const char *status;       /* RECORD: "ok", ..., "skipped"; ITEM: see above */
	double ms;                /* its time, NAN if none */
	const char *message;      /* ITEM "failed": why */
	/* totals of this sweep (this shard): */
	size_t items_done, items_total;
	long records_done, records_total; /* variants handled (measured or found) of all */
	long measured;            /* variants measured by this run */
	double elapsed_s, eta_s;  /* eta NAN until something was measured */
};

struct mta_sweep_opts {
	/* The tuner's settings for every item (T, B and only_specs are set per
	 * item; a random strategy needs a non-zero seed). db_path is shared. */
	struct mta_tune_opts tune;
	int shard, nshards;       /* 0-based shard of nshards; 0 and 1 for all */
	const int *devices;       /* device indices, one worker each; NULL: device 0 */
	int ndevices;
	volatile sig_atomic_t *stop; /* non-zero: stop after the records in hand */
	void (*progress)(void *ctx, const struct mta_sweep_event *e); /* in the caller */
	void *progress_ctx;
};

struct mta_sweep_summary {
	size_t items;             /* items of this shard */
	size_t done_before;       /* found done, skipped */
	size_t tuned, failed;     /* tuned now with a winner; no variant ran ok */
	long records_total, measured;
	int stopped;              /* 1 if o->stop ended it early */
};

/* Items of the grid in shard (0-based) of nshards. */
int mta_sweep_in_shard(size_t item, int shard, int nshards);

/*
 * Run the shard's items. MTA_OK when every item was handled (s->failed may
 * be non-zero), MTA_EINTR when stopped through o->stop (rerun to resume),
 * MTA_EINVAL for bad options, a worker's error (e.g. MTA_EDB) otherwise; the
 * other workers then stop too. A stop kills a measurement in progress (its
 * variant is not recorded), so a hanging kernel does not hold it up.
 */
int mta_sweep(const struct mta_grid *g, const struct mta_sweep_opts *o,
	      struct mta_sweep_summary *s);

/*
 * The shard named by Slurm's array variables: SLURM_ARRAY_TASK_ID and
 * SLURM_ARRAY_TASK_COUNT (with SLURM_ARRAY_TASK_MIN and _STEP when set, so
 * that --array=0-3, 1-4 and 1-7:2 all work). *found 0 when they are not set.
 */
int mta_sweep_slurm_shard(int *shard, int *nshards, int *found);

/*
 * The threads each worker of o uses on a host with `cores` cores: the
 * --threads given, else with several workers an even share of the cores (at
 * least 1: workers that each take all cores slow each other down many
 * times over), else 0 (all cores).
 */
int mta_sweep_worker_threads(const struct mta_sweep_opts *o, long cores);

#endif
