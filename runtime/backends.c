/*
 * backends.c: the table of backends (see backend.h). A new place to run
 * kernels is a folder runtime/<name>/ implementing struct mta_backend and a
 * row here.
 */
#include "runtime/backend.h"
#include "runtime/core/error.h"
#include "runtime/core/varlen.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const struct mta_backend *const table[] = {
	&mta_backend_cpu,
	&mta_backend_cuda,
	&mta_backend_cuda_emu,
};
#define NTABLE (sizeof table / sizeof table[0])

const struct mta_backend *mta_backend_at(int i)
{
	return i >= 0 && (size_t)i < NTABLE ? table[i] : NULL;
}

/* The backend named name among those with timed >= timed_min, or MTA_EINVAL listing them. */
static int find(const char *name, int timed_min, const struct mta_backend **b)
{
	char names[128] = "";
	size_t listed = 0, n = 0;
	*b = NULL;
	for (size_t i = 0; i < NTABLE; i++)
		n += table[i]->timed >= timed_min;
	for (size_t i = 0; i < NTABLE; i++) {
		if (name && !strcmp(name, table[i]->name))
			*b = table[i];
		if (table[i]->timed < timed_min)
			continue;
		snprintf(names + strlen(names), sizeof names - strlen(names), "%s%s",
			 listed ? (listed + 1 == n ? " or " : ", ") : "", table[i]->name);
		listed++;
	}
	if (!*b)
		return mta_fail(MTA_EINVAL, "unknown backend '%s' (expected %s)", name ? name : "",
				names);
	if ((*b)->timed < timed_min)
		return mta_fail(MTA_EUNSUPPORTED, "the %s backend cannot be tuned: its timings say "
				"nothing about the kernel (tune %s)", name, names);
	return MTA_OK;
}

int mta_backend_find(const char *name, const struct mta_backend **b)
{
	return find(name, 0, b);
}

int mta_backend_find_timed(const char *name, const struct mta_backend **b)
{
	return find(name, 1, b);
}

void mta_device_info_db(const struct mta_device_info *i, struct mta_db_device *d)
{
	const struct mta_backend *b = NULL;
	memset(d, 0, sizeof *d);
	d->backend = i->backend;
	if (mta_backend_find(i->backend, &b) == MTA_OK)
		d->backend = mta_backend_name(b->variants);
	else
		mta_clear_error();
	d->name = i->name;
	d->arch = i->arch;
	d->driver = i->driver;
	d->compiler = i->compiler;
	d->nvrtc = i->nvrtc;
	d->cores = i->cores;
}

void mta_build_free(struct mta_build *b)
{
	free(b->log);
	free(b->binary);
	b->log = NULL;
	b->binary = NULL;
	b->binary_size = 0;
}

int mta_backend_forward_varlen(const struct mta_backend *be, struct mta_kernel *k,
			       const struct mta_problem *p, const struct mta_tensor *q,
			       const struct mta_tensor *kt, const struct mta_tensor *v,
			       const struct mta_weights *w, const int64_t *cu, int64_t ndocs,
			       struct mta_tensor *o)
{
	int rc;
	if ((rc = mta_varlen_check(p, q, kt, v, o, cu, ndocs, NULL)))
		return rc;
	if (be->forward_varlen)
		return be->forward_varlen(k, p, q, kt, v, w, cu, ndocs, o);
	for (int64_t d = 0; d < ndocs; d++) {
		struct mta_tensor qd, kd, vd, od;
		const int64_t s = cu[d], n = cu[d + 1] - cu[d];
		if (!n)
			continue;
		mta_varlen_view(q, s, n, &qd);
		mta_varlen_view(kt, s, n, &kd);
		mta_varlen_view(v, s, n, &vd);
		mta_varlen_view(o, s, n, &od);
		if ((rc = be->forward(k, p, &qd, &kd, &vd, w, &od)))
			return mta_wrap(rc, "document %lld (rows %lld..%lld)", (long long)d,
					(long long)s, (long long)(s + n));
	}
	return MTA_OK;
}
