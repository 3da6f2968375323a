/*
 * regions.c: the `@model` marks of the kernel templates and the trip counts
 * behind them (see model.h).
 *
 * A mark is a comment `@model NAME` on the line of a for, while or if: the
 * region is that statement (up to its matching brace, or its semicolon when
 * it has no braces). `@model VAR=N` on a line sets VAR for the regions of
 * everything inlined through that line (call sites that pass constants the
 * formulas need: which pass, which staging call). NAME's factor is how many
 * times the region's body runs per warp each time the enclosing region runs
 * (a loop's trip count, a branch's fraction, a loop the compiler unrolls
 * with a run-time exit: the fraction of its copies that run). The formulas
 * below mirror the templates' loops; a mark without a formula is an error,
 * and a SASS loop without a mark is reported by the model (model.c).
 */
#include "tuner/model/model.h"
#include "gen/cuda/cudagen.h"
#include "runtime/core/error.h"

#include <ctype.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

/* Skip a comment or a string literal at s (returns s when there is none). */
static const char *skip_lexeme(const char *s)
{
	if (s[0] == '/' && s[1] == '/')
		return s + strcspn(s, "\n");
	if (s[0] == '/' && s[1] == '*') {
		const char *e = strstr(s + 2, "*/");
		return e ? e + 2 : s + strlen(s);
	}
	if (*s == '"' || *s == '\'') {
		char q = *s++;
		while (*s && *s != q && *s != '\n')
			s += *s == '\\' && s[1] ? 2 : 1;
		return *s == q ? s + 1 : s;
	}
	return s;
}

static int line_of(const char *src, const char *at)
{
	int n = 1;
	for (const char *c = src; c < at; c++)
		n += *c == '\n';
	return n;
}

/* The end of the statement that starts at s: its closing brace or semicolon. */
static const char *statement_end(const char *s)
{
	int paren = 0, brace = 0;
	while (*s) {
		const char *n = skip_lexeme(s);
		if (n != s) {
			s = n;
			continue;
		}
		if (*s == '(')
			paren++;
		else if (*s == ')')
			paren--;
		else if (*s == '{')
			brace++;
		else if (*s == '}') {
			if (--brace == 0 && paren == 0)
				return s;
		} else if (*s == ';' && paren == 0 && brace == 0)
			return s;
		s++;
	}
	return NULL;
}

/* The first keyword for/while/if on the line starting at ls (before le). */
static const char *keyword(const char *ls, const char *le)
{
	static const char *const kw[] = { "for", "while", "if" };
	for (const char *c = ls; c < le; c++) {
		const char *n = skip_lexeme(c);
		if (n != c) {
			c = n - 1;
			continue;
		}
		if (c > ls && (isalnum((unsigned char)c[-1]) || c[-1] == '_'))
			continue;
		for (int k = 0; k < 3; k++) {
			size_t len = strlen(kw[k]);
			if (!strncmp(c, kw[k], len) && !isalnum((unsigned char)c[len]) && c[len] != '_') {
				const char *p = c + len;
				while (*p == ' ' || *p == '\t')
					p++;
				if (*p == '(')
					return c;
			}
		}
	}
	return NULL;
}

int mta_regions_parse(const char *source, struct mta_region **out, size_t *n)
{
	struct mta_region *r = NULL;
	size_t cnt = 0, cap = 0;
	*out = NULL;
	*n = 0;
	for (const char *m = strstr(source, "@model "); m; m = strstr(m + 1, "@model ")) {
		const char *ls = m, *le = m + strcspn(m, "\n");
		while (ls > source && ls[-1] != '\n')
			ls--;
		/* the mark must sit in a comment: a preceding comment opener on its line */
		const char *open = NULL;
		for (const char *c = ls; c < m; c++)
			if (c[0] == '/' && (c[1] == '*' || c[1] == '/'))
				open = c;
		if (!open)
			continue;
		if (cnt == cap) {
			cap = cap ? 2 * cap : 64;
			struct mta_region *nr = realloc(r, cap * sizeof *r);
			if (!nr) {
				free(r);
				return mta_fail(MTA_ENOMEM, "out of memory");
			}
			r = nr;
		}
		struct mta_region *x = &r[cnt];
		memset(x, 0, sizeof *x);
		const char *name = m + 7;
		size_t len = strcspn(name, " \t*\n");
		const char *eq = memchr(name, '=', len);
		if (eq) {
			snprintf(x->var, sizeof x->var, "%.*s", (int)(eq - name), name);
			x->val = atoi(eq + 1);
		} else {
			snprintf(x->name, sizeof x->name, "%.*s", (int)len, name);
		}
		x->start = x->end = line_of(source, ls);
		const char *kw = eq ? NULL : keyword(ls, le);
		if (kw) {
			const char *e = statement_end(kw);
			if (!e) {
				int line = x->start;
				char nm[24];
				snprintf(nm, sizeof nm, "%s", x->name);
				free(r);
				return mta_fail(MTA_EFORMAT, "line %d: the statement marked '@model %s' has "
						"no end", line, nm);
			}
			x->end = line_of(source, e);
		}
		cnt++;
	}
	*out = r;
	*n = cnt;
	return MTA_OK;
}

/* ---- trip counts ------------------------------------------------------------ */

static double cdiv(double a, double b) { return ceil(a / b); }

/* Iterations per warp, averaged over the block's warps, of
 * `for (e = threadIdx.x; e < n; e += 32*warps)`: a warp runs while any lane has work. */
static double tid_loop(double n, int warps)
{
	double s = 0;
	for (int w = 0; w < warps; w++)
		s += n > 32.0 * w ? cdiv(n - 32.0 * w, 32.0 * warps) : 0;
	return s / warps;
}

/* `for (x = warp; x < n; x += warps)`, per warp on average. */
static double warp_loop(double n, int warps)
{
	return n > 0 ? n / warps : 0;
}

/* v3_stage: per warp, the rows loop of threads that keep a 16-byte chunk
 * each (ch chunks a row, NT/ch rows a pass; the threads past the last whole
 * row of chunks return). */
static double stage_loop(int npad, int ch, int warps)
{
	int nt = 32 * warps, rows = nt / ch;
	double s = 0;
	for (int w = 0; w < warps; w++) {
		int most = 0;
		for (int l = 0; l < 32; l++) {
			int tid = 32 * w + l, r0 = tid / ch;
			if (tid >= rows * ch || r0 >= npad)
				continue;
			int it = (npad - r0 + rows - 1) / rows;
			most = it > most ? it : most;
		}
		s += most;
	}
	return s / warps;
}

/* Key tiles of the block at i0 (every family: ceil(min(i0 + bq, T) / bk)). */
static int key_tiles(const struct mta_model_block *b)
{
	int64_t end = b->i0 + b->v->bq < b->T ? b->i0 + b->v->bq : b->T;
	return (int)((end + b->v->bk - 1) / b->v->bk);
}

/* v3: the tile loop's first tiles (t_z: Z only; t_s: S and P, no output). */
static void v3_first(const struct mta_problem *p, int pass, int *tz, int *ts)
{
	int kp = p->cq2 ? p->ck2 - 1 : 0;
	*ts = pass == 2 && kp ? -1 : 0;
	*tz = p->cq ? *ts - 1 : *ts;
}

/* v3_toeplitz (cv 1: the pre-softmax convolution, 2: the post-softmax one),
 * as v3_cv: runs (of at most V_RUN_MAX items of one head) per warp; the mean
 * share of a run's unrolled item copies that run (share: the stores, a test
 * an item); and the share of the items of every size's body (v3_crun, one
 * for each run size that occurs) that a run runs (body). */
static void v3_runs(const struct mta_variant *v, const struct mta_cuda_v3_dims *d, int cv,
		    double *runs, double *share, double *body)
{
	int iph = (v->bk / (16 * d->tw)) * (cv == 2 ? v->bq / 8 : d->nr8), items = v->hpb * iph;
	int wph = v->warps % v->hpb == 0 ? v->warps / v->hpb : 0;
	int ipw = wph ? (iph + wph - 1) / wph : (items + v->warps - 1) / v->warps;
	int run = ipw < iph ? ipw : iph;
	run = run < d->runmax ? run : d->runmax;
	double nr = 0, used = 0;
	char seen[64] = { 0 };
	for (int w = 0; w < v->warps; w++) {
		int it = wph ? w / wph * iph + w % wph * ipw : w * ipw;
		int it1 = wph ? (it + ipw < w / wph * iph + iph ? it + ipw : w / wph * iph + iph) :
			  (it + ipw < items ? it + ipw : items);
		while (it < it1) {
			int hh = it / iph, e = (hh + 1) * iph < it1 ? (hh + 1) * iph : it1;
			int k = e - it < run ? e - it : run;
			nr++;
			used += k;
			it += k;
			if (k < (int)sizeof seen)
				seen[k] = 1;
		}
	}
	int sizes = 0;
	for (int k = 1; k < (int)sizeof seen; k++)
		sizes += seen[k] ? k : 0;
	*runs = nr / v->warps;
	*share = nr ? used / (nr * run) : 0;
	*body = nr && sizes ? used / (nr * sizes) : 0;
}

static int r16(int x) { return (x + 15) / 16 * 16; }
static int r8(int x) { return (x + 7) / 8 * 8; }

/* v1/v2 (templates/mta_cuda.cu, mta_cuda_tc.cu): the sizes of their macros. */
struct v12 {
	int qr, kr, ok1, qp, kp, ok2, rp, cp, rz, cz, dk, nrl, ncl, mr, nc, nf, tph;
};

static void v12_dims(const struct mta_problem *p, const struct mta_variant *v, struct v12 *d)
{
	d->qr = p->cq ? p->cq - 1 : 0;
	d->kr = p->cq ? p->ck - 1 : 0;
	d->ok1 = p->cq ? mta_pad_offset(p->pad, p->ck) : 0;
	d->qp = p->cq2 ? p->cq2 - 1 : 0;
	d->kp = p->cq2 ? p->ck2 - 1 : 0;
	d->ok2 = p->cq2 ? mta_pad_offset(p->pad, p->ck2) : 0;
	d->rp = v->bq + d->qp;
	d->cp = v->bk + d->kp;
	d->rz = d->rp + d->qr;
	d->cz = d->cp + d->kr;
	d->dk = r16(p->D);
	d->nrl = p->cq ? d->rz : d->rp;
	d->ncl = p->cq ? d->cz : d->cp;
	d->mr = r16(d->rp) + r16(d->qr);
	d->nc = r8(d->ncl);
	d->nf = r8(d->cp);
	d->tph = (v->bq / 16) * (r8(p->D) / 8);
}

/* v2 algo 1: the share of the block's key tiles (pass 1 or 2) in which some
 * logit is folded (want 1) or some is not (want 2): fold_kind's tests. */
static double v12_fold(const struct mta_model_block *b, const struct v12 *d, int pass, int want)
{
	const struct mta_variant *v = b->v;
	int nkt = key_tiles(b), hits = 0;
	int th = -(d->qr + d->kr - d->ok1), rP0 = b->i0 - d->qp;
	for (int t = 0; t < nkt; t++) {
		int cP0 = pass == 2 ? t * v->bk - d->ok2 : t * v->bk;
		int ncols = pass == 2 ? d->cp : v->bk;
		int all = cP0 + ncols - 1 - rP0 <= th, some = cP0 - (rP0 + d->rp - 1) <= th;
		hits += want == 1 ? some : !all;
	}
	return nkt ? (double)hits / nkt : 0;
}

/* v3_qk: the share of a pass's 16x8 q.k tiles (over its key tiles) that need
 * no mask: causal throughout, rows before T and kept by Z (v3.qkfull). */
static double v3_qk_full(const struct mta_problem *p, const struct mta_variant *v,
			 const struct mta_cuda_v3_dims *d, const struct v12 *e,
			 const struct mta_model_block *b, int pass, int tz, int nkt)
{
	const int ok1 = e->ok1, ok2 = e->ok2;
	int rq0 = b->i0 - d->qp - d->qr, full = 0, all = 0;
	for (int t = tz; t < nkt; t++) {
		int sc0 = t * v->bk + (pass == 2 ? d->kp - ok2 : 0);
		int zq = p->cq ? sc0 - ok1 + d->kr : sc0;
		for (int m0 = 0; m0 < d->zm; m0 += 16)
			for (int n0 = 0; n0 < v->bk; n0 += 8) {
				all++;
				full += zq + n0 >= 0 && zq + n0 + 7 <= rq0 + m0 &&
					rq0 + m0 + 15 < b->T && m0 + 16 <= d->zr;
			}
	}
	return all ? (double)full / all : 0;
}

/* v3_mixsoft: the share of a pass's (row, key tile) pairs from tile ts on
 * whose every column is a valid key (v3.msfull: no column tested). */
static double v3_ms_full(const struct mta_variant *v, const struct mta_cuda_v3_dims *d,
			 const struct v12 *e, const struct mta_model_block *b, int pass, int ts,
			 int nkt)
{
	const int ok2 = e->ok2;
	int nrows = pass == 0 ? v->bq : d->rp, ib = pass == 0 ? b->i0 : b->i0 - d->qp;
	long full = 0, all = 0;
	for (int t = ts; t < nkt; t++) {
		int sc0 = t * v->bk + (pass == 2 ? d->kp - ok2 : 0);
		for (int r = 0; r < nrows; r++) {
			int i = ib + r, lim = i < b->T ? i - sc0 : -1;
			all++;
			full += lim >= v->bk - 1 && sc0 >= 0;
		}
	}
	return all ? (double)full / all : 0;
}

/* v3_softmax: the share of a pass's warp steps from tile ts on whose every
 * lane has 8 valid columns (v3.smfull: no column tested). A step's 32 lanes
 * hold 32 / (BK/8) consecutive rows of the block's (head, row) order (as
 * v3_softmax's tasks), and a row is whole when its every column is a valid
 * key; a step past the last row (idle lanes) counts with its rows alone. */
static double v3_sm_full(const struct mta_variant *v, const struct mta_cuda_v3_dims *d,
			 const struct v12 *e, const struct mta_model_block *b, int pass, int ts,
			 int nkt)
{
	const int ok2 = e->ok2, per = 32 / (v->bk / 8 > 0 ? v->bk / 8 : 1);
	int nrows = pass == 0 ? v->bq : d->rp, ib = pass == 0 ? b->i0 : b->i0 - d->qp;
	const int rows = v->hpb * nrows;
	long full = 0, all = 0;
	for (int t = ts; t < nkt; t++) {
		int sc0 = t * v->bk + (pass == 2 ? d->kp - ok2 : 0);
		for (int g = 0; g < rows; g += per) {
			int whole = 1;
			for (int k = g; k < g + per && k < rows; k++) {
				int i = ib + k % nrows, lim = i < b->T ? i - sc0 : -1;
				whole &= lim >= v->bk - 1 && sc0 >= 0;
			}
			all++;
			full += whole;
		}
	}
	return all ? (double)full / all : 0;
}

/* v3_toeplitz's stores (cv as v3_runs): the share of its work items whose
 * outputs are stored with no test an element (v3.cfull): every row kept
 * (below RP, cv 1) and, for the post-softmax convolution (cv 2, over the
 * key tiles t >= 0), every element causal and before T. */
static double v3_conv_full(const struct mta_variant *v, const struct mta_cuda_v3_dims *d,
			   const struct mta_model_block *b, int cv, int nkt)
{
	const int nr8 = cv == 2 ? v->bq / 8 : d->nr8, nout = cv == 2 ? v->bq : d->rp;
	const int cw = 16 * d->tw;
	long full = 0, all = 0;
	for (int t = 0; t < (cv == 2 ? nkt : 1); t++)
		for (int c0 = 0; c0 < v->bk; c0 += cw)
			for (int n0 = 0; n0 < 8 * nr8; n0 += 8) {
				int ok = n0 + 8 <= nout;
				if (cv == 2)
					ok = ok && b->i0 + n0 + 7 < b->T &&
					     (long)t * v->bk + c0 + cw - 1 <= b->i0 + n0;
				all++;
				full += ok;
			}
	return all ? (double)full / all : 0;
}

/* v3_conv_out in a cluster whose convolutions send words (V_XC): the share
 * of (work item, block) pairs whose item has a lane storing into the block
 * itself (local, v3.xloc) or into a peer (v3.xrem); an item whose rows two
 * blocks own takes both branches. */
static double v3_conv_own(const struct mta_variant *v, const struct mta_cuda_v3_dims *d, int cv,
			  int cs, int local)
{
	const int nr8 = cv == 2 ? v->bq / 8 : d->nr8, nout = cv == 2 ? v->bq : d->rp;
	const int rpb = cv == 2 ? v->bq / cs : d->rpc;
	long hit = 0, all = 0;
	for (int x = 0; x < cs; x++)
		for (int n0 = 0; n0 < 8 * nr8; n0 += 8) {
			int loc = 0, rem = 0;
			for (int r = n0; r < n0 + 8 && r < nout; r++) {
				const int to = r / rpb < cs - 1 ? r / rpb : cs - 1;
				loc |= to == x;
				rem |= to != x;
			}
			all++;
			hit += local ? loc : rem;
		}
	return all ? (double)hit / all : 0;
}

int mta_region_factor(const char *name, const struct mta_model_block *b, double *f)
{
	const struct mta_problem *p = b->p;
	const struct mta_variant *v = b->v;
	const int nw = v->warps, pass = b->vars[0], st = b->vars[1], mix = b->vars[2];
	const int cv = b->vars[3];
	const int hpb = v->hpb, bq = v->bq, bk = v->bk;
	const int cs = v->version == 3 && v->cs > 1 ? v->cs : 1; /* blocks a cluster */

	const int nkt = key_tiles(b);
	struct mta_cuda_v3_dims d;
	int tz = 0, ts = 0;

	struct v12 e;
	v12_dims(p, v, &e);
	const int ncols = pass == 2 ? e.cp : bk; /* logits_tile's columns in each pass */
	*f = 1;
	if (v->version == 3) {
		mta_cuda_v3_dims(p, v, &d);
		v3_first(p, pass, &tz, &ts);
	}
#define IS(s) (!strcmp(name, s))
	/*
	 * ---- every family: a packed launch's block finds its document by a
	 * binary search (doc_tile in templates/mta_cuda.cu, about log2(ndocs)
	 * steps); the model prices launches of whole sequences, where the
	 * search does not run ----
	 */
	if (IS("doc.search"))
		*f = 0;
	/* an mbarrier wait's retry loop (mta_mbar_wait): its cost is the wait,
	 * priced as a barrier's (sass.c), the loop once */
	else if (IS("mbar.wait"))
		*f = 1;
	/* ---- v3 (templates/mta_cuda_v3.cu) ---- */
	else if (IS("v3.kt"))
		*f = nkt - tz;
	else if (IS("v3.kts"))
		*f = nkt - tz > 0 ? (double)(nkt - ts) / (nkt - tz) : 0;
	else if (IS("v3.ktout"))
		*f = pass == 1 ? 0 : nkt - ts > 0 ? (double)nkt / (nkt - ts) : 0;
	/* phase A's first copies: at the tile's start (v3.first), but in pass 1
	 * after the phase A of the tile before (v3.next), the first tile's excepted */
	else if (IS("v3.first"))
		*f = pass != 1 ? 1 : nkt - tz > 0 ? 1.0 / (nkt - tz) : 0;
	else if (IS("v3.next"))
		*f = pass != 1 ? 0 : nkt - tz > 0 ? (double)(nkt - tz - 1) / (nkt - tz) : 0;
	else if (IS("v3.vpre")) /* P.V's first copies: the tiles t >= 0 of passes 0 and 2 */
		*f = pass == 1 || nkt - tz <= 0 ? 0 : (double)nkt / (nkt - tz);
	else if (IS("v3.ahead")) {
		/* the heads whose copy a step issues (a statement for each of the
		 * step's qh heads): all but the first nstg - qh */
		int qh = d.qh > 0 ? d.qh : 1, ahead = d.nstg > 1 ? d.nstg - qh : 0;
		*f = hpb > ahead ? (double)(hpb - ahead) / hpb : 0;
	} else if (IS("v3.heads")) /* steps: qh heads each */
		*f = (double)hpb / (d.qh > 0 ? d.qh : 1);
	else if (IS("v3.stage")) /* st: 1 the q rows, 2 k or V rows */
		*f = stage_loop(st == 1 ? d.zm : bk, d.dk / 8, nw);
	else if (IS("v3.qkfull") || IS("v3.qkedge")) {
		double full = v3_qk_full(p, v, &d, &e, b, pass, tz, nkt);
		*f = IS("v3.qkfull") ? full : 1 - full;
	} else if (IS("v3.msfull") || IS("v3.msedge")) {
		double full = v3_ms_full(v, &d, &e, b, pass, ts, nkt);
		*f = IS("v3.msfull") ? full : 1 - full;
	} else if (IS("v3.smfull") || IS("v3.smedge")) {
		double full = v3_sm_full(v, &d, &e, b, pass, ts, nkt);
		*f = IS("v3.smfull") ? full : 1 - full;
	} else if (IS("v3.vec") || IS("v3.vplan")) /* planned 16-byte copies (q, k; V): D % 8 == 0 */
		*f = p->D % 8 || nw < 2 ? 0 : 1;  /* (priced), two warps or more (V_PLAN) */
	else if (IS("v3.novec") || IS("v3.vnoplan"))
		*f = p->D % 8 || nw < 2 ? 1 : 0;
	else if (IS("v3.vlast")) { /* the threads with a V chunk in the last slot: whole warps */
		int kch = bk * (d.dk / 8), nt = 32 * nw, slots = (kch + nt - 1) / nt;
		int last = kch - (slots - 1) * nt;
		*f = (double)((last + 31) / 32 < nw ? (last + 31) / 32 : nw) / nw;
	} else if (IS("v3.stagepart")) /* the chunk that D ends in, when D % 8 != 0 */
		*f = p->D % 8 ? stage_loop(st == 1 ? d.zm : bk, d.dk / 8, nw) : 0;
	else if (IS("v3.qk")) { /* a warp a unit: 16*V_QN columns, every row (a range in a
				   cluster), of the step's qh heads */
		*f = warp_loop((double)d.qunits * (d.qh > 0 ? d.qh : 1), nw);
	}
	else if (IS("v3.rcopy")) { /* v3_rows_copy: rc 1 Z's rows (words of KR), 2 P's (of KP) */
		int w = b->vars[5] == 1 ? (d.kr + 1) / 2 : d.kp / 2;
		double rows = b->vars[5] == 1 ? (double)hpb * d.zr : (double)hpb * d.rp;
		*f = w > 0 ? cdiv(rows, 32 / w) / nw : 0;
	}
	else if (IS("v3.zc0"))
		*f = tid_loop((double)hpb * d.zr * ((d.kr + 1) / 2), nw);
	else if (IS("v3.pshift"))
		*f = tid_loop((double)hpb * d.rp, nw);
	else if (IS("v3.conv") || IS("v3.crun") || IS("v3.crunn")) {
		double runs, share, body;
		v3_runs(v, &d, cv, &runs, &share, &body);
		*f = IS("v3.conv") ? runs : IS("v3.crun") ? share : body;
	} else if (IS("v3.cfull") || IS("v3.cedge")) {
		double full = v3_conv_full(v, &d, b, cv, nkt);
		*f = IS("v3.cfull") ? full : 1 - full;
	} else if (IS("v3.xloc") || IS("v3.xrem"))
		*f = v3_conv_own(v, &d, cv, cs, IS("v3.xloc"));
	else if (IS("v3.convu"))
		*f = cv == 2 ? p->cq2 : p->cq;
	else if (IS("v3.mix")) /* mix: 1 pre-softmax (RP rows, groups of HPB), 2 post (BQ rows) */
		*f = tid_loop((double)(mix == 1 ? hpb / hpb : hpb / d.gs) * (mix == 1 ? d.rp : bq) * bk,
			      nw);
	else if (IS("v3.mixo"))
		*f = mix == 1 ? hpb : d.gs;
	else if (IS("v3.smx")) {
		int nrows = pass == 0 ? bq : d.rp, ntask = hpb * nrows * (bk / 8);
		*f = tid_loop(ntask, nw);
	} else if (IS("v3.msrow")) /* the rows the block mixes: a cs-th of them in a cluster */
		*f = warp_loop(pass == 0 ? bq : d.rpc, nw);
	else if (IS("v3.pmix"))
		*f = warp_loop((double)bq / cs * bk / 8, nw);
	else if (IS("v3.round"))
		*f = tid_loop((double)hpb * bq * bk, nw);
	else if (IS("v3.pvk")) { /* the share of unrolled (head, slot) copies whose unit a warp holds */
		int uph = d.tph / d.pw; /* V_UPH */
		double copies = 0;
		for (int hh = 0; hh < hpb; hh++)
			copies += ((hh + 1) * uph - 1) / nw - hh * uph / nw + 1;
		*f = copies ? (double)hpb * uph / (nw * copies) : 0;
	} else if (IS("v3.erow"))
		*f = warp_loop(b->T - b->i0 < bq ? (double)(b->T - b->i0) : bq, nw);
	else if (IS("v3.wt"))
		*f = tid_loop((double)hpb * p->cq * d.wtn, nw);
	else if (IS("v3.z0"))
		*f = tid_loop((double)hpb * d.zr * d.zs, nw);
	else if (IS("v3.w2"))
		*f = tid_loop((double)hpb * p->cq2 * d.wtn2, nw);
	else if (IS("v3.wm1")) /* the cluster's heads */
		*f = tid_loop((double)hpb * cs * hpb * cs, nw);
	else if (IS("v3.wm2"))
		*f = tid_loop((double)hpb * cs * d.gs, nw);
	else if (IS("v3.p0"))
		*f = tid_loop((double)d.sz_p / 4, nw);
	else if (IS("v3.rows")) /* the statistics of the rows the block mixes, the cluster's heads */
		*f = tid_loop((double)hpb * cs * d.rpc, nw);
	else if (IS("v3.qres")) /* q resident (a cluster's): each head's rows once a block */
		*f = hpb;
	else if (IS("v3.pcarry")) /* P's carried columns, the block's heads */
		*f = tid_loop((double)hpb * d.rp, nw);
	/* ---- v1 and v2 (templates/mta_cuda.cu, mta_cuda_tc.cu) ---- */
	else if (IS("v12.kt"))
		*f = nkt;
	else if (IS("v12.heads"))
		*f = hpb;
	else if (IS("v12.stat"))
		*f = tid_loop((double)hpb * e.rp, nw);
	else if (IS("v12.fold"))
		*f = v->algo == 1 && p->cq ? v12_fold(b, &e, pass, 1) : 0;
	else if (IS("v12.exact"))
		*f = v->algo == 1 && p->cq ? v12_fold(b, &e, pass, 2) : 1;
	else if (IS("v12.z"))
		*f = tid_loop((double)e.rz * (ncols + e.kr), nw);
	else if (IS("v12.dot"))
		*f = p->D > 8 ? cdiv(p->D, 8) : 1;
	else if (IS("v12.conv"))
		*f = tid_loop((double)e.rp * ncols, nw);
	else if (IS("v12.cq"))
		*f = p->cq;
	else if (IS("v12.mixo"))
		*f = hpb;
	else if (IS("v12.smrow"))
		*f = warp_loop((double)hpb * e.rp, nw);
	else if (IS("v12.smcol"))
		*f = cdiv(bk, 32);
	else if (IS("v12.pnorm"))
		*f = tid_loop((double)hpb * e.rp * e.cp, nw);
	else if (IS("v12.pconv"))
		*f = tid_loop((double)hpb * bq * bk, nw);
	else if (IS("v12.cq2"))
		*f = p->cq2;
	else if (IS("v12.hpost"))
		*f = tid_loop((double)(hpb / (p->hc ? p->hc : 1)) * bq * bk, nw);
	else if (IS("v12.hco"))
		*f = p->hc;
	else if (IS("v12.hpostl"))
		*f = tid_loop((double)bq * bk, nw);
	else if (IS("v12.pvc")) /* the key tile's columns before T */
		*f = bk;
	else if (IS("v12.erow"))
		*f = warp_loop(b->T - b->i0 < bq ? (double)(b->T - b->i0) : bq, nw);
	else if (IS("v12.stage")) /* st: 1 q rows, 2 k rows, 3 V rows */
		*f = tid_loop((double)(st == 1 ? e.mr : st == 2 ? e.nc : bk) * (e.dk / 8), nw);
	else if (IS("v12.qkt"))
		*f = warp_loop((double)cdiv(e.nrl, 16) * cdiv(ncols + e.kr, 8), nw);
	else if (IS("v12.pround"))
		*f = tid_loop((double)bq * bk, nw);
	else if (IS("v12.pvk")) {
		double copies = 0;
		for (int hh = 0; hh < hpb; hh++)
			copies += ((hh + 1) * e.tph - 1) / nw - hh * e.tph / nw + 1;
		*f = copies ? (double)hpb * e.tph / (nw * copies) : 0;
	} else if (IS("v12.kc"))
		*f = tid_loop((double)e.nf * e.dk, nw);
	else if (IS("v12.ft")) {
		int tiles = r16(e.rp) / 16 * (e.nf / 8), ft = (tiles + nw - 1) / nw;
		*f = ft ? (double)tiles / (nw * ft) : 0;
	} else
		return mta_fail(MTA_EINVAL, "the cost model has no formula for '@model %s' (cuda v%d)",
				name, v->version);
#undef IS
	if (*f < 0)
		*f = 0;
	return MTA_OK;
}

double mta_region_busiest(const char *name, const struct mta_model_block *b)
{
	const struct mta_problem *p = b->p;
	const struct mta_variant *v = b->v;
	const int nw = v->warps;
	double n = 0;
	struct mta_cuda_v3_dims d;

	if (v->version != 3 || nw < 1)
		return 1;
	mta_cuda_v3_dims(p, v, &d);
	if (!strcmp(name, "v3.qk")) { /* a warp a unit of the step's heads: column groups x row
					  ranges x heads */
		n = (double)d.qunits * (d.qh > 0 ? d.qh : 1);
	} else if (!strcmp(name, "v3.pvk")) {
		/* a group's units dealt in turn, over the groups (the last may be short) */
		int vg = d.vg > 0 ? d.vg : 1, uph = d.tph / (d.pw > 0 ? d.pw : 1);
		double most = 0, units = 0;
		for (int h = 0; h < v->hpb; h += vg) {
			int u = (v->hpb - h < vg ? v->hpb - h : vg) * uph;
			most += cdiv(u, nw);
			units += u;
		}
		return units > 0 ? most / (units / nw) : 1;
	}
	if (n <= 0)
		return 1;
	return cdiv(n, nw) / (n / nw);
}
