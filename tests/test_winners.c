/*
 * test_winners.c: winners that are real. The paired rounds keep the default
 * when a challenger is the same kernel ("within noise") and never let a
 * slowed-down copy of the default win; the screening and the rounds time
 * the asked size (their medians agree), and kernels sharing the rounds'
 * device time and compute as they do alone; batch sizes get winners of their own;
 * the pick policy's rungs (this device, the same name under other versions,
 * the same architecture, the default) and buckets (T first, then B, exact,
 * then nearest); `best` shows the buckets, the evidence and the rung, as
 * text and CSV; the statistics of paired times.
 */
#include "tests/harness.h"
#include "tests/cpu_util.h"
#include "tests/fixtures.h"
#include "db/db.h"
#include "runtime/core/pick.h"
#include "runtime/host.h"
#include "tuner/measure/check.h"
#include "tuner/measure/stats.h"
#include "tuner/tune/tune.h"

#include <sqlite3.h>
#include <stdint.h>
#include <unistd.h>

#define KEY "h2kv2d16-pre2x3-both-f32"

/*
 * The default variant of KEY, and a copy of it that differs only in thr=2.
 * Tuned with two worker threads (o->threads), both kernels run two threads
 * and never look at their thr: the same computation, two sources.
 */
static void default_and_copy(char *def, char *copy)
{
	struct mta_problem p;
	struct mta_variant v;
	REQUIRE(mta_problem_from_key(KEY, &p) == MTA_OK);
	REQUIRE(mta_variant_default(&p, MTA_BACKEND_CPU, &v) == MTA_OK);
	REQUIRE(mta_variant_format(&v, def, MTA_SPEC_MAX) == MTA_OK);
	REQUIRE(v.threads == 0); /* all cores: 2 on the machines this runs on, or more */
	v.threads = 2;
	REQUIRE(mta_variant_format(&v, copy, MTA_SPEC_MAX) == MTA_OK);
}

static void quick(struct mta_tune_opts *o, const char *db, const char *const *only, int n)
{
	mta_tune_defaults(o);
	o->db_path = db;
	o->T = 64;
	o->B = 1;
	o->reps = 3;
	o->only_specs = only;
	o->n_only = n;
	o->rounds_budget_s = 4;
	o->timeout_s = 60;
	o->threads = 2;
}

/*
 * The same computation twice: whatever the screening said, the rounds find
 * no difference beyond noise and the default stays.
 */
TEST_TIMED(tune_identical_variants_end_within_noise_and_keep_the_default)
{
	char def[MTA_SPEC_MAX], copy[MTA_SPEC_MAX], db[600];
	default_and_copy(def, copy);
	const char *only[] = { copy };
	struct mta_problem p;
	struct mta_tune_opts o;
	struct mta_tune_summary s;
	REQUIRE(mta_problem_from_key(KEY, &p) == MTA_OK);
	mt_kcache();
	/*
	 * A 95% interval misses 1 one time in 40, half of those on the twin's
	 * side, and the machine drifts (a full run saw the twin called 0.93x,
	 * 0.88-0.98, under the sanitizer): as the command line's below, a second
	 * tune on a database of its own gets the last word. A tuner that really
	 * favoured the twin would be wrong both times.
	 */
	for (int attempt = 0; attempt < 2; attempt++) {
		snprintf(db, sizeof db, "%s/n%d.db", mt_tmpdir(), attempt);
		quick(&o, db, only, 1);
		REQUIRE(mta_tune(&p, &o, &s) == MTA_OK || (mt_fail(__FILE__, __LINE__, "%s",
								      mta_last_error()), 0));
		if (!s.significant && !strcmp(s.winner, def))
			break;
		fprintf(stderr, "    the twin was called faster once (ratio %.3f, %.3f-%.3f): "
			"tuning again\n", s.ch_ratio, s.ch_low, s.ch_high);
	}
	CHECK(s.rounds >= o.min_rounds && s.rounds <= o.max_rounds);
	CHECK(isfinite(s.ch_ratio) && s.ch_low <= s.ch_ratio && s.ch_ratio <= s.ch_high);
	CHECKF(!s.significant && !strcmp(s.winner, def), "the default's twin won: ratio %.3f "
	       "(%.3f-%.3f) over %d rounds", s.ch_ratio, s.ch_low, s.ch_high, s.rounds);
	/*
	 * The twin is never called faster: its interval reaches above 1 - margin.
	 * (Its low end may sit above 1: a 95% interval misses 1 one time in 40,
	 * more under a sanitizer on a loaded machine (CI saw 1.020-1.737), and a
	 * twin wrongly called slower only keeps the default, which is harmless.)
	 */
	CHECKF(s.ch_high > 1 - MTA_TUNE_MARGIN, "interval %.3f-%.3f", s.ch_low, s.ch_high);
	/* the winner row says so: the default, ratio 1, not significant, the rounds */
	char *rows = mt_sql_rows(db, "SELECT v.spec, w.ratio, w.significant, w.rounds > 0 FROM "
				 "winners w JOIN variants v ON v.id = w.variant_id");
	char want[300];
	snprintf(want, sizeof want, "%s|1.0|0|1\n", def);
	CHECKF(!strcmp(rows, want), "winners: %s", rows);
	free(rows);
	/*
	 * and the command line words it. A 95% interval misses 1 one time in 40,
	 * half of those on the twin's side, and the machine's drift makes it
	 * more (CI and a full run each saw the twin called 1.10-1.14x faster
	 * once): so a second tune, on a database of its own, gets the last word.
	 * A tuner that really favoured the twin would be wrong both times.
	 */
	char *out = NULL;
	int rc = 0;
	for (int attempt = 0; attempt < 2; attempt++) {
		free(out);
		out = NULL;
		rc = mt_sh(&out, "MTATUNE_CACHE=build/kcache %s tune --problem " KEY " --seq 64 "
			   "--reps 3 --threads 2 --variant %s --rounds-budget 4 --db %s/cli%d.db -q",
			   mt_bin(), copy, mt_tmpdir(), attempt);
		if (rc || strstr(out, "the default stays"))
			break;
		fprintf(stderr, "    the twin was called faster once (a 95%% interval's miss); "
				"tuning again:\n%s", out);
	}
	CHECKF(rc == 0, "exit %d: %s", rc, out);
	CHECK_STR_CONTAINS(out, "the default stays"); /* "within noise", or rarely "the default
						       * is faster" */
	CHECK_STR_CONTAINS(out, "95% CI");
	free(out);
}

/*
 * The screening and the paired rounds time the same size: the default's
 * screening median and its rounds median, measured seconds apart in one
 * tune, agree within a factor of 3 (the machine drifts 1.5-2x). At T=6144,
 * B=1 the work is quadratic in T; the tuner once handed the screening
 * B=T, T=B (a batch of 6144 sequences of T=1, linear in T: 8x too fast
 * here, 25 against 200 ms), so it ranked variants at a size nobody asked
 * for and recorded those times as T=6144.
 */
TEST_TIMED(tune_screening_and_rounds_time_the_same_size)
{
	char def[MTA_SPEC_MAX], copy[MTA_SPEC_MAX], db[600];
	default_and_copy(def, copy);
	snprintf(db, sizeof db, "%s/size.db", mt_tmpdir());
	const char *only[] = { copy };
	struct mta_problem p;
	struct mta_tune_opts o;
	struct mta_tune_summary s;
	REQUIRE(mta_problem_from_key(KEY, &p) == MTA_OK);
	mt_kcache();
	quick(&o, db, only, 1);
	o.T = 6144;
	REQUIRE(mta_tune(&p, &o, &s) == MTA_OK || (mt_fail(__FILE__, __LINE__, "%s",
							      mta_last_error()), 0));
	REQUIRE(s.rounds >= o.min_rounds && isfinite(s.default_ms));
	char sql[400];
	snprintf(sql, sizeof sql, "SELECT r.T, r.B, r.median_ms FROM results r JOIN variants v ON "
		 "v.id = r.variant_id WHERE r.status = 'ok' AND v.spec = '%s'", def);
	char *rows = mt_sql_rows(db, sql);
	long long T = 0, B = 0;
	double screen = NAN;
	CHECKF(sscanf(rows, "%lld|%lld|%lf", &T, &B, &screen) == 3 && T == 6144 && B == 1,
	       "the default's screening row: %s", rows);
	CHECKF(screen > s.default_ms / 3 && screen < s.default_ms * 3,
	       "the default screened at %.3f ms but ran %.3f ms in %d paired rounds at T=6144, B=1",
	       screen, s.default_ms, s.rounds);
	free(rows);
}

/*
 * The paired rounds as the tuner's child runs them: kernels of two families
 * (v1 and v2, workspaces of different layouts) on one device, so on one
 * pool of threads and workspaces. Each runner's rounds median agrees with
 * its own timing alone within a factor of 3, and after the rounds each
 * still matches the float64 reference (mta_check on that device).
 */
TEST_TIMED(paired_rounds_on_one_device_time_and_compute_like_each_kernel_alone)
{
	const char *spec[2] = { NULL, "cpu:v1,bq=96,bk=128,hpb=0,vec=16" };
	char def[MTA_SPEC_MAX], copy[MTA_SPEC_MAX];
	default_and_copy(def, copy);
	spec[0] = def;
	struct mta_problem p;
	struct mta_device *dev = NULL;
	struct mta_runner r[2] = { { &mta_backend_cpu, NULL, NULL, NULL },
				   { &mta_backend_cpu, NULL, NULL, NULL } };
	const int64_t T = 2048;
	REQUIRE(mta_problem_from_key(KEY, &p) == MTA_OK);
	mt_kcache();
	REQUIRE(mta_backend_cpu.open(0, 2, &dev) == MTA_OK);
	for (int i = 0; i < 2; i++) {
		struct mta_variant v;
		r[i].dev = dev;
		REQUIRE(mta_variant_parse(spec[i], &v) == MTA_OK);
		REQUIRE(mta_backend_cpu.load(dev, NULL, &p, &v, NULL, 0, &r[i].k) == MTA_OK ||
			(mt_fail(__FILE__, __LINE__, "%s", mta_last_error()), 0));
	}
	struct mta_timing alone[2];
	for (int i = 0; i < 2; i++)
		REQUIRE(mta_time(&r[i], &p, 1, T, 11, 1, 3, &alone[i]) == MTA_OK);
	struct mta_rounds *ro = malloc(sizeof *ro);
	struct mta_rounds_opts opts = { .warmup = 1, .min_rounds = 5, .max_rounds = 5,
					.budget_s = 60, .width = 0 };
	REQUIRE(ro && mta_time_rounds(r, 2, &p, 1, T, 12, &opts, ro) == MTA_OK);
	REQUIRE(ro->rounds == 5);
	for (int i = 0; i < 2; i++) {
		double tmp[MTA_ROUNDS_MAX];
		memcpy(tmp, ro->ms[i], sizeof(double) * 5);
		double med = mta_median(tmp, 5);
		CHECKF(med > alone[i].median_ms / 3 && med < alone[i].median_ms * 3,
		       "%s: %.3f ms alone, %.3f ms in the rounds at T=%lld", spec[i],
		       alone[i].median_ms, med, (long long)T);
	}
	for (int i = 0; i < 2; i++) {
		struct mta_check_opts co = { .B = 1, .T = T, .seed = 13, .strided = 0 };
		struct mta_compare cmp;
		int rc = mta_check(&r[i], &p, &co, &cmp);
		CHECKF(rc == MTA_OK, "%s after the rounds: %s", spec[i], mta_last_error());
	}
	free(ro);
	for (int i = 0; i < 2; i++)
		mta_backend_cpu.unload(r[i].k);
	mta_backend_cpu.close(dev);
}

/*
 * The default's twin made slower (MTATUNE_TEST_FAULT=slow: it sleeps a
 * third of its own run time after each call): it never wins, and the rounds
 * see it slower with confidence.
 */
TEST_TIMED(tune_a_slowed_variant_never_wins)
{
	char def[MTA_SPEC_MAX], copy[MTA_SPEC_MAX], db[600];
	default_and_copy(def, copy);
	const char *only[] = { copy };
	struct mta_problem p;
	struct mta_tune_opts o;
	struct mta_tune_summary s;
	REQUIRE(mta_problem_from_key(KEY, &p) == MTA_OK);
	mt_kcache();
	char fault[MTA_SPEC_MAX + 8];
	snprintf(fault, sizeof fault, "slow@%s", copy);
	setenv("MTATUNE_TEST_FAULT", fault, 1);
	for (int i = 0; i < 2; i++) {
		snprintf(db, sizeof db, "%s/s%d.db", mt_tmpdir(), i);
		quick(&o, db, only, 1);
		REQUIRE(mta_tune(&p, &o, &s) == MTA_OK || (mt_fail(__FILE__, __LINE__, "%s",
								      mta_last_error()), 0));
		CHECKF(!strcmp(s.winner, def), "run %d: the slowed variant won (%s)", i, s.winner);
		CHECKF(s.ch_ratio > 1 && s.ch_high > 1, "run %d: the slowed variant's ratio %.3f "
		       "(%.3f-%.3f) is not above 1", i, s.ch_ratio, s.ch_low, s.ch_high);
	}
	unsetenv("MTATUNE_TEST_FAULT");
}

/* Tuned at B=1 and at B=4: two winners, kept apart by their B bucket; picks follow B. */
TEST(tune_batch_sizes_have_winners_of_their_own)
{
	char def[MTA_SPEC_MAX], copy[MTA_SPEC_MAX], db[600];
	default_and_copy(def, copy);
	snprintf(db, sizeof db, "%s/b.db", mt_tmpdir());
	const char *only[] = { copy };
	struct mta_problem p;
	struct mta_tune_opts o;
	struct mta_tune_summary s;
	REQUIRE(mta_problem_from_key(KEY, &p) == MTA_OK);
	mt_kcache();
	int64_t Bs[2] = { 1, 4 };
	/*
	 * The two are twins, so either may win a bucket (a 95% interval misses
	 * one time in 40, and the machine drifts): what is checked is that each
	 * B has a winner of its own, and that the table shows the one B=4 chose.
	 */
	char won4[MTA_SPEC_MAX];
	for (int i = 0; i < 2; i++) {
		quick(&o, db, only, 1);
		o.B = Bs[i];
		REQUIRE(mta_tune(&p, &o, &s) == MTA_OK);
		REQUIRE(!strcmp(s.winner, def) || !strcmp(s.winner, copy));
	}
	snprintf(won4, sizeof won4, "%s", s.winner);
	CHECK_EQ_INT(mt_db_count(db, "SELECT count(*) FROM winners"), 2);
	CHECK_EQ_INT(mt_db_count(db, "SELECT count(DISTINCT b_bucket) FROM winners"), 2);
	CHECK_EQ_INT(mt_db_count(db, "SELECT count(*) FROM winners WHERE b_bucket = 4 AND B = 4"),
		     1);
	mta_context *ctx;
	struct mta_pick k;
	REQUIRE(mta_context_create(&ctx, db, "cpu", 0) == MTA_OK);
	REQUIRE(mta_context_pick(ctx, &p, 3, 64, &k) == MTA_OK);
	CHECK(k.source == MTA_PICK_EXACT && k.b_bucket == 4 && k.t_bucket == 64);
	REQUIRE(mta_context_pick(ctx, &p, 1, 64, &k) == MTA_OK);
	CHECK(k.source == MTA_PICK_EXACT && k.b_bucket == 1);
	REQUIRE(mta_context_pick(ctx, &p, 64, 64, &k) == MTA_OK);
	CHECK(k.source == MTA_PICK_NEAREST && k.b_bucket == 4);
	mta_context_free(ctx);
	/* best shows B, and its CSV has the header and one row per winner */
	char *out = NULL;
	CHECK(mt_sh(&out, "%s best --db %s", mt_bin(), db) == 0);
	CHECK_STR_CONTAINS(out, "B<=");
	CHECK_STR_CONTAINS(out, "speed-up (95% CI)");
	free(out);
	CHECK(mt_sh(&out, "%s best --db %s --format csv", mt_bin(), db) == 0);
	CHECK_STR_CONTAINS(out, "device,op,problem,seq,batch,variant,ms,speedup,ci_low,ci_high,"
			   "rounds,significant\n");
	int lines = 0;
	for (const char *c = out; *c; c++)
		lines += *c == '\n';
	CHECK_EQ_INT(lines, 3);
	char row[200];
	/* the variant is one quoted field: specs hold commas */
	snprintf(row, sizeof row, ",fwd," KEY ",64,4,\"%s\",", won4);
	CHECK_STR_CONTAINS(out, row);
	free(out);
	CHECK(mt_sh(&out, "%s best --db %s --problem " KEY " --seq 64 --batch 4", mt_bin(), db) == 0);
	CHECK_STR_CONTAINS(out, "tuned for these T and B buckets (T<=64, B<=4; tuned on this device)");
	free(out);
}

/* The pure policy: rung first, then T bucket, then B bucket, ties to the larger. */
TEST(pick_policy_orders_rungs_then_t_then_b)
{
	int source, rung;
	CHECK_EQ_INT(mta_pick_winner(NULL, 0, 1, 100, &source, &rung), -1);
	CHECK(source == MTA_PICK_DEFAULT && rung == MTA_RUNG_NONE);
	const struct mta_pick_cand c[] = {
		{ MTA_RUNG_ARCH, 128, 1 },   /* 0: exact buckets, but another device */
		{ MTA_RUNG_NAME, 1024, 1 },  /* 1 */
		{ MTA_RUNG_NAME, 128, 8 },   /* 2 */
		{ MTA_RUNG_NAME, 32, 1 },    /* 3 */
	};
	/* the best rung present (NAME) wins over the exact buckets of ARCH */
	CHECK_EQ_INT(mta_pick_winner(c, 4, 1, 100, &source, &rung), 2);
	CHECK(source == MTA_PICK_NEAREST && rung == MTA_RUNG_NAME);
	/* T before B: at B=8, T=1000 the exact T bucket wins over the exact B bucket */
	CHECK_EQ_INT(mta_pick_winner(c, 4, 8, 1000, &source, &rung), 1);
	/* a tie in T distance goes to the larger T bucket: 128 and 32 are both 1 from 64 */
	CHECK_EQ_INT(mta_pick_winner(c + 2, 2, 8, 64, &source, &rung), 0);
	CHECK_EQ_INT(mta_pick_winner(c, 1, 1, 100, &source, &rung), 0);
	CHECK(source == MTA_PICK_EXACT && rung == MTA_RUNG_ARCH);
	CHECK_EQ_INT(mta_t_bucket(0), 1);
	CHECK_EQ_INT(mta_t_bucket(3), 4);
}

/*
 * Each rung in a database: winners of three devices related to this machine
 * (itself; its name with another compiler; another name of the same arch) and
 * one of another arch. The context picks this device's, then, as those go,
 * the next rung's; never the other arch's; then the default.
 */
TEST(pick_rungs_device_name_arch_default)
{
	char db[600];
	struct mta_db *h;
	struct mta_db_device me, name, arch, other;
	int64_t id[4], prob, var[4];
	static const char *specs[4] = { "cpu:v1,bq=32,bk=64,hpb=0,vec=8,thr=0,algo=0",
					"cpu:v1,bq=64,bk=64,hpb=0,vec=8,thr=0,algo=0",
					"cpu:v1,bq=96,bk=64,hpb=0,vec=8,thr=0,algo=0",
					"cpu:v1,bq=32,bk=128,hpb=0,vec=16,thr=0,algo=0" };
	snprintf(db, sizeof db, "%s/r.db", mt_tmpdir());
	mta_device_cpu(&me);
	name = me;
	name.compiler = "some other cc 1.0";
	arch = me;
	arch.name = "Another CPU of this ISA";
	other = me;
	other.name = "A CPU of another ISA";
	other.arch = "riscv64";
	const struct mta_db_device *devs[4] = { &me, &name, &arch, &other };
	REQUIRE(mta_db_open(db, 0, &h) == MTA_OK);
	REQUIRE(mta_db_problem_upsert(h, KEY, &prob) == MTA_OK);
	for (int i = 0; i < 4; i++) {
		REQUIRE(mta_db_device_upsert(h, devs[i], &id[i]) == MTA_OK);
		REQUIRE(mta_db_variant_upsert(h, prob, specs[i], "", &var[i]) == MTA_OK);
		struct mta_db_winner w = { .device_id = id[i], .problem_id = prob, .variant_id = var[i],
					   .T = 64, .B = 1, .time_ms = 1 };
		REQUIRE(mta_db_winner_set(h, &w) == MTA_OK);
	}
	mta_db_close(h);
	struct mta_problem p;
	REQUIRE(mta_problem_from_key(KEY, &p) == MTA_OK);
	static const int want_rung[4] = { MTA_RUNG_DEVICE, MTA_RUNG_NAME, MTA_RUNG_ARCH, MTA_RUNG_NONE };
	for (int i = 0; i < 4; i++) {
		mta_context *ctx;
		struct mta_pick k;
		REQUIRE(mta_context_create(&ctx, db, "cpu", 0) == MTA_OK);
		REQUIRE(mta_context_pick(ctx, &p, 1, 64, &k) == MTA_OK);
		CHECKF(k.rung == want_rung[i], "step %d: rung %d, expected %d", i, k.rung, want_rung[i]);
		if (i < 3)
			CHECKF(!strcmp(k.spec, specs[i]) && k.source == MTA_PICK_EXACT, "step %d: %s",
			       i, k.spec);
		else
			CHECKF(k.source == MTA_PICK_DEFAULT && strcmp(k.spec, specs[3]), "step %d: %s", i,
			       k.spec);
		mta_context_free(ctx);
		/* the best shown rung's winner goes; the next rung answers */
		char sql[200];
		snprintf(sql, sizeof sql, "DELETE FROM winners WHERE device_id = %lld", (long long)id[i]);
		sqlite3 *h3;
		REQUIRE(sqlite3_open(db, &h3) == SQLITE_OK);
		CHECK(sqlite3_exec(h3, sql, NULL, NULL, NULL) == SQLITE_OK);
		sqlite3_close(h3);
	}
	char *out = NULL;
	CHECK(mt_sh(&out, "%s best --db %s --problem " KEY " --seq 64", mt_bin(), db) == 0);
	CHECK_STR_CONTAINS(out, "default (nothing tuned applies here)");
	free(out);
}

/* Paired ratios: the geometric mean, an interval that holds it, determinism. */
TEST(paired_ratio_estimates_and_brackets)
{
	double a[40], b[40];
	for (int i = 0; i < 40; i++) {
		double drift = 1 + 0.5 * sin(i * 0.7); /* the machine's speed wanders */
		b[i] = 10 * drift * (1 + 0.02 * mt_uniform());
		a[i] = 0.9 * 10 * drift * (1 + 0.02 * mt_uniform());
	}
	struct mta_ratio r, r2;
	REQUIRE(mta_paired_ratio(a, b, 40, &r) == MTA_OK);
	CHECKF(fabs(r.ratio - 0.9) < 0.02 && r.lo < r.ratio && r.ratio < r.hi && r.hi < 0.95 &&
	       r.lo > 0.85, "ratio %.4f (%.4f-%.4f)", r.ratio, r.lo, r.hi);
	REQUIRE(mta_paired_ratio(a, b, 40, &r2) == MTA_OK);
	CHECK(r.lo == r2.lo && r.hi == r2.hi);
	/* identical series: ratio 1, a point interval */
	REQUIRE(mta_paired_ratio(b, b, 40, &r) == MTA_OK);
	CHECK(r.ratio == 1 && r.lo == 1 && r.hi == 1);
	/* lost rounds are skipped; too few is an error */
	a[3] = NAN;
	b[5] = -1;
	REQUIRE(mta_paired_ratio(a, b, 40, &r) == MTA_OK);
	CHECK_EQ_INT(r.n, 38);
	CHECK_EQ_INT(mta_paired_ratio(a, b, 1, &r), MTA_EINVAL);
	double x[5] = { 5, 1, 4, 2, 3 };
	CHECK(mta_median(x, 5) == 3);
	CHECK(mta_median(x, 4) == 2.5);
}
