/*
 * decode_dev.h: a loaded CUDA decode kernel (templates/mta_cuda_decode.cu)
 * as a decode cache calls it (runtime/core/decode.h), from its cubin. The
 * cuda backend compiles the cubin with NVRTC first (decode_drv.c,
 * mta_cuda_decode_load); an exported CUDA library ships the cubin, this
 * header and decode_dev.c (the Makefile's SHIP) and opens it here: they
 * include only the core layer and the driver's files.
 */
#ifndef MTA_CUDA_DECODE_DEV_H
#define MTA_CUDA_DECODE_DEV_H

struct mta_cuda;
struct mta_decoder;
struct mta_cuda_decode;

/*
 * Load cubin (entry "mta_decode_row", a block of threads threads and smem
 * bytes of dynamic shared memory per sequence) on c's device and fill *dec
 * with it: its caches live in c's device memory (dec->mem), each call is
 * one launch of a block per sequence on c's stream, waited for. *out owns
 * the module; free it after every cache that uses it. MTA_ENODEV when c is
 * NULL, MTA_EKERNEL when the driver refuses the cubin.
 */
int mta_cuda_decode_open(struct mta_cuda *c, const void *cubin, unsigned threads, unsigned smem,
			 struct mta_cuda_decode **out, struct mta_decoder *dec);
void mta_cuda_decode_free(struct mta_cuda_decode *k); /* NULL is fine */

#endif
