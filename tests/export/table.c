/*
 * table.c: print the dispatch table of the exported library it is linked
 * with (tests/test_export.c builds it against lib<NAME>.a with
 * -I<library>/src, so that it reads the library's own mtx_library, a
 * hidden symbol, through the shipped templates/export_table.h). What a
 * library carries can then be checked without running a kernel: which
 * kernels, which entry points and launches, which cubins (by their hash).
 *
 * Output, one line each:
 *   library NAME BACKEND ARCH NPROBLEMS NKERNELS
 *   kernel I SPEC ENTRY BLOCK SMEM BQ HPB BWD_BQ BWD_WARPS BWD_NB CUBIN_BYTES CUBIN_HASH
 *     (ENTRY "-" for a CPU kernel; BWD_* 0 for a forward; CUBIN_* 0 and "-" without one)
 *   problem KEY DEFAULT BWD_DEFAULT DEC_DEFAULT
 *   bucket KEY fwd|bwd|dec T_BUCKET B_BUCKET KERNEL
 */
#include "templates/export_table.h"
#include "runtime/core/hash.h"

#include <stdio.h>

int main(void)
{
	const struct mtx_library *l = &mtx_library;
	printf("library %s %s %s %d %d\n", l->name, l->backend, l->arch[0] ? l->arch : "-",
	       l->nproblems, l->nkernels);
	for (int i = 0; i < l->nkernels; i++) {
		const struct mtx_kernel *k = &l->kernels[i];
		char hash[17] = "-";
		if (k->cubin)
			mta_hash_hex(k->cubin, k->cubin_size, hash);
		printf("kernel %d %s %s %u %u %u %u %d %d %d %zu %s\n", i, k->spec,
		       k->entry ? k->entry : "-", k->block, k->smem, k->bq, k->hpb, k->shape.bq,
		       k->shape.warps, k->shape.nb, k->cubin ? k->cubin_size : 0, hash);
	}
	for (int i = 0; i < l->nproblems; i++) {
		const struct mtx_problem *p = &l->problems[i];
		printf("problem %s %d %d %d\n", p->key, p->default_kernel, p->bwd_default,
		       p->dec_default);
		for (int j = 0; j < p->nbuckets; j++)
			printf("bucket %s fwd %lld %lld %d\n", p->key, (long long)p->buckets[j].t_bucket,
			       (long long)p->buckets[j].b_bucket, p->buckets[j].kernel);
		for (int j = 0; j < p->nbwd; j++)
			printf("bucket %s bwd %lld %lld %d\n", p->key,
			       (long long)p->bwd_buckets[j].t_bucket,
			       (long long)p->bwd_buckets[j].b_bucket, p->bwd_buckets[j].kernel);
		for (int j = 0; j < p->ndec; j++)
			printf("bucket %s dec %lld %lld %d\n", p->key,
			       (long long)p->dec_buckets[j].t_bucket,
			       (long long)p->dec_buckets[j].b_bucket, p->dec_buckets[j].kernel);
	}
	return 0;
}
