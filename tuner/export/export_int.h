/*
 * export_int.h: the plan of an export, shared by export.c (which makes it
 * from the database) and export_write.c (which writes it out).
 */
#ifndef MTA_EXPORT_EXPORT_INT_H
#define MTA_EXPORT_EXPORT_INT_H

#include "tuner/export/export.h"
#include "runtime/backend.h"
#include "runtime/core/cuda_bwd.h"

struct xdevice {
	int64_t id;          /* 0: none (defaults only) */
	char backend[16];
	char name[256];
	char arch[32];       /* binary backends: the binaries' target */
	int too_long;        /* the database's text did not fit the fields above */
};

struct xbucket {
	int64_t t_bucket, b_bucket;
	double speedup, ci_low, ci_high; /* NAN: no rounds behind the decision */
	int rounds, significant;
	char spec[MTA_SPEC_MAX];
	int kernel;          /* index into xplan.k */
};

struct xproblem {
	char key[MTA_KEY_MAX];
	struct mta_problem p;
	struct xbucket *b;   /* ascending (t_bucket, b_bucket) */
	int nb;
	int def;             /* kernel of the default variant */
	struct xbucket *bb;  /* the backward's, ascending likewise */
	int nbb;
	int bdef;            /* kernel of the default backward variant; -1: none (not tuned) */
	/*
	 * The decode winner a CPU library's decode kernel (src/d_<i>.c) is made
	 * of: the one of the largest T bucket (long caches are where a token's
	 * time is), then the largest B bucket; spec "" for none (the default).
	 */
	struct xbucket dw;
	/*
	 * A CUDA library's decode: its winners per (T bucket, B bucket), each a
	 * cubin of the decode template, ascending likewise, and the default
	 * decode variant's kernel (-1: the library ships no decode cubins: cpu).
	 */
	struct xbucket *dk;
	int ndk;
	int ddef;
};

struct xkernel {
	int problem;         /* index into xplan.p */
	int op;              /* MTA_OP_FWD, MTA_OP_BWD (a backward library (cpu) or cubin), or
			      * MTA_OP_DECODE (cuda: a decode cubin) */
	char spec[MTA_SPEC_MAX];
	char *source;        /* generated C or CUDA source */
	void *cubin;         /* binary backends: the kernel's image */
	size_t cubin_size;
	unsigned block, smem, bq, hpb, cs; /* binary backends: its launch (launch_dims) */
	struct mta_cuda_bwd_shape shape; /* a CUDA backward's bq, warps, nb; zeros otherwise */
};

struct xplan {
	const char *name;
	struct xdevice dev;
	const struct mta_backend *be;
	int binary;          /* kernels ship as binaries (be->binary_key), else as sources */
	struct xproblem *p;  /* sorted by key */
	int np;
	struct xkernel *k;   /* in order of first use */
	int nk;
};

/* Write the folder for plan x into dir (created if missing). */
int mta_export_write(const struct xplan *x, const char *dir);

#endif
