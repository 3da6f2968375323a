/*
 * cmd_tune.c: `mtatune tune`: tune one problem at one sequence length, then
 * check the winner through the runtime against the float64 reference.
 *
 * With no --problem it tunes the embedded default (a small problem with
 * every part of MTA on), which is the README's one-command demonstration.
 */
#include "tuner/cli/cli.h"
#include "runtime/core/error.h"
#include "tuner/measure/check.h"
#include "tuner/tune/tune.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define DEFAULT_PROBLEM "h4kv4d32-pre3x5-hpre-post3x5-hc4-both-gn-gate-f32"
#define DEFAULT_T 512

enum { O_PROBLEM = 256, O_BACKEND, O_VARIANT, O_DB };

static const struct cli_opt opts[] = {
	{ "problem", O_PROBLEM, "KEY", "problem key (default " DEFAULT_PROBLEM ")" },
	{ "seq", CLI_O_SEQ, "T", "sequence length (default 512)" },
	{ "batch", CLI_O_BATCH, "B", "batch size (default 1)" },
	{ "backend", O_BACKEND, "NAME", "cpu (default) or cuda (a GPU, its driver and NVRTC)" },
	{ "device", CLI_O_DEVICE, "N", "cuda: device ordinal (default $MTATUNE_CUDA_DEVICE, else 0)" },
	{ "strategy", CLI_O_STRATEGY, "S", "exhaustive (default) or random" },
	{ "budget", CLI_O_BUDGET, "N", "random: number of variants to try (default 8)" },
	{ "variant", O_VARIANT, "SPEC", "tune only this variant" },
	{ "reps", CLI_O_REPS, "N", "timed runs per variant (default 5)" },
	{ "warmup", CLI_O_WARMUP, "N", "untimed runs first (default 1)" },
	{ "top", CLI_O_TOP, "N", "best variants re-timed before naming the winner (default 3)" },
	{ "timeout", CLI_O_TIMEOUT, "S", "seconds a variant may take, check and timing (default 120)" },
	{ "threads", CLI_O_THREADS, "N", "CPU worker threads; cuda: NVRTC compile threads (default:\n"
					 "all cores)" },
	{ "verify-seq", CLI_O_VSEQ, "T", "sequence length of the reference check (default min(T,293))" },
	{ "seed", CLI_O_SEED, "N", "input seed (default: from the clock)" },
	{ "db", O_DB, "PATH", "database (default $MTATUNE_DB, else ~/.cache/mtatune/mta.db)" },
	{ "quiet", 'q', NULL, "no progress output" },
	{ "help", 'h', NULL, "show this text" },
	{ 0 },
};

static const struct cli_cmd cmd = {
	"tune",
	"mtatune tune [--problem KEY] [--seq T] [options]",
	"Tune one problem at sequence length T: every variant of the backend's space\n"
	"(or a random sample) is generated, compiled, checked against the float64\n"
	"reference on fresh random inputs, timed, and recorded in the database as it\n"
	"finishes; the best few are re-timed and the fastest becomes the winner for T's\n"
	"bucket. A rerun resumes: recorded variants are skipped. The winner is then run\n"
	"through the runtime and checked against the reference once more.\n",
	opts, NULL,
};

struct progress {
	int tty, quiet;
};

static void on_event(void *ctx, const struct mta_tune_event *e)
{
	struct progress *pr = ctx;
	if (pr->quiet)
		return;
	char t[32] = "-";
	if (isfinite(e->median_ms))
		snprintf(t, sizeof t, "%.3f ms", e->median_ms);
	if (pr->tty) {
		fprintf(stderr, "\r\033[K%s [%d/%d] %-14s %-11s best %s%s%.3f ms", e->phase, e->done,
			e->total, e->status, t, e->best_spec ? e->best_spec : "-", e->best_spec ? " " : "",
			e->best_spec ? e->best_ms : 0.0);
		if (e->done == e->total)
			fputc('\n', stderr);
	} else {
		fprintf(stderr, "%s %d/%d %s %s %s\n", e->phase, e->done, e->total, e->spec, e->status, t);
	}
	fflush(stderr);
}

/* Check the winner through the runtime (mta_forward) with the harness, on fresh inputs. */
static int verify_winner(const struct mta_problem *p, const struct mta_tune_opts *o, double *err,
			 char *spec, size_t n)
{
	struct mta_runner r = { 0 };
	struct mta_check_opts co = { 0, 0, (unsigned long long)time(NULL) + 7, 0 };
	struct mta_compare cmp;
	int rc, source;

	mta_check_size(o, &co.B, &co.T);
	cmp.rel_l2 = NAN;
	if ((rc = mta_context_create(&r.ctx, o->db_path, o->backend, o->device_index)) ||
	    (rc = mta_context_pick(r.ctx, p, o->T, spec, n, &source)))
		goto out;
	rc = mta_check(&r, p, &co, &cmp);
	*err = cmp.rel_l2;
	if (rc == MTA_EVERIFY)
		mta_wrap(rc, "the winner run through the runtime differs from the reference");
out:
	mta_context_free(r.ctx);
	return rc;
}

int cmd_tune(int argc, char **argv)
{
	const char *key = DEFAULT_PROBLEM;
	struct mta_tune_opts o;
	struct progress pr = { isatty(2), 0 };
	struct mta_problem p;
	struct mta_tune_summary s;
	struct cli_getopt g;
	int c, rc;

	mta_tune_defaults(&o);
	o.T = DEFAULT_T;
	o.budget = 8;
	o.device_index = cli_default_device();
	cli_getopt_init(&g, &cmd);
	while ((c = cli_next(&g, argc, argv)) != -1) {
		switch (c) {
		case 'h': cli_help(stdout, &cmd); return CLI_OK;
		case 'q': pr.quiet = 1; break;
		case O_PROBLEM: key = optarg; break;
		case O_VARIANT: o.only_spec = optarg; break;
		case O_DB: o.db_path = optarg; break;
		case O_BACKEND: {
			const struct mta_backend *be;
			if (mta_backend_find_timed(optarg, &be))
				return cli_fail("tune", CLI_USAGE, "--backend: %s", mta_last_error());
			o.backend = be->name;
			break;
		}
		case '?': case ':': return cli_bad_option("tune", c, argv);
		default:
			if (cli_tune_option("tune", c, optarg, &o))
				return CLI_USAGE;
		}
	}
	if (optind < argc)
		return cli_fail("tune", CLI_USAGE, "unexpected argument '%s' (see 'mtatune tune "
				"--help')", argv[optind]);
	if (mta_problem_from_key(key, &p))
		return cli_fail("tune", CLI_USAGE, "--problem: %s", mta_last_error());
	struct mta_variant v;
	if (o.only_spec && (mta_variant_parse(o.only_spec, &v) || mta_variant_check(&p, &v)))
		return cli_fail("tune", CLI_USAGE, "--variant: %s", mta_last_error());
	o.progress = on_event;
	o.progress_ctx = &pr;
	printf("tuning %s at T=%lld B=%lld on %s\n", key, (long long)o.T, (long long)o.B, o.backend);
	fflush(stdout);
	rc = mta_tune(&p, &o, &s);
	if (rc) {
		if (s.db_path[0])
			fprintf(stderr, "mtatune tune: results so far are in %s\n", s.db_path);
		/* EFORMAT: --db names a file that is not an mtatune database */
		return cli_fail("tune", rc == MTA_EVERIFY ? CLI_VERIFY : rc == MTA_EFORMAT ? CLI_DATA
				: CLI_RUNTIME, "%s", mta_last_error());
	}
	printf("variants: %d (%d measured now, %d already recorded, %d ok, %d failed)\n", s.total,
	       s.tried, s.skipped, s.ok, s.failed);
	printf("winner: %s  %.3f ms (median, re-timed)\n", s.winner, s.winner_ms);
	if (!strcmp(s.default_spec, s.winner))
		printf("default: the winner itself\n");
	else if (isfinite(s.default_ms))
		printf("default: %s  %.3f ms  (re-timed beside it: winner %.2fx faster)\n",
		       s.default_spec, s.default_ms, s.default_ms / s.winner_ms);
	printf("database: %s\n", s.db_path);
	double err = NAN;
	char spec[MTA_SPEC_MAX];
	if ((rc = verify_winner(&p, &o, &err, spec, sizeof spec)))
		return cli_fail("tune", rc == MTA_EVERIFY ? CLI_VERIFY : CLI_RUNTIME, "%s",
				mta_last_error());
	printf("verified: %s through the runtime, relative L2 error %.2e vs the float64 reference\n",
	       spec, err);
	return CLI_OK;
}
