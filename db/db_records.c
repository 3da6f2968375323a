/*
 * db_records.c: writing and reading single records: devices, problems,
 * variants with their compile information, results, and compiled binaries.
 *
 * Each write is "find or insert by natural key" or "insert, or update in
 * place on the natural key" (INSERT ... ON CONFLICT DO UPDATE), run through
 * db_write_begin/db_write_end so that it is atomic alone or part of a group.
 */
#include "db_int.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

static const char *result_names[MTA_RESULT_COUNT] = {
	"ok", "verify_failed", "compile_failed", "crashed", "timeout", "pruned", "error",
};
static const char *compile_names[] = { "unknown", "ok", "failed" };

const char *mta_result_status_name(int s)
{
	return s >= 0 && s < MTA_RESULT_COUNT ? result_names[s] : "?";
}

int mta_result_status_parse(const char *s, int *status)
{
	for (int i = 0; s && i < MTA_RESULT_COUNT; i++)
		if (!strcmp(s, result_names[i])) {
			*status = i;
			return MTA_OK;
		}
	return mta_fail(MTA_EINVAL, "unknown result status '%s' (expected ok, verify_failed, "
			"compile_failed, crashed, timeout, pruned or error)", s ? s : "(null)");
}

static int parse_compile(const char *s)
{
	for (int i = 0; i < 3; i++)
		if (s && !strcmp(s, compile_names[i]))
			return i;
	return MTA_COMPILE_UNKNOWN;
}

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

/* Run a one-value lookup; MTA_ENOTFOUND (message "nf") when no row. */
static int step_find(struct mta_db *db, sqlite3_stmt *st, int64_t *id, const char *nf)
{
	int rc = MTA_OK, s = sqlite3_step(st);
	if (s == SQLITE_ROW)
		*id = sqlite3_column_int64(st, 0);
	else if (s == SQLITE_DONE)
		rc = mta_fail(MTA_ENOTFOUND, "database %s: %s", db->path, nf);
	else
		rc = db_err(db, "look up a record");
	sqlite3_finalize(st);
	return rc;
}

/* ---- devices ------------------------------------------------------------------- */

static int check_device(const struct mta_db_device *d)
{
	if (!d->backend || (strcmp(d->backend, "cpu") && strcmp(d->backend, "cuda")))
		return mta_fail(MTA_EINVAL, "device backend '%s' is not cpu or cuda",
				d->backend ? d->backend : "(null)");
	if (!d->name || !*d->name)
		return mta_fail(MTA_EINVAL, "device has no name");
	return MTA_OK;
}

static void bind_device(sqlite3_stmt *st, const struct mta_db_device *d)
{
	db_text(st, 1, d->backend);
	db_text(st, 2, d->name);
	db_text(st, 3, d->arch);
	db_text(st, 4, d->driver);
	db_text(st, 5, d->compiler);
	db_text(st, 6, d->nvrtc);
	sqlite3_bind_int(st, 7, d->cores);
}

int mta_db_device_find(struct mta_db *db, const struct mta_db_device *d, int64_t *id)
{
	sqlite3_stmt *st;
	int rc = check_device(d);
	if (rc || (rc = db_prepare(db, &st, "SELECT id FROM devices WHERE backend = ?1 AND "
				   "name = ?2 AND arch = ?3 AND driver = ?4 AND compiler = ?5 AND "
				   "nvrtc = ?6 AND cores = ?7")))
		return rc;
	bind_device(st, d);
	return step_find(db, st, id, "no such device recorded");
}

int mta_db_device_upsert(struct mta_db *db, const struct mta_db_device *d, int64_t *id)
{
	sqlite3_stmt *st;
	int rc = check_device(d);
	if (rc || (rc = db_write_begin(db, "record a device")))
		return rc;
	/* DO UPDATE (a no-op) rather than DO NOTHING, so RETURNING gives the id. */
	rc = db_prepare(db, &st, "INSERT INTO devices (backend, name, arch, driver, compiler, "
			"nvrtc, cores) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7) ON CONFLICT DO UPDATE "
			"SET cores = excluded.cores RETURNING id");
	if (!rc) {
		bind_device(st, d);
		rc = step_write(db, st, "record a device", id);
	}
	return db_write_end(db, rc);
}

/* ---- problems -------------------------------------------------------------------- */

int mta_db_problem_find(struct mta_db *db, const char *key, int64_t *id)
{
	sqlite3_stmt *st;
	int rc = db_prepare(db, &st, "SELECT id FROM problems WHERE key = ?1");
	if (rc)
		return rc;
	db_text(st, 1, key);
	rc = step_find(db, st, id, "no such problem recorded");
	return rc == MTA_ENOTFOUND ? mta_fail(rc, "database %s has no problem %s", db->path,
					      key ? key : "") : rc;
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

/* ---- variants ---------------------------------------------------------------------- */

int mta_db_variant_upsert(struct mta_db *db, int64_t problem_id, const char *spec,
			  const char *source_hash, int64_t *id)
{
	sqlite3_stmt *st;
	int64_t stale = 0;
	if (!spec || !*spec)
		return mta_fail(MTA_EINVAL, "empty variant spec");
	int rc = db_write_begin(db, "record a variant");
	if (rc)
		return rc;
	/* A new source for a known spec makes its measurements stale (below). */
	if (!(rc = db_prepare(db, &st, "SELECT count(*) FROM variants WHERE problem_id = ?1 AND "
			      "spec = ?2 AND source_hash <> '' AND ?3 <> '' AND source_hash <> ?3"))) {
		sqlite3_bind_int64(st, 1, problem_id);
		db_text(st, 2, spec);
		db_text(st, 3, source_hash);
		rc = step_find(db, st, &stale, "count stale variants");
	}
	if (!rc && !(rc = db_prepare(db, &st,
		"INSERT INTO variants (problem_id, spec, source_hash) VALUES (?1, ?2, ?3) "
		"ON CONFLICT DO UPDATE SET source_hash = excluded.source_hash, "
		"compile_status = 'unknown', compile_target = '', registers = NULL, "
		"spill_stores = NULL, spill_loads = NULL, shared_bytes = NULL, "
		"stack_bytes = NULL, compile_ms = NULL, compile_log = NULL "
		"WHERE excluded.source_hash <> '' AND excluded.source_hash <> source_hash"))) {
		sqlite3_bind_int64(st, 1, problem_id);
		db_text(st, 2, spec);
		db_text(st, 3, source_hash);
		rc = step_write(db, st, "record a variant", NULL);
	}
	/* The conflict branch may update nothing, so no RETURNING: look it up. */
	if (!rc && !(rc = db_prepare(db, &st, "SELECT id FROM variants WHERE problem_id = ?1 "
				     "AND spec = ?2"))) {
		sqlite3_bind_int64(st, 1, problem_id);
		db_text(st, 2, spec);
		rc = step_find(db, st, id, "the variant just recorded is missing");
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
		db_text(st, 2, compile_names[c->status]);
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

static int col_opt_int(sqlite3_stmt *st, int i)
{
	return sqlite3_column_type(st, i) == SQLITE_NULL ? -1 : sqlite3_column_int(st, i);
}

int mta_db_variant_get(struct mta_db *db, int64_t variant_id, struct mta_db_variant *out)
{
	sqlite3_stmt *st;
	db_keep_reset(db);
	int rc = db_prepare(db, &st, "SELECT id, problem_id, spec, source_hash, compile_status, "
			    "compile_target, registers, spill_stores, spill_loads, shared_bytes, "
			    "stack_bytes, compile_ms, compile_log FROM variants WHERE id = ?1");
	if (rc)
		return rc;
	sqlite3_bind_int64(st, 1, variant_id);
	int s = sqlite3_step(st);
	if (s == SQLITE_ROW) {
		memset(out, 0, sizeof *out);
		out->id = sqlite3_column_int64(st, 0);
		out->problem_id = sqlite3_column_int64(st, 1);
		out->spec = db_keep(db, sqlite3_column_text(st, 2));
		out->source_hash = db_keep(db, sqlite3_column_text(st, 3));
		out->compile.status = parse_compile((const char *)sqlite3_column_text(st, 4));
		out->compile.target = db_keep(db, sqlite3_column_text(st, 5));
		out->compile.registers = col_opt_int(st, 6);
		out->compile.spill_stores = col_opt_int(st, 7);
		out->compile.spill_loads = col_opt_int(st, 8);
		out->compile.shared_bytes = col_opt_int(st, 9);
		out->compile.stack_bytes = col_opt_int(st, 10);
		out->compile.ms = db_col_real(st, 11);
		out->compile.log = db_keep(db, sqlite3_column_text(st, 12));
	} else if (s == SQLITE_DONE) {
		rc = mta_fail(MTA_ENOTFOUND, "database %s has no variant %lld", db->path,
			      (long long)variant_id);
	} else {
		rc = db_err(db, "read a variant");
	}
	sqlite3_finalize(st);
	return rc;
}

/* ---- compiled binaries ------------------------------------------------------------- */

/*
 * Refuse a key without a source hash. Called before any write begins, like
 * the other argument checks here: a bad argument inside mta_db_begin() must
 * not roll back the writes already made in the group.
 */
static int check_binary_key(struct mta_db *db, const struct mta_db_binary_key *k)
{
	if (!k->source_hash || !*k->source_hash)
		return mta_fail(MTA_EINVAL, "database %s: a binary needs a source hash", db->path);
	return MTA_OK;
}

static void bind_binary_key(sqlite3_stmt *st, const struct mta_db_binary_key *k)
{
	db_text(st, 1, k->source_hash);
	db_text(st, 2, k->target);
	db_text(st, 3, k->compiler);
	db_text(st, 4, k->options);
}

int mta_db_binary_put(struct mta_db *db, const struct mta_db_binary_key *k,
		      const void *data, size_t n)
{
	sqlite3_stmt *st;
	if (!data && n)
		return mta_fail(MTA_EINVAL, "database %s: binary of %zu bytes without data",
				db->path, n);
	int rc = check_binary_key(db, k);
	if (rc || (rc = db_write_begin(db, "store a binary")))
		return rc;
	rc = db_prepare(db, &st, "INSERT INTO binaries (source_hash, target, compiler, options, "
			"blob) VALUES (?1, ?2, ?3, ?4, ?5) ON CONFLICT DO UPDATE SET "
			"blob = excluded.blob, created_at = " NOW_SQL);
	if (!rc) {
		bind_binary_key(st, k);
		/* A zero-length blob, not NULL, when n is 0. */
		sqlite3_bind_blob64(st, 5, n ? data : "", n, SQLITE_TRANSIENT);
		rc = step_write(db, st, "store a binary", NULL);
	}
	return db_write_end(db, rc);
}

/* The blob of the key; any_compiler: of any compiler, the newest stored. */
static int binary_get(struct mta_db *db, const struct mta_db_binary_key *k, int any_compiler,
		      void **data, size_t *n)
{
	sqlite3_stmt *st;
	*data = NULL;
	*n = 0;
	int rc = check_binary_key(db, k);
	if (rc || (rc = db_prepare(db, &st, "SELECT blob FROM binaries WHERE source_hash = ?1 AND "
			    "target = ?2 AND (?5 OR compiler = ?3) AND options = ?4 "
			    "ORDER BY created_at DESC, id DESC LIMIT 1")))
		return rc;
	bind_binary_key(st, k);
	sqlite3_bind_int(st, 5, any_compiler);
	int s = sqlite3_step(st);
	if (s == SQLITE_DONE) {
		rc = mta_fail(MTA_ENOTFOUND, "database %s has no binary of %s for %s", db->path,
			      k->source_hash, k->target ? k->target : "");
	} else if (s != SQLITE_ROW) {
		rc = db_err(db, "read a binary");
	} else {
		const void *b = sqlite3_column_blob(st, 0);
		size_t len = (size_t)sqlite3_column_bytes(st, 0);
		*data = malloc(len ? len : 1);
		if (!*data) {
			rc = mta_fail(MTA_ENOMEM, "out of memory reading a binary of %zu bytes", len);
			goto out;
		}
		if (len)
			memcpy(*data, b, len);
		*n = len;
	}
out:
	sqlite3_finalize(st);
	return rc;
}

int mta_db_binary_get(struct mta_db *db, const struct mta_db_binary_key *k,
		      void **data, size_t *n)
{
	return binary_get(db, k, 0, data, n);
}

int mta_db_binary_get_any(struct mta_db *db, const struct mta_db_binary_key *k,
			  void **data, size_t *n)
{
	return binary_get(db, k, 1, data, n);
}

/* ---- listing ---------------------------------------------------------------------------- */

int mta_db_list_devices(struct mta_db *db, mta_db_device_cb cb, void *ctx)
{
	sqlite3_stmt *st;
	int s, rc = db_prepare(db, &st, "SELECT id, backend, name, arch, driver, compiler, nvrtc, "
			       "cores FROM devices ORDER BY id");
	if (rc)
		return rc;
	while (!rc && (s = sqlite3_step(st)) == SQLITE_ROW) {
		struct mta_db_device d = {
			.id = sqlite3_column_int64(st, 0),
			.backend = (const char *)sqlite3_column_text(st, 1),
			.name = (const char *)sqlite3_column_text(st, 2),
			.arch = (const char *)sqlite3_column_text(st, 3),
			.driver = (const char *)sqlite3_column_text(st, 4),
			.compiler = (const char *)sqlite3_column_text(st, 5),
			.nvrtc = (const char *)sqlite3_column_text(st, 6),
			.cores = sqlite3_column_int(st, 7),
		};
		rc = cb(ctx, &d);
	}
	if (!rc && s != SQLITE_DONE)
		rc = db_err(db, "list devices");
	sqlite3_finalize(st);
	return rc;
}

int mta_db_list_problems(struct mta_db *db, mta_db_problem_cb cb, void *ctx)
{
	sqlite3_stmt *st;
	int s, rc = db_prepare(db, &st, "SELECT p.id, p.key, "
			       "(SELECT count(*) FROM variants v WHERE v.problem_id = p.id), "
			       "(SELECT count(*) FROM results r JOIN variants v ON v.id = "
			       "r.variant_id WHERE v.problem_id = p.id), "
			       "(SELECT count(*) FROM winners w WHERE w.problem_id = p.id) "
			       "FROM problems p ORDER BY p.key");
	if (rc)
		return rc;
	while (!rc && (s = sqlite3_step(st)) == SQLITE_ROW) {
		struct mta_db_problem_info p = {
			.id = sqlite3_column_int64(st, 0),
			.key = (const char *)sqlite3_column_text(st, 1),
			.variants = sqlite3_column_int64(st, 2),
			.results = sqlite3_column_int64(st, 3),
			.winners = sqlite3_column_int64(st, 4),
		};
		rc = cb(ctx, &p);
	}
	if (!rc && s != SQLITE_DONE)
		rc = db_err(db, "list problems");
	sqlite3_finalize(st);
	return rc;
}
