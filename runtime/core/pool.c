/*
 * pool.c: persistent kernel threads and memory (see pool.h).
 *
 * Workers wait for a job generation number to change. Kernel calls come in
 * bursts (a serving loop, the tuner's timing runs), so a worker spins for a
 * while after each job before it sleeps on a condition variable, and the
 * caller spins while the others finish before it sleeps: a call that finds
 * its workers awake costs no system call. A pool used after fork() (its
 * threads did not follow the child) starts new ones.
 *
 * The generation word carries the job's thread count (GEN_N bits): a
 * worker decides whether it is in a job from the word it woke for, never
 * from p->n. A worker left out of a job may wake late, after the caller
 * has already written the next job's count; reading that count for the
 * old generation made it run the next job's function twice and drove
 * pending below zero, so the caller waited forever (seen as a rare hang
 * of decode_cpu_threads_identical, which runs 2 threads, then 3, then 2).
 */
#include "runtime/core/pool.h"
#include "runtime/core/error.h"
#include "runtime/core/parallel.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define SPIN_NS 100000 /* how long a worker, or the waiting caller, spins before it sleeps */
#define GEN_N 16       /* low bits of the generation word: the job's thread count */

struct slot {
	void *p;
	int64_t bytes;
};

struct worker {
	struct mta_pool *p;
	int tid;
	uint64_t gen0; /* the generation word when it started */
};

struct mta_pool {
	pthread_mutex_t call; /* held for one kernel call */
	pthread_mutex_t mu;   /* with go and done, for sleeping and waking */
	pthread_cond_t go, done;
	int cores;
	pid_t pid;            /* the process the threads run in */
	int nth;              /* workers started: tids 1..nth */
	pthread_t th[MTA_POOL_MAX];
	struct worker wk[MTA_POOL_MAX];
	/* the job: written by the caller before it bumps gen (release) */
	void (*fn)(void *arg, int tid);
	void *arg;
	int n;                /* threads in the job, the caller's included */
	uint64_t gen;         /* atomic: job number << GEN_N | the job's n */
	int pending;          /* atomic: workers still in the job */
	int quit;             /* atomic */
	int sleeping, waiting; /* under mu */
	struct slot mem[MTA_POOL_MAX];
	struct slot shared;
};

static double now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return 1e9 * (double)ts.tv_sec + (double)ts.tv_nsec;
}

static inline void relax(void)
{
#if defined(__x86_64__) || defined(__i386__)
	__builtin_ia32_pause();
#endif
}

/* Spin until *x != v, at most SPIN_NS; the last value read. */
static uint64_t spin_while(const uint64_t *x, uint64_t v, const int *quit)
{
	uint64_t g = __atomic_load_n(x, __ATOMIC_ACQUIRE);
	double t0 = 0;
	for (int i = 0; g == v && !__atomic_load_n(quit, __ATOMIC_RELAXED); i++) {
		if ((i & 63) == 0) {
			double t = now_ns();
			if (!t0)
				t0 = t;
			else if (t - t0 > SPIN_NS)
				break;
		}
		relax();
		g = __atomic_load_n(x, __ATOMIC_ACQUIRE);
	}
	return g;
}

static void *work(void *arg)
{
	struct worker *w = arg;
	struct mta_pool *p = w->p;
	uint64_t seen = w->gen0;
	for (;;) {
		uint64_t g = spin_while(&p->gen, seen, &p->quit);
		if (g == seen) {
			pthread_mutex_lock(&p->mu);
			while ((g = __atomic_load_n(&p->gen, __ATOMIC_ACQUIRE)) == seen &&
			       !__atomic_load_n(&p->quit, __ATOMIC_RELAXED)) {
				p->sleeping++;
				pthread_cond_wait(&p->go, &p->mu);
				p->sleeping--;
			}
			pthread_mutex_unlock(&p->mu);
		}
		if (__atomic_load_n(&p->quit, __ATOMIC_ACQUIRE))
			return NULL;
		seen = g;
		if (w->tid >= (int)(g & ((1u << GEN_N) - 1)))
			continue; /* not in this job (its n travels with its generation) */
		p->fn(p->arg, w->tid);
		if (__atomic_sub_fetch(&p->pending, 1, __ATOMIC_ACQ_REL) == 0) {
			pthread_mutex_lock(&p->mu);
			if (p->waiting)
				pthread_cond_signal(&p->done);
			pthread_mutex_unlock(&p->mu);
		}
	}
}

/* Workers up to tid n-1 (fewer if the system refuses threads); how many threads a job may use. */
static int grow(struct mta_pool *p, int n)
{
	pid_t pid = getpid();
	if (pid != p->pid) {
		/*
		 * Forked: the threads stayed in the parent, and the parent's
		 * sleeping workers live on in the copies of the condition
		 * variables; this process is the only thread using them, so
		 * they start afresh.
		 */
		p->pid = pid;
		p->nth = 0;
		p->sleeping = p->waiting = 0;
		__atomic_store_n(&p->pending, 0, __ATOMIC_RELAXED);
		pthread_mutex_init(&p->mu, NULL);
		pthread_cond_init(&p->go, NULL);
		pthread_cond_init(&p->done, NULL);
	}
	while (p->nth < n - 1) {
		struct worker *w = &p->wk[p->nth + 1];
		w->p = p;
		w->tid = p->nth + 1;
		w->gen0 = __atomic_load_n(&p->gen, __ATOMIC_ACQUIRE);
		if (pthread_create(&p->th[p->nth], NULL, work, w))
			break;
		p->nth++;
	}
	return p->nth + 1 < n ? p->nth + 1 : n;
}

static void run(void *pool, int n, void (*fn)(void *arg, int tid), void *arg)
{
	struct mta_pool *p = pool;
	if (n > MTA_POOL_MAX)
		n = MTA_POOL_MAX;
	if (n > 1)
		n = grow(p, n);
	if (n <= 1) {
		fn(arg, 0);
		return;
	}
	p->fn = fn;
	p->arg = arg;
	p->n = n;
	__atomic_store_n(&p->pending, n - 1, __ATOMIC_RELAXED);
	pthread_mutex_lock(&p->mu);
	__atomic_store_n(&p->gen, (((p->gen >> GEN_N) + 1) << GEN_N) | (uint64_t)n,
			 __ATOMIC_RELEASE);
	if (p->sleeping)
		pthread_cond_broadcast(&p->go);
	pthread_mutex_unlock(&p->mu);
	fn(arg, 0);
	double t0 = 0;
	for (int i = 0; __atomic_load_n(&p->pending, __ATOMIC_ACQUIRE); i++) {
		if ((i & 63) == 0) {
			double t = now_ns();
			if (!t0)
				t0 = t;
			else if (t - t0 > SPIN_NS)
				break;
		}
		relax();
	}
	if (!__atomic_load_n(&p->pending, __ATOMIC_ACQUIRE))
		return;
	pthread_mutex_lock(&p->mu);
	p->waiting = 1;
	while (__atomic_load_n(&p->pending, __ATOMIC_ACQUIRE))
		pthread_cond_wait(&p->done, &p->mu);
	p->waiting = 0;
	pthread_mutex_unlock(&p->mu);
}

static void *mem(void *pool, int slot, int64_t bytes)
{
	struct mta_pool *p = pool;
	struct slot *s = slot == MTA_POOL_SHARED ? &p->shared
			 : slot >= 0 && slot < MTA_POOL_MAX ? &p->mem[slot] : NULL;
	if (!s || bytes < 0)
		return NULL;
	if (!s->p || s->bytes < bytes) {
		int64_t nb = (bytes + 63) / 64 * 64;
		free(s->p);
		s->p = aligned_alloc(64, (size_t)(nb ? nb : 64));
		s->bytes = s->p ? nb : 0;
		/*
		 * New memory holds garbage, but its first 64 bytes are defined: a v2
		 * kernel compares its layout signature there to know whether it must
		 * clear its rings (a comparison with garbage would pick the right
		 * branch, but on undefined bytes, which valgrind rightly reports).
		 */
		if (s->p)
			memset(s->p, 0, 64);
	}
	return s->p;
}

int mta_pool_create(struct mta_pool **out)
{
	struct mta_pool *p = calloc(1, sizeof *p);
	*out = NULL;
	if (!p)
		return mta_fail(MTA_ENOMEM, "out of memory for a thread pool");
	pthread_mutex_init(&p->call, NULL);
	pthread_mutex_init(&p->mu, NULL);
	pthread_cond_init(&p->go, NULL);
	pthread_cond_init(&p->done, NULL);
	int c = mta_cpu_count();
	p->cores = c > MTA_POOL_MAX ? MTA_POOL_MAX : c;
	p->pid = getpid();
	*out = p;
	return MTA_OK;
}

void mta_pool_free(struct mta_pool *p)
{
	if (!p)
		return;
	if (p->pid == getpid()) {
		pthread_mutex_lock(&p->mu);
		__atomic_store_n(&p->quit, 1, __ATOMIC_RELEASE);
		pthread_cond_broadcast(&p->go);
		pthread_mutex_unlock(&p->mu);
		for (int i = 0; i < p->nth; i++)
			pthread_join(p->th[i], NULL);
	}
	for (int i = 0; i < MTA_POOL_MAX; i++)
		free(p->mem[i].p);
	free(p->shared.p);
	pthread_cond_destroy(&p->go);
	pthread_cond_destroy(&p->done);
	pthread_mutex_destroy(&p->mu);
	pthread_mutex_destroy(&p->call);
	free(p);
}

int mta_pool_call(struct mta_pool *p, int (*fn)(const struct mta_kargs *a), struct mta_kargs *a)
{
	pthread_mutex_lock(&p->call);
	a->pool = p;
	a->pool_run = run;
	a->pool_mem = mem;
	a->pool_cores = p->cores;
	int rc = fn(a);
	pthread_mutex_unlock(&p->call);
	return rc;
}

int mta_pool_call_decode(struct mta_pool *p, int (*fn)(const struct mta_dargs *a),
			 struct mta_dargs *a)
{
	pthread_mutex_lock(&p->call);
	a->pool = p;
	a->pool_run = run;
	if (a->nthreads <= 0)
		a->nthreads = p->cores;
	int rc = fn(a);
	pthread_mutex_unlock(&p->call);
	return rc;
}
