/*
 * model.c: instruction counts, pipes, occupancy and the estimate (see
 * model.h and docs/gpu/model.md).
 *
 * Every instruction belongs to the marked regions (regions.c) that contain
 * a line of its inline chain; instructions with the same regions form a
 * group, and a group's count in a block is its static count times the
 * product of its regions' factors for that block. Blocks differ only by
 * their first query row (the causal key range), so one block per query tile
 * is evaluated and weighed by B * H / hpb.
 */
#include "tuner/model/model.h"
#include "gen/cuda/cudagen.h"
#include "runtime/core/error.h"
#include "runtime/cuda/nvrtc.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/*
 * H100 SXM and H200 (the same SM): 132 SMs at the 1.98 GHz measured under
 * load here (KINDS.md), per SM and clock: 128 FP32 lanes, 64 for integer
 * multiply, logic and compares, 16 for the SFU and conversions, 32 for
 * shuffles, 128 bytes of shared memory. mma.sync m16n8k16 at one per two
 * clocks per SM: 1024 bf16 FMA a clock, about two thirds of what wgmma
 * reaches (the measured 788 TFLOP/s of a cuBLAS GEMM); microbenchmarks
 * report mma.sync at one half to two thirds of the wgmma rate on Hopper.
 * L2 about 7 TB/s to the SMs (an estimate: 5.5 to 5.8 TB/s were measured on
 * the slower, 114-SM PCIe H100), HBM 3.35 / 4.8 TB/s (the datasheets; 4.3
 * was copied device to device on an H200 here). A barrier costs a block
 * about 24 clocks of drain and restart. A copy from L2 lands about 300
 * clocks after its issue (microbenchmarks put an H100's L2 hit at 260 to
 * 300 clocks, more from the far half of the L2), and one SM draws at most
 * about 64 bytes a clock from L2. eff: the fraction of its binding
 * pipe a kernel of a few warps per scheduler keeps busy, to be checked
 * against the device (docs/gpu/model.md).
 */
static const struct mta_machine machines[] = {
	{ "h100", "H100 SXM (132 SMs, 1.98 GHz, HBM3 3.35 TB/s)", 132, 1.98, 233472, 232448, 65536,
	  64, 32,
	  { [MC_FP32] = 4, [MC_IMAD] = 2, [MC_ALU] = 2, [MC_MUFU] = 0.5, [MC_CVT] = 0.5,
	    [MC_HMMA] = 1, [MC_SHFL] = 1 },
	  128, 7.0, 3.35, 24, 300, 64, 989, 0.7 },
	{ "h200", "H200 SXM (132 SMs, 1.98 GHz, HBM3e 4.8 TB/s)", 132, 1.98, 233472, 232448, 65536,
	  64, 32,
	  { [MC_FP32] = 4, [MC_IMAD] = 2, [MC_ALU] = 2, [MC_MUFU] = 0.5, [MC_CVT] = 0.5,
	    [MC_HMMA] = 1, [MC_SHFL] = 1 },
	  128, 7.0, 4.8, 24, 300, 64, 989, 0.7 },
};

const struct mta_machine *mta_machine_find(const char *name)
{
	for (size_t i = 0; i < sizeof machines / sizeof machines[0]; i++)
		if (!strcmp(name, machines[i].name))
			return &machines[i];
	return NULL;
}

const char *mta_machine_names(void)
{
	return "h100, h200";
}

void mta_model_floor(const struct mta_problem *p, const struct mta_machine *m, int64_t B,
		     int64_t T, struct mta_model_report *r)
{
	const double elem = (double)B * p->H * (double)T * (double)(T + 1) / 2;
	const double clk = m->sms * m->ghz * 1e9;
	double fma = 0;
	fma += p->cq ? (double)p->cq * p->ck : 0;
	fma += p->cq2 ? (double)p->cq2 * p->ck2 : 0;
	fma += p->head_pre ? p->H : 0;
	fma += p->head_post == MTA_HPOST_CONV ? p->hc : p->head_post == MTA_HPOST_LINEAR ? p->H : 0;
	r->floor_fp32_ms = elem * fma / (128.0 * clk) * 1e3;
	r->floor_tc_ms = elem * 4.0 * p->D / (m->tc_tflops * 1e12) * 1e3;
	r->floor_exp_ms = elem / (16.0 * clk) * 1e3;
	double bytes = (double)B * T * ((double)p->H * p->D * (mta_dtype_size(p->dtype) + 4) +
					2.0 * p->Hkv * p->D * mta_dtype_size(p->dtype));
	r->floor_hbm_ms = bytes / (m->hbm_tbs * 1e12) * 1e3;
	r->floor_ms = r->floor_fp32_ms + r->floor_tc_ms + r->floor_exp_ms;
	if (r->floor_hbm_ms > r->floor_ms)
		r->floor_ms = r->floor_hbm_ms;
}

/* The instructions of one set of regions (and variable values). */
struct group {
	int *regs;       /* region indices, outermost first */
	int nregs;
	int vars[6];
	double stat[MC_N], bytes[MC_N], l2; /* l2: bytes of the asynchronous copies */
	double wave;     /* wavefronts of its shared-memory and L1 accesses (clocks) */
	int inner;       /* innermost region (-1: none) */
	int phase;       /* PH_*: its part in a staged phase (v3), see staged_clocks */
	int at;          /* PH_QK, PH_PV: the index in regs of v3.qk or v3.pvk */
};

/*
 * The staged phases of v3 (templates/mta_cuda_v3.cu), whose time is not
 * their throughput: phase A stages each head's q and k rows with cp.async,
 * a few heads ahead, and waits for each while a few warps compute that
 * head's q.k; P.V stages the V rows of VG heads a group at a time the same
 * way. staged_clocks walks such a phase step by step. PH_QK: q.k (v3.qk),
 * PH_PV: P.V (v3.pvk), PH_CPA and PH_CPV: the copies of phase A and of P.V
 * (inside v3.ktout or v3.vpre: P.V's).
 */
enum { PH_NONE, PH_QK, PH_PV, PH_CPA, PH_CPV };

static const char *const var_names[6] = { "pass", "st", "mix", "cv", "ways", "rc" };

static int in_chain(const struct mta_sass_insn *in, int line)
{
	for (int k = 0; k < in->nlines; k++)
		if (in->lines[k] == line)
			return 1;
	return 0;
}

/* The chain depth at which region r holds instruction in (0: its own line), -1: none. */
static int depth(const struct mta_region *r, const struct mta_sass_insn *in)
{
	for (int k = 0; k < in->nlines; k++)
		if (in->lines[k] >= r->start && in->lines[k] <= r->end)
			return k;
	return -1;
}

static int covers(const struct mta_region *r, const struct mta_sass_insn *in)
{
	return depth(r, in) >= 0;
}

/* Whether region a lies inside region b for instruction in: deeper in the
 * inline chain, or at the same depth and the smaller. */
static int inside(const struct mta_region *a, const struct mta_region *b,
		  const struct mta_sass_insn *in)
{
	int da = depth(a, in), db = depth(b, in);
	if (da != db)
		return da < db;
	return a->end - a->start < b->end - b->start;
}

/* Whether a region is a loop (its first line has for or while). */
static int is_loop(const char *source, const struct mta_region *r)
{
	const char *l = source;
	for (int n = 1; n < r->start && l; n++) {
		l = strchr(l, '\n');
		l = l ? l + 1 : NULL;
	}
	if (!l)
		return 0;
	size_t len = strcspn(l, "\n");
	char buf[256];
	snprintf(buf, sizeof buf, "%.*s", (int)(len < sizeof buf ? len : sizeof buf - 1), l);
	return strstr(buf, "for (") || strstr(buf, "for(") || strstr(buf, "while");
}

/*
 * The SASS loops and the marked loops they run. Outermost first, a SASS
 * loop (a backward branch and its body) runs the outermost of the marked
 * loops that hold at least half of its body's instructions (by their inline
 * chains) and lie inside the marked loop of the SASS loop around it. An instruction inside a SASS loop's body runs
 * as often as that loop whatever line the compiler gave it (hoisted address
 * arithmetic, rematerialised indices), and an instruction the compiler moved
 * out of a loop runs once per enclosing iteration: so a marked loop that has
 * SASS loops counts the instructions inside them, and a marked loop the
 * compiler unrolled (no SASS loop) counts the instructions of its lines.
 * A SASS loop that no marked loop explains (none covers it, or one already
 * explains a SASS loop around it) is reported: its instructions are counted
 * once per enclosing iteration, too few.
 */
struct loops {
	int (*iv)[3];  /* [first instruction, last, region] of each explained SASS loop */
	size_t n;
	char *has;     /* per region: explains some SASS loop */
};

static void map_loops(const char *source, const struct mta_sass *s, const struct mta_region *rg,
		      size_t nr, struct loops *L, struct mta_model_report *r)
{
	size_t cap = 0, bad = 0, bad_insns = 0;
	int firstline = 0;
	char *isloop = calloc(nr ? nr : 1, 1);
	int (*all)[3] = NULL;
	size_t nall = 0;
	L->iv = NULL;
	L->n = 0;
	L->has = calloc(nr ? nr : 1, 1);
	if (!isloop || !L->has)
		goto out;
	for (size_t k = 0; k < nr; k++)
		isloop[k] = !rg[k].var[0] && is_loop(source, &rg[k]);
	/* the backward branches, outermost (largest body) first */
	for (size_t i = 0; i < s->n; i++) {
		int t = s->v[i].target;
		if (t < 0 || (size_t)t > i)
			continue;
		if (nall == cap) {
			cap = cap ? 2 * cap : 64;
			int (*na)[3] = realloc(all, cap * sizeof *all);
			if (!na)
				goto out;
			all = na;
		}
		all[nall][0] = t;
		all[nall][1] = (int)i;
		all[nall][2] = -1;
		nall++;
	}
	for (size_t a = 1; a < nall; a++)
		for (size_t b = a; b > 0 && all[b - 1][1] - all[b - 1][0] < all[b][1] - all[b][0]; b--) {
			int tmp[3] = { all[b - 1][0], all[b - 1][1], all[b - 1][2] };
			memcpy(all[b - 1], all[b], sizeof tmp);
			memcpy(all[b], tmp, sizeof tmp);
		}
	if (!(L->iv = calloc(nall ? nall : 1, sizeof *L->iv)))
		goto out;
	for (size_t q = 0; q < nall; q++) {
		int t = all[q][0], i = all[q][1], best = -1, parent = -1;
		const size_t body = (size_t)(i - t + 1);
		/* the innermost explained SASS loop around this one */
		for (size_t o = 0; o < q; o++)
			if (all[o][2] >= 0 && all[o][0] <= t && all[o][1] >= i)
				parent = all[o][2];
		/* marked loops holding most of the body, nested in the parent's (or,
		 * when none does, the one holding the most, if a quarter) */
		int cand[64], nc = 0, most = -1;
		size_t mostc = 0;
		for (size_t k = 0; k < nr && nc < 64; k++) {
			if (!isloop[k] || (int)k == parent)
				continue;
			size_t in = 0;
			int ok = parent < 0;
			for (int j = t; j <= i; j++) {
				int d = depth(&rg[k], &s->v[j]);
				if (d < 0)
					continue;
				in++;
				if (!ok && parent >= 0) {
					int dp = depth(&rg[parent], &s->v[j]);
					ok = dp >= 0 && (d < dp || (d == dp && rg[k].start >= rg[parent].start &&
								   rg[k].end <= rg[parent].end));
				}
			}
			if (ok && 2 * in >= body)
				cand[nc++] = (int)k;
			if (ok && in > mostc) {
				most = (int)k;
				mostc = in;
			}
		}
		if (!nc && most >= 0 && 4 * mostc >= body)
			cand[nc++] = most;
		/* the outermost of them: this loop, not one inside it */
		for (int c = 0; c < nc; c++) {
			int outer = 1;
			for (int c2 = 0; c2 < nc && outer; c2++) {
				if (c2 == c)
					continue;
				for (int j = t; j <= i; j++) {
					int d1 = depth(&rg[cand[c]], &s->v[j]), d2 = depth(&rg[cand[c2]],
											 &s->v[j]);
					if (d1 < 0 || d2 < 0)
						continue;
					if (d2 > d1 || (d2 == d1 && rg[cand[c2]].end - rg[cand[c2]].start >
								   rg[cand[c]].end - rg[cand[c]].start))
						outer = 0;
					break;
				}
			}
			if (outer) {
				best = cand[c];
				break;
			}
		}
		/* explained already by a SASS loop around this one: not this loop's mark */
		for (size_t o = 0; best >= 0 && o < q; o++)
			if (all[o][2] == best && all[o][0] <= t && all[o][1] >= i)
				best = -2;
		all[q][2] = best;
		if (getenv("MTATUNE_MODEL_DEBUG"))
			fprintf(stderr, "loop [%d..%d] lines %d..%d: %s\n", t, i,
				s->v[t].nlines ? s->v[t].lines[0] : 0,
				s->v[i].nlines ? s->v[i].lines[0] : 0,
				best >= 0 ? rg[best].name : best == -2 ? "(nested, unmarked)" : "(unmarked)");
		if (best < 0) {
			bad++;
			bad_insns += body;
			if (!firstline)
				firstline = s->v[t].nlines ? s->v[t].lines[0] :
					    s->v[i].nlines ? s->v[i].lines[0] : 0;
			continue;
		}
		L->iv[L->n][0] = t;
		L->iv[L->n][1] = i;
		L->iv[L->n][2] = best;
		L->n++;
		L->has[best] = 1;
	}
	if (bad) {
		size_t l = strlen(r->warnings);
		snprintf(r->warnings + l, sizeof r->warnings - l,
			 "%zu SASS loop(s) (%zu instructions, the first near source line %d) have no "
			 "@model mark: counted once per enclosing iteration, so the estimate is low. ",
			 bad, bad_insns, firstline);
	}
out:
	free(all);
	free(isloop);
}

/* Regions of instruction i, outermost first; vars filled. */
static int regions_of(const struct mta_region *rg, size_t nr, const struct mta_sass *s, size_t i,
		      const struct loops *L, int *out, int *vars)
{
	const struct mta_sass_insn *in = &s->v[i];
	int n = 0;
	for (size_t k = 0; k < nr; k++) {
		if (rg[k].var[0]) {
			if (in_chain(in, rg[k].start))
				for (int v = 0; v < 6; v++)
					if (!strcmp(rg[k].var, var_names[v]))
						vars[v] = rg[k].val;
			continue;
		}
		int yes = 0;
		if (L->has && L->has[k]) {
			for (size_t q = 0; q < L->n && !yes; q++)
				yes = L->iv[q][2] == (int)k && (int)i >= L->iv[q][0] &&
				      (int)i <= L->iv[q][1];
		} else {
			yes = covers(&rg[k], in);
		}
		if (yes && n < 32)
			out[n++] = (int)k;
	}
	/* outermost first (for the listing's innermost region) */
	for (int a = 1; a < n; a++)
		for (int b = a; b > 0 && inside(&rg[out[b - 1]], &rg[out[b]], in); b--) {
			int t = out[b - 1];
			out[b - 1] = out[b];
			out[b] = t;
		}
	return n;
}

/* The blocks' times dealt to the SMs heaviest first; the longest SM's load. */
static double lpt(double *t, size_t n, int sms)
{
	double *load = calloc((size_t)sms, sizeof *load), worst = 0;
	if (!load)
		return 0;
	/* insertion sort, descending (n is at most a few thousand) */
	for (size_t a = 1; a < n; a++)
		for (size_t b = a; b > 0 && t[b - 1] < t[b]; b--) {
			double x = t[b - 1];
			t[b - 1] = t[b];
			t[b] = x;
		}
	for (size_t i = 0; i < n; i++) {
		int best = 0;
		for (int k = 1; k < sms; k++)
			if (load[k] < load[best])
				best = k;
		load[best] += t[i];
	}
	for (int k = 0; k < sms; k++)
		if (load[k] > worst)
			worst = load[k];
	free(load);
	return worst;
}

/* A block's pipe-bound clocks: its warp instructions c and bytes by class
 * (all warps) at the rates of m, issue at four a clock, the L1/shared path
 * a wavefront a clock. */
static double pipe_clocks(const struct mta_machine *m, const double *c, const double *bytes,
			  double waves)
{
	double issue = 0, pipe;
	for (int cl = 0; cl < MC_N; cl++)
		issue += c[cl];
	pipe = issue / 4;
	for (int cl = 0; cl < MC_N; cl++) {
		double t = 0;
		if (cl == MC_HMMA)
			t = bytes[cl] / m->rate[cl];
		else if (m->rate[cl] > 0)
			t = c[cl] / m->rate[cl];
		if (t > pipe)
			pipe = t;
	}
	return waves > pipe ? waves : pipe;
}

/* The clocks of one warp alone on its scheduler: an instruction a clock at
 * most, its mma at a quarter of the SM's rate, its shared bytes at the SM's. */
static double lone_clocks(const struct mta_machine *m, const double *c, const double *bytes,
			  double waves)
{
	double n = 0;
	for (int cl = 0; cl < MC_N; cl++)
		n += c[cl];
	double t = bytes[MC_HMMA] / (m->rate[MC_HMMA] / 4);
	double sm = waves;
	return n > t ? (n > sm ? n : sm) : (t > sm ? t : sm);
}

/* One pass's staged phase in a block: steps (head iterations of phase A, or
 * groups of P.V), over all of them the busiest warp's instructions and bytes
 * (c, bytes) and all warps' (tc, tb), and the bytes its copies bring from L2. */
struct staged {
	double steps, c[MC_N], bytes[MC_N], tc[MC_N], tb[MC_N], l2, wave, twave;
};

#define STAGED_MAX 512 /* steps a tile walks at most (heads of a block) */

/*
 * The clocks of a pass's staged phase, by a walk through a tile's `per`
 * steps (the tiles alike). A step starts when the step before has ended
 * (a barrier) and its own copy has landed, and lasts its work: the longer
 * of its busiest warp alone on a scheduler and all its warps at the SM's
 * pipes. The first `hidden` copies were issued before the phase, behind
 * other work, and have landed; with depth buffers, step s's copy is issued
 * as step s - (depth - 1) starts, or as the phase starts when that is
 * before its first step (the prologue); with one buffer, as step s - 1
 * ends. A copy lands the L2 latency plus its bytes at one SM's L2 rate after
 * its issue, and not before the copy before it has had its bytes.
 */
static double staged_clocks(const struct mta_machine *m, const struct staged *x, int per,
			    int depth, int hidden)
{
	double start[STAGED_MAX], end = 0, landed = 0;
	if (x->steps <= 0 || per < 1)
		return 0;
	if (per > STAGED_MAX)
		per = STAGED_MAX;
	const double lone = lone_clocks(m, x->c, x->bytes, x->wave) / x->steps;
	const double all = pipe_clocks(m, x->tc, x->tb, x->twave) / x->steps;
	const double work = lone > all ? lone : all, bytes = x->l2 / x->steps / m->sm_l2_bpc;
	for (int s = 0; s < per; s++) {
		double land = 0;
		if (s >= hidden) {
			double issue = depth < 2 ? end : s - (depth - 1) >= 0 ? start[s - (depth - 1)] : 0;
			land = issue + m->l2_lat_clk + bytes;
			if (landed + bytes > land)
				land = landed + bytes;
			landed = land;
		}
		start[s] = end > land ? end : land;
		end = start[s] + work;
	}
	return x->steps / per * end;
}

int mta_model_count(const struct mta_problem *p, const struct mta_variant *v, const char *arch,
		    const char *machine, int64_t B, int64_t T, const char *source,
		    const char *sass_text, int registers, int spills, struct mta_model_report *r)
{
	struct mta_sass s = { 0 };
	struct mta_region *rg = NULL;
	struct group *g = NULL;
	struct loops lp = { NULL, 0, NULL };
	struct mta_cuda_launch geo;
	size_t nr = 0, ng = 0, cg = 0;
	double *btime = NULL, *ptime = NULL;
	int rc;

	memset(r, 0, sizeof *r);
	if (!(r->m = mta_machine_find(machine)))
		return mta_fail(MTA_EINVAL, "unknown machine '%s' (expected %s)", machine,
				mta_machine_names());
	if ((rc = mta_cuda_geometry(p, v, B, T, &geo)))
		return rc;
	mta_problem_key(p, r->key, sizeof r->key);
	mta_variant_format(v, r->spec, sizeof r->spec);
	snprintf(r->arch, sizeof r->arch, "%s", arch);
	r->B = B;
	r->T = T;
	r->registers = registers;
	r->spills = spills;
	r->threads = (int)geo.block[0];
	r->smem = geo.smem_bytes;
	r->grid_blocks = (int)(geo.grid[0] * geo.grid[1] * geo.grid[2]);
	const struct mta_machine *m = r->m;
	int by_regs = registers > 0 ? m->regs_sm / (registers * r->threads) : m->blocks_sm;
	int by_smem = r->smem ? (int)(m->smem_sm / (r->smem + 1024)) : m->blocks_sm;
	int by_warps = m->warps_sm / (r->threads / 32);
	r->blocks_sm = by_regs < by_smem ? by_regs : by_smem;
	if (by_warps < r->blocks_sm)
		r->blocks_sm = by_warps;
	if (r->blocks_sm < 1)
		r->blocks_sm = 1;
	mta_model_floor(p, m, B, T, r);

	if ((rc = mta_sass_parse(sass_text, &s)) || (rc = mta_regions_parse(source, &rg, &nr)))
		goto out;
	r->statics = s.n;
	map_loops(source, &s, rg, nr, &lp, r);
	/* group the instructions by their regions and variables */
	for (size_t i = 0; i < s.n; i++) {
		int idx[32], vars[6] = { 0, 0, 0, 0, 0, 0 };
		int n = regions_of(rg, nr, &s, i, &lp, idx, vars);
		size_t k = 0;
		for (; k < ng; k++)
			if (g[k].nregs == n && !memcmp(g[k].regs, idx, sizeof idx[0] * (size_t)n) &&
			    !memcmp(g[k].vars, vars, sizeof vars))
				break;
		if (k == ng) {
			if (ng == cg) {
				cg = cg ? 2 * cg : 64;
				struct group *ngp = realloc(g, cg * sizeof *g);
				if (!ngp) {
					rc = mta_fail(MTA_ENOMEM, "out of memory");
					goto out;
				}
				g = ngp;
			}
			memset(&g[ng], 0, sizeof g[ng]);
			if (!(g[ng].regs = malloc(sizeof idx[0] * (size_t)(n ? n : 1)))) {
				rc = mta_fail(MTA_ENOMEM, "out of memory");
				goto out;
			}
			memcpy(g[ng].regs, idx, sizeof idx[0] * (size_t)n);
			g[ng].nregs = n;
			memcpy(g[ng].vars, vars, sizeof vars);
			g[ng].inner = n ? idx[n - 1] : -1;
			g[ng].phase = PH_NONE;
			int ktout = 0;
			for (int q = 0; q < n; q++) {
				const char *nm = rg[idx[q]].name;
				ktout |= !strcmp(nm, "v3.ktout") || !strcmp(nm, "v3.vpre");
				/* (P.V's loop in the epilogue stores, outside any tile) */
				if (!strcmp(nm, "v3.qk") || (ktout && !strcmp(nm, "v3.pvk"))) {
					g[ng].phase = nm[3] == 'q' ? PH_QK : PH_PV;
					g[ng].at = q;
					break;
				}
			}
			/* the copies: set once their instructions are in (l2) */
			if (g[ng].phase == PH_NONE && v->version == 3)
				g[ng].phase = ktout ? -PH_CPV : -PH_CPA;
			ng++;
		}
		const struct mta_sass_insn *in = &s.v[i];
		if (g[k].phase < 0 && in->async)
			g[k].phase = -g[k].phase;
		g[k].stat[in->cls] += 1;
		g[k].bytes[in->cls] += in->cls == MC_HMMA ? in->width : 32.0 * in->width;
		if (in->cls == MC_LDS || in->cls == MC_STS || in->cls == MC_LDG) {
			/* a clock for each 128 bytes, at least one, times the bank
			 * conflicts a `@model ways=N` mark states for its line */
			double w = ceil(32.0 * in->width / m->smem_bpc);
			g[k].wave += (w < 1 ? 1 : w) * (g[k].vars[4] > 1 ? g[k].vars[4] : 1);
		}
		if (in->async)
			g[k].l2 += 32.0 * in->width;
	}

	for (size_t k = 0; k < ng; k++)
		if (g[k].phase < 0)
			g[k].phase = PH_NONE;
	/* one block per query tile, weighed by the batches and head blocks */
	const int gx = (int)geo.grid[0];
	const double weight = (double)geo.grid[1] * geo.grid[2];
	if (!(btime = calloc((size_t)gx, sizeof *btime)) ||
	    !(ptime = calloc((size_t)gx, sizeof *ptime)) ||
	    !(r->rows = calloc(ng ? ng : 1, sizeof *r->rows))) {
		rc = mta_fail(MTA_ENOMEM, "out of memory");
		goto out;
	}
	double *fac = malloc(sizeof *fac * (ng ? ng : 1));
	if (!fac) {
		rc = mta_fail(MTA_ENOMEM, "out of memory");
		goto out;
	}
	double bars_total = 0;
	struct mta_cuda_v3_dims d3;
	memset(&d3, 0, sizeof d3);
	if (v->version == 3)
		mta_cuda_v3_dims(p, v, &d3);
	double serial_total = 0;
	for (int bx = 0; bx < gx; bx++) {
		/* a cluster's blocks (consecutive in x) share a query tile */
		const int cs = v->version == 3 && v->cs > 1 ? v->cs : 1;
		struct mta_model_block blk = { p, v, T, bx / cs * v->bq, { 0, 0, 0, 0, 0, 0 } };
		double c[MC_N] = { 0 }, bytes[MC_N] = { 0 }, l2 = 0, waves = 0;
		/* the staged phases' instructions leave the rest (rc_, rb_, rw_) */
		double rc_[MC_N] = { 0 }, rb_[MC_N] = { 0 }, rw_ = 0;
		struct staged sa[3], sv[3];
		memset(sa, 0, sizeof sa);
		memset(sv, 0, sizeof sv);
		const double nw = v->warps;
		for (size_t k = 0; k < ng; k++) {
			double f = 1, fo = 1, x;
			memcpy(blk.vars, g[k].vars, sizeof blk.vars);
			const int ph = g[k].phase, pass = g[k].vars[0] >= 0 && g[k].vars[0] < 3 ?
							   g[k].vars[0] : 0;
			for (int q = 0; q < g[k].nregs && f > 0; q++) {
				if ((rc = mta_region_factor(rg[g[k].regs[q]].name, &blk, &x))) {
					free(fac);
					goto out;
				}
				f *= x;
				if ((ph == PH_QK || ph == PH_PV) && q < g[k].at)
					fo *= x;
			}
			fac[k] = f;
			l2 += g[k].l2 * f;
			waves += g[k].wave * f * nw;
			r->rows[k].waves += g[k].wave * f * weight * nw;
			if (ph != PH_QK && ph != PH_PV)
				rw_ += g[k].wave * f * nw;
			for (int cl = 0; cl < MC_N; cl++) {
				c[cl] += g[k].stat[cl] * f;
				bytes[cl] += g[k].bytes[cl] * f;
				r->rows[k].count[cl] += g[k].stat[cl] * f * weight * v->warps;
				if (ph != PH_QK && ph != PH_PV) {
					rc_[cl] += g[k].stat[cl] * f * nw;
					rb_[cl] += g[k].bytes[cl] * f * nw;
				}
			}
			r->rows[k].smem += (g[k].bytes[MC_LDS] + g[k].bytes[MC_STS] +
					    g[k].bytes[MC_LDG]) * f * weight * v->warps;
			if (ph == PH_QK || ph == PH_PV) {
				/* the busiest warp's share of the phase's work */
				struct staged *x2 = ph == PH_QK ? &sa[pass] : &sv[pass];
				double busy = mta_region_busiest(rg[g[k].regs[g[k].at]].name, &blk);
				for (int cl = 0; cl < MC_N; cl++) {
					x2->c[cl] += g[k].stat[cl] * f * busy;
					x2->bytes[cl] += g[k].bytes[cl] * f * busy;
					x2->tc[cl] += g[k].stat[cl] * f * nw;
					x2->tb[cl] += g[k].bytes[cl] * f * nw;
				}
				x2->wave += g[k].wave * f * busy;
				x2->twave += g[k].wave * f * nw;
				if (fo > x2->steps)
					x2->steps = fo;
			} else if (ph == PH_CPA || ph == PH_CPV) {
				(ph == PH_CPA ? &sa[pass] : &sv[pass])->l2 += g[k].l2 * f * nw;
			}
		}
		/* warp instructions of one block, summed over its warps */
		double pipe = 0;
		for (int cl = 0; cl < MC_N; cl++) {
			c[cl] *= nw;
			bytes[cl] *= nw;
			r->count[cl] += c[cl] * weight;
		}
		l2 *= nw;
		/* the unified L1/shared path carries shared loads and stores, the
		 * global loads (the synchronous ones mostly hit L1: weights read by
		 * every lane) and the shared writes of the asynchronous copies; L2
		 * carries the asynchronous copies and the stores */
		const double l1 = bytes[MC_LDS] + bytes[MC_STS] + bytes[MC_LDG];
		r->smem_bytes += l1 * weight;
		r->smem_waves += waves * weight;
		r->l2_bytes += (l2 + bytes[MC_STG]) * weight;
		r->hmma_flops += bytes[MC_HMMA] * 2048.0 * weight; /* width: m16n8k8 units */
		pipe = pipe_clocks(m, c, bytes, waves);
		/* barriers: each stalls the block; other resident blocks fill the gap */
		/* a GPU-scope fence (a cluster barrier's release) waits out an L2
		 * round trip: in barrier units */
		double bars = (c[MC_BAR] + c[MC_FENCE] * m->l2_lat_clk / m->bar_clk) / nw;
		bars_total += bars * weight;
		btime[bx] = pipe + bars * m->bar_clk / r->blocks_sm;
		/*
		 * The latency path: the rest of the block at its pipes' rate (and
		 * eff), then the staged phases one step after another; other
		 * resident blocks fill their waits.
		 */
		double serial = 0;
		if (v->version == 3) {
			/* phase A: qh heads a step, nstg buffers; P.V: VG heads a step,
			 * vb buffers, vb groups staged after phase A */
			int per_v = d3.vg > 0 ? (v->hpb + d3.vg - 1) / d3.vg : 1;
			/* phase A's steps: qh heads each, nstg / qh steps' buffers */
			const int qh = d3.qh > 0 ? d3.qh : 1;
			/* in pass 1's tiles but the first, phase A's first copies (its
			 * prologue's steps) were issued after the tile before's phase
			 * A, behind phases B to D: landed (v3_stage_first) */
			const int first = (d3.nstg - qh > 1 ? d3.nstg - qh : 1) / qh;
			for (int q = 0; q < 3; q++) {
				const int per = v->hpb / qh;
				const double tiles = per > 0 ? sa[q].steps / per : 0;
				if (q == 1 && tiles > 1)
					serial += staged_clocks(m, &sa[q], per, d3.nstg / qh, first) *
							  (tiles - 1) / tiles +
						  staged_clocks(m, &sa[q], per, d3.nstg / qh, 0) / tiles;
				else
					serial += staged_clocks(m, &sa[q], per, d3.nstg / qh, 0);
				if (sv[q].steps > 0) {
					/* steps counted tiles: a tile has per_v */
					sv[q].steps *= per_v;
					serial += staged_clocks(m, &sv[q], per_v, d3.vb, d3.vb);
				}
			}
			serial /= r->blocks_sm;
		}
		serial_total += serial * weight;
		ptime[bx] = (pipe_clocks(m, rc_, rb_, rw_) + bars * m->bar_clk / r->blocks_sm) / m->eff +
			    serial;
	}
	free(fac);
	/* every (head block, batch) repeats the query tiles: deal them all */
	size_t nb = (size_t)gx * (size_t)weight;
	double *all = malloc(sizeof *all * (nb ? nb : 1));
	if (!all) {
		rc = mta_fail(MTA_ENOMEM, "out of memory");
		goto out;
	}
	for (size_t i = 0; i < nb; i++)
		all[i] = btime[i % (size_t)gx];
	const double clk = m->ghz * 1e9;
	r->bound_ms = lpt(all, nb, m->sms) / clk * 1e3;
	for (size_t i = 0; i < nb; i++)
		all[i] = ptime[i % (size_t)gx];
	if (serial_total > 0) {
		r->path_ms = lpt(all, nb, m->sms) / clk * 1e3;
		r->serial_ms = serial_total / (m->sms * clk) * 1e3;
	}
	free(all);
	for (int cl = 0; cl < MC_N; cl++) {
		double units = cl == MC_HMMA ? r->hmma_flops / 2048.0 : r->count[cl];
		r->pipe_ms[cl] = m->rate[cl] > 0 ? units / (m->rate[cl] * m->sms * clk) * 1e3 : 0;
	}
	double issue = 0;
	for (int cl = 0; cl < MC_N; cl++)
		issue += r->count[cl];
	r->issue_ms = issue / (4.0 * m->sms * clk) * 1e3;
	r->bar_ms = bars_total * m->bar_clk / r->blocks_sm / (m->sms * clk) * 1e3;
	r->l2_ms = r->l2_bytes / (m->l2_tbs * 1e12) * 1e3;
	r->hbm_ms = r->floor_hbm_ms;
	double t = r->bound_ms;
	if (r->l2_ms > t)
		t = r->l2_ms;
	if (r->hbm_ms > t)
		t = r->hbm_ms;
	r->estimate_ms = t / m->eff;
	if (r->path_ms > r->estimate_ms)
		r->estimate_ms = r->path_ms;
	r->fma_per_elem = r->count[MC_FP32] * 32 / ((double)B * p->H * (double)T * (T + 1) / 2);
	/* rows: by innermost region */
	r->nrows = ng;
	for (size_t k = 0; k < ng; k++) {
		int in = g[k].inner;
		if (in < 0)
			snprintf(r->rows[k].where, sizeof r->rows[k].where, "(once per block)");
		else
			snprintf(r->rows[k].where, sizeof r->rows[k].where, "%s%s%s (line %d)",
				 rg[in].name, g[k].vars[0] ? " pass " : "",
				 g[k].vars[0] ? (g[k].vars[0] == 1 ? "1" : "2") : "", rg[in].start);
		for (int cl = 0; cl < MC_N; cl++)
			r->rows[k].statics += g[k].stat[cl];
	}
	if (spills > 0) {
		size_t l = strlen(r->warnings);
		snprintf(r->warnings + l, sizeof r->warnings - l, "the kernel spills or keeps in "
			 "local memory %d bytes (not priced); ", spills);
	}
out:
	for (size_t k = 0; k < ng; k++)
		free(g[k].regs);
	free(g);
	free(rg);
	free(btime);
	free(ptime);
	free(lp.iv);
	free(lp.has);
	mta_sass_free(&s);
	if (rc)
		mta_model_free(r);
	return rc;
}

void mta_model_free(struct mta_model_report *r)
{
	free(r->rows);
	r->rows = NULL;
	r->nrows = 0;
}

int mta_model_run(const struct mta_problem *p, const struct mta_variant *v, const char *arch,
		  const char *machine, int64_t B, int64_t T, const char *nvdisasm,
		  struct mta_model_report *r)
{
	struct mta_nvrtc_job job = { 0 };
	char *src = NULL, *text = NULL;
	int rc;

	memset(r, 0, sizeof *r);
	if (v->backend != MTA_BACKEND_CUDA)
		return mta_fail(MTA_EINVAL, "the cost model reads CUDA kernels, not %s variants",
				mta_backend_name(v->backend));
	if (!mta_machine_find(machine))
		return mta_fail(MTA_EINVAL, "unknown machine '%s' (expected %s)", machine,
				mta_machine_names());
	if ((rc = mta_gen_cuda(p, v, &src)))
		return rc;
	job.source = src;
	job.kernel = MTA_CUDA_KERNEL;
	job.arch = arch;
	if ((rc = mta_nvrtc_compile(&job)))
		goto out;
	if ((rc = mta_sass_disasm(nvdisasm, job.cubin, job.cubin_size, &text)))
		goto out;
	/* a stack frame (an array the compiler could not keep in registers)
	 * is local memory as spills are: unpriced, so warned of */
	rc = mta_model_count(p, v, arch, machine, B, T, src, text, job.stats.registers,
			     job.stats.spill_stores + job.stats.spill_loads + job.stats.stack_bytes,
			     r);
out:
	mta_nvrtc_job_free(&job);
	free(src);
	free(text);
	return rc;
}

void mta_model_print(FILE *f, const struct mta_model_report *r, int rows)
{
	const struct mta_machine *m = r->m;
	fprintf(f, "problem  %s  B=%lld T=%lld\n", r->key, (long long)r->B, (long long)r->T);
	fprintf(f, "variant  %s  (%s)\n", r->spec, r->arch);
	fprintf(f, "machine  %s\n", m->desc);
	fprintf(f, "kernel   %d registers, %d bytes spilled, %zu bytes shared memory, %d threads, "
		   "%d block(s) per SM, %d blocks, %zu SASS instructions\n", r->registers, r->spills,
		r->smem, r->threads, r->blocks_sm, r->grid_blocks, r->statics);
	fprintf(f, "\nwarp instructions (whole grid) and their time at each pipe's rate:\n");
	for (int cl = 0; cl < MC_N; cl++) {
		if (!r->count[cl])
			continue;
		fprintf(f, "  %-5s %14.4g", mta_model_class_name(cl), r->count[cl]);
		if (r->pipe_ms[cl] > 0)
			fprintf(f, "   %8.3f ms", r->pipe_ms[cl]);
		fputc('\n', f);
	}
	fprintf(f, "  issue (all, 4 a clock per SM)     %8.3f ms\n", r->issue_ms);
	fprintf(f, "  L1/shared memory %.4g bytes, %.4g wavefronts %8.3f ms\n", r->smem_bytes,
		r->smem_waves, r->smem_waves / (m->sms * m->ghz * 1e9) * 1e3);
	fprintf(f, "  barriers (%.4g clocks each)       %8.3f ms\n", m->bar_clk, r->bar_ms);
	fprintf(f, "  L2 traffic %.4g bytes at %.1f TB/s %8.3f ms\n", r->l2_bytes, m->l2_tbs,
		r->l2_ms);
	fprintf(f, "  tensor work %.4g FLOP\n", r->hmma_flops);
	fprintf(f, "  FP32 FMA issued per causal (b,h,i,j): %.1f\n", r->fma_per_elem);
	fprintf(f, "\nbound    %.3f ms (blocks dealt to %d SMs, heaviest first: busiest pipe plus "
		   "barriers)\n", r->bound_ms, m->sms);
	if (r->path_ms > 0)
		fprintf(f, "path     %.3f ms (the rest at its pipes, then the staged phases' steps "
			   "in turn: %.3f ms of waits and lone warps)\n", r->path_ms, r->serial_ms);
	fprintf(f, "estimate %.3f ms (max of bound, L2 %.3f, HBM %.3f over %.2f of peak%s)\n",
		r->estimate_ms, r->l2_ms, r->hbm_ms, m->eff, r->path_ms > 0 ? "; path" : "");
	fprintf(f, "floor    %.3f ms (FP32 convolutions and mixing %.3f + tensor %.3f + exp %.3f; "
		   "HBM %.3f)\n", r->floor_ms, r->floor_fp32_ms, r->floor_tc_ms, r->floor_exp_ms,
		r->floor_hbm_ms);
	fprintf(f, "ratio    %.2fx the floor\n", r->floor_ms > 0 ? r->estimate_ms / r->floor_ms : 0);
	if (rows && r->nrows) {
		/* the heaviest groups by issue */
		size_t *ord = malloc(sizeof *ord * r->nrows);
		if (ord) {
			double tot = 0;
			for (size_t k = 0; k < r->nrows; k++) {
				ord[k] = k;
				for (int cl = 0; cl < MC_N; cl++)
					tot += r->rows[k].count[cl];
			}
			for (size_t a = 1; a < r->nrows; a++)
				for (size_t b = a; b > 0; b--) {
					double x = 0, y = 0;
					for (int cl = 0; cl < MC_N; cl++) {
						x += r->rows[ord[b - 1]].count[cl];
						y += r->rows[ord[b]].count[cl];
					}
					if (x >= y)
						break;
					size_t t = ord[b - 1];
					ord[b - 1] = ord[b];
					ord[b] = t;
				}
			fprintf(f, "\nheaviest regions (share of issued instructions; fp32 hmma lds sts "
				   "ldg alu+imad, millions of warp instructions; L1/shared GB):\n");
			for (size_t k = 0; k < r->nrows && (int)k < rows; k++) {
				const struct mta_model_row *w = &r->rows[ord[k]];
				double x = 0;
				for (int cl = 0; cl < MC_N; cl++)
					x += w->count[cl];
				if (x <= 0)
					break;
				fprintf(f, "  %5.1f%%  %-34s %5.0f static  %8.2f %8.2f %8.2f %8.2f %8.2f "
					   "%8.2f %7.2f\n", 100 * x / tot, w->where, w->statics,
					w->count[MC_FP32] / 1e6, w->count[MC_HMMA] / 1e6,
					w->count[MC_LDS] / 1e6, w->count[MC_STS] / 1e6,
					w->count[MC_LDG] / 1e6,
					(w->count[MC_ALU] + w->count[MC_IMAD]) / 1e6, w->smem / 1e9);
			}
			free(ord);
		}
	}
	if (r->warnings[0])
		fprintf(f, "\nwarning: %s\n", r->warnings);
}
