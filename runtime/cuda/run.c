/*
 * run.c: kernels of (problem, variant) on a device, tensors across, launches
 * timed (see cuda.h).
 *
 * Host tensors may have any strides; they are packed into contiguous
 * staging buffers before the copy, and the output is scattered back the
 * same way, so the kernel always sees contiguous [B,T,heads,D] tensors.
 */
#include "runtime/cuda/cuda.h"
#include "gen/cuda/cudagen.h"
#include "runtime/core/error.h"
#include "runtime/cuda/module.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

struct mta_cuda_kernel {
	struct mta_problem p;
	struct mta_variant v;
	struct mta_cuda_module m;
};

enum { W_KQ_PRE, W_HEAD_PRE, W_KQ_POST, W_HEAD_POST, W_GN, W_GATE, W_GATE_B, W_COUNT };

struct mta_cuda_io {
	struct mta_cuda *c;
	struct mta_problem p;
	int64_t B, T;
	cu_ptr q, k, v, o, w[W_COUNT];
	struct mta_cuda_args args; /* device pointers */
};

static int drv_fail(int status, cu_result r, const char *what)
{
	return mta_fail(status, "%s: %s", what, mta_cu_error(r));
}

int mta_cuda_kernel_load(struct mta_cuda *c, const struct mta_problem *p,
			 const struct mta_variant *v, const void *cubin, size_t n,
			 struct mta_cuda_kernel **out)
{
	struct mta_cuda_launch g;
	struct mta_cuda_kernel *k;
	int rc;

	*out = NULL;
	if ((rc = mta_cuda_geometry(p, v, 1, 1, &g)))
		return rc;
	if (!cubin || !n)
		return mta_fail(MTA_EINVAL, "no cubin to load");
	if (!(k = calloc(1, sizeof *k)))
		return mta_fail(MTA_ENOMEM, "out of memory");
	k->p = *p;
	k->v = *v;
	if ((rc = mta_cuda_module_load(c, cubin, MTA_CUDA_KERNEL, g.block[0], (unsigned)g.smem_bytes,
				       (unsigned)v->bq, (unsigned)v->hpb, (unsigned)v->cs, &k->m))) {
		free(k);
		return rc;
	}
	*out = k;
	return MTA_OK;
}

void mta_cuda_kernel_free(struct mta_cuda_kernel *k)
{
	if (!k)
		return;
	mta_cuda_module_unload(&k->m);
	free(k);
}

struct mta_cuda *mta_cuda_kernel_device(const struct mta_cuda_kernel *k)
{
	return k->m.c;
}

/* Pack (or, with back, unpack) a [B,T,heads,D] strided tensor to/from dense. */
static void pack(const struct mta_tensor *t, void *dense, int back)
{
	size_t es = mta_dtype_size(t->dtype);
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

/* Allocate *dst and copy n bytes from host src (n may be 0: nothing). */
static int put(cu_ptr *dst, const void *src, size_t n)
{
	cu_result r;
	if (!n)
		return MTA_OK;
	if ((r = mta_cu.mem_alloc(dst, n)))
		return mta_fail(r == CU_ERROR_OUT_OF_MEMORY ? MTA_ENOMEM : MTA_EKERNEL,
				"cuMemAlloc of %zu bytes: %s", n, mta_cu_error(r));
	if (src && (r = mta_cu.htod(*dst, src, n)))
		return drv_fail(MTA_EKERNEL, r, "copy to the device");
	return MTA_OK;
}

static int put_tensor(cu_ptr *dst, const struct mta_tensor *t)
{
	size_t n = (size_t)(t->shape[0] * t->shape[1] * t->shape[2] * t->shape[3]) *
		   mta_dtype_size(t->dtype);
	void *dense = malloc(n ? n : 1);
	if (!dense)
		return mta_fail(MTA_ENOMEM, "out of memory for a %zu-byte staging buffer", n);
	pack(t, dense, 0);
	int rc = put(dst, dense, n);
	free(dense);
	return rc;
}

static void *dptr(cu_ptr p)
{
	return (void *)(uintptr_t)p;
}

/* The upload proper; c's context is current. */
static int upload(struct mta_cuda_io *io, const struct mta_tensor *q, const struct mta_tensor *k,
		  const struct mta_tensor *v, const struct mta_weights *w)
{
	const struct mta_problem *p = &io->p;
	struct mta_tensor dq, dk, dv, dout;
	struct mta_weights dw = { 0 };
	cu_result r;
	int rc;
	size_t H = (size_t)p->H, D = (size_t)p->D, f = sizeof(float);
	size_t wn[W_COUNT] = {
		p->cq ? H * (size_t)(p->cq * p->ck) : 0,
		p->head_pre ? H * H : 0,
		p->cq2 ? H * (size_t)(p->cq2 * p->ck2) : 0,
		p->head_post == MTA_HPOST_CONV ? H * (size_t)p->hc : p->head_post ? H * H : 0,
		p->gn ? D : 0,
		p->gate ? D : 0,
		p->gate ? 1 : 0, /* gate_b: the kernel reads it from device memory */
	};
	const float *wh[W_COUNT] = { 0 };
	if (w) {
		const float *hw[W_COUNT] = { w->kq_pre, w->head_pre, w->kq_post,
			p->head_post == MTA_HPOST_CONV ? w->head_post : w->head_post_linear,
			w->gn_weight, w->gate_w, w->gate_b_ptr ? w->gate_b_ptr : &w->gate_b };
		memcpy(wh, hw, sizeof wh);
	}
	size_t on = (size_t)io->B * (size_t)io->T * H * D * f;
	if ((rc = put_tensor(&io->q, q)) || (rc = put_tensor(&io->k, k)) ||
	    (rc = put_tensor(&io->v, v)) || (rc = put(&io->o, NULL, on)))
		return rc;
	for (int i = 0; i < W_COUNT; i++)
		if ((rc = put(&io->w[i], wh[i], wn[i] * f)))
			return rc;
	if ((r = mta_cu.memset8(io->o, 0xff, on, io->c->stream)) ||
	    (r = mta_cu.stream_sync(io->c->stream)))
		return drv_fail(MTA_EKERNEL, r, "poisoning the output");
	mta_tensor_init(&dq, dptr(io->q), p->dtype, io->B, io->T, p->H, p->D);
	mta_tensor_init(&dk, dptr(io->k), p->dtype, io->B, io->T, p->Hkv, p->D);
	mta_tensor_init(&dv, dptr(io->v), p->dtype, io->B, io->T, p->Hkv, p->D);
	mta_tensor_init(&dout, dptr(io->o), MTA_F32, io->B, io->T, p->H, p->D);
	dw.kq_pre = dptr(io->w[W_KQ_PRE]);
	dw.head_pre = dptr(io->w[W_HEAD_PRE]);
	dw.kq_post = dptr(io->w[W_KQ_POST]);
	dw.head_post = dw.head_post_linear = dptr(io->w[W_HEAD_POST]);
	dw.gn_weight = dptr(io->w[W_GN]);
	dw.gate_w = dptr(io->w[W_GATE]);
	dw.gate_b_ptr = dptr(io->w[W_GATE_B]);
	dw.layer_id = w ? w->layer_id : 0;
	return mta_cuda_args_fill(p, &dq, &dk, &dv, &dw, &dout, &io->args);
}

int mta_cuda_io_upload(struct mta_cuda *c, const struct mta_problem *p,
		       const struct mta_tensor *q, const struct mta_tensor *k,
		       const struct mta_tensor *v, const struct mta_weights *w,
		       struct mta_cuda_io **out)
{
	struct mta_cuda_io *io = NULL;
	int64_t B, T;
	int rc;

	*out = NULL;
	if ((rc = mta_check_tensors(p, q, k, v, NULL, &B, &T)) || (rc = mta_check_weights(p, w)))
		return rc;
	if (!(io = calloc(1, sizeof *io)))
		return mta_fail(MTA_ENOMEM, "out of memory");
	io->c = c;
	io->p = *p;
	io->B = B;
	io->T = T;
	if ((rc = mta_cu_push(c))) {
		free(io);
		return rc;
	}
	rc = upload(io, q, k, v, w);
	mta_cu_pop();
	if (rc) {
		mta_cuda_io_free(io);
		return rc;
	}
	*out = io;
	return MTA_OK;
}

void mta_cuda_io_free(struct mta_cuda_io *io)
{
	if (!io)
		return;
	if (!mta_cu_push(io->c)) {
		cu_ptr all[4 + W_COUNT] = { io->q, io->k, io->v, io->o };
		memcpy(all + 4, io->w, sizeof io->w);
		for (size_t i = 0; i < sizeof all / sizeof all[0]; i++)
			if (all[i])
				mta_cu.mem_free(all[i]);
		mta_cu_pop();
	}
	free(io);
}

int mta_cuda_io_download(struct mta_cuda_io *io, struct mta_tensor *o)
{
	const struct mta_problem *p = &io->p;
	int rc;
	cu_result r;
	if (o->dtype != MTA_F32 || o->shape[0] != io->B || o->shape[1] != io->T ||
	    o->shape[2] != p->H || o->shape[3] != p->D)
		return mta_fail(MTA_ESHAPE, "the output must be float32 [%lld,%lld,%d,%d]",
				(long long)io->B, (long long)io->T, p->H, p->D);
	size_t n = (size_t)io->B * (size_t)io->T * (size_t)p->H * (size_t)p->D * sizeof(float);
	float *dense = malloc(n);
	if (!dense)
		return mta_fail(MTA_ENOMEM, "out of memory for the output");
	if ((rc = mta_cu_push(io->c))) {
		free(dense);
		return rc;
	}
	if ((r = mta_cu.stream_sync(io->c->stream)) || (r = mta_cu.dtoh(dense, io->o, n)))
		rc = drv_fail(MTA_EKERNEL, r, "copying the output back");
	mta_cu_pop();
	if (!rc)
		pack(o, dense, 1);
	free(dense);
	return rc;
}

/* The launch and its wait (timed when ms is set); the context is current. */
static int run(struct mta_cuda_kernel *k, struct mta_cuda_io *io, double *ms)
{
	struct mta_cuda *c = k->m.c;
	cu_event ev[2] = { 0 };
	cu_result r = 0;
	float t = 0;
	int rc = MTA_OK;

	if (memcmp(&k->p, &io->p, sizeof k->p))
		return mta_fail(MTA_EINVAL, "the kernel and the tensors belong to different problems");
	if (ms && ((r = mta_cu.event_create(&ev[0], 0)) || (r = mta_cu.event_create(&ev[1], 0)) ||
		   (r = mta_cu.event_record(ev[0], c->stream)))) {
		rc = drv_fail(MTA_EKERNEL, r, "cuEventCreate/Record");
		goto out;
	}
	if ((rc = mta_cuda_module_launch(&k->m, &io->args, k->p.H, c->stream)))
		goto out;
	if (ms && ((r = mta_cu.event_record(ev[1], c->stream)) || (r = mta_cu.event_sync(ev[1])) ||
		   (r = mta_cu.event_elapsed(&t, ev[0], ev[1])))) {
		rc = drv_fail(MTA_EKERNEL, r, "a timed run failed");
		goto out;
	}
	if ((r = mta_cu.stream_sync(c->stream)))
		rc = drv_fail(MTA_EKERNEL, r, "the kernel failed");
	else if (ms)
		*ms = t;
out:
	for (int i = 0; i < 2; i++)
		if (ev[i])
			mta_cu.event_destroy(ev[i]);
	return rc;
}

int mta_cuda_run(struct mta_cuda_kernel *k, struct mta_cuda_io *io, double *ms)
{
	int rc = mta_cu_push(k->m.c);
	if (rc)
		return rc;
	rc = run(k, io, ms);
	mta_cu_pop();
	return rc;
}

int mta_cuda_flush_l2(struct mta_cuda *c)
{
	static _Thread_local unsigned char seq; /* a new byte each time: every flush writes */
	size_t n = c->dev.l2_bytes > 0 ? 2 * (size_t)c->dev.l2_bytes : (size_t)64 << 20;
	cu_result r = 0;
	int rc = mta_cu_push(c);
	if (rc)
		return rc;
	if (!c->flush && (rc = put(&c->flush, NULL, n)) == MTA_OK)
		c->flush_bytes = n;
	if (!rc && ((r = mta_cu.memset8(c->flush, ++seq, c->flush_bytes, c->stream)) ||
		    (r = mta_cu.stream_sync(c->stream))))
		rc = drv_fail(MTA_EKERNEL, r, "flushing L2 before a timed run");
	mta_cu_pop();
	return rc;
}

int mta_cuda_forward(struct mta_cuda_kernel *k, const struct mta_problem *p,
		     const struct mta_tensor *q, const struct mta_tensor *kt,
		     const struct mta_tensor *v, const struct mta_weights *w,
		     struct mta_tensor *o)
{
	struct mta_cuda_io *io = NULL;
	int64_t B, T;
	int rc;
	if (!(rc = mta_check_tensors(p, q, kt, v, o, &B, &T)) &&
	    !(rc = mta_cuda_io_upload(k->m.c, p, q, kt, v, w, &io)) && !(rc = mta_cuda_run(k, io, NULL)))
		rc = mta_cuda_io_download(io, o);
	mta_cuda_io_free(io);
	return rc;
}

int mta_cuda_launch_async(struct mta_cuda_kernel *k, const struct mta_cuda_args *a, void *stream)
{
	struct mta_cuda *c = k->m.c;
	int rc = mta_cu_push(c);
	if (rc)
		return rc;
	rc = mta_cuda_module_launch(&k->m, a, k->p.H, stream ? (cu_stream)stream : c->stream);
	mta_cu_pop();
	return rc;
}

/* ---- packed documents in one launch (mta_forward_varlen) ---- */

int mta_cuda_forward_varlen(struct mta_cuda_kernel *k, const struct mta_problem *p,
			    const struct mta_tensor *q, const struct mta_tensor *kt,
			    const struct mta_tensor *v, const struct mta_weights *w,
			    const int64_t *cu, int64_t ndocs, struct mta_tensor *o)
{
	struct mta_cuda_io *io = NULL;
	struct mta_cuda_args a;
	cu_ptr dcu = 0, dtiles = 0;
	int *tiles = NULL, rc;
	cu_result r;
	if (!cu[ndocs])
		return MTA_OK; /* no rows at all */
	if (!(tiles = malloc((size_t)(ndocs + 1) * sizeof *tiles)))
		return mta_fail(MTA_ENOMEM, "out of memory");
	if ((rc = mta_cuda_varlen_tiles(cu, ndocs, (int)k->v.bq, tiles)) ||
	    (rc = mta_cuda_io_upload(k->m.c, p, q, kt, v, w, &io))) {
		free(tiles);
		return rc;
	}
	if ((rc = mta_cu_push(k->m.c)))
		goto out;
	if (!(rc = put(&dcu, cu, (size_t)(ndocs + 1) * sizeof *cu)) &&
	    !(rc = put(&dtiles, tiles, (size_t)(ndocs + 1) * sizeof *tiles))) {
		a = io->args;
		mta_cuda_args_varlen(&a, dptr(dcu), ndocs, dptr(dtiles));
		if (!(rc = mta_cuda_module_launch_varlen(&k->m, &a, p->H, tiles[ndocs],
							 k->m.c->stream)) &&
		    (r = mta_cu.stream_sync(k->m.c->stream)))
			rc = drv_fail(MTA_EKERNEL, r, "the packed kernel failed");
	}
	if (dcu)
		mta_cu.mem_free(dcu);
	if (dtiles)
		mta_cu.mem_free(dtiles);
	mta_cu_pop();
	if (!rc)
		rc = mta_cuda_io_download(io, o);
out:
	mta_cuda_io_free(io);
	free(tiles);
	return rc;
}
