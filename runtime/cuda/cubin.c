/*
 * cubin.c: cubins of generated kernels, stored in the database keyed by
 * what determines them (source hash, architecture, NVRTC version, options),
 * so the runtime loads a tuned kernel without compiling it again.
 */
#include "runtime/cuda/cuda.h"
#include "runtime/core/hash.h"
#include "gen/cuda/cudagen.h"
#include "runtime/core/error.h"
#include "runtime/cuda/nvrtc.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int mta_cuda_nvrtc_version(char *buf, size_t n)
{
	int maj = 0, min = 0, rc = mta_nvrtc_version(&maj, &min);
	if (rc)
		return rc;
	snprintf(buf, n, "%d.%d", maj, min);
	return MTA_OK;
}

void mta_cuda_binary_key(const char *source_hash, const char *arch, const char *nvrtc,
			 char compiler[32], struct mta_db_binary_key *k)
{
	snprintf(compiler, 32, "nvrtc-%s", nvrtc);
	k->source_hash = source_hash;
	k->target = arch;
	k->compiler = compiler;
	k->options = MTA_CUDA_BINARY_OPTIONS;
}

int mta_cuda_cubin(struct mta_db *db, const struct mta_problem *p, const struct mta_variant *v,
		   const char *arch, void **cubin, size_t *n)
{
	struct mta_nvrtc_job job = { 0 };
	struct mta_db_binary_key key;
	char ver[16], compiler[32], hash[17];
	char *src = NULL;
	int rc;

	*cubin = NULL;
	*n = 0;
	if ((rc = mta_gen_cuda(p, v, &src)) || (rc = mta_cuda_nvrtc_version(ver, sizeof ver)))
		goto out;
	mta_hash_hex(src, strlen(src), hash);
	mta_cuda_binary_key(hash, arch, ver, compiler, &key);
	if (db && mta_db_binary_get(db, &key, cubin, n) == MTA_OK && *n > 0)
		goto out;
	free(*cubin);
	*cubin = NULL;
	*n = 0;
	job.source = src;
	job.kernel = MTA_CUDA_KERNEL;
	job.arch = arch;
	if ((rc = mta_nvrtc_compile(&job)))
		goto out;
	*cubin = job.cubin;
	*n = job.cubin_size;
	job.cubin = NULL;
out:
	mta_nvrtc_job_free(&job);
	free(src);
	return rc;
}
