/*
 * backend.c: the cuda backend (runtime/backend.h): NVRTC builds cubins in a
 * batch with ptxas's resource report, the tuner prunes on it, cubins are
 * stored in the database under their key, the driver loads and launches
 * them, CUDA events time them and a device memset flushes L2.
 */
#include "runtime/backend.h"
#include "gen/cuda/cudagen.h"
#include "runtime/core/error.h"
#include "runtime/cuda/bwd.h"
#include "runtime/cuda/cuda.h"
#include "runtime/cuda/module.h"
#include "runtime/cuda/nvrtc.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct mta_device {
	struct mta_cuda *c;
};

struct mta_kernel {
	struct mta_cuda_kernel *k;
	struct mta_cuda_train *train; /* train_load's, instead of k (runtime/cuda/bwd.h) */
};

struct mta_bound {
	struct mta_cuda_kernel *k;
	struct mta_cuda_io *io;
	struct mta_tensor o;
};

static int identify(int index, struct mta_device_info *info)
{
	struct mta_cuda_device d;
	int rc;
	memset(info, 0, sizeof *info);
	if ((rc = mta_cuda_device_info(index, &d)) ||
	    (rc = mta_cuda_nvrtc_version(info->nvrtc, sizeof info->nvrtc)))
		return rc;
	snprintf(info->backend, sizeof info->backend, "cuda");
	snprintf(info->name, sizeof info->name, "%s", d.name);
	snprintf(info->arch, sizeof info->arch, "%s", d.arch);
	snprintf(info->driver, sizeof info->driver, "%s", d.driver_str);
	info->cores = d.sms;
	info->smem_per_block = d.smem_optin;
	info->regs_per_block = d.regs_per_block;
	info->max_threads = d.max_threads;
	info->l2_bytes = d.l2_bytes;
	return MTA_OK;
}

/* The dynamic shared memory and threads of b's kernel (forward, backward or decode). */
static int launch_of(const struct mta_build *b, size_t *smem, int *threads)
{
	struct mta_cuda_launch g;
	struct mta_cuda_bwd_dims d;
	int rc;
	if (b->op == MTA_OP_DECODE) {
		unsigned t = 0;
		if ((rc = mta_cuda_decode_dims(&b->p, &b->v, &t, smem)))
			return rc;
		*threads = (int)t;
		return MTA_OK;
	}
	if (b->op == MTA_OP_BWD) {
		if ((rc = mta_cuda_bwd_dims(&b->p, &b->v, 1, 1, &d, NULL)))
			return rc;
		*smem = d.smem_bytes;
		*threads = (int)d.threads;
		return MTA_OK;
	}
	if ((rc = mta_cuda_geometry(&b->p, &b->v, 1, 1, &g)))
		return rc;
	*smem = g.smem_bytes;
	*threads = (int)g.block[0];
	return MTA_OK;
}

static size_t dyn_smem(const struct mta_build *b)
{
	size_t smem = 0;
	int threads;
	if (launch_of(b, &smem, &threads))
		mta_clear_error();
	return smem;
}

static int build(const struct mta_device_info *info, struct mta_build *b, size_t n, int threads)
{
	struct mta_nvrtc_job *jobs = calloc(n ? n : 1, sizeof *jobs);
	int rc;
	if (!jobs)
		return mta_fail(MTA_ENOMEM, "out of memory for %zu compiles", n);
	for (size_t i = 0; i < n; i++) {
		jobs[i].source = b[i].source;
		jobs[i].kernel = b[i].op == MTA_OP_BWD      ? MTA_CUDA_BWD_KERNEL
				 : b[i].op == MTA_OP_DECODE ? MTA_CUDA_DECODE_KERNEL
							    : MTA_CUDA_KERNEL;
		jobs[i].arch = info->arch;
	}
	if ((rc = mta_nvrtc_compile_batch(jobs, n, threads)) == MTA_OK)
		for (size_t i = 0; i < n; i++) {
			struct mta_nvrtc_job *j = &jobs[i];
			struct mta_build *x = &b[i];
			x->status = j->status;
			snprintf(x->message, sizeof x->message, "%s", j->message);
			x->seconds = j->seconds;
			x->log = j->log ? j->log : strdup("");
			j->log = NULL;
			x->stats = (struct mta_kstats){ -1, -1, -1, -1, -1 };
			if (j->status == MTA_OK) {
				/* shared memory recorded as static + dynamic */
				x->stats = (struct mta_kstats){ j->stats.registers, j->stats.spill_stores,
					j->stats.spill_loads,
					j->stats.smem_bytes + (int)dyn_smem(x),
					j->stats.stack_bytes };
				x->binary = j->cubin;
				x->binary_size = j->cubin_size;
				j->cubin = NULL;
			}
		}
	for (size_t i = 0; i < n; i++)
		mta_nvrtc_job_free(&jobs[i]);
	free(jobs);
	return rc;
}

/* Prune on ptxas's report against the architecture's and the device's limits. */
static int prune(const struct mta_device_info *info, const struct mta_build *b)
{
	size_t dyn = 0;
	int threads = 0, rc = launch_of(b, &dyn, &threads);
	if (rc)
		return rc;
	struct mta_nvrtc_stats st = { b->stats.registers, b->stats.spill_stores,
				      b->stats.spill_loads, b->stats.stack_bytes,
				      b->stats.smem_bytes - (int)dyn };
	size_t smem = (size_t)b->stats.smem_bytes;
	if (b->op == MTA_OP_FWD && b->v.cs > 1 && !mta_cuda_has_clusters(info->arch))
		return mta_fail(MTA_EUNSUPPORTED, "runs in clusters of %d blocks, which %s lacks "
				"(sm_90 or later)", b->v.cs, info->arch);
	if ((rc = mta_nvrtc_prune(&st, info->arch, threads, dyn)))
		return rc;
	if (info->smem_per_block > 0 && smem > (size_t)info->smem_per_block)
		return mta_fail(MTA_EUNSUPPORTED, "needs %zu bytes of shared memory, the device "
				"allows %d", smem, info->smem_per_block);
	if (info->regs_per_block > 0 && (long)b->stats.registers * threads > info->regs_per_block)
		return mta_fail(MTA_EUNSUPPORTED, "%d registers x %d threads exceed the device's %d "
				"registers per block", b->stats.registers, threads,
				info->regs_per_block);
	if (info->max_threads > 0 && threads > info->max_threads)
		return mta_fail(MTA_EUNSUPPORTED, "%d threads per block, the device allows %d",
				threads, info->max_threads);
	return MTA_OK;
}

static void binary_key(const struct mta_device_info *info, const char *hash, char compiler[32],
		       struct mta_db_binary_key *k)
{
	mta_cuda_binary_key(hash, info->arch, info->nvrtc, compiler, k);
}

static int launch_dims(const struct mta_problem *p, const struct mta_variant *v, unsigned *block,
		       unsigned *smem, unsigned *bq, unsigned *hpb, unsigned *cs)
{
	struct mta_cuda_launch g;
	int rc = mta_cuda_geometry(p, v, 1, 1, &g);
	if (rc)
		return rc;
	*block = g.block[0];
	*smem = (unsigned)g.smem_bytes;
	*bq = (unsigned)v->bq;
	*hpb = (unsigned)v->hpb;
	*cs = (unsigned)v->cs;
	return MTA_OK;
}

static int target(const char *arch, struct mta_device_info *info)
{
	memset(info, 0, sizeof *info);
	snprintf(info->backend, sizeof info->backend, "cuda");
	snprintf(info->arch, sizeof info->arch, "%s", arch);
	return mta_cuda_nvrtc_version(info->nvrtc, sizeof info->nvrtc);
}

static int dev_open(int index, int threads, struct mta_device **out)
{
	struct mta_device *d = calloc(1, sizeof *d);
	int rc;
	*out = NULL;
	if (!d)
		return mta_fail(MTA_ENOMEM, "out of memory");
	if ((rc = mta_cuda_open(index, &d->c))) {
		free(d);
		return rc;
	}
	*out = d;
	return MTA_OK;
}

static void dev_close(struct mta_device *d)
{
	if (!d)
		return;
	mta_cuda_close(d->c);
	free(d);
}

static int load(struct mta_device *d, struct mta_db *db, const struct mta_problem *p,
		const struct mta_variant *v, const void *binary, size_t n, struct mta_kernel **out)
{
	struct mta_kernel *k = calloc(1, sizeof *k);
	void *own = NULL;
	int rc = MTA_OK;
	*out = NULL;
	if (!k)
		return mta_fail(MTA_ENOMEM, "out of memory");
	if (!binary) {
		rc = mta_cuda_cubin(db, p, v, d->c->dev.arch, &own, &n);
		binary = own;
	}
	if (!rc)
		rc = mta_cuda_kernel_load(d->c, p, v, binary, n, &k->k);
	free(own);
	if (rc) {
		free(k);
		return rc;
	}
	*out = k;
	return MTA_OK;
}

static void unload(struct mta_kernel *k)
{
	if (!k)
		return;
	mta_cuda_kernel_free(k->k);
	mta_cuda_train_free(k->train);
	free(k);
}

static int forward(struct mta_kernel *k, const struct mta_problem *p, const struct mta_tensor *q,
		   const struct mta_tensor *kt, const struct mta_tensor *v,
		   const struct mta_weights *w, struct mta_tensor *o)
{
	return mta_cuda_forward(k->k, p, q, kt, v, w, o);
}

static int forward_varlen(struct mta_kernel *k, const struct mta_problem *p,
			  const struct mta_tensor *q, const struct mta_tensor *kt,
			  const struct mta_tensor *v, const struct mta_weights *w,
			  const int64_t *cu, int64_t ndocs, struct mta_tensor *o)
{
	return mta_cuda_forward_varlen(k->k, p, q, kt, v, w, cu, ndocs, o);
}

static int bind(struct mta_kernel *k, const struct mta_problem *p, const struct mta_tensor *q,
		const struct mta_tensor *kt, const struct mta_tensor *v,
		const struct mta_weights *w, struct mta_tensor *o, struct mta_bound **out)
{
	struct mta_bound *b = calloc(1, sizeof *b);
	int rc;
	*out = NULL;
	if (!b)
		return mta_fail(MTA_ENOMEM, "out of memory");
	if ((rc = mta_check_tensors(p, q, kt, v, o, NULL, NULL)) ||
	    (rc = mta_cuda_io_upload(mta_cuda_kernel_device(k->k), p, q, kt, v, w, &b->io))) {
		free(b);
		return rc;
	}
	b->k = k->k;
	b->o = *o;
	*out = b;
	return MTA_OK;
}

static int launch(struct mta_bound *b, double *ms)
{
	return mta_cuda_run(b->k, b->io, ms);
}

static int fetch(struct mta_bound *b)
{
	return mta_cuda_io_download(b->io, &b->o);
}

static void unbind(struct mta_bound *b)
{
	if (!b)
		return;
	mta_cuda_io_free(b->io);
	free(b);
}

static int flush(struct mta_device *d)
{
	return mta_cuda_flush_l2(d->c);
}

/* ---- mta_attention's device path: device pointers, the caller's stream ---- */

static int attach(struct mta_kernel *k, const struct mta_problem *p, const struct mta_tensor *q,
		  const struct mta_tensor *kt, const struct mta_tensor *v,
		  const struct mta_weights *w, struct mta_tensor *o, void *stream)
{
	struct mta_cuda_args a;
	int rc = mta_cuda_args_fill(p, q, kt, v, w, o, &a);
	if (rc)
		return rc;
	if (p->gate && (!w || !w->gate_b_ptr)) /* &w->gate_b is host memory */
		return mta_fail(MTA_EINVAL, "cuda: gate_b must be in device memory (gate_b_ptr)");
	return mta_cuda_launch_async(k->k, &a, stream);
}

static int drv(cu_result r, const char *what)
{
	if (!r)
		return MTA_OK;
	return mta_fail(r == CU_ERROR_OUT_OF_MEMORY ? MTA_ENOMEM : MTA_EKERNEL, "%s: %s", what,
			mta_cu_error(r));
}

static int mem_alloc(struct mta_device *d, size_t n, void **out)
{
	return mta_cuda_mem_alloc(d->c, n, out);
}

static void mem_free(struct mta_device *d, void *ptr)
{
	mta_cuda_mem_free(d->c, ptr);
}

static int mem_copy(struct mta_device *d, void *dst, int dm, const void *src, int sm, size_t n,
		    void *stream)
{
	int rc = mta_cu_push(d->c);
	if (rc)
		return rc;
	rc = drv(mta_cu.memcpy_async((cu_ptr)(uintptr_t)dst, (cu_ptr)(uintptr_t)src, n,
				     stream ? (cu_stream)stream : d->c->stream), "cuMemcpyAsync");
	mta_cu_pop();
	return rc;
}

static int mem_check(struct mta_device *d, const char *name, const void *ptr, size_t n, int memory)
{
	if (memory != MTA_MEM_DEVICE)
		return mta_fail(MTA_EINVAL, "%s is host memory; a cuda context's kernels take device "
				"memory (copy it with mta_memcpy, or call mta_forward)", name);
	return mta_cuda_ptr_check(d->c, name, ptr, n);
}

static int sync(struct mta_device *d, void *stream)
{
	int rc = mta_cu_push(d->c);
	if (rc)
		return rc;
	rc = drv(mta_cu.stream_sync(stream ? (cu_stream)stream : d->c->stream),
		 "cuStreamSynchronize");
	mta_cu_pop();
	return rc;
}

/* ---- training: the generated CUDA backward (runtime/cuda/bwd.h) on the GPU ---- */

static int train_load(struct mta_device *d, const struct mta_problem *p,
		      const struct mta_variant *v, struct mta_kernel **out)
{
	struct mta_kernel *k = calloc(1, sizeof *k);
	int rc;
	*out = NULL;
	if (!k)
		return mta_fail(MTA_ENOMEM, "out of memory");
	if ((rc = mta_cuda_train_load(d->c, p, v, &k->train))) {
		free(k);
		return rc;
	}
	*out = k;
	return MTA_OK;
}

static int fwd_save(struct mta_kernel *k, const struct mta_problem *p, const struct mta_tensor *q,
		    const struct mta_tensor *kt, const struct mta_tensor *v,
		    const struct mta_weights *w, struct mta_tensor *o, void *saved)
{
	return mta_cuda_train_fwd_save(k->train, p, q, kt, v, w, o, saved);
}

static int backward(struct mta_kernel *k, const struct mta_problem *p, const struct mta_tensor *q,
		    const struct mta_tensor *kt, const struct mta_tensor *v,
		    const struct mta_weights *w, const void *saved, const struct mta_tensor *dout,
		    const struct mta_grads *g)
{
	return mta_cuda_train_backward(k->train, p, q, kt, v, w, saved, dout, g);
}

/* ---- decode: the CUDA decode kernel on the GPU, its caches in device memory ---- */

static int decode_load(struct mta_device *d, const struct mta_problem *p,
		       const struct mta_variant *v, void **handle, struct mta_decoder *dec)
{
	struct mta_cuda_decode *k = NULL;
	int rc = mta_cuda_decode_load(d ? d->c : NULL, p, v, &k, dec);
	*handle = k;
	return rc;
}

static void decode_unload(void *handle)
{
	mta_cuda_decode_free(handle);
}

const struct mta_backend mta_backend_cuda = {
	"cuda", "the CUDA kernel on the GPU: the tuned winner, else the default",
	MTA_BACKEND_CUDA, 1,
	identify, build, prune, binary_key, launch_dims, target,
	dev_open, dev_close, load, unload, forward,
	bind, launch, fetch, unbind, flush,
	train_load, fwd_save, backward,
	forward_varlen,
	decode_load, decode_unload,
	MTA_MEM_DEVICE, 0, 1, attach, mem_alloc, mem_free, mem_copy, mem_check, sync,
};
