/* test_inputs.c: loading an inputs folder, inferring the problem, and refusals. */
#include "tests/harness.h"
#include "tests/fixtures.h"
#include "tuner/io/inputs.h"

#include <sys/stat.h>
#include <unistd.h>

#define I(x) ((int64_t)(x))

TEST(inputs_golden_cases_match_expected)
{
	char **cases = mt_golden_cases();
	REQUIRE(cases && cases[0]);
	int n = 0;
	for (int c = 0; cases[c]; c++, n++) {
		struct mta_inputs in;
		struct mta_npy e;
		int rc = mt_golden_load(cases[c], &in, &e);
		CHECKF(rc == MTA_OK, "%s: %s", cases[c], mta_last_error());
		if (rc)
			continue;
		CHECK_STR_CONTAINS(in.ignored, "expected.npy");
		CHECK_EQ_INT(e.ndim, 4);
		CHECK(e.shape[0] == in.B && e.shape[1] == in.T && e.shape[2] == in.problem.H &&
		      e.shape[3] == in.problem.D);
		struct mta_weights w;
		mta_inputs_weights(&in, &w);
		double *out = malloc(e.count * sizeof *out);
		for (size_t i = 0; i < e.count; i++)
			out[i] = NAN;
		rc = mta_reference(&in.problem, &in.q, &in.k, &in.v, &w, out);
		CHECKF(rc == MTA_OK, "%s: %s", cases[c], mta_last_error());
		double err = mt_rel_l2_f64(out, e.data, e.count);
		CHECKF(err < 1e-6, "%s: relative L2 error %g", cases[c], err);
		free(out);
		mta_npy_free(&e);
		mta_inputs_free(&in);
	}
	CHECKF(n >= 10, "only %d golden cases", n);
	mt_golden_free(cases);
}

TEST(inputs_infer_every_part)
{
	const char *dir = mt_small_case("full");
	mt_put_npy(dir, "kq_pre", 4, I(4), I(1), I(2), I(3));
	mt_put_npy(dir, "head_pre", 2, I(4), I(4));
	mt_put_npy(dir, "kq_post", 4, I(4), I(1), I(3), I(5));
	mt_put_npy(dir, "head_post", 3, I(2), I(2), I(2));
	mt_put_npy(dir, "gn_weight", 1, I(8));
	mt_put_npy(dir, "gate_w", 2, I(1), I(8));
	mt_put_npy(dir, "gate_b", 1, I(1));
	mt_put_npy(dir, "notes", 1, I(3));
	struct mta_input_options opt;
	mta_input_options_init(&opt);
	opt.pad = MTA_PAD_RIGHT;
	opt.layer_id = 3;
	opt.scale = 0.5f;
	struct mta_inputs in;
	int rc = mta_inputs_load(dir, &opt, &in);
	REQUIRE(rc == MTA_OK || (mt_fail(__FILE__, __LINE__, "%s", mta_last_error()), 0));
	const struct mta_problem *p = &in.problem;
	CHECK(p->H == 4 && p->Hkv == 2 && p->D == 8);
	CHECK(p->cq == 2 && p->ck == 3 && p->head_pre == 1 && p->cq2 == 3 && p->ck2 == 5);
	CHECK(p->head_post == MTA_HPOST_CONV && p->hc == 2);
	CHECK(p->pad == MTA_PAD_RIGHT && p->gn && p->gn_rescale && p->gate);
	CHECK(p->scale == 0.5f && p->dtype == MTA_F32);
	CHECK(in.B == 1 && in.T == 5);
	CHECK_STR_CONTAINS(in.ignored, "notes.npy");
	struct mta_weights w;
	mta_inputs_weights(&in, &w);
	CHECK(w.kq_pre == in.file[MTA_IN_KQ_PRE].data && w.head_pre == in.file[MTA_IN_HEAD_PRE].data);
	CHECK(w.kq_post == in.file[MTA_IN_KQ_POST].data);
	CHECK(w.head_post == in.file[MTA_IN_HEAD_POST].data && !w.head_post_linear);
	CHECK(w.gn_weight == in.file[MTA_IN_GN_WEIGHT].data && w.gate_w == in.file[MTA_IN_GATE_W].data);
	CHECK(w.gate_b == *(float *)in.file[MTA_IN_GATE_B].data && w.gate_b != 0.0f);
	CHECK_EQ_INT(w.layer_id, 3);
	CHECK(in.q.dtype == MTA_F32 && in.q.shape[2] == 4 && in.k.shape[2] == 2 && in.v.stride[1] == 16);
	mta_inputs_free(&in);

	/* the linear head mixing instead of the head convolution */
	char path[700];
	snprintf(path, sizeof path, "%s/head_post.npy", dir);
	unlink(path);
	mt_put_npy(dir, "head_post_linear", 2, I(4), I(4));
	REQUIRE(mta_inputs_load(dir, NULL, &in) == MTA_OK);
	CHECK(in.problem.head_post == MTA_HPOST_LINEAR && in.problem.hc == 0);
	CHECK(in.problem.pad == MTA_PAD_BOTH && !in.problem.gn_rescale && in.problem.scale == 0.0f);
	mta_inputs_free(&in);
}

/* q, k, v of any float type come out rounded through float32 to the option's type. */
TEST(inputs_round_qkv_to_dtype)
{
	char dir[600], path[700];
	snprintf(dir, sizeof dir, "%s/r", mt_tmpdir());
	mkdir(dir, 0777);
	double q[2 * 3 * 2 * 4];
	for (size_t i = 0; i < sizeof q / sizeof q[0]; i++)
		q[i] = mt_uniform() * 3.0;
	int64_t qs[4] = { 2, 3, 2, 4 }, ks[4] = { 2, 3, 1, 4 };
	uint16_t kv[2 * 3 * 1 * 4];
	for (size_t i = 0; i < sizeof kv / sizeof kv[0]; i++)
		kv[i] = mta_f32_to_f16((float)mt_uniform());
	snprintf(path, sizeof path, "%s/q.npy", dir);
	REQUIRE(mta_npy_write(path, MTA_F64, 4, qs, q) == MTA_OK);
	snprintf(path, sizeof path, "%s/k.npy", dir);
	REQUIRE(mta_npy_write(path, MTA_F16, 4, ks, kv) == MTA_OK);
	snprintf(path, sizeof path, "%s/v.npy", dir);
	REQUIRE(mta_npy_write(path, MTA_F16, 4, ks, kv) == MTA_OK);
	mt_put_npy(dir, "gn_weight", 1, I(4));

	static const int types[] = { MTA_BF16, MTA_F16, MTA_F32 };
	for (int t = 0; t < 3; t++) {
		struct mta_input_options opt;
		mta_input_options_init(&opt);
		opt.dtype = types[t];
		struct mta_inputs in;
		REQUIRE(mta_inputs_load(dir, &opt, &in) == MTA_OK);
		CHECK(in.problem.dtype == types[t] && in.q.dtype == types[t] && in.k.dtype == types[t]);
		CHECK(in.file[MTA_IN_GN_WEIGHT].dtype == MTA_F32);
		for (size_t i = 0; i < sizeof q / sizeof q[0]; i++) {
			float f = (float)q[i];
			if (types[t] == MTA_BF16)
				CHECK(((uint16_t *)in.q.data)[i] == mta_f32_to_bf16(f));
			else if (types[t] == MTA_F16)
				CHECK(((uint16_t *)in.q.data)[i] == mta_f32_to_f16(f));
			else
				CHECK(((float *)in.q.data)[i] == f);
		}
		for (size_t i = 0; i < sizeof kv / sizeof kv[0]; i++) {
			float f = mta_f16_to_f32(kv[i]);
			if (types[t] == MTA_BF16)
				CHECK(((uint16_t *)in.v.data)[i] == mta_f32_to_bf16(f));
			else if (types[t] == MTA_F16)
				CHECK(((uint16_t *)in.v.data)[i] == kv[i]);
			else
				CHECK(((float *)in.v.data)[i] == f);
		}
		mta_inputs_free(&in);
	}
}

/* Each inconsistency: status and the message naming it. */
TEST(inputs_refuse_inconsistent_folders)
{
	struct file { const char *name; int ndim; int64_t s[4]; };
	static const struct {
		struct file add[3];
		const char *rm;
		int layer_id, dtype;
		float scale;
		int rc;
		const char *msg;
	} bad[] = {
		{ .rm = "q", .rc = MTA_EIO, .msg = "q.npy: missing" },
		{ .rm = "v", .rc = MTA_EIO, .msg = "v.npy: missing" },
		{ { { "q", 3, { 1, 5, 4 } } }, .rc = MTA_ESHAPE, .msg = "q.npy has shape [1,5,4]; expected [B,T,H,D]" },
		{ { { "v", 4, { 1, 5, 1, 8 } } }, .rc = MTA_ESHAPE, .msg = "v.npy has Hkv=1 but k.npy has Hkv=2" },
		{ { { "k", 4, { 1, 6, 2, 8 } }, { "v", 4, { 1, 6, 2, 8 } } }, .rc = MTA_ESHAPE,
		  .msg = "k.npy has T=6 but q.npy has T=5" },
		{ { { "k", 4, { 1, 5, 2, 4 } }, { "v", 4, { 1, 5, 2, 4 } } }, .rc = MTA_ESHAPE,
		  .msg = "k.npy has D=4 but q.npy has D=8" },
		{ { { "k", 4, { 1, 5, 3, 8 } }, { "v", 4, { 1, 5, 3, 8 } } }, .rc = MTA_ESHAPE,
		  .msg = "H=4 heads, not a multiple of k.npy's Hkv=3" },
		{ { { "q", 4, { 1, 0, 4, 8 } }, { "k", 4, { 1, 0, 2, 8 } }, { "v", 4, { 1, 0, 2, 8 } } },
		  .rc = MTA_ESHAPE, .msg = "q.npy has B=1, T=0; both must be at least 1" },
		{ { { "kq_pre", 4, { 3, 1, 2, 3 } } }, .rc = MTA_ESHAPE, .msg = "kq_pre.npy has H=3 but q.npy has H=4" },
		{ { { "kq_pre", 4, { 4, 2, 2, 3 } } }, .rc = MTA_ESHAPE, .msg = "kq_pre.npy has 2 in dimension 1" },
		{ { { "kq_pre", 3, { 4, 2, 3 } } }, .rc = MTA_ESHAPE, .msg = "kq_pre.npy has shape [4,2,3]; expected [H,1,cq,ck]" },
		{ { { "kq_post", 4, { 4, 1, 2, 4 } } }, .rc = MTA_EINVAL, .msg = "kq_post.npy has an even ck=4, but pad_key both" },
		{ { { "kq_pre", 4, { 4, 1, 65, 3 } } }, .rc = MTA_ESHAPE, .msg = "kq_pre.npy has a 65x3 kernel" },
		{ { { "head_pre", 2, { 4, 3 } } }, .rc = MTA_ESHAPE, .msg = "head_pre.npy has H=3 but q.npy has H=4" },
		{ { { "head_post", 3, { 3, 2, 2 } } }, .rc = MTA_ESHAPE, .msg = "head_post.npy has shape [3,2,2]; expected [H/c,c,c]" },
		{ { { "head_post", 3, { 2, 2, 2 } }, { "head_post_linear", 2, { 4, 4 } } }, .rc = MTA_ESHAPE,
		  .msg = "both head_post.npy and head_post_linear.npy" },
		{ { { "head_post_linear", 2, { 4, 5 } } }, .rc = MTA_ESHAPE, .msg = "head_post_linear.npy has H=5" },
		{ { { "gn_weight", 1, { 7 } } }, .rc = MTA_ESHAPE, .msg = "gn_weight.npy has D=7 but q.npy has D=8" },
		{ { { "gn_weight", 2, { 1, 8 } } }, .rc = MTA_ESHAPE, .msg = "gn_weight.npy has shape [1,8]; expected [D]" },
		{ { { "gate_w", 2, { 1, 8 } } }, .rc = MTA_ESHAPE, .msg = "gate_w.npy is present but gate_b.npy is not" },
		{ { { "gate_b", 1, { 1 } } }, .rc = MTA_ESHAPE, .msg = "gate_b.npy is present but gate_w.npy is not" },
		{ { { "gate_w", 2, { 1, 7 } }, { "gate_b", 1, { 1 } } }, .rc = MTA_ESHAPE, .msg = "gate_w.npy has D=7" },
		{ { { "gate_w", 2, { 2, 8 } }, { "gate_b", 1, { 2 } } }, .rc = MTA_ESHAPE, .msg = "must be [1,D] and [1]" },
		{ .layer_id = 2, .rc = MTA_EINVAL, .msg = "layer_id 2 turns on the group norm's layer rescale" },
		{ .scale = -1.0f, .rc = MTA_EINVAL, .msg = "scale -1" },
		{ .dtype = MTA_F64, .rc = MTA_EINVAL, .msg = "element type 3 is not f32, bf16 or f16" },
	};
	for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
		char sub[32], path[700];
		snprintf(sub, sizeof sub, "c%zu", i);
		const char *dir = mt_small_case(sub);
		for (int a = 0; a < 3; a++) {
			const struct file *f = &bad[i].add[a];
			if (!f->name)
				continue;
			snprintf(path, sizeof path, "%s/%s.npy", dir, f->name);
			size_t n = 1;
			for (int d = 0; d < f->ndim; d++)
				n *= (size_t)f->s[d];
			float *x = calloc(n + 1, sizeof *x);
			for (size_t e = 0; e < n; e++)
				x[e] = (float)mt_uniform();
			REQUIRE(mta_npy_write(path, MTA_F32, f->ndim, f->s, x) == MTA_OK);
			free(x);
		}
		if (bad[i].rm) {
			snprintf(path, sizeof path, "%s/%s.npy", dir, bad[i].rm);
			unlink(path);
		}
		struct mta_input_options opt;
		mta_input_options_init(&opt);
		if (bad[i].layer_id)
			opt.layer_id = bad[i].layer_id;
		if (bad[i].dtype)
			opt.dtype = bad[i].dtype;
		opt.scale = bad[i].scale;
		struct mta_inputs in;
		int rc = mta_inputs_load(dir, &opt, &in);
		CHECKF(rc == bad[i].rc, "case %zu (%s): status %s, message %s", i, bad[i].msg,
		       mta_status_name(rc), mta_last_error());
		CHECK_STR_CONTAINS(mta_last_error(), bad[i].msg);
		CHECK_STR_CONTAINS(mta_last_error(), dir);
		CHECK(in.file[MTA_IN_Q].data == NULL && in.q.data == NULL);
		mta_inputs_free(&in);
	}
}

TEST(inputs_refuse_unreadable_files)
{
	const char *dir = mt_small_case("u");
	char path[700];
	snprintf(path, sizeof path, "%s/kq_pre.npy", dir);
	FILE *f = fopen(path, "w");
	REQUIRE(f);
	fputs("not numpy", f);
	fclose(f);
	struct mta_inputs in;
	CHECK_EQ_INT(mta_inputs_load(dir, NULL, &in), MTA_EFORMAT);
	CHECK_STR_CONTAINS(mta_last_error(), path);
	CHECK_STR_CONTAINS(mta_last_error(), "bad magic");
	snprintf(path, sizeof path, "%s/none", mt_tmpdir());
	CHECK_EQ_INT(mta_inputs_load(path, NULL, &in), MTA_EIO);
	CHECK_STR_CONTAINS(mta_last_error(), "cannot open the inputs folder");
	CHECK_STR_CONTAINS(mta_last_error(), path);
}
