/*
 * cgen.c: generate the C kernel of a (problem, CPU variant) pair.
 *
 * The kernel is templates/mta_cpu.c with every size and option fixed by the
 * #defines of gen/defines.c written in front of it (so loops have constant
 * trip counts the compiler can unroll and vectorise, and unused options
 * vanish in the preprocessor), and with the project files it includes (the
 * kernel ABI runtime/core/mta_kargs.h and the SIMD layer
 * templates/mta_cpu_simd.h) pasted over their #include lines, so the source
 * is self-contained.
 */
#include "gen/cpu/cgen.h"
#include "gen/fault.h"
#include "gen/gen.h"
#include "runtime/core/error.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define TEMPLATE "templates/mta_cpu.c"

/* The template's #include lines that the generator replaces by the file. */
static const char *const pasted[] = { "runtime/core/mta_kargs.h", "templates/mta_cpu_simd.h" };
#define NPASTED (sizeof pasted / sizeof pasted[0])

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

int mta_gen_c(const struct mta_problem *p, const struct mta_variant *v, char **source)
{
	char spec[MTA_SPEC_MAX], line[NPASTED][128];
	struct mta_buf b = { 0 };
	int rc;

	*source = NULL;
	if (v->backend != MTA_BACKEND_CPU)
		return mta_fail(MTA_EINVAL, "the C generator needs a cpu variant, not %s",
				mta_backend_name(v->backend));
	if ((rc = mta_variant_check(p, v)) || (rc = mta_variant_format(v, spec, sizeof spec)))
		return rc;
	const char *tpl = mta_embedded(TEMPLATE), *at[NPASTED];
	for (size_t i = 0; i < NPASTED; i++) {
		snprintf(line[i], sizeof line[i], "#include \"%s\"\n", pasted[i]);
		at[i] = tpl ? strstr(tpl, line[i]) : NULL;
		if (!at[i] || !mta_embedded(pasted[i]))
			return mta_fail(MTA_EUNSUPPORTED, "this build lacks %s or %s (or its #include "
					"line there)", TEMPLATE, pasted[i]);
	}
	if ((rc = mta_gen_defines(&b, TEMPLATE, p, v))) {
		mta_buf_free(&b);
		return rc;
	}
	int fault = mta_test_fault(spec);
	if (fault)
		mta_buf_printf(&b, "#define mta_cpu_kernel mta_cpu_kernel_real\n");
	/* the template, each pasted file in place of its line, in the template's order */
	for (const char *from = tpl;;) {
		size_t next = NPASTED;
		for (size_t i = 0; i < NPASTED; i++)
			if (at[i] >= from && (next == NPASTED || at[i] < at[next]))
				next = i;
		if (next == NPASTED) {
			mta_buf_printf(&b, "%s", from);
			break;
		}
		mta_buf_add(&b, from, (size_t)(at[next] - from));
		mta_buf_printf(&b, "/* ---- %s, pasted by the generator ---- */\n%s", pasted[next],
			       mta_embedded(pasted[next]));
		mta_buf_printf(&b, "/* ---- end of %s ---- */\n", pasted[next]);
		from = at[next] + strlen(line[next]);
	}
	if (fault)
		put_fault(&b, fault);
	return mta_buf_take(&b, "a C kernel", source, NULL);
}
