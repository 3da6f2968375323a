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
#define TEMPLATE_MMA "templates/mta_cuda_mma.cu"
#define TEMPLATE_TC "templates/mta_cuda_tc.cu"
#define TEMPLATE_V3 "templates/mta_cuda_v3.cu"
#define TEMPLATE_DECODE "templates/mta_cuda_decode.cu"
#define TC_MARK "/* @MTA_TC@ */"

static size_t r16(size_t x) { return (x + 15) / 16 * 16; }
static size_t r8(size_t x) { return (x + 7) / 8 * 8; }
static size_t zmax(size_t a, size_t b) { return a > b ? a : b; }
static size_t zmin(size_t a, size_t b) { return a < b ? a : b; }

/* One count of v3's sizes for nstg q/k stages, q resident or not (the
 * template's V_* and SZ_*). */
static void v3_dims(const struct mta_problem *p, const struct mta_variant *v, size_t nstg,
		    int qres, struct mta_cuda_v3_dims *d)
{
	const size_t bq = (size_t)v->bq, bk = (size_t)v->bk, hpb = (size_t)v->hpb;
	/* a cluster's heads (K_CH), the rows a block mixes (V_RPC, V_BQC) */
	const size_t cs = v->cs > 1 ? (size_t)v->cs : 1, ch = hpb * cs;
	const int post = p->cq2 || p->head_post;
	memset(d, 0, sizeof *d);
	d->qr = p->cq ? p->cq - 1 : 0;
	d->kr = p->cq ? p->ck - 1 : 0;
	d->qp = p->cq2 ? p->cq2 - 1 : 0;
	d->kp = p->cq2 ? p->ck2 - 1 : 0;
	d->rp = v->bq + d->qp;
	d->rz = d->rp + d->qr;
	d->dk = (int)r16((size_t)p->D);
	d->ds = d->dk + 8;
	d->zm = (int)(p->cq ? r16((size_t)d->rz) : r16((size_t)d->rp));
	d->nr8 = (d->rp + 7) / 8;
	d->tk = p->cq ? (15 + p->ck + 15) / 16 : 0;
	d->zr = p->cq ? 8 * d->nr8 + d->qr : 0;
	d->zs = p->cq ? (int)r8(zmax((size_t)d->kr + bk, bk - 16 + 16 * (size_t)d->tk)) + 8 : 0;
	d->wtn = p->cq ? 16 * d->tk + 16 : 0;
	d->ss = v->bk + 4;
	d->tk2 = p->cq2 ? (15 + p->ck2 + 15) / 16 : 0;
	d->ps = p->cq2 ? (int)r8(zmax((size_t)d->kp + bk, bk - 16 + 16 * (size_t)d->tk2)) + 8
		       : v->bk + 8;
	d->wtn2 = p->cq2 ? 16 * d->tk2 + 16 : 0;
	d->pbs = v->bk + 8;
	d->gs = p->head_post == MTA_HPOST_CONV ? p->hc : (int)ch;
	d->nt8 = (int)(r8((size_t)p->D) / 8);
	d->tph = d->nt8 * (v->bq / 16);
	/* q.k's tile width (V_QN) and the accumulator units of V_PW tiles */
	const int ak1 = (v->hpb * d->tph + v->warps - 1) / v->warps;
	/* a cluster of four pairs phase A's heads (V_QPAIR, V_QH) */
	const int qpair = cs >= 4 && v->bk % 32 == 0 && v->hpb % 2 == 0;
	d->qn = qpair || (v->bk % 32 == 0 && v->bk / 32 >= v->warps && d->zm <= 32 &&
			  ak1 * 4 <= 96 && v->warps <= 8) ? 2 : 1;
	d->pw = d->nt8 % 2 == 0 && (d->qn == 1 || qpair) ? 2 : 1;
	d->qh = qpair && nstg >= 4 ? 2 : 1;
	{ /* V_QC column groups, V_QS row ranges (more than one in a cluster) */
		const int qc = v->bk / (16 * d->qn), qm = d->zm / 16;
		int qs0 = cs > 1 ? v->warps / (qc * d->qh) : 1;
		qs0 = qs0 < 1 ? 1 : qs0 > qm ? qm : qs0;
		const int qms = (qm + qs0 - 1) / qs0;
		d->qunits = qc * ((qm + qms - 1) / qms);
	}
	/* a thread's chunk slots in the staging plan (V_PS_N) and in V's (V_VS_N):
	 * one bit each in a 32-bit mask */
	{
		const int chk = d->dk / 8, qch = d->zm * chk, kch = v->bk * chk, w = v->warps;
		if (w >= 2 && qres) { /* q resident (V_QRES): every warp stages k */
			d->ps_n = (kch + 32 * w - 1) / (32 * w);
		} else if (w >= 2) {
			int wq = (w * qch + (qch + kch) / 2) / (qch + kch);
			wq = wq < 1 ? 1 : wq > w - 1 ? w - 1 : wq;
			const int a = (qch + 32 * wq - 1) / (32 * wq);
			const int b = (kch + 32 * (w - wq) - 1) / (32 * (w - wq));
			d->ps_n = a > b ? a : b;
		} else {
			d->ps_n = 1;
		}
		d->vs_n = (kch + 32 * w - 1) / (32 * w);
	}
	d->ak = d->pw * ((v->hpb * (d->tph / d->pw) + v->warps - 1) / v->warps);
	/* the convolutions' m16 tiles an item and most items a run (V_TW, V_RUN_MAX) */
	d->tw = v->bk >= 32 ? 2 : 1;
	d->runmax = (d->ak * 4 > 96 ? 3 : v->cs >= 4 && ch == 16 ? 10 : 6) / d->tw;
	d->nstg = (int)nstg;
	d->sz_wt = p->cq ? hpb * (size_t)p->cq * (size_t)d->wtn * 4 : 0;
	d->sz_w2 = p->cq2 ? hpb * (size_t)p->cq2 * (size_t)d->wtn2 * 4 : 0;
	d->sz_wm1 = p->head_pre ? ch * ch * 4 : 0;
	d->sz_wm2 = p->head_post ? ch * (size_t)d->gs * 4 : 0;
	/* q resident in a cluster (V_QRES, SZ_Q): a stage holds k rows alone */
	const size_t qst = qres ? 0 : (size_t)d->zm;
	const size_t sz_qk = nstg * (qst + bk) * (size_t)d->ds * 2;
	const size_t sz_q = qres ? hpb * (size_t)d->zm * (size_t)d->ds * 2 : 0;
	d->qres = qres;
	d->sz_z = p->cq ? hpb * (size_t)d->zr * (size_t)d->zs * 2 : 0;
	/* head mixing on the tensor cores for 16- and 32-head blocks or
	 * clusters (V_TCMIX, V_TCMIXP) */
	const int tch = ch == 16 || ch == 32;
	const int tcmix = p->head_pre && tch;
	const int tcmixp = p->head_post && tch && p->cq2;
	const int s32 = !tcmix || (p->cq2 && !tcmixp);
	/* the tensor-core mixings' operands: heads V_SH, V_SH2 apart (rows of bk + 8) */
	const size_t rpc = cs > 1 ? ((size_t)d->rp + 2 * cs - 1) / (2 * cs) * 2 : (size_t)d->rp;
	const size_t bqc = bq / cs;
	d->rpc = (int)rpc;
	const size_t sh = r16(rpc * (bk + 8)) + 8, sh2 = r16(bqc * (bk + 8)) + 8;
	const size_t sz_p2 = tcmixp ? ch * sh2 * 2 : 0;
	d->sz_s = zmax(zmax(s32 ? hpb * (size_t)d->rp * (size_t)d->ss * 4 : 0,
			    tcmix ? 2 * ch * sh * 2 : 0), sz_p2);
	d->sz_p = post ? hpb * (size_t)d->rp * (size_t)d->ps * 2 : 0;
	d->sz_pb = hpb * (bq * (size_t)d->pbs + 8) * 2; /* the head stride V_PBH */
	/* the P tile in S, Z's carry in place (V_PBINS, V_ZIN) */
	const int pbins = tcmix && tcmixp && cs == 1 && r16(sz_p2) + d->sz_pb <= d->sz_s;
	d->sz_zc = p->cq && !pbins ? hpb * (size_t)d->zr * (size_t)((d->kr + 1) / 2) * 4 : 0;
	d->sz_st = (2 * ch * rpc + hpb * bq) * 4;
	const size_t vcap = sz_qk / (bk * (size_t)d->ds * 2); /* V_VCAP: heads of V rows */
	d->vb = vcap >= 3 ? 3 : 2;
	d->vg = (int)zmin(hpb, zmax(1, vcap / (size_t)d->vb));
	d->sz_stg = zmax(zmax(sz_qk, (size_t)d->vb * (size_t)d->vg * bk * (size_t)d->ds * 2),
			 bq * (size_t)p->D * 4);
	d->sz_pbx = !pbins && d->sz_pb > d->sz_z ? d->sz_pb : 0;
	/* a cluster's five mbarriers (SZ_MB: KP even; templates/mta_cuda_v3.cu v3_mb) */
	const size_t sz_mb = cs > 1 && d->kp % 2 == 0 ? 40 : 0;
	d->smem = r16(d->sz_wt) + r16(d->sz_w2) + r16(d->sz_wm1) + r16(d->sz_wm2) + r16(d->sz_stg) +
		  r16(d->sz_z) + r16(d->sz_zc) + r16(d->sz_s) + r16(d->sz_p) + r16(d->sz_pbx) +
		  r16(d->sz_st) + r16(sz_q) + sz_mb;
}

/* Four q/k stages when they fit sm_90's 227 KiB and leave an SM's 228 KiB
 * as many blocks as two do, else three, else two or one (the template's
 * V_NSTG). */
void mta_cuda_v3_dims(const struct mta_problem *p, const struct mta_variant *v,
		      struct mta_cuda_v3_dims *d)
{
	struct mta_cuda_v3_dims two;
	int qres = 0;
	if (v->cs > 1) { /* q resident where two stages fit beside it (V_QRES) */
		v3_dims(p, v, 2, 1, &two);
		qres = two.smem <= 232448;
	}
	v3_dims(p, v, 2, qres, &two);
	for (size_t n = 4; n >= 3; n--) {
		v3_dims(p, v, n, qres, d);
		if (d->smem <= 232448 && 233472 / (d->smem + 1024) >= 233472 / (two.smem + 1024))
			return;
	}
	*d = two;
	if (d->smem > 232448)
		v3_dims(p, v, 1, qres, d);
}

/*
 * Mirrors SMEM_BYTES in the templates: for v2 the staging area SM_TC of
 * mta_cuda_tc.cu (two stages of q and k rows, V rows and the rounded P
 * tile, with algo 1 the folded k rows, 16-bit elements; or one head's float
 * outputs, whichever is larger),
 * then the float tiles S | Z | P2 | M, L, A.
 */
size_t mta_cuda_smem_bytes(const struct mta_problem *p, const struct mta_variant *v)
{
	if (v->version == 3) {
		struct mta_cuda_v3_dims d;
		mta_cuda_v3_dims(p, v, &d);
		return d.smem;
	}
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
	const char *tpl = mta_embedded(TEMPLATE), *mma = mta_embedded(TEMPLATE_MMA);
	const char *fam = mta_embedded(v->version == 3 ? TEMPLATE_V3 : TEMPLATE_TC);
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
	if (v->version >= 2 && (!mma || !fam || !mark))
		return mta_fail(MTA_ENOTFOUND, "template %s or %s (or the mark in %s) is not in this "
				"build", TEMPLATE_MMA, v->version == 3 ? TEMPLATE_V3 : TEMPLATE_TC,
				TEMPLATE);
	if ((rc = mta_gen_defines(&b, TEMPLATE, p, v))) {
		mta_buf_free(&b);
		return rc;
	}
	/* the launch's dynamic shared memory, which this file computes from a
	 * mirror of the template's layout: the template checks it holds its own */
	mta_buf_printf(&b, "#define K_SMEM_BYTES %zu\n", mta_cuda_smem_bytes(p, v));
	/* v2 and v3 splice the mma helpers and their family's text in at the
	 * mark (for v1 it stays a comment) */
	if (v->version >= 2) {
		mta_buf_add(&b, tpl, (size_t)(mark - tpl));
		mta_buf_printf(&b, "%s\n%s%s", mma, fam, mark);
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
	/* a cluster's blocks consecutive in x, on one query tile */
	g->grid[0] = (unsigned)((T + v->bq - 1) / v->bq * v->cs);
	g->grid[1] = (unsigned)(p->H / (v->hpb * v->cs));
	g->grid[2] = (unsigned)B;
	g->block[0] = 32u * (unsigned)v->warps;
	g->block[1] = g->block[2] = 1;
	g->smem_bytes = mta_cuda_smem_bytes(p, v);
	return MTA_OK;
}

/* ---- the backward ---- */

#define TEMPLATE_BWD "templates/mta_cuda_bwd.cu"

/*
 * The one check of a backward variant, for its generator and its sizes:
 * a cuda variant (else "<who> a <backend> variant") that keeps the
 * backward's rules, mta_variant_check_kernel, which validates p first.
 * The plan (mta_cuda_bwd_plan) checks p, the shape and (B, T) on its own,
 * for an exported library, which has no variants.
 */
static int bwd_check(const struct mta_problem *p, const struct mta_variant *v, const char *who)
{
	if (!v || v->backend != MTA_BACKEND_CUDA)
		return mta_fail(MTA_EINVAL, "%s a %s variant", who,
				v ? mta_backend_name(v->backend) : "missing");
	return mta_variant_check_kernel(p, v, MTA_OP_BWD);
}

int mta_cuda_bwd_dims(const struct mta_problem *p, const struct mta_variant *v, int64_t B,
		      int64_t T, struct mta_cuda_bwd_dims *d, long long *plan)
{
	int rc;
	memset(d, 0, sizeof *d); /* zero on every failure, the variant's too */
	if ((rc = bwd_check(p, v, "the CUDA backward's sizes asked for")))
		return rc;
	const struct mta_cuda_bwd_shape s = mta_cuda_bwd_shape_of(v);
	return mta_cuda_bwd_plan(p, &s, B, T, d, plan);
}

struct mta_cuda_bwd_shape mta_cuda_bwd_shape_of(const struct mta_variant *v)
{
	return (struct mta_cuda_bwd_shape){ v->bq, v->warps, v->nb };
}

int64_t mta_cuda_bwd_work_bytes(const struct mta_problem *p, const struct mta_variant *v,
				int64_t B, int64_t T)
{
	struct mta_cuda_bwd_dims d;
	if (mta_cuda_bwd_dims(p, v, B, T, &d, NULL))
		return -1;
	return (int64_t)d.nb * d.ws_stride * 4 + d.part_floats * 4 + (int64_t)d.nb * d.wg_n * 8 +
	       (int64_t)sizeof(long long) * 2 * (d.nb + 1) + (int64_t)d.wg_n * 4 + 4;
}

int mta_gen_cuda_bwd(const struct mta_problem *p, const struct mta_variant *v, char **source)
{
	const char *tpl = mta_embedded(TEMPLATE_BWD);
	struct mta_variant k;
	struct mta_buf b = { 0 };
	int rc;

	*source = NULL;
	if ((rc = bwd_check(p, v, "the CUDA backward generator got")))
		return rc;
	if (!tpl)
		return mta_fail(MTA_ENOTFOUND, "template %s is not embedded in this build", TEMPLATE_BWD);
	/* nb is the launcher's (cudagen.h): the source is nb's alone */
	k = *v;
	k.nb = 0;
	if ((rc = mta_gen_defines(&b, TEMPLATE_BWD, p, &k))) {
		mta_buf_free(&b);
		return rc;
	}
	mta_buf_printf(&b, "#define K_BWD_BQ %d\n#define K_BWD_WARPS %d\n\n%s", v->bq, v->warps,
		       tpl);
	return mta_buf_take(&b, "the CUDA backward source", source, NULL);
}

/* ---- decode (templates/mta_cuda_decode.cu) ---- */

int mta_cuda_decode_dims(const struct mta_problem *p, const struct mta_variant *v,
			 unsigned *threads, size_t *smem_bytes)
{
	struct mta_variant d;
	int rc;
	if (!v) {
		if ((rc = mta_variant_default_op(p, MTA_BACKEND_CUDA, MTA_OP_DECODE, &d)))
			return rc;
		v = &d;
	} else if ((rc = mta_variant_check_kernel(p, v, MTA_OP_DECODE))) {
		return rc;
	}
	*threads = 32u * (unsigned)v->warps;
	*smem_bytes = 4u * 2u * (size_t)v->warps; /* the block reductions' partials */
	return MTA_OK;
}

int mta_gen_cuda_decode(const struct mta_problem *p, const struct mta_variant *v, char **source)
{
	static const char path[] = TEMPLATE_DECODE;
	struct mta_variant d;
	struct mta_buf b = { 0 };
	int rc;

	*source = NULL;
	const char *tpl = mta_embedded(path);
	if (!tpl)
		return mta_fail(MTA_EUNSUPPORTED, "this build lacks %s", path);
	if (!v) {
		if ((rc = mta_variant_default_op(p, MTA_BACKEND_CUDA, MTA_OP_DECODE, &d)))
			return rc;
		v = &d;
	}
	if (v->backend != MTA_BACKEND_CUDA)
		return mta_fail(MTA_EINVAL, "the CUDA decode generator got a %s variant",
				mta_backend_name(v->backend));
	if ((rc = mta_variant_check_kernel(p, v, MTA_OP_DECODE)))
		return rc;
	/* the problem's #defines, then the two tunables the kernel reads */
	if ((rc = mta_gen_defines(&b, path, p, v))) {
		mta_buf_free(&b);
		return rc;
	}
	mta_buf_printf(&b, "#define K_DEC_WARPS %d\n#define K_DEC_BK %d\n\n%s", v->warps, v->bk, tpl);
	return mta_buf_take(&b, "a CUDA decode kernel", source, NULL);
}
