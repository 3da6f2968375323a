/*
 * isolate.h: run a piece of work in a child process with a time limit, so
 * that a kernel which crashes or hangs costs one record, not the tuner.
 */
#ifndef MTA_MEASURE_ISOLATE_H
#define MTA_MEASURE_ISOLATE_H

#include <signal.h>
#include <stddef.h>

/*
 * The child runs fn(ctx, out, n); whatever it wrote to out (n bytes) comes
 * back through a pipe once fn returns, whatever it returned (a failed check
 * still reports what it measured); a child that dies first leaves out
 * untouched. The parent waits at most timeout_s seconds, then kills the
 * child's process group.
 *   MTA_OK        fn returned 0
 *   fn's status   fn returned non-zero: its status and message are passed on
 *   MTA_EKERNEL   the child died of a signal ("crashed: killed by signal 11
 *                 ..."), exited early, or timed out (then *timed_out = 1)
 *   MTA_EINTR     *stop was raised while waiting (stop may be NULL): the
 *                 child was killed at once, whatever it was doing; nothing
 *                 of it holds (a stop must not wait for a hanging kernel's
 *                 time limit, nor be taken for the kernel's fault)
 */
int mta_isolate(int (*fn)(void *ctx, void *out, size_t n), void *ctx, void *out, size_t n,
		double timeout_s, volatile sig_atomic_t *stop, int *timed_out);

#endif
