/*
 * report.c: the HTML report (see report.h): tables and inline SVG drawn
 * from the database's contents in memory (report_int.h). No script, no
 * external resource: the file opens anywhere, offline, and its numbers can
 * be read by a test. Charts carry their values in data-* attributes and
 * <title> tooltips as well as in visible text.
 *
 * What the charts promise a reader: a speed-up is the tuner's paired-round
 * evidence (the ratio to the default timed side by side, with its 95%
 * interval), and one that is not shown to be real is marked "n.s."; a time
 * comes with the spread of its measurement (p20-p80 bars); batch sizes are
 * never mixed in one line; axes carry round ticks (report_axis.c) and say
 * when they are logarithmic; all heat maps share one colour scale.
 */
#include "tuner/report/report.h"
#include "tuner/report/report_int.h"
#include "db/db.h"
#include "gen/variant.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAXAXIS 16 /* distinct bq or bk values drawn in one heat map */

static const char *const palette[] = { "#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd",
				       "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22", "#17becf" };
#define GREEN "#2ca02c"
#define GREY "#b0b0b0"

static void ms(struct mta_buf *b, double v)
{
	char t[32];
	mta_report_fmt_ms(v, t, sizeof t);
	mta_buf_printf(b, "%s", t);
}

/* ---- lookups --------------------------------------------------------------------- */

/* The ok result of (dev, key, spec, T, B); NULL if there is none. */
static const struct rres *find_result(const struct rdata *x, int64_t dev, const char *key,
				      const char *spec, int64_t T, int64_t B)
{
	for (size_t i = 0; i < x->nr; i++) {
		const struct rres *r = &x->r[i];
		if (r->dev == dev && r->T == T && r->B == B && r->status == MTA_RESULT_OK &&
		    !strcmp(r->key, key) && !strcmp(r->spec, spec))
			return r;
	}
	return NULL;
}

/* The default variant's spec of key on backend; "" when there is none. */
static void default_spec(const char *key, const char *backend, char *spec, size_t n)
{
	struct mta_problem p;
	struct mta_variant v;
	int be;
	spec[0] = 0;
	if (mta_backend_parse(backend, &be) || mta_problem_from_key(key, &p) ||
	    mta_variant_default(&p, be, &v) || mta_variant_format(&v, spec, n))
		spec[0] = 0;
}

/*
 * The time of a problem at (T, B) on dev, as a result row: the winner's, when
 * a winner was decided at exactly this (T, B), else the fastest ok result
 * (results come ordered by median). NULL when nothing ran ok there.
 */
static const struct rres *problem_time(const struct rdata *x, int64_t dev, const char *key,
				       int64_t T, int64_t B)
{
	for (size_t i = 0; i < x->nw; i++) {
		const struct rwin *w = &x->w[i];
		if (w->dev == dev && w->T == T && w->B == B && !strcmp(w->op, "fwd") &&
		    !strcmp(w->key, key)) {
			const struct rres *r = find_result(x, dev, key, w->spec, T, B);
			if (r)
				return r;
		}
	}
	for (size_t i = 0; i < x->nr; i++) {
		const struct rres *r = &x->r[i];
		if (r->dev == dev && r->T == T && r->B == B && r->status == MTA_RESULT_OK &&
		    !strcmp(r->key, key))
			return r;
	}
	return NULL;
}

/* ---- the evidence behind a winner --------------------------------------------------- */

struct ev {
	double speedup, lo, hi; /* over the default, its 95% interval (NAN: none) */
	double def_ms;          /* the default's time beside it */
	int rounds, sig;        /* paired rounds; shown to be faster */
	int is_default;         /* the winner is the default variant */
};

/*
 * A winner decided in paired rounds carries its ratio to the default and the
 * interval; it counts as faster only when recorded significant and the
 * interval of the ratio lies below 1. A winner without rounds (an older
 * database) gets the ratio of the recorded medians, never counted as faster:
 * two medians timed apart on a drifting machine say little.
 */
static void evidence(const struct rdata *x, const struct rwin *w, const char *backend,
		     struct ev *e)
{
	char def[MTA_SPEC_MAX];
	default_spec(w->key, backend, def, sizeof def);
	memset(e, 0, sizeof *e);
	e->is_default = def[0] && !strcmp(def, w->spec);
	e->lo = e->hi = NAN;
	if (w->rounds > 0 && isfinite(w->ratio) && w->ratio > 0) {
		e->rounds = w->rounds;
		e->speedup = 1 / w->ratio;
		if (isfinite(w->ci_low) && isfinite(w->ci_high) && w->ci_low > 0) {
			e->lo = 1 / w->ci_high;
			e->hi = 1 / w->ci_low;
		}
		e->def_ms = w->default_ms;
		e->sig = w->significant && isfinite(e->lo) && e->lo > 1;
		return;
	}
	const struct rres *d = def[0] ? find_result(x, w->dev, w->key, def, w->T, w->B) : NULL;
	e->def_ms = d ? d->median : NAN;
	e->speedup = e->def_ms / w->ms;
}

static void evidence_text(struct mta_buf *b, const struct ev *e)
{
	const char *s = e->rounds == 1 ? "" : "s";
	if (e->rounds && e->sig)
		mta_buf_printf(b, "%.2fx faster than the default, 95%% CI %.2f-%.2f, %d round%s",
			       e->speedup, e->lo, e->hi, e->rounds, s);
	else if (e->rounds && e->is_default)
		mta_buf_printf(b, "the default: no other variant was faster beyond noise (%d round%s)",
			       e->rounds, s);
	else if (e->rounds && isfinite(e->lo))
		mta_buf_printf(b, "within noise: %.2fx the default's speed, 95%% CI %.2f-%.2f, %d "
			       "round%s", e->speedup, e->lo, e->hi, e->rounds, s);
	else if (e->rounds)
		mta_buf_printf(b, "within noise: %.2fx the default's speed, %d round%s", e->speedup,
			       e->rounds, s);
	else if (isfinite(e->speedup))
		mta_buf_printf(b, "no paired rounds: %.2fx by the recorded medians, not tested "
			       "against noise", e->speedup);
	else
		mta_buf_printf(b, "no paired rounds, and no time of the default at this size");
}

/* ---- axes --------------------------------------------------------------------------- */

/*
 * A vertical axis at x = L for a plot from y = top to top + H: grid lines,
 * tick labels (class "tick", value in data-v) and the title, which says
 * "log scale" when it is one.
 */
static void y_axis(struct mta_buf *b, const struct raxis *a, int L, int W, int top, int H,
		   const char *name, const char *unit)
{
	char lab[32];
	mta_buf_printf(b, "<g class=\"yaxis\" data-scale=\"%s\">\n", a->log ? "log" : "linear");
	for (int k = 0; k < a->nt; k++) {
		double y = top + H - H * raxis_frac(a, a->tick[k]);
		raxis_label(a->tick[k], lab, sizeof lab);
		mta_buf_printf(b, "<line x1=\"%d\" y1=\"%.1f\" x2=\"%d\" y2=\"%.1f\" stroke=\"#e4e4e4\"/>"
			       "<text class=\"tick\" data-v=\"%s\" x=\"%d\" y=\"%.1f\" "
			       "text-anchor=\"end\">%s</text>\n", L, y, L + W, y, lab, L - 4, y + 4, lab);
	}
	mta_buf_printf(b, "<text class=\"axis-title\" transform=\"translate(%d,%d) rotate(-90)\" "
		       "text-anchor=\"middle\">%s (%s%s)</text>\n</g>\n", 14, top + H / 2, name, unit,
		       a->log ? ", log scale" : "");
}

/* The same along the bottom of a plot at y = base, from x = L for W. */
static void x_axis(struct mta_buf *b, const struct raxis *a, int L, int W, int top, int base,
		   const char *name, const char *unit)
{
	char lab[32];
	mta_buf_printf(b, "<g class=\"xaxis\" data-scale=\"%s\">\n", a->log ? "log" : "linear");
	for (int k = 0; k < a->nt; k++) {
		double xx = L + W * raxis_frac(a, a->tick[k]);
		raxis_label(a->tick[k], lab, sizeof lab);
		mta_buf_printf(b, "<line x1=\"%.1f\" y1=\"%d\" x2=\"%.1f\" y2=\"%d\" stroke=\"#e4e4e4\"/>"
			       "<text class=\"tick\" data-v=\"%s\" x=\"%.1f\" y=\"%d\" "
			       "text-anchor=\"middle\">%s</text>\n", xx, top, xx, base, lab, xx,
			       base + 14, lab);
	}
	mta_buf_printf(b, "<text class=\"axis-title\" x=\"%d\" y=\"%d\" text-anchor=\"middle\">%s "
		       "(%s%s)</text>\n</g>\n", L + W / 2, base + 30, name, unit,
		       a->log ? ", log scale" : "");
}

/* A p20-p80 bar at x from y(p20) to y(p80), with its values. */
static void err_bar(struct mta_buf *b, const struct raxis *a, double x, int top, int H,
		    double p20, double p80, const char *col)
{
	if (!(p20 > 0) || !(p80 > 0) || !isfinite(p20) || !isfinite(p80))
		return;
	double y0 = top + H - H * raxis_frac(a, p20), y1 = top + H - H * raxis_frac(a, p80);
	mta_buf_printf(b, "<path class=\"errbar\" data-p20=\"");
	ms(b, p20);
	mta_buf_printf(b, "\" data-p80=\"");
	ms(b, p80);
	mta_buf_printf(b, "\" d=\"M%.1f %.1fV%.1fM%.1f %.1fh6M%.1f %.1fh6\" stroke=\"%s\" "
		       "fill=\"none\"/>\n", x, y0, y1, x - 3, y0, x - 3, y1, col);
}

/* ---- the winners -------------------------------------------------------------------- */

static void winners_table(const struct rdata *x, const struct rdev *d, struct mta_buf *b)
{
	mta_buf_printf(b, "<h3>Winners</h3>\n<p>Each winner was timed against the default variant in "
		       "paired rounds (side by side, one after the other, in each round); the "
		       "speed-up is the geometric mean of the per-round ratios with its 95%% "
		       "interval. <span class=\"ns\">n.s.</span>: not shown to be faster (the "
		       "interval reaches 1, or no paired rounds were run): within noise.</p>\n"
		       "<table class=\"winners\">\n<tr><th>problem</th><th>op</th><th>T bucket</th>"
		       "<th>B bucket</th><th>T</th><th>B</th><th>winner</th><th>time (ms)</th>"
		       "<th>default (ms)</th><th>speed-up</th><th>evidence</th></tr>\n");
	for (size_t i = 0; i < x->nw; i++) {
		const struct rwin *w = &x->w[i];
		struct ev e;
		if (w->dev != d->id)
			continue;
		evidence(x, w, d->backend, &e);
		mta_buf_printf(b, "<tr class=\"winner\" data-significant=\"%d\"><td>", e.sig);
		sb_html(b, w->key);
		mta_buf_printf(b, "</td><td>");
		sb_html(b, w->op);
		mta_buf_printf(b, "</td><td>%lld</td><td>%lld</td><td>%lld</td><td>%lld</td><td>",
			       (long long)w->bucket, (long long)w->bbucket, (long long)w->T,
			       (long long)w->B);
		sb_html(b, w->spec);
		mta_buf_printf(b, "</td><td class=\"ms\">");
		ms(b, w->ms);
		mta_buf_printf(b, "</td><td class=\"ms\">");
		ms(b, e.def_ms);
		if (isfinite(e.speedup))
			mta_buf_printf(b, "</td><td>%.2fx%s</td><td class=\"evidence\">", e.speedup,
				       e.sig ? "" : " <span class=\"ns\">n.s.</span>");
		else
			mta_buf_printf(b, "</td><td>-</td><td class=\"evidence\">");
		evidence_text(b, &e);
		mta_buf_printf(b, "</td></tr>\n");
	}
	mta_buf_printf(b, "</table>\n");
}

/*
 * One horizontal bar per winner with a known speed-up, drawn from 1x (the
 * default's speed) to its speed-up so that a few percent show, with its 95%
 * interval as a whisker.
 */
static void speedup_chart(const struct rdata *x, const struct rdev *d, struct mta_buf *b)
{
	const int label = 430, area = 320, row = 22, top = 46;
	double lo = 1, hi = 1;
	int n = 0;
	struct ev e;
	for (size_t i = 0; i < x->nw; i++) {
		if (x->w[i].dev != d->id)
			continue;
		evidence(x, &x->w[i], d->backend, &e);
		if (!isfinite(e.speedup) || !(e.speedup > 0))
			continue;
		n++;
		lo = fmin(lo, e.speedup);
		hi = fmax(hi, e.speedup);
		if (isfinite(e.lo)) {
			lo = fmin(lo, e.lo);
			hi = fmax(hi, e.hi);
		}
	}
	mta_buf_printf(b, "<h3>Speed-up of the winner over the default variant</h3>\n");
	if (!n) {
		mta_buf_printf(b, "<p>No winner has a measured default variant at its size.</p>\n");
		return;
	}
	struct raxis a;
	raxis_make(&a, lo, hi, 0, 0);
	double one = label + area * raxis_frac(&a, 1);
	int h = top + n * row + 44;
	mta_buf_printf(b, "<svg class=\"speedup\" xmlns=\"http://www.w3.org/2000/svg\" width=\"%d\" "
		       "height=\"%d\" font-size=\"11\">\n", label + area + 90, h);
	/* the legend: what the colours and the whisker mean */
	mta_buf_printf(b, "<g class=\"legend\"><rect x=\"10\" y=\"4\" width=\"12\" height=\"10\" "
		       "fill=\"" GREEN "\"/><text x=\"26\" y=\"13\">faster than the default with 95%% "
		       "confidence</text><rect x=\"10\" y=\"20\" width=\"12\" height=\"10\" fill=\""
		       GREY "\"/><text x=\"26\" y=\"29\">n.s.: not shown to be faster (within noise, "
		       "or no paired rounds)</text><path d=\"M9 38h14M9 35v6M23 35v6\" "
		       "stroke=\"#000\"/><text x=\"26\" y=\"42\">95%% interval of the speed-up</text>"
		       "</g>\n");
	double base = top + n * row;
	x_axis(b, &a, label, area, top - 4, (int)base, "speed-up over the default", "x");
	int y = top;
	for (size_t i = 0; i < x->nw; i++) {
		const struct rwin *w = &x->w[i];
		if (w->dev != d->id)
			continue;
		evidence(x, w, d->backend, &e);
		if (!isfinite(e.speedup) || !(e.speedup > 0))
			continue;
		double at = label + area * raxis_frac(&a, e.speedup);
		mta_buf_printf(b, "<text x=\"%d\" y=\"%d\" text-anchor=\"end\">", label - 6, y + 13);
		sb_html(b, w->key);
		mta_buf_printf(b, " T=%lld B=%lld</text>\n", (long long)w->T, (long long)w->B);
		mta_buf_printf(b, "<rect class=\"bar\" data-speedup=\"%.2f\" data-significant=\"%d\" "
			       "x=\"%.1f\" y=\"%d\" width=\"%.1f\" height=\"%d\" fill=\"%s\"><title>",
			       e.speedup, e.sig, fmin(at, one), y + 2, fmax(fabs(at - one), 1), row - 8,
			       e.sig ? GREEN : GREY);
		sb_html(b, w->spec);
		mta_buf_printf(b, ": ");
		evidence_text(b, &e);
		mta_buf_printf(b, "</title></rect>\n");
		double end = fmax(at, one);
		if (isfinite(e.lo)) {
			double x0 = label + area * raxis_frac(&a, e.lo);
			double x1 = label + area * raxis_frac(&a, e.hi);
			int yc = y + 2 + (row - 8) / 2;
			mta_buf_printf(b, "<path class=\"ci\" data-lo=\"%.2f\" data-hi=\"%.2f\" "
				       "d=\"M%.1f %dH%.1fM%.1f %dv6M%.1f %dv6\" stroke=\"#000\"/>\n",
				       e.lo, e.hi, x0, yc, x1, x0, yc - 3, x1, yc - 3);
			end = fmax(end, x1);
		}
		mta_buf_printf(b, "<text x=\"%.1f\" y=\"%d\">%.2fx%s</text>\n", end + 4, y + 13,
			       e.speedup, e.sig ? "" : " <tspan class=\"ns-mark\" "
			       "font-weight=\"bold\">n.s.</tspan>");
		y += row;
	}
	mta_buf_printf(b, "<line x1=\"%.1f\" y1=\"%d\" x2=\"%.1f\" y2=\"%d\" stroke=\"#333\" "
		       "stroke-dasharray=\"4 3\"/>\n<text x=\"%.1f\" y=\"%d\" text-anchor=\"middle\">"
		       "default</text>\n</svg>\n", one, top - 4, one, y, one, top - 6);
}

/* ---- time against T ----------------------------------------------------------------- */

/* Winner i's point: its measurement's median and p20-p80, else its recorded time. */
static void win_point(const struct rdata *x, const struct rwin *w, double *med, double *p20,
		      double *p80)
{
	const struct rres *r = find_result(x, w->dev, w->key, w->spec, w->T, w->B);
	*med = r ? r->median : w->ms;
	*p20 = r ? r->p20 : NAN;
	*p80 = r ? r->p80 : NAN;
}

/* Winner j is in the series (key, op, B) of winner i. */
static int same_series(const struct rwin *a, const struct rwin *c)
{
	return a->dev == c->dev && a->B == c->B && !strcmp(a->key, c->key) && !strcmp(a->op, c->op);
}

/* Each problem's winners, time against T, one line per problem, operation and B. */
static void time_chart(const struct rdata *x, const struct rdev *d, struct mta_buf *b)
{
	const int L = 70, W = 440, Tp = 20, H = 280, R = 440;
	double tlo = INFINITY, thi = -INFINITY, mlo = INFINITY, mhi = -INFINITY, m, p20, p80;
	/* each winner's point, looked up once: pt[3 * i + 0, 1, 2] = median, p20, p80 */
	double *pt = malloc((x->nw ? x->nw : 1) * 3 * sizeof *pt);
	if (!pt) {
		b->oom = 1;
		return;
	}
	for (size_t i = 0; i < x->nw; i++)
		if (x->w[i].dev == d->id)
			win_point(x, &x->w[i], &pt[3 * i], &pt[3 * i + 1], &pt[3 * i + 2]);
#define POINT(i) (m = pt[3 * (i)], p20 = pt[3 * (i) + 1], p80 = pt[3 * (i) + 2])
	for (size_t i = 0; i < x->nw; i++) {
		const struct rwin *w = &x->w[i];
		if (w->dev != d->id || (POINT(i), !(m > 0)))
			continue;
		tlo = fmin(tlo, log2((double)w->T));
		thi = fmax(thi, log2((double)w->T));
		for (int k = 0; k < 3; k++) {
			double v = k == 0 ? m : k == 1 ? p20 : p80;
			if (v > 0 && isfinite(v)) {
				mlo = fmin(mlo, v);
				mhi = fmax(mhi, v);
			}
		}
	}
	mta_buf_printf(b, "<h3>Time of the winner against T</h3>\n");
	if (!isfinite(tlo)) {
		mta_buf_printf(b, "<p>No winners.</p>\n");
		goto out;
	}
	mta_buf_printf(b, "<p>One line per problem and batch size B. Each point: the median time of "
		       "the winning variant's measurement at that T and B; its bar runs from the "
		       "20th to the 80th percentile of the runs.</p>\n");
	if (thi - tlo < 1)
		tlo -= 0.5, thi += 0.5;
	struct raxis a;
	raxis_make(&a, mlo, mhi, 1, 0);
#define PX(t) (L + W * ((t) - tlo) / (thi - tlo))
#define PY(v) (Tp + H - H * raxis_frac(&a, (v)))
	mta_buf_printf(b, "<svg class=\"time\" xmlns=\"http://www.w3.org/2000/svg\" width=\"%d\" "
		       "height=\"%d\" font-size=\"11\">\n", L + W + R, Tp + H + 40);
	y_axis(b, &a, L, W, Tp, H, "time", "ms");
	mta_buf_printf(b, "<rect x=\"%d\" y=\"%d\" width=\"%d\" height=\"%d\" fill=\"none\" "
		       "stroke=\"#999\"/>\n", L, Tp, W, H);
	for (int e = (int)ceil(tlo); e <= (int)floor(thi); e++)
		mta_buf_printf(b, "<text x=\"%.1f\" y=\"%d\" text-anchor=\"middle\">%.0f</text>\n",
			       PX(e), Tp + H + 14, exp2(e));
	mta_buf_printf(b, "<text x=\"%d\" y=\"%d\" text-anchor=\"middle\">T (log scale)</text>\n",
		       L + W / 2, Tp + H + 32);
	int series = 0;
	for (size_t i = 0; i < x->nw; i++) {
		const struct rwin *w = &x->w[i];
		int first = w->dev == d->id;
		for (size_t j = 0; j < i && first; j++)
			first = !same_series(&x->w[j], w);
		if (!first)
			continue; /* one series per (problem, op, B), drawn at its first winner */
		const char *col = palette[series % 10];
		mta_buf_printf(b, "<g class=\"series\" data-B=\"%lld\" data-op=\"", (long long)w->B);
		sb_html(b, w->op);
		mta_buf_printf(b, "\" data-key=\"");
		sb_html(b, w->key);
		mta_buf_printf(b, "\">\n<polyline class=\"line\" fill=\"none\" stroke=\"%s\" "
			       "stroke-width=\"2\" points=\"", col);
		for (size_t j = i; j < x->nw; j++) {
			if (same_series(&x->w[j], w) && (POINT(j), m > 0))
				mta_buf_printf(b, "%.1f,%.1f ", PX(log2((double)x->w[j].T)), PY(m));
		}
		mta_buf_printf(b, "\"/>\n");
		for (size_t j = i; j < x->nw; j++) {
			const struct rwin *v = &x->w[j];
			if (!same_series(v, w) || (POINT(j), !(m > 0)))
				continue;
			double px = PX(log2((double)v->T));
			err_bar(b, &a, px, Tp, H, p20, p80, col);
			mta_buf_printf(b, "<circle class=\"point\" data-T=\"%lld\" data-B=\"%lld\" "
				       "data-ms=\"", (long long)v->T, (long long)v->B);
			ms(b, m);
			mta_buf_printf(b, "\" cx=\"%.1f\" cy=\"%.1f\" r=\"3\" fill=\"%s\"><title>T=%lld "
				       "B=%lld: ", px, PY(m), col, (long long)v->T, (long long)v->B);
			ms(b, m);
			mta_buf_printf(b, " ms (p20 ");
			ms(b, p20);
			mta_buf_printf(b, ", p80 ");
			ms(b, p80);
			mta_buf_printf(b, "), ");
			sb_html(b, v->spec);
			mta_buf_printf(b, "</title></circle>\n");
		}
		mta_buf_printf(b, "<rect x=\"%d\" y=\"%d\" width=\"10\" height=\"10\" fill=\"%s\"/>"
			       "<text x=\"%d\" y=\"%d\">", L + W + 12, Tp + 14 * series, col,
			       L + W + 26, Tp + 9 + 14 * series);
		sb_html(b, w->key);
		if (strcmp(w->op, "fwd")) {
			mta_buf_printf(b, " ");
			sb_html(b, w->op);
		}
		mta_buf_printf(b, " B=%lld</text>\n</g>\n", (long long)w->B);
		series++;
	}
	mta_buf_printf(b, "</svg>\n");
#undef PX
#undef PY
#undef POINT
out:
	free(pt);
}

/* ---- heat maps ------------------------------------------------------------------------ */

struct heat {
	int bq[MAXAXIS], bk[MAXAXIS], nq, nk;
	double best[MAXAXIS][MAXAXIS], fast, slow;
	int count[MAXAXIS][MAXAXIS];
};

static int axis_add(int *a, int *n, int v)
{
	for (int i = 0; i < *n; i++)
		if (a[i] == v)
			return i;
	if (*n == MAXAXIS)
		return -1;
	int i = (*n)++;
	while (i > 0 && a[i - 1] > v) {
		a[i] = a[i - 1];
		i--;
	}
	a[i] = v;
	return i;
}

static int axis_find(const int *a, int n, int v)
{
	for (int i = 0; i < n; i++)
		if (a[i] == v)
			return i;
	return -1;
}

/* Results [lo, hi) of one (problem, T, B), those of dev: best ok time per (bq, bk). */
static void heat_build(const struct rdata *x, size_t lo, size_t hi, int64_t dev, struct heat *h)
{
	struct mta_variant v;
	memset(h, 0, sizeof *h);
	h->fast = INFINITY;
	for (size_t i = lo; i < hi; i++)
		if (x->r[i].dev == dev && !mta_variant_parse(x->r[i].spec, &v) &&
		    (axis_add(h->bq, &h->nq, v.bq) < 0 || axis_add(h->bk, &h->nk, v.bk) < 0))
			break;
	for (int i = 0; i < MAXAXIS; i++)
		for (int j = 0; j < MAXAXIS; j++)
			h->best[i][j] = INFINITY;
	for (size_t i = lo; i < hi; i++) {
		const struct rres *r = &x->r[i];
		if (r->dev != dev || mta_variant_parse(r->spec, &v))
			continue;
		int a = axis_find(h->bq, h->nq, v.bq), c = axis_find(h->bk, h->nk, v.bk);
		if (a < 0 || c < 0)
			continue;
		h->count[a][c]++;
		if (r->status == MTA_RESULT_OK && r->median < h->best[a][c])
			h->best[a][c] = r->median;
	}
	for (int a = 0; a < h->nq; a++)
		for (int c = 0; c < h->nk; c++)
			if (isfinite(h->best[a][c])) {
				h->fast = fmin(h->fast, h->best[a][c]);
				h->slow = fmax(h->slow, h->best[a][c]);
			}
}

/*
 * The colour scale all heat maps share: a cell's time over the fastest cell
 * of its own map (1x .. the slowest such ratio in the whole report), so that
 * one colour means the same in every map.
 */
static void heat_scale(const struct rdata *x, struct raxis *a)
{
	double top = 1;
	struct heat h;
	for (size_t k = 0; k < x->nd; k++)
		for (size_t lo = 0, hi; lo < x->nr; lo = hi) {
			const struct rres *r = &x->r[lo];
			for (hi = lo + 1; hi < x->nr && x->r[hi].T == r->T && x->r[hi].B == r->B &&
					  !strcmp(x->r[hi].key, r->key); hi++)
				;
			heat_build(x, lo, hi, x->d[k].id, &h);
			if (h.slow > h.fast && isfinite(h.fast))
				top = fmax(top, h.slow / h.fast);
		}
	raxis_make(a, 1, top > 1 ? top : 2, 1, 0);
}

/* The shared scale's legend: a strip from 1x to the top, ticks below. */
static void heat_legend(const struct raxis *a, struct mta_buf *b)
{
	const int L = 20, W = 360, n = 60;
	char col[8], lab[32];
	mta_buf_printf(b, "<svg class=\"heat-legend\" xmlns=\"http://www.w3.org/2000/svg\" "
		       "width=\"%d\" height=\"58\" font-size=\"11\" data-top=\"%.6g\">\n", L + W + 300,
		       a->hi);
	for (int i = 0; i < n; i++) {
		heat_colour((i + 0.5) / n, col, sizeof col);
		mta_buf_printf(b, "<rect x=\"%.1f\" y=\"4\" width=\"%.1f\" height=\"14\" "
			       "fill=\"%s\"/>\n", L + (double)W * i / n, (double)W / n + 0.5, col);
	}
	for (int k = 0; k < a->nt; k++) {
		double xx = L + W * raxis_frac(a, a->tick[k]);
		raxis_label(a->tick[k], lab, sizeof lab);
		mta_buf_printf(b, "<line x1=\"%.1f\" y1=\"18\" x2=\"%.1f\" y2=\"22\" stroke=\"#333\"/>"
			       "<text class=\"tick\" data-v=\"%s\" x=\"%.1f\" y=\"33\" "
			       "text-anchor=\"middle\">%sx</text>\n", xx, xx, lab, xx, lab);
	}
	mta_buf_printf(b, "<text x=\"%d\" y=\"50\">time / the fastest tile shape of the same map "
		       "(%s; grey: none ran ok)</text>\n</svg>\n", L,
		       a->log ? "log scale" : "linear scale");
}

static void heat_draw(const struct heat *h, const struct rres *r0, const struct raxis *scale,
		      struct mta_buf *b)
{
	if (!h->nq)
		return;
	const int cw = 74, ch = 30, L = 60, Tp = 34;
	mta_buf_printf(b, "<figure class=\"heat\"><figcaption>");
	sb_html(b, r0->key);
	mta_buf_printf(b, " T=%lld B=%lld</figcaption>\n<svg class=\"heatmap\" xmlns=\"http://www.w3.org/"
		       "2000/svg\" data-T=\"%lld\" data-B=\"%lld\" width=\"%d\" height=\"%d\" "
		       "font-size=\"11\">\n<text x=\"%d\" y=\"12\">bk &#8594;</text>"
		       "<text x=\"4\" y=\"%d\">bq &#8595;</text>\n", (long long)r0->T, (long long)r0->B,
		       (long long)r0->T, (long long)r0->B, L + h->nk * cw + 10, Tp + h->nq * ch + 10, L,
		       Tp - 14);
	for (int c = 0; c < h->nk; c++)
		mta_buf_printf(b, "<text x=\"%d\" y=\"%d\" text-anchor=\"middle\">%d</text>\n",
			       L + c * cw + cw / 2, Tp - 4, h->bk[c]);
	for (int a = 0; a < h->nq; a++) {
		mta_buf_printf(b, "<text x=\"%d\" y=\"%d\" text-anchor=\"end\">%d</text>\n", L - 6,
			       Tp + a * ch + ch / 2 + 4, h->bq[a]);
		for (int c = 0; c < h->nk; c++) {
			char col[8] = "#dddddd", t[32];
			double m = h->best[a][c], ratio = m / h->fast;
			if (isfinite(m))
				heat_colour(raxis_frac(scale, ratio), col, sizeof col);
			mta_report_fmt_ms(m, t, sizeof t);
			mta_buf_printf(b, "<rect class=\"cell\" data-bq=\"%d\" data-bk=\"%d\" data-ms=\"%s\" "
				       "data-ratio=\"%.3f\" x=\"%d\" y=\"%d\" width=\"%d\" height=\"%d\" "
				       "fill=\"%s\" stroke=\"#fff\"><title>bq=%d bk=%d: best %s ms of %d "
				       "variant%s</title></rect>\n<text x=\"%d\" y=\"%d\" "
				       "text-anchor=\"middle\">%s</text>\n", h->bq[a], h->bk[c], t,
				       isfinite(ratio) ? ratio : 0.0, L + c * cw, Tp + a * ch, cw, ch, col,
				       h->bq[a], h->bk[c], t, h->count[a][c],
				       h->count[a][c] == 1 ? "" : "s", L + c * cw + cw / 2,
				       Tp + a * ch + ch / 2 + 4, t);
		}
	}
	mta_buf_printf(b, "</svg></figure>\n");
}

static void heat_maps(const struct rdata *x, const struct rdev *d, const struct raxis *scale,
		      struct mta_buf *b)
{
	struct heat h;
	mta_buf_printf(b, "<h3>Time by tile shape</h3>\n<p>Each cell: the best median time of the "
		       "variants with that tile shape (bq query rows x bk key columns), coloured by "
		       "its ratio to the fastest cell of its map, on one scale for all maps:</p>\n");
	heat_legend(scale, b);
	for (size_t lo = 0, hi; lo < x->nr; lo = hi) {
		const struct rres *r = &x->r[lo];
		for (hi = lo + 1; hi < x->nr && x->r[hi].T == r->T && x->r[hi].B == r->B &&
				  !strcmp(x->r[hi].key, r->key); hi++)
			;
		size_t first = lo;
		while (first < hi && x->r[first].dev != d->id)
			first++;
		if (first == hi)
			continue;
		heat_build(x, first, hi, d->id, &h);
		heat_draw(&h, &x->r[first], scale, b);
	}
}

/* ---- kernel sizes ------------------------------------------------------------------- */

struct kprob {
	const char *key;
	struct mta_problem p;
	char masked[MTA_KEY_MAX]; /* the key with its kernel sizes set aside */
};

static const char *const kname[4] = { "cq", "ck", "cq2", "ck2" };

static int ksize(const struct mta_problem *p, int f)
{
	return f == 0 ? p->cq : f == 1 ? p->ck : f == 2 ? p->cq2 : p->ck2;
}

static int kcmp(const struct kprob *a, const struct kprob *c)
{
	for (int f = 0; f < 4; f++)
		if (ksize(&a->p, f) != ksize(&c->p, f))
			return ksize(&a->p, f) < ksize(&c->p, f) ? -1 : 1;
	return 0;
}

/* Sorted distinct values of T (which 0) or B (1) among dev's results of the keys. */
static size_t distinct_sizes(const struct rdata *x, int64_t dev, struct kprob *const *m,
			     size_t nm, int which, int64_t *out, size_t cap)
{
	size_t n = 0;
	for (size_t i = 0; i < x->nr; i++) {
		const struct rres *r = &x->r[i];
		int64_t v = which ? r->B : r->T;
		int in = 0;
		for (size_t j = 0; j < nm && !in; j++)
			in = r->dev == dev && !strcmp(r->key, m[j]->key);
		size_t k = 0;
		while (in && k < n && out[k] != v)
			k++;
		if (!in || k < n || n == cap)
			continue;
		for (k = n++; k > 0 && out[k - 1] > v; k--)
			out[k] = out[k - 1];
		out[k] = v;
	}
	return n;
}

/* The sizes of kp that vary within the group, as "2,5" under the varying names. */
static void klabel(const struct kprob *kp, const int *vary, char *buf, size_t n)
{
	size_t len = 0;
	buf[0] = 0;
	for (int f = 0; f < 4; f++)
		if (vary[f] && len < n)
			len += (size_t)snprintf(buf + len, n - len, "%s%d", len ? "," : "",
						ksize(&kp->p, f));
}

#define KMAXT 24 /* sequence lengths drawn per chart */

/* One group's chart and table at batch size B. */
static void kernel_panel(const struct rdata *x, int64_t dev, struct kprob *const *m, size_t nm,
			 const int *vary, const char *names, const int64_t *Ts, size_t nT,
			 int64_t B, struct mta_buf *b)
{
	const int L = 70, Tp = 20, H = 240, step = 64, W = (int)(nm > 3 ? nm : 3) * step;
	double lo = INFINITY, hi = -INFINITY;
	char lab[64];
	for (size_t t = 0; t < nT; t++)
		for (size_t j = 0; j < nm; j++) {
			const struct rres *r = problem_time(x, dev, m[j]->key, Ts[t], B);
			for (int k = 0; r && k < 3; k++) {
				double v = k == 0 ? r->median : k == 1 ? r->p20 : r->p80;
				if (v > 0 && isfinite(v)) {
					lo = fmin(lo, v);
					hi = fmax(hi, v);
				}
			}
		}
	if (!isfinite(lo))
		return;
	struct raxis a;
	raxis_make(&a, lo, hi, 1, 0);
#define PX(j) (L + step / 2 + (double)(j) * step)
#define PY(v) (Tp + H - H * raxis_frac(&a, (v)))
	mta_buf_printf(b, "<svg class=\"kernels\" data-B=\"%lld\" xmlns=\"http://www.w3.org/2000/svg\" "
		       "width=\"%d\" height=\"%d\" font-size=\"11\">\n", (long long)B, L + W + 120,
		       Tp + H + 44);
	y_axis(b, &a, L, W, Tp, H, "time", "ms");
	mta_buf_printf(b, "<rect x=\"%d\" y=\"%d\" width=\"%d\" height=\"%d\" fill=\"none\" "
		       "stroke=\"#999\"/>\n", L, Tp, W, H);
	for (size_t j = 0; j < nm; j++) {
		klabel(m[j], vary, lab, sizeof lab);
		mta_buf_printf(b, "<text x=\"%.1f\" y=\"%d\" text-anchor=\"middle\">%s</text>\n", PX(j),
			       Tp + H + 14, lab);
	}
	mta_buf_printf(b, "<text x=\"%d\" y=\"%d\" text-anchor=\"middle\">kernel size (%s) at "
		       "B=%lld</text>\n", L + W / 2, Tp + H + 32, names, (long long)B);
	for (size_t t = 0; t < nT; t++) {
		const char *col = palette[t % 10];
		mta_buf_printf(b, "<g class=\"kseries\" data-T=\"%lld\" data-B=\"%lld\">\n<polyline "
			       "fill=\"none\" stroke=\"%s\" stroke-width=\"2\" points=\"",
			       (long long)Ts[t], (long long)B, col);
		for (size_t j = 0; j < nm; j++) {
			const struct rres *r = problem_time(x, dev, m[j]->key, Ts[t], B);
			if (r)
				mta_buf_printf(b, "%.1f,%.1f ", PX(j), PY(r->median));
		}
		mta_buf_printf(b, "\"/>\n");
		for (size_t j = 0; j < nm; j++) {
			const struct rres *r = problem_time(x, dev, m[j]->key, Ts[t], B);
			if (!r)
				continue;
			err_bar(b, &a, PX(j), Tp, H, r->p20, r->p80, col);
			mta_buf_printf(b, "<circle class=\"kpoint\" data-key=\"");
			sb_html(b, m[j]->key);
			mta_buf_printf(b, "\" data-T=\"%lld\" data-B=\"%lld\" data-ms=\"", (long long)Ts[t],
				       (long long)B);
			ms(b, r->median);
			mta_buf_printf(b, "\" cx=\"%.1f\" cy=\"%.1f\" r=\"3\" fill=\"%s\"><title>", PX(j),
				       PY(r->median), col);
			sb_html(b, m[j]->key);
			mta_buf_printf(b, " T=%lld B=%lld: ", (long long)Ts[t], (long long)B);
			ms(b, r->median);
			mta_buf_printf(b, " ms, ");
			sb_html(b, r->spec);
			mta_buf_printf(b, "</title></circle>\n");
		}
		mta_buf_printf(b, "<rect x=\"%d\" y=\"%d\" width=\"10\" height=\"10\" fill=\"%s\"/>"
			       "<text x=\"%d\" y=\"%d\">T=%lld</text>\n</g>\n", L + W + 12,
			       Tp + 14 * (int)t, col, L + W + 26, Tp + 9 + 14 * (int)t, (long long)Ts[t]);
	}
	mta_buf_printf(b, "</svg>\n");
#undef PX
#undef PY
	/* the same numbers as a table */
	mta_buf_printf(b, "<table class=\"kernel-table\" data-B=\"%lld\">\n<tr><th>kernel size "
		       "(%s)</th><th>problem</th>", (long long)B, names);
	for (size_t t = 0; t < nT; t++)
		mta_buf_printf(b, "<th>T=%lld, B=%lld (ms)</th>", (long long)Ts[t], (long long)B);
	mta_buf_printf(b, "</tr>\n");
	for (size_t j = 0; j < nm; j++) {
		klabel(m[j], vary, lab, sizeof lab);
		mta_buf_printf(b, "<tr><td>%s</td><td>", lab);
		sb_html(b, m[j]->key);
		mta_buf_printf(b, "</td>");
		for (size_t t = 0; t < nT; t++) {
			const struct rres *r = problem_time(x, dev, m[j]->key, Ts[t], B);
			mta_buf_printf(b, "<td class=\"ms\" data-T=\"%lld\">", (long long)Ts[t]);
			ms(b, r ? r->median : NAN);
			mta_buf_printf(b, "</td>");
		}
		mta_buf_printf(b, "</tr>\n");
	}
	mta_buf_printf(b, "</table>\n");
}

/*
 * Problems that differ only in their kernel sizes (cq, ck, cq2, ck2), as a
 * sweep over kernel sizes makes them (docs/grid.md): per group and batch
 * size, the time at each T against the kernel size.
 */
static void kernel_sizes(const struct rdata *x, const struct rdev *d, struct mta_buf *b)
{
	struct kprob *kp = calloc(x->nr ? x->nr : 1, sizeof *kp);
	struct kprob **m = calloc(x->nr ? x->nr : 1, sizeof *m);
	size_t n = 0, groups = 0;
	int64_t Ts[KMAXT], Bs[KMAXT];
	if (!kp || !m) {
		b->oom = 1;
		goto out;
	}
	for (size_t i = 0; i < x->nr; i++) {
		const struct rres *r = &x->r[i];
		if (r->dev != d->id || (n && !strcmp(kp[n - 1].key, r->key)))
			continue; /* results come ordered by key */
		struct mta_problem q;
		if (mta_problem_from_key(r->key, &kp[n].p))
			continue;
		q = kp[n].p;
		if (q.cq)
			q.cq = q.ck = 1;
		if (q.cq2)
			q.cq2 = q.ck2 = 1;
		if (!(q.cq | q.cq2) || mta_problem_key(&q, kp[n].masked, sizeof kp[n].masked))
			continue;
		kp[n++].key = r->key;
	}
	mta_buf_printf(b, "<h3>Time against kernel size</h3>\n");
	for (size_t i = 0; i < n; i++) {
		size_t nm = 0, j;
		for (j = 0; j < i && strcmp(kp[j].masked, kp[i].masked); j++)
			;
		if (j < i)
			continue; /* grouped with an earlier problem */
		for (j = i; j < n; j++)
			if (!strcmp(kp[j].masked, kp[i].masked)) {
				size_t k = nm++;
				for (; k > 0 && kcmp(m[k - 1], &kp[j]) > 0; k--)
					m[k] = m[k - 1];
				m[k] = &kp[j];
			}
		if (nm < 2)
			continue;
		int vary[4] = { 0 };
		char names[32] = "";
		size_t len = 0;
		for (int f = 0; f < 4; f++) {
			for (j = 1; j < nm; j++)
				vary[f] |= ksize(&m[j]->p, f) != ksize(&m[0]->p, f);
			if (vary[f])
				len += (size_t)snprintf(names + len, sizeof names - len, "%s%s",
							len ? ", " : "", kname[f]);
		}
		size_t nT = distinct_sizes(x, d->id, m, nm, 0, Ts, KMAXT);
		size_t nB = distinct_sizes(x, d->id, m, nm, 1, Bs, KMAXT);
		mta_buf_printf(b, "<div class=\"kernel-group\">\n<h4>");
		sb_html(b, m[0]->key);
		mta_buf_printf(b, " and %zu more problems that differ only in %s</h4>\n<p>Each point: "
			       "the problem's time at that T and B (the median of the winner decided "
			       "there, else of the fastest variant measured), its bar p20-p80.</p>\n",
			       nm - 1, names);
		for (size_t k = 0; k < nB; k++)
			kernel_panel(x, d->id, m, nm, vary, names, Ts, nT, Bs[k], b);
		mta_buf_printf(b, "</div>\n");
		groups++;
	}
	if (!groups)
		mta_buf_printf(b, "<p>No problems that differ only in kernel sizes (a grid with cq, ck, "
			       "cq2 or ck2 lines makes them).</p>\n");
out:
	free(kp);
	free(m);
}

/* ---- the page ------------------------------------------------------------------------- */

static const char style[] =
	"body{font-family:sans-serif;margin:2em;color:#222}table{border-collapse:collapse;"
	"font-size:13px;margin-bottom:1em}td,th{border:1px solid #ccc;padding:3px 8px;"
	"text-align:left}td.ms{text-align:right;font-family:monospace}figure.heat{display:"
	"inline-block;margin:0 1.5em 1.5em 0}figcaption{font-size:12px;font-family:monospace}"
	"section{margin-bottom:3em}svg text{font-family:sans-serif}.ns{font-weight:bold;"
	"color:#777}";

void report_html(const struct rdata *x, struct mta_buf *b)
{
	struct raxis scale;
	heat_scale(x, &scale);
	mta_buf_printf(b, "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n"
		       "<title>mtatune report</title>\n<style>%s</style>\n</head>\n<body>\n"
		       "<h1>mtatune report</h1>\n<p>Database <code>", style);
	sb_html(b, x->path);
	mta_buf_printf(b, "</code>: %zu device%s, %zu results, %zu winners. Times are medians in ms.</p>\n",
		       x->nd, x->nd == 1 ? "" : "s", x->nr, x->nw);
	for (size_t k = 0; k < x->nd; k++) {
		const struct rdev *d = &x->d[k];
		mta_buf_printf(b, "<section class=\"device\" data-device=\"%lld\">\n<h2>Device %lld: ",
			       (long long)d->id, (long long)d->id);
		sb_html(b, d->name);
		mta_buf_printf(b, " (");
		sb_html(b, d->backend);
		mta_buf_printf(b, ", ");
		sb_html(b, d->arch);
		mta_buf_printf(b, ", %d cores)</h2>\n", d->cores);
		winners_table(x, d, b);
		speedup_chart(x, d, b);
		time_chart(x, d, b);
		kernel_sizes(x, d, b);
		heat_maps(x, d, &scale, b);
		mta_buf_printf(b, "</section>\n");
	}
	mta_buf_printf(b, "</body>\n</html>\n");
}
