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

INLINE vf vsplat(float x)
{
	return (vf){ 0 } + x;
}

/* Bitwise select: m ? x : y lane by lane (m all ones or all zeros). */
INLINE vf vsel(vi m, vf x, vf y)
{
	return (vf)(((vi)x & m) | ((vi)y & ~m));
}

INLINE vf vmax(vf x, vf y)
{
	return vsel(x > y, x, y);
}

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
