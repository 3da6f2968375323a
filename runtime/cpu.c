/*
 * cpu.c: generated C kernels on the CPU: generate (gen/cgen.c), build
 * through the compiler cache (ccompile.c), load, check the ABI, run.
 */
#include "cpu.h"
#include "ccompile.h"
#include "error.h"
#include "kernel.h"

#include <dlfcn.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>

/*
 * Flags of every CPU kernel. -O3 -march=native lets the constant-size loops
 * vectorise for this machine; no -ffast-math, which would reassociate the
 * float32 sums (costing the 1e-5 accuracy budget) and assume no NaN or inf,
 * while the masked softmax relies on -inf and NaN inputs must show in the
 * output. -fno-math-errno only lets sqrtf/expf skip setting errno.
 */
#define CPU_FLAGS "-std=gnu11 -O3 -march=native -fno-math-errno"

struct mta_cpu_kernel {
	struct mta_problem p;
	void *dl;
	mta_cpu_entry_fn fn;
	const struct mta_kinfo *info;
	char path[PATH_MAX];
};

int mta_cpu_load_log(const struct mta_problem *p, const struct mta_variant *v,
		     struct mta_cpu_kernel **out, char **log)
{
	char *src = NULL, spec[MTA_SPEC_MAX] = "?";
	int rc;
	struct mta_cpu_kernel *k = calloc(1, sizeof *k);

	*out = NULL;
	if (log)
		*log = NULL;
	if (!k)
		return mta_fail(MTA_ENOMEM, "out of memory loading a CPU kernel");
	mta_variant_format(v, spec, sizeof spec);
	if ((rc = mta_gen_c(p, v, &src)))
		goto out;
	if ((rc = mta_cc_build(src, MTA_LANG_C, CPU_FLAGS, k->path, sizeof k->path, log)))
		goto out;
	if ((rc = mta_cc_open(k->path, MTA_CPU_ENTRY, &k->dl, (void **)&k->fn)))
		goto out;
	k->info = dlsym(k->dl, MTA_CPU_INFO);
	if (!k->info || k->info->abi != MTA_KARGS_ABI ||
	    k->info->args_size != (int)sizeof(struct mta_kargs) || k->info->dtype != p->dtype) {
		rc = mta_fail(MTA_ECOMPILE, "%s: kernel ABI %d (args %d bytes, dtype %d) does not "
			      "match this library's ABI %d (%d bytes, dtype %d)", k->path,
			      k->info ? k->info->abi : -1, k->info ? k->info->args_size : -1,
			      k->info ? k->info->dtype : -1, MTA_KARGS_ABI,
			      (int)sizeof(struct mta_kargs), p->dtype);
		goto out;
	}
	k->p = *p;
	*out = k;
	k = NULL;
	rc = MTA_OK;
out:
	free(src);
	if (rc)
		mta_wrap(rc, "cpu kernel %s", spec);
	mta_cpu_free(k);
	return rc;
}

int mta_cpu_load(const struct mta_problem *p, const struct mta_variant *v,
		 struct mta_cpu_kernel **k)
{
	return mta_cpu_load_log(p, v, k, NULL);
}

/* Strides of t as the kernel takes them; the head dimension must be dense. */
static int strides(const char *name, const struct mta_tensor *t, int64_t *sb, int64_t *st,
		   int64_t *sh)
{
	if (t->stride[3] != 1 && t->shape[3] > 1)
		return mta_fail(MTA_ESHAPE, "tensor %s: the head dimension must be contiguous "
				"(stride 1), not stride %lld", name, (long long)t->stride[3]);
	*sb = t->stride[0];
	*st = t->stride[1];
	*sh = t->stride[2];
	return MTA_OK;
}

int mta_cpu_run(struct mta_cpu_kernel *k, const struct mta_problem *p,
		const struct mta_tensor *q, const struct mta_tensor *kt,
		const struct mta_tensor *v, const struct mta_weights *w,
		struct mta_tensor *o, int nthreads)
{
	struct mta_kargs a;
	int rc;

	if (!k)
		return mta_fail(MTA_EINVAL, "no CPU kernel");
	if (memcmp(&k->p, p, sizeof *p)) {
		char want[MTA_KEY_MAX] = "?", have[MTA_KEY_MAX] = "?";
		mta_problem_key(p, want, sizeof want);
		mta_problem_key(&k->p, have, sizeof have);
		return mta_fail(MTA_EINVAL, "kernel was built for %s, not %s", have, want);
	}
	if (!o)
		return mta_fail(MTA_EINVAL, "output tensor o is missing");
	if ((rc = mta_check_tensors(p, q, kt, v, o, &a.B, &a.T)))
		return rc;
	if (nthreads < 0)
		return mta_fail(MTA_EINVAL, "nthreads=%d must be 0 (default) or positive", nthreads);
	struct mta_weights none = { 0 };
	if (!w)
		w = &none;
	if ((rc = mta_check_weights(p, w)))
		return rc;
	a.q = q->data;
	a.k = kt->data;
	a.v = v->data;
	a.o = o->data;
	if ((rc = strides("q", q, &a.q_sb, &a.q_st, &a.q_sh)) ||
	    (rc = strides("k", kt, &a.k_sb, &a.k_st, &a.k_sh)) ||
	    (rc = strides("v", v, &a.v_sb, &a.v_st, &a.v_sh)) ||
	    (rc = strides("o", o, &a.o_sb, &a.o_st, &a.o_sh)))
		return rc;
	a.kq_pre = w->kq_pre;
	a.head_pre = w->head_pre;
	a.kq_post = w->kq_post;
	a.head_post = w->head_post;
	a.head_post_linear = w->head_post_linear;
	a.gn_weight = w->gn_weight;
	a.gate_w = w->gate_w;
	a.gate_b = w->gate_b;
	a.gn_rescale = p->gn_rescale ? (float)mta_layer_rescale(w->layer_id) : 1.0f;
	a.dtype = q->dtype;
	a.nthreads = nthreads;
	rc = k->fn(&a);
	if (rc == MTA_KERR_NOMEM)
		return mta_fail(MTA_ENOMEM, "cpu kernel: out of memory for its %lld-byte workspace",
				(long long)k->info->ws_bytes);
	if (rc)
		return mta_fail(MTA_EKERNEL, "cpu kernel %s returned error %d", k->path, rc);
	return MTA_OK;
}

long long mta_cpu_workspace(const struct mta_cpu_kernel *k)
{
	return k ? (long long)k->info->ws_bytes : 0;
}

const char *mta_cpu_path(const struct mta_cpu_kernel *k)
{
	return k ? k->path : "";
}

void mta_cpu_free(struct mta_cpu_kernel *k)
{
	if (!k)
		return;
	mta_cc_close(k->dl);
	free(k);
}
