/*
 * mta_cpu2.c: template of the v2 family of CPU kernels for the MTA forward
 * (MTA.md): one pass over whole rows, whatever follows the softmax.
 * gen/cpu/cgen.c prepends #defines of the K_* constants below and pastes
 * the files it includes; on its own, this file compiles with the defaults
 * (every option on), which the tests check.
 *
 * Idea. A softmax row is complete once all of its columns are computed, so
 * the kernel computes whole rows: a block of K_BQ query rows over every key
 * column it needs, for a block of K_HPB heads. Its scores go into a band of
 * rows that lives as long as the block, so the row sums are exact before
 * anything after the softmax runs: no second pass, one exp per score. The
 * halos of the convolutions are rows of earlier blocks, which the same
 * thread has just computed: the band is a ring of rows (K_BQ new ones and
 * the cq2-1 before them), and so is a store of the last cq-1 rows of raw
 * logits, so no halo row and no halo column is ever recomputed. Memory
 * grows as T (rows of T floats), never as T^2.
 *
 * Work. Consecutive blocks must run on one thread, so the work items are
 * chains: a (batch, head block) and a range of rows, the rows cut so that
 * every chain has about the same causal work. A chain that does not start
 * at row 0 first computes the halo rows before it (cq-1 + cq2-1 rows of
 * logits, cq2-1 of probabilities): the only recomputation, a few rows per
 * chain. Items go to the threads of the caller's pool through an atomic
 * counter. Before them, k and v are packed once per call for all threads
 * (k transposed in panels, v as dense rows of floats), converted from
 * bf16/f16 on the way. Small problems run on one thread.
 *
 * Layout. Rows are contiguous and SIMD vectors run over key columns, so
 * each step is a register-blocked micro-kernel over (rows x column
 * vectors): q.k as outer products of broadcast q elements and k^T vectors;
 * the key-query convolutions as shifted loads along the row, each loaded
 * vector feeding every output row it reaches, the kernel column's weights
 * held in registers; head mixing over the heads' rows; P.V as broadcast
 * probabilities times rows of v. Columns past a row's diagonal are kept at
 * zero (the convolutions read them as the padding MTA.md defines) and the
 * softmax only looks at columns 0..row.
 *
 * Per block (rows i0..i0+nr, columns up to lim = i0+nr):
 *   A  for each chunk of K_BK columns and each head: q.k into the head's Z
 *      chunk (raw logits, zero past the diagonal; the chunk also holds the
 *      cq-1 halo rows and the ck-1 columns before it), kq_pre over it
 *      (lagging ck-1-ok columns behind, so that its right halo exists);
 *      then head_pre into the band, and the softmax's exps of the chunk
 *      while it is in cache, against each row's running reference;
 *   C  for each chunk: the rows normalised just ahead of it (P = e / sum),
 *      kq_post over P rows i-cq2+1..i, masked past the diagonal,
 *      head_post, then P.V into the outputs;
 *   then group norm, gate, store.
 *
 * Everything is float32 with float32 accumulation and no fast-math; exp is
 * vexp_sm() of templates/mta_cpu_vec.h (vexp() for the gate).
 */
#include <math.h>
#include <stdint.h>
#include <string.h>

#include "runtime/core/mta_kargs.h"

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
#define K_BQ 8         /* query rows per block */
#define K_BK 64        /* key columns per chunk */
#define K_HPB 4        /* heads per block */
#define K_VEC 8        /* floats per SIMD vector: 4, 8 or 16 */
#define K_THR 0        /* default worker threads, 0: all cores */
#define K_ALGO 0       /* the one algorithm above */
#define K_VERSION 2    /* kernel family (this file is v2) */
#endif
/*
 * Software prefetch of the next k^T panel (q.k) and of the next PJB rows of
 * v (P.V), spread over the row groups that reuse the current ones from L1.
 * 0: none; 1: within a chunk of one head only (the last panel of each
 * head's chunk prefetched nothing, and the last slab of v the same head's
 * next chunk, used only after the other heads); 2: the next in the order of
 * use, across heads and chunks (the last panel of a head's chunk prefetches
 * the next head's first, the last head's the next chunk's first).
 * Not a tunable (yet): prepend #define K_PF N to a generated source to
 * compare (bench/kprof.c --ab; docs/bench-cpu.md has the measurements).
 */
#ifndef K_PF
#define K_PF 2
#endif
/*
 * Scores through a chunk buffer (K_SB 1): kq_pre or head_pre write a chunk's
 * pre-softmax scores into the chunk buffer y (free in phase A, in L1/L2),
 * and the softmax reads them there and writes the exps into the band, so
 * each band line is written once, by a sequential pass, instead of first by
 * the head mixing's interleaved stores (the band's lines come from L3: its
 * rows were last used a block ago) and then again by the softmax in place.
 * 0: the scores go straight into the band. Only with raw logits kept apart
 * (HAVEZ); not a tunable (yet), like K_PF.
 */
#ifndef K_SB
#define K_SB 1
#endif
#if K_HPB == 0         /* hpb=0 in a spec means all heads */
#undef K_HPB
#define K_HPB K_H
#endif

#define MAX2(x, y) ((x) > (y) ? (x) : (y))
#define MIN2(x, y) ((x) < (y) ? (x) : (y))
#define RUP(n, m) (((n) + (m) - 1) / (m) * (m))

/* A missing convolution is the identity: a 1x1 kernel at offset 0. */
#define CQ1 (K_CQ ? K_CQ : 1)
#define CK1 (K_CQ ? K_CK : 1)
#define OK1 (K_CQ ? K_OK : 0)
#define CQ2E (K_CQ2 ? K_CQ2 : 1)
#define CK2E (K_CQ2 ? K_CK2 : 1)
#define OK2E (K_CQ2 ? K_OK2 : 0)
#define POST (K_CQ2 || K_HPOST) /* a step after the softmax */
#define HAVEZ (K_CQ || K_HPRE)  /* raw logits kept apart from the band, in chunks */
#define SB (K_SB && HAVEZ)      /* scores through the chunk buffer y */
#define GQ (K_H / K_HKV)
#define VL K_VEC
#define BR K_BQ
#define BC K_BK

/* Halos: rows above and columns right of an output that a convolution reads. */
#define RH1 (CQ1 - 1)
#define RH2 (CQ2E - 1)
#define R1 (CK1 - 1 - OK1)
#define R2 (CK2E - 1 - OK2E)
#define RHM MAX2(RH1, RH2)
#define RM MAX2(R1, R2)
#define LP RUP(MAX2(OK1, OK2E), VL) /* zero columns left of column 0 */
#define NZ (RH1 + BR)               /* rows of a Z chunk: the halo, then the block's */
#define ZL (CK1 - 1)                /* columns a Z chunk keeps from the one before */
#define XZ RUP(ZL + BC + 2 * VL, VL) /* row stride of a Z chunk */
#define NP (RH2 + BR)               /* rows of the P ring */
/*
 * Columns a row must read as zero past its diagonal: a row is a halo row
 * of blocks up to RH rows later, which read up to their last row + BR, plus
 * a convolution's right reach and one vector of overrun.
 */
#define ZX (RHM + BR + RM + 2 * VL)
#define DP RUP(K_D, VL) /* head dim of packed v and of the outputs */

/* Register budget: accumulators a micro-kernel may keep (a quarter of the registers stay free). */
#if defined(__AVX512F__)
#define NATIVE 16
#define NREGS 32
#elif defined(__AVX__)
#define NATIVE 8
#define NREGS 16
#else
#define NATIVE 4
#define NREGS 16
#endif
#define VREGS (VL > NATIVE ? VL / NATIVE : 1) /* registers one vector takes */
#define ACC MAX2(NREGS * 3 / 4 / VREGS, 2)
#define CV 4                                    /* column vectors of a q.k block */
#define QRBN(cv) MAX2(MIN2(ACC / (cv), 8), 1)   /* q.k rows per block of cv column vectors */
#define CQM MAX2(CQ1, CQ2E)
#define CACC MAX2(ACC - CQM - 2, 4)             /* conv accumulators, beside the weights */
/*
 * Conv rows per block, of one column vector each: a shifted vector feeds the
 * cq accumulators of the rows it reaches, so a block of rb rows loads
 * (rb + cq - 1) vectors per kernel column for rb*cq multiply-adds, and the
 * loads (misaligned: most cross a cache line) are what binds this loop. Tall
 * and narrow therefore beats square: on Zen 5 (perf-paper T=2048, one
 * thread, kprof --ab) 8 rows x 2 vectors ran 1.27x [1.16, 1.32] faster than
 * 4 x 4, and 16 x 1 1.09x [0.98, 1.22] faster than 8 x 2.
 */
#define CRB MAX2(MIN2(CACC, 16), 1)
#define DVN (DP / VL)                           /* vectors of one output row */
#define PDG MIN2(DVN, ACC)                      /* P.V: output vectors per block */
/*
 * P.V rows per block. With 32 registers, as many rows as fill the register
 * file with accumulators (8 rows at D=64, 5 at D=96, vec=16): GCC then keeps
 * one accumulator and the row pointers on the stack, but each v slab is
 * read from L1 half as often, and that measured 1.045x [0.995, 1.082]
 * faster (perf-paper T=4096) and 1.055x [0.965, 1.213] (paper T=2048) than
 * the 5 and 3 rows of a quarter of the registers kept free (kprof --ab,
 * docs/bench-cpu.md). With 16 registers, or rows of more than 6 registers
 * (not measured), that rule (fewer: GCC spills).
 */
#if NREGS >= 32 && PDG * VREGS <= 6
#define PRB MAX2(MIN2(NREGS / VREGS / PDG, 8), 1)
#else
#define PRB MAX2(MIN2((ACC - 4) / PDG, 8), 1)
#endif
#define PJB 64                                  /* P.V columns per pass over the rows (L1) */
#define XS RUP(BC + RM + VL, VL)                /* row stride of the chunk buffers */

#include "templates/mta_cpu_vec.h"

/* Per-thread workspace, floats: fixed part, and rows of the rings (which grow with T). */
#define W_FIXED (16 + K_HPB * BR * K_D + 3 * K_HPB * BR * XS + K_HPB * BR * DP + \
		 2 * RUP(K_HPB * BR, VL) + K_HPB * BR * VL + (HAVEZ ? K_HPB * NZ * XZ : 0) + 64)
#define W_ROWS (K_HPB * (RH1 + NP))
static int64_t row_stride(int64_t T)
{
	return LP + RUP(T + ZX + VL, VL);
}

/* Bytes per thread at T: at most ws_bytes + ws_per_t * T (row_stride <= T + the rest). */
const struct mta_kinfo mta_cpu_info = {
	MTA_KARGS_ABI, (int)sizeof(struct mta_kargs), K_DTYPE,
	4 * ((int64_t)W_FIXED + (int64_t)W_ROWS * (LP + ZX + 2 * VL)), 4 * (int64_t)W_ROWS
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

/* ---- micro-kernels (block sizes are constants once inlined) ---- */

/*
 * Packed k^T: panels of KP columns, each [d][KP] contiguous, so that a q.k
 * block streams through 4*K_D*KP contiguous bytes (rows of k^T a power of
 * two apart would share cache sets).
 */
#define KP (CV * VL)
static inline int64_t kidx(int d, int64_t c)
{
	return c / KP * (K_D * KP) + (int64_t)d * KP + c % KP;
}

/*
 * out[r][oc + lanes] = sum_d q[r][d] k^T[d][c + lanes], rows r < rb, cv
 * vectors (within a panel). pf (or NULL): 2*K_D cache lines from there are
 * prefetched, two per d (see qk_rows).
 */
INLINE void qk_blk(float *const *out, int64_t oc, const float *q, const float *kt, int64_t c,
		   const int rb, const int cv, const float *pf)
{
	vf acc[8][4];
	COUNT(CNT_QK, rb * cv * VL * K_D);
	for (int r = 0; r < rb; r++)
		for (int v = 0; v < cv; v++)
			acc[r][v] = vsplat(0.0f);
#pragma GCC unroll 2
	for (int d = 0; d < K_D; d++) {
		vf k[4];
		for (int v = 0; v < cv; v++)
			k[v] = vld(kt + kidx(d, c) + v * VL);
		if (pf) {
			__builtin_prefetch(pf + d * 32, 0, 2);
			__builtin_prefetch(pf + d * 32 + 16, 0, 2);
		}
		for (int r = 0; r < rb; r++) {
			const float x = q[r * K_D + d];
			for (int v = 0; v < cv; v++)
				acc[r][v] += x * k[v];
		}
	}
	for (int r = 0; r < rb; r++)
		for (int v = 0; v < cv; v++)
			vst(out[r] + oc + v * VL, acc[r][v]);
}

/*
 * out[r][c + lanes] = sum_{a<cq, b<ck} w[a*ck + b] src[r + a][c - ok + b + lanes],
 * rows r < rb (src holds rb + cq - 1 rows), one vector. Each shifted vector
 * is loaded once and feeds every output row it reaches; the cq weights of
 * one kernel column are broadcast into registers once (as memory operands
 * of the multiply-adds they would cost a load each, and the loads are what
 * limits this loop).
 */
INLINE void conv_blk(float *const *out, const float *const *src, const float *w, const int cq,
		     const int ck, const int ok, int64_t c, const int rb, const int step)
{
	vf acc[CRB]; /* rb <= CRB: groups of CRB, or of MIN2(CRB, 8) */
	COUNT(step, rb * VL * cq * ck);
	for (int r = 0; r < rb; r++)
		acc[r] = vsplat(0.0f);
	for (int b = 0; b < ck; b++) {
		vf wa[CQM];
#pragma GCC unroll 16
		for (int a = 0; a < cq; a++)
			wa[a] = vsplat(w[a * ck + b]);
#pragma GCC unroll 24
		for (int s = 0; s < rb + cq - 1; s++) {
			const vf z = vld(src[s] + c - ok + b);
#pragma GCC unroll 16
			for (int a = 0; a < cq; a++)
				if (s - a >= 0 && s - a < rb)
					acc[s - a] += wa[a] * z;
		}
	}
	for (int r = 0; r < rb; r++)
		vst(out[r] + c, acc[r]);
}

/* dst[o*ds + x] = sum_{i<g} w[(o0+o)*so + i*si] src[i*ss + x], o < hb, nv vectors from x. */
INLINE void mix_blk(float *dst, int64_t ds, const float *src, int64_t ss, const float *w, int so,
		    int si, const int g, int o0, const int hb, int64_t x, const int nv,
		    const int step)
{
	vf acc[8][2];
	COUNT(step, g * hb * nv * VL);
	for (int o = 0; o < hb; o++)
		for (int v = 0; v < nv; v++)
			acc[o][v] = vsplat(0.0f);
	for (int i = 0; i < g; i++) {
		vf y[2];
		for (int v = 0; v < nv; v++)
			y[v] = vld(src + i * ss + x + v * VL);
		for (int o = 0; o < hb; o++) {
			const float wo = w[(o0 + o) * so + i * si];
			for (int v = 0; v < nv; v++)
				acc[o][v] += wo * y[v];
		}
	}
	for (int o = 0; o < hb; o++)
		for (int v = 0; v < nv; v++)
			vst(dst + (o0 + o) * ds + x + v * VL, acc[o][v]);
}

/* Mix g heads (rows ss apart in src, ds apart in dst), columns [0, n) rounded up to vectors. */
INLINE void mix(float *dst, int64_t ds, const float *src, int64_t ss, const float *w, int so,
		int si, const int g, int64_t n, const int step)
{
	int64_t x = 0;
	for (; x + 2 * VL <= RUP(n, VL); x += 2 * VL) {
		int o0 = 0;
		for (; o0 + 8 <= g; o0 += 8)
			mix_blk(dst, ds, src, ss, w, so, si, g, o0, 8, x, 2, step);
		if (g % 8)
			mix_blk(dst, ds, src, ss, w, so, si, g, o0, g % 8, x, 2, step);
	}
	if (x < n) {
		int o0 = 0;
		for (; o0 + 8 <= g; o0 += 8)
			mix_blk(dst, ds, src, ss, w, so, si, g, o0, 8, x, 1, step);
		if (g % 8)
			mix_blk(dst, ds, src, ss, w, so, si, g, o0, g % 8, x, 1, step);
	}
}

/*
 * o[r][d0 + lanes] += sum_{j0<=j<j1} u[r][j] vp[j][d0 + lanes], rows r < rb,
 * dv vectors; fresh: o starts at 0 (the first columns of the block's rows),
 * so the outputs are neither cleared beforehand nor loaded. pf (or NULL):
 * two cache lines per j from there are prefetched (see phase_c).
 */
INLINE void pv_blk(float *o, const float *const *u, const float *vp, int64_t j0, int64_t j1,
		   int d0, const int rb, const int dv, int fresh, const float *pf)
{
	vf acc[8][PDG];
	COUNT(CNT_PV, rb * dv * VL * (j1 - j0));
	for (int r = 0; r < rb; r++)
		for (int v = 0; v < dv; v++)
			acc[r][v] = fresh ? vsplat(0.0f) : vld(o + r * DP + d0 + v * VL);
	for (int64_t j = j0; j < j1; j++) {
		vf x[PDG];
		for (int v = 0; v < dv; v++)
			x[v] = vld(vp + j * DP + d0 + v * VL);
		if (pf) {
			__builtin_prefetch(pf + (j - j0) * 32, 0, 2);
			__builtin_prefetch(pf + (j - j0) * 32 + 16, 0, 2);
		}
		for (int r = 0; r < rb; r++) {
			const float p = u[r][j];
			for (int v = 0; v < dv; v++)
				acc[r][v] += p * x[v];
		}
	}
	for (int r = 0; r < rb; r++)
		for (int v = 0; v < dv; v++)
			vst(o + r * DP + d0 + v * VL, acc[r][v]);
}

/*
 * call(n) with the constant n = rb, for rb in 1..max (max <= 8, a constant):
 * the micro-kernels' block loops then unroll; cases past max compile to
 * nothing (each instance costs compile time, which the tuner pays per variant).
 */
#define BY_ROWS(rb, max, call)                                                               \
	switch (rb) {                                                                        \
	case 1: call(1); break;                                                              \
	case 2: if (2 <= (max)) call(2); break;                                              \
	case 3: if (3 <= (max)) call(3); break;                                              \
	case 4: if (4 <= (max)) call(4); break;                                              \
	case 5: if (5 <= (max)) call(5); break;                                              \
	case 6: if (6 <= (max)) call(6); break;                                              \
	case 7: if (7 <= (max)) call(7); break;                                              \
	default: if (8 <= (max)) call(8); break;                                             \
	}

/*
 * Rows of group g when nr rows are cut into groups of at most m, as evenly
 * as possible (a group of 2 after five of 6 would run a slow micro-kernel).
 */
#define GROUPS(nr, m) (((nr) + (m) - 1) / (m))
static inline int group_rows(int nr, int m, int g)
{
	const int ng = GROUPS(nr, m);
	return nr / ng + (g < nr % ng);
}

/* ---- one thread's state ---- */

struct job {
	const struct mta_kargs *a;
	float *shared;           /* packed k^T and v of every (batch, kv head) */
	int64_t ks;              /* column stride of packed k^T */
	int64_t kvsize;          /* floats of one (batch, kv head) */
	int64_t npack, nitems, chains;
	int64_t next;            /* next item, taken atomically (see take) */
	int solo;                /* the phase runs on one thread: no atomics */
	int64_t bounds[65];      /* chain c covers rows [bounds[c], bounds[c+1]) */
	float gn[DP], gate[DP];  /* group norm and gate weights, zero-padded to vectors */
	int err;
};

struct th {
	const struct mta_kargs *a;
	int64_t b, rsw;          /* batch, row stride of the rings */
	int64_t qbase, obase;    /* offsets of row 0 of the batch (or document) in q and o */
	int h0;                  /* first head of the block */
	float *qb;               /* [hpb][BR][D] scaled q rows of the block */
	float *z, *p;            /* rings: [hpb][RH1|NP][rsw], column 0 at +LP */
	float *zb;               /* [hpb][NZ][XZ] the Z chunk: rows i0-RH1.., columns c0-ZL.. */
	float *x, *y, *u;        /* chunk buffers [hpb][BR][XS] */
	float *o;                /* [hpb][BR][DP] outputs */
	float *il;               /* [hpb][BR] 1/sum of each row (no post-softmax step) */
	float *mx;               /* [hpb][BR] each row's softmax reference */
	float *l;                /* [hpb][BR][VL] each row's sum, lane-wise (vhsums() at the end) */
	const float *kt[K_HPB], *vp[K_HPB]; /* each head's packed k^T and v */
	int64_t ks;
};

/*
 * Ring slot of row i (i >= -RING_BIAS): one unsigned remainder by a constant
 * (a multiply and a shift), not the two signed ones that a negative i needs.
 */
#define RING_BIAS ((int64_t)1 << 20) /* rows before 0 a ring is ever asked for: a few halo rows */
static inline int64_t slot(int64_t i, int n)
{
	return (int64_t)((uint64_t)(i + (RING_BIAS / n + 1) * n) % (uint64_t)n);
}

static inline float *prow(const struct th *t, int hl, int64_t i)
{
	return t->p + ((int64_t)hl * NP + slot(i, NP)) * t->rsw + LP;
}

/* Ring row of the raw logits of row i (the rows a later block reads as its kq_pre halo). */
static inline float *hrow(const struct th *t, int hl, int64_t i)
{
	return t->z + ((int64_t)hl * RH1 + slot(i, RH1 ? RH1 : 1)) * t->rsw + LP;
}

/* Row s of head hl's Z chunk (row i0-RH1+s), at the chunk's first column c0-ZL. */
static inline float *zbrow(const struct th *t, int hl, int s)
{
	return t->zb + ((int64_t)hl * NZ + s) * XZ;
}

/* The last column (exclusive) a ring row i must hold: values, then zeros. */
static inline int64_t ext(const struct th *t, int64_t i)
{
	const int64_t e = i + 1 + ZX;
	return e < t->rsw - LP ? e : t->rsw - LP;
}

/* Columns [from, to) of row set to 0 (0 <= from), by whole vectors: up to RUP(to, VL). */
static inline void zero(float *row, int64_t from, int64_t to)
{
	if (to <= from)
		return;
	int64_t c = from / VL * VL;
	vf z = vsplat(0.0f);
	VOPAQUE(z); /* else GCC may make the loop a memset, expanded as 8-byte stores */
	if (c < from) {
		vst(row + c, vfirst(vld(row + c), (int)(from - c), z));
		c += VL;
	}
	for (; c < to; c += VL)
		vst(row + c, z);
}

/* ---- the steps of a block ---- */

/* Scaled q rows i0..i0+nr of the block's heads into qb. */
static void load_q(struct th *t, int64_t i0, int nr)
{
	const struct mta_kargs *a = t->a;
	for (int hl = 0; hl < K_HPB; hl++)
		for (int r = 0; r < nr; r++) {
			const int64_t off = t->qbase + (i0 + r) * a->q_st +
					    (int64_t)(t->h0 + hl) * a->q_sh;
			float *dst = t->qb + (hl * BR + r) * K_D;
			int d = 0;
#if K_DTYPE == 0 /* by vectors: GCC leaves this loop scalar (dst may alias q) */
			for (; d + VL <= K_D; d += VL)
				vst(dst + d, vld((const float *)a->q + off + d) * K_SCALE);
#endif
			for (; d < K_D; d++)
				dst[d] = K_SCALE * ld(a->q, off + d);
		}
}

/*
 * Raw logits of head hl, the block's rows r < nr, columns [c0, ce) (c0 a
 * multiple of VL): row r at row(r) + (column - oc). after (or NULL): the
 * k^T panel q.k reads next after this call's last one (K_PF 2).
 */
static void qk_rows(struct th *t, int hl, float *(*row)(const struct th *, int, int64_t, int),
		    int64_t i0, int nr, int64_t oc, int64_t c0, int64_t ce, const float *after)
{
	const float *q = t->qb + hl * BR * K_D, *kt = t->kt[hl];
	for (int64_t c = c0; c < ce;) {
		/*
		 * Whole panels take CV vectors; the last columns of a row block (the
		 * diagonal, or all of a small T) take what is left, 1..CV-1 vectors
		 * within the panel, with more rows per block (the accumulators the
		 * narrower block leaves free), so k is loaded and the loop counted
		 * for fewer rows.
		 */
		const int cv = (int)MIN2((ce - c + VL - 1) / VL, CV - c % KP / VL);
		/*
		 * A whole panel's row groups share the prefetch of the next panel
		 * (K_PF), two lines per d each until it is covered: spread over the
		 * panel's groups, the next panel streams in from L3 while this one is
		 * reused from L1, instead of all at once under the first group.
		 */
		const float *next = K_PF && cv == CV && c + KP < ce ? kt + (c / KP + 1) * (K_D * KP)
				    : K_PF >= 2 && c + cv * VL >= ce ? after : NULL;
		for (int g = 0, r0 = 0, rb; g < GROUPS(nr, QRBN(cv)); g++, r0 += rb) {
			float *out[8];
			const float *pf = next && g * 32 < KP ? next + g * 32 * K_D : NULL;
			rb = group_rows(nr, QRBN(cv), g);
			for (int r = 0; r < rb; r++)
				out[r] = row(t, hl, i0, r0 + r);
			switch (cv) {
#define QK_CALL(n) qk_blk(out, c - oc, q + r0 * K_D, kt, c, n, CVN, pf)
#define CVN CV
			default: BY_ROWS(rb, QRBN(CV), QK_CALL) break;
#if CV > 1
#undef CVN
#define CVN 1
			case 1: BY_ROWS(rb, QRBN(1), QK_CALL) break;
#endif
#if CV > 2
#undef CVN
#define CVN 2
			case 2: BY_ROWS(rb, QRBN(2), QK_CALL) break;
#endif
#if CV > 3
#undef CVN
#define CVN 3
			case 3: BY_ROWS(rb, QRBN(3), QK_CALL) break;
#endif
#undef CVN
#undef QK_CALL
			}
		}
		c += cv * VL;
	}
}

/* Where q.k writes the block's row r: its Z chunk row, or straight into the band. */
static float *qk_out(const struct th *t, int hl, int64_t i0, int r)
{
#if HAVEZ
	(void)i0;
	return zbrow(t, hl, RH1 + r);
#else
	return prow(t, hl, i0 + r);
#endif
}

/*
 * One head's convolution of rows i0..i0+nr: out[r] (r < nr) from src rows
 * (nr + cq - 1 of them, pointers at the same column as out), columns
 * [0, n) rounded up to vectors.
 */
INLINE void conv_rows(float *const *out, const float *const *src, const float *w, const int cq,
		      const int ck, const int ok, int nr, int64_t n, const int step)
{
	/* whole groups of CRB rows (a block's), else groups of at most 8 (a short last block) */
	const int m = nr % CRB ? MIN2(CRB, 8) : CRB;
	for (int64_t c = 0; c < n; c += VL)
		for (int g = 0, r0 = 0, rb; g < GROUPS(nr, m); g++, r0 += rb) {
			rb = group_rows(nr, m, g);
#define CONV_CALL(k) conv_blk(out + r0, src + r0, w, cq, ck, ok, c, k, step)
			if (CRB > 8 && rb == CRB)
				CONV_CALL(CRB);
			else
				BY_ROWS(rb, MIN2(CRB, 8), CONV_CALL)
#undef CONV_CALL
		}
}

#if K_CQ
/*
 * kq_pre of head hl, rows i0..i0+nr, columns [s0, s1): into x (head_pre
 * follows) or the band, from the Z chunk that starts at column c0 - ZL.
 */
static void conv_pre(struct th *t, int hl, int64_t i0, int nr, int64_t c0, int64_t s0,
		     int64_t s1)
{
	float *out[BR];
	const float *src[BR + RH1];
	for (int r = 0; r < nr; r++)
		out[r] = K_HPRE ? t->x + (hl * BR + r) * XS
			 : SB	? t->y + (hl * BR + r) * XS
				: prow(t, hl, i0 + r) + s0;
	for (int s = 0; s < nr + RH1; s++)
		src[s] = zbrow(t, hl, s) + (s0 - (c0 - ZL));
	conv_rows(out, src, t->a->kq_pre + (t->h0 + hl) * K_CQ * K_CK, K_CQ, K_CK, K_OK, nr, s1 - s0,
		  CNT_PRE);
}
#endif

#if K_HPRE
/*
 * head_pre of rows i0..i0+nr, columns [s0, s1): from x (after kq_pre) or Z,
 * into y (SB) or the band.
 */
static void mix_pre(struct th *t, int64_t i0, int nr, int64_t s0, int64_t s1)
{
	for (int r = 0; r < nr; r++) {
		const float *src = K_CQ ? t->x + r * XS : zbrow(t, 0, r); /* RH1 = 0, ZL = 0 */
		const int64_t ss = K_CQ ? (int64_t)BR * XS : (int64_t)NZ * XZ;
		if (SB)
			mix(t->y + r * XS, (int64_t)BR * XS, src, ss, t->a->head_pre, K_H, 1, K_H,
			    s1 - s0, CNT_HPRE);
		else
			mix(prow(t, 0, i0 + r) + s0, (int64_t)NP * t->rsw, src, ss, t->a->head_pre, K_H,
			    1, K_H, s1 - s0, CNT_HPRE);
	}
}
#endif

/*
 * The softmax's exps of the band's rows over columns [s0, s1), from the
 * scores in y (SB) or in place, while the chunk is in cache: e = exp(S - m)
 * against each row's running reference m, the sums in l lane by lane (a
 * short row's one horizontal sum per chunk cost more than its exps; phase_a
 * reduces VL rows' sums at once). m is the row's first max; a later chunk whose
 * max exceeds it by more than RESCALE moves it there and rescales what the
 * row holds so far (rare: logits seldom climb by e^16 along a row). So
 * e <= e^16 never overflows, each score takes one exp, and P = e / l does
 * not depend on m. Columns past the diagonal become 0, and the last chunk
 * pads each row with zeros to ext().
 */
#define RESCALE 16.0f
static void softmax_chunk(struct th *t, int64_t i0, int nr, int64_t s0, int64_t s1, int last)
{
	for (int hl = 0; hl < K_HPB; hl++)
		for (int r = 0; r < nr; r++) {
			const int64_t i = i0 + r, e = MIN2(s1, i + 1);
			float *p = prow(t, hl, i), *m = t->mx + hl * BR + r;
			float *l = t->l + (hl * BR + r) * VL;
			/* the scores: column c at src + (c - s0), in y (SB) or in place */
			const float *src = SB ? t->y + (hl * BR + r) * XS : p + s0;
			if (e > s0) {
				vf mx = vsplat(-INFINITY);
				int64_t c = s0;
				for (; c + VL <= e; c += VL)
					mx = vmax(mx, vld(src + (c - s0)));
				if (c < e)
					mx = vmax(mx, vfirst(vld(src + (c - s0)), (int)(e - c),
							     vsplat(-INFINITY)));
				const float cm = vhmax(mx);
				if (cm > *m + RESCALE) {
					if (*m > -INFINITY) { /* what the row holds so far, to the new m */
						const float f = expf(*m - cm);
						c = 0;
						for (; c + VL <= s0; c += VL)
							vst(p + c, vld(p + c) * f);
						for (; c < s0; c++)
							p[c] *= f;
						vst(l, vld(l) * f);
					}
					*m = cm;
				}
				const vf mv = vsplat(*m);
				vf sum = vsplat(0.0f);
				COUNT(CNT_EXP, RUP(e - s0, VL));
				for (c = s0; c + VL <= e; c += VL) {
					const vf x = vexp_sm(vld(src + (c - s0)) - mv);
					vst(p + c, x);
					sum += x;
				}
				if (c < e) { /* lanes past the diagonal: 0 */
					const vf x = vfirst(vexp_sm(vld(src + (c - s0)) - mv), (int)(e - c),
							    vsplat(0.0f));
					vst(p + c, x);
					sum += x;
				}
				vst(l, vld(l) + sum);
			}
			zero(p, MAX2(i + 1, s0), last ? ext(t, i) : s1);
		}
}

/* Columns [c0, c1) (multiples of VL) of rows i0..i0+nr divided by their sums: P = e / l. */
static void normalise(struct th *t, int64_t i0, int nr, int64_t c0, int64_t c1)
{
	for (int hl = 0; hl < K_HPB; hl++)
		for (int r = 0; r < nr; r++) {
			float *p = prow(t, hl, i0 + r);
			const vf il = vsplat(t->il[hl * BR + r]);
			for (int64_t c = c0; c < MIN2(c1, RUP(i0 + r + 1, VL)); c += VL)
				vst(p + c, vld(p + c) * il);
		}
}

/*
 * Phase A for rows i0..i0+nr: raw logits of every column they need, and
 * (unless zonly) their pre-softmax scores in the P ring. Ring rows end
 * zero-padded to ext().
 */
static void phase_a(struct th *t, int64_t i0, int nr, int zonly)
{
	const int64_t lim = i0 + nr, zend = lim + R1;
	load_q(t, i0, nr);
	for (int x = 0; x < K_HPB * BR; x++) {
		t->mx[x] = -INFINITY;
		vst(t->l + x * VL, vsplat(0.0f));
	}
	for (int64_t c0 = 0;; c0 += BC) {
		const int last = c0 + BC >= zend;
		const int64_t c1 = last ? zend : c0 + BC, ce = MIN2(c1, lim);
		/* the scores lag the logits by the convolution's right reach */
		const int64_t s0 = c0 ? c0 - R1 : 0, s1 = last ? lim : c1 - R1;
		const int scores = !zonly && s1 > s0;
		for (int hl = 0; hl < K_HPB; hl++) { /* each head's Z chunk is convolved while in L1 */
#if HAVEZ
			/*
			 * The chunk holds columns c0-ZL..c1 of rows i0-RH1..lim: the
			 * previous chunk's last ZL columns (zeros left of column 0),
			 * the halo rows from their ring, the block's rows from q.k.
			 */
			for (int r = 0; r < NZ; r++) {
				float *z = zbrow(t, hl, r);
				if (c0)
					memmove(z, z + BC, sizeof(float) * ZL);
				else
					memset(z, 0, sizeof(float) * ZL);
			}
			for (int r = 0; r < RH1; r++)
				memcpy(zbrow(t, hl, r) + ZL, hrow(t, hl, i0 - RH1 + r) + c0,
				       sizeof(float) * (size_t)(c1 - c0));
			const int64_t oc = c0 - ZL;
#else
			const int64_t oc = 0;
#endif
			if (ce > c0) {
				/* the panel q.k reads next: the next head's, or the next chunk's */
				const float *after = hl + 1 < K_HPB ? t->kt[hl + 1] + c0 / KP * (K_D * KP)
						     : !last && c1 < lim ? t->kt[0] + c1 / KP * (K_D * KP)
						     : NULL;
				qk_rows(t, hl, qk_out, i0, nr, oc, c0, ce, after);
			}
			for (int r = 0; r < nr; r++) { /* zero past the diagonal */
				const int64_t i = i0 + r;
				zero(qk_out(t, hl, i0, r) - oc, MAX2(i + 1, c0), HAVEZ || !last ? c1 : ext(t, i));
			}
#if K_CQ
			if (scores)
				conv_pre(t, hl, i0, nr, c0, s0, s1);
			/* the last RH1 rows are the next block's halo */
			for (int r = nr; r < nr + RH1; r++) {
				float *h = hrow(t, hl, i0 - RH1 + r);
				memcpy(h + c0, zbrow(t, hl, r) + ZL, sizeof(float) * (size_t)(c1 - c0));
				if (last)
					zero(h, c1, ext(t, i0 - RH1 + r));
			}
#endif
		}
#if K_HPRE
		if (scores)
			mix_pre(t, i0, nr, s0, s1);
#endif
		if (scores)
			softmax_chunk(t, i0, nr, s0, s1, last);
		if (last)
			break;
	}
	for (int x0 = 0; x0 < K_HPB * BR && !zonly; x0 += VL) { /* 1 / sum, VL rows at once */
		vf s[VL];
		for (int k = 0; k < VL; k++)
			s[k] = x0 + k < K_HPB * BR ? vld(t->l + (x0 + k) * VL) : vsplat(1.0f);
		vst(t->il + x0, 1.0f / vhsums(s));
	}
}

/*
 * Where phase C finds the probabilities of head hl, row r of the block, at
 * chunk column 0: after head_post (u), after kq_post (y), or in the ring.
 */
#if K_HPOST
#define CROW(hl, r) (t->u + ((hl) * BR + (r)) * XS)
#elif K_CQ2
#define CROW(hl, r) (t->y + ((hl) * BR + (r)) * XS)
#else
#define CROW(hl, r) (prow(t, hl, i0 + (r)) + c0)
#endif

/*
 * Phase C: post-softmax steps and P.V for rows i0..i0+nr, columns [0, i0+nr);
 * columns [0, normed) of the rows hold P already (small()), the rest e.
 */
static void phase_c(struct th *t, int64_t i0, int nr, int64_t normed)
{
	const struct mta_kargs *a = t->a;
	const int64_t lim = i0 + nr;
	(void)a; /* unused without post-softmax steps */
#if POST
	int64_t sc = normed; /* columns [0, sc) of the block's rows are normalised */
#else
	(void)normed;
#endif
	for (int64_t c0 = 0; c0 < lim; c0 += BC) {
		const int64_t n = MIN2(c0 + BC, lim) - c0;
#if POST
		/* normalise ahead of this chunk: kq_post reads R2 columns (and a vector) past it */
		const int64_t need = RUP(MIN2(c0 + BC + R2 + VL, lim), VL);
		if (need > sc) {
			normalise(t, i0, nr, sc, need);
			sc = need;
		}
#endif
#if K_CQ2
		for (int hl = 0; hl < K_HPB; hl++) {
			float *out[BR];
			const float *src[BR + RH2];
			for (int r = 0; r < nr; r++)
				out[r] = t->y + (hl * BR + r) * XS;
			for (int s = 0; s < nr + RH2; s++)
				src[s] = prow(t, hl, i0 - RH2 + s) + c0;
			conv_rows(out, src, a->kq_post + (t->h0 + hl) * K_CQ2 * K_CK2, K_CQ2, K_CK2, K_OK2,
				  nr, n, CNT_POST);
			for (int r = 0; r < nr; r++) /* 0 past the diagonal (MTA.md step 5) */
				zero(out[r], MAX2(i0 + r + 1 - c0, 0), RUP(n, VL));
		}
#endif
#if K_HPOST
		for (int r = 0; r < nr; r++) {
			/* head hl's row r is at src + hl * ss */
			const float *src = K_CQ2 ? t->y + r * XS : prow(t, 0, i0 + r) + c0;
			const int64_t ss = K_CQ2 ? (int64_t)BR * XS : (int64_t)NP * t->rsw;
			float *dst = t->u + r * XS;
#if K_HPOST == 1
			/* P[g*c+o] <- sum_i head_post[g,i,o] P[g*c+i] */
			for (int g0 = 0; g0 < K_HPB; g0 += K_HC)
				mix(dst + (int64_t)g0 * BR * XS, (int64_t)BR * XS, src + g0 * ss, ss,
				    a->head_post + (t->h0 + g0) / K_HC * K_HC * K_HC, 1, K_HC, K_HC, n,
				    CNT_HPOST);
#else
			mix(dst, (int64_t)BR * XS, src, ss, a->head_post_linear, K_H, 1, K_H, n,
			    CNT_HPOST);
#endif
		}
#endif
		for (int hl = 0; hl < K_HPB; hl++) {
			const float *vp = t->vp[hl] + c0 * DP;
			for (int64_t j0 = 0; j0 < n; j0 += PJB) { /* these v rows stay in L1 */
				const int64_t j1 = MIN2(j0 + PJB, n);
				const int fresh = c0 == 0 && j0 == 0;
				/*
				 * the next PJB rows of v, prefetched as q.k's next panel is; after
				 * the chunk's last (K_PF 2), the next head's first, or the next
				 * chunk's first
				 */
				const float *next = K_PF == 1 && j1 < lim - c0 ? vp + j1 * DP
						    : !K_PF ? NULL
						    : j1 < n ? vp + j1 * DP
						    : hl + 1 < K_HPB ? t->vp[hl + 1] + c0 * DP
						    : c0 + BC < lim ? t->vp[0] + (c0 + BC) * DP : NULL;
				for (int g = 0, r0 = 0, rb; g < GROUPS(nr, PRB); g++, r0 += rb) {
					const float *u[8];
					const float *pf = next && g * 32 < DP ? next + g * 32 * PJB : NULL;
					rb = group_rows(nr, PRB, g);
					for (int r = 0; r < rb; r++)
						u[r] = CROW(hl, r0 + r);
					float *o = t->o + (hl * BR + r0) * DP;
					for (int d0 = 0; d0 < DVN; d0 += PDG) {
						if (DVN - d0 >= PDG) {
#define PV_CALL(m) pv_blk(o, u, vp, j0, j1, d0 * VL, m, PDG, fresh, d0 ? NULL : pf)
							BY_ROWS(rb, PRB, PV_CALL)
#undef PV_CALL
						} else {
							for (int d = d0; d < DVN; d++) {
#define PV_CALL(m) pv_blk(o, u, vp, j0, j1, d * VL, m, 1, fresh, d ? NULL : pf)
								BY_ROWS(rb, PRB, PV_CALL)
#undef PV_CALL
							}
						}
					}
				}
			}
		}
	}
}

/*
 * Group norm, gate, store: the outputs of rows i0..i0+nr. Sums run lane-wise
 * over whole vectors (the padding lanes of o and of the weights are 0); rows
 * go in groups of VL, whose sums one vhsums() reduces and whose gates go
 * through one vectorised exp.
 */
static void finish(struct th *t, const struct job *j, int64_t i0, int nr)
{
	const struct mta_kargs *a = t->a;
	float *o = t->o;
	/* rows in groups of VL, so that their sums come out of one vhsums() each */
	for (int x0 = 0; x0 < K_HPB * BR; x0 += VL) {
		const int n = MIN2(VL, K_HPB * BR - x0);
		int live[VL];
		vf s[VL];
		for (int k = 0; k < VL; k++) {
			live[k] = k < n && (x0 + k) % BR < nr;
			s[k] = vsplat(0.0f);
		}
		(void)s, (void)live;
#if !POST
		for (int k = 0; k < n; k++) {
			float *ox = o + (x0 + k) * DP;
			const vf il = vsplat(t->il[x0 + k]);
			for (int d = 0; d < DP && live[k]; d += VL)
				vst(ox + d, vld(ox + d) * il);
		}
#endif
#if K_GN
		for (int k = 0; k < n; k++) {
			const float *ox = o + (x0 + k) * DP;
			for (int d = 0; d < DP && live[k]; d += VL)
				s[k] += vld(ox + d) * vld(ox + d);
		}
		const vf ss = vhsums(s);
		for (int k = 0; k < n; k++) {
			float *ox = o + (x0 + k) * DP;
			const vf rs = vsplat((1.0f / sqrtf(ss[k] / K_D + 1e-5f)) *
					     (K_GNR ? a->gn_rescale : 1.0f));
			for (int d = 0; d < DP && live[k]; d += VL)
				vst(ox + d, vld(ox + d) * rs * vld(j->gn + d));
		}
#endif
#if K_GATE
		for (int k = 0; k < VL; k++) {
			const float *ox = o + (x0 + k) * DP;
			s[k] = vsplat(0.0f);
			for (int d = 0; d < DP && live[k]; d += VL)
				s[k] += vld(ox + d) * vld(j->gate + d);
		}
		/* the gates: sigmoid(g) = 1 / (1 + exp(-g)) */
		vst(t->il + x0, 1.0f / (1.0f + vexp(-(vhsums(s) + a->gate_b))));
#endif
	}
	(void)j;
	for (int hl = 0; hl < K_HPB; hl++)
		for (int r = 0; r < nr; r++) {
			float *ox = o + (hl * BR + r) * DP;
#if K_GATE
			const vf sg = vsplat(t->il[hl * BR + r]);
			for (int d = 0; d < DP; d += VL)
				vst(ox + d, vld(ox + d) * sg);
#endif
			float *dst = a->o + t->obase + (i0 + r) * a->o_st +
				     (int64_t)(t->h0 + hl) * a->o_sh;
			memcpy(dst, ox, sizeof(float) * K_D);
		}
}

/* One block: rows i0..i0+nr (nr <= BR) through every step; out 0: halo rows, not stored. */
static void block(struct th *t, const struct job *j, int64_t i0, int nr, int out)
{
	phase_a(t, i0, nr, 0);
	if (out) {
		phase_c(t, i0, nr, 0);
		finish(t, j, i0, nr);
	} else if (POST) { /* halo rows: phase C would have normalised them */
		normalise(t, i0, nr, 0, RUP(i0 + nr, VL));
	}
}

/*
 * A whole sequence of n <= min(VL, BR) rows: one block whose rows are one
 * vector of columns each. Phase A without chunks or rings: no halo rows
 * kept for a next block, ring rows padded only as far as this block's
 * phase C reads (VL + RM columns, not ext()), and each head's rows' maxima
 * and sums reduced VL at a time (vhmaxs, vhsums) instead of row by row.
 * Phase C and finish() are the general ones. At T=16 this is most of a
 * call: the general path's per-row steps cost more than the arithmetic.
 */
static void small(struct th *t, const struct job *j, int n)
{
	for (int hl = 0; hl < K_HPB; hl++) /* the kq_post halo above row 0 */
		for (int64_t i = -RH2; i < 0; i++)
			zero(prow(t, hl, i), 0, VL + RM);
	load_q(t, 0, n);
	for (int hl = 0; hl < K_HPB; hl++) {
#if HAVEZ
		/* Z rows (the RH1 halo rows are 0): ZL zeros, then the columns */
		for (int s = 0; s < RH1 + n; s++) {
			float *z = zbrow(t, hl, s);
			memset(z, 0, sizeof(float) * ZL);
			if (s < RH1)
				zero(z + ZL, 0, VL + RM);
		}
		const int64_t oc = -ZL;
#else
		const int64_t oc = 0;
#endif
		qk_rows(t, hl, qk_out, 0, n, oc, 0, n, NULL);
		for (int r = 0; r < n; r++) /* 0 past the diagonal, and in the convolution's reach */
			zero(qk_out(t, hl, 0, r) - oc, r + 1, VL + RM);
#if K_CQ
		conv_pre(t, hl, 0, n, 0, 0, n);
#endif
	}
#if K_HPRE
	mix_pre(t, 0, n, 0, n);
#endif
	for (int hl = 0; hl < K_HPB; hl++) {
		vf x[VL], m[VL], e[VL];
		for (int r = 0; r < VL; r++) {
			const float *src = SB ? t->y + (hl * BR + r) * XS : prow(t, hl, r);
			x[r] = r < n ? vfirst(vld(src), r + 1, vsplat(-INFINITY)) : vsplat(0.0f);
			m[r] = x[r];
		}
		const vf mx = vhmaxs(m);
		COUNT(CNT_EXP, n * VL);
		for (int r = 0; r < VL; r++) {
			e[r] = vfirst(vexp_sm(x[r] - mx[r]), r < n ? r + 1 : 0, vsplat(0.0f));
			m[r] = e[r];
		}
		const vf il = 1.0f / vhsums(m); /* rows past n: 1/0, unused */
		for (int r = 0; r < n; r++) {
			float *p = prow(t, hl, r);
			/* with a step after the softmax it reads P (phase C's normalise, done here) */
			vst(p, POST ? e[r] * il[r] : e[r]);
			zero(p, VL, VL + RM);
			t->il[hl * BR + r] = il[r];
		}
	}
	phase_c(t, 0, n, POST ? VL : 0);
	finish(t, j, 0, n);
}

/*
 * Rows [s, e) of the thread's (batch, head block). Rows before s are halo:
 * zero before row 0, else recomputed here (logits of cq-1 + cq2-1 rows,
 * probabilities of the last cq2-1).
 */
static void chain(struct th *t, const struct job *j, int64_t s, int64_t e)
{
	if (s == 0 && e <= MIN2(VL, BR)) {
		small(t, j, (int)e);
		return;
	}
	if (s == 0) {
		for (int hl = 0; hl < K_HPB; hl++)
			for (int64_t i = -RHM; i < 0; i++) {
				zero(prow(t, hl, i), 0, ext(t, i));
				if (RH1)
					zero(hrow(t, hl, i), 0, ext(t, i));
			}
	} else {
		for (int64_t r = s - RH2 - RH1; r < s - RH2; r += BR)
			phase_a(t, r, (int)MIN2(BR, s - RH2 - r), 1);
		for (int64_t r = s - RH2; r < s; r += BR)
			block(t, j, r, (int)MIN2(BR, s - r), 0);
	}
	for (int64_t i0 = s; i0 < e; i0 += BR)
		block(t, j, i0, (int)MIN2(BR, e - i0), 1);
}

/* ---- the two parallel phases ---- */

/*
 * Pack k^T ([d][column], ks columns) and v ([column][DP]) of columns
 * [c0, c0+256) of one (batch or document, kv head) whose row 0 is at k + kb
 * and v + vb, T rows, into kt (v after ks columns of k^T). Whole VL x VL
 * blocks of k are transposed in registers.
 */
static void pack_cols(const struct mta_kargs *a, int64_t kb, int64_t vb, int64_t T, float *kt,
		      int64_t ks, int64_t c0)
{
	/* q.k reads whole vectors of columns: up to RUP(T, VL), not the rest of the panel */
	const int64_t c1 = MIN2(c0 + 256, RUP(T, VL));
	float *vp = kt + (int64_t)K_D * ks;
	int64_t c;
	for (c = c0; c < c1; c += VL) { /* c1 and c0 are multiples of VL; rows past T are 0 */
		const int nv = (int)MIN2(VL, T - c);
		int d0 = 0;
		for (; d0 + VL <= K_D; d0 += VL) {
			vf x[VL];
			for (int l = 0; l < VL; l++) {
				if (l >= nv) {
					x[l] = vsplat(0.0f);
					continue;
				}
#if K_DTYPE == 0
				x[l] = vld((const float *)a->k + kb + (c + l) * a->k_st + d0);
#else
				for (int d = 0; d < VL; d++)
					x[l][d] = ld(a->k, kb + (c + l) * a->k_st + d0 + d);
#endif
			}
			vtranspose(x);
			for (int d = 0; d < VL; d++)
				vst(kt + kidx(d0 + d, c), x[d]);
		}
		for (int d = d0; d < K_D; d++)
			for (int l = 0; l < VL; l++)
				kt[kidx(d, c + l)] = l < nv ? ld(a->k, kb + (c + l) * a->k_st + d) : 0.0f;
	}
	for (c = c0; c < MIN2(c1, T); c++) {
		float *dst = vp + c * DP;
#if K_DTYPE == 0
		memcpy(dst, (const float *)a->v + vb + c * a->v_st, sizeof(float) * K_D);
#else
		for (int d = 0; d < K_D; d++)
			dst[d] = ld(a->v, vb + c * a->v_st + d);
#endif
		for (int d = K_D; d < DP; d++)
			dst[d] = 0.0f;
	}
}

/* Column stride of packed k^T and floats of one packed (k^T, v) pair, for T rows. */
static inline int64_t pack_ks(int64_t T)
{
	return RUP(T, KP);
}
static inline int64_t pack_size(int64_t T)
{
	return RUP((int64_t)K_D * pack_ks(T) + T * DP, 16);
}

/* Pack item w of a plain call: (b, kv head, 256 columns). */
static void pack(struct job *j, int64_t w)
{
	const struct mta_kargs *a = j->a;
	const int64_t per = (a->T + 255) / 256, bk = w / per, c0 = w % per * 256;
	const int64_t b = bk / K_HKV, hk = bk % K_HKV;
	pack_cols(a, b * a->k_sb + hk * a->k_sh, b * a->v_sb + hk * a->v_sh, a->T,
		  j->shared + bk * j->kvsize, j->ks, c0);
}

/*
 * Packed documents: a cursor over the documents, moved forward only (a
 * thread takes items in increasing order). Document doc (rows start..
 * start+len) has items [first, first + items): its head blocks times its m
 * chains, cut at bounds.
 */
struct dcur {
	int64_t doc, first, items, len, start;
	int64_t m, bounds[65];
};

static void dcur_init(struct dcur *c)
{
	memset(c, 0, sizeof *c);
	c->doc = -1;
}

/* Chains of equal causal work over rows [0, T): c wanted, m made, into bounds. */
static int64_t chain_bounds(int64_t T, int64_t c, int64_t *bounds)
{
	const int64_t minrows = MAX2(64, 4 * (RH1 + RH2 + BR));
	c = MIN2(c, T / minrows);
	c = c < 1 ? 1 : c > 64 ? 64 : c;
	bounds[0] = 0;
	int64_t m = 1;
	for (int64_t k = 1; k < c; k++) {
		int64_t r = (int64_t)((double)T * sqrt((double)k / (double)c)) / BR * BR;
		if (r > bounds[m - 1] && r < T && r >= RH1 + RH2)
			bounds[m++] = r;
	}
	bounds[m] = T;
	return m;
}

/* Move c to the document holding item w. */
static void dcur_seek(const struct job *j, struct dcur *c, int64_t w)
{
	const struct mta_kargs *a = j->a;
	while (c->doc < 0 || w >= c->first + c->items) {
		c->first += c->items;
		c->doc++;
		c->start = a->cu_seqlens[c->doc];
		c->len = a->cu_seqlens[c->doc + 1] - c->start;
		c->m = c->len ? chain_bounds(c->len, j->chains, c->bounds) : 0;
		c->items = (K_H / K_HPB) * c->m;
	}
}

/*
 * The next work item. A locked add costs more than a T=16 call's packing
 * of one head, so a phase that runs on one thread takes items without it.
 */
static inline int64_t take(struct job *j)
{
	return j->solo ? j->next++ : __atomic_fetch_add(&j->next, 1, __ATOMIC_RELAXED);
}

static void pack_worker(void *arg, int tid)
{
	struct job *j = arg;
	(void)tid;
	for (;;) {
		int64_t w = take(j);
		if (w >= j->npack)
			return;
		pack(j, w);
	}
}

static void worker(void *arg, int tid)
{
	struct job *j = arg;
	const struct mta_kargs *a = j->a;
	struct th t;
	memset(&t, 0, sizeof t);
	t.a = a;
	t.rsw = row_stride(a->tmax);
	t.ks = j->ks;
	const int64_t rows = (int64_t)W_ROWS * t.rsw;
	/*
	 * Packed documents: each item packs its document's k^T and v for its heads
	 * into the thread's own buffer (after the rings) right before using them,
	 * so a sequence of many short documents stays in cache (one shared buffer
	 * of every document's panels, each padded to KP columns, did not).
	 */
	const int64_t kvloc = a->cu_seqlens ? K_HPB * pack_size(a->tmax) : 0;
	float *ws = a->pool_mem(a->pool, tid,
				(int64_t)sizeof(float) * (W_FIXED + rows + 32 + kvloc));
	if (!ws) {
		__atomic_store_n(&j->err, MTA_KERR_NOMEM, __ATOMIC_RELAXED);
		return;
	}
	float *at = ws + 16; /* after the signature */
	t.qb = at, at += K_HPB * BR * K_D;
	t.x = at, at += K_HPB * BR * XS;
	t.y = at, at += K_HPB * BR * XS;
	t.u = at, at += K_HPB * BR * XS;
	t.o = at, at += K_HPB * BR * DP;
	t.il = at, at += RUP(K_HPB * BR, VL);
	t.mx = at, at += RUP(K_HPB * BR, VL);
	t.l = at, at += K_HPB * BR * VL;
	at = ws + RUP(at - ws, 16);
	t.zb = at, at += HAVEZ ? K_HPB * NZ * XZ : 0;
	at = ws + RUP(at - ws, 16);
	t.z = at, at += (int64_t)K_HPB * RH1 * t.rsw;
	t.p = at;
	/*
	 * The rings' left padding is never written, so it is cleared only when
	 * the workspace was last used otherwise: by another kernel, or by this
	 * family with another layout (each v2 kernel writes its layout into the
	 * first bytes; v1 kernels clear the whole workspace, the pool's new
	 * memory holds garbage).
	 */
	int64_t sig[8] = { 0x6d746132706164LL, LP, t.rsw, at - ws, K_HPB, NZ, NP, HAVEZ };
	if (memcmp(ws, sig, sizeof sig)) {
		for (int64_t r = 0; r < W_ROWS && LP; r++)
			memset(t.z + r * t.rsw, 0, sizeof(float) * LP);
		memcpy(ws, sig, sizeof sig);
	}
	const int nhb = K_H / K_HPB;
	struct dcur dc;
	dcur_init(&dc);
	for (;;) {
		int64_t w = take(j);
		if (w >= j->nitems)
			break;
		if (a->cu_seqlens) { /* item: (document, head block, chain of the document) */
			dcur_seek(j, &dc, w);
			const int64_t r = w - dc.first, c = r % dc.m;
			float *kvb = ws + RUP(W_FIXED + rows + 16, 16);
			t.b = 0;
			t.h0 = (int)(r / dc.m) * K_HPB;
			t.qbase = dc.start * a->q_st;
			t.obase = dc.start * a->o_st;
			t.ks = pack_ks(dc.len);
			for (int hl = 0; hl < K_HPB; hl++) {
				const int64_t hk = (t.h0 + hl) / GQ;
				float *dst = kvb + (int64_t)hl * pack_size(dc.len);
				if (hl && hk == (t.h0 + hl - 1) / GQ) { /* the same kv head as hl-1 */
					t.kt[hl] = t.kt[hl - 1];
					t.vp[hl] = t.vp[hl - 1];
					continue;
				}
				t.kt[hl] = dst;
				t.vp[hl] = dst + (int64_t)K_D * t.ks;
				for (int64_t c0 = 0; c0 < dc.len; c0 += 256)
					pack_cols(a, dc.start * a->k_st + hk * a->k_sh,
						  dc.start * a->v_st + hk * a->v_sh, dc.len, dst, t.ks, c0);
			}
			chain(&t, j, dc.bounds[c], dc.bounds[c + 1]);
			continue;
		}
		const int64_t c = w % j->chains, bh = w / j->chains;
		t.b = bh / nhb;
		t.h0 = (int)(bh % nhb) * K_HPB;
		t.qbase = t.b * a->q_sb;
		t.obase = t.b * a->o_sb;
		for (int hl = 0; hl < K_HPB; hl++) {
			const int64_t bk = t.b * K_HKV + (t.h0 + hl) / GQ;
			t.kt[hl] = j->shared + bk * j->kvsize;
			t.vp[hl] = t.kt[hl] + (int64_t)K_D * j->ks;
		}
		chain(&t, j, j->bounds[c], j->bounds[c + 1]);
	}
	count_flush();
}

int mta_cpu_kernel(const struct mta_kargs *a)
{
	if (!a || a->dtype != K_DTYPE || a->B < 1 || a->T < 1 || !a->pool_run || !a->pool_mem ||
	    (a->cu_seqlens && (a->B != 1 || a->ndocs < 1 || a->tmax < 0 || a->tmax > a->T)))
		return MTA_KERR_ARGS;
	struct job j;
	memset(&j, 0, sizeof j);
	j.a = a;
	for (int d = 0; d < K_D; d++) {
		j.gn[d] = K_GN ? a->gn_weight[d] : 0.0f;
		j.gate[d] = K_GATE ? a->gate_w[d] : 0.0f;
	}
	const int64_t T = a->T, nbh = a->B * (K_H / K_HPB);
	int64_t n = a->nthreads > 0 ? a->nthreads : K_THR > 0 ? K_THR : a->pool_cores;
	/*
	 * a thread is worth waking for about 2 million multiply-adds or more
	 * (packed documents: their causal work is smaller; T^2/2 bounds it)
	 */
	double work = 0;
	if (a->cu_seqlens)
		for (int64_t d = 0; d < a->ndocs; d++) {
			const double l = (double)(a->cu_seqlens[d + 1] - a->cu_seqlens[d]);
			work += l * (l + 1) / 2;
		}
	else
		work = (double)a->B * (double)T * (double)(T + 1) / 2;
	work *= K_H * (2.0 * K_D + (K_CQ ? K_CQ * K_CK : 0) + (K_CQ2 ? K_CQ2 * K_CK2 : 0) +
		       (K_HPRE ? K_H : 0) + (K_HPOST ? K_H : 0) + 10);
	if (n > 1 + (int64_t)(work / 2e6))
		n = 1 + (int64_t)(work / 2e6);
	n = n < 1 ? 1 : n > 256 ? 256 : n;

	/* chains of equal causal work: about 4 per thread, none shorter than its halo needs */
	int64_t c = (4 * n + nbh - 1) / nbh;
	if (n == 1)
		c = 1;
	if (a->cu_seqlens) {
		/*
		 * documents are chained like batches, c chains each at most; no
		 * packing phase: each item packs its own document (see worker)
		 */
		j.chains = c;
		j.npack = j.nitems = 0;
		for (int64_t d = 0; d < a->ndocs; d++) {
			const int64_t l = a->cu_seqlens[d + 1] - a->cu_seqlens[d];
			int64_t bounds[65];
			j.nitems += l ? (K_H / K_HPB) * chain_bounds(l, c, bounds) : 0;
		}
	} else {
		j.chains = chain_bounds(T, c, j.bounds);
		j.nitems = nbh * j.chains;
		j.ks = pack_ks(T);
		j.kvsize = pack_size(T);
		j.shared = a->pool_mem(a->pool, MTA_POOL_SHARED,
				       (int64_t)sizeof(float) * a->B * K_HKV * j.kvsize);
		j.npack = a->B * K_HKV * ((T + 255) / 256);
		if (!j.shared)
			return MTA_KERR_NOMEM;
	}
	j.solo = MIN2(n, j.npack) == 1;
	if (j.npack)
		a->pool_run(a->pool, (int)MIN2(n, j.npack), pack_worker, &j);
	j.next = 0;
	j.solo = MIN2(n, j.nitems) == 1;
	if (j.nitems)
		a->pool_run(a->pool, (int)MIN2(n, j.nitems), worker, &j);
	return j.err;
}
