/*
 * isolate.c: fork, run, collect over a pipe, kill on timeout (see isolate.h).
 *
 * The result travels as [int status][n bytes][message], written once when
 * fn returns; a child that dies first leaves the pipe short, which is how a
 * crash is told from a result. The child calls _exit so that it never runs
 * the parent's atexit handlers or flushes its stdio buffers twice.
 */
#include "tuner/measure/isolate.h"
#include "runtime/core/error.h"

#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static int write_all(int fd, const void *buf, size_t n)
{
	const char *p = buf;
	while (n) {
		ssize_t w = write(fd, p, n);
		if (w < 0 && errno == EINTR)
			continue;
		if (w <= 0)
			return -1;
		p += w;
		n -= (size_t)w;
	}
	return 0;
}

static double now(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* How often a waiting parent looks at the stop flag, in ms. */
#define STOP_POLL_MS 50

int mta_isolate(int (*fn)(void *ctx, void *out, size_t n), void *ctx, void *out, size_t n,
		double timeout_s, volatile sig_atomic_t *stop, int *timed_out)
{
	int fds[2], rc, st = 0, stopped = 0;
	size_t cap = sizeof(int) + n + 1024, len = 0;
	char *buf = NULL;
	pid_t pid;

	*timed_out = 0;
	if (!(buf = malloc(cap)))
		return mta_fail(MTA_ENOMEM, "out of memory");
	if (pipe(fds)) {
		free(buf);
		return mta_fail(MTA_EIO, "pipe: %s", strerror(errno));
	}
	fflush(NULL);
	pid_t parent = getpid();
	if ((pid = fork()) < 0) {
		close(fds[0]);
		close(fds[1]);
		free(buf);
		return mta_fail(MTA_EIO, "fork: %s", strerror(errno));
	}
	if (pid == 0) {
		close(fds[0]);
		setpgid(0, 0);
		/* Its own process group shields it from the terminal's signals, so
		 * it must die with the tuner: a tuner killed while a kernel hangs
		 * must not leave the kernel spinning forever. */
		prctl(PR_SET_PDEATHSIG, SIGKILL);
		if (getppid() != parent)
			_exit(4);
		/* A fault must end the child as a signal the parent can name, even
		 * where a sanitizer or the caller installed its own handler. */
		int sigs[] = { SIGSEGV, SIGBUS, SIGFPE, SIGILL };
		for (size_t i = 0; i < sizeof sigs / sizeof sigs[0]; i++)
			signal(sigs[i], SIG_DFL);
		int s = fn(ctx, out, n);
		const char *m = mta_last_error();
		size_t ml = strnlen(m, 1023);
		if (write_all(fds[1], &s, sizeof s) || write_all(fds[1], out, n) ||
		    write_all(fds[1], m, ml))
			_exit(3);
		_exit(0);
	}
	close(fds[1]);
	double deadline = now() + timeout_s;
	for (;;) {
		double left = deadline - now();
		if (left <= 0) {
			*timed_out = 1;
			break;
		}
		if (stop && *stop) {
			stopped = 1;
			break;
		}
		int wait_ms = (int)(left * 1000) + 1;
		if (stop && wait_ms > STOP_POLL_MS)
			wait_ms = STOP_POLL_MS;
		struct pollfd pfd = { fds[0], POLLIN, 0 };
		int r = poll(&pfd, 1, wait_ms);
		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0)
			continue;
		if (len == cap)
			break;
		ssize_t got = read(fds[0], buf + len, cap - len);
		if (got < 0 && errno == EINTR)
			continue;
		if (got <= 0)
			break; /* EOF: the child is done or dead */
		len += (size_t)got;
	}
	close(fds[0]);
	if (*timed_out || stopped) {
		kill(-pid, SIGKILL);
		kill(pid, SIGKILL);
	}
	while (waitpid(pid, &st, 0) < 0 && errno == EINTR)
		;
	if (stopped) {
		rc = mta_fail(MTA_EINTR, "stopped while it ran (the child was killed; nothing of it "
			      "is recorded)");
	} else if (*timed_out) {
		rc = mta_fail(MTA_EKERNEL, "timed out after %.1f s (killed)", timeout_s);
	} else if (WIFSIGNALED(st)) {
		rc = mta_fail(MTA_EKERNEL, "crashed: killed by signal %d (%s)", WTERMSIG(st),
			      strsignal(WTERMSIG(st)));
	} else if (len < sizeof(int) + n) {
		rc = mta_fail(MTA_EKERNEL, "child exited with status %d before reporting a result",
			      WIFEXITED(st) ? WEXITSTATUS(st) : -1);
	} else {
		int s;
		memcpy(&s, buf, sizeof s);
		buf[len < cap ? len : cap - 1] = 0;
		memcpy(out, buf + sizeof(int), n);
		rc = s == 0 ? MTA_OK : mta_fail(s, "%s", buf + sizeof(int) + n);
	}
	free(buf);
	return rc;
}
