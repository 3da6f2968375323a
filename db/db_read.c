/*
 * db_read.c: reading the database: single records (devices, problems,
 * variants with their compile information, results, winners, compiled
 * binaries) and the listings. Part of the runtime library (contexts read
 * winners and binaries); writes live in db_write.c, in the tool.
 *
 * Winners are kept per T bucket (runtime/core/pick.h); a lookup takes the
 * bucket that policy names among those recorded for (device, problem).
 */
#include "db/db_int.h"
#include "runtime/core/pick.h"
#include "runtime/core/strbuf.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

static const char *result_names[MTA_RESULT_COUNT] = {
	"ok", "verify_failed", "compile_failed", "crashed", "timeout", "pruned", "error",
	"env_error",
};

const char *const db_compile_names[3] = { "unknown", "ok", "failed" };

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
			"compile_failed, crashed, timeout, pruned, error or env_error)",
			s ? s : "(null)");
}

static int parse_compile(const char *s)
{
	for (int i = 0; i < 3; i++)
		if (s && !strcmp(s, db_compile_names[i]))
			return i;
	return MTA_COMPILE_UNKNOWN;
}

/* Run a one-value lookup; MTA_ENOTFOUND (message "nf") when no row. */
int db_step_find(struct mta_db *db, sqlite3_stmt *st, int64_t *id, const char *nf)
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

int db_check_device(const struct mta_db_device *d)
{
	if (!d->backend || (strcmp(d->backend, "cpu") && strcmp(d->backend, "cuda")))
		return mta_fail(MTA_EINVAL, "device backend '%s' is not cpu or cuda",
				d->backend ? d->backend : "(null)");
	if (!d->name || !*d->name)
		return mta_fail(MTA_EINVAL, "device has no name");
	return MTA_OK;
}

void db_bind_device(sqlite3_stmt *st, const struct mta_db_device *d)
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
	int rc = db_check_device(d);
	if (rc || (rc = db_prepare(db, &st, "SELECT id FROM devices WHERE backend = ?1 AND "
				   "name = ?2 AND arch = ?3 AND driver = ?4 AND compiler = ?5 AND "
				   "nvrtc = ?6 AND cores = ?7")))
		return rc;
	db_bind_device(st, d);
	return db_step_find(db, st, id, "no such device recorded");
}

/* ---- problems, variants --------------------------------------------------------- */

int mta_db_problem_find(struct mta_db *db, const char *key, int64_t *id)
{
	sqlite3_stmt *st;
	int rc = db_prepare(db, &st, "SELECT id FROM problems WHERE key = ?1");
	if (rc)
		return rc;
	db_text(st, 1, key);
	rc = db_step_find(db, st, id, "no such problem recorded");
	return rc == MTA_ENOTFOUND ? mta_fail(rc, "database %s has no problem %s", db->path,
					      key ? key : "") : rc;
}

/*
 * Text column i of a row, which the schema keeps NOT NULL (what names it):
 * a file without that constraint, damaged or hostile, could hold NULL, which
 * a caller would hand to strcmp. *out "" and MTA_EDB then: refused as damage.
 */
static int col_text(struct mta_db *db, sqlite3_stmt *st, int i, const char *what,
		    const char **out)
{
	const unsigned char *t = sqlite3_column_text(st, i);
	*out = t ? (const char *)t : "";
	if (t)
		return MTA_OK;
	return mta_fail(MTA_EDB, "database %s is damaged: %s is NULL (the schema keeps it NOT "
			"NULL)", db->path, what);
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
			    "stack_bytes, compile_ms, compile_log, op FROM variants WHERE id = ?1");
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
		out->op = db_keep(db, sqlite3_column_text(st, 13));
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
int db_check_binary_key(struct mta_db *db, const struct mta_db_binary_key *k)
{
	if (!k->source_hash || !*k->source_hash)
		return mta_fail(MTA_EINVAL, "database %s: a binary needs a source hash", db->path);
	return MTA_OK;
}

void db_bind_binary_key(sqlite3_stmt *st, const struct mta_db_binary_key *k)
{
	db_text(st, 1, k->source_hash);
	db_text(st, 2, k->target);
	db_text(st, 3, k->compiler);
	db_text(st, 4, k->options);
}

/* The blob of the key; any_compiler: of any compiler, the newest stored. */
static int binary_get(struct mta_db *db, const struct mta_db_binary_key *k, int any_compiler,
		      void **data, size_t *n)
{
	sqlite3_stmt *st;
	*data = NULL;
	*n = 0;
	int rc = db_check_binary_key(db, k);
	if (rc || (rc = db_prepare(db, &st, "SELECT blob FROM binaries WHERE source_hash = ?1 AND "
			    "target = ?2 AND (?5 OR compiler = ?3) AND options = ?4 "
			    "ORDER BY created_at DESC, id DESC LIMIT 1")))
		return rc;
	db_bind_binary_key(st, k);
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

/* ---- results and winners ------------------------------------------------------------ */

#define RESULT_COLS "r.id, r.device_id, r.variant_id, r.T, r.B, r.status, r.median_ms, " \
	"r.p20_ms, r.p80_ms, r.min_ms, r.runs, r.rel_err, r.error, r.run_id, r.started_at, " \
	"r.recorded_at"

/* Fill r from a row of RESULT_COLS; strings point into the statement's row.
 * MTA_EDB for a row the schema would not hold (a NULL, an unknown status). */
static int read_result(struct mta_db *db, sqlite3_stmt *st, struct mta_db_result *r)
{
	const char *status;
	int rc;
	memset(r, 0, sizeof *r);
	r->id = sqlite3_column_int64(st, 0);
	r->device_id = sqlite3_column_int64(st, 1);
	r->variant_id = sqlite3_column_int64(st, 2);
	r->T = sqlite3_column_int64(st, 3);
	r->B = sqlite3_column_int64(st, 4);
	if ((rc = col_text(db, st, 5, "a result's status", &status)))
		return rc;
	if (mta_result_status_parse(status, &r->status)) {
		char shown[64];
		return mta_fail(MTA_EDB, "database %s is damaged: a result has status \"%s\" (not "
				"one the schema allows)", db->path,
				mta_escape_str(status, shown, sizeof shown));
	}
	r->median_ms = db_col_real(st, 6);
	r->p20_ms = db_col_real(st, 7);
	r->p80_ms = db_col_real(st, 8);
	r->min_ms = db_col_real(st, 9);
	r->runs = sqlite3_column_int(st, 10);
	r->rel_err = db_col_real(st, 11);
	r->started_at = sqlite3_column_type(st, 14) == SQLITE_NULL ? 0 : sqlite3_column_double(st, 14);
	r->recorded_at = sqlite3_column_double(st, 15);
	if ((rc = col_text(db, st, 12, "a result's error", &r->error)))
		return rc;
	return col_text(db, st, 13, "a result's run id", &r->run_id);
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
		if (!(rc = read_result(db, st, out))) {
			out->error = db_keep(db, (const unsigned char *)out->error);
			out->run_id = db_keep(db, (const unsigned char *)out->run_id);
			out->problem_key = out->spec = NULL;
		}
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
	int rc = db_prepare(db, &st, "SELECT " RESULT_COLS ", p.key, v.spec, v.op FROM results r "
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
		if (!(rc = read_result(db, st, &r)) &&
		    !(rc = col_text(db, st, 16, "a problem's key", &r.problem_key)) &&
		    !(rc = col_text(db, st, 17, "a variant's spec", &r.spec)) &&
		    !(rc = col_text(db, st, 18, "a variant's op", &r.op)))
			rc = cb(ctx, &r);
	}
	if (!rc && s != SQLITE_DONE)
		rc = db_err(db, "list results");
	sqlite3_finalize(st);
	return rc;
}

#define WINNER_SQL "SELECT w.device_id, w.problem_id, w.variant_id, w.t_bucket, w.T, w.B, " \
	"w.time_ms, w.updated_at, p.key, v.spec, v.source_hash, w.op, w.b_bucket, w.default_ms, " \
	"w.ratio, w.ci_low, w.ci_high, w.rounds, w.significant FROM winners w " \
	"JOIN problems p ON p.id = w.problem_id JOIN variants v ON v.id = w.variant_id "

/*
 * A bucket as the schema allows it: a power of two >= 1. A file without
 * that CHECK (a hostile one) could hold 0 or -4, which the pick policy
 * would take as bucket 1: refused as damage instead.
 */
static int check_bucket(struct mta_db *db, int64_t b, const char *what, const char *key)
{
	char shown[MTA_KEY_MAX * 4];
	if (b >= 1 && !(b & (b - 1)))
		return MTA_OK;
	return mta_fail(MTA_EDB, "database %s is damaged: a winner of %s has %s bucket %lld "
			"(buckets are powers of two >= 1)", db->path,
			mta_escape_str(key ? key : "", shown, sizeof shown), what, (long long)b);
}

/* Fill w from a row of WINNER_SQL; strings point into the statement's row.
 * MTA_EDB for a NULL text. */
static int read_winner(struct mta_db *db, sqlite3_stmt *st, struct mta_db_winner *w)
{
	int rc;
	memset(w, 0, sizeof *w);
	w->device_id = sqlite3_column_int64(st, 0);
	w->problem_id = sqlite3_column_int64(st, 1);
	w->variant_id = sqlite3_column_int64(st, 2);
	w->t_bucket = sqlite3_column_int64(st, 3);
	w->T = sqlite3_column_int64(st, 4);
	w->B = sqlite3_column_int64(st, 5);
	w->time_ms = sqlite3_column_double(st, 6);
	w->updated_at = sqlite3_column_double(st, 7);
	w->b_bucket = sqlite3_column_int64(st, 12);
	w->default_ms = db_col_real(st, 13);
	w->ratio = db_col_real(st, 14);
	w->ci_low = db_col_real(st, 15);
	w->ci_high = db_col_real(st, 16);
	w->rounds = sqlite3_column_int(st, 17);
	w->significant = sqlite3_column_int(st, 18);
	if ((rc = col_text(db, st, 8, "a winner's problem key", &w->problem_key)) ||
	    (rc = col_text(db, st, 9, "a winner's variant spec", &w->spec)) ||
	    (rc = col_text(db, st, 10, "a winner's variant source hash", &w->source_hash)))
		return rc;
	return col_text(db, st, 11, "a winner's op", &w->op);
}

/*
 * The buckets the pick policy names among those recorded for (device,
 * problem, op); *t 0 if none. Buckets read from the file are checked: a
 * hostile database cannot hand the policy a bucket that is not a power of
 * two (MTA_EDB: damaged).
 */
static int pick_buckets(struct mta_db *db, int64_t device_id, int64_t problem_id, const char *key,
			const char *op, int64_t B, int64_t T, int64_t *t, int64_t *b)
{
	sqlite3_stmt *st;
	struct mta_pick_cand *c = NULL; /* every bucket: the context's pick sees them all */
	size_t n = 0, cap = 0;
	int s = SQLITE_DONE, source, rung;
	int rc = db_prepare(db, &st, "SELECT t_bucket, b_bucket FROM winners WHERE device_id = ?1 "
			    "AND problem_id = ?2 AND op = ?3");
	if (rc)
		return rc;
	sqlite3_bind_int64(st, 1, device_id);
	sqlite3_bind_int64(st, 2, problem_id);
	db_text(st, 3, op);
	while (!rc && (s = sqlite3_step(st)) == SQLITE_ROW) {
		int64_t tb = sqlite3_column_int64(st, 0), bb = sqlite3_column_int64(st, 1);
		if ((rc = check_bucket(db, tb, "T", key)) || (rc = check_bucket(db, bb, "B", key)))
			break;
		if (n == cap) {
			struct mta_pick_cand *g = realloc(c, (cap = cap ? 2 * cap : 64) * sizeof *g);
			if (!g) {
				rc = mta_fail(MTA_ENOMEM, "out of memory");
				break;
			}
			c = g;
		}
		c[n++] = (struct mta_pick_cand){ MTA_RUNG_DEVICE, tb, bb };
	}
	if (!rc && s != SQLITE_DONE)
		rc = db_err(db, "look up winners");
	sqlite3_finalize(st);
	int i = rc ? -1 : mta_pick_winner(c, n, B, T, &source, &rung);
	*t = i < 0 ? 0 : c[i].t_bucket;
	*b = i < 0 ? 0 : c[i].b_bucket;
	free(c);
	return rc;
}

int mta_db_winner_get(struct mta_db *db, int64_t device_id, const char *problem_key,
		      const char *op, int64_t B, int64_t T, struct mta_db_winner *out)
{
	sqlite3_stmt *st;
	int64_t pid = 0, tb = 0, bb = 0;
	if (!op)
		op = "fwd";
	db_keep_reset(db);
	int rc = mta_db_problem_find(db, problem_key, &pid);
	if (!rc)
		rc = pick_buckets(db, device_id, pid, problem_key, op, B, T, &tb, &bb);
	if ((!rc && !tb) || rc == MTA_ENOTFOUND)
		rc = mta_fail(MTA_ENOTFOUND, "database %s has no tuned %s kernel for %s on device "
			      "%lld", db->path, op, problem_key ? problem_key : "",
			      (long long)device_id);
	if (rc)
		return rc;
	if ((rc = db_prepare(db, &st, WINNER_SQL "WHERE w.device_id = ?1 AND w.problem_id = ?2 "
			     "AND w.op = ?3 AND w.t_bucket = ?4 AND w.b_bucket = ?5")))
		return rc;
	sqlite3_bind_int64(st, 1, device_id);
	sqlite3_bind_int64(st, 2, pid);
	db_text(st, 3, op);
	sqlite3_bind_int64(st, 4, tb);
	sqlite3_bind_int64(st, 5, bb);
	if (sqlite3_step(st) == SQLITE_ROW) {
		if ((rc = read_winner(db, st, out))) {
			sqlite3_finalize(st);
			return rc;
		}
		out->problem_key = db_keep(db, (const unsigned char *)out->problem_key);
		out->spec = db_keep(db, (const unsigned char *)out->spec);
		out->source_hash = db_keep(db, (const unsigned char *)out->source_hash);
		out->op = db_keep(db, (const unsigned char *)out->op);
		out->exact = tb == mta_t_bucket(T) && bb == mta_t_bucket(B);
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
			    "(?2 IS NULL OR p.key = ?2) ORDER BY w.device_id, p.key, w.op, "
			    "w.t_bucket, w.b_bucket");
	if (rc)
		return rc;
	sqlite3_bind_int64(st, 1, device_id);
	if (problem_key)
		db_text(st, 2, problem_key);
	int s;
	while (!rc && (s = sqlite3_step(st)) == SQLITE_ROW) {
		struct mta_db_winner w;
		if ((rc = read_winner(db, st, &w)))
			break;
		w.exact = 1;
		if (!(rc = check_bucket(db, w.t_bucket, "T", w.problem_key)) &&
		    !(rc = check_bucket(db, w.b_bucket, "B", w.problem_key)))
			rc = cb(ctx, &w);
	}
	if (!rc && s != SQLITE_DONE)
		rc = db_err(db, "list winners");
	sqlite3_finalize(st);
	return rc;
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
			.cores = sqlite3_column_int(st, 7),
		};
		if (!(rc = col_text(db, st, 1, "a device's backend", &d.backend)) &&
		    !(rc = col_text(db, st, 2, "a device's name", &d.name)) &&
		    !(rc = col_text(db, st, 3, "a device's arch", &d.arch)) &&
		    !(rc = col_text(db, st, 4, "a device's driver", &d.driver)) &&
		    !(rc = col_text(db, st, 5, "a device's compiler", &d.compiler)) &&
		    !(rc = col_text(db, st, 6, "a device's nvrtc", &d.nvrtc)))
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
			.variants = sqlite3_column_int64(st, 2),
			.results = sqlite3_column_int64(st, 3),
			.winners = sqlite3_column_int64(st, 4),
		};
		if (!(rc = col_text(db, st, 1, "a problem's key", &p.key)))
			rc = cb(ctx, &p);
	}
	if (!rc && s != SQLITE_DONE)
		rc = db_err(db, "list problems");
	sqlite3_finalize(st);
	return rc;
}
