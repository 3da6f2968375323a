/*
 * db.h: the tuning database (one SQLite file; the schema is db/schema.sql).
 *
 * Every function returns MTA_OK or an MTA_E* status with a message in
 * mta_last_error() naming the database file and what failed: MTA_EFORMAT
 * for a path that holds no mtatune database (not a regular file, not SQLite,
 * another application's file), MTA_EDB for SQLite failures and files of ours
 * that are damaged or newer, MTA_ENOTFOUND for a missing file opened
 * read-only and a lookup that found nothing, MTA_EINVAL for bad arguments.
 *
 * Writes: each write function is one transaction (BEGIN IMMEDIATE, retried
 * while another process holds the write lock, up to the busy timeout), unless
 * the caller groups several with mta_db_begin()/mta_db_commit(). A write
 * that fails inside a group rolls the whole group back at once: nothing of
 * it stays, later writes in the group fail, and mta_db_commit() reports it.
 * Any number of processes may write one file at once (WAL mode); nothing is
 * lost. A handle is for one thread at a time; do not share it across fork().
 *
 * Strings in records returned by get functions point into memory owned by
 * the handle, valid until the next call on it; in list callbacks they are
 * valid during the callback. Input strings may be NULL, meaning "".
 */
#ifndef MTA_DB_H
#define MTA_DB_H

#include <stddef.h>
#include <stdint.h>

#include "runtime/mta.h"

#define MTA_DB_SCHEMA_VERSION 4
/*
 * The oldest schema a read-only handle reads as it is, unmigrated (a copy
 * that cannot be written is readable all the same): version 4 only widened
 * the variants' identity to (problem, op, spec) and version 3 only added a
 * result status, neither of which the readers depend on; version 2 changed
 * the winners' table, which the readers need.
 */
#define MTA_DB_READ_MIN_VERSION 2
#define MTA_DB_APPLICATION_ID 0x4d544154 /* "MTAT" */
#define MTA_DB_BUSY_TIMEOUT_MS 10000 /* $MTATUNE_DB_BUSY_MS overrides (tests) */
/*
 * The longest one statement may run (a view or trigger of a hostile file
 * that never ends): it is then stopped with MTA_EDB. $MTATUNE_DB_QUERY_MS
 * overrides it.
 */
#define MTA_DB_QUERY_TIMEOUT_MS 120000

/* mta_db_open flags */
#define MTA_DB_READONLY 1 /* never write; the file must exist */
#define MTA_DB_CHECK 2    /* also run PRAGMA quick_check (reads every page) */

struct mta_db;

/*
 * The default database: $MTATUNE_DB when set and non-empty, else
 * $HOME/.cache/mtatune/mta.db. Creates nothing.
 */
int mta_db_default_path(char *buf, size_t n);

/*
 * Open (path NULL: the default, creating its folder unless READONLY) and
 * check the file: an empty or new file gets the schema, an older schema is
 * migrated in one transaction; a newer schema, a file that is not SQLite or
 * not ours, and a damaged file (a view in place of one of its tables, say)
 * are refused with a message saying so. READONLY also reads a read-only copy
 * of a WAL file in a folder that cannot be written (see db_open.c). Every
 * statement on the handle runs under MTA_DB_QUERY_TIMEOUT_MS.
 */
int mta_db_open(const char *path, int flags, struct mta_db **out);
void mta_db_close(struct mta_db *db); /* NULL is fine; rolls back an open group */
const char *mta_db_path(const struct mta_db *db);
int mta_db_schema_version(struct mta_db *db, int *version);

/* Group writes into one transaction (not nested). */
int mta_db_begin(struct mta_db *db);
int mta_db_commit(struct mta_db *db);
int mta_db_rollback(struct mta_db *db);

/* ---- devices and problems ---------------------------------------------- */
struct mta_db_device {
	int64_t id;       /* out */
	const char *backend; /* "cpu" | "cuda" */
	const char *name;    /* e.g. "NVIDIA H100 80GB HBM3", CPU model name */
	const char *arch;    /* sm_90, x86_64-avx2, ... */
	const char *driver, *compiler, *nvrtc; /* versions, "" if not applicable */
	int cores;           /* CPU cores or GPU SMs */
};

/* Find or insert the device with exactly these fields; *id its row. */
int mta_db_device_upsert(struct mta_db *db, const struct mta_db_device *d, int64_t *id);
/* Find only (works read-only); MTA_ENOTFOUND if absent. */
int mta_db_device_find(struct mta_db *db, const struct mta_db_device *d, int64_t *id);

/* Problems by canonical key (see mta_problem_key). */
int mta_db_problem_upsert(struct mta_db *db, const char *key, int64_t *id);
int mta_db_problem_find(struct mta_db *db, const char *key, int64_t *id);

/* ---- variants and their compile information ------------------------------ */
enum { MTA_COMPILE_UNKNOWN = 0, MTA_COMPILE_OK = 1, MTA_COMPILE_FAILED = 2 };

struct mta_db_compile {
	int status;          /* MTA_COMPILE_* */
	const char *target;  /* what it was compiled for: sm_90, x86_64, ... */
	int registers, spill_stores, spill_loads, shared_bytes, stack_bytes; /* -1: unknown */
	double ms;           /* compile wall time; NAN: unknown */
	const char *log;     /* compiler output */
};

struct mta_db_variant {
	int64_t id, problem_id;
	const char *spec;        /* canonical spec, e.g. cuda:v1,bq=16,... */
	const char *op;          /* out: the operation, "fwd", "bwd" or "decode" */
	const char *source_hash; /* digest of the generated source; "" unknown */
	struct mta_db_compile compile;
};

/*
 * Find or insert (problem, op, spec); mta_db_variant_upsert is op "fwd". op
 * is "fwd", "bwd" or "decode" (NULL: "fwd"); the forward and the backward of
 * one spec are two variants with their own results. A non-empty source_hash that differs from
 * the stored one replaces it and clears the compile information (the source
 * changed; what compiling the old one said no longer holds); when the stored
 * hash was non-empty, the variant's results and winners are deleted too, in
 * the same transaction, since they measured code that no longer exists.
 */
int mta_db_variant_upsert(struct mta_db *db, int64_t problem_id, const char *spec,
			  const char *source_hash, int64_t *id);
int mta_db_variant_upsert_op(struct mta_db *db, int64_t problem_id, const char *op,
			     const char *spec, const char *source_hash, int64_t *id);
int mta_db_variant_set_compile(struct mta_db *db, int64_t variant_id,
			       const struct mta_db_compile *c);
int mta_db_variant_get(struct mta_db *db, int64_t variant_id, struct mta_db_variant *out);

/* ---- results ------------------------------------------------------------- */
enum {
	MTA_RESULT_OK = 0,
	MTA_RESULT_VERIFY_FAILED,
	MTA_RESULT_COMPILE_FAILED,
	MTA_RESULT_CRASHED,
	MTA_RESULT_TIMEOUT,
	MTA_RESULT_PRUNED,
	MTA_RESULT_ERROR,
	MTA_RESULT_ENV_ERROR, /* the machine failed, not the kernel: a resumed run measures it again */
	MTA_RESULT_COUNT
};
const char *mta_result_status_name(int status); /* "ok", "verify_failed", ... */
int mta_result_status_parse(const char *s, int *status);

struct mta_db_result {
	int64_t id;          /* out */
	int64_t device_id, variant_id;
	int64_t T, B;
	int status;          /* MTA_RESULT_*; OK needs median_ms */
	double median_ms, p20_ms, p80_ms, min_ms; /* NAN: not measured */
	int runs;
	double rel_err;      /* relative L2 vs the reference; NAN: not verified */
	const char *error;   /* what went wrong, "" if nothing */
	const char *run_id;  /* the tuning run */
	double started_at;   /* Unix seconds; 0: unknown */
	double recorded_at;  /* out: set when written */
	/* out, filled by mta_db_list_results only (op: the variant's operation): */
	const char *problem_key, *spec, *op;
};

/*
 * Record a result as soon as it exists. Keyed by (device, variant, T, B): a
 * later result for the same key replaces the earlier one in place (same id),
 * so re-running never duplicates.
 */
int mta_db_result_put(struct mta_db *db, const struct mta_db_result *r);
/* The stored result for the key, for a resuming tuner; MTA_ENOTFOUND if none. */
int mta_db_result_get(struct mta_db *db, int64_t device_id, int64_t variant_id,
		      int64_t T, int64_t B, struct mta_db_result *out);

/* ---- winners --------------------------------------------------------------- */

struct mta_db_winner {
	int64_t device_id, problem_id, variant_id;
	const char *op;      /* the operation, "fwd" (NULL in set: "fwd") */
	int64_t t_bucket;    /* 0 in set: mta_t_bucket(T) (runtime/core/pick.h) */
	int64_t b_bucket;    /* 0 in set: mta_t_bucket(B) */
	int64_t T, B;        /* the size it was decided at */
	double time_ms;      /* its median time */
	/*
	 * The evidence (schema.sql): the default variant's median in the same
	 * paired rounds, the geometric mean of the per-round ratio winner/default
	 * with its 95% interval, the rounds, whether the interval lies wholly
	 * below 1 by the tuner's margin. NAN / 0 when decided without rounds.
	 */
	double default_ms, ratio, ci_low, ci_high;
	int rounds, significant;
	double updated_at;   /* out */
	/* out: */
	const char *problem_key, *spec, *source_hash;
	int exact;           /* get: 1 if the buckets are (T, B)'s own */
};

/*
 * Set the winner of (device, problem, op, t_bucket, b_bucket), replacing the
 * earlier decision for that key; the variant must be one of the problem's,
 * of the same op.
 */
int mta_db_winner_set(struct mta_db *db, const struct mta_db_winner *w);
/*
 * The winner for (B, T) among those recorded for (device, problem, op), as
 * the pick policy names it (runtime/core/pick.h: the buckets of (B, T), else
 * the nearest). MTA_ENOTFOUND when the problem has no winner for op on the
 * device at all.
 */
int mta_db_winner_get(struct mta_db *db, int64_t device_id, const char *problem_key,
		      const char *op, int64_t B, int64_t T, struct mta_db_winner *out);

/* ---- listing (for `mtatune list` and `mtatune best`) --------------------------
 * Each calls cb once per row; a non-zero return from cb stops the walk and
 * is returned. device_id 0 / problem_key NULL: all. */
struct mta_db_problem_info {
	int64_t id;
	const char *key;
	int64_t variants, results, winners;
};
typedef int (*mta_db_device_cb)(void *ctx, const struct mta_db_device *d);
typedef int (*mta_db_problem_cb)(void *ctx, const struct mta_db_problem_info *p);
typedef int (*mta_db_result_cb)(void *ctx, const struct mta_db_result *r);
typedef int (*mta_db_winner_cb)(void *ctx, const struct mta_db_winner *w);

int mta_db_list_devices(struct mta_db *db, mta_db_device_cb cb, void *ctx);
int mta_db_list_problems(struct mta_db *db, mta_db_problem_cb cb, void *ctx);
/* Ordered by problem, T, B, then median time (unmeasured last). */
int mta_db_list_results(struct mta_db *db, int64_t device_id, const char *problem_key,
			mta_db_result_cb cb, void *ctx);
/* Ordered by device, problem, op, T bucket, B bucket. */
int mta_db_list_winners(struct mta_db *db, int64_t device_id, const char *problem_key,
			mta_db_winner_cb cb, void *ctx);

/* ---- merging shards ------------------------------------------------------------
 * Merge the database at in_path into db in one transaction (see db_merge.c):
 * rows matched by natural keys (variants by problem, op and spec), every result kept (the later measurement of
 * the same key wins), devices kept apart, winners kept with their evidence
 * (of two decisions for one key the later stands, as when a key is tuned
 * again). in_path must be an mtatune database of this schema version; it is
 * only read. */
int mta_db_merge(struct mta_db *db, const char *in_path);

/* ---- compiled binaries ------------------------------------------------------ */
struct mta_db_binary_key {
	const char *source_hash; /* required */
	const char *target;      /* sm_90, x86_64-avx2, ... */
	const char *compiler;    /* compiler identity and version */
	const char *options;     /* the options that matter, canonical order */
};
/* Store (replacing) the blob for the key. n may be 0. */
int mta_db_binary_put(struct mta_db *db, const struct mta_db_binary_key *k,
		      const void *data, size_t n);
/* *data is malloc'd (caller frees; non-NULL even when *n is 0). MTA_ENOTFOUND if absent. */
int mta_db_binary_get(struct mta_db *db, const struct mta_db_binary_key *k,
		      void **data, size_t *n);
/*
 * The same from any compiler (k->compiler is ignored), the newest stored: for
 * `mtatune export`, which needs some cubin of a source for an architecture
 * and may run where NVRTC (hence its version) is absent.
 */
int mta_db_binary_get_any(struct mta_db *db, const struct mta_db_binary_key *k,
			  void **data, size_t *n);

#endif /* MTA_DB_H */
