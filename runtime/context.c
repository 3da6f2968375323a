/*
 * context.c: pick the recorded winner for a problem and launch it (mta.h).
 *
 * A context is a backend (runtime/backend.h), one of its devices, and the
 * database it reads winners from. The lookup is the pick policy of
 * runtime/core/pick.h: the winner of the exact (device, problem, T bucket),
 * then the device's nearest bucket for the problem, then the backend's
 * default variant, which is always valid. Loaded kernels stay in the
 * context keyed by (problem key, spec), so a serving loop pays the
 * compile-and-load cost once; each (problem, T bucket) is picked once.
 *
 * The device's identity (for CUDA: name, arch, driver, NVRTC) selects its
 * row in the database; CUDA kernels load their cubins from the database's
 * binaries, compiled with NVRTC only when none is stored (the database is
 * read-only here, so such a cubin lives in the context only). mta_forward
 * takes and returns host tensors.
 */
#include "runtime/mta.h"
#include "runtime/backend.h"
#include "runtime/core/error.h"
#include "runtime/core/pick.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

struct loaded {
	char key[MTA_KEY_MAX];
	char spec[MTA_SPEC_MAX];
	struct mta_kernel *k;
	struct loaded *next;
};

/* A pick made once per (problem key, T bucket) and kept (see mta_context_pick). */
struct picked {
	char key[MTA_KEY_MAX];
	int64_t bucket;
	char spec[MTA_SPEC_MAX];
	int source;
	struct picked *next;
};

struct mta_context {
	const struct mta_backend *be;
	struct mta_device *dev;
	struct mta_db *db;   /* NULL: no database, defaults only */
	int64_t device_id;   /* 0: device never tuned */
	pthread_mutex_t lock;
	struct loaded *kernels;
	struct picked *picks;
	/* the last problem's key: formatting one costs more than a small forward */
	struct mta_problem last;
	char last_key[MTA_KEY_MAX];
};

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

/* The database's row of this device, if the database knows it. */
static int find_device(mta_context *c, int device)
{
	struct mta_device_info info;
	struct mta_db_device d;
	int rc = c->be->identify(device, &info);
	if (rc)
		return rc;
	mta_device_info_db(&info, &d);
	if (mta_db_device_find(c->db, &d, &c->device_id) != MTA_OK)
		c->device_id = 0;
	return MTA_OK;
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
	    ((rc = mta_db_open(db_path, MTA_DB_READONLY, &c->db)) || (rc = find_device(c, device))))
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
	if (c->be)
		c->be->close(c->dev);
	mta_db_close(c->db);
	pthread_mutex_destroy(&c->lock);
	free(c);
}

/*
 * The first pick for a (problem, T bucket) queries the database; later ones
 * reuse it, so a serving loop's mta_forward runs no SQL. A context therefore
 * sees each winner as it was when first picked.
 */
int mta_context_pick(mta_context *c, const struct mta_problem *p, int64_t T, char *spec,
		     size_t n, int *source)
{
	char key[MTA_KEY_MAX];
	struct mta_variant v;
	struct picked *k;
	int64_t bucket = mta_t_bucket(T);
	int rc;

	if (!c)
		return mta_fail(MTA_EINVAL, "mta_context_pick: no context");
	if ((rc = key_of(c, p, key)))
		return rc;
	pthread_mutex_lock(&c->lock);
	for (k = c->picks; k; k = k->next)
		if (k->bucket == bucket && !strcmp(k->key, key))
			break;
	if (!k) {
		if (!(k = calloc(1, sizeof *k))) {
			rc = mta_fail(MTA_ENOMEM, "out of memory");
			goto out;
		}
		struct mta_db_winner w;
		rc = c->db && c->device_id ? mta_db_winner_get(c->db, c->device_id, key, T, &w)
					   : MTA_ENOTFOUND;
		if (rc == MTA_OK) {
			k->source = w.exact ? MTA_PICK_EXACT : MTA_PICK_NEAREST;
			snprintf(k->spec, sizeof k->spec, "%s", w.spec);
		} else if (rc == MTA_ENOTFOUND) {
			k->source = MTA_PICK_DEFAULT;
			rc = mta_variant_default(p, c->be->variants, &v);
			if (!rc)
				rc = mta_variant_format(&v, k->spec, sizeof k->spec);
		}
		if (rc) {
			free(k);
			goto out;
		}
		strcpy(k->key, key);
		k->bucket = bucket;
		k->next = c->picks;
		c->picks = k;
	}
	if (strlen(k->spec) + 1 > n) {
		rc = mta_fail(MTA_EINVAL, "spec buffer of %zu bytes is too small for %s", n, k->spec);
		goto out;
	}
	strcpy(spec, k->spec);
	*source = k->source;
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
		if (!strcmp(l->key, key) && !strcmp(l->spec, spec))
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
	char key[MTA_KEY_MAX], spec[MTA_SPEC_MAX];
	struct loaded *kern = NULL;
	int64_t B, T;
	int rc, source;

	if (!c)
		return mta_fail(MTA_EINVAL, "mta_forward: no context");
	if ((rc = mta_check_tensors(p, q, k, v, o, &B, &T)) || (rc = key_of(c, p, key)) ||
	    (rc = mta_context_pick(c, p, T, spec, sizeof spec, &source)) ||
	    (rc = kernel_for(c, p, key, spec, &kern)))
		return rc;
	return mta_done(c->be->forward(kern->k, p, q, k, v, w, o));
}
