/*
 * variant.h: a kernel variant, i.e. the tunable choices that, together with
 * a problem, fully determine a generated kernel's source.
 *
 * Tunables and their constraints are data (one space per kernel backend,
 * gen/<backend>/space.c, laid out in gen/space.h): the tuner enumerates a
 * problem's space from those tables, and mta_variant_check() rejects a
 * combination with a reason.
 *
 * Text form ("variant spec"), canonical order, comma separated key=value:
 *   cpu:v1,bq=16,bk=64,hpb=4,vec=8,thr=0,algo=0
 *   cuda:v1,bq=16,bk=32,hpb=4,warps=4,algo=0
 * A CUDA backward variant adds its own tunable (gen/space.h, struct
 * mta_op_space's check):
 *   cuda:v1,bq=16,bk=32,hpb=4,warps=4,algo=0,nb=128
 * Unknown keys, repeated keys and missing backends are refused; keys left out
 * take the backend's default.
 */
#ifndef MTA_GEN_VARIANT_H
#define MTA_GEN_VARIANT_H

#include "runtime/mta.h"

/*
 * Kernel backends: the language a variant's source is generated in, i.e.
 * the spec's prefix. The rows of gen/backends.c, in this order. (Several
 * runtime backends may run one kernel backend's variants: cuda and cuda-emu
 * both run cuda variants; see runtime/backend.h.)
 */
enum { MTA_BACKEND_CPU = 0, MTA_BACKEND_CUDA = 1 };

struct mta_variant {
	int backend;   /* MTA_BACKEND_* */
	int version;   /* kernel family, numbered (v1, v2, ...) and chosen by number */
	int bq;        /* query rows per tile */
	int bk;        /* key columns per tile */
	int hpb;       /* heads per block: a multiple of the head-mixing group */
	int vec;       /* CPU: SIMD width hint for the inner loops */
	int threads;   /* CPU: worker threads, 0 = all cores */
	int warps;     /* CUDA: warps per block */
	int algo;      /* family-specific algorithm choice (see the family's doc) */
	int cs;        /* CUDA v3: blocks a cluster, sharing a tile's heads (1: none) */
	int nb;        /* CUDA backward: most blocks of its persistent grid; 0 in every
			* other variant (an operation's own tunable, gen/space.h) */
};

int mta_backend_parse(const char *s, int *backend);  /* "cpu", "cuda" */
const char *mta_backend_name(int backend);

/* Parse / format the text form above. Format writes the canonical form. */
int mta_variant_parse(const char *spec, struct mta_variant *v);
int mta_variant_format(const struct mta_variant *v, char *buf, size_t n);

/* The sound default variant of a backend for a problem (always valid). */
int mta_variant_default(const struct mta_problem *p, int backend, struct mta_variant *v);
/*
 * The default for a device of architecture arch ("sm_90"; NULL or unknown:
 * mta_variant_default's): the same, unless that is the scalar family and
 * the space tries a faster one only this architecture runs (CUDA: v3
 * clusters, sm_90 on, for the mixings of 32 heads that no block holds).
 * It runs where the portable default does not reach; the tuner still
 * measures against mta_variant_default.
 */
int mta_variant_default_arch(const struct mta_problem *p, int backend, const char *arch,
			     struct mta_variant *v);

/* MTA_OK, or MTA_EINVAL with the constraint that v breaks for p. */
int mta_variant_check(const struct mta_problem *p, const struct mta_variant *v);

/*
 * Enumerate every valid variant of the backend for p into *out (malloc'd,
 * caller frees); *n is set to the count.
 */
int mta_variant_space(const struct mta_problem *p, int backend, struct mta_variant **out, size_t *n);

/*
 * Operations a variant's kernel computes: the forward, the backward, decode
 * (one new row per sequence of a cache; the database's op column names
 * them so). The backward or decode of a backend with a space for it
 * (gen/space.h, struct mta_op_space) is a variant of that backend whose
 * tunables outside the space keep the default's values; the _op functions
 * are the ones above for op, MTA_EUNSUPPORTED for a backend without that
 * operation.
 */
enum { MTA_OP_FWD = 0, MTA_OP_BWD = 1, MTA_OP_DECODE = 2, MTA_OP_COUNT };
const char *mta_op_name(int op); /* "fwd", "bwd", "decode" ("?" for others) */
int mta_op_parse(const char *s, int *op); /* MTA_EINVAL naming what was expected */
int mta_variant_default_op(const struct mta_problem *p, int backend, int op,
			   struct mta_variant *v);
int mta_variant_check_op(const struct mta_problem *p, const struct mta_variant *v, int op);
int mta_variant_space_op(const struct mta_problem *p, int backend, int op,
			 struct mta_variant **out, size_t *n);
/*
 * What a generator or a loader of op's kernel holds v to: the rules that
 * judge the tunables the kernel reads (the forward's, mta_variant_check;
 * for a backward with its own rules, those), not the default's other
 * values, so a recorded winner stays buildable when the default changes.
 * mta_variant_check_op is this plus the default's values elsewhere.
 */
int mta_variant_check_kernel(const struct mta_problem *p, const struct mta_variant *v, int op);

#endif
