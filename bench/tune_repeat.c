/*
 * tune_repeat.c: are the tuner's winners real? The experiment of issue 13,
 * repeated: N fresh `mtatune tune` runs of one problem (each into a new
 * database), each winner's claimed ratio to the default with its 95%
 * interval read back from the database, and then every winner re-measured
 * against the default independently of the tuner: in this process, other
 * inputs, its own interleaving (A B B A, a flush before each run) and its own
 * statistic (the mean of the per-round log ratios with a t interval, where
 * the tuner bootstraps). Prints a Markdown table for docs/bench-tuner.md.
 *
 * usage: tune_repeat [--bin PATH] [--problem KEY] [--seq T] [--runs N] [--rounds N]
 *                    [-- TUNE-OPTIONS...]
 */
#include "db/db.h"
#include "runtime/backend.h"
#include "runtime/core/error.h"
#include "tuner/measure/check.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define MAX_RUNS 16

struct run {
	char spec[MTA_SPEC_MAX];
	double ratio, lo, hi;  /* claimed winner/default time ratio and its 95% interval */
	int rounds, significant;
	double re, re_lo, re_hi; /* re-measured */
	int re_rounds;
};

/* Run `bin tune --db db --problem key --seq T -q extra...`; its exit status. */
static int tune(const char *bin, const char *db, const char *key, const char *seq, char **extra,
		int nextra)
{
	char *argv[64];
	int n = 0;
	argv[n++] = (char *)bin;
	argv[n++] = "tune";
	argv[n++] = "--db";
	argv[n++] = (char *)db;
	argv[n++] = "--problem";
	argv[n++] = (char *)key;
	argv[n++] = "--seq";
	argv[n++] = (char *)seq;
	argv[n++] = "-q";
	for (int i = 0; i < nextra && n < 63; i++)
		argv[n++] = extra[i];
	argv[n] = NULL;
	pid_t pid = fork();
	if (pid == 0) {
		if (!freopen("/dev/null", "w", stdout))
			_exit(127);
		execv(bin, argv);
		_exit(127);
	}
	int st = 0;
	if (pid < 0 || waitpid(pid, &st, 0) < 0)
		return -1;
	return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

/* The winner recorded in db for (key, T, B=1) and its evidence. */
static int claimed(const char *db, const char *key, int64_t T, struct run *r)
{
	struct mta_db *h = NULL;
	struct mta_db_winner w;
	struct mta_db_device d;
	struct mta_device_info info;
	int64_t dev;
	int rc;
	if ((rc = mta_backend_cpu.identify(0, &info)))
		return rc;
	mta_device_info_db(&info, &d);
	if ((rc = mta_db_open(db, 0, &h)) || (rc = mta_db_device_find(h, &d, &dev)) ||
	    (rc = mta_db_winner_get(h, dev, key, "fwd", 1, T, &w)))
		goto out;
	snprintf(r->spec, sizeof r->spec, "%s", w.spec);
	r->ratio = w.ratio;
	r->lo = w.ci_low;
	r->hi = w.ci_high;
	r->rounds = w.rounds;
	r->significant = w.significant;
out:
	mta_db_close(h);
	return rc;
}

/* Student t quantile 0.975 for df degrees of freedom (df >= 1), close enough for a table. */
static double t975(int df)
{
	static const double t[] = { 12.71, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262,
				    2.228, 2.201, 2.179, 2.160, 2.145, 2.131, 2.120, 2.110, 2.101,
				    2.093, 2.086 };
	return df <= 20 ? t[df - 1] : df <= 30 ? 2.05 : 2.0;
}

/*
 * Re-measure spec against the default: rounds of A B / B A (the order
 * alternating), each run a median of 3 after a warm-up, both on one set
 * of inputs per round. Fills r->re*.
 */
static int remeasure(const struct mta_problem *p, int64_t T, int rounds, unsigned long long seed,
		     struct run *r)
{
	struct mta_variant v[2];
	struct mta_runner run[2] = { { &mta_backend_cpu, NULL, NULL, NULL },
				     { &mta_backend_cpu, NULL, NULL, NULL } };
	double lr[256], sum = 0, sq = 0;
	int rc;
	if ((rc = mta_variant_parse(r->spec, &v[0])) ||
	    (rc = mta_variant_default(p, MTA_BACKEND_CPU, &v[1])))
		return rc;
	for (int i = 0; i < 2; i++)
		if ((rc = mta_backend_cpu.open(0, 0, &run[i].dev)) ||
		    (rc = mta_backend_cpu.load(run[i].dev, NULL, p, &v[i], NULL, 0, &run[i].k)))
			goto out;
	if (rounds > 256)
		rounds = 256;
	for (int k = 0; k < rounds; k++) {
		double ms[2];
		for (int j = 0; j < 2; j++) {
			int i = (k & 1) ? 1 - j : j;
			struct mta_timing t;
			if ((rc = mta_time(&run[i], p, 1, T, seed + (unsigned long long)k, 1, 3, &t)))
				goto out;
			ms[i] = t.median_ms;
		}
		lr[k] = log(ms[0] / ms[1]);
		sum += lr[k];
	}
	double mean = sum / rounds;
	for (int k = 0; k < rounds; k++)
		sq += (lr[k] - mean) * (lr[k] - mean);
	double se = sqrt(sq / (rounds - 1) / rounds), h = t975(rounds - 1) * se;
	r->re = exp(mean);
	r->re_lo = exp(mean - h);
	r->re_hi = exp(mean + h);
	r->re_rounds = rounds;
out:
	for (int i = 0; i < 2; i++) {
		if (run[i].k)
			mta_backend_cpu.unload(run[i].k);
		if (run[i].dev)
			mta_backend_cpu.close(run[i].dev);
	}
	return rc;
}

int main(int argc, char **argv)
{
	const char *bin = "bin/mtatune", *key = "h4kv4d32-pre3x5-hpre-post3x5-hc4-both-gn-gate-f32";
	const char *seq = "512";
	int runs = 5, rounds = 30, nextra = 0;
	char **extra = NULL, dir[] = "/tmp/mta-tune-repeat-XXXXXX";
	struct run r[MAX_RUNS];
	struct mta_problem p;
	for (int i = 1; i < argc; i++) {
		if (!strcmp(argv[i], "--") ) {
			extra = argv + i + 1;
			nextra = argc - i - 1;
			break;
		} else if (i + 1 < argc && !strcmp(argv[i], "--bin"))
			bin = argv[++i];
		else if (i + 1 < argc && !strcmp(argv[i], "--problem"))
			key = argv[++i];
		else if (i + 1 < argc && !strcmp(argv[i], "--seq"))
			seq = argv[++i];
		else if (i + 1 < argc && !strcmp(argv[i], "--runs"))
			runs = atoi(argv[++i]);
		else if (i + 1 < argc && !strcmp(argv[i], "--rounds"))
			rounds = atoi(argv[++i]);
		else {
			fprintf(stderr, "usage: tune_repeat [--bin PATH] [--problem KEY] [--seq T] "
					"[--runs N<=%d] [--rounds N] [-- TUNE-OPTIONS...]\n", MAX_RUNS);
			return 2;
		}
	}
	const int64_t T = atoll(seq);
	if (runs < 1 || runs > MAX_RUNS || rounds < 3 || T < 1 || mta_problem_from_key(key, &p)) {
		fprintf(stderr, "tune_repeat: expected 1..%d runs, 3 or more rounds, T >= 1 and a "
				"valid problem key%s%s\n", MAX_RUNS, mta_last_error()[0] ? ": " : "",
			mta_last_error());
		return 2;
	}
	if (!mkdtemp(dir)) {
		perror("tune_repeat: mkdtemp");
		return 1;
	}
	for (int i = 0; i < runs; i++) {
		char db[256];
		snprintf(db, sizeof db, "%s/run%d.db", dir, i + 1);
		int st = tune(bin, db, key, seq, extra, nextra);
		if (st != 0 || claimed(db, key, T, &r[i])) {
			fprintf(stderr, "tune_repeat: run %d: tune exited %d%s%s\n", i + 1, st,
				mta_last_error()[0] ? ": " : "", mta_last_error());
			return 1;
		}
		unlink(db);
		fprintf(stderr, "run %d: %s\n", i + 1, r[i].spec);
	}
	rmdir(dir);
	for (int i = 0; i < runs; i++)
		if (remeasure(&p, T, rounds, (unsigned long long)time(NULL) + 1000u * (unsigned)i,
			      &r[i])) {
			fprintf(stderr, "tune_repeat: re-measuring %s: %s\n", r[i].spec, mta_last_error());
			return 1;
		}
	printf("| run | winner | claimed speed-up (95%% CI, rounds) | re-measured speed-up (95%% CI, "
	       "rounds) | agree |\n|---|---|---|---|---|\n");
	int agree = 0;
	for (int i = 0; i < runs; i++) {
		/* speed-up = 1/ratio; the intervals turn over */
		int ok = r[i].re_lo <= r[i].hi && r[i].lo <= r[i].re_hi;
		agree += ok;
		if (r[i].rounds)
			printf("| %d | `%s`%s | %.3fx (%.3f-%.3f, %d) | %.3fx (%.3f-%.3f, %d) | %s |\n",
			       i + 1, r[i].spec, r[i].significant ? "" : " (default kept)",
			       1 / r[i].ratio, 1 / r[i].hi, 1 / r[i].lo, r[i].rounds, 1 / r[i].re,
			       1 / r[i].re_hi, 1 / r[i].re_lo, r[i].re_rounds, ok ? "yes" : "NO");
		else
			printf("| %d | `%s` | (no rounds) | %.3fx (%.3f-%.3f, %d) | - |\n", i + 1,
			       r[i].spec, 1 / r[i].re, 1 / r[i].re_hi, 1 / r[i].re_lo, r[i].re_rounds);
	}
	printf("\n%d of %d claimed intervals overlap the re-measured ones.\n", agree, runs);
	return 0;
}
