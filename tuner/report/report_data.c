/*
 * report_data.c: the report's input (the whole database read once into
 * memory, read-only), its text buffer, the CSV and JSON dumps, and the entry
 * point mta_report_render (see report.h).
 *
 * CSV follows RFC 4180 (fields with a comma, quote or line break are quoted,
 * quotes doubled), a header row first; unmeasured numbers are empty. Each
 * row carries its problem's parts as columns (H, Hkv, D, the kernel sizes,
 * dtype) beside the key, so that a table tool can group by them. JSON numbers are written
 * with 17 significant digits (they read back exactly), unmeasured ones as
 * null.
 */
#include "tuner/report/report.h"
#include "tuner/report/report_int.h"
#include "db/db.h"
#include "runtime/core/error.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- text ------------------------------------------------------------------ */

void sb_html(struct mta_buf *b, const char *s)
{
	for (; s && *s; s++) {
		switch (*s) {
		case '&': mta_buf_printf(b, "&amp;"); break;
		case '<': mta_buf_printf(b, "&lt;"); break;
		case '>': mta_buf_printf(b, "&gt;"); break;
		case '"': mta_buf_printf(b, "&quot;"); break;
		case '\'': mta_buf_printf(b, "&#39;"); break;
		default: mta_buf_printf(b, "%c", *s);
		}
	}
}

/* ---- loading ------------------------------------------------------------------ */

static char *dup(const char *s, struct rdata *x, int *oom)
{
	char *d = strdup(s ? s : "");
	if (!d)
		*oom = 1;
	return d;
}

/* Grow an array of elements of size sz to hold one more. */
static int grow(void **arr, size_t *cap, size_t n, size_t sz)
{
	if (n < *cap)
		return 0;
	size_t c = *cap ? 2 * *cap : 64;
	void *p = realloc(*arr, c * sz);
	if (!p)
		return mta_fail(MTA_ENOMEM, "out of memory reading the database");
	*arr = p;
	*cap = c;
	return 0;
}

static int on_dev(void *ctx, const struct mta_db_device *d)
{
	struct rdata *x = ctx;
	int oom = 0;
	if (grow((void **)&x->d, &x->capd, x->nd, sizeof *x->d))
		return MTA_ENOMEM;
	struct rdev *e = &x->d[x->nd++];
	*e = (struct rdev){ d->id, dup(d->backend, x, &oom), dup(d->name, x, &oom),
			    dup(d->arch, x, &oom), dup(d->compiler, x, &oom), d->cores };
	return oom ? mta_fail(MTA_ENOMEM, "out of memory reading the database") : 0;
}

static int on_res(void *ctx, const struct mta_db_result *r)
{
	struct rdata *x = ctx;
	int oom = 0;
	if (x->op && strcmp(r->op ? r->op : "fwd", x->op))
		return 0;
	if (grow((void **)&x->r, &x->capr, x->nr, sizeof *x->r))
		return MTA_ENOMEM;
	struct rres *e = &x->r[x->nr++];
	*e = (struct rres){ r->device_id, r->T, r->B, dup(r->problem_key, x, &oom),
			    dup(r->spec, x, &oom), dup(r->op ? r->op : "fwd", x, &oom),
			    dup(r->error, x, &oom), dup(r->run_id, x, &oom),
			    r->status, r->runs, r->median_ms, r->p20_ms, r->p80_ms, r->min_ms,
			    r->rel_err, r->recorded_at };
	return oom ? mta_fail(MTA_ENOMEM, "out of memory reading the database") : 0;
}

static int on_win(void *ctx, const struct mta_db_winner *w)
{
	struct rdata *x = ctx;
	int oom = 0;
	if (x->op && strcmp(w->op ? w->op : "fwd", x->op))
		return 0;
	if (grow((void **)&x->w, &x->capw, x->nw, sizeof *x->w))
		return MTA_ENOMEM;
	struct rwin *e = &x->w[x->nw++];
	*e = (struct rwin){ w->device_id, w->t_bucket, w->b_bucket, w->T, w->B,
			    dup(w->problem_key, x, &oom), dup(w->spec, x, &oom),
			    dup(w->op ? w->op : "fwd", x, &oom), w->time_ms, w->default_ms, w->ratio,
			    w->ci_low, w->ci_high, w->rounds, w->significant };
	return oom ? mta_fail(MTA_ENOMEM, "out of memory reading the database") : 0;
}

int rdata_load(const char *path, const char *op, struct rdata *x)
{
	struct mta_db *db = NULL;
	int rc;
	memset(x, 0, sizeof *x);
	x->op = op;
	if (!(x->path = strdup(path)))
		return mta_fail(MTA_ENOMEM, "out of memory");
	if ((rc = mta_db_open(path, MTA_DB_READONLY, &db)) ||
	    (rc = mta_db_list_devices(db, on_dev, x)) ||
	    (rc = mta_db_list_results(db, 0, NULL, on_res, x)) ||
	    (rc = mta_db_list_winners(db, 0, NULL, on_win, x)))
		rdata_free(x);
	mta_db_close(db);
	return rc;
}

void rdata_free(struct rdata *x)
{
	for (size_t i = 0; i < x->nd; i++) {
		free(x->d[i].backend);
		free(x->d[i].name);
		free(x->d[i].arch);
		free(x->d[i].compiler);
	}
	for (size_t i = 0; i < x->nr; i++) {
		free(x->r[i].key);
		free(x->r[i].spec);
		free(x->r[i].op);
		free(x->r[i].error);
		free(x->r[i].run_id);
	}
	for (size_t i = 0; i < x->nw; i++) {
		free(x->w[i].key);
		free(x->w[i].spec);
		free(x->w[i].op);
	}
	free(x->d);
	free(x->r);
	free(x->w);
	free(x->path);
	memset(x, 0, sizeof *x);
}

const struct rdev *rdata_device(const struct rdata *x, int64_t id)
{
	for (size_t i = 0; i < x->nd; i++)
		if (x->d[i].id == id)
			return &x->d[i];
	return NULL;
}

/* ---- CSV and JSON ---------------------------------------------------------------- */

static void csv_text(struct mta_buf *b, const char *s)
{
	if (!strpbrk(s, ",\"\r\n")) {
		mta_buf_printf(b, "%s,", s);
		return;
	}
	mta_buf_printf(b, "\"");
	for (; *s; s++)
		mta_buf_printf(b, *s == '"' ? "\"\"" : "%c", *s);
	mta_buf_printf(b, "\",");
}

static void csv_num(struct mta_buf *b, double v, const char *sep)
{
	if (isfinite(v))
		mta_buf_printf(b, "%.17g%s", v, sep);
	else
		mta_buf_printf(b, "%s", sep);
}

/*
 * The problem's parts as columns: op, H, Hkv, D, the kernel sizes (0: no
 * such kernel) and the dtype; all empty for a key that does not parse.
 */
static void csv_problem(struct mta_buf *b, const char *key)
{
	struct mta_problem p;
	if (mta_problem_from_key(key, &p)) {
		mta_buf_printf(b, ",,,,,,,,");
		return;
	}
	mta_buf_printf(b, "%d,%d,%d,%d,%d,%d,%d,%s,", p.H, p.Hkv, p.D, p.cq, p.ck, p.cq2, p.ck2,
		       mta_dtype_name(p.dtype));
}

void report_csv(const struct rdata *x, struct mta_buf *b)
{
	mta_buf_printf(b, "device_id,backend,device,op,problem,H,Hkv,D,cq,ck,cq2,ck2,dtype,spec,T,B,"
		       "status,median_ms,p20_ms,p80_ms,min_ms,runs,rel_err,error,run_id,"
		       "recorded_at\r\n");
	for (size_t i = 0; i < x->nr; i++) {
		const struct rres *r = &x->r[i];
		const struct rdev *d = rdata_device(x, r->dev);
		mta_buf_printf(b, "%lld,", (long long)r->dev);
		csv_text(b, d ? d->backend : "");
		csv_text(b, d ? d->name : "");
		csv_text(b, r->op);
		csv_text(b, r->key);
		csv_problem(b, r->key);
		csv_text(b, r->spec);
		mta_buf_printf(b, "%lld,%lld,%s,", (long long)r->T, (long long)r->B,
			  mta_result_status_name(r->status));
		csv_num(b, r->median, ",");
		csv_num(b, r->p20, ",");
		csv_num(b, r->p80, ",");
		csv_num(b, r->min, ",");
		mta_buf_printf(b, "%d,", r->runs);
		csv_num(b, r->rel_err, ",");
		csv_text(b, r->error);
		csv_text(b, r->run_id);
		csv_num(b, r->recorded_at, "\r\n");
	}
}

static void json_str(struct mta_buf *b, const char *name, const char *s)
{
	mta_buf_printf(b, "\"%s\": \"", name);
	for (; *s; s++) {
		unsigned char c = (unsigned char)*s;
		if (c == '"' || c == '\\')
			mta_buf_printf(b, "\\%c", c);
		else if (c < 0x20)
			mta_buf_printf(b, "\\u%04x", c);
		else
			mta_buf_printf(b, "%c", c);
	}
	mta_buf_printf(b, "\", ");
}

static void json_num(struct mta_buf *b, const char *name, double v, const char *sep)
{
	if (isfinite(v))
		mta_buf_printf(b, "\"%s\": %.17g%s", name, v, sep);
	else
		mta_buf_printf(b, "\"%s\": null%s", name, sep);
}

void report_json(const struct rdata *x, struct mta_buf *b)
{
	mta_buf_printf(b, "{\n\"devices\": [");
	for (size_t i = 0; i < x->nd; i++) {
		const struct rdev *d = &x->d[i];
		mta_buf_printf(b, "%s\n  {\"id\": %lld, ", i ? "," : "", (long long)d->id);
		json_str(b, "backend", d->backend);
		json_str(b, "name", d->name);
		json_str(b, "arch", d->arch);
		json_str(b, "compiler", d->compiler);
		mta_buf_printf(b, "\"cores\": %d}", d->cores);
	}
	mta_buf_printf(b, "\n],\n\"results\": [");
	for (size_t i = 0; i < x->nr; i++) {
		const struct rres *r = &x->r[i];
		mta_buf_printf(b, "%s\n  {\"device_id\": %lld, ", i ? "," : "", (long long)r->dev);
		json_str(b, "op", r->op);
		json_str(b, "problem", r->key);
		json_str(b, "spec", r->spec);
		mta_buf_printf(b, "\"T\": %lld, \"B\": %lld, ", (long long)r->T, (long long)r->B);
		json_str(b, "status", mta_result_status_name(r->status));
		json_num(b, "median_ms", r->median, ", ");
		json_num(b, "p20_ms", r->p20, ", ");
		json_num(b, "p80_ms", r->p80, ", ");
		json_num(b, "min_ms", r->min, ", ");
		mta_buf_printf(b, "\"runs\": %d, ", r->runs);
		json_num(b, "rel_err", r->rel_err, ", ");
		json_str(b, "error", r->error);
		json_str(b, "run_id", r->run_id);
		json_num(b, "recorded_at", r->recorded_at, "}");
	}
	mta_buf_printf(b, "\n],\n\"winners\": [");
	for (size_t i = 0; i < x->nw; i++) {
		const struct rwin *w = &x->w[i];
		mta_buf_printf(b, "%s\n  {\"device_id\": %lld, ", i ? "," : "", (long long)w->dev);
		json_str(b, "op", w->op);
		json_str(b, "problem", w->key);
		json_str(b, "spec", w->spec);
		mta_buf_printf(b, "\"t_bucket\": %lld, \"b_bucket\": %lld, \"T\": %lld, \"B\": %lld, ",
			       (long long)w->bucket, (long long)w->bbucket, (long long)w->T,
			       (long long)w->B);
		json_num(b, "time_ms", w->ms, ", ");
		json_num(b, "default_ms", w->default_ms, ", ");
		json_num(b, "ratio", w->ratio, ", ");
		json_num(b, "ci_low", w->ci_low, ", ");
		json_num(b, "ci_high", w->ci_high, ", ");
		mta_buf_printf(b, "\"rounds\": %d, \"significant\": %d}", w->rounds, w->significant);
	}
	mta_buf_printf(b, "\n]\n}\n");
}

/* ---- entry points ------------------------------------------------------------------ */

int mta_report_format_parse(const char *s, int *format)
{
	static const char *const names[] = { "html", "csv", "json" };
	for (int i = 0; i < 3; i++)
		if (!strcmp(s, names[i])) {
			*format = i;
			return MTA_OK;
		}
	return mta_fail(MTA_EINVAL, "report format '%s': expected html, csv or json", s);
}

void mta_report_fmt_ms(double ms, char *buf, size_t n)
{
	if (isfinite(ms))
		snprintf(buf, n, "%.4g", ms);
	else
		snprintf(buf, n, "-");
}

int mta_report_render(const char *db_path, int format, char **out, size_t *len)
{
	return mta_report_render_op(db_path, format, NULL, out, len);
}

int mta_report_render_op(const char *db_path, int format, const char *op, char **out,
			 size_t *len)
{
	struct rdata x;
	struct mta_buf b = { 0 };
	int rc;
	*out = NULL;
	*len = 0;
	if (format < MTA_REPORT_HTML || format > MTA_REPORT_JSON)
		return mta_fail(MTA_EINVAL, "report format %d is not MTA_REPORT_*", format);
	if (op && strcmp(op, "fwd") && strcmp(op, "bwd") && strcmp(op, "decode"))
		return mta_fail(MTA_EINVAL, "report of operation '%s' (expected fwd, bwd or decode)",
				op);
	if ((rc = rdata_load(db_path, op, &x)))
		return rc;
	if (format == MTA_REPORT_CSV)
		report_csv(&x, &b);
	else if (format == MTA_REPORT_JSON)
		report_json(&x, &b);
	else
		report_html(&x, &b);
	rdata_free(&x);
	return mta_buf_take(&b, "the report", out, len);
}
