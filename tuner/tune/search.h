/*
 * search.h: which variants the tuner screens, in what order: the strategy,
 * apart from the measuring, so that it can be run against recorded times
 * (a test replays a recorded space through it).
 *
 *   exhaustive  every variant, in the space's order (the seeds first);
 *   random      a seeded random sample of `budget` variants (plus the seeds);
 *   auto        model-based: first a covering design (the seeds, then
 *               variants chosen so that every value of every tunable is seen
 *               at least once, most new values first), then, one or two at a
 *               time, the unmeasured variants an additive model of the log
 *               time (one term per tunable value, ridge least squares on what
 *               was measured) predicts fastest, until the budget is spent or
 *               every variant the model puts within 2% of the best measured
 *               one has been measured. The budget defaults to a third of the
 *               space (at least 8).
 *
 * The seeds are the default variant (always measured: speed-ups are quoted
 * against it) and, to warm-start a search, the winners recorded for this
 * problem at other sizes and for the nearest other problems.
 */
#ifndef MTA_TUNE_SEARCH_H
#define MTA_TUNE_SEARCH_H

#include "gen/variant.h"

/* Spaces larger than this are searched with MTA_TUNE_AUTO unless told otherwise. */
#define MTA_SEARCH_AUTO_ABOVE 24

struct mta_search;

/*
 * A search over the n variants vs (copied) with the given strategy
 * (MTA_TUNE_*: tune.h) and budget (variants to screen; 0: the strategy's
 * default), random seed, and seeds[0..nseeds) (indices into vs) screened
 * first in that order.
 */
int mta_search_new(int strategy, const struct mta_variant *vs, size_t n, size_t budget,
		   unsigned long long seed, const size_t *seeds, size_t nseeds,
		   struct mta_search **out);
void mta_search_free(struct mta_search *s);

/*
 * The next variants to screen, up to max, as indices into vs into idx; 0
 * when the search is done. Every index returned must be answered with
 * mta_search_tell before the next call.
 */
size_t mta_search_next(struct mta_search *s, size_t *idx, size_t max);

/* What screening variant i gave: its median time, or NAN when it failed. */
void mta_search_tell(struct mta_search *s, size_t i, double ms);

/* Variants screened so far. */
size_t mta_search_screened(const struct mta_search *s);
/* The most variants the search will screen. */
size_t mta_search_budget(const struct mta_search *s);
/*
 * The budget a search of n variants gets with the given strategy and asked
 * budget (0: the strategy's default): what mta_search_budget will say.
 */
size_t mta_search_plan(int strategy, size_t n, size_t budget);

#endif
