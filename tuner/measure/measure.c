/* measure.c: one variant checked and timed in a child (see measure.h). */
#include "tuner/measure/measure.h"
#include "runtime/core/error.h"
#include "tuner/measure/check.h"
#include "tuner/measure/isolate.h"

#include <math.h>
#include <string.h>

/*
 * The kernel of v for op on dev into runner r: the forward's (from binary),
 * the backward library, or the decode kernel (into *dec, its handle *dh).
 */
static int load(const struct mta_backend *be, struct mta_device *dev, int op,
		const struct mta_problem *p, const struct mta_variant *v, const void *binary,
		size_t n, struct mta_kernel **k, struct mta_decoder *dec, void **dh)
{
	if (op == MTA_OP_FWD)
		return be->load(dev, NULL, p, v, binary, n, k);
	if (op == MTA_OP_DECODE) {
		if (!be->decode_load)
			return mta_fail(MTA_EUNSUPPORTED, "the %s backend has no decode kernels",
					be->name);
		return be->decode_load(dev, p, v, dh, dec);
	}
	if (op != MTA_OP_BWD || !be->train_load)
		return mta_fail(MTA_EUNSUPPORTED, "the %s backend has no %s kernels", be->name,
				mta_op_name(op));
	return be->train_load(dev, p, v, k);
}

static int job_fn(void *ctx, void *out, size_t n)
{
	const struct mta_measure_job *j = ctx;
	struct mta_measure *m = out;
	struct mta_runner r = { j->be, NULL, NULL, NULL };
	struct mta_check_opts co = { j->check_B, j->check_T, j->seed, 0 };
	struct mta_compare cmp;
	struct mta_timing t;
	struct mta_decoder dec;
	void *dh = NULL;
	int rc;

	memset(m, 0, n);
	m->rel_err = m->median_ms = m->p20_ms = m->p80_ms = m->min_ms = NAN;
	if ((rc = j->be->open(j->device, j->threads, &r.dev)) || (rc = load(j->be, r.dev, j->op, j->p,
			j->v, j->binary, j->binary_size, &r.k, &dec, &dh)))
		goto out;
	cmp.rel_l2 = NAN;
	rc = j->op == MTA_OP_BWD      ? mta_check_bwd(&r, j->p, &co, &cmp)
	     : j->op == MTA_OP_DECODE ? mta_check_decode(&r, &dec, j->p, &co, &cmp)
				      : mta_check(&r, j->p, &co, &cmp);
	m->rel_err = cmp.rel_l2;
	if (rc || !j->time_it)
		goto out;
	if ((rc = j->op == MTA_OP_BWD
			  ? mta_time_bwd(&r, j->p, j->B, j->T, j->seed + 1, j->warmup, j->reps, &t)
		  : j->op == MTA_OP_DECODE
			  ? mta_time_decode(&r, &dec, j->p, j->B, j->T, j->seed + 1, j->warmup, j->reps, &t)
			  : mta_time(&r, j->p, j->B, j->T, j->seed + 1, j->warmup, j->reps, &t)))
		goto out;
	m->median_ms = t.median_ms;
	m->p20_ms = t.p20_ms;
	m->p80_ms = t.p80_ms;
	m->min_ms = t.min_ms;
	m->runs = t.runs;
out:
	if (dh)
		j->be->decode_unload(dh);
	j->be->unload(r.k);
	j->be->close(r.dev);
	return rc;
}

int mta_measure(const struct mta_measure_job *j, struct mta_measure *m, int *timed_out)
{
	memset(m, 0, sizeof *m);
	m->rel_err = m->median_ms = m->p20_ms = m->p80_ms = m->min_ms = NAN;
	*timed_out = 0;
	if (j->time_it && (j->reps < 1 || j->warmup < 0))
		return mta_fail(MTA_EINVAL, "timing needs reps >= 1 and warmup >= 0");
	return mta_isolate(job_fn, (void *)j, m, sizeof *m, j->timeout_s, j->stop, timed_out);
}

static int rounds_fn(void *ctx, void *out, size_t size)
{
	const struct mta_rounds_job *j = ctx;
	struct mta_runner r[MTA_ROUNDS_MAX_RUNNERS];
	struct mta_decoder dec[MTA_ROUNDS_MAX_RUNNERS];
	void *dh[MTA_ROUNDS_MAX_RUNNERS] = { 0 };
	struct mta_device *dev = NULL;
	int rc, loaded = 0;

	memset(out, 0, size);
	if (j->n < 2 || j->n > MTA_ROUNDS_MAX_RUNNERS)
		return mta_fail(MTA_EINVAL, "paired rounds of %d variants (expected 2..%d)", j->n,
				MTA_ROUNDS_MAX_RUNNERS);
	if ((rc = j->be->open(j->device, j->threads, &dev)))
		return rc;
	for (; loaded < j->n; loaded++) {
		r[loaded] = (struct mta_runner){ j->be, dev, NULL, NULL };
		if ((rc = load(j->be, dev, j->op, j->p, &j->v[loaded], j->binary ? j->binary[loaded]
			       : NULL, j->binary_size ? j->binary_size[loaded] : 0, &r[loaded].k,
			       &dec[loaded], &dh[loaded])))
			goto out;
	}
	rc = j->op == MTA_OP_BWD
		? mta_time_rounds_bwd(r, j->n, j->p, j->B, j->T, j->seed, &j->opts, out)
	     : j->op == MTA_OP_DECODE
		? mta_time_rounds_decode(r, dec, j->n, j->p, j->B, j->T, j->seed, &j->opts, out)
		: mta_time_rounds(r, j->n, j->p, j->B, j->T, j->seed, &j->opts, out);
out:
	for (int i = 0; i < MTA_ROUNDS_MAX_RUNNERS; i++)
		if (dh[i])
			j->be->decode_unload(dh[i]);
	while (loaded > 0)
		j->be->unload(r[--loaded].k);
	j->be->close(dev);
	return rc;
}

int mta_measure_rounds(const struct mta_rounds_job *j, struct mta_rounds *out, int *timed_out)
{
	memset(out, 0, sizeof *out);
	*timed_out = 0;
	return mta_isolate(rounds_fn, (void *)j, out, sizeof *out, j->timeout_s, j->stop, timed_out);
}
