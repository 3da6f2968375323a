/*
 * varlen.c: packed documents (mta.h, "packed documents"): the check of
 * cu_seqlens, document views, and the float64 reference of the packed
 * forward.
 *
 * The reference runs each document through mta_reference on a view of the
 * packed tensors. That is the definition of the packed forward ("as if each
 * document were run alone"), so the judge of the packed kernels is the
 * judge of the plain ones applied document by document, nothing new.
 */
#include "runtime/core/varlen.h"
#include "runtime/core/error.h"

#include <inttypes.h>
#include <string.h>

int mta_check_cu_seqlens(const int64_t *cu, int64_t ndocs, int64_t total_T)
{
	if (!cu)
		return mta_fail(MTA_EINVAL, "cu_seqlens is missing");
	if (ndocs < 1)
		return mta_fail(MTA_EINVAL, "cu_seqlens has %" PRId64 " elements, expected at least "
				"2 (ndocs+1 offsets, 0 first, total_T last)", ndocs + 1);
	if (cu[0] != 0)
		return mta_fail(MTA_EINVAL, "cu_seqlens[0] is %" PRId64 ", expected 0", cu[0]);
	for (int64_t d = 0; d < ndocs; d++)
		if (cu[d + 1] < cu[d])
			return mta_fail(MTA_EINVAL, "cu_seqlens decreases at index %" PRId64 " (%" PRId64
					" after %" PRId64 "); expected non-decreasing offsets",
					d + 1, cu[d + 1], cu[d]);
	if (cu[ndocs] != total_T)
		return mta_fail(MTA_EINVAL, "cu_seqlens ends with %" PRId64 " (index %" PRId64 "), "
				"expected total_T = %" PRId64 " (the packed length of q, k, v)",
				cu[ndocs], ndocs, total_T);
	return mta_done(MTA_OK);
}

void mta_cu_seqlens_from_i32(const int32_t *in, int64_t n, int64_t *out)
{
	for (int64_t i = 0; i < n; i++)
		out[i] = in[i];
}

int mta_varlen_check(const struct mta_problem *p, const struct mta_tensor *q,
		     const struct mta_tensor *k, const struct mta_tensor *v,
		     const struct mta_tensor *o, const int64_t *cu, int64_t ndocs, int64_t *tmax)
{
	int64_t B, T;
	int rc;
	if ((rc = mta_check_tensors(p, q, k, v, o, &B, &T)))
		return rc;
	if (B != 1)
		return mta_fail(MTA_ESHAPE, "packed documents take q, k, v with B=1 "
				"([1,total_T,H|Hkv,D]), not B=%" PRId64, B);
	if ((rc = mta_check_cu_seqlens(cu, ndocs, T)))
		return rc;
	int64_t m = 0;
	for (int64_t d = 0; d < ndocs; d++)
		m = cu[d + 1] - cu[d] > m ? cu[d + 1] - cu[d] : m;
	if (tmax)
		*tmax = m;
	return MTA_OK;
}

void mta_varlen_view(const struct mta_tensor *t, int64_t start, int64_t len,
		     struct mta_tensor *out)
{
	*out = *t;
	out->data = (char *)t->data + (size_t)(start * t->stride[1]) * mta_dtype_size(t->dtype);
	out->shape[1] = len;
}

int mta_reference_varlen(const struct mta_problem *p, const struct mta_tensor *q,
			 const struct mta_tensor *k, const struct mta_tensor *v,
			 const struct mta_weights *w, const int64_t *cu, int64_t ndocs,
			 double *out)
{
	int rc;
	if ((rc = mta_varlen_check(p, q, k, v, NULL, cu, ndocs, NULL)))
		return rc;
	if (!out)
		return mta_fail(MTA_EINVAL, "reference: no output buffer");
	for (int64_t d = 0; d < ndocs; d++) {
		struct mta_tensor qd, kd, vd;
		const int64_t s = cu[d], n = cu[d + 1] - cu[d];
		if (!n)
			continue;
		mta_varlen_view(q, s, n, &qd);
		mta_varlen_view(k, s, n, &kd);
		mta_varlen_view(v, s, n, &vd);
		if ((rc = mta_reference(p, &qd, &kd, &vd, w, out + (size_t)s * (size_t)p->H * (size_t)p->D)))
			return mta_wrap(rc, "document %" PRId64 " (rows %" PRId64 "..%" PRId64 ")",
					d, s, s + n);
	}
	return mta_done(MTA_OK);
}
