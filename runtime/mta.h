/*
 * mta.h: the public interface of mtatune's runtime library.
 *
 * Multi-Token Attention (MTA) forward, as specified in MTA.md: causal
 * attention whose logits (before softmax) and probabilities (after softmax)
 * may be convolved over a cq x ck window of queries and keys and mixed across
 * heads, followed by an optional RMS group norm and a sigmoid gate.
 *
 * Every function returns an int status (MTA_OK or one of the MTA_E* codes)
 * and leaves a human-readable message for the calling thread in
 * mta_last_error(); a call that succeeds clears it. Nothing here exits the
 * process.
 */
#ifndef MTA_H
#define MTA_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/*
 * Every function below, and nothing else, is exported from libmtatune.so
 * (the library is built with -fvisibility=hidden; a test compares nm -D
 * with this header).
 */
#if defined(__GNUC__)
#define MTA_API __attribute__((visibility("default")))
#else
#define MTA_API
#endif

/* ---- status codes ---------------------------------------------------- */
enum {
	MTA_OK = 0,
	MTA_EINVAL = 1,      /* bad argument or invalid problem */
	MTA_ENOMEM = 2,      /* allocation failed */
	MTA_EIO = 3,         /* file could not be read or written */
	MTA_EFORMAT = 4,     /* malformed file (npy header, database, ...) */
	MTA_ESHAPE = 5,      /* tensor shape or dtype does not fit the problem */
	MTA_ECOMPILE = 6,    /* a kernel failed to compile */
	MTA_EDB = 7,         /* database error */
	MTA_ENODEV = 8,      /* no such device / no driver */
	MTA_ENOTFOUND = 9,   /* no such record, problem not exported, ... */
	MTA_EUNSUPPORTED = 10, /* valid request this build cannot serve */
	MTA_EKERNEL = 11,    /* a kernel crashed, hung or returned an error */
	MTA_EVERIFY = 12,    /* a kernel's output did not match the reference */
	MTA_EINTR = 13,      /* interrupted by a signal */
};

/* The message describing the last failure on this thread ("" if none). */
MTA_API const char *mta_last_error(void);
/* Short name of a status code, e.g. "EINVAL". */
MTA_API const char *mta_status_name(int status);

/* ---- element types --------------------------------------------------- */
typedef enum {
	MTA_F32 = 0,
	MTA_BF16 = 1,
	MTA_F16 = 2,
	MTA_F64 = 3, /* only for tensors read from .npy and the reference */
} mta_dtype;

MTA_API const char *mta_dtype_name(mta_dtype t); /* "f32", "bf16", "f16", "f64" */
MTA_API size_t mta_dtype_size(mta_dtype t);

/* bf16: the upper 16 bits of an IEEE float32, rounded to nearest even. */
MTA_API uint16_t mta_f32_to_bf16(float f);
MTA_API float mta_bf16_to_f32(uint16_t h);
/* f16: IEEE binary16, rounded to nearest even, with subnormals. */
MTA_API uint16_t mta_f32_to_f16(float f);
MTA_API float mta_f16_to_f32(uint16_t h);

/* ---- the problem ----------------------------------------------------- */
typedef enum { MTA_PAD_BOTH = 0, MTA_PAD_LEFT = 1, MTA_PAD_RIGHT = 2 } mta_pad;

typedef enum {
	MTA_HPOST_NONE = 0,
	MTA_HPOST_CONV = 1,   /* head_post [H/c, c, c], groups of c heads */
	MTA_HPOST_LINEAR = 2, /* head_post_linear [H, H] */
} mta_hpost;

/*
 * Everything a kernel is specialised on. B and T are not part of it: they
 * stay run-time sizes. A zero cq (or cq2) means "no convolution"; then ck
 * (ck2) is zero too. scale 0 means the default 1/sqrt(D).
 */
struct mta_problem {
	int H, Hkv, D;
	int cq, ck;        /* pre-softmax key-query kernel (kq_pre) */
	int head_pre;      /* 1: linear H x H head mixing before softmax */
	int cq2, ck2;      /* post-softmax key-query kernel (kq_post) */
	int head_post;     /* mta_hpost */
	int hc;            /* group size c when head_post == MTA_HPOST_CONV */
	int pad;           /* mta_pad: key offset of both convolutions */
	int gn;            /* RMS group norm with gn_weight */
	int gn_rescale;    /* also scale by 1-(0.8-0.6*exp(-0.3*layer_id)) */
	int gate;          /* sigmoid gate with gate_w, gate_b */
	float scale;       /* 0: 1/sqrt(D) */
	int dtype;         /* mta_dtype of q, k, v: MTA_F32, MTA_BF16, MTA_F16 */
};

/* Longest canonical key, including the terminating NUL. */
#define MTA_KEY_MAX 160
/* Longest variant spec (e.g. cpu:v1,bq=64,bk=128,...), including the NUL. */
#define MTA_SPEC_MAX 128

/* Limits the validator enforces (sizes beyond these are refused). */
#define MTA_MAX_HEADS 256
#define MTA_MAX_HEAD_DIM 1024
#define MTA_MAX_KERNEL 64

/* A problem with every option off: plain causal attention, f32. */
MTA_API void mta_problem_init(struct mta_problem *p, int H, int Hkv, int D);
/* MTA_OK, or MTA_EINVAL with a message saying which rule is broken. */
MTA_API int mta_problem_validate(const struct mta_problem *p);
/*
 * Canonical text key, e.g. h16kv16d96-pre6x11-hpre-post6x11-hc16-both-gn-gate-bf16.
 * Validates first. buf must hold MTA_KEY_MAX bytes.
 */
MTA_API int mta_problem_key(const struct mta_problem *p, char *buf, size_t n);
/* Parse a key back into a validated problem (also accepts non-canonical order). */
MTA_API int mta_problem_from_key(const char *key, struct mta_problem *p);
/* The effective softmax scale (p->scale or 1/sqrt(D)). */
MTA_API double mta_problem_scale(const struct mta_problem *p);
/* Key offset ok of a convolution of width ck under p->pad. */
MTA_API int mta_pad_offset(int pad, int ck);
MTA_API const char *mta_pad_name(int pad); /* "both", "left", "right" */
MTA_API int mta_pad_parse(const char *s, int *pad);
MTA_API int mta_dtype_parse(const char *s, int *dtype); /* f32|bf16|f16 (+ aliases) */

/* ---- tensors and weights ---------------------------------------------- */
/* Where a tensor's or a weight's memory is (struct mta_tensor's memory). */
enum mta_memory {
	MTA_MEM_HOST = 0,   /* host memory (the default: 0) */
	MTA_MEM_DEVICE = 1, /* device memory of the context's device (mta_attention) */
};

/*
 * A 4-d strided view. Strides are in elements, not bytes. q is [B,T,H,D],
 * k and v [B,T,Hkv,D], o [B,T,H,D] (float32 for mta_forward; float32,
 * bf16 or f16 for mta_attention). memory says where data points (enum
 * mta_memory); it comes last, so initialisers written before it existed
 * still mean host memory.
 */
struct mta_tensor {
	void *data;
	int dtype;          /* mta_dtype */
	int64_t shape[4];
	int64_t stride[4];
	int memory;         /* enum mta_memory; 0: host */
};

/* Fill a contiguous (C-order) view of host memory (memory = MTA_MEM_HOST). */
MTA_API void mta_tensor_init(struct mta_tensor *t, void *data, int dtype,
		     int64_t d0, int64_t d1, int64_t d2, int64_t d3);

/*
 * Weights, float32, contiguous, in the shapes of the reference's PyTorch
 * parameters. A pointer is used only if the problem asks for that part.
 */
struct mta_weights {
	const float *kq_pre;           /* [H,1,cq,ck] */
	const float *head_pre;         /* [H,H] (out, in) */
	const float *kq_post;          /* [H,1,cq2,ck2] */
	const float *head_post;        /* [H/c,c,c] (group, in, out) */
	const float *head_post_linear; /* [H,H] (out, in) */
	const float *gn_weight;        /* [D] */
	const float *gate_w;           /* [1,D] */
	float gate_b;                  /* gate_b[0] */
	int layer_id;                  /* for gn_rescale */
	/*
	 * Optional: gate_b as a [1] array in the weights' memory. When set it
	 * is read where the kernel runs, at each call (mta_attention), instead
	 * of the value gate_b: a device-resident bias is then never read by
	 * the host (no synchronisation) and an update in place is seen (but for
	 * host weights on a cuda context, copied at mta_weights_load). The
	 * host functions (the references, decode, the CPU backward) read it
	 * too when set, as host memory.
	 */
	const float *gate_b_ptr;
};

/* The group-norm layer rescale factor 1-(0.8-0.6*exp(-0.3*layer_id)). */
MTA_API double mta_layer_rescale(int layer_id);

/*
 * Check that q, k, v (and o when not NULL) have the shapes and dtypes the
 * problem needs and agree on B and T; sets *B and *T.
 */
MTA_API int mta_check_tensors(const struct mta_problem *p, const struct mta_tensor *q,
		      const struct mta_tensor *k, const struct mta_tensor *v,
		      const struct mta_tensor *o, int64_t *B, int64_t *T);

/*
 * Check that w (NULL: no weights) holds every weight the problem uses;
 * MTA_EINVAL naming the first one missing.
 */
MTA_API int mta_check_weights(const struct mta_problem *p, const struct mta_weights *w);

/*
 * The float64 reference forward of MTA.md, step by step. q, k, v may be of
 * any dtype (converted exactly to double); out is contiguous [B,T,H,D]
 * doubles. Memory is O(H*(cq+cq2)*T), not O(T^2): rows are streamed with a
 * ring buffer of the halo rows the convolutions need.
 */
MTA_API int mta_reference(const struct mta_problem *p, const struct mta_tensor *q,
		  const struct mta_tensor *k, const struct mta_tensor *v,
		  const struct mta_weights *w, double *out);
/*
 * mta_reference, and in mag (contiguous [B,T,H,D] doubles) each output's
 * terms' magnitudes: sum_j |P'_ij| |v_jd| with |P'| carried through the
 * post-softmax convolution and mixing as sums of |weight| x magnitude, then
 * scaled as the output is by group norm and gate; mag_i >= |out_i|, and
 * much larger where the terms cancel (mta_compare_mag).
 */
MTA_API int mta_reference_mag(const struct mta_problem *p, const struct mta_tensor *q,
			      const struct mta_tensor *k, const struct mta_tensor *v,
			      const struct mta_weights *w, double *out, double *mag);

/*
 * Where mta_reference_backward writes: contiguous float64 arrays in the
 * shapes of what they are the gradient of. dq, dk, dv are always written;
 * a weight's gradient only when the problem uses that weight (the pointer
 * must then be set; the others are not touched and may be NULL).
 */
struct mta_reference_grads {
	double *dq;               /* [B,T,H,D] */
	double *dk, *dv;          /* [B,T,Hkv,D]: summed over the heads sharing them */
	double *kq_pre;           /* [H,1,cq,ck] */
	double *head_pre;         /* [H,H] */
	double *kq_post;          /* [H,1,cq2,ck2] */
	double *head_post;        /* [H/c,c,c] */
	double *head_post_linear; /* [H,H] */
	double *gn_weight;        /* [D] */
	double *gate_w;           /* [1,D] */
	double *gate_b;           /* [1] */
	/*
	 * Optional (NULL: not computed): buffers like the above, in the same
	 * shapes and for the same gradients, into which the reference writes
	 * each gradient element's magnitude: the sum of |term| over the terms
	 * that element adds up (over rows, keys, heads and batches), each term
	 * the product of its factors' magnitudes. A float32 kernel's rounding
	 * error in a sum is bounded by a multiple of epsilon times this, not
	 * times the sum, which cancellation can make arbitrarily small:
	 * mta_compare_grad_mag judges against it. Its own mag is not read.
	 */
	struct mta_reference_grads *mag;
};

/*
 * The float64 reference backward: given the inputs of mta_reference and
 * dout = dL/do [B,T,H,D] (any dtype and strides, like q), the gradients of
 * L with respect to q, k, v and every weight the problem uses, into g.
 * layer_id and the scale are constants, not differentiated. Inputs are
 * read exactly as mta_reference reads them, so the result is the gradient
 * of the function mta_reference computes.
 *
 * Memory is O(H*(cq+cq2)*T) like the forward, never T x T: query rows are
 * recomputed forward in order and their gradients flow back through ring
 * buffers of the cq2-1 and cq-1 rows the convolutions couple them to
 * (reference_bwd.c gives the exact size). It is slow (a few times the
 * forward's time): it is the judge of backward kernels, not one.
 */
MTA_API int mta_reference_backward(const struct mta_problem *p, const struct mta_tensor *q,
				   const struct mta_tensor *k, const struct mta_tensor *v,
				   const struct mta_weights *w, const struct mta_tensor *dout,
				   const struct mta_reference_grads *g);

/*
 * Relative L2 error ||o - e|| / ||e|| of a float32 output against a float64
 * one; INFINITY if any element of o is NaN or infinite, so NaN never passes.
 */
MTA_API double mta_rel_l2(const float *o, const double *e, size_t n);

/*
 * The relative L2 error a kernel may show against the reference: 1e-5 for
 * f32 problems (float32 throughout), 1e-2 for bf16/f16 ones (intermediates
 * rounded to the 16-bit type).
 */
MTA_API double mta_tolerance(int dtype);

/*
 * Its element-wise twin: every element must satisfy
 *     |o[i] - e[i]| <= atol * rms(e) + rtol * |e[i]|
 * where rms(e) is the root mean square of the whole reference, so the bound
 * scales with the output (an attention average over long T is small). f32:
 * atol 1e-4, rtol 1e-4; bf16/f16: atol 5e-2, rtol 5e-2. One element off by
 * more fails the check even when the relative L2 error is within bounds.
 */
MTA_API void mta_tolerance_elem(int dtype, double *atol, double *rtol);

/* What mta_compare found. */
struct mta_compare {
	size_t n;              /* elements compared */
	double rel_l2;         /* ||o - e|| / ||e||; INFINITY when o has NaN or inf */
	double rms;            /* rms(e), the unit of atol */
	size_t bad;            /* elements beyond the element-wise bound (NaN counts) */
	size_t worst;          /* index of the element furthest beyond its bound */
	double worst_value;    /* o[worst] */
	double worst_expected; /* e[worst] */
	double tol, atol, rtol;/* the bounds applied */
};

/*
 * Compare a float32 output o with the float64 reference e (n elements) under
 * dtype's bounds: both the relative L2 error and every element must pass.
 * MTA_OK, or MTA_EVERIFY with a message naming the relative L2 error, how
 * many elements are beyond the bound and the worst one (index, value,
 * expected). r (may be NULL) receives the details either way.
 */
MTA_API int mta_compare(const float *o, const double *e, size_t n, int dtype,
			struct mta_compare *r);
/*
 * mta_compare with each element judged on the scale
 *     s_i = max(|e_i|, MTA_FWD_CANCEL * mag_i)
 * in place of |e_i| (as mta_compare_grad_mag), mag from mta_reference_mag:
 * where an output's terms cancel (post-softmax weights of both signs, then
 * group norm scaling the small remainder back up), a 16-bit kernel's
 * rounding of each term is an error relative to the terms, not to the
 * remainder. Beyond a cancellation of 1/MTA_FWD_CANCEL the element bound
 * becomes rtol * 0.1 * (the terms' magnitudes): 5e-3 of them for bf16/f16,
 * 2.5 times the worst case of rounding every term to bf16; elsewhere this
 * is mta_compare.
 */
#define MTA_FWD_CANCEL 1e-1
MTA_API int mta_compare_mag(const float *o, const double *e, const double *mag, size_t n,
			    int dtype, struct mta_compare *r);

/* ---- running: pick the tuned winner and launch it ----------------------- */
typedef struct mta_context mta_context;

/*
 * A context owns the database handle (read-only), the device and a cache of
 * loaded kernels. db_path NULL means the default database ($MTATUNE_DB, else
 * ~/.cache/mtatune/mta.db); a missing database is not an error (every
 * problem then runs its default variant), a corrupt or foreign one is.
 * backend "cpu" (NULL means cpu), "cuda", or "cuda-emu" (the CUDA kernels'
 * source run on the CPU by mtatune's emulator: slow, for checking). device
 * is the device's index among those its backend sees (CUDA: ordinal among
 * the visible devices, CUDA_VISIBLE_DEVICES applies; for cpu and cuda-emu
 * every index names this machine's CPU). One context may be used from
 * several threads: a thread whose first call of a problem loads (compiles)
 * its kernel holds up no other thread's calls of kernels already loaded;
 * loads, and first picks, run one at a time, and a caller of a kernel
 * being loaded waits for that load.
 *
 * "cuda" opens the device through the driver, loaded at run time: without a
 * driver or device it returns MTA_ENODEV saying which. Winners are looked up
 * for that device (name, architecture, driver and NVRTC versions); their
 * cubins come from the database, compiled with NVRTC only when none is
 * stored.
 */
MTA_API int mta_context_create(mta_context **ctx, const char *db_path, const char *backend,
			       int device);
MTA_API void mta_context_free(mta_context *ctx);

/* What mta_context_pick found: the variant, and why it is the one. */
enum {
	MTA_PICK_DEFAULT = 0, /* no winner recorded: the backend's default variant */
	MTA_PICK_NEAREST = 1, /* a winner of another T or B bucket (the nearest) */
	MTA_PICK_EXACT = 2,   /* the winner of this T bucket and B bucket */
};
enum {
	MTA_RUNG_DEVICE = 0,  /* tuned on this very device (name, arch, driver, compilers) */
	MTA_RUNG_NAME = 1,    /* on a device of the same name and architecture, other versions */
	MTA_RUNG_ARCH = 2,    /* on another device of the same architecture (ISA, sm_XY) */
	MTA_RUNG_NONE = 3,    /* nothing tuned that applies: the default variant */
};
struct mta_pick {
	char spec[MTA_SPEC_MAX]; /* the variant spec */
	int source;              /* MTA_PICK_* */
	int rung;                /* MTA_RUNG_*: whose tuning it comes from */
	int64_t t_bucket, b_bucket; /* the winner's buckets; 0 for the default */
	/*
	 * The winner's speed-up over the default variant, measured side by side
	 * in paired rounds, with its 95% interval: 1 for the default itself,
	 * NAN when unknown (a winner decided without rounds).
	 */
	double speedup, ci_low, ci_high;
	int rounds;
	int significant;         /* the interval lies wholly above 1 (by the tuner's margin) */
};

/*
 * The variant mta_forward would run for problem p at batch B and length T:
 * the recorded winner of this device for p in (T, B)'s buckets, else the
 * nearest recorded buckets; failing any winner of this device, the same
 * search among devices of the same name and architecture (other driver or
 * compiler versions), then of the same architecture; else the backend's
 * default variant for the device's architecture (mta_variant_default_arch:
 * the portable default but for a v3 cluster on sm_90 where that is scalar
 * v1). Buckets are powers of two (winners for T in (b/2, b]);
 * nearest is in log2 distance, T first, then B, ties going to the larger.
 * The pick for a (problem, T bucket, B bucket) is made once and kept for
 * the context's life, so mta_forward runs no database query after the first
 * call; create a new context to see winners recorded since.
 */
MTA_API int mta_context_pick(mta_context *ctx, const struct mta_problem *p, int64_t B, int64_t T,
			     struct mta_pick *out);

/*
 * The same for operation op: "fwd" (mta_context_pick), "bwd", the variant
 * mta_forward_train and mta_backward run (the recorded backward winner,
 * `mtatune tune --op bwd`, by the same policy, else the backend's default
 * backward variant), or "decode", the decode kernel a cache runs
 * (mta_cache_create_ctx). MTA_EINVAL for another op, MTA_EUNSUPPORTED for a
 * backend (or an exported library) without that operation.
 */
MTA_API int mta_context_pick_op(mta_context *ctx, const struct mta_problem *p, const char *op,
				int64_t B, int64_t T, struct mta_pick *out);

/*
 * The forward of MTA.md with the picked variant, host memory in and out,
 * finished on return: the convenience path of the command line and simple
 * callers. q, k, v [B,T,H|Hkv,D] of the problem's dtype with d contiguous,
 * o float32 [B,T,H,D], all host memory. Kernels are compiled on first use
 * (cached on disk) and kept loaded in the context. Built on mta_attention
 * below: it loads w into a handle for the call and, on a context with
 * device memory (cuda, cuda-emu), copies q, k, v to the device and o back
 * (so it allocates and synchronises each call; a serving loop calls
 * mta_attention).
 */
MTA_API int mta_forward(mta_context *ctx, const struct mta_problem *p,
			const struct mta_tensor *q, const struct mta_tensor *k,
			const struct mta_tensor *v, const struct mta_weights *w,
			struct mta_tensor *o);

/* ---- training: the forward that saves state, and the backward ----------- */

/*
 * Where a backward writes: float32, contiguous, in the shapes of what each is
 * the gradient of, overwritten. dq, dk, dv always; a weight's gradient only
 * when the problem uses that weight (its pointer must then be set; the others
 * are not touched and may be NULL). gate_b is one float.
 */
struct mta_grads {
	float *dq;               /* [B,T,H,D] */
	float *dk, *dv;          /* [B,T,Hkv,D]: summed over the heads sharing them */
	float *kq_pre;           /* [H,1,cq,ck] */
	float *head_pre;         /* [H,H] */
	float *kq_post;          /* [H,1,cq2,ck2] */
	float *head_post;        /* [H/c,c,c] */
	float *head_post_linear; /* [H,H] */
	float *gn_weight;        /* [D] */
	float *gate_w;           /* [1,D] */
	float *gate_b;           /* [1] */
};

/*
 * Bytes of the state mta_forward_train saves for mta_backward at batch B and
 * length T: B*T*H*(D+1) floats (each softmax row's log-sum-exp and each
 * output row before group norm and gate). Linear in T: the backward
 * recomputes the logits instead of keeping a T x T matrix. -1 for an invalid
 * problem or sizes below 1.
 */
MTA_API int64_t mta_saved_bytes(const struct mta_problem *p, int64_t B, int64_t T);

/*
 * The forward of mta_forward that also fills saved (mta_saved_bytes(p, B, T)
 * bytes, any alignment of float) with what mta_backward needs. Both calls
 * run the backward library of the context's backward pick for p at (B, T)
 * (mta_context_pick_op with "bwd": the tuned backward winner, else the
 * default backward variant). On a cpu context the kernels are generated
 * from templates/mta_cpu_bwd.c; on cuda and cuda-emu contexts from
 * templates/mta_cuda_bwd.cu (host tensors and weights, copied to the device
 * and back; gate_b read from the host). An exported library (cpu or cuda)
 * runs the same kernels, built at export time, for the problems exported
 * with a backward. Both save the same state, so either backward reads
 * either forward's.
 */
MTA_API int mta_forward_train(mta_context *ctx, const struct mta_problem *p,
			      const struct mta_tensor *q, const struct mta_tensor *k,
			      const struct mta_tensor *v, const struct mta_weights *w,
			      struct mta_tensor *o, void *saved);

/*
 * The gradients of L = sum(dout * o) for the o of the mta_forward_train call
 * that filled saved with the same q, k, v and w: dout float32 [B,T,H,D] (d
 * contiguous), results into g (struct mta_grads). The weight gradients are
 * summed in a fixed order: the same inputs and thread count (cpu) or B and
 * T (cuda) give the same bits. Checked against mta_reference_backward by
 * the tests.
 *
 * Memory: on a cuda or cuda-emu context each call allocates, besides copies
 * of q, k, v, saved, dout and the gradients, a device workspace for the
 * picked backward variant (bq rows per task, nb blocks: the spec's nb, at
 * most B * ceil(T / bq)), in floats:
 *   nb * (2 bq H D + H (cq1 + cq2 - 1 + 3 cq2 + cq1 + 7 + 2 bq) T)   rings
 * + 2 * R * Hkv * D, R <= (B - 1 + nb) * T                            partial dk, dv
 * + 2 * nb * W + W + a few                                            weight partials
 * with cq1 = cq or 1, cq2 = cq2 or 1 (ck1, ck2 likewise) and
 * W = H cq1 ck1 + H cq2 ck2 + 2 H H + 2 D + 1.
 * R, the partials' rows, is what each block's contiguous range of tasks
 * reaches (keys below its last row in each batch it touches).
 */
MTA_API int mta_backward(mta_context *ctx, const struct mta_problem *p,
			 const struct mta_tensor *q, const struct mta_tensor *k,
			 const struct mta_tensor *v, const struct mta_weights *w,
			 const void *saved, const struct mta_tensor *dout,
			 const struct mta_grads *g);

/*
 * Gradients are judged like outputs (mta_compare) but with their own bounds,
 * since they sum longer chains of rounded terms: relative L2 1e-4 for f32,
 * 2e-2 for bf16/f16; element-wise (as mta_tolerance_elem) atol = rtol = 1e-3
 * for f32, 1e-1 for bf16/f16. mta_compare_grad is mta_compare under them.
 */
MTA_API double mta_tolerance_grad(int dtype);
MTA_API void mta_tolerance_grad_elem(int dtype, double *atol, double *rtol);
MTA_API int mta_compare_grad(const float *o, const double *e, size_t n, int dtype,
			     struct mta_compare *r);
/*
 * mta_compare_grad with each element judged on the scale
 *     s_i = max(|e_i|, MTA_GRAD_CANCEL * mag_i)
 * in place of |e_i| (relative L2 error ||o-e|| / ||s||, element bound
 * atol*rms(s) + rtol*s_i), mag from mta_reference_grads.mag. Where the terms
 * of a sum cancel by less than 1/MTA_GRAD_CANCEL this is mta_compare_grad;
 * beyond, the bound becomes tol * 1e-2 * (the terms' magnitudes): for f32,
 * 1e-6 of them, about 17 epsilons, while a kernel that drops or doubles
 * one term in a few hundred is off by more than 1e-3 of them. mag NULL:
 * mta_compare_grad.
 */
#define MTA_GRAD_CANCEL 1e-2
MTA_API int mta_compare_grad_mag(const float *o, const double *e, const double *mag, size_t n,
				 int dtype, struct mta_compare *r);

/* ---- packed documents (varlen) ------------------------------------------ */
/*
 * Several documents packed into one sequence, as FlashAttention's varlen
 * API takes them: q [1,total_T,H,D], k and v [1,total_T,Hkv,D], and
 * cu_seqlens [ndocs+1] int64 with cu_seqlens[0] = 0, cu_seqlens[ndocs] =
 * total_T, non-decreasing (an empty document is allowed and produces
 * nothing). Document d is rows [cu_seqlens[d], cu_seqlens[d+1]) and is
 * attended and convolved exactly as if it were run alone with B=1: no
 * attention weight and no convolution tap crosses a boundary (the halo of
 * a document's first rows and columns is zero, as at the start of a
 * sequence). Callers holding int32 offsets widen them first
 * (mta_cu_seqlens_from_i32). cu_seqlens is host memory, and the packed
 * calls take host tensors (a tensor marked device memory is refused).
 */

/*
 * MTA_OK, or MTA_EINVAL naming the first broken rule (ndocs >= 1, first
 * element 0, non-decreasing, last element total_T) and the offending index.
 */
MTA_API int mta_check_cu_seqlens(const int64_t *cu_seqlens, int64_t ndocs, int64_t total_T);
/* Widen n int32 offsets into out (n elements); no check. */
MTA_API void mta_cu_seqlens_from_i32(const int32_t *in, int64_t n, int64_t *out);

/*
 * The float64 reference of the packed forward: each document through
 * mta_reference on its own (views of q, k, v; B must be 1). out is
 * contiguous [1,total_T,H,D] doubles.
 */
MTA_API int mta_reference_varlen(const struct mta_problem *p, const struct mta_tensor *q,
				 const struct mta_tensor *k, const struct mta_tensor *v,
				 const struct mta_weights *w, const int64_t *cu_seqlens,
				 int64_t ndocs, double *out);

/*
 * The packed forward with the picked variant (picked as for B = ndocs and
 * T = the longest document). On the cpu backend one kernel call runs every
 * document (the kernel takes the offsets: its work items are the
 * documents' tiles, on one pool run); on cuda and cuda-emu one launch of
 * the packed kernel runs them all (its blocks are the documents' query
 * tiles, doc_tile in templates/mta_cuda.cu). Tensors as mta_forward,
 * with B = 1 and T = total_T; o [1,total_T,H,D] float32.
 */
MTA_API int mta_forward_varlen(mta_context *ctx, const struct mta_problem *p,
			       const struct mta_tensor *q, const struct mta_tensor *k,
			       const struct mta_tensor *v, const struct mta_weights *w,
			       const int64_t *cu_seqlens, int64_t ndocs, struct mta_tensor *o);

/*
 * Training on packed documents: the saving forward and the backward of the
 * packed forward, each document run as if alone (the whole-sequence
 * mta_forward_train and mta_backward on views of it, B = 1, T = its
 * length), so every backend with a backward has them. Tensors as
 * mta_forward_varlen; dout float32 [1,total_T,H,D] (d contiguous). dq, dk,
 * dv are written in each document's rows; each weight's gradient is the sum
 * over the documents, added in document order (deterministic). Each
 * document's kernel is the backward pick for (B = 1, T = its length).
 *
 * saved: mta_saved_bytes(p, 1, total_T) bytes, total_T*H*(D+1) floats:
 * the documents' states one after another, document d's at float offset
 * cu_seqlens[d]*H*(D+1); an empty document has none. Filled by
 * mta_forward_train_varlen, read by mta_backward_varlen with the same
 * cu_seqlens. Bad input (tensors, cu_seqlens, weights, a missing gradient
 * buffer) is refused before anything is written.
 */
MTA_API int mta_forward_train_varlen(mta_context *ctx, const struct mta_problem *p,
				     const struct mta_tensor *q, const struct mta_tensor *k,
				     const struct mta_tensor *v, const struct mta_weights *w,
				     const int64_t *cu_seqlens, int64_t ndocs, struct mta_tensor *o,
				     void *saved);
MTA_API int mta_backward_varlen(mta_context *ctx, const struct mta_problem *p,
				const struct mta_tensor *q, const struct mta_tensor *k,
				const struct mta_tensor *v, const struct mta_weights *w,
				const void *saved, const struct mta_tensor *dout,
				const int64_t *cu_seqlens, int64_t ndocs, const struct mta_grads *g);

/*
 * The float64 reference of the packed backward: mta_reference_backward on
 * each document alone (views; dout any dtype [1,total_T,H,D]), dq, dk, dv
 * in each document's rows, the weights' gradients summed over documents in
 * document order.
 */
MTA_API int mta_reference_backward_varlen(const struct mta_problem *p, const struct mta_tensor *q,
					  const struct mta_tensor *k, const struct mta_tensor *v,
					  const struct mta_weights *w, const struct mta_tensor *dout,
					  const int64_t *cu_seqlens, int64_t ndocs,
					  const struct mta_reference_grads *g);

/* ---- decode: a cache per sequence, one token (or a chunk) at a time ------ */
/*
 * A cache holds, for each of its B sequences, k and v of every token so far
 * and exactly the state the convolutions reach back to: the raw logit rows
 * of the last cq-1 queries (pre-softmax convolution) and the probability
 * rows of the last cq2-1 (post-softmax), each O(T). Appending a token costs
 * one row of the forward, O(T) per head, never the T x T matrix; memory
 * grows by doubling, O(T). Sequences advance independently (ragged
 * lengths, like flash_attn_with_kvcache's cache_seqlens). The weights must
 * be the same at every call of one cache.
 *
 * The output row of position t equals row t of the forward of the same
 * prefix (mta_forward / mta_reference), within the forward's tolerance.
 * mta_cache_create's caches compute in float64 (runtime/core/decode.c, the
 * reference of decode); mta_cache_create_ctx's run the backend's generated
 * decode kernel where it has one (cpu).
 */
typedef struct mta_cache mta_cache;

/* An empty cache of batch sequences for problem p (validated): the float64 engine. */
MTA_API int mta_cache_create(const struct mta_problem *p, int64_t batch, mta_cache **out);
/*
 * The same computed by ctx's backend's decode kernel: on cpu the generated
 * C decode kernel (templates/mta_cpu_decode.c, float32 caches, compiled on
 * first use and kept in the context), the decode winner of the T bucket of
 * the cache's longest sequence (op "decode", mta_context_pick_op; asked
 * again as the cache grows), else the default decode variant; on cuda-emu
 * the CUDA decode kernel (templates/mta_cuda_decode.cu) through the
 * emulator, on cuda the same kernel on the device; a backend without a
 * decode kernel gets the float64 engine. Tokens into an empty sequence (a prefill) take their outputs
 * from ctx's forward (mta_forward), and only their last cq2-1 rows run
 * through the decode kernel, to fill the rings. The cache must be freed
 * before ctx.
 */
MTA_API int mta_cache_create_ctx(mta_context *ctx, const struct mta_problem *p, int64_t batch,
				 mta_cache **out);
MTA_API void mta_cache_free(mta_cache *c);
/* Each sequence's length so far into lens[0..batch) (cache_seqlens). */
MTA_API int mta_cache_seqlens(const mta_cache *c, int64_t *lens);
/* Empty sequence b (its memory is kept for the next one); a sequence a
 * failed call left unusable (mta_decode) takes tokens again. */
MTA_API int mta_cache_reset(mta_cache *c, int64_t b);

/*
 * Append n_new[b] tokens to each sequence b (n_new NULL: Tn each; 0: that
 * sequence does not advance) and write their outputs: q [B,Tn,H,D], k and v
 * [B,Tn,Hkv,D] (any dtype of the problem, any strides; rows past n_new[b]
 * are not read), o float32 [B,Tn,H,D] (rows past n_new[b] not written).
 * One token is Tn = 1; a chunk (chunked prefill) is Tn > 1. On failure no
 * sequence has advanced (mta_cache_seqlens as before the call). A failure
 * before any row is computed (bad arguments, memory, a prefill's forward, a
 * kernel that cannot be compiled) leaves every cache as it was: the same
 * tokens can be given again. A failure while a kernel cache's rows are
 * computed (the kernel itself, a device copy) leaves the sequences of the
 * call that held tokens before it unusable: each refuses tokens, naming
 * itself, until mta_cache_reset.
 */
MTA_API int mta_decode(mta_cache *c, const struct mta_tensor *q, const struct mta_tensor *k,
		       const struct mta_tensor *v, const struct mta_weights *w,
		       const int64_t *n_new, struct mta_tensor *o);

/* ---- device tensors, streams, weights handles (mta_attention) ------------ */
/*
 * The call a model makes in its forward pass, the way FlashAttention is
 * called: tensors where the model keeps them (device memory for a cuda
 * context), the caller's stream, weights uploaded once, nothing allocated
 * and no synchronisation per call. mta_forward above is built on it.
 */

/*
 * Weights uploaded (or referenced) once for a problem, reused by every
 * mta_attention call. w's pointers are float32, contiguous, in the shapes of
 * struct mta_weights, in `memory` (enum mta_memory). On a cuda context host
 * weights are copied into device memory the handle owns; device weights are
 * referenced, not copied (a training step that updates them in place is seen
 * by the next call), once the driver has said they are the device's memory
 * (as mta_attention's tensors). On cpu and cuda-emu contexts host pointers are
 * referenced (the same holds: an update in place is seen); cuda-emu device
 * pointers must lie in its emulated device memory. layer_id and the value
 * gate_b are copied (gate_b into memory the kernel reads); gate_b_ptr, when
 * set, is referenced where the other weights are (device weights on cuda,
 * any weights on cpu and cuda-emu: an update in place is seen), and copied
 * with them where they are (host weights on cuda: the value at load). The
 * handle belongs to ctx and must be freed before it.
 */
typedef struct mta_wts mta_wts;
MTA_API int mta_weights_load(mta_context *ctx, const struct mta_problem *p,
			     const struct mta_weights *w, int memory, mta_wts **out);
MTA_API void mta_weights_free(mta_wts *w); /* NULL is fine */

/*
 * Enqueue the forward of problem p on stream and return without waiting.
 * stream is a CUstream as an opaque pointer (NULL: the context's own
 * stream, created blocking, so ordered with the legacy default stream as
 * CUDA's stream 0 is: work a caller queued there, PyTorch's default stream
 * included, runs before, and after, the call, which is what the Python
 * binding relies on when it passes PyTorch's default stream as NULL); cpu
 * and cuda-emu contexts run the call on the calling thread (the
 * cpu's pool) and ignore it. w: a handle of p from mta_weights_load on this
 * context (NULL only when p uses no weight). q, k, v of p's dtype, o float32,
 * bf16 or f16 ([B,T,H,D]), all with D contiguous (stride 1) and any other
 * strides; their memory: device on a cuda context, host on a cpu context,
 * either on cuda-emu (whose device memory is emulated: a tensor marked
 * device must lie in an mta_device_alloc block, one marked host outside
 * every such block, else MTA_EINVAL naming the tensor). A cuda context asks
 * the driver where each tensor's first and last bytes lie
 * (cuPointerGetAttributes) and refuses, naming the tensor, memory that is
 * not the context's device's (or managed) memory: host memory, a freed
 * block, another GPU's, where a launch would fault.
 *
 * scale: the softmax scale, 0 meaning the problem's (mta_problem_scale).
 * The kernels of this version compile the scale in (it is part of the
 * problem's key), so any other value is refused with MTA_EUNSUPPORTED
 * saying so: set p->scale instead.
 *
 * The first call for a problem at a (B, T) bucket picks and loads its
 * kernel (mta_context_reserve does it ahead); after that a call allocates
 * nothing and does not synchronise (mta_context_stats counts both), so it
 * can be captured in a CUDA graph. The calling thread's current CUDA
 * context is the same on return as on entry. o is written when the stream
 * reaches the launch (on cpu and cuda-emu, on return).
 */
MTA_API int mta_attention(mta_context *ctx, const struct mta_problem *p, const mta_wts *w,
			  const struct mta_tensor *q, const struct mta_tensor *k,
			  const struct mta_tensor *v, struct mta_tensor *o, float scale,
			  void *stream);

/*
 * Do now what the first mta_attention of p at (B, T) would do: pick and load
 * the kernel, grow the context's workspace for a B x T call. Call it before
 * capturing a CUDA graph.
 */
MTA_API int mta_context_reserve(mta_context *ctx, const struct mta_problem *p, int64_t B,
				int64_t T);

/*
 * Device memory of the context's device, for callers without a framework
 * (tests, C programs). cuda: cuMemAlloc; cuda-emu: host memory registered as
 * its emulated device memory; cpu: MTA_EUNSUPPORTED (a cpu context runs on
 * host memory). mta_memcpy copies bytes between host and device memory in
 * stream order (a host destination is written when the stream gets there:
 * mta_stream_synchronize before reading it); mta_stream_synchronize waits
 * for everything enqueued on stream (NULL: the context's stream).
 */
MTA_API int mta_device_alloc(mta_context *ctx, size_t bytes, void **ptr);
MTA_API void mta_device_free(mta_context *ctx, void *ptr); /* NULL is fine */
MTA_API int mta_memcpy(mta_context *ctx, void *dst, int dst_memory, const void *src,
		       int src_memory, size_t bytes, void *stream);
MTA_API int mta_stream_synchronize(mta_context *ctx, void *stream);

/*
 * What a context has done, counted since it was created: mta_attention
 * calls (mta_forward's included), allocations of device memory (weights
 * handles, mta_forward's staging, mta_device_alloc) and of host memory by
 * the context (its records of picks, kernels and handles, its workspace),
 * kernels loaded, and synchronisations it made (mta_forward,
 * mta_stream_synchronize). A serving loop of mta_attention calls on one
 * problem leaves all but calls unchanged after the first.
 */
struct mta_stats {
	uint64_t calls, device_allocs, host_allocs, kernel_loads, syncs;
};
MTA_API void mta_context_stats(mta_context *ctx, struct mta_stats *out);

#ifdef __cplusplus
}
#endif
#endif /* MTA_H */
