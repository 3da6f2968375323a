/*
 * inputs.c: an inputs folder -> problem, tensors and weights (see inputs.h).
 *
 * Loading is three passes: read every known file that exists (converting
 * weights to float32 and q, k, v to the requested element type), check each
 * file's shape against q's sizes with a message that names both files, then
 * build the problem and let mta_problem_validate catch what is left. Each
 * shape rule lives in one place here, next to the message that explains it.
 */
#include "tuner/io/inputs.h"
#include "runtime/core/error.h"
#include "runtime/core/strbuf.h"

#include <dirent.h>
#include <errno.h>
#include <math.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

static const char *const names[MTA_IN_COUNT] = {
	"q", "k", "v", "kq_pre", "head_pre", "kq_post", "head_post",
	"head_post_linear", "gn_weight", "gate_w", "gate_b",
};

const char *mta_input_name(int i)
{
	return i >= 0 && i < MTA_IN_COUNT ? names[i] : NULL;
}

void mta_input_options_init(struct mta_input_options *o)
{
	memset(o, 0, sizeof *o);
	o->pad = MTA_PAD_BOTH;
	o->layer_id = -1;
	o->dtype = MTA_F32;
}

void mta_inputs_free(struct mta_inputs *in)
{
	if (!in)
		return;
	for (int i = 0; i < MTA_IN_COUNT; i++)
		mta_npy_free(&in->file[i]);
	memset(in, 0, sizeof *in);
}

void mta_inputs_weights(const struct mta_inputs *in, struct mta_weights *w)
{
	memset(w, 0, sizeof *w);
	w->kq_pre = in->file[MTA_IN_KQ_PRE].data;
	w->head_pre = in->file[MTA_IN_HEAD_PRE].data;
	w->kq_post = in->file[MTA_IN_KQ_POST].data;
	w->head_post = in->file[MTA_IN_HEAD_POST].data;
	w->head_post_linear = in->file[MTA_IN_HEAD_POST_LINEAR].data;
	w->gn_weight = in->file[MTA_IN_GN_WEIGHT].data;
	w->gate_w = in->file[MTA_IN_GATE_W].data;
	if (in->file[MTA_IN_GATE_B].data)
		w->gate_b = *(const float *)in->file[MTA_IN_GATE_B].data;
	w->layer_id = in->layer_id;
}

/* Note the .npy files in dir that are not inputs, for in->ignored. */
static int scan(const char *dir, struct mta_inputs *in)
{
	DIR *d = opendir(dir);
	struct dirent *e;
	if (!d)
		return mta_fail(MTA_EIO, "%s: cannot open the inputs folder: %s", dir, strerror(errno));
	while ((e = readdir(d))) {
		size_t n = strlen(e->d_name);
		if (n < 5 || strcmp(e->d_name + n - 4, ".npy"))
			continue;
		int known = 0;
		for (int i = 0; i < MTA_IN_COUNT; i++)
			known |= n - 4 == strlen(names[i]) && !strncmp(e->d_name, names[i], n - 4);
		/* a name is the user's bytes: shown escaped, never raw to a terminal */
		char shown[1100];
		mta_escape(e->d_name, n, shown, sizeof shown);
		size_t used = strlen(in->ignored), sep = used ? 2 : 0, sl = strlen(shown);
		if (known || used + sep + sl + 1 > sizeof in->ignored)
			continue; /* a note, not a list: past its size, names are dropped */
		memcpy(in->ignored + used, ", ", sep);
		memcpy(in->ignored + used + sep, shown, sl + 1);
	}
	closedir(d);
	return MTA_OK;
}

/*
 * Refuse a non-finite element of a (float32 or, after rounding, bf16/f16):
 * NaN or Inf in an input would only come out as NaN in every output row it
 * touches, far from its cause, so it is named here with its position. what
 * is "" for the file's own values, or the type whose rounding overflowed.
 */
static int check_finite(const char *path, const struct mta_npy *a, const char *what)
{
	for (size_t i = 0; i < a->count; i++) {
		uint16_t h = a->dtype == MTA_F32 ? 0 : ((const uint16_t *)a->data)[i];
		float x = a->dtype == MTA_F32 ? ((const float *)a->data)[i]
			  : a->dtype == MTA_BF16 ? mta_bf16_to_f32(h) : mta_f16_to_f32(h);
		if (isfinite(x))
			continue;
		char idx[200] = "";
		size_t r = i;
		for (int d = a->ndim - 1; d >= 0; d--) {
			char part[32];
			snprintf(part, sizeof part, "%" PRId64 "%s", (int64_t)(r % (size_t)a->shape[d]),
				 d == a->ndim - 1 ? "" : ",");
			r /= (size_t)a->shape[d];
			size_t pl = strlen(part), el = strlen(idx);
			memmove(idx + pl, idx, el + 1);
			memcpy(idx, part, pl);
		}
		if (what[0])
			return mta_fail(MTA_EFORMAT, "%s: element [%s] overflows %s (rounds to %g); "
					"inputs must be finite in the element type", path, idx, what,
					(double)x);
		return mta_fail(MTA_EFORMAT, "%s: element [%s] is %g; inputs must be finite (NaN and "
				"Inf are refused)", path, idx, (double)x);
	}
	return MTA_OK;
}

/*
 * Read path into *a as float32, finite; a tensor (q, k, v, dout) is then
 * rounded to dtype (MTA_F32: left as is), finite in that type too.
 */
static int read_one(const char *path, int tensor, int dtype, struct mta_npy *a)
{
	int rc;
	if ((rc = mta_npy_read(path, a)))
		return rc;
	if ((rc = mta_npy_convert(a, MTA_F32)))
		return mta_wrap(rc, "%s", path);
	if ((rc = check_finite(path, a, "")))
		return rc;
	if (tensor && dtype != MTA_F32 &&
	    ((rc = mta_npy_convert(a, dtype)) ||
	     (rc = check_finite(path, a, mta_dtype_name(dtype)))))
		return rc == MTA_EFORMAT ? rc : mta_wrap(rc, "%s", path);
	return MTA_OK;
}

/* Read every known file present; q, k, v must be. */
static int read_files(const char *dir, int dtype, struct mta_inputs *in)
{
	char path[4096];
	struct stat st;
	int rc;
	for (int i = 0; i < MTA_IN_COUNT; i++) {
		snprintf(path, sizeof path, "%s/%s.npy", dir, names[i]);
		if (stat(path, &st) < 0 && errno == ENOENT) {
			if (i <= MTA_IN_V)
				return mta_fail(MTA_EIO, "%s: missing (an inputs folder holds q.npy, "
						"k.npy, v.npy and the weights)", path);
			continue;
		}
		if ((rc = read_one(path, i <= MTA_IN_V, dtype, &in->file[i])))
			return rc;
	}
	return MTA_OK;
}

int mta_inputs_load_dout(const struct mta_inputs *in, const char *path, struct mta_npy *a,
			 struct mta_tensor *t)
{
	const struct mta_problem *p = &in->problem;
	char s[200];
	memset(a, 0, sizeof *a);
	int rc = read_one(path, 1, p->dtype, a);
	if (rc)
		return rc;
	if (a->ndim != 4 || a->shape[0] != in->B || a->shape[1] != in->T || a->shape[2] != p->H ||
	    a->shape[3] != p->D)
		return mta_fail(MTA_ESHAPE, "%s has shape %s; the gradient of the output must be "
				"[B,T,H,D] = [%" PRId64 ",%" PRId64 ",%d,%d] as q.npy is", path,
				mta_npy_shape_str(a->ndim, a->shape, s, sizeof s), in->B, in->T,
				p->H, p->D);
	mta_tensor_init(t, a->data, a->dtype, a->shape[0], a->shape[1], a->shape[2], a->shape[3]);
	return MTA_OK;
}

/* "f has shape [..]; expected form" unless f has ndim dimensions. */
static int rank(const char *dir, const struct mta_npy *a, int i, int ndim, const char *form)
{
	char s[200];
	if (a->ndim == ndim)
		return MTA_OK;
	return mta_fail(MTA_ESHAPE, "%s: %s.npy has shape %s; expected %s", dir, names[i],
			mta_npy_shape_str(a->ndim, a->shape, s, sizeof s), form);
}

/* "f has X=got but g has X=want" unless got == want. */
static int same(const char *dir, int i, const char *what, int64_t got, int j, int64_t want)
{
	if (got == want)
		return MTA_OK;
	return mta_fail(MTA_ESHAPE, "%s: %s.npy has %s=%" PRId64 " but %s.npy has %s=%" PRId64,
			dir, names[i], what, got, names[j], what, want);
}

/* q, k, v: [B,T,H,D] and [B,T,Hkv,D] with matching B, T, D. */
static int check_qkv(const char *dir, struct mta_inputs *in)
{
	const struct mta_npy *q = &in->file[MTA_IN_Q], *k = &in->file[MTA_IN_K],
			     *v = &in->file[MTA_IN_V];
	static const char *dims[] = { "B", "T", "Hkv", "D" };
	int rc;
	if ((rc = rank(dir, q, MTA_IN_Q, 4, "[B,T,H,D]")) ||
	    (rc = rank(dir, k, MTA_IN_K, 4, "[B,T,Hkv,D]")) ||
	    (rc = rank(dir, v, MTA_IN_V, 4, "[B,T,Hkv,D]")))
		return rc;
	for (int d = 0; d < 4; d++)
		if ((rc = same(dir, MTA_IN_V, dims[d], v->shape[d], MTA_IN_K, k->shape[d])))
			return rc;
	for (int d = 0; d < 4; d++)
		if (d != 2 && (rc = same(dir, MTA_IN_K, dims[d], k->shape[d], MTA_IN_Q, q->shape[d])))
			return rc;
	if (q->shape[0] < 1 || q->shape[1] < 1)
		return mta_fail(MTA_ESHAPE, "%s: q.npy has B=%" PRId64 ", T=%" PRId64 "; both must be "
				"at least 1", dir, q->shape[0], q->shape[1]);
	if (q->shape[2] < 1 || q->shape[2] > MTA_MAX_HEADS || k->shape[2] < 1 ||
	    q->shape[3] < 1 || q->shape[3] > MTA_MAX_HEAD_DIM)
		return mta_fail(MTA_ESHAPE, "%s: q.npy has H=%" PRId64 ", D=%" PRId64 " and k.npy "
				"Hkv=%" PRId64 "; supported are 1..%d heads of size 1..%d", dir,
				q->shape[2], q->shape[3], k->shape[2], MTA_MAX_HEADS, MTA_MAX_HEAD_DIM);
	if (q->shape[2] % k->shape[2])
		return mta_fail(MTA_ESHAPE, "%s: q.npy has H=%" PRId64 " heads, not a multiple of "
				"k.npy's Hkv=%" PRId64, dir, q->shape[2], k->shape[2]);
	return MTA_OK;
}

/* A key-query kernel file [H,1,cq,ck] -> *cq, *ck (0 when absent). */
static int kernel(const char *dir, const struct mta_inputs *in, int i, int pad, int *cq, int *ck)
{
	const struct mta_npy *a = &in->file[i];
	int64_t H = in->file[MTA_IN_Q].shape[2];
	int rc;
	*cq = *ck = 0;
	if (!a->data)
		return MTA_OK;
	if ((rc = rank(dir, a, i, 4, "[H,1,cq,ck]")) ||
	    (rc = same(dir, i, "H", a->shape[0], MTA_IN_Q, H)))
		return rc;
	if (a->shape[1] != 1)
		return mta_fail(MTA_ESHAPE, "%s: %s.npy has %" PRId64 " in dimension 1; expected "
				"[H,1,cq,ck]", dir, names[i], a->shape[1]);
	if (a->shape[2] < 1 || a->shape[2] > MTA_MAX_KERNEL || a->shape[3] < 1 ||
	    a->shape[3] > MTA_MAX_KERNEL)
		return mta_fail(MTA_ESHAPE, "%s: %s.npy has a %" PRId64 "x%" PRId64 " kernel; cq and "
				"ck must be 1..%d", dir, names[i], a->shape[2], a->shape[3],
				MTA_MAX_KERNEL);
	if (pad == MTA_PAD_BOTH && a->shape[3] % 2 == 0)
		return mta_fail(MTA_EINVAL, "%s: %s.npy has an even ck=%" PRId64 ", but pad_key both "
				"needs an odd one (use pad_key left or right)", dir, names[i],
				a->shape[3]);
	*cq = (int)a->shape[2];
	*ck = (int)a->shape[3];
	return MTA_OK;
}

/* The head mixing, norm and gate files against H and D. */
static int check_mixing(const char *dir, const struct mta_inputs *in, struct mta_problem *p)
{
	const struct mta_npy *f = in->file;
	int64_t H = p->H, D = p->D;
	int rc;
	if (f[MTA_IN_HEAD_PRE].data) {
		if ((rc = rank(dir, &f[MTA_IN_HEAD_PRE], MTA_IN_HEAD_PRE, 2, "[H,H]")) ||
		    (rc = same(dir, MTA_IN_HEAD_PRE, "H", f[MTA_IN_HEAD_PRE].shape[0], MTA_IN_Q, H)) ||
		    (rc = same(dir, MTA_IN_HEAD_PRE, "H", f[MTA_IN_HEAD_PRE].shape[1], MTA_IN_Q, H)))
			return rc;
		p->head_pre = 1;
	}
	if (f[MTA_IN_HEAD_POST].data && f[MTA_IN_HEAD_POST_LINEAR].data)
		return mta_fail(MTA_ESHAPE, "%s: both head_post.npy and head_post_linear.npy are "
				"present; the post-softmax head mixing is one or the other", dir);
	if (f[MTA_IN_HEAD_POST].data) {
		const struct mta_npy *a = &f[MTA_IN_HEAD_POST];
		if ((rc = rank(dir, a, MTA_IN_HEAD_POST, 3, "[H/c,c,c]")))
			return rc;
		if (a->shape[1] != a->shape[2] || a->shape[1] < 1 || a->shape[0] * a->shape[1] != H)
			return mta_fail(MTA_ESHAPE, "%s: head_post.npy has shape [%" PRId64 ",%" PRId64
					",%" PRId64 "]; expected [H/c,c,c] with q.npy's H=%" PRId64,
					dir, a->shape[0], a->shape[1], a->shape[2], H);
		p->head_post = MTA_HPOST_CONV;
		p->hc = (int)a->shape[1];
	}
	if (f[MTA_IN_HEAD_POST_LINEAR].data) {
		const struct mta_npy *a = &f[MTA_IN_HEAD_POST_LINEAR];
		if ((rc = rank(dir, a, MTA_IN_HEAD_POST_LINEAR, 2, "[H,H]")) ||
		    (rc = same(dir, MTA_IN_HEAD_POST_LINEAR, "H", a->shape[0], MTA_IN_Q, H)) ||
		    (rc = same(dir, MTA_IN_HEAD_POST_LINEAR, "H", a->shape[1], MTA_IN_Q, H)))
			return rc;
		p->head_post = MTA_HPOST_LINEAR;
	}
	if (f[MTA_IN_GN_WEIGHT].data) {
		if ((rc = rank(dir, &f[MTA_IN_GN_WEIGHT], MTA_IN_GN_WEIGHT, 1, "[D]")) ||
		    (rc = same(dir, MTA_IN_GN_WEIGHT, "D", f[MTA_IN_GN_WEIGHT].shape[0], MTA_IN_Q, D)))
			return rc;
		p->gn = 1;
	}
	if (!f[MTA_IN_GATE_W].data != !f[MTA_IN_GATE_B].data)
		return mta_fail(MTA_ESHAPE, "%s: %s.npy is present but %s.npy is not (the gate needs "
				"both)", dir, f[MTA_IN_GATE_W].data ? "gate_w" : "gate_b",
				f[MTA_IN_GATE_W].data ? "gate_b" : "gate_w");
	if (f[MTA_IN_GATE_W].data) {
		if ((rc = rank(dir, &f[MTA_IN_GATE_W], MTA_IN_GATE_W, 2, "[1,D]")) ||
		    (rc = rank(dir, &f[MTA_IN_GATE_B], MTA_IN_GATE_B, 1, "[1]")) ||
		    (rc = same(dir, MTA_IN_GATE_W, "D", f[MTA_IN_GATE_W].shape[1], MTA_IN_Q, D)))
			return rc;
		if (f[MTA_IN_GATE_W].shape[0] != 1 || f[MTA_IN_GATE_B].shape[0] != 1)
			return mta_fail(MTA_ESHAPE, "%s: gate_w.npy [%" PRId64 ",%" PRId64 "] and "
					"gate_b.npy [%" PRId64 "] must be [1,D] and [1] (one gate)",
					dir, f[MTA_IN_GATE_W].shape[0], f[MTA_IN_GATE_W].shape[1],
					f[MTA_IN_GATE_B].shape[0]);
		p->gate = 1;
	}
	return MTA_OK;
}

int mta_inputs_load(const char *dir, const struct mta_input_options *opt,
		    struct mta_inputs *in)
{
	struct mta_input_options def;
	struct mta_problem *p = &in->problem;
	int rc;

	memset(in, 0, sizeof *in);
	if (!opt) {
		mta_input_options_init(&def);
		opt = &def;
	}
	if (opt->dtype != MTA_F32 && opt->dtype != MTA_BF16 && opt->dtype != MTA_F16) {
		rc = mta_fail(MTA_EINVAL, "%s: element type %d is not f32, bf16 or f16", dir,
			      opt->dtype);
		goto out;
	}
	if ((rc = scan(dir, in)) || (rc = read_files(dir, opt->dtype, in)) ||
	    (rc = check_qkv(dir, in)))
		goto out;
	const struct mta_npy *q = &in->file[MTA_IN_Q];
	mta_problem_init(p, (int)q->shape[2], (int)in->file[MTA_IN_K].shape[2], (int)q->shape[3]);
	p->pad = opt->pad;
	p->scale = opt->scale;
	p->dtype = opt->dtype;
	if ((rc = kernel(dir, in, MTA_IN_KQ_PRE, opt->pad, &p->cq, &p->ck)) ||
	    (rc = kernel(dir, in, MTA_IN_KQ_POST, opt->pad, &p->cq2, &p->ck2)) ||
	    (rc = check_mixing(dir, in, p)))
		goto out;
	if (opt->layer_id >= 0) {
		if (!p->gn) {
			rc = mta_fail(MTA_EINVAL, "%s: layer_id %d turns on the group norm's layer "
				      "rescale, but there is no gn_weight.npy", dir, opt->layer_id);
			goto out;
		}
		p->gn_rescale = 1;
		in->layer_id = opt->layer_id;
	}
	if ((rc = mta_problem_validate(p))) {
		rc = mta_wrap(rc, "%s", dir);
		goto out;
	}
	in->B = q->shape[0];
	in->T = q->shape[1];
	for (int i = MTA_IN_Q; i <= MTA_IN_V; i++) {
		const struct mta_npy *a = &in->file[i];
		struct mta_tensor *t = i == MTA_IN_Q ? &in->q : i == MTA_IN_K ? &in->k : &in->v;
		mta_tensor_init(t, a->data, a->dtype, a->shape[0], a->shape[1], a->shape[2],
				a->shape[3]);
	}
	rc = mta_check_tensors(p, &in->q, &in->k, &in->v, NULL, NULL, NULL);
	if (rc)
		rc = mta_wrap(rc, "%s", dir);
out:
	if (rc)
		mta_inputs_free(in);
	return rc;
}
