/* cmd_report.c: `mtatune report`: the database as an HTML page, CSV or JSON. */
#include "tuner/cli/cli.h"
#include "db/db.h"
#include "runtime/core/error.h"
#include "tuner/report/report.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

enum { O_DB = 256, O_OUT, O_FORMAT };

static const struct cli_opt opts[] = {
	{ "db", O_DB, "PATH", "database (default $MTATUNE_DB, else ~/.cache/mtatune/mta.db)" },
	{ "out", O_OUT, "FILE", "write FILE (through a temporary file renamed into place);\n"
				"default: standard output" },
	{ "format", O_FORMAT, "F", "html, csv or json (default html)" },
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

/*
 * Write all of buf to path through path.tmpPID, created new (never through a
 * file or link already there) and renamed into place.
 */
static int write_file(const char *path, const char *buf, size_t n)
{
	char tmp[4096];
	snprintf(tmp, sizeof tmp, "%s.tmp%d", path, (int)getpid());
	int fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0644);
	if (fd < 0)
		return -1;
	FILE *f = fdopen(fd, "wb");
	if (!f) {
		int e = errno;
		close(fd);
		unlink(tmp);
		errno = e;
		return -1;
	}
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
	const char *db_arg = NULL, *out = NULL;
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
