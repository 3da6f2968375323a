/*
 * cpu_bench.c: the tuned C kernel against the float64 reference and the
 * PyTorch eager peer (bench/peer_torch.py), on the same inputs with the
 * same number of threads, for T = 256 .. 4096.
 *
 * Each measurement runs in its own child process so that its peak resident
 * memory (getrusage of the child) belongs to it alone. The kernel is tuned
 * once per configuration (random sample of 12 variants) at T=1024; other T
 * use the runtime's nearest-bucket pick, as a user's program would.
 *
 * usage: cpu_bench [--threads N] [--max-seq T] [--ref-max-seq T] [--db PATH]
 */
#include "runtime/mta.h"
#include "tuner/io/npy.h"
#include "tuner/measure/sample.h"
#include "tuner/tune/tune.h"
#include "gen/variant.h"

#include <getopt.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

struct config {
	const char *name, *key;
};
static const struct config configs[] = {
	{ "paper", "h16kv16d96-pre6x11-hpre-post6x11-hc16-both-gn-gate-f32" },
	{ "pre-only", "h16kv16d96-pre6x11-both-f32" },
};

static double now(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

struct result {
	double seconds, rel_err;
	long peak_kb;
	int ok;
};

/* Run fn in a child; its wall time (reported by fn through a pipe) and peak RSS. */
static struct result in_child(int (*fn)(void *, double *, double *), void *ctx)
{
	struct result r = { NAN, NAN, 0, 0 };
	int fds[2];
	if (pipe(fds))
		return r;
	fflush(NULL);
	pid_t pid = fork();
	if (pid == 0) {
		double v[2] = { NAN, NAN };
		int rc = fn(ctx, &v[0], &v[1]);
		if (rc)
			fprintf(stderr, "  failed: %s\n", mta_last_error());
		if (write(fds[1], v, sizeof v) != sizeof v)
			_exit(3);
		_exit(rc ? 1 : 0);
	}
	close(fds[1]);
	double v[2];
	ssize_t got = read(fds[0], v, sizeof v);
	close(fds[0]);
	int st;
	struct rusage ru;
	wait4(pid, &st, 0, &ru);
	if (got == sizeof v && WIFEXITED(st) && WEXITSTATUS(st) == 0) {
		r.seconds = v[0];
		r.rel_err = v[1];
		r.ok = 1;
	}
	r.peak_kb = ru.ru_maxrss;
	return r;
}

struct job {
	const struct mta_problem *p;
	int64_t T;
	int threads, reps;
	const char *db, *dir;
};

static int run_kernel(void *ctx, double *secs, double *err)
{
	struct job *j = ctx;
	struct mta_sample s;
	mta_context *c = NULL;
	size_t n = (size_t)j->T * (size_t)j->p->H * (size_t)j->p->D;
	float *o = malloc(n * sizeof *o);
	struct mta_tensor to;
	int rc;
	char path[1024];
	if (!o)
		return 2;
	mta_tensor_init(&to, o, MTA_F32, 1, j->T, j->p->H, j->p->D);
	if ((rc = mta_sample_make(j->p, 1, j->T, 42, &s)) || (rc = mta_context_create(&c, j->db, "cpu", 0)))
		return rc;
	setenv("OMP_NUM_THREADS", "1", 1);
	double best[16];
	rc = mta_forward(c, j->p, &s.q, &s.k, &s.v, &s.w, &to); /* load + warm */
	for (int r = 0; !rc && r < j->reps; r++) {
		double t0 = now();
		rc = mta_forward(c, j->p, &s.q, &s.k, &s.v, &s.w, &to);
		best[r] = now() - t0;
	}
	if (rc)
		return rc;
	for (int a = 0; a < j->reps; a++) /* median */
		for (int b = a + 1; b < j->reps; b++)
			if (best[b] < best[a]) {
				double t = best[a];
				best[a] = best[b];
				best[b] = t;
			}
	*secs = best[j->reps / 2];
	snprintf(path, sizeof path, "%s/mtatune_o.npy", j->dir);
	int64_t shape[4] = { 1, j->T, j->p->H, j->p->D };
	rc = mta_npy_write(path, MTA_F32, 4, shape, o);
	*err = 0;
	mta_context_free(c);
	mta_sample_free(&s);
	free(o);
	return rc;
}

static int run_ref(void *ctx, double *secs, double *err)
{
	struct job *j = ctx;
	struct mta_sample s;
	size_t n = (size_t)j->T * (size_t)j->p->H * (size_t)j->p->D;
	double *o = malloc(n * sizeof *o);
	int rc;
	if (!o || (rc = mta_sample_make(j->p, 1, j->T, 42, &s)))
		return 2;
	double t0 = now();
	rc = mta_reference(j->p, &s.q, &s.k, &s.v, &s.w, o);
	*secs = now() - t0;
	/* error of the kernel's output (written by run_kernel) against the reference */
	char path[1024];
	struct mta_npy y;
	snprintf(path, sizeof path, "%s/mtatune_o.npy", j->dir);
	if (!rc && !(rc = mta_npy_read(path, &y))) {
		*err = mta_rel_l2(y.data, o, n);
		mta_npy_free(&y);
	}
	mta_sample_free(&s);
	free(o);
	return rc;
}

/* The inputs as .npy files for the PyTorch peer, in the shapes of MTA.md. */
static int write_inputs(const struct mta_problem *p, int64_t T, const char *dir)
{
	struct mta_sample s;
	char path[1024];
	int rc, H = p->H, D = p->D;
	if ((rc = mta_sample_make(p, 1, T, 42, &s)))
		return rc;
	struct { const char *name; const void *data; int nd; int64_t shape[4]; int use; } f[] = {
		{ "q", s.q.data, 4, { 1, T, H, D }, 1 },
		{ "k", s.k.data, 4, { 1, T, p->Hkv, D }, 1 },
		{ "v", s.v.data, 4, { 1, T, p->Hkv, D }, 1 },
		{ "kq_pre", s.w.kq_pre, 4, { H, 1, p->cq, p->ck }, p->cq > 0 },
		{ "head_pre", s.w.head_pre, 2, { H, H }, p->head_pre },
		{ "kq_post", s.w.kq_post, 4, { H, 1, p->cq2, p->ck2 }, p->cq2 > 0 },
		{ "head_post", s.w.head_post, 3, { H / (p->hc ? p->hc : 1), p->hc, p->hc },
		  p->head_post == MTA_HPOST_CONV },
		{ "gn_weight", s.w.gn_weight, 1, { D }, p->gn },
		{ "gate_w", s.w.gate_w, 2, { 1, D }, p->gate },
		{ "gate_b", &s.w.gate_b, 1, { 1 }, p->gate },
	};
	for (size_t i = 0; !rc && i < sizeof f / sizeof f[0]; i++) {
		if (!f[i].use)
			continue;
		snprintf(path, sizeof path, "%s/%s.npy", dir, f[i].name);
		rc = mta_npy_write(path, MTA_F32, f[i].nd, f[i].shape, f[i].data);
	}
	mta_sample_free(&s);
	return rc;
}

static int run_torch(const char *dir, int threads, int reps, struct result *r)
{
	char cmd[2048], line[1024] = "";
	snprintf(cmd, sizeof cmd, "/usr/bin/python3 bench/peer_torch.py %s --reps %d --threads %d "
		 "--out %s/torch_o.npy 2>&1", dir, reps, threads, dir);
	FILE *f = popen(cmd, "r");
	if (!f)
		return -1;
	while (fgets(line, sizeof line, f))
		if (strstr(line, "median_s"))
			break;
	int st = pclose(f);
	double med, mn, peak;
	if (st || sscanf(line, "{\"median_s\": %lf, \"min_s\": %lf, \"peak_rss_bytes\": %lf", &med,
			 &mn, &peak) != 3) {
		fprintf(stderr, "  torch peer failed: %s", line);
		return -1;
	}
	r->seconds = med;
	r->peak_kb = (long)(peak / 1024);
	r->ok = 1;
	/* its output against the kernel's */
	char a[1024], b[1024];
	struct mta_npy x, y;
	snprintf(a, sizeof a, "%s/torch_o.npy", dir);
	snprintf(b, sizeof b, "%s/mtatune_o.npy", dir);
	if (!mta_npy_read(a, &x)) {
		if (!mta_npy_read(b, &y) && !mta_npy_convert(&x, MTA_F64)) {
			r->rel_err = mta_rel_l2(y.data, x.data, x.count);
			mta_npy_free(&y);
		}
		mta_npy_free(&x);
	}
	return 0;
}

int main(int argc, char **argv)
{
	int threads = (int)sysconf(_SC_NPROCESSORS_ONLN), c;
	long max_T = 4096, ref_max = 1024;
	const char *db = "build/bench.db";
	static const struct option opts[] = {
		{ "threads", required_argument, NULL, 't' }, { "max-seq", required_argument, NULL, 'm' },
		{ "ref-max-seq", required_argument, NULL, 'r' }, { "db", required_argument, NULL, 'd' },
		{ 0 },
	};
	while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
		if (c == 't') threads = atoi(optarg);
		else if (c == 'm') max_T = atol(optarg);
		else if (c == 'r') ref_max = atol(optarg);
		else if (c == 'd') db = optarg;
		else return 2;
	}
	char dir[] = "/tmp/mtabench-XXXXXX";
	if (!mkdtemp(dir))
		return 1;
	char host[256] = "";
	gethostname(host, sizeof host);
	printf("mtatune CPU benchmark: %d threads, kernel and PyTorch medians of 3 runs, reference 1 run\n",
	       threads);
	for (size_t ci = 0; ci < sizeof configs / sizeof configs[0]; ci++) {
		struct mta_problem p;
		if (mta_problem_from_key(configs[ci].key, &p))
			return 1;
		/* tune once at T=1024 (random sample of 12 points of the space) */
		struct mta_tune_opts o;
		struct mta_tune_summary s;
		mta_tune_defaults(&o);
		o.db_path = db;
		o.T = 1024;
		o.strategy = MTA_TUNE_RANDOM;
		o.budget = 12;
		o.reps = 3;
		o.top = 2;
		o.threads = threads;
		o.seed = 7;
		o.timeout_s = 600;
		if (mta_tune(&p, &o, &s)) {
			fprintf(stderr, "tuning %s failed: %s\n", configs[ci].key, mta_last_error());
			return 1;
		}
		printf("\n%s: %s\n  tuned at T=1024: winner %s (%.1f ms), default %.1f ms\n",
		       configs[ci].name, configs[ci].key, s.winner, s.winner_ms, s.default_ms);
		printf("  %6s %11s %11s %11s %9s %9s %10s %10s %10s %9s\n", "T", "mtatune_s", "torch_s",
		       "ref_s", "torch/mt", "ref/mt", "mt_MB", "torch_MB", "ref_MB", "err_ref");
		for (long T = 256; T <= max_T; T *= 2) {
			struct job j = { &p, T, threads, 3, db, dir };
			struct result k = in_child(run_kernel, &j), r = { NAN, NAN, 0, 0 }, t = { NAN, NAN, 0, 0 };
			if (T <= ref_max)
				r = in_child(run_ref, &j);
			if (!write_inputs(&p, T, dir))
				run_torch(dir, threads, 3, &t);
			printf("  %6ld %11.4f %11.4f %11.4f %9.2f %9.1f %10.1f %10.1f %10.1f %9.2e\n", T,
			       k.seconds, t.seconds, r.seconds, t.seconds / k.seconds, r.seconds / k.seconds,
			       k.peak_kb / 1024.0, t.peak_kb / 1024.0, r.peak_kb / 1024.0, r.rel_err);
			fflush(stdout);
			char cmd[600];
			snprintf(cmd, sizeof cmd, "rm -f %s/*.npy", dir);
			if (system(cmd))
				return 1;
		}
	}
	rmdir(dir);
	return 0;
}
