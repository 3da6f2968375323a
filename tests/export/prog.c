/*
 * prog.c: a user of an exported library (tests/test_export.c builds it
 * against lib<NAME>.a and lib<NAME>.so with nothing but -ldl -lm -lpthread).
 *
 *   prog run CASE OUT    forward on CASE, output written raw to OUT
 *   prog attn CASE OUT ODT  the same through a weights handle and
 *                        mta_attention with o of type ODT (f32, bf16, f16),
 *                        three calls after mta_context_reserve, which must
 *                        count no allocation, sync or kernel load; OUT
 *                        gets o widened to float32
 *   prog grad CASE OUT   mta_forward_train then mta_backward on CASE, whose
 *                        weights are followed by dL/do [B,T,H,D]: OUT gets o,
 *                        dq, dk, dv and the gradient of each weight the
 *                        problem uses (struct mta_grads order), raw float32;
 *                        prints "SOURCE SPEC" of the backward's pick
 *   prog pick KEY T      print "SOURCE SPEC" of mta_context_pick
 *   prog ctx BACKEND [DB]  create a context and say how it went
 *
 * With MTX_CU_SEQLENS="0,a,b,...,T" in the environment (and B = 1), run
 * runs the packed-documents forward (mta_forward_varlen) with those offsets,
 * and grad the packed training calls (mta_forward_train_varlen, then
 * mta_backward_varlen). With MTX_BACKEND=cuda, grad's and attn's context
 * is a CUDA library's (default cpu); with MTX_Q_DEVICE=1, grad's and attn's
 * q says it is in device memory (it is host memory).
 * With MTX_DECODE_FROM=N, run decodes instead: rows [0,N) of every sequence
 * as one chunk into a cache of mta_cache_create_ctx, then one token at a time
 * (on a context of MTX_BACKEND, default cpu).
 *
 * CASE: a text line "KEY B T LAYER_ID\n", then float32 q [B,T,H,D], k and v
 * [B,T,Hkv,D], and the weights the problem uses in struct mta_weights order
 * (kq_pre, head_pre, kq_post, head_post or head_post_linear, gn_weight,
 * gate_w, gate_b). Failures print "STATUS: message" and exit 1.
 */
#include "mta.h" /* the exported library's header (-I<library>) */

#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int fail(int rc)
{
	printf("%s: %s\n", mta_status_name(rc), mta_last_error());
	return 1;
}

/* n floats from f into a fresh buffer (NULL when n is 0). */
static float *take(FILE *f, size_t n)
{
	float *x;
	if (!n)
		return NULL;
	if (!(x = malloc(n * sizeof *x)) || fread(x, sizeof *x, n, f) != n) {
		fprintf(stderr, "case file too short\n");
		exit(2);
	}
	return x;
}

static int run(const char *case_path, const char *out_path, int odt)
{
	char key[MTA_KEY_MAX];
	long long B, T;
	int layer, rc;
	struct mta_pick pick;
	struct mta_problem p;
	FILE *f = fopen(case_path, "rb");
	if (!f || fscanf(f, "%159s %lld %lld %d", key, &B, &T, &layer) != 4 || fgetc(f) != '\n') {
		fprintf(stderr, "cannot read %s\n", case_path);
		return 2;
	}
	if ((rc = mta_problem_from_key(key, &p)))
		return fail(rc);
	size_t nq = (size_t)(B * T * p.H * p.D), nk = (size_t)(B * T * p.Hkv * p.D);
	float *q = take(f, nq), *k = take(f, nk), *v = take(f, nk), *o = malloc(nq * sizeof *o);
	struct mta_weights w = { 0 };
	w.kq_pre = take(f, p.cq ? (size_t)(p.H * p.cq * p.ck) : 0);
	w.head_pre = take(f, p.head_pre ? (size_t)(p.H * p.H) : 0);
	w.kq_post = take(f, p.cq2 ? (size_t)(p.H * p.cq2 * p.ck2) : 0);
	w.head_post = take(f, p.head_post == MTA_HPOST_CONV ? (size_t)(p.H * p.hc) : 0);
	w.head_post_linear = take(f, p.head_post == MTA_HPOST_LINEAR ? (size_t)(p.H * p.H) : 0);
	w.gn_weight = take(f, p.gn ? (size_t)p.D : 0);
	w.gate_w = take(f, p.gate ? (size_t)p.D : 0);
	if (p.gate)
		w.gate_b = *take(f, 1);
	w.layer_id = layer;
	fclose(f);
	for (size_t i = 0; i < nq; i++)
		o[i] = NAN;
	struct mta_tensor tq, tk, tv, to;
	mta_tensor_init(&tq, q, MTA_F32, B, T, p.H, p.D);
	mta_tensor_init(&tk, k, MTA_F32, B, T, p.Hkv, p.D);
	mta_tensor_init(&tv, v, MTA_F32, B, T, p.Hkv, p.D);
	mta_tensor_init(&to, o, MTA_F32, B, T, p.H, p.D);
	mta_context *c;
	int64_t cu[64];
	int ncu = 0;
	const char *env = getenv("MTX_CU_SEQLENS");
	for (char *e = (char *)env; env && ncu < 64 && *e; e += *e == ',')
		cu[ncu++] = strtoll(e, &e, 10);
	const char *dec = getenv("MTX_DECODE_FROM");
	if (dec && *dec) {
		long long N = atoll(dec);
		mta_cache *cache = NULL;
		const char *be = getenv("MTX_BACKEND");
		if ((rc = mta_context_create(&c, NULL, be && *be ? be : "cpu", 0)) ||
		    (rc = mta_cache_create_ctx(c, &p, B, &cache)))
			return fail(rc);
		for (long long s = 0; s < T; s = s < N ? N : s + 1) {
			long long n = s < N ? N : 1;
			struct mta_tensor qs = tq, ks = tk, vs = tv, os = to;
			qs.shape[1] = ks.shape[1] = vs.shape[1] = os.shape[1] = n;
			qs.data = q + s * tq.stride[1];
			ks.data = k + s * tk.stride[1];
			vs.data = v + s * tv.stride[1];
			os.data = o + s * to.stride[1];
			if ((rc = mta_decode(cache, &qs, &ks, &vs, &w, NULL, &os)))
				return fail(rc);
		}
		mta_cache_free(cache);
		pick.source = 0;
		snprintf(pick.spec, sizeof pick.spec, "decode");
	} else if ((rc = mta_context_create(&c, NULL, odt >= 0 && getenv("MTX_BACKEND") ?
					    getenv("MTX_BACKEND") : "cpu", 0)) ||
	    (rc = mta_context_pick(c, &p, B, T, &pick)) ||
	    (rc = ncu ? mta_forward_varlen(c, &p, &tq, &tk, &tv, &w, cu, ncu - 1, &to)
		      : odt < 0 ? mta_forward(c, &p, &tq, &tk, &tv, &w, &to) : MTA_OK))
		return fail(rc);
	if (odt >= 0) {
		mta_wts *h = NULL;
		struct mta_stats a, b;
		struct mta_tensor t16;
		void *o16 = malloc(nq * mta_dtype_size(odt));
		memset(o16, 0xff, nq * mta_dtype_size(odt)); /* NaN in every type */
		mta_tensor_init(&t16, o16, odt, B, T, p.H, p.D);
		if (getenv("MTX_Q_DEVICE")) /* host memory that says device: refused */
			tq.memory = MTA_MEM_DEVICE;
		if ((rc = mta_weights_load(c, &p, &w, MTA_MEM_HOST, &h)) ||
		    (rc = mta_context_reserve(c, &p, B, T)))
			return fail(rc);
		mta_context_stats(c, &a);
		for (int i = 0; i < 3; i++)
			if ((rc = mta_attention(c, &p, h, &tq, &tk, &tv, &t16, 0, NULL)))
				return fail(rc);
		mta_context_stats(c, &b);
		if (b.calls != a.calls + 3 || b.host_allocs != a.host_allocs ||
		    b.device_allocs != a.device_allocs || b.syncs != a.syncs ||
		    b.kernel_loads != a.kernel_loads) {
			printf("ESTATS: 3 calls counted %llu calls, %llu host and %llu device "
			       "allocations, %llu syncs, %llu kernel loads\n",
			       (unsigned long long)(b.calls - a.calls),
			       (unsigned long long)(b.host_allocs - a.host_allocs),
			       (unsigned long long)(b.device_allocs - a.device_allocs),
			       (unsigned long long)(b.syncs - a.syncs),
			       (unsigned long long)(b.kernel_loads - a.kernel_loads));
			return 1;
		}
		for (size_t i = 0; i < nq; i++) {
			uint16_t x = ((uint16_t *)o16)[i];
			o[i] = odt == MTA_F32 ? ((float *)o16)[i]
			       : odt == MTA_BF16 ? mta_bf16_to_f32(x) : mta_f16_to_f32(x);
		}
		mta_weights_free(h);
	}
	mta_context_free(c);
	if (!(f = fopen(out_path, "wb")) || fwrite(o, sizeof *o, nq, f) != nq || fclose(f)) {
		fprintf(stderr, "cannot write %s\n", out_path);
		return 2;
	}
	printf("%d %s\n", pick.source, pick.spec);
	return 0; /* buffers go with the process */
}

/* Gradient sizes of p at (B, T) in struct mta_grads order (0: unused). */
static void grad_sizes(const struct mta_problem *p, long long B, long long T, size_t n[11])
{
	n[0] = (size_t)(B * T * p->H * p->D);
	n[1] = n[2] = (size_t)(B * T * p->Hkv * p->D);
	n[3] = p->cq ? (size_t)(p->H * p->cq * p->ck) : 0;
	n[4] = p->head_pre ? (size_t)(p->H * p->H) : 0;
	n[5] = p->cq2 ? (size_t)(p->H * p->cq2 * p->ck2) : 0;
	n[6] = p->head_post == MTA_HPOST_CONV ? (size_t)(p->H * p->hc) : 0;
	n[7] = p->head_post == MTA_HPOST_LINEAR ? (size_t)(p->H * p->H) : 0;
	n[8] = p->gn ? (size_t)p->D : 0;
	n[9] = n[10] = p->gate ? (size_t)(p->D) : 0;
	if (p->gate)
		n[10] = 1;
}

static int grad(const char *case_path, const char *out_path)
{
	char key[MTA_KEY_MAX];
	long long B, T;
	int layer, rc;
	struct mta_pick pick;
	struct mta_problem p;
	FILE *f = fopen(case_path, "rb");
	if (!f || fscanf(f, "%159s %lld %lld %d", key, &B, &T, &layer) != 4 || fgetc(f) != '\n') {
		fprintf(stderr, "cannot read %s\n", case_path);
		return 2;
	}
	if ((rc = mta_problem_from_key(key, &p)))
		return fail(rc);
	size_t n[11], nq = (size_t)(B * T * p.H * p.D), nk = (size_t)(B * T * p.Hkv * p.D);
	grad_sizes(&p, B, T, n);
	float *q = take(f, nq), *k = take(f, nk), *v = take(f, nk), *o = malloc(nq * sizeof *o);
	struct mta_weights w = { 0 };
	w.kq_pre = take(f, n[3]);
	w.head_pre = take(f, n[4]);
	w.kq_post = take(f, n[5]);
	w.head_post = take(f, n[6]);
	w.head_post_linear = take(f, n[7]);
	w.gn_weight = take(f, n[8]);
	w.gate_w = take(f, n[9]);
	if (p.gate)
		w.gate_b = *take(f, 1);
	w.layer_id = layer;
	float *dout = take(f, nq), *g[11];
	fclose(f);
	for (int i = 0; i < 11; i++) {
		g[i] = n[i] ? malloc(n[i] * sizeof *g[i]) : NULL;
		for (size_t j = 0; j < n[i]; j++)
			g[i][j] = NAN;
	}
	for (size_t i = 0; i < nq; i++)
		o[i] = NAN;
	int64_t sb = mta_saved_bytes(&p, B, T);
	void *saved = sb > 0 ? malloc((size_t)sb) : NULL;
	struct mta_tensor tq, tk, tv, to, td;
	mta_tensor_init(&tq, q, MTA_F32, B, T, p.H, p.D);
	mta_tensor_init(&tk, k, MTA_F32, B, T, p.Hkv, p.D);
	mta_tensor_init(&tv, v, MTA_F32, B, T, p.Hkv, p.D);
	mta_tensor_init(&to, o, MTA_F32, B, T, p.H, p.D);
	mta_tensor_init(&td, dout, MTA_F32, B, T, p.H, p.D);
	if (getenv("MTX_Q_DEVICE")) /* q claims device memory: a CUDA library refuses it */
		tq.memory = MTA_MEM_DEVICE;
	struct mta_grads gr = { g[0], g[1], g[2], g[3], g[4], g[5], g[6], g[7], g[8], g[9], g[10] };
	mta_context *c;
	int64_t cu[64];
	int ncu = 0;
	const char *env = getenv("MTX_CU_SEQLENS");
	for (char *e = (char *)env; env && ncu < 64 && *e; e += *e == ',')
		cu[ncu++] = strtoll(e, &e, 10);
	const char *be = getenv("MTX_BACKEND");
	if ((rc = mta_context_create(&c, NULL, be && *be ? be : "cpu", 0)) ||
	    (rc = mta_context_pick_op(c, &p, "bwd", B, T, &pick)))
		return fail(rc);
	if (ncu) {
		if ((rc = mta_forward_train_varlen(c, &p, &tq, &tk, &tv, &w, cu, ncu - 1, &to,
						   saved)) ||
		    (rc = mta_backward_varlen(c, &p, &tq, &tk, &tv, &w, saved, &td, cu, ncu - 1,
					      &gr)))
			return fail(rc);
	} else if ((rc = mta_forward_train(c, &p, &tq, &tk, &tv, &w, &to, saved)) ||
		   (rc = mta_backward(c, &p, &tq, &tk, &tv, &w, saved, &td, &gr))) {
		return fail(rc);
	}
	mta_context_free(c);
	if (!(f = fopen(out_path, "wb")) || fwrite(o, sizeof *o, nq, f) != nq) {
		fprintf(stderr, "cannot write %s\n", out_path);
		return 2;
	}
	for (int i = 0; i < 11; i++)
		if (n[i] && fwrite(g[i], sizeof *g[i], n[i], f) != n[i])
			return 2;
	if (fclose(f))
		return 2;
	printf("%d %s\n", pick.source, pick.spec);
	return 0;
}

int main(int argc, char **argv)
{
	mta_context *c;
	struct mta_problem p;
	struct mta_pick k;
	int rc;

	if (argc == 4 && !strcmp(argv[1], "run"))
		return run(argv[2], argv[3], -1);
	if (argc == 4 && !strcmp(argv[1], "grad"))
		return grad(argv[2], argv[3]);
	if (argc == 5 && !strcmp(argv[1], "attn")) {
		int odt;
		if ((rc = mta_dtype_parse(argv[4], &odt)))
			return fail(rc);
		return run(argv[2], argv[3], odt);
	}
	if ((argc == 4 || argc == 5) && !strcmp(argv[1], "pick")) {
		if ((rc = mta_problem_from_key(argv[2], &p)) ||
		    (rc = mta_context_create(&c, NULL, NULL, 0)))
			return fail(rc);
		rc = argc == 5 ? mta_context_pick_op(c, &p, argv[4], 1, atoll(argv[3]), &k)
			       : mta_context_pick(c, &p, 1, atoll(argv[3]), &k);
		mta_context_free(c);
		if (rc)
			return fail(rc);
		printf("%d %s\n", k.source, k.spec);
		return 0;
	}
	if ((argc == 3 || argc == 4) && !strcmp(argv[1], "ctx")) {
		if ((rc = mta_context_create(&c, argc == 4 ? argv[3] : NULL, argv[2], 0)))
			return fail(rc);
		mta_context_free(c);
		printf("ok\n");
		return 0;
	}
	fprintf(stderr, "usage: prog run CASE OUT | attn CASE OUT ODT | grad CASE OUT | pick KEY T [OP] | ctx BACKEND [DB]\n");
	return 2;
}
