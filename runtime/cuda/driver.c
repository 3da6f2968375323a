/*
 * driver.c: load the CUDA driver with dlopen, name the devices, open one
 * (see driver.h). Nothing here links against libcuda: a machine without a
 * driver gets MTA_ENODEV with a message, never a loader error at start-up.
 * Shipped in exported libraries: it uses only the core layer.
 */
#include "runtime/cuda/driver.h"
#include "runtime/core/error.h"

#include <dlfcn.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct mta_cu mta_cu;

static pthread_once_t once = PTHREAD_ONCE_INIT;
static int load_rc = MTA_OK;
static char load_msg[768];

/* Resolve name (or its fallback, an older ABI's name) into *slot. */
static int sym(void *dl, void **slot, const char *name, const char *fallback)
{
	if (!(*slot = dlsym(dl, name)) && fallback)
		*slot = dlsym(dl, fallback);
	if (*slot)
		return 0;
	snprintf(load_msg, sizeof load_msg, "no CUDA driver (libcuda.so.1) found: the library "
		 "loaded lacks %s; the driver is too old or not NVIDIA's", name);
	return -1;
}

static void load_once(void)
{
	const char *env = getenv("MTATUNE_LIBCUDA");
	const char *path = env && *env ? env : "libcuda.so.1";
	void *dl = dlopen(path, RTLD_NOW | RTLD_LOCAL);
	struct mta_cu f;
	int r;

	load_rc = MTA_ENODEV;
	if (!dl) {
		const char *why = dlerror();
		snprintf(load_msg, sizeof load_msg, "no CUDA driver (libcuda.so.1) found: cannot load "
			 "%s (%s); install the NVIDIA driver, or set MTATUNE_LIBCUDA to its path",
			 path, why ? why : "unknown reason");
		return;
	}
#define S(field, name, fb) if (sym(dl, (void **)&f.field, name, fb)) goto bad
	S(init, "cuInit", NULL);
	S(driver_version, "cuDriverGetVersion", NULL);
	S(device_get, "cuDeviceGet", NULL);
	S(device_count, "cuDeviceGetCount", NULL);
	S(device_name, "cuDeviceGetName", NULL);
	S(device_attr, "cuDeviceGetAttribute", NULL);
	S(device_mem, "cuDeviceTotalMem_v2", "cuDeviceTotalMem");
	S(ctx_retain, "cuDevicePrimaryCtxRetain", NULL);
	S(ctx_release, "cuDevicePrimaryCtxRelease_v2", "cuDevicePrimaryCtxRelease");
	S(ctx_push, "cuCtxPushCurrent_v2", "cuCtxPushCurrent");
	S(ctx_pop, "cuCtxPopCurrent_v2", "cuCtxPopCurrent");
	S(mod_load, "cuModuleLoadData", NULL);
	S(mod_unload, "cuModuleUnload", NULL);
	S(mod_func, "cuModuleGetFunction", NULL);
	S(func_attr, "cuFuncSetAttribute", NULL);
	S(launch, "cuLaunchKernel", NULL);
	S(mem_alloc, "cuMemAlloc_v2", NULL);
	S(mem_free, "cuMemFree_v2", NULL);
	S(htod, "cuMemcpyHtoD_v2", NULL);
	S(dtoh, "cuMemcpyDtoH_v2", NULL);
	S(memset8, "cuMemsetD8Async", NULL);
	S(stream_create, "cuStreamCreate", NULL);
	S(stream_sync, "cuStreamSynchronize", NULL);
	S(stream_destroy, "cuStreamDestroy_v2", "cuStreamDestroy");
	S(event_create, "cuEventCreate", NULL);
	S(event_record, "cuEventRecord", NULL);
	S(event_sync, "cuEventSynchronize", NULL);
	S(event_elapsed, "cuEventElapsedTime_v2", "cuEventElapsedTime");
	S(event_destroy, "cuEventDestroy_v2", "cuEventDestroy");
	S(errstr, "cuGetErrorString", NULL);
	S(memcpy_async, "cuMemcpyAsync", NULL);
#undef S
	f.errname = (cu_result(*)(cu_result, const char **))dlsym(dl, "cuGetErrorName");
	f.ptr_attrs = (cu_result(*)(unsigned, int *, void **, cu_ptr))dlsym(dl,
									"cuPointerGetAttributes");
	mta_cu = f;
	if ((r = mta_cu.init(0))) {
		snprintf(load_msg, sizeof load_msg, "%s: cuInit failed: %s%s",
			 r == CU_ERROR_NO_DEVICE ? "no CUDA device found" : "the CUDA driver did not start",
			 mta_cu_error(r), r == CU_ERROR_STUB_LIBRARY ? "; this is the toolkit's link "
			 "stub, not a driver" : "");
		return; /* keep the library: it is loaded and harmless */
	}
	load_rc = MTA_OK;
	return;
bad:
	dlclose(dl);
}

int mta_cuda_driver_load(void)
{
	pthread_once(&once, load_once);
	if (load_rc)
		return mta_fail(load_rc, "%s", load_msg);
	return MTA_OK;
}

const char *mta_cu_error(cu_result r)
{
	static __thread char buf[200];
	const char *s = NULL, *name = NULL;
	if (!mta_cu.errstr || mta_cu.errstr(r, &s) || !s)
		s = "unknown error";
	/* the name (CUDA_ERROR_ILLEGAL_ADDRESS) is what a user searches for */
	if (mta_cu.errname && (mta_cu.errname(r, &name) || !name))
		name = NULL;
	if (name)
		snprintf(buf, sizeof buf, "%s: %s (CUDA error %d)", name, s, r);
	else
		snprintf(buf, sizeof buf, "%s (CUDA error %d)", s, r);
	return buf;
}

int mta_cuda_device_count(int *n)
{
	int rc = mta_cuda_driver_load(), r;
	*n = 0;
	if (rc)
		return rc;
	if ((r = mta_cu.device_count(n)))
		return mta_fail(MTA_ENODEV, "no CUDA device found: cuDeviceGetCount: %s",
				mta_cu_error(r));
	if (*n < 1)
		return mta_fail(MTA_ENODEV, "no CUDA device found: the driver sees no device "
				"(CUDA_VISIBLE_DEVICES=%s)", getenv("CUDA_VISIBLE_DEVICES") ?
				getenv("CUDA_VISIBLE_DEVICES") : "unset");
	return MTA_OK;
}

int mta_cuda_device_info(int index, struct mta_cuda_device *d)
{
	int n, r, rc = mta_cuda_device_count(&n);
	cu_device dev;

	memset(d, 0, sizeof *d);
	if (rc)
		return rc;
	if (index < 0 || index >= n)
		return mta_fail(MTA_ENODEV, "no CUDA device %d: %d visible (0..%d)", index, n, n - 1);
	if ((r = mta_cu.device_get(&dev, index)) ||
	    (r = mta_cu.device_name(d->name, (int)sizeof d->name - 1, dev)) ||
	    (r = mta_cu.device_attr(&d->cc_major, CU_ATTR_CC_MAJOR, dev)) ||
	    (r = mta_cu.device_attr(&d->cc_minor, CU_ATTR_CC_MINOR, dev)) ||
	    (r = mta_cu.device_attr(&d->sms, CU_ATTR_MULTIPROCESSOR_COUNT, dev)) ||
	    (r = mta_cu.device_attr(&d->l2_bytes, CU_ATTR_L2_CACHE_SIZE, dev)) ||
	    (r = mta_cu.device_attr(&d->smem_optin, CU_ATTR_SMEM_OPTIN, dev)) ||
	    (r = mta_cu.device_attr(&d->regs_per_block, CU_ATTR_MAX_REGISTERS_PER_BLOCK, dev)) ||
	    (r = mta_cu.device_attr(&d->max_threads, CU_ATTR_MAX_THREADS_PER_BLOCK, dev)) ||
	    (r = mta_cu.device_mem(&d->total_mem, dev)) ||
	    (r = mta_cu.driver_version(&d->driver)))
		return mta_fail(MTA_ENODEV, "CUDA device %d: cannot read its attributes: %s", index,
				mta_cu_error(r));
	d->index = index;
	snprintf(d->arch, sizeof d->arch, "sm_%d%d", d->cc_major % 100, d->cc_minor % 10);
	snprintf(d->driver_str, sizeof d->driver_str, "%d.%d", d->driver / 1000,
		 (d->driver % 1000) / 10);
	return MTA_OK;
}

int mta_cu_push(struct mta_cuda *c)
{
	cu_result r = mta_cu.ctx_push(c->ctx);
	if (r)
		return mta_fail(MTA_EKERNEL, "cannot make the context of CUDA device %d current: %s",
				c->dev.index, mta_cu_error(r));
	return MTA_OK;
}

void mta_cu_pop(void)
{
	cu_ctx old;
	mta_cu.ctx_pop(&old);
}

/* CUpointer_attribute and CUmemorytype values (cuda.h) */
enum { PTR_MEMORY_TYPE = 2, PTR_IS_MANAGED = 8, PTR_DEVICE_ORDINAL = 9 };
enum { MEMTYPE_HOST = 1, MEMTYPE_DEVICE = 2 };

int mta_cuda_ptr_check(struct mta_cuda *c, const char *name, const void *ptr, size_t bytes)
{
	const cu_ptr first = (cu_ptr)(uintptr_t)ptr;
	const cu_ptr at[2] = { first, first + (bytes ? bytes - 1 : 0) };
	int rc;
	if (!mta_cu.ptr_attrs)
		return MTA_OK;
	if ((rc = mta_cu_push(c)))
		return rc;
	for (int e = 0; e < 2 && !rc; e++) {
		int attrs[3] = { PTR_MEMORY_TYPE, PTR_IS_MANAGED, PTR_DEVICE_ORDINAL };
		unsigned type = 0, managed = 0;
		int ordinal = -1;
		void *data[3] = { &type, &managed, &ordinal };
		const char *end = e ? "its last byte" : "its first byte";
		cu_result r = mta_cu.ptr_attrs(3, attrs, data, at[e]);
		if (r)
			rc = mta_fail(MTA_EKERNEL, "cannot ask the driver what memory %s is "
				      "(cuPointerGetAttributes): %s", name, mta_cu_error(r));
		else if (managed)
			continue;
		else if (type == MEMTYPE_HOST)
			rc = mta_fail(MTA_EINVAL, "%s is page-locked host memory (%s at %p); a CUDA "
				      "kernel of device %d takes that device's memory", name, end,
				      (void *)(uintptr_t)at[e], c->dev.index);
		else if (type != MEMTYPE_DEVICE)
			rc = mta_fail(MTA_EINVAL, "%s is not CUDA memory (%s at %p is in no "
				      "allocation: host memory, or freed); a CUDA kernel of device %d "
				      "takes that device's memory", name, end, (void *)(uintptr_t)at[e],
				      c->dev.index);
		else if (ordinal != c->dev.index)
			rc = mta_fail(MTA_EINVAL, "%s is memory of CUDA device %d (%s at %p); this "
				      "context runs on device %d: move it there", name, ordinal, end,
				      (void *)(uintptr_t)at[e], c->dev.index);
	}
	mta_cu_pop();
	return rc;
}

int mta_cuda_mem_alloc(struct mta_cuda *c, size_t n, void **out)
{
	cu_ptr x = 0;
	cu_result r;
	int rc = mta_cu_push(c);
	*out = NULL;
	if (rc)
		return rc;
	r = mta_cu.mem_alloc(&x, n ? n : 1);
	mta_cu_pop();
	if (r)
		return mta_fail(r == CU_ERROR_OUT_OF_MEMORY ? MTA_ENOMEM : MTA_EKERNEL,
				"cuMemAlloc: %s", mta_cu_error(r));
	*out = (void *)(uintptr_t)x;
	return MTA_OK;
}

void mta_cuda_mem_free(struct mta_cuda *c, void *p)
{
	if (!p || mta_cu_push(c))
		return;
	mta_cu.mem_free((cu_ptr)(uintptr_t)p);
	mta_cu_pop();
}

int mta_cuda_open(int index, struct mta_cuda **out)
{
	struct mta_cuda *c = calloc(1, sizeof *c);
	int rc, r;

	*out = NULL;
	if (!c)
		return mta_fail(MTA_ENOMEM, "out of memory");
	if ((rc = mta_cuda_device_info(index, &c->dev)))
		goto fail;
	if ((r = mta_cu.device_get(&c->handle, index)) ||
	    (r = mta_cu.ctx_retain(&c->ctx, c->handle))) {
		rc = mta_fail(MTA_ENODEV, "CUDA device %d: cannot create a context: %s", index,
			      mta_cu_error(r));
		goto fail;
	}
	if ((rc = mta_cu_push(c)))
		goto fail;
	/* flags 0: a blocking stream, ordered with the legacy default stream;
	 * mta_attention's NULL stream means this one, and the Python binding
	 * passes PyTorch's default stream (0) as NULL: keep it blocking */
	r = mta_cu.stream_create(&c->stream, 0);
	mta_cu_pop();
	if (r) {
		rc = mta_fail(MTA_EKERNEL, "CUDA device %d: cannot create a stream: %s", index,
			      mta_cu_error(r));
		goto fail;
	}
	*out = c;
	return MTA_OK;
fail:
	mta_cuda_close(c);
	return rc;
}

void mta_cuda_close(struct mta_cuda *c)
{
	if (!c)
		return;
	if ((c->stream || c->flush) && !mta_cu_push(c)) {
		if (c->flush)
			mta_cu.mem_free(c->flush);
		if (c->stream)
			mta_cu.stream_destroy(c->stream);
		mta_cu_pop();
	}
	if (c->ctx)
		mta_cu.ctx_release(c->handle);
	free(c);
}
