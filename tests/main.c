/*
 * main.c: the test runner. Runs every registered test (or those whose name
 * contains one of argv[1..]) in a child process with a time limit, then
 * prints "<label>: N passed, N failed". The label keeps this line apart from
 * the suite-wide total that tests/run.sh prints last.
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
	int compile_bound; /* harness.h: TEST_COMPILE_BOUND */
};
static struct mt_test tests[MT_MAX];
static int ntests;
int mt_failures;

void mt_register(const char *name, const char *file, mt_fn fn)
{
	if (ntests < MT_MAX)
		tests[ntests++] = (struct mt_test){ name, file, fn, 0 };
}

void mt_register_compile_bound(const char *name, const char *file, mt_fn fn)
{
	if (ntests < MT_MAX)
		tests[ntests++] = (struct mt_test){ name, file, fn, 1 };
}

/* Whether this runner was built with AddressSanitizer (gcc or clang). */
static int sanitized(void)
{
#if defined(__SANITIZE_ADDRESS__)
	return 1;
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
	return 1;
#else
	return 0;
#endif
#else
	return 0;
#endif
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

extern void mt_util_begin(const char *name);
extern void mt_util_end(void);

int main(int argc, char **argv)
{
	const char *label = getenv("MT_LABEL") ? getenv("MT_LABEL") : "tests";
	int limit = getenv("MT_TIMEOUT") ? atoi(getenv("MT_TIMEOUT")) : 300;
	int passed = 0, failed = 0, left = 0;

	setvbuf(stdout, NULL, _IOLBF, 0);
	for (int i = 0; i < ntests; i++) {
		if (!selected(tests[i].name, argc, argv))
			continue;
		if (tests[i].compile_bound && sanitized()) {
			printf("  --    %-48s compile-bound: runs in the normal build\n",
			       tests[i].name);
			left++;
			continue;
		}
		struct timespec t0, t1;
		clock_gettime(CLOCK_MONOTONIC, &t0);
		fflush(stdout);
		fflush(stderr);
		pid_t pid = fork();
		if (pid == 0) {
			alarm((unsigned)limit);
			mt_util_begin(tests[i].name);
			tests[i].fn();
			mt_util_end();
			fflush(stdout);
			fflush(stderr);
			_exit(mt_failures ? 1 : 0);
		}
		int st = 0;
		while (waitpid(pid, &st, 0) < 0 && errno == EINTR)
			;
		clock_gettime(CLOCK_MONOTONIC, &t1);
		double s = (double)(t1.tv_sec - t0.tv_sec) + 1e-9 * (double)(t1.tv_nsec - t0.tv_nsec);
		int ok = WIFEXITED(st) && WEXITSTATUS(st) == 0;
		if (ok) {
			passed++;
			printf("  ok    %-48s %7.2fs\n", tests[i].name, s);
		} else {
			failed++;
			if (WIFSIGNALED(st))
				printf("  FAIL  %-48s killed by signal %d%s\n", tests[i].name,
				       WTERMSIG(st), WTERMSIG(st) == SIGALRM ? " (timeout)" : "");
			else
				printf("  FAIL  %-48s (%s)\n", tests[i].name, tests[i].file);
		}
	}
	if (left)
		printf("%s: %d compile-bound tests left to the normal build\n", label, left);
	printf("%s: %d ok, %d failing\n", label, passed, failed);
	return failed ? 1 : 0;
}
