/* test_isolate.c: a crashing or hanging job costs one record, not the caller. */
#include "tests/harness.h"
#include "tuner/measure/isolate.h"
#include "runtime/core/error.h"

#include <signal.h>
#include <time.h>
#include <unistd.h>

static int job(void *ctx, void *out, size_t n)
{
	int what = *(int *)ctx;
	if (what == 1)
		raise(SIGSEGV);
	if (what == 2)
		for (;;)
			pause();
	if (what == 3) {
		return mta_fail(MTA_EVERIFY, "relative L2 error 0.5 above 1e-05");
	}
	if (what == 4)
		_exit(0);
	memset(out, 0x5a, n);
	return 0;
}

TEST(isolate_returns_result_crash_timeout_and_errors)
{
	char out[64];
	int to, what = 0;
	memset(out, 0, sizeof out);
	CHECK(mta_isolate(job, &what, out, sizeof out, 5, NULL, &to) == MTA_OK);
	CHECK(out[0] == 0x5a && out[63] == 0x5a && !to);
	what = 1;
	CHECK(mta_isolate(job, &what, out, sizeof out, 5, NULL, &to) == MTA_EKERNEL);
	CHECK_STR_CONTAINS(mta_last_error(), "signal 11");
	CHECK(!to);
	what = 2;
	CHECK(mta_isolate(job, &what, out, sizeof out, 0.3, NULL, &to) == MTA_EKERNEL);
	CHECK(to);
	CHECK_STR_CONTAINS(mta_last_error(), "timed out");
	what = 3;
	CHECK(mta_isolate(job, &what, out, sizeof out, 5, NULL, &to) == MTA_EVERIFY);
	CHECK_STR_CONTAINS(mta_last_error(), "relative L2 error 0.5");
	what = 4;
	CHECK(mta_isolate(job, &what, out, sizeof out, 5, NULL, &to) == MTA_EKERNEL);
	CHECK_STR_CONTAINS(mta_last_error(), "before reporting");
}

static volatile sig_atomic_t stop_flag;

static void raise_stop(int sig)
{
	(void)sig;
	stop_flag = 1;
}

/* A stop raised while a child hangs ends the wait at once (not at the time limit). */
TEST(isolate_stop_kills_a_hanging_child_at_once)
{
	char out[64];
	int to = 0, what = 2;
	struct timespec t0, t1;
	signal(SIGALRM, raise_stop);
	ualarm(200000, 0);
	clock_gettime(CLOCK_MONOTONIC, &t0);
	CHECK_EQ_INT(mta_isolate(job, &what, out, sizeof out, 60, &stop_flag, &to), MTA_EINTR);
	clock_gettime(CLOCK_MONOTONIC, &t1);
	double s = (double)(t1.tv_sec - t0.tv_sec) + 1e-9 * (double)(t1.tv_nsec - t0.tv_nsec);
	CHECKF(s < 1.0, "%.2f s", s);
	CHECK(!to);
	CHECK_STR_CONTAINS(mta_last_error(), "stopped");
	alarm(300);
}
