/*
 * test_ccompile.c: the run-time compiler cache, the kernel template and
 * generator output as C, and the CPU tuning space.
 */
#include "tests/harness.h"
#include "runtime/ccompile.h"
#include "runtime/core/hash.h"
#include "gen/cpu/cgen.h"
#include "tests/cpu_util.h"

#include <sys/stat.h>

static const char *ok_src = "int answer(void) { return 42; }\n";

TEST(ccompile_builds_caches_and_loads)
{
	char so[4096], so2[4096], so3[4096];
	struct stat a, b;
	void *dl = NULL, *fn = NULL;
	char *log = (char *)1;
	setenv("MTATUNE_CACHE", mt_tmpdir(), 1);
	REQUIRE(mta_cc_build(ok_src, MTA_LANG_C, "-O1", so, sizeof so, &log) == MTA_OK);
	CHECK(log == NULL);
	CHECK_STR_CONTAINS(so, mt_tmpdir());
	REQUIRE(stat(so, &a) == 0);
	/* second build: same path, same file (not rebuilt: same inode and mtime) */
	REQUIRE(mta_cc_build(ok_src, MTA_LANG_C, "-O1", so2, sizeof so2, NULL) == MTA_OK);
	REQUIRE(stat(so2, &b) == 0);
	CHECK(!strcmp(so, so2));
	CHECK(a.st_ino == b.st_ino && a.st_mtim.tv_sec == b.st_mtim.tv_sec &&
	      a.st_mtim.tv_nsec == b.st_mtim.tv_nsec);
	/* other flags are another entry */
	REQUIRE(mta_cc_build(ok_src, MTA_LANG_C, "-O2", so3, sizeof so3, NULL) == MTA_OK);
	CHECK(strcmp(so, so3) != 0);
	REQUIRE(mta_cc_open(so, "answer", &dl, &fn) == MTA_OK);
	CHECK_EQ_INT(((int (*)(void))fn)(), 42);
	mta_cc_close(dl);
	CHECK_EQ_INT(mta_cc_open(so, "no_such_symbol", &dl, &fn), MTA_ECOMPILE);
	CHECK_STR_CONTAINS(mta_last_error(), "no_such_symbol");
	CHECK_EQ_INT(mta_cc_open("/nonexistent/x.so", "answer", &dl, &fn), MTA_ECOMPILE);
	/* a cache folder that needs its parents made */
	char deep[1024];
	snprintf(deep, sizeof deep, "%s/a/b/c", mt_tmpdir());
	setenv("MTATUNE_CACHE", deep, 1);
	CHECK(mta_cc_build(ok_src, MTA_LANG_C, NULL, so, sizeof so, NULL) == MTA_OK);
	CHECK_STR_CONTAINS(so, "/a/b/c/");
	/* the path buffer is too small */
	CHECK_EQ_INT(mta_cc_build(ok_src, MTA_LANG_C, NULL, so, 8, NULL), MTA_EINVAL);
}

TEST(ccompile_failure_returns_log)
{
	char so[4096], *log = NULL;
	setenv("MTATUNE_CACHE", mt_tmpdir(), 1);
	CHECK_EQ_INT(mta_cc_build("int broken(void) { return undeclared_name; }\n", MTA_LANG_C,
				  NULL, so, sizeof so, &log), MTA_ECOMPILE);
	CHECK_STR_CONTAINS(log, "undeclared_name");
	CHECK_STR_CONTAINS(mta_last_error(), "undeclared_name");
	CHECK_STR_CONTAINS(mta_last_error(), ".fail.log");
	free(log);
	/* a compiler that does not exist is a compile failure, not a crash */
	setenv("MTATUNE_CC", "/nonexistent/cc", 1);
	CHECK_EQ_INT(mta_cc_build(ok_src, MTA_LANG_C, NULL, so, sizeof so, &log), MTA_ECOMPILE);
	CHECK_STR_CONTAINS(log, "cannot run");
	free(log);
	CHECK_STR_CONTAINS(mta_cc_identity(MTA_LANG_C), "unknown");
	/* and through the kernel loader */
	struct mta_problem p;
	struct mta_variant v;
	struct mta_cpu_kernel *k = (struct mta_cpu_kernel *)1;
	mta_problem_init(&p, 2, 2, 8);
	REQUIRE(mta_variant_default(&p, MTA_BACKEND_CPU, &v) == MTA_OK);
	CHECK_EQ_INT(mta_cpu_load(&p, &v, &k), MTA_ECOMPILE);
	CHECK(k == NULL);
	CHECK_STR_CONTAINS(mta_last_error(), "cpu kernel cpu:v2");
	unsetenv("MTATUNE_CC");
}

TEST(ccompile_hash_and_identity)
{
	char a[17], b[17], c[17];
	mta_hash_hex("abc", 3, a);
	mta_hash_hex("abc", 3, b);
	mta_hash_hex("abd", 3, c);
	CHECK(!strcmp(a, b) && strcmp(a, c) && strlen(a) == 16);
	mta_hash_hex("", 0, a);
	CHECK(!strcmp(a, "cbf29ce484222325")); /* FNV-1a 64 offset basis */
	CHECK(strlen(mta_cc_identity(MTA_LANG_C)) > 0);
	CHECK(!strstr(mta_cc_identity(MTA_LANG_C), "unknown"));
}

/* Each family's template compiles on its own, warning-free, with its default constants. */
TEST(ccompile_template_standalone)
{
	static const char *const tpl[] = { "templates/mta_cpu.c", "templates/mta_cpu2.c" };
	for (size_t i = 0; i < sizeof tpl / sizeof tpl[0]; i++) {
		char *out = NULL;
		int rc = mt_sh(&out, "cc -std=gnu11 -fsyntax-only -Wall -Wextra -Werror -I. %s && "
			       "cc -std=gnu11 -fsyntax-only -Wall -Wextra -Werror -DK_COUNT -I. %s",
			       tpl[i], tpl[i]);
		CHECKF(rc == 0, "%s does not compile on its own:\n%s", tpl[i], out);
		free(out);
	}
}

/* Generated kernels are self-contained and warning-free for every kind of option. */
TEST(ccompile_generated_sources)
{
	static const struct {
		const char *key, *spec;
	} c[] = {
		{ "h2kv2d8-both-f32", "cpu:v1" },
		{ "h4kv2d13-pre3x5-post2x3-hc2-right-gn-gate-s0.3-bf16", "cpu:v1,hpb=2,vec=16" },
		{ "h3kv3d6-pre2x3-hpre-post3x3-hpost-left-gnr-f16", "cpu:v1,hpb=0,vec=4" },
		{ "h1kv1d1-post2x2-right-gate-f32", "cpu:v1,hpb=0,bq=1,bk=1" },
		{ "h2kv2d8-both-f32", "cpu:v2" },
		{ "h4kv2d13-pre3x5-post2x3-hc2-right-gn-gate-s0.3-bf16", "cpu:v2,hpb=2,vec=16" },
		{ "h3kv3d6-pre2x3-hpre-post3x3-hpost-left-gnr-f16", "cpu:v2,hpb=0,vec=4,bq=3,bk=16" },
		{ "h1kv1d1-post2x2-right-gate-f32", "cpu:v2,hpb=0,bq=1,bk=16" },
		{ "h8kv8d64-pre6x11-hpre-post6x11-hc8-both-gn-gate-f32", "cpu:v2,hpb=0,vec=8" },
	};
	for (size_t i = 0; i < sizeof c / sizeof c[0]; i++) {
		struct mta_problem p;
		struct mta_variant v;
		char *src = NULL, *out = NULL, path[1024];
		REQUIRE(mta_problem_from_key(c[i].key, &p) == MTA_OK);
		REQUIRE(mta_variant_parse(c[i].spec, &v) == MTA_OK);
		REQUIRE(mta_gen_c(&p, &v, &src) == MTA_OK);
		CHECK_STR_CONTAINS(src, v.version == 1
					 ? "Generated by mtatune from templates/mta_cpu.c: do not edit"
					 : "Generated by mtatune from templates/mta_cpu2.c: do not edit");
		char key[MTA_KEY_MAX];
		REQUIRE(mta_problem_key(&p, key, sizeof key) == MTA_OK);
		CHECK(strstr(src, key) != NULL);
		CHECK_STR_CONTAINS(src, "struct mta_kargs {");
		CHECK(!strstr(src, "#include \"")); /* every project file pasted */
		CHECK_STR_CONTAINS(src, "vexp(vf x)");
		snprintf(path, sizeof path, "%s/k%zu.c", mt_tmpdir(), i);
		FILE *f = fopen(path, "w");
		REQUIRE(f);
		fputs(src, f);
		fclose(f);
		/* from an empty folder: no project header may be needed */
		int rc = mt_sh(&out, "cd '%s' && cc -std=gnu11 -fsyntax-only -Wall -Wextra -Werror "
			       "-nostdinc -isystem /usr/include -isystem \"$(cc -print-file-name=include)\" "
			       "-isystem /usr/include/$(cc -dumpmachine) k%zu.c", mt_tmpdir(), i);
		CHECKF(rc == 0, "%s %s:\n%s", c[i].key, c[i].spec, out);
		free(out);
		free(src);
	}
}

TEST(cpu_space_rules)
{
	struct mta_problem p;
	struct mta_variant v, *all = NULL;
	size_t n = 0;
	static const char *keys[] = {
		"h16kv16d96-pre6x11-hpre-post6x11-hc16-both-gn-gate-bf16",
		"h16kv4d64-both-f32", "h8kv8d64-hc2-both-f32", "h1kv1d8-both-f32",
		"h12kv12d64-post3x3-hpost-both-f32",
	};
	for (size_t i = 0; i < sizeof keys / sizeof keys[0]; i++) {
		REQUIRE(mta_problem_from_key(keys[i], &p) == MTA_OK);
		REQUIRE(mta_variant_space(&p, MTA_BACKEND_CPU, &all, &n) == MTA_OK);
		CHECKF(n >= 4 && n <= 40, "%s: %zu variants", keys[i], n);
		size_t fam[3] = { 0 };
		for (size_t j = 0; j < n; j++) {
			CHECK(mta_variant_check(&p, &all[j]) == MTA_OK);
			fam[all[j].version == 1 ? 1 : 2]++;
			/* each family tries its own tile values */
			if (all[j].version == 1)
				CHECK(all[j].bq >= 64 && all[j].bk == 128);
			else
				CHECK(all[j].bq <= 32 && all[j].bk >= 256);
		}
		/* both families, so the tuner measures two passes against one */
		CHECKF(fam[1] >= 2 && fam[2] >= 2, "%s: %zu v1 and %zu v2 variants", keys[i], fam[1],
		       fam[2]);
		free(all);
		REQUIRE(mta_variant_default(&p, MTA_BACKEND_CPU, &v) == MTA_OK);
		CHECK(mta_variant_check(&p, &v) == MTA_OK);
		CHECK_EQ_INT(v.version, 2);
	}
	REQUIRE(mta_problem_from_key("h8kv8d64-hc2-both-f32", &p) == MTA_OK);
	REQUIRE(mta_variant_parse("cpu:v1,hpb=1", &v) == MTA_OK);
	CHECK_EQ_INT(mta_variant_check(&p, &v), MTA_EINVAL);
	CHECK_STR_CONTAINS(mta_last_error(), "multiple of 2");
	REQUIRE(mta_variant_parse("cpu:v1,hpb=8", &v) == MTA_OK);
	CHECK_EQ_INT(mta_variant_check(&p, &v), MTA_EINVAL);
	CHECK_STR_CONTAINS(mta_last_error(), "hpb=0");
	REQUIRE(mta_variant_parse("cpu:v1,hpb=3", &v) == MTA_OK);
	CHECK_EQ_INT(mta_variant_check(&p, &v), MTA_EINVAL);
	CHECK_STR_CONTAINS(mta_last_error(), "divide");
	REQUIRE(mta_variant_parse("cpu:v1,hpb=2,algo=1", &v) == MTA_OK);
	CHECK_EQ_INT(mta_variant_check(&p, &v), MTA_EINVAL);
	CHECK_STR_CONTAINS(mta_last_error(), "algo=1");
	REQUIRE(mta_variant_parse("cpu:v1,hpb=2,vec=2", &v) == MTA_OK);
	CHECK_EQ_INT(mta_variant_check(&p, &v), MTA_EINVAL);
	CHECK_STR_CONTAINS(mta_last_error(), "4, 8 or 16");
	REQUIRE(mta_variant_parse("cpu:v1,hpb=2,algo=2", &v) == MTA_OK);
	CHECK_EQ_INT(mta_variant_check(&p, &v), MTA_EINVAL);
	REQUIRE(mta_variant_parse("cpu:v1,hpb=2,bq=0", &v) == MTA_OK);
	CHECK_EQ_INT(mta_variant_check(&p, &v), MTA_EINVAL);
	REQUIRE(mta_variant_parse("cpu:v1,hpb=4,bq=7,bk=9", &v) == MTA_OK);
	CHECK_EQ_INT(mta_variant_check(&p, &v), MTA_OK);
	/* v2 chunks: multiples of 16 wider than the convolutions; v1 tiles need neither */
	REQUIRE(mta_problem_from_key("h2kv2d8-pre3x17-post2x3-both-f32", &p) == MTA_OK);
	REQUIRE(mta_variant_parse("cpu:v2,hpb=1,bk=24", &v) == MTA_OK);
	CHECK_EQ_INT(mta_variant_check(&p, &v), MTA_EINVAL);
	CHECK_STR_CONTAINS(mta_last_error(), "multiple of 16");
	REQUIRE(mta_variant_parse("cpu:v2,hpb=1,bk=16", &v) == MTA_OK);
	CHECK_EQ_INT(mta_variant_check(&p, &v), MTA_EINVAL);
	CHECK_STR_CONTAINS(mta_last_error(), "ck=17");
	REQUIRE(mta_variant_parse("cpu:v2,hpb=1,bk=32", &v) == MTA_OK);
	CHECK_EQ_INT(mta_variant_check(&p, &v), MTA_OK);
	REQUIRE(mta_variant_parse("cpu:v1,hpb=1,bk=16", &v) == MTA_OK);
	CHECK_EQ_INT(mta_variant_check(&p, &v), MTA_OK);
	REQUIRE(mta_variant_parse("cpu:v3", &v) == MTA_OK);
	CHECK_EQ_INT(mta_variant_check(&p, &v), MTA_EINVAL);
	CHECK_STR_CONTAINS(mta_last_error(), "have v1, v2");
}
