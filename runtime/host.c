/* host.c: this machine's identity for the database (see host.h). */
#include "runtime/host.h"
#include "runtime/ccompile.h"
#include "runtime/core/error.h"
#include "runtime/core/parallel.h"

#include <pthread.h>
#include <stdlib.h>
#include <time.h>
#include <stdio.h>
#include <string.h>
#include <sys/utsname.h>
#include <unistd.h>

static char name[256], arch[96];
static pthread_once_t once = PTHREAD_ONCE_INIT;

static void probe(void)
{
	struct utsname u;
	char line[4096];
	const char *ext = "";
	FILE *f = fopen("/proc/cpuinfo", "r");

	snprintf(name, sizeof name, "unknown CPU");
	while (f && fgets(line, sizeof line, f)) {
		char *colon = strchr(line, ':');
		if (!colon)
			continue;
		if (!strncmp(line, "model name", 10) && !strcmp(name, "unknown CPU")) {
			char *v = colon + 2;
			v[strcspn(v, "\n")] = 0;
			snprintf(name, sizeof name, "%s", v);
		}
		if (!strncmp(line, "flags", 5) && !*ext)
			ext = strstr(line, " avx512f") ? "-avx512" : strstr(line, " avx2") ? "-avx2"
			      : strstr(line, " avx ") ? "-avx" : "-sse";
	}
	if (f)
		fclose(f);
	if (uname(&u))
		snprintf(u.machine, sizeof u.machine, "unknown");
	snprintf(arch, sizeof arch, "%s%s", u.machine, strcmp(u.machine, "x86_64") ? "" : ext);
}

int mta_device_cpu(struct mta_db_device *d)
{
	pthread_once(&once, probe);
	memset(d, 0, sizeof *d);
	d->backend = "cpu";
	d->name = name;
	d->arch = arch;
	d->driver = "";
	d->nvrtc = "";
	d->compiler = mta_cc_identity(MTA_LANG_C);
	if (!d->compiler)
		d->compiler = "";
	d->cores = mta_cpu_count();
	return MTA_OK;
}

/* ---- the measuring path of host-memory backends ----------------------------- */

#define FLUSH_BYTES ((size_t)64 << 20)

struct mta_bound {
	struct mta_kernel *k;
	mta_host_forward_fn forward;
	struct mta_problem p;
	struct mta_tensor q, kt, v, o;
	struct mta_weights w;
	int has_w;
};

double mta_host_now(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

int mta_host_bind(struct mta_kernel *k, mta_host_forward_fn forward, const struct mta_problem *p,
		  const struct mta_tensor *q, const struct mta_tensor *kt,
		  const struct mta_tensor *v, const struct mta_weights *w, struct mta_tensor *o,
		  struct mta_bound **out)
{
	struct mta_bound *b;
	int rc;
	*out = NULL;
	if ((rc = mta_check_tensors(p, q, kt, v, o, NULL, NULL)) || (rc = mta_check_weights(p, w)))
		return rc;
	if (!(b = calloc(1, sizeof *b)))
		return mta_fail(MTA_ENOMEM, "out of memory");
	*b = (struct mta_bound){ k, forward, *p, *q, *kt, *v, *o, { 0 }, w != NULL };
	if (w)
		b->w = *w;
	*out = b;
	return MTA_OK;
}

int mta_host_launch(struct mta_bound *b, double *ms)
{
	double t0 = mta_host_now();
	int rc = b->forward(b->k, &b->p, &b->q, &b->kt, &b->v, b->has_w ? &b->w : NULL, &b->o);
	if (ms)
		*ms = 1e3 * (mta_host_now() - t0);
	return rc;
}

int mta_host_fetch(struct mta_bound *b)
{
	return MTA_OK; /* the kernel wrote the host output itself */
}

void mta_host_unbind(struct mta_bound *b)
{
	free(b);
}

int mta_host_flush(struct mta_host_flush *f)
{
	if (!f->buf && !(f->buf = malloc(FLUSH_BYTES)))
		return mta_fail(MTA_ENOMEM, "out of memory for the cache flush buffer");
	memset(f->buf, ++f->seq, FLUSH_BYTES);
	return MTA_OK;
}

void mta_host_flush_free(struct mta_host_flush *f)
{
	free(f->buf);
	f->buf = NULL;
}
