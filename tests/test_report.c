/*
 * test_report.c: `mtatune report` (tuner/report/report.c, tuner/report/report_data.c). A
 * database with known results on two devices is rendered; the page's SVG
 * elements are counted and the numbers it shows are compared with the
 * database's, queried with SQL and formatted as the report says it formats.
 */
#include "tests/harness.h"
#include "db/db.h"
#include "runtime/host.h"
#include "tests/fixtures.h"
#include "tuner/report/report.h"
#include "tuner/report/report_int.h"
#include "gen/variant.h"


#define KEY "h2kv1d8-pre2x3-both-f32"

static int occurrences(const char *hay, const char *needle)
{
	int n = 0;
	for (const char *p = hay; (p = strstr(p, needle)); p += strlen(needle))
		n++;
	return n;
}

/* Device 1: every CPU variant at T=32 and 64 (one failure); device 2, a foreign name: three at T=32. */
static void make_db(const char *path, char *def, size_t n)
{
	struct mta_db *db;
	struct mta_problem p;
	struct mta_variant *vs, dv;
	struct mta_db_device d1, d2 = { 0, "cpu", "<b>Evil & Co</b>", "x86_64", "", "cc 1", "", 4 };
	size_t nv;
	int64_t dev1, dev2, prob;
	REQUIRE(mta_problem_from_key(KEY, &p) == MTA_OK);
	REQUIRE(mta_variant_space(&p, MTA_BACKEND_CPU, &vs, &nv) == MTA_OK);
	REQUIRE(mta_variant_default(&p, MTA_BACKEND_CPU, &dv) == MTA_OK);
	REQUIRE(mta_variant_format(&dv, def, n) == MTA_OK);
	REQUIRE(mta_db_open(path, 0, &db) == MTA_OK);
	mta_device_cpu(&d1);
	REQUIRE(mta_db_device_upsert(db, &d1, &dev1) == MTA_OK);
	REQUIRE(mta_db_device_upsert(db, &d2, &dev2) == MTA_OK);
	REQUIRE(mta_db_problem_upsert(db, KEY, &prob) == MTA_OK);
	REQUIRE(mta_db_begin(db) == MTA_OK);
	/* the fastest ok result per (device, T) and the default's, for the winners below */
	struct { int64_t dev, T, vid, def_vid; double ms, def_ms; } best[3] = {
		{ dev1, 32, 0, 0, INFINITY, NAN }, { dev1, 64, 0, 0, INFINITY, NAN },
		{ dev2, 32, 0, 0, INFINITY, NAN },
	};
	for (size_t i = 0; i < nv; i++) {
		char spec[MTA_SPEC_MAX];
		int64_t vid;
		REQUIRE(mta_variant_format(&vs[i], spec, sizeof spec) == MTA_OK);
		REQUIRE(mta_db_variant_upsert(db, prob, spec, "", &vid) == MTA_OK);
		for (int64_t T = 32; T <= 64; T += 32) {
			struct mta_db_result r = { 0 };
			r.device_id = dev1;
			r.variant_id = vid;
			r.T = T;
			r.B = 1;
			r.status = MTA_RESULT_OK;
			r.median_ms = r.p20_ms = r.p80_ms = r.min_ms = (double)T * (0.01 + 0.0037 * (double)((i * 7) % nv));
			r.runs = 3;
			r.rel_err = 1e-7;
			if (T == 64 && i == 1) {
				r.status = MTA_RESULT_VERIFY_FAILED;
				r.median_ms = r.p20_ms = r.p80_ms = r.min_ms = NAN;
				r.error = "relative L2 error 0.5 \"too big\", see <log>";
			}
			REQUIRE(mta_db_result_put(db, &r) == MTA_OK);
			if (T == 32 && (i < 2 || !strcmp(spec, def))) {
				r.device_id = dev2;
				r.median_ms = 1.5 + (double)i;
				REQUIRE(mta_db_result_put(db, &r) == MTA_OK);
			}
			for (int b = 0; b < 3; b++) {
				int here = best[b].T == T && (best[b].dev == dev1 || (T == 32 &&
					   (i < 2 || !strcmp(spec, def))));
				double ms = best[b].dev == dev1 ? (double)T * (0.01 + 0.0037 *
						(double)((i * 7) % nv)) : 1.5 + (double)i;
				if (!here || (T == 64 && i == 1))
					continue;
				if (ms < best[b].ms) {
					best[b].ms = ms;
					best[b].vid = vid;
				}
				if (!strcmp(spec, def)) {
					best[b].def_ms = ms;
					best[b].def_vid = vid;
				}
			}
		}
	}
	/* winners as a tuning run decides them: the fastest, with paired-round evidence */
	for (int b = 0; b < 3; b++) {
		double ratio = best[b].ms / best[b].def_ms;
		struct mta_db_winner w = { .device_id = best[b].dev, .problem_id = prob,
			.variant_id = best[b].vid, .T = best[b].T, .B = 1, .time_ms = best[b].ms,
			.default_ms = best[b].def_ms, .ratio = ratio, .ci_low = ratio * 0.98,
			.ci_high = ratio * 1.02, .rounds = 10, .significant = ratio * 1.02 < 0.985 };
		REQUIRE(mta_db_winner_set(db, &w) == MTA_OK);
	}
	REQUIRE(mta_db_commit(db) == MTA_OK);
	mta_db_close(db);
	free(vs);
}

/* The text of one device's section of the page (malloc'd). */
static char *section(const char *html, long long dev)
{
	char tag[64];
	snprintf(tag, sizeof tag, "<section class=\"device\" data-device=\"%lld\"", dev);
	const char *a = strstr(html, tag), *b = a ? strstr(a, "</section>") : NULL;
	return a && b ? strndup(a, (size_t)(b - a)) : strdup("");
}

static void check_heatmap(const char *db, const char *sec, long long dev, long long T)
{
	char tag[128], sql[512], want[128], ms[32];
	snprintf(tag, sizeof tag, "class=\"heatmap\" xmlns=\"http://www.w3.org/2000/svg\" "
		 "data-T=\"%lld\" data-B=\"1\"", T);
	const char *a = strstr(sec, tag), *b = a ? strstr(a, "</svg>") : NULL;
	REQUIRE(a && b);
	char *map = strndup(a, (size_t)(b - a));
	int cells = 0, nq = 0, nk = 0;
	/* every tile shape any CPU space has offered; the map's axes are the bq and bk
	 * values with a result of any status, and each cell holds the best ok time */
	static const int bqs[] = { 8, 16, 32, 64, 96, 128 },
			 bks[] = { 32, 64, 128, 256, 384, 512, 768, 1024 };
	for (int axis = 0; axis < 2; axis++)
		for (size_t x = 0; x < (axis ? sizeof bks / sizeof bks[0] : sizeof bqs / sizeof bqs[0]); x++) {
			snprintf(sql, sizeof sql, "SELECT count(*) FROM results r JOIN variants v ON "
				 "v.id = r.variant_id WHERE r.device_id = %lld AND r.T = %lld AND "
				 "v.spec LIKE '%%,%s=%d,%%'", dev, T, axis ? "bk" : "bq",
				 axis ? bks[x] : bqs[x]);
			if (mt_db_count(db, sql) > 0)
				++*(axis ? &nk : &nq);
		}
	for (size_t x = 0; x < sizeof bqs / sizeof bqs[0]; x++)
		for (size_t y = 0; y < sizeof bks / sizeof bks[0]; y++) {
			const int bq = bqs[x], bk = bks[y];
			snprintf(sql, sizeof sql, "SELECT min(median_ms) FROM results r JOIN variants v ON "
				 "v.id = r.variant_id WHERE r.device_id = %lld AND r.T = %lld AND "
				 "r.status = 'ok' AND v.spec LIKE '%%,bq=%d,bk=%d,%%'", dev, T, bq, bk);
			char *m = mt_sql_rows(db, sql);
			if (!m[0] || m[0] == '\n') {
				free(m);
				continue;
			}
			cells++;
			mta_report_fmt_ms(atof(m), ms, sizeof ms);
			snprintf(want, sizeof want, "data-bq=\"%d\" data-bk=\"%d\" data-ms=\"%s\"", bq, bk, ms);
			CHECK_STR_CONTAINS(map, want);
			free(m);
		}
	CHECK(cells > 0 && cells <= nq * nk);
	CHECK_EQ_INT(occurrences(map, "class=\"cell\""), nq * nk);
	free(map);
}

TEST(report_html_shows_the_databases_numbers_in_inline_svg)
{
	char db[600], def[MTA_SPEC_MAX], *html = NULL;
	size_t len;
	snprintf(db, sizeof db, "%s/r.db", mt_tmpdir());
	make_db(db, def, sizeof def);
	REQUIRE(mta_report_render(db, MTA_REPORT_HTML, &html, &len) == MTA_OK);
	CHECK_EQ_INT(len, strlen(html));
	CHECK(!strncmp(html, "<!DOCTYPE html>", 15));
	/* self-contained: no script, nothing loaded from elsewhere */
	CHECK(!strstr(html, "<script") && !strstr(html, " src=") && !strstr(html, "href="));
	CHECK_EQ_INT(occurrences(html, "http"), occurrences(html, "xmlns=\"http://www.w3.org/2000/svg\""));
	/* text from the database is escaped */
	CHECK_STR_CONTAINS(html, "&lt;b&gt;Evil &amp; Co&lt;/b&gt;");
	CHECK(!strstr(html, "<b>Evil"));

	/* one heat map per (device, problem, T, B), cells = best time per tile shape */
	CHECK_EQ_INT(occurrences(html, "class=\"heatmap\""), 3);
	char *s1 = section(html, 1), *s2 = section(html, 2);
	check_heatmap(db, s1, 1, 32);
	check_heatmap(db, s1, 1, 64);
	check_heatmap(db, s2, 2, 32);

	/* the winners table, row by row, against the winners and the default's result */
	char sql[1024];
	snprintf(sql, sizeof sql, "SELECT w.device_id, w.t_bucket, w.T, w.B, v.spec, w.time_ms, "
		 "(SELECT r.median_ms FROM results r JOIN variants d ON d.id = r.variant_id WHERE "
		 "r.device_id = w.device_id AND r.T = w.T AND r.B = w.B AND r.status = 'ok' AND "
		 "d.spec = '%s') FROM winners w JOIN variants v ON v.id = w.variant_id ORDER BY 1, 2",
		 def);
	char *w = mt_sql_rows(db, sql);
	int nw = 0;
	char *save = NULL;
	for (char *line = strtok_r(w, "\n", &save); line; line = strtok_r(NULL, "\n", &save), nw++) {
		long long dev, bucket, T, B;
		char spec[MTA_SPEC_MAX], row[512], t1[32], t2[32];
		double ms, dms;
		REQUIRE(sscanf(line, "%lld|%lld|%lld|%lld|%127[^|]|%lf|%lf", &dev, &bucket, &T, &B, spec,
			       &ms, &dms) == 7);
		mta_report_fmt_ms(ms, t1, sizeof t1);
		mta_report_fmt_ms(dms, t2, sizeof t2);
		snprintf(row, sizeof row, "<td>fwd</td><td>%lld</td><td>1</td><td>%lld</td><td>%lld</td>"
			 "<td>%s</td><td class=\"ms\">%s</td><td class=\"ms\">%s</td><td>%.2fx", bucket,
			 T, B, spec, t1, t2, dms / ms);
		CHECK_STR_CONTAINS(dev == 1 ? s1 : s2, row);
		snprintf(row, sizeof row, "class=\"bar\" data-speedup=\"%.2f\"", dms / ms);
		CHECK_STR_CONTAINS(dev == 1 ? s1 : s2, row);
		snprintf(row, sizeof row, "class=\"point\" data-T=\"%lld\" data-B=\"%lld\" data-ms=\"%s\"",
			 T, B, t1);
		CHECK_STR_CONTAINS(dev == 1 ? s1 : s2, row);
	}
	CHECK_EQ_INT(nw, 3);
	CHECK_EQ_INT(occurrences(html, "<tr class=\"winner\""), nw);
	CHECK_EQ_INT(occurrences(html, "class=\"bar\""), nw);
	CHECK_EQ_INT(occurrences(html, "class=\"point\""), nw);
	CHECK_EQ_INT(occurrences(html, "class=\"series\""), 2); /* one problem on each device */
	free(w);
	free(s1);
	free(s2);
	free(html);
}

TEST(report_csv_and_json_hold_every_result_and_the_cli_writes_them)
{
	char db[600], def[MTA_SPEC_MAX], *csv = NULL, *json = NULL, *html = NULL, *out = NULL;
	size_t len;
	snprintf(db, sizeof db, "%s/r.db", mt_tmpdir());
	make_db(db, def, sizeof def);
	char *n = mt_sql_rows(db, "SELECT count(*) FROM results");
	long long nres = atoll(n);
	free(n);
	CHECK(nres > 40);
	REQUIRE(mta_report_render(db, MTA_REPORT_CSV, &csv, &len) == MTA_OK);
	CHECK_EQ_INT(occurrences(csv, "\r\n"), nres + 1);
	static const char head[] = "device_id,backend,device,op,problem,H,Hkv,D,cq,ck,cq2,ck2,dtype,"
				   "spec,T,B,status,median_ms,";
	CHECK(!strncmp(csv, head, sizeof head - 1));
	CHECK_STR_CONTAINS(csv, ",verify_failed,,,,,3,"); /* unmeasured times are empty */
	CHECK_STR_CONTAINS(csv, "\"relative L2 error 0.5 \"\"too big\"\", see <log>\""); /* RFC 4180 */
	CHECK_STR_CONTAINS(csv, ",\"cpu:v1,bq=");
	REQUIRE(mta_report_render(db, MTA_REPORT_JSON, &json, &len) == MTA_OK);
	CHECK_EQ_INT(occurrences(json, "\"spec\":"), nres + 3);
	CHECK_STR_CONTAINS(json, "\"median_ms\": null");
	CHECK_STR_CONTAINS(json, "\\\"too big\\\"");
	/* winners with their evidence, results with their operation */
	CHECK_EQ_INT(occurrences(json, "\"rounds\": 10, \"significant\": "), 3);
	CHECK_EQ_INT(occurrences(json, "\"ci_low\": "), 3);
	CHECK_EQ_INT(occurrences(json, "{\"device_id\": 1, \"op\": \"fwd\", \"problem\""),
		     occurrences(csv, "\r\n1,") + 2);
	REQUIRE(mta_report_render(db, MTA_REPORT_HTML, &html, &len) == MTA_OK);

	/* the CLI writes the same bytes, to a file or to stdout */
	char want[700];
	snprintf(want, sizeof want, "%s/want.html", mt_tmpdir());
	FILE *f = fopen(want, "w");
	REQUIRE(f);
	fputs(html, f);
	fclose(f);
	int rc = mt_sh(&out, "%s report --db %s --out %s/r.html && cmp %s/r.html %s", mt_bin(), db,
		       mt_tmpdir(), mt_tmpdir(), want);
	CHECKF(rc == 0, "exit %d: %s", rc, out);
	free(out);
	rc = mt_sh(&out, "%s report --db %s --format csv | tr -d '\\r' | wc -l", mt_bin(), db);
	CHECK_EQ_INT(rc, 0);
	CHECK_EQ_INT(atoll(out), nres + 1);
	free(out);
	int fmt;
	CHECK(mta_report_format_parse("json", &fmt) == MTA_OK && fmt == MTA_REPORT_JSON);
	CHECK(mta_report_format_parse("svg", &fmt) == MTA_EINVAL);
	free(csv);
	free(json);
	free(html);
}

/* Lines of text holding needle. */
static int count_lines(const char *text, const char *needle)
{
	int n = 0;
	for (const char *l = text; l && *l;) {
		const char *e = strchr(l, '\n');
		size_t len = e ? (size_t)(e - l) : strlen(l);
		const char *hit = strstr(l, needle);
		n += hit && hit < l + len;
		l = e ? e + 1 : NULL;
	}
	return n;
}

/*
 * A problem tuned for the forward and the backward: every result and winner
 * names its op, and --op keeps one operation's rows only.
 */
TEST(report_shows_each_rows_op_and_filters_by_op)
{
	char path[600], *out = NULL;
	struct mta_db *db;
	struct mta_db_device d;
	struct mta_problem p;
	struct mta_variant v;
	char spec[MTA_SPEC_MAX];
	int64_t dev, prob, vid[2];
	snprintf(path, sizeof path, "%s/ops.db", mt_tmpdir());
	REQUIRE(mta_problem_from_key(KEY, &p) == MTA_OK);
	REQUIRE(mta_variant_default_op(&p, MTA_BACKEND_CPU, MTA_OP_BWD, &v) == MTA_OK);
	REQUIRE(mta_variant_format(&v, spec, sizeof spec) == MTA_OK);
	REQUIRE(mta_db_open(path, 0, &db) == MTA_OK);
	mta_device_cpu(&d);
	REQUIRE(mta_db_device_upsert(db, &d, &dev) == MTA_OK);
	REQUIRE(mta_db_problem_upsert(db, KEY, &prob) == MTA_OK);
	for (int i = 0; i < 2; i++) {
		REQUIRE(mta_db_variant_upsert_op(db, prob, i ? "bwd" : "fwd", spec, "", &vid[i]) ==
			MTA_OK);
		struct mta_db_result r = { .device_id = dev, .variant_id = vid[i], .T = 64, .B = 1,
					   .status = MTA_RESULT_OK, .median_ms = 1.0 + i,
					   .p20_ms = 1.0 + i, .p80_ms = 1.0 + i, .min_ms = 1.0 + i,
					   .runs = 3, .rel_err = 1e-6 };
		REQUIRE(mta_db_result_put(db, &r) == MTA_OK);
		struct mta_db_winner w = { .device_id = dev, .problem_id = prob, .variant_id = vid[i],
					   .op = i ? "bwd" : "fwd", .T = 64, .B = 1,
					   .time_ms = 1.0 + i };
		REQUIRE(mta_db_winner_set(db, &w) == MTA_OK);
	}
	mta_db_close(db);
	char *csv = NULL, *html = NULL;
	size_t len;
	REQUIRE(mta_report_render_op(path, MTA_REPORT_CSV, NULL, &csv, &len) == MTA_OK);
	CHECK_EQ_INT(count_lines(csv, ",fwd," KEY ","), 1);
	CHECK_EQ_INT(count_lines(csv, ",bwd," KEY ","), 1);
	free(csv);
	REQUIRE(mta_report_render_op(path, MTA_REPORT_CSV, "bwd", &csv, &len) == MTA_OK);
	CHECK_EQ_INT(count_lines(csv, ",fwd,"), 0);
	CHECK_EQ_INT(count_lines(csv, ",bwd," KEY ","), 1);
	free(csv);
	REQUIRE(mta_report_render_op(path, MTA_REPORT_HTML, NULL, &html, &len) == MTA_OK);
	CHECK_STR_CONTAINS(html, "<td>bwd</td>");
	CHECK_STR_CONTAINS(html, "<td>fwd</td>");
	free(html);
	REQUIRE(mta_report_render_op(path, MTA_REPORT_HTML, "fwd", &html, &len) == MTA_OK);
	CHECK(!strstr(html, "<td>bwd</td>"));
	CHECK_STR_CONTAINS(html, "<td>fwd</td>");
	free(html);
	CHECK(mta_report_render_op(path, MTA_REPORT_CSV, "sideways", &csv, &len) == MTA_EINVAL);
	int rc = mt_sh(&out, "%s report --db %s --format json --op bwd", mt_bin(), path);
	CHECKF(rc == 0 && out && strstr(out, "bwd") && !strstr(out, "\"fwd\""), "exit %d: %s", rc,
	       out);
	free(out);
	rc = mt_sh(&out, "%s report --db %s --op sideways", mt_bin(), path);
	CHECK_EQ_INT(rc, 2);
	CHECK_STR_CONTAINS(out, "--op: unknown operation 'sideways' (expected fwd, bwd or decode)");
	free(out);
}

TEST(report_of_an_empty_database_says_so)
{
	char db[600], *html = NULL;
	size_t len;
	struct mta_db *h;
	snprintf(db, sizeof db, "%s/e.db", mt_tmpdir());
	REQUIRE(mta_db_open(db, 0, &h) == MTA_OK);
	mta_db_close(h);
	REQUIRE(mta_report_render(db, MTA_REPORT_HTML, &html, &len) == MTA_OK);
	CHECK_STR_CONTAINS(html, "0 devices, 0 results, 0 winners");
	CHECK_STR_CONTAINS(html, "</html>");
	free(html);
	snprintf(db, sizeof db, "%s/none.db", mt_tmpdir());
	CHECK(mta_report_render(db, MTA_REPORT_HTML, &html, &len) == MTA_ENOTFOUND);
	CHECK(html == NULL);
}

/*
 * A report (or any command's output) to a standard output that cannot be
 * written fails (exit 1), even when it is small enough to sit in stdio's
 * buffer until exit.
 */
TEST(report_to_an_unwritable_stdout_fails)
{
	char db[600], *out = NULL;
	struct mta_db *h;
	snprintf(db, sizeof db, "%s/e.db", mt_tmpdir());
	REQUIRE(mta_db_open(db, 0, &h) == MTA_OK);
	mta_db_close(h);
	int rc = mt_sh(&out, "%s report --db %s --format csv > /dev/full", mt_bin(), db);
	CHECK_EQ_INT(rc, 1);
	CHECK_STR_CONTAINS(out, "mtatune report: cannot write stdout");
	free(out);
	/* the same for any command's output (checked once, in main) */
	rc = mt_sh(&out, "%s gen --problem h2kv1d8-pre2x3-both-f32 > /dev/full", mt_bin());
	CHECK_EQ_INT(rc, 1);
	CHECK_STR_CONTAINS(out, "mtatune gen: cannot write stdout");
	free(out);
}

/* ---- evidence, error bars, batch sizes, axes, kernel sizes ------------------------------ */

/*
 * Three problems that differ only in the pre-softmax kernel (cq, ck), ordered
 * by size (their keys sort otherwise: pre2x11 < pre2x3).
 */
static const char *const KK[3] = { "h2kv1d8-pre2x3-both-f32", "h2kv1d8-pre2x11-both-f32",
				   "h2kv1d8-pre4x3-both-f32" };
/* Each variant's time relative to the default (variant 0); the problem's base time. */
static const double FV[6] = { 1.00, 0.94, 1.10, 1.30, 1.60, 2.20 };
static const double CP[3] = { 1.0, 1.4, 1.8 };

static double base_ms(int p, int64_t T, int64_t B)
{
	return 0.01 * CP[p] * pow((double)T / 32, 1.5) * (double)B;
}

/* How each winner of make_kdb is recorded (problem, T, B): see the table in make_kdb. */
struct kwin {
	int p;
	int64_t T, B;
	int var, rounds, significant;
	double ratio, lo, hi;
};
static const struct kwin KW[] = {
	{ 0, 32, 1, 1, 12, 1, 0.94, 0.92, 0.96 },     /* faster, significant */
	{ 0, 32, 2, 1, 12, 0, 0.99, 0.96, 1.02 },     /* recorded not significant */
	{ 0, 1024, 1, 1, 12, 1, 0.94, 0.92, 0.96 },
	{ 0, 1024, 2, 1, 12, 1, 0.94, 0.92, 0.96 },
	{ 1, 32, 1, 1, 12, 1, 0.94, 0.92, 0.96 },
	{ 1, 32, 2, 1, 12, 1, 0.94, 0.92, 0.96 },
	{ 1, 1024, 1, 0, 12, 0, 1, 1, 1 },            /* the default kept */
	{ 1, 1024, 2, 1, 12, 1, 0.94, 0.92, 0.96 },
	{ 2, 32, 1, 1, 12, 1, 0.97, 0.93, 1.01 },     /* "significant", but the CI reaches 1 */
	{ 2, 32, 2, 1, 12, 1, 0.94, 0.92, 0.96 },
	{ 2, 1024, 1, 1, 12, 1, 0.94, 0.92, 0.96 },
	{ 2, 1024, 2, 1, 0, 0, NAN, NAN, NAN },       /* no paired rounds (older database) */
};
#define NKW (sizeof KW / sizeof KW[0])

/*
 * One CPU device; problems KK at T = 32, 1024 (times 180x apart: a log axis)
 * and B = 1, 2; six variants of distinct tile shapes each, timed FV x the
 * problem's base with p20 = 0.93 and p80 = 1.12 of the median; at KK[0]
 * T=1024 B=2 the slowest failed its check (that map's slowest ratio is
 * lower). Winners as KW says.
 */
static void make_kdb(const char *path, char spec[3][6][MTA_SPEC_MAX])
{
	struct mta_db *db;
	struct mta_db_device d;
	int64_t dev, vid[3][6];
	REQUIRE(mta_db_open(path, 0, &db) == MTA_OK);
	mta_device_cpu(&d);
	REQUIRE(mta_db_device_upsert(db, &d, &dev) == MTA_OK);
	REQUIRE(mta_db_begin(db) == MTA_OK);
	for (int p = 0; p < 3; p++) {
		struct mta_problem pr;
		struct mta_variant *vs, dv;
		size_t nv, n = 1;
		int64_t prob;
		int shapes[6][2];
		REQUIRE(mta_problem_from_key(KK[p], &pr) == MTA_OK);
		REQUIRE(mta_variant_space(&pr, MTA_BACKEND_CPU, &vs, &nv) == MTA_OK);
		REQUIRE(mta_variant_default(&pr, MTA_BACKEND_CPU, &dv) == MTA_OK);
		REQUIRE(mta_variant_format(&dv, spec[p][0], MTA_SPEC_MAX) == MTA_OK);
		shapes[0][0] = dv.bq;
		shapes[0][1] = dv.bk;
		for (size_t i = 0; i < nv && n < 6; i++) {
			int seen = 0;
			for (size_t j = 0; j < n; j++)
				seen |= shapes[j][0] == vs[i].bq && shapes[j][1] == vs[i].bk;
			if (seen)
				continue;
			shapes[n][0] = vs[i].bq;
			shapes[n][1] = vs[i].bk;
			REQUIRE(mta_variant_format(&vs[i], spec[p][n++], MTA_SPEC_MAX) == MTA_OK);
		}
		free(vs);
		REQUIRE(n == 6);
		REQUIRE(mta_db_problem_upsert(db, KK[p], &prob) == MTA_OK);
		for (int v = 0; v < 6; v++) {
			REQUIRE(mta_db_variant_upsert(db, prob, spec[p][v], "", &vid[p][v]) == MTA_OK);
			for (int64_t T = 32; T <= 1024; T *= 32)
				for (int64_t B = 1; B <= 2; B++) {
					struct mta_db_result r = { 0 };
					r.device_id = dev;
					r.variant_id = vid[p][v];
					r.T = T;
					r.B = B;
					r.status = MTA_RESULT_OK;
					r.median_ms = base_ms(p, T, B) * FV[v];
					r.p20_ms = r.median_ms * 0.93;
					r.p80_ms = r.median_ms * 1.12;
					r.min_ms = r.median_ms * 0.9;
					r.runs = 5;
					r.rel_err = 1e-7;
					if (p == 0 && T == 1024 && B == 2 && v == 5) {
						r.status = MTA_RESULT_VERIFY_FAILED;
						r.median_ms = r.p20_ms = r.p80_ms = r.min_ms = NAN;
						r.error = "wrong";
					}
					REQUIRE(mta_db_result_put(db, &r) == MTA_OK);
				}
		}
		for (size_t k = 0; k < NKW; k++) {
			const struct kwin *e = &KW[k];
			if (e->p != p)
				continue;
			double bm = base_ms(p, e->T, e->B);
			struct mta_db_winner w = { .device_id = dev, .problem_id = prob,
				.variant_id = vid[p][e->var], .T = e->T, .B = e->B,
				.time_ms = bm * FV[e->var], .default_ms = e->rounds ? bm : NAN,
				.ratio = e->ratio, .ci_low = e->lo, .ci_high = e->hi,
				.rounds = e->rounds, .significant = e->significant };
			REQUIRE(mta_db_winner_set(db, &w) == MTA_OK);
		}
	}
	REQUIRE(mta_db_commit(db) == MTA_OK);
	mta_db_close(db);
}

/* The text from the first occurrence of start (at or after from) to the next end (malloc'd). */
static char *cut(const char *from, const char *start, const char *end)
{
	const char *a = strstr(from, start), *b = a ? strstr(a, end) : NULL;
	return a && b ? strndup(a, (size_t)(b - a)) : NULL;
}

/* The number in attribute name="..." of the first tag holding it at or after s; NAN if none. */
static double attr(const char *s, const char *name)
{
	char pat[64];
	snprintf(pat, sizeof pat, " %s=\"", name);
	const char *a = strstr(s, pat);
	return a ? atof(a + strlen(pat)) : NAN;
}

/* v is m * 10^e with m in {1, 2, 5} (to rounding). */
static int is_125(double v)
{
	if (!(v > 0))
		return 0;
	double m = v / pow(10, floor(log10(v) + 1e-9));
	return fabs(m - 1) < 1e-6 || fabs(m - 2) < 1e-6 || fabs(m - 5) < 1e-6;
}

/*
 * Round ticks: on a linear axis equally spaced by a 1-2-5 step, each a whole
 * multiple of it; on a log one each 1, 2 or 5 times a power of ten.
 */
static void check_ticks(const double *t, int n, int lg)
{
	CHECKF(n >= 2, "an axis with %d ticks", n);
	if (lg) {
		for (int i = 0; i < n; i++)
			CHECKF(is_125(t[i]), "log tick %.17g is not 1, 2 or 5 x 10^e", t[i]);
		return;
	}
	double step = n >= 2 ? t[1] - t[0] : 0;
	CHECKF(is_125(step), "linear step %.17g is not 1, 2 or 5 x 10^e", step);
	for (int i = 0; i < n; i++) {
		CHECKF(fabs(t[i] - t[0] - i * step) < 1e-9 * fmax(1, fabs(t[i])),
		       "ticks not evenly spaced at %d", i);
		CHECKF(fabs(t[i] / step - round(t[i] / step)) < 1e-6,
		       "tick %.17g is not a multiple of the step %g", t[i], step);
	}
}

/*
 * Every axis of the page has round ticks: on a linear axis equally spaced by a
 * 1-2-5 step, each a whole multiple of it; on a log one each tick 1, 2 or 5
 * times a power of ten. The labels are the values. Returns the number of log axes.
 */
static int check_axes(const char *html, int *linear)
{
	int logs = 0;
	*linear = 0;
	static const char *const kinds[] = { "class=\"yaxis\" data-scale=\"",
					     "class=\"xaxis\" data-scale=\"" };
	for (int k = 0; k < 2; k++)
		for (const char *p = html; (p = strstr(p, kinds[k])); p++) {
			int lg = !strncmp(p + strlen(kinds[k]), "log", 3);
			char *g = cut(p, kinds[k], "</g>");
			double t[64];
			int n = 0;
			if (!g)
				return -1;
			for (const char *q = g; (q = strstr(q, "class=\"tick\" data-v=\"")) && n < 64; q++) {
				t[n] = atof(q + 21);
				/* the label shows the value */
				const char *lab = strchr(q, '>');
				CHECKF(lab && fabs(atof(lab + 1) - t[n]) < 1e-9 * fmax(1, fabs(t[n])),
				       "tick %g labelled %.12s", t[n], lab ? lab + 1 : "?");
				n++;
			}
			check_ticks(t, n, lg);
			if (lg) {
				logs++;
				CHECK_STR_CONTAINS(g, ", log scale)</text>");
			} else {
				++*linear;
				CHECK(!strstr(g, "log scale"));
			}
			free(g);
		}
	return logs;
}

TEST(report_html_shows_evidence_error_bars_batches_axes_and_kernel_sizes)
{
	char db[600], spec[3][6][MTA_SPEC_MAX], *html = NULL, want[512];
	size_t len;
	snprintf(db, sizeof db, "%s/k.db", mt_tmpdir());
	make_kdb(db, spec);
	REQUIRE(mta_report_render(db, MTA_REPORT_HTML, &html, &len) == MTA_OK);
	CHECK(!strstr(html, "<script") && !strstr(html, " src=") && !strstr(html, "href="));

	/* the winners table: the evidence in words, and an n.s. mark unless shown faster */
	CHECK_EQ_INT(occurrences(html, "<tr class=\"winner\""), NKW);
	int ns = 0;
	for (size_t k = 0; k < NKW; k++) {
		const struct kwin *e = &KW[k];
		int sig = e->rounds && e->significant && e->hi < 1;
		char row[256];
		snprintf(row, sizeof row, "<td>%s</td><td>fwd</td><td>%lld</td><td>%lld</td><td>%lld"
			 "</td><td>%lld</td><td>%s</td>", KK[e->p], (long long)e->T, (long long)e->B,
			 (long long)e->T, (long long)e->B, spec[e->p][e->var]);
		char *tr = cut(html, row, "</tr>");
		REQUIRE(tr);
		if (sig)
			snprintf(want, sizeof want, "%.2fx faster than the default, 95%% CI %.2f-%.2f, "
				 "12 rounds", 1 / e->ratio, 1 / e->hi, 1 / e->lo);
		else if (e->rounds && e->var == 0)
			snprintf(want, sizeof want, "the default: no other variant was faster beyond "
				 "noise (12 rounds)");
		else if (e->rounds)
			snprintf(want, sizeof want, "within noise: %.2fx the default's speed, 95%% CI "
				 "%.2f-%.2f, 12 rounds", 1 / e->ratio, 1 / e->hi, 1 / e->lo);
		else
			snprintf(want, sizeof want, "no paired rounds: %.2fx by the recorded medians",
				 1 / FV[e->var]);
		CHECK_STR_CONTAINS(tr, want);
		CHECKF((strstr(tr, "n.s.") == NULL) == sig, "row %zu: n.s. mark %s", k, sig ? "on" : "missing");
		free(tr);
		/* the bar: its speed-up, whether significant, the interval as a whisker */
		double sp = e->rounds ? 1 / e->ratio : 1 / FV[e->var];
		snprintf(want, sizeof want, "class=\"bar\" data-speedup=\"%.2f\" data-significant=\"%d\"",
			 sp, sig);
		char *bar = cut(html, want, "</text>");
		CHECKF(bar != NULL, "no bar %s", want);
		if (bar) {
			CHECKF((strstr(bar, "class=\"ns-mark\"") == NULL) == sig, "bar %zu: n.s. mark %s", k,
			       sig ? "on" : "missing");
			if (e->rounds) {
				snprintf(want, sizeof want, "class=\"ci\" data-lo=\"%.2f\" data-hi=\"%.2f\"",
					 1 / e->hi, 1 / e->lo);
				CHECK_STR_CONTAINS(bar, want);
			}
		}
		free(bar);
		ns += !sig;
	}
	CHECK_EQ_INT(ns, 4);
	CHECK_EQ_INT(occurrences(html, "class=\"ns-mark\""), ns);
	CHECK_STR_CONTAINS(html, "n.s.: not shown to be faster");

	/* time against T: one series per problem and B, each point with its p20-p80 bar */
	char *tc = cut(html, "<svg class=\"time\"", "</svg>");
	REQUIRE(tc);
	CHECK_EQ_INT(occurrences(tc, "<g class=\"series\""), 6);
	for (const char *g = tc; (g = strstr(g, "<g class=\"series\"")); g++) {
		char *ser = cut(g, "<g class=\"series\"", "</g>");
		REQUIRE(ser);
		long long B = (long long)attr(ser, "data-B");
		char other[32];
		snprintf(other, sizeof other, "data-B=\"%lld\"", 3 - B);
		CHECK(B == 1 || B == 2);
		CHECKF(!strstr(ser, other), "a series of B=%lld holds a point of B=%lld", B, 3 - B);
		CHECK_EQ_INT(occurrences(ser, "class=\"point\""), 2);
		CHECK_EQ_INT(occurrences(ser, "class=\"errbar\""), 2);
		free(ser);
	}
	for (size_t k = 0; k < NKW; k++) {
		const struct kwin *e = &KW[k];
		double m = base_ms(e->p, e->T, e->B) * FV[e->var];
		char t0[32], t1[32], t2[32];
		mta_report_fmt_ms(m, t0, sizeof t0);
		mta_report_fmt_ms(m * 0.93, t1, sizeof t1);
		mta_report_fmt_ms(m * 1.12, t2, sizeof t2);
		snprintf(want, sizeof want, "class=\"errbar\" data-p20=\"%s\" data-p80=\"%s\"", t1, t2);
		CHECK_STR_CONTAINS(tc, want);
		snprintf(want, sizeof want, "class=\"point\" data-T=\"%lld\" data-B=\"%lld\" data-ms=\"%s\"",
			 (long long)e->T, (long long)e->B, t0);
		CHECK_STR_CONTAINS(tc, want);
	}
	/* times 180x apart: a log axis, said on its label */
	CHECK_STR_CONTAINS(tc, "class=\"yaxis\" data-scale=\"log\"");
	CHECK_STR_CONTAINS(tc, "time (ms, log scale)");
	free(tc);

	/* every axis has round ticks (the speed-up axis is linear) */
	int linear = 0, logs = check_axes(html, &linear);
	CHECK(logs >= 1 && linear >= 1);

	/* one colour scale: a legend per device, one colour per ratio in every map */
	CHECK_EQ_INT(occurrences(html, "<svg class=\"heat-legend\""), 1);
	CHECK_EQ_INT(occurrences(html, "class=\"heatmap\""), 3 * 2 * 2);
	char *leg = cut(html, "<svg class=\"heat-legend\"", "</svg>");
	REQUIRE(leg);
	double top = attr(leg, "data-top"), maxr = 0, lt[64];
	int nlt = 0;
	for (const char *q = leg; (q = strstr(q, "class=\"tick\" data-v=\"")) && nlt < 64; q++)
		lt[nlt++] = atof(q + 21);
	check_ticks(lt, nlt, strstr(leg, "(log scale;") != NULL);
	CHECK(nlt >= 2 && lt[0] == 1 && lt[nlt - 1] == top);
	free(leg);
	struct { double ratio; char fill[8]; } seen[64];
	int nseen = 0;
	for (const char *c = html; (c = strstr(c, "class=\"cell\"")); c++) {
		double r = attr(c, "data-ratio");
		const char *f = strstr(c, " fill=\"");
		REQUIRE(f);
		char fill[8];
		snprintf(fill, sizeof fill, "%.7s", f + 7);
		if (!(r > 0))
			continue; /* grey: none ran ok */
		maxr = fmax(maxr, r);
		int i = 0;
		while (i < nseen && fabs(seen[i].ratio - r) > 1e-3)
			i++;
		if (i == nseen && nseen < 64) {
			seen[nseen].ratio = r;
			memcpy(seen[nseen++].fill, fill, 8);
		} else if (i < nseen) {
			CHECKF(!strcmp(seen[i].fill, fill), "ratio %.3f drawn %s and %s", r, seen[i].fill,
			       fill);
		}
	}
	CHECK(nseen >= 5);
	CHECKF(fabs(maxr - 2.2 / 0.94) < 1e-3, "slowest ratio %g", maxr);
	CHECKF(top >= maxr && top < maxr + 1, "legend top %g for the slowest ratio %g", top, maxr);

	/* kernel sizes: the three problems compared per B, time at each T, sorted by (cq, ck) */
	char *ks = cut(html, "<h3>Time against kernel size</h3>", "<h3>Time by tile shape</h3>");
	REQUIRE(ks);
	CHECK_EQ_INT(occurrences(ks, "<div class=\"kernel-group\">"), 1);
	CHECK_STR_CONTAINS(ks, "h2kv1d8-pre2x3-both-f32 and 2 more problems that differ only in cq, ck");
	CHECK_EQ_INT(occurrences(ks, "<svg class=\"kernels\""), 2);
	for (int64_t B = 1; B <= 2; B++) {
		char tag[64];
		snprintf(tag, sizeof tag, "<svg class=\"kernels\" data-B=\"%lld\"", (long long)B);
		char *svg = cut(ks, tag, "</svg>");
		REQUIRE(svg);
		CHECK_EQ_INT(occurrences(svg, "class=\"kseries\""), 2); /* T = 32, 1024 */
		CHECK_EQ_INT(occurrences(svg, "class=\"kpoint\""), 6);
		CHECK_EQ_INT(occurrences(svg, "class=\"errbar\""), 6);
		snprintf(tag, sizeof tag, "data-B=\"%lld\"", (long long)(3 - B));
		CHECK(!strstr(svg, tag));
		free(svg);
		snprintf(tag, sizeof tag, "<table class=\"kernel-table\" data-B=\"%lld\"", (long long)B);
		char *tab = cut(ks, tag, "</table>");
		REQUIRE(tab);
		static const int order[3] = { 0, 1, 2 }; /* 2,3 < 2,11 < 4,3 */
		static const char *const lab[3] = { "2,3", "2,11", "4,3" };
		const char *at = tab;
		for (int j = 0; j < 3; j++) {
			int p = order[j];
			char m32[32], m1k[32];
			/* the winner's time where one was decided (the fastest here, FV[1]), else the
			 * fastest variant's: KK[1] at T=1024 B=1 kept the default, timed FV[0] */
			double f32 = FV[1], f1k = p == 1 && B == 1 ? FV[0] : FV[1];
			mta_report_fmt_ms(base_ms(p, 32, B) * f32, m32, sizeof m32);
			mta_report_fmt_ms(base_ms(p, 1024, B) * f1k, m1k, sizeof m1k);
			snprintf(want, sizeof want, "<tr><td>%s</td><td>%s</td><td class=\"ms\" "
				 "data-T=\"32\">%s</td><td class=\"ms\" data-T=\"1024\">%s</td></tr>",
				 lab[j], KK[p], m32, m1k);
			const char *r = strstr(at, want);
			CHECKF(r != NULL, "B=%lld: no row %s in %s", (long long)B, want, tab);
			if (r)
				at = r; /* in this order */
		}
		free(tab);
	}
	free(ks);
	free(html);
}

/* Without problems that differ only in kernel sizes, the section says so. */
TEST(report_kernel_section_needs_problems_differing_only_in_kernel_sizes)
{
	char db[600], def[MTA_SPEC_MAX], *html = NULL;
	size_t len;
	snprintf(db, sizeof db, "%s/r.db", mt_tmpdir());
	make_db(db, def, sizeof def);
	REQUIRE(mta_report_render(db, MTA_REPORT_HTML, &html, &len) == MTA_OK);
	CHECK_EQ_INT(occurrences(html, "<div class=\"kernel-group\">"), 0);
	CHECK_STR_CONTAINS(html, "No problems that differ only in kernel sizes");
	free(html);
}

/* Split one CSV record (RFC 4180) at *s into fields; advances *s past its line end. */
static int csv_record(const char **s, char f[40][160])
{
	int n = 0;
	const char *p = *s;
	for (;;) {
		size_t k = 0;
		if (*p == '"') {
			for (p++; *p && !(p[0] == '"' && p[1] != '"'); p++) {
				if (*p == '"')
					p++;
				if (k < 159)
					f[n][k++] = *p;
			}
			p++;
		} else {
			for (; *p && *p != ',' && *p != '\r'; p++)
				if (k < 159)
					f[n][k++] = *p;
		}
		f[n][k] = 0;
		if (n < 39)
			n++;
		if (*p == ',') {
			p++;
			continue;
		}
		if (p[0] == '\r' && p[1] == '\n')
			p += 2;
		break;
	}
	*s = p;
	return n;
}

TEST(report_csv_has_a_header_and_the_problems_parts_as_columns)
{
	char db[600], spec[3][6][MTA_SPEC_MAX], *csv = NULL, f[40][160];
	size_t len;
	snprintf(db, sizeof db, "%s/k.db", mt_tmpdir());
	make_kdb(db, spec);
	REQUIRE(mta_report_render(db, MTA_REPORT_CSV, &csv, &len) == MTA_OK);
	const char *s = csv;
	int nh = csv_record(&s, f);
	static const char *const need[] = { "device_id", "backend", "device", "op", "problem", "H",
		"Hkv", "D", "cq", "ck", "cq2", "ck2", "dtype", "spec", "T", "B", "status", "median_ms",
		"p20_ms", "p80_ms", "min_ms", "runs" };
	int col[sizeof need / sizeof need[0]];
	char head[40][160];
	memcpy(head, f, sizeof head);
	for (size_t i = 0; i < sizeof need / sizeof need[0]; i++) {
		col[i] = -1;
		for (int c = 0; c < nh; c++)
			if (!strcmp(head[c], need[i]))
				col[i] = c;
		CHECKF(col[i] >= 0, "no column %s in the header", need[i]);
	}
	REQUIRE(col[21] >= 0);
	int rows = 0;
	while (*s) {
		int n = csv_record(&s, f);
		CHECK_EQ_INT(n, nh);
		struct mta_problem p;
		REQUIRE(mta_problem_from_key(f[col[4]], &p) == MTA_OK);
		CHECK(!strcmp(f[col[3]], "fwd"));
		CHECK_EQ_INT(atoi(f[col[5]]), p.H);
		CHECK_EQ_INT(atoi(f[col[6]]), p.Hkv);
		CHECK_EQ_INT(atoi(f[col[7]]), p.D);
		CHECK_EQ_INT(atoi(f[col[8]]), p.cq);
		CHECK_EQ_INT(atoi(f[col[9]]), p.ck);
		CHECK_EQ_INT(atoi(f[col[10]]), p.cq2);
		CHECK_EQ_INT(atoi(f[col[11]]), p.ck2);
		CHECK(!strcmp(f[col[12]], "f32"));
		int pi = -1, vi = -1;
		for (int k = 0; k < 3; k++)
			for (int v = 0; v < 6; v++)
				if (!strcmp(f[col[4]], KK[k]) && !strcmp(f[col[13]], spec[k][v]))
					pi = k, vi = v;
		REQUIRE(pi >= 0);
		long long T = atoll(f[col[14]]), B = atoll(f[col[15]]);
		CHECK((T == 32 || T == 1024) && (B == 1 || B == 2));
		if (!strcmp(f[col[16]], "ok")) {
			double m = base_ms(pi, T, B) * FV[vi];
			CHECKF(fabs(atof(f[col[17]]) / m - 1) < 1e-12, "median %s, expected %.17g",
			       f[col[17]], m);
			CHECK(fabs(atof(f[col[18]]) / (m * 0.93) - 1) < 1e-12);
			CHECK(fabs(atof(f[col[19]]) / (m * 1.12) - 1) < 1e-12);
		} else {
			CHECK(!strcmp(f[col[16]], "verify_failed") && !f[col[17]][0]);
		}
		rows++;
	}
	CHECK_EQ_INT(rows, 3 * 6 * 2 * 2);
	free(csv);
}

/* The axes themselves: round ticks around the data, log only beyond a decade. */
TEST(report_axes_take_round_ticks_and_a_log_scale_beyond_a_decade)
{
	static const struct {
		double lo, hi;
		int allow_log, from_zero, log;
		double first, last, step; /* step 0: log */
	} c[] = {
		{ 0.8137, 1.2911, 1, 0, 0, 0.8, 1.3, 0.1 },
		{ 0, 1.18, 0, 1, 0, 0, 1.5, 0.5 },
		{ 0.5, 4.9, 1, 0, 0, 0, 5, 1 },         /* under a decade: linear */
		{ 0.0123, 2.71, 1, 0, 1, 0.01, 5, 0 },  /* 1-2-5 per decade */
		{ 0.0123, 2.71, 0, 0, 0, 0, 3, 1 },     /* log not allowed */
		{ 3e-4, 420, 1, 0, 1, 1e-4, 1000, 0 },  /* decades only */
		{ 7, 7, 1, 0, 0, 6, 8, 0.5 },           /* one value, in the middle */
	};
	for (size_t i = 0; i < sizeof c / sizeof c[0]; i++) {
		struct raxis a;
		raxis_make(&a, c[i].lo, c[i].hi, c[i].allow_log, c[i].from_zero);
		CHECKF(a.log == c[i].log, "case %zu: log %d", i, a.log);
		CHECKF(fabs(a.lo - c[i].first) < 1e-12 && fabs(a.hi - c[i].last) < 1e-9,
		       "case %zu: axis %.17g..%.17g, expected %g..%g", i, a.lo, a.hi, c[i].first,
		       c[i].last);
		CHECK(a.nt >= 2 && a.tick[0] == a.lo && a.tick[a.nt - 1] == a.hi);
		CHECK(a.lo <= c[i].lo && a.hi >= c[i].hi);
		for (int k = 0; k < a.nt; k++) {
			char lab[32];
			raxis_label(a.tick[k], lab, sizeof lab);
			CHECKF(strlen(lab) <= 6, "case %zu: label %s", i, lab);
			if (c[i].step > 0)
				CHECKF(fabs(a.tick[k] - (c[i].first + k * c[i].step)) < 1e-9,
				       "case %zu: tick %d = %.17g", i, k, a.tick[k]);
			else
				CHECKF(is_125(a.tick[k]) && (c[i].lo > 1e-3 || fabs(log10(a.tick[k]) -
				       round(log10(a.tick[k]))) < 1e-9), "case %zu: tick %g", i, a.tick[k]);
		}
		CHECK(raxis_frac(&a, a.lo) == 0 && fabs(raxis_frac(&a, a.hi) - 1) < 1e-12);
	}
}
