/*
 * stats.h: how sure a timing comparison is.
 *
 * Two kernels timed side by side in paired rounds (each round times both,
 * one right after the other, so the machine's drift, which on a shared
 * machine is 1.5-2x within a minute, hits both alike) give one ratio per
 * round. Their geometric mean estimates the speed ratio; a bootstrap over
 * the rounds (resampling whole rounds, so the pairing is kept) gives its
 * 95% interval. The resampling is seeded, so the same times always give
 * the same interval.
 */
#ifndef MTA_MEASURE_STATS_H
#define MTA_MEASURE_STATS_H

/* The estimate of a over b from paired times a[i], b[i], i < n. */
struct mta_ratio {
	double ratio;      /* geometric mean of a[i]/b[i] */
	double lo, hi;     /* its 95% bootstrap interval */
	int n;             /* the rounds used */
};

/*
 * Compare paired times a and b over n rounds (n >= 2; non-positive or
 * non-finite times make the round count as lost: skipped). MTA_OK, or
 * MTA_EINVAL when fewer than 2 usable rounds remain.
 */
int mta_paired_ratio(const double *a, const double *b, int n, struct mta_ratio *r);

/* The median of x[0..n) (x is reordered). */
double mta_median(double *x, int n);

#endif
