/*
 * mta_cpu_bwd.c: template of the generated CPU backward of MTA (MTA.md),
 * with the forward that saves what it needs. Specialised by the #defines of
 * gen/defines.c (problem constants K_H.., the CPU variant's tunables K_BQ,
 * K_THR); ABI in runtime/core/mta_bkargs.h.
 *
 * Flash-style. The forward (mta_cpu_fwd_save) writes the output and saves,
 * per row, the softmax's log-sum-exp and the output before group norm and
 * gate: O(T) per head, never a T x T matrix. The backward (mta_cpu_bwd)
 * recomputes the logits row by row from q and k, the probabilities from
 * them and the saved log-sum-exp, and takes the gradients of group norm,
 * gate and the post-softmax steps from the saved pre-norm output.
 *
 * How it streams (the float64 reference, runtime/core/reference_bwd.c,
 * explains the three stages): the convolutions couple a row with the cq-1
 * and cq2-1 rows before it, so row t's forward, its gradient back to dP2
 * (stage 1), row t-(cq2-1)'s softmax and head_pre gradient (stage 2) and row
 * t-(cq2-1)-(cq-1)'s dZ complete (stage 3) run in one step, each row's
 * intermediates kept in rings of rows (all heads: head mixing needs them).
 *
 * Parallel work: a task is a block of K_BQ query rows of one batch; it owns
 * those rows' dq, their contributions to dk, dv and to every weight's
 * gradient. To complete dZ of its rows it also runs stages 1 and 2 of the
 * next cq+cq2-2 rows (their contributions to anything else dropped) and the
 * forward of the cq+cq2-2 rows before it: the halo a bigger block amortises
 * (the backward space's default bq is 64 for that reason, gen/cpu/space.c).
 *
 * Reuse (the products with D-long rows are where a row at a time is
 * load-bound: each row streamed k or v once for D multiply-adds per key):
 *   - Z = q.k and dP3 = dL/do . v^T are made for groups of RG consecutive
 *     rows at once (zrows, dprows through panel_rows): register blocks of
 *     RB rows x CB vectors of key columns, each vector of the k (v) panel
 *     loaded once for RB rows. The panels are k and v transposed and cut
 *     into chunks of CW key columns, each [D][CW] contiguous (PIDX), so a
 *     block streams one contiguous chunk. The Z ring holds a group ahead.
 *   - dq, dk and dv are made once per task from the task's kept rows (dZ
 *     and P3, zeroed past each row's diagonal up to the task's end, scaled q
 *     and dL/do): dq by blocks of RBD rows x D (each k row loaded once for
 *     RBD rows), dk and dv by blocks of RBD key columns x D summed over the
 *     task's rows (each q, dL/do row loaded once for RBD columns).
 *   - the saving forward makes its P3 . v products for the same groups of
 *     rows (fwd_group: RBD rows x D per block, each v row loaded once).
 *   - the convolutions' taps' gradients sum all taps of a row in one pass
 *     (conv_gw); the softmax's exp is vectorised (vexp_sm).
 * Vectors over d are DW floats (the widest of VL, 8, 4 dividing D; 1 when
 * none does), so any D compiles; the tails of every block run through the
 * same code with fewer rows, columns or lanes.
 *
 * Deterministic: thread w takes tasks w, w+n, w+2n, ... in order and sums
 * into its own partial dk, dv and weight gradients (in the pool's shared
 * buffer); the partials are then summed in thread order. Every sum above
 * runs in a fixed order, so the same inputs, variant and thread count give
 * bit-identical gradients. The group norm and gate backward of each row runs
 * in double, and every weight gradient is summed over rows in double.
 *
 * Memory: per thread, rings of H * (cq+cq2-1 + RG-1 + 3cq2 + cq + 5) rows of
 * T floats (cq, cq2 taken as 1 when absent), the group's dP3 rows (RG * H
 * rows of T) and the task's own P3 and dZ rows, 2 * bq * H rows of T;
 * shared, float copies of k and v (by rows, for the P.V, dq and dk
 * products, vectorised over d, and as panels, for the q.k and dP = dO.v
 * products, vectorised over key columns) and each thread's partial dk and
 * dv: O(T), never T x T. Intermediates are float32 whatever the input type,
 * so bf16/f16 inputs lose nothing past their own rounding.
 */
#include <math.h>
#include <stdint.h>
#include <string.h>

#include "runtime/core/mta_kargs.h"
#include "runtime/core/mta_bkargs.h"

/* Defaults so the template compiles alone (the generator defines them all). */
#ifndef K_H
#define K_H 4
#define K_HKV 2
#define K_D 16
#define K_CQ 3
#define K_CK 5
#define K_OK 2
#define K_HPRE 1
#define K_CQ2 2
#define K_CK2 3
#define K_OK2 1
#define K_HPOST 1
#define K_HC 2
#define K_GN 1
#define K_GNR 1
#define K_GATE 1
#define K_SCALE 0.25f
#define K_DTYPE 0
#define K_BQ 16
#define K_THR 0
#endif

#define MIN2(x, y) ((x) < (y) ? (x) : (y))
#define MAX2(x, y) ((x) > (y) ? (x) : (y))

/* An absent convolution is the identity 1x1 kernel, absent mixing the identity matrix. */
#define CQ1 (K_CQ ? K_CQ : 1)
#define CK1 (K_CQ ? K_CK : 1)
#define OK1 (K_CQ ? K_OK : 0)
#define CQ2E (K_CQ2 ? K_CQ2 : 1)
#define CK2E (K_CQ2 ? K_CK2 : 1)
#define OK2E (K_CQ2 ? K_OK2 : 0)
#define NZR (CQ1 + CQ2E - 1) /* rows of Z stage 2's kq_pre gradient reaches back over */
#define RG 8                 /* rows of a group: their Z and dP rows made together */
#define ZS (NZR + RG - 1)    /* slots of the Z ring: NZR rows back and a group ahead */
#define CKM MAX2(CK1, CK2E)  /* the most taps of a convolution row */
#define GQ (K_H / K_HKV)
#define BR (K_BQ > 0 ? K_BQ : 16)
#define MIXPOST (K_HPOST != 0)

/* Weight-gradient partials per thread, as doubles: offsets of each part. */
#define WG_K1 0
#define WG_PRE (WG_K1 + K_H * CQ1 * CK1)
#define WG_K2 (WG_PRE + K_H * K_H)
#define WG_POST (WG_K2 + K_H * CQ2E * CK2E)
#define WG_GN (WG_POST + K_H * K_H)
#define WG_GW (WG_GN + K_D)
#define WG_GB (WG_GW + K_D)
#define WG_N (WG_GB + 8)

/* Rows of T floats a thread's workspace holds, and its fixed part. */
#define W_ROWS (K_H * (ZS + 3 * CQ2E + CQ1 + 5 + RG + 2 * BR))
#define W_FIXED (K_D * (RG + RG * K_H + 7) + 2 * BR * K_H * K_D + 64)

const struct mta_kinfo mta_cpu_bwd_info = {
	MTA_BKARGS_ABI, (int)sizeof(struct mta_bkargs), K_DTYPE,
	4 * (int64_t)W_FIXED, 4 * (int64_t)W_ROWS
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

/*
 * sum_j a[j] * b[j], j < n, in 16 lanes summed at the end: a fixed order
 * (so deterministic) that GCC vectorises without -ffast-math, which it
 * cannot do for a plain running sum.
 */
static inline float dotv(const float *a, const float *b, int64_t n)
{
	float acc[16] = { 0 };
	int64_t j = 0;
	for (; j + 16 <= n; j += 16)
		for (int l = 0; l < 16; l++)
			acc[l] += a[j + l] * b[j + l];
	for (int l = 0; j + l < n; l++)
		acc[l] += a[j + l] * b[j + l];
	float s = 0.0f;
	for (int l = 0; l < 16; l++)
		s += acc[l];
	return s;
}

/* ---- register-blocked products: a group of rows or columns at once ---- */

/*
 * Vectors over key columns: the machine's widest (the compiler's target),
 * not the variant's vec, which the backward's space leaves at the forward
 * default's value (gen/cpu/space.c: the backward reads bq and thr only).
 */
#if defined(__AVX512F__)
#define VL 16
#elif defined(__AVX__)
#define VL 8
#else
#define VL 4
#endif
#include "templates/mta_cpu_vec.h"

/*
 * Vectors along d for dq, dk and dv: the widest of VL, 8 and 4 floats that
 * divides D (1: scalars), and how many rows (or key columns) one register
 * block holds: their accumulators fill about half the vector registers.
 */
#define DW (K_D % VL == 0 ? VL : K_D % 8 == 0 && VL > 8 ? 8 : K_D % 4 == 0 ? 4 : 1)
#define DV (K_D / DW)
#define RBD MAX2(1, MIN2(4, VL * VL / K_D))
typedef float vd __attribute__((vector_size(DW * 4)));

INLINE vd vdld(const float *p)
{
	vd x;
	memcpy(&x, p, sizeof x);
	return x;
}

INLINE void vdst(float *p, vd x)
{
	memcpy(p, &x, sizeof x);
}

#define CB 4       /* column vectors of a panel_rows block */
#define RB 4       /* rows of a panel_rows block */
#define CW (CB * VL) /* key columns of a panel chunk */

/*
 * A panel, k or v of one kv head transposed for the products vectorised
 * over key columns, is stored in chunks of CW columns, each [D][CW]
 * contiguous (16 KB for D = 64, VL = 16), so that a block streams one
 * contiguous chunk rather than D rows T apart (D streams, more than a
 * prefetcher follows). Column j, dimension d is at PIDX(j, d); a panel
 * takes PANEL(T) floats.
 */
#define PIDX(j, d) ((j) / CW * (K_D * CW) + (int64_t)(d) * CW + (j) % CW)
#define PANEL(T) (((T) + CW - 1) / CW * CW * K_D)

/*
 * out[r][j..j + nc*VL) = sum_d x[r][d] m[d][j..] for r < nr: nc vectors of m
 * loaded once per d serve nr rows (the reuse a row at a time lacks).
 */
INLINE void pr_block(const float *x, const float *m, int64_t T, int64_t j, float *const *out,
		     const int nr, const int nc)
{
	vf acc[RB][CB];
	for (int r = 0; r < nr; r++)
		for (int c = 0; c < nc; c++)
			acc[r][c] = vsplat(0.0f);
	const float *m0 = m + PIDX(j, 0);
	for (int d = 0; d < K_D; d++) {
		const float *md = m0 + d * CW;
		vf mv[CB];
		for (int c = 0; c < nc; c++)
			mv[c] = vld(md + c * VL);
		for (int r = 0; r < nr; r++) {
			const vf xs = vsplat(x[r * K_D + d]);
			for (int c = 0; c < nc; c++)
				acc[r][c] += xs * mv[c];
		}
	}
	for (int r = 0; r < nr; r++)
		for (int c = 0; c < nc; c++)
			vst(out[r] + j + c * VL, acc[r][c]);
}

/*
 * out[r][j] = sum_d x[r][d] * m[d][j] for r < g, j < n: g rows (x's rows D
 * apart) times a panel (PIDX), vectorised over j, each chunk streamed once
 * from memory and read from L1 by the other blocks of RB rows.
 */
static void panel_rows(const float *x, int g, const float *m, int64_t T, int64_t n,
		       float *const *out)
{
	int64_t j = 0;
	for (; j + CB * VL <= n; j += CB * VL) {
		int r = 0;
		for (; r + RB <= g; r += RB)
			pr_block(x + r * K_D, m, T, j, out + r, RB, CB);
		for (; r < g; r++)
			pr_block(x + r * K_D, m, T, j, out + r, 1, CB);
	}
	for (; j + VL <= n; j += VL) {
		int r = 0;
		for (; r + RB <= g; r += RB)
			pr_block(x + r * K_D, m, T, j, out + r, RB, 1);
		for (; r < g; r++)
			pr_block(x + r * K_D, m, T, j, out + r, 1, 1);
	}
	if (j < n) /* the last n - j < VL columns: a whole vector (the chunk is padded), stored in part */
		for (int r = 0; r < g; r++) {
			const float *m0 = m + PIDX(j, 0);
			vf acc = vsplat(0.0f);
			float part[VL];
			for (int d = 0; d < K_D; d++)
				acc += vsplat(x[r * K_D + d]) * vld(m0 + d * CW);
			vst(part, acc);
			memcpy(out[r] + j, part, sizeof(float) * (size_t)(n - j));
		}
}

/* One call: what every thread reads, and where it writes. */
struct job {
	const struct mta_bkargs *a;
	int bwd;               /* 0: the saving forward, 1: the backward */
	int64_t T, nblk, ntasks;
	int nth;
	float *kf, *vf;        /* shared: k, v as float, [B][HKV][T][D] */
	float *kt, *vt;        /* shared: the same transposed, [B][HKV][D][T] */
	float *part;           /* shared: per thread dk, dv partials, [nth][2][B][T][HKV][D] */
	double *wpart;         /* shared: per thread weight-gradient partials, [nth][WG_N] */
	float *mpost;          /* shared: head_post / head_post_linear as an H x H matrix */
	int err;
};

/* One thread's rows and scratch, all [H][slots][T] or [H][T]. */
struct th {
	const struct job *j;
	const struct mta_bkargs *a;
	int64_t T, b, i0;                   /* i0: the task's first row */
	float *z, *s2, *p, *dp, *dz;        /* rings */
	float *s3, *p2, *p3, *dp2, *ds3, *ds2;
	int64_t i1, e1;                     /* the task's end, and its stage-1 rows' end */
	float *q;                           /* a group's scaled q (or dL/do) rows, [RG][D] */
	float *dopg, *dp3g;                 /* a group's dL/do [H][RG][D] and dP3 rows [RG][H][T] */
	float *tmp;                         /* [7][D] */
	/*
	 * The task's own rows, kept for the dk and dv products done once per
	 * task (block_dkdv): P3 and dL/do of each row [BR][H][T], [BR][H][D]
	 * (for dv), the scaled dZ and q [BR][H][T], [BR][H][D] (for dk).
	 */
	float *p3b, *dopb, *dzb, *qb;
	float *pdk, *pdv;                   /* this thread's partial dk, dv of the whole call */
	double *wg;                         /* this thread's weight-gradient partials */
};

static inline float *ring(float *r, int slots, int64_t T, int h, int64_t row)
{
	return r + ((int64_t)h * slots + row % slots) * T;
}

/* The panels (PIDX) of k and v of kv head hk. */
static inline const float *ktpanel(const struct th *t, int hk)
{
	return t->j->kt + (t->b * K_HKV + hk) * PANEL(t->T);
}

static inline const float *vtpanel(const struct th *t, int hk)
{
	return t->j->vt + (t->b * K_HKV + hk) * PANEL(t->T);
}

/*
 * out[j] (j <= i) = sum over taps (a, c) of w[a][c] * in[i-(rows-1)+a][j-ok+c],
 * inputs outside [0, T) or above their row's diagonal being zero (MTA.md step 2).
 */
static inline void conv_fwd(const float *w, int rows, int cols, int ok, const float *rg,
			    int slots, int64_t T, int64_t i, float *out)
{
	for (int64_t j = 0; j <= i; j++)
		out[j] = 0.0f;
	for (int a = 0; a < rows; a++) {
		const int64_t r = i - (rows - 1) + a;
		if (r < 0)
			continue;
		const float *row = rg + (r % slots) * T, *wa = w + a * cols;
		/*
		 * Interior columns, where every tap's input is inside [0, r]: all
		 * taps summed for each j (one store per j; the compiler vectorises
		 * over j with the tap loop unrolled); the edges tap by tap checked.
		 */
		const int64_t jlo = ok, jhi = MIN2(i, r + ok - (cols - 1));
		for (int64_t j = 0; j <= i; j++) {
			if (j == jlo && jhi >= jlo) {
				const float *src = row - ok;
				for (int64_t jj = jlo; jj <= jhi; jj++) {
					float acc = 0.0f;
					for (int c = 0; c < cols; c++)
						acc += wa[c] * src[jj + c];
					out[jj] += acc;
				}
				j = jhi;
				continue;
			}
			float acc = 0.0f;
			for (int c = 0; c < cols; c++) {
				const int64_t col = j - ok + c;
				if (col >= 0 && col <= r)
					acc += wa[c] * row[col];
			}
			out[j] += acc;
		}
	}
}

/*
 * The taps' gradient of one input row r for output row i: gw[c] += sum over
 * 0 <= j <= i with 0 <= j-ok+c <= r of row[j-ok+c] * dout[j]. The columns
 * every tap reaches are summed for all taps in one pass (each dout vector
 * loaded once for the cols taps), the edges tap by tap; per row in float,
 * across rows in double.
 */
static inline void conv_gw(double *gw, const int cols, int ok, const float *row, int64_t r,
			   int64_t i, const float *dout)
{
	vf acc[CKM];
	for (int c = 0; c < cols; c++)
		acc[c] = vsplat(0.0f);
	const int64_t jlo = ok, jhi = MIN2(i, r + ok - (cols - 1));
	int64_t jv = jlo;
	for (; jv + VL - 1 <= jhi; jv += VL) {
		const vf g = vld(dout + jv);
		for (int c = 0; c < cols; c++)
			acc[c] += vld(row - ok + c + jv) * g;
	}
	for (int c = 0; c < cols; c++) {
		const int64_t lo = MAX2(0, ok - c), hi = MIN2(i, r + ok - c);
		float sum = vhsum(acc[c]);
		for (int64_t j = lo; j <= MIN2(hi, jlo - 1); j++)
			sum += row[j - ok + c] * dout[j];
		for (int64_t j = jv; j <= hi; j++)
			sum += row[j - ok + c] * dout[j];
		gw[c] += (double)sum;
	}
}

/*
 * The adjoint of conv_fwd for output row i: dring rows (the inputs' gradient)
 * += w * dout; when gw, gw[a][c] += sum_j in * dout (the taps' gradient).
 */
static inline void conv_bwd(const float *w, int rows, int cols, int ok, double *gw,
			    const float *rg, int slots, float *drg, int dslots, int64_t T,
			    int64_t i, const float *dout)
{
	for (int a = 0; a < rows; a++) {
		const int64_t r = i - (rows - 1) + a;
		if (r < 0)
			continue;
		const float *row = rg + (r % slots) * T, *wa = w + a * cols;
		float *drow = drg + (r % dslots) * T;
		/* input column col gets w[c] * dout[col + ok - c] for each tap with 0 <= j <= i */
		const int64_t clo = MAX2(0, cols - 1 - ok), chi = MIN2(r, i - ok);
		for (int64_t col = 0; col <= r; col++) {
			if (col == clo && chi >= clo) {
				const float *g = dout + ok;
				for (int64_t cc = clo; cc <= chi; cc++) {
					float acc = 0.0f;
					for (int c = 0; c < cols; c++)
						acc += wa[c] * g[cc - c];
					drow[cc] += acc;
				}
				col = chi;
				continue;
			}
			float acc = 0.0f;
			for (int c = 0; c < cols; c++) {
				const int64_t j = col + ok - c;
				if (j >= 0 && j <= i)
					acc += wa[c] * dout[j];
			}
			drow[col] += acc;
		}
		if (gw)
			conv_gw(gw + a * cols, cols, ok, row, r, i, dout);
	}
}

/* out[h][j] = sum_h2 M[h][h2] in[h2][j] for j <= i; in's rows in_stride apart. */
static inline void mix(const float *M, const float *in, int64_t in_stride, int64_t T, int64_t i,
		       float *out)
{
	for (int h = 0; h < K_H; h++) {
		float *o = out + (int64_t)h * T;
		for (int64_t j = 0; j <= i; j++)
			o[j] = 0.0f;
		for (int h2 = 0; h2 < K_H; h2++) {
			const float m = M[h * K_H + h2], *x = in + h2 * in_stride;
			if (m == 0.0f)
				continue; /* the head_post convolution's matrix is block diagonal */
			for (int64_t j = 0; j <= i; j++)
				o[j] += m * x[j];
		}
	}
}

/*
 * The adjoint of mix: din[h2] = sum_h M[h][h2] dout[h]; when gM, also
 * gM[h][h2] += sum_j dout[h][j] in[h2][j] (in's rows in_stride apart).
 */
static inline void mix_bwd(const float *M, double *gM, const float *in, int64_t in_stride,
			   const float *dout, int64_t T, int64_t i, float *din)
{
	for (int h2 = 0; h2 < K_H; h2++) {
		float *o = din + (int64_t)h2 * T;
		for (int64_t j = 0; j <= i; j++)
			o[j] = 0.0f;
		for (int h = 0; h < K_H; h++) {
			const float m = M[h * K_H + h2], *x = dout + (int64_t)h * T;
			if (m == 0.0f)
				continue;
			for (int64_t j = 0; j <= i; j++)
				o[j] += m * x[j];
		}
	}
	if (gM)
		for (int h = 0; h < K_H; h++)
			for (int h2 = 0; h2 < K_H; h2++) {
				const float *x = dout + (int64_t)h * T, *y = in + h2 * in_stride;
				gM[h * K_H + h2] += dotv(x, y, i + 1);
			}
}

/*
 * Z rows s..s+g-1 (g <= RG) of every head into the Z ring: the scaled
 * logits q_i . k_j for j <= s+g-1 (a row's columns past its diagonal are
 * made too, and never read).
 */
static void zrows(struct th *t, int64_t s, int g)
{
	const struct mta_kargs *a = &t->a->f;
	float *out[RG];
	for (int h = 0; h < K_H; h++) {
		for (int r = 0; r < g; r++) {
			const int64_t qo = t->b * a->q_sb + (s + r) * a->q_st + h * a->q_sh;
			for (int d = 0; d < K_D; d++)
				t->q[r * K_D + d] = ld(a->q, qo + d) * K_SCALE;
			out[r] = ring(t->z, ZS, t->T, h, s + r);
		}
		panel_rows(t->q, g, ktpanel(t, h / GQ), t->T, s + g, out);
	}
}

/*
 * p[j] = exp(s[j] - m) for j < n, vectorised (vexp_sm: the arguments stay
 * below 80), the last partial vector through a padded copy so that every
 * column takes the same exp; returns the sum of the p[j].
 */
static float vexp_row(const float *s, float m, int64_t n, float *p)
{
	vf acc = vsplat(0.0f);
	int64_t j = 0;
	for (; j + VL <= n; j += VL) {
		const vf e = vexp_sm(vld(s + j) - m);
		vst(p + j, e);
		acc += e;
	}
	if (j < n) {
		float x[VL];
		for (int l = 0; l < VL; l++)
			x[l] = j + l < n ? s[j + l] - m : -INFINITY;
		const vf e = vfirst(vexp_sm(vld(x)), (int)(n - j), vsplat(0.0f));
		vst(x, e);
		memcpy(p + j, x, sizeof(float) * (size_t)(n - j));
		acc += e;
	}
	return vhsum(acc);
}

/*
 * Row i's S2 (into its ring), S3 and P (into its ring). save: the forward,
 * which finds each row's maximum and sum and, when lse is set, stores the
 * log-sum-exp; otherwise P = exp(S3 - lse) from the saved one.
 */
static void srow(struct th *t, int64_t i, int save, float *lse)
{
	const struct mta_kargs *a = &t->a->f;
	const int64_t T = t->T;
	for (int h = 0; h < K_H; h++) {
		float *s2 = ring(t->s2, CQ2E, T, h, i);
#if K_CQ
		conv_fwd(a->kq_pre + h * K_CQ * K_CK, K_CQ, K_CK, K_OK, ring(t->z, ZS, T, h, 0), ZS,
			 T, i, s2);
#else
		memcpy(s2, ring(t->z, ZS, T, h, i), sizeof(float) * (size_t)(i + 1));
#endif
	}
#if K_HPRE
	mix(a->head_pre, ring(t->s2, CQ2E, T, 0, i), (int64_t)CQ2E * T, T, i, t->s3);
#else
	for (int h = 0; h < K_H; h++)
		memcpy(t->s3 + h * T, ring(t->s2, CQ2E, T, h, i), sizeof(float) * (size_t)(i + 1));
#endif
	const float *saved = t->a->saved + t->b * K_H * T;
	for (int h = 0; h < K_H; h++) {
		const float *s = t->s3 + h * T;
		float *p = ring(t->p, CQ2E, T, h, i);
		if (save) {
			float mx = -INFINITY;
			for (int64_t j = 0; j <= i; j++)
				mx = s[j] > mx ? s[j] : mx;
			const float sum = vexp_row(s, mx, i + 1, p);
			const float inv = 1.0f / sum;
			for (int64_t j = 0; j <= i; j++)
				p[j] *= inv;
			if (lse)
				lse[(t->b * K_H + h) * T + i] = mx + logf(sum);
		} else {
			vexp_row(s, saved[h * T + i], i + 1, p);
		}
	}
}

/* Row i's P2 and P3 (of every head) from the P ring. */
static void post_rows(struct th *t, int64_t i)
{
	const struct mta_kargs *a = &t->a->f;
	const int64_t T = t->T;
	for (int h = 0; h < K_H; h++) {
#if K_CQ2
		conv_fwd(a->kq_post + h * K_CQ2 * K_CK2, K_CQ2, K_CK2, K_OK2, ring(t->p, CQ2E, T, h, 0),
			 CQ2E, T, i, t->p2 + h * T);
#else
		memcpy(t->p2 + h * T, ring(t->p, CQ2E, T, h, i), sizeof(float) * (size_t)(i + 1));
#endif
	}
#if MIXPOST
	mix(t->j->mpost, t->p2, T, T, i, t->p3);
#else
	memcpy(t->p3, t->p2, sizeof(float) * (size_t)(K_H * T));
#endif
	(void)a;
}

/* y = group norm and gate of o (one row of one head, D floats). */
static void norm_gate(const struct mta_kargs *a, const float *o, float *y)
{
	float n[K_D];
	for (int d = 0; d < K_D; d++)
		n[d] = o[d];
#if K_GN
	float ms = 0.0f;
	for (int d = 0; d < K_D; d++)
		ms += o[d] * o[d];
	const float rs = 1.0f / sqrtf(ms / K_D + 1e-5f) * (K_GNR ? a->gn_rescale : 1.0f);
	for (int d = 0; d < K_D; d++)
		n[d] = o[d] * rs * a->gn_weight[d];
#endif
#if K_GATE
	float z = a->gate_b;
	for (int d = 0; d < K_D; d++)
		z += n[d] * a->gate_w[d];
	const float g = 1.0f / (1.0f + expf(-z));
	for (int d = 0; d < K_D; d++)
		n[d] *= g;
#endif
	for (int d = 0; d < K_D; d++)
		y[d] = n[d];
	(void)a;
}

/*
 * The gradient of steps 8-9 for one row: o the pre-norm output, dy = dL/dy;
 * dL/do into d, and (when wg) the weights' gradients added into wg.
 */
static void norm_gate_bwd(const struct mta_kargs *a, const float *o, const float *dy, float *d,
			  double *wg)
{
	/*
	 * In double (D operations per row, nothing next to the row's T): summed
	 * over every row, dgate_b, dgate_w and dgn_weight can cancel to a
	 * thousandth of their terms, so each term needs more than float's
	 * precision for the sum to keep float's.
	 */
	double n[K_D], dn[K_D];
	for (int e = 0; e < K_D; e++)
		n[e] = o[e];
#if K_GN
	const double resc = K_GNR ? a->gn_rescale : 1.0;
	double ms = 0.0;
	for (int e = 0; e < K_D; e++)
		ms += (double)o[e] * o[e];
	const double rs = 1.0 / sqrt(ms / K_D + 1e-5);
	for (int e = 0; e < K_D; e++)
		n[e] = o[e] * rs * a->gn_weight[e] * resc;
#endif
#if K_GATE
	double z = a->gate_b, dot = 0.0;
	for (int e = 0; e < K_D; e++)
		z += n[e] * a->gate_w[e];
	const double sg = 1.0 / (1.0 + exp(-z));
	for (int e = 0; e < K_D; e++)
		dot += dy[e] * n[e];
	const double dz = dot * sg * (1.0 - sg);
	for (int e = 0; e < K_D; e++) {
		dn[e] = dy[e] * sg + dz * a->gate_w[e];
		if (wg)
			wg[WG_GW + e] += dz * n[e];
	}
	if (wg)
		wg[WG_GB] += dz;
#else
	for (int e = 0; e < K_D; e++)
		dn[e] = dy[e];
#endif
#if K_GN
	double dot2 = 0.0;
	for (int e = 0; e < K_D; e++) {
		if (wg)
			wg[WG_GN + e] += dn[e] * o[e] * rs * resc;
		dn[e] *= a->gn_weight[e] * resc;
		dot2 += dn[e] * o[e];
	}
	for (int e = 0; e < K_D; e++)
		d[e] = (float)(rs * dn[e] - rs * rs * rs / K_D * o[e] * dot2);
#else
	for (int e = 0; e < K_D; e++)
		d[e] = (float)dn[e];
#endif
	(void)a;
}

/* ---- the saving forward ---- */

/*
 * o of rows s+r0 .. s+r0+nr-1 (nr <= RBD) of head h, the P3 . v product,
 * from the group's P3 rows (dp3g, zero past each row's diagonal up to the
 * group's end): each v row loaded once for nr rows; into out's rows.
 */
INLINE void pv_block(struct th *t, int h, int64_t s, int r0, const int nr, float *out)
{
	const int64_t T = t->T, cend = s + r0 + nr;
	const float *vp = t->j->vf + (t->b * K_HKV + h / GQ) * T * K_D, *pr[RBD];
	vd acc[RBD][DV];
	for (int r = 0; r < nr; r++) {
		pr[r] = t->dp3g + ((int64_t)(r0 + r) * K_H + h) * T;
		for (int v = 0; v < DV; v++)
			acc[r][v] = (vd){ 0 };
	}
	for (int64_t c = 0; c < cend; c++) {
		vd vv[DV];
		for (int v = 0; v < DV; v++)
			vv[v] = vdld(vp + c * K_D + v * DW);
		for (int r = 0; r < nr; r++) {
			const float g = pr[r][c];
			for (int v = 0; v < DV; v++)
				acc[r][v] += g * vv[v];
		}
	}
	for (int r = 0; r < nr; r++)
		for (int v = 0; v < DV; v++)
			vdst(out + (r0 + r) * K_D + v * DW, acc[r][v]);
}

/* The outputs of rows s..s+g-1 (g <= RG), their P3 rows in dp3g: saved before norm and gate, and o. */
static void fwd_group(struct th *t, int64_t s, int g)
{
	const struct mta_kargs *a = &t->a->f;
	const int64_t T = t->T;
	float *opre = t->a->saved + a->B * K_H * T, *ob = t->dopg; /* [RG][D] */
	for (int h = 0; h < K_H; h++) {
		int r = 0;
		for (; r + RBD <= g; r += RBD)
			pv_block(t, h, s, r, RBD, ob);
		for (; r < g; r++)
			pv_block(t, h, s, r, 1, ob);
		for (r = 0; r < g; r++) {
			const int64_t i = s + r;
			memcpy(opre + ((t->b * T + i) * K_H + h) * K_D, ob + r * K_D, sizeof(float) * K_D);
			norm_gate(a, ob + r * K_D, a->o + t->b * a->o_sb + i * a->o_st + h * a->o_sh);
		}
	}
}

static void fwd_task(struct th *t, int64_t i0, int64_t i1)
{
	const struct mta_kargs *a = &t->a->f;
	const int64_t T = t->T;
	const int64_t fs = MAX2(0, i0 - (CQ2E - 1)), f0 = MAX2(0, fs - (CQ1 - 1));
	float *lse = t->a->saved;
	for (int64_t i = f0, zend = f0; i < i1; i++) {
		if (i >= zend) {
			const int g = (int)MIN2(RG, i1 - i);
			zrows(t, i, g);
			zend = i + g;
		}
		if (i < fs)
			continue;
		srow(t, i, 1, i >= i0 ? lse : NULL);
		if (i < i0)
			continue;
		post_rows(t, i);
		/* P3 kept for the group's P.V (fwd_group), zero past the diagonal to the group's end */
		const int64_t slot = (i - i0) % RG, gs = i - slot, ge = MIN2(gs + RG, i1);
		for (int h = 0; h < K_H; h++) {
			float *p3 = t->dp3g + (slot * K_H + h) * T;
			memcpy(p3, t->p3 + h * T, sizeof(float) * (size_t)(i + 1));
			memset(p3 + i + 1, 0, sizeof(float) * (size_t)(ge - 1 - i));
		}
		if (i == ge - 1)
			fwd_group(t, gs, (int)(ge - gs));
	}
	(void)a;
}

/* ---- the backward ---- */

/*
 * dL/do and dP3 of rows s..s+g-1 (g <= RG), every head, into the group's
 * buffers: the product with v^T for the whole group at once (panel_rows).
 * The weights' gradients of the group norm and gate are summed for the
 * task's own rows (below i1), in row order.
 */
static void dprows(struct th *t, int64_t s, int g)
{
	const struct mta_bkargs *ba = t->a;
	const struct mta_kargs *a = &ba->f;
	const int64_t T = t->T;
	const float *opre = ba->saved + a->B * K_H * T;
	float *out[RG];
	for (int r = 0; r < g; r++)
		for (int h = 0; h < K_H; h++) {
			const int64_t i = s + r;
			const float *o = opre + ((t->b * T + i) * K_H + h) * K_D;
			const float *dy = ba->dout + t->b * ba->do_sb + i * ba->do_st + h * ba->do_sh;
			norm_gate_bwd(a, o, dy, t->dopg + (h * RG + r) * K_D, i < t->i1 ? t->wg : NULL);
		}
	for (int h = 0; h < K_H; h++) {
		for (int r = 0; r < g; r++)
			out[r] = t->dp3g + ((int64_t)r * K_H + h) * T;
		panel_rows(t->dopg + h * RG * K_D, g, vtpanel(t, h / GQ), T, s + g, out);
	}
}

/* Stage 1 of row i: back from the output to dP2, scattered into the dP ring. */
static void stage1(struct th *t, int64_t i, int own)
{
	const struct mta_bkargs *ba = t->a;
	const struct mta_kargs *a = &ba->f;
	const int64_t T = t->T, x = i - t->i0, slot = x % RG;
	if (slot == 0)
		dprows(t, i, (int)MIN2(RG, t->e1 - i));
	float *dp3 = t->dp3g + slot * K_H * T;
	post_rows(t, i);
	if (own)
		for (int h = 0; h < K_H; h++) {
			/* kept for block_dkdv, zero past the diagonal up to the task's end */
			float *p3 = t->p3b + (x * K_H + h) * T;
			memcpy(p3, t->p3 + h * T, sizeof(float) * (size_t)(i + 1));
			memset(p3 + i + 1, 0, sizeof(float) * (size_t)(t->i1 - 1 - i));
			memcpy(t->dopb + (x * K_H + h) * K_D, t->dopg + (h * RG + slot) * K_D,
			       sizeof(float) * K_D);
		}
#if MIXPOST
	mix_bwd(t->j->mpost, own ? t->wg + WG_POST : NULL, t->p2, T, dp3, T, i, t->dp2);
	const float *dp2 = t->dp2;
#else
	const float *dp2 = dp3;
#endif
	for (int h = 0; h < K_H; h++) {
		float *slot = ring(t->dp, CQ2E, T, h, i);
		memset(slot, 0, sizeof(float) * (size_t)T);
#if K_CQ2
		conv_bwd(a->kq_post + h * K_CQ2 * K_CK2, K_CQ2, K_CK2, K_OK2,
			 own ? t->wg + WG_K2 + h * K_CQ2 * K_CK2 : NULL, ring(t->p, CQ2E, T, h, 0), CQ2E,
			 ring(t->dp, CQ2E, T, h, 0), CQ2E, T, i, dp2 + h * T);
#else
		memcpy(slot, dp2 + h * T, sizeof(float) * (size_t)(i + 1));
#endif
	}
	(void)a;
}

/* Stage 2 of row r (its dP complete): softmax and head_pre backward, scattered into the dZ ring. */
static void stage2(struct th *t, int64_t r, int own)
{
	const struct mta_kargs *a = &t->a->f;
	const int64_t T = t->T;
	for (int h = 0; h < K_H; h++) {
		const float *p = ring(t->p, CQ2E, T, h, r), *dp = ring(t->dp, CQ2E, T, h, r);
		float *d3 = t->ds3 + h * T;
		const float dot = dotv(p, dp, r + 1);
		for (int64_t j = 0; j <= r; j++)
			d3[j] = p[j] * (dp[j] - dot);
	}
#if K_HPRE
	mix_bwd(a->head_pre, own ? t->wg + WG_PRE : NULL, ring(t->s2, CQ2E, T, 0, r),
		(int64_t)CQ2E * T, t->ds3, T, r, t->ds2);
	const float *ds2 = t->ds2;
#else
	const float *ds2 = t->ds3;
#endif
	for (int h = 0; h < K_H; h++) {
		float *slot = ring(t->dz, CQ1, T, h, r);
		memset(slot, 0, sizeof(float) * (size_t)T);
#if K_CQ
		conv_bwd(a->kq_pre + h * K_CQ * K_CK, K_CQ, K_CK, K_OK,
			 own ? t->wg + WG_K1 + h * K_CQ * K_CK : NULL, ring(t->z, ZS, T, h, 0), ZS,
			 ring(t->dz, CQ1, T, h, 0), CQ1, T, r, ds2 + h * T);
#else
		memcpy(slot, ds2 + h * T, sizeof(float) * (size_t)(r + 1));
#endif
	}
	(void)a;
}

/*
 * Stage 3 of row r (its dZ complete): its dZ and scaled q are kept for the
 * task's dq, dk and dv (block_dq, block_dkdv), dZ zero past the diagonal
 * up to the task's end so that those blocks can run over whole columns.
 */
static void stage3(struct th *t, int64_t r)
{
	const struct mta_kargs *a = &t->a->f;
	const int64_t T = t->T, x = r - t->i0;
	for (int h = 0; h < K_H; h++) {
		const int64_t qo = t->b * a->q_sb + r * a->q_st + h * a->q_sh;
		float *qs = t->qb + (x * K_H + h) * K_D, *dzr = t->dzb + (x * K_H + h) * T;
		for (int d = 0; d < K_D; d++)
			qs[d] = ld(a->q, qo + d) * K_SCALE;
		memcpy(dzr, ring(t->dz, CQ1, T, h, r), sizeof(float) * (size_t)(r + 1));
		memset(dzr + r + 1, 0, sizeof(float) * (size_t)(t->i1 - 1 - r));
	}
}

/*
 * dq of nr (<= RBD) rows x0.. of the task, head h: sum over key columns
 * c <= r of dZ[r][c] k[c], each k row loaded once for the nr rows.
 */
INLINE void dq_block(struct th *t, int h, int64_t x0, const int nr)
{
	const int64_t T = t->T, cend = t->i0 + x0 + nr;
	const float *kp = t->j->kf + (t->b * K_HKV + h / GQ) * T * K_D, *dz[RBD];
	vd acc[RBD][DV];
	for (int r = 0; r < nr; r++) {
		dz[r] = t->dzb + ((x0 + r) * K_H + h) * T;
		for (int v = 0; v < DV; v++)
			acc[r][v] = (vd){ 0 };
	}
	for (int64_t c = 0; c < cend; c++) {
		vd kv[DV];
		for (int v = 0; v < DV; v++)
			kv[v] = vdld(kp + c * K_D + v * DW);
		for (int r = 0; r < nr; r++) {
			const float g = dz[r][c];
			for (int v = 0; v < DV; v++)
				acc[r][v] += g * kv[v];
		}
	}
	for (int r = 0; r < nr; r++) {
		float *dq = t->a->dq + ((t->b * T + t->i0 + x0 + r) * K_H + h) * K_D;
		for (int v = 0; v < DV; v++)
			vdst(dq + v * DW, acc[r][v] * K_SCALE);
	}
}

/* The task's dq, rows [i0, i1), from the kept dZ rows. */
static void block_dq(struct th *t, int64_t i0, int64_t i1)
{
	const int64_t n = i1 - i0;
	for (int h = 0; h < K_H; h++) {
		int64_t x = 0;
		for (; x + RBD <= n; x += RBD)
			dq_block(t, h, x, RBD);
		for (; x < n; x++)
			dq_block(t, h, x, 1);
	}
}

/*
 * Key columns c0..c0+nc-1 (nc <= RBD) of kv head hk: acc[cc] = sum over the
 * task's rows from the first that reaches c0, and the heads of hk, of
 * w[row][c0+cc] * x[row] (w: dZ or P3, zero past each row's diagonal; x:
 * the scaled q or dL/do), added to out's rows (K_HKV * D apart).
 */
INLINE void kv_block(struct th *t, int hk, int64_t c0, const int nc, const float *w,
		     const float *x, float *out)
{
	const int64_t T = t->T, n = t->i1 - t->i0;
	vd acc[RBD][DV];
	for (int cc = 0; cc < nc; cc++)
		for (int v = 0; v < DV; v++)
			acc[cc][v] = (vd){ 0 };
	for (int64_t r = c0 > t->i0 ? c0 - t->i0 : 0; r < n; r++)
		for (int g = 0; g < GQ; g++) {
			const int h = hk * GQ + g;
			const float *wr = w + (r * K_H + h) * T + c0, *xr = x + (r * K_H + h) * K_D;
			vd xv[DV];
			for (int v = 0; v < DV; v++)
				xv[v] = vdld(xr + v * DW);
			for (int cc = 0; cc < nc; cc++) {
				const float s = wr[cc];
				for (int v = 0; v < DV; v++)
					acc[cc][v] += s * xv[v];
			}
		}
	for (int cc = 0; cc < nc; cc++) {
		float *o = out + (c0 + cc) * K_HKV * K_D;
		for (int v = 0; v < DV; v++)
			vdst(o + v * DW, vdld(o + v * DW) + acc[cc][v]);
	}
}

/*
 * The task's shares of dk and dv, once per key column for the whole block of
 * rows [i0, i1): dk[c] += sum over its rows r >= c and heads of the kv head of
 * dZ[r][c] * q[r] (scaled), dv[c] += sum of P3[r][c] * dL/do[r]. Summed in
 * registers over the block, RBD columns at a time, rather than a read and
 * write of dk and dv per row; the order is fixed (deterministic).
 */
static void block_dkdv(struct th *t, int64_t i0, int64_t i1)
{
	const int64_t T = t->T;
	(void)i0;
	for (int hk = 0; hk < K_HKV; hk++) {
		float *dk = t->pdk + (t->b * T * K_HKV + hk) * K_D;
		float *dv = t->pdv + (t->b * T * K_HKV + hk) * K_D;
		int64_t c = 0;
		for (; c + RBD <= i1; c += RBD) {
			kv_block(t, hk, c, RBD, t->dzb, t->qb, dk);
			kv_block(t, hk, c, RBD, t->p3b, t->dopb, dv);
		}
		for (; c < i1; c++) {
			kv_block(t, hk, c, 1, t->dzb, t->qb, dk);
			kv_block(t, hk, c, 1, t->p3b, t->dopb, dv);
		}
	}
}

static void bwd_task(struct th *t, int64_t i0, int64_t i1)
{
	const int64_t T = t->T;
	t->i0 = i0;
	t->i1 = i1;
	const int64_t e2 = MIN2(T, i1 + CQ1 - 1), e1 = MIN2(T, e2 + CQ2E - 1);
	const int64_t fs = MAX2(0, i0 - (CQ2E - 1)), f0 = MAX2(0, fs - (CQ1 - 1));
	t->e1 = e1;
	for (int64_t s = f0, zend = f0; s < e1 + (CQ2E - 1) + (CQ1 - 1); s++) {
		if (s < e1) {
			if (s >= zend) {
				const int g = (int)MIN2(RG, e1 - s);
				zrows(t, s, g);
				zend = s + g;
			}
			if (s >= fs)
				srow(t, s, 0, NULL);
		}
		if (s >= i0 && s < e1)
			stage1(t, s, s < i1);
		const int64_t r = s - (CQ2E - 1), rz = r - (CQ1 - 1);
		if (r >= i0 && r < e2)
			stage2(t, r, r < i1);
		if (rz >= i0 && rz < i1)
			stage3(t, rz);
	}
	block_dq(t, i0, i1);
	block_dkdv(t, i0, i1);
}

/* ---- threads ---- */

static void worker(void *arg, int tid)
{
	struct job *j = arg;
	const struct mta_bkargs *ba = j->a;
	const int64_t T = j->T;
	float *ws = ba->f.pool_mem(ba->f.pool, tid,
				   (int64_t)sizeof(float) * (W_FIXED + (int64_t)W_ROWS * T));
	if (!ws) {
		__atomic_store_n(&j->err, MTA_KERR_NOMEM, __ATOMIC_RELAXED);
		return;
	}
	struct th t;
	memset(&t, 0, sizeof t);
	t.j = j;
	t.a = ba;
	t.T = T;
	float *at = ws;
	t.q = at, at += RG * K_D;
	t.dopg = at, at += RG * K_H * K_D;
	t.tmp = at, at += 7 * K_D;
	t.dopb = at, at += BR * K_H * K_D;
	t.qb = at, at += BR * K_H * K_D;
	at = ws + W_FIXED;
	t.z = at, at += (int64_t)K_H * ZS * T;
	t.s2 = at, at += (int64_t)K_H * CQ2E * T;
	t.p = at, at += (int64_t)K_H * CQ2E * T;
	t.dp = at, at += (int64_t)K_H * CQ2E * T;
	t.dz = at, at += (int64_t)K_H * CQ1 * T;
	t.s3 = at, at += (int64_t)K_H * T;
	t.p2 = at, at += (int64_t)K_H * T;
	t.p3 = at, at += (int64_t)K_H * T;
	t.dp3g = at, at += (int64_t)RG * K_H * T;
	t.dp2 = at, at += (int64_t)K_H * T;
	t.ds3 = at, at += (int64_t)K_H * T;
	t.p3b = at, at += (int64_t)BR * K_H * T;
	t.dzb = at, at += (int64_t)BR * K_H * T;
	t.ds2 = t.s3; /* S3 is dead once P is made, before stage 2 needs dS2 */
	if (j->bwd) {
		const int64_t kvn = ba->f.B * T * K_HKV * K_D;
		t.pdk = j->part + (int64_t)tid * 2 * kvn;
		t.pdv = t.pdk + kvn;
		memset(t.pdk, 0, sizeof(float) * (size_t)(2 * kvn));
		t.wg = j->wpart + (int64_t)tid * WG_N;
		memset(t.wg, 0, sizeof(double) * WG_N);
	}
	for (int64_t x = tid; x < j->ntasks; x += j->nth) {
		t.b = x / j->nblk;
		const int64_t i0 = x % j->nblk * BR, i1 = MIN2(T, i0 + BR);
		if (j->bwd)
			bwd_task(&t, i0, i1);
		else
			fwd_task(&t, i0, i1);
	}
}

/* k and v as float, [B][HKV][T][D] and as panels: one batch and kv head per item. */
static void pack_worker(void *arg, int tid)
{
	struct job *j = arg;
	const struct mta_kargs *a = &j->a->f;
	for (int64_t x = tid; x < a->B * K_HKV; x += j->nth) {
		const int64_t b = x / K_HKV, hk = x % K_HKV;
		for (int64_t c = 0; c < j->T; c++) {
			float *kr = j->kf + (x * j->T + c) * K_D, *vr = j->vf + (x * j->T + c) * K_D;
			const int64_t ko = b * a->k_sb + c * a->k_st + hk * a->k_sh;
			const int64_t vo = b * a->v_sb + c * a->v_st + hk * a->v_sh;
			float *kt = j->kt + x * PANEL(j->T), *vt = j->vt + x * PANEL(j->T);
			for (int d = 0; d < K_D; d++) {
				kt[PIDX(c, d)] = kr[d] = ld(a->k, ko + d);
				vt[PIDX(c, d)] = vr[d] = ld(a->v, vo + d);
			}
		}
		/* the last chunk's padding, read (and discarded) by panel_rows' last vector */
		for (int64_t c = j->T; c % CW; c++) {
			float *kt = j->kt + x * PANEL(j->T), *vt = j->vt + x * PANEL(j->T);
			for (int d = 0; d < K_D; d++)
				kt[PIDX(c, d)] = vt[PIDX(c, d)] = 0.0f;
		}
	}
}

/* dk, dv = the threads' partials summed in thread order; elements split between threads. */
static void reduce_worker(void *arg, int tid)
{
	struct job *j = arg;
	const struct mta_bkargs *ba = j->a;
	const int64_t kvn = ba->f.B * j->T * K_HKV * K_D, per = (kvn + j->nth - 1) / j->nth;
	const int64_t e0 = MIN2(kvn, tid * per), e1 = MIN2(kvn, e0 + per);
	for (int64_t e = e0; e < e1; e++) {
		float sk = 0.0f, sv = 0.0f;
		for (int w = 0; w < j->nth; w++) {
			sk += j->part[(int64_t)w * 2 * kvn + e];
			sv += j->part[(int64_t)w * 2 * kvn + kvn + e];
		}
		ba->dk[e] = sk;
		ba->dv[e] = sv;
	}
}

/* Set up j for a; 0 or MTA_KERR_*. */
static int prepare(struct job *j, const struct mta_bkargs *ba, int bwd)
{
	const struct mta_kargs *a = &ba->f;
	if (!ba || a->dtype != K_DTYPE || a->B < 1 || a->T < 1 || !a->pool_run || !a->pool_mem ||
	    !ba->saved)
		return MTA_KERR_ARGS;
	memset(j, 0, sizeof *j);
	j->a = ba;
	j->bwd = bwd;
	j->T = a->T;
	j->nblk = (a->T + BR - 1) / BR;
	j->ntasks = a->B * j->nblk;
	int64_t n = a->nthreads > 0 ? a->nthreads : K_THR > 0 ? K_THR : a->pool_cores;
	n = MIN2(n, j->ntasks);
	j->nth = (int)(n < 1 ? 1 : n > 256 ? 256 : n);
	const int64_t kvn = a->B * a->T * K_HKV * K_D, kvp = a->B * K_HKV * PANEL(a->T);
	int64_t floats = 2 * kvn + 2 * kvp + (MIXPOST ? K_H * K_H : 0) + 16;
	if (bwd)
		floats += 2 * kvn * j->nth + 2 * (int64_t)WG_N * j->nth;
	float *sh = a->pool_mem(a->pool, MTA_POOL_SHARED, (int64_t)sizeof(float) * floats);
	if (!sh)
		return MTA_KERR_NOMEM;
	/* doubles first, for their alignment (the pool's buffers are 64-byte aligned) */
	j->wpart = (double *)sh;
	float *at = sh + (bwd ? 2 * (int64_t)WG_N * j->nth : 0);
	j->kf = at, at += kvn;
	j->vf = at, at += kvn;
	j->kt = at, at += kvp;
	j->vt = at, at += kvp;
	j->mpost = at, at += MIXPOST ? K_H * K_H : 0;
	j->part = at;
#if K_HPOST == 2
	memcpy(j->mpost, a->head_post_linear, sizeof(float) * K_H * K_H);
#elif K_HPOST == 1
	/* head h = g*c + o reads head g*c + i with head_post[g][i][o] (MTA.md step 6) */
	for (int h = 0; h < K_H; h++)
		for (int h2 = 0; h2 < K_H; h2++)
			j->mpost[h * K_H + h2] = h2 / K_HC == h / K_HC ?
				a->head_post[(h / K_HC * K_HC + h2 % K_HC) * K_HC + h % K_HC] : 0.0f;
#endif
	a->pool_run(a->pool, (int)MIN2(j->nth, a->B * K_HKV), pack_worker, j);
	return 0;
}

int mta_cpu_fwd_save(const struct mta_kargs *fa)
{
	const struct mta_bkargs *ba = (const struct mta_bkargs *)fa;
	struct job j;
	int rc = prepare(&j, ba, 0);
	if (rc)
		return rc;
	if (!fa->o)
		return MTA_KERR_ARGS;
	fa->pool_run(fa->pool, j.nth, worker, &j);
	return j.err;
}

int mta_cpu_bwd(const struct mta_kargs *fa)
{
	const struct mta_bkargs *ba = (const struct mta_bkargs *)fa;
	struct job j;
	if (!ba || !ba->dout || !ba->dq || !ba->dk || !ba->dv)
		return MTA_KERR_ARGS;
	int rc = prepare(&j, ba, 1);
	if (rc)
		return rc;
	fa->pool_run(fa->pool, j.nth, worker, &j);
	if (j.err)
		return j.err;
	fa->pool_run(fa->pool, j.nth, reduce_worker, &j);

	/* the weights' gradients: the threads' partials in thread order */
	double g[WG_N];
	memset(g, 0, sizeof g);
	for (int w = 0; w < j.nth; w++)
		for (int x = 0; x < WG_N; x++)
			g[x] += j.wpart[(int64_t)w * WG_N + x];
#if K_CQ
	for (int x = 0; x < K_H * K_CQ * K_CK; x++)
		ba->dkq_pre[x] = (float)g[WG_K1 + x];
#endif
#if K_HPRE
	for (int x = 0; x < K_H * K_H; x++)
		ba->dhead_pre[x] = (float)g[WG_PRE + x];
#endif
#if K_CQ2
	for (int x = 0; x < K_H * K_CQ2 * K_CK2; x++)
		ba->dkq_post[x] = (float)g[WG_K2 + x];
#endif
#if K_HPOST == 2
	for (int x = 0; x < K_H * K_H; x++)
		ba->dhead_post_linear[x] = (float)g[WG_POST + x];
#elif K_HPOST == 1
	for (int gr = 0; gr < K_H / K_HC; gr++)
		for (int in = 0; in < K_HC; in++)
			for (int on = 0; on < K_HC; on++)
				ba->dhead_post[(gr * K_HC + in) * K_HC + on] =
					(float)g[WG_POST + (gr * K_HC + on) * K_H + gr * K_HC + in];
#endif
#if K_GN
	for (int d = 0; d < K_D; d++)
		ba->dgn_weight[d] = (float)g[WG_GN + d];
#endif
#if K_GATE
	for (int d = 0; d < K_D; d++)
		ba->dgate_w[d] = (float)g[WG_GW + d];
	ba->dgate_b[0] = (float)g[WG_GB];
#endif
	return 0;
}
