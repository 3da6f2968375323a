/*
 * nvrtc.c: NVRTC through dlopen, cubin for a named architecture, ptxas
 * resource stats, and a small thread pool for compiling variants in bulk
 * (see nvrtc.h). Only NVRTC's C ABI is used: its opaque program handle and
 * int result codes, so no CUDA header is needed to build mtatune.
 */
#include "runtime/cuda/nvrtc.h"
#include "runtime/core/error.h"
#include "runtime/core/parallel.h"

#include <dlfcn.h>
#include <glob.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

typedef struct nvrtc_prog *prog_t;

static struct {
	void *dl;
	char tried[1024];
	int (*create)(prog_t *, const char *, const char *, int, const char *const *,
		      const char *const *);
	int (*compile)(prog_t, int, const char *const *);
	int (*log_size)(prog_t, size_t *);
	int (*log)(prog_t, char *);
	int (*cubin_size)(prog_t, size_t *);
	int (*cubin)(prog_t, char *);
	int (*destroy)(prog_t *);
	int (*version)(int *, int *);
	const char *(*errstr)(int);
} nv;
static pthread_once_t nv_once = PTHREAD_ONCE_INIT;

static void note(const char *what)
{
	size_t n = strlen(nv.tried);
	snprintf(nv.tried + n, sizeof nv.tried - n, "%s%s", n ? ", " : "", what);
}

/*
 * The part of a compile log worth quoting in a one-line message: from the
 * start of the first line that reports an error (warnings often come first
 * and would fill the quote), else the whole log.
 */
static const char *first_error(const char *log)
{
	if (!log || !log[0])
		return "no log";
	const char *e = strstr(log, " error");
	if (!e)
		e = strstr(log, "error");
	if (!e)
		return log;
	while (e > log && e[-1] != '\n')
		e--;
	return e;
}

/* dlopen path and resolve every symbol; the handle stays open for good. */
static int try_open(const char *path)
{
	void *dl = dlopen(path, RTLD_NOW | RTLD_LOCAL);
	note(path);
	if (!dl)
		return 0;
#define SYM(field, name)                                             \
	if (!(*(void **)&nv.field = dlsym(dl, name))) {              \
		dlclose(dl);                                         \
		return 0;                                            \
	}
	SYM(create, "nvrtcCreateProgram");
	SYM(compile, "nvrtcCompileProgram");
	SYM(log_size, "nvrtcGetProgramLogSize");
	SYM(log, "nvrtcGetProgramLog");
	SYM(cubin_size, "nvrtcGetCUBINSize");
	SYM(cubin, "nvrtcGetCUBIN");
	SYM(destroy, "nvrtcDestroyProgram");
	SYM(version, "nvrtcVersion");
	SYM(errstr, "nvrtcGetErrorString");
#undef SYM
	nv.dl = dl;
	return 1;
}

static void load_once(void)
{
	const char *env = getenv("MTATUNE_NVRTC");
	if (env && *env) {
		try_open(env);
		return;
	}
	glob_t g;
	if (glob("/usr/local/cuda/lib64/libnvrtc.so*", 0, NULL, &g) == 0) {
		for (size_t i = 0; i < g.gl_pathc && !nv.dl; i++)
			if (!strstr(g.gl_pathv[i], "builtins") && !strstr(g.gl_pathv[i], ".alt."))
				try_open(g.gl_pathv[i]);
		globfree(&g);
	}
	if (!nv.dl)
		try_open("libnvrtc.so");
}

static int load(void)
{
	pthread_once(&nv_once, load_once);
	if (!nv.dl)
		return mta_fail(MTA_ENODEV, "NVRTC is not available: could not load libnvrtc "
				"(tried %s); install the CUDA toolkit's NVRTC or set MTATUNE_NVRTC "
				"to the path of libnvrtc.so", nv.tried);
	return MTA_OK;
}

int mta_nvrtc_version(int *major, int *minor)
{
	int rc = load();
	if (rc)
		return rc;
	if (nv.version(major, minor))
		return mta_fail(MTA_ENODEV, "nvrtcVersion failed");
	return MTA_OK;
}

/* The number after "key" on the line, scanning backwards is not needed:
 * ptxas prints "N bytes stack frame, N bytes spill stores, ..." and
 * "Used N registers, ... N bytes smem". Returns -1 when absent. */
static int num_before(const char *line, const char *end, const char *what)
{
	const char *p = line;
	while ((p = strstr(p, what)) && p < end) {
		const char *q = p;
		while (q > line && q[-1] == ' ')
			q--;
		while (q > line && q[-1] >= '0' && q[-1] <= '9')
			q--;
		if (q < p && *q >= '0' && *q <= '9')
			return atoi(q);
		p += strlen(what);
	}
	return -1;
}

int mta_nvrtc_parse_stats(const char *log, const char *kernel, struct mta_nvrtc_stats *st)
{
	char head[256];
	st->registers = st->spill_stores = st->spill_loads = st->stack_bytes = st->smem_bytes = -1;
	if (!log)
		return mta_fail(MTA_EFORMAT, "no NVRTC log to read kernel stats from");
	snprintf(head, sizeof head, "Function properties for %s\n", kernel);
	const char *p = strstr(log, head);
	if (!p)
		return mta_fail(MTA_EFORMAT, "the NVRTC log has no ptxas report for kernel '%s' "
				"(was --ptxas-options=-v given, is the kernel extern \"C\"?)", kernel);
	p += strlen(head);
	/* Two lines follow: the frame line, then "ptxas info : Used N registers, ..." */
	for (int line = 0; line < 2 && *p; line++) {
		const char *e = strchr(p, '\n');
		if (!e)
			e = p + strlen(p);
		int v;
		if ((v = num_before(p, e, "bytes stack frame")) >= 0)
			st->stack_bytes = v;
		if ((v = num_before(p, e, "bytes spill stores")) >= 0)
			st->spill_stores = v;
		if ((v = num_before(p, e, "bytes spill loads")) >= 0)
			st->spill_loads = v;
		if ((v = num_before(p, e, "registers")) >= 0)
			st->registers = v;
		if ((v = num_before(p, e, "bytes smem")) >= 0)
			st->smem_bytes = v;
		p = *e ? e + 1 : e;
	}
	if (st->registers < 0 || st->spill_stores < 0 || st->spill_loads < 0)
		return mta_fail(MTA_EFORMAT, "the ptxas report for kernel '%s' lacks registers or "
				"spills", kernel);
	if (st->smem_bytes < 0)
		st->smem_bytes = 0; /* ptxas omits smem when the kernel has none */
	return MTA_OK;
}

size_t mta_nvrtc_smem_limit(const char *arch)
{
	int sm = 0;
	if (!arch || sscanf(arch, "sm_%d", &sm) != 1)
		return 0;
	switch (sm) {
	case 75: return 64 * 1024;
	case 80: case 87: return 163 * 1024;
	case 86: case 89: case 120: case 121: return 99 * 1024;
	case 90: case 100: case 103: case 110: return 227 * 1024;
	}
	return 48 * 1024; /* what every architecture grants without opt-in */
}

int mta_nvrtc_prune(const struct mta_nvrtc_stats *st, const char *arch, int threads,
		    size_t dyn_smem)
{
	size_t lim = mta_nvrtc_smem_limit(arch);
	if (st->registers < 0)
		return mta_fail(MTA_EUNSUPPORTED, "no register count known");
	if (st->spill_stores > 0 || st->spill_loads > 0)
		return mta_fail(MTA_EUNSUPPORTED, "spills registers (%d bytes stores, %d bytes loads)",
				st->spill_stores, st->spill_loads);
	if ((long)st->registers * threads > 65536)
		return mta_fail(MTA_EUNSUPPORTED, "%d registers x %d threads exceed the 65536 "
				"registers of a multiprocessor", st->registers, threads);
	if (!lim || (size_t)st->smem_bytes + dyn_smem > lim)
		return mta_fail(MTA_EUNSUPPORTED, "needs %zu bytes of shared memory, %s allows %zu",
				(size_t)st->smem_bytes + dyn_smem, arch ? arch : "?", lim);
	return MTA_OK;
}

static double now(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* The job's compile; every result goes into the job. */
static int compile(struct mta_nvrtc_job *j)
{
	char arch_opt[64], fixed[] = MTA_NVRTC_OPTIONS, *extra = NULL, *save = NULL;
	const char *opts[40];
	int nopt = 0, rc, r;
	prog_t prog = NULL;
	double t0 = now();

	if (!j->source || !j->arch || !j->kernel)
		return mta_fail(MTA_EINVAL, "NVRTC job without source, arch or kernel name");
	int sm = 0;
	if (sscanf(j->arch, "sm_%d", &sm) != 1 || sm < 50 || strlen(j->arch) > 16)
		return mta_fail(MTA_EINVAL, "architecture '%s' is not of the form sm_NN (e.g. sm_90)",
				j->arch);
	if ((rc = load()))
		return rc;
	snprintf(arch_opt, sizeof arch_opt, "--gpu-architecture=%s", j->arch);
	opts[nopt++] = arch_opt;
	for (char *t = strtok_r(fixed, " ", &save); t; t = strtok_r(NULL, " ", &save))
		opts[nopt++] = t;
	if (j->options) {
		if (!(extra = strdup(j->options)))
			return mta_fail(MTA_ENOMEM, "out of memory");
		for (char *t = strtok_r(extra, " ", &save); t; t = strtok_r(NULL, " ", &save)) {
			if (nopt == (int)(sizeof opts / sizeof opts[0])) {
				rc = mta_fail(MTA_EINVAL, "too many NVRTC options: '%s'", j->options);
				goto out;
			}
			opts[nopt++] = t;
		}
	}
	if ((r = nv.create(&prog, j->source, "mta_kernel.cu", 0, NULL, NULL))) {
		rc = mta_fail(MTA_ECOMPILE, "nvrtcCreateProgram: %s", nv.errstr(r));
		goto out;
	}
	int cr = nv.compile(prog, nopt, opts);
	size_t n = 0;
	if (!nv.log_size(prog, &n) && n && (j->log = malloc(n + 1))) {
		if (nv.log(prog, j->log))
			j->log[0] = 0;
		j->log[n] = 0;
	}
	if (cr) {
		rc = mta_fail(MTA_ECOMPILE, "NVRTC could not compile for %s (%s): %.300s", j->arch,
			      nv.errstr(cr), first_error(j->log));
		goto out;
	}
	if ((r = nv.cubin_size(prog, &j->cubin_size)) || !(j->cubin = malloc(j->cubin_size)) ||
	    nv.cubin(prog, j->cubin)) {
		rc = mta_fail(r ? MTA_ECOMPILE : MTA_ENOMEM, "could not fetch the cubin for %s",
			      j->arch);
		goto out;
	}
	rc = mta_nvrtc_parse_stats(j->log, j->kernel, &j->stats);
out:
	if (prog)
		nv.destroy(&prog);
	free(extra);
	j->seconds = now() - t0;
	return rc;
}

int mta_nvrtc_compile(struct mta_nvrtc_job *j)
{
	j->cubin = NULL;
	j->log = NULL;
	j->cubin_size = 0;
	j->message[0] = 0;
	j->status = compile(j);
	if (j->status)
		snprintf(j->message, sizeof j->message, "%s", mta_last_error());
	return j->status;
}

static void compile_one(void *ctx, size_t i)
{
	mta_nvrtc_compile(&((struct mta_nvrtc_job *)ctx)[i]);
}

int mta_nvrtc_compile_batch(struct mta_nvrtc_job *jobs, size_t n, int nthreads)
{
	int rc = load();
	if (rc)
		return rc;
	mta_parallel(n, nthreads, compile_one, jobs);
	return MTA_OK;
}

void mta_nvrtc_job_free(struct mta_nvrtc_job *j)
{
	free(j->cubin);
	free(j->log);
	j->cubin = NULL;
	j->log = NULL;
}
