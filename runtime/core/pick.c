/* pick.c: the winner-lookup policy (see pick.h). */
#include "runtime/core/pick.h"

#include <stdlib.h>

int64_t mta_t_bucket(int64_t T)
{
	int64_t b = 1;
	while (b < T && b < ((int64_t)1 << 62))
		b <<= 1;
	return b;
}

/* floor(log2(x)) for x >= 1. */
static int ilog2(int64_t x)
{
	int n = 0;
	while (x > 1) {
		x >>= 1;
		n++;
	}
	return n;
}

int mta_pick_bucket(const int64_t *buckets, size_t n, int64_t T, int *source)
{
	int want = ilog2(mta_t_bucket(T)), best = -1, bd = 0;
	for (size_t i = 0; i < n; i++) {
		if (buckets[i] < 1)
			continue; /* not a bucket: never taken for bucket 1 */
		int d = abs(ilog2(buckets[i]) - want);
		if (best < 0 || d < bd || (d == bd && buckets[i] > buckets[best])) {
			best = (int)i;
			bd = d;
		}
	}
	*source = best < 0 ? MTA_PICK_DEFAULT : bd ? MTA_PICK_NEAREST : MTA_PICK_EXACT;
	return best;
}
