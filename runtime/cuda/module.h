/*
 * module.h: a cubin loaded on a device and its kernel launched: the launch
 * code shared by the runtime (runtime/cuda/run.c) and the runtime of an
 * exported library (templates/export_runtime.c), which ships this file.
 *
 * A kernel's launch is described by four numbers the generator knows
 * (gen/cuda/cudagen.h): threads per block, dynamic shared memory, and the
 * query rows and heads one block covers; the grid follows from B, T and H.
 */
#ifndef MTA_CUDA_MODULE_H
#define MTA_CUDA_MODULE_H

#include "runtime/core/cuda_args.h"
#include "runtime/cuda/driver.h"

struct mta_cuda_module {
	struct mta_cuda *c;
	cu_mod mod;
	cu_func fn;
	unsigned block;  /* threads per block */
	unsigned smem;   /* dynamic shared memory, bytes */
	unsigned bq;     /* query rows per block */
	unsigned hpb;    /* heads per block */
	unsigned cs;     /* blocks a cluster, consecutive in x on one query tile (1: none) */
};

/*
 * Load cubin on c's device and find kernel entry; raise the kernel's
 * dynamic shared memory limit when it needs more than 48 KiB. MTA_EUNSUPPORTED
 * when it needs more than the device has, MTA_EKERNEL when the driver refuses
 * the image. The caller's current context is left as it was.
 */
int mta_cuda_module_load(struct mta_cuda *c, const void *cubin, const char *entry,
			 unsigned block, unsigned smem, unsigned bq, unsigned hpb, unsigned cs,
			 struct mta_cuda_module *m);
void mta_cuda_module_unload(struct mta_cuda_module *m);

/* Whether architecture arch ("sm_90") runs thread block clusters (sm_90 on). */
int mta_cuda_has_clusters(const char *arch);

/*
 * Enqueue one launch of m with arguments a for H heads on stream (NULL: the
 * context's default stream); c's context must be current (mta_cu_push).
 * Does not wait.
 */
int mta_cuda_module_launch(const struct mta_cuda_module *m, const struct mta_cuda_args *a, int H,
			   cu_stream stream);

/*
 * The same for packed documents (a->cu and a->tile_off set, in device
 * memory): ntiles = tile_off[ndocs] query tiles along x, batch 1.
 */
int mta_cuda_module_launch_varlen(const struct mta_cuda_module *m, const struct mta_cuda_args *a,
				  int H, int ntiles, cu_stream stream);

#endif
