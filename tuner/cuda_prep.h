/*
 * cuda_prep.h: the CUDA tuner's work before any GPU is involved.
 *
 * For each candidate variant: generate its source, find or insert its
 * database row (a variant already measured for this device and size is
 * skipped), take its cubin from the database or compile it with NVRTC for
 * the target architecture (all compiles in one batch on a thread pool),
 * record the compile information (registers, spills, shared memory, stack,
 * time, and the log, kept on failure too), store new cubins keyed by source
 * hash, architecture, NVRTC version and options, and prune the variants that
 * spill or exceed the target's limits. Compile failures and pruned variants
 * are recorded as results (compile_failed, pruned) at once; what is left is
 * the list to check and time on the device.
 *
 * Nothing here needs a GPU or a driver, only NVRTC, so it is tested on
 * machines without either.
 */
#ifndef MTA_CUDA_PREP_H
#define MTA_CUDA_PREP_H

#include "db.h"
#include "variant.h"

/* The device compiled for and its limits (0: the architecture's defaults). */
struct mta_cuda_target {
	const char *arch;   /* "sm_90" */
	const char *nvrtc;  /* NVRTC version, "13.0" */
	int smem_limit;     /* shared memory per block with opt-in, bytes */
	int regs_per_block; /* registers per block */
	int max_threads;    /* threads per block */
};

struct mta_cuda_prep {
	struct mta_db *db;
	int64_t device_id, problem_id;
	int64_t T, B;          /* the size results are recorded at */
	const char *run_id;
	int threads;           /* NVRTC compile threads, 0: all cores */
	struct mta_cuda_target target;
};

enum {
	MTA_PREP_TIME = 0,     /* compiled, within limits: to be checked and timed */
	MTA_PREP_SKIPPED = 1,  /* a result for this device and size exists already */
	MTA_PREP_RECORDED = 2, /* compile failure or pruned: its result is written */
};

struct mta_cuda_cand {
	struct mta_variant v;
	char spec[MTA_SPEC_MAX];
	int64_t vid;
	int state;             /* MTA_PREP_* */
	int status;            /* SKIPPED: the stored result's; RECORDED: the one written */
	double old_ms;         /* SKIPPED: the stored median (NAN if none) */
	char reason[512];      /* RECORDED: why it will not be timed */
	int compiled;          /* NVRTC ran in this call (0: the cubin was stored) */
	void *cubin;           /* TIME: malloc'd cubin */
	size_t cubin_size;
};

/*
 * Run the pipeline over the n variants vs of p; *out gets n candidates in
 * the same order (mta_cuda_cands_free). Returns MTA_OK when every candidate
 * got its state, or the status of what stopped the pipeline (no NVRTC, a
 * database failure), with nothing returned.
 */
int mta_cuda_prepare(const struct mta_cuda_prep *pp, const struct mta_problem *p,
		     const struct mta_variant *vs, size_t n, struct mta_cuda_cand **out);
void mta_cuda_cands_free(struct mta_cuda_cand *c, size_t n);

#endif
