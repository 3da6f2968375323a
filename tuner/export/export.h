/*
 * export.h: write a best-kernel library (`mtatune export`).
 *
 * From a tuning database, the winners of one device are written into a
 * self-contained folder that builds, with its own Makefile, into
 * lib<NAME>.so and lib<NAME>.a: the API of mta.h (the same header) over a
 * dispatch table from (problem, T bucket) to a compiled kernel, needing only
 * libc, libm, libpthread and libdl at run time (the CUDA driver is found with
 * dlopen). The folder:
 *
 *   Makefile            make -> lib<NAME>.so lib<NAME>.a (needs cc, nothing else)
 *   mta.h               the public header, as in mtatune
 *   src/<NAME>_table.c  generated: problems, buckets, kernels (cubins as bytes)
 *   src/k_<N>.c         generated: one CPU kernel each (cpu exports)
 *   src/ (other files)  the runtime (templates/export_runtime.c) and copies of
 *                       mtatune's own problem, tensor, error, reference, and
 *                       kernel-argument code
 *
 * Each exported problem keeps its winners' buckets and its backend's default
 * variant (run when T's bucket and every other bucket are missing, i.e. for
 * a problem exported by --problem without winners). A CPU export does the
 * same for the backward of each problem that has backward winners (op bwd:
 * those and the default backward, each a src/k_<N>.c), which its
 * mta_forward_train and mta_backward run; other problems ship no backward. CUDA cubins come from
 * the database's binaries table, keyed (source hash = mta_hash_hex of the
 * generated source, target = the arch, compiler = "nvrtc MAJOR.MINOR",
 * options = ""), else from any compiler's binary of that source and arch,
 * else NVRTC compiles them now: no GPU is needed.
 *
 * The output is reproducible: the same database and options give
 * byte-identical files (everything sorted, no dates, no paths).
 */
#ifndef MTA_EXPORT_H
#define MTA_EXPORT_H

#include <stddef.h>

struct mta_export_opts {
	const char *db_path;           /* the tuning database (read only); required */
	const char *out_dir;           /* created if missing; our files in it are replaced */
	const char *name;              /* library name, [A-Za-z0-9_]+; NULL: "mta" */
	const char *device;            /* NULL, or the device's name as the database has it */
	const char *arch;              /* NULL, or sm_XX: export CUDA cubins for this arch */
	const char *const *problems;   /* NULL: every problem with a winner; else these keys */
	size_t nproblems;
};

struct mta_export_summary {
	int problems, buckets, kernels;
	int bwd_buckets;      /* of the buckets, the backward's (cpu) */
	int cubins_from_db, cubins_compiled;
	char backend[16];              /* "cpu" or "cuda" */
	char device[256];              /* "" when no device had winners (defaults only) */
	char arch[32];
};

/*
 * Write the folder. MTA_EINVAL for bad options (unknown problem key, bad
 * name or arch), MTA_ENOTFOUND when no device matches or nothing is left to
 * export (the message lists the database's devices), MTA_EIO for files that
 * cannot be written, MTA_ECOMPILE / MTA_ENODEV from NVRTC.
 */
int mta_export(const struct mta_export_opts *o, struct mta_export_summary *s);

#endif
