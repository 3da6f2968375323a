/*
 * kargs.h: fill a C kernel's arguments (templates/mta_kargs.h) from the
 * public tensors and weights, and turn a kernel's return code into a status.
 *
 * Shared by the CPU runner (cpu.c) and the runtime of an exported library
 * (templates/export_runtime.c), which ships a copy of kargs.c: both call
 * kernels through exactly this code.
 */
#ifndef MTA_KARGS_FILL_H
#define MTA_KARGS_FILL_H

#include "runtime/mta.h"
#include "runtime/core/mta_kargs.h"

/*
 * Check q, k, v, o and w against p (shapes, dtypes, weights present, head
 * dimension contiguous, nthreads >= 0) and fill *a. w NULL: no weights.
 */
int mta_kargs_fill(const struct mta_problem *p, const struct mta_tensor *q,
		   const struct mta_tensor *k, const struct mta_tensor *v,
		   const struct mta_weights *w, struct mta_tensor *o, int nthreads,
		   struct mta_kargs *a);

/*
 * The same for a packed call (mta.h, packed documents): also checks B = 1
 * and cu_seqlens against total_T, and sets the kernel's cu_seqlens, ndocs
 * and tmax.
 */
int mta_kargs_fill_varlen(const struct mta_problem *p, const struct mta_tensor *q,
			  const struct mta_tensor *k, const struct mta_tensor *v,
			  const struct mta_weights *w, struct mta_tensor *o, int nthreads,
			  const int64_t *cu_seqlens, int64_t ndocs, struct mta_kargs *a);

/*
 * MTA_OK for a kernel's return code 0; otherwise the matching status with a
 * message naming the kernel (what) and, for MTA_KERR_NOMEM, its workspace
 * at sequence length T (from the kernel's info).
 */
int mta_kargs_status(int kernel_rc, const struct mta_kinfo *info, int64_t T, const char *what);

#endif
