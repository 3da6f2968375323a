/*
 * cuda_emu.h: run CUDA kernel source on the CPU, for tests.
 *
 * Prepended to a generated CUDA source and compiled with the host C++
 * compiler into a shared object, it supplies what the templates use from
 * CUDA: __global__/__device__, threadIdx/blockIdx/blockDim/gridDim,
 * dynamic shared memory (extern __shared__ arrays, mapped to one global
 * buffer: templates must not use static __shared__ arrays), __syncthreads,
 * warp shuffles and votes, the math intrinsics, and a portable twin of each
 * inline-PTX helper (mta_f16_to_f32).
 *
 * Semantics: blocks run one at a time; the threads of a block are real
 * pthreads, so __syncthreads is a real barrier (pthread_barrier_t). A shuffle
 * writes the lane's value into a per-warp buffer, waits at a per-warp
 * barrier, reads the partner's slot, and waits again; so every lane of the
 * warp must take part, as the *_sync intrinsics require with a full mask.
 * Shared memory is filled with NaN before each block, so a read of a slot
 * the block never wrote shows up in the output.
 *
 * MTA_EMU_ENTRY(kernel, argtype, smem_needed) at the end of a template
 * exports: extern "C" int mta_emu_launch(const void *args, size_t args_size,
 *   const unsigned grid[3], unsigned threads, size_t smem_bytes);
 * returning 0, or -1 for a wrong argument size, -2 for too little shared
 * memory, -3 when threads cannot be started.
 */
#ifndef MTA_CUDA_EMU_H
#define MTA_CUDA_EMU_H
#define MTA_EMU 1

#include <math.h>
#include <pthread.h>
#include <stdint.h>
#include <string.h>

#define __global__
#define __device__
#define __host__
#define __shared__
#define __forceinline__ inline
#define __restrict__ __restrict
#define __launch_bounds__(...)

struct uint3 { unsigned x, y, z; };
struct dim3 { unsigned x, y, z; };
struct float4 { float x, y, z, w; };

static thread_local uint3 threadIdx;
static thread_local uint3 blockIdx;
static dim3 blockDim, gridDim;

#define MTA_EMU_SMEM_MAX (232448 / 16)
/* The dynamic shared memory every extern __shared__ declaration names. */
float4 mta_smem[MTA_EMU_SMEM_MAX];

static pthread_barrier_t mta_emu_block_bar;
static pthread_barrier_t mta_emu_warp_bar[32];
static uint32_t mta_emu_xchg[32][32];

static inline void __syncthreads(void) { pthread_barrier_wait(&mta_emu_block_bar); }

/* Every lane publishes v, then reads lane src's value. */
static inline uint32_t mta_emu_exchange(uint32_t v, int src)
{
	const unsigned w = threadIdx.x >> 5, l = threadIdx.x & 31;
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
	const unsigned w = threadIdx.x >> 5, l = threadIdx.x & 31;
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

static pthread_mutex_t mta_emu_gate_mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t mta_emu_gate_cv = PTHREAD_COND_INITIALIZER;
static int mta_emu_gate; /* 0 wait, 1 run, -1 abort */
static size_t mta_emu_smem_bytes;

struct mta_emu_launch_ctx {
	void (*body)(const void *);
	const void *args;
	unsigned tid;
};

/* One emulated thread: all blocks of the grid in order, in lock step. */
static void *mta_emu_thread(void *p)
{
	struct mta_emu_launch_ctx *c = (struct mta_emu_launch_ctx *)p;
	threadIdx.x = c->tid;
	threadIdx.y = threadIdx.z = 0;
	pthread_mutex_lock(&mta_emu_gate_mu);
	while (!mta_emu_gate)
		pthread_cond_wait(&mta_emu_gate_cv, &mta_emu_gate_mu);
	const int go = mta_emu_gate > 0;
	pthread_mutex_unlock(&mta_emu_gate_mu);
	if (!go)
		return 0;
	for (unsigned z = 0; z < gridDim.z; z++)
		for (unsigned y = 0; y < gridDim.y; y++)
			for (unsigned x = 0; x < gridDim.x; x++) {
				if (c->tid == 0) {
					const uint32_t nan = 0x7fc00000u;
					for (size_t i = 0; i < mta_emu_smem_bytes / 4; i++)
						memcpy((char *)mta_smem + 4 * i, &nan, 4);
				}
				blockIdx.x = x;
				blockIdx.y = y;
				blockIdx.z = z;
				pthread_barrier_wait(&mta_emu_block_bar);
				c->body(c->args);
				pthread_barrier_wait(&mta_emu_block_bar);
			}
	return 0;
}

static int mta_emu_grid(void (*body)(const void *), const void *args, const unsigned grid[3],
			unsigned threads)
{
	struct mta_emu_launch_ctx ctx[1024];
	pthread_t th[1024];
	unsigned started = 0;
	int rc = 0;
	if (threads < 32 || threads > 1024 || threads % 32)
		return -3;
	gridDim.x = grid[0];
	gridDim.y = grid[1];
	gridDim.z = grid[2];
	blockDim.x = threads;
	blockDim.y = blockDim.z = 1;
	pthread_barrier_init(&mta_emu_block_bar, 0, threads);
	for (unsigned w = 0; w < threads / 32; w++)
		pthread_barrier_init(&mta_emu_warp_bar[w], 0, 32);
	pthread_attr_t attr;
	pthread_attr_init(&attr);
	pthread_attr_setstacksize(&attr, 256 * 1024);
	mta_emu_gate = 0;
	for (; started < threads; started++) {
		ctx[started].body = body;
		ctx[started].args = args;
		ctx[started].tid = started;
		if (pthread_create(&th[started], &attr, mta_emu_thread, &ctx[started]))
			break;
	}
	pthread_attr_destroy(&attr);
	/* Open the gate only when every thread exists; else send them home. */
	pthread_mutex_lock(&mta_emu_gate_mu);
	mta_emu_gate = started < threads ? -1 : 1;
	pthread_cond_broadcast(&mta_emu_gate_cv);
	pthread_mutex_unlock(&mta_emu_gate_mu);
	if (started < threads)
		rc = -3;
	for (unsigned i = 0; i < started; i++)
		pthread_join(th[i], 0);
	pthread_barrier_destroy(&mta_emu_block_bar);
	for (unsigned w = 0; w < threads / 32; w++)
		pthread_barrier_destroy(&mta_emu_warp_bar[w]);
	return rc;
}

#define MTA_EMU_ENTRY(kernel, argtype, smem_needed)                                        \
	static void mta_emu_body(const void *p) { kernel(*(const argtype *)p); }               \
	extern "C" int mta_emu_launch(const void *args, size_t args_size, const unsigned grid[3], \
				      unsigned threads, size_t smem_bytes)                     \
	{                                                                                  \
		if (args_size != sizeof(argtype))                                          \
			return -1;                                                         \
		if (smem_bytes < (size_t)(smem_needed) || smem_bytes > sizeof mta_smem)    \
			return -2;                                                         \
		mta_emu_smem_bytes = smem_bytes;                                            \
		return mta_emu_grid(mta_emu_body, args, grid, threads);                    \
	}

#endif
