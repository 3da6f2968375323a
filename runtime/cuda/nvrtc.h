/*
 * nvrtc.h: compile CUDA source straight to cubin with NVRTC, loaded at run
 * time (dlopen), so mtatune starts on machines without CUDA.
 *
 * The library is looked up in $MTATUNE_NVRTC (a path; when set, nothing
 * else is tried), then /usr/local/cuda/lib64/libnvrtc.so*, then libnvrtc.so
 * through the dynamic loader. Without it every call returns MTA_ENODEV with
 * a message naming what was tried.
 *
 * Every compile passes MTA_NVRTC_OPTIONS (below), --ptxas-options=-v among
 * them; the per-kernel resource report in the log (registers, spill
 * stores/loads, stack frame, shared memory) is parsed into struct mta_nvrtc_stats so variants that spill or exceed the
 * device's limits are pruned before any GPU times them.
 */
#ifndef MTA_NVRTC_H
#define MTA_NVRTC_H

#include <stddef.h>

/*
 * The options every compile passes besides the architecture (part of the
 * database key of stored cubins: runtime/cuda/cuda.h). -lineinfo maps SASS
 * back to source lines, for compute-sanitizer's reports and for the static
 * cost model (tuner/model/), at no cost in the code generated.
 */
#define MTA_NVRTC_OPTIONS "--std=c++17 --ptxas-options=-v -lineinfo"

/* NVRTC's version, e.g. 13 and 0. Loads the library. */
int mta_nvrtc_version(int *major, int *minor);

/* Resources of one kernel, from ptxas -v; -1 where the log said nothing. */
struct mta_nvrtc_stats {
	int registers;
	int spill_stores; /* bytes */
	int spill_loads;  /* bytes */
	int stack_bytes;
	int smem_bytes;   /* static shared memory (dynamic comes at launch) */
};

/*
 * Parse the ptxas -v report for kernel (extern "C" name) in log. MTA_OK, or
 * MTA_EFORMAT when the log has no report for that kernel.
 */
int mta_nvrtc_parse_stats(const char *log, const char *kernel, struct mta_nvrtc_stats *st);

/*
 * MTA_OK when a kernel with these resources, launched with threads per block
 * and dyn_smem bytes of dynamic shared memory, neither spills nor exceeds
 * the limits of arch ("sm_80", "sm_90", ...: 65536 registers per block, 255
 * per thread, the arch's shared memory per block with opt-in); otherwise
 * MTA_EUNSUPPORTED saying which limit.
 */
int mta_nvrtc_prune(const struct mta_nvrtc_stats *st, const char *arch, int threads,
		    size_t dyn_smem);

/* The largest shared memory per block (bytes, with opt-in) of arch; 0 if unknown. */
size_t mta_nvrtc_smem_limit(const char *arch);

/* One compile: inputs, then what came back. */
struct mta_nvrtc_job {
	const char *source;  /* CUDA source */
	const char *kernel;  /* extern "C" kernel name whose stats to parse */
	const char *arch;    /* "sm_80", "sm_90", "sm_90a", ... */
	const char *options; /* extra space-separated NVRTC options, may be NULL */
	/* results */
	int status;          /* MTA_OK, MTA_ECOMPILE, MTA_ENODEV, MTA_EINVAL, ... */
	char message[512];   /* mta_last_error() of the compile when status != MTA_OK */
	void *cubin;         /* malloc'd cubin image */
	size_t cubin_size;
	char *log;           /* malloc'd NVRTC log (kept on failure too) */
	struct mta_nvrtc_stats stats;
	double seconds;      /* wall time of the compile */
};

/*
 * Compile job->source for job->arch into job->cubin and parse the stats.
 * Returns job->status. MTA_ECOMPILE keeps the log in job->log.
 */
int mta_nvrtc_compile(struct mta_nvrtc_job *job);

/*
 * Compile n jobs on a pool of nthreads threads (0: one per core, at most 16).
 * Returns MTA_OK when the pool ran (each job has its own status), or the
 * status of a failure to load NVRTC or start threads.
 */
int mta_nvrtc_compile_batch(struct mta_nvrtc_job *jobs, size_t n, int nthreads);

/* Free a job's cubin and log (inputs untouched). */
void mta_nvrtc_job_free(struct mta_nvrtc_job *job);

#endif
