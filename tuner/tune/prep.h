/*
 * prep.h: the tuner's work before any kernel runs, the same for every
 * backend (runtime/backend.h).
 *
 * For each candidate variant: generate its source, find or insert its
 * database row (a variant already measured for this device and size is
 * skipped), take its binary and compile information from the database when
 * the backend keeps binaries there and both are stored, else build it (all
 * builds in one batch on a thread pool), record the compile information
 * (registers, spills, shared memory, stack, time, and the log, kept on
 * failure too), store new binaries keyed by source hash, target, compiler
 * and options, and prune the variants the backend says exceed the device's
 * limits. Compile failures and pruned variants are recorded as results
 * (compile_failed, pruned) at once, and so are builds that failed for a
 * reason of the machine (no compiler, a full disk: env_error, which is not
 * compile information about the source and is measured again by a resumed
 * run, as is any variant whose stored result is env_error); what is left is
 * the list to check and time.
 *
 * Nothing here runs a kernel: for CUDA only NVRTC is needed, so it is
 * tested on machines without a GPU.
 */
#ifndef MTA_TUNE_PREP_H
#define MTA_TUNE_PREP_H

#include "runtime/backend.h"

struct mta_prep {
	struct mta_db *db;
	const struct mta_backend *be;
	const struct mta_device_info *dev; /* what is compiled for, and its limits */
	int64_t device_id, problem_id;
	int64_t T, B;          /* the size results are recorded at */
	const char *run_id;
	int threads;           /* compile threads, 0: all cores */
	int op;                /* MTA_OP_*: which kernel of each variant is generated and built */
};

enum {
	MTA_PREP_TIME = 0,     /* built, within limits: to be checked and timed */
	MTA_PREP_SKIPPED = 1,  /* a result for this device and size exists already */
	MTA_PREP_RECORDED = 2, /* compile failure, pruned or env_error: its result is written */
};

struct mta_cand {
	struct mta_variant v;
	char spec[MTA_SPEC_MAX];
	int64_t vid;
	int state;             /* MTA_PREP_* */
	int status;            /* SKIPPED: the stored result's; RECORDED: the one written */
	double old_ms;         /* SKIPPED: the stored median (NAN if none) */
	char reason[512];      /* RECORDED: why it will not be timed */
	int compiled;          /* built in this call (0: the binary was stored) */
	int build_rc;          /* the build's status (MTA_OK when not built) */
	void *binary;          /* TIME: malloc'd binary (backends that store them) */
	size_t binary_size;
};

/*
 * Run the pipeline over the n variants vs of p; *out gets n candidates in
 * the same order (mta_cands_free). Returns MTA_OK when every candidate got
 * its state, or the status of what stopped the pipeline (no compiler, a
 * database failure), with nothing returned.
 */
int mta_prepare(const struct mta_prep *pp, const struct mta_problem *p,
		const struct mta_variant *vs, size_t n, struct mta_cand **out);
void mta_cands_free(struct mta_cand *c, size_t n);

#endif
