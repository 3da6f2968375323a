/*
 * mta_cpu_decode.c: the generated C decode kernel: one new row of each
 * sequence of a decode cache (runtime/core/mta_dargs.h), specialised by the
 * K_ #defines of gen/defines.c in front of it (sizes and options are
 * constants, so unused steps vanish and loops over D and the kernel window
 * unroll). float32 throughout; the steps are MTA.md's, for one query row:
 * logits against every cached key, the convolutions over the rings of the
 * previous rows' logits and probabilities, head mixing, softmax, P.V, group
 * norm and gate. ABI 3: the row is cut into key blocks of K_BK columns
 * (the decode operation's tunable bk, gen/cpu/space.c), and six phases (each a pass over every sequence's blocks on the
 * caller's pool, a barrier between them: a convolution reads neighbouring
 * columns, softmax needs every block's maximum and sum) compute it; sums
 * over blocks are added in block order, so the result is the same on any
 * number of threads.
 */
#include "runtime/core/mta_dargs.h"

#include <math.h>
#include <string.h>

/* Defaults so that the template compiles on its own (the generator defines them all). */
#ifndef K_H
#define K_H 4          /* heads */
#define K_HKV 2        /* key/value heads */
#define K_D 16         /* head size */
#define K_CQ 3         /* kq_pre rows (0: none) */
#define K_CK 5         /* kq_pre columns */
#define K_OK 2         /* kq_pre key offset */
#define K_HPRE 1       /* head_pre linear mixing */
#define K_CQ2 2        /* kq_post rows (0: none) */
#define K_CK2 3        /* kq_post columns */
#define K_OK2 1        /* kq_post key offset */
#define K_HPOST 1      /* 0 none, 1 head_post conv, 2 head_post_linear */
#define K_HC 2         /* head_post group size */
#define K_GN 1         /* group norm */
#define K_GNR 1        /* group norm layer rescale */
#define K_GATE 1       /* sigmoid gate */
#define K_SCALE 0.25f  /* softmax scale */
#endif
#ifndef K_BK
#define K_BK 128       /* key columns per work item (tunable) */
#define K_THR 0        /* threads at most (tunable; 0: the caller's count) */
#endif
#if K_BK < MTA_DBLOCK_MIN
#error "decode key blocks must have at least MTA_DBLOCK_MIN columns (the caller's scratch)"
#endif
#define DNB(scap) MTA_DNB_BK(scap, K_BK)

#define R1 (K_CQ ? K_CQ : 1)
#define R2 (K_CQ2 ? K_CQ2 : 1)
#define GQ (K_H / K_HKV)

const struct mta_dinfo mta_cpu_decode_info = {
	MTA_DARGS_ABI, (int)sizeof(struct mta_dargs), (int)sizeof(struct mta_dseq)
};

/*
 * out[j] for j in [j0, j1) (j1 <= i + 1) = sum_{a<cq, b<ck} w[a][b] * ring
 * row (i-cq+1+a) at column j-ok+b; entries above their own row's diagonal
 * or before row 0 are zero. A column's sum runs in the same order whatever
 * the block it lies in.
 */
static void conv_cols(const float *ring, int64_t cap, int64_t i, const float *w, int cq,
		      int ck, int ok, int rows, int64_t j0, int64_t j1, float *out)
{
	for (int64_t j = j0; j < j1; j++)
		out[j] = 0.0f;
	for (int a = 0; a < cq; a++) {
		const int64_t r = i - (cq - 1) + a;
		if (r < 0)
			continue;
		const float *row = ring + (r % rows) * cap;
		for (int b = 0; b < ck; b++) {
			const float wv = w[a * ck + b];
			/* column c = j - ok + b in [0, r]: j in [ok - b, r + ok - b] */
			int64_t lo = ok - b, hi = r + ok - b + 1;
			if (lo < j0)
				lo = j0;
			if (hi > j1)
				hi = j1;
			const float *src = row - ok + b;
			for (int64_t j = lo; j < hi; j++)
				out[j] += wv * src[j];
		}
	}
}

/* The phases of one call; items are (sequence, key block), phase 6 one per sequence. */
struct job {
	const struct mta_dargs *a;
	int phase;
	int64_t next; /* the next item to claim (atomic) */
};

/* Scratch of sequence x: score rows s, m [H][scap], per block maxima, sums, partial outputs. */
#define WS(a, x) ((a)->work + (x) * MTA_DWORK_BK(K_H, K_D, (a)->scap, K_BK))
#define SM(a, x) (WS(a, x) + (int64_t)K_H * (a)->scap)
#define RED(a, x) (SM(a, x) + (int64_t)K_H * (a)->scap)
#define RMAX(r, blk) ((r) + (blk) * K_H * (K_D + 2))
#define RSUM(r, blk) (RMAX(r, blk) + K_H)
#define ROUT(r, blk) (RMAX(r, blk) + 2 * K_H)

static void item(const struct mta_dargs *a, int phase, int64_t x, int64_t blk)
{
	const struct mta_dseq *sq = &a->seq[x];
	const int64_t i = sq->pos, cap = sq->cap, sc = a->scap;
	const int64_t j0 = blk * K_BK, j1 = j0 + K_BK < i + 1 ? j0 + K_BK : i + 1;
	const int64_t nblk = DNB(i + 1);
	float *s = WS(a, x), *m = SM(a, x), *red = RED(a, x);
	switch (phase) {
	case 1: /* step 1: raw logits of row i into the logit ring */
		for (int h = 0; h < K_H; h++) {
			float *zr = sq->z + ((int64_t)h * R1 + i % R1) * cap;
			const float *qh = a->q + (x * K_H + h) * K_D;
			for (int64_t j = j0; j < j1; j++) {
				const float *kj = sq->k + (j * K_HKV + h / GQ) * K_D;
				float dot = 0.0f;
				for (int d = 0; d < K_D; d++)
					dot += qh[d] * kj[d];
				zr[j] = K_SCALE * dot;
			}
		}
		break;
	case 2: /* steps 2-3 (they read neighbouring columns of row i), block maxima */
		for (int h = 0; h < K_H; h++) {
#if K_CQ
			conv_cols(sq->z + (int64_t)h * R1 * cap, cap, i, a->kq_pre + h * K_CQ * K_CK,
				  K_CQ, K_CK, K_OK, R1, j0, j1, s + h * sc);
#else
			memcpy(s + h * sc + j0, sq->z + ((int64_t)h * R1 + i % R1) * cap + j0,
			       sizeof(float) * (size_t)(j1 - j0));
#endif
		}
#if K_HPRE
		for (int h = 0; h < K_H; h++) {
			float *mr = m + h * sc;
			for (int64_t j = j0; j < j1; j++)
				mr[j] = 0.0f;
			for (int h2 = 0; h2 < K_H; h2++) {
				const float wv = a->head_pre[h * K_H + h2], *sr = s + h2 * sc;
				for (int64_t j = j0; j < j1; j++)
					mr[j] += wv * sr[j];
			}
		}
		for (int h = 0; h < K_H; h++)
			memcpy(s + h * sc + j0, m + h * sc + j0, sizeof(float) * (size_t)(j1 - j0));
#endif
		for (int h = 0; h < K_H; h++) {
			float mx = -INFINITY;
			for (int64_t j = j0; j < j1; j++)
				mx = s[h * sc + j] > mx ? s[h * sc + j] : mx;
			RMAX(red, blk)[h] = mx;
		}
		break;
	case 3: /* step 4, first half: exponentials into the probability ring, block sums */
		for (int h = 0; h < K_H; h++) {
			float mx = -INFINITY, sum = 0.0f;
			for (int64_t b = 0; b < nblk; b++)
				mx = RMAX(red, b)[h] > mx ? RMAX(red, b)[h] : mx;
			const float *sr = s + h * sc;
			float *pw = sq->p + ((int64_t)h * R2 + i % R2) * cap;
			for (int64_t j = j0; j < j1; j++)
				sum += (pw[j] = expf(sr[j] - mx));
			RSUM(red, blk)[h] = sum;
		}
		break;
	case 4: /* step 4, second half: normalise (every item adds the sums in block order) */
		for (int h = 0; h < K_H; h++) {
			float sum = 0.0f;
			for (int64_t b = 0; b < nblk; b++)
				sum += RSUM(red, b)[h];
			const float inv = 1.0f / sum;
			float *pw = sq->p + ((int64_t)h * R2 + i % R2) * cap;
			for (int64_t j = j0; j < j1; j++)
				pw[j] *= inv;
		}
		break;
	case 5: /* steps 5-7: post convolution into m, head mixing into s, partial P.V */
		for (int h = 0; h < K_H; h++) {
#if K_CQ2
			conv_cols(sq->p + (int64_t)h * R2 * cap, cap, i,
				  a->kq_post + h * K_CQ2 * K_CK2, K_CQ2, K_CK2, K_OK2, R2, j0, j1,
				  m + h * sc);
#else
			memcpy(m + h * sc + j0, sq->p + ((int64_t)h * R2 + i % R2) * cap + j0,
			       sizeof(float) * (size_t)(j1 - j0));
#endif
		}
		for (int h = 0; h < K_H; h++) {
			float *sr = s + h * sc;
#if K_HPOST == 1
			const int g = h / K_HC, oo = h % K_HC;
			for (int64_t j = j0; j < j1; j++)
				sr[j] = 0.0f;
			for (int in = 0; in < K_HC; in++) {
				const float wv = a->head_post[(g * K_HC + in) * K_HC + oo];
				const float *mr = m + (g * K_HC + in) * sc;
				for (int64_t j = j0; j < j1; j++)
					sr[j] += wv * mr[j];
			}
#elif K_HPOST == 2
			for (int64_t j = j0; j < j1; j++)
				sr[j] = 0.0f;
			for (int h2 = 0; h2 < K_H; h2++) {
				const float wv = a->head_post_linear[h * K_H + h2], *mr = m + h2 * sc;
				for (int64_t j = j0; j < j1; j++)
					sr[j] += wv * mr[j];
			}
#else
			memcpy(sr + j0, m + h * sc + j0, sizeof(float) * (size_t)(j1 - j0));
#endif
			float *ov = ROUT(red, blk) + h * K_D;
			for (int d = 0; d < K_D; d++)
				ov[d] = 0.0f;
			for (int64_t j = j0; j < j1; j++) {
				const float pj = sr[j], *vj = sq->v + (j * K_HKV + h / GQ) * K_D;
				for (int d = 0; d < K_D; d++)
					ov[d] += pj * vj[d];
			}
		}
		break;
	}
}

/* Steps 7-9 of sequence x: the partial outputs added in block order, group norm, gate. */
static void finish(const struct mta_dargs *a, int64_t x)
{
	const float *red = RED(a, x);
	const int64_t nblk = DNB(a->seq[x].pos + 1);
	float *o = a->o + x * K_H * K_D;
	for (int h = 0; h < K_H; h++) {
		float ov[K_D];
		for (int d = 0; d < K_D; d++)
			ov[d] = 0.0f;
		for (int64_t b = 0; b < nblk; b++)
			for (int d = 0; d < K_D; d++)
				ov[d] += ROUT(red, b)[h * K_D + d];
#if K_GN
		float ms = 0.0f;
		for (int d = 0; d < K_D; d++)
			ms += ov[d] * ov[d];
		const float rs = (1.0f / sqrtf(ms / K_D + 1e-5f)) * (K_GNR ? a->gn_rescale : 1.0f);
		for (int d = 0; d < K_D; d++)
			ov[d] = ov[d] * rs * a->gn_weight[d];
#endif
#if K_GATE
		float g = a->gate_b;
		for (int d = 0; d < K_D; d++)
			g += ov[d] * a->gate_w[d];
		const float sg = 1.0f / (1.0f + expf(-g));
		for (int d = 0; d < K_D; d++)
			ov[d] *= sg;
#endif
		memcpy(o + h * K_D, ov, sizeof ov);
	}
}

/* Items of sequence x in a phase. */
static int64_t nitems(const struct mta_dargs *a, int phase, int64_t x)
{
	return phase == 6 ? 1 : DNB(a->seq[x].pos + 1);
}

/*
 * A thread claims items from a shared counter until none is left (so a pool
 * that starts fewer threads than asked still does every item) and walks a
 * forward-only cursor (sequence x, block b) to each: the counter only grows.
 * Which thread computes an item changes nothing in its result.
 */
static void worker(void *arg, int tid)
{
	struct job *jb = arg;
	const struct mta_dargs *a = jb->a;
	int64_t x = 0, b = 0, g = 0; /* item g is block b of sequence x */
	(void)tid;
	for (;;) {
		const int64_t w = __atomic_fetch_add(&jb->next, 1, __ATOMIC_RELAXED);
		while (x < a->n) {
			const int64_t left = nitems(a, jb->phase, x) - b;
			if (w < g + left) {
				b += w - g;
				g = w;
				break;
			}
			g += left;
			x++;
			b = 0;
		}
		if (x >= a->n)
			return;
		if (jb->phase == 6)
			finish(a, x);
		else
			item(a, jb->phase, x, b);
	}
}

int mta_cpu_decode(const struct mta_dargs *a)
{
	if (!a || a->n < 0 || !a->work)
		return 2;
	int64_t items = 0;
	for (int64_t b = 0; b < a->n; b++) {
		if (a->seq[b].pos < 0 || a->seq[b].pos >= a->scap || a->seq[b].pos >= a->seq[b].cap)
			return 2;
		items += DNB(a->seq[b].pos + 1);
	}
	/* threads: as many as asked, never more than the items (so a short row stays on one) */
	int nthr = a->pool_run && a->nthreads > 1 ? a->nthreads : 1;
	if (K_THR > 0 && nthr > K_THR)
		nthr = K_THR;
	if (nthr > items)
		nthr = items > 0 ? (int)items : 1;
	for (int phase = 1; phase <= 6; phase++) {
		struct job jb = { a, phase, 0 };
		if (nthr > 1)
			a->pool_run(a->pool, nthr, worker, &jb);
		else
			worker(&jb, 0);
	}
	return 0;
}
