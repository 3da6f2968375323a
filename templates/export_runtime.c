/*
 * export_runtime.c: the runtime of a library written by `mtatune export`.
 *
 * It implements the running part of mta.h (mta_context_create,
 * mta_context_pick, mta_forward, mta_forward_train, mta_backward, their
 * packed-documents twins, mta_cache_create_ctx, mta_context_free) over the dispatch table
 * the exporter generated (templates/export_table.h), with no database, no
 * compiler and no NVRTC: CPU kernels are C functions linked into the
 * library, CUDA kernels are cubins loaded through mtatune's own driver
 * loader (runtime/cuda/driver.c, which finds libcuda.so.1 with dlopen, so
 * the library starts, and says "no CUDA driver", on machines without one)
 * and launched by its launch code (runtime/cuda/module.c); the CUDA
 * backward's cubins run through mtatune's own host side of the backward
 * (runtime/cuda/bwd.c, bwd_drv.c: checks, copies, the plan of the launch,
 * the kernel's modes), and its decode cubins through mtatune's own host
 * side of the CUDA decode (runtime/cuda/decode_dev.c: the cache in device
 * memory, a launch of a block per sequence; mta_cache_create_ctx). The rest
 * of mta.h comes from mtatune's core layer shipped beside this file.
 *
 * Lookup: the pick policy of runtime/core/pick.h over the problem's
 * exported buckets ((T, B)'s own buckets, else the nearest), else the
 * problem's default variant; a problem that was not exported is
 * MTA_ENOTFOUND naming the problem and the library.
 *
 * A CPU library's context owns a pool (runtime/core/pool.h): the kernels'
 * threads start on the first call and wait for the next, and their
 * workspaces are kept, as in mtatune's own runtime.
 *
 * mta_attention is the call a model makes: a CUDA library's takes device
 * pointers (with strides) on the device given at mta_context_create, enqueues
 * the kernel on the caller's stream and returns without waiting; weights
 * are uploaded once into a handle (mta_weights_load); after the first call
 * of a problem (or mta_context_reserve) nothing is allocated. The caller's
 * current CUDA context is restored on return. A CPU library's takes host
 * memory and returns when done. mta_forward (host tensors, waits) is built
 * on it.
 */
#include "runtime/mta.h"
#include "runtime/core/attention.h"
#include "runtime/core/error.h"
#include "runtime/core/kargs.h"
#include "runtime/core/kargs_bwd.h"
#include "runtime/core/cuda_args.h"
#include "runtime/core/pick.h"
#include "runtime/core/pool.h"
#include "runtime/core/varlen.h"
#include "runtime/core/decode.h"
#include "runtime/cuda/bwd.h"
#include "runtime/cuda/decode_dev.h"
#include "runtime/cuda/driver.h"
#include "runtime/cuda/module.h"
#include "templates/export_table.h"

#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct mta_context {
	const struct mtx_library *lib;
	int cuda_backend;              /* 0 cpu, 1 cuda */
	struct mta_cuda *cu;           /* cuda only: the device in use */
	struct mta_cuda_module *mods;  /* cuda only: per kernel, loaded on first use */
	struct mta_cuda_train **trains; /* cuda only: per backward kernel, loaded on first use */
	struct mta_cuda_decode **decs; /* cuda only: per decode kernel, loaded on first use */
	struct mta_decoder *decoders;  /* cuda only: how a cache calls decs[k] */
	struct mta_pool *pool;         /* cpu only: the kernels' threads and workspaces */
	pthread_mutex_t lock;
	/* mta_attention: cpu only, the float32 o narrowed into a bf16/f16 o */
	pthread_mutex_t ws_lock;
	float *ws;
	size_t ws_cap;
	struct mta_stats stats;        /* counted with atomics */
};

static void count(uint64_t *counter)
{
	__atomic_fetch_add(counter, 1, __ATOMIC_RELAXED);
}

/*
 * Open device index and check that it runs cubins of the library's arch
 * (same major compute capability, minor at least the cubins').
 */
static int cuda_open(mta_context *c, int index)
{
	const struct mtx_library *lib = c->lib;
	int want_major = 0, want_minor = 0, rc;

	if (!(c->mods = calloc((size_t)lib->nkernels + 1, sizeof *c->mods)) ||
	    !(c->trains = calloc((size_t)lib->nkernels + 1, sizeof *c->trains)) ||
	    !(c->decs = calloc((size_t)lib->nkernels + 1, sizeof *c->decs)) ||
	    !(c->decoders = calloc((size_t)lib->nkernels + 1, sizeof *c->decoders)))
		return mta_fail(MTA_ENOMEM, "out of memory");
	if ((rc = mta_cuda_open(index, &c->cu)))
		return rc;
	const struct mta_cuda_device *d = &c->cu->dev;
	/* sm_NN or sm_NNN: compute capability NN/10 . NN%10 (sm_90, sm_100, sm_120) */
	int sm = 0;
	if (sscanf(lib->arch, "sm_%d", &sm) == 1) {
		want_major = sm / 10;
		want_minor = sm % 10;
	}
	if (sm < 50 || d->cc_major != want_major || d->cc_minor < want_minor)
		return mta_fail(MTA_EUNSUPPORTED, "library %s holds cubins for %s; CUDA device %d is "
				"sm_%d%d (export again with --arch sm_%d%d)", lib->name, lib->arch,
				index, d->cc_major, d->cc_minor, d->cc_major, d->cc_minor);
	return MTA_OK;
}

int mta_context_create(mta_context **out, const char *db_path, const char *backend, int device)
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
	if (device < 0)
		return mta_fail(MTA_ENODEV, "device %d: device indices are 0 or more", device);
	if (!(c = calloc(1, sizeof *c)))
		return mta_fail(MTA_ENOMEM, "out of memory");
	c->lib = lib;
	c->cuda_backend = cuda;
	pthread_mutex_init(&c->lock, NULL);
	pthread_mutex_init(&c->ws_lock, NULL);
	if ((cuda && (rc = cuda_open(c, device))) || (!cuda && (rc = mta_pool_create(&c->pool)))) {
		mta_context_free(c);
		return rc;
	}
	*out = c;
	return mta_done(MTA_OK);
}

void mta_context_free(mta_context *c)
{
	if (!c)
		return;
	for (int i = 0; c->mods && i < c->lib->nkernels; i++)
		mta_cuda_module_unload(&c->mods[i]);
	for (int i = 0; c->trains && i < c->lib->nkernels; i++)
		mta_cuda_train_free(c->trains[i]);
	for (int i = 0; c->decs && i < c->lib->nkernels; i++)
		mta_cuda_decode_free(c->decs[i]);
	free(c->trains);
	free(c->decs);
	free(c->decoders);
	mta_cuda_close(c->cu);
	mta_pool_free(c->pool);
	free(c->mods);
	free(c->ws);
	pthread_mutex_destroy(&c->ws_lock);
	pthread_mutex_destroy(&c->lock);
	free(c);
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

/*
 * The kernel index of the forward (op 0), the backward (op 1) or the decode (op 2) for
 * (p, B, T), and the pick's details into *info (may be NULL).
 */
static int choose_op(mta_context *c, const struct mta_problem *p, int op, int64_t B, int64_t T,
		     int *kernel, struct mta_pick *info)
{
	char key[MTA_KEY_MAX];
	const struct mtx_problem *e;
	struct mta_pick_cand *cand;
	int rc, source, rung;

	if (!c)
		return mta_fail(MTA_EINVAL, "no context");
	if ((rc = mta_problem_key(p, key, sizeof key)))
		return rc;
	if (!(e = find(c->lib, key)))
		return mta_fail(MTA_ENOTFOUND, "problem %s was not exported into library %s "
				"(it holds %d problems; tune it and export again)", key,
				c->lib->name, c->lib->nproblems);
	if (op == 1 && e->bwd_default < 0)
		return mta_fail(MTA_EUNSUPPORTED, "library %s has no backward for %s: it ships the "
				"backward of problems tuned for it (mtatune tune --op bwd%s, then "
				"export again)", c->lib->name, key,
				c->cuda_backend ? " --backend cuda" : "");
	if (op == 2 && e->dec_default < 0)
		return mta_fail(MTA_EUNSUPPORTED, "library %s has no decode kernel for %s", c->lib->name,
				key);
	const struct mtx_bucket *bk = op == 2 ? e->dec_buckets : op ? e->bwd_buckets : e->buckets;
	int nb = op == 2 ? e->ndec : op ? e->nbwd : e->nbuckets;
	/* every bucket, as the tool's pick sees them (a table of more than 256 picked
	 * among its first 256 only, and chose another winner than the tool) */
	if (!(cand = malloc(((size_t)nb + 1) * sizeof *cand)))
		return mta_fail(MTA_ENOMEM, "out of memory");
	for (int i = 0; i < nb; i++) /* every winner of the library is of its own device */
		cand[i] = (struct mta_pick_cand){ MTA_RUNG_DEVICE, bk[i].t_bucket, bk[i].b_bucket };
	int best = mta_pick_winner(cand, (size_t)nb, B, T, &source, &rung);
	free(cand);
	*kernel = best >= 0 ? bk[best].kernel : op == 2 ? e->dec_default :
		  op ? e->bwd_default : e->default_kernel;
	if (info) {
		const struct mtx_bucket *b = best >= 0 ? &bk[best] : NULL;
		memset(info, 0, sizeof *info);
		snprintf(info->spec, sizeof info->spec, "%s", c->lib->kernels[*kernel].spec);
		info->source = source;
		info->rung = rung;
		info->t_bucket = b ? b->t_bucket : 0;
		info->b_bucket = b ? b->b_bucket : 0;
		info->speedup = b ? b->speedup : 1;
		info->ci_low = b ? b->ci_low : 1;
		info->ci_high = b ? b->ci_high : 1;
		info->rounds = b ? b->rounds : 0;
		info->significant = b ? b->significant : 0;
	}
	return MTA_OK;
}

static int choose(mta_context *c, const struct mta_problem *p, int64_t B, int64_t T,
		  int *kernel, struct mta_pick *info)
{
	return choose_op(c, p, 0, B, T, kernel, info);
}

int mta_context_pick(mta_context *c, const struct mta_problem *p, int64_t B, int64_t T,
		     struct mta_pick *out)
{
	int k, rc;
	if (!out)
		return mta_fail(MTA_EINVAL, "mta_context_pick: no place for the pick");
	if ((rc = choose(c, p, B, T, &k, out)))
		return rc;
	return mta_done(MTA_OK);
}

int mta_context_pick_op(mta_context *c, const struct mta_problem *p, const char *op, int64_t B,
			int64_t T, struct mta_pick *out)
{
	int k, rc, which = !op ? -1 : !strcmp(op, "fwd") ? 0 : !strcmp(op, "bwd") ? 1 :
			   !strcmp(op, "decode") ? 2 : -1;
	if (!out)
		return mta_fail(MTA_EINVAL, "mta_context_pick_op: no place for the pick");
	if (which < 0)
		return mta_fail(MTA_EINVAL, "mta_context_pick_op: unknown operation '%s' (expected "
				"fwd, bwd or decode)", op ? op : "(null)");
	if ((rc = choose_op(c, p, which, B, T, &k, out)))
		return rc;
	return mta_done(MTA_OK);
}

/* Kernel k's module, loading its cubin into the context on first use. */
static int cuda_module(mta_context *c, int k, const struct mta_cuda_module **m)
{
	const struct mtx_kernel *kn = &c->lib->kernels[k];
	int rc = MTA_OK;

	pthread_mutex_lock(&c->lock);
	if (!c->mods[k].mod) {
		count(&c->stats.kernel_loads);
		if ((rc = mta_cuda_module_load(c->cu, kn->cubin, kn->entry, kn->block, kn->smem,
					       kn->bq, kn->hpb, kn->cs, &c->mods[k])))
			mta_wrap(rc, "cuda kernel %s", kn->spec);
	}
	*m = &c->mods[k];
	pthread_mutex_unlock(&c->lock);
	return rc;
}

/* ---- mta_attention: device pointers, the caller's stream, weights handles ---- */

struct mta_wts {
	mta_context *c;
	struct mta_problem p;
	struct mta_weights w; /* what the kernels read: pointers in their memory */
	void *block;          /* cuda: device memory the handle owns, or NULL */
	float gate_b;         /* cpu: the value, read through w.gate_b_ptr */
};

static int drv(cu_result r, const char *what)
{
	if (!r)
		return MTA_OK;
	return mta_fail(r == CU_ERROR_OUT_OF_MEMORY ? MTA_ENOMEM : MTA_EKERNEL, "%s: %s", what,
			mta_cu_error(r));
}

/* Memory of the kind the context's kernels read, else MTA_EINVAL naming it. */
static int mem_check(mta_context *c, const char *name, int memory)
{
	if (c->cuda_backend && memory != MTA_MEM_DEVICE)
		return mta_fail(MTA_EINVAL, "%s is host memory; library %s runs CUDA kernels on "
				"device memory (copy it with mta_memcpy, or call mta_forward)", name,
				c->lib->name);
	if (!c->cuda_backend && memory != MTA_MEM_HOST)
		return mta_fail(MTA_EINVAL, "%s says device memory; library %s runs CPU kernels on "
				"host memory", name, c->lib->name);
	return MTA_OK;
}

int mta_device_alloc(mta_context *c, size_t bytes, void **ptr)
{
	cu_ptr x = 0;
	int rc;
	if (!c || !ptr)
		return mta_fail(MTA_EINVAL, "mta_device_alloc: no context or no place for the pointer");
	*ptr = NULL;
	if (!c->cuda_backend)
		return mta_fail(MTA_EUNSUPPORTED, "library %s runs CPU kernels: it has no device "
				"memory", c->lib->name);
	if ((rc = mta_cu_push(c->cu)))
		return rc;
	rc = drv(mta_cu.mem_alloc(&x, bytes ? bytes : 1), "cuMemAlloc");
	mta_cu_pop();
	if (rc)
		return rc;
	count(&c->stats.device_allocs);
	*ptr = (void *)(uintptr_t)x;
	return mta_done(MTA_OK);
}

void mta_device_free(mta_context *c, void *ptr)
{
	if (!c || !ptr || !c->cuda_backend || mta_cu_push(c->cu))
		return;
	mta_cu.mem_free((cu_ptr)(uintptr_t)ptr);
	mta_cu_pop();
}

int mta_memcpy(mta_context *c, void *dst, int dst_memory, const void *src, int src_memory,
	       size_t bytes, void *stream)
{
	int rc;
	if (!c)
		return mta_fail(MTA_EINVAL, "mta_memcpy: no context");
	if (!bytes)
		return mta_done(MTA_OK);
	if (!dst || !src)
		return mta_fail(MTA_EINVAL, "mta_memcpy: no %s", dst ? "source" : "destination");
	if (!c->cuda_backend) {
		if ((rc = mem_check(c, "the copy's destination", dst_memory)) ||
		    (rc = mem_check(c, "the copy's source", src_memory)))
			return rc;
		memmove(dst, src, bytes);
		return mta_done(MTA_OK);
	}
	if ((rc = mta_cu_push(c->cu)))
		return rc;
	rc = drv(mta_cu.memcpy_async((cu_ptr)(uintptr_t)dst, (cu_ptr)(uintptr_t)src, bytes,
				     stream ? (cu_stream)stream : c->cu->stream), "cuMemcpyAsync");
	mta_cu_pop();
	return mta_done(rc);
}

int mta_stream_synchronize(mta_context *c, void *stream)
{
	int rc;
	if (!c)
		return mta_fail(MTA_EINVAL, "mta_stream_synchronize: no context");
	count(&c->stats.syncs);
	if (!c->cuda_backend)
		return mta_done(MTA_OK);
	if ((rc = mta_cu_push(c->cu)))
		return rc;
	rc = drv(mta_cu.stream_sync(stream ? (cu_stream)stream : c->cu->stream),
		 "cuStreamSynchronize");
	mta_cu_pop();
	return mta_done(rc);
}

void mta_context_stats(mta_context *c, struct mta_stats *out)
{
	if (!out)
		return;
	memset(out, 0, sizeof *out);
	if (!c)
		return;
	out->calls = __atomic_load_n(&c->stats.calls, __ATOMIC_RELAXED);
	out->device_allocs = __atomic_load_n(&c->stats.device_allocs, __ATOMIC_RELAXED);
	out->host_allocs = __atomic_load_n(&c->stats.host_allocs, __ATOMIC_RELAXED);
	out->kernel_loads = __atomic_load_n(&c->stats.kernel_loads, __ATOMIC_RELAXED);
	out->syncs = __atomic_load_n(&c->stats.syncs, __ATOMIC_RELAXED);
}

void mta_weights_free(mta_wts *h)
{
	if (!h)
		return;
	mta_device_free(h->c, h->block);
	free(h);
}

int mta_weights_load(mta_context *c, const struct mta_problem *p, const struct mta_weights *w,
		     int memory, mta_wts **out)
{
	static const struct mta_weights none;
	struct mta_wpart part[MTA_WPARTS_MAX];
	mta_wts *h = NULL;
	int rc, n;

	if (!c || !out)
		return mta_fail(MTA_EINVAL, "mta_weights_load: no context or no place for the handle");
	*out = NULL;
	if (memory != MTA_MEM_HOST && memory != MTA_MEM_DEVICE)
		return mta_fail(MTA_EINVAL, "mta_weights_load: memory %d is neither MTA_MEM_HOST (0) "
				"nor MTA_MEM_DEVICE (1)", memory);
	if ((rc = mta_problem_validate(p)) || (rc = mta_check_weights(p, w)))
		return rc;
	if (!c->cuda_backend && (rc = mem_check(c, "the weights", memory)))
		return rc;
	if (!(h = calloc(1, sizeof *h)))
		return mta_fail(MTA_ENOMEM, "out of memory");
	count(&c->stats.host_allocs);
	h->c = c;
	h->p = *p;
	h->w = w ? *w : none;
	h->gate_b = h->w.gate_b;
	n = mta_weight_parts(p, &h->w, part);
	/* device weights are referenced: memory of this device, or no handle */
	for (int i = 0; c->cuda_backend && memory == MTA_MEM_DEVICE && i < n; i++)
		if ((rc = mta_cuda_ptr_check(c->cu, part[i].name, *part[i].ptr,
					     part[i].n * sizeof(float))))
			goto out;
	if (c->cuda_backend && memory == MTA_MEM_DEVICE && p->gate && h->w.gate_b_ptr &&
	    (rc = mta_cuda_ptr_check(c->cu, "weight gate_b", h->w.gate_b_ptr, sizeof(float))))
		goto out;
	int upload = c->cuda_backend && memory == MTA_MEM_HOST;
	int own_gate_b = p->gate && !h->w.gate_b_ptr;
	if (upload || (c->cuda_backend && own_gate_b)) {
		/* one device block: the uploaded weights, then gate_b */
		size_t total = 1, at = 0;
		for (int i = 0; upload && i < n; i++)
			total += part[i].n;
		if ((rc = mta_device_alloc(c, total * sizeof(float), &h->block)))
			goto out;
		float *dst = h->block;
		for (int i = 0; upload && i < n; i++) {
			if ((rc = mta_memcpy(c, dst + at, MTA_MEM_DEVICE, *part[i].ptr, MTA_MEM_HOST,
					     part[i].n * sizeof(float), NULL)))
				goto out;
			*part[i].ptr = dst + at;
			at += part[i].n;
		}
		if (p->gate) {
			if ((rc = mta_memcpy(c, dst + at, MTA_MEM_DEVICE,
					     own_gate_b ? &h->gate_b : h->w.gate_b_ptr, memory,
					     sizeof(float), NULL)))
				goto out;
			h->w.gate_b_ptr = dst + at;
		}
		/* the copies read the caller's memory: done before the handle is used */
		if ((rc = mta_stream_synchronize(c, NULL)))
			goto out;
	} else if (own_gate_b) {
		h->w.gate_b_ptr = &h->gate_b;
	}
	*out = h;
	h = NULL;
out:
	mta_weights_free(h);
	return mta_done(rc);
}

/* The float32 workspace of the narrowing, at least n floats; ws_lock held. */
static int workspace(mta_context *c, size_t n)
{
	if (n <= c->ws_cap)
		return MTA_OK;
	float *w = malloc(n * sizeof *w);
	if (!w)
		return mta_fail(MTA_ENOMEM, "out of memory for a %zu-byte workspace", n * sizeof *w);
	count(&c->stats.host_allocs);
	free(c->ws);
	c->ws = w;
	c->ws_cap = n;
	return MTA_OK;
}

/* CPU kernel k on host tensors, o float32. */
static int cpu_run(mta_context *c, int k, const struct mta_problem *p,
		   const struct mta_tensor *q, const struct mta_tensor *kt,
		   const struct mta_tensor *v, const struct mta_weights *w, struct mta_tensor *o)
{
	const struct mtx_kernel *kn = &c->lib->kernels[k];
	struct mta_kargs a;
	int rc;
	if (kn->info->abi != MTA_KARGS_ABI || kn->info->args_size != (int)sizeof a ||
	    kn->info->dtype != p->dtype)
		return mta_fail(MTA_EKERNEL, "cpu kernel %s was built for another ABI or dtype",
				kn->spec);
	if ((rc = mta_kargs_fill(p, q, kt, v, w, o, 0, &a)))
		return rc;
	return mta_kargs_status(mta_pool_call(c->pool, kn->fn, &a), kn->info, a.T, kn->spec);
}

int mta_attention(mta_context *c, const struct mta_problem *p, const mta_wts *w,
		  const struct mta_tensor *q, const struct mta_tensor *kt,
		  const struct mta_tensor *v, struct mta_tensor *o, float scale, void *stream)
{
	static const struct mta_weights none;
	const struct mta_tensor *all[4] = { q, kt, v, o };
	static const char *names[4] = { "tensor q", "tensor k", "tensor v", "tensor o" };
	const struct mta_cuda_module *m;
	struct mta_cuda_args a;
	int64_t B, T;
	int k, rc;

	if (!c)
		return mta_fail(MTA_EINVAL, "mta_attention: no context");
	count(&c->stats.calls);
	if ((rc = mta_attention_check(p, q, kt, v, o, scale, &B, &T)))
		return rc;
	for (int i = 0; i < 4; i++)
		if ((rc = mem_check(c, names[i], all[i]->memory)) ||
		    (c->cuda_backend && (rc = mta_cuda_ptr_check(c->cu, names[i], all[i]->data,
								 mta_tensor_extent(all[i])))))
			return rc;
	if (w && (w->c != c || memcmp(&w->p, p, sizeof *p)))
		return mta_fail(MTA_EINVAL, "the weights handle was loaded for another %s",
				w->c != c ? "context" : "problem");
	if (!w && (rc = mta_check_weights(p, NULL)))
		return mta_wrap(rc, "no weights handle (mta_weights_load)");
	if ((rc = choose(c, p, B, T, &k, NULL)))
		return rc;
	const struct mta_weights *kw = w ? &w->w : &none;
	if (!c->cuda_backend) {
		if (o->dtype == MTA_F32)
			return mta_done(cpu_run(c, k, p, q, kt, v, kw, o));
		struct mta_tensor o32;
		pthread_mutex_lock(&c->ws_lock);
		if (!(rc = workspace(c, (size_t)B * (size_t)T * (size_t)p->H * (size_t)p->D))) {
			mta_tensor_init(&o32, c->ws, MTA_F32, B, T, p->H, p->D);
			if (!(rc = cpu_run(c, k, p, q, kt, v, kw, &o32)))
				mta_tensor_narrow(c->ws, o);
		}
		pthread_mutex_unlock(&c->ws_lock);
		return mta_done(rc);
	}
	if ((rc = mta_cuda_args_fill(p, q, kt, v, kw, o, &a)) || (rc = cuda_module(c, k, &m)) ||
	    (rc = mta_cu_push(c->cu)))
		return rc;
	rc = mta_cuda_module_launch(m, &a, p->H, stream ? (cu_stream)stream : c->cu->stream);
	mta_cu_pop();
	return mta_done(rc);
}

int mta_context_reserve(mta_context *c, const struct mta_problem *p, int64_t B, int64_t T)
{
	const struct mta_cuda_module *m;
	int k, rc;
	if (!c)
		return mta_fail(MTA_EINVAL, "mta_context_reserve: no context");
	if (B < 1 || T < 1)
		return mta_fail(MTA_EINVAL, "mta_context_reserve: B=%lld, T=%lld; expected both 1 "
				"or more", (long long)B, (long long)T);
	if ((rc = choose(c, p, B, T, &k, NULL)))
		return rc;
	if (c->cuda_backend)
		return mta_done(cuda_module(c, k, &m));
	pthread_mutex_lock(&c->ws_lock);
	rc = workspace(c, (size_t)B * (size_t)T * (size_t)p->H * (size_t)p->D);
	pthread_mutex_unlock(&c->ws_lock);
	return mta_done(rc);
}

/* ---- mta_forward: host tensors, built on mta_attention ------------------- */

int mta_forward(mta_context *c, const struct mta_problem *p, const struct mta_tensor *q,
		const struct mta_tensor *kt, const struct mta_tensor *v,
		const struct mta_weights *w, struct mta_tensor *o)
{
	const struct mta_tensor *all[4] = { q, kt, v, o };
	static const char *names[4] = { "tensor q", "tensor k", "tensor v", "tensor o" };
	mta_wts *h = NULL;
	int rc;

	if (!c)
		return mta_fail(MTA_EINVAL, "mta_forward: no context");
	if ((rc = mta_check_tensors(p, q, kt, v, o, NULL, NULL)))
		return rc;
	for (int i = 0; i < 4; i++)
		if (all[i]->memory != MTA_MEM_HOST)
			return mta_fail(MTA_EINVAL, "mta_forward takes host tensors; %s says device "
					"memory (call mta_attention)", names[i]);
	if ((rc = mta_weights_load(c, p, w, MTA_MEM_HOST, &h)))
		return rc;
	rc = c->cuda_backend ? mta_forward_staged(c, p, h, all)
			     : mta_attention(c, p, h, q, kt, v, o, 0, NULL);
	mta_weights_free(h);
	return mta_done(rc);
}

/* ---- training: the shipped backward ------------------------------------ */

/* Backward kernel k's loaded cubin (cuda), loading it on first use. */
static int cuda_train(mta_context *c, int k, const struct mta_problem *p,
		      struct mta_cuda_train **t)
{
	const struct mtx_kernel *kn = &c->lib->kernels[k];
	int rc = MTA_OK;
	if (!kn->cubin || !kn->entry || strcmp(kn->entry, MTA_CUDA_BWD_KERNEL))
		return mta_fail(MTA_EKERNEL, "kernel %s of library %s is not a CUDA backward",
				kn->spec, c->lib->name);
	pthread_mutex_lock(&c->lock);
	if (!c->trains[k]) {
		count(&c->stats.kernel_loads);
		if ((rc = mta_cuda_train_open(c->cu, p, &kn->shape, kn->cubin, &c->trains[k])))
			mta_wrap(rc, "cuda backward %s", kn->spec);
	}
	*t = c->trains[k];
	pthread_mutex_unlock(&c->lock);
	return rc;
}

/*
 * A CUDA library's training call: host tensors, as mtatune's cuda context
 * takes them (runtime/cuda/bwd.c copies them to the device and back).
 */
static int cuda_train_call(mta_context *c, int k, const struct mta_problem *p,
			   const struct mta_tensor *q, const struct mta_tensor *kt,
			   const struct mta_tensor *v, const struct mta_weights *w,
			   struct mta_tensor *o, void *saved, const struct mta_tensor *dout,
			   const struct mta_grads *g, const char *what)
{
	const struct mta_tensor *all[5] = { q, kt, v, o, dout };
	static const char *names[5] = { "tensor q", "tensor k", "tensor v", "tensor o",
					"tensor dout" };
	struct mta_cuda_train *t;
	int rc;
	for (int i = 0; i < 5; i++)
		if (all[i] && all[i]->memory != MTA_MEM_HOST)
			return mta_fail(MTA_EINVAL, "%s takes host tensors; %s says device memory "
					"(library %s copies them to its device itself)", what,
					names[i], c->lib->name);
	if ((rc = cuda_train(c, k, p, &t)))
		return rc;
	return o ? mta_cuda_train_fwd_save(t, p, q, kt, v, w, o, saved)
		 : mta_cuda_train_backward(t, p, q, kt, v, w, saved, dout, g);
}

/*
 * The backward kernel of (p, B, T) and its arguments: the saving forward
 * (o set) or the backward (dout, g set), through kargs_bwd.c as mtatune's
 * runtime fills them (runtime/cpu/cpu_bwd.c); on a CUDA library the
 * backward's cubin, through runtime/cuda/bwd.c as mtatune's runtime runs it.
 */
static int train_call(mta_context *c, const struct mta_problem *p, const struct mta_tensor *q,
		      const struct mta_tensor *kt, const struct mta_tensor *v,
		      const struct mta_weights *w, struct mta_tensor *o, void *saved,
		      const struct mta_tensor *dout, const struct mta_grads *g, const char *what)
{
	struct mta_bkargs a;
	int64_t B, T;
	int k, rc;
	if (!c)
		return mta_fail(MTA_EINVAL, "%s: no context", what);
	if ((rc = mta_check_tensors(p, q, kt, v, o, &B, &T)) ||
	    (rc = choose_op(c, p, 1, B, T, &k, NULL)))
		return rc;
	if (c->cuda_backend)
		return cuda_train_call(c, k, p, q, kt, v, w, o, saved, dout, g, what);
	const struct mtx_kernel *kn = &c->lib->kernels[k];
	if (!kn->fwd_save || !kn->bwd || kn->info->abi != MTA_BKARGS_ABI ||
	    kn->info->args_size != (int)sizeof a || kn->info->dtype != p->dtype)
		return mta_fail(MTA_EKERNEL, "%s: backward kernel %s was built for another ABI or "
				"dtype", what, kn->spec);
	if ((rc = mta_bkargs_fill(p, q, kt, v, w, o, saved, dout, g, 0, &a)))
		return rc;
	return mta_kargs_status(mta_pool_call(c->pool, o ? kn->fwd_save : kn->bwd, &a.f), kn->info,
				a.f.T, kn->spec);
}

int mta_forward_train(mta_context *c, const struct mta_problem *p, const struct mta_tensor *q,
		      const struct mta_tensor *k, const struct mta_tensor *v,
		      const struct mta_weights *w, struct mta_tensor *o, void *saved)
{
	if (!o)
		return mta_fail(MTA_EINVAL, "mta_forward_train: no output tensor");
	return mta_done(train_call(c, p, q, k, v, w, o, saved, NULL, NULL, "mta_forward_train"));
}

int mta_backward(mta_context *c, const struct mta_problem *p, const struct mta_tensor *q,
		 const struct mta_tensor *k, const struct mta_tensor *v,
		 const struct mta_weights *w, const void *saved, const struct mta_tensor *dout,
		 const struct mta_grads *g)
{
	return mta_done(train_call(c, p, q, k, v, w, NULL, (void *)saved, dout, g,
				   "mta_backward"));
}

/*
 * Packed documents (mta.h): host tensors, as mta_forward takes them. A CPU
 * library's kernel takes the offsets (one call); a CUDA library runs
 * mta_forward once per document, on views of the tensors.
 */
int mta_forward_varlen(mta_context *c, const struct mta_problem *p, const struct mta_tensor *q,
		       const struct mta_tensor *kt, const struct mta_tensor *v,
		       const struct mta_weights *w, const int64_t *cu, int64_t ndocs,
		       struct mta_tensor *o)
{
	struct mta_kargs a;
	int64_t tmax;
	int k, rc;

	if (!c)
		return mta_fail(MTA_EINVAL, "mta_forward_varlen: no context");
	if ((rc = mta_varlen_check(p, q, kt, v, o, cu, ndocs, &tmax)) ||
	    (rc = choose(c, p, ndocs, tmax > 0 ? tmax : 1, &k, NULL)))
		return rc;
	if (c->cuda_backend) {
		for (int64_t d = 0; d < ndocs; d++) {
			struct mta_tensor qd, kd, vd, od;
			const int64_t s = cu[d], n = cu[d + 1] - cu[d];
			if (!n)
				continue;
			mta_varlen_view(q, s, n, &qd);
			mta_varlen_view(kt, s, n, &kd);
			mta_varlen_view(v, s, n, &vd);
			mta_varlen_view(o, s, n, &od);
			if ((rc = mta_forward(c, p, &qd, &kd, &vd, w, &od)))
				return rc;
		}
		return mta_done(MTA_OK);
	}
	const struct mtx_kernel *kn = &c->lib->kernels[k];
	if (kn->info->abi != MTA_KARGS_ABI || kn->info->args_size != (int)sizeof a ||
	    kn->info->dtype != p->dtype)
		return mta_fail(MTA_EKERNEL, "cpu kernel %s was built for another ABI or dtype",
				kn->spec);
	if ((rc = mta_kargs_fill_varlen(p, q, kt, v, w, o, 0, cu, ndocs, &a)))
		return rc;
	return mta_done(mta_kargs_status(mta_pool_call(c->pool, kn->fn, &a), kn->info, tmax,
					 kn->spec));
}

/*
 * Packed training (mta.h): core's loop over the documents (varlen.c), each
 * through this library's mta_forward_train / mta_backward above.
 */
static int train_doc(void *arg, const struct mta_problem *p, const struct mta_tensor *q,
		     const struct mta_tensor *kt, const struct mta_tensor *v,
		     const struct mta_weights *w, struct mta_tensor *o, void *saved,
		     const struct mta_tensor *dout, const struct mta_grads *g)
{
	mta_context *c = arg;
	return o ? mta_forward_train(c, p, q, kt, v, w, o, saved)
		 : mta_backward(c, p, q, kt, v, w, saved, dout, g);
}

int mta_forward_train_varlen(mta_context *c, const struct mta_problem *p,
			     const struct mta_tensor *q, const struct mta_tensor *kt,
			     const struct mta_tensor *v, const struct mta_weights *w,
			     const int64_t *cu, int64_t ndocs, struct mta_tensor *o, void *saved)
{
	if (!c)
		return mta_fail(MTA_EINVAL, "mta_forward_train_varlen: no context");
	return mta_done(mta_varlen_train(p, q, kt, v, w, o, saved, NULL, NULL, cu, ndocs,
					 train_doc, c));
}

int mta_backward_varlen(mta_context *c, const struct mta_problem *p, const struct mta_tensor *q,
			const struct mta_tensor *kt, const struct mta_tensor *v,
			const struct mta_weights *w, const void *saved,
			const struct mta_tensor *dout, const int64_t *cu, int64_t ndocs,
			const struct mta_grads *g)
{
	if (!c)
		return mta_fail(MTA_EINVAL, "mta_backward_varlen: no context");
	return mta_done(mta_varlen_train(p, q, kt, v, w, NULL, (void *)saved, dout, g, cu, ndocs,
					 train_doc, c));
}

/*
 * Decode (mta.h): a CPU library ships each exported problem's decode kernel
 * (src/d_<i>.c), run on the context's pool. A CUDA library ships decode
 * cubins (the winners of their T and B buckets, and the default decode
 * variant), run by mtatune's own host side of the CUDA decode
 * (runtime/cuda/decode_dev.c: the cache in device memory, a block per
 * sequence); a cache asks again for its kernel whenever its longest row
 * enters another T bucket (runtime/core/decode.c), as mtatune's runtime
 * does, and takes a prefill's outputs from this library's mta_forward.
 */
static int dec_forward(void *ctx, const struct mta_problem *p, const struct mta_tensor *q,
		       const struct mta_tensor *k, const struct mta_tensor *v,
		       const struct mta_weights *w, struct mta_tensor *o)
{
	return mta_forward(ctx, p, q, k, v, w, o);
}

/* The decoder of the CUDA decode kernel for (p, B, T), its cubin loaded on first use. */
static int dec_select(void *ctx, const struct mta_problem *p, int64_t B, int64_t T,
		      struct mta_decoder *out)
{
	mta_context *c = ctx;
	char key[MTA_KEY_MAX];
	const struct mtx_problem *e;
	int rc = MTA_OK;

	if ((rc = mta_problem_key(p, key, sizeof key)))
		return rc;
	if (!(e = find(c->lib, key)) || e->dec_default < 0)
		return mta_fail(MTA_ENOTFOUND, "problem %s has no decode kernel in library %s", key,
				c->lib->name);
	int k;
	if ((rc = choose_op(c, p, 2, B, T, &k, NULL)))
		return rc;
	const struct mtx_kernel *kn = &c->lib->kernels[k];
	if (!kn->cubin || !kn->entry || strcmp(kn->entry, "mta_decode_row"))
		return mta_fail(MTA_EKERNEL, "kernel %s of library %s is not a CUDA decode kernel",
				kn->spec, c->lib->name);
	pthread_mutex_lock(&c->lock);
	if (!c->decs[k]) {
		count(&c->stats.kernel_loads);
		if ((rc = mta_cuda_decode_open(c->cu, kn->cubin, kn->block, kn->smem, &c->decs[k],
					       &c->decoders[k]))) {
			mta_wrap(rc, "cuda decode %s", kn->spec);
		} else {
			c->decoders[k].ctx = c;
			c->decoders[k].forward = dec_forward;
			c->decoders[k].select = dec_select;
			c->decoders[k].spec = kn->spec;
		}
	}
	if (!rc)
		*out = c->decoders[k];
	pthread_mutex_unlock(&c->lock);
	return rc;
}

int mta_cache_create_ctx(mta_context *c, const struct mta_problem *p, int64_t batch,
			 mta_cache **out)
{
	char key[MTA_KEY_MAX];
	const struct mtx_problem *e;
	int rc;
	if (!c)
		return mta_fail(MTA_EINVAL, "mta_cache_create_ctx: no context");
	if ((rc = mta_problem_key(p, key, sizeof key)))
		return rc;
	if (!(e = find(c->lib, key)))
		return mta_fail(MTA_ENOTFOUND, "problem %s was not exported into library %s", key,
				c->lib->name);
	if (c->cuda_backend && e->dec_default >= 0) {
		/* the winner for short rows; the cache asks again as it grows */
		struct mta_decoder dec;
		if ((rc = dec_select(c, p, batch, 1, &dec)))
			return rc;
		return mta_done(mta_cache_create_kernel(p, batch, &dec, out));
	}
	if (!e->decode) /* no decode kernel shipped: the float64 engine of the core */
		return mta_cache_create(p, batch, out);
	/* the context's pool: the kernel splits each row's key blocks over its cores */
	const struct mta_decoder dec = { .fn = e->decode, .pool = c->pool, .nthreads = 0 };
	return mta_done(mta_cache_create_kernel(p, batch, &dec, out));
}
