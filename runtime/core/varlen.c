/*
 * varlen.c: packed documents (mta.h, "packed documents"): the check of
 * cu_seqlens, document views, and the float64 reference of the packed
 * forward.
 *
 * The reference runs each document through mta_reference on a view of the
 * packed tensors. That is the definition of the packed forward ("as if each
 * document were run alone"), so the judge of the packed kernels is the
 * judge of the plain ones applied document by document, nothing new.
 *
 * The packed backward is the same loop (mta_varlen_train, with the step
 * each runtime supplies, and mta_reference_backward_varlen): each document
 * through the whole-sequence backward on views, its weight gradients
 * summed in document order. It is written once here, below the runtimes,
 * so mtatune's runtime and an exported library (and the harness, on a
 * backend's kernel) share it, and every backend with a backward has it.
 */
#include "runtime/core/varlen.h"
#include "runtime/core/error.h"
#include "runtime/core/kargs_bwd.h"

#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

int mta_check_cu_seqlens(const int64_t *cu, int64_t ndocs, int64_t total_T)
{
	if (!cu)
		return mta_fail(MTA_EINVAL, "cu_seqlens is missing");
	if (ndocs < 1)
		return mta_fail(MTA_EINVAL, "cu_seqlens has %" PRId64 " elements, expected at least "
				"2 (ndocs+1 offsets, 0 first, total_T last)", ndocs + 1);
	if (cu[0] != 0)
		return mta_fail(MTA_EINVAL, "cu_seqlens[0] is %" PRId64 ", expected 0", cu[0]);
	for (int64_t d = 0; d < ndocs; d++)
		if (cu[d + 1] < cu[d])
			return mta_fail(MTA_EINVAL, "cu_seqlens decreases at index %" PRId64 " (%" PRId64
					" after %" PRId64 "); expected non-decreasing offsets",
					d + 1, cu[d + 1], cu[d]);
	if (cu[ndocs] != total_T)
		return mta_fail(MTA_EINVAL, "cu_seqlens ends with %" PRId64 " (index %" PRId64 "), "
				"expected total_T = %" PRId64 " (the packed length of q, k, v)",
				cu[ndocs], ndocs, total_T);
	return mta_done(MTA_OK);
}

void mta_cu_seqlens_from_i32(const int32_t *in, int64_t n, int64_t *out)
{
	for (int64_t i = 0; i < n; i++)
		out[i] = in[i];
}

int mta_varlen_check(const struct mta_problem *p, const struct mta_tensor *q,
		     const struct mta_tensor *k, const struct mta_tensor *v,
		     const struct mta_tensor *o, const int64_t *cu, int64_t ndocs, int64_t *tmax)
{
	int64_t B, T;
	int rc;
	if ((rc = mta_check_tensors(p, q, k, v, o, &B, &T)))
		return rc;
	if (B != 1)
		return mta_fail(MTA_ESHAPE, "packed documents take q, k, v with B=1 "
				"([1,total_T,H|Hkv,D]), not B=%" PRId64, B);
	if ((rc = mta_check_cu_seqlens(cu, ndocs, T)))
		return rc;
	int64_t m = 0;
	for (int64_t d = 0; d < ndocs; d++)
		m = cu[d + 1] - cu[d] > m ? cu[d + 1] - cu[d] : m;
	if (tmax)
		*tmax = m;
	return MTA_OK;
}

void mta_varlen_view(const struct mta_tensor *t, int64_t start, int64_t len,
		     struct mta_tensor *out)
{
	*out = *t;
	out->data = (char *)t->data + (size_t)(start * t->stride[1]) * mta_dtype_size(t->dtype);
	out->shape[1] = len;
}

int mta_reference_varlen(const struct mta_problem *p, const struct mta_tensor *q,
			 const struct mta_tensor *k, const struct mta_tensor *v,
			 const struct mta_weights *w, const int64_t *cu, int64_t ndocs,
			 double *out)
{
	int rc;
	if ((rc = mta_varlen_check(p, q, k, v, NULL, cu, ndocs, NULL)))
		return rc;
	if (!out)
		return mta_fail(MTA_EINVAL, "reference: no output buffer");
	for (int64_t d = 0; d < ndocs; d++) {
		struct mta_tensor qd, kd, vd;
		const int64_t s = cu[d], n = cu[d + 1] - cu[d];
		if (!n)
			continue;
		mta_varlen_view(q, s, n, &qd);
		mta_varlen_view(k, s, n, &kd);
		mta_varlen_view(v, s, n, &vd);
		if ((rc = mta_reference(p, &qd, &kd, &vd, w, out + (size_t)s * (size_t)p->H * (size_t)p->D)))
			return mta_wrap(rc, "document %" PRId64 " (rows %" PRId64 "..%" PRId64 ")",
					d, s, s + n);
	}
	return mta_done(MTA_OK);
}

/* ---- the packed backward ---- */

/* The weight gradients, in struct mta_grads' order after dv. */
enum { NW = 8 };

/* Elements of weight gradient i (0..NW) of p; 0 when p does not use it. */
static size_t wcount(const struct mta_problem *p, int i)
{
	return mta_grad_elems(p, 1, 1, 3 + i); /* weights follow dq, dk, dv */
}

/* The NW weight-gradient pointers of either gradients struct, in order. */
#define WEIGHT_GRADS(g) { (g)->kq_pre, (g)->head_pre, (g)->kq_post, (g)->head_post, \
			  (g)->head_post_linear, (g)->gn_weight, (g)->gate_w, (g)->gate_b }

/* dout for a packed backward: [1,total_T,H,D] with non-negative strides. */
static int check_dout(const struct mta_problem *p, const struct mta_tensor *t, int64_t total_T)
{
	if (!t || !t->data)
		return mta_fail(MTA_EINVAL, "packed backward: the output gradient dout is missing");
	if (t->shape[0] != 1 || t->shape[1] != total_T || t->shape[2] != p->H ||
	    t->shape[3] != p->D)
		return mta_fail(MTA_ESHAPE, "packed backward: dout has shape [%" PRId64 ",%" PRId64
				",%" PRId64 ",%" PRId64 "], expected the output's [1,%" PRId64
				",%d,%d]", t->shape[0], t->shape[1], t->shape[2], t->shape[3],
				total_T, p->H, p->D);
	for (int i = 0; i < 4; i++)
		if (t->stride[i] < 0)
			return mta_fail(MTA_ESHAPE, "packed backward: dout has a negative stride");
	return MTA_OK;
}

/* Scratch for the weight gradients of one document (n[i] elements each); NULL when none. */
static char *scratch_for(const size_t n[NW], size_t elem, void *part[NW], int *rc)
{
	size_t total = 0;
	char *buf;
	for (int i = 0; i < NW; i++)
		total += n[i];
	*rc = MTA_OK;
	if (!total)
		return NULL;
	if (!(buf = malloc(total * elem))) {
		*rc = mta_fail(MTA_ENOMEM, "out of memory for %zu weight-gradient elements", total);
		return NULL;
	}
	for (size_t i = 0, at = 0; i < NW; i++) {
		part[i] = n[i] ? buf + at * elem : NULL;
		at += n[i];
	}
	return buf;
}

int mta_varlen_train(const struct mta_problem *p, const struct mta_tensor *q,
		     const struct mta_tensor *k, const struct mta_tensor *v,
		     const struct mta_weights *w, struct mta_tensor *o, void *saved,
		     const struct mta_tensor *dout, const struct mta_grads *g,
		     const int64_t *cu, int64_t ndocs, mta_varlen_train_fn one, void *arg)
{
	const int bwd = dout != NULL;
	const char *what = bwd ? "mta_backward_varlen" : "mta_forward_train_varlen";
	void *part[NW] = { 0 }, *scratch = NULL;
	size_t n[NW] = { 0 };
	int64_t T;
	int rc, first = 1;

	if (!bwd && !o)
		return mta_fail(MTA_EINVAL, "%s: no output tensor", what);
	if (bwd && (o || !g))
		return mta_fail(MTA_EINVAL, "%s: %s", what, o ? "an output tensor given to the "
				"backward" : "no gradients struct");
	if ((rc = mta_varlen_check(p, q, k, v, bwd ? NULL : o, cu, ndocs, NULL)))
		return mta_wrap(rc, "%s", what);
	T = q->shape[1];
	if (bwd && (rc = check_dout(p, dout, T)))
		return mta_wrap(rc, "%s", what);
	if (bwd && dout->dtype != MTA_F32)
		return mta_fail(MTA_ESHAPE, "%s: dout is %s, expected f32 [1,total_T,H,D]", what,
				mta_dtype_name((mta_dtype)dout->dtype));
	if (!saved)
		return mta_fail(MTA_EINVAL, "%s: no saved state (mta_saved_bytes(p, 1, total_T) = "
				"%" PRId64 " bytes)", what, mta_saved_bytes(p, 1, T));
	if ((rc = mta_check_weights(p, w)))
		return mta_wrap(rc, "%s", what);
	if (bwd) {
		const char *miss = MTA_GRADS_MISSING(p, g);
		if (miss)
			return mta_fail(MTA_EINVAL, "%s: no buffer for the gradient %s, which the "
					"problem needs", what, miss);
		for (int i = 0; i < NW; i++)
			n[i] = wcount(p, i);
		if (ndocs > 1 && !(scratch = scratch_for(n, sizeof(float), part, &rc)) && rc)
			return rc;
	}
	float *const gw[NW] = WEIGHT_GRADS(g ? g : &(const struct mta_grads){ 0 });
	float *pw[NW];
	for (int i = 0; i < NW; i++)
		pw[i] = part[i];
	const size_t row = (size_t)p->H * (size_t)(p->D + 1); /* saved floats per row */
	for (int64_t d = 0; d < ndocs; d++) {
		const int64_t s = cu[d], len = cu[d + 1] - cu[d];
		struct mta_tensor qd, kd, vd, od, dd;
		struct mta_grads gd;
		if (!len)
			continue;
		mta_varlen_view(q, s, len, &qd);
		mta_varlen_view(k, s, len, &kd);
		mta_varlen_view(v, s, len, &vd);
		if (bwd) {
			mta_varlen_view(dout, s, len, &dd);
			float *const *wd = first ? gw : pw;
			gd = (struct mta_grads){
				g->dq + (size_t)s * (size_t)p->H * (size_t)p->D,
				g->dk + (size_t)s * (size_t)p->Hkv * (size_t)p->D,
				g->dv + (size_t)s * (size_t)p->Hkv * (size_t)p->D,
				wd[0], wd[1], wd[2], wd[3], wd[4], wd[5], wd[6], wd[7],
			};
		} else {
			mta_varlen_view(o, s, len, &od);
		}
		rc = one(arg, p, &qd, &kd, &vd, w, bwd ? NULL : &od, (float *)saved + (size_t)s * row,
			 bwd ? &dd : NULL, bwd ? &gd : NULL);
		if (rc) {
			mta_wrap(rc, "%s: document %" PRId64 " (rows %" PRId64 "..%" PRId64 ")", what,
				 d, s, s + len);
			goto out;
		}
		if (bwd && !first)
			for (int i = 0; i < NW; i++)
				for (size_t x = 0; x < n[i]; x++)
					gw[i][x] += pw[i][x];
		first = 0;
	}
	rc = MTA_OK;
out:
	free(scratch);
	return rc;
}

int mta_reference_backward_varlen(const struct mta_problem *p, const struct mta_tensor *q,
				  const struct mta_tensor *k, const struct mta_tensor *v,
				  const struct mta_weights *w, const struct mta_tensor *dout,
				  const int64_t *cu, int64_t ndocs,
				  const struct mta_reference_grads *g)
{
	void *part[NW] = { 0 }, *mpart[NW] = { 0 }, *scratch = NULL, *mscratch = NULL;
	size_t n[NW] = { 0 };
	const char *miss;
	int rc, first = 1;
	const struct mta_reference_grads *m = g ? g->mag : NULL; /* magnitudes, or NULL */

	if ((rc = mta_varlen_check(p, q, k, v, NULL, cu, ndocs, NULL)) ||
	    (rc = check_dout(p, dout, q->shape[1])))
		return rc;
	if ((rc = mta_check_weights(p, w)))
		return rc;
	if ((miss = MTA_GRADS_MISSING(p, g)) || (m && (miss = MTA_GRADS_MISSING(p, m))))
		return mta_fail(MTA_EINVAL, "reference backward: no buffer for the gradient %s%s, "
				"which the problem needs", miss, g->mag ? " (or its magnitudes)" : "");
	for (int i = 0; i < NW; i++)
		n[i] = wcount(p, i);
	if (ndocs > 1 && !(scratch = scratch_for(n, sizeof(double), part, &rc)) && rc)
		return rc;
	if (m && ndocs > 1 && !(mscratch = scratch_for(n, sizeof(double), mpart, &rc)) && rc)
		goto out;
	double *const gw[NW] = WEIGHT_GRADS(g);
	double *const mw[NW] = WEIGHT_GRADS(m ? m : g); /* read only when m is set */
	double *pw[NW], *pm[NW];
	for (int i = 0; i < NW; i++) {
		pw[i] = part[i];
		pm[i] = mpart[i];
	}
	for (int64_t d = 0; d < ndocs; d++) {
		const int64_t s = cu[d], len = cu[d + 1] - cu[d];
		struct mta_tensor qd, kd, vd, dd;
		if (!len)
			continue;
		mta_varlen_view(q, s, len, &qd);
		mta_varlen_view(k, s, len, &kd);
		mta_varlen_view(v, s, len, &vd);
		mta_varlen_view(dout, s, len, &dd);
		double *const *wd = first ? gw : pw, *const *wm = first ? mw : pm;
		struct mta_reference_grads md = { 0 };
		if (m)
			md = (struct mta_reference_grads){
				m->dq + (size_t)s * (size_t)p->H * (size_t)p->D,
				m->dk + (size_t)s * (size_t)p->Hkv * (size_t)p->D,
				m->dv + (size_t)s * (size_t)p->Hkv * (size_t)p->D,
				wm[0], wm[1], wm[2], wm[3], wm[4], wm[5], wm[6], wm[7], NULL,
			};
		const struct mta_reference_grads gd = {
			g->dq + (size_t)s * (size_t)p->H * (size_t)p->D,
			g->dk + (size_t)s * (size_t)p->Hkv * (size_t)p->D,
			g->dv + (size_t)s * (size_t)p->Hkv * (size_t)p->D,
			wd[0], wd[1], wd[2], wd[3], wd[4], wd[5], wd[6], wd[7], m ? &md : NULL,
		};
		if ((rc = mta_reference_backward(p, &qd, &kd, &vd, w, &dd, &gd))) {
			mta_wrap(rc, "document %" PRId64 " (rows %" PRId64 "..%" PRId64 ")", d, s,
				 s + len);
			goto out;
		}
		if (!first)
			for (int i = 0; i < NW; i++)
				for (size_t x = 0; x < n[i]; x++) {
					gw[i][x] += pw[i][x];
					if (m)
						mw[i][x] += pm[i][x];
				}
		first = 0;
	}
	rc = mta_done(MTA_OK);
out:
	free(scratch);
	free(mscratch);
	return rc;
}
