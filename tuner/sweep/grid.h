/*
 * grid.h: sweep grids, the text files `mtatune sweep --grid FILE` reads
 * (format: docs/grid.md).
 *
 *   # the problems, sizes and dtypes to tune
 *   problem h16kv16d96-pre6x11-both h2kv1d8-pre2x3-both
 *   seq     256..4096*2        # 256 512 1024 2048 4096
 *   batch   1 2
 *   dtype   f32 bf16           # replaces each key's own dtype
 *   op      fwd bwd            # the operations tuned (default fwd)
 *   ck      3..7+2             # replaces the pre-softmax kernel's key size
 *
 * The problem keys are the product problems x dtypes x cq x ck x cq2 x ck2
 * (a kernel size, 1..MTA_MAX_KERNEL, replaces that size in every problem, so
 * each must have that kernel; a size a problem cannot take is an error, never
 * dropped). A grid is the cartesian product keys x ops x batches x seqs, in
 * that nesting order (seq varies fastest; without an op line every item is
 * the forward, numbered as before ops were an axis), with every list in the order written
 * and repeats dropped: the same file always expands to the same numbered
 * items, which is what shards (item i goes to shard i mod N) rely on.
 */
#ifndef MTA_GRID_H
#define MTA_GRID_H

#include <stddef.h>
#include <stdint.h>

#include "gen/variant.h"
#include "runtime/mta.h"

#define MTA_GRID_MAX_VALUES 4096     /* values in one list after expanding ranges */
#define MTA_GRID_MAX_ITEMS 1000000   /* items in one grid */
#define MTA_GRID_MAX_PROBLEMS 65536  /* distinct problem keys in one grid */
#define MTA_GRID_MAX_SIZE 16777216  /* largest T or B (2^24) */

struct mta_grid_item {
	size_t problem;  /* index into keys */
	int64_t T, B;
	int op;          /* MTA_OP_FWD or MTA_OP_BWD (gen/variant.h) */
};

struct mta_grid {
	char (*keys)[MTA_KEY_MAX]; /* canonical problem keys, dtype applied */
	size_t nkeys;
	struct mta_grid_item *items;
	size_t n;
};

/*
 * Parse a grid from len bytes of text (need not be NUL-terminated; a NUL
 * byte is an error). name is used in messages: a mistake is MTA_EFORMAT with
 * "name:line:column: what was wrong and what was expected". On success *g
 * owns its memory (mta_grid_free); on failure *g is empty.
 */
int mta_grid_parse(const char *text, size_t len, const char *name, struct mta_grid *g);
/* Read and parse a file (MTA_EIO when it cannot be read). */
int mta_grid_load(const char *path, struct mta_grid *g);
void mta_grid_free(struct mta_grid *g);

#endif
