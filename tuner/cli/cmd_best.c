/*
 * cmd_best.c: `mtatune best`: the recorded winners, or, for one problem and
 * sequence length, the variant the runtime would run and why.
 */
#include "tuner/cli/cli.h"
#include "db/db.h"
#include "runtime/backend.h"
#include "runtime/core/error.h"
#include "runtime/core/strbuf.h"
#include "gen/variant.h"

#include <string.h>

enum { O_PROBLEM = 256, O_SEQ, O_DB, O_BACKEND, O_DEVICE };

static const struct cli_opt opts[] = {
	{ "problem", O_PROBLEM, "KEY", "only this problem" },
	{ "seq", O_SEQ, "T", "the sequence length to pick for (needs --problem)" },
	{ "backend", O_BACKEND, "NAME", "cpu (default) or cuda: the runtime whose pick --seq shows" },
	{ "device", O_DEVICE, "N", "its device (default $MTATUNE_CUDA_DEVICE, else 0)" },
	{ "db", O_DB, "PATH", "database (default $MTATUNE_DB, else ~/.cache/mtatune/mta.db)" },
	{ "help", 'h', NULL, "show this text" },
	{ 0 },
};

static const struct cli_cmd cmd = {
	"best",
	"mtatune best [--db PATH] [--problem KEY [--seq T]]",
	"Without --seq: print every recorded winner (device, problem, T bucket, variant,\n"
	"time), or only those of --problem. With --problem and --seq: print the variant\n"
	"the runtime picks on this machine for that T (exact bucket, nearest bucket, or\n"
	"the default variant when nothing was tuned).\n",
	opts, NULL,
};

struct names {
	struct mta_db *db;
	int rows;
};

static int print_winner(void *ctx, const struct mta_db_winner *w)
{
	struct names *n = ctx;
	if (!n->rows++)
		printf("%-6s %-60s %8s %8s %10s  %s\n", "device", "problem", "bucket", "T", "ms",
		       "variant");
	char key[400], spec[400]; /* the database's text, never raw to a terminal */
	printf("%-6lld %-60s %8lld %8lld %10.3f  %s\n", (long long)w->device_id,
	       mta_escape_str(w->problem_key, key, sizeof key), (long long)w->t_bucket,
	       (long long)w->T, w->time_ms, mta_escape_str(w->spec, spec, sizeof spec));
	return 0;
}

int cmd_best(int argc, char **argv)
{
	const char *key = NULL, *db_path = NULL, *backend = "cpu";
	const struct mta_backend *be;
	struct cli_getopt g;
	long T = 0, num;
	int c, rc, device = cli_default_device();

	cli_getopt_init(&g, &cmd);
	while ((c = cli_next(&g, argc, argv)) != -1) {
		switch (c) {
		case 'h': cli_help(stdout, &cmd); return CLI_OK;
		case O_PROBLEM: key = optarg; break;
		case O_DB: db_path = optarg; break;
		case O_BACKEND:
			if (mta_backend_find(optarg, &be))
				return cli_fail("best", CLI_USAGE, "--backend: %s", mta_last_error());
			backend = be->name;
			break;
		case O_DEVICE:
			if (cli_parse_long(optarg, 0, 4095, &num))
				return cli_fail("best", CLI_USAGE, "--device '%s' is not an integer in "
						"0..4095", optarg);
			device = (int)num;
			break;
		case O_SEQ:
			if (cli_parse_long(optarg, 1, 1L << 30, &T))
				return cli_fail("best", CLI_USAGE, "--seq '%s' is not a positive integer",
						optarg);
			break;
		default: return cli_bad_option("best", c, argv);
		}
	}
	if (optind < argc)
		return cli_fail("best", CLI_USAGE, "unexpected argument '%s'", argv[optind]);
	struct mta_problem p;
	char canon[MTA_KEY_MAX];
	if (key) {
		if (mta_problem_from_key(key, &p) || mta_problem_key(&p, canon, sizeof canon))
			return cli_fail("best", CLI_USAGE, "--problem: %s", mta_last_error());
		key = canon;
	}
	if (T) {
		if (!key)
			return cli_fail("best", CLI_USAGE, "--seq needs --problem");
		mta_context *ctx;
		char spec[MTA_SPEC_MAX];
		int source;
		static const char *from[] = { "default (nothing tuned for this problem here)",
					      "nearest tuned T bucket", "tuned for this T bucket" };
		if ((rc = mta_context_create(&ctx, db_path, backend, device)))
			return cli_fail("best", cli_db_status(rc, 1), "%s", mta_last_error());
		rc = mta_context_pick(ctx, &p, T, spec, sizeof spec, &source);
		mta_context_free(ctx);
		if (rc)
			return cli_fail("best", cli_db_status(rc, 1), "%s", mta_last_error());
		printf("%s\t%s\n", spec, from[source]);
		return CLI_OK;
	}
	struct mta_db *db;
	if ((rc = mta_db_open(db_path, MTA_DB_READONLY, &db)))
		return cli_fail("best", cli_db_status(rc, 1), "%s", mta_last_error());
	struct names n = { db, 0 };
	rc = mta_db_list_winners(db, 0, key, print_winner, &n);
	mta_db_close(db);
	if (rc)
		return cli_fail("best", cli_db_status(rc, 1), "%s", mta_last_error());
	if (!n.rows)
		printf("no winners recorded%s%s\n", key ? " for " : "", key ? key : "");
	return CLI_OK;
}
