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

/*
 * One document's step of a packed training call, on views of one document
 * (B = 1, T = its length): the saving forward (o set; dout and g NULL) or
 * the backward (dout and g set; o NULL), with saved pointing at that
 * document's own state. How it runs (a context's mta_forward_train and
 * mta_backward, a backend's fwd_save and backward) is the caller's: arg is
 * passed through.
 */
typedef int (*mta_varlen_train_fn)(void *arg, const struct mta_problem *p,
				   const struct mta_tensor *q, const struct mta_tensor *k,
				   const struct mta_tensor *v, const struct mta_weights *w,
				   struct mta_tensor *o, void *saved, const struct mta_tensor *dout,
				   const struct mta_grads *g);

/*
 * The packed saving forward (o set, dout and g NULL) or backward (dout and
 * g set, o NULL) of mta.h's mta_forward_train_varlen / mta_backward_varlen,
 * by calling one() on each non-empty document in order: everything is
 * checked first (tensors, cu_seqlens, weights, saved, the gradient buffers
 * the problem needs), so bad input writes nothing. The saved state is the
 * documents' own states one after another, document d's at float offset
 * cu[d]*H*(D+1) (each in the layout of mta_bkargs.h for B = 1, T = its
 * length): mta_saved_bytes(p, 1, total_T) bytes in all. dq, dk, dv are
 * written in each document's rows; the weight gradients of the first
 * non-empty document go straight into g, each later document's into a
 * scratch buffer added to g element by element, in document order (the
 * same bits for the same inputs and the same one()).
 */
int mta_varlen_train(const struct mta_problem *p, const struct mta_tensor *q,
		     const struct mta_tensor *k, const struct mta_tensor *v,
		     const struct mta_weights *w, struct mta_tensor *o, void *saved,
		     const struct mta_tensor *dout, const struct mta_grads *g,
		     const int64_t *cu_seqlens, int64_t ndocs, mta_varlen_train_fn one, void *arg);

#endif
