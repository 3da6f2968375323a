/*
 * cmd_sweep.c: `mtatune sweep`: tune every item of a grid file, resumable,
 * on one or more devices, optionally one shard of the grid.
 *
 * SIGINT and SIGTERM raise a flag: the workers kill a measurement in progress
 * (left unrecorded) and stop, and the command exits CLI_STOPPED; a second
 * SIGINT stops the command itself at once.
 */
#include "tuner/cli/cli.h"
#include "db/db.h"
#include "runtime/core/error.h"
#include "tuner/sweep/grid.h"
#include "tuner/sweep/sweep.h"

#include <math.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

enum { O_GRID = 256, O_BACKEND, O_DB, O_DEVICES, O_SHARD };

static const struct cli_opt opts[] = {
	{ "grid", O_GRID, "FILE", "the grid (required)" },
	{ "backend", O_BACKEND, "NAME", "cpu (default) or cuda" },
	{ "db", O_DB, "PATH", "database (default $MTATUNE_DB, else ~/.cache/mtatune/mta.db)" },
	{ "devices", O_DEVICES, "LIST", "device indices, e.g. 0,1,2,3: one worker process each, all\n"
					"writing the one database (default 0)" },
	{ "shard", O_SHARD, "K/N", "only items i with i mod N = K-1 (1 <= K <= N); without it,\n"
				   "SLURM_ARRAY_TASK_ID/SLURM_ARRAY_TASK_COUNT when set" },
	CLI_SEARCH_OPTS,
	{ "seed", CLI_O_SEED, "N", "input seed; random sweeps default to 1 so that shards and\n"
				   "reruns sample the same variants (default: from the clock)" },
	{ "reps", CLI_O_REPS, "N", "timed runs per variant (default 5)" },
	{ "warmup", CLI_O_WARMUP, "N", "untimed runs first (default 1)" },
	{ "top", CLI_O_TOP, "N", "best variants re-timed per item (default 3)" },
	{ "timeout", CLI_O_TIMEOUT, "S", "seconds a variant may take (default 120)" },
	{ "threads", CLI_O_THREADS, "N", "CPU threads per worker (default: the cores split evenly\n"
					 "between the workers)" },
	{ "verify-seq", CLI_O_VSEQ, "T", "sequence length of the reference check (default min(T,293))" },
	{ "quiet", 'q', NULL, "no progress output" },
	{ "help", 'h', NULL, "show this text" },
	{ 0 },
};

static const struct cli_cmd cmd = {
	"sweep",
	"mtatune sweep --grid FILE [--backend cpu|cuda] [--db PATH]\n"
	"                     [--devices LIST] [--shard K/N] [tuning options]",
	"Tune every item of a grid: problems x dtypes x kernel sizes x batch sizes x\n"
	"sequence lengths. Results go to the database as they are measured; a rerun\n"
	"skips the items that are done and resumes the one that was cut short. Ctrl-C\n"
	"or SIGTERM stops within a second (exit status 5): a variant being measured is\n"
	"killed and left unrecorded; a second Ctrl-C stops at once.\n"
	"\n"
	"Grid file (docs/grid.md): one keyword and its values per line, '#' comments:\n"
	"  problem h16kv16d96-pre6x11-both h2kv1d8-pre2x3-both   # problem keys\n"
	"  seq 256..4096*2     # T: N, A..B (step 1), A..B+S (step S), A..B*M (times M)\n"
	"  batch 1 2           # B (default 1)\n"
	"  dtype f32 bf16      # replaces each key's dtype (default: the key's own)\n"
	"  ck 5..11+2          # kernel sizes cq, ck, cq2, ck2: replace each key's own\n",
	opts,
	"Progress goes to stderr: one updating line on a terminal, otherwise one line\n"
	"per finished item. Exit status: 0 all items done, 4 some item had no variant\n"
	"that passed the reference check, 5 stopped by a signal (rerun to resume).\n",
};

static volatile sig_atomic_t stop_flag;

static void on_signal(int sig)
{
	if (stop_flag && sig == SIGINT) {
		signal(sig, SIG_DFL);
		raise(sig); /* the second Ctrl-C: now */
	}
	stop_flag = 1;
}

struct progress {
	int tty, quiet, stopping;
};

static void fmt_eta(double s, char *buf, size_t n)
{
	if (!isfinite(s))
		snprintf(buf, n, "?");
	else if (s >= 3600)
		snprintf(buf, n, "%dh%02dm", (int)(s / 3600), (int)(s / 60) % 60);
	else if (s >= 60)
		snprintf(buf, n, "%dm%02ds", (int)(s / 60), (int)s % 60);
	else
		snprintf(buf, n, "%ds", (int)s);
}

static void on_event(void *ctx, const struct mta_sweep_event *e)
{
	struct progress *pr = ctx;
	char eta[32];
	if (pr->quiet)
		return;
	double pct = e->records_total ? 100.0 * (double)e->records_done / (double)e->records_total
				      : 100.0;
	fmt_eta(e->eta_s, eta, sizeof eta);
	if (pr->tty) {
		int width = 30, fill = (int)(pct / 100.0 * width + 0.5);
		fprintf(stderr, "\r\033[K[%.*s%*s] %5.1f%% items %zu/%zu variants %ld/%ld ETA %s%s",
			fill, "##############################", width - fill, "", pct, e->items_done,
			e->items_total, e->records_done, e->records_total, eta,
			stop_flag ? " (stopping)" : "");
	} else if (e->kind == MTA_SWEEP_ITEM) {
		fprintf(stderr, "item %zu/%zu %s %s%s T=%lld B=%lld", e->items_done, e->items_total,
			e->status, e->key, !strcmp(e->op, "bwd") ? " (backward)"
			: !strcmp(e->op, "decode") ? " (decode)" : "", (long long)e->T,
			(long long)e->B);
		if (e->spec)
			fprintf(stderr, " winner %s %.4g ms", e->spec, e->ms);
		else if (e->message && e->message[0])
			fprintf(stderr, ": %s", e->message);
		fprintf(stderr, " (variants %ld/%ld, %.1f%%, ETA %s)\n", e->records_done,
			e->records_total, pct, eta);
	}
	if (!pr->tty && stop_flag && !pr->stopping) {
		pr->stopping = 1;
		fprintf(stderr, "stopping after the records in hand\n");
	}
	fflush(stderr);
}

/* "K/N" with 1 <= K <= N -> 0-based shard. */
static int parse_shard(const char *s, int *k, int *n)
{
	char a[32];
	const char *slash = strchr(s, '/');
	long kk, nn;
	if (!slash || (size_t)(slash - s) >= sizeof a)
		return -1;
	snprintf(a, sizeof a, "%.*s", (int)(slash - s), s);
	if (cli_parse_long(a, 1, 1000000, &kk) || cli_parse_long(slash + 1, 1, 1000000, &nn) ||
	    kk > nn)
		return -1;
	*k = (int)kk - 1;
	*n = (int)nn;
	return 0;
}

static int parse_devices(const char *s, int *dev, int *n)
{
	char buf[512], *save = NULL;
	long v;
	snprintf(buf, sizeof buf, "%s", s);
	*n = 0;
	for (char *t = strtok_r(buf, ",", &save); t; t = strtok_r(NULL, ",", &save)) {
		if (*n == MTA_SWEEP_MAX_DEVICES || cli_parse_long(t, 0, 4095, &v))
			return -1;
		dev[(*n)++] = (int)v;
	}
	return *n ? 0 : -1;
}

int cmd_sweep(int argc, char **argv)
{
	const char *grid_path = NULL, *shard_arg = NULL;
	struct mta_sweep_opts so = { 0 };
	struct mta_sweep_summary s;
	struct progress pr = { isatty(2), 0, 0 };
	struct mta_grid g;
	int devices[MTA_SWEEP_MAX_DEVICES], c, rc, found;
	char db_path[1024];

	struct cli_getopt go;
	mta_tune_defaults(&so.tune);
	cli_getopt_init(&go, &cmd);
	while ((c = cli_next(&go, argc, argv)) != -1) {
		switch (c) {
		case 'h': cli_help(stdout, &cmd); return CLI_OK;
		case 'q': pr.quiet = 1; break;
		case O_GRID: grid_path = optarg; break;
		case O_DB: so.tune.db_path = optarg; break;
		case O_SHARD: shard_arg = optarg; break;
		case O_BACKEND: {
			const struct mta_backend *be;
			if (mta_backend_find_timed(optarg, &be))
				return cli_fail("sweep", CLI_USAGE, "--backend: %s", mta_last_error());
			so.tune.backend = be->name;
			break;
		}
		case O_DEVICES:
			if (parse_devices(optarg, devices, &so.ndevices))
				return cli_fail("sweep", CLI_USAGE, "--devices '%s': expected device "
						"indices 0..4095 separated by commas, e.g. 0,1",
						optarg);
			so.devices = devices;
			break;
		case '?': case ':': return cli_bad_option("sweep", c, argv);
		default:
			if (cli_tune_option("sweep", c, optarg, &so.tune))
				return CLI_USAGE;
		}
	}
	if (optind < argc)
		return cli_fail("sweep", CLI_USAGE, "unexpected argument '%s' (see 'mtatune sweep "
				"--help')", argv[optind]);
	if (!grid_path)
		return cli_fail("sweep", CLI_USAGE, "--grid FILE is required (see 'mtatune sweep "
				"--help')");
	if (shard_arg && parse_shard(shard_arg, &so.shard, &so.nshards))
		return cli_fail("sweep", CLI_USAGE, "--shard '%s': expected K/N with 1 <= K <= N, "
				"e.g. 2/8", shard_arg);
	if (!shard_arg && mta_sweep_slurm_shard(&so.shard, &so.nshards, &found))
		return cli_fail("sweep", CLI_USAGE, "%s", mta_last_error());
	if (so.tune.strategy == MTA_TUNE_RANDOM && !so.tune.seed)
		so.tune.seed = 1;
	if (so.tune.strategy == MTA_TUNE_RANDOM && !so.tune.budget)
		so.tune.budget = 8;
	if ((rc = mta_grid_load(grid_path, &g)))
		return cli_fail("sweep", rc == MTA_EIO || rc == MTA_EFORMAT ? CLI_DATA : CLI_RUNTIME,
				"%s", mta_last_error());
	if (so.tune.db_path)
		snprintf(db_path, sizeof db_path, "%s", so.tune.db_path);
	else if (mta_db_default_path(db_path, sizeof db_path))
		snprintf(db_path, sizeof db_path, "(default)");

	struct sigaction sa = { 0 };
	sa.sa_handler = on_signal;
	sigemptyset(&sa.sa_mask);
	sigaction(SIGINT, &sa, NULL);
	sigaction(SIGTERM, &sa, NULL);
	so.stop = &stop_flag;
	so.progress = on_event;
	so.progress_ctx = &pr;
	printf("sweep %s: %zu items", grid_path, g.n);
	if (so.nshards > 1)
		printf(", shard %d/%d", so.shard + 1, so.nshards);
	printf(", %d worker%s, %s backend, database %s\n", so.devices ? so.ndevices : 1,
	       so.devices && so.ndevices > 1 ? "s" : "", so.tune.backend, db_path);
	fflush(stdout);
	rc = mta_sweep(&g, &so, &s);
	if (pr.tty && !pr.quiet)
		fputc('\n', stderr);
	mta_grid_free(&g);
	if (rc && rc != MTA_EINTR)
		return cli_fail("sweep", rc == MTA_EINVAL ? CLI_USAGE : rc == MTA_EFORMAT ? CLI_DATA
				: CLI_RUNTIME, "%s", mta_last_error());
	printf("items: %zu (%zu done before, %zu tuned now, %zu with no passing variant); "
	       "variants measured: %ld\n", s.items, s.done_before, s.tuned, s.failed, s.measured);
	if (rc == MTA_EINTR)
		return cli_fail("sweep", CLI_STOPPED, "%s", mta_last_error());
	if (s.failed)
		return cli_fail("sweep", CLI_VERIFY, "%zu item%s had no variant that passed the "
				"reference check (see 'mtatune list results')", s.failed,
				s.failed > 1 ? "s" : "");
	return CLI_OK;
}
