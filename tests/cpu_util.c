/* cpu_util.c: helpers of the CPU kernel tests (contracts in cpu_util.h). */
#include "tests/harness.h"
#include "tests/cpu_util.h"
#include "runtime/core/error.h"

#include <math.h>
#include <stdint.h>
#include <string.h>

void mt_kcache(void)
{
	setenv("MTATUNE_CACHE", "build/kcache", 0);
}

static uint16_t round16(int dtype, float x)
{
	return dtype == MTA_BF16 ? mta_f32_to_bf16(x) : mta_f32_to_f16(x);
}

void *mt_tensor(int dtype, int64_t B, int64_t T, int64_t heads, int64_t D, int strided,
		struct mta_tensor *t)
{
	const int64_t Dp = strided ? D + 2 : D, n = B * T * heads * Dp;
	size_t es = mta_dtype_size(dtype);
	void *buf = malloc((size_t)n * es);
	if (!buf)
		return NULL;
	mta_tensor_init(t, buf, dtype, B, T, heads, D);
	if (strided) {
		t->stride[0] = heads * T * Dp;
		t->stride[2] = T * Dp;
		t->stride[1] = Dp;
	}
	for (int64_t i = 0; i < n; i++) {
		float x = (float)mt_uniform();
		if (strided && i % Dp >= D)
			x = NAN;
		if (dtype == MTA_F32)
			((float *)buf)[i] = x;
		else
			((uint16_t *)buf)[i] = round16(dtype, x);
	}
	return buf;
}

static float *rnd(size_t n, double amp)
{
	float *a = malloc(n * sizeof *a);
	for (size_t i = 0; a && i < n; i++)
		a[i] = (float)(amp * mt_uniform());
	return a;
}

void mt_weights(const struct mta_problem *p, struct mta_weights *w)
{
	const size_t H = (size_t)p->H;
	memset(w, 0, sizeof *w);
	/* amplitudes keep logits of order one after convolution and mixing */
	if (p->cq)
		w->kq_pre = rnd(H * (size_t)(p->cq * p->ck), 1.0);
	if (p->head_pre)
		w->head_pre = rnd(H * H, 1.0);
	if (p->cq2)
		w->kq_post = rnd(H * (size_t)(p->cq2 * p->ck2), 1.0);
	if (p->head_post == MTA_HPOST_CONV)
		w->head_post = rnd(H * (size_t)p->hc, 1.0);
	if (p->head_post == MTA_HPOST_LINEAR)
		w->head_post_linear = rnd(H * H, 1.0);
	if (p->gn)
		w->gn_weight = rnd((size_t)p->D, 1.0);
	if (p->gate)
		w->gate_w = rnd((size_t)p->D, 1.0);
	w->gate_b = (float)mt_uniform();
	w->layer_id = 3;
}

void mt_weights_free(struct mta_weights *w)
{
	free((void *)w->kq_pre);
	free((void *)w->head_pre);
	free((void *)w->kq_post);
	free((void *)w->head_post);
	free((void *)w->head_post_linear);
	free((void *)w->gn_weight);
	free((void *)w->gate_w);
}

double mt_kernel_check(const struct mta_backend *be, const char *key, const char *spec,
		       int64_t B, int64_t T, int strided, int nthreads)
{
	struct mta_problem p;
	struct mta_variant v;
	struct mta_runner r = { be, NULL, NULL, NULL };
	struct mta_check_opts o = { B, T, mt_seed() ^ (unsigned long long)T, strided };
	struct mta_compare cmp;
	double err = INFINITY;
	int rc;
	mt_kcache();
	if ((rc = mta_problem_from_key(key, &p)) ||
	    (rc = spec ? mta_variant_parse(spec, &v) : mta_variant_default(&p, be->variants, &v)) ||
	    (rc = be->open(0, nthreads, &r.dev)) ||
	    (rc = be->load(r.dev, NULL, &p, &v, NULL, 0, &r.k))) {
		CHECKF(0, "%s %s %s: %s", be->name, key, spec ? spec : "(default)", mta_last_error());
		goto out;
	}
	cmp.rel_l2 = INFINITY;
	cmp.bad = 1;
	rc = mta_check(&r, &p, &o, &cmp);
	/* the element-wise bound here; the relative L2 error goes back to the caller */
	CHECKF(rc == MTA_OK || rc == MTA_EVERIFY, "%s %s: %s", key, spec ? spec : "(default)",
	       mta_last_error());
	CHECKF(cmp.bad == 0, "%s %s B=%lld T=%lld: %s", key, spec ? spec : "(default)",
	       (long long)B, (long long)T, mta_last_error());
	if (rc == MTA_OK || rc == MTA_EVERIFY)
		err = cmp.rel_l2;
out:
	be->unload(r.k);
	be->close(r.dev);
	return err;
}

double mt_cpu_check(const char *key, const char *spec, int64_t B, int64_t T, int strided,
		    int nthreads)
{
	return mt_kernel_check(&mta_backend_cpu, key, spec, B, T, strided, nthreads);
}

void mt_cpu_cases(const struct mt_kcase *c, int n)
{
	for (int i = 0; i < n; i++) {
		struct mta_problem p;
		REQUIRE(mta_problem_from_key(c[i].key, &p) == MTA_OK);
		double tol = mta_tolerance(p.dtype);
		double err = mt_cpu_check(c[i].key, c[i].spec, c[i].B, c[i].T, c[i].strided,
					  c[i].threads);
		CHECKF(err < tol, "%s %s B=%d T=%d: rel L2 %g, expected < %g", c[i].key,
		       c[i].spec ? c[i].spec : "(default)", c[i].B, c[i].T, err, tol);
	}
}

/*
 * A copy of n floats, each moved by one ulp up or down at random (every
 * element moves: a relative draw of FLT_EPSILON would round most back).
 */
static float *wobble(const float *a, size_t n)
{
	float *c = a ? malloc(n * sizeof *c) : NULL;
	for (size_t i = 0; c && i < n; i++)
		c[i] = nextafterf(a[i], mt_uniform() < 0 ? -INFINITY : INFINITY);
	return c;
}

/* a copy of tensor t's memory (every element its strides reach), wobbled when float32 */
static void *wobble_tensor(const struct mta_tensor *t, struct mta_tensor *c)
{
	size_t n = 1;
	for (int d = 0; d < 4; d++)
		n += (size_t)((t->shape[d] - 1) * t->stride[d]);
	*c = *t;
	if (t->dtype == MTA_F32)
		return c->data = wobble(t->data, n);
	size_t bytes = n * mta_dtype_size(t->dtype);
	if ((c->data = malloc(bytes)))
		memcpy(c->data, t->data, bytes);
	return c->data;
}

/* one draw of mt_condition's distance */
static double condition1(const struct mta_problem *p, const struct mta_tensor *q,
			 const struct mta_tensor *k, const struct mta_tensor *v,
			 const struct mta_weights *w, const double *ref)
{
	const size_t H = (size_t)p->H, n = (size_t)(q->shape[0] * q->shape[1]) * H *
		(size_t)p->D;
	struct mta_weights ww = *w;
	struct mta_tensor qc, kc, vc;
	double *r = malloc(n * sizeof *r), s = INFINITY;
	ww.kq_pre = wobble(w->kq_pre, H * (size_t)(p->cq * p->ck));
	ww.head_pre = wobble(w->head_pre, H * H);
	ww.kq_post = wobble(w->kq_post, H * (size_t)(p->cq2 * p->ck2));
	ww.head_post = wobble(w->head_post, H * (size_t)p->hc);
	ww.head_post_linear = wobble(w->head_post_linear, H * H);
	ww.gn_weight = wobble(w->gn_weight, (size_t)p->D);
	ww.gate_w = wobble(w->gate_w, (size_t)p->D);
	void *bq = wobble_tensor(q, &qc), *bk = wobble_tensor(k, &kc), *bv = wobble_tensor(v, &vc);
	if (r && bq && bk && bv && mta_reference(p, &qc, &kc, &vc, &ww, r) == MTA_OK) {
		double num = 0, den = 0;
		for (size_t i = 0; i < n; i++) {
			num += (r[i] - ref[i]) * (r[i] - ref[i]);
			den += ref[i] * ref[i];
		}
		s = den > 0 ? sqrt(num / den) : sqrt(num);
	}
	free(r);
	free(bq);
	free(bk);
	free(bv);
	mt_weights_free(&ww);
	return s;
}

double mt_condition(const struct mta_problem *p, const struct mta_tensor *q,
		    const struct mta_tensor *k, const struct mta_tensor *v,
		    const struct mta_weights *w, const double *ref)
{
	double s = 0;
	/* the largest of four draws: one draw's ulps can cancel each other */
	for (int i = 0; i < 4; i++)
		s = fmax(s, condition1(p, q, k, v, w, ref));
	return s;
}
