/*
 * db_merge.c: merging shard databases (mtatune db merge OUT IN...).
 *
 * Rows are matched by natural keys, never by rowid: devices by their whole
 * identity, problems by key, variants by (problem key, op, spec), results by
 * (device, variant, T, B), binaries by their key. Every result is kept; when
 * both files measured the same key, the later measurement wins, except that
 * an env_error (the machine failed, nothing was measured) never replaces a
 * measurement. Devices stay apart (a result keeps its own device). Winners
 * are copied with their evidence, keyed by (device, problem, op, T bucket, B
 * bucket); of two decisions for one key the later stands: the rule tuning
 * follows when it decides a key again. Nothing is recomputed from medians,
 * whose noise the paired rounds behind a decision were there to see through,
 * so merging a database into an empty one gives its winners unchanged.
 */
#include "db/db_int.h"

#include <limits.h>
#include <stdio.h>
#include <string.h>

#define DEV_MATCH(a, b) a ".backend = " b ".backend AND " a ".name = " b ".name AND " \
	a ".arch = " b ".arch AND " a ".driver = " b ".driver AND " a ".compiler = " \
	b ".compiler AND " a ".nvrtc = " b ".nvrtc AND " a ".cores = " b ".cores"
/* src variant sv -> main variant mv (through the problem key). */
#define VAR_MATCH "JOIN src.variants sv ON sv.id = %s JOIN src.problems sp ON sp.id = " \
	"sv.problem_id JOIN main.problems mp ON mp.key = sp.key JOIN main.variants mv ON " \
	"mv.problem_id = mp.id AND mv.op = sv.op AND mv.spec = sv.spec "

/* "WHERE true" keeps SQLite from reading ON CONFLICT as a join constraint. */
static const char *merge_sql[] = {
	"INSERT INTO main.devices (backend, name, arch, driver, compiler, nvrtc, cores, "
	"first_seen) SELECT backend, name, arch, driver, compiler, nvrtc, cores, first_seen "
	"FROM src.devices WHERE true ON CONFLICT DO NOTHING",

	"INSERT INTO main.problems (key) SELECT key FROM src.problems WHERE true "
	"ON CONFLICT DO NOTHING",

	"INSERT INTO main.variants (problem_id, spec, op, source_hash, compile_status, "
	"compile_target, registers, spill_stores, spill_loads, shared_bytes, stack_bytes, "
	"compile_ms, compile_log) SELECT mp.id, sv.spec, sv.op, sv.source_hash, sv.compile_status, "
	"sv.compile_target, sv.registers, sv.spill_stores, sv.spill_loads, sv.shared_bytes, "
	"sv.stack_bytes, sv.compile_ms, sv.compile_log FROM src.variants sv JOIN src.problems "
	"sp ON sp.id = sv.problem_id JOIN main.problems mp ON mp.key = sp.key WHERE true "
	"ON CONFLICT DO NOTHING",

	"INSERT INTO main.results (device_id, variant_id, T, B, t_bucket, status, median_ms, "
	"p20_ms, p80_ms, min_ms, runs, rel_err, error, run_id, started_at, recorded_at) "
	"SELECT md.id, mv.id, r.T, r.B, r.t_bucket, r.status, r.median_ms, r.p20_ms, r.p80_ms, "
	"r.min_ms, r.runs, r.rel_err, r.error, r.run_id, r.started_at, r.recorded_at "
	"FROM src.results r JOIN src.devices sd ON sd.id = r.device_id JOIN main.devices md "
	"ON " DEV_MATCH("md", "sd") " %VAR r.variant_id% WHERE true "
	"ON CONFLICT (device_id, variant_id, T, B) DO UPDATE SET status = excluded.status, "
	"median_ms = excluded.median_ms, p20_ms = excluded.p20_ms, p80_ms = excluded.p80_ms, "
	"min_ms = excluded.min_ms, runs = excluded.runs, rel_err = excluded.rel_err, "
	"error = excluded.error, run_id = excluded.run_id, started_at = excluded.started_at, "
	"recorded_at = excluded.recorded_at WHERE excluded.recorded_at > results.recorded_at "
	"AND (excluded.status <> 'env_error' OR results.status = 'env_error')",

	"INSERT INTO main.winners (device_id, problem_id, op, t_bucket, b_bucket, variant_id, "
	"time_ms, T, B, default_ms, ratio, ci_low, ci_high, rounds, significant, updated_at) "
	"SELECT md.id, mp.id, w.op, w.t_bucket, w.b_bucket, mv.id, w.time_ms, w.T, w.B, "
	"w.default_ms, w.ratio, w.ci_low, w.ci_high, w.rounds, w.significant, w.updated_at "
	"FROM src.winners w JOIN src.devices sd ON sd.id = w.device_id JOIN main.devices md "
	"ON " DEV_MATCH("md", "sd") " %VAR w.variant_id% WHERE true "
	"ON CONFLICT (device_id, problem_id, op, t_bucket, b_bucket) DO UPDATE SET "
	"variant_id = excluded.variant_id, time_ms = excluded.time_ms, T = excluded.T, "
	"B = excluded.B, default_ms = excluded.default_ms, ratio = excluded.ratio, "
	"ci_low = excluded.ci_low, ci_high = excluded.ci_high, rounds = excluded.rounds, "
	"significant = excluded.significant, updated_at = excluded.updated_at "
	"WHERE excluded.updated_at > winners.updated_at",

	"INSERT INTO main.binaries (source_hash, target, compiler, options, blob, created_at) "
	"SELECT source_hash, target, compiler, options, blob, created_at FROM src.binaries "
	"WHERE true ON CONFLICT DO NOTHING",
};

/* Expand "%VAR col%" in a statement to the variant join on col. */
static int expand(const char *in, char *out, size_t n)
{
	const char *at = strstr(in, "%VAR ");
	if (!at)
		return snprintf(out, n, "%s", in) < (int)n ? MTA_OK
						 : mta_fail(MTA_EINVAL, "merge statement too long");
	const char *col = at + 5, *end = strchr(col, '%');
	char join[512], colname[32];
	snprintf(colname, sizeof colname, "%.*s", (int)(end - col), col);
	snprintf(join, sizeof join, VAR_MATCH, colname);
	int len = snprintf(out, n, "%.*s%s%s", (int)(at - in), in, join, end + 1);
	return len >= 0 && len < (int)n ? MTA_OK : mta_fail(MTA_EINVAL, "merge statement too long");
}

int mta_db_merge(struct mta_db *db, const char *in_path)
{
	struct mta_db *in;
	sqlite3_stmt *st;
	char sql[4096];
	if (db->group)
		return mta_fail(MTA_EINVAL, "database %s: cannot merge inside a transaction", db->path);
	/* Opening it checks the file: ours, not damaged, same schema version. */
	int rc = mta_db_open(in_path, MTA_DB_READONLY, &in);
	if (rc)
		return mta_wrap(rc, "cannot merge into %s", db->path);
	/* attached as it was opened: read-only, immutable when it had to be (db_open.c) */
	char uri[PATH_MAX * 3 + 64];
	rc = db_uri(in_path, in->immutable ? "?mode=ro&immutable=1" : "?mode=ro", uri, sizeof uri);
	mta_db_close(in);
	if (rc)
		return rc;
	if (db->readonly)
		return mta_fail(MTA_EDB, "database %s is open read-only: cannot merge into it",
				db->path);
	/* ATTACH cannot run inside a transaction: attach, then one transaction. */
	if ((rc = db_prepare(db, &st, "ATTACH ?1 AS src")))
		return rc;
	db_text(st, 1, uri);
	if (sqlite3_step(st) != SQLITE_DONE)
		rc = db_err(db, "attach the database to merge");
	sqlite3_finalize(st);
	if (rc)
		return mta_wrap(rc, "merging %s", in_path);
	/*
	 * A winner whose variant is another problem's or another op's (which
	 * mta_db_winner_set refuses; a damaged or hostile file can hold it)
	 * would land as a winner running the wrong kernel: refused, as damage.
	 */
	if ((rc = db_prepare(db, &st, "SELECT count(*) FROM src.winners w JOIN src.variants sv "
			     "ON sv.id = w.variant_id WHERE sv.problem_id <> w.problem_id OR "
			     "sv.op <> w.op"))) {
		sqlite3_exec(db->h, "DETACH src", NULL, NULL, NULL);
		return mta_wrap(rc, "merging %s", in_path);
	}
	const int st_rc = sqlite3_step(st);
	const long long bad = st_rc == SQLITE_ROW ? sqlite3_column_int64(st, 0) : -1;
	sqlite3_finalize(st);
	if (bad) {
		rc = bad < 0 ? db_err(db, "check the winners to merge") :
		     mta_fail(MTA_EDB, "database %s is damaged: %lld of its winners name a variant of "
			      "another problem or op; nothing merged", in_path, bad);
		sqlite3_exec(db->h, "DETACH src", NULL, NULL, NULL);
		return mta_wrap(rc, "merging %s", in_path);
	}
	rc = mta_db_begin(db);
	for (size_t i = 0; !rc && i < sizeof merge_sql / sizeof merge_sql[0]; i++)
		if (!(rc = expand(merge_sql[i], sql, sizeof sql)))
			rc = db_exec(db, sql, "merge");
	if (db->group)
		rc = rc ? (mta_db_rollback(db), rc) : mta_db_commit(db);
	db_clock_start(db);
	sqlite3_exec(db->h, "DETACH src", NULL, NULL, NULL);
	return rc ? mta_wrap(rc, "merging %s", in_path) : MTA_OK;
}
