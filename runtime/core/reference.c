/*
 * reference.c: the float64 reference forward of MTA.md, step by step.
 *
 * Every kernel variant is judged against this, so it favours being
 * obviously right over being fast: it follows the nine steps of MTA.md
 * literally, accumulates in double, and reads inputs of any element type
 * exactly. Its only cleverness is memory: query rows are processed in order
 * and only the halo rows the convolutions reach back to are kept (cq rows of
 * raw logits, cq2 rows of probabilities), so memory is O(H*(cq+cq2)*T)
 * rather than O(H*T^2).
 */
#include "runtime/core/error.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

static double get(const struct mta_tensor *t, int64_t off)
{
	switch (t->dtype) {
	case MTA_F32: return ((const float *)t->data)[off];
	case MTA_F64: return ((const double *)t->data)[off];
	case MTA_BF16: return mta_bf16_to_f32(((const uint16_t *)t->data)[off]);
	case MTA_F16: return mta_f16_to_f32(((const uint16_t *)t->data)[off]);
	}
	return NAN;
}

static int64_t at(const struct mta_tensor *t, int64_t b, int64_t i, int64_t h, int64_t d)
{
	return b * t->stride[0] + i * t->stride[1] + h * t->stride[2] + d * t->stride[3];
}

/*
 * Cross-correlation of one output row i with the halo rows held in ring
 * (row r lives in slot r % rows), as PyTorch's conv2d does it: kernel row
 * cq-1 is row i itself, key offset ok. Values outside [0,T) or above the
 * diagonal of their own row count as zero. Writes out[0..i].
 */
static void conv_row(const double *ring, int rows, int64_t T, int64_t i, const float *w, int cq,
		     int ck, int ok, double *out)
{
	for (int64_t j = 0; j <= i; j++) {
		double s = 0;
		for (int a = 0; a < cq; a++) {
			int64_t r = i - (cq - 1) + a;
			if (r < 0)
				continue;
			const double *row = ring + (r % rows) * T;
			for (int b = 0; b < ck; b++) {
				int64_t c = j - ok + b;
				if (c < 0 || c > r)
					continue;
				s += (double)w[a * ck + b] * row[c];
			}
		}
		out[j] = s;
	}
}

/*
 * Step 6, post-softmax head mixing, of head h, row i (j <= i): the sum over
 * the mixed heads of weight x src (the post-convolved P, m), or src itself
 * without mixing. absw: |weight| (src the post-convolved P's magnitudes:
 * the output's terms' magnitudes, mta_reference_mag).
 */
static void mix_row(const struct mta_problem *p, const struct mta_weights *w, const double *src,
		    int64_t T, int h, int64_t i, int absw, double *out)
{
	const int H = p->H;
	for (int64_t j = 0; j <= i; j++) {
		double acc = 0, wt;
		if (p->head_post == MTA_HPOST_CONV) {
			int c = p->hc, g = h / c, oo = h % c;
			for (int in = 0; in < c; in++) {
				wt = (double)w->head_post[((size_t)g * (size_t)c + (size_t)in) * (size_t)c + (size_t)oo];
				acc += (absw ? fabs(wt) : wt) * src[(size_t)(g * c + in) * (size_t)T + (size_t)j];
			}
		} else if (p->head_post == MTA_HPOST_LINEAR) {
			for (int h2 = 0; h2 < H; h2++) {
				wt = (double)w->head_post_linear[h * H + h2];
				acc += (absw ? fabs(wt) : wt) * src[(size_t)h2 * (size_t)T + (size_t)j];
			}
		} else {
			acc = src[(size_t)h * (size_t)T + (size_t)j];
		}
		out[j] = acc;
	}
}

/* mta_reference_mag; mag may be NULL (mta_reference). */
static int reference(const struct mta_problem *p, const struct mta_tensor *q,
		     const struct mta_tensor *k, const struct mta_tensor *v,
		     const struct mta_weights *w, double *out, double *mag)
{
	int64_t B, T;
	int rc = mta_check_tensors(p, q, k, v, NULL, &B, &T);
	if (rc)
		return rc;
	if (!out)
		return mta_fail(MTA_EINVAL, "reference: no output buffer");
	struct mta_weights none = { 0 };
	if (!w)
		w = &none;
	if ((rc = mta_check_weights(p, w)))
		return mta_wrap(rc, "reference");

	const int H = p->H, D = p->D, G = p->H / p->Hkv;
	const int rows1 = p->cq ? p->cq : 1, rows2 = p->cq2 ? p->cq2 : 1;
	const double scale = mta_problem_scale(p);
	const int ok1 = mta_pad_offset(p->pad, p->ck), ok2 = mta_pad_offset(p->pad, p->ck2);
	const size_t HT = (size_t)H * (size_t)T;

	double *z = calloc(HT * (size_t)rows1, sizeof *z);  /* raw logits, halo ring */
	double *pr = calloc(HT * (size_t)rows2, sizeof *pr); /* probabilities, halo ring */
	double *s = calloc(HT, sizeof *s);                  /* step 2 output, one row */
	double *m = calloc(HT, sizeof *m);                  /* step 3/5/6 scratch, one row */
	double *kd = calloc((size_t)T * (size_t)p->Hkv * (size_t)D, sizeof *kd);
	double *vd = calloc((size_t)T * (size_t)p->Hkv * (size_t)D, sizeof *vd);
	double *qd = calloc((size_t)H * (size_t)D, sizeof *qd);
	double *o = calloc((size_t)D, sizeof *o);
	/* the magnitudes: of the post-convolved P and the mixed P' (rows), of o,
	 * and the post-softmax taps' absolute values */
	double *m2 = mag ? calloc(HT, sizeof *m2) : NULL, *mp = mag ? calloc(HT, sizeof *mp) : NULL;
	double *om = mag ? calloc((size_t)D, sizeof *om) : NULL;
	const size_t nw2 = (size_t)H * (size_t)(p->cq2 * p->ck2);
	float *w2abs = mag && p->cq2 ? malloc(nw2 * sizeof *w2abs) : NULL;
	if (!z || !pr || !s || !m || !kd || !vd || !qd || !o ||
	    (mag && (!m2 || !mp || !om || (p->cq2 && !w2abs)))) {
		rc = mta_fail(MTA_ENOMEM, "reference: out of memory for T=%lld, H=%d",
			      (long long)T, H);
		goto out;
	}
	for (size_t x = 0; w2abs && x < nw2; x++)
		w2abs[x] = fabsf(w->kq_post[x]);

	for (int64_t b = 0; b < B; b++) {
		/* k, v of this batch as [t][hkv][d] doubles */
		for (int64_t t = 0; t < T; t++)
			for (int hk = 0; hk < p->Hkv; hk++)
				for (int d = 0; d < D; d++) {
					size_t x = ((size_t)t * (size_t)p->Hkv + (size_t)hk) * (size_t)D + (size_t)d;
					kd[x] = get(k, at(k, b, t, hk, d));
					vd[x] = get(v, at(v, b, t, hk, d));
				}
		memset(pr, 0, HT * (size_t)rows2 * sizeof *pr);
		memset(z, 0, HT * (size_t)rows1 * sizeof *z);

		for (int64_t i = 0; i < T; i++) {
			for (int h = 0; h < H; h++)
				for (int d = 0; d < D; d++)
					qd[h * D + d] = get(q, at(q, b, i, h, d));

			/* Step 1: scaled logits of row i, j <= i (Z is 0 above the diagonal). */
			for (int h = 0; h < H; h++) {
				double *zr = z + ((size_t)h * (size_t)rows1 + (size_t)(i % rows1)) * (size_t)T;
				const double *qh = qd + h * D;
				for (int64_t j = 0; j < T; j++) {
					if (j > i) {
						zr[j] = 0;
						continue;
					}
					const double *kj = kd + ((size_t)j * (size_t)p->Hkv + (size_t)(h / G)) * (size_t)D;
					double dot = 0;
					for (int d = 0; d < D; d++)
						dot += qh[d] * kj[d];
					zr[j] = scale * dot;
				}
				/* Step 2: pre-softmax key-query convolution. */
				double *sr = s + (size_t)h * (size_t)T;
				if (p->cq)
					conv_row(z + (size_t)h * (size_t)rows1 * (size_t)T, rows1, T, i,
						 w->kq_pre + (size_t)h * (size_t)(p->cq * p->ck), p->cq, p->ck,
						 ok1, sr);
				else
					memcpy(sr, zr, (size_t)(i + 1) * sizeof *sr);
			}

			/* Step 3: pre-softmax head mixing S[h] <- sum_h' W[h,h'] S[h']. */
			if (p->head_pre) {
				for (int h = 0; h < H; h++)
					for (int64_t j = 0; j <= i; j++) {
						double acc = 0;
						for (int h2 = 0; h2 < H; h2++)
							acc += (double)w->head_pre[h * H + h2] * s[(size_t)h2 * (size_t)T + (size_t)j];
						m[(size_t)h * (size_t)T + (size_t)j] = acc;
					}
				for (int h = 0; h < H; h++)
					memcpy(s + (size_t)h * (size_t)T, m + (size_t)h * (size_t)T,
					       (size_t)(i + 1) * sizeof *s);
			}

			/* Step 4: causal softmax over j <= i into the probability ring. */
			for (int h = 0; h < H; h++) {
				const double *sr = s + (size_t)h * (size_t)T;
				double *prow = pr + ((size_t)h * (size_t)rows2 + (size_t)(i % rows2)) * (size_t)T;
				double mx = -INFINITY, sum = 0;
				for (int64_t j = 0; j <= i; j++)
					mx = sr[j] > mx ? sr[j] : mx;
				for (int64_t j = 0; j <= i; j++)
					sum += (prow[j] = exp(sr[j] - mx));
				for (int64_t j = 0; j <= i; j++)
					prow[j] /= sum;
				for (int64_t j = i + 1; j < T; j++)
					prow[j] = 0;
			}

			/* Step 5: post-softmax key-query convolution, masked again above i. */
			for (int h = 0; h < H; h++) {
				double *mr = m + (size_t)h * (size_t)T;
				const double *ring = pr + (size_t)h * (size_t)rows2 * (size_t)T;
				if (p->cq2)
					conv_row(ring, rows2, T, i, w->kq_post + (size_t)h * (size_t)(p->cq2 * p->ck2),
						 p->cq2, p->ck2, ok2, mr);
				else
					memcpy(mr, ring + (size_t)(i % rows2) * (size_t)T, (size_t)(i + 1) * sizeof *mr);
				/* magnitudes: P >= 0, so the taps' absolute values alone */
				if (mag && p->cq2)
					conv_row(ring, rows2, T, i, w2abs + (size_t)h * (size_t)(p->cq2 * p->ck2),
						 p->cq2, p->ck2, ok2, m2 + (size_t)h * (size_t)T);
				else if (mag)
					memcpy(m2 + (size_t)h * (size_t)T, mr, (size_t)(i + 1) * sizeof *mr);
			}

			/* Step 6: post-softmax head mixing, m -> s (and the magnitudes). */
			for (int h = 0; h < H; h++) {
				mix_row(p, w, m, T, h, i, 0, s + (size_t)h * (size_t)T);
				if (mag)
					mix_row(p, w, m2, T, h, i, 1, mp + (size_t)h * (size_t)T);
			}

			/* Steps 7-9: output, group norm, gate. */
			for (int h = 0; h < H; h++) {
				const double *sr = s + (size_t)h * (size_t)T;
				memset(o, 0, (size_t)D * sizeof *o);
				if (mag)
					memset(om, 0, (size_t)D * sizeof *om);
				for (int64_t j = 0; j <= i; j++) {
					const double *vj = vd + ((size_t)j * (size_t)p->Hkv + (size_t)(h / G)) * (size_t)D;
					for (int d = 0; d < D; d++)
						o[d] += sr[j] * vj[d];
					for (int d = 0; mag && d < D; d++)
						om[d] += mp[(size_t)h * (size_t)T + (size_t)j] * fabs(vj[d]);
				}
				if (p->gn) {
					double ms = 0;
					for (int d = 0; d < D; d++)
						ms += o[d] * o[d];
					double r = 1.0 / sqrt(ms / D + 1e-5);
					double resc = p->gn_rescale ? mta_layer_rescale(w->layer_id) : 1.0;
					for (int d = 0; d < D; d++)
						o[d] = o[d] * r * (double)w->gn_weight[d] * resc;
					for (int d = 0; mag && d < D; d++)
						om[d] *= r * fabs((double)w->gn_weight[d] * resc);
				}
				if (p->gate) {
					double g = (double)(w->gate_b_ptr ? *w->gate_b_ptr : w->gate_b);
					for (int d = 0; d < D; d++)
						g += o[d] * (double)w->gate_w[d];
					double sg = 1.0 / (1.0 + exp(-g));
					for (int d = 0; d < D; d++)
						o[d] *= sg;
					for (int d = 0; mag && d < D; d++)
						om[d] *= sg;
				}
				const size_t at_o = (((size_t)b * (size_t)T + (size_t)i) * (size_t)H + (size_t)h) * (size_t)D;
				memcpy(out + at_o, o, (size_t)D * sizeof *o);
				if (mag)
					memcpy(mag + at_o, om, (size_t)D * sizeof *om);
			}
		}
	}
	rc = MTA_OK;
out:
	free(z);
	free(pr);
	free(s);
	free(m);
	free(kd);
	free(vd);
	free(qd);
	free(o);
	free(m2);
	free(mp);
	free(om);
	free(w2abs);
	return mta_done(rc);
}

int mta_reference(const struct mta_problem *p, const struct mta_tensor *q,
		  const struct mta_tensor *k, const struct mta_tensor *v,
		  const struct mta_weights *w, double *out)
{
	return reference(p, q, k, v, w, out, NULL);
}

int mta_reference_mag(const struct mta_problem *p, const struct mta_tensor *q,
		      const struct mta_tensor *k, const struct mta_tensor *v,
		      const struct mta_weights *w, double *out, double *mag)
{
	if (!mag)
		return mta_fail(MTA_EINVAL, "reference: no buffer for the magnitudes");
	return reference(p, q, k, v, w, out, mag);
}
