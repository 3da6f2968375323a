/* test_cli_run.c: the mtatune binary: help, version, `run` on golden cases, refusals. */
#include "tests/harness.h"
#include "tests/fixtures.h"
#include "tuner/io/inputs.h"

#include <unistd.h>

#define I(x) ((int64_t)(x))

TEST(cli_help_version_and_unknown_commands)
{
	static const struct { const char *args; int code; const char *msg; } t[] = {
		{ "--help", 0, "run        run one forward" },
		{ "help", 0, "Commands:" },
		{ "help run", 0, "--inputs DIR" },
		{ "run --help", 0, "--pad-key P" },
		{ "run -h", 0, "ref    the float64 reference" },
		{ "--version", 0, "mtatune 0." },
		{ "", 2, "usage: mtatune" },
		{ "frobnicate", 2, "'frobnicate' is not a command" },
		{ "help frobnicate", 2, "'frobnicate' is not a command" },
		{ "--frob", 2, "unknown option '--frob'" },
	};
	for (size_t i = 0; i < sizeof t / sizeof t[0]; i++) {
		char *out = NULL;
		int code = mt_sh(&out, "%s %s", mt_bin(), t[i].args);
		CHECKF(code == t[i].code, "mtatune %s: exit %d, expected %d; output:\n%s", t[i].args,
		       code, t[i].code, out ? out : "");
		CHECK_STR_CONTAINS(out, t[i].msg);
		free(out);
	}
}

/* Load dir as the CLI would, for the key and the reference on the same inputs. */
static int load(const char *dir, const char *pad, int layer_id, int dtype, struct mta_inputs *in)
{
	struct mta_input_options opt;
	mta_input_options_init(&opt);
	mta_pad_parse(pad, &opt.pad);
	opt.layer_id = layer_id;
	opt.dtype = dtype;
	return mta_inputs_load(dir, &opt, in);
}

/* Read a .npy as float64 [B,T,H,D]; NULL (and a failure) if it is not one. */
static double *read_out(const char *path, int64_t *shape, size_t *n)
{
	struct mta_npy a;
	if (mta_npy_read(path, &a) || mta_npy_convert(&a, MTA_F64) || a.ndim != 4) {
		mt_fail(__FILE__, __LINE__, "%s: %s", path, mta_last_error());
		mta_npy_free(&a);
		return NULL;
	}
	memcpy(shape, a.shape, 4 * sizeof *shape);
	*n = a.count;
	return a.data; /* the caller frees */
}

TEST(cli_run_golden_cases)
{
	char **cases = mt_golden_cases();
	REQUIRE(cases && cases[0]);
	for (int c = 0; cases[c]; c++) {
		char dir[1024], pad[16], lid[32] = "", o[700], e[1100];
		int layer_id;
		snprintf(dir, sizeof dir, "%s/%s", mt_golden_dir(), cases[c]);
		REQUIRE(mt_golden_config(dir, pad, sizeof pad, &layer_id) == 0);
		if (layer_id >= 0)
			snprintf(lid, sizeof lid, "--layer-id %d", layer_id);
		snprintf(o, sizeof o, "%s/%s.npy", mt_tmpdir(), cases[c]);
		snprintf(e, sizeof e, "%s/expected.npy", dir);
		char *out = NULL;
		int code = mt_sh(&out, "%s run --inputs '%s' --out '%s' --pad-key %s %s --expected '%s'",
				 mt_bin(), dir, o, pad, lid, e);
		CHECKF(code == 0, "%s: exit %d:\n%s", cases[c], code, out);
		CHECK_STR_CONTAINS(out, "rel_l2 ");
		struct mta_inputs in;
		char key[MTA_KEY_MAX];
		REQUIRE(load(dir, pad, layer_id, MTA_F32, &in) == MTA_OK);
		REQUIRE(mta_problem_key(&in.problem, key, sizeof key) == MTA_OK);
		CHECK_STR_CONTAINS(out, key);
		free(out);

		struct mta_npy got;
		REQUIRE(mta_npy_read(o, &got) == MTA_OK);
		CHECK_EQ_INT(got.dtype, MTA_F32);
		int64_t shape[4];
		size_t n;
		double *want = read_out(e, shape, &n);
		REQUIRE(want);
		CHECK(got.ndim == 4 && !memcmp(got.shape, shape, sizeof shape));
		CHECK(shape[0] == in.B && shape[1] == in.T && shape[2] == in.problem.H);
		double err = got.count == n ? mt_rel_l2_f32(got.data, want, n) : INFINITY;
		CHECKF(err < 1e-6, "%s: relative L2 error %g", cases[c], err);
		free(want);
		mta_npy_free(&got);
		mta_inputs_free(&in);
	}
	mt_golden_free(cases);
}

/* With --dtype bf16 / f16 the CLI computes on rounded q, k, v, like the reference. */
TEST(cli_run_rounded_dtypes)
{
	static const struct { const char *name; int dtype; } t[] = {
		{ "bf16", MTA_BF16 }, { "f16", MTA_F16 },
	};
	char dir[1024], o[700], e[1100];
	snprintf(dir, sizeof dir, "%s/dev-full", mt_golden_dir());
	snprintf(e, sizeof e, "%s/expected.npy", dir);
	for (int i = 0; i < 2; i++) {
		snprintf(o, sizeof o, "%s/o-%s.npy", mt_tmpdir(), t[i].name);
		char *out = NULL;
		int code = mt_sh(&out, "%s run --inputs '%s' --out '%s' --dtype %s", mt_bin(), dir, o,
				 t[i].name);
		CHECKF(code == 0, "exit %d:\n%s", code, out);
		CHECK_STR_CONTAINS(out, t[i].name);
		free(out);
		struct mta_inputs in;
		struct mta_weights w;
		REQUIRE(load(dir, "both", -1, t[i].dtype, &in) == MTA_OK);
		mta_inputs_weights(&in, &w);
		int64_t shape[4];
		size_t n;
		double *got = read_out(o, shape, &n), *f32 = read_out(e, shape, &n);
		REQUIRE(got && f32);
		double *ref = malloc(n * sizeof *ref);
		REQUIRE(mta_reference(&in.problem, &in.q, &in.k, &in.v, &w, ref) == MTA_OK);
		double err = mt_rel_l2_f64(got, ref, n), err32 = mt_rel_l2_f64(got, f32, n);
		CHECKF(err < 1e-6, "%s: relative L2 error %g against the reference on rounded inputs",
		       t[i].name, err);
		CHECKF(err32 < 1e-2 && err32 > 0, "%s: relative L2 error %g against float32 inputs",
		       t[i].name, err32);
		free(got);
		free(f32);
		free(ref);
		mta_inputs_free(&in);
	}
}

/* --expected: a wrong expected output fails with 4, a wrong shape with 3. */
TEST(cli_run_verification)
{
	char dir[1024], o[700], e[700], e0[1100];
	snprintf(dir, sizeof dir, "%s/dev-kq-pre", mt_golden_dir());
	snprintf(e0, sizeof e0, "%s/expected.npy", dir);
	snprintf(o, sizeof o, "%s/o.npy", mt_tmpdir());
	snprintf(e, sizeof e, "%s/wrong.npy", mt_tmpdir());
	int64_t shape[4];
	size_t n;
	double *x = read_out(e0, shape, &n);
	REQUIRE(x);
	for (size_t i = 0; i < n; i++)
		x[i] *= 1.001;
	REQUIRE(mta_npy_write(e, MTA_F64, 4, shape, x) == MTA_OK);
	char *out = NULL;
	int code = mt_sh(&out, "%s run --inputs '%s' --out '%s' --expected '%s'", mt_bin(), dir, o, e);
	CHECK_EQ_INT(code, 4);
	CHECK_STR_CONTAINS(out, "above the tolerance 1e-05");
	CHECK_STR_CONTAINS(out, "FAIL");
	free(out);
	code = mt_sh(&out, "%s run --inputs '%s' --out '%s' --expected '%s' --tol 0.01", mt_bin(),
		     dir, o, e);
	CHECKF(code == 0, "exit %d:\n%s", code, out);
	free(out);
	REQUIRE(mta_npy_write(e, MTA_F64, 3, shape, x) == MTA_OK);
	code = mt_sh(&out, "%s run --inputs '%s' --out '%s' --expected '%s'", mt_bin(), dir, o, e);
	CHECK_EQ_INT(code, 3);
	CHECK_STR_CONTAINS(out, "wrong.npy has shape [1,29,2], but the output is [1,29,2,16]");
	free(out);
	free(x);
}

/* Each bad invocation or folder: exit status and message; no output written. */
TEST(cli_run_refuses_bad_inputs)
{
	struct file { const char *name; int ndim; int64_t s[4]; };
	static const struct {
		struct file add[2];
		const char *rm, *args;
		int code;
		const char *msg;
	} t[] = {
		{ .args = "--frob", .code = 2, .msg = "unknown option '--frob'" },
		{ .args = "--inputs", .code = 2, .msg = "option '--inputs' needs an argument" },
		{ .args = "extra", .code = 2, .msg = "unexpected argument 'extra'" },
		{ .args = "--backend gpu", .code = 2, .msg = "unknown backend 'gpu'; available: ref" },
		{ .args = "--pad-key middle", .code = 2, .msg = "unknown pad_key 'middle'" },
		{ .args = "--dtype f64", .code = 2, .msg = "unknown element type 'f64'" },
		{ .args = "--layer-id -1", .code = 2, .msg = "--layer-id '-1' is not an integer" },
		{ .args = "--scale 0", .code = 2, .msg = "--scale '0' is not a positive" },
		{ .args = "--tol x", .code = 2, .msg = "--tol 'x' is not a positive number" },
		{ .rm = "q", .code = 3, .msg = "q.npy: missing" },
		{ { { "q", 3, { 1, 5, 4 } } }, .code = 3, .msg = "q.npy has shape [1,5,4]; expected [B,T,H,D]" },
		{ { { "kq_pre", 4, { 3, 1, 2, 3 } } }, .code = 3, .msg = "kq_pre.npy has H=3 but q.npy has H=4" },
		{ { { "gn_weight", 1, { 7 } } }, .code = 3, .msg = "gn_weight.npy has D=7 but q.npy has D=8" },
		{ { { "gate_w", 2, { 1, 8 } } }, .code = 3, .msg = "gate_w.npy is present but gate_b.npy is not" },
		{ { { "kq_pre", 4, { 4, 1, 2, 4 } } }, .code = 3, .msg = "kq_pre.npy has an even ck=4" },
		{ { { "kq_pre", 4, { 4, 1, 2, 4 } } }, .args = "--pad-key left", .code = 0, .msg = "-pre2x4-left-f32" },
		{ .args = "--layer-id 1", .code = 3, .msg = "there is no gn_weight.npy" },
		{ { { "gn_weight", 1, { 8 } } }, .args = "--layer-id 1 --scale 0.25", .code = 0, .msg = "-both-gnr-s0.25-f32" },
	};
	for (size_t i = 0; i < sizeof t / sizeof t[0]; i++) {
		char sub[32], path[700], o[700];
		snprintf(sub, sizeof sub, "c%zu", i);
		const char *dir = mt_small_case(sub);
		for (int a = 0; a < 2; a++)
			if (t[i].add[a].name) {
				const struct file *f = &t[i].add[a];
				mt_put_npy(dir, f->name, f->ndim, f->s[0], f->s[1], f->s[2], f->s[3]);
			}
		if (t[i].rm) {
			snprintf(path, sizeof path, "%s/%s.npy", dir, t[i].rm);
			unlink(path);
		}
		snprintf(o, sizeof o, "%s/o%zu.npy", mt_tmpdir(), i);
		char *out = NULL;
		int code = mt_sh(&out, "%s run --inputs '%s' --out '%s' %s", mt_bin(), dir, o,
				 t[i].args ? t[i].args : "");
		CHECKF(code == t[i].code, "case %zu (%s): exit %d, expected %d:\n%s", i, t[i].msg, code,
		       t[i].code, out);
		CHECK_STR_CONTAINS(out, t[i].msg);
		CHECKF((access(o, F_OK) == 0) == (t[i].code == 0), "case %zu: output %s", i,
		       t[i].code ? "written" : "missing");
		free(out);
	}
}

TEST(cli_run_refuses_missing_paths)
{
	const char *dir = mt_small_case("m");
	char *out = NULL;
	int code = mt_sh(&out, "%s run --inputs '%s' --out '%s/no/o.npy'", mt_bin(), dir, mt_tmpdir());
	CHECK_EQ_INT(code, 1);
	CHECK_STR_CONTAINS(out, "/no/o.npy: cannot create a temporary file");
	free(out);
	code = mt_sh(&out, "%s run --inputs '%s/none' --out '%s/o.npy'", mt_bin(), mt_tmpdir(),
		     mt_tmpdir());
	CHECK_EQ_INT(code, 3);
	CHECK_STR_CONTAINS(out, "/none: cannot open the inputs folder");
	free(out);
	code = mt_sh(&out, "%s run --out '%s/o.npy'", mt_bin(), mt_tmpdir());
	CHECK_EQ_INT(code, 2);
	CHECK_STR_CONTAINS(out, "--inputs DIR is required");
	free(out);
	code = mt_sh(&out, "%s run --inputs '%s'", mt_bin(), dir);
	CHECK_EQ_INT(code, 2);
	CHECK_STR_CONTAINS(out, "--out FILE.npy is required");
	free(out);
}

/*
 * --variant runs that variant (the GPU check's sanitizer runs use it): a v2
 * and a v3 kernel in the emulator on a golden case, checked against
 * expected.npy; a variant of another backend, one that does not fit the
 * problem, and --variant without a backend are refused with 2.
 */
TEST(cli_run_variant)
{
	char dir[1024], o[700], e[1100], *out = NULL;
	snprintf(dir, sizeof dir, "%s/dev-full", mt_golden_dir());
	snprintf(e, sizeof e, "%s/expected.npy", dir);
	snprintf(o, sizeof o, "%s/o-variant.npy", mt_tmpdir());
	static const char *ok[] = { "cuda:v2,bq=16,bk=16,hpb=4,warps=4,algo=1",
				    "cuda:v3,bq=16,bk=32,hpb=4,warps=8" };
	for (int i = 0; i < 2; i++) {
		int code = mt_sh(&out, "%s run --backend cuda-emu --variant %s --inputs '%s' --out '%s' "
				 "--dtype bf16 --expected '%s'", mt_bin(), ok[i], dir, o, e);
		CHECKF(code == 0, "%s: exit %d:\n%s", ok[i], code, out);
		CHECK_STR_CONTAINS(out, ok[i]);
		CHECK_STR_CONTAINS(out, " ok");
		free(out);
	}
	int code = mt_sh(&out, "%s run --backend cuda-emu --variant cpu:v1 --inputs '%s' --out '%s'",
			 mt_bin(), dir, o);
	CHECK_EQ_INT(code, 2);
	CHECK_STR_CONTAINS(out, "not a variant of backend cuda-emu");
	free(out);
	code = mt_sh(&out, "%s run --backend cuda-emu --variant cuda:v1,hpb=3 --inputs '%s' --out "
		     "'%s'", mt_bin(), dir, o);
	CHECK_EQ_INT(code, 2);
	CHECK_STR_CONTAINS(out, "does not fit");
	free(out);
	code = mt_sh(&out, "%s run --variant cuda:v1 --inputs '%s' --out '%s'", mt_bin(), dir, o);
	CHECK_EQ_INT(code, 2);
	CHECK_STR_CONTAINS(out, "needs --backend");
	free(out);
}
