/*
 * cmd_best.c: `mtatune best`: the recorded winners with the evidence behind
 * each, or, for one problem at (B, T), the variant the runtime would run and
 * why (which buckets, whose tuning: the rung of the pick policy).
 */
#include "tuner/cli/cli.h"
#include "db/db.h"
#include "runtime/backend.h"
#include "runtime/core/error.h"
#include "runtime/core/strbuf.h"
#include "gen/variant.h"

#include <math.h>
#include <string.h>

enum { O_PROBLEM = 256, O_SEQ, O_BATCH, O_DB, O_BACKEND, O_DEVICE, O_FORMAT, O_OP };

static const struct cli_opt opts[] = {
	{ "problem", O_PROBLEM, "KEY", "only this problem" },
	{ "seq", O_SEQ, "T", "the sequence length to pick for (needs --problem)" },
	{ "batch", O_BATCH, "B", "with --seq: the batch size to pick for (default 1)" },
	{ "op", O_OP, "OP", "fwd, bwd or decode: only that operation's winners; with --seq,\n"
			     "the pick of mta_forward (fwd, the default), of mta_backward\n"
			     "(bwd) or of a decode cache at length T (decode)" },
	{ "backend", O_BACKEND, "NAME", "cpu (default) or cuda: the runtime whose pick --seq shows" },
	{ "device", O_DEVICE, "N", "its device (default $MTATUNE_CUDA_DEVICE, else 0)" },
	{ "format", O_FORMAT, "F", "text (default) or csv: a header row, then one row per winner" },
	{ "db", O_DB, "PATH", "database (default $MTATUNE_DB, else ~/.cache/mtatune/mta.db)" },
	{ "help", 'h', NULL, "show this text" },
	{ 0 },
};

static const struct cli_cmd cmd = {
	"best",
	"mtatune best [--db PATH] [--problem KEY [--seq T [--batch B]]] [--format csv]",
	"Without --seq: print every recorded winner (device, operation, problem, T and\n"
	"B buckets, variant, time) with its speed-up over the default variant, the 95%\n"
	"interval and the paired rounds behind it, or only those of --problem. With\n"
	"--problem and --seq: print the variant the runtime picks on this machine for\n"
	"that T and B, and why: the buckets (exact or nearest), and whose tuning (this\n"
	"device, the same device under other versions, the same architecture), or the\n"
	"default variant when nothing applies.\n",
	opts, NULL,
};

struct listing {
	int csv, rows;
	const char *op; /* only winners of this op; NULL: all */
};

/* "1.06 (1.04-1.08)" of a winner's speed-up, or what there is of it. */
static void evidence(const struct mta_db_winner *w, char *buf, size_t n)
{
	if (!w->rounds)
		snprintf(buf, n, "-");
	else
		snprintf(buf, n, "%.2fx (%.2f-%.2f)%s", 1 / w->ratio, 1 / w->ci_high, 1 / w->ci_low,
			 w->significant ? "" : " default stays: within noise");
}

static void csv_num(double x, const char *sep)
{
	if (isfinite(x))
		printf("%.6g%s", x, sep);
	else
		printf("%s", sep);
}

/* s as one CSV field (RFC 4180): quoted when it holds a comma, quote or line
 * break, as variant specs do ("cpu:v1,bq=64,..."), with quotes doubled. */
static void csv_str(const char *s, const char *sep)
{
	if (!strpbrk(s, ",\"\r\n")) {
		printf("%s%s", s, sep);
		return;
	}
	putchar('"');
	for (; *s; s++) {
		if (*s == '"')
			putchar('"');
		putchar(*s);
	}
	printf("\"%s", sep);
}

static int print_winner(void *ctx, const struct mta_db_winner *w)
{
	struct listing *l = ctx;
	char key[400], spec[400]; /* the database's text, never raw to a terminal */
	if (l->op && strcmp(w->op, l->op))
		return 0;
	mta_escape_str(w->problem_key, key, sizeof key);
	mta_escape_str(w->spec, spec, sizeof spec);
	if (l->csv) {
		if (!l->rows++)
			printf("device,op,problem,seq,batch,variant,ms,speedup,ci_low,ci_high,rounds,"
			       "significant\n");
		printf("%lld,", (long long)w->device_id);
		csv_str(w->op, ",");
		csv_str(key, ",");
		printf("%lld,%lld,", (long long)w->t_bucket, (long long)w->b_bucket);
		csv_str(spec, ",");
		csv_num(w->time_ms, ",");
		csv_num(w->rounds ? 1 / w->ratio : NAN, ",");
		csv_num(w->rounds ? 1 / w->ci_high : NAN, ",");
		csv_num(w->rounds ? 1 / w->ci_low : NAN, ",");
		printf("%d,%d\n", w->rounds, w->significant);
		return 0;
	}
	char ev[80];
	evidence(w, ev, sizeof ev);
	if (!l->rows++)
		printf("%-6s %-4s %-56s %6s %5s %10s %6s  %-28s %s\n", "device", "op", "problem",
		       "T<=", "B<=", "ms", "rounds", "speed-up (95% CI)", "variant");
	printf("%-6lld %-4s %-56s %6lld %5lld %10.3f %6d  %-28s %s\n", (long long)w->device_id,
	       w->op, key, (long long)w->t_bucket, (long long)w->b_bucket, w->time_ms,
	       w->rounds, ev, spec);
	return 0;
}

/* The runtime's pick for (key, B, T), in words. */
static int show_pick(const char *db_path, const char *backend, int device,
		     const struct mta_problem *p, const char *op, long B, long T)
{
	static const char *from[] = { "default (nothing tuned applies here)",
				      "nearest tuned buckets", "tuned for these T and B buckets" };
	static const char *whose[] = { "this device", ("this device's name and architecture, "
				       "other driver or compiler versions"),
				       "another device of this architecture", "none" };
	mta_context *ctx;
	struct mta_pick k;
	int rc;
	if ((rc = mta_context_create(&ctx, db_path, backend, device)))
		return cli_fail("best", cli_db_status(rc, 1), "%s", mta_last_error());
	rc = mta_context_pick_op(ctx, p, op ? op : "fwd", B, T, &k);
	mta_context_free(ctx);
	if (rc)
		return cli_fail("best", cli_db_status(rc, 1), "%s", mta_last_error());
	printf("%s\t%s", k.spec, from[k.source]);
	if (k.source != MTA_PICK_DEFAULT) {
		printf(" (T<=%lld, B<=%lld; tuned on %s)", (long long)k.t_bucket,
		       (long long)k.b_bucket, whose[k.rung]);
		if (k.rounds)
			printf("; %.2fx the default's speed, 95%% CI %.2f-%.2f, %d rounds%s", k.speedup,
			       k.ci_low, k.ci_high, k.rounds, k.significant ? "" : ", within noise");
	}
	printf("\n");
	return CLI_OK;
}

int cmd_best(int argc, char **argv)
{
	const char *key = NULL, *db_path = NULL, *backend = "cpu";
	const struct mta_backend *be;
	struct cli_getopt g;
	struct listing l = { 0, 0, NULL };
	long T = 0, B = 1, num;
	int c, rc, device = cli_default_device();

	cli_getopt_init(&g, &cmd);
	while ((c = cli_next(&g, argc, argv)) != -1) {
		switch (c) {
		case 'h': cli_help(stdout, &cmd); return CLI_OK;
		case O_PROBLEM: key = optarg; break;
		case O_OP:
			if (strcmp(optarg, "fwd") && strcmp(optarg, "bwd") && strcmp(optarg, "decode"))
				return cli_fail("best", CLI_USAGE, "--op: unknown operation '%s' "
						"(expected fwd, bwd or decode)", optarg);
			l.op = optarg;
			break;
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
		case O_BATCH:
			if (cli_parse_long(optarg, 1, 1L << 24, &B))
				return cli_fail("best", CLI_USAGE, "--batch '%s' is not a positive integer",
						optarg);
			break;
		case O_FORMAT:
			if (strcmp(optarg, "text") && strcmp(optarg, "csv"))
				return cli_fail("best", CLI_USAGE, "--format '%s': expected text or csv",
						optarg);
			l.csv = !strcmp(optarg, "csv");
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
		return show_pick(db_path, backend, device, &p, l.op, B, T);
	}
	struct mta_db *db;
	if ((rc = mta_db_open(db_path, MTA_DB_READONLY, &db)))
		return cli_fail("best", cli_db_status(rc, 1), "%s", mta_last_error());
	rc = mta_db_list_winners(db, 0, key, print_winner, &l);
	mta_db_close(db);
	if (rc)
		return cli_fail("best", cli_db_status(rc, 1), "%s", mta_last_error());
	if (!l.rows && !l.csv)
		printf("no %s%swinners recorded%s%s\n", l.op ? l.op : "", l.op ? " " : "",
		       key ? " for " : "", key ? key : "");
	if (!l.rows && l.csv)
		printf("device,op,problem,seq,batch,variant,ms,speedup,ci_low,ci_high,rounds,"
		       "significant\n");
	return CLI_OK;
}
