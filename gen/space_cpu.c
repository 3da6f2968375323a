/*
 * space_cpu.c: the tuning space of the generated C kernels (see space.h and
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
 * compiles and times each point.
 */
#include "space.h"
#include "error.h"

#include <stddef.h>

static const struct mta_tunable tunables[] = {
	{ "bq", offsetof(struct mta_variant, bq), 64, 3, { 32, 64, 96 } },
	{ "bk", offsetof(struct mta_variant, bk), 128, 2, { 64, 128 } },
	{ "hpb", offsetof(struct mta_variant, hpb), 1, 3, { 1, 4, 0 } },
	{ "vec", offsetof(struct mta_variant, vec), 8, 2, { 8, 16 } },
	{ "thr", offsetof(struct mta_variant, threads), 0, 1, { 0 } },
	{ "algo", offsetof(struct mta_variant, algo), 0, 1, { 0 } },
	{ 0, 0, 0, 0, { 0 } },
};

/* The smallest block of heads the problem's head mixing allows. */
static int group(const struct mta_problem *p)
{
	if (p->head_pre || p->head_post == MTA_HPOST_LINEAR)
		return p->H;
	if (p->head_post == MTA_HPOST_CONV)
		return p->hc;
	return 1;
}

static int check(const struct mta_problem *p, const struct mta_variant *v)
{
	const int g = group(p);
	if (v->version != 1)
		return mta_fail(MTA_EINVAL, "cpu kernel family v%d does not exist (have v1)", v->version);
	if (v->bq < 1 || v->bk < 1 || v->bq > 256 || v->bk > 1024)
		return mta_fail(MTA_EINVAL, "bq=%d, bk=%d: tiles must have 1..256 rows and 1..1024 "
				"columns", v->bq, v->bk);
	if (v->hpb < 0 || v->threads < 0 || v->threads > 256)
		return mta_fail(MTA_EINVAL, "hpb=%d, thr=%d: expected hpb >= 0 (0 = all heads) and "
				"thr in 0..256", v->hpb, v->threads);
	if (v->hpb == p->H && v->hpb != 0)
		return mta_fail(MTA_EINVAL, "hpb=%d is all H heads: write hpb=0", v->hpb);
	if (v->hpb && p->H % v->hpb)
		return mta_fail(MTA_EINVAL, "hpb=%d does not divide H=%d", v->hpb, p->H);
	if (v->hpb && v->hpb % g)
		return mta_fail(MTA_EINVAL, "hpb=%d: head mixing needs blocks of a multiple of %d "
				"heads%s", v->hpb, g, g == p->H ? " (all heads: hpb=0)" : "");
	if (v->algo != 0)
		return mta_fail(MTA_EINVAL, "algo=%d: the cpu v1 kernels have one algorithm, algo=0",
				v->algo);
	if (v->vec != 4 && v->vec != 8 && v->vec != 16)
		return mta_fail(MTA_EINVAL, "vec=%d: expected 4, 8 or 16 floats per vector", v->vec);
	return MTA_OK;
}

/* Head mixing makes the default hpb=1 invalid: take the smallest valid block. */
static void tailor(const struct mta_problem *p, struct mta_variant *v)
{
	const int g = group(p);
	v->hpb = g == p->H ? 0 : g;
}

const struct mta_space mta_space_cpu = { "cpu", tunables, check, tailor, 1 };
