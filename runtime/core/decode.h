/*
 * decode.h: what the layers share about decode beyond mta.h: the engine's
 * float64 entry (the reference rows, unrounded) and its memory.
 */
#ifndef MTA_CORE_DECODE_H
#define MTA_CORE_DECODE_H

#include "runtime/mta.h"

/*
 * mta_decode with float64 outputs: out is contiguous [B,Tn,H,D] doubles;
 * rows r >= n_new[b] of sequence b are not written.
 */
int mta_decode_f64(mta_cache *c, const struct mta_tensor *q, const struct mta_tensor *k,
		   const struct mta_tensor *v, const struct mta_weights *w, const int64_t *n_new,
		   double *out);

/* Bytes the cache holds now (its k, v, rings and scratch rows): O(T). */
int64_t mta_cache_bytes(const mta_cache *c);

/* A generated decode kernel's entry (runtime/core/mta_dargs.h): 0 or an error code. */
struct mta_dargs;
typedef int (*mta_decode_fn)(const struct mta_dargs *a);

/*
 * A loaded decode kernel as a cache calls it: fn, and what the cache puts
 * into every call's arguments: with pool set, the call runs through
 * mta_pool_call_decode (runtime/core/pool.h) on nthreads threads (0: all
 * cores); impl is the backend's (mta_dargs.impl).
 */
struct mta_pool;
struct mta_decoder {
	mta_decode_fn fn;
	struct mta_pool *pool;
	int nthreads;
	void *impl;
};

/*
 * A cache whose rows a generated decode kernel computes (float32 caches and
 * rings), for mta_decode. The kernel (and its pool) must stay loaded while
 * the cache lives.
 */
int mta_cache_create_kernel(const struct mta_problem *p, int64_t batch,
			    const struct mta_decoder *d, mta_cache **out);

#endif
