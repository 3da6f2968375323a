/*
 * test_sweep.c: `mtatune sweep` (tuner/sweep/sweep.c, tuner/cli/cmd_sweep.c) and
 * `mtatune db merge`: shards merged equal the whole sweep, a SIGKILLed
 * two-worker sweep resumes with every record exactly once, SIGTERM stops
 * cleanly with status 5, and the options are checked. Tiny problems, one
 * timed run per variant, so that all of it takes seconds.
 */
#define _GNU_SOURCE /* sched_setaffinity */
#include "tests/harness.h"
#include "tests/cpu_util.h"
#include "tests/fixtures.h"
#include "runtime/core/parallel.h"
#include "tuner/sweep/sweep.h"
#include "tuner/tune/search.h"
#include "tuner/tune/tune.h"

#include <sched.h>
#include <signal.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define KEY "h2kv1d8-pre2x3-both"
#define QUICK "--reps 1 --warmup 0 --top 1 --threads 1"

static void write_grid(const char *path, const char *text)
{
	FILE *f = fopen(path, "w");
	if (f) {
		fputs(text, f);
		fclose(f);
	}
}

#define RESULT_SET "SELECT p.key, v.spec, r.T, r.B, r.status FROM results r JOIN variants v " \
	"ON v.id = r.variant_id JOIN problems p ON p.id = v.problem_id ORDER BY 1, 2, 3, 4"

TEST(sweep_two_shards_merged_equal_the_unsharded_sweep)
{
	char dir[512], grid[600], *out = NULL;
	int rc;
	mt_kcache();
	snprintf(dir, sizeof dir, "%s", mt_tmpdir());
	snprintf(grid, sizeof grid, "%s/g.txt", dir);
	write_grid(grid, "problem " KEY "\nseq 32 48\n");
	const char *opts = "--strategy random --budget 3 --seed 7 " QUICK;

	rc = mt_sh(&out, "%s sweep --grid %s --db %s/all.db %s", mt_bin(), grid, dir, opts);
	CHECKF(rc == 0, "whole sweep exited %d: %s", rc, out);
	CHECK_STR_CONTAINS(out, "item 2/2 tuned");
	free(out);
	rc = mt_sh(&out, "%s sweep --grid %s --db %s/s1.db --shard 1/2 %s", mt_bin(), grid, dir, opts);
	CHECKF(rc == 0, "shard 1 exited %d: %s", rc, out);
	CHECK_STR_CONTAINS(out, "shard 1/2");
	free(out);
	/* shard 2 from Slurm's array variables */
	rc = mt_sh(&out, "SLURM_ARRAY_TASK_ID=2 SLURM_ARRAY_TASK_COUNT=2 SLURM_ARRAY_TASK_MIN=1 "
		   "%s sweep --grid %s --db %s/s2.db %s", mt_bin(), grid, dir, opts);
	CHECKF(rc == 0, "shard 2 exited %d: %s", rc, out);
	CHECK_STR_CONTAINS(out, "shard 2/2");
	free(out);

	char a[600], s1[600], s2[600], m[600];
	snprintf(a, sizeof a, "%s/all.db", dir);
	snprintf(s1, sizeof s1, "%s/s1.db", dir);
	snprintf(s2, sizeof s2, "%s/s2.db", dir);
	snprintf(m, sizeof m, "%s/merged.db", dir);
	/* item 0 (T=32) went to shard 1, item 1 (T=48) to shard 2 */
	char *t1 = mt_sql_rows(s1, "SELECT DISTINCT T, B FROM results ORDER BY 1, 2");
	char *t2 = mt_sql_rows(s2, "SELECT DISTINCT T, B FROM results ORDER BY 1, 2");
	CHECKF(!strcmp(t1, "32|1\n"), "shard 1 holds %s", t1);
	CHECKF(!strcmp(t2, "48|1\n"), "shard 2 holds %s", t2);
	free(t1);
	free(t2);

	rc = mt_sh(&out, "%s db merge %s %s %s", mt_bin(), m, s1, s2);
	CHECKF(rc == 0, "merge exited %d: %s", rc, out);
	CHECK_STR_CONTAINS(out, "6 results, 2 winners");
	free(out);
	char *want = mt_sql_rows(a, RESULT_SET), *got = mt_sql_rows(m, RESULT_SET);
	CHECK_EQ_INT(mt_db_count(a, "SELECT count(*) FROM results"), 6);
	CHECKF(!strcmp(want, got), "merged shards differ from the whole sweep:\n%s---\n%s", got, want);
	free(want);
	free(got);
	want = mt_sql_rows(a, "SELECT p.key, w.t_bucket FROM winners w JOIN problems p ON p.id = w.problem_id ORDER BY 1, 2");
	got = mt_sql_rows(m, "SELECT p.key, w.t_bucket FROM winners w JOIN problems p ON p.id = w.problem_id ORDER BY 1, 2");
	CHECKF(!strcmp(want, got) && want[0], "winners: %s vs %s", got, want);
	free(want);
	free(got);
	CHECK_EQ_INT(mt_db_count(m, "SELECT count(*) FROM devices"), 1);

	/* the merged database reports: one winners-table row per winner */
	rc = mt_sh(&out, "%s report --db %s --out %s/r.html && grep -c '<tr class=\"winner\"' %s/r.html",
		   mt_bin(), m, dir, dir);
	CHECKF(rc == 0, "report exited %d: %s", rc, out);
	CHECK_STR_CONTAINS(out, "\n2\n");
	free(out);
}

/*
 * op fwd bwd in a grid: each problem and size tuned for the forward and the
 * backward, results and winners of each op, the backward's checked on its
 * gradients; a rerun finds both items done.
 */
TEST(sweep_op_axis_tunes_forward_and_backward_items)
{
	char dir[512], grid[600], db[600], *out = NULL;
	int rc;
	mt_kcache();
	snprintf(dir, sizeof dir, "%s", mt_tmpdir());
	snprintf(grid, sizeof grid, "%s/g.txt", dir);
	snprintf(db, sizeof db, "%s/ops.db", dir);
	write_grid(grid, "problem " KEY "\nop fwd bwd\nseq 40\n");
	const char *opts = "--strategy random --budget 2 --seed 7 " QUICK;
	rc = mt_sh(&out, "%s sweep --grid %s --db %s %s", mt_bin(), grid, db, opts);
	CHECKF(rc == 0, "sweep exited %d: %s", rc, out);
	CHECK_STR_CONTAINS(out, "item 2/2 tuned " KEY "-f32 (backward) T=40");
	free(out);
	CHECK_EQ_INT(mt_db_count(db, "SELECT count(*) FROM results r JOIN variants v ON v.id = "
				 "r.variant_id WHERE v.op = 'fwd' AND r.status = 'ok'"), 2);
	CHECK_EQ_INT(mt_db_count(db, "SELECT count(*) FROM results r JOIN variants v ON v.id = "
				 "r.variant_id WHERE v.op = 'bwd' AND r.status = 'ok' AND "
				 "r.rel_err < 1e-4"), 2);
	CHECK_EQ_INT(mt_db_count(db, "SELECT count(*) FROM winners w JOIN variants v ON v.id = "
				 "w.variant_id WHERE v.op = w.op"), 2);
	CHECK_EQ_INT(mt_db_count(db, "SELECT count(DISTINCT op) FROM winners"), 2);
	rc = mt_sh(&out, "%s sweep --grid %s --db %s %s", mt_bin(), grid, db, opts);
	CHECKF(rc == 0, "rerun exited %d: %s", rc, out);
	CHECK_STR_CONTAINS(out, "item 2/2 done " KEY "-f32 (backward)");
	free(out);
	CHECK_EQ_INT(mt_db_count(db, "SELECT count(*) FROM results"), 4);
}

/* Start `mtatune sweep` in the background with output to log; its pid. */
static pid_t spawn_sweep(const char *grid, const char *db, const char *extra, const char *log)
{
	char cmd[2048];
	snprintf(cmd, sizeof cmd, "exec %s sweep --grid %s --db %s " QUICK " %s >%s 2>&1", mt_bin(),
		 grid, db, extra, log);
	pid_t pid = fork();
	if (pid == 0) {
		execl("/bin/sh", "sh", "-c", cmd, (char *)NULL);
		_exit(98);
	}
	return pid;
}

TEST(sweep_two_workers_killed_with_sigkill_resume_every_record_once)
{
	char grid[600], db[600], log[600], *out = NULL;
	mt_kcache();
	snprintf(grid, sizeof grid, "%s/g.txt", mt_tmpdir());
	snprintf(db, sizeof db, "%s/k.db", mt_tmpdir());
	snprintf(log, sizeof log, "%s/log", mt_tmpdir());
	write_grid(grid, "problem " KEY "\nseq 32 48\n"); /* 2 items x 8 variants */
	const char *opts = "--devices 0,1 --strategy random --budget 8 --seed 3";
	pid_t pid = spawn_sweep(grid, db, opts, log);
	long long have = 0, writers = 0;
	/* until both workers wrote (up to 2 minutes: compiles are slow on a loaded machine) */
	for (int i = 0; i < 6000 && (have < 4 || writers < 2); i++) {
		usleep(20000);
		have = mt_db_count(db, "SELECT count(*) FROM results");
		writers = mt_db_count(db, "SELECT count(DISTINCT run_id) FROM results");
	}
	kill(pid, SIGKILL);
	int st;
	waitpid(pid, &st, 0);
	CHECK(WIFSIGNALED(st));
	CHECKF(writers == 2, "%lld workers wrote results", writers);
	/* the workers died with it: nothing more arrives */
	usleep(300000);
	long long before = mt_db_count(db, "SELECT count(*) FROM results");
	usleep(300000);
	CHECK_EQ_INT(mt_db_count(db, "SELECT count(*) FROM results"), before);
	CHECKF(before >= 4 && before < 16, "%lld of 16 results before the kill", before);

	int rc = mt_sh(&out, "%s sweep --grid %s --db %s %s " QUICK, mt_bin(), grid, db, opts);
	CHECKF(rc == 0, "resume exited %d: %s", rc, out);
	CHECK_STR_CONTAINS(out, "items: 2 (");
	free(out);
	CHECK_EQ_INT(mt_db_count(db, "SELECT count(*) FROM results"), 16);
	CHECK_EQ_INT(mt_db_count(db, "SELECT count(*) FROM (SELECT DISTINCT variant_id, T, B FROM results)"), 16);
	CHECK_EQ_INT(mt_db_count(db, "SELECT count(*) FROM results WHERE status = 'ok'"), 16);
	CHECK_EQ_INT(mt_db_count(db, "SELECT count(*) FROM winners WHERE T = t_bucket OR T = 48"), 2);
	/* a third run finds everything done and measures nothing */
	rc = mt_sh(&out, "%s sweep --grid %s --db %s %s " QUICK, mt_bin(), grid, db, opts);
	CHECKF(rc == 0, "third run exited %d: %s", rc, out);
	CHECK_STR_CONTAINS(out, "(2 done before, 0 tuned now, 0 with no passing variant); variants measured: 0");
	free(out);
}

/* Seconds since t0. */
static double since(const struct timespec *t0)
{
	struct timespec t1;
	clock_gettime(CLOCK_MONOTONIC, &t1);
	return (double)(t1.tv_sec - t0->tv_sec) + 1e-9 * (double)(t1.tv_nsec - t0->tv_nsec);
}

/*
 * SIGKILL a two-worker sweep at a random point six times over, the database
 * checked after each: once the sweep has printed its header, after a random
 * part of half an item's time (measured on a whole sweep), so that each run
 * dies with work left; then a run to the end: every (device, variant, T, B)
 * exactly once, the same records and winner buckets as an uninterrupted sweep.
 */
TEST(sweep_sigkill_at_random_points_then_resume_loses_and_doubles_nothing)
{
	char grid[600], db[600], first[600], timed[600], log[600], *out = NULL;
	const char *opts = "--devices 0,1 --strategy random --budget 2 --seed 11";
	struct timespec t0;
	int killed = 0;
	mt_kcache();
	snprintf(grid, sizeof grid, "%s/g.txt", mt_tmpdir());
	snprintf(db, sizeof db, "%s/k.db", mt_tmpdir());
	snprintf(first, sizeof first, "%s/whole.db", mt_tmpdir());
	snprintf(timed, sizeof timed, "%s/timed.db", mt_tmpdir());
	snprintf(log, sizeof log, "%s/log", mt_tmpdir());
	write_grid(grid, "problem " KEY "\nseq 32..64+4\n"); /* 9 items x 2 variants */
	/* a whole sweep (compiles what the cache lacks), then one timed */
	int rc = mt_sh(&out, "%s sweep --grid %s --db %s %s " QUICK, mt_bin(), grid, first, opts);
	CHECKF(rc == 0, "whole sweep exited %d: %s", rc, out);
	free(out);
	clock_gettime(CLOCK_MONOTONIC, &t0);
	rc = mt_sh(&out, "%s sweep --grid %s --db %s %s " QUICK, mt_bin(), grid, timed, opts);
	double whole = since(&t0);
	free(out);
	char cmd[2048];
	snprintf(cmd, sizeof cmd, "exec %s sweep --grid %s --db %s " QUICK " %s", mt_bin(), grid, db,
		 opts);
	char *argv[] = { "/bin/sh", "-c", cmd, NULL };
	for (int i = 0; i < 6; i++) {
		int fd;
		double gap;
		pid_t pid = mt_spawn_pipe(argv, &fd);
		REQUIRE(pid > 0);
		mt_read_lines(fd, 1, &gap); /* the header: the workers are starting */
		usleep((useconds_t)(1e6 * whole / 9 * (mt_uniform() + 1) / 4));
		kill(pid, SIGKILL);
		close(fd);
		int st;
		waitpid(pid, &st, 0);
		killed += WIFSIGNALED(st);
		CHECKF(WIFSIGNALED(st) || (WIFEXITED(st) && WEXITSTATUS(st) == 0), "run %d: status %d",
		       i, st);
		char *ic = mt_sql_rows(db, "PRAGMA integrity_check");
		CHECKF(!strcmp(ic, "ok\n") || !ic[0], "after kill %d: %s", i, ic);
		free(ic);
	}
	CHECKF(killed >= 5, "only %d of 6 sweeps were killed before they finished", killed);
	usleep(200000); /* workers of the last killed sweep: gone */
	long long before = mt_db_count(db, "SELECT count(*) FROM results");
	rc = mt_sh(&out, "%s sweep --grid %s --db %s %s " QUICK, mt_bin(), grid, db, opts);
	CHECKF(rc == 0, "resume exited %d: %s", rc, out);
	CHECK_STR_CONTAINS(out, "items: 9 (");
	free(out);
	char *ic = mt_sql_rows(db, "PRAGMA integrity_check");
	CHECKF(!strcmp(ic, "ok\n"), "%s", ic);
	free(ic);
	CHECKF(before >= 0 && before <= 18, "%lld results before the resume", before);
	CHECK_EQ_INT(mt_db_count(db, "SELECT count(*) FROM results"), 18);
	CHECK_EQ_INT(mt_db_count(db, "SELECT count(*) FROM (SELECT DISTINCT device_id, variant_id, "
				     "T, B FROM results)"), 18);
	CHECK_EQ_INT(mt_db_count(db, "SELECT count(*) FROM results WHERE status = 'ok'"), 18);
	/* the same variants measured as in the uninterrupted sweep, the same winner buckets */
	static const char *const sets[] = { RESULT_SET, "SELECT t_bucket FROM winners ORDER BY 1" };
	for (int i = 0; i < 2; i++) {
		char *want = mt_sql_rows(first, sets[i]), *got = mt_sql_rows(db, sets[i]);
		CHECKF(want[0] && !strcmp(want, got), "resumed sweep holds\n%s---\nthe whole one\n%s",
		       got, want);
		free(want);
		free(got);
	}
}

TEST(sweep_sigterm_stops_after_the_record_in_hand_with_status_5)
{
	char grid[600], db[600], log[600], *out = NULL;
	mt_kcache();
	snprintf(grid, sizeof grid, "%s/g.txt", mt_tmpdir());
	snprintf(db, sizeof db, "%s/t.db", mt_tmpdir());
	snprintf(log, sizeof log, "%s/log", mt_tmpdir());
	write_grid(grid, "problem " KEY "\nseq 32 40 48\n");
	const char *opts = "--strategy random --budget 3 --seed 5";
	pid_t pid = spawn_sweep(grid, db, opts, log);
	long long have = 0;
	for (int i = 0; i < 600 && have < 2; i++) {
		usleep(20000);
		have = mt_db_count(db, "SELECT count(*) FROM results");
	}
	kill(pid, SIGTERM);
	int st;
	waitpid(pid, &st, 0);
	CHECKF(WIFEXITED(st) && WEXITSTATUS(st) == 5, "status %d", st);
	long long after = mt_db_count(db, "SELECT count(*) FROM results");
	CHECKF(after >= have && after <= have + 2 && after < 9, "%lld results at SIGTERM, %lld after",
	       have, after);
	CHECK_EQ_INT(mt_db_count(db, "SELECT count(*) FROM results WHERE status <> 'ok' OR median_ms IS NULL"), 0);
	FILE *f = fopen(log, "r");
	char text[8192] = "";
	if (f) {
		text[fread(text, 1, sizeof text - 1, f)] = 0;
		fclose(f);
	}
	CHECK_STR_CONTAINS(text, "stopped after");
	CHECK_STR_CONTAINS(text, "run the same command again to resume");

	int rc = mt_sh(&out, "%s sweep --grid %s --db %s %s " QUICK, mt_bin(), grid, db, opts);
	CHECKF(rc == 0, "resume exited %d: %s", rc, out);
	free(out);
	CHECK_EQ_INT(mt_db_count(db, "SELECT count(*) FROM results"), 9);
	CHECK_EQ_INT(mt_db_count(db, "SELECT count(*) FROM (SELECT DISTINCT variant_id, T, B FROM results)"), 9);
}

TEST(sweep_db_and_report_options_are_checked)
{
	static const struct {
		const char *args, *msg;
		int status;
	} bad[] = {
		{ "sweep", "--grid FILE is required", 2 },
		{ "sweep --grid %s/g.txt --shard 3/2", "--shard '3/2': expected K/N with 1 <= K <= N", 2 },
		{ "sweep --grid %s/g.txt --shard 0/2", "expected K/N", 2 },
		{ "sweep --grid %s/g.txt --devices 0,x", "--devices '0,x': expected device indices", 2 },
		{ "sweep --grid %s/g.txt --devices 1,1 --db %s/d.db", "device 1 is listed twice", 2 },
		{ "sweep --grid %s/g.txt --reps 0", "--reps '0' is not an integer in 1..", 2 },
		{ "sweep --grid %s/bad.txt", "bad.txt:2:5: expected a seq value", 3 },
		{ "sweep --grid %s/none.txt", "cannot open grid file", 3 },
		{ "sweep --grid %s/g.txt --strategy best", "--strategy 'best': expected auto, exhaustive or random", 2 },
		{ "db", "usage: mtatune db", 2 },
		{ "db frob", "'frob' is not a db sub-command", 2 },
		{ "db merge %s/out.db", "expected OUT and at least one IN", 2 },
		{ "db merge %s/out.db %s/missing.db", "does not exist", 3 },
		{ "db merge %s/out.db %s/g.txt", "not an mtatune database", 3 },
		{ "report --format xml", "report format 'xml': expected html, csv or json", 2 },
		{ "report --db %s/missing.db", "does not exist", 3 },
	};
	const char *dir = mt_tmpdir();
	char path[600];
	snprintf(path, sizeof path, "%s/g.txt", dir);
	write_grid(path, "problem " KEY "\nseq 32\n");
	snprintf(path, sizeof path, "%s/bad.txt", dir);
	write_grid(path, "problem " KEY "\nseq 3x\n");
	for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
		char args[1024], *out = NULL;
		snprintf(args, sizeof args, bad[i].args, dir, dir);
		int rc = mt_sh(&out, "%s %s", mt_bin(), args);
		CHECKF(rc == bad[i].status, "'%s' exited %d, expected %d: %s", args, rc,
		       bad[i].status, out);
		CHECK_STR_CONTAINS(out, bad[i].msg);
		free(out);
	}
	snprintf(path, sizeof path, "%s/out.db", dir);
	CHECKF(access(path, F_OK) != 0, "a refused merge created %s", path);
	char *out = NULL;
	int rc = mt_sh(&out, "SLURM_ARRAY_TASK_ID=9 SLURM_ARRAY_TASK_COUNT=2 %s sweep --grid %s/g.txt",
		       mt_bin(), dir);
	CHECK_EQ_INT(rc, 2);
	CHECK_STR_CONTAINS(out, "Slurm array task 9 (min 1, step 1) is not one of 2 tasks");
	free(out);
	rc = mt_sh(&out, "%s sweep --help && %s db merge --help && %s report --help", mt_bin(),
		   mt_bin(), mt_bin());
	CHECK_EQ_INT(rc, 0);
	CHECK_STR_CONTAINS(out, "seq 256..4096*2");
	CHECK_STR_CONTAINS(out, "winner is copied with the paired rounds");
	CHECK_STR_CONTAINS(out, "inline SVG, no scripts");
	free(out);
}

TEST(sweep_shards_partition_the_grid_and_slurm_variables_name_one)
{
	for (int n = 1; n <= 5; n++)
		for (size_t i = 0; i < 40; i++) {
			int owners = 0;
			for (int k = 0; k < n; k++)
				owners += mta_sweep_in_shard(i, k, n);
			CHECK_EQ_INT(owners, 1);
		}
	static const struct {
		const char *id, *count, *min, *step;
		int shard, n, rc;
	} env[] = {
		{ "3", "4", "1", NULL, 2, 4, MTA_OK },    /* --array=1-4 */
		{ "0", "4", "0", NULL, 0, 4, MTA_OK },    /* --array=0-3 */
		{ "5", "4", "1", "2", 2, 4, MTA_OK },     /* --array=1-7:2 */
		{ "2", "2", NULL, NULL, 1, 2, MTA_OK },   /* no MIN: 1-based */
		{ "5", "4", "1", NULL, 0, 0, MTA_EINVAL },
		{ "x", "4", "1", NULL, 0, 0, MTA_EINVAL },
		{ "2", NULL, NULL, NULL, 0, 0, MTA_EINVAL },
	};
	for (size_t i = 0; i < sizeof env / sizeof env[0]; i++) {
		int shard = -1, n = -1, found = -1;
		env[i].id ? setenv("SLURM_ARRAY_TASK_ID", env[i].id, 1) : unsetenv("SLURM_ARRAY_TASK_ID");
		env[i].count ? setenv("SLURM_ARRAY_TASK_COUNT", env[i].count, 1)
			     : unsetenv("SLURM_ARRAY_TASK_COUNT");
		env[i].min ? setenv("SLURM_ARRAY_TASK_MIN", env[i].min, 1) : unsetenv("SLURM_ARRAY_TASK_MIN");
		env[i].step ? setenv("SLURM_ARRAY_TASK_STEP", env[i].step, 1)
			    : unsetenv("SLURM_ARRAY_TASK_STEP");
		int rc = mta_sweep_slurm_shard(&shard, &n, &found);
		CHECKF(rc == env[i].rc, "case %zu: rc %d: %s", i, rc, mta_last_error());
		if (rc == MTA_OK) {
			CHECK_EQ_INT(found, 1);
			CHECK_EQ_INT(shard, env[i].shard);
			CHECK_EQ_INT(n, env[i].n);
		}
	}
	unsetenv("SLURM_ARRAY_TASK_ID");
	unsetenv("SLURM_ARRAY_TASK_COUNT");
	int shard, n, found = -1;
	CHECK(mta_sweep_slurm_shard(&shard, &n, &found) == MTA_OK && found == 0);
}

TEST(sweep_and_tune_stop_when_the_flag_is_raised)
{
	char db[600];
	struct mta_grid g;
	struct mta_sweep_opts o = { 0 };
	struct mta_sweep_summary s;
	volatile sig_atomic_t stop = 1;
	mt_kcache();
	snprintf(db, sizeof db, "%s/s.db", mt_tmpdir());
	REQUIRE(mta_grid_parse("problem " KEY "\nseq 32", strlen("problem " KEY "\nseq 32"), "g",
			      &g) == MTA_OK);
	mta_tune_defaults(&o.tune);
	o.tune.db_path = db;
	o.stop = &stop;
	/* what the item plans to screen: the whole space, or a third of it when it is large */
	struct mta_problem kp;
	struct mta_variant *space = NULL;
	size_t nspace = 0;
	REQUIRE(mta_problem_from_key(KEY, &kp) == MTA_OK);
	REQUIRE(mta_variant_space(&kp, MTA_BACKEND_CPU, &space, &nspace) == MTA_OK);
	free(space);
	size_t plan = mta_search_plan(nspace > MTA_SEARCH_AUTO_ABOVE ? MTA_TUNE_AUTO :
				      MTA_TUNE_EXHAUSTIVE, nspace, 0);
	char want[80];
	snprintf(want, sizeof want, "stopped after 0 of %zu variants", plan);
	CHECK(mta_sweep(&g, &o, &s) == MTA_EINTR);
	CHECK_STR_CONTAINS(mta_last_error(), "stopped after 0 of 1 items");
	CHECKF(s.stopped && s.measured == 0 && s.records_total == (long long)plan, "stopped %d, "
	       "measured %lld, records_total %lld, plan %zu", s.stopped, (long long)s.measured,
	       (long long)s.records_total, plan);
	/* the tuner itself: nothing measured, a message saying where it stopped */
	struct mta_problem p;
	struct mta_tune_summary ts;
	REQUIRE(mta_problem_from_key(KEY, &p) == MTA_OK);
	o.tune.stop = &stop;
	o.tune.T = 32;
	CHECK(mta_tune(&p, &o.tune, &ts) == MTA_EINTR);
	CHECK_STR_CONTAINS(mta_last_error(), want);
	CHECK_EQ_INT(ts.tried, 0);
	/* a random sweep without a seed could sample differently in each shard */
	o.tune.strategy = MTA_TUNE_RANDOM;
	o.tune.budget = 3;
	stop = 0;
	CHECK(mta_sweep(&g, &o, &s) == MTA_EINVAL);
	CHECK_STR_CONTAINS(mta_last_error(), "needs a seed");
	mta_grid_free(&g);
}

/*
 * "All cores" means the cores this process may run on: in a child pinned to
 * one core (as taskset or a Slurm allocation would), one core, and the
 * device identity and a sweep's worker threads follow.
 */
TEST(cpu_count_follows_the_affinity_mask)
{
	pid_t pid = fork();
	REQUIRE(pid >= 0);
	if (pid == 0) {
		cpu_set_t one;
		CPU_ZERO(&one);
		CPU_SET(sched_getcpu() >= 0 ? sched_getcpu() : 0, &one);
		if (sched_setaffinity(0, sizeof one, &one))
			_exit(2);
		_exit(mta_cpu_count() == 1 ? 0 : 1);
	}
	int st;
	REQUIRE(waitpid(pid, &st, 0) == pid);
	CHECKF(WIFEXITED(st) && WEXITSTATUS(st) == 0, "pinned child: status %d", st);
	CHECK(mta_cpu_count() >= 1);
	char *out = NULL;
	int rc = mt_sh(&out, "taskset -c 0 %s devices", mt_bin());
	CHECKF(rc == 0, "exit %d: %s", rc, out);
	CHECK_STR_CONTAINS(out, ", 1 cores,");
	free(out);
}
