/*
 * varlen.h: what the layers share about packed documents beyond mta.h: the
 * full check of a packed call and the view of one document.
 */
#ifndef MTA_CORE_VARLEN_H
#define MTA_CORE_VARLEN_H

#include "runtime/mta.h"

/*
 * Check a packed call: tensors as mta_check_tensors (o may be NULL) with
 * B = 1, and cu_seqlens against total_T = q's T. *tmax (may be NULL)
 * receives the longest document's length.
 */
int mta_varlen_check(const struct mta_problem *p, const struct mta_tensor *q,
		     const struct mta_tensor *k, const struct mta_tensor *v,
		     const struct mta_tensor *o, const int64_t *cu_seqlens, int64_t ndocs,
		     int64_t *tmax);

/* Rows [start, start+len) of t (any dtype, strided) as a tensor of T = len. */
void mta_varlen_view(const struct mta_tensor *t, int64_t start, int64_t len,
		     struct mta_tensor *out);

#endif
