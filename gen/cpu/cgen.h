/*
 * cgen.h: the C generator: problem + CPU variant -> self-contained kernel
 * source (the template of the variant's family, templates/mta_cpu.c for v1
 * and templates/mta_cpu2.c for v2, specialised by #defines; its ABI is
 * runtime/core/mta_kargs.h, pasted in).
 */
#ifndef MTA_GEN_CPU_CGEN_H
#define MTA_GEN_CPU_CGEN_H

#include "gen/variant.h"

/*
 * Source of the kernel for problem p and CPU variant v (malloc'd into
 * *source; the caller frees). MTA_EINVAL if v does not fit p.
 */
int mta_gen_c(const struct mta_problem *p, const struct mta_variant *v, char **source);

/*
 * Source of the backward library of problem p with CPU variant v
 * (templates/mta_cpu_bwd.c: the saving forward and the backward, ABI
 * runtime/core/mta_bkargs.h). Of v's tunables it uses bq (query rows per
 * task) and thr (threads); the others stay part of the spec that names it.
 */
int mta_gen_c_bwd(const struct mta_problem *p, const struct mta_variant *v, char **source);

/*
 * Source of the decode kernel of problem p (templates/mta_cpu_decode.c,
 * ABI runtime/core/mta_dargs.h pasted in), malloc'd into *source. Of v's
 * tunables it uses bk (key columns per work item, at least MTA_DBLOCK_MIN)
 * and thr (threads at most); NULL v: the decode space's default
 * (mta_variant_default_op, MTA_OP_DECODE).
 */
int mta_gen_c_decode(const struct mta_problem *p, const struct mta_variant *v, char **source);

#endif
