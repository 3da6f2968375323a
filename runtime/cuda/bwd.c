/*
 * bwd.c: the host side of the CUDA backward (bwd.h): check, pack, move,
 * launch the template's modes, unpack. Shared by cuda and cuda-emu, and
 * shipped in exported CUDA libraries (the Makefile's SHIP): it includes
 * only the core layer and its own header.
 */
#include "runtime/cuda/bwd.h"
#include "runtime/core/cuda_bwd.h"
#include "runtime/core/error.h"
#include "runtime/core/kargs_bwd.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

enum { W_KQ_PRE, W_HEAD_PRE, W_KQ_POST, W_HEAD_POST, W_GN, W_GATE_W, W_GATE_B, W_N };

/* Device buffers of one call, released together. */
struct bufs {
	const struct mta_cuda_bwd_dev *dev;
	void *q, *k, *v, *o, *saved, *dout, *dq, *dk, *dv, *dw, *ws, *part, *wpart, *status, *plan;
	void *w[W_N];
};

static void bufs_free(struct bufs *b)
{
	void **all[] = { &b->q, &b->k, &b->v, &b->o, &b->saved, &b->dout, &b->dq, &b->dk, &b->dv,
			 &b->dw, &b->ws, &b->part, &b->wpart, &b->status, &b->plan };
	for (size_t i = 0; i < sizeof all / sizeof all[0]; i++) {
		if (*all[i])
			b->dev->release(b->dev->ctx, *all[i]);
		*all[i] = NULL;
	}
	for (int i = 0; i < W_N; i++) {
		if (b->w[i])
			b->dev->release(b->dev->ctx, b->w[i]);
		b->w[i] = NULL;
	}
}

/* Device memory of n bytes at *p, filled from host src when given. */
static int dput(struct bufs *b, void **p, const void *src, size_t n)
{
	int rc = b->dev->alloc(b->dev->ctx, n ? n : 1, p);
	if (!rc && src && n)
		rc = b->dev->put(b->dev->ctx, *p, src, n);
	return rc;
}

static size_t numel(const struct mta_tensor *t)
{
	return (size_t)(t->shape[0] * t->shape[1] * t->shape[2] * t->shape[3]);
}

/* Pack (or, with back, unpack) a [B,T,heads,D] strided tensor to or from dense. */
static void pack(const struct mta_tensor *t, void *dense, int back)
{
	const size_t es = mta_dtype_size(t->dtype);
	const int64_t *sh = t->shape, *st = t->stride;
	char *d = dense;
	for (int64_t b = 0; b < sh[0]; b++)
		for (int64_t i = 0; i < sh[1]; i++)
			for (int64_t h = 0; h < sh[2]; h++)
				for (int64_t x = 0; x < sh[3]; x++, d += es) {
					char *s = (char *)t->data +
						  (size_t)(b * st[0] + i * st[1] + h * st[2] + x * st[3]) * es;
					memcpy(back ? s : d, back ? d : s, es);
				}
}

/* t packed dense into new device memory; its dense strides into s. */
static int put_tensor(struct bufs *b, void **p, const struct mta_tensor *t, long long s[3])
{
	const size_t n = numel(t) * mta_dtype_size(t->dtype);
	void *dense = malloc(n ? n : 1);
	int rc;
	if (!dense)
		return mta_fail(MTA_ENOMEM, "out of memory for a %zu-byte staging buffer", n);
	pack(t, dense, 0);
	rc = dput(b, p, dense, n);
	free(dense);
	s[2] = t->shape[3];
	s[1] = t->shape[2] * s[2];
	s[0] = t->shape[1] * s[1];
	return rc;
}

/*
 * The sizes and plan of shape s for p at q's B, T into *d, then q, k, v, the
 * weights, the workspace and the plan on the device: what both modes read.
 */
static int setup(struct bufs *b, const struct mta_cuda_bwd_shape *s, const struct mta_problem *p,
		 const struct mta_tensor *q, const struct mta_tensor *k, const struct mta_tensor *v,
		 const struct mta_weights *w, struct mta_cuda_bwd_dims *d,
		 struct mta_cuda_bargs *a)
{
	static const struct mta_weights none;
	const int H = p->H, D = p->D;
	long long *plan = NULL;
	int rc;
	if (!w)
		w = &none;
	memset(a, 0, sizeof *a);
	if ((rc = mta_cuda_bwd_plan(p, s, q->shape[0], q->shape[1], d, NULL)))
		return rc;
	const size_t np = sizeof *plan * 2 * (d->nb + 1);
	if (!(plan = malloc(np)))
		return mta_fail(MTA_ENOMEM, "out of memory for the backward's plan");
	rc = mta_cuda_bwd_plan(p, s, q->shape[0], q->shape[1], d, plan);
	if (!rc)
		rc = dput(b, &b->plan, plan, np);
	free(plan);
	a->plan = b->plan;
	if (rc || (rc = put_tensor(b, &b->q, q, a->sq)) || (rc = put_tensor(b, &b->k, k, a->sk)) ||
	    (rc = put_tensor(b, &b->v, v, a->sv)))
		return rc;
	const float gb = w->gate_b_ptr ? *w->gate_b_ptr : w->gate_b;
	const struct { int on; const float *src; size_t n; } ws[W_N] = {
		{ p->cq > 0, w->kq_pre, (size_t)H * p->cq * p->ck },
		{ p->head_pre, w->head_pre, (size_t)H * H },
		{ p->cq2 > 0, w->kq_post, (size_t)H * p->cq2 * p->ck2 },
		{ p->head_post != 0, p->head_post == MTA_HPOST_CONV ? w->head_post : w->head_post_linear,
		  p->head_post == MTA_HPOST_CONV ? (size_t)H * p->hc : (size_t)H * H },
		{ p->gn, w->gn_weight, (size_t)D },
		{ p->gate, w->gate_w, (size_t)D },
		{ p->gate, &gb, 1 },
	};
	for (int i = 0; i < W_N; i++)
		if (ws[i].on && (rc = dput(b, &b->w[i], ws[i].src, ws[i].n * sizeof(float))))
			return rc;
	a->q = b->q;
	a->k = b->k;
	a->v = b->v;
	a->kq_pre = b->w[W_KQ_PRE];
	a->head_pre = b->w[W_HEAD_PRE];
	a->kq_post = b->w[W_KQ_POST];
	a->head_post = b->w[W_HEAD_POST];
	a->gn_w = b->w[W_GN];
	a->gate_w = b->w[W_GATE_W];
	a->gate_b = b->w[W_GATE_B];
	a->rescale = p->gn_rescale ? (float)mta_layer_rescale(w->layer_id) : 1.0f;
	a->B = (int)q->shape[0];
	a->T = (int)q->shape[1];
	a->nb = (int)d->nb;
	a->ws_stride = d->ws_stride;
	const int zero = 0;
	if ((rc = dput(b, &b->ws, NULL, (size_t)d->nb * (size_t)d->ws_stride * sizeof(float))) ||
	    (rc = dput(b, &b->status, &zero, sizeof zero)))
		return rc;
	a->ws = b->ws;
	a->status = b->status;
	return MTA_OK;
}

/* Launch mode a->mode on grid blocks; then the kernel's status. */
static int run(struct bufs *b, struct mta_cuda_bargs *a, unsigned blocks,
	       const struct mta_cuda_bwd_dims *d)
{
	const unsigned grid[3] = { blocks, 1, 1 };
	int st = 0, rc = b->dev->launch(b->dev->ctx, a, grid, d->threads, d->smem_bytes);
	if (!rc)
		rc = b->dev->get(b->dev->ctx, &st, b->status, sizeof st);
	if (!rc && st == 2)
		rc = mta_fail(MTA_EKERNEL, "CUDA backward (mode %d): the kernel's workspace layout "
			      "differs from its own size formula (W_ROWS, W_FIXED)", a->mode);
	else if (!rc && st)
		rc = mta_fail(MTA_EKERNEL, "CUDA backward (mode %d): the kernel found its workspace "
			      "too small (%lld floats per block)", a->mode, a->ws_stride);
	return rc;
}

int mta_cuda_bwd_forward(const struct mta_cuda_bwd_dev *dev, const struct mta_cuda_bwd_shape *s,
			 const struct mta_problem *p, const struct mta_tensor *q, const struct mta_tensor *k,
			 const struct mta_tensor *v, const struct mta_weights *w,
			 struct mta_tensor *o, void *saved)
{
	struct bufs b = { .dev = dev };
	struct mta_bkargs ka;
	struct mta_cuda_bwd_dims d;
	struct mta_cuda_bargs a;
	float *ob = NULL;
	int rc;
	if ((rc = mta_bkargs_fill(p, q, k, v, w, o, saved, NULL, NULL, 0, &ka)))
		return mta_wrap(rc, "CUDA saving forward");
	const int64_t B = q->shape[0], T = q->shape[1];
	const size_t no = (size_t)B * (size_t)T * (size_t)p->H * (size_t)p->D;
	const size_t sb = (size_t)mta_saved_bytes(p, B, T);
	if ((rc = setup(&b, s, p, q, k, v, w, &d, &a)) ||
	    (rc = dput(&b, &b.o, NULL, no * sizeof(float))) || (rc = dput(&b, &b.saved, NULL, sb)))
		goto out;
	a.o = b.o;
	a.so[2] = p->D;
	a.so[1] = (long long)p->H * p->D;
	a.so[0] = T * a.so[1];
	a.saved = b.saved;
	a.mode = 0;
	if ((rc = run(&b, &a, d.nb, &d)))
		goto out;
	if (!(ob = malloc(no * sizeof *ob))) {
		rc = mta_fail(MTA_ENOMEM, "out of memory for the output");
		goto out;
	}
	if ((rc = dev->get(dev->ctx, ob, b.o, no * sizeof *ob)) ||
	    (rc = dev->get(dev->ctx, saved, b.saved, sb)))
		goto out;
	pack(o, ob, 1);
out:
	free(ob);
	bufs_free(&b);
	return rc;
}

int mta_cuda_bwd_backward(const struct mta_cuda_bwd_dev *dev, const struct mta_cuda_bwd_shape *s,
			  const struct mta_problem *p,
			  const struct mta_tensor *q, const struct mta_tensor *k,
			  const struct mta_tensor *v, const struct mta_weights *w,
			  const void *saved, const struct mta_tensor *dout,
			  const struct mta_grads *g)
{
	struct bufs b = { .dev = dev };
	struct mta_bkargs ka;
	struct mta_cuda_bwd_dims d;
	struct mta_cuda_bargs a;
	float *dw = NULL;
	int rc;
	if ((rc = mta_bkargs_fill(p, q, k, v, w, NULL, (void *)saved, dout, g, 0, &ka)))
		return mta_wrap(rc, "CUDA backward");
	if (dout->dtype != MTA_F32)
		return mta_fail(MTA_ESHAPE, "CUDA backward: dout is %s, expected f32",
				mta_dtype_name(dout->dtype));
	const int64_t B = q->shape[0], T = q->shape[1];
	const size_t nq = (size_t)B * (size_t)T * (size_t)p->H * (size_t)p->D;
	const size_t kvn = (size_t)B * (size_t)T * (size_t)p->Hkv * (size_t)p->D;
	const size_t sb = (size_t)mta_saved_bytes(p, B, T);
	if ((rc = setup(&b, s, p, q, k, v, w, &d, &a)) ||
	    (rc = dput(&b, &b.saved, saved, sb)) || (rc = put_tensor(&b, &b.dout, dout, a.sdo)) ||
	    (rc = dput(&b, &b.dq, NULL, nq * sizeof(float))) ||
	    (rc = dput(&b, &b.dk, NULL, kvn * sizeof(float))) ||
	    (rc = dput(&b, &b.dv, NULL, kvn * sizeof(float))) ||
	    (rc = dput(&b, &b.dw, NULL, (size_t)d.wg_n * sizeof(float))) ||
	    (rc = dput(&b, &b.part, NULL, (size_t)d.part_floats * sizeof(float))) ||
	    (rc = dput(&b, &b.wpart, NULL, (size_t)d.nb * (size_t)d.wg_n * sizeof(double))))
		goto out;
	a.saved = b.saved;
	a.dout = b.dout;
	a.dq = b.dq;
	a.dk = b.dk;
	a.dv = b.dv;
	a.dw = b.dw;
	a.part = b.part;
	a.wpart = b.wpart;
	a.mode = 1;
	if ((rc = run(&b, &a, d.nb, &d)))
		goto out;
	a.mode = 2;
	if ((rc = run(&b, &a, d.reduce_blocks, &d)))
		goto out;
	if (!(dw = malloc((size_t)d.wg_n * sizeof *dw))) {
		rc = mta_fail(MTA_ENOMEM, "out of memory for the weight gradients");
		goto out;
	}
	if ((rc = dev->get(dev->ctx, g->dq, b.dq, nq * sizeof(float))) ||
	    (rc = dev->get(dev->ctx, g->dk, b.dk, kvn * sizeof(float))) ||
	    (rc = dev->get(dev->ctx, g->dv, b.dv, kvn * sizeof(float))) ||
	    (rc = dev->get(dev->ctx, dw, b.dw, (size_t)d.wg_n * sizeof(float))))
		goto out;
	/* the weights' gradients in their own shapes (head_post's [H/c][in][out]) */
	const int H = p->H, D = p->D;
	if (p->cq)
		memcpy(g->kq_pre, dw + d.wg_k1, sizeof(float) * (size_t)(H * p->cq * p->ck));
	if (p->head_pre)
		memcpy(g->head_pre, dw + d.wg_pre, sizeof(float) * (size_t)(H * H));
	if (p->cq2)
		memcpy(g->kq_post, dw + d.wg_k2, sizeof(float) * (size_t)(H * p->cq2 * p->ck2));
	if (p->head_post == MTA_HPOST_LINEAR)
		memcpy(g->head_post_linear, dw + d.wg_post, sizeof(float) * (size_t)(H * H));
	if (p->head_post == MTA_HPOST_CONV) {
		const int c = p->hc;
		for (int gr = 0; gr < H / c; gr++)
			for (int in = 0; in < c; in++)
				for (int on = 0; on < c; on++)
					g->head_post[(gr * c + in) * c + on] =
						dw[d.wg_post + (gr * c + on) * H + gr * c + in];
	}
	if (p->gn)
		memcpy(g->gn_weight, dw + d.wg_gn, sizeof(float) * (size_t)D);
	if (p->gate) {
		memcpy(g->gate_w, dw + d.wg_gw, sizeof(float) * (size_t)D);
		g->gate_b[0] = dw[d.wg_gb];
	}
out:
	free(dw);
	bufs_free(&b);
	return rc;
}
