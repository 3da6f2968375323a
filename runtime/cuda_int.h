/*
 * cuda_int.h: the driver entry points mtatune uses, shared by runtime/cuda.c
 * (loading, devices) and runtime/cuda_run.c (kernels, memory, timing).
 *
 * The types are declared here from the driver API's C ABI (opaque handles,
 * int results, 64-bit device pointers), so no CUDA header is needed to build
 * mtatune. Versioned entry points are resolved under their exported names
 * (cuMemAlloc_v2, ...), as the toolkit's cuda.h maps them.
 */
#ifndef MTA_CUDA_INT_H
#define MTA_CUDA_INT_H

#include "cuda.h"

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
	CU_ERROR_STUB_LIBRARY = 34,
	CU_ERROR_NO_DEVICE = 100,
};

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
	cu_result (*ctx_set)(cu_ctx);
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
};

/* The loaded driver; valid after mta_cuda_driver_load() returned MTA_OK. */
extern struct mta_cu mta_cu;

/* "CUDA_ERROR_...: text" of a driver result, for messages (static storage). */
const char *mta_cu_error(cu_result r);

/* Make c's context current on the calling thread; MTA_EKERNEL on failure. */
int mta_cu_use(struct mta_cuda *c);

struct mta_cuda {
	struct mta_cuda_device dev;
	cu_device handle;
	cu_ctx ctx;
	cu_stream stream;
};

#endif
