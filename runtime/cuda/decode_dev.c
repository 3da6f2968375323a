/*
 * decode_dev.c: a CUDA decode kernel's cubin loaded as a decode cache's
 * kernel (decode_dev.h): the device's memory as the cache's (struct
 * mta_dmem: runtime/core/decode.c keeps the cache there and runs the same
 * host code on cuda-emu's emulated memory), and the cache's call: one
 * launch of a block per sequence, waited for, so a fault in the kernel is
 * reported by the call that caused it. Shipped in exported CUDA libraries
 * (the Makefile's SHIP): it includes only the core layer and the driver's
 * files.
 */
#include "runtime/cuda/decode_dev.h"
#include "runtime/core/decode.h"
#include "runtime/core/error.h"
#include "runtime/core/mta_dargs.h"
#include "runtime/cuda/driver.h"
#include "runtime/cuda/module.h"

#include <inttypes.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

/* the entry of templates/mta_cuda_decode.cu (gen/cuda/cudagen.h's MTA_CUDA_DECODE_KERNEL) */
#define DECODE_ENTRY "mta_decode_row"

struct mta_cuda_decode {
	struct mta_cuda_module m;
	struct mta_dmem mem;
};

static int drv(cu_result r, const char *what)
{
	if (!r)
		return MTA_OK;
	return mta_fail(r == CU_ERROR_OUT_OF_MEMORY ? MTA_ENOMEM : MTA_EKERNEL, "cuda decode: %s: %s",
			what, mta_cu_error(r));
}

/* ---- the device's memory as a decode cache's (ctx: the struct mta_cuda) ---- */

static int dm_alloc(void *ctx, size_t n, void **p)
{
	int rc = mta_cuda_mem_alloc(ctx, n, p);
	return rc ? mta_wrap(rc, "cuda decode") : MTA_OK;
}

static void dm_release(void *ctx, void *p)
{
	mta_cuda_mem_free(ctx, p);
}

static int dm_put(void *ctx, void *dst, const void *src, size_t n)
{
	int rc = mta_cu_push(ctx);
	if (rc)
		return rc;
	rc = drv(mta_cu.htod((cu_ptr)(uintptr_t)dst, src, n), "copy to the device");
	mta_cu_pop();
	return rc;
}

static int dm_get(void *ctx, void *dst, const void *src, size_t n)
{
	int rc = mta_cu_push(ctx);
	if (rc)
		return rc;
	rc = drv(mta_cu.dtoh(dst, (cu_ptr)(uintptr_t)src, n), "copy from the device");
	mta_cu_pop();
	return rc;
}

static int dm_move(void *ctx, void *dst, const void *src, size_t n)
{
	struct mta_cuda *c = ctx;
	int rc = mta_cu_push(c);
	if (rc)
		return rc;
	rc = drv(mta_cu.memcpy_async((cu_ptr)(uintptr_t)dst, (cu_ptr)(uintptr_t)src, n, c->stream),
		 "copy within the device");
	if (!rc)
		rc = drv(mta_cu.stream_sync(c->stream), "copy within the device");
	mta_cu_pop();
	return rc;
}

/*
 * The cache's call: a's pointers are all device memory (decode.c with
 * dec->mem set); the arguments travel by value as the kernel's one
 * parameter (struct mta_dargs_cu, the same layout).
 */
static int decode_call(const struct mta_dargs *a)
{
	const struct mta_cuda_decode *k = a ? a->impl : NULL;
	int rc;
	if (!k)
		return mta_fail(MTA_EINVAL, "cuda decode: the call carries no kernel");
	if (a->n < 1 || a->n > INT32_MAX)
		return a->n ? mta_fail(MTA_EINVAL, "cuda decode: %" PRId64 " sequences in one call "
				       "(1..%d)", a->n, INT32_MAX) : MTA_OK;
	if ((rc = mta_cu_push(k->m.c)))
		return rc;
	void *params[1] = { (void *)a };
	rc = drv(mta_cu.launch(k->m.fn, (unsigned)a->n, 1, 1, k->m.block, 1, 1, k->m.smem,
			       k->m.c->stream, params, NULL), "cuLaunchKernel");
	if (!rc)
		rc = drv(mta_cu.stream_sync(k->m.c->stream), "the decode kernel");
	mta_cu_pop();
	return rc;
}

int mta_cuda_decode_open(struct mta_cuda *c, const void *cubin, unsigned threads, unsigned smem,
			 struct mta_cuda_decode **out, struct mta_decoder *dec)
{
	struct mta_cuda_decode *k = NULL;
	int rc;

	*out = NULL;
	memset(dec, 0, sizeof *dec);
	if (!c)
		return mta_fail(MTA_ENODEV, "cuda decode: no CUDA device");
	if (!cubin)
		return mta_fail(MTA_EINVAL, "cuda decode: no cubin");
	if (!(k = calloc(1, sizeof *k)))
		return mta_fail(MTA_ENOMEM, "out of memory");
	/* the grid is the call's (a block per sequence); bq and hpb are not used */
	if ((rc = mta_cuda_module_load(c, cubin, DECODE_ENTRY, threads, smem, 1, 1, 1, &k->m))) {
		free(k);
		return rc;
	}
	k->mem = (struct mta_dmem){ c, dm_alloc, dm_release, dm_put, dm_get, dm_move };
	dec->fn = decode_call;
	dec->impl = k;
	dec->mem = &k->mem;
	*out = k;
	return MTA_OK;
}

void mta_cuda_decode_free(struct mta_cuda_decode *k)
{
	if (!k)
		return;
	mta_cuda_module_unload(&k->m);
	free(k);
}
