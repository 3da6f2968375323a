/*
 * export_runtime.c: the runtime of a library written by `mtatune export`.
 *
 * It implements the running part of mta.h (mta_context_create,
 * mta_context_pick, mta_forward, mta_context_free) over the dispatch table
 * the exporter generated (export_table.h), with no database, no compiler and
 * no NVRTC: CPU kernels are C functions linked into the library, CUDA
 * kernels are cubins loaded through the driver API, which is found with
 * dlopen("libcuda.so.1") so the library starts (and says "no CUDA driver")
 * on machines without one. The rest of mta.h comes from copies of mtatune's
 * own sources shipped beside this file (problem.c, tensor.c, reference.c, ...).
 *
 * Lookup, as libmtatune's runtime does it with a database: T's own bucket,
 * else the nearest bucket of the problem (log2 distance, ties to the larger),
 * else the problem's default variant; a problem that was not exported is
 * MTA_ENOTFOUND naming the problem and the library.
 */
#include "mta.h"
#include "error.h"
#include "kargs.h"
#include "cudagen.h"
#include "export_table.h"

#include <dlfcn.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- the CUDA driver API, the few entry points used, through dlopen ---- */
typedef int CUresult;
typedef int CUdevice;
typedef struct CUctx_st *CUcontext;
typedef struct CUmod_st *CUmodule;
typedef struct CUfunc_st *CUfunction;
typedef unsigned long long CUdeviceptr;

#define CU_ATTR_CC_MAJOR 75         /* CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MAJOR */
#define CU_ATTR_CC_MINOR 76         /* CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MINOR */
#define CU_FUNC_ATTR_MAX_DYN_SMEM 8 /* CU_FUNC_ATTRIBUTE_MAX_DYNAMIC_SHARED_SIZE_BYTES */

struct cuda {
	void *dl;
	CUdevice dev;
	CUcontext ctx;
	CUmodule *mods;     /* per kernel, loaded on first use */
	CUfunction *funcs;
	CUresult (*Init)(unsigned);
	CUresult (*DeviceGet)(CUdevice *, int);
	CUresult (*DeviceGetAttribute)(int *, int, CUdevice);
	CUresult (*PrimaryCtxRetain)(CUcontext *, CUdevice);
	CUresult (*PrimaryCtxRelease)(CUdevice);
	CUresult (*CtxPush)(CUcontext);
	CUresult (*CtxPop)(CUcontext *);
	CUresult (*ModuleLoadData)(CUmodule *, const void *);
	CUresult (*ModuleUnload)(CUmodule);
	CUresult (*ModuleGetFunction)(CUfunction *, CUmodule, const char *);
	CUresult (*FuncSetAttribute)(CUfunction, int, int);
	CUresult (*LaunchKernel)(CUfunction, unsigned, unsigned, unsigned, unsigned, unsigned,
				 unsigned, unsigned, void *, void **, void **);
	CUresult (*CtxSynchronize)(void);
	CUresult (*GetErrorString)(CUresult, const char **);
};

struct mta_context {
	const struct mtx_library *lib;
	int cuda_backend;    /* 0 cpu, 1 cuda */
	struct cuda *cu;     /* cuda only */
	pthread_mutex_t lock;
};

/* "CUDA_ERROR_..." text of a driver status, for messages. */
static const char *cu_str(struct cuda *cu, CUresult r)
{
	const char *s = NULL;
	if (cu->GetErrorString && cu->GetErrorString(r, &s) == 0 && s)
		return s;
	return "unknown CUDA error";
}

/* Resolve one driver symbol into *slot; 0 or -1 (message set). */
static int sym(struct cuda *cu, const char *name, void *slot)
{
	void *f = dlsym(cu->dl, name);
	if (!f)
		return mta_fail(MTA_ENODEV, "the CUDA driver libcuda.so.1 lacks %s (too old?)", name);
	memcpy(slot, &f, sizeof f);
	return 0;
}

/*
 * Open the driver, check that device 0 runs cubins of the library's arch
 * (same major compute capability, minor at least the cubins'), retain its
 * primary context (the one the CUDA runtime API uses, so the caller's
 * cudaMalloc'd pointers are valid here).
 */
static int cuda_open(const struct mtx_library *lib, struct cuda **out)
{
	struct cuda *cu = calloc(1, sizeof *cu);
	int rc = MTA_OK, major = 0, minor = 0, want_major = 0, want_minor = 0;
	CUresult r;

	*out = NULL;
	if (!cu || !(cu->mods = calloc((size_t)lib->nkernels + 1, sizeof *cu->mods)) ||
	    !(cu->funcs = calloc((size_t)lib->nkernels + 1, sizeof *cu->funcs))) {
		rc = mta_fail(MTA_ENOMEM, "out of memory");
		goto out;
	}
	if (!(cu->dl = dlopen("libcuda.so.1", RTLD_NOW | RTLD_LOCAL))) {
		const char *e = dlerror();
		rc = mta_fail(MTA_ENODEV, "no CUDA driver (libcuda.so.1) found: %s", e ? e : "?");
		goto out;
	}
	if (sym(cu, "cuInit", &cu->Init) || sym(cu, "cuDeviceGet", &cu->DeviceGet) ||
	    sym(cu, "cuDeviceGetAttribute", &cu->DeviceGetAttribute) ||
	    sym(cu, "cuDevicePrimaryCtxRetain", &cu->PrimaryCtxRetain) ||
	    sym(cu, "cuDevicePrimaryCtxRelease_v2", &cu->PrimaryCtxRelease) ||
	    sym(cu, "cuCtxPushCurrent_v2", &cu->CtxPush) ||
	    sym(cu, "cuCtxPopCurrent_v2", &cu->CtxPop) ||
	    sym(cu, "cuModuleLoadData", &cu->ModuleLoadData) ||
	    sym(cu, "cuModuleUnload", &cu->ModuleUnload) ||
	    sym(cu, "cuModuleGetFunction", &cu->ModuleGetFunction) ||
	    sym(cu, "cuFuncSetAttribute", &cu->FuncSetAttribute) ||
	    sym(cu, "cuLaunchKernel", &cu->LaunchKernel) ||
	    sym(cu, "cuCtxSynchronize", &cu->CtxSynchronize) ||
	    sym(cu, "cuGetErrorString", &cu->GetErrorString)) {
		rc = MTA_ENODEV;
		goto out;
	}
	if ((r = cu->Init(0)) || (r = cu->DeviceGet(&cu->dev, 0))) {
		rc = mta_fail(MTA_ENODEV, "no usable CUDA device: %s", cu_str(cu, r));
		goto out;
	}
	if ((r = cu->DeviceGetAttribute(&major, CU_ATTR_CC_MAJOR, cu->dev)) ||
	    (r = cu->DeviceGetAttribute(&minor, CU_ATTR_CC_MINOR, cu->dev))) {
		rc = mta_fail(MTA_ENODEV, "CUDA device 0: compute capability unknown: %s",
			      cu_str(cu, r));
		goto out;
	}
	if (sscanf(lib->arch, "sm_%1d%d", &want_major, &want_minor) != 2 || major != want_major ||
	    minor < want_minor) {
		rc = mta_fail(MTA_EUNSUPPORTED, "library %s holds cubins for %s; CUDA device 0 is "
			      "sm_%d%d (export again with --arch sm_%d%d)", lib->name, lib->arch,
			      major, minor, major, minor);
		goto out;
	}
	if ((r = cu->PrimaryCtxRetain(&cu->ctx, cu->dev))) {
		rc = mta_fail(MTA_ENODEV, "CUDA device 0: no context: %s", cu_str(cu, r));
		goto out;
	}
	*out = cu;
	cu = NULL;
out:
	if (cu) {
		if (cu->dl)
			dlclose(cu->dl);
		free(cu->mods);
		free(cu->funcs);
		free(cu);
	}
	return rc;
}

static void cuda_close(struct mtx_library const *lib, struct cuda *cu)
{
	CUcontext old;
	if (!cu)
		return;
	if (cu->CtxPush(cu->ctx) == 0) {
		for (int i = 0; i < lib->nkernels; i++)
			if (cu->mods[i])
				cu->ModuleUnload(cu->mods[i]);
		cu->CtxPop(&old);
	}
	cu->PrimaryCtxRelease(cu->dev);
	dlclose(cu->dl);
	free(cu->mods);
	free(cu->funcs);
	free(cu);
}

int mta_context_create(mta_context **out, const char *db_path, const char *backend)
{
	const struct mtx_library *lib = &mtx_library;
	mta_context *c;
	int cuda, rc;

	if (!out)
		return mta_fail(MTA_EINVAL, "mta_context_create: no place for the context");
	*out = NULL;
	if (db_path)
		return mta_fail(MTA_EINVAL, "library %s was exported by mtatune with its kernels "
				"built in and reads no database: pass db_path NULL, not '%s'",
				lib->name, db_path);
	if (!backend || !strcmp(backend, "cpu"))
		cuda = 0;
	else if (!strcmp(backend, "cuda"))
		cuda = 1;
	else
		return mta_fail(MTA_EINVAL, "unknown backend '%s' (expected cpu or cuda)", backend);
	if (cuda != !strcmp(lib->backend, "cuda"))
		return mta_fail(MTA_EUNSUPPORTED, "library %s holds %s kernels only, not %s; export "
				"it again for that backend", lib->name, lib->backend,
				cuda ? "cuda" : "cpu");
	if (!(c = calloc(1, sizeof *c)))
		return mta_fail(MTA_ENOMEM, "out of memory");
	c->lib = lib;
	c->cuda_backend = cuda;
	pthread_mutex_init(&c->lock, NULL);
	if (cuda && (rc = cuda_open(lib, &c->cu))) {
		mta_context_free(c);
		return rc;
	}
	*out = c;
	return MTA_OK;
}

void mta_context_free(mta_context *c)
{
	if (!c)
		return;
	cuda_close(c->lib, c->cu);
	pthread_mutex_destroy(&c->lock);
	free(c);
}

/* floor(log2(x)) for x >= 1. */
static int ilog2(int64_t x)
{
	int n = 0;
	while (x > 1) {
		x >>= 1;
		n++;
	}
	return n;
}

/* The exported problem with this key, or NULL (problems are sorted by key). */
static const struct mtx_problem *find(const struct mtx_library *lib, const char *key)
{
	int lo = 0, hi = lib->nproblems;
	while (lo < hi) {
		int mid = lo + (hi - lo) / 2, c = strcmp(lib->problems[mid].key, key);
		if (!c)
			return &lib->problems[mid];
		if (c < 0)
			lo = mid + 1;
		else
			hi = mid;
	}
	return NULL;
}

/* The kernel index for (p, T) and where it came from (2 exact, 1 nearest, 0 default). */
static int choose(mta_context *c, const struct mta_problem *p, int64_t T, int *kernel,
		  int *source)
{
	char key[MTA_KEY_MAX];
	const struct mtx_problem *e;
	int rc;

	if (!c)
		return mta_fail(MTA_EINVAL, "no context");
	if ((rc = mta_problem_key(p, key, sizeof key)))
		return rc;
	if (!(e = find(c->lib, key)))
		return mta_fail(MTA_ENOTFOUND, "problem %s was not exported into library %s "
				"(it holds %d problems; tune it and export again)", key,
				c->lib->name, c->lib->nproblems);
	int64_t tb = 1;
	while (tb < T && tb < ((int64_t)1 << 62))
		tb <<= 1;
	int best = -1, bestd = 0;
	for (int i = 0; i < e->nbuckets; i++) {
		int d = abs(ilog2(e->buckets[i].t_bucket) - ilog2(tb));
		if (best < 0 || d <= bestd) { /* ascending: a tie goes to the larger */
			best = i;
			bestd = d;
		}
	}
	if (best >= 0) {
		*kernel = e->buckets[best].kernel;
		*source = bestd == 0 ? 2 : 1;
	} else {
		*kernel = e->default_kernel;
		*source = 0;
	}
	return MTA_OK;
}

int mta_context_pick(mta_context *c, const struct mta_problem *p, int64_t T, char *spec,
		     size_t n, int *source)
{
	int k, rc;
	if ((rc = choose(c, p, T, &k, source)))
		return rc;
	if (strlen(c->lib->kernels[k].spec) + 1 > n)
		return mta_fail(MTA_EINVAL, "spec buffer too small");
	strcpy(spec, c->lib->kernels[k].spec);
	return MTA_OK;
}

/* The function of kernel k, loading its cubin into the context on first use. */
static int cuda_function(mta_context *c, int k, CUfunction *f)
{
	struct cuda *cu = c->cu;
	const struct mtx_kernel *kn = &c->lib->kernels[k];
	CUresult r = 0;
	int rc = MTA_OK;

	pthread_mutex_lock(&c->lock);
	if (!cu->funcs[k]) {
		CUmodule m = NULL;
		CUfunction fn = NULL;
		if ((r = cu->ModuleLoadData(&m, kn->cubin)) ||
		    (r = cu->ModuleGetFunction(&fn, m, kn->entry)) ||
		    (r = cu->FuncSetAttribute(fn, CU_FUNC_ATTR_MAX_DYN_SMEM, (int)kn->smem))) {
			rc = mta_fail(MTA_EKERNEL, "cuda kernel %s: loading its cubin failed: %s",
				      kn->spec, cu_str(cu, r));
			if (m)
				cu->ModuleUnload(m);
		} else {
			cu->mods[k] = m;
			cu->funcs[k] = fn;
		}
	}
	*f = cu->funcs[k];
	pthread_mutex_unlock(&c->lock);
	return rc;
}

/*
 * Launch kernel k on device pointers and wait for it. The grid is the one of
 * mta_cuda_geometry: query tiles of bq rows, blocks of hpb heads, batches.
 */
static int cuda_forward(mta_context *c, int k, const struct mta_problem *p,
			const struct mta_tensor *q, const struct mta_tensor *kt,
			const struct mta_tensor *v, const struct mta_weights *w,
			struct mta_tensor *o)
{
	struct cuda *cu = c->cu;
	const struct mtx_kernel *kn = &c->lib->kernels[k];
	struct mta_cuda_args a;
	CUfunction f;
	CUcontext old;
	CUresult r;
	int rc;

	if ((rc = mta_cuda_args_fill(p, q, kt, v, w, o, &a)))
		return rc;
	if ((r = cu->CtxPush(cu->ctx)))
		return mta_fail(MTA_ENODEV, "CUDA context: %s", cu_str(cu, r));
	if ((rc = cuda_function(c, k, &f)))
		goto out;
	void *params[] = { &a };
	unsigned gx = (unsigned)((a.T + (int)kn->bq - 1) / (int)kn->bq);
	if ((r = cu->LaunchKernel(f, gx, (unsigned)p->H / kn->hpb, (unsigned)a.B, kn->block, 1, 1,
				  kn->smem, NULL, params, NULL)) ||
	    (r = cu->CtxSynchronize()))
		rc = mta_fail(MTA_EKERNEL, "cuda kernel %s failed: %s", kn->spec, cu_str(cu, r));
out:
	cu->CtxPop(&old);
	return rc;
}

int mta_forward(mta_context *c, const struct mta_problem *p, const struct mta_tensor *q,
		const struct mta_tensor *kt, const struct mta_tensor *v,
		const struct mta_weights *w, struct mta_tensor *o)
{
	struct mta_kargs a;
	int64_t B, T;
	int k, source, rc;

	if (!c)
		return mta_fail(MTA_EINVAL, "mta_forward: no context");
	if ((rc = mta_check_tensors(p, q, kt, v, o, &B, &T)) ||
	    (rc = choose(c, p, T, &k, &source)))
		return rc;
	if (c->cuda_backend)
		return cuda_forward(c, k, p, q, kt, v, w, o);
	const struct mtx_kernel *kn = &c->lib->kernels[k];
	if (kn->info->abi != MTA_KARGS_ABI || kn->info->args_size != (int)sizeof a ||
	    kn->info->dtype != p->dtype)
		return mta_fail(MTA_EKERNEL, "cpu kernel %s was built for another ABI or dtype",
				kn->spec);
	if ((rc = mta_kargs_fill(p, q, kt, v, w, o, 0, &a)))
		return rc;
	return mta_kargs_status(kn->fn(&a), (long long)kn->info->ws_bytes, kn->spec);
}
