/*
 * cuda.h: the CUDA driver API, loaded at run time, and what mtatune does
 * with it: name the devices, load a cubin, move one forward's tensors to the
 * device and back, launch, and time launches with events.
 *
 * The driver (libcuda.so.1, or $MTATUNE_LIBCUDA when set) is opened with
 * dlopen on first use, so every mtatune binary starts, and the CPU backend
 * works, on a machine without it. There each function returns MTA_ENODEV with
 * "no CUDA driver (libcuda.so.1) found: ..."; with a driver but no device,
 * MTA_ENODEV with "no CUDA device found ...". CUDA_VISIBLE_DEVICES is honoured
 * by the driver itself.
 *
 * Fork: a process that has initialised CUDA must not use it in a forked
 * child. The tuner therefore never touches the driver in its own process; it
 * asks a child (tuner/isolate.h) for the device's identity and runs every
 * CUDA measurement in a child.
 */
#ifndef MTA_CUDA_H
#define MTA_CUDA_H

#include "db.h"
#include "variant.h"

struct mta_cuda_device {
	int index;             /* ordinal among the visible devices */
	char name[256];        /* e.g. "NVIDIA H100 80GB HBM3" */
	char arch[16];         /* sm_XY from the compute capability */
	int cc_major, cc_minor;
	int sms;               /* multiprocessors */
	int driver;            /* cuDriverGetVersion, e.g. 13000 */
	char driver_str[16];   /* "13.0" */
	size_t total_mem;      /* bytes */
	int l2_bytes;          /* L2 cache size */
	int smem_optin;        /* shared memory per block with opt-in, bytes */
	int regs_per_block;
	int max_threads;       /* threads per block */
};

/* Load the driver and cuInit. MTA_OK, or MTA_ENODEV saying what was missing. */
int mta_cuda_driver_load(void);

/* Number of visible devices (loads the driver); 0 devices is MTA_ENODEV. */
int mta_cuda_device_count(int *n);

/* Identity and limits of device index. MTA_ENODEV for an index out of range. */
int mta_cuda_device_info(int index, struct mta_cuda_device *d);

/* The device mtatune uses unless told otherwise: $MTATUNE_CUDA_DEVICE, else 0. */
int mta_cuda_default_index(void);

/*
 * The database identity of d: backend "cuda", name, arch, driver version,
 * NVRTC version (e.g. "13.0"), SMs as cores. Strings point into d and nvrtc.
 */
void mta_cuda_db_device(const struct mta_cuda_device *d, const char *nvrtc,
			struct mta_db_device *out);

/* ---- a device in use ---------------------------------------------------- */
struct mta_cuda; /* device, its primary context, one stream */

/* Retain device index's primary context and create a stream. */
int mta_cuda_open(int index, struct mta_cuda **out);
void mta_cuda_close(struct mta_cuda *c); /* NULL is fine */
const struct mta_cuda_device *mta_cuda_dev(const struct mta_cuda *c);

/*
 * Load the cubin of CUDA variant v of p and find its kernel; raise the
 * kernel's dynamic shared memory limit when it needs more than 48 KiB.
 * MTA_EUNSUPPORTED when the kernel needs more shared memory than the device
 * has, MTA_EKERNEL when the driver refuses the image.
 */
struct mta_cuda_kernel;
int mta_cuda_kernel_load(struct mta_cuda *c, const struct mta_problem *p,
			 const struct mta_variant *v, const void *cubin, size_t n,
			 struct mta_cuda_kernel **out);
void mta_cuda_kernel_free(struct mta_cuda_kernel *k);

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

/* Launch k on io's tensors and wait for it; MTA_EKERNEL with the driver's error. */
int mta_cuda_run(struct mta_cuda_kernel *k, struct mta_cuda_io *io);

/*
 * Time k on io: warmup untimed launches, then reps launches each measured by
 * a pair of CUDA events around the launch alone, each preceded (outside the
 * events) by a write over a device buffer twice the L2 size, so that no run
 * finds the previous run's data in L2. ms[reps] receives the times.
 */
int mta_cuda_time(struct mta_cuda_kernel *k, struct mta_cuda_io *io, int warmup, int reps,
		  double *ms);

/* Upload, run, download, free: one forward with host tensors in and out. */
int mta_cuda_forward(struct mta_cuda_kernel *k, const struct mta_problem *p,
		     const struct mta_tensor *q, const struct mta_tensor *kt,
		     const struct mta_tensor *v, const struct mta_weights *w,
		     struct mta_tensor *o);

/* ---- cubins --------------------------------------------------------------- */
/*
 * The NVRTC options besides the architecture that shape a cubin (those
 * runtime/nvrtc.c always passes); part of the key of stored binaries.
 */
#define MTA_CUDA_BINARY_OPTIONS "--std=c++17 --ptxas-options=-v"

/*
 * The database key of the cubin of a source (hash from mta_hash_hex) for
 * arch, compiled by NVRTC nvrtc ("13.0"). compiler must hold 32 bytes; k's
 * strings point into the arguments.
 */
void mta_cuda_binary_key(const char *source_hash, const char *arch, const char *nvrtc,
			 char compiler[32], struct mta_db_binary_key *k);

/*
 * The cubin of variant v of p for arch: from db when stored (db may be
 * NULL), else compiled with NVRTC, and then stored when store is set (db
 * writable). *cubin is malloc'd. MTA_ECOMPILE with the log's start when
 * NVRTC refuses it, MTA_ENODEV without NVRTC.
 */
int mta_cuda_cubin(struct mta_db *db, const struct mta_problem *p, const struct mta_variant *v,
		   const char *arch, int store, void **cubin, size_t *n);

/* NVRTC's version as "13.0" into buf (16 bytes). */
int mta_cuda_nvrtc_version(char *buf, size_t n);

#endif
