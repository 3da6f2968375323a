/*
 * pick.h: which recorded winner serves a problem at (B, T): the one policy,
 * shared by the database-backed runtime (runtime/context.c) and an exported
 * library's dispatch table (templates/export_runtime.c). A pure function of
 * its arguments (core layer).
 *
 * Winners are kept per T bucket and B bucket, the smallest powers of two
 * >= T and >= B: one winner covers (t_bucket/2, t_bucket] x (b_bucket/2,
 * b_bucket]. Candidates come with a rung (mta.h, MTA_RUNG_*): how close the
 * device they were tuned on is to the one asking. The best rung present is
 * taken; within it, the exact buckets, else the nearest in log2 distance, T
 * first, then B, ties going to the larger bucket: a kernel tuned for longer
 * sequences and larger batches is the safer guess. With no candidate the
 * backend's default variant runs.
 */
#ifndef MTA_CORE_PICK_H
#define MTA_CORE_PICK_H

#include "runtime/mta.h"

/* The bucket of a size: the smallest power of two >= n (n < 1 counts as 1). */
int64_t mta_t_bucket(int64_t n);

struct mta_pick_cand {
	int rung;                  /* MTA_RUNG_DEVICE .. MTA_RUNG_ARCH */
	int64_t t_bucket, b_bucket;
};

/*
 * The index into c[0..n) of the winner for (B, T), with *source
 * (MTA_PICK_EXACT or MTA_PICK_NEAREST) and *rung (the candidate's); -1,
 * MTA_PICK_DEFAULT and MTA_RUNG_NONE when there is no candidate. Buckets
 * below 1 are never taken (readers refuse them as damage before they get
 * here).
 */
int mta_pick_winner(const struct mta_pick_cand *c, size_t n, int64_t B, int64_t T, int *source,
		    int *rung);

#endif
