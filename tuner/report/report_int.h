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
	char *key, *spec, *error, *run_id;
	int status, runs;
	double median, p20, p80, min, rel_err, recorded_at;
};

struct rwin {
	int64_t dev, bucket, T, B;
	char *key, *spec;
	double ms;
};

struct rdata {
	char *path;
	struct rdev *d;
	struct rres *r;
	struct rwin *w;
	size_t nd, nr, nw, capd, capr, capw;
};

int rdata_load(const char *path, struct rdata *x);
void rdata_free(struct rdata *x);
const struct rdev *rdata_device(const struct rdata *x, int64_t id);

/* Text goes into runtime/core/strbuf.h's buffer; s with & < > " ' escaped. */
void sb_html(struct mta_buf *b, const char *s);

/* The raw dumps (report_data.c) and the HTML page (report.c). */
void report_csv(const struct rdata *x, struct mta_buf *b);
void report_json(const struct rdata *x, struct mta_buf *b);
void report_html(const struct rdata *x, struct mta_buf *b);

#endif
