/*
 * cuda_emu.h: run CUDA kernel source on the CPU, for tests.
 *
 * Prepended to a generated CUDA source and compiled with the host C++
 * compiler into a shared object, it supplies what the templates use from
 * CUDA: __global__/__device__, threadIdx/blockIdx/blockDim/gridDim,
 * dynamic shared memory (extern __shared__ arrays, mapped to one global
 * buffer: templates must not use static __shared__ arrays), __syncthreads,
 * __syncwarp (a barrier of the warp's 32 threads), warp shuffles and votes,
 * the math intrinsics, and a portable twin of each
 * inline-PTX helper (mta_f16_to_f32; mma.sync, ldmatrix and cp.async below).
 *
 * Semantics: blocks run one at a time (a cluster's blocks together, below);
 * the threads of a block are real pthreads, so __syncthreads is a real
 * barrier (pthread_barrier_t). A shuffle
 * writes the lane's value into a per-warp buffer, waits at a per-warp
 * barrier, reads the partner's slot, and waits again; so every lane of the
 * warp must take part, as the *_sync intrinsics require with a full mask.
 * Shared memory is filled with NaN before each block, so a read of a slot
 * the block never wrote shows up in the output.
 *
 * Clusters (sm_90): MTA_EMU_ENTRY_CLUSTER(kernel, argtype, smem_needed, n)
 * runs the n blocks of each cluster (consecutive in x) at once, each with
 * shared memory of its own: a cluster kernel reaches its own through
 * mta_dyn_smem() (the extern array mta_smem is rank 0's), a peer's through
 * mta_cluster_map(p, rank) (PTX mapa), and waits for the whole cluster at
 * mta_cluster_sync() (barrier.cluster arrive + wait). Each block's shared
 * memory is NaN-filled before the cluster starts, and a cluster starts only
 * when the one before it has finished, as on the device.
 *
 * MTA_EMU_ENTRY(kernel, argtype, smem_needed) at the end of a template
 * exports: extern "C" int mta_emu_launch(const void *args, size_t args_size,
 *   const unsigned grid[3], unsigned threads, size_t smem_bytes);
 * returning 0, or -1 for a wrong argument size, -2 for too little shared
 * memory, -3 when threads cannot be started, -4 for a grid that is not
 * whole clusters, -5 for a named barrier used wrongly (mta_bar_sync), -6
 * for an mbarrier used wrongly or waited on forever (mta_mbar_wait).
 */
#ifndef MTA_CUDA_EMU_H
#define MTA_CUDA_EMU_H
#define MTA_EMU 1

#include <math.h>
#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define __global__
#define __device__
#define __host__
#define __shared__
#define __forceinline__ inline
#define __restrict__ __restrict
#define __launch_bounds__(...)
#define __cluster_dims__(...)
#define MTA_CLUSTER_DIMS(n)

struct uint3 { unsigned x, y, z; };
struct dim3 { unsigned x, y, z; };
struct float4 { float x, y, z, w; };
struct float2 { float x, y; };
static inline float2 make_float2(float x, float y) { return float2{ x, y }; }
static inline float4 make_float4(float x, float y, float z, float w) { return float4{ x, y, z, w }; }

static thread_local uint3 threadIdx;
static thread_local uint3 blockIdx;
static dim3 blockDim, gridDim;

#define MTA_EMU_SMEM_MAX (232448 / 16)
#define MTA_EMU_CLUSTER_MAX 8 /* the portable cluster size of sm_90 */
/* The dynamic shared memory every extern __shared__ declaration names:
 * that of rank 0 in a cluster; the other ranks' follow. */
float4 mta_smem[MTA_EMU_SMEM_MAX];
static float4 mta_emu_smem_peer[MTA_EMU_CLUSTER_MAX - 1][MTA_EMU_SMEM_MAX];

static unsigned mta_emu_csize = 1;          /* blocks a cluster (x) */
static size_t mta_emu_smem_bytes;           /* a block's dynamic shared memory */
static thread_local unsigned mta_emu_rank;  /* the calling thread's block in its cluster */
static pthread_barrier_t mta_emu_block_bar[MTA_EMU_CLUSTER_MAX];
static pthread_barrier_t mta_emu_cluster_bar;
static pthread_barrier_t mta_emu_warp_bar[MTA_EMU_CLUSTER_MAX * 32];
static uint32_t mta_emu_xchg[MTA_EMU_CLUSTER_MAX * 32][32];

static inline char *mta_emu_cta_smem(unsigned rank)
{
	return rank ? (char *)mta_emu_smem_peer[rank - 1] : (char *)mta_smem;
}
/* The calling thread's warp, numbered across the cluster's blocks. */
static inline unsigned mta_emu_warp(void) { return mta_emu_rank * 32 + (threadIdx.x >> 5); }

static inline void __syncthreads(void) { pthread_barrier_wait(&mta_emu_block_bar[mta_emu_rank]); }
/* Every lane of the calling thread's warp must arrive (the templates pass the full mask). */
static inline void __syncwarp(unsigned = 0xffffffffu)
{
	pthread_barrier_wait(&mta_emu_warp_bar[mta_emu_warp()]);
}

/* ---- clusters: the twins of the PTX helpers in mta_cuda_mma.cu ---- */
/* This block's dynamic shared memory (its own in a cluster). */
static inline char *mta_dyn_smem(void) { return mta_emu_cta_smem(mta_emu_rank); }
static inline unsigned mta_cluster_rank(void) { return mta_emu_rank; }
static inline unsigned mta_cluster_nblocks(void) { return mta_emu_csize; }
/* Every thread of every block of the cluster; memory ordered across it. */
static inline void mta_cluster_sync(void) { pthread_barrier_wait(&mta_emu_cluster_bar); }
/* The relaxed cluster barrier of mbarrier set-up: here the same barrier. */
static inline void mta_cluster_start(void) { pthread_barrier_wait(&mta_emu_cluster_bar); }

/*
 * Named barriers 1-15 of a block (bar.sync / bar.arrive id, n; 0 is
 * __syncthreads'): one completes when n threads have arrived by either, n
 * a multiple of 32 (whole warps, as on the GPU), the same n at every
 * arrival; bar.sync waits for the completion, bar.arrive does not. A wrong
 * id or count, or a barrier a block leaves half arrived, fails the launch
 * (mta_emu_launch returns -5): the misuse lets every waiter of the launch
 * through (where the GPU would hang or misbehave), and the arrivals left
 * at a block's end are counted and cleared before its rank's next block.
 */
struct mta_emu_nbar {
	pthread_mutex_t mu;
	pthread_cond_t cv;
	unsigned count, gen, n;
};
static struct mta_emu_nbar mta_emu_nbars[MTA_EMU_CLUSTER_MAX][16];
static int mta_emu_nbar_bad;
/* Mark the launch failed and wake every waiter (each checks the mark). */
static inline void mta_emu_nbar_fail(void)
{
	__atomic_store_n(&mta_emu_nbar_bad, 1, __ATOMIC_SEQ_CST);
	for (unsigned r = 0; r < mta_emu_csize; r++)
		for (int i = 1; i < 16; i++) {
			pthread_mutex_lock(&mta_emu_nbars[r][i].mu);
			pthread_cond_broadcast(&mta_emu_nbars[r][i].cv);
			pthread_mutex_unlock(&mta_emu_nbars[r][i].mu);
		}
}
static inline void mta_emu_named(unsigned id, unsigned n, int wait)
{
	if (id < 1 || id > 15 || n < 32 || n % 32 || n > blockDim.x) {
		mta_emu_nbar_fail();
		return;
	}
	struct mta_emu_nbar *b = &mta_emu_nbars[mta_emu_rank][id];
	pthread_mutex_lock(&b->mu);
	if (b->count == 0)
		b->n = n;
	if (b->n != n) {
		pthread_mutex_unlock(&b->mu);
		mta_emu_nbar_fail();
		return;
	}
	const unsigned gen = b->gen;
	if (++b->count == n) {
		b->count = 0;
		b->gen++;
		pthread_cond_broadcast(&b->cv);
	} else if (wait) {
		while (gen == b->gen && !__atomic_load_n(&mta_emu_nbar_bad, __ATOMIC_SEQ_CST))
			pthread_cond_wait(&b->cv, &b->mu);
	}
	pthread_mutex_unlock(&b->mu);
}
static inline void mta_bar_sync(unsigned id, unsigned n) { mta_emu_named(id, n, 1); }
static inline void mta_bar_arrive(unsigned id, unsigned n) { mta_emu_named(id, n, 0); }
/*
 * The address in block rank's shared memory of what p is in this block's
 * (mapa). A pointer outside this block's shared memory, or a rank outside
 * the cluster, maps to NULL: the kernel faults here as mapa's result would
 * on the device.
 */
template <typename T> static inline T *mta_cluster_map(T *p, unsigned rank)
{
	const char *own = mta_emu_cta_smem(mta_emu_rank), *c = (const char *)p;
	if (rank >= mta_emu_csize || c < own || c >= own + mta_emu_smem_bytes)
		return (T *)0;
	return (T *)(mta_emu_cta_smem(rank) + (c - own));
}

/*
 * mbarriers (the twins of mta_mbar_*, mta_st_async16 and 32, mta_bulk_copy and
 * mta_bulk_copy_peer with its commit and read wait):
 * a table beside shared memory, keyed by the barrier's address, under one
 * lock. Data moved by st.async and bulk copies is held with its barrier
 * and written only when the barrier's phase completes, the latest the
 * device may land it: a kernel that reads it before its wait returns reads
 * the NaN poison or old data. Misuse fails the launch (-6) and never
 * hangs: a barrier used before mta_mbar_init, an arrival past the count, a
 * wait that nothing completes in MTA_EMU_MBAR_WAIT_S seconds, bytes still
 * expected when the cluster ends, or a phase that no thread waited for
 * before the barrier's last (a consumer's "free" arrival that its producer
 * never waits on: the emulator lands st.async bytes late, so a missing
 * write-after-read wait would not show in the data). The table is cleared
 * after each cluster.
 */
#define MTA_EMU_MBAR_MAX 256
#ifndef MTA_EMU_MBAR_WAIT_S
#define MTA_EMU_MBAR_WAIT_S 30
#endif
/*
 * A transfer landing at its barrier's phase end: n bytes for dst from src
 * (read then: a peer copy's source is read as late as the device may, until
 * its issuer's mta_bulk_wait_read takes a copy of it into own) or from v.
 */
struct mta_emu_mrec {
	char *dst;
	const void *src;
	unsigned n;
	unsigned char v[16];
	int issuer;    /* a peer copy's thread (rank * 1024 + tid), -1 none */
	int committed; /* its issuer has committed it */
	void *own;     /* the source, copied at mta_bulk_wait_read */
};
struct mta_emu_mbar {
	const void *addr;
	unsigned count, pending;
	unsigned long phase;          /* phases completed */
	unsigned long seen;           /* phases completed up to the latest one waited for */
	long tx;                      /* bytes expected and not yet landed */
	struct mta_emu_mrec *rec;     /* data landing at the phase's end */
	size_t nrec, caprec;
};
static struct mta_emu_mbar mta_emu_mbars[MTA_EMU_MBAR_MAX];
static int mta_emu_nmbar, mta_emu_mbar_bad;
static pthread_mutex_t mta_emu_mbar_mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t mta_emu_mbar_cv = PTHREAD_COND_INITIALIZER;

/* under the lock: the barrier at a, NULL if none */
static inline struct mta_emu_mbar *mta_emu_mbar_find(const void *a)
{
	for (int i = 0; a && i < mta_emu_nmbar; i++)
		if (mta_emu_mbars[i].addr == a)
			return &mta_emu_mbars[i];
	return 0;
}
/* under the lock: the barrier at a (NULL, and the launch failed, if none) */
static inline struct mta_emu_mbar *mta_emu_mbar_at(const void *a)
{
	struct mta_emu_mbar *m = mta_emu_mbar_find(a);
	if (m)
		return m;
	mta_emu_mbar_bad = 1;
	pthread_cond_broadcast(&mta_emu_mbar_cv);
	return 0;
}
/* under the lock: complete m's phase when every arrival and byte is in */
static inline void mta_emu_mbar_step(struct mta_emu_mbar *m)
{
	if (m->pending || m->tx)
		return;
	for (size_t i = 0; i < m->nrec; i++) {
		struct mta_emu_mrec *r = &m->rec[i];
		memcpy(r->dst, r->own ? r->own : r->src ? r->src : r->v, r->n);
		free(r->own);
	}
	m->nrec = 0;
	m->pending = m->count;
	m->phase++;
	pthread_cond_broadcast(&mta_emu_mbar_cv);
}
static inline void mta_emu_mbar_arrive(struct mta_emu_mbar *m, long bytes)
{
	if (!m)
		return;
	if (!m->pending) { /* an arrival past the count */
		mta_emu_mbar_bad = 1;
		pthread_cond_broadcast(&mta_emu_mbar_cv);
		return;
	}
	m->tx += bytes;
	m->pending--;
	mta_emu_mbar_step(m);
}
/* under the lock: n bytes for dst (from src, or the bytes at v) landing on m */
static inline void mta_emu_mbar_data(struct mta_emu_mbar *m, void *dst, const void *src,
				     const void *v, unsigned n)
{
	if (!m || !dst)
		return;
	if (m->nrec == m->caprec) {
		size_t cap = m->caprec ? 2 * m->caprec : 64;
		struct mta_emu_mrec *r =
			(struct mta_emu_mrec *)realloc(m->rec, cap * sizeof *r);
		if (!r) {
			mta_emu_mbar_bad = 1;
			return;
		}
		m->rec = r;
		m->caprec = cap;
	}
	struct mta_emu_mrec *r = &m->rec[m->nrec++];
	memset(r, 0, sizeof *r);
	r->dst = (char *)dst;
	r->src = src;
	r->n = n;
	r->issuer = -1;
	if (v)
		memcpy(r->v, v, n);
	m->tx -= n;
	mta_emu_mbar_step(m);
}
static inline void mta_mbar_init(unsigned long long *bar, unsigned count)
{
	pthread_mutex_lock(&mta_emu_mbar_mu);
	struct mta_emu_mbar *m = mta_emu_mbar_find(bar);
	if (!m && mta_emu_nmbar < MTA_EMU_MBAR_MAX)
		m = &mta_emu_mbars[mta_emu_nmbar++];
	if (m && count) {
		m->addr = bar;
		m->count = m->pending = count;
		m->phase = m->seen = 0;
		m->tx = 0;
		m->nrec = 0;
	} else {
		mta_emu_mbar_bad = 1;
	}
	pthread_mutex_unlock(&mta_emu_mbar_mu);
}
static inline void mta_mbar_fence_init(void) {}
static inline void mta_mbar_expect(unsigned long long *bar, unsigned bytes)
{
	pthread_mutex_lock(&mta_emu_mbar_mu);
	mta_emu_mbar_arrive(mta_emu_mbar_at(bar), bytes);
	pthread_mutex_unlock(&mta_emu_mbar_mu);
}
static inline void mta_mbar_arrive(unsigned long long *bar) { mta_mbar_expect(bar, 0); }
static inline void mta_mbar_arrive_peer(unsigned long long *bar, unsigned rank)
{
	pthread_mutex_lock(&mta_emu_mbar_mu);
	mta_emu_mbar_arrive(mta_emu_mbar_at(mta_cluster_map(bar, rank)), 0);
	pthread_mutex_unlock(&mta_emu_mbar_mu);
}
static inline void mta_mbar_wait(unsigned long long *bar, unsigned parity)
{
	struct timespec dl;
	clock_gettime(CLOCK_REALTIME, &dl);
	dl.tv_sec += MTA_EMU_MBAR_WAIT_S;
	pthread_mutex_lock(&mta_emu_mbar_mu);
	struct mta_emu_mbar *m = mta_emu_mbar_at(bar);
	while (m && (m->phase & 1) == (parity & 1) && !mta_emu_mbar_bad)
		if (pthread_cond_timedwait(&mta_emu_mbar_cv, &mta_emu_mbar_mu, &dl)) {
			mta_emu_mbar_bad = 1; /* nothing completes it */
			pthread_cond_broadcast(&mta_emu_mbar_cv);
		}
	if (m && m->phase) { /* the phase waited for: the latest of its parity */
		const unsigned long k = ((m->phase - 1) & 1) == (parity & 1) ? m->phase : m->phase - 1;
		m->seen = k > m->seen ? k : m->seen;
	}
	pthread_mutex_unlock(&mta_emu_mbar_mu);
}
/* st.async of n bytes (4 or 16, p aligned to n) from v into block rank's p,
 * completing on its bar: held there until the phase ends. */
static inline void mta_emu_st_async(void *p, unsigned rank, const void *v, unsigned n,
				    unsigned long long *bar)
{
	pthread_mutex_lock(&mta_emu_mbar_mu);
	void *d = mta_cluster_map(p, rank);
	struct mta_emu_mbar *m = mta_emu_mbar_at(mta_cluster_map(bar, rank));
	if (!d || ((uintptr_t)p & (n - 1)))
		mta_emu_mbar_bad = 1;
	else
		mta_emu_mbar_data(m, d, 0, v, n);
	pthread_mutex_unlock(&mta_emu_mbar_mu);
}
static inline void mta_st_async16(void *p, unsigned rank, const unsigned v[4],
				  unsigned long long *bar)
{
	mta_emu_st_async(p, rank, v, 16, bar);
}
static inline void mta_st_async32(void *p, unsigned rank, unsigned v, unsigned long long *bar)
{
	mta_emu_st_async(p, rank, &v, 4, bar);
}
/* Twins of mta_peer_at and mta_peer_put32: this block's addresses kept,
 * each store mapped as mta_st_async32's. */
struct mta_peer {
	char *p;
	unsigned rank;
	unsigned long long *bar;
};
static inline struct mta_peer mta_peer_at(void *p, unsigned rank, unsigned long long *bar)
{
	struct mta_peer x = { (char *)p, rank, bar };
	return x;
}
static inline void mta_peer_put32(const struct mta_peer &x, unsigned off, unsigned v)
{
	mta_st_async32(x.p + off, x.rank, v, x.bar);
}
static inline void mta_bulk_copy(void *dst, const void *src, unsigned bytes,
				 unsigned long long *bar)
{
	pthread_mutex_lock(&mta_emu_mbar_mu);
	struct mta_emu_mbar *m = mta_emu_mbar_at(bar);
	if (!mta_cluster_map(dst, mta_emu_rank) || !bytes || bytes % 16 || ((uintptr_t)dst & 15) ||
	    ((uintptr_t)src & 15))
		mta_emu_mbar_bad = 1;
	else
		mta_emu_mbar_data(m, dst, src, 0, bytes);
	pthread_mutex_unlock(&mta_emu_mbar_mu);
}
static inline void mta_fence_async_smem(void) {}
static inline void mta_bulk_copy_peer(void *dst, unsigned rank, const void *src, unsigned bytes,
				      unsigned long long *bar)
{
	pthread_mutex_lock(&mta_emu_mbar_mu);
	void *d = mta_cluster_map(dst, rank);
	struct mta_emu_mbar *m = mta_emu_mbar_at(mta_cluster_map(bar, rank));
	if (!d || !mta_cluster_map((void *)src, mta_emu_rank) || !bytes || bytes % 16 ||
	    ((uintptr_t)dst & 15) || ((uintptr_t)src & 15)) {
		mta_emu_mbar_bad = 1;
	} else if (m) {
		const size_t at = m->nrec;
		mta_emu_mbar_data(m, d, src, 0, bytes);
		/* still pending (its phase not completed by it): its issuer's */
		if (m->nrec > at)
			m->rec[at].issuer = (int)(mta_emu_rank * 1024 + threadIdx.x);
	}
	pthread_mutex_unlock(&mta_emu_mbar_mu);
}
/* the calling thread's pending peer copies: commit them, or take copies of their sources */
static inline void mta_emu_bulk_mine(int read)
{
	const int me = (int)(mta_emu_rank * 1024 + threadIdx.x);
	pthread_mutex_lock(&mta_emu_mbar_mu);
	for (int i = 0; i < mta_emu_nmbar; i++)
		for (size_t k = 0; k < mta_emu_mbars[i].nrec; k++) {
			struct mta_emu_mrec *r = &mta_emu_mbars[i].rec[k];
			if (r->issuer != me || r->own)
				continue;
			if (!read) {
				r->committed = 1;
			} else if (r->committed) {
				if ((r->own = malloc(r->n)))
					memcpy(r->own, r->src, r->n);
				else
					mta_emu_mbar_bad = 1;
			}
		}
	pthread_mutex_unlock(&mta_emu_mbar_mu);
}
static inline void mta_bulk_commit(void) { mta_emu_bulk_mine(0); }
static inline void mta_bulk_wait_read(void) { mta_emu_bulk_mine(1); }
/* After a cluster: bytes still expected, or a phase before the last that
 * no thread waited for, are a misuse; the table is cleared. */
static inline void mta_emu_mbar_reset(void)
{
	pthread_mutex_lock(&mta_emu_mbar_mu);
	for (int i = 0; i < mta_emu_nmbar; i++) {
		if (mta_emu_mbars[i].tx || mta_emu_mbars[i].nrec ||
		    mta_emu_mbars[i].phase > mta_emu_mbars[i].seen + 1)
			mta_emu_mbar_bad = 1;
		for (size_t k = 0; k < mta_emu_mbars[i].nrec; k++)
			free(mta_emu_mbars[i].rec[k].own);
		free(mta_emu_mbars[i].rec);
		memset(&mta_emu_mbars[i], 0, sizeof mta_emu_mbars[i]);
	}
	mta_emu_nmbar = 0;
	pthread_mutex_unlock(&mta_emu_mbar_mu);
}

/* Every lane publishes v, then reads lane src's value. */
static inline uint32_t mta_emu_exchange(uint32_t v, int src)
{
	const unsigned w = mta_emu_warp(), l = threadIdx.x & 31;
	mta_emu_xchg[w][l] = v;
	pthread_barrier_wait(&mta_emu_warp_bar[w]);
	uint32_t r = mta_emu_xchg[w][src & 31];
	pthread_barrier_wait(&mta_emu_warp_bar[w]);
	return r;
}

static inline uint32_t mta_emu_bits(float f) { uint32_t u; memcpy(&u, &f, 4); return u; }
static inline float mta_emu_float(uint32_t u) { float f; memcpy(&f, &u, 4); return f; }

static inline float __uint_as_float(unsigned u) { return mta_emu_float(u); }
static inline float __int_as_float(int i) { return mta_emu_float((uint32_t)i); }
static inline unsigned __float_as_uint(float f) { return mta_emu_bits(f); }
static inline int __float_as_int(float f) { return (int)mta_emu_bits(f); }

static inline float __shfl_xor_sync(unsigned, float v, int m)
{
	return mta_emu_float(mta_emu_exchange(mta_emu_bits(v), (int)(threadIdx.x & 31) ^ m));
}
static inline int __shfl_xor_sync(unsigned, int v, int m)
{
	return (int)mta_emu_exchange((uint32_t)v, (int)(threadIdx.x & 31) ^ m);
}
static inline unsigned __shfl_xor_sync(unsigned, unsigned v, int m)
{
	return mta_emu_exchange(v, (int)(threadIdx.x & 31) ^ m);
}
static inline float __shfl_sync(unsigned, float v, int src)
{
	return mta_emu_float(mta_emu_exchange(mta_emu_bits(v), src));
}
static inline int __shfl_sync(unsigned, int v, int src)
{
	return (int)mta_emu_exchange((uint32_t)v, src);
}
static inline unsigned __ballot_sync(unsigned, int pred)
{
	unsigned r = 0;
	const unsigned w = mta_emu_warp(), l = threadIdx.x & 31;
	mta_emu_xchg[w][l] = pred != 0;
	pthread_barrier_wait(&mta_emu_warp_bar[w]);
	for (int i = 0; i < 32; i++)
		r |= (unsigned)(mta_emu_xchg[w][i] != 0) << i;
	pthread_barrier_wait(&mta_emu_warp_bar[w]);
	return r;
}
static inline int __any_sync(unsigned m, int pred) { return __ballot_sync(m, pred) != 0; }
static inline int __all_sync(unsigned m, int pred) { return __ballot_sync(m, pred) == 0xffffffffu; }

#define __expf(x) expf(x) /* glibc declares its own __expf */
static inline float __fdividef(float a, float b) { return a / b; }
static inline float rsqrtf(float x) { return 1.0f / sqrtf(x); }

/* Twin of the template's cvt.f32.f16: IEEE binary16 to float, exactly. */
static inline float mta_f16_to_f32(unsigned short h)
{
	const uint32_t s = (uint32_t)(h & 0x8000) << 16, e = (h >> 10) & 31, m = h & 0x3ff;
	if (e == 31)
		return mta_emu_float(s | 0x7f800000u | (m << 13));
	if (e)
		return mta_emu_float(s | ((e + 112) << 23) | (m << 13));
	float f = ldexpf((float)m, -24);
	return s ? -f : f;
}

/* Twin of cvt.rn.f16.f32: float to IEEE binary16, round to nearest even. */
static inline unsigned short mta_f32_to_f16(float f)
{
	const uint32_t u = mta_emu_bits(f), s = (u >> 16) & 0x8000, m = u & 0x7fffff;
	const int ef = (int)((u >> 23) & 0xff), e = ef - 127 + 15;
	if (ef == 0xff)
		return (unsigned short)(s | 0x7c00 | (m ? 0x200 : 0));
	if (e >= 31)
		return (unsigned short)(s | 0x7c00);
	if (e <= 0) { /* subnormal half (or zero): units of 2^-24 */
		if (e < -10)
			return (unsigned short)s;
		const uint32_t mm = m | 0x800000, sh = (uint32_t)(14 - e);
		uint32_t r = mm >> sh;
		const uint32_t rem = mm & ((1u << sh) - 1), half = 1u << (sh - 1);
		if (rem > half || (rem == half && (r & 1)))
			r++;
		return (unsigned short)(s | r);
	}
	uint32_t r = ((uint32_t)e << 10) | (m >> 13);
	const uint32_t rem = m & 0x1fff;
	if (rem > 0x1000 || (rem == 0x1000 && (r & 1)))
		r++; /* a carry into the exponent is the right result, up to infinity */
	return (unsigned short)(s | r);
}

/* Twin of mta_lane (%laneid). */
static inline int mta_lane(void) { return (int)(threadIdx.x & 31); }
/* Twin of mta_keep (an identity prmt.b32). */
static inline unsigned mta_keep(unsigned x) { return x; }
/* Twin of ex2.approx.ftz.f32 (x log2 e): exact here; a result under 2^-126 is 0. */
static inline float mta_exp_ftz(float x)
{
	const float y = exp2f(x * 1.4426950408889634f);
	return y < 0x1p-126f ? 0.f : y;
}
/* Twin of ex2.approx.ftz.f32: exact here; a result under 2^-126 is 0. */
static inline float mta_ex2_ftz(float x)
{
	const float y = exp2f(x);
	return y < 0x1p-126f ? 0.f : y;
}
/* Twin of cvt.rn.satfinite.f16.f32: as above, but a result beyond the
 * largest finite half (+-65504) is that value, not infinity; NaN stays NaN. */
static inline unsigned short mta_f32_to_f16_sat(float f)
{
	const unsigned short h = mta_f32_to_f16(f);
	return (h & 0x7fff) == 0x7c00 ? (unsigned short)((h & 0x8000) | 0x7bff) : h;
}
/* Twin of cvt.rn.satfinite.f16x2.f32 d, hi, lo: lo in the low half. */
static inline unsigned mta_f16x2_sat(float lo, float hi)
{
	return (unsigned)mta_f32_to_f16_sat(lo) | (unsigned)mta_f32_to_f16_sat(hi) << 16;
}
/* Twin of cvt.rn.f16x2.f32 d, hi, lo. */
static inline unsigned mta_f16x2(float lo, float hi)
{
	return (unsigned)mta_f32_to_f16(lo) | (unsigned)mta_f32_to_f16(hi) << 16;
}
/* Twin of prmt.b32 d, a, b, sel (the default mode): byte i of d is byte
 * (sel >> 4i) & 7 of b:a, a's bytes 0-3, b's 4-7; a nibble's bit 3 copies
 * that byte's sign to all eight bits. */
static inline unsigned mta_prmt(unsigned a, unsigned b, unsigned sel)
{
	const unsigned long long ba = (unsigned long long)b << 32 | a;
	unsigned r = 0;
	for (int i = 0; i < 4; i++) {
		const unsigned n = sel >> 4 * i & 15, x = (unsigned)(ba >> 8 * (n & 7)) & 0xff;
		r |= (n & 8 ? (x & 0x80 ? 0xffu : 0u) : x) << 8 * i;
	}
	return r;
}

/*
 * Tensor-core twins, following the PTX ISA fragment layouts exactly
 * (groupID g = lane>>2, threadID_in_group t = lane%4; a .b32 register holds
 * two 16-bit elements, the lower-indexed one in its low half).
 *
 * mma.sync.aligned.m16n8k16.row.col.f32.{bf16,f16}.{bf16,f16}.f32:
 *   A 16x16: a[0] = A[g][2t..2t+1], a[1] = A[g+8][2t..], a[2] = A[g][2t+8..],
 *            a[3] = A[g+8][2t+8..]
 *   B 16x8:  b[0] = B[2t..2t+1][g], b[1] = B[2t+8..2t+9][g]
 *   C, D:    d[0..1] = D[g][2t..2t+1], d[2..3] = D[g+8][2t..2t+1]
 * The twin gathers the 32 lanes' fragments through a per-warp buffer
 * between two warp barriers (every lane must call it, as on the GPU) and
 * each lane computes its four results in float32, k in ascending order.
 */
static uint32_t mta_emu_frag[MTA_EMU_CLUSTER_MAX * 32][32][6];
static const void *mta_emu_addr[MTA_EMU_CLUSTER_MAX * 32][32];

static inline float mta_emu_half(uint32_t r, int hi, int f16)
{
	const unsigned short h = (unsigned short)(hi ? r >> 16 : r & 0xffff);
	return f16 ? mta_f16_to_f32(h) : mta_emu_float((uint32_t)h << 16);
}

static inline void mta_emu_mma(float d[4], const unsigned a[4], const unsigned b[2], int f16)
{
	const unsigned w = mta_emu_warp(), l = threadIdx.x & 31, g = l >> 2, t = l & 3;
	for (int i = 0; i < 4; i++)
		mta_emu_frag[w][l][i] = a[i];
	mta_emu_frag[w][l][4] = b[0];
	mta_emu_frag[w][l][5] = b[1];
	pthread_barrier_wait(&mta_emu_warp_bar[w]);
	float r[4];
	for (int e = 0; e < 4; e++) {
		const unsigned row = g + 8 * (e >> 1), col = 2 * t + (e & 1);
		float s = d[e];
		for (unsigned k = 0; k < 16; k++) {
			/* A[row][k]: lane (row%8)*4 + (k%8)/2, register (row>=8) + 2*(k>=8) */
			const uint32_t ar = mta_emu_frag[w][(row & 7) * 4 + ((k & 7) >> 1)]
						    [(row >> 3) + 2 * (k >> 3)];
			/* B[k][col]: lane col*4 + (k%8)/2, register k>=8 */
			const uint32_t br = mta_emu_frag[w][col * 4 + ((k & 7) >> 1)][4 + (k >> 3)];
			s += mta_emu_half(ar, k & 1, f16) * mta_emu_half(br, k & 1, f16);
		}
		r[e] = s;
	}
	pthread_barrier_wait(&mta_emu_warp_bar[w]);
	for (int e = 0; e < 4; e++)
		d[e] = r[e];
}
static inline void mta_mma_bf16(float d[4], const unsigned a[4], const unsigned b[2])
{
	mta_emu_mma(d, a, b, 0);
}
static inline void mta_mma_f16(float d[4], const unsigned a[4], const unsigned b[2])
{
	mta_emu_mma(d, a, b, 1);
}

/*
 * ldmatrix.sync.aligned.m8n8.x{1,2,4}[.trans].shared.b16: lanes 8m..8m+7
 * give the row addresses of matrix m; register m of lane l receives row
 * l>>2, elements 2(l%4) and 2(l%4)+1 of matrix m, or with .trans column
 * l>>2 of rows 2(l%4) and 2(l%4)+1. Addresses of lanes past 8*nmat are
 * ignored, as on the GPU.
 */
static inline void mta_emu_ldsm(unsigned *r, int nmat, int trans, const void *p)
{
	const unsigned w = mta_emu_warp(), l = threadIdx.x & 31;
	mta_emu_addr[w][l] = p;
	pthread_barrier_wait(&mta_emu_warp_bar[w]);
	for (int m = 0; m < nmat; m++) {
		unsigned short e[2];
		for (int h = 0; h < 2; h++) {
			const unsigned row = trans ? 2 * (l & 3) + h : l >> 2;
			const unsigned col = trans ? l >> 2 : 2 * (l & 3) + h;
			memcpy(&e[h], (const char *)mta_emu_addr[w][8 * m + row] + 2 * col, 2);
		}
		r[m] = (unsigned)e[0] | (unsigned)e[1] << 16;
	}
	pthread_barrier_wait(&mta_emu_warp_bar[w]);
}
static inline void mta_ldsm_x4(unsigned r[4], const void *p) { mta_emu_ldsm(r, 4, 0, p); }
static inline void mta_ldsm_x2(unsigned r[2], const void *p) { mta_emu_ldsm(r, 2, 0, p); }
static inline void mta_ldsm_x4_t(unsigned r[4], const void *p) { mta_emu_ldsm(r, 4, 1, p); }
static inline void mta_ldsm_x2_t(unsigned r[2], const void *p) { mta_emu_ldsm(r, 2, 1, p); }

/*
 * cp.async.cg.shared.global (16 bytes), cp.async.commit_group and
 * cp.async.wait_group N. The twin defers each copy until a wait_group
 * completes its group, so a template that reads shared memory before
 * waiting reads the NaN poison, as it could on the GPU. Copies not yet
 * committed belong to the next group; wait_group N completes every
 * committed group but the N most recent. A full queue completes its oldest
 * entries early (allowed: the hardware may finish copies at any time).
 */
#define MTA_EMU_CPQ 256
struct mta_emu_cp { void *dst; const void *src; int group; };
static thread_local struct mta_emu_cp mta_emu_cpq[MTA_EMU_CPQ];
static thread_local int mta_emu_ncp, mta_emu_ngroups;

static inline void mta_emu_cp_done(int upto)
{
	int k = 0;
	for (int i = 0; i < mta_emu_ncp; i++) {
		struct mta_emu_cp *c = &mta_emu_cpq[i];
		if (c->group > 0 && c->group <= upto)
			memcpy(c->dst, c->src, 16);
		else
			mta_emu_cpq[k++] = *c;
	}
	mta_emu_ncp = k;
}
static inline void mta_cp_async16(void *dst, const void *src)
{
	if (mta_emu_ncp == MTA_EMU_CPQ) {
		for (int i = 0; i < MTA_EMU_CPQ / 2; i++)
			memcpy(mta_emu_cpq[i].dst, mta_emu_cpq[i].src, 16);
		memmove(mta_emu_cpq, mta_emu_cpq + MTA_EMU_CPQ / 2,
			sizeof mta_emu_cpq[0] * (MTA_EMU_CPQ - MTA_EMU_CPQ / 2));
		mta_emu_ncp -= MTA_EMU_CPQ / 2;
	}
	mta_emu_cpq[mta_emu_ncp++] = (struct mta_emu_cp){ dst, src, 0 };
}
/* cp.async with src-size 0 when !full: zeros, the source not read (zero now). */
static inline void mta_cp_async16z(void *dst, const void *src, bool full)
{
	if (full)
		mta_cp_async16(dst, src);
	else
		memset(dst, 0, 16);
}
static inline void mta_cp_commit(void)
{
	++mta_emu_ngroups;
	for (int i = 0; i < mta_emu_ncp; i++)
		if (!mta_emu_cpq[i].group)
			mta_emu_cpq[i].group = mta_emu_ngroups;
}
#define mta_cp_wait(n) mta_emu_cp_done(mta_emu_ngroups - (n))

static pthread_mutex_t mta_emu_gate_mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t mta_emu_gate_cv = PTHREAD_COND_INITIALIZER;
static int mta_emu_gate; /* 0 wait, 1 run, -1 abort */

struct mta_emu_launch_ctx {
	void (*body)(const void *);
	const void *args;
	unsigned tid; /* in its block */
	unsigned rank; /* its block in the cluster */
};

/* One emulated thread: its rank's block of every cluster of the grid, in
 * order, in lock step (a block is a cluster of one). */
static void *mta_emu_thread(void *p)
{
	struct mta_emu_launch_ctx *c = (struct mta_emu_launch_ctx *)p;
	threadIdx.x = c->tid;
	threadIdx.y = threadIdx.z = 0;
	mta_emu_rank = c->rank;
	pthread_mutex_lock(&mta_emu_gate_mu);
	while (!mta_emu_gate)
		pthread_cond_wait(&mta_emu_gate_cv, &mta_emu_gate_mu);
	const int go = mta_emu_gate > 0;
	pthread_mutex_unlock(&mta_emu_gate_mu);
	if (!go)
		return 0;
	for (unsigned z = 0; z < gridDim.z; z++)
		for (unsigned y = 0; y < gridDim.y; y++)
			for (unsigned x = 0; x < gridDim.x; x += mta_emu_csize) {
				if (c->tid == 0) {
					const uint32_t nan = 0x7fc00000u;
					char *sm = mta_emu_cta_smem(c->rank);
					for (size_t i = 0; i < mta_emu_smem_bytes / 4; i++)
						memcpy(sm + 4 * i, &nan, 4);
				}
				blockIdx.x = x + c->rank;
				blockIdx.y = y;
				blockIdx.z = z;
				pthread_barrier_wait(&mta_emu_cluster_bar);
				c->body(c->args);
				pthread_barrier_wait(&mta_emu_cluster_bar);
				/* every thread is past the block: none of its named
				 * barriers may be left half arrived, nor carry over */
				if (c->tid == 0)
					for (int i = 1; i < 16; i++) {
						if (mta_emu_nbars[c->rank][i].count)
							mta_emu_nbar_bad = 1;
						mta_emu_nbars[c->rank][i].count = 0;
					}
				if (c->tid == 0 && c->rank == 0)
					mta_emu_mbar_reset();
			}
	return 0;
}

/* The grid in clusters of mta_emu_csize blocks: csize * threads pthreads. */
static int mta_emu_grid(void (*body)(const void *), const void *args, const unsigned grid[3],
			unsigned threads)
{
	const unsigned cs = mta_emu_csize, all = cs * threads;
	struct mta_emu_launch_ctx *ctx = 0;
	pthread_t *th = 0;
	unsigned started = 0;
	int rc = 0;
	if (threads < 32 || threads > 1024 || threads % 32)
		return -3;
	if (cs < 1 || cs > MTA_EMU_CLUSTER_MAX || grid[0] % cs)
		return -4;
	ctx = (struct mta_emu_launch_ctx *)calloc(all, sizeof *ctx);
	th = (pthread_t *)calloc(all, sizeof *th);
	if (!ctx || !th) {
		free(ctx);
		free(th);
		return -3;
	}
	gridDim.x = grid[0];
	gridDim.y = grid[1];
	gridDim.z = grid[2];
	blockDim.x = threads;
	blockDim.y = blockDim.z = 1;
	for (unsigned r = 0; r < cs; r++) {
		pthread_barrier_init(&mta_emu_block_bar[r], 0, threads);
		for (unsigned w = 0; w < threads / 32; w++)
			pthread_barrier_init(&mta_emu_warp_bar[r * 32 + w], 0, 32);
	}
	pthread_barrier_init(&mta_emu_cluster_bar, 0, all);
	for (unsigned r = 0; r < cs; r++)
		for (int i = 0; i < 16; i++) {
			pthread_mutex_init(&mta_emu_nbars[r][i].mu, 0);
			pthread_cond_init(&mta_emu_nbars[r][i].cv, 0);
			mta_emu_nbars[r][i].count = mta_emu_nbars[r][i].gen = 0;
		}
	mta_emu_nbar_bad = 0;
	mta_emu_mbar_reset();
	mta_emu_mbar_bad = 0;
	pthread_attr_t attr;
	pthread_attr_init(&attr);
	pthread_attr_setstacksize(&attr, 256 * 1024);
	mta_emu_gate = 0;
	for (; started < all; started++) {
		ctx[started].body = body;
		ctx[started].args = args;
		ctx[started].tid = started % threads;
		ctx[started].rank = started / threads;
		if (pthread_create(&th[started], &attr, mta_emu_thread, &ctx[started]))
			break;
	}
	pthread_attr_destroy(&attr);
	/* Open the gate only when every thread exists; else send them home. */
	pthread_mutex_lock(&mta_emu_gate_mu);
	mta_emu_gate = started < all ? -1 : 1;
	pthread_cond_broadcast(&mta_emu_gate_cv);
	pthread_mutex_unlock(&mta_emu_gate_mu);
	if (started < all)
		rc = -3;
	for (unsigned i = 0; i < started; i++)
		pthread_join(th[i], 0);
	for (unsigned r = 0; r < cs; r++) {
		pthread_barrier_destroy(&mta_emu_block_bar[r]);
		for (unsigned w = 0; w < threads / 32; w++)
			pthread_barrier_destroy(&mta_emu_warp_bar[r * 32 + w]);
	}
	pthread_barrier_destroy(&mta_emu_cluster_bar);
	for (unsigned r = 0; r < cs; r++)
		for (int i = 0; i < 16; i++) {
			pthread_mutex_destroy(&mta_emu_nbars[r][i].mu);
			pthread_cond_destroy(&mta_emu_nbars[r][i].cv);
		}
	if (!rc && mta_emu_nbar_bad)
		rc = -5;
	/* (the last cluster's table was judged and cleared after it, as each) */
	if (!rc && mta_emu_mbar_bad)
		rc = -6;
	free(ctx);
	free(th);
	return rc;
}

/* The launcher of a kernel whose clusters are csize blocks (1: none). */
#define MTA_EMU_ENTRY_CLUSTER(kernel, argtype, smem_needed, csize)                        \
	static void mta_emu_body(const void *p) { kernel(*(const argtype *)p); }               \
	extern "C" int mta_emu_launch(const void *args, size_t args_size, const unsigned grid[3], \
				      unsigned threads, size_t smem_bytes)                     \
	{                                                                                  \
		if (args_size != sizeof(argtype))                                          \
			return -1;                                                         \
		if (smem_bytes < (size_t)(smem_needed) || smem_bytes > sizeof mta_smem)    \
			return -2;                                                         \
		mta_emu_smem_bytes = smem_bytes;                                            \
		mta_emu_csize = (csize);                                                   \
		return mta_emu_grid(mta_emu_body, args, grid, threads);                    \
	}
#define MTA_EMU_ENTRY(kernel, argtype, smem_needed) \
	MTA_EMU_ENTRY_CLUSTER(kernel, argtype, smem_needed, 1)

#endif
