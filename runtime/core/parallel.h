/*
 * parallel.h: run fn(ctx, i) for i in [0, n) on a few threads (core layer):
 * the compile batches of every backend (C compiler, NVRTC) use it.
 */
#ifndef MTA_CORE_PARALLEL_H
#define MTA_CORE_PARALLEL_H

#include <stddef.h>

#define MTA_PARALLEL_MAX 16

/*
 * Items are taken in order from a shared counter by up to threads threads
 * (0: one per core; at most MTA_PARALLEL_MAX), the caller's thread among
 * them, so a thread that cannot start leaves its share to the others.
 * Returns when every item is done.
 */
void mta_parallel(size_t n, int threads, void (*fn)(void *ctx, size_t i), void *ctx);

#endif
