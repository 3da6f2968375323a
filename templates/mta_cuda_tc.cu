/*
 * mta_cuda_tc.cu: the tensor-core kernel family (v2) of the fused MTA
 * forward. gen/cuda/cudagen.c splices this text into templates/mta_cuda.cu at its
 * "tensor-core family" mark, so v2 keeps v1's block structure (tiles with
 * halos, two passes when post-softmax steps exist, the same convolution,
 * head mixing, softmax and epilogue code) and replaces its two products:
 *
 *  - raw logits q.k^T of a tile and its halo: mma.sync m16n8k16 (bf16 or
 *    fp16 operands, fp32 accumulation), operands staged in shared memory by
 *    cp.async (16-byte chunks) in a two-stage pipeline over the block's heads
 *    (head hh+1 loads while head hh multiplies), fragments read by ldmatrix;
 *  - P.V: P is rounded to the input dtype (bf16 or fp16: mma takes no fp32
 *    operands) in shared memory, V staged by cp.async and read with
 *    ldmatrix.trans; the output accumulators are mma C fragments in
 *    registers, written through shared memory for the v1 epilogue.
 *
 * algo 1 folds the pre-softmax key-query convolution into the logit product
 * (see fold_tile below); algo 0 computes the raw logits and convolves them.
 *
 * Requires: dtype bf16 or f16, BQ and BK multiples of 16 (the space checks).
 * D is padded to a multiple of 16 with zeros in shared memory. The PTX
 * helpers (mma.sync, ldmatrix, cp.async) come from mta_cuda_mma.cu, which
 * the generator splices in first.
 */

/* ---- sizes of the v2 staging area (bytes; gen/cuda/cudagen.c mirrors them) --- */
#define DK R16(K_D)                 /* k extent of q.k, zero padded */
#define DS (DK + 8)                 /* smem row stride (elements): 16-byte rows, fewer bank conflicts */
#define DN R8(K_D)                  /* n extent of P.V */
#define NRL (K_CQ ? RZ : RP)        /* rows of the raw logit region */
#define NCL (K_CQ ? CZ : CP)        /* columns of the raw logit region */
#define MR (R16(RP) + R16(QR))     /* staged q rows: the fold reads rows r+a of RP */
#define NC R8(NCL)
#define PS (K_BK + 8)               /* row stride of the rounded P tile */
#define TC_QK (2 * (MR + NC) * DS)  /* two stages of q and k rows (elements) */
#define NF R8(CP)                   /* folded k columns (algo 1) */
#define TC_KC (K_CQ && K_ALGO == 1 ? NF * DS : 0)
#define TC_STAGE (2 * (TC_QK + K_BK * DS + K_BQ * PS + TC_KC))
#define TC_OUT (4 * K_BQ * K_D)     /* one head's output rows, float, for the epilogue */
#define SM_TC (((TC_STAGE > TC_OUT ? TC_STAGE : TC_OUT) + 15) / 16 * 16)

/* Output accumulators: 16x8 tiles of (head, query, d), spread over warps. */
#define MT (K_BQ / 16)
#define NT8 (DN / 8)
#define TPH (MT * NT8)
#define NTILE (K_HPB * TPH)
#define ACC_ROWS ((NTILE + K_WARPS - 1) / K_WARPS)
#define ACC_COLS 4
/* The kernel's P.V step (names the kernel's staging pointer tc). */
#define PV(a, b, h0, j0, P, A, acc) pv_tile_tc(a, tc, b, h0, j0, P, A, acc)

/*
 * Stage rows r0 .. r0+nr-1 of one head of x (row stride st) as operand rows
 * of stride DS in dst, rows past nrows_pad and columns past K_D zero, rows
 * outside [0, T) zero. Whole 16-byte chunks go by cp.async when vec says the
 * tensor allows it; the caller commits.
 */
__device__ void stage_rows(unsigned short *dst, const elem_t *x, long long st, int r0, int nr,
			   int npad, int T, bool vec)
{
	for (int e = threadIdx.x; e < npad * (DK / 8); e += NT) { /* @model v12.stage */
		const int r = e / (DK / 8), c = e % (DK / 8) * 8, t = r0 + r;
		unsigned short *d = dst + r * DS + c;
		const bool in = r < nr && t >= 0 && t < T;
		if (in && vec && c + 8 <= K_D) {
			mta_cp_async16(d, x + t * st + c);
			continue;
		}
		for (int u = 0; u < 8; u++)
			d[u] = in && c + u < K_D ? ((const unsigned short *)x)[t * st + c + u] : 0;
	}
}

/* Whether q, k, v allow 16-byte copies (base and strides), uniform per block. */
__device__ __forceinline__ bool vec_ok(const mta_args &a)
{
	unsigned long long m = (unsigned long long)a.q | (unsigned long long)a.k |
			       (unsigned long long)a.v;
	for (int i = 0; i < 3; i++)
		m |= (unsigned long long)(a.sq[i] | a.sk[i] | a.sv[i]) * 2;
	return K_D % 8 == 0 && m % 16 == 0;
}

/* Stage q rows r0.. and k columns c0.. of head h into pipeline stage s. */
__device__ void stage_qk(const mta_args &a, unsigned short *tc, int b, int h, int r0, int nr,
			 int c0, int nc, int s)
{
	const bool vec = vec_ok(a);
	unsigned short *Qs = tc + s * (MR + NC) * DS, *Ks = Qs + MR * DS;
	stage_rows(Qs, a.q + b * a.sq[0] + h * a.sq[2], a.sq[1], r0, nr, MR, A_T, vec); /* @model st=1 */
	stage_rows(Ks, a.k + b * a.sk[0] + (h / GQA) * a.sk[2], a.sk[1], c0, nc, NC, A_T, /* @model st=2 */
		   vec);
}

/*
 * out[r*ld + c] (r < nr, c < nc) = K_SCALE * q[r0+r].k[c0+c] inside the
 * causal triangle 0 <= c0+c <= r0+r < T, else 0, from pipeline stage s.
 * Warps take 16x8 tiles round robin; every lane of a warp takes part.
 */
__device__ void qk_tile(const mta_args &a, const unsigned short *tc, int s, int r0, int nr,
			int c0, int nc, float *out, int ld)
{
	const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, g = lane >> 2, t4 = lane & 3;
	const unsigned short *Qs = tc + s * (MR + NC) * DS, *Ks = Qs + MR * DS;
	const int mt = (nr + 15) / 16, nt = (nc + 7) / 8;
	for (int tile = warp; tile < mt * nt; tile += K_WARPS) { /* @model v12.qkt */
		const int m0 = tile / nt * 16, n0 = tile % nt * 8;
		float d[4] = { 0.f, 0.f, 0.f, 0.f };
#pragma unroll
		for (int kk = 0; kk < DK; kk += 16) {
			unsigned af[4], bf[2];
			mta_ldsm_x4(af, Qs + (m0 + (lane & 15)) * DS + kk + (lane >> 4) * 8);
			mta_ldsm_x2(bf, Ks + (n0 + (lane & 7)) * DS + kk + ((lane >> 3) & 1) * 8);
			mma(d, af, bf);
		}
#pragma unroll
		for (int e = 0; e < 4; e++) {
			const int r = m0 + g + 8 * (e >> 1), c = n0 + 2 * t4 + (e & 1);
			const int i = r0 + r, j = c0 + c;
			if (r < nr && c < nc)
				out[r * ld + c] = i < A_T && j >= 0 && j <= i ? K_SCALE * d[e] : 0.f;
		}
	}
}

/*
 * P.V of one key tile on the tensor cores. P is [HPB][BQ][BK] float (0
 * outside the causal triangle); per head it is rounded to the operand type
 * into Ps and V's rows j0.. staged into Vs (rows past T zero). Without post
 * steps, earlier sums are first rescaled by A. Ends with a barrier.
 */
__device__ void pv_tile_tc(const mta_args &a, unsigned short *tc, int b, int h0, int j0,
			   const float *P, const float *A, float (&acc)[ACC_ROWS][ACC_COLS])
{
	const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, g = lane >> 2, t4 = lane & 3;
	unsigned short *Vs = tc + TC_QK, *Ps = Vs + K_BK * DS;
	const bool vec = vec_ok(a);
	(void)A;
	/* Unrolled over heads, so each head visits only the accumulator slots
	 * that can hold its tiles (a compile-time range), not every slot with a
	 * run-time test: that kept all of them live around every head's mma and
	 * held the paper's configuration at the 255-register cap. */
#pragma unroll
	for (int hh = 0; hh < K_HPB; hh++) {
		const int h = h0 + hh;
		stage_rows(Vs, a.v + b * a.sv[0] + (h / GQA) * a.sv[2], a.sv[1], /* @model st=3 */
			   j0, K_BK, K_BK, A_T, vec);
		mta_cp_commit();
		for (int e = threadIdx.x; e < K_BQ * K_BK; e += NT) /* @model v12.pround */
			Ps[e / K_BK * PS + e % K_BK] = to_op(P[hh * K_BQ * K_BK + e]);
		mta_cp_wait(0);
		__syncthreads();
#pragma unroll
		for (int k = hh * TPH / K_WARPS; k <= ((hh + 1) * TPH - 1) / K_WARPS; k++) { /* @model v12.pvk */
			const int tile = warp + k * K_WARPS;
			if (k >= ACC_ROWS || tile / TPH != hh)
				continue; /* warp-uniform */
			const int m0 = tile % TPH / NT8 * 16, n0 = tile % NT8 * 8;
#if !POST
			acc[k][0] *= A[hh * K_BQ + m0 + g];
			acc[k][1] *= A[hh * K_BQ + m0 + g];
			acc[k][2] *= A[hh * K_BQ + m0 + g + 8];
			acc[k][3] *= A[hh * K_BQ + m0 + g + 8];
#endif
#pragma unroll
			for (int kk = 0; kk < K_BK; kk += 16) {
				unsigned af[4], bf[2];
				mta_ldsm_x4(af, Ps + (m0 + (lane & 15)) * PS + kk + (lane >> 4) * 8);
				mta_ldsm_x2_t(bf, Vs + (kk + (lane & 15)) * DS + n0);
				mma(acc[k], af, bf);
			}
		}
		__syncthreads();
	}
	(void)g;
	(void)t4;
}

/*
 * Write head hh's accumulators as float rows [BQ][D] into Ob, for the
 * epilogue that reads a row per warp. Called by every thread; ends with a
 * barrier.
 */
__device__ void acc_to_smem(int hh, const float (&acc)[ACC_ROWS][ACC_COLS], float *Ob)
{
	const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, g = lane >> 2, t4 = lane & 3;
#pragma unroll
	for (int k = 0; k < ACC_ROWS; k++) {
		const int tile = warp + k * K_WARPS;
		if (tile >= NTILE || tile / TPH != hh)
			continue;
		const int m0 = tile % TPH / NT8 * 16, n0 = tile % NT8 * 8;
#pragma unroll
		for (int e = 0; e < 4; e++) {
			const int r = m0 + g + 8 * (e >> 1), c = n0 + 2 * t4 + (e & 1);
			if (c < K_D)
				Ob[r * K_D + c] = acc[k][e];
		}
	}
	__syncthreads();
}

#if K_CQ && K_ALGO == 1
/*
 * algo 1: the pre-softmax convolution folded into the logit product. It is
 * linear in q and k:
 *   sum_{a,b} w[a,b] Z[i-QR+a, j-ok+b]
 *     = s * sum_a q[i-QR+a] . Kc_a[j],   Kc_a[j] = sum_b w[a,b] k[j-ok+b]
 * wherever no tap reaches past the causal mask, i.e. j-ok+(ck-1) <= i-QR,
 * j <= i - QR - (ck-1-ok) (taps with rows i-QR+a < 0 read zero q rows and
 * columns outside [0, T) zero k rows, as Z is 0 there). That is a product
 * of q rows stacked over a with Kc stacked over a (depth cq*D) on the
 * tensor cores. Logits whose taps reach past the mask take the exact Z path
 * (algo 0's code): tiles wholly off the diagonal band are only folded, tiles
 * that straddle its edge run both and keep each logit's own, tiles on the
 * diagonal only the exact path. Kc_a is summed in float and rounded to the
 * operand type, one kernel row a at a time.
 */
#define FT ((R16(RP) / 16 * (NF / 8) + K_WARPS - 1) / K_WARPS)

/*
 * Whether logit (i, j) is folded: all its taps inside the causal triangle,
 * j - ok + (ck-1) <= i - QR. The decision is the logit's own, so pass 1 and
 * pass 2 (whose key windows differ: pass 2's reaches OK2 keys left and
 * KP-OK2 right of its tile) fold the same logits; a decision per tile made
 * the two passes disagree on the logits near a tile's edge, and a row's
 * probabilities no longer summed to one (test cuda_emu_tc_fold_passes_agree).
 */
__device__ __forceinline__ bool folded(int i, int j)
{
	return j - i <= -(QR + KR - OK1);
}

/* For the tile rows rP0.., columns cP0..cP0+ncols-1: 2 when every logit is
 * folded, 1 when some are, 0 when none is. */
__device__ __forceinline__ int fold_kind(int rP0, int cP0, int ncols)
{
	return folded(rP0, cP0 + ncols - 1) ? 2 : folded(rP0 + RP - 1, cP0) ? 1 : 0;
}

/*
 * Sh[r*CP + c] (r < RP, c < ncols) for head h from pipeline stage s, whose
 * q rows start QR rows above rP0 and k rows OK1 columns left of cP0 (as
 * stage_qk put them). Called by every thread; ends with a barrier.
 */
__device__ void fold_tile(const mta_args &a, const unsigned short *tc, int s, int h, int ncols,
			  float *Sh)
{
	const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, g = lane >> 2, t4 = lane & 3;
	const unsigned short *Qs = tc + s * (MR + NC) * DS, *Ks = Qs + MR * DS;
	unsigned short *Kc = (unsigned short *)tc + TC_QK + K_BK * DS + K_BQ * PS;
	const float *w = a.kq_pre + h * (K_CQ * K_CK);
	float acc[FT][4];
#pragma unroll
	for (int k = 0; k < FT; k++)
		acc[k][0] = acc[k][1] = acc[k][2] = acc[k][3] = 0.f;
#pragma unroll 1
	for (int u = 0; u < K_CQ; u++) { /* @model v12.cq */
		for (int e = threadIdx.x; e < NF * DK; e += NT) { /* @model v12.kc */
			const int c = e / DK, d = e % DK;
			float x = 0.f;
			if (c < ncols)
#pragma unroll
				for (int t = 0; t < K_CK; t++)
					x += w[u * K_CK + t] * ld((const elem_t *)Ks + (c + t) * DS + d);
			Kc[c * DS + d] = to_op(x);
		}
		__syncthreads();
#pragma unroll
		for (int k = 0; k < FT; k++) { /* @model v12.ft */
			const int tile = warp + k * K_WARPS;
			if (tile >= R16(RP) / 16 * (NF / 8))
				break; /* warp-uniform */
			const int m0 = tile / (NF / 8) * 16, n0 = tile % (NF / 8) * 8;
#pragma unroll
			for (int kk = 0; kk < DK; kk += 16) {
				unsigned af[4], bf[2];
				mta_ldsm_x4(af, Qs + (m0 + u + (lane & 15)) * DS + kk + (lane >> 4) * 8);
				mta_ldsm_x2(bf, Kc + (n0 + (lane & 7)) * DS + kk + ((lane >> 3) & 1) * 8);
				mma(acc[k], af, bf);
			}
		}
		__syncthreads();
	}
#pragma unroll
	for (int k = 0; k < FT; k++) {
		const int tile = warp + k * K_WARPS;
		if (tile >= R16(RP) / 16 * (NF / 8))
			break;
		const int m0 = tile / (NF / 8) * 16, n0 = tile % (NF / 8) * 8;
#pragma unroll
		for (int e = 0; e < 4; e++) {
			const int r = m0 + g + 8 * (e >> 1), c = n0 + 2 * t4 + (e & 1);
			if (r < RP && c < ncols)
				Sh[r * CP + c] = K_SCALE * acc[k][e];
		}
	}
	__syncthreads();
}
#endif
