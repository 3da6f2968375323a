/* pick.c: the winner-lookup policy (see pick.h). */
#include "runtime/core/pick.h"

#include <stdlib.h>

int64_t mta_t_bucket(int64_t n)
{
	int64_t b = 1;
	while (b < n && b < ((int64_t)1 << 62))
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

int mta_pick_winner(const struct mta_pick_cand *c, size_t n, int64_t B, int64_t T, int *source,
		    int *rung)
{
	const int wt = ilog2(mta_t_bucket(T)), wb = ilog2(mta_t_bucket(B));
	int best = -1, bt = 0, bb = 0;
	for (size_t i = 0; i < n; i++) {
		if (c[i].t_bucket < 1 || c[i].b_bucket < 1)
			continue; /* not a bucket: never taken for bucket 1 */
		int dt = abs(ilog2(c[i].t_bucket) - wt), db = abs(ilog2(c[i].b_bucket) - wb);
		int better = best < 0 || c[i].rung < c[best].rung;
		if (!better && c[i].rung == c[best].rung)
			better = dt < bt || (dt == bt && (db < bb || (db == bb &&
				 (c[i].t_bucket > c[best].t_bucket ||
				  (c[i].t_bucket == c[best].t_bucket && c[i].b_bucket > c[best].b_bucket)))));
		if (better) {
			best = (int)i;
			bt = dt;
			bb = db;
		}
	}
	*source = best < 0 ? MTA_PICK_DEFAULT : bt || bb ? MTA_PICK_NEAREST : MTA_PICK_EXACT;
	*rung = best < 0 ? MTA_RUNG_NONE : c[best].rung;
	return best;
}
