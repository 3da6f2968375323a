/*
 * backends.c: the table of kernel backends (see gen.h). A new kernel
 * language is a folder gen/<name>/ (its space and generator) and a row here,
 * at the index its MTA_BACKEND_* constant names.
 */
#include "gen/gen.h"
#include "gen/cpu/cgen.h"
#include "gen/cuda/cudagen.h"
#include "runtime/core/error.h"

static const struct mta_gen_backend backends[] = {
	[MTA_BACKEND_CPU] = { "cpu", &mta_space_cpu, mta_gen_c },
	[MTA_BACKEND_CUDA] = { "cuda", &mta_space_cuda, mta_gen_cuda },
};

int mta_gen_backend_count(void)
{
	return (int)(sizeof backends / sizeof backends[0]);
}

const struct mta_gen_backend *mta_gen_backend(int backend)
{
	if (backend < 0 || backend >= mta_gen_backend_count())
		return NULL;
	return &backends[backend];
}

int mta_gen_source(const struct mta_problem *p, const struct mta_variant *v, char **source)
{
	const struct mta_gen_backend *g = mta_gen_backend(v->backend);
	*source = NULL;
	if (!g)
		return mta_fail(MTA_EINVAL, "variant has unknown backend %d", v->backend);
	return g->generate(p, v, source);
}
