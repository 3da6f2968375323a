/*
 * bwd_nvrtc.c: the cuda backend's backward built at run time (cuda.h): the
 * source of mta_gen_cuda_bwd compiled by NVRTC for the device, then loaded
 * as any cubin of the backward (bwd_drv.c). Not shipped: an exported
 * library carries its cubins.
 */
#include "runtime/cuda/cuda.h"
#include "gen/cuda/cudagen.h"
#include "runtime/core/error.h"
#include "runtime/cuda/bwd.h"
#include "runtime/cuda/nvrtc.h"

#include <stdlib.h>

int mta_cuda_train_load(struct mta_cuda *c, const struct mta_problem *p,
			const struct mta_variant *v, struct mta_cuda_train **out)
{
	struct mta_nvrtc_job job = { 0 };
	struct mta_cuda_bwd_dims d;
	struct mta_cuda_bwd_shape s;
	char *src = NULL;
	int rc;

	*out = NULL;
	if ((rc = mta_cuda_bwd_dims(p, v, 1, 1, &d, NULL)) || (rc = mta_gen_cuda_bwd(p, v, &src)))
		goto out;
	job.source = src;
	job.kernel = MTA_CUDA_BWD_KERNEL;
	job.arch = c->dev.arch;
	if ((rc = mta_nvrtc_compile(&job)))
		goto out;
	s = mta_cuda_bwd_shape_of(v);
	rc = mta_cuda_train_open(c, p, &s, job.cubin, out);
out:
	mta_nvrtc_job_free(&job);
	free(src);
	return rc ? mta_wrap(rc, "cuda backward") : MTA_OK;
}
