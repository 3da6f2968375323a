/*
 * test_ccompile.c: the run-time compiler cache, the kernel template and
 * generator output as C, and the CPU tuning space.
 */
#include "tests/harness.h"
#include "runtime/ccompile.h"
#include "runtime/core/hash.h"
#include "gen/cpu/cgen.h"
#include "tests/cpu_util.h"
#include "tests/fixtures.h"

#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

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
	/* a compiler that does not exist is the machine's failure (ENODEV), not the source's */
	setenv("MTATUNE_CC", "/nonexistent/cc", 1);
	CHECK_EQ_INT(mta_cc_build(ok_src, MTA_LANG_C, NULL, so, sizeof so, &log), MTA_ENODEV);
	CHECK_STR_CONTAINS(log, "cannot run");
	CHECK_STR_CONTAINS(mta_last_error(), "no C compiler: cannot run '/nonexistent/cc'");
	free(log);
	CHECK_STR_CONTAINS(mta_cc_identity(MTA_LANG_C), "unknown");
	/* and through the kernel loader */
	struct mta_problem p;
	struct mta_variant v;
	struct mta_cpu_kernel *k = (struct mta_cpu_kernel *)1;
	mta_problem_init(&p, 2, 2, 8);
	REQUIRE(mta_variant_default(&p, MTA_BACKEND_CPU, &v) == MTA_OK);
	CHECK_EQ_INT(mta_cpu_load(&p, &v, &k), MTA_ENODEV);
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
	static const char *const tpl[] = { "templates/mta_cpu.c", "templates/mta_cpu2.c",
					   "templates/mta_cpu_decode.c" };
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
		/* the problem's decode kernel, likewise */
		REQUIRE(mta_gen_c_decode(&p, NULL, &src) == MTA_OK);
		CHECK(!strstr(src, "#include \""));
		CHECK_STR_CONTAINS(src, "struct mta_dargs {");
		snprintf(path, sizeof path, "%s/d%zu.c", mt_tmpdir(), i);
		REQUIRE((f = fopen(path, "w")) != NULL);
		fputs(src, f);
		fclose(f);
		rc = mt_sh(&out, "cd '%s' && cc -std=gnu11 -fsyntax-only -Wall -Wextra -Werror "
			   "-nostdinc -isystem /usr/include -isystem \"$(cc -print-file-name=include)\" "
			   "-isystem /usr/include/$(cc -dumpmachine) d%zu.c", mt_tmpdir(), i);
		CHECKF(rc == 0, "decode %s:\n%s", c[i].key, out);
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
		/* at most 84 (28 per block of heads): large spaces are searched, not screened whole */
		CHECKF(n >= 4 && n <= 84, "%s: %zu variants", keys[i], n);
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

/* The cache entry name (<key>) of a path dir/<key>.so, into key[64]. */
static void entry_key(const char *so, char *key)
{
	const char *b = strrchr(so, '/');
	snprintf(key, 64, "%.*s", (int)strcspn(b + 1, "."), b + 1);
}

static int file_is(const char *path, const char *text)
{
	char buf[256] = "";
	FILE *f = fopen(path, "r");
	size_t n = f ? fread(buf, 1, sizeof buf - 1, f) : 0;
	if (f)
		fclose(f);
	buf[n] = 0;
	return !strcmp(buf, text);
}

/*
 * Issue 18: the cache accepted an existing folder whoever owned it and
 * dlopened what it found there (its constructor runs before any check), and
 * fell back to /tmp/.cache/mtatune when HOME was unset. A new folder is
 * made 0700; one owned by another user, or writable by group or others, is
 * refused with a message naming it; no HOME and no MTATUNE_CACHE is refused.
 */
TEST(ccompile_cache_is_private_and_refuses_another_users_folder)
{
	char good[600], planted[600], so[4096], key[64], from[4200], to[4200], *out = NULL;
	struct stat st;
	snprintf(good, sizeof good, "%s/a/b/good", mt_tmpdir());
	setenv("MTATUNE_CACHE", good, 1);
	REQUIRE(mta_cc_build(ok_src, MTA_LANG_C, "-O1", so, sizeof so, NULL) == MTA_OK);
	REQUIRE(stat(good, &st) == 0);
	CHECKF((st.st_mode & 0777) == 0700, "new cache folder has mode %o", st.st_mode & 0777);
	snprintf(from, sizeof from, "%s/a", mt_tmpdir());
	CHECK(stat(from, &st) == 0 && (st.st_mode & 077) == 0);
	entry_key(so, key);

	/* the same entries planted in a folder of user nobody's */
	snprintf(planted, sizeof planted, "%s/planted", mt_tmpdir());
	REQUIRE(mt_sh(&out, "cp -a '%s' '%s'", good, planted) == 0);
	free(out);
	if (geteuid() == 0) {
		REQUIRE(chown(planted, 65534, 65534) == 0);
		setenv("MTATUNE_CACHE", planted, 1);
		CHECK_EQ_INT(mta_cc_build(ok_src, MTA_LANG_C, "-O1", so, sizeof so, NULL), MTA_EIO);
		CHECK_STR_CONTAINS(mta_last_error(), planted);
		CHECK_STR_CONTAINS(mta_last_error(), "is owned by uid 65534");
		/* and through the command line: nothing of it is loaded */
		int rc = mt_sh(&out, "MTATUNE_CACHE='%s' %s run --backend cpu --inputs '%s' --out "
			       "'%s/o.npy'", planted, mt_bin(), mt_small_case("in"), mt_tmpdir());
		CHECKF(rc == 1, "run: exit %d: %s", rc, out);
		CHECK_STR_CONTAINS(out, "another user could plant code there");
		free(out);
		REQUIRE(chown(planted, 0, 0) == 0);
	}
	/* writable by others */
	REQUIRE(chmod(planted, 0777) == 0);
	setenv("MTATUNE_CACHE", planted, 1);
	CHECK_EQ_INT(mta_cc_build(ok_src, MTA_LANG_C, "-O1", so, sizeof so, NULL), MTA_EIO);
	CHECK_STR_CONTAINS(mta_last_error(), "writable by group or others (mode 0777)");
	CHECK_STR_CONTAINS(mta_last_error(), "chmod go-w");
	/* no HOME and no MTATUNE_CACHE: no shared fallback */
	unsetenv("MTATUNE_CACHE");
	unsetenv("HOME");
	snprintf(to, sizeof to, "/tmp/.cache/mtatune/kernels/%s.so", key);
	unlink(to);
	CHECK_EQ_INT(mta_cc_build(ok_src, MTA_LANG_C, "-O1", so, sizeof so, NULL), MTA_EIO);
	CHECK_STR_CONTAINS(mta_last_error(), "MTATUNE_CACHE");
	CHECK(access(to, F_OK) != 0);
}

/*
 * Issue 18: a damaged or empty library in the cache failed for good (or
 * crashed the loader); each is recorded with its digest, checked before
 * dlopen, and rebuilt when it does not match.
 */
TEST(ccompile_damaged_or_empty_library_is_rebuilt)
{
	char so[4096], so2[4096];
	void *dl = NULL, *fn = NULL;
	setenv("MTATUNE_CACHE", mt_tmpdir(), 1);
	REQUIRE(mta_cc_build(ok_src, MTA_LANG_C, "-O1", so, sizeof so, NULL) == MTA_OK);
	struct stat st;
	REQUIRE(stat(so, &st) == 0 && st.st_size > 100);
	static const char *const harm[] = { "truncate -s 0", "truncate -s 100",
					     "printf 'XX' | dd conv=notrunc bs=1 seek=200 of=" };
	for (int i = 0; i < 3; i++) {
		char *out = NULL;
		REQUIRE(mt_sh(&out, "%s%s'%s'", harm[i], i < 2 ? " " : "", so) == 0);
		free(out);
		/* loading it as it is now is refused: no dlopen of a file that does not match */
		CHECK_EQ_INT(mta_cc_open(so, "answer", &dl, &fn), MTA_ECOMPILE);
		CHECK_STR_CONTAINS(mta_last_error(), "digest");
		REQUIRE(mta_cc_build(ok_src, MTA_LANG_C, "-O1", so2, sizeof so2, NULL) == MTA_OK);
		CHECK(!strcmp(so, so2));
		REQUIRE(mta_cc_open(so2, "answer", &dl, &fn) == MTA_OK);
		CHECK_EQ_INT(((int (*)(void))fn)(), 42);
		mta_cc_close(dl);
	}
}

/*
 * Issue 18: the .c source, the .tmp object and the .fail.c/.fail.log files
 * were opened by predictable names with fopen (following a symlink planted
 * there), and a symlink in place of the library was dlopened. None is
 * followed now: the victims keep their contents.
 */
TEST(ccompile_planted_symlinks_are_not_followed)
{
	char so[4096], key[64], cache[600], p[4400], victim[600];
	static const char *bad_src = "int broken(void) { return nope; }\n";
	snprintf(cache, sizeof cache, "%s/c", mt_tmpdir());
	snprintf(victim, sizeof victim, "%s/victim", mt_tmpdir());
	FILE *f = fopen(victim, "w");
	REQUIRE(f);
	fputs("precious", f);
	fclose(f);
	/* the entry names of ok_src and bad_src, from a scratch cache */
	setenv("MTATUNE_CACHE", mt_tmpdir(), 1);
	REQUIRE(mta_cc_build(ok_src, MTA_LANG_C, "-O1", so, sizeof so, NULL) == MTA_OK);
	entry_key(so, key);
	char bkey[64];
	char *log = NULL;
	snprintf(bkey, sizeof bkey, "?");
	CHECK_EQ_INT(mta_cc_build(bad_src, MTA_LANG_C, "-O1", so, sizeof so, &log), MTA_ECOMPILE);
	free(log);
	const char *fl = strstr(mta_last_error(), "/");
	REQUIRE(fl);
	{
		const char *e = strstr(fl, ".fail.");
		const char *b = e;
		while (b > fl && b[-1] != '/')
			b--;
		snprintf(bkey, sizeof bkey, "%.*s", (int)(e - b), b);
	}
	/* the planted cache: every name the old code wrote, a link to the victim */
	REQUIRE(mkdir(cache, 0700) == 0);
	static const char *const fmt[] = { "%s/%s.so", "%s/%s.fail.c", "%s/%s.fail.log" };
	for (int i = 0; i < 3; i++) {
		snprintf(p, sizeof p, fmt[i], cache, i ? bkey : key);
		REQUIRE(symlink(victim, p) == 0);
	}
	for (int seq = 1; seq < 8; seq++)
		for (int b = 0; b < 2; b++) {
			snprintf(p, sizeof p, "%s/%s.%ld.%d.c", cache, b ? bkey : key, (long)getpid(), seq);
			REQUIRE(symlink(victim, p) == 0);
			snprintf(p, sizeof p, "%s/%s.%ld.%d.tmp", cache, b ? bkey : key, (long)getpid(),
				 seq);
			REQUIRE(symlink(victim, p) == 0);
		}
	setenv("MTATUNE_CACHE", cache, 1);
	REQUIRE(mta_cc_build(ok_src, MTA_LANG_C, "-O1", so, sizeof so, NULL) == MTA_OK);
	struct stat st;
	CHECK(lstat(so, &st) == 0 && S_ISREG(st.st_mode));
	void *dl = NULL, *fn = NULL;
	REQUIRE(mta_cc_open(so, "answer", &dl, &fn) == MTA_OK);
	CHECK_EQ_INT(((int (*)(void))fn)(), 42);
	mta_cc_close(dl);
	log = NULL;
	CHECK_EQ_INT(mta_cc_build(bad_src, MTA_LANG_C, "-O1", so, sizeof so, &log), MTA_ECOMPILE);
	free(log);
	CHECKF(file_is(victim, "precious"), "the victim was written through a planted link");
	snprintf(p, sizeof p, "%s/%s.fail.log", cache, bkey);
	CHECK(lstat(p, &st) == 0 && S_ISREG(st.st_mode));
}

/*
 * Issue 18: a compile killed half way left its source and object behind
 * for ever; the next build sweeps what a dead builder left.
 */
TEST(ccompile_killed_compile_leaves_nothing_behind)
{
	char cache[600], cc[700], pidf[700], so[4096], *out = NULL;
	snprintf(cache, sizeof cache, "%s/k", mt_tmpdir());
	snprintf(cc, sizeof cc, "%s/slowcc", mt_tmpdir());
	snprintf(pidf, sizeof pidf, "%s/slowcc.pid", mt_tmpdir());
	FILE *f = fopen(cc, "w");
	REQUIRE(f);
	/* a compiler that says who it is and takes its time */
	fprintf(f, "#!/bin/sh\ncase \"$1\" in --version) echo slowcc 1; exit 0;; esac\n"
		"echo $$ > '%s.tmp' && mv '%s.tmp' '%s'\nexec sleep 30\n", pidf, pidf, pidf);
	fclose(f);
	REQUIRE(chmod(cc, 0755) == 0);
	setenv("MTATUNE_CACHE", cache, 1);
	pid_t pid = fork();
	if (pid == 0) {
		setenv("MTATUNE_CC", cc, 1);
		mta_cc_build(ok_src, MTA_LANG_C, "-O1", so, sizeof so, NULL);
		_exit(0);
	}
	/* once the compiler runs, kill the builder, then the compiler (by its pid) */
	long cpid = 0;
	for (int i = 0; i < 500 && !cpid; i++) {
		usleep(20000);
		FILE *pf = fopen(pidf, "r");
		if (pf) {
			if (fscanf(pf, "%ld", &cpid) != 1)
				cpid = 0;
			fclose(pf);
		}
	}
	REQUIRE(cpid > 0);
	kill(pid, SIGKILL);
	waitpid(pid, NULL, 0);
	kill((pid_t)cpid, SIGKILL);
	REQUIRE(mta_cc_build(ok_src, MTA_LANG_C, "-O1", so, sizeof so, NULL) == MTA_OK);
	/* only the entry itself: its library and its digest */
	mt_sh(&out, "ls -A '%s'", cache);
	int lines = 0;
	for (const char *s = out; s && *s; s++)
		lines += *s == '\n';
	CHECKF(lines == 2 && strstr(out, ".so\n") && strstr(out, ".sum\n"), "cache holds:\n%s", out);
	free(out);
}
