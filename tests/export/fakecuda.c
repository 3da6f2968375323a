/*
 * fakecuda.c: a stand-in for libcuda.so.1, for tests of an exported CUDA
 * library on a machine without a GPU (tests/test_export.c builds it with
 * `cc -shared` and points MTATUNE_LIBCUDA at it).
 *
 * It has one device (compute capability 9.0), whose memory is host memory,
 * copies are memcpy, and streams, events and contexts are tokens. A module
 * is loaded from a cubin (an ELF image: its length is read from its
 * header, its bytes hashed with mtatune's content hash); a function is
 * found only if its name is in the image, as in a real cubin's symbols.
 * A launch runs the emulator's build of the same source (the cuda-emu
 * backend's shared library, runtime/cuda/emu.h), chosen by the cubin's
 * hash from FAKECUDA_EMU="HASH=PATH;HASH=PATH..."; a cubin without one
 * fails its launches (CUDA error 98, invalid image).
 *
 * Every load and launch is logged to FAKECUDA_LOG (appended), one line each:
 *   load HASH BYTES
 *   func NAME HASH
 *   launch NAME GX GY GZ THREADS SMEM [MODE B T NB]   (MODE... for the backward)
 * A forward's launch runs mta_emu_fwd_library's build likewise. A decode
 * launch (entry "mta_decode_row", templates/mta_cuda_decode.cu)
 * runs the emulator's decode library (mta_emu_decode_library: its entry
 * mta_cuda_decode takes the launch's one parameter, struct mta_dargs, and
 * runs its grid of a block per sequence); its line's GX is the sequences.
 *
 * cuPointerGetAttributes knows the blocks cuMemAlloc handed out and not
 * yet freed: device memory of device $FAKECUDA_PTR_ORDINAL (default 0, the
 * one device; another stands for a second GPU's memory); anything else is
 * no CUDA memory (the attributes' defaults, as the driver answers).
 */
#define _GNU_SOURCE /* memmem */
#include "runtime/core/hash.h"
#include "runtime/core/cuda_args.h"
#include "runtime/core/mta_dargs.h"
#include "runtime/cuda/bwd.h"

#include <dlfcn.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef int (*emu_fn)(const void *args, size_t args_size, const unsigned grid[3],
		      unsigned threads, size_t smem_bytes);

struct fmod;
struct ffunc {
	struct fmod *m;
	char name[64];
};

struct fmod {
	char hash[17];
	const unsigned char *image;
	size_t size;
	emu_fn fn; /* NULL: no emulator for this cubin */
	int (*dfn)(const struct mta_dargs *a); /* a decode cubin's emulator entry, or NULL */
	struct ffunc funcs[4]; /* its functions, gone with it as a driver's are */
	int nfuncs;
};

static void logf_(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void logf_(const char *fmt, ...)
{
	const char *path = getenv("FAKECUDA_LOG");
	FILE *f = path ? fopen(path, "a") : NULL;
	va_list ap;
	if (!f)
		return;
	va_start(ap, fmt);
	vfprintf(f, fmt, ap);
	va_end(ap);
	fclose(f);
}

/* The length of an ELF64 image: the end of its section or program header table. */
static size_t elf_size(const unsigned char *b)
{
	uint64_t shoff, phoff;
	uint16_t shentsize, shnum, phentsize, phnum;
	if (memcmp(b, "\177ELF", 4) || b[4] != 2)
		return 0;
	memcpy(&phoff, b + 0x20, 8);
	memcpy(&shoff, b + 0x28, 8);
	memcpy(&phentsize, b + 0x36, 2);
	memcpy(&phnum, b + 0x38, 2);
	memcpy(&shentsize, b + 0x3a, 2);
	memcpy(&shnum, b + 0x3c, 2);
	size_t s = (size_t)(shoff + (uint64_t)shentsize * shnum);
	size_t p = (size_t)(phoff + (uint64_t)phentsize * phnum);
	return s > p ? s : p;
}

int cuInit(unsigned flags) { return 0; }
int cuDriverGetVersion(int *v) { *v = 13000; return 0; }
int cuDeviceGet(int *d, int i) { *d = i; return i == 0 ? 0 : 101; }
int cuDeviceGetCount(int *n) { *n = 1; return 0; }
int cuDeviceGetName(char *s, int n, int d)
{
	snprintf(s, (size_t)n, "fakecuda (tests/export/fakecuda.c)");
	return 0;
}
int cuDeviceGetAttribute(int *v, int attr, int d)
{
	switch (attr) {
	case 1: *v = 1024; break;          /* threads per block */
	case 12: *v = 65536; break;        /* registers per block */
	case 16: *v = 132; break;          /* multiprocessors */
	case 38: *v = 50 << 20; break;     /* L2 */
	case 75: *v = 9; break;            /* compute capability */
	case 76: *v = 0; break;
	case 97: *v = 232448; break;       /* shared memory with opt-in */
	default: *v = 0;
	}
	return 0;
}
int cuDeviceTotalMem_v2(size_t *n, int d) { *n = (size_t)80 << 30; return 0; }

static int ctx_token;
static __thread void *ctx_stack[64];
static __thread int ctx_depth;
int cuDevicePrimaryCtxRetain(void **c, int d) { *c = &ctx_token; return 0; }
int cuDevicePrimaryCtxRelease_v2(int d) { return 0; }
int cuCtxPushCurrent_v2(void *c)
{
	if (ctx_depth == 64)
		return 1;
	ctx_stack[ctx_depth++] = c;
	return 0;
}
int cuCtxPopCurrent_v2(void **c)
{
	if (!ctx_depth)
		return 201; /* invalid context */
	void *top = ctx_stack[--ctx_depth];
	if (c)
		*c = top;
	return 0;
}

int cuModuleLoadData(struct fmod **out, const void *image)
{
	struct fmod *m = calloc(1, sizeof *m);
	const char *map = getenv("FAKECUDA_EMU");
	if (!m)
		return 2;
	m->image = image;
	if (!(m->size = elf_size(image))) {
		free(m);
		return 200; /* invalid image */
	}
	mta_hash_hex(image, m->size, m->hash);
	logf_("load %s %zu\n", m->hash, m->size);
	for (const char *at = map ? strstr(map, m->hash) : NULL; at; at = NULL) {
		char path[4096];
		size_t n = strcspn(at + 17, ";");
		if (at[16] != '=' || n >= sizeof path)
			break;
		memcpy(path, at + 17, n);
		path[n] = 0;
		void *dl = dlopen(path, RTLD_NOW | RTLD_LOCAL);
		m->fn = dl ? (emu_fn)dlsym(dl, "mta_emu_launch") : NULL;
		m->dfn = dl ? (int (*)(const struct mta_dargs *))dlsym(dl, "mta_cuda_decode") : NULL;
	}
	*out = m;
	return 0;
}
int cuModuleUnload(struct fmod *m) { free(m); return 0; }
int cuModuleGetFunction(struct ffunc **out, struct fmod *m, const char *name)
{
	size_t l = strlen(name);
	if (m->nfuncs == 4)
		return 2;
	struct ffunc *f = &m->funcs[m->nfuncs];
	if (l >= sizeof f->name || !memmem(m->image, m->size, name, l + 1))
		return 500; /* not found */
	m->nfuncs++;
	f->m = m;
	memcpy(f->name, name, l + 1);
	logf_("func %s %s\n", name, m->hash);
	*out = f;
	return 0;
}
int cuFuncSetAttribute(struct ffunc *f, int attr, int v) { return 0; }
int cuLaunchKernel(struct ffunc *f, unsigned gx, unsigned gy, unsigned gz, unsigned bx,
		   unsigned by, unsigned bz, unsigned smem, void *stream, void **params,
		   void **extra)
{
	const unsigned grid[3] = { gx, gy, gz };
	if (!strcmp(f->name, MTA_CUDA_BWD_KERNEL)) {
		const struct mta_cuda_bargs *a = params[0];
		logf_("launch %s %u %u %u %u %u %d %d %d %d\n", f->name, gx, gy, gz, bx, smem,
		      a->mode, a->B, a->T, a->nb);
		if (!f->m->fn)
			return 98;
		return f->m->fn(a, sizeof *a, grid, bx, smem) ? 719 : 0; /* launch failed */
	}
	logf_("launch %s %u %u %u %u %u\n", f->name, gx, gy, gz, bx, smem);
	if (!strcmp(f->name, MTA_CUDA_KERNEL)) { /* the forward: mta_emu_fwd_library's entry */
		if (!f->m->fn)
			return 98;
		return f->m->fn(params[0], sizeof(struct mta_cuda_args), grid, bx, smem) ? 719 : 0;
	}
	if (!strcmp(f->name, "mta_decode_row")) {
		const struct mta_dargs *a = params[0];
		if (!f->m->dfn)
			return 98;
		if (a->n != (int64_t)gx || gy != 1 || gz != 1)
			return 1; /* invalid value: a block per sequence */
		return f->m->dfn(a) ? 719 : 0;
	}
	return 98;
}

/* the live blocks of cuMemAlloc, for cuPointerGetAttributes */
static struct { uintptr_t at; size_t n; } blocks[4096];
static int nblocks;
static pthread_mutex_t blocks_lock = PTHREAD_MUTEX_INITIALIZER;

int cuMemAlloc_v2(unsigned long long *p, size_t n)
{
	void *x = NULL;
	if (posix_memalign(&x, 256, n ? n : 1))
		return 2;
	pthread_mutex_lock(&blocks_lock);
	if (nblocks < (int)(sizeof blocks / sizeof blocks[0])) {
		blocks[nblocks].at = (uintptr_t)x;
		blocks[nblocks++].n = n ? n : 1;
	}
	pthread_mutex_unlock(&blocks_lock);
	*p = (uintptr_t)x;
	return 0;
}
int cuMemFree_v2(unsigned long long p)
{
	pthread_mutex_lock(&blocks_lock);
	for (int i = 0; i < nblocks; i++)
		if (blocks[i].at == p) {
			blocks[i] = blocks[--nblocks];
			break;
		}
	pthread_mutex_unlock(&blocks_lock);
	free((void *)(uintptr_t)p);
	return 0;
}
/* memory type (2), is managed (8), device ordinal (9); other attributes are refused */
int cuPointerGetAttributes(unsigned n, int *attrs, void **data, unsigned long long p)
{
	const char *o = getenv("FAKECUDA_PTR_ORDINAL");
	int in = 0;
	pthread_mutex_lock(&blocks_lock);
	for (int i = 0; i < nblocks && !in; i++)
		in = p >= blocks[i].at && p - blocks[i].at < blocks[i].n;
	pthread_mutex_unlock(&blocks_lock);
	for (unsigned i = 0; i < n; i++) {
		if (attrs[i] == 2)
			*(unsigned *)data[i] = in ? 2 : 0;
		else if (attrs[i] == 8)
			*(unsigned *)data[i] = 0;
		else if (attrs[i] == 9)
			*(int *)data[i] = in ? (o && *o ? atoi(o) : 0) : -2;
		else
			return 1; /* invalid value */
	}
	return 0;
}
int cuMemcpyHtoD_v2(unsigned long long d, const void *s, size_t n)
{
	memcpy((void *)(uintptr_t)d, s, n);
	return 0;
}
int cuMemcpyDtoH_v2(void *d, unsigned long long s, size_t n)
{
	memcpy(d, (const void *)(uintptr_t)s, n);
	return 0;
}
int cuMemcpyAsync(unsigned long long d, unsigned long long s, size_t n, void *st)
{
	memmove((void *)(uintptr_t)d, (const void *)(uintptr_t)s, n);
	return 0;
}
int cuMemsetD8Async(unsigned long long d, unsigned char v, size_t n, void *st)
{
	memset((void *)(uintptr_t)d, v, n);
	return 0;
}

static int token;
int cuStreamCreate(void **s, unsigned flags) { *s = &token; return 0; }
int cuStreamSynchronize(void *s) { return 0; }
int cuStreamDestroy_v2(void *s) { return 0; }
int cuEventCreate(void **e, unsigned flags) { *e = &token; return 0; }
int cuEventRecord(void *e, void *s) { return 0; }
int cuEventSynchronize(void *e) { return 0; }
int cuEventElapsedTime_v2(float *ms, void *a, void *b) { *ms = 0; return 0; }
int cuEventDestroy_v2(void *e) { return 0; }
int cuGetErrorName(int r, const char **s)
{
	*s = r == 98 ? "CUDA_ERROR_INVALID_IMAGE" : r == 500 ? "CUDA_ERROR_NOT_FOUND" :
	     "CUDA_ERROR_UNKNOWN";
	return 0;
}
int cuGetErrorString(int r, const char **s)
{
	*s = r == 98 ? "fakecuda: no emulator for this cubin" : r == 500 ? "fakecuda: no such "
	     "function in the cubin" : "fakecuda: error";
	return 0;
}
