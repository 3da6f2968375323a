/*
 * driver.h: the CUDA driver API, loaded at run time, and the devices it
 * shows: the one loader of mtatune, shipped as it is in exported libraries
 * (it needs nothing but libc and libdl).
 *
 * The driver (libcuda.so.1, or $MTATUNE_LIBCUDA when set) is opened with
 * dlopen on first use, so every mtatune binary starts, and the CPU backend
 * works, on a machine without it. There each function returns MTA_ENODEV with
 * "no CUDA driver (libcuda.so.1) found: ..."; with a driver but no device,
 * MTA_ENODEV with "no CUDA device found ...". CUDA_VISIBLE_DEVICES is honoured
 * by the driver itself.
 *
 * The types are declared here from the driver API's C ABI (opaque handles,
 * int results, 64-bit device pointers), so no CUDA header is needed to build
 * mtatune. Versioned entry points are resolved under their exported names
 * (cuMemAlloc_v2, ...), as the toolkit's cuda.h maps them.
 *
 * Contexts: every call that needs a context pushes the device's primary
 * context (the one the CUDA runtime API and PyTorch use, so their device
 * pointers are valid here) and pops it before returning, leaving the
 * caller's current context as it was.
 *
 * Fork: a process that has initialised CUDA must not use it in a forked
 * child. The tuner therefore never touches the driver in its own process; it
 * asks a child (tuner/measure/isolate.h) for the device's identity and runs
 * every CUDA measurement in a child.
 */
#ifndef MTA_CUDA_DRIVER_H
#define MTA_CUDA_DRIVER_H

#include <stddef.h>

typedef int cu_result;      /* CUresult; 0 is CUDA_SUCCESS */
typedef int cu_device;      /* CUdevice */
typedef unsigned long long cu_ptr; /* CUdeviceptr */
typedef struct cu_ctx_st *cu_ctx;
typedef struct cu_mod_st *cu_mod;
typedef struct cu_func_st *cu_func;
typedef struct cu_stream_st *cu_stream;
typedef struct cu_event_st *cu_event;

/* Attribute numbers, as in the driver API's enums. */
enum {
	CU_ATTR_MAX_THREADS_PER_BLOCK = 1,
	CU_ATTR_MAX_REGISTERS_PER_BLOCK = 12,
	CU_ATTR_MULTIPROCESSOR_COUNT = 16,
	CU_ATTR_L2_CACHE_SIZE = 38,
	CU_ATTR_CC_MAJOR = 75,
	CU_ATTR_CC_MINOR = 76,
	CU_ATTR_SMEM_OPTIN = 97,
	CU_FUNC_MAX_DYNAMIC_SHARED = 8,
	CU_ERROR_OUT_OF_MEMORY = 2,
	CU_ERROR_STUB_LIBRARY = 34,
	CU_ERROR_NO_DEVICE = 100,
};

/* The driver's entry points mtatune uses. */
struct mta_cu {
	cu_result (*init)(unsigned);
	cu_result (*driver_version)(int *);
	cu_result (*device_get)(cu_device *, int);
	cu_result (*device_count)(int *);
	cu_result (*device_name)(char *, int, cu_device);
	cu_result (*device_attr)(int *, int, cu_device);
	cu_result (*device_mem)(size_t *, cu_device);
	cu_result (*ctx_retain)(cu_ctx *, cu_device);
	cu_result (*ctx_release)(cu_device);
	cu_result (*ctx_push)(cu_ctx);
	cu_result (*ctx_pop)(cu_ctx *);
	cu_result (*mod_load)(cu_mod *, const void *);
	cu_result (*mod_unload)(cu_mod);
	cu_result (*mod_func)(cu_func *, cu_mod, const char *);
	cu_result (*func_attr)(cu_func, int, int);
	cu_result (*launch)(cu_func, unsigned, unsigned, unsigned, unsigned, unsigned, unsigned,
			    unsigned, cu_stream, void **, void **);
	cu_result (*mem_alloc)(cu_ptr *, size_t);
	cu_result (*mem_free)(cu_ptr);
	cu_result (*htod)(cu_ptr, const void *, size_t);
	cu_result (*dtoh)(void *, cu_ptr, size_t);
	cu_result (*memset8)(cu_ptr, unsigned char, size_t, cu_stream);
	cu_result (*stream_create)(cu_stream *, unsigned);
	cu_result (*stream_sync)(cu_stream);
	cu_result (*stream_destroy)(cu_stream);
	cu_result (*event_create)(cu_event *, unsigned);
	cu_result (*event_record)(cu_event, cu_stream);
	cu_result (*event_sync)(cu_event);
	cu_result (*event_elapsed)(float *, cu_event, cu_event);
	cu_result (*event_destroy)(cu_event);
	cu_result (*errstr)(cu_result, const char **);
	cu_result (*errname)(cu_result, const char **); /* NULL when the driver has none */
	/* mta_attention's device path: copies in stream order (unified addressing) */
	cu_result (*memcpy_async)(cu_ptr, cu_ptr, size_t, cu_stream);
	/* cuPointerGetAttributes (CUDA 7 on), for mta_cuda_ptr_check; NULL when absent */
	cu_result (*ptr_attrs)(unsigned, int *, void **, cu_ptr);
};

/* The loaded driver; valid after mta_cuda_driver_load() returned MTA_OK. */
extern struct mta_cu mta_cu;

/* Load the driver and cuInit. MTA_OK, or MTA_ENODEV saying what was missing. */
int mta_cuda_driver_load(void);

/* "text (CUDA error N)" of a driver result, for messages (thread-local storage). */
const char *mta_cu_error(cu_result r);

struct mta_cuda_device {
	int index;             /* ordinal among the visible devices */
	char name[256];        /* e.g. "NVIDIA H100 80GB HBM3" */
	char arch[16];         /* sm_XY from the compute capability */
	int cc_major, cc_minor;
	int sms;               /* multiprocessors */
	int driver;            /* cuDriverGetVersion, e.g. 13000 */
	char driver_str[16];   /* "13.0" */
	size_t total_mem;      /* bytes */
	int l2_bytes;          /* L2 cache size */
	int smem_optin;        /* shared memory per block with opt-in, bytes */
	int regs_per_block;
	int max_threads;       /* threads per block */
};

/* Number of visible devices (loads the driver); 0 devices is MTA_ENODEV. */
int mta_cuda_device_count(int *n);

/* Identity and limits of device index. MTA_ENODEV for an index out of range. */
int mta_cuda_device_info(int index, struct mta_cuda_device *d);

/* ---- a device in use ---------------------------------------------------- */
struct mta_cuda {
	struct mta_cuda_device dev;
	cu_device handle;
	cu_ctx ctx;            /* the device's primary context (retained) */
	cu_stream stream;      /* mtatune's own stream on it */
	cu_ptr flush;          /* the L2 flush buffer of the timing path, 0 until used */
	size_t flush_bytes;
};

/* Retain device index's primary context and create a stream. */
int mta_cuda_open(int index, struct mta_cuda **out);
void mta_cuda_close(struct mta_cuda *c); /* NULL is fine */

/*
 * Make c's context current for the calling thread (MTA_EKERNEL on failure);
 * mta_cu_pop restores the one that was current before. Every successful
 * push is matched by one pop.
 */
int mta_cu_push(struct mta_cuda *c);
void mta_cu_pop(void);

/*
 * n bytes of device memory on c (at least 1, so that every allocation has an
 * address of its own), with c's context pushed for the call: *out, or NULL
 * and MTA_ENOMEM when the device is full, MTA_EKERNEL on another failure of
 * the driver ("cuMemAlloc: ..."). mta_cuda_mem_free releases it (NULL is
 * fine; a failure to release cannot be reported and is ignored). The one
 * allocator of the cuda backend's device memory and of a decode cache's,
 * in mtatune and in exported libraries alike.
 */
int mta_cuda_mem_alloc(struct mta_cuda *c, size_t n, void **out);
void mta_cuda_mem_free(struct mta_cuda *c, void *p);

/*
 * MTA_OK when the bytes at ptr (bytes > 0) lie in memory c's kernels may
 * take: device memory of c's device, or managed memory. Else MTA_EINVAL
 * naming `name`, what its memory is (no CUDA allocation: host memory or a
 * freed or foreign pointer; page-locked host memory; another device's) and
 * what was expected, where a launch would fault (an illegal address, which
 * ends the context for every later call) or read another device's memory
 * across the bus. Both ends are asked, so a tensor whose strides run past
 * its allocation's end is caught where that end lies outside any. A
 * driver without cuPointerGetAttributes checks nothing.
 */
int mta_cuda_ptr_check(struct mta_cuda *c, const char *name, const void *ptr, size_t bytes);

#endif
