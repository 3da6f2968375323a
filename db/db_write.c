/*
 * db_write.c: writing the database: devices, problems, variants with their
 * compile information, results, winners and compiled binaries. Part of the
 * tool (libmtatool), not of the runtime users link.
 *
 * Each write is "find or insert by natural key" or "insert, or update in
 * place on the natural key" (INSERT ... ON CONFLICT DO UPDATE), run through
 * db_write_begin/db_write_end so that it is atomic alone or part of a group.
 * A result is keyed by (device, variant, T, B): writing one again updates
 * the row in place, so a resumed run that re-measures never duplicates, and
 * one that looks first (mta_db_result_get) skips what is done.
 */
#include "db/db_int.h"
#include "runtime/core/pick.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#define T_MAX ((int64_t)1 << 40) /* far beyond any sequence, far from overflow */

/*
 * Run st (bound, not yet stepped) to completion as one write; *id, when not
 * NULL, gets the first column of its first row. Finalizes st.
 */
static int step_write(struct mta_db *db, sqlite3_stmt *st, const char *what, int64_t *id)
{
	int s, rows = 0, rc = MTA_OK;
	while ((s = sqlite3_step(st)) == SQLITE_ROW)
		if (id && rows++ == 0)
			*id = sqlite3_column_int64(st, 0);
	if (s != SQLITE_DONE)
		rc = db_err(db, what);
	else if (id && rows == 0)
		rc = mta_fail(MTA_EDB, "database %s: %s: no row came back", db->path, what);
	sqlite3_finalize(st);
	return rc;
}

int mta_db_device_upsert(struct mta_db *db, const struct mta_db_device *d, int64_t *id)
{
	sqlite3_stmt *st;
	int rc = db_check_device(d);
	if (rc || (rc = db_write_begin(db, "record a device")))
		return rc;
	/* DO UPDATE (a no-op) rather than DO NOTHING, so RETURNING gives the id. */
	rc = db_prepare(db, &st, "INSERT INTO devices (backend, name, arch, driver, compiler, "
			"nvrtc, cores) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7) ON CONFLICT DO UPDATE "
			"SET cores = excluded.cores RETURNING id");
	if (!rc) {
		db_bind_device(st, d);
		rc = step_write(db, st, "record a device", id);
	}
	return db_write_end(db, rc);
}

int mta_db_problem_upsert(struct mta_db *db, const char *key, int64_t *id)
{
	sqlite3_stmt *st;
	if (!key || !*key)
		return mta_fail(MTA_EINVAL, "empty problem key");
	int rc = db_write_begin(db, "record a problem");
	if (rc)
		return rc;
	rc = db_prepare(db, &st, "INSERT INTO problems (key) VALUES (?1) ON CONFLICT DO "
			"UPDATE SET key = excluded.key RETURNING id");
	if (!rc) {
		db_text(st, 1, key);
		rc = step_write(db, st, "record a problem", id);
	}
	return db_write_end(db, rc);
}

static int check_op(struct mta_db *db, const char *op, const char *what)
{
	if (strcmp(op, "fwd") && strcmp(op, "bwd") && strcmp(op, "decode"))
		return mta_fail(MTA_EINVAL, "database %s: %s of operation '%s' (expected fwd, bwd "
				"or decode)", db->path, what, op);
	return MTA_OK;
}

int mta_db_variant_upsert(struct mta_db *db, int64_t problem_id, const char *spec,
			  const char *source_hash, int64_t *id)
{
	return mta_db_variant_upsert_op(db, problem_id, "fwd", spec, source_hash, id);
}

int mta_db_variant_upsert_op(struct mta_db *db, int64_t problem_id, const char *op,
			     const char *spec, const char *source_hash, int64_t *id)
{
	sqlite3_stmt *st;
	int64_t stale = 0;
	if (!op)
		op = "fwd";
	if (!spec || !*spec)
		return mta_fail(MTA_EINVAL, "empty variant spec");
	int rc0 = check_op(db, op, "variant");
	if (rc0)
		return rc0;
	int rc = db_write_begin(db, "record a variant");
	if (rc)
		return rc;
	/* A new source for a known spec makes its measurements stale (below). */
	if (!(rc = db_prepare(db, &st, "SELECT count(*) FROM variants WHERE problem_id = ?1 AND "
			      "spec = ?2 AND op = ?4 AND source_hash <> '' AND ?3 <> '' AND "
			      "source_hash <> ?3"))) {
		sqlite3_bind_int64(st, 1, problem_id);
		db_text(st, 2, spec);
		db_text(st, 3, source_hash);
		db_text(st, 4, op);
		rc = db_step_find(db, st, &stale, "count stale variants");
	}
	if (!rc && !(rc = db_prepare(db, &st,
		"INSERT INTO variants (problem_id, spec, source_hash, op) VALUES (?1, ?2, ?3, ?4) "
		"ON CONFLICT DO UPDATE SET source_hash = excluded.source_hash, "
		"compile_status = 'unknown', compile_target = '', registers = NULL, "
		"spill_stores = NULL, spill_loads = NULL, shared_bytes = NULL, "
		"stack_bytes = NULL, compile_ms = NULL, compile_log = NULL "
		"WHERE excluded.source_hash <> '' AND excluded.source_hash <> source_hash"))) {
		sqlite3_bind_int64(st, 1, problem_id);
		db_text(st, 2, spec);
		db_text(st, 3, source_hash);
		db_text(st, 4, op);
		rc = step_write(db, st, "record a variant", NULL);
	}
	/* The conflict branch may update nothing, so no RETURNING: look it up. */
	if (!rc && !(rc = db_prepare(db, &st, "SELECT id FROM variants WHERE problem_id = ?1 "
				     "AND spec = ?2 AND op = ?3"))) {
		sqlite3_bind_int64(st, 1, problem_id);
		db_text(st, 2, spec);
		db_text(st, 3, op);
		rc = db_step_find(db, st, id, "the variant just recorded is missing");
	}
	/*
	 * Results and winners of the old source measured another kernel: drop
	 * them, so that a resumed tuner measures the new one instead of skipping
	 * it and the runtime never picks a winner for code it no longer runs.
	 */
	static const char *drop[] = { "DELETE FROM winners WHERE variant_id = ?1",
				      "DELETE FROM results WHERE variant_id = ?1" };
	for (int i = 0; !rc && stale && i < 2; i++)
		if (!(rc = db_prepare(db, &st, drop[i]))) {
			sqlite3_bind_int64(st, 1, *id);
			rc = step_write(db, st, "drop the measurements of a changed variant", NULL);
		}
	return db_write_end(db, rc);
}

static void bind_opt_int(sqlite3_stmt *st, int i, int v)
{
	if (v < 0)
		sqlite3_bind_null(st, i);
	else
		sqlite3_bind_int(st, i, v);
}

int mta_db_variant_set_compile(struct mta_db *db, int64_t variant_id,
			       const struct mta_db_compile *c)
{
	sqlite3_stmt *st;
	if (c->status < 0 || c->status > MTA_COMPILE_FAILED)
		return mta_fail(MTA_EINVAL, "compile status %d is not MTA_COMPILE_*", c->status);
	int rc = db_write_begin(db, "record compile information");
	if (rc)
		return rc;
	rc = db_prepare(db, &st, "UPDATE variants SET compile_status = ?2, compile_target = ?3, "
			"registers = ?4, spill_stores = ?5, spill_loads = ?6, shared_bytes = ?7, "
			"stack_bytes = ?8, compile_ms = ?9, compile_log = ?10 WHERE id = ?1");
	if (!rc) {
		sqlite3_bind_int64(st, 1, variant_id);
		db_text(st, 2, db_compile_names[c->status]);
		db_text(st, 3, c->target);
		bind_opt_int(st, 4, c->registers);
		bind_opt_int(st, 5, c->spill_stores);
		bind_opt_int(st, 6, c->spill_loads);
		bind_opt_int(st, 7, c->shared_bytes);
		bind_opt_int(st, 8, c->stack_bytes);
		db_real(st, 9, c->ms);
		db_text(st, 10, c->log);
		rc = step_write(db, st, "record compile information", NULL);
	}
	if (!rc && sqlite3_changes(db->h) != 1)
		rc = mta_fail(MTA_ENOTFOUND, "database %s has no variant %lld", db->path,
			      (long long)variant_id);
	return db_write_end(db, rc);
}

int mta_db_binary_put(struct mta_db *db, const struct mta_db_binary_key *k,
		      const void *data, size_t n)
{
	sqlite3_stmt *st;
	if (!data && n)
		return mta_fail(MTA_EINVAL, "database %s: binary of %zu bytes without data",
				db->path, n);
	int rc = db_check_binary_key(db, k);
	if (rc || (rc = db_write_begin(db, "store a binary")))
		return rc;
	rc = db_prepare(db, &st, "INSERT INTO binaries (source_hash, target, compiler, options, "
			"blob) VALUES (?1, ?2, ?3, ?4, ?5) ON CONFLICT DO UPDATE SET "
			"blob = excluded.blob, created_at = " NOW_SQL);
	if (!rc) {
		db_bind_binary_key(st, k);
		/* A zero-length blob, not NULL, when n is 0. */
		sqlite3_bind_blob64(st, 5, n ? data : "", n, SQLITE_TRANSIENT);
		rc = step_write(db, st, "store a binary", NULL);
	}
	return db_write_end(db, rc);
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
		sqlite3_bind_int64(st, 5, mta_t_bucket(r->T));
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

/* A finite positive x, or NULL: times and ratios are positive, anything else is no evidence. */
static void bind_evidence(sqlite3_stmt *st, int i, double x)
{
	db_real(st, i, isfinite(x) && x > 0 ? x : NAN);
}

int mta_db_winner_set(struct mta_db *db, const struct mta_db_winner *w)
{
	sqlite3_stmt *st;
	int64_t b = w->t_bucket ? w->t_bucket : mta_t_bucket(w->T);
	int64_t bb = w->b_bucket ? w->b_bucket : mta_t_bucket(w->B);
	const char *op = w->op ? w->op : "fwd";
	if (b < 1 || (b & (b - 1)) || bb < 1 || (bb & (bb - 1)) || !isfinite(w->time_ms))
		return mta_fail(MTA_EINVAL, "database %s: winner with T bucket %lld, B bucket %lld and "
				"time %g (expected powers of two and a finite time)", db->path,
				(long long)b, (long long)bb, w->time_ms);
	int rc = check_op(db, op, "winner");
	if (rc)
		return rc;
	rc = db_write_begin(db, "record a winner");
	if (rc)
		return rc;
	/* Inserting from variants checks that the variant is one of the problem's, of op. */
	rc = db_prepare(db, &st,
		"INSERT INTO winners (device_id, problem_id, op, t_bucket, b_bucket, variant_id, "
		"time_ms, T, B, default_ms, ratio, ci_low, ci_high, rounds, significant, updated_at) "
		"SELECT ?1, problem_id, ?8, ?3, ?9, id, ?5, ?6, ?7, ?10, ?11, ?12, ?13, ?14, ?15, "
		NOW_SQL " FROM variants WHERE id = ?4 AND problem_id = ?2 AND op = ?8 "
		"ON CONFLICT (device_id, problem_id, op, t_bucket, b_bucket) DO UPDATE SET "
		"variant_id = excluded.variant_id, time_ms = excluded.time_ms, T = excluded.T, "
		"B = excluded.B, default_ms = excluded.default_ms, ratio = excluded.ratio, "
		"ci_low = excluded.ci_low, ci_high = excluded.ci_high, rounds = excluded.rounds, "
		"significant = excluded.significant, updated_at = excluded.updated_at");
	if (!rc) {
		sqlite3_bind_int64(st, 1, w->device_id);
		sqlite3_bind_int64(st, 2, w->problem_id);
		sqlite3_bind_int64(st, 3, b);
		sqlite3_bind_int64(st, 4, w->variant_id);
		sqlite3_bind_double(st, 5, w->time_ms);
		sqlite3_bind_int64(st, 6, w->T);
		sqlite3_bind_int64(st, 7, w->B);
		db_text(st, 8, op);
		sqlite3_bind_int64(st, 9, bb);
		/* a ratio and its interval come from rounds: without rounds there are none */
		bind_evidence(st, 10, w->default_ms);
		bind_evidence(st, 11, w->rounds > 0 ? w->ratio : NAN);
		bind_evidence(st, 12, w->rounds > 0 ? w->ci_low : NAN);
		bind_evidence(st, 13, w->rounds > 0 ? w->ci_high : NAN);
		sqlite3_bind_int(st, 14, w->rounds > 0 ? w->rounds : 0);
		sqlite3_bind_int(st, 15, !!w->significant);
		if (sqlite3_step(st) != SQLITE_DONE)
			rc = db_err(db, "record a winner");
		else if (sqlite3_changes(db->h) != 1)
			rc = mta_fail(MTA_EINVAL, "database %s: variant %lld is not a %s variant "
				      "of problem %lld", db->path, (long long)w->variant_id, op,
				      (long long)w->problem_id);
		sqlite3_finalize(st);
	}
	return db_write_end(db, rc);
}
