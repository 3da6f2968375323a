/* cpu_util.c: helpers of the CPU kernel tests (contracts in cpu_util.h). */
#include "harness.h"
#include "cpu_util.h"

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

double mt_cpu_case(struct mta_cpu_kernel *k, const struct mta_problem *p, int64_t B, int64_t T,
		   int strided, int nthreads)
{
	struct mta_tensor q, kt, v, o;
	struct mta_weights w;
	const int64_t n = B * T * p->H * p->D, Dp = strided ? p->D + 1 : p->D;
	double err = INFINITY;
	void *qb = mt_tensor(p->dtype, B, T, p->H, p->D, strided, &q);
	void *kb = mt_tensor(p->dtype, B, T, p->Hkv, p->D, strided, &kt);
	void *vb = mt_tensor(p->dtype, B, T, p->Hkv, p->D, strided, &v);
	float *ob = malloc((size_t)(B * T * p->H * Dp) * sizeof *ob), *flat = malloc((size_t)n * sizeof *flat);
	double *ref = malloc((size_t)n * sizeof *ref);
	mt_weights(p, &w);
	if (!qb || !kb || !vb || !ob || !flat || !ref) {
		CHECKF(0, "out of memory");
		goto out;
	}
	for (int64_t i = 0; i < B * T * p->H * Dp; i++)
		ob[i] = NAN;
	mta_tensor_init(&o, ob, MTA_F32, B, T, p->H, p->D);
	if (strided) { /* o as [T][B][H][D+1] */
		o.stride[2] = Dp;
		o.stride[0] = p->H * Dp;
		o.stride[1] = B * p->H * Dp;
	}
	int rc = mta_reference(p, &q, &kt, &v, &w, ref);
	CHECKF(rc == MTA_OK, "reference: %s", mta_last_error());
	int rk = mta_cpu_run(k, p, &q, &kt, &v, &w, &o, nthreads);
	CHECKF(rk == MTA_OK, "mta_cpu_run: %s", mta_last_error());
	if (rc || rk)
		goto out;
	for (int64_t b = 0; b < B; b++)
		for (int64_t t = 0; t < T; t++)
			for (int64_t h = 0; h < p->H; h++)
				for (int64_t d = 0; d < p->D; d++)
					flat[((b * T + t) * p->H + h) * p->D + d] =
						ob[b * o.stride[0] + t * o.stride[1] + h * o.stride[2] + d];
	err = mt_rel_l2_f32(flat, ref, (size_t)n);
out:
	free(qb);
	free(kb);
	free(vb);
	free(ob);
	free(flat);
	free(ref);
	mt_weights_free(&w);
	return err;
}

double mt_cpu_check(const char *key, const char *spec, int64_t B, int64_t T, int strided,
		    int nthreads)
{
	struct mta_problem p;
	struct mta_variant v;
	struct mta_cpu_kernel *k = NULL;
	int rc;
	mt_kcache();
	if ((rc = mta_problem_from_key(key, &p)) ||
	    (rc = spec ? mta_variant_parse(spec, &v) : mta_variant_default(&p, MTA_BACKEND_CPU, &v)) ||
	    (rc = mta_cpu_load(&p, &v, &k))) {
		CHECKF(0, "%s %s: %s", key, spec ? spec : "(default)", mta_last_error());
		return INFINITY;
	}
	double err = mt_cpu_case(k, &p, B, T, strided, nthreads);
	mta_cpu_free(k);
	return err;
}
