/*
 * kbench.c: time one CPU variant of one problem at one T (a developer's tool
 * for working on templates/mta_cpu.c), and optionally check it against the
 * float64 reference on the same inputs. It prints wall times and the CPU
 * time of all threads per run: on a busy machine the latter is steadier.
 *
 * usage: kbench KEY SPEC T [--reps N] [--threads N] [--check]
 */
#include "cpu.h"
#include "mta.h"
#include "sample.h"
#include "variant.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <math.h>

static double clk(clockid_t id)
{
	struct timespec ts;
	clock_gettime(id, &ts);
	return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

int main(int argc, char **argv)
{
	struct mta_problem p;
	struct mta_variant v;
	struct mta_cpu_kernel *k = NULL;
	struct mta_sample s;
	int reps = 3, threads = 0, check = 0;
	if (argc < 4) {
		fprintf(stderr, "usage: kbench KEY SPEC T [--reps N] [--threads N] [--check]\n");
		return 2;
	}
	const long T = atol(argv[3]);
	for (int i = 4; i < argc; i++) {
		if (!strcmp(argv[i], "--reps") && i + 1 < argc)
			reps = atoi(argv[++i]);
		else if (!strcmp(argv[i], "--threads") && i + 1 < argc)
			threads = atoi(argv[++i]);
		else if (!strcmp(argv[i], "--check"))
			check = 1;
		else
			return 2;
	}
	if (mta_problem_from_key(argv[1], &p) ||
	    (strcmp(argv[2], "default") ? mta_variant_parse(argv[2], &v)
					: mta_variant_default(&p, MTA_BACKEND_CPU, &v)) ||
	    mta_cpu_load(&p, &v, &k) || mta_sample_make(&p, 1, T, 42, &s)) {
		fprintf(stderr, "kbench: %s\n", mta_last_error());
		return 1;
	}
	const size_t n = (size_t)T * (size_t)p.H * (size_t)p.D;
	float *o = malloc(n * sizeof *o);
	struct mta_tensor to;
	mta_tensor_init(&to, o, MTA_F32, 1, T, p.H, p.D);
	double best = 1e30, sum = 0, cpu = 0;
	for (int r = 0; r <= reps; r++) {
		double t0 = clk(CLOCK_MONOTONIC), c0 = clk(CLOCK_PROCESS_CPUTIME_ID);
		if (mta_cpu_run(k, &p, &s.q, &s.k, &s.v, &s.w, &to, threads)) {
			fprintf(stderr, "kbench: %s\n", mta_last_error());
			return 1;
		}
		double t = clk(CLOCK_MONOTONIC) - t0;
		if (r) { /* the first run warms up */
			best = t < best ? t : best;
			sum += t;
			cpu += clk(CLOCK_PROCESS_CPUTIME_ID) - c0;
		}
	}
	printf("%s %s T=%ld: best %.4f s, mean %.4f s, cpu %.4f s/run, workspace %lld B/thread",
	       argv[1], argv[2], T, best, sum / reps, cpu / reps, mta_cpu_workspace(k));
	if (check) {
		double *ref = malloc(n * sizeof *ref), num = 0, den = 0;
		if (mta_reference(&p, &s.q, &s.k, &s.v, &s.w, ref)) {
			fprintf(stderr, "kbench: %s\n", mta_last_error());
			return 1;
		}
		for (size_t i = 0; i < n; i++) {
			double d = (double)o[i] - ref[i];
			num += d * d;
			den += ref[i] * ref[i];
		}
		printf(", rel L2 %.3g", den > 0 ? sqrt(num / den) : num);
		free(ref);
	}
	printf("\n");
	mta_cpu_free(k);
	mta_sample_free(&s);
	free(o);
	return 0;
}
