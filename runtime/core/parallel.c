/* parallel.c: a one-shot pool over a shared counter (see parallel.h). */
#define _GNU_SOURCE /* sched_getaffinity, CPU_COUNT */
#include "runtime/core/parallel.h"

#include <pthread.h>
#include <sched.h>
#include <unistd.h>

struct pool {
	size_t n, next;
	pthread_mutex_t mu;
	void (*fn)(void *ctx, size_t i);
	void *ctx;
};

static void *worker(void *arg)
{
	struct pool *pl = arg;
	for (;;) {
		pthread_mutex_lock(&pl->mu);
		size_t i = pl->next++;
		pthread_mutex_unlock(&pl->mu);
		if (i >= pl->n)
			return NULL;
		pl->fn(pl->ctx, i);
	}
}

void mta_parallel(size_t n, int threads, void (*fn)(void *ctx, size_t i), void *ctx)
{
	struct pool pl = { n, 0, PTHREAD_MUTEX_INITIALIZER, fn, ctx };
	pthread_t th[MTA_PARALLEL_MAX];
	int started = 0;
	if (threads <= 0)
		threads = mta_cpu_count();
	if (threads > MTA_PARALLEL_MAX)
		threads = MTA_PARALLEL_MAX;
	if ((size_t)threads > n)
		threads = (int)n;
	while (started < threads - 1 && !pthread_create(&th[started], NULL, worker, &pl))
		started++;
	worker(&pl);
	for (int i = 0; i < started; i++)
		pthread_join(th[i], NULL);
	pthread_mutex_destroy(&pl.mu);
}

int mta_cpu_count(void)
{
	cpu_set_t set;
	if (!sched_getaffinity(0, sizeof set, &set) && CPU_COUNT(&set) > 0)
		return CPU_COUNT(&set);
	long c = sysconf(_SC_NPROCESSORS_ONLN);
	return c > 0 ? (int)c : 1;
}
