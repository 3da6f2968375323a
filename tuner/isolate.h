/*
 * isolate.h: run a piece of work in a child process with a time limit, so
 * that a kernel which crashes or hangs costs one record, not the tuner.
 */
#ifndef MTA_ISOLATE_H
#define MTA_ISOLATE_H

#include <stddef.h>

/*
 * The child runs fn(ctx, out, n); whatever it wrote to out (n bytes) comes
 * back through a pipe when it returns 0. The parent waits at most timeout_s
 * seconds, then kills the child's process group.
 *   MTA_OK        fn returned 0 and out holds its result
 *   MTA_EKERNEL   fn returned non-zero (its message, if any, is passed on),
 *                 or the child died of a signal ("crashed: signal 11 ...")
 *   MTA_ETIMEOUT-like: reported as MTA_EKERNEL with *timed_out = 1
 * fn's error message (mta_last_error() in the child) is carried back too.
 */
int mta_isolate(int (*fn)(void *ctx, void *out, size_t n), void *ctx, void *out, size_t n,
		double timeout_s, int *timed_out);

#endif
