/* cmd_report.c: `mtatune report`: the database as an HTML page, CSV or JSON. */
#include "tuner/cli/cli.h"
#include "db/db.h"
#include "runtime/core/error.h"
#include "tuner/report/report.h"
#include "tuner/io/outfile.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>

enum { O_DB = 256, O_OUT, O_FORMAT, O_OP };

static const struct cli_opt opts[] = {
	{ "db", O_DB, "PATH", "database (default $MTATUNE_DB, else ~/.cache/mtatune/mta.db)" },
	{ "out", O_OUT, "FILE", "write FILE (through a temporary file renamed into place);\n"
				"default: standard output" },
	{ "format", O_FORMAT, "F", "html, csv or json (default html)" },
	{ "op", O_OP, "OP", "only the results and winners of fwd (the forward), bwd (the\n"
			     "backward) or decode (default: all, each row naming its op)" },
	{ "help", 'h', NULL, "show this text" },
	{ 0 },
};

static const struct cli_cmd cmd = {
	"report",
	"mtatune report [--db PATH] [--out FILE] [--format html|csv|json]",
	"html (default): one static page, inline SVG, no scripts: per device, the\n"
	"winners with the evidence of their speed-up over the default variant (paired\n"
	"rounds, 95% interval; n.s. marks one within noise), a chart of those\n"
	"speed-ups, each problem's winning time against T (one line per batch size,\n"
	"p20-p80 bars), time against kernel size for problems that differ only in\n"
	"cq, ck, cq2, ck2, and per problem and size a heat map of the best time by\n"
	"tile shape (bq x bk), all maps on one colour scale.\n"
	"csv: a header row, then every result with its problem's parts (op, H, Hkv,\n"
	"D, cq, ck, cq2, ck2 (0: no such kernel), dtype), T, B, status, times, error\n"
	"against the reference; json: the same results, the devices and the winners\n"
	"with their evidence.\n",
	opts, NULL,
};

/* Write all of buf to path through a temporary renamed into place (outfile.h). */
static int write_file(const char *path, const char *buf, size_t n)
{
	struct mta_outfile o;
	int rc = mta_outfile_open(&o, path);
	if (rc)
		return rc;
	mta_outfile_write(&o, buf, n);
	return mta_outfile_commit(&o);
}

int cmd_report(int argc, char **argv)
{
	const char *db_arg = NULL, *out = NULL, *op = NULL;
	char db_path[1024], *text = NULL;
	size_t len;
	int c, rc, format = MTA_REPORT_HTML;
	struct cli_getopt g;

	cli_getopt_init(&g, &cmd);
	while ((c = cli_next(&g, argc, argv)) != -1) {
		switch (c) {
		case 'h': cli_help(stdout, &cmd); return CLI_OK;
		case O_DB: db_arg = optarg; break;
		case O_OUT: out = optarg; break;
		case O_OP:
			if (strcmp(optarg, "fwd") && strcmp(optarg, "bwd") && strcmp(optarg, "decode"))
				return cli_fail("report", CLI_USAGE, "--op: unknown operation '%s' "
						"(expected fwd, bwd or decode)", optarg);
			op = optarg;
			break;
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
		return cli_fail("report", CLI_USAGE, "%s", mta_last_error());
	if ((rc = mta_report_render_op(db_path, format, op, &text, &len)))
		return cli_fail("report", cli_db_status(rc, 1), "%s", mta_last_error());
	if (out && write_file(out, text, len)) {
		free(text);
		return cli_fail("report", CLI_RUNTIME, "cannot write %s", mta_last_error());
	}
	if (!out && fwrite(text, 1, len, stdout) != len) {
		int e = errno;
		free(text);
		return cli_fail("report", CLI_RUNTIME, "cannot write stdout: %s", strerror(e));
	}
	free(text);
	if (out)
		fprintf(stderr, "wrote %s\n", out);
	return CLI_OK;
}
