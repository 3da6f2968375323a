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
		}
	}
	REQUIRE(mta_db_commit(db) == MTA_OK);
	REQUIRE(mta_db_winners_recompute(db) == MTA_OK);
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
	snprintf(tag, sizeof tag, "data-T=\"%lld\" data-B=\"1\"", T);
	const char *a = strstr(sec, tag), *b = a ? strstr(a, "</svg>") : NULL;
	REQUIRE(a && b);
	char *map = strndup(a, (size_t)(b - a));
	int cells = 0, nq = 0, nk = 0;
	/* every tile shape any CPU space has offered; the map's axes are the bq and bk
	 * values with a result of any status, and each cell holds the best ok time */
	static const int bqs[] = { 8, 16, 32, 64, 96, 128 }, bks[] = { 32, 64, 128, 256, 512 };
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
		snprintf(row, sizeof row, "<td>%lld</td><td>%lld</td><td>%lld</td><td>%s</td>"
			 "<td class=\"ms\">%s</td><td class=\"ms\">%s</td><td>%.2fx</td></tr>", bucket, T,
			 B, spec, t1, t2, dms / ms);
		CHECK_STR_CONTAINS(dev == 1 ? s1 : s2, row);
		snprintf(row, sizeof row, "class=\"bar\" data-speedup=\"%.2f\"", dms / ms);
		CHECK_STR_CONTAINS(dev == 1 ? s1 : s2, row);
		snprintf(row, sizeof row, "class=\"point\" data-T=\"%lld\" data-ms=\"%s\"", T, t1);
		CHECK_STR_CONTAINS(dev == 1 ? s1 : s2, row);
	}
	CHECK_EQ_INT(nw, 3);
	CHECK_EQ_INT(occurrences(html, "<tr class=\"winner\">"), nw);
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
	static const char head[] = "device_id,backend,device,problem,spec,T,B,status,median_ms,";
	CHECK(!strncmp(csv, head, sizeof head - 1));
	CHECK_STR_CONTAINS(csv, ",verify_failed,,,,,3,"); /* unmeasured times are empty */
	CHECK_STR_CONTAINS(csv, "\"relative L2 error 0.5 \"\"too big\"\", see <log>\""); /* RFC 4180 */
	CHECK_STR_CONTAINS(csv, ",\"cpu:v1,bq=");
	REQUIRE(mta_report_render(db, MTA_REPORT_JSON, &json, &len) == MTA_OK);
	CHECK_EQ_INT(occurrences(json, "\"spec\":"), nres + 3);
	CHECK_STR_CONTAINS(json, "\"median_ms\": null");
	CHECK_STR_CONTAINS(json, "\\\"too big\\\"");
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
