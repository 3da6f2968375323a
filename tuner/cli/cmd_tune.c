/*
 * cmd_tune.c: `mtatune tune`: tune one problem at one sequence length, then
 * check the winner through the runtime against the float64 reference.
 *
 * With no --problem it tunes the embedded default (a small problem with
 * every part of MTA on), which is the README's one-command demonstration.
 */
#include "tuner/cli/cli.h"
#include "gen/gen.h"
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

enum { O_PROBLEM = 256, O_BACKEND, O_VARIANT, O_DB, O_OP };

static const struct cli_opt opts[] = {
	{ "problem", O_PROBLEM, "KEY", "problem key (default " DEFAULT_PROBLEM ")" },
	{ "seq", CLI_O_SEQ, "T", "sequence length (default 512)" },
	{ "batch", CLI_O_BATCH, "B", "batch size (default 1)" },
	{ "op", O_OP, "OP", "fwd (default): the forward; bwd: the backward (cpu, cuda), each\n"
			     "variant's gradients checked against the float64 reference;\n"
			     "decode: one token at cache length T (cpu, cuda), each variant's\n"
			     "decoded rows checked against the float64 forward" },
	{ "backend", O_BACKEND, "NAME", "cpu (default) or cuda (a GPU, its driver and NVRTC);\n"
				       "with --op bwd or decode also cuda-emu (the emulator: every point\n"
				       "checked and recorded, its times rank only the emulator)" },
	{ "device", CLI_O_DEVICE, "N", "cuda: device ordinal (default $MTATUNE_CUDA_DEVICE, else 0)" },
	CLI_SEARCH_OPTS,
	{ "variant", O_VARIANT, "SPEC", "tune only this variant and the default (repeatable)" },
	{ "reps", CLI_O_REPS, "N", "timed runs per variant (default 5)" },
	{ "warmup", CLI_O_WARMUP, "N", "untimed runs first (default 1)" },
	{ "top", CLI_O_TOP, "N", "best variants timed against the default in paired rounds\n"
				 "(default 3)" },
	{ "rounds", CLI_O_ROUNDS, "N", "paired rounds at most (default 40; at least 5)" },
	{ "rounds-budget", CLI_O_ROUNDS_BUDGET, "S", "seconds the paired rounds may take (default 30)" },
	{ "timeout", CLI_O_TIMEOUT, "S", "seconds a variant may take, check and timing (default 120)" },
	{ "threads", CLI_O_THREADS, "N", "CPU worker threads; cuda: NVRTC compile threads (default:\n"
					 "the cores this process may use: its affinity mask)" },
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
	"Tune one problem at sequence length T and batch size B: the variants of the\n"
	"backend's space (all, a random sample, or those a model-based search picks:\n"
	"--strategy) are generated, compiled, checked against the float64 reference on\n"
	"fresh random inputs, timed, and recorded in the database as each finishes.\n"
	"The best few are then timed against the default variant in paired rounds; one\n"
	"replaces the default only when it is faster with 95% confidence, and becomes\n"
	"the winner for the buckets of T and B with that evidence. A rerun resumes:\n"
	"recorded variants are skipped. The winner is then run through the runtime and\n"
	"checked against the reference once more. --op bwd does the same for the\n"
	"backward (mta_forward_train + mta_backward): its own variants, every gradient\n"
	"checked, timed against the default backward, its own winner. --op decode\n"
	"tunes the decode kernel: the time of one token at cache length T, its\n"
	"winner kept for T's bucket (a decode cache runs the winner of the bucket\n"
	"its length is in).\n",
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

/*
 * Check the winner through the runtime with the harness, on fresh inputs:
 * mta_forward, or for the backward mta_forward_train + mta_backward, or
 * for decode a cache of the context (mta_cache_create_ctx, which runs the
 * decode winner of each length bucket it reaches).
 */
static int verify_winner(const struct mta_problem *p, const struct mta_tune_opts *o, double *err,
			 char *spec, size_t n)
{
	struct mta_runner r = { 0 };
	struct mta_check_opts co = { 0, 0, (unsigned long long)time(NULL) + 7, 0 };
	struct mta_compare cmp;
	int rc;

	mta_check_size(o, &co.B, &co.T);
	cmp.rel_l2 = NAN;
	struct mta_pick pick;
	if ((rc = mta_context_create(&r.ctx, o->db_path, o->backend, o->device_index)) ||
	    (rc = mta_context_pick_op(r.ctx, p, mta_op_name(o->op), o->B, o->T, &pick)))
		goto out;
	snprintf(spec, n, "%s", pick.spec);
	rc = o->op == MTA_OP_BWD      ? mta_check_bwd(&r, p, &co, &cmp)
	     : o->op == MTA_OP_DECODE ? mta_check_decode(&r, NULL, p, &co, &cmp)
				      : mta_check(&r, p, &co, &cmp);
	*err = cmp.rel_l2;
	if (rc == MTA_EVERIFY)
		mta_wrap(rc, "the winner run through the runtime differs from the reference");
out:
	mta_context_free(r.ctx);
	return rc;
}

/* What the tuner found, in words: the winner and how sure that is. */
static void print_summary(const struct mta_tune_summary *s)
{
	static const char *const how[] = { "exhaustive", "a random sample", "auto search" };
	printf("variants: %d of %d screened (%s): %d measured now, %d already recorded, %d ok, "
	       "%d failed\n", s->tried + s->skipped, s->total,
	       how[s->strategy >= 0 && s->strategy < 3 ? s->strategy : 0], s->tried, s->skipped,
	       s->ok, s->failed);
	if (s->warm)
		printf("          %d winner%s recorded for this or similar problems seeded the search\n",
		       s->warm, s->warm > 1 ? "s" : "");
	if (s->out_of_time)
		printf("          the time budget ended the screening after %d of %d planned\n",
		       s->tried + s->skipped, s->planned);
	if (s->significant) {
		printf("winner: %s  %.3f ms (median of %d paired rounds)\n", s->winner, s->winner_ms,
		       s->rounds);
		printf("        %.2fx faster than the default %s, 95%% CI %.2f-%.2f, %d rounds\n",
		       1 / s->ratio, s->default_spec, 1 / s->ci_high, 1 / s->ci_low, s->rounds);
	} else if (s->rounds) {
		printf("winner: %s  %.3f ms (median of %d paired rounds)\n", s->winner, s->winner_ms,
		       s->rounds);
		/* ch_* are time ratios: their speed interval is (1/high, 1/low) */
		const char *verdict = 1 / s->ch_low < 1 ? "the default is faster" : "within noise";
		printf("        the default stays: the best other variant, %s, is %.2fx the default's "
		       "speed (95%% CI %.2f-%.2f, %d rounds): %s\n", s->challenger,
		       1 / s->ch_ratio, 1 / s->ch_high, 1 / s->ch_low, s->rounds, verdict);
	} else {
		printf("winner: %s  %.3f ms (the only variant that ran ok: nothing to compare)\n",
		       s->winner, s->winner_ms);
	}
}

/* The tune itself, once the options are read. */
static int tune(const char *key, struct mta_tune_opts *o, struct progress *pr)
{
	struct mta_problem p;
	struct mta_tune_summary s;
	char spec[MTA_SPEC_MAX];
	double err = NAN;
	int rc;

	if (mta_problem_from_key(key, &p))
		return cli_fail("tune", CLI_USAGE, "--problem: %s", mta_last_error());
	for (int i = 0; i < o->n_only; i++) {
		struct mta_variant v;
		if (mta_variant_parse(o->only_specs[i], &v) || mta_variant_check_op(&p, &v, o->op))
			return cli_fail("tune", CLI_USAGE, "--variant: %s", mta_last_error());
	}
	const struct mta_backend *be;
	if (mta_tune_backend(o->backend, o->op, &be))
		return cli_fail("tune", CLI_USAGE, "--backend: %s", mta_last_error());
	o->progress = on_event;
	o->progress_ctx = pr;
	printf("tuning %s%s at T=%lld B=%lld on %s\n", o->op == MTA_OP_BWD ? "the backward of "
	       : o->op == MTA_OP_DECODE ? "decode (one token at cache length T) of " : "",
	       key, (long long)o->T, (long long)o->B, o->backend);
	fflush(stdout);
	if ((rc = mta_tune(&p, o, &s))) {
		if (s.db_path[0])
			fprintf(stderr, "mtatune tune: results so far are in %s\n", s.db_path);
		/* EFORMAT: --db names a file that is not an mtatune database */
		return cli_fail("tune", rc == MTA_EVERIFY ? CLI_VERIFY : rc == MTA_EFORMAT ? CLI_DATA
				: CLI_RUNTIME, "%s", mta_last_error());
	}
	print_summary(&s);
	printf("database: %s\n", s.db_path);
	if ((rc = verify_winner(&p, o, &err, spec, sizeof spec)))
		return cli_fail("tune", rc == MTA_EVERIFY ? CLI_VERIFY : CLI_RUNTIME, "%s",
				mta_last_error());
	printf("verified: %s through the runtime, relative L2 error %.2e vs the float64 reference\n",
	       spec, err);
	return CLI_OK;
}

int cmd_tune(int argc, char **argv)
{
	const char *key = DEFAULT_PROBLEM;
	const char **only = calloc((size_t)argc + 1, sizeof *only);
	struct mta_tune_opts o;
	struct progress pr = { isatty(2), 0 };
	struct cli_getopt g;
	int c, rc = CLI_OK;

	if (!only)
		return cli_fail("tune", CLI_RUNTIME, "out of memory");
	mta_tune_defaults(&o);
	o.only_specs = only;
	o.T = DEFAULT_T;
	o.device_index = cli_default_device();
	cli_getopt_init(&g, &cmd);
	while (rc == CLI_OK && (c = cli_next(&g, argc, argv)) != -1) {
		switch (c) {
		case 'h': cli_help(stdout, &cmd); goto out;
		case 'q': pr.quiet = 1; break;
		case O_PROBLEM: key = optarg; break;
		case O_VARIANT: only[o.n_only++] = optarg; break;
		case O_DB: o.db_path = optarg; break;
		case O_OP:
			if (mta_op_parse(optarg, &o.op))
				rc = cli_fail("tune", CLI_USAGE, "--op: %s", mta_last_error());
			break;
		case O_BACKEND: {
			const struct mta_backend *be;
			if (mta_backend_find(optarg, &be)) /* which ops: mta_tune_backend, later */
				rc = cli_fail("tune", CLI_USAGE, "--backend: %s", mta_last_error());
			else
				o.backend = be->name;
			break;
		}
		case '?': case ':': rc = cli_bad_option("tune", c, argv); break;
		default: rc = cli_tune_option("tune", c, optarg, &o);
		}
	}
	if (rc == CLI_OK && optind < argc)
		rc = cli_fail("tune", CLI_USAGE, "unexpected argument '%s' (see 'mtatune tune "
			      "--help')", argv[optind]);
	if (rc == CLI_OK) {
		if (!o.n_only)
			o.only_specs = NULL;
		if (o.strategy == MTA_TUNE_RANDOM && !o.budget)
			o.budget = 8;
		rc = tune(key, &o, &pr);
	}
out:
	free(only);
	return rc;
}
