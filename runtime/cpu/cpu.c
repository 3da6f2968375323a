/*
 * cpu.c: generated C kernels on the CPU: generate (gen/cpu/cgen.c), build
 * through the compiler cache (runtime/ccompile.c), load, check the ABI, run.
 */
#include "runtime/cpu/cpu.h"
#include "gen/cpu/cgen.h"
#include "runtime/ccompile.h"
#include "runtime/core/error.h"
#include "runtime/core/kargs.h"
#include "runtime/core/mta_dargs.h"
#include "runtime/core/pool.h"

#include <dlfcn.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>

/*
 * Flags of every CPU kernel (MTA_CPU_CFLAGS, cpu.h). -O3 -march=native lets the constant-size loops
 * vectorise for this machine; no -ffast-math, which would reassociate the
 * float32 sums (costing the 1e-5 accuracy budget) and assume no NaN or inf,
 * while the masked softmax relies on -inf and NaN inputs must show in the
 * output. -fno-math-errno only lets sqrtf/expf skip setting errno.
 */

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
	if ((rc = mta_cc_build(src, MTA_LANG_C, MTA_CPU_CFLAGS, k->path, sizeof k->path, log)))
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

/* The forward, packed when cu_seqlens is set (mta_cpu_run, mta_cpu_run_varlen). */
static int run(struct mta_cpu_kernel *k, const struct mta_problem *p,
	       const struct mta_tensor *q, const struct mta_tensor *kt,
	       const struct mta_tensor *v, const struct mta_weights *w,
	       struct mta_tensor *o, int nthreads, struct mta_pool *pool,
	       const int64_t *cu_seqlens, int64_t ndocs)
{
	struct mta_pool *own = NULL;
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
	if ((rc = cu_seqlens ? mta_kargs_fill_varlen(p, q, kt, v, w, o, nthreads, cu_seqlens,
						     ndocs, &a)
			     : mta_kargs_fill(p, q, kt, v, w, o, nthreads, &a)))
		return rc;
	if (!pool && (rc = mta_pool_create(&own)))
		return rc;
	rc = mta_kargs_status(mta_pool_call(pool ? pool : own, k->fn, &a), k->info, a.tmax,
			      k->path);
	mta_pool_free(own);
	return rc;
}

int mta_cpu_run(struct mta_cpu_kernel *k, const struct mta_problem *p,
		const struct mta_tensor *q, const struct mta_tensor *kt,
		const struct mta_tensor *v, const struct mta_weights *w,
		struct mta_tensor *o, int nthreads, struct mta_pool *pool)
{
	return run(k, p, q, kt, v, w, o, nthreads, pool, NULL, 0);
}

int mta_cpu_run_varlen(struct mta_cpu_kernel *k, const struct mta_problem *p,
		       const struct mta_tensor *q, const struct mta_tensor *kt,
		       const struct mta_tensor *v, const struct mta_weights *w,
		       const int64_t *cu_seqlens, int64_t ndocs, struct mta_tensor *o,
		       int nthreads, struct mta_pool *pool)
{
	if (!cu_seqlens)
		return mta_fail(MTA_EINVAL, "packed forward: cu_seqlens is missing");
	return run(k, p, q, kt, v, w, o, nthreads, pool, cu_seqlens, ndocs);
}

long long mta_cpu_workspace(const struct mta_cpu_kernel *k, int64_t T)
{
	return k ? (long long)(k->info->ws_bytes + k->info->ws_per_t * T) : 0;
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

/* ---- the decode kernel (templates/mta_cpu_decode.c) ---- */

struct mta_cpu_decode {
	void *dl;
	mta_decode_fn fn;
	char path[PATH_MAX];
};

int mta_cpu_decode_load(const struct mta_problem *p, const struct mta_variant *v,
			struct mta_cpu_decode **out)
{
	struct mta_cpu_decode *k = calloc(1, sizeof *k);
	char *src = NULL;
	int rc;
	*out = NULL;
	if (!k)
		return mta_fail(MTA_ENOMEM, "out of memory loading a CPU decode kernel");
	if ((rc = mta_gen_c_decode(p, v, &src)) ||
	    (rc = mta_cc_build(src, MTA_LANG_C, MTA_CPU_CFLAGS, k->path, sizeof k->path, NULL)) ||
	    (rc = mta_cc_open(k->path, "mta_cpu_decode", &k->dl, (void **)&k->fn)))
		goto out;
	const struct mta_dinfo *info = dlsym(k->dl, "mta_cpu_decode_info");
	if (!info || info->abi != MTA_DARGS_ABI || info->args_size != (int)sizeof(struct mta_dargs) ||
	    info->seq_size != (int)sizeof(struct mta_dseq)) {
		rc = mta_fail(MTA_ECOMPILE, "%s: decode kernel ABI does not match this library's "
			      "(ABI %d, %d-byte args)", k->path, MTA_DARGS_ABI,
			      (int)sizeof(struct mta_dargs));
		goto out;
	}
	*out = k;
	k = NULL;
out:
	free(src);
	if (rc)
		mta_wrap(rc, "cpu decode kernel");
	mta_cpu_decode_free(k);
	return rc;
}

mta_decode_fn mta_cpu_decode_entry(const struct mta_cpu_decode *k)
{
	return k ? k->fn : NULL;
}

void mta_cpu_decode_free(struct mta_cpu_decode *k)
{
	if (!k)
		return;
	mta_cc_close(k->dl);
	free(k);
}
