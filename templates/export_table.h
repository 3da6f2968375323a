/*
 * export_table.h: the layout of an exported library's dispatch table.
 *
 * `mtatune export` writes a table source (NAME_table.c) that defines one
 * struct mtx_library, mtx_library, filled from the tuning database; the
 * library's runtime (export_runtime.c) reads it. Both are shipped together,
 * so this layout has no ABI of its own to keep stable.
 *
 * Problems are sorted by key (the runtime searches them by bisection), each
 * problem's buckets by (t_bucket, b_bucket) ascending. A bucket names the
 * kernel that won its sequence lengths (t_bucket/2, t_bucket] and batch
 * sizes (b_bucket/2, b_bucket], with the evidence of that decision (speed-up
 * over the default variant, its 95% interval, rounds); default_kernel is the
 * backend's default variant of the problem, run when the problem has no
 * bucket at all. The backward's buckets and default are the same for
 * mta_forward_train and mta_backward.
 */
#ifndef MTX_TABLE_H
#define MTX_TABLE_H

#include <stddef.h>
#include <stdint.h>

#include "runtime/core/cuda_bwd.h"
#include "runtime/core/mta_kargs.h"
#include "runtime/core/mta_dargs.h"

/*
 * One compiled kernel: a C function (cpu) or a cubin (cuda); or a CPU
 * backward (templates/mta_cpu_bwd.c, ABI runtime/core/mta_bkargs.h): fn
 * NULL, fwd_save and bwd its entry points, info its mta_cpu_bwd_info; or a
 * CUDA backward (templates/mta_cuda_bwd.cu): a cubin whose entry is
 * MTA_CUDA_BWD_KERNEL, block and smem its threads and shared memory, shape
 * the backward's bq, warps, nb, which plan each call (runtime/core/cuda_bwd.h);
 * or a CUDA decode kernel (templates/mta_cuda_decode.cu): a cubin whose entry
 * is "mta_decode_row", block and smem its launch, bq and hpb zero.
 */
struct mtx_kernel {
	const char *spec;                          /* variant spec it was built from */
	/* cpu */
	int (*fn)(const struct mta_kargs *a);      /* entry point */
	const struct mta_kinfo *info;              /* what the kernel says of itself */
	int (*fwd_save)(const struct mta_kargs *a); /* the backward's saving forward */
	int (*bwd)(const struct mta_kargs *a);      /* the backward */
	/* cuda */
	const unsigned char *cubin;                /* ELF image for the library's arch */
	size_t cubin_size;
	const char *entry;                         /* extern "C" kernel name */
	unsigned block;                            /* threads per block (32 * warps) */
	unsigned smem;                             /* dynamic shared memory, bytes */
	unsigned bq, hpb, cs;                      /* query rows, heads per block; blocks a cluster */
	struct mta_cuda_bwd_shape shape;           /* a backward's shape; zeros for a forward */
};

struct mtx_bucket {
	int64_t t_bucket;  /* a power of two */
	int64_t b_bucket;  /* a power of two */
	double speedup, ci_low, ci_high; /* NAN: decided without rounds */
	int rounds, significant;
	int kernel;        /* index into mtx_library.kernels */
};

struct mtx_problem {
	const char *key;                  /* canonical problem key */
	const struct mtx_bucket *buckets; /* ascending (t_bucket, b_bucket) */
	int nbuckets;
	int default_kernel;               /* index into mtx_library.kernels */
	/* cpu: the problem's decode kernel (templates/mta_cpu_decode.c); NULL for cuda */
	int (*decode)(const struct mta_dargs *a);
	/*
	 * The backward's buckets (its winners, `tune --op bwd`) and its default
	 * backward kernel; -1 when the problem ships no backward (not tuned for
	 * it).
	 */
	const struct mtx_bucket *bwd_buckets;
	int nbwd;
	int bwd_default;
	/*
	 * cuda: the decode's buckets (its winners per cache length, `tune --op
	 * decode --backend cuda`) and its default decode kernel, cubins of
	 * templates/mta_cuda_decode.cu (entry "mta_decode_row", block and smem
	 * their launch, a block per sequence); -1 and none for a cpu library.
	 */
	const struct mtx_bucket *dec_buckets;
	int ndec;
	int dec_default;
};

struct mtx_library {
	const char *name;     /* NAME of libNAME.so */
	const char *backend;  /* "cpu" or "cuda" */
	const char *device;   /* the device tuned on, "" when none (defaults only) */
	const char *arch;     /* cuda: the cubins' architecture (sm_90, ...); cpu: tuned arch */
	const struct mtx_problem *problems;
	int nproblems;
	const struct mtx_kernel *kernels;
	int nkernels;
};

extern const struct mtx_library mtx_library;

#endif
