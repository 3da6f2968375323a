/*
 * space.h: a backend's tuning space as data (CLBlast style).
 *
 * A backend lists its tunables: the variant field each sets, the values the
 * tuner tries, and the default. Constraints between tunables and the problem
 * live in one check function per backend that names the broken rule. The
 * tuner's space is the cartesian product of the value lists, filtered by the
 * check; mta_variant_default() takes each tunable's default and, if that
 * breaks a constraint, the first valid point of the space.
 */
#ifndef MTA_SPACE_H
#define MTA_SPACE_H

#include "variant.h"

#define MTA_TUNABLE_MAXVALS 12

struct mta_tunable {
	const char *name;   /* key in the spec text, e.g. "bq" */
	size_t offset;      /* offsetof(struct mta_variant, field) */
	int def;            /* default value */
	int nvals;
	int vals[MTA_TUNABLE_MAXVALS];
};

struct mta_space {
	const char *backend;                    /* "cpu", "cuda" */
	const struct mta_tunable *tunables;     /* ends with name == NULL */
	/* MTA_OK or MTA_EINVAL naming the broken constraint. */
	int (*check)(const struct mta_problem *p, const struct mta_variant *v);
	/* Optional: adjust defaults for a problem before checking (may be NULL). */
	void (*tailor)(const struct mta_problem *p, struct mta_variant *v);
	/* Kernel families v1..vN the space walks (0 means 1); check() says
	 * which tunable values each family takes. */
	int nversions;
};

extern const struct mta_space mta_space_cpu;
extern const struct mta_space mta_space_cuda;

#endif
