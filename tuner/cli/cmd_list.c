/* cmd_list.c: `mtatune list`: what the database holds. */
#include "tuner/cli/cli.h"
#include "db/db.h"
#include "runtime/core/error.h"
#include "runtime/core/strbuf.h"

#include <math.h>
#include <string.h>

enum { O_PROBLEM = 256, O_DB };

static const struct cli_opt opts[] = {
	{ "problem", O_PROBLEM, "KEY", "results: only this problem" },
	{ "db", O_DB, "PATH", "database (default $MTATUNE_DB, else ~/.cache/mtatune/mta.db)" },
	{ "help", 'h', NULL, "show this text" },
	{ 0 },
};

static const struct cli_cmd cmd = {
	"list",
	"mtatune list [devices|problems|results] [--problem KEY] [--db PATH]",
	"List the devices, the problems (default) with their counts of variants,\n"
	"results and winners, or every result (its operation, fwd, bwd or decode, status,\n"
	"times, error against the reference, and the error text of failures).\n",
	opts, NULL,
};

/* The database's text is shown escaped (strbuf.h): never raw to a terminal. */
#define ESC(s, buf) mta_escape_str((s), (buf), sizeof (buf))

static int dev_row(void *ctx, const struct mta_db_device *d)
{
	char b[6][400];
	(void)ctx;
	printf("%-4lld %-5s %-40s %-16s cores=%d compiler=%s%s%s%s%s\n", (long long)d->id,
	       ESC(d->backend, b[0]), ESC(d->name, b[1]), ESC(d->arch, b[2]), d->cores,
	       ESC(d->compiler, b[3]), d->driver[0] ? " driver=" : "", ESC(d->driver, b[4]),
	       d->nvrtc[0] ? " nvrtc=" : "", ESC(d->nvrtc, b[5]));
	return 0;
}

static int prob_row(void *ctx, const struct mta_db_problem_info *p)
{
	char key[400];
	(void)ctx;
	printf("%-60s variants=%lld results=%lld winners=%lld\n", ESC(p->key, key),
	       (long long)p->variants, (long long)p->results, (long long)p->winners);
	return 0;
}

static int res_row(void *ctx, const struct mta_db_result *r)
{
	char key[400], spec[400], err[2048];
	(void)ctx;
	printf("%-4lld %-3s %-52s %6lld %3lld %-14s %10.3f %10.2e  %s%s%s\n",
	       (long long)r->device_id, r->op ? r->op : "fwd", ESC(r->problem_key, key),
	       (long long)r->T, (long long)r->B,
	       mta_result_status_name(r->status), isfinite(r->median_ms) ? r->median_ms : -1.0,
	       isfinite(r->rel_err) ? r->rel_err : -1.0, ESC(r->spec, spec),
	       r->error[0] ? "  " : "", ESC(r->error, err));
	return 0;
}

int cmd_list(int argc, char **argv)
{
	const char *key = NULL, *db_path = NULL, *what = "problems";
	struct cli_getopt g;
	int c, rc;

	cli_getopt_init(&g, &cmd);
	while ((c = cli_next(&g, argc, argv)) != -1) {
		switch (c) {
		case 'h': cli_help(stdout, &cmd); return CLI_OK;
		case O_PROBLEM: key = optarg; break;
		case O_DB: db_path = optarg; break;
		default: return cli_bad_option("list", c, argv);
		}
	}
	if (optind < argc)
		what = argv[optind++];
	if (optind < argc)
		return cli_fail("list", CLI_USAGE, "unexpected argument '%s'", argv[optind]);
	if (strcmp(what, "devices") && strcmp(what, "problems") && strcmp(what, "results"))
		return cli_fail("list", CLI_USAGE, "unknown listing '%s' (expected devices, "
				"problems or results)", what);
	struct mta_problem p;
	char canon[MTA_KEY_MAX];
	if (key) {
		if (mta_problem_from_key(key, &p) || mta_problem_key(&p, canon, sizeof canon))
			return cli_fail("list", CLI_USAGE, "--problem: %s", mta_last_error());
		key = canon;
	}
	struct mta_db *db;
	if ((rc = mta_db_open(db_path, MTA_DB_READONLY, &db)))
		return cli_fail("list", cli_db_status(rc, 1), "%s",
				mta_last_error());
	if (!strcmp(what, "devices"))
		rc = mta_db_list_devices(db, dev_row, NULL);
	else if (!strcmp(what, "problems"))
		rc = mta_db_list_problems(db, prob_row, NULL);
	else
		rc = mta_db_list_results(db, 0, key, res_row, NULL);
	mta_db_close(db);
	return rc ? cli_fail("list", cli_db_status(rc, 1), "%s", mta_last_error()) : CLI_OK;
}
