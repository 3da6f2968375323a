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
 *
 * CUDA variants run the same check on the GPU (host inputs copied over) and
 * are timed with CUDA events around each launch alone; the L2 flush is a
 * device memset over twice the L2 size (runtime/cuda.h, mta_cuda_time).
 */
#include "tune.h"
#include "cpu.h"
#include "cuda.h"
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

/*
 * The check's inputs at verify size: sample, float64 reference, output
 * poisoned with NaN. Sets *cnt (elements of the output).
 */
void mta_check_size(const struct mta_tune_opts *o, int64_t *B, int64_t *T)
{
	*T = o->verify_T ? o->verify_T : (o->T < 293 ? o->T : 293);
	*B = o->B < 2 ? o->B : 2;
}

static int check_begin(const struct mta_problem *p, const struct mta_tune_opts *o,
		       unsigned long long seed, struct mta_sample *s, double **ref, float **y,
		       size_t *cnt)
{
	int64_t Tv, Bv;
	mta_check_size(o, &Bv, &Tv);
	int rc = mta_sample_make(p, Bv, Tv, seed, s);
	if (rc)
		return rc;
	*cnt = (size_t)Bv * (size_t)Tv * (size_t)p->H * (size_t)p->D;
	*ref = malloc(*cnt * sizeof **ref);
	*y = malloc(*cnt * sizeof **y);
	if (!*ref || !*y)
		return mta_fail(MTA_ENOMEM, "out of memory for the reference check");
	for (size_t i = 0; i < *cnt; i++)
		(*y)[i] = NAN;
	return mta_reference(p, &s->q, &s->k, &s->v, &s->w, *ref);
}

/* Every element finite and the relative L2 error within the dtype's tolerance. */
static int check_end(const struct mta_problem *p, const struct mta_sample *s, const float *y,
		     const double *ref, size_t cnt, struct mta_measure *m)
{
	double tol = mta_tolerance(p->dtype);
	for (size_t i = 0; i < cnt; i++)
		if (!isfinite(y[i]))
			return mta_fail(MTA_EVERIFY, "output element %zu is %g, reference %g", i,
					(double)y[i], ref[i]);
	m->rel_err = mta_rel_l2(y, ref, cnt);
	if (!(m->rel_err < tol))
		return mta_fail(MTA_EVERIFY, "relative L2 error %.3g against the float64 reference "
				"(T=%lld, B=%lld) exceeds %g", m->rel_err, (long long)s->T,
				(long long)s->B, tol);
	return MTA_OK;
}

/*
 * Switch from the check to timing: drop the check's sample and output, make
 * the sample at the real size (seed + 1), the output buffer and reps slots.
 */
static int timing_begin(const struct mta_problem *p, const struct mta_tune_opts *o,
			unsigned long long seed, struct mta_sample *s, float **y, double **times,
			size_t *cnt)
{
	int rc;
	mta_sample_free(s);
	free(*y);
	*y = NULL;
	/* the sample first: it refuses sizes whose byte counts overflow */
	if ((rc = mta_sample_make(p, o->B, o->T, seed + 1, s)))
		return rc;
	*cnt = (size_t)o->B * (size_t)o->T * (size_t)p->H * (size_t)p->D;
	*y = malloc(*cnt * sizeof **y);
	*times = malloc((size_t)o->reps * sizeof **times);
	if (!*y || !*times)
		return mta_fail(MTA_ENOMEM, "out of memory for timing at T=%lld", (long long)o->T);
	return MTA_OK;
}

/* A timed run's output must at least be finite everywhere. */
static int timed_finite(const float *y, size_t cnt, int64_t T)
{
	for (size_t i = 0; i < cnt; i++)
		if (!isfinite(y[i]))
			return mta_fail(MTA_EVERIFY, "timed run at T=%lld gave a non-finite output "
					"element %zu", (long long)T, i);
	return MTA_OK;
}

/* Median, 20th/80th percentiles and minimum of reps times (sorted here). */
static void summarize(double *times, int reps, struct mta_measure *m)
{
	qsort(times, (size_t)reps, sizeof *times, cmp_d);
	m->runs = reps;
	m->min_ms = times[0];
	m->median_ms = pct(times, reps, 0.5);
	m->p20_ms = pct(times, reps, 0.2);
	m->p80_ms = pct(times, reps, 0.8);
}

static unsigned long long seed_of(const struct mta_tune_opts *o)
{
	return o->seed ? o->seed : (unsigned long long)time(NULL) ^ (unsigned long long)clock();
}

static void measure_init(struct mta_measure *m, size_t n)
{
	memset(m, 0, n);
	m->median_ms = m->p20_ms = m->p80_ms = m->min_ms = NAN;
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
	size_t cnt = 0;
	int rc;
	unsigned long long seed = seed_of(o);

	measure_init(m, n);
	if ((rc = mta_cpu_load(p, j->v, &k)))
		goto out;

	/* 1. the check against the reference, output poisoned first */
	if ((rc = check_begin(p, o, seed, &s, &ref, &y, &cnt)) ||
	    (rc = run_once(k, p, &s, y, o->threads)) || (rc = check_end(p, &s, y, ref, cnt, m)))
		goto out;
	if (!j->time_it)
		goto out;

	/* 2. timing at the real size */
	if ((rc = timing_begin(p, o, seed, &s, &y, &times, &cnt)))
		goto out;
	if (!(flush = malloc(FLUSH_BYTES))) {
		rc = mta_fail(MTA_ENOMEM, "out of memory for the cache flush buffer");
		goto out;
	}
	for (int r = 0; r < o->warmup; r++)
		if ((rc = run_once(k, p, &s, y, o->threads)))
			goto out;
	for (int r = 0; r < o->reps; r++) {
		memset(flush, r + 1, FLUSH_BYTES);
		double t0 = now_ms();
		if ((rc = run_once(k, p, &s, y, o->threads)))
			goto out;
		times[r] = now_ms() - t0;
	}
	if ((rc = timed_finite(y, cnt, o->T)))
		goto out;
	summarize(times, o->reps, m);
out:
	mta_sample_free(&s);
	mta_cpu_free(k);
	free(ref);
	free(y);
	free(times);
	free(flush);
	return rc;
}

struct cuda_job {
	const struct mta_problem *p;
	const struct mta_variant *v;
	const struct mta_tune_opts *o;
	const void *cubin;
	size_t cubin_size;
	int time_it;
};

/* The CUDA child: device, cubin, check on the GPU, event timing. */
static int cuda_fn(void *ctx, void *out, size_t n)
{
	const struct cuda_job *j = ctx;
	const struct mta_problem *p = j->p;
	const struct mta_tune_opts *o = j->o;
	struct mta_measure *m = out;
	struct mta_cuda *c = NULL;
	struct mta_cuda_kernel *k = NULL;
	struct mta_cuda_io *io = NULL;
	struct mta_sample s = { 0 };
	struct mta_tensor to;
	double *ref = NULL, *times = NULL;
	float *y = NULL;
	void *own = NULL;
	const void *cubin = j->cubin;
	size_t cnt = 0, csize = j->cubin_size;
	unsigned long long seed = seed_of(o);
	int rc;

	measure_init(m, n);
	if ((rc = mta_cuda_open(o->device_index, &c)))
		goto out;
	if (!cubin) {
		if ((rc = mta_cuda_cubin(NULL, p, j->v, mta_cuda_dev(c)->arch, 0, &own, &csize)))
			goto out;
		cubin = own;
	}
	if ((rc = mta_cuda_kernel_load(c, p, j->v, cubin, csize, &k)))
		goto out;

	/* 1. the check against the reference, on the GPU, output poisoned */
	if ((rc = check_begin(p, o, seed, &s, &ref, &y, &cnt)))
		goto out;
	mta_tensor_init(&to, y, MTA_F32, s.B, s.T, p->H, p->D);
	if ((rc = mta_cuda_forward(k, p, &s.q, &s.k, &s.v, &s.w, &to)) ||
	    (rc = check_end(p, &s, y, ref, cnt, m)) || !j->time_it)
		goto out;

	/* 2. timing at the real size with events; the tensors stay on the device */
	if ((rc = timing_begin(p, o, seed, &s, &y, &times, &cnt)))
		goto out;
	mta_tensor_init(&to, y, MTA_F32, o->B, o->T, p->H, p->D);
	if ((rc = mta_cuda_io_upload(c, p, &s.q, &s.k, &s.v, &s.w, &io)) ||
	    (rc = mta_cuda_time(k, io, o->warmup, o->reps, times)) ||
	    (rc = mta_cuda_io_download(io, &to)) || (rc = timed_finite(y, cnt, o->T)))
		goto out;
	summarize(times, o->reps, m);
out:
	mta_cuda_io_free(io);
	mta_cuda_kernel_free(k);
	mta_cuda_close(c);
	mta_sample_free(&s);
	free(own);
	free(ref);
	free(y);
	free(times);
	return rc;
}

int mta_measure_cuda(const struct mta_problem *p, const struct mta_variant *v,
		     const struct mta_tune_opts *o, const void *cubin, size_t cubin_size,
		     int time_it, struct mta_measure *m, int *timed_out)
{
	struct cuda_job j = { p, v, o, cubin, cubin_size, time_it };
	if (v->backend != MTA_BACKEND_CUDA)
		return mta_fail(MTA_EINVAL, "mta_measure_cuda given a %s variant",
				mta_backend_name(v->backend));
	if (time_it && (o->reps < 1 || o->warmup < 0))
		return mta_fail(MTA_EINVAL, "timing needs reps >= 1 and warmup >= 0");
	return mta_isolate(cuda_fn, &j, m, sizeof *m, o->timeout_s, timed_out);
}

int mta_measure_variant(const struct mta_problem *p, const struct mta_variant *v,
			const struct mta_tune_opts *o, int time_it, struct mta_measure *m,
			int *timed_out)
{
	struct job j = { p, v, o, time_it };
	if (v->backend == MTA_BACKEND_CUDA)
		return mta_measure_cuda(p, v, o, NULL, 0, time_it, m, timed_out);
	if (v->backend != MTA_BACKEND_CPU)
		return mta_fail(MTA_EUNSUPPORTED, "tuning the %s backend is not built into this "
				"tuner", mta_backend_name(v->backend));
	if (time_it && (o->reps < 1 || o->warmup < 0))
		return mta_fail(MTA_EINVAL, "timing needs reps >= 1 and warmup >= 0");
	return mta_isolate(job_fn, &j, m, sizeof *m, o->timeout_s, timed_out);
}
