/*
 * backend.c: the cpu backend (runtime/backend.h): the system C compiler
 * builds kernels into the cache of runtime/ccompile.h (no binary goes to the
 * database: the cache is keyed by the source and the compiler), dlopen loads
 * them, the wall clock times them, and a 64 MiB write flushes the caches.
 */
#include "runtime/backend.h"
#include "runtime/ccompile.h"
#include "runtime/core/error.h"
#include "runtime/core/parallel.h"
#include "runtime/core/pool.h"
#include "runtime/cpu/cpu.h"
#include "runtime/cpu/cpu_bwd.h"
#include "runtime/host.h"

#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>


/*
 * The device owns the kernels' threads and workspaces (a pool): started on
 * the first call that needs them and kept until the device closes, so a
 * call costs no thread start and no allocation.
 */
struct mta_device {
	int threads;  /* worker threads per run, 0: the variant's choice */
	struct mta_pool *pool;
	struct mta_host_flush flush;
};

struct mta_kernel {
	struct mta_device *dev;
	struct mta_cpu_kernel *k;
	struct mta_cpu_bwd *bwd; /* train_load's instead of k */
};

static int identify(int index, struct mta_device_info *info)
{
	struct mta_db_device d;
	memset(info, 0, sizeof *info);
	if (index < 0)
		return mta_fail(MTA_ENODEV, "device %d: device indices are 0 or more", index);
	mta_device_cpu(&d);
	snprintf(info->backend, sizeof info->backend, "%s", d.backend);
	snprintf(info->name, sizeof info->name, "%s", d.name);
	snprintf(info->arch, sizeof info->arch, "%s", d.arch);
	snprintf(info->compiler, sizeof info->compiler, "%s", d.compiler);
	info->cores = d.cores;
	return MTA_OK;
}

static void build_one(void *ctx, size_t i)
{
	struct mta_build *b = &((struct mta_build *)ctx)[i];
	char so[PATH_MAX];
	double t0 = mta_host_now();
	b->stats = (struct mta_kstats){ -1, -1, -1, -1, -1 };
	b->status = mta_cc_build(b->source, MTA_LANG_C, MTA_CPU_CFLAGS, so, sizeof so, &b->log);
	b->seconds = mta_host_now() - t0;
	if (b->status)
		snprintf(b->message, sizeof b->message, "cpu kernel: %s", mta_last_error());
	if (!b->log)
		b->log = strdup("");
}

static int build(const struct mta_device_info *info, struct mta_build *b, size_t n, int threads)
{
	mta_parallel(n, threads, build_one, b);
	return MTA_OK;
}

static int prune(const struct mta_device_info *info, const struct mta_build *b)
{
	return MTA_OK; /* a CPU kernel's workspace comes from the device's pool at run time */
}

static int dev_open(int index, int threads, struct mta_device **out)
{
	struct mta_device *d;
	int rc;
	*out = NULL;
	if (index < 0)
		return mta_fail(MTA_ENODEV, "device %d: device indices are 0 or more", index);
	if (threads < 0)
		return mta_fail(MTA_EINVAL, "threads=%d must be 0 (default) or positive", threads);
	if (!(d = calloc(1, sizeof *d)))
		return mta_fail(MTA_ENOMEM, "out of memory");
	if ((rc = mta_pool_create(&d->pool))) {
		free(d);
		return rc;
	}
	d->threads = threads;
	*out = d;
	return MTA_OK;
}

static void dev_close(struct mta_device *d)
{
	if (!d)
		return;
	mta_host_flush_free(&d->flush);
	mta_pool_free(d->pool);
	free(d);
}

static int load(struct mta_device *d, struct mta_db *db, const struct mta_problem *p,
		const struct mta_variant *v, const void *binary, size_t n, struct mta_kernel **out)
{
	struct mta_kernel *k = calloc(1, sizeof *k);
	int rc;
	*out = NULL;
	if (!k)
		return mta_fail(MTA_ENOMEM, "out of memory");
	if ((rc = mta_cpu_load(p, v, &k->k))) {
		free(k);
		return rc;
	}
	k->dev = d;
	*out = k;
	return MTA_OK;
}

static void unload(struct mta_kernel *k)
{
	if (!k)
		return;
	mta_cpu_free(k->k);
	mta_cpu_bwd_free(k->bwd);
	free(k);
}

static int forward(struct mta_kernel *k, const struct mta_problem *p, const struct mta_tensor *q,
		   const struct mta_tensor *kt, const struct mta_tensor *v,
		   const struct mta_weights *w, struct mta_tensor *o)
{
	return mta_cpu_run(k->k, p, q, kt, v, w, o, k->dev->threads, k->dev->pool);
}

static int forward_varlen(struct mta_kernel *k, const struct mta_problem *p,
			  const struct mta_tensor *q, const struct mta_tensor *kt,
			  const struct mta_tensor *v, const struct mta_weights *w,
			  const int64_t *cu_seqlens, int64_t ndocs, struct mta_tensor *o)
{
	return mta_cpu_run_varlen(k->k, p, q, kt, v, w, cu_seqlens, ndocs, o, k->dev->threads,
				  k->dev->pool);
}

static int decode_load(struct mta_device *d, const struct mta_problem *p,
		       const struct mta_variant *v, void **handle, struct mta_decoder *dec)
{
	struct mta_cpu_decode *k = NULL;
	int rc = mta_cpu_decode_load(p, v, &k);
	*handle = k;
	/* the device's threads and pool: decode splits each row's key blocks over them */
	*dec = (struct mta_decoder){ .fn = mta_cpu_decode_entry(k), .pool = d->pool, .nthreads = d->threads };
	return rc;
}

static void decode_unload(void *handle)
{
	mta_cpu_decode_free(handle);
}

static int bind(struct mta_kernel *k, const struct mta_problem *p, const struct mta_tensor *q,
		const struct mta_tensor *kt, const struct mta_tensor *v,
		const struct mta_weights *w, struct mta_tensor *o, struct mta_bound **out)
{
	return mta_host_bind(k, forward, p, q, kt, v, w, o, out);
}

static int flush(struct mta_device *d)
{
	return mta_host_flush(&d->flush);
}

/* ---- training: the generated backward (runtime/cpu/cpu_bwd.h) on the device's pool ---- */

static int train_load(struct mta_device *d, const struct mta_problem *p,
		      const struct mta_variant *v, struct mta_kernel **out)
{
	struct mta_kernel *k = calloc(1, sizeof *k);
	int rc;
	*out = NULL;
	if (!k)
		return mta_fail(MTA_ENOMEM, "out of memory");
	if ((rc = mta_cpu_bwd_load(p, v, &k->bwd))) {
		free(k);
		return rc;
	}
	k->dev = d;
	*out = k;
	return MTA_OK;
}

static int fwd_save(struct mta_kernel *k, const struct mta_problem *p, const struct mta_tensor *q,
		    const struct mta_tensor *kt, const struct mta_tensor *v,
		    const struct mta_weights *w, struct mta_tensor *o, void *saved)
{
	return mta_cpu_fwd_save(k->bwd, p, q, kt, v, w, o, saved, k->dev->threads, k->dev->pool);
}

static int backward(struct mta_kernel *k, const struct mta_problem *p, const struct mta_tensor *q,
		    const struct mta_tensor *kt, const struct mta_tensor *v,
		    const struct mta_weights *w, const void *saved, const struct mta_tensor *dout,
		    const struct mta_grads *g)
{
	return mta_cpu_bwd_run(k->bwd, p, q, kt, v, w, saved, dout, g, k->dev->threads,
			       k->dev->pool);
}

/* ---- mta_attention's path: host memory, the device's pool, no stream ---- */

static int attach(struct mta_kernel *k, const struct mta_problem *p, const struct mta_tensor *q,
		  const struct mta_tensor *kt, const struct mta_tensor *v,
		  const struct mta_weights *w, struct mta_tensor *o, void *stream)
{
	return forward(k, p, q, kt, v, w, o);
}

static int mem_alloc(struct mta_device *d, size_t n, void **out)
{
	*out = NULL;
	return mta_fail(MTA_EUNSUPPORTED, "a cpu context has no device memory: its kernels "
			"run on host memory");
}

static void mem_free(struct mta_device *d, void *ptr)
{
}

static int mem_copy(struct mta_device *d, void *dst, int dm, const void *src, int sm, size_t n,
		    void *stream)
{
	if (dm != MTA_MEM_HOST || sm != MTA_MEM_HOST)
		return mta_fail(MTA_EINVAL, "a cpu context copies host memory only, not %s to %s",
				sm == MTA_MEM_HOST ? "host" : "device",
				dm == MTA_MEM_HOST ? "host" : "device");
	memmove(dst, src, n);
	return MTA_OK;
}

static int mem_check(struct mta_device *d, const char *name, const void *ptr, size_t n, int memory)
{
	if (memory != MTA_MEM_HOST)
		return mta_fail(MTA_EINVAL, "%s says device memory; a cpu context runs on host "
				"memory (memory = MTA_MEM_HOST)", name);
	return MTA_OK;
}

static int sync(struct mta_device *d, void *stream)
{
	return MTA_OK; /* every call has finished when it returns */
}

const struct mta_backend mta_backend_cpu = {
	"cpu", "the generated C kernel: the tuned winner, else the default",
	MTA_BACKEND_CPU, 1,
	identify, build, prune, NULL, NULL, NULL,
	dev_open, dev_close, load, unload, forward,
	bind, mta_host_launch, mta_host_fetch, mta_host_unbind, flush,
	train_load, fwd_save, backward,
	forward_varlen,
	decode_load, decode_unload,
	MTA_MEM_HOST, 1, 0, attach, mem_alloc, mem_free, mem_copy, mem_check, sync,
};
