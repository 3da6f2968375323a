/* test_grid.c: the sweep grid format (tuner/sweep/grid.c, docs/grid.md). */
#include "tests/harness.h"
#include "runtime/core/error.h"
#include "tuner/sweep/grid.h"

#include <time.h>

static int parse(const char *text, struct mta_grid *g)
{
	return mta_grid_parse(text, strlen(text), "g.txt", g);
}

TEST(grid_expands_lists_and_ranges_in_a_fixed_order)
{
	struct mta_grid g;
	const char *text =
		"# a grid\n"
		"\n"
		"problem h2kv1d8-pre2x3-both h2kv2d8-left   # two keys\n"
		"seq 32 48..64+16\t256..1024*2 32\n"
		"batch 1 2\n"
		"dtype f32 bf16\n"
		"seq 2048\n";
	REQUIRE(parse(text, &g) == MTA_OK);
	CHECK_EQ_INT(g.nkeys, 4);
	CHECK(!strcmp(g.keys[0], "h2kv1d8-pre2x3-both-f32"));
	CHECK(!strcmp(g.keys[1], "h2kv1d8-pre2x3-both-bf16"));
	CHECK(!strcmp(g.keys[2], "h2kv2d8-left-f32"));
	CHECK(!strcmp(g.keys[3], "h2kv2d8-left-bf16"));
	/* seq: 32 48 64 256 512 1024 2048 (the repeated 32 dropped) */
	static const int64_t seq[] = { 32, 48, 64, 256, 512, 1024, 2048 };
	CHECK_EQ_INT(g.n, 4 * 2 * 7);
	for (size_t i = 0; i < g.n && i < 56; i++) {
		CHECK_EQ_INT(g.items[i].T, seq[i % 7]);
		CHECK_EQ_INT(g.items[i].B, 1 + (int64_t)(i / 7 % 2));
		CHECK_EQ_INT(g.items[i].problem, i / 14);
	}
	mta_grid_free(&g);
}

TEST(grid_defaults_batch_one_and_each_keys_own_dtype)
{
	struct mta_grid g;
	REQUIRE(parse("problem h2kv1d8-bf16 h2kv1d8 h2kv1d8-f32\nseq 5..7", &g) == MTA_OK);
	CHECK_EQ_INT(g.nkeys, 2); /* h2kv1d8 and h2kv1d8-f32 are one problem */
	CHECK(!strcmp(g.keys[0], "h2kv1d8-both-bf16"));
	CHECK(!strcmp(g.keys[1], "h2kv1d8-both-f32"));
	CHECK_EQ_INT(g.n, 6);
	CHECK_EQ_INT(g.items[0].B, 1);
	CHECK_EQ_INT(g.items[2].T, 7);
	mta_grid_free(&g);
	/* the buffer need not end with a NUL: only len bytes are read */
	const char *s = "problem h2kv1d8\nseq 16 99999";
	REQUIRE(mta_grid_parse(s, strlen(s) - 6, "g.txt", &g) == MTA_OK);
	CHECK_EQ_INT(g.n, 1);
	CHECK_EQ_INT(g.items[0].T, 16);
	mta_grid_free(&g);
}

/*
 * op is an axis (inside the problems, outside batch and seq); without it
 * every item is the forward, numbered as before; a bad value is named.
 */
TEST(grid_op_is_an_axis_of_forward_and_backward_items)
{
	struct mta_grid g;
	REQUIRE(parse("problem h2kv1d8 h2kv2d8\nop fwd bwd fwd\nbatch 1 2\nseq 32 64", &g) ==
		MTA_OK);
	CHECK_EQ_INT(g.nkeys, 2);
	CHECK_EQ_INT(g.n, 2 * 2 * 2 * 2);
	for (size_t i = 0; i < g.n && i < 16; i++) {
		CHECK_EQ_INT(g.items[i].problem, i / 8);
		CHECK_EQ_INT(g.items[i].op, i / 4 % 2 ? MTA_OP_BWD : MTA_OP_FWD);
		CHECK_EQ_INT(g.items[i].B, 1 + (int64_t)(i / 2 % 2));
		CHECK_EQ_INT(g.items[i].T, i % 2 ? 64 : 32);
	}
	mta_grid_free(&g);
	REQUIRE(parse("problem h2kv1d8\nbatch 1 2\nseq 32 64", &g) == MTA_OK);
	CHECK_EQ_INT(g.n, 4);
	for (size_t i = 0; i < g.n; i++)
		CHECK_EQ_INT(g.items[i].op, MTA_OP_FWD);
	mta_grid_free(&g);
	REQUIRE(parse("problem h2kv1d8\nop bwd\nseq 32", &g) == MTA_OK);
	CHECK(g.n == 1 && g.items[0].op == MTA_OP_BWD);
	mta_grid_free(&g);
	REQUIRE(parse("problem h2kv1d8\nop decode fwd\nseq 32", &g) == MTA_OK);
	CHECK(g.n == 2 && g.items[0].op == MTA_OP_DECODE && g.items[1].op == MTA_OP_FWD);
	mta_grid_free(&g);
	CHECK(parse("problem h2kv1d8\nseq 32\nop fwd sideways", &g) == MTA_EFORMAT);
	CHECK_STR_CONTAINS(mta_last_error(), "g.txt:3:8: expected an operation (fwd, bwd or "
			   "decode), got 'sideways'");
	CHECK(parse("problem h2kv1d8\nseq 32\nop", &g) == MTA_EFORMAT);
	CHECK_STR_CONTAINS(mta_last_error(), "g.txt:3:1: 'op' needs at least one value");
}

TEST(grid_errors_name_file_line_column_and_what_was_expected)
{
	static const struct {
		const char *text, *msg;
	} bad[] = {
		{ "problem h2kv1d8\nseq 32 x4\n", "g.txt:2:8: expected a seq value: N, A..B" },
		{ "sq 32\n", "g.txt:1:1: 'sq' is not a grid keyword (expected problem, seq" },
		{ "problem nope\nseq 1", "g.txt:1:9: 'nope' is not a problem key" },
		{ "problem h2kv1d8\nseq 64..32", "g.txt:2:5: expected a seq value" },
		{ "problem h2kv1d8\nseq 1..9*1", "M >= 2; got '1..9*1'" },
		{ "problem h2kv1d8\nseq 1..9+", "got '1..9+'" },
		{ "problem h2kv1d8\nseq 0", "got '0'" },
		{ "problem h2kv1d8\nseq 16777217", "in 1..16777216" },
		{ "problem h2kv1d8\nseq 8\nbatch -1", "g.txt:3:7: expected a batch value" },
		{ "problem h2kv1d8\nseq 8\ndtype f64", "g.txt:3:7: expected a dtype (f32, bf16 or f16), got 'f64'" },
		{ "problem h2kv1d8\n  seq   # nothing\n", "g.txt:2:3: 'seq' needs at least one value" },
		{ "seq 8\n", "g.txt:2:1: end of the grid without a 'problem' line" },
		{ "problem h2kv1d8\n", "without a 'seq' line" },
		{ "problem h2kv1d8\nseq 1..5000", "makes the list longer than 4096 values" },
		{ "problem h2kv1d8\nseq 1..4000\nbatch 1..300", "the grid has 1200000 items, more than" },
	};
	for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
		struct mta_grid g;
		int rc = parse(bad[i].text, &g);
		CHECKF(rc == MTA_EFORMAT, "case %zu: rc %d", i, rc);
		CHECK_STR_CONTAINS(mta_last_error(), bad[i].msg);
		CHECK(g.n == 0 && g.items == NULL && g.keys == NULL);
	}
	struct mta_grid g;
	static const char nul[] = "problem h2kv1d8\nseq 8\0 9\n";
	CHECK(mta_grid_parse(nul, sizeof nul - 1, "g.txt", &g) == MTA_EFORMAT);
	CHECK_STR_CONTAINS(mta_last_error(), "g.txt:2:6: unexpected NUL byte");
}

TEST(grid_load_reads_a_file_and_names_one_it_cannot_read)
{
	char path[600];
	struct mta_grid g;
	snprintf(path, sizeof path, "%s/g.txt", mt_tmpdir());
	FILE *f = fopen(path, "w");
	REQUIRE(f);
	fputs("problem h4kv2d16-pre3x5-hpre\r\nseq 100\r\nbatch 3\r\n", f); /* CRLF lines too */
	fclose(f);
	REQUIRE(mta_grid_load(path, &g) == MTA_OK);
	CHECK_EQ_INT(g.n, 1);
	CHECK(!strcmp(g.keys[0], "h4kv2d16-pre3x5-hpre-both-f32"));
	CHECK_EQ_INT(g.items[0].B, 3);
	mta_grid_free(&g);
	snprintf(path, sizeof path, "%s/none.txt", mt_tmpdir());
	CHECK(mta_grid_load(path, &g) == MTA_EIO);
	CHECK_STR_CONTAINS(mta_last_error(), "none.txt");
}

/* Mutated grids never crash the parser (a cheap in-suite fuzz; ASan watches). */
TEST(grid_parser_survives_random_mutations)
{
	const char *seed = "problem h2kv1d8-pre2x3-both h4kv4d8\nseq 8..64*2 100\nbatch 1 2\n"
			   "dtype bf16 # c\n";
	size_t n = strlen(seed);
	char buf[256];
	int ok = 0;
	for (int it = 0; it < 3000; it++) {
		memcpy(buf, seed, n);
		int edits = 1 + (int)((mt_uniform() + 1) * 3);
		for (int e = 0; e < edits; e++) {
			size_t at = (size_t)((mt_uniform() + 1) / 2 * (double)n) % n;
			buf[at] = (char)(int)((mt_uniform() + 1) * 128);
		}
		struct mta_grid g;
		int rc = mta_grid_parse(buf, n, "fuzz", &g);
		CHECKF(rc == MTA_OK || rc == MTA_EFORMAT, "rc %d: %s", rc, mta_last_error());
		if (rc == MTA_OK) {
			ok++;
			CHECK(g.n >= 1 && g.n <= MTA_GRID_MAX_ITEMS);
			for (size_t i = 0; i < g.n; i++)
				CHECK(g.items[i].problem < g.nkeys && g.items[i].T >= 1 && g.items[i].B >= 1);
		}
		mta_grid_free(&g);
	}
	CHECK(ok > 0);
}

/*
 * Repeats are dropped in O(1) each: 8000 repeated ranges of 4096 values
 * (32 M values read) parse in a fraction of a second; dropping them by a
 * scan of the list took 1.2 s per 500 ranges at -O2 (about 20 s here, and
 * ten times that under ASan); tests/fuzz/crashes/grid/ keeps such an input.
 */
TEST(grid_many_repeated_ranges_parse_quickly)
{
	size_t n = 0, cap = 80000;
	char *text = malloc(cap);
	REQUIRE(text);
	n += (size_t)snprintf(text, cap, "problem h2kv1d8\nseq");
	while (n + 16 < cap)
		n += (size_t)snprintf(text + n, cap - n, " 1..4096");
	struct mta_grid g;
	struct timespec t0, t1;
	clock_gettime(CLOCK_MONOTONIC, &t0);
	CHECK(mta_grid_parse(text, n, "g.txt", &g) == MTA_OK);
	clock_gettime(CLOCK_MONOTONIC, &t1);
	double s = (double)(t1.tv_sec - t0.tv_sec) + 1e-9 * (double)(t1.tv_nsec - t0.tv_nsec);
	CHECKF(s < 5, "%.1f s", s);
	CHECK_EQ_INT(g.n, 4096);
	CHECK_EQ_INT(g.items[4095].T, 4096);
	mta_grid_free(&g);
	free(text);
}

/*
 * Kernel sizes as axes: each of cq, ck, cq2, ck2 replaces that size in every
 * problem, nested problems x dtypes x cq x ck x cq2 x ck2 (ck2 fastest).
 */
TEST(grid_kernel_sizes_expand_over_the_base_problem)
{
	struct mta_grid g;
	const char *text =
		"problem h4kv4d32-pre3x5-post3x5-both\n"
		"cq 2 3 4   # query sizes\n"
		"ck 3..7+2\n"
		"ck2 5 3 5\n"
		"seq 64 128\n"
		"batch 1 2\n";
	REQUIRE(parse(text, &g) == MTA_OK);
	CHECK_EQ_INT(g.nkeys, 3 * 3 * 2);
	CHECK_EQ_INT(g.n, 3 * 3 * 2 * 2 * 2);
	static const int cq[] = { 2, 3, 4 }, ck[] = { 3, 5, 7 }, ck2[] = { 5, 3 };
	for (size_t k = 0; k < g.nkeys && k < 18; k++) {
		char want[MTA_KEY_MAX];
		snprintf(want, sizeof want, "h4kv4d32-pre%dx%d-post3x%d-both-f32", cq[k / 6],
			 ck[k / 2 % 3], ck2[k % 2]);
		CHECKF(!strcmp(g.keys[k], want), "key %zu: %s, expected %s", k, g.keys[k], want);
	}
	/* the items: keys x batches x seqs, as without kernel axes */
	CHECK_EQ_INT(g.items[5].problem, 1);
	CHECK_EQ_INT(g.items[5].B, 1);
	CHECK_EQ_INT(g.items[5].T, 128);
	CHECK_EQ_INT(g.items[6].B, 2);
	mta_grid_free(&g);

	/* axes apply to every problem and dtype; a size equal to the base's is not repeated,
	 * and bases that differ only in a size an axis replaces give the same keys once */
	REQUIRE(parse("problem h2kv1d8-pre2x3-left h2kv2d8-pre5x3-left h2kv1d8-pre4x9-left\n"
		      "dtype bf16 f32\nck 3 4\nseq 8\n", &g) == MTA_OK);
	static const char *const keys[] = {
		"h2kv1d8-pre2x3-left-bf16", "h2kv1d8-pre2x4-left-bf16",
		"h2kv1d8-pre2x3-left-f32", "h2kv1d8-pre2x4-left-f32",
		"h2kv2d8-pre5x3-left-bf16", "h2kv2d8-pre5x4-left-bf16",
		"h2kv2d8-pre5x3-left-f32", "h2kv2d8-pre5x4-left-f32",
		"h2kv1d8-pre4x3-left-bf16", "h2kv1d8-pre4x4-left-bf16",
		"h2kv1d8-pre4x3-left-f32", "h2kv1d8-pre4x4-left-f32",
	};
	CHECK_EQ_INT(g.nkeys, 12);
	for (size_t k = 0; k < g.nkeys && k < 12; k++)
		CHECKF(!strcmp(g.keys[k], keys[k]), "key %zu: %s, expected %s", k, g.keys[k], keys[k]);
	mta_grid_free(&g);
	REQUIRE(parse("problem h2kv1d8-pre2x3-both h2kv1d8-pre4x3-both\ncq 1..2\nseq 8\n", &g) ==
		MTA_OK);
	CHECK_EQ_INT(g.nkeys, 2);
	CHECK(!strcmp(g.keys[0], "h2kv1d8-pre1x3-both-f32"));
	CHECK(!strcmp(g.keys[1], "h2kv1d8-pre2x3-both-f32"));
	mta_grid_free(&g);
	/* without kernel axes nothing changes: each key keeps its sizes */
	REQUIRE(parse("problem h2kv1d8-pre2x3-post4x5-both\nseq 8\n", &g) == MTA_OK);
	CHECK_EQ_INT(g.nkeys, 1);
	CHECK(!strcmp(g.keys[0], "h2kv1d8-pre2x3-post4x5-both-f32"));
	mta_grid_free(&g);
}

TEST(grid_kernel_sizes_a_problem_cannot_take_are_errors_naming_the_line)
{
	static const struct {
		const char *text, *msg;
	} bad[] = {
		/* the kernel to resize is absent: the keyword's first line, and what was expected */
		{ "problem h4kv4d32-pre3x5-both\nseq 8\nck2 3 5\n",
		  "g.txt:3:1: 'ck2' sets a size of the post-softmax key-query kernel, but problem "
		  "'h4kv4d32-pre3x5-both-f32' (line 1) has no such kernel (expected problem keys "
		  "with a post<cq2>x<ck2> part)" },
		{ "seq 8\ncq 2\nproblem h4kv4d32-pre3x5-both h4kv4d32-both\n",
		  "g.txt:2:1: 'cq' sets a size of the pre-softmax key-query kernel, but problem "
		  "'h4kv4d32-both-f32' (line 3) has no such kernel (expected problem keys with a "
		  "pre<cq>x<ck> part)" },
		/* a size the padding cannot take: the value's own line and column */
		{ "problem h4kv4d32-pre3x5-both\nseq 8\nck 3\nck 5 3..7\n",
		  "g.txt:4:6: ck 4 does not fit problem 'h4kv4d32-pre3x5-both-f32' (line 1): "
		  "pre-softmax key-query kernel 3x4: pad_key both needs an odd key size ck" },
		{ "problem h2kv1d8-post3x3-left h2kv1d8-post3x3-both\nseq 8\nck2 1 2\n",
		  "g.txt:3:7: ck2 2 does not fit problem 'h2kv1d8-post3x3-both-f32' (line 1)" },
		/* sizes beyond the validator's limit are refused where they are written */
		{ "problem h2kv1d8-pre2x3-both\nseq 8\ncq2 65\n",
		  "g.txt:3:5: expected a cq2 value: N, A..B, A..B+S or A..B*M with whole numbers "
		  "in 1..64" },
		{ "problem h2kv1d8-pre2x3-both\nseq 8\ncq 0\n", "g.txt:3:4: expected a cq value" },
		{ "problem h2kv1d8-pre2x3-both\nseq 8\nck\n", "g.txt:3:1: 'ck' needs at least one value" },
		{ "problem h2kv1d8-pre2x3-post2x3-left\nseq 8\ncq 1..64\nck 1..64\ncq2 1..64\n",
		  "g.txt: the grid has 262144 problems (keys x dtypes x kernel sizes), more than the "
		  "65536 allowed" },
		{ "ck3 5\n", "'ck3' is not a grid keyword (expected problem, seq, batch, dtype, op, cq, ck, "
		  "cq2 or ck2)" },
	};
	for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
		struct mta_grid g;
		int rc = parse(bad[i].text, &g);
		CHECKF(rc == MTA_EFORMAT, "case %zu: rc %d", i, rc);
		CHECK_STR_CONTAINS(mta_last_error(), bad[i].msg);
		CHECK(g.n == 0 && g.items == NULL && g.keys == NULL);
	}
}
