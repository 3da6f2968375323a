/*
 * test_cuda_drv.c: the CUDA driver path on a machine without one, and the
 * CUDA tuner's pre-timing pipeline (generate, NVRTC batch, compile
 * information, stored cubins, pruning), which needs only NVRTC.
 *
 * The driver tests run the CLI with MTATUNE_LIBCUDA pointing at a missing
 * file or a file that is not a library, so they hold on a GPU machine too;
 * cuda_runtime_context checks whichever case this machine is in (on a GPU:
 * one forward against the reference).
 */
#include "tests/harness.h"
#include "runtime/core/hash.h"
#include "runtime/cuda/cuda.h"
#include "tuner/tune/prep.h"
#include "gen/cuda/cudagen.h"
#include "db/db.h"
#include "tuner/measure/check.h"
#include "tuner/tune/tune_int.h"
#include "runtime/backend.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define SMALL "h2kv1d32-gate-f32"

/* Without a driver, `devices` says so plainly and exits 0. */
TEST(cuda_devices_without_driver)
{
	char *out = NULL;
	int st = mt_sh(&out, "MTATUNE_LIBCUDA=%s/none.so %s devices", mt_tmpdir(), mt_bin());
	CHECK_EQ_INT(st, 0);
	CHECK_STR_CONTAINS(out, "cpu: ");
	CHECK_STR_CONTAINS(out, "no CUDA driver or device found: no CUDA driver (libcuda.so.1) "
			   "found: cannot load");
	CHECK_STR_CONTAINS(out, "none.so");
	free(out);

	/* a file that is not a library */
	char path[1024];
	snprintf(path, sizeof path, "%s/fake.so", mt_tmpdir());
	FILE *f = fopen(path, "w");
	REQUIRE(f);
	fputs("not an ELF file\n", f);
	fclose(f);
	st = mt_sh(&out, "MTATUNE_LIBCUDA=%s %s devices", path, mt_bin());
	CHECK_EQ_INT(st, 0);
	CHECK_STR_CONTAINS(out, "no CUDA driver (libcuda.so.1) found: cannot load");
	CHECK_STR_CONTAINS(out, "fake.so");
	free(out);

	/* the toolkit's link stub loads but is no driver */
	st = mt_sh(&out, "MTATUNE_LIBCUDA=/usr/local/cuda/lib64/stubs/libcuda.so %s devices",
		   mt_bin());
	CHECK_EQ_INT(st, 0);
	CHECK_STR_CONTAINS(out, "no CUDA driver or device found");
	free(out);

	st = mt_sh(&out, "%s devices --bogus", mt_bin());
	CHECK_EQ_INT(st, 2);
	free(out);
}

static int count_devices(void *ctx, const struct mta_db_device *d)
{
	++*(int *)ctx;
	return 0;
}

/* tune and run on cuda fail with the driver's message, exit 1, database untouched. */
TEST(cuda_tune_run_without_driver)
{
	char db[1024], *out = NULL;
	struct mta_db *h = NULL;
	struct mta_db_device d = { 0, "cpu", "x", "y", "", "", "", 1 };
	int64_t id;
	int n = 0;

	snprintf(db, sizeof db, "%s/t.db", mt_tmpdir());
	REQUIRE(mta_db_open(db, 0, &h) == MTA_OK);
	REQUIRE(mta_db_device_upsert(h, &d, &id) == MTA_OK);
	mta_db_close(h);

	int st = mt_sh(&out, "MTATUNE_LIBCUDA=%s/none.so %s tune --backend cuda --problem " SMALL
		       " --seq 64 --db %s", mt_tmpdir(), mt_bin(), db);
	CHECK_EQ_INT(st, 1);
	CHECK_STR_CONTAINS(out, "mtatune tune: no CUDA driver (libcuda.so.1) found");
	free(out);
	st = mt_sh(&out, "MTATUNE_LIBCUDA=%s/none.so %s run --backend cuda --inputs %s/dev-gqa "
		   "--out %s/o.npy --db %s", mt_tmpdir(), mt_bin(), mt_golden_dir(), mt_tmpdir(), db);
	CHECK_EQ_INT(st, 1);
	CHECK_STR_CONTAINS(out, "backend cuda failed (ENODEV): no CUDA driver (libcuda.so.1) found");
	free(out);
	/* no database is created by a tune that cannot start */
	st = mt_sh(&out, "MTATUNE_LIBCUDA=%s/none.so %s tune --backend cuda --seq 64 --db %s/new.db; "
		   "test -e %s/new.db", mt_tmpdir(), mt_bin(), mt_tmpdir(), mt_tmpdir());
	CHECK(st != 0);
	free(out);

	REQUIRE(mta_db_open(db, MTA_DB_READONLY | MTA_DB_CHECK, &h) == MTA_OK);
	CHECK(mta_db_list_devices(h, count_devices, &n) == MTA_OK);
	CHECK_EQ_INT(n, 1);
	mta_db_close(h);
}

/* The library's own answer matches the machine; on a GPU one forward is checked. */
TEST(cuda_runtime_context)
{
	mta_context *ctx = NULL;
	int n = 0;
	int have = mta_cuda_device_count(&n) == MTA_OK;
	char msg[512];
	snprintf(msg, sizeof msg, "%s", mta_last_error());
	int rc = mta_context_create(&ctx, NULL, "cuda", 0);
	if (!have) {
		CHECK_EQ_INT(rc, MTA_ENODEV);
		CHECK(ctx == NULL);
		CHECK_STR_CONTAINS(mta_last_error(), msg);
		CHECK(strstr(msg, "no CUDA driver") || strstr(msg, "no CUDA device") ||
		      strstr(msg, "did not start"));
		return;
	}
	REQUIRE(rc == MTA_OK || (mt_fail(__FILE__, __LINE__, "%s", mta_last_error()), 0));
	struct mta_problem p;
	struct mta_runner r = { .ctx = ctx };
	struct mta_check_opts co = { 2, 77, mt_seed(), 0 };
	struct mta_compare cmp;
	REQUIRE(mta_problem_from_key("h4kv2d32-pre3x5-post3x5-hc2-both-gn-gate-f32", &p) == MTA_OK);
	CHECKF(mta_check(&r, &p, &co, &cmp) == MTA_OK, "%s", mta_last_error());
	CHECKF(cmp.rel_l2 < mta_tolerance(MTA_F32), "rel err %g", cmp.rel_l2);
	mta_context_free(ctx);
}

static int find_spec(const struct mta_variant *vs, size_t n, const char *spec)
{
	for (size_t i = 0; i < n; i++) {
		char s[MTA_SPEC_MAX];
		mta_variant_format(&vs[i], s, sizeof s);
		if (!strcmp(s, spec))
			return (int)i;
	}
	return -1;
}

/*
 * The pre-timing pipeline on a database: two variants compiled in one NVRTC
 * batch for sm_80, one pruned by the target's shared memory limit and
 * recorded, the other's cubin stored under its key and handed back to time;
 * a second pass reuses the stored cubin and stats without NVRTC and prunes
 * by registers; a compile that NVRTC refuses keeps its log.
 */
TEST(cuda_prepare_pipeline)
{
	struct mta_problem p;
	struct mta_variant *space = NULL, vs[2];
	struct mta_db *db = NULL;
	struct mta_cand *cs = NULL;
	struct mta_db_device dev = { 0, "cuda", "test GPU", "sm_80", "13.0", "", "", 108 };
	char path[1024], nv[16];
	size_t n = 0;

	REQUIRE(mta_cuda_nvrtc_version(nv, sizeof nv) == MTA_OK);
	dev.nvrtc = nv;
	REQUIRE(mta_problem_from_key(SMALL, &p) == MTA_OK);
	REQUIRE(mta_variant_space(&p, MTA_BACKEND_CUDA, &space, &n) == MTA_OK);
	int a = find_spec(space, n, "cuda:v1,bq=8,bk=32,hpb=1,warps=4,algo=0");
	int b = find_spec(space, n, "cuda:v1,bq=16,bk=32,hpb=2,warps=4,algo=0");
	REQUIRE(a >= 0 && b >= 0);
	vs[0] = space[a];
	vs[1] = space[b];
	free(space);
	size_t small = mta_cuda_smem_bytes(&p, &vs[0]), big = mta_cuda_smem_bytes(&p, &vs[1]);
	REQUIRE(small < big);

	snprintf(path, sizeof path, "%s/prep.db", mt_tmpdir());
	REQUIRE(mta_db_open(path, 0, &db) == MTA_OK);
	struct mta_device_info info = { .backend = "cuda", .arch = "sm_80",
					.smem_per_block = (int)((small + big) / 2),
					.regs_per_block = 65536, .max_threads = 1024 };
	snprintf(info.nvrtc, sizeof info.nvrtc, "%s", nv);
	struct mta_prep pp = { db, &mta_backend_cuda, &info, 0, 0, 256, 1, "test-run", 2, MTA_OP_FWD };
	REQUIRE(mta_db_device_upsert(db, &dev, &pp.device_id) == MTA_OK);
	REQUIRE(mta_db_problem_upsert(db, SMALL, &pp.problem_id) == MTA_OK);

	REQUIRE(mta_prepare(&pp, &p, vs, 2, &cs) == MTA_OK ||
		(mt_fail(__FILE__, __LINE__, "%s", mta_last_error()), 0));
	/* vs[0]: to time, compiled now, cubin stored under its key */
	CHECK_EQ_INT(cs[0].state, MTA_PREP_TIME);
	CHECK_EQ_INT(cs[0].compiled, 1);
	REQUIRE(cs[0].binary && cs[0].binary_size > 0);
	char *src = NULL, hash[17], compiler[32];
	struct mta_db_binary_key key;
	void *blob = NULL;
	size_t bn = 0;
	REQUIRE(mta_gen_cuda(&p, &vs[0], &src) == MTA_OK);
	mta_hash_hex(src, strlen(src), hash);
	free(src);
	mta_cuda_binary_key(hash, "sm_80", nv, compiler, &key);
	CHECK_STR_CONTAINS(key.compiler, "nvrtc-");
	REQUIRE(mta_db_binary_get(db, &key, &blob, &bn) == MTA_OK);
	CHECK(bn == cs[0].binary_size && !memcmp(blob, cs[0].binary, bn));
	free(blob);
	/* its compile information */
	struct mta_db_variant row;
	REQUIRE(mta_db_variant_get(db, cs[0].vid, &row) == MTA_OK);
	CHECK_EQ_INT(row.compile.status, MTA_COMPILE_OK);
	CHECK(!strcmp(row.compile.target, "sm_80"));
	CHECK(row.compile.registers > 0 && row.compile.registers <= 255);
	CHECK_EQ_INT(row.compile.spill_stores, 0);
	CHECK(row.compile.shared_bytes >= (int)small);
	CHECK_STR_CONTAINS(row.compile.log, "Function properties for mta_fwd");
	struct mta_db_result r;
	CHECK_EQ_INT(mta_db_result_get(db, pp.device_id, cs[0].vid, 256, 1, &r), MTA_ENOTFOUND);
	/* vs[1]: pruned for shared memory, recorded, no cubin handed out */
	CHECK_EQ_INT(cs[1].state, MTA_PREP_RECORDED);
	CHECK_EQ_INT(cs[1].status, MTA_RESULT_PRUNED);
	CHECK(cs[1].binary == NULL);
	CHECK_STR_CONTAINS(cs[1].reason, "shared memory");
	REQUIRE(mta_db_result_get(db, pp.device_id, cs[1].vid, 256, 1, &r) == MTA_OK);
	CHECK_EQ_INT(r.status, MTA_RESULT_PRUNED);
	CHECK_STR_CONTAINS(r.error, "pruned before timing");
	CHECK(isnan(r.median_ms));
	int regs = row.compile.registers;
	int64_t vid0 = cs[0].vid;
	mta_cands_free(cs, 2);

	/* Again: the pruned one is skipped; the other comes from the database. */
	REQUIRE(mta_prepare(&pp, &p, vs, 2, &cs) == MTA_OK);
	CHECK_EQ_INT(cs[0].state, MTA_PREP_TIME);
	CHECK_EQ_INT(cs[0].compiled, 0);
	CHECK(cs[0].binary_size == bn);
	CHECK_EQ_INT(cs[1].state, MTA_PREP_SKIPPED);
	CHECK_EQ_INT(cs[1].status, MTA_RESULT_PRUNED);
	mta_cands_free(cs, 2);

	/* A device with fewer registers per block: pruned from the stored stats alone. */
	struct mta_db_device small_dev = dev;
	small_dev.name = "register-starved GPU";
	REQUIRE(mta_db_device_upsert(db, &small_dev, &pp.device_id) == MTA_OK);
	info.regs_per_block = regs * 32;
	REQUIRE(mta_prepare(&pp, &p, vs, 1, &cs) == MTA_OK);
	CHECK_EQ_INT(cs[0].compiled, 0);
	CHECK_EQ_INT(cs[0].state, MTA_PREP_RECORDED);
	CHECK_EQ_INT(cs[0].status, MTA_RESULT_PRUNED);
	CHECK_STR_CONTAINS(cs[0].reason, "registers per block");
	mta_cands_free(cs, 1);

	/* NVRTC refuses the architecture: compile_failed, the log kept. */
	struct mta_db_device odd = dev;
	odd.name = "GPU of an architecture NVRTC does not know";
	odd.arch = "sm_99";
	REQUIRE(mta_db_device_upsert(db, &odd, &pp.device_id) == MTA_OK);
	snprintf(info.arch, sizeof info.arch, "sm_99");
	REQUIRE(mta_prepare(&pp, &p, vs, 1, &cs) == MTA_OK);
	CHECK_EQ_INT(cs[0].state, MTA_PREP_RECORDED);
	CHECK_EQ_INT(cs[0].status, MTA_RESULT_COMPILE_FAILED);
	CHECK_EQ_INT(cs[0].compiled, 1);
	REQUIRE(mta_db_variant_get(db, vid0, &row) == MTA_OK);
	CHECK_EQ_INT(row.compile.status, MTA_COMPILE_FAILED);
	CHECK_STR_CONTAINS(row.compile.log, "gpu-architecture");
	REQUIRE(mta_db_result_get(db, pp.device_id, vid0, 256, 1, &r) == MTA_OK);
	CHECK_EQ_INT(r.status, MTA_RESULT_COMPILE_FAILED);
	CHECK_STR_CONTAINS(r.error, "sm_99");
	mta_cands_free(cs, 1);
	mta_db_close(db);
}

/*
 * The prepared GPU run (bench/gpu_run.sh, `make gpu-check`) stops at once
 * where no GPU can be used, says why, and leaves a summary.json that says
 * so under $OUT.
 */
TEST(cuda_gpu_run_needs_gpu)
{
	char *out = NULL, path[1200];
	int st = mt_sh(&out, "OUT=%s/gpu-out MTATUNE=%s MTATUNE_LIBCUDA=%s/none.so sh "
		       "bench/gpu_run.sh", mt_tmpdir(), mt_bin(), mt_tmpdir());
	CHECK_EQ_INT(st, 1);
	CHECK_STR_CONTAINS(out, "FAIL: mtatune sees no CUDA device");
	free(out);
	snprintf(path, sizeof path, "%s/gpu-out/summary.json", mt_tmpdir());
	FILE *f = fopen(path, "r");
	REQUIRE(f);
	char buf[4096] = "";
	size_t n = fread(buf, 1, sizeof buf - 1, f);
	buf[n] = 0;
	fclose(f);
	CHECK_STR_CONTAINS(buf, "\"ok\": false");
	CHECK_STR_CONTAINS(buf, "\"step\": \"device\"");
}

/*
 * The CUDA tuning loop honours o->stop like the CPU one: raised before a
 * variant, it returns MTA_EINTR at once (here the one variant has a stored
 * result, so neither NVRTC nor a GPU is needed), without going on through
 * the rest of the item.
 */
TEST(cuda_tune_loop_stops_when_asked)
{
	struct mta_problem p;
	struct mta_variant v;
	struct mta_db *db = NULL;
	struct mta_db_device dev = { 0, "cuda", "test GPU", "sm_80", "13.0", "", "", 108 };
	struct mta_tune_opts o;
	struct mta_tune_summary s = { 0 };
	struct mta_measure m = { 0, 1.0, 1.0, 1.0, 1.0, 1 };
	volatile sig_atomic_t stop = 1;
	char path[1024], spec[MTA_SPEC_MAX], *src = NULL, hash[17];
	int64_t vid;

	REQUIRE(mta_problem_from_key(SMALL, &p) == MTA_OK);
	REQUIRE(mta_variant_default(&p, MTA_BACKEND_CUDA, &v) == MTA_OK);
	REQUIRE(mta_variant_format(&v, spec, sizeof spec) == MTA_OK);
	REQUIRE(mta_gen_cuda(&p, &v, &src) == MTA_OK);
	mta_hash_hex(src, strlen(src), hash);
	free(src);
	snprintf(path, sizeof path, "%s/stop.db", mt_tmpdir());
	REQUIRE(mta_db_open(path, 0, &db) == MTA_OK);
	mta_tune_defaults(&o);
	o.backend = "cuda";
	o.T = 256;
	o.stop = &stop;
	struct ctx c = { .p = &p, .o = &o, .s = &s, .be = &mta_backend_cuda, .db = db,
			 .best_ms = NAN, .dev = { .backend = "cuda", .arch = "sm_80", .nvrtc = "13.0" } };
	REQUIRE(mta_db_device_upsert(db, &dev, &c.dev_id) == MTA_OK);
	REQUIRE(mta_db_problem_upsert(db, SMALL, &c.prob) == MTA_OK);
	REQUIRE(mta_db_variant_upsert(db, c.prob, spec, hash, &vid) == MTA_OK);
	REQUIRE(mta_tune_put_result(db, c.dev_id, vid, o.T, o.B, "earlier", MTA_RESULT_OK, &m, "",
				    mta_tune_now()) == MTA_OK);

	CHECK_EQ_INT(mta_tune_loop(&c, &v, 1), MTA_EINTR);
	CHECK_STR_CONTAINS(mta_last_error(), "stopped after 0 of 1 variants");
	CHECK_EQ_INT(s.skipped, 0);
	/* not stopped: the same call goes through the variant (skipped, recorded before) */
	stop = 0;
	CHECK_EQ_INT(mta_tune_loop(&c, &v, 1), MTA_OK);
	CHECK_EQ_INT(s.skipped, 1);
	mta_db_close(db);
}
