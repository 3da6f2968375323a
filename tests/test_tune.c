/*
 * test_tune.c: the whole CPU pipeline, generate -> compile -> verify ->
 * time -> record -> pick -> run, plus resume after a killed run and two
 * tuners on one database.
 */
#include "tests/harness.h"
#include "tests/cpu_util.h"
#include "db/db.h"
#include "runtime/host.h"
#include "tests/fixtures.h"
#include "tuner/measure/check.h"
#include "tuner/measure/sample.h"
#include "tuner/tune/search.h"
#include "tuner/tune/tune.h"

#include <signal.h>
#include <sqlite3.h>
#include <sys/wait.h>
#include <unistd.h>

#define SMALL "h2kv1d8-pre2x3-hpre-post2x3-hc2-both-gn-gate-f32"

static void quick(struct mta_tune_opts *o, const char *db)
{
	mta_tune_defaults(o);
	o->db_path = db;
	o->T = 70;
	o->B = 2;
	o->reps = 2;
	o->top = 2;
	o->timeout_s = 60;
	o->threads = 2;
}

TEST(tune_records_every_variant_names_a_winner_and_the_runtime_runs_it)
{
	char db[512];
	struct mta_problem p;
	struct mta_tune_opts o;
	struct mta_tune_summary s;
	struct mta_variant *space;
	size_t n;
	mt_kcache();
	snprintf(db, sizeof db, "%s/t.db", mt_tmpdir());
	REQUIRE(mta_problem_from_key(SMALL, &p) == MTA_OK);
	REQUIRE(mta_variant_space(&p, MTA_BACKEND_CPU, &space, &n) == MTA_OK);
	free(space);
	/*
	 * A seeded random sample of 9: the same variants on the rerun below (auto's
	 * model may ask for one more variant when it resumes).
	 */
	n = n < 9 ? n : 9;
	quick(&o, db);
	o.strategy = MTA_TUNE_RANDOM;
	o.budget = 9;
	o.seed = 4242;
	CHECKF(mta_tune(&p, &o, &s) == MTA_OK, "%s", mta_last_error());
	CHECK_EQ_INT(s.total, (long long)n);
	CHECK_EQ_INT(s.tried, (long long)n);
	CHECK_EQ_INT(s.ok, (long long)n);
	CHECK(s.winner[0] && s.winner_ms > 0);
	CHECK_EQ_INT(mt_db_count(db, "SELECT count(*) FROM results WHERE status = 'ok' AND rel_err < 1e-5"),
		     (long long)n);
	CHECK_EQ_INT(mt_db_count(db, "SELECT count(*) FROM winners"), 1);

	/* the runtime picks that winner for T's bucket and its output matches the reference */
	mta_context *ctx;
	struct mta_pick k;
	REQUIRE(mta_context_create(&ctx, db, "cpu", 0) == MTA_OK);
	REQUIRE(mta_context_pick(ctx, &p, 2, 70, &k) == MTA_OK); /* tuned at B=2, T=70 */
	CHECK_EQ_INT(k.source, MTA_PICK_EXACT);
	CHECK_EQ_INT(k.rung, MTA_RUNG_DEVICE);
	CHECK(!strcmp(k.spec, s.winner));
	REQUIRE(mta_context_pick(ctx, &p, 2, 100, &k) == MTA_OK);
	CHECK_EQ_INT(k.source, MTA_PICK_EXACT); /* 100 shares 70's bucket, 128 */
	CHECK(!strcmp(k.spec, s.winner));
	REQUIRE(mta_context_pick(ctx, &p, 2, 1000, &k) == MTA_OK);
	CHECK_EQ_INT(k.source, MTA_PICK_NEAREST); /* nearest bucket */
	REQUIRE(mta_context_pick(ctx, &p, 1, 70, &k) == MTA_OK);
	CHECK_EQ_INT(k.source, MTA_PICK_NEAREST); /* B=1: the nearest B bucket is B=2's */
	CHECK(mta_context_pick(ctx, &p, 2, 1000, NULL) == MTA_EINVAL);
	struct mta_runner r = { .ctx = ctx };
	struct mta_check_opts co = { 2, 37, mt_seed(), 0 };
	struct mta_compare cmp;
	CHECKF(mta_check(&r, &p, &co, &cmp) == MTA_OK, "runtime output: %s", mta_last_error());
	CHECKF(cmp.rel_l2 < mta_tolerance(MTA_F32), "runtime output error %g", cmp.rel_l2);
	/* a problem never tuned runs its default variant */
	struct mta_problem q2;
	REQUIRE(mta_problem_from_key("h2kv1d8-both-f32", &q2) == MTA_OK);
	REQUIRE(mta_context_pick(ctx, &q2, 1, 70, &k) == MTA_OK);
	CHECK_EQ_INT(k.source, MTA_PICK_DEFAULT);
	CHECK_EQ_INT(k.rung, MTA_RUNG_NONE);
	mta_context_free(ctx);

	/* a second run resumes: nothing is measured again, the winner is re-timed */
	CHECKF(mta_tune(&p, &o, &s) == MTA_OK, "%s", mta_last_error());
	CHECK_EQ_INT(s.tried, 0);
	CHECK_EQ_INT(s.skipped, (long long)n);
	CHECK_EQ_INT(mt_db_count(db, "SELECT count(*) FROM results"), (long long)n);
}

/* Run sql on db (a test's own file), failing the test when it fails. */
static void exec_sql(const char *db, const char *sql)
{
	sqlite3 *h;
	char *err = NULL;
	REQUIRE(sqlite3_open(db, &h) == SQLITE_OK);
	CHECKF(sqlite3_exec(h, sql, NULL, NULL, &err) == SQLITE_OK, "%s: %s", sql, err);
	sqlite3_free(err);
	sqlite3_close(h);
}

/*
 * The backward tuned like the forward (tune --op bwd): its own variants,
 * even of the same spec as a forward one, each checked on every gradient
 * and timed, results and a winner of op bwd beside the forward's; a rerun
 * resumes; the runtime's training calls run the backward winner (a winner
 * that cannot be built fails them by name), falling back along the device
 * ladder and to the default backward variant as the forward does.
 */
TEST(tune_bwd_records_backward_winners_beside_the_forward_and_the_runtime_runs_them)
{
	char db[512], same[MTA_SPEC_MAX];
	struct mta_problem p;
	struct mta_tune_opts o;
	struct mta_tune_summary s, sf;
	struct mta_variant v;
	mt_kcache();
	snprintf(db, sizeof db, "%s/bwd.db", mt_tmpdir());
	REQUIRE(mta_problem_from_key(SMALL, &p) == MTA_OK);
	/* bq=32 on the backward default: a valid spec of both operations */
	REQUIRE(mta_variant_default_op(&p, MTA_BACKEND_CPU, MTA_OP_BWD, &v) == MTA_OK);
	v.bq = 32;
	REQUIRE(mta_variant_format(&v, same, sizeof same) == MTA_OK);
	const char *only[] = { same };
	quick(&o, db);
	o.only_specs = only;
	o.n_only = 1;
	o.seed = 77;
	CHECKF(mta_tune(&p, &o, &sf) == MTA_OK, "forward: %s", mta_last_error());
	o.op = MTA_OP_BWD;
	CHECKF(mta_tune(&p, &o, &s) == MTA_OK, "backward: %s", mta_last_error());
	CHECK_EQ_INT(s.total, 2);
	CHECK_EQ_INT(s.ok, 2);
	CHECK(s.winner[0] && s.winner_ms > 0);
	CHECK_EQ_INT(mt_db_count(db, "SELECT count(*) FROM variants WHERE op = 'bwd'"), 2);
	CHECK_EQ_INT(mt_db_count(db, "SELECT count(*) FROM variants WHERE op = 'fwd'"), 2);
	/* the two defaults (the backward's bq differs from the forward's) and bq=32 */
	struct mta_variant fd, bd;
	char fds[MTA_SPEC_MAX], bds[MTA_SPEC_MAX];
	REQUIRE(mta_variant_default(&p, MTA_BACKEND_CPU, &fd) == MTA_OK &&
		mta_variant_default_op(&p, MTA_BACKEND_CPU, MTA_OP_BWD, &bd) == MTA_OK);
	mta_variant_format(&fd, fds, sizeof fds);
	mta_variant_format(&bd, bds, sizeof bds);
	CHECK_EQ_INT(mt_db_count(db, "SELECT count(DISTINCT spec) FROM variants"),
		     2 + (strcmp(fds, bds) != 0));
	/* every backward result checked against the gradients' tolerance, rel_err recorded */
	CHECK_EQ_INT(mt_db_count(db, "SELECT count(*) FROM results r JOIN variants v ON v.id = "
				 "r.variant_id WHERE v.op = 'bwd' AND r.status = 'ok' AND "
				 "r.rel_err > 0 AND r.rel_err < 1e-4 AND r.T = 70 AND r.B = 2"), 2);
	CHECK_EQ_INT(mt_db_count(db, "SELECT count(*) FROM winners w JOIN variants v ON v.id = "
				 "w.variant_id WHERE w.op = v.op"), 2);
	CHECK_EQ_INT(mt_db_count(db, "SELECT count(*) FROM winners WHERE op = 'bwd' AND "
				 "rounds >= 5"), 1);
	/* a spec that changes what the backward does not read is refused, naming it */
	char other[MTA_SPEC_MAX];
	v.vec = 8; /* a valid forward variant, but vec is not the backward's */
	REQUIRE(mta_variant_format(&v, other, sizeof other) == MTA_OK);
	const char *bad[] = { other };
	o.only_specs = bad;
	CHECK(mta_tune(&p, &o, &s) == MTA_EINVAL);
	CHECK_STR_CONTAINS(mta_last_error(), "reads only bq and thr: vec must keep the default's "
			   "value 16 (got 8)");
	o.only_specs = only;
	/* a rerun resumes */
	CHECKF(mta_tune(&p, &o, &s) == MTA_OK, "%s", mta_last_error());
	CHECK_EQ_INT(s.tried, 0);
	CHECK_EQ_INT(s.skipped, 2);
	CHECK_EQ_INT(mt_db_count(db, "SELECT count(*) FROM results"), 4);

	/* best names each operation's winner and, with --op bwd, the backward's pick */
	char *out = NULL;
	int code = mt_sh(&out, "%s best --db %s --op bwd && %s best --db %s --problem " SMALL
			 " --seq 70 --batch 2 --op bwd", mt_bin(), db, mt_bin(), db);
	CHECKF(code == 0 && out && strstr(out, "bwd ") && !strstr(out, "fwd "), "best: %s", out);
	CHECK_STR_CONTAINS(out, s.winner);
	CHECK_STR_CONTAINS(out, "tuned for these T and B buckets");
	free(out);
	/* the runtime: each operation its own winner, the backward checked through it */
	mta_context *ctx;
	struct mta_pick k;
	REQUIRE(mta_context_create(&ctx, db, "cpu", 0) == MTA_OK);
	REQUIRE(mta_context_pick_op(ctx, &p, "bwd", 2, 70, &k) == MTA_OK);
	CHECK(k.source == MTA_PICK_EXACT && k.rung == MTA_RUNG_DEVICE && !strcmp(k.spec, s.winner));
	REQUIRE(mta_context_pick_op(ctx, &p, "fwd", 2, 70, &k) == MTA_OK);
	CHECK(k.source == MTA_PICK_EXACT && !strcmp(k.spec, sf.winner));
	CHECK(mta_context_pick_op(ctx, &p, "sideways", 2, 70, &k) == MTA_EINVAL);
	struct mta_runner r = { .ctx = ctx };
	struct mta_check_opts co = { 2, 41, mt_seed(), 0 };
	struct mta_compare cmp;
	CHECKF(mta_check_bwd(&r, &p, &co, &cmp) == MTA_OK, "runtime backward: %s", mta_last_error());
	mta_context_free(ctx);
	/* a backward winner that cannot be built: the training calls fail naming it */
	exec_sql(db, "INSERT INTO variants (problem_id, spec, op) SELECT problem_id, "
		 "'cpu:v2,bq=300', 'bwd' FROM variants LIMIT 1; UPDATE winners SET variant_id = "
		 "(SELECT id FROM variants WHERE spec = 'cpu:v2,bq=300') WHERE op = 'bwd'");
	REQUIRE(mta_context_create(&ctx, db, "cpu", 0) == MTA_OK);
	r.ctx = ctx;
	CHECK(mta_check_bwd(&r, &p, &co, NULL) == MTA_EINVAL);
	CHECK_STR_CONTAINS(mta_last_error(), "bq=300");
	CHECKF(mta_check(&r, &p, &co, NULL) == MTA_OK, "the forward: %s", mta_last_error());
	mta_context_free(ctx);
	/* another device of this architecture: its backward winner, rung ARCH */
	exec_sql(db, "UPDATE devices SET name = name || ' (another)'");
	REQUIRE(mta_context_create(&ctx, db, "cpu", 0) == MTA_OK);
	REQUIRE(mta_context_pick_op(ctx, &p, "bwd", 2, 70, &k) == MTA_OK);
	CHECK(k.rung == MTA_RUNG_ARCH && !strcmp(k.spec, "cpu:v2,bq=300"));
	mta_context_free(ctx);
	/* no backward winner: the default backward variant */
	exec_sql(db, "DELETE FROM winners WHERE op = 'bwd'");
	REQUIRE(mta_context_create(&ctx, db, "cpu", 0) == MTA_OK);
	REQUIRE(mta_context_pick_op(ctx, &p, "bwd", 2, 70, &k) == MTA_OK);
	CHECK(k.source == MTA_PICK_DEFAULT && !strcmp(k.spec, s.default_spec));
	r.ctx = ctx;
	CHECKF(mta_check_bwd(&r, &p, &co, NULL) == MTA_OK, "default backward: %s", mta_last_error());
	mta_context_free(ctx);
}

/*
 * The CUDA backward tuned on the emulator (tune --op bwd --backend cuda-emu):
 * its variants built and checked against the reference gradients, results
 * and a winner of op bwd under the emulator's device (cuda, arch emu); the
 * runtime of a cuda-emu context then runs the recorded winner, whichever it
 * is (a winner swapped for another variant is run and checked; one swapped
 * for an unbuildable spec makes the training calls fail naming it).
 */
TEST(tune_bwd_cuda_emu_records_a_winner_and_the_runtime_runs_it)
{
	char db[512], other[MTA_SPEC_MAX];
	struct mta_problem p;
	struct mta_tune_opts o;
	struct mta_tune_summary s;
	struct mta_variant v;
	mt_kcache();
	snprintf(db, sizeof db, "%s/bwd-emu.db", mt_tmpdir());
	REQUIRE(mta_problem_from_key(SMALL, &p) == MTA_OK);
	REQUIRE(mta_variant_default_op(&p, MTA_BACKEND_CUDA, MTA_OP_BWD, &v) == MTA_OK);
	v.bq = 8;
	v.warps = 8;
	v.nb = 2;
	REQUIRE(mta_variant_format(&v, other, sizeof other) == MTA_OK);
	const char *only[] = { other };
	quick(&o, db);
	o.backend = "cuda-emu";
	o.op = MTA_OP_BWD;
	o.T = 24;
	o.B = 1;
	o.min_rounds = 2;
	o.max_rounds = 3;
	o.rounds_budget_s = 5;
	o.only_specs = only;
	o.n_only = 1;
	CHECKF(mta_tune(&p, &o, &s) == MTA_OK, "%s", mta_last_error());
	CHECK_EQ_INT(s.total, 2);
	CHECK_EQ_INT(s.ok, 2);
	CHECK(s.winner[0] && strstr(s.winner, ",nb="));
	CHECK_EQ_INT(mt_db_count(db, "SELECT count(*) FROM results r JOIN variants v ON v.id = "
				 "r.variant_id WHERE v.op = 'bwd' AND r.status = 'ok' AND "
				 "r.rel_err > 0 AND r.rel_err < 1e-4 AND r.T = 24 AND r.B = 1"), 2);
	CHECK_EQ_INT(mt_db_count(db, "SELECT count(*) FROM winners w JOIN variants v ON v.id = "
				 "w.variant_id WHERE w.op = 'bwd' AND v.op = 'bwd'"), 1);
	CHECK_EQ_INT(mt_db_count(db, "SELECT count(*) FROM devices WHERE backend = 'cuda' AND "
				 "arch = 'emu'"), 1);
	/* the runtime: the recorded winner, then another variant put in its place */
	mta_context *ctx;
	struct mta_pick k;
	struct mta_runner r = { .ctx = NULL };
	struct mta_check_opts co = { 2, 24, mt_seed(), 1 };
	struct mta_compare cmp;
	REQUIRE(mta_context_create(&ctx, db, "cuda-emu", 0) == MTA_OK);
	REQUIRE(mta_context_pick_op(ctx, &p, "bwd", 1, 24, &k) == MTA_OK);
	CHECK(k.source == MTA_PICK_EXACT && k.rung == MTA_RUNG_DEVICE && !strcmp(k.spec, s.winner));
	mta_context_free(ctx);
	char sql[1024];
	snprintf(sql, sizeof sql, "UPDATE winners SET variant_id = (SELECT id FROM variants WHERE "
		 "spec = '%s' AND op = 'bwd') WHERE op = 'bwd'", other);
	exec_sql(db, sql);
	REQUIRE(mta_context_create(&ctx, db, "cuda-emu", 0) == MTA_OK);
	REQUIRE(mta_context_pick_op(ctx, &p, "bwd", 1, 24, &k) == MTA_OK);
	CHECK(!strcmp(k.spec, other));
	r.ctx = ctx;
	CHECKF(mta_check_bwd(&r, &p, &co, &cmp) == MTA_OK, "runtime backward: %s", mta_last_error());
	mta_context_free(ctx);
	/* a winner the backward's rules refuse: the training calls fail naming it */
	v.nb = 5000;
	REQUIRE(mta_variant_format(&v, other, sizeof other) == MTA_OK);
	snprintf(sql, sizeof sql, "INSERT INTO variants (problem_id, spec, op) SELECT problem_id, "
		 "'%s', 'bwd' FROM variants LIMIT 1; UPDATE winners SET variant_id = (SELECT id FROM "
		 "variants WHERE spec = '%s') WHERE op = 'bwd'", other, other);
	exec_sql(db, sql);
	REQUIRE(mta_context_create(&ctx, db, "cuda-emu", 0) == MTA_OK);
	r.ctx = ctx;
	CHECK(mta_check_bwd(&r, &p, &co, NULL) == MTA_EINVAL);
	CHECK_STR_CONTAINS(mta_last_error(), "nb=5000");
	mta_context_free(ctx);
	/* no GPU context matches the emulator's device: its winners stay the emulator's */
	exec_sql(db, "UPDATE devices SET name = 'NVIDIA H200', arch = 'sm_90'");
	REQUIRE(mta_context_create(&ctx, db, "cuda-emu", 0) == MTA_OK);
	REQUIRE(mta_context_pick_op(ctx, &p, "bwd", 1, 24, &k) == MTA_OK);
	CHECK(k.source == MTA_PICK_DEFAULT && !strcmp(k.spec, s.default_spec));
	mta_context_free(ctx);
}

/* tune --op: a bad value, and the forward on an untimed backend, are usage errors (status 2). */
TEST(cli_tune_op_is_checked)
{
	char *out = NULL;
	int code = mt_sh(&out, "%s tune --op sideways --seq 16", mt_bin());
	CHECK_EQ_INT(code, 2);
	CHECK_STR_CONTAINS(out, "mtatune tune: --op: unknown operation 'sideways' (expected fwd, "
			   "bwd or decode)");
	free(out);
	/* the emulator tunes the backward and decode only (tune.h, mta_tune_backend) */
	code = mt_sh(&out, "%s tune --backend cuda-emu --seq 16", mt_bin());
	CHECK_EQ_INT(code, 2);
	CHECK_STR_CONTAINS(out, "--backend: the cuda-emu backend cannot be tuned");
	free(out);
	/* and decode: the forward alone is refused, naming the backends that tune it */
	code = mt_sh(&out, "%s tune --op fwd --backend cuda-emu --seq 16", mt_bin());
	CHECK_EQ_INT(code, 2);
	CHECK_STR_CONTAINS(out, "--backend: the cuda-emu backend cannot be tuned");
	free(out);
	code = mt_sh(&out, "%s best --op decod", mt_bin());
	CHECK_EQ_INT(code, 2);
	CHECK_STR_CONTAINS(out, "unknown operation 'decod' (expected fwd, bwd or decode)");
	free(out);
}

/*
 * What the two decode tune tests share. decode_tune_init: SMALL, the
 * default decode variant of backend in t->v (its spec in t->def) and
 * tune options for op decode in a fresh database t->db (file under the
 * test's folder) on backend's tuner ("cpu" or "cuda-emu"); the test then
 * sets t->v to the other variant and adjusts t->o. decode_tune_run: tune
 * the default and t->v (its spec in t->other), both checked and recorded
 * at T=70 and t->o.B, with a winner for their buckets. t->ready says the
 * step got through (a REQUIRE failed otherwise).
 */
struct decode_tune {
	char db[512], def[MTA_SPEC_MAX], other[MTA_SPEC_MAX];
	const char *only[1];
	struct mta_problem p;
	struct mta_variant v;
	struct mta_tune_opts o;
	struct mta_tune_summary s;
	int ready;
};

static void decode_tune_init(struct decode_tune *t, int backend, const char *file)
{
	memset(t, 0, sizeof *t);
	mt_kcache();
	snprintf(t->db, sizeof t->db, "%s/%s", mt_tmpdir(), file);
	REQUIRE(mta_problem_from_key(SMALL, &t->p) == MTA_OK);
	REQUIRE(mta_variant_default_op(&t->p, backend, MTA_OP_DECODE, &t->v) == MTA_OK);
	REQUIRE(mta_variant_format(&t->v, t->def, sizeof t->def) == MTA_OK);
	quick(&t->o, t->db);
	t->o.backend = backend == MTA_BACKEND_CUDA ? "cuda-emu" : "cpu";
	t->o.op = MTA_OP_DECODE;
	t->ready = 1;
}

static void decode_tune_run(struct decode_tune *t)
{
	char sql[512];
	t->ready = 0;
	REQUIRE(mta_variant_format(&t->v, t->other, sizeof t->other) == MTA_OK);
	t->only[0] = t->other;
	t->o.only_specs = t->only;
	t->o.n_only = 1;
	CHECKF(mta_tune(&t->p, &t->o, &t->s) == MTA_OK, "decode on %s: %s", t->o.backend,
	       mta_last_error());
	CHECK_EQ_INT(t->s.total, 2);
	CHECK_EQ_INT(t->s.ok, 2);
	CHECK(t->s.winner[0]);
	snprintf(sql, sizeof sql, "SELECT count(*) FROM results r JOIN variants v ON v.id = "
		 "r.variant_id WHERE v.op = 'decode' AND r.status = 'ok' AND r.rel_err > 0 AND "
		 "r.rel_err < 1e-5 AND r.T = 70 AND r.B = %lld", (long long)t->o.B);
	CHECK_EQ_INT(mt_db_count(t->db, sql), 2);
	snprintf(sql, sizeof sql, "SELECT count(*) FROM winners w JOIN variants v ON v.id = "
		 "w.variant_id WHERE w.op = 'decode' AND v.op = 'decode' AND w.t_bucket = 128 AND "
		 "w.b_bucket = %lld", (long long)t->o.B);
	CHECK_EQ_INT(mt_db_count(t->db, sql), 1);
	t->ready = 1;
}

/* Make spec the decode winner of db; add: insert it as a decode variant first. */
static void decode_winner(const char *db, const char *spec, int add)
{
	char sql[1024];
	int n = 0;
	if (add)
		n = snprintf(sql, sizeof sql, "INSERT INTO variants (problem_id, spec, op) SELECT "
			     "problem_id, '%s', 'decode' FROM variants LIMIT 1; ", spec);
	snprintf(sql + n, sizeof sql - (size_t)n, "UPDATE winners SET variant_id = (SELECT id FROM "
		 "variants WHERE spec = '%s' AND op = 'decode') WHERE op = 'decode'", spec);
	exec_sql(db, sql);
}

/*
 * tune --op decode: the decode kernel's variants (bk and thr on the
 * default) checked by mta_check_decode, timed one token at cache length T,
 * recorded with op 'decode' and a winner for T's bucket; the runtime's
 * pick of op "decode" names it and a context's cache runs it (the
 * decoder's spec), checked against the forward through the harness.
 */
TEST(tune_decode_records_decode_winners_and_the_cache_runs_them)
{
	char bad[MTA_SPEC_MAX];
	struct decode_tune t;
	decode_tune_init(&t, MTA_BACKEND_CPU, "decode.db");
	REQUIRE(t.ready);
	CHECK_EQ_INT(t.v.bk, 128);
	t.v.bk = 64;
	t.v.threads = 1;
	t.o.seed = 78;
	decode_tune_run(&t);
	REQUIRE(t.ready);
	CHECK(t.s.winner_ms > 0);
	CHECK_EQ_INT(mt_db_count(t.db, "SELECT count(*) FROM variants WHERE op = 'decode'"), 2);
	CHECK_EQ_INT(mt_db_count(t.db, "SELECT count(*) FROM variants WHERE op <> 'decode'"), 0);
	/* a spec that changes what decode does not read is refused, naming it */
	t.v.vec = 8;
	REQUIRE(mta_variant_format(&t.v, bad, sizeof bad) == MTA_OK);
	const char *badv[] = { bad };
	t.o.only_specs = badv;
	CHECK(mta_tune(&t.p, &t.o, &t.s) == MTA_EINVAL);
	CHECK_STR_CONTAINS(mta_last_error(), "reads only bk and thr: vec must keep the default's "
			   "value 16 (got 8)");
	/* best shows the decode winner */
	char *out = NULL;
	int code = mt_sh(&out, "%s best --db %s --op decode", mt_bin(), t.db);
	CHECKF(code == 0 && out && strstr(out, "decode ") && strstr(out, t.s.winner), "best: %s",
	       out);
	free(out);
	/* the winner made the non-default variant, so that the cache's choice shows */
	decode_winner(t.db, t.other, 0);
	mta_context *ctx;
	struct mta_pick k;
	REQUIRE(mta_context_create(&ctx, t.db, "cpu", 0) == MTA_OK);
	REQUIRE(mta_context_pick_op(ctx, &t.p, "decode", 2, 70, &k) == MTA_OK);
	CHECK(k.source == MTA_PICK_EXACT && !strcmp(k.spec, t.other));
	mta_cache *c = NULL;
	REQUIRE(mta_cache_create_ctx(ctx, &t.p, 2, &c) == MTA_OK);
	const struct mta_decoder *d = mta_cache_decoder(c);
	CHECKF(d && d->spec && !strcmp(d->spec, t.other), "the cache runs %s, not the winner %s",
	       d && d->spec ? d->spec : "(none)", t.other);
	mta_cache_free(c);
	struct mta_runner r = { .ctx = ctx };
	struct mta_check_opts co = { 2, 70, mt_seed(), 0 };
	struct mta_compare cmp;
	CHECKF(mta_check_decode(&r, NULL, &t.p, &co, &cmp) == MTA_OK, "runtime decode: %s",
	       mta_last_error());
	mta_context_free(ctx);
	/* a decode winner the generator refuses (narrower than MTA_DBLOCK_MIN): the cache fails */
	char narrow[MTA_SPEC_MAX];
	t.v.vec = 16;
	t.v.bk = 16;
	REQUIRE(mta_variant_format(&t.v, narrow, sizeof narrow) == MTA_OK);
	decode_winner(t.db, narrow, 1);
	REQUIRE(mta_context_create(&ctx, t.db, "cpu", 0) == MTA_OK);
	r.ctx = ctx;
	CHECK(mta_check_decode(&r, NULL, &t.p, &co, NULL) != MTA_OK);
	CHECK_STR_CONTAINS(mta_last_error(), "bk=16: decode key blocks need at least 32 columns");
	mta_context_free(ctx);
	/* no decode winner: the default decode variant */
	exec_sql(t.db, "DELETE FROM winners WHERE op = 'decode'");
	REQUIRE(mta_context_create(&ctx, t.db, "cpu", 0) == MTA_OK);
	REQUIRE(mta_context_pick_op(ctx, &t.p, "decode", 2, 70, &k) == MTA_OK);
	CHECK(k.source == MTA_PICK_DEFAULT && !strcmp(k.spec, t.def));
	mta_context_free(ctx);
}

/*
 * tune --op decode --backend cuda-emu: the CUDA decode space (warps, bk:
 * gen/cuda/space.c) on the emulator, each variant checked by
 * mta_check_decode and recorded with op 'decode' under the emulator's
 * device, a winner for T's bucket; a context's cache runs the winner of
 * its length's bucket (the decoder's spec once its rows reach it), which
 * the harness then checks against the forward; a winner the decode rules
 * refuse fails the cache, naming it.
 */
TEST(tune_decode_cuda_emu_records_winners_and_the_cache_runs_them)
{
	struct decode_tune t;
	decode_tune_init(&t, MTA_BACKEND_CUDA, "decode-emu.db");
	REQUIRE(t.ready);
	CHECK(t.v.bk == 128 && t.v.warps == 4);
	t.v.bk = 32;
	t.v.warps = 2;
	t.o.B = 1;
	t.o.min_rounds = 2;
	t.o.max_rounds = 3;
	t.o.rounds_budget_s = 5;
	decode_tune_run(&t);
	REQUIRE(t.ready);
	CHECK_EQ_INT(mt_db_count(t.db, "SELECT count(*) FROM devices WHERE backend = 'cuda' AND "
				 "arch = 'emu'"), 1);
	/* the non-default variant as the winner, so that the cache's choice shows */
	decode_winner(t.db, t.other, 0);
	const struct mta_problem p = t.p;
	mta_context *ctx;
	struct mta_pick k;
	REQUIRE(mta_context_create(&ctx, t.db, "cuda-emu", 0) == MTA_OK);
	REQUIRE(mta_context_pick_op(ctx, &p, "decode", 1, 70, &k) == MTA_OK);
	CHECK(k.source == MTA_PICK_EXACT && k.rung == MTA_RUNG_DEVICE && !strcmp(k.spec, t.other));
	/* a cache whose rows reach T=70 runs the winner of that bucket */
	mta_cache *c = NULL;
	struct mta_tensor q, kt, vt, ot;
	struct mta_weights w;
	void *bq = mt_tensor(p.dtype, 1, 70, p.H, p.D, 0, &q);
	void *bk = mt_tensor(p.dtype, 1, 70, p.Hkv, p.D, 0, &kt);
	void *bv = mt_tensor(p.dtype, 1, 70, p.Hkv, p.D, 0, &vt);
	void *bo = mt_tensor(MTA_F32, 1, 70, p.H, p.D, 0, &ot);
	mt_weights(&p, &w);
	REQUIRE(mta_cache_create_ctx(ctx, &p, 1, &c) == MTA_OK);
	CHECKF(mta_decode(c, &q, &kt, &vt, &w, NULL, &ot) == MTA_OK, "%s", mta_last_error());
	const struct mta_decoder *d = mta_cache_decoder(c);
	CHECKF(d && d->spec && !strcmp(d->spec, t.other), "the cache runs %s, not the winner %s",
	       d && d->spec ? d->spec : "(none)", t.other);
	mta_cache_free(c);
	mt_weights_free(&w);
	free(bq);
	free(bk);
	free(bv);
	free(bo);
	struct mta_runner r = { .ctx = ctx };
	struct mta_check_opts co = { 1, 70, mt_seed(), 0 };
	struct mta_compare cmp;
	CHECKF(mta_check_decode(&r, NULL, &p, &co, &cmp) == MTA_OK, "runtime decode: %s",
	       mta_last_error());
	mta_context_free(ctx);
	/* a winner the decode rules refuse (16 warps: the kernel's registers do not fit) */
	char bad[MTA_SPEC_MAX];
	t.v.warps = 16;
	REQUIRE(mta_variant_format(&t.v, bad, sizeof bad) == MTA_OK);
	decode_winner(t.db, bad, 1);
	REQUIRE(mta_context_create(&ctx, t.db, "cuda-emu", 0) == MTA_OK);
	r.ctx = ctx;
	CHECK(mta_check_decode(&r, NULL, &p, &co, NULL) != MTA_OK);
	CHECK_STR_CONTAINS(mta_last_error(), "warps=16: a cuda decode thread of 16 warps");
	mta_context_free(ctx);
}

TEST(tune_random_strategy_respects_the_budget_and_keeps_the_default)
{
	char db[512];
	struct mta_problem p;
	struct mta_tune_opts o;
	struct mta_tune_summary s;
	mt_kcache();
	snprintf(db, sizeof db, "%s/r.db", mt_tmpdir());
	REQUIRE(mta_problem_from_key(SMALL, &p) == MTA_OK);
	quick(&o, db);
	o.strategy = MTA_TUNE_RANDOM;
	o.budget = 3;
	o.seed = 12345;
	CHECKF(mta_tune(&p, &o, &s) == MTA_OK, "%s", mta_last_error());
	CHECK_EQ_INT(s.total, 3);
	CHECK_EQ_INT(mt_db_count(db, "SELECT count(*) FROM results"), 3);
	CHECK(isfinite(s.default_ms)); /* the default is always among the sample */
}

TEST(tune_records_compile_failures_with_their_log_and_carries_on)
{
	char db[512], cache[600];
	struct mta_problem p;
	struct mta_tune_opts o;
	struct mta_tune_summary s;
	snprintf(db, sizeof db, "%s/c.db", mt_tmpdir());
	snprintf(cache, sizeof cache, "%s/cache", mt_tmpdir());
	setenv("MTATUNE_CACHE", cache, 1); /* nothing cached: the compiler must run */
	setenv("MTATUNE_CC", "/bin/false", 1);
	REQUIRE(mta_problem_from_key(SMALL, &p) == MTA_OK);
	quick(&o, db);
	int rc = mta_tune(&p, &o, &s);
	CHECK(rc == MTA_ECOMPILE);
	CHECK_STR_CONTAINS(mta_last_error(), "variants compiled, so nothing was tuned");
	CHECK(s.tried > 1);
	/* every variant screened was tried: a failure did not stop the run */
	CHECK_EQ_INT(s.tried, (long long)mta_search_plan(s.total > MTA_SEARCH_AUTO_ABOVE ?
							  MTA_TUNE_AUTO : MTA_TUNE_EXHAUSTIVE,
							  (size_t)s.total, 0));
	CHECK_EQ_INT(s.failed, s.tried);
	CHECK_EQ_INT(mt_db_count(db, "SELECT count(*) FROM results WHERE status = 'compile_failed' AND error LIKE '%%false%%'"), s.tried);
	CHECK_EQ_INT(mt_db_count(db, "SELECT count(*) FROM variants WHERE compile_status = 'failed'"), s.tried);
	unsetenv("MTATUNE_CC");
}

/* Start `mtatune tune` in the background; its pid. */
static pid_t spawn_tune(const char *db, const char *key, const char *log)
{
	pid_t pid = fork();
	if (pid == 0) {
		if (!freopen(log, "w", stdout) || !freopen(log, "a", stderr))
			_exit(99);
		execl(mt_bin(), "mtatune", "tune", "--db", db, "--problem", key, "--seq", "64",
		      "--reps", "2", "--top", "2", "--threads", "1", "--strategy", "random",
		      "--budget", "8", "--seed", "3", (char *)NULL);
		_exit(98);
	}
	return pid;
}

TEST(tune_killed_with_sigkill_resumes_without_loss_or_duplicates)
{
	char db[512], log[512];
	struct mta_problem p;
	struct mta_variant *space;
	size_t n;
	mt_kcache();
	snprintf(db, sizeof db, "%s/k.db", mt_tmpdir());
	snprintf(log, sizeof log, "%s/log", mt_tmpdir());
	REQUIRE(mta_problem_from_key(SMALL, &p) == MTA_OK);
	REQUIRE(mta_variant_space(&p, MTA_BACKEND_CPU, &space, &n) == MTA_OK);
	free(space);
	REQUIRE(n >= 8);
	n = 8; /* a seeded random sample: the same 8 variants before and after the kill */
	pid_t pid = spawn_tune(db, SMALL, log);
	/* kill it once a few results exist, before the end */
	long long have = 0;
	for (int i = 0; i < 600 && have < 2; i++) {
		usleep(50000);
		have = mt_db_count(db, "SELECT count(*) FROM results");
	}
	kill(pid, SIGKILL);
	int st;
	waitpid(pid, &st, 0);
	CHECK(WIFSIGNALED(st));
	long long before = mt_db_count(db, "SELECT count(*) FROM results");
	CHECKF(before >= 2 && before < (long long)n, "%lld of %zu results before the kill", before, n);
	char *out = NULL;
	int rc = mt_sh(&out, "%s tune --db %s --problem %s --seq 64 --reps 2 --top 2 --threads 1 "
		       "--strategy random --budget 8 --seed 3", mt_bin(), db, SMALL);
	CHECKF(rc == 0, "resume exited %d: %s", rc, out);
	char expect[64];
	snprintf(expect, sizeof expect, "%lld already recorded", before);
	CHECK_STR_CONTAINS(out, expect);
	CHECK_STR_CONTAINS(out, "verified:");
	free(out);
	CHECK_EQ_INT(mt_db_count(db, "SELECT count(*) FROM results"), (long long)n);
	CHECK_EQ_INT(mt_db_count(db, "SELECT count(*) FROM (SELECT DISTINCT device_id, variant_id, T, B FROM results)"),
		     (long long)n);
	CHECK_EQ_INT(mt_db_count(db, "SELECT count(*) FROM winners"), 1);
}

TEST(tune_two_tuners_on_one_database_lose_nothing)
{
	char db[512], log1[512], log2[512];
	const char *k2 = "h2kv2d8-pre2x3-left-f32";
	struct mta_problem p1, p2;
	struct mta_variant *space;
	size_t n1, n2;
	mt_kcache();
	snprintf(db, sizeof db, "%s/two.db", mt_tmpdir());
	snprintf(log1, sizeof log1, "%s/log1", mt_tmpdir());
	snprintf(log2, sizeof log2, "%s/log2", mt_tmpdir());
	REQUIRE(mta_problem_from_key(SMALL, &p1) == MTA_OK);
	REQUIRE(mta_problem_from_key(k2, &p2) == MTA_OK);
	REQUIRE(mta_variant_space(&p1, MTA_BACKEND_CPU, &space, &n1) == MTA_OK);
	free(space);
	REQUIRE(mta_variant_space(&p2, MTA_BACKEND_CPU, &space, &n2) == MTA_OK);
	free(space);
	pid_t a = spawn_tune(db, SMALL, log1), b = spawn_tune(db, k2, log2);
	int sa, sb;
	waitpid(a, &sa, 0);
	waitpid(b, &sb, 0);
	CHECKF(WIFEXITED(sa) && WEXITSTATUS(sa) == 0, "first tuner: status %d", sa);
	CHECKF(WIFEXITED(sb) && WEXITSTATUS(sb) == 0, "second tuner: status %d", sb);
	/* each measures its seeded sample of 8 (spawn_tune), or its whole space if smaller */
	CHECK_EQ_INT(mt_db_count(db, "SELECT count(*) FROM results"),
		     (long long)((n1 < 8 ? n1 : 8) + (n2 < 8 ? n2 : 8)));
	CHECK_EQ_INT(mt_db_count(db, "SELECT count(*) FROM winners"), 2);
	CHECK_EQ_INT(mt_db_count(db, "SELECT count(*) FROM devices"), 1);
}

TEST(cli_run_cpu_backend_matches_every_golden_case)
{
	char **cases = NULL;
	mt_kcache();
	REQUIRE((cases = mt_golden_cases()) != NULL);
	int seen = 0;
	for (char **c = cases; *c; c++, seen++) {
		char dir[1024], pad[16], extra[64] = "", *out = NULL;
		int layer;
		snprintf(dir, sizeof dir, "%s/%s", mt_golden_dir(), *c);
		REQUIRE(mt_golden_config(dir, pad, sizeof pad, &layer) == 0);
		if (layer >= 0)
			snprintf(extra, sizeof extra, "--layer-id %d", layer);
		int rc = mt_sh(&out, "%s run --backend cpu --db %s/none.db --inputs %s --out %s/o.npy "
			       "--pad-key %s %s --expected %s/expected.npy --tol 1e-5",
			       mt_bin(), mt_tmpdir(), dir, mt_tmpdir(), pad, extra, dir);
		CHECKF(rc == 0, "%s: exit %d: %s", *c, rc, out);
		CHECK_STR_CONTAINS(out, "default variant");
		free(out);
	}
	CHECK(seen >= 11);
	mt_golden_free(cases);
}

TEST(cli_run_cuda_emu_backend_matches_golden_cases)
{
	static const char *cases[][2] = { { "dev-full", "both" }, { "dev-kq-pre-left", "left" },
					  { "dev-head-post-lin", "both" } };
	mt_kcache();
	for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		char *out = NULL;
		int rc = mt_sh(&out, "%s run --backend cuda-emu --inputs %s/%s --out %s/o.npy "
			       "--pad-key %s --expected %s/%s/expected.npy --tol 1e-5", mt_bin(),
			       mt_golden_dir(), cases[i][0], mt_tmpdir(), cases[i][1], mt_golden_dir(),
			       cases[i][0]);
		CHECKF(rc == 0, "%s: exit %d: %s", cases[i][0], rc, out);
		CHECK_STR_CONTAINS(out, "emulated on the CPU");
		CHECK_STR_CONTAINS(out, "rel_l2");
		free(out);
	}
}

/*
 * Input sizes whose byte counts overflow size_t are refused, not wrapped
 * into a small allocation that the kernel or the reference then overruns
 * (B = T = 2^24 with H*D = 2^18 wrapped to 0 elements).
 */
TEST(sample_refuses_sizes_that_overflow)
{
	struct mta_problem p;
	struct mta_sample s = { 0 };
	REQUIRE(mta_problem_from_key("h256kv256d1024-both-f32", &p) == MTA_OK);
	CHECK_EQ_INT(mta_sample_make(&p, 1LL << 24, 1LL << 24, 1, &s), MTA_ENOMEM);
	CHECK_STR_CONTAINS(mta_last_error(), "too large");
	for (int i = 0; i < 10; i++)
		CHECK(s.mem[i] == NULL);
	/* an ordinary size still works */
	REQUIRE(mta_problem_from_key(SMALL, &p) == MTA_OK);
	CHECK_EQ_INT(mta_sample_make(&p, 2, 5, 1, &s), MTA_OK);
	CHECK(s.q.shape[0] == 2 && s.q.shape[1] == 5);
	mta_sample_free(&s);
}
