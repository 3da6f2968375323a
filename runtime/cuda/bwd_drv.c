/*
 * bwd_drv.c: the CUDA backward on a GPU (bwd.h): a cubin of the backward
 * loaded by the driver, and the driver as a device of the runner in bwd.c
 * (memory, copies, a launch on the device's stream that waits). The cubin
 * comes from NVRTC in mtatune's runtime (bwd_nvrtc.c) and from the table of
 * an exported library, which ships this file: it includes only the core
 * layer and the driver's files.
 */
#include "runtime/cuda/bwd.h"
#include "runtime/core/error.h"
#include "runtime/cuda/driver.h"
#include "runtime/cuda/module.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

struct mta_cuda_train {
	struct mta_problem p;
	struct mta_cuda_bwd_shape s; /* the backward variant's bq, warps, nb: the launch */
	struct mta_cuda_module m;
};

int mta_cuda_train_open(struct mta_cuda *c, const struct mta_problem *p,
			const struct mta_cuda_bwd_shape *s, const void *cubin,
			struct mta_cuda_train **out)
{
	struct mta_cuda_bwd_dims d;
	struct mta_cuda_train *t = NULL;
	int rc;

	*out = NULL;
	if ((rc = mta_cuda_bwd_plan(p, s, 1, 1, &d, NULL)))
		return rc;
	if (!(t = calloc(1, sizeof *t)))
		return mta_fail(MTA_ENOMEM, "out of memory");
	/* the grid is the runner's (bwd.c); bq, hpb and cs are not used */
	if ((rc = mta_cuda_module_load(c, cubin, MTA_CUDA_BWD_KERNEL, d.threads,
				       (unsigned)d.smem_bytes, 1, 1, 1, &t->m))) {
		free(t);
		return rc;
	}
	t->p = *p;
	t->s = *s;
	*out = t;
	return MTA_OK;
}

void mta_cuda_train_free(struct mta_cuda_train *t)
{
	if (!t)
		return;
	mta_cuda_module_unload(&t->m);
	free(t);
}

static int drv(cu_result r, const char *what)
{
	if (!r)
		return MTA_OK;
	return mta_fail(r == CU_ERROR_OUT_OF_MEMORY ? MTA_ENOMEM : MTA_EKERNEL, "%s: %s", what,
			mta_cu_error(r));
}

/* The operations below run with the device's context current (pushed by the callers). */
static int d_alloc(void *ctx, size_t n, void **p)
{
	cu_ptr x = 0;
	int rc = drv(mta_cu.mem_alloc(&x, n ? n : 1), "cuMemAlloc");
	*p = rc ? NULL : (void *)(uintptr_t)x;
	return rc;
}

static void d_release(void *ctx, void *p)
{
	mta_cu.mem_free((cu_ptr)(uintptr_t)p);
}

static int d_put(void *ctx, void *dst, const void *src, size_t n)
{
	return drv(mta_cu.htod((cu_ptr)(uintptr_t)dst, src, n), "copy to the device");
}

static int d_get(void *ctx, void *dst, const void *src, size_t n)
{
	return drv(mta_cu.dtoh(dst, (cu_ptr)(uintptr_t)src, n), "copy from the device");
}

static int d_launch(void *ctx, const struct mta_cuda_bargs *a, const unsigned grid[3],
		    unsigned threads, size_t smem)
{
	const struct mta_cuda_train *t = ctx;
	void *params[1] = { (void *)a };
	int rc = drv(mta_cu.launch(t->m.fn, grid[0], grid[1], grid[2], threads, 1, 1,
				   (unsigned)smem, t->m.c->stream, params, NULL), "cuLaunchKernel");
	if (!rc)
		rc = drv(mta_cu.stream_sync(t->m.c->stream), "the backward kernel");
	return rc;
}

static int same_problem(const struct mta_cuda_train *t, const struct mta_problem *p)
{
	if (!t || memcmp(&t->p, p, sizeof *p))
		return mta_fail(MTA_EINVAL, "cuda: the backward was built for another problem");
	return MTA_OK;
}

int mta_cuda_train_fwd_save(struct mta_cuda_train *t, const struct mta_problem *p,
			    const struct mta_tensor *q, const struct mta_tensor *k,
			    const struct mta_tensor *v, const struct mta_weights *w,
			    struct mta_tensor *o, void *saved)
{
	const struct mta_cuda_bwd_dev dev = { t, d_alloc, d_release, d_put, d_get, d_launch };
	int rc;
	if ((rc = same_problem(t, p)) || (rc = mta_cu_push(t->m.c)))
		return rc;
	rc = mta_cuda_bwd_forward(&dev, &t->s, p, q, k, v, w, o, saved);
	mta_cu_pop();
	return rc;
}

int mta_cuda_train_backward(struct mta_cuda_train *t, const struct mta_problem *p,
			    const struct mta_tensor *q, const struct mta_tensor *k,
			    const struct mta_tensor *v, const struct mta_weights *w,
			    const void *saved, const struct mta_tensor *dout,
			    const struct mta_grads *g)
{
	const struct mta_cuda_bwd_dev dev = { t, d_alloc, d_release, d_put, d_get, d_launch };
	int rc;
	if ((rc = same_problem(t, p)) || (rc = mta_cu_push(t->m.c)))
		return rc;
	rc = mta_cuda_bwd_backward(&dev, &t->s, p, q, k, v, w, saved, dout, g);
	mta_cu_pop();
	return rc;
}
