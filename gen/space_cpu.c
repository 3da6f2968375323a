/*
 * space_cpu.c: the tuning space of the generated C kernels (see space.h).
 */
#include "space.h"
#include "error.h"

#include <stddef.h>

static const struct mta_tunable tunables[] = {
	{ "bq", offsetof(struct mta_variant, bq), 16, 4, { 8, 16, 32, 64 } },
	{ "bk", offsetof(struct mta_variant, bk), 64, 3, { 32, 64, 128 } },
	{ "hpb", offsetof(struct mta_variant, hpb), 1, 4, { 1, 2, 4, 8 } },
	{ "vec", offsetof(struct mta_variant, vec), 8, 2, { 4, 8 } },
	{ "thr", offsetof(struct mta_variant, threads), 0, 1, { 0 } },
	{ "algo", offsetof(struct mta_variant, algo), 0, 1, { 0 } },
	{ 0, 0, 0, 0, { 0 } },
};

static int check(const struct mta_problem *p, const struct mta_variant *v)
{
	if (v->version != 1)
		return mta_fail(MTA_EINVAL, "cpu kernel family v%d does not exist (have v1)", v->version);
	if (v->bq < 1 || v->bk < 1 || v->hpb < 1)
		return mta_fail(MTA_EINVAL, "bq, bk and hpb must be at least 1");
	if (p->H % v->hpb)
		return mta_fail(MTA_EINVAL, "hpb=%d does not divide H=%d", v->hpb, p->H);
	return MTA_OK;
}

const struct mta_space mta_space_cpu = { "cpu", tunables, check, NULL };
