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
#include "runtime/core/kargs_bwd.h"
#include "runtime/core/decode.h"
#include "runtime/core/error.h"
#include "runtime/core/varlen.h"
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
	double *ref = NULL, *mag = NULL;
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
	    (!cu && !(mag = malloc(cnt * sizeof *mag))) ||
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
		/* with the terms' magnitudes: an output whose terms cancel is
		 * judged on them (mta_compare_mag) */
		if ((rc = mta_reference_mag(p, &q, &k, &v, &s.w, ref, mag)))
			goto out;
		double ms;
		if ((rc = bind(r, p, &q, &k, &v, &s.w, &out, &x)))
			goto out;
		bound = 1;
		if ((rc = launch(&x, &ms)) || (rc = fetch(&x)))
			goto out;
	}
	gather(&out, flat);
	if ((rc = mag ? mta_compare_mag(flat, ref, mag, cnt, p->dtype, res)
		      : mta_compare(flat, ref, cnt, p->dtype, res)))
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
	free(mag);
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

/* ---- the backward (check.h: mta_check_bwd, mta_time_bwd) ---- */

enum { G_N = 11 };
static const char *const gname[G_N] = { "dq", "dk", "dv", "dkq_pre", "dhead_pre", "dkq_post",
					"dhead_post", "dhead_post_linear", "dgn_weight",
					"dgate_w", "dgate_b" };

static int run_fwd_save(const struct mta_runner *r, const struct mta_problem *p,
			const struct mta_tensor *q, const struct mta_tensor *k,
			const struct mta_tensor *v, const struct mta_weights *w,
			struct mta_tensor *o, void *saved)
{
	if (r->ctx)
		return mta_forward_train(r->ctx, p, q, k, v, w, o, saved);
	if (!r->be->fwd_save)
		return mta_fail(MTA_EUNSUPPORTED, "the %s backend has no backward", r->be->name);
	return r->be->fwd_save(r->k, p, q, k, v, w, o, saved);
}

static int run_bwd(const struct mta_runner *r, const struct mta_problem *p,
		   const struct mta_tensor *q, const struct mta_tensor *k,
		   const struct mta_tensor *v, const struct mta_weights *w, const void *saved,
		   const struct mta_tensor *dout, const struct mta_grads *g)
{
	if (r->ctx)
		return mta_backward(r->ctx, p, q, k, v, w, saved, dout, g);
	if (!r->be->backward)
		return mta_fail(MTA_EUNSUPPORTED, "the %s backend has no backward", r->be->name);
	return r->be->backward(r->k, p, q, k, v, w, saved, dout, g);
}

/* Everything one backward check or timing holds; bwd_free releases it. */
struct bwd_case {
	struct mta_sample s;
	struct mta_tensor q, k, v, out, dout;
	void *sq, *sk, *sv, *saved;
	float *ob, *dob, *g[G_N];
	double *e[G_N], *m[G_N]; /* the reference's gradients and their terms' magnitudes */
	struct mta_grads grads;
	struct mta_reference_grads rg, mg; /* rg.mag points at mg */
	size_t total;
};

static void bwd_free(struct bwd_case *c)
{
	mta_sample_free(&c->s);
	free(c->sq);
	free(c->sk);
	free(c->sv);
	free(c->saved);
	free(c->ob);
	free(c->dob);
	for (int i = 0; i < G_N; i++) {
		free(c->g[i]);
		free(c->e[i]);
		free(c->m[i]);
	}
}

/* The next state of the 64-bit linear congruential generator *x (Knuth's MMIX). */
static unsigned long long lcg(unsigned long long *x)
{
	return *x = *x * 6364136223846793005ULL + 1442695040888963407ULL;
}

/* Inputs, dL/do, output, saved state and gradients (poisoned) for (p, B, T); refs: also e[]. */
static int bwd_make(const struct mta_problem *p, int64_t B, int64_t T, int strided,
		    unsigned long long seed, int refs, struct bwd_case *c)
{
	int rc;
	memset(c, 0, sizeof *c);
	if ((rc = mta_sample_make(p, B, T, seed, &c->s)))
		return rc;
	const size_t no = mta_grad_elems(p, B, T, 0);
	const int64_t sb = mta_saved_bytes(p, B, T);
	c->q = c->s.q;
	c->k = c->s.k;
	c->v = c->s.v;
	if (strided && (!(c->sq = strided_copy(&c->s.q, &c->q)) ||
			!(c->sk = strided_copy(&c->s.k, &c->k)) ||
			!(c->sv = strided_copy(&c->s.v, &c->v))))
		goto nomem;
	if (sb < 0 || !(c->saved = malloc((size_t)sb)) || !(c->dob = malloc(no * sizeof *c->dob)) ||
	    !(c->ob = output(p, B, T, strided, &c->out, &c->total)))
		goto nomem;
	/* dL/do: uniform in [-1, 1), never 0, from the seed (not the sample's stream) */
	unsigned long long x = seed;
	lcg(&x);
	for (size_t i = 0; i < no; i++) {
		lcg(&x);
		float f = (float)((double)(x >> 11) * 0x1p-53 * 2 - 1);
		c->dob[i] = f != 0.0f ? f : 0.5f;
	}
	mta_tensor_init(&c->dout, c->dob, MTA_F32, B, T, p->H, p->D);
	for (int i = 0; i < G_N; i++) {
		size_t n = mta_grad_elems(p, B, T, i);
		if (!n)
			continue;
		if (!(c->g[i] = malloc(n * sizeof *c->g[i])) ||
		    (refs && (!(c->e[i] = malloc(n * sizeof *c->e[i])) ||
			      !(c->m[i] = malloc(n * sizeof *c->m[i])))))
			goto nomem;
		for (size_t j = 0; j < n; j++)
			c->g[i][j] = NAN;
	}
	c->grads = (struct mta_grads){ c->g[0], c->g[1], c->g[2], c->g[3], c->g[4], c->g[5],
				       c->g[6], c->g[7], c->g[8], c->g[9], c->g[10] };
	c->mg = (struct mta_reference_grads){ c->m[0], c->m[1], c->m[2], c->m[3], c->m[4],
					      c->m[5], c->m[6], c->m[7], c->m[8], c->m[9],
					      c->m[10], NULL };
	c->rg = (struct mta_reference_grads){ c->e[0], c->e[1], c->e[2], c->e[3], c->e[4],
					      c->e[5], c->e[6], c->e[7], c->e[8], c->e[9],
					      c->e[10], refs ? &c->mg : NULL };
	return MTA_OK;
nomem:
	bwd_free(c);
	return mta_fail(MTA_ENOMEM, "out of memory for a backward check at T=%lld, B=%lld",
			(long long)T, (long long)B);
}

/* One document of a packed check on a backend's kernel (varlen.h, mta_varlen_train). */
static int runner_doc(void *arg, const struct mta_problem *p, const struct mta_tensor *q,
		      const struct mta_tensor *k, const struct mta_tensor *v,
		      const struct mta_weights *w, struct mta_tensor *o, void *saved,
		      const struct mta_tensor *dout, const struct mta_grads *g)
{
	const struct mta_runner *r = arg;
	return o ? run_fwd_save(r, p, q, k, v, w, o, saved)
		 : run_bwd(r, p, q, k, v, w, saved, dout, g);
}

/* a copy of n floats, each moved one ulp up or down as the generator *x says */
static float *wobble(const float *a, size_t n, unsigned long long *x)
{
	float *c = malloc(n * sizeof *c);
	for (size_t i = 0; c && i < n; i++)
		c[i] = nextafterf(a[i], (lcg(x) >> 63) ? -INFINITY : INFINITY);
	return c;
}

/*
 * How far each gradient i of the float64 reference moves when every input
 * and weight of c moves by one float32 ulp: the largest of four draws of
 * ||e' - e|| / ||s|| (s as mta_compare_grad_mag's scale), into cond[i]. No
 * float32 kernel, which rounds each intermediate, can be expected nearer
 * the reference than a few times this. Float32 problems only (the sample's
 * q, k, v are float32).
 */
static int grad_condition(const struct mta_problem *p, const struct bwd_case *c,
			  const int64_t *cu, int64_t ndocs, int64_t B, int64_t T,
			  unsigned long long seed, double cond[G_N])
{
	double *e2[G_N] = { 0 };
	float *wq = NULL, *wk = NULL, *wv = NULL, *ww[G_N] = { 0 };
	unsigned long long x = seed ^ 0x9e3779b97f4a7c15ULL;
	const size_t nq = mta_grad_elems(p, B, T, 0), nkv = mta_grad_elems(p, B, T, 1);
	int rc = MTA_OK;
	for (int i = 0; i < G_N; i++) {
		size_t n = mta_grad_elems(p, B, T, i);
		cond[i] = 0;
		if (n && !(e2[i] = malloc(n * sizeof *e2[i]))) {
			rc = mta_fail(MTA_ENOMEM, "out of memory for the gradients' condition");
			goto out;
		}
	}
	for (int draw = 0; draw < 4; draw++) {
		struct mta_tensor q = c->s.q, k = c->s.k, v = c->s.v;
		struct mta_weights w = c->s.w;
		const float **wp[G_N] = { NULL, NULL, NULL, &w.kq_pre, &w.head_pre, &w.kq_post,
					  &w.head_post, &w.head_post_linear, &w.gn_weight,
					  &w.gate_w, NULL };
		free(wq);
		free(wk);
		free(wv);
		wq = wobble(c->s.q.data, nq, &x);
		wk = wobble(c->s.k.data, nkv, &x);
		wv = wobble(c->s.v.data, nkv, &x);
		if (!wq || !wk || !wv) {
			rc = mta_fail(MTA_ENOMEM, "out of memory for the gradients' condition");
			goto out;
		}
		q.data = wq;
		k.data = wk;
		v.data = wv;
		for (int i = 0; i < G_N; i++) {
			size_t n = mta_grad_elems(p, B, T, i);
			if (!wp[i] || !n || !*wp[i])
				continue;
			free(ww[i]);
			if (!(ww[i] = wobble(*wp[i], n, &x))) {
				rc = mta_fail(MTA_ENOMEM, "out of memory for the gradients' condition");
				goto out;
			}
			*wp[i] = ww[i];
		}
		w.gate_b = nextafterf(w.gate_b_ptr ? *w.gate_b_ptr : w.gate_b,
				      (lcg(&x) >> 63) ? -INFINITY : INFINITY);
		w.gate_b_ptr = NULL; /* the wobbled value, not the array */
		struct mta_reference_grads rg = { e2[0], e2[1], e2[2], e2[3], e2[4], e2[5], e2[6],
						  e2[7], e2[8], e2[9], e2[10], NULL };
		rc = cu ? mta_reference_backward_varlen(p, &q, &k, &v, &w, &c->dout, cu, ndocs, &rg)
			: mta_reference_backward(p, &q, &k, &v, &w, &c->dout, &rg);
		if (rc)
			goto out;
		for (int i = 0; i < G_N; i++) {
			double num = 0, den = 0;
			for (size_t j = 0, n = mta_grad_elems(p, B, T, i); j < n; j++) {
				double s = fmax(fabs(c->e[i][j]), MTA_GRAD_CANCEL * c->m[i][j]);
				num += (e2[i][j] - c->e[i][j]) * (e2[i][j] - c->e[i][j]);
				den += s * s;
			}
			cond[i] = fmax(cond[i], den > 0 ? sqrt(num / den) : sqrt(num));
		}
	}
out:
	for (int i = 0; i < G_N; i++) {
		free(e2[i]);
		free(ww[i]);
	}
	free(wq);
	free(wk);
	free(wv);
	return rc;
}

/* mta_check_bwd, or mta_check_bwd_varlen when cu is set. */
static int check_bwd(const struct mta_runner *r, const struct mta_problem *p,
		     const struct mta_check_opts *o, const int64_t *cu, int64_t ndocs,
		     struct mta_compare *res)
{
	struct bwd_case c;
	double *ref = NULL, *mag = NULL;
	float *flat = NULL;
	int rc;
	if ((rc = bwd_make(p, o->B, o->T, o->strided, o->seed, 1, &c)))
		return rc;
	const size_t cnt = mta_grad_elems(p, o->B, o->T, 0);
	if (!(ref = malloc(cnt * sizeof *ref)) || !(flat = malloc(cnt * sizeof *flat)) ||
	    (!cu && !(mag = malloc(cnt * sizeof *mag)))) {
		rc = mta_fail(MTA_ENOMEM, "out of memory for the reference check");
		goto out;
	}
	const char *packed = cu ? " (packed documents)" : "";
	if (cu) {
		if ((rc = mta_reference_varlen(p, &c.q, &c.k, &c.v, &c.s.w, cu, ndocs, ref)) ||
		    (rc = mta_reference_backward_varlen(p, &c.q, &c.k, &c.v, &c.s.w, &c.dout, cu,
							ndocs, &c.rg)))
			goto out;
		rc = r->ctx ? mta_forward_train_varlen(r->ctx, p, &c.q, &c.k, &c.v, &c.s.w, cu, ndocs,
						       &c.out, c.saved)
			    : mta_varlen_train(p, &c.q, &c.k, &c.v, &c.s.w, &c.out, c.saved, NULL,
					       NULL, cu, ndocs, runner_doc, (void *)r);
	} else {
		if ((rc = mta_reference_mag(p, &c.q, &c.k, &c.v, &c.s.w, ref, mag)) ||
		    (rc = mta_reference_backward(p, &c.q, &c.k, &c.v, &c.s.w, &c.dout, &c.rg)))
			goto out;
		rc = run_fwd_save(r, p, &c.q, &c.k, &c.v, &c.s.w, &c.out, c.saved);
	}
	if (rc)
		goto out;
	gather(&c.out, flat);
	if ((rc = mag ? mta_compare_mag(flat, ref, mag, cnt, p->dtype, res)
		      : mta_compare(flat, ref, cnt, p->dtype, res))) {
		mta_wrap(rc, "the saving forward's output against the float64 reference at T=%lld, "
			 "B=%lld%s", (long long)o->T, (long long)o->B, packed);
		goto out;
	}
	if (cu)
		rc = r->ctx ? mta_backward_varlen(r->ctx, p, &c.q, &c.k, &c.v, &c.s.w, c.saved,
						  &c.dout, cu, ndocs, &c.grads)
			    : mta_varlen_train(p, &c.q, &c.k, &c.v, &c.s.w, NULL, c.saved, &c.dout,
					       &c.grads, cu, ndocs, runner_doc, (void *)r);
	else
		rc = run_bwd(r, p, &c.q, &c.k, &c.v, &c.s.w, c.saved, &c.dout, &c.grads);
	if (rc)
		goto out;
	double worst = -1, cond[G_N];
	int have_cond = 0;
	for (int i = 0; i < G_N; i++) {
		size_t n = mta_grad_elems(p, o->B, o->T, i);
		struct mta_compare cmp;
		if (!n)
			continue;
		rc = mta_compare_grad_mag(c.g[i], c.e[i], c.m[i], n, p->dtype, &cmp);
		/*
		 * float32, every element within its bound, the relative L2 error
		 * alone beyond 1e-4: the draw may be ill-conditioned (T=2 with the
		 * group norm once moved dq by 1.3e-4 of its size). The bound then
		 * is 8x the distance an ulp of the inputs moves the reference.
		 */
		if (rc == MTA_EVERIFY && p->dtype == MTA_F32 && cmp.bad == 0 &&
		    isfinite(cmp.rel_l2)) {
			/* every gradient's, once: the reference backward gives them all */
			if (!have_cond &&
			    (rc = grad_condition(p, &c, cu, ndocs, o->B, o->T, o->seed, cond)))
				goto out;
			have_cond = 1;
			if (cmp.rel_l2 <= 8 * cond[i]) {
				cmp.tol = 8 * cond[i];
				rc = mta_done(MTA_OK);
			} else {
				rc = mta_fail(MTA_EVERIFY, "relative L2 error %.3g exceeds %g and 8x "
					      "the %.3g an ulp of the inputs moves the reference "
					      "(every element within its bound)", cmp.rel_l2, cmp.tol,
					      cond[i]);
			}
		}
		if (rc) {
			if (res)
				*res = cmp;
			mta_wrap(rc, "gradient %s against the float64 reference backward at T=%lld, "
				 "B=%lld%s", gname[i], (long long)o->T, (long long)o->B, packed);
			goto out;
		}
		if (cmp.rel_l2 > worst) {
			worst = cmp.rel_l2;
			if (res)
				*res = cmp;
		}
	}
out:
	bwd_free(&c);
	free(ref);
	free(mag);
	free(flat);
	return rc;
}

int mta_check_bwd(const struct mta_runner *r, const struct mta_problem *p,
		  const struct mta_check_opts *o, struct mta_compare *res)
{
	return check_bwd(r, p, o, NULL, 0, res);
}

int mta_check_bwd_varlen(const struct mta_runner *r, const struct mta_problem *p,
			 const struct mta_check_opts *o, const int64_t *cu_seqlens, int64_t ndocs,
			 struct mta_compare *res)
{
	if (!cu_seqlens)
		return mta_fail(MTA_EINVAL, "packed backward check: cu_seqlens is missing");
	if (o->B != 1)
		return mta_fail(MTA_EINVAL, "packed backward check: B must be 1, not %lld",
				(long long)o->B);
	return check_bwd(r, p, o, cu_seqlens, ndocs, res);
}

int mta_time_bwd(const struct mta_runner *r, const struct mta_problem *p, int64_t B, int64_t T,
		 unsigned long long seed, int warmup, int reps, struct mta_timing *t)
{
	struct bwd_case c;
	char *fbuf = NULL;
	double *ms = NULL;
	int rc;
	memset(t, 0, sizeof *t);
	if (reps < 1 || warmup < 0)
		return mta_fail(MTA_EINVAL, "timing the backward: expected reps >= 1, warmup >= 0");
	if ((rc = bwd_make(p, B, T, 0, seed, 0, &c)))
		return rc;
	if (!(ms = malloc((size_t)reps * sizeof *ms))) {
		rc = mta_fail(MTA_ENOMEM, "out of memory");
		goto out;
	}
	if ((rc = run_fwd_save(r, p, &c.q, &c.k, &c.v, &c.s.w, &c.out, c.saved)))
		goto out;
	for (int i = 0; i < warmup + reps; i++) {
		if ((rc = flush(r, &fbuf, i)))
			goto out;
		double t0 = now_ms();
		if ((rc = run_bwd(r, p, &c.q, &c.k, &c.v, &c.s.w, c.saved, &c.dout, &c.grads)))
			goto out;
		if (i >= warmup)
			ms[i - warmup] = now_ms() - t0;
	}
	for (size_t x = 0; x < mta_grad_elems(p, B, T, 0); x++)
		if (!isfinite(c.g[0][x])) {
			rc = mta_fail(MTA_EVERIFY, "timing the backward: dq[%zu] is %g", x,
				      (double)c.g[0][x]);
			goto out;
		}
	qsort(ms, (size_t)reps, sizeof *ms, cmp_d);
	t->median_ms = pct(ms, reps, 0.5);
	t->p20_ms = pct(ms, reps, 0.2);
	t->p80_ms = pct(ms, reps, 0.8);
	t->min_ms = ms[0];
	t->runs = reps;
out:
	bwd_free(&c);
	free(fbuf);
	free(ms);
	return rc;
}

/* Is every gradient of c (of p at (B, T)) finite? MTA_EVERIFY naming the first that is not. */
static int grads_finite(const struct bwd_case *c, const struct mta_problem *p, int64_t B,
			int64_t T, const char *what)
{
	for (int i = 0; i < G_N; i++)
		for (size_t x = 0, n = mta_grad_elems(p, B, T, i); x < n; x++)
			if (!isfinite(c->g[i][x]))
				return mta_fail(MTA_EVERIFY, "%s: %s[%zu] is %g", what, gname[i], x,
						(double)c->g[i][x]);
	return MTA_OK;
}

int mta_time_rounds_bwd(const struct mta_runner *r, int n, const struct mta_problem *p,
			int64_t B, int64_t T, unsigned long long seed,
			const struct mta_rounds_opts *o, struct mta_rounds *out)
{
	struct bwd_case c;
	void *saved[MTA_ROUNDS_MAX_RUNNERS] = { 0 };
	char *fbuf = NULL;
	double ms;
	int rc;

	memset(out, 0, sizeof *out);
	if (n < 2 || n > MTA_ROUNDS_MAX_RUNNERS || o->min_rounds < 2 ||
	    o->max_rounds < o->min_rounds || o->max_rounds > MTA_ROUNDS_MAX || o->warmup < 0)
		return mta_fail(MTA_EINVAL, "paired rounds need 2..%d runners and 2 <= min_rounds <= "
				"max_rounds <= %d (got %d runners, %d..%d rounds)",
				MTA_ROUNDS_MAX_RUNNERS, MTA_ROUNDS_MAX, n, o->min_rounds, o->max_rounds);
	out->n = n;
	if ((rc = bwd_make(p, B, T, 0, seed, 0, &c)))
		return rc;
	/* each runner's own saved state: the layout is the ABI's, its making the runner's */
	const int64_t sb = mta_saved_bytes(p, B, T);
	for (int i = 0; i < n; i++) {
		if (!(saved[i] = malloc((size_t)sb))) {
			rc = mta_fail(MTA_ENOMEM, "out of memory for the saved state at T=%lld",
				      (long long)T);
			goto out;
		}
		if ((rc = run_fwd_save(&r[i], p, &c.q, &c.k, &c.v, &c.s.w, &c.out, saved[i])))
			goto out;
	}
	for (int w = 0; w < o->warmup; w++)
		for (int i = 0; i < n; i++)
			if ((rc = run_bwd(&r[i], p, &c.q, &c.k, &c.v, &c.s.w, saved[i], &c.dout,
					  &c.grads)))
				goto out;
	double t0 = now_ms();
	while (out->rounds < o->max_rounds) {
		int k = out->rounds;
		for (int i = 0; i < n; i++) {
			int x = (k + i) % n; /* each runner takes each place in turn */
			if ((rc = flush(&r[x], &fbuf, k * n + i)))
				goto out;
			ms = now_ms();
			if ((rc = run_bwd(&r[x], p, &c.q, &c.k, &c.v, &c.s.w, saved[x], &c.dout,
					  &c.grads)))
				goto out;
			out->ms[x][k] = now_ms() - ms;
			if (k == 0 && (rc = grads_finite(&c, p, B, T, "timing the backward")))
				goto out;
		}
		out->rounds++;
		if (out->rounds >= o->min_rounds &&
		    (now_ms() - t0 > 1e3 * o->budget_s || narrow_enough(out, o)))
			break;
	}
out:
	for (int i = 0; i < n; i++)
		free(saved[i]);
	bwd_free(&c);
	free(fbuf);
	return rc;
}

/* ---- decode (check.h: mta_check_decode, mta_time_decode) ---- */

/* A decode cache of runner r for B sequences of p. */
static int dec_cache(const struct mta_runner *r, const struct mta_decoder *dec,
		     const struct mta_problem *p, int64_t B, mta_cache **c)
{
	if (r->ctx)
		return mta_cache_create_ctx(r->ctx, p, B, c);
	if (!dec)
		return mta_fail(MTA_EINVAL, "decode: the runner has no decode kernel");
	return mta_cache_create_kernel(p, B, dec, c);
}

/* t's rows [r0, r0 + n) as a view. */
static struct mta_tensor rows(const struct mta_tensor *t, int64_t r0, int64_t n)
{
	struct mta_tensor x = *t;
	x.data = (char *)t->data + (size_t)(r0 * t->stride[1]) * mta_dtype_size(t->dtype);
	x.shape[1] = n;
	return x;
}

/* Row pos[b] of sequence b of t (contiguous, from the sample) into row b of dst ([B,1,..]). */
static void gather_rows(const struct mta_tensor *t, const int64_t *pos, struct mta_tensor *dst)
{
	const size_t es = mta_dtype_size(t->dtype), row = (size_t)(t->shape[2] * t->shape[3]) * es;
	for (int64_t b = 0; b < t->shape[0]; b++)
		memcpy((char *)dst->data + (size_t)b * row,
		       (const char *)t->data + (size_t)(b * t->stride[0] + pos[b] * t->stride[1]) * es,
		       row);
}

int mta_check_decode(const struct mta_runner *r, const struct mta_decoder *dec,
		     const struct mta_problem *p, const struct mta_check_opts *o,
		     struct mta_compare *res)
{
	const int64_t B = o->B, T = o->T, H = p->H, D = p->D;
	struct mta_sample s = { 0 };
	struct mta_tensor out, q1, k1, v1, o1;
	mta_cache *c = NULL;
	double *ref = NULL;
	float *ob = NULL, *b1 = NULL;
	void *bq = NULL, *bk = NULL, *bv = NULL;
	int64_t *n_new = NULL, *lens = NULL;
	int rc;

	if ((rc = mta_sample_make(p, B, T, o->seed, &s)))
		return rc;
	const size_t cnt = (size_t)(B * T * H * D), es = mta_dtype_size(p->dtype);
	if (!(ref = malloc(cnt * sizeof *ref)) || !(ob = malloc(cnt * sizeof *ob)) ||
	    !(b1 = malloc((size_t)(B * H * D) * sizeof *b1)) ||
	    !(bq = malloc((size_t)(B * H * D) * es)) || !(bk = malloc((size_t)(B * p->Hkv * D) * es)) ||
	    !(bv = malloc((size_t)(B * p->Hkv * D) * es)) ||
	    !(n_new = calloc((size_t)B, sizeof *n_new)) || !(lens = calloc((size_t)B, sizeof *lens))) {
		rc = mta_fail(MTA_ENOMEM, "out of memory for a decode check at T=%lld, B=%lld",
			      (long long)T, (long long)B);
		goto out;
	}
	for (size_t i = 0; i < cnt; i++)
		ob[i] = NAN;
	mta_tensor_init(&out, ob, MTA_F32, B, T, H, D);
	mta_tensor_init(&q1, bq, p->dtype, B, 1, H, D);
	mta_tensor_init(&k1, bk, p->dtype, B, 1, p->Hkv, D);
	mta_tensor_init(&v1, bv, p->dtype, B, 1, p->Hkv, D);
	mta_tensor_init(&o1, b1, MTA_F32, B, 1, H, D);
	if ((rc = mta_reference(p, &s.q, &s.k, &s.v, &s.w, ref)) || (rc = dec_cache(r, dec, p, B, &c)))
		goto out;
	/* the prefill: sequence b takes T/2 - b tokens (at least 0) in one chunk */
	for (int64_t b = 0; b < B; b++)
		n_new[b] = T / 2 - b > 0 ? T / 2 - b : 0;
	if (T / 2 > 0) {
		struct mta_tensor qc = rows(&s.q, 0, T / 2), kc = rows(&s.k, 0, T / 2),
				  vc = rows(&s.v, 0, T / 2), oc = rows(&out, 0, T / 2);
		if ((rc = mta_decode(c, &qc, &kc, &vc, &s.w, n_new, &oc)))
			goto out;
	}
	/* then one token per call, each sequence at its own position */
	for (;;) {
		int any = 0;
		if ((rc = mta_cache_seqlens(c, lens)))
			goto out;
		for (int64_t b = 0; b < B; b++) {
			n_new[b] = lens[b] < T;
			any |= (int)n_new[b];
			if (!n_new[b])
				lens[b] = T - 1; /* a row to copy; the cache does not take it */
		}
		if (!any)
			break;
		gather_rows(&s.q, lens, &q1);
		gather_rows(&s.k, lens, &k1);
		gather_rows(&s.v, lens, &v1);
		for (int64_t i = 0; i < B * H * D; i++)
			b1[i] = NAN;
		if ((rc = mta_decode(c, &q1, &k1, &v1, &s.w, n_new, &o1)))
			goto out;
		for (int64_t b = 0; b < B; b++)
			if (n_new[b])
				memcpy(ob + (size_t)((b * T + lens[b]) * H * D), b1 + (size_t)(b * H * D),
				       (size_t)(H * D) * sizeof *ob);
	}
	if ((rc = mta_compare(ob, ref, cnt, p->dtype, res)))
		mta_wrap(rc, "decode against the float64 reference at T=%lld, B=%lld", (long long)T,
			 (long long)B);
out:
	mta_cache_free(c);
	mta_sample_free(&s);
	free(ref);
	free(ob);
	free(b1);
	free(bq);
	free(bk);
	free(bv);
	free(n_new);
	free(lens);
	return rc;
}

/* Everything one runner's decode timing holds: its cache filled to T-1, the token's views. */
struct dec_case {
	mta_cache *c;
	struct mta_tensor q1, k1, v1, o1;
	float *ob;
};

static int dec_make(const struct mta_runner *r, const struct mta_decoder *dec,
		    const struct mta_problem *p, const struct mta_sample *s, int64_t B, int64_t T,
		    struct dec_case *x)
{
	int rc;
	memset(x, 0, sizeof *x);
	if (!(x->ob = malloc((size_t)(B * p->H * p->D) * sizeof *x->ob)))
		return mta_fail(MTA_ENOMEM, "out of memory timing decode");
	mta_tensor_init(&x->o1, x->ob, MTA_F32, B, 1, p->H, p->D);
	x->q1 = rows(&s->q, T - 1, 1);
	x->k1 = rows(&s->k, T - 1, 1);
	x->v1 = rows(&s->v, T - 1, 1);
	if ((rc = dec_cache(r, dec, p, B, &x->c)))
		return rc;
	if (T > 1) {
		struct mta_tensor qc = rows(&s->q, 0, T - 1), kc = rows(&s->k, 0, T - 1),
				  vc = rows(&s->v, 0, T - 1);
		if ((rc = mta_cache_fill(x->c, &qc, &kc, &vc, &s->w, NULL)))
			return rc;
	}
	return MTA_OK;
}

static void dec_free(struct dec_case *x)
{
	mta_cache_free(x->c);
	free(x->ob);
}

/* One token at length T, timed into *ms, then dropped again. */
static int dec_token(struct dec_case *x, const struct mta_weights *w, double *ms)
{
	double t0 = now_ms();
	int rc = mta_decode(x->c, &x->q1, &x->k1, &x->v1, w, NULL, &x->o1);
	*ms = now_ms() - t0;
	mta_cache_drop_last(x->c);
	return rc;
}

static int dec_finite(const struct dec_case *x, const struct mta_problem *p, int64_t B, int64_t T)
{
	for (int64_t i = 0; i < B * p->H * p->D; i++)
		if (!isfinite(x->ob[i]))
			return mta_fail(MTA_EVERIFY, "timing decode at T=%lld: output element %lld "
					"is %g", (long long)T, (long long)i, (double)x->ob[i]);
	return MTA_OK;
}

int mta_time_decode(const struct mta_runner *r, const struct mta_decoder *dec,
		    const struct mta_problem *p, int64_t B, int64_t T, unsigned long long seed,
		    int warmup, int reps, struct mta_timing *t)
{
	struct mta_sample s = { 0 };
	struct dec_case x = { 0 };
	char *fbuf = NULL;
	double *ms = NULL, m;
	int rc;
	memset(t, 0, sizeof *t);
	t->median_ms = t->p20_ms = t->p80_ms = t->min_ms = NAN;
	if (reps < 1 || warmup < 0)
		return mta_fail(MTA_EINVAL, "timing decode: expected reps >= 1, warmup >= 0");
	if ((rc = mta_sample_make(p, B, T, seed, &s)))
		return rc;
	if (!(ms = malloc((size_t)reps * sizeof *ms))) {
		rc = mta_fail(MTA_ENOMEM, "out of memory");
		goto out;
	}
	if ((rc = dec_make(r, dec, p, &s, B, T, &x)))
		goto out;
	for (int i = 0; i < warmup; i++)
		if ((rc = dec_token(&x, &s.w, &m)))
			goto out;
	for (int i = 0; i < reps; i++)
		if ((rc = flush(r, &fbuf, i)) || (rc = dec_token(&x, &s.w, &ms[i])))
			goto out;
	if ((rc = dec_finite(&x, p, B, T)))
		goto out;
	qsort(ms, (size_t)reps, sizeof *ms, cmp_d);
	t->runs = reps;
	t->min_ms = ms[0];
	t->median_ms = pct(ms, reps, 0.5);
	t->p20_ms = pct(ms, reps, 0.2);
	t->p80_ms = pct(ms, reps, 0.8);
out:
	dec_free(&x);
	mta_sample_free(&s);
	free(ms);
	free(fbuf);
	return rc;
}

int mta_time_rounds_decode(const struct mta_runner *r, const struct mta_decoder *dec, int n,
			   const struct mta_problem *p, int64_t B, int64_t T,
			   unsigned long long seed, const struct mta_rounds_opts *o,
			   struct mta_rounds *out)
{
	struct mta_sample s = { 0 };
	struct dec_case x[MTA_ROUNDS_MAX_RUNNERS];
	char *fbuf = NULL;
	double ms;
	int rc, made = 0;

	memset(out, 0, sizeof *out);
	if (n < 2 || n > MTA_ROUNDS_MAX_RUNNERS || o->min_rounds < 2 ||
	    o->max_rounds < o->min_rounds || o->max_rounds > MTA_ROUNDS_MAX || o->warmup < 0)
		return mta_fail(MTA_EINVAL, "paired rounds need 2..%d runners and 2 <= min_rounds <= "
				"max_rounds <= %d (got %d runners, %d..%d rounds)",
				MTA_ROUNDS_MAX_RUNNERS, MTA_ROUNDS_MAX, n, o->min_rounds, o->max_rounds);
	out->n = n;
	if ((rc = mta_sample_make(p, B, T, seed, &s)))
		return rc;
	for (; made < n; made++) /* each runner's own cache of the same tokens */
		if ((rc = dec_make(&r[made], dec ? &dec[made] : NULL, p, &s, B, T, &x[made]))) {
			made++;
			goto out;
		}
	for (int w = 0; w < o->warmup; w++)
		for (int i = 0; i < n; i++)
			if ((rc = dec_token(&x[i], &s.w, &ms)))
				goto out;
	double t0 = now_ms();
	while (out->rounds < o->max_rounds) {
		int k = out->rounds;
		for (int i = 0; i < n; i++) {
			int c = (k + i) % n; /* each runner takes each place in turn */
			if ((rc = flush(&r[c], &fbuf, k * n + i)) ||
			    (rc = dec_token(&x[c], &s.w, &out->ms[c][k])) ||
			    (k == 0 && (rc = dec_finite(&x[c], p, B, T))))
				goto out;
		}
		out->rounds++;
		if (out->rounds >= o->min_rounds &&
		    (now_ms() - t0 > 1e3 * o->budget_s || narrow_enough(out, o)))
			break;
	}
out:
	while (made > 0)
		dec_free(&x[--made]);
	mta_sample_free(&s);
	free(fbuf);
	return rc;
}
