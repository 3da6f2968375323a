/*
 * space.c: the tuning space of the generated C kernels (see gen/space.h;
 * templates/mta_cpu.c and templates/mta_cpu2.c for what each tunable does).
 *
 * Two families, and the tuner tries both, so measurement decides:
 *   v1  tiles of query rows x key columns, vectors over rows; a step after
 *       the softmax makes it two passes (row statistics, then everything
 *       recomputed), in memory independent of T;
 *   v2  (the default) blocks of whole rows, vectors over columns, one pass
 *       whatever follows the softmax: the pre-softmax scores of a block and
 *       the halo rows before it stay in rings of rows, memory growing as T.
 *
 *   bq, bk  v1: query rows and key columns per tile. Bigger tiles amortise
 *           the convolution halos (cq-1 rows, ck-1 columns recomputed per
 *           tile) and the rereading of k and v; smaller ones fit the cache.
 *           v2: query rows per block (more rows reuse each k and v column
 *           more; the rings grow by a row of T floats per head and row) and
 *           key columns per chunk (the working set each step streams
 *           through: a multiple of 16, wider than the convolutions).
 *   hpb     heads per block; 0 means all H heads (written so because the
 *           value lists are fixed while H is not). Head mixing needs every
 *           head it mixes in one block: all of them for head_pre or
 *           head_post_linear, a multiple of c for the head_post convolution.
 *   vec     floats per SIMD vector (4, 8 or 16; GCC vector extensions, so any
 *           width compiles anywhere and the tuner finds the best). v1 runs
 *           vectors over query rows, so vec also sets its padding waste; v2
 *           over key columns. The default is 16: on a 2-core Xeon with
 *           AVX-512 (2026-12-02, paired rounds at T=1024) v2 ran 1.49x (95%
 *           CI 1.13-2.03) faster with 16 floats than with 8 on the default
 *           problem, 1.30x (1.07-1.61) on perf-paper, about 1.4x on the
 *           paper's. (An earlier reading the other way came from screening
 *           that timed sequences of length 1: the defect fixed in f43e432.)
 *   thr     worker threads, 0 = all cores (the run call may override).
 *   algo    0, the one algorithm of each family (the field stays so that a
 *           genuinely different one can be added as a value).
 *
 * The default space: 4 points of v1 and 24 of v2 per block of heads (28
 * for problems that mix heads, 84 for those that do not), past what is
 * worth screening whole (MTA_SEARCH_AUTO_ABOVE), so `tune` searches it
 * (tuner/tune/search.h) unless told --strategy exhaustive. v2's wider
 * chunks (bk 384..768) and thinner blocks (bq 8) were added because the
 * bench's winners sat at the edge of the old list (bk=512, its widest).
 * The tried_in column gives each family its own tile values. Each tunable's rule is in its row;
 * the rules between hpb and the problem's head mixing, and v2's chunk
 * width, are the cross rules.
 */
#include "gen/space.h"
#include "runtime/core/error.h"

#include <stddef.h>

/* The smallest block of heads the problem's head mixing allows. */
static int group(const struct mta_problem *p)
{
	if (p->head_pre || p->head_post == MTA_HPOST_LINEAR)
		return p->H;
	if (p->head_post == MTA_HPOST_CONV)
		return p->hc;
	return 1;
}

static int tiles_ok(const struct mta_problem *p, const struct mta_variant *v)
{
	return v->bq >= 1 && v->bk >= 1 && v->bq <= 256 && v->bk <= 1024;
}
static int hpb_ok(const struct mta_problem *p, const struct mta_variant *v) { return v->hpb >= 0; }
static int vec_ok(const struct mta_problem *p, const struct mta_variant *v)
{
	return v->vec == 4 || v->vec == 8 || v->vec == 16;
}
static int thr_ok(const struct mta_problem *p, const struct mta_variant *v)
{
	return v->threads >= 0 && v->threads <= 256;
}
static int algo_ok(const struct mta_problem *p, const struct mta_variant *v) { return v->algo == 0; }
static int chunk_ok(const struct mta_problem *p, const struct mta_variant *v)
{
	return v->version != 2 || (v->bk % 16 == 0 && v->bk > p->ck && v->bk > p->ck2);
}
static int hpb_not_all(const struct mta_problem *p, const struct mta_variant *v)
{
	return !(v->hpb == p->H && v->hpb != 0);
}
static int hpb_divides(const struct mta_problem *p, const struct mta_variant *v)
{
	return !v->hpb || p->H % v->hpb == 0;
}
static int hpb_groups(const struct mta_problem *p, const struct mta_variant *v)
{
	return !v->hpb || v->hpb % group(p) == 0;
}

#define T(name, field) name, offsetof(struct mta_variant, field)
#define V1 1
#define V2 2
static const struct mta_tunable tunables[] = {
	{ T("bq", bq), 16, 5, { 8, 16, 32, 64, 96 },
	  { tiles_ok, "bq={bq}, bk={bk}: tiles must have 1..256 rows and 1..1024 columns" },
	  { V2, V2, V2, V1, V1 }, 0 },
	{ T("bk", bk), 256, 5, { 128, 256, 384, 512, 768 },
	  { tiles_ok, "bq={bq}, bk={bk}: tiles must have 1..256 rows and 1..1024 columns" },
	  { V1, V2, V2, V2, V2 }, 0 },
	{ T("hpb", hpb), 1, 3, { 1, 4, 0 },
	  { hpb_ok, "hpb={hpb}: expected hpb >= 0 (0 = all heads)" }, { 0 }, 0 },
	{ T("vec", vec), 16, 2, { 8, 16 },
	  { vec_ok, "vec={vec}: expected 4, 8 or 16 floats per vector" }, { 0 }, 0 },
	{ T("thr", threads), 0, 1, { 0 },
	  { thr_ok, "thr={thr}: expected 0 (all cores) to 256 threads" }, { 0 }, 0 },
	{ T("algo", algo), 0, 1, { 0 },
	  { algo_ok, "algo={algo}: the cpu kernels have one algorithm per family, algo=0" },
	  { 0 }, 0 },
	{ 0 },
};
#undef V1
#undef V2
#undef T

static const struct mta_rule rules[] = {
	{ hpb_not_all, "hpb={hpb} is all H heads: write hpb=0" },
	{ hpb_divides, "hpb={hpb} does not divide H={H}" },
	{ hpb_groups, "hpb={hpb}: head mixing needs blocks of a multiple of {group} heads "
		      "(hpb=0: all heads)" },
	{ chunk_ok, "bk={bk}: v2 chunks of columns must be a multiple of 16, wider than ck={ck} "
		    "and ck2={ck2}" },
	{ 0 },
};

/* Head mixing makes the default hpb=1 invalid: take the smallest valid block. */
static void tailor(const struct mta_problem *p, struct mta_variant *v)
{
	const int g = group(p);
	v->hpb = g == p->H ? 0 : g;
}

const struct mta_space mta_space_cpu = { "cpu", 2, 2, tunables, rules, NULL, tailor, NULL,
					  NULL };

/*
 * The backward's space (templates/mta_cpu_bwd.c): it reads bq, the query
 * rows of one task (a task recomputes its rows' halos, cq-1 + cq2-1 rows
 * before them, so thin tasks repeat more work while wide ones give the
 * threads fewer, longer tasks and grow the task's kept rows, 2 * bq * H
 * rows of T floats), and thr. Its other tunables stay at the forward
 * default's values. Default 64: on the paper-like problem (6x11 kernels,
 * H=8, D=64) at T=1024 and 2048, 64 took the least CPU time of 16..128
 * (docs/bench-cpu.md).
 */
static const struct mta_op_tunable bwd_tunables[] = {
	{ "bq", 64, 5, { 8, 16, 32, 64, 128 } },
	{ "thr", 0, 1, { 0 } },
	{ 0 },
};

const struct mta_op_space mta_space_cpu_bwd = { "bwd", bwd_tunables, NULL };

/*
 * The decode kernel's space (templates/mta_cpu_decode.c): bk, the key
 * columns of one work item (K_BK; at least MTA_DBLOCK_MIN, the block the
 * caller sizes its scratch for): narrow blocks give the threads more items
 * of a row, but every block adds a maximum, a sum and a partial P.V row of
 * H*(D+2) floats that the last phase adds up, and six pool runs per token
 * cost the same whatever the cut; and thr, the threads at most (0: the
 * context's; 1 keeps a row on the caller's thread, saving the pool's
 * barriers when rows are short). Its other tunables keep the forward
 * default's values; the v2 rule on bk (a multiple of 16, wider than ck and
 * ck2) holds for these values on every problem the forward's does.
 */
static const struct mta_op_tunable decode_tunables[] = {
	{ "bk", 128, 4, { 64, 128, 256, 512 } },
	{ "thr", 0, 2, { 0, 1 } },
	{ 0 },
};

const struct mta_op_space mta_space_cpu_decode = { "decode", decode_tunables, NULL };
