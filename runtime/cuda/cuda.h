/*
 * cuda.h: the CUDA backend's parts (runtime/cuda/backend.c puts them behind
 * struct mta_backend): kernels of (problem, variant) loaded from cubins, one
 * forward's tensors moved to the device and back, launches timed with
 * events, and cubins kept in the database.
 *
 * Every function pushes the device's context and pops it again (driver.h).
 */
#ifndef MTA_CUDA_CUDA_H
#define MTA_CUDA_CUDA_H

#include "db/db.h"
#include "gen/variant.h"
#include "runtime/core/cuda_args.h"
#include "runtime/cuda/decode_dev.h"
#include "runtime/cuda/driver.h"
#include "runtime/cuda/nvrtc.h"

/*
 * Load the cubin of CUDA variant v of p and find its kernel (module.h).
 * MTA_EUNSUPPORTED when the kernel needs more shared memory than the device
 * has, MTA_EKERNEL when the driver refuses the image.
 */
struct mta_cuda_kernel;
int mta_cuda_kernel_load(struct mta_cuda *c, const struct mta_problem *p,
			 const struct mta_variant *v, const void *cubin, size_t n,
			 struct mta_cuda_kernel **out);
void mta_cuda_kernel_free(struct mta_cuda_kernel *k);
struct mta_cuda *mta_cuda_kernel_device(const struct mta_cuda_kernel *k);

/*
 * The backward (bwd.h) of CUDA backward variant v of p: generated, compiled
 * with NVRTC for c's architecture and loaded (mta_cuda_train_open).
 * MTA_ECOMPILE, MTA_ENODEV (no NVRTC), MTA_EKERNEL (the driver refused it).
 */
struct mta_cuda_train;
int mta_cuda_train_load(struct mta_cuda *c, const struct mta_problem *p,
			const struct mta_variant *v, struct mta_cuda_train **out);

/*
 * Device copies of one forward's q, k, v (made contiguous), weights and a
 * contiguous float32 output [B,T,H,D] filled with NaN bytes, so an element
 * the kernel skips shows.
 */
struct mta_cuda_io;
int mta_cuda_io_upload(struct mta_cuda *c, const struct mta_problem *p,
		       const struct mta_tensor *q, const struct mta_tensor *k,
		       const struct mta_tensor *v, const struct mta_weights *w,
		       struct mta_cuda_io **out);
void mta_cuda_io_free(struct mta_cuda_io *io);
/* Copy the output to host tensor o (float32 [B,T,H,D], any strides); waits. */
int mta_cuda_io_download(struct mta_cuda_io *io, struct mta_tensor *o);

/*
 * Launch k on io's tensors and wait for it; with ms non-NULL the launch
 * alone is timed by a pair of CUDA events (*ms). MTA_EKERNEL with the
 * driver's error.
 */
int mta_cuda_run(struct mta_cuda_kernel *k, struct mta_cuda_io *io, double *ms);

/*
 * Write over a device buffer twice the L2 size (allocated on first use and
 * kept in c), so that the next launch finds nothing of the last one in L2.
 */
int mta_cuda_flush_l2(struct mta_cuda *c);

/* Upload, run, download, free: one forward with host tensors in and out. */
int mta_cuda_forward(struct mta_cuda_kernel *k, const struct mta_problem *p,
		     const struct mta_tensor *q, const struct mta_tensor *kt,
		     const struct mta_tensor *v, const struct mta_weights *w,
		     struct mta_tensor *o);

/*
 * Packed documents (cu_seqlens checked by the caller, B = 1): one launch
 * over every document's query tiles (templates/mta_cuda.cu, doc_tile),
 * with host tensors in and out as mta_cuda_forward.
 */
int mta_cuda_forward_varlen(struct mta_cuda_kernel *k, const struct mta_problem *p,
			    const struct mta_tensor *q, const struct mta_tensor *kt,
			    const struct mta_tensor *v, const struct mta_weights *w,
			    const int64_t *cu, int64_t ndocs, struct mta_tensor *o);

/* ---- mta_attention's device path (no copy, no wait) ---------------------- */
/*
 * Enqueue k with arguments a (device pointers) on stream (NULL: the
 * device's own stream) and return; pushes the device's context and pops it,
 * so the caller's current context is unchanged.
 */
int mta_cuda_launch_async(struct mta_cuda_kernel *k, const struct mta_cuda_args *a, void *stream);

/* ---- cubins --------------------------------------------------------------- */
/*
 * The NVRTC options besides the architecture that shape a cubin (those
 * runtime/cuda/nvrtc.c always passes); part of the key of stored binaries.
 */
#define MTA_CUDA_BINARY_OPTIONS MTA_NVRTC_OPTIONS

/*
 * The database key of the cubin of a source (hash from mta_hash_hex) for
 * arch, compiled by NVRTC nvrtc ("13.0"). compiler must hold 32 bytes; k's
 * strings point into the arguments.
 */
void mta_cuda_binary_key(const char *source_hash, const char *arch, const char *nvrtc,
			 char compiler[32], struct mta_db_binary_key *k);

/*
 * The cubin of variant v of p for arch: from db when stored (db may be
 * NULL), else compiled with NVRTC (and not stored: the runtime only reads
 * the database; the tuner stores what it builds, tuner/tune/prep.c).
 * *cubin is malloc'd. MTA_ECOMPILE with the log's start when NVRTC refuses
 * it, MTA_ENODEV without NVRTC.
 */
int mta_cuda_cubin(struct mta_db *db, const struct mta_problem *p, const struct mta_variant *v,
		   const char *arch, void **cubin, size_t *n);

/*
 * The decode kernel (templates/mta_cuda_decode.cu) of p and decode variant v
 * (NULL: the default) on c's GPU (decode_drv.c): generated, compiled by
 * NVRTC for c's architecture, loaded by the driver; *dec is how a cache
 * calls it (runtime/core/decode.h): its caches live in c's device memory
 * (dec->mem), each call is one launch of a block per sequence on c's
 * stream, waited for. MTA_ENODEV without NVRTC, MTA_ECOMPILE when NVRTC
 * refuses the source, MTA_EKERNEL when the driver refuses the cubin.
 */
struct mta_decoder;
struct mta_cuda_decode;
int mta_cuda_decode_load(struct mta_cuda *c, const struct mta_problem *p,
			 const struct mta_variant *v, struct mta_cuda_decode **out,
			 struct mta_decoder *dec);
/* freed by mta_cuda_decode_free (decode_dev.h) */

/* NVRTC's version as "13.0" into buf (16 bytes). */
int mta_cuda_nvrtc_version(char *buf, size_t n);

#endif
