/* cpu_util.c: helpers of the CPU kernel tests (contracts in cpu_util.h). */
#include "tests/harness.h"
#include "tests/cpu_util.h"
#include "runtime/core/error.h"

#include <stdint.h>

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
