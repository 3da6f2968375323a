/*
 * cuda_args.c: public tensors and weights -> struct mta_cuda_args
 * (cuda_args.h). An exported library (mtatune export) ships this very file
 * and launches its cubins with the same arguments.
 */
#include "runtime/core/cuda_args.h"
#include "runtime/core/error.h"

#include <string.h>

static void strides(const struct mta_tensor *t, long long s[3])
{
	for (int i = 0; i < 3; i++)
		s[i] = (long long)t->stride[i];
}

int mta_cuda_args_fill(const struct mta_problem *p, const struct mta_tensor *q,
		       const struct mta_tensor *k, const struct mta_tensor *v,
		       const struct mta_weights *w, struct mta_tensor *o,
		       struct mta_cuda_args *a)
{
	int64_t B, T;
	struct mta_tensor o32;
	int rc;
	if (!o)
		return mta_fail(MTA_EINVAL, "the CUDA kernel needs an output tensor");
	if (o->dtype != MTA_F32 && o->dtype != MTA_BF16 && o->dtype != MTA_F16)
		return mta_fail(MTA_ESHAPE, "tensor o has element type %s, expected f32, bf16 or f16",
				mta_dtype_name(o->dtype));
	o32 = *o; /* the shape check with the dtype taken as checked */
	o32.dtype = MTA_F32;
	if ((rc = mta_check_tensors(p, q, k, v, &o32, &B, &T)))
		return rc;
	if (q->dtype != p->dtype)
		return mta_fail(MTA_ESHAPE, "q, k, v are %s but the problem's kernels take %s",
				mta_dtype_name(q->dtype), mta_dtype_name(p->dtype));
	const struct mta_tensor *all[4] = { q, k, v, o };
	for (int i = 0; i < 4; i++)
		if (all[i]->stride[3] != 1)
			return mta_fail(MTA_ESHAPE, "tensor %c has stride %lld along d; the CUDA "
					"kernel needs d contiguous (stride 1)", "qkvo"[i],
					(long long)all[i]->stride[3]);
	static const struct mta_weights none;
	if ((rc = mta_check_weights(p, w)))
		return rc;
	if (!w)
		w = &none;
	const float *hp = p->head_post == MTA_HPOST_CONV ? w->head_post
			  : p->head_post == MTA_HPOST_LINEAR ? w->head_post_linear : NULL;
	if ((rc = mta_cuda_size_ok(B, T)))
		return rc;
	memset(a, 0, sizeof *a);
	a->q = q->data;
	a->k = k->data;
	a->v = v->data;
	a->o = o->data;
	strides(q, a->sq);
	strides(k, a->sk);
	strides(v, a->sv);
	strides(o, a->so);
	a->kq_pre = p->cq ? w->kq_pre : NULL;
	a->head_pre = p->head_pre ? w->head_pre : NULL;
	a->kq_post = p->cq2 ? w->kq_post : NULL;
	a->head_post = hp;
	a->gn_w = p->gn ? w->gn_weight : NULL;
	a->gate_w = p->gate ? w->gate_w : NULL;
	a->gate_b = !p->gate ? NULL : w->gate_b_ptr ? w->gate_b_ptr : &w->gate_b;
	a->rescale = p->gn_rescale ? (float)mta_layer_rescale(w->layer_id) : 1.0f;
	a->B = (int)B;
	a->T = (int)T;
	a->o_dtype = o->dtype;
	return MTA_OK;
}

int mta_cuda_varlen_tiles(const int64_t *cu, int64_t ndocs, int bq, int *tile_off)
{
	int64_t n = 0;
	if (bq < 1 || ndocs < 1 || ndocs > (1 << 30))
		return mta_fail(MTA_EINVAL, "packed documents: %lld documents, %d rows per tile",
				(long long)ndocs, bq);
	for (int64_t d = 0; d < ndocs; d++) {
		tile_off[d] = (int)n;
		n += (cu[d + 1] - cu[d] + bq - 1) / bq;
		if (n > 2147483647)
			return mta_fail(MTA_EINVAL, "packed documents: %lld query tiles exceed the "
					"CUDA grid's 2^31-1", (long long)n);
	}
	tile_off[ndocs] = (int)n;
	return MTA_OK;
}

void mta_cuda_args_varlen(struct mta_cuda_args *a, const int64_t *cu, int64_t ndocs,
			  const int *tile_off)
{
	a->cu = (const long long *)cu;
	a->tile_off = tile_off;
	a->ndocs = (int)ndocs;
	a->sq[0] = a->sq[1];
	a->sk[0] = a->sk[1];
	a->sv[0] = a->sv[1];
	a->so[0] = a->so[1];
}

int mta_cuda_size_ok(int64_t B, int64_t T)
{
	if (B > 65535 || T > (1 << 30))
		return mta_fail(MTA_EINVAL, "B=%lld, T=%lld: the CUDA kernel takes B <= 65535 "
				"and T <= 2^30", (long long)B, (long long)T);
	return MTA_OK;
}
