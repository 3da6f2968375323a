/* tensor.c: strided tensor views and the shape checks every backend shares. */
#include "runtime/core/error.h"

#include <inttypes.h>
#include <math.h>
#include <string.h>

void mta_tensor_init(struct mta_tensor *t, void *data, int dtype,
		     int64_t d0, int64_t d1, int64_t d2, int64_t d3)
{
	t->data = data;
	t->dtype = dtype;
	t->shape[0] = d0;
	t->shape[1] = d1;
	t->shape[2] = d2;
	t->shape[3] = d3;
	t->stride[3] = 1;
	t->stride[2] = d3;
	t->stride[1] = d2 * d3;
	t->stride[0] = d1 * d2 * d3;
	t->memory = MTA_MEM_HOST;
}

static int check(const char *name, const struct mta_tensor *t, int dtype, int64_t B, int64_t T,
		 int64_t heads, int64_t D)
{
	if (!t || !t->data)
		return mta_fail(MTA_EINVAL, "tensor %s is missing", name);
	if (dtype >= 0 && t->dtype != dtype)
		return mta_fail(MTA_ESHAPE, "tensor %s has element type %s, expected %s", name,
				mta_dtype_name(t->dtype), mta_dtype_name(dtype));
	if (t->shape[2] != heads || t->shape[3] != D)
		return mta_fail(MTA_ESHAPE, "tensor %s has shape [%" PRId64 ",%" PRId64 ",%" PRId64
				",%" PRId64 "], expected [B,T,%" PRId64 ",%" PRId64 "]", name,
				t->shape[0], t->shape[1], t->shape[2], t->shape[3], heads, D);
	if (B >= 0 && (t->shape[0] != B || t->shape[1] != T))
		return mta_fail(MTA_ESHAPE, "tensor %s has B=%" PRId64 ", T=%" PRId64 ", but q has "
				"B=%" PRId64 ", T=%" PRId64, name, t->shape[0], t->shape[1], B, T);
	if (t->shape[0] < 1 || t->shape[1] < 1)
		return mta_fail(MTA_ESHAPE, "tensor %s has an empty batch or sequence (B=%" PRId64
				", T=%" PRId64 ")", name, t->shape[0], t->shape[1]);
	for (int i = 0; i < 4; i++)
		if (t->stride[i] < 0)
			return mta_fail(MTA_ESHAPE, "tensor %s has a negative stride", name);
	/*
	 * Its element count and its extent (the last element's offset), in
	 * bytes of the widest element (8), fit in an int64: the sizes every
	 * caller computes from them cannot wrap (B = 2^62 + 1 with stride 0
	 * passed, and a kernel then walked off its buffers).
	 */
	int64_t n = 1, ext = 0, x;
	int over = 0;
	for (int i = 0; i < 4 && !over; i++)
		over = __builtin_mul_overflow(n, t->shape[i], &n) ||
		       __builtin_mul_overflow(t->shape[i] - 1, t->stride[i], &x) ||
		       __builtin_add_overflow(ext, x, &ext);
	if (over || __builtin_mul_overflow(n, (int64_t)8, &x) ||
	    __builtin_mul_overflow(ext + 1, (int64_t)8, &x))
		return mta_fail(MTA_ESHAPE, "tensor %s of shape [%" PRId64 ",%" PRId64 ",%" PRId64 ",%"
				PRId64 "] is larger than a process can address", name,
				t->shape[0], t->shape[1], t->shape[2], t->shape[3]);
	return MTA_OK;
}

int mta_check_tensors(const struct mta_problem *p, const struct mta_tensor *q,
		      const struct mta_tensor *k, const struct mta_tensor *v,
		      const struct mta_tensor *o, int64_t *B, int64_t *T)
{
	int rc;
	if ((rc = mta_problem_validate(p)))
		return rc;
	if (!q)
		return mta_fail(MTA_EINVAL, "tensor q is missing");
	if ((rc = check("q", q, -1, -1, -1, p->H, p->D)))
		return rc;
	if (q->dtype != MTA_F32 && q->dtype != MTA_BF16 && q->dtype != MTA_F16 && q->dtype != MTA_F64)
		return mta_fail(MTA_ESHAPE, "tensor q has an unknown element type %d", q->dtype);
	if ((rc = check("k", k, q->dtype, q->shape[0], q->shape[1], p->Hkv, p->D)) ||
	    (rc = check("v", v, q->dtype, q->shape[0], q->shape[1], p->Hkv, p->D)))
		return rc;
	if (o && (rc = check("o", o, MTA_F32, q->shape[0], q->shape[1], p->H, p->D)))
		return rc;
	if (B)
		*B = q->shape[0];
	if (T)
		*T = q->shape[1];
	return mta_done(MTA_OK);
}

int mta_check_weights(const struct mta_problem *p, const struct mta_weights *w)
{
	static const struct mta_weights none;
	const char *miss = NULL;
	if (!w)
		w = &none;
	if (p->cq && !w->kq_pre)
		miss = "kq_pre [H,1,cq,ck]";
	else if (p->head_pre && !w->head_pre)
		miss = "head_pre [H,H]";
	else if (p->cq2 && !w->kq_post)
		miss = "kq_post [H,1,cq2,ck2]";
	else if (p->head_post == MTA_HPOST_CONV && !w->head_post)
		miss = "head_post [H/c,c,c]";
	else if (p->head_post == MTA_HPOST_LINEAR && !w->head_post_linear)
		miss = "head_post_linear [H,H]";
	else if (p->gn && !w->gn_weight)
		miss = "gn_weight [D]";
	else if (p->gate && !w->gate_w)
		miss = "gate_w [1,D]";
	if (miss)
		return mta_fail(MTA_EINVAL, "the problem needs weight %s, which was not given", miss);
	return mta_done(MTA_OK);
}
