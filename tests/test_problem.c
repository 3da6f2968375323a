/* test_problem.c: the problem key (format <-> parse) and validation rules. */
#include "tests/harness.h"
#include "runtime/mta.h"

static struct mta_problem random_problem(void)
{
	struct mta_problem p;
	int hkv_opts[] = { 1, 2, 4 };
	int hkv = hkv_opts[(int)((mt_uniform() + 1) * 1.5) % 3];
	int H = hkv * (1 + (int)((mt_uniform() + 1) * 4) % 8);
	mta_problem_init(&p, H, hkv, 1 + (int)((mt_uniform() + 1) * 64) % 128);
	p.pad = (int)((mt_uniform() + 1) * 1.5) % 3;
	if (mt_uniform() > 0) {
		p.cq = 1 + (int)((mt_uniform() + 1) * 4) % 8;
		p.ck = 1 + (int)((mt_uniform() + 1) * 6) % 12;
		if (p.pad == MTA_PAD_BOTH && p.ck % 2 == 0)
			p.ck++;
	}
	p.head_pre = mt_uniform() > 0;
	if (mt_uniform() > 0) {
		p.cq2 = 1 + (int)((mt_uniform() + 1) * 4) % 8;
		p.ck2 = 1 + (int)((mt_uniform() + 1) * 6) % 12;
		if (p.pad == MTA_PAD_BOTH && p.ck2 % 2 == 0)
			p.ck2++;
	}
	double r = mt_uniform();
	if (r > 0.3) {
		p.head_post = MTA_HPOST_CONV;
		p.hc = 1;
		for (int c = H; c >= 1; c--)
			if (H % c == 0 && mt_uniform() > 0) {
				p.hc = c;
				break;
			}
	} else if (r > -0.3) {
		p.head_post = MTA_HPOST_LINEAR;
	}
	p.gn = mt_uniform() > 0;
	p.gn_rescale = p.gn && mt_uniform() > 0;
	p.gate = mt_uniform() > 0;
	if (mt_uniform() > 0.5)
		p.scale = (float)(0.01 + (mt_uniform() + 1));
	p.dtype = (int)((mt_uniform() + 1) * 1.5) % 3;
	return p;
}

TEST(problem_key_round_trips)
{
	for (int n = 0; n < 2000; n++) {
		struct mta_problem p = random_problem(), back;
		char key[MTA_KEY_MAX], key2[MTA_KEY_MAX];
		REQUIRE(mta_problem_validate(&p) == MTA_OK);
		REQUIRE(mta_problem_key(&p, key, sizeof key) == MTA_OK);
		CHECKF(mta_problem_from_key(key, &back) == MTA_OK, "%s: %s", key, mta_last_error());
		CHECKF(!memcmp(&p, &back, sizeof p), "key %s did not parse back to the same struct", key);
		REQUIRE(mta_problem_key(&back, key2, sizeof key2) == MTA_OK);
		CHECKF(!strcmp(key, key2), "%s != %s", key, key2);
	}
}

TEST(problem_key_paper_config)
{
	struct mta_problem p;
	char key[MTA_KEY_MAX];
	const char *k = "h16kv16d96-pre6x11-hpre-post6x11-hc16-both-gn-gate-bf16";
	REQUIRE(mta_problem_from_key(k, &p) == MTA_OK);
	CHECK_EQ_INT(p.H, 16);
	CHECK_EQ_INT(p.D, 96);
	CHECK_EQ_INT(p.cq, 6);
	CHECK_EQ_INT(p.ck, 11);
	CHECK_EQ_INT(p.head_pre, 1);
	CHECK_EQ_INT(p.head_post, MTA_HPOST_CONV);
	CHECK_EQ_INT(p.hc, 16);
	CHECK_EQ_INT(p.gn, 1);
	CHECK_EQ_INT(p.gate, 1);
	CHECK_EQ_INT(p.dtype, MTA_BF16);
	REQUIRE(mta_problem_key(&p, key, sizeof key) == MTA_OK);
	CHECK(!strcmp(key, k));
	/* any order parses, and formats canonically */
	REQUIRE(mta_problem_from_key("bf16-gate-h16kv16d96-gn-hc16-post6x11-hpre-pre6x11-both", &p) == MTA_OK);
	REQUIRE(mta_problem_key(&p, key, sizeof key) == MTA_OK);
	CHECK(!strcmp(key, k));
	CHECK(mta_problem_key(&p, key, 10) == MTA_EINVAL);
}

TEST(problem_invalid_combinations_are_named)
{
	static const struct { const char *key, *msg; } bad[] = {
		{ "h4kv4d8-pre3x4-both-f32", "odd key size" },
		{ "h4kv4d8-post2x6-both-f32", "odd key size" },
		{ "h6kv4d8-both-f32", "not a multiple of Hkv" },
		{ "h6kv6d8-hc4-both-f32", "not a multiple of the head_post group" },
		{ "h0kv1d8-both-f32", "at least 1" },
		{ "h4kv4d0-both-f32", "at least 1" },
		{ "h4kv4d8-pre0x3-left-f32", "at least 1" },
		{ "h4kv4d8-pre3x0-left-f32", "at least 1" },
		{ "h4kv4d8-hc0-both-f32", "at least 1" },
		{ "h4kv4d8-pre65x3-both-f32", "not supported" },
		{ "h4kv4d8-both-s0.00003-f32", "out of the supported range 1e-3 .. 1e4" }, /* fuzz */
		{ "h4kv4d8-both-s20000-f32", "out of the supported range" },
		{ "h512kv1d8-both-f32", "supported" },
		{ "h4kv4d8-both-gnr-f32-gate", "OK" }, /* valid: the loop expects MTA_OK */
		{ "h4kv4d8-both-f32-gate-gate", "repeats" },
		{ "h4kv4d8-hc2-hpost-both-f32", "repeats" },
		{ "h4kv4d8-both-f64", "unknown part" },
		{ "h4kv4d8-pre3x3-sideways-f32", "unknown part" },
		{ "h4kv4d8-pre3y3-both-f32", "malformed" },
		{ "h4kvd8-both-f32", "malformed" },
		{ "pre3x3-both-f32", "lacks" },
		{ "h4kv4d8--both-f32", "empty part" },
		{ "h4kv4d8-both-f32-", "empty part" },
		{ "-h4kv4d8-both-f32", "empty part" },
		{ "", "empty" },
		{ "h4kv4d8-s-1-f32", "unknown part" },
		{ "h4kv4d8-s0-f32", "positive" },
		{ "h4kv4d8-s1e99-f32", "positive" },
		{ "h99999999kv1d1-both-f32", "malformed" },
	};
	for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
		struct mta_problem p;
		int rc = mta_problem_from_key(bad[i].key, &p);
		if (!strcmp(bad[i].msg, "OK")) {
			CHECKF(rc == MTA_OK, "%s: %s", bad[i].key, mta_last_error());
			continue;
		}
		CHECKF(rc == MTA_EINVAL, "'%s' was accepted", bad[i].key);
		CHECK_STR_CONTAINS(mta_last_error(), bad[i].msg);
	}
	/* rules that only a struct can break */
	struct mta_problem p;
	mta_problem_init(&p, 4, 4, 8);
	p.gn_rescale = 1;
	CHECK(mta_problem_validate(&p) == MTA_EINVAL);
	CHECK_STR_CONTAINS(mta_last_error(), "gn_rescale needs gn");
	mta_problem_init(&p, 4, 4, 8);
	p.hc = 2;
	CHECK(mta_problem_validate(&p) == MTA_EINVAL);
	CHECK_STR_CONTAINS(mta_last_error(), "without head_post");
	mta_problem_init(&p, 4, 4, 8);
	p.scale = -1;
	CHECK(mta_problem_validate(&p) == MTA_EINVAL);
	p.scale = NAN;
	CHECK(mta_problem_validate(&p) == MTA_EINVAL);
	mta_problem_init(&p, 4, 4, 8);
	p.dtype = MTA_F64;
	CHECK(mta_problem_validate(&p) == MTA_EINVAL);
	mta_problem_init(&p, 4, 4, 8);
	p.pad = 7;
	CHECK(mta_problem_validate(&p) == MTA_EINVAL);
	mta_problem_init(&p, 4, 4, 8);
	p.cq = 3;
	CHECK(mta_problem_validate(&p) == MTA_EINVAL); /* ck missing */
}

TEST(problem_scale_round_trips_exactly)
{
	for (int n = 0; n < 500; n++) {
		struct mta_problem p, back;
		char key[MTA_KEY_MAX];
		mta_problem_init(&p, 2, 1, 16);
		/* log-uniform over the whole supported range 1e-3 .. 1e4 */
		p.scale = (float)(1e-3 * pow(10, 7 * fabs(mt_uniform())));
		if (p.scale < 1e-3f || p.scale > 1e4f)
			p.scale = 1.0f;
		REQUIRE(mta_problem_key(&p, key, sizeof key) == MTA_OK);
		REQUIRE(mta_problem_from_key(key, &back) == MTA_OK);
		CHECKF(back.scale == p.scale, "%s: %.9g != %.9g", key, back.scale, p.scale);
	}
}

TEST(dtype_conversions_round_to_nearest_even)
{
	/* bf16: exact values survive, halfway cases go to even */
	CHECK(mta_bf16_to_f32(mta_f32_to_bf16(1.0f)) == 1.0f);
	CHECK(mta_bf16_to_f32(mta_f32_to_bf16(-3.5f)) == -3.5f);
	CHECK(mta_f32_to_bf16(1.0f + 1.0f / 256) == 0x3f80); /* tie -> even (down) */
	CHECK(mta_f32_to_bf16(1.0f + 3.0f / 256) == 0x3f82); /* tie -> even (up) */
	CHECK(isnan(mta_bf16_to_f32(mta_f32_to_bf16(NAN))));
	CHECK(isinf(mta_bf16_to_f32(mta_f32_to_bf16(INFINITY))));
	/* f16: normal, subnormal, overflow, ties */
	CHECK(mta_f32_to_f16(1.0f) == 0x3c00);
	CHECK(mta_f32_to_f16(-2.0f) == 0xc000);
	CHECK(mta_f32_to_f16(65504.0f) == 0x7bff);
	CHECK(mta_f32_to_f16(65520.0f) == 0x7c00);
	CHECK(mta_f32_to_f16(5.9604645e-8f) == 0x0001);
	CHECK(mta_f32_to_f16(1.0f + 1.0f / 2048) == 0x3c00);
	CHECK(mta_f32_to_f16(1.0f + 3.0f / 2048) == 0x3c02);
	CHECK(isnan(mta_f16_to_f32(mta_f32_to_f16(NAN))));
	/* every f16 value converts to f32 and back unchanged */
	for (unsigned h = 0; h < 0x10000; h++) {
		if ((h & 0x7c00) == 0x7c00 && (h & 0x3ff))
			continue; /* NaN payloads */
		float f = mta_f16_to_f32((uint16_t)h);
		CHECKF(mta_f32_to_f16(f) == h, "f16 %04x -> %g -> %04x", h, f, mta_f32_to_f16(f));
	}
	/* rounding error bounds on random values */
	for (int i = 0; i < 100000; i++) {
		float f = (float)(mt_uniform() * 100);
		float b = mta_bf16_to_f32(mta_f32_to_bf16(f)), h = mta_f16_to_f32(mta_f32_to_f16(f));
		CHECKF(fabsf(b - f) <= fabsf(f) / 256, "bf16(%g) = %g", f, b);
		CHECKF(fabsf(h - f) <= fabsf(f) / 2048 + 3e-8f, "f16(%g) = %g", f, h);
	}
}
