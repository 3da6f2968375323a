/*
 * cuda_bwd.h: the CUDA backward's launch plan (templates/mta_cuda_bwd.cu),
 * computed from its shape alone: core layer, so that the host side of the
 * backward (runtime/cuda/bwd.c) and an exported library, which ships both
 * and has no variants, size and cut the launch as mtatune's runtime does.
 * gen/cuda/cudagen.h's mta_cuda_bwd_dims takes a variant, checks it and
 * calls mta_cuda_bwd_plan with its shape.
 */
#ifndef MTA_CORE_CUDA_BWD_H
#define MTA_CORE_CUDA_BWD_H

#include "runtime/mta.h"

#include <stddef.h>

/* The backward's extern "C" kernel: modes 0 (saving forward), 1 (backward), 2 (reduction). */
#define MTA_CUDA_BWD_KERNEL "mta_bwd"

/*
 * What of a backward variant shapes its launch (its tunables bq, warps and
 * nb, gen/cuda/space.c): bq query rows per task, warps per block, nb most
 * blocks of the persistent grid. The source holds bq and warps; nb is the
 * launcher's alone.
 */
struct mta_cuda_bwd_shape {
	int bq, warps, nb;
};

/*
 * Work and memory: the tasks (batch, tile of bq rows), in order, are cut
 * into nb contiguous ranges of about equal cost (a row costs its length),
 * one per block of the persistent grid. A block adds its rows' shares of
 * dk and dv into its own partial, which covers only the keys its rows
 * reach: for each batch its range touches, keys [0, its last row there)
 * (causal: a row reaches no later key). The partials of all blocks hold
 * at most (B - 1 + nb) * T rows of Hkv*D floats for dk and as many for dv
 * (a batch boundary falls inside at most one block's range, and a block's
 * last batch adds at most T), where one partial per block over all of
 * B*T keys took nb * B * T: the bound no longer grows with B * nb.
 */
struct mta_cuda_bwd_dims {
	unsigned threads;      /* per block */
	unsigned nb;           /* blocks of modes 0 and 1: min(variant's nb, tasks) */
	unsigned reduce_blocks; /* blocks of mode 2 */
	size_t smem_bytes;     /* dynamic shared memory */
	long long ntasks;      /* B * ceil(T / bq) */
	long long ws_stride;   /* workspace floats per block (the template's W_FIXED + W_ROWS*T) */
	long long part_rows;   /* rows of the partials (the plan's last offset) */
	long long part_floats; /* partial dk, dv: 2 * part_rows * Hkv*D */
	int wg_n;              /* weight-gradient partials per block (doubles), = floats of dw */
	/* offsets into dw of each weight's gradient (the template's WG_*) */
	int wg_k1, wg_pre, wg_k2, wg_post, wg_gn, wg_gw, wg_gb;
};

/*
 * The sizes above for the backward of shape s on p at B batches of length
 * T; with plan (2 * (nb + 1) long longs, the dims' nb: at most s->nb + 1
 * each), also the plan the kernel reads: plan[w] the first task of block w
 * (plan[nb] = tasks), plan[nb + 1 + w] the first partial row of block w
 * (plan[2 nb + 1] = part_rows). Deterministic in (p, s, B, T). MTA_EINVAL
 * for a shape no backward variant has (bq, warps or nb below 1) or B, T
 * out of the kernel's range. s is not held to the variant's rules (the
 * space's halo, register and shared-memory limits): that is the caller's,
 * when it makes the shape from a variant.
 */
int mta_cuda_bwd_plan(const struct mta_problem *p, const struct mta_cuda_bwd_shape *s, int64_t B,
		      int64_t T, struct mta_cuda_bwd_dims *d, long long *plan);

#endif
