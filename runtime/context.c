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
 * Threads: `lock` guards the context's lists and is never held across a
 * load or a database query, so calls of kernels already loaded go on while
 * another thread's first call compiles one (NVRTC takes seconds to a minute
 * on the paper's problem). `db_lock` runs the loads (which read stored
 * cubins through the database handle) and the picks' queries one at a time:
 * the read-only handle is one connection, with its query deadline per
 * handle. Lock order: db_lock, then lock.
 *
 * CUDA kernels load their cubins from the database's binaries, compiled with
 * NVRTC only when none is stored (the database is read-only here, so such a
 * cubin lives in the context only).
 *
 * mta_attention runs a loaded kernel on tensors already in the kernel's
 * memory through the backend's device path (attach: the caller's stream, no
 * copy, no wait), with weights from a handle made once; after the first call
 * of a problem at a bucket nothing is allocated (the counters of
 * mta_context_stats prove it in tests). mta_forward, host tensors in and
 * out, is built on it.
 */
#include "runtime/mta.h"
#include "runtime/backend.h"
#include "runtime/core/attention.h"
#include "runtime/core/cuda_args.h"
#include "runtime/core/error.h"
#include "runtime/core/pick.h"
#include "runtime/core/varlen.h"

#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

/*
 * A kernel loaded into the context, kept until the context is freed: the
 * forward's or the backward's (k), or a decoder (handle, dec). While
 * `loading`, one thread is building it outside the context's lock, and
 * callers of the same kernel wait on c->loaded; a failed load leaves the
 * list (a later call tries again).
 */
struct loaded {
	char key[MTA_KEY_MAX];
	char spec[MTA_SPEC_MAX];
	int op;                  /* MTA_OP_FWD; _BWD: the backend's train_load; _DECODE */
	int loading;
	struct mta_kernel *k;    /* forward, backward */
	void *handle;            /* decode: the backend's handle and its decoder */
	struct mta_decoder dec;
	struct loaded *next;
};

/* A pick made once per (problem key, T bucket, B bucket) and kept (see mta_context_pick). */
struct picked {
	char key[MTA_KEY_MAX];
	int op;                  /* MTA_OP_* */
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
	struct mta_device_info self; /* identified with a database, else at the first default */
	int device;                  /* the backend's index of the device */
	struct known *devices; /* the database's devices whose winners apply here */
	size_t ndevices;
	pthread_mutex_t lock;      /* the lists below and last (see the top) */
	pthread_mutex_t db_lock;   /* the database handle and the loads */
	pthread_cond_t loaded;     /* a load ended (under lock) */
	struct loaded *kernels;    /* every op's, loading ones included */
	struct picked *picks;
	/* the last problem's key: formatting one costs more than a small forward */
	struct mta_problem last;
	char last_key[MTA_KEY_MAX];
	/* mta_attention: the float32 o lent to kernels that write no 16-bit o */
	pthread_mutex_t ws_lock;
	float *ws;
	size_t ws_cap;         /* floats */
	struct mta_stats stats; /* counted with atomics (count()) */
};

/* One more of a counter of mta_context_stats. */
static void count(uint64_t *counter)
{
	__atomic_fetch_add(counter, 1, __ATOMIC_RELAXED);
}

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

/*
 * How close device d of the database is to this one: a MTA_RUNG_*, or -1
 * (not at all). Devices are recorded by the kernels they run
 * (mta_device_info_db): the emulator's as cuda of arch "emu".
 */
static int rung_of(const struct mta_device_info *self, const struct mta_db_device *d)
{
	struct mta_db_device me;
	mta_device_info_db(self, &me);
	if (strcmp(me.backend, d->backend) || strcmp(self->arch, d->arch))
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
	pthread_mutex_init(&c->db_lock, NULL);
	pthread_cond_init(&c->loaded, NULL);
	pthread_mutex_init(&c->ws_lock, NULL);
	c->device = device;
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
		if (l->op == MTA_OP_DECODE)
			c->be->decode_unload(l->handle);
		else
			c->be->unload(l->k);
		free(l);
	}
	for (struct picked *k = c->picks, *nx; k; k = nx) {
		nx = k->next;
		free(k);
	}
	if (c->be)
		c->be->close(c->dev);
	free(c->devices);
	mta_db_close(c->db);
	free(c->ws);
	pthread_mutex_destroy(&c->ws_lock);
	pthread_cond_destroy(&c->loaded);
	pthread_mutex_destroy(&c->db_lock);
	pthread_mutex_destroy(&c->lock);
	free(c);
}

/* The winners of a problem that apply here, gathered for the pick policy. */
struct cands {
	mta_context *c;
	const char *op;          /* the winners' operation */
	struct mta_pick_cand *cand;
	struct mta_pick *info;   /* spec and evidence of each */
	size_t n, cap;
};

static int add_winner(void *ctx, const struct mta_db_winner *w)
{
	struct cands *x = ctx;
	size_t i;
	if (strcmp(w->op, x->op))
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

/* The pick of op for (p, B, T), asking the database (see mta_context_pick_op). */
static int pick_now(mta_context *c, const struct mta_problem *p, const char *key, int op,
		    int64_t B, int64_t T, struct mta_pick *out)
{
	struct cands x = { c, mta_op_name(op), NULL, NULL, 0, 0 };
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
		/*
		 * An operation without a space of its own (none today: every backend
		 * that has a backward or decode kernel has its space) runs with the
		 * forward's default variant, whose defines it reads.
		 */
		/* the forward's: this architecture's (a v3 cluster on sm_90
		 * where the portable default is scalar v1); a device that cannot
		 * say its architecture gets the portable one (under db_lock) */
		if (op == MTA_OP_FWD && !c->self.arch[0] && c->be->identify(c->device, &c->self))
			memset(&c->self, 0, sizeof c->self);
		rc = op == MTA_OP_FWD ? mta_variant_default_arch(p, c->be->variants,
								  c->self.arch[0] ? c->self.arch
										  : NULL, &v)
				      : mta_variant_default_op(p, c->be->variants, op, &v);
		if (rc == MTA_EUNSUPPORTED && op != MTA_OP_FWD)
			rc = mta_variant_default(p, c->be->variants, &v);
		if (rc || (rc = mta_variant_format(&v, out->spec, sizeof out->spec)))
			goto out;
	}
	out->source = source;
	out->rung = rung;
out:
	free(x.cand);
	free(x.info);
	return rc;
}

/* The kept pick of (key, op, buckets), or NULL; under c->lock. */
static struct picked *find_pick(mta_context *c, const char *key, int op, int64_t tb, int64_t bb)
{
	struct picked *k = c->picks;
	while (k && (k->t_bucket != tb || k->b_bucket != bb || k->op != op || strcmp(k->key, key)))
		k = k->next;
	return k;
}

/*
 * The pick of op (MTA_OP_*), made once per (problem, op, buckets) and kept
 * (a kept pick never changes, so it is read outside the lock). A first
 * pick queries the database under db_lock; a second caller of the same
 * pick waits there and then finds it made.
 */
static int pick_op(mta_context *c, const struct mta_problem *p, int op, int64_t B, int64_t T,
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
	k = find_pick(c, key, op, tb, bb);
	pthread_mutex_unlock(&c->lock);
	if (k) {
		*out = k->pick;
		return mta_done(MTA_OK);
	}
	pthread_mutex_lock(&c->db_lock);
	pthread_mutex_lock(&c->lock);
	k = find_pick(c, key, op, tb, bb);
	pthread_mutex_unlock(&c->lock);
	if (!k) {
		if (!(k = calloc(1, sizeof *k))) {
			rc = mta_fail(MTA_ENOMEM, "out of memory");
			goto out;
		}
		count(&c->stats.host_allocs);
		if ((rc = pick_now(c, p, key, op, B, T, &k->pick))) {
			free(k);
			goto out;
		}
		strcpy(k->key, key);
		k->op = op;
		k->t_bucket = tb;
		k->b_bucket = bb;
		pthread_mutex_lock(&c->lock);
		k->next = c->picks;
		c->picks = k;
		pthread_mutex_unlock(&c->lock);
	}
	*out = k->pick;
out:
	pthread_mutex_unlock(&c->db_lock);
	return mta_done(rc);
}

int mta_context_pick(mta_context *c, const struct mta_problem *p, int64_t B, int64_t T,
		     struct mta_pick *out)
{
	return pick_op(c, p, MTA_OP_FWD, B, T, out);
}

int mta_context_pick_op(mta_context *c, const struct mta_problem *p, const char *op, int64_t B,
			int64_t T, struct mta_pick *out)
{
	int o, rc;
	if ((rc = mta_op_parse(op, &o)))
		return mta_wrap(rc, "mta_context_pick_op");
	return pick_op(c, p, o, B, T, out);
}

static int ctx_forward(void *ctx, const struct mta_problem *p, const struct mta_tensor *q,
		       const struct mta_tensor *k, const struct mta_tensor *v,
		       const struct mta_weights *w, struct mta_tensor *o);
static int ctx_select(void *ctx, const struct mta_problem *p, int64_t B, int64_t T,
		      struct mta_decoder *out);

/*
 * The context's kernel of op (MTA_OP_*) for (key, spec), loaded on first
 * use: *out, or NULL and the load's error. The spec is parsed and held to
 * the rules of the kernel op loads (for the forward every rule; for the
 * others those of what their kernel reads, mta_variant_check_kernel) before
 * anything is recorded. The load itself runs under db_lock alone (see the
 * top): other threads' calls of loaded kernels do not wait for it, and a
 * caller of this same kernel waits on c->loaded for it.
 */
static int kernel_load(mta_context *c, const struct mta_problem *p, const char *key,
		       const char *spec, int op, struct loaded **out)
{
	struct mta_variant v;
	struct loaded *l, **at;
	int rc;

	*out = NULL;
	pthread_mutex_lock(&c->lock);
	for (;;) {
		for (l = c->kernels; l; l = l->next)
			if (l->op == op && !strcmp(l->key, key) && !strcmp(l->spec, spec))
				break;
		if (!l || !l->loading)
			break;
		pthread_cond_wait(&c->loaded, &c->lock);
	}
	if (l) {
		pthread_mutex_unlock(&c->lock);
		*out = l;
		return MTA_OK;
	}
	if ((rc = mta_variant_parse(spec, &v)) ||
	    (rc = op == MTA_OP_FWD ? mta_variant_check(p, &v) : mta_variant_check_kernel(p, &v, op)))
		goto unlock;
	if (!(l = calloc(1, sizeof *l))) {
		rc = mta_fail(MTA_ENOMEM, "out of memory");
		goto unlock;
	}
	count(&c->stats.host_allocs);
	snprintf(l->key, sizeof l->key, "%s", key);
	snprintf(l->spec, sizeof l->spec, "%s", spec);
	l->op = op;
	l->loading = 1;
	l->next = c->kernels;
	c->kernels = l;
	pthread_mutex_unlock(&c->lock);

	pthread_mutex_lock(&c->db_lock);
	if (op == MTA_OP_FWD)
		rc = c->be->load(c->dev, c->db, p, &v, NULL, 0, &l->k);
	else if (op == MTA_OP_BWD)
		rc = c->be->train_load(c->dev, p, &v, &l->k);
	else
		rc = c->be->decode_load(c->dev, p, &v, &l->handle, &l->dec);
	pthread_mutex_unlock(&c->db_lock);

	pthread_mutex_lock(&c->lock);
	if (rc) {
		for (at = &c->kernels; *at != l; at = &(*at)->next)
			;
		*at = l->next;
		free(l);
		l = NULL;
	} else {
		count(&c->stats.kernel_loads);
		if (op == MTA_OP_DECODE) {
			l->dec.ctx = c;
			l->dec.forward = ctx_forward;
			l->dec.select = ctx_select;
			l->dec.spec = l->spec;
		}
		l->loading = 0;
	}
	pthread_cond_broadcast(&c->loaded);
	*out = l;
unlock:
	pthread_mutex_unlock(&c->lock);
	return rc;
}

/* ---- mta_attention: device tensors, streams, weights handles ------------- */

struct mta_wts {
	mta_context *c;
	struct mta_problem p;
	struct mta_weights w; /* what the kernels read: pointers in their memory */
	void *block;          /* device memory the handle owns (uploaded weights), or NULL */
	float gate_b;         /* the value, for kernels that read host memory */
};

void mta_weights_free(mta_wts *h)
{
	if (!h)
		return;
	if (h->block)
		h->c->be->mem_free(h->c->dev, h->block);
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
	if (!(h = calloc(1, sizeof *h)))
		return mta_fail(MTA_ENOMEM, "out of memory");
	count(&c->stats.host_allocs);
	h->c = c;
	h->p = *p;
	h->w = w ? *w : none;
	h->gate_b = h->w.gate_b;
	n = mta_weight_parts(p, &h->w, part);
	/* host weights a device that reads no host memory cannot use: upload them */
	int upload = memory == MTA_MEM_HOST && !c->be->host_ok;
	int own_gate_b = p->gate && !h->w.gate_b_ptr;
	if (!upload) {
		for (int i = 0; i < n; i++)
			if ((rc = c->be->mem_check(c->dev, part[i].name, *part[i].ptr,
						   part[i].n * sizeof(float), memory)))
				goto out;
		if (p->gate && h->w.gate_b_ptr &&
		    (rc = c->be->mem_check(c->dev, "weight gate_b", h->w.gate_b_ptr, sizeof(float),
					   memory)))
			goto out;
	}
	if (upload || (own_gate_b && !c->be->host_ok)) {
		/* one block: the uploaded weights, then gate_b */
		size_t total = 1, at = 0;
		for (int i = 0; upload && i < n; i++)
			total += part[i].n;
		if ((rc = c->be->mem_alloc(c->dev, total * sizeof(float), &h->block)))
			goto out;
		count(&c->stats.device_allocs);
		float *dst = h->block;
		for (int i = 0; upload && i < n; i++) {
			if ((rc = c->be->mem_copy(c->dev, dst + at, MTA_MEM_DEVICE, *part[i].ptr,
						  MTA_MEM_HOST, part[i].n * sizeof(float), NULL)))
				goto out;
			*part[i].ptr = dst + at;
			at += part[i].n;
		}
		if (p->gate) {
			/* the handle's own copy of the value is host memory, whatever w's */
			const float *src = own_gate_b ? &h->gate_b : h->w.gate_b_ptr;
			if ((rc = c->be->mem_copy(c->dev, dst + at, MTA_MEM_DEVICE, src,
						  own_gate_b ? MTA_MEM_HOST : memory, sizeof(float),
						  NULL)))
				goto out;
			h->w.gate_b_ptr = dst + at;
		}
		/* the copies read the caller's memory: done before the handle is used */
		count(&c->stats.syncs);
		if ((rc = c->be->sync(c->dev, NULL)))
			goto out;
	} else if (own_gate_b) {
		h->w.gate_b_ptr = &h->gate_b;
	}
	if (h->p.head_post == MTA_HPOST_LINEAR)
		h->w.head_post = NULL;
	*out = h;
	h = NULL;
out:
	mta_weights_free(h);
	return mta_done(rc);
}

/* The float32 workspace, at least n floats; the caller holds ws_lock. */
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

/* The checks of mta_attention's arguments that need no kernel. */
static int check_call(mta_context *c, const struct mta_problem *p, const mta_wts *w,
		      const struct mta_tensor *q, const struct mta_tensor *k,
		      const struct mta_tensor *v, struct mta_tensor *o, float scale,
		      int64_t *B, int64_t *T)
{
	const struct mta_tensor *all[4] = { q, k, v, o };
	static const char *names[4] = { "tensor q", "tensor k", "tensor v", "tensor o" };
	int rc;

	if ((rc = mta_attention_check(p, q, k, v, o, scale, B, T)))
		return rc;
	for (int i = 0; i < 4; i++)
		if ((rc = c->be->mem_check(c->dev, names[i], all[i]->data,
					   mta_tensor_extent(all[i]), all[i]->memory)))
			return rc;
	if (w && (w->c != c || memcmp(&w->p, p, sizeof *p)))
		return mta_fail(MTA_EINVAL, "the weights handle was loaded for another %s",
				w->c != c ? "context" : "problem");
	if (!w && (rc = mta_check_weights(p, NULL)))
		return mta_wrap(rc, "no weights handle (mta_weights_load)");
	return MTA_OK;
}

/* The kernel of (p, B, T), picked and loaded on first use. */
static int kernel_of(mta_context *c, const struct mta_problem *p, int64_t B, int64_t T,
		     struct loaded **kern)
{
	char key[MTA_KEY_MAX];
	struct mta_pick pick;
	int rc;
	/* a size the backend's kernels refuse, refused before a kernel is picked and built */
	if (c->be->variants == MTA_BACKEND_CUDA && (rc = mta_cuda_size_ok(B, T)))
		return rc;
	if ((rc = key_of(c, p, key)) || (rc = mta_context_pick(c, p, B, T, &pick)) ||
	    (rc = kernel_load(c, p, key, pick.spec, MTA_OP_FWD, kern)))
		return rc;
	return MTA_OK;
}

int mta_attention(mta_context *c, const struct mta_problem *p, const mta_wts *w,
		  const struct mta_tensor *q, const struct mta_tensor *k,
		  const struct mta_tensor *v, struct mta_tensor *o, float scale, void *stream)
{
	static const struct mta_weights none;
	struct loaded *kern = NULL;
	int64_t B, T;
	int rc;

	if (!c)
		return mta_fail(MTA_EINVAL, "mta_attention: no context");
	count(&c->stats.calls);
	if ((rc = check_call(c, p, w, q, k, v, o, scale, &B, &T)) ||
	    (rc = kernel_of(c, p, B, T, &kern)))
		return rc;
	const struct mta_weights *kw = w ? &w->w : &none;
	if (o->dtype == MTA_F32 || c->be->out16)
		return mta_done(c->be->attach(kern->k, p, q, k, v, kw, o, stream));
	/* a host kernel writing float32: into the workspace, then narrowed into o */
	struct mta_tensor o32;
	size_t n = (size_t)B * (size_t)T * (size_t)p->H * (size_t)p->D;
	pthread_mutex_lock(&c->ws_lock);
	if (!(rc = workspace(c, n))) {
		mta_tensor_init(&o32, c->ws, MTA_F32, B, T, p->H, p->D);
		if (!(rc = c->be->attach(kern->k, p, q, k, v, kw, &o32, stream)))
			mta_tensor_narrow(c->ws, o);
	}
	pthread_mutex_unlock(&c->ws_lock);
	return mta_done(rc);
}

int mta_context_reserve(mta_context *c, const struct mta_problem *p, int64_t B, int64_t T)
{
	struct loaded *kern;
	int rc;
	if (!c)
		return mta_fail(MTA_EINVAL, "mta_context_reserve: no context");
	if (B < 1 || T < 1)
		return mta_fail(MTA_EINVAL, "mta_context_reserve: B=%lld, T=%lld; expected both 1 "
				"or more", (long long)B, (long long)T);
	if ((rc = kernel_of(c, p, B, T, &kern)))
		return rc;
	if (!c->be->out16) {
		pthread_mutex_lock(&c->ws_lock);
		rc = workspace(c, (size_t)B * (size_t)T * (size_t)p->H * (size_t)p->D);
		pthread_mutex_unlock(&c->ws_lock);
	}
	return mta_done(rc);
}

int mta_device_alloc(mta_context *c, size_t bytes, void **ptr)
{
	int rc;
	if (!c || !ptr)
		return mta_fail(MTA_EINVAL, "mta_device_alloc: no context or no place for the pointer");
	if ((rc = c->be->mem_alloc(c->dev, bytes, ptr)))
		return rc;
	count(&c->stats.device_allocs);
	return mta_done(MTA_OK);
}

void mta_device_free(mta_context *c, void *ptr)
{
	if (c && ptr)
		c->be->mem_free(c->dev, ptr);
}

int mta_memcpy(mta_context *c, void *dst, int dst_memory, const void *src, int src_memory,
	       size_t bytes, void *stream)
{
	if (!c)
		return mta_fail(MTA_EINVAL, "mta_memcpy: no context");
	if (!bytes)
		return mta_done(MTA_OK);
	if (!dst || !src)
		return mta_fail(MTA_EINVAL, "mta_memcpy: no %s", dst ? "source" : "destination");
	return mta_done(c->be->mem_copy(c->dev, dst, dst_memory, src, src_memory, bytes, stream));
}

int mta_stream_synchronize(mta_context *c, void *stream)
{
	if (!c)
		return mta_fail(MTA_EINVAL, "mta_stream_synchronize: no context");
	count(&c->stats.syncs);
	return mta_done(c->be->sync(c->dev, stream));
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

/* ---- mta_forward: host tensors, built on mta_attention ------------------- */

/*
 * The host-tensor calls read and write their tensors on the host: a tensor
 * marked device memory is refused (its pointer would be dereferenced here),
 * naming it and the call (what) that takes host tensors. NULL entries skip.
 */
static int host_only(const char *what, const struct mta_tensor *q, const struct mta_tensor *k,
		     const struct mta_tensor *v, const struct mta_tensor *o, const char *oname)
{
	const struct mta_tensor *all[4] = { q, k, v, o };
	const char *names[4] = { "q", "k", "v", oname };
	for (int i = 0; i < 4; i++)
		if (all[i] && all[i]->memory != MTA_MEM_HOST)
			return mta_fail(MTA_EINVAL, "%s takes host tensors; tensor %s says device "
					"memory%s", what, names[i], !strcmp(what, "mta_forward") ?
					" (call mta_attention)" : "");
	return MTA_OK;
}

int mta_forward(mta_context *c, const struct mta_problem *p, const struct mta_tensor *q,
		const struct mta_tensor *k, const struct mta_tensor *v,
		const struct mta_weights *w, struct mta_tensor *o)
{
	const struct mta_tensor *all[4] = { q, k, v, o };
	mta_wts *h = NULL;
	int rc;

	if (!c)
		return mta_fail(MTA_EINVAL, "mta_forward: no context");
	if ((rc = mta_check_tensors(p, q, k, v, o, NULL, NULL)) ||
	    (rc = host_only("mta_forward", q, k, v, o, "o")))
		return rc;
	if ((rc = mta_weights_load(c, p, w, MTA_MEM_HOST, &h)))
		return rc;
	if (c->be->memory == MTA_MEM_HOST)
		rc = mta_attention(c, p, h, q, k, v, o, 0, NULL);
	else
		rc = mta_forward_staged(c, p, h, all);
	mta_weights_free(h);
	return mta_done(rc);
}

/* ---- training: the forward that saves, and the backward ---- */

/*
 * The training library for (p, B, T), loaded on first use: the variant is
 * the context's pick for the backward (winners keyed by op "bwd", by the
 * forward's policy; else the default backward variant). Its spec is held
 * to the rules of what the backward's kernel reads only
 * (mta_variant_check_kernel): a recorded winner stays usable when the
 * default's other tunables change.
 */
static int train_kernel(mta_context *c, const struct mta_problem *p, int64_t B, int64_t T,
			const char *what, struct loaded **out)
{
	char key[MTA_KEY_MAX];
	struct mta_pick pick;
	int rc;

	if (!c)
		return mta_fail(MTA_EINVAL, "%s: no context", what);
	if (!c->be->train_load)
		return mta_fail(MTA_EUNSUPPORTED, "%s: the %s backend has no backward yet (cpu has)",
				what, c->be->name);
	if ((rc = key_of(c, p, key)) || (rc = pick_op(c, p, MTA_OP_BWD, B, T, &pick)))
		return rc;
	return kernel_load(c, p, key, pick.spec, MTA_OP_BWD, out);
}

int mta_forward_train(mta_context *c, const struct mta_problem *p, const struct mta_tensor *q,
		      const struct mta_tensor *k, const struct mta_tensor *v,
		      const struct mta_weights *w, struct mta_tensor *o, void *saved)
{
	struct loaded *kern = NULL;
	int64_t B, T;
	int rc;
	if ((rc = mta_check_tensors(p, q, k, v, o, &B, &T)) ||
	    (rc = host_only("mta_forward_train", q, k, v, o, "o")) ||
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
	    (rc = host_only("mta_backward", q, k, v, dout, "dout")) ||
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
	    (rc = host_only("mta_forward_varlen", q, k, v, o, "o")) ||
	    (rc = key_of(c, p, key)) ||
	    (rc = mta_context_pick(c, p, ndocs, tmax > 0 ? tmax : 1, &pick)) ||
	    (rc = kernel_load(c, p, key, pick.spec, MTA_OP_FWD, &kern)))
		return rc;
	return mta_done(mta_backend_forward_varlen(c->be, kern->k, p, q, k, v, w, cu_seqlens,
						   ndocs, o));
}

/*
 * Packed training (mta.h, mta_forward_train_varlen, mta_backward_varlen):
 * core's loop over the documents (varlen.c, mta_varlen_train), each one
 * through this context's whole-sequence training calls.
 */
static int train_doc(void *arg, const struct mta_problem *p, const struct mta_tensor *q,
		     const struct mta_tensor *k, const struct mta_tensor *v,
		     const struct mta_weights *w, struct mta_tensor *o, void *saved,
		     const struct mta_tensor *dout, const struct mta_grads *g)
{
	mta_context *c = arg;
	return o ? mta_forward_train(c, p, q, k, v, w, o, saved)
		 : mta_backward(c, p, q, k, v, w, saved, dout, g);
}

int mta_forward_train_varlen(mta_context *c, const struct mta_problem *p,
			     const struct mta_tensor *q, const struct mta_tensor *k,
			     const struct mta_tensor *v, const struct mta_weights *w,
			     const int64_t *cu_seqlens, int64_t ndocs, struct mta_tensor *o,
			     void *saved)
{
	int rc;
	if (!c)
		return mta_fail(MTA_EINVAL, "mta_forward_train_varlen: no context");
	if ((rc = host_only("mta_forward_train_varlen", q, k, v, o, "o")))
		return rc;
	return mta_done(mta_varlen_train(p, q, k, v, w, o, saved, NULL, NULL, cu_seqlens, ndocs,
					 train_doc, c));
}

int mta_backward_varlen(mta_context *c, const struct mta_problem *p, const struct mta_tensor *q,
			const struct mta_tensor *k, const struct mta_tensor *v,
			const struct mta_weights *w, const void *saved,
			const struct mta_tensor *dout, const int64_t *cu_seqlens, int64_t ndocs,
			const struct mta_grads *g)
{
	int rc;
	if (!c)
		return mta_fail(MTA_EINVAL, "mta_backward_varlen: no context");
	if ((rc = host_only("mta_backward_varlen", q, k, v, dout, "dout")))
		return rc;
	return mta_done(mta_varlen_train(p, q, k, v, w, NULL, (void *)saved, dout, g, cu_seqlens,
					 ndocs, train_doc, c));
}

/* ---- decode (mta.h, mta_cache_create_ctx) ---- */

static int ctx_forward(void *ctx, const struct mta_problem *p, const struct mta_tensor *q,
		       const struct mta_tensor *k, const struct mta_tensor *v,
		       const struct mta_weights *w, struct mta_tensor *o)
{
	return mta_forward(ctx, p, q, k, v, w, o);
}

/* The decoder of the decode winner for (p, B, T) (op "decode", by the forward's policy). */
static int ctx_select(void *ctx, const struct mta_problem *p, int64_t B, int64_t T,
		      struct mta_decoder *out)
{
	mta_context *c = ctx;
	char key[MTA_KEY_MAX];
	struct mta_pick pick;
	int rc;
	struct loaded *l;
	if ((rc = key_of(c, p, key)) || (rc = pick_op(c, p, MTA_OP_DECODE, B, T, &pick)) ||
	    (rc = kernel_load(c, p, key, pick.spec, MTA_OP_DECODE, &l)))
		return rc;
	*out = l->dec;
	return MTA_OK;
}

int mta_cache_create_ctx(mta_context *c, const struct mta_problem *p, int64_t batch,
			 mta_cache **out)
{
	struct mta_decoder dec;
	int rc;
	if (!c || !out)
		return mta_fail(MTA_EINVAL, "mta_cache_create_ctx: no context or no place for the "
				"cache");
	*out = NULL;
	if ((rc = mta_problem_validate(p)))
		return rc;
	if (!c->be->decode_load)
		return mta_cache_create(p, batch, out);
	/* the winner for short rows; the cache asks again as it grows (decode.c, reselect) */
	if ((rc = ctx_select(c, p, batch, 1, &dec)))
		return rc;
	return mta_done(mta_cache_create_kernel(p, batch, &dec, out));
}
