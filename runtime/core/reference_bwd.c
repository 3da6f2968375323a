/*
 * reference_bwd.c: the float64 reference backward of MTA.md.
 *
 * The gradient of L = sum(dout * o) with respect to q, k, v and the weights,
 * by reverse-mode differentiation of the nine steps of MTA.md, in double.
 * Like the forward reference it favours being obviously right over speed;
 * its one constraint is memory: no T x T buffer, because the backward
 * kernels it judges are checked at sequence lengths where one would not fit.
 *
 * How rows couple. Write the per-row quantities of one batch as
 *   Z (raw logits) -> S2 (kq_pre conv) -> S3 (head_pre) -> P (softmax)
 *     -> P2 (kq_post conv) -> P3 (head_post) -> O -> group norm, gate.
 * Head mixing, the softmax and everything after P3 stay within one query
 * row. The convolutions do not: S2 row i reads Z rows i-cq+1..i, P2 row i
 * reads P rows i-cq2+1..i. So backwards, dP row r is complete only once
 * dP2 rows r..r+cq2-1 are known, and dZ row r once dS2 rows r..r+cq-1 are.
 *
 * The pipeline. Step t (0 <= t < T + cq2-1 + cq-1, with cq, cq2 taken as
 * 1 when absent: a missing convolution is the identity 1x1 kernel, and a
 * missing head mixing the identity matrix) does three things:
 *   1. forward row t, its gradient back to dP2 row t (one row: needs only
 *      row t's P3 and O), and the scatter of dP2 row t into the dP rows
 *      t-cq2+1..t it came from;
 *   2. row r = t-(cq2-1), whose dP is now complete: softmax backward, head
 *      mixing backward, and the scatter of dS2 row r into dZ rows r-cq+1..r;
 *   3. row r' = r-(cq-1), whose dZ is now complete: dq row r', and its
 *      share of dk (dv was added in stage 1).
 * Each quantity is computed once; what a later stage needs is kept in a
 * ring of the last few rows. Rings of NZ = cq+cq2-1 rows of Z (stage 2's
 * kq_pre gradient reaches back that far), cq2 rows of S2, P and dP, cq rows
 * of dZ, all [H][T]; plus six single [H][T] rows (S3, P2, P3 and their
 * gradients) and one batch of k, v as doubles. Peak memory in doubles, with
 * cq, cq2 taken as 1 when absent (batches run one after another):
 *     H*T*(2*cq + 4*cq2 + 5) + 2*T*Hkv*D + 6*D + 4*H*H + 2*H*(cq*ck + cq2*ck2)
 * i.e. O(H*(cq+cq2)*T): linear in T. The caller's dk, dv are accumulated in
 * place.
 *
 * Magnitudes (g->mag, optional). Every gradient is a sum of terms (a
 * weight's over every row, key and batch), and a float32 kernel's rounding
 * error in a sum is bounded by a multiple of the float32 epsilon times the
 * sum of the terms' magnitudes, not times the sum itself. When the terms
 * cancel (a gate bias gradient of -0.006 summing terms of total magnitude
 * 91 was seen), a correct kernel's relative error against the sum is
 * large. So next to each gradient element the reference can add up
 * |term|, each term taken as the product of its factors' magnitudes (for
 * the gate, the logit's gradient's own dot product in magnitudes too), for
 * mta_compare_grad_mag to judge the kernel against.
 */
#include "runtime/core/error.h"
#include "runtime/core/kargs_bwd.h"

#include <inttypes.h>
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
 * A key-query convolution as the backward sees it: rows x cols taps per head
 * (as double), key offset ok; the identity 1x1 kernel when the problem has
 * none. grad (NULL for the identity) accumulates the taps' gradient.
 */
struct conv {
	int rows, cols, ok;
	double *w;    /* [H][rows][cols] */
	double *grad; /* [H][rows][cols], or NULL */
	double *gmag; /* [H][rows][cols]: grad's term magnitudes, or NULL */
};

/*
 * Forward of one output row i of one head: out[j] for j <= i from the input
 * rows in ring (row r in slot r % slots, each T long). As MTA.md step 2:
 * inputs outside [0,T) or above their own row's diagonal are zero.
 */
static void conv_fwd(const struct conv *c, const double *w, const double *ring, int slots,
		     int64_t T, int64_t i, double *out)
{
	for (int64_t j = 0; j <= i; j++) {
		double s = 0;
		for (int a = 0; a < c->rows; a++) {
			int64_t r = i - (c->rows - 1) + a;
			if (r < 0)
				continue;
			const double *row = ring + (size_t)(r % slots) * (size_t)T;
			for (int b = 0; b < c->cols; b++) {
				int64_t col = j - c->ok + b;
				if (col >= 0 && col <= r)
					s += w[a * c->cols + b] * row[col];
			}
		}
		out[j] = s;
	}
}

/*
 * The adjoint of conv_fwd for output row i: given dout[j] (j <= i), add
 * w * dout into the gradient rings of the input rows (dring, dslots) and,
 * when gw is set, the input values times dout into the taps' gradient gw
 * (and their magnitudes into gm, when set). Exactly the (a, b, j) terms
 * conv_fwd summed, read in reverse.
 */
static void conv_bwd(const struct conv *c, const double *w, double *gw, double *gm,
		     const double *ring, int slots, double *dring, int dslots, int64_t T,
		     int64_t i, const double *dout)
{
	for (int64_t j = 0; j <= i; j++) {
		double g = dout[j];
		for (int a = 0; a < c->rows; a++) {
			int64_t r = i - (c->rows - 1) + a;
			if (r < 0)
				continue;
			const double *row = ring + (size_t)(r % slots) * (size_t)T;
			double *drow = dring + (size_t)(r % dslots) * (size_t)T;
			for (int b = 0; b < c->cols; b++) {
				int64_t col = j - c->ok + b;
				if (col < 0 || col > r)
					continue;
				drow[col] += w[a * c->cols + b] * g;
				if (gw)
					gw[a * c->cols + b] += row[col] * g;
				if (gm)
					gm[a * c->cols + b] += fabs(row[col] * g);
			}
		}
	}
}

/*
 * out[h][j] = sum_h' M[h][h'] in[h'][j] for j <= i; in's rows are in_stride
 * apart, out's T.
 */
static void mix(const double *M, int H, const double *in, size_t in_stride, int64_t T,
		int64_t i, double *out)
{
	for (int h = 0; h < H; h++)
		for (int64_t j = 0; j <= i; j++) {
			double s = 0;
			for (int h2 = 0; h2 < H; h2++)
				s += M[h * H + h2] * in[(size_t)h2 * in_stride + (size_t)j];
			out[(size_t)h * (size_t)T + (size_t)j] = s;
		}
}

/*
 * The adjoint of mix: din[h'] = sum_h M[h][h'] dout[h]; when gM is set, also
 * gM[h][h'] += sum_j dout[h][j] * in[h'][j] (in: the forward's input rows,
 * row h' at in + h' * in_stride), and the terms' magnitudes into gMm when set.
 */
static void mix_bwd(const double *M, double *gM, double *gMm, int H, const double *in,
		    size_t in_stride, const double *dout, size_t stride, int64_t i, double *din)
{
	for (int h2 = 0; h2 < H; h2++)
		for (int64_t j = 0; j <= i; j++) {
			double s = 0;
			for (int h = 0; h < H; h++)
				s += M[h * H + h2] * dout[(size_t)h * stride + (size_t)j];
			din[(size_t)h2 * stride + (size_t)j] = s;
		}
	if (gM)
		for (int h = 0; h < H; h++)
			for (int h2 = 0; h2 < H; h2++) {
				double s = 0;
				double m = 0;
				for (int64_t j = 0; j <= i; j++) {
					double x = dout[(size_t)h * stride + (size_t)j] *
						   in[(size_t)h2 * in_stride + (size_t)j];
					s += x;
					m += fabs(x);
				}
				gM[h * H + h2] += s;
				if (gMm)
					gMm[h * H + h2] += m;
			}
}

/* Where norm_gate_bwd adds its weights' term magnitudes; dn is scratch [D]. */
struct ng_mag {
	double *dgn, *dgw, *dgb, *dn;
};

/*
 * Steps 8-9 and their gradient for one output row o[D] (before the group
 * norm), given dy = dL/d(final output): writes dL/do into d and adds the
 * weights' gradients into dgn, dgw, *dgb, and when m is set their terms'
 * magnitudes into m's (the gate logit's gradient dz = sg' * sum_e dy_e n_e
 * taken as sg' * sum_e |dy_e n_e|: a kernel rounds each product).
 */
static void norm_gate_bwd(const struct mta_problem *p, const struct mta_weights *w,
			  const double *o, const double *dy, double *n, double *dn, double *d,
			  double *dgn, double *dgw, double *dgb, const struct ng_mag *m)
{
	const int D = p->D;
	double rs = 0, resc = p->gn_rescale ? mta_layer_rescale(w->layer_id) : 1.0;
	if (p->gn) {
		double ms = 0;
		for (int e = 0; e < D; e++)
			ms += o[e] * o[e];
		rs = 1.0 / sqrt(ms / D + 1e-5);
		for (int e = 0; e < D; e++)
			n[e] = o[e] * rs * (double)w->gn_weight[e] * resc;
	} else {
		memcpy(n, o, (size_t)D * sizeof *n);
	}
	if (p->gate) {
		double z = (double)(w->gate_b_ptr ? *w->gate_b_ptr : w->gate_b), dot = 0;
		for (int e = 0; e < D; e++)
			z += n[e] * (double)w->gate_w[e];
		double sg = 1.0 / (1.0 + exp(-z));
		for (int e = 0; e < D; e++)
			dot += dy[e] * n[e];
		double dz = dot * sg * (1.0 - sg); /* dL/dz of the gate's logit z */
		for (int e = 0; e < D; e++) {
			dn[e] = dy[e] * sg + dz * (double)w->gate_w[e];
			dgw[e] += dz * n[e];
		}
		*dgb += dz;
		if (m) {
			double mz = 0;
			for (int e = 0; e < D; e++)
				mz += fabs(dy[e] * n[e]);
			mz *= sg * (1.0 - sg);
			for (int e = 0; e < D; e++) {
				m->dn[e] = fabs(dy[e]) * sg + mz * fabs((double)w->gate_w[e]);
				m->dgw[e] += mz * fabs(n[e]);
			}
			*m->dgb += mz;
		}
	} else {
		memcpy(dn, dy, (size_t)D * sizeof *dn);
		if (m)
			for (int e = 0; e < D; e++)
				m->dn[e] = fabs(dy[e]);
	}
	if (p->gn) {
		/* n = o * rs * g * resc with rs = (mean(o^2) + eps)^-1/2, drs/do_e = -rs^3 o_e / D */
		double dot = 0;
		for (int e = 0; e < D; e++) {
			dgn[e] += dn[e] * o[e] * rs * resc;
			if (m)
				m->dgn[e] += m->dn[e] * fabs(o[e] * rs * resc);
			dn[e] *= (double)w->gn_weight[e] * resc; /* now dL/d(o * rs) */
			dot += dn[e] * o[e];
		}
		for (int e = 0; e < D; e++)
			d[e] = rs * dn[e] - rs * rs * rs / D * o[e] * dot;
	} else {
		memcpy(d, dn, (size_t)D * sizeof *d);
	}
}

/* MTA_EINVAL naming the first gradient buffer the problem needs but g lacks. */
static int check_grads(const struct mta_problem *p, const struct mta_reference_grads *g)
{
	const char *miss = MTA_GRADS_MISSING(p, g);
	if (miss)
		return mta_fail(MTA_EINVAL, "reference backward: no buffer for the gradient %s, "
				"which the problem needs", miss);
	return MTA_OK;
}

/*
 * The weights' gradients (or their magnitudes) from the accumulators into
 * g's buffers, in the weights' own shapes: taps [H][rows][cols], head
 * mixing [H][H] (head_post's grouped convolution [H/c][c][c] from the
 * block-diagonal matrix it acts as), gn and gate vectors, the gate bias.
 */
static void put_weights(const struct mta_problem *p, const struct mta_reference_grads *g,
			const double *c1, const double *c2, const double *Mpre,
			const double *Mpost, const double *gn, const double *gw, double gb)
{
	const size_t H = (size_t)p->H, HH = H * H;
	if (p->cq)
		memcpy(g->kq_pre, c1, H * (size_t)(p->cq * p->ck) * sizeof *c1);
	if (p->cq2)
		memcpy(g->kq_post, c2, H * (size_t)(p->cq2 * p->ck2) * sizeof *c2);
	if (p->head_pre)
		memcpy(g->head_pre, Mpre, HH * sizeof *Mpre);
	if (p->head_post == MTA_HPOST_LINEAR)
		memcpy(g->head_post_linear, Mpost, HH * sizeof *Mpost);
	if (p->head_post == MTA_HPOST_CONV) {
		int c = p->hc;
		for (int grp = 0; grp < p->H / c; grp++)
			for (int in = 0; in < c; in++)
				for (int on = 0; on < c; on++)
					g->head_post[((size_t)grp * c + (size_t)in) * c + (size_t)on] =
						Mpost[(grp * c + on) * p->H + grp * c + in];
	}
	if (p->gn)
		memcpy(g->gn_weight, gn, (size_t)p->D * sizeof *gn);
	if (p->gate) {
		memcpy(g->gate_w, gw, (size_t)p->D * sizeof *gw);
		g->gate_b[0] = gb;
	}
}

/* dout must be [B,T,H,D] of a known element type with strides >= 0. */
static int check_dout(const struct mta_problem *p, const struct mta_tensor *t, int64_t B,
		      int64_t T)
{
	if (!t || !t->data)
		return mta_fail(MTA_EINVAL, "reference backward: the output gradient dout is missing");
	if (t->dtype != MTA_F32 && t->dtype != MTA_F64 && t->dtype != MTA_BF16 &&
	    t->dtype != MTA_F16)
		return mta_fail(MTA_ESHAPE, "reference backward: dout has an unknown element type %d",
				t->dtype);
	if (t->shape[0] != B || t->shape[1] != T || t->shape[2] != p->H || t->shape[3] != p->D)
		return mta_fail(MTA_ESHAPE, "reference backward: dout has shape [%" PRId64 ",%" PRId64
				",%" PRId64 ",%" PRId64 "], expected the output's [%" PRId64 ",%"
				PRId64 ",%d,%d]", t->shape[0], t->shape[1], t->shape[2], t->shape[3],
				B, T, p->H, p->D);
	for (int i = 0; i < 4; i++)
		if (t->stride[i] < 0)
			return mta_fail(MTA_ESHAPE, "reference backward: dout has a negative stride");
	return MTA_OK;
}

int mta_reference_backward(const struct mta_problem *p, const struct mta_tensor *q,
			   const struct mta_tensor *k, const struct mta_tensor *v,
			   const struct mta_weights *w, const struct mta_tensor *dout,
			   const struct mta_reference_grads *g)
{
	int64_t B, T;
	int rc = mta_check_tensors(p, q, k, v, NULL, &B, &T);
	if (rc)
		return mta_wrap(rc, "reference backward");
	struct mta_weights none = { 0 };
	if (!w)
		w = &none;
	if ((rc = mta_check_weights(p, w)))
		return mta_wrap(rc, "reference backward");
	if ((rc = check_dout(p, dout, B, T)) || (rc = check_grads(p, g)))
		return rc;
	const struct mta_reference_grads *m = g->mag; /* the magnitudes, or NULL */
	if (m && (rc = check_grads(p, m)))
		return mta_wrap(rc, "reference backward's magnitudes");

	const int H = p->H, Hkv = p->Hkv, D = p->D, G = p->H / p->Hkv;
	const double scale = mta_problem_scale(p);
	struct conv c1 = { p->cq ? p->cq : 1, p->cq ? p->ck : 1, p->cq ? mta_pad_offset(p->pad, p->ck) : 0,
			   NULL, NULL, NULL };
	struct conv c2 = { p->cq2 ? p->cq2 : 1, p->cq2 ? p->ck2 : 1,
			   p->cq2 ? mta_pad_offset(p->pad, p->ck2) : 0, NULL, NULL, NULL };
	const int r1 = c1.rows, r2 = c2.rows, NZ = r1 + r2 - 1;
	const size_t HT = (size_t)H * (size_t)T, HH = (size_t)H * (size_t)H;
	const size_t kvn = (size_t)T * (size_t)Hkv * (size_t)D, nt1 = (size_t)(r1 * c1.cols),
		     nt2 = (size_t)(r2 * c2.cols);

	/* rings [H][slots][T] */
	double *zr = calloc(HT * (size_t)NZ, sizeof *zr);  /* Z, raw logits */
	double *s2r = calloc(HT * (size_t)r2, sizeof *s2r); /* S2, input of head_pre */
	double *pr = calloc(HT * (size_t)r2, sizeof *pr);   /* P, probabilities */
	double *dpr = calloc(HT * (size_t)r2, sizeof *dpr); /* dP, being summed */
	double *dzr = calloc(HT * (size_t)r1, sizeof *dzr); /* dZ, being summed */
	/* single rows [H][T] */
	double *s3 = calloc(HT, sizeof *s3);
	double *p2 = calloc(HT, sizeof *p2), *p3 = calloc(HT, sizeof *p3);
	double *dp3 = calloc(HT, sizeof *dp3), *dp2 = calloc(HT, sizeof *dp2);
	double *ds3 = calloc(HT, sizeof *ds3), *ds2 = s3; /* s3 is dead by stage 2 */
	double *kd = calloc(kvn, sizeof *kd), *vd = calloc(kvn, sizeof *vd);
	double *orow = calloc((size_t)D * 5, sizeof *orow), *qd = calloc((size_t)D, sizeof *qd);
	double *Mpre = calloc(HH, sizeof *Mpre), *Mpost = calloc(HH, sizeof *Mpost);
	double *gMpre = calloc(HH, sizeof *gMpre), *gMpost = calloc(HH, sizeof *gMpost);
	double *dgn = calloc((size_t)D, sizeof *dgn), *dgw = calloc((size_t)D, sizeof *dgw), dgb = 0;
	c1.w = calloc((size_t)H * nt1, sizeof *c1.w);
	c2.w = calloc((size_t)H * nt2, sizeof *c2.w);
	c1.grad = p->cq ? calloc((size_t)H * nt1, sizeof *c1.grad) : NULL;
	c2.grad = p->cq2 ? calloc((size_t)H * nt2, sizeof *c2.grad) : NULL;
	/* the magnitudes' accumulators, when asked for */
	double *mMpre = NULL, *mMpost = NULL, mdgb = 0;
	struct ng_mag mg = { NULL, NULL, &mdgb, NULL };
	if (m) {
		c1.gmag = p->cq ? calloc((size_t)H * nt1, sizeof *c1.gmag) : NULL;
		c2.gmag = p->cq2 ? calloc((size_t)H * nt2, sizeof *c2.gmag) : NULL;
		mMpre = calloc(HH, sizeof *mMpre);
		mMpost = calloc(HH, sizeof *mMpost);
		mg.dgn = calloc((size_t)D * 3, sizeof *mg.dgn);
		mg.dgw = mg.dgn ? mg.dgn + D : NULL;
		mg.dn = mg.dgn ? mg.dgn + 2 * D : NULL;
	}
	if (!zr || !s2r || !pr || !dpr || !dzr || !s3 || !p2 || !p3 || !dp3 || !dp2 ||
	    !ds3 || !kd || !vd || !orow || !qd || !Mpre || !Mpost || !gMpre || !gMpost || !dgn ||
	    !dgw || !c1.w || !c2.w || (p->cq && !c1.grad) || (p->cq2 && !c2.grad) ||
	    (m && (!mMpre || !mMpost || !mg.dgn || (p->cq && !c1.gmag) || (p->cq2 && !c2.gmag)))) {
		rc = mta_fail(MTA_ENOMEM, "reference backward: out of memory for T=%" PRId64
			      ", H=%d", T, H);
		goto out;
	}
	double *o = orow, *dy = orow + D, *nrm = orow + 2 * D, *dn = orow + 3 * D,
	       *dop = orow + 4 * D;

	/* The parts as double: absent ones are identities. */
	for (int h = 0; h < H; h++) {
		for (size_t x = 0; x < nt1; x++)
			c1.w[(size_t)h * nt1 + x] = p->cq ? (double)w->kq_pre[(size_t)h * nt1 + x] : 1.0;
		for (size_t x = 0; x < nt2; x++)
			c2.w[(size_t)h * nt2 + x] = p->cq2 ? (double)w->kq_post[(size_t)h * nt2 + x] : 1.0;
		for (int h2 = 0; h2 < H; h2++) {
			Mpre[h * H + h2] = p->head_pre ? (double)w->head_pre[h * H + h2] : h == h2;
			if (p->head_post == MTA_HPOST_LINEAR) {
				Mpost[h * H + h2] = (double)w->head_post_linear[h * H + h2];
			} else if (p->head_post == MTA_HPOST_CONV) {
				/* head h = grp*c + o reads heads grp*c + i with head_post[grp,i,o] */
				int c = p->hc, grp = h / c;
				Mpost[h * H + h2] = h2 / c == grp ?
					(double)w->head_post[((size_t)grp * c + (size_t)(h2 % c)) * c + (size_t)(h % c)] : 0.0;
			} else {
				Mpost[h * H + h2] = h == h2;
			}
		}
	}
	double *gpre = p->head_pre ? gMpre : NULL, *gpost = p->head_post ? gMpost : NULL;
	double *mpre = m && p->head_pre ? mMpre : NULL, *mpost = m && p->head_post ? mMpost : NULL;

	memset(g->dk, 0, (size_t)B * kvn * sizeof *g->dk);
	memset(g->dv, 0, (size_t)B * kvn * sizeof *g->dv);
	if (m) {
		memset(m->dk, 0, (size_t)B * kvn * sizeof *m->dk);
		memset(m->dv, 0, (size_t)B * kvn * sizeof *m->dv);
	}
	for (int64_t b = 0; b < B; b++) {
		double *dk = g->dk + (size_t)b * kvn, *dv = g->dv + (size_t)b * kvn;
		double *mk = m ? m->dk + (size_t)b * kvn : NULL, *mv = m ? m->dv + (size_t)b * kvn : NULL;
		for (int64_t t = 0; t < T; t++)
			for (int hk = 0; hk < Hkv; hk++)
				for (int e = 0; e < D; e++) {
					size_t x = ((size_t)t * (size_t)Hkv + (size_t)hk) * (size_t)D + (size_t)e;
					kd[x] = get(k, at(k, b, t, hk, e));
					vd[x] = get(v, at(v, b, t, hk, e));
				}
		memset(zr, 0, HT * (size_t)NZ * sizeof *zr);
		memset(pr, 0, HT * (size_t)r2 * sizeof *pr);

		for (int64_t t = 0; t < T + (r2 - 1) + (r1 - 1); t++) {
			/* ---- stage 1: forward row i = t, back to dP2, scattered into dP ---- */
			int64_t i = t;
			if (i < T) {
				for (int h = 0; h < H; h++) {
					const int hk = h / G;
					double *zrow = zr + ((size_t)h * (size_t)NZ + (size_t)(i % NZ)) * (size_t)T;
					for (int e = 0; e < D; e++)
						qd[e] = get(q, at(q, b, i, h, e));
					for (int64_t j = 0; j <= i; j++) {
						double dot = 0;
						const double *kj = kd + ((size_t)j * (size_t)Hkv + (size_t)hk) * (size_t)D;
						for (int e = 0; e < D; e++)
							dot += qd[e] * kj[e];
						zrow[j] = scale * dot;
					}
					for (int64_t j = i + 1; j < T; j++)
						zrow[j] = 0;
					conv_fwd(&c1, c1.w + (size_t)h * nt1, zr + (size_t)h * (size_t)NZ * (size_t)T,
						 NZ, T, i, s2r + ((size_t)h * (size_t)r2 + (size_t)(i % r2)) * (size_t)T);
				}
				/* S2 row i is slot i % r2 of each head's ring: rows r2*T apart */
				mix(Mpre, H, s2r + (size_t)(i % r2) * (size_t)T, (size_t)r2 * (size_t)T, T, i, s3);
				for (int h = 0; h < H; h++) {
					const double *sr = s3 + (size_t)h * (size_t)T;
					double *prow = pr + ((size_t)h * (size_t)r2 + (size_t)(i % r2)) * (size_t)T;
					double mx = -INFINITY, sum = 0;
					for (int64_t j = 0; j <= i; j++)
						mx = sr[j] > mx ? sr[j] : mx;
					for (int64_t j = 0; j <= i; j++)
						sum += (prow[j] = exp(sr[j] - mx));
					for (int64_t j = 0; j < T; j++)
						prow[j] = j <= i ? prow[j] / sum : 0.0;
					conv_fwd(&c2, c2.w + (size_t)h * nt2, pr + (size_t)h * (size_t)r2 * (size_t)T,
						 r2, T, i, p2 + (size_t)h * (size_t)T);
				}
				mix(Mpost, H, p2, (size_t)T, T, i, p3);
				for (int h = 0; h < H; h++) {
					const int hk = h / G;
					const double *prow = p3 + (size_t)h * (size_t)T;
					double *dprow = dp3 + (size_t)h * (size_t)T;
					memset(o, 0, (size_t)D * sizeof *o);
					for (int64_t j = 0; j <= i; j++) {
						const double *vj = vd + ((size_t)j * (size_t)Hkv + (size_t)hk) * (size_t)D;
						for (int e = 0; e < D; e++)
							o[e] += prow[j] * vj[e];
					}
					for (int e = 0; e < D; e++)
						dy[e] = get(dout, at(dout, b, i, h, e));
					norm_gate_bwd(p, w, o, dy, nrm, dn, dop, dgn, dgw, &dgb, m ? &mg : NULL);
					/* o = sum_j P3[j] v[j]: dP3[j] = dop . v[j], dv[j] += P3[j] dop */
					for (int64_t j = 0; j <= i; j++) {
						const double *vj = vd + ((size_t)j * (size_t)Hkv + (size_t)hk) * (size_t)D;
						double *dvj = dv + ((size_t)j * (size_t)Hkv + (size_t)hk) * (size_t)D;
						double s = 0;
						for (int e = 0; e < D; e++) {
							s += dop[e] * vj[e];
							dvj[e] += prow[j] * dop[e];
						}
						dprow[j] = s;
						if (mv) {
							double *mvj = mv + ((size_t)j * (size_t)Hkv + (size_t)hk) * (size_t)D;
							for (int e = 0; e < D; e++)
								mvj[e] += fabs(prow[j] * dop[e]);
						}
					}
				}
				mix_bwd(Mpost, gpost, mpost, H, p2, (size_t)T, dp3, (size_t)T, i, dp2);
				for (int h = 0; h < H; h++) {
					double *dring = dpr + (size_t)h * (size_t)r2 * (size_t)T;
					memset(dring + (size_t)(i % r2) * (size_t)T, 0, (size_t)T * sizeof *dring);
					conv_bwd(&c2, c2.w + (size_t)h * nt2, c2.grad ? c2.grad + (size_t)h * nt2 : NULL,
						 c2.gmag ? c2.gmag + (size_t)h * nt2 : NULL, pr + (size_t)h * (size_t)r2 * (size_t)T, r2, dring, r2, T, i,
						 dp2 + (size_t)h * (size_t)T);
				}
			}

			/* ---- stage 2: row r's dP is complete: softmax, head_pre, into dZ ---- */
			int64_t r = t - (r2 - 1);
			if (r >= 0 && r < T) {
				for (int h = 0; h < H; h++) {
					const double *prow = pr + ((size_t)h * (size_t)r2 + (size_t)(r % r2)) * (size_t)T;
					const double *dprow = dpr + ((size_t)h * (size_t)r2 + (size_t)(r % r2)) * (size_t)T;
					double *d3 = ds3 + (size_t)h * (size_t)T, dot = 0;
					for (int64_t j = 0; j <= r; j++)
						dot += prow[j] * dprow[j];
					for (int64_t j = 0; j <= r; j++)
						d3[j] = prow[j] * (dprow[j] - dot);
				}
				/* S2 row r, for head_pre's gradient, is in slot r % r2 of s2r */
				mix_bwd(Mpre, gpre, mpre, H, s2r + (size_t)(r % r2) * (size_t)T, (size_t)r2 * (size_t)T,
					ds3, (size_t)T, r, ds2);
				for (int h = 0; h < H; h++) {
					double *dring = dzr + (size_t)h * (size_t)r1 * (size_t)T;
					memset(dring + (size_t)(r % r1) * (size_t)T, 0, (size_t)T * sizeof *dring);
					conv_bwd(&c1, c1.w + (size_t)h * nt1, c1.grad ? c1.grad + (size_t)h * nt1 : NULL,
						 c1.gmag ? c1.gmag + (size_t)h * nt1 : NULL, zr + (size_t)h * (size_t)NZ * (size_t)T, NZ, dring, r1, T, r,
						 ds2 + (size_t)h * (size_t)T);
				}
			}

			/* ---- stage 3: row rz's dZ is complete: dq, and its share of dk ---- */
			int64_t rz = r - (r1 - 1);
			if (rz >= 0 && rz < T) {
				for (int h = 0; h < H; h++) {
					const int hk = h / G;
					const double *dzrow = dzr + ((size_t)h * (size_t)r1 + (size_t)(rz % r1)) * (size_t)T;
					double *dqr = g->dq + (((size_t)b * (size_t)T + (size_t)rz) * (size_t)H + (size_t)h) * (size_t)D;
					for (int e = 0; e < D; e++) {
						qd[e] = get(q, at(q, b, rz, h, e));
						dqr[e] = 0;
					}
					double *mqr = m ? m->dq + (dqr - g->dq) : NULL;
					if (mqr)
						memset(mqr, 0, (size_t)D * sizeof *mqr);
					for (int64_t c = 0; c <= rz; c++) {
						double gz = scale * dzrow[c];
						const double *kc = kd + ((size_t)c * (size_t)Hkv + (size_t)hk) * (size_t)D;
						double *dkc = dk + ((size_t)c * (size_t)Hkv + (size_t)hk) * (size_t)D;
						for (int e = 0; e < D; e++) {
							dqr[e] += gz * kc[e];
							dkc[e] += gz * qd[e];
						}
						if (mqr) {
							double *mkc = mk + (dkc - dk);
							for (int e = 0; e < D; e++) {
								mqr[e] += fabs(gz * kc[e]);
								mkc[e] += fabs(gz * qd[e]);
							}
						}
					}
				}
			}
		}
	}

	put_weights(p, g, c1.grad, c2.grad, gMpre, gMpost, dgn, dgw, dgb);
	if (m)
		put_weights(p, m, c1.gmag, c2.gmag, mMpre, mMpost, mg.dgn, mg.dgw, mdgb);
	rc = MTA_OK;
out:
	free(zr);
	free(s2r);
	free(pr);
	free(dpr);
	free(dzr);
	free(s3);
	free(p2);
	free(p3);
	free(dp3);
	free(dp2);
	free(ds3);
	free(kd);
	free(vd);
	free(orow);
	free(qd);
	free(Mpre);
	free(Mpost);
	free(gMpre);
	free(gMpost);
	free(dgn);
	free(dgw);
	free(c1.w);
	free(c2.w);
	free(c1.grad);
	free(c2.grad);
	free(c1.gmag);
	free(c2.gmag);
	free(mMpre);
	free(mMpost);
	free(mg.dgn);
	return mta_done(rc);
}
