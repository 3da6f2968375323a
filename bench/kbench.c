/*
 * kbench.c: time one variant of one problem at one T on a backend (a
 * developer's tool for working on a template), through the check-and-time
 * harness (tuner/measure/check.h): optionally checked against the float64
 * reference first, then timed with the backend's cache flush before every
 * run. It prints the harness's statistics and the CPU time of all threads
 * per run: on a busy machine the latter is steadier.
 *
 * usage: kbench KEY SPEC|default T [--backend NAME] [--reps N] [--threads N] [--check]
 */
#include "runtime/backend.h"
#include "runtime/core/error.h"
#include "tuner/measure/check.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static double cpu_s(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
	return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

int main(int argc, char **argv)
{
	struct mta_problem p;
	struct mta_variant v;
	struct mta_runner r = { &mta_backend_cpu, NULL, NULL, NULL };
	struct mta_timing t;
	int reps = 3, threads = 0, check = 0, rc;
	if (argc < 4) {
		fprintf(stderr, "usage: kbench KEY SPEC|default T [--backend NAME] [--reps N] "
				"[--threads N] [--check]\n");
		return 2;
	}
	const long T = atol(argv[3]);
	for (int i = 4; i < argc; i++) {
		if (!strcmp(argv[i], "--reps") && i + 1 < argc)
			reps = atoi(argv[++i]);
		else if (!strcmp(argv[i], "--threads") && i + 1 < argc)
			threads = atoi(argv[++i]);
		else if (!strcmp(argv[i], "--backend") && i + 1 < argc) {
			if (mta_backend_find(argv[++i], &r.be)) {
				fprintf(stderr, "kbench: %s\n", mta_last_error());
				return 2;
			}
		} else if (!strcmp(argv[i], "--check"))
			check = 1;
		else
			return 2;
	}
	if ((rc = mta_problem_from_key(argv[1], &p)) ||
	    (rc = strcmp(argv[2], "default") ? mta_variant_parse(argv[2], &v)
					     : mta_variant_default(&p, r.be->variants, &v)) ||
	    (rc = r.be->open(0, threads, &r.dev)) ||
	    (rc = r.be->load(r.dev, NULL, &p, &v, NULL, 0, &r.k))) {
		fprintf(stderr, "kbench: %s\n", mta_last_error());
		return 1;
	}
	if (check) {
		struct mta_check_opts co = { 1, T, 42, 0 };
		struct mta_compare cmp;
		rc = mta_check(&r, &p, &co, &cmp);
		printf("%s %s T=%ld: check %s, rel L2 %.3g, %zu elements beyond the bound\n", argv[1],
		       argv[2], T, rc ? "FAILED" : "ok", cmp.rel_l2, cmp.bad);
		if (rc) {
			fprintf(stderr, "kbench: %s\n", mta_last_error());
			return 1;
		}
	}
	double c0 = cpu_s();
	if ((rc = mta_time(&r, &p, 1, T, 43, 1, reps, &t))) {
		fprintf(stderr, "kbench: %s\n", mta_last_error());
		return 1;
	}
	printf("%s %s T=%ld: median %.4f ms (p20 %.4f, p80 %.4f, min %.4f), cpu %.4f s/run\n",
	       argv[1], argv[2], T, t.median_ms, t.p20_ms, t.p80_ms, t.min_ms,
	       (cpu_s() - c0) / (reps + 1));
	r.be->unload(r.k);
	r.be->close(r.dev);
	return 0;
}
