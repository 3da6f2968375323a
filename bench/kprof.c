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
				"       kprof KEY SPEC T SO [N] [--check]\n");
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
