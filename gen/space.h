/*
 * space.h: a kernel backend's tuning space as data (CLBlast style).
 *
 * A space is four tables, each row one fact:
 *   - tunables: a field of struct mta_variant with its name in the spec
 *     text, its default, the values the tuner tries, and the rule a value
 *     must keep, with the message saying so when it does not;
 *   - rules: constraints between tunables, the kernel family (version) and
 *     the problem, each a predicate with its message;
 *   - limits: resources a variant needs (shared memory, registers) against
 *     the cap of each kernel family: the one place those numbers live;
 *   - families: v1..vN, the kernel families the space walks, and the one
 *     the default variant belongs to.
 *
 * Messages are templates: {name} is replaced by the value of the variant's
 * tunable of that name (or {v} for its family), and {H}, {Hkv}, {D}, {cq},
 * {ck}, {cq2}, {ck2}, {hc} and {dtype} by the problem's, {group} by the
 * number of heads one head-mixing group spans (H, c or 1). mta_variant_check
 * walks the rows in order and reports the first broken one. The generators
 * write one `#define K_<NAME> value` per tunable row (gen/gen.h), so adding a
 * tunable is a field in struct mta_variant, one row here, and its use in the
 * template.
 */
#ifndef MTA_GEN_SPACE_H
#define MTA_GEN_SPACE_H

#include "gen/variant.h"

#define MTA_TUNABLE_MAXVALS 12

/* A constraint: ok(p, v) is non-zero when v keeps it; msg says what it is. */
struct mta_rule {
	int (*ok)(const struct mta_problem *p, const struct mta_variant *v);
	const char *msg;
};

struct mta_tunable {
	const char *name;   /* key in the spec text, e.g. "bq"; K_BQ in the kernel */
	size_t offset;      /* offsetof(struct mta_variant, field) */
	int def;            /* default value */
	int nvals;
	int vals[MTA_TUNABLE_MAXVALS]; /* what the tuner tries */
	struct mta_rule rule;          /* what any value must keep (ok NULL: anything) */
	/*
	 * The families the tuner tries each value in, a bit per family (bit 0:
	 * v1); 0, or the whole array left out, is every family. Families that
	 * use a tunable differently (v1's bq is a tile, v2's a block of rows)
	 * thus keep their own lists; other values stay valid in a spec.
	 */
	unsigned char tried_in[MTA_TUNABLE_MAXVALS];
	/*
	 * Written in a spec only when not its default: a tunable added after
	 * specs were recorded (databases, exported tables) leaves their text,
	 * and so their identity, as it was.
	 */
	int quiet;
};

/* A resource a variant needs, capped per kernel family. */
struct mta_limit {
	const char *what;   /* "bytes of shared memory", ... */
	long (*need)(const struct mta_problem *p, const struct mta_variant *v);
	long cap[4];        /* cap for v1, v2, ... (index version-1; 0: no cap) */
};

struct mta_space {
	const char *backend;                 /* "cpu", "cuda" */
	int nversions;                       /* kernel families v1..vN */
	int def_version;                     /* the family of the default variant (0: v1) */
	const struct mta_tunable *tunables;  /* ends with name == NULL */
	const struct mta_rule *rules;        /* ends with ok == NULL */
	const struct mta_limit *limits;      /* ends with what == NULL */
	/* Optional: adjust defaults for a problem before checking (may be NULL). */
	void (*tailor)(const struct mta_problem *p, struct mta_variant *v);
	/*
	 * Optional: whether the tuner tries a valid point (NULL: every one). A
	 * point it skips stays valid in a spec: this is for points that work
	 * but are predicted to sit too near a resource's edge (registers) to
	 * be tried on every problem.
	 */
	int (*tried)(const struct mta_problem *p, const struct mta_variant *v);
	/*
	 * Optional: the default for a device of architecture arch, where it
	 * differs (mta_variant_default_arch): given the default in v, may
	 * replace it by a tried point that only some architectures run.
	 */
	int (*arch_default)(const struct mta_problem *p, const char *arch, struct mta_variant *v);
};

/*
 * The space of another operation over a backend's variants (the backward):
 * the tunables its template reads, each with its default and the values
 * the tuner tries (names of the backend's tunables). A variant of the
 * operation is the backend's default variant for the problem (tailored)
 * with these tunables set, so it parses, formats and checks as any variant
 * of the backend, under the same rules; the tunables its template does not
 * read keep the default's values, so that no two specs name one kernel.
 */
struct mta_op_tunable {
	const char *name;   /* a tunable of the backend's space, e.g. "bq" */
	int def;
	int nvals;
	int vals[MTA_TUNABLE_MAXVALS];
};

struct mta_op_space {
	const char *op;                          /* "bwd", "decode" */
	const struct mta_op_tunable *tunables;   /* ends with name == NULL */
	/*
	 * Optional (NULL: the backend's rules hold the operation's variants, as
	 * on the cpu): the operation's own rules, as a space whose tunables are
	 * the rows its template reads (the names of tunables above), each with
	 * its rule, and whose rules and limits are the operation's resource
	 * limits. With it the backend's rules do not judge the operation's
	 * variants (the CUDA forward's shared-memory and register limits are not
	 * the backward's), and its rows that the backend's space lacks (cuda's
	 * nb) are the operation's alone: 0 in every other variant, written after
	 * the backend's tunables in a spec when set, parsed by name.
	 */
	const struct mta_space *check;
};

/* A variant's field for tunable t. */
int *mta_tunable_field(struct mta_variant *v, const struct mta_tunable *t);

/*
 * MTA_OK, or MTA_EINVAL with the first broken row's message (expanded) of
 * space s: the family, each tunable's rule, the rules, the limits.
 */
int mta_space_check(const struct mta_space *s, const struct mta_problem *p,
		    const struct mta_variant *v);

extern const struct mta_space mta_space_cpu;
extern const struct mta_space mta_space_cuda;
extern const struct mta_op_space mta_space_cpu_bwd; /* gen/cpu/space.c */
extern const struct mta_op_space mta_space_cpu_decode;
extern const struct mta_op_space mta_space_cuda_bwd; /* gen/cuda/space.c */
extern const struct mta_op_space mta_space_cuda_decode;

#endif
