/*
 * decode.h: what the layers share about decode beyond mta.h: the engine's
 * float64 entry (the reference rows, unrounded) and its memory.
 */
#ifndef MTA_CORE_DECODE_H
#define MTA_CORE_DECODE_H

#include "runtime/mta.h"

#include <stddef.h>

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
 *
 * A context (mta_cache_create_ctx) also gives, with ctx its first argument:
 *   forward  the context's forward (mta_forward): a prefill into an empty
 *            sequence takes its outputs from it, and the cache keeps only
 *            what later rows need (k, v, and the ring rows, computed for
 *            the last few rows alone: see kernel_prefill in decode.c);
 *   select   the decoder of the decode winner for a cache at batch B and
 *            length T (runtime/context.c: op "decode", T bucket); the
 *            cache asks again whenever its longest row enters another T
 *            bucket;
 *   spec     the variant this decoder runs (NULL: unnamed).
 * NULL hooks: every row through fn, one decoder for the cache's life.
 */
struct mta_pool;

/*
 * Where a kernel's cache lives (struct mta_decoder's mem): a device's
 * memory, given as a few operations on it (ctx the device: every decoder
 * of one device gives the same). alloc leaves the bytes undefined;
 * release takes NULL; put copies host to device, get device to host, move
 * device to device, each finished when it returns. Failures are MTA_*
 * statuses with their message set.
 */
struct mta_dmem {
	void *ctx;
	int (*alloc)(void *ctx, size_t bytes, void **ptr);
	void (*release)(void *ctx, void *ptr);
	int (*put)(void *ctx, void *dst, const void *src, size_t bytes);
	int (*get)(void *ctx, void *dst, const void *src, size_t bytes);
	int (*move)(void *ctx, void *dst, const void *src, size_t bytes);
};

struct mta_decoder {
	mta_decode_fn fn;
	struct mta_pool *pool;
	int nthreads;
	void *impl;
	void *ctx;
	int (*forward)(void *ctx, const struct mta_problem *p, const struct mta_tensor *q,
		       const struct mta_tensor *k, const struct mta_tensor *v,
		       const struct mta_weights *w, struct mta_tensor *o);
	int (*select)(void *ctx, const struct mta_problem *p, int64_t B, int64_t T,
		      struct mta_decoder *out);
	const char *spec;
	/*
	 * mem NULL: the kernel reads and writes host memory. Set (a CUDA
	 * kernel): the cache keeps its k, v, rings and scratch, the rows' q
	 * and o, the sequences' descriptors (struct mta_dseq) and the weights
	 * in that memory, copies each new row's k, v and q in and its o out,
	 * and passes fn arguments whose every pointer is the device's; fn then
	 * returns an MTA_* status with its message set. A decoder selected
	 * later must give the same memory.
	 */
	const struct mta_dmem *mem;
};

/*
 * A cache whose rows a generated decode kernel computes (float32 caches and
 * rings), for mta_decode. The kernel (and its pool) must stay loaded while
 * the cache lives.
 */
int mta_cache_create_kernel(const struct mta_problem *p, int64_t batch,
			    const struct mta_decoder *d, mta_cache **out);

/* The decoder a kernel cache runs now (NULL for the float64 engine). */
const struct mta_decoder *mta_cache_decoder(const mta_cache *c);

/*
 * mta_decode of a kernel cache without outputs: the cache takes the tokens
 * (each empty sequence as a prefill: k and v copied, the ring rows computed
 * for the last rows alone). For timing a cache of a given length.
 */
int mta_cache_fill(mta_cache *c, const struct mta_tensor *q, const struct mta_tensor *k,
		   const struct mta_tensor *v, const struct mta_weights *w, const int64_t *n_new);

/*
 * Every non-empty sequence forgets its last token. Its rings keep what the
 * rows before it need, so decoding the same token again gives the same
 * row (a timing loop decodes one token at a fixed length this way).
 */
void mta_cache_drop_last(mta_cache *c);

#endif
