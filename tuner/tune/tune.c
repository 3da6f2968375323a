/* tune.c: the tuning loop (see tune.h for the contract). */
#include "tuner/tune/tune_int.h"
#include "gen/gen.h"
#include "runtime/core/error.h"
#include "tuner/measure/isolate.h"
#include "tuner/measure/stats.h"
#include "tuner/tune/prep.h"
#include "tuner/tune/search.h"

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
	o->strategy = MTA_TUNE_CHOOSE;
	o->T = 1024;
	o->B = 1;
	o->warmup = 1;
	o->reps = 5;
	o->top = 3;
	o->min_rounds = 5;
	o->max_rounds = 40;
	o->rounds_budget_s = 30;
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
	if ((rc = mta_backend_find(o->backend, &be)) ||
	    (rc = mta_variant_default_op(p, be->variants, o->op, &def)))
		return rc;
	if (o->only_specs) {
		/* these variants and the default, each once, the default first */
		if (!(arr = malloc((size_t)(o->n_only + 1) * sizeof *arr)))
			return mta_fail(MTA_ENOMEM, "out of memory");
		arr[0] = def;
		*n = 1;
		for (int i = 0; i < o->n_only; i++) {
			struct mta_variant v;
			if ((rc = mta_variant_parse(o->only_specs[i], &v)) ||
			    (rc = mta_variant_check_op(p, &v, o->op))) {
				free(arr);
				return rc;
			}
			if (v.backend != be->variants) {
				free(arr);
				return mta_fail(MTA_EINVAL, "variant %s is not a %s variant",
						o->only_specs[i], mta_backend_name(be->variants));
			}
			int seen = 0;
			for (size_t j = 0; j < *n; j++)
				seen |= !memcmp(&arr[j], &v, sizeof v);
			if (!seen)
				arr[(*n)++] = v;
		}
		*out = arr;
		return MTA_OK;
	}
	if ((rc = mta_variant_space_op(p, be->variants, o->op, &arr, n))) {
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

int mta_tune_backend(const char *name, int op, const struct mta_backend **be)
{
	int rc = mta_backend_find_timed(name, be);
	if (rc != MTA_EUNSUPPORTED || op == MTA_OP_FWD)
		goto out;
	/* untimed (cuda-emu): its backward and decode only, see tune.h */
	if ((rc = mta_backend_find(name, be)))
		return rc;
	if (op == MTA_OP_BWD &&
	    (!(*be)->train_load || !mta_gen_op_space((*be)->variants, MTA_OP_BWD)))
		return mta_fail(MTA_EUNSUPPORTED, "the %s backend has no backward to tune", name);
	if (op == MTA_OP_DECODE &&
	    (!(*be)->decode_load || !mta_gen_op_space((*be)->variants, MTA_OP_DECODE)))
		return mta_fail(MTA_EUNSUPPORTED, "the %s backend has no decode kernel to tune", name);
	return MTA_OK;
out:
	if (!rc && op == MTA_OP_BWD &&
	    (!(*be)->train_load || !mta_gen_op_space((*be)->variants, MTA_OP_BWD)))
		rc = mta_fail(MTA_EUNSUPPORTED, "the %s backend has no backward to tune yet (cpu, "
			      "cuda and cuda-emu have)", name);
	if (!rc && op == MTA_OP_DECODE &&
	    (!(*be)->decode_load || !mta_gen_op_space((*be)->variants, MTA_OP_DECODE)))
		rc = mta_fail(MTA_EUNSUPPORTED, "the %s backend has no decode kernel to tune yet "
			      "(cpu, cuda and cuda-emu have)", name);
	return rc;
}

int mta_tune_identify(const char *backend, int index, double timeout_s,
		      struct mta_device_info *info)
{
	struct probe pr;
	int to = 0, rc;
	memset(info, 0, sizeof *info);
	if ((rc = mta_backend_find(backend, &pr.be)))
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
	/*
	 * Named fields: the job holds two (B, T) pairs, and a positional list
	 * once gave the timing B=T, T=B (the screening timed T=1 rows of a
	 * batch of T, linear in T, against rounds at the real size).
	 */
	struct mta_measure_job j = {
		.be = c->be, .device = o->device_index, .threads = o->threads, .p = c->p, .v = v,
		.op = o->op, .binary = binary, .binary_size = n, .B = o->B, .T = o->T,
		.seed = o->seed ? o->seed
				: (unsigned long long)time(NULL) ^ (unsigned long long)clock(),
		.time_it = 1, .warmup = o->warmup, .reps = o->reps, .timeout_s = o->timeout_s,
		.stop = o->stop,
	};
	mta_check_size(o, &j.check_B, &j.check_T);
	return mta_measure(&j, m, timed_out);
}

int mta_tune_strategy(const struct mta_tune_opts *o, size_t n, size_t *planned)
{
	int st = o->strategy;
	if (o->only_specs)
		st = MTA_TUNE_EXHAUSTIVE;
	else if (st == MTA_TUNE_CHOOSE)
		st = n > MTA_SEARCH_AUTO_ABOVE ? MTA_TUNE_AUTO : MTA_TUNE_EXHAUSTIVE;
	if (planned) /* a random sample is drawn by mta_tune_candidates: n is its size */
		*planned = st == MTA_TUNE_AUTO ? mta_search_plan(st, n, (size_t)(o->budget > 0 ?
									       o->budget : 0)) : n;
	return st;
}

/* A recorded winner that may seed the search, and how far its problem and size are. */
struct seedrow {
	double dist;
	char spec[MTA_SPEC_MAX];
};
struct seedlist {
	const struct mta_problem *p;
	const char *key, *op;
	int64_t T, B;
	struct seedrow rows[64];
	int n;
};

/* How unlike p q is: one per differing property (dtype and head size count double). */
static int problem_distance(const struct mta_problem *p, const struct mta_problem *q)
{
	return (p->H != q->H) + (p->Hkv != q->Hkv) + 2 * (p->D != q->D) + (p->cq != q->cq) +
	       (p->ck != q->ck) + (p->head_pre != q->head_pre) + (p->cq2 != q->cq2) +
	       (p->ck2 != q->ck2) + (p->head_post != q->head_post) + (p->hc != q->hc) +
	       (p->pad != q->pad) + (p->gn != q->gn) + (p->gn_rescale != q->gn_rescale) +
	       (p->gate != q->gate) + (p->scale != q->scale) + 2 * (p->dtype != q->dtype);
}

static int collect_seed(void *ctx, const struct mta_db_winner *w)
{
	struct seedlist *l = ctx;
	struct mta_problem q;
	double d;
	if (!w->spec || !w->problem_key || strcmp(w->op ? w->op : "fwd", l->op))
		return 0;
	if (!strcmp(w->problem_key, l->key))
		d = 0;
	else if (mta_problem_from_key(w->problem_key, &q) == MTA_OK)
		d = 100.0 * problem_distance(l->p, &q);
	else
		return 0; /* a key this version cannot read seeds nothing */
	/* then the nearest size, in octaves */
	d += fabs(log2((double)(w->T > 0 ? w->T : 1) / (double)l->T)) +
	     fabs(log2((double)(w->B > 0 ? w->B : 1) / (double)l->B));
	int at = l->n < (int)(sizeof l->rows / sizeof l->rows[0]) ? l->n++ : l->n - 1;
	if (at == l->n - 1 && l->n == (int)(sizeof l->rows / sizeof l->rows[0]) &&
	    d >= l->rows[at].dist)
		return 0; /* full, and farther than the farthest kept */
	l->rows[at].dist = d;
	snprintf(l->rows[at].spec, sizeof l->rows[at].spec, "%s", w->spec);
	for (; at > 0 && l->rows[at - 1].dist > l->rows[at].dist; at--) {
		struct seedrow t = l->rows[at];
		l->rows[at] = l->rows[at - 1];
		l->rows[at - 1] = t;
	}
	return 0;
}

/*
 * The seeds of the search into seeds[0..*ns): the default variant (always
 * screened first: speed-ups are quoted against it), then up to
 * MTA_TUNE_WARM winners recorded on this device, nearest first: this
 * problem at other sizes, then the most similar other problems. Only
 * variants among vs count (a winner must also be valid for this problem to
 * be there). The number of recorded winners used goes to c->s->warm.
 */
static int warm_seeds(struct ctx *c, const struct mta_variant *vs, size_t n, size_t *seeds,
		      size_t *ns)
{
	struct seedlist *l = calloc(1, sizeof *l);
	struct mta_variant def;
	char key[MTA_KEY_MAX];
	int rc;
	*ns = 0;
	if (!l)
		return mta_fail(MTA_ENOMEM, "out of memory");
	if ((rc = mta_variant_default_op(c->p, c->be->variants, c->o->op, &def)) ||
	    (rc = mta_problem_key(c->p, key, sizeof key)))
		goto out;
	for (size_t i = 0; i < n; i++)
		if (!memcmp(&vs[i], &def, sizeof def)) {
			seeds[(*ns)++] = i;
			break;
		}
	l->p = c->p;
	l->key = key;
	l->op = mta_op_name(c->o->op);
	l->T = c->o->T;
	l->B = c->o->B;
	if ((rc = mta_db_list_winners(c->db, c->dev_id, NULL, collect_seed, l)))
		goto out;
	for (int r = 0; r < l->n && c->s->warm < MTA_TUNE_WARM; r++) {
		struct mta_variant v;
		if (mta_variant_parse(l->rows[r].spec, &v) || v.backend != c->be->variants ||
		    mta_variant_check_op(c->p, &v, c->o->op))
			continue;
		for (size_t i = 0; i < n; i++)
			if (!memcmp(&vs[i], &v, sizeof v)) {
				size_t j = 0;
				while (j < *ns && seeds[j] != i)
					j++;
				if (j == *ns) {
					seeds[(*ns)++] = i;
					c->s->warm++;
				}
				break;
			}
	}
	mta_clear_error(); /* a winner that does not parse or fit is not an error of this run */
out:
	free(l);
	return rc;
}

/* Has screening used up o->time_budget_s since start (with at least one variant done)? */
static int out_of_time(struct ctx *c, double start, size_t done)
{
	if (!(c->o->time_budget_s > 0) || !done || mta_tune_now() - start < c->o->time_budget_s)
		return 0;
	c->s->out_of_time = 1;
	return 1;
}

int mta_tune_loop(struct ctx *c, const struct mta_variant *vs, size_t n)
{
	struct mta_prep pp = { .db = c->db, .be = c->be, .dev = &c->dev, .device_id = c->dev_id,
			       .problem_id = c->prob, .T = c->o->T, .B = c->o->B,
			       .run_id = c->s->run_id, .threads = c->o->threads, .op = c->o->op };
	struct mta_search *srch = NULL;
	struct mta_variant *batch = malloc((n ? n : 1) * sizeof *batch);
	size_t *idx = malloc((n ? n : 1) * sizeof *idx), seeds[1 + MTA_TUNE_WARM], ns = 0, nb = 0;
	size_t done = 0, planned;
	struct mta_cand *cs = NULL;
	const double start = mta_tune_now();
	int st = mta_tune_strategy(c->o, n, &planned), rc;

	c->s->strategy = st;
	c->s->planned = (int)planned;
	if (!batch || !idx) {
		rc = mta_fail(MTA_ENOMEM, "out of memory");
		goto out;
	}
	/* a random sample was drawn already (mta_tune_candidates): screen it whole */
	if ((rc = warm_seeds(c, vs, n, seeds, &ns)) ||
	    (rc = mta_search_new(st == MTA_TUNE_AUTO ? MTA_TUNE_AUTO : MTA_TUNE_EXHAUSTIVE, vs, n,
				 planned, c->o->seed, seeds, ns, &srch)))
		goto out;
	while (!rc && !out_of_time(c, start, done) && (nb = mta_search_next(srch, idx, n))) {
		for (size_t i = 0; i < nb; i++)
			batch[i] = vs[idx[i]];
		/* the batch is built on all cores, then timed one by one */
		if ((rc = mta_prepare(&pp, c->p, batch, nb, &cs)))
			break;
		for (size_t i = 0; i < nb; i++) {
			if (cs[i].state == MTA_PREP_RECORDED &&
			    cs[i].status == MTA_RESULT_COMPILE_FAILED && !c->compile_failed++)
				snprintf(c->first_cerr, sizeof c->first_cerr, "%s", cs[i].reason);
			if (cs[i].state == MTA_PREP_RECORDED && cs[i].status == MTA_RESULT_ENV_ERROR)
				note_env(c, cs[i].build_rc, cs[i].reason);
		}
		for (size_t i = 0; i < nb; i++) {
			struct mta_cand *k = &cs[i];
			struct mta_measure m;
			int to = 0;
			double started = mta_tune_now();
			if (rc || (rc = stopped(c, done, planned)) || out_of_time(c, start, done)) {
				mta_search_tell(srch, idx[i], NAN); /* not screened; the search ends */
				continue;
			}
			done++;
			if (k->state == MTA_PREP_SKIPPED) {
				c->s->skipped++;
				if (k->status == MTA_RESULT_OK)
					note_best(c, k->spec, k->old_ms);
				mta_search_tell(srch, idx[i], k->status == MTA_RESULT_OK ? k->old_ms : NAN);
				report(c, (int)done, (int)planned, k->spec, "skipped", k->old_ms, "tune");
				continue;
			}
			c->s->tried++;
			if (k->state == MTA_PREP_RECORDED) {
				c->s->failed++;
				mta_search_tell(srch, idx[i], NAN);
				report(c, (int)done, (int)planned, k->spec,
				       mta_result_status_name(k->status), NAN, "tune");
				continue;
			}
			int mrc = measure(c, &k->v, k->binary, k->binary_size, &m, &to);
			if (mrc == MTA_EINTR) { /* stopped while it ran: not recorded, measured next time */
				rc = stopped(c, done - 1, planned) ? MTA_EINTR : mrc;
				mta_search_tell(srch, idx[i], NAN);
				continue;
			}
			int status = mta_tune_status_of(mrc, to);
			if (status == MTA_RESULT_OK) {
				c->s->ok++;
				note_best(c, k->spec, m.median_ms);
			} else {
				c->s->failed++;
			}
			if (status == MTA_RESULT_ENV_ERROR)
				note_env(c, mrc, mta_last_error());
			mta_search_tell(srch, idx[i], status ? NAN : m.median_ms);
			report(c, (int)done, (int)planned, k->spec, mta_result_status_name(status),
			       status ? NAN : m.median_ms, "tune");
			rc = record(c, k->vid, status, status == MTA_RESULT_OK ||
				    status == MTA_RESULT_VERIFY_FAILED ? &m : NULL,
				    status ? mta_last_error() : "", started);
		}
		mta_cands_free(cs, nb);
		cs = NULL;
	}
	if (!rc && !c->s->out_of_time)
		rc = stopped(c, done, planned); /* a stop also comes before the re-timing */
out:
	mta_search_free(srch);
	free(batch);
	free(idx);
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
	    r->device_id != l->c->dev_id || strcmp(r->op, mta_op_name(l->c->o->op)))
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
	char compiler[32], spec[MTA_SPEC_MAX];
	int64_t vid;
	int rc;
	*bin = NULL;
	*n = 0;
	if (!c->be->binary_key)
		return MTA_OK;
	if ((rc = mta_variant_format(v, spec, sizeof spec)) ||
	    (rc = mta_db_variant_upsert_op(c->db, c->prob, mta_op_name(c->o->op), spec, NULL,
					   &vid)) ||
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

/*
 * The variants of the paired rounds into row[0..*n): the reference first
 * (the default variant if it ran ok, else the best screened one: there is
 * nothing else to compare with), then the best `top` others by their
 * screening median.
 */
static void contenders(struct ctx *c, struct oklist *l, struct okrow *row, int *n)
{
	size_t ref = 0, top = (size_t)(c->o->top > 0 ? c->o->top : 1);
	qsort(l->rows, l->n, sizeof *l->rows, by_ms);
	for (size_t i = 0; i < l->n; i++)
		if (!strcmp(l->rows[i].spec, c->s->default_spec)) {
			ref = i;
			break;
		}
	if (top > MTA_ROUNDS_MAX_RUNNERS - 1)
		top = MTA_ROUNDS_MAX_RUNNERS - 1;
	row[0] = l->rows[ref];
	*n = 1;
	for (size_t i = 0; i < l->n && (size_t)*n <= top; i++)
		if (i != ref)
			row[(*n)++] = l->rows[i];
}

/*
 * Time the contenders against the reference in paired rounds (in a child)
 * and decide: the lowest ratio among those faster than the reference with
 * 95% confidence by MTA_TUNE_MARGIN, else the reference. Fills the summary.
 */
static int decide(struct ctx *c, const struct okrow *row, int n, int64_t *win)
{
	const struct mta_tune_opts *o = c->o;
	struct mta_tune_summary *s = c->s;
	struct mta_variant v[MTA_ROUNDS_MAX_RUNNERS];
	void *bin[MTA_ROUNDS_MAX_RUNNERS] = { 0 };
	size_t bn[MTA_ROUNDS_MAX_RUNNERS] = { 0 };
	struct mta_rounds *r = malloc(sizeof *r);
	int rc = MTA_OK, to = 0, best = 0;

	if (!r)
		return mta_fail(MTA_ENOMEM, "out of memory");
	for (int i = 0; i < n; i++)
		if ((rc = mta_variant_parse(row[i].spec, &v[i])) ||
		    (rc = stored_binary(c, &v[i], &bin[i], &bn[i])))
			goto out;
	struct mta_rounds_job j = {
		.be = c->be, .device = o->device_index, .threads = o->threads, .p = c->p,
		.op = o->op, .n = n,
		.v = v, .binary = (const void *const *)bin, .binary_size = bn, .B = o->B, .T = o->T,
		.seed = o->seed ? o->seed + 2
				: (unsigned long long)time(NULL) ^ (unsigned long long)clock(),
		.opts = { .warmup = o->warmup, .min_rounds = o->min_rounds,
			  .max_rounds = o->max_rounds, .budget_s = o->rounds_budget_s,
			  .width = MTA_TUNE_WIDTH },
		.timeout_s = o->rounds_budget_s * 2 + o->timeout_s, .stop = o->stop,
	};
	if ((rc = mta_measure_rounds(&j, r, &to))) {
		if (rc == MTA_EINTR) /* stopped: no winner named from half the rounds */
			rc = stopped(c, (size_t)n, (size_t)n) ? MTA_EINTR : rc;
		else if (mta_tune_env_failure(rc))
			mta_wrap(rc, "the paired rounds (the machine failed, not the kernels; rerun "
				 "to name the winner)");
		goto out;
	}
	struct mta_ratio ratio[MTA_ROUNDS_MAX_RUNNERS];
	double med[MTA_ROUNDS_MAX_RUNNERS], tmp[MTA_ROUNDS_MAX];
	ratio[0] = (struct mta_ratio){ 1, 1, 1, r->rounds };
	for (int i = 0; i < n; i++) {
		memcpy(tmp, r->ms[i], (size_t)r->rounds * sizeof *tmp);
		med[i] = mta_median(tmp, r->rounds);
		if (i && (rc = mta_paired_ratio(r->ms[i], r->ms[0], r->rounds, &ratio[i])))
			goto out;
		if (i)
			report(c, i, n - 1, row[i].spec, ratio[i].hi < 1 - MTA_TUNE_MARGIN ?
			       "faster" : "within noise", med[i], "rounds");
	}
	s->ch_ratio = s->ch_low = s->ch_high = NAN;
	s->challenger[0] = 0;
	for (int i = 1; i < n; i++) {
		if (ratio[i].hi < 1 - MTA_TUNE_MARGIN && (!best || ratio[i].ratio < ratio[best].ratio))
			best = i;
		if (!s->challenger[0] || ratio[i].ratio < s->ch_ratio) {
			snprintf(s->challenger, sizeof s->challenger, "%s", row[i].spec);
			s->ch_ratio = ratio[i].ratio;
			s->ch_low = ratio[i].lo;
			s->ch_high = ratio[i].hi;
		}
	}
	*win = row[best].vid;
	snprintf(s->winner, sizeof s->winner, "%s", row[best].spec);
	s->winner_ms = med[best];
	s->default_ms = strcmp(row[0].spec, s->default_spec) ? NAN : med[0];
	s->ratio = ratio[best].ratio;
	s->ci_low = ratio[best].lo;
	s->ci_high = ratio[best].hi;
	s->rounds = r->rounds;
	s->significant = best != 0;
out:
	if (rc && to)
		mta_wrap(rc, "the paired rounds timed out");
	for (int i = 0; i < n; i++)
		free(bin[i]);
	free(r);
	return rc;
}

/* Time the best few against the default in paired rounds and name the winner of the buckets. */
static int retime(struct ctx *c, const char *key)
{
	struct oklist l = { c, NULL, 0, 0 };
	struct okrow row[MTA_ROUNDS_MAX_RUNNERS];
	int64_t win = 0;
	int n = 0;
	int rc = mta_db_list_results(c->db, c->dev_id, key, collect, &l);
	if (rc)
		goto out;
	if (!l.n) {
		rc = mta_fail(MTA_EVERIFY, "no variant of %s passed the reference check and ran at "
			      "T=%lld, B=%lld", key, (long long)c->o->T, (long long)c->o->B);
		goto out;
	}
	contenders(c, &l, row, &n);
	if (n < 2) { /* one variant ran ok: nothing to compare it with */
		win = row[0].vid;
		snprintf(c->s->winner, sizeof c->s->winner, "%s", row[0].spec);
		c->s->winner_ms = row[0].ms;
		c->s->default_ms = strcmp(row[0].spec, c->s->default_spec) ? NAN : row[0].ms;
		c->s->ratio = c->s->ci_low = c->s->ci_high = 1;
		c->s->ch_ratio = c->s->ch_low = c->s->ch_high = NAN;
	} else if ((rc = decide(c, row, n, &win))) {
		goto out;
	}
	struct mta_db_winner w = { 0 };
	w.device_id = c->dev_id;
	w.problem_id = c->prob;
	w.op = mta_op_name(c->o->op);
	w.variant_id = win;
	w.T = c->o->T;
	w.B = c->o->B;
	w.time_ms = c->s->winner_ms;
	w.default_ms = c->s->default_ms;
	w.ratio = c->s->ratio;
	w.ci_low = c->s->ci_low;
	w.ci_high = c->s->ci_high;
	w.rounds = c->s->rounds;
	w.significant = c->s->significant;
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
	s->winner_ms = s->default_ms = s->ratio = s->ci_low = s->ci_high = NAN;
	s->ch_ratio = s->ch_low = s->ch_high = NAN;
	if (o->T < 1 || o->B < 1 || o->reps < 1 || o->warmup < 0 || o->timeout_s <= 0)
		return mta_fail(MTA_EINVAL, "tuning needs T >= 1, B >= 1, reps >= 1, warmup >= 0 and "
				"a positive timeout (got T=%lld, B=%lld, reps=%d, warmup=%d, timeout=%g)",
				(long long)o->T, (long long)o->B, o->reps, o->warmup, o->timeout_s);
	if (o->min_rounds < 2 || o->max_rounds < o->min_rounds || o->max_rounds > MTA_ROUNDS_MAX ||
	    !(o->rounds_budget_s > 0))
		return mta_fail(MTA_EINVAL, "paired rounds need 2 <= min_rounds <= max_rounds <= %d "
				"and a positive budget (got %d..%d, %g s)", MTA_ROUNDS_MAX,
				o->min_rounds, o->max_rounds, o->rounds_budget_s);
	if (o->op != MTA_OP_FWD && o->op != MTA_OP_BWD && o->op != MTA_OP_DECODE)
		return mta_fail(MTA_EINVAL, "tuning operation %d (expected MTA_OP_FWD, MTA_OP_BWD or "
				"MTA_OP_DECODE)", o->op);
	if ((rc = mta_tune_backend(o->backend, o->op, &c.be)) ||
	    (rc = mta_problem_key(p, key, sizeof key)))
		return rc;
	if ((rc = mta_tune_candidates(p, o, &vs, &n)))
		return rc;
	if ((rc = mta_variant_default_op(p, c.be->variants, o->op, &def)) ||
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
	rc = retime(&c, key);
out:
	free(vs);
	mta_db_close(c.db);
	return rc;
}
