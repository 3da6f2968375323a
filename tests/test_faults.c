/*
 * test_faults.c: the tool under faults it does not cause: a missing or
 * failing C compiler, generated kernels that do not compile, crash, hang or
 * compute wrong values (injected with the test-only MTATUNE_TEST_FAULT, see
 * gen/fault.h),
 * a database that is locked, read-only, damaged, truncated or newer, a full
 * disk (RLIMIT_FSIZE: writes fail with EFBIG), and SIGKILL at random points
 * of tuning runs. Each must end in a clear message and the documented exit
 * status, with the database consistent (and untouched where the tool must
 * not write), and a resumed run must lose and duplicate nothing.
 */
#include "tests/harness.h"
#include "runtime/ccompile.h"
#include "runtime/core/hash.h"
#include "gen/cpu/cgen.h"
#include "tests/fixtures.h"
#include "tuner/tune/tune.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <sqlite3.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define TINY "h2kv1d8-both-f32"
/* a quick tune of TINY: a seeded random sample of 4 variants (the default among them) */
#define QUICK "--problem " TINY " --seq 8 --reps 1 --warmup 0 --top 1 --strategy random " \
	      "--budget 4 --seed 5 --threads 1 -q"

/* Digest of a file's bytes (to show it was not modified); "" if unreadable. */
static void digest(const char *path, char out[17])
{
	FILE *f = fopen(path, "rb");
	static char buf[1 << 20];
	size_t n = f ? fread(buf, 1, sizeof buf, f) : 0;
	if (f)
		fclose(f);
	if (!f)
		out[0] = 0;
	else
		mta_hash_hex(buf, n, out);
}

static int integrity_ok(const char *db)
{
	sqlite3 *h;
	sqlite3_stmt *st;
	int ok = 0;
	if (sqlite3_open_v2(db, &h, SQLITE_OPEN_READONLY, NULL) == SQLITE_OK &&
	    sqlite3_prepare_v2(h, "PRAGMA integrity_check", -1, &st, NULL) == SQLITE_OK) {
		ok = sqlite3_step(st) == SQLITE_ROW &&
		     !strcmp((const char *)sqlite3_column_text(st, 0), "ok");
		sqlite3_finalize(st);
	}
	sqlite3_close(h);
	return ok;
}

/* mtatune processes whose environment holds MT_FAULT_MARK=mark (left-over children). */
static int marked_processes(const char *mark)
{
	char want[128], path[300], buf[65536];
	int n = 0;
	snprintf(want, sizeof want, "MT_FAULT_MARK=%s", mark);
	DIR *d = opendir("/proc");
	struct dirent *e;
	while (d && (e = readdir(d))) {
		if (e->d_name[0] < '1' || e->d_name[0] > '9')
			continue;
		snprintf(path, sizeof path, "/proc/%s/comm", e->d_name);
		int fd = open(path, O_RDONLY);
		ssize_t r = fd < 0 ? -1 : read(fd, buf, sizeof buf - 1);
		if (fd >= 0)
			close(fd);
		if (r < 8 || strncmp(buf, "mtatune\n", 8))
			continue;
		snprintf(path, sizeof path, "/proc/%s/environ", e->d_name);
		fd = open(path, O_RDONLY);
		if (fd < 0)
			continue;
		r = read(fd, buf, sizeof buf - 1);
		close(fd);
		for (ssize_t i = 0; i < r; i += (ssize_t)strlen(buf + i) + 1) {
			buf[r] = 0;
			if (!strcmp(buf + i, want))
				n++;
		}
	}
	if (d)
		closedir(d);
	return n;
}

/* A good database of TINY's quick tune at tmp/name (kernels from the shared cache). */
static void good_db(const char *path)
{
	char *out = NULL;
	int rc = mt_sh(&out, "MTATUNE_CACHE=build/kcache %s tune " QUICK " --db '%s'", mt_bin(), path);
	CHECKF(rc == 0, "making %s: exit %d\n%s", path, rc, out);
	free(out);
}

/*
 * A compiler that refuses every source (false: status 1, no log): compile
 * failures of the variants, recorded as such. A compiler that is missing is
 * the machine's failure: fault_environment_failures_are_measured_again.
 */
TEST(fault_compiler_missing_or_failing)
{
	static const char *const cc[] = { "false" };
	static const char *const why[] = { "false failed (status 1)" };
	const char *small = mt_small_case("in");
	for (int i = 0; i < 1; i++) {
		char db[600], *out = NULL;
		snprintf(db, sizeof db, "%s/cc%d.db", mt_tmpdir(), i);
		/* a fresh cache, so the compiler must run */
		int rc = mt_sh(&out, "MTATUNE_CACHE='%s/cache%d' MTATUNE_CC='%s' %s tune " QUICK
			       " --db '%s'", mt_tmpdir(), i, cc[i], mt_bin(), db);
		CHECKF(rc == 1, "tune with cc %s: exit %d\n%s", cc[i], rc, out);
		CHECK_STR_CONTAINS(out, "none of the 4 variants compiled, so nothing was tuned");
		CHECK_STR_CONTAINS(out, why[i]);
		free(out);
		CHECK(integrity_ok(db));
		CHECK_EQ_INT(mt_db_count(db, "SELECT count(*) FROM results WHERE status = "
				 "'compile_failed'"), 4);
		rc = mt_sh(&out, "MTATUNE_CACHE='%s/cache%d' MTATUNE_CC='%s' %s run --backend cpu "
			   "--inputs '%s' --out '%s/o%d.npy'", mt_tmpdir(), i, cc[i], mt_bin(), small,
			   mt_tmpdir(), i);
		CHECKF(rc == 1, "run --backend cpu with cc %s: exit %d\n%s", cc[i], rc, out);
		CHECK_STR_CONTAINS(out, why[i]);
		free(out);
	}
}

/*
 * The variants of the sample QUICK tunes other than the default (3 of 4),
 * computed the way the tuner does, formatted into spec; how many.
 */
static size_t quick_sample(char spec[3][MTA_SPEC_MAX])
{
	struct mta_problem p;
	struct mta_tune_opts o;
	struct mta_variant *vs = NULL, def;
	size_t n = 0, nbad = 0;
	if (mta_problem_from_key(TINY, &p) != MTA_OK)
		return 0;
	mta_tune_defaults(&o);
	o.strategy = MTA_TUNE_RANDOM;
	o.budget = 4;
	o.seed = 5;
	if (mta_tune_candidates(&p, &o, &vs, &n) != MTA_OK || n != 4 ||
	    mta_variant_default(&p, MTA_BACKEND_CPU, &def) != MTA_OK) {
		free(vs);
		return 0;
	}
	for (size_t i = 0; i < n && nbad < 3; i++)
		if (memcmp(&vs[i], &def, sizeof def))
			mta_variant_format(&vs[i], spec[nbad++], MTA_SPEC_MAX);
	free(vs);
	return nbad;
}

/*
 * The non-default variants of QUICK's sample, each in turn turned into a
 * faulty kernel (or a source that does not compile): recorded as such, and a
 * healthy winner named all the same.
 */
TEST(fault_kernels_that_crash_hang_or_compute_wrong_values)
{
	static const struct { const char *kind, *status, *msg; } t[] = {
		{ "crash", "crashed", "crashed: killed by signal" },
		{ "hang", "timeout", "timed out after 3.0 s (killed)" },
		{ "wrong", "verify_failed", "exceeds 1e-05" },
		{ "syntax", "compile_failed", "test-only fault injected by MTATUNE_TEST_FAULT" },
	};
	char bad_spec[3][MTA_SPEC_MAX];
	REQUIRE(quick_sample(bad_spec) == 3);
	for (size_t i = 0; i < sizeof t / sizeof t[0]; i++) {
		char db[600], mark[64], *out = NULL, sql[400];
		snprintf(db, sizeof db, "%s/%s.db", mt_tmpdir(), t[i].kind);
		snprintf(mark, sizeof mark, "%llx-%zu", mt_seed(), i);
		/* the whole spec as the marker: only that variant is faulty */
		const char *bad = bad_spec[i % 3];
		/* the hang takes its whole time limit; the sound variants get room on a loaded machine */
		int rc = mt_sh(&out, "MT_FAULT_MARK=%s MTATUNE_TEST_FAULT='%s@%s' MTATUNE_CACHE="
			       "build/kcache %s tune " QUICK " --timeout %d --db '%s'", mark, t[i].kind,
			       bad, mt_bin(), strcmp(t[i].kind, "hang") ? 60 : 3, db);
		CHECKF(rc == 0, "%s: exit %d\n%s", t[i].kind, rc, out);
		CHECK_STR_CONTAINS(out, "winner: cpu:"); /* the default, or a sound variant */
		const char *win = out ? strstr(out, "winner:") : NULL;
		CHECKF(win && !strstr(win, bad), "%s: the faulty %s won", t[i].kind, bad);
		CHECK_STR_CONTAINS(out, "verified:");
		free(out);
		snprintf(sql, sizeof sql, "SELECT count(*) FROM results JOIN variants ON "
			 "variants.id = variant_id WHERE spec = '%s' AND status = '%s' AND "
			 "error LIKE '%%%s%%'", bad, t[i].status, t[i].msg);
		CHECKF(mt_db_count(db, sql) == 1, "%s: no '%s' result with '%s' for %s", t[i].kind,
		       t[i].status, t[i].msg, bad);
		CHECK_EQ_INT(mt_db_count(db, "SELECT count(*) FROM results WHERE status = 'ok'"), 3);
		CHECK_EQ_INT(marked_processes(mark), 0); /* no orphan left running */
	}
}

/* SIGKILL the tuner while its measuring child hangs: the child goes too. */
TEST(fault_killed_tuner_leaves_no_hung_kernel_behind)
{
	char mark[64], log[600], db[600];
	snprintf(mark, sizeof mark, "%llx-kill", mt_seed());
	snprintf(log, sizeof log, "%s/log", mt_tmpdir());
	snprintf(db, sizeof db, "%s/h.db", mt_tmpdir());
	pid_t pid = fork();
	if (pid == 0) {
		setenv("MT_FAULT_MARK", mark, 1);
		setenv("MTATUNE_TEST_FAULT", "hang", 1);
		setenv("MTATUNE_CACHE", "build/kcache", 1);
		if (!freopen(log, "w", stdout) || !freopen(log, "a", stderr))
			_exit(99);
		execl(mt_bin(), "mtatune", "tune", "--problem", TINY, "--seq", "8", "--variant",
		      "cpu:v1,bq=16,bk=64,hpb=1,vec=8,thr=0,algo=0", "--timeout", "100", "--db", db,
		      (char *)NULL);
		_exit(98);
	}
	int n = 0;
	for (int i = 0; i < 400 && n < 2; i++) { /* the tuner and its child */
		usleep(25000);
		n = marked_processes(mark);
	}
	CHECKF(n == 2, "%d marked processes", n);
	kill(pid, SIGKILL);
	waitpid(pid, NULL, 0);
	for (int i = 0; i < 100 && (n = marked_processes(mark)); i++)
		usleep(20000);
	CHECKF(n == 0, "%d processes left after the tuner was killed", n);
}

TEST(fault_database_damaged_truncated_newer_or_foreign)
{
	char good[600];
	snprintf(good, sizeof good, "%s/good.db", mt_tmpdir());
	good_db(good);
	struct stat st;
	REQUIRE(stat(good, &st) == 0 && st.st_size > 8192);
	/* ours but damaged or newer: 1; not a database at all: 3 (README, "Exit statuses") */
	static const struct { const char *name, *msg; int code; } t[] = {
		{ "trunc", "is damaged (SQLite: database disk image is malformed)", 1 },
		{ "garbage", "is damaged", 1 },
		{ "newer", "has schema version 99; this mtatune understands up to 4; upgrade", 1 },
		{ "text", "is not an mtatune database: it is not an SQLite", 3 },
	};
	static const char *const cmds[] = { "tune " QUICK, "list results", "best", "list devices" };
	for (size_t i = 0; i < sizeof t / sizeof t[0]; i++) {
		char db[700], h0[17], h1[17];
		snprintf(db, sizeof db, "%s/%s.db", mt_tmpdir(), t[i].name);
		char *out = NULL;
		if (!strcmp(t[i].name, "trunc"))
			mt_sh(&out, "head -c %lld '%s' > '%s'", (long long)st.st_size / 2, good, db);
		else if (!strcmp(t[i].name, "garbage")) /* every page after the first overwritten */
			mt_sh(&out, "cp '%s' '%s' && yes garbage | head -c %lld | dd of='%s' bs=4096 "
			      "seek=1 conv=notrunc 2>/dev/null", good, db, (long long)st.st_size - 4096, db);
		else if (!strcmp(t[i].name, "text"))
			mt_sh(&out, "echo 'a text file' > '%s'", db);
		else {
			sqlite3 *h;
			mt_sh(&out, "cp '%s' '%s'", good, db);
			REQUIRE(sqlite3_open(db, &h) == SQLITE_OK);
			CHECK(sqlite3_exec(h, "PRAGMA user_version = 99", NULL, NULL, NULL) == SQLITE_OK);
			sqlite3_close(h);
		}
		free(out);
		digest(db, h0);
		for (size_t c = 0; c < sizeof cmds / sizeof cmds[0]; c++) {
			int rc = mt_sh(&out, "MTATUNE_CACHE=build/kcache %s %s --db '%s'", mt_bin(),
				       cmds[c], db);
			CHECKF(rc == t[i].code, "%s, %s: exit %d\n%s", t[i].name, cmds[c], rc, out);
			CHECK_STR_CONTAINS(out, t[i].msg);
			CHECK_STR_CONTAINS(out, db);
			free(out);
		}
		digest(db, h1);
		CHECKF(!strcmp(h0, h1), "%s: the file was modified", t[i].name);
	}
}

TEST(fault_database_locked_by_another_writer)
{
	char db[600], *out = NULL;
	snprintf(db, sizeof db, "%s/l.db", mt_tmpdir());
	good_db(db);
	int ready[2];
	REQUIRE(pipe(ready) == 0);
	pid_t pid = fork();
	if (pid == 0) { /* the other writer: holds the write lock until killed */
		sqlite3 *h;
		if (sqlite3_open(db, &h) != SQLITE_OK ||
		    sqlite3_exec(h, "BEGIN IMMEDIATE", NULL, NULL, NULL) != SQLITE_OK)
			_exit(1);
		if (write(ready[1], "x", 1) != 1)
			_exit(1);
		pause();
		_exit(0);
	}
	char c;
	REQUIRE(read(ready[0], &c, 1) == 1);
	/* a new T: tune must write, and gives up after the (shortened) busy timeout */
	int rc = mt_sh(&out, "MTATUNE_DB_BUSY_MS=300 MTATUNE_CACHE=build/kcache %s tune " QUICK
		       " --seq 16 --db '%s'", mt_bin(), db);
	CHECKF(rc == 1, "tune on a locked database: exit %d\n%s", rc, out);
	CHECK_STR_CONTAINS(out, "another process has held the write lock for over 0.3 s");
	free(out);
	/* readers are not blocked by a writer (WAL) */
	rc = mt_sh(&out, "MTATUNE_DB_BUSY_MS=300 %s list results --db '%s'", mt_bin(), db);
	CHECKF(rc == 0, "list on a locked database: exit %d\n%s", rc, out);
	free(out);
	kill(pid, SIGKILL);
	waitpid(pid, NULL, 0);
	CHECK(integrity_ok(db));
	rc = mt_sh(&out, "MTATUNE_CACHE=build/kcache %s tune " QUICK " --seq 16 --db '%s'", mt_bin(), db);
	CHECKF(rc == 0, "tune once the lock is gone: exit %d\n%s", rc, out);
	free(out);
	CHECK_EQ_INT(mt_db_count(db, "SELECT count(*) FROM results WHERE T = 16"), 4);
}

/*
 * Read-only: as root the permission bits do not stop a writer, so the CLI
 * runs as user nobody (setpriv) on a 0444 file in a folder it cannot write.
 * Not root: the same without setpriv.
 */
TEST(fault_database_read_only)
{
	char db[600], *out = NULL, h0[17], h1[17];
	const char *as = geteuid() == 0 ? "setpriv --reuid=65534 --regid=65534 --clear-groups" : "";
	snprintf(db, sizeof db, "%s/r.db", mt_tmpdir());
	good_db(db);
	REQUIRE(chmod(mt_tmpdir(), 0755) == 0 && chmod(db, 0444) == 0);
	digest(db, h0);
	int rc = mt_sh(&out, "MTATUNE_CACHE='%s/nocache' %s %s tune " QUICK " --seq 16 --db '%s'",
		       mt_tmpdir(), as, mt_bin(), db);
	CHECKF(rc == 1, "tune: exit %d\n%s", rc, out);
	CHECK_STR_CONTAINS(out, "the file is read-only");
	free(out);
	rc = mt_sh(&out, "%s %s best --db '%s'", as, mt_bin(), db);
	CHECKF(rc == 0, "best: exit %d\n%s", rc, out); /* reading needs no write access */
	CHECK_STR_CONTAINS(out, TINY);
	free(out);
	digest(db, h1);
	CHECK(!strcmp(h0, h1));
	CHECK(integrity_ok(db));
}

/* Disk full: the file size limit stops the database's writes part way (EFBIG). */
TEST(fault_disk_full_while_recording_results)
{
	char db[600], *out = NULL;
	snprintf(db, sizeof db, "%s/f.db", mt_tmpdir());
	good_db(db);
	/* 32 KiB per file: the write-ahead log fills after a few results at the new T */
	int rc = mt_sh(&out, "trap '' XFSZ; ulimit -f 64; MTATUNE_CACHE=build/kcache %s tune " QUICK
		       " --seq 16 --db '%s'", mt_bin(), db);
	CHECKF(rc == 1, "tune with a full disk: exit %d\n%s", rc, out);
	CHECK_STR_CONTAINS(out, "cannot commit: writing to the disk failed (disk I/O error");
	CHECK_STR_CONTAINS(out, "the disk may be full or a file size limit reached");
	free(out);
	CHECK(integrity_ok(db));
	long long kept = mt_db_count(db, "SELECT count(*) FROM results WHERE T = 16");
	CHECKF(kept >= 0 && kept < 4, "%lld results at T=16 after the failure", kept);
	rc = mt_sh(&out, "MTATUNE_CACHE=build/kcache %s tune " QUICK " --seq 16 --db '%s'", mt_bin(), db);
	CHECKF(rc == 0, "resume: exit %d\n%s", rc, out);
	free(out);
	CHECK(integrity_ok(db));
	CHECK_EQ_INT(mt_db_count(db, "SELECT count(*) FROM results WHERE T = 16"), 4);
	CHECK_EQ_INT(mt_db_count(db, "SELECT count(*) FROM results WHERE T = 8"), 4);
}

/*
 * SIGKILL at random points of 12 tuning runs, then one to the end: nothing
 * lost or doubled. Each kill comes after a random number of the run's output
 * lines (its header, one line per variant screened), fewer than it prints
 * in all, plus a random part of the gap between two lines: so
 * it lands at a random point while the run is still going.
 */
TEST(fault_sigkill_at_random_points_then_resume)
{
	char db[600], *out = NULL;
	int mid = 0;
	snprintf(db, sizeof db, "%s/k.db", mt_tmpdir());
	good_db(db); /* compiles nothing new later: every kill lands in tuning or recording */
	char *argv[] = { (char *)mt_bin(), "tune", "--problem", TINY, "--seq", "24", "--reps", "1",
			 "--warmup", "0", "--top", "2", "--strategy", "random", "--budget", "4",
			 "--seed", "5", "--threads", "1", "--db", db, NULL };
	setenv("MTATUNE_CACHE", "build/kcache", 1);
	for (int i = 0; i < 12; i++) {
		int fd;
		double gap;
		pid_t pid = mt_spawn_pipe(argv, &fd);
		REQUIRE(pid > 0);
		/* a run prints the header and 4 tune lines, then times the best against the
		 * default in paired rounds (the longest part) before it prints the rest: a
		 * kill after 1-5 lines lands in the screening or in the rounds */
		int r = 1 + (int)((mt_uniform() + 1) / 2 * 5) % 5;
		mt_read_lines(fd, r, &gap);
		usleep((useconds_t)(1e6 * gap * (mt_uniform() + 1) / 4));
		kill(pid, SIGKILL);
		close(fd);
		int st;
		waitpid(pid, &st, 0);
		mid += WIFSIGNALED(st);
		CHECKF(integrity_ok(db), "after kill %d", i);
		CHECKF(!WIFEXITED(st) || WEXITSTATUS(st) == 0, "run %d exited %d", i, WEXITSTATUS(st));
	}
	CHECKF(mid >= 10, "only %d of 12 runs were killed before they finished", mid);
	long long before = mt_db_count(db, "SELECT count(*) FROM results WHERE T = 24");
	int rc = mt_sh(&out, "MTATUNE_CACHE=build/kcache %s tune " QUICK " --seq 24 --top 2 --db '%s'",
		       mt_bin(), db);
	CHECKF(rc == 0, "resume: exit %d\n%s", rc, out);
	char expect[64];
	snprintf(expect, sizeof expect, "%lld already recorded", before);
	CHECK_STR_CONTAINS(out, expect);
	free(out);
	CHECK(integrity_ok(db));
	CHECK_EQ_INT(mt_db_count(db, "SELECT count(*) FROM results WHERE T = 24"), 4);
	CHECK_EQ_INT(mt_db_count(db, "SELECT count(*) FROM (SELECT DISTINCT device_id, variant_id, "
				 "T, B FROM results)"), 8);
	CHECK_EQ_INT(mt_db_count(db, "SELECT count(*) FROM winners"), 2);
}

/* Run SQL on db with plain SQLite (the CHECK constraints can be turned off first). */
static int raw_sql(const char *db, const char *sql)
{
	sqlite3 *h;
	int rc = sqlite3_open(db, &h);
	if (rc == SQLITE_OK)
		rc = sqlite3_exec(h, sql, NULL, NULL, NULL);
	sqlite3_close(h);
	return rc;
}

/* cmd with @ replaced by dir and # by 'db', into out[n]. */
static void expand_cmd(const char *cmd, const char *dir, const char *db, char *out, size_t n)
{
	size_t k = 0;
	for (const char *s = cmd; *s && k < n - 1300; s++)
		if (*s == '@')
			k += (size_t)snprintf(out + k, n - k, "%s", dir);
		else if (*s == '#')
			k += (size_t)snprintf(out + k, n - k, "'%s'", db);
		else
			out[k++] = *s;
	out[k] = 0;
}

/*
 * Issue 18: a read-only copy of a WAL database (no -shm beside it, in a
 * folder the reader cannot write) could not be read at all: SQLite needs
 * to create the -shm. Every reading command reads it now (opened immutable
 * when nothing else can write it); one whose -wal still holds changes is
 * refused with a message saying how to make a copy that can be read.
 */
TEST(fault_database_read_only_wal_copy_is_readable_by_every_reader)
{
	char good[600], ro[600], db[700], outdir[600], *out = NULL;
	const char *as = geteuid() == 0 ? "setpriv --reuid=65534 --regid=65534 --clear-groups" : "";
	snprintf(good, sizeof good, "%s/good.db", mt_tmpdir());
	good_db(good);
	REQUIRE(raw_sql(good, "PRAGMA wal_checkpoint(TRUNCATE)") == SQLITE_OK);
	snprintf(ro, sizeof ro, "%s/ro", mt_tmpdir());
	snprintf(db, sizeof db, "%s/copy.db", ro);
	snprintf(outdir, sizeof outdir, "%s/out", mt_tmpdir());
	REQUIRE(mkdir(ro, 0755) == 0 && mkdir(outdir, 0777) == 0);
	mt_small_case("out/in");
	REQUIRE(chmod(mt_tmpdir(), 0755) == 0);
	REQUIRE(mt_sh(&out, "cp '%s' '%s' && chmod 444 '%s' && chmod 555 '%s' && chmod -R a+rwX '%s'",
		      good, db, db, ro, outdir) == 0);
	free(out);
	char h0[17], h1[17];
	digest(db, h0);
	static const char *const cmds[] = {
		"best --db #", "best --problem " TINY " --seq 8 --db #", "list devices --db #",
		"list problems --db #", "list results --db #", "report --format csv --db #",
		"report --format json --db #", "report --out @/r.html --db #",
		"export --out @/lib --db #", "db merge @/merged.db #",
		"run --backend cpu --inputs @/in --out @/o.npy --db #",
	};
	for (size_t i = 0; i < sizeof cmds / sizeof cmds[0]; i++) {
		char cmd[2000];
		expand_cmd(cmds[i], outdir, db, cmd, sizeof cmd);
		int rc = mt_sh(&out, "MTATUNE_CACHE='%s/cache' %s %s %s", outdir, as, mt_bin(), cmd);
		CHECKF(rc == 0, "%s on a read-only WAL copy: exit %d\n%s", cmds[i], rc, out);
		free(out);
	}
	digest(db, h1);
	CHECK(!strcmp(h0, h1));
	CHECK_EQ_INT(mt_db_count(db, "SELECT count(*) FROM results"), 4);
	/* a -wal that still holds changes cannot be read without its -shm: refused, saying so */
	char ro2[600], db2[700];
	snprintf(ro2, sizeof ro2, "%s/ro2", mt_tmpdir());
	snprintf(db2, sizeof db2, "%s/copy.db", ro2);
	REQUIRE(mkdir(ro2, 0755) == 0);
	pid_t pid = fork();
	if (pid == 0) { /* a writer with changes still in its -wal, copied as it runs */
		sqlite3 *h;
		if (sqlite3_open(good, &h) || sqlite3_exec(h, "PRAGMA wal_autocheckpoint = 0; "
			"UPDATE results SET run_id = 'x'", NULL, NULL, NULL))
			_exit(1);
		char cmd[3000];
		snprintf(cmd, sizeof cmd, "cp '%s' '%s' && cp '%s-wal' '%s-wal'", good, db2, good, db2);
		_exit(system(cmd) == 0 ? 0 : 1);
	}
	int st;
	waitpid(pid, &st, 0);
	REQUIRE(WIFEXITED(st) && WEXITSTATUS(st) == 0);
	REQUIRE(mt_sh(&out, "chmod 444 '%s' '%s-wal' && chmod 555 '%s'", db2, db2, ro2) == 0);
	free(out);
	int rc = mt_sh(&out, "%s %s best --db '%s'", as, mt_bin(), db2);
	CHECKF(rc == 1, "best on a copy with a -wal: exit %d\n%s", rc, out);
	CHECK_STR_CONTAINS(out, "-wal");
	CHECK_STR_CONTAINS(out, "wal_checkpoint");
	free(out);
}

/*
 * Issue 18: a query that never ends hung the command for ever: a winners
 * table replaced by a recursive view, or a trigger that recurses. A view
 * (or anything but a table) in place of one of the schema's tables is
 * refused when the file is opened; any statement that runs past the time
 * limit ($MTATUNE_DB_QUERY_MS here) is interrupted.
 */
TEST(fault_database_query_that_never_ends_is_stopped)
{
	char db[600], other[600], *out = NULL;
	snprintf(db, sizeof db, "%s/v.db", mt_tmpdir());
	good_db(db);
	REQUIRE(raw_sql(db, "PRAGMA foreign_keys = OFF; DROP TABLE winners; CREATE VIEW winners AS "
			"WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c) SELECT x AS id, "
			"1 AS device_id, 1 AS problem_id, 1 AS t_bucket, 1 AS variant_id, 1.0 AS "
			"time_ms, 1 AS T, 1 AS B, 0.0 AS updated_at FROM c WHERE x < 0") == SQLITE_OK);
	static const char *const cmds[] = { "best", "list problems", "report --format csv",
					    "tune " QUICK };
	for (size_t i = 0; i < sizeof cmds / sizeof cmds[0]; i++) {
		int rc = mt_sh(&out, "MTATUNE_CACHE=build/kcache timeout 60 %s %s --db '%s'",
			       mt_bin(), cmds[i], db);
		CHECKF(rc == 1, "%s on a recursive view: exit %d\n%s", cmds[i], rc, out);
		CHECK_STR_CONTAINS(out, "winners is a view, not a table");
		free(out);
	}
	/* a trigger that recurses for ever when a result is written (merge updates them) */
	snprintf(db, sizeof db, "%s/t.db", mt_tmpdir());
	snprintf(other, sizeof other, "%s/o.db", mt_tmpdir());
	good_db(db);
	good_db(other);
	REQUIRE(raw_sql(db, "CREATE TRIGGER spin AFTER UPDATE ON results BEGIN SELECT count(*) "
			"FROM (WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c) "
			"SELECT x FROM c WHERE x < 0); END;") == SQLITE_OK);
	REQUIRE(raw_sql(other, "UPDATE results SET recorded_at = recorded_at + 100") == SQLITE_OK);
	struct timespec t0, t1;
	clock_gettime(CLOCK_MONOTONIC, &t0);
	int rc = mt_sh(&out, "MTATUNE_DB_QUERY_MS=500 timeout 60 %s db merge '%s' '%s'", mt_bin(),
		       db, other);
	clock_gettime(CLOCK_MONOTONIC, &t1);
	double s = (double)(t1.tv_sec - t0.tv_sec) + 1e-9 * (double)(t1.tv_nsec - t0.tv_nsec);
	CHECKF(rc == 1, "merge into a database whose trigger never ends: exit %d\n%s", rc, out);
	CHECK_STR_CONTAINS(out, "ran for over 0.5 s");
	CHECKF(s < 30, "it took %.1f s", s);
	free(out);
	CHECK(integrity_ok(db));
}

/*
 * Issue 18: a winner's T bucket of 0 or below (a hostile file without the
 * schema's CHECK) was taken as bucket 1 and its kernel picked; such a row,
 * or a bucket that is not a power of two, is refused as damage.
 */
TEST(fault_database_bad_t_bucket_is_refused)
{
	char db[600], *out = NULL;
	static const char *const bad[] = { "0", "-4", "3" };
	static const char *const cmds[] = {
		"best --problem " TINY " --seq 1 --db #", "best --db #", "export --out @/lib --db #",
		"run --backend cpu --inputs @/in --out @/o.npy --db #",
	};
	char in[700];
	snprintf(in, sizeof in, "%s/in", mt_tmpdir());
	REQUIRE(mkdir(in, 0755) == 0);
	mt_put_npy(in, "q", 4, (int64_t)1, (int64_t)8, (int64_t)2, (int64_t)8); /* TINY at T=8 */
	mt_put_npy(in, "k", 4, (int64_t)1, (int64_t)8, (int64_t)1, (int64_t)8);
	mt_put_npy(in, "v", 4, (int64_t)1, (int64_t)8, (int64_t)1, (int64_t)8);
	for (int i = 0; i < 3; i++) {
		char sql[200];
		snprintf(db, sizeof db, "%s/b%d.db", mt_tmpdir(), i);
		good_db(db);
		snprintf(sql, sizeof sql, "PRAGMA ignore_check_constraints = ON; UPDATE winners SET "
			 "t_bucket = %s", bad[i]);
		REQUIRE(raw_sql(db, sql) == SQLITE_OK);
		for (size_t c = 0; c < sizeof cmds / sizeof cmds[0]; c++) {
			char cmd[2000], want[64];
			expand_cmd(cmds[c], mt_tmpdir(), db, cmd, sizeof cmd);
			int rc = mt_sh(&out, "MTATUNE_CACHE=build/kcache %s %s", mt_bin(), cmd);
			CHECKF(rc == 1, "%s with T bucket %s: exit %d\n%s", cmds[c], bad[i], rc, out);
			snprintf(want, sizeof want, "T bucket %s", bad[i]);
			CHECK_STR_CONTAINS(out, want);
			free(out);
		}
	}
}

/*
 * Issue 18: SIGTERM to a sweep whose measuring child hangs waited for the
 * child's time limit (--timeout, 120 s by default) before stopping. The stop
 * now reaches the wait itself: the child is killed at once, its variant is
 * not recorded (it is measured on the next run), and the sweep exits 5
 * within a second.
 */
TEST(fault_sigterm_to_a_sweep_in_a_hanging_kernel_stops_at_once)
{
	char mark[64], log[600], db[600], grid[600];
	snprintf(mark, sizeof mark, "%llx-term", mt_seed());
	snprintf(log, sizeof log, "%s/log", mt_tmpdir());
	snprintf(db, sizeof db, "%s/s.db", mt_tmpdir());
	snprintf(grid, sizeof grid, "%s/g.txt", mt_tmpdir());
	FILE *f = fopen(grid, "w");
	REQUIRE(f);
	fputs("problem " TINY "\nseq 8\n", f);
	fclose(f);
	/*
	 * The hanging kernels compiled first (a compile is not stopped at once, and
	 * on a loaded machine it could still run when the signal comes): a short
	 * run with a 1 s limit leaves them in the kernel cache.
	 */
	char *warm = NULL;
	int wrc = mt_sh(&warm, "MTATUNE_TEST_FAULT=hang MTATUNE_CACHE=build/kcache %s sweep --grid %s "
			"--db %s/warm.db --strategy random --budget 2 --seed 3 --reps 1 --warmup 0 "
			"--threads 1 --timeout 1 -q", mt_bin(), grid, mt_tmpdir());
	CHECKF(wrc == 4, "warm-up sweep: exit %d (expected 4: no variant passed): %s", wrc, warm);
	free(warm);
	pid_t pid = fork();
	if (pid == 0) {
		setenv("MT_FAULT_MARK", mark, 1);
		setenv("MTATUNE_TEST_FAULT", "hang", 1);
		setenv("MTATUNE_CACHE", "build/kcache", 1);
		if (!freopen(log, "w", stdout) || !freopen(log, "a", stderr))
			_exit(99);
		execl(mt_bin(), "mtatune", "sweep", "--grid", grid, "--db", db, "--strategy", "random",
		      "--budget", "2", "--seed", "3", "--reps", "1", "--warmup", "0", "--threads", "1",
		      "--timeout", "100", "-q", (char *)NULL);
		_exit(98);
	}
	int n = 0;
	for (int i = 0; i < 1000 && n < 3; i++) { /* the sweep, its worker, the hanging child */
		usleep(20000);
		n = marked_processes(mark);
	}
	REQUIRE(n >= 3);
	usleep(200000);
	struct timespec t0, t1;
	clock_gettime(CLOCK_MONOTONIC, &t0);
	kill(pid, SIGTERM);
	int st;
	waitpid(pid, &st, 0);
	clock_gettime(CLOCK_MONOTONIC, &t1);
	double s = (double)(t1.tv_sec - t0.tv_sec) + 1e-9 * (double)(t1.tv_nsec - t0.tv_nsec);
	CHECKF(WIFEXITED(st) && WEXITSTATUS(st) == 5, "status %d", st);
	CHECKF(s < 1.0, "the sweep took %.2f s to stop", s);
	for (int i = 0; i < 50 && (n = marked_processes(mark)); i++)
		usleep(20000);
	CHECKF(n == 0, "%d processes left after the sweep stopped", n);
	CHECK_EQ_INT(mt_db_count(db, "SELECT count(*) FROM results"), 0);
}

/*
 * Issue 18: failures of the machine were recorded as the kernel's: a
 * compiler that is missing, or that fails for lack of disk space, gave
 * compile_failed, and a check that ran out of memory gave error; a resumed
 * run skips both for ever. They are recorded as env_error now, the tune
 * says so (exit 1), and a rerun on a sound machine measures them again.
 */
TEST(fault_environment_failures_are_measured_again)
{
	char fullcc[600], *out = NULL;
	snprintf(fullcc, sizeof fullcc, "%s/fullcc", mt_tmpdir());
	FILE *f = fopen(fullcc, "w");
	REQUIRE(f);
	/* the system compiler on a disk with room for 1 KiB per file */
	fputs("#!/bin/sh\ntrap '' XFSZ\ncase \"$1\" in --version) exec cc --version;; esac\n"
	      "ulimit -f 1\nexec cc \"$@\"\n", f);
	fclose(f);
	REQUIRE(chmod(fullcc, 0755) == 0);
	static const struct { const char *env, *why; } t[] = {
		{ "MTATUNE_CC=/nonexistent/cc", "cannot run '/nonexistent/cc'" },
		{ "MTATUNE_CC=@/fullcc", "File too large" },
	};
	for (size_t i = 0; i < sizeof t / sizeof t[0]; i++) {
		char db[600], env[800];
		snprintf(db, sizeof db, "%s/e%zu.db", mt_tmpdir(), i);
		snprintf(env, sizeof env, "%s", t[i].env);
		char *at = strchr(env, '@');
		if (at)
			snprintf(at, sizeof env - (size_t)(at - env), "%s/fullcc", mt_tmpdir());
		int rc = mt_sh(&out, "MTATUNE_CACHE='%s/cache%zu' %s %s tune " QUICK " --db '%s'",
			       mt_tmpdir(), i, env, mt_bin(), db);
		CHECKF(rc == 1, "tune with %s: exit %d\n%s", env, rc, out);
		CHECK_STR_CONTAINS(out, t[i].why);
		CHECK_STR_CONTAINS(out, "env_error");
		free(out);
		CHECK_EQ_INT(mt_db_count(db, "SELECT count(*) FROM results WHERE status = 'env_error'"), 4);
		CHECK_EQ_INT(mt_db_count(db, "SELECT count(*) FROM variants WHERE compile_status = "
					 "'failed'"), 0);
		/* on a sound machine the same command measures them */
		rc = mt_sh(&out, "MTATUNE_CACHE=build/kcache %s tune " QUICK " --db '%s'", mt_bin(), db);
		CHECKF(rc == 0, "rerun: exit %d\n%s", rc, out);
		CHECK_STR_CONTAINS(out, ": 4 measured now, 0 already recorded, 4 ok, 0 failed");
		free(out);
		CHECK_EQ_INT(mt_db_count(db, "SELECT count(*) FROM results WHERE status = 'ok'"), 4);
	}
	/* a check that runs out of memory (the kernel's workspace), in one variant of the sample */
	char db[600], sample[3][MTA_SPEC_MAX];
	REQUIRE(quick_sample(sample) == 3);
	snprintf(db, sizeof db, "%s/m.db", mt_tmpdir());
	int rc = mt_sh(&out, "MTATUNE_TEST_FAULT='nomem@%s' MTATUNE_CACHE=build/kcache %s tune "
		       QUICK " --db '%s'", sample[0], mt_bin(), db);
	CHECKF(rc == 1, "tune with a check out of memory: exit %d\n%s", rc, out);
	CHECK_STR_CONTAINS(out, "out of memory");
	free(out);
	long long env = mt_db_count(db, "SELECT count(*) FROM results WHERE status = 'env_error' "
				    "AND error LIKE '%out of memory%'");
	CHECKF(env >= 1 && env < 4, "%lld env_error results", env);
	CHECK_EQ_INT(mt_db_count(db, "SELECT count(*) FROM results WHERE status = 'error'"), 0);
	rc = mt_sh(&out, "MTATUNE_CACHE=build/kcache %s tune " QUICK " --db '%s'", mt_bin(), db);
	CHECKF(rc == 0, "rerun: exit %d\n%s", rc, out);
	free(out);
	CHECK_EQ_INT(mt_db_count(db, "SELECT count(*) FROM results WHERE status = 'ok'"), 4);
}
