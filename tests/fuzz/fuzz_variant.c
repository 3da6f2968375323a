/*
 * fuzz_variant.c: libFuzzer target for variant specs (mta_variant_parse).
 *
 * Any string is accepted or refused with a message. An accepted spec prints
 * in canonical form, which parses back to the same variant; checking it
 * against a small problem and generating its C source (when valid) must not
 * crash either.
 */
#include "gen/cpu/cgen.h"
#include "gen/variant.h"

#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const unsigned char *data, size_t n)
{
	char *s = malloc(n + 1), f1[MTA_SPEC_MAX], f2[MTA_SPEC_MAX];
	struct mta_variant v, w;
	struct mta_problem p;
	if (!s)
		return 0;
	memcpy(s, data, n);
	s[n] = 0;
	if (mta_variant_parse(s, &v)) {
		if (!mta_last_error()[0])
			abort();
		goto out;
	}
	if (mta_variant_format(&v, f1, sizeof f1) || mta_variant_parse(f1, &w) ||
	    mta_variant_format(&w, f2, sizeof f2) || strcmp(f1, f2) || memcmp(&v, &w, sizeof v))
		abort();
	if (mta_problem_from_key("h4kv2d16-pre2x3-hpre-post2x3-hc2-both-gn-gate-f32", &p))
		abort();
	if (mta_variant_check(&p, &v) == MTA_OK && v.backend == MTA_BACKEND_CPU) {
		char *src = NULL;
		if (mta_gen_c(&p, &v, &src))
			abort();
		free(src);
	}
out:
	free(s);
	return 0;
}
