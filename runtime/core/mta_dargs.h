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
 * ABI 3: the work of a call is cut into items of a kernel's key block
 * (K_BK columns of one sequence, at least MTA_DBLOCK_MIN: a tunable of the
 * decode operation, gen/cpu/space.c), a cut fixed per kernel, so the sums
 * over key blocks (softmax denominators, P.V) are added in the same order
 * whatever the number of threads: results do not depend on it. A CPU
 * kernel runs the items on the caller's pool (pool_run, as struct
 * mta_kargs's) with nthreads threads; a CUDA kernel on its blocks and
 * threads. The caller sizes the scratch for the smallest block
 * (MTA_DWORK), so any kernel's fits: a kernel of block bk uses
 * MTA_DWORK_BK(H, D, scap, bk) <= MTA_DWORK floats per sequence.
 */
#ifndef MTA_DARGS_H
#define MTA_DARGS_H

#include <stdint.h>

#define MTA_DARGS_ABI 3

/* Key columns of one work item: the default block, and the smallest a kernel may take. */
#define MTA_DBLOCK 128
#define MTA_DBLOCK_MIN 32
#define MTA_DNB_BK(scap, bk) (((int64_t)(scap) + (bk) - 1) / (bk))
/*
 * Scratch floats per sequence of a kernel with key blocks of bk columns:
 * two score rows [H][scap] (s, m), then per key block [H] maxima, [H] sums
 * and [H][D] partial outputs. MTA_DWORK: what a caller gives (any kernel's fits).
 */
#define MTA_DWORK_BK(H, D, scap, bk) \
	(2 * (int64_t)(H) * (int64_t)(scap) + \
	 MTA_DNB_BK(scap, bk) * (int64_t)(H) * ((int64_t)(D) + 2))
#define MTA_DWORK(H, D, scap) MTA_DWORK_BK(H, D, scap, MTA_DBLOCK_MIN)

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
	/* threads (CPU kernels) */
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
