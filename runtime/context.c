/*
 * context.c: pick the recorded winner for a problem and launch it (mta.h).
 *
 * A context is a backend (runtime/backend.h), one of its devices, and the
 * database it reads winners from. The lookup is the pick policy of
 * runtime/core/pick.h over the recorded winners of every device the
 * database knows, each ranked by how close its identity is to this device's
 * (the rung: the very device; the same name and architecture under other
 * driver or compiler versions; the same architecture), then by buckets; the
 * backend's default variant, which is always valid, when nothing applies.
 * Loaded kernels stay in the context keyed by (problem key, spec), so a
 * serving loop pays the compile-and-load cost once; each (problem, T bucket,
 * B bucket) is picked once.
 *
 * CUDA kernels load their cubins from the database's binaries, compiled with
 * NVRTC only when none is stored (the database is read-only here, so such a
 * cubin lives in the context only). mta_forward takes and returns host
 * tensors.
 */
#include "runtime/mta.h"
#include "runtime/backend.h"
#include "runtime/core/error.h"
#include "runtime/core/pick.h"
#include "runtime/core/varlen.h"

#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

struct loaded {
	char key[MTA_KEY_MAX];
	char spec[MTA_SPEC_MAX];
	int train;               /* 1: the backend's train_load (forward saving, backward) */
	struct mta_kernel *k;
	struct loaded *next;
};

/* A pick made once per (problem key, T bucket, B bucket) and kept (see mta_context_pick). */
struct picked {
	char key[MTA_KEY_MAX];
	int64_t t_bucket, b_bucket;
	struct mta_pick pick;
	struct picked *next;
};

/* A device row of the database and the rung of its winners for this context. */
struct known {
	int64_t id;
	int rung;
};

struct mta_context {
	const struct mta_backend *be;
	struct mta_device *dev;
	struct mta_db *db;     /* NULL: no database, defaults only */
	struct mta_device_info self;
	struct known *devices; /* the database's devices whose winners apply here */
	size_t ndevices;
	pthread_mutex_t lock;
	struct loaded *kernels;
	struct picked *picks;
	/* the last problem's key: formatting one costs more than a small forward */
	struct mta_problem last;
	char last_key[MTA_KEY_MAX];
	struct dloaded *decoders; /* decode kernels (mta_cache_create_ctx) */
};
static void free_decoders(mta_context *c);

/* p's key, from the context's last one when p is the same problem. */
static int key_of(mta_context *c, const struct mta_problem *p, char *key)
{
	int rc = MTA_OK;
	pthread_mutex_lock(&c->lock);
	if (!c->last_key[0] || memcmp(&c->last, p, sizeof *p)) {
		if ((rc = mta_problem_key(p, c->last_key, sizeof c->last_key)))
			c->last_key[0] = 0;
		else
			c->last = *p;
	}
	if (!rc)
		memcpy(key, c->last_key, MTA_KEY_MAX);
	pthread_mutex_unlock(&c->lock);
	return rc;
}

/* How close device d of the database is to this one: a MTA_RUNG_*, or -1 (not at all). */
static int rung_of(const struct mta_device_info *self, const struct mta_db_device *d)
{
	if (strcmp(self->backend, d->backend) || strcmp(self->arch, d->arch))
		return -1;
	if (strcmp(self->name, d->name))
		return MTA_RUNG_ARCH;
	if (strcmp(self->driver, d->driver) || strcmp(self->compiler, d->compiler) ||
	    strcmp(self->nvrtc, d->nvrtc) || self->cores != d->cores)
		return MTA_RUNG_NAME;
	return MTA_RUNG_DEVICE;
}

static int add_device(void *ctx, const struct mta_db_device *d)
{
	mta_context *c = ctx;
	int rung = rung_of(&c->self, d);
	if (rung < 0)
		return 0;
	struct known *k = realloc(c->devices, (c->ndevices + 1) * sizeof *k);
	if (!k)
		return mta_fail(MTA_ENOMEM, "out of memory");
	c->devices = k;
	c->devices[c->ndevices++] = (struct known){ d->id, rung };
	return 0;
}

int mta_context_create(mta_context **out, const char *db_path, const char *backend, int device)
{
	mta_context *c = NULL;
	char path[1024];
	struct stat st;
	int rc;

	if (!out)
		return mta_fail(MTA_EINVAL, "mta_context_create: no place for the context");
	*out = NULL;
	if (!(c = calloc(1, sizeof *c)))
		return mta_fail(MTA_ENOMEM, "out of memory");
	pthread_mutex_init(&c->lock, NULL);
	if ((rc = mta_backend_find(backend ? backend : "cpu", &c->be)) ||
	    (rc = c->be->open(device, 0, &c->dev)))
		goto fail;
	if (!db_path) {
		if ((rc = mta_db_default_path(path, sizeof path)))
			goto fail;
		db_path = path;
	}
	if (stat(db_path, &st) == 0 &&
	    ((rc = mta_db_open(db_path, MTA_DB_READONLY, &c->db)) ||
	     (rc = c->be->identify(device, &c->self)) ||
	     (rc = mta_db_list_devices(c->db, add_device, c))))
		goto fail;
	*out = c;
	return mta_done(MTA_OK);
fail:
	mta_context_free(c);
	return rc;
}

void mta_context_free(mta_context *c)
{
	if (!c)
		return;
	for (struct loaded *l = c->kernels, *nx; l; l = nx) {
		nx = l->next;
		c->be->unload(l->k);
		free(l);
	}
	for (struct picked *k = c->picks, *nx; k; k = nx) {
		nx = k->next;
		free(k);
	}
	free_decoders(c);
	if (c->be)
		c->be->close(c->dev);
	free(c->devices);
	mta_db_close(c->db);
	pthread_mutex_destroy(&c->lock);
	free(c);
}

/* The winners of a problem that apply here, gathered for the pick policy. */
struct cands {
	mta_context *c;
	struct mta_pick_cand *cand;
	struct mta_pick *info;   /* spec and evidence of each */
	size_t n, cap;
};

static int add_winner(void *ctx, const struct mta_db_winner *w)
{
	struct cands *x = ctx;
	size_t i;
	if (strcmp(w->op, "fwd"))
		return 0;
	for (i = 0; i < x->c->ndevices && x->c->devices[i].id != w->device_id; i++)
		;
	if (i == x->c->ndevices)
		return 0;
	if (x->n == x->cap) {
		size_t cap = x->cap ? 2 * x->cap : 16;
		struct mta_pick_cand *c = realloc(x->cand, cap * sizeof *c);
		if (c)
			x->cand = c;
		struct mta_pick *in = c ? realloc(x->info, cap * sizeof *in) : NULL;
		if (!c || !in)
			return mta_fail(MTA_ENOMEM, "out of memory");
		x->info = in;
		x->cap = cap;
	}
	x->cand[x->n] = (struct mta_pick_cand){ x->c->devices[i].rung, w->t_bucket, w->b_bucket };
	struct mta_pick *p = &x->info[x->n++];
	memset(p, 0, sizeof *p);
	snprintf(p->spec, sizeof p->spec, "%s", w->spec);
	p->t_bucket = w->t_bucket;
	p->b_bucket = w->b_bucket;
	/* speed-up = 1/ratio: the interval flips */
	p->speedup = w->rounds ? 1 / w->ratio : NAN;
	p->ci_low = w->rounds ? 1 / w->ci_high : NAN;
	p->ci_high = w->rounds ? 1 / w->ci_low : NAN;
	p->rounds = w->rounds;
	p->significant = w->significant;
	return 0;
}

/* The pick for (p, B, T), asking the database (see mta_context_pick). */
static int pick_now(mta_context *c, const struct mta_problem *p, const char *key, int64_t B,
		    int64_t T, struct mta_pick *out)
{
	struct cands x = { c, NULL, NULL, 0, 0 };
	struct mta_variant v;
	int rc = MTA_OK, source, rung, i = -1;
	if (c->db && c->ndevices && (rc = mta_db_list_winners(c->db, 0, key, add_winner, &x)))
		goto out;
	i = mta_pick_winner(x.cand, x.n, B, T, &source, &rung);
	if (i >= 0) {
		*out = x.info[i];
	} else {
		memset(out, 0, sizeof *out);
		out->speedup = out->ci_low = out->ci_high = 1;
		if ((rc = mta_variant_default(p, c->be->variants, &v)) ||
		    (rc = mta_variant_format(&v, out->spec, sizeof out->spec)))
			goto out;
	}
	out->source = source;
	out->rung = rung;
out:
	free(x.cand);
	free(x.info);
	return rc;
}

int mta_context_pick(mta_context *c, const struct mta_problem *p, int64_t B, int64_t T,
		     struct mta_pick *out)
{
	char key[MTA_KEY_MAX];
	struct picked *k;
	int64_t tb = mta_t_bucket(T), bb = mta_t_bucket(B);
	int rc = MTA_OK;

	if (!c || !out)
		return mta_fail(MTA_EINVAL, "mta_context_pick: no context or no place for the pick");
	if ((rc = key_of(c, p, key)))
		return rc;
	pthread_mutex_lock(&c->lock);
	for (k = c->picks; k; k = k->next)
		if (k->t_bucket == tb && k->b_bucket == bb && !strcmp(k->key, key))
			break;
	if (!k) {
		if (!(k = calloc(1, sizeof *k))) {
			rc = mta_fail(MTA_ENOMEM, "out of memory");
			goto out;
		}
		if ((rc = pick_now(c, p, key, B, T, &k->pick))) {
			free(k);
			goto out;
		}
		strcpy(k->key, key);
		k->t_bucket = tb;
		k->b_bucket = bb;
		k->next = c->picks;
		c->picks = k;
	}
	*out = k->pick;
out:
	pthread_mutex_unlock(&c->lock);
	return mta_done(rc);
}

/* The loaded kernel for (key, spec), loading it on first use. */
static int kernel_for(mta_context *c, const struct mta_problem *p, const char *key,
		      const char *spec, struct loaded **out)
{
	struct mta_variant v;
	struct loaded *l;
	int rc = MTA_OK;

	pthread_mutex_lock(&c->lock);
	for (l = c->kernels; l; l = l->next)
		if (!l->train && !strcmp(l->key, key) && !strcmp(l->spec, spec))
			break;
	if (!l) {
		if ((rc = mta_variant_parse(spec, &v)) || (rc = mta_variant_check(p, &v)))
			goto out;
		if (!(l = calloc(1, sizeof *l))) {
			rc = mta_fail(MTA_ENOMEM, "out of memory");
			goto out;
		}
		if ((rc = c->be->load(c->dev, c->db, p, &v, NULL, 0, &l->k))) {
			free(l);
			l = NULL;
			goto out;
		}
		strcpy(l->key, key);
		strcpy(l->spec, spec);
		l->next = c->kernels;
		c->kernels = l;
	}
	*out = l;
out:
	pthread_mutex_unlock(&c->lock);
	return rc;
}

int mta_forward(mta_context *c, const struct mta_problem *p, const struct mta_tensor *q,
		const struct mta_tensor *k, const struct mta_tensor *v,
		const struct mta_weights *w, struct mta_tensor *o)
{
	char key[MTA_KEY_MAX];
	struct mta_pick pick;
	struct loaded *kern = NULL;
	int64_t B, T;
	int rc;

	if (!c)
		return mta_fail(MTA_EINVAL, "mta_forward: no context");
	if ((rc = mta_check_tensors(p, q, k, v, o, &B, &T)) || (rc = key_of(c, p, key)) ||
	    (rc = mta_context_pick(c, p, B, T, &pick)) ||
	    (rc = kernel_for(c, p, key, pick.spec, &kern)))
		return rc;
	return mta_done(c->be->forward(kern->k, p, q, k, v, w, o));
}

/* ---- training: the forward that saves, and the backward ---- */

/*
 * The training library for (p, B, T), loaded on first use: the variant is
 * the context's pick for the forward (winners keyed by op "fwd"), whose
 * tunables the backward template reads too.
 */
static int train_kernel(mta_context *c, const struct mta_problem *p, int64_t B, int64_t T,
			const char *what, struct loaded **out)
{
	char key[MTA_KEY_MAX];
	struct mta_pick pick;
	struct mta_variant v;
	struct loaded *l;
	int rc;

	if (!c)
		return mta_fail(MTA_EINVAL, "%s: no context", what);
	if (!c->be->train_load)
		return mta_fail(MTA_EUNSUPPORTED, "%s: the %s backend has no backward yet (cpu has)",
				what, c->be->name);
	if ((rc = key_of(c, p, key)) || (rc = mta_context_pick(c, p, B, T, &pick)))
		return rc;
	pthread_mutex_lock(&c->lock);
	for (l = c->kernels; l; l = l->next)
		if (l->train && !strcmp(l->key, key) && !strcmp(l->spec, pick.spec))
			break;
	if (!l) {
		if ((rc = mta_variant_parse(pick.spec, &v)) || (rc = mta_variant_check(p, &v)))
			goto out;
		if (!(l = calloc(1, sizeof *l))) {
			rc = mta_fail(MTA_ENOMEM, "out of memory");
			goto out;
		}
		if ((rc = c->be->train_load(c->dev, p, &v, &l->k))) {
			free(l);
			l = NULL;
			goto out;
		}
		strcpy(l->key, key);
		strcpy(l->spec, pick.spec);
		l->train = 1;
		l->next = c->kernels;
		c->kernels = l;
	}
	*out = l;
out:
	pthread_mutex_unlock(&c->lock);
	return rc;
}

int mta_forward_train(mta_context *c, const struct mta_problem *p, const struct mta_tensor *q,
		      const struct mta_tensor *k, const struct mta_tensor *v,
		      const struct mta_weights *w, struct mta_tensor *o, void *saved)
{
	struct loaded *kern = NULL;
	int64_t B, T;
	int rc;
	if ((rc = mta_check_tensors(p, q, k, v, o, &B, &T)) ||
	    (rc = train_kernel(c, p, B, T, "mta_forward_train", &kern)))
		return rc;
	return mta_done(c->be->fwd_save(kern->k, p, q, k, v, w, o, saved));
}

int mta_backward(mta_context *c, const struct mta_problem *p, const struct mta_tensor *q,
		 const struct mta_tensor *k, const struct mta_tensor *v,
		 const struct mta_weights *w, const void *saved, const struct mta_tensor *dout,
		 const struct mta_grads *g)
{
	struct loaded *kern = NULL;
	int64_t B, T;
	int rc;
	if ((rc = mta_check_tensors(p, q, k, v, NULL, &B, &T)) ||
	    (rc = train_kernel(c, p, B, T, "mta_backward", &kern)))
		return rc;
	return mta_done(c->be->backward(kern->k, p, q, k, v, w, saved, dout, g));
}

/* ---- packed documents (mta.h, mta_forward_varlen) ---- */

int mta_forward_varlen(mta_context *c, const struct mta_problem *p, const struct mta_tensor *q,
		       const struct mta_tensor *k, const struct mta_tensor *v,
		       const struct mta_weights *w, const int64_t *cu_seqlens, int64_t ndocs,
		       struct mta_tensor *o)
{
	char key[MTA_KEY_MAX];
	struct mta_pick pick;
	struct loaded *kern = NULL;
	int64_t tmax;
	int rc;

	if (!c)
		return mta_fail(MTA_EINVAL, "mta_forward_varlen: no context");
	if ((rc = mta_varlen_check(p, q, k, v, o, cu_seqlens, ndocs, &tmax)) ||
	    (rc = key_of(c, p, key)) ||
	    (rc = mta_context_pick(c, p, ndocs, tmax > 0 ? tmax : 1, &pick)) ||
	    (rc = kernel_for(c, p, key, pick.spec, &kern)))
		return rc;
	return mta_done(mta_backend_forward_varlen(c->be, kern->k, p, q, k, v, w, cu_seqlens,
						   ndocs, o));
}

/* ---- decode (mta.h, mta_cache_create_ctx) ---- */

/* A decode kernel loaded into the context, kept until it is freed. */
struct dloaded {
	char key[MTA_KEY_MAX];
	void *handle;
	mta_decode_fn fn;
	struct dloaded *next;
};

/* The context's decode kernels (one list per context, guarded by its lock). */
static int decode_kernel(mta_context *c, const struct mta_problem *p, const char *key,
			 mta_decode_fn *fn)
{
	struct dloaded *l;
	int rc = MTA_OK;
	pthread_mutex_lock(&c->lock);
	for (l = c->decoders; l && strcmp(l->key, key); l = l->next)
		;
	if (!l) {
		if (!(l = calloc(1, sizeof *l))) {
			rc = mta_fail(MTA_ENOMEM, "out of memory");
			goto out;
		}
		if ((rc = c->be->decode_load(c->dev, p, &l->handle, &l->fn))) {
			free(l);
			goto out;
		}
		strcpy(l->key, key);
		l->next = c->decoders;
		c->decoders = l;
	}
	*fn = l->fn;
out:
	pthread_mutex_unlock(&c->lock);
	return rc;
}

int mta_cache_create_ctx(mta_context *c, const struct mta_problem *p, int64_t batch,
			 mta_cache **out)
{
	char key[MTA_KEY_MAX];
	mta_decode_fn fn = NULL;
	int rc;
	if (!c || !out)
		return mta_fail(MTA_EINVAL, "mta_cache_create_ctx: no context or no place for the "
				"cache");
	*out = NULL;
	if ((rc = key_of(c, p, key)))
		return rc;
	if (!c->be->decode_load)
		return mta_cache_create(p, batch, out);
	if ((rc = decode_kernel(c, p, key, &fn)))
		return rc;
	return mta_done(mta_cache_create_kernel(p, batch, fn, out));
}

static void free_decoders(mta_context *c)
{
	for (struct dloaded *l = c->decoders, *nx; l; l = nx) {
		nx = l->next;
		c->be->decode_unload(l->handle);
		free(l);
	}
}
