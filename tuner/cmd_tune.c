/*
 * cmd_tune.c: `mtatune tune`: tune one problem at one sequence length, then
 * check the winner through the runtime against the float64 reference.
 *
 * With no --problem it tunes the embedded default (a small problem with
 * every part of MTA on), which is the README's one-command demonstration.
 */
#include "cli.h"
#include "db.h"
#include "error.h"
#include "sample.h"
#include "tune.h"

#include <getopt.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define DEFAULT_PROBLEM "h4kv4d32-pre3x5-hpre-post3x5-hc4-both-gn-gate-f32"
#define DEFAULT_T 512

static const char usage_text[] =
	"usage: mtatune tune [--problem KEY] [--seq T] [options]\n"
	"\n"
	"Tune one problem at sequence length T: every variant of the backend's space\n"
	"(or a random sample) is generated, compiled, checked against the float64\n"
	"reference on fresh random inputs, timed, and recorded in the database as it\n"
	"finishes; the best few are re-timed and the fastest becomes the winner for T's\n"
	"bucket. A rerun resumes: recorded variants are skipped. The winner is then run\n"
	"through the runtime and checked against the reference once more.\n"
	"\n"
	"  --problem KEY     problem key (default " DEFAULT_PROBLEM ")\n"
	"  --seq T           sequence length (default %d)\n"
	"  --batch B         batch size (default 1)\n"
	"  --backend NAME    cpu (default) or cuda (a GPU, its driver and NVRTC)\n"
	"  --device N        cuda: device ordinal (default $MTATUNE_CUDA_DEVICE, else 0)\n"
	"  --strategy S      exhaustive (default) or random\n"
	"  --budget N        random: number of variants to try (default 8)\n"
	"  --variant SPEC    tune only this variant\n"
	"  --reps N          timed runs per variant (default 5)\n"
	"  --warmup N        untimed runs first (default 1)\n"
	"  --top N           best variants re-timed before naming the winner (default 3)\n"
	"  --timeout S       seconds a variant may take, check and timing (default 120)\n"
	"  --threads N       CPU worker threads; cuda: NVRTC compile threads (default:\n"
	"                    all cores)\n"
	"  --verify-seq T    sequence length of the reference check (default min(T,293))\n"
	"  --seed N          input seed (default: from the clock)\n"
	"  --db PATH         database (default $MTATUNE_DB, else ~/.cache/mtatune/mta.db)\n"
	"  -q, --quiet       no progress output\n"
	"  -h, --help        show this text\n";

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

/* Run the winner through mta_forward on fresh inputs and compare with the reference. */
static int verify_winner(const struct mta_problem *p, const struct mta_tune_opts *o, double *err,
			 char *spec, size_t n)
{
	mta_context *ctx = NULL;
	struct mta_sample s = { 0 };
	int64_t T, B;
	mta_check_size(o, &B, &T);
	size_t cnt = (size_t)B * (size_t)T * (size_t)p->H * (size_t)p->D;
	double *ref = malloc(cnt * sizeof *ref);
	float *y = malloc(cnt * sizeof *y);
	struct mta_tensor to;
	int rc, source;

	if (!ref || !y) {
		rc = mta_fail(MTA_ENOMEM, "out of memory");
		goto out;
	}
	for (size_t i = 0; i < cnt; i++)
		y[i] = NAN;
	mta_tensor_init(&to, y, MTA_F32, B, T, p->H, p->D);
	if ((rc = mta_context_create(&ctx, o->db_path, mta_backend_name(o->backend))) ||
	    (rc = mta_context_pick(ctx, p, o->T, spec, n, &source)) ||
	    (rc = mta_sample_make(p, B, T, (unsigned long long)time(NULL) + 7, &s)) ||
	    (rc = mta_reference(p, &s.q, &s.k, &s.v, &s.w, ref)))
		goto out;
	if ((rc = mta_forward(ctx, p, &s.q, &s.k, &s.v, &s.w, &to)))
		goto out;
	*err = mta_rel_l2(y, ref, cnt);
	double tol = mta_tolerance(p->dtype);
	if (!(*err < tol))
		rc = mta_fail(MTA_EVERIFY, "the winner run through the runtime differs from the "
			      "reference: relative L2 error %.3g, tolerance %g", *err, tol);
out:
	mta_sample_free(&s);
	mta_context_free(ctx);
	free(ref);
	free(y);
	return rc;
}

int cmd_tune(int argc, char **argv)
{
	enum { O_PROBLEM = 256, O_BACKEND, O_VARIANT, O_DB };
	static const struct option opts[] = {
		{ "problem", required_argument, NULL, O_PROBLEM },
		{ "backend", required_argument, NULL, O_BACKEND },
		{ "variant", required_argument, NULL, O_VARIANT },
		{ "db", required_argument, NULL, O_DB },
		CLI_TUNE_OPTIONS,
		CLI_SIZE_OPTIONS,
		{ "quiet", no_argument, NULL, 'q' },
		{ "help", no_argument, NULL, 'h' },
		{ 0 },
	};
	const char *key = DEFAULT_PROBLEM;
	struct mta_tune_opts o;
	struct progress pr = { isatty(2), 0 };
	struct mta_problem p;
	struct mta_tune_summary s;
	int c, rc;

	mta_tune_defaults(&o);
	o.T = DEFAULT_T;
	o.budget = 8;
	opterr = 0;
	while ((c = getopt_long(argc, argv, ":hq", opts, NULL)) != -1) {
		switch (c) {
		case 'h': printf(usage_text, DEFAULT_T); return CLI_OK;
		case 'q': pr.quiet = 1; break;
		case O_PROBLEM: key = optarg; break;
		case O_VARIANT: o.only_spec = optarg; break;
		case O_DB: o.db_path = optarg; break;
		case O_BACKEND:
			if (mta_backend_parse(optarg, &o.backend))
				return cli_fail("tune", CLI_USAGE, "--backend: %s", mta_last_error());
			break;
		case '?': case ':': return cli_bad_option("tune", c, argv);
		default:
			if (cli_tune_option("tune", c, optarg, &o))
				return CLI_USAGE;
			/* the winner's check through the runtime uses the same device */
			if (c == CLI_O_DEVICE)
				setenv("MTATUNE_CUDA_DEVICE", optarg, 1);
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
	printf("tuning %s at T=%lld B=%lld on %s\n", key, (long long)o.T, (long long)o.B,
	       mta_backend_name(o.backend));
	fflush(stdout);
	rc = mta_tune(&p, &o, &s);
	if (rc) {
		if (s.db_path[0])
			fprintf(stderr, "mtatune tune: results so far are in %s\n", s.db_path);
		return cli_fail("tune", rc == MTA_EVERIFY ? CLI_VERIFY : cli_exit_status(rc) == CLI_DATA
				? CLI_RUNTIME : cli_exit_status(rc), "%s", mta_last_error());
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
