/*
 * kargs.c: public tensors and weights -> struct mta_kargs (see kargs.h).
 */
#include "runtime/core/kargs.h"
#include "runtime/core/error.h"
#include "runtime/core/varlen.h"

#include <string.h>

/* Strides of t as the kernel takes them; the head dimension must be dense. */
static int strides(const char *name, const struct mta_tensor *t, int64_t *sb, int64_t *st,
		   int64_t *sh)
{
	if (t->stride[3] != 1 && t->shape[3] > 1)
		return mta_fail(MTA_ESHAPE, "tensor %s: the head dimension must be contiguous "
				"(stride 1), not stride %lld", name, (long long)t->stride[3]);
	*sb = t->stride[0];
	*st = t->stride[1];
	*sh = t->stride[2];
	return MTA_OK;
}

int mta_kargs_fill(const struct mta_problem *p, const struct mta_tensor *q,
		   const struct mta_tensor *kt, const struct mta_tensor *v,
		   const struct mta_weights *w, struct mta_tensor *o, int nthreads,
		   struct mta_kargs *a)
{
	static const struct mta_weights none;
	int rc;

	memset(a, 0, sizeof *a);
	if (!o)
		return mta_fail(MTA_EINVAL, "output tensor o is missing");
	if ((rc = mta_check_tensors(p, q, kt, v, o, &a->B, &a->T)))
		return rc;
	if (nthreads < 0)
		return mta_fail(MTA_EINVAL, "nthreads=%d must be 0 (default) or positive", nthreads);
	if (!w)
		w = &none;
	if ((rc = mta_check_weights(p, w)))
		return rc;
	if ((rc = strides("q", q, &a->q_sb, &a->q_st, &a->q_sh)) ||
	    (rc = strides("k", kt, &a->k_sb, &a->k_st, &a->k_sh)) ||
	    (rc = strides("v", v, &a->v_sb, &a->v_st, &a->v_sh)) ||
	    (rc = strides("o", o, &a->o_sb, &a->o_st, &a->o_sh)))
		return rc;
	a->q = q->data;
	a->k = kt->data;
	a->v = v->data;
	a->o = o->data;
	a->kq_pre = w->kq_pre;
	a->head_pre = w->head_pre;
	a->kq_post = w->kq_post;
	a->head_post = w->head_post;
	a->head_post_linear = w->head_post_linear;
	a->gn_weight = w->gn_weight;
	a->gate_w = w->gate_w;
	a->gate_b = w->gate_b_ptr ? *w->gate_b_ptr : w->gate_b; /* host memory here */
	a->gn_rescale = p->gn_rescale ? (float)mta_layer_rescale(w->layer_id) : 1.0f;
	a->dtype = q->dtype;
	a->nthreads = nthreads;
	a->tmax = a->T;
	return MTA_OK;
}

int mta_kargs_fill_varlen(const struct mta_problem *p, const struct mta_tensor *q,
			  const struct mta_tensor *k, const struct mta_tensor *v,
			  const struct mta_weights *w, struct mta_tensor *o, int nthreads,
			  const int64_t *cu_seqlens, int64_t ndocs, struct mta_kargs *a)
{
	int64_t tmax;
	int rc;
	if ((rc = mta_kargs_fill(p, q, k, v, w, o, nthreads, a)) ||
	    (rc = mta_varlen_check(p, q, k, v, o, cu_seqlens, ndocs, &tmax)))
		return rc;
	a->cu_seqlens = cu_seqlens;
	a->ndocs = ndocs;
	a->tmax = tmax;
	return MTA_OK;
}

int mta_kargs_status(int kernel_rc, const struct mta_kinfo *info, int64_t T, const char *what)
{
	if (kernel_rc == 0)
		return MTA_OK;
	if (kernel_rc == MTA_KERR_NOMEM)
		return mta_fail(MTA_ENOMEM, "cpu kernel %s: out of memory for its workspace (%lld "
				"bytes per thread at T=%lld)", what,
				(long long)(info->ws_bytes + info->ws_per_t * T), (long long)T);
	return mta_fail(MTA_EKERNEL, "cpu kernel %s returned error %d", what, kernel_rc);
}
