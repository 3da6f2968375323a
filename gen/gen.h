/*
 * gen.h: the generator layer's entry points: problem + variant -> kernel
 * source, whatever the backend.
 *
 * Each kernel backend is one row of gen/backends.c: its name (the spec's
 * prefix), its tuning space (gen/<backend>/space.c) and its generator
 * (gen/<backend>/<x>gen.c), which specialises a template of templates/ by
 * writing #defines in front of it. The #defines come from one place,
 * mta_gen_defines(): the problem's constants and one K_<NAME> per tunable
 * row of the space, all with the prefix K_, so a template sees the same
 * names whatever its language.
 */
#ifndef MTA_GEN_GEN_H
#define MTA_GEN_GEN_H

#include "gen/space.h"
#include "runtime/core/strbuf.h"

struct mta_gen_backend {
	const char *name;                 /* "cpu", "cuda": the spec prefix */
	const struct mta_space *space;
	/* Source of (p, v) into *source (malloc'd); MTA_EINVAL if v does not fit p. */
	int (*generate)(const struct mta_problem *p, const struct mta_variant *v, char **source);
	/* The backward: its space and generator (NULL: this backend has none yet). */
	const struct mta_op_space *bwd_space;
	int (*generate_bwd)(const struct mta_problem *p, const struct mta_variant *v,
			    char **source);
	/* Decode: its space and generator (NULL: none tunable; see mta_gen_source_op). */
	const struct mta_op_space *decode_space;
	int (*generate_decode)(const struct mta_problem *p, const struct mta_variant *v,
			       char **source);
};

/* The row of backend (MTA_BACKEND_*), or NULL. */
const struct mta_gen_backend *mta_gen_backend(int backend);
int mta_gen_backend_count(void);

/* The source of (p, v) from v's backend's generator. */
int mta_gen_source(const struct mta_problem *p, const struct mta_variant *v, char **source);
/*
 * The same for operation op (MTA_OP_*): the forward's or the backward's
 * generator; v is held to the backend's rules (mta_variant_check), not to
 * the operation's space, whose other tunables the backward does not read.
 */
int mta_gen_source_op(const struct mta_problem *p, const struct mta_variant *v, int op,
		      char **source);
/* The space of op (MTA_OP_BWD, MTA_OP_DECODE) of backend; NULL when the backend has none. */
const struct mta_op_space *mta_gen_op_space(int backend, int op);

/*
 * The banner naming the template, problem key and variant spec, then every
 * #define a template takes: K_H K_HKV K_D K_CQ K_CK K_OK K_HPRE K_CQ2 K_CK2
 * K_OK2 K_HPOST K_HC K_GN K_GNR K_GATE K_SCALE (an exact hex float) K_DTYPE
 * K_VERSION, then K_<NAME> for each tunable of v's space in table order.
 * v must have been checked against p.
 */
int mta_gen_defines(struct mta_buf *b, const char *template_path, const struct mta_problem *p,
		    const struct mta_variant *v);

/* Text of an embedded file (db/ schema, templates/, shipped runtime files), or NULL (gen/embed.sh). */
const char *mta_embedded(const char *path);
/*
 * The files `mtatune export` copies into a library, as paths relative to
 * the project root (each also embedded), NULL-terminated: the Makefile's
 * SHIP list, the one list of them.
 */
extern const char *const mta_shipped[];

#endif
