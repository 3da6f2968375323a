/* prep.c: generate, build in a batch, record, store, prune (see prep.h). */
#include "tuner/tune/prep.h"
#include "gen/gen.h"
#include "runtime/core/error.h"
#include "runtime/core/hash.h"
#include "tuner/tune/tune_int.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Per candidate, while the pipeline runs. */
struct work {
	char *src;
	char hash[17];
	struct mta_kstats stats;
	int have_stats;
	int job;          /* index into the batch, -1: none */
};

/* 1. row, skip check, source */
static int start(const struct mta_prep *pp, const struct mta_problem *p, struct mta_cand *c,
		 struct work *w)
{
	struct mta_db_result old;
	int rc;
	if ((rc = mta_variant_format(&c->v, c->spec, sizeof c->spec)) ||
	    (rc = mta_gen_source_op(p, &c->v, pp->op, &w->src)))
		return rc;
	mta_hash_hex(w->src, strlen(w->src), w->hash);
	if ((rc = mta_db_variant_upsert_op(pp->db, pp->problem_id, mta_op_name(pp->op), c->spec,
					   w->hash, &c->vid)))
		return rc;
	c->old_ms = NAN;
	/* an env_error measured nothing: it is measured again */
	if (mta_db_result_get(pp->db, pp->device_id, c->vid, pp->T, pp->B, &old) == MTA_OK &&
	    old.status != MTA_RESULT_ENV_ERROR) {
		c->state = MTA_PREP_SKIPPED;
		c->status = old.status;
		c->old_ms = old.median_ms;
	}
	return MTA_OK;
}

/* 2. a stored binary with its stored compile information spares the build. */
static void reuse(const struct mta_prep *pp, struct mta_cand *c, struct work *w)
{
	struct mta_db_binary_key key;
	struct mta_db_variant row;
	char compiler[32];
	if (!pp->be->binary_key)
		return;
	pp->be->binary_key(pp->dev, w->hash, compiler, &key);
	if (mta_db_variant_get(pp->db, c->vid, &row) || row.compile.status != MTA_COMPILE_OK ||
	    strcmp(row.compile.target, pp->dev->arch) || row.compile.registers < 0 ||
	    row.compile.spill_stores < 0 || row.compile.spill_loads < 0 ||
	    row.compile.shared_bytes < 0)
		return;
	w->stats = (struct mta_kstats){ row.compile.registers, row.compile.spill_stores,
					row.compile.spill_loads, row.compile.shared_bytes,
					row.compile.stack_bytes };
	if (mta_db_binary_get(pp->db, &key, &c->binary, &c->binary_size) == MTA_OK && c->binary_size)
		w->have_stats = 1;
	else {
		free(c->binary);
		c->binary = NULL;
		c->binary_size = 0;
	}
}

/* 3. after the batch: compile information, binary stored, or the failure recorded. */
static int record_build(const struct mta_prep *pp, struct mta_cand *c, struct work *w,
			struct mta_build *b)
{
	int ok = b->status == MTA_OK;
	struct mta_db_compile info = { ok ? MTA_COMPILE_OK : MTA_COMPILE_FAILED, pp->dev->arch,
		b->stats.registers, b->stats.spill_stores, b->stats.spill_loads,
		b->stats.smem_bytes, b->stats.stack_bytes, 1e3 * b->seconds, b->log ? b->log : "" };
	struct mta_db_binary_key key;
	char compiler[32];
	int rc;

	c->compiled = 1;
	c->build_rc = b->status;
	if (!ok && mta_tune_env_failure(b->status)) {
		/* the machine failed, not the source: no compile information about it */
		c->state = MTA_PREP_RECORDED;
		c->status = MTA_RESULT_ENV_ERROR;
		snprintf(c->reason, sizeof c->reason, "%s", b->message);
		return mta_tune_put_result(pp->db, pp->device_id, c->vid, pp->T, pp->B, pp->run_id,
					   c->status, NULL, c->reason, mta_tune_now());
	}
	if ((rc = mta_db_variant_set_compile(pp->db, c->vid, &info)))
		return rc;
	if (!ok) {
		c->state = MTA_PREP_RECORDED;
		c->status = MTA_RESULT_COMPILE_FAILED;
		snprintf(c->reason, sizeof c->reason, "%s", b->message);
		return mta_tune_put_result(pp->db, pp->device_id, c->vid, pp->T, pp->B, pp->run_id,
					   c->status, NULL, c->reason, mta_tune_now());
	}
	if (b->binary && pp->be->binary_key) {
		pp->be->binary_key(pp->dev, w->hash, compiler, &key);
		if ((rc = mta_db_binary_put(pp->db, &key, b->binary, b->binary_size)))
			return rc;
	}
	w->stats = b->stats;
	w->have_stats = 1;
	c->binary = b->binary;
	c->binary_size = b->binary_size;
	b->binary = NULL;
	return MTA_OK;
}

/* 4. prune on what the compiler reported, against the device's limits. */
static int prune(const struct mta_prep *pp, const struct mta_problem *p, struct mta_cand *c,
		 const struct work *w)
{
	struct mta_build b = { .p = *p, .v = c->v, .op = pp->op, .stats = w->stats };
	if (pp->be->prune(pp->dev, &b) == MTA_OK) {
		c->state = MTA_PREP_TIME;
		return MTA_OK;
	}
	c->state = MTA_PREP_RECORDED;
	c->status = MTA_RESULT_PRUNED;
	snprintf(c->reason, sizeof c->reason, "pruned before timing: %s", mta_last_error());
	free(c->binary);
	c->binary = NULL;
	c->binary_size = 0;
	return mta_tune_put_result(pp->db, pp->device_id, c->vid, pp->T, pp->B, pp->run_id,
				   c->status, NULL, c->reason, mta_tune_now());
}

int mta_prepare(const struct mta_prep *pp, const struct mta_problem *p,
		const struct mta_variant *vs, size_t n, struct mta_cand **out)
{
	struct mta_cand *cs = calloc(n ? n : 1, sizeof *cs);
	struct work *ws = calloc(n ? n : 1, sizeof *ws);
	struct mta_build *bs = calloc(n ? n : 1, sizeof *bs);
	size_t nb = 0, i;
	int rc = MTA_OK;

	*out = NULL;
	if (!cs || !ws || !bs) {
		rc = mta_fail(MTA_ENOMEM, "out of memory for %zu candidates", n);
		goto out;
	}
	if (!pp->db || !pp->be || !pp->dev) {
		rc = mta_fail(MTA_EINVAL, "preparing candidates needs a database, a backend and "
			      "a device");
		goto out;
	}
	for (i = 0; i < n; i++) {
		cs[i].v = vs[i];
		ws[i].job = -1;
		if ((rc = start(pp, p, &cs[i], &ws[i])))
			goto out;
		if (cs[i].state == MTA_PREP_SKIPPED)
			continue;
		reuse(pp, &cs[i], &ws[i]);
		if (ws[i].have_stats)
			continue;
		ws[i].job = (int)nb;
		bs[nb].p = *p;
		bs[nb].v = vs[i];
		bs[nb].source = ws[i].src;
		bs[nb].op = pp->op;
		nb++;
	}
	if (nb && (rc = pp->be->build(pp->dev, bs, nb, pp->threads)))
		goto out;
	for (i = 0; i < n; i++) {
		if (ws[i].job >= 0 && (rc = record_build(pp, &cs[i], &ws[i], &bs[ws[i].job])))
			goto out;
		if (ws[i].have_stats && (rc = prune(pp, p, &cs[i], &ws[i])))
			goto out;
	}
	*out = cs;
	cs = NULL;
out:
	if (cs)
		mta_cands_free(cs, n);
	for (i = 0; ws && i < n; i++)
		free(ws[i].src);
	for (i = 0; i < nb; i++)
		mta_build_free(&bs[i]);
	free(ws);
	free(bs);
	return rc;
}

void mta_cands_free(struct mta_cand *c, size_t n)
{
	for (size_t i = 0; c && i < n; i++)
		free(c[i].binary);
	free(c);
}
