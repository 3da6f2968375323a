/*
 * kargs_bwd.c: public tensors and gradients -> struct mta_bkargs (kargs_bwd.h),
 * and the size of the saved state (mta.h: mta_saved_bytes).
 */
#include "runtime/core/kargs_bwd.h"
#include "runtime/core/kargs.h"
#include "runtime/core/error.h"

#include <string.h>

int64_t mta_saved_bytes(const struct mta_problem *p, int64_t B, int64_t T)
{
	if (!p || mta_problem_validate(p) != MTA_OK || B < 1 || T < 1)
		return -1;
	return (int64_t)sizeof(float) * MTA_SAVED_FLOATS(p->H, p->D, B, T);
}

/* MTA_EINVAL naming the first gradient buffer p needs that g lacks. */
const char *mta_grads_missing_buffer(const struct mta_problem *p,
				    const struct mta_grad_buffers *g)
{
	const char *miss = NULL;
	if (!g)
		miss = "(the gradients struct itself)";
	else if (!g->dq)
		miss = "dq [B,T,H,D]";
	else if (!g->dk)
		miss = "dk [B,T,Hkv,D]";
	else if (!g->dv)
		miss = "dv [B,T,Hkv,D]";
	else if (p->cq && !g->kq_pre)
		miss = "kq_pre [H,1,cq,ck]";
	else if (p->head_pre && !g->head_pre)
		miss = "head_pre [H,H]";
	else if (p->cq2 && !g->kq_post)
		miss = "kq_post [H,1,cq2,ck2]";
	else if (p->head_post == MTA_HPOST_CONV && !g->head_post)
		miss = "head_post [H/c,c,c]";
	else if (p->head_post == MTA_HPOST_LINEAR && !g->head_post_linear)
		miss = "head_post_linear [H,H]";
	else if (p->gn && !g->gn_weight)
		miss = "gn_weight [D]";
	else if (p->gate && !g->gate_w)
		miss = "gate_w [1,D]";
	else if (p->gate && !g->gate_b)
		miss = "gate_b [1]";
	return miss;
}

static int check_grads(const struct mta_problem *p, const struct mta_grads *g)
{
	const char *miss = MTA_GRADS_MISSING(p, g);
	if (miss)
		return mta_fail(MTA_EINVAL, "backward: no buffer for the gradient %s, which the "
				"problem needs", miss);
	return MTA_OK;
}

int mta_bkargs_fill(const struct mta_problem *p, const struct mta_tensor *q,
		    const struct mta_tensor *k, const struct mta_tensor *v,
		    const struct mta_weights *w, struct mta_tensor *o, void *saved,
		    const struct mta_tensor *dout, const struct mta_grads *g, int nthreads,
		    struct mta_bkargs *a)
{
	int rc;
	memset(a, 0, sizeof *a);
	if ((o != NULL) == (dout != NULL))
		return mta_fail(MTA_EINVAL, "backward arguments: expected an output o (forward) or "
				"an output gradient dout (backward), exactly one");
	if (!saved)
		return mta_fail(MTA_EINVAL, "backward arguments: no buffer for the saved state "
				"(mta_saved_bytes of the problem, B and T)");
	/* dout has o's shape and type: the forward's checks judge it in o's place */
	if ((rc = mta_kargs_fill(p, q, k, v, w, o ? o : (struct mta_tensor *)dout, nthreads, &a->f)))
		return mta_wrap(rc, dout ? "backward (dout in the output's place)" : "forward");
	a->saved = saved;
	if (!dout)
		return MTA_OK;
	a->f.o = NULL;
	a->f.o_sb = a->f.o_st = a->f.o_sh = 0;
	if ((rc = check_grads(p, g)))
		return rc;
	a->dout = dout->data;
	a->do_sb = dout->stride[0];
	a->do_st = dout->stride[1];
	a->do_sh = dout->stride[2];
	a->dq = g->dq;
	a->dk = g->dk;
	a->dv = g->dv;
	a->dkq_pre = g->kq_pre;
	a->dhead_pre = g->head_pre;
	a->dkq_post = g->kq_post;
	a->dhead_post = g->head_post;
	a->dhead_post_linear = g->head_post_linear;
	a->dgn_weight = g->gn_weight;
	a->dgate_w = g->gate_w;
	a->dgate_b = g->gate_b;
	return MTA_OK;
}

size_t mta_grad_elems(const struct mta_problem *p, int64_t B, int64_t T, int i)
{
	const size_t bt = (size_t)B * (size_t)T, H = (size_t)p->H;
	switch (i) {
	case 0: return bt * H * (size_t)p->D;
	case 1:
	case 2: return bt * (size_t)p->Hkv * (size_t)p->D;
	case 3: return H * (size_t)(p->cq * p->ck);
	case 4: return p->head_pre ? H * H : 0;
	case 5: return H * (size_t)(p->cq2 * p->ck2);
	case 6: return p->head_post == MTA_HPOST_CONV ? H * (size_t)p->hc : 0;
	case 7: return p->head_post == MTA_HPOST_LINEAR ? H * H : 0;
	case 8: return p->gn ? (size_t)p->D : 0;
	case 9: return p->gate ? (size_t)p->D : 0;
	case 10: return p->gate ? 1 : 0;
	}
	return 0;
}
