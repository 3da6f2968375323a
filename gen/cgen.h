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

/*
 * Test-only fault injection: $MTATUNE_TEST_FAULT = KIND[@TEXT] makes the
 * kernel of every variant whose canonical spec contains TEXT (all when no
 * @TEXT) misbehave: crash (a segfault), hang (loops forever), wrong (one
 * output element off by 1): CPU kernels only; syntax (the source does not
 * compile: an #error line): CPU and CUDA. The fault tests use it to check
 * that the tuner records such variants and carries on; nothing else should
 * set it. Returns 0 (no fault for spec) or the MTA_FAULT_* kind.
 */
enum { MTA_FAULT_CRASH = 1, MTA_FAULT_HANG, MTA_FAULT_WRONG, MTA_FAULT_SYNTAX };
int mta_test_fault(const char *spec);

/* Text of an embedded file (db/ schema, templates/), or NULL; see gen/embed.sh. */
const char *mta_embedded(const char *path);

#endif
