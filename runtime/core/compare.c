/*
 * compare.c: how a kernel's output is judged against the float64 reference
 * (mta.h: mta_rel_l2, mta_tolerance, mta_tolerance_elem, mta_compare and
 * mta_compare_mag, and the gradients' mta_compare_grad and
 * mta_compare_grad_mag).
 *
 * Two bounds, both required: the relative L2 error of the whole output, which
 * catches a small error spread everywhere, and an element-wise bound, which
 * catches one wrong element that the L2 norm would average away (a single
 * element off by 1 in a 300x4x32 bf16 output moves the relative L2 error by
 * less than the 1e-2 the rounding needs). The element-wise atol is in units
 * of the reference's RMS, so one bound serves outputs of any scale.
 */
#include "runtime/core/error.h"

#include <math.h>

double mta_rel_l2(const float *o, const double *e, size_t n)
{
	double num = 0, den = 0;
	for (size_t i = 0; i < n; i++) {
		if (!isfinite(o[i]))
			return INFINITY;
		double d = (double)o[i] - e[i];
		num += d * d;
		den += e[i] * e[i];
	}
	return den > 0 ? sqrt(num / den) : sqrt(num);
}

double mta_tolerance(int dtype)
{
	return dtype == MTA_F32 ? 1e-5 : 1e-2;
}

void mta_tolerance_elem(int dtype, double *atol, double *rtol)
{
	double t = dtype == MTA_F32 ? 1e-4 : 5e-2;
	if (atol)
		*atol = t;
	if (rtol)
		*rtol = t;
}

double mta_tolerance_grad(int dtype)
{
	return dtype == MTA_F32 ? 1e-4 : 2e-2;
}

void mta_tolerance_grad_elem(int dtype, double *atol, double *rtol)
{
	double t = dtype == MTA_F32 ? 1e-3 : 1e-1;
	if (atol)
		*atol = t;
	if (rtol)
		*rtol = t;
}

/* The scale element i is judged on: |e_i|, or max(|e_i|, cancel * mag_i). */
static double scale_of(const double *e, const double *mag, double cancel, size_t i)
{
	double s = fabs(e[i]);
	return mag && cancel * mag[i] > s ? cancel * mag[i] : s;
}

/*
 * Both comparisons: o against e under relative L2 tol and the element bound
 * atol, rtol, on the scale scale_of (|e| when mag is NULL).
 */
static int compare(const float *o, const double *e, const double *mag, double cancel, size_t n,
		   double tol, double atol, double rtol, struct mta_compare *out)
{
	struct mta_compare r = { 0 };
	double sq = 0, dd = 0, worst_x = -1;
	size_t widened = 0;

	r.n = n;
	r.tol = tol;
	r.atol = atol;
	r.rtol = rtol;
	for (size_t i = 0; i < n; i++) {
		double s = scale_of(e, mag, cancel, i), d = (double)o[i] - e[i];
		sq += s * s;
		dd += d * d;
		widened += s > fabs(e[i]);
	}
	r.rms = n ? sqrt(sq / (double)n) : 0;
	r.rel_l2 = mag ? (isfinite(dd) ? (sq > 0 ? sqrt(dd / sq) : sqrt(dd)) : INFINITY)
		       : mta_rel_l2(o, e, n);
	for (size_t i = 0; i < n; i++) {
		double bound = r.atol * r.rms + r.rtol * scale_of(e, mag, cancel, i);
		double d = fabs((double)o[i] - e[i]);
		/* NaN fails: !(d <= bound); its excess counts as infinite */
		double x = d <= bound ? 0 : isfinite(d) ? d - bound : INFINITY;
		if (!(d <= bound))
			r.bad++;
		if (x > worst_x) {
			worst_x = x;
			r.worst = i;
		}
	}
	if (n) {
		r.worst_value = o[r.worst];
		r.worst_expected = e[r.worst];
	}
	if (out)
		*out = r;
	if ((!(r.rel_l2 <= r.tol) || r.bad) && widened)
		return mta_fail(MTA_EVERIFY, "relative L2 error %.3g %s %g; %zu of %zu elements "
				"beyond |o-e| <= %g*rms(s) + %g*s, s = max(|e|, %g*(sum of the "
				"terms' magnitudes)) (rms(s) %.3g; %zu elements' terms cancel beyond "
				"1/%g); worst element %zu is %g, expected %g (its terms' magnitudes %g)",
				r.rel_l2, r.rel_l2 <= r.tol ? "is within" : "exceeds", r.tol, r.bad,
				n, r.atol, r.rtol, cancel, r.rms, widened, cancel,
				r.worst, r.worst_value, r.worst_expected, mag[r.worst]);
	if (!(r.rel_l2 <= r.tol) || r.bad)
		return mta_fail(MTA_EVERIFY, "relative L2 error %.3g %s %g; %zu of %zu elements "
				"beyond |o-e| <= %g*rms + %g*|e| (rms %.3g); worst element %zu is %g, "
				"expected %g", r.rel_l2, r.rel_l2 <= r.tol ? "is within" : "exceeds",
				r.tol, r.bad, n, r.atol, r.rtol, r.rms, r.worst, r.worst_value,
				r.worst_expected);
	return mta_done(MTA_OK);
}

int mta_compare(const float *o, const double *e, size_t n, int dtype, struct mta_compare *out)
{
	double atol, rtol;
	mta_tolerance_elem(dtype, &atol, &rtol);
	return compare(o, e, NULL, 0, n, mta_tolerance(dtype), atol, rtol, out);
}

int mta_compare_mag(const float *o, const double *e, const double *mag, size_t n, int dtype,
		    struct mta_compare *out)
{
	double atol, rtol;
	mta_tolerance_elem(dtype, &atol, &rtol);
	return compare(o, e, mag, MTA_FWD_CANCEL, n, mta_tolerance(dtype), atol, rtol, out);
}

int mta_compare_grad(const float *o, const double *e, size_t n, int dtype, struct mta_compare *out)
{
	double atol, rtol;
	mta_tolerance_grad_elem(dtype, &atol, &rtol);
	return compare(o, e, NULL, 0, n, mta_tolerance_grad(dtype), atol, rtol, out);
}

int mta_compare_grad_mag(const float *o, const double *e, const double *mag, size_t n,
			 int dtype, struct mta_compare *out)
{
	double atol, rtol;
	mta_tolerance_grad_elem(dtype, &atol, &rtol);
	return compare(o, e, mag, MTA_GRAD_CANCEL, n, mta_tolerance_grad(dtype), atol, rtol, out);
}
