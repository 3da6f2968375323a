/*
 * pick.h: which recorded winner serves a sequence length: the one policy,
 * shared by the database-backed runtime (through db/, mta_db_winner_get)
 * and an exported library's dispatch table (templates/export_runtime.c).
 * A pure function of its arguments (core layer).
 *
 * Winners are kept per T bucket, the smallest power of two >= T: one winner
 * covers the sequence lengths (bucket/2, bucket]. For a T whose bucket has
 * no winner, the nearest bucket that has one is taken, nearest in log2
 * distance (so 512 is as near to 1024 as 2048 is), ties going to the larger
 * bucket: a kernel tuned for longer sequences is the safer guess. With no
 * winner at all the backend's default variant runs.
 */
#ifndef MTA_CORE_PICK_H
#define MTA_CORE_PICK_H

#include <stddef.h>
#include <stdint.h>

/* Where a pick came from (mta_context_pick's *source). */
enum { MTA_PICK_DEFAULT = 0, MTA_PICK_NEAREST = 1, MTA_PICK_EXACT = 2 };

/* The T bucket: the smallest power of two >= T (T < 1 counts as 1). */
int64_t mta_t_bucket(int64_t T);

/*
 * The index into buckets[0..n) (powers of two, any order) of the winner
 * for T, and *source (MTA_PICK_EXACT or MTA_PICK_NEAREST); -1 and
 * MTA_PICK_DEFAULT when n is 0. Entries below 1 are never taken (readers
 * refuse them as damage before they get here).
 */
int mta_pick_bucket(const int64_t *buckets, size_t n, int64_t T, int *source);

#endif
