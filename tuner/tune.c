/* tune.c: the tuning loop (see tune.h for the contract). */
#include "tune_int.h"
#include "ccompile.h"
#include "cpu.h"
#include "db.h"
#include "device.h"
#include "error.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

void mta_tune_defaults(struct mta_tune_opts *o)
{
	memset(o, 0, sizeof *o);
	o->backend = MTA_BACKEND_CPU;
	o->device_index = mta_cuda_default_index();
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
	struct mta_variant def, *arr = NULL;
	int rc;
	if (o->only_spec) {
		if (!(arr = malloc(sizeof *arr)))
			return mta_fail(MTA_ENOMEM, "out of memory");
		if ((rc = mta_variant_parse(o->only_spec, arr)) || (rc = mta_variant_check(p, arr))) {
			free(arr);
			return rc;
		}
		*out = arr;
		*n = 1;
		return MTA_OK;
	}
	if ((rc = mta_variant_space(p, o->backend, &arr, n)) ||
	    (rc = mta_variant_default(p, o->backend, &def))) {
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

int mta_tune_status_of(int rc, int timed_out)
{
	switch (rc) {
	case MTA_OK: return MTA_RESULT_OK;
	case MTA_EVERIFY: return MTA_RESULT_VERIFY_FAILED;
	case MTA_ECOMPILE: return MTA_RESULT_COMPILE_FAILED;
	case MTA_EKERNEL: return timed_out ? MTA_RESULT_TIMEOUT : MTA_RESULT_CRASHED;
	default: return MTA_RESULT_ERROR;
	}
}

void mta_tune_report(struct ctx *c, int done, int total, const char *spec, const char *status,
		   double ms, const char *phase)
{
	if (!c->o->progress)
		return;
	struct mta_tune_event e = { done, total, spec, status, ms,
				    c->best[0] ? c->best : NULL, c->best_ms, phase };
	c->o->progress(c->o->progress_ctx, &e);
}

void mta_tune_note_best(struct ctx *c, const char *spec, double ms)
{
	if (isfinite(ms) && (!c->best[0] || ms < c->best_ms)) {
		snprintf(c->best, sizeof c->best, "%s", spec);
		c->best_ms = ms;
	}
}

int mta_tune_stopped(struct ctx *c, size_t i, size_t n)
{
	char key[MTA_KEY_MAX];
	if (!c->o->stop || !*c->o->stop)
		return MTA_OK;
	if (mta_problem_key(c->p, key, sizeof key))
		snprintf(key, sizeof key, "the problem");
	return mta_fail(MTA_EINTR, "stopped after %zu of %zu variants of %s at T=%lld, B=%lld", i,
			n, key, (long long)c->o->T, (long long)c->o->B);
}

/* Compile in the parent (the cache makes the child's load a hit) and record it. */
static int compile(struct ctx *c, const struct mta_variant *v, int64_t vid)
{
	struct mta_cpu_kernel *k = NULL;
	char *log = NULL;
	double t0 = mta_tune_now();
	int rc = mta_cpu_load_log(c->p, v, &k, &log);
	struct mta_db_compile info = { rc ? MTA_COMPILE_FAILED : MTA_COMPILE_OK, "", -1, -1, -1, -1, -1,
				       1e3 * (mta_tune_now() - t0), log ? log : "" };
	struct mta_db_device d;
	mta_device_cpu(&d);
	info.target = d.arch;
	char msg[1024];
	snprintf(msg, sizeof msg, "%s", mta_last_error());
	int wrc = mta_db_variant_set_compile(c->db, vid, &info);
	mta_cpu_free(k);
	free(log);
	if (wrc)
		return wrc;
	if (rc)
		mta_fail(rc, "%s", msg);
	return rc;
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

int mta_tune_record(struct ctx *c, int64_t vid, int status, const struct mta_measure *m,
		    const char *err, double started)
{
	return mta_tune_put_result(c->db, c->dev, vid, c->o->T, c->o->B, c->s->run_id, status, m,
				   err, started);
}

/* Try one candidate unless already recorded; any failure of the candidate is a record. */
static int try_one(struct ctx *c, const struct mta_variant *v, int done, int total)
{
	char spec[MTA_SPEC_MAX], hash[17];
	char *src = NULL;
	int64_t vid;
	struct mta_db_result old;
	struct mta_measure m;
	int rc, to = 0;
	double started = mta_tune_now();

	if ((rc = mta_variant_format(v, spec, sizeof spec)) || (rc = mta_gen_c(c->p, v, &src)))
		return rc;
	mta_hash_hex(src, strlen(src), hash);
	free(src);
	if ((rc = mta_db_variant_upsert(c->db, c->prob, spec, hash, &vid)))
		return rc;
	if (mta_db_result_get(c->db, c->dev, vid, c->o->T, c->o->B, &old) == MTA_OK) {
		c->s->skipped++;
		if (old.status == MTA_RESULT_OK)
			mta_tune_note_best(c, spec, old.median_ms);
		mta_tune_report(c, done, total, spec, "skipped", old.median_ms, "tune");
		return MTA_OK;
	}
	c->s->tried++;
	if ((rc = compile(c, v, vid))) {
		if (rc != MTA_ECOMPILE)
			return rc;
		c->s->failed++;
		if (!c->compile_failed++)
			snprintf(c->first_cerr, sizeof c->first_cerr, "%s", mta_last_error());
		mta_tune_report(c, done, total, spec, "compile_failed", NAN, "tune");
		return mta_tune_record(c, vid, MTA_RESULT_COMPILE_FAILED, NULL, mta_last_error(),
				       started);
	}
	rc = mta_measure_variant(c->p, v, c->o, 1, &m, &to);
	int st = mta_tune_status_of(rc, to);
	if (st == MTA_RESULT_OK) {
		c->s->ok++;
		mta_tune_note_best(c, spec, m.median_ms);
	} else {
		c->s->failed++;
	}
	mta_tune_report(c, done, total, spec, mta_result_status_name(st), st ? NAN : m.median_ms,
			"tune");
	return mta_tune_record(c, vid, st, st == MTA_RESULT_OK || st == MTA_RESULT_VERIFY_FAILED ?
			       &m : NULL, st ? mta_last_error() : "", started);
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
	    r->device_id != l->c->dev)
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

/* Re-time the best few side by side and name the winner of T's bucket. */
static int retime(struct ctx *c, const char *key)
{
	struct oklist l = { c, NULL, 0, 0 };
	int rc = mta_db_list_results(c->db, c->dev, key, collect, &l);
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
		int to = 0;
		double started = mta_tune_now();
		if ((rc = mta_variant_parse(l.rows[i].spec, &v)))
			goto out;
		int mrc = v.backend == MTA_BACKEND_CUDA ? mta_tune_cuda_measure(c, &v, &m, &to)
			  : mta_measure_variant(c->p, &v, c->o, 1, &m, &to);
		int st = mta_tune_status_of(mrc, to);
		if ((rc = mta_tune_record(c, l.rows[i].vid, st, st == MTA_RESULT_OK ? &m : NULL,
				 st ? mta_last_error() : "", started)))
			goto out;
		mta_tune_report(c, (int)i + 1, (int)top, l.rows[i].spec, mta_result_status_name(st),
		       st ? NAN : m.median_ms, "retime");
		if (st == MTA_RESULT_OK && (!win || m.median_ms < c->s->winner_ms)) {
			win = l.rows[i].vid;
			c->s->winner_ms = m.median_ms;
			snprintf(c->s->winner, sizeof c->s->winner, "%s", l.rows[i].spec);
			mta_tune_note_best(c, l.rows[i].spec, m.median_ms);
		}
	}
	if (!win) {
		rc = mta_fail(MTA_EKERNEL, "every re-timed variant of %s failed on the second run", key);
		goto out;
	}
	struct mta_db_winner w = { 0 };
	w.device_id = c->dev;
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
	struct ctx c = { p, o, s, NULL, 0, 0, "", NAN, { 0 }, "", 0, "" };
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
	if (o->backend != MTA_BACKEND_CPU && o->backend != MTA_BACKEND_CUDA)
		return mta_fail(MTA_EUNSUPPORTED, "tuning the %s backend is not built into this "
				"tuner", mta_backend_name(o->backend));
	if ((rc = mta_problem_key(p, key, sizeof key)) || (rc = mta_tune_candidates(p, o, &vs, &n)))
		return rc;
	if ((rc = mta_variant_default(p, o->backend, &def)) ||
	    (rc = mta_variant_format(&def, s->default_spec, sizeof s->default_spec)))
		goto out;
	/* CUDA: the device and NVRTC first, so that a machine without them
	 * fails before the database is opened or created. */
	if (o->backend == MTA_BACKEND_CUDA &&
	    ((rc = mta_tune_cuda_probe(o->device_index, o->timeout_s, &c.cuda)) ||
	     (rc = mta_cuda_nvrtc_version(c.nvrtc, sizeof c.nvrtc))))
		goto out;
	snprintf(s->run_id, sizeof s->run_id, "%lld-%d", (long long)time(NULL), (int)getpid());
	if ((rc = mta_db_open(o->db_path, 0, &c.db)))
		goto out;
	snprintf(s->db_path, sizeof s->db_path, "%s", mta_db_path(c.db));
	if (o->backend == MTA_BACKEND_CUDA)
		mta_cuda_db_device(&c.cuda, c.nvrtc, &d);
	else
		mta_device_cpu(&d);
	if ((rc = mta_db_device_upsert(c.db, &d, &c.dev)) ||
	    (rc = mta_db_problem_upsert(c.db, key, &c.prob)))
		goto out;
	s->total = (int)n;
	if (o->backend == MTA_BACKEND_CUDA)
		rc = mta_tune_cuda_loop(&c, vs, n);
	else
		for (size_t i = 0; !rc && !(rc = mta_tune_stopped(&c, i, n)) && i < n; i++)
			rc = try_one(&c, &vs[i], (int)i + 1, (int)n);
	if (rc)
		goto out;
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
	    mta_db_result_get(c.db, c.dev, dvid, o->T, o->B, &dr) == MTA_OK &&
	    dr.status == MTA_RESULT_OK)
		s->default_ms = dr.median_ms;
	rc = MTA_OK;
out:
	free(vs);
	mta_db_close(c.db);
	return rc;
}
