/*
 * report_int.h: shared by the report's files: the database read into
 * memory (report_data.c) and HTML escaping.
 */
#ifndef MTA_REPORT_INT_H
#define MTA_REPORT_INT_H

#include <stddef.h>
#include <stdint.h>

#include "runtime/core/strbuf.h"

struct rdev {
	int64_t id;
	char *backend, *name, *arch, *compiler;
	int cores;
};

struct rres {
	int64_t dev, T, B;
	char *key, *spec, *op, *error, *run_id;
	int status, runs;
	double median, p20, p80, min, rel_err, recorded_at;
};

/* A winner and its evidence against the default (db.h, struct mta_db_winner). */
struct rwin {
	int64_t dev, bucket, bbucket, T, B;
	char *key, *spec, *op;
	double ms, default_ms, ratio, ci_low, ci_high;
	int rounds, significant;
};

struct rdata {
	char *path;
	const char *op;   /* only results and winners of this operation ("fwd", "bwd"); NULL: all */
	struct rdev *d;
	struct rres *r;
	struct rwin *w;
	size_t nd, nr, nw, capd, capr, capw;
};

int rdata_load(const char *path, const char *op, struct rdata *x);
void rdata_free(struct rdata *x);
const struct rdev *rdata_device(const struct rdata *x, int64_t id);

/*
 * A chart axis (report_axis.c): [lo, hi] stretched to round values around
 * the data and its ticks, all from the 1-2-5 sequence: k * step on a linear
 * scale, m * 10^e (m = 1, 2, 5; or 1 alone over more than 3.5 decades) on a
 * logarithmic one, chosen when allow_log and the data spans more than a
 * decade (hi / lo > 10). from_zero: a linear axis starts at 0.
 */
#define RAXIS_MAXT 64
struct raxis {
	int log;
	double lo, hi;
	double tick[RAXIS_MAXT];
	int nt;
};
void raxis_make(struct raxis *a, double lo, double hi, int allow_log, int from_zero);
/* Where v lies along a, 0 (lo) .. 1 (hi), clamped. */
double raxis_frac(const struct raxis *a, double v);
/* A tick value as text ("0.2", "500", "1e+06"). */
void raxis_label(double v, char *buf, size_t n);
/* The heat maps' colour for t in [0, 1]: green (fast), yellow, red (slow). */
void heat_colour(double t, char *buf, size_t n);

/* Text goes into runtime/core/strbuf.h's buffer; s with & < > " ' escaped. */
void sb_html(struct mta_buf *b, const char *s);

/* The raw dumps (report_data.c) and the HTML page (report.c). */
void report_csv(const struct rdata *x, struct mta_buf *b);
void report_json(const struct rdata *x, struct mta_buf *b);
void report_html(const struct rdata *x, struct mta_buf *b);

#endif
