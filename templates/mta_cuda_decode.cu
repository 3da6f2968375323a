/*
 * mta_cuda_decode.cu: the CUDA decode kernel: one new row of each sequence
 * of a decode cache, the same arguments as the CPU decode kernel
 * (runtime/core/mta_dargs.h, mirrored below as struct mta_dargs_cu: NVRTC
 * has no <stdint.h>), computed as templates/mta_cpu_decode.c computes it:
 * MTA.md's steps for one query row against every cached key, the
 * convolutions reading the rings of the previous rows' logits and
 * probabilities, which the kernel extends by the new row.
 *
 * One block per sequence (grid x = n), DNT = 32 * K_DEC_WARPS threads. A
 * thread owns the key columns j = tid, tid+DNT, ... for the steps that are
 * column-wise (logits, convolutions, head mixing: every head of a column in
 * one thread, so the mixing needs no barrier); softmax reduces over the
 * block; P.V is cut into chunks of K_DEC_BK keys, a thread per (chunk,
 * head, d) item writing the chunk's partial row, then a thread per (head,
 * d) adds the partials in chunk order (the same bits whatever the thread
 * count); group norm and gate a warp per head. Barriers separate the steps
 * that read neighbouring columns of the new row. The scratch rows s, m of
 * sequence x are the first 2*H*scap floats of its MTA_DWORK share of work;
 * then per chunk [H] unused floats (the CPU kernel's maxima and sums:
 * the layout of MTA_DWORK_BK) and the chunk's [H][D] partial P.V row, the
 * first of which receives the sum. float32 math.
 *
 * Tunables (the decode space, gen/cuda/space.c): K_DEC_WARPS, warps per
 * block; K_DEC_BK, keys per P.V chunk (at least MTA_DBLOCK_MIN, so the
 * caller's scratch holds the partials).
 *
 * The generator (gen/cuda/cudagen.c, mta_gen_cuda_decode) prepends the
 * K_* #defines of the problem and the variant; the defaults below let this
 * file compile alone. On the emulator (templates/cuda_emu.h) it also exports the host
 * entry mta_cuda_decode, a struct mta_dargs pointer in (mta_decode_fn).
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
#endif

#ifndef K_DEC_WARPS
#define K_DEC_WARPS 4
#define K_DEC_BK 128
#endif

#define DNT (32 * K_DEC_WARPS)     /* threads per block */
#define DW K_DEC_WARPS
#define R1 (K_CQ ? K_CQ : 1)
#define R2 (K_CQ2 ? K_CQ2 : 1)
#define GQ (K_H / K_HKV)
#define DBLOCK K_DEC_BK            /* keys per P.V chunk: DWORK(scap) <= the caller's MTA_DWORK */
#define DNB(scap) (((scap) + DBLOCK - 1) / DBLOCK)
#define DWORK(scap) (2LL * K_H * (scap) + DNB(scap) * K_H * (K_D + 2LL))
#define DSMEM (4 * 2 * DW)        /* dynamic shared memory: the reductions' partials */

/* struct mta_dseq and struct mta_dargs (runtime/core/mta_dargs.h, ABI 3), field for field. */
struct mta_dseq_cu {
	long long pos, cap;
	const float *k, *v;
	float *z, *p;
};

struct mta_dargs_cu {
	long long n;
	const mta_dseq_cu *seq;
	const float *q;
	float *o;
	float *work;
	long long scap;
	const float *kq_pre, *head_pre, *kq_post, *head_post, *head_post_linear;
	const float *gn_weight, *gate_w;
	float gate_b;
	float gn_rescale;
	int nthreads;
	void *pool;
	void *pool_run;
	void *impl;
};

#define DNEG_INF __int_as_float(0xff800000)

__device__ __forceinline__ float dwarp_sum(float x)
{
	for (int o = 16; o; o >>= 1)
		x += __shfl_xor_sync(0xffffffffu, x, o);
	return x;
}

__device__ __forceinline__ float dwarp_max(float x)
{
	for (int o = 16; o; o >>= 1)
		x = fmaxf(x, __shfl_xor_sync(0xffffffffu, x, o));
	return x;
}

/* The block's sum (mx = 0) or maximum (mx = 1) of x; red holds DW floats. */
__device__ float dblock_reduce(float x, int mx, float *red)
{
	const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
	x = mx ? dwarp_max(x) : dwarp_sum(x);
	__syncthreads(); /* red is free: every thread read the last result */
	if (lane == 0)
		red[warp] = x;
	__syncthreads();
	float r = red[0];
	for (int w = 1; w < DW; w++)
		r = mx ? fmaxf(r, red[w]) : r + red[w];
	return r;
}

/*
 * Column j (<= i) of the convolution of a ring (rows of cap floats, slot
 * r % rows) with w [cq][ck] at key offset ok: taps above their row's
 * diagonal or before row 0 are zero; the same order of terms as the CPU
 * kernel's conv_cols.
 */
__device__ __forceinline__ float dconv(const float *ring, long long cap, long long i,
				       long long j, const float *w, int cq, int ck, int ok,
				       int rows)
{
	float s = 0.f;
	for (int a = 0; a < cq; a++) {
		const long long r = i - (cq - 1) + a;
		if (r < 0)
			continue;
		const float *row = ring + (r % rows) * cap;
		for (int b = 0; b < ck; b++) {
			const long long c = j - ok + b;
			if (c >= 0 && c <= r)
				s += w[a * ck + b] * row[c];
		}
	}
	return s;
}

extern "C" __global__ void __launch_bounds__(DNT, 1) mta_decode_row(const mta_dargs_cu a)
{
	extern __shared__ float4 mta_smem[];
	float *red = (float *)mta_smem;
	const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5;
	const long long x = blockIdx.x;
	const mta_dseq_cu sq = a.seq[x];
	const long long i = sq.pos, cap = sq.cap, sc = a.scap;
	float *s = a.work + x * DWORK(sc), *m = s + K_H * sc;
	float *part = m + K_H * sc + 2 * K_H; /* chunk c's partial row at part + c * K_H * (K_D + 2) */
	float *ob = part;                     /* chunk 0's, which receives the sum */
	const float *q = a.q + x * K_H * K_D;

	/* step 1: raw logits of row i into the logit ring */
	for (int h = 0; h < K_H; h++) {
		float *zr = sq.z + ((long long)h * R1 + i % R1) * cap;
		const float *qh = q + h * K_D;
		for (long long j = tid; j <= i; j += DNT) {
			const float *kj = sq.k + (j * K_HKV + h / GQ) * K_D;
			float dot = 0.f;
			for (int d = 0; d < K_D; d++)
				dot += qh[d] * kj[d];
			zr[j] = K_SCALE * dot;
		}
	}
	__syncthreads(); /* the convolution reads neighbouring columns */

	/* steps 2-3: pre-softmax convolution and head mixing, column by column */
	for (long long j = tid; j <= i; j += DNT) {
		float xs[K_H];
		#pragma unroll
		for (int h = 0; h < K_H; h++) {
#if K_CQ
			xs[h] = dconv(sq.z + (long long)h * R1 * cap, cap, i, j,
				      a.kq_pre + h * K_CQ * K_CK, K_CQ, K_CK, K_OK, R1);
#else
			xs[h] = sq.z[((long long)h * R1 + i % R1) * cap + j];
#endif
		}
		#pragma unroll
		for (int h = 0; h < K_H; h++) {
#if K_HPRE
			float t = 0.f;
			#pragma unroll
			for (int h2 = 0; h2 < K_H; h2++)
				t += a.head_pre[h * K_H + h2] * xs[h2];
			s[h * sc + j] = t;
#else
			s[h * sc + j] = xs[h];
#endif
		}
	}
	/* step 4: softmax of each head's row into the probability ring */
	for (int h = 0; h < K_H; h++) {
		const float *sr = s + h * sc;
		float *pw = sq.p + ((long long)h * R2 + i % R2) * cap;
		float mx = DNEG_INF, sum = 0.f;
		for (long long j = tid; j <= i; j += DNT)
			mx = fmaxf(mx, sr[j]);
		mx = dblock_reduce(mx, 1, red);
		for (long long j = tid; j <= i; j += DNT)
			sum += (pw[j] = __expf(sr[j] - mx));
		const float inv = 1.f / dblock_reduce(sum, 0, red);
		for (long long j = tid; j <= i; j += DNT)
			pw[j] *= inv;
	}
	__syncthreads(); /* the post convolution reads neighbouring columns */

	/* steps 5-6: post-softmax convolution and head mixing, column by column, into s */
	for (long long j = tid; j <= i; j += DNT) {
		float xs[K_H];
		#pragma unroll
		for (int h = 0; h < K_H; h++) {
#if K_CQ2
			xs[h] = dconv(sq.p + (long long)h * R2 * cap, cap, i, j,
				      a.kq_post + h * K_CQ2 * K_CK2, K_CQ2, K_CK2, K_OK2, R2);
#else
			xs[h] = sq.p[((long long)h * R2 + i % R2) * cap + j];
#endif
		}
		#pragma unroll
		for (int h = 0; h < K_H; h++) {
#if K_HPOST == 1
			const int g = h / K_HC, oo = h % K_HC;
			float t = 0.f;
			#pragma unroll
			for (int in = 0; in < K_HC; in++)
				t += a.head_post[(g * K_HC + in) * K_HC + oo] * xs[g * K_HC + in];
			s[h * sc + j] = t;
#elif K_HPOST == 2
			float t = 0.f;
			#pragma unroll
			for (int h2 = 0; h2 < K_H; h2++)
				t += a.head_post_linear[h * K_H + h2] * xs[h2];
			s[h * sc + j] = t;
#else
			s[h * sc + j] = xs[h];
#endif
		}
	}
	__syncthreads();

	/* step 7: P.V, a thread per (chunk, head, d), then the chunks' sum in chunk order */
	const long long nch = i / DBLOCK + 1;
	for (long long it = tid; it < nch * K_H * K_D; it += DNT) {
		const long long c = it / (K_H * K_D);
		const int e = (int)(it % (K_H * K_D)), h = e / K_D, d = e % K_D;
		const long long j1 = (c + 1) * DBLOCK - 1 < i ? (c + 1) * DBLOCK - 1 : i;
		const float *sr = s + h * sc;
		float acc = 0.f;
		for (long long j = c * DBLOCK; j <= j1; j++)
			acc += sr[j] * sq.v[(j * K_HKV + h / GQ) * K_D + d];
		part[c * (K_H * (K_D + 2LL)) + e] = acc;
	}
	__syncthreads();
	if (nch > 1) {
		for (int e = tid; e < K_H * K_D; e += DNT) {
			float acc = part[e];
			for (long long c = 1; c < nch; c++)
				acc += part[c * (K_H * (K_D + 2LL)) + e];
			ob[e] = acc;
		}
		__syncthreads();
	}

	/* steps 8-9: group norm and gate, a warp per head */
	for (int h = warp; h < K_H; h += DW) {
		float ov[(K_D + 31) / 32];
		float ss = 0.f;
		for (int e = 0; e < (K_D + 31) / 32; e++) {
			const int d = lane + 32 * e;
			ov[e] = d < K_D ? ob[h * K_D + d] : 0.f;
			ss += ov[e] * ov[e];
		}
		(void)ss;
#if K_GN
		const float rs = rsqrtf(dwarp_sum(ss) / K_D + 1e-5f) * (K_GNR ? a.gn_rescale : 1.f);
		for (int e = 0; e < (K_D + 31) / 32; e++) {
			const int d = lane + 32 * e;
			ov[e] = d < K_D ? ov[e] * rs * a.gn_weight[d] : 0.f;
		}
#endif
#if K_GATE
		float g = 0.f;
		for (int e = 0; e < (K_D + 31) / 32; e++) {
			const int d = lane + 32 * e;
			g += d < K_D ? ov[e] * a.gate_w[d] : 0.f;
		}
		const float sg = 1.f / (1.f + __expf(-(dwarp_sum(g) + a.gate_b)));
		for (int e = 0; e < (K_D + 31) / 32; e++)
			ov[e] *= sg;
#endif
		for (int e = 0; e < (K_D + 31) / 32; e++) {
			const int d = lane + 32 * e;
			if (d < K_D)
				a.o[(x * K_H + h) * K_D + d] = ov[e];
		}
	}
}

#ifdef MTA_EMU
/* The host entry on the emulator: the checks of the CPU kernel, then the grid. */
static void mta_decode_body(const void *p)
{
	mta_decode_row(*(const mta_dargs_cu *)p);
}

/* ABI, argument sizes, then the variant the kernel was built for: threads, P.V chunk */
extern "C" const int mta_cuda_decode_sizes[5] = { 3, (int)sizeof(mta_dargs_cu),
						  (int)sizeof(mta_dseq_cu), DNT, DBLOCK };

extern "C" int mta_cuda_decode(const void *args)
{
	const mta_dargs_cu *a = (const mta_dargs_cu *)args;
	if (!a || a->n < 0 || !a->work)
		return 2;
	for (long long b = 0; b < a->n; b++)
		if (a->seq[b].pos < 0 || a->seq[b].pos >= a->scap || a->seq[b].pos >= a->seq[b].cap)
			return 2;
	if (!a->n)
		return 0;
	if (a->n > 2147483647LL)
		return 2;
	const unsigned grid[3] = { (unsigned)a->n, 1, 1 };
	mta_emu_smem_bytes = DSMEM;
	return mta_emu_grid(mta_decode_body, a, grid, DNT) ? 3 : 0;
}
#endif
