/*
 * test_architecture.c: the layout holds. libmtatune.so exports exactly the
 * functions of runtime/mta.h; no source includes across a forbidden layer
 * (tests/check_layers.py against docs/architecture.md, and the checker
 * itself catches a planted violation); a successful call clears
 * mta_last_error(); and the element-wise bound of the comparison with the
 * reference fails one wrong element that the relative L2 error lets pass.
 */
#include "tests/harness.h"
#include "runtime/mta.h"

#include <stdint.h>

/* Is name one of the lines of text? */
static int has_line(const char *text, const char *name)
{
	size_t n = strlen(name);
	for (const char *s = text; (s = strstr(s, name)); s += n)
		if ((s == text || s[-1] == '\n') && (s[n] == '\n' || !s[n]))
			return 1;
	return 0;
}

TEST(library_exports_exactly_the_functions_of_mta_h)
{
	char *exported = NULL, *declared = NULL;
	/* the dynamic symbol table's defined functions */
	int rc = mt_sh(&exported, "nm -D --defined-only lib/libmtatune.so | awk '$2 ~ /^[TtWw]$/ "
		       "{ print $3 }' | sort -u");
	REQUIRE(rc == 0 && exported);
	/* every function runtime/mta.h declares (MTA_API ... mta_name() */
	rc = mt_sh(&declared, "sed -n 's/^MTA_API[^(]*[^a-z_0-9]\\(mta_[a-z_0-9]*\\)(.*/\\1/p' "
		   "runtime/mta.h | sort -u");
	REQUIRE(rc == 0 && declared);
	int nd = 0, ne = 0;
	for (char *s = declared; *s; s += strcspn(s, "\n") + (s[strcspn(s, "\n")] ? 1 : 0)) {
		char name[128];
		snprintf(name, sizeof name, "%.*s", (int)strcspn(s, "\n"), s);
		nd++;
		CHECKF(has_line(exported, name), "mta.h declares %s but libmtatune.so does not export it",
		       name);
	}
	for (char *s = exported; *s; s += strcspn(s, "\n") + (s[strcspn(s, "\n")] ? 1 : 0)) {
		char name[128];
		snprintf(name, sizeof name, "%.*s", (int)strcspn(s, "\n"), s);
		ne++;
		CHECKF(has_line(declared, name), "libmtatune.so exports %s, which mta.h does not declare",
		       name);
	}
	CHECKF(nd >= 25 && nd == ne, "%d declared, %d exported", nd, ne);
	free(exported);
	free(declared);
}

TEST(no_include_crosses_a_forbidden_layer)
{
	char *out = NULL;
	int rc = mt_sh(&out, "python3 tests/check_layers.py");
	CHECKF(rc == 0, "%s", out);
	CHECK_STR_CONTAINS(out, " 0 violations");
	free(out);
	/* a copy of the tree with one forbidden include planted in the core layer */
	rc = mt_sh(&out, "cp -r runtime gen db tuner templates tests bench docs Makefile '%s'/ && "
		   "printf '#include \"tuner/tune/tune.h\"\\n' >> '%s'/runtime/core/error.c && "
		   "python3 tests/check_layers.py '%s'", mt_tmpdir(), mt_tmpdir(), mt_tmpdir());
	CHECKF(rc == 1, "the planted include was not caught (exit %d): %s", rc, out);
	CHECK_STR_CONTAINS(out, "runtime/core/error.c");
	CHECK_STR_CONTAINS(out, "layer core may not include layer tune");
	free(out);
	/* and one that makes the cpu backend depend on the cuda one */
	rc = mt_sh(&out, "printf '#include \"runtime/cuda/cuda.h\"\\n' >> '%s'/runtime/cpu/cpu.c && "
		   "python3 tests/check_layers.py '%s'", mt_tmpdir(), mt_tmpdir());
	CHECK(rc == 1);
	CHECK_STR_CONTAINS(out, "never include each other");
	free(out);
}

TEST(a_successful_call_clears_the_last_error)
{
	struct mta_problem p;
	CHECK(mta_problem_from_key("h4kv3d8-both-f32", &p) == MTA_EINVAL);
	CHECK(mta_last_error()[0] != 0);
	CHECK(mta_problem_from_key("h4kv2d8-both-f32", &p) == MTA_OK);
	CHECKF(!mta_last_error()[0], "stale message after a success: %s", mta_last_error());
	/* a failing context, then a working one: the message goes */
	mta_context *c = NULL;
	CHECK(mta_context_create(&c, NULL, "tpu", 0) == MTA_EINVAL);
	CHECK_STR_CONTAINS(mta_last_error(), "unknown backend 'tpu'");
	char db[600];
	snprintf(db, sizeof db, "%s/none.db", mt_tmpdir());
	REQUIRE(mta_context_create(&c, db, "cpu", 0) == MTA_OK);
	CHECKF(!mta_last_error()[0], "stale message after mta_context_create: %s", mta_last_error());
	struct mta_pick pick;
	CHECK(mta_context_pick(c, &p, 1, 100, NULL) == MTA_EINVAL);
	CHECK(mta_context_pick(c, &p, 1, 100, &pick) == MTA_OK);
	CHECKF(!mta_last_error()[0], "stale message after mta_context_pick: %s", mta_last_error());
	mta_context_free(c);
}

/*
 * One wrong element among many: the relative L2 error stays within the
 * bf16/f16 tolerance, the element-wise bound does not, and the comparison
 * names the element. Within bounds everywhere, it passes; NaN never does.
 */
TEST(the_elementwise_bound_fails_one_wrong_element)
{
	const size_t n = 300 * 4 * 32;
	double *e = malloc(n * sizeof *e);
	float *o = malloc(n * sizeof *o);
	REQUIRE(e && o);
	double atol, rtol;
	mta_tolerance_elem(MTA_BF16, &atol, &rtol);
	for (size_t i = 0; i < n; i++) {
		e[i] = mt_uniform();
		o[i] = (float)(e[i] * (1 + 0.2 * rtol * mt_uniform())); /* well within rtol */
	}
	struct mta_compare r;
	CHECKF(mta_compare(o, e, n, MTA_BF16, &r) == MTA_OK, "%s", mta_last_error());
	CHECK_EQ_INT(r.bad, 0);
	CHECK(r.rel_l2 < mta_tolerance(MTA_BF16));
	size_t at = (size_t)(n * 0.37);
	o[at] = (float)(e[at] + 0.5); /* ten times its bound */
	CHECK_EQ_INT(mta_compare(o, e, n, MTA_BF16, &r), MTA_EVERIFY);
	CHECKF(r.rel_l2 < mta_tolerance(MTA_BF16), "one element alone moved the L2 error to %g",
	       r.rel_l2);
	CHECK_EQ_INT(r.bad, 1);
	CHECK_EQ_INT(r.worst, (long long)at);
	char want[64];
	snprintf(want, sizeof want, "worst element %zu", at);
	CHECK_STR_CONTAINS(mta_last_error(), want);
	CHECK_STR_CONTAINS(mta_last_error(), "1 of 38400 elements beyond");
	/* f32's bounds are tighter: the noise that bf16 allows fails there */
	o[at] = (float)e[at];
	CHECK_EQ_INT(mta_compare(o, e, n, MTA_F32, &r), MTA_EVERIFY);
	o[n - 1] = NAN;
	CHECK_EQ_INT(mta_compare(o, e, n, MTA_BF16, &r), MTA_EVERIFY);
	CHECK(r.bad >= 1 && r.worst == n - 1);
	free(e);
	free(o);
}

/*
 * Outputs whose terms cancel (mta_compare_mag): a thousandth of their terms'
 * magnitudes, each off by half a thousandth of them (a 16-bit rounding of
 * the terms), fail the plain bound and pass on the terms' scale; an output
 * without cancellation (magnitude = |e|) is judged as by mta_compare; one
 * element off by half its terms still fails, and NaN.
 */
TEST(the_elementwise_bound_of_cancelling_outputs_is_on_their_terms)
{
	const size_t n = 4096;
	double *e = malloc(n * sizeof *e), *mag = malloc(n * sizeof *mag);
	float *o = malloc(n * sizeof *o);
	REQUIRE(e && o && mag);
	struct mta_compare r;
	for (size_t i = 0; i < n; i++) {
		mag[i] = 1 + fabs(mt_uniform());
		e[i] = 1e-3 * mag[i] * (mt_uniform() < 0 ? -1 : 1);
		o[i] = (float)(e[i] + 5e-4 * mag[i] * mt_uniform());
	}
	CHECK_EQ_INT(mta_compare(o, e, n, MTA_BF16, &r), MTA_EVERIFY);
	CHECKF(mta_compare_mag(o, e, mag, n, MTA_BF16, &r) == MTA_OK, "%s", mta_last_error());
	CHECK_EQ_INT(r.bad, 0);
	size_t at = n / 3;
	o[at] = (float)(e[at] + 0.5 * mag[at]);
	CHECK_EQ_INT(mta_compare_mag(o, e, mag, n, MTA_BF16, &r), MTA_EVERIFY);
	CHECK_EQ_INT(r.bad, 1);
	CHECK_EQ_INT(r.worst, (long long)at);
	CHECK_STR_CONTAINS(mta_last_error(), "terms' magnitudes");
	o[at] = NAN;
	CHECK_EQ_INT(mta_compare_mag(o, e, mag, n, MTA_BF16, &r), MTA_EVERIFY);
	/* no cancellation: the plain comparison's verdict and count */
	for (size_t i = 0; i < n; i++) {
		e[i] = mt_uniform();
		mag[i] = fabs(e[i]);
		o[i] = (float)(e[i] * (1 + 0.2 * mt_uniform() * 5e-2));
	}
	o[at] = (float)(e[at] + 0.5);
	struct mta_compare r2;
	CHECK_EQ_INT(mta_compare(o, e, n, MTA_BF16, &r), MTA_EVERIFY);
	CHECK_EQ_INT(mta_compare_mag(o, e, mag, n, MTA_BF16, &r2), MTA_EVERIFY);
	CHECK(r.bad == 1 && r2.bad == 1 && r2.worst == at);
	free(e);
	free(o);
	free(mag);
}
