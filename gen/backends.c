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
	[MTA_BACKEND_CPU] = { "cpu", &mta_space_cpu, mta_gen_c, &mta_space_cpu_bwd, mta_gen_c_bwd,
			      &mta_space_cpu_decode, mta_gen_c_decode },
	[MTA_BACKEND_CUDA] = { "cuda", &mta_space_cuda, mta_gen_cuda, &mta_space_cuda_bwd,
			       mta_gen_cuda_bwd, &mta_space_cuda_decode, mta_gen_cuda_decode },
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

const struct mta_op_space *mta_gen_op_space(int backend, int op)
{
	const struct mta_gen_backend *g = mta_gen_backend(backend);
	return !g ? NULL : op == MTA_OP_BWD ? g->bwd_space : op == MTA_OP_DECODE ? g->decode_space
									  : NULL;
}

int mta_gen_source_op(const struct mta_problem *p, const struct mta_variant *v, int op,
		      char **source)
{
	const struct mta_gen_backend *g = mta_gen_backend(v->backend);
	int rc;
	*source = NULL;
	if (op == MTA_OP_FWD)
		return mta_gen_source(p, v, source);
	/*
	 * Only the rules of what the kernel reads (variant.h): a recorded
	 * winner stays buildable when the default's other tunables change.
	 */
	if ((rc = mta_variant_check_kernel(p, v, op)))
		return rc;
	int (*gen)(const struct mta_problem *, const struct mta_variant *, char **) =
		op == MTA_OP_BWD ? g->generate_bwd : op == MTA_OP_DECODE ? g->generate_decode : NULL;
	if (!gen)
		return mta_fail(MTA_EUNSUPPORTED, "the %s kernels have no %s generator",
				mta_backend_name(v->backend), mta_op_name(op));
	return gen(p, v, source);
}
