/*
 * report_int.h: shared by the report's files: the database read into
 * memory (report_data.c) and a growing text buffer.
 */
#ifndef MTA_REPORT_INT_H
#define MTA_REPORT_INT_H

#include <stddef.h>
#include <stdint.h>

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

/* A text buffer that remembers running out of memory (checked once at the end). */
struct sbuf {
	char *p;
	size_t n, cap;
	int oom;
};
void sb_printf(struct sbuf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void sb_html(struct sbuf *b, const char *s); /* s with & < > " ' escaped */

/* The raw dumps (report_data.c) and the HTML page (report.c). */
void report_csv(const struct rdata *x, struct sbuf *b);
void report_json(const struct rdata *x, struct sbuf *b);
void report_html(const struct rdata *x, struct sbuf *b);

#endif
