/*
 * sweep.c: the sweep runner (see sweep.h for the contract).
 *
 * The parent forks one worker per device and then only listens: workers
 * claim items from a counter in a shared anonymous mapping and report each
 * record and each finished item as one fixed-size message on a shared pipe
 * (smaller than PIPE_BUF, so messages from different workers never
 * interleave). The same mapping carries the stop flag from the parent to the
 * workers, so stopping needs no signal delivery to them.
 */
#include "tuner/sweep/sweep.h"
#include "db/db.h"
#include "runtime/core/error.h"
#include "runtime/core/parallel.h"

#include <errno.h>
#include <limits.h>
#include <math.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

struct shared {
	volatile sig_atomic_t stop;
	size_t next;              /* next index into pending, claimed atomically */
};

enum { MSG_RECORD, MSG_ITEM, MSG_FATAL };

struct msg {
	int kind, worker, code;   /* code: MTA status of an item or fatal error */
	size_t item;
	double ms;
	int found;                /* MSG_ITEM: records that were already there */
	char spec[MTA_SPEC_MAX];
	char status[16];
	char text[240];
};
_Static_assert(sizeof(struct msg) <= PIPE_BUF, "sweep messages must be written atomically");

struct worker {
	const struct mta_grid *g;
	const struct mta_sweep_opts *o;
	const size_t *pending;
	size_t npending;
	struct shared *sh;
	int fd, index, device;
	size_t item;
	struct mta_device_info dev; /* its identity, once known (dev.backend set) */
};

int mta_sweep_in_shard(size_t item, int shard, int nshards)
{
	return nshards <= 1 || item % (size_t)nshards == (size_t)shard;
}

static double now_s(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static void send_msg(struct worker *w, struct msg *m)
{
	m->worker = w->index;
	m->item = w->item;
	const char *p = (const char *)m;
	size_t n = sizeof *m;
	while (n) {
		ssize_t r = write(w->fd, p, n);
		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0)
			_exit(4); /* the parent is gone */
		p += r;
		n -= (size_t)r;
	}
}

static void on_tune(void *ctx, const struct mta_tune_event *e)
{
	struct worker *w = ctx;
	struct msg m = { 0 };
	if (strcmp(e->phase, "tune"))
		return; /* re-timing is not a new record */
	m.kind = MSG_RECORD;
	m.ms = e->median_ms;
	snprintf(m.spec, sizeof m.spec, "%s", e->spec);
	snprintf(m.status, sizeof m.status, "%s", e->status);
	send_msg(w, &m);
}

/*
 * Is the item done on this device (see sweep.h)? *found: how many of its
 * candidates are recorded. The device's identity is asked once per worker,
 * in a child (mta_tune_identify), as the tuner asks it.
 */
static int item_done(struct worker *w, const struct mta_problem *p, const char *key,
		     const struct mta_tune_opts *o, int *done, int *found)
{
	struct mta_variant *vs = NULL;
	struct mta_db *db = NULL;
	struct mta_db_device d;
	struct mta_db_winner win;
	char (*specs)[MTA_SPEC_MAX] = NULL;
	int64_t dev, pid;
	size_t n = 0;
	int rc, any_ok = 0;

	*done = *found = 0;
	if (!w->dev.backend[0] &&
	    (rc = mta_tune_identify(o->backend, o->device_index, o->timeout_s, &w->dev)))
		return rc;
	if ((rc = mta_tune_candidates(p, o, &vs, &n)))
		return rc;
	if (!(specs = calloc(n ? n : 1, sizeof *specs))) {
		rc = mta_fail(MTA_ENOMEM, "out of memory");
		goto out;
	}
	for (size_t i = 0; i < n; i++)
		if ((rc = mta_variant_format(&vs[i], specs[i], sizeof specs[i])))
			goto out;
	mta_device_info_db(&w->dev, &d);
	if ((rc = mta_db_open(o->db_path, 0, &db)))
		goto out;
	if (mta_db_device_find(db, &d, &dev) || mta_db_problem_find(db, key, &pid))
		goto out; /* rc is MTA_OK: nothing recorded yet */
	size_t planned;
	if (mta_tune_strategy(o, n, &planned) == MTA_TUNE_AUTO) {
		/* a search screens what it decides to: done once it decided this size */
		*done = mta_db_winner_get(db, dev, key, mta_op_name(o->op), o->B, o->T, &win) ==
				MTA_OK &&
			win.T == o->T && win.B == o->B;
		*found = *done ? (int)planned : 0;
		mta_clear_error();
		goto out;
	}
	for (size_t i = 0; i < n; i++) {
		int64_t vid;
		struct mta_db_result r;
		if ((rc = mta_db_variant_upsert_op(db, pid, mta_op_name(o->op), specs[i], NULL,
						   &vid)))
			goto out;
		/* an env_error measured nothing: the item is not done */
		if (mta_db_result_get(db, dev, vid, o->T, o->B, &r) == MTA_OK &&
		    r.status != MTA_RESULT_ENV_ERROR) {
			++*found;
			any_ok |= r.status == MTA_RESULT_OK;
		}
	}
	*done = (size_t)*found == n && (!any_ok || (mta_db_winner_get(db, dev, key,
				mta_op_name(o->op), o->B, o->T, &win) == MTA_OK && win.exact));
	rc = MTA_OK;
out:
	mta_db_close(db);
	free(specs);
	free(vs);
	return rc;
}

int mta_sweep_worker_threads(const struct mta_sweep_opts *o, long cores)
{
	int nd = o->devices ? o->ndevices : 1;
	if (o->tune.threads || nd < 2)
		return o->tune.threads;
	return cores > nd ? (int)(cores / nd) : 1;
}

/* One item: skip it if done, else tune it; MTA_EINTR when stopped. */
static int work_item(struct worker *w, const struct mta_grid_item *it)
{
	const char *key = w->g->keys[it->problem];
	struct mta_tune_opts o = w->o->tune;
	struct mta_tune_summary s;
	struct mta_problem p;
	struct msg m = { 0 };
	int done, rc;

	o.T = it->T;
	o.B = it->B;
	o.op = it->op;
	o.only_specs = NULL;
	o.n_only = 0;
	o.device_index = w->device;
	o.threads = mta_sweep_worker_threads(w->o, mta_cpu_count());
	o.stop = &w->sh->stop;
	o.progress = on_tune;
	o.progress_ctx = w;
	if ((rc = mta_problem_from_key(key, &p)) || (rc = item_done(w, &p, key, &o, &done, &m.found)))
		return rc;
	m.kind = MSG_ITEM;
	m.ms = NAN;
	if (done) {
		snprintf(m.status, sizeof m.status, "done");
		send_msg(w, &m);
		return MTA_OK;
	}
	rc = mta_tune(&p, &o, &s);
	if (rc == MTA_EINTR)
		return rc;
	if (rc && rc != MTA_EVERIFY && rc != MTA_EKERNEL)
		return rc;
	m.code = rc;
	snprintf(m.status, sizeof m.status, "%s", rc ? "failed" : "tuned");
	if (rc) {
		snprintf(m.text, sizeof m.text, "%s", mta_last_error());
	} else {
		snprintf(m.spec, sizeof m.spec, "%s", s.winner);
		m.ms = s.winner_ms;
	}
	send_msg(w, &m);
	return MTA_OK;
}

static void worker_main(struct worker *w)
{
	/* Die with the parent; leave stopping to it (see sweep.h). */
	prctl(PR_SET_PDEATHSIG, SIGKILL);
	signal(SIGINT, SIG_IGN);
	signal(SIGTERM, SIG_IGN);
	for (;;) {
		if (w->sh->stop)
			_exit(0);
		size_t i = __atomic_fetch_add(&w->sh->next, 1, __ATOMIC_SEQ_CST);
		if (i >= w->npending)
			_exit(0);
		w->item = w->pending[i];
		int rc = work_item(w, &w->g->items[w->item]);
		if (rc == MTA_EINTR)
			_exit(0);
		if (rc) {
			struct msg m = { 0 };
			m.kind = MSG_FATAL;
			m.code = rc;
			snprintf(m.text, sizeof m.text, "%s", mta_last_error());
			send_msg(w, &m);
			w->sh->stop = 1; /* the others finish their record and stop */
			_exit(1);
		}
	}
}

struct tally {
	const struct mta_grid *g;
	const struct mta_sweep_opts *o;
	struct mta_sweep_summary *s;
	const long *ncand;        /* candidates per key and op ([key * MTA_OP_COUNT + op]) */
	size_t items_done;
	long records_done;
	double t0;
	char fatal[256];
	int fatal_code;
};

/* Count a message and pass it on as an event. */
static void account(struct tally *t, const struct msg *m)
{
	const struct mta_grid_item *it = &t->g->items[m->item];
	struct mta_sweep_event e = { 0 };
	if (m->kind == MSG_FATAL) {
		if (!t->fatal_code) {
			t->fatal_code = m->code;
			snprintf(t->fatal, sizeof t->fatal, "%s", m->text);
		}
		return;
	}
	e.kind = m->kind == MSG_RECORD ? MTA_SWEEP_RECORD : MTA_SWEEP_ITEM;
	if (m->kind == MSG_RECORD) {
		t->records_done++;
		t->s->measured += strcmp(m->status, "skipped") != 0;
	} else {
		t->items_done++;
		if (!strcmp(m->status, "done")) {
			t->s->done_before++;
			t->records_done += m->found;
		} else if (!strcmp(m->status, "tuned")) {
			t->s->tuned++;
		} else {
			t->s->failed++;
		}
	}
	e.worker = m->worker;
	e.device = t->o->devices ? t->o->devices[m->worker] : 0;
	e.item = m->item;
	e.key = t->g->keys[it->problem];
	e.T = it->T;
	e.B = it->B;
	e.op = mta_op_name(it->op);
	e.spec = m->spec[0] ? m->spec : NULL;
	e.status = m->status;
	e.ms = m->ms;
	e.message = m->text;
	e.items_done = t->items_done;
	e.items_total = t->s->items;
	e.records_done = t->records_done;
	e.records_total = t->s->records_total;
	e.measured = t->s->measured;
	e.elapsed_s = now_s() - t->t0;
	long left = t->s->records_total - t->records_done;
	e.eta_s = t->s->measured ? e.elapsed_s / (double)t->s->measured * (double)(left > 0 ? left : 0)
				 : NAN;
	if (t->o->progress)
		t->o->progress(t->o->progress_ctx, &e);
}

/* Read messages until every worker has closed the pipe. */
static void listen_to(struct tally *t, int fd, struct shared *sh)
{
	char buf[16 * sizeof(struct msg)];
	size_t have = 0;
	for (;;) {
		if (t->o->stop && *t->o->stop)
			sh->stop = 1;
		struct pollfd pfd = { fd, POLLIN, 0 };
		int r = poll(&pfd, 1, 200);
		if (r <= 0)
			continue; /* timeout or a signal: look at the stop flag again */
		ssize_t got = read(fd, buf + have, sizeof buf - have);
		if (got < 0 && errno == EINTR)
			continue;
		if (got <= 0)
			return;
		have += (size_t)got;
		size_t used = 0;
		for (; have - used >= sizeof(struct msg); used += sizeof(struct msg)) {
			struct msg m;
			memcpy(&m, buf + used, sizeof m);
			if (m.item < t->g->n)
				account(t, &m);
		}
		memmove(buf, buf + used, have - used);
		have -= used;
	}
}

/* Check the options; the shard's items into *pending, their record counts. */
static int plan(const struct mta_grid *g, const struct mta_sweep_opts *o, size_t **pending,
		size_t *np, long **ncand, struct mta_sweep_summary *s)
{
	int nd = o->devices ? o->ndevices : 1;
	if (o->nshards < 0 || o->shard < 0 || (o->nshards > 0 && o->shard >= o->nshards))
		return mta_fail(MTA_EINVAL, "shard %d of %d: expected 0 <= shard < shards",
				o->shard, o->nshards);
	if (nd < 1 || nd > MTA_SWEEP_MAX_DEVICES)
		return mta_fail(MTA_EINVAL, "%d devices: expected 1..%d", nd, MTA_SWEEP_MAX_DEVICES);
	for (int i = 0; o->devices && i < nd; i++) {
		if (o->devices[i] < 0)
			return mta_fail(MTA_EINVAL, "device %d: expected an index >= 0", o->devices[i]);
		for (int j = 0; j < i; j++)
			if (o->devices[j] == o->devices[i])
				return mta_fail(MTA_EINVAL, "device %d is listed twice (one worker "
						"per device)", o->devices[i]);
	}
	if (o->tune.strategy == MTA_TUNE_RANDOM && !o->tune.seed)
		return mta_fail(MTA_EINVAL, "a random sweep needs a seed, so that every shard and "
				"every rerun samples the same variants");
	if (!(*pending = malloc((g->n ? g->n : 1) * sizeof **pending)) ||
	    !(*ncand = calloc(g->nkeys ? g->nkeys * MTA_OP_COUNT : 1, sizeof **ncand)))
		return mta_fail(MTA_ENOMEM, "out of memory");
	/* the operations the grid tunes: a backward on a backend without one fails here */
	int used[MTA_OP_COUNT] = { 0 };
	for (size_t i = 0; i < g->n; i++)
		used[g->items[i].op] = 1;
	for (size_t k = 0; k < g->nkeys; k++)
		for (int op = 0; op < MTA_OP_COUNT; op++) {
			struct mta_problem p;
			struct mta_tune_opts to = o->tune;
			struct mta_variant *vs;
			size_t n, planned;
			if (!used[op])
				continue;
			to.op = op;
			int rc = mta_problem_from_key(g->keys[k], &p);
			if (rc || (rc = mta_tune_candidates(&p, &to, &vs, &n)))
				return mta_wrap(rc, "%s items of %s", mta_op_name(op), g->keys[k]);
			free(vs);
			mta_tune_strategy(&to, n, &planned);
			(*ncand)[k * MTA_OP_COUNT + (size_t)op] = (long)planned;
		}
	*np = 0;
	for (size_t i = 0; i < g->n; i++)
		if (mta_sweep_in_shard(i, o->shard, o->nshards)) {
			(*pending)[(*np)++] = i;
			s->records_total += (*ncand)[g->items[i].problem * MTA_OP_COUNT +
						      (size_t)g->items[i].op];
		}
	s->items = *np;
	return MTA_OK;
}

int mta_sweep(const struct mta_grid *g, const struct mta_sweep_opts *o,
	      struct mta_sweep_summary *s)
{
	size_t *pending = NULL, np = 0;
	long *ncand = NULL;
	struct shared *sh = MAP_FAILED;
	pid_t pids[MTA_SWEEP_MAX_DEVICES];
	int nd = o->devices ? o->ndevices : 1, started = 0, fds[2] = { -1, -1 }, rc;

	memset(s, 0, sizeof *s);
	if ((rc = plan(g, o, &pending, &np, &ncand, s)))
		goto out;
	sh = mmap(NULL, sizeof *sh, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	if (sh == MAP_FAILED || pipe(fds)) {
		rc = mta_fail(MTA_EIO, "cannot set up the workers: %s", strerror(errno));
		goto out;
	}
	sh->stop = o->stop && *o->stop; /* raised already: no worker starts an item */
	sh->next = 0;
	struct tally t = { g, o, s, ncand, 0, 0, now_s(), "", 0 };
	fflush(NULL);
	for (; started < nd; started++) {
		pids[started] = fork();
		if (pids[started] < 0) {
			rc = mta_fail(MTA_EIO, "fork: %s", strerror(errno));
			sh->stop = 1;
			break;
		}
		if (pids[started] == 0) {
			close(fds[0]);
			struct worker w = { .g = g, .o = o, .pending = pending, .npending = np,
					    .sh = sh, .fd = fds[1], .index = started,
					    .device = o->devices ? o->devices[started] : 0 };
			worker_main(&w);
		}
	}
	close(fds[1]);
	fds[1] = -1;
	listen_to(&t, fds[0], sh);
	for (int i = 0; i < started; i++)
		while (waitpid(pids[i], NULL, 0) < 0 && errno == EINTR)
			;
	if (rc)
		goto out;
	if (t.fatal_code) {
		rc = mta_fail(t.fatal_code, "%s", t.fatal);
	} else if (t.items_done < np) {
		s->stopped = 1;
		rc = mta_fail(MTA_EINTR, "stopped after %zu of %zu items; run the same command "
			      "again to resume", t.items_done, np);
	}
out:
	if (fds[0] >= 0)
		close(fds[0]);
	if (fds[1] >= 0)
		close(fds[1]);
	if (sh != MAP_FAILED)
		munmap(sh, sizeof *sh);
	free(pending);
	free(ncand);
	return rc;
}

/* A whole number from the environment; 0 if set and valid. */
static int env_long(const char *name, long *v)
{
	const char *s = getenv(name);
	char *end;
	if (!s || !*s)
		return 1;
	errno = 0;
	*v = strtol(s, &end, 10);
	return errno || *end ? -1 : 0;
}

int mta_sweep_slurm_shard(int *shard, int *nshards, int *found)
{
	long id, count, min = 1, step = 1;
	int a = env_long("SLURM_ARRAY_TASK_ID", &id), b = env_long("SLURM_ARRAY_TASK_COUNT", &count);
	*found = 0;
	if (a == 1 && b == 1)
		return MTA_OK;
	if (a || b)
		return mta_fail(MTA_EINVAL, "SLURM_ARRAY_TASK_ID and SLURM_ARRAY_TASK_COUNT must both "
				"be whole numbers (got '%s' and '%s')",
				getenv("SLURM_ARRAY_TASK_ID") ? getenv("SLURM_ARRAY_TASK_ID") : "",
				getenv("SLURM_ARRAY_TASK_COUNT") ? getenv("SLURM_ARRAY_TASK_COUNT") : "");
	if (env_long("SLURM_ARRAY_TASK_MIN", &min) < 0 || env_long("SLURM_ARRAY_TASK_STEP", &step) < 0
	    || step < 1)
		return mta_fail(MTA_EINVAL, "SLURM_ARRAY_TASK_MIN/STEP are not whole numbers");
	long k = (id - min) / step;
	if (count < 1 || count > 1000000 || id < min || (id - min) % step || k >= count)
		return mta_fail(MTA_EINVAL, "Slurm array task %ld (min %ld, step %ld) is not one of "
				"%ld tasks", id, min, step, count);
	*shard = (int)k;
	*nshards = (int)count;
	*found = 1;
	return MTA_OK;
}
