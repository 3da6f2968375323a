/* cmd_report.c: `mtatune report`: the database as an HTML page, CSV or JSON. */
#include "cli.h"
#include "db.h"
#include "error.h"
#include "report.h"

#include <errno.h>
#include <getopt.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static const char usage_text[] =
	"usage: mtatune report [--db PATH] [--out FILE] [--format html|csv|json]\n"
	"\n"
	"html (default): one static page, inline SVG, no scripts: per device, the\n"
	"winners with their speed-up over the default variant, a bar chart of those\n"
	"speed-ups, each problem's winning time against T, and per problem and size a\n"
	"heat map of the best time by tile shape (bq x bk).\n"
	"csv, json: every result (status, times, error against the reference, ...);\n"
	"json also lists the devices and winners.\n"
	"\n"
	"  --db PATH         database (default $MTATUNE_DB, else ~/.cache/mtatune/mta.db)\n"
	"  --out FILE        write FILE (through a temporary file renamed into place);\n"
	"                    default: standard output\n"
	"  --format F        html, csv or json (default html)\n"
	"  -h, --help        show this text\n";

/* Write all of buf to path through path.tmp, renamed into place. */
static int write_file(const char *path, const char *buf, size_t n)
{
	char tmp[4096];
	snprintf(tmp, sizeof tmp, "%s.tmp%d", path, (int)getpid());
	FILE *f = fopen(tmp, "wb");
	if (!f)
		return -1;
	int bad = fwrite(buf, 1, n, f) != n;
	bad |= fclose(f) != 0;
	if (bad || rename(tmp, path)) {
		int e = errno;
		unlink(tmp);
		errno = e;
		return -1;
	}
	return 0;
}

int cmd_report(int argc, char **argv)
{
	enum { O_DB = 256, O_OUT, O_FORMAT };
	static const struct option opts[] = {
		{ "db", required_argument, NULL, O_DB },
		{ "out", required_argument, NULL, O_OUT },
		{ "format", required_argument, NULL, O_FORMAT },
		{ "help", no_argument, NULL, 'h' },
		{ 0 },
	};
	const char *db_arg = NULL, *out = NULL;
	char db_path[1024], *text = NULL;
	size_t len;
	int c, rc, format = MTA_REPORT_HTML;

	opterr = 0;
	while ((c = getopt_long(argc, argv, ":h", opts, NULL)) != -1) {
		switch (c) {
		case 'h': fputs(usage_text, stdout); return CLI_OK;
		case O_DB: db_arg = optarg; break;
		case O_OUT: out = optarg; break;
		case O_FORMAT:
			if (mta_report_format_parse(optarg, &format))
				return cli_fail("report", CLI_USAGE, "--format: %s", mta_last_error());
			break;
		default: return cli_bad_option("report", c, argv);
		}
	}
	if (optind < argc)
		return cli_fail("report", CLI_USAGE, "unexpected argument '%s' (see 'mtatune report "
				"--help')", argv[optind]);
	if (db_arg)
		snprintf(db_path, sizeof db_path, "%s", db_arg);
	else if (mta_db_default_path(db_path, sizeof db_path))
		return cli_fail("report", CLI_RUNTIME, "%s", mta_last_error());
	if ((rc = mta_report_render(db_path, format, &text, &len)))
		return cli_fail("report", rc == MTA_EDB || rc == MTA_ENOTFOUND || rc == MTA_EIO ?
				CLI_DATA : CLI_RUNTIME, "%s", mta_last_error());
	if (out ? write_file(out, text, len) : fwrite(text, 1, len, stdout) != len) {
		int e = errno;
		free(text);
		return cli_fail("report", CLI_RUNTIME, "cannot write %s: %s", out ? out : "stdout",
				strerror(e));
	}
	free(text);
	if (out)
		fprintf(stderr, "wrote %s\n", out);
	return CLI_OK;
}
