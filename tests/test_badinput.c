/*
 * test_badinput.c: wrong input from users, command by command: options,
 * missing files, wrong shapes and dtypes, non-finite values. Each case has
 * its exact message (a substring) and exit status (README, "Exit statuses").
 * Non-finite values in any input file are refused at load time with the file,
 * the element's index and its value (README, "Non-finite inputs").
 */
#include "tests/harness.h"
#include "tests/fixtures.h"
#include "tuner/io/npy.h"

#include <signal.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/wait.h>
#include <unistd.h>

struct row {
	const char *args;
	int code;
	const char *msg;
};

/* s with each @ replaced by the test's folder, into out[n]. */
static void expand(const char *s, char *out, size_t n)
{
	size_t k = 0;
	for (; *s && k < n - 600; s++) {
		if (*s == '@')
			k += (size_t)snprintf(out + k, n - k, "%s", mt_tmpdir());
		else
			out[k++] = *s;
	}
	out[k] = 0;
}

/*
 * Run each row as `mtatune ARGS` with MTATUNE_DB in the test's folder; @ in
 * ARGS and in the expected message stands for that folder.
 */
static void table(const struct row *t, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		char args[2048], msg[2048], *out = NULL;
		expand(t[i].args, args, sizeof args);
		expand(t[i].msg, msg, sizeof msg);
		int code = mt_sh(&out, "MTATUNE_DB='%s/default.db' %s %s", mt_tmpdir(), mt_bin(), args);
		CHECKF(code == t[i].code, "mtatune %s: exit %d, expected %d:\n%s", args, code,
		       t[i].code, out);
		CHECK_STR_CONTAINS(out, msg);
		free(out);
	}
}

TEST(badinput_tune_options)
{
	static const struct row t[] = {
		{ "tune --seq 0", 2, "--seq '0' is not an integer in 1..16777216" },
		{ "tune --seq x", 2, "--seq 'x' is not an integer" },
		{ "tune --batch 0", 2, "--batch '0' is not an integer" },
		{ "tune --reps 1e3", 2, "--reps '1e3' is not an integer" },
		{ "tune --warmup -1", 2, "--warmup '-1' is not an integer in 0.." },
		{ "tune --seed 99999999999", 2, "--seed '99999999999' is not an integer" },
		{ "tune --timeout -1", 2, "--timeout '-1' is not a positive number of seconds" },
		{ "tune --timeout nan", 2, "--timeout 'nan' is not a positive number" },
		{ "tune --strategy foo", 2, "--strategy 'foo': expected auto, exhaustive or random" },
		{ "tune --backend gpu", 2, "--backend: unknown backend 'gpu' (expected cpu, cuda or cuda-emu)" },
		{ "tune --problem bad", 2, "--problem: problem key 'bad': unknown part 'bad'" },
		{ "tune --problem h4kv4d8-both-s0.00001-f32", 2, "out of the supported range" },
		{ "tune --variant cpu:v9", 2, "--variant: cpu kernel family v9 does not exist" },
		{ "tune --variant cpu:v1,bq=16,bq=8", 2, "--variant: " },
		{ "tune extra", 2, "unexpected argument 'extra'" },
		{ "tune --frob", 2, "unknown option '--frob'" },
		{ "tune --seq", 2, "option '--seq' needs an argument" },
		{ "tune --problem h2kv1d8-both-f32 --db @/no/such/dir/x.db", 1, "/no/such/dir/x.db" },
	};
	table(t, sizeof t / sizeof t[0]);
}

TEST(badinput_best_list_gen_options)
{
	static const struct row t[] = {
		{ "best --seq 10", 2, "--seq needs --problem" },
		{ "best --seq 0 --problem h4kv4d8-both-f32", 2, "--seq '0' is not a positive integer" },
		{ "best --problem nope", 2, "--problem: problem key 'nope': unknown part" },
		{ "best --db @/none.db", 3, "/none.db does not exist" },
		{ "best --backend x", 2, "--backend: unknown backend 'x'" },
		{ "best --frob", 2, "unknown option '--frob'" },
		{ "best extra", 2, "unexpected argument 'extra'" },
		{ "list bogus", 2, "unknown listing 'bogus' (expected devices, problems or results)" },
		{ "list --db @/none.db", 3, "/none.db does not exist" },
		{ "list a b", 2, "unexpected argument 'b'" },
		{ "list --problem", 2, "option '--problem' needs an argument" },
		{ "gen", 2, "--problem KEY is required" },
		{ "gen --problem x", 2, "--problem: problem key 'x': unknown part 'x'" },
		{ "gen --problem h4kv4d8-both-f32 --variant cpu:v1,zz=1", 2, "unknown cpu tunable 'zz'" },
		{ "gen --problem h4kv4d8-both-f32 --variant cuda:v1,hpb=3", 2, "variant does not fit the problem" },
		{ "gen --backend tpu", 2, "--backend: unknown backend 'tpu'" },
		{ "gen x", 2, "unexpected argument 'x'" },
	};
	table(t, sizeof t / sizeof t[0]);
}

/* q.npy of the small case [1,5,4,8] with value x at flat index at. */
static void put_q(const char *dir, int dtype, size_t at, float x)
{
	float f[160];
	uint16_t h[160];
	int64_t shape[4] = { 1, 5, 4, 8 };
	char path[700];
	for (size_t i = 0; i < 160; i++) {
		f[i] = (float)mt_uniform();
		h[i] = mta_f32_to_f16(f[i]);
	}
	f[at] = x;
	h[at] = mta_f32_to_f16(x);
	snprintf(path, sizeof path, "%s/q.npy", dir);
	CHECK(mta_npy_write(path, dtype, 4, shape, dtype == MTA_F16 ? (void *)h : (void *)f) == MTA_OK);
}

TEST(badinput_run_dtypes_and_non_finite_values)
{
	static const struct { int dtype; size_t at; float x; const char *args, *msg; int code; } t[] = {
		{ MTA_F32, 0, NAN, "", "q.npy: element [0,0,0,0] is nan; inputs must be finite", 3 },
		{ MTA_F32, 159, INFINITY, "", "q.npy: element [0,4,3,7] is inf", 3 },
		{ MTA_F32, 37, -INFINITY, "--dtype bf16", "q.npy: element [0,1,0,5] is -inf", 3 },
		{ MTA_F16, 8, INFINITY, "", "q.npy: element [0,0,1,0] is inf", 3 },
		{ MTA_F32, 9, 1e6f, "--dtype f16", "q.npy: element [0,0,1,1] overflows f16 (rounds to inf)", 3 },
		{ MTA_F32, 9, 1e6f, "", "h4kv2d8-both-f32", 0 }, /* large but finite: fine in f32 */
	};
	for (size_t i = 0; i < sizeof t / sizeof t[0]; i++) {
		char sub[16], *out = NULL;
		snprintf(sub, sizeof sub, "nf%zu", i);
		const char *dir = mt_small_case(sub);
		put_q(dir, t[i].dtype, t[i].at, t[i].x);
		int code = mt_sh(&out, "%s run --inputs '%s' --out '%s/o.npy' %s", mt_bin(), dir, dir,
				 t[i].args);
		CHECKF(code == t[i].code, "case %zu: exit %d, expected %d\n%s", i, code, t[i].code, out);
		CHECK_STR_CONTAINS(out, t[i].msg);
		free(out);
	}
	/* a weight: NaN in gn_weight.npy */
	const char *dir = mt_small_case("w");
	char path[700], *out = NULL;
	float g[8] = { 1, 1, 1, NAN, 1, 1, 1, 1 };
	int64_t gs[1] = { 8 };
	snprintf(path, sizeof path, "%s/gn_weight.npy", dir);
	REQUIRE(mta_npy_write(path, MTA_F32, 1, gs, g) == MTA_OK);
	int code = mt_sh(&out, "%s run --inputs '%s' --out '%s/o.npy'", mt_bin(), dir, dir);
	CHECK_EQ_INT(code, 3);
	CHECK_STR_CONTAINS(out, "gn_weight.npy: element [3] is nan");
	free(out);
	/* an integer array and a big-endian one: not a supported dtype */
	static const char *const descr[] = { "<i4", ">f4" };
	for (int k = 0; k < 2; k++) {
		dir = mt_small_case(k ? "be" : "i4");
		snprintf(path, sizeof path, "%s/k.npy", dir);
		FILE *f = fopen(path, "wb");
		REQUIRE(f);
		char hdr[128];
		int hl = snprintf(hdr, sizeof hdr, "{'descr': '%s', 'fortran_order': False, "
				  "'shape': (1, 5, 2, 8), }", descr[k]);
		while ((10 + hl + 1) % 64)
			hdr[hl++] = ' ';
		hdr[hl++] = '\n';
		unsigned char pre[10] = { 0x93, 'N', 'U', 'M', 'P', 'Y', 1, 0, (unsigned char)hl, 0 };
		static const char zeros[320];
		fwrite(pre, 1, 10, f);
		fwrite(hdr, 1, (size_t)hl, f);
		fwrite(zeros, 1, sizeof zeros, f);
		fclose(f);
		code = mt_sh(&out, "%s run --inputs '%s' --out '%s/o.npy'", mt_bin(), dir, dir);
		CHECKF(code == 3, "%s: exit %d\n%s", descr[k], code, out);
		CHECK_STR_CONTAINS(out, "k.npy");
		CHECK_STR_CONTAINS(out, descr[k]);
		free(out);
	}
}

/* A grid, a malformed grid, a text file and a database (one CUDA winner) in the test's folder. */
static void inputs_for_tables(void)
{
	static const char *const files[][2] = {
		{ "g.txt", "problem h2kv1d8\nseq 8\n" },
		{ "bad.txt", "problem h2kv1d8\nbatch 1 2 zz\n" },
		{ "t.txt", "a text file\n" },
	};
	char path[700], db[700];
	for (size_t i = 0; i < 3; i++) {
		snprintf(path, sizeof path, "%s/%s", mt_tmpdir(), files[i][0]);
		FILE *f = fopen(path, "w");
		REQUIRE(f);
		fputs(files[i][1], f);
		fclose(f);
	}
	snprintf(db, sizeof db, "%s/w.db", mt_tmpdir());
	mt_cuda_winner_db(db, "h2kv1d8-both-f32");
}

TEST(badinput_sweep_and_db_options_and_files)
{
	static const struct row t[] = {
		{ "sweep --grid @/g.txt --shard x", 2, "sweep: --shard 'x': expected K/N with 1 <= K <= N" },
		{ "sweep --grid @/g.txt --shard 1/0", 2, "--shard '1/0': expected K/N" },
		{ "sweep --grid @/g.txt --shard 2/1", 2, "--shard '2/1': expected K/N" },
		{ "sweep --grid @/g.txt --devices ''", 2, "--devices '': expected device indices 0..4095" },
		{ "sweep --grid @/g.txt --devices 0,4096", 2, "--devices '0,4096': expected device" },
		{ "sweep --grid @/g.txt --backend tpu", 2, "--backend: unknown backend 'tpu'" },
		{ "sweep --grid @/bad.txt", 3, "bad.txt:2:11: expected a batch value: N, A..B" },
		{ "sweep --grid @/t.txt", 3, "t.txt:1:1: 'a' is not a grid keyword" },
		{ "sweep --grid @", 3, "sweep: cannot read grid file @" }, /* a folder */
		{ "sweep --grid @/g.txt extra", 2, "unexpected argument 'extra'" },
		{ "sweep --grid @/g.txt --frob", 2, "sweep: unknown option '--frob'" },
		{ "sweep --grid @/g.txt --budget", 2, "option '--budget' needs an argument" },
		{ "sweep --grid @/g.txt --timeout 0", 2, "--timeout '0' is not a positive number" },
		{ "sweep --grid @/g.txt --seed -1", 2, "--seed '-1' is not an integer in 0..2147483647" },
		{ "db merge @/w.db @/w.db", 2, "db merge: @/w.db is both OUT and an input" },
		{ "db merge @/o.db @/t.txt", 3, "input @/t.txt is not an mtatune database: it is not an SQLite" },
		{ "db merge @/o.db @/none.db", 3, "input database @/none.db does not exist" },
		{ "db merge --frob", 2, "db merge: unknown option '--frob'" },
		{ "db merge", 2, "expected OUT and at least one IN database" },
	};
	inputs_for_tables();
	table(t, sizeof t / sizeof t[0]);
}

TEST(badinput_report_export_devices_options_and_files)
{
	static const struct row t[] = {
		{ "report --db @/w.db --out @/no/dir/r.html", 1, "report: cannot write @/no/dir/r.html" },
		{ "report --db @/w.db --format csv --out @/no/r.csv", 1, "cannot write @/no/r.csv" },
		{ "report --db @/t.txt", 3, "report: @/t.txt is not an mtatune database" },
		{ "report --format", 2, "option '--format' needs an argument" },
		{ "report x", 2, "unexpected argument 'x'" },
		{ "report --frob", 2, "report: unknown option '--frob'" },
		{ "export --db @/w.db", 2, "export: --out DIR is required" },
		{ "export --db @/none.db --out @/e", 3, "mtatune export: database @/none.db does not exist" },
		{ "export --db @/t.txt --out @/e", 3, "export: @/t.txt is not an mtatune database" },
		{ "export --db @/w.db --out @/e --problem nope", 2,
		  "mtatune export: --problem nope: problem key 'nope': unknown part" },
		{ "export --db @/w.db --out @/e --arch sm_9x", 2,
		  "mtatune export: --arch sm_9x: expected a CUDA architecture such as sm_80" },
		{ "export --db @/w.db --out @/e --name a-b", 2, "library name 'a-b': expected 1 to 64" },
		{ "export --db @/w.db --out @/e extra", 2, "unexpected argument 'extra'" },
		{ "export --db @/w.db --out @/e --frob", 2, "export: unknown option '--frob'" },
		{ "devices --frob", 2, "devices: unknown option '--frob'" },
		{ "devices extra", 2, "devices: unexpected argument 'extra'" },
	};
	inputs_for_tables();
	table(t, sizeof t / sizeof t[0]);
}

/*
 * Issue 18: a FIFO (or a device) named as an input blocked the command
 * until a writer came; it is refused at once as not a regular file. An
 * inputs folder's names are the user's bytes: the note listing the ignored
 * ones quotes control characters escaped, never raw to the terminal.
 */
TEST(badinput_special_files_as_inputs_never_block)
{
	char fifo[700], *out = NULL;
	snprintf(fifo, sizeof fifo, "%s/fifo", mt_tmpdir());
	REQUIRE(mkfifo(fifo, 0600) == 0);
	const char *dir = mt_small_case("f");
	char q[700];
	snprintf(q, sizeof q, "%s/q.npy", dir);
	REQUIRE(unlink(q) == 0 && mkfifo(q, 0600) == 0);
	int code = mt_sh(&out, "timeout 20 %s run --inputs '%s' --out '%s/o.npy'", mt_bin(), dir,
			 mt_tmpdir());
	CHECKF(code == 3, "run with a FIFO q.npy: exit %d\n%s", code, out);
	CHECK_STR_CONTAINS(out, "q.npy: not a regular file");
	free(out);
	const char *good = mt_small_case("g");
	code = mt_sh(&out, "timeout 20 %s run --inputs '%s' --out '%s/o.npy' --expected '%s'",
		     mt_bin(), good, mt_tmpdir(), fifo);
	CHECKF(code == 3, "run --expected FIFO: exit %d\n%s", code, out);
	CHECK_STR_CONTAINS(out, "not a regular file");
	free(out);
	code = mt_sh(&out, "timeout 20 %s sweep --grid '%s' --db '%s/s.db'", mt_bin(), fifo,
		     mt_tmpdir());
	CHECKF(code == 3, "sweep --grid FIFO: exit %d\n%s", code, out);
	CHECK_STR_CONTAINS(out, "not a regular file");
	free(out);
	code = mt_sh(&out, "timeout 20 %s sweep --grid /dev/zero --db '%s/s.db'", mt_bin(),
		     mt_tmpdir());
	CHECKF(code == 3, "sweep --grid /dev/zero: exit %d\n%s", code, out);
	free(out);
	/* a note about an ignored file named with an escape sequence and a newline */
	char odd[800];
	snprintf(odd, sizeof odd, "%s/\x1b]0;pwned\a\nx.npy", good);
	FILE *f = fopen(odd, "w");
	REQUIRE(f);
	fclose(f);
	code = mt_sh(&out, "%s run --inputs '%s' --out '%s/o.npy'", mt_bin(), good, mt_tmpdir());
	CHECKF(code == 0, "run: exit %d\n%s", code, out);
	CHECK_STR_CONTAINS(out, "\\x1b]0;pwned\\x07\\nx.npy");
	CHECK(out && !strchr(out, '\x1b') && !strchr(out, '\a'));
	free(out);
}

/*
 * Start argv with stdout and stderr to log, holding it before exec until
 * plant(pid, ctx) has run: a test can put a file at a name that holds the
 * pid before the command runs. Returns the exit status (128 + signal).
 */
static int run_planted(char *const argv[], const char *log, void (*plant)(pid_t, void *),
		       void *ctx)
{
	int go[2];
	if (pipe(go))
		return -1;
	pid_t pid = fork();
	if (pid == 0) {
		char c;
		close(go[1]);
		if (read(go[0], &c, 1) != 1 || !freopen(log, "w", stdout) ||
		    !freopen(log, "a", stderr))
			_exit(99);
		execv(argv[0], argv);
		_exit(98);
	}
	close(go[0]);
	plant(pid, ctx);
	if (write(go[1], "x", 1) != 1)
		kill(pid, SIGKILL);
	close(go[1]);
	int st = 0;
	waitpid(pid, &st, 0);
	return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
}

struct plant_ctx {
	const char *out, *victim;
};

/* Symlinks to the victim at every temporary name the output's writer once used. */
static void plant_links(pid_t pid, void *ctx)
{
	const struct plant_ctx *c = ctx;
	char name[900];
	snprintf(name, sizeof name, "%s.tmp%d", c->out, (int)pid); /* report's old name */
	if (symlink(c->victim, name))
		mt_fail(__FILE__, __LINE__, "symlink %s", name);
	for (int i = 0; i < 4; i++) { /* npy's: <path>.tmp-<pid>-<serial> */
		snprintf(name, sizeof name, "%s.tmp-%d-%d", c->out, (int)pid, i);
		if (symlink(c->victim, name))
			mt_fail(__FILE__, __LINE__, "symlink %s", name);
	}
}

/* The file is still what it was: kind (S_IFMT bits) and, for regular files, its text. */
static void check_untouched(const char *path, mode_t kind, const char *text)
{
	struct stat st;
	CHECKF(lstat(path, &st) == 0 && (st.st_mode & S_IFMT) == kind, "%s was replaced", path);
	if (text) {
		char buf[256] = "";
		FILE *f = fopen(path, "r");
		size_t n = f ? fread(buf, 1, sizeof buf - 1, f) : 0;
		if (f)
			fclose(f);
		buf[n] = 0;
		CHECKF(!strcmp(buf, text), "%s was written: '%s'", path, buf);
	}
}

/*
 * Issue 18: `run --out` and `report --out` renamed their temporary over
 * whatever the name held (as root, `--out /dev/null` replaced the device
 * node) and report's temporary (path.tmp<pid>) followed a symlink planted
 * there. An existing output that is not a regular file is refused (exit 1),
 * and temporaries are created O_EXCL|O_NOFOLLOW under unpredictable names.
 */
TEST(badinput_outputs_refuse_special_files_and_planted_links)
{
	char fifo[700], link[700], dev[700], victim[700], db[700], *out = NULL;
	const char *dir = mt_small_case("o");
	snprintf(fifo, sizeof fifo, "%s/fifo.npy", mt_tmpdir());
	snprintf(link, sizeof link, "%s/link.npy", mt_tmpdir());
	snprintf(dev, sizeof dev, "%s/null", mt_tmpdir());
	snprintf(victim, sizeof victim, "%s/victim", mt_tmpdir());
	snprintf(db, sizeof db, "%s/w.db", mt_tmpdir());
	mt_cuda_winner_db(db, "h2kv1d8-both-f32");
	FILE *f = fopen(victim, "w");
	REQUIRE(f);
	fputs("precious", f);
	fclose(f);
	REQUIRE(mkfifo(fifo, 0600) == 0 && symlink(victim, link) == 0);
	int have_dev = geteuid() == 0 && mknod(dev, S_IFCHR | 0666, makedev(1, 3)) == 0;
	const char *outs[] = { fifo, link, dev };
	const mode_t kinds[] = { S_IFIFO, S_IFLNK, S_IFCHR };
	for (int i = 0; i < 3; i++) {
		if (i == 2 && !have_dev)
			continue;
		int code = mt_sh(&out, "timeout 20 %s run --inputs '%s' --out '%s'", mt_bin(), dir,
				 outs[i]);
		CHECKF(code == 1, "run --out %s: exit %d\n%s", outs[i], code, out);
		CHECK_STR_CONTAINS(out, "exists and is not a regular file");
		free(out);
		check_untouched(outs[i], kinds[i], NULL);
		code = mt_sh(&out, "timeout 20 %s report --db '%s' --out '%s'", mt_bin(), db, outs[i]);
		CHECKF(code == 1, "report --out %s: exit %d\n%s", outs[i], code, out);
		CHECK_STR_CONTAINS(out, "exists and is not a regular file");
		free(out);
		check_untouched(outs[i], kinds[i], NULL);
	}
	check_untouched(victim, S_IFREG, "precious");
	/* a symlink planted at the temporary's name is never followed */
	char log[700], rep[700], npy[700];
	snprintf(log, sizeof log, "%s/log", mt_tmpdir());
	snprintf(rep, sizeof rep, "%s/r.html", mt_tmpdir());
	snprintf(npy, sizeof npy, "%s/o.npy", mt_tmpdir());
	char *rargv[] = { (char *)mt_bin(), "report", "--db", db, "--out", rep, NULL };
	struct plant_ctx pc = { rep, victim };
	CHECK_EQ_INT(run_planted(rargv, log, plant_links, &pc), 0);
	check_untouched(victim, S_IFREG, "precious");
	check_untouched(rep, S_IFREG, NULL);
	char *nargv[] = { (char *)mt_bin(), "run", "--inputs", (char *)dir, "--out", npy, NULL };
	pc.out = npy;
	CHECK_EQ_INT(run_planted(nargv, log, plant_links, &pc), 0);
	check_untouched(victim, S_IFREG, "precious");
	check_untouched(npy, S_IFREG, NULL);
}

/*
 * Issue 18: the same cause gave different exit statuses in different
 * commands (a text file as the database: 1 from best and export, 3 from
 * report; a FIFO: 1 or a hang). Now, for every command: a database path
 * that holds no mtatune database (missing where it is read, a FIFO, a
 * folder, text, another application's SQLite file) is bad input data, 3; an
 * mtatune database that is damaged is a runtime failure, 1 (README, "Exit
 * statuses").
 */
TEST(badinput_exit_statuses_agree_across_commands)
{
	char dir[700], good[800], *out = NULL;
	snprintf(dir, sizeof dir, "%s", mt_tmpdir());
	snprintf(good, sizeof good, "%s/good.db", dir);
	mt_cuda_winner_db(good, "h2kv1d8-both-f32");
	const char *in = mt_small_case("in");
	FILE *f = fopen((snprintf(good, sizeof good, "%s/g.txt", dir), good), "w");
	REQUIRE(f);
	fputs("problem h2kv1d8\nseq 8\n", f);
	fclose(f);
	static const struct { const char *name; int code, missing_ok; } causes[] = {
		{ "missing.db", 3, 1 }, { "fifo.db", 3, 0 }, { "folder.db", 3, 0 },
		{ "text.db", 3, 0 }, { "foreign.db", 3, 0 }, { "damaged.db", 1, 0 },
	};
	REQUIRE(mt_sh(&out, "cd '%s' && mkfifo fifo.db && mkdir folder.db && "
		      "echo 'not a database' > text.db && sqlite3 foreign.db 'CREATE TABLE t(x)' "
		      "2>/dev/null || python3 -c \"import sqlite3; c = sqlite3.connect('foreign.db'); "
		      "c.execute('create table t(x)'); c.commit()\"", dir) == 0);
	free(out);
	/* damaged: the good file with its every page after the first overwritten */
	REQUIRE(mt_sh(&out, "cd '%s' && cp good.db damaged.db && yes garbage | head -c 20000 | dd "
		      "of=damaged.db bs=4096 seek=1 conv=notrunc 2>/dev/null", dir) == 0);
	free(out);
	/* creates: a missing database is made (tune, sweep) or is the runtime's "nothing
	 * tuned" (run, best --seq: the default variant), not an error */
	static const struct { const char *cmd; int creates; } cmds[] = {
		{ "tune --problem h2kv1d8-both-f32 --seq 8 --strategy random --budget 1 --seed 1 "
		  "--reps 1 --warmup 0 --top 1 -q --db @/#", 1 },
		{ "sweep --grid @/g.txt --strategy random --budget 1 --reps 1 --warmup 0 --top 1 -q "
		  "--db @/#", 1 },
		{ "best --db @/#", 0 },
		{ "best --problem h2kv1d8-both-f32 --seq 8 --db @/#", 1 },
		{ "list devices --db @/#", 0 },
		{ "report --format csv --db @/#", 0 },
		{ "export --out @/lib --db @/#", 0 },
		{ "db merge @/merged.db @/#", 0 },
		{ "run --backend cpu --inputs @/in --out @/o.npy --db @/#", 1 },
	};
	(void)in;
	for (size_t c = 0; c < sizeof causes / sizeof causes[0]; c++)
		for (size_t i = 0; i < sizeof cmds / sizeof cmds[0]; i++) {
			char cmd[3000];
			size_t k = 0;
			if (causes[c].missing_ok && cmds[i].creates)
				continue; /* a missing database is made, or not needed */
			for (const char *s = cmds[i].cmd; *s && k < sizeof cmd - 800; s++)
				if (*s == '@')
					k += (size_t)snprintf(cmd + k, sizeof cmd - k, "%s", dir);
				else if (*s == '#')
					k += (size_t)snprintf(cmd + k, sizeof cmd - k, "%s",
							      causes[c].name);
				else
					cmd[k++] = *s;
			cmd[k] = 0;
			int code = mt_sh(&out, "rm -rf '%s/lib' '%s/merged.db'; MTATUNE_CACHE=build/kcache "
					 "timeout 60 %s %s", dir, dir, mt_bin(), cmd);
			CHECKF(code == causes[c].code, "%s as the database of '%s': exit %d, expected "
			       "%d\n%s", causes[c].name, cmds[i].cmd, code, causes[c].code, out);
			CHECK_STR_CONTAINS(out, causes[c].name);
			free(out);
		}
}
