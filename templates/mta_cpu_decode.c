/*
 * mta_cpu_decode.c: the generated C decode kernel: one new row of each
 * sequence of a decode cache (runtime/core/mta_dargs.h), specialised by the
 * K_ #defines of gen/defines.c in front of it (sizes and options are
 * constants, so unused steps vanish and loops over D and the kernel window
 * unroll). float32 throughout; the steps are MTA.md's, for one query row:
 * logits against every cached key, the convolutions over the rings of the
 * previous rows' logits and probabilities, head mixing, softmax, P.V, group
 * norm and gate.
 */
#include "runtime/core/mta_dargs.h"

#include <math.h>
#include <string.h>

/* Defaults so that the template compiles on its own (the generator defines them all). */
#ifndef K_H
#define K_H 4          /* heads */
#define K_HKV 2        /* key/value heads */
#define K_D 16         /* head size */
#define K_CQ 3         /* kq_pre rows (0: none) */
#define K_CK 5         /* kq_pre columns */
#define K_OK 2         /* kq_pre key offset */
#define K_HPRE 1       /* head_pre linear mixing */
#define K_CQ2 2        /* kq_post rows (0: none) */
#define K_CK2 3        /* kq_post columns */
#define K_OK2 1        /* kq_post key offset */
#define K_HPOST 1      /* 0 none, 1 head_post conv, 2 head_post_linear */
#define K_HC 2         /* head_post group size */
#define K_GN 1         /* group norm */
#define K_GNR 1        /* group norm layer rescale */
#define K_GATE 1       /* sigmoid gate */
#define K_SCALE 0.25f  /* softmax scale */
#endif

#define R1 (K_CQ ? K_CQ : 1)
#define R2 (K_CQ2 ? K_CQ2 : 1)
#define GQ (K_H / K_HKV)

const struct mta_dinfo mta_cpu_decode_info = {
	MTA_DARGS_ABI, (int)sizeof(struct mta_dargs), (int)sizeof(struct mta_dseq)
};

/*
 * out[j] = sum_{a<cq, b<ck} w[a][b] * ring row (i-cq+1+a) at column j-ok+b,
 * j <= i; entries above their own row's diagonal or before row 0 are zero.
 */
static void conv_row(const float *ring, int64_t cap, int64_t i, const float *w, int cq,
		     int ck, int ok, int rows, float *out)
{
	for (int64_t j = 0; j <= i; j++)
		out[j] = 0.0f;
	for (int a = 0; a < cq; a++) {
		const int64_t r = i - (cq - 1) + a;
		if (r < 0)
			continue;
		const float *row = ring + (r % rows) * cap;
		for (int b = 0; b < ck; b++) {
			const float wv = w[a * ck + b];
			/* column c = j - ok + b in [0, r]: j in [ok - b, r + ok - b] and [0, i] */
			int64_t j0 = ok - b, j1 = r + ok - b;
			if (j0 < 0)
				j0 = 0;
			if (j1 > i)
				j1 = i;
			const float *src = row - ok + b;
			for (int64_t j = j0; j <= j1; j++)
				out[j] += wv * src[j];
		}
	}
}

static void one(const struct mta_dargs *a, const struct mta_dseq *sq, const float *q, float *o)
{
	const int64_t i = sq->pos, cap = sq->cap, sc = a->scap;
	float *s = a->s, *m = a->m;
	for (int h = 0; h < K_H; h++) { /* steps 1-2 */
		float *zr = sq->z + ((int64_t)h * R1 + i % R1) * cap;
		const float *qh = q + h * K_D;
		for (int64_t j = 0; j <= i; j++) {
			const float *kj = sq->k + (j * K_HKV + h / GQ) * K_D;
			float dot = 0.0f;
			for (int d = 0; d < K_D; d++)
				dot += qh[d] * kj[d];
			zr[j] = K_SCALE * dot;
		}
#if K_CQ
		conv_row(sq->z + (int64_t)h * R1 * cap, cap, i, a->kq_pre + h * K_CQ * K_CK, K_CQ,
			 K_CK, K_OK, R1, s + h * sc);
#else
		memcpy(s + h * sc, zr, sizeof(float) * (size_t)(i + 1));
#endif
	}
#if K_HPRE /* step 3 */
	for (int h = 0; h < K_H; h++) {
		float *mr = m + h * sc;
		for (int64_t j = 0; j <= i; j++)
			mr[j] = 0.0f;
		for (int h2 = 0; h2 < K_H; h2++) {
			const float wv = a->head_pre[h * K_H + h2], *sr = s + h2 * sc;
			for (int64_t j = 0; j <= i; j++)
				mr[j] += wv * sr[j];
		}
	}
	memcpy(s, m, sizeof(float) * (size_t)(K_H * sc));
#endif
	for (int h = 0; h < K_H; h++) { /* step 4: softmax into the probability ring */
		const float *sr = s + h * sc;
		float *pw = sq->p + ((int64_t)h * R2 + i % R2) * cap, mx = -INFINITY, sum = 0.0f;
		for (int64_t j = 0; j <= i; j++)
			mx = sr[j] > mx ? sr[j] : mx;
		for (int64_t j = 0; j <= i; j++)
			sum += (pw[j] = expf(sr[j] - mx));
		const float inv = 1.0f / sum;
		for (int64_t j = 0; j <= i; j++)
			pw[j] *= inv;
	}
	for (int h = 0; h < K_H; h++) { /* step 5 into m */
#if K_CQ2
		conv_row(sq->p + (int64_t)h * R2 * cap, cap, i, a->kq_post + h * K_CQ2 * K_CK2, K_CQ2,
			 K_CK2, K_OK2, R2, m + h * sc);
#else
		memcpy(m + h * sc, sq->p + ((int64_t)h * R2 + i % R2) * cap,
		       sizeof(float) * (size_t)(i + 1));
#endif
	}
	for (int h = 0; h < K_H; h++) { /* step 6: m -> s */
		float *sr = s + h * sc;
#if K_HPOST == 1
		const int g = h / K_HC, oo = h % K_HC;
		for (int64_t j = 0; j <= i; j++)
			sr[j] = 0.0f;
		for (int in = 0; in < K_HC; in++) {
			const float wv = a->head_post[(g * K_HC + in) * K_HC + oo];
			const float *mr = m + (g * K_HC + in) * sc;
			for (int64_t j = 0; j <= i; j++)
				sr[j] += wv * mr[j];
		}
#elif K_HPOST == 2
		for (int64_t j = 0; j <= i; j++)
			sr[j] = 0.0f;
		for (int h2 = 0; h2 < K_H; h2++) {
			const float wv = a->head_post_linear[h * K_H + h2], *mr = m + h2 * sc;
			for (int64_t j = 0; j <= i; j++)
				sr[j] += wv * mr[j];
		}
#else
		memcpy(sr, m + h * sc, sizeof(float) * (size_t)(i + 1));
#endif
	}
	for (int h = 0; h < K_H; h++) { /* steps 7-9 */
		const float *sr = s + h * sc;
		float ov[K_D];
		for (int d = 0; d < K_D; d++)
			ov[d] = 0.0f;
		for (int64_t j = 0; j <= i; j++) {
			const float pj = sr[j], *vj = sq->v + (j * K_HKV + h / GQ) * K_D;
			for (int d = 0; d < K_D; d++)
				ov[d] += pj * vj[d];
		}
#if K_GN
		float ms = 0.0f;
		for (int d = 0; d < K_D; d++)
			ms += ov[d] * ov[d];
		const float rs = (1.0f / sqrtf(ms / K_D + 1e-5f)) * (K_GNR ? a->gn_rescale : 1.0f);
		for (int d = 0; d < K_D; d++)
			ov[d] = ov[d] * rs * a->gn_weight[d];
#endif
#if K_GATE
		float g = a->gate_b;
		for (int d = 0; d < K_D; d++)
			g += ov[d] * a->gate_w[d];
		const float sg = 1.0f / (1.0f + expf(-g));
		for (int d = 0; d < K_D; d++)
			ov[d] *= sg;
#endif
		memcpy(o + h * K_D, ov, sizeof ov);
	}
}

int mta_cpu_decode(const struct mta_dargs *a)
{
	if (!a || a->n < 0 || !a->s || !a->m)
		return 2;
	for (int64_t b = 0; b < a->n; b++) {
		if (a->seq[b].pos < 0 || a->seq[b].pos >= a->scap || a->seq[b].pos >= a->seq[b].cap)
			return 2;
		one(a, &a->seq[b], a->q + b * K_H * K_D, a->o + b * K_H * K_D);
	}
	return 0;
}
