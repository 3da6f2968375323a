/*
 * test_cuda_mma.c: the emulator's twins of mma.sync m16n8k16, ldmatrix and
 * cp.async (templates/cuda_emu.h) on one warp, against plain arithmetic and
 * the PTX ISA fragment layouts written out here independently.
 */
#include "tests/harness.h"
#include "runtime/ccompile.h"
#include "tests/cpu_util.h"
#include "runtime/core/cuda_args.h"
#include "runtime/cuda/nvrtc.h"
#include "tuner/model/model.h"

#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

const char *mta_embedded(const char *path);

/*
 * One warp: A [16][16] and B [16][8] (row-major, bf16 or f16 bits by
 * args.f16) go to shared memory; ldmatrix x4 reads A, x2.trans reads B's
 * k-rows, x2 reads Bt ([8][16], B transposed); mma.sync twice (B by either
 * route) into D1, D2 [32 lanes][4]; the raw registers of each ldmatrix come
 * back too. cp.async copies a 16-byte chunk per lane: before wait_group the
 * destination still holds the emulator's NaN poison, after it the data.
 */
static const char kernel_src[] =
	"struct margs { const unsigned short *A, *B, *Bt; float *D1, *D2; unsigned *ra, *rb, *rbt;\n"
	"  const float *cp_src; float *cp_before, *cp_after; int f16; };\n"
	"__global__ void k(const margs a) {\n"
	"  extern __shared__ float4 mta_smem[];\n"
	"  unsigned short *sA = (unsigned short *)mta_smem, *sB = sA + 256, *sBt = sB + 128;\n"
	"  float *sC = (float *)(sBt + 128);\n"
	"  const int l = threadIdx.x;\n"
	"  for (int e = l; e < 256; e += 32) sA[e] = a.A[e];\n"
	"  for (int e = l; e < 128; e += 32) { sB[e] = a.B[e]; sBt[e] = a.Bt[e]; }\n"
	"  __syncthreads();\n"
	"  unsigned ra[4], rb[2], rbt[2];\n"
	"  mta_ldsm_x4(ra, sA + (l & 15) * 16 + (l >> 4) * 8);\n"
	"  mta_ldsm_x2_t(rb, sB + (l & 15) * 8);\n"
	"  mta_ldsm_x2(rbt, sBt + (l & 7) * 16 + ((l >> 3) & 1) * 8);\n"
	"  float d1[4] = {0.5f, 0.5f, 0.5f, 0.5f}, d2[4] = {0, 0, 0, 0};\n"
	"  if (a.f16) { mta_mma_f16(d1, ra, rb); mta_mma_f16(d2, ra, rbt); }\n"
	"  else { mta_mma_bf16(d1, ra, rb); mta_mma_bf16(d2, ra, rbt); }\n"
	"  for (int i = 0; i < 4; i++) { a.D1[l * 4 + i] = d1[i]; a.D2[l * 4 + i] = d2[i]; a.ra[l * 4 + i] = ra[i]; }\n"
	"  for (int i = 0; i < 2; i++) { a.rb[l * 2 + i] = rb[i]; a.rbt[l * 2 + i] = rbt[i]; }\n"
	"  mta_cp_async16(sC + 4 * l, a.cp_src + 4 * l);\n"
	"  mta_cp_commit();\n"
	"  a.cp_before[l] = sC[4 * l + 1];\n"
	"  mta_cp_wait(0);\n"
	"  a.cp_after[l] = sC[4 * l + 1];\n"
	"}\n"
	"MTA_EMU_ENTRY(k, margs, 2048)\n";

struct margs {
	const uint16_t *A, *B, *Bt;
	float *D1, *D2;
	unsigned *ra, *rb, *rbt;
	const float *cp_src;
	float *cp_before, *cp_after;
	int f16;
};

typedef int (*launch_fn)(const void *, size_t, const unsigned[3], unsigned, size_t);

/*
 * Build kernel (its text after the emulator header) as a host library and
 * open its launcher into *dl, *fn; a refusal is a test failure with the
 * compiler's log. MTA_OK or the failing status.
 */
/* The emulator's build of kernel, with pre (macros the header reads) before its header. */
static int emu_kernel_pre(const char *pre, const char *kernel, void **dl, void **fn)
{
	mt_kcache();
	const char *hdr = mta_embedded("templates/cuda_emu.h");
	if (!hdr) {
		mt_fail(__FILE__, __LINE__, "templates/cuda_emu.h is not embedded");
		return MTA_EINVAL;
	}
	char *src = malloc(strlen(pre) + strlen(hdr) + strlen(kernel) + 1), so[4096], *log = NULL;
	if (!src)
		return MTA_ENOMEM;
	strcpy(src, pre);
	strcat(src, hdr);
	strcat(src, kernel);
	int rc = mta_cc_build(src, MTA_LANG_CXX, "-O1 -std=c++17", so, sizeof so, &log);
	CHECKF(rc == MTA_OK, "emulator test kernel: %s %.600s", mta_last_error(), log ? log : "");
	free(src);
	free(log);
	return rc == MTA_OK ? mta_cc_open(so, "mta_emu_launch", dl, fn) : rc;
}

static int emu_kernel(const char *kernel, void **dl, void **fn)
{
	return emu_kernel_pre("", kernel, dl, fn);
}

static float half_val(uint16_t h, int f16)
{
	if (!f16) {
		uint32_t u = (uint32_t)h << 16;
		float f;
		memcpy(&f, &u, 4);
		return f;
	}
	return mta_f16_to_f32(h);
}

static uint16_t lo(unsigned r) { return (uint16_t)(r & 0xffff); }
static uint16_t hi(unsigned r) { return (uint16_t)(r >> 16); }

TEST(cuda_mma_twins)
{
	void *dl = NULL, *fn = NULL;
	REQUIRE(emu_kernel(kernel_src, &dl, &fn) == MTA_OK);
	for (int f16 = 0; f16 < 2; f16++) {
		uint16_t A[256], B[128], Bt[128];
		float D1[128], D2[128], cps[128], before[32], after[32];
		unsigned ra[128], rb[64], rbt[64];
		for (int i = 0; i < 256; i++) /* small integers and halves: every product exact */
			A[i] = f16 ? mta_f32_to_f16((float)((i * 7) % 9 - 4) * 0.5f)
				   : mta_f32_to_bf16((float)((i * 5) % 11 - 5));
		for (int k = 0; k < 16; k++)
			for (int n = 0; n < 8; n++) {
				float x = (float)((k * 3 + n * 5) % 7 - 3);
				B[k * 8 + n] = Bt[n * 16 + k] = f16 ? mta_f32_to_f16(x) : mta_f32_to_bf16(x);
			}
		for (int i = 0; i < 128; i++)
			cps[i] = (float)i + 0.25f;
		struct margs a = { A, B, Bt, D1, D2, ra, rb, rbt, cps, before, after, f16 };
		const unsigned grid[3] = { 1, 1, 1 };
		REQUIRE(((launch_fn)fn)(&a, sizeof a, grid, 32, 2048) == 0);
		int bad = 0;
		for (int l = 0; l < 32; l++) {
			const int g = l >> 2, t = l & 3;
			/* PTX ISA: A fragment a0..a7 rows g, g+8; cols 2t.., 2t+8.. */
			const int ar[4] = { g, g + 8, g, g + 8 }, ac[4] = { 2 * t, 2 * t, 2 * t + 8, 2 * t + 8 };
			for (int i = 0; i < 4; i++)
				bad += lo(ra[l * 4 + i]) != A[ar[i] * 16 + ac[i]] ||
				       hi(ra[l * 4 + i]) != A[ar[i] * 16 + ac[i] + 1];
			/* B fragment: b0,b1 rows (k) 2t, 2t+1, col g; b2,b3 rows 2t+8.. */
			for (int i = 0; i < 2; i++) {
				const int k0 = 2 * t + 8 * i;
				bad += lo(rb[l * 2 + i]) != B[k0 * 8 + g] || hi(rb[l * 2 + i]) != B[(k0 + 1) * 8 + g];
				bad += rbt[l * 2 + i] != rb[l * 2 + i];
			}
			/* C/D: c0,c1 row g cols 2t, 2t+1; c2,c3 row g+8 */
			for (int i = 0; i < 4; i++) {
				const int row = g + 8 * (i >> 1), col = 2 * t + (i & 1);
				double s = 0;
				for (int k = 0; k < 16; k++)
					s += (double)half_val(A[row * 16 + k], f16) * half_val(B[k * 8 + col], f16);
				bad += D1[l * 4 + i] != (float)(s + 0.5) || D2[l * 4 + i] != (float)s;
			}
			bad += before[l] == before[l] || after[l] != cps[4 * l + 1];
		}
		CHECKF(bad == 0, "%s: %d fragment, product or cp.async mismatches", f16 ? "f16" : "bf16", bad);
	}
	mta_cc_close(dl);
}

/*
 * The twins of cvt.rn.satfinite.f16.f32 and .f16x2.f32 (v3 rounds its
 * Toeplitz operands with them): to nearest even as cvt.rn.f16.f32 (the
 * library's conversion) wherever that is finite, +-65504 where it would be
 * infinite, NaN kept; the pair's first operand in the low half.
 */
static const char sat_src[] =
	"struct sargs { const float *x; unsigned short *h; unsigned *p; int n; };\n"
	"__global__ void k(const sargs a) {\n"
	"  for (int i = threadIdx.x; i < a.n; i += 32) {\n"
	"    a.h[i] = mta_f32_to_f16_sat(a.x[i]);\n"
	"    a.p[i] = mta_f16x2_sat(a.x[i], a.x[(i + 1) % a.n]);\n"
	"  }\n"
	"}\n"
	"MTA_EMU_ENTRY(k, sargs, 0)\n";

TEST(cuda_emu_f16_satfinite)
{
	struct sargs {
		const float *x;
		uint16_t *h;
		unsigned *p;
		int n;
	};
	void *dl = NULL, *fn = NULL;
	REQUIRE(emu_kernel(sat_src, &dl, &fn) == MTA_OK);
	enum { N = 64 };
	float x[N] = { 1.f, -2.5f, 65504.f, -65504.f, 65519.f, 65520.f, -65520.f, 1e30f, -1e30f,
		       INFINITY, -INFINITY, NAN, 3e-8f, -6e-5f, 0.f, -0.f };
	for (int i = 16; i < N; i++) /* random magnitudes up to 2^20 */
		x[i] = (float)((mt_uniform() * 2 - 1) * ldexp(1, (int)(mt_uniform() * 20)));
	uint16_t h[N];
	unsigned pr[N];
	for (int i = 0; i < N; i++) {
		h[i] = 0x5555;
		pr[i] = 0x55555555u;
	}
	struct sargs a = { x, h, pr, N };
	const unsigned grid[3] = { 1, 1, 1 };
	REQUIRE(((launch_fn)fn)(&a, sizeof a, grid, 32, 0) == 0);
	int bad = 0;
	for (int i = 0; i < N; i++) {
		uint16_t want = mta_f32_to_f16(x[i]);
		if (x[i] != x[i])
			want = 0x7e00; /* any NaN: compared by class below */
		else if ((want & 0x7fff) == 0x7c00)
			want = (uint16_t)((want & 0x8000) | 0x7bff);
		int ok = x[i] != x[i] ? (h[i] & 0x7c00) == 0x7c00 && (h[i] & 0x3ff) : h[i] == want;
		const uint16_t l2 = (uint16_t)(pr[i] & 0xffff), h2 = (uint16_t)(pr[i] >> 16);
		const uint16_t next = h[(i + 1) % N];
		ok = ok && l2 == h[i] && h2 == next;
		if (!ok && bad++ < 4)
			mt_fail(__FILE__, __LINE__, "x = %g: half 0x%04x (want 0x%04x), pair 0x%08x",
				(double)x[i], h[i], want, pr[i]);
	}
	CHECK_EQ_INT(bad, 0);
	CHECK_EQ_INT(h[5], 0x7bff);  /* 65520 rounds to infinity: saturates */
	CHECK_EQ_INT(h[4], 0x7bff);  /* 65519 rounds to 65504 */
	CHECK_EQ_INT(h[7], 0x7bff);
	CHECK_EQ_INT(h[8], 0xfbff);
	mta_cc_close(dl);
}

/*
 * Clusters: blocks of 64 threads in clusters of four. Each block fills its
 * own shared memory and sums it behind its own __syncthreads; after a
 * cluster barrier it reads the next block's memory and writes into the
 * previous block's through mta_cluster_map (distributed shared memory);
 * after a second barrier it reads what the next block wrote there. The
 * same text compiles with NVRTC for sm_90 (clusters) and sm_80 (a cluster
 * of one), the helpers of templates/mta_cuda_mma.cu before it.
 */
static const char cluster_src[] =
	"#define CS 4\n"
	"struct cargs { unsigned *peer, *given, *sums, *ranks, *flags, *unwritten; int *shfl; };\n"
	"extern \"C\" __global__ void MTA_CLUSTER_DIMS(CS) mta_fwd(const cargs a) {\n"
	"  unsigned *sm = (unsigned *)mta_dyn_smem();\n"
	"  const unsigned r = mta_cluster_rank(), n = mta_cluster_nblocks(), t = threadIdx.x;\n"
	"  const unsigned b = blockIdx.x;\n"
	"  sm[t] = b * 1000 + t;\n"
	"  __syncthreads();\n"
	"  if (t == 0) { unsigned s = 0; for (int i = 0; i < 64; i++) s += sm[i]; sm[64] = s; }\n"
	"  mta_cluster_sync();\n"
	"  a.peer[b * 64 + t] = mta_cluster_map(sm, (r + 1) % n)[t];\n"
	"  mta_cluster_map(sm, (r + n - 1) % n)[128 + t] = b * 7 + t;\n"
	"  mta_cluster_sync();\n"
	"  a.given[b * 64 + t] = sm[128 + t];\n"
	"  if (t == 0) { a.sums[b] = sm[64]; a.ranks[b] = r | n << 8; }\n"
	"  if (t == 0) a.unwritten[b] = mta_cluster_map(sm, (r + 1) % n)[200];\n"
	"  a.shfl[b * 64 + t] = __shfl_xor_sync(0xffffffffu, (int)(b * 100 + t), 1);\n"
	"#ifdef MTA_EMU\n"
	"  if (t == 0) a.flags[b] = mta_cluster_map(a.peer, 0) == 0 && mta_cluster_map(sm, n) == 0;\n"
	"#endif\n"
	"}\n"
	"#ifdef MTA_EMU\n"
	"MTA_EMU_ENTRY_CLUSTER(mta_fwd, cargs, 1024, CS)\n"
	"#endif\n";

struct cargs {
	unsigned *peer, *given, *sums, *ranks, *flags, *unwritten;
	int *shfl;
};

TEST(cuda_emu_clusters)
{
	void *dl = NULL, *fn = NULL;
	REQUIRE(emu_kernel(cluster_src, &dl, &fn) == MTA_OK);
	enum { NB = 8, NT = 64 };
	unsigned peer[NB * NT], given[NB * NT], sums[NB], ranks[NB], flags[NB], unwritten[NB];
	int shfl[NB * NT];
	memset(peer, 0xff, sizeof peer);
	memset(given, 0xff, sizeof given);
	memset(sums, 0xff, sizeof sums);
	memset(ranks, 0xff, sizeof ranks);
	memset(flags, 0xff, sizeof flags);
	memset(unwritten, 0, sizeof unwritten);
	memset(shfl, 0xff, sizeof shfl);
	struct cargs a = { peer, given, sums, ranks, flags, unwritten, shfl };
	const unsigned grid[3] = { NB, 1, 1 };
	REQUIRE(((launch_fn)fn)(&a, sizeof a, grid, NT, 1024) == 0);
	int bad = 0;
	for (unsigned b = 0; b < NB; b++) {
		const unsigned r = b % 4, base = b - r, next = base + (r + 1) % 4;
		bad += sums[b] != NT * b * 1000 + NT * (NT - 1) / 2;
		bad += ranks[b] != (r | 4u << 8);
		bad += flags[b] != 1;
		bad += unwritten[b] != 0x7fc00000u; /* a peer's slot nothing wrote: its NaN fill */
		for (unsigned t = 0; t < NT; t++) {
			bad += peer[b * NT + t] != next * 1000 + t;
			bad += given[b * NT + t] != next * 7 + t;
			bad += shfl[b * NT + t] != (int)(b * 100 + (t ^ 1));
		}
		if (bad)
			mt_fail(__FILE__, __LINE__, "block %u: sum %u rank 0x%x flag %u peer[0] %u "
				"given[0] %u shfl[0] %d", b, sums[b], ranks[b], flags[b], peer[b * NT],
				given[b * NT], shfl[b * NT]);
		if (bad)
			break;
	}
	/* a grid that is not whole clusters is refused */
	const unsigned part[3] = { 6, 1, 1 };
	CHECK_EQ_INT(((launch_fn)fn)(&a, sizeof a, part, NT, 1024), -4);
	mta_cc_close(dl);
}

/*
 * Named barriers: two producer warps fill two slots in turn and announce
 * each by bar.arrive; two consumer warps bar.sync on it, copy the slot out
 * and hand it back by bar.arrive on a second pair of barriers, on which the
 * producers bar.sync before refilling. A barrier that did not count an
 * arrival, or did not hold a bar.sync, shows as NaN (the poison) or a
 * stale round. bad: 1, a thread uses barrier 0 (__syncthreads'); 2, two
 * warps disagree on a barrier's count (each would wait for ever); 3, a
 * block ends with a barrier half arrived (on the GPU a later bar.sync
 * would hang): each fails the launch, and nothing hangs.
 */
static const char named_src[] =
	"struct nargs { float *out; int rounds, bad; };\n"
	"extern \"C\" __global__ void mta_fwd(const nargs a) {\n"
	"  float *sm = (float *)mta_dyn_smem();\n"
	"  const int t = threadIdx.x, w = t >> 5;\n"
	"  if (a.bad == 1) { if (t == 0) mta_bar_sync(0, 128); return; }\n"
	"  if (a.bad == 2) { if (w == 0) mta_bar_sync(1, 64); else if (w == 1) mta_bar_sync(1, 96); return; }\n"
	"  if (a.bad == 3) { if (w < 2) mta_bar_arrive(1, 128); return; }\n"
	"  if (w < 2) {\n"
	"    for (int r = 0; r < a.rounds; r++) {\n"
	"      if (r >= 2) mta_bar_sync(2 + (r & 1), 128);\n"
	"      sm[(r & 1) * 64 + t] = (float)(r * 1000 + t);\n"
	"      mta_bar_arrive(4 + (r & 1), 128);\n"
	"    }\n"
	"  } else {\n"
	"    for (int r = 0; r < a.rounds; r++) {\n"
	"      mta_bar_sync(4 + (r & 1), 128);\n"
	"      a.out[r * 64 + t - 64] = sm[(r & 1) * 64 + t - 64];\n"
	"      if (r + 2 < a.rounds) mta_bar_arrive(2 + (r & 1), 128);\n"
	"    }\n"
	"  }\n"
	"}\n"
	"#ifdef MTA_EMU\n"
	"MTA_EMU_ENTRY(mta_fwd, nargs, 512)\n"
	"#endif\n";

struct nargs {
	float *out;
	int rounds, bad;
};

TEST(cuda_emu_named_barriers)
{
	void *dl = NULL, *fn = NULL;
	REQUIRE(emu_kernel(named_src, &dl, &fn) == MTA_OK);
	enum { R = 9 };
	float out[R * 64];
	for (int i = 0; i < R * 64; i++)
		out[i] = -1.f;
	struct nargs a = { out, R, 0 };
	const unsigned grid[3] = { 2, 1, 1 };
	REQUIRE(((launch_fn)fn)(&a, sizeof a, grid, 128, 512) == 0);
	int bad = 0;
	for (int r = 0; r < R; r++)
		for (int i = 0; i < 64; i++)
			if (out[r * 64 + i] != (float)(r * 1000 + i) && bad++ < 4)
				mt_fail(__FILE__, __LINE__, "round %d slot %d: %g", r, i,
					(double)out[r * 64 + i]);
	CHECK_EQ_INT(bad, 0);
	for (a.bad = 1; a.bad <= 3; a.bad++)
		CHECKF(((launch_fn)fn)(&a, sizeof a, grid, 128, 512) == -5, "misuse %d not refused",
		       a.bad);
	a.bad = 0; /* and the barriers are whole again for the next launch */
	REQUIRE(((launch_fn)fn)(&a, sizeof a, grid, 128, 512) == 0);
	mta_cc_close(dl);
}

/*
 * mbarriers in a cluster of 2: each block copies 1 KB of src by four bulk
 * copies on one barrier, then passes rounds of 64 words to the next block
 * of its cluster by st.async into two slots, each slot a "full" barrier at
 * the receiver (one arrival, expecting 256 bytes) and an "empty" one at the
 * sender (the receiver's remote arrival once it has read the slot); then
 * 256 bytes of its shared memory to the peer by one bulk copy. bad selects
 * a misuse: 1 waits on a barrier never initialised, 2 waits on one nothing
 * completes, 3 leaves 16 bytes expected at the block's end, 4 reads a slot
 * before its arrival (a kernel bug the emulator must show: the data lands
 * only when the phase completes), 5 writes the bulk copy's source again
 * before waiting for the copy to have read it.
 */
static const char mbar_src[] =
	"struct mbargs { unsigned *out, *copied, *peer; const unsigned *src; int rounds, bad; };\n"
	"extern \"C\" __global__ void MTA_CLUSTER_DIMS(2) mta_fwd(const mbargs a) {\n"
	"  char *base = mta_dyn_smem();\n"
	"  unsigned long long *full = (unsigned long long *)base, *empty = full + 2, *cp = full + 4;\n"
	"  unsigned long long *pc = full + 5;\n"
	"  unsigned *buf = (unsigned *)(base + 64), *got = buf + 128, *stage = got + 256, *recv = stage + 64;\n"
	"  const unsigned t = threadIdx.x, r = mta_cluster_rank(), n = mta_cluster_nblocks();\n"
	"  const unsigned b = blockIdx.x, to = (r + 1) % n, from = (r + n - 1) % n;\n"
	"#ifndef MBAR_LOOP_ONLY\n"
	"  if (a.bad == 1) { if (t == 0) mta_mbar_wait(cp, 0); return; }\n"
	"#endif\n"
	"  if (t == 0) {\n"
	"    mta_mbar_init(full, 1); mta_mbar_init(full + 1, 1);\n"
	"    mta_mbar_init(empty, 1); mta_mbar_init(empty + 1, 1); mta_mbar_init(cp, 1);\n"
	"    mta_mbar_init(pc, 1);\n"
	"    mta_mbar_fence_init();\n"
	"  }\n"
	"  mta_cluster_start();\n"
	"#ifndef MBAR_LOOP_ONLY\n"
	"  if (a.bad == 2) { if (t == 0) mta_mbar_wait(cp, 0); mta_cluster_sync(); return; }\n"
	"  if (a.bad == 3) { if (t == 0) mta_mbar_expect(cp, 16); mta_cluster_sync(); return; }\n"
	"#endif\n"
	"  if (t == 0) {\n"
	"    mta_mbar_expect(cp, 1024);\n"
	"    for (int c = 0; c < 4; c++) mta_bulk_copy(got + 64 * c, a.src + (b * 4 + c) * 64, 256, cp);\n"
	"  }\n"
	"  mta_mbar_wait(cp, 0);\n"
	"  for (unsigned i = t; i < 256; i += blockDim.x) a.copied[b * 256 + i] = got[i];\n"
	"  for (int k = 0; k < a.rounds; k++) {\n"
	"    const int s = k & 1;\n"
	"    const unsigned ph = (k >> 1) & 1;\n"
	"    if (t < 16) {\n"
	"      mta_mbar_wait(empty + s, ph ^ 1);\n"
	"      unsigned v[4];\n"
	"      for (int e = 0; e < 4; e++) v[e] = b * 100000 + k * 1000 + t * 4 + e;\n"
	"      mta_st_async16(buf + s * 64 + t * 4, to, v, full + s);\n"
	"    }\n"
	"    if (a.bad == 4) {\n"
	"      if (t < 64) a.out[(b * a.rounds + k) * 64 + t] = buf[s * 64 + t];\n"
	"      __syncthreads();\n"
	"    }\n"
	"    if (t == 0) mta_mbar_expect(full + s, 256);\n"
	"    mta_mbar_wait(full + s, ph);\n"
	"    if (t < 64 && a.bad != 4) a.out[(b * a.rounds + k) * 64 + t] = buf[s * 64 + t];\n"
	"    __syncthreads();\n"
	"    if (t == 0) mta_mbar_arrive_peer(empty + s, from);\n"
	"  }\n"
	/* 256 bytes of shared memory to the peer by one bulk copy; bad 5 writes
	 * the source again before the copy is known to have read it */
	"  if (t < 64) stage[t] = b * 7777 + t;\n"
	"  mta_fence_async_smem();\n"
	"  __syncthreads();\n"
	"  if (t == 0) {\n"
	"    mta_bulk_copy_peer(recv, to, stage, 256, pc);\n"
	"    mta_bulk_commit();\n"
	"    if (a.bad != 5) mta_bulk_wait_read();\n"
	"  }\n"
	"  __syncthreads();\n"
	"  if (t < 64) stage[t] = 0xdeadu;\n"
	"  mta_cluster_start(); /* the receiver expects after the overwrite */\n"
	"  if (t == 0) mta_mbar_expect(pc, 256);\n"
	"  mta_mbar_wait(pc, 0);\n"
	"  if (t < 64) a.peer[b * 64 + t] = recv[t];\n"
	"#ifndef MBAR_LOOP_ONLY\n"
	"  mta_cluster_sync(); /* no peer exits while its memory may be reached */\n"
	"#endif\n"
	"}\n"
	"#ifdef MTA_EMU\n"
	"MTA_EMU_ENTRY_CLUSTER(mta_fwd, mbargs, 4096, 2)\n"
	"#endif\n";

struct mbargs {
	unsigned *out, *copied, *peer;
	const unsigned *src;
	int rounds, bad;
};

TEST(cuda_emu_mbarriers)
{
	void *dl = NULL, *fn = NULL;
	/* a wait nothing completes fails after 2 s, not the default 30 */
	REQUIRE(emu_kernel_pre("#define MTA_EMU_MBAR_WAIT_S 2\n", mbar_src, &dl, &fn) == MTA_OK);
	enum { NB = 4, R = 7, NT = 128 };
	static unsigned out[NB * R * 64], copied[NB * 256], peer[NB * 64];
	static unsigned src[NB * 256] __attribute__((aligned(16)));
	const uint32_t seed = (uint32_t)mt_seed();
	for (int i = 0; i < NB * 256; i++)
		src[i] = seed * 2654435761u + (uint32_t)i * 40503u;
	memset(out, 0xff, sizeof out);
	memset(copied, 0xff, sizeof copied);
	memset(peer, 0xff, sizeof peer);
	struct mbargs a = { out, copied, peer, src, R, 0 };
	const unsigned grid[3] = { NB, 1, 1 };
	REQUIRE(((launch_fn)fn)(&a, sizeof a, grid, NT, 4096) == 0);
	int bad = 0;
	for (int i = 0; i < NB * 256; i++)
		if (copied[i] != src[i] && bad++ < 4)
			mt_fail(__FILE__, __LINE__, "bulk copy word %d: %#x, expected %#x", i, copied[i],
				src[i]);
	/* block b received the rounds of the block before it in its cluster */
	for (int b = 0; b < NB; b++)
		for (int k = 0; k < R; k++)
			for (int i = 0; i < 64; i++) {
				const unsigned from = (unsigned)(b ^ 1), got = out[(b * R + k) * 64 + i];
				if (got != from * 100000 + (unsigned)k * 1000 + (unsigned)i && bad++ < 8)
					mt_fail(__FILE__, __LINE__, "block %d round %d word %d: %u", b, k,
						i, got);
			}
	/* the bulk copy between shared memories: the peer's rows as written */
	for (int b = 0; b < NB; b++)
		for (int i = 0; i < 64; i++)
			if (peer[b * 64 + i] != (unsigned)((b ^ 1) * 7777 + i) && bad++ < 12)
				mt_fail(__FILE__, __LINE__, "block %d peer word %d: %#x", b, i,
					peer[b * 64 + i]);
	CHECK_EQ_INT(bad, 0);
	/* a source written again before the copy is known to have read it may
	 * reach the peer (the emulator reads it as late as the device may) */
	a.bad = 5;
	REQUIRE(((launch_fn)fn)(&a, sizeof a, grid, NT, 4096) == 0);
	for (int i = 0; i < NB * 64; i++)
		CHECKF(peer[i] == 0xdeadu, "peer word %d: %#x, not the source written late", i,
		       peer[i]);
	/* a slot read before its phase completes holds the poison (round 0) or an
	 * older round's words, never this round's */
	a.bad = 4;
	memset(out, 0xff, sizeof out);
	REQUIRE(((launch_fn)fn)(&a, sizeof a, grid, NT, 4096) == 0);
	int early = 0;
	for (int b = 0; b < NB; b++)
		for (int k = 0; k < R; k++)
			for (int i = 0; i < 64; i++) {
				const unsigned from = (unsigned)(b ^ 1), got = out[(b * R + k) * 64 + i];
				early += got == from * 100000 + (unsigned)k * 1000 + (unsigned)i;
				if (k == 0)
					CHECKF(got == 0x7fc00000u, "block %d word %d read early: %#x", b,
					       i, got);
			}
	CHECK_EQ_INT(early, 0);
	for (a.bad = 1; a.bad <= 3; a.bad++)
		CHECKF(((launch_fn)fn)(&a, sizeof a, grid, NT, 4096) == -6, "misuse %d not refused",
		       a.bad);
	a.bad = 0; /* and the next launch starts clean */
	memset(copied, 0xff, sizeof copied);
	REQUIRE(((launch_fn)fn)(&a, sizeof a, grid, NT, 4096) == 0);
	CHECK(memcmp(copied, src, sizeof src) == 0);
	mta_cc_close(dl);
}

TEST_COMPILE_BOUND(cuda_cluster_helpers_compile)
{
	const char *mma = mta_embedded("templates/mta_cuda_mma.cu");
	REQUIRE(mma != NULL);
	static const char pre[] = "#define K_DTYPE 1\n";
	const char *kernels[2] = { cluster_src, named_src };
	char *src[2];
	struct mta_nvrtc_job jobs[4];
	memset(jobs, 0, sizeof jobs);
	static const char *arch[2] = { "sm_90", "sm_80" };
	for (int k = 0; k < 2; k++) {
		src[k] = malloc(strlen(pre) + strlen(mma) + strlen(kernels[k]) + 1);
		REQUIRE(src[k] != NULL);
		strcpy(src[k], pre);
		strcat(src[k], mma);
		strcat(src[k], kernels[k]);
		for (int i = 0; i < 2; i++) {
			jobs[2 * k + i].source = src[k];
			jobs[2 * k + i].kernel = MTA_CUDA_KERNEL;
			jobs[2 * k + i].arch = arch[i];
		}
	}
	REQUIRE(mta_nvrtc_compile_batch(jobs, 4, 0) == MTA_OK);
	/* the SASS: sm_90's clusters have the cluster barrier, sm_80's are a block;
	 * the named barriers are BAR.SYNC and BAR.ARV with an id */
	char nvd[4096];
	const int have = mta_model_nvdisasm(nvd, sizeof nvd) == MTA_OK;
	CHECKF(have, "nvdisasm: %s", mta_last_error());
	static const char *want[4][2] = { { "UCGABAR_WAIT", NULL }, { NULL, "UCGABAR" },
					  { "BAR.ARV", NULL }, { "BAR.ARV", NULL } };
	for (int j = 0; j < 4; j++) {
		CHECKF(jobs[j].status == MTA_OK && jobs[j].cubin_size > 0, "%s %s: %s %.400s",
		       j < 2 ? "clusters" : "named barriers", arch[j % 2], jobs[j].message,
		       jobs[j].log ? jobs[j].log : "");
		CHECKF(jobs[j].stats.spill_stores == 0, "%s spills", arch[j % 2]);
		char *sass = NULL;
		if (have && jobs[j].status == MTA_OK &&
		    mta_sass_disasm(nvd, jobs[j].cubin, jobs[j].cubin_size, &sass) == MTA_OK) {
			if (want[j][0])
				CHECKF(strstr(sass, want[j][0]) != NULL, "job %d (%s): no %s", j,
				       arch[j % 2], want[j][0]);
			if (want[j][1])
				CHECKF(strstr(sass, want[j][1]) == NULL, "job %d (%s): %s", j,
				       arch[j % 2], want[j][1]);
		} else if (have) {
			CHECKF(0, "job %d: disassembly failed: %s", j, mta_last_error());
		}
		free(sass);
		mta_nvrtc_job_free(&jobs[j]);
	}
	free(src[0]);
	free(src[1]);
	/*
	 * The mbarrier helpers (sm_90 only), without the misuse paths and the
	 * closing cluster barrier: the exchange is bulk copies from global and
	 * between shared memories (UBLKCP.S.G, .S.S), st.async (STAS),
	 * arrivals local and remote and phase waits (SYNCS), the async-proxy
	 * fence (FENCE.VIEW.ASYNC.S, with a MEMBAR.ALL.CTA), and no GPU-wide
	 * memory barrier (MEMBAR.ALL.GPU) nor L1 invalidation (CCTL.IVALL) but
	 * the two relaxed cluster barriers' own: the reason to exchange through
	 * mbarriers rather than mta_cluster_sync.
	 */
	static const char lpre[] = "#define K_DTYPE 1\n#define MBAR_LOOP_ONLY 1\n";
	char *ms = malloc(strlen(lpre) + strlen(mma) + strlen(mbar_src) + 1);
	REQUIRE(ms != NULL);
	strcpy(ms, lpre);
	strcat(ms, mma);
	strcat(ms, mbar_src);
	struct mta_nvrtc_job mj;
	memset(&mj, 0, sizeof mj);
	mj.source = ms;
	mj.kernel = MTA_CUDA_KERNEL;
	mj.arch = "sm_90";
	REQUIRE(mta_nvrtc_compile_batch(&mj, 1, 0) == MTA_OK);
	CHECKF(mj.status == MTA_OK && mj.cubin_size > 0, "mbarriers sm_90: %s %.400s", mj.message,
	       mj.log ? mj.log : "");
	char *sass = NULL;
	if (have && mj.status == MTA_OK &&
	    mta_sass_disasm(nvd, mj.cubin, mj.cubin_size, &sass) == MTA_OK) {
		static const char *has[] = { "UBLKCP.S.G", "UBLKCP.S.S", "STAS.128",
					     "SYNCS.PHASECHK", "SYNCS.ARRIVE.TRANS64.RED",
					     "UCGABAR_WAIT", "FENCE.VIEW.ASYNC.S" };
		for (size_t i = 0; i < sizeof has / sizeof has[0]; i++)
			CHECKF(strstr(sass, has[i]) != NULL, "mbarriers: no %s", has[i]);
		CHECKF(strstr(sass, "MEMBAR.ALL.GPU") == NULL && strstr(sass, "MEMBAR.SC") == NULL,
		       "mbarriers: a GPU-wide MEMBAR in the exchange");
		int cctl = 0, cbar = 0;
		for (const char *x = sass; (x = strstr(x, "CCTL")); x++)
			cctl++;
		for (const char *x = sass; (x = strstr(x, "UCGABAR_WAIT")); x++)
			cbar++;
		CHECKF(cctl == cbar && cbar == 2, "mbarriers: %d CCTL, expected only the %d "
		       "relaxed cluster barriers' (2)", cctl, cbar);
	} else if (have) {
		CHECKF(0, "mbarriers: disassembly failed: %s", mta_last_error());
	}
	free(sass);
	mta_nvrtc_job_free(&mj);
	free(ms);
}
