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

/*
 * The emulator's shared library of the CUDA backward of (p, v), built (or
 * found in the kernel cache) as the cuda-emu backend's train_load builds it:
 * its path into so (n bytes). Its entry "mta_emu_launch" takes (const struct
 * mta_cuda_bargs *, its size, grid, threads, shared bytes) as a launch of
 * the cubin NVRTC makes of the same source takes that struct: what lets a
 * test stand in for a GPU under an exported library's backward
 * (tests/export/fakecuda.c). Errors as mta_emu_run's.
 */
int mta_emu_bwd_library(const struct mta_problem *p, const struct mta_variant *v, char *so,
			size_t n);

/*
 * The forward kernel of p and v built for the emulator as the cuda-emu
 * backend's load builds it: its path into so (n bytes); its entry
 * "mta_emu_launch" takes (const struct mta_cuda_args *, its size, grid,
 * threads, shared bytes), as mta_emu_bwd_library's does. Errors likewise.
 */
int mta_emu_fwd_library(const struct mta_problem *p, const struct mta_variant *v, char *so,
			size_t n);

/*
 * The CUDA decode kernel of p and decode variant v (NULL: the default)
 * built for the emulator as the cuda-emu backend's decode_load builds it:
 * its path into so (n bytes). Its entry "mta_cuda_decode" takes the struct
 * mta_dargs a launch of the cubin NVRTC makes of the same source takes
 * (host pointers: the emulator's device memory is the host's) and runs its
 * grid of a block per sequence: a test's stand-in driver runs an exported
 * library's decode with it (tests/export/fakecuda.c). Errors as
 * mta_emu_bwd_library's.
 */
int mta_emu_decode_library(const struct mta_problem *p, const struct mta_variant *v, char *so,
			   size_t n);

#endif
