/*
 * cpu_bench.c: the tuned C kernels against plain attention and the PyTorch
 * peers, side by side in one run, with the same threads and inputs, and
 * against this machine's measured FMA peak (docs/bench-cpu.md is its report).
 *
 * For each configuration (perf-paper: H8 D64, every option, 6x11 kernels;
 * paper: H16 D96) and each T:
 *   - the kernel is tuned at that T (exhaustive over the default space,
 *     which holds both kernel families) unless --no-tune; the runtime's pick
 *     for T then runs;
 *   - executed against useful multiply-adds, per step, counted by the kernel
 *     itself (a counting build: K_COUNT, templates/mta_cpu_vec.h), for the
 *     picked variant and for the v1 family at its usual tile (the two-pass
 *     design the v2 family replaced);
 *   - rounds, interleaved (peak, mtatune, SDPA, eager, compile, then again),
 *     because this machine's speed drifts 1.5-2x within a minute: medians
 *     and the spread of each time and of each per-round ratio.
 * Then training: the saving forward and the backward of the generated CPU
 * backward (templates/mta_cpu_bwd.c, the variant the runtime picks) against
 * the same forward and its autograd backward in eager PyTorch (the peer's
 * "train"), interleaved rounds, with the working memory of each (ours: the
 * saved state and the workspaces, computed; the peer's: its process's peak
 * resident memory) and the rel L2 of dL/dq between them.
 * Then the per-call cost of mta_forward at T=16 on the default problem and
 * the paper's (rounds of --calls calls each timed alone: the median of each
 * round, then their median and range; --per-call: this section alone),
 * and serving: decode time per token against cache length (the generated
 * decode kernel, against recomputing the full forward per token) and packed
 * documents against the same documents one by one (--serving: only these).
 *
 * The peers run in one bench/peer_torch.py process per (configuration, T),
 * answering one forward per request (--serve), with PyTorch from the
 * project's .venv (--python; skipped with a message when absent): plain
 * causal F.scaled_dot_product_attention without MTA (the floor), the MTA
 * reference semantics eager and under torch.compile (compile time not
 * counted).
 *
 * Useful FLOPs: 2 per multiply-add of the operation's definition (MTA.md)
 * over the T(T+1)/2 causal logits per head (q.k and P.V: D each; kq_pre,
 * kq_post: cq*ck; head_pre, head_post_linear: H; head_post: c), plus 5 per
 * logit for the softmax and 6*D per output row for norm and gate; SDPA's
 * are the q.k, P.V and softmax terms alone.
 *
 * usage: cpu_bench [--threads N] [--seqs 1024,2048,4096] [--rounds N]
 *          [--configs perf-paper,paper] [--db PATH] [--python PATH]
 *          [--eager-max-seq T] [--no-tune] [--no-peers] [--calls N]
 *          [--no-train | --train-only]
 *          [--serving | --per-call] [--decode-seqs 1024,...,32768]
 */
#include "gen/cpu/cgen.h"
#include "runtime/backend.h"
#include "runtime/ccompile.h"
#include "runtime/core/error.h"
#include "runtime/core/kargs.h"
#include "runtime/core/pick.h"
#include "runtime/core/pool.h"
#include "runtime/cpu/cpu.h"
#include "runtime/cpu/cpu_bwd.h"
#include "runtime/host.h"
#include "runtime/mta.h"
#include "tuner/io/npy.h"
#include "tuner/measure/sample.h"
#include "tuner/tune/tune.h"

#include <dlfcn.h>
#include <getopt.h>
#include <limits.h>
#include <math.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

struct config {
	const char *name, *key;
};
static const struct config configs[] = {
	{ "perf-paper", "h8kv8d64-pre6x11-hpre-post6x11-hc8-both-gn-gate-f32" },
	{ "paper", "h16kv16d96-pre6x11-hpre-post6x11-hc16-both-gn-gate-f32" },
};
#define NCONFIGS (int)(sizeof configs / sizeof configs[0])
#define DEFAULT_KEY "h4kv4d32-pre3x5-hpre-post3x5-hc4-both-gn-gate-f32"

static double now(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static int cmpd(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;
	return x < y ? -1 : x > y;
}

/* Median, min and max of n values (NAN where none). */
struct stat3 {
	double med, lo, hi;
};
static struct stat3 stats(const double *v, int n)
{
	double s[256];
	int m = 0;
	for (int i = 0; i < n && m < 256; i++)
		if (isfinite(v[i]))
			s[m++] = v[i];
	if (!m)
		return (struct stat3){ NAN, NAN, NAN };
	qsort(s, (size_t)m, sizeof *s, cmpd);
	return (struct stat3){ m % 2 ? s[m / 2] : 0.5 * (s[m / 2 - 1] + s[m / 2]), s[0], s[m - 1] };
}

/* ---- the FMA peak: independent multiply-add chains on every thread ---- */

#define PEAK_CHAINS 16
#define PEAK_ITERS 2000000

typedef float v16 __attribute__((vector_size(64)));
typedef float v8 __attribute__((vector_size(32)));

__attribute__((target("avx512f"), noinline)) static float peak512(long n)
{
	v16 acc[PEAK_CHAINS], m = (v16){ 0 } + 0.999999f, a = (v16){ 0 } + 1e-7f;
#pragma GCC unroll 16
	for (int i = 0; i < PEAK_CHAINS; i++)
		acc[i] = (v16){ 0 } + (float)i;
	for (long k = 0; k < n; k++)
#pragma GCC unroll 16
		for (int i = 0; i < PEAK_CHAINS; i++)
			acc[i] = acc[i] * m + a;
	float s = 0;
#pragma GCC unroll 16
	for (int i = 0; i < PEAK_CHAINS; i++)
		s += acc[i][0];
	return s;
}

__attribute__((target("avx2,fma"), noinline)) static float peak256(long n)
{
	v8 acc[PEAK_CHAINS], m = (v8){ 0 } + 0.999999f, a = (v8){ 0 } + 1e-7f;
#pragma GCC unroll 16
	for (int i = 0; i < PEAK_CHAINS; i++)
		acc[i] = (v8){ 0 } + (float)i;
	for (long k = 0; k < n; k++)
#pragma GCC unroll 16
		for (int i = 0; i < PEAK_CHAINS; i++)
			acc[i] = acc[i] * m + a;
	float s = 0;
#pragma GCC unroll 16
	for (int i = 0; i < PEAK_CHAINS; i++)
		s += acc[i][0];
	return s;
}

static int peak_width(void)
{
	__builtin_cpu_init();
	if (__builtin_cpu_supports("avx512f"))
		return 16;
	if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma"))
		return 8;
	return 0;
}

static double cpu_now(clockid_t id)
{
	struct timespec ts;
	clock_gettime(id, &ts);
	return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

struct peak_job {
	long n;
	double cpu_s; /* the thread's CPU time */
	float sink;
};
static void *peak_thread(void *arg)
{
	struct peak_job *j = arg;
	double c0 = cpu_now(CLOCK_THREAD_CPUTIME_ID);
	j->sink = peak_width() == 16 ? peak512(j->n) : peak256(j->n);
	j->cpu_s = cpu_now(CLOCK_THREAD_CPUTIME_ID) - c0;
	return NULL;
}

/*
 * FMA chains on threads threads at once: FLOP/s of them all by the wall
 * clock, and *per_core the FLOP/s of one core by its CPU time (what time
 * slicing with other processes does not change). 0 when the CPU has no FMA.
 */
static double fma_peak(int threads, double *per_core)
{
	int w = peak_width();
	pthread_t th[64];
	struct peak_job j[64];
	*per_core = 0;
	if (!w)
		return 0;
	threads = threads < 1 ? 1 : threads > 64 ? 64 : threads;
	double t0 = now(), cpu = 0;
	for (int i = 0; i < threads; i++)
		j[i].n = PEAK_ITERS;
	for (int i = 1; i < threads; i++)
		pthread_create(&th[i], NULL, peak_thread, &j[i]);
	peak_thread(&j[0]);
	for (int i = 1; i < threads; i++)
		pthread_join(th[i], NULL);
	const double flops = 2.0 * w * PEAK_CHAINS * (double)PEAK_ITERS;
	for (int i = 0; i < threads; i++)
		cpu += j[i].cpu_s;
	*per_core = flops * threads / cpu;
	return flops * threads / (now() - t0);
}

/* ---- useful work, and executed work counted by the kernel ---- */

/* The steps as the kernels count them (templates/mta_cpu_vec.h, enum CNT_*). */
enum { S_QK, S_PRE, S_HPRE, S_EXP, S_POST, S_HPOST, S_PV, S_N };
static const char *const step_name[S_N] = { "q.k", "kq_pre", "head_pre", "exp", "kq_post",
					    "head_post", "P.V" };

/* Multiply-adds (exp: exps) of each step by the operation's definition, B = 1. */
static void useful(const struct mta_problem *p, int64_t T, double u[S_N])
{
	const double L = (double)T * (double)(T + 1) / 2 * p->H;
	u[S_QK] = u[S_PV] = L * p->D;
	u[S_PRE] = L * p->cq * p->ck;
	u[S_HPRE] = p->head_pre ? L * p->H : 0;
	u[S_EXP] = L;
	u[S_POST] = L * p->cq2 * p->ck2;
	u[S_HPOST] = p->head_post == MTA_HPOST_CONV ? L * p->hc
		     : p->head_post == MTA_HPOST_LINEAR ? L * p->H : 0;
}

static double useful_flops(const struct mta_problem *p, int64_t T)
{
	double u[S_N], f = 0;
	useful(p, T, u);
	for (int s = 0; s < S_N; s++)
		if (s != S_EXP)
			f += 2 * u[s];
	return f + 5 * u[S_EXP] + (double)T * p->H * ((p->gn ? 4 : 0) + (p->gate ? 2 : 0)) * p->D;
}

static double sdpa_flops(const struct mta_problem *p, int64_t T)
{
	double u[S_N];
	useful(p, T, u);
	return 2 * (u[S_QK] + u[S_PV]) + 5 * u[S_EXP];
}

/* Executed work of spec on p at T (one call, B = 1), from a counting build of its kernel. */
static int count_exec(const struct mta_problem *p, const char *spec, int64_t T, int threads,
		      double e[S_N])
{
	struct mta_variant v;
	struct mta_sample s;
	struct mta_kargs a;
	struct mta_pool *pool = NULL;
	char *src = NULL, *full = NULL, so[PATH_MAX];
	void *dl = NULL, *fn = NULL;
	float *o = NULL;
	int rc, have_s = 0;
	if ((rc = mta_variant_parse(spec, &v)) || (rc = mta_gen_c(p, &v, &src)))
		goto out;
	if (!(full = malloc(strlen(src) + 64))) {
		rc = MTA_ENOMEM;
		goto out;
	}
	sprintf(full, "#define K_COUNT 1\n%s", src);
	if ((rc = mta_cc_build(full, MTA_LANG_C, MTA_CPU_CFLAGS, so, sizeof so, NULL)) ||
	    (rc = mta_cc_open(so, MTA_CPU_ENTRY, &dl, &fn)))
		goto out;
	int64_t *cnt = dlsym(dl, "mta_cpu_counts");
	if (!cnt) {
		rc = mta_fail(MTA_ECOMPILE, "%s: no mta_cpu_counts in the counting build", spec);
		goto out;
	}
	struct mta_tensor to;
	if (!(o = malloc(sizeof(float) * (size_t)(T * p->H * p->D)))) {
		rc = MTA_ENOMEM;
		goto out;
	}
	mta_tensor_init(&to, o, MTA_F32, 1, T, p->H, p->D);
	if ((rc = mta_sample_make(p, 1, T, 42, &s)))
		goto out;
	have_s = 1;
	if ((rc = mta_kargs_fill(p, &s.q, &s.k, &s.v, &s.w, &to, threads, &a)) ||
	    (rc = mta_pool_create(&pool)))
		goto out;
	memset(cnt, 0, sizeof(int64_t) * S_N);
	if ((rc = mta_pool_call(pool, (int (*)(const struct mta_kargs *))fn, &a))) {
		rc = mta_fail(MTA_EKERNEL, "counting kernel %s returned %d", spec, rc);
		goto out;
	}
	for (int i = 0; i < S_N; i++)
		e[i] = (double)cnt[i];
out:
	mta_pool_free(pool);
	if (have_s)
		mta_sample_free(&s);
	free(o);
	if (dl)
		mta_cc_close(dl);
	free(full);
	free(src);
	return rc;
}

/* Print executed/useful per step and in all (exp: exps per logit). */
static void print_counts(const char *what, const struct mta_problem *p, int64_t T,
			 const double e[S_N])
{
	double u[S_N], eu = 0, uu = 0;
	useful(p, T, u);
	printf("    %-34s T=%-5lld", what, (long long)T);
	for (int s = 0; s < S_N; s++) {
		if (u[s] <= 0)
			continue;
		printf(" %s %.2f", step_name[s], e[s] / u[s]);
		if (s != S_EXP) {
			eu += e[s];
			uu += u[s];
		}
	}
	printf("  | all %.3f\n", eu / uu);
}

/* ---- the PyTorch peers: one server process per (configuration, T) ---- */

struct peer {
	FILE *to, *from;
	pid_t pid;
	char version[64];
};

/* Write inputs as .npy files for the peer, in the shapes of MTA.md. */
static int write_inputs(const struct mta_problem *p, const struct mta_sample *s, int64_t T,
			const char *dir)
{
	char path[1024];
	int rc = MTA_OK, H = p->H, D = p->D;
	struct { const char *name; const void *data; int nd; int64_t shape[4]; int use; } f[] = {
		{ "q", s->q.data, 4, { 1, T, H, D }, 1 },
		{ "k", s->k.data, 4, { 1, T, p->Hkv, D }, 1 },
		{ "v", s->v.data, 4, { 1, T, p->Hkv, D }, 1 },
		{ "kq_pre", s->w.kq_pre, 4, { H, 1, p->cq, p->ck }, p->cq > 0 },
		{ "head_pre", s->w.head_pre, 2, { H, H }, p->head_pre },
		{ "kq_post", s->w.kq_post, 4, { H, 1, p->cq2, p->ck2 }, p->cq2 > 0 },
		{ "head_post", s->w.head_post, 3, { H / (p->hc ? p->hc : 1), p->hc, p->hc },
		  p->head_post == MTA_HPOST_CONV },
		{ "head_post_linear", s->w.head_post_linear, 2, { H, H },
		  p->head_post == MTA_HPOST_LINEAR },
		{ "gn_weight", s->w.gn_weight, 1, { D }, p->gn },
		{ "gate_w", s->w.gate_w, 2, { 1, D }, p->gate },
		{ "gate_b", &s->w.gate_b, 1, { 1 }, p->gate },
	};
	for (size_t i = 0; !rc && i < sizeof f / sizeof f[0]; i++) {
		if (!f[i].use)
			continue;
		snprintf(path, sizeof path, "%s/%s.npy", dir, f[i].name);
		rc = mta_npy_write(path, MTA_F32, f[i].nd, f[i].shape, f[i].data);
	}
	return rc;
}

static int peer_start(struct peer *pr, const char *python, const char *dir, int threads,
		      const struct mta_problem *p)
{
	int in[2], out[2];
	char th[16], outp[1100];
	const char *pad = p->pad == MTA_PAD_LEFT ? "left" : p->pad == MTA_PAD_RIGHT ? "right" : "both";
	memset(pr, 0, sizeof *pr);
	if (pipe(in) || pipe(out))
		return -1;
	snprintf(th, sizeof th, "%d", threads);
	snprintf(outp, sizeof outp, "%s/eager_o.npy", dir);
	fflush(NULL);
	pid_t pid = fork();
	if (pid < 0)
		return -1;
	if (pid == 0) {
		dup2(in[0], 0);
		dup2(out[1], 1);
		close(in[1]);
		close(out[0]);
		setenv("OMP_NUM_THREADS", th, 1);
		/*
		 * PyTorch's OpenMP threads would otherwise spin for a while after
		 * each forward, on the cores the next participant is timed on.
		 */
		setenv("OMP_WAIT_POLICY", "PASSIVE", 1);
		setenv("KMP_BLOCKTIME", "0", 1);
		execl(python, python, "bench/peer_torch.py", dir, "--serve", "--threads", th,
		      "--pad-key", pad, "--out", outp, (char *)NULL);
		_exit(127);
	}
	close(in[0]);
	close(out[1]);
	pr->pid = pid;
	pr->to = fdopen(in[1], "w");
	pr->from = fdopen(out[0], "r");
	char line[512];
	while (fgets(line, sizeof line, pr->from)) {
		char *v = strstr(line, "\"torch\": \"");
		if (strstr(line, "\"ready\"")) {
			if (v)
				sscanf(v + 10, "%63[^\"]", pr->version);
			return 0;
		}
	}
	return -1;
}

/* One timed forward of the peer ("sdpa", "eager", "compile"): seconds, NAN on failure. */
static double peer_run(struct peer *pr, const char *which)
{
	char line[512];
	double s = NAN;
	if (!pr->to)
		return NAN;
	fprintf(pr->to, "%s\n", which);
	fflush(pr->to);
	if (!fgets(line, sizeof line, pr->from))
		return NAN;
	char *at = strstr(line, "\"s\": ");
	if (at)
		s = atof(at + 5);
	return s;
}

static void peer_stop(struct peer *pr)
{
	if (!pr->to)
		return;
	fprintf(pr->to, "quit\n");
	fclose(pr->to);
	fclose(pr->from);
	waitpid(pr->pid, NULL, 0);
	pr->to = NULL;
}

/* ---- options ---- */

struct opts {
	int threads, rounds, tune, peers, calls, nseqs, cfg[NCONFIGS], train; /* train 2: only */
	long seqs[16], eager_max;
	const char *db, *python;
	int only_serving;          /* --serving: the decode and packed sections alone */
	int ndec;                  /* --decode-seqs: cache lengths of the decode section */
	long dec[16];
	int only_percall;          /* --per-call: the per-call section alone */
};

static int parse(int argc, char **argv, struct opts *o)
{
	static const struct option lo[] = {
		{ "threads", required_argument, NULL, 't' }, { "seqs", required_argument, NULL, 's' },
		{ "rounds", required_argument, NULL, 'r' }, { "configs", required_argument, NULL, 'c' },
		{ "db", required_argument, NULL, 'd' }, { "python", required_argument, NULL, 'p' },
		{ "eager-max-seq", required_argument, NULL, 'e' }, { "no-tune", no_argument, NULL, 'n' },
		{ "no-peers", no_argument, NULL, 'P' }, { "calls", required_argument, NULL, 'C' },
		{ "no-train", no_argument, NULL, 'N' }, { "train-only", no_argument, NULL, 'O' },
		{ "serving", no_argument, NULL, 'S' }, { "decode-seqs", required_argument, NULL, 'D' },
		{ "per-call", no_argument, NULL, 'K' },
		{ 0 },
	};
	int c;
	*o = (struct opts){ (int)sysconf(_SC_NPROCESSORS_ONLN), 5, 1, 1, 20000, 3,
			    { 1, 1 }, 1, { 1024, 2048, 4096 }, 4096, "build/bench.db", ".venv/bin/python",
			    0, 6, { 1024, 2048, 4096, 8192, 16384, 32768 }, 0 };
	while ((c = getopt_long(argc, argv, "", lo, NULL)) != -1) {
		char *tok, *save = NULL;
		switch (c) {
		case 't': o->threads = atoi(optarg); break;
		case 'r': o->rounds = atoi(optarg); break;
		case 'd': o->db = optarg; break;
		case 'p': o->python = optarg; break;
		case 'e': o->eager_max = atol(optarg); break;
		case 'n': o->tune = 0; break;
		case 'P': o->peers = 0; break;
		case 'C': o->calls = atoi(optarg); break;
		case 'N': o->train = 0; break;
		case 'O': o->train = 2; break;
		case 'S': o->only_serving = 1; break;
		case 'K': o->only_percall = 1; break;
		case 'D':
			o->ndec = 0;
			for (tok = strtok_r(optarg, ",", &save); tok && o->ndec < 16;
			     tok = strtok_r(NULL, ",", &save))
				o->dec[o->ndec++] = atol(tok);
			break;
		case 's':
			o->nseqs = 0;
			for (tok = strtok_r(optarg, ",", &save); tok && o->nseqs < 16;
			     tok = strtok_r(NULL, ",", &save))
				o->seqs[o->nseqs++] = atol(tok);
			break;
		case 'c':
			memset(o->cfg, 0, sizeof o->cfg);
			for (tok = strtok_r(optarg, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
				int k = 0;
				while (k < NCONFIGS && strcmp(configs[k].name, tok))
					k++;
				if (k == NCONFIGS) {
					fprintf(stderr, "cpu_bench: unknown configuration '%s' (expected "
						"perf-paper or paper)\n", tok);
					return 2;
				}
				o->cfg[k] = 1;
			}
			break;
		default:
			fprintf(stderr, "usage: cpu_bench [--threads N] [--seqs T,T,...] [--rounds N] "
				"[--configs perf-paper,paper] [--db PATH] [--python PATH] "
				"[--eager-max-seq T] [--no-tune] [--no-peers] [--calls N] "
				"[--no-train | --train-only] [--serving | --per-call] "
				"[--decode-seqs T,T,...]\n");
			return 2;
		}
	}
	for (int i = 0; i < o->ndec; i++)
		if (o->dec[i] < 2 || o->dec[i] > (1L << 24)) {
			fprintf(stderr, "cpu_bench: --decode-seqs %ld is outside 2..2^24\n", o->dec[i]);
			return 2;
		}
	if (o->threads < 1 || o->rounds < 1 || o->rounds > 200 || o->nseqs < 1 || o->calls < 100) {
		fprintf(stderr, "cpu_bench: expected --threads >= 1, --rounds in 1..200, --calls >= 100 "
			"and at least one sequence length\n");
		return 2;
	}
	return 0;
}

/* ---- the measurements ---- */

/* The variant the runtime picks for operation op ("fwd", "bwd") of (p, T) from db. */
static int pick(const char *db, const struct mta_problem *p, const char *op, int64_t T, char *spec,
		int *source)
{
	mta_context *c = NULL;
	struct mta_pick pk;
	int rc = mta_context_create(&c, db, "cpu", 0);
	if (!rc && !(rc = mta_context_pick_op(c, p, op, 1, T, &pk))) {
		snprintf(spec, MTA_SPEC_MAX, "%s", pk.spec);
		*source = pk.source;
	}
	mta_context_free(c);
	return rc;
}

static int tune_at(const struct opts *o, const struct mta_problem *p, int64_t T)
{
	struct mta_tune_opts t;
	struct mta_tune_summary s;
	mta_tune_defaults(&t);
	t.db_path = o->db;
	t.T = T;
	t.reps = 5;
	t.top = 3;
	t.threads = o->threads;
	t.seed = 7;
	t.timeout_s = 900;
	if (mta_tune(p, &t, &s)) {
		fprintf(stderr, "tuning at T=%lld failed: %s\n", (long long)T, mta_last_error());
		return 1;
	}
	printf("    tuned at T=%-5lld winner %s (%.2f ms), default %s (%.2f ms)\n", (long long)T,
	       s.winner, s.winner_ms, s.default_spec, s.default_ms);
	return 0;
}

enum { P_PEAK, P_CPEAK, P_MT, P_MTCPU, P_SDPA, P_EAGER, P_COMPILE, P_N };

static int bench_T(const struct opts *o, const struct mta_problem *p, int64_t T, const char *dir)
{
	struct mta_sample s;
	struct mta_variant v;
	struct mta_device *dev = NULL;
	struct mta_kernel *k = NULL;
	const struct mta_backend *be = &mta_backend_cpu;
	struct peer pr;
	char spec[MTA_SPEC_MAX];
	int source, rc, peers = 0;
	double t[P_N][256];
	float *out = malloc(sizeof(float) * (size_t)(T * p->H * p->D));
	struct mta_tensor to;
	memset(&pr, 0, sizeof pr);
	if (!out || (rc = mta_sample_make(p, 1, T, 42, &s)))
		return 1;
	mta_tensor_init(&to, out, MTA_F32, 1, T, p->H, p->D);
	if ((rc = pick(o->db, p, "fwd", T, spec, &source)) || (rc = mta_variant_parse(spec, &v)) ||
	    (rc = be->open(0, o->threads, &dev)) || (rc = be->load(dev, NULL, p, &v, NULL, 0, &k)) ||
	    (rc = be->forward(k, p, &s.q, &s.k, &s.v, &s.w, &to))) {
		fprintf(stderr, "mtatune at T=%lld: %s\n", (long long)T, mta_last_error());
		goto out;
	}
	if (o->peers) {
		if (access(o->python, X_OK)) {
			static int said;
			if (!said++)
				printf("    PyTorch peers skipped: no %s (create it: python3 -m venv .venv "
				       "&& .venv/bin/pip install torch numpy)\n", o->python);
		} else if (write_inputs(p, &s, T, dir) || peer_start(&pr, o->python, dir, o->threads, p)) {
			printf("    PyTorch peers skipped: %s did not start bench/peer_torch.py\n",
			       o->python);
			peer_stop(&pr);
		} else {
			peers = 1;
			/* warm each once, untimed (compile compiles) */
			peer_run(&pr, "sdpa");
			if (T <= o->eager_max)
				peer_run(&pr, "eager");
			peer_run(&pr, "compile");
		}
	}
	for (int r = 0; r < o->rounds; r++) {
		t[P_PEAK][r] = fma_peak(o->threads, &t[P_CPEAK][r]);
		double t0 = now(), c0 = cpu_now(CLOCK_PROCESS_CPUTIME_ID);
		rc = be->forward(k, p, &s.q, &s.k, &s.v, &s.w, &to);
		t[P_MT][r] = rc ? NAN : now() - t0;
		t[P_MTCPU][r] = rc ? NAN : cpu_now(CLOCK_PROCESS_CPUTIME_ID) - c0;
		t[P_SDPA][r] = peers ? peer_run(&pr, "sdpa") : NAN;
		t[P_EAGER][r] = peers && T <= o->eager_max ? peer_run(&pr, "eager") : NAN;
		t[P_COMPILE][r] = peers ? peer_run(&pr, "compile") : NAN;
	}
	/* per-round ratios, so that drift between rounds cancels */
	double q_sdpa[256], q_eager[256], q_comp[256], eff[256], gf[256], sgf[256], ceff[256];
	const double uf = useful_flops(p, T), sf = sdpa_flops(p, T);
	for (int r = 0; r < o->rounds; r++) {
		q_sdpa[r] = t[P_MT][r] / t[P_SDPA][r];
		q_eager[r] = t[P_EAGER][r] / t[P_MT][r];
		q_comp[r] = t[P_COMPILE][r] / t[P_MT][r];
		gf[r] = uf / t[P_MT][r] / 1e9;
		sgf[r] = sf / t[P_SDPA][r] / 1e9;
		eff[r] = uf / t[P_MT][r] / t[P_PEAK][r];
		ceff[r] = uf / t[P_MTCPU][r] / t[P_CPEAK][r];
	}
	struct stat3 mt = stats(t[P_MT], o->rounds), sd = stats(t[P_SDPA], o->rounds),
		     ea = stats(t[P_EAGER], o->rounds), co = stats(t[P_COMPILE], o->rounds),
		     pk = stats(t[P_PEAK], o->rounds), a = stats(q_sdpa, o->rounds),
		     b = stats(q_eager, o->rounds), c = stats(q_comp, o->rounds),
		     g = stats(gf, o->rounds), sg = stats(sgf, o->rounds), e = stats(eff, o->rounds),
		     ce = stats(ceff, o->rounds), cp = stats(t[P_CPEAK], o->rounds);
	double err = NAN;
	if (peers) {
		char path[1100];
		struct mta_npy y;
		snprintf(path, sizeof path, "%s/eager_o.npy", dir);
		if (!mta_npy_read(path, &y)) {
			if (!mta_npy_convert(&y, MTA_F64) && y.count == (size_t)(T * p->H * p->D))
				err = mta_rel_l2(out, y.data, y.count);
			mta_npy_free(&y);
		}
	}
	printf("  T=%lld  mtatune %s (%s)\n", (long long)T, spec,
	       source == MTA_PICK_EXACT ? "tuned at this T" : source == MTA_PICK_NEAREST
	       ? "nearest tuned T" : "default variant");
	printf("    seconds, median [min, max] of %d interleaved rounds:\n", o->rounds);
	printf("      mtatune %.4f [%.4f, %.4f]   SDPA %.4f [%.4f, %.4f]\n", mt.med, mt.lo, mt.hi,
	       sd.med, sd.lo, sd.hi);
	printf("      eager   %.4f [%.4f, %.4f]   compile %.4f [%.4f, %.4f]\n", ea.med, ea.lo, ea.hi,
	       co.med, co.lo, co.hi);
	printf("    ratios per round, median [min, max]: mtatune/SDPA %.2f [%.2f, %.2f]   "
	       "eager/mtatune %.1f [%.1f, %.1f]   compile/mtatune %.1f [%.1f, %.1f]\n",
	       a.med, a.lo, a.hi, b.med, b.lo, b.hi, c.med, c.lo, c.hi);
	printf("    useful GFLOP/s: mtatune %.1f [%.1f, %.1f] = %.0f%% [%.0f, %.0f] of the FMA peak "
	       "%.1f [%.1f, %.1f]; SDPA %.1f [%.1f, %.1f]\n", g.med, g.lo, g.hi, 100 * e.med,
	       100 * e.lo, 100 * e.hi, pk.med / 1e9, pk.lo / 1e9, pk.hi / 1e9, sg.med, sg.lo, sg.hi);
	printf("    by CPU time (time slicing cancels): mtatune %.0f%% [%.0f, %.0f] of one core's "
	       "peak %.1f GFLOP/s per core-second\n", 100 * ce.med, 100 * ce.lo, 100 * ce.hi,
	       cp.med / 1e9);
	printf("    useful GFLOP per call: mtatune %.2f, SDPA %.2f (MTA/plain attention %.2fx); "
	       "rel L2 mtatune vs eager %.2e\n", uf / 1e9, sf / 1e9, uf / sf, err);
	fflush(stdout);
out:
	peer_stop(&pr);
	be->unload(k);
	be->close(dev);
	mta_sample_free(&s);
	free(out);
	return rc ? 1 : 0;
}

/*
 * Training at T: our saving forward + backward against eager PyTorch's
 * forward + autograd backward, interleaved rounds, the same inputs and dL/do.
 */
static int bench_train(const struct opts *o, const struct mta_problem *p, int64_t T,
		       const char *dir)
{
	const struct mta_backend *be = &mta_backend_cpu;
	struct mta_sample s;
	struct mta_variant v;
	struct mta_device *dev = NULL;
	struct mta_kernel *k = NULL;
	struct peer pr;
	char spec[MTA_SPEC_MAX];
	int source, rc = 1, peers = 0;
	const size_t no = (size_t)T * (size_t)p->H * (size_t)p->D,
		     nkv = (size_t)T * (size_t)p->Hkv * (size_t)p->D;
	const int64_t sb = mta_saved_bytes(p, 1, T);
	float *out = malloc(no * sizeof *out), *dout = malloc(no * sizeof *dout);
	float *g[11] = { 0 };
	const size_t gn[11] = { no, nkv, nkv, (size_t)(p->H * p->cq * p->ck), (size_t)(p->H * p->H),
				(size_t)(p->H * p->cq2 * p->ck2), (size_t)(p->H * p->H),
				(size_t)(p->H * p->H), (size_t)p->D, (size_t)p->D, 1 };
	void *saved = sb > 0 ? malloc((size_t)sb) : NULL;
	double t[2][256], rss = NAN;
	struct mta_tensor to, td;
	memset(&pr, 0, sizeof pr);
	memset(&s, 0, sizeof s);
	for (int i = 0; i < 11; i++)
		g[i] = malloc((gn[i] ? gn[i] : 1) * sizeof(float));
	if (!out || !dout || !saved || mta_sample_make(p, 1, T, 43, &s))
		goto out;
	srand(44);
	for (size_t i = 0; i < no; i++)
		dout[i] = (float)rand() / (float)RAND_MAX - 0.5f;
	mta_tensor_init(&to, out, MTA_F32, 1, T, p->H, p->D);
	mta_tensor_init(&td, dout, MTA_F32, 1, T, p->H, p->D);
	struct mta_grads gr = { g[0], g[1], g[2], g[3], g[4], g[5], g[6], g[7], g[8], g[9], g[10] };
	if (pick(o->db, p, "bwd", T, spec, &source) || mta_variant_parse(spec, &v) ||
	    be->open(0, o->threads, &dev) || be->train_load(dev, p, &v, &k) ||
	    be->fwd_save(k, p, &s.q, &s.k, &s.v, &s.w, &to, saved) ||
	    be->backward(k, p, &s.q, &s.k, &s.v, &s.w, saved, &td, &gr)) {
		fprintf(stderr, "mtatune training at T=%lld: %s\n", (long long)T, mta_last_error());
		goto out;
	}
	char path[1100];
	int64_t shape[4] = { 1, T, p->H, p->D };
	snprintf(path, sizeof path, "%s/dout.npy", dir);
	if (o->peers && T <= o->eager_max && !access(o->python, X_OK) &&
	    !write_inputs(p, &s, T, dir) && !mta_npy_write(path, MTA_F32, 4, shape, dout) &&
	    !peer_start(&pr, o->python, dir, o->threads, p)) {
		peers = 1;
		peer_run(&pr, "train"); /* warm, untimed */
	} else if (o->peers) {
		printf("    training peer skipped (no %s, or T above --eager-max-seq)\n", o->python);
		peer_stop(&pr);
	}
	for (int r = 0; r < o->rounds; r++) {
		double t0 = now();
		int e = be->fwd_save(k, p, &s.q, &s.k, &s.v, &s.w, &to, saved) ||
			be->backward(k, p, &s.q, &s.k, &s.v, &s.w, saved, &td, &gr);
		t[0][r] = e ? NAN : now() - t0;
		t[1][r] = NAN;
		if (peers) {
			char line[512];
			fprintf(pr.to, "train\n");
			fflush(pr.to);
			if (fgets(line, sizeof line, pr.from)) {
				char *at = strstr(line, "\"s\": "), *m = strstr(line, "\"rss\": ");
				t[1][r] = at ? atof(at + 5) : NAN;
				rss = m ? atof(m + 7) : NAN;
			}
		}
	}
	double q[256], err = NAN;
	for (int r = 0; r < o->rounds; r++)
		q[r] = t[1][r] / t[0][r];
	struct stat3 mt = stats(t[0], o->rounds), ea = stats(t[1], o->rounds),
		     qq = stats(q, o->rounds);
	if (peers) {
		struct mta_npy y;
		snprintf(path, sizeof path, "%s/eager_dq.npy", dir);
		if (!mta_npy_read(path, &y)) {
			if (!mta_npy_convert(&y, MTA_F64) && y.count == no)
				err = mta_rel_l2(g[0], y.data, y.count);
			mta_npy_free(&y);
		}
	}
	/* ours: the saved state, each thread's workspace, the shared k, v copies and partials */
	double ws = (double)sb + 4.0 * (4 + 2 * o->threads) * (double)nkv;
	struct mta_cpu_bwd *kb = NULL;
	if (!mta_cpu_bwd_load(p, &v, &kb))
		ws += (double)o->threads * (double)mta_cpu_bwd_workspace(kb, T);
	mta_cpu_bwd_free(kb);
	printf("  training T=%lld  forward+backward, %s (%s)\n", (long long)T, spec,
	       source == MTA_PICK_EXACT ? "tuned backward winner" : "default backward variant");
	printf("    seconds, median [min, max] of %d interleaved rounds: mtatune %.4f [%.4f, %.4f]"
	       "   eager autograd %.4f [%.4f, %.4f]\n", o->rounds, mt.med, mt.lo, mt.hi, ea.med,
	       ea.lo, ea.hi);
	printf("    eager/mtatune per round %.2f [%.2f, %.2f]; memory: mtatune %.1f MB (saved %.1f "
	       "MB + workspaces), eager process peak RSS %.0f MB; dL/dq rel L2 vs eager %.2e\n",
	       qq.med, qq.lo, qq.hi, ws / 1e6, (double)sb / 1e6, rss / 1e6, err);
	fflush(stdout);
	rc = 0;
out:
	peer_stop(&pr);
	if (be->unload)
		be->unload(k);
	be->close(dev);
	mta_sample_free(&s);
	for (int i = 0; i < 11; i++)
		free(g[i]);
	free(out);
	free(dout);
	free(saved);
	return rc;
}

/*
 * mta_forward at small T: the per-call cost of the runtime and the kernel.
 * The problems take turns, round by round (o->rounds rounds of o->calls
 * calls, each call timed alone), so that the machine's drift falls on both;
 * each round's median is kept, and their median and range printed.
 */
#define PC_N 2
static int percall(const struct opts *o, const char *const *keys, int64_t T)
{
	struct mta_problem p[PC_N];
	struct mta_sample s[PC_N];
	mta_context *c[PC_N] = { NULL };
	struct mta_pick pk[PC_N];
	float *out[PC_N] = { NULL };
	struct mta_tensor to[PC_N];
	double *t = malloc(sizeof(double) * (size_t)o->calls);
	double *med = malloc(sizeof(double) * (size_t)(PC_N * o->rounds)), lo[PC_N];
	int rc = 1, made = 0;
	if (!t || !med)
		goto out;
	for (int k = 0; k < PC_N; k++) {
		if (mta_problem_from_key(keys[k], &p[k]) || mta_sample_make(&p[k], 1, T, 1, &s[k]))
			goto out;
		made = k + 1; /* s[k] to free, and out[k], c[k] where not NULL */
		if (!(out[k] = malloc(sizeof(float) * (size_t)(T * p[k].H * p[k].D))))
			goto out;
		mta_tensor_init(&to[k], out[k], MTA_F32, 1, T, p[k].H, p[k].D);
		if (mta_context_create(&c[k], o->db, "cpu", 0) ||
		    mta_context_pick(c[k], &p[k], 1, T, &pk[k]) ||
		    mta_forward(c[k], &p[k], &s[k].q, &s[k].k, &s[k].v, &s[k].w, &to[k])) {
			fprintf(stderr, "per-call: %s\n", mta_last_error());
			goto out;
		}
		lo[k] = INFINITY;
	}
	for (int r = 0; r < o->rounds; r++)
		for (int k = 0; k < PC_N; k++) {
			for (int i = 0; i < o->calls; i++) {
				const double t0 = now();
				mta_forward(c[k], &p[k], &s[k].q, &s[k].k, &s[k].v, &s[k].w, &to[k]);
				t[i] = now() - t0;
			}
			qsort(t, (size_t)o->calls, sizeof *t, cmpd);
			med[k * o->rounds + r] = t[o->calls / 2];
			lo[k] = fmin(lo[k], t[0]);
		}
	for (int k = 0; k < PC_N; k++) {
		const struct stat3 m = stats(med + k * o->rounds, o->rounds);
		printf("  %s T=%lld, %s: per call median %.2f us [%.2f, %.2f] over %d rounds of %d "
		       "calls (fastest call %.2f us)\n", keys[k], (long long)T, pk[k].spec,
		       1e6 * m.med, 1e6 * m.lo, 1e6 * m.hi, o->rounds, o->calls, 1e6 * lo[k]);
	}
	rc = 0;
out:
	for (int k = 0; k < made; k++) {
		mta_context_free(c[k]);
		mta_sample_free(&s[k]);
		free(out[k]);
	}
	free(t);
	free(med);
	return rc;
}

static int percall_section(const struct opts *o)
{
	const char *keys[PC_N] = { DEFAULT_KEY, configs[1].key };
	printf("\nper-call cost of mta_forward at small T (one thread's work; the pool's threads "
	       "stay asleep):\n");
	return percall(o, keys, 16);
}

/* ---- serving: decode per token against cache length, packed documents ---- */

/*
 * Decode at cache length T: the cache is prefilled with T-1 tokens (one
 * chunk), then, interleaved over rounds, one token through the decode kernel
 * (mta_decode on a mta_cache_create_ctx cache, then the token is dropped
 * again, mta_cache_drop_last: each round measures the step at the same
 * length), the full forward of the T tokens (what recomputing per token
 * costs, as the reference implementation does) and the prefill of T-1
 * tokens into the emptied cache (the context's forward, then the last rows
 * through the decode kernel to seed the rings). Prints medians, spreads and
 * the per-round ratio. T up to --decode-seqs; the forward is skipped above
 * 8192 (minutes per call on a shared machine) and said so. The same token
 * through the decode kernel on one thread (a pool of its own, its cache
 * filled by mta_cache_fill) gives the speedup of the context's threads (the
 * kernel splits a row's key blocks over them).
 */
static int decode_T(const struct opts *o, const struct mta_problem *p, int64_t T)
{
	struct mta_sample s;
	mta_context *c = NULL;
	mta_cache *cache = NULL, *one = NULL; /* one: the decode kernel on one thread */
	struct mta_cpu_decode *dk = NULL;
	struct mta_pool *pool = NULL;
	struct mta_tensor to, qp, kp, vp, op, q1, k1, v1, o1;
	float *out = NULL;
	int rc = 1, rounds = o->rounds;
	double td[200] = { 0 }, tf[200] = { 0 }, ratio[200] = { 0 }, t1[200] = { 0 };
	double sp[200] = { 0 }, tpre[200] = { 0 };
	const int full = T <= 8192;
	if (mta_sample_make(p, 1, T, 7, &s))
		return 1;
	if (!(out = malloc(sizeof(float) * (size_t)(T * p->H * p->D))))
		goto out;
	mta_tensor_init(&to, out, MTA_F32, 1, T, p->H, p->D);
	if (mta_context_create(&c, o->db, "cpu", 0) || mta_cache_create_ctx(c, p, 1, &cache))
		goto fail;
	/* views: rows [0, T-1) as the prefill, row T-1 as the token */
	qp = s.q, kp = s.k, vp = s.v, op = to;
	qp.shape[1] = kp.shape[1] = vp.shape[1] = op.shape[1] = T - 1;
	q1 = s.q, k1 = s.k, v1 = s.v, o1 = to;
	q1.shape[1] = k1.shape[1] = v1.shape[1] = o1.shape[1] = 1;
	q1.data = (float *)s.q.data + (T - 1) * s.q.stride[1];
	k1.data = (float *)s.k.data + (T - 1) * s.k.stride[1];
	v1.data = (float *)s.v.data + (T - 1) * s.v.stride[1];
	o1.data = out + (T - 1) * to.stride[1];
	if (mta_decode(cache, &qp, &kp, &vp, &s.w, NULL, &op))
		goto fail;
	if (full && mta_forward(c, p, &s.q, &s.k, &s.v, &s.w, &to)) /* warm: compile, pool */
		goto fail;
	/* the same kernel on one thread of a pool of its own, for the threads' speedup */
	if (mta_cpu_decode_load(p, NULL, &dk) || mta_pool_create(&pool))
		goto fail;
	const struct mta_decoder d1 = { .fn = mta_cpu_decode_entry(dk), .pool = pool, .nthreads = 1 };
	if (mta_cache_create_kernel(p, 1, &d1, &one) ||
	    mta_cache_fill(one, &qp, &kp, &vp, &s.w, NULL))
		goto fail;
	for (int r = 0; r < rounds; r++) {
		/* the token, then back to T-1 tokens for the next round */
		double t0 = now();
		if (mta_decode(cache, &q1, &k1, &v1, &s.w, NULL, &o1))
			goto fail;
		td[r] = now() - t0;
		mta_cache_drop_last(cache);
		tf[r] = NAN;
		if (full) {
			t0 = now();
			if (mta_forward(c, p, &s.q, &s.k, &s.v, &s.w, &to))
				goto fail;
			tf[r] = now() - t0;
		}
		ratio[r] = tf[r] / td[r];
		t0 = now();
		if (mta_decode(one, &q1, &k1, &v1, &s.w, NULL, &o1))
			goto fail;
		t1[r] = now() - t0;
		sp[r] = t1[r] / td[r];
		mta_cache_drop_last(one);
		/* the prefill of T-1 tokens into the emptied cache */
		if (mta_cache_reset(cache, 0))
			goto fail;
		t0 = now();
		if (mta_decode(cache, &qp, &kp, &vp, &s.w, NULL, &op))
			goto fail;
		tpre[r] = now() - t0;
	}
	struct stat3 d = stats(td, rounds), f = stats(tf, rounds), x = stats(ratio, rounds);
	struct stat3 d1s = stats(t1, rounds), sps = stats(sp, rounds), pre = stats(tpre, rounds);
	if (full)
		printf("  T=%6lld  decode %9.3f ms/token [%.3f, %.3f]   full forward %10.2f ms "
		       "[%.2f, %.2f]   forward/decode %8.1fx [%.1f, %.1f]\n", (long long)T,
		       1e3 * d.med, 1e3 * d.lo, 1e3 * d.hi, 1e3 * f.med, 1e3 * f.lo, 1e3 * f.hi,
		       x.med, x.lo, x.hi);
	else
		printf("  T=%6lld  decode %9.3f ms/token [%.3f, %.3f]   full forward not run above "
		       "T=8192 (O(T^2) per token)\n", (long long)T, 1e3 * d.med, 1e3 * d.lo,
		       1e3 * d.hi);
	printf("  T=%6lld  decode on 1 thread %9.3f ms/token [%.3f, %.3f]   1 thread/context's "
	       "threads %5.2fx [%.2f, %.2f]\n", (long long)T, 1e3 * d1s.med, 1e3 * d1s.lo,
	       1e3 * d1s.hi, sps.med, sps.lo, sps.hi);
	printf("  T=%6lld  prefill of %lld tokens into an empty cache %10.2f ms [%.2f, %.2f]\n",
	       (long long)T, (long long)(T - 1), 1e3 * pre.med, 1e3 * pre.lo, 1e3 * pre.hi);
	rc = 0;
	goto out;
fail:
	fprintf(stderr, "decode T=%lld: %s\n", (long long)T, mta_last_error());
out:
	mta_cache_free(cache);
	mta_cache_free(one);
	mta_cpu_decode_free(dk);
	mta_pool_free(pool);
	mta_context_free(c);
	mta_sample_free(&s);
	free(out);
	return rc;
}

/*
 * Packed documents against the same documents one by one: ndocs documents
 * of random lengths (mean T/ndocs) in one sequence of T, mta_forward_varlen
 * (one kernel call) and mta_forward per document on views, interleaved.
 */
static int packed_T(const struct opts *o, const struct mta_problem *p, int64_t T, int64_t ndocs)
{
	struct mta_sample s;
	mta_context *c = NULL;
	float *out = NULL;
	int64_t cu[257];
	double tp[200] = { 0 }, ts[200] = { 0 }, ratio[200] = { 0 };
	int rc = 1;
	if (ndocs > 256 || mta_sample_make(p, 1, T, 9, &s))
		return 1;
	srand(11);
	cu[0] = 0;
	for (int64_t d = 1; d < ndocs; d++) /* cut points: sorted random offsets */
		cu[d] = rand() % (T + 1);
	cu[ndocs] = T;
	for (int64_t i = 1; i < ndocs; i++)
		for (int64_t j = i; j > 1 && cu[j] < cu[j - 1]; j--) {
			int64_t t = cu[j];
			cu[j] = cu[j - 1];
			cu[j - 1] = t;
		}
	struct mta_tensor to;
	if (!(out = malloc(sizeof(float) * (size_t)(T * p->H * p->D))))
		goto out;
	mta_tensor_init(&to, out, MTA_F32, 1, T, p->H, p->D);
	if (mta_context_create(&c, o->db, "cpu", 0) ||
	    mta_forward_varlen(c, p, &s.q, &s.k, &s.v, &s.w, cu, ndocs, &to))
		goto fail;
	for (int r = 0; r < o->rounds; r++) {
		double t0 = now();
		if (mta_forward_varlen(c, p, &s.q, &s.k, &s.v, &s.w, cu, ndocs, &to))
			goto fail;
		tp[r] = now() - t0;
		t0 = now();
		for (int64_t d = 0; d < ndocs; d++) {
			struct mta_tensor qd = s.q, kd = s.k, vd = s.v, od = to;
			const int64_t n = cu[d + 1] - cu[d];
			if (!n)
				continue;
			qd.shape[1] = kd.shape[1] = vd.shape[1] = od.shape[1] = n;
			qd.data = (float *)s.q.data + cu[d] * s.q.stride[1];
			kd.data = (float *)s.k.data + cu[d] * s.k.stride[1];
			vd.data = (float *)s.v.data + cu[d] * s.v.stride[1];
			od.data = out + cu[d] * to.stride[1];
			if (mta_forward(c, p, &qd, &kd, &vd, &s.w, &od))
				goto fail;
		}
		ts[r] = now() - t0;
		ratio[r] = ts[r] / tp[r];
	}
	struct stat3 a = stats(tp, o->rounds), b = stats(ts, o->rounds), x = stats(ratio, o->rounds);
	printf("  T=%6lld, %3lld documents: packed %9.2f ms [%.2f, %.2f]   one by one %9.2f ms "
	       "[%.2f, %.2f]   one-by-one/packed %.2fx [%.2f, %.2f]\n", (long long)T,
	       (long long)ndocs, 1e3 * a.med, 1e3 * a.lo, 1e3 * a.hi, 1e3 * b.med, 1e3 * b.lo,
	       1e3 * b.hi, x.med, x.lo, x.hi);
	rc = 0;
	goto out;
fail:
	fprintf(stderr, "packed T=%lld: %s\n", (long long)T, mta_last_error());
out:
	mta_context_free(c);
	mta_sample_free(&s);
	free(out);
	return rc;
}

static int serving(const struct opts *o)
{
	for (int ci = 0; ci < NCONFIGS; ci++) {
		struct mta_problem p;
		if (!o->cfg[ci])
			continue;
		if (mta_problem_from_key(configs[ci].key, &p))
			return 1;
		printf("\ndecode, %s (%s): one token at cache length T through the generated decode "
		       "kernel, against the full forward of T tokens (the runtime's pick), %d "
		       "interleaved rounds; median [min, max]\n", configs[ci].name,
		       configs[ci].key, o->rounds);
		for (int i = 0; i < o->ndec; i++)
			if (decode_T(o, &p, o->dec[i]))
				return 1;
		printf("packed documents, %s: mta_forward_varlen (one call) against mta_forward per "
		       "document\n", configs[ci].name);
		for (int i = 0; i < o->nseqs; i++)
			if (packed_T(o, &p, o->seqs[i], 8) || packed_T(o, &p, o->seqs[i], 64))
				return 1;
	}
	return 0;
}

int main(int argc, char **argv)
{
	struct opts o;
	int rc = parse(argc, argv, &o);
	if (rc)
		return rc;
	signal(SIGPIPE, SIG_IGN); /* a peer that died is a failed read, not the end of the run */
	char dir[] = "/tmp/mtabench-XXXXXX";
	if (!mkdtemp(dir))
		return 1;
	struct mta_db_device d;
	mta_device_cpu(&d);
	char date[64], commit[64] = "?";
	time_t now_t = time(NULL);
	strftime(date, sizeof date, "%Y-%m-%d %H:%M UTC", gmtime(&now_t));
	FILE *g = popen("git rev-parse --short HEAD 2>/dev/null && git status --porcelain "
			"--untracked-files=no 2>/dev/null | head -1", "r");
	if (g) {
		char extra[256] = "";
		if (fgets(commit, sizeof commit, g))
			commit[strcspn(commit, "\n")] = 0;
		if (fgets(extra, sizeof extra, g))
			strcat(commit, " (with uncommitted changes)");
		pclose(g);
	}
	double la[3] = { NAN, NAN, NAN };
	if (getloadavg(la, 3) < 0)
		la[0] = NAN;
	printf("mtatune CPU benchmark, %s, commit %s\n", date, commit);
	printf("machine: %s, %d cores (%s); compiler %s; load average %.2f %.2f %.2f at start\n",
	       d.name, d.cores, d.arch, d.compiler, la[0], la[1], la[2]);
	printf("threads: %d for every participant; %d interleaved rounds per size\n", o.threads,
	       o.rounds);
	if (o.only_percall)
		return percall_section(&o);
	double pk[5], cpk[5];
	for (int i = 0; i < 5; i++)
		pk[i] = fma_peak(o.threads, &cpk[i]);
	struct stat3 ps = stats(pk, 5), cps = stats(cpk, 5);
	if (o.only_serving)
		return serving(&o);
	printf("FMA peak (%d-float FMA chains on %d threads): %.1f GFLOP/s [%.1f, %.1f] by the wall "
	       "clock, %.1f per core-second of CPU time\n", peak_width(), o.threads, ps.med / 1e9,
	       ps.lo / 1e9, ps.hi / 1e9, cps.med / 1e9);

	for (int ci = 0; ci < NCONFIGS; ci++) {
		struct mta_problem p;
		if (!o.cfg[ci])
			continue;
		if (mta_problem_from_key(configs[ci].key, &p))
			return 1;
		printf("\n%s: %s\n", configs[ci].name, configs[ci].key);
		for (int i = 0; o.tune && o.train < 2 && i < o.nseqs; i++)
			if (tune_at(&o, &p, o.seqs[i]))
				return 1;
		if (o.train == 2) {
			for (int i = 0; i < o.nseqs; i++)
				if (bench_train(&o, &p, o.seqs[i], dir))
					return 1;
			continue;
		}
		/* executed against useful multiply-adds: the pick, and v1 at its usual tile */
		printf("  executed / useful multiply-adds per step (exp: exps per logit), counted by "
		       "the kernels:\n");
		for (int i = 0; i < o.nseqs; i++) {
			char spec[MTA_SPEC_MAX], v1[MTA_SPEC_MAX];
			int source;
			double e[S_N];
			if (pick(o.db, &p, "fwd", o.seqs[i], spec, &source))
				return 1;
			if (!count_exec(&p, spec, o.seqs[i], o.threads, e))
				print_counts(spec, &p, o.seqs[i], e);
			snprintf(v1, sizeof v1, "cpu:v1,bq=96,bk=128,hpb=0,vec=16");
			if (!count_exec(&p, v1, o.seqs[i], o.threads, e))
				print_counts(v1, &p, o.seqs[i], e);
		}
		for (int i = 0; i < o.nseqs; i++)
			if (bench_T(&o, &p, o.seqs[i], dir))
				return 1;
		for (int i = 0; o.train && i < o.nseqs; i++)
			if (bench_train(&o, &p, o.seqs[i], dir))
				return 1;
	}
	if (o.train == 2)
		goto done;
	if (percall_section(&o))
		return 1;
	if (serving(&o))
		return 1;
done:;
	char cmd[600];
	snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
	if (system(cmd))
		return 1;
	return 0;
}
