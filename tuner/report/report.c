/*
 * report.c: the HTML report (see report.h): tables and inline SVG drawn
 * from the database's contents in memory (report_int.h). No script, no
 * external resource: the file opens anywhere, offline, and its numbers can
 * be read by a test. Charts carry their values in data-* attributes and
 * <title> tooltips as well as in visible text.
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

static void ms(struct mta_buf *b, double v)
{
	char t[32];
	mta_report_fmt_ms(v, t, sizeof t);
	mta_buf_printf(b, "%s", t);
}

/* Green (fastest) through yellow to red (slowest) for t in [0, 1]. */
static void heat_colour(double t, char *buf, size_t n)
{
	static const double c[3][3] = { { 26, 152, 80 }, { 254, 224, 139 }, { 215, 48, 39 } };
	t = t < 0 ? 0 : t > 1 ? 1 : t;
	int i = t < 0.5 ? 0 : 1;
	double u = t < 0.5 ? 2 * t : 2 * t - 1;
	snprintf(buf, n, "#%02x%02x%02x", (int)(c[i][0] + u * (c[i + 1][0] - c[i][0])),
		 (int)(c[i][1] + u * (c[i + 1][1] - c[i][1])),
		 (int)(c[i][2] + u * (c[i + 1][2] - c[i][2])));
}

/* The default variant's ok time on the winner's device at the winner's (T, B). */
static double default_ms(const struct rdata *x, const struct rwin *w, const char *backend)
{
	struct mta_problem p;
	struct mta_variant v;
	char spec[MTA_SPEC_MAX];
	int be;
	if (mta_backend_parse(backend, &be) || mta_problem_from_key(w->key, &p) ||
	    mta_variant_default(&p, be, &v) || mta_variant_format(&v, spec, sizeof spec))
		return NAN;
	for (size_t i = 0; i < x->nr; i++) {
		const struct rres *r = &x->r[i];
		if (r->dev == w->dev && r->T == w->T && r->B == w->B && r->status == MTA_RESULT_OK &&
		    !strcmp(r->key, w->key) && !strcmp(r->spec, spec))
			return r->median;
	}
	return NAN;
}

static void winners_table(const struct rdata *x, const struct rdev *d, struct mta_buf *b,
			  double *speedup)
{
	mta_buf_printf(b, "<h3>Winners</h3>\n<table class=\"winners\">\n<tr><th>problem</th>"
		     "<th>T bucket</th><th>T</th><th>B</th><th>winner</th><th>time (ms)</th>"
		     "<th>default (ms)</th><th>speed-up</th></tr>\n");
	for (size_t i = 0; i < x->nw; i++) {
		const struct rwin *w = &x->w[i];
		if (w->dev != d->id)
			continue;
		double def = default_ms(x, w, d->backend);
		speedup[i] = def / w->ms;
		mta_buf_printf(b, "<tr class=\"winner\"><td>");
		sb_html(b, w->key);
		mta_buf_printf(b, "</td><td>%lld</td><td>%lld</td><td>%lld</td><td>", (long long)w->bucket,
			  (long long)w->T, (long long)w->B);
		sb_html(b, w->spec);
		mta_buf_printf(b, "</td><td class=\"ms\">");
		ms(b, w->ms);
		mta_buf_printf(b, "</td><td class=\"ms\">");
		ms(b, def);
		if (isfinite(speedup[i]))
			mta_buf_printf(b, "</td><td>%.2fx</td></tr>\n", speedup[i]);
		else
			mta_buf_printf(b, "</td><td>-</td></tr>\n");
	}
	mta_buf_printf(b, "</table>\n");
}

/* One horizontal bar per winner with a known default time. */
static void speedup_chart(const struct rdata *x, const struct rdev *d, struct mta_buf *b,
			  const double *speedup)
{
	const int label = 430, area = 300, row = 22;
	double top = 1;
	int n = 0;
	for (size_t i = 0; i < x->nw; i++)
		if (x->w[i].dev == d->id && isfinite(speedup[i])) {
			n++;
			top = speedup[i] > top ? speedup[i] : top;
		}
	mta_buf_printf(b, "<h3>Speed-up of the winner over the default variant</h3>\n");
	if (!n) {
		mta_buf_printf(b, "<p>No winner has a measured default variant at its size.</p>\n");
		return;
	}
	int h = n * row + 30;
	mta_buf_printf(b, "<svg class=\"speedup\" xmlns=\"http://www.w3.org/2000/svg\" width=\"%d\" "
		     "height=\"%d\" font-size=\"11\">\n", label + area + 70, h);
	int y = 5;
	for (size_t i = 0; i < x->nw; i++) {
		const struct rwin *w = &x->w[i];
		if (w->dev != d->id || !isfinite(speedup[i]))
			continue;
		double len = area * speedup[i] / top;
		mta_buf_printf(b, "<text x=\"%d\" y=\"%d\" text-anchor=\"end\">", label - 6, y + 15);
		sb_html(b, w->key);
		mta_buf_printf(b, " T=%lld B=%lld</text>\n", (long long)w->T, (long long)w->B);
		mta_buf_printf(b, "<rect class=\"bar\" data-speedup=\"%.2f\" x=\"%d\" y=\"%d\" "
			     "width=\"%.1f\" height=\"%d\" fill=\"%s\"><title>", speedup[i], label, y,
			  len, row - 6, speedup[i] >= 1 ? "#2ca02c" : "#d62728");
		sb_html(b, w->spec);
		mta_buf_printf(b, "</title></rect>\n<text x=\"%.1f\" y=\"%d\">%.2fx</text>\n",
			  label + len + 4, y + 15, speedup[i]);
		y += row;
	}
	double one = label + area / top;
	mta_buf_printf(b, "<line x1=\"%.1f\" y1=\"0\" x2=\"%.1f\" y2=\"%d\" stroke=\"#333\" "
		     "stroke-dasharray=\"4 3\"/>\n<text x=\"%.1f\" y=\"%d\">1x</text>\n</svg>\n",
		  one, one, y, one - 8, y + 14);
}

/* Each problem's winners, time against T on log-log axes. */
static void time_chart(const struct rdata *x, const struct rdev *d, struct mta_buf *b)
{
	const int L = 70, W = 440, Tp = 20, H = 280, R = 420;
	double tlo = INFINITY, thi = -INFINITY, mlo = INFINITY, mhi = -INFINITY;
	for (size_t i = 0; i < x->nw; i++) {
		const struct rwin *w = &x->w[i];
		if (w->dev != d->id || !(w->ms > 0))
			continue;
		tlo = fmin(tlo, log2((double)w->T));
		thi = fmax(thi, log2((double)w->T));
		mlo = fmin(mlo, log10(w->ms));
		mhi = fmax(mhi, log10(w->ms));
	}
	mta_buf_printf(b, "<h3>Time of the winner against T</h3>\n");
	if (!isfinite(tlo)) {
		mta_buf_printf(b, "<p>No winners.</p>\n");
		return;
	}
	if (thi - tlo < 1) tlo -= 0.5, thi += 0.5;
	if (mhi - mlo < 0.2) mlo -= 0.1, mhi += 0.1;
#define PX(t) (L + W * ((t) - tlo) / (thi - tlo))
#define PY(m) (Tp + H - H * ((m) - mlo) / (mhi - mlo))
	mta_buf_printf(b, "<svg class=\"time\" xmlns=\"http://www.w3.org/2000/svg\" width=\"%d\" "
		     "height=\"%d\" font-size=\"11\">\n<rect x=\"%d\" y=\"%d\" width=\"%d\" "
		     "height=\"%d\" fill=\"none\" stroke=\"#999\"/>\n", L + W + R, Tp + H + 40, L, Tp,
		  W, H);
	for (int e = (int)ceil(tlo); e <= (int)floor(thi); e++)
		mta_buf_printf(b, "<text x=\"%.1f\" y=\"%d\" text-anchor=\"middle\">%.0f</text>\n",
			  PX(e), Tp + H + 14, exp2(e));
	mta_buf_printf(b, "<text x=\"%d\" y=\"%d\" text-anchor=\"middle\">T (log scale)</text>\n",
		  L + W / 2, Tp + H + 32);
	char lab[32];
	for (int k = 0; k <= 4; k++) {
		double m = mlo + (mhi - mlo) * k / 4;
		mta_report_fmt_ms(pow(10, m), lab, sizeof lab);
		mta_buf_printf(b, "<text x=\"%d\" y=\"%.1f\" text-anchor=\"end\">%s ms</text>\n", L - 4,
			  PY(m) + 4, lab);
	}
	int series = 0;
	for (size_t i = 0; i < x->nw; i++) {
		const struct rwin *w = &x->w[i];
		int first = 1;
		for (size_t j = 0; j < i; j++)
			first &= !(x->w[j].dev == d->id && !strcmp(x->w[j].key, w->key));
		if (w->dev != d->id || !first)
			continue; /* one series per problem, drawn at its first winner */
		const char *col = palette[series % 10];
		mta_buf_printf(b, "<polyline class=\"series\" fill=\"none\" stroke=\"%s\" "
			     "stroke-width=\"2\" points=\"", col);
		for (size_t j = i; j < x->nw; j++)
			if (x->w[j].dev == d->id && !strcmp(x->w[j].key, w->key) && x->w[j].ms > 0)
				mta_buf_printf(b, "%.1f,%.1f ", PX(log2((double)x->w[j].T)),
					  PY(log10(x->w[j].ms)));
		mta_buf_printf(b, "\"/>\n");
		for (size_t j = i; j < x->nw; j++) {
			const struct rwin *v = &x->w[j];
			if (v->dev != d->id || strcmp(v->key, w->key) || !(v->ms > 0))
				continue;
			mta_buf_printf(b, "<circle class=\"point\" data-T=\"%lld\" data-ms=\"", (long long)v->T);
			ms(b, v->ms);
			mta_buf_printf(b, "\" cx=\"%.1f\" cy=\"%.1f\" r=\"3\" fill=\"%s\"><title>T=%lld: ",
				  PX(log2((double)v->T)), PY(log10(v->ms)), col, (long long)v->T);
			ms(b, v->ms);
			mta_buf_printf(b, " ms, ");
			sb_html(b, v->spec);
			mta_buf_printf(b, "</title></circle>\n");
		}
		mta_buf_printf(b, "<rect x=\"%d\" y=\"%d\" width=\"10\" height=\"10\" fill=\"%s\"/>"
			     "<text x=\"%d\" y=\"%d\">", L + W + 12, Tp + 14 * series, col,
			  L + W + 26, Tp + 9 + 14 * series);
		sb_html(b, w->key);
		mta_buf_printf(b, "</text>\n");
		series++;
	}
	mta_buf_printf(b, "</svg>\n");
#undef PX
#undef PY
}

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

/* Results [lo, hi) of one (device, problem, T, B): best ok time per (bq, bk). */
static void heat_map(const struct rdata *x, size_t lo, size_t hi, int64_t dev, struct mta_buf *b)
{
	int bq[MAXAXIS], bk[MAXAXIS], nq = 0, nk = 0;
	double best[MAXAXIS][MAXAXIS], fast = INFINITY, slow = 0;
	int count[MAXAXIS][MAXAXIS] = { { 0 } };
	struct mta_variant v;
	const struct rres *r0 = &x->r[lo];
	for (size_t i = lo; i < hi; i++)
		if (x->r[i].dev == dev && !mta_variant_parse(x->r[i].spec, &v) &&
		    (axis_add(bq, &nq, v.bq) < 0 || axis_add(bk, &nk, v.bk) < 0))
			break;
	for (int i = 0; i < MAXAXIS; i++)
		for (int j = 0; j < MAXAXIS; j++)
			best[i][j] = INFINITY;
	for (size_t i = lo; i < hi; i++) {
		const struct rres *r = &x->r[i];
		if (r->dev != dev || mta_variant_parse(r->spec, &v))
			continue;
		int a = axis_find(bq, nq, v.bq), c = axis_find(bk, nk, v.bk);
		if (a < 0 || c < 0)
			continue;
		count[a][c]++;
		if (r->status == MTA_RESULT_OK && r->median < best[a][c])
			best[a][c] = r->median;
	}
	for (int a = 0; a < nq; a++)
		for (int c = 0; c < nk; c++)
			if (isfinite(best[a][c])) {
				fast = fmin(fast, best[a][c]);
				slow = fmax(slow, best[a][c]);
			}
	if (!nq)
		return;
	const int cw = 74, ch = 30, L = 60, Tp = 34;
	mta_buf_printf(b, "<figure class=\"heat\"><figcaption>");
	sb_html(b, r0->key);
	mta_buf_printf(b, " T=%lld B=%lld</figcaption>\n<svg class=\"heatmap\" xmlns=\"http://www.w3.org/"
		     "2000/svg\" data-T=\"%lld\" data-B=\"%lld\" width=\"%d\" height=\"%d\" "
		     "font-size=\"11\">\n<text x=\"%d\" y=\"12\">bk &#8594;</text>"
		     "<text x=\"4\" y=\"%d\">bq &#8595;</text>\n", (long long)r0->T, (long long)r0->B,
		  (long long)r0->T, (long long)r0->B, L + nk * cw + 10, Tp + nq * ch + 10, L, Tp - 14);
	for (int c = 0; c < nk; c++)
		mta_buf_printf(b, "<text x=\"%d\" y=\"%d\" text-anchor=\"middle\">%d</text>\n",
			  L + c * cw + cw / 2, Tp - 4, bk[c]);
	for (int a = 0; a < nq; a++) {
		mta_buf_printf(b, "<text x=\"%d\" y=\"%d\" text-anchor=\"end\">%d</text>\n", L - 6,
			  Tp + a * ch + ch / 2 + 4, bq[a]);
		for (int c = 0; c < nk; c++) {
			char col[8] = "#dddddd", t[32];
			double m = best[a][c];
			if (isfinite(m))
				heat_colour(slow > fast ? log(m / fast) / log(slow / fast) : 0, col,
					    sizeof col);
			mta_report_fmt_ms(m, t, sizeof t);
			mta_buf_printf(b, "<rect class=\"cell\" data-bq=\"%d\" data-bk=\"%d\" data-ms=\"%s\" "
				     "x=\"%d\" y=\"%d\" width=\"%d\" height=\"%d\" fill=\"%s\" "
				     "stroke=\"#fff\"><title>bq=%d bk=%d: best %s ms of %d variant%s"
				     "</title></rect>\n<text x=\"%d\" y=\"%d\" text-anchor=\"middle\">"
				     "%s</text>\n", bq[a], bk[c], t, L + c * cw, Tp + a * ch, cw, ch, col,
				  bq[a], bk[c], t, count[a][c], count[a][c] == 1 ? "" : "s",
				  L + c * cw + cw / 2, Tp + a * ch + ch / 2 + 4, t);
		}
	}
	mta_buf_printf(b, "</svg></figure>\n");
}

static const char style[] =
	"body{font-family:sans-serif;margin:2em;color:#222}table{border-collapse:collapse;"
	"font-size:13px}td,th{border:1px solid #ccc;padding:3px 8px;text-align:left}"
	"td.ms{text-align:right;font-family:monospace}figure.heat{display:inline-block;"
	"margin:0 1.5em 1.5em 0}figcaption{font-size:12px;font-family:monospace}"
	"section{margin-bottom:3em}svg text{font-family:sans-serif}";

void report_html(const struct rdata *x, struct mta_buf *b)
{
	double *speedup = calloc(x->nw ? x->nw : 1, sizeof *speedup);
	if (!speedup) {
		b->oom = 1;
		return;
	}
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
		winners_table(x, d, b, speedup);
		speedup_chart(x, d, b, speedup);
		time_chart(x, d, b);
		mta_buf_printf(b, "<h3>Time by tile shape</h3>\n<p>Each cell: the best median time of the "
			     "variants with that tile shape (bq query rows x bk key columns); grey: "
			     "none ran ok.</p>\n");
		for (size_t lo = 0, hi; lo < x->nr; lo = hi) {
			const struct rres *r = &x->r[lo];
			for (hi = lo + 1; hi < x->nr && x->r[hi].T == r->T && x->r[hi].B == r->B &&
					  !strcmp(x->r[hi].key, r->key); hi++)
				;
			size_t first = lo;
			while (first < hi && x->r[first].dev != d->id)
				first++;
			if (first < hi)
				heat_map(x, first, hi, d->id, b);
		}
		mta_buf_printf(b, "</section>\n");
	}
	mta_buf_printf(b, "</body>\n</html>\n");
	free(speedup);
}
