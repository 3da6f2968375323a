/*
 * emu.h: run a generated CUDA kernel on the CPU through the emulator
 * (templates/cuda_emu.h): the cuda-emu backend (runtime/cuda/emu.c) for
 * tests and `mtatune run --backend cuda-emu`.
 *
 * The very source NVRTC compiles is built with the host C++ compiler
 * (mta_cc_build, cached) with the emulator header in front, and launched with
 * the geometry a GPU launch would use: blocks one at a time, each block's
 * threads as pthreads with real barriers.
 */
#ifndef MTA_CUDA_EMU_H
#define MTA_CUDA_EMU_H

#include "gen/variant.h"

/*
 * Forward of problem p with CUDA variant var: q, k, v of p's dtype, o float32
 * [B,T,H,D], all with d contiguous (any b, t, h strides). MTA_EINVAL for a
 * variant that does not fit p or a missing weight, MTA_ESHAPE for bad
 * tensors, MTA_ECOMPILE when the host compiler refuses the source (message
 * carries the start of its log), MTA_EKERNEL when the launch fails.
 */
int mta_emu_run(const struct mta_problem *p, const struct mta_variant *var,
		const struct mta_tensor *q, const struct mta_tensor *k,
		const struct mta_tensor *v, const struct mta_weights *w,
		struct mta_tensor *o);

#endif
