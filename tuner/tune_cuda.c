/*
 * tune_cuda.c: the CUDA half of the tuning loop (see tune.h): the device
 * probed in a child, the pre-timing pipeline (cuda_prep.h), then each
 * survivor checked and timed on the GPU in a child with a time limit.
 */
#include "cuda_prep.h"
#include "error.h"
#include "isolate.h"
#include "tune_int.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>

static int probe_fn(void *ctx, void *out, size_t n)
{
	return mta_cuda_device_info(*(const int *)ctx, out);
}

int mta_tune_cuda_probe(int index, double timeout_s, struct mta_cuda_device *d)
{
	int to = 0;
	int rc = mta_isolate(probe_fn, &index, d, sizeof *d, timeout_s < 60 ? timeout_s : 60, &to);
	if (rc && to)
		return mta_wrap(MTA_ENODEV, "probing CUDA device %d", index);
	return rc;
}

int mta_tune_cuda_loop(struct ctx *c, const struct mta_variant *vs, size_t n)
{
	struct mta_cuda_prep pp = { c->db, c->dev, c->prob, c->o->T, c->o->B, c->s->run_id,
				    c->o->threads, { c->cuda.arch, c->nvrtc, c->cuda.smem_optin,
						     c->cuda.regs_per_block, c->cuda.max_threads } };
	struct mta_cuda_cand *cs = NULL;
	int rc = mta_cuda_prepare(&pp, c->p, vs, n, &cs);
	if (rc)
		return rc;
	for (size_t i = 0; !rc && !(rc = mta_tune_stopped(c, i, n)) && i < n; i++) {
		struct mta_cuda_cand *k = &cs[i];
		struct mta_measure m;
		int to = 0, done = (int)i + 1;
		double started = mta_tune_now();
		if (k->state == MTA_PREP_SKIPPED) {
			c->s->skipped++;
			if (k->status == MTA_RESULT_OK)
				mta_tune_note_best(c, k->spec, k->old_ms);
			mta_tune_report(c, done, (int)n, k->spec, "skipped", k->old_ms, "tune");
			continue;
		}
		c->s->tried++;
		if (k->state == MTA_PREP_RECORDED) {
			c->s->failed++;
			mta_tune_report(c, done, (int)n, k->spec, mta_result_status_name(k->status),
					NAN, "tune");
			continue;
		}
		int mrc = mta_measure_cuda(c->p, &k->v, c->o, k->cubin, k->cubin_size, 1, &m, &to);
		int st = mta_tune_status_of(mrc, to);
		if (st == MTA_RESULT_OK) {
			c->s->ok++;
			mta_tune_note_best(c, k->spec, m.median_ms);
		} else {
			c->s->failed++;
		}
		mta_tune_report(c, done, (int)n, k->spec, mta_result_status_name(st),
				st ? NAN : m.median_ms, "tune");
		rc = mta_tune_record(c, k->vid, st, st == MTA_RESULT_OK ||
				     st == MTA_RESULT_VERIFY_FAILED ? &m : NULL,
				     st ? mta_last_error() : "", started);
	}
	mta_cuda_cands_free(cs, n);
	return rc;
}

int mta_tune_cuda_measure(struct ctx *c, const struct mta_variant *v, struct mta_measure *m,
			  int *timed_out)
{
	void *cubin = NULL;
	size_t n = 0;
	int rc = mta_cuda_cubin(c->db, c->p, v, c->cuda.arch, 1, &cubin, &n);
	if (!rc)
		rc = mta_measure_cuda(c->p, v, c->o, cubin, n, 1, m, timed_out);
	free(cubin);
	return rc;
}
