/*
 * cpu_bwd.c: the generated CPU backward on the CPU (cpu_bwd.h): generate
 * (gen/cpu/cgen.c, mta_gen_c_bwd), build through the compiler cache
 * (runtime/ccompile.c), load, check the ABI, run on a pool.
 */
#include "runtime/cpu/cpu_bwd.h"
#include "runtime/cpu/cpu.h"
#include "gen/cpu/cgen.h"
#include "runtime/ccompile.h"
#include "runtime/core/error.h"
#include "runtime/core/kargs.h"
#include "runtime/core/kargs_bwd.h"
#include "runtime/core/pool.h"

#include <dlfcn.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>

struct mta_cpu_bwd {
	struct mta_problem p;
	void *dl;
	mta_cpu_entry_fn fwd, bwd;
	const struct mta_kinfo *info;
	char path[PATH_MAX];
};

int mta_cpu_bwd_load(const struct mta_problem *p, const struct mta_variant *v,
		     struct mta_cpu_bwd **out)
{
	char *src = NULL, spec[MTA_SPEC_MAX] = "?";
	int rc;
	struct mta_cpu_bwd *k = calloc(1, sizeof *k);

	*out = NULL;
	if (!k)
		return mta_fail(MTA_ENOMEM, "out of memory loading a CPU backward kernel");
	mta_variant_format(v, spec, sizeof spec);
	if ((rc = mta_gen_c_bwd(p, v, &src)))
		goto out;
	if ((rc = mta_cc_build(src, MTA_LANG_C, MTA_CPU_CFLAGS, k->path, sizeof k->path, NULL)))
		goto out;
	if ((rc = mta_cc_open(k->path, MTA_CPU_BWD, &k->dl, (void **)&k->bwd)))
		goto out;
	k->fwd = (mta_cpu_entry_fn)(uintptr_t)dlsym(k->dl, MTA_CPU_FWD_SAVE);
	k->info = dlsym(k->dl, MTA_CPU_BWD_INFO);
	if (!k->fwd || !k->info || k->info->abi != MTA_BKARGS_ABI ||
	    k->info->args_size != (int)sizeof(struct mta_bkargs) || k->info->dtype != p->dtype) {
		rc = mta_fail(MTA_ECOMPILE, "%s: backward kernel ABI %d (args %d bytes, dtype %d) "
			      "does not match this library's ABI %d (%d bytes, dtype %d)", k->path,
			      k->info ? k->info->abi : -1, k->info ? k->info->args_size : -1,
			      k->info ? k->info->dtype : -1, MTA_BKARGS_ABI,
			      (int)sizeof(struct mta_bkargs), p->dtype);
		goto out;
	}
	k->p = *p;
	*out = k;
	k = NULL;
	rc = MTA_OK;
out:
	free(src);
	if (rc)
		mta_wrap(rc, "cpu backward kernel %s", spec);
	mta_cpu_bwd_free(k);
	return rc;
}

/* Run entry fn on a (a pool made for the call when none is given). */
static int call(struct mta_cpu_bwd *k, mta_cpu_entry_fn fn, struct mta_bkargs *a,
		struct mta_pool *pool)
{
	struct mta_pool *own = NULL;
	int rc;
	if (!pool && (rc = mta_pool_create(&own)))
		return rc;
	rc = mta_kargs_status(mta_pool_call(pool ? pool : own, fn, &a->f), k->info, a->f.T, k->path);
	mta_pool_free(own);
	return rc;
}

static int same_problem(const struct mta_cpu_bwd *k, const struct mta_problem *p)
{
	if (!k)
		return mta_fail(MTA_EINVAL, "no CPU backward kernel");
	if (memcmp(&k->p, p, sizeof *p)) {
		char want[MTA_KEY_MAX] = "?", have[MTA_KEY_MAX] = "?";
		mta_problem_key(p, want, sizeof want);
		mta_problem_key(&k->p, have, sizeof have);
		return mta_fail(MTA_EINVAL, "backward kernel was built for %s, not %s", have, want);
	}
	return MTA_OK;
}

int mta_cpu_fwd_save(struct mta_cpu_bwd *k, const struct mta_problem *p,
		     const struct mta_tensor *q, const struct mta_tensor *kt,
		     const struct mta_tensor *v, const struct mta_weights *w,
		     struct mta_tensor *o, void *saved, int nthreads, struct mta_pool *pool)
{
	struct mta_bkargs a;
	int rc;
	if ((rc = same_problem(k, p)) ||
	    (rc = mta_bkargs_fill(p, q, kt, v, w, o, saved, NULL, NULL, nthreads, &a)))
		return rc;
	return call(k, k->fwd, &a, pool);
}

int mta_cpu_bwd_run(struct mta_cpu_bwd *k, const struct mta_problem *p,
		    const struct mta_tensor *q, const struct mta_tensor *kt,
		    const struct mta_tensor *v, const struct mta_weights *w, const void *saved,
		    const struct mta_tensor *dout, const struct mta_grads *g, int nthreads,
		    struct mta_pool *pool)
{
	struct mta_bkargs a;
	int rc;
	if ((rc = same_problem(k, p)) ||
	    (rc = mta_bkargs_fill(p, q, kt, v, w, NULL, (void *)saved, dout, g, nthreads, &a)))
		return rc;
	return call(k, k->bwd, &a, pool);
}

long long mta_cpu_bwd_workspace(const struct mta_cpu_bwd *k, int64_t T)
{
	return k ? (long long)(k->info->ws_bytes + k->info->ws_per_t * T) : 0;
}

const char *mta_cpu_bwd_path(const struct mta_cpu_bwd *k)
{
	return k ? k->path : "";
}

void mta_cpu_bwd_free(struct mta_cpu_bwd *k)
{
	if (!k)
		return;
	mta_cc_close(k->dl);
	free(k);
}
