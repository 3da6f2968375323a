/*
 * harness.h: the project's tiny test framework.
 *
 * TEST(name) { ... } registers a test at load time. Each test runs in its
 * own child process (a crash or hang fails that test only) under an alarm.
 * CHECK* record a failure with file and line and carry on; REQUIRE* stop the
 * test. The runner (tests/main.c) prints one line per test and a summary.
 */
#ifndef MTA_HARNESS_H
#define MTA_HARNESS_H

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <math.h>

typedef void (*mt_fn)(void);
/* How the runner schedules a test: TEST, TEST_COMPILE_BOUND, TEST_TIMED. */
enum mt_kind { MT_PLAIN, MT_COMPILE_BOUND, MT_TIMED };
void mt_register(const char *name, const char *file, mt_fn fn, enum mt_kind kind);
void mt_fail(const char *file, int line, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
extern int mt_failures;

#define TEST(name)                                                          \
	static void name(void);                                             \
	__attribute__((constructor)) static void mt_reg_##name(void)        \
	{                                                                   \
		mt_register(#name, __FILE__, name, MT_PLAIN);                \
	}                                                                   \
	static void name(void)

/*
 * TEST_COMPILE_BOUND(name): a test whose time goes to an external compiler
 * or disassembler (NVRTC, ptxas, nvdisasm) over a whole variant space, or
 * to kernels the host compiler built outside the sanitizer and the CUDA
 * emulator runs, point after point of a space, not to our code. The
 * sanitizer build leaves it to the normal build and says so: the host code
 * it drives (source generation, job batching, log parsing, the emulator
 * backend's loading and launching) runs under the sanitizer in the lighter
 * tests of the same file, and repeating minutes of compiles, or of
 * uninstrumented kernels on emulated threads (whose creation ASan makes
 * dearer still), under ASan checks nothing more.
 */
#define TEST_COMPILE_BOUND(name)                                            \
	static void name(void);                                             \
	__attribute__((constructor)) static void mt_reg_##name(void)        \
	{                                                                   \
		mt_register(#name, __FILE__, name, MT_COMPILE_BOUND);        \
	}                                                                   \
	static void name(void)

/*
 * TEST_TIMED(name): a test whose verdict rests on wall-clock times (paired
 * rounds that must find twins alike, a slowed copy that must lose). The
 * runner starts it only when no other test runs and starts none beside it:
 * a neighbour compiling on the other core is not noise the tuner has to
 * survive in a test, and CI once saw a twin called 1.10x faster (95% CI
 * 1.04-1.17) with one running.
 */
#define TEST_TIMED(name)                                                    \
	static void name(void);                                             \
	__attribute__((constructor)) static void mt_reg_##name(void)        \
	{                                                                   \
		mt_register(#name, __FILE__, name, MT_TIMED);                \
	}                                                                   \
	static void name(void)

#define CHECK(c)                                                            \
	do {                                                                \
		if (!(c))                                                   \
			mt_fail(__FILE__, __LINE__, "CHECK(%s)", #c);        \
	} while (0)
#define CHECKF(c, ...)                                                      \
	do {                                                                \
		if (!(c))                                                   \
			mt_fail(__FILE__, __LINE__, __VA_ARGS__);            \
	} while (0)
#define REQUIRE(c)                                                          \
	do {                                                                \
		if (!(c)) {                                                 \
			mt_fail(__FILE__, __LINE__, "REQUIRE(%s)", #c);      \
			return;                                             \
		}                                                           \
	} while (0)
#define CHECK_EQ_INT(a, b)                                                  \
	do {                                                                \
		long long mt_a = (a), mt_b = (b);                           \
		if (mt_a != mt_b)                                           \
			mt_fail(__FILE__, __LINE__, "%s == %lld, expected %s == %lld", \
				#a, mt_a, #b, mt_b);                        \
	} while (0)
#define CHECK_STR_CONTAINS(hay, needle)                                     \
	do {                                                                \
		const char *mt_h = (hay), *mt_n = (needle);                 \
		if (!mt_h || !strstr(mt_h, mt_n))                           \
			mt_fail(__FILE__, __LINE__, "\"%s\" does not contain \"%s\"", \
				mt_h ? mt_h : "(null)", mt_n);              \
	} while (0)

/* ---- helpers shared by the tests (tests/util.c) ----------------------- */
/* Folder of the golden cases: $MTA_GOLDEN, else ../shared/golden. */
const char *mt_golden_dir(void);
/* A fresh temporary directory for this test (removed by the runner). */
const char *mt_tmpdir(void);
/* Deterministic per-test RNG seeded from time and pid (seed printed on failure). */
double mt_uniform(void); /* in [-1, 1), never exactly 0 */
unsigned long long mt_seed(void);
/* The RNG's state, and back to it: draw the same inputs twice. */
unsigned long long mt_rng_save(void);
void mt_rng_restore(unsigned long long s);
/* Relative L2 error ||a-b|| / ||b||; returns INFINITY if any a is NaN/inf. */
double mt_rel_l2_f32(const float *a, const double *b, size_t n);
double mt_rel_l2_f64(const double *a, const double *b, size_t n);
/* Run a shell command, capture stdout+stderr (malloc'd) and exit status. */
int mt_sh(char **output, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Path of the CLI under test ($MTATUNE_BIN, else bin/mtatune). */
const char *mt_bin(void);
/*
 * Whether this runner was built with AddressSanitizer (gcc or clang). A test
 * whose later part builds and runs code outside the sanitizer (an exported
 * library compiled by make, programs linked with it) stops before that part
 * under the sanitizer and leaves it to the normal build, which runs it all.
 */
int mt_sanitized(void);

#endif
