/* tune.c: the tuning loop (see tune.h for the contract). */
#include "tuner/tune/tune_int.h"
#include "runtime/core/error.h"
#include "tuner/measure/isolate.h"
#include "tuner/tune/prep.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

void mta_tune_defaults(struct mta_tune_opts *o)
{
	memset(o, 0, sizeof *o);
	o->backend = "cpu";
	o->T = 1024;
	o->B = 1;
	o->warmup = 1;
	o->reps = 5;
	o->top = 3;
	o->timeout_s = 120;
}

double mta_tune_now(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* The tuner's own seeded shuffle, so a random run is reproducible by seed. */
static void shuffle(struct mta_variant *a, size_t n, unsigned long long seed)
{
	unsigned long long s = seed | 1;
	for (size_t i = n; i > 1; i--) {
		s ^= s << 13;
		s ^= s >> 7;
		s ^= s << 17;
		size_t j = (size_t)(s % i);
		struct mta_variant t = a[i - 1];
		a[i - 1] = a[j];
		a[j] = t;
	}
}

/* The candidates of this run: the whole space, a sample, or one spec. */
int mta_tune_candidates(const struct mta_problem *p, const struct mta_tune_opts *o,
			struct mta_variant **out, size_t *n)
{
	const struct mta_backend *be;
	struct mta_variant def, *arr = NULL;
	int rc;
	if ((rc = mta_backend_find(o->backend, &be)))
		return rc;
	if (o->only_spec) {
		if (!(arr = malloc(sizeof *arr)))
			return mta_fail(MTA_ENOMEM, "out of memory");
		if ((rc = mta_variant_parse(o->only_spec, arr)) || (rc = mta_variant_check(p, arr))) {
			free(arr);
			return rc;
		}
		if (arr->backend != be->variants) {
			free(arr);
			return mta_fail(MTA_EINVAL, "variant %s is not a %s variant", o->only_spec,
					mta_backend_name(be->variants));
		}
		*out = arr;
		*n = 1;
		return MTA_OK;
	}
	if ((rc = mta_variant_space(p, be->variants, &arr, n)) ||
	    (rc = mta_variant_default(p, be->variants, &def))) {
		free(arr);
		return rc;
	}
	if (o->strategy == MTA_TUNE_RANDOM && o->budget > 0 && (size_t)o->budget < *n) {
		shuffle(arr, *n, o->seed ? o->seed : (unsigned long long)time(NULL));
		*n = (size_t)o->budget;
		int has_def = 0;
		for (size_t i = 0; i < *n; i++)
			has_def |= !memcmp(&arr[i], &def, sizeof def);
		if (!has_def)
			arr[0] = def; /* the default is always measured: speed-ups are quoted against it */
	}
	*out = arr;
	return MTA_OK;
}

void mta_check_size(const struct mta_tune_opts *o, int64_t *B, int64_t *T)
{
	*T = o->verify_T ? o->verify_T : (o->T < 293 ? o->T : 293);
	*B = o->B < 2 ? o->B : 2;
}

struct probe {
	const struct mta_backend *be;
	int index;
};

static int probe_fn(void *ctx, void *out, size_t n)
{
	const struct probe *pr = ctx;
	return pr->be->identify(pr->index, out);
}

int mta_tune_identify(const char *backend, int index, double timeout_s,
		      struct mta_device_info *info)
{
	struct probe pr;
	int to = 0, rc;
	memset(info, 0, sizeof *info);
	if ((rc = mta_backend_find_timed(backend, &pr.be)))
		return rc;
	pr.index = index;
	rc = mta_isolate(probe_fn, &pr, info, sizeof *info, timeout_s < 60 ? timeout_s : 60, NULL,
			 &to);
	if (rc && to)
		return mta_wrap(MTA_ENODEV, "probing %s device %d", backend, index);
	return rc;
}

int mta_tune_env_failure(int rc)
{
	return rc == MTA_ENOMEM || rc == MTA_EIO || rc == MTA_ENODEV;
}

int mta_tune_status_of(int rc, int timed_out)
{
	switch (rc) {
	case MTA_OK: return MTA_RESULT_OK;
	case MTA_EVERIFY: return MTA_RESULT_VERIFY_FAILED;
	case MTA_ECOMPILE: return MTA_RESULT_COMPILE_FAILED;
	case MTA_EKERNEL: return timed_out ? MTA_RESULT_TIMEOUT : MTA_RESULT_CRASHED;
	default: return mta_tune_env_failure(rc) ? MTA_RESULT_ENV_ERROR : MTA_RESULT_ERROR;
	}
}

/* Count a variant the machine failed, keeping the first reason. */
static void note_env(struct ctx *c, int rc, const char *why)
{
	if (!c->env_failed++) {
		c->env_status = rc;
		snprintf(c->first_eerr, sizeof c->first_eerr, "%s", why);
	}
}

static void report(struct ctx *c, int done, int total, const char *spec, const char *status,
		   double ms, const char *phase)
{
	if (!c->o->progress)
		return;
	struct mta_tune_event e = { done, total, spec, status, ms,
				    c->best[0] ? c->best : NULL, c->best_ms, phase };
	c->o->progress(c->o->progress_ctx, &e);
}

/* Remember spec as the best so far when ms beats it. */
static void note_best(struct ctx *c, const char *spec, double ms)
{
	if (isfinite(ms) && (!c->best[0] || ms < c->best_ms)) {
		snprintf(c->best, sizeof c->best, "%s", spec);
		c->best_ms = ms;
	}
}

/*
 * MTA_EINTR (message: i of the n variants done) once o->stop is raised,
 * else MTA_OK. The loops call it before each variant and once more with
 * i == n, so that a stop also comes before the re-timing.
 */
static int stopped(struct ctx *c, size_t i, size_t n)
{
	char key[MTA_KEY_MAX];
	if (!c->o->stop || !*c->o->stop)
		return MTA_OK;
	if (mta_problem_key(c->p, key, sizeof key))
		snprintf(key, sizeof key, "the problem");
	return mta_fail(MTA_EINTR, "stopped after %zu of %zu variants of %s at T=%lld, B=%lld", i,
			n, key, (long long)c->o->T, (long long)c->o->B);
}

int mta_tune_put_result(struct mta_db *db, int64_t dev, int64_t vid, int64_t T, int64_t B,
			const char *run_id, int status, const struct mta_measure *m,
			const char *err, double started)
{
	struct mta_db_result r = { 0 };
	r.device_id = dev;
	r.variant_id = vid;
	r.T = T;
	r.B = B;
	r.status = status;
	r.median_ms = m ? m->median_ms : NAN;
	r.p20_ms = m ? m->p20_ms : NAN;
	r.p80_ms = m ? m->p80_ms : NAN;
	r.min_ms = m ? m->min_ms : NAN;
	r.runs = m ? m->runs : 0;
	r.rel_err = m ? m->rel_err : NAN;
	r.error = err ? err : "";
	r.run_id = run_id;
	r.started_at = started;
	return mta_db_result_put(db, &r);
}

static int record(struct ctx *c, int64_t vid, int status, const struct mta_measure *m,
		  const char *err, double started)
{
	return mta_tune_put_result(c->db, c->dev_id, vid, c->o->T, c->o->B, c->s->run_id, status,
				   m, err, started);
}

/* Check and time v (binary: its stored or built binary, or NULL) in a child. */
static int measure(struct ctx *c, const struct mta_variant *v, const void *binary, size_t n,
		   struct mta_measure *m, int *timed_out)
{
	const struct mta_tune_opts *o = c->o;
	struct mta_measure_job j = { c->be, o->device_index, o->threads, c->p, v, binary, n,
				     0, 0, o->T, o->B,
				     o->seed ? o->seed
					     : (unsigned long long)time(NULL) ^ (unsigned long long)clock(),
				     1, o->warmup, o->reps, o->timeout_s, o->stop };
	mta_check_size(o, &j.check_B, &j.check_T);
	return mta_measure(&j, m, timed_out);
}

int mta_tune_loop(struct ctx *c, const struct mta_variant *vs, size_t n)
{
	struct mta_prep pp = { c->db, c->be, &c->dev, c->dev_id, c->prob, c->o->T, c->o->B,
			       c->s->run_id, c->o->threads };
	struct mta_cand *cs = NULL;
	int rc = mta_prepare(&pp, c->p, vs, n, &cs);
	if (rc)
		return rc;
	for (size_t i = 0; i < n; i++) {
		if (cs[i].state == MTA_PREP_RECORDED && cs[i].status == MTA_RESULT_COMPILE_FAILED &&
		    !c->compile_failed++)
			snprintf(c->first_cerr, sizeof c->first_cerr, "%s", cs[i].reason);
		if (cs[i].state == MTA_PREP_RECORDED && cs[i].status == MTA_RESULT_ENV_ERROR)
			note_env(c, cs[i].build_rc, cs[i].reason);
	}
	for (size_t i = 0; !rc && !(rc = stopped(c, i, n)) && i < n; i++) {
		struct mta_cand *k = &cs[i];
		struct mta_measure m;
		int to = 0, done = (int)i + 1;
		double started = mta_tune_now();
		if (k->state == MTA_PREP_SKIPPED) {
			c->s->skipped++;
			if (k->status == MTA_RESULT_OK)
				note_best(c, k->spec, k->old_ms);
			report(c, done, (int)n, k->spec, "skipped", k->old_ms, "tune");
			continue;
		}
		c->s->tried++;
		if (k->state == MTA_PREP_RECORDED) {
			c->s->failed++;
			report(c, done, (int)n, k->spec, mta_result_status_name(k->status), NAN, "tune");
			continue;
		}
		int mrc = measure(c, &k->v, k->binary, k->binary_size, &m, &to);
		if (mrc == MTA_EINTR) { /* stopped while it ran: not recorded, measured next time */
			rc = stopped(c, i, n) ? MTA_EINTR : mrc;
			break;
		}
		int st = mta_tune_status_of(mrc, to);
		if (st == MTA_RESULT_OK) {
			c->s->ok++;
			note_best(c, k->spec, m.median_ms);
		} else {
			c->s->failed++;
		}
		if (st == MTA_RESULT_ENV_ERROR)
			note_env(c, mrc, mta_last_error());
		report(c, done, (int)n, k->spec, mta_result_status_name(st), st ? NAN : m.median_ms,
		       "tune");
		rc = record(c, k->vid, st, st == MTA_RESULT_OK || st == MTA_RESULT_VERIFY_FAILED ?
			    &m : NULL, st ? mta_last_error() : "", started);
	}
	mta_cands_free(cs, n);
	return rc;
}

struct okrow {
	int64_t vid;
	char spec[MTA_SPEC_MAX];
	double ms;
};
struct oklist {
	struct ctx *c;
	struct okrow *rows;
	size_t n, cap;
};

static int collect(void *ctx, const struct mta_db_result *r)
{
	struct oklist *l = ctx;
	if (r->status != MTA_RESULT_OK || r->T != l->c->o->T || r->B != l->c->o->B ||
	    r->device_id != l->c->dev_id)
		return 0;
	if (l->n == l->cap) {
		size_t cap = l->cap ? l->cap * 2 : 32;
		struct okrow *nr = realloc(l->rows, cap * sizeof *nr);
		if (!nr)
			return mta_fail(MTA_ENOMEM, "out of memory");
		l->rows = nr;
		l->cap = cap;
	}
	struct okrow *row = &l->rows[l->n++];
	row->vid = r->variant_id;
	snprintf(row->spec, sizeof row->spec, "%s", r->spec);
	row->ms = r->median_ms;
	return 0;
}

static int by_ms(const void *a, const void *b)
{
	const struct okrow *x = a, *y = b;
	return x->ms < y->ms ? -1 : x->ms > y->ms ? 1 : strcmp(x->spec, y->spec);
}

/* v's stored binary when the backend keeps them (else NULL: the child builds, cached). */
static int stored_binary(struct ctx *c, const struct mta_variant *v, void **bin, size_t *n)
{
	struct mta_db_variant row;
	struct mta_db_binary_key key;
	char compiler[32];
	int64_t vid;
	*bin = NULL;
	*n = 0;
	if (!c->be->binary_key)
		return MTA_OK;
	char spec[MTA_SPEC_MAX];
	int rc;
	if ((rc = mta_variant_format(v, spec, sizeof spec)) ||
	    (rc = mta_db_variant_upsert(c->db, c->prob, spec, NULL, &vid)) ||
	    (rc = mta_db_variant_get(c->db, vid, &row)))
		return rc;
	c->be->binary_key(&c->dev, row.source_hash, compiler, &key);
	if (mta_db_binary_get(c->db, &key, bin, n) != MTA_OK) {
		free(*bin);
		*bin = NULL;
		*n = 0;
	}
	return MTA_OK;
}

/* Re-time the best few side by side and name the winner of T's bucket. */
static int retime(struct ctx *c, const char *key)
{
	struct oklist l = { c, NULL, 0, 0 };
	int rc = mta_db_list_results(c->db, c->dev_id, key, collect, &l);
	if (rc)
		goto out;
	if (!l.n) {
		rc = mta_fail(MTA_EVERIFY, "no variant of %s passed the reference check and ran at "
			      "T=%lld, B=%lld", key, (long long)c->o->T, (long long)c->o->B);
		goto out;
	}
	qsort(l.rows, l.n, sizeof *l.rows, by_ms);
	size_t top = (size_t)(c->o->top > 0 ? c->o->top : 1);
	if (top > l.n)
		top = l.n;
	/* The default variant is re-timed beside the best, so the speed-up quoted
	 * against it comes from measurements taken side by side in one phase. */
	for (size_t i = top; i < l.n; i++)
		if (!strcmp(l.rows[i].spec, c->s->default_spec)) {
			struct okrow t = l.rows[top];
			l.rows[top++] = l.rows[i];
			l.rows[i] = t;
			break;
		}
	c->best[0] = 0;
	int64_t win = 0;
	for (size_t i = 0; i < top; i++) {
		struct mta_variant v;
		struct mta_measure m;
		void *bin = NULL;
		size_t bn = 0;
		int to = 0;
		double started = mta_tune_now();
		if ((rc = mta_variant_parse(l.rows[i].spec, &v)) ||
		    (rc = stored_binary(c, &v, &bin, &bn)))
			goto out;
		int mrc = measure(c, &v, bin, bn, &m, &to);
		free(bin);
		if (mrc == MTA_EINTR) { /* stopped: no winner named from half a re-timing */
			rc = stopped(c, top, top) ? MTA_EINTR : mrc;
			goto out;
		}
		if (mta_tune_env_failure(mrc)) { /* the machine failed: its ok result stays */
			rc = mta_wrap(mrc, "re-timing %s (the machine failed, not the kernel; rerun "
				      "to name the winner)", l.rows[i].spec);
			goto out;
		}
		int st = mta_tune_status_of(mrc, to);
		if ((rc = record(c, l.rows[i].vid, st, st == MTA_RESULT_OK ? &m : NULL,
				 st ? mta_last_error() : "", started)))
			goto out;
		report(c, (int)i + 1, (int)top, l.rows[i].spec, mta_result_status_name(st),
		       st ? NAN : m.median_ms, "retime");
		if (st == MTA_RESULT_OK && (!win || m.median_ms < c->s->winner_ms)) {
			win = l.rows[i].vid;
			c->s->winner_ms = m.median_ms;
			snprintf(c->s->winner, sizeof c->s->winner, "%s", l.rows[i].spec);
			note_best(c, l.rows[i].spec, m.median_ms);
		}
	}
	if (!win) {
		rc = mta_fail(MTA_EKERNEL, "every re-timed variant of %s failed on the second run", key);
		goto out;
	}
	struct mta_db_winner w = { 0 };
	w.device_id = c->dev_id;
	w.problem_id = c->prob;
	w.variant_id = win;
	w.T = c->o->T;
	w.B = c->o->B;
	w.time_ms = c->s->winner_ms;
	rc = mta_db_winner_set(c->db, &w);
out:
	free(l.rows);
	return rc;
}

int mta_tune(const struct mta_problem *p, const struct mta_tune_opts *o, struct mta_tune_summary *s)
{
	struct ctx c = { .p = p, .o = o, .s = s, .best_ms = NAN };
	struct mta_variant *vs = NULL, def;
	struct mta_db_device d;
	char key[MTA_KEY_MAX];
	size_t n = 0;
	int rc;

	memset(s, 0, sizeof *s);
	s->winner_ms = s->default_ms = NAN;
	if (o->T < 1 || o->B < 1 || o->reps < 1 || o->warmup < 0 || o->timeout_s <= 0)
		return mta_fail(MTA_EINVAL, "tuning needs T >= 1, B >= 1, reps >= 1, warmup >= 0 and "
				"a positive timeout (got T=%lld, B=%lld, reps=%d, warmup=%d, timeout=%g)",
				(long long)o->T, (long long)o->B, o->reps, o->warmup, o->timeout_s);
	if ((rc = mta_backend_find_timed(o->backend, &c.be)) || (rc = mta_problem_key(p, key, sizeof key)) ||
	    (rc = mta_tune_candidates(p, o, &vs, &n)))
		return rc;
	if ((rc = mta_variant_default(p, c.be->variants, &def)) ||
	    (rc = mta_variant_format(&def, s->default_spec, sizeof s->default_spec)))
		goto out;
	/* The device first (in a child), so that a machine without it fails
	 * before the database is opened or created. */
	if ((rc = mta_tune_identify(o->backend, o->device_index, o->timeout_s, &c.dev)))
		goto out;
	snprintf(s->run_id, sizeof s->run_id, "%lld-%d", (long long)time(NULL), (int)getpid());
	if ((rc = mta_db_open(o->db_path, 0, &c.db)))
		goto out;
	snprintf(s->db_path, sizeof s->db_path, "%s", mta_db_path(c.db));
	mta_device_info_db(&c.dev, &d);
	if ((rc = mta_db_device_upsert(c.db, &d, &c.dev_id)) ||
	    (rc = mta_db_problem_upsert(c.db, key, &c.prob)))
		goto out;
	s->total = (int)n;
	if ((rc = mta_tune_loop(&c, vs, n)))
		goto out;
	/*
	 * The machine failed some variants (recorded env_error): no winner is
	 * named from what is left; a rerun on a sound machine measures them.
	 */
	if (c.env_failed) {
		rc = mta_fail(c.env_status, "%d of the %d variants could not be built or measured "
			      "for a reason of this machine, not of the kernels (recorded as env_error, "
			      "measured again when you rerun); the first: %s", c.env_failed, s->total,
			      c.first_eerr);
		goto out;
	}
	/* nothing compiled: say so, rather than that nothing passed the check */
	if (c.compile_failed && c.compile_failed == s->tried && !s->skipped) {
		rc = mta_fail(MTA_ECOMPILE, "none of the %d variants compiled, so nothing was tuned "
			      "(results recorded as compile_failed); the first failure: %s",
			      c.compile_failed, c.first_cerr);
		goto out;
	}
	if ((rc = retime(&c, key)))
		goto out;
	/* the default's time at this size, for the speed-up in reports */
	int64_t dvid;
	struct mta_db_result dr;
	if (mta_db_variant_upsert(c.db, c.prob, s->default_spec, NULL, &dvid) == MTA_OK &&
	    mta_db_result_get(c.db, c.dev_id, dvid, o->T, o->B, &dr) == MTA_OK &&
	    dr.status == MTA_RESULT_OK)
		s->default_ms = dr.median_ms;
	rc = MTA_OK;
out:
	free(vs);
	mta_db_close(c.db);
	return rc;
}
