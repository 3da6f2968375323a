/*
 * report.h: what a tuning database holds, for people: one static HTML file
 * with inline SVG charts (no scripts), or the raw results as CSV or JSON.
 *
 * The HTML report has, per device: a table of the winners with the
 * evidence recorded for each (the paired-round ratio to the default variant,
 * its 95% interval and rounds; "n.s." where it is not shown to be faster), a
 * chart of those speed-ups with their intervals, each problem's winning time
 * against T (one line per problem and batch size, p20-p80 bars), time
 * against kernel size for problems that differ only in cq, ck, cq2, ck2, and
 * per (problem, T, B) a heat map of the best time of the variants of each
 * tile shape (bq rows x bk columns) on a colour scale all maps share. Axes
 * have round (1-2-5) ticks and are logarithmic, and say so, where the data
 * span more than a decade. Every time it shows is written by
 * mta_report_fmt_ms; every text from the database is HTML-escaped.
 *
 * The CSV has a header row and one row per result, the problem's parts (op,
 * H, Hkv, D, cq, ck, cq2, ck2, dtype) as columns beside its key.
 */
#ifndef MTA_REPORT_H
#define MTA_REPORT_H

#include <stddef.h>

enum { MTA_REPORT_HTML = 0, MTA_REPORT_CSV = 1, MTA_REPORT_JSON = 2 };

/* "html", "csv", "json" -> MTA_REPORT_*; MTA_EINVAL naming the choices. */
int mta_report_format_parse(const char *s, int *format);

/*
 * Render the database at db_path (opened read-only; it must exist) in
 * format. *out is malloc'd and NUL-terminated, *len its length.
 */
int mta_report_render(const char *db_path, int format, char **out, size_t *len);
/* The same with only the results and winners of operation op ("fwd", "bwd"; NULL: all). */
int mta_report_render_op(const char *db_path, int format, const char *op, char **out,
			 size_t *len);

/* How the HTML report writes a time in ms: "%.4g" ("-" when not finite). */
void mta_report_fmt_ms(double ms, char *buf, size_t n);

#endif
