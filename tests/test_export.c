/*
 * test_export.c: `mtatune export` end to end: tune -> export -> make (the
 * folder's own Makefile) -> link a program (tests/export/prog.c) with only
 * -ldl -lm -lpthread -> run every golden case and a tuned problem through
 * it against the float64 reference. Also: byte-identical re-exports, the
 * fallback chain, the errors of the exported runtime, and CUDA winners for
 * sm_90 exported without a GPU (cubins by NVRTC, then from the database).
 */
#include "tests/harness.h"
#include "tests/cpu_util.h"
#include "gen/cuda/cudagen.h"
#include "gen/gen.h"
#include "db/db.h"
#include "runtime/host.h"
#include "tuner/io/inputs.h"
#include "tests/fixtures.h"
#include "runtime/cuda/nvrtc.h"
#include "runtime/ccompile.h"
#include "runtime/core/hash.h"
#include "runtime/cuda/cuda.h"
#include "runtime/cuda/emu.h"
#include "tuner/tune/tune.h"

#include <math.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define SMALL "h2kv1d8-pre2x3-hpre-post2x3-hc2-both-gn-gate-f32"
#define OTHER_SPEC "cpu:v1,bq=32,bk=128,hpb=0,vec=4,thr=1,algo=0"
/* make without the outer make's jobserver flags (make test runs us) */
#define REQUIRE_MSG(c, msg)                                                          \
	do {                                                                         \
		if (!(c)) {                                                          \
			mt_fail(__FILE__, __LINE__, "REQUIRE(%s): %s", #c, (msg));   \
			return;                                                      \
		}                                                                    \
	} while (0)
#define MAKE "env -u MAKEFLAGS -u MFLAGS -u MAKELEVEL make"

/* Write the case file prog.c reads: header line, then q, k, v and the used weights. */
static void write_case(const char *path, const struct mta_problem *p, int64_t B, int64_t T,
		       const float *q, const float *k, const float *v, const struct mta_weights *w)
{
	char key[MTA_KEY_MAX];
	FILE *f = fopen(path, "wb");
	REQUIRE(f && mta_problem_key(p, key, sizeof key) == MTA_OK);
	fprintf(f, "%s %lld %lld %d\n", key, (long long)B, (long long)T, w->layer_id);
	size_t nq = (size_t)(B * T * p->H * p->D), nk = (size_t)(B * T * p->Hkv * p->D);
	fwrite(q, 4, nq, f);
	fwrite(k, 4, nk, f);
	fwrite(v, 4, nk, f);
	if (p->cq)
		fwrite(w->kq_pre, 4, (size_t)(p->H * p->cq * p->ck), f);
	if (p->head_pre)
		fwrite(w->head_pre, 4, (size_t)(p->H * p->H), f);
	if (p->cq2)
		fwrite(w->kq_post, 4, (size_t)(p->H * p->cq2 * p->ck2), f);
	if (p->head_post == MTA_HPOST_CONV)
		fwrite(w->head_post, 4, (size_t)(p->H * p->hc), f);
	if (p->head_post == MTA_HPOST_LINEAR)
		fwrite(w->head_post_linear, 4, (size_t)(p->H * p->H), f);
	if (p->gn)
		fwrite(w->gn_weight, 4, (size_t)p->D, f);
	if (p->gate) {
		fwrite(w->gate_w, 4, (size_t)p->D, f);
		fwrite(&w->gate_b, 4, 1, f);
	}
	REQUIRE(fclose(f) == 0);
}

/* prog's MTX_DECODE_FROM for the next run ("": the forward). */
static const char *decode_from = "";

/*
 * Run prog in mode (a format taking the case and output paths: "run %s %s",
 * or "attn %s %s bf16") on one case, with cu the packed documents' offsets
 * (NULL: none), and compare its output with mta_reference (with cu,
 * mta_reference_varlen) under tol_dtype's bounds (mta_compare: the
 * element-wise bound is CHECKed here); returns the relative L2 error
 * (INFINITY on any failure) and leaves prog's "SOURCE SPEC" line in pick.
 */
static double run_case_full(const char *prog, const char *mode, int tol_dtype,
			    const struct mta_problem *p, int64_t B, int64_t T,
			    const struct mta_tensor *q, const struct mta_tensor *k,
			    const struct mta_tensor *v, const struct mta_weights *w, char *pick,
			    size_t n, const int64_t *cu, int64_t ndocs)
{
	char cpath[1024], opath[1024], *out = NULL;
	size_t no = (size_t)(B * T * p->H * p->D);
	double err = INFINITY, *ref = malloc(no * sizeof *ref);
	float *o = malloc(no * sizeof *o);
	snprintf(cpath, sizeof cpath, "%s/case.bin", mt_tmpdir());
	snprintf(opath, sizeof opath, "%s/out.bin", mt_tmpdir());
	remove(opath);
	write_case(cpath, p, B, T, q->data, k->data, v->data, w);
	char env[600] = "", cmd[512];
	for (int64_t d = 0; cu && d <= ndocs; d++)
		snprintf(env + strlen(env), sizeof env - strlen(env), "%s%lld", d ? "," : "",
			 (long long)cu[d]);
	snprintf(cmd, sizeof cmd, mode, cpath, opath);
	int rc = mt_sh(&out, "MTX_CU_SEQLENS='%s' MTX_DECODE_FROM='%s' %s %s", env, decode_from,
		       prog, cmd);
	CHECKF(rc == 0, "%s: exit %d: %s", prog, rc, out);
	FILE *f = fopen(opath, "rb");
	if (rc == 0 && f && fread(o, 4, no, f) == no && ref &&
	    (cu ? mta_reference_varlen(p, q, k, v, w, cu, ndocs, ref)
		: mta_reference(p, q, k, v, w, ref)) == MTA_OK) {
		struct mta_compare cmp;
		CHECKF(mta_compare(o, ref, no, tol_dtype, &cmp) == MTA_OK || cmp.bad == 0, "%s: %s",
		       prog, mta_last_error());
		err = cmp.rel_l2;
	}
	if (f)
		fclose(f);
	snprintf(pick, n, "%s", out ? out : "");
	free(out);
	free(ref);
	free(o);
	return err;
}

/* The packed forward (cu, ndocs) of prog's "run" mode. */
static double run_case_cu(const char *prog, const struct mta_problem *p, int64_t B, int64_t T,
			  const struct mta_tensor *q, const struct mta_tensor *k,
			  const struct mta_tensor *v, const struct mta_weights *w, char *pick,
			  size_t n, const int64_t *cu, int64_t ndocs)
{
	return run_case_full(prog, "run %s %s", p->dtype, p, B, T, q, k, v, w, pick, n, cu, ndocs);
}

/* One forward in prog's mode, compared under tol_dtype's bounds. */
static double run_case_as(const char *prog, const char *mode, int tol_dtype,
			  const struct mta_problem *p, int64_t B, int64_t T,
			  const struct mta_tensor *q, const struct mta_tensor *k,
			  const struct mta_tensor *v, const struct mta_weights *w, char *pick,
			  size_t n)
{
	return run_case_full(prog, mode, tol_dtype, p, B, T, q, k, v, w, pick, n, NULL, 0);
}

/* One forward of prog's "run" mode, compared with mta_reference. */
static double run_case(const char *prog, const struct mta_problem *p, int64_t B, int64_t T,
		       const struct mta_tensor *q, const struct mta_tensor *k,
		       const struct mta_tensor *v, const struct mta_weights *w, char *pick,
		       size_t n)
{
	return run_case_full(prog, "run %s %s", p->dtype, p, B, T, q, k, v, w, pick, n, NULL, 0);
}

/* The folder's library built, and prog linked against .a (prog_a) and .so (prog_so). */
static void build(const char *lib, const char *name)
{
	char *out = NULL;
	int rc = mt_sh(&out, MAKE " -s -j2 -C %s", lib);
	REQUIRE_MSG(rc == 0, out);
	free(out);
	rc = mt_sh(&out, "cc -std=gnu11 -O2 -I%s tests/export/prog.c %s/lib%s.a -ldl -lm -lpthread "
		   "-o %s/prog_a && cc -std=gnu11 -O2 -I%s tests/export/prog.c -L%s -l%s -ldl -lm "
		   "-lpthread -Wl,-rpath,%s -o %s/prog_so", lib, lib, name, mt_tmpdir(), lib, lib,
		   name, lib, mt_tmpdir());
	REQUIRE_MSG(rc == 0, out);
	free(out);
	/* nothing of SQLite, NVRTC or the CUDA driver is linked in */
	rc = mt_sh(&out, "ldd %s/lib%s.so %s/prog_so %s/prog_a; nm -u %s/lib%s.a | sort -u", lib,
		   name, mt_tmpdir(), mt_tmpdir(), lib, name);
	CHECK(rc == 0);
	CHECK(out && !strstr(out, "sqlite") && !strstr(out, "nvrtc") && !strstr(out, "libcuda") &&
	      !strstr(out, "mta_db_") && !strstr(out, "mta_cc_"));
	CHECK_STR_CONTAINS(out, "dlopen");
	free(out);
}

/* Export into tmp/sub with the given extra options; returns the folder (static). */
static const char *export_to(const char *sub, const char *db, const char *extra)
{
	static char dir[2][1024];
	static int which;
	char *out = NULL, *d = dir[which ^= 1];
	snprintf(d, sizeof dir[0], "%s/%s", mt_tmpdir(), sub);
	int rc = mt_sh(&out, "%s export --db %s --out %s %s", mt_bin(), db, d, extra);
	CHECKF(rc == 0, "export: exit %d: %s", rc, out);
	free(out);
	return d;
}

TEST(export_round_trip_tune_export_build_link_runs_every_golden_case)
{
	char db[1024], keys[8192] = "", pick[512], *out = NULL;
	struct mta_problem p;
	struct mta_tune_opts o;
	struct mta_tune_summary s;
	char **cases;

	mt_kcache();
	snprintf(db, sizeof db, "%s/t.db", mt_tmpdir());
	REQUIRE(mta_problem_from_key(SMALL, &p) == MTA_OK);
	mta_tune_defaults(&o);
	o.db_path = db;
	o.T = 64;
	o.B = 2; /* the batch size the runs below use: their buckets are exact */
	o.reps = 1;
	o.top = 2;
	o.threads = 2;
	o.strategy = MTA_TUNE_RANDOM;
	o.budget = 2;
	REQUIRE_MSG(mta_tune(&p, &o, &s) == MTA_OK, mta_last_error());

	/* a second winner (bucket 256) of another variant, so one problem has two kernels */
	struct mta_db *h;
	struct mta_db_device dev;
	struct mta_variant ov;
	int64_t dev_id, prob_id, var_id;
	REQUIRE(mta_variant_parse(OTHER_SPEC, &ov) == MTA_OK && mta_variant_check(&p, &ov) == MTA_OK);
	REQUIRE(mta_db_open(db, 0, &h) == MTA_OK);
	mta_device_cpu(&dev);
	REQUIRE(mta_db_device_find(h, &dev, &dev_id) == MTA_OK);
	REQUIRE(mta_db_problem_find(h, SMALL, &prob_id) == MTA_OK);
	REQUIRE(mta_db_variant_upsert(h, prob_id, OTHER_SPEC, "", &var_id) == MTA_OK);
	struct mta_db_winner w = { .device_id = dev_id, .problem_id = prob_id,
				   .variant_id = var_id, .T = 200, .B = 2, .time_ms = 1 };
	REQUIRE(mta_db_winner_set(h, &w) == MTA_OK);
	mta_db_close(h);

	/* every golden case's problem (default variants) and the tuned one */
	REQUIRE((cases = mt_golden_cases()) != NULL);
	for (char **c = cases; *c; c++) {
		char dir[1024], pad[16], key[MTA_KEY_MAX];
		struct mta_input_options io;
		struct mta_inputs in;
		snprintf(dir, sizeof dir, "%s/%s", mt_golden_dir(), *c);
		mta_input_options_init(&io);
		REQUIRE(mt_golden_config(dir, pad, sizeof pad, &io.layer_id) == 0);
		REQUIRE(mta_pad_parse(pad, &io.pad) == MTA_OK);
		REQUIRE_MSG(mta_inputs_load(dir, &io, &in) == MTA_OK, mta_last_error());
		REQUIRE(mta_problem_key(&in.problem, key, sizeof key) == MTA_OK);
		mta_inputs_free(&in);
		snprintf(keys + strlen(keys), sizeof keys - strlen(keys), " --problem %s", key);
	}
	strcat(keys, " --problem " SMALL " --name mtx");
	const char *lib = export_to("lib", db, keys);
	const char *again = export_to("lib2", db, keys);
	/* reproducible: the same database gives the same bytes */
	CHECK(mt_sh(&out, "diff -r %s %s", lib, again) == 0);
	free(out);
	if (mt_sanitized()) {
		/* the rest makes the library and runs programs linked with it: no sanitized code */
		printf("  sanitizer build: the tune and both exports checked; the library's build "
		       "and runs are the normal build's\n");
		mt_golden_free(cases);
		return;
	}
	build(lib, "mtx");

	char prog_a[1024], prog_so[1024];
	snprintf(prog_a, sizeof prog_a, "%s/prog_a", mt_tmpdir());
	snprintf(prog_so, sizeof prog_so, "%s/prog_so", mt_tmpdir());
	int seen = 0;
	for (char **c = cases; *c; c++, seen++) {
		char dir[1024], pad[16];
		struct mta_input_options io;
		struct mta_inputs in;
		struct mta_weights wt;
		snprintf(dir, sizeof dir, "%s/%s", mt_golden_dir(), *c);
		mta_input_options_init(&io);
		REQUIRE(mt_golden_config(dir, pad, sizeof pad, &io.layer_id) == 0);
		REQUIRE(mta_pad_parse(pad, &io.pad) == MTA_OK);
		REQUIRE(mta_inputs_load(dir, &io, &in) == MTA_OK);
		mta_inputs_weights(&in, &wt);
		double err = run_case(c == cases ? prog_so : prog_a, &in.problem, in.B, in.T, &in.q,
				      &in.k, &in.v, &wt, pick, sizeof pick);
		CHECKF(err < mta_tolerance(MTA_F32), "%s: relative L2 %.3g (%s)", *c, err, pick);
		CHECKF(pick[0] == '0', "%s: not the default variant: %s", *c, pick);
		mta_inputs_free(&in);
	}
	CHECK(seen >= 11);
	/* a CPU library ships one decode kernel per problem, linked in */
	CHECK(mt_sh(&out, "nm %s/libmtx.a | grep -c 'mtx_d[0-9]*_decode$'", lib) == 0);
	CHECKF(out && atoi(out) >= 12, "decode kernels in libmtx.a: %s", out ? out : "");
	free(out);
	mt_golden_free(cases);

	/* the tuned problem: exact buckets 64 and 256, then the nearest (256) for 3000 */
	struct { int64_t T; const char *want; } runs[] = {
		{ 64, "2 " }, { 200, "2 " OTHER_SPEC }, { 3000, "1 " OTHER_SPEC },
	};
	for (size_t i = 0; i < sizeof runs / sizeof runs[0]; i++) {
		struct mta_tensor q, k, v;
		struct mta_weights wt;
		void *bq = mt_tensor(MTA_F32, 2, runs[i].T, p.H, p.D, 0, &q);
		void *bk = mt_tensor(MTA_F32, 2, runs[i].T, p.Hkv, p.D, 0, &k);
		void *bv = mt_tensor(MTA_F32, 2, runs[i].T, p.Hkv, p.D, 0, &v);
		mt_weights(&p, &wt);
		double err = run_case(prog_a, &p, 2, runs[i].T, &q, &k, &v, &wt, pick, sizeof pick);
		CHECKF(err < mta_tolerance(MTA_F32), "T=%lld: relative L2 %.3g", (long long)runs[i].T,
		       err);
		CHECK_STR_CONTAINS(pick, runs[i].want);
		if (runs[i].T == 64)
			CHECK_STR_CONTAINS(pick, s.winner);
		/* mta_attention through a weights handle, every output type, nothing per call */
		static const char *modes[] = { "attn %s %s f32", "attn %s %s bf16", "attn %s %s f16" };
		for (int m = 0; runs[i].T <= 200 && m < 3; m++) {
			err = run_case_as(m ? prog_so : prog_a, modes[m], m ? m : MTA_F32, &p, 2,
					  runs[i].T, &q, &k, &v, &wt, pick, sizeof pick);
			CHECKF(err < mta_tolerance(m ? m : MTA_F32), "%s T=%lld: relative L2 %.3g",
			       modes[m], (long long)runs[i].T, err);
			CHECK_STR_CONTAINS(pick, runs[i].want);
		}
		mt_weights_free(&wt);
		free(bq);
		free(bk);
		free(bv);
	}

	/* packed documents through the library: one kernel call, each document alone */
	{
		static const int64_t cu[] = { 0, 1, 20, 20, 64, 70 };
		struct mta_tensor q, k, v;
		struct mta_weights wt;
		void *bq = mt_tensor(MTA_F32, 1, 70, p.H, p.D, 0, &q);
		void *bk = mt_tensor(MTA_F32, 1, 70, p.Hkv, p.D, 0, &k);
		void *bv = mt_tensor(MTA_F32, 1, 70, p.Hkv, p.D, 0, &v);
		mt_weights(&p, &wt);
		double err = run_case_cu(prog_so, &p, 1, 70, &q, &k, &v, &wt, pick, sizeof pick, cu,
					 5);
		CHECKF(err < mta_tolerance(MTA_F32), "packed: relative L2 %.3g", err);
		/* decode through the library's own decode kernel: prefill 30, then tokens */
		decode_from = "30";
		err = run_case(prog_a, &p, 1, 70, &q, &k, &v, &wt, pick, sizeof pick);
		decode_from = "";
		CHECKF(err < mta_tolerance(MTA_F32), "decode: relative L2 %.3g", err);
		CHECK_STR_CONTAINS(pick, "decode");
		mt_weights_free(&wt);
		free(bq);
		free(bk);
		free(bv);
	}

	/* errors: a problem not exported, a database path, another backend */
	CHECK(mt_sh(&out, "%s pick h8kv8d32-both-f32 100", prog_a) == 1);
	CHECK_STR_CONTAINS(out, "ENOTFOUND: problem h8kv8d32-both-f32 was not exported into "
			   "library mtx");
	free(out);
	CHECK(mt_sh(&out, "%s ctx cpu %s", prog_so, db) == 1);
	CHECK_STR_CONTAINS(out, "EINVAL: library mtx was exported");
	free(out);
	CHECK(mt_sh(&out, "%s ctx cuda", prog_a) == 1);
	CHECK_STR_CONTAINS(out, "EUNSUPPORTED: library mtx holds cpu kernels only");
	free(out);
	CHECK(mt_sh(&out, "%s ctx tpu", prog_a) == 1);
	CHECK_STR_CONTAINS(out, "unknown backend 'tpu'");
	free(out);
}

/*
 * A database tuned for the forward and the backward (tune --op bwd) exports
 * a CPU library that ships both: its mta_forward_train and mta_backward run
 * the backward winner (exact bucket, then the nearest) and every gradient,
 * and the output, match the float64 references.
 */
/*
 * prog grad (prog a path, env its environment's prefix) on fresh random
 * inputs of p at (B, T), packed documents cu (ndocs of them) when cu is
 * set: o and every gradient compared with the float64 references
 * (mta_compare, mta_compare_grad_mag: relative L2 and the element-wise
 * bound, a sum whose terms cancel judged on their magnitudes);
 * prog's pick line into pick.
 */
static void grad_check(const char *prog, const char *env, const struct mta_problem *p, int64_t B,
		       int64_t T, const int64_t *cu, int64_t ndocs, char *pick, size_t npick)
{
	char *out = NULL;
	struct mta_tensor q, k, v, d;
	struct mta_weights wt;
	void *bq = mt_tensor(MTA_F32, B, T, p->H, p->D, 0, &q);
	void *bk = mt_tensor(MTA_F32, B, T, p->Hkv, p->D, 0, &k);
	void *bv = mt_tensor(MTA_F32, B, T, p->Hkv, p->D, 0, &v);
	void *bd = mt_tensor(MTA_F32, B, T, p->H, p->D, 0, &d);
	mt_weights(p, &wt);
	char cpath[1024], opath[1024], cus[600] = "";
	snprintf(cpath, sizeof cpath, "%s/gcase.bin", mt_tmpdir());
	snprintf(opath, sizeof opath, "%s/gout.bin", mt_tmpdir());
	remove(opath);
	pick[0] = 0;
	write_case(cpath, p, B, T, q.data, k.data, v.data, &wt);
	FILE *f = fopen(cpath, "ab");
	REQUIRE(f);
	const size_t nq = (size_t)(B * T * p->H * p->D);
	REQUIRE(fwrite(d.data, 4, nq, f) == nq && fclose(f) == 0);
	for (int64_t i = 0; cu && i <= ndocs; i++)
		snprintf(cus + strlen(cus), sizeof cus - strlen(cus), "%s%lld", i ? "," : "",
			 (long long)cu[i]);
	int rc = mt_sh(&out, "%s MTX_CU_SEQLENS=%s %s grad %s %s", env, cus, prog, cpath, opath);
	CHECKF(rc == 0, "prog grad T=%lld: exit %d: %s", (long long)T, rc, out);
	snprintf(pick, npick, "%s", out ? out : "");
	free(out);
	/* the references: o, then each gradient in struct mta_grads order */
	const size_t nk = (size_t)(B * T * p->Hkv * p->D);
	size_t n[12] = { nq, nq, nk, nk,
			 p->cq ? (size_t)(p->H * p->cq * p->ck) : 0,
			 p->head_pre ? (size_t)(p->H * p->H) : 0,
			 p->cq2 ? (size_t)(p->H * p->cq2 * p->ck2) : 0,
			 p->head_post == MTA_HPOST_CONV ? (size_t)(p->H * p->hc) : 0,
			 p->head_post == MTA_HPOST_LINEAR ? (size_t)(p->H * p->H) : 0,
			 p->gn ? (size_t)p->D : 0, p->gate ? (size_t)p->D : 0, p->gate ? 1 : 0 };
	double *e[12], *m[12]; /* the references and the gradients' terms' magnitudes */
	size_t total = 0;
	for (int i = 0; i < 12; i++) {
		e[i] = n[i] ? calloc(n[i], sizeof *e[i]) : NULL;
		m[i] = n[i] ? calloc(n[i], sizeof *m[i]) : NULL;
		total += n[i];
	}
	struct mta_reference_grads mg = { m[1], m[2], m[3], m[4], m[5], m[6], m[7], m[8],
					  m[9], m[10], m[11], NULL };
	struct mta_reference_grads rg = { e[1], e[2], e[3], e[4], e[5], e[6], e[7], e[8],
					  e[9], e[10], e[11], &mg };
	if (cu) {
		REQUIRE(mta_reference_varlen(p, &q, &k, &v, &wt, cu, ndocs, e[0]) == MTA_OK);
		REQUIRE(mta_reference_backward_varlen(p, &q, &k, &v, &wt, &d, cu, ndocs, &rg) ==
			MTA_OK);
	} else {
		REQUIRE(mta_reference(p, &q, &k, &v, &wt, e[0]) == MTA_OK);
		REQUIRE(mta_reference_backward(p, &q, &k, &v, &wt, &d, &rg) == MTA_OK);
	}
	float *got = malloc(total * sizeof *got);
	f = rc == 0 ? fopen(opath, "rb") : NULL;
	CHECKF(f && got && fread(got, 4, total, f) == total, "T=%lld: no full output from %s",
	       (long long)T, prog);
	if (f)
		fclose(f);
	size_t at = 0;
	int checked = 0;
	for (int i = 0; i < 12; i++) {
		struct mta_compare cmp;
		if (!n[i])
			continue;
		if (f) {
			rc = i ? mta_compare_grad_mag(got + at, e[i], m[i], n[i], MTA_F32, &cmp)
			       : mta_compare(got + at, e[i], n[i], MTA_F32, &cmp);
			CHECKF(rc == MTA_OK, "T=%lld, tensor %d of the exported backward (%s): %s",
			       (long long)T, i, pick, mta_last_error());
			checked++;
		}
		at += n[i];
		free(e[i]);
		free(m[i]);
	}
	CHECK(!f || checked == 11); /* o, dq, dk, dv and the 7 weights SMALL uses */
	free(got);
	free(bq);
	free(bk);
	free(bv);
	free(bd);
	mt_weights_free(&wt);
}

TEST(export_ships_the_backward_winner_and_its_gradients_match_the_reference)
{
	char db[1024], spec[MTA_SPEC_MAX], want[MTA_SPEC_MAX + 8], pick[512], *out = NULL;
	struct mta_problem p;
	struct mta_tune_opts o;
	struct mta_tune_summary s;
	struct mta_variant v;

	mt_kcache();
	snprintf(db, sizeof db, "%s/fb.db", mt_tmpdir());
	REQUIRE(mta_problem_from_key(SMALL, &p) == MTA_OK);
	REQUIRE(mta_variant_default_op(&p, MTA_BACKEND_CPU, MTA_OP_BWD, &v) == MTA_OK);
	v.bq = 8;
	REQUIRE(mta_variant_format(&v, spec, sizeof spec) == MTA_OK);
	const char *only[] = { spec };
	mta_tune_defaults(&o);
	o.db_path = db;
	o.T = 64;
	o.B = 2;
	o.reps = 1;
	o.threads = 2;
	o.min_rounds = 2;
	o.max_rounds = 3;
	o.rounds_budget_s = 2;
	o.only_specs = only;
	o.n_only = 1;
	REQUIRE_MSG(mta_tune(&p, &o, &s) == MTA_OK, mta_last_error());
	o.op = MTA_OP_BWD;
	REQUIRE_MSG(mta_tune(&p, &o, &s) == MTA_OK, mta_last_error());
	snprintf(want, sizeof want, "2 %s", s.winner);
	/* a second backward winner (bucket 256) of bq=8, so the lookup has two to choose from */
	struct mta_db *h;
	struct mta_db_device dev;
	int64_t dev_id, prob_id, var_id;
	REQUIRE(mta_db_open(db, 0, &h) == MTA_OK);
	mta_device_cpu(&dev);
	REQUIRE(mta_db_device_find(h, &dev, &dev_id) == MTA_OK);
	REQUIRE(mta_db_problem_find(h, SMALL, &prob_id) == MTA_OK);
	REQUIRE(mta_db_variant_upsert_op(h, prob_id, "bwd", spec, NULL, &var_id) == MTA_OK);
	struct mta_db_winner bw = { .device_id = dev_id, .problem_id = prob_id, .op = "bwd",
				    .variant_id = var_id, .T = 200, .B = 2, .time_ms = 1 };
	REQUIRE(mta_db_winner_set(h, &bw) == MTA_OK);
	mta_db_close(h);

	char lib[1024];
	snprintf(lib, sizeof lib, "%s/fblib", mt_tmpdir());
	/* with a problem not tuned for the backward: it ships none */
	int rc = mt_sh(&out, "%s export --db %s --out %s --name fb --problem " SMALL
		       " --problem h2kv1d8-both-f32", mt_bin(), db, lib);
	CHECKF(rc == 0, "export: exit %d: %s", rc, out);
	CHECK_STR_CONTAINS(out, "2 problems, 3 buckets, ");
	CHECK_STR_CONTAINS(out, "(2 of the buckets the backward's)");
	free(out);
	CHECK(mt_sh(&out, "grep -c 'backward, T <= 64, B <= 2: %s' %s/src/fb_table.c", s.winner,
		    lib) == 0);
	free(out);
	if (mt_sanitized()) {
		/* the rest makes the library and runs programs linked with it: no sanitized code */
		printf("  sanitizer build: the tunes and the export checked; the library's build "
		       "and runs are the normal build's\n");
		return;
	}
	build(lib, "fb");

	/*
	 * T=64 and 150: the backward's own buckets (64: the tuned winner, 256:
	 * bq=8); 400: the nearest; then packed documents (B=1, T=50, lengths 1,
	 * 3, 0, 16, 30: mta_forward_train_varlen and mta_backward_varlen of the
	 * library, against the packed references).
	 */
	static const int64_t Ts[] = { 64, 150, 400, 50 };
	static const int64_t cu[] = { 0, 1, 4, 4, 20, 50 };
	for (size_t t = 0; t < 4; t++) {
		const int packed = t == 3;
		const int64_t T = Ts[t];
		char prog[1100];
		snprintf(prog, sizeof prog, "%s/prog_so", mt_tmpdir());
		grad_check(prog, "", &p, packed ? 1 : 2, T, packed ? cu : NULL, 5, pick,
			   sizeof pick);
		/* (packed: each document picks for its own length; no pick to compare) */
		if (!packed && !t)
			CHECKF(!strncmp(pick, want, strlen(want)), "T=%lld: the backward pick was "
			       "'%s', expected %s", (long long)T, pick, want);
		else if (!packed)
			CHECKF(!strncmp(pick, t == 1 ? "2 " : "1 ", 2) && strstr(pick, spec),
			       "T=%lld: the backward pick was '%s', expected %s", (long long)T, pick,
			       spec);
	}
	/* the forward-only problem: its training calls say it has no backward */
	struct mta_problem p2;
	struct mta_tensor q2, k2, v2;
	struct mta_weights wt2;
	REQUIRE(mta_problem_from_key("h2kv1d8-both-f32", &p2) == MTA_OK);
	void *bq = mt_tensor(MTA_F32, 1, 16, p2.H, p2.D, 0, &q2);
	void *bk = mt_tensor(MTA_F32, 1, 16, p2.Hkv, p2.D, 0, &k2);
	void *bv = mt_tensor(MTA_F32, 1, 16, p2.Hkv, p2.D, 0, &v2);
	mt_weights(&p2, &wt2);
	char cpath[1024];
	const size_t nq2 = (size_t)(16 * p2.H * p2.D);
	snprintf(cpath, sizeof cpath, "%s/gcase2.bin", mt_tmpdir());
	write_case(cpath, &p2, 1, 16, q2.data, k2.data, v2.data, &wt2);
	FILE *f = fopen(cpath, "ab");
	REQUIRE(f && fwrite(q2.data, 4, nq2, f) == nq2);
	fclose(f);
	rc = mt_sh(&out, "%s/prog_a grad %s %s/gout2.bin", mt_tmpdir(), cpath, mt_tmpdir());
	CHECK(rc != 0);
	CHECK_STR_CONTAINS(out, "EUNSUPPORTED: library fb has no backward for h2kv1d8-both-f32");
	free(out);
	free(bq);
	free(bk);
	free(bv);
	mt_weights_free(&wt2);
}

static void nvrtc_cubin(const struct mta_problem *p, const char *spec, int op, char *out, size_t n,
			struct mta_db *store);

TEST(export_cuda_sm90_without_gpu_builds_and_says_no_device)
{
	char db[1024], *out = NULL;
	struct mta_problem p;
	REQUIRE(mta_problem_from_key(SMALL, &p) == MTA_OK);
	snprintf(db, sizeof db, "%s/cuda.db", mt_tmpdir());
	mt_cuda_winner_db(db, SMALL);

	/* no binary stored: NVRTC compiles the cubin now */
	CHECK(mt_sh(&out, "%s export --db %s --arch sm_90 --out %s/cu1 --name mtacu", mt_bin(),
		    db, mt_tmpdir()) == 0);
	/* the forward winner and the default decode variant (a CUDA library's decode) */
	CHECK_STR_CONTAINS(out, "1 problems, 1 buckets, 2 kernels (sm_90 cubins: 0 from the "
			   "database, 2 compiled)");
	free(out);

	/* store that cubin under another NVRTC's name; with no NVRTC at all the export takes it */
	struct mta_variant v;
	char *src = NULL, hash[17];
	REQUIRE(mta_variant_default(&p, MTA_BACKEND_CUDA, &v) == MTA_OK);
	REQUIRE(mta_gen_cuda(&p, &v, &src) == MTA_OK);
	mta_hash_hex(src, strlen(src), hash);
	struct mta_nvrtc_job job = { .source = src, .kernel = MTA_CUDA_KERNEL, .arch = "sm_90" };
	REQUIRE_MSG(mta_nvrtc_compile(&job) == MTA_OK, job.message);
	struct mta_db *h;
	struct mta_db_binary_key key;
	char compiler[32];
	mta_cuda_binary_key(hash, "sm_90", "12.9", compiler, &key); /* as the tuner stores it */
	REQUIRE(mta_db_open(db, 0, &h) == MTA_OK);
	REQUIRE(mta_db_binary_put(h, &key, job.cubin, job.cubin_size) == MTA_OK);
	{
		struct mta_variant dv;
		char dspec[MTA_SPEC_MAX], dcub[64];
		REQUIRE(mta_variant_default_op(&p, MTA_BACKEND_CUDA, MTA_OP_DECODE, &dv) == MTA_OK);
		REQUIRE(mta_variant_format(&dv, dspec, sizeof dspec) == MTA_OK);
		nvrtc_cubin(&p, dspec, MTA_OP_DECODE, dcub, sizeof dcub, h);
	}
	mta_db_close(h);
	mta_nvrtc_job_free(&job);
	free(src);
	CHECK(mt_sh(&out, "MTATUNE_NVRTC=/nonexistent/libnvrtc.so %s export --db %s --arch sm_90 "
		    "--out %s/cu2 --name mtacu", mt_bin(), db, mt_tmpdir()) == 0);
	CHECK_STR_CONTAINS(out, "(sm_90 cubins: 2 from the database, 0 compiled)");
	free(out);
	/* same source, same NVRTC: the same bytes either way */
	CHECK(mt_sh(&out, "diff -r %s/cu1 %s/cu2", mt_tmpdir(), mt_tmpdir()) == 0);
	free(out);

	/*
	 * builds, links without the driver, and says so at context creation
	 * (make and the library's programs: no sanitized code, the normal build's)
	 */
	char lib[1024];
	snprintf(lib, sizeof lib, "%s/cu1", mt_tmpdir());
	if (!mt_sanitized()) {
		build(lib, "mtacu");
		CHECK(mt_sh(&out, "%s/prog_a ctx cuda", mt_tmpdir()) == 1);
		CHECK_STR_CONTAINS(out, "ENODEV: no CUDA driver (libcuda.so.1) found");
		free(out);
		CHECK(mt_sh(&out, "%s/prog_so ctx cpu", mt_tmpdir()) == 1);
		CHECK_STR_CONTAINS(out, "EUNSUPPORTED: library mtacu holds cuda kernels only");
		free(out);
	}

	/* options refused with a reason */
	CHECK(mt_sh(&out, "%s export --db %s --arch sm90 --out %s/x", mt_bin(), db,
		    mt_tmpdir()) == 2);
	CHECK_STR_CONTAINS(out, "expected a CUDA architecture such as sm_80");
	free(out);
	/* Blackwell's three-digit architectures (and the a and f suffixes) pass the
	 * option check (here, to the missing database); malformed ones do not */
	static const char *archs[] = { "sm_100", "sm_120a", "sm_90a", "sm_100f", "sm_9x",
				       "sm_1000", "sm_90b", "sm_+90", "sm_4" };
	for (int i = 0; i < 9; i++) {
		int st = mt_sh(&out, "%s export --db %s/none.db --arch %s --out %s/x", mt_bin(),
			       mt_tmpdir(), archs[i], mt_tmpdir());
		CHECKF(i < 4 ? !strstr(out, "expected a CUDA architecture") && strstr(out, "none.db") :
		       st == 2 && strstr(out, "expected a CUDA architecture") != NULL,
		       "--arch %s: exit %d: %s", archs[i], st, out);
		free(out);
	}
	CHECK(mt_sh(&out, "%s export --db %s --out %s/x --name 'a b'", mt_bin(), db,
		    mt_tmpdir()) == 2);
	CHECK_STR_CONTAINS(out, "library name 'a b'");
	free(out);
	CHECK(mt_sh(&out, "%s export --db %s --device nope --out %s/x", mt_bin(), db,
		    mt_tmpdir()) == 3);
	CHECK_STR_CONTAINS(out, "no device named 'nope'; it has #1 'NVIDIA H100 80GB HBM3' (cuda "
			   "sm_90, driver '580', nvrtc '13.0', 132 cores)");
	free(out);
	CHECK(mt_sh(&out, "%s export --db %s --problem h3kv2d8 --out %s/x", mt_bin(), db,
		    mt_tmpdir()) == 2);
	CHECK_STR_CONTAINS(out, "--problem h3kv2d8");
	free(out);
}

/*
 * The cubin NVRTC makes for sm_90 of p's op kernel of spec: "SIZE HASH" into
 * out; with store, also kept there as a tuner with another NVRTC keeps it.
 */
static void nvrtc_cubin(const struct mta_problem *p, const char *spec, int op, char *out, size_t n,
			struct mta_db *store)
{
	struct mta_variant v;
	char *src = NULL, hash[17], shash[17];
	REQUIRE(mta_variant_parse(spec, &v) == MTA_OK);
	REQUIRE(mta_gen_source_op(p, &v, op, &src) == MTA_OK);
	struct mta_nvrtc_job job = { .source = src, .arch = "sm_90",
				     .kernel = op == MTA_OP_BWD      ? MTA_CUDA_BWD_KERNEL
					       : op == MTA_OP_DECODE ? MTA_CUDA_DECODE_KERNEL
								     : MTA_CUDA_KERNEL };
	REQUIRE_MSG(mta_nvrtc_compile(&job) == MTA_OK, job.message);
	mta_hash_hex(job.cubin, job.cubin_size, hash);
	snprintf(out, n, "%zu %s", job.cubin_size, hash);
	if (store) {
		struct mta_db_binary_key key;
		char compiler[32];
		mta_hash_hex(src, strlen(src), shash);
		mta_cuda_binary_key(shash, "sm_90", "12.9", compiler, &key);
		REQUIRE(mta_db_binary_put(store, &key, job.cubin, job.cubin_size) == MTA_OK);
	}
	mta_nvrtc_job_free(&job);
	free(src);
}

/*
 * Issue 16: an exported CUDA library ships the backward of problems tuned
 * for it (tune --op bwd --backend cuda): the winners' cubins and the default
 * backward's, from the database or compiled by NVRTC at export time, with
 * their launch shape in the table (read by tests/export/table.c); its
 * mta_forward_train and mta_backward run them through the shipped
 * runtime/cuda/bwd.c. Without a driver they say so (MTA_ENODEV); on a
 * stand-in driver (tests/export/fakecuda.c) whose launches run the
 * emulator's build of the same source, the library's gradients, plain and
 * packed, match the float64 reference, and the launches are the plan's.
 */
TEST(export_cuda_ships_the_backward_and_runs_it_on_a_stand_in_driver)
{
	char db[1024], lib[1024], *out = NULL, want[4096], line[600], cub[4][64];
	const char *wspec = "cuda:v1,bq=8,bk=32,hpb=2,warps=2,algo=0,nb=5";
	struct mta_problem p;
	struct mta_variant fv, bv, wv;
	char fspec[MTA_SPEC_MAX], bspec[MTA_SPEC_MAX];
	mt_kcache();
	REQUIRE(mta_problem_from_key(SMALL, &p) == MTA_OK);
	snprintf(db, sizeof db, "%s/cudab.db", mt_tmpdir());
	mt_cuda_winner_db(db, SMALL);
	REQUIRE(mta_variant_default(&p, MTA_BACKEND_CUDA, &fv) == MTA_OK);
	REQUIRE(mta_variant_format(&fv, fspec, sizeof fspec) == MTA_OK);
	REQUIRE(mta_variant_default_op(&p, MTA_BACKEND_CUDA, MTA_OP_BWD, &bv) == MTA_OK);
	REQUIRE(mta_variant_format(&bv, bspec, sizeof bspec) == MTA_OK);
	REQUIRE(mta_variant_parse(wspec, &wv) == MTA_OK);
	REQUIRE(mta_variant_check_op(&p, &wv, MTA_OP_BWD) == MTA_OK);
	{ /* the backward's winner at T=64, B=2, as tune --op bwd --backend cuda records it */
		struct mta_db *h;
		int64_t dev_id = 1, prob_id, var_id;
		REQUIRE(mta_db_open(db, 0, &h) == MTA_OK);
		REQUIRE(mta_db_problem_find(h, SMALL, &prob_id) == MTA_OK);
		REQUIRE(mta_db_variant_upsert_op(h, prob_id, "bwd", wspec, NULL, &var_id) == MTA_OK);
		struct mta_db_winner w = { .device_id = dev_id, .problem_id = prob_id, .op = "bwd",
					   .variant_id = var_id, .T = 64, .B = 2, .time_ms = 1 };
		REQUIRE(mta_db_winner_set(h, &w) == MTA_OK);
		mta_db_close(h);
	}
	snprintf(lib, sizeof lib, "%s/cub1", mt_tmpdir());
	CHECK(mt_sh(&out, "%s export --db %s --arch sm_90 --out %s --name cub", mt_bin(), db,
		    lib) == 0);
	CHECK_STR_CONTAINS(out, "1 problems, 2 buckets, 4 kernels (1 of the buckets the backward's) "
			   "(sm_90 cubins: 0 from the database, 4 compiled)");
	free(out);
	CHECK(mt_sh(&out, "grep -c 'libcub: MTA forward and backward kernels' %s/Makefile", lib) == 0);
	free(out);
	/*
	 * Under the sanitizer: the export, NVRTC's cubins and the export from the
	 * database (sanitized code); the library's make, its table and its runs on
	 * the stand-in driver (none of it sanitized) are the normal build's.
	 */
	const int whole = !mt_sanitized();
	if (whole)
		build(lib, "cub");

	/* the table: each kernel's entry, launch, shape and cubin (NVRTC's bytes for its source) */
	struct mta_db *store;
	REQUIRE(mta_db_open(db, 0, &store) == MTA_OK);
	nvrtc_cubin(&p, fspec, MTA_OP_FWD, cub[0], sizeof cub[0], store);
	nvrtc_cubin(&p, wspec, MTA_OP_BWD, cub[1], sizeof cub[1], store);
	nvrtc_cubin(&p, bspec, MTA_OP_BWD, cub[2], sizeof cub[2], store);
	struct mta_variant dv;
	char dspec[MTA_SPEC_MAX];
	unsigned dthreads;
	size_t dsmem;
	REQUIRE(mta_variant_default_op(&p, MTA_BACKEND_CUDA, MTA_OP_DECODE, &dv) == MTA_OK);
	REQUIRE(mta_variant_format(&dv, dspec, sizeof dspec) == MTA_OK);
	REQUIRE(mta_cuda_decode_dims(&p, &dv, &dthreads, &dsmem) == MTA_OK);
	nvrtc_cubin(&p, dspec, MTA_OP_DECODE, cub[3], sizeof cub[3], store);
	mta_db_close(store);
	struct mta_cuda_bwd_dims dw, db1;
	struct mta_cuda_launch g;
	REQUIRE(mta_cuda_bwd_dims(&p, &wv, 1, 1, &dw, NULL) == MTA_OK);
	REQUIRE(mta_cuda_bwd_dims(&p, &bv, 1, 1, &db1, NULL) == MTA_OK);
	REQUIRE(mta_cuda_geometry(&p, &fv, 1, 1, &g) == MTA_OK);
	snprintf(want, sizeof want,
		 "library cub cuda sm_90 1 4\n"
		 "kernel 0 %s %s %u %zu %d %d 0 0 0 %s\n"
		 "kernel 1 %s %s %u %zu 0 0 %d %d %d %s\n"
		 "kernel 2 %s %s %u %zu 0 0 %d %d %d %s\n"
		 "kernel 3 %s %s %u %zu 0 0 0 0 0 %s\n"
		 "problem %s 0 2 3\n"
		 "bucket %s fwd 1024 1 0\n"
		 "bucket %s bwd 64 2 1\n",
		 fspec, MTA_CUDA_KERNEL, g.block[0], g.smem_bytes, fv.bq, fv.hpb, cub[0],
		 wspec, MTA_CUDA_BWD_KERNEL, dw.threads, dw.smem_bytes, wv.bq, wv.warps, wv.nb, cub[1],
		 bspec, MTA_CUDA_BWD_KERNEL, db1.threads, db1.smem_bytes, bv.bq, bv.warps, bv.nb,
		 cub[2], dspec, MTA_CUDA_DECODE_KERNEL, dthreads, dsmem, cub[3], SMALL, SMALL, SMALL);
	char table[1100];
	int rc = 0;
	snprintf(table, sizeof table, "%s/table", mt_tmpdir());
	if (whole) {
		rc = mt_sh(&out, "cc -std=gnu11 -O1 -I%s/src tests/export/table.c %s/libcub.a -ldl "
			   "-lm -lpthread -o %s && %s", lib, lib, table, table);
		CHECKF(rc == 0, "table: exit %d: %s", rc, out);
		CHECKF(out && !strcmp(out, want), "the exported table:\n%s\nexpected:\n%s", out,
		       want);
		free(out);
	}

	/* the cubins from the database when this machine has no NVRTC: the same library */
	CHECK(mt_sh(&out, "MTATUNE_NVRTC=/nonexistent/libnvrtc.so %s export --db %s --arch sm_90 "
		    "--out %s/cub2 --name cub", mt_bin(), db, mt_tmpdir()) == 0);
	CHECK_STR_CONTAINS(out, "(sm_90 cubins: 4 from the database, 0 compiled)");
	free(out);
	CHECK(mt_sh(&out, "diff -r -x build -x '*.a' -x '*.so' %s %s/cub2", lib, mt_tmpdir()) == 0);
	free(out);
	if (!whole) {
		printf("  sanitizer build: both exports and the cubins checked; the library's build, "
		       "table and runs are the normal build's\n");
		return;
	}

	/* the training entry points are the library's own, and without a driver say so */
	CHECK(mt_sh(&out, "nm -D --defined-only %s/libcub.so", lib) == 0);
	static const char *const syms[] = { " mta_forward_train\n", " mta_backward\n",
					    " mta_forward_train_varlen\n", " mta_backward_varlen\n",
					    " mta_context_pick_op\n", " mta_saved_bytes\n" };
	for (size_t i = 0; i < sizeof syms / sizeof syms[0]; i++)
		CHECKF(out && strstr(out, syms[i]), "libcub.so does not export%s", syms[i]);
	free(out);
	char prog[1100], env[8192];
	snprintf(prog, sizeof prog, "%s/prog_a", mt_tmpdir());
	snprintf(env, sizeof env, "MTATUNE_LIBCUDA=%s/none.so MTX_BACKEND=cuda", mt_tmpdir());
	{
		struct mta_tensor q, k, v, d;
		struct mta_weights wt;
		char cpath[1024];
		void *b0 = mt_tensor(MTA_F32, 1, 8, p.H, p.D, 0, &q);
		void *b1 = mt_tensor(MTA_F32, 1, 8, p.Hkv, p.D, 0, &k);
		void *b2 = mt_tensor(MTA_F32, 1, 8, p.Hkv, p.D, 0, &v);
		void *b3 = mt_tensor(MTA_F32, 1, 8, p.H, p.D, 0, &d);
		mt_weights(&p, &wt);
		snprintf(cpath, sizeof cpath, "%s/ncase.bin", mt_tmpdir());
		write_case(cpath, &p, 1, 8, q.data, k.data, v.data, &wt);
		FILE *f = fopen(cpath, "ab");
		REQUIRE(f && fwrite(d.data, 4, (size_t)(8 * p.H * p.D), f) == (size_t)(8 * p.H * p.D));
		fclose(f);
		CHECK(mt_sh(&out, "%s %s grad %s %s/nout.bin", env, prog, cpath, mt_tmpdir()) == 1);
		CHECK_STR_CONTAINS(out, "ENODEV: no CUDA driver (libcuda.so.1) found");
		free(out);
		free(b0);
		free(b1);
		free(b2);
		free(b3);
		mt_weights_free(&wt);
	}

	/* on the stand-in driver, the winner's cubin runs as the emulator's build of its source */
	char fake[1100], so[4096], log[1100], whash[17];
	snprintf(fake, sizeof fake, "%s/fakecuda.so", mt_tmpdir());
	snprintf(log, sizeof log, "%s/fakecuda.log", mt_tmpdir());
	rc = mt_sh(&out, "cc -std=gnu11 -O1 -shared -fPIC -I. tests/export/fakecuda.c "
		   "runtime/core/hash.c -o %s -ldl", fake);
	CHECKF(rc == 0, "fakecuda: exit %d: %s", rc, out);
	free(out);
	char rel[4096];
	REQUIRE_MSG(mta_emu_bwd_library(&p, &wv, rel, sizeof rel) == MTA_OK, mta_last_error());
	REQUIRE(realpath(rel, so)); /* the kernel cache may be a relative folder */
	REQUIRE(sscanf(cub[1], "%*s %16s", whash) == 1);
	snprintf(env, sizeof env, "MTATUNE_LIBCUDA=%s FAKECUDA_LOG=%s FAKECUDA_EMU='%s=%s' "
		 "MTX_BACKEND=cuda", fake, log, whash, so);
	static const int64_t cu[] = { 0, 1, 4, 4, 20, 40 };
	char pick[512];
	remove(log);
	grad_check(prog, env, &p, 2, 64, NULL, 0, pick, sizeof pick);
	snprintf(line, sizeof line, "2 %s\n", wspec);
	CHECKF(!strcmp(pick, line), "the backward pick was '%s', expected '%s'", pick, line);
	/* the launches: the saving forward (mode 0), the backward (1), the reduction (2) */
	struct mta_cuda_bwd_dims d;
	REQUIRE(mta_cuda_bwd_dims(&p, &wv, 2, 64, &d, NULL) == MTA_OK);
	CHECK(d.nb == 5); /* the winner's nb: the plan cuts 16 tasks into 5 ranges */
	/* (cub[1] is "SIZE HASH"; the log says "HASH SIZE") */
	char size[32];
	REQUIRE(sscanf(cub[1], "%31s", size) == 1);
	snprintf(want, sizeof want,
		 "load %s %s\nfunc %s %s\n"
		 "launch %s %u 1 1 %u %zu 0 2 64 %u\n"
		 "launch %s %u 1 1 %u %zu 1 2 64 %u\n"
		 "launch %s %u 1 1 %u %zu 2 2 64 %u\n",
		 whash, size, MTA_CUDA_BWD_KERNEL, whash,
		 MTA_CUDA_BWD_KERNEL, d.nb, d.threads, d.smem_bytes, d.nb,
		 MTA_CUDA_BWD_KERNEL, d.nb, d.threads, d.smem_bytes, d.nb,
		 MTA_CUDA_BWD_KERNEL, d.reduce_blocks, d.threads, d.smem_bytes, d.nb);
	REQUIRE(mt_sh(&out, "cat %s", log) == 0);
	CHECKF(out && !strcmp(out, want), "the stand-in driver saw:\n%s\nexpected:\n%s", out, want);
	free(out);
	/* packed documents: core's loop, each document through the library's training calls */
	grad_check(prog, env, &p, 1, 40, cu, 5, pick, sizeof pick);
	/* a launch the driver fails: its error named (cuGetErrorName) beside its text */
	char noemu[8192];
	snprintf(noemu, sizeof noemu, "MTATUNE_LIBCUDA=%s FAKECUDA_LOG=%s FAKECUDA_EMU='%s=%s' "
		 "MTX_BACKEND=cuda", fake, log, "0000000000000000", so);
	CHECK(mt_sh(&out, "%s %s grad %s/gcase.bin %s/gout.bin", noemu, prog, mt_tmpdir(),
		    mt_tmpdir()) == 1);
	CHECK_STR_CONTAINS(out, "CUDA_ERROR_INVALID_IMAGE: fakecuda: no emulator for this cubin "
			   "(CUDA error 98)");
	free(out);
	/* host tensors only (the library copies them across itself), and its header says so */
	CHECK(mt_sh(&out, "MTX_Q_DEVICE=1 %s %s grad %s/gcase.bin %s/gout.bin", env, prog,
		    mt_tmpdir(), mt_tmpdir()) == 1);
	CHECK_STR_CONTAINS(out, "EINVAL: mta_forward_train takes host tensors; tensor q says "
			   "device memory (library cub copies them to its device itself)");
	free(out);
	/* mta_attention asks the driver what a tensor marked device is (mta_cuda_ptr_check) */
	CHECK(mt_sh(&out, "MTX_Q_DEVICE=1 %s %s attn %s/gcase.bin %s/aout.bin f32", env, prog,
		    mt_tmpdir(), mt_tmpdir()) == 1);
	CHECK_STR_CONTAINS(out, "EINVAL: tensor q is not CUDA memory (its first byte at 0x");
	free(out);
	CHECK(mt_sh(&out, "grep -c 'backward cubins (mtatune.s runtime/cuda/bwd.c, shipped' "
		    "%s/mta.h", lib) == 0);
	free(out);
}

/*
 * Issue 17: an exported CUDA library ships the decode: the decode winners'
 * cubins per cache-length bucket (tune --op decode --backend cuda) and the
 * default decode variant's, from NVRTC at export time (or the database),
 * with their launch in the table; its caches run them through the shipped
 * runtime/cuda/decode_dev.c (the cache in device memory, a block per
 * sequence), choosing again as a cache's longest row enters another T
 * bucket. Without a driver the decode says so (MTA_ENODEV); on the stand-in
 * driver, whose launches run the emulator's builds of the same sources, a
 * prefill (the library's forward) then one token at a time equals the
 * float64 forward, and each bucket's cubin ran.
 */
TEST(export_cuda_ships_the_decode_and_runs_it_on_a_stand_in_driver)
{
	char db[1024], lib[1024], *out = NULL, want[4096], cub[4][64], hash[4][17];
	char spec[3][MTA_SPEC_MAX], fspec[MTA_SPEC_MAX];
	struct mta_problem p;
	struct mta_variant fv, dv[3];
	unsigned threads[3];
	size_t smem[3];
	mt_kcache();
	REQUIRE(mta_problem_from_key(SMALL, &p) == MTA_OK);
	snprintf(db, sizeof db, "%s/cudad.db", mt_tmpdir());
	mt_cuda_winner_db(db, SMALL);
	REQUIRE(mta_variant_default(&p, MTA_BACKEND_CUDA, &fv) == MTA_OK);
	REQUIRE(mta_variant_format(&fv, fspec, sizeof fspec) == MTA_OK);
	/* the decode winners at T=32 and T=128 (B=2), and the default decode variant */
	for (int i = 0; i < 3; i++) {
		REQUIRE(mta_variant_default_op(&p, MTA_BACKEND_CUDA, MTA_OP_DECODE, &dv[i]) ==
			MTA_OK);
		if (i == 0)
			dv[i].bk = 32, dv[i].warps = 2;
		if (i == 1)
			dv[i].bk = 64, dv[i].warps = 8;
		REQUIRE(mta_variant_check_op(&p, &dv[i], MTA_OP_DECODE) == MTA_OK);
		REQUIRE(mta_variant_format(&dv[i], spec[i], sizeof spec[i]) == MTA_OK);
		REQUIRE(mta_cuda_decode_dims(&p, &dv[i], &threads[i], &smem[i]) == MTA_OK);
	}
	CHECK(strcmp(spec[0], spec[2]) && strcmp(spec[1], spec[2]) && strcmp(spec[0], spec[1]));
	{
		struct mta_db *h;
		int64_t prob_id, var_id;
		REQUIRE(mta_db_open(db, 0, &h) == MTA_OK);
		REQUIRE(mta_db_problem_find(h, SMALL, &prob_id) == MTA_OK);
		for (int i = 0; i < 2; i++) {
			REQUIRE(mta_db_variant_upsert_op(h, prob_id, "decode", spec[i], NULL,
							 &var_id) == MTA_OK);
			struct mta_db_winner w = { .device_id = 1, .problem_id = prob_id,
						   .op = "decode", .variant_id = var_id,
						   .T = i ? 128 : 32, .B = 2, .time_ms = 1 };
			REQUIRE(mta_db_winner_set(h, &w) == MTA_OK);
		}
		mta_db_close(h);
	}
	snprintf(lib, sizeof lib, "%s/cud1", mt_tmpdir());
	int rc = mt_sh(&out, "%s export --db %s --arch sm_90 --out %s --name cud", mt_bin(), db,
		       lib);
	CHECKF(rc == 0, "export: exit %d: %s", rc, out);
	CHECK_STR_CONTAINS(out, "1 problems, 1 buckets, 4 kernels (sm_90 cubins: 0 from the "
			   "database, 4 compiled)");
	free(out);
	/* under the sanitizer: the export and NVRTC's cubins (as in the backward's test above) */
	const int whole = !mt_sanitized();
	if (whole)
		build(lib, "cud");

	/* the table: the decode cubins are NVRTC's own bytes for their sources, with their launch */
	nvrtc_cubin(&p, fspec, MTA_OP_FWD, cub[0], sizeof cub[0], NULL);
	for (int i = 0; i < 3; i++)
		nvrtc_cubin(&p, spec[i], MTA_OP_DECODE, cub[i + 1], sizeof cub[i + 1], NULL);
	for (int i = 0; i < 4; i++)
		REQUIRE(sscanf(cub[i], "%*s %16s", hash[i]) == 1);
	struct mta_cuda_launch g;
	REQUIRE(mta_cuda_geometry(&p, &fv, 1, 1, &g) == MTA_OK);
	snprintf(want, sizeof want,
		 "library cud cuda sm_90 1 4\n"
		 "kernel 0 %s %s %u %zu %d %d 0 0 0 %s\n"
		 "kernel 1 %s %s %u %zu 0 0 0 0 0 %s\n"
		 "kernel 2 %s %s %u %zu 0 0 0 0 0 %s\n"
		 "kernel 3 %s %s %u %zu 0 0 0 0 0 %s\n"
		 "problem %s 0 -1 3\n"
		 "bucket %s fwd 1024 1 0\n"
		 "bucket %s dec 32 2 1\n"
		 "bucket %s dec 128 2 2\n",
		 fspec, MTA_CUDA_KERNEL, g.block[0], g.smem_bytes, fv.bq, fv.hpb, cub[0],
		 spec[0], MTA_CUDA_DECODE_KERNEL, threads[0], smem[0], cub[1],
		 spec[1], MTA_CUDA_DECODE_KERNEL, threads[1], smem[1], cub[2],
		 spec[2], MTA_CUDA_DECODE_KERNEL, threads[2], smem[2], cub[3],
		 SMALL, SMALL, SMALL, SMALL);
	if (!whole) {
		printf("  sanitizer build: the export and the cubins checked; the library's build, "
		       "table and runs are the normal build's\n");
		return;
	}
	char table[1100];
	snprintf(table, sizeof table, "%s/dtable", mt_tmpdir());
	rc = mt_sh(&out, "cc -std=gnu11 -O1 -I%s/src tests/export/table.c %s/libcud.a -ldl -lm "
		   "-lpthread -o %s && %s", lib, lib, table, table);
	CHECKF(rc == 0, "table: exit %d: %s", rc, out);
	CHECKF(out && !strcmp(out, want), "the exported table:\n%s\nexpected:\n%s", out, want);
	free(out);

	const int64_t B = 2, T = 140;
	struct mta_tensor q, k, v;
	struct mta_weights wt;
	void *bq = mt_tensor(MTA_F32, B, T, p.H, p.D, 0, &q);
	void *bk = mt_tensor(MTA_F32, B, T, p.Hkv, p.D, 0, &k);
	void *bv = mt_tensor(MTA_F32, B, T, p.Hkv, p.D, 0, &v);
	mt_weights(&p, &wt);
	char prog[20480], pick[512], fake[1100], log[1100], so[4][4096], rel[4096];

	/* without a driver the decode says so */
	snprintf(prog, sizeof prog, "MTATUNE_LIBCUDA=%s/none.so MTX_BACKEND=cuda %s/prog_a",
		 mt_tmpdir(), mt_tmpdir());
	char cpath[1024];
	snprintf(cpath, sizeof cpath, "%s/dcase.bin", mt_tmpdir());
	write_case(cpath, &p, B, T, q.data, k.data, v.data, &wt);
	CHECK(mt_sh(&out, "MTX_DECODE_FROM=5 %s run %s %s/dout.bin", prog, cpath, mt_tmpdir()) == 1);
	CHECK_STR_CONTAINS(out, "ENODEV: no CUDA driver (libcuda.so.1) found");
	free(out);
	decode_from = "5";

	/* on the stand-in driver: the prefill's forward, then every token, as the reference */
	snprintf(fake, sizeof fake, "%s/fakecuda.so", mt_tmpdir());
	snprintf(log, sizeof log, "%s/fakecuda_d.log", mt_tmpdir());
	rc = mt_sh(&out, "cc -std=gnu11 -O1 -shared -fPIC -I. tests/export/fakecuda.c "
		   "runtime/core/hash.c -o %s -ldl", fake);
	CHECKF(rc == 0, "fakecuda: exit %d: %s", rc, out);
	free(out);
	REQUIRE_MSG(mta_emu_fwd_library(&p, &fv, rel, sizeof rel) == MTA_OK, mta_last_error());
	REQUIRE(realpath(rel, so[0]));
	for (int i = 0; i < 3; i++) {
		REQUIRE_MSG(mta_emu_decode_library(&p, &dv[i], rel, sizeof rel) == MTA_OK,
			    mta_last_error());
		REQUIRE(realpath(rel, so[i + 1]));
	}
	snprintf(prog, sizeof prog, "MTATUNE_LIBCUDA=%s FAKECUDA_LOG=%s FAKECUDA_EMU='%s=%s;%s=%s;"
		 "%s=%s;%s=%s' MTX_BACKEND=cuda %s/prog_a", fake, log, hash[0], so[0], hash[1],
		 so[1], hash[2], so[2], hash[3], so[3], mt_tmpdir());
	remove(log);
	double err = run_case(prog, &p, B, T, &q, &k, &v, &wt, pick, sizeof pick);
	decode_from = "";
	CHECKF(err < mta_tolerance(MTA_F32), "decode: relative L2 %.3g (%s)", err, pick);
	/* the T=32 winner for short rows, the T=128 winner for long ones, a block per sequence */
	REQUIRE(mt_sh(&out, "cat %s", log) == 0);
	for (int i = 0; i < 2; i++) {
		char line[256];
		snprintf(line, sizeof line, "launch %s %lld 1 1 %u %zu\n", MTA_CUDA_DECODE_KERNEL,
			 (long long)B, threads[i], smem[i]);
		CHECKF(out && strstr(out, line), "the stand-in driver saw no '%.*s':\n%.2000s",
		       (int)strlen(line) - 1, line, out);
		snprintf(line, sizeof line, "load %s ", hash[i + 1]);
		CHECKF(out && strstr(out, line), "decode cubin %d was not loaded", i);
	}
	free(out);
	mt_weights_free(&wt);
	free(bq);
	free(bk);
	free(bv);
}

/*
 * A database whose one CPU device (named name, arch arch) has the winner
 * spec for problem key at T=64: what a shard from anywhere can carry
 * through `db merge`. spec NULL: the CPU default variant of SMALL; "@TEXT":
 * that spec with its "bq=" written as TEXT.
 */
static void hostile_db(const char *db, const char *name, const char *arch, const char *key,
		       const char *spec)
{
	struct mta_db *h;
	struct mta_db_device dev = { .backend = "cpu", .name = name, .arch = arch,
				     .compiler = "cc 12", .cores = 2 };
	struct mta_problem p;
	struct mta_variant v;
	char def[MTA_SPEC_MAX];
	int64_t dev_id, prob_id, var_id;
	REQUIRE(mta_problem_from_key(SMALL, &p) == MTA_OK);
	REQUIRE(mta_variant_default(&p, MTA_BACKEND_CPU, &v) == MTA_OK);
	REQUIRE(mta_variant_format(&v, def, sizeof def) == MTA_OK);
	REQUIRE(mta_db_open(db, 0, &h) == MTA_OK);
	REQUIRE(mta_db_device_upsert(h, &dev, &dev_id) == MTA_OK);
	REQUIRE(mta_db_problem_upsert(h, key, &prob_id) == MTA_OK);
	/* "@TEXT": the default spec with "bq=" written as TEXT (a non-canonical form) */
	char alt[2 * MTA_SPEC_MAX];
	const char *bq = strstr(def, "bq=");
	if (spec && spec[0] == '@' && bq) {
		snprintf(alt, sizeof alt, "%.*s%s%s", (int)(bq - def), def, spec + 1, bq + 3);
		spec = alt;
	}
	REQUIRE(mta_db_variant_upsert(h, prob_id, spec ? spec : def, "", &var_id) == MTA_OK);
	struct mta_db_winner w = { .device_id = dev_id, .problem_id = prob_id,
				   .variant_id = var_id, .T = 64, .B = 1, .time_ms = 0.1 };
	REQUIRE(mta_db_winner_set(h, &w) == MTA_OK);
	mta_db_close(h);
}

/*
 * Issue 18: a device name read from the database was written unescaped into
 * the exported Makefile and C sources: a newline added Makefile rules, a
 * "*" "/" added C code (here a constructor that would run in every program
 * linking the library). Text with control characters is refused; the rest is
 * escaped for its context, and the tree builds with no extra rule or symbol.
 * A spec or key stored in a non-canonical form is refused, not exported into
 * a library that does not compile.
 */
TEST(export_writes_no_untrusted_text_into_code)
{
	char db[1024], lib[1024], *out = NULL;
	static const char evil[] =
		"Evil */ __attribute__((constructor)) static void mtx_pwned(void) { } /* \" \\ "
		"?\?/ $(shell touch PWNED) # \\";
	snprintf(db, sizeof db, "%s/evil.db", mt_tmpdir());
	hostile_db(db, evil, "x86 */ int mtx_arch_pwned; /*", SMALL, NULL);
	snprintf(lib, sizeof lib, "%s/evil", mt_tmpdir());
	int rc = mt_sh(&out, "%s export --db %s --out %s --name ev", mt_bin(), db, lib);
	CHECKF(rc == 0, "export: exit %d: %s", rc, out);
	free(out);
	/*
	 * the tree builds, with no symbol or rule the database asked for, and the
	 * name is there, escaped for each context: the device string reads back
	 * as it was (make, nm and the program: no sanitized code, so the normal
	 * build's; the sanitizer build goes on to the refusals)
	 */
	if (!mt_sanitized()) {
		rc = mt_sh(&out, "cd %s && " MAKE " -s && nm libev.a libev.so | grep -c pwned; "
			   MAKE " -n -p | grep -c -e PWNED -e mtx_pwned; ls", lib);
		CHECKF(out && !strncmp(out, "0\n0\n", 4), "make or nm found the injected code:\n%s",
		       out);
		CHECK(out && !strstr(out, "PWNED"));
		free(out);
		/* and its sources compile clean under -Wall -Werror (a "/" "*" left in a
		 * comment was a -Wcomment error for a project that vendors them) */
		rc = mt_sh(&out, "cd %s && for f in src/*.c; do cc -std=gnu11 -Wall -Wextra "
			   "-Werror -Wno-unused-parameter -fsyntax-only -Isrc -I. $f || exit 1; done",
			   lib);
		CHECKF(rc == 0, "the exported sources under -Wall -Werror: %s", out);
		free(out);
		rc = mt_sh(&out, "cat > %s/dev.c <<'EOF'\n#include <stdio.h>\n"
			   "struct mtx_library { const char *name, *backend, *device; };\n"
			   "extern const struct mtx_library mtx_library;\n"
			   "int main(void) { fputs(mtx_library.device, stdout); return 0; }\nEOF\n"
			   "cc -o %s/dev %s/dev.c %s/libev.a -ldl -lm -lpthread && %s/dev",
			   mt_tmpdir(), mt_tmpdir(), mt_tmpdir(), lib, mt_tmpdir());
		CHECKF(rc == 0 && out && !strcmp(out, evil), "device string: '%s'", out);
		free(out);
	}

	/* control characters: refused, nothing written */
	static const struct { const char *name, *key, *spec, *msg; } bad[] = {
		{ "cpu\nall: pwn\npwn:\n\ttouch PWNED\n", SMALL, NULL,
		  "device name 'cpu\\nall: pwn\\npwn:\\n\\ttouch PWNED\\n' holds a control character" },
		{ "cpu\x1b[2J", SMALL, NULL, "'cpu\\x1b[2J' holds a control character" },
		{ "cpu", SMALL, "@bq=\n+", "variant spec 'cpu:v2,bq=\\n+" },
		{ "cpu", SMALL, "@bq=+", "bq='+16' is not a number" },
		{ "cpu", SMALL, "@bq=0", "non-canonical" },
		{ "cpu", "h2kv1d8-pre2x3-hpre-post2x3-hc2-both-gn-gate", NULL, "non-canonical" },
	};
	for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
		snprintf(db, sizeof db, "%s/bad%zu.db", mt_tmpdir(), i);
		hostile_db(db, bad[i].name, "x86_64", bad[i].key, bad[i].spec);
		snprintf(lib, sizeof lib, "%s/bad%zu", mt_tmpdir(), i);
		rc = mt_sh(&out, "%s export --db %s --out %s", mt_bin(), db, lib);
		CHECKF(rc == 3, "case %zu: exit %d: %s", i, rc, out);
		CHECK_STR_CONTAINS(out, bad[i].msg);
		CHECK(out && !strchr(out, '\x1b'));
		free(out);
		CHECKF(access(lib, F_OK) != 0, "case %zu: %s was created", i, lib);
	}
}

/* Names in dir (sorted, one per line, "." entries excluded), malloc'd. */
static char *listing(const char *dir)
{
	char *out = NULL;
	mt_sh(&out, "cd %s && find . | sort", dir);
	return out;
}

/*
 * Issue 18: export --out wrote into any existing folder, and a failed export
 * left half a folder. An existing folder must be empty or an earlier export
 * (its marker and manifest, .mtatune-export); then only the files that export
 * wrote are replaced. Files are written into a temporary folder beside it
 * and moved in only when complete.
 */
TEST(export_out_folder_is_ours_or_refused_and_never_half_written)
{
	char db[1024], dir[1024], path[1200], *out = NULL;
	snprintf(db, sizeof db, "%s/t.db", mt_tmpdir());
	hostile_db(db, "a plain cpu", "x86_64", SMALL, NULL);
	/* a folder of someone else's files */
	snprintf(dir, sizeof dir, "%s/mine", mt_tmpdir());
	REQUIRE(mkdir(dir, 0755) == 0);
	snprintf(path, sizeof path, "%s/Makefile", dir);
	FILE *f = fopen(path, "w");
	REQUIRE(f);
	fputs("my own Makefile\n", f);
	fclose(f);
	int rc = mt_sh(&out, "%s export --db %s --out %s", mt_bin(), db, dir);
	CHECKF(rc == 1, "export into a foreign folder: exit %d: %s", rc, out);
	CHECK_STR_CONTAINS(out, "is not empty and not an earlier mtatune export");
	free(out);
	CHECK(mt_sh(&out, "cat %s", path) == 0 && !strcmp(out, "my own Makefile\n"));
	free(out);
	/* special files */
	char fifo[1100];
	snprintf(fifo, sizeof fifo, "%s/fifo", mt_tmpdir());
	REQUIRE(mkfifo(fifo, 0600) == 0);
	rc = mt_sh(&out, "timeout 20 %s export --db %s --out %s", mt_bin(), db, fifo);
	CHECKF(rc == 1, "export --out FIFO: exit %d: %s", rc, out);
	CHECK_STR_CONTAINS(out, "not a folder");
	free(out);

	/* an empty folder is fine; a second export replaces only its own files */
	snprintf(dir, sizeof dir, "%s/lib", mt_tmpdir());
	REQUIRE(mkdir(dir, 0755) == 0);
	rc = mt_sh(&out, "%s export --db %s --out %s --problem %s --problem h4kv4d8-both-f32",
		   mt_bin(), db, dir, SMALL);
	CHECKF(rc == 0, "export: exit %d: %s", rc, out);
	free(out);
	snprintf(path, sizeof path, "%s/.mtatune-export", dir);
	CHECK(access(path, F_OK) == 0);
	char *first = listing(dir);
	CHECK(first && strstr(first, "./src/k_001.c"));
	snprintf(path, sizeof path, "%s/notes.txt", dir);
	f = fopen(path, "w");
	REQUIRE(f);
	fputs("mine\n", f);
	fclose(f);
	rc = mt_sh(&out, "%s export --db %s --out %s", mt_bin(), db, dir);
	CHECKF(rc == 0, "export again: exit %d: %s", rc, out);
	free(out);
	char *second = listing(dir);
	CHECK(second && strstr(second, "./notes.txt") && strstr(second, "./src/k_000.c") &&
	      !strstr(second, "./src/k_001.c"));
	free(first);
	/* a folder where a file of the export goes: refused before anything is
	 * replaced (the move failed half way, the folder left part old, part new) */
	rc = mt_sh(&out, "rm %s/Makefile && mkdir %s/Makefile && %s export --db %s --out %s "
		   "--problem %s --problem h4kv4d8-both-f32", dir, dir, mt_bin(), db, dir, SMALL);
	CHECKF(rc == 1, "export onto a folder in a file's place: exit %d: %s", rc, out);
	CHECK_STR_CONTAINS(out, "cannot take Makefile (a folder is in its place): nothing was "
			   "replaced");
	free(out);
	char *third = listing(dir);
	CHECKF(third && second && !strcmp(third, second), "the folder changed:\n%s\nwas:\n%s",
	       third, second);
	free(third);
	free(second);
	CHECK(mt_sh(&out, "rmdir %s/Makefile && %s export --db %s --out %s", dir, mt_bin(), db,
		    dir) == 0);
	free(out);
	/* a forged manifest naming files outside the folder removes nothing there */
	char victim[1100];
	snprintf(victim, sizeof victim, "%s/victim", mt_tmpdir());
	f = fopen(victim, "w");
	REQUIRE(f);
	fclose(f);
	REQUIRE(symlink(mt_tmpdir(), (snprintf(path, sizeof path, "%s/up", dir), path)) == 0);
	rc = mt_sh(&out, "printf 'mtatune export manifest 1\\n../victim\\nup/victim\\n%s/victim\\n' "
		   ">> %s/.mtatune-export && %s export --db %s --out %s", mt_tmpdir(), dir,
		   mt_bin(), db, dir);
	free(out);
	CHECK(access(victim, F_OK) == 0);

	/* a failure half way (a file size limit) leaves neither a folder nor a temporary */
	snprintf(dir, sizeof dir, "%s/half", mt_tmpdir());
	rc = mt_sh(&out, "trap '' XFSZ; ulimit -f 16; %s export --db %s --out %s", mt_bin(), db,
		   dir);
	CHECKF(rc == 1, "export with a file size limit: exit %d: %s", rc, out);
	free(out);
	CHECK(access(dir, F_OK) != 0);
	rc = mt_sh(&out, "ls -a %s | grep -c half", mt_tmpdir());
	CHECKF(out && atoi(out) == 0, "left behind: %s", out);
	free(out);
}

/*
 * Issue 18: two device rows that share a name (the compiler was upgraded, or
 * one tune ran without a compiler identity) could not be told apart by
 * `export --device NAME`. A number picks the device by id (`mtatune list
 * devices` shows them); a shared name is refused listing each with its id
 * and what differs.
 */
TEST(export_device_by_id_when_names_are_shared)
{
	char db[1024], *out = NULL;
	snprintf(db, sizeof db, "%s/twins.db", mt_tmpdir());
	hostile_db(db, "twin cpu", "x86_64", SMALL, NULL);
	struct mta_db *h;
	struct mta_db_device dev = { .backend = "cpu", .name = "twin cpu", .arch = "x86_64",
				     .compiler = "cc 13", .cores = 2 };
	int64_t dev_id, prob_id, var_id;
	REQUIRE(mta_db_open(db, 0, &h) == MTA_OK);
	REQUIRE(mta_db_device_upsert(h, &dev, &dev_id) == MTA_OK);
	REQUIRE(mta_db_problem_upsert(h, SMALL, &prob_id) == MTA_OK);
	REQUIRE(mta_db_variant_upsert(h, prob_id, OTHER_SPEC, "", &var_id) == MTA_OK);
	struct mta_db_winner w = { .device_id = dev_id, .problem_id = prob_id,
				   .variant_id = var_id, .T = 64, .B = 1, .time_ms = 0.1 };
	REQUIRE(mta_db_winner_set(h, &w) == MTA_OK);
	mta_db_close(h);
	REQUIRE(dev_id == 2);

	int rc = mt_sh(&out, "%s export --db %s --out %s/a --device 'twin cpu'", mt_bin(), db,
		       mt_tmpdir());
	CHECKF(rc == 2, "export --device NAME of two devices: exit %d: %s", rc, out);
	CHECK_STR_CONTAINS(out, "2 devices named 'twin cpu'");
	CHECK_STR_CONTAINS(out, "#1 'twin cpu' (cpu x86_64, compiler 'cc 12'");
	CHECK_STR_CONTAINS(out, "#2 'twin cpu' (cpu x86_64, compiler 'cc 13'");
	CHECK_STR_CONTAINS(out, "--device ID");
	free(out);
	rc = mt_sh(&out, "%s export --db %s --out %s/b --device 2 && grep -c '%s' %s/b/src/mta_table.c",
		   mt_bin(), db, mt_tmpdir(), OTHER_SPEC, mt_tmpdir());
	CHECKF(rc == 0, "export --device 2: exit %d: %s", rc, out);
	CHECK_STR_CONTAINS(out, "on twin cpu: 1 problems, 1 buckets, 2 kernels");
	free(out);
	rc = mt_sh(&out, "%s export --db %s --out %s/c --device 7", mt_bin(), db, mt_tmpdir());
	CHECKF(rc == 3, "export --device 7: exit %d: %s", rc, out);
	CHECK_STR_CONTAINS(out, "has no device 7");
	CHECK_STR_CONTAINS(out, "#2 'twin cpu'");
	free(out);
}

/*
 * A CPU library's decode kernel (src/d_<i>.c) is made of the problem's
 * decode winner of the largest T bucket (tune --op decode), else the
 * default decode variant; a decode winner that is no decode variant (it
 * changes a tunable decode does not read) is refused, naming it.
 */
TEST(export_ships_the_decode_winner_of_the_largest_bucket)
{
	char db[1024], lib[1024], w64[MTA_SPEC_MAX], w256[MTA_SPEC_MAX], *out = NULL;
	struct mta_problem p;
	struct mta_variant v;
	struct mta_db *h;
	struct mta_db_device dev;
	int64_t dev_id, prob_id, id64, id256;

	snprintf(db, sizeof db, "%s/dw.db", mt_tmpdir());
	REQUIRE(mta_problem_from_key(SMALL, &p) == MTA_OK);
	REQUIRE(mta_variant_default_op(&p, MTA_BACKEND_CPU, MTA_OP_DECODE, &v) == MTA_OK);
	v.bk = 64;
	REQUIRE(mta_variant_format(&v, w64, sizeof w64) == MTA_OK);
	v.bk = 256;
	v.threads = 1;
	REQUIRE(mta_variant_format(&v, w256, sizeof w256) == MTA_OK);
	REQUIRE(mta_db_open(db, 0, &h) == MTA_OK);
	mta_device_cpu(&dev);
	REQUIRE(mta_db_device_upsert(h, &dev, &dev_id) == MTA_OK);
	REQUIRE(mta_db_problem_upsert(h, SMALL, &prob_id) == MTA_OK);
	REQUIRE(mta_db_variant_upsert_op(h, prob_id, "decode", w64, NULL, &id64) == MTA_OK);
	REQUIRE(mta_db_variant_upsert_op(h, prob_id, "decode", w256, NULL, &id256) == MTA_OK);
	/* bk=64 wins at 4096 tokens, bk=256 with one thread at 512: the library takes bk=64 */
	struct mta_db_winner a = { .device_id = dev_id, .problem_id = prob_id, .op = "decode",
				   .variant_id = id64, .T = 4096, .B = 1, .time_ms = 1 };
	struct mta_db_winner b = a;
	b.variant_id = id256;
	b.T = 512;
	REQUIRE(mta_db_winner_set(h, &a) == MTA_OK && mta_db_winner_set(h, &b) == MTA_OK);
	mta_db_close(h);
	snprintf(lib, sizeof lib, "%s/dwlib", mt_tmpdir());
	int rc = mt_sh(&out, "%s export --db %s --out %s --name dw", mt_bin(), db, lib);
	CHECKF(rc == 0, "export: exit %d: %s", rc, out);
	free(out);
	rc = mt_sh(&out, "grep -c -e '^#define K_BK 64$' -e '^#define K_THR 0$' -e 'decode winner "
		   "%s' %s/src/d_000.c", w64, lib);
	CHECKF(rc == 0 && out && atoi(out) == 3, "src/d_000.c: %s", out);
	free(out);
	/*
	 * the library builds, and its decode (key blocks of 64: rows of 70 take
	 * two) equals the forward; not under the sanitizer, where none of it
	 * would be sanitized code (the normal build runs it)
	 */
	if (!mt_sanitized()) {
		build(lib, "dw");
		char prog[1024], pick[512];
		struct mta_tensor q, k, vt;
		struct mta_weights wt;
		void *bq = mt_tensor(MTA_F32, 1, 70, p.H, p.D, 0, &q);
		void *bk = mt_tensor(MTA_F32, 1, 70, p.Hkv, p.D, 0, &k);
		void *bv = mt_tensor(MTA_F32, 1, 70, p.Hkv, p.D, 0, &vt);
		mt_weights(&p, &wt);
		snprintf(prog, sizeof prog, "%s/prog_a", mt_tmpdir());
		decode_from = "5";
		double err = run_case(prog, &p, 1, 70, &q, &k, &vt, &wt, pick, sizeof pick);
		decode_from = "";
		CHECKF(err < mta_tolerance(MTA_F32), "decode: relative L2 %.3g", err);
		mt_weights_free(&wt);
		free(bq);
		free(bk);
		free(bv);
	}
	/* a decode winner with a tunable decode does not read: refused, naming it */
	v.vec = 8;
	char bad[MTA_SPEC_MAX], sql[1024];
	REQUIRE(mta_variant_format(&v, bad, sizeof bad) == MTA_OK);
	snprintf(sql, sizeof sql, "UPDATE variants SET spec = '%s' WHERE id = %lld", bad,
		 (long long)id64);
	sqlite3 *s = NULL;
	REQUIRE(sqlite3_open(db, &s) == SQLITE_OK);
	CHECK(sqlite3_exec(s, sql, NULL, NULL, NULL) == SQLITE_OK);
	sqlite3_close(s);
	rc = mt_sh(&out, "%s export --db %s --out %s --name dw", mt_bin(), db, lib);
	CHECK(rc != 0);
	CHECK_STR_CONTAINS(out, "the decode winner of " SMALL);
	CHECK_STR_CONTAINS(out, "vec must keep the default's value 16 (got 8)");
	free(out);
}

/*
 * A problem with more winners than 256 (21 T buckets x 14 B buckets, as a
 * sweep makes): the tool, the database's own lookup and the exported
 * library pick the same winner for the last bucket. They looked at the
 * first 256 buckets only (the smallest), and the library then chose another
 * kernel than the tool.
 */
TEST(export_picks_among_every_bucket_as_the_tool)
{
	char db[1024], lib[1024], *out = NULL;
	struct mta_problem p;
	struct mta_variant dv;
	char dspec[MTA_SPEC_MAX];
	struct mta_db *h;
	struct mta_db_device dev;
	int64_t dev_id, prob_id, var[2];
	REQUIRE(mta_problem_from_key(SMALL, &p) == MTA_OK);
	REQUIRE(mta_variant_default(&p, MTA_BACKEND_CPU, &dv) == MTA_OK);
	REQUIRE(mta_variant_format(&dv, dspec, sizeof dspec) == MTA_OK);
	snprintf(db, sizeof db, "%s/many.db", mt_tmpdir());
	snprintf(lib, sizeof lib, "%s/many", mt_tmpdir());
	unlink(db);
	REQUIRE(mta_db_open(db, 0, &h) == MTA_OK);
	mta_device_cpu(&dev);
	REQUIRE(mta_db_device_upsert(h, &dev, &dev_id) == MTA_OK);
	REQUIRE(mta_db_problem_upsert(h, SMALL, &prob_id) == MTA_OK);
	REQUIRE(mta_db_variant_upsert(h, prob_id, dspec, "", &var[0]) == MTA_OK);
	REQUIRE(mta_db_variant_upsert(h, prob_id, OTHER_SPEC, "", &var[1]) == MTA_OK);
	REQUIRE(mta_db_begin(h) == MTA_OK);
	for (int tb = 0; tb <= 20; tb++)
		for (int bb = 0; bb <= 13; bb++) {
			struct mta_db_winner w = { .device_id = dev_id, .problem_id = prob_id,
						   .variant_id = var[tb == 20 && bb == 0],
						   .T = 1ll << tb, .B = 1ll << bb, .time_ms = 1 };
			REQUIRE(mta_db_winner_set(h, &w) == MTA_OK);
		}
	REQUIRE(mta_db_commit(h) == MTA_OK);
	struct mta_db_winner got;
	REQUIRE(mta_db_winner_get(h, dev_id, SMALL, "fwd", 1, 1 << 20, &got) == MTA_OK);
	CHECKF(got.variant_id == var[1] && got.exact, "the database's lookup: %s (bucket %lld)",
	       got.spec, (long long)got.t_bucket);
	mta_db_close(h);
	CHECK(mt_sh(&out, "%s best --db %s --problem %s --seq %d", mt_bin(), db, SMALL,
		    1 << 20) == 0);
	CHECK_STR_CONTAINS(out, OTHER_SPEC);
	free(out);
	CHECK(mt_sh(&out, "%s export --db %s --out %s --name many", mt_bin(), db, lib) == 0);
	free(out);
	if (mt_sanitized())
		return; /* the library's programs: the normal build's */
	build(lib, "many");
	CHECK(mt_sh(&out, "%s/prog_a pick %s %d", mt_tmpdir(), SMALL, 1 << 20) == 0);
	CHECK_STR_CONTAINS(out, OTHER_SPEC);
	free(out);
	/* the operations the tool's pick takes: fwd and decode as well as bwd */
	CHECK(mt_sh(&out, "%s/prog_a pick %s %d fwd", mt_tmpdir(), SMALL, 1 << 20) == 0);
	CHECK_STR_CONTAINS(out, OTHER_SPEC);
	free(out);
	int st = mt_sh(&out, "%s/prog_a pick %s 64 decode", mt_tmpdir(), SMALL);
	CHECKF(st == 0 ? strstr(out, ":") != NULL : strstr(out, "no decode kernel") != NULL,
	       "decode: exit %d: %s", st, out);
	free(out);
	CHECK(mt_sh(&out, "%s/prog_a pick %s 64 train", mt_tmpdir(), SMALL) == 1);
	CHECK_STR_CONTAINS(out, "expected fwd, bwd or decode");
	free(out);
}
