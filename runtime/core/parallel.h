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

/*
 * The cores this process may run on: its CPU affinity mask (what taskset,
 * cgroups' cpusets and Slurm's allocations restrict), else the cores online;
 * at least 1. Every "all cores" default (threads, the pool, compile batches,
 * a sweep's workers, the device's identity) counts with it.
 */
int mta_cpu_count(void);

#endif
