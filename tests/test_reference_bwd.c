/*
 * test_reference_bwd.c: the float64 reference backward (mta_reference_backward).
 *
 * Two independent judges:
 *   - central finite differences of the forward reference mta_reference, on
 *     small problems covering every option, every element of every gradient;
 *   - a whole-matrix forward and backward written here from MTA.md with
 *     explicit [H][T][T] arrays (the reference streams rows through rings),
 *     with the group norm and gate differentiated through their D x D
 *     Jacobian rather than by the reference's chain of scalar steps.
 * Plus: outputs poisoned first and every element checked, weights the
 * problem does not use left untouched, strided and 16-bit inputs, memory
 * that stays far below one T x T buffer, and bad input refused by name.
 */
#include "tests/harness.h"
#include "runtime/mta.h"

#include <stdint.h>
#include <stdio.h>

/* ---- a problem with random inputs ------------------------------------- */

enum { P_Q, P_K, P_V, P_KQ_PRE, P_HEAD_PRE, P_KQ_POST, P_HEAD_POST, P_HPL, P_GN, P_GW, P_GB,
       P_COUNT };
static const char *const pname[P_COUNT] = { "dq", "dk", "dv", "kq_pre", "head_pre", "kq_post",
					    "head_post", "head_post_linear", "gn_weight",
					    "gate_w", "gate_b" };

struct bcase {
	struct mta_problem p;
	int B, T;
	double *q, *k, *v, *dout;                     /* float64: finite differences are exact */
	float *wt[P_COUNT];                          /* the weights, indexed P_KQ_PRE.. */
	struct mta_weights w;
	struct mta_tensor tq, tk, tv, tdo;
};

/* Element count of each differentiable tensor; 0 when the problem does not use it. */
static size_t count(const struct bcase *c, int i)
{
	const struct mta_problem *p = &c->p;
	size_t bt = (size_t)c->B * (size_t)c->T;
	switch (i) {
	case P_Q: return bt * (size_t)(p->H * p->D);
	case P_K:
	case P_V: return bt * (size_t)(p->Hkv * p->D);
	case P_KQ_PRE: return (size_t)(p->H * p->cq * p->ck);
	case P_HEAD_PRE: return p->head_pre ? (size_t)(p->H * p->H) : 0;
	case P_KQ_POST: return (size_t)(p->H * p->cq2 * p->ck2);
	case P_HEAD_POST: return p->head_post == MTA_HPOST_CONV ? (size_t)(p->H * p->hc) : 0;
	case P_HPL: return p->head_post == MTA_HPOST_LINEAR ? (size_t)(p->H * p->H) : 0;
	case P_GN: return p->gn ? (size_t)p->D : 0;
	case P_GW: return p->gate ? (size_t)p->D : 0;
	case P_GB: return p->gate ? 1 : 0;
	}
	return 0;
}

static double *rnd64(size_t n, double amp)
{
	double *x = malloc((n ? n : 1) * sizeof *x);
	for (size_t i = 0; i < n; i++)
		x[i] = amp * mt_uniform();
	return x;
}

/* Fresh random inputs for c->p at B, T: never zeros (mt_uniform is never 0). */
static void setup(struct bcase *c, int B, int T)
{
	const struct mta_problem *p = &c->p;
	c->B = B;
	c->T = T;
	c->q = rnd64(count(c, P_Q), 1.0);
	c->k = rnd64(count(c, P_K), 1.0);
	c->v = rnd64(count(c, P_V), 1.0);
	c->dout = rnd64(count(c, P_Q), 1.0);
	for (int i = P_KQ_PRE; i < P_COUNT; i++) {
		size_t n = count(c, i);
		c->wt[i] = malloc((n ? n : 1) * sizeof(float));
		for (size_t x = 0; x < n; x++) {
			/* multiples of 2^-12: x +- 2^-14 is exact in float32 (see FD_W) */
			double r = round(((i == P_GN ? 1.0 : 0.0) + 0.5 * mt_uniform()) * 4096) / 4096;
			c->wt[i][x] = (float)(r != 0 ? r : 1.0 / 4096);
		}
	}
	c->w = (struct mta_weights){ c->wt[P_KQ_PRE], c->wt[P_HEAD_PRE], c->wt[P_KQ_POST],
				     c->wt[P_HEAD_POST], c->wt[P_HPL], c->wt[P_GN], c->wt[P_GW],
				     p->gate ? c->wt[P_GB][0] : 0.0f, 1 + (int)(4 * (mt_uniform() + 1)), NULL };
	mta_tensor_init(&c->tq, c->q, MTA_F64, B, T, p->H, p->D);
	mta_tensor_init(&c->tk, c->k, MTA_F64, B, T, p->Hkv, p->D);
	mta_tensor_init(&c->tv, c->v, MTA_F64, B, T, p->Hkv, p->D);
	mta_tensor_init(&c->tdo, c->dout, MTA_F64, B, T, p->H, p->D);
}

static void release(struct bcase *c)
{
	free(c->q);
	free(c->k);
	free(c->v);
	free(c->dout);
	for (int i = P_KQ_PRE; i < P_COUNT; i++)
		free(c->wt[i]);
}

/* Gradient buffers, one per tensor, all poisoned with NaN. */
struct gbuf {
	double *d[P_COUNT];
	struct mta_reference_grads g;
};

static void grads_alloc(const struct bcase *c, struct gbuf *b)
{
	for (int i = 0; i < P_COUNT; i++) {
		size_t n = count(c, i);
		b->d[i] = malloc((n ? n : 1) * sizeof(double));
		for (size_t x = 0; x < (n ? n : 1); x++)
			b->d[i][x] = NAN;
	}
	b->g = (struct mta_reference_grads){ b->d[P_Q], b->d[P_K], b->d[P_V], b->d[P_KQ_PRE],
					      b->d[P_HEAD_PRE], b->d[P_KQ_POST], b->d[P_HEAD_POST],
					      b->d[P_HPL], b->d[P_GN], b->d[P_GW], b->d[P_GB],
					      NULL };
}

static void grads_free(struct gbuf *b)
{
	for (int i = 0; i < P_COUNT; i++)
		free(b->d[i]);
}

/* The reference backward of c into fresh poisoned buffers; 0 on success. */
static int ref_bwd(const struct bcase *c, struct gbuf *b)
{
	grads_alloc(c, b);
	int rc = mta_reference_backward(&c->p, &c->tq, &c->tk, &c->tv, &c->w, &c->tdo, &b->g);
	if (rc)
		mt_fail(__FILE__, __LINE__, "mta_reference_backward: %s", mta_last_error());
	return rc;
}

static void key_of(const struct bcase *c, char *key)
{
	if (mta_problem_key(&c->p, key, MTA_KEY_MAX))
		snprintf(key, MTA_KEY_MAX, "(invalid problem: %s)", mta_last_error());
}

/*
 * How far got is from want (n elements): the relative L2 error into *err,
 * and the number of elements outside tol * (rms(want) + |want|) + noise
 * (NaN counts), the worst of them in *worst. noise is an absolute floor for
 * estimates with a known rounding error (finite differences); the relative
 * L2 error must then be within tol + noise / rms(want), else it counts as
 * one bad element at least.
 */
static size_t grad_diff(const double *got, const double *want, size_t n, double tol,
			double noise, double *err, size_t *worst)
{
	double ss = 0, most = 0;
	size_t bad = 0;
	*worst = 0;
	for (size_t i = 0; i < n; i++)
		ss += want[i] * want[i];
	double rms = n ? sqrt(ss / (double)n) : 0;
	*err = mt_rel_l2_f64(got, want, n);
	for (size_t i = 0; i < n; i++) {
		double over = fabs(got[i] - want[i]) / (tol * rms + tol * fabs(want[i]) + noise + 1e-300);
		if (!(over <= 1)) {
			bad++;
			if (!(over <= most)) {
				most = over;
				*worst = i;
			}
		}
	}
	return n && !(*err <= tol + noise / (rms + 1e-300)) && !bad ? 1 : bad;
}

/* grad_diff, a failure naming what, name and the worst element when it is not 0. */
static void close_enough(const char *what, const char *name, const double *got,
			 const double *want, size_t n, double tol, double noise)
{
	double err;
	size_t wi, bad = grad_diff(got, want, n, tol, noise, &err, &wi);
	if (bad)
		mt_fail(__FILE__, __LINE__, "%s: gradient %s: relative L2 error %.3g (tolerance %.1g, "
			"noise %.1g), %zu of %zu elements beyond the bound; worst [%zu] = %.17g, "
			"expected %.17g", what, name, err, tol, noise, bad, n, wi, got[wi], want[wi]);
}

/* ---- judge 1: central finite differences of mta_reference --------------- */

/* L = sum(dout * mta_reference(...)) for c as it is now; *mag = sum |dout * o|. */
static double loss(const struct bcase *c, double *o, double *mag)
{
	size_t n = count(c, P_Q);
	if (mta_reference(&c->p, &c->tq, &c->tk, &c->tv, &c->w, o)) {
		mt_fail(__FILE__, __LINE__, "mta_reference: %s", mta_last_error());
		return NAN;
	}
	double s = 0, m = 0;
	for (size_t i = 0; i < n; i++) {
		s += c->dout[i] * o[i];
		m += fabs(c->dout[i] * o[i]);
	}
	if (mag)
		*mag = m;
	return s;
}

/* Central difference of L at x with step h (x restored after). */
static double central(struct bcase *c, double *o, double *x64, float *x32, double h)
{
	double lp, lm;
	if (x64) {
		double x = *x64;
		*x64 = x + h;
		lp = loss(c, o, NULL);
		*x64 = x - h;
		lm = loss(c, o, NULL);
		*x64 = x;
		return (lp - lm) / ((x + h) - (x - h));
	}
	float x = *x32;
	*x32 = x + (float)h;
	lp = loss(c, o, NULL);
	*x32 = x - (float)h;
	lm = loss(c, o, NULL);
	*x32 = x;
	if ((double)x + h != (double)(x + (float)h) || (double)x - h != (double)(x - (float)h))
		mt_fail(__FILE__, __LINE__, "weight %.9g: step %g not exact in float32", x, h);
	return (lp - lm) / (2 * h);
}

/*
 * Finite-difference steps: relative 1e-4 for the float64 q, k, v; 2^-13
 * for the float32 weights, which setup makes multiples of 2^-12 below 2 in
 * size so that x +- h and x +- h/2 are exact and the two steps are equal
 * (unequal ones would add f''(x) * (h+ - h-) / 2 to the estimate).
 */
#define FD_REL 1e-4
#define FD_W 0x1p-13

/*
 * The gradient of every tensor of c by finite differences into fd (same
 * layout as struct gbuf): Richardson's extrapolation of two central
 * differences, (4 D(h/2) - D(h)) / 3, whose error is O(h^4) instead of
 * O(h^2). Near-zero group-norm inputs give the loss large high derivatives,
 * which plain central differences at a step small enough for rounding do
 * not resolve to 1e-6. *noise: a bound on the estimate's rounding error,
 * from the loss's terms' magnitude: each loss carries an error of about
 * 1e-14 * sum |dout * o| (a generous multiple of the unit roundoff), which
 * the extrapolation divides by about h / 1.5.
 */
static void finite_differences(struct bcase *c, struct gbuf *fd, double *noise)
{
	double *o = malloc(count(c, P_Q) * sizeof *o), mag = 0;
	double *x64[3] = { c->q, c->k, c->v };
	grads_alloc(c, fd);
	loss(c, o, &mag);
	double hmin = FD_REL < FD_W ? FD_REL : FD_W;
	*noise = 1.5e-14 * mag / hmin;
	for (int t = 0; t < P_COUNT; t++) {
		size_t n = count(c, t);
		for (size_t i = 0; i < n; i++) {
			double *xd = t <= P_V ? &x64[t][i] : NULL;
			float *xf = t <= P_V ? NULL : t == P_GB ? &c->w.gate_b : &c->wt[t][i];
			double h = xd ? FD_REL * (1 + fabs(*xd)) : FD_W;
			fd->d[t][i] = (4 * central(c, o, xd, xf, h / 2) - central(c, o, xd, xf, h)) / 3;
		}
	}
	free(o);
}

/*
 * Reference backward vs finite differences on c: every element of every
 * gradient the problem has, to 1e-6 (the extrapolated differences are good
 * to about 1e-8 here) above the rounding floor.
 */
static void check_fd(struct bcase *c, const char *label)
{
	char key[MTA_KEY_MAX], what[MTA_KEY_MAX + 64];
	key_of(c, key);
	snprintf(what, sizeof what, "%s %s B=%d T=%d", label, key, c->B, c->T);
	struct gbuf r, fd;
	double noise;
	if (ref_bwd(c, &r) == 0) {
		finite_differences(c, &fd, &noise);
		for (int t = 0; t < P_COUNT; t++)
			close_enough(what, pname[t], r.d[t], fd.d[t], count(c, t), 1e-6, noise);
		grads_free(&fd);
	}
	grads_free(&r);
}

static void problem(struct bcase *c, int H, int Hkv, int D)
{
	memset(c, 0, sizeof *c);
	mta_problem_init(&c->p, H, Hkv, D);
}

static void conv_pre(struct bcase *c, int cq, int ck) { c->p.cq = cq; c->p.ck = ck; }
static void conv_post(struct bcase *c, int cq, int ck) { c->p.cq2 = cq; c->p.ck2 = ck; }

TEST(reference_bwd_matches_finite_differences_option_by_option)
{
	/* Each option alone, then in the combinations that couple them. T is a
	 * few times the kernels' height so rows see both the causal edge and
	 * the sequence start; B = 2 so weight gradients sum over batches. */
	for (int n = 0; n < 22; n++) {
		struct bcase c;
		const char *label = "?";
		problem(&c, 2, 2, 3);
		switch (n) {
		case 0: label = "plain attention"; break;
		case 1: label = "kq_pre, pad both"; conv_pre(&c, 3, 3); break;
		case 2: label = "kq_pre, pad left"; conv_pre(&c, 2, 4); c.p.pad = MTA_PAD_LEFT; break;
		case 3: label = "kq_pre, pad right"; conv_pre(&c, 3, 2); c.p.pad = MTA_PAD_RIGHT; break;
		case 4: label = "kq_post, pad both"; conv_post(&c, 3, 3); break;
		case 5: label = "kq_post, pad left"; conv_post(&c, 2, 3); c.p.pad = MTA_PAD_LEFT; break;
		case 6: label = "kq_post, pad right"; conv_post(&c, 3, 4); c.p.pad = MTA_PAD_RIGHT; break;
		case 7: label = "kq_pre and kq_post"; conv_pre(&c, 2, 3); conv_post(&c, 3, 5); break;
		case 8: label = "head_pre"; problem(&c, 3, 3, 3); c.p.head_pre = 1; break;
		case 9:
			label = "head_post conv";
			problem(&c, 4, 4, 3);
			c.p.head_post = MTA_HPOST_CONV;
			c.p.hc = 2;
			break;
		case 10: label = "head_post_linear"; problem(&c, 3, 3, 3); c.p.head_post = MTA_HPOST_LINEAR; break;
		case 11: label = "group norm"; problem(&c, 2, 2, 4); c.p.gn = 1; break;
		case 12: label = "group norm, layer rescale"; problem(&c, 2, 2, 4); c.p.gn = 1; c.p.gn_rescale = 1; break;
		case 13: label = "gate"; problem(&c, 2, 2, 4); c.p.gate = 1; break;
		case 14: label = "group norm and gate"; problem(&c, 2, 2, 4); c.p.gn = 1; c.p.gate = 1; break;
		case 15: label = "GQA"; problem(&c, 4, 2, 3); break;
		case 16: label = "GQA, kq_pre, head_pre"; problem(&c, 4, 1, 3); conv_pre(&c, 2, 3); c.p.head_pre = 1; break;
		case 17: label = "scale"; c.p.scale = 0.7f; conv_pre(&c, 2, 3); break;
		case 18: label = "head_pre and head_post conv"; problem(&c, 4, 4, 2); c.p.head_pre = 1;
			c.p.head_post = MTA_HPOST_CONV; c.p.hc = 4; break;
		case 19: case 20: case 21:
			label = "every option";
			problem(&c, 4, 2, 4);
			conv_pre(&c, 3, n == 19 ? 3 : 4);
			conv_post(&c, 2, 3);
			c.p.pad = n - 19; /* both, left, right */
			c.p.head_pre = 1;
			c.p.head_post = n == 20 ? MTA_HPOST_LINEAR : MTA_HPOST_CONV;
			c.p.hc = n == 20 ? 0 : 2;
			c.p.gn = 1;
			c.p.gn_rescale = n != 19;
			c.p.gate = 1;
			c.p.scale = n == 21 ? 0.4f : 0.0f;
			break;
		}
		REQUIRE(mta_problem_validate(&c.p) == MTA_OK);
		setup(&c, 2, n >= 19 ? 7 : 6);
		check_fd(&c, label);
		release(&c);
	}
}

static int pick(int lo, int hi)
{
	return lo + (int)((mt_uniform() + 1) / 2 * (hi - lo + 1)) % (hi - lo + 1);
}

/* A random valid problem: every option on or off, sizes from the ranges given. */
static void random_problem(struct bcase *c, int maxkv, int maxg, int maxd, int maxk)
{
	int hkv = pick(1, maxkv), H = hkv * pick(1, maxg);
	problem(c, H, hkv, pick(1, maxd));
	c->p.pad = pick(0, 2);
	if (pick(0, 2))
		conv_pre(c, pick(1, maxk), pick(1, maxk + 1) | (c->p.pad == MTA_PAD_BOTH));
	c->p.head_pre = pick(0, 1);
	if (pick(0, 2))
		conv_post(c, pick(1, maxk), pick(1, maxk + 1) | (c->p.pad == MTA_PAD_BOTH));
	int hp = pick(0, 2);
	if (hp == 1) {
		c->p.head_post = MTA_HPOST_CONV;
		c->p.hc = H % 2 ? (H % 3 ? 1 : 3) : 2;
	} else if (hp == 2) {
		c->p.head_post = MTA_HPOST_LINEAR;
	}
	c->p.gn = pick(0, 1);
	c->p.gn_rescale = c->p.gn && pick(0, 1);
	c->p.gate = pick(0, 1);
	if (pick(0, 1))
		c->p.scale = 0.3f + 0.5f * (float)(mt_uniform() + 1);
}

TEST(reference_bwd_matches_finite_differences_random_problems)
{
	for (int n = 0; n < 8; n++) {
		struct bcase c;
		random_problem(&c, 2, 2, 3, 3);
		REQUIRE(mta_problem_validate(&c.p) == MTA_OK);
		setup(&c, pick(1, 2), pick(1, 7)); /* T from 1: shorter than the kernels too */
		check_fd(&c, "random");
		release(&c);
	}
}

/* ---- judge 2: whole T x T matrices ----------------------------------------- */

/*
 * One query row's steps 8-9, y = f(o), and its Jacobian J[d][e] = dy_d/do_e
 * with the weight derivatives: gn[d][e] = dy_d/dgn_weight_e, gw[d][e] =
 * dy_d/dgate_w_e, gb[d] = dy_d/dgate_b. Derived by hand from the closed
 * form, not by chaining the steps as the reference does.
 */
static void row_jacobian(const struct bcase *c, const double *o, double *J, double *Jgn,
			 double *Jgw, double *Jgb)
{
	const struct mta_problem *p = &c->p;
	int D = p->D;
	double R = p->gn_rescale ? 1 - (0.8 - 0.6 * exp(-0.3 * c->w.layer_id)) : 1, ms = 0;
	for (int e = 0; e < D; e++)
		ms += o[e] * o[e] / D;
	double rs = p->gn ? 1 / sqrt(ms + 1e-5) : 1, n[1024], z = c->w.gate_b;
	for (int e = 0; e < D; e++) {
		n[e] = p->gn ? o[e] * rs * c->w.gn_weight[e] * R : o[e];
		z += p->gate ? n[e] * c->w.gate_w[e] : 0;
	}
	double sg = p->gate ? 1 / (1 + exp(-z)) : 1, sp = sg * (1 - sg);
	for (int d = 0; d < D; d++)
		for (int e = 0; e < D; e++) {
			/* dy_d/do_e = sum_f dy_d/dn_f dn_f/do_e, dy_d/dn_f = delta_df sg + n_d sp gate_w_f */
			double acc = 0;
			for (int f = 0; f < D; f++) {
				double dy_dn = (d == f ? sg : 0) + (p->gate ? n[d] * sp * c->w.gate_w[f] : 0);
				double dn_do = p->gn ? c->w.gn_weight[f] * R * ((f == e ? rs : 0) -
									 rs * rs * rs * o[f] * o[e] / D)
					      : (f == e);
				acc += dy_dn * dn_do;
			}
			J[d * D + e] = acc;
			double dy_dne = (d == e ? sg : 0) + (p->gate ? n[d] * sp * c->w.gate_w[e] : 0);
			Jgn[d * D + e] = p->gn ? dy_dne * o[e] * rs * R : 0;
			Jgw[d * D + e] = p->gate ? n[d] * sp * n[e] : 0;
		}
	for (int d = 0; d < D; d++)
		Jgb[d] = p->gate ? n[d] * sp : 0;
}

/* A [H][T][T] array. */
#define A3(X, h, i, j) X[((size_t)(h) * T + (size_t)(i)) * T + (size_t)(j)]

/* Y = conv(X) per head (kernel w [H][cq][ck], key offset ok), j <= i, 0 above. */
static void conv_tt(const double *X, const float *w, int H, int T, int cq, int ck, int ok,
		    double *Y)
{
	for (int h = 0; h < H; h++)
		for (int i = 0; i < T; i++)
			for (int j = 0; j < T; j++) {
				double s = 0;
				for (int a = 0; a < cq && j <= i; a++)
					for (int b = 0; b < ck; b++) {
						int r = i - (cq - 1) + a, cc = j - ok + b;
						if (r >= 0 && cc >= 0 && cc <= r)
							s += w[(h * cq + a) * ck + b] * A3(X, h, r, cc);
					}
				A3(Y, h, i, j) = s;
			}
}

/* dX = conv^T(dY) and dw += <dY, shifted X>: the same index sets as conv_tt. */
static void conv_tt_bwd(const double *X, const float *w, int H, int T, int cq, int ck, int ok,
			const double *dY, double *dX, double *dw)
{
	memset(dX, 0, (size_t)H * T * T * sizeof *dX);
	for (int h = 0; h < H; h++)
		for (int a = 0; a < cq; a++)
			for (int b = 0; b < ck; b++)
				for (int i = 0; i < T; i++)
					for (int j = 0; j <= i; j++) {
						int r = i - (cq - 1) + a, cc = j - ok + b;
						if (r < 0 || cc < 0 || cc > r)
							continue;
						A3(dX, h, r, cc) += w[(h * cq + a) * ck + b] * A3(dY, h, i, j);
						dw[(h * cq + a) * ck + b] += A3(X, h, r, cc) * A3(dY, h, i, j);
					}
}

/* Y[h] = sum_h' M[h][h'] X[h'] over whole [T][T] planes. */
static void mix_tt(const double *M, const double *X, int H, size_t TT, double *Y)
{
	for (int h = 0; h < H; h++)
		for (size_t x = 0; x < TT; x++) {
			double s = 0;
			for (int h2 = 0; h2 < H; h2++)
				s += M[h * H + h2] * X[(size_t)h2 * TT + x];
			Y[(size_t)h * TT + x] = s;
		}
}

/*
 * The whole forward and backward of c with T x T planes, straight from
 * MTA.md, into fresh buffers b (weight gradients in their own shapes).
 */
static void whole_bwd(const struct bcase *c, struct gbuf *b)
{
	const struct mta_problem *p = &c->p;
	const int T = c->T, H = p->H, D = p->D, G = p->H / p->Hkv, Hkv = p->Hkv;
	const size_t TT = (size_t)T * T, HTT = (size_t)H * TT;
	const double s = mta_problem_scale(p);
	int ok1 = mta_pad_offset(p->pad, p->ck), ok2 = mta_pad_offset(p->pad, p->ck2);
	double *Z = calloc(HTT, 8), *S2 = calloc(HTT, 8), *S3 = calloc(HTT, 8),
	       *P = calloc(HTT, 8), *P2 = calloc(HTT, 8), *P3 = calloc(HTT, 8),
	       *dA = calloc(HTT, 8), *dB = calloc(HTT, 8), *O = calloc((size_t)T * H * D, 8),
	       *Mpre = calloc((size_t)H * H, 8), *Mpost = calloc((size_t)H * H, 8),
	       *gMpre = calloc((size_t)H * H, 8), *gMpost = calloc((size_t)H * H, 8),
	       *J = calloc((size_t)D * D * 3 + D, 8);
	double *Jgn = J + D * D, *Jgw = J + 2 * D * D, *Jgb = J + 3 * D * D;
	grads_alloc(c, b);
	for (int t = 0; t < P_COUNT; t++)
		for (size_t x = 0; x < count(c, t); x++)
			b->d[t][x] = 0;
	for (int h = 0; h < H; h++)
		for (int h2 = 0; h2 < H; h2++) {
			Mpre[h * H + h2] = p->head_pre ? c->w.head_pre[h * H + h2] : h == h2;
			if (p->head_post == MTA_HPOST_LINEAR)
				Mpost[h * H + h2] = c->w.head_post_linear[h * H + h2];
			else if (p->head_post == MTA_HPOST_CONV)
				Mpost[h * H + h2] = h / p->hc == h2 / p->hc ?
					c->w.head_post[((h / p->hc) * p->hc + h2 % p->hc) * p->hc + h % p->hc] : 0;
			else
				Mpost[h * H + h2] = h == h2;
		}
#define X4(A, bb, i, h, e, nh) A[(((size_t)(bb) * T + (size_t)(i)) * (nh) + (size_t)(h)) * D + (size_t)(e)]
	for (int bb = 0; bb < c->B; bb++) {
		/* forward, keeping every plane */
		for (int h = 0; h < H; h++)
			for (int i = 0; i < T; i++)
				for (int j = 0; j <= i; j++) {
					double d = 0;
					for (int e = 0; e < D; e++)
						d += X4(c->q, bb, i, h, e, H) * X4(c->k, bb, j, h / G, e, Hkv);
					A3(Z, h, i, j) = s * d;
				}
		if (p->cq)
			conv_tt(Z, c->w.kq_pre, H, T, p->cq, p->ck, ok1, S2);
		else
			memcpy(S2, Z, HTT * 8);
		mix_tt(Mpre, S2, H, TT, S3);
		for (int h = 0; h < H; h++)
			for (int i = 0; i < T; i++) {
				double mx = -INFINITY, sum = 0;
				for (int j = 0; j <= i; j++)
					mx = fmax(mx, A3(S3, h, i, j));
				for (int j = 0; j < T; j++)
					sum += A3(P, h, i, j) = j <= i ? exp(A3(S3, h, i, j) - mx) : 0;
				for (int j = 0; j < T; j++)
					A3(P, h, i, j) /= sum;
			}
		if (p->cq2)
			conv_tt(P, c->w.kq_post, H, T, p->cq2, p->ck2, ok2, P2);
		else
			memcpy(P2, P, HTT * 8);
		mix_tt(Mpost, P2, H, TT, P3);
		memset(O, 0, (size_t)T * H * D * 8);
		for (int i = 0; i < T; i++)
			for (int h = 0; h < H; h++)
				for (int j = 0; j <= i; j++)
					for (int e = 0; e < D; e++)
						O[((size_t)i * H + h) * D + e] += A3(P3, h, i, j) * X4(c->v, bb, j, h / G, e, Hkv);

		/* backward: dO = J^T dY per row; dP3 into dA */
		for (int i = 0; i < T; i++)
			for (int h = 0; h < H; h++) {
				double *o = O + ((size_t)i * H + h) * D, dO[1024];
				const double *dy = &X4(c->dout, bb, i, h, 0, H);
				row_jacobian(c, o, J, Jgn, Jgw, Jgb);
				for (int e = 0; e < D; e++) {
					dO[e] = 0;
					for (int d = 0; d < D; d++) {
						dO[e] += J[d * D + e] * dy[d];
						if (p->gn)
							b->d[P_GN][e] += Jgn[d * D + e] * dy[d];
						if (p->gate)
							b->d[P_GW][e] += Jgw[d * D + e] * dy[d];
					}
				}
				for (int d = 0; p->gate && d < D; d++)
					b->d[P_GB][0] += Jgb[d] * dy[d];
				for (int j = 0; j < T; j++) {
					double g = 0;
					for (int e = 0; e < D && j <= i; e++) {
						g += dO[e] * X4(c->v, bb, j, h / G, e, Hkv);
						X4(b->d[P_V], bb, j, h / G, e, Hkv) += A3(P3, h, i, j) * dO[e];
					}
					A3(dA, h, i, j) = g;
				}
			}
		/* head_post: dP2 = Mpost^T dP3 (into dB), gMpost = dP3 . P2 */
		for (int h2 = 0; h2 < H; h2++)
			for (size_t x = 0; x < TT; x++) {
				double g = 0;
				for (int h = 0; h < H; h++)
					g += Mpost[h * H + h2] * dA[(size_t)h * TT + x];
				dB[(size_t)h2 * TT + x] = g;
			}
		for (int h = 0; h < H; h++)
			for (int h2 = 0; h2 < H; h2++)
				for (size_t x = 0; x < TT; x++)
					gMpost[h * H + h2] += dA[(size_t)h * TT + x] * P2[(size_t)h2 * TT + x];
		/* kq_post: dP (into dA) */
		if (p->cq2)
			conv_tt_bwd(P, c->w.kq_post, H, T, p->cq2, p->ck2, ok2, dB, dA, b->d[P_KQ_POST]);
		else
			memcpy(dA, dB, HTT * 8);
		/* softmax: dS3 (into dB) */
		for (int h = 0; h < H; h++)
			for (int i = 0; i < T; i++) {
				double dot = 0;
				for (int j = 0; j <= i; j++)
					dot += A3(P, h, i, j) * A3(dA, h, i, j);
				for (int j = 0; j < T; j++)
					A3(dB, h, i, j) = j <= i ? A3(P, h, i, j) * (A3(dA, h, i, j) - dot) : 0;
			}
		/* head_pre: dS2 (into dA), gMpre = dS3 . S2 */
		for (int h2 = 0; h2 < H; h2++)
			for (size_t x = 0; x < TT; x++) {
				double g = 0;
				for (int h = 0; h < H; h++)
					g += Mpre[h * H + h2] * dB[(size_t)h * TT + x];
				dA[(size_t)h2 * TT + x] = g;
			}
		for (int h = 0; h < H; h++)
			for (int h2 = 0; h2 < H; h2++)
				for (size_t x = 0; x < TT; x++)
					gMpre[h * H + h2] += dB[(size_t)h * TT + x] * S2[(size_t)h2 * TT + x];
		/* kq_pre: dZ (into dB) */
		if (p->cq)
			conv_tt_bwd(Z, c->w.kq_pre, H, T, p->cq, p->ck, ok1, dA, dB, b->d[P_KQ_PRE]);
		else
			memcpy(dB, dA, HTT * 8);
		/* logits */
		for (int h = 0; h < H; h++)
			for (int i = 0; i < T; i++)
				for (int e = 0; e < D; e++) {
					X4(b->d[P_Q], bb, i, h, e, H) = 0;
					for (int j = 0; j <= i; j++)
						X4(b->d[P_Q], bb, i, h, e, H) += s * A3(dB, h, i, j) * X4(c->k, bb, j, h / G, e, Hkv);
				}
		for (int h = 0; h < H; h++)
			for (int j = 0; j < T; j++)
				for (int e = 0; e < D; e++)
					for (int i = j; i < T; i++)
						X4(b->d[P_K], bb, j, h / G, e, Hkv) += s * A3(dB, h, i, j) * X4(c->q, bb, i, h, e, H);
	}
#undef X4
	if (p->head_pre)
		memcpy(b->d[P_HEAD_PRE], gMpre, (size_t)H * H * 8);
	if (p->head_post == MTA_HPOST_LINEAR)
		memcpy(b->d[P_HPL], gMpost, (size_t)H * H * 8);
	if (p->head_post == MTA_HPOST_CONV)
		for (int h = 0; h < H; h++)
			for (int h2 = 0; h2 < H; h2++)
				if (h / p->hc == h2 / p->hc)
					b->d[P_HEAD_POST][((h / p->hc) * p->hc + h2 % p->hc) * p->hc + h % p->hc] =
						gMpost[h * H + h2];
	free(Z); free(S2); free(S3); free(P); free(P2); free(P3); free(dA); free(dB); free(O);
	free(Mpre); free(Mpost); free(gMpre); free(gMpost); free(J);
}

static void check_whole(struct bcase *c, const char *label)
{
	char key[MTA_KEY_MAX], what[MTA_KEY_MAX + 64];
	key_of(c, key);
	snprintf(what, sizeof what, "%s %s B=%d T=%d", label, key, c->B, c->T);
	struct gbuf r, e;
	if (ref_bwd(c, &r) == 0) {
		whole_bwd(c, &e);
		for (int t = 0; t < P_COUNT; t++)
			close_enough(what, pname[t], r.d[t], e.d[t], count(c, t), 1e-10, 0);
		grads_free(&e);
	}
	grads_free(&r);
}

TEST(reference_bwd_matches_whole_matrix_backward)
{
	/* The paper-like shape, scaled down, with each pad; then random problems. */
	for (int pad = 0; pad < 3; pad++) {
		struct bcase c;
		problem(&c, 4, 2, 8);
		c.p.pad = pad;
		conv_pre(&c, 3, pad == MTA_PAD_BOTH ? 5 : 4);
		conv_post(&c, 3, 3);
		c.p.head_pre = 1;
		c.p.head_post = pad == MTA_PAD_LEFT ? MTA_HPOST_LINEAR : MTA_HPOST_CONV;
		c.p.hc = pad == MTA_PAD_LEFT ? 0 : 4;
		c.p.gn = 1;
		c.p.gn_rescale = pad != MTA_PAD_BOTH;
		c.p.gate = 1;
		REQUIRE(mta_problem_validate(&c.p) == MTA_OK);
		setup(&c, 2, 29);
		check_whole(&c, "every option");
		release(&c);
	}
	for (int n = 0; n < 12; n++) {
		struct bcase c;
		random_problem(&c, 2, 3, 9, 5);
		REQUIRE(mta_problem_validate(&c.p) == MTA_OK);
		setup(&c, pick(1, 2), pick(1, 33));
		check_whole(&c, "random");
		release(&c);
	}
}

/* ---- magnitudes (mta_reference_grads.mag) -------------------------------------- */

/* The paper-like problem scaled down, every option on. */
static void every_option(struct bcase *c)
{
	problem(c, 4, 2, 8);
	c->p.pad = MTA_PAD_BOTH;
	conv_pre(c, 3, 5);
	conv_post(c, 3, 3);
	c->p.head_pre = 1;
	c->p.head_post = MTA_HPOST_CONV;
	c->p.hc = 2;
	c->p.gn = 1;
	c->p.gate = 1;
	REQUIRE(mta_problem_validate(&c->p) == MTA_OK);
}

/* Gradients and their magnitudes of c (both poisoned first); 0 on success. */
static int ref_bwd_mag(const struct bcase *c, struct gbuf *b, struct gbuf *m)
{
	grads_alloc(c, b);
	grads_alloc(c, m);
	b->g.mag = &m->g;
	int rc = mta_reference_backward(&c->p, &c->tq, &c->tk, &c->tv, &c->w, &c->tdo, &b->g);
	if (rc)
		mt_fail(__FILE__, __LINE__, "mta_reference_backward: %s", mta_last_error());
	return rc;
}

/*
 * The magnitudes bound the gradients (|g| <= mag, every element, since a
 * sum of terms is at most the sum of their magnitudes), and they see what
 * the sums hide: two batches that mirror each other (batch 1 the inputs of
 * batch 0, dout negated) leave every weight's gradient exactly 0, while
 * its magnitude is twice that of batch 0 alone, and batch 1's rows have
 * the magnitudes of batch 0's. This cancellation is what a float32 kernel
 * cannot be judged against |g| for (a gate bias gradient of -0.006 from
 * terms of total magnitude 91 failed a correct kernel).
 */
TEST(reference_bwd_magnitudes_bound_the_gradients_and_see_cancellation)
{
	struct bcase c, one;
	struct gbuf g2, m2, g1, m1;
	every_option(&c);
	const int T = 23;
	setup(&c, 2, T);
	REQUIRE(ref_bwd_mag(&c, &g1, &m1) == 0);
	for (int t = 0; t < P_COUNT; t++)
		for (size_t x = 0; x < count(&c, t); x++)
			CHECKF(isfinite(m1.d[t][x]) && m1.d[t][x] > 0 &&
			       fabs(g1.d[t][x]) <= m1.d[t][x] * (1 + 1e-12),
			       "%s[%zu]: gradient %g, magnitude %g", pname[t], x, g1.d[t][x],
			       m1.d[t][x]);
	grads_free(&g1);
	grads_free(&m1);

	/* batch 1 mirrors batch 0 */
	const size_t rq = (size_t)T * (size_t)(c.p.H * c.p.D), rk = (size_t)T * (size_t)(c.p.Hkv * c.p.D);
	memcpy(c.q + rq, c.q, rq * sizeof *c.q);
	memcpy(c.k + rk, c.k, rk * sizeof *c.k);
	memcpy(c.v + rk, c.v, rk * sizeof *c.v);
	for (size_t x = 0; x < rq; x++)
		c.dout[rq + x] = -c.dout[x];
	one = c;
	one.B = 1;
	mta_tensor_init(&one.tq, one.q, MTA_F64, 1, T, c.p.H, c.p.D);
	mta_tensor_init(&one.tk, one.k, MTA_F64, 1, T, c.p.Hkv, c.p.D);
	mta_tensor_init(&one.tv, one.v, MTA_F64, 1, T, c.p.Hkv, c.p.D);
	mta_tensor_init(&one.tdo, one.dout, MTA_F64, 1, T, c.p.H, c.p.D);
	REQUIRE(ref_bwd_mag(&c, &g2, &m2) == 0);
	REQUIRE(ref_bwd_mag(&one, &g1, &m1) == 0);
	int weights = 0;
	for (int t = P_KQ_PRE; t < P_COUNT; t++) {
		weights += count(&c, t) > 0;
		for (size_t x = 0; x < count(&c, t); x++) {
			CHECKF(fabs(g2.d[t][x]) <= 1e-12 * m2.d[t][x], "%s[%zu]: mirrored batches "
			       "leave %g (magnitude %g)", pname[t], x, g2.d[t][x], m2.d[t][x]);
			CHECKF(fabs(m2.d[t][x] - 2 * m1.d[t][x]) <= 1e-12 * m2.d[t][x],
			       "%s[%zu]: magnitude %g over two batches, %g over one", pname[t], x,
			       m2.d[t][x], m1.d[t][x]);
		}
	}
	CHECK(weights == 7); /* kq_pre, head_pre, kq_post, head_post, gn_weight, gate_w, gate_b */
	for (int t = P_Q; t <= P_V; t++) {
		size_t n = count(&one, t);
		for (size_t x = 0; x < n; x++)
			CHECKF(fabs(m2.d[t][n + x] - m1.d[t][x]) <= 1e-12 * m1.d[t][x] &&
			       fabs(m2.d[t][x] - m1.d[t][x]) <= 1e-12 * m1.d[t][x],
			       "%s[%zu]: batch magnitudes %g, %g; alone %g", pname[t], x, m2.d[t][x],
			       m2.d[t][n + x], m1.d[t][x]);
	}
	grads_free(&g1);
	grads_free(&m1);
	grads_free(&g2);
	grads_free(&m2);
	release(&c);
}

/*
 * The packed reference's magnitudes: each document's rows of dq, dk, dv
 * and the weights' summed over documents, as each document alone gives.
 */
TEST(reference_bwd_varlen_magnitudes_sum_the_documents)
{
	struct bcase c;
	every_option(&c);
	const int T = 31, cut = 12;
	setup(&c, 1, T);
	const int64_t cu[3] = { 0, cut, T };
	struct gbuf g, m;
	grads_alloc(&c, &g);
	grads_alloc(&c, &m);
	g.g.mag = &m.g;
	REQUIRE(mta_reference_backward_varlen(&c.p, &c.tq, &c.tk, &c.tv, &c.w, &c.tdo, cu, 2,
					      &g.g) == MTA_OK);
	double *sum[P_COUNT] = { 0 };
	for (int t = P_KQ_PRE; t < P_COUNT; t++)
		sum[t] = calloc(count(&c, t) + 1, sizeof *sum[t]);
	for (int d = 0; d < 2; d++) {
		struct bcase doc = c;
		const int64_t s0 = cu[d], len = cu[d + 1] - cu[d];
		const size_t rq = (size_t)(c.p.H * c.p.D), rk = (size_t)(c.p.Hkv * c.p.D);
		doc.T = (int)len;
		mta_tensor_init(&doc.tq, c.q + (size_t)s0 * rq, MTA_F64, 1, len, c.p.H, c.p.D);
		mta_tensor_init(&doc.tk, c.k + (size_t)s0 * rk, MTA_F64, 1, len, c.p.Hkv, c.p.D);
		mta_tensor_init(&doc.tv, c.v + (size_t)s0 * rk, MTA_F64, 1, len, c.p.Hkv, c.p.D);
		mta_tensor_init(&doc.tdo, c.dout + (size_t)s0 * rq, MTA_F64, 1, len, c.p.H, c.p.D);
		struct gbuf gd, md;
		REQUIRE(ref_bwd_mag(&doc, &gd, &md) == 0);
		for (int t = P_Q; t <= P_V; t++) {
			size_t row = t == P_Q ? rq : rk;
			for (size_t x = 0; x < (size_t)len * row; x++)
				CHECKF(m.d[t][(size_t)s0 * row + x] == md.d[t][x], "document %d: %s "
				       "magnitude [%zu] %g, alone %g", d, pname[t], x,
				       m.d[t][(size_t)s0 * row + x], md.d[t][x]);
		}
		for (int t = P_KQ_PRE; t < P_COUNT; t++)
			for (size_t x = 0; x < count(&c, t); x++)
				sum[t][x] += md.d[t][x];
		grads_free(&gd);
		grads_free(&md);
	}
	for (int t = P_KQ_PRE; t < P_COUNT; t++) {
		for (size_t x = 0; x < count(&c, t); x++)
			CHECKF(m.d[t][x] == sum[t][x], "%s[%zu]: packed magnitude %g, documents' sum %g",
			       pname[t], x, m.d[t][x], sum[t][x]);
		free(sum[t]);
	}
	grads_free(&g);
	grads_free(&m);
	release(&c);
}

/* ---- contract ---------------------------------------------------------------- */

TEST(reference_bwd_writes_only_what_the_problem_uses)
{
	/* Buffers for weights the problem lacks stay poisoned; used ones are all finite. */
	struct bcase c;
	problem(&c, 4, 4, 3);
	conv_post(&c, 2, 3);
	c.p.head_post = MTA_HPOST_CONV;
	c.p.hc = 2;
	c.p.gate = 1;
	setup(&c, 1, 5);
	struct gbuf r;
	double spare[8][64];
	for (int i = 0; i < 8; i++)
		for (int x = 0; x < 64; x++)
			spare[i][x] = NAN;
	grads_alloc(&c, &r);
	r.g.kq_pre = spare[0];
	r.g.head_pre = spare[1];
	r.g.head_post_linear = spare[2];
	r.g.gn_weight = spare[3];
	REQUIRE(mta_reference_backward(&c.p, &c.tq, &c.tk, &c.tv, &c.w, &c.tdo, &r.g) == MTA_OK);
	for (int i = 0; i < 4; i++)
		for (int x = 0; x < 64; x++)
			CHECKF(isnan(spare[i][x]), "unused gradient buffer %d written at %d", i, x);
	for (int t = 0; t < P_COUNT; t++)
		for (size_t x = 0; x < count(&c, t); x++)
			CHECKF(isfinite(r.d[t][x]), "%s[%zu] = %g", pname[t], x, r.d[t][x]);
	CHECK(count(&c, P_KQ_POST) && count(&c, P_HEAD_POST) && count(&c, P_GB));
	grads_free(&r);
	release(&c);
}

TEST(reference_bwd_reads_strided_and_half_precision_inputs)
{
	struct bcase c;
	problem(&c, 2, 1, 4);
	conv_pre(&c, 2, 3);
	c.p.gn = 1;
	setup(&c, 2, 9);
	size_t nq = count(&c, P_Q), nk = count(&c, P_K);
	struct gbuf r, s;
	REQUIRE(ref_bwd(&c, &r) == 0);
	/* dout as [B,H,T,D] through strides: the same gradients exactly */
	double *dt = malloc(nq * sizeof *dt);
	for (int b = 0; b < 2; b++)
		for (int i = 0; i < 9; i++)
			for (int h = 0; h < 2; h++)
				for (int e = 0; e < 4; e++)
					dt[(((size_t)b * 2 + h) * 9 + i) * 4 + e] = c.dout[(((size_t)b * 9 + i) * 2 + h) * 4 + e];
	struct bcase st = c;
	st.tdo.data = dt;
	st.tdo.stride[1] = 4;
	st.tdo.stride[2] = 9 * 4;
	REQUIRE(ref_bwd(&st, &s) == 0);
	for (int t = 0; t < P_COUNT; t++)
		for (size_t x = 0; x < count(&c, t); x++)
			CHECKF(s.d[t][x] == r.d[t][x], "strided dout: %s[%zu] %g vs %g", pname[t], x,
			       s.d[t][x], r.d[t][x]);
	grads_free(&s);
	free(dt);
	/* bf16 q, k, v and dout: the gradients of the bf16-rounded values */
	uint16_t *h16[4];
	double *x64[4] = { c.q, c.k, c.v, c.dout };
	size_t nn[4] = { nq, nk, nk, nq };
	for (int a = 0; a < 4; a++) {
		h16[a] = malloc(nn[a] * 2);
		for (size_t x = 0; x < nn[a]; x++) {
			h16[a][x] = mta_f32_to_bf16((float)x64[a][x]);
			x64[a][x] = mta_bf16_to_f32(h16[a][x]);
		}
	}
	struct bcase hb = c;
	hb.tq.data = h16[0];
	hb.tk.data = h16[1];
	hb.tv.data = h16[2];
	hb.tdo.data = h16[3];
	hb.tq.dtype = hb.tk.dtype = hb.tv.dtype = hb.tdo.dtype = MTA_BF16;
	struct gbuf rr;
	REQUIRE(ref_bwd(&c, &rr) == 0); /* c now holds the rounded values as doubles */
	REQUIRE(ref_bwd(&hb, &s) == 0);
	for (int t = 0; t < P_COUNT; t++)
		for (size_t x = 0; x < count(&c, t); x++)
			CHECKF(s.d[t][x] == rr.d[t][x], "bf16: %s[%zu] %g vs %g", pname[t], x, s.d[t][x],
			       rr.d[t][x]);
	for (int a = 0; a < 4; a++)
		free(h16[a]);
	grads_free(&s);
	grads_free(&r);
	grads_free(&rr);
	release(&c);
}

/* The peak resident size of this process in kB (VmHWM), -1 if unknown. */
static long peak_kb(void)
{
	FILE *f = fopen("/proc/self/status", "r");
	char line[256];
	long kb = -1;
	while (f && fgets(line, sizeof line, f))
		if (!strncmp(line, "VmHWM:", 6))
			kb = atol(line + 6);
	if (f)
		fclose(f);
	return kb;
}

TEST(reference_bwd_memory_is_linear_in_T)
{
	/* T = 2048: one T x T plane of doubles is 32 MiB; the reference's rings
	 * (H*T*(2cq+4cq2+5) doubles) are under 1 MiB. The test runs in its own
	 * process; "5" in clear_refs resets the peak so only the call counts. */
	struct bcase c;
	problem(&c, 1, 1, 2);
	conv_pre(&c, 2, 3);
	conv_post(&c, 2, 3);
	setup(&c, 1, 2048);
	struct gbuf r;
	grads_alloc(&c, &r);
	FILE *f = fopen("/proc/self/clear_refs", "w");
	int reset = f && fputs("5", f) >= 0;
	if (f)
		reset = !fclose(f) && reset;
	long before = peak_kb();
	REQUIRE(mta_reference_backward(&c.p, &c.tq, &c.tk, &c.tv, &c.w, &c.tdo, &r.g) == MTA_OK);
	long after = peak_kb();
	REQUIRE(reset && before > 0 && after > 0);
	CHECKF(after - before < 8 * 1024, "the backward at T=2048 raised the peak resident size "
	       "by %ld kB; one T x T plane is 32768 kB", after - before);
	for (size_t x = 0; x < count(&c, P_Q); x++)
		CHECKF(isfinite(r.d[P_Q][x]), "dq[%zu] = %g", x, r.d[P_Q][x]);
	grads_free(&r);
	release(&c);
}

TEST(reference_bwd_refuses_bad_input_by_name)
{
	struct bcase c;
	problem(&c, 2, 2, 3);
	conv_pre(&c, 2, 3);
	c.p.gate = 1;
	setup(&c, 1, 4);
	struct gbuf r;
	grads_alloc(&c, &r);
	struct mta_tensor badk = c.tk, bado = c.tdo;
	struct mta_weights now = c.w;
	struct mta_reference_grads nog = r.g, nogb = r.g, nodk = r.g;
	struct mta_problem badp = c.p;
	badk.shape[2] = 3;
	bado.shape[1] = 5;
	now.kq_pre = NULL;
	nog.kq_pre = NULL;
	nogb.gate_b = NULL;
	nodk.dk = NULL;
	badp.ck = 2; /* pad both needs an odd ck */
	static const struct { int rc; const char *msg; } want[] = {
		{ MTA_EINVAL, "dout is missing" },
		{ MTA_ESHAPE, "dout has shape [1,5,2,3], expected the output's [1,4,2,3]" },
		{ MTA_ESHAPE, "tensor k has shape" },
		{ MTA_EINVAL, "weight kq_pre" },
		{ MTA_EINVAL, "gradient kq_pre" },
		{ MTA_EINVAL, "gradient gate_b" },
		{ MTA_EINVAL, "gradient dk" },
		{ MTA_EINVAL, "gradients struct" },
		{ MTA_EINVAL, "odd key size" },
	};
	for (int n = 0; n < (int)(sizeof want / sizeof want[0]); n++) {
		int rc = -1;
		switch (n) {
		case 0: rc = mta_reference_backward(&c.p, &c.tq, &c.tk, &c.tv, &c.w, NULL, &r.g); break;
		case 1: rc = mta_reference_backward(&c.p, &c.tq, &c.tk, &c.tv, &c.w, &bado, &r.g); break;
		case 2: rc = mta_reference_backward(&c.p, &c.tq, &badk, &c.tv, &c.w, &c.tdo, &r.g); break;
		case 3: rc = mta_reference_backward(&c.p, &c.tq, &c.tk, &c.tv, &now, &c.tdo, &r.g); break;
		case 4: rc = mta_reference_backward(&c.p, &c.tq, &c.tk, &c.tv, &c.w, &c.tdo, &nog); break;
		case 5: rc = mta_reference_backward(&c.p, &c.tq, &c.tk, &c.tv, &c.w, &c.tdo, &nogb); break;
		case 6: rc = mta_reference_backward(&c.p, &c.tq, &c.tk, &c.tv, &c.w, &c.tdo, &nodk); break;
		case 7: rc = mta_reference_backward(&c.p, &c.tq, &c.tk, &c.tv, &c.w, &c.tdo, NULL); break;
		case 8: rc = mta_reference_backward(&badp, &c.tq, &c.tk, &c.tv, &c.w, &c.tdo, &r.g); break;
		}
		CHECKF(rc == want[n].rc, "case %d: status %s, expected %s (%s)", n, mta_status_name(rc),
		       mta_status_name(want[n].rc), mta_last_error());
		CHECK_STR_CONTAINS(mta_last_error(), want[n].msg);
	}
	/* nothing was written by any refused call */
	for (int t = 0; t < P_COUNT; t++)
		for (size_t x = 0; x < count(&c, t); x++)
			CHECKF(isnan(r.d[t][x]), "refused call wrote %s[%zu]", pname[t], x);
	grads_free(&r);
	release(&c);
}

TEST(reference_bwd_checker_catches_a_wrong_gradient)
{
	/* The comparison the tests above use fails on any one element off by
	 * 1e-5 of the gradient's size, in any tensor. */
	struct bcase c;
	problem(&c, 2, 2, 3);
	conv_pre(&c, 2, 3);
	c.p.head_pre = 1;
	setup(&c, 1, 5);
	struct gbuf r, e;
	REQUIRE(ref_bwd(&c, &r) == 0);
	whole_bwd(&c, &e);
	for (int t = 0; t < P_COUNT; t++) {
		size_t n = count(&c, t), wi;
		double err, ss = 0;
		if (!n)
			continue;
		CHECKF(grad_diff(r.d[t], e.d[t], n, 1e-10, 0, &err, &wi) == 0, "%s: %g", pname[t], err);
		for (size_t x = 0; x < n; x++)
			ss += e.d[t][x] * e.d[t][x];
		size_t x = (size_t)pick(0, (int)n - 1);
		double keep = r.d[t][x];
		r.d[t][x] += 1e-5 * sqrt(ss / (double)n);
		CHECKF(grad_diff(r.d[t], e.d[t], n, 1e-6, 0, &err, &wi) == 1 && wi == x,
		       "%s[%zu] off by 1e-5 rms was not caught", pname[t], x);
		r.d[t][x] = keep;
	}
	grads_free(&r);
	grads_free(&e);
	release(&c);
}
