/*
 * cuda_run.c: cubins in, tensors across, launches timed (see cuda.h).
 *
 * Host tensors may have any strides; they are packed into contiguous
 * staging buffers before the copy, and the output is scattered back the
 * same way, so the kernel always sees contiguous [B,T,heads,D] tensors.
 */
#include "cuda_int.h"
#include "cudagen.h"
#include "error.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

struct mta_cuda_kernel {
	struct mta_cuda *c;
	struct mta_problem p;
	struct mta_variant v;
	cu_mod mod;
	cu_func fn;
};

enum { W_KQ_PRE, W_HEAD_PRE, W_KQ_POST, W_HEAD_POST, W_GN, W_GATE, W_COUNT };

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
	struct mta_cuda_kernel *k = NULL;
	size_t smem = mta_cuda_smem_bytes(p, v);
	int rc, r;

	*out = NULL;
	if ((rc = mta_variant_check(p, v)) || (rc = mta_cu_use(c)))
		return rc;
	if (!cubin || !n)
		return mta_fail(MTA_EINVAL, "no cubin to load");
	if (smem > (size_t)c->dev.smem_optin)
		return mta_fail(MTA_EUNSUPPORTED, "the kernel needs %zu bytes of shared memory; %s "
				"(%s) allows %d per block", smem, c->dev.name, c->dev.arch,
				c->dev.smem_optin);
	if (!(k = calloc(1, sizeof *k)))
		return mta_fail(MTA_ENOMEM, "out of memory");
	k->c = c;
	k->p = *p;
	k->v = *v;
	if ((r = mta_cu.mod_load(&k->mod, cubin))) {
		rc = drv_fail(MTA_EKERNEL, r, "the driver refused the cubin (cuModuleLoadData)");
		goto fail;
	}
	if ((r = mta_cu.mod_func(&k->fn, k->mod, MTA_CUDA_KERNEL))) {
		rc = drv_fail(MTA_EKERNEL, r, "the cubin has no kernel " MTA_CUDA_KERNEL);
		goto fail;
	}
	if (smem > 48 * 1024 && (r = mta_cu.func_attr(k->fn, CU_FUNC_MAX_DYNAMIC_SHARED, (int)smem))) {
		rc = drv_fail(MTA_EUNSUPPORTED, r, "cannot raise the kernel's dynamic shared memory");
		goto fail;
	}
	*out = k;
	return MTA_OK;
fail:
	mta_cuda_kernel_free(k);
	return rc;
}

void mta_cuda_kernel_free(struct mta_cuda_kernel *k)
{
	if (!k)
		return;
	if (k->mod && !mta_cu_use(k->c))
		mta_cu.mod_unload(k->mod);
	free(k);
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
		return mta_fail(r == 2 ? MTA_ENOMEM : MTA_EKERNEL, "cuMemAlloc of %zu bytes: %s", n,
				mta_cu_error(r));
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

int mta_cuda_io_upload(struct mta_cuda *c, const struct mta_problem *p,
		       const struct mta_tensor *q, const struct mta_tensor *k,
		       const struct mta_tensor *v, const struct mta_weights *w,
		       struct mta_cuda_io **out)
{
	struct mta_cuda_io *io = NULL;
	struct mta_tensor dq, dk, dv, dout;
	struct mta_weights dw = { 0 };
	int64_t B, T;
	int rc, r;

	*out = NULL;
	if ((rc = mta_check_tensors(p, q, k, v, NULL, &B, &T)) || (rc = mta_check_weights(p, w)) ||
	    (rc = mta_cu_use(c)))
		return rc;
	if (!(io = calloc(1, sizeof *io)))
		return mta_fail(MTA_ENOMEM, "out of memory");
	io->c = c;
	io->p = *p;
	io->B = B;
	io->T = T;
	size_t H = (size_t)p->H, D = (size_t)p->D, f = sizeof(float);
	size_t wn[W_COUNT] = {
		p->cq ? H * (size_t)(p->cq * p->ck) : 0,
		p->head_pre ? H * H : 0,
		p->cq2 ? H * (size_t)(p->cq2 * p->ck2) : 0,
		p->head_post == MTA_HPOST_CONV ? H * (size_t)p->hc : p->head_post ? H * H : 0,
		p->gn ? D : 0,
		p->gate ? D : 0,
	};
	const float *wh[W_COUNT] = { 0 };
	if (w) {
		const float *hw[W_COUNT] = { w->kq_pre, w->head_pre, w->kq_post,
			p->head_post == MTA_HPOST_CONV ? w->head_post : w->head_post_linear,
			w->gn_weight, w->gate_w };
		memcpy(wh, hw, sizeof wh);
	}
	size_t on = (size_t)B * (size_t)T * H * D * f;
	if ((rc = put_tensor(&io->q, q)) || (rc = put_tensor(&io->k, k)) ||
	    (rc = put_tensor(&io->v, v)) || (rc = put(&io->o, NULL, on)))
		goto fail;
	for (int i = 0; i < W_COUNT; i++)
		if ((rc = put(&io->w[i], wh[i], wn[i] * f)))
			goto fail;
	if ((r = mta_cu.memset8(io->o, 0xff, on, c->stream)) || (r = mta_cu.stream_sync(c->stream))) {
		rc = drv_fail(MTA_EKERNEL, r, "poisoning the output");
		goto fail;
	}
	mta_tensor_init(&dq, dptr(io->q), p->dtype, B, T, p->H, p->D);
	mta_tensor_init(&dk, dptr(io->k), p->dtype, B, T, p->Hkv, p->D);
	mta_tensor_init(&dv, dptr(io->v), p->dtype, B, T, p->Hkv, p->D);
	mta_tensor_init(&dout, dptr(io->o), MTA_F32, B, T, p->H, p->D);
	dw.kq_pre = dptr(io->w[W_KQ_PRE]);
	dw.head_pre = dptr(io->w[W_HEAD_PRE]);
	dw.kq_post = dptr(io->w[W_KQ_POST]);
	dw.head_post = dw.head_post_linear = dptr(io->w[W_HEAD_POST]);
	dw.gn_weight = dptr(io->w[W_GN]);
	dw.gate_w = dptr(io->w[W_GATE]);
	dw.gate_b = w ? w->gate_b : 0.0f;
	dw.layer_id = w ? w->layer_id : 0;
	if ((rc = mta_cuda_args_fill(p, &dq, &dk, &dv, &dw, &dout, &io->args)))
		goto fail;
	*out = io;
	return MTA_OK;
fail:
	mta_cuda_io_free(io);
	return rc;
}

void mta_cuda_io_free(struct mta_cuda_io *io)
{
	if (!io)
		return;
	if (!mta_cu_use(io->c)) {
		cu_ptr all[4 + W_COUNT] = { io->q, io->k, io->v, io->o };
		memcpy(all + 4, io->w, sizeof io->w);
		for (size_t i = 0; i < sizeof all / sizeof all[0]; i++)
			if (all[i])
				mta_cu.mem_free(all[i]);
	}
	free(io);
}

int mta_cuda_io_download(struct mta_cuda_io *io, struct mta_tensor *o)
{
	const struct mta_problem *p = &io->p;
	int rc, r;
	if (o->dtype != MTA_F32 || o->shape[0] != io->B || o->shape[1] != io->T ||
	    o->shape[2] != p->H || o->shape[3] != p->D)
		return mta_fail(MTA_ESHAPE, "the output must be float32 [%lld,%lld,%d,%d]",
				(long long)io->B, (long long)io->T, p->H, p->D);
	if ((rc = mta_cu_use(io->c)))
		return rc;
	size_t n = (size_t)io->B * (size_t)io->T * (size_t)p->H * (size_t)p->D * sizeof(float);
	float *dense = malloc(n);
	if (!dense)
		return mta_fail(MTA_ENOMEM, "out of memory for the output");
	if ((r = mta_cu.stream_sync(io->c->stream)) || (r = mta_cu.dtoh(dense, io->o, n)))
		rc = drv_fail(MTA_EKERNEL, r, "copying the output back");
	else
		pack(o, dense, 1);
	free(dense);
	return rc;
}

/* Queue one launch on the context's stream. */
static int launch(struct mta_cuda_kernel *k, struct mta_cuda_io *io)
{
	struct mta_cuda_launch g;
	void *params[1] = { &io->args };
	int rc = mta_cuda_geometry(&k->p, &k->v, io->B, io->T, &g);
	if (rc)
		return rc;
	if (memcmp(&k->p, &io->p, sizeof k->p))
		return mta_fail(MTA_EINVAL, "the kernel and the tensors belong to different problems");
	cu_result r = mta_cu.launch(k->fn, g.grid[0], g.grid[1], g.grid[2], g.block[0], g.block[1],
				    g.block[2], (unsigned)g.smem_bytes, k->c->stream, params, NULL);
	if (r)
		return drv_fail(MTA_EKERNEL, r, "cuLaunchKernel");
	return MTA_OK;
}

int mta_cuda_run(struct mta_cuda_kernel *k, struct mta_cuda_io *io)
{
	int rc = mta_cu_use(k->c);
	cu_result r;
	if (rc || (rc = launch(k, io)))
		return rc;
	if ((r = mta_cu.stream_sync(k->c->stream)))
		return drv_fail(MTA_EKERNEL, r, "the kernel failed");
	return MTA_OK;
}

int mta_cuda_time(struct mta_cuda_kernel *k, struct mta_cuda_io *io, int warmup, int reps,
		  double *ms)
{
	struct mta_cuda *c = k->c;
	cu_event ev[2] = { 0 };
	cu_ptr flush = 0;
	size_t fn = c->dev.l2_bytes > 0 ? 2 * (size_t)c->dev.l2_bytes : (size_t)64 << 20;
	cu_result r = 0;
	int rc;

	if ((rc = mta_cu_use(c)))
		return rc;
	if ((rc = put(&flush, NULL, fn)))
		return rc;
	if ((r = mta_cu.event_create(&ev[0], 0)) || (r = mta_cu.event_create(&ev[1], 0))) {
		rc = drv_fail(MTA_EKERNEL, r, "cuEventCreate");
		goto out;
	}
	for (int i = 0; i < warmup; i++)
		if ((rc = mta_cuda_run(k, io)))
			goto out;
	for (int i = 0; i < reps; i++) {
		float t = 0;
		if ((r = mta_cu.memset8(flush, (unsigned char)(i + 1), fn, c->stream)) ||
		    (r = mta_cu.event_record(ev[0], c->stream))) {
			rc = drv_fail(MTA_EKERNEL, r, "flushing L2 before a timed run");
			goto out;
		}
		if ((rc = launch(k, io)))
			goto out;
		if ((r = mta_cu.event_record(ev[1], c->stream)) || (r = mta_cu.event_sync(ev[1])) ||
		    (r = mta_cu.event_elapsed(&t, ev[0], ev[1]))) {
			rc = drv_fail(MTA_EKERNEL, r, "a timed run failed");
			goto out;
		}
		ms[i] = t;
	}
out:
	for (int i = 0; i < 2; i++)
		if (ev[i])
			mta_cu.event_destroy(ev[i]);
	mta_cu.mem_free(flush);
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
	    !(rc = mta_cuda_io_upload(k->c, p, q, kt, v, w, &io)) && !(rc = mta_cuda_run(k, io)))
		rc = mta_cuda_io_download(io, o);
	mta_cuda_io_free(io);
	return rc;
}
