/*
 * mta_cpu.c: template of the v1 family of CPU kernels for the MTA forward
 * (MTA.md): fused tiles, vectors over query rows, two passes when a step
 * follows the softmax (the v2 family, templates/mta_cpu2.c, does those in
 * one). gen/cpu/cgen.c prepends #defines of the K_* constants below and
 * pastes mta_kargs.h in place of its #include; on its own, this file compiles
 * with the defaults (every option on), which the tests check.
 *
 * Work. One work item is (batch b, block of K_HPB heads, tile of K_BQ query
 * rows). Items go to the threads of the caller's pool (runtime/core/pool.h)
 * through an atomic counter, heaviest (latest) query tiles first, because
 * causal tiles cost in proportion to their row.
 *
 * Memory. No T x T matrix exists: each thread takes one workspace of
 * WS_FLOATS floats (a compile-time constant; see mta_cpu_info) from the
 * pool and clears it per call: the tile's q rows, one key tile with its
 * halos, the logits and probabilities of one (query tile, key tile) pair,
 * and the outputs.
 *
 * Layout. Every tile is stored transposed, [column][query row], and SIMD
 * vectors (GCC vector extensions, K_VEC floats) run over query rows. Then
 * q.k products are outer products (a vector of q^T times a broadcast k
 * element, no reduction, no transposition of k), the row statistics of the
 * softmax are lane-wise, the convolutions are shifted vector loads, and P.V
 * accumulates o^T[d][rows]. Each product is a register-blocked micro-kernel
 * (up to 24 vector accumulators) whose block sizes are constants.
 *
 * Algorithm. The pre-softmax part (logits, kq_pre, head_pre, mask) is
 * recomputed per key tile from a halo of Z (raw scaled logits): cq-1 earlier
 * rows and ck-1 neighbouring columns, zero where col > row or outside [0,T).
 * Without a post-softmax step the softmax is online (running max and sum,
 * rescaled accumulators), one pass. With one (kq_post and/or head mixing
 * after softmax) normalised probabilities of halo rows and columns are
 * needed, which an online softmax cannot give, so there are two passes:
 * pass 1 finds each row's max and sum for the tile rows and the cq2-1 rows
 * before them; pass 2 recomputes the logits of those rows with a key halo
 * for ck2, normalises them, convolves, mixes heads and accumulates P.V.
 * Recomputing costs the pre-softmax work twice but keeps memory O(tile).
 *
 * Everything is float32 with float32 accumulation and no fast-math: the
 * vector code never reassociates a sum the scalar definition orders. exp is
 * vexp() (Cody-Waite reduction and a degree-6 polynomial, within 2 ulp of
 * expf over the range the softmax uses) because libm's expf does not
 * vectorise without -ffast-math. The vector layer is mta_cpu_vec.h (shared
 * with v2), the micro-kernels mta_cpu_simd.h, included once the tile
 * geometry below is defined.
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
#define K_BQ 8         /* query rows per tile */
#define K_BK 16        /* key columns per tile */
#define K_HPB 4        /* heads per block */
#define K_VEC 8        /* floats per SIMD vector: 4, 8 or 16 */
#define K_THR 0        /* default worker threads, 0: all cores */
#define K_ALGO 0       /* the one algorithm above */
#define K_VERSION 1    /* kernel family (this file is v1) */
#endif
#if K_HPB == 0         /* hpb=0 in a spec means all heads */
#undef K_HPB
#define K_HPB K_H
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
#define VL K_VEC
#define MAX2(x, y) ((x) > (y) ? (x) : (y))
#define RUP(n, m) (((n) + (m) - 1) / (m) * (m))

/* Rows (vector lanes). Z holds rows i0-RH2-RH1.., S and P rows i0-RH2..,
 * the post-convolved probabilities and outputs rows i0.. */
#define RH1 (CQ1 - 1)
#define RH2 (CQ2E - 1)
#define ZRP RUP(K_BQ + RH1 + RH2, VL)
#define NRP RUP(K_BQ + RH2, VL)
#define RQP RUP(K_BQ, VL)
#define ZS RUP(MAX2(ZRP, NRP + RH1), VL) /* column stride of Z (shifted loads fit) */
#define SS RUP(MAX2(NRP, RQP + RH2), VL) /* column stride of S, P, T */

/* Micro-kernel blocks: RC row vectors by CB columns (or head-dim rows). */
#define RC_OF(nv) ((nv) < 4 ? (nv) : 4)
#define CB_OF(rc) ((rc) == 1 ? 12 : 24 / (rc))
#define QRC RC_OF(ZRP / VL) /* q.k */
#define QCB CB_OF(QRC)
#define CRC RC_OF(NRP / VL) /* kq_pre */
#define CCB CB_OF(CRC)
#define PRC RC_OF(RQP / VL) /* kq_post and P.V */
#define PCB CB_OF(PRC)
#define DPB RUP(K_D, PCB)   /* head dim padded to P.V blocks */

/* Columns. Pass 2 needs ck2-1 more probabilities, and those ck-1 more
 * logits; blocked loops round counts up, so buffers hold whole blocks. */
#define NSM (TWOPASS ? K_BK + CK2E - 1 : K_BK)
#define SCA MAX2(MAX2(RUP(NSM, CCB), RUP(NSM, QCB)), RUP(K_BK, PCB) + CK2E - 1)
#define ZCA RUP(SCA + CK1 - 1, QCB)
#define RS (SCA * SS) /* one head's region of S */

/* Workspace regions, in floats, 64-byte aligned. */
#define AL(n) RUP(n, 16)
#define W_QT 0                                   /* [hpb][d][ZRP] scaled q^T */
#define W_KB (W_QT + AL(K_HPB * K_D * ZRP))      /* [ZCA][d] one head's k rows */
#define W_VB (W_KB + AL(ZCA * K_D))              /* [BK][DPB] one head's v rows */
#define W_Z (W_VB + AL(K_BK * DPB))              /* [ZCA][ZS] raw logits */
#define W_R1 (W_Z + AL(ZCA * ZS))                /* [hpb][SCA][SS] */
#define W_R2 (W_R1 + AL(K_HPB * RS))             /* [hpb][SCA][SS] */
#define W_M (W_R2 + AL(K_HPB * RS))              /* [hpb][NRP] row max */
#define W_L (W_M + AL(K_HPB * NRP))              /* [hpb][NRP] row sum */
#define W_A (W_L + AL(K_HPB * NRP))              /* [hpb][DPB][RQP] o^T */
#define WS_FLOATS (W_A + AL(K_HPB * DPB * RQP))

const struct mta_kinfo mta_cpu_info = {
	MTA_KARGS_ABI, (int)sizeof(struct mta_kargs), K_DTYPE, (int64_t)WS_FLOATS * 4, 0
};

#include "templates/mta_cpu_vec.h"
#include "templates/mta_cpu_simd.h"

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

/* K_D elements from base + off into dst as floats (a memcpy for float32). */
static inline void ld_row(float *dst, const void *base, int64_t off)
{
#if K_DTYPE == 0
	memcpy(dst, (const float *)base + off, sizeof(float) * K_D);
#else
	for (int d = 0; d < K_D; d++)
		dst[d] = ld(base, off + d);
#endif
}

struct job {
	const struct mta_kargs *a;
	int64_t nitems, ntiles;
	int64_t next; /* next work item, taken atomically */
	int err;
};

/* ---- loads: tiles of q, k, v into the workspace ---- */

/* Scaled q^T of heads h0.. for rows zr0 + lane, lane < ZRP (0 outside [0,T)). */
static void load_qt(const struct mta_kargs *a, float *ws, int64_t b, int h0, int64_t zr0)
{
	for (int hl = 0; hl < K_HPB; hl++) {
		float *qt = ws + W_QT + hl * K_D * ZRP;
		for (int zr = 0; zr < ZRP; zr++) {
			const int64_t row = zr0 + zr;
			const int64_t off = b * a->q_sb + row * a->q_st + (int64_t)(h0 + hl) * a->q_sh;
			float x[K_D];
			if (row >= 0 && row < a->T && zr < K_BQ + RH1 + RH2)
				ld_row(x, a->q, off);
			else
				memset(x, 0, sizeof x);
			for (int d = 0; d < K_D; d++)
				qt[d * ZRP + zr] = K_SCALE * x[d];
		}
	}
}

/* k rows col0 + c of kv head hk into KB[c][d], c < n rounded up to QCB (0 outside [0,T)). */
static void load_k(const struct mta_kargs *a, float *ws, int64_t b, int hk, int64_t col0, int n)
{
	float *kb = ws + W_KB;
	for (int c = 0; c < RUP(n, QCB); c++) {
		const int64_t col = col0 + c;
		const int64_t off = b * a->k_sb + col * a->k_st + (int64_t)hk * a->k_sh;
		if (c < n && col >= 0 && col < a->T)
			ld_row(kb + c * K_D, a->k, off);
		else
			memset(kb + c * K_D, 0, sizeof(float) * K_D);
	}
}

/* v rows col0 + c (all inside [0,T)) of kv head hk into VB[c][d], c < n. */
static void load_v(const struct mta_kargs *a, float *ws, int64_t b, int hk, int64_t col0, int n)
{
	for (int c = 0; c < n; c++) {
		float *dst = ws + W_VB + c * DPB;
		const int64_t off = b * a->v_sb + (col0 + c) * a->v_st + (int64_t)hk * a->v_sh;
		ld_row(dst, a->v, off);
	}
}

/* ---- the tile steps ---- */

/*
 * Set lanes [0, lim) of s[c * cs] to x, for c < n: lim = col0 + c - base
 * (the lanes whose row base + lane is before the column), clamped to
 * [0, lanes]; all lanes if whole_outside and the column is outside [0,T).
 * The loops only do work near the diagonal.
 */
static void fill_lanes(float *s, int cs, int64_t col0, int n, int64_t base, int lanes, int64_t T,
		       int whole_outside, float x)
{
	for (int c = 0; c < n; c++) {
		const int64_t col = col0 + c;
		int64_t lim = col - base;
		if (whole_outside && (col < 0 || col >= T))
			lim = lanes;
		lim = lim < 0 ? 0 : lim > lanes ? lanes : lim;
		for (int64_t r = 0; r < lim; r++)
			s[c * cs + r] = x;
	}
}

/*
 * Pre-softmax scores of the block's heads for columns col0 + c, c < ns, and
 * rows sr0 + lane, lane < NRP: raw logits (zero where col > row or outside
 * [0,T)), kq_pre, head_pre. Returns the region holding them (R1 or R2);
 * columns past ns are scratch. Needs load_qt(sr0 - RH1) first.
 */
static float *scores(const struct mta_kargs *a, float *ws, int64_t b, int h0, int64_t sr0,
		     int64_t col0, int ns)
{
	const int nz = ns + CK1 - 1;
	const int64_t zc0 = col0 - OK1, zr0 = sr0 - RH1;
	float *s = ws + W_R1;
	for (int hl = 0; hl < K_HPB; hl++) {
		const float *qt = ws + W_QT + hl * K_D * ZRP;
		load_k(a, ws, b, (h0 + hl) / GQ, zc0, nz);
#if K_CQ
		float *z = ws + W_Z;
		qk(z, ZS, qt, ws + W_KB, nz);
		fill_lanes(z, ZS, zc0, nz, zr0, ZRP, a->T, 0, 0.0f);
		conv_pre(s + hl * RS, z, a->kq_pre + (h0 + hl) * K_CQ * K_CK, ns);
#else
		qk(s + hl * RS, SS, qt, ws + W_KB, nz);
		fill_lanes(s + hl * RS, SS, zc0, nz, zr0, ZRP, a->T, 0, 0.0f);
#endif
	}
#if K_HPRE
	mix(ws + W_R2, s, a->head_pre, K_H, 1, K_H, ns * SS, CNT_HPRE);
	s = ws + W_R2;
#endif
	return s;
}

/* The other region of S than s. */
static inline float *other(float *ws, const float *s)
{
	return s == ws + W_R1 ? ws + W_R2 : ws + W_R1;
}

/* Lane-wise running max m and sum l of exp over columns c < n of s (masked: -inf). */
static void stats(float *m, float *l, float *s, int n, float *alpha)
{
	for (int v = 0; v < NRP / VL; v++) {
		const vf m0 = vld(m + v * VL);
		vf mx = m0;
		for (int c = 0; c < n; c++)
			mx = vmax(mx, vld(s + c * SS + v * VL));
		const vf sf = vsel(mx == vsplat(-INFINITY), vsplat(0.0f), mx); /* no row yet */
		const vf al = vexp(m0 - sf);
		vf sum = vsplat(0.0f);
		COUNT(CNT_EXP, (int64_t)n * VL);
		for (int c = 0; c < n; c++) {
			const vf e = vexp(vld(s + c * SS + v * VL) - sf);
			if (alpha)
				vst(s + c * SS + v * VL, e); /* one pass: keep the weights */
			sum += e;
		}
		vst(m + v * VL, mx);
		vst(l + v * VL, vld(l + v * VL) * al + sum);
		if (alpha)
			vst(alpha + v * VL, al);
	}
}

static void start_tile(float *ws)
{
	for (int x = 0; x < K_HPB * NRP; x++) {
		ws[W_M + x] = -INFINITY;
		ws[W_L + x] = 0.0f;
	}
	memset(ws + W_A, 0, sizeof(float) * K_HPB * DPB * RQP);
}

#if !TWOPASS
/* One pass: online softmax over key tiles, P.V into o^T. */
static void tile_onepass(const struct mta_kargs *a, float *ws, int64_t b, int h0, int64_t i0, int nq)
{
	const int64_t lim = i0 + nq < a->T ? i0 + nq : a->T; /* columns < lim */
	start_tile(ws);
	load_qt(a, ws, b, h0, i0 - RH1);
	for (int64_t j0 = 0; j0 < lim; j0 += K_BK) {
		const int nc = lim - j0 < K_BK ? (int)(lim - j0) : K_BK;
		float *s = scores(a, ws, b, h0, i0, j0, nc), alpha[NRP];
		for (int hl = 0; hl < K_HPB; hl++) {
			float *sh = s + hl * RS, *acc = ws + W_A + hl * DPB * RQP;
			fill_lanes(sh, SS, j0, nc, i0, NRP, a->T, 1, -INFINITY);
			stats(ws + W_M + hl * NRP, ws + W_L + hl * NRP, sh, nc, alpha);
			for (int d = 0; d < K_D; d++)
				for (int v = 0; v < RQP / VL; v++)
					vst(acc + d * RQP + v * VL,
					    vld(acc + d * RQP + v * VL) * vld(alpha + v * VL));
			load_v(a, ws, b, (h0 + hl) / GQ, j0, nc);
			pv(acc, sh, ws + W_VB, nc);
		}
	}
	for (int hl = 0; hl < K_HPB; hl++) /* normalise */
		for (int d = 0; d < K_D; d++)
			for (int r = 0; r < RQP; r++)
				ws[W_A + (hl * DPB + d) * RQP + r] /= ws[W_L + hl * NRP + r];
}
#else
/* Two passes: row statistics, then normalised, convolved, mixed P.V. */
static void tile_twopass(const struct mta_kargs *a, float *ws, int64_t b, int h0, int64_t i0, int nq)
{
	const int64_t sr0 = i0 - RH2, lim = i0 + nq < a->T ? i0 + nq : a->T;
	start_tile(ws);
	load_qt(a, ws, b, h0, sr0 - RH1);

	/* pass 1: max and sum of each row sr0.. over its columns 0..row */
	for (int64_t j0 = 0; j0 < lim; j0 += K_BK) {
		const int nc = lim - j0 < K_BK ? (int)(lim - j0) : K_BK;
		float *s = scores(a, ws, b, h0, sr0, j0, nc);
		for (int hl = 0; hl < K_HPB; hl++) {
			fill_lanes(s + hl * RS, SS, j0, nc, sr0, NRP, a->T, 1, -INFINITY);
			stats(ws + W_M + hl * NRP, ws + W_L + hl * NRP, s + hl * RS, nc, NULL);
		}
	}
	/* rows without columns (before 0, past T): probabilities 0, not NaN */
	for (int x = 0; x < K_HPB * NRP; x++) {
		float *m = ws + W_M + x, *l = ws + W_L + x;
		*m = *m == -INFINITY ? 0.0f : *m;
		*l = *l > 0.0f ? 1.0f / *l : 0.0f;
	}

	/* pass 2 */
	for (int64_t j0 = 0; j0 < lim; j0 += K_BK) {
		const int nc = lim - j0 < K_BK ? (int)(lim - j0) : K_BK, np = nc + CK2E - 1;
		const int64_t c0 = j0 - OK2E;
		float *p = scores(a, ws, b, h0, sr0, c0, np);
		for (int hl = 0; hl < K_HPB; hl++) { /* P in place, 0 where col > row or outside */
			float *ph = p + hl * RS;
			fill_lanes(ph, SS, c0, np, sr0, NRP, a->T, 1, -INFINITY);
			for (int v = 0; v < NRP / VL; v++) {
				const vf m = vld(ws + W_M + hl * NRP + v * VL);
				const vf il = vld(ws + W_L + hl * NRP + v * VL);
				COUNT(CNT_EXP, (int64_t)np * VL);
				for (int c = 0; c < np; c++)
					vst(ph + c * SS + v * VL, vexp(vld(ph + c * SS + v * VL) - m) * il);
			}
		}
#if K_CQ2
		float *t = other(ws, p);
		for (int hl = 0; hl < K_HPB; hl++) {
			conv_post(t + hl * RS, p + hl * RS, a->kq_post + (h0 + hl) * K_CQ2 * K_CK2, nc);
			fill_lanes(t + hl * RS, SS, j0, nc, i0, RQP, a->T, 0, 0.0f); /* col > row */
		}
		p = t;
#endif
#if K_HPOST == 1
		/* P[g*c+o] <- sum_i head_post[g,i,o] P[g*c+i] */
		for (int g0 = 0; g0 < K_HPB; g0 += K_HC)
			mix(other(ws, p) + g0 * RS, p + g0 * RS,
			    a->head_post + (h0 + g0) / K_HC * K_HC * K_HC, 1, K_HC, K_HC, nc * SS,
			    CNT_HPOST);
		p = other(ws, p);
#elif K_HPOST == 2
		mix(other(ws, p), p, a->head_post_linear, K_H, 1, K_H, nc * SS, CNT_HPOST);
		p = other(ws, p);
#endif
		for (int hl = 0; hl < K_HPB; hl++) {
			load_v(a, ws, b, (h0 + hl) / GQ, j0, nc);
			pv(ws + W_A + hl * DPB * RQP, p + hl * RS, ws + W_VB, nc);
		}
	}
}
#endif

/* Group norm, gate, store: o^T of rows i0.. becomes o. */
static void finish(const struct mta_kargs *a, float *ws, int64_t b, int h0, int64_t i0, int nq)
{
	for (int hl = 0; hl < K_HPB; hl++)
		for (int r = 0; r < nq; r++) {
			const float *ot = ws + W_A + hl * DPB * RQP + r;
			float o[K_D];
			for (int d = 0; d < K_D; d++)
				o[d] = ot[d * RQP];
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

/*
 * Packed documents: document d's rows of a's tensors as a plain B=1 call of
 * T = its length (the tile steps read nothing outside [0,T), so nothing
 * crosses a boundary).
 */
static void doc_args(const struct mta_kargs *a, int64_t d, struct mta_kargs *x)
{
	const int64_t s = a->cu_seqlens[d], es = K_DTYPE == 0 ? 4 : 2;
	*x = *a;
	x->B = 1;
	x->T = a->cu_seqlens[d + 1] - s;
	x->q = (const char *)a->q + s * a->q_st * es;
	x->k = (const char *)a->k + s * a->k_st * es;
	x->v = (const char *)a->v + s * a->v_st * es;
	x->o = a->o + s * a->o_st;
	x->cu_seqlens = 0;
}

static void worker(void *arg, int tid)
{
	struct job *j = arg;
	const struct mta_kargs *a = j->a;
	float *ws = a->pool_mem(a->pool, tid, sizeof(float) * WS_FLOATS);
	if (!ws) {
		__atomic_store_n(&j->err, MTA_KERR_NOMEM, __ATOMIC_RELAXED);
		return;
	}
	memset(ws, 0, sizeof(float) * WS_FLOATS); /* padding lanes and rows stay 0 */
	const int64_t per_tile = a->B * (K_H / K_HPB);
	/* packed documents: a cursor over them, moving forward only (items come in order) */
	int64_t doc = -1, doc_tiles = 0, doc_first = 0;
	struct mta_kargs da;
	for (;;) {
		int64_t w = __atomic_fetch_add(&j->next, 1, __ATOMIC_RELAXED);
		if (w >= j->nitems)
			break;
		const struct mta_kargs *x = a;
		int64_t qt = j->ntiles - 1 - w / per_tile;
		const int64_t rest = w % per_tile;
		if (a->cu_seqlens) { /* tile w / per_tile of all documents, each from its last */
			const int64_t g = w / per_tile;
			while (doc < 0 || g >= doc_first + doc_tiles) {
				doc_first += doc_tiles;
				doc++;
				doc_tiles = (a->cu_seqlens[doc + 1] - a->cu_seqlens[doc] + K_BQ - 1) / K_BQ;
			}
			doc_args(a, doc, &da);
			x = &da;
			qt = doc_tiles - 1 - (g - doc_first);
		}
		const int64_t b = rest / (K_H / K_HPB), i0 = qt * K_BQ;
		const int h0 = (int)(rest % (K_H / K_HPB)) * K_HPB;
		const int nq = x->T - i0 < K_BQ ? (int)(x->T - i0) : K_BQ;
#if TWOPASS
		tile_twopass(x, ws, b, h0, i0, nq);
#else
		tile_onepass(x, ws, b, h0, i0, nq);
#endif
		finish(x, ws, b, h0, i0, nq);
	}
	count_flush();
}

int mta_cpu_kernel(const struct mta_kargs *a)
{
	if (!a || a->dtype != K_DTYPE || a->B < 1 || a->T < 1 || !a->pool_run || !a->pool_mem ||
	    (a->cu_seqlens && (a->B != 1 || a->ndocs < 1)))
		return MTA_KERR_ARGS;
	struct job j = { a, 0, (a->T + K_BQ - 1) / K_BQ, 0, 0 };
	if (a->cu_seqlens) {
		j.ntiles = 0;
		for (int64_t d = 0; d < a->ndocs; d++)
			j.ntiles += (a->cu_seqlens[d + 1] - a->cu_seqlens[d] + K_BQ - 1) / K_BQ;
	}
	j.nitems = j.ntiles * a->B * (K_H / K_HPB);
	int64_t n = a->nthreads > 0 ? a->nthreads : K_THR > 0 ? K_THR : a->pool_cores;
	if (n > j.nitems)
		n = j.nitems;
	if (n > 256)
		n = 256;
	if (j.nitems)
		a->pool_run(a->pool, n < 1 ? 1 : (int)n, worker, &j);
	return j.err;
}
