/*
 * host.h: this machine's CPU: its identity as the database records it (the
 * cpu backend's device, and the host of the cuda-emu backend; winners are
 * looked up by this identity, so two machines with the same CPU model, core
 * count and compiler share their tuning), and the measuring path shared by
 * the backends that run on it.
 */
#ifndef MTA_RUNTIME_HOST_H
#define MTA_RUNTIME_HOST_H

#include "db/db.h"
#include "runtime/backend.h"

/*
 * Fill d for this machine's CPU: name from /proc/cpuinfo, arch from uname
 * and the widest vector extension, cores online, the C compiler's identity.
 * The strings live in static storage (the values never change in a process).
 */
int mta_device_cpu(struct mta_db_device *d);

/*
 * The measuring path (runtime/backend.h: bind, launch, fetch, unbind,
 * flush) of a backend whose kernels read and write host memory (cpu,
 * cuda-emu): binding keeps the tensors, a launch calls the backend's
 * forward on them timed by the wall clock, fetching has nothing to do, and
 * the flush writes over 64 MiB, more than any CPU's last-level cache.
 */
typedef int (*mta_host_forward_fn)(struct mta_kernel *k, const struct mta_problem *p,
				   const struct mta_tensor *q, const struct mta_tensor *kt,
				   const struct mta_tensor *v, const struct mta_weights *w,
				   struct mta_tensor *o);
int mta_host_bind(struct mta_kernel *k, mta_host_forward_fn forward, const struct mta_problem *p,
		  const struct mta_tensor *q, const struct mta_tensor *kt,
		  const struct mta_tensor *v, const struct mta_weights *w, struct mta_tensor *o,
		  struct mta_bound **out);
int mta_host_launch(struct mta_bound *b, double *ms);
int mta_host_fetch(struct mta_bound *b);
void mta_host_unbind(struct mta_bound *b);

/* The flush buffer of a host device: allocated on first use, a new byte each time. */
struct mta_host_flush {
	char *buf;
	unsigned char seq;
};
int mta_host_flush(struct mta_host_flush *f);
void mta_host_flush_free(struct mta_host_flush *f);

/* Monotonic seconds. */
double mta_host_now(void);

#endif
