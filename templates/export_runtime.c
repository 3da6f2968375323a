/*
 * export_runtime.c: the runtime of a library written by `mtatune export`.
 *
 * It implements the running part of mta.h (mta_context_create,
 * mta_context_pick, mta_forward, mta_context_free) over the dispatch table
 * the exporter generated (templates/export_table.h), with no database, no
 * compiler and no NVRTC: CPU kernels are C functions linked into the
 * library, CUDA kernels are cubins loaded through mtatune's own driver
 * loader (runtime/cuda/driver.c, which finds libcuda.so.1 with dlopen, so
 * the library starts, and says "no CUDA driver", on machines without one)
 * and launched by its launch code (runtime/cuda/module.c). The rest of mta.h
 * comes from mtatune's core layer shipped beside this file.
 *
 * Lookup: the pick policy of runtime/core/pick.h over the problem's
 * exported buckets ((T, B)'s own buckets, else the nearest), else the
 * problem's default variant; a problem that was not exported is
 * MTA_ENOTFOUND naming the problem and the library.
 *
 * A CPU library's context owns a pool (runtime/core/pool.h): the kernels'
 * threads start on the first call and wait for the next, and their
 * workspaces are kept, as in mtatune's own runtime.
 */
#include "runtime/mta.h"
#include "runtime/core/error.h"
#include "runtime/core/kargs.h"
#include "runtime/core/cuda_args.h"
#include "runtime/core/pick.h"
#include "runtime/core/pool.h"
#include "runtime/core/varlen.h"
#include "runtime/core/decode.h"
#include "runtime/cuda/driver.h"
#include "runtime/cuda/module.h"
#include "templates/export_table.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct mta_context {
	const struct mtx_library *lib;
	int cuda_backend;              /* 0 cpu, 1 cuda */
	struct mta_cuda *cu;           /* cuda only: the device in use */
	struct mta_cuda_module *mods;  /* cuda only: per kernel, loaded on first use */
	struct mta_pool *pool;         /* cpu only: the kernels' threads and workspaces */
	pthread_mutex_t lock;
};

/*
 * Open device index and check that it runs cubins of the library's arch
 * (same major compute capability, minor at least the cubins').
 */
static int cuda_open(mta_context *c, int index)
{
	const struct mtx_library *lib = c->lib;
	int want_major = 0, want_minor = 0, rc;

	if (!(c->mods = calloc((size_t)lib->nkernels + 1, sizeof *c->mods)))
		return mta_fail(MTA_ENOMEM, "out of memory");
	if ((rc = mta_cuda_open(index, &c->cu)))
		return rc;
	const struct mta_cuda_device *d = &c->cu->dev;
	if (sscanf(lib->arch, "sm_%1d%d", &want_major, &want_minor) != 2 ||
	    d->cc_major != want_major || d->cc_minor < want_minor)
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
	mta_cuda_close(c->cu);
	mta_pool_free(c->pool);
	free(c->mods);
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

/* The kernel index for (p, B, T), and the pick's details into *info (may be NULL). */
static int choose(mta_context *c, const struct mta_problem *p, int64_t B, int64_t T,
		  int *kernel, struct mta_pick *info)
{
	char key[MTA_KEY_MAX];
	const struct mtx_problem *e;
	struct mta_pick_cand cand[256];
	int rc, source, rung;

	if (!c)
		return mta_fail(MTA_EINVAL, "no context");
	if ((rc = mta_problem_key(p, key, sizeof key)))
		return rc;
	if (!(e = find(c->lib, key)))
		return mta_fail(MTA_ENOTFOUND, "problem %s was not exported into library %s "
				"(it holds %d problems; tune it and export again)", key,
				c->lib->name, c->lib->nproblems);
	int n = e->nbuckets < 256 ? e->nbuckets : 256;
	for (int i = 0; i < n; i++) /* every winner of the library is of its own device */
		cand[i] = (struct mta_pick_cand){ MTA_RUNG_DEVICE, e->buckets[i].t_bucket,
						  e->buckets[i].b_bucket };
	int best = mta_pick_winner(cand, (size_t)n, B, T, &source, &rung);
	*kernel = best >= 0 ? e->buckets[best].kernel : e->default_kernel;
	if (info) {
		const struct mtx_bucket *b = best >= 0 ? &e->buckets[best] : NULL;
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

/* Kernel k's module, loading its cubin into the context on first use. */
static int cuda_module(mta_context *c, int k, const struct mta_cuda_module **m)
{
	const struct mtx_kernel *kn = &c->lib->kernels[k];
	int rc = MTA_OK;

	pthread_mutex_lock(&c->lock);
	if (!c->mods[k].mod &&
	    (rc = mta_cuda_module_load(c->cu, kn->cubin, kn->entry, kn->block, kn->smem, kn->bq,
				       kn->hpb, &c->mods[k])))
		mta_wrap(rc, "cuda kernel %s", kn->spec);
	*m = &c->mods[k];
	pthread_mutex_unlock(&c->lock);
	return rc;
}

/* Launch kernel k on device pointers and wait for it. */
static int cuda_forward(mta_context *c, int k, const struct mta_problem *p,
			const struct mta_tensor *q, const struct mta_tensor *kt,
			const struct mta_tensor *v, const struct mta_weights *w,
			struct mta_tensor *o)
{
	const struct mta_cuda_module *m;
	struct mta_cuda_args a;
	cu_result r;
	int rc;

	if ((rc = mta_cuda_args_fill(p, q, kt, v, w, o, &a)) || (rc = cuda_module(c, k, &m)) ||
	    (rc = mta_cu_push(c->cu)))
		return rc;
	if (!(rc = mta_cuda_module_launch(m, &a, p->H, c->cu->stream)) &&
	    (r = mta_cu.stream_sync(c->cu->stream)))
		rc = mta_fail(MTA_EKERNEL, "cuda kernel %s failed: %s", c->lib->kernels[k].spec,
			      mta_cu_error(r));
	mta_cu_pop();
	return rc;
}

int mta_forward(mta_context *c, const struct mta_problem *p, const struct mta_tensor *q,
		const struct mta_tensor *kt, const struct mta_tensor *v,
		const struct mta_weights *w, struct mta_tensor *o)
{
	struct mta_kargs a;
	int64_t B, T;
	int k, rc;

	if (!c)
		return mta_fail(MTA_EINVAL, "mta_forward: no context");
	if ((rc = mta_check_tensors(p, q, kt, v, o, &B, &T)) ||
	    (rc = choose(c, p, B, T, &k, NULL)))
		return rc;
	if (c->cuda_backend)
		return mta_done(cuda_forward(c, k, p, q, kt, v, w, o));
	const struct mtx_kernel *kn = &c->lib->kernels[k];
	if (kn->info->abi != MTA_KARGS_ABI || kn->info->args_size != (int)sizeof a ||
	    kn->info->dtype != p->dtype)
		return mta_fail(MTA_EKERNEL, "cpu kernel %s was built for another ABI or dtype",
				kn->spec);
	if ((rc = mta_kargs_fill(p, q, kt, v, w, o, 0, &a)))
		return rc;
	return mta_done(mta_kargs_status(mta_pool_call(c->pool, kn->fn, &a), kn->info, T, kn->spec));
}

/* ---- training: not shipped yet ------------------------------------------ */

/*
 * An exported library carries forward winners only: the backward (issue 16)
 * is not exported yet, so its entry points say so rather than leave a
 * caller of mta.h with an undefined symbol.
 */
int mta_forward_train(mta_context *c, const struct mta_problem *p, const struct mta_tensor *q,
		      const struct mta_tensor *k, const struct mta_tensor *v,
		      const struct mta_weights *w, struct mta_tensor *o, void *saved)
{
	(void)c, (void)p, (void)q, (void)k, (void)v, (void)w, (void)o, (void)saved;
	return mta_fail(MTA_EUNSUPPORTED, "mta_forward_train: this exported library has no "
			"backward (export ships forward kernels only so far)");
}

int mta_backward(mta_context *c, const struct mta_problem *p, const struct mta_tensor *q,
		 const struct mta_tensor *k, const struct mta_tensor *v,
		 const struct mta_weights *w, const void *saved, const struct mta_tensor *dout,
		 const struct mta_grads *g)
{
	(void)c, (void)p, (void)q, (void)k, (void)v, (void)w, (void)saved, (void)dout, (void)g;
	return mta_fail(MTA_EUNSUPPORTED, "mta_backward: this exported library has no backward "
			"(export ships forward kernels only so far)");

/*
 * Packed documents (mta.h): a CPU library's kernel takes the offsets (one
 * call); a CUDA library launches its kernel once per document, on views of
 * the device tensors.
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
			if ((rc = cuda_forward(c, k, p, &qd, &kd, &vd, w, &od)))
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
 * Decode (mta.h): a CPU library ships each exported problem's decode kernel
 * (src/d_<i>.c); a CUDA library has none, and its caches are the float64
 * engine of the core it ships (runtime/core/decode.c).
 */
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
	if (!e->decode)
		return mta_cache_create(p, batch, out);
	return mta_done(mta_cache_create_kernel(p, batch, e->decode, out));
}
