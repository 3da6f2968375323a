/*
 * test_reference.c: properties of the float64 reference, checked against
 * independent computations written here from MTA.md with whole T x T
 * matrices (the reference itself streams rows through ring buffers).
 */
#include "tests/harness.h"
#include "runtime/mta.h"

struct case_data {
	struct mta_problem p;
	int B, T;
	float *q, *k, *v, *kq_pre, *head_pre, *kq_post, *head_post, *hpl, *gn, *gw;
	struct mta_weights w;
	struct mta_tensor tq, tk, tv;
};

static float *rnd(size_t n, double amp)
{
	float *x = malloc(n * sizeof *x);
	for (size_t i = 0; i < n; i++)
		x[i] = (float)(amp * mt_uniform());
	return x;
}

static void setup(struct case_data *c, int B, int T)
{
	const struct mta_problem *p = &c->p;
	c->B = B;
	c->T = T;
	c->q = rnd((size_t)B * T * p->H * p->D, 1.0);
	c->k = rnd((size_t)B * T * p->Hkv * p->D, 1.0);
	c->v = rnd((size_t)B * T * p->Hkv * p->D, 1.0);
	c->kq_pre = rnd((size_t)p->H * (p->cq * p->ck + 1), 0.5);
	c->head_pre = rnd((size_t)p->H * p->H, 0.5);
	c->kq_post = rnd((size_t)p->H * (p->cq2 * p->ck2 + 1), 0.5);
	c->head_post = rnd((size_t)p->H * (p->H + 1), 0.5);
	c->hpl = rnd((size_t)p->H * p->H, 0.5);
	c->gn = rnd((size_t)p->D, 1.0);
	c->gw = rnd((size_t)p->D, 1.0);
	c->w = (struct mta_weights){ c->kq_pre, c->head_pre, c->kq_post, c->head_post, c->hpl,
				     c->gn, c->gw, (float)mt_uniform(), 3, NULL };
	mta_tensor_init(&c->tq, c->q, MTA_F32, B, T, p->H, p->D);
	mta_tensor_init(&c->tk, c->k, MTA_F32, B, T, p->Hkv, p->D);
	mta_tensor_init(&c->tv, c->v, MTA_F32, B, T, p->Hkv, p->D);
}

static void release(struct case_data *c)
{
	free(c->q); free(c->k); free(c->v); free(c->kq_pre); free(c->head_pre);
	free(c->kq_post); free(c->head_post); free(c->hpl); free(c->gn); free(c->gw);
}

static double *run_ref(struct case_data *c)
{
	size_t n = (size_t)c->B * c->T * c->p.H * c->p.D;
	double *o = malloc(n * sizeof *o);
	for (size_t i = 0; i < n; i++)
		o[i] = NAN;
	int rc = mta_reference(&c->p, &c->tq, &c->tk, &c->tv, &c->w, o);
	if (rc) {
		mt_fail(__FILE__, __LINE__, "mta_reference: %s", mta_last_error());
		free(o);
		return NULL;
	}
	return o;
}

/* The whole forward with T x T matrices, straight from MTA.md. */
static double *naive(const struct case_data *c)
{
	const struct mta_problem *p = &c->p;
	int T = c->T, H = p->H, D = p->D, G = p->H / p->Hkv;
	size_t TT = (size_t)T * T;
	double *S = calloc((size_t)H * TT, sizeof *S), *X = calloc((size_t)H * TT, sizeof *X);
	double *out = calloc((size_t)c->B * T * H * D, sizeof *out);
	double s = mta_problem_scale(p);
#define Q(b, i, h, d) c->q[(((size_t)(b) * T + (i)) * H + (h)) * D + (d)]
#define K(b, i, h, d) c->k[(((size_t)(b) * T + (i)) * p->Hkv + (h)) * D + (d)]
#define V(b, i, h, d) c->v[(((size_t)(b) * T + (i)) * p->Hkv + (h)) * D + (d)]
#define M(A, h, i, j) A[(size_t)(h) * TT + (size_t)(i) * T + (j)]
	for (int b = 0; b < c->B; b++) {
		for (int h = 0; h < H; h++)
			for (int i = 0; i < T; i++)
				for (int j = 0; j < T; j++) {
					double d = 0;
					for (int e = 0; e < D; e++)
						d += (double)Q(b, i, h, e) * K(b, j, h / G, e);
					M(S, h, i, j) = s * d;
				}
		if (p->cq) { /* step 2 on Z = S masked to 0 */
			int ok = mta_pad_offset(p->pad, p->ck);
			for (int h = 0; h < H; h++)
				for (int i = 0; i < T; i++)
					for (int j = 0; j < T; j++) {
						double a = 0;
						for (int x = 0; x < p->cq; x++)
							for (int y = 0; y < p->ck; y++) {
								int r = i - (p->cq - 1) + x, cc = j - ok + y;
								if (r >= 0 && cc >= 0 && cc < T && cc <= r)
									a += c->kq_pre[(h * p->cq + x) * p->ck + y] * M(S, h, r, cc);
							}
						M(X, h, i, j) = a;
					}
			memcpy(S, X, (size_t)H * TT * sizeof *S);
		}
		if (p->head_pre) {
			for (int h = 0; h < H; h++)
				for (size_t ij = 0; ij < TT; ij++) {
					double a = 0;
					for (int h2 = 0; h2 < H; h2++)
						a += c->head_pre[h * H + h2] * S[(size_t)h2 * TT + ij];
					X[(size_t)h * TT + ij] = a;
				}
			memcpy(S, X, (size_t)H * TT * sizeof *S);
		}
		for (int h = 0; h < H; h++) /* step 4 */
			for (int i = 0; i < T; i++) {
				double mx = -INFINITY, sum = 0;
				for (int j = 0; j <= i; j++)
					mx = fmax(mx, M(S, h, i, j));
				for (int j = 0; j < T; j++)
					sum += M(S, h, i, j) = j <= i ? exp(M(S, h, i, j) - mx) : 0;
				for (int j = 0; j < T; j++)
					M(S, h, i, j) /= sum;
			}
		if (p->cq2) {
			int ok = mta_pad_offset(p->pad, p->ck2);
			for (int h = 0; h < H; h++)
				for (int i = 0; i < T; i++)
					for (int j = 0; j < T; j++) {
						double a = 0;
						for (int x = 0; x < p->cq2; x++)
							for (int y = 0; y < p->ck2; y++) {
								int r = i - (p->cq2 - 1) + x, cc = j - ok + y;
								if (r >= 0 && cc >= 0 && cc < T)
									a += c->kq_post[(h * p->cq2 + x) * p->ck2 + y] * M(S, h, r, cc);
							}
						M(X, h, i, j) = j <= i ? a : 0;
					}
			memcpy(S, X, (size_t)H * TT * sizeof *S);
		}
		if (p->head_post) {
			for (int h = 0; h < H; h++)
				for (size_t ij = 0; ij < TT; ij++) {
					double a = 0;
					if (p->head_post == MTA_HPOST_LINEAR)
						for (int h2 = 0; h2 < H; h2++)
							a += c->hpl[h * H + h2] * S[(size_t)h2 * TT + ij];
					else
						for (int in = 0; in < p->hc; in++)
							a += c->head_post[((h / p->hc) * p->hc + in) * p->hc + h % p->hc] *
							     S[(size_t)((h / p->hc) * p->hc + in) * TT + ij];
					X[(size_t)h * TT + ij] = a;
				}
			memcpy(S, X, (size_t)H * TT * sizeof *S);
		}
		for (int i = 0; i < T; i++)
			for (int h = 0; h < H; h++) {
				double *o = out + (((size_t)b * T + i) * H + h) * D;
				for (int e = 0; e < D; e++)
					for (int j = 0; j < T; j++)
						o[e] += M(S, h, i, j) * V(b, j, h / G, e);
				if (p->gn) {
					double ms = 0;
					for (int e = 0; e < D; e++)
						ms += o[e] * o[e] / D;
					for (int e = 0; e < D; e++)
						o[e] *= c->gn[e] / sqrt(ms + 1e-5) *
							(p->gn_rescale ? 1 - (0.8 - 0.6 * exp(-0.3 * c->w.layer_id)) : 1);
				}
				if (p->gate) {
					double g = c->w.gate_b;
					for (int e = 0; e < D; e++)
						g += o[e] * c->gw[e];
					for (int e = 0; e < D; e++)
						o[e] /= 1 + exp(-g);
				}
			}
	}
	free(S);
	free(X);
	return out;
#undef Q
#undef K
#undef V
#undef M
}

static int pick(int lo, int hi) { return lo + (int)((mt_uniform() + 1) / 2 * (hi - lo + 1)) % (hi - lo + 1); }

TEST(reference_matches_whole_matrix_forward_on_random_problems)
{
	for (int n = 0; n < 60; n++) {
		struct case_data c = { 0 };
		int hkv = pick(1, 2), H = hkv * pick(1, 3);
		mta_problem_init(&c.p, H, hkv, pick(1, 9));
		c.p.pad = pick(0, 2);
		if (pick(0, 3)) {
			c.p.cq = pick(1, 5);
			c.p.ck = pick(1, 7) | (c.p.pad == MTA_PAD_BOTH);
		}
		c.p.head_pre = pick(0, 1);
		if (pick(0, 1)) {
			c.p.cq2 = pick(1, 5);
			c.p.ck2 = pick(1, 7) | (c.p.pad == MTA_PAD_BOTH);
		}
		int hp = pick(0, 2);
		if (hp == 1) {
			c.p.head_post = MTA_HPOST_CONV;
			c.p.hc = H % 2 ? (H % 3 ? 1 : 3) : 2;
		} else if (hp == 2) {
			c.p.head_post = MTA_HPOST_LINEAR;
		}
		c.p.gn = pick(0, 1);
		c.p.gn_rescale = c.p.gn && pick(0, 1);
		c.p.gate = pick(0, 1);
		if (pick(0, 1))
			c.p.scale = 0.3f;
		REQUIRE(mta_problem_validate(&c.p) == MTA_OK);
		setup(&c, pick(1, 2), pick(1, 14)); /* T from 1: shorter than the kernels too */
		double *r = run_ref(&c), *e = naive(&c);
		size_t cnt = (size_t)c.B * c.T * H * c.p.D;
		char key[MTA_KEY_MAX];
		mta_problem_key(&c.p, key, sizeof key);
		if (r)
			CHECKF(mt_rel_l2_f64(r, e, cnt) < 1e-12, "%s T=%d: rel err %g", key, c.T,
			       mt_rel_l2_f64(r, e, cnt));
		/* with the terms' magnitudes: the same output, and each output's
		 * terms at least as large as the output */
		double *r2 = malloc(cnt * sizeof *r2), *mag = malloc(cnt * sizeof *mag);
		REQUIRE(r2 && mag);
		for (size_t i = 0; i < cnt; i++)
			r2[i] = mag[i] = NAN;
		CHECKF(mta_reference_mag(&c.p, &c.tq, &c.tk, &c.tv, &c.w, r2, mag) == MTA_OK, "%s",
		       mta_last_error());
		for (size_t i = 0; r && i < cnt; i++) {
			CHECKF(r2[i] == r[i], "%s T=%d: output %zu %g with magnitudes, %g without", key,
			       c.T, i, r2[i], r[i]);
			CHECKF(mag[i] >= fabs(r[i]) * (1 - 1e-12), "%s T=%d: output %zu is %g, its "
			       "terms' magnitudes %g", key, c.T, i, r[i], mag[i]);
		}
		free(r2);
		free(mag);
		free(r);
		free(e);
		release(&c);
	}
}

/* Plain causal attention, textbook form. */
static double *causal_attention(const struct case_data *c)
{
	struct case_data plain = *c;
	mta_problem_init(&plain.p, c->p.H, c->p.Hkv, c->p.D);
	plain.p.scale = c->p.scale;
	return naive(&plain);
}

TEST(reference_identity_kernels_reduce_to_causal_attention)
{
	for (int pad = 0; pad < 3; pad++) {
		struct case_data c = { 0 };
		mta_problem_init(&c.p, 4, 2, 8);
		c.p.pad = pad;
		c.p.cq = 3;
		c.p.ck = 5;
		c.p.cq2 = 2;
		c.p.ck2 = 3;
		c.p.head_pre = 1;
		c.p.head_post = pad == 1 ? MTA_HPOST_LINEAR : MTA_HPOST_CONV;
		c.p.hc = pad == 1 ? 0 : 2;
		setup(&c, 2, 17);
		int ok1 = mta_pad_offset(pad, 5), ok2 = mta_pad_offset(pad, 3);
		memset(c.kq_pre, 0, 4 * 15 * sizeof(float));
		memset(c.kq_post, 0, 4 * 6 * sizeof(float));
		memset(c.head_pre, 0, 16 * sizeof(float));
		memset(c.hpl, 0, 16 * sizeof(float));
		memset(c.head_post, 0, 2 * 4 * sizeof(float));
		for (int h = 0; h < 4; h++) {
			c.kq_pre[h * 15 + 2 * 5 + ok1] = 1; /* the current query, key offset ok */
			c.kq_post[h * 6 + 1 * 3 + ok2] = 1;
			c.head_pre[h * 4 + h] = 1;
			c.hpl[h * 4 + h] = 1;
		}
		for (int g = 0; g < 2; g++)
			for (int i = 0; i < 2; i++)
				c.head_post[(g * 2 + i) * 2 + i] = 1;
		double *r = run_ref(&c), *e = causal_attention(&c);
		if (r)
			CHECKF(mt_rel_l2_f64(r, e, (size_t)2 * 17 * 4 * 8) < 1e-13, "pad %d: %g", pad,
			       mt_rel_l2_f64(r, e, (size_t)2 * 17 * 4 * 8));
		free(r);
		free(e);
		release(&c);
	}
}

TEST(reference_one_tap_kernel_shifts_the_logits)
{
	/* tap (a,b) = 1: S'[i,j] = Z[i-(cq-1)+a, j-ok+b]; compare with softmax of that. */
	int cq = 3, ck = 4, T = 13, H = 2, D = 5;
	for (int a = 0; a < cq; a++)
		for (int b = 0; b < ck; b++) {
			struct case_data c = { 0 };
			mta_problem_init(&c.p, H, H, D);
			c.p.pad = MTA_PAD_LEFT;
			c.p.cq = cq;
			c.p.ck = ck;
			setup(&c, 1, T);
			memset(c.kq_pre, 0, (size_t)H * cq * ck * sizeof(float));
			for (int h = 0; h < H; h++)
				c.kq_pre[(h * cq + a) * ck + b] = 1;
			double *r = run_ref(&c);
			double s = mta_problem_scale(&c.p), maxerr = 0;
			int ok = ck - 1;
			for (int h = 0; h < H && r; h++)
				for (int i = 0; i < T; i++) {
					double S[13], mx = -INFINITY, sum = 0;
					for (int j = 0; j <= i; j++) {
						int rr = i - (cq - 1) + a, cc = j - ok + b;
						double z = 0;
						if (rr >= 0 && cc >= 0 && cc <= rr)
							for (int e = 0; e < D; e++)
								z += s * c.q[(rr * H + h) * D + e] * c.k[(cc * H + h) * D + e];
						S[j] = z;
						mx = fmax(mx, z);
					}
					for (int j = 0; j <= i; j++)
						sum += S[j] = exp(S[j] - mx);
					for (int e = 0; e < D; e++) {
						double o = 0;
						for (int j = 0; j <= i; j++)
							o += S[j] / sum * c.v[(j * H + h) * D + e];
						maxerr = fmax(maxerr, fabs(o - r[(i * H + h) * D + e]));
					}
				}
			CHECKF(r && maxerr < 1e-12, "tap (%d,%d): max error %g", a, b, maxerr);
			free(r);
			release(&c);
		}
}

TEST(reference_permutation_head_mixing_permutes_heads)
{
	/* head_pre = P_sigma: head h uses the logits of head sigma(h), so the result
	 * equals plain MTA on q, k (and kq_pre) whose heads are permuted by sigma. */
	int H = 4, D = 6, T = 15, sigma[4] = { 2, 0, 3, 1 };
	for (int where = 0; where < 2; where++) {
		struct case_data c = { 0 }, d = { 0 };
		mta_problem_init(&c.p, H, H, D);
		c.p.cq = 2;
		c.p.ck = 3;
		if (where == 0)
			c.p.head_pre = 1;
		else
			c.p.head_post = MTA_HPOST_LINEAR;
		setup(&c, 1, T);
		float *W = where == 0 ? c.head_pre : c.hpl;
		memset(W, 0, (size_t)H * H * sizeof(float));
		for (int h = 0; h < H; h++)
			W[h * H + sigma[h]] = 1;
		d.p = c.p;
		d.p.head_pre = 0;
		d.p.head_post = MTA_HPOST_NONE;
		setup(&d, 1, T);
		memcpy(d.v, c.v, (size_t)T * H * D * sizeof(float));
		for (int i = 0; i < T; i++)
			for (int h = 0; h < H; h++)
				for (int e = 0; e < D; e++) {
					d.q[(i * H + h) * D + e] = c.q[(i * H + sigma[h]) * D + e];
					d.k[(i * H + h) * D + e] = c.k[(i * H + sigma[h]) * D + e];
				}
		for (int h = 0; h < H; h++)
			memcpy(d.kq_pre + h * 6, c.kq_pre + sigma[h] * 6, 6 * sizeof(float));
		double *r = run_ref(&c), *e = run_ref(&d);
		if (r && e)
			CHECKF(mt_rel_l2_f64(r, e, (size_t)T * H * D) < 1e-13, "%s mixing: %g",
			       where ? "post" : "pre", mt_rel_l2_f64(r, e, (size_t)T * H * D));
		free(r);
		free(e);
		release(&c);
		release(&d);
	}
}

TEST(reference_reads_strided_and_half_precision_inputs)
{
	struct case_data c = { 0 };
	int T = 11, H = 2, D = 4;
	mta_problem_init(&c.p, H, H, D);
	c.p.cq = 2;
	c.p.ck = 3;
	setup(&c, 2, T);
	double *r = run_ref(&c);
	/* q stored as [B,H,T,D]: same values through strides */
	float *qt = malloc((size_t)2 * T * H * D * sizeof *qt);
	for (int b = 0; b < 2; b++)
		for (int i = 0; i < T; i++)
			for (int h = 0; h < H; h++)
				for (int e = 0; e < D; e++)
					qt[(((size_t)b * H + h) * T + i) * D + e] = c.q[(((size_t)b * T + i) * H + h) * D + e];
	struct mta_tensor sq = c.tq;
	sq.data = qt;
	sq.stride[1] = D;
	sq.stride[2] = (int64_t)T * D;
	struct case_data s = c;
	s.tq = sq;
	double *rs = run_ref(&s);
	if (r && rs)
		CHECK(mt_rel_l2_f64(rs, r, (size_t)2 * T * H * D) == 0);
	free(rs);
	free(qt);
	/* bf16 inputs equal f32 inputs that were rounded to bf16 */
	size_t nq = (size_t)2 * T * H * D;
	uint16_t *hq = malloc(nq * 2), *hk = malloc(nq * 2), *hv = malloc(nq * 2);
	for (size_t i = 0; i < nq; i++) {
		hq[i] = mta_f32_to_bf16(c.q[i]);
		hk[i] = mta_f32_to_bf16(c.k[i]);
		hv[i] = mta_f32_to_bf16(c.v[i]);
		c.q[i] = mta_bf16_to_f32(hq[i]);
		c.k[i] = mta_bf16_to_f32(hk[i]);
		c.v[i] = mta_bf16_to_f32(hv[i]);
	}
	double *rr = run_ref(&c);
	struct case_data h = c;
	mta_tensor_init(&h.tq, hq, MTA_BF16, 2, T, H, D);
	mta_tensor_init(&h.tk, hk, MTA_BF16, 2, T, H, D);
	mta_tensor_init(&h.tv, hv, MTA_BF16, 2, T, H, D);
	double *rh = run_ref(&h);
	if (rr && rh)
		CHECK(mt_rel_l2_f64(rh, rr, nq) == 0);
	free(rr);
	free(rh);
	free(hq);
	free(hk);
	free(hv);
	free(r);
	release(&c);
}

TEST(reference_refuses_bad_tensors_and_missing_weights)
{
	struct case_data c = { 0 };
	mta_problem_init(&c.p, 2, 2, 4);
	c.p.cq = 1;
	c.p.ck = 1;
	setup(&c, 1, 5);
	double o[40];
	struct mta_tensor bad = c.tk;
	bad.shape[2] = 3;
	CHECK(mta_reference(&c.p, &c.tq, &bad, &c.tv, &c.w, o) == MTA_ESHAPE);
	CHECK_STR_CONTAINS(mta_last_error(), "tensor k has shape");
	bad = c.tv;
	bad.shape[1] = 4;
	CHECK(mta_reference(&c.p, &c.tq, &c.tk, &bad, &c.w, o) == MTA_ESHAPE);
	CHECK_STR_CONTAINS(mta_last_error(), "tensor v has B=1, T=4");
	bad = c.tk;
	bad.dtype = MTA_BF16;
	CHECK(mta_reference(&c.p, &c.tq, &bad, &c.tv, &c.w, o) == MTA_ESHAPE);
	CHECK_STR_CONTAINS(mta_last_error(), "element type");
	struct mta_weights w = c.w;
	w.kq_pre = NULL;
	CHECK(mta_reference(&c.p, &c.tq, &c.tk, &c.tv, &w, o) == MTA_EINVAL);
	CHECK_STR_CONTAINS(mta_last_error(), "weight");
	release(&c);
}
