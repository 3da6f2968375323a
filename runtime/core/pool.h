/*
 * pool.h: the persistent worker threads and memory a CPU kernel runs on
 * (core layer; ships in exported libraries).
 *
 * A pool belongs to whoever makes kernel calls: the cpu backend's device
 * (runtime/cpu/backend.c), which a runtime context owns, and the context of
 * an exported library (templates/export_runtime.c). Before pools, every
 * kernel call started its threads and allocated and cleared a workspace per
 * thread (about 50 us and a few MB of writes); now threads start on first
 * use and wait for the next call, and each thread's workspace, and one
 * shared buffer, are kept and only grow.
 *
 * The kernel sees the pool through the three fields of struct mta_kargs
 * that mta_pool_call fills in (runtime/core/mta_kargs.h, ABI 2):
 *   pool_run(pool, n, fn, arg)   fn(arg, tid) for tid in [0, n) on n
 *                                threads, the caller's as tid 0; returns
 *                                when every fn has returned;
 *   pool_mem(pool, slot, bytes)  the buffer of slot (tid in [0, n), or
 *                                MTA_POOL_SHARED), at least bytes long,
 *                                64-byte aligned, kept between calls (its
 *                                contents are whatever the last user left),
 *                                NULL when out of memory;
 *   pool_cores                   cores online, counted once: what a
 *                                variant's thr=0 ("all cores") means.
 *
 * One kernel call runs on a pool at a time: mta_pool_call holds the pool's
 * lock for the call, so concurrent calls on one context take turns.
 */
#ifndef MTA_CORE_POOL_H
#define MTA_CORE_POOL_H

#include "runtime/core/mta_dargs.h"
#include "runtime/core/mta_kargs.h"

#define MTA_POOL_MAX 256 /* threads per call, as the kernels cap them */

struct mta_pool;

/* A pool (no thread starts until a call needs it). MTA_OK or MTA_ENOMEM. */
int mta_pool_create(struct mta_pool **out);

/* Stop and join the threads, free the memory. NULL is fine. */
void mta_pool_free(struct mta_pool *p);

/*
 * Call kernel fn(a) with a's pool fields set to p, holding p for the call.
 * Returns fn's code (0, MTA_KERR_*).
 */
int mta_pool_call(struct mta_pool *p, int (*fn)(const struct mta_kargs *a), struct mta_kargs *a);

/*
 * The same for a decode kernel (runtime/core/mta_dargs.h): a's pool and
 * pool_run set to p, a->nthreads 0 taken as p's cores.
 */
int mta_pool_call_decode(struct mta_pool *p, int (*fn)(const struct mta_dargs *a),
			 struct mta_dargs *a);

#endif
