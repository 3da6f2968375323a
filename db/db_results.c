/*
 * db_results.c: measurements and winners.
 *
 * A result is keyed by (device, variant, T, B); writing one again updates
 * the row in place, so a resumed run that re-measures never duplicates, and
 * one that looks first (mta_db_result_get) skips what is done.
 *
 * Winners are kept per T bucket, the smallest power of two >= T: one
 * winner covers the sequence lengths (bucket/2, bucket]. A lookup for a T
 * whose bucket has no winner takes the nearest bucket that has one, nearest
 * in log2 distance (so 512 is as near to 1024 as 2048 is), ties going to the
 * larger bucket: a kernel tuned for longer sequences is the safer guess.
 */
#include "db_int.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#define T_MAX ((int64_t)1 << 40) /* far beyond any sequence, far from overflow */

int64_t mta_db_t_bucket(int64_t T)
{
	int64_t b = 1;
	while (b < T && b < ((int64_t)1 << 62))
		b <<= 1;
	return b;
}

static int log2_exact(int64_t b) { return __builtin_ctzll((unsigned long long)b); }

/* ---- results ---------------------------------------------------------------------- */

#define RESULT_COLS "r.id, r.device_id, r.variant_id, r.T, r.B, r.status, r.median_ms, " \
	"r.p20_ms, r.p80_ms, r.min_ms, r.runs, r.rel_err, r.error, r.run_id, r.started_at, " \
	"r.recorded_at"

/* Fill r from a row of RESULT_COLS; strings point into the statement's row. */
static void read_result(sqlite3_stmt *st, struct mta_db_result *r)
{
	memset(r, 0, sizeof *r);
	r->id = sqlite3_column_int64(st, 0);
	r->device_id = sqlite3_column_int64(st, 1);
	r->variant_id = sqlite3_column_int64(st, 2);
	r->T = sqlite3_column_int64(st, 3);
	r->B = sqlite3_column_int64(st, 4);
	mta_result_status_parse((const char *)sqlite3_column_text(st, 5), &r->status);
	r->median_ms = db_col_real(st, 6);
	r->p20_ms = db_col_real(st, 7);
	r->p80_ms = db_col_real(st, 8);
	r->min_ms = db_col_real(st, 9);
	r->runs = sqlite3_column_int(st, 10);
	r->rel_err = db_col_real(st, 11);
	r->error = (const char *)sqlite3_column_text(st, 12);
	r->run_id = (const char *)sqlite3_column_text(st, 13);
	r->started_at = sqlite3_column_type(st, 14) == SQLITE_NULL ? 0 : sqlite3_column_double(st, 14);
	r->recorded_at = sqlite3_column_double(st, 15);
}

static int check_result(struct mta_db *db, const struct mta_db_result *r)
{
	if (r->status < 0 || r->status >= MTA_RESULT_COUNT)
		return mta_fail(MTA_EINVAL, "database %s: result status %d is not MTA_RESULT_*",
				db->path, r->status);
	if (r->T < 1 || r->T > T_MAX || r->B < 1 || r->B > T_MAX)
		return mta_fail(MTA_EINVAL, "database %s: result with T=%lld B=%lld (expected "
				"1..2^40)", db->path, (long long)r->T, (long long)r->B);
	if (r->status == MTA_RESULT_OK && !(isfinite(r->median_ms) && r->median_ms >= 0))
		return mta_fail(MTA_EINVAL, "database %s: an ok result needs a median time "
				"(got %g)", db->path, r->median_ms);
	return MTA_OK;
}

int mta_db_result_put(struct mta_db *db, const struct mta_db_result *r)
{
	sqlite3_stmt *st;
	int rc = check_result(db, r);
	if (rc || (rc = db_write_begin(db, "record a result")))
		return rc;
	rc = db_prepare(db, &st,
		"INSERT INTO results (device_id, variant_id, T, B, t_bucket, status, median_ms, "
		"p20_ms, p80_ms, min_ms, runs, rel_err, error, run_id, started_at, recorded_at) "
		"VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, " NOW_SQL ") "
		"ON CONFLICT (device_id, variant_id, T, B) DO UPDATE SET status = excluded.status, "
		"median_ms = excluded.median_ms, p20_ms = excluded.p20_ms, p80_ms = excluded.p80_ms, "
		"min_ms = excluded.min_ms, runs = excluded.runs, rel_err = excluded.rel_err, "
		"error = excluded.error, run_id = excluded.run_id, started_at = excluded.started_at, "
		"recorded_at = excluded.recorded_at");
	if (!rc) {
		sqlite3_bind_int64(st, 1, r->device_id);
		sqlite3_bind_int64(st, 2, r->variant_id);
		sqlite3_bind_int64(st, 3, r->T);
		sqlite3_bind_int64(st, 4, r->B);
		sqlite3_bind_int64(st, 5, mta_db_t_bucket(r->T));
		db_text(st, 6, mta_result_status_name(r->status));
		db_real(st, 7, r->median_ms);
		db_real(st, 8, r->p20_ms);
		db_real(st, 9, r->p80_ms);
		db_real(st, 10, r->min_ms);
		sqlite3_bind_int(st, 11, r->runs);
		db_real(st, 12, r->rel_err);
		db_text(st, 13, r->error);
		db_text(st, 14, r->run_id);
		db_real(st, 15, r->started_at > 0 ? r->started_at : NAN);
		if (sqlite3_step(st) != SQLITE_DONE)
			rc = db_err(db, "record a result");
		sqlite3_finalize(st);
	}
	return db_write_end(db, rc);
}

int mta_db_result_get(struct mta_db *db, int64_t device_id, int64_t variant_id,
		      int64_t T, int64_t B, struct mta_db_result *out)
{
	sqlite3_stmt *st;
	db_keep_reset(db);
	int rc = db_prepare(db, &st, "SELECT " RESULT_COLS " FROM results r WHERE "
			    "r.device_id = ?1 AND r.variant_id = ?2 AND r.T = ?3 AND r.B = ?4");
	if (rc)
		return rc;
	sqlite3_bind_int64(st, 1, device_id);
	sqlite3_bind_int64(st, 2, variant_id);
	sqlite3_bind_int64(st, 3, T);
	sqlite3_bind_int64(st, 4, B);
	int s = sqlite3_step(st);
	if (s == SQLITE_ROW) {
		read_result(st, out);
		out->error = db_keep(db, (const unsigned char *)out->error);
		out->run_id = db_keep(db, (const unsigned char *)out->run_id);
		out->problem_key = out->spec = NULL;
	} else if (s == SQLITE_DONE) {
		rc = mta_fail(MTA_ENOTFOUND, "database %s has no result for device %lld, variant "
			      "%lld, T=%lld, B=%lld", db->path, (long long)device_id,
			      (long long)variant_id, (long long)T, (long long)B);
	} else {
		rc = db_err(db, "read a result");
	}
	sqlite3_finalize(st);
	return rc;
}

int mta_db_list_results(struct mta_db *db, int64_t device_id, const char *problem_key,
			mta_db_result_cb cb, void *ctx)
{
	sqlite3_stmt *st;
	int rc = db_prepare(db, &st, "SELECT " RESULT_COLS ", p.key, v.spec FROM results r "
			    "JOIN variants v ON v.id = r.variant_id JOIN problems p ON p.id = "
			    "v.problem_id WHERE (?1 = 0 OR r.device_id = ?1) AND (?2 IS NULL OR "
			    "p.key = ?2) ORDER BY p.key, r.device_id, r.T, r.B, "
			    "r.median_ms IS NULL, r.median_ms, v.spec");
	if (rc)
		return rc;
	sqlite3_bind_int64(st, 1, device_id);
	if (problem_key)
		db_text(st, 2, problem_key);
	int s;
	while (!rc && (s = sqlite3_step(st)) == SQLITE_ROW) {
		struct mta_db_result r;
		read_result(st, &r);
		r.problem_key = (const char *)sqlite3_column_text(st, 16);
		r.spec = (const char *)sqlite3_column_text(st, 17);
		rc = cb(ctx, &r);
	}
	if (!rc && s != SQLITE_DONE)
		rc = db_err(db, "list results");
	sqlite3_finalize(st);
	return rc;
}

/* ---- winners ------------------------------------------------------------------------ */

int mta_db_winner_set(struct mta_db *db, const struct mta_db_winner *w)
{
	sqlite3_stmt *st;
	int64_t b = w->t_bucket ? w->t_bucket : mta_db_t_bucket(w->T);
	if (b < 1 || (b & (b - 1)) || !isfinite(w->time_ms))
		return mta_fail(MTA_EINVAL, "database %s: winner with T bucket %lld and time %g "
				"(expected a power of two and a finite time)", db->path,
				(long long)b, w->time_ms);
	int rc = db_write_begin(db, "record a winner");
	if (rc)
		return rc;
	/* Inserting from variants checks that the variant is one of the problem's. */
	rc = db_prepare(db, &st,
		"INSERT INTO winners (device_id, problem_id, t_bucket, variant_id, time_ms, T, B, "
		"updated_at) SELECT ?1, problem_id, ?3, id, ?5, ?6, ?7, " NOW_SQL " FROM variants "
		"WHERE id = ?4 AND problem_id = ?2 ON CONFLICT (device_id, problem_id, t_bucket) "
		"DO UPDATE SET variant_id = excluded.variant_id, time_ms = excluded.time_ms, "
		"T = excluded.T, B = excluded.B, updated_at = excluded.updated_at");
	if (!rc) {
		sqlite3_bind_int64(st, 1, w->device_id);
		sqlite3_bind_int64(st, 2, w->problem_id);
		sqlite3_bind_int64(st, 3, b);
		sqlite3_bind_int64(st, 4, w->variant_id);
		sqlite3_bind_double(st, 5, w->time_ms);
		sqlite3_bind_int64(st, 6, w->T);
		sqlite3_bind_int64(st, 7, w->B);
		if (sqlite3_step(st) != SQLITE_DONE)
			rc = db_err(db, "record a winner");
		else if (sqlite3_changes(db->h) != 1)
			rc = mta_fail(MTA_EINVAL, "database %s: variant %lld is not a variant of "
				      "problem %lld", db->path, (long long)w->variant_id,
				      (long long)w->problem_id);
		sqlite3_finalize(st);
	}
	return db_write_end(db, rc);
}

#define WINNER_SQL "SELECT w.device_id, w.problem_id, w.variant_id, w.t_bucket, w.T, w.B, " \
	"w.time_ms, w.updated_at, p.key, v.spec, v.source_hash FROM winners w " \
	"JOIN problems p ON p.id = w.problem_id JOIN variants v ON v.id = w.variant_id "

static void read_winner(sqlite3_stmt *st, struct mta_db_winner *w)
{
	memset(w, 0, sizeof *w);
	w->device_id = sqlite3_column_int64(st, 0);
	w->problem_id = sqlite3_column_int64(st, 1);
	w->variant_id = sqlite3_column_int64(st, 2);
	w->t_bucket = sqlite3_column_int64(st, 3);
	w->T = sqlite3_column_int64(st, 4);
	w->B = sqlite3_column_int64(st, 5);
	w->time_ms = sqlite3_column_double(st, 6);
	w->updated_at = sqlite3_column_double(st, 7);
	w->problem_key = (const char *)sqlite3_column_text(st, 8);
	w->spec = (const char *)sqlite3_column_text(st, 9);
	w->source_hash = (const char *)sqlite3_column_text(st, 10);
}

/* The recorded bucket nearest to want (see the file comment); 0 if none. */
static int nearest_bucket(struct mta_db *db, int64_t device_id, int64_t problem_id,
			  int64_t want, int64_t *best)
{
	sqlite3_stmt *st;
	int rc = db_prepare(db, &st, "SELECT t_bucket FROM winners WHERE device_id = ?1 AND "
			    "problem_id = ?2");
	if (rc)
		return rc;
	sqlite3_bind_int64(st, 1, device_id);
	sqlite3_bind_int64(st, 2, problem_id);
	int s, we = log2_exact(want), bd = 0;
	*best = 0;
	while ((s = sqlite3_step(st)) == SQLITE_ROW) {
		int64_t b = sqlite3_column_int64(st, 0);
		int d = abs(log2_exact(b) - we);
		if (!*best || d < bd || (d == bd && b > *best)) {
			*best = b;
			bd = d;
		}
	}
	if (s != SQLITE_DONE)
		rc = db_err(db, "look up winners");
	sqlite3_finalize(st);
	return rc;
}

int mta_db_winner_get(struct mta_db *db, int64_t device_id, const char *problem_key,
		      int64_t T, struct mta_db_winner *out)
{
	sqlite3_stmt *st;
	int64_t pid = 0, want = mta_db_t_bucket(T), b = 0;
	db_keep_reset(db);
	int rc = mta_db_problem_find(db, problem_key, &pid);
	if (!rc)
		rc = nearest_bucket(db, device_id, pid, want, &b);
	if ((!rc && !b) || rc == MTA_ENOTFOUND)
		rc = mta_fail(MTA_ENOTFOUND, "database %s has no tuned kernel for %s on device "
			      "%lld", db->path, problem_key ? problem_key : "", (long long)device_id);
	if (rc)
		return rc;
	if ((rc = db_prepare(db, &st, WINNER_SQL "WHERE w.device_id = ?1 AND w.problem_id = ?2 "
			     "AND w.t_bucket = ?3")))
		return rc;
	sqlite3_bind_int64(st, 1, device_id);
	sqlite3_bind_int64(st, 2, pid);
	sqlite3_bind_int64(st, 3, b);
	if (sqlite3_step(st) == SQLITE_ROW) {
		read_winner(st, out);
		out->problem_key = db_keep(db, (const unsigned char *)out->problem_key);
		out->spec = db_keep(db, (const unsigned char *)out->spec);
		out->source_hash = db_keep(db, (const unsigned char *)out->source_hash);
		out->exact = b == want;
	} else {
		rc = db_err(db, "read a winner");
	}
	sqlite3_finalize(st);
	return rc;
}

int mta_db_list_winners(struct mta_db *db, int64_t device_id, const char *problem_key,
			mta_db_winner_cb cb, void *ctx)
{
	sqlite3_stmt *st;
	int rc = db_prepare(db, &st, WINNER_SQL "WHERE (?1 = 0 OR w.device_id = ?1) AND "
			    "(?2 IS NULL OR p.key = ?2) ORDER BY w.device_id, p.key, w.t_bucket");
	if (rc)
		return rc;
	sqlite3_bind_int64(st, 1, device_id);
	if (problem_key)
		db_text(st, 2, problem_key);
	int s;
	while (!rc && (s = sqlite3_step(st)) == SQLITE_ROW) {
		struct mta_db_winner w;
		read_winner(st, &w);
		w.exact = 1;
		rc = cb(ctx, &w);
	}
	if (!rc && s != SQLITE_DONE)
		rc = db_err(db, "list winners");
	sqlite3_finalize(st);
	return rc;
}

int mta_db_winners_recompute(struct mta_db *db)
{
	int rc = db_write_begin(db, "recompute winners");
	if (rc)
		return rc;
	rc = db_exec(db,
		"WITH ok AS (SELECT r.device_id, v.problem_id, r.t_bucket, r.T, r.B, "
		"  r.variant_id, r.median_ms, v.spec FROM results r JOIN variants v "
		"  ON v.id = r.variant_id WHERE r.status = 'ok' AND r.median_ms IS NOT NULL), "
		"pts AS (SELECT device_id, problem_id, t_bucket, T, B, row_number() OVER ("
		"  PARTITION BY device_id, problem_id, t_bucket ORDER BY count(*) DESC, T DESC, "
		"  B DESC) AS rank FROM ok GROUP BY device_id, problem_id, t_bucket, T, B), "
		"win AS (SELECT ok.*, row_number() OVER (PARTITION BY ok.device_id, "
		"  ok.problem_id, ok.t_bucket ORDER BY ok.median_ms, ok.spec) AS rank FROM ok "
		"  JOIN pts USING (device_id, problem_id, t_bucket, T, B) WHERE pts.rank = 1) "
		"INSERT INTO winners (device_id, problem_id, t_bucket, variant_id, time_ms, T, B, "
		"  updated_at) SELECT device_id, problem_id, t_bucket, variant_id, median_ms, T, B, "
		NOW_SQL " FROM win WHERE rank = 1 "
		"ON CONFLICT (device_id, problem_id, t_bucket) DO UPDATE SET "
		"variant_id = excluded.variant_id, time_ms = excluded.time_ms, T = excluded.T, "
		"B = excluded.B, updated_at = excluded.updated_at",
		"recompute winners");
	return db_write_end(db, rc);
}
