/*
 * mta_cpu.c: template of the fused, tiled CPU kernel for the MTA forward
 * (MTA.md). gen/cgen.c prepends #defines of the K_* constants below and
 * pastes mta_kargs.h in place of its #include; on its own, this file compiles
 * with the defaults (every option on), which the tests check.
 *
 * Work. One work item is (batch b, block of K_HPB heads, tile of K_BQ query
 * rows). Items go to pthreads through an atomic counter, heaviest (latest)
 * query tiles first, because causal tiles cost in proportion to their row.
 *
 * Memory. No T x T matrix exists: each thread owns one workspace of
 * WS_FLOATS floats (a compile-time constant; see mta_cpu_info), allocated
 * once per call, holding the q rows of its tile with their halo, one key tile
 * with its halo, logits and probabilities of one (query tile, key tile) pair,
 * and the output accumulators.
 *
 * Algorithm. The pre-softmax part (logits, kq_pre, head_pre, mask) is
 * recomputed per key tile from a halo of Z (raw scaled logits): rows
 * i0-(cq-1).. and columns j0-ok..j0+bk-1-ok+ck-1, zero where col > row or
 * outside [0,T). Without a post-softmax step the softmax is online
 * (running max and sum, rescaled accumulators), one pass. With one (kq_post
 * and/or head mixing after softmax) normalised probabilities of halo rows
 * and columns are needed, which an online softmax cannot give, so there are
 * two passes: pass 1 finds each row's max and sum for the tile rows and the
 * cq2-1 rows before them; pass 2 recomputes the logits of those rows with a
 * key halo for ck2, normalises them, convolves, mixes heads and accumulates
 * P.V. Recomputing costs twice the logit work but keeps memory O(tile).
 *
 * Everything is float32 with float32 accumulation; no fast-math, so the
 * loops are written so that the compiler can vectorise them without
 * reassociating sums: independent columns or d-lanes innermost, and the
 * dot-product reduction split into K_VEC explicit partial sums (K_ALGO 0) or
 * turned into a column-vectorised outer-product form (K_ALGO 1).
 */
#include <math.h>
#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "mta_kargs.h"

/* ---- constants (defaults: a small problem with every option on) ---- */
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
#define K_DTYPE 0      /* 0 f32, 1 bf16, 2 f16 */
#define K_BQ 8         /* query rows per tile */
#define K_BK 16        /* key columns per tile */
#define K_HPB 4        /* heads per block */
#define K_VEC 8        /* partial sums of a dot product (algo 0) */
#define K_THREADS 0    /* default worker threads, 0: all cores */
#define K_ALGO 0       /* 0: d-lane dot products, 1: column-vectorised */
#endif

/* A missing convolution is the identity: a 1x1 kernel at offset 0. */
#define CQ1 (K_CQ ? K_CQ : 1)
#define CK1 (K_CK ? K_CK : 1)
#define OK1 (K_CK ? K_OK : 0)
#define CQ2E (K_CQ2 ? K_CQ2 : 1)
#define CK2E (K_CK2 ? K_CK2 : 1)
#define OK2E (K_CK2 ? K_OK2 : 0)
#define TWOPASS (K_CQ2 || K_HPOST)
#define GQ (K_H / K_HKV)
#define NR (K_BQ + CQ2E - 1) /* logit rows per tile (with post halo) */
#define NC (K_BK + CK2E - 1) /* logit columns per tile (with post halo) */
#define ZR (NR + CQ1 - 1)    /* raw-logit rows (with pre halo) */
#define ZC (NC + CK1 - 1)    /* raw-logit columns (with pre halo) */
#define AL(n) (((n) + 15) / 16 * 16) /* 64-byte aligned regions */

/* Workspace regions, in floats. Z doubles as the mixing scratch, so it must
 * hold a whole [HPB][NR][NC] tile even without a pre-softmax halo. */
#define ZSZ (ZR * ZC > NR * NC ? ZR * ZC : NR * NC)
#define W_Q 0
#define W_K (W_Q + AL(K_HPB * ZR * K_D))
#define W_V (W_K + AL(K_HPB * ZC * K_D))
#define W_Z (W_V + AL(K_HPB * K_BK * K_D))
#define W_S (W_Z + AL(K_HPB * ZSZ))
#define W_T (W_S + AL(K_HPB * NR * NC))
#define W_M (W_T + AL(K_HPB * K_BQ * K_BK))
#define W_L (W_M + AL(K_HPB * NR))
#define W_A (W_L + AL(K_HPB * NR))
#define WS_FLOATS (W_A + AL(K_HPB * K_BQ * K_D))

const struct mta_kinfo mta_cpu_info = {
	MTA_KARGS_ABI, (int)sizeof(struct mta_kargs), K_DTYPE, (int64_t)WS_FLOATS * 4
};

static inline float ld(const void *base, int64_t i)
{
#if K_DTYPE == 0
	return ((const float *)base)[i];
#else
	uint16_t h = ((const uint16_t *)base)[i];
	uint32_t u;
	float f;
#if K_DTYPE == 1
	u = (uint32_t)h << 16;
#else
	uint32_t s = (uint32_t)(h >> 15) << 31, e = (h >> 10) & 31u, m = h & 1023u;
	if (e == 31)
		u = s | 0x7f800000u | (m << 13);
	else if (e)
		u = s | ((e + 112) << 23) | (m << 13);
	else {
		f = (float)m * 0x1p-24f; /* zero or subnormal, exact */
		return s ? -f : f;
	}
#endif
	memcpy(&f, &u, sizeof f);
	return f;
#endif
}

struct job {
	const struct mta_kargs *a;
	int64_t nitems, ntiles;
	int64_t next; /* next work item, taken atomically */
	int err;
};

/* Scaled dot product of two float rows of K_D elements. */
static inline float dot(const float *x, const float *y)
{
	float acc[K_VEC] = { 0 };
	int d = 0;
	for (; d + K_VEC <= K_D; d += K_VEC)
		for (int l = 0; l < K_VEC; l++)
			acc[l] += x[d + l] * y[d + l];
	for (; d < K_D; d++)
		acc[d % K_VEC] += x[d] * y[d];
	float s = 0;
	for (int l = 0; l < K_VEC; l++)
		s += acc[l];
	return s;
}

/* q rows r0-(CQ1-1) .. r0+nr-1 of heads h0.. into Q[hl][zr][d] (0 before row 0). */
static void load_q(const struct mta_kargs *a, float *ws, int64_t b, int h0, int64_t r0, int nr)
{
	for (int hl = 0; hl < K_HPB; hl++)
		for (int zr = 0; zr < nr + CQ1 - 1; zr++) {
			float *dst = ws + W_Q + (hl * ZR + zr) * K_D;
			int64_t row = r0 - (CQ1 - 1) + zr;
			int64_t off = b * a->q_sb + row * a->q_st + (int64_t)(h0 + hl) * a->q_sh;
			for (int d = 0; d < K_D; d++)
				dst[d] = row < 0 ? 0.0f : ld(a->q, off + d);
		}
}

/*
 * Pre-softmax logits S[hl][r][c] of rows r0+r (r < nr) and columns c0+c
 * (c < nc): raw logits with their halo, kq_pre, head_pre. Entries with
 * col > row are left unmasked (the caller masks); rows before 0 are junk
 * the caller skips. Needs load_q(r0, nr) first.
 */
static void logits(const struct mta_kargs *a, float *ws, int64_t b, int h0, int64_t r0, int nr,
		   int64_t c0, int nc)
{
	const int nzr = nr + CQ1 - 1, nzc = nc + CK1 - 1;
	const int64_t zc0 = c0 - OK1, zr0 = r0 - (CQ1 - 1);
#if K_CQ
	float *z = ws + W_Z;
	const int zs = ZC;
#else
	float *z = ws + W_S; /* no convolution: raw logits are the logits */
	const int zs = NC;
#endif
	for (int hl = 0; hl < K_HPB; hl++) {
		const int hk = (h0 + hl) / GQ;
		float *kt = ws + W_K + hl * ZC * K_D;
		for (int zc = 0; zc < nzc; zc++) {
			int64_t col = zc0 + zc;
			int64_t off = b * a->k_sb + col * a->k_st + (int64_t)hk * a->k_sh;
			for (int d = 0; d < K_D; d++) {
				float x = col < 0 || col >= a->T ? 0.0f : ld(a->k, off + d);
#if K_ALGO == 1
				kt[d * ZC + zc] = x; /* transposed: columns innermost */
#else
				kt[zc * K_D + d] = x;
#endif
			}
		}
		const float *qt = ws + W_Q + hl * ZR * K_D;
		float *zh = z + hl * (K_CQ ? ZR * ZC : NR * NC);
		for (int zr = 0; zr < nzr; zr++) {
			float *zrow = zh + zr * zs;
			int64_t row = zr0 + zr;
			/* valid columns: 0 <= col <= row */
			int64_t lo = -zc0 > 0 ? -zc0 : 0, hi = row - zc0 + 1;
			if (hi > nzc)
				hi = nzc;
			if (row < 0 || hi < lo)
				hi = lo = 0;
			for (int zc = 0; zc < nzc; zc++)
				zrow[zc] = 0.0f;
			const float *qr = qt + zr * K_D;
#if K_ALGO == 1
			for (int d = 0; d < K_D; d++) {
				const float qd = qr[d], *kd = kt + d * ZC;
				for (int64_t zc = lo; zc < hi; zc++)
					zrow[zc] += qd * kd[zc];
			}
			for (int64_t zc = lo; zc < hi; zc++)
				zrow[zc] *= K_SCALE;
#else
			for (int64_t zc = lo; zc < hi; zc++)
				zrow[zc] = K_SCALE * dot(qr, kt + zc * K_D);
#endif
		}
#if K_CQ
		/* kq_pre: cross-correlation, kernel row CQ-1 is the query row itself */
		const float *w = a->kq_pre + (h0 + hl) * K_CQ * K_CK;
		for (int r = 0; r < nr; r++) {
			float *srow = ws + W_S + (hl * NR + r) * NC;
			for (int c = 0; c < nc; c++)
				srow[c] = 0.0f;
			for (int i = 0; i < K_CQ; i++)
				for (int j = 0; j < K_CK; j++) {
					const float wij = w[i * K_CK + j], *zrow = zh + (r + i) * ZC + j;
					for (int c = 0; c < nc; c++)
						srow[c] += wij * zrow[c];
				}
		}
#endif
	}
#if K_HPRE
	/* head_pre: S[h] <- sum_h' W[h,h'] S[h'] (the block holds all heads) */
	float *t = ws + W_Z;
	for (int h = 0; h < K_H; h++)
		for (int r = 0; r < nr; r++) {
			float *dst = t + (h * NR + r) * NC;
			for (int c = 0; c < nc; c++)
				dst[c] = 0.0f;
			for (int h2 = 0; h2 < K_H; h2++) {
				const float wh = a->head_pre[h * K_H + h2];
				const float *src = ws + W_S + (h2 * NR + r) * NC;
				for (int c = 0; c < nc; c++)
					dst[c] += wh * src[c];
			}
		}
	memcpy(ws + W_S, t, sizeof(float) * K_H * NR * NC);
#endif
}

/* v rows c0 .. c0+nc-1 of heads h0.. into V[hl][c][d]. */
static void load_v(const struct mta_kargs *a, float *ws, int64_t b, int h0, int64_t c0, int nc)
{
	for (int hl = 0; hl < K_HPB; hl++)
		for (int c = 0; c < nc; c++) {
			float *dst = ws + W_V + (hl * K_BK + c) * K_D;
			int64_t off = b * a->v_sb + (c0 + c) * a->v_st + (int64_t)((h0 + hl) / GQ) * a->v_sh;
			for (int d = 0; d < K_D; d++)
				dst[d] = ld(a->v, off + d);
		}
}

/* acc[d] += sum_c p[c] * V[c][d] over c < n. */
static inline void pv(float *acc, const float *p, const float *v, int n)
{
	for (int c = 0; c < n; c++) {
		const float pc = p[c], *vc = v + c * K_D;
		for (int d = 0; d < K_D; d++)
			acc[d] += pc * vc[d];
	}
}

#if !TWOPASS
/* One pass: online softmax over key tiles, P.V into the accumulators. */
static void tile_onepass(const struct mta_kargs *a, float *ws, int64_t b, int h0, int64_t i0, int nq)
{
	float *m = ws + W_M, *l = ws + W_L, *acc = ws + W_A;
	for (int x = 0; x < K_HPB * NR; x++) {
		m[x] = -INFINITY;
		l[x] = 0.0f;
	}
	memset(acc, 0, sizeof(float) * K_HPB * K_BQ * K_D);
	load_q(a, ws, b, h0, i0, nq);
	for (int64_t j0 = 0; j0 <= i0 + nq - 1; j0 += K_BK) {
		const int nc = a->T - j0 < K_BK ? (int)(a->T - j0) : K_BK;
		logits(a, ws, b, h0, i0, nq, j0, nc);
		load_v(a, ws, b, h0, j0, nc);
		for (int hl = 0; hl < K_HPB; hl++)
			for (int r = 0; r < nq; r++) {
				float *s = ws + W_S + (hl * NR + r) * NC;
				int64_t n64 = i0 + r - j0 + 1;
				const int n = n64 < nc ? (int)n64 : nc; /* mask col > row */
				if (n <= 0)
					continue;
				float mx = m[hl * NR + r];
				for (int c = 0; c < n; c++)
					mx = s[c] > mx ? s[c] : mx;
				if (mx == -INFINITY)
					continue;
				const float alpha = expf(m[hl * NR + r] - mx);
				float sum = 0.0f;
				for (int c = 0; c < n; c++)
					sum += (s[c] = expf(s[c] - mx));
				m[hl * NR + r] = mx;
				l[hl * NR + r] = l[hl * NR + r] * alpha + sum;
				float *ar = acc + (hl * K_BQ + r) * K_D;
				for (int d = 0; d < K_D; d++)
					ar[d] *= alpha;
				pv(ar, s, ws + W_V + hl * K_BK * K_D, n);
			}
	}
	for (int hl = 0; hl < K_HPB; hl++)
		for (int r = 0; r < nq; r++) {
			float *ar = acc + (hl * K_BQ + r) * K_D;
			const float inv = 1.0f / l[hl * NR + r];
			for (int d = 0; d < K_D; d++)
				ar[d] *= inv;
		}
}
#else
/* Two passes: row statistics, then normalised, convolved, mixed P.V. */
static void tile_twopass(const struct mta_kargs *a, float *ws, int64_t b, int h0, int64_t i0, int nq)
{
	float *m = ws + W_M, *l = ws + W_L, *acc = ws + W_A;
	const int64_t r0 = i0 - (CQ2E - 1), last = i0 + nq - 1;
	const int nr = nq + CQ2E - 1;
	for (int x = 0; x < K_HPB * NR; x++) {
		m[x] = -INFINITY;
		l[x] = 0.0f;
	}
	memset(acc, 0, sizeof(float) * K_HPB * K_BQ * K_D);
	load_q(a, ws, b, h0, r0, nr);

	/* pass 1: max and sum of each row r0.. over its columns 0..row */
	for (int64_t j0 = 0; j0 <= last; j0 += K_BK) {
		const int nc = a->T - j0 < K_BK ? (int)(a->T - j0) : K_BK;
		logits(a, ws, b, h0, r0, nr, j0, nc);
		for (int hl = 0; hl < K_HPB; hl++)
			for (int r = 0; r < nr; r++) {
				const float *s = ws + W_S + (hl * NR + r) * NC;
				int64_t n64 = r0 + r - j0 + 1;
				const int n = n64 < nc ? (int)n64 : nc;
				if (r0 + r < 0 || n <= 0)
					continue;
				float mx = m[hl * NR + r], sum = 0.0f;
				for (int c = 0; c < n; c++)
					mx = s[c] > mx ? s[c] : mx;
				if (mx == -INFINITY)
					continue;
				for (int c = 0; c < n; c++)
					sum += expf(s[c] - mx);
				l[hl * NR + r] = l[hl * NR + r] * expf(m[hl * NR + r] - mx) + sum;
				m[hl * NR + r] = mx;
			}
	}

	/* pass 2 */
	for (int64_t j0 = 0; j0 <= last; j0 += K_BK) {
		const int nc = a->T - j0 < K_BK ? (int)(a->T - j0) : K_BK;
		const int64_t c0 = j0 - OK2E;
		logits(a, ws, b, h0, r0, nr, c0, nc + CK2E - 1);
		load_v(a, ws, b, h0, j0, nc);
		/* P in place: normalised where 0 <= col <= row, else 0 */
		for (int hl = 0; hl < K_HPB; hl++)
			for (int r = 0; r < nr; r++) {
				float *s = ws + W_S + (hl * NR + r) * NC;
				const int64_t row = r0 + r;
				const float mx = m[hl * NR + r], inv = 1.0f / l[hl * NR + r];
				for (int c = 0; c < nc + CK2E - 1; c++) {
					int64_t col = c0 + c;
					s[c] = row >= 0 && col >= 0 && col <= row ? expf(s[c] - mx) * inv : 0.0f;
				}
			}
		/* kq_post (identity when absent) into T; the mask col > row after it is
		 * applied by the bound of the P.V loop below (mixing keeps columns) */
		for (int hl = 0; hl < K_HPB; hl++)
			for (int r = 0; r < nq; r++) {
				float *t = ws + W_T + (hl * K_BQ + r) * K_BK;
				for (int c = 0; c < nc; c++)
					t[c] = 0.0f;
#if K_CQ2
				const float *w = a->kq_post + (h0 + hl) * K_CQ2 * K_CK2;
				for (int i = 0; i < K_CQ2; i++)
					for (int j = 0; j < K_CK2; j++) {
						const float wij = w[i * K_CK2 + j];
						const float *p = ws + W_S + (hl * NR + r + i) * NC + j;
						for (int c = 0; c < nc; c++)
							t[c] += wij * p[c];
					}
#else
				memcpy(t, ws + W_S + (hl * NR + r) * NC, sizeof(float) * nc);
#endif
			}
		const float *p = ws + W_T;
#if K_HPOST
		/* head mixing after softmax, into the Z region as [hl][BQ][BK] */
		float *u = ws + W_Z;
		for (int ho = 0; ho < K_HPB; ho++)
			for (int r = 0; r < nq; r++) {
				float *dst = u + (ho * K_BQ + r) * K_BK;
				for (int c = 0; c < nc; c++)
					dst[c] = 0.0f;
#if K_HPOST == 1
				/* P[g*c+o] <- sum_i head_post[g,i,o] P[g*c+i] */
				const int g = (h0 + ho) / K_HC, o = (h0 + ho) % K_HC, base = ho - o;
				for (int i = 0; i < K_HC; i++) {
					const float wh = a->head_post[(g * K_HC + i) * K_HC + o];
					const float *src = p + ((base + i) * K_BQ + r) * K_BK;
					for (int c = 0; c < nc; c++)
						dst[c] += wh * src[c];
				}
#else
				for (int h2 = 0; h2 < K_H; h2++) {
					const float wh = a->head_post_linear[ho * K_H + h2];
					const float *src = p + (h2 * K_BQ + r) * K_BK;
					for (int c = 0; c < nc; c++)
						dst[c] += wh * src[c];
				}
#endif
			}
		p = u;
#endif
		for (int hl = 0; hl < K_HPB; hl++)
			for (int r = 0; r < nq; r++) {
				int64_t n64 = i0 + r - j0 + 1;
				const int n = n64 < nc ? (int)n64 : nc;
				if (n > 0)
					pv(acc + (hl * K_BQ + r) * K_D, p + (hl * K_BQ + r) * K_BK,
					   ws + W_V + hl * K_BK * K_D, n);
			}
	}
}
#endif

/* Group norm, gate, store: the accumulators of rows i0.. become o. */
static void finish(const struct mta_kargs *a, float *ws, int64_t b, int h0, int64_t i0, int nq)
{
	for (int hl = 0; hl < K_HPB; hl++)
		for (int r = 0; r < nq; r++) {
			float *o = ws + W_A + (hl * K_BQ + r) * K_D;
#if K_GN
			float ms = 0.0f;
			for (int d = 0; d < K_D; d++)
				ms += o[d] * o[d];
			const float rs = (1.0f / sqrtf(ms / K_D + 1e-5f)) * (K_GNR ? a->gn_rescale : 1.0f);
			for (int d = 0; d < K_D; d++)
				o[d] = o[d] * rs * a->gn_weight[d];
#endif
#if K_GATE
			float g = a->gate_b;
			for (int d = 0; d < K_D; d++)
				g += o[d] * a->gate_w[d];
			const float sg = 1.0f / (1.0f + expf(-g));
			for (int d = 0; d < K_D; d++)
				o[d] *= sg;
#endif
			float *dst = a->o + b * a->o_sb + (i0 + r) * a->o_st + (int64_t)(h0 + hl) * a->o_sh;
			memcpy(dst, o, sizeof(float) * K_D);
		}
}

static void *worker(void *arg)
{
	struct job *j = arg;
	const struct mta_kargs *a = j->a;
	float *ws = aligned_alloc(64, sizeof(float) * WS_FLOATS);
	if (!ws) {
		__atomic_store_n(&j->err, MTA_KERR_NOMEM, __ATOMIC_RELAXED);
		return NULL;
	}
	const int64_t per_tile = a->B * (K_H / K_HPB);
	for (;;) {
		int64_t w = __atomic_fetch_add(&j->next, 1, __ATOMIC_RELAXED);
		if (w >= j->nitems)
			break;
		const int64_t qt = j->ntiles - 1 - w / per_tile, rest = w % per_tile;
		const int64_t b = rest / (K_H / K_HPB), i0 = qt * K_BQ;
		const int h0 = (int)(rest % (K_H / K_HPB)) * K_HPB;
		const int nq = a->T - i0 < K_BQ ? (int)(a->T - i0) : K_BQ;
#if TWOPASS
		tile_twopass(a, ws, b, h0, i0, nq);
#else
		tile_onepass(a, ws, b, h0, i0, nq);
#endif
		finish(a, ws, b, h0, i0, nq);
	}
	free(ws);
	return NULL;
}

int mta_cpu_kernel(const struct mta_kargs *a)
{
	if (!a || a->dtype != K_DTYPE || a->B < 1 || a->T < 1)
		return MTA_KERR_ARGS;
	struct job j = { a, 0, (a->T + K_BQ - 1) / K_BQ, 0, 0 };
	j.nitems = j.ntiles * a->B * (K_H / K_HPB);
	long n = a->nthreads > 0 ? a->nthreads : K_THREADS;
	if (n <= 0)
		n = sysconf(_SC_NPROCESSORS_ONLN);
	if (n < 1)
		n = 1;
	if (n > j.nitems)
		n = (long)j.nitems;
	if (n > 256)
		n = 256;
	pthread_t tid[256];
	long started = 0;
	/* a thread that cannot be started leaves its share to the others */
	while (started < n - 1 && !pthread_create(&tid[started], NULL, worker, &j))
		started++;
	worker(&j);
	for (long i = 0; i < started; i++)
		pthread_join(tid[i], NULL);
	return j.err;
}
