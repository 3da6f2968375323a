/*
 * mta_cuda_mma.cu: the tensor-core helpers of the kernel families that use
 * mma.sync (v2: mta_cuda_tc.cu, v3: mta_cuda_v3.cu). gen/cuda/cudagen.c
 * splices this text into templates/mta_cuda.cu at its mark, before the
 * family's own text. templates/cuda_emu.h has a portable twin of each inline
 * PTX helper, with the PTX ISA's fragment layouts.
 */

/* ---- PTX helpers; templates/cuda_emu.h has a portable twin of each ---- */
#ifndef MTA_EMU
__device__ __forceinline__ void mta_mma_bf16(float d[4], const unsigned a[4], const unsigned b[2])
{
	asm volatile("mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 "
		     "{%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, {%0,%1,%2,%3};"
		     : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
		     : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b[0]), "r"(b[1]));
}
__device__ __forceinline__ void mta_mma_f16(float d[4], const unsigned a[4], const unsigned b[2])
{
	asm volatile("mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 "
		     "{%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, {%0,%1,%2,%3};"
		     : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
		     : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b[0]), "r"(b[1]));
}
__device__ __forceinline__ unsigned mta_smem_addr(const void *p)
{
	return (unsigned)__cvta_generic_to_shared(p);
}
__device__ __forceinline__ void mta_ldsm_x4(unsigned r[4], const void *p)
{
	asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0,%1,%2,%3}, [%4];"
		     : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3]) : "r"(mta_smem_addr(p)));
}
__device__ __forceinline__ void mta_ldsm_x2(unsigned r[2], const void *p)
{
	asm volatile("ldmatrix.sync.aligned.m8n8.x2.shared.b16 {%0,%1}, [%2];"
		     : "=r"(r[0]), "=r"(r[1]) : "r"(mta_smem_addr(p)));
}
__device__ __forceinline__ void mta_ldsm_x4_t(unsigned r[4], const void *p)
{
	asm volatile("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0,%1,%2,%3}, [%4];"
		     : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3]) : "r"(mta_smem_addr(p)));
}
__device__ __forceinline__ void mta_ldsm_x2_t(unsigned r[2], const void *p)
{
	asm volatile("ldmatrix.sync.aligned.m8n8.x2.trans.shared.b16 {%0,%1}, [%2];"
		     : "=r"(r[0]), "=r"(r[1]) : "r"(mta_smem_addr(p)));
}
__device__ __forceinline__ void mta_cp_async16(void *dst, const void *src)
{
	asm volatile("cp.async.cg.shared.global [%0], [%1], 16;"
		     :: "r"(mta_smem_addr(dst)), "l"(src) : "memory");
}
/* 16 bytes, or 16 zero bytes when !full (the source is then not read). */
__device__ __forceinline__ void mta_cp_async16z(void *dst, const void *src, bool full)
{
	asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;"
		     :: "r"(mta_smem_addr(dst)), "l"(src), "r"(full ? 16 : 0) : "memory");
}
__device__ __forceinline__ void mta_cp_commit(void)
{
	asm volatile("cp.async.commit_group;" ::: "memory");
}
#define mta_cp_wait(n) asm volatile("cp.async.wait_group %0;" :: "n"(n) : "memory")
__device__ __forceinline__ unsigned short mta_f32_to_f16(float f)
{
	unsigned short h;
	asm("cvt.rn.f16.f32 %0, %1;" : "=h"(h) : "f"(f));
	return h;
}
/* e^x by ex2.approx.ftz (one MUFU after the scaling multiply): a result
 * under 2^-126 is 0, as softmax weights that small are (__expf's denormal
 * handling costs a compare and predicate juggling per call). */
__device__ __forceinline__ float mta_exp_ftz(float x)
{
	float y;
	asm("ex2.approx.ftz.f32 %0, %1;" : "=f"(y) : "f"(x * 1.4426950408889634f));
	return y;
}
/* 2^x by ex2.approx.ftz: a caller that scales by log2 e itself folds the
 * scaling into an FFMA (x log2e - m log2e) in place of mta_exp_ftz's
 * subtract and multiply. */
__device__ __forceinline__ float mta_ex2_ftz(float x)
{
	float y;
	asm("ex2.approx.ftz.f32 %0, %1;" : "=f"(y) : "f"(x));
	return y;
}
/* x, in a register of its own: an identity byte permute the compiler does
 * not see through (a copy it would coalesce with x). */
__device__ __forceinline__ unsigned mta_keep(unsigned x)
{
	unsigned v;
	asm volatile("prmt.b32 %0, %1, 0, 0x3210;" : "=r"(v) : "r"(x));
	return v;
}
/* This thread's lane, read again at each use (%laneid, volatile): values
 * made from it stay where they are used, where threadIdx.x & 31's would be
 * hoisted out of loops and held in registers through them. */
__device__ __forceinline__ int mta_lane(void)
{
	unsigned r;
	asm volatile("mov.u32 %0, %%laneid;" : "=r"(r));
	return (int)r;
}
/* Float to f16, to nearest even, a result beyond +-65504 saturating there. */
__device__ __forceinline__ unsigned short mta_f32_to_f16_sat(float f)
{
	unsigned short h;
	asm("cvt.rn.satfinite.f16.f32 %0, %1;" : "=h"(h) : "f"(f));
	return h;
}
/* Two of them as f16x2: lo in the low half (cvt's second operand), hi in the high. */
__device__ __forceinline__ unsigned mta_f16x2_sat(float lo, float hi)
{
	unsigned r;
	asm("cvt.rn.satfinite.f16x2.f32 %0, %1, %2;" : "=r"(r) : "f"(hi), "f"(lo));
	return r;
}
/* The same, not saturating (a result beyond +-65504 is infinity, as
 * mta_f32_to_f16's). */
__device__ __forceinline__ unsigned mta_f16x2(float lo, float hi)
{
	unsigned r;
	asm("cvt.rn.f16x2.f32 %0, %1, %2;" : "=r"(r) : "f"(hi), "f"(lo));
	return r;
}
/* Bytes of the pair (b:a) chosen by the nibbles of sel, lowest first (prmt.b32). */
__device__ __forceinline__ unsigned mta_prmt(unsigned a, unsigned b, unsigned sel)
{
	unsigned r;
	asm("prmt.b32 %0, %1, %2, %3;" : "=r"(r) : "r"(a), "r"(b), "r"(sel));
	return r;
}

/*
 * Clusters (sm_90; a kernel declares its size with MTA_CLUSTER_DIMS). Below
 * sm_90 they are a cluster of one: rank 0, the block's own shared memory,
 * a block barrier; so a source compiles for every target (a cluster
 * variant, when one exists, must be kept to sm_90 by its space: on sm_80 it
 * would run its blocks alone).
 */
/*
 * Named barrier id (1-15; 0 is __syncthreads') of n threads, whole warps:
 * bar.sync waits for the n, bar.arrive counts itself in and goes on (a
 * producer warp signals its consumers without waiting for them).
 */
__device__ __forceinline__ void mta_bar_sync(unsigned id, unsigned n)
{
	asm volatile("bar.sync %0, %1;" ::"r"(id), "r"(n) : "memory");
}
__device__ __forceinline__ void mta_bar_arrive(unsigned id, unsigned n)
{
	asm volatile("bar.arrive %0, %1;" ::"r"(id), "r"(n) : "memory");
}
/* A kernel's cluster size (sm_80 refuses __cluster_dims__). */
#if __CUDA_ARCH__ >= 900
#define MTA_CLUSTER_DIMS(n) __cluster_dims__(n, 1, 1)
#else
#define MTA_CLUSTER_DIMS(n)
#endif
/* This block's dynamic shared memory. */
__device__ __forceinline__ char *mta_dyn_smem(void)
{
	extern __shared__ float4 mta_smem[];
	return (char *)mta_smem;
}
__device__ __forceinline__ unsigned mta_cluster_rank(void)
{
#if __CUDA_ARCH__ >= 900
	unsigned r;
	asm volatile("mov.u32 %0, %%cluster_ctarank;" : "=r"(r));
	return r;
#else
	return 0;
#endif
}
__device__ __forceinline__ unsigned mta_cluster_nblocks(void)
{
#if __CUDA_ARCH__ >= 900
	unsigned n;
	asm volatile("mov.u32 %0, %%cluster_nctarank;" : "=r"(n));
	return n;
#else
	return 1;
#endif
}
/* Every thread of every block of the cluster arrives and waits; the
 * release/acquire pair orders shared-memory writes before it (own and
 * distributed) with reads after it. */
__device__ __forceinline__ void mta_cluster_sync(void)
{
#if __CUDA_ARCH__ >= 900
	asm volatile("barrier.cluster.arrive.release.aligned;\n\t"
		     "barrier.cluster.wait.acquire.aligned;" ::: "memory");
#else
	__syncthreads();
#endif
}
/* Every thread of every block of the cluster arrives and waits, ordering
 * nothing but the mbarriers' initialisation (mta_mbar_fence_init): after it
 * every block's barriers may be used by its peers. No MEMBAR. */
__device__ __forceinline__ void mta_cluster_start(void)
{
#if __CUDA_ARCH__ >= 900
	asm volatile("barrier.cluster.arrive.relaxed.aligned;\n\t"
		     "barrier.cluster.wait.aligned;" ::: "memory");
#else
	__syncthreads();
#endif
}
/* The generic address, in block rank's shared memory, of what p is in this
 * block's (mapa): loads and stores through it reach the peer's memory. */
template <typename T> __device__ __forceinline__ T *mta_cluster_map(T *p, unsigned rank)
{
#if __CUDA_ARCH__ >= 900
	unsigned long long r;
	asm volatile("mapa.u64 %0, %1, %2;" : "=l"(r) : "l"(p), "r"(rank));
	return (T *)r;
#else
	(void)rank;
	return p;
#endif
}
#if __CUDA_ARCH__ >= 900
/*
 * mbarriers (sm_90 only: a source that uses them must be kept to sm_90 by
 * its space). An mbarrier is an 8-byte object in shared memory that
 * completes a phase when `count` arrivals have come and every byte
 * expected of it (expect_tx) has landed; phases alternate parity 0, 1, 0,
 * ... from 0. Data moved by st.async and bulk copies is visible to a
 * thread once its wait on the barrier the data completes returns: point
 * to point, with no cluster barrier, whose release/acquire compiles to
 * MEMBAR.ALL.GPU and an L1 invalidation (docs/gpu/design.md).
 */
__device__ __forceinline__ unsigned mta_smem_u32(const void *p)
{
	return (unsigned)__cvta_generic_to_shared(p);
}
/* The shared::cluster address, in block rank, of what p is in this block (mapa). */
__device__ __forceinline__ unsigned mta_peer_u32(const void *p, unsigned rank)
{
	unsigned r;
	asm volatile("mapa.shared::cluster.u32 %0, %1, %2;" : "=r"(r) : "r"(mta_smem_u32(p)),
		     "r"(rank));
	return r;
}
/* Set bar to expect count arrivals a phase; mta_mbar_fence_init before
 * another block of the cluster uses it (after a cluster barrier). */
__device__ __forceinline__ void mta_mbar_init(unsigned long long *bar, unsigned count)
{
	asm volatile("mbarrier.init.shared::cta.b64 [%0], %1;" ::"r"(mta_smem_u32(bar)),
		     "r"(count) : "memory");
}
__device__ __forceinline__ void mta_mbar_fence_init(void)
{
	asm volatile("fence.mbarrier_init.release.cluster;" ::: "memory");
}
/* Arrive on this block's bar, expecting bytes more to land this phase. */
__device__ __forceinline__ void mta_mbar_expect(unsigned long long *bar, unsigned bytes)
{
	asm volatile("mbarrier.arrive.expect_tx.shared::cta.b64 _, [%0], %1;"
		     ::"r"(mta_smem_u32(bar)), "r"(bytes) : "memory");
}
/* Arrive on this block's bar. */
__device__ __forceinline__ void mta_mbar_arrive(unsigned long long *bar)
{
	asm volatile("mbarrier.arrive.shared::cta.b64 _, [%0];" ::"r"(mta_smem_u32(bar)) : "memory");
}
/* Arrive on block rank's copy of bar (this block's address of it): a
 * consumer tells a producer that a buffer is free. Release at the CTA
 * scope, as CUTLASS's cluster pipelines do: the consumer's reads of its own
 * shared memory are ordered before the arrival; .release.cluster would put
 * MEMBAR.ALL.GPU before every arrival (tests/test_cuda_mma.c counts). */
__device__ __forceinline__ void mta_mbar_arrive_peer(unsigned long long *bar, unsigned rank)
{
	asm volatile("mbarrier.arrive.shared::cluster.b64 _, [%0];" ::"r"(mta_peer_u32(bar, rank))
		     : "memory");
}
/* Wait until bar's phase of this parity has completed, and see what it
 * brought (st.async and bulk copies from any block of the cluster: their
 * bytes complete the phase). Acquire at the CTA scope: .acquire.cluster
 * would invalidate L1 (CCTL.IVALL) after every wait. */
__device__ __forceinline__ void mta_mbar_wait(unsigned long long *bar, unsigned parity)
{
	for (;;) { /* @model mbar.wait */
		unsigned done;
		asm volatile("{ .reg .pred p;\n\t"
			     "mbarrier.try_wait.parity.shared::cta.b64 p, [%1], %2;\n\t"
			     "selp.u32 %0, 1, 0, p; }"
			     : "=r"(done) : "r"(mta_smem_u32(bar)), "r"(parity) : "memory");
		if (done)
			break;
	}
}
/* Store 16 bytes (4 words) at block rank's copy of p, completing 16 bytes
 * of rank's copy of bar (both given by this block's addresses). */
__device__ __forceinline__ void mta_st_async16(void *p, unsigned rank, const unsigned v[4],
					       unsigned long long *bar)
{
	const unsigned d = mta_peer_u32(p, rank), b = mta_peer_u32(bar, rank);
	asm volatile("st.async.shared::cluster.mbarrier::complete_tx::bytes.v4.b32 [%0], "
		     "{%1, %2, %3, %4}, [%5];" ::"r"(d), "r"(v[0]), "r"(v[1]), "r"(v[2]),
		     "r"(v[3]), "r"(b) : "memory");
}
/*
 * A destination in a peer for many st.async of one thread: the peer's
 * addresses of p and of bar made once (mapa), the stores at byte offsets
 * from p (mta_peer_put32), where mta_st_async32 maps both a store.
 */
struct mta_peer {
	unsigned d, b;
};
__device__ __forceinline__ mta_peer mta_peer_at(void *p, unsigned rank, unsigned long long *bar)
{
	mta_peer x;
	x.d = mta_peer_u32(p, rank);
	x.b = mta_peer_u32(bar, rank);
	return x;
}
/* mta_st_async32 of v at byte off past the peer's p (4-byte aligned). */
__device__ __forceinline__ void mta_peer_put32(const mta_peer &x, unsigned off, unsigned v)
{
	asm volatile("st.async.shared::cluster.mbarrier::complete_tx::bytes.b32 [%0], %1, [%2];"
		     ::"r"(x.d + off), "r"(v), "r"(x.b) : "memory");
}
/* Store one word at block rank's copy of p (4-byte aligned), completing 4
 * bytes of rank's copy of bar. The complete_tx has release semantics at
 * the cluster scope: this thread's earlier reads and writes are ordered
 * before a wait that sees the phase complete. */
__device__ __forceinline__ void mta_st_async32(void *p, unsigned rank, unsigned v,
					       unsigned long long *bar)
{
	mta_peer_put32(mta_peer_at(p, rank, bar), 0, v);
}
/* Copy bytes (a multiple of 16, both addresses 16-byte aligned) from global
 * src to this block's dst by the bulk copy engine, completing on bar. */
__device__ __forceinline__ void mta_bulk_copy(void *dst, const void *src, unsigned bytes,
					      unsigned long long *bar)
{
	asm volatile("cp.async.bulk.shared::cluster.global.mbarrier::complete_tx::bytes "
		     "[%0], [%1], %2, [%3];" ::"r"(mta_smem_u32(dst)), "l"(src), "r"(bytes),
		     "r"(mta_smem_u32(bar)) : "memory");
}
/* Order this thread's ordinary writes of its shared memory before a bulk
 * copy (the async proxy) reads them: each writing thread, then a barrier,
 * then the copy (SASS FENCE.VIEW.ASYNC.S). */
__device__ __forceinline__ void mta_fence_async_smem(void)
{
	asm volatile("fence.proxy.async.shared::cta;" ::: "memory");
}
/* Copy bytes (a multiple of 16, 16-byte aligned) of this block's shared src
 * to block rank's copy of dst by the bulk copy engine, completing on rank's
 * copy of bar (dst and bar given by this block's addresses): a block of
 * rows to a cluster peer in one instruction. The source may be written
 * again only after mta_bulk_commit and mta_bulk_wait_read. */
__device__ __forceinline__ void mta_bulk_copy_peer(void *dst, unsigned rank, const void *src,
						   unsigned bytes, unsigned long long *bar)
{
	const unsigned d = mta_peer_u32(dst, rank), b = mta_peer_u32(bar, rank);
	asm volatile("cp.async.bulk.shared::cluster.shared::cta.mbarrier::complete_tx::bytes "
		     "[%0], [%1], %2, [%3];" ::"r"(d), "r"(mta_smem_u32(src)), "r"(bytes), "r"(b)
		     : "memory");
}
/* Close this thread's bulk copies into a group; wait until every group has
 * read its sources (the copies may still be landing). */
__device__ __forceinline__ void mta_bulk_commit(void)
{
	asm volatile("cp.async.bulk.commit_group;" ::: "memory");
}
__device__ __forceinline__ void mta_bulk_wait_read(void)
{
	asm volatile("cp.async.bulk.wait_group.read 0;" ::: "memory");
}
#endif
#endif

/* Round a float to the operand type, to nearest even (inputs are finite). */
__device__ __forceinline__ unsigned short to_op(float f)
{
#if K_DTYPE == 1
	unsigned u = __float_as_uint(f);
	return (unsigned short)((u + 0x7fffu + ((u >> 16) & 1u)) >> 16);
#else
	return mta_f32_to_f16(f);
#endif
}

/*
 * Two floats rounded to the operand type as one word, lo in the low half:
 * to_op's rounding (to nearest even, finite inputs), by one cvt on the
 * device (to_op's bf16 rounding by integers is six instructions a value).
 */
__device__ __forceinline__ unsigned to_op2(float lo, float hi)
{
#if !defined(MTA_EMU) && __CUDA_ARCH__ >= 800
	unsigned r;
#if K_DTYPE == 1
	asm("cvt.rn.bf16x2.f32 %0, %1, %2;" : "=r"(r) : "f"(hi), "f"(lo));
#else
	asm("cvt.rn.f16x2.f32 %0, %1, %2;" : "=r"(r) : "f"(hi), "f"(lo));
#endif
	return r;
#else
	return (unsigned)to_op(lo) | (unsigned)to_op(hi) << 16;
#endif
}

__device__ __forceinline__ void mma(float d[4], const unsigned a[4], const unsigned b[2])
{
#if K_DTYPE == 1
	mta_mma_bf16(d, a, b);
#else
	mta_mma_f16(d, a, b);
#endif
}

#define R16(x) (((x) + 15) / 16 * 16)
#define R8(x) (((x) + 7) / 8 * 8)
