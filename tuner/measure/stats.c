/* stats.c: paired ratios and their bootstrap intervals (see stats.h). */
#include "tuner/measure/stats.h"
#include "runtime/core/error.h"

#include <math.h>
#include <stdlib.h>

#define RESAMPLES 2000

static int cmp_d(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;
	return x < y ? -1 : x > y;
}

double mta_median(double *x, int n)
{
	if (n < 1)
		return NAN;
	qsort(x, (size_t)n, sizeof *x, cmp_d);
	return n % 2 ? x[n / 2] : 0.5 * (x[n / 2 - 1] + x[n / 2]);
}

/* xorshift64*: a fixed seed, so an interval is a function of the times alone. */
static unsigned long long next(unsigned long long *s)
{
	*s ^= *s >> 12;
	*s ^= *s << 25;
	*s ^= *s >> 27;
	return *s * 2685821657736338717ULL;
}

int mta_paired_ratio(const double *a, const double *b, int n, struct mta_ratio *r)
{
	double *d = malloc((size_t)(n > 0 ? n : 1) * sizeof *d);
	double *means = malloc(RESAMPLES * sizeof *means);
	int m = 0, rc = MTA_OK;
	if (!d || !means) {
		rc = mta_fail(MTA_ENOMEM, "out of memory for the paired comparison");
		goto out;
	}
	for (int i = 0; i < n; i++)
		if (isfinite(a[i]) && isfinite(b[i]) && a[i] > 0 && b[i] > 0)
			d[m++] = log(a[i] / b[i]);
	if (m < 2) {
		rc = mta_fail(MTA_EINVAL, "%d usable paired rounds: at least 2 are needed", m);
		goto out;
	}
	double sum = 0;
	for (int i = 0; i < m; i++)
		sum += d[i];
	unsigned long long s = 0x9E3779B97F4A7C15ULL ^ (unsigned long long)m;
	for (int k = 0; k < RESAMPLES; k++) {
		double t = 0;
		for (int i = 0; i < m; i++)
			t += d[next(&s) % (unsigned long long)m];
		means[k] = t / m;
	}
	qsort(means, RESAMPLES, sizeof *means, cmp_d);
	r->ratio = exp(sum / m);
	r->lo = exp(means[(int)(0.025 * RESAMPLES)]);
	r->hi = exp(means[(int)(0.975 * RESAMPLES) - 1]);
	r->n = m;
out:
	free(d);
	free(means);
	return rc;
}
