/*
 * check.c: the check-and-time harness (see check.h).
 *
 * The check runs the reference on the very inputs the runner sees (the
 * sample, in its element type), poisons the whole output buffer with NaN
 * first (padding included), and gathers the output back into [B,T,H,D]
 * order before comparing, so strided layouts are checked element by
 * element like contiguous ones.
 */
#include "tuner/measure/check.h"
#include "runtime/core/error.h"
#include "tuner/measure/sample.h"
#include "tuner/measure/stats.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* The runner's handle on bound inputs. */
struct bound {
	const struct mta_runner *r;
	struct mta_bound *b; /* backend runners */
	const struct mta_problem *p;
	const struct mta_tensor *q, *k, *v, *o;
	const struct mta_weights *w;
};

static double now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return 1e3 * (double)ts.tv_sec + 1e-6 * (double)ts.tv_nsec;
}

static int bind(const struct mta_runner *r, const struct mta_problem *p,
		const struct mta_tensor *q, const struct mta_tensor *k,
		const struct mta_tensor *v, const struct mta_weights *w, struct mta_tensor *o,
		struct bound *x)
{
	*x = (struct bound){ r, NULL, p, q, k, v, o, w };
	if (r->ctx)
		return MTA_OK;
	return r->be->bind(r->k, p, q, k, v, w, o, &x->b);
}

static int launch(struct bound *x, double *ms)
{
	if (!x->r->ctx)
		return x->r->be->launch(x->b, ms);
	double t0 = now_ms();
	int rc = mta_forward(x->r->ctx, x->p, x->q, x->k, x->v, x->w, (struct mta_tensor *)x->o);
	*ms = now_ms() - t0;
	return rc;
}

static int fetch(struct bound *x)
{
	return x->r->ctx ? MTA_OK : x->r->be->fetch(x->b);
}

static void unbind(struct bound *x)
{
	if (!x->r->ctx)
		x->r->be->unbind(x->b);
}

/* The runner's cache flush; a context's is a host write over *buf (64 MiB, kept by the caller). */
static int flush(const struct mta_runner *r, char **buf, int i)
{
	const size_t n = (size_t)64 << 20;
	if (!r->ctx)
		return r->be->flush(r->dev);
	if (!*buf && !(*buf = malloc(n)))
		return mta_fail(MTA_ENOMEM, "out of memory for the cache flush buffer");
	memset(*buf, i + 1, n);
	return MTA_OK;
}

/* A copy of t laid out [B][heads][T][D+2] with NaN in the padding. */
static void *strided_copy(const struct mta_tensor *t, struct mta_tensor *out)
{
	const int64_t B = t->shape[0], T = t->shape[1], Hh = t->shape[2], D = t->shape[3];
	const int64_t Dp = D + 2;
	size_t es = mta_dtype_size(t->dtype);
	char *buf = malloc((size_t)(B * Hh * T * Dp) * es);
	if (!buf)
		return NULL;
	*out = *t;
	out->data = buf;
	out->stride[3] = 1;
	out->stride[1] = Dp;
	out->stride[2] = T * Dp;
	out->stride[0] = Hh * T * Dp;
	for (int64_t b = 0; b < B; b++)
		for (int64_t h = 0; h < Hh; h++)
			for (int64_t i = 0; i < T; i++) {
				char *dst = buf + (size_t)(b * out->stride[0] + h * out->stride[2] +
							   i * out->stride[1]) * es;
				const char *src = (const char *)t->data +
						  (size_t)(b * t->stride[0] + i * t->stride[1] +
							   h * t->stride[2]) * es;
				memcpy(dst, src, (size_t)D * es);
				for (int64_t d = D; d < Dp; d++) {
					if (t->dtype == MTA_F32)
						((float *)dst)[d] = NAN;
					else /* a 16-bit NaN in both bf16 and f16 */
						((uint16_t *)dst)[d] = 0x7fff;
				}
			}
	return buf;
}

/* The output buffer (NaN everywhere) and its view: [B,T,H,D], or [T][B][H][D+1]. */
static float *output(const struct mta_problem *p, int64_t B, int64_t T, int strided,
		     struct mta_tensor *o, size_t *total)
{
	const int64_t Dp = strided ? p->D + 1 : p->D;
	*total = (size_t)(B * T * p->H * Dp);
	float *buf = malloc(*total * sizeof *buf);
	if (!buf)
		return NULL;
	for (size_t i = 0; i < *total; i++)
		buf[i] = NAN;
	mta_tensor_init(o, buf, MTA_F32, B, T, p->H, p->D);
	if (strided) {
		o->stride[2] = Dp;
		o->stride[0] = p->H * Dp;
		o->stride[1] = B * p->H * Dp;
	}
	return buf;
}

/* o's elements in [B,T,H,D] order into flat. */
static void gather(const struct mta_tensor *o, float *flat)
{
	const int64_t *sh = o->shape, *st = o->stride;
	size_t n = 0;
	for (int64_t b = 0; b < sh[0]; b++)
		for (int64_t i = 0; i < sh[1]; i++)
			for (int64_t h = 0; h < sh[2]; h++)
				for (int64_t d = 0; d < sh[3]; d++)
					flat[n++] = ((const float *)o->data)[b * st[0] + i * st[1] +
									    h * st[2] + d * st[3]];
}

/* mta_check, or mta_check_varlen when cu is set. */
static int check(const struct mta_runner *r, const struct mta_problem *p,
		 const struct mta_check_opts *o, const int64_t *cu, int64_t ndocs,
		 struct mta_compare *res)
{
	struct mta_sample s = { 0 };
	struct mta_tensor q, k, v, out;
	struct bound x;
	void *sq = NULL, *sk = NULL, *sv = NULL;
	double *ref = NULL;
	float *ob = NULL, *flat = NULL;
	size_t total = 0;
	int rc, bound = 0;

	if ((rc = mta_sample_make(p, o->B, o->T, o->seed, &s)))
		return rc;
	size_t cnt = (size_t)o->B * (size_t)o->T * (size_t)p->H * (size_t)p->D;
	q = s.q;
	k = s.k;
	v = s.v;
	if (o->strided && (!(sq = strided_copy(&s.q, &q)) || !(sk = strided_copy(&s.k, &k)) ||
			   !(sv = strided_copy(&s.v, &v)))) {
		rc = mta_fail(MTA_ENOMEM, "out of memory for strided inputs");
		goto out;
	}
	if (!(ref = malloc(cnt * sizeof *ref)) || !(flat = malloc(cnt * sizeof *flat)) ||
	    !(ob = output(p, o->B, o->T, o->strided, &out, &total))) {
		rc = mta_fail(MTA_ENOMEM, "out of memory for the reference check");
		goto out;
	}
	if (cu) { /* packed documents: one call of the packed forward, no binding */
		if ((rc = mta_reference_varlen(p, &q, &k, &v, &s.w, cu, ndocs, ref)))
			goto out;
		rc = r->ctx ? mta_forward_varlen(r->ctx, p, &q, &k, &v, &s.w, cu, ndocs, &out)
			    : mta_backend_forward_varlen(r->be, r->k, p, &q, &k, &v, &s.w, cu, ndocs,
							 &out);
		if (rc)
			goto out;
	} else {
		if ((rc = mta_reference(p, &q, &k, &v, &s.w, ref)))
			goto out;
		double ms;
		if ((rc = bind(r, p, &q, &k, &v, &s.w, &out, &x)))
			goto out;
		bound = 1;
		if ((rc = launch(&x, &ms)) || (rc = fetch(&x)))
			goto out;
	}
	gather(&out, flat);
	if ((rc = mta_compare(flat, ref, cnt, p->dtype, res)))
		mta_wrap(rc, "against the float64 reference at T=%lld, B=%lld%s", (long long)o->T,
			 (long long)o->B, cu ? " (packed documents)" : "");
out:
	if (bound)
		unbind(&x);
	mta_sample_free(&s);
	free(sq);
	free(sk);
	free(sv);
	free(ref);
	free(ob);
	free(flat);
	return rc;
}

int mta_check(const struct mta_runner *r, const struct mta_problem *p,
	      const struct mta_check_opts *o, struct mta_compare *res)
{
	return check(r, p, o, NULL, 0, res);
}

int mta_check_varlen(const struct mta_runner *r, const struct mta_problem *p,
		     const struct mta_check_opts *o, const int64_t *cu_seqlens, int64_t ndocs,
		     struct mta_compare *res)
{
	if (!cu_seqlens)
		return mta_fail(MTA_EINVAL, "packed check: cu_seqlens is missing");
	if (o->B != 1)
		return mta_fail(MTA_EINVAL, "packed check: B must be 1, not %lld", (long long)o->B);
	return check(r, p, o, cu_seqlens, ndocs, res);
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

int mta_time(const struct mta_runner *r, const struct mta_problem *p, int64_t B, int64_t T,
	     unsigned long long seed, int warmup, int reps, struct mta_timing *t)
{
	struct mta_sample s = { 0 };
	struct mta_tensor out;
	struct bound x;
	double *times = NULL, ms;
	float *ob = NULL;
	char *fbuf = NULL;
	size_t total = 0;
	int rc, bound = 0;

	memset(t, 0, sizeof *t);
	t->median_ms = t->p20_ms = t->p80_ms = t->min_ms = NAN;
	if (reps < 1 || warmup < 0)
		return mta_fail(MTA_EINVAL, "timing needs reps >= 1 and warmup >= 0");
	/* the sample first: it refuses sizes whose byte counts overflow */
	if ((rc = mta_sample_make(p, B, T, seed, &s)))
		return rc;
	if (!(ob = output(p, B, T, 0, &out, &total)) || !(times = malloc((size_t)reps * sizeof *times))) {
		rc = mta_fail(MTA_ENOMEM, "out of memory for timing at T=%lld", (long long)T);
		goto out;
	}
	if ((rc = bind(r, p, &s.q, &s.k, &s.v, &s.w, &out, &x)))
		goto out;
	bound = 1;
	for (int i = 0; i < warmup; i++)
		if ((rc = launch(&x, &ms)))
			goto out;
	for (int i = 0; i < reps; i++)
		if ((rc = flush(r, &fbuf, i)) || (rc = launch(&x, &times[i])))
			goto out;
	if ((rc = fetch(&x)))
		goto out;
	for (size_t i = 0; i < total; i++)
		if (!isfinite(ob[i])) {
			rc = mta_fail(MTA_EVERIFY, "timed run at T=%lld gave a non-finite output "
				      "element %zu", (long long)T, i);
			goto out;
		}
	qsort(times, (size_t)reps, sizeof *times, cmp_d);
	t->runs = reps;
	t->min_ms = times[0];
	t->median_ms = pct(times, reps, 0.5);
	t->p20_ms = pct(times, reps, 0.2);
	t->p80_ms = pct(times, reps, 0.8);
out:
	if (bound)
		unbind(&x);
	mta_sample_free(&s);
	free(ob);
	free(times);
	free(fbuf);
	return rc;
}

/* Is every runner's interval against runner 0 narrower than o->width? */
static int narrow_enough(const struct mta_rounds *out, const struct mta_rounds_opts *o)
{
	for (int c = 1; c < out->n; c++) {
		struct mta_ratio r;
		if (mta_paired_ratio(out->ms[c], out->ms[0], out->rounds, &r) || r.hi / r.lo >= 1 + o->width)
			return 0;
	}
	return 1;
}

int mta_time_rounds(const struct mta_runner *r, int n, const struct mta_problem *p, int64_t B,
		    int64_t T, unsigned long long seed, const struct mta_rounds_opts *o,
		    struct mta_rounds *out)
{
	struct mta_sample s = { 0 };
	struct mta_tensor ot;
	struct bound x[MTA_ROUNDS_MAX_RUNNERS];
	float *ob = NULL;
	char *fbuf = NULL;
	size_t total = 0;
	double ms;
	int rc, nbound = 0;

	memset(out, 0, sizeof *out);
	if (n < 2 || n > MTA_ROUNDS_MAX_RUNNERS || o->min_rounds < 2 ||
	    o->max_rounds < o->min_rounds || o->max_rounds > MTA_ROUNDS_MAX || o->warmup < 0)
		return mta_fail(MTA_EINVAL, "paired rounds need 2..%d runners and 2 <= min_rounds <= "
				"max_rounds <= %d (got %d runners, %d..%d rounds)",
				MTA_ROUNDS_MAX_RUNNERS, MTA_ROUNDS_MAX, n, o->min_rounds, o->max_rounds);
	out->n = n;
	if ((rc = mta_sample_make(p, B, T, seed, &s)))
		return rc;
	if (!(ob = output(p, B, T, 0, &ot, &total))) {
		rc = mta_fail(MTA_ENOMEM, "out of memory for timing at T=%lld", (long long)T);
		goto out;
	}
	for (; nbound < n; nbound++)
		if ((rc = bind(&r[nbound], p, &s.q, &s.k, &s.v, &s.w, &ot, &x[nbound])))
			goto out;
	for (int w = 0; w < o->warmup; w++)
		for (int c = 0; c < n; c++)
			if ((rc = launch(&x[c], &ms)))
				goto out;
	double t0 = now_ms();
	while (out->rounds < o->max_rounds) {
		int k = out->rounds;
		for (int i = 0; i < n; i++) {
			int c = (k + i) % n; /* each runner takes each place in turn */
			if ((rc = flush(&r[c], &fbuf, k * n + i)) || (rc = launch(&x[c], &out->ms[c][k])))
				goto out;
		}
		out->rounds++;
		if (out->rounds >= o->min_rounds &&
		    (now_ms() - t0 > 1e3 * o->budget_s || narrow_enough(out, o)))
			break;
	}
out:
	while (nbound > 0)
		unbind(&x[--nbound]);
	mta_sample_free(&s);
	free(ob);
	free(fbuf);
	return rc;
}
