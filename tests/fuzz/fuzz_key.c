/*
 * fuzz_key.c: libFuzzer target for problem keys (mta_problem_from_key).
 *
 * Any string is accepted or refused with MTA_EINVAL and a message. An
 * accepted key describes a valid problem whose canonical key parses back to
 * the same problem and prints as the same key (a fixed point).
 */
#include "runtime/mta.h"

#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const unsigned char *data, size_t n)
{
	char *s = malloc(n + 1), k1[MTA_KEY_MAX], k2[MTA_KEY_MAX];
	struct mta_problem p, q;
	if (!s)
		return 0;
	memcpy(s, data, n);
	s[n] = 0;
	int rc = mta_problem_from_key(s, &p);
	if (rc) {
		if (rc != MTA_EINVAL || !mta_last_error()[0])
			abort();
		goto out;
	}
	if (mta_problem_validate(&p) || mta_problem_key(&p, k1, sizeof k1) ||
	    mta_problem_from_key(k1, &q) || mta_problem_key(&q, k2, sizeof k2) || strcmp(k1, k2) ||
	    memcmp(&p, &q, sizeof p))
		abort();
out:
	free(s);
	return 0;
}
