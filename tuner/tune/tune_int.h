/*
 * tune_int.h: the tuning loop's state and helpers, shared by tuner/tune/
 * tune.c (the loop, re-timing) and tuner/tune/prep.c (the pre-timing
 * pipeline), and used by the tests that drive the loop directly.
 */
#ifndef MTA_TUNE_TUNE_INT_H
#define MTA_TUNE_TUNE_INT_H

#include "db/db.h"
#include "tuner/tune/tune.h"

struct ctx {
	const struct mta_problem *p;
	const struct mta_tune_opts *o;
	struct mta_tune_summary *s;
	const struct mta_backend *be;
	struct mta_device_info dev;  /* the device tuned (identified in a child) */
	struct mta_db *db;
	int64_t dev_id, prob;
	char best[MTA_SPEC_MAX];
	double best_ms;
	int compile_failed;          /* variants of this run that did not compile */
	char first_cerr[512];        /* the first of their messages */
	int env_failed;              /* variants the machine failed (env_error) */
	int env_status;              /* the first such failure's MTA_E* */
	char first_eerr[512];        /* and its message */
};

/* Wall-clock seconds (Unix time). */
double mta_tune_now(void);
/*
 * The result status of a measurement's (or a build's) return code. A
 * failure of the machine rather than of the kernel (MTA_ENOMEM, MTA_EIO,
 * MTA_ENODEV: out of memory, a full disk, no compiler or device) is
 * MTA_RESULT_ENV_ERROR, which a resumed run measures again.
 */
int mta_tune_status_of(int rc, int timed_out);
/* 1 for the statuses mta_tune_status_of makes env_error. */
int mta_tune_env_failure(int rc);
/* Write one result (m NULL: nothing measured) for (dev, vid, T, B). */
int mta_tune_put_result(struct mta_db *db, int64_t dev, int64_t vid, int64_t T, int64_t B,
			const char *run_id, int status, const struct mta_measure *m,
			const char *err, double started);

/*
 * The loop over candidates vs[0..n) of c: prepare them (prep.h), then check
 * and time each survivor, recording each result. MTA_EINTR (message: i of
 * the n variants done) once c->o->stop is raised, checked before each
 * variant.
 */
int mta_tune_loop(struct ctx *c, const struct mta_variant *vs, size_t n);

#endif
