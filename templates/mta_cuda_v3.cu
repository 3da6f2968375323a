/*
 * mta_cuda_v3.cu: kernel family v3 of the fused MTA forward (MTA.md),
 * designed against the hardware's floor for the paper's configuration and
 * its neighbours (docs/gpu/design.md says why each choice). gen/cuda/cudagen.c
 * splices mta_cuda_mma.cu and then this text into templates/mta_cuda.cu at
 * its mark; the v1/v2 kernel after the mark is then compiled out, and this
 * file's mta_fwd is the kernel. It uses the prelude of mta_cuda.cu (the
 * constants, struct mta_args, ld, warp_sum, finish_row).
 *
 * A block owns batch b, BQ query rows from i0 and HPB heads from h0 (whole
 * head-mixing groups), with two passes when post-softmax steps exist (pass
 * 1: row statistics; pass 2: probabilities, post steps, P.V) and one pass
 * with an online softmax otherwise, as v1. What differs:
 *
 *  - Sliding key window: every key tile computes only BK new columns of the
 *    raw logits Z, of the pre-softmax logits S and of the probabilities P;
 *    the KR (pre) and KP (post) halo columns the convolutions need are
 *    carried over from the previous tile (Zc, and the first KP columns of P),
 *    so no column is computed twice. One or two "pre-roll" tiles before the
 *    first fill the carries.
 *  - Pre-softmax convolution on the tensor cores: for kernel row u,
 *    S^T += T_u Z_u^T, with T_u the 16 x 16*TK Toeplitz band of row u's
 *    taps (mma A operand, built from a table of f16 weight pairs, the same
 *    for every column tile) and Z_u the raw logits shifted down u rows
 *    (B operand, ldmatrix). Z and the taps are rounded to f16 (11-bit
 *    significand; logits and taps beyond +-65504 saturate): the one rounding
 *    this family adds to v1's arithmetic.
 *  - The post-softmax convolution the same way on the probabilities, kept
 *    in f16 (P is in [0, 1]: 11 significant bits, no range to lose), with
 *    its taps rounded to f16.
 *  - Head mixing (pre and post) per position from registers, weights from
 *    shared memory.
 *  - P.V on the tensor cores, each warp issuing only the accumulator tiles
 *    it holds (tiles dealt round robin; per head a compile-time range of
 *    slots and a warp-uniform test), none of another head's.
 *  - Weights live in shared memory, loaded once per block.
 *
 * Shared memory (bytes, each region 16-byte aligned; gen/cuda/cudagen.c
 * computes the same, mta_cuda_smem_bytes): WT (f16 tap pairs) | W2 (the post
 * convolution's) | WM1 | WM2 (mixing) | STG (V_NSTG stages of q and k rows; V_VB
 * groups of V rows in P.V; one head's outputs in the epilogue) | Z (raw logits of every head;
 * the rounded P tile for P.V once the convolution has read Z) | ZC | S
 * (pre-softmax logits; post-convolved P in pass 2) | P (f16) | ST (M, L, A) | Q
 * (in a cluster where it fits, V_QRES: the block's q rows, staged once).
 */

#if K_DTYPE == 0
#error "cuda v3 multiplies bf16/f16 operands on the tensor cores"
#endif

/*
 * Clusters (docs/gpu/design.md, "The cluster design"): with K_CS > 1 a
 * cluster of K_CS blocks, consecutive in x, holds one query tile and the
 * K_CH = K_CS * HPB heads of a 16- or 32-head mixing group, HPB heads a
 * block.
 * q.k, both convolutions and P.V run per head (each block its own heads);
 * the mixings and the softmax run per position (each block a K_CS-th of the
 * tile's rows, for all K_CH heads), so a tile changes hands four times: the
 * pre-softmax logits and the post-convolved P go to their rows' owners, P
 * and P.V's operand to their heads' owners, stored into the owner's shared
 * memory (mapa) and ordered by a cluster barrier. Only the paper's family
 * (both convolutions, both mixings on the tensor cores) takes it.
 */
#define K_CH (K_CS * K_HPB)              /* heads of the cluster (of the block when K_CS = 1) */
#if K_CS > 1
#if !(K_CQ && K_CQ2 && K_HPRE && K_HPOST && (K_CH == 16 || K_CH == 32))
#error "cuda v3 clusters hold both convolutions and both mixings of 16 or 32 heads"
#endif
#endif

/* ---- sizes -------------------------------------------------------------- */
#define V_MAX(a, b) ((a) > (b) ? (a) : (b))
#define V_MIN(a, b) ((a) < (b) ? (a) : (b))
#define V_R4(x) (((x) + 3) / 4 * 4)
#define V_AL(x) (((x) + 15) / 16 * 16)
#define V_DK R16(K_D)                    /* k extent of q.k, zero padded */
#define V_DS (V_DK + 8)                  /* staged row stride (elements) */
#define V_NT8 (R8(K_D) / 8)              /* n8 tiles of one head's outputs */
#define V_MT (K_BQ / 16)                 /* m16 tiles of the output rows */
/*
 * Output accumulators: the HPB * TPH 16x8 tiles of (head, query, d), in
 * units of V_PW tiles side by side in d (two when the n8 tiles pair up: a
 * unit's P.V reads P's fragments once for both), are dealt to the warps
 * round robin, unit slot k of warp w holding unit k*WARPS + w (tiles
 * V_PW*unit ..), accumulator slots V_PW*k ..; so every warp holds V_AK
 * accumulator tiles and no register is idle. A head's units lie in the unit
 * slots V_K0(hh) .. V_K1(hh) (compile-time); which of those a warp holds is
 * a warp-uniform test.
 */
#define V_TPH (V_NT8 * V_MT)             /* tiles per head */
#define V_AK1 ((K_HPB * V_TPH + K_WARPS - 1) / K_WARPS) /* accumulator tiles, dealt singly */
/*
 * A warp's columns of q.k, in pairs of n8 tiles: 16, or 32 when every warp
 * still gets columns and the registers allow (D <= 96, at most 8 warps: 255
 * a thread). Every warp of q.k reads all the staged q rows, so wide tiles
 * read q half as often, but at BK = 32 they leave q.k (phase A, a head a
 * step) to one warp, whose work then outlasts the copy of the next head's
 * rows: two warps on 16 columns each take half the time for half again the
 * shared-memory bytes.
 */
#define V_QN (V_QPAIR || (K_BK % 32 == 0 && K_BK / 32 >= K_WARPS && V_ZM <= 32 && \
			V_AK1 * 4 <= 96 && NT <= 256) ? 2 : 1)
/*
 * In a cluster of four (q resident: a stage holds one head's k rows, and
 * four fit), phase A takes two heads a step (V_QH, below) and q.k 32
 * columns a warp over two m16 tiles of rows: a head's q rows are read once
 * and its k rows three times (16 columns over ranges of two tiles, one head
 * a step, read q twice and k three times: 48 KB a head and tile at the
 * paper's configuration, now 33 KB), and the two heads' units keep six of
 * the eight warps at work.
 */
#define V_QPAIR (K_CS >= 4 && K_BK % 32 == 0 && K_HPB % 2 == 0)
/* tiles a unit: two when the n8 tiles pair up, unless q.k's wide tiles
 * already take the registers (wide tiles and pairs together left the paper's
 * variant, when it had wide tiles, under 16 registers of headroom; a cluster
 * of four has them) */
#define V_PW (V_NT8 % 2 == 0 && (V_QN == 1 || V_QPAIR) ? 2 : 1)
#define V_UPH (V_TPH / V_PW)             /* units per head */
#define V_AK (V_PW * ((K_HPB * V_UPH + K_WARPS - 1) / K_WARPS))
#define V_K0(hh) ((hh) * V_UPH / K_WARPS)
#define V_K1(hh) ((((hh) + 1) * V_UPH - 1) / K_WARPS)
/*
 * Where a head's units divide evenly among the warps (V_UPW each) and a
 * warp's V_UPW consecutive units lie in one m16 row of tiles (a cluster of
 * four at the paper's configuration: 24 units a head, 3 a warp, 6 a row),
 * the warps hold consecutive units instead (V_PVB: unit warp * V_UPW + j of
 * head hh in slot V_K0(hh) + j), so that P.V loads each P fragment once for
 * the warp's units of a head, not once a unit (a third of P.V's
 * shared-memory bytes at the paper's configuration).
 */
#define V_UPW (V_UPH / K_WARPS)
/* (at least two units a warp and head: with one there is nothing to share,
 * and the other loop's form left a D=64 tile of 16 rows 33 registers fewer) */
#define V_PVB (V_UPH >= 2 * K_WARPS && V_UPH % K_WARPS == 0 && V_NT8 % V_PW == 0 && \
	       (V_NT8 / V_PW) % V_MAX(V_UPW, 1) == 0)
/* the unit of head hh that this warp holds in unit slot k (none outside
 * 0 .. V_UPH - 1) */
#define V_UNIT(k, hh, warp) \
	(V_PVB ? (warp) * V_UPW + (k) - V_K0(hh) : (k) * K_WARPS + (warp) - (hh) * V_UPH)
#define V_ZM (K_CQ ? R16(RZ) : R16(RP))  /* q rows staged, rows of the q.k product */
#define V_NR8 ((RP + 7) / 8)             /* n8 tiles over the conv's output rows */
#if K_CQ
#define V_TK ((15 + K_CK + 15) / 16)     /* k-steps of the Toeplitz band */
#define V_ZR (8 * V_NR8 + QR)            /* rows of Z the convolution reads */
#define V_ZS (R8(V_MAX(KR + K_BK, K_BK - 16 + 16 * V_TK)) + 8) /* Z row stride */
#define V_WTN (16 * V_TK + 16)           /* tap pairs per kernel row */
#else
#define V_TK 0
#define V_ZR 0
#define V_ZS 0
#define V_WTN 0
#endif
#define V_SS (K_BK + 4)                  /* row stride of S (floats) */
#if K_CQ2
#define V_TK2 ((15 + K_CK2 + 15) / 16)   /* k-steps of the post convolution's band */
#define V_PS (R8(V_MAX(KP + K_BK, K_BK - 16 + 16 * V_TK2)) + 8) /* P row stride (f16) */
#define V_WTN2 (16 * V_TK2 + 16)
#else
#define V_TK2 0
#define V_PS (K_BK + 8)
#define V_WTN2 0
#endif
#define V_PBS (K_BK + 8)                 /* row stride of the rounded P tile */
/* its head stride: 4 words past a multiple of 32, so that stores of the same
 * (row, column) of 8 heads fall in 8 bank groups (v3_pmix) */
#define V_PBH (K_BQ * V_PBS + 8)
#define V_GS (K_HPOST == 1 ? K_HC : K_CH) /* post-mixing group size */

#define SZ_WT (K_CQ ? K_HPB * K_CQ * V_WTN * 4 : 0)
#define SZ_W2 (K_CQ2 ? K_HPB * K_CQ2 * V_WTN2 * 4 : 0)
#define SZ_WM1 (K_HPRE ? K_CH * K_CH * 4 : 0)
#define SZ_WM2 (K_HPOST ? K_CH * V_GS * 4 : 0)
/*
 * q resident: in a cluster a block's few heads' q rows (4 x 80 rows at the
 * paper's bq=64) fit beside the rest, so they are staged once (every pass
 * and key tile reads the same rows) and a stage buffer holds a head's k
 * rows alone: phase A's copy of a head drops from q and k (21 KB at the
 * paper's cs=4) to k (7 KB), and the L2 traffic of restaging q with it.
 * Where two stages of k fit beside it (V_QRES, below); the sizes take the
 * choice as q.
 */
#define SZ_QKQ(n, q) ((n) * ((q) ? K_BK : V_ZM + K_BK) * V_DS * 2)
#define SZ_QQ(q) ((q) ? K_HPB * V_ZM * V_DS * 2 : 0)
#define SZ_Z (K_CQ ? K_HPB * V_ZR * V_ZS * 2 : 0)
#define V_KR2 ((KR + 1) / 2)            /* carried Z columns, in pairs */
/* SZ_ZC: below, once V_ZIN is known */
/*
 * Head mixing on the tensor cores when a block (or cluster) holds 16 or 32
 * heads: the logits (pre: split into f16 hi + lo) and the post-convolved P
 * (f16) go to S as [head][position], position r*BK + c, the B operand of
 * m16n8k16 products over 8 positions with the mixing matrix as A: one for
 * 16 heads, 2 x 2 for 32 (two m16 tiles of output heads, V_MT2, by two k16
 * steps of input heads; grouped post mixing skips the zero blocks).
 */
#define V_TCH (K_CH == 16 || K_CH == 32)
#define V_MT2 (K_CH / 16)
#define V_TCMIX (K_HPRE && V_TCH)
#define V_TCMIXP (K_HPOST && V_TCH && K_CQ2)
#define V_S32 (!V_TCMIX || (K_CQ2 && !V_TCMIXP)) /* some phase keeps S as floats */
/*
 * The tensor-core mixings' operands in S: per head a tile of positions (row
 * r, column c at r * V_SR + c), heads V_SH (pre: RP rows) or V_SH2 (post:
 * BQ rows) apart, f16; the mma's B operand is read across 8 heads by
 * ldmatrix.trans. A row is BK + 8 halves, so the 4 rows a store of the
 * convolution's accumulators touches start 8 banks apart; a head is 8
 * halves past a multiple of 16 (4 words past a multiple of 8), so the 8
 * head rows of an ldmatrix start in 8 different groups of 4 banks: neither
 * conflicts. (Positions of 16 heads in 32 bytes, the layout before, put a
 * store's 32 lanes in 4 banks: 8 wavefronts a store.)
 */
#define V_SR (K_BK + 8)
/* rows a block mixes: of the RP logit rows, and of the BQ output rows (in a
 * cluster the block of rank x owns rows x * V_RPC .., x * V_BQC ..; even, so
 * that a lane's two rows of a convolution's output have one owner) */
#define V_RPC (K_CS > 1 ? (RP + 2 * K_CS - 1) / (2 * K_CS) * 2 : RP)
#define V_BQC (K_BQ / K_CS)
#define V_SH (R16(V_RPC * V_SR) + 8)
#define V_SH2 (R16(V_BQC * V_SR) + 8)
#define SZ_P2 (V_TCMIXP ? K_CH * V_SH2 * 2 : 0) /* the post-convolved P, f16 */
#define SZ_S V_MAX(V_MAX(V_S32 ? K_HPB * RP * V_SS * 4 : 0, V_TCMIX ? 2 * K_CH * V_SH * 2 : 0), \
		   SZ_P2)
#define SZ_P (POST ? K_HPB * RP * V_PS * 2 : 0)
#define SZ_PB (K_HPB * V_PBH * 2)
#define SZ_ST ((2 * K_CH * V_RPC + K_HPB * K_BQ) * 4) /* M, L of the rows mixed; A */
/* V rows in the same area: V_VB buffers (three when the area holds three
 * heads' rows) of V_VG heads each */
#define V_VCAPQ(n, q) (SZ_QKQ(n, q) / (K_BK * V_DS * 2))
#define V_VB1Q(n, q) (V_VCAPQ(n, q) >= 3 ? 3 : 2)
#define V_VG1Q(n, q) V_MIN(K_HPB, V_MAX(1, V_VCAPQ(n, q) / V_VB1Q(n, q)))
#define SZ_STGQ(n, q) V_MAX(V_MAX(SZ_QKQ(n, q), V_VB1Q(n, q) * V_VG1Q(n, q) * K_BK * V_DS * 2), \
			   K_BQ * K_D * 4)
/*
 * The rounded P tile (P.V's operand) goes into S past the post-convolved P
 * when both mixings run on the tensor cores and it fits (the paper's
 * configuration): then nothing overwrites Z, which keeps its carried columns
 * in place, shifted left a tile (V_ZIN), instead of saving them to ZC and
 * back (two shared copies a tile) while the tile lives in Z.
 */
/* (not in a cluster: the operand would share S with the next tile's
 * logits, which peers store before this block's P.V is done) */
#define V_PBINS (V_TCMIX && V_TCMIXP && K_CS == 1 && V_AL(SZ_P2) + SZ_PB <= SZ_S)
#define V_ZIN (K_CQ && V_PBINS)
#define V_ZROWS (K_HPB * V_ZR)          /* rows of Z, padding included */
#define SZ_ZC (K_CQ && !V_ZIN ? V_ZROWS * V_KR2 * 4 : 0)
#define SZ_PBX (!V_PBINS && SZ_PB > SZ_Z ? SZ_PB : 0)  /* P tile outside Z when Z is too small */
/*
 * In a cluster, P (pass 2) and P.V's operand go to their heads' blocks by
 * st.async, a 16-bit pair a word (KP even), each receiver counting the
 * bytes its peers send on an mbarrier of its own (V_XA: two, SZ_MB), and
 * waiting on it instead of on a cluster barrier, whose release compiles to
 * a GPU-wide fence (MEMBAR.ALL.GPU; docs/gpu/design.md). sm_90 (and the
 * emulator): the sm_80 build of a cluster variant only traps.
 */
#if K_CS > 1 && KP % 2 == 0 && (defined(MTA_EMU) || (defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900))
#define V_XA 1
#else
#define V_XA 0
#endif
/*
 * The convolutions' outputs too (V_XC), as words of two columns of a row,
 * where every block owns logit rows: the chain of waits that keeps a
 * peer's bytes out of the phase before (v3_pass) runs through every block.
 */
#define V_XC (V_XA && RP > (K_CS - 1) * V_RPC)
#define SZ_MB (K_CS > 1 && KP % 2 == 0 ? 40 : 0) /* five mbarriers (v3_mb) */
#define V_TOTALQ(n, q) (V_AL(SZ_WT) + V_AL(SZ_W2) + V_AL(SZ_WM1) + V_AL(SZ_WM2) + \
			V_AL(SZ_STGQ(n, q)) + V_AL(SZ_Z) + V_AL(SZ_ZC) + V_AL(SZ_S) + V_AL(SZ_P) + \
			V_AL(SZ_PBX) + V_AL(SZ_ST) + V_AL(SZ_QQ(q)) + SZ_MB)
/* q resident: in a cluster, where it leaves room for two stages */
#define V_QRES (K_CS > 1 && V_TOTALQ(2, 1) <= 232448)
#define V_QST (V_QRES ? 0 : V_ZM)       /* q rows in a stage buffer */
#define SZ_Q SZ_QQ(V_QRES)
#define SZ_QK(n) SZ_QKQ(n, V_QRES)
#define V_VCAP(n) V_VCAPQ(n, V_QRES)
#define V_VB1(n) V_VB1Q(n, V_QRES)
#define V_VG1(n) V_VG1Q(n, V_QRES)
#define SZ_STG(n) SZ_STGQ(n, V_QRES)
#define V_TOTAL(n) V_TOTALQ(n, V_QRES)
/*
 * q/k stages: four when they fit the largest block of any target (sm_90)
 * and leave as many blocks on an SM's 228 KB as two stages do, else three,
 * else two or one. Phase A keeps V_NSTG - 1 heads' copies in flight while a
 * head's q.k runs: one head's copy (about 12 KB at the paper's
 * configuration) takes longer to land than its q.k takes.
 */
#define V_BPS(n) (233472 / (V_TOTAL(n) + 1024)) /* blocks an SM's shared memory holds */
#if V_TOTAL(4) <= 232448 && V_BPS(4) >= V_BPS(2)
#define V_NSTG 4
#elif V_TOTAL(3) <= 232448 && V_BPS(3) >= V_BPS(2)
#define V_NSTG 3
#elif V_TOTAL(2) <= 232448
#define V_NSTG 2
#else
#define V_NSTG 1
#endif
/* heads a step of phase A: two where the pairing above applies and four
 * stages hold two steps' k rows, else one */
#define V_QH (V_QPAIR && V_NSTG >= 4 ? 2 : 1)
#define V_VG V_VG1(V_NSTG)
#define V_VB V_VB1(V_NSTG)
#define OFF_WT 0
#define OFF_W2 (OFF_WT + V_AL(SZ_WT))
#define OFF_WM1 (OFF_W2 + V_AL(SZ_W2))
#define OFF_WM2 (OFF_WM1 + V_AL(SZ_WM1))
#define OFF_STG (OFF_WM2 + V_AL(SZ_WM2))
#define OFF_Z (OFF_STG + V_AL(SZ_STG(V_NSTG)))
#define OFF_ZC (OFF_Z + V_AL(SZ_Z))
#define OFF_S (OFF_ZC + V_AL(SZ_ZC))
#define OFF_P (OFF_S + V_AL(SZ_S))
#define OFF_PBX (OFF_P + V_AL(SZ_P))
#define OFF_ST (OFF_PBX + V_AL(SZ_PBX))
#define OFF_PB (V_PBINS ? OFF_S + V_AL(SZ_P2) : SZ_PBX ? OFF_PBX : OFF_Z)
#define OFF_Q (OFF_ST + V_AL(SZ_ST))
#define OFF_MB (OFF_Q + V_AL(SZ_Q))      /* V_XA's mbarriers (v3_mb) */
#define SMEM_BYTES V_TOTAL(V_NSTG)

/* Pass-2 probabilities' new columns start DP keys right of the output tile. */
#define DP (KP - OK2)

/* ---- helpers ------------------------------------------------------------ */
/* f16 of a float, saturating at +-65504 (the Toeplitz operands): one cvt. */
__device__ __forceinline__ unsigned short v3_f16(float x)
{
	return mta_f32_to_f16_sat(x);
}

/*
 * p in the shared memory of the cluster's block of rank `to` (its peer's
 * address, mapa); p itself without a cluster.
 */
template <typename T> __device__ __forceinline__ T *v3_at(T *p, int to)
{
#if K_CS > 1
	return mta_cluster_map(p, (unsigned)to);
#else
	(void)to;
	return p;
#endif
}
/* This block's rank in its cluster (0 without one). */
__device__ __forceinline__ int v3_rank(void)
{
#if K_CS > 1
	return (int)mta_cluster_rank();
#else
	return 0;
#endif
}
#if V_XA
/*
 * V_XA's mbarrier i of this block: 0 counts P's bytes, 1 P.V operand's;
 * with V_XC, 2 the logits' (the pre-softmax convolution's outputs), 3 the
 * post-convolved P's, and 4 (pass 1) its peers' word that they have read
 * their logit rows: this block may send the next tile's.
 */
__device__ __forceinline__ unsigned long long *v3_mb(int i)
{
	return (unsigned long long *)(mta_dyn_smem() + OFF_MB) + i;
}
/*
 * Word w for position pl (this block's address) of the block of rank to:
 * a plain store into this block, st.async into a peer, counted on its
 * mbarrier mb.
 */
__device__ __forceinline__ void v3_put_word(unsigned short *pl, int to, unsigned w, int mb)
{
	if (to == v3_rank())
		*(unsigned *)pl = w;
	else
		mta_st_async32(pl, (unsigned)to, w, v3_mb(mb));
}
/*
 * Wait until this block's mbarrier mb has every byte its peers send it
 * this tile (thread 0 expects them; bit mb of phases is the parity of the
 * phase waited for), then for the block's own stores and reads: a barrier. The
 * peers' stores of the next tile come after a cluster barrier this block
 * reaches only after this wait, so a phase never takes another's bytes.
 */
__device__ __forceinline__ void v3_xwait(int mb, unsigned bytes, unsigned &phases)
{
	if (threadIdx.x == 0)
		mta_mbar_expect(v3_mb(mb), bytes);
	mta_mbar_wait(v3_mb(mb), phases >> mb & 1u);
	phases ^= 1u << mb;
	__syncthreads();
}
/* The logit rows this block owns (of RP; V_RPC but for the last block). */
#define V_OWNR V_MAX(V_MIN(RP - v3_rank() * V_RPC, V_RPC), 0)
#if V_XC
/*
 * Pass 1, after the mixing has read this block's logits: a block barrier,
 * then (more: a tile follows) one word to each peer, an arrival on its
 * mbarrier 4, that it may send its next tile's logits here. Release at the
 * CTA scope, as CUTLASS's cluster pipelines free a consumer's buffer: it
 * orders reads before a peer's writes, with no GPU-wide fence.
 */
__device__ __forceinline__ void v3_xread(bool more)
{
	__syncthreads();
	if (more && threadIdx.x < K_CS - 1)
		mta_mbar_arrive_peer(v3_mb(4), (unsigned)((v3_rank() + 1 + threadIdx.x) % K_CS));
}
/* Pass 1, before a tile's logits go to the peers: every peer has read the
 * tile before's (v3_xread). */
__device__ __forceinline__ void v3_xfree(unsigned &phases)
{
	mta_mbar_wait(v3_mb(4), phases >> 4 & 1u);
	phases ^= 1u << 4;
}
#endif
#endif
/* After a phase that stores into peers' shared memory: the cluster's
 * barrier (release, acquire); else the block's. */
__device__ __forceinline__ void v3_xsync(void)
{
#if K_CS > 1
	mta_cluster_sync();
#else
	__syncthreads();
#endif
}

/*
 * Store pre-softmax logit (hh, r, c): floats [hh][r][c], or f16 hi and lo
 * in the mixing operand ([head][row][column]). Without a cluster: a
 * cluster's convolutions store into their rows' owners themselves
 * (v3_toeplitz).
 */
#if V_TCMIX
/* A logit into the mixing operand at s16: f16 hi there, lo K_CH heads on. */
__device__ __forceinline__ void v3_put_hilo(unsigned short *s16, float x)
{
	const unsigned short hi = v3_f16(x);
	s16[0] = hi;
	s16[K_CH * V_SH] = v3_f16(x - mta_f16_to_f32(hi));
}
#endif
__device__ __forceinline__ void v3_put_s(void *S, int hh, int r, int c, float x)
{
#if V_TCMIX
	v3_put_hilo((unsigned short *)S + hh * V_SH + r * V_SR + c, x);
#else
	((float *)S)[hh * RP * V_SS + r * V_SS + c] = x;
#endif
}

/* Store post-convolved probability (hh, r, c): floats, or f16 in the
 * mixing operand (as v3_put_s, without a cluster). */
__device__ __forceinline__ void v3_put_p2(void *S, int hh, int r, int c, float x)
{
#if V_TCMIXP
	((unsigned short *)S)[hh * V_SH2 + r * V_SR + c] = mta_f32_to_f16(x);
#else
	((float *)S)[hh * RP * V_SS + r * V_SS + c] = x;
#endif
}

/* Whether q, k, v allow 16-byte copies (base and strides), uniform per block. */
__device__ __forceinline__ bool v3_vec(const mta_args &a)
{
	unsigned long long m = (unsigned long long)a.q | (unsigned long long)a.k |
			       (unsigned long long)a.v;
	for (int i = 0; i < 3; i++)
		m |= (unsigned long long)(a.sq[i] | a.sk[i] | a.sv[i]) * 2;
	return K_D % 8 == 0 && m % 16 == 0;
}

/*
 * Stage rows t0 .. t0+n-1 of one head of x (row stride st) as rows of
 * stride V_DS into dst, then zero rows up to npad: rows outside [0, T) and
 * columns past D are zero. A thread keeps one 16-byte column chunk and
 * walks rows, so the loop has no division; whole chunks go by cp.async when
 * vec (the tensors allow 16-byte copies), else element by element. The
 * caller commits.
 */
#define V_CHK (V_DK / 8)                 /* 16-byte chunks per staged row */
__device__ void v3_stage(unsigned short *dst, const elem_t *x, long long st, int t0, int n,
			 int npad, int T, bool vec)
{
	constexpr int ROWS = NT / V_CHK; /* rows a pass of the block covers */
	if (threadIdx.x >= ROWS * V_CHK)
		return;
	const int c = threadIdx.x % V_CHK * 8, r0 = threadIdx.x / V_CHK;
	/* pointers walk the rows: no index arithmetic in the loop */
	const elem_t *src = x + (long long)(t0 + r0) * st + c;
	unsigned short *d = dst + r0 * V_DS + c;
	int t = t0 + r0;
	if (vec && c + 8 <= K_D) {
		/* whole chunks; rows outside [0, T) and past n zero-filled by cp.async */
#pragma unroll 1
		for (int r = r0; r < npad; r += ROWS) { /* @model v3.stage */
			const bool in = r < n && t >= 0 && t < T;
			mta_cp_async16z(d, in ? src : x, in);
			src += ROWS * st;
			d += ROWS * V_DS;
			t += ROWS;
		}
		return;
	}
#pragma unroll 1
	for (int r = r0; r < npad; r += ROWS) { /* the chunk D ends in, or unaligned: @model v3.stagepart */
		const bool in = r < n && t >= 0 && t < T;
		for (int u = 0; u < 8; u++)
			d[u] = in && c + u < K_D ? ((const unsigned short *)src)[u] : 0;
		src += ROWS * st;
		d += ROWS * V_DS;
		t += ROWS;
	}
}

/* Stage head h's q rows from rq0 and k rows from zk0 (BK of them) into buffer s. */
__device__ __forceinline__ void v3_stage_qk(const mta_args &a, unsigned short *stg, int b, int h,
					    int rq0, int zk0, int s, bool vec)
{
	unsigned short *Qs = stg + s * (V_QST + K_BK) * V_DS, *Ks = Qs + V_QST * V_DS;
	if (!V_QRES)
		v3_stage(Qs, a.q + b * a.sq[0] + h * a.sq[2], a.sq[1], /* @model st=1 */
			 rq0, K_CQ ? RZ : RP, V_ZM, A_T, vec);
	v3_stage(Ks, a.k + b * a.sk[0] + (h / GQA) * a.sk[2], a.sk[1], /* @model st=2 */
		 zk0, K_BK, K_BK, A_T, vec);
}

/*
 * Staging with 16-byte copies (vec), planned: the first V_WQ warps stage a
 * head's q rows (V_ZM rows of V_CHK chunks), the others a tile's k rows (BK
 * rows); a thread's chunks are e = lt + s*n (s < V_PS_N; lt its index among
 * the n threads of its role), chunk e is row e / V_CHK, column
 * e % V_CHK * 8. Each keeps its destination and a source pointer, set once a
 * pass (q) or a key tile (k) and stepped a head at a time, so staging a head
 * is a cp.async and a pointer step a chunk: v3_stage's per-head index
 * arithmetic (64-bit row products) was a fifth of v3's instructions at the
 * paper's configuration. The roles split the warps in proportion to the
 * chunks, so at the paper's configuration (384 chunks each) every slot of
 * every warp copies. A chunk whose row is outside [0, T), past the rows
 * needed or past D is zero-filled, its pointer on the head's row 0 (a valid
 * address, never read); a destination of -1 is no chunk.
 */
/*
 * Chunk e of a head's staged rows (rows in blocks of 8): its row r and first
 * column c. Rows are V_CHK + 1 chunks apart (odd, for ldmatrix), so 8 lanes
 * taking row-major chunks across a row's end put two chunks 8 slots apart,
 * one bank group (cp.async: 16 bytes a lane, 8 lanes a wavefront). With
 * 4 | V_CHK, 8 lanes take 4 chunks of row r and the same 4 of row r + 4
 * (4 (V_CHK + 1) = 4 mod 8 chunks on): 8 bank groups, and whole 32-byte
 * sectors of the source.
 */
__device__ __forceinline__ void v3_chunk(int e, int &r, int &c)
{
#if V_CHK % 4 == 0
	const int m = e >> 3, rem = m % V_CHK; /* V_CHK units of 8 chunks a block of 8 rows */
	r = 8 * (m / V_CHK) + rem / (V_CHK / 4) + 4 * (e >> 2 & 1);
	c = (4 * (rem % (V_CHK / 4)) + (e & 3)) * 8;
#else
	r = e / V_CHK;
	c = e % V_CHK * 8;
#endif
}

#define V_QCH (V_ZM * V_CHK)   /* q chunks a head */
#define V_KCH (K_BK * V_CHK)   /* k chunks a head and tile */
/* the plan needs a warp for each role; a one-warp block stages unplanned */
#define V_PLAN (K_WARPS >= 2)
/* (q resident: every warp stages k) */
#define V_WQ (V_QRES ? 0 : V_PLAN ? V_MIN(V_MAX((K_WARPS * V_QCH + (V_QCH + V_KCH) / 2) / (V_QCH + V_KCH), \
				    1), K_WARPS - 1) : 1)
#define V_PS_N (V_PLAN ? V_MAX(V_QRES ? 0 : (V_QCH + 32 * V_WQ - 1) / V_MAX(32 * V_WQ, 1), \
			       (V_KCH + 32 * (K_WARPS - V_WQ) - 1) / (32 * (K_WARPS - V_WQ))) : 1)
/* pl.ok and V's ok hold a bit a slot (gen/cuda/space.c keeps them to 32) */
static_assert(V_PS_N <= 32, "v3: more than 32 staging chunk slots a thread");
struct v3_plan {
	const char *base;       /* the next head's row 0 (q or k, by the warp's role) */
	unsigned o[V_PS_N];     /* source byte offsets from base: 0 when zero-filled */
	int d[V_PS_N];          /* destinations in a stage buffer (elements), -1 none */
	unsigned ok;            /* bit s: chunk s is copied, not zero-filled */
};

/*
 * Plan the chunks: a q warp's, rows rq0 + r (r < nq) of head h0 (q0: its row
 * 0), once a pass; a k warp's, rows zk0 + r (r < BK) of head h0 (k0), once a
 * tile. Offsets are 32-bit (fewer registers: the plan lives beside the
 * output accumulators); v3_off32 holds every row's offset under 2^31 bytes.
 */
__device__ __forceinline__ void v3_plan_q(v3_plan &pl, const elem_t *q0, long long sq, int rq0,
					  int nq, int T)
{
	if (threadIdx.x >= 32 * V_WQ)
		return;
	pl.ok = 0;
	pl.base = (const char *)q0;
#pragma unroll
	for (int s = 0; s < V_PS_N; s++) {
		const int e = threadIdx.x + s * 32 * V_WQ;
		int r, c;
		v3_chunk(e, r, c);
		const int t = rq0 + r;
		const bool ok = e < V_QCH && r < nq && c < K_D && t >= 0 && t < T;
		pl.d[s] = e < V_QCH ? r * V_DS + c : -1;
		pl.o[s] = ok ? (unsigned)(((long long)t * sq + c) * 2) : 0u;
		pl.ok |= (unsigned)ok << s;
	}
}
__device__ __forceinline__ void v3_plan_k(v3_plan &pl, const elem_t *k0, long long sk, int zk0,
					  int T)
{
	if (threadIdx.x < 32 * V_WQ)
		return;
	pl.ok = 0;
	pl.base = (const char *)k0;
#pragma unroll
	for (int s = 0; s < V_PS_N; s++) {
		const int e = threadIdx.x - 32 * V_WQ + s * 32 * (K_WARPS - V_WQ);
		int r, c;
		v3_chunk(e, r, c);
		const int t = zk0 + r;
		const bool ok = e < V_KCH && c < K_D && t >= 0 && t < T;
		pl.d[s] = e < V_KCH ? (V_QST + r) * V_DS + c : -1;
		pl.o[s] = ok ? (unsigned)(((long long)t * sk + c) * 2) : 0u;
		pl.ok |= (unsigned)ok << s;
	}
}

/* Whether the plans' 32-bit offsets hold every row of q, k and v (T rows). */
__device__ __forceinline__ bool v3_off32(const mta_args &a, int T)
{
	const long long lim = 1ll << 30; /* elements: 2^31 bytes */
	return a.sq[1] >= 0 && a.sk[1] >= 0 && a.sv[1] >= 0 && (long long)T * a.sq[1] + K_D < lim &&
	       (long long)T * a.sk[1] + K_D < lim && (long long)T * a.sv[1] + K_D < lim;
}

/*
 * Stage the next head's q rows and the tile's k rows into stage buffer s,
 * as planned, and step the source to the head after it (h: this head): q
 * by the head stride, k when the next head reads another kv head.
 */
__device__ __forceinline__ void v3_stage_plan(v3_plan &pl, const mta_args &a,
					      unsigned short *stg, int h, int s)
{
	unsigned short *buf = stg + s * (V_QST + K_BK) * V_DS;
#pragma unroll
	for (int x = 0; x < V_PS_N; x++)
		if (pl.d[x] >= 0)
			mta_cp_async16z(buf + pl.d[x], pl.base + pl.o[x], pl.ok >> x & 1);
	pl.base += 2 * (threadIdx.x < 32 * V_WQ ? a.sq[2] : (h + 1) % GQA == 0 ? a.sk[2] : 0);
}

/* After a tile's last head: the q source back on head h0. */
__device__ __forceinline__ void v3_plan_rewind(v3_plan &pl, const mta_args &a)
{
	if (threadIdx.x < 32 * V_WQ)
		pl.base -= 2 * K_HPB * a.sq[2];
}

/*
 * Stage head h's q rows and the tile's k rows (from key zk0) into stage
 * buffer s, and commit: as planned when vec (and the block has two warps or
 * more), else through v3_stage (the model prices the aligned tensors' path).
 */
__device__ __forceinline__ void v3_stage_head(v3_plan &pl, const mta_args &a, unsigned short *stg,
					      int b, int h, int rq0, int zk0, int s, bool vec)
{
	if (V_PLAN && vec) /* @model v3.vec */
		v3_stage_plan(pl, a, stg, h, s);
	if (!V_PLAN || !vec) /* @model v3.novec */
		v3_stage_qk(a, stg, b, h, rq0, zk0, s, vec);
	mta_cp_commit();
}

/* Tile t's first new column of S (and P) in this pass. */
__device__ __forceinline__ int v3_first_col(int pass, int t)
{
	return t * K_BK + (pass == 2 ? DP : 0);
}

/* The first key tile t stages in this pass: Z's first new key (S's first new
 * column, moved by the pre-softmax convolution's offset and carry), or S's
 * own without that convolution. */
__device__ __forceinline__ int v3_first_key(int pass, int t)
{
	return K_CQ ? v3_first_col(pass, t) - OK1 + KR : v3_first_col(pass, t);
}

/*
 * Phase A's first copies (V_NSTG - V_QH heads', into buffers 0 ..) for the
 * tile whose first staged key is zq, and its k plan: a commit for each head
 * past the last, to keep the waits' count.
 */
__device__ __forceinline__ void v3_stage_first(v3_plan &pl, const mta_args &a, unsigned short *stg,
					       int b, int h0, int rq0, const elem_t *k0, int zq,
					       bool vec)
{
	v3_plan_k(pl, k0, a.sk[1], zq, A_T);
#pragma unroll
	for (int x = 0; x < V_MAX(V_NSTG - V_QH, 1); x++) {
		if (x < K_HPB)
			v3_stage_head(pl, a, stg, b, h0 + x, rq0, zq, x, vec);
		else
			mta_cp_commit();
	}
}

/*
 * The 16x8 q.k tile at rows m0, columns n0 (d: its accumulators), scaled and
 * masked to 0 outside 0 <= j <= i < T, into Z (f16, columns KR + c) or,
 * without a pre-softmax convolution, into S.
 */
__device__ __forceinline__ void v3_qk_out(const float d[4], int m0, int n0, int rq0, int zk0,
					  int hh, unsigned short *Z, float *S)
{
	const int lane = threadIdx.x & 31, g = lane >> 2, t4 = lane & 3;
	(void)Z;
	(void)S;
#if K_CQ && KR % 2 == 0
	/* the two columns of a lane as one 32-bit store of f16 */
	const int c = n0 + 2 * t4, j = zk0 + c;
	unsigned short *zh = Z + hh * V_ZR * V_ZS + KR + c;
	/* warp-uniform: the whole 16x8 tile is causal (0 <= j <= i), its rows
	 * are before T and Z keeps them: no mask (most tiles off the diagonal) */
	const bool full = zk0 + n0 >= 0 && zk0 + n0 + 7 <= rq0 + m0 && rq0 + m0 + 15 < A_T &&
			  m0 + 16 <= V_ZR;
	if (full) { /* @model v3.qkfull */
#pragma unroll
		for (int hf = 0; hf < 2; hf++)
			*(unsigned *)(zh + (m0 + g + 8 * hf) * V_ZS) =
				mta_f16x2_sat(K_SCALE * d[2 * hf], K_SCALE * d[2 * hf + 1]);
	}
	if (!full) { /* @model v3.qkedge */
#pragma unroll
		for (int hf = 0; hf < 2; hf++) {
			const int r = m0 + g + 8 * hf, i = rq0 + r;
			const bool ok = i < A_T;
			const float x0 = ok && j >= 0 && j <= i ? K_SCALE * d[2 * hf] : 0.f;
			const float x1 = ok && j >= -1 && j + 1 <= i ? K_SCALE * d[2 * hf + 1] : 0.f;
			if (r < V_ZR)
				*(unsigned *)(zh + r * V_ZS) = mta_f16x2_sat(x0, x1);
		}
	}
#else
#pragma unroll
	for (int e = 0; e < 4; e++) {
		const int r = m0 + g + 8 * (e >> 1), c = n0 + 2 * t4 + (e & 1);
		const int i = rq0 + r, j = zk0 + c;
		const float x = i < A_T && j >= 0 && j <= i ? K_SCALE * d[e] : 0.f;
#if K_CQ
		if (r < V_ZR)
			Z[hh * V_ZR * V_ZS + r * V_ZS + KR + c] = v3_f16(x);
#else
		if (r < RP)
			v3_put_s(S, hh, r, c, x);
#endif
	}
#endif
}

/*
 * Phase A for head hh: the raw logits s*q.k of q rows rq0 + r (r < V_ZM) and
 * the tile's BK new keys zk0 + c, 0 outside 0 <= j <= i < T, into Z (f16,
 * columns KR + c) or, without a pre-softmax convolution, into S.
 */
#define V_QM (V_ZM / 16) /* m16 tiles of the q.k product */
#define V_QC (K_BK / (16 * V_QN)) /* column groups */
/*
 * In a cluster's tall tile (bq = 16 cs: 5 m16 tiles at the paper's bq=64)
 * the rows split too, into V_QS ranges of V_QMS m16 tiles, so that more
 * warps share a head's q.k (a step of phase A on the latency path) and a
 * warp's accumulators are fewer; each range reads its column group's k rows
 * again. Without a cluster: one range.
 */
#if K_CS > 1
#define V_QS0 V_MIN(V_MAX(K_WARPS / (V_QC * V_QH), 1), V_QM)
#else
#define V_QS0 1
#endif
#define V_QMS ((V_QM + V_QS0 - 1) / V_QS0) /* m16 tiles a range */
#define V_QS ((V_QM + V_QMS - 1) / V_QMS)  /* row ranges */
__device__ void v3_qk(const mta_args &a, const unsigned short *stg, int rq0, int zk0, int hh0,
		      unsigned short *Z, float *S)
{
	const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, g = lane >> 2, t4 = lane & 3;
	/*
	 * A warp takes every row (a range of them in a cluster, V_QS) and
	 * 16*V_QN columns: each k row of its columns is read from shared memory
	 * once and each q row once per warp (16x8 tiles read the q rows four
	 * times and the k rows twice: q.k was a third of v3's shared-memory
	 * bytes). Fewer warps work, on a short phase.
	 */
#pragma unroll 1
	for (int un = warp; un < V_QH * V_QC * V_QS; un += K_WARPS) { /* @model v3.qk */
		/* head hh (of the step's V_QH), its k rows in stage hh % V_NSTG;
		 * q resident (V_QRES): its q rows at OFF_Q, past the stage area */
		const int hh = hh0 + un / (V_QC * V_QS), unit = un % (V_QC * V_QS);
		const unsigned short *Ks = stg + hh % V_NSTG * (V_QST + K_BK) * V_DS + V_QST * V_DS;
		const unsigned short *Qs =
			V_QRES ? (const unsigned short *)((const char *)stg - OFF_STG + OFF_Q) +
					 hh * V_ZM * V_DS
			       : Ks - V_ZM * V_DS;
		const int nb = unit % V_QC * 16 * V_QN;
		const int m0 = V_QS == 1 ? 0 : unit / V_QC * V_QMS; /* the range's first m16 tile */
		float d[V_QMS][2 * V_QN][4];
		/*
		 * Each m16 tile's q rows and whether the range has it (the last
		 * range may be short), once: made in the k loop, behind the test,
		 * they cost ten integer instructions a step (the compiler remade
		 * every address). The test is a predicate, not a branch.
		 */
		const unsigned short *qa[V_QMS];
		bool mok[V_QMS];
#pragma unroll
		for (int m = 0; m < V_QMS; m++) {
			mok[m] = V_QS == 1 || m0 + m < V_QM;
			qa[m] = Qs + (16 * (mok[m] ? m0 + m : m0) + (lane & 15)) * V_DS + (lane >> 4) * 8;
		}
		const unsigned short *ka = Ks + (nb + (lane & 7) + (lane >> 4) * 8) * V_DS +
					   ((lane >> 3) & 1) * 8;
#pragma unroll
		for (int m = 0; m < V_QMS; m++)
#pragma unroll
			for (int n = 0; n < 2 * V_QN; n++)
				d[m][n][0] = d[m][n][1] = d[m][n][2] = d[m][n][3] = 0.f;
#pragma unroll
		for (int kk = 0; kk < V_DK; kk += 16) {
			unsigned bf[V_QN][4]; /* columns nb+16p..+7 (k lo, k hi), then +8..+15 */
#pragma unroll
			for (int p = 0; p < V_QN; p++)
				mta_ldsm_x4(bf[p], ka + 16 * p * V_DS + kk);
#pragma unroll
			for (int m = 0; m < V_QMS; m++) {
				if (!mok[m])
					continue; /* warp-uniform */
				unsigned af[4];
				mta_ldsm_x4(af, qa[m] + kk);
#pragma unroll
				for (int p = 0; p < V_QN; p++) {
					mma(d[m][2 * p], af, bf[p]);
					mma(d[m][2 * p + 1], af, bf[p] + 2);
				}
			}
		}
#pragma unroll
		for (int m = 0; m < V_QMS; m++) {
			if (V_QS > 1 && m0 + m >= V_QM)
				break;
#pragma unroll
			for (int n = 0; n < 2 * V_QN; n++)
				v3_qk_out(d[m][n], 16 * (m0 + m), nb + 8 * n, rq0, zk0, hh, Z, S);
		}
	}
}

#if K_CQ || K_CQ2
/*
 * The convolutions on the tensor cores. MODE 0, phase B: S[hh][r][c]
 * (r < RP, c < BK) = sum_u sum_b w[hh][u][b] Z[hh][r+u][c+b]; MODE 1, phase
 * E: O[hh][r][c] (r < BQ, c < BK) = sum_u sum_b w2[hh][u][b] P[hh][r+u][c+b]
 * where query i0 + r < T and key j0 + c <= i0 + r, else 0. Both as
 * S^T = sum_u T_u Z_u^T: a work item is (head, 16*V_TW output columns, 8
 * output rows); a warp takes a contiguous range of items, builds the band T_u
 * of each kernel row once per run of items of one head (at most V_RUN_MAX, to
 * keep the accumulators few), and issues TK mma per item, m16 tile and
 * kernel row. An item's V_TW m16 tiles share their B operands: tile w reads
 * k steps w .. w+TK-1 of the same loaded Z rows, so an item loads V_TW+TK-1
 * k steps for V_TW tiles (one item a tile loaded TK each: the convolution's
 * Z loads were a quarter of v3's shared-memory bytes).
 */
/* m16 tiles an item: two when BK allows */
#define V_TW (K_BK >= 32 ? 2 : 1)
/* a run's m16 tiles: six (a head's at the paper's configuration, its taps
 * loaded once) unless the output accumulators leave too few registers
 * (D=128: three, so runs of one two-tile item); ten in a cluster of four,
 * whose other phases leave the registers (215 of 255 at the paper's
 * configuration, where runs of six, half of a warp's items, loaded each
 * kernel row's taps twice a tile: 12 GB of the L1/shared path; cs=2 would
 * reach 255); six again for a cluster of 32 heads, whose mixing holds
 * twice the fragments (NVRTC 13 held to 239 registers spilled 4 bytes at
 * ten, 20 at eight, none at six) */
#define V_RUN_MAX ((V_AK * 4 > 96 ? 3 : K_CS >= 4 && K_CH == 16 ? 10 : 6) / V_TW)
/*
 * One convolution work item's outputs d (S^T[c0 + 16w + g (+8)][n0 + 2t
 * (+1)], this lane's) into S: MODE 0 the logits of rows r < RP (hi and lo
 * halves, or floats), MODE 1 the post-convolved probabilities of rows r <
 * BQ, 0 where query i0 + r >= T or key j0 + c > i0 + r. FULL: every row
 * kept and, for MODE 1, every element causal and before T (the caller's
 * warp-uniform test), so nothing is tested an element.
 */
#if V_XC
/* put(o, word) for each of a lane's words of an item (v3_conv_out), o its
 * offset in halves from the lane's first: plane pl, tile w, column half h. */
template <int NPL, typename F>
__device__ __forceinline__ void v3_words(const unsigned (&wd)[V_TW][2][NPL], F put)
{
#pragma unroll
	for (int w = 0; w < V_TW; w++)
#pragma unroll
		for (int h = 0; h < 2; h++)
#pragma unroll
			for (int pl = 0; pl < NPL; pl++)
				put(pl * K_CH * V_SH + 16 * w + 8 * h, wd[w][h][pl]);
}
#endif
template <int MODE, bool FULL>
__device__ __forceinline__ void v3_conv_out(const float (&d)[V_TW][4], float *S, int hh, int n0,
					    int c0, int i0, int j0, int T)
{
	constexpr int NOUT = MODE ? K_BQ : RP;
#if V_XC
	/* (the lane read here: made once a kernel, its values held registers
	 * through every phase) */
	const int lane = mta_lane(), g = lane >> 2, t4 = lane & 3, ra = n0 + 2 * t4;
#else
	const int lane = threadIdx.x & 31, g = lane >> 2, t4 = lane & 3, ra = n0 + 2 * t4;
#endif
	(void)i0;
	(void)j0;
	(void)T;
#if V_XC
	/*
	 * Words (two columns of a row) into the mixing operand of the rows'
	 * owner, a peer's by st.async counted on its mbarrier 2 or 3. A lane
	 * packs its two rows' values of a column as f16x2 (logits: hi, and lo
	 * the rest); lanes g and g ^ 1 swap the packs (a shuffle a pack), the
	 * even lane then holding row ra's pair (columns g, g + 1), the odd row
	 * ra + 1's (g - 1, g): a byte permute of the two. Rows ra and ra + 1
	 * have one owner (V_RPC, V_BQC even).
	 */
	constexpr int RPB = MODE ? V_BQC : V_RPC, SHX = MODE ? V_SH2 : V_SH, NPL = MODE ? 1 : 2;
	const int odd = g & 1, r = ra + odd, to = V_MIN(ra / RPB, K_CS - 1);
	const unsigned sel = odd ? 0x3276u : 0x5410u; /* (hi, hi of b:a) : (lo, lo) */
	unsigned wd[V_TW][2][NPL];
#pragma unroll
	for (int w = 0; w < V_TW; w++)
#pragma unroll
		for (int h = 0; h < 2; h++) { /* column g, then g + 8 */
			float a0 = d[w][2 * h], a1 = d[w][2 * h + 1]; /* rows ra, ra + 1 */
			if (MODE && !FULL) {
				const int c = c0 + 16 * w + 8 * h + g;
				a0 = i0 + ra < T && j0 + c <= i0 + ra ? a0 : 0.f;
				a1 = i0 + ra + 1 < T && j0 + c <= i0 + ra + 1 ? a1 : 0.f;
			}
			unsigned x[NPL];
			if (MODE) {
				x[0] = mta_f16x2(a0, a1);
			} else { /* as v3_put_hilo */
				x[0] = mta_f16x2_sat(a0, a1);
				x[NPL - 1] = mta_f16x2_sat(a0 - mta_f16_to_f32((unsigned short)x[0]),
							   a1 - mta_f16_to_f32((unsigned short)(x[0] >> 16)));
			}
#pragma unroll
			for (int pl = 0; pl < NPL; pl++) {
				const unsigned y = __shfl_xor_sync(0xffffffffu, x[pl], 4);
				wd[w][h][pl] = mta_prmt(x[pl], y, sel);
			}
		}
	if (FULL || r < NOUT) {
		/* this lane's first word: row r, column c0 + (g & ~1) */
		unsigned short *dst = (unsigned short *)S + (v3_rank() * K_HPB + hh) * SHX +
				      (r - to * RPB) * V_SR + c0 + (g & ~1);
		if (to == v3_rank()) /* @model v3.xloc */
			v3_words(wd, [&](int o, unsigned x) { *(unsigned *)(dst + o) = x; });
		if (to != v3_rank()) { /* @model v3.xrem */
			const mta_peer pe = mta_peer_at(dst, (unsigned)to, v3_mb(MODE ? 3 : 2));
			v3_words(wd, [&](int o, unsigned x) { mta_peer_put32(pe, 2 * o, x); });
		}
	}
#else
#if K_CS > 1
	/*
	 * Into the mixing operand of the rows' owner: a lane's rows ra and
	 * ra + 1 have one (V_RPC, V_BQC even), so its address is made once an
	 * item and each element's is a constant from it. The owner of rows
	 * past the last has no store (r >= NOUT).
	 */
	constexpr int RPB = MODE ? V_BQC : V_RPC, SHX = MODE ? V_SH2 : V_SH;
	const int to = V_MIN(ra / RPB, K_CS - 1);
	unsigned short *dst = v3_at((unsigned short *)S, to) + (v3_rank() * K_HPB + hh) * SHX +
			      (ra - to * RPB) * V_SR + c0 + g;
#endif
#pragma unroll
	for (int w = 0; w < V_TW; w++)
#pragma unroll
		for (int e = 0; e < 4; e++) {
			const int r = ra + (e & 1), c = c0 + 16 * w + g + 8 * (e >> 1);
			if (!FULL && r >= NOUT)
				continue;
			const bool zero = MODE && !FULL && !(i0 + r < T && j0 + c <= i0 + r);
			const float x = zero ? 0.f : d[w][e];
#if K_CS > 1
			unsigned short *o = dst + (e & 1) * V_SR + 16 * w + 8 * (e >> 1);
			if (MODE)
				o[0] = mta_f32_to_f16(x);
			else
				v3_put_hilo(o, x);
#else
			if (MODE)
				v3_put_p2(S, hh, r, c, x);
			else
				v3_put_s(S, hh, r, c, x);
#endif
		}
#endif
}

/*
 * A convolution's work items (MODE as v3_toeplitz). Where the heads divide
 * the warps (WPH warps a head), a warp takes IPW consecutive items of one
 * head, so that its items make one run and load each kernel row's taps once
 * (contiguous ranges of five over all items crossed heads: two runs, two
 * tap loads, in three of the eight warps of the paper's pre-softmax
 * convolution, 9 items a head); else IPW consecutive items of all. A run:
 * at most RUN items of one head.
 */
template <int MODE> struct v3_cv {
	static constexpr int CQX = MODE ? K_CQ2 : K_CQ, TKX = MODE ? V_TK2 : V_TK;
	static constexpr int ZRX = MODE ? RP : V_ZR, ZSX = MODE ? V_PS : V_ZS;
	static constexpr int WTNX = MODE ? V_WTN2 : V_WTN, NR8X = MODE ? K_BQ / 8 : V_NR8;
	static constexpr int NOUT = MODE ? K_BQ : RP, IPH = (K_BK / (16 * V_TW)) * NR8X;
	static constexpr int ITEMS = K_HPB * IPH, KS = V_TW + TKX - 1; /* k steps an item loads */
	static constexpr int WPH = K_WARPS % K_HPB == 0 ? K_WARPS / K_HPB : 0;
	static constexpr int IPW = WPH ? (IPH + WPH - 1) / WPH : (ITEMS + K_WARPS - 1) / K_WARPS;
	/* a run: a whole head's items when they fit (its taps loaded once) */
	static constexpr int RUN = V_MIN(V_MIN(IPW, IPH), V_RUN_MAX);
	/* warp w's items: [first(w), last(w)) */
	__host__ __device__ static constexpr int first(int w)
	{
		return WPH ? w / WPH * IPH + w % WPH * IPW : w * IPW;
	}
	__host__ __device__ static constexpr int last(int w)
	{
		return WPH ? V_MIN(first(w) + IPW, w / WPH * IPH + IPH) : V_MIN(first(w) + IPW, ITEMS);
	}
	/* the items of the run that starts at item it, in a range ending at it1 */
	__host__ __device__ static constexpr int run(int it, int it1)
	{
		return V_MIN(V_MIN(it1, (it / IPH + 1) * IPH) - it, RUN);
	}
	/* whether some warp has a run of n items, and one of fewer (the bodies
	 * of the sizes that occur are compiled; a test only between them) */
	__host__ __device__ static constexpr bool has(int n, bool below)
	{
		for (int w = 0; w < K_WARPS; w++)
			for (int it = first(w); it < last(w); it += run(it, last(w)))
				if (below ? run(it, last(w)) < n : run(it, last(w)) == n)
					return true;
		return false;
	}
};

/*
 * Kernel row u of a run of N items (zb: each item's row of Z for u and this
 * lane, at its lane's column). N is fixed, so the items' loads and mma are
 * blocks with no test between them, which the scheduler interleaves (a test
 * an item kept the items apart: a branch, a warp sync and two padding NOPs
 * an item of four mma). After every V_CB items a test of n (always true,
 * through mta_keep: the compiler cannot drop it) ends the block, so that
 * the next items' loads are not hoisted above this block's mma: with all of
 * a run's loads at once the paper's variant took 255 registers and, held to
 * 239 (the headroom check), spilled 184 bytes (pass 2, beside P.V's
 * accumulators); with blocks of three it takes 247, and 239 held, no spill.
 */
#define V_CB 3
template <int MODE, int N>
__device__ __forceinline__ void v3_crun(int n, float (&d)[v3_cv<MODE>::RUN][V_TW][4],
					const unsigned (&af)[v3_cv<MODE>::TKX][4],
					const unsigned short *const (&zb)[v3_cv<MODE>::RUN])
{
	using G = v3_cv<MODE>;
#pragma unroll
	for (int i = 0; i < N; i++) { /* @model v3.crunn */
		if (i > 0 && i % V_CB == 0 && (int)mta_keep((unsigned)n) != N)
			return; /* never: n is N */
		/* k steps k, k + 1 from one address: an x2 reads lanes 0-15's */
		const unsigned short *zr = zb[i];
		unsigned bf[G::KS + 1][2]; /* k step k: Z^T rows 16k.., this lane's pair */
#pragma unroll
		for (int k = 0; k < G::KS; k += 2) {
			if (k + 1 < G::KS)
				mta_ldsm_x4(&bf[k][0], zr + 16 * k);
			else
				mta_ldsm_x2(&bf[k][0], zr + 16 * k);
		}
#pragma unroll
		for (int w = 0; w < V_TW; w++)
#pragma unroll
			for (int s = 0; s < G::TKX; s++)
				mta_mma_f16(d[i][w], af[s], bf[w + s]);
	}
}

/* v3_crun for a run of n items: the body of its size */
template <int MODE, int N>
__device__ __forceinline__ void v3_crun_n(int n, float (&d)[v3_cv<MODE>::RUN][V_TW][4],
					  const unsigned (&af)[v3_cv<MODE>::TKX][4],
					  const unsigned short *const (&zb)[v3_cv<MODE>::RUN])
{
	if constexpr (N > 0) {
		if constexpr (v3_cv<MODE>::has(N, false)) {
			if (!v3_cv<MODE>::has(N, true) || n == N) {
				v3_crun<MODE, N>(n, d, af, zb);
				return;
			}
		}
		v3_crun_n<MODE, N - 1>(n, d, af, zb);
	}
}

template <int MODE>
__device__ void v3_toeplitz(const unsigned short *Z, const unsigned *WT, float *S, int i0, int j0,
			    int T)
{
	using G = v3_cv<MODE>;
	constexpr int CQX = G::CQX, TKX = G::TKX, ZRX = G::ZRX, ZSX = G::ZSX, WTNX = G::WTNX;
	constexpr int NR8X = G::NR8X, NOUT = G::NOUT, IPH = G::IPH, RUN = G::RUN;
	const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, g = lane >> 2, t4 = lane & 3;
	const int it1 = G::last(warp);
	(void)i0;
	(void)j0;
	(void)T;
#pragma unroll 1
	for (int it = G::first(warp); it < it1;) { /* @model v3.conv */
		const int hh = it / IPH, n = G::run(it, it1);
		const unsigned short *Zh = Z + hh * ZRX * ZSX;
		const unsigned *W = WT + hh * CQX * WTNX + 16 + 2 * t4 - g;
		/* each item's first input row of this lane, for kernel row 0 */
		const unsigned short *zb[RUN]; /* moved a row down each kernel row */
#pragma unroll
		for (int i = 0; i < RUN; i++) {
			const int item = it + i - hh * IPH, c0 = item / NR8X * 16 * V_TW;
			const int n0 = item % NR8X * 8;
			zb[i] = Zh + (n0 + (lane & 7)) * ZSX + c0 + (lane >> 3) * 8;
		}
		float d[RUN][V_TW][4];
#pragma unroll
		for (int i = 0; i < RUN; i++)
#pragma unroll
			for (int w = 0; w < V_TW; w++)
				d[i][w][0] = d[i][w][1] = d[i][w][2] = d[i][w][3] = 0.f;
#pragma unroll 1
		for (int u = 0; u < CQX; u++) { /* @model v3.convu */
			/* A[m][k] = w[u][k-m]: a0 = a3 at k-m = 16s+2t-g, a1 at -8, a2 at +8 */
			unsigned af[TKX][4];
#pragma unroll
			for (int s = 0; s < TKX; s++) {
				/* a0 and a3 are the same tap pair: a copy the compiler keeps
				 * gives the fragment four registers of its own (sharing one
				 * made it copy every fragment into place before each mma) */
				af[s][0] = W[u * WTNX + 16 * s];
				af[s][1] = W[u * WTNX + 16 * s - 8];
				af[s][2] = W[u * WTNX + 16 * s + 8];
				af[s][3] = mta_keep(af[s][0]);
				if (s > 0) /* the previous fragment's a2 */
					af[s][1] = mta_keep(af[s][1]);
			}
			v3_crun_n<MODE, RUN>(n, d, af, zb);
#pragma unroll
			for (int i = 0; i < RUN; i++)
				zb[i] += ZSX;
		}
		/* d[i][w] = S^T[c0 + 16w + g (+8)][n0 + 2t (+1)] */
#pragma unroll
		for (int i = 0; i < RUN; i++) { /* @model v3.crun */
			if (i >= n)
				break;
			const int item = it + i - hh * IPH, c0 = item / NR8X * 16 * V_TW;
			const int n0 = item % NR8X * 8;
			/*
			 * Warp-uniform: the item's 8 rows are all kept and, after the
			 * post-softmax convolution, all before T with every column
			 * causal (the items off the diagonal: most). Those store with
			 * no test an element; the per-element tests had made the
			 * compiler branch around each store and remake its address.
			 */
			const bool full = (NR8X * 8 <= NOUT || n0 + 8 <= NOUT) &&
					  (!MODE || (i0 + n0 + 7 < T && j0 + c0 + 16 * V_TW - 1 <= i0 + n0));
			if (full) /* @model v3.cfull */
				v3_conv_out<MODE, true>(d[i], S, hh, n0, c0, i0, j0, T);
			if (!full) /* @model v3.cedge */
				v3_conv_out<MODE, false>(d[i], S, hh, n0, c0, i0, j0, T);
		}
		it += n;
	}
}
#endif

__device__ __forceinline__ float v3_ld(const float *p) { return *p; }
__device__ __forceinline__ float v3_ld(const unsigned short *p) { return mta_f16_to_f32(*p); }
__device__ __forceinline__ void v3_st(float *p, float x) { *p = x; }
__device__ __forceinline__ void v3_st(unsigned short *p, float x) { *p = mta_f32_to_f16(x); }

#if K_HPRE || K_HPOST
/*
 * Head mixing in place, one position per thread: for every group of GS
 * heads, X[g*GS + o] <- sum_in W[g][o][in] X[g*GS + in] at each position
 * (r, c), r < rows, c < BK; X rows stride rs floats, heads hstride. With
 * out non-NULL, the results go rounded to the operand type into out
 * ([HPB][BQ][V_PBS]) instead.
 */
template <int GS, typename X_T>
__device__ void v3_mix(X_T *X, int hstride, int rs, int rows, const float *W, unsigned short *out)
{
	float x[GS];
#pragma unroll 1
	for (int e = threadIdx.x; e < (K_HPB / GS) * rows * K_BK; e += NT) { /* @model v3.mix */
		const int grp = e / (rows * K_BK), pos = e % (rows * K_BK);
		const int r = pos / K_BK, c = pos % K_BK;
		X_T *base = X + grp * GS * hstride + r * rs + c;
#pragma unroll
		for (int hi = 0; hi < GS; hi++)
			x[hi] = v3_ld(base + hi * hstride);
		const float *w = W + grp * GS * GS;
#pragma unroll 1
		for (int ho = 0; ho < GS; ho++) { /* @model v3.mixo */
			float s0 = 0.f;
#pragma unroll
			for (int hi = 0; hi < GS; hi++)
				s0 += w[ho * GS + hi] * x[hi];
			if (out)
				out[(grp * GS + ho) * V_PBH + r * V_PBS + c] = to_op(s0);
			else
				v3_st(base + ho * hstride, s0);
		}
	}
}
#endif

/*
 * Phase D. Rows (hh, r) of S, r < nrows, query i_base + r, columns sc0 + c:
 *   pass 0 (single pass): online max and sum into M, L, the rescale factor
 *     into A, and exp(S - m) rounded into Pb for P.V;
 *   pass 1: online max and sum into M, L;
 *   pass 2: normalised probabilities (L holds 1/l) into P's new columns (f16).
 * BK/8 consecutive lanes share a row (8 columns each) and reduce with
 * shuffles; a warp loops while any of its lanes has a row.
 */
#define V_CH (K_BK / 8)
/*
 * One lane's 8 columns v of row `row` (head hh, row r), the first j0; valid
 * columns c <= lim with j0 + c >= 0. FULL: all 8 of every lane of the warp
 * are (off the diagonal, most tiles), so no column is tested. exp(v - m) is
 * ex2(v log2e - m log2e), one FFMA and one MUFU; the rounded values go out
 * two to a cvt, four words a lane.
 */
template <bool FULL>
__device__ __forceinline__ void v3_smtask(int pass, bool act, int row, int hh, int r, int ch,
					  int lim, int j0, const float (&v)[8], unsigned short *P,
					  float *M, float *L, float *A, unsigned short *Pb)
{
#define V_OK(c) (FULL || ((c) <= lim && j0 + (c) >= 0))
	const float l2e = 1.4426950408889634f;
	if (pass == 2) {
		const float ml = act ? M[row] * l2e : 0.f, li = act ? L[row] : 0.f;
		float p[8];
#pragma unroll
		for (int c = 0; c < 8; c++)
			p[c] = V_OK(c) ? mta_ex2_ftz(fmaf(v[c], l2e, -ml)) * li : 0.f;
		if (act) {
			unsigned short *d = P + hh * RP * V_PS + r * V_PS + KP + ch * 8;
#pragma unroll
			for (int c = 0; c < 8; c += 2) {
				if (KP % 2 == 0) { /* the pair as one word (p <= 1: no saturation) */
					*(unsigned *)(d + c) = mta_f16x2(p[c], p[c + 1]);
				} else {
					d[c] = mta_f32_to_f16(p[c]);
					d[c + 1] = mta_f32_to_f16(p[c + 1]);
				}
			}
		}
		return;
	}
	float mx = NEG_INF;
#pragma unroll
	for (int c = 0; c < 8; c++)
		if (V_OK(c))
			mx = fmaxf(mx, v[c]);
#pragma unroll
	for (int o = 1; o < V_CH; o <<= 1)
		mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, o));
	const float mold = act ? M[row] : NEG_INF, mnew = fmaxf(mold, mx);
	/* a row with no valid column yet (mnew -inf) has every p 0 */
	const float ml = mnew == NEG_INF ? 0.f : mnew * l2e;
	float sum = 0.f, p[8];
#pragma unroll
	for (int c = 0; c < 8; c++) {
		p[c] = V_OK(c) ? mta_ex2_ftz(fmaf(v[c], l2e, -ml)) : 0.f;
		sum += p[c];
	}
	if (pass == 0 && act) {
		unsigned *o = (unsigned *)(Pb + hh * V_PBH + r * V_PBS + ch * 8);
#pragma unroll
		for (int c = 0; c < 8; c += 2)
			o[c / 2] = to_op2(p[c], p[c + 1]);
	}
#pragma unroll
	for (int o = 1; o < V_CH; o <<= 1)
		sum += __shfl_xor_sync(0xffffffffu, sum, o);
	__syncwarp(); /* every lane has read M[row] before the row's first lane writes it */
	if (act && ch == 0) {
		const float al = mold == NEG_INF ? 0.f : mta_exp_ftz(mold - mnew);
		L[row] = L[row] * al + sum;
		M[row] = mnew;
		if (pass == 0)
			A[row] = al;
	}
#undef V_OK
}

__device__ void v3_softmax(int pass, int T, int i_base, int sc0, int nrows, const float *S,
			   unsigned short *P, float *M, float *L, float *A, unsigned short *Pb)
{
	const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
	const int ntask = K_HPB * nrows * V_CH;
#pragma unroll 1
	for (int base = warp * 32; base < ntask; base += NT) { /* @model v3.smx */
		const int task = base + lane, row = task / V_CH, ch = task % V_CH;
		const bool act = task < ntask;
		const int hh = row / nrows, r = row % nrows, i = i_base + r, j0 = sc0 + ch * 8;
		float v[8] = { 0.f, 0.f, 0.f, 0.f, 0.f, 0.f, 0.f, 0.f };
		if (act) {
			const float4 *s4 = (const float4 *)(S + hh * RP * V_SS + r * V_SS + ch * 8);
			const float4 x0 = s4[0], x1 = s4[1];
			v[0] = x0.x; v[1] = x0.y; v[2] = x0.z; v[3] = x0.w;
			v[4] = x1.x; v[5] = x1.y; v[6] = x1.z; v[7] = x1.w;
		}
		const int lim = act && i < T ? i - j0 : -1; /* valid columns c <= lim (j0 >= 0) */
		/* warp-uniform: every lane's 8 columns valid (an idle lane's row is idle too) */
		const bool full = __all_sync(0xffffffffu, !act || (lim >= 7 && j0 >= 0));
		if (full) /* @model v3.smfull */
			v3_smtask<true>(pass, act, row, hh, r, ch, lim, j0, v, P, M, L, A, Pb);
		if (!full) /* @model v3.smedge */
			v3_smtask<false>(pass, act, row, hh, r, ch, lim, j0, v, P, M, L, A, Pb);
	}
}

#if V_TCMIX || V_TCMIXP
/*
 * The mma A fragment of the 16x16 block (mt, kt) of a mixing matrix, f16:
 * output heads 16 mt .., input heads 16 kt ..: W[ho][hi] for linear mixing
 * (gs = K_CH heads), or the block-diagonal matrix of groups of gs heads
 * (W[g][o][in], zero between groups).
 */
__device__ __forceinline__ float v3_wmix(const float *W, int gs, int ho, int hi)
{
	return ho / gs == hi / gs ? W[(ho / gs) * gs * gs + ho % gs * gs + hi % gs] : 0.f;
}
__device__ __forceinline__ void v3_wfrag(const float *W, int gs, int mt, int kt, unsigned af[4])
{
	const int lane = threadIdx.x & 31, g = lane >> 2, t2 = (lane & 3) * 2;
#pragma unroll
	for (int q = 0; q < 4; q++) {
		const int ho = 16 * mt + g + 8 * (q & 1), hi = 16 * kt + t2 + 8 * (q >> 1);
		/* rows of 16 floats: lanes g and g + 2 share a bank, 4 lanes a bank */
		af[q] = mta_f16x2_sat(v3_wmix(W, gs, ho, hi), v3_wmix(W, gs, ho, hi + 1)); /* @model ways=4 */
	}
}
#endif

#if V_TCMIX
/*
 * v3_mixsoft's work on row r's mixed logits d of m16 tile mt (heads
 * 16 mt + g and 16 mt + g + 8, columns 2t, 2t+1 of every 8): FULL when
 * every column is a valid key (0 <= j <= i, i < T), so no column is tested.
 */
template <bool FULL>
__device__ __forceinline__ void v3_msrow(int pass, int mt, int r, int rl, int lim, int sc0,
					 const float (&d)[K_BK / 8][4], unsigned short *P, float *M,
					 float *L, float *A, unsigned short *Pb)
{
	const int lane = threadIdx.x & 31, g = lane >> 2, t4 = lane & 3;
	const float l2e = 1.4426950408889634f; /* exp(x - m) = ex2(x log2e - m log2e): one FFMA */
	(void)lim;
	(void)sc0;
#pragma unroll
	for (int half = 0; half < 2; half++) { /* heads g, then g + 8 */
		const int hh = 16 * mt + g + 8 * half, row = hh * (pass == 0 ? K_BQ : V_RPC) + rl;
		if (pass == 2) {
			const float ml = M[row] * l2e, li = L[row];
#pragma unroll
			for (int nt = 0; nt < K_BK / 8; nt++) {
				float p[2];
#pragma unroll
				for (int e = 0; e < 2; e++) {
					const int c = nt * 8 + 2 * t4 + e;
					p[e] = (FULL || (c <= lim && sc0 + c >= 0)) ?
						mta_ex2_ftz(fmaf(d[nt][2 * half + e], l2e, -ml)) * li : 0.f;
				}
				/* into P of the head's block */
#if V_XA
				v3_put_word(P + hh % K_HPB * RP * V_PS + r * V_PS + KP + nt * 8 + 2 * t4,
					    hh / K_HPB, mta_f16x2_sat(p[0], p[1]), 0);
#else
#if K_CS > 1
				unsigned short *pp = v3_at(P, hh / K_HPB) + hh % K_HPB * RP * V_PS +
						     r * V_PS + KP + nt * 8 + 2 * t4;
#else
				unsigned short *pp = P + hh * RP * V_PS + r * V_PS + KP + nt * 8 + 2 * t4;
#endif
				if (KP % 2 == 0) { /* the pair as one 32-bit store (p <= 1: no saturation) */
					*(unsigned *)pp = mta_f16x2_sat(p[0], p[1]);
				} else {
					pp[0] = mta_f32_to_f16(p[0]);
					pp[1] = mta_f32_to_f16(p[1]);
				}
#endif
			}
			continue;
		}
		float mx = NEG_INF;
#pragma unroll
		for (int nt = 0; nt < K_BK / 8; nt++)
#pragma unroll
			for (int e = 0; e < 2; e++)
				if (FULL || nt * 8 + 2 * t4 + e <= lim)
					mx = fmaxf(mx, d[nt][2 * half + e]);
		mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, 1));
		mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, 2));
		const float mold = M[row], mnew = fmaxf(mold, mx);
		/* a row with no valid column yet (mnew -inf) has every p 0 */
		const float ml = mnew == NEG_INF ? 0.f : mnew * l2e;
		float sum = 0.f;
#pragma unroll
		for (int nt = 0; nt < K_BK / 8; nt++) {
			float p[2];
#pragma unroll
			for (int e = 0; e < 2; e++) {
				const int c = nt * 8 + 2 * t4 + e;
				p[e] = FULL || c <= lim ?
					mta_ex2_ftz(fmaf(d[nt][2 * half + e], l2e, -ml)) : 0.f;
				sum += p[e];
			}
			if (pass == 0) /* the pair as one word, one cvt */
				*(unsigned *)(Pb + hh * V_PBH + r * V_PBS + nt * 8 + 2 * t4) =
					to_op2(p[0], p[1]);
		}
		sum += __shfl_xor_sync(0xffffffffu, sum, 1);
		sum += __shfl_xor_sync(0xffffffffu, sum, 2);
		__syncwarp(); /* the row's lanes have read M before its first lane writes it */
		if (t4 == 0) {
			const float al = mold == NEG_INF ? 0.f : mta_exp_ftz(mold - mnew);
			L[row] = L[row] * al + sum;
			M[row] = mnew;
			if (pass == 0)
				A[row] = al;
		}
	}
}

/*
 * Phases C and D fused: for each row r (< nrows; in a cluster the rows this
 * block owns, local row rl, statistics M, L at [head][rl]) a warp mixes the heads of
 * its BK logits on the tensor cores (S_mix = W (S_hi + S_lo), 16 heads x 8
 * positions an mma; 32 heads: 2 x 2 of them, an m16 tile of output heads
 * at a time) and, from the accumulators, does what v3_softmax does:
 * pass 0 and 1 the online statistics (pass 0 also P for P.V), pass 2 the
 * normalised probabilities into P's new columns. A lane holds heads g and
 * g+8 of each m16 tile, columns 2t, 2t+1 of every 8; the four lanes of a
 * row reduce with shuffles.
 */
__device__ void v3_mixsoft(int pass, int T, int i_base, int sc0, int nrows, const void *S,
			   const float *W, unsigned short *P, float *M, float *L, float *A,
			   unsigned short *Pb)
{
	const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, g = lane >> 2, t4 = lane & 3;
	const unsigned short *hi16 = (const unsigned short *)S, *lo16 = hi16 + K_CH * V_SH;
	unsigned af[V_MT2][V_MT2][4];
#pragma unroll
	for (int mt = 0; mt < V_MT2; mt++)
#pragma unroll
		for (int kt = 0; kt < V_MT2; kt++)
			v3_wfrag(W, K_CH, mt, kt, af[mt][kt]);
#if K_CS > 1
	const int r0 = v3_rank() * V_RPC, nr = V_MIN(nrows - r0, V_RPC);
#else
	const int r0 = 0, nr = nrows;
#endif
#pragma unroll 1
	for (int rl = warp; rl < nr; rl += K_WARPS) { /* @model v3.msrow */
		const int r = r0 + rl;
		const int i = i_base + r, lim = i < T ? i - sc0 : -1; /* valid columns c <= lim */
		/* warp-uniform: every column of the row a valid key (most rows) */
		const bool full = lim >= K_BK - 1 && sc0 >= 0;
		/* one m16 tile of output heads at a time (its accumulators only:
		 * 32 heads' at once took the registers P.V's hold) */
#pragma unroll
		for (int mt = 0; mt < V_MT2; mt++) {
			float d[K_BK / 8][4];
#pragma unroll
			for (int nt = 0; nt < K_BK / 8; nt++) {
				d[nt][0] = d[nt][1] = d[nt][2] = d[nt][3] = 0.f;
#pragma unroll
				for (int kt = 0; kt < V_MT2; kt++) {
					unsigned bf[2];
					/* B: heads 16 kt + (lane & 15) by the 8 positions from column nt * 8 */
					const int at = (16 * kt + (lane & 15)) * V_SH + rl * V_SR + nt * 8;
					mta_ldsm_x2_t(bf, hi16 + at);
					mta_mma_f16(d[nt], af[mt][kt], bf);
					mta_ldsm_x2_t(bf, lo16 + at);
					mta_mma_f16(d[nt], af[mt][kt], bf);
				}
			}
			if (full) /* @model v3.msfull */
				v3_msrow<true>(pass, mt, r, rl, lim, sc0, d, P, M, L, A, Pb);
			if (!full) /* @model v3.msedge */
				v3_msrow<false>(pass, mt, r, rl, lim, sc0, d, P, M, L, A, Pb);
		}
	}
}
#endif

#if V_TCMIXP
/*
 * Phase F on the tensor cores: P3 = W P2 for 8 positions an mma (P2 in f16
 * at [head][position], 16 or 32 heads), rounded into the P.V operand.
 */
__device__ void v3_pmix(const void *S, const float *W, unsigned short *Pb)
{
	const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, g = lane >> 2, t4 = lane & 3;
	const unsigned short *p16 = (const unsigned short *)S;
	/* blocks (mt, kt) of the matrix: with groups of up to 16 heads only the
	 * diagonal ones are not zero */
#define V_PMK(mt, kt) (V_GS > 16 || (mt) == (kt))
	unsigned af[V_MT2][V_MT2][4];
#pragma unroll
	for (int mt = 0; mt < V_MT2; mt++)
#pragma unroll
		for (int kt = 0; kt < V_MT2; kt++)
			if (V_PMK(mt, kt))
				v3_wfrag(W, V_GS, mt, kt, af[mt][kt]);
	/* the rows this block mixes (a cluster's rank x: rows x * V_BQC ..) */
	const int r0 = v3_rank() * V_BQC;
	/*
	 * A lane's two columns go as one word into the operand of heads g and
	 * g + 8 of each m16 tile (their blocks', in a cluster): the heads' bases
	 * made once, not once a tile (two mapa and their 64-bit sums had been
	 * most of the loop).
	 */
	unsigned short *pg[V_MT2], *pg8[V_MT2];
#pragma unroll
	for (int mt = 0; mt < V_MT2; mt++) {
		const int h = 16 * mt + g, h8 = h + 8;
#if V_XA
		/* this block's addresses of the words; the owners' by st.async */
		pg[mt] = Pb + h % K_HPB * V_PBH + r0 * V_PBS + 2 * t4;
		pg8[mt] = Pb + h8 % K_HPB * V_PBH + r0 * V_PBS + 2 * t4;
#elif K_CS > 1
		pg[mt] = v3_at(Pb, h / K_HPB) + h % K_HPB * V_PBH + r0 * V_PBS + 2 * t4;
		pg8[mt] = v3_at(Pb, h8 / K_HPB) + h8 % K_HPB * V_PBH + r0 * V_PBS + 2 * t4;
#else
		pg[mt] = Pb + h * V_PBH + r0 * V_PBS + 2 * t4;
		pg8[mt] = pg[mt] + 8 * V_PBH;
#endif
	}
	const unsigned short *pb = p16 + (lane & 15) * V_SH2;
#pragma unroll 1
	for (int nt = warp; nt < V_BQC * K_BK / 8; nt += K_WARPS) { /* @model v3.pmix */
		float d[V_MT2][4];
		const int r = nt * 8 / K_BK, c = nt * 8 % K_BK;
#pragma unroll
		for (int mt = 0; mt < V_MT2; mt++)
			d[mt][0] = d[mt][1] = d[mt][2] = d[mt][3] = 0.f;
#pragma unroll
		for (int kt = 0; kt < V_MT2; kt++) {
			unsigned bf[2];
			/* B: heads 16 kt + (lane & 15) by 8 positions, as v3_mixsoft's */
			mta_ldsm_x2_t(bf, pb + 16 * kt * V_SH2 + r * V_SR + c);
#pragma unroll
			for (int mt = 0; mt < V_MT2; mt++)
				if (V_PMK(mt, kt))
					mta_mma_f16(d[mt], af[mt][kt], bf);
		}
#pragma unroll
		for (int mt = 0; mt < V_MT2; mt++) {
#if V_XA
			const int h = 16 * mt + g;
			v3_put_word(pg[mt] + r * V_PBS + c, h / K_HPB, to_op2(d[mt][0], d[mt][1]), 1);
			v3_put_word(pg8[mt] + r * V_PBS + c, (h + 8) / K_HPB,
				    to_op2(d[mt][2], d[mt][3]), 1);
#else
			*(unsigned *)(pg[mt] + r * V_PBS + c) = to_op2(d[mt][0], d[mt][1]);
			*(unsigned *)(pg8[mt] + r * V_PBS + c) = to_op2(d[mt][2], d[mt][3]);
#endif
		}
	}
#undef V_PMK
}
#endif

/* Round X[hh][r][c] (r < BQ, row stride rs, head stride hs) into the P.V operand. */
template <typename X_T>
__device__ void v3_round(const X_T *X, int hs, int rs, unsigned short *Pb)
{
#pragma unroll 1
	for (int e = threadIdx.x; e < K_HPB * K_BQ * K_BK; e += NT) { /* @model v3.round */
		const int hh = e / (K_BQ * K_BK), r = e / K_BK % K_BQ, c = e % K_BK;
		Pb[hh * V_PBH + r * V_PBS + c] = to_op(v3_ld(X + hh * hs + r * rs + c));
	}
}

/*
 * Copy NW words of each of nrows rows, row r's from src + r * ss to dst +
 * r * ds, a lane a word with a row's words on neighbouring lanes, 32 / NW
 * rows a warp at once: the rows of Z and P are 4 words past a multiple of 8
 * apart (16-byte rows for ldmatrix), so a lane a row put 4 lanes in a bank;
 * this way at most 2. No division in the loop. Ends without a barrier.
 */
template <int NW>
__device__ __forceinline__ void v3_rows_copy(unsigned *dst, int ds, const unsigned *src, int ss,
					     int nrows)
{
	constexpr int RW = 32 / NW;
	const int lane = threadIdx.x & 31;
	if (lane >= RW * NW)
		return;
	const int r0 = (threadIdx.x >> 5) * RW + lane / NW;
	dst += r0 * ds + lane % NW;
	src += r0 * ss + lane % NW;
#pragma unroll 1
	for (int r = r0; r < nrows; r += K_WARPS * RW) { /* @model v3.rcopy */
		*dst = *src; /* @model ways=2 */
		dst += K_WARPS * RW * ds;
		src += K_WARPS * RW * ss;
	}
}

#define V_NG ((K_HPB + V_VG - 1) / V_VG) /* groups of V_VG heads' V rows */
#define V_VS_N ((V_KCH + NT - 1) / NT)    /* a thread's chunks of a head's V rows */
#define V_VLAST (V_KCH - (V_VS_N - 1) * NT) /* the threads with a chunk in the last slot */
static_assert(V_VS_N <= 32, "v3: more than 32 V chunk slots a thread");

/*
 * Stage the V rows (keys j0 ..) of group gi, heads h0 + VG*gi .., into
 * buffer gi % V_VB of the staging area and commit: an empty commit for a group
 * past the last head, so that P.V waits by one count whatever V_NG is.
 */
__device__ __forceinline__ void v3_stage_v(const mta_args &a, unsigned short *stg, int b, int h0,
					   int j0, int gi, bool vec)
{
	unsigned short *Vs = stg + gi % V_VB * V_VG * K_BK * V_DS;
	/* b opaque: the source addresses are made here, at each call, not
	 * hoisted out of the tile loop to stay live beside the accumulators
	 * (about 20 registers at the paper's configuration) */
	asm volatile("" : "+r"(b));
	if (V_PLAN && vec) { /* @model v3.vplan */
		/*
		 * Planned, as phase A's copies: a thread's chunks (16 bytes of a
		 * row; rows past T and columns past D zero-filled) sit at the
		 * same offsets in every head, so a head costs its copies and a
		 * step of the source.
		 */
		unsigned o[V_VS_N], ok = 0;
		int d[V_VS_N];
#pragma unroll
		for (int s = 0; s < V_VS_N; s++) {
			const int e = threadIdx.x + s * NT;
			int r, c;
			v3_chunk(e, r, c);
			const bool in = e < V_KCH && c < K_D && j0 + r < A_T;
			d[s] = r * V_DS + c;
			o[s] = in ? (unsigned)(((long long)(j0 + r) * a.sv[1] + c) * 2) : 0u;
			ok |= (unsigned)in << s;
		}
		const int hv = h0 + gi * V_VG;
		const char *base = (const char *)(a.v + b * a.sv[0] + (hv / GQA) * a.sv[2]);
#pragma unroll
		for (int x = 0; x < V_VG; x++) {
			if (gi * V_VG + x >= K_HPB)
				break;
			unsigned short *dst = Vs + x * K_BK * V_DS;
			/* every thread has a chunk in the slots before the last */
#pragma unroll
			for (int s = 0; s + 1 < V_VS_N; s++)
				mta_cp_async16z(dst + d[s], base + o[s], ok >> s & 1);
			if (threadIdx.x < V_VLAST) /* @model v3.vlast */
				mta_cp_async16z(dst + d[V_VS_N - 1], base + o[V_VS_N - 1],
						ok >> (V_VS_N - 1) & 1);
			base += (hv + x + 1) % GQA == 0 ? 2 * a.sv[2] : 0;
		}
	}
	if (!V_PLAN || !vec) { /* @model v3.vnoplan */
#pragma unroll
		for (int x = 0; x < V_VG; x++)
			if (gi * V_VG + x < K_HPB)
				v3_stage(Vs + x * K_BK * V_DS, /* @model st=2 */
					 a.v + b * a.sv[0] + ((h0 + gi * V_VG + x) / GQA) * a.sv[2],
					 a.sv[1], j0, K_BK, K_BK, A_T, vec);
	}
	mta_cp_commit();
}

/*
 * P.V's step for accumulator slots V_PW k ..: the V^T fragments of rows
 * kk .. (k lo and hi) of the d columns from tile nt on, times P's fragment af.
 */
__device__ __forceinline__ void v3_pv_mma(float (&acc)[V_AK][4], int k, const unsigned (&af)[4],
					  const unsigned short *V, int kk, int nt)
{
	const int lane = threadIdx.x & 31;
	unsigned bf[2 * V_PW];
	if (V_PW == 2)
		mta_ldsm_x4_t(bf, V + (kk + (lane & 15)) * V_DS + nt * 8 + (lane >> 4) * 8);
	else
		mta_ldsm_x2_t(bf, V + (kk + (lane & 15)) * V_DS + nt * 8);
#pragma unroll
	for (int p = 0; p < V_PW; p++)
		mma(acc[V_PW * k + p], af, bf + 2 * p);
}

/*
 * Phase G: O += P.V for the tile at key j0, every head. The V rows of the
 * first V_VB groups of VG heads were staged (v3_stage_v) into the V_VB
 * buffers of the staging area after phase A and are the only copies in
 * flight; group gi + V_VB - 1 is staged as group gi >= 1 starts, into the
 * buffer group gi - 1 has left. Without post steps the earlier sums are first
 * rescaled by A. Every thread calls it; ends with a barrier.
 */
__device__ __forceinline__ void v3_pv(const mta_args &a, unsigned short *stg, int b, int h0, int j0,
				      const unsigned short *Pb, const float *A, bool vec,
				      float (&acc)[V_AK][4])
{
	const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, g = lane >> 2;
	(void)A;
	(void)g;
#pragma unroll
	for (int hh = 0; hh < K_HPB; hh++) {
		const int gi = hh / V_VG, slot = hh % V_VG;
		unsigned short *Vs = stg + gi % V_VB * V_VG * K_BK * V_DS;
		if (slot == 0) {
			/* groups committed: V_VB before P.V, one as each group from 1
			 * starts; group gi is in when at most the newer ones fly */
			if (gi == 0)
				mta_cp_wait(V_VB - 1);
			else
				mta_cp_wait(V_VB - 2);
			__syncthreads(); /* group gi is in; group gi - 1's buffer is free */
			if (gi >= 1)     /* into group gi - 1's buffer (empty past the last) */
				v3_stage_v(a, stg, b, h0, j0, gi + V_VB - 1, vec);
		}
		const unsigned short *V = Vs + slot * K_BK * V_DS;
		const unsigned short *Ph = Pb + hh * V_PBH;
#if V_PVB
		/* the warp's V_UPW units of head hh: one m16 row, P's fragment
		 * loaded once a k step for all of them */
		const int u0 = warp * V_UPW, m = u0 * V_PW / V_NT8;
#if !POST
		{
			const float a0 = A[hh * K_BQ + 16 * m + g], a1 = A[hh * K_BQ + 16 * m + g + 8];
#pragma unroll
			for (int x = 0; x < V_UPW * V_PW; x++) {
				acc[V_PW * V_K0(hh) + x][0] *= a0;
				acc[V_PW * V_K0(hh) + x][1] *= a0;
				acc[V_PW * V_K0(hh) + x][2] *= a1;
				acc[V_PW * V_K0(hh) + x][3] *= a1;
			}
		}
#endif
#pragma unroll
		for (int kk = 0; kk < K_BK; kk += 16) { /* @model v3.pvk */
			unsigned af[4];
			mta_ldsm_x4(af, Ph + (16 * m + (lane & 15)) * V_PBS + kk + (lane >> 4) * 8);
#pragma unroll
			for (int j = 0; j < V_UPW; j++) {
				const int k = V_K0(hh) + j, nt = (u0 + j) * V_PW % V_NT8;
				v3_pv_mma(acc, k, af, V, kk, nt);
			}
		}
#else
#pragma unroll
		for (int k = V_K0(hh); k <= V_K1(hh); k++) { /* @model v3.pvk */
			const int unit = V_UNIT(k, hh, warp);
			if (unit < 0 || unit >= V_UPH)
				continue; /* warp-uniform */
			const int m = unit * V_PW / V_NT8, nt = unit * V_PW % V_NT8;
#if !POST
			const float a0 = A[hh * K_BQ + 16 * m + g], a1 = A[hh * K_BQ + 16 * m + g + 8];
#pragma unroll
			for (int p = 0; p < V_PW; p++) {
				acc[V_PW * k + p][0] *= a0;
				acc[V_PW * k + p][1] *= a0;
				acc[V_PW * k + p][2] *= a1;
				acc[V_PW * k + p][3] *= a1;
			}
#endif
#pragma unroll
			for (int kk = 0; kk < K_BK; kk += 16) {
				unsigned af[4];
				mta_ldsm_x4(af, Ph + (16 * m + (lane & 15)) * V_PBS + kk + (lane >> 4) * 8);
				v3_pv_mma(acc, k, af, V, kk, nt);
			}
		}
#endif
	}
	__syncthreads(); /* the staging area is reused by the next tile's q and k */
}

/*
 * One pass over the key tiles (pass 0: the only pass, online softmax and
 * P.V; pass 1: statistics; pass 2: probabilities, post steps, P.V). The
 * first tiles (t < 0) only fill the carries: t_z computes Z alone, t_s also
 * S and, in pass 2, P. The `@model` comments mark loops and branches for the
 * static cost model (tuner/model/regions.c has their trip counts).
 */
__device__ void v3_pass(const mta_args &a, int pass, char *sm, int b, int h0, int i0, int nkt,
			bool vec, float (&acc)[V_AK][4], unsigned &xph)
{
	unsigned short *stg = (unsigned short *)(sm + OFF_STG), *Z = (unsigned short *)(sm + OFF_Z);
	unsigned short *Zc = (unsigned short *)(sm + OFF_ZC), *Pb = (unsigned short *)(sm + OFF_PB);
	float *S = (float *)(sm + OFF_S), *M = (float *)(sm + OFF_ST);
	unsigned short *P = (unsigned short *)(sm + OFF_P);
	float *L = M + K_CH * V_RPC, *A = L + K_CH * V_RPC;
	const unsigned *WT = (const unsigned *)(sm + OFF_WT), *W2 = (const unsigned *)(sm + OFF_W2);
	const float *WM1 = (const float *)(sm + OFF_WM1);
	const float *WM2 = (const float *)(sm + OFF_WM2);
	const int nrows = pass == 0 ? K_BQ : RP, rq0 = i0 - QP - QR;
	const int t_s = pass == 2 && KP ? -1 : 0, t_z = K_CQ ? t_s - 1 : t_s;
	(void)Zc; (void)P; (void)WT; (void)W2; (void)WM1; (void)WM2; (void)xph;

	/* empty carries: keys left of 0 (in place: the columns the first tile
	 * shifts in) */
#if K_CQ
	for (int e = threadIdx.x; e < V_ZROWS * V_KR2; e += NT) { /* @model v3.zc0 */
		if (V_ZIN)
			((unsigned *)Z)[e / V_KR2 * (V_ZS / 2) + K_BK / 2 + e % V_KR2] = 0;
		else
			((unsigned *)Zc)[e] = 0;
	}
#endif
#if POST
	if (pass == 2)
		for (int e = threadIdx.x; e < K_HPB * RP; e += NT) /* @model v3.pcarry */
#pragma unroll
			for (int x = 0; x < KP; x++)
				P[e * V_PS + x] = 0;
#endif
	v3_plan pl;
	const elem_t *q0 = a.q + b * a.sq[0] + h0 * a.sq[2];
	const elem_t *k0 = a.k + b * a.sk[0] + (h0 / GQA) * a.sk[2];
	v3_plan_q(pl, q0, a.sq[1], rq0, K_CQ ? RZ : RP, A_T);
#pragma unroll 1
	for (int t = t_z; t < nkt; t++) { /* @model v3.kt */
		const int sc0 = v3_first_col(pass, t); /* first new column of S (and P) */
		const int zq = v3_first_key(pass, t);  /* the tile's first staged key */
		/* Phase A: q.k V_QH heads a step, V_NSTG - V_QH heads' copies in
		 * flight (a commit for each head past the last, to keep the waits'
		 * count); in pass 1 the tile before issued the first ones */
		if (pass != 1 || t == t_z) /* @model v3.first */
			v3_stage_first(pl, a, stg, b, h0, rq0, k0, zq, vec);
#if K_CQ
		/* the carried columns of every head's Z (and its padding rows: they
		 * feed only discarded outputs), in pairs (a column more when KR is
		 * odd: q.k overwrites it); in place, the last tile's last columns,
		 * whose reader, the last tile's convolution, finished before a
		 * barrier; else from ZC */
		unsigned *zw = (unsigned *)Z;
		const unsigned *zsrc = V_ZIN ? zw + K_BK / 2 : (const unsigned *)Zc;
		v3_rows_copy<V_KR2>(zw, V_ZS / 2, zsrc, V_ZIN ? V_ZS / 2 : V_KR2, V_ZROWS); /* @model rc=1 */
#endif
#pragma unroll 1
		for (int hh = 0; hh < K_HPB; hh += V_QH) { /* @model v3.heads */
			mta_cp_wait(V_MAX(V_NSTG - 2 * V_QH, 0));
			/* heads hh .. hh + V_QH - 1 are staged; every warp is done
			 * with the step before */
			__syncthreads();
			if (V_NSTG >= 2) {
				/* into the buffers of the step before */
#pragma unroll
				for (int x = 0; x < V_QH; x++) {
					const int ha = hh + V_NSTG - V_QH + x;
					if (ha < K_HPB) /* @model v3.ahead */
						v3_stage_head(pl, a, stg, b, h0 + ha, rq0, zq,
							      ha % V_NSTG, vec);
					else
						mta_cp_commit();
				}
			}
			v3_qk(a, stg, rq0, zq, hh, Z, S);
			if (V_NSTG == 1 && hh + 1 < K_HPB) {
				__syncthreads();
				v3_stage_head(pl, a, stg, b, h0 + hh + 1, rq0, zq, 0, vec);
			}
		}
		if (vec)
			v3_plan_rewind(pl, a);
		__syncthreads();
		/* Pass 1 has no P.V: the staging area is free until the next
		 * tile's phase A, whose first copies land behind phases B to D. */
		if (pass == 1 && t + 1 < nkt) /* @model v3.next */
			v3_stage_first(pl, a, stg, b, h0, rq0, k0, v3_first_key(pass, t + 1), vec);
		/* The staging area is free until P.V: its first V_VB groups of V
		 * rows land behind phases B to F. */
		if (pass != 1 && t >= 0 && t >= t_s) { /* @model v3.vpre */
#pragma unroll
			for (int x = 0; x < V_VB; x++)
				v3_stage_v(a, stg, b, h0, t * K_BK, x, vec);
		}
		/* the carries for the next tile: Z's last KR columns, P's last KP */
#if K_CQ && !V_ZIN
		const unsigned *zt = (const unsigned *)Z + K_BK / 2; /* the tile's last columns */
		v3_rows_copy<V_KR2>((unsigned *)Zc, V_KR2, zt, V_ZS / 2, V_ZROWS); /* @model rc=1 */
#endif
#if POST && KP > 0 && KP % 2 == 0
		/* P's carry by words (as Z's) */
		unsigned *pw = (unsigned *)P;
		if (pass == 2)
			v3_rows_copy<KP / 2>(pw, V_PS / 2, pw + K_BK / 2, V_PS / 2, K_HPB * RP); /* @model rc=2 */
#elif POST
		if (pass == 2)
			for (int row = threadIdx.x; row < K_HPB * RP; row += NT) /* @model v3.pshift */
#pragma unroll
				for (int x = 0; x < KP; x++)
					P[row * V_PS + x] = P[row * V_PS + K_BK + x]; /* @model ways=4 */
#endif
		__syncthreads(); /* P's carry is shifted before its new columns are written */
		/* Before t_s the tile only filled Z's carry. */
		if (t >= t_s) { /* @model v3.kts */
#if K_CQ
			/* Phase B: the pre-softmax convolution (reads Z, writes S) */
#if V_XC
			/* pass 1: the peers have read this block's logits of the tile
			 * before (pass 2: its P words said so) */
			if (pass == 1 && t > t_s)
				v3_xfree(xph);
#endif
			v3_toeplitz<0>(Z, WT, S, 0, 0, 0); /* @model cv=1 */
#if V_XC
			/* the logits of this block's rows: its peers' heads' */
			v3_xwait(2, (K_CS - 1) * K_HPB * V_OWNR * K_BK * 4, xph);
#else
			v3_xsync(); /* the logits are with their rows' blocks */
#endif
#endif
#if V_TCMIX
			/* Phases C and D: head mixing on the tensor cores, then statistics or
			 * probabilities from its accumulators */
			v3_mixsoft(pass, A_T, pass == 0 ? i0 : i0 - QP, sc0, nrows, S, WM1, P, M, L, A,
				   Pb);
#if V_XA
			/* P is with its heads' blocks: every peer's rows of this block's
			 * heads; a peer's words, each sent after the S rows it came from
			 * were read, also say S may be written again */
			if (pass == 2)
				v3_xwait(0, K_HPB * (RP - V_OWNR) * K_BK * 2, xph);
#if V_XC
			else if (pass == 1)
				v3_xread(t + 1 < nkt); /* S may be written again */
#endif
			else
#endif
				v3_xsync(); /* P is with its heads' blocks; S may be written again */
#else
#if K_HPRE
			/* Phase C: pre-softmax head mixing, in place */
			v3_mix<K_HPB>(S, RP * V_SS, V_SS, RP, WM1, (unsigned short *)0); /* @model mix=1 */
			__syncthreads();
#endif
			/* Phase D: statistics, or probabilities */
			v3_softmax(pass, A_T, pass == 0 ? i0 : i0 - QP, sc0, nrows, S, P, M, L, A, Pb);
			__syncthreads();
#endif
			/* Pass 1 ends here; before tile 0 the tile only filled P's carry. */
			if (pass != 1 && t >= 0) { /* @model v3.ktout */
				const int j0 = t * K_BK;
#if POST
				/* Phase E: post-softmax convolution into S's space */
#if K_CQ2
				v3_toeplitz<1>(P, W2, S, i0, j0, A_T); /* @model cv=2 */
#if V_XC
				/* the post-convolved P of this block's rows: its peers' heads' */
				v3_xwait(3, (K_CS - 1) * K_HPB * V_BQC * K_BK * 2, xph);
#else
				v3_xsync(); /* the post-convolved P is with its rows' blocks */
#endif
				float *X = S;
				const int xs = RP * V_SS, xr = V_SS;
#else
				unsigned short *X = P; /* no convolution: P itself (QP = KP = 0) */
				const int xs = RP * V_PS, xr = V_PS;
#endif
				/* Phase F: post-softmax head mixing, rounded into the P.V operand */
#if V_TCMIXP
				v3_pmix(S, WM2, Pb);
				(void)X;
				(void)xs;
				(void)xr;
#elif K_HPOST
				v3_mix<V_GS>(X, xs, xr, K_BQ, WM2, Pb); /* @model mix=2 */
#else
				v3_round(X, xs, xr, Pb);
#endif
#if V_XA
				/* P.V's operand is with its heads' blocks: every peer's
				 * V_BQC rows of this block's heads (and the post-convolved P
				 * they came from was read: S may be written again) */
				v3_xwait(1, K_HPB * (K_BQ - V_BQC) * K_BK * 2, xph);
#else
				v3_xsync(); /* P.V's operand is with its heads' blocks */
#endif
#endif
				/* Phase G */
				v3_pv(a, stg, b, h0, j0, Pb, A, vec, acc);
			}
		}
	}
}

__device__ __forceinline__ void v3_fwd(const mta_args &a);
#if K_CS > 1
#define V_CLUSTER MTA_CLUSTER_DIMS(K_CS)
#else
#define V_CLUSTER
#endif
extern "C" __global__ void MTA_BOUNDS V_CLUSTER mta_fwd(const mta_args a)
{
#if K_CS > 1 && defined(__CUDA_ARCH__) && __CUDA_ARCH__ < 900
	/* no clusters before sm_90: module loading (runtime/cuda/module.c) and
	 * the tuner's pruning refuse this build before it can run */
	__trap();
#else
	v3_fwd(a);
#endif
}

/* The kernel's body: one block of a cluster (or the block) of mta_fwd. */
__device__ __forceinline__ void v3_fwd(const mta_args &a)
{
	char *sm = mta_dyn_smem(); /* (the emulator's own block's in a cluster) */
	int b; /* packed documents: the document's first row (doc_tile, mta_cuda.cu) */
	/* Heaviest (latest) query tiles first: causal work grows with i0. */
	const int i0 = doc_tile(a, (gridDim.x - 1 - blockIdx.x) / K_CS, &b);
	const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5, g = lane >> 2, t4 = lane & 3;
	const int hc0 = blockIdx.y * K_CH, h0 = hc0 + v3_rank() * K_HPB; /* the cluster's, the block's */
	const int nkt = ((i0 + K_BQ < A_T ? i0 + K_BQ : A_T) + K_BK - 1) / K_BK;
	const bool vec = v3_vec(a) && v3_off32(a, A_T); /* 16-byte copies, planned offsets */
	float *M = (float *)(sm + OFF_ST), *L = M + K_CH * V_RPC;
	float acc[V_AK][4];
#pragma unroll
	for (int k = 0; k < V_AK; k++)
		acc[k][0] = acc[k][1] = acc[k][2] = acc[k][3] = 0.f;
	unsigned xph = 0; /* bit i: the parity of mbarrier i's next phase (V_XA) */

	/* Weights into shared memory, and the regions that must start finite. */
#if K_CQ
	{
		unsigned *WT = (unsigned *)(sm + OFF_WT);
		for (int e = tid; e < K_HPB * K_CQ * V_WTN; e += NT) { /* @model v3.wt */
			const int hu = e / V_WTN, x = e % V_WTN - 16;
			const float *w = a.kq_pre + (h0 + hu / K_CQ) * (K_CQ * K_CK) + hu % K_CQ * K_CK;
			const float lo = x >= 0 && x < K_CK ? w[x] : 0.f;
			const float hi = x + 1 >= 0 && x + 1 < K_CK ? w[x + 1] : 0.f;
			WT[e] = mta_f16x2_sat(lo, hi);
		}
		/* Z: rows and columns the convolution reads but q.k never writes stay 0 */
		unsigned short *Z = (unsigned short *)(sm + OFF_Z);
		for (int e = tid; e < K_HPB * V_ZR * V_ZS; e += NT) /* @model v3.z0 */
			Z[e] = 0;
	}
#endif
#if K_CQ2
	{
		unsigned *W2 = (unsigned *)(sm + OFF_W2);
		for (int e = tid; e < K_HPB * K_CQ2 * V_WTN2; e += NT) { /* @model v3.w2 */
			const int hu = e / V_WTN2, x = e % V_WTN2 - 16;
			const float *w = a.kq_post + (h0 + hu / K_CQ2) * (K_CQ2 * K_CK2) + hu % K_CQ2 * K_CK2;
			const float lo = x >= 0 && x < K_CK2 ? w[x] : 0.f;
			const float hi = x + 1 >= 0 && x + 1 < K_CK2 ? w[x + 1] : 0.f;
			W2[e] = mta_f16x2_sat(lo, hi);
		}
	}
#endif
#if K_HPRE
	for (int e = tid; e < K_CH * K_CH; e += NT) /* K_CH == H; @model v3.wm1 */
		((float *)(sm + OFF_WM1))[e] = a.head_pre[e];
#endif
#if K_HPOST == 1
	/* head_post [H/c, c, c], input index first: stored as W[g][out][in] */
	for (int e = tid; e < K_CH * K_HC; e += NT) { /* @model v3.wm2 */
		const int grp = e / (K_HC * K_HC), o = e / K_HC % K_HC, in = e % K_HC;
		((float *)(sm + OFF_WM2))[e] = a.head_post[(hc0 / K_HC + grp) * K_HC * K_HC + in * K_HC + o];
	}
#elif K_HPOST == 2
	for (int e = tid; e < K_CH * K_CH; e += NT) /* @model v3.wm2 */
		((float *)(sm + OFF_WM2))[e] = a.head_post[e];
#endif
#if POST
	for (int e = tid; e < SZ_P / 4; e += NT) /* past the carried and new columns: 0; @model v3.p0 */
		((unsigned *)(sm + OFF_P))[e] = 0;
#endif
	for (int e = tid; e < K_CH * V_RPC; e += NT) { /* @model v3.rows */
		M[e] = NEG_INF;
		L[e] = 0.f;
	}
#if V_QRES
	/* the q rows of the block's heads, once: every pass and key tile reads
	 * the same, rq0 = i0 - QP - QR on */
	for (int hh = 0; hh < K_HPB; hh++) /* @model v3.qres */
		v3_stage((unsigned short *)(sm + OFF_Q) + hh * V_ZM * V_DS, /* @model st=1 */
			 a.q + b * a.sq[0] + (h0 + hh) * a.sq[2], a.sq[1], i0 - QP - QR,
			 K_CQ ? RZ : RP, V_ZM, A_T, vec);
	mta_cp_commit();
	mta_cp_wait(0);
#endif
#if V_XA
	/* one arrival a phase (this block's expectation of its peers' bytes) */
	if (tid == 0) {
		mta_mbar_init(v3_mb(0), 1);
		mta_mbar_init(v3_mb(1), 1);
		mta_mbar_init(v3_mb(2), 1);
		mta_mbar_init(v3_mb(3), 1);
		mta_mbar_init(v3_mb(4), K_CS - 1); /* one arrival a peer */
		mta_mbar_fence_init();
	}
#endif
	/* a cluster's blocks store into each other's shared memory from the
	 * first tile on: every block has started (and set its memory and
	 * mbarriers up) */
	v3_xsync();

#if POST
	v3_pass(a, 1, sm, b, h0, i0, nkt, vec, acc, xph); /* @model pass=1 */
	for (int e = tid; e < K_CH * V_RPC; e += NT) /* @model v3.rows */
		L[e] = L[e] > 0.f ? 1.f / L[e] : 0.f;
	/* (with V_XC, pass 1's last tile sends no word that its logits were
	 * read: its peers' first logits of pass 2 wait for this) */
	v3_xsync();
	v3_pass(a, 2, sm, b, h0, i0, nkt, vec, acc, xph); /* @model pass=2 */
#else
	v3_pass(a, 0, sm, b, h0, i0, nkt, vec, acc, xph); /* @model pass=0 */
#endif

	/* Epilogue, one head at a time through the staging area. */
	float *Ob = (float *)(sm + OFF_STG);
#pragma unroll
	for (int hh = 0; hh < K_HPB; hh++) {
#pragma unroll
		for (int k = V_K0(hh); k <= V_K1(hh); k++) { /* @model v3.pvk */
			const int unit = V_UNIT(k, hh, warp);
			if (unit < 0 || unit >= V_UPH)
				continue;
#pragma unroll
			for (int p = 0; p < V_PW; p++) {
				const int m = unit * V_PW / V_NT8, nt = unit * V_PW % V_NT8 + p;
#pragma unroll
				for (int e = 0; e < 4; e++) {
					const int r = 16 * m + g + 8 * (e >> 1), c = nt * 8 + 2 * t4 + (e & 1);
					if (c < K_D)
						Ob[r * K_D + c] = acc[V_PW * k + p][e];
				}
			}
		}
		__syncthreads();
		for (int r = warp; r < K_BQ && i0 + r < A_T; r += K_WARPS) { /* @model v3.erow */
			const float inv = POST ? 1.f : 1.f / L[hh * RP + r];
			float o[DPL];
#pragma unroll
			for (int e = 0; e < DPL; e++)
				o[e] = lane + 32 * e < K_D ? Ob[r * K_D + lane + 32 * e] * inv : 0.f;
			finish_row(a, b, h0 + hh, i0 + r, o);
		}
		__syncthreads();
	}
}
