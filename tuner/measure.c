/*
 * measure.c: check one variant against the float64 reference, then time
 * it, inside a child process (isolate.h) so that a crash or a hang is a
 * record rather than the end of the tuning run.
 *
 * The check runs at verify_T (default min(T, 293): long enough to cross
 * several tiles, ragged against every power-of-two tile, and cheap for the
 * O(T^2) reference); kernels are not specialised on T, so this covers every
 * T. Timing runs at the real T and B: warm-up calls, then `reps` calls each
 * preceded by a write over a buffer larger than the last-level cache, so
 * that no run profits from the one before; the median and the 20th/80th
 * percentiles are reported. The timed outputs are checked to be finite.
 */
#include "tune.h"
#include "cpu.h"
#include "error.h"
#include "isolate.h"
#include "sample.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define FLUSH_BYTES (64u << 20)

struct job {
	const struct mta_problem *p;
	const struct mta_variant *v;
	const struct mta_tune_opts *o;
	int time_it;
};

static double now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return 1e3 * (double)ts.tv_sec + 1e-6 * (double)ts.tv_nsec;
}

static int cmp_d(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;
	return x < y ? -1 : x > y;
}

static double pct(const double *s, int n, double q)
{
	double pos = q * (n - 1);
	int i = (int)pos;
	return i + 1 < n ? s[i] + (pos - i) * (s[i + 1] - s[i]) : s[n - 1];
}

static int run_once(struct mta_cpu_kernel *k, const struct mta_problem *p, struct mta_sample *s,
		    float *o, int threads)
{
	struct mta_tensor to;
	mta_tensor_init(&to, o, MTA_F32, s->B, s->T, p->H, p->D);
	return mta_cpu_run(k, p, &s->q, &s->k, &s->v, &s->w, &to, threads);
}

static int job_fn(void *ctx, void *out, size_t n)
{
	const struct job *j = ctx;
	const struct mta_problem *p = j->p;
	const struct mta_tune_opts *o = j->o;
	struct mta_measure *m = out;
	struct mta_cpu_kernel *k = NULL;
	struct mta_sample s = { 0 };
	double *ref = NULL, *times = NULL;
	float *y = NULL;
	char *flush = NULL;
	int rc;
	int64_t Tv = o->verify_T ? o->verify_T : (o->T < 293 ? o->T : 293);
	int64_t Bv = o->B < 2 ? o->B : 2;
	double tol = p->dtype == MTA_F32 ? 1e-5 : 1e-2;
	unsigned long long seed = o->seed ? o->seed : (unsigned long long)time(NULL) ^ (unsigned long long)clock();

	memset(m, 0, n);
	m->median_ms = m->p20_ms = m->p80_ms = m->min_ms = NAN;
	if ((rc = mta_cpu_load(p, j->v, &k)))
		goto out;

	/* 1. the check against the reference, output poisoned first */
	if ((rc = mta_sample_make(p, Bv, Tv, seed, &s)))
		goto out;
	size_t cnt = (size_t)Bv * (size_t)Tv * (size_t)p->H * (size_t)p->D;
	ref = malloc(cnt * sizeof *ref);
	y = malloc(cnt * sizeof *y);
	if (!ref || !y) {
		rc = mta_fail(MTA_ENOMEM, "out of memory for the reference check");
		goto out;
	}
	for (size_t i = 0; i < cnt; i++)
		y[i] = NAN;
	if ((rc = mta_reference(p, &s.q, &s.k, &s.v, &s.w, ref)) ||
	    (rc = run_once(k, p, &s, y, o->threads)))
		goto out;
	for (size_t i = 0; i < cnt; i++)
		if (!isfinite(y[i])) {
			rc = mta_fail(MTA_EVERIFY, "output element %zu is %g, reference %g", i,
				      (double)y[i], ref[i]);
			goto out;
		}
	m->rel_err = mta_rel_l2(y, ref, cnt);
	if (!(m->rel_err < tol)) {
		rc = mta_fail(MTA_EVERIFY, "relative L2 error %.3g against the float64 reference "
			      "(T=%lld, B=%lld) exceeds %g", m->rel_err, (long long)Tv, (long long)Bv, tol);
		goto out;
	}
	if (!j->time_it) {
		rc = MTA_OK;
		goto out;
	}

	/* 2. timing at the real size */
	mta_sample_free(&s);
	free(y);
	cnt = (size_t)o->B * (size_t)o->T * (size_t)p->H * (size_t)p->D;
	y = malloc(cnt * sizeof *y);
	times = malloc((size_t)(o->reps > 0 ? o->reps : 1) * sizeof *times);
	flush = malloc(FLUSH_BYTES);
	if (!y || !times || !flush) {
		rc = mta_fail(MTA_ENOMEM, "out of memory for timing at T=%lld", (long long)o->T);
		goto out;
	}
	if ((rc = mta_sample_make(p, o->B, o->T, seed + 1, &s)))
		goto out;
	for (int r = 0; r < o->warmup; r++)
		if ((rc = run_once(k, p, &s, y, o->threads)))
			goto out;
	int reps = o->reps > 0 ? o->reps : 1;
	for (int r = 0; r < reps; r++) {
		memset(flush, r + 1, FLUSH_BYTES);
		double t0 = now_ms();
		if ((rc = run_once(k, p, &s, y, o->threads)))
			goto out;
		times[r] = now_ms() - t0;
	}
	for (size_t i = 0; i < cnt; i++)
		if (!isfinite(y[i])) {
			rc = mta_fail(MTA_EVERIFY, "timed run at T=%lld gave a non-finite output "
				      "element %zu", (long long)o->T, i);
			goto out;
		}
	qsort(times, (size_t)reps, sizeof *times, cmp_d);
	m->runs = reps;
	m->min_ms = times[0];
	m->median_ms = pct(times, reps, 0.5);
	m->p20_ms = pct(times, reps, 0.2);
	m->p80_ms = pct(times, reps, 0.8);
	rc = MTA_OK;
out:
	mta_sample_free(&s);
	mta_cpu_free(k);
	free(ref);
	free(y);
	free(times);
	free(flush);
	return rc;
}

int mta_measure_variant(const struct mta_problem *p, const struct mta_variant *v,
			const struct mta_tune_opts *o, int time_it, struct mta_measure *m,
			int *timed_out)
{
	struct job j = { p, v, o, time_it };
	if (v->backend != MTA_BACKEND_CPU)
		return mta_fail(MTA_EUNSUPPORTED, "tuning the %s backend is not built into this "
				"tuner", mta_backend_name(v->backend));
	return mta_isolate(job_fn, &j, m, sizeof *m, o->timeout_s, timed_out);
}
