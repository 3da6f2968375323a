/*
 * space.c: the tuning space of the generated C kernels (see gen/space.h and
 * templates/mta_cpu.c for what each tunable does).
 *
 *   bq, bk  query rows and key columns per tile. Bigger tiles amortise the
 *           convolution halos (cq-1 rows, ck-1 columns recomputed per tile),
 *           the rereading of k and v (once per query tile) and the per-tile
 *           overheads; smaller ones fit the cache and give the threads more,
 *           finer work items. Measured on 2 Zen 4 cores at T=1024 (paper's
 *           configuration) the kernel is FMA-bound and bq=32 costs ~20%
 *           more than bq=64; bk=128 beats 64 by a few per cent.
 *   hpb     heads per block; 0 means all H heads (written so because the
 *           value lists are fixed while H is not). Head mixing needs every
 *           head it mixes in one block: all of them for head_pre or
 *           head_post_linear, a multiple of c for the head_post convolution.
 *   vec     floats per SIMD vector (4, 8 or 16; GCC vector extensions, so any
 *           width compiles anywhere and the tuner finds the best). Vectors
 *           run over query rows: a tile's rows with their halo are padded
 *           to whole vectors, so vec also sets the padding waste.
 *   thr     worker threads, 0 = all cores (the run call may override).
 *   algo    0, the one algorithm of templates/mta_cpu.c (the field stays so
 *           that a genuinely different one can be added as a value).
 *
 * The default space stays small (at most 36 points) because the tuner
 * compiles and times each point. Each tunable's rule is in its row; the
 * rule between hpb and the problem's head mixing is the one cross rule.
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
static const struct mta_tunable tunables[] = {
	{ T("bq", bq), 64, 3, { 32, 64, 96 },
	  { tiles_ok, "bq={bq}, bk={bk}: tiles must have 1..256 rows and 1..1024 columns" } },
	{ T("bk", bk), 128, 2, { 64, 128 },
	  { tiles_ok, "bq={bq}, bk={bk}: tiles must have 1..256 rows and 1..1024 columns" } },
	{ T("hpb", hpb), 1, 3, { 1, 4, 0 },
	  { hpb_ok, "hpb={hpb}: expected hpb >= 0 (0 = all heads)" } },
	{ T("vec", vec), 8, 2, { 8, 16 },
	  { vec_ok, "vec={vec}: expected 4, 8 or 16 floats per vector" } },
	{ T("thr", threads), 0, 1, { 0 },
	  { thr_ok, "thr={thr}: expected 0 (all cores) to 256 threads" } },
	{ T("algo", algo), 0, 1, { 0 },
	  { algo_ok, "algo={algo}: the cpu v1 kernels have one algorithm, algo=0" } },
	{ 0 },
};
#undef T

static const struct mta_rule rules[] = {
	{ hpb_not_all, "hpb={hpb} is all H heads: write hpb=0" },
	{ hpb_divides, "hpb={hpb} does not divide H={H}" },
	{ hpb_groups, "hpb={hpb}: head mixing needs blocks of a multiple of {group} heads "
		      "(hpb=0: all heads)" },
	{ 0 },
};

/* Head mixing makes the default hpb=1 invalid: take the smallest valid block. */
static void tailor(const struct mta_problem *p, struct mta_variant *v)
{
	const int g = group(p);
	v->hpb = g == p->H ? 0 : g;
}

const struct mta_space mta_space_cpu = { "cpu", 1, tunables, rules, NULL, tailor };
