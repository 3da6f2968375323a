/*
 * mta_cpu_vec.h: the vector layer every CPU kernel family shares: the
 * vector type of VL floats (GCC vector extensions, so any width compiles
 * anywhere and -march picks the instructions), loads and stores at any
 * alignment, select and max, and a vectorised exp; and, in counting builds
 * (K_COUNT defined), the counters of executed work per step.
 *
 * A fragment of a kernel, not a standalone header: a template includes it
 * (gen/cpu/cgen.c pastes it) once VL is defined.
 */
#ifndef MTA_CPU_VEC_H
#define MTA_CPU_VEC_H

#define INLINE static inline __attribute__((always_inline))

/* Vector arguments and returns only cross static, always-inlined helpers,
 * so GCC's note that their ABI differs without AVX does not apply. */
#pragma GCC diagnostic ignored "-Wpsabi"

typedef float vf __attribute__((vector_size(VL * 4)));
typedef int32_t vi __attribute__((vector_size(VL * 4)));

INLINE vf vld(const float *p)
{
	vf x;
	memcpy(&x, p, sizeof x); /* any alignment; one vector load */
	return x;
}

INLINE void vst(float *p, vf x)
{
	memcpy(p, &x, sizeof x);
}

/*
 * x in every lane: one broadcast. Not (vf){ 0 } + x, which GCC must compute
 * (-0.0 + 0 is +0.0), and not a loop over the lanes, which GCC 12 builds
 * from two halves.
 */
#if VL == 16
#define SPLAT_(x) { x, x, x, x, x, x, x, x, x, x, x, x, x, x, x, x }
#elif VL == 8
#define SPLAT_(x) { x, x, x, x, x, x, x, x }
#else
#define SPLAT_(x) { x, x, x, x }
#endif
INLINE vf vsplat(float x)
{
	return (vf)SPLAT_(x);
}

/* Bitwise select: m ? x : y lane by lane (m all ones or all zeros). */
INLINE vf vsel(vi m, vf x, vf y)
{
	return (vf)(((vi)x & m) | ((vi)y & ~m));
}

/* x > y ? x : y lane-wise (so y where either is NaN): the max instruction where there is one. */
#if VL == 16 && defined(__AVX512F__)
#include <immintrin.h>
INLINE vf vmax(vf x, vf y)
{
	return (vf)_mm512_max_ps((__m512)x, (__m512)y);
}
#elif VL == 8 && defined(__AVX__)
#include <immintrin.h>
INLINE vf vmax(vf x, vf y)
{
	return (vf)_mm256_max_ps((__m256)x, (__m256)y);
}
#elif VL == 4 && defined(__SSE__)
#include <immintrin.h>
INLINE vf vmax(vf x, vf y)
{
	return (vf)_mm_max_ps((__m128)x, (__m128)y);
}
#else
INLINE vf vmax(vf x, vf y)
{
	return vsel(x > y, x, y);
}
#endif

/*
 * Constant integer vectors whose lane l is F(h, l): written out lane by lane
 * so that GCC sees constants (a mask built in a loop stays a run-time
 * vector, and every shuffle then rebuilds it).
 */
#if VL == 16
#define VCONST(F, h) ((vi){ F(h, 0), F(h, 1), F(h, 2), F(h, 3), F(h, 4), F(h, 5), F(h, 6),     \
			    F(h, 7), F(h, 8), F(h, 9), F(h, 10), F(h, 11), F(h, 12), F(h, 13),    \
			    F(h, 14), F(h, 15) })
#elif VL == 8
#define VCONST(F, h) ((vi){ F(h, 0), F(h, 1), F(h, 2), F(h, 3), F(h, 4), F(h, 5), F(h, 6),     \
			    F(h, 7) })
#else
#define VCONST(F, h) ((vi){ F(h, 0), F(h, 1), F(h, 2), F(h, 3) })
#endif
#define LANE_(h, l) (l)
#define ROT_(h, l) (((l) + (h)) & (VL - 1))        /* rotate the lanes by h */
#define LO_(h, l) ((l) & (h) ? VL + (l) - (h) : (l)) /* transpose stage h, first row */
#define HI_(h, l) ((l) & (h) ? VL + (l) : (l) + (h)) /* and second row */

/*
 * x, as a value GCC cannot see through: a loop storing a known constant
 * vector can become a memset call, or an inline expansion of 8-byte stores.
 */
#if defined(__GNUC__) && defined(__AVX512F__)
#define VOPAQUE(x) __asm__("" : "+v"(x))
#elif defined(__GNUC__) && ((defined(__AVX__) && VL <= 8) || (defined(__SSE__) && VL <= 4))
#define VOPAQUE(x) __asm__("" : "+x"(x))
#elif defined(__GNUC__) /* wider than a register (vec=16 without AVX-512): through memory */
#define VOPAQUE(x) __asm__("" : "+m"(x))
#else
#define VOPAQUE(x) ((void)0)
#endif

/* x with lanes >= n (n <= VL) replaced by y. */
INLINE vf vfirst(vf x, int n, vf y)
{
	return vsel(VCONST(LANE_, 0) < (vi){ 0 } + n, x, y);
}

/* Sum and max of the lanes, by halving rotations (log2 VL steps). */
INLINE float vhsum(vf x)
{
#if VL == 16
	x += __builtin_shuffle(x, VCONST(ROT_, 8));
#endif
#if VL >= 8
	x += __builtin_shuffle(x, VCONST(ROT_, 4));
#endif
	x += __builtin_shuffle(x, VCONST(ROT_, 2));
	x += __builtin_shuffle(x, VCONST(ROT_, 1));
	return x[0];
}

INLINE float vhmax(vf x)
{
#if VL == 16
	x = vmax(x, __builtin_shuffle(x, VCONST(ROT_, 8)));
#endif
#if VL >= 8
	x = vmax(x, __builtin_shuffle(x, VCONST(ROT_, 4)));
#endif
	x = vmax(x, __builtin_shuffle(x, VCONST(ROT_, 2)));
	x = vmax(x, __builtin_shuffle(x, VCONST(ROT_, 1)));
	return x[0];
}

/*
 * The lane sums of VL vectors at once: lane r of the result is the sum of
 * x[r]'s lanes (x is overwritten). The transpose's network below, adding
 * each pair instead of keeping both halves: VL-1 shuffle pairs and adds in
 * log2 VL independent stages, where VL calls of vhsum() cost VL log2 VL
 * dependent ones. Rows whose sums are needed one by one (short softmax rows,
 * group norm, the gate) take them here in groups of VL.
 */
#define SSTAGE(x, h, op)                                                                    \
	for (int i = 0; i < (h); i++)                                                       \
		x[i] = op(__builtin_shuffle(x[i], x[i + (h)], VCONST(LO_, h)),              \
			  __builtin_shuffle(x[i], x[i + (h)], VCONST(HI_, h)));
#define SADD_(a, b) ((a) + (b))
#if VL == 16
#define SNET(x, op) SSTAGE(x, 8, op) SSTAGE(x, 4, op) SSTAGE(x, 2, op) SSTAGE(x, 1, op)
#elif VL == 8
#define SNET(x, op) SSTAGE(x, 4, op) SSTAGE(x, 2, op) SSTAGE(x, 1, op)
#else
#define SNET(x, op) SSTAGE(x, 2, op) SSTAGE(x, 1, op)
#endif
INLINE vf vhsums(vf *x)
{
	SNET(x, SADD_)
	return x[0];
}

/* The same for the maxima: lane r of the result is the largest lane of x[r]. */
INLINE vf vhmaxs(vf *x)
{
	SNET(x, vmax)
	return x[0];
}
#undef SNET
#undef SADD_
#undef SSTAGE

/* A VL x VL block transposed in registers: x[l] (its row l) becomes its column l. */
#define TSTAGE(x, h)                                                                        \
	for (int i = 0; i < VL; i++)                                                        \
		if (!(i & (h))) {                                                           \
			const vf a_ = x[i], b_ = x[i + (h)];                                \
			x[i] = __builtin_shuffle(a_, b_, VCONST(LO_, h));                   \
			x[i + (h)] = __builtin_shuffle(a_, b_, VCONST(HI_, h));             \
		}
INLINE void vtranspose(vf *x)
{
#if VL == 16
	TSTAGE(x, 8)
#endif
#if VL >= 8
	TSTAGE(x, 4)
#endif
	TSTAGE(x, 2)
	TSTAGE(x, 1)
}
#undef TSTAGE

/*
 * exp, lane-wise: 0 below -87.33 (where expf turns subnormal) and for -inf
 * and NaN; arguments above 88 are clamped (never happens: the softmax only
 * takes exp of x - max <= 0). exp(x) = 2^n exp(r), n = round(x log2 e),
 * r = x - n ln 2 in two parts (the first exact in float), exp(r) by the
 * Cephes polynomial on |r| <= ln2/2; 2^n is built in the exponent bits.
 */
INLINE vf vexp(vf x)
{
	const vi ok = x >= vsplat(-87.33f);
	x = vmax(x, vsplat(-87.33f));
	x = vsel(x > vsplat(88.0f), vsplat(88.0f), x);
	const vf t = x * 1.44269504088896341f + 12582912.0f; /* 1.5 * 2^23: rounds */
	const vf n = t - 12582912.0f;
	vf r = x - n * 0.693359375f;
	r = r - n * -2.12194440e-4f;
	vf p = vsplat(1.9875691500e-4f);
	p = p * r + 1.3981999507e-3f;
	p = p * r + 8.3334519073e-3f;
	p = p * r + 4.1665795894e-2f;
	p = p * r + 1.6666665459e-1f;
	p = p * r + 5.0000001201e-1f;
	const vf y = p * r * r + r + 1.0f;
	const vi e = ((vi)t - 0x4B400000 + 127) << 23;
	return (vf)((vi)(y * (vf)e) & ok);
}

/*
 * exp for the softmax, where arguments stay below 80: the reduction and
 * polynomial of vexp() without its upper clamp and its zeroing. Below
 * -87.33 (and for -inf and NaN) the argument is clamped there, giving
 * 2^-126 * exp(r) ~ 1e-38 instead of 0: nothing next to a row sum of at
 * least 1.
 */
INLINE vf vexp_sm(vf x)
{
	x = vmax(x, vsplat(-87.33f));
	const vf t = x * 1.44269504088896341f + 12582912.0f;
	const vf n = t - 12582912.0f;
	vf r = x - n * 0.693359375f;
	r = r - n * -2.12194440e-4f;
	vf p = vsplat(1.9875691500e-4f);
	p = p * r + 1.3981999507e-3f;
	p = p * r + 8.3334519073e-3f;
	p = p * r + 4.1665795894e-2f;
	p = p * r + 1.6666665459e-1f;
	p = p * r + 5.0000001201e-1f;
	const vf y = p * r * r + r + 1.0f;
	return y * (vf)(((vi)t - (0x4B400000 - 127)) << 23);
}

/*
 * Counting builds (bench/cpu_bench.c defines K_COUNT in front of a
 * generated kernel): each step adds what it executed, in multiply-adds per
 * lane (every lane of every vector, padding included; exp: one per lane),
 * to its thread's counters, which the worker adds into mta_cpu_counts when
 * it finishes. Normal builds compile COUNT to nothing.
 */
enum { CNT_QK, CNT_PRE, CNT_HPRE, CNT_EXP, CNT_POST, CNT_HPOST, CNT_PV, CNT_N };
#ifdef K_COUNT
int64_t mta_cpu_counts[CNT_N];
static __thread int64_t cnt_local[CNT_N];
#define COUNT(step, n) (cnt_local[step] += (int64_t)(n))
static void count_flush(void)
{
	for (int i = 0; i < CNT_N; i++) {
		__atomic_add_fetch(&mta_cpu_counts[i], cnt_local[i], __ATOMIC_RELAXED);
		cnt_local[i] = 0;
	}
}
#else
#define COUNT(step, n) ((void)(step))
static inline void count_flush(void)
{
}
#endif

#endif
