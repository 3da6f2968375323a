/*
 * decode_drv.c: the CUDA decode kernel on a GPU (cuda.h,
 * mta_cuda_decode_load): the source of mta_gen_cuda_decode compiled by
 * NVRTC for the device, then loaded as a cache's kernel by decode_dev.c
 * (the device's memory as the cache's and the launch), which exported
 * CUDA libraries ship to run their decode cubins the same way.
 */
#include "runtime/cuda/cuda.h"
#include "gen/cuda/cudagen.h"
#include "runtime/core/decode.h"
#include "runtime/core/error.h"
#include "runtime/core/mta_dargs.h"
#include "runtime/cuda/decode_dev.h"

#include <inttypes.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

int mta_cuda_decode_load(struct mta_cuda *c, const struct mta_problem *p,
			 const struct mta_variant *v, struct mta_cuda_decode **out,
			 struct mta_decoder *dec)
{
	struct mta_nvrtc_job job = { 0 };
	char *src = NULL;
	unsigned threads = 0;
	size_t smem = 0;
	int rc;

	*out = NULL;
	memset(dec, 0, sizeof *dec);
	if (!c)
		return mta_fail(MTA_ENODEV, "cuda decode: no CUDA device");
	if ((rc = mta_cuda_decode_dims(p, v, &threads, &smem)) ||
	    (rc = mta_gen_cuda_decode(p, v, &src)))
		goto out;
	job.source = src;
	job.kernel = MTA_CUDA_DECODE_KERNEL;
	job.arch = c->dev.arch;
	if ((rc = mta_nvrtc_compile(&job)) ||
	    (rc = mta_cuda_decode_open(c, job.cubin, threads, (unsigned)smem, out, dec)))
		goto out;
out:
	mta_nvrtc_job_free(&job);
	free(src);
	return rc ? mta_wrap(rc, "cuda decode kernel") : MTA_OK;
}
