/*
 * mta_cpu_simd.h: the register-blocked micro-kernels of the tile steps of
 * templates/mta_cpu.c (the v1 family): q.k, the key-query convolutions,
 * head mixing, P.V. The vector layer is templates/mta_cpu_vec.h.
 *
 * A fragment of the kernel, not a standalone header: it is included (and
 * pasted by gen/cpu/cgen.c) after mta_cpu.c has defined the K_* constants and the
 * tile geometry (VL, ZRP, NRP, RQP, ZS, SS, RS, DPB and the block sizes).
 * Every block size is a constant once a micro-kernel is inlined at its call,
 * so GCC unrolls the block loops and keeps the accumulators in registers.
 */
#ifndef MTA_CPU_SIMD_H
#define MTA_CPU_SIMD_H

/* ---- micro-kernels (block sizes are constants once inlined) ---- */

/* out[c][v] = sum_d kb[c][d] qt[d][v], columns c0..c0+cb-1, vectors v0..v0+rc-1. */
INLINE void qk_blk(float *out, int os, const float *qt, const float *kb, int c0, int v0,
		   const int rc, const int cb)
{
	vf acc[24][4];
	COUNT(CNT_QK, cb * rc * K_D * VL);
	for (int c = 0; c < cb; c++)
		for (int v = 0; v < rc; v++)
			acc[c][v] = vsplat(0.0f);
	for (int d = 0; d < K_D; d++) {
		vf x[4];
		for (int v = 0; v < rc; v++)
			x[v] = vld(qt + d * ZRP + (v0 + v) * VL);
		for (int c = 0; c < cb; c++) {
			const float kc = kb[(c0 + c) * K_D + d];
			for (int v = 0; v < rc; v++)
				acc[c][v] += kc * x[v];
		}
	}
	for (int c = 0; c < cb; c++)
		for (int v = 0; v < rc; v++)
			vst(out + (c0 + c) * os + (v0 + v) * VL, acc[c][v]);
}

/* Raw logits of the loaded k rows, columns c < n (rounded up to QCB): out[c][ZRP lanes]. */
static void qk(float *out, int os, const float *qt, const float *kb, int n)
{
	for (int c0 = 0; c0 < n; c0 += QCB) {
		int v0 = 0;
		for (; v0 + QRC <= ZRP / VL; v0 += QRC)
			qk_blk(out, os, qt, kb, c0, v0, QRC, QCB);
#if (ZRP / VL) % QRC
		qk_blk(out, os, qt, kb, c0, v0, (ZRP / VL) % QRC, QCB);
#endif
	}
}

/*
 * out[c][lane] = sum_{i<cq, j<ck} w[i*ck+j] * in[c+j][lane+i] for columns
 * c0..c0+cb-1 and vectors v0..v0+rc-1: each shifted input vector is loaded
 * once per kernel row and feeds every output column it touches.
 */
INLINE void conv_blk(float *out, int os, const float *in, int is, const float *w, const int cq,
		     const int ck, int c0, int v0, const int rc, const int cb, const int step)
{
	vf acc[24][4];
	COUNT(step, cq * ck * cb * rc * VL);
	for (int c = 0; c < cb; c++)
		for (int v = 0; v < rc; v++)
			acc[c][v] = vsplat(0.0f);
	for (int i = 0; i < cq; i++) {
		const float *wi = w + i * ck;
#pragma GCC unroll 64
		for (int x = 0; x < cb + ck - 1; x++)
#pragma GCC unroll 4
			for (int v = 0; v < rc; v++) {
				const vf z = vld(in + (c0 + x) * is + (v0 + v) * VL + i);
#pragma GCC unroll 32
				for (int j = 0; j < ck; j++)
					if (x - j >= 0 && x - j < cb)
						acc[x - j][v] += wi[j] * z;
			}
	}
	for (int c = 0; c < cb; c++)
		for (int v = 0; v < rc; v++)
			vst(out + (c0 + c) * os + (v0 + v) * VL, acc[c][v]);
}

/*
 * One head's convolution into out (column stride SS): n columns rounded up
 * to cb, nv vectors of lanes, in blocks of rc vectors and a remainder block.
 */
INLINE void conv(float *out, const float *in, int is, const float *w, const int cq, const int ck,
		 int n, const int nv, const int rc, const int cb, const int step)
{
	for (int c0 = 0; c0 < n; c0 += cb) {
		int v0 = 0;
		for (; v0 + rc <= nv; v0 += rc)
			conv_blk(out, SS, in, is, w, cq, ck, c0, v0, rc, cb, step);
		if (nv % rc)
			conv_blk(out, SS, in, is, w, cq, ck, c0, v0, nv % rc, cb, step);
	}
}

/* kq_pre of one head from Z: NRP lanes (inline: unused without kq_pre). */
static inline void conv_pre(float *out, const float *z, const float *w, int n)
{
	conv(out, z, ZS, w, CQ1, CK1, n, NRP / VL, CRC, CCB, CNT_PRE);
}

/* kq_post of one head from P: RQP lanes. */
static inline void conv_post(float *out, const float *p, const float *w, int n)
{
	conv(out, p, SS, w, CQ2E, CK2E, n, RQP / VL, PRC, PCB, CNT_POST);
}

/* dst[o] = sum_{i<g} w[o*so + i*si] src[i], outputs o0..o0+hb-1, floats x..x+nv*VL-1. */
INLINE void mix_blk(float *dst, const float *src, const float *w, int so, int si, const int g,
		    int o0, const int hb, int x, const int nv, const int step)
{
	vf acc[8][2];
	COUNT(step, g * hb * nv * VL);
	for (int o = 0; o < hb; o++)
		for (int v = 0; v < nv; v++)
			acc[o][v] = vsplat(0.0f);
	for (int i = 0; i < g; i++) {
		vf y[2];
		for (int v = 0; v < nv; v++)
			y[v] = vld(src + i * RS + x + v * VL);
		for (int o = 0; o < hb; o++) {
			const float wo = w[(o0 + o) * so + i * si];
			for (int v = 0; v < nv; v++)
				acc[o][v] += wo * y[v];
		}
	}
	for (int o = 0; o < hb; o++)
		for (int v = 0; v < nv; v++)
			vst(dst + (o0 + o) * RS + x + v * VL, acc[o][v]);
}

INLINE void mix_at(float *dst, const float *src, const float *w, int so, int si, const int g,
		   int x, const int nv, const int step)
{
	int o0 = 0;
	for (; o0 + 8 <= g; o0 += 8)
		mix_blk(dst, src, w, so, si, g, o0, 8, x, nv, step);
	if (g % 8)
		mix_blk(dst, src, w, so, si, g, o0, g % 8, x, nv, step);
}

/* Mix g consecutive heads (regions of RS floats), n floats each (n a multiple of VL). */
INLINE void mix(float *dst, const float *src, const float *w, int so, int si, const int g, int n,
		const int step)
{
	int x = 0;
	for (; x + 2 * VL <= n; x += 2 * VL)
		mix_at(dst, src, w, so, si, g, x, 2, step);
	if (x < n)
		mix_at(dst, src, w, so, si, g, x, 1, step);
}

/* acc[d][v] += sum_{c<n} vb[c][d] u[c][v], head dims d0..d0+db-1, vectors v0..v0+rc-1. */
INLINE void pv_blk(float *acc, const float *u, const float *vb, int n, int d0, int v0,
		   const int rc, const int db)
{
	vf s[24][4];
	COUNT(CNT_PV, n * db * rc * VL);
	for (int d = 0; d < db; d++)
		for (int v = 0; v < rc; v++)
			s[d][v] = vld(acc + (d0 + d) * RQP + (v0 + v) * VL);
	for (int c = 0; c < n; c++) {
		vf x[4];
		for (int v = 0; v < rc; v++)
			x[v] = vld(u + c * SS + (v0 + v) * VL);
		for (int d = 0; d < db; d++) {
			const float vd = vb[c * DPB + d0 + d];
			for (int v = 0; v < rc; v++)
				s[d][v] += vd * x[v];
		}
	}
	for (int d = 0; d < db; d++)
		for (int v = 0; v < rc; v++)
			vst(acc + (d0 + d) * RQP + (v0 + v) * VL, s[d][v]);
}

/* o^T += P.V for one head: n key columns, RQP lanes. */
static void pv(float *acc, const float *u, const float *vb, int n)
{
	for (int d0 = 0; d0 < DPB; d0 += PCB) {
		int v0 = 0;
		for (; v0 + PRC <= RQP / VL; v0 += PRC)
			pv_blk(acc, u, vb, n, d0, v0, PRC, PCB);
#if (RQP / VL) % PRC
		pv_blk(acc, u, vb, n, d0, v0, (RQP / VL) % PRC, PCB);
#endif
	}
}

#endif
