/*
 * tune_int.h: the tuning loop's state and helpers, shared by tuner/tune.c
 * (the loop, the CPU path, re-timing) and tuner/tune_cuda.c (the CUDA path).
 */
#ifndef MTA_TUNE_INT_H
#define MTA_TUNE_INT_H

#include "cuda.h"
#include "db.h"
#include "tune.h"

struct ctx {
	const struct mta_problem *p;
	const struct mta_tune_opts *o;
	struct mta_tune_summary *s;
	struct mta_db *db;
	int64_t dev, prob;
	char best[MTA_SPEC_MAX];
	double best_ms;
	struct mta_cuda_device cuda; /* CUDA: the device tuned (probed in a child) */
	char nvrtc[16];              /* CUDA: NVRTC version */
	int compile_failed;          /* variants of this run that did not compile */
	char first_cerr[512];        /* the first of their messages */
};

/* Wall-clock seconds (Unix time). */
double mta_tune_now(void);
/* The result status of a measurement's return code. */
int mta_tune_status_of(int rc, int timed_out);
/* Tell the progress callback, if any. */
void mta_tune_report(struct ctx *c, int done, int total, const char *spec, const char *status,
		     double ms, const char *phase);
/* Remember spec as the best so far when ms beats it. */
void mta_tune_note_best(struct ctx *c, const char *spec, double ms);
/* Write one result (m NULL: nothing measured) for (dev, vid, T, B). */
int mta_tune_put_result(struct mta_db *db, int64_t dev, int64_t vid, int64_t T, int64_t B,
			const char *run_id, int status, const struct mta_measure *m,
			const char *err, double started);
/* The same for the device and size of the run of c. */
int mta_tune_record(struct ctx *c, int64_t vid, int status, const struct mta_measure *m,
		    const char *err, double started);

/*
 * MTA_EINTR (message: i of the n variants done) once o->stop is raised,
 * else MTA_OK. The loops call it before each variant and once more with
 * i == n, so that a stop also comes before the re-timing.
 */
int mta_tune_stopped(struct ctx *c, size_t i, size_t n);

/* CUDA: probe the device in a child, so this process never initialises CUDA. */
int mta_tune_cuda_probe(int index, double timeout_s, struct mta_cuda_device *d);
/* CUDA: the pre-timing pipeline over vs, then each survivor measured and recorded. */
int mta_tune_cuda_loop(struct ctx *c, const struct mta_variant *vs, size_t n);
/* CUDA: measure one variant with its stored cubin (for re-timing). */
int mta_tune_cuda_measure(struct ctx *c, const struct mta_variant *v, struct mta_measure *m,
			  int *timed_out);

#endif
