/*
 * cmd_grad.c: `mtatune grad`: one backward on a folder of .npy inputs.
 *
 * Loads the folder as `run` does (inputs.h infers the problem) and the
 * gradient of a loss with respect to the output, dL/do [B,T,H,D]; prints the
 * problem key on stdout; computes dL/dq, dL/dk, dL/dv and the gradient of
 * every weight file present; writes them float32 into OUTDIR as dq.npy,
 * dk.npy, dv.npy and d<weight>.npy, each in its input's shape. The files
 * appear together or not at all: every one is written to a temporary name
 * first, and renamed into place only when all were written.
 *
 * How the backward is computed is a row of grad_backends[]: the float64
 * reference, and each backend of runtime/backends.c with a backward
 * (struct mta_backend's train_load: cpu, cuda-emu, cuda), run through the public API
 * (mta_forward_train, then mta_backward, on a context of that backend), so
 * `grad` also checks that path. Naming a backend without one says so.
 * With --cu-seqlens (packed documents, B = 1) the same rows run the packed
 * backward: mta_reference_backward_varlen, or mta_forward_train_varlen and
 * mta_backward_varlen.
 */
#include "tuner/cli/cli.h"
#include "runtime/backend.h"
#include "runtime/core/error.h"
#include "tuner/io/inputs.h"
#include "tuner/io/npy.h"

#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/*
 * A way to compute the backward: fill out[i] (float32, the size of input
 * file i) for every input i whose file in holds. A library status.
 */
/* Packed documents (--cu-seqlens): cu[0..ndocs], NULL for whole sequences. */
struct docs {
	const int64_t *cu;
	int64_t ndocs;
};

typedef int (*grad_fn)(const struct mta_inputs *in, const struct mta_weights *w,
		       const struct mta_tensor *dout, const struct docs *docs,
		       float *out[MTA_IN_COUNT]);

/* The float64 reference backward, each gradient rounded once to float32. */
static int grad_ref(const struct mta_inputs *in, const struct mta_weights *w,
		    const struct mta_tensor *dout, const struct docs *docs, float *out[MTA_IN_COUNT])
{
	double *d[MTA_IN_COUNT] = { 0 };
	int rc = MTA_OK;
	for (int i = 0; i < MTA_IN_COUNT && !rc; i++)
		if (out[i] && !(d[i] = malloc(in->file[i].count * sizeof *d[i])))
			rc = mta_fail(MTA_ENOMEM, "out of memory for the gradient of %s",
				      mta_input_name(i));
	struct mta_reference_grads g = {
		d[MTA_IN_Q], d[MTA_IN_K], d[MTA_IN_V], d[MTA_IN_KQ_PRE], d[MTA_IN_HEAD_PRE],
		d[MTA_IN_KQ_POST], d[MTA_IN_HEAD_POST], d[MTA_IN_HEAD_POST_LINEAR],
		d[MTA_IN_GN_WEIGHT], d[MTA_IN_GATE_W], d[MTA_IN_GATE_B], NULL,
	};
	if (!rc)
		rc = docs->cu ? mta_reference_backward_varlen(&in->problem, &in->q, &in->k, &in->v,
							      w, dout, docs->cu, docs->ndocs, &g)
			      : mta_reference_backward(&in->problem, &in->q, &in->k, &in->v, w,
						       dout, &g);
	for (int i = 0; i < MTA_IN_COUNT && !rc; i++)
		for (size_t x = 0; out[i] && x < in->file[i].count; x++)
			out[i][x] = (float)d[i][x];
	for (int i = 0; i < MTA_IN_COUNT; i++)
		free(d[i]);
	return rc;
}

/*
 * A backend's generated backward through the public API: a context of it
 * (the default database picks the variant), the saving forward, then the
 * backward from dL/do as float32 (converted when --dtype rounded it).
 */
static int grad_api(const char *backend, const struct mta_inputs *in,
		    const struct mta_weights *w, const struct mta_tensor *dout,
		    const struct docs *docs, float *out[MTA_IN_COUNT])
{
	const struct mta_problem *p = &in->problem;
	const int64_t B = in->q.shape[0], T = in->q.shape[1];
	const size_t no = (size_t)B * (size_t)T * (size_t)p->H * (size_t)p->D;
	int64_t sb = mta_saved_bytes(p, B, T);
	float *o = malloc(no * sizeof *o), *d32 = NULL;
	void *saved = sb > 0 ? malloc((size_t)sb) : NULL;
	mta_context *ctx = NULL;
	struct mta_tensor to, td = *dout;
	int rc = MTA_OK;
	if (!o || !saved) {
		rc = mta_fail(MTA_ENOMEM, "out of memory for the output and saved state (%lld bytes)",
			      (long long)sb);
		goto out;
	}
	if (dout->dtype != MTA_F32) {
		if (!(d32 = malloc(no * sizeof *d32))) {
			rc = mta_fail(MTA_ENOMEM, "out of memory for dL/do as float32");
			goto out;
		}
		size_t x = 0;
		for (int64_t b = 0; b < B; b++)
			for (int64_t t = 0; t < T; t++)
				for (int h = 0; h < p->H; h++)
					for (int e = 0; e < p->D; e++) {
						int64_t off = b * dout->stride[0] + t * dout->stride[1] +
							      h * dout->stride[2] + e * dout->stride[3];
						uint16_t u = ((const uint16_t *)dout->data)[off];
						d32[x++] = dout->dtype == MTA_BF16 ? mta_bf16_to_f32(u)
										   : mta_f16_to_f32(u);
					}
		mta_tensor_init(&td, d32, MTA_F32, B, T, p->H, p->D);
	}
	mta_tensor_init(&to, o, MTA_F32, B, T, p->H, p->D);
	struct mta_grads g = {
		out[MTA_IN_Q], out[MTA_IN_K], out[MTA_IN_V], out[MTA_IN_KQ_PRE], out[MTA_IN_HEAD_PRE],
		out[MTA_IN_KQ_POST], out[MTA_IN_HEAD_POST], out[MTA_IN_HEAD_POST_LINEAR],
		out[MTA_IN_GN_WEIGHT], out[MTA_IN_GATE_W], out[MTA_IN_GATE_B],
	};
	if ((rc = mta_context_create(&ctx, NULL, backend, 0)))
		goto out;
	/* packed: B = 1, and the saved state has the size of one sequence of total_T */
	if (docs->cu) {
		if (!(rc = mta_forward_train_varlen(ctx, p, &in->q, &in->k, &in->v, w, docs->cu,
						    docs->ndocs, &to, saved)))
			rc = mta_backward_varlen(ctx, p, &in->q, &in->k, &in->v, w, saved, &td,
						 docs->cu, docs->ndocs, &g);
	} else if (!(rc = mta_forward_train(ctx, p, &in->q, &in->k, &in->v, w, &to, saved))) {
		rc = mta_backward(ctx, p, &in->q, &in->k, &in->v, w, saved, &td, &g);
	}
out:
	mta_context_free(ctx);
	free(o);
	free(d32);
	free(saved);
	return rc;
}

static int grad_cpu(const struct mta_inputs *in, const struct mta_weights *w,
		    const struct mta_tensor *dout, const struct docs *docs, float *out[MTA_IN_COUNT])
{
	return grad_api("cpu", in, w, dout, docs, out);
}

static int grad_cuda_emu(const struct mta_inputs *in, const struct mta_weights *w,
			 const struct mta_tensor *dout, const struct docs *docs,
			 float *out[MTA_IN_COUNT])
{
	return grad_api("cuda-emu", in, w, dout, docs, out);
}

static int grad_cuda(const struct mta_inputs *in, const struct mta_weights *w,
		     const struct mta_tensor *dout, const struct docs *docs,
		     float *out[MTA_IN_COUNT])
{
	return grad_api("cuda", in, w, dout, docs, out);
}

static const struct {
	const char *name, *summary;
	grad_fn fn;
} grad_backends[] = {
	{ "ref", "the float64 reference (slow, exact)", grad_ref },
	{ "cpu", "the generated C backward (templates/mta_cpu_bwd.c)", grad_cpu },
	{ "cuda-emu", "the CUDA backward (templates/mta_cuda_bwd.cu), emulated (slow)",
	  grad_cuda_emu },
	{ "cuda", "the generated CUDA backward on the GPU", grad_cuda },
};
#define N_GRAD_BACKENDS (int)(sizeof grad_backends / sizeof grad_backends[0])

/* The --backend help: the rows above, then the runtime's backends that have no backward. */
static const char *backend_list(void)
{
	static char list[1024];
	size_t len = (size_t)snprintf(list, sizeof list, "how to compute it (default ref):");
	for (int i = 0; i < N_GRAD_BACKENDS; i++)
		len += (size_t)snprintf(list + len, sizeof list - len, "\n%-8s %s",
					grad_backends[i].name, grad_backends[i].summary);
	const char *sep = "\nno backward yet: ";
	for (int i = 0; mta_backend_at(i); i++) {
		if (mta_backend_at(i)->train_load)
			continue;
		len += (size_t)snprintf(list + len, sizeof list - len, "%s%s", sep,
					mta_backend_at(i)->name);
		sep = ", ";
	}
	return list;
}

/*
 * Write out[i] as OUTDIR/d<name>.npy for every i set, all or none: each to a
 * temporary file first; only when all are written are they renamed into
 * place. The exit status.
 */
static int write_all(const char *outdir, const struct mta_inputs *in, float *out[MTA_IN_COUNT])
{
	char (*tmp)[4096] = calloc(MTA_IN_COUNT, sizeof *tmp);
	char (*path)[4096] = calloc(MTA_IN_COUNT, sizeof *path);
	int done[MTA_IN_COUNT] = { 0 }, code = CLI_OK, rc = MTA_OK;
	if (!tmp || !path) {
		code = cli_fail("grad", CLI_RUNTIME, "out of memory");
		goto out;
	}
	if (mkdir(outdir, 0777) < 0 && errno != EEXIST) {
		code = cli_fail("grad", CLI_RUNTIME, "%s: cannot create the output folder: %s",
				outdir, strerror(errno));
		goto out;
	}
	for (int i = 0; i < MTA_IN_COUNT && !rc; i++) {
		if (!out[i])
			continue;
		const struct mta_npy *a = &in->file[i];
		int n = snprintf(path[i], sizeof path[i], "%s/d%s.npy", outdir, mta_input_name(i));
		if (n < 0 || (size_t)n >= sizeof path[i])
			rc = mta_fail(MTA_EINVAL, "%s: path too long", outdir);
		else if (!(rc = mta_npy_write_temp(path[i], MTA_F32, a->ndim, a->shape, out[i],
						   tmp[i], sizeof tmp[i])))
			done[i] = 1;
	}
	if (rc) {
		code = cli_fail("grad", CLI_RUNTIME, "%s (no gradient was written)", mta_last_error());
		for (int i = 0; i < MTA_IN_COUNT; i++)
			if (done[i])
				unlink(tmp[i]);
		goto out;
	}
	/* Renaming within one folder fails only if the folder changes under us. */
	for (int i = 0; i < MTA_IN_COUNT; i++)
		if (done[i] && mta_npy_commit(tmp[i], path[i]) && code == CLI_OK)
			code = cli_fail("grad", CLI_RUNTIME, "%s (the gradients renamed before it are "
					"new, the others as they were)", mta_last_error());
out:
	free(tmp);
	free(path);
	return code;
}

enum { O_INPUTS = 256, O_GRAD, O_OUT, O_PAD, O_LAYER, O_SCALE, O_BACKEND, O_DTYPE, O_CU_SEQLENS };

static struct cli_opt opts[] = {
	{ "inputs", O_INPUTS, "DIR", "folder of inputs, as for run (required)" },
	{ "grad-output", O_GRAD, "FILE", "dL/do, the gradient of the output [B,T,H,D] (required)" },
	{ "out", O_OUT, "OUTDIR", "folder for the gradients (required; created if missing;\n"
				  "the files are replaced all together)" },
	{ "pad-key", O_PAD, "P", "both (default), left or right: key offset of the convolutions" },
	{ "layer-id", O_LAYER, "N", "group norm layer rescale for layer N (needs gn_weight.npy)" },
	{ "scale", O_SCALE, "X", "softmax scale (default 1/sqrt(D))" },
	{ "dtype", O_DTYPE, "T", "f32 (default), bf16 or f16: round q, k, v and dL/do to T first" },
	{ "backend", O_BACKEND, "NAME", NULL /* backend_list() */ },
	{ "cu-seqlens", O_CU_SEQLENS, "FILE", "packed documents, as for run: FILE.npy holds int32\n"
					      "or int64 offsets [ndocs+1] into q, k, v of B=1;\n"
					      "each document's backward runs alone, the weight\n"
					      "gradients are summed over documents" },
	{ "help", 'h', NULL, "show this text" },
	{ 0 },
};

static const struct cli_cmd cmd = {
	"grad",
	"mtatune grad --inputs DIR --grad-output FILE.npy --out OUTDIR [options]",
	"Run one Multi-Token Attention backward: given the forward's inputs in DIR\n"
	"(as for run) and the gradient of a loss with respect to its output, write\n"
	"the gradients of q, k, v and of every weight file present into OUTDIR as\n"
	"float32 dq.npy, dk.npy, dv.npy and d<weight>.npy (dkq_pre.npy, dhead_pre.npy,\n"
	"dkq_post.npy, dhead_post.npy or dhead_post_linear.npy, dgn_weight.npy,\n"
	"dgate_w.npy, dgate_b.npy), each in its input's shape. The problem's key is\n"
	"printed on stdout.\n",
	opts, NULL,
};

int cmd_grad(int argc, char **argv)
{
	const char *dir = NULL, *gpath = NULL, *outdir = NULL, *bname = "ref", *cu_path = NULL;
	struct mta_input_options opt;
	struct cli_getopt g;
	double x;
	long n;
	int c, be = -1;

	for (struct cli_opt *o = opts; o->name; o++)
		if (o->key == O_BACKEND)
			o->help = backend_list();
	mta_input_options_init(&opt);
	cli_getopt_init(&g, &cmd);
	while ((c = cli_next(&g, argc, argv)) != -1) {
		switch (c) {
		case 'h': cli_help(stdout, &cmd); return CLI_OK;
		case O_INPUTS: dir = optarg; break;
		case O_GRAD: gpath = optarg; break;
		case O_OUT: outdir = optarg; break;
		case O_BACKEND: bname = optarg; break;
		case O_CU_SEQLENS: cu_path = optarg; break;
		case O_PAD:
			if (mta_pad_parse(optarg, &opt.pad))
				return cli_fail("grad", CLI_USAGE, "--pad-key: %s", mta_last_error());
			break;
		case O_DTYPE:
			if (mta_dtype_parse(optarg, &opt.dtype))
				return cli_fail("grad", CLI_USAGE, "--dtype: %s", mta_last_error());
			break;
		case O_LAYER:
			if (cli_parse_long(optarg, 0, 1000000, &n))
				return cli_fail("grad", CLI_USAGE, "--layer-id '%s' is not an integer in "
						"0..1000000", optarg);
			opt.layer_id = (int)n;
			break;
		case O_SCALE:
			if (cli_parse_positive(optarg, &x) || !isfinite((float)x) || (float)x == 0.0f)
				return cli_fail("grad", CLI_USAGE, "--scale '%s' is not a positive "
						"float32 number", optarg);
			opt.scale = (float)x;
			break;
		default: return cli_bad_option("grad", c, argv);
		}
	}
	if (optind < argc)
		return cli_fail("grad", CLI_USAGE, "unexpected argument '%s' (see 'mtatune grad "
				"--help')", argv[optind]);
	if (!dir || !gpath || !outdir)
		return cli_fail("grad", CLI_USAGE, "%s is required (see 'mtatune grad --help')",
				!dir ? "--inputs DIR" : !gpath ? "--grad-output FILE.npy"
				: "--out OUTDIR");
	for (int i = 0; i < N_GRAD_BACKENDS; i++)
		if (!strcmp(bname, grad_backends[i].name))
			be = i;
	if (be < 0) {
		const struct mta_backend *rb;
		if (!mta_backend_find(bname, &rb))
			fprintf(stderr, "mtatune grad: backend %s has no backward yet; available:", bname);
		else
			fprintf(stderr, "mtatune grad: unknown backend '%s'; available:", bname);
		for (int i = 0; i < N_GRAD_BACKENDS; i++)
			fprintf(stderr, " %s", grad_backends[i].name);
		fprintf(stderr, "\n");
		return CLI_USAGE;
	}
	struct stat st;
	if (stat(outdir, &st) == 0 && !S_ISDIR(st.st_mode))
		return cli_fail("grad", CLI_USAGE, "--out %s exists and is not a folder", outdir);

	struct mta_inputs in;
	struct mta_npy dfile = { 0 };
	struct mta_tensor dout;
	struct mta_weights w;
	char key[MTA_KEY_MAX];
	float *out[MTA_IN_COUNT] = { 0 };
	int64_t *cu = NULL;
	struct docs docs = { NULL, 0 };
	int code = CLI_OK, rc = mta_inputs_load(dir, &opt, &in);
	if (rc)
		return cli_fail("grad", cli_exit_status(rc), "%s", mta_last_error());
	if (in.ignored[0])
		fprintf(stderr, "mtatune grad: note: not inputs, ignored in %s: %s\n", dir, in.ignored);
	if ((rc = mta_problem_key(&in.problem, key, sizeof key)) ||
	    (rc = mta_inputs_load_dout(&in, gpath, &dfile, &dout))) {
		code = cli_fail("grad", cli_exit_status(rc), "%s", mta_last_error());
		goto out;
	}
	if (cu_path) {
		if ((code = cli_load_cu_seqlens("grad", cu_path, dir, in.B, in.T, &cu, &docs.ndocs)))
			goto out;
		docs.cu = cu;
	}
	printf("%s\n", key);
	fflush(stdout);

	for (int i = 0; i < MTA_IN_COUNT; i++) {
		if (!in.file[i].data)
			continue;
		if (!(out[i] = malloc(in.file[i].count * sizeof *out[i] + 1))) {
			code = cli_fail("grad", CLI_RUNTIME, "out of memory for the gradients");
			goto out;
		}
		for (size_t e = 0; e < in.file[i].count; e++)
			out[i][e] = NAN; /* an element a backend skips cannot pass for a value */
	}
	mta_inputs_weights(&in, &w);
	if ((rc = grad_backends[be].fn(&in, &w, &dout, &docs, out))) {
		code = cli_fail("grad", CLI_RUNTIME, "backend %s failed (%s): %s", bname,
				mta_status_name(rc), mta_last_error());
		goto out;
	}
	code = write_all(outdir, &in, out);
out:
	for (int i = 0; i < MTA_IN_COUNT; i++)
		free(out[i]);
	free(cu);
	mta_npy_free(&dfile);
	mta_inputs_free(&in);
	return code;
}
