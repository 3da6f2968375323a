/*
 * mta_cuda_bwd.cu: template of the generated CUDA backward of MTA (MTA.md),
 * with the forward that saves what it needs. Specialised by the #defines of
 * gen/defines.c (problem constants K_H..; gen/cuda/cudagen.c adds the
 * backward's own K_BWD_* below); compiled by NVRTC for a GPU or run by the
 * CPU emulator (templates/cuda_emu.h). Arguments: struct mta_bargs below,
 * mirrored by runtime/cuda/bwd.h.
 *
 * The algorithm is the CPU backward's (templates/mta_cpu_bwd.c; its three
 * stages are explained in runtime/core/reference_bwd.c), with the same
 * saved state (mta_bkargs.h: lse [B][H][T], then the pre-norm output
 * [B][T][H][D], float32), so mta_saved_bytes is one formula:
 *   - the saving forward (mode 0) writes the output, each softmax row's
 *     log-sum-exp and each pre-norm output row;
 *   - the backward (mode 1) recomputes the logits row by row from q and k
 *     and the probabilities from them and the saved log-sum-exp (never a
 *     T x T buffer), streaming rows through rings of all heads (head mixing
 *     couples them), and takes the gradients of group norm, gate and the
 *     post-softmax steps from the saved pre-norm rows;
 *   - the reduction (mode 2) sums the blocks' partial dk, dv and weight
 *     gradients in block order.
 *
 * Work: a task is batch b and a tile of BR query rows (with the halo rows
 * the convolutions need, as on the CPU). A persistent grid of nb blocks
 * (the variant's nb, at most the tasks; the launcher's, so not a define)
 * takes contiguous ranges of the tasks in order, of about equal cost (the
 * host's plan, gen/cuda/cudagen.h: mta_cuda_bwd_dims); all heads of a task
 * are in its block.
 * Inside a block the threads split each row's (head, key column) elements;
 * reductions over a row (softmax, the softmax gradient's dot, group norm
 * and gate) take one warp per head with shuffles in a fixed order; each
 * weight-gradient element has one owning thread that sums in order.
 *
 * Deterministic: each block adds into its own partial dk, dv (for each batch
 * its range touches, the keys below its last row there: at most
 * (B - 1 + nb) T rows of HKV D floats each for all blocks) and weight
 * gradients (WG_N doubles), and mode 2 sums them in block order. Same
 * inputs, variant and B, T: the same bits.
 *
 * Memory (global, per block): the rows of the rings, W_ROWS * T floats, and
 * W_FIXED floats; O(T) per block, nb blocks. Float32 throughout, whatever
 * the input type (bf16/f16 inputs lose nothing past their own rounding).
 * Speed is secondary in this first version: scalar math, rings in global
 * memory (L2 holds a block's rows at the sizes trained).
 */

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
#endif
#ifndef K_BWD_BQ
#define K_BWD_BQ 16   /* query rows per task */
#define K_BWD_WARPS 4 /* warps per block */
#endif

#define NT (32 * K_BWD_WARPS)
#define NWARP K_BWD_WARPS
#define BR K_BWD_BQ
#define GQ (K_H / K_HKV)
/* An absent convolution is the identity 1x1 kernel, absent mixing the identity matrix. */
#define CQ1 (K_CQ ? K_CQ : 1)
#define CK1 (K_CQ ? K_CK : 1)
#define OK1 (K_CQ ? K_OK : 0)
#define CQ2E (K_CQ2 ? K_CQ2 : 1)
#define CK2E (K_CQ2 ? K_CK2 : 1)
#define OK2E (K_CQ2 ? K_OK2 : 0)
#define NZR (CQ1 + CQ2E - 1)
#define MIXPOST (K_HPOST != 0)

/* Weight-gradient partials per block, as doubles: offsets of each part (the CPU's layout). */
#define WG_K1 0
#define WG_PRE (WG_K1 + K_H * CQ1 * CK1)
#define WG_K2 (WG_PRE + K_H * K_H)
#define WG_POST (WG_K2 + K_H * CQ2E * CK2E)
#define WG_GN (WG_POST + K_H * K_H)
#define WG_GW (WG_GN + K_D)
#define WG_GB (WG_GW + K_D)
#define WG_N (WG_GB + 1)

/* A block's workspace in floats: W_FIXED + W_ROWS * T (gen/cuda/cudagen.c: mta_cuda_bwd_dims). */
#define W_ROWS (K_H * (NZR + 3 * CQ2E + CQ1 + 7 + 2 * BR))
#define W_FIXED (2 * BR * K_H * K_D)

/* Dynamic shared memory, floats: q row, dL/do rows, norm/gate partials, per-head scalars. */
#define SM_FLOATS (4 * K_H * K_D + 2 * K_H + 32)
#define SMEM_BYTES (4 * SM_FLOATS)

#if K_DTYPE == 0
typedef float elem_t;
#else
typedef unsigned short elem_t;
#endif

/* Kernel arguments; struct mta_cuda_bargs in runtime/cuda/bwd.h mirrors this layout. */
struct mta_bargs {
	const elem_t *q, *k, *v;              /* d contiguous, strides below (elements) */
	long long sq[3], sk[3], sv[3];
	float *o;                             /* mode 0: float32 [B,T,H,D], strides so */
	long long so[3];
	float *saved;                         /* lse [B][H][T], opre [B][T][H][D] */
	const float *dout;                    /* mode 1: dL/do float32, strides sdo */
	long long sdo[3];
	float *dq, *dk, *dv;                  /* contiguous [B,T,H,D], [B,T,HKV,D] */
	float *dw;                            /* mode 2: the weight gradients, WG_N floats */
	const float *kq_pre, *head_pre, *kq_post, *head_post, *gn_w, *gate_w, *gate_b;
	float rescale;
	float *ws;                            /* nb x ws_stride floats */
	float *part;                          /* dk's rows, then dv's: 2 x plan[2 nb + 1] x HKV*D */
	double *wpart;                        /* nb x WG_N doubles */
	const long long *plan;                /* [nb + 1] first task of each block, then
					       * [nb + 1] first partial row of each block */
	long long ws_stride;                  /* floats per block in ws */
	int B, T, mode, nb;
	int *status;                          /* set to 1 when the workspace is too small */
};

#ifdef MTA_EMU
#define __grid_constant__
#else
__device__ __forceinline__ float mta_f16_to_f32(unsigned short h)
{
	float f;
	asm("cvt.f32.f16 %0, %1;" : "=f"(f) : "h"(h));
	return f;
}
#endif

__device__ __forceinline__ float ld(const elem_t *p)
{
#if K_DTYPE == 0
	return *p;
#elif K_DTYPE == 1
	return __uint_as_float((unsigned)*p << 16);
#else
	return mta_f16_to_f32(*p);
#endif
}

__device__ __forceinline__ float warp_sum(float x)
{
	for (int o = 16; o; o >>= 1)
		x += __shfl_xor_sync(0xffffffffu, x, o);
	return x;
}

__device__ __forceinline__ float warp_max(float x)
{
	for (int o = 16; o; o >>= 1)
		x = fmaxf(x, __shfl_xor_sync(0xffffffffu, x, o));
	return x;
}

#define NEG_INF __int_as_float(0xff800000)

/* One block's view of its task and buffers. */
struct blk {
	const mta_bargs *a;
	long long T, b, i0, b0;               /* b0: the first batch of the block's range */
	float *z, *s2, *p, *dp, *dz;          /* rings [H][slots][T] */
	float *s3, *p2, *p3, *dp3, *dp2, *ds3, *ds2;   /* [H][T] */
	float *p3b, *dzb;                     /* the task's rows [BR][H][T] */
	float *qb, *dopb;                     /* [BR][H][D] */
	float *pdk, *pdv;                     /* this block's partial dk, dv */
	double *wg;                           /* this block's weight partials */
	float *sq, *sdop, *sgw, *sgn, *sgb, *sred; /* shared */
};

__device__ __forceinline__ float *ring(float *r, int slots, long long T, int h, long long row)
{
	return r + ((long long)h * slots + row % slots) * T;
}

__device__ __forceinline__ float kf(const blk &t, int hk, long long j, int d)
{
	const mta_bargs &a = *t.a;
	return ld(a.k + t.b * a.sk[0] + j * a.sk[1] + hk * a.sk[2] + d);
}

__device__ __forceinline__ float vf(const blk &t, int hk, long long j, int d)
{
	const mta_bargs &a = *t.a;
	return ld(a.v + t.b * a.sv[0] + j * a.sv[1] + hk * a.sv[2] + d);
}

/* Head post mixing as an H x H matrix: head h reads h2 (MTA.md step 6). */
__device__ __forceinline__ float mpost(const mta_bargs &a, int h, int h2)
{
#if K_HPOST == 2
	return a.head_post[h * K_H + h2];
#elif K_HPOST == 1
	return h2 / K_HC == h / K_HC ? a.head_post[(h / K_HC * K_HC + h2 % K_HC) * K_HC + h % K_HC]
				     : 0.0f;
#else
	return h == h2 ? 1.0f : 0.0f;
#endif
}

/*
 * Output (row i, column j) of a key-query convolution from the input rows in
 * ring rg (MTA.md step 2: inputs outside [0,T) or above their own row's
 * diagonal are zero).
 */
__device__ __forceinline__ float conv_at(const float *w, int rows, int cols, int ok,
					 const float *rg, int slots, long long T, long long i,
					 long long j)
{
	float acc = 0.0f;
#pragma unroll 1
	for (int a = 0; a < rows; a++) {
		const long long r = i - (rows - 1) + a;
		if (r < 0)
			continue;
		const float *row = rg + (r % slots) * T;
#pragma unroll 1
		for (int c = 0; c < cols; c++) {
			const long long col = j - ok + c;
			if (col >= 0 && col <= r)
				acc += w[a * cols + c] * row[col];
		}
	}
	return acc;
}

/*
 * The adjoint of conv_at for output row i, for input row r = i-(rows-1)+a
 * at column col: sum over taps c of w[a][c] * dout[col+ok-c], j in [0, i].
 */
__device__ __forceinline__ float conv_bwd_at(const float *wa, int cols, int ok, long long i,
					     long long col, const float *dout)
{
	float acc = 0.0f;
#pragma unroll 1
	for (int c = 0; c < cols; c++) {
		const long long j = col + ok - c;
		if (j >= 0 && j <= i)
			acc += wa[c] * dout[j];
	}
	return acc;
}

/*
 * Backward of a convolution for output row i of every head: the input rings'
 * rows += the adjoint (one thread per (head, column) owns every row it
 * writes), then, when gw, the taps' gradient: one thread per (head, a, c).
 * in: the input ring, din: its gradient ring; dout [H][T].
 */
__device__ __forceinline__ void conv_bwd_rows(const float *w, int rows, int cols, int ok,
					      double *gw, const float *in, int slots, float *din,
					      int dslots, long long T, long long i,
					      const float *dout)
{
	const long long n = i + 1;
	for (long long x = threadIdx.x; x < K_H * n; x += NT) {
		const int h = (int)(x / n);
		const long long col = x % n;
		const float *wh = w + h * rows * cols, *dh = dout + h * T;
#pragma unroll 1
		for (int a = 0; a < rows; a++) {
			const long long r = i - (rows - 1) + a;
			if (r < 0 || col > r)
				continue;
			din[((long long)h * dslots + r % dslots) * T + col] +=
				conv_bwd_at(wh + a * cols, cols, ok, i, col, dh);
		}
	}
	if (gw)
		for (int x = threadIdx.x; x < K_H * rows * cols; x += NT) {
			const int h = x / (rows * cols), a = x / cols % rows, c = x % cols;
			const long long r = i - (rows - 1) + a;
			if (r < 0)
				continue;
			const float *row = in + ((long long)h * slots + r % slots) * T;
			const float *dh = dout + h * T;
			long long lo = ok - c > 0 ? ok - c : 0, hi = r + ok - c < i ? r + ok - c : i;
			float s = 0.0f;
			for (long long j = lo; j <= hi; j++)
				s += row[j - ok + c] * dh[j];
			gw[x] += (double)s;
		}
	__syncthreads();
}

/* out[h][j] = sum_h2 M[h][h2] in[h2][j], j <= i; in's rows in_stride apart. */
__device__ __forceinline__ void mix_pre(const float *M, const float *in, long long in_stride,
					long long T, long long i, float *out)
{
	const long long n = i + 1;
	for (long long x = threadIdx.x; x < K_H * n; x += NT) {
		const int h = (int)(x / n);
		const long long j = x % n;
		float s = 0.0f;
#pragma unroll 1
		for (int h2 = 0; h2 < K_H; h2++)
			s += M[h * K_H + h2] * in[h2 * in_stride + j];
		out[h * T + j] = s;
	}
	__syncthreads();
}

/*
 * The adjoint of a head mixing with matrix entries m(h, h2): din[h2] =
 * sum_h m(h,h2) dout[h]; when gM, gM[h][h2] += sum_j dout[h][j] in[h2][j].
 * post: the matrix is head_post's (mpost), else head_pre.
 */
__device__ __forceinline__ void mix_bwd(const mta_bargs &a, int post, double *gM, const float *in,
			long long in_stride, const float *dout, long long T, long long i, float *din)
{
	const long long n = i + 1;
	for (long long x = threadIdx.x; x < K_H * n; x += NT) {
		const int h2 = (int)(x / n);
		const long long j = x % n;
		float s = 0.0f;
#pragma unroll 1
		for (int h = 0; h < K_H; h++) {
			const float m = post ? mpost(a, h, h2) : a.head_pre[h * K_H + h2];
			s += m * dout[h * T + j];
		}
		din[h2 * T + j] = s;
	}
	if (gM)
		for (int x = threadIdx.x; x < K_H * K_H; x += NT) {
			const int h = x / K_H, h2 = x % K_H;
			const float *dx = dout + h * T, *y = in + h2 * in_stride;
			float s = 0.0f;
			for (long long j = 0; j < n; j++)
				s += dx[j] * y[j];
			gM[x] += (double)s;
		}
	__syncthreads();
}

/* Z row i of every head: the scaled logits q_i . k_j, j <= i. */
__device__ __forceinline__ void zrow(blk &t, long long i)
{
	const mta_bargs &a = *t.a;
	const long long T = t.T, n = i + 1;
	for (int x = threadIdx.x; x < K_H * K_D; x += NT) {
		const int h = x / K_D, d = x % K_D;
		t.sq[x] = ld(a.q + t.b * a.sq[0] + i * a.sq[1] + h * a.sq[2] + d) * K_SCALE;
	}
	__syncthreads();
	for (long long x = threadIdx.x; x < K_H * n; x += NT) {
		const int h = (int)(x / n);
		const long long j = x % n;
		const elem_t *kj = a.k + t.b * a.sk[0] + j * a.sk[1] + (h / GQ) * a.sk[2];
		float s = 0.0f;
#pragma unroll 4
		for (int d = 0; d < K_D; d++)
			s += t.sq[h * K_D + d] * ld(kj + d);
		ring(t.z, NZR, T, h, i)[j] = s;
	}
	__syncthreads();
}

/*
 * Row i's S2 (into its ring), S3 and P (into its ring). save: the forward
 * (row maximum and sum; lse stored when store); else P = exp(S3 - lse).
 */
__device__ __forceinline__ void srow(blk &t, long long i, int save, int store)
{
	const mta_bargs &a = *t.a;
	const long long T = t.T, n = i + 1;
	for (long long x = threadIdx.x; x < K_H * n; x += NT) {
		const int h = (int)(x / n);
		const long long j = x % n;
#if K_CQ
		ring(t.s2, CQ2E, T, h, i)[j] = conv_at(a.kq_pre + h * K_CQ * K_CK, K_CQ, K_CK, K_OK,
						       ring(t.z, NZR, T, h, 0), NZR, T, i, j);
#else
		ring(t.s2, CQ2E, T, h, i)[j] = ring(t.z, NZR, T, h, i)[j];
#endif
	}
	__syncthreads();
#if K_HPRE
	mix_pre(a.head_pre, ring(t.s2, CQ2E, T, 0, i), (long long)CQ2E * T, T, i, t.s3);
#else
	for (long long x = threadIdx.x; x < K_H * n; x += NT) {
		const int h = (int)(x / n);
		const long long j = x % n;
		t.s3[h * T + j] = ring(t.s2, CQ2E, T, h, i)[j];
	}
	__syncthreads();
#endif
	float *lse = a.saved + t.b * K_H * T;
	if (save) {
		const int w = threadIdx.x >> 5, l = threadIdx.x & 31;
		for (int h = w; h < K_H; h += NWARP) {
			const float *s = t.s3 + h * T;
			float mx = NEG_INF, sum = 0.0f;
			for (long long j = l; j < n; j += 32)
				mx = fmaxf(mx, s[j]);
			mx = warp_max(mx);
			for (long long j = l; j < n; j += 32)
				sum += expf(s[j] - mx);
			sum = warp_sum(sum);
			if (l == 0) {
				t.sred[h] = mx + logf(sum);
				if (store)
					lse[h * T + i] = mx + logf(sum);
			}
		}
		__syncthreads();
	}
	for (long long x = threadIdx.x; x < K_H * n; x += NT) {
		const int h = (int)(x / n);
		const long long j = x % n;
		const float l = save ? t.sred[h] : lse[h * T + i];
		ring(t.p, CQ2E, T, h, i)[j] = expf(t.s3[h * T + j] - l);
	}
	__syncthreads();
}

/* Row i's P2 and P3 (every head) from the P ring. */
__device__ __forceinline__ void post_rows(blk &t, long long i)
{
	const mta_bargs &a = *t.a;
	const long long T = t.T, n = i + 1;
	for (long long x = threadIdx.x; x < K_H * n; x += NT) {
		const int h = (int)(x / n);
		const long long j = x % n;
#if K_CQ2
		t.p2[h * T + j] = conv_at(a.kq_post + h * K_CQ2 * K_CK2, K_CQ2, K_CK2, K_OK2,
					  ring(t.p, CQ2E, T, h, 0), CQ2E, T, i, j);
#else
		t.p2[h * T + j] = ring(t.p, CQ2E, T, h, i)[j];
#endif
	}
	__syncthreads();
	for (long long x = threadIdx.x; x < K_H * n; x += NT) {
		const int h = (int)(x / n);
		const long long j = x % n;
#if MIXPOST
		float s = 0.0f;
#pragma unroll 1
		for (int h2 = 0; h2 < K_H; h2++)
			s += mpost(a, h, h2) * t.p2[h2 * T + j];
		t.p3[h * T + j] = s;
#else
		t.p3[h * T + j] = t.p2[h * T + j];
#endif
	}
	__syncthreads();
	(void)a;
}

/* ---- the saving forward ---- */

__device__ __forceinline__ void fwd_task(blk &t, long long i0, long long i1)
{
	const mta_bargs &a = *t.a;
	const long long T = t.T;
	const long long fs = i0 - (CQ2E - 1) > 0 ? i0 - (CQ2E - 1) : 0;
	const long long f0 = fs - (CQ1 - 1) > 0 ? fs - (CQ1 - 1) : 0;
	float *opre = a.saved + (long long)a.B * K_H * T;
	const int w = threadIdx.x >> 5, l = threadIdx.x & 31;
	for (long long i = f0; i < i1; i++) {
		zrow(t, i);
		if (i < fs)
			continue;
		srow(t, i, 1, i >= i0);
		if (i < i0)
			continue;
		post_rows(t, i);
		/* o[h][d] = sum_j P3[h][j] v[j]: one thread per (h, d), j in order */
		for (int x = threadIdx.x; x < K_H * K_D; x += NT) {
			const int h = x / K_D, d = x % K_D;
			const float *pr = t.p3 + h * T;
			float s = 0.0f;
			for (long long j = 0; j <= i; j++)
				s += pr[j] * vf(t, h / GQ, j, d);
			opre[((t.b * T + i) * K_H + h) * K_D + d] = s;
			t.sdop[x] = s;
		}
		__syncthreads();
		/* group norm and gate: one warp per head */
		for (int h = w; h < K_H; h += NWARP) {
			const float *o = t.sdop + h * K_D;
			float rs = 1.0f, g = 1.0f;
#if K_GN
			float ms = 0.0f;
			for (int d = l; d < K_D; d += 32)
				ms += o[d] * o[d];
			ms = warp_sum(ms);
			rs = 1.0f / sqrtf(ms / K_D + 1e-5f) * (K_GNR ? a.rescale : 1.0f);
#endif
#if K_GATE
			float z = 0.0f;
			for (int d = l; d < K_D; d += 32)
				z += o[d] * rs * (K_GN ? a.gn_w[d] : 1.0f) * a.gate_w[d];
			z = warp_sum(z) + a.gate_b[0];
			g = 1.0f / (1.0f + expf(-z));
#endif
			float *y = a.o + t.b * a.so[0] + i * a.so[1] + h * a.so[2];
			for (int d = l; d < K_D; d += 32)
				y[d] = o[d] * rs * (K_GN ? a.gn_w[d] : 1.0f) * g;
		}
		__syncthreads();
	}
}

/* ---- the backward ---- */

/*
 * Steps 8-9 backward for row i of every head (one warp per head): dL/do into
 * t.sdop; with own, the weights' contributions summed over heads in order.
 */
__device__ __forceinline__ void norm_gate_bwd(blk &t, long long i, int own)
{
	const mta_bargs &a = *t.a;
	const long long T = t.T;
	const float *opre = a.saved + (long long)a.B * K_H * T;
	const int w = threadIdx.x >> 5, l = threadIdx.x & 31;
	for (int h = w; h < K_H; h += NWARP) {
		const float *o = opre + ((t.b * T + i) * K_H + h) * K_D;
		const float *dy = a.dout + t.b * a.sdo[0] + i * a.sdo[1] + h * a.sdo[2];
		float *dn = t.sdop + h * K_D;
		for (int e = l; e < K_D; e += 32)
			dn[e] = dy[e];
		float rs = 1.0f, resc = 1.0f;
#if K_GN
		resc = K_GNR ? a.rescale : 1.0f;
		float ms = 0.0f;
		for (int e = l; e < K_D; e += 32)
			ms += o[e] * o[e];
		ms = warp_sum(ms);
		rs = 1.0f / sqrtf(ms / K_D + 1e-5f);
#endif
#if K_GATE
		float z = 0.0f, dot = 0.0f;
		for (int e = l; e < K_D; e += 32) {
			const float nv = K_GN ? o[e] * rs * a.gn_w[e] * resc : o[e];
			z += nv * a.gate_w[e];
			dot += dy[e] * nv;
		}
		z = warp_sum(z) + a.gate_b[0];
		dot = warp_sum(dot);
		const float sg = 1.0f / (1.0f + expf(-z));
		const float dz = dot * sg * (1.0f - sg);
		for (int e = l; e < K_D; e += 32) {
			const float nv = K_GN ? o[e] * rs * a.gn_w[e] * resc : o[e];
			dn[e] = dy[e] * sg + dz * a.gate_w[e];
			t.sgw[h * K_D + e] = dz * nv;
		}
		if (l == 0)
			t.sgb[h] = dz;
#endif
#if K_GN
		float dot2 = 0.0f;
		for (int e = l; e < K_D; e += 32) {
			t.sgn[h * K_D + e] = dn[e] * o[e] * rs * resc;
			dn[e] *= a.gn_w[e] * resc;
			dot2 += dn[e] * o[e];
		}
		dot2 = warp_sum(dot2);
		for (int e = l; e < K_D; e += 32)
			dn[e] = rs * dn[e] - rs * rs * rs / K_D * o[e] * dot2;
#endif
		__syncwarp();
	}
	__syncthreads();
	if (own) {
		for (int e = threadIdx.x; e < K_D; e += NT) {
			float sgn = 0.0f, sgw = 0.0f;
			for (int h = 0; h < K_H; h++) {
				sgn += K_GN ? t.sgn[h * K_D + e] : 0.0f;
				sgw += K_GATE ? t.sgw[h * K_D + e] : 0.0f;
			}
#if K_GN
			t.wg[WG_GN + e] += (double)sgn;
#endif
#if K_GATE
			t.wg[WG_GW + e] += (double)sgw;
#endif
			(void)sgn;
			(void)sgw;
		}
#if K_GATE
		if (threadIdx.x == 0) {
			float s = 0.0f;
			for (int h = 0; h < K_H; h++)
				s += t.sgb[h];
			t.wg[WG_GB] += (double)s;
		}
#endif
	}
	__syncthreads();
}

/* Stage 1 of row i: back from the output to dP2, scattered into the dP ring. */
__device__ __forceinline__ void stage1(blk &t, long long i, int own)
{
	const mta_bargs &a = *t.a;
	const long long T = t.T, n = i + 1;
	post_rows(t, i);
	norm_gate_bwd(t, i, own);
	/* dP3[h][j] = dL/do[h] . v[j] */
	for (long long x = threadIdx.x; x < K_H * n; x += NT) {
		const int h = (int)(x / n);
		const long long j = x % n;
		const elem_t *vj = a.v + t.b * a.sv[0] + j * a.sv[1] + (h / GQ) * a.sv[2];
		float s = 0.0f;
#pragma unroll 4
		for (int d = 0; d < K_D; d++)
			s += t.sdop[h * K_D + d] * ld(vj + d);
		t.dp3[h * T + j] = s;
		if (own)
			t.p3b[((i - t.i0) * K_H + h) * T + j] = t.p3[h * T + j];
	}
	if (own)
		for (int x = threadIdx.x; x < K_H * K_D; x += NT)
			t.dopb[(i - t.i0) * K_H * K_D + x] = t.sdop[x];
	__syncthreads();
#if MIXPOST
	mix_bwd(a, 1, own ? t.wg + WG_POST : 0, t.p2, T, t.dp3, T, i, t.dp2);
	const float *dp2 = t.dp2;
#else
	const float *dp2 = t.dp3;
#endif
	/* clear row i's slot of the dP ring, then scatter into rows i-cq2+1..i */
	for (long long x = threadIdx.x; x < K_H * T; x += NT)
		ring(t.dp, CQ2E, T, (int)(x / T), i)[x % T] = 0.0f;
	__syncthreads();
#if K_CQ2
	conv_bwd_rows(a.kq_post, K_CQ2, K_CK2, K_OK2, own ? t.wg + WG_K2 : 0, t.p, CQ2E, t.dp, CQ2E,
		      T, i, dp2);
#else
	for (long long x = threadIdx.x; x < K_H * n; x += NT) {
		const int h = (int)(x / n);
		ring(t.dp, CQ2E, T, h, i)[x % n] = dp2[h * T + x % n];
	}
	__syncthreads();
#endif
}

/* Stage 2 of row r (its dP complete): softmax and head_pre backward, into the dZ ring. */
__device__ __forceinline__ void stage2(blk &t, long long r, int own)
{
	const mta_bargs &a = *t.a;
	const long long T = t.T, n = r + 1;
	const int w = threadIdx.x >> 5, l = threadIdx.x & 31;
	for (int h = w; h < K_H; h += NWARP) {
		const float *p = ring(t.p, CQ2E, T, h, r), *dp = ring(t.dp, CQ2E, T, h, r);
		float s = 0.0f;
		for (long long j = l; j < n; j += 32)
			s += p[j] * dp[j];
		s = warp_sum(s);
		if (l == 0)
			t.sred[h] = s;
	}
	__syncthreads();
	for (long long x = threadIdx.x; x < K_H * n; x += NT) {
		const int h = (int)(x / n);
		const long long j = x % n;
		const float p = ring(t.p, CQ2E, T, h, r)[j], dp = ring(t.dp, CQ2E, T, h, r)[j];
		t.ds3[h * T + j] = p * (dp - t.sred[h]);
	}
	__syncthreads();
#if K_HPRE
	mix_bwd(a, 0, own ? t.wg + WG_PRE : 0, ring(t.s2, CQ2E, T, 0, r), (long long)CQ2E * T, t.ds3,
		T, r, t.ds2);
	const float *ds2 = t.ds2;
#else
	const float *ds2 = t.ds3;
#endif
	for (long long x = threadIdx.x; x < K_H * T; x += NT)
		ring(t.dz, CQ1, T, (int)(x / T), r)[x % T] = 0.0f;
	__syncthreads();
#if K_CQ
	conv_bwd_rows(a.kq_pre, K_CQ, K_CK, K_OK, own ? t.wg + WG_K1 : 0, t.z, NZR, t.dz, CQ1, T, r,
		      ds2);
#else
	for (long long x = threadIdx.x; x < K_H * n; x += NT) {
		const int h = (int)(x / n);
		ring(t.dz, CQ1, T, h, r)[x % n] = ds2[h * T + x % n];
	}
	__syncthreads();
	(void)a;
#endif
}

/* Stage 3 of row r (its dZ complete): dq; its dZ and scaled q kept for dk (block_dkdv). */
__device__ __forceinline__ void stage3(blk &t, long long r)
{
	const mta_bargs &a = *t.a;
	const long long T = t.T, xr = r - t.i0, n = r + 1;
	for (long long x = threadIdx.x; x < K_H * n; x += NT) {
		const int h = (int)(x / n);
		t.dzb[(xr * K_H + h) * T + x % n] = ring(t.dz, CQ1, T, h, r)[x % n];
	}
	for (int x = threadIdx.x; x < K_H * K_D; x += NT) {
		const int h = x / K_D, d = x % K_D;
		const float *dz = ring(t.dz, CQ1, T, h, r);
		t.qb[xr * K_H * K_D + x] = ld(a.q + t.b * a.sq[0] + r * a.sq[1] + h * a.sq[2] + d) * K_SCALE;
		float s = 0.0f;
		for (long long c = 0; c <= r; c++)
			s += dz[c] * kf(t, h / GQ, c, d);
		a.dq[((t.b * T + r) * K_H + h) * K_D + d] = s * K_SCALE;
	}
	__syncthreads();
}

/*
 * The task's shares of dk and dv for key columns c < i1: one thread per
 * (column, kv head, d) sums over the task's rows and the heads sharing the
 * kv head, in order, into the block's partials (row (b - b0) T + c).
 */
__device__ __forceinline__ void block_dkdv(blk &t, long long i0, long long i1)
{
	const long long T = t.T, nr = i1 - i0;
	for (long long x = threadIdx.x; x < i1 * K_HKV * K_D; x += NT) {
		const long long c = x / (K_HKV * K_D);
		const int hk = (int)(x / K_D % K_HKV), d = (int)(x % K_D);
		float ak = 0.0f, av = 0.0f;
		for (long long xr = c > i0 ? c - i0 : 0; xr < nr; xr++)
#pragma unroll 1
			for (int g = 0; g < GQ; g++) {
				const int h = hk * GQ + g;
				ak += t.dzb[(xr * K_H + h) * T + c] * t.qb[(xr * K_H + h) * K_D + d];
				av += t.p3b[(xr * K_H + h) * T + c] * t.dopb[(xr * K_H + h) * K_D + d];
			}
		const long long e = (((t.b - t.b0) * T + c) * K_HKV + hk) * K_D + d;
		t.pdk[e] += ak;
		t.pdv[e] += av;
	}
	__syncthreads();
}

__device__ __forceinline__ void bwd_task(blk &t, long long i0, long long i1)
{
	const long long T = t.T;
	t.i0 = i0;
	const long long e2 = i1 + CQ1 - 1 < T ? i1 + CQ1 - 1 : T;
	const long long e1 = e2 + CQ2E - 1 < T ? e2 + CQ2E - 1 : T;
	const long long fs = i0 - (CQ2E - 1) > 0 ? i0 - (CQ2E - 1) : 0;
	const long long f0 = fs - (CQ1 - 1) > 0 ? fs - (CQ1 - 1) : 0;
	for (long long s = f0; s < e1 + (CQ2E - 1) + (CQ1 - 1); s++) {
		if (s < e1) {
			zrow(t, s);
			if (s >= fs)
				srow(t, s, 0, 0);
		}
		if (s >= i0 && s < e1)
			stage1(t, s, s < i1);
		const long long r = s - (CQ2E - 1), rz = r - (CQ1 - 1);
		if (r >= i0 && r < e2)
			stage2(t, r, r < i1);
		if (rz >= i0 && rz < i1)
			stage3(t, rz);
	}
	block_dkdv(t, i0, i1);
}

/*
 * mode 2: dk, dv and the weights' gradients, the blocks' partials summed in
 * block order; a (batch, key) is in the partial of each block whose range
 * holds a row of that batch at or after the key.
 */
__device__ __forceinline__ void reduce(const mta_bargs &a)
{
	const long long T = a.T, nblk = (T + BR - 1) / BR, kvd = (long long)K_HKV * K_D;
	const long long kvn = (long long)a.B * T * kvd, rows = a.plan[2 * a.nb + 1];
	const long long e = (long long)blockIdx.x * NT + threadIdx.x;
	if (e < 2 * kvn) {
		const long long x = e % kvn, bc = x / kvd, b = bc / T, c = bc % T;
		const float *part = a.part + (e < kvn ? 0 : rows * kvd);
		float s = 0.0f;
		for (int w = 0; w < a.nb; w++) {
			const long long t0 = a.plan[w], t1 = a.plan[w + 1];
			const long long b0 = t0 / nblk, b1 = (t1 - 1) / nblk;
			const long long e1 = ((t1 - 1) % nblk + 1) * BR;
			if (b0 > b)
				break;
			if (b > b1 || (b == b1 && c >= e1))
				continue;
			s += part[(a.plan[a.nb + 1 + w] + (b - b0) * T + c) * kvd + x % kvd];
		}
		if (e < kvn)
			a.dk[e] = s;
		else
			a.dv[e - kvn] = s;
	} else if (e < 2 * kvn + WG_N) {
		const int x = (int)(e - 2 * kvn);
		double s = 0.0;
		for (int w = 0; w < a.nb; w++)
			s += a.wpart[(long long)w * WG_N + x];
		a.dw[x] = (float)s;
	}
}

extern "C" __global__ void __launch_bounds__(NT, 1) mta_bwd(const __grid_constant__ mta_bargs a)
{
	extern __shared__ float4 mta_smem[];
	if (a.mode == 2) {
		reduce(a);
		return;
	}
	const long long T = a.T, nblk = (T + BR - 1) / BR;
	if (a.ws_stride < W_FIXED + (long long)W_ROWS * T) {
		if (blockIdx.x == 0 && threadIdx.x == 0)
			*a.status = 1;
		return;
	}
	blk t;
	float *sm = (float *)mta_smem;
	t.a = &a;
	t.T = T;
	t.sq = sm;
	t.sdop = sm + K_H * K_D;
	t.sgw = sm + 2 * K_H * K_D;
	t.sgn = sm + 3 * K_H * K_D;
	t.sgb = sm + 4 * K_H * K_D;
	t.sred = t.sgb + K_H;
	float *at = a.ws + (long long)blockIdx.x * a.ws_stride;
	t.qb = at, at += BR * K_H * K_D;
	t.dopb = at, at += BR * K_H * K_D;
	t.z = at, at += (long long)K_H * NZR * T;
	t.s2 = at, at += (long long)K_H * CQ2E * T;
	t.p = at, at += (long long)K_H * CQ2E * T;
	t.dp = at, at += (long long)K_H * CQ2E * T;
	t.dz = at, at += (long long)K_H * CQ1 * T;
	t.s3 = at, at += (long long)K_H * T;
	t.p2 = at, at += (long long)K_H * T;
	t.p3 = at, at += (long long)K_H * T;
	t.dp3 = at, at += (long long)K_H * T;
	t.dp2 = at, at += (long long)K_H * T;
	t.ds3 = at, at += (long long)K_H * T;
	t.ds2 = at, at += (long long)K_H * T;
	t.p3b = at, at += (long long)BR * K_H * T;
	t.dzb = at, at += (long long)BR * K_H * T;
	/* The layout above must be what W_ROWS and W_FIXED count (status 2 if not). */
	if (at != a.ws + (long long)blockIdx.x * a.ws_stride + W_FIXED + (long long)W_ROWS * T) {
		if (threadIdx.x == 0)
			*a.status = 2;
		return;
	}
	t.pdk = t.pdv = 0;
	t.wg = 0;
	const long long x0 = a.plan[blockIdx.x], x1 = a.plan[blockIdx.x + 1];
	t.b0 = x0 / nblk;
	if (a.mode == 1) {
		const long long kvd = (long long)K_HKV * K_D, *pr = a.plan + a.nb + 1;
		const long long n = (pr[blockIdx.x + 1] - pr[blockIdx.x]) * kvd;
		t.pdk = a.part + pr[blockIdx.x] * kvd;
		t.pdv = a.part + (pr[a.nb] + pr[blockIdx.x]) * kvd;
		t.wg = a.wpart + (long long)blockIdx.x * WG_N;
		for (long long x = threadIdx.x; x < n; x += NT) {
			t.pdk[x] = 0.0f;
			t.pdv[x] = 0.0f;
		}
		for (int x = threadIdx.x; x < WG_N; x += NT)
			t.wg[x] = 0.0;
		__syncthreads();
	}
	for (long long x = x0; x < x1; x++) {
		t.b = x / nblk;
		const long long i0 = x % nblk * BR, i1 = i0 + BR < T ? i0 + BR : T;
		if (a.mode == 1)
			bwd_task(t, i0, i1);
		else
			fwd_task(t, i0, i1);
	}
}

#ifdef MTA_EMU
MTA_EMU_ENTRY(mta_bwd, mta_bargs, SMEM_BYTES)
#endif
