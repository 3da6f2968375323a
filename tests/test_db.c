/* test_db.c: the tuning database (db/): opening and refusing files, records, concurrency. */
#include "tests/harness.h"
#include "tests/fixtures.h"

#include <fcntl.h>
#include <sqlite3.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "db/db_int.h"
#include "runtime/core/pick.h"

static const char *tmp_path(const char *name)
{
	static char buf[4][600];
	static int i;
	char *p = buf[i++ % 4];
	snprintf(p, 600, "%s/%s", mt_tmpdir(), name);
	return p;
}

/* Run one SQL statement on a file directly (not through db/); returns its first integer. */
static long long raw(const char *path, const char *sql)
{
	sqlite3 *h;
	sqlite3_stmt *st;
	long long v = -1;
	if (sqlite3_open(path, &h) != SQLITE_OK)
		return -2;
	if (sqlite3_prepare_v2(h, sql, -1, &st, NULL) == SQLITE_OK) {
		int s = sqlite3_step(st);
		if (s == SQLITE_ROW)
			v = sqlite3_column_int64(st, 0);
		else if (s == SQLITE_DONE)
			v = 0;
		sqlite3_finalize(st);
	} else {
		fprintf(stderr, "    raw sql failed: %s\n", sqlite3_errmsg(h));
	}
	sqlite3_close(h);
	return v;
}

static const struct mta_db_device cpu_dev = {
	.backend = "cpu", .name = "Test CPU", .arch = "x86_64", .compiler = "gcc 12.2", .cores = 2,
};

/* A database at path with one device, problem and n variants; ids returned. */
static int seed_db(struct mta_db *db, int nvar, int64_t *dev, int64_t *prob, int64_t *var)
{
	int rc = mta_db_device_upsert(db, &cpu_dev, dev);
	if (!rc)
		rc = mta_db_problem_upsert(db, "h4kv4d32-both-f32", prob);
	for (int i = 0; !rc && i < nvar; i++) {
		char spec[64];
		snprintf(spec, sizeof spec, "cpu:v1,bq=%d", 8 * (i + 1));
		rc = mta_db_variant_upsert(db, *prob, spec, "hash", &var[i]);
	}
	return rc;
}

static struct mta_db_result ok_result(int64_t dev, int64_t var, int64_t T, double ms)
{
	struct mta_db_result r = {
		.device_id = dev, .variant_id = var, .T = T, .B = 1, .status = MTA_RESULT_OK,
		.median_ms = ms, .p20_ms = ms * 0.9, .p80_ms = ms * 1.1, .min_ms = ms * 0.8,
		.runs = 5, .rel_err = 1e-7, .run_id = "run-1", .started_at = 1.7e9,
	};
	return r;
}

TEST(db_create_reopen)
{
	const char *path = tmp_path("a.db");
	struct mta_db *db;
	int64_t dev, dev2, prob, prob2, var[2];
	REQUIRE(mta_db_open(path, 0, &db) == MTA_OK);
	int v = -1;
	CHECK(mta_db_schema_version(db, &v) == MTA_OK);
	CHECK_EQ_INT(v, MTA_DB_SCHEMA_VERSION);
	CHECK(!strcmp(mta_db_path(db), path));
	REQUIRE(seed_db(db, 2, &dev, &prob, var) == MTA_OK);
	CHECK(mta_db_device_upsert(db, &cpu_dev, &dev2) == MTA_OK);
	CHECK_EQ_INT(dev2, dev);
	struct mta_db_device other = cpu_dev;
	other.compiler = "gcc 13.1"; /* another compiler is another device */
	CHECK(mta_db_device_upsert(db, &other, &dev2) == MTA_OK);
	CHECK(dev2 != dev);
	other.backend = "tpu";
	CHECK(mta_db_device_upsert(db, &other, &dev2) == MTA_EINVAL);
	CHECK_STR_CONTAINS(mta_last_error(), "tpu");
	mta_db_close(db);

	CHECK_EQ_INT(raw(path, "PRAGMA application_id"), MTA_DB_APPLICATION_ID);
	CHECK_EQ_INT(raw(path, "PRAGMA user_version"), MTA_DB_SCHEMA_VERSION);
	CHECK_EQ_INT(raw(path, "SELECT count(*) FROM meta WHERE key = 'format' AND value = 'mtatune'"), 1);
	CHECK_EQ_INT(raw(path, "SELECT journal_mode = 'wal' FROM pragma_journal_mode"), 1);

	REQUIRE(mta_db_open(path, MTA_DB_CHECK, &db) == MTA_OK);
	CHECK(mta_db_device_find(db, &cpu_dev, &dev2) == MTA_OK);
	CHECK_EQ_INT(dev2, dev);
	CHECK(mta_db_problem_find(db, "h4kv4d32-both-f32", &prob2) == MTA_OK);
	CHECK_EQ_INT(prob2, prob);
	CHECK(mta_db_problem_find(db, "h8kv8d32-both-f32", &prob2) == MTA_ENOTFOUND);
	CHECK_STR_CONTAINS(mta_last_error(), "h8kv8d32-both-f32");
	int64_t again;
	CHECK(mta_db_variant_upsert(db, prob, "cpu:v1,bq=8", "", &again) == MTA_OK);
	CHECK_EQ_INT(again, var[0]);
	mta_db_close(db);
	CHECK_EQ_INT(raw(path, "SELECT count(*) FROM variants"), 2);
}

TEST(db_default_path)
{
	char buf[600], want[700];
	setenv("MTATUNE_DB", tmp_path("env.db"), 1);
	CHECK(mta_db_default_path(buf, sizeof buf) == MTA_OK);
	CHECK(!strcmp(buf, tmp_path("env.db")));
	CHECK(mta_db_default_path(buf, 8) == MTA_EINVAL);
	setenv("MTATUNE_DB", "", 1);
	setenv("HOME", mt_tmpdir(), 1);
	CHECK(mta_db_default_path(buf, sizeof buf) == MTA_OK);
	snprintf(want, sizeof want, "%s/.cache/mtatune/mta.db", mt_tmpdir());
	CHECK(!strcmp(buf, want));
	struct mta_db *db;
	CHECK(mta_db_open(NULL, MTA_DB_READONLY, &db) == MTA_ENOTFOUND);
	CHECK_STR_CONTAINS(mta_last_error(), "does not exist");
	REQUIRE(mta_db_open(NULL, 0, &db) == MTA_OK); /* creates ~/.cache/mtatune */
	CHECK(!strcmp(mta_db_path(db), want));
	mta_db_close(db);
	CHECK(access(want, F_OK) == 0);
	unsetenv("HOME");
	unsetenv("MTATUNE_DB");
	CHECK(mta_db_default_path(buf, sizeof buf) == MTA_EINVAL);
	CHECK_STR_CONTAINS(mta_last_error(), "MTATUNE_DB");
}

/* Refused with status want: EFORMAT for a file that is no mtatune database, EDB for damage. */
static void expect_refused_as(const char *path, int flags, int want, const char *needle)
{
	struct mta_db *db = (struct mta_db *)1;
	int rc = mta_db_open(path, flags, &db);
	CHECKF(rc == want, "open %s gave %s, expected %s", path, mta_status_name(rc),
	       mta_status_name(want));
	CHECK(db == NULL);
	CHECK_STR_CONTAINS(mta_last_error(), needle);
	CHECK_STR_CONTAINS(mta_last_error(), path);
}

static void expect_refused(const char *path, int flags, const char *needle)
{
	expect_refused_as(path, flags, MTA_EDB, needle);
}

TEST(db_refuse_foreign_sqlite)
{
	const char *path = tmp_path("foreign.db");
	CHECK_EQ_INT(raw(path, "CREATE TABLE photos (id INTEGER PRIMARY KEY, jpeg BLOB)"), 0);
	expect_refused_as(path, 0, MTA_EFORMAT, "is not an mtatune database");
	expect_refused_as(path, MTA_DB_READONLY, MTA_EFORMAT, "without the mtatune marker");
	CHECK_EQ_INT(raw(path, "SELECT count(*) FROM sqlite_schema WHERE name = 'photos'"), 1);
	/* Another application's id, no tables: still not ours. */
	const char *p2 = tmp_path("other.db");
	CHECK_EQ_INT(raw(p2, "PRAGMA application_id = 42"), 0);
	expect_refused_as(p2, 0, MTA_EFORMAT, "application_id 42");
	/* Our marker but no schema: damaged, not silently recreated. */
	const char *p3 = tmp_path("half.db");
	CHECK_EQ_INT(raw(p3, "PRAGMA application_id = 1297367380"), 0);
	expect_refused(p3, 0, "schema is incomplete");
}

TEST(db_refuse_text_file)
{
	const char *path = tmp_path("notes.txt");
	FILE *f = fopen(path, "w");
	REQUIRE(f);
	fputs("these are my notes, not a database\n", f);
	fclose(f);
	expect_refused_as(path, 0, MTA_EFORMAT, "not an SQLite file");
	expect_refused_as(path, MTA_DB_READONLY, MTA_EFORMAT, "not an SQLite file");
	struct mta_db *db;
	CHECK(mta_db_open(mt_tmpdir(), 0, &db) == MTA_EFORMAT);
	CHECK_STR_CONTAINS(mta_last_error(), "not a regular file");
}

TEST(db_refuse_truncated)
{
	const char *path = tmp_path("trunc.db");
	struct mta_db *db;
	int64_t dev, prob, var[4];
	char err[300];
	REQUIRE(mta_db_open(path, 0, &db) == MTA_OK);
	REQUIRE(seed_db(db, 4, &dev, &prob, var) == MTA_OK);
	memset(err, 'x', sizeof err - 1);
	err[sizeof err - 1] = 0;
	REQUIRE(mta_db_begin(db) == MTA_OK);
	for (int i = 0; i < 400; i++) {
		struct mta_db_result r = ok_result(dev, var[i % 4], 1 + i, 1.0);
		r.error = err;
		CHECK(mta_db_result_put(db, &r) == MTA_OK);
	}
	REQUIRE(mta_db_commit(db) == MTA_OK);
	mta_db_close(db);
	struct stat sb;
	REQUIRE(stat(path, &sb) == 0);
	CHECKF(sb.st_size > 16 * 4096, "database only %lld bytes", (long long)sb.st_size);
	REQUIRE(truncate(path, sb.st_size / 2) == 0);
	expect_refused(path, 0, "is damaged");
	expect_refused(path, MTA_DB_READONLY, "is damaged");
}

TEST(db_refuse_newer_schema)
{
	const char *path = tmp_path("new.db");
	struct mta_db *db;
	REQUIRE(mta_db_open(path, 0, &db) == MTA_OK);
	mta_db_close(db);
	char sql[64], want[200];
	snprintf(sql, sizeof sql, "PRAGMA user_version = %d", MTA_DB_SCHEMA_VERSION + 3);
	CHECK_EQ_INT(raw(path, sql), 0);
	snprintf(want, sizeof want, "has schema version %d; this mtatune understands up to %d; "
		 "upgrade mtatune", MTA_DB_SCHEMA_VERSION + 3, MTA_DB_SCHEMA_VERSION);
	expect_refused(path, 0, want);
	expect_refused(path, MTA_DB_READONLY, want);
	CHECK_EQ_INT(raw(path, "PRAGMA user_version"), MTA_DB_SCHEMA_VERSION + 3);
}

/* A build that knows one more schema version than this one, for the migration tests. */
static const char *future(const char *path)
{
	char want[32];
	snprintf(want, sizeof want, "db/migrate_%d.sql", MTA_DB_SCHEMA_VERSION + 1);
	if (!strcmp(path, want))
		return "ALTER TABLE problems ADD COLUMN note TEXT NOT NULL DEFAULT '';"
		       "CREATE INDEX problems_by_note ON problems (note);";
	snprintf(want, sizeof want, "db/migrate_%d.sql", MTA_DB_SCHEMA_VERSION + 2);
	if (!strcmp(path, want)) /* fails half way: the first statement must not stay */
		return "CREATE TABLE half_done (a); INSERT INTO no_such_table VALUES (1);";
	return mta_embedded(path);
}

TEST(db_migrate)
{
	const char *path = tmp_path("old.db");
	struct mta_db *db;
	int64_t dev, prob, var[1];
	const int v = MTA_DB_SCHEMA_VERSION;
	REQUIRE(mta_db_open(path, 0, &db) == MTA_OK);
	REQUIRE(seed_db(db, 1, &dev, &prob, var) == MTA_OK);
	mta_db_close(db);

	/* A read-only handle cannot migrate. */
	CHECK(mta_db_open_to(path, MTA_DB_READONLY, v + 1, v + 1, future, &db) == MTA_EDB);
	CHECK_STR_CONTAINS(mta_last_error(), "needs migrating");
	REQUIRE(mta_db_open_to(path, 0, v + 1, v + 1, future, &db) == MTA_OK);
	int got = 0;
	CHECK(mta_db_schema_version(db, &got) == MTA_OK);
	CHECK_EQ_INT(got, v + 1);
	mta_db_close(db);
	CHECK_EQ_INT(raw(path, "SELECT count(*) FROM problems WHERE note = ''"), 1);

	/* A migration failing half way leaves the file as it was. */
	CHECK(mta_db_open_to(path, 0, v + 2, v + 2, future, &db) == MTA_EDB);
	CHECK_STR_CONTAINS(mta_last_error(), "no_such_table");
	CHECK_STR_CONTAINS(mta_last_error(), "migrating from schema version");
	CHECK_EQ_INT(raw(path, "PRAGMA user_version"), v + 1);
	CHECK_EQ_INT(raw(path, "SELECT count(*) FROM sqlite_schema WHERE name = 'half_done'"), 0);
	/* A build without the migration says so. */
	CHECK(mta_db_open_to(path, 0, v + 3, v + 3, future, &db) == MTA_EDB);
	CHECK_STR_CONTAINS(mta_last_error(), "lacks db/migrate_");
	/* And this build refuses the migrated file as newer. */
	expect_refused(path, 0, "upgrade mtatune");
}

/*
 * A database of schema version 1 (tests/data/schema_v1.sql, the schema as it
 * shipped) is brought to version 2 when opened: variants become forward
 * variants, each winner the forward's in the bucket of its batch size, with
 * no rounds behind it; nothing else changes.
 */
TEST(db_migrate_from_version_1)
{
	const char *path = tmp_path("v1.db");
	char *out = NULL;
	int rc = mt_sh(&out, "python3 -c \"import sqlite3,sys; c=sqlite3.connect(sys.argv[1]); "
		       "c.executescript(open('tests/data/schema_v1.sql').read()); "
		       "c.executescript(\\\"INSERT INTO devices (backend, name) VALUES ('cpu', 'Old CPU'); "
		       "INSERT INTO problems (key) VALUES ('h4kv4d32-both-f32'); "
		       "INSERT INTO variants (problem_id, spec) VALUES (1, 'cpu:v1,bq=8'); "
		       "INSERT INTO winners (device_id, problem_id, t_bucket, variant_id, time_ms, T, B, "
		       "updated_at) VALUES (1, 1, 1024, 1, 2.5, 1000, 3, 1), (1, 1, 64, 1, 0.5, 60, 1, 1);"
		       "\\\"); c.commit()\" '%s'", path);
	REQUIRE(rc == 0 || (mt_fail(__FILE__, __LINE__, "%s", out), 0));
	free(out);
	CHECK_EQ_INT(raw(path, "PRAGMA user_version"), 1);
	struct mta_db *db;
	REQUIRE(mta_db_open(path, 0, &db) == MTA_OK || (mt_fail(__FILE__, __LINE__, "%s",
							 mta_last_error()), 0));
	struct mta_db_winner w;
	CHECK(mta_db_winner_get(db, 1, "h4kv4d32-both-f32", "fwd", 3, 1000, &w) == MTA_OK);
	CHECK(w.t_bucket == 1024 && w.b_bucket == 4 && w.exact && w.time_ms == 2.5 &&
	      w.rounds == 0 && isnan(w.ratio) && !w.significant);
	CHECK(mta_db_winner_get(db, 1, "h4kv4d32-both-f32", "fwd", 1, 50, &w) == MTA_OK);
	CHECK(w.t_bucket == 64 && w.b_bucket == 1 && w.exact);
	mta_db_close(db);
	CHECK_EQ_INT(raw(path, "PRAGMA user_version"), MTA_DB_SCHEMA_VERSION);
	CHECK_EQ_INT(raw(path, "SELECT count(*) FROM variants WHERE op = 'fwd'"), 1);
	CHECK_EQ_INT(raw(path, "SELECT count(*) FROM winners"), 2);
}

TEST(db_readonly)
{
	const char *path = tmp_path("ro.db");
	struct mta_db *db;
	int64_t dev, prob, var[1], id;
	REQUIRE(mta_db_open(path, 0, &db) == MTA_OK);
	REQUIRE(seed_db(db, 1, &dev, &prob, var) == MTA_OK);
	struct mta_db_result r = ok_result(dev, var[0], 128, 2.5);
	REQUIRE(mta_db_result_put(db, &r) == MTA_OK);
	mta_db_close(db);
	REQUIRE(chmod(path, 0444) == 0);

	REQUIRE(mta_db_open(path, MTA_DB_READONLY, &db) == MTA_OK);
	struct mta_db_result got;
	CHECK(mta_db_result_get(db, dev, var[0], 128, 1, &got) == MTA_OK);
	CHECK(got.median_ms == 2.5);
	CHECK(mta_db_problem_find(db, "h4kv4d32-both-f32", &id) == MTA_OK);
	CHECK(mta_db_problem_upsert(db, "h8kv8d32-both-f32", &id) == MTA_EDB);
	CHECK_STR_CONTAINS(mta_last_error(), "read-only");
	CHECK_STR_CONTAINS(mta_last_error(), path);
	r.median_ms = 1.0;
	CHECK(mta_db_result_put(db, &r) == MTA_EDB);
	CHECK(mta_db_begin(db) == MTA_EDB);
	mta_db_close(db);
	CHECK_EQ_INT(raw(path, "SELECT count(*) FROM problems"), 1);
	CHECK_EQ_INT(raw(path, "SELECT count(*) FROM results WHERE median_ms = 2.5"), 1);
}

TEST(db_results_resume)
{
	struct mta_db *db;
	int64_t dev, prob, var[3];
	REQUIRE(mta_db_open(tmp_path("r.db"), 0, &db) == MTA_OK);
	REQUIRE(seed_db(db, 3, &dev, &prob, var) == MTA_OK);
	struct mta_db_result got, r = ok_result(dev, var[0], 1000, 3.0);
	CHECK(mta_db_result_get(db, dev, var[0], 1000, 1, &got) == MTA_ENOTFOUND);
	REQUIRE(mta_db_result_put(db, &r) == MTA_OK);
	REQUIRE(mta_db_result_get(db, dev, var[0], 1000, 1, &got) == MTA_OK);
	int64_t first = got.id;
	CHECK(got.status == MTA_RESULT_OK && got.median_ms == 3.0 && got.p20_ms == r.p20_ms);
	CHECK(got.p80_ms == r.p80_ms && got.min_ms == r.min_ms && got.runs == 5);
	CHECK(got.rel_err == 1e-7 && got.started_at == 1.7e9 && got.recorded_at > 1.7e9);
	CHECK(!strcmp(got.run_id, "run-1") && !strcmp(got.error, ""));

	/* The same key again (a resumed run re-measuring): replaced in place. */
	r.status = MTA_RESULT_CRASHED;
	r.median_ms = r.p20_ms = r.p80_ms = r.min_ms = r.rel_err = NAN;
	r.error = "SIGSEGV in kernel";
	r.run_id = "run-2";
	REQUIRE(mta_db_result_put(db, &r) == MTA_OK);
	REQUIRE(mta_db_result_get(db, dev, var[0], 1000, 1, &got) == MTA_OK);
	CHECK_EQ_INT(got.id, first);
	CHECK(got.status == MTA_RESULT_CRASHED && isnan(got.median_ms) && isnan(got.rel_err));
	CHECK(!strcmp(got.error, "SIGSEGV in kernel") && !strcmp(got.run_id, "run-2"));
	/* Other keys are other rows. */
	r = ok_result(dev, var[0], 1000, 2.0);
	r.B = 2;
	CHECK(mta_db_result_put(db, &r) == MTA_OK);
	r = ok_result(dev, var[1], 1000, 1.5);
	CHECK(mta_db_result_put(db, &r) == MTA_OK);
	/* Bad results are refused with a reason. */
	r.median_ms = NAN;
	CHECK(mta_db_result_put(db, &r) == MTA_EINVAL);
	CHECK_STR_CONTAINS(mta_last_error(), "median");
	r = ok_result(dev, var[1], 0, 1.0);
	CHECK(mta_db_result_put(db, &r) == MTA_EINVAL);
	r = ok_result(dev, var[1], 10, 1.0);
	r.status = MTA_RESULT_COUNT;
	CHECK(mta_db_result_put(db, &r) == MTA_EINVAL);
	CHECK_EQ_INT(raw(mta_db_path(db), "SELECT count(*) FROM results"), 3);
	for (int s = 0; s < MTA_RESULT_COUNT; s++) {
		int back = -1;
		CHECK(mta_result_status_parse(mta_result_status_name(s), &back) == MTA_OK);
		CHECK_EQ_INT(back, s);
	}
	int back;
	CHECK(mta_result_status_parse("fine", &back) == MTA_EINVAL);
	mta_db_close(db);
}

static int count_cb(void *ctx, const struct mta_db_result *r)
{
	int *n = ctx;
	if (r->problem_key && r->spec && r->T > 0)
		(*n)++;
	return 0;
}

static int stop_cb(void *ctx, const struct mta_db_result *r) { return 77; }

/* Keeps the last problem listed (its key copied: the row's text dies with the callback). */
static int problem_cb(void *ctx, const struct mta_db_problem_info *p)
{
	const struct mta_db_problem_info **last = ctx;
	static struct mta_db_problem_info copy;
	static char key[MTA_KEY_MAX];
	copy = *p;
	snprintf(key, sizeof key, "%s", p->key);
	copy.key = key;
	*last = &copy;
	return 0;
}

static int device_cb(void *ctx, const struct mta_db_device *d)
{
	(*(int *)ctx) += !strcmp(d->name, "Test CPU") && d->cores == 2;
	return 0;
}

static int winner_cb(void *ctx, const struct mta_db_winner *w)
{
	int64_t *sum = ctx;
	*sum += w->t_bucket;
	return 0;
}

TEST(db_winners_and_lists)
{
	struct mta_db *db;
	int64_t dev, prob, var[3], prob2, var2;
	REQUIRE(mta_db_open(tmp_path("w.db"), 0, &db) == MTA_OK);
	REQUIRE(seed_db(db, 3, &dev, &prob, var) == MTA_OK);
	CHECK_EQ_INT(mta_t_bucket(1), 1);
	CHECK_EQ_INT(mta_t_bucket(0), 1);
	CHECK_EQ_INT(mta_t_bucket(1000), 1024);
	CHECK_EQ_INT(mta_t_bucket(1024), 1024);
	CHECK_EQ_INT(mta_t_bucket(1025), 2048);

	struct mta_db_winner got, w = { .device_id = dev, .problem_id = prob, .time_ms = 1 };
	const char *key = "h4kv4d32-both-f32";
	CHECK(mta_db_winner_get(db, dev, key, "fwd", 1, 100, &got) == MTA_ENOTFOUND);
	CHECK_STR_CONTAINS(mta_last_error(), key);
	int64_t buckets[3] = { 64, 1024, 4096 };
	for (int i = 0; i < 3; i++) {
		w.variant_id = var[i];
		w.T = buckets[i];
		w.B = 1;
		REQUIRE(mta_db_winner_set(db, &w) == MTA_OK);
	}
	struct { int64_t T, bucket; int64_t var; int exact; } cases[] = {
		{ 1000, 1024, var[1], 1 }, { 100, 64, var[0], 0 },  { 2048, 4096, var[2], 0 },
		{ 10, 64, var[0], 0 },     { 100000, 4096, var[2], 0 }, { 33, 64, var[0], 1 },
		{ 300, 1024, var[1], 0 }, /* 512: 64 is 3 away, 1024 is 1 */
		{ 256, 1024, var[1], 0 }, /* 256: 64 and 1024 both 2 away: the larger */
	};
	for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		REQUIRE(mta_db_winner_get(db, dev, key, "fwd", 1, cases[i].T, &got) == MTA_OK);
		CHECKF(got.t_bucket == cases[i].bucket && got.variant_id == cases[i].var &&
		       got.exact == cases[i].exact, "T=%lld: bucket %lld exact %d, expected %lld %d",
		       (long long)cases[i].T, (long long)got.t_bucket, got.exact,
		       (long long)cases[i].bucket, cases[i].exact);
	}
	CHECK(!strcmp(got.spec, "cpu:v1,bq=16") && !strcmp(got.problem_key, key));
	CHECK(!strcmp(got.source_hash, "hash"));
	/* Replacing a winner; refusing a variant of another problem and a bad bucket. */
	w.variant_id = var[2];
	w.T = 1000;
	w.time_ms = 0.5;
	CHECK(mta_db_winner_set(db, &w) == MTA_OK);
	CHECK(mta_db_winner_get(db, dev, key, "fwd", 1, 1000, &got) == MTA_OK);
	CHECK(got.variant_id == var[2] && got.time_ms == 0.5);
	REQUIRE(mta_db_problem_upsert(db, "h8kv8d32-both-f32", &prob2) == MTA_OK);
	REQUIRE(mta_db_variant_upsert(db, prob2, "cpu:v1,bq=8", "", &var2) == MTA_OK);
	w.variant_id = var2;
	CHECK(mta_db_winner_set(db, &w) == MTA_EINVAL);
	CHECK_STR_CONTAINS(mta_last_error(), "not a fwd variant of");
	w.variant_id = var[0];
	w.t_bucket = 100;
	CHECK(mta_db_winner_set(db, &w) == MTA_EINVAL);
	CHECK(mta_db_winner_get(db, dev + 99, key, "fwd", 1, 1000, &got) == MTA_ENOTFOUND);

	/* Batch buckets keep winners apart; the evidence comes back as written. */
	w = (struct mta_db_winner){ .device_id = dev, .problem_id = prob, .variant_id = var[1],
				    .T = 2000, .B = 3, .time_ms = 1.0, .default_ms = 1.25,
				    .ratio = 0.8, .ci_low = 0.75, .ci_high = 0.85, .rounds = 12,
				    .significant = 1 };
	CHECK(mta_db_winner_set(db, &w) == MTA_OK);
	CHECK(mta_db_winner_get(db, dev, key, "fwd", 4, 2000, &got) == MTA_OK);
	CHECK(got.t_bucket == 2048 && got.b_bucket == 4 && got.exact && got.variant_id == var[1]);
	CHECK(got.rounds == 12 && got.significant && got.ratio == 0.8 && got.ci_low == 0.75 &&
	      got.ci_high == 0.85 && got.default_ms == 1.25 && !strcmp(got.op, "fwd"));
	/* B=1 at T=2000: the B=1 winners' nearest T bucket (4096) beats an exact T in B=4 */
	CHECK(mta_db_winner_get(db, dev, key, "fwd", 1, 2000, &got) == MTA_OK);
	CHECK(got.t_bucket == 2048 && got.b_bucket == 4 && !got.exact);
	CHECK(mta_db_winner_get(db, dev, key, "fwd", 1, 64, &got) == MTA_OK);
	CHECK(got.variant_id == var[0] && got.b_bucket == 1 && got.rounds == 0 && isnan(got.ratio));
	CHECK(mta_db_winner_get(db, dev, key, "bwd", 1, 64, &got) == MTA_ENOTFOUND);
	w.op = "sideways";
	CHECK(mta_db_winner_set(db, &w) == MTA_EINVAL);
	CHECK_STR_CONTAINS(mta_last_error(), "operation 'sideways'");
	double t2000[3] = { 3.0, 1.0, 2.0 };
	for (int i = 0; i < 3; i++) {
		struct mta_db_result r = ok_result(dev, var[i], 2000, t2000[i]);
		CHECK(mta_db_result_put(db, &r) == MTA_OK);
	}
	struct mta_db_result r = ok_result(dev, var[0], 2000, 0.1);
	r.status = MTA_RESULT_VERIFY_FAILED;
	r.B = 2;
	CHECK(mta_db_result_put(db, &r) == MTA_OK);
	r = ok_result(dev, var[2], 1500, 0.01);
	CHECK(mta_db_result_put(db, &r) == MTA_OK);

	int n = 0, ndev = 0;
	CHECK(mta_db_list_results(db, 0, NULL, count_cb, &n) == MTA_OK);
	CHECK_EQ_INT(n, 5);
	n = 0;
	CHECK(mta_db_list_results(db, dev, "h8kv8d32-both-f32", count_cb, &n) == MTA_OK);
	CHECK_EQ_INT(n, 0);
	CHECK(mta_db_list_results(db, 0, NULL, stop_cb, NULL) == 77);
	const struct mta_db_problem_info *last = NULL;
	CHECK(mta_db_list_problems(db, problem_cb, &last) == MTA_OK);
	REQUIRE(last);
	CHECK(!strcmp(last->key, "h8kv8d32-both-f32") && last->variants == 1 && last->results == 0);
	CHECK(mta_db_list_devices(db, device_cb, &ndev) == MTA_OK);
	CHECK_EQ_INT(ndev, 1);
	int64_t sum = 0;
	CHECK(mta_db_list_winners(db, dev, key, winner_cb, &sum) == MTA_OK);
	CHECK_EQ_INT(sum, 64 + 1024 + 2048 + 4096);
	mta_db_close(db);
}

TEST(db_variant_compile_info)
{
	struct mta_db *db;
	int64_t dev, prob, var[1], again;
	REQUIRE(mta_db_open(tmp_path("v.db"), 0, &db) == MTA_OK);
	REQUIRE(seed_db(db, 1, &dev, &prob, var) == MTA_OK);
	struct mta_db_compile c = {
		.status = MTA_COMPILE_OK, .target = "sm_90", .registers = 128, .spill_stores = 0,
		.spill_loads = 4, .shared_bytes = 49152, .stack_bytes = -1, .ms = 160.5,
		.log = "ptxas info: Used 128 registers",
	};
	CHECK(mta_db_variant_set_compile(db, var[0], &c) == MTA_OK);
	struct mta_db_variant v;
	REQUIRE(mta_db_variant_get(db, var[0], &v) == MTA_OK);
	CHECK(v.compile.status == MTA_COMPILE_OK && !strcmp(v.compile.target, "sm_90"));
	CHECK(v.compile.registers == 128 && v.compile.spill_stores == 0 && v.compile.spill_loads == 4);
	CHECK(v.compile.shared_bytes == 49152 && v.compile.stack_bytes == -1);
	CHECK(v.compile.ms == 160.5 && !strcmp(v.compile.log, c.log));
	CHECK(!strcmp(v.spec, "cpu:v1,bq=8") && !strcmp(v.source_hash, "hash") && v.problem_id == prob);
	/* Same hash or none: kept. A new source: new hash, compile information cleared. */
	CHECK(mta_db_variant_upsert(db, prob, "cpu:v1,bq=8", "", &again) == MTA_OK);
	CHECK(mta_db_variant_upsert(db, prob, "cpu:v1,bq=8", "hash", &again) == MTA_OK);
	REQUIRE(mta_db_variant_get(db, var[0], &v) == MTA_OK);
	CHECK(v.compile.registers == 128);
	CHECK(mta_db_variant_upsert(db, prob, "cpu:v1,bq=8", "hash2", &again) == MTA_OK);
	CHECK_EQ_INT(again, var[0]);
	REQUIRE(mta_db_variant_get(db, var[0], &v) == MTA_OK);
	CHECK(!strcmp(v.source_hash, "hash2") && v.compile.status == MTA_COMPILE_UNKNOWN);
	CHECK(v.compile.registers == -1 && isnan(v.compile.ms));
	CHECK(mta_db_variant_set_compile(db, var[0] + 50, &c) == MTA_ENOTFOUND);
	CHECK(mta_db_variant_get(db, var[0] + 50, &v) == MTA_ENOTFOUND);
	CHECK(mta_db_variant_upsert(db, prob + 50, "cpu:v1", "", &again) == MTA_EDB); /* no such problem */
	CHECK_STR_CONTAINS(mta_last_error(), "FOREIGN KEY");
	mta_db_close(db);
}

TEST(db_binaries)
{
	struct mta_db *db;
	REQUIRE(mta_db_open(tmp_path("b.db"), 0, &db) == MTA_OK);
	size_t n = 20000 + (size_t)(10000 * fabs(mt_uniform()));
	unsigned char *blob = malloc(n);
	REQUIRE(blob);
	for (size_t i = 0; i < n; i++)
		blob[i] = (unsigned char)(256 * (0.5 + 0.5 * mt_uniform()));
	blob[7] = 0; /* embedded NULs survive */
	struct mta_db_binary_key k = { "abc123", "sm_90", "nvrtc 13.0", "-O3" };
	void *got;
	size_t gn;
	CHECK(mta_db_binary_get(db, &k, &got, &gn) == MTA_ENOTFOUND);
	REQUIRE(mta_db_binary_put(db, &k, blob, n) == MTA_OK);
	REQUIRE(mta_db_binary_get(db, &k, &got, &gn) == MTA_OK);
	CHECK(gn == n && !memcmp(got, blob, n));
	free(got);
	/* Another option is another binary; putting the same key replaces. */
	struct mta_db_binary_key k2 = k;
	k2.options = "-O2";
	CHECK(mta_db_binary_get(db, &k2, &got, &gn) == MTA_ENOTFOUND);
	REQUIRE(mta_db_binary_put(db, &k, blob, n / 2) == MTA_OK);
	REQUIRE(mta_db_binary_get(db, &k, &got, &gn) == MTA_OK);
	CHECK(gn == n / 2 && !memcmp(got, blob, n / 2));
	free(got);
	REQUIRE(mta_db_binary_put(db, &k2, NULL, 0) == MTA_OK);
	REQUIRE(mta_db_binary_get(db, &k2, &got, &gn) == MTA_OK);
	CHECK(got != NULL && gn == 0);
	free(got);
	k2.source_hash = "";
	CHECK(mta_db_binary_put(db, &k2, blob, 1) == MTA_EINVAL);
	CHECK_EQ_INT(raw(mta_db_path(db), "SELECT count(*) FROM binaries"), 2);
	/* A refused key inside a group is an argument error: the group's earlier
	 * writes stay and commit (it once rolled the whole group back). */
	struct mta_db_binary_key k3 = k;
	k3.source_hash = "def456";
	REQUIRE(mta_db_begin(db) == MTA_OK);
	CHECK(mta_db_binary_put(db, &k3, blob, 3) == MTA_OK);
	CHECK(mta_db_binary_put(db, &k2, blob, 1) == MTA_EINVAL);
	CHECK(mta_db_commit(db) == MTA_OK);
	CHECK_EQ_INT(raw(mta_db_path(db), "SELECT count(*) FROM binaries"), 3);
	free(blob);
	mta_db_close(db);
}

TEST(db_group_rollback)
{
	struct mta_db *db;
	int64_t dev, prob, var[2];
	const char *path = tmp_path("g.db");
	REQUIRE(mta_db_open(path, 0, &db) == MTA_OK);
	REQUIRE(seed_db(db, 2, &dev, &prob, var) == MTA_OK);
	REQUIRE(mta_db_begin(db) == MTA_OK);
	CHECK(mta_db_begin(db) == MTA_EINVAL);
	struct mta_db_result r = ok_result(dev, var[0], 64, 1.0);
	CHECK(mta_db_result_put(db, &r) == MTA_OK);
	int64_t p2;
	CHECK(mta_db_problem_upsert(db, "h2kv2d16-both-f32", &p2) == MTA_OK);
	r = ok_result(dev, var[1] + 1000, 64, 1.0); /* no such variant: the constraint fails */
	CHECK(mta_db_result_put(db, &r) == MTA_EDB);
	CHECK_STR_CONTAINS(mta_last_error(), "FOREIGN KEY");
	r = ok_result(dev, var[1], 64, 1.0);
	CHECK(mta_db_result_put(db, &r) == MTA_EDB);
	CHECK_STR_CONTAINS(mta_last_error(), "rolled back");
	CHECK(mta_db_commit(db) == MTA_EDB);
	CHECK_STR_CONTAINS(mta_last_error(), "nothing committed");
	CHECK_EQ_INT(raw(path, "SELECT count(*) FROM results"), 0);
	CHECK_EQ_INT(raw(path, "SELECT count(*) FROM problems"), 1);
	/* After that, writes work again; an explicit rollback discards; a commit keeps. */
	REQUIRE(mta_db_begin(db) == MTA_OK);
	CHECK(mta_db_result_put(db, &r) == MTA_OK);
	CHECK(mta_db_rollback(db) == MTA_OK);
	CHECK_EQ_INT(raw(path, "SELECT count(*) FROM results"), 0);
	REQUIRE(mta_db_begin(db) == MTA_OK);
	CHECK(mta_db_result_put(db, &r) == MTA_OK);
	r.T = 128;
	CHECK(mta_db_result_put(db, &r) == MTA_OK);
	CHECK(mta_db_commit(db) == MTA_OK);
	CHECK(mta_db_commit(db) == MTA_EINVAL);
	CHECK(mta_db_rollback(db) == MTA_EINVAL);
	CHECK_EQ_INT(raw(path, "SELECT count(*) FROM results"), 2);
	/* A single write failing alone leaves nothing either. */
	r.variant_id = var[1] + 1000;
	CHECK(mta_db_result_put(db, &r) == MTA_EDB);
	CHECK_EQ_INT(raw(path, "SELECT count(*) FROM results"), 2);
	mta_db_close(db);
}

enum { WRITERS = 3, PER_WRITER = 300, SHARED = 20 };

/* One writer process: its own variants, PER_WRITER results, plus SHARED keys all write. */
static int writer(const char *path, int w)
{
	struct mta_db *db;
	int64_t dev, prob, var, shared;
	char spec[64];
	if (mta_db_open(path, 0, &db) || mta_db_device_upsert(db, &cpu_dev, &dev) ||
	    mta_db_problem_upsert(db, "h4kv4d32-both-f32", &prob) ||
	    mta_db_variant_upsert(db, prob, "cpu:v1,bq=4", "", &shared))
		goto fail;
	snprintf(spec, sizeof spec, "cpu:v1,bq=%d", 16 * (w + 1));
	if (mta_db_variant_upsert(db, prob, spec, "", &var))
		goto fail;
	for (int i = 0; i < PER_WRITER; i++) {
		struct mta_db_result r = ok_result(dev, var, 1 + i, 1.0 + w);
		if (mta_db_result_put(db, &r))
			goto fail;
		if (i < SHARED) {
			r.variant_id = shared;
			if (mta_db_result_put(db, &r))
				goto fail;
		}
	}
	mta_db_close(db);
	return 0;
fail:
	fprintf(stderr, "    writer %d: %s\n", w, mta_last_error());
	mta_db_close(db);
	return 1;
}

TEST(db_concurrent_writers)
{
	const char *path = tmp_path("c.db"); /* created by the writers, at once */
	pid_t pids[WRITERS];
	int go[2];
	char c;
	REQUIRE(pipe(go) == 0);
	for (int w = 0; w < WRITERS; w++) {
		fflush(stderr);
		pids[w] = fork();
		REQUIRE(pids[w] >= 0);
		if (pids[w] == 0) {
			close(go[1]); /* start together: when the parent closes its end */
			_exit(read(go[0], &c, 1) == 0 ? writer(path, w) : 2);
		}
	}
	close(go[0]);
	close(go[1]);
	for (int w = 0; w < WRITERS; w++) {
		int st = 0;
		REQUIRE(waitpid(pids[w], &st, 0) == pids[w]);
		CHECKF(WIFEXITED(st) && WEXITSTATUS(st) == 0, "writer %d failed (status %d)", w, st);
	}
	CHECK_EQ_INT(raw(path, "SELECT count(*) FROM results"), WRITERS * PER_WRITER + SHARED);
	CHECK_EQ_INT(raw(path, "SELECT count(DISTINCT variant_id || ',' || T) FROM results"),
		     WRITERS * PER_WRITER + SHARED);
	CHECK_EQ_INT(raw(path, "SELECT count(*) FROM (SELECT variant_id FROM results GROUP BY "
			 "variant_id HAVING count(*) = 300 AND min(T) = 1 AND max(T) = 300)"), WRITERS);
	CHECK_EQ_INT(raw(path, "SELECT count(*) FROM devices"), 1);
	CHECK_EQ_INT(raw(path, "SELECT count(*) FROM problems"), 1);
	CHECK_EQ_INT(raw(path, "SELECT count(*) FROM variants"), WRITERS + 1);
	struct mta_db *db;
	REQUIRE(mta_db_open(path, MTA_DB_CHECK, &db) == MTA_OK);
	mta_db_close(db);
}

/*
 * Shard i: device "GPU i" (shard 2 shares shard 0's device), results for T in
 * 1..n, bq=8 fastest on shard i and, as a tuning run leaves it, the winner
 * at T=100*n with the evidence of its rounds.
 */
static int make_shard(const char *path, const char *devname, int n, double base)
{
	struct mta_db *db;
	int64_t dev, prob, var[2];
	struct mta_db_device d = cpu_dev;
	d.name = devname;
	int rc = mta_db_open(path, 0, &db);
	if (!rc && !(rc = mta_db_device_upsert(db, &d, &dev)) &&
	    !(rc = mta_db_problem_upsert(db, "h4kv4d32-both-f32", &prob)))
		for (int i = 0; !rc && i < 2; i++)
			rc = mta_db_variant_upsert(db, prob, i ? "cpu:v1,bq=32" : "cpu:v1,bq=8", "h", &var[i]);
	for (int t = 1; !rc && t <= n; t++)
		for (int i = 0; !rc && i < 2; i++) {
			struct mta_db_result r = ok_result(dev, var[i], 100 * t, base + i);
			rc = mta_db_result_put(db, &r);
		}
	struct mta_db_binary_key k = { devname, "x86_64", "gcc", "" };
	if (!rc)
		rc = mta_db_binary_put(db, &k, "elf", 3);
	struct mta_db_winner w = { .device_id = dev, .problem_id = prob, .variant_id = var[0],
				   .T = 100 * n, .B = 1, .time_ms = base, .default_ms = base + 1,
				   .ratio = base / (base + 1), .ci_low = 0.5, .ci_high = 0.9,
				   .rounds = 10 + n, .significant = 1 };
	if (!rc)
		rc = mta_db_winner_set(db, &w);
	mta_db_close(db);
	return rc;
}

TEST(db_merge_shards)
{
	const char *a = tmp_path("a.db"), *b = tmp_path("b.db"), *out = tmp_path("out.db");
	/* Out already holds a measurement of a key a also has, but older: a's wins. */
	REQUIRE(make_shard(out, "GPU 0", 1, 5.0) == MTA_OK);
	usleep(20000);
	REQUIRE(make_shard(a, "GPU 0", 10, 1.0) == MTA_OK);
	REQUIRE(make_shard(b, "GPU 1", 5, 2.0) == MTA_OK);
	struct mta_db *db;
	REQUIRE(mta_db_open(out, 0, &db) == MTA_OK);
	CHECK(mta_db_merge(db, a) == MTA_OK);
	CHECK(mta_db_merge(db, b) == MTA_OK);
	CHECK(mta_db_merge(db, b) == MTA_OK); /* twice: nothing doubles */
	CHECK_EQ_INT(raw(out, "SELECT count(*) FROM devices"), 2);
	CHECK_EQ_INT(raw(out, "SELECT count(*) FROM problems"), 1);
	CHECK_EQ_INT(raw(out, "SELECT count(*) FROM variants"), 2);
	CHECK_EQ_INT(raw(out, "SELECT count(*) FROM results"), 2 * 10 + 2 * 5);
	CHECK_EQ_INT(raw(out, "SELECT count(*) FROM results WHERE median_ms >= 5"), 0);
	CHECK_EQ_INT(raw(out, "SELECT count(*) FROM binaries"), 2);
	/* Winners per device: bq=8 everywhere, with each shard's own time. */
	int64_t d0, d1;
	struct mta_db_device dev = cpu_dev;
	dev.name = "GPU 0";
	REQUIRE(mta_db_device_find(db, &dev, &d0) == MTA_OK);
	dev.name = "GPU 1";
	REQUIRE(mta_db_device_find(db, &dev, &d1) == MTA_OK);
	struct mta_db_winner w;
	REQUIRE(mta_db_winner_get(db, d0, "h4kv4d32-both-f32", "fwd", 1, 1000, &w) == MTA_OK);
	CHECK(!strcmp(w.spec, "cpu:v1,bq=8") && w.time_ms == 1.0 && w.T == 1000);
	REQUIRE(mta_db_winner_get(db, d1, "h4kv4d32-both-f32", "fwd", 1, 1000, &w) == MTA_OK);
	CHECK(!strcmp(w.spec, "cpu:v1,bq=8") && w.time_ms == 2.0 && w.T == 500 && !w.exact);
	/* Refused inputs leave out untouched. */
	const char *txt = tmp_path("x.txt");
	FILE *f = fopen(txt, "w");
	REQUIRE(f);
	fputs("hello", f);
	fclose(f);
	CHECK(mta_db_merge(db, txt) == MTA_EFORMAT);
	CHECK_STR_CONTAINS(mta_last_error(), "not an SQLite file");
	CHECK(mta_db_merge(db, tmp_path("missing.db")) == MTA_ENOTFOUND);
	CHECK_EQ_INT(raw(out, "SELECT count(*) FROM results"), 30);
	mta_db_close(db);
}

/* Every winner with its evidence, one line each, by natural keys (not ids). */
#define WINNERS_SQL "SELECT d.name, p.key, w.op, w.t_bucket, w.b_bucket, v.spec, w.time_ms, " \
	"w.T, w.B, w.default_ms, w.ratio, w.ci_low, w.ci_high, w.rounds, w.significant, " \
	"w.updated_at FROM winners w JOIN devices d ON d.id = w.device_id JOIN problems p ON " \
	"p.id = w.problem_id JOIN variants v ON v.id = w.variant_id ORDER BY 1, 2, 3, 4, 5"

/*
 * Merging decides winners by the same rule as tuning (the latest decision
 * of a key stands, with its evidence), not from medians: a database merged
 * into an empty one has the same winners; merging again changes nothing; of
 * two decisions for one key the later wins whichever file holds it.
 */
TEST(db_merge_keeps_winners_and_is_idempotent)
{
	const char *a = tmp_path("a.db"), *b = tmp_path("b.db"), *e = tmp_path("empty.db");
	REQUIRE(make_shard(a, "GPU 0", 10, 1.0) == MTA_OK);
	/* a's results say bq=32 (2.0) is slower; a winner decided otherwise keeps its word */
	struct mta_db *db;
	REQUIRE(mta_db_open(e, 0, &db) == MTA_OK);
	CHECK(mta_db_merge(db, a) == MTA_OK);
	mta_db_close(db);
	char *wa = mt_sql_rows(a, WINNERS_SQL), *we = mt_sql_rows(e, WINNERS_SQL);
	CHECKF(wa[0] && !strcmp(wa, we), "winners differ after a merge into an empty database:\n"
	       "%s--- merged ---\n%s", wa, we);
	free(we);
	REQUIRE(mta_db_open(e, 0, &db) == MTA_OK);
	CHECK(mta_db_merge(db, a) == MTA_OK);
	mta_db_close(db);
	we = mt_sql_rows(e, WINNERS_SQL);
	CHECKF(!strcmp(wa, we), "a second merge changed the winners:\n%s", we);
	free(we);
	/* a later decision of the same key in b replaces a's, in either order of merging */
	usleep(20000);
	REQUIRE(make_shard(b, "GPU 0", 10, 3.0) == MTA_OK);
	char *wb = mt_sql_rows(b, WINNERS_SQL);
	REQUIRE(mta_db_open(a, 0, &db) == MTA_OK);
	CHECK(mta_db_merge(db, b) == MTA_OK);
	mta_db_close(db);
	REQUIRE(mta_db_open(b, 0, &db) == MTA_OK);
	CHECK(mta_db_merge(db, a) == MTA_OK);
	mta_db_close(db);
	char *wa2 = mt_sql_rows(a, WINNERS_SQL), *wb2 = mt_sql_rows(b, WINNERS_SQL);
	CHECKF(!strcmp(wa2, wb) && !strcmp(wb2, wb), "the later decision did not stand:\n%s---\n%s"
	       "---\n%s", wb, wa2, wb2);
	free(wa);
	free(wb);
	free(wa2);
	free(wb2);
}

/*
 * A database of schema version 3 (tests/data/schema_v3.sql, variants unique
 * on (problem, spec)) is brought to version 4 when opened: the variants'
 * table is rebuilt with every row and id, results and winners still refer to
 * their variants, the index stays, and a backward variant of a forward
 * variant's spec can then be recorded beside it.
 */
TEST(db_migrate_from_version_3)
{
	const char *path = tmp_path("v3.db");
	char *out = NULL;
	int rc = mt_sh(&out, "python3 -c \"import sqlite3,sys; c=sqlite3.connect(sys.argv[1]); "
		       "c.executescript(open('tests/data/schema_v3.sql').read()); "
		       "c.executescript(\\\"INSERT INTO devices (backend, name) VALUES ('cpu', 'Old CPU'); "
		       "INSERT INTO problems (key) VALUES ('h4kv4d32-both-f32'); "
		       "INSERT INTO variants (id, problem_id, spec, source_hash, compile_status, "
		       "compile_ms) VALUES (7, 1, 'cpu:v1,bq=8', 'h8', 'ok', 12.5), "
		       "(9, 1, 'cpu:v1,bq=16', 'h16', 'unknown', NULL); "
		       "INSERT INTO results (device_id, variant_id, T, B, t_bucket, status, median_ms, "
		       "recorded_at) VALUES (1, 7, 100, 1, 128, 'ok', 1.5, 1), (1, 9, 100, 1, 128, 'ok', "
		       "2.5, 1), (1, 9, 200, 1, 256, 'env_error', NULL, 1); "
		       "INSERT INTO winners (device_id, problem_id, t_bucket, variant_id, time_ms, T, B, "
		       "updated_at) VALUES (1, 1, 128, 7, 1.5, 100, 1, 1);"
		       "\\\"); c.commit()\" '%s'", path);
	REQUIRE(rc == 0 || (mt_fail(__FILE__, __LINE__, "%s", out), 0));
	free(out);
	CHECK_EQ_INT(raw(path, "PRAGMA user_version"), 3);
	struct mta_db *db;
	REQUIRE(mta_db_open(path, 0, &db) == MTA_OK || (mt_fail(__FILE__, __LINE__, "%s",
							 mta_last_error()), 0));
	struct mta_db_variant v;
	REQUIRE(mta_db_variant_get(db, 7, &v) == MTA_OK);
	CHECK(!strcmp(v.spec, "cpu:v1,bq=8") && !strcmp(v.op, "fwd") &&
	      !strcmp(v.source_hash, "h8") && v.compile.status == MTA_COMPILE_OK &&
	      v.compile.ms == 12.5);
	int64_t again = 0, bwd = 0;
	CHECK(mta_db_variant_upsert(db, 1, "cpu:v1,bq=8", "h8", &again) == MTA_OK);
	CHECK_EQ_INT(again, 7);
	CHECK(mta_db_variant_upsert_op(db, 1, "bwd", "cpu:v1,bq=8", "b8", &bwd) == MTA_OK);
	CHECK(bwd != 7 && bwd != 9);
	struct mta_db_winner w;
	CHECK(mta_db_winner_get(db, 1, "h4kv4d32-both-f32", "fwd", 1, 100, &w) == MTA_OK);
	CHECK(w.variant_id == 7 && !strcmp(w.spec, "cpu:v1,bq=8") && w.time_ms == 1.5);
	mta_db_close(db);
	CHECK_EQ_INT(raw(path, "PRAGMA user_version"), MTA_DB_SCHEMA_VERSION);
	CHECK_EQ_INT(raw(path, "SELECT count(*) FROM variants"), 3);
	CHECK_EQ_INT(raw(path, "SELECT count(*) FROM results r JOIN variants v ON v.id = "
			 "r.variant_id WHERE (v.id = 7 AND r.median_ms = 1.5) OR (v.id = 9 AND "
			 "v.spec = 'cpu:v1,bq=16')"), 3);
	CHECK_EQ_INT(raw(path, "SELECT count(*) FROM pragma_foreign_key_check"), 0);
	CHECK_EQ_INT(raw(path, "SELECT count(*) FROM sqlite_schema WHERE type = 'index' AND "
			 "name = 'results_by_variant'"), 1);
	CHECK_EQ_INT(raw(path, "SELECT count(*) FROM sqlite_schema WHERE name = 'variants' AND "
			 "sql LIKE '%UNIQUE (problem_id, op, spec)%'"), 1);
	CHECK_EQ_INT(raw(path, "SELECT count(*) FROM sqlite_schema WHERE name LIKE 'variants_%'"),
		     0);
}

/*
 * The forward and the backward of one spec are two variants: their own ids,
 * results and winners; a winner must name a variant of its own operation; a
 * new source for the backward leaves the forward's measurements alone.
 * Merging keeps them apart: each result and winner goes to the variant of
 * its own operation.
 */
TEST(db_fwd_bwd_variants)
{
	const char *a = tmp_path("fb-a.db"), *out = tmp_path("fb-out.db");
	for (int f = 0; f < 2; f++) {
		struct mta_db *db;
		int64_t dev, prob, fwd, bwd, again;
		REQUIRE(mta_db_open(f ? out : a, 0, &db) == MTA_OK);
		REQUIRE(seed_db(db, 0, &dev, &prob, NULL) == MTA_OK);
		/* out gets its variants in the other order: ids differ between the files */
		if (f)
			REQUIRE(mta_db_variant_upsert_op(db, prob, "bwd", "cpu:v1,bq=8", "hb", &bwd) == MTA_OK);
		REQUIRE(mta_db_variant_upsert_op(db, prob, "fwd", "cpu:v1,bq=8", "hf", &fwd) == MTA_OK);
		REQUIRE(mta_db_variant_upsert_op(db, prob, "bwd", "cpu:v1,bq=8", "hb", &bwd) == MTA_OK);
		CHECK(fwd != bwd);
		CHECK(mta_db_variant_upsert(db, prob, "cpu:v1,bq=8", "hf", &again) == MTA_OK &&
		      again == fwd);
		CHECK(mta_db_variant_upsert_op(db, prob, "bwd", "cpu:v1,bq=8", "hb", &again) ==
		      MTA_OK && again == bwd);
		CHECK(mta_db_variant_upsert_op(db, prob, "sideways", "cpu:v1,bq=8", "", &again) ==
		      MTA_EINVAL);
		CHECK_STR_CONTAINS(mta_last_error(), "sideways");
		struct mta_db_variant v;
		CHECK(mta_db_variant_get(db, bwd, &v) == MTA_OK && !strcmp(v.op, "bwd"));
		if (f)
			continue;
		struct mta_db_result r = ok_result(dev, fwd, 100, 1.0);
		REQUIRE(mta_db_result_put(db, &r) == MTA_OK);
		r = ok_result(dev, bwd, 100, 3.0);
		REQUIRE(mta_db_result_put(db, &r) == MTA_OK);
		struct mta_db_winner w = { .device_id = dev, .problem_id = prob, .variant_id = fwd,
					   .op = "bwd", .T = 100, .B = 1, .time_ms = 3.0 };
		CHECK(mta_db_winner_set(db, &w) == MTA_EINVAL); /* a forward variant as bwd winner */
		CHECK_STR_CONTAINS(mta_last_error(), "not a bwd variant");
		w.variant_id = bwd;
		CHECK(mta_db_winner_set(db, &w) == MTA_OK);
		w.variant_id = fwd;
		w.op = "fwd";
		w.time_ms = 1.0;
		CHECK(mta_db_winner_set(db, &w) == MTA_OK);
		struct mta_db_winner got;
		CHECK(mta_db_winner_get(db, dev, "h4kv4d32-both-f32", "bwd", 1, 100, &got) == MTA_OK &&
		      got.variant_id == bwd && got.time_ms == 3.0 && !strcmp(got.op, "bwd"));
		CHECK(mta_db_winner_get(db, dev, "h4kv4d32-both-f32", "fwd", 1, 100, &got) == MTA_OK &&
		      got.variant_id == fwd && got.time_ms == 1.0);
		mta_db_close(db);
		CHECK_EQ_INT(raw(a, "SELECT count(*) FROM results"), 2);
	}
	struct mta_db *db;
	REQUIRE(mta_db_open(out, 0, &db) == MTA_OK);
	CHECK(mta_db_merge(db, a) == MTA_OK);
	mta_db_close(db);
	CHECK_EQ_INT(raw(out, "SELECT count(*) FROM variants"), 2);
	CHECK_EQ_INT(raw(out, "SELECT count(*) FROM results r JOIN variants v ON v.id = "
			 "r.variant_id WHERE (v.op = 'fwd' AND r.median_ms = 1.0) OR (v.op = 'bwd' "
			 "AND r.median_ms = 3.0)"), 2);
	CHECK_EQ_INT(raw(out, "SELECT count(*) FROM winners w JOIN variants v ON v.id = "
			 "w.variant_id WHERE v.op = w.op AND ((w.op = 'fwd' AND w.time_ms = 1.0) OR "
			 "(w.op = 'bwd' AND w.time_ms = 3.0))"), 2);
}

TEST(db_changed_source_drops_stale_measurements)
{
	const char *path = tmp_path("stale.db");
	struct mta_db *db;
	int64_t dev, prob, var[2], again;
	REQUIRE(mta_db_open(path, 0, &db) == MTA_OK);
	REQUIRE(seed_db(db, 2, &dev, &prob, var) == MTA_OK);
	for (int i = 0; i < 2; i++) {
		struct mta_db_result r = { .device_id = dev, .variant_id = var[i], .T = 64, .B = 1,
					   .status = MTA_RESULT_OK, .median_ms = 1.0 + i,
					   .p20_ms = NAN, .p80_ms = NAN, .min_ms = NAN, .rel_err = 1e-7,
					   .runs = 1 };
		REQUIRE(mta_db_result_put(db, &r) == MTA_OK);
	}
	struct mta_db_winner w = { .device_id = dev, .problem_id = prob, .variant_id = var[0],
				   .T = 64, .B = 1, .time_ms = 1.0 };
	REQUIRE(mta_db_winner_set(db, &w) == MTA_OK);
	/* the same source, or none given: nothing changes */
	REQUIRE(mta_db_variant_upsert(db, prob, "cpu:v1,bq=8", "hash", &again) == MTA_OK);
	REQUIRE(mta_db_variant_upsert(db, prob, "cpu:v1,bq=8", NULL, &again) == MTA_OK);
	CHECK_EQ_INT(again, var[0]);
	CHECK_EQ_INT(raw(path, "SELECT count(*) FROM results"), 2);
	CHECK_EQ_INT(raw(path, "SELECT count(*) FROM winners"), 1);
	/* a new source for bq=8: its result and winner go, bq=16's result stays */
	REQUIRE(mta_db_variant_upsert(db, prob, "cpu:v1,bq=8", "newhash", &again) == MTA_OK);
	CHECK_EQ_INT(again, var[0]);
	CHECK_EQ_INT(raw(path, "SELECT count(*) FROM results"), 1);
	char sql[100];
	snprintf(sql, sizeof sql, "SELECT count(*) FROM results WHERE variant_id = %lld",
		 (long long)var[1]);
	CHECK_EQ_INT(raw(path, sql), 1);
	CHECK_EQ_INT(raw(path, "SELECT count(*) FROM winners"), 0);
	struct mta_db_result got;
	CHECK(mta_db_result_get(db, dev, var[0], 64, 1, &got) == MTA_ENOTFOUND);
	mta_db_close(db);
}

/*
 * Schema version 3 (db/migrate_3.sql): results.status may be env_error. A
 * version-2 file keeps every result and id when it is opened for writing,
 * is read as it is (unmigrated) by a read-only handle, and merges into a
 * version-3 file.
 */
TEST(db_migrate_2_to_3_keeps_results_and_v2_files_stay_readable)
{
	const char *path = tmp_path("v2.db");
	struct mta_db *db;
	int64_t dev, prob, var[2];
	REQUIRE(mta_db_open(path, 0, &db) == MTA_OK);
	REQUIRE(seed_db(db, 2, &dev, &prob, var) == MTA_OK);
	struct mta_db_result r = ok_result(dev, var[0], 128, 2.5);
	REQUIRE(mta_db_result_put(db, &r) == MTA_OK);
	r = ok_result(dev, var[1], 128, 3.5);
	REQUIRE(mta_db_result_put(db, &r) == MTA_OK);
	mta_db_close(db);
	/* turned back into version 2: the results table with its old CHECK */
	CHECK_EQ_INT(raw(path, "PRAGMA writable_schema = ON"), 0);
	sqlite3 *h;
	REQUIRE(sqlite3_open(path, &h) == SQLITE_OK);
	CHECK(sqlite3_exec(h, "PRAGMA writable_schema = ON; UPDATE sqlite_schema SET sql = "
			   "replace(sql, ', ''env_error''', '') WHERE name = 'results'; "
			   "PRAGMA writable_schema = OFF; PRAGMA user_version = 2;", NULL, NULL,
			   NULL) == SQLITE_OK);
	sqlite3_close(h);
	CHECK_EQ_INT(raw(path, "PRAGMA user_version"), 2);
	CHECK_EQ_INT(raw(path, "SELECT count(*) FROM sqlite_schema WHERE sql LIKE '%env_error%'"), 0);
	long long id0 = raw(path, "SELECT id FROM results WHERE median_ms = 2.5");

	/* read-only: read as it is */
	REQUIRE(mta_db_open(path, MTA_DB_READONLY, &db) == MTA_OK);
	struct mta_db_result got;
	CHECK(mta_db_result_get(db, dev, var[1], 128, 1, &got) == MTA_OK && got.median_ms == 3.5);
	mta_db_close(db);
	CHECK_EQ_INT(raw(path, "PRAGMA user_version"), 2);
	/* merged into a new file */
	struct mta_db *out;
	REQUIRE(mta_db_open(tmp_path("merged.db"), 0, &out) == MTA_OK);
	CHECK(mta_db_merge(out, path) == MTA_OK);
	mta_db_close(out);
	CHECK_EQ_INT(raw(tmp_path("merged.db"), "SELECT count(*) FROM results"), 2);
	/* for writing: migrated, every row and id kept, env_error accepted */
	REQUIRE(mta_db_open(path, 0, &db) == MTA_OK);
	int v = 0;
	CHECK(mta_db_schema_version(db, &v) == MTA_OK && v == MTA_DB_SCHEMA_VERSION);
	r = ok_result(dev, var[1], 256, 1.0);
	r.status = MTA_RESULT_ENV_ERROR;
	r.median_ms = NAN;
	r.error = "no C compiler";
	CHECK(mta_db_result_put(db, &r) == MTA_OK);
	mta_db_close(db);
	CHECK_EQ_INT(raw(path, "SELECT count(*) FROM results"), 3);
	CHECK_EQ_INT(raw(path, "SELECT id FROM results WHERE median_ms = 2.5"), id0);
	CHECK_EQ_INT(raw(path, "SELECT count(*) FROM results WHERE status = 'env_error'"), 1);
	CHECK_EQ_INT(raw(path, "SELECT count(*) FROM sqlite_schema WHERE name = 'results_by_variant'"), 1);
	CHECK_EQ_INT(raw(path, "PRAGMA integrity_check"), 0);
}

static int dev_cb(void *ctx, const struct mta_db_device *d)
{
	(void)d;
	++*(int *)ctx;
	return MTA_OK;
}
static int win_cb(void *ctx, const struct mta_db_winner *w)
{
	(void)w;
	++*(int *)ctx;
	return MTA_OK;
}
static int res_cb(void *ctx, const struct mta_db_result *r)
{
	(void)r;
	++*(int *)ctx;
	return MTA_OK;
}
static int prob_cb(void *ctx, const struct mta_db_problem_info *p)
{
	(void)p;
	++*(int *)ctx;
	return MTA_OK;
}

/* each lister on db: rcs[0..3] devices, winners, results, problems */
static void list_all(struct mta_db *db, int rcs[4], int k_only)
{
	int n = 0;
	if (k_only < 0 || k_only == 0)
		rcs[0] = mta_db_list_devices(db, dev_cb, &n);
	if (k_only < 0 || k_only == 1)
		rcs[1] = mta_db_list_winners(db, 0, NULL, win_cb, &n);
	if (k_only < 0 || k_only == 2)
		rcs[2] = mta_db_list_results(db, 0, NULL, res_cb, &n);
	if (k_only < 0 || k_only == 3)
		rcs[3] = mta_db_list_problems(db, prob_cb, &n);
}

/*
 * A file whose NOT NULL constraints were taken out (damaged or hostile: it
 * still opens) holding NULL text, or a result status the schema never
 * allowed: every reader refuses it as damage, naming the column, where
 * they handed NULL to strcmp (the library's context and the tool crashed)
 * or read an unknown status as ok.
 */
TEST(db_null_text_and_unknown_status_are_damage)
{
	static const struct { const char *sql, *says; } cases[] = {
		{ "UPDATE devices SET arch = NULL", "a device's arch is NULL" },
		{ "UPDATE devices SET backend = NULL", "a device's backend is NULL" },
		{ "UPDATE winners SET op = NULL", "a winner's op is NULL" },
		{ "UPDATE variants SET spec = NULL", "variant spec is NULL" },
		{ "UPDATE results SET run_id = NULL", "a result's run id is NULL" },
		{ "UPDATE results SET status = 'bogus'", "status \"bogus\"" },
		{ "UPDATE problems SET key = NULL", "a problem's key is NULL" },
	};
	for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		const char *path = tmp_path("nulls.db");
		struct mta_db *db;
		int64_t dev, prob, var[1];
		unlink(path);
		REQUIRE(mta_db_open(path, 0, &db) == MTA_OK);
		REQUIRE(seed_db(db, 1, &dev, &prob, var) == MTA_OK);
		struct mta_db_result r = ok_result(dev, var[0], 128, 2.5);
		REQUIRE(mta_db_result_put(db, &r) == MTA_OK);
		struct mta_db_winner w = { .device_id = dev, .problem_id = prob, .variant_id = var[0],
					   .time_ms = 1, .T = 128, .B = 1 };
		REQUIRE(mta_db_winner_set(db, &w) == MTA_OK);
		mta_db_close(db);
		sqlite3 *h;
		REQUIRE(sqlite3_open(path, &h) == SQLITE_OK);
		char *err = NULL;
		/* the columns' NOT NULL (not "IS NOT NULL" in a CHECK), and status's CHECK */
		CHECKF(sqlite3_exec(h, "PRAGMA writable_schema = ON; UPDATE sqlite_schema SET sql = "
				    "replace(replace(replace(replace(sql, 'TEXT NOT NULL', 'TEXT'), "
				    "'INTEGER NOT NULL', 'INTEGER'), 'REAL NOT NULL', 'REAL'), "
				    "'CHECK (status IN', 'CHECK (1 OR status IN') WHERE type = 'table'; "
				    "PRAGMA writable_schema = OFF;", NULL, NULL, &err) == SQLITE_OK, "%s",
		       err);
		sqlite3_free(err);
		sqlite3_close(h);
		REQUIRE(sqlite3_open(path, &h) == SQLITE_OK);
		CHECKF(sqlite3_exec(h, cases[i].sql, NULL, NULL, &err) == SQLITE_OK, "%s: %s",
		       cases[i].sql, err);
		sqlite3_free(err);
		sqlite3_close(h);
		REQUIRE(mta_db_open(path, MTA_DB_READONLY, &db) == MTA_OK);
		int rcs[4];
		list_all(db, rcs, -1);
		int refused = 0;
		for (int k = 0; k < 4; k++)
			if (rcs[k] == MTA_EDB) {
				refused++;
				CHECK_STR_CONTAINS(mta_last_error(), "is damaged");
			} else {
				CHECKF(rcs[k] == MTA_OK, "%s: list %d returned %d", cases[i].sql, k,
				       rcs[k]);
			}
		CHECKF(refused >= 1, "%s: no reader refused it", cases[i].sql);
		/* the one that reads the column names it */
		int said = 0;
		for (int k = 0; k < 4 && !said; k++) {
			list_all(db, rcs, k);
			said = rcs[k] == MTA_EDB && strstr(mta_last_error(), cases[i].says) != NULL;
		}
		CHECKF(said, "%s: no reader said \"%s\"", cases[i].sql, cases[i].says);
		mta_db_close(db);
		/* the tool never crashes on it (a NULL arch crashed the context's
		 * creation: exit 139); what it reads of it it refuses by name */
		char *out = NULL;
		int st = mt_sh(&out, "%s best --db %s --problem h4kv4d32-both-f32 --seq 128 2>&1",
			       mt_bin(), path);
		CHECKF(st < 128 && (st == 0 || strstr(out, "is damaged")), "%s: best exited %d: %s",
		       cases[i].sql, st, out);
		if (i < 2)
			CHECKF(st != 0 && strstr(out, cases[i].says), "%s: best exited %d: %s",
			       cases[i].sql, st, out);
		free(out);
	}
}

/*
 * A source whose winner names a variant of another problem and op (which
 * mta_db_winner_set refuses; a damaged file can hold it) is refused by the
 * merge as damage, and nothing of it lands: it merged as a forward winner
 * running the backward variant's spec, moved to the variant's problem.
 */
TEST(db_merge_refuses_a_winner_of_another_problems_variant)
{
	const char *src = tmp_path("mix-src.db"), *dst = tmp_path("mix-dst.db");
	struct mta_db *db;
	int64_t dev, prob, var[1], prob2, bwd;
	unlink(src);
	unlink(dst);
	REQUIRE(mta_db_open(src, 0, &db) == MTA_OK);
	REQUIRE(seed_db(db, 1, &dev, &prob, var) == MTA_OK);
	REQUIRE(mta_db_problem_upsert(db, "h2kv2d8-both-f32", &prob2) == MTA_OK);
	REQUIRE(mta_db_variant_upsert_op(db, prob, "bwd", "cpu:v1,bq=8", "hash", &bwd) == MTA_OK);
	struct mta_db_winner w = { .device_id = dev, .problem_id = prob2, .variant_id = var[0],
				   .time_ms = 1, .T = 128, .B = 1 };
	CHECK(mta_db_winner_set(db, &w) != MTA_OK); /* the writer refuses it */
	mta_db_close(db);
	char sql[300];
	snprintf(sql, sizeof sql, "INSERT INTO winners (device_id, problem_id, op, t_bucket, "
		 "b_bucket, variant_id, time_ms, T, B, updated_at) VALUES (%lld, %lld, 'fwd', 128, "
		 "1, %lld, 1, 128, 1, 1)", (long long)dev, (long long)prob2, (long long)bwd);
	CHECK_EQ_INT(raw(src, sql), 0);
	CHECK_EQ_INT(raw(src, "SELECT count(*) FROM winners"), 1);
	REQUIRE(mta_db_open(dst, 0, &db) == MTA_OK);
	CHECK(mta_db_merge(db, src) == MTA_EDB);
	CHECK_STR_CONTAINS(mta_last_error(), "name a variant of another problem or op");
	mta_db_close(db);
	CHECK_EQ_INT(raw(dst, "SELECT count(*) FROM winners"), 0);
	CHECK_EQ_INT(raw(dst, "SELECT count(*) FROM variants"), 0);
}

/*
 * The database keeps kernels that are loaded and run. Its default folder
 * (~/.cache/mtatune) is made 0700, and refused when others may write it or
 * it is another user's; a dangling symbolic link is never opened for
 * writing (SQLite created the file it names: a planted link in a shared
 * folder wrote wherever it pointed).
 */
TEST(db_default_folder_private_and_no_creation_through_a_link)
{
	char home[600], dir[700], db[800], *out = NULL;
	snprintf(home, sizeof home, "%s/home-priv", mt_tmpdir());
	snprintf(dir, sizeof dir, "%s/.cache/mtatune", home);
	snprintf(db, sizeof db, "%s/mta.db", dir);
	CHECK(mt_sh(&out, "rm -rf %s && mkdir -p %s", home, home) == 0);
	free(out);
	setenv("HOME", home, 1);
	unsetenv("MTATUNE_DB");
	struct mta_db *h;
	REQUIRE(mta_db_open(NULL, 0, &h) == MTA_OK);
	mta_db_close(h);
	struct stat st;
	REQUIRE(stat(dir, &st) == 0);
	CHECKF((st.st_mode & 0777) == 0700, "the default folder was made %04o",
	       (unsigned)(st.st_mode & 0777));
	chmod(dir, 0757);
	char path[900];
	CHECK(mta_db_default_path(path, sizeof path) == MTA_EIO);
	CHECK_STR_CONTAINS(mta_last_error(), "writable by group or others");
	CHECK(mta_db_open(NULL, MTA_DB_READONLY, &h) == MTA_EIO);
	mta_context *c = NULL;
	CHECK(mta_context_create(&c, NULL, "cpu", 0) == MTA_EIO);
	CHECK(c == NULL);
	chmod(dir, 0755); /* readable by others: nobody can plant anything */
	CHECK(mta_db_default_path(path, sizeof path) == MTA_OK && !strcmp(path, db));
	/* a dangling link: refused for writing, its target not created */
	char link[900], target[900];
	snprintf(link, sizeof link, "%s/link.db", home);
	snprintf(target, sizeof target, "%s/victim.db", home);
	REQUIRE(symlink(target, link) == 0);
	CHECK(mta_db_open(link, 0, &h) == MTA_EIO);
	CHECK_STR_CONTAINS(mta_last_error(), "never created through a link");
	CHECK(access(target, F_OK) != 0);
	/* a link to an existing database is the caller's choice: it opens */
	REQUIRE(mta_db_open(target, 0, &h) == MTA_OK);
	mta_db_close(h);
	REQUIRE(mta_db_open(link, MTA_DB_READONLY, &h) == MTA_OK);
	mta_db_close(h);
}
