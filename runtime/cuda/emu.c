/*
 * emu.c: the cuda-emu backend (runtime/backend.h): a generated CUDA kernel
 * built for the CPU emulator and launched there (see emu.h). The emulator
 * header is embedded in the library and prepended to the source, so an
 * installed mtatune needs no source tree. Its timings say nothing about a
 * GPU, so the tuner does not tune it (timed = 0).
 */
#include "runtime/cuda/emu.h"
#include "runtime/cuda/bwd.h"
#include "gen/cuda/cudagen.h"
#include "gen/gen.h"
#include "runtime/backend.h"
#include "runtime/ccompile.h"
#include "runtime/core/attention.h"
#include "runtime/core/error.h"
#include "runtime/core/mta_dargs.h"
#include "runtime/core/parallel.h"
#include "runtime/host.h"

#include <dlfcn.h>
#include <limits.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define EMU_HEADER "templates/cuda_emu.h"
#define EMU_FLAGS "-O2 -std=c++17 -Wno-unknown-pragmas"

typedef int (*launch_fn)(const void *args, size_t args_size, const unsigned grid[3],
			 unsigned threads, size_t smem_bytes);

/*
 * The emulated device memory: host blocks, registered, so that a tensor
 * marked device that lies outside them (or host that lies inside) is
 * refused as a GPU would crash on it.
 */
struct emu_block {
	char *p;
	size_t n;
};

struct mta_device {
	struct mta_host_flush flush;
	pthread_mutex_t lock;
	struct emu_block *blocks;
	size_t nblocks, cap;
};

struct mta_kernel {
	struct mta_problem p;
	struct mta_variant v;
	void *dl;
	launch_fn fn;
	size_t overrun; /* size of a buffer the backward wrote past the end of (guard()) */
};

/*
 * The emulator's source of a generated CUDA source: the emulator header, then
 * cuda under its own line numbers (as file name, for the compiler's messages).
 */
static int emu_wrap(const char *cuda, const char *name, char **out)
{
	const char *hdr = mta_embedded(EMU_HEADER);
	struct mta_buf b = { 0 };
	*out = NULL;
	if (!hdr)
		return mta_fail(MTA_ENOTFOUND, "%s is not embedded in this build", EMU_HEADER);
	mta_buf_printf(&b, "%s\n#line 1 \"%s\"\n%s", hdr, name, cuda);
	return mta_buf_take(&b, "the emulator source", out, NULL);
}

/*
 * The file name the source of operation op carries: every build of an op's
 * source wraps it under the same one, so that a batch's build, a loader and
 * a test's library share one kernel-cache entry.
 */
static const char *emu_file(int op)
{
	return op == MTA_OP_BWD ? "mta_generated_bwd.cu"
	       : op == MTA_OP_DECODE ? "mta_decode.cu" : "mta_generated.cu";
}

/*
 * Emulator header + the generated source of operation op (MTA_OP_FWD, _BWD,
 * _DECODE) of (p, v); v NULL is the default variant, for decode only.
 */
static int emu_source(int op, const struct mta_problem *p, const struct mta_variant *v,
		      char **out)
{
	char *cuda = NULL;
	int rc;
	*out = NULL;
	rc = op == MTA_OP_BWD      ? mta_gen_cuda_bwd(p, v, &cuda)
	     : op == MTA_OP_DECODE ? mta_gen_cuda_decode(p, v, &cuda)
				   : mta_gen_cuda(p, v, &cuda);
	if (!rc)
		rc = emu_wrap(cuda, emu_file(op), out);
	free(cuda);
	return rc;
}

/* What a failure to build operation op's source calls it. */
static const char *const emu_what[MTA_OP_COUNT] = { "the kernel", "the backward",
						    "the decode kernel" };

/*
 * emu_source for a library or a loaded kernel of op: a variant that is not
 * cuda refused first, naming the emulator, and a forward variant held to
 * mta_variant_check, as the runtime's loads and the tests' libraries hold
 * them alike.
 */
static int emu_checked_source(int op, const struct mta_problem *p, const struct mta_variant *v,
			      char **src)
{
	int rc;
	*src = NULL;
	if (v && v->backend != MTA_BACKEND_CUDA)
		return mta_fail(MTA_EINVAL, "the CUDA emulator runs cuda variants, not %s",
				mta_backend_name(v->backend));
	if (op == MTA_OP_FWD && (rc = mta_variant_check(p, v)))
		return rc;
	return emu_source(op, p, v, src);
}

/*
 * Compile an emulator source (through the kernel cache): the library's path
 * into so (n bytes), or a failure naming what (the kernel, the backward...)
 * with the compiler's log when it refused the source.
 */
static int emu_compile(const char *src, const char *what, char *so, size_t n)
{
	char *log = NULL;
	int rc = mta_cc_build(src, MTA_LANG_CXX, EMU_FLAGS, so, n, &log);
	if (rc == MTA_ECOMPILE)
		rc = mta_fail(rc, "cuda-emu: the host compiler refused %s: %.600s", what,
			      log ? log : "(no log)");
	free(log);
	return rc;
}

/* emu_compile, then open the library's entry sym: *dl and *fn. */
static int emu_open(const char *src, const char *what, const char *sym, void **dl, void **fn)
{
	char so[PATH_MAX];
	int rc = emu_compile(src, what, so, sizeof so);
	return rc ? rc : mta_cc_open(so, sym, dl, fn);
}

static int identify(int index, struct mta_device_info *info)
{
	struct mta_db_device d;
	memset(info, 0, sizeof *info);
	if (index < 0)
		return mta_fail(MTA_ENODEV, "device %d: device indices are 0 or more", index);
	mta_device_cpu(&d);
	snprintf(info->backend, sizeof info->backend, "cuda-emu");
	snprintf(info->name, sizeof info->name, "CUDA emulator on %s", d.name);
	snprintf(info->arch, sizeof info->arch, "emu");
	snprintf(info->compiler, sizeof info->compiler, "%s", mta_cc_identity(MTA_LANG_CXX));
	info->cores = d.cores;
	return MTA_OK;
}

static void build_one(void *ctx, size_t i)
{
	struct mta_build *b = &((struct mta_build *)ctx)[i];
	char *src = NULL, so[PATH_MAX];
	double t0 = mta_host_now();
	b->stats = (struct mta_kstats){ -1, -1, -1, -1, -1 };
	/* the backward's and decode's sources wrapped as their loaders wrap them: one cache entry */
	b->status = b->op == MTA_OP_BWD || b->op == MTA_OP_DECODE
			    ? emu_wrap(b->source, emu_file(b->op), &src)
			    : emu_source(MTA_OP_FWD, &b->p, &b->v, &src);
	if (!b->status)
		b->status = mta_cc_build(src, MTA_LANG_CXX, EMU_FLAGS, so, sizeof so, &b->log);
	b->seconds = mta_host_now() - t0;
	if (b->status)
		snprintf(b->message, sizeof b->message, "cuda-emu: %s", mta_last_error());
	if (!b->log)
		b->log = strdup("");
	free(src);
}

static int build(const struct mta_device_info *info, struct mta_build *b, size_t n, int threads)
{
	mta_parallel(n, threads, build_one, b);
	return MTA_OK;
}

static int prune(const struct mta_device_info *info, const struct mta_build *b)
{
	return MTA_OK;
}

static int dev_open(int index, int threads, struct mta_device **out)
{
	*out = NULL;
	if (index < 0)
		return mta_fail(MTA_ENODEV, "device %d: device indices are 0 or more", index);
	if (!(*out = calloc(1, sizeof **out)))
		return mta_fail(MTA_ENOMEM, "out of memory");
	pthread_mutex_init(&(*out)->lock, NULL);
	return MTA_OK;
}

static void dev_close(struct mta_device *d)
{
	if (!d)
		return;
	mta_host_flush_free(&d->flush);
	for (size_t i = 0; i < d->nblocks; i++)
		free(d->blocks[i].p);
	free(d->blocks);
	pthread_mutex_destroy(&d->lock);
	free(d);
}

/*
 * The forward's or the backward's (op) kernel of (p, v) built and opened:
 * its entry mta_emu_launch in *out, for the problem and variant it was
 * built for.
 */
static int emu_load(int op, const struct mta_problem *p, const struct mta_variant *v,
		    struct mta_kernel **out)
{
	struct mta_kernel *k = NULL;
	char *src = NULL;
	void *fn = NULL;
	int rc;

	*out = NULL;
	if ((rc = emu_checked_source(op, p, v, &src)))
		goto out;
	if (!(k = calloc(1, sizeof *k))) {
		rc = mta_fail(MTA_ENOMEM, "out of memory");
		goto out;
	}
	if ((rc = emu_open(src, emu_what[op], "mta_emu_launch", &k->dl, &fn)))
		goto out;
	k->fn = (launch_fn)fn;
	k->p = *p;
	k->v = *v;
	*out = k;
	k = NULL;
out:
	free(k);
	free(src);
	return rc;
}

static int load(struct mta_device *d, struct mta_db *db, const struct mta_problem *p,
		const struct mta_variant *v, const void *binary, size_t n, struct mta_kernel **out)
{
	return emu_load(MTA_OP_FWD, p, v, out);
}

static void unload(struct mta_kernel *k)
{
	if (!k)
		return;
	mta_cc_close(k->dl);
	free(k);
}

/* What an emulated launch's failure code means (templates/cuda_emu.h). */
static const char *emu_launch_error(int r)
{
	switch (r) {
	case -1:
		return "kernel argument layout differs from the host's struct";
	case -2:
		return "dynamic shared memory size differs from the kernel's need";
	case -4:
		return "the grid is not whole clusters";
	case -5:
		return "a named barrier was used wrongly (mta_bar_sync, mta_bar_arrive)";
	case -6:
		return "an mbarrier was used wrongly, waited on with nothing to complete it, "
		       "still expected bytes when its cluster ended, or completed a phase "
		       "before its last that no thread waited for";
	default:
		return "could not start the block's threads";
	}
}

static int forward(struct mta_kernel *k, const struct mta_problem *p, const struct mta_tensor *q,
		   const struct mta_tensor *kt, const struct mta_tensor *v,
		   const struct mta_weights *w, struct mta_tensor *o)
{
	struct mta_cuda_args args;
	struct mta_cuda_launch g;
	int rc;
	if (memcmp(p, &k->p, sizeof *p))
		return mta_fail(MTA_EINVAL, "cuda-emu: the kernel was built for another problem");
	if ((rc = mta_cuda_args_fill(p, q, kt, v, w, o, &args)) ||
	    (rc = mta_cuda_geometry(p, &k->v, args.B, args.T, &g)))
		return mta_wrap(rc, "cuda-emu");
	int r = k->fn(&args, sizeof args, g.grid, g.block[0], g.smem_bytes);
	if (r)
		return mta_fail(MTA_EKERNEL, "cuda-emu launch failed: %s", emu_launch_error(r));
	return MTA_OK;
}

/*
 * Packed documents in one launch: the kernel maps its blocks to (document,
 * query tile) through tile_off (templates/mta_cuda.cu, doc_tile); the
 * emulated device reads the host arrays where they are.
 */
static int forward_varlen(struct mta_kernel *k, const struct mta_problem *p,
			  const struct mta_tensor *q, const struct mta_tensor *kt,
			  const struct mta_tensor *v, const struct mta_weights *w,
			  const int64_t *cu, int64_t ndocs, struct mta_tensor *o)
{
	struct mta_cuda_args args;
	struct mta_cuda_launch g;
	int *tiles = NULL, rc;
	if (memcmp(p, &k->p, sizeof *p))
		return mta_fail(MTA_EINVAL, "cuda-emu: the kernel was built for another problem");
	if (!cu[ndocs])
		return MTA_OK; /* no rows at all */
	if (!(tiles = malloc((size_t)(ndocs + 1) * sizeof *tiles)))
		return mta_fail(MTA_ENOMEM, "out of memory");
	if ((rc = mta_cuda_args_fill(p, q, kt, v, w, o, &args)) ||
	    (rc = mta_cuda_varlen_tiles(cu, ndocs, k->v.bq, tiles)) ||
	    (rc = mta_cuda_geometry(p, &k->v, 1, 1, &g))) {
		rc = mta_wrap(rc, "cuda-emu");
		goto out;
	}
	mta_cuda_args_varlen(&args, cu, ndocs, tiles);
	g.grid[0] = (unsigned)tiles[ndocs] * (unsigned)k->v.cs; /* a cluster's blocks a tile */
	int r = k->fn(&args, sizeof args, g.grid, g.block[0], g.smem_bytes);
	if (r)
		rc = mta_fail(MTA_EKERNEL, "cuda-emu packed launch failed: %s", emu_launch_error(r));
out:
	free(tiles);
	return rc;
}

/* ---- decode: templates/mta_cuda_decode.cu on the emulator ---- */

static int mem_alloc(struct mta_device *d, size_t n, void **out);
static void mem_free(struct mta_device *d, void *ptr);
static int mem_check(struct mta_device *d, const char *name, const void *ptr, size_t n,
		     int memory);
static int mem_copy(struct mta_device *d, void *dst, int dm, const void *src, int sm, size_t n,
		    void *stream);

/*
 * A decode cache's memory on the emulator (struct mta_dmem): the emulated
 * device memory, each copy checked against the registry, so that a cache
 * that hands the kernel a host pointer, or copies the wrong way, is caught
 * here as a GPU would fault on it.
 */
static int dm_alloc(void *ctx, size_t n, void **p)
{
	return mem_alloc(ctx, n, p);
}

static void dm_release(void *ctx, void *p)
{
	mem_free(ctx, p);
}

static int dm_put(void *ctx, void *dst, const void *src, size_t n)
{
	return mem_copy(ctx, dst, MTA_MEM_DEVICE, src, MTA_MEM_HOST, n, NULL);
}

static int dm_get(void *ctx, void *dst, const void *src, size_t n)
{
	return mem_copy(ctx, dst, MTA_MEM_HOST, src, MTA_MEM_DEVICE, n, NULL);
}

static int dm_move(void *ctx, void *dst, const void *src, size_t n)
{
	return mem_copy(ctx, dst, MTA_MEM_DEVICE, src, MTA_MEM_DEVICE, n, NULL);
}

struct emu_decode {
	void *dl;
	mta_decode_fn kfn; /* the kernel's host entry, mta_cuda_decode */
	struct mta_device *dev;
	struct mta_problem p;
	struct mta_dmem mem;
};

/*
 * The cache's call (mta_dargs.impl: the emu_decode): every pointer the
 * kernel will read or write held to the registry of device allocations
 * for the bytes it reaches (the cuda backend's kernel reads nothing else),
 * then the kernel's grid.
 */
static int emu_decode_call(const struct mta_dargs *a)
{
	const struct emu_decode *k = a ? a->impl : NULL;
	struct mta_device *d = k ? k->dev : NULL;
	int rc;
	if (!k)
		return mta_fail(MTA_EINVAL, "cuda-emu decode: the call carries no kernel");
	if (a->n < 1)
		return a->n ? mta_fail(MTA_EINVAL, "cuda-emu decode: %lld sequences",
				       (long long)a->n) : MTA_OK;
	const struct mta_problem *p = &k->p;
	const size_t n = (size_t)a->n, f = sizeof(float), hd = (size_t)p->H * (size_t)p->D;
	const size_t r1 = (size_t)(p->cq ? p->cq : 1), r2 = (size_t)(p->cq2 ? p->cq2 : 1);
	if ((rc = mem_check(d, "the decode's sequences", a->seq, n * sizeof *a->seq,
			    MTA_MEM_DEVICE)) ||
	    (rc = mem_check(d, "the decode's q", a->q, n * hd * f, MTA_MEM_DEVICE)) ||
	    (rc = mem_check(d, "the decode's o", a->o, n * hd * f, MTA_MEM_DEVICE)) ||
	    (rc = mem_check(d, "the decode's scratch", a->work,
			    n * (size_t)MTA_DWORK(p->H, p->D, a->scap) * f, MTA_MEM_DEVICE)))
		return mta_wrap(rc, "cuda-emu decode");
	for (size_t b = 0; b < n; b++) {
		const struct mta_dseq *s = &a->seq[b];
		const size_t cap = (size_t)(s->cap > 0 ? s->cap : 0);
		const size_t kv = cap * (size_t)p->Hkv * (size_t)p->D * f;
		if ((rc = mem_check(d, "a sequence's k", s->k, kv, MTA_MEM_DEVICE)) ||
		    (rc = mem_check(d, "a sequence's v", s->v, kv, MTA_MEM_DEVICE)) ||
		    (rc = mem_check(d, "a sequence's logit ring", s->z, (size_t)p->H * r1 * cap * f,
				    MTA_MEM_DEVICE)) ||
		    (rc = mem_check(d, "a sequence's probability ring", s->p,
				    (size_t)p->H * r2 * cap * f, MTA_MEM_DEVICE)))
			return mta_wrap(rc, "cuda-emu decode, sequence %zu", b);
	}
	struct mta_weights w;
	struct mta_wpart parts[MTA_WPARTS_MAX];
	memset(&w, 0, sizeof w);
	w.kq_pre = a->kq_pre;
	w.head_pre = a->head_pre;
	w.kq_post = a->kq_post;
	w.head_post = a->head_post;
	w.head_post_linear = a->head_post_linear;
	w.gn_weight = a->gn_weight;
	w.gate_w = a->gate_w;
	const int np = mta_weight_parts(p, &w, parts);
	for (int i = 0; i < np; i++)
		if ((rc = mem_check(d, parts[i].name, *parts[i].ptr, parts[i].n * f,
				    MTA_MEM_DEVICE)))
			return mta_wrap(rc, "cuda-emu decode");
	int r = k->kfn(a);
	return r ? mta_fail(MTA_EKERNEL, "cuda-emu: the decode kernel failed (%d)", r) : MTA_OK;
}

/*
 * The CUDA decode kernel of p and decode variant v (NULL: the default)
 * built for the emulator; its host entry
 * (mta_cuda_decode: the grid of one block per sequence), checked against
 * this library's struct sizes first, runs behind emu_decode_call, on a
 * cache kept in the emulated device memory (dec->mem): the host code of
 * the cuda backend's decode, runtime/cuda/decode_drv.c.
 */
static int decode_load(struct mta_device *d, const struct mta_problem *p,
		       const struct mta_variant *v, void **handle, struct mta_decoder *dec)
{
	char *src = NULL;
	struct emu_decode *k = NULL;
	void *fn = NULL;
	int rc;
	*handle = NULL;
	memset(dec, 0, sizeof *dec);
	if ((rc = emu_source(MTA_OP_DECODE, p, v, &src)))
		goto out;
	if (!(k = calloc(1, sizeof *k))) {
		rc = mta_fail(MTA_ENOMEM, "out of memory");
		goto out;
	}
	if ((rc = emu_open(src, emu_what[MTA_OP_DECODE], "mta_cuda_decode", &k->dl, &fn)))
		goto out;
	const int *sizes = dlsym(k->dl, "mta_cuda_decode_sizes");
	if (!sizes || sizes[0] != MTA_DARGS_ABI || sizes[1] != (int)sizeof(struct mta_dargs) ||
	    sizes[2] != (int)sizeof(struct mta_dseq)) {
		rc = mta_fail(MTA_ECOMPILE, "cuda-emu: the decode kernel's arguments differ from "
			      "this library's (ABI %d, %zu-byte args)", MTA_DARGS_ABI,
			      sizeof(struct mta_dargs));
		goto out;
	}
	/* the kernel is the variant's: its block as the launch's, its P.V chunk as asked */
	unsigned threads = 0;
	size_t smem = 0;
	struct mta_variant dv;
	if (!v && (rc = mta_variant_default_op(p, MTA_BACKEND_CUDA, MTA_OP_DECODE, &dv)))
		goto out;
	if ((rc = mta_cuda_decode_dims(p, v ? v : &dv, &threads, &smem)))
		goto out;
	if (sizes[3] != (int)threads || sizes[4] != (v ? v : &dv)->bk) {
		rc = mta_fail(MTA_ECOMPILE, "cuda-emu: the decode kernel has %d threads and P.V "
			      "chunks of %d keys; its variant asks %u and %d", sizes[3], sizes[4],
			      threads, (v ? v : &dv)->bk);
		goto out;
	}
	k->kfn = (mta_decode_fn)fn;
	k->dev = d;
	k->p = *p;
	k->mem = (struct mta_dmem){ d, dm_alloc, dm_release, dm_put, dm_get, dm_move };
	dec->fn = emu_decode_call;
	dec->impl = k;
	dec->mem = &k->mem;
	*handle = k;
	k = NULL;
out:
	if (k)
		mta_cc_close(k->dl);
	free(k);
	free(src);
	return rc;
}

static void decode_unload(void *handle)
{
	struct emu_decode *k = handle;
	if (!k)
		return;
	mta_cc_close(k->dl);
	free(k);
}

static int bind(struct mta_kernel *k, const struct mta_problem *p, const struct mta_tensor *q,
		const struct mta_tensor *kt, const struct mta_tensor *v,
		const struct mta_weights *w, struct mta_tensor *o, struct mta_bound **out)
{
	return mta_host_bind(k, forward, p, q, kt, v, w, o, out);
}

static int flush(struct mta_device *d)
{
	return mta_host_flush(&d->flush);
}

/* ---- mta_attention's path: emulated device memory, checked ---- */

static int attach(struct mta_kernel *k, const struct mta_problem *p, const struct mta_tensor *q,
		  const struct mta_tensor *kt, const struct mta_tensor *v,
		  const struct mta_weights *w, struct mta_tensor *o, void *stream)
{
	return forward(k, p, q, kt, v, w, o); /* runs now: the stream is only a handle */
}

static int mem_alloc(struct mta_device *d, size_t n, void **out)
{
	int rc = MTA_OK;
	*out = NULL;
	pthread_mutex_lock(&d->lock);
	if (d->nblocks == d->cap) {
		size_t cap = d->cap ? 2 * d->cap : 16;
		struct emu_block *b = realloc(d->blocks, cap * sizeof *b);
		if (!b) {
			rc = mta_fail(MTA_ENOMEM, "out of memory");
			goto out;
		}
		d->blocks = b;
		d->cap = cap;
	}
	if (!(*out = malloc(n ? n : 1))) {
		rc = mta_fail(MTA_ENOMEM, "cuda-emu: out of memory for %zu bytes of device memory", n);
		goto out;
	}
	memset(*out, 0xff, n); /* NaN bytes: what nothing wrote shows */
	d->blocks[d->nblocks++] = (struct emu_block){ *out, n ? n : 1 };
out:
	pthread_mutex_unlock(&d->lock);
	return rc;
}

static void mem_free(struct mta_device *d, void *ptr)
{
	if (!ptr)
		return;
	pthread_mutex_lock(&d->lock);
	for (size_t i = 0; i < d->nblocks; i++)
		if (d->blocks[i].p == ptr) {
			free(ptr);
			d->blocks[i] = d->blocks[--d->nblocks];
			break;
		}
	pthread_mutex_unlock(&d->lock);
}

/* 2: [ptr, ptr+n) lies in one block; 1: it overlaps some; 0: it touches none. */
static int where(struct mta_device *d, const void *ptr, size_t n)
{
	const char *a = ptr, *z = a + (n ? n : 1);
	int r = 0;
	pthread_mutex_lock(&d->lock);
	for (size_t i = 0; i < d->nblocks && r < 2; i++) {
		const char *b = d->blocks[i].p, *e = b + d->blocks[i].n;
		if (a >= b && z <= e)
			r = 2;
		else if (a < e && z > b)
			r = 1;
	}
	pthread_mutex_unlock(&d->lock);
	return r;
}

static int mem_check(struct mta_device *d, const char *name, const void *ptr, size_t n, int memory)
{
	int w = where(d, ptr, n);
	if (memory == MTA_MEM_DEVICE && w != 2)
		return mta_fail(MTA_EINVAL, "%s says device memory but its %zu bytes at %p %s", name,
				n, ptr, w ? "run past the end of the device allocation they start in"
					  : "are not in any device allocation (host memory?)");
	if (memory == MTA_MEM_HOST && w)
		return mta_fail(MTA_EINVAL, "%s says host memory but points into device memory "
				"(set memory = MTA_MEM_DEVICE)", name);
	if (memory != MTA_MEM_HOST && memory != MTA_MEM_DEVICE)
		return mta_fail(MTA_EINVAL, "%s: memory %d is neither MTA_MEM_HOST (0) nor "
				"MTA_MEM_DEVICE (1)", name, memory);
	return MTA_OK;
}

static int mem_copy(struct mta_device *d, void *dst, int dm, const void *src, int sm, size_t n,
		    void *stream)
{
	int rc;
	if ((rc = mem_check(d, "the copy's destination", dst, n, dm)) ||
	    (rc = mem_check(d, "the copy's source", src, n, sm)))
		return rc;
	memmove(dst, src, n);
	return MTA_OK;
}

static int sync(struct mta_device *d, void *stream)
{
	return MTA_OK; /* launches and copies finish before they return */
}

/* ---- training: the CUDA backward's source (runtime/cuda/bwd.h) on the emulator ---- */

/*
 * The emulator's library of operation op (MTA_OP_FWD, _BWD, _DECODE) of
 * (p, v), built from the source the backend's loaders build, checked as
 * they check it (emu_checked_source): its path into so (n bytes). v NULL
 * is the default variant, for decode only.
 */
static int emu_build(int op, const struct mta_problem *p, const struct mta_variant *v, char *so,
		     size_t n)
{
	char *src = NULL;
	int rc = emu_checked_source(op, p, v, &src);
	if (!rc)
		rc = emu_compile(src, emu_what[op], so, n);
	free(src);
	return rc;
}

int mta_emu_bwd_library(const struct mta_problem *p, const struct mta_variant *v, char *so,
			size_t n)
{
	return emu_build(MTA_OP_BWD, p, v, so, n);
}

int mta_emu_fwd_library(const struct mta_problem *p, const struct mta_variant *v, char *so,
			size_t n)
{
	return emu_build(MTA_OP_FWD, p, v, so, n);
}

int mta_emu_decode_library(const struct mta_problem *p, const struct mta_variant *v, char *so,
			   size_t n)
{
	return emu_build(MTA_OP_DECODE, p, v, so, n);
}

static int train_load(struct mta_device *d, const struct mta_problem *p,
		      const struct mta_variant *v, struct mta_kernel **out)
{
	return emu_load(MTA_OP_BWD, p, v, out);
}

/*
 * The emulator as a device of the backward's runner: host memory, launches
 * that finish. Each buffer is guarded: a header holding its size before it
 * and EMU_GUARD bytes of a pattern after it, checked when it is released, so
 * a kernel that writes past the end of a buffer fails the call that ran it
 * (fwd_save, backward below) every time, instead of corrupting the heap now
 * and then (on a GPU it would overwrite a neighbour's memory silently).
 */
#define EMU_HEAD 64
#define EMU_GUARD 256
#define EMU_PAT 0xa5

static int emu_alloc(void *ctx, size_t n, void **p)
{
	unsigned char *m = malloc(EMU_HEAD + n + EMU_GUARD);
	*p = NULL;
	if (!m)
		return mta_fail(MTA_ENOMEM, "cuda-emu: out of memory for %zu bytes", n);
	memcpy(m, &n, sizeof n);
	memset(m + EMU_HEAD, 0xff, n); /* NaN bytes: what nothing wrote shows */
	memset(m + EMU_HEAD + n, EMU_PAT, EMU_GUARD);
	*p = m + EMU_HEAD;
	return MTA_OK;
}

static void emu_release(void *ctx, void *p)
{
	struct mta_kernel *k = ctx;
	unsigned char *m;
	size_t n;
	if (!p)
		return;
	m = (unsigned char *)p - EMU_HEAD;
	memcpy(&n, m, sizeof n);
	for (size_t i = 0; i < EMU_GUARD; i++)
		if (m[EMU_HEAD + n + i] != EMU_PAT) {
			__atomic_store_n(&k->overrun, n ? n : 1, __ATOMIC_RELAXED);
			break;
		}
	free(m);
}

/* rc, or the failure of a backward kernel that wrote past a buffer's end. */
static int guarded(struct mta_kernel *k, int rc)
{
	size_t n = __atomic_exchange_n(&k->overrun, 0, __ATOMIC_RELAXED);
	if (rc || !n)
		return rc;
	return mta_fail(MTA_EKERNEL, "cuda-emu: the backward kernel wrote past the end of a "
			"%zu-byte device buffer", n);
}

static int emu_copy(void *ctx, void *dst, const void *src, size_t n)
{
	memcpy(dst, src, n);
	return MTA_OK;
}

static int emu_bwd_launch(void *ctx, const struct mta_cuda_bargs *a, const unsigned grid[3],
			  unsigned threads, size_t smem)
{
	const struct mta_kernel *k = ctx;
	int r = k->fn(a, sizeof *a, grid, threads, smem);
	if (r)
		return mta_fail(MTA_EKERNEL, "cuda-emu backward launch failed: %s",
				emu_launch_error(r));
	return MTA_OK;
}

static int same_problem(const struct mta_kernel *k, const struct mta_problem *p)
{
	if (memcmp(p, &k->p, sizeof *p))
		return mta_fail(MTA_EINVAL, "cuda-emu: the backward was built for another problem");
	return MTA_OK;
}

static int fwd_save(struct mta_kernel *k, const struct mta_problem *p, const struct mta_tensor *q,
		    const struct mta_tensor *kt, const struct mta_tensor *v,
		    const struct mta_weights *w, struct mta_tensor *o, void *saved)
{
	const struct mta_cuda_bwd_dev dev = { k, emu_alloc, emu_release, emu_copy, emu_copy,
					      emu_bwd_launch };
	const struct mta_cuda_bwd_shape bs = mta_cuda_bwd_shape_of(&k->v);
	int rc = same_problem(k, p);
	return rc ? rc : guarded(k, mta_cuda_bwd_forward(&dev, &bs, p, q, kt, v, w, o, saved));
}

static int backward(struct mta_kernel *k, const struct mta_problem *p, const struct mta_tensor *q,
		    const struct mta_tensor *kt, const struct mta_tensor *v,
		    const struct mta_weights *w, const void *saved, const struct mta_tensor *dout,
		    const struct mta_grads *g)
{
	const struct mta_cuda_bwd_dev dev = { k, emu_alloc, emu_release, emu_copy, emu_copy,
					      emu_bwd_launch };
	const struct mta_cuda_bwd_shape bs = mta_cuda_bwd_shape_of(&k->v);
	int rc = same_problem(k, p);
	return rc ? rc : guarded(k, mta_cuda_bwd_backward(&dev, &bs, p, q, kt, v, w, saved, dout,
							  g));
}

const struct mta_backend mta_backend_cuda_emu = {
	"cuda-emu", "the CUDA kernel's source emulated on the CPU (slow)",
	MTA_BACKEND_CUDA, 0,
	identify, build, prune, NULL, NULL, NULL,
	dev_open, dev_close, load, unload, forward,
	bind, mta_host_launch, mta_host_fetch, mta_host_unbind, flush,
	train_load, fwd_save, backward,
	forward_varlen,
	decode_load, decode_unload,
	MTA_MEM_DEVICE, 1, 1, attach, mem_alloc, mem_free, mem_copy, mem_check, sync,
};

int mta_emu_run(const struct mta_problem *p, const struct mta_variant *var,
		const struct mta_tensor *q, const struct mta_tensor *k,
		const struct mta_tensor *v, const struct mta_weights *w,
		struct mta_tensor *o)
{
	struct mta_device *d = NULL;
	struct mta_kernel *kern = NULL;
	int rc;
	if (var->backend != MTA_BACKEND_CUDA)
		return mta_fail(MTA_EINVAL, "the CUDA emulator runs cuda variants, not %s",
				mta_backend_name(var->backend));
	struct mta_cuda_args args;
	if ((rc = mta_variant_check(p, var)) || (rc = mta_cuda_args_fill(p, q, k, v, w, o, &args)))
		return mta_wrap(rc, "cuda-emu");
	if (!(rc = dev_open(0, 0, &d)) && !(rc = load(d, NULL, p, var, NULL, 0, &kern)))
		rc = forward(kern, p, q, k, v, w, o);
	unload(kern);
	dev_close(d);
	return rc;
}
