/*
 * dtype.c: element types and exact conversions between float32 and the
 * 16-bit formats. Rounding is to nearest, ties to even, as on the GPU
 * (__float2bfloat16_rn, __float2half_rn), so CPU and GPU paths round alike.
 */
#include "runtime/core/error.h"

#include <string.h>

const char *mta_dtype_name(mta_dtype t)
{
	switch (t) {
	case MTA_F32: return "f32";
	case MTA_BF16: return "bf16";
	case MTA_F16: return "f16";
	case MTA_F64: return "f64";
	}
	return "?";
}

size_t mta_dtype_size(mta_dtype t)
{
	switch (t) {
	case MTA_F32: return 4;
	case MTA_BF16:
	case MTA_F16: return 2;
	case MTA_F64: return 8;
	}
	return 0;
}

static uint32_t bits(float f)
{
	uint32_t u;
	memcpy(&u, &f, 4);
	return u;
}

static float from_bits(uint32_t u)
{
	float f;
	memcpy(&f, &u, 4);
	return f;
}

uint16_t mta_f32_to_bf16(float f)
{
	uint32_t u = bits(f);
	if ((u & 0x7fffffffu) > 0x7f800000u) /* NaN: keep it a quiet NaN */
		return (uint16_t)((u >> 16) | 0x40);
	u += 0x7fffu + ((u >> 16) & 1);
	return (uint16_t)(u >> 16);
}

float mta_bf16_to_f32(uint16_t h) { return from_bits((uint32_t)h << 16); }

uint16_t mta_f32_to_f16(float f)
{
	uint32_t u = bits(f);
	uint32_t sign = (u >> 16) & 0x8000u;
	uint32_t a = u & 0x7fffffffu;
	if (a > 0x7f800000u)
		return (uint16_t)(sign | 0x7e00u);
	if (a >= 0x477ff000u) /* rounds to >= 65520: infinity */
		return (uint16_t)(sign | 0x7c00u);
	if (a < 0x38800000u) { /* below 2^-14: subnormal or zero */
		if (a < 0x33000000u) /* below 2^-25: rounds to zero */
			return (uint16_t)sign;
		uint32_t e = a >> 23, m = (a & 0x7fffffu) | 0x800000u;
		uint32_t shift = 126 - e; /* 14..24 */
		uint32_t r = m >> shift, rem = m & ((1u << shift) - 1), half = 1u << (shift - 1);
		if (rem > half || (rem == half && (r & 1)))
			r++;
		return (uint16_t)(sign | r);
	}
	uint32_t r = a - 0x38000000u; /* rebias exponent 127 -> 15 */
	r += 0xfffu + ((r >> 13) & 1);
	return (uint16_t)(sign | (r >> 13));
}

float mta_f16_to_f32(uint16_t h)
{
	uint32_t sign = (uint32_t)(h & 0x8000u) << 16;
	uint32_t e = (h >> 10) & 0x1f, m = h & 0x3ffu;
	if (e == 0x1f)
		return from_bits(sign | 0x7f800000u | (m << 13));
	if (e == 0) {
		if (!m)
			return from_bits(sign);
		/* subnormal: m * 2^-24 */
		float f = (float)m * (1.0f / 16777216.0f);
		return sign ? -f : f;
	}
	return from_bits(sign | ((e + 112) << 23) | (m << 13));
}

int mta_dtype_parse(const char *s, int *dtype)
{
	static const struct { const char *name; int t; } names[] = {
		{ "f32", MTA_F32 }, { "float32", MTA_F32 }, { "fp32", MTA_F32 },
		{ "bf16", MTA_BF16 }, { "bfloat16", MTA_BF16 },
		{ "f16", MTA_F16 }, { "float16", MTA_F16 }, { "fp16", MTA_F16 },
	};
	for (size_t i = 0; i < sizeof names / sizeof names[0]; i++)
		if (!strcmp(s, names[i].name)) {
			*dtype = names[i].t;
			return mta_done(MTA_OK);
		}
	return mta_fail(MTA_EINVAL, "unknown element type '%s' (expected f32, bf16 or f16)", s);
}
