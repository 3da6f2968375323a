/*
 * decode.c: incremental decode with a cache (mta.h, "decode"): the float64
 * engine behind mta_decode.
 *
 * Row i of the forward (MTA.md) needs, besides k and v of rows <= i:
 *   - the raw logits Z of the cq-1 rows before it (the pre-softmax
 *     convolution reaches back cq-1 query rows, and only to columns <= each
 *     row's own index, which were all known when that row was computed);
 *   - the probabilities P of the cq2-1 rows before it (the post-softmax
 *     convolution), likewise complete when those rows were computed.
 * So a sequence keeps k, v and two rings of rows (cq-1 logit rows and
 * cq2-1 probability rows, plus the current one), each O(T), and a new row
 * costs O(T * H * (D + cq*ck + cq2*ck2 + H)): one row of the forward. The
 * rings and caches grow by doubling, copied once per doubling.
 *
 * The engine is written apart from reference.c on purpose: the tests hold
 * every row it produces against mta_reference of the whole prefix, two
 * implementations of MTA.md that share no code but the problem's rules.
 */
#include "runtime/core/decode.h"
#include "runtime/core/attention.h"
#include "runtime/core/error.h"
#include "runtime/core/mta_dargs.h"
#include "runtime/core/pick.h"
#include "runtime/core/pool.h"

#include <inttypes.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

struct seq {
	int64_t len, cap;
	/* a kernel call failed after rows of this sequence ran: its rings hold
	 * rows past len, so it takes no tokens until mta_cache_reset */
	int broken;
	float *fk, *fv, *fz, *fp; /* kernel caches: the same layouts in float32 */
	double *kd, *vd; /* [cap][Hkv][D] */
	double *z;       /* [H][rows1][cap]: raw logits of the last rows1 rows */
	double *pr;      /* [H][rows2][cap]: probabilities of the last rows2 rows */
};

static int kernel_prefill(mta_cache *c, const struct mta_tensor *q, const struct mta_tensor *k,
			  const struct mta_tensor *v, const struct mta_weights *w,
			  const int64_t *n_new, int64_t Tn, struct mta_tensor *o);

struct mta_cache {
	struct mta_problem p;
	int64_t batch;
	int rows1, rows2;
	struct seq *seq;
	int64_t scap;    /* columns of the scratch rows */
	double *s, *m;   /* [H][scap] one row's scores, scratch */
	double *qd, *o;  /* [H*D], [D] */
	/* a generated decode kernel (NULL: the float64 engine) and its float32 buffers */
	mta_decode_fn kfn;
	struct mta_decoder dec;
	int64_t tb;      /* the T bucket dec was selected for (0: not yet) */
	float *fw;       /* [batch][MTA_DWORK(H, D, scap)] scratch */
	float *fq, *fo;  /* [batch][H][D] */
	struct mta_dseq *dseq; /* [batch] */
	/*
	 * A device cache (dec.mem set, mem its copy): fk, fv, fz, fp and fw
	 * are device memory; fq, fo and dseq stay on the host, staging the
	 * device's dq, dout and ddseq; dw holds the weights packed, hw the
	 * host copy of what dw holds (wok: it does), so that unchanged weights
	 * cross once; hrow stages one row's k and v.
	 */
	struct mta_dmem mem;
	float *dq, *dout, *dw, *hw, *hrow;
	struct mta_dseq *ddseq;
	size_t nw;
	int wok;
};

static int on_dev(const mta_cache *c)
{
	return c->mem.alloc != NULL;
}

/* Free a kernel cache's buffer p of either memory. */
static void kfree(mta_cache *c, void *p)
{
	if (!p)
		return;
	if (on_dev(c))
		c->mem.release(c->mem.ctx, p);
	else
		free(p);
}

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

int mta_cache_create(const struct mta_problem *p, int64_t batch, mta_cache **out)
{
	int rc;
	if (!out)
		return mta_fail(MTA_EINVAL, "mta_cache_create: no place for the cache");
	*out = NULL;
	if ((rc = mta_problem_validate(p)))
		return rc;
	if (batch < 1 || batch > (1 << 20))
		return mta_fail(MTA_EINVAL, "mta_cache_create: batch %" PRId64 " must be in 1..%d",
				batch, 1 << 20);
	mta_cache *c = calloc(1, sizeof *c);
	if (!c || !(c->seq = calloc((size_t)batch, sizeof *c->seq)) ||
	    !(c->qd = calloc((size_t)p->H * (size_t)p->D, sizeof *c->qd)) ||
	    !(c->o = calloc((size_t)p->D, sizeof *c->o))) {
		mta_cache_free(c);
		return mta_fail(MTA_ENOMEM, "mta_cache_create: out of memory");
	}
	c->p = *p;
	c->batch = batch;
	c->rows1 = p->cq ? p->cq : 1;
	c->rows2 = p->cq2 ? p->cq2 : 1;
	*out = c;
	return mta_done(MTA_OK);
}

static void seq_free(mta_cache *c, struct seq *s)
{
	kfree(c, s->fk);
	kfree(c, s->fv);
	kfree(c, s->fz);
	kfree(c, s->fp);
	free(s->kd);
	free(s->vd);
	free(s->z);
	free(s->pr);
	memset(s, 0, sizeof *s);
}

void mta_cache_free(mta_cache *c)
{
	if (!c)
		return;
	for (int64_t b = 0; c->seq && b < c->batch; b++)
		seq_free(c, &c->seq[b]);
	free(c->seq);
	free(c->s);
	free(c->m);
	free(c->qd);
	free(c->o);
	kfree(c, c->fw);
	free(c->fq);
	free(c->fo);
	free(c->dseq);
	kfree(c, c->dq);
	kfree(c, c->dout);
	kfree(c, c->dw);
	kfree(c, c->ddseq);
	free(c->hw);
	free(c->hrow);
	free(c);
}

int mta_cache_seqlens(const mta_cache *c, int64_t *lens)
{
	if (!c || !lens)
		return mta_fail(MTA_EINVAL, "mta_cache_seqlens: no cache or no place for the lengths");
	for (int64_t b = 0; b < c->batch; b++)
		lens[b] = c->seq[b].len;
	return mta_done(MTA_OK);
}

int mta_cache_reset(mta_cache *c, int64_t b)
{
	if (!c || b < 0 || b >= c->batch)
		return mta_fail(MTA_EINVAL, "mta_cache_reset: no cache, or sequence %" PRId64
				" outside 0..%" PRId64, b, c ? c->batch - 1 : -1);
	c->seq[b].len = 0;
	c->seq[b].broken = 0;
	return mta_done(MTA_OK);
}

int64_t mta_cache_bytes(const mta_cache *c)
{
	int64_t n = 0;
	for (int64_t b = 0; c && b < c->batch; b++) {
		const struct seq *s = &c->seq[b];
		n += s->cap * (2 * (int64_t)c->p.Hkv * c->p.D +
			       (int64_t)c->p.H * (c->rows1 + c->rows2)) *
		     (c->kfn ? (int64_t)sizeof(float) : (int64_t)sizeof(double));
	}
	if (c && c->kfn) /* the kernel's scratch: every sequence's rows and block sums */
		return n + (c->scap ? c->batch * MTA_DWORK(c->p.H, c->p.D, c->scap) : 0) *
				   (int64_t)sizeof(float);
	return c ? n + 2 * c->scap * c->p.H * (int64_t)sizeof(double) : 0;
}

/*
 * A ring [H][rows][cap] of elements of size es (double for the engine, float
 * for a kernel's cache) re-laid with a wider row stride ncap, keeping the
 * first used entries of each row; the old one freed. NULL when out of memory
 * (old is then kept).
 */
static void *regrow(void *old, size_t es, int H, int rows, int64_t cap, int64_t ncap,
		    int64_t used)
{
	char *x = calloc((size_t)H * (size_t)rows * (size_t)ncap, es);
	if (!x)
		return NULL;
	const char *o = old;
	for (int64_t r = 0; o && r < (int64_t)H * rows; r++)
		memcpy(x + (size_t)(r * ncap) * es, o + (size_t)(r * cap) * es,
		       (size_t)(used < cap ? used : cap) * es);
	free(old);
	return x;
}

/* Room for need tokens in sequence s (and the scratch rows). */
static int reserve(mta_cache *c, struct seq *s, int64_t need)
{
	const struct mta_problem *p = &c->p;
	if (need > s->cap) {
		int64_t ncap = s->cap ? s->cap : 16;
		while (ncap < need)
			ncap *= 2;
		const size_t kv = (size_t)p->Hkv * (size_t)p->D;
		double *kd = realloc(s->kd, (size_t)ncap * kv * sizeof *kd);
		if (kd)
			s->kd = kd;
		double *vd = kd ? realloc(s->vd, (size_t)ncap * kv * sizeof *vd) : NULL;
		if (vd)
			s->vd = vd;
		double *z = vd ? regrow(s->z, sizeof(double), p->H, c->rows1, s->cap, ncap,
					   s->len) : NULL;
		if (z)
			s->z = z;
		double *pr = z ? regrow(s->pr, sizeof(double), p->H, c->rows2, s->cap, ncap,
					   s->len) : NULL;
		if (!pr)
			return mta_fail(MTA_ENOMEM, "decode: out of memory for a cache of %" PRId64
					" tokens", ncap);
		s->pr = pr;
		s->cap = ncap;
	}
	if (s->cap > c->scap) {
		double *ns = realloc(c->s, (size_t)p->H * (size_t)s->cap * sizeof *ns);
		if (ns)
			c->s = ns;
		double *nm = ns ? realloc(c->m, (size_t)p->H * (size_t)s->cap * sizeof *nm) : NULL;
		if (!nm)
			return mta_fail(MTA_ENOMEM, "decode: out of memory for the scratch rows");
		c->m = nm;
		c->scap = s->cap;
	}
	return MTA_OK;
}

/*
 * Row i of a convolution (cross-correlation, kernel row cq-1 = row i, key
 * offset ok) over the ring rows [H-slice] of stride cap: out[0..i].
 * Values above their own row's diagonal, or before row 0, count as zero.
 */
static void conv_row(const double *ring, int rows, int64_t cap, int64_t i, const float *w, int cq,
		     int ck, int ok, double *out)
{
	for (int64_t j = 0; j <= i; j++) {
		double acc = 0;
		for (int a = 0; a < cq; a++) {
			const int64_t r = i - (cq - 1) + a;
			if (r < 0)
				continue;
			const double *row = ring + (r % rows) * cap;
			for (int b = 0; b < ck; b++) {
				const int64_t col = j - ok + b;
				if (col >= 0 && col <= r)
					acc += (double)w[a * ck + b] * row[col];
			}
		}
		out[j] = acc;
	}
}

/* One new row of sequence s (k, v of row i = s->len already stored; q in c->qd) into dst[H][D]. */
static void step(mta_cache *c, struct seq *s, const struct mta_weights *w, double *dst)
{
	const struct mta_problem *p = &c->p;
	const int H = p->H, D = p->D, G = p->H / p->Hkv, r1 = c->rows1, r2 = c->rows2;
	const int64_t i = s->len, cap = s->cap, sc = c->scap;
	const double scale = mta_problem_scale(p);
	const int ok1 = mta_pad_offset(p->pad, p->ck), ok2 = mta_pad_offset(p->pad, p->ck2);

	for (int h = 0; h < H; h++) { /* steps 1-2: logits of row i, pre-softmax convolution */
		double *zr = s->z + ((int64_t)h * r1 + i % r1) * cap;
		const double *qh = c->qd + (int64_t)h * D;
		for (int64_t j = 0; j <= i; j++) {
			const double *kj = s->kd + (j * p->Hkv + h / G) * D;
			double dot = 0;
			for (int d = 0; d < D; d++)
				dot += qh[d] * kj[d];
			zr[j] = scale * dot;
		}
		double *sr = c->s + (int64_t)h * sc;
		if (p->cq)
			conv_row(s->z + (int64_t)h * r1 * cap, r1, cap, i,
				 w->kq_pre + (size_t)h * (size_t)(p->cq * p->ck), p->cq, p->ck, ok1, sr);
		else
			memcpy(sr, zr, (size_t)(i + 1) * sizeof *sr);
	}
	if (p->head_pre) { /* step 3 */
		for (int h = 0; h < H; h++)
			for (int64_t j = 0; j <= i; j++) {
				double acc = 0;
				for (int h2 = 0; h2 < H; h2++)
					acc += (double)w->head_pre[h * H + h2] * c->s[(int64_t)h2 * sc + j];
				c->m[(int64_t)h * sc + j] = acc;
			}
		for (int h = 0; h < H; h++)
			memcpy(c->s + (int64_t)h * sc, c->m + (int64_t)h * sc, (size_t)(i + 1) * sizeof *c->s);
	}
	for (int h = 0; h < H; h++) { /* step 4: softmax over j <= i into the ring */
		const double *sr = c->s + (int64_t)h * sc;
		double *pw = s->pr + ((int64_t)h * r2 + i % r2) * cap, mx = -INFINITY, sum = 0;
		for (int64_t j = 0; j <= i; j++)
			mx = sr[j] > mx ? sr[j] : mx;
		for (int64_t j = 0; j <= i; j++)
			sum += (pw[j] = exp(sr[j] - mx));
		for (int64_t j = 0; j <= i; j++)
			pw[j] /= sum;
	}
	for (int h = 0; h < H; h++) { /* step 5 into m */
		double *mr = c->m + (int64_t)h * sc;
		const double *ring = s->pr + (int64_t)h * r2 * cap;
		if (p->cq2)
			conv_row(ring, r2, cap, i, w->kq_post + (size_t)h * (size_t)(p->cq2 * p->ck2),
				 p->cq2, p->ck2, ok2, mr);
		else
			memcpy(mr, ring + (i % r2) * cap, (size_t)(i + 1) * sizeof *mr);
	}
	for (int h = 0; h < H; h++) { /* step 6: m -> s */
		double *sr = c->s + (int64_t)h * sc;
		for (int64_t j = 0; j <= i; j++) {
			double acc = 0;
			if (p->head_post == MTA_HPOST_CONV) {
				const int hc = p->hc, g = h / hc, oo = h % hc;
				for (int in = 0; in < hc; in++)
					acc += (double)w->head_post[((int64_t)g * hc + in) * hc + oo] *
					       c->m[(int64_t)(g * hc + in) * sc + j];
			} else if (p->head_post == MTA_HPOST_LINEAR) {
				for (int h2 = 0; h2 < H; h2++)
					acc += (double)w->head_post_linear[h * H + h2] * c->m[(int64_t)h2 * sc + j];
			} else {
				acc = c->m[(int64_t)h * sc + j];
			}
			sr[j] = acc;
		}
	}
	for (int h = 0; h < H; h++) { /* steps 7-9 */
		const double *sr = c->s + (int64_t)h * sc;
		double *o = c->o;
		memset(o, 0, (size_t)D * sizeof *o);
		for (int64_t j = 0; j <= i; j++) {
			const double *vj = s->vd + (j * p->Hkv + h / G) * D;
			for (int d = 0; d < D; d++)
				o[d] += sr[j] * vj[d];
		}
		if (p->gn) {
			double ms = 0;
			for (int d = 0; d < D; d++)
				ms += o[d] * o[d];
			const double r = 1.0 / sqrt(ms / D + 1e-5);
			const double resc = p->gn_rescale ? mta_layer_rescale(w->layer_id) : 1.0;
			for (int d = 0; d < D; d++)
				o[d] = o[d] * r * (double)w->gn_weight[d] * resc;
		}
		if (p->gate) {
			double g = (double)(w->gate_b_ptr ? *w->gate_b_ptr : w->gate_b);
			for (int d = 0; d < D; d++)
				g += o[d] * (double)w->gate_w[d];
			const double sg = 1.0 / (1.0 + exp(-g));
			for (int d = 0; d < D; d++)
				o[d] *= sg;
		}
		memcpy(dst + (int64_t)h * D, o, (size_t)D * sizeof *o);
	}
	s->len = i + 1;
}

/* Check a decode call's tensors: q [B,Tn,H,D], k, v [B,Tn,Hkv,D], o NULL or [B,Tn,H,D] f32. */
static int check_call(const mta_cache *c, const struct mta_tensor *q, const struct mta_tensor *k,
		      const struct mta_tensor *v, const struct mta_tensor *o, const int64_t *n_new,
		      int64_t *Tn)
{
	int64_t B;
	int rc;
	if (!c)
		return mta_fail(MTA_EINVAL, "decode: no cache");
	if ((rc = mta_check_tensors(&c->p, q, k, v, o, &B, Tn)))
		return rc;
	if (B != c->batch)
		return mta_fail(MTA_ESHAPE, "decode: q has B=%" PRId64 " but the cache holds %" PRId64
				" sequences", B, c->batch);
	for (int64_t b = 0; n_new && b < B; b++)
		if (n_new[b] < 0 || n_new[b] > *Tn)
			return mta_fail(MTA_EINVAL, "decode: n_new[%" PRId64 "] = %" PRId64 " is outside "
					"0..%" PRId64 " (the rows q, k, v hold)", b, n_new[b], *Tn);
	return MTA_OK;
}

int mta_decode_f64(mta_cache *c, const struct mta_tensor *q, const struct mta_tensor *k,
		   const struct mta_tensor *v, const struct mta_weights *w, const int64_t *n_new,
		   double *out)
{
	static const struct mta_weights none;
	int64_t Tn;
	int rc;
	if ((rc = check_call(c, q, k, v, NULL, n_new, &Tn)))
		return rc;
	if (c->kfn)
		return mta_fail(MTA_EINVAL, "decode: this cache runs a kernel (float32), not the "
				"float64 engine");
	if (!w)
		w = &none;
	if ((rc = mta_check_weights(&c->p, w)))
		return mta_wrap(rc, "decode");
	const struct mta_problem *p = &c->p;
	const int H = p->H, D = p->D;
	/* room first, for every sequence: a call that fails leaves every cache as it was */
	for (int64_t b = 0; b < c->batch; b++)
		if ((rc = reserve(c, &c->seq[b], c->seq[b].len + (n_new ? n_new[b] : Tn))))
			return rc;
	for (int64_t b = 0; b < c->batch; b++) {
		struct seq *s = &c->seq[b];
		const int64_t n = n_new ? n_new[b] : Tn;
		for (int64_t r = 0; r < n; r++) {
			const int64_t i = s->len;
			for (int hk = 0; hk < p->Hkv; hk++)
				for (int d = 0; d < D; d++) {
					s->kd[(i * p->Hkv + hk) * D + d] = get(k, at(k, b, r, hk, d));
					s->vd[(i * p->Hkv + hk) * D + d] = get(v, at(v, b, r, hk, d));
				}
			for (int h = 0; h < H; h++)
				for (int d = 0; d < D; d++)
					c->qd[h * D + d] = get(q, at(q, b, r, h, d));
			step(c, s, w, out + ((b * Tn + r) * H) * D);
		}
	}
	return mta_done(MTA_OK);
}

int mta_decode(mta_cache *c, const struct mta_tensor *q, const struct mta_tensor *k,
	       const struct mta_tensor *v, const struct mta_weights *w, const int64_t *n_new,
	       struct mta_tensor *o)
{
	int64_t Tn;
	int rc;
	if ((rc = check_call(c, q, k, v, o, n_new, &Tn)))
		return rc;
	if (!o)
		return mta_fail(MTA_EINVAL, "decode: output tensor o is missing");
	if (c->kfn) {
		static const struct mta_weights none;
		if (!w)
			w = &none;
		if ((rc = mta_check_weights(&c->p, w)))
			return mta_wrap(rc, "decode");
		return mta_done(kernel_prefill(c, q, k, v, w, n_new, Tn, o));
	}
	const int64_t B = c->batch, H = c->p.H, D = c->p.D;
	double *d = malloc((size_t)(B * Tn * H * D) * sizeof *d + 1);
	if (!d)
		return mta_fail(MTA_ENOMEM, "decode: out of memory for the outputs");
	if (!(rc = mta_decode_f64(c, q, k, v, w, n_new, d)))
		for (int64_t b = 0; b < B; b++)
			for (int64_t r = 0; r < (n_new ? n_new[b] : Tn); r++)
				for (int64_t h = 0; h < H; h++)
					for (int64_t x = 0; x < D; x++)
						((float *)o->data)[at(o, b, r, h, x)] =
							(float)d[((b * Tn + r) * H + h) * D + x];
	free(d);
	return rc;
}

/* ---- a generated decode kernel (runtime/core/mta_dargs.h) ---- */

int mta_cache_create_kernel(const struct mta_problem *p, int64_t batch,
			    const struct mta_decoder *d, mta_cache **out)
{
	int rc;
	if (!d || !d->fn)
		return mta_fail(MTA_EINVAL, "mta_cache_create_kernel: no kernel");
	if ((rc = mta_cache_create(p, batch, out)))
		return rc;
	mta_cache *c = *out;
	c->kfn = d->fn;
	c->dec = *d;
	const size_t hd = (size_t)p->H * (size_t)p->D;
	if (!(c->fq = malloc((size_t)batch * hd * sizeof *c->fq)) ||
	    !(c->fo = malloc((size_t)batch * hd * sizeof *c->fo)) ||
	    !(c->dseq = calloc((size_t)batch, sizeof *c->dseq))) {
		rc = mta_fail(MTA_ENOMEM, "mta_cache_create: out of memory");
		goto fail;
	}
	if (d->mem) {
		struct mta_weights none;
		struct mta_wpart parts[MTA_WPARTS_MAX];
		memset(&none, 0, sizeof none);
		const int np = mta_weight_parts(p, &none, parts);
		for (int i = 0; i < np; i++)
			c->nw += parts[i].n;
		if (!d->mem->alloc || !d->mem->release || !d->mem->put || !d->mem->get ||
		    !d->mem->move) {
			rc = mta_fail(MTA_EINVAL, "mta_cache_create_kernel: the decoder's memory "
				      "lacks an operation");
			goto fail;
		}
		c->mem = *d->mem;
		c->dec.mem = &c->mem;
		if (!(c->hw = malloc((c->nw + 1) * sizeof *c->hw)) ||
		    !(c->hrow = malloc(2 * (size_t)p->Hkv * (size_t)p->D * sizeof *c->hrow))) {
			rc = mta_fail(MTA_ENOMEM, "mta_cache_create: out of memory");
			goto fail;
		}
		if ((rc = c->mem.alloc(c->mem.ctx, (size_t)batch * hd * sizeof(float),
				       (void **)&c->dq)) ||
		    (rc = c->mem.alloc(c->mem.ctx, (size_t)batch * hd * sizeof(float),
				       (void **)&c->dout)) ||
		    (rc = c->mem.alloc(c->mem.ctx, (c->nw + 1) * sizeof(float), (void **)&c->dw)) ||
		    (rc = c->mem.alloc(c->mem.ctx, (size_t)batch * sizeof(struct mta_dseq),
				       (void **)&c->ddseq))) {
			mta_wrap(rc, "mta_cache_create: the decode kernel's device memory");
			goto fail;
		}
	}
	return MTA_OK;
fail:
	mta_cache_free(c);
	*out = NULL;
	return rc;
}

/*
 * Sequence s of a device cache re-laid for ncap tokens: new device
 * buffers, the used part of k, v and of each ring row moved in, the old
 * ones released. On failure s is as it was.
 */
static int dgrow(mta_cache *c, struct seq *s, int64_t ncap)
{
	const struct mta_problem *p = &c->p;
	const size_t f = sizeof(float), kv = (size_t)p->Hkv * (size_t)p->D;
	const size_t used = (size_t)(s->len < s->cap ? s->len : s->cap);
	void *n[4] = { 0 }, *old[4] = { s->fk, s->fv, s->fz, s->fp };
	const size_t bytes[4] = { (size_t)ncap * kv * f, (size_t)ncap * kv * f,
				  (size_t)p->H * (size_t)c->rows1 * (size_t)ncap * f,
				  (size_t)p->H * (size_t)c->rows2 * (size_t)ncap * f };
	int rc = MTA_OK;
	for (int i = 0; i < 4 && !rc; i++)
		rc = c->mem.alloc(c->mem.ctx, bytes[i], &n[i]);
	if (!rc && used) {
		rc = c->mem.move(c->mem.ctx, n[0], s->fk, (size_t)s->len * kv * f);
		if (!rc)
			rc = c->mem.move(c->mem.ctx, n[1], s->fv, (size_t)s->len * kv * f);
		for (int i = 2; i < 4 && !rc; i++) {
			const int64_t rows = (int64_t)p->H * (i == 2 ? c->rows1 : c->rows2);
			for (int64_t r = 0; r < rows && !rc; r++)
				rc = c->mem.move(c->mem.ctx, (float *)n[i] + r * ncap,
						 (float *)old[i] + r * s->cap, used * f);
		}
	}
	if (rc) {
		for (int i = 0; i < 4; i++)
			kfree(c, n[i]);
		return mta_wrap(rc, "decode: growing a cache to %" PRId64 " tokens", ncap);
	}
	for (int i = 0; i < 4; i++)
		kfree(c, old[i]);
	s->fk = n[0];
	s->fv = n[1];
	s->fz = n[2];
	s->fp = n[3];
	s->cap = ncap;
	return MTA_OK;
}

/* Room for need tokens in sequence s of a kernel cache (and its scratch rows). */
static int freserve(mta_cache *c, struct seq *s, int64_t need)
{
	const struct mta_problem *p = &c->p;
	if (need > s->cap && on_dev(c)) {
		int64_t ncap = s->cap ? s->cap : 16;
		while (ncap < need)
			ncap *= 2;
		int rc = dgrow(c, s, ncap);
		if (rc)
			return rc;
	}
	if (need > s->cap) {
		int64_t ncap = s->cap ? s->cap : 16;
		while (ncap < need)
			ncap *= 2;
		const size_t kv = (size_t)p->Hkv * (size_t)p->D;
		float *k = realloc(s->fk, (size_t)ncap * kv * sizeof *k);
		if (k)
			s->fk = k;
		float *v = k ? realloc(s->fv, (size_t)ncap * kv * sizeof *v) : NULL;
		if (v)
			s->fv = v;
		float *z = v ? regrow(s->fz, sizeof(float), p->H, c->rows1, s->cap, ncap,
					   s->len) : NULL;
		if (z)
			s->fz = z;
		float *pr = z ? regrow(s->fp, sizeof(float), p->H, c->rows2, s->cap, ncap,
					   s->len) : NULL;
		if (!pr)
			return mta_fail(MTA_ENOMEM, "decode: out of memory for a cache of %" PRId64
					" tokens", ncap);
		s->fp = pr;
		s->cap = ncap;
	}
	if (s->cap > c->scap && on_dev(c)) {
		void *nw = NULL;
		int rc = c->mem.alloc(c->mem.ctx, (size_t)c->batch *
				      (size_t)MTA_DWORK(p->H, p->D, s->cap) * sizeof(float), &nw);
		if (rc)
			return mta_wrap(rc, "decode: the scratch rows");
		kfree(c, c->fw);
		c->fw = nw;
		c->scap = s->cap;
	}
	if (s->cap > c->scap) {
		float *nw = realloc(c->fw, (size_t)c->batch * (size_t)MTA_DWORK(p->H, p->D, s->cap) *
					   sizeof *nw);
		if (!nw)
			return mta_fail(MTA_ENOMEM, "decode: out of memory for the scratch rows");
		c->fw = nw;
		c->scap = s->cap;
	}
	return MTA_OK;
}

const struct mta_decoder *mta_cache_decoder(const mta_cache *c)
{
	return c && c->kfn ? &c->dec : NULL;
}

void mta_cache_drop_last(mta_cache *c)
{
	for (int64_t b = 0; c && b < c->batch; b++)
		if (c->seq[b].len > 0)
			c->seq[b].len--;
}

/* The decode winner's decoder for a call whose longest row is T (select hook, if any). */
static int reselect(mta_cache *c, int64_t T)
{
	const int64_t tb = mta_t_bucket(T);
	struct mta_decoder nd;
	int rc;
	if (!c->dec.select || tb == c->tb)
		return MTA_OK;
	if ((rc = c->dec.select(c->dec.ctx, &c->p, c->batch, T, &nd)))
		return rc;
	if (!nd.fn)
		return mta_fail(MTA_EINVAL, "decode: the context gave no kernel for T=%" PRId64, T);
	/* the cache's buffers stay where they are: the new kernel must read the same memory */
	if (!nd.mem != !on_dev(c) ||
	    (nd.mem && (nd.mem->ctx != c->mem.ctx || nd.mem->alloc != c->mem.alloc)))
		return mta_fail(MTA_EINVAL, "decode: the kernel for T=%" PRId64 " reads another "
				"memory than the cache's", T);
	nd.mem = on_dev(c) ? &c->mem : NULL;
	c->dec = nd;
	c->kfn = nd.fn;
	c->tb = tb;
	return MTA_OK;
}

/*
 * Every kernel a kernel_decode call will select (the T buckets of its rows'
 * longest sequences, as it walks them), selected now, so that one that
 * cannot be had (a compile that fails) fails the call before any row runs.
 * The context keeps what it selected: the walk's own selections find it.
 */
static int preselect(mta_cache *c, const int64_t *n_new, int64_t Tn, const int64_t *first)
{
	int64_t nmax = 0, tb = c->tb;
	struct mta_decoder nd;
	int rc;
	if (!c->dec.select)
		return MTA_OK;
	for (int64_t b = 0; b < c->batch; b++)
		nmax = (n_new ? n_new[b] : Tn) > nmax ? (n_new ? n_new[b] : Tn) : nmax;
	for (int64_t r = 0; r < nmax; r++) {
		int64_t tmax = 0;
		for (int64_t b = 0; b < c->batch; b++) {
			const int64_t f = first ? first[b] : 0;
			if (r >= (n_new ? n_new[b] : Tn) || r < f)
				continue;
			/* the row's position: the length it finds, as kernel_decode advances it */
			const int64_t t = c->seq[b].len + (r - f) + 1;
			tmax = t > tmax ? t : tmax;
		}
		if (!tmax || mta_t_bucket(tmax) == tb)
			continue;
		tb = mta_t_bucket(tmax);
		if ((rc = c->dec.select(c->dec.ctx, &c->p, c->batch, tmax, &nd)))
			return mta_wrap(rc, "decode: the kernel for T=%" PRId64, tmax);
	}
	return MTA_OK;
}

/*
 * A device cache's weights: w's packed into dw when they differ from what
 * dw holds, and a's weight pointers set to dw's parts.
 */
static int dweights(mta_cache *c, const struct mta_weights *w, struct mta_dargs *a)
{
	struct mta_weights dw = *w;
	struct mta_wpart parts[MTA_WPARTS_MAX];
	const int np = mta_weight_parts(&c->p, &dw, parts);
	float *pack = malloc((c->nw + 1) * sizeof *pack);
	size_t off = 0;
	int rc = MTA_OK;
	if (!pack)
		return mta_fail(MTA_ENOMEM, "decode: out of memory");
	for (int i = 0; i < np; i++) {
		memcpy(pack + off, *parts[i].ptr, parts[i].n * sizeof *pack);
		*parts[i].ptr = c->dw + off;
		off += parts[i].n;
	}
	if (off && (!c->wok || memcmp(pack, c->hw, off * sizeof *pack))) {
		c->wok = 0;
		if ((rc = c->mem.put(c->mem.ctx, c->dw, pack, off * sizeof *pack))) {
			mta_wrap(rc, "decode: copying the weights to the device");
			goto out;
		}
		memcpy(c->hw, pack, off * sizeof *pack);
		c->wok = 1;
	}
	a->kq_pre = dw.kq_pre;
	a->head_pre = dw.head_pre;
	a->kq_post = dw.kq_post;
	a->head_post = dw.head_post;
	a->head_post_linear = dw.head_post_linear;
	a->gn_weight = dw.gn_weight;
	a->gate_w = dw.gate_w;
out:
	free(pack);
	return rc;
}

/*
 * mta_decode through the kernel: row r of every sequence that has one, one
 * call per r. Sequence b runs its rows [first[b], n_new[b]) (first NULL: 0;
 * its cache holds first[b] tokens then) and writes the outputs of rows
 * r >= wfrom[b] into o (wfrom NULL: all; o NULL: none).
 */
static int kernel_decode(mta_cache *c, const struct mta_tensor *q, const struct mta_tensor *k,
			 const struct mta_tensor *v, const struct mta_weights *w,
			 const int64_t *n_new, int64_t Tn, struct mta_tensor *o,
			 const int64_t *first, const int64_t *wfrom)
{
	const struct mta_problem *p = &c->p;
	const int H = p->H, D = p->D;
	int64_t nmax = 0;
	int rc;
	for (int64_t b = 0; b < c->batch; b++) {
		const int64_t n = n_new ? n_new[b] : Tn;
		nmax = n > nmax ? n : nmax;
	}
	struct mta_dargs a;
	memset(&a, 0, sizeof a);
	a.seq = c->dseq;
	a.q = c->fq;
	a.o = c->fo;
	a.work = c->fw;
	a.scap = c->scap;
	a.kq_pre = w->kq_pre;
	a.head_pre = w->head_pre;
	a.kq_post = w->kq_post;
	a.head_post = w->head_post;
	a.head_post_linear = w->head_post_linear;
	a.gn_weight = w->gn_weight;
	a.gate_w = w->gate_w;
	a.gate_b = (w->gate_b_ptr ? *w->gate_b_ptr : w->gate_b);
	a.gn_rescale = p->gn_rescale ? (float)mta_layer_rescale(w->layer_id) : 1.0f;
	if (on_dev(c) && (rc = dweights(c, w, &a)))
		return rc;
	const size_t kv = (size_t)p->Hkv * (size_t)D, hd = (size_t)H * (size_t)D;
	for (int64_t r = 0; r < nmax; r++) {
		int64_t n = 0, who[1 << 10], *wh = who, tmax = 0;
		int64_t *big = NULL;
		if (c->batch > (1 << 10) && !(wh = big = malloc((size_t)c->batch * sizeof *big)))
			return mta_fail(MTA_ENOMEM, "decode: out of memory");
		for (int64_t b = 0; b < c->batch; b++) {
			if (r >= (n_new ? n_new[b] : Tn) || (first && r < first[b]))
				continue;
			struct seq *s = &c->seq[b];
			const int64_t i = s->len;
			/* a device cache's row is staged on the host, then copied in */
			float *kr = on_dev(c) ? c->hrow : s->fk + (size_t)i * kv;
			float *vr = on_dev(c) ? c->hrow + kv : s->fv + (size_t)i * kv;
			for (int hk = 0; hk < p->Hkv; hk++)
				for (int d = 0; d < D; d++) {
					kr[hk * D + d] = (float)get(k, at(k, b, r, hk, d));
					vr[hk * D + d] = (float)get(v, at(v, b, r, hk, d));
				}
			if (on_dev(c) &&
			    ((rc = c->mem.put(c->mem.ctx, s->fk + (size_t)i * kv, kr, kv * sizeof *kr)) ||
			     (rc = c->mem.put(c->mem.ctx, s->fv + (size_t)i * kv, vr, kv * sizeof *vr)))) {
				free(big);
				return mta_wrap(rc, "decode: copying row %" PRId64 "'s k and v to the "
						"device", i);
			}
			for (int h = 0; h < H; h++)
				for (int d = 0; d < D; d++)
					c->fq[(n * H + h) * D + d] = (float)get(q, at(q, b, r, h, d));
			c->dseq[n] = (struct mta_dseq){ i, s->cap, s->fk, s->fv, s->fz, s->fp };
			tmax = i + 1 > tmax ? i + 1 : tmax;
			wh[n++] = b;
		}
		if (!n) {
			free(big);
			continue;
		}
		if ((rc = reselect(c, tmax))) {
			free(big);
			return rc;
		}
		a.n = n;
		a.nthreads = c->dec.nthreads;
		a.impl = c->dec.impl;
		if (on_dev(c)) {
			/* every pointer the kernel reads is the device's; o comes back */
			a.seq = c->ddseq;
			a.q = c->dq;
			a.o = c->dout;
			if ((rc = c->mem.put(c->mem.ctx, c->ddseq, c->dseq,
					     (size_t)n * sizeof *c->dseq)) ||
			    (rc = c->mem.put(c->mem.ctx, c->dq, c->fq, (size_t)n * hd * sizeof *c->fq)) ||
			    (rc = c->kfn(&a)) ||
			    (rc = c->mem.get(c->mem.ctx, c->fo, c->dout, (size_t)n * hd * sizeof *c->fo))) {
				free(big);
				return mta_wrap(rc, "decode kernel at row %" PRId64, r);
			}
		} else {
			rc = c->dec.pool ? mta_pool_call_decode(c->dec.pool, c->kfn, &a) : c->kfn(&a);
		}
		for (int64_t x = 0; !rc && x < n; x++) {
			const int64_t b = wh[x];
			c->seq[b].len++;
			if (!o || (wfrom && r < wfrom[b]))
				continue;
			for (int h = 0; h < H; h++)
				for (int d = 0; d < D; d++)
					((float *)o->data)[at(o, b, r, h, d)] = c->fo[(x * H + h) * D + d];
		}
		free(big);
		if (rc)
			return mta_fail(MTA_EKERNEL, "decode kernel returned error %d at row %" PRId64,
					rc, r);
	}
	return MTA_OK;
}

/*
 * The state a prefill of n tokens into the empty sequence b leaves (k, v
 * and the rings), but for the rows the decode kernel will still run: k
 * and v of rows [0, s0) copied, and the raw logit rows [l0, s0) the first
 * kernel row's pre-softmax convolution reads computed directly (q.k, the
 * kernel's float32 order). The kernel then runs rows [s0, n), s0 = n -
 * (cq2-1): each writes its logit and probability rows into the rings, so
 * after them the rings hold the last cq-1 logit rows and the last cq2-1
 * probability rows, all that a later row reads. Their outputs are not
 * kept (their post-softmax convolution reads probability rows before s0,
 * which nobody computed): the prefill's outputs come from the forward.
 * A device cache's rows are made on the host and copied in.
 * Sets *s0 (the sequence's length now).
 */
static int seed(mta_cache *c, int64_t b, const struct mta_tensor *q,
		const struct mta_tensor *k, const struct mta_tensor *v, int64_t n, int64_t *s0p)
{
	const struct mta_problem *p = &c->p;
	struct seq *s = &c->seq[b];
	const int H = p->H, D = p->D, G = p->H / p->Hkv, R1 = c->rows1, dev = on_dev(c);
	const float scale = (float)mta_problem_scale(p);
	const size_t kv = (size_t)p->Hkv * (size_t)D;
	int64_t s0 = n - (p->cq2 > 1 ? p->cq2 - 1 : 0), l0;
	int rc = MTA_OK;
	s0 = s0 < 0 ? 0 : s0;
	l0 = s0 - (p->cq > 1 ? p->cq - 1 : 0);
	l0 = l0 < 0 ? 0 : l0;
	float *fk = dev ? malloc((size_t)s0 * kv * sizeof *fk + 1) : s->fk;
	float *fv = dev ? malloc((size_t)s0 * kv * sizeof *fv + 1) : s->fv;
	float *zrow = dev ? malloc((size_t)(s0 + 1) * sizeof *zrow) : NULL;
	if (dev && (!fk || !fv || !zrow)) {
		rc = mta_fail(MTA_ENOMEM, "decode: out of memory for a prefill's %" PRId64 " rows",
			      s0);
		goto out;
	}
	for (int64_t r = 0; r < s0; r++)
		for (int hk = 0; hk < p->Hkv; hk++)
			for (int d = 0; d < D; d++) {
				fk[(r * p->Hkv + hk) * D + d] = (float)get(k, at(k, b, r, hk, d));
				fv[(r * p->Hkv + hk) * D + d] = (float)get(v, at(v, b, r, hk, d));
			}
	if (dev && s0 &&
	    ((rc = c->mem.put(c->mem.ctx, s->fk, fk, (size_t)s0 * kv * sizeof *fk)) ||
	     (rc = c->mem.put(c->mem.ctx, s->fv, fv, (size_t)s0 * kv * sizeof *fv))))
		goto out;
	for (int64_t r = l0; r < s0 && !rc; r++)
		for (int h = 0; h < H && !rc; h++) {
			float qh[D];
			for (int d = 0; d < D; d++)
				qh[d] = (float)get(q, at(q, b, r, h, d));
			float *ring = s->fz + ((int64_t)h * R1 + r % R1) * s->cap;
			float *zr = dev ? zrow : ring;
			for (int64_t j = 0; j <= r; j++) {
				const float *kj = fk + (j * p->Hkv + h / G) * D;
				float dot = 0.0f;
				for (int d = 0; d < D; d++)
					dot += qh[d] * kj[d];
				zr[j] = scale * dot;
			}
			if (dev)
				rc = c->mem.put(c->mem.ctx, ring, zr, (size_t)(r + 1) * sizeof *zr);
		}
	if (!rc)
		s->len = s0;
	*s0p = s0;
out:
	if (dev) {
		free(fk);
		free(fv);
		free(zrow);
	}
	return rc ? mta_wrap(rc, "decode: seeding sequence %" PRId64 "'s cache", b) : MTA_OK;
}

/*
 * mta_decode (o set) or mta_cache_fill (o NULL) through the kernel. Each
 * empty sequence taking tokens is a prefill: with o, its outputs come from
 * the context's forward on the sequence's rows (the tiled kernels: O(n^2)
 * at the forward's speed instead of n rows of decode), and only the last
 * cq2-1 rows run through the decode kernel, to seed the rings (seed()).
 * Every other sequence runs row by row. Without a forward hook (a cache
 * made by mta_cache_create_kernel alone) a prefill with outputs runs row by
 * row too. A call that fails leaves every sequence's length as it was
 * (mta.h). One that fails before any row runs (room, a forward, a seeding,
 * a kernel for a new T bucket that cannot be had: preselect) leaves every
 * cache as it was, so the same tokens can be given again; one that fails
 * while rows run (the kernel, or a device copy) has overwritten ring rows
 * that its sequences with earlier rows still need: those are marked broken
 * and refuse tokens until mta_cache_reset.
 */
static int kernel_prefill(mta_cache *c, const struct mta_tensor *q, const struct mta_tensor *k,
			  const struct mta_tensor *v, const struct mta_weights *w,
			  const int64_t *n_new, int64_t Tn, struct mta_tensor *o)
{
	const struct mta_problem *p = &c->p;
	int64_t *first = NULL, *wfrom = NULL, *len0 = NULL;
	int rc = MTA_OK, any = 0, ran = 0;
	for (int64_t b = 0; b < c->batch; b++)
		if (c->seq[b].broken && (n_new ? n_new[b] : Tn) > 0)
			return mta_fail(MTA_EINVAL, "decode: sequence %" PRId64 " was left inconsistent "
					"by a failed call (its rings hold rows past its length %"
					PRId64 "); mta_cache_reset it before giving it tokens", b,
					c->seq[b].len);
	if (!(len0 = malloc((size_t)c->batch * sizeof *len0)))
		return mta_fail(MTA_ENOMEM, "decode: out of memory");
	for (int64_t b = 0; b < c->batch; b++)
		len0[b] = c->seq[b].len;
	for (int64_t b = 0; b < c->batch; b++)
		if ((rc = freserve(c, &c->seq[b], c->seq[b].len + (n_new ? n_new[b] : Tn))))
			goto out;
	if (!(first = calloc((size_t)c->batch, sizeof *first)) ||
	    !(wfrom = calloc((size_t)c->batch, sizeof *wfrom))) {
		rc = mta_fail(MTA_ENOMEM, "decode: out of memory");
		goto out;
	}
	for (int64_t b = 0; b < c->batch; b++) {
		const int64_t n = n_new ? n_new[b] : Tn;
		if (c->seq[b].len || n < 1 || (o && !c->dec.forward))
			continue;
		wfrom[b] = n;
		first[b] = -1; /* marked: seeded below */
		any = 1;
		if (!o)
			continue;
		struct mta_tensor qb = *q, kb = *k, vb = *v, ob = *o;
		qb.data = (char *)q->data + (size_t)(b * q->stride[0]) * mta_dtype_size(q->dtype);
		kb.data = (char *)k->data + (size_t)(b * k->stride[0]) * mta_dtype_size(k->dtype);
		vb.data = (char *)v->data + (size_t)(b * v->stride[0]) * mta_dtype_size(v->dtype);
		ob.data = (float *)o->data + b * o->stride[0];
		qb.shape[0] = kb.shape[0] = vb.shape[0] = ob.shape[0] = 1;
		qb.shape[1] = kb.shape[1] = vb.shape[1] = ob.shape[1] = n;
		if ((rc = c->dec.forward(c->dec.ctx, p, &qb, &kb, &vb, w, &ob))) {
			mta_wrap(rc, "decode: the prefill's forward of sequence %" PRId64
				 " (%" PRId64 " tokens)", b, n);
			goto out;
		}
	}
	for (int64_t b = 0; any && b < c->batch; b++)
		if (first[b] < 0 && (rc = seed(c, b, q, k, v, n_new ? n_new[b] : Tn, &first[b])))
			goto out;
	if ((rc = preselect(c, n_new, Tn, first)))
		goto out;
	ran = 1;
	rc = kernel_decode(c, q, k, v, w, n_new, Tn, o, first, wfrom);
out:
	/* lengths as they were; a sequence with rows before the call whose rows
	 * ran has rings past its length (a new one's rings are made afresh) */
	for (int64_t b = 0; rc && b < c->batch; b++) {
		c->seq[b].len = len0[b];
		if (ran && len0[b] > 0 && (n_new ? n_new[b] : Tn) > 0)
			c->seq[b].broken = 1;
	}
	free(len0);
	free(first);
	free(wfrom);
	return rc;
}

int mta_cache_fill(mta_cache *c, const struct mta_tensor *q, const struct mta_tensor *k,
		   const struct mta_tensor *v, const struct mta_weights *w, const int64_t *n_new)
{
	static const struct mta_weights none;
	int64_t Tn;
	int rc;
	if ((rc = check_call(c, q, k, v, NULL, n_new, &Tn)))
		return rc;
	if (!c->kfn)
		return mta_fail(MTA_EINVAL, "mta_cache_fill: the cache runs no kernel");
	if (!w)
		w = &none;
	if ((rc = mta_check_weights(&c->p, w)))
		return mta_wrap(rc, "decode");
	return mta_done(kernel_prefill(c, q, k, v, w, n_new, Tn, NULL));
}
