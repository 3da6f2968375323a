/*
 * cgen.h: the C generator: problem + CPU variant -> self-contained kernel
 * source (templates/mta_cpu.c specialised by #defines; ABI in kernel.h).
 */
#ifndef MTA_CGEN_H
#define MTA_CGEN_H

#include "mta.h"
#include "variant.h"

/*
 * Source of the kernel for problem p and CPU variant v (malloc'd into
 * *source; the caller frees). MTA_EINVAL if v does not fit p.
 */
int mta_gen_c(const struct mta_problem *p, const struct mta_variant *v, char **source);

/* Text of an embedded file (db/ schema, templates/), or NULL; see gen/embed.sh. */
const char *mta_embedded(const char *path);

#endif
