/*
 * kprof.c: run one generated CPU kernel, built by hand, on one thread, for
 * load-independent measures of a template (a developer's tool, beside
 * kbench.c). Valgrind cannot run AVX-512 code, so the kernel's source is
 * written out (--gen) and built with the flags one chooses (for callgrind:
 * -mno-avx512f and vec=8, the same loops on 8-float vectors), then run N
 * times from the same inputs through the pool the runtime uses (one
 * thread: the pool runs it inline).
 *
 *   kprof KEY SPEC --gen FILE            write the generated source to FILE
 *   kprof KEY SPEC T SO [N] [--check]    run SO's mta_cpu_kernel N times (default 1)
 *   kprof KEY --ab T SO1 SO2... [--rounds R] [--calls N] [--threads N] [--unchecked]
 *                                        old against new, interleaved in one process
 *
 * --ab checks every SO against the float64 reference (rel L2), runs each
 * once to warm it, then R rounds (default 9): in each, every SO runs N
 * calls (default 3) in turn, the order rotated from round to round, and
 * the round's time per call of each (process CPU time of all threads, and
 * wall time) is kept. It prints each SO's median [min, max] and, for SO2...,
 * the ratio SO1/SOk within each round (> 1: SOk is faster), median [min,
 * max]: drift between rounds cancels in the ratios, which is what a shared
 * machine allows. --unchecked times kernels that fail the check too (said
 * so beside them): ablations, a step cut out of a kernel to price it.
 *
 * It prints the process CPU time per call of calls 2..N and the useful
 * GFLOP/s per CPU-second (the useful FLOPs of bench/cpu_bench.c), and with
 * --check the relative L2 error against the float64 reference. Instructions
 * per call come from two callgrind runs: (Ir(N+1 calls) - Ir(1 call)) / N.
 * See docs/bench-cpu.md for the commands.
 */
#include "gen/cpu/cgen.h"
#include "gen/variant.h"
#include "runtime/core/error.h"
#include "runtime/core/kargs.h"
#include "runtime/core/pool.h"
#include "runtime/mta.h"
#include "tuner/measure/sample.h"

#include <dlfcn.h>
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

/* Useful FLOPs of one call (bench/cpu_bench.c's definition). */
static double useful_flops(const struct mta_problem *p, double T)
{
	const double lg = T * (T + 1) / 2 * p->H;
	const double mac = 2.0 * p->D + (p->cq ? p->cq * p->ck : 0) +
			   (p->cq2 ? p->cq2 * p->ck2 : 0) + (p->head_pre ? p->H : 0) +
			   (p->head_post == MTA_HPOST_LINEAR ? p->H : p->head_post ? p->hc : 0);
	return 2 * mac * lg + 5 * lg + 6.0 * p->D * T * p->H;
}

static int gen(const struct mta_problem *p, const struct mta_variant *v, const char *path)
{
	char *src = NULL;
	FILE *f = NULL;
	int rc = mta_gen_c(p, v, &src);
	if (rc)
		goto out;
	if (!(f = fopen(path, "w"))) {
		rc = mta_fail(MTA_EIO, "%s: cannot create the kernel's source file", path);
		goto out;
	}
	const int bad = fputs(src, f) < 0;
	if (fclose(f) || bad)
		rc = mta_fail(MTA_EIO, "%s: cannot write the kernel's source", path);
out:
	free(src);
	return rc;
}

static double wall_s(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static int cmp_dbl(const void *x, const void *y)
{
	const double a = *(const double *)x, b = *(const double *)y;
	return (a > b) - (a < b);
}

/* Median, min and max of n values (sorted in place). */
static void stats(double *x, int n, double *med, double *lo, double *hi)
{
	qsort(x, (size_t)n, sizeof *x, cmp_dbl);
	*med = n % 2 ? x[n / 2] : 0.5 * (x[n / 2 - 1] + x[n / 2]);
	*lo = x[0];
	*hi = x[n - 1];
}

#define AB_MAX 8
#define AB_ROUNDS_MAX 1000

/* kprof KEY --ab T SO1 SO2... (see the header). */
static int ab_main(int argc, char **argv)
{
	struct mta_problem p;
	struct mta_sample s;
	struct mta_pool *pool = NULL;
	void *dl[AB_MAX] = { 0 };
	int (*fn[AB_MAX])(const struct mta_kargs *);
	const char *name[AB_MAX];
	float *o = NULL;
	double *ref = NULL, *cpu = NULL, *wall = NULL, *tmp = NULL;
	int nso = 0, rounds = 9, calls = 3, threads = 1, status = 1, made = 0, unchecked = 0;
	const long T = argc > 3 ? atol(argv[3]) : 0;

	for (int i = 4; i < argc; i++) {
		if (!strcmp(argv[i], "--rounds") && i + 1 < argc)
			rounds = atoi(argv[++i]);
		else if (!strcmp(argv[i], "--calls") && i + 1 < argc)
			calls = atoi(argv[++i]);
		else if (!strcmp(argv[i], "--threads") && i + 1 < argc)
			threads = atoi(argv[++i]);
		else if (!strcmp(argv[i], "--unchecked"))
			unchecked = 1;
		else if (argv[i][0] == '-' || nso == AB_MAX) {
			fprintf(stderr, "kprof: %s: expected a kernel .so (at most %d), "
					"--rounds/--calls/--threads N or --unchecked\n", argv[i], AB_MAX);
			return 2;
		} else
			name[nso++] = argv[i];
	}
	if (T < 1 || nso < 1 || rounds < 1 || rounds > AB_ROUNDS_MAX || calls < 1 || threads < 0) {
		fprintf(stderr, "kprof: --ab expected T >= 1, one kernel .so or more, "
				"1..%d rounds, calls >= 1, threads >= 0\n", AB_ROUNDS_MAX);
		return 2;
	}
	if (mta_problem_from_key(argv[1], &p)) {
		fprintf(stderr, "kprof: %s\n", mta_last_error());
		return 2;
	}
	for (int k = 0; k < nso; k++) {
		/* a path without a slash would be searched for, not opened */
		char path[4096];
		snprintf(path, sizeof path, "%s%s", strchr(name[k], '/') ? "" : "./", name[k]);
		if (!(dl[k] = dlopen(path, RTLD_NOW | RTLD_LOCAL))) {
			fprintf(stderr, "kprof: %s\n", dlerror());
			goto out;
		}
		*(void **)&fn[k] = dlsym(dl[k], "mta_cpu_kernel");
		if (!fn[k]) {
			fprintf(stderr, "kprof: %s: no mta_cpu_kernel\n", name[k]);
			goto out;
		}
	}
	if (mta_sample_make(&p, 1, T, 7, &s)) {
		fprintf(stderr, "kprof: %s\n", mta_last_error());
		goto out;
	}
	made = 1;
	const long n = T * p.H * p.D;
	struct mta_tensor ot;
	struct mta_kargs a;
	o = malloc(sizeof *o * (size_t)n);
	ref = malloc(sizeof *ref * (size_t)n);
	cpu = malloc(sizeof *cpu * (size_t)(nso * rounds));
	wall = malloc(sizeof *wall * (size_t)(nso * rounds));
	tmp = malloc(sizeof *tmp * (size_t)rounds);
	if (!o || !ref || !cpu || !wall || !tmp) {
		fprintf(stderr, "kprof: out of memory\n");
		goto out;
	}
	mta_tensor_init(&ot, o, MTA_F32, 1, T, p.H, p.D);
	if (mta_kargs_fill(&p, &s.q, &s.k, &s.v, &s.w, &ot, threads, &a) ||
	    mta_pool_create(&pool) || mta_reference(&p, &s.q, &s.k, &s.v, &s.w, ref)) {
		fprintf(stderr, "kprof: %s\n", mta_last_error());
		goto out;
	}
	const double fl = useful_flops(&p, (double)T);
	printf("%s T=%ld, %d thread(s) (0: all cores), %d rounds of %d calls each, order rotated; "
	       "useful %.3f GFLOP per call\n", argv[1], T, threads, rounds, calls, fl * 1e-9);
	for (int k = 0; k < nso; k++) { /* checked (mta_compare: rel L2 and every element), and warmed */
		struct mta_compare cr;
		for (long i = 0; i < n; i++)
			o[i] = NAN;
		if (mta_pool_call(pool, fn[k], &a)) {
			fprintf(stderr, "kprof: %s: the kernel failed\n", name[k]);
			goto out;
		}
		const int bad = mta_compare(o, ref, (size_t)n, p.dtype, &cr);
		printf("  [%d] %s: rel L2 %.3g against the float64 reference, %zu elements past "
		       "the bound\n", k, name[k], cr.rel_l2, cr.bad);
		if (bad && !unchecked) {
			fprintf(stderr, "kprof: %s: %s\n", name[k], mta_last_error());
			goto out;
		}
		if (bad) /* an ablation: a kernel with a step cut out, timed to price the step */
			printf("      WRONG (--unchecked): timed all the same\n");
	}
	for (int r = 0; r < rounds; r++)
		for (int m = 0; m < nso; m++) {
			const int k = (m + r) % nso;
			const double c0 = cpu_s(), w0 = wall_s();
			for (int i = 0; i < calls; i++)
				if (mta_pool_call(pool, fn[k], &a)) {
					fprintf(stderr, "kprof: %s: the kernel failed\n", name[k]);
					goto out;
				}
			cpu[k * rounds + r] = (cpu_s() - c0) / calls;
			wall[k * rounds + r] = (wall_s() - w0) / calls;
		}
	for (int k = 0; k < nso; k++) {
		double cm, cl, ch, wm, wl, wh;
		memcpy(tmp, cpu + k * rounds, sizeof *tmp * (size_t)rounds);
		stats(tmp, rounds, &cm, &cl, &ch);
		memcpy(tmp, wall + k * rounds, sizeof *tmp * (size_t)rounds);
		stats(tmp, rounds, &wm, &wl, &wh);
		/* 4 significant digits: a call at small T is some microseconds */
		printf("  [%d] cpu %.4g ms [%.4g, %.4g] (%.1f useful GFLOP per cpu-s)   wall %.4g ms "
		       "[%.4g, %.4g] (%.1f GFLOP/s)\n", k, 1e3 * cm, 1e3 * cl, 1e3 * ch, fl * 1e-9 / cm,
		       1e3 * wm, 1e3 * wl, 1e3 * wh, fl * 1e-9 / wm);
	}
	for (int k = 1; k < nso; k++) {
		double cm, cl, ch, wm, wl, wh;
		for (int r = 0; r < rounds; r++)
			tmp[r] = cpu[r] / cpu[k * rounds + r];
		stats(tmp, rounds, &cm, &cl, &ch);
		for (int r = 0; r < rounds; r++)
			tmp[r] = wall[r] / wall[k * rounds + r];
		stats(tmp, rounds, &wm, &wl, &wh);
		printf("  [0]/[%d] per round (> 1: [%d] faster): cpu %.3f [%.3f, %.3f]   wall %.3f "
		       "[%.3f, %.3f]\n", k, k, cm, cl, ch, wm, wl, wh);
	}
	status = 0;
out:
	mta_pool_free(pool);
	if (made)
		mta_sample_free(&s);
	free(o);
	free(ref);
	free(cpu);
	free(wall);
	free(tmp);
	for (int k = 0; k < nso; k++)
		if (dl[k])
			dlclose(dl[k]);
	return status;
}

int main(int argc, char **argv)
{
	struct mta_problem p;
	struct mta_variant v;
	struct mta_sample s;
	struct mta_pool *pool = NULL;
	void *dl = NULL;
	float *o = NULL;
	double *ref = NULL;
	int rc, check = 0, status = 1;

	if (argc >= 3 && !strcmp(argv[2], "--ab"))
		return ab_main(argc, argv);
	if (argc >= 5 && !strcmp(argv[3], "--gen")) {
		if (mta_problem_from_key(argv[1], &p) || mta_variant_parse(argv[2], &v) ||
		    gen(&p, &v, argv[4])) {
			fprintf(stderr, "kprof: %s\n", mta_last_error());
			return 1;
		}
		return 0;
	}
	if (argc < 5) {
		fprintf(stderr, "usage: kprof KEY SPEC --gen FILE\n"
				"       kprof KEY SPEC T SO [N] [--check]\n"
				"       kprof KEY --ab T SO1 SO2... [--rounds R] [--calls N] "
				"[--threads N] [--unchecked]\n");
		return 2;
	}
	const long T = atol(argv[3]);
	int reps = 1;
	for (int i = 5; i < argc; i++)
		if (!strcmp(argv[i], "--check"))
			check = 1;
		else
			reps = atoi(argv[i]);
	if (T < 1 || reps < 1) {
		fprintf(stderr, "kprof: expected T >= 1 and N >= 1\n");
		return 2;
	}
	if (mta_problem_from_key(argv[1], &p)) {
		fprintf(stderr, "kprof: %s\n", mta_last_error());
		return 2;
	}
	if (!(dl = dlopen(argv[4], RTLD_NOW))) {
		fprintf(stderr, "kprof: %s\n", dlerror());
		return 1;
	}
	int (*fn)(const struct mta_kargs *);
	*(void **)&fn = dlsym(dl, "mta_cpu_kernel");
	if (!fn || mta_sample_make(&p, 1, T, 7, &s)) {
		fprintf(stderr, "kprof: %s\n", fn ? mta_last_error() : "no mta_cpu_kernel");
		dlclose(dl);
		return 1;
	}
	const long n = T * p.H * p.D;
	struct mta_tensor ot;
	struct mta_kargs a;
	if (!(o = malloc(sizeof *o * (size_t)n)) || !(ref = malloc(sizeof *ref * (size_t)n))) {
		fprintf(stderr, "kprof: out of memory\n");
		goto out;
	}
	mta_tensor_init(&ot, o, MTA_F32, 1, T, p.H, p.D);
	if (mta_kargs_fill(&p, &s.q, &s.k, &s.v, &s.w, &ot, 1, &a) || mta_pool_create(&pool)) {
		fprintf(stderr, "kprof: %s\n", mta_last_error());
		goto out;
	}
	double t0 = 0;
	for (int i = 0; i < reps; i++) {
		if (i == 1)
			t0 = cpu_s();
		if ((rc = mta_pool_call(pool, fn, &a))) {
			fprintf(stderr, "kprof: the kernel returned %d\n", rc);
			goto out;
		}
	}
	if (reps > 1) {
		const double sec = (cpu_s() - t0) / (reps - 1), fl = useful_flops(&p, (double)T);
		printf("cpu %.5f ms/call, useful %.3f GFLOP, %.1f GFLOP/s per cpu-s\n", 1e3 * sec,
		       fl * 1e-9, fl * 1e-9 / sec);
	}
	if (check) {
		double n2 = 0, d2 = 0;
		if (mta_reference(&p, &s.q, &s.k, &s.v, &s.w, ref)) {
			fprintf(stderr, "kprof: %s\n", mta_last_error());
			goto out;
		}
		for (long i = 0; i < n; i++) {
			n2 += (o[i] - ref[i]) * (o[i] - ref[i]);
			d2 += ref[i] * ref[i];
		}
		printf("rel L2 %.3g against the float64 reference\n", sqrt(n2 / d2));
	}
	status = 0;
out:
	mta_pool_free(pool);
	mta_sample_free(&s);
	free(o);
	free(ref);
	dlclose(dl);
	return status;
}
