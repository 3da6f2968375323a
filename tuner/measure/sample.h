/*
 * sample.h: random problem inputs (q, k, v in the problem's element type,
 * and every weight), for the tuner's checks, the tests and the benchmarks.
 * Values are uniform in [-1, 1) and never exactly zero, so a kernel that
 * skips work cannot pass by accident.
 */
#ifndef MTA_SAMPLE_H
#define MTA_SAMPLE_H

#include "runtime/mta.h"

struct mta_sample {
	int64_t B, T;
	struct mta_tensor q, k, v;   /* contiguous, in the problem's dtype */
	struct mta_weights w;        /* every pointer set, whatever the problem uses */
	void *mem[10];
};

int mta_sample_make(const struct mta_problem *p, int64_t B, int64_t T, unsigned long long seed,
		    struct mta_sample *s);
void mta_sample_free(struct mta_sample *s);

#endif
