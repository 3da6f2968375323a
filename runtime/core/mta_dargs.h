/*
 * mta_dargs.h: the binary interface between mtatune and a generated C
 * decode kernel (templates/mta_cpu_decode.c; the generator pastes this file
 * into it, as it pastes mta_kargs.h into the forward kernels).
 *
 * One call computes one new row (query position pos[b]) of each sequence
 * b < n: the caller has already stored that row's k and v (float32) in the
 * sequence's cache and its q (float32, [n][H][D]) in q. The kernel writes
 * the row's raw logits and probabilities into the sequence's rings (the
 * state later rows' convolutions read) and the output row into o
 * ([n][H][D] float32). Work O(pos * H * (D + cq*ck + cq2*ck2 + H)) per
 * sequence; the kernel allocates nothing: the caller gives its scratch,
 * MTA_DWORK floats per sequence of the call.
 *
 * ABI 2: the work of a call is cut into items of MTA_DBLOCK key columns of
 * one sequence, a fixed cut, so the sums over key blocks (softmax
 * denominators, P.V) are added in the same order whatever the number of
 * threads: results do not depend on it. A CPU kernel runs the items on
 * the caller's pool (pool_run, as struct mta_kargs's) with nthreads
 * threads; a CUDA kernel on its blocks and threads.
 */
#ifndef MTA_DARGS_H
#define MTA_DARGS_H

#include <stdint.h>

#define MTA_DARGS_ABI 2

/* Key columns of one work item (fixed: see above). */
#define MTA_DBLOCK 128
#define MTA_DNB(scap) (((int64_t)(scap) + MTA_DBLOCK - 1) / MTA_DBLOCK)
/*
 * Scratch floats per sequence of a call: two score rows [H][scap] (s, m),
 * then per key block [H] maxima, [H] sums and [H][D] partial outputs.
 */
#define MTA_DWORK(H, D, scap) \
	(2 * (int64_t)(H) * (int64_t)(scap) + MTA_DNB(scap) * (int64_t)(H) * ((int64_t)(D) + 2))

struct mta_dseq {
	int64_t pos;   /* the new row's index (tokens before it) */
	int64_t cap;   /* row stride of the rings and rows of the caches */
	const float *k, *v; /* [cap][Hkv][D], rows 0..pos written */
	float *z;      /* [H][max(cq,1)][cap] raw logits, row r in slot r % max(cq,1) */
	float *p;      /* [H][max(cq2,1)][cap] probabilities, likewise */
};

struct mta_dargs {
	int64_t n;                /* sequences in this call */
	const struct mta_dseq *seq;
	const float *q;           /* [n][H][D] */
	float *o;                 /* [n][H][D] */
	float *work;              /* [n][MTA_DWORK(H, D, scap)] scratch */
	int64_t scap;             /* >= every seq's pos + 1 */
	const float *kq_pre, *head_pre, *kq_post, *head_post, *head_post_linear;
	const float *gn_weight, *gate_w;
	float gate_b;
	float gn_rescale;         /* 1 when unused */
	/* ABI 2: threads (CPU kernels) */
	int nthreads;             /* threads to use; pool_run NULL: the caller's only */
	void *pool;
	void (*pool_run)(void *pool, int n, void (*fn)(void *arg, int tid), void *arg);
	void *impl;               /* the backend's own (a CUDA kernel's module); NULL on the CPU */
};

/* What a decode kernel reports about itself (exported as mta_cpu_decode_info). */
struct mta_dinfo {
	int abi;                  /* MTA_DARGS_ABI */
	int args_size;            /* sizeof(struct mta_dargs) */
	int seq_size;             /* sizeof(struct mta_dseq) */
};

#endif
