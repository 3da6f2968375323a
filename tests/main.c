/*
 * main.c: the test runner. Runs every registered test (or those whose name
 * contains one of argv[1..]) in a child process with a time limit, MT_JOBS
 * of them at once (jobs() below), each test's output printed in one piece
 * when it ends (TEST_TIMED tests last, each alone), then prints
 * "<label>: N ok, N failing". The label keeps
 * this line apart from the suite-wide total that tests/run.sh prints last.
 */
#include "tests/harness.h"

#include <errno.h>
#include <stdarg.h>
#include <signal.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define MT_MAX 4096

struct mt_test {
	const char *name, *file;
	mt_fn fn;
	enum mt_kind kind;
};
static struct mt_test tests[MT_MAX];
static int ntests;
int mt_failures;

void mt_register(const char *name, const char *file, mt_fn fn, enum mt_kind kind)
{
	if (ntests < MT_MAX)
		tests[ntests++] = (struct mt_test){ name, file, fn, kind };
}

void mt_fail(const char *file, int line, const char *fmt, ...)
{
	va_list ap;
	fprintf(stderr, "    %s:%d: ", file, line);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fprintf(stderr, " (seed %llu)\n", mt_seed());
	mt_failures++;
}

static int selected(const char *name, int argc, char **argv)
{
	if (argc < 2)
		return 1;
	for (int i = 1; i < argc; i++)
		if (strstr(name, argv[i]))
			return 1;
	return 0;
}

extern void mt_util_begin(const char *name, unsigned long long seed);
extern unsigned long long mt_util_seed(void);
extern void mt_util_end(void);

/* A test running in a child: its index, start time and captured output. */
struct mt_run {
	pid_t pid;
	int test;
	unsigned long long seed;
	struct timespec t0;
	FILE *out;
};

/*
 * Start test i in a child whose stdout and stderr go to a private temporary
 * file, so that tests running side by side do not interleave their lines;
 * the parent copies the file out when the test ends.
 */
static int start(struct mt_run *r, int i, int limit)
{
	r->test = i;
	r->seed = mt_util_seed();
	r->out = tmpfile();
	if (!r->out) {
		fprintf(stderr, "test runner: no temporary file for %s's output: %s\n",
			tests[i].name, strerror(errno));
		return -1;
	}
	clock_gettime(CLOCK_MONOTONIC, &r->t0);
	fflush(stdout);
	fflush(stderr);
	r->pid = fork();
	if (r->pid < 0) {
		fprintf(stderr, "test runner: fork for %s: %s\n", tests[i].name, strerror(errno));
		fclose(r->out);
		return -1;
	}
	if (r->pid == 0) {
		int fd = fileno(r->out);
		if (dup2(fd, 1) < 0 || dup2(fd, 2) < 0)
			_exit(127);
		setvbuf(stdout, NULL, _IOLBF, 0);
		alarm((unsigned)limit);
		mt_util_begin(tests[i].name, r->seed);
		tests[i].fn();
		mt_util_end();
		fflush(stdout);
		fflush(stderr);
		_exit(mt_failures ? 1 : 0);
	}
	return 0;
}

/* Print finished run r's output and verdict; returns whether it passed. */
static int finish(struct mt_run *r, int st)
{
	struct timespec t1;
	char buf[4096];
	size_t n;

	clock_gettime(CLOCK_MONOTONIC, &t1);
	double s = (double)(t1.tv_sec - r->t0.tv_sec) + 1e-9 * (double)(t1.tv_nsec - r->t0.tv_nsec);
	rewind(r->out);
	while ((n = fread(buf, 1, sizeof buf, r->out)) > 0)
		fwrite(buf, 1, n, stdout);
	fclose(r->out);
	r->out = NULL;
	r->pid = 0;
	const struct mt_test *t = &tests[r->test];
	int ok = WIFEXITED(st) && WEXITSTATUS(st) == 0;
	if (ok)
		printf("  ok    %-48s %7.2fs\n", t->name, s);
	else if (WIFSIGNALED(st))
		printf("  FAIL  %-48s killed by signal %d%s (seed %llu)\n", t->name, WTERMSIG(st),
		       WTERMSIG(st) == SIGALRM ? " (timeout)" : "", r->seed);
	else
		printf("  FAIL  %-48s (%s, seed %llu)\n", t->name, t->file, r->seed);
	fflush(stdout);
	return ok;
}

/*
 * How many tests run at once: MT_JOBS, else one per online CPU (at most
 * 8). Each test is its own process with its own temporary directory, and
 * the kernel caches they share are built for concurrent use (locks, files
 * renamed into place), so side by side is safe; most of a test's time goes
 * to single-threaded compilers, so two at once on two cores nearly halves
 * the suite's wall time. MT_JOBS=1 runs them one after another.
 */
static int jobs(void)
{
	const char *e = getenv("MT_JOBS");
	long n = e && *e ? strtol(e, NULL, 10) : sysconf(_SC_NPROCESSORS_ONLN);
	return n < 1 ? 1 : n > 8 ? 8 : (int)n;
}

/*
 * MT_TIMED_AFTER: a file whose existence says that work the runner did not
 * start is over (tests/run.sh runs the Slurm test in the background beside
 * the suite and creates the file when it ends). The first TEST_TIMED test
 * waits for it, as it waits for the runner's own tests, at most ten
 * minutes, then runs anyway and says so.
 */
static void wait_for_quiet(void)
{
	const char *f = getenv("MT_TIMED_AFTER");
	int waited = 0;
	if (!f || !*f)
		return;
	while (access(f, F_OK) != 0 && waited < 600) {
		if (waited == 0)
			printf("  ..    timed tests wait for %s\n", f);
		sleep(1);
		waited++;
	}
	if (access(f, F_OK) != 0)
		printf("  ..    %s still missing after %d s: the timed tests run anyway\n", f,
		       waited);
}

int main(int argc, char **argv)
{
	const char *label = getenv("MT_LABEL") ? getenv("MT_LABEL") : "tests";
	int limit = getenv("MT_TIMEOUT") ? atoi(getenv("MT_TIMEOUT")) : 300;
	int passed = 0, failed = 0, left = 0, nj = jobs(), running = 0, alone = 0, quiet = 0;
	struct mt_run run[8] = { { 0 } };
	int order[MT_MAX], norder = 0;

	setvbuf(stdout, NULL, _IOLBF, 0);
	/*
	 * The compile-bound tests are the longest: started first, they do not
	 * leave one core idle at the end while the other finishes a long test.
	 * The timed ones come last, each with the machine to itself.
	 */
	static const enum mt_kind pass_kind[3] = { MT_COMPILE_BOUND, MT_PLAIN, MT_TIMED };
	for (int pass = 0; pass < 3; pass++)
		for (int i = 0; i < ntests; i++) {
			if (tests[i].kind != pass_kind[pass] || !selected(tests[i].name, argc, argv))
				continue;
			if (tests[i].kind == MT_COMPILE_BOUND && mt_sanitized()) {
				printf("  --    %-48s compile-bound: runs in the normal build\n",
				       tests[i].name);
				left++;
				continue;
			}
			order[norder++] = i;
		}
	for (int next = 0; next < norder || running;) {
		while (next < norder && running < nj && !alone) {
			int timed = tests[order[next]].kind == MT_TIMED;
			if (timed && running)
				break; /* wait for the machine to empty */
			if (timed && !quiet) {
				wait_for_quiet();
				quiet = 1;
			}
			struct mt_run *r = run;
			while (r->pid)
				r++;
			if (start(r, order[next++], limit)) {
				failed++;
				continue;
			}
			running++;
			alone = timed;
		}
		int st = 0;
		pid_t pid;
		while ((pid = waitpid(-1, &st, 0)) < 0 && errno == EINTR)
			;
		if (pid < 0) {
			fprintf(stderr, "test runner: waitpid: %s\n", strerror(errno));
			failed += running;
			break;
		}
		for (int j = 0; j < nj; j++)
			if (run[j].pid == pid) {
				if (finish(&run[j], st))
					passed++;
				else
					failed++;
				running--;
				alone = 0;
				break;
			}
	}
	if (left)
		printf("%s: %d compile-bound tests left to the normal build\n", label, left);
	printf("%s: %d ok, %d failing\n", label, passed, failed);
	return failed ? 1 : 0;
}
