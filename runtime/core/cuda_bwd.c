/*
 * cuda_bwd.c: the CUDA backward's launch plan from its shape (cuda_bwd.h).
 */
#include "runtime/core/cuda_bwd.h"
#include "runtime/core/error.h"

#include <stdlib.h>
#include <string.h>

/* What a task costs, about: its rows and halo rows, each as long as its index. */
static double task_cost(long long i0, long long i1, long long halo)
{
	return (double)(i1 - i0 + halo) * (double)((i0 + i1) / 2 + 64);
}

int mta_cuda_bwd_plan(const struct mta_problem *p, const struct mta_cuda_bwd_shape *s, int64_t B,
		      int64_t T, struct mta_cuda_bwd_dims *d, long long *plan)
{
	int rc;
	memset(d, 0, sizeof *d);
	if ((rc = mta_problem_validate(p)))
		return rc;
	if (!s || s->bq < 1 || s->warps < 1 || s->warps > 32 || s->nb < 1)
		return mta_fail(MTA_EINVAL, "the CUDA backward's shape bq=%d, warps=%d, nb=%d: "
				"expected bq and nb 1 or more, warps 1 to 32", s ? s->bq : 0,
				s ? s->warps : 0, s ? s->nb : 0);
	if (B < 1 || B > 65535 || T < 1 || T > (1 << 30))
		return mta_fail(MTA_EINVAL, "B=%lld, T=%lld: the CUDA backward takes 1 <= B <= 65535 "
				"and 1 <= T <= 2^30", (long long)B, (long long)T);
	const long long H = p->H, D = p->D, br = s->bq;
	const long long cq1 = p->cq ? p->cq : 1, ck1 = p->cq ? p->ck : 1;
	const long long cq2 = p->cq2 ? p->cq2 : 1, ck2 = p->cq2 ? p->ck2 : 1;
	const long long nzr = cq1 + cq2 - 1, nblk = (T + br - 1) / br, ntasks = B * nblk;
	const long long kvn = B * T * p->Hkv * D, halo = nzr - 1;
	d->threads = 32u * (unsigned)s->warps;
	d->nb = (unsigned)(ntasks < s->nb ? ntasks : s->nb);
	d->ntasks = ntasks;
	d->smem_bytes = 4 * (size_t)(4 * H * D + 2 * H + 32);
	d->ws_stride = 2 * br * H * D + H * (nzr + 3 * cq2 + cq1 + 7 + 2 * br) * T;
	/*
	 * The plan: cut the tasks where the running cost passes w/nb of the
	 * total, each block at least one task; then each block's partial rows.
	 */
	const long long nb = d->nb;
	long long *own = NULL;
	if (!plan && !(plan = own = malloc(sizeof *plan * 2 * (size_t)(nb + 1))))
		return mta_fail(MTA_ENOMEM, "out of memory for the CUDA backward's plan");
	double total = 0, run = 0;
	for (long long x = 0; x < ntasks; x++) {
		const long long i0 = x % nblk * br, i1 = i0 + br < T ? i0 + br : T;
		total += task_cost(i0, i1, halo);
	}
	long long w = 0, rows = 0;
	for (long long x = 0; x < ntasks; x++) {
		/* block w starts at x when the cost before x reaches its share, or must */
		if (w < nb && (w == 0 || x == ntasks - (nb - w) ||
			       run >= total * (double)w / (double)nb))
			plan[w++] = x;
		const long long i0 = x % nblk * br, i1 = i0 + br < T ? i0 + br : T;
		run += task_cost(i0, i1, halo);
	}
	plan[nb] = ntasks;
	/* block w's partial: for each batch of its range, keys [0, its last row there) */
	for (w = 0; w < nb; w++) {
		const long long t0 = plan[w], t1 = plan[w + 1];
		const long long b0 = t0 / nblk, b1 = (t1 - 1) / nblk;
		const long long e1 = ((t1 - 1) % nblk + 1) * br;
		plan[nb + 1 + w] = rows;
		rows += (b1 - b0) * T + (e1 < T ? e1 : T);
	}
	plan[2 * nb + 1] = rows;
	free(own);
	d->part_rows = rows;
	d->part_floats = 2 * rows * p->Hkv * D;
	d->wg_k1 = 0;
	d->wg_pre = d->wg_k1 + (int)(H * cq1 * ck1);
	d->wg_k2 = d->wg_pre + (int)(H * H);
	d->wg_post = d->wg_k2 + (int)(H * cq2 * ck2);
	d->wg_gn = d->wg_post + (int)(H * H);
	d->wg_gw = d->wg_gn + (int)D;
	d->wg_gb = d->wg_gw + (int)D;
	d->wg_n = d->wg_gb + 1;
	d->reduce_blocks = (unsigned)((2 * kvn + d->wg_n + d->threads - 1) / d->threads);
	return MTA_OK;
}
