/*
 * backend.h: the one interface every place that runs kernels goes through.
 *
 * A backend is a place kernels run: "cpu" (generated C, compiled by the
 * system compiler), "cuda" (generated CUDA, NVRTC, the driver), "cuda-emu"
 * (the CUDA source run on the CPU by the emulator). Each is one struct of
 * functions, implemented in its own folder (runtime/cpu/, runtime/cuda/) and
 * listed in runtime/backends.c; the runtime's contexts (runtime/context.c),
 * the tuner (tuner/tune/, tuner/measure/), `mtatune run` and the exporter
 * use nothing else, so none of them says "if cuda".
 *
 * A backend runs the variants of one kernel backend of the generator
 * (gen/gen.h: cuda and cuda-emu both run cuda variants) and provides, in
 * the order a kernel meets them:
 *   identify  the device's identity as the database records it, and the
 *             limits the tuner prunes against (no context is created, but
 *             for CUDA the driver is initialised: the tuner calls it in a
 *             child process);
 *   build     compile a batch of generated sources, with what the compiler
 *             reported (log, registers, spills, shared memory) and, where
 *             the backend stores binaries in the database, the binary;
 *   prune     refuse a built kernel that exceeds the device's limits;
 *   open      a device in use (a CUDA context and stream, the CPU's threads);
 *   load      the kernel of (problem, variant) on it: from a binary the
 *             caller holds, else built now through the backend's own cache;
 *   forward   one forward on host tensors (any strides), the convenience
 *             path of mta_forward and `mtatune run`;
 *   bind, launch, fetch, unbind
 *             the measuring path: inputs bound once (copied to the device),
 *             then launched repeatedly, each launch timed by the backend's
 *             own clock (CUDA events, or the wall clock), the output fetched
 *             back into the host tensor given at bind;
 *   flush     evict the caches the next launch would otherwise find warm
 *             (a write over twice the last-level cache, host or device).
 */
#ifndef MTA_RUNTIME_BACKEND_H
#define MTA_RUNTIME_BACKEND_H

#include "db/db.h"
#include "gen/variant.h"
#include "runtime/core/decode.h"

struct mta_device; /* a device in use; each backend defines its own */
struct mta_kernel; /* a loaded kernel */
struct mta_bound;  /* a kernel with its inputs bound for measuring */

/*
 * A device's identity and limits, in plain arrays so that it crosses the
 * pipe from a probing child. Strings are "" where they do not apply.
 */
struct mta_device_info {
	char backend[16];        /* the backend's name */
	char name[256];          /* CPU model name, GPU name */
	char arch[32];           /* x86_64-avx512, sm_90, ... */
	char driver[32];         /* CUDA driver version */
	char compiler[256];      /* the C compiler's identity (cpu) */
	char nvrtc[32];          /* NVRTC version (cuda) */
	int cores;               /* CPU cores or GPU SMs */
	/* limits for pruning; 0: unknown or none */
	int smem_per_block;      /* shared memory per block with opt-in, bytes */
	int regs_per_block;
	int max_threads;         /* threads per block */
	long long l2_bytes;      /* last-level cache */
};

/*
 * The database's view of info (strings point into info, or are constant):
 * its backend column names the kernels the device runs (the runtime
 * backend's kernel backend, gen/variant.h), so the CUDA emulator's device
 * is a cuda device of arch "emu", which no GPU shares.
 */
void mta_device_info_db(const struct mta_device_info *info, struct mta_db_device *d);

/* What a compiler reported of one kernel; -1 where it said nothing. */
struct mta_kstats {
	int registers, spill_stores, spill_loads; /* spills in bytes */
	int smem_bytes;          /* shared memory, static + dynamic */
	int stack_bytes;
};

/* One kernel of a build batch. */
struct mta_build {
	struct mta_problem p;    /* in */
	struct mta_variant v;    /* in */
	const char *source;      /* in: its generated source */
	int op;                  /* in: MTA_OP_* the source computes (mta_gen_source_op) */
	/* out */
	int status;              /* MTA_OK, MTA_ECOMPILE (the source was refused), ... */
	char message[512];       /* mta_last_error() of a failure */
	char *log;               /* malloc'd compiler output ("" if none) */
	struct mta_kstats stats;
	void *binary;            /* malloc'd, for the database; NULL when the backend
				  * keeps its own cache (cpu) */
	size_t binary_size;
	double seconds;          /* wall time of the compile */
};
void mta_build_free(struct mta_build *b); /* frees log and binary only */

struct mta_backend {
	const char *name;        /* "cpu", "cuda", "cuda-emu" */
	const char *summary;     /* what it is, in a few words (for --help) */
	int variants;            /* MTA_BACKEND_*: the kernel backend whose variants it runs */
	int timed;               /* 1: its timings measure the kernel itself (tunable) */

	/* Identity and limits of device index (no context is kept). */
	int (*identify)(int index, struct mta_device_info *info);
	/*
	 * Compile b[0..n) for the device of info on up to threads threads (0:
	 * all cores). MTA_OK when the batch ran (each b[i].status says how its
	 * kernel fared), else what stopped it (MTA_ENODEV: no compiler).
	 */
	int (*build)(const struct mta_device_info *info, struct mta_build *b, size_t n, int threads);
	/* MTA_OK, or MTA_EUNSUPPORTED naming the limit of info the built kernel exceeds. */
	int (*prune)(const struct mta_device_info *info, const struct mta_build *b);
	/*
	 * Where a backend stores binaries in the database: the key of the binary
	 * of a source (by hash) for info's device. NULL for backends that do not.
	 * compiler must hold 32 bytes; k's strings point into the arguments.
	 */
	void (*binary_key)(const struct mta_device_info *info, const char *source_hash,
			   char compiler[32], struct mta_db_binary_key *k);
	/*
	 * Backends whose kernels ship as binaries (binary_key set): how a loader
	 * launches the kernel of (p, v): threads per block, dynamic shared
	 * memory, query rows and heads per block (runtime/cuda/module.h).
	 */
	int (*launch_dims)(const struct mta_problem *p, const struct mta_variant *v,
			   unsigned *block, unsigned *smem, unsigned *bq, unsigned *hpb,
			   unsigned *cs);
	/*
	 * Binary backends: a build target without a device (`mtatune export
	 * --arch`): info gets arch and this machine's compiler version; MTA_ENODEV
	 * (info still holds arch) when there is no compiler here.
	 */
	int (*target)(const char *arch, struct mta_device_info *info);

	/* A device in use; threads: CPU worker threads (0: the variant's choice). */
	int (*open)(int index, int threads, struct mta_device **dev);
	void (*close)(struct mta_device *dev); /* NULL is fine */
	/*
	 * The kernel of (p, v) on dev: binary (n bytes) when given, else from
	 * db's binaries (db may be NULL), else built now (cached where the
	 * backend caches).
	 */
	int (*load)(struct mta_device *dev, struct mta_db *db, const struct mta_problem *p,
		    const struct mta_variant *v, const void *binary, size_t n,
		    struct mta_kernel **k);
	void (*unload)(struct mta_kernel *k); /* NULL is fine */
	/* One forward on host tensors: q, k, v of p's dtype, o float32, d contiguous. */
	int (*forward)(struct mta_kernel *k, const struct mta_problem *p,
		       const struct mta_tensor *q, const struct mta_tensor *kt,
		       const struct mta_tensor *v, const struct mta_weights *w,
		       struct mta_tensor *o);
	/* Measuring: bind host inputs and the host output o (kept until unbind). */
	int (*bind)(struct mta_kernel *k, const struct mta_problem *p,
		    const struct mta_tensor *q, const struct mta_tensor *kt,
		    const struct mta_tensor *v, const struct mta_weights *w,
		    struct mta_tensor *o, struct mta_bound **b);
	/* One launch on the bound inputs, finished; *ms its time by the backend's clock. */
	int (*launch)(struct mta_bound *b, double *ms);
	/* The last launch's output into the host o given at bind. */
	int (*fetch)(struct mta_bound *b);
	void (*unbind)(struct mta_bound *b); /* NULL is fine */
	int (*flush)(struct mta_device *dev);

	/*
	 * Training (NULL where the backend has no backward yet): train_load
	 * loads the backward library of (p, v) on dev (released by unload);
	 * fwd_save runs its forward, o float32, filling saved
	 * (mta_saved_bytes); backward takes saved and dout (float32, d
	 * contiguous) and writes g (mta.h: struct mta_grads). Host tensors.
	 */
	int (*train_load)(struct mta_device *dev, const struct mta_problem *p,
			  const struct mta_variant *v, struct mta_kernel **k);
	int (*fwd_save)(struct mta_kernel *k, const struct mta_problem *p,
			const struct mta_tensor *q, const struct mta_tensor *kt,
			const struct mta_tensor *v, const struct mta_weights *w,
			struct mta_tensor *o, void *saved);
	int (*backward)(struct mta_kernel *k, const struct mta_problem *p,
			const struct mta_tensor *q, const struct mta_tensor *kt,
			const struct mta_tensor *v, const struct mta_weights *w,
			const void *saved, const struct mta_tensor *dout,
			const struct mta_grads *g);

	/*
	 * Packed documents (mta.h, mta_forward_varlen): one forward of every
	 * document on host tensors with B = 1, cu_seqlens checked by the caller.
	 * NULL: the backend has no packed kernel, and mta_backend_forward_varlen
	 * runs each document through forward on a view.
	 */
	int (*forward_varlen)(struct mta_kernel *k, const struct mta_problem *p,
			      const struct mta_tensor *q, const struct mta_tensor *kt,
			      const struct mta_tensor *v, const struct mta_weights *w,
			      const int64_t *cu_seqlens, int64_t ndocs, struct mta_tensor *o);

	/*
	 * Decode (mta.h, mta_cache_create_ctx): the decode kernel of p and
	 * decode variant v (NULL: the default; a backend without a decode space
	 * ignores it), how a cache calls it in *dec (its entry computes new rows,
	 * runtime/core/mta_dargs.h; the pool and threads a CPU kernel runs on;
	 * the backend's own state); *handle keeps it loaded until
	 * decode_unload. NULL: no decode kernel, the float64 engine serves
	 * (runtime/core/decode.c).
	 */
	int (*decode_load)(struct mta_device *dev, const struct mta_problem *p,
			   const struct mta_variant *v, void **handle, struct mta_decoder *dec);
	void (*decode_unload)(void *handle);

	/*
	 * ---- the device path of mta_attention (runtime/context.c) ----
	 * memory    where the kernels read and write: MTA_MEM_HOST (cpu) or
	 *           MTA_MEM_DEVICE (cuda; cuda-emu's emulated device memory);
	 * host_ok   1: the kernels read host memory too (cpu, cuda-emu), so
	 *           host tensors and weights are used where they are;
	 * out16     1: the kernels write a bf16 or f16 o themselves (cuda,
	 *           cuda-emu); else the context lends them a float32 o and
	 *           converts;
	 * attach    enqueue one launch of k on tensors and weights already in
	 *           the kernel's memory (w's pointers, gate_b_ptr included),
	 *           on stream (NULL: the device's own), without copying,
	 *           allocating or waiting; the caller's CUDA context restored;
	 * mem_alloc, mem_free, mem_copy (in stream order), sync (a stream);
	 * mem_check MTA_OK when bytes at ptr are memory of the kind the tensor
	 *           or weight name says (MTA_MEM_*), else MTA_EINVAL naming it;
	 *           cuda-emu checks against its registry of allocations, the
	 *           others only that the kind is one their kernels read.
	 */
	int memory, host_ok, out16;
	int (*attach)(struct mta_kernel *k, const struct mta_problem *p,
		      const struct mta_tensor *q, const struct mta_tensor *kt,
		      const struct mta_tensor *v, const struct mta_weights *w,
		      struct mta_tensor *o, void *stream);
	int (*mem_alloc)(struct mta_device *dev, size_t bytes, void **ptr);
	void (*mem_free)(struct mta_device *dev, void *ptr);
	int (*mem_copy)(struct mta_device *dev, void *dst, int dst_memory, const void *src,
			int src_memory, size_t bytes, void *stream);
	int (*mem_check)(struct mta_device *dev, const char *name, const void *ptr, size_t bytes,
			 int memory);
	int (*sync)(struct mta_device *dev, void *stream);
};

/*
 * The packed forward of kernel k on backend be: checks the call
 * (runtime/core/varlen.h), then be->forward_varlen, or one be->forward per
 * non-empty document on views when the backend has none.
 */
int mta_backend_forward_varlen(const struct mta_backend *be, struct mta_kernel *k,
			       const struct mta_problem *p, const struct mta_tensor *q,
			       const struct mta_tensor *kt, const struct mta_tensor *v,
			       const struct mta_weights *w, const int64_t *cu_seqlens,
			       int64_t ndocs, struct mta_tensor *o);

/* The backend named name ("cpu", "cuda", "cuda-emu"), or MTA_EINVAL listing them. */
int mta_backend_find(const char *name, const struct mta_backend **b);
/*
 * The same among the backends the tuner can time ("cpu", "cuda"): MTA_EINVAL
 * listing those for an unknown name, MTA_EUNSUPPORTED for a backend whose
 * timings say nothing about the kernel (cuda-emu).
 */
int mta_backend_find_timed(const char *name, const struct mta_backend **b);
/* The i-th backend of the table (NULL past the end), for listings. */
const struct mta_backend *mta_backend_at(int i);

extern const struct mta_backend mta_backend_cpu;
extern const struct mta_backend mta_backend_cuda;
extern const struct mta_backend mta_backend_cuda_emu;

#endif
