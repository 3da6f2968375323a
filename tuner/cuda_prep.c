/* cuda_prep.c: generate, compile in a batch, record, store, prune (see cuda_prep.h). */
#include "cuda_prep.h"
#include "ccompile.h"
#include "cuda.h"
#include "cudagen.h"
#include "error.h"
#include "nvrtc.h"
#include "tune_int.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Per candidate, while the pipeline runs. */
struct work {
	char *src;
	char hash[17];
	struct mta_nvrtc_stats stats;
	int have_stats;
	int job;          /* index into the batch, -1: none */
};

/* 1. row, skip check, source */
static int start(const struct mta_cuda_prep *pp, const struct mta_problem *p,
		 struct mta_cuda_cand *c, struct work *w)
{
	struct mta_db_result old;
	int rc;
	if ((rc = mta_variant_format(&c->v, c->spec, sizeof c->spec)) ||
	    (rc = mta_gen_cuda(p, &c->v, &w->src)))
		return rc;
	mta_hash_hex(w->src, strlen(w->src), w->hash);
	if ((rc = mta_db_variant_upsert(pp->db, pp->problem_id, c->spec, w->hash, &c->vid)))
		return rc;
	c->old_ms = NAN;
	if (mta_db_result_get(pp->db, pp->device_id, c->vid, pp->T, pp->B, &old) == MTA_OK) {
		c->state = MTA_PREP_SKIPPED;
		c->status = old.status;
		c->old_ms = old.median_ms;
	}
	return MTA_OK;
}

/* 2. a stored cubin with its stored stats spares the compile. */
static void reuse(const struct mta_cuda_prep *pp, const struct mta_problem *p,
		  struct mta_cuda_cand *c, struct work *w)
{
	struct mta_db_binary_key key;
	struct mta_db_variant row;
	char compiler[32];
	mta_cuda_binary_key(w->hash, pp->target.arch, pp->target.nvrtc, compiler, &key);
	if (mta_db_variant_get(pp->db, c->vid, &row) || row.compile.status != MTA_COMPILE_OK ||
	    strcmp(row.compile.target, pp->target.arch) || row.compile.registers < 0 ||
	    row.compile.spill_stores < 0 || row.compile.spill_loads < 0 ||
	    row.compile.shared_bytes < 0)
		return;
	w->stats.registers = row.compile.registers;
	w->stats.spill_stores = row.compile.spill_stores;
	w->stats.spill_loads = row.compile.spill_loads;
	w->stats.stack_bytes = row.compile.stack_bytes;
	/* shared_bytes is recorded as static + dynamic: see record_compile */
	w->stats.smem_bytes = row.compile.shared_bytes - (int)mta_cuda_smem_bytes(p, &c->v);
	if (w->stats.smem_bytes < 0)
		return;
	if (mta_db_binary_get(pp->db, &key, &c->cubin, &c->cubin_size) == MTA_OK && c->cubin_size)
		w->have_stats = 1;
	else {
		free(c->cubin);
		c->cubin = NULL;
		c->cubin_size = 0;
	}
}

/* 3. after the batch: compile information, cubin stored, or the failure recorded. */
static int record_compile(const struct mta_cuda_prep *pp, const struct mta_problem *p,
			  struct mta_cuda_cand *c, struct work *w, struct mta_nvrtc_job *j)
{
	const struct mta_nvrtc_stats *st = &j->stats;
	int ok = j->status == MTA_OK;
	struct mta_db_compile info = { ok ? MTA_COMPILE_OK : MTA_COMPILE_FAILED, pp->target.arch,
		ok ? st->registers : -1, ok ? st->spill_stores : -1, ok ? st->spill_loads : -1,
		ok ? st->smem_bytes + (int)mta_cuda_smem_bytes(p, &c->v) : -1,
		ok ? st->stack_bytes : -1, 1e3 * j->seconds, j->log ? j->log : "" };
	struct mta_db_binary_key key;
	char compiler[32];
	int rc;

	c->compiled = 1;
	if ((rc = mta_db_variant_set_compile(pp->db, c->vid, &info)))
		return rc;
	if (!ok) {
		c->state = MTA_PREP_RECORDED;
		c->status = MTA_RESULT_COMPILE_FAILED;
		snprintf(c->reason, sizeof c->reason, "%s", j->message);
		return mta_tune_put_result(pp->db, pp->device_id, c->vid, pp->T, pp->B, pp->run_id,
					   c->status, NULL, c->reason, mta_tune_now());
	}
	mta_cuda_binary_key(w->hash, pp->target.arch, pp->target.nvrtc, compiler, &key);
	if ((rc = mta_db_binary_put(pp->db, &key, j->cubin, j->cubin_size)))
		return rc;
	w->stats = *st;
	w->have_stats = 1;
	c->cubin = j->cubin;
	c->cubin_size = j->cubin_size;
	j->cubin = NULL;
	return MTA_OK;
}

/* 4. prune on ptxas stats against the architecture's and the device's limits. */
static int prune(const struct mta_cuda_prep *pp, const struct mta_problem *p,
		 struct mta_cuda_cand *c, struct work *w)
{
	const struct mta_cuda_target *t = &pp->target;
	struct mta_cuda_launch g;
	int rc = mta_cuda_geometry(p, &c->v, 1, 1, &g), why = 0;
	if (rc)
		return rc;
	int threads = (int)g.block[0];
	size_t smem = (size_t)w->stats.smem_bytes + g.smem_bytes;
	if (mta_nvrtc_prune(&w->stats, t->arch, threads, g.smem_bytes))
		why = 1;
	else if (t->smem_limit > 0 && smem > (size_t)t->smem_limit)
		why = mta_fail(MTA_EUNSUPPORTED, "needs %zu bytes of shared memory, the device "
			       "allows %d", smem, t->smem_limit);
	else if (t->regs_per_block > 0 && (long)w->stats.registers * threads > t->regs_per_block)
		why = mta_fail(MTA_EUNSUPPORTED, "%d registers x %d threads exceed the device's %d "
			       "registers per block", w->stats.registers, threads, t->regs_per_block);
	else if (t->max_threads > 0 && threads > t->max_threads)
		why = mta_fail(MTA_EUNSUPPORTED, "%d threads per block, the device allows %d",
			       threads, t->max_threads);
	if (!why) {
		c->state = MTA_PREP_TIME;
		return MTA_OK;
	}
	c->state = MTA_PREP_RECORDED;
	c->status = MTA_RESULT_PRUNED;
	snprintf(c->reason, sizeof c->reason, "pruned before timing: %s", mta_last_error());
	free(c->cubin);
	c->cubin = NULL;
	c->cubin_size = 0;
	return mta_tune_put_result(pp->db, pp->device_id, c->vid, pp->T, pp->B, pp->run_id,
				   c->status, NULL, c->reason, mta_tune_now());
}

int mta_cuda_prepare(const struct mta_cuda_prep *pp, const struct mta_problem *p,
		     const struct mta_variant *vs, size_t n, struct mta_cuda_cand **out)
{
	struct mta_cuda_cand *cs = calloc(n ? n : 1, sizeof *cs);
	struct work *ws = calloc(n ? n : 1, sizeof *ws);
	struct mta_nvrtc_job *jobs = calloc(n ? n : 1, sizeof *jobs);
	size_t nj = 0, i;
	int rc = MTA_OK;

	*out = NULL;
	if (!cs || !ws || !jobs) {
		rc = mta_fail(MTA_ENOMEM, "out of memory for %zu candidates", n);
		goto out;
	}
	if (!pp->target.arch || !pp->target.nvrtc || !pp->db) {
		rc = mta_fail(MTA_EINVAL, "CUDA preparation needs a database, an arch and the "
			      "NVRTC version");
		goto out;
	}
	for (i = 0; i < n; i++) {
		cs[i].v = vs[i];
		ws[i].job = -1;
		if ((rc = start(pp, p, &cs[i], &ws[i])))
			goto out;
		if (cs[i].state == MTA_PREP_SKIPPED)
			continue;
		reuse(pp, p, &cs[i], &ws[i]);
		if (ws[i].have_stats)
			continue;
		ws[i].job = (int)nj;
		jobs[nj].source = ws[i].src;
		jobs[nj].kernel = MTA_CUDA_KERNEL;
		jobs[nj].arch = pp->target.arch;
		nj++;
	}
	if (nj && (rc = mta_nvrtc_compile_batch(jobs, nj, pp->threads)))
		goto out;
	for (i = 0; i < n; i++) {
		if (ws[i].job >= 0 && (rc = record_compile(pp, p, &cs[i], &ws[i], &jobs[ws[i].job])))
			goto out;
		if (ws[i].have_stats && (rc = prune(pp, p, &cs[i], &ws[i])))
			goto out;
	}
	*out = cs;
	cs = NULL;
out:
	if (cs)
		mta_cuda_cands_free(cs, n);
	for (i = 0; ws && i < n; i++)
		free(ws[i].src);
	for (i = 0; i < nj; i++)
		mta_nvrtc_job_free(&jobs[i]);
	free(ws);
	free(jobs);
	return rc;
}

void mta_cuda_cands_free(struct mta_cuda_cand *c, size_t n)
{
	for (size_t i = 0; c && i < n; i++)
		free(c[i].cubin);
	free(c);
}
