/*
 * test_attention.c: mta_attention, the call a GPU model makes (runtime/mta.h):
 * device and host tensors (the cuda-emu backend's registry of allocations
 * stands in for device memory where no GPU is present), streams as opaque
 * handles, float32/bf16/f16 outputs against the float64 reference, weights
 * handles reused and updated in place, no allocation or synchronisation per
 * call (counted by mta_context_stats), bad input named; and mta_forward,
 * rebuilt on it, through the check harness.
 *
 * Every output is poisoned (NaN bytes) before the call and compared in full
 * with mta_compare under the tolerance of the coarser of the problem's and
 * the output's element types (a bf16 output cannot hold float32 accuracy).
 */
#include "tests/harness.h"
#include "tests/cpu_util.h"
#include "tuner/measure/check.h"
#include "tuner/measure/sample.h"

#include <math.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* REQUIRE for helpers that return a value: the test's child process ends failed. */
#define NEED(c)                                                                         \
	do {                                                                            \
		if (!(c)) {                                                             \
			fprintf(stderr, "%s:%d: NEED(%s) failed: %s\n", __FILE__, __LINE__, \
				#c, mta_last_error());                                  \
			exit(1);                                                        \
		}                                                                       \
	} while (0)

static struct mta_problem prob(const char *key)
{
	struct mta_problem p;
	if (mta_problem_from_key(key, &p) != MTA_OK)
		mt_fail(__FILE__, __LINE__, "bad key %s: %s", key, mta_last_error());
	return p;
}

static mta_context *context(const char *backend)
{
	mta_context *c = NULL;
	char db[1024];
	mt_kcache();
	snprintf(db, sizeof db, "%s/none.db", mt_tmpdir()); /* no database: defaults */
	int rc = mta_context_create(&c, db, backend, 0);
	CHECKF(rc == MTA_OK, "%s context: %s", backend, mta_last_error());
	return c;
}

/* The tolerance dtype of a call: the coarser of the problem's and o's. */
static int tol_dtype(const struct mta_problem *p, int odt)
{
	return p->dtype != MTA_F32 ? p->dtype : odt;
}

/* o (host, any dtype and strides) as dense float32. */
static float *widen(const struct mta_tensor *o)
{
	const int64_t *sh = o->shape, *st = o->stride;
	size_t n = (size_t)(sh[0] * sh[1] * sh[2] * sh[3]), at = 0;
	float *f = malloc(n * sizeof *f);
	NEED(f);
	for (int64_t b = 0; b < sh[0]; b++)
		for (int64_t i = 0; i < sh[1]; i++)
			for (int64_t h = 0; h < sh[2]; h++)
				for (int64_t x = 0; x < sh[3]; x++) {
					int64_t off = b * st[0] + i * st[1] + h * st[2] + x;
					f[at++] = o->dtype == MTA_F32 ? ((float *)o->data)[off]
						  : o->dtype == MTA_BF16 ? mta_bf16_to_f32(((uint16_t *)o->data)[off])
									 : mta_f16_to_f32(((uint16_t *)o->data)[off]);
				}
	return f;
}

/* An output view [B,T,H,D] of dtype with padded rows (D+3), so strides matter. */
static void out_view(struct mta_tensor *o, void *mem, int dtype, const struct mta_problem *p,
		     int64_t B, int64_t T)
{
	mta_tensor_init(o, mem, dtype, B, T, p->H, p->D);
	o->stride[2] = p->D + 3;
	o->stride[1] = (int64_t)p->H * (p->D + 3);
	o->stride[0] = T * o->stride[1];
}

static size_t out_bytes(const struct mta_problem *p, int64_t B, int64_t T, int dtype)
{
	return (size_t)(B * T * p->H * (p->D + 3)) * mta_dtype_size(dtype);
}

/*
 * Compare host output o with the reference of (s's inputs, w); MTA_OK or
 * the comparison's failure, CHECKed with the details.
 */
static int compare(const struct mta_problem *p, const struct mta_sample *s,
		   const struct mta_weights *w, const struct mta_tensor *o, const char *what)
{
	size_t n = (size_t)(s->B * s->T * p->H * p->D);
	double *ref = malloc(n * sizeof *ref);
	float *got = widen(o);
	struct mta_compare r;
	NEED(ref);
	NEED(mta_reference(p, &s->q, &s->k, &s->v, w, ref) == MTA_OK);
	int rc = mta_compare(got, ref, n, tol_dtype(p, o->dtype), &r);
	CHECKF(rc == MTA_OK, "%s (o %s): %s", what, mta_dtype_name(o->dtype), mta_last_error());
	free(ref);
	free(got);
	return rc;
}

/* Device copies (cuda-emu: registered host blocks) of s's q, k, v. */
struct dev_in {
	struct mta_tensor q, k, v;
	void *mem[3];
};

static void to_device(mta_context *c, const struct mta_sample *s, struct dev_in *d)
{
	const struct mta_tensor *h[3] = { &s->q, &s->k, &s->v };
	struct mta_tensor *t[3] = { &d->q, &d->k, &d->v };
	for (int i = 0; i < 3; i++) {
		size_t n = (size_t)(h[i]->shape[0] * h[i]->shape[1] * h[i]->shape[2] * h[i]->shape[3]) *
			   mta_dtype_size(h[i]->dtype);
		NEED(mta_device_alloc(c, n, &d->mem[i]) == MTA_OK);
		NEED(mta_memcpy(c, d->mem[i], MTA_MEM_DEVICE, h[i]->data, MTA_MEM_HOST, n, NULL) ==
			MTA_OK);
		*t[i] = *h[i];
		t[i]->data = d->mem[i];
		t[i]->memory = MTA_MEM_DEVICE;
	}
}

static void free_device(mta_context *c, struct dev_in *d)
{
	for (int i = 0; i < 3; i++)
		mta_device_free(c, d->mem[i]);
}

/* Device copies of every weight of w, in one block; *dw points into it. */
static void *weights_to_device(mta_context *c, const struct mta_problem *p,
			       const struct mta_weights *w, struct mta_weights *dw, float **gate_b)
{
	size_t H = (size_t)p->H, D = (size_t)p->D;
	size_t n[7] = { H * (size_t)(p->cq * p->ck), H * H, H * (size_t)(p->cq2 * p->ck2),
			H * (size_t)(p->hc ? p->hc : 1), H * H, D, D };
	const float *src[7] = { w->kq_pre, w->head_pre, w->kq_post, w->head_post,
				w->head_post_linear, w->gn_weight, w->gate_w };
	const float **dst[7] = { &dw->kq_pre, &dw->head_pre, &dw->kq_post, &dw->head_post,
				 &dw->head_post_linear, &dw->gn_weight, &dw->gate_w };
	size_t total = 1, at = 0;
	for (int i = 0; i < 7; i++)
		total += n[i];
	float *mem = NULL;
	NEED(mta_device_alloc(c, total * sizeof(float), (void **)&mem) == MTA_OK);
	memset(dw, 0, sizeof *dw);
	for (int i = 0; i < 7; i++) {
		if (src[i] && n[i]) {
			NEED(mta_memcpy(c, mem + at, MTA_MEM_DEVICE, src[i], MTA_MEM_HOST,
					   n[i] * sizeof(float), NULL) == MTA_OK);
			*dst[i] = mem + at;
		}
		at += n[i];
	}
	NEED(mta_memcpy(c, mem + at, MTA_MEM_DEVICE, &w->gate_b, MTA_MEM_HOST, sizeof(float),
			   NULL) == MTA_OK);
	dw->gate_b_ptr = mem + at;
	dw->layer_id = w->layer_id;
	*gate_b = mem + at;
	return mem;
}

static const char *const FULL = "h4kv2d16-pre3x5-hpre-post2x3-hc2-both-gn-gate-f32";

/* Host tensors on a cpu context: every output type, strided o. */
TEST(attention_cpu_host_tensors_every_output_dtype)
{
	const char *keys[] = { FULL, "h4kv2d16-pre3x5-both-gn-gate-bf16" };
	for (int ki = 0; ki < 2; ki++) {
		struct mta_problem p = prob(keys[ki]);
		mta_context *c = context("cpu");
		struct mta_sample s;
		mta_wts *w = NULL;
		REQUIRE(c && mta_sample_make(&p, 2, 37, mt_seed() + ki, &s) == MTA_OK);
		REQUIRE(mta_weights_load(c, &p, &s.w, MTA_MEM_HOST, &w) == MTA_OK);
		for (int odt = MTA_F32; odt <= MTA_F16; odt++) {
			void *mem = malloc(out_bytes(&p, s.B, s.T, odt));
			struct mta_tensor o;
			REQUIRE(mem);
			memset(mem, 0xff, out_bytes(&p, s.B, s.T, odt));
			out_view(&o, mem, odt, &p, s.B, s.T);
			int rc = mta_attention(c, &p, w, &s.q, &s.k, &s.v, &o, 0, NULL);
			CHECKF(rc == MTA_OK, "%s: %s", keys[ki], mta_last_error());
			if (!rc)
				compare(&p, &s, &s.w, &o, keys[ki]);
			free(mem);
		}
		mta_weights_free(w);
		mta_sample_free(&s);
		mta_context_free(c);
	}
}

/*
 * Device tensors and device weights on cuda-emu, on a stream handle the
 * emulator never dereferences, outputs of every type written by the CUDA
 * kernel itself, copied back with mta_memcpy.
 */
TEST(attention_emu_device_tensors_streams_every_output_dtype)
{
	const char *keys[] = { FULL, "h4kv2d16-pre3x5-both-gn-gate-f16" };
	void *stream = (void *)(uintptr_t)0x5eed; /* an opaque handle: never dereferenced */
	for (int ki = 0; ki < 2; ki++) {
		struct mta_problem p = prob(keys[ki]);
		mta_context *c = context("cuda-emu");
		struct mta_sample s;
		struct mta_weights dw;
		struct dev_in d;
		float *gate_b;
		mta_wts *w = NULL;
		REQUIRE(c && mta_sample_make(&p, 2, 33, mt_seed() + ki, &s) == MTA_OK);
		to_device(c, &s, &d);
		void *wmem = weights_to_device(c, &p, &s.w, &dw, &gate_b);
		int rc = mta_weights_load(c, &p, &dw, MTA_MEM_DEVICE, &w);
		CHECKF(rc == MTA_OK, "%s", mta_last_error());
		for (int odt = MTA_F32; w && odt <= MTA_F16; odt++) {
			size_t nb = out_bytes(&p, s.B, s.T, odt);
			void *dev = NULL, *host = malloc(nb);
			struct mta_tensor o, oh;
			REQUIRE(host && mta_device_alloc(c, nb, &dev) == MTA_OK);
			out_view(&o, dev, odt, &p, s.B, s.T);
			o.memory = MTA_MEM_DEVICE;
			rc = mta_attention(c, &p, w, &d.q, &d.k, &d.v, &o, 0, stream);
			CHECKF(rc == MTA_OK, "%s: %s", keys[ki], mta_last_error());
			REQUIRE(mta_memcpy(c, host, MTA_MEM_HOST, dev, MTA_MEM_DEVICE, nb, stream) ==
				MTA_OK);
			REQUIRE(mta_stream_synchronize(c, stream) == MTA_OK);
			out_view(&oh, host, odt, &p, s.B, s.T);
			if (!rc)
				compare(&p, &s, &s.w, &oh, keys[ki]);
			mta_device_free(c, dev);
			free(host);
		}
		mta_weights_free(w);
		mta_device_free(c, wmem);
		free_device(c, &d);
		mta_sample_free(&s);
		mta_context_free(c);
	}
}

/*
 * A handle is loaded once and reused; a weight changed in place (host
 * weights on cpu, device weights and gate_b on cuda-emu) is seen by the
 * next call, which then matches the reference of the new weights.
 */
TEST(attention_weights_handle_reused_and_updates_seen)
{
	struct mta_problem p = prob(FULL);
	const char *backends[] = { "cpu", "cuda-emu" };
	for (int bi = 0; bi < 2; bi++) {
		mta_context *c = context(backends[bi]);
		struct mta_sample s;
		struct mta_weights dw, hw, *used = &hw;
		struct dev_in d = { 0 };
		float gb, *gate_b = &gb;
		void *wmem = NULL;
		mta_wts *w = NULL;
		int dev = bi == 1;
		REQUIRE(c && mta_sample_make(&p, 1, 29, mt_seed() + bi, &s) == MTA_OK);
		hw = s.w; /* host weights, gate_b read through a pointer at each call */
		gb = s.w.gate_b;
		hw.gate_b_ptr = &gb;
		if (dev) {
			to_device(c, &s, &d);
			wmem = weights_to_device(c, &p, &s.w, &dw, &gate_b);
			used = &dw;
		}
		REQUIRE(mta_weights_load(c, &p, used, dev ? MTA_MEM_DEVICE : MTA_MEM_HOST, &w) ==
			MTA_OK);
		size_t n = (size_t)(s.B * s.T * p.H * p.D);
		float *o1 = malloc(n * 4), *o2 = malloc(n * 4), *odev = NULL;
		REQUIRE(o1 && o2);
		if (dev)
			REQUIRE(mta_device_alloc(c, n * 4, (void **)&odev) == MTA_OK);
		struct mta_tensor o;
		for (int round = 0; round < 2; round++) {
			float *host = round ? o2 : o1;
			memset(host, 0xff, n * 4);
			mta_tensor_init(&o, dev ? (void *)odev : host, MTA_F32, s.B, s.T, p.H, p.D);
			o.memory = dev ? MTA_MEM_DEVICE : MTA_MEM_HOST;
			int rc = dev ? mta_attention(c, &p, w, &d.q, &d.k, &d.v, &o, 0, NULL)
				     : mta_attention(c, &p, w, &s.q, &s.k, &s.v, &o, 0, NULL);
			CHECKF(rc == MTA_OK, "%s round %d: %s", backends[bi], round, mta_last_error());
			if (dev)
				REQUIRE(mta_memcpy(c, host, MTA_MEM_HOST, odev, MTA_MEM_DEVICE, n * 4,
						   NULL) == MTA_OK);
			mta_tensor_init(&o, host, MTA_F32, s.B, s.T, p.H, p.D);
			compare(&p, &s, &s.w, &o, backends[bi]);
			if (round == 0) {
				/* a training step's update, in place, where the weights live */
				float *gn = (float *)(dev ? dw.gn_weight : s.w.gn_weight);
				float *kq = (float *)(dev ? dw.kq_pre : s.w.kq_pre);
				for (int i = 0; i < p.D; i++) {
					gn[i] *= -1.5f;
					((float *)s.w.gn_weight)[i] = gn[i];
				}
				for (int i = 0; i < p.H * p.cq * p.ck; i++) {
					kq[i] += 0.25f;
					((float *)s.w.kq_pre)[i] = kq[i];
				}
				s.w.gate_b += 2.0f;
				*gate_b = s.w.gate_b; /* (emulated) device memory on cuda-emu */
			}
		}
		/* the second call saw the new weights: its output differs from the first */
		size_t differ = 0;
		for (size_t i = 0; i < n; i++)
			differ += o1[i] != o2[i];
		CHECKF(differ > n / 2, "%s: only %zu of %zu elements changed after the update",
		       backends[bi], differ, n);
		free(o1);
		free(o2);
		mta_device_free(c, odev);
		mta_weights_free(w);
		mta_device_free(c, wmem);
		free_device(c, &d);
		mta_sample_free(&s);
		mta_context_free(c);
	}
}

/*
 * After the first call (or mta_context_reserve), calls allocate nothing and
 * synchronise nothing: counted over many calls on cpu and cuda-emu, with a
 * bf16 output on cpu (its workspace is the context's, grown once).
 */
TEST(attention_no_allocation_or_sync_per_call)
{
	struct mta_problem p = prob("h4kv2d16-pre3x5-both-gn-gate-f32");
	const char *backends[] = { "cpu", "cuda-emu" };
	for (int bi = 0; bi < 2; bi++) {
		mta_context *c = context(backends[bi]);
		struct mta_sample s;
		struct mta_stats a, b;
		mta_wts *w = NULL;
		int odt = bi ? MTA_F16 : MTA_BF16, calls = bi ? 8 : 40;
		REQUIRE(c && mta_sample_make(&p, 1, 24, mt_seed() + bi, &s) == MTA_OK);
		REQUIRE(mta_weights_load(c, &p, &s.w, MTA_MEM_HOST, &w) == MTA_OK);
		void *mem = malloc(out_bytes(&p, s.B, s.T, odt));
		struct mta_tensor o;
		REQUIRE(mem);
		out_view(&o, mem, odt, &p, s.B, s.T);
		REQUIRE(mta_context_reserve(c, &p, s.B, s.T) == MTA_OK);
		mta_context_stats(c, &a);
		CHECK(a.kernel_loads == 1);
		for (int i = 0; i < calls; i++) {
			memset(mem, 0xff, out_bytes(&p, s.B, s.T, odt));
			int rc = mta_attention(c, &p, w, &s.q, &s.k, &s.v, &o, 0, NULL);
			CHECKF(rc == MTA_OK, "%s call %d: %s", backends[bi], i, mta_last_error());
		}
		mta_context_stats(c, &b);
		CHECKF(b.calls == a.calls + (uint64_t)calls, "%s: %llu calls counted, expected %d",
		       backends[bi], (unsigned long long)(b.calls - a.calls), calls);
		CHECKF(b.host_allocs == a.host_allocs && b.device_allocs == a.device_allocs &&
		       b.syncs == a.syncs && b.kernel_loads == a.kernel_loads,
		       "%s over %d calls: host allocs %llu -> %llu, device allocs %llu -> %llu, syncs "
		       "%llu -> %llu, kernel loads %llu -> %llu", backends[bi], calls,
		       (unsigned long long)a.host_allocs, (unsigned long long)b.host_allocs,
		       (unsigned long long)a.device_allocs, (unsigned long long)b.device_allocs,
		       (unsigned long long)a.syncs, (unsigned long long)b.syncs,
		       (unsigned long long)a.kernel_loads, (unsigned long long)b.kernel_loads);
		compare(&p, &s, &s.w, &o, backends[bi]); /* the last call's output is right */
		/* mta_forward, the host path, does allocate and synchronise on a device */
		if (bi == 1) {
			struct mta_tensor of;
			float *f = malloc((size_t)(s.B * s.T * p.H * p.D) * 4);
			REQUIRE(f);
			mta_tensor_init(&of, f, MTA_F32, s.B, s.T, p.H, p.D);
			REQUIRE(mta_forward(c, &p, &s.q, &s.k, &s.v, &s.w, &of) == MTA_OK);
			mta_context_stats(c, &a);
			CHECK(a.device_allocs > b.device_allocs && a.syncs > b.syncs);
			compare(&p, &s, &s.w, &of, "mta_forward on cuda-emu");
			free(f);
		}
		free(mem);
		mta_weights_free(w);
		mta_sample_free(&s);
		mta_context_free(c);
	}
}

/* A thread's first call of a problem, which loads (compiles) its kernel. */
struct loader {
	mta_context *c;
	const struct mta_problem *p;
	int rc;
	char err[512];
};

static void *load_in_thread(void *arg)
{
	struct loader *l = arg;
	l->rc = mta_context_reserve(l->c, l->p, 1, 24);
	snprintf(l->err, sizeof l->err, "%s", l->rc ? mta_last_error() : "");
	return NULL;
}

static int exists(const char *dir, const char *name)
{
	char path[1100];
	struct stat st;
	snprintf(path, sizeof path, "%s/%s", dir, name);
	return stat(path, &st) == 0;
}

/*
 * A first call compiles its kernel (NVRTC: up to a minute) without holding
 * the context: other threads' calls of loaded kernels go on meanwhile, and
 * a second thread asking for the kernel being loaded waits for that load
 * rather than making its own. The compiler (MTATUNE_CC) is a script that
 * holds the load until the test opens a gate (or 30 s pass), and notes
 * when it was let go: a call of the loaded problem must end while it is
 * held.
 */
TEST(attention_calls_go_on_while_another_thread_loads)
{
	struct mta_problem py = prob("h2kv1d8-pre2x3-both-f32"), px = prob("h2kv1d8-post2x3-f32");
	char dir[1000], cache[1100], cc[1100], *out = NULL;
	snprintf(dir, sizeof dir, "%s/gate", mt_tmpdir());
	snprintf(cache, sizeof cache, "%s/cache", dir);
	snprintf(cc, sizeof cc, "%s/cc.sh", dir);
	REQUIRE(mt_sh(&out, "mkdir -p '%s'", dir) == 0);
	free(out);
	FILE *sh = fopen(cc, "w");
	REQUIRE(sh);
	fprintf(sh, "#!/bin/sh\ntouch '%s/started'\ni=0\n"
		"while [ ! -e '%s/open' ] && [ $i -lt 300 ]; do sleep 0.1; i=$((i+1)); done\n"
		"touch '%s/let-go'\nexec cc \"$@\"\n", dir, dir, dir);
	fclose(sh);
	REQUIRE(chmod(cc, 0700) == 0);
	setenv("MTATUNE_CACHE", cache, 1); /* a cache of this test's own: nothing built yet */
	mta_context *c = NULL;
	char db[1024];
	snprintf(db, sizeof db, "%s/none.db", mt_tmpdir());
	REQUIRE(mta_context_create(&c, db, "cpu", 0) == MTA_OK);
	struct mta_sample s;
	REQUIRE(mta_sample_make(&py, 1, 24, mt_seed(), &s) == MTA_OK);
	REQUIRE(mta_context_reserve(c, &py, 1, 24) == MTA_OK); /* loaded by the real compiler */
	setenv("MTATUNE_CC", cc, 1);
	struct loader a = { c, &px, -1, "" }, b = { c, &px, -1, "" };
	pthread_t ta, tb;
	REQUIRE(pthread_create(&ta, NULL, load_in_thread, &a) == 0);
	for (int i = 0; i < 600 && !exists(dir, "started"); i++)
		usleep(50000);
	CHECK(exists(dir, "started"));
	REQUIRE(pthread_create(&tb, NULL, load_in_thread, &b) == 0);
	/* the loaded problem's call, while px's compile is held */
	float *f = malloc((size_t)(s.B * s.T * py.H * py.D) * sizeof *f);
	struct mta_tensor o;
	REQUIRE(f);
	mta_tensor_init(&o, f, MTA_F32, s.B, s.T, py.H, py.D);
	for (int i = 0; i < 5; i++) {
		memset(f, 0xff, (size_t)(s.B * s.T * py.H * py.D) * sizeof *f);
		CHECKF(mta_forward(c, &py, &s.q, &s.k, &s.v, &s.w, &o) == MTA_OK, "%s",
		       mta_last_error());
	}
	CHECKF(!exists(dir, "let-go"), "a call of a loaded kernel waited for another's load");
	compare(&py, &s, &s.w, &o, "the call made during the load");
	char gate[1100];
	snprintf(gate, sizeof gate, "%s/open", dir);
	FILE *g = fopen(gate, "w");
	REQUIRE(g);
	fclose(g);
	pthread_join(ta, NULL);
	pthread_join(tb, NULL);
	unsetenv("MTATUNE_CC");
	CHECKF(a.rc == MTA_OK && b.rc == MTA_OK, "loads: %d (%s), %d (%s)", a.rc, a.err, b.rc,
	       b.err);
	struct mta_stats st;
	mta_context_stats(c, &st);
	CHECKF(st.kernel_loads == 2, "%llu kernels loaded, expected 2 (px once)",
	       (unsigned long long)st.kernel_loads);
	/* and px's kernel computes px */
	struct mta_sample sx;
	REQUIRE(mta_sample_make(&px, 1, 24, mt_seed() + 1, &sx) == MTA_OK);
	float *fx = malloc((size_t)(sx.B * sx.T * px.H * px.D) * sizeof *fx);
	REQUIRE(fx);
	mta_tensor_init(&o, fx, MTA_F32, sx.B, sx.T, px.H, px.D);
	memset(fx, 0xff, (size_t)(sx.B * sx.T * px.H * px.D) * sizeof *fx);
	CHECKF(mta_forward(c, &px, &sx.q, &sx.k, &sx.v, &sx.w, &o) == MTA_OK, "%s",
	       mta_last_error());
	compare(&px, &sx, &sx.w, &o, "the kernel loaded in a thread");
	mta_context_stats(c, &st);
	CHECK(st.kernel_loads == 2);
	free(fx);
	free(f);
	mta_sample_free(&sx);
	mta_sample_free(&s);
	mta_context_free(c);
}

/* The stand-in driver (tests/export/fakecuda.c, an sm_90), built and named
 * by MTATUNE_LIBCUDA for the cuda contexts that follow. */
static void fakecuda_on(void)
{
	char fake[1100], *out = NULL;
	snprintf(fake, sizeof fake, "%s/fakecuda.so", mt_tmpdir());
	int rc = mt_sh(&out, "cc -std=gnu11 -O1 -shared -fPIC -I. tests/export/fakecuda.c "
		       "runtime/core/hash.c -o %s -ldl -lpthread", fake);
	REQUIRE(rc == 0 || (mt_fail(__FILE__, __LINE__, "fakecuda: %s", out), 0));
	free(out);
	setenv("MTATUNE_LIBCUDA", fake, 1);
}

/*
 * A cuda context asks the driver what memory each tensor and device weight
 * is (cuPointerGetAttributes, mta_cuda_ptr_check) before a launch would
 * fault on it, or read another GPU's memory: on the stand-in driver
 * (tests/export/fakecuda.c, whose device memory is cuMemAlloc's live
 * blocks), host memory marked device, a tensor whose strides run past its
 * block, a freed block and another device's memory are refused by name;
 * the tensors of mta_device_alloc pass the check and the call goes on to
 * the kernel (which the stand-in cannot run: the error is then the
 * launch's, not the memory's).
 */
TEST(attention_cuda_refuses_memory_the_device_cannot_take)
{
	struct mta_problem p = prob("h2kv1d8-pre2x3-gate-f32");
	char db[1100];
	int rc;
	fakecuda_on();
	unsetenv("FAKECUDA_PTR_ORDINAL");
	mt_kcache();
	snprintf(db, sizeof db, "%s/none.db", mt_tmpdir());
	mta_context *c = NULL;
	REQUIRE(mta_context_create(&c, db, "cuda", 0) == MTA_OK ||
		(mt_fail(__FILE__, __LINE__, "%s", mta_last_error()), 0));
	struct mta_sample s;
	struct dev_in d;
	mta_wts *w = NULL;
	REQUIRE(mta_sample_make(&p, 1, 16, mt_seed(), &s) == MTA_OK);
	to_device(c, &s, &d);
	size_t n = (size_t)(s.B * s.T * p.H * p.D) * 4;
	void *odev = NULL, *freed = NULL;
	REQUIRE(mta_device_alloc(c, n, &odev) == MTA_OK && mta_device_alloc(c, n, &freed) == MTA_OK);
	mta_device_free(c, freed);
	struct mta_tensor o, q = d.q;
	mta_tensor_init(&o, odev, MTA_F32, s.B, s.T, p.H, p.D);
	o.memory = MTA_MEM_DEVICE;
	REQUIRE(mta_weights_load(c, &p, &s.w, MTA_MEM_HOST, &w) == MTA_OK); /* uploaded */

	/* host memory marked device */
	q.data = s.q.data;
	CHECK_EQ_INT(mta_attention(c, &p, w, &q, &d.k, &d.v, &o, 0, NULL), MTA_EINVAL);
	CHECK_STR_CONTAINS(mta_last_error(), "tensor q is not CUDA memory (its first byte");
	CHECK_STR_CONTAINS(mta_last_error(), "takes that device's memory");
	/* a block of device memory, read far past its end by the strides (a GiB: a
	 * last byte just past the end may lie in the next block, which is device
	 * memory too; the check asks about the two ends, not the range between) */
	q = d.q;
	q.stride[1] = (int64_t)1 << 24;
	q.stride[0] = q.stride[1] * q.shape[1];
	CHECK_EQ_INT(mta_attention(c, &p, w, &q, &d.k, &d.v, &o, 0, NULL), MTA_EINVAL);
	CHECK_STR_CONTAINS(mta_last_error(), "tensor q is not CUDA memory (its last byte");
	/* a freed block */
	o.data = freed;
	CHECK_EQ_INT(mta_attention(c, &p, w, &d.q, &d.k, &d.v, &o, 0, NULL), MTA_EINVAL);
	CHECK_STR_CONTAINS(mta_last_error(), "tensor o is not CUDA memory");
	o.data = odev;
	/* device weights: referenced, so asked about too */
	struct mta_weights hw = s.w;
	mta_wts *w2 = NULL;
	CHECK_EQ_INT(mta_weights_load(c, &p, &hw, MTA_MEM_DEVICE, &w2), MTA_EINVAL);
	CHECK_STR_CONTAINS(mta_last_error(), "is not CUDA memory");
	CHECK(w2 == NULL);
	/* another device's memory */
	setenv("FAKECUDA_PTR_ORDINAL", "1", 1);
	CHECK_EQ_INT(mta_attention(c, &p, w, &d.q, &d.k, &d.v, &o, 0, NULL), MTA_EINVAL);
	CHECK_STR_CONTAINS(mta_last_error(), "tensor q is memory of CUDA device 1 (its first byte");
	CHECK_STR_CONTAINS(mta_last_error(), "this context runs on device 0");
	unsetenv("FAKECUDA_PTR_ORDINAL");
	/* the right memory passes: the call reaches the launch, which the stand-in refuses */
	rc = mta_attention(c, &p, w, &d.q, &d.k, &d.v, &o, 0, NULL);
	CHECKF(rc != MTA_EINVAL && !strstr(mta_last_error(), "memory"), "%d: %s", rc,
	       mta_last_error());
	CHECK_STR_CONTAINS(mta_last_error(), "no emulator for this cubin");
	mta_weights_free(w);
	mta_device_free(c, odev);
	free_device(c, &d);
	mta_sample_free(&s);
	mta_context_free(c);
}

/*
 * An untuned problem runs its architecture's default: on the stand-in
 * driver's sm_90, the cluster of v3 blocks where the portable default is
 * scalar v1 (32 heads mixed before the softmax), and the portable default
 * (a v3 block) for the paper's 16 heads.
 */
TEST(attention_cuda_untuned_picks_the_architecture_default)
{
	char db[1100], spec[MTA_SPEC_MAX];
	fakecuda_on();
	snprintf(db, sizeof db, "%s/none.db", mt_tmpdir());
	mta_context *c = NULL;
	REQUIRE(mta_context_create(&c, db, "cuda", 0) == MTA_OK ||
		(mt_fail(__FILE__, __LINE__, "%s", mta_last_error()), 0));
	struct mta_problem p32 = prob("h32kv32d96-pre6x11-hpre-post6x11-hc16-both-gn-gate-bf16");
	struct mta_problem p16 = prob("h16kv16d96-pre6x11-hpre-post6x11-hc16-both-gn-gate-bf16");
	struct mta_pick k;
	struct mta_variant d;
	REQUIRE(mta_context_pick(c, &p32, 4, 4096, &k) == MTA_OK);
	CHECK_EQ_INT(k.source, MTA_PICK_DEFAULT);
	CHECKF(!strcmp(k.spec, "cuda:v3,bq=32,bk=32,hpb=8,warps=8,algo=0,cs=4"), "H=32: %s",
	       k.spec);
	REQUIRE(mta_context_pick(c, &p16, 4, 4096, &k) == MTA_OK);
	REQUIRE(mta_variant_default(&p16, MTA_BACKEND_CUDA, &d) == MTA_OK);
	REQUIRE(mta_variant_format(&d, spec, sizeof spec) == MTA_OK);
	CHECKF(!strcmp(k.spec, spec), "H=16: %s, the default %s", k.spec, spec);
	mta_context_free(c);
}

/* Host/device mix-ups, which a GPU would turn into a crash, are refused by name. */
TEST(attention_emu_refuses_host_device_mixups)
{
	struct mta_problem p = prob("h4kv2d16-pre3x5-both-f32");
	mta_context *c = context("cuda-emu");
	struct mta_sample s;
	struct dev_in d;
	mta_wts *w = NULL;
	REQUIRE(c && mta_sample_make(&p, 1, 16, mt_seed(), &s) == MTA_OK);
	/* a batch the CUDA grid cannot take: refused before any kernel is built */
	struct mta_stats st0, st1;
	mta_context_stats(c, &st0);
	CHECK_EQ_INT(mta_context_reserve(c, &p, 70000, 16), MTA_EINVAL);
	CHECK_STR_CONTAINS(mta_last_error(), "the CUDA kernel takes B <= 65535");
	mta_context_stats(c, &st1);
	CHECK(st1.kernel_loads == st0.kernel_loads);
	to_device(c, &s, &d);
	REQUIRE(mta_weights_load(c, &p, &s.w, MTA_MEM_HOST, &w) == MTA_OK);
	size_t n = (size_t)(s.B * s.T * p.H * p.D) * 4;
	void *odev = NULL, *ohost = malloc(n);
	REQUIRE(ohost && mta_device_alloc(c, n, &odev) == MTA_OK);
	struct mta_tensor o, q = d.q, k = d.k;
	mta_tensor_init(&o, odev, MTA_F32, s.B, s.T, p.H, p.D);
	o.memory = MTA_MEM_DEVICE;

	/* host memory marked device */
	q = s.q;
	q.memory = MTA_MEM_DEVICE;
	CHECK_EQ_INT(mta_attention(c, &p, w, &q, &d.k, &d.v, &o, 0, NULL), MTA_EINVAL);
	CHECK_STR_CONTAINS(mta_last_error(), "tensor q says device memory");
	/* device memory marked host */
	k = d.k;
	k.memory = MTA_MEM_HOST;
	CHECK_EQ_INT(mta_attention(c, &p, w, &d.q, &k, &d.v, &o, 0, NULL), MTA_EINVAL);
	CHECK_STR_CONTAINS(mta_last_error(), "tensor k says host memory but points into device");
	/* a device tensor larger than its allocation */
	k = d.k;
	k.stride[0] *= 2;
	k.shape[0] = 1;
	k.stride[1] *= 2;
	CHECK_EQ_INT(mta_attention(c, &p, w, &d.q, &k, &d.v, &o, 0, NULL), MTA_EINVAL);
	CHECK_STR_CONTAINS(mta_last_error(), "tensor k says device memory but its");
	CHECK_STR_CONTAINS(mta_last_error(), "run past the end");
	/* a host output marked device */
	struct mta_tensor oh;
	mta_tensor_init(&oh, ohost, MTA_F32, s.B, s.T, p.H, p.D);
	oh.memory = MTA_MEM_DEVICE;
	CHECK_EQ_INT(mta_attention(c, &p, w, &d.q, &d.k, &d.v, &oh, 0, NULL), MTA_EINVAL);
	CHECK_STR_CONTAINS(mta_last_error(), "tensor o says device memory");
	/* weights said to be on the device that are not */
	mta_wts *bad = NULL;
	CHECK_EQ_INT(mta_weights_load(c, &p, &s.w, MTA_MEM_DEVICE, &bad), MTA_EINVAL);
	CHECK_STR_CONTAINS(mta_last_error(), "weight kq_pre says device memory");
	CHECK(bad == NULL);
	/* copies check both sides */
	CHECK_EQ_INT(mta_memcpy(c, ohost, MTA_MEM_DEVICE, odev, MTA_MEM_DEVICE, 16, NULL),
		     MTA_EINVAL);
	CHECK_STR_CONTAINS(mta_last_error(), "destination says device memory");
	/* after all that, the right call still works and is right */
	memset(ohost, 0xff, n);
	CHECK_EQ_INT(mta_attention(c, &p, w, &d.q, &d.k, &d.v, &o, 0, NULL), MTA_OK);
	REQUIRE(mta_memcpy(c, ohost, MTA_MEM_HOST, odev, MTA_MEM_DEVICE, n, NULL) == MTA_OK);
	mta_tensor_init(&oh, ohost, MTA_F32, s.B, s.T, p.H, p.D);
	compare(&p, &s, &s.w, &oh, "after refusals");

	/* a cpu context has host memory only */
	mta_context *cpu = context("cpu");
	mta_wts *cw = NULL;
	void *x = NULL;
	REQUIRE(cpu);
	CHECK_EQ_INT(mta_device_alloc(cpu, 64, &x), MTA_EUNSUPPORTED);
	CHECK_STR_CONTAINS(mta_last_error(), "a cpu context has no device memory");
	REQUIRE(mta_weights_load(cpu, &p, &s.w, MTA_MEM_HOST, &cw) == MTA_OK);
	q = s.q;
	q.memory = MTA_MEM_DEVICE;
	mta_tensor_init(&oh, ohost, MTA_F32, s.B, s.T, p.H, p.D);
	CHECK_EQ_INT(mta_attention(cpu, &p, cw, &q, &s.k, &s.v, &oh, 0, NULL), MTA_EINVAL);
	CHECK_STR_CONTAINS(mta_last_error(), "tensor q says device memory; a cpu context");
	/* a handle belongs to its context */
	CHECK_EQ_INT(mta_attention(cpu, &p, w, &s.q, &s.k, &s.v, &oh, 0, NULL), MTA_EINVAL);
	CHECK_STR_CONTAINS(mta_last_error(), "loaded for another context");
	mta_weights_free(cw);
	mta_context_free(cpu);

	mta_device_free(c, odev);
	free(ohost);
	mta_weights_free(w);
	free_device(c, &d);
	mta_sample_free(&s);
	mta_context_free(c);
}

/* Bad arguments: a message naming what was wrong and what was expected. */
TEST(attention_bad_input_is_named)
{
	struct mta_problem p = prob("h4kv2d16-pre3x5-both-gn-gate-f32");
	mta_context *c = context("cpu");
	struct mta_sample s;
	mta_wts *w = NULL, *other = NULL;
	REQUIRE(c && mta_sample_make(&p, 1, 12, mt_seed(), &s) == MTA_OK);
	REQUIRE(mta_weights_load(c, &p, &s.w, MTA_MEM_HOST, &w) == MTA_OK);
	size_t n = (size_t)(s.B * s.T * p.H * p.D);
	double *o64 = malloc(n * 8);
	REQUIRE(o64);
	struct mta_tensor o, bad;
	mta_tensor_init(&o, o64, MTA_F32, s.B, s.T, p.H, p.D);

	bad = o;
	bad.dtype = MTA_F64;
	CHECK_EQ_INT(mta_attention(c, &p, w, &s.q, &s.k, &s.v, &bad, 0, NULL), MTA_ESHAPE);
	CHECK_STR_CONTAINS(mta_last_error(), "tensor o has element type f64, expected f32, bf16 or f16");
	bad = s.q;
	bad.stride[3] = 2;
	CHECK_EQ_INT(mta_attention(c, &p, w, &bad, &s.k, &s.v, &o, 0, NULL), MTA_ESHAPE);
	CHECK_STR_CONTAINS(mta_last_error(), "tensor q has stride 2 along D; expected 1");
	CHECK_EQ_INT(mta_attention(c, &p, w, &s.q, &s.k, &s.v, &o, 0.5f, NULL), MTA_EUNSUPPORTED);
	CHECK_STR_CONTAINS(mta_last_error(), "scale 0.5: this version's kernels compile the softmax "
			   "scale in");
	CHECK_STR_CONTAINS(mta_last_error(), "set p->scale to 0.5");
	CHECK_EQ_INT(mta_attention(c, &p, w, &s.q, &s.k, &s.v, &o, -1.0f, NULL), MTA_EINVAL);
	CHECK_STR_CONTAINS(mta_last_error(), "scale -1: expected 0");
	CHECK_EQ_INT(mta_attention(c, &p, NULL, &s.q, &s.k, &s.v, &o, 0, NULL), MTA_EINVAL);
	CHECK_STR_CONTAINS(mta_last_error(), "no weights handle (mta_weights_load)");
	CHECK_STR_CONTAINS(mta_last_error(), "kq_pre");
	struct mta_problem p2 = p;
	p2.gate = 0;
	REQUIRE(mta_weights_load(c, &p2, &s.w, MTA_MEM_HOST, &other) == MTA_OK);
	CHECK_EQ_INT(mta_attention(c, &p, other, &s.q, &s.k, &s.v, &o, 0, NULL), MTA_EINVAL);
	CHECK_STR_CONTAINS(mta_last_error(), "the weights handle was loaded for another problem");
	CHECK_EQ_INT(mta_weights_load(c, &p, &s.w, 7, &other), MTA_EINVAL);
	CHECK_STR_CONTAINS(mta_last_error(), "memory 7 is neither");
	struct mta_weights nogate = s.w;
	nogate.gate_w = NULL;
	mta_wts *x = NULL;
	CHECK_EQ_INT(mta_weights_load(c, &p, &nogate, MTA_MEM_HOST, &x), MTA_EINVAL);
	CHECK_STR_CONTAINS(mta_last_error(), "gate_w");
	CHECK(x == NULL);
	/*
	 * Sizes no process can address, as strides of 0 let them be declared
	 * over a small buffer: refused by name (B = 2^62 + 1 passed, and the
	 * kernel walked off its buffers)
	 */
	{
		struct mta_tensor qh = s.q, kh = s.k, vh = s.v, oh = o;
		struct mta_tensor *all[4] = { &qh, &kh, &vh, &oh };
		for (int i = 0; i < 4; i++) {
			all[i]->shape[0] = ((int64_t)1 << 62) + 1;
			all[i]->stride[0] = 0;
		}
		CHECK_EQ_INT(mta_attention(c, &p, w, &qh, &kh, &vh, &oh, 0, NULL), MTA_ESHAPE);
		CHECK_STR_CONTAINS(mta_last_error(), "is larger than a process can address");
		qh = s.q;
		qh.stride[1] = INT64_MAX / 4;
		CHECK_EQ_INT(mta_attention(c, &p, w, &qh, &s.k, &s.v, &o, 0, NULL), MTA_ESHAPE);
		CHECK_STR_CONTAINS(mta_last_error(), "tensor q of shape");
	}
	/* the problem's own scale, given explicitly, is accepted and right */
	float *o32 = (float *)o64;
	memset(o32, 0xff, n * 4);
	CHECK_EQ_INT(mta_attention(c, &p, w, &s.q, &s.k, &s.v, &o, (float)mta_problem_scale(&p),
				   NULL), MTA_OK);
	compare(&p, &s, &s.w, &o, "explicit scale");
	mta_weights_free(other);
	mta_weights_free(w);
	free(o64);
	mta_sample_free(&s);
	mta_context_free(c);
}

/*
 * mta_forward, now built on mta_attention (staged through emulated device
 * memory on cuda-emu), through the check harness: non-contiguous tensors,
 * the element-wise bound and the relative L2 tolerance.
 */
TEST(attention_forward_on_top_through_the_harness)
{
	const char *backends[] = { "cpu", "cuda-emu" };
	const char *keys[] = { FULL, "h4kv2d16-pre3x5-both-gn-gate-bf16" };
	for (int bi = 0; bi < 2; bi++)
		for (int ki = 0; ki < 2; ki++) {
			struct mta_problem p = prob(keys[ki]);
			struct mta_runner r = { 0 };
			struct mta_check_opts o = { 2, 31, mt_seed() + ki, 1 };
			struct mta_compare res;
			r.ctx = context(backends[bi]);
			REQUIRE(r.ctx);
			int rc = mta_check(&r, &p, &o, &res);
			CHECKF(rc == MTA_OK && res.rel_l2 < mta_tolerance(p.dtype), "%s %s: %s (rel L2 "
			       "%.3g)", backends[bi], keys[ki], mta_last_error(), res.rel_l2);
			mta_context_free(r.ctx);
		}
}
