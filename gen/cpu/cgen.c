/*
 * cgen.c: generate the C kernel of a (problem, CPU variant) pair.
 *
 * The kernel is the template of the variant's family (v1:
 * templates/mta_cpu.c, v2: templates/mta_cpu2.c) with every size and option
 * fixed by the #defines of gen/defines.c written in front of it (so loops
 * have constant trip counts the compiler can unroll and vectorise, and
 * unused options vanish in the preprocessor), and with the project files it
 * includes (the kernel ABI runtime/core/mta_kargs.h, the vector layer
 * templates/mta_cpu_vec.h, v1's micro-kernels templates/mta_cpu_simd.h)
 * pasted over their #include lines, so the source is self-contained.
 */
#include "gen/cpu/cgen.h"
#include "gen/fault.h"
#include "gen/gen.h"
#include "runtime/core/error.h"
#include "runtime/core/mta_dargs.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* The template of each kernel family, v1, v2, ... */
static const char *const templates[] = { "templates/mta_cpu.c", "templates/mta_cpu2.c" };
#define NTEMPLATES (int)(sizeof templates / sizeof templates[0])

/* The wrapper that turns a kernel into a faulty one (see gen/fault.h). */
static void put_fault(struct mta_buf *b, int fault)
{
	mta_buf_printf(b, "\n/* ---- test-only fault injected by MTATUNE_TEST_FAULT ---- */\n"
		       "#include <time.h>\n");
	if (fault == MTA_FAULT_SYNTAX) {
		mta_buf_printf(b, "%s", MTA_FAULT_SYNTAX_LINE);
		return;
	}
	mta_buf_printf(b, "#undef mta_cpu_kernel\nint mta_cpu_kernel(const struct mta_kargs *a)\n{\n");
	if (fault == MTA_FAULT_CRASH)
		mta_buf_printf(b, "\t*(volatile int *)(uintptr_t)a->B = 0; /* B is small: not mapped */\n"
			       "\t__builtin_trap();\n");
	else if (fault == MTA_FAULT_HANG)
		mta_buf_printf(b, "\tfor (;;)\n\t\t__asm__ volatile(\"\");\n");
	else if (fault == MTA_FAULT_SLOW) /* its own run time, then a third of it asleep */
		mta_buf_printf(b, "\tstruct timespec t0, t1;\n\tclock_gettime(CLOCK_MONOTONIC, &t0);\n"
			       "\tint r = mta_cpu_kernel_real(a);\n"
			       "\tclock_gettime(CLOCK_MONOTONIC, &t1);\n"
			       "\tlong ns = (t1.tv_sec - t0.tv_sec) * 1000000000L + (t1.tv_nsec - t0.tv_nsec);\n"
			       "\tstruct timespec d = { ns / 3 / 1000000000L, ns / 3 %% 1000000000L };\n"
			       "\tnanosleep(&d, NULL);\n\treturn r;\n");
	else if (fault == MTA_FAULT_NOMEM)
		mta_buf_printf(b, "\t(void)a;\n\treturn MTA_KERR_NOMEM;\n");
	else
		mta_buf_printf(b, "\tint r = mta_cpu_kernel_real(a);\n\ta->o[0] += 1.0f;\n\treturn r;\n");
	mta_buf_printf(b, "}\n");
}

/*
 * The template's text with each project file it includes (an `#include "..."`
 * line) pasted in place of the line, in order, into b.
 */
static int paste(struct mta_buf *b, const char *tpl_path, const char *tpl)
{
	static const char inc[] = "#include \"";
	for (const char *from = tpl;;) {
		const char *at = strstr(from, inc);
		while (at && at != tpl && at[-1] != '\n')
			at = strstr(at + 1, inc);
		if (!at) {
			mta_buf_printf(b, "%s", from);
			return MTA_OK;
		}
		const char *name = at + sizeof inc - 1, *end = strchr(name, '"');
		char path[128];
		if (!end || (size_t)(end - name) >= sizeof path)
			return mta_fail(MTA_EUNSUPPORTED, "%s: a malformed #include line", tpl_path);
		memcpy(path, name, (size_t)(end - name));
		path[end - name] = 0;
		const char *text = mta_embedded(path);
		if (!text)
			return mta_fail(MTA_EUNSUPPORTED, "this build lacks %s, which %s includes", path,
					tpl_path);
		mta_buf_add(b, from, (size_t)(at - from));
		mta_buf_printf(b, "/* ---- %s, pasted by the generator ---- */\n%s", path, text);
		mta_buf_printf(b, "/* ---- end of %s ---- */\n", path);
		from = strchr(end, '\n');
		from = from ? from + 1 : end + 1;
	}
}

int mta_gen_c(const struct mta_problem *p, const struct mta_variant *v, char **source)
{
	char spec[MTA_SPEC_MAX];
	struct mta_buf b = { 0 };
	int rc;

	*source = NULL;
	if (v->backend != MTA_BACKEND_CPU)
		return mta_fail(MTA_EINVAL, "the C generator needs a cpu variant, not %s",
				mta_backend_name(v->backend));
	if ((rc = mta_variant_check(p, v)) || (rc = mta_variant_format(v, spec, sizeof spec)))
		return rc;
	if (v->version < 1 || v->version > NTEMPLATES)
		return mta_fail(MTA_EUNSUPPORTED, "no template for cpu kernel family v%d", v->version);
	const char *path = templates[v->version - 1], *tpl = mta_embedded(path);
	if (!tpl)
		return mta_fail(MTA_EUNSUPPORTED, "this build lacks %s", path);
	if ((rc = mta_gen_defines(&b, path, p, v)))
		goto fail;
	int fault = mta_test_fault(spec);
	if (fault)
		mta_buf_printf(&b, "#define mta_cpu_kernel mta_cpu_kernel_real\n");
	if ((rc = paste(&b, path, tpl)))
		goto fail;
	if (fault)
		put_fault(&b, fault);
	return mta_buf_take(&b, "a C kernel", source, NULL);
fail:
	mta_buf_free(&b);
	return rc;
}

/* ---- the backward (templates/mta_cpu_bwd.c) ---- */

int mta_gen_c_bwd(const struct mta_problem *p, const struct mta_variant *v, char **source)
{
	static const char path[] = "templates/mta_cpu_bwd.c";
	struct mta_buf b = { 0 };
	int rc;

	*source = NULL;
	if (v->backend != MTA_BACKEND_CPU)
		return mta_fail(MTA_EINVAL, "the C backward generator needs a cpu variant, not %s",
				mta_backend_name(v->backend));
	if ((rc = mta_variant_check(p, v)))
		return rc;
	const char *tpl = mta_embedded(path);
	if (!tpl)
		return mta_fail(MTA_EUNSUPPORTED, "this build lacks %s", path);
	if ((rc = mta_gen_defines(&b, path, p, v)) || (rc = paste(&b, path, tpl))) {
		mta_buf_free(&b);
		return rc;
	}
	return mta_buf_take(&b, "a C backward kernel", source, NULL);
}

/* ---- decode (templates/mta_cpu_decode.c) ---- */

int mta_gen_c_decode(const struct mta_problem *p, const struct mta_variant *v, char **source)
{
	static const char path[] = "templates/mta_cpu_decode.c";
	struct mta_variant d;
	struct mta_buf b = { 0 };
	int rc;

	*source = NULL;
	if (!v) {
		if ((rc = mta_variant_default_op(p, MTA_BACKEND_CPU, MTA_OP_DECODE, &d)))
			return rc;
		v = &d;
	}
	if (v->backend != MTA_BACKEND_CPU)
		return mta_fail(MTA_EINVAL, "the C decode generator needs a cpu variant, not %s",
				mta_backend_name(v->backend));
	if ((rc = mta_variant_check(p, v)))
		return rc;
	if (v->bk < MTA_DBLOCK_MIN)
		return mta_fail(MTA_EINVAL, "bk=%d: decode key blocks need at least %d columns (the "
				"scratch a cache gives is sized for them)", v->bk, MTA_DBLOCK_MIN);
	const char *tpl = mta_embedded(path);
	if (!tpl)
		return mta_fail(MTA_EUNSUPPORTED, "this build lacks %s", path);
	if ((rc = mta_gen_defines(&b, path, p, v)) || (rc = paste(&b, path, tpl))) {
		mta_buf_free(&b);
		return rc;
	}
	return mta_buf_take(&b, "a C decode kernel", source, NULL);
}
