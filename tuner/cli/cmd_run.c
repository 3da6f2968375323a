/*
 * cmd_run.c: `mtatune run`: one forward on a folder of .npy inputs.
 *
 * Loads the folder (inputs.h infers the problem), prints the problem key on
 * stdout, runs the chosen backend, writes o.npy [B,T,H,D] float32, and with
 * --expected compares against a known output. The backends are the float64
 * reference and every row of runtime/backends.c, each run through a runtime
 * context (mta_forward), so a new backend needs nothing here.
 */
#include "tuner/cli/cli.h"
#include "runtime/backend.h"
#include "runtime/core/error.h"
#include "runtime/core/pick.h"
#include "runtime/core/strbuf.h"
#include "runtime/core/varlen.h"
#include "tuner/io/inputs.h"
#include "tuner/io/npy.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

/* The float64 reference, rounded once to float32. */
/* Packed documents (--cu-seqlens): cu[0..ndocs], NULL for a plain forward. */
struct docs {
	const int64_t *cu;
	int64_t ndocs;
};

static int run_ref(const struct mta_problem *p, const struct mta_tensor *q,
		   const struct mta_tensor *k, const struct mta_tensor *v,
		   const struct mta_weights *w, const struct docs *docs, float *o, size_t n)
{
	double *d = malloc(n * sizeof *d + 1);
	if (!d)
		return mta_fail(MTA_ENOMEM, "out of memory for %zu doubles", n);
	int rc = docs->cu ? mta_reference_varlen(p, q, k, v, w, docs->cu, docs->ndocs, d)
			  : mta_reference(p, q, k, v, w, d);
	for (size_t i = 0; !rc && i < n; i++)
		o[i] = (float)d[i];
	free(d);
	return rc;
}

/* The runtime's pick on backend be: the tuned winner, else the default. */
static int run_backend(const struct mta_backend *be, const char *db_path, int device,
		       const struct mta_problem *p, const struct mta_tensor *q,
		       const struct mta_tensor *k, const struct mta_tensor *v,
		       const struct mta_weights *w, const struct docs *docs, float *o)
{
	mta_context *ctx = NULL;
	struct mta_pick pick;
	struct mta_tensor to;
	int rc;
	static const char *from[] = { "default variant, nothing tuned for this problem",
				      "tuned winner of the nearest buckets",
				      "tuned winner of these T and B buckets" };
	mta_tensor_init(&to, o, MTA_F32, q->shape[0], q->shape[1], p->H, p->D);
	if ((rc = mta_context_create(&ctx, db_path, be->name, device)) ||
	    (rc = mta_context_pick(ctx, p, q->shape[0], q->shape[1], &pick)))
		goto out;
	if (be->timed)
		fprintf(stderr, "mtatune run: %s (%s)\n", pick.spec, from[pick.source]);
	else
		fprintf(stderr, "mtatune run: %s (default variant; %s: %s)\n", pick.spec, be->name,
			be->summary);
	rc = docs->cu ? mta_forward_varlen(ctx, p, q, k, v, w, docs->cu, docs->ndocs, &to)
		      : mta_forward(ctx, p, q, k, v, w, &to);
out:
	mta_context_free(ctx);
	return rc;
}

/* Variant v of p on backend be directly (no database): open, load, forward. */
static int run_variant(const struct mta_backend *be, int device, const struct mta_variant *v,
		       const struct mta_problem *p, const struct mta_tensor *q,
		       const struct mta_tensor *k, const struct mta_tensor *vv,
		       const struct mta_weights *w, const struct docs *docs, float *o)
{
	struct mta_device *dev = NULL;
	struct mta_kernel *kern = NULL;
	struct mta_tensor to;
	char spec[MTA_SPEC_MAX];
	int rc;
	mta_tensor_init(&to, o, MTA_F32, q->shape[0], q->shape[1], p->H, p->D);
	if ((rc = mta_variant_format(v, spec, sizeof spec)))
		return rc;
	fprintf(stderr, "mtatune run: %s (--variant)\n", spec);
	if (!(rc = be->open(device, 0, &dev)) && !(rc = be->load(dev, NULL, p, v, NULL, 0, &kern)))
		rc = docs->cu ? mta_backend_forward_varlen(be, kern, p, q, k, vv, w, docs->cu,
							   docs->ndocs, &to)
			      : be->forward(kern, p, q, k, vv, w, &to);
	if (kern && be->unload)
		be->unload(kern);
	if (dev && be->close)
		be->close(dev);
	return rc;
}

/*
 * --decode-from N: every sequence of q, k, v through a decode cache, rows
 * [0, N) as one chunk (the prefill), then one token per call, outputs into
 * o [B,T,H,D]. ctx NULL (ref): the float64 engine; else the context's
 * backend's decode kernel (mta_cache_create_ctx).
 */
static int run_decode(mta_context *ctx, const struct mta_problem *p, const struct mta_tensor *q,
		      const struct mta_tensor *k, const struct mta_tensor *v,
		      const struct mta_weights *w, int64_t N, float *o)
{
	mta_cache *c = NULL;
	struct mta_tensor to;
	const int64_t T = q->shape[1];
	int rc;
	mta_tensor_init(&to, o, MTA_F32, q->shape[0], T, p->H, p->D);
	if ((rc = ctx ? mta_cache_create_ctx(ctx, p, q->shape[0], &c)
		      : mta_cache_create(p, q->shape[0], &c)))
		return rc;
	for (int64_t s = 0; s < T && !rc; s = s < N ? N : s + 1) {
		const int64_t n = s < N ? N : 1;
		struct mta_tensor qs, ks, vs, os;
		mta_varlen_view(q, s, n, &qs);
		mta_varlen_view(k, s, n, &ks);
		mta_varlen_view(v, s, n, &vs);
		mta_varlen_view(&to, s, n, &os);
		if ((rc = mta_decode(c, &qs, &ks, &vs, w, NULL, &os)))
			mta_wrap(rc, "decode of rows %lld..%lld", (long long)s, (long long)(s + n));
	}
	mta_cache_free(c);
	return rc;
}

/* "      NAME   summary" lines of every backend, for --help. */
static const char *backend_list(void)
{
	static char list[1024];
	size_t len = (size_t)snprintf(list, sizeof list, "how to compute it (default ref):\n"
				      "%-6s the float64 reference (slow, exact)", "ref");
	for (int i = 0; mta_backend_at(i); i++)
		len += (size_t)snprintf(list + len, sizeof list - len, "\n%-6s %s",
					mta_backend_at(i)->name, mta_backend_at(i)->summary);
	return list;
}

/* Compare o with the file expected; the exit status. */
static int verify(const char *expected, const float *o, const int64_t *shape, size_t n,
		  double tol)
{
	struct mta_npy e;
	int code = CLI_OK;
	int rc = mta_npy_read(expected, &e);
	if (!rc)
		rc = mta_npy_convert(&e, MTA_F64);
	if (rc) {
		code = cli_fail("run", cli_exit_status(rc), "%s", mta_last_error());
		goto out;
	}
	char a[200], b[200];
	if (e.ndim != 4 || memcmp(e.shape, shape, 4 * sizeof *shape)) {
		code = cli_fail("run", CLI_DATA, "%s has shape %s, but the output is %s", expected,
				mta_npy_shape_str(e.ndim, e.shape, a, sizeof a),
				mta_npy_shape_str(4, shape, b, sizeof b));
		goto out;
	}
	double err = mta_rel_l2(o, e.data, n);
	printf("rel_l2 %.3g tol %.3g %s\n", err, tol, err <= tol ? "ok" : "FAIL");
	if (!(err <= tol))
		code = cli_fail("run", CLI_VERIFY, "the output differs from %s: relative L2 error "
				"%.3g is above the tolerance %.3g", expected, err, tol);
out:
	mta_npy_free(&e);
	return code;
}

enum { O_INPUTS = 256, O_OUT, O_PAD, O_LAYER, O_SCALE, O_BACKEND, O_DTYPE, O_EXPECTED, O_TOL,
       O_DB, O_DEVICE, O_VARIANT, O_CU_SEQLENS, O_DECODE_FROM };

static struct cli_opt opts[] = {
	{ "inputs", O_INPUTS, "DIR", "folder of inputs (required)" },
	{ "out", O_OUT, "FILE", "the output .npy (required; replaced atomically)" },
	{ "pad-key", O_PAD, "P", "both (default), left or right: key offset of the convolutions" },
	{ "layer-id", O_LAYER, "N", "group norm layer rescale for layer N (needs gn_weight.npy)" },
	{ "scale", O_SCALE, "X", "softmax scale (default 1/sqrt(D))" },
	{ "dtype", O_DTYPE, "T", "f32 (default), bf16 or f16: round q, k, v to T first" },
	{ "backend", O_BACKEND, "NAME", NULL /* backend_list() */ },
	{ "device", O_DEVICE, "N", "the backend's device (default $MTATUNE_CUDA_DEVICE, else 0)" },
	{ "variant", O_VARIANT, "SPEC", "run this variant of the backend instead of the tuned\n"
					"winner (checks, compute-sanitizer)" },
	{ "db", O_DB, "PATH", "database of tuned winners (default $MTATUNE_DB, else\n"
			      "~/.cache/mtatune/mta.db)" },
	{ "cu-seqlens", O_CU_SEQLENS, "FILE", "packed documents: FILE.npy holds int32 or int64\n"
					      "offsets [ndocs+1] (0 first, T last, non-decreasing)\n"
					      "into q, k, v of B=1; each document runs alone" },
	{ "decode-from", O_DECODE_FROM, "N", "rows [0,N) as a prefill into a decode cache, then\n"
					     "one token at a time; the output is the whole\n"
					     "[B,T,H,D] (equal to the forward's)" },
	{ "expected", O_EXPECTED, "FILE", "compare with FILE [B,T,H,D]; print the relative L2 error" },
	{ "tol", O_TOL, "X", "fail (exit 4) above this error (default 1e-5 for f32,\n"
			     "1e-2 for bf16 and f16)" },
	{ "help", 'h', NULL, "show this text" },
	{ 0 },
};

static const struct cli_cmd cmd = {
	"run",
	"mtatune run --inputs DIR --out FILE.npy [options]",
	"Run one Multi-Token Attention forward on the .npy files in DIR and write the\n"
	"output [B,T,H,D] as float32. DIR holds q.npy [B,T,H,D], k.npy and v.npy\n"
	"[B,T,Hkv,D] and the weights present (kq_pre, head_pre, kq_post, head_post or\n"
	"head_post_linear, gn_weight, gate_w + gate_b), shaped as the reference's\n"
	"PyTorch parameters (MTA.md). The problem is inferred from them; its key is\n"
	"printed on stdout.\n",
	opts, NULL,
};

int cmd_run(int argc, char **argv)
{
	const char *dir = NULL, *out = NULL, *expected = NULL, *bname = "ref", *db_path = NULL;
	const char *spec = NULL, *cu_path = NULL;
	const struct mta_backend *be = NULL;
	struct docs docs = { NULL, 0 };
	int64_t *cu = NULL, ncu = 0, decode_from = -1;
	mta_context *dctx = NULL;
	struct mta_input_options opt;
	struct cli_getopt g;
	double tol = 0, x;
	long n;
	int c, device = cli_default_device();

	for (struct cli_opt *o = opts; o->name; o++)
		if (o->key == O_BACKEND)
			o->help = backend_list();
	mta_input_options_init(&opt);
	cli_getopt_init(&g, &cmd);
	while ((c = cli_next(&g, argc, argv)) != -1) {
		switch (c) {
		case 'h': cli_help(stdout, &cmd); return CLI_OK;
		case O_INPUTS: dir = optarg; break;
		case O_OUT: out = optarg; break;
		case O_EXPECTED: expected = optarg; break;
		case O_BACKEND: bname = optarg; break;
		case O_DB: db_path = optarg; break;
		case O_VARIANT: spec = optarg; break;
		case O_CU_SEQLENS: cu_path = optarg; break;
		case O_DECODE_FROM:
			if (cli_parse_long(optarg, 0, (long)1 << 40, &n))
				return cli_fail("run", CLI_USAGE, "--decode-from '%s' is not a "
						"non-negative integer", optarg);
			decode_from = n;
			break;
		case O_DEVICE:
			if (cli_parse_long(optarg, 0, 4095, &n))
				return cli_fail("run", CLI_USAGE, "--device '%s' is not an integer in "
						"0..4095", optarg);
			device = (int)n;
			break;
		case O_PAD:
			if (mta_pad_parse(optarg, &opt.pad))
				return cli_fail("run", CLI_USAGE, "--pad-key: %s", mta_last_error());
			break;
		case O_DTYPE:
			if (mta_dtype_parse(optarg, &opt.dtype))
				return cli_fail("run", CLI_USAGE, "--dtype: %s", mta_last_error());
			break;
		case O_LAYER:
			if (cli_parse_long(optarg, 0, 1000000, &n))
				return cli_fail("run", CLI_USAGE, "--layer-id '%s' is not an integer in "
						"0..1000000", optarg);
			opt.layer_id = (int)n;
			break;
		case O_SCALE:
			if (cli_parse_positive(optarg, &x) || !isfinite((float)x) || (float)x == 0.0f)
				return cli_fail("run", CLI_USAGE, "--scale '%s' is not a positive "
						"float32 number", optarg);
			opt.scale = (float)x;
			break;
		case O_TOL:
			if (cli_parse_positive(optarg, &tol))
				return cli_fail("run", CLI_USAGE, "--tol '%s' is not a positive number",
						optarg);
			break;
		default: return cli_bad_option("run", c, argv);
		}
	}
	if (optind < argc)
		return cli_fail("run", CLI_USAGE, "unexpected argument '%s' (see 'mtatune run "
				"--help')", argv[optind]);
	if (!dir || !out)
		return cli_fail("run", CLI_USAGE, "%s is required (see 'mtatune run --help')",
				!dir ? "--inputs DIR" : "--out FILE.npy");
	if (strcmp(bname, "ref") && mta_backend_find(bname, &be)) {
		fprintf(stderr, "mtatune run: unknown backend '%s'; available: ref", bname);
		for (int i = 0; mta_backend_at(i); i++)
			fprintf(stderr, " %s", mta_backend_at(i)->name);
		fprintf(stderr, "\n");
		return CLI_USAGE;
	}
	if (tol == 0)
		tol = mta_tolerance(opt.dtype);
	if (decode_from >= 0 && (cu_path || spec))
		return cli_fail("run", CLI_USAGE, "--decode-from cannot be combined with %s",
				cu_path ? "--cu-seqlens" : "--variant (decode has no variants yet)");
	struct mta_variant var;
	if (spec && !be)
		return cli_fail("run", CLI_USAGE, "--variant needs --backend (the reference has no "
				"variants)");
	if (spec && mta_variant_parse(spec, &var))
		return cli_fail("run", CLI_USAGE, "--variant: %s", mta_last_error());
	if (spec && var.backend != be->variants)
		return cli_fail("run", CLI_USAGE, "--variant %s is not a variant of backend %s", spec,
				be->name);

	struct mta_inputs in;
	struct mta_weights w;
	char key[MTA_KEY_MAX];
	float *o = NULL;
	int code = CLI_OK, rc = mta_inputs_load(dir, &opt, &in);
	if (rc)
		return cli_fail("run", cli_exit_status(rc), "%s", mta_last_error());
	if (in.ignored[0])
		fprintf(stderr, "mtatune run: note: not inputs, ignored in %s: %s\n", dir, in.ignored);
	if ((rc = mta_problem_key(&in.problem, key, sizeof key))) {
		code = cli_fail("run", cli_exit_status(rc), "%s", mta_last_error());
		goto out;
	}
	if (cu_path) {
		if ((code = cli_load_cu_seqlens("run", cu_path, dir, in.B, in.T, &cu, &ncu)))
			goto out;
		docs.cu = cu;
		docs.ndocs = ncu;
	}
	if (decode_from > in.T) {
		code = cli_fail("run", CLI_USAGE, "--decode-from %lld is beyond T=%lld of %s",
				(long long)decode_from, (long long)in.T, dir);
		goto out;
	}
	printf("%s\n", key);
	fflush(stdout);

	int64_t shape[4] = { in.B, in.T, in.problem.H, in.problem.D };
	size_t count = (size_t)(shape[0] * shape[1] * shape[2] * shape[3]);
	if (!(o = malloc(count * sizeof *o))) {
		code = cli_fail("run", CLI_RUNTIME, "out of memory for the output");
		goto out;
	}
	for (size_t i = 0; i < count; i++)
		o[i] = NAN; /* a backend that skips an element fails verification */
	mta_inputs_weights(&in, &w);
	if (spec && (rc = mta_variant_check(&in.problem, &var))) {
		code = cli_fail("run", CLI_USAGE, "--variant does not fit the problem: %s",
				mta_last_error());
		goto out;
	}
	if (decode_from >= 0)
		fprintf(stderr, "mtatune run: decode from row %lld: prefill, then one token at a "
			"time (%s)\n", (long long)decode_from,
			!be ? "the float64 decode engine"
			: be->decode_load ? "the generated decode kernel"
					  : "the float64 decode engine: this backend has no decode kernel");
	if (decode_from >= 0 && be && (rc = mta_context_create(&dctx, db_path, be->name, device))) {
		code = cli_fail("run", CLI_RUNTIME, "backend %s failed (%s): %s", bname,
				mta_status_name(rc), mta_last_error());
		goto out;
	}
	rc = decode_from >= 0 ? run_decode(dctx, &in.problem, &in.q, &in.k, &in.v, &w, decode_from, o)
	   : spec ? run_variant(be, device, &var, &in.problem, &in.q, &in.k, &in.v, &w, &docs, o)
	   : be ? run_backend(be, db_path, device, &in.problem, &in.q, &in.k, &in.v, &w, &docs, o)
		: run_ref(&in.problem, &in.q, &in.k, &in.v, &w, &docs, o, count);
	if (rc) {
		/* EFORMAT: --db names a file that is not an mtatune database */
		code = cli_fail("run", rc == MTA_EFORMAT ? CLI_DATA : CLI_RUNTIME, "backend %s "
				"failed (%s): %s", bname, mta_status_name(rc), mta_last_error());
		goto out;
	}
	if ((rc = mta_npy_write(out, MTA_F32, 4, shape, o))) {
		code = cli_fail("run", CLI_RUNTIME, "%s", mta_last_error());
		goto out;
	}
	if (expected)
		code = verify(expected, o, shape, count, tol);
out:
	mta_context_free(dctx);
	free(o);
	free(cu);
	mta_inputs_free(&in);
	return code;
}
