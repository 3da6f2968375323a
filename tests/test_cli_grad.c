/*
 * test_cli_grad.c: `mtatune grad`: gradients written for every input file
 * present, in its shape, equal to mta_reference_backward on the inputs as
 * the CLI loads them (--backend ref), within the gradient bounds of it
 * (--backend cpu and cuda-emu); refusals named; no half-written output folder.
 * With --cu-seqlens (packed documents) the same against
 * mta_reference_backward_varlen, and bad offset files refused by name.
 */
#include "tests/harness.h"
#include "tests/fixtures.h"
#include "tests/cpu_util.h"
#include "tuner/io/inputs.h"

#include <dirent.h>
#include <sys/stat.h>

#define I(x) ((int64_t)(x))

/* A folder of random inputs (every weight kind the flags ask for) and a dO file. */
struct gcase {
	const char *sub;
	int B, T, H, Hkv, D, cq, ck, cq2, ck2, hpre, hc, hpl, gn, gate;
	const char *args; /* extra options */
	int layer_id, dtype;
	const char *pad;
};

static void make_case(const struct gcase *g, char *dir, size_t n, char *dout, size_t m)
{
	snprintf(dir, n, "%s/%s", mt_tmpdir(), g->sub);
	mkdir(dir, 0777);
	mt_put_npy(dir, "q", 4, I(g->B), I(g->T), I(g->H), I(g->D));
	mt_put_npy(dir, "k", 4, I(g->B), I(g->T), I(g->Hkv), I(g->D));
	mt_put_npy(dir, "v", 4, I(g->B), I(g->T), I(g->Hkv), I(g->D));
	if (g->cq)
		mt_put_npy(dir, "kq_pre", 4, I(g->H), I(1), I(g->cq), I(g->ck));
	if (g->hpre)
		mt_put_npy(dir, "head_pre", 2, I(g->H), I(g->H));
	if (g->cq2)
		mt_put_npy(dir, "kq_post", 4, I(g->H), I(1), I(g->cq2), I(g->ck2));
	if (g->hc)
		mt_put_npy(dir, "head_post", 3, I(g->H / g->hc), I(g->hc), I(g->hc));
	if (g->hpl)
		mt_put_npy(dir, "head_post_linear", 2, I(g->H), I(g->H));
	if (g->gn)
		mt_put_npy(dir, "gn_weight", 1, I(g->D));
	if (g->gate) {
		mt_put_npy(dir, "gate_w", 2, I(1), I(g->D));
		mt_put_npy(dir, "gate_b", 1, I(1));
	}
	mt_put_npy(mt_tmpdir(), g->sub, 4, I(g->B), I(g->T), I(g->H), I(g->D));
	snprintf(dout, m, "%s/%s.npy", mt_tmpdir(), g->sub);
}

/*
 * The names in folder dir, sorted, joined by spaces, each followed by
 * ":<FNV-1a hash of its bytes>" when hash is set (malloc'd).
 */
static char *listing(const char *dir, int hash)
{
	struct dirent **e;
	int n = scandir(dir, &e, NULL, alphasort);
	size_t cap = 8192;
	char *s = calloc(1, cap);
	for (int i = 0; i < n; i++) {
		if (e[i]->d_name[0] != '.') {
			char path[1200], h[40] = "";
			if (hash) {
				unsigned long long v = 14695981039346656037ULL;
				snprintf(path, sizeof path, "%s/%s", dir, e[i]->d_name);
				FILE *f = fopen(path, "rb");
				for (int c; f && (c = fgetc(f)) != EOF;)
					v = (v ^ (unsigned)c) * 1099511628211ULL;
				if (f)
					fclose(f);
				snprintf(h, sizeof h, ":%016llx", v);
			}
			size_t len = strlen(s);
			snprintf(s + len, cap - len, "%s%s%s", len ? " " : "", e[i]->d_name, h);
		}
		free(e[i]);
	}
	if (n >= 0)
		free(e);
	return s;
}

TEST(cli_grad_writes_the_reference_gradients_of_every_input)
{
	static const struct gcase cases[] = {
		{ "every", 2, 11, 4, 2, 4, 3, 3, 2, 3, 1, 2, 0, 1, 1, "--pad-key both --layer-id 2",
		  2, MTA_F32, "both" },
		{ "linear", 1, 9, 3, 1, 5, 2, 4, 0, 0, 0, 0, 1, 0, 1, "--pad-key left --scale 0.3",
		  -1, MTA_F32, "left" },
		{ "bf16", 1, 8, 2, 2, 4, 0, 0, 3, 2, 1, 0, 0, 1, 0, "--pad-key right --dtype bf16",
		  -1, MTA_BF16, "right" },
	};
	for (size_t ci = 0; ci < sizeof cases / sizeof cases[0]; ci++) {
		const struct gcase *g = &cases[ci];
		char dir[700], dout[700], out[800];
		make_case(g, dir, sizeof dir, dout, sizeof dout);
		snprintf(out, sizeof out, "%s/grads-%s", mt_tmpdir(), g->sub);
		char *text = NULL;
		int code = mt_sh(&text, "%s grad --inputs '%s' --grad-output '%s' --out '%s' %s",
				 mt_bin(), dir, dout, out, g->args);
		CHECKF(code == 0, "%s: exit %d:\n%s", g->sub, code, text);

		/* the same inputs as the CLI reads them, and the reference on them */
		struct mta_input_options opt;
		struct mta_inputs in;
		struct mta_npy dfile;
		struct mta_tensor dt;
		struct mta_weights w;
		char key[MTA_KEY_MAX];
		mta_input_options_init(&opt);
		mta_pad_parse(g->pad, &opt.pad);
		opt.layer_id = g->layer_id;
		opt.dtype = g->dtype;
		if (strstr(g->args, "--scale"))
			opt.scale = 0.3f;
		REQUIRE(mta_inputs_load(dir, &opt, &in) == MTA_OK);
		REQUIRE(mta_inputs_load_dout(&in, dout, &dfile, &dt) == MTA_OK);
		REQUIRE(mta_problem_key(&in.problem, key, sizeof key) == MTA_OK);
		CHECK_STR_CONTAINS(text, key);
		free(text);
		mta_inputs_weights(&in, &w);
		double *d[MTA_IN_COUNT] = { 0 }, *m[MTA_IN_COUNT] = { 0 };
		for (int i = 0; i < MTA_IN_COUNT; i++)
			if (in.file[i].data) {
				d[i] = malloc(in.file[i].count * sizeof *d[i]);
				m[i] = malloc(in.file[i].count * sizeof *m[i]);
			}
		struct mta_reference_grads mg = {
			m[MTA_IN_Q], m[MTA_IN_K], m[MTA_IN_V], m[MTA_IN_KQ_PRE], m[MTA_IN_HEAD_PRE],
			m[MTA_IN_KQ_POST], m[MTA_IN_HEAD_POST], m[MTA_IN_HEAD_POST_LINEAR],
			m[MTA_IN_GN_WEIGHT], m[MTA_IN_GATE_W], m[MTA_IN_GATE_B], NULL,
		};
		struct mta_reference_grads rg = {
			d[MTA_IN_Q], d[MTA_IN_K], d[MTA_IN_V], d[MTA_IN_KQ_PRE], d[MTA_IN_HEAD_PRE],
			d[MTA_IN_KQ_POST], d[MTA_IN_HEAD_POST], d[MTA_IN_HEAD_POST_LINEAR],
			d[MTA_IN_GN_WEIGHT], d[MTA_IN_GATE_W], d[MTA_IN_GATE_B], &mg,
		};
		REQUIRE(mta_reference_backward(&in.problem, &in.q, &in.k, &in.v, &w, &dt, &rg) == MTA_OK);

		/* one file per input present, nothing else (no temporaries left) */
		char want[1024] = "";
		const char *sorted[] = { "dgate_b", "dgate_w", "dgn_weight", "dhead_post",
					 "dhead_post_linear", "dhead_pre", "dk", "dkq_post", "dkq_pre",
					 "dq", "dv" };
		for (size_t s = 0; s < sizeof sorted / sizeof sorted[0]; s++)
			for (int i = 0; i < MTA_IN_COUNT; i++)
				if (in.file[i].data && !strcmp(sorted[s] + 1, mta_input_name(i)))
					snprintf(want + strlen(want), sizeof want - strlen(want), "%s%s.npy",
						 want[0] ? " " : "", sorted[s]);
		char *got = listing(out, 0);
		CHECKF(!strcmp(got, want), "%s: OUTDIR holds '%s', expected '%s'", g->sub, got, want);
		free(got);

		/*
		 * --backend cpu and cuda-emu (the generated C and CUDA backwards
		 * through mta_forward_train and mta_backward): the same files, each
		 * within the gradient bounds of the problem's dtype against the reference (relative L2 and every
		 * element, mta_compare_grad).
		 */
		for (int bi = 0; bi < 2; bi++) {
			const char *bn = bi ? "cuda-emu" : "cpu";
			char outc[900];
			snprintf(outc, sizeof outc, "%s-%s", out, bn);
			code = mt_sh(&text, "%s grad --inputs '%s' --grad-output '%s' --out '%s' "
				     "--backend %s %s", mt_bin(), dir, dout, outc, bn, g->args);
			CHECKF(code == 0, "%s --backend %s: exit %d:\n%s", g->sub, bn, code, text);
			CHECK_STR_CONTAINS(text, key);
			free(text);
			got = listing(outc, 0);
			CHECKF(!strcmp(got, want), "%s: %s OUTDIR holds '%s', expected '%s'", g->sub, bn,
			       got, want);
			free(got);
			for (int i = 0; i < MTA_IN_COUNT; i++) {
				if (!d[i])
					continue;
				char path[1000];
				struct mta_npy a;
				snprintf(path, sizeof path, "%s/d%s.npy", outc, mta_input_name(i));
				if (mta_npy_read(path, &a)) {
					mt_fail(__FILE__, __LINE__, "%s: %s", g->sub, mta_last_error());
					continue;
				}
				CHECKF(a.dtype == MTA_F32 && a.count == in.file[i].count &&
				       mta_compare_grad_mag(a.data, d[i], m[i], a.count, g->dtype, NULL) ==
				       MTA_OK,
				       "%s --backend %s: d%s: %s", g->sub, bn, mta_input_name(i),
				       mta_last_error());
				mta_npy_free(&a);
			}
		}

		for (int i = 0; i < MTA_IN_COUNT; i++) {
			if (!d[i])
				continue;
			char path[900];
			struct mta_npy a;
			snprintf(path, sizeof path, "%s/d%s.npy", out, mta_input_name(i));
			if (mta_npy_read(path, &a)) {
				mt_fail(__FILE__, __LINE__, "%s: %s", g->sub, mta_last_error());
				continue;
			}
			CHECKF(a.dtype == MTA_F32 && a.ndim == in.file[i].ndim &&
			       !memcmp(a.shape, in.file[i].shape, (size_t)a.ndim * sizeof a.shape[0]),
			       "%s: d%s.npy has the wrong type or shape", g->sub, mta_input_name(i));
			/* float32 of the float64 reference: one rounding per element */
			size_t n = a.count == in.file[i].count ? a.count : 0;
			CHECKF(n > 0, "%s: d%s.npy has %zu elements", g->sub, mta_input_name(i), a.count);
			for (size_t x = 0; x < n; x++) {
				float f = ((const float *)a.data)[x];
				CHECKF(f == (float)d[i][x], "%s: d%s[%zu] = %.9g, expected %.9g", g->sub,
				       mta_input_name(i), x, (double)f, d[i][x]);
			}
			mta_npy_free(&a);
			free(d[i]);
			free(m[i]);
		}
		mta_npy_free(&dfile);
		mta_inputs_free(&in);
	}
}

TEST(cli_grad_refuses_bad_input_and_leaves_the_output_alone)
{
	static const struct gcase g = { "refuse", 1, 6, 2, 2, 4, 2, 3, 0, 0, 0, 0, 0, 1, 0, "",
					-1, MTA_F32, "both" };
	char dir[700], dout[700], out[800], bad[800], nan[800], file[800];
	make_case(&g, dir, sizeof dir, dout, sizeof dout);
	snprintf(out, sizeof out, "%s/out", mt_tmpdir());
	snprintf(bad, sizeof bad, "%s/bad.npy", mt_tmpdir());
	snprintf(nan, sizeof nan, "%s/nan.npy", mt_tmpdir());
	snprintf(file, sizeof file, "%s/file", mt_tmpdir());
	mt_put_npy(mt_tmpdir(), "bad", 4, I(1), I(6), I(3), I(4));
	float x[48];
	int64_t shape[4] = { 1, 6, 2, 4 };
	for (int i = 0; i < 48; i++)
		x[i] = i == 29 ? NAN : (float)mt_uniform();
	REQUIRE(mta_npy_write(nan, MTA_F32, 4, shape, x) == MTA_OK);
	FILE *f = fopen(file, "w");
	REQUIRE(f);
	fclose(f);

	/* a first good run: its files must survive every refused one */
	char *text = NULL;
	int code = mt_sh(&text, "%s grad --inputs '%s' --grad-output '%s' --out '%s'", mt_bin(),
			 dir, dout, out);
	REQUIRE(code == 0);
	free(text);
	char *before = listing(out, 1);
	CHECK_STR_CONTAINS(before, "dkq_pre.npy");

	struct { const char *args; int code; const char *msg; } t[] = {
		{ "--inputs '%s' --out '%s'", 2, "--grad-output FILE.npy is required" },
		{ "--inputs '%s' --grad-output '%s' --out '%s' --backend cuda-emux", 2,
		  "unknown backend 'cuda-emux'; available: ref cpu cuda-emu cuda" },
		{ "--inputs '%s' --grad-output '%s' --out '%s' --backend nope", 2,
		  "unknown backend 'nope'" },
		{ "--inputs '%s' --grad-output '%s' --out '%s' --pad-key up", 2, "unknown pad_key 'up'" },
		{ "--inputs '%s' --grad-output '%s' --out '%s'", 3,
		  "bad.npy has shape [1,6,3,4]; the gradient of the output must be [B,T,H,D] = "
		  "[1,6,2,4]" },
		{ "--inputs '%s' --grad-output '%s' --out '%s'", 3, "nan.npy: element [0,3,1,1] is nan" },
		{ "--inputs '%s' --grad-output '%s' --out '%s'", 3, "missing.npy" },
		{ "--inputs '%s' --grad-output '%s' --out '%s'", 2, "exists and is not a folder" },
		{ "--inputs '%s' --grad-output '%s' --out '%s'", 1, "cannot create the output folder" },
		{ "--inputs '%s' --grad-output '%s' --out '%s' --layer-id 1", 3,
		  "there is no gn_weight.npy" },
	};
	for (size_t i = 0; i < sizeof t / sizeof t[0]; i++) {
		char args[4096], missing[800], deep[800];
		snprintf(missing, sizeof missing, "%s/missing.npy", mt_tmpdir());
		snprintf(deep, sizeof deep, "%s/no/such/dir", mt_tmpdir());
		const char *gp = i == 4 ? bad : i == 5 ? nan : i == 6 ? missing : dout;
		const char *op = i == 7 ? file : i == 8 ? deep : out;
		if (i == 0)
			snprintf(args, sizeof args, t[i].args, dir, op);
		else
			snprintf(args, sizeof args, t[i].args, dir, gp, op);
		if (i == 9) /* a folder without gn_weight: --layer-id contradicts it */
			snprintf(args, sizeof args, t[i].args, mt_small_case("nogn"), dout, out);
		code = mt_sh(&text, "%s grad %s", mt_bin(), args);
		CHECKF(code == t[i].code, "grad %s: exit %d, expected %d:\n%s", args, code, t[i].code,
		       text);
		CHECK_STR_CONTAINS(text, t[i].msg);
		CHECK_STR_CONTAINS(text, "mtatune grad: ");
		free(text);
		char *after = listing(out, 1);
		CHECKF(!strcmp(before, after), "grad %s changed OUTDIR: '%s' -> '%s'", args, before,
		       after);
		free(after);
	}
	free(before);
}

/*
 * --cu-seqlens: the packed backward on every backend. ref writes
 * mta_reference_backward_varlen rounded once to float32; cpu and cuda-emu
 * (mta_forward_train_varlen, mta_backward_varlen) are within the gradient
 * bounds of it; int32 and int64 offsets; documents of length 1, 0 and
 * shorter than the kernels (cq=3, ck=3), ragged. The packed gradients
 * differ from the whole sequence's (the boundaries are honoured).
 */
TEST(cli_grad_packed_documents_every_backend)
{
	static const struct gcase g = { "packed", 1, 23, 4, 2, 4, 3, 3, 2, 3, 1, 2, 0, 1, 1,
					"--layer-id 2", 2, MTA_F32, "both" };
	static const int64_t cu[] = { 0, 1, 1, 3, 12, 13, 23 };
	char dir[700], dout[700], c32[800], c64[800];
	make_case(&g, dir, sizeof dir, dout, sizeof dout);
	snprintf(c32, sizeof c32, "%s/gcu32.npy", mt_tmpdir());
	snprintf(c64, sizeof c64, "%s/gcu64.npy", mt_tmpdir());
	mt_put_ints(c32, "<i4", "(7,)", cu, 7);
	mt_put_ints(c64, "<i8", "(7,)", cu, 7);

	struct mta_input_options opt;
	struct mta_inputs in;
	struct mta_npy dfile;
	struct mta_tensor dt;
	struct mta_weights w;
	mta_input_options_init(&opt);
	opt.layer_id = 2;
	REQUIRE(mta_inputs_load(dir, &opt, &in) == MTA_OK);
	REQUIRE(mta_inputs_load_dout(&in, dout, &dfile, &dt) == MTA_OK);
	mta_inputs_weights(&in, &w);
	double *d[MTA_IN_COUNT] = { 0 }, *whole[MTA_IN_COUNT] = { 0 }, *m[MTA_IN_COUNT] = { 0 };
	for (int i = 0; i < MTA_IN_COUNT; i++)
		if (in.file[i].data) {
			d[i] = malloc(in.file[i].count * sizeof *d[i]);
			whole[i] = malloc(in.file[i].count * sizeof *d[i]);
			m[i] = malloc(in.file[i].count * sizeof *m[i]);
		}
	struct mta_reference_grads mg = {
		m[MTA_IN_Q], m[MTA_IN_K], m[MTA_IN_V], m[MTA_IN_KQ_PRE], m[MTA_IN_HEAD_PRE],
		m[MTA_IN_KQ_POST], m[MTA_IN_HEAD_POST], m[MTA_IN_HEAD_POST_LINEAR],
		m[MTA_IN_GN_WEIGHT], m[MTA_IN_GATE_W], m[MTA_IN_GATE_B], NULL,
	};
	struct mta_reference_grads rg = {
		d[MTA_IN_Q], d[MTA_IN_K], d[MTA_IN_V], d[MTA_IN_KQ_PRE], d[MTA_IN_HEAD_PRE],
		d[MTA_IN_KQ_POST], d[MTA_IN_HEAD_POST], d[MTA_IN_HEAD_POST_LINEAR],
		d[MTA_IN_GN_WEIGHT], d[MTA_IN_GATE_W], d[MTA_IN_GATE_B], &mg,
	};
	struct mta_reference_grads wg = {
		whole[MTA_IN_Q], whole[MTA_IN_K], whole[MTA_IN_V], whole[MTA_IN_KQ_PRE],
		whole[MTA_IN_HEAD_PRE], whole[MTA_IN_KQ_POST], whole[MTA_IN_HEAD_POST],
		whole[MTA_IN_HEAD_POST_LINEAR], whole[MTA_IN_GN_WEIGHT], whole[MTA_IN_GATE_W],
		whole[MTA_IN_GATE_B], NULL,
	};
	REQUIRE(mta_reference_backward_varlen(&in.problem, &in.q, &in.k, &in.v, &w, &dt, cu, 6,
					      &rg) == MTA_OK);
	REQUIRE(mta_reference_backward(&in.problem, &in.q, &in.k, &in.v, &w, &dt, &wg) == MTA_OK);
	CHECK(mt_rel_l2_f64(whole[MTA_IN_Q], d[MTA_IN_Q], in.file[MTA_IN_Q].count) > 1e-3);
	CHECK(mt_rel_l2_f64(whole[MTA_IN_KQ_PRE], d[MTA_IN_KQ_PRE], in.file[MTA_IN_KQ_PRE].count) >
	      1e-3);

	static const char *const backends[] = { "ref", "cpu", "cuda-emu" };
	mt_kcache();
	for (int bi = 0; bi < 3; bi++) {
		char out[900], *text = NULL;
		snprintf(out, sizeof out, "%s/pgrads-%s", mt_tmpdir(), backends[bi]);
		int code = mt_sh(&text, "%s grad --inputs '%s' --grad-output '%s' --out '%s' "
				 "--layer-id 2 --backend %s --cu-seqlens '%s'", mt_bin(), dir, dout,
				 out, backends[bi], bi % 2 ? c32 : c64);
		CHECKF(code == 0, "--backend %s: exit %d:\n%s", backends[bi], code, text);
		free(text);
		for (int i = 0; i < MTA_IN_COUNT; i++) {
			if (!d[i])
				continue;
			char path[1000];
			struct mta_npy a;
			snprintf(path, sizeof path, "%s/d%s.npy", out, mta_input_name(i));
			if (mta_npy_read(path, &a)) {
				mt_fail(__FILE__, __LINE__, "%s: %s", backends[bi], mta_last_error());
				continue;
			}
			CHECKF(a.dtype == MTA_F32 && a.count == in.file[i].count, "%s: d%s: %zu elements",
			       backends[bi], mta_input_name(i), a.count);
			if (a.count != in.file[i].count) {
				mta_npy_free(&a);
				continue;
			}
			if (bi == 0) {
				for (size_t x = 0; x < a.count; x++)
					CHECKF(((const float *)a.data)[x] == (float)d[i][x],
					       "ref: d%s[%zu] = %.9g, expected %.9g", mta_input_name(i), x,
					       (double)((const float *)a.data)[x], d[i][x]);
			} else {
				CHECKF(mta_compare_grad_mag(a.data, d[i], m[i], a.count, MTA_F32, NULL) ==
				       MTA_OK,
				       "--backend %s: d%s: %s", backends[bi], mta_input_name(i),
				       mta_last_error());
			}
			mta_npy_free(&a);
		}
	}
	for (int i = 0; i < MTA_IN_COUNT; i++) {
		free(d[i]);
		free(whole[i]);
		free(m[i]);
	}
	mta_npy_free(&dfile);
	mta_inputs_free(&in);
}

/* Bad --cu-seqlens files: exit 3 naming the file and what was expected; OUTDIR untouched. */
TEST(cli_grad_refuses_bad_cu_seqlens)
{
	static const struct gcase g = { "pbad", 1, 10, 2, 2, 4, 2, 3, 0, 0, 0, 0, 0, 1, 0, "",
					-1, MTA_F32, "both" };
	static const int64_t start[] = { 2, 5, 10 }, dec[] = { 0, 6, 5, 10 }, end[] = { 0, 5, 9 },
			     good[] = { 0, 5, 10 };
	static const struct {
		const char *descr, *shape;
		const int64_t *x;
		int n;
		const char *says;
	} bad[] = {
		{ "<i8", "(3,)", start, 3, "cu_seqlens[0] is 2, expected 0" },
		{ "<i4", "(4,)", dec, 4, "decreases at index 2 (5 after 6)" },
		{ "<i8", "(3,)", end, 3, "expected total_T = 10" },
		{ "<f8", "(3,)", good, 3, "expected integer offsets ('<i4' int32 or '<i8' int64)" },
		{ "<i8", "(1, 3)", good, 3, "expected one dimension [ndocs+1]" },
		{ "<i8", "(1,)", good, 1, "expected at least 2" },
	};
	char dir[700], dout[700], out[800], *text = NULL;
	make_case(&g, dir, sizeof dir, dout, sizeof dout);
	snprintf(out, sizeof out, "%s/pbad-out", mt_tmpdir());
	int code = mt_sh(&text, "%s grad --inputs '%s' --grad-output '%s' --out '%s'", mt_bin(),
			 dir, dout, out);
	REQUIRE(code == 0);
	free(text);
	char *before = listing(out, 1);
	for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
		char cu[800];
		snprintf(cu, sizeof cu, "%s/gbad%zu.npy", mt_tmpdir(), i);
		mt_put_ints(cu, bad[i].descr, bad[i].shape, bad[i].x, bad[i].n);
		for (int bi = 0; bi < 2; bi++) {
			code = mt_sh(&text, "%s grad --inputs '%s' --grad-output '%s' --out '%s' "
				     "--backend %s --cu-seqlens '%s'", mt_bin(), dir, dout, out,
				     bi ? "cpu" : "ref", cu);
			CHECKF(code == 3, "case %zu: exit %d, expected 3: %s", i, code, text);
			CHECK_STR_CONTAINS(text, "mtatune grad: --cu-seqlens");
			CHECK_STR_CONTAINS(text, cu);
			CHECK_STR_CONTAINS(text, bad[i].says);
			free(text);
		}
		char *after = listing(out, 1);
		CHECKF(!strcmp(before, after), "case %zu changed OUTDIR", i);
		free(after);
	}
	/* B = 2: packed documents are one sequence */
	static const struct gcase g2 = { "pbad2", 2, 10, 2, 2, 4, 0, 0, 0, 0, 0, 0, 0, 0, 0, "",
					 -1, MTA_F32, "both" };
	char dir2[700], dout2[700], cu[800];
	make_case(&g2, dir2, sizeof dir2, dout2, sizeof dout2);
	snprintf(cu, sizeof cu, "%s/ggood.npy", mt_tmpdir());
	mt_put_ints(cu, "<i8", "(3,)", good, 3);
	code = mt_sh(&text, "%s grad --inputs '%s' --grad-output '%s' --out '%s' --cu-seqlens '%s'",
		     mt_bin(), dir2, dout2, out, cu);
	CHECKF(code == 3, "B=2: exit %d: %s", code, text);
	CHECK_STR_CONTAINS(text, "B=1");
	free(text);
	char *after = listing(out, 1);
	CHECKF(!strcmp(before, after), "B=2 changed OUTDIR");
	free(after);
	free(before);
}
