/*
 * mta_cuda.cu: kernel family v1 of the fused MTA forward (MTA.md), CUDA.
 *
 * One block owns batch b, a tile of BQ query rows starting at i0, and HPB
 * heads starting at h0 (whole head-mixing groups: the space guarantees it).
 * For each tile of BK key columns it builds, in shared memory, the logits of
 * the tile plus its halo (cq-1 earlier query rows and ck-1 neighbouring key
 * columns for the pre-softmax convolution, cq2-1 rows and ck2-1 columns more
 * for the post-softmax one), convolves and mixes heads, and feeds an online
 * softmax. Scalar fp32 math, fp32 accumulation, inputs f32/bf16/f16.
 *
 * Post-softmax steps (kq_post, head_post*) need *normalised* probabilities
 * of the cq2-1 halo rows above the tile, which an online softmax of the
 * tile's own rows never sees finished. v1 uses two passes: pass 1 runs the
 * online softmax over all keys for the tile rows and the halo rows and keeps
 * their row statistics (max m, sum l) in shared memory; pass 2 recomputes the
 * logits per key tile, normalises with the saved statistics, applies the post
 * convolution and head mixing and accumulates P.V. The alternative, per-row
 * accumulators (one output accumulator per halo row, kernel row and shift),
 * needs cq2*ck2 times the accumulator registers: for the paper's 6x11 that is
 * 66x, far beyond the register file, while recomputing QK^T costs one more
 * pass of the cheaper half of the work. Without post steps a single pass with
 * the usual rescaled accumulators is used.
 *
 * Loops over kernel rows and mixed output heads stay rolled (#pragma unroll
 * 1): unrolled, the compiler hoists every weight load out of the element
 * loop into registers (256 for 16x16 mixing) and spills.
 *
 * The output accumulators live in registers: warp w owns output rows
 * (head, query) w, w+WARPS, ...; lane l owns d = l, l+32, ...; so group norm
 * and gate reduce with warp shuffles.
 *
 * The generator (gen/cuda/cudagen.c) prepends #defines for every K_* constant; the
 * defaults below let this file compile on its own. Only dynamic shared memory
 * is used (the emulator, templates/cuda_emu.h, maps it to one buffer).
 */

#ifndef K_H
#define K_H 4        /* heads */
#endif
#ifndef K_HKV
#define K_HKV 2      /* key/value heads */
#endif
#ifndef K_D
#define K_D 16       /* head dimension */
#endif
#ifndef K_CQ
#define K_CQ 3       /* kq_pre rows (0: none) */
#define K_CK 5       /* kq_pre columns */
#define K_OK 2       /* kq_pre key offset */
#endif
#ifndef K_HPRE
#define K_HPRE 1     /* head_pre mixing */
#endif
#ifndef K_CQ2
#define K_CQ2 2      /* kq_post rows (0: none) */
#define K_CK2 3
#define K_OK2 1
#endif
#ifndef K_HPOST
#define K_HPOST 2    /* 0 none, 1 head_post conv, 2 head_post_linear */
#define K_HC 0
#endif
#ifndef K_GN
#define K_GN 1
#define K_GNR 1
#endif
#ifndef K_GATE
#define K_GATE 1
#endif
#ifndef K_SCALE
#define K_SCALE 0.25f
#endif
#ifndef K_DTYPE
#define K_DTYPE 1    /* 0 f32, 1 bf16, 2 f16 */
#endif
#ifndef K_VERSION
#define K_VERSION 1  /* kernel family: 1 scalar, 2 tensor cores (mta_cuda_tc.cu), 3 (mta_cuda_v3.cu) */
#endif
#ifndef K_BQ
#define K_BQ 8       /* query rows per block */
#define K_BK 16      /* key columns per tile */
#define K_HPB 4      /* heads per block */
#define K_WARPS 4
#define K_ALGO 0     /* v1 has one algorithm (see above) */
#endif
#ifndef K_CS
#define K_CS 1       /* blocks a cluster (v3 only: mta_cuda_v3.cu) */
#endif

/* ---- derived sizes ---------------------------------------------------- */
#define NT (32 * K_WARPS)
/*
 * The forward kernels' bounds: one block of NT threads an SM, which lets the
 * compiler take up to 65536 / NT registers (255 at most). The headroom check
 * (tests/test_nvrtc.c) compiles a kernel that takes more than 16 under that
 * cap again with MTA_MAXNREG, held to cap - 16, and wants no spills there:
 * the compiler spends spare registers on scheduling (loads hoisted ahead of
 * the mma they feed), so what it takes free is not what the kernel needs.
 */
#ifdef MTA_MAXNREG
#define MTA_BOUNDS __maxnreg__(MTA_MAXNREG)
#else
#define MTA_BOUNDS __launch_bounds__(NT, 1)
#endif
#define QR (K_CQ ? K_CQ - 1 : 0)    /* pre-conv halo rows */
#define KR (K_CQ ? K_CK - 1 : 0)    /* pre-conv halo columns */
#define OK1 (K_CQ ? K_OK : 0)
#define QP (K_CQ2 ? K_CQ2 - 1 : 0)  /* post-conv halo rows */
#define KP (K_CQ2 ? K_CK2 - 1 : 0)
#define OK2 (K_CQ2 ? K_OK2 : 0)
#define POST (K_CQ2 || K_HPOST)
#define RP (K_BQ + QP)              /* rows of the probability tile */
#define CP (K_BK + KP)              /* columns of the probability tile */
#define RZ (RP + QR)                /* rows of the raw logit tile */
#define CZ (CP + KR)
#define NROW (K_HPB * K_BQ)         /* output rows (head, query) per block */
#define RPW ((NROW + K_WARPS - 1) / K_WARPS)
#define DPL ((K_D + 31) / 32)
#define GQA (K_H / K_HKV)

/* Shared memory, in floats: S | Z | P2 | M | L | A. gen/cuda/cudagen.c computes
 * the same sum (mta_cuda_smem_bytes); the emulator checks they agree. */
#define SM_S (K_HPB * RP * CP)
#define SM_Z (K_CQ ? RZ * CZ : 0)
#define SM_P2 (K_CQ2 ? K_HPB * K_BQ * K_BK : 0)
#define SM_STAT (K_HPB * RP)
#define SM_FLOATS (4 * (SM_S + SM_Z + SM_P2 + 3 * SM_STAT))

#if K_DTYPE == 0
typedef float elem_t;
#else
typedef unsigned short elem_t;
#endif

/* Kernel arguments; struct mta_cuda_args in gen/cudagen.h mirrors this layout.
 * head_post carries head_post or head_post_linear, whichever the problem uses. */
struct mta_args {
	const elem_t *q, *k, *v;
	void *o;                              /* of o_dtype */
	long long sq[3], sk[3], sv[3], so[3]; /* strides (elements) of b, t, h; d is contiguous */
	const float *kq_pre, *head_pre, *kq_post, *head_post, *gn_w, *gate_w;
	const float *gate_b;                  /* [1]: read here, so the host never reads it */
	float rescale;
	int B, T;
	int o_dtype;                          /* 0 f32, 1 bf16, 2 f16 (mta_dtype) */
	int ndocs;                            /* packed documents: cu == NULL for a plain forward */
	const long long *cu;                  /* [ndocs+1] document offsets (cu_seqlens) */
	const int *tile_off;                  /* [ndocs+1] each document's first query tile */
};

/* ---- helpers; the emulator header gives each a portable twin ----------- */
#ifndef MTA_EMU
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

/* An output element in o's type (a run-time choice: one kernel serves all
 * three), rounded to nearest even; bf16 keeps NaN a NaN. */
__device__ __forceinline__ unsigned short out_bf16(float f)
{
	unsigned u = __float_as_uint(f);
	if ((u & 0x7fffffffu) > 0x7f800000u)
		return (unsigned short)((u >> 16) | 0x40u);
	return (unsigned short)((u + 0x7fffu + ((u >> 16) & 1u)) >> 16);
}

__device__ __forceinline__ unsigned short out_f16(float f)
{
#ifdef MTA_EMU
	return mta_f32_to_f16(f);
#else
	unsigned short h;
	asm("cvt.rn.f16.f32 %0, %1;" : "=h"(h) : "f"(f));
	return h;
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

__device__ __forceinline__ float dot(const elem_t *x, const elem_t *y)
{
	float s = 0.f;
#pragma unroll 8
	for (int d = 0; d < K_D; d++) /* @model v12.dot */
		s += ld(x + d) * ld(y + d);
	return s;
}

#if K_HPRE || K_HPOST == 2
/* In place, one (row, column) of every head (HPB == H), heads stride apart:
 * X[h] <- sum_h' W[h,h'] X[h']. */
__device__ __forceinline__ void mix_linear(float *X, int stride, const float *W)
{
	float x[K_HPB];
#pragma unroll
	for (int hh = 0; hh < K_HPB; hh++)
		x[hh] = X[hh * stride];
#pragma unroll 1
	for (int ho = 0; ho < K_HPB; ho++) { /* @model v12.mixo */
		float s = 0.f;
#pragma unroll
		for (int hi = 0; hi < K_HPB; hi++)
			s += W[ho * K_H + hi] * x[hi];
		X[ho * stride] = s;
	}
}
#endif

/*
 * Epilogue of one output row (head h, query i < T): o holds d = lane+32e
 * (already normalised); group norm, gate, store. Every lane of the warp
 * calls it (the reductions are warp shuffles).
 */
__device__ __forceinline__ void finish_row(const mta_args &a, int b, int h, int i, float (&o)[DPL])
{
	const int lane = threadIdx.x & 31;
#if K_GN
	float ss = 0.f;
#pragma unroll
	for (int e = 0; e < DPL; e++)
		ss += lane + 32 * e < K_D ? o[e] * o[e] : 0.f;
	const float rn = rsqrtf(warp_sum(ss) * (1.f / K_D) + 1e-5f) * (K_GNR ? a.rescale : 1.f);
#pragma unroll
	for (int e = 0; e < DPL; e++)
		if (lane + 32 * e < K_D)
			o[e] *= rn * a.gn_w[lane + 32 * e];
#endif
#if K_GATE
	float g = 0.f;
#pragma unroll
	for (int e = 0; e < DPL; e++)
		g += lane + 32 * e < K_D ? o[e] * a.gate_w[lane + 32 * e] : 0.f;
	g = warp_sum(g) + a.gate_b[0];
	const float sg = 1.f / (1.f + __expf(-g));
#pragma unroll
	for (int e = 0; e < DPL; e++)
		o[e] *= sg;
#endif
	const long long off = b * a.so[0] + i * a.so[1] + h * a.so[2];
	if (a.o_dtype == 0) {
		float *ob = (float *)a.o + off;
#pragma unroll
		for (int e = 0; e < DPL; e++)
			if (lane + 32 * e < K_D)
				ob[lane + 32 * e] = o[e];
	} else {
		unsigned short *ob = (unsigned short *)a.o + off;
#pragma unroll
		for (int e = 0; e < DPL; e++)
			if (lane + 32 * e < K_D)
				ob[lane + 32 * e] = a.o_dtype == 1 ? out_bf16(o[e]) : out_f16(o[e]);
	}
}

/*
 * The block's document. A plain forward: batch blockIdx.z, T = a.T, query
 * rows from g*BQ, where g is the block's query tile in the grid's x order.
 * Packed documents (a.cu set, B = 1, grid z = 1; the host set each tensor's
 * batch stride to its row stride): the document holding tile g (the last
 * d with tile_off[d] <= g: empty documents own no tile); *b is its first
 * row, so b * s?[0] starts every tensor there, and A_T is its length: the
 * block computes exactly what a forward of that document alone computes,
 * and no convolution tap, key or probability row outside it is read.
 * Every thread computes the same and stores the same A_T (so no barrier
 * is needed before a thread reads it). Returns the tile's first row.
 */
__shared__ int mta_doc_T;
#define A_T mta_doc_T
__device__ __forceinline__ int doc_tile(const mta_args &a, int g, int *b)
{
	if (!a.cu) {
		*b = blockIdx.z;
		mta_doc_T = a.T;
		return g * K_BQ;
	}
	int lo = 0, hi = a.ndocs - 1;
	while (lo < hi) { /* @model doc.search */
		const int mid = (lo + hi + 1) >> 1;
		if (a.tile_off[mid] <= g)
			lo = mid;
		else
			hi = mid - 1;
	}
	*b = (int)a.cu[lo];
	mta_doc_T = (int)(a.cu[lo + 1] - a.cu[lo]);
	return (g - a.tile_off[lo]) * K_BQ;
}

/*
 * ---- the tensor-core families: gen/cuda/cudagen.c splices in here the
 * mma helpers (mta_cuda_mma.cu) and then v2's text (mta_cuda_tc.cu, which
 * replaces two products of the kernel below) or v3's (mta_cuda_v3.cu, a
 * kernel of its own: the rest of this file is then skipped) ----
 */
/* @MTA_TC@ */

#if K_VERSION < 3

#ifndef SM_TC
#define SM_TC 0 /* v1: no staging area */
/* Output accumulators: warp w owns rows (head, query) w, w+WARPS, ...; lane l owns d = l, l+32, ... */
#define ACC_ROWS RPW
#define ACC_COLS DPL
#define PV(a, b, h0, j0, P, A, acc) pv_tile(a, b, h0, j0, P, A, acc)
#endif
/* Dynamic shared memory: the v2 staging area (16-byte aligned) first, then
 * the float tiles. gen/cuda/cudagen.c computes the same (mta_cuda_smem_bytes);
 * the emulator checks they agree. */
#define SMEM_BYTES (SM_TC + SM_FLOATS)

/*
 * S[hh][r][c] (row stride CP) for r < RP, c < ncols: the pre-softmax logits,
 * convolved and head-mixed, of query row rP0+r and key column cP0+c, for the
 * block's heads. Entries outside 0 <= col <= row < T are finite garbage the
 * caller masks. Called by every thread; ends with a barrier.
 */
__device__ void logits_tile(const mta_args &a, int b, int h0, int rP0, int cP0, int ncols,
			    float *S, float *Z, unsigned short *tc)
{
	const int tid = threadIdx.x;
#if K_VERSION >= 2
	/* Two-stage pipeline over heads: stage hh+1's rows load during hh's mma. */
	stage_qk(a, tc, b, h0, rP0 - QR, NRL, cP0 - OK1, ncols + KR, 0);
	mta_cp_commit();
#endif
#pragma unroll 1
	for (int hh = 0; hh < K_HPB; hh++) { /* @model v12.heads */
		const int h = h0 + hh;
		float *Sh = S + hh * RP * CP;
#if K_VERSION >= 2
		if (hh + 1 < K_HPB)
			stage_qk(a, tc, b, h + 1, rP0 - QR, NRL, cP0 - OK1, ncols + KR, (hh + 1) & 1);
		mta_cp_commit();
		mta_cp_wait(1);
		__syncthreads();
#endif
#if K_VERSION >= 2 && K_CQ && K_ALGO == 1
		/* Folded where the logit's taps all lie inside the causal triangle,
		 * decided per logit so that both passes agree on every logit. */
		const int fold = fold_kind(rP0, cP0, ncols); /* block-uniform */
		if (fold) /* @model v12.fold */
			fold_tile(a, tc, hh & 1, h, ncols, Sh);
#else
		const int fold = 0;
#endif
		if (fold != 2) { /* the logits computed exactly; @model v12.exact */
#if K_VERSION >= 2
			qk_tile(a, tc, hh & 1, rP0 - QR, NRL, cP0 - OK1, ncols + KR, K_CQ ? Z : Sh,
				K_CQ ? CZ : CP);
			__syncthreads(); /* the stage is reloaded two heads on; Z is read below */
#else
			const elem_t *qb = a.q + b * a.sq[0] + h * a.sq[2];
			const elem_t *kb = a.k + b * a.sk[0] + (h / GQA) * a.sk[2];
#endif
#if K_CQ
			/* Raw logits Z (0 outside the causal triangle), then the convolution. */
#if K_VERSION == 1
			const int nz = ncols + KR, rZ0 = rP0 - QR, cZ0 = cP0 - OK1;
#pragma unroll 1
			for (int e = tid; e < RZ * nz; e += NT) { /* @model v12.z */
				const int r = e / nz, c = e % nz, i = rZ0 + r, j = cZ0 + c;
				float s = 0.f;
				if (i >= 0 && i < A_T && j >= 0 && j <= i)
					s = K_SCALE * dot(qb + i * a.sq[1], kb + j * a.sk[1]);
				Z[r * CZ + c] = s;
			}
			__syncthreads();
#endif
			const float *w = a.kq_pre + h * (K_CQ * K_CK);
#pragma unroll 1
			for (int e = tid; e < RP * ncols; e += NT) { /* @model v12.conv */
				const int r = e / ncols, c = e % ncols;
				(void)fold;
#if K_ALGO == 1
				if (fold && folded(rP0 + r, cP0 + c))
					continue; /* fold_tile wrote it */
#endif
				float s = 0.f;
#pragma unroll 1
				for (int u = 0; u < K_CQ; u++) /* @model v12.cq */
#pragma unroll
					for (int t = 0; t < K_CK; t++)
						s += w[u * K_CK + t] * Z[(r + u) * CZ + c + t];
				Sh[r * CP + c] = s;
			}
			__syncthreads(); /* Z is rewritten for the next head */
#elif K_VERSION == 1
#pragma unroll 1
			for (int e = tid; e < RP * ncols; e += NT) { /* @model v12.conv */
				const int r = e / ncols, c = e % ncols, i = rP0 + r, j = cP0 + c;
				float s = 0.f;
				if (i >= 0 && i < A_T && j >= 0 && j <= i)
					s = K_SCALE * dot(qb + i * a.sq[1], kb + j * a.sk[1]);
				Sh[r * CP + c] = s;
			}
#endif
		}
	}
#if K_HPRE
#if !K_CQ
	__syncthreads();
#endif
	/* HPB == H here: S[h] <- sum_h' head_pre[h,h'] S[h'], element-wise in place. */
#pragma unroll 1
	for (int e = tid; e < RP * ncols; e += NT) /* @model v12.conv */
		mix_linear(S + (e / ncols) * CP + e % ncols, RP * CP, a.head_pre);
#endif
	__syncthreads();
}

/*
 * Online softmax statistics of rows rP0.. over the key tile at cP0 (BK
 * columns): M (max), L (sum of exp) and A (the factor that rescales earlier
 * sums) per (head, row). Without post steps the tile's probabilities
 * (unnormalised, relative to the new max) replace S for the P.V product.
 */
__device__ void softmax_tile(int T, int rP0, int cP0, float *S, float *M, float *L, float *A)
{
	const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
	for (int row = warp; row < K_HPB * RP; row += K_WARPS) { /* @model v12.smrow */
		const int r = row % RP, i = rP0 + r;
		float *Sr = S + row * CP;
		const int lim = i < T ? i - cP0 : -1; /* valid columns c <= lim */
		float mx = NEG_INF;
		for (int c = lane; c < K_BK; c += 32) /* @model v12.smcol */
			if (c <= lim && cP0 + c >= 0)
				mx = fmaxf(mx, Sr[c]);
		mx = warp_max(mx);
		const float mold = M[row], mnew = fmaxf(mold, mx);
		float sum = 0.f;
		for (int c = lane; c < K_BK; c += 32) { /* @model v12.smcol */
			float p = 0.f;
			if (c <= lim && cP0 + c >= 0)
				p = __expf(Sr[c] - mnew);
			sum += p;
#if !POST
			Sr[c] = p;
#endif
		}
		sum = warp_sum(sum);
		__syncwarp(); /* every lane has read M[row] and L[row] before lane 0 writes them */
		if (lane == 0) {
			const float al = mold == NEG_INF ? 0.f : __expf(mold - mnew);
			A[row] = al;
			L[row] = L[row] * al + sum;
			M[row] = mnew;
		}
	}
	__syncthreads();
}

#if POST
/*
 * Pass 2 on one key tile: normalise the probability tile (with halo) using
 * the saved statistics (L holds 1/l by now), apply the post convolution into
 * P2 [HPB][BQ][BK] and the post head mixing in place. Ends with a barrier.
 */
__device__ void post_tile(const mta_args &a, int h0, int i0, int j0, float *S, float *P2,
			  const float *M, const float *L)
{
	const int tid = threadIdx.x, rP0 = i0 - QP, cP0 = j0 - OK2;
	for (int e = tid; e < K_HPB * RP * CP; e += NT) { /* @model v12.pnorm */
		const int row = e / CP, c = e % CP, i = rP0 + row % RP, j = cP0 + c;
		float p = 0.f;
		if (i >= 0 && i < A_T && j >= 0 && j <= i)
			p = __expf(S[e] - M[row]) * L[row];
		S[e] = p;
	}
	__syncthreads();
#if K_CQ2
	for (int e = tid; e < K_HPB * K_BQ * K_BK; e += NT) { /* @model v12.pconv */
		const int hh = e / (K_BQ * K_BK), r = (e / K_BK) % K_BQ, c = e % K_BK;
		const int i = i0 + r, j = j0 + c;
		float s = 0.f;
		if (i < A_T && j <= i) {
			const float *w = a.kq_post + (h0 + hh) * (K_CQ2 * K_CK2);
			const float *Sh = S + hh * RP * CP;
#pragma unroll 1
			for (int u = 0; u < K_CQ2; u++) /* @model v12.cq2 */
#pragma unroll
				for (int t = 0; t < K_CK2; t++)
					s += w[u * K_CK2 + t] * Sh[(r + u) * CP + c + t];
		}
		P2[e] = s;
	}
	__syncthreads();
#endif
#if K_HPOST == 1
	/* head_post [H/c, c, c]: P[g*c+o] <- sum_in w[g,in,o] P[g*c+in] */
	for (int e = tid; e < (K_HPB / K_HC) * K_BQ * K_BK; e += NT) { /* @model v12.hpost */
		const int g = e / (K_BQ * K_BK), off = e % (K_BQ * K_BK);
		const float *w = a.head_post + (h0 / K_HC + g) * K_HC * K_HC;
		float *base = P2 + g * K_HC * K_BQ * K_BK + off;
		float x[K_HC];
#pragma unroll
		for (int u = 0; u < K_HC; u++)
			x[u] = base[u * K_BQ * K_BK];
#pragma unroll 1
		for (int o = 0; o < K_HC; o++) { /* @model v12.hco */
			float s = 0.f;
#pragma unroll
			for (int u = 0; u < K_HC; u++)
				s += w[u * K_HC + o] * x[u];
			base[o * K_BQ * K_BK] = s;
		}
	}
	__syncthreads();
#elif K_HPOST == 2
	/* head_post_linear [H, H], HPB == H */
	for (int e = tid; e < K_BQ * K_BK; e += NT) /* @model v12.hpostl */
		mix_linear(P2 + e, K_BQ * K_BK, a.head_post);
	__syncthreads();
#endif
}
#endif

/*
 * Accumulate P.V of one key tile into the register accumulators; P is
 * [HPB][BQ][BK]. Without post steps, earlier sums are first rescaled by A.
 */
#if K_VERSION == 1
__device__ __forceinline__ void pv_tile(const mta_args &a, int b, int h0, int j0,
					const float *P, const float *A, float (&acc)[RPW][DPL])
{
	const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
	const int nc = A_T - j0 < K_BK ? A_T - j0 : K_BK;
	(void)A;
#pragma unroll
	for (int k = 0; k < RPW; k++) {
		const int row = warp + k * K_WARPS;
		if (NROW % K_WARPS && row >= NROW)
			break;
		const int hh = row / K_BQ;
		const float *Pr = P + row * K_BK;
		const elem_t *vb = a.v + b * a.sv[0] + ((h0 + hh) / GQA) * a.sv[2] + j0 * a.sv[1];
#if !POST
		const float al = A[row]; /* RP == BQ without post steps */
#pragma unroll
		for (int e = 0; e < DPL; e++)
			acc[k][e] *= al;
#endif
		for (int c = 0; c < nc; c++) { /* @model v12.pvc */
			const float p = Pr[c];
#pragma unroll
			for (int e = 0; e < DPL; e++)
				if (lane + 32 * e < K_D)
					acc[k][e] += p * ld(vb + c * a.sv[1] + lane + 32 * e);
		}
	}
}
#endif

extern "C" __global__ void MTA_BOUNDS mta_fwd(const mta_args a)
{
	extern __shared__ float4 mta_smem[];
	int b;
	/* Heaviest (latest) query tiles first: causal work grows with i0. */
	const int i0 = doc_tile(a, gridDim.x - 1 - blockIdx.x, &b);
	unsigned short *tc = (unsigned short *)mta_smem;
	float *S = (float *)((char *)mta_smem + SM_TC), *Z = S + SM_S, *P2 = Z + SM_Z;
	float *M = P2 + SM_P2, *L = M + SM_STAT, *A = L + SM_STAT;
	const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5;
	const int h0 = blockIdx.y * K_HPB;
	const int nkt = ((i0 + K_BQ < A_T ? i0 + K_BQ : A_T) + K_BK - 1) / K_BK; /* key tiles */
	float acc[ACC_ROWS][ACC_COLS];
	(void)tc;
#pragma unroll
	for (int k = 0; k < ACC_ROWS; k++)
#pragma unroll
		for (int e = 0; e < ACC_COLS; e++)
			acc[k][e] = 0.f;
	for (int e = tid; e < SM_STAT; e += NT) { /* @model v12.stat */
		M[e] = NEG_INF;
		L[e] = 0.f;
	}
	__syncthreads();

	/* Pass 1 (or the only pass): online softmax over the key tiles. */
	for (int t = 0; t < nkt; t++) { /* @model v12.kt */
		const int j0 = t * K_BK;
		logits_tile(a, b, h0, i0 - QP, j0, K_BK, S, Z, tc); /* @model pass=1 */
		softmax_tile(A_T, i0 - QP, j0, S, M, L, A);
#if !POST
		PV(a, b, h0, j0, S, A, acc);
		__syncthreads();
#endif
	}
#if POST
	for (int e = tid; e < SM_STAT; e += NT) /* @model v12.stat */
		L[e] = L[e] > 0.f ? 1.f / L[e] : 0.f;
	__syncthreads();
	/* Pass 2: recompute, normalise, post convolution and mixing, P.V. */
	for (int t = 0; t < nkt; t++) { /* @model v12.kt */
		const int j0 = t * K_BK;
		logits_tile(a, b, h0, i0 - QP, j0 - OK2, CP, S, Z, tc); /* @model pass=2 */
		post_tile(a, h0, i0, j0, S, K_CQ2 ? P2 : S, M, L);
		PV(a, b, h0, j0, K_CQ2 ? P2 : S, A, acc);
		__syncthreads();
	}
#endif

	/* Epilogue: normalise (single pass), group norm, gate, store. */
#if K_VERSION == 1
#pragma unroll
	for (int k = 0; k < RPW; k++) {
		const int row = warp + k * K_WARPS;
		if (NROW % K_WARPS && row >= NROW)
			break;
		const int hh = row / K_BQ, r = row % K_BQ, i = i0 + r;
		if (i >= A_T)
			continue; /* warp-uniform: the shuffles see whole warps */
		const float inv = POST ? 1.f : 1.f / L[hh * RP + r];
		float o[DPL];
#pragma unroll
		for (int e = 0; e < DPL; e++)
			o[e] = acc[k][e] * inv;
		finish_row(a, b, h0 + hh, i, o);
	}
#else
	/* One head at a time through shared memory (the staging area is free now). */
	float *Ob = (float *)mta_smem;
	for (int hh = 0; hh < K_HPB; hh++) { /* @model v12.heads */
		acc_to_smem(hh, acc, Ob);
		for (int r = warp; r < K_BQ && i0 + r < A_T; r += K_WARPS) { /* @model v12.erow */
			const float inv = POST ? 1.f : 1.f / L[hh * RP + r];
			float o[DPL];
#pragma unroll
			for (int e = 0; e < DPL; e++)
				o[e] = lane + 32 * e < K_D ? Ob[r * K_D + lane + 32 * e] * inv : 0.f;
			finish_row(a, b, h0 + hh, i0 + r, o);
		}
		__syncthreads();
	}
#endif
}

#endif /* K_VERSION < 3 */

/* The generator's count of the dynamic shared memory (gen/cuda/cudagen.c,
 * a mirror of the layout above and in the family's text), which the launch
 * gives, holds the kernel's: a change to one that misses the other fails
 * every compile, not only the emulated ones (whose launch checks it too). */
#ifdef K_SMEM_BYTES
static_assert(SMEM_BYTES <= K_SMEM_BYTES, "the generator's shared memory (K_SMEM_BYTES, "
	      "gen/cuda/cudagen.c) is less than the kernel's layout (SMEM_BYTES)");
#endif

#ifdef MTA_EMU
MTA_EMU_ENTRY_CLUSTER(mta_fwd, mta_args, SMEM_BYTES, K_CS)
#endif
