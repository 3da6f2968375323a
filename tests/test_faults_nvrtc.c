/*
 * test_faults_nvrtc.c: NVRTC failing. MTATUNE_NVRTC naming a file that is
 * not a library, a library that is not NVRTC, or nothing at all: the export
 * of a CUDA winner without a stored cubin, the compile API and the tuner's
 * compile pipeline all stop with MTA_ENODEV (exit status 1) and a message
 * naming what was tried. A CUDA source that NVRTC refuses (injected with
 * MTATUNE_TEST_FAULT=syntax, see gen/fault.h) is recorded as compile_failed
 * with NVRTC's log, and the other variants go on.
 */
#include "tests/harness.h"
#include "tuner/tune/prep.h"
#include "gen/cuda/cudagen.h"
#include "tests/fixtures.h"
#include "runtime/cuda/nvrtc.h"
#include "runtime/cuda/cuda.h"

#include <math.h>

#include <unistd.h>

#define SMALL "h2kv1d8-pre2x3-hpre-post2x3-hc2-both-gn-gate-f32"
#define TINY "h2kv1d32-gate-f32" /* quick to compile */

/* A text file named like the library: dlopen refuses it. */
static const char *fake_lib(void)
{
	static char path[600];
	snprintf(path, sizeof path, "%s/libnvrtc.so.13", mt_tmpdir());
	FILE *f = fopen(path, "w");
	if (f) {
		fputs("not a shared library\n", f);
		fclose(f);
	}
	return path;
}

TEST(fault_nvrtc_missing_or_not_nvrtc_export_says_enodev)
{
	char db[600], *out = NULL;
	snprintf(db, sizeof db, "%s/cuda.db", mt_tmpdir());
	mt_cuda_winner_db(db, SMALL);
	/* a file that is not a library; a library without NVRTC's symbols; nothing */
	const char *libs[] = { fake_lib(), "libm.so.6", "/nonexistent/libnvrtc.so" };
	for (int i = 0; i < 3; i++) {
		int rc = mt_sh(&out, "MTATUNE_NVRTC='%s' %s export --db '%s' --arch sm_90 --out "
			       "'%s/x%d'", libs[i], mt_bin(), db, mt_tmpdir(), i);
		CHECKF(rc == 1, "%s: exit %d\n%s", libs[i], rc, out);
		CHECK_STR_CONTAINS(out, "NVRTC is not available: could not load libnvrtc (tried ");
		CHECK_STR_CONTAINS(out, libs[i]);
		CHECK_STR_CONTAINS(out, "set MTATUNE_NVRTC to the path of libnvrtc.so");
		free(out);
		char dir[700];
		snprintf(dir, sizeof dir, "%s/x%d/mta_export.h", mt_tmpdir(), i);
		CHECKF(access(dir, F_OK) != 0, "%s: a failed export left %s", libs[i], dir);
	}
}

/* The compile API and the tuner's pipeline, in this process (NVRTC loads once). */
TEST(fault_nvrtc_not_a_library_compile_and_prepare_say_enodev)
{
	const char *lib = fake_lib();
	setenv("MTATUNE_NVRTC", lib, 1);
	int a, b;
	CHECK_EQ_INT(mta_nvrtc_version(&a, &b), MTA_ENODEV);
	CHECK_STR_CONTAINS(mta_last_error(), lib);
	struct mta_nvrtc_job j = { .source = "extern \"C\" __global__ void k() {}", .kernel = "k",
				   .arch = "sm_90" };
	CHECK_EQ_INT(mta_nvrtc_compile(&j), MTA_ENODEV);
	CHECK_STR_CONTAINS(j.message, "NVRTC is not available");
	mta_nvrtc_job_free(&j);
	char nv[16];
	CHECK_EQ_INT(mta_cuda_nvrtc_version(nv, sizeof nv), MTA_ENODEV);

	struct mta_problem p;
	struct mta_variant v;
	struct mta_db *db;
	struct mta_cand *cs = (void *)1;
	char path[600];
	REQUIRE(mta_problem_from_key(SMALL, &p) == MTA_OK);
	REQUIRE(mta_variant_default(&p, MTA_BACKEND_CUDA, &v) == MTA_OK);
	snprintf(path, sizeof path, "%s/p.db", mt_tmpdir());
	REQUIRE(mta_db_open(path, 0, &db) == MTA_OK);
	struct mta_db_device dev = { 0, "cuda", "test GPU", "sm_90", "13.0", "", "", 132 };
	struct mta_device_info info = { .backend = "cuda", .arch = "sm_90", .nvrtc = "13.0" };
	struct mta_prep pp = { db, &mta_backend_cuda, &info, 0, 0, 64, 1, "run", 1, MTA_OP_FWD };
	REQUIRE(mta_db_device_upsert(db, &dev, &pp.device_id) == MTA_OK);
	REQUIRE(mta_db_problem_upsert(db, SMALL, &pp.problem_id) == MTA_OK);
	CHECK_EQ_INT(mta_prepare(&pp, &p, &v, 1, &cs), MTA_ENODEV);
	CHECK_STR_CONTAINS(mta_last_error(), "NVRTC is not available");
	CHECK(cs == NULL);
	mta_db_close(db);
	CHECK_EQ_INT(mt_db_count(path, "SELECT count(*) FROM results"), 0);
}

/* One variant's source does not compile: recorded with NVRTC's log, the other goes on. */
TEST(fault_nvrtc_compile_error_recorded_with_its_log)
{
	struct mta_problem p;
	struct mta_variant vs[2];
	struct mta_db *db;
	struct mta_cand *cs = NULL;
	char path[600], nv[16], spec[2][MTA_SPEC_MAX];
	REQUIRE(mta_cuda_nvrtc_version(nv, sizeof nv) == MTA_OK);
	REQUIRE(mta_problem_from_key(TINY, &p) == MTA_OK);
	REQUIRE(mta_variant_parse("cuda:v1,bq=8,bk=32,hpb=1,warps=4,algo=0", &vs[0]) == MTA_OK);
	REQUIRE(mta_variant_parse("cuda:v1,bq=16,bk=32,hpb=1,warps=4,algo=0", &vs[1]) == MTA_OK);
	for (int i = 0; i < 2; i++)
		REQUIRE(mta_variant_format(&vs[i], spec[i], sizeof spec[i]) == MTA_OK);
	setenv("MTATUNE_TEST_FAULT", "syntax@bq=8,", 1);
	snprintf(path, sizeof path, "%s/c.db", mt_tmpdir());
	REQUIRE(mta_db_open(path, 0, &db) == MTA_OK);
	struct mta_db_device dev = { 0, "cuda", "test GPU", "sm_90", nv, "", "", 132 };
	struct mta_device_info info = { .backend = "cuda", .arch = "sm_90" };
	snprintf(info.nvrtc, sizeof info.nvrtc, "%s", nv);
	struct mta_prep pp = { db, &mta_backend_cuda, &info, 0, 0, 64, 1, "run", 2, MTA_OP_FWD };
	REQUIRE(mta_db_device_upsert(db, &dev, &pp.device_id) == MTA_OK);
	REQUIRE(mta_db_problem_upsert(db, TINY, &pp.problem_id) == MTA_OK);
	REQUIRE(mta_prepare(&pp, &p, vs, 2, &cs) == MTA_OK ||
		(mt_fail(__FILE__, __LINE__, "%s", mta_last_error()), 0));
	CHECK_EQ_INT(cs[0].state, MTA_PREP_RECORDED);
	CHECK_EQ_INT(cs[0].status, MTA_RESULT_COMPILE_FAILED);
	CHECK(cs[0].binary == NULL);
	CHECK_EQ_INT(cs[1].state, MTA_PREP_TIME);
	CHECK(cs[1].binary && cs[1].binary_size > 0);
	struct mta_db_variant row;
	REQUIRE(mta_db_variant_get(db, cs[0].vid, &row) == MTA_OK);
	CHECK_EQ_INT(row.compile.status, MTA_COMPILE_FAILED);
	CHECK_STR_CONTAINS(row.compile.log, "test-only fault injected by MTATUNE_TEST_FAULT");
	struct mta_db_result r;
	REQUIRE(mta_db_result_get(db, pp.device_id, cs[0].vid, 64, 1, &r) == MTA_OK);
	CHECK_EQ_INT(r.status, MTA_RESULT_COMPILE_FAILED);
	CHECK_STR_CONTAINS(r.error, "NVRTC could not compile for sm_90");
	CHECK_STR_CONTAINS(r.error, "test-only fault");
	CHECK(isnan(r.median_ms));
	mta_cands_free(cs, 2);
	mta_db_close(db);
	char *rows = mt_sql_rows(path, "SELECT v.spec, r.status FROM results r JOIN variants v ON "
				 "v.id = r.variant_id");
	char want[200];
	snprintf(want, sizeof want, "%s|compile_failed\n", spec[0]);
	CHECKF(!strcmp(rows, want), "results: %s", rows);
	free(rows);
}
