/*
 * inputs.h: load one MTA forward's inputs from a folder of .npy files.
 *
 * The folder holds q.npy [B,T,H,D], k.npy and v.npy [B,T,Hkv,D] and the
 * weights present in the problem, named and shaped as the reference's PyTorch
 * parameters (MTA.md), so a user can np.save a checkpoint's parameters:
 *
 *   kq_pre.npy [H,1,cq,ck]     head_pre.npy [H,H]        kq_post.npy [H,1,cq2,ck2]
 *   head_post.npy [H/c,c,c]    head_post_linear.npy [H,H]
 *   gn_weight.npy [D]          gate_w.npy [1,D]          gate_b.npy [1]
 *
 * The problem is inferred from which files are present and their shapes;
 * options the files cannot carry (pad_key, layer_id, scale, element type)
 * come from struct mta_input_options. Any float dtype npy.h reads is
 * accepted. Every inconsistency is refused with a message naming the files
 * and sizes involved (MTA_ESHAPE; MTA_EINVAL for options that contradict the
 * files; MTA_EIO / MTA_EFORMAT for missing or unreadable files). Other files
 * in the folder (expected.npy, config.json, ...) are ignored; the names of
 * ignored .npy files are reported in mta_inputs.ignored so a caller can warn
 * about a misspelt weight.
 */
#ifndef MTA_INPUTS_H
#define MTA_INPUTS_H

#include "runtime/mta.h"
#include "tuner/io/npy.h"

/* The files of an inputs folder, in this order; see mta_input_name(). */
enum {
	MTA_IN_Q, MTA_IN_K, MTA_IN_V,
	MTA_IN_KQ_PRE, MTA_IN_HEAD_PRE, MTA_IN_KQ_POST, MTA_IN_HEAD_POST,
	MTA_IN_HEAD_POST_LINEAR, MTA_IN_GN_WEIGHT, MTA_IN_GATE_W, MTA_IN_GATE_B,
	MTA_IN_COUNT
};

/* File stem of input i, e.g. "kq_pre" (NULL when out of range). */
const char *mta_input_name(int i);

struct mta_input_options {
	int pad;      /* mta_pad (default MTA_PAD_BOTH) */
	int layer_id; /* >= 0: turn on the group norm's layer rescale (needs gn_weight); -1: off */
	float scale;  /* softmax scale; 0 (default) means 1/sqrt(D) */
	int dtype;    /* MTA_F32 (default), MTA_BF16, MTA_F16: what q, k, v are rounded to */
};

void mta_input_options_init(struct mta_input_options *o);

struct mta_inputs {
	struct mta_problem problem;
	/*
	 * Views of file[MTA_IN_Q/K/V]: contiguous, in problem.dtype. The data
	 * were converted to float32 and then rounded to problem.dtype, which is
	 * what a kernel reading them in that type sees.
	 */
	struct mta_tensor q, k, v;
	int64_t B, T;
	int layer_id;                     /* options' layer_id */
	struct mta_npy file[MTA_IN_COUNT]; /* data NULL where absent; weights float32 */
	char ignored[256];                /* ".npy files not read, e.g. "expected.npy" */
};

/*
 * Load dir into *in (zeroed first). opt NULL means the defaults. On failure
 * everything loaded so far is freed; mta_inputs_free is harmless either way.
 */
int mta_inputs_load(const char *dir, const struct mta_input_options *opt,
		    struct mta_inputs *in);

/* Point w at in's weights (no copies: valid until mta_inputs_free). */
void mta_inputs_weights(const struct mta_inputs *in, struct mta_weights *w);

/*
 * The gradient of a loss with respect to the forward's output, dL/do, for
 * a backward on in: read path into *a (free with mta_npy_free, even on
 * failure) as q.npy is read (any float dtype; converted to float32, then
 * rounded to in's element type; NaN and Inf refused by position), check
 * that it is [B,T,H,D] as in's output is, and point *t at it.
 */
int mta_inputs_load_dout(const struct mta_inputs *in, const char *path, struct mta_npy *a,
			 struct mta_tensor *t);

void mta_inputs_free(struct mta_inputs *in);

#endif
