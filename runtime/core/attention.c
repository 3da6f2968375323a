/*
 * attention.c: the argument checks and host helpers of mta_attention
 * (attention.h), shared by the runtime and exported libraries.
 */
#include "runtime/core/attention.h"
#include "runtime/core/error.h"

#include <stdlib.h>
#include <string.h>

int mta_attention_check(const struct mta_problem *p, const struct mta_tensor *q,
			const struct mta_tensor *k, const struct mta_tensor *v,
			const struct mta_tensor *o, float scale, int64_t *B, int64_t *T)
{
	const struct mta_tensor *all[4] = { q, k, v, o };
	static const char *names[4] = { "q", "k", "v", "o" };
	struct mta_tensor o32;
	int rc;

	if (!o)
		return mta_fail(MTA_EINVAL, "tensor o is missing");
	if (o->dtype != MTA_F32 && o->dtype != MTA_BF16 && o->dtype != MTA_F16)
		return mta_fail(MTA_ESHAPE, "tensor o has element type %s, expected f32, bf16 or f16",
				mta_dtype_name(o->dtype));
	o32 = *o; /* the shape check, with o's dtype already checked */
	o32.dtype = MTA_F32;
	if ((rc = mta_check_tensors(p, q, k, v, &o32, B, T)))
		return rc;
	if (q->dtype != p->dtype)
		return mta_fail(MTA_ESHAPE, "tensor q has element type %s, but the problem's kernels "
				"take %s", mta_dtype_name(q->dtype), mta_dtype_name(p->dtype));
	for (int i = 0; i < 4; i++) {
		if (all[i]->stride[3] != 1)
			return mta_fail(MTA_ESHAPE, "tensor %s has stride %lld along D; expected 1 (D "
					"contiguous)", names[i], (long long)all[i]->stride[3]);
		if (all[i]->memory != MTA_MEM_HOST && all[i]->memory != MTA_MEM_DEVICE)
			return mta_fail(MTA_EINVAL, "tensor %s: memory %d is neither MTA_MEM_HOST (0) "
					"nor MTA_MEM_DEVICE (1)", names[i], all[i]->memory);
	}
	if (!(scale >= 0) || scale > 1e30f)
		return mta_fail(MTA_EINVAL, "scale %g: expected 0 (the problem's) or a positive "
				"softmax scale", (double)scale);
	if (scale != 0 && scale != (float)mta_problem_scale(p))
		return mta_fail(MTA_EUNSUPPORTED, "scale %g: this version's kernels compile the "
				"softmax scale in (it is part of the problem's key: %g here); set "
				"p->scale to %g instead", (double)scale, mta_problem_scale(p),
				(double)scale);
	return MTA_OK;
}

size_t mta_tensor_extent(const struct mta_tensor *t)
{
	int64_t last = 0;
	for (int i = 0; i < 4; i++)
		last += (t->shape[i] - 1) * t->stride[i];
	return (size_t)(last + 1) * mta_dtype_size(t->dtype);
}

int mta_weight_parts(const struct mta_problem *p, struct mta_weights *w,
		     struct mta_wpart out[MTA_WPARTS_MAX])
{
	size_t H = (size_t)p->H, D = (size_t)p->D;
	int n = 0;
	if (p->cq)
		out[n++] = (struct mta_wpart){ "weight kq_pre", &w->kq_pre,
					       H * (size_t)(p->cq * p->ck) };
	if (p->head_pre)
		out[n++] = (struct mta_wpart){ "weight head_pre", &w->head_pre, H * H };
	if (p->cq2)
		out[n++] = (struct mta_wpart){ "weight kq_post", &w->kq_post,
					       H * (size_t)(p->cq2 * p->ck2) };
	if (p->head_post == MTA_HPOST_CONV)
		out[n++] = (struct mta_wpart){ "weight head_post", &w->head_post, H * (size_t)p->hc };
	if (p->head_post == MTA_HPOST_LINEAR)
		out[n++] = (struct mta_wpart){ "weight head_post_linear", &w->head_post_linear,
					       H * H };
	if (p->gn)
		out[n++] = (struct mta_wpart){ "weight gn_weight", &w->gn_weight, D };
	if (p->gate)
		out[n++] = (struct mta_wpart){ "weight gate_w", &w->gate_w, D };
	return n;
}

void mta_tensor_pack(const struct mta_tensor *t, void *dense, int back)
{
	size_t es = mta_dtype_size(t->dtype), row = (size_t)t->shape[3] * es;
	const int64_t *sh = t->shape, *st = t->stride;
	char *d = dense;
	for (int64_t b = 0; b < sh[0]; b++)
		for (int64_t i = 0; i < sh[1]; i++)
			for (int64_t h = 0; h < sh[2]; h++, d += row) {
				char *s = (char *)t->data +
					  (size_t)(b * st[0] + i * st[1] + h * st[2]) * es;
				memcpy(back ? s : d, back ? d : s, row);
			}
}

void mta_tensor_narrow(const float *src, struct mta_tensor *o)
{
	const int64_t *sh = o->shape, *st = o->stride;
	uint16_t *d = o->data;
	for (int64_t b = 0; b < sh[0]; b++)
		for (int64_t i = 0; i < sh[1]; i++)
			for (int64_t h = 0; h < sh[2]; h++) {
				uint16_t *row = d + b * st[0] + i * st[1] + h * st[2];
				for (int64_t x = 0; x < sh[3]; x++, src++)
					row[x] = o->dtype == MTA_BF16 ? mta_f32_to_bf16(*src)
								      : mta_f32_to_f16(*src);
			}
}

int mta_forward_staged(mta_context *c, const struct mta_problem *p, const mta_wts *w,
		       const struct mta_tensor *host[4])
{
	struct mta_tensor dev[4];
	void *mem[4] = { 0 }, *dense = NULL;
	size_t bytes[4], most = 0;
	int rc = MTA_OK;

	for (int i = 0; i < 4; i++) {
		const struct mta_tensor *t = host[i];
		bytes[i] = (size_t)(t->shape[0] * t->shape[1] * t->shape[2] * t->shape[3]) *
			   mta_dtype_size(t->dtype);
		most = bytes[i] > most ? bytes[i] : most;
	}
	if (!(dense = malloc(most))) {
		rc = mta_fail(MTA_ENOMEM, "out of memory for a %zu-byte staging buffer", most);
		goto out;
	}
	for (int i = 0; i < 4; i++) {
		const struct mta_tensor *t = host[i];
		if ((rc = mta_device_alloc(c, bytes[i], &mem[i])))
			goto out;
		mta_tensor_init(&dev[i], mem[i], t->dtype, t->shape[0], t->shape[1], t->shape[2],
				t->shape[3]);
		dev[i].memory = MTA_MEM_DEVICE;
		if (i == 3)
			break;
		mta_tensor_pack(t, dense, 0);
		if ((rc = mta_memcpy(c, mem[i], MTA_MEM_DEVICE, dense, MTA_MEM_HOST, bytes[i],
				     NULL)) ||
		    (rc = mta_stream_synchronize(c, NULL))) /* dense is reused */
			goto out;
	}
	if ((rc = mta_attention(c, p, w, &dev[0], &dev[1], &dev[2], &dev[3], 0, NULL)) ||
	    (rc = mta_memcpy(c, dense, MTA_MEM_HOST, mem[3], MTA_MEM_DEVICE, bytes[3], NULL)) ||
	    (rc = mta_stream_synchronize(c, NULL)))
		goto out;
	mta_tensor_pack(host[3], dense, 1);
out:
	for (int i = 0; i < 4; i++)
		mta_device_free(c, mem[i]);
	free(dense);
	return rc;
}
