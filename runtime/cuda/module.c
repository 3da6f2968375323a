/* module.c: cubins in, kernels launched (see module.h). Shipped in exported libraries. */
#include "runtime/cuda/module.h"
#include "runtime/core/error.h"

#include <stdio.h>
#include <string.h>

int mta_cuda_module_load(struct mta_cuda *c, const void *cubin, const char *entry,
			 unsigned block, unsigned smem, unsigned bq, unsigned hpb, unsigned cs,
			 struct mta_cuda_module *m)
{
	cu_result r;
	int rc;

	memset(m, 0, sizeof *m);
	if (!cubin)
		return mta_fail(MTA_EINVAL, "no cubin to load");
	if (!bq || !hpb || !block || !cs)
		return mta_fail(MTA_EINVAL, "kernel %s: launch geometry missing", entry);
	if (cs > 1 && !mta_cuda_has_clusters(c->dev.arch))
		return mta_fail(MTA_EUNSUPPORTED, "kernel %s runs in clusters of %u blocks; %s (%s) "
				"has none (sm_90 or later)", entry, cs, c->dev.name, c->dev.arch);
	if (smem > (unsigned)c->dev.smem_optin)
		return mta_fail(MTA_EUNSUPPORTED, "the kernel needs %u bytes of shared memory; %s "
				"(%s) allows %d per block", smem, c->dev.name, c->dev.arch,
				c->dev.smem_optin);
	if ((rc = mta_cu_push(c)))
		return rc;
	m->c = c;
	m->block = block;
	m->smem = smem;
	m->bq = bq;
	m->hpb = hpb;
	m->cs = cs;
	if ((r = mta_cu.mod_load(&m->mod, cubin)))
		rc = mta_fail(MTA_EKERNEL, "the driver refused the cubin (cuModuleLoadData): %s",
			      mta_cu_error(r));
	else if ((r = mta_cu.mod_func(&m->fn, m->mod, entry)))
		rc = mta_fail(MTA_EKERNEL, "the cubin has no kernel %s: %s", entry, mta_cu_error(r));
	else if (smem > 48 * 1024 &&
		 (r = mta_cu.func_attr(m->fn, CU_FUNC_MAX_DYNAMIC_SHARED, (int)smem)))
		rc = mta_fail(MTA_EUNSUPPORTED, "cannot raise the kernel's dynamic shared memory: %s",
			      mta_cu_error(r));
	if (rc && m->mod)
		mta_cu.mod_unload(m->mod);
	mta_cu_pop();
	if (rc)
		memset(m, 0, sizeof *m);
	return rc;
}

int mta_cuda_has_clusters(const char *arch)
{
	int sm = 0;
	return arch && sscanf(arch, "sm_%d", &sm) == 1 && sm >= 90;
}

void mta_cuda_module_unload(struct mta_cuda_module *m)
{
	if (!m || !m->mod || mta_cu_push(m->c))
		return;
	mta_cu.mod_unload(m->mod);
	mta_cu_pop();
	m->mod = NULL;
}

int mta_cuda_module_launch(const struct mta_cuda_module *m, const struct mta_cuda_args *a, int H,
			   cu_stream stream)
{
	void *params[1] = { (void *)a };
	const int hpc = (int)(m->hpb * m->cs); /* heads a cluster */
	if (a->B < 1 || a->B > 65535 || a->T < 1 || H < 1 || H % hpc)
		return mta_fail(MTA_EINVAL, "launch of B=%d, T=%d, H=%d with %u heads per block, %u "
				"blocks a cluster", a->B, a->T, H, m->hpb, m->cs);
	/* a cluster's blocks are consecutive in x, on one query tile */
	unsigned gx = (unsigned)((a->T + (int)m->bq - 1) / (int)m->bq) * m->cs;
	cu_result r = mta_cu.launch(m->fn, gx, (unsigned)(H / hpc), (unsigned)a->B, m->block, 1, 1,
				    m->smem, stream, params, NULL);
	if (r)
		return mta_fail(MTA_EKERNEL, "cuLaunchKernel: %s", mta_cu_error(r));
	return MTA_OK;
}

int mta_cuda_module_launch_varlen(const struct mta_cuda_module *m, const struct mta_cuda_args *a,
				  int H, int ntiles, cu_stream stream)
{
	void *params[1] = { (void *)a };
	const int hpc = (int)(m->hpb * m->cs);
	if (!a->cu || !a->tile_off || a->ndocs < 1 || a->B != 1 || ntiles < 1 || H < 1 || H % hpc)
		return mta_fail(MTA_EINVAL, "packed launch of %d documents, %d tiles, H=%d with %u "
				"heads per block, %u blocks a cluster", a->ndocs, ntiles, H, m->hpb,
				m->cs);
	cu_result r = mta_cu.launch(m->fn, (unsigned)ntiles * m->cs, (unsigned)(H / hpc), 1,
				    m->block, 1, 1, m->smem, stream, params, NULL);
	if (r)
		return mta_fail(MTA_EKERNEL, "cuLaunchKernel: %s", mta_cu_error(r));
	return MTA_OK;
}
