/*
 * cudagen.c: specialise templates/mta_cuda.cu for a problem and a variant,
 * and describe how its kernel is launched (see cudagen.h).
 */
#include "gen/cuda/cudagen.h"
#include "gen/fault.h"
#include "gen/gen.h"
#include "runtime/core/error.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define TEMPLATE "templates/mta_cuda.cu"
#define TEMPLATE_TC "templates/mta_cuda_tc.cu"
#define TC_MARK "/* @MTA_TC@ */"

static size_t r16(size_t x) { return (x + 15) / 16 * 16; }

/*
 * Mirrors SMEM_BYTES in the templates: for v2 the staging area SM_TC of
 * mta_cuda_tc.cu (two stages of q and k rows, V rows and the rounded P
 * tile, with algo 1 the folded k rows, 16-bit elements; or one head's float
 * outputs, whichever is larger),
 * then the float tiles S | Z | P2 | M, L, A.
 */
size_t mta_cuda_smem_bytes(const struct mta_problem *p, const struct mta_variant *v)
{
	size_t qp = p->cq2 ? (size_t)p->cq2 - 1 : 0, kp = p->cq2 ? (size_t)p->ck2 - 1 : 0;
	size_t qr = p->cq ? (size_t)p->cq - 1 : 0, kr = p->cq ? (size_t)p->ck - 1 : 0;
	size_t rp = (size_t)v->bq + qp, cp = (size_t)v->bk + kp, hpb = (size_t)v->hpb;
	size_t s = hpb * rp * cp;
	size_t z = p->cq ? (rp + qr) * (cp + kr) : 0;
	size_t p2 = p->cq2 ? hpb * (size_t)v->bq * (size_t)v->bk : 0;
	size_t tc = 0;
	if (v->version >= 2) {
		size_t ds = r16((size_t)p->D) + 8, mr = r16(rp) + r16(qr), nc = (cp + kr + 7) / 8 * 8;
		size_t kc = p->cq && v->algo == 1 ? (cp + 7) / 8 * 8 * ds : 0;
		size_t stage = 2 * (2 * (mr + nc) * ds + (size_t)v->bk * ds +
				    (size_t)v->bq * ((size_t)v->bk + 8) + kc);
		size_t out = 4 * (size_t)v->bq * (size_t)p->D;
		tc = r16(stage > out ? stage : out);
	}
	return tc + 4 * (s + z + p2 + 3 * hpb * rp);
}

int mta_gen_cuda(const struct mta_problem *p, const struct mta_variant *v, char **source)
{
	const char *tpl = mta_embedded(TEMPLATE), *tc = mta_embedded(TEMPLATE_TC);
	char spec[MTA_SPEC_MAX];
	struct mta_buf b = { 0 };
	int rc;

	*source = NULL;
	if (v->backend != MTA_BACKEND_CUDA)
		return mta_fail(MTA_EINVAL, "the CUDA generator got a %s variant",
				mta_backend_name(v->backend));
	if ((rc = mta_variant_check(p, v)) || (rc = mta_variant_format(v, spec, sizeof spec)))
		return rc;
	if (!tpl)
		return mta_fail(MTA_ENOTFOUND, "template %s is not embedded in this build", TEMPLATE);
	const char *mark = strstr(tpl, TC_MARK);
	if (v->version >= 2 && (!tc || !mark))
		return mta_fail(MTA_ENOTFOUND, "template %s (or its mark in %s) is not in this build",
				TEMPLATE_TC, TEMPLATE);
	if ((rc = mta_gen_defines(&b, TEMPLATE, p, v))) {
		mta_buf_free(&b);
		return rc;
	}
	/* v2 splices the tensor-core template in at the mark (else it stays a comment) */
	if (v->version >= 2) {
		mta_buf_add(&b, tpl, (size_t)(mark - tpl));
		mta_buf_printf(&b, "%s%s", tc, mark);
	} else {
		mta_buf_printf(&b, "%s", tpl);
	}
	if (mta_test_fault(spec) == MTA_FAULT_SYNTAX) /* see gen/fault.h */
		mta_buf_printf(&b, "%s", MTA_FAULT_SYNTAX_LINE);
	return mta_buf_take(&b, "the CUDA source", source, NULL);
}

int mta_cuda_geometry(const struct mta_problem *p, const struct mta_variant *v, int64_t B,
		      int64_t T, struct mta_cuda_launch *g)
{
	int rc;
	if ((rc = mta_variant_check(p, v)))
		return rc;
	if (v->backend != MTA_BACKEND_CUDA)
		return mta_fail(MTA_EINVAL, "launch geometry asked for a %s variant",
				mta_backend_name(v->backend));
	if (B < 1 || B > 65535 || T < 1 || T > (1 << 30))
		return mta_fail(MTA_EINVAL, "B=%lld, T=%lld: the CUDA kernel takes 1 <= B <= 65535 "
				"and 1 <= T <= 2^30", (long long)B, (long long)T);
	g->grid[0] = (unsigned)((T + v->bq - 1) / v->bq);
	g->grid[1] = (unsigned)(p->H / v->hpb);
	g->grid[2] = (unsigned)B;
	g->block[0] = 32u * (unsigned)v->warps;
	g->block[1] = g->block[2] = 1;
	g->smem_bytes = mta_cuda_smem_bytes(p, v);
	return MTA_OK;
}
