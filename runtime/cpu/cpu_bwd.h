/*
 * cpu_bwd.h: the generated CPU backward (templates/mta_cpu_bwd.c): generate,
 * build (cached like the forward kernels), load, run its saving forward and
 * its backward. ABI: runtime/core/mta_bkargs.h.
 */
#ifndef MTA_CPU_CPU_BWD_H
#define MTA_CPU_CPU_BWD_H

#include "gen/variant.h"

struct mta_cpu_bwd;  /* a loaded backward library for one (problem, variant) */
struct mta_pool;     /* runtime/core/pool.h */

/* Generate, compile through the cache and load; MTA_ECOMPILE with the compiler's first lines. */
int mta_cpu_bwd_load(const struct mta_problem *p, const struct mta_variant *v,
		     struct mta_cpu_bwd **k);

/*
 * The forward, o float32 [B,T,H,D], also filling saved (mta_saved_bytes(p,
 * B, T) bytes). nthreads 0: the variant's choice; pool NULL: one for the call.
 */
int mta_cpu_fwd_save(struct mta_cpu_bwd *k, const struct mta_problem *p,
		     const struct mta_tensor *q, const struct mta_tensor *kt,
		     const struct mta_tensor *v, const struct mta_weights *w,
		     struct mta_tensor *o, void *saved, int nthreads, struct mta_pool *pool);

/* The backward from saved (of fwd_save on the same inputs) and dout into g. */
int mta_cpu_bwd_run(struct mta_cpu_bwd *k, const struct mta_problem *p,
		    const struct mta_tensor *q, const struct mta_tensor *kt,
		    const struct mta_tensor *v, const struct mta_weights *w, const void *saved,
		    const struct mta_tensor *dout, const struct mta_grads *g, int nthreads,
		    struct mta_pool *pool);

/* Bytes of workspace per thread at T (at most), and the library's path in the cache. */
long long mta_cpu_bwd_workspace(const struct mta_cpu_bwd *k, int64_t T);
const char *mta_cpu_bwd_path(const struct mta_cpu_bwd *k);

void mta_cpu_bwd_free(struct mta_cpu_bwd *k);

#endif
