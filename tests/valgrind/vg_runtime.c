/*
 * vg_runtime.c: a small program that drives the runtime API the way an
 * application does, success and error paths, for valgrind memcheck
 * (tests/valgrind.sh): every allocation must be freed and no byte read
 * uninitialised. Usage: vg_runtime DB (a database with TINY tuned, or none).
 * Exit status 0 when every call gave what it should.
 */
#include "runtime/mta.h"
#include "tuner/io/npy.h"
#include "tuner/measure/sample.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>

#define TINY "h2kv1d8-both-f32"

static int fails;
#define EXPECT(c) do { if (!(c)) { fprintf(stderr, "vg_runtime: line %d: %s (%s)\n", __LINE__, #c, \
					mta_last_error()); fails++; } } while (0)

int main(int argc, char **argv)
{
	const char *db = argc > 1 ? argv[1] : NULL;
	struct mta_problem p;
	struct mta_sample s = { 0 };
	mta_context *ctx = NULL;
	struct mta_pick pick;
	int64_t B = 1, T = 24;

	EXPECT(mta_problem_from_key(TINY, &p) == MTA_OK);
	EXPECT(mta_sample_make(&p, B, T, 11, &s) == MTA_OK);
	size_t n = (size_t)(B * T * p.H * p.D);
	float *y = malloc(n * sizeof *y);
	double *ref = malloc(n * sizeof *ref);
	struct mta_tensor o;
	mta_tensor_init(&o, y, MTA_F32, B, T, p.H, p.D);

	/* success: pick the tuned winner (or the default) and run it */
	EXPECT(mta_context_create(&ctx, db, "cpu", 0) == MTA_OK);
	EXPECT(mta_context_pick(ctx, &p, B, T, &pick) == MTA_OK);
	for (size_t i = 0; i < n; i++)
		y[i] = NAN;
	EXPECT(mta_forward(ctx, &p, &s.q, &s.k, &s.v, &s.w, &o) == MTA_OK);
	EXPECT(mta_reference(&p, &s.q, &s.k, &s.v, &s.w, ref) == MTA_OK);
	EXPECT(mta_compare(y, ref, n, p.dtype, NULL) == MTA_OK);

	/* errors: a wrong output shape, an unknown backend, a missing database and file */
	struct mta_tensor bad;
	mta_tensor_init(&bad, y, MTA_F32, B, T - 1, p.H, p.D);
	EXPECT(mta_forward(ctx, &p, &s.q, &s.k, &s.v, &s.w, &bad) != MTA_OK);
	mta_context_free(ctx);
	ctx = NULL;
	EXPECT(mta_context_create(&ctx, db, "tpu", 0) != MTA_OK && !ctx);
	EXPECT(mta_context_create(&ctx, "/nonexistent/dir/x.db", "cpu", 0) != MTA_OK || ctx);
	mta_context_free(ctx);
	struct mta_npy a;
	EXPECT(mta_npy_read("/nonexistent.npy", &a) == MTA_EIO);
	mta_npy_free(&a);
	EXPECT(mta_npy_parse("x.npy", "\x93NUMPY\x01\x00\x04\x00{}\n", 14, &a) == MTA_EFORMAT);
	mta_npy_free(&a);

	mta_sample_free(&s);
	free(y);
	free(ref);
	return fails ? 1 : 0;
}
