/*
 * report_axis.c: the report's chart axes (report_int.h): round tick values
 * from the 1-2-5 sequence, a logarithmic scale when the data spans more than
 * a decade, and the one colour scale of the heat maps.
 *
 * A reader compares bars and points against the ticks, so the ticks are
 * values a person would write (0.2, 0.5, 1, 2, 5 ms, never 0.3487 ms) and
 * the axis is stretched to the nearest such values around the data, never
 * cut inside it.
 */
#include "tuner/report/report_int.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

/* The smallest value of the 1-2-5 sequence (..., 0.5, 1, 2, 5, 10, ...) >= raw > 0. */
static double nice_up(double raw)
{
	double e = floor(log10(raw)), p = pow(10, e), f = raw / p;
	/* 1e-9: raw already a sequence value, read back with rounding error */
	return (f <= 1 + 1e-9 ? 1 : f <= 2 + 1e-9 ? 2 : f <= 5 + 1e-9 ? 5 : 10) * p;
}

static void add_tick(struct raxis *a, double v)
{
	if (a->nt < RAXIS_MAXT)
		a->tick[a->nt++] = v;
}

/* Ticks m * 10^e, m in mult[0..nm), from the largest <= lo to the smallest >= hi. */
static void log_ticks(struct raxis *a, double lo, double hi, const double *mult, int nm)
{
	int e0 = (int)floor(log10(lo)), e1 = (int)ceil(log10(hi));
	a->lo = pow(10, e0);
	a->hi = pow(10, e1);
	for (int e = e0; e <= e1; e++)
		for (int m = 0; m < nm; m++) {
			double v = mult[m] * pow(10, e);
			if (v <= lo * (1 + 1e-9))
				a->lo = v;
			if (v >= hi * (1 - 1e-9) && v < a->hi)
				a->hi = v;
		}
	for (int e = e0; e <= e1; e++)
		for (int m = 0; m < nm; m++) {
			double v = mult[m] * pow(10, e);
			if (v >= a->lo * (1 - 1e-9) && v <= a->hi * (1 + 1e-9))
				add_tick(a, v);
		}
}

void raxis_make(struct raxis *a, double lo, double hi, int allow_log, int from_zero)
{
	static const double m125[] = { 1, 2, 5 }, m1[] = { 1 };
	memset(a, 0, sizeof *a);
	if (!isfinite(lo) || !isfinite(hi)) {
		lo = 0;
		hi = 1;
	}
	if (hi < lo) {
		double t = lo;
		lo = hi;
		hi = t;
	}
	if (allow_log && lo > 0 && hi / lo > 10) {
		a->log = 1;
		/* 1, 2, 5 in each decade while that stays readable, else the decades alone */
		if (log10(hi / lo) <= 3.5)
			log_ticks(a, lo, hi, m125, 3);
		else
			log_ticks(a, lo, hi, m1, 1);
		return;
	}
	if (from_zero && lo > 0)
		lo = 0;
	if (hi <= lo) { /* one value: put it in the middle of a span of a fifth of it */
		double half = hi != 0 ? fabs(hi) * 0.1 : 0.5;
		lo = from_zero && lo >= 0 ? lo : lo - half;
		hi += half;
	}
	double step = nice_up((hi - lo) / 5);
	double k0 = floor(lo / step + 1e-9), k1 = ceil(hi / step - 1e-9);
	if (k1 <= k0)
		k1 = k0 + 1;
	a->lo = k0 * step;
	a->hi = k1 * step;
	for (double k = k0; k <= k1 + 0.5; k++)
		add_tick(a, k * step);
}

double raxis_frac(const struct raxis *a, double v)
{
	double f = a->log ? log(v / a->lo) / log(a->hi / a->lo) : (v - a->lo) / (a->hi - a->lo);
	return isfinite(f) ? f < 0 ? 0 : f > 1 ? 1 : f : 0;
}

void raxis_label(double v, char *buf, size_t n)
{
	/* ticks are k * step: %.6g drops the rounding error of the product (0.30000000000000004) */
	snprintf(buf, n, "%.6g", fabs(v) < 1e-12 ? 0.0 : v);
}

/* Green (fastest) through yellow to red (slowest) for t in [0, 1]. */
void heat_colour(double t, char *buf, size_t n)
{
	static const double c[3][3] = { { 26, 152, 80 }, { 254, 224, 139 }, { 215, 48, 39 } };
	t = !(t > 0) ? 0 : t > 1 ? 1 : t;
	int i = t < 0.5 ? 0 : 1;
	double u = t < 0.5 ? 2 * t : 2 * t - 1;
	snprintf(buf, n, "#%02x%02x%02x", (int)(c[i][0] + u * (c[i + 1][0] - c[i][0])),
		 (int)(c[i][1] + u * (c[i + 1][1] - c[i][1])),
		 (int)(c[i][2] + u * (c[i + 1][2] - c[i][2])));
}
