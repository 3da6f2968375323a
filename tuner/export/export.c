/*
 * export.c: choose what a best-kernel library holds (see export.h): the
 * device, its problems and their winners, the kernels to build; then hand
 * the plan to export_write.c. Everything is sorted so the files come out the
 * same for the same database.
 */
#include "tuner/export/export_int.h"
#include "gen/gen.h"
#include "gen/cuda/cudagen.h"
#include "runtime/core/error.h"
#include "runtime/core/hash.h"
#include "runtime/core/strbuf.h"

#include <math.h>
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- the device ----------------------------------------------------------------- */

struct devices {
	const struct mta_export_opts *o;
	long long id;            /* --device as an id (all digits), else -1 */
	struct xdevice found[2]; /* [1]: of --arch's very arch, [0]: another */
	int n[2];                /* devices matching the options, per slot */
	char match[2][1024];     /* those devices, for the message when several match */
	char all[2048];          /* every device, for the message when none fits */
};

/* "#ID 'NAME' (BACKEND ARCH, compiler '...', driver '...', nvrtc '...', N cores)" */
static void describe(const struct mta_db_device *d, char *out, size_t n)
{
	char name[300], arch[100], cc[300], drv[100], nv[100];
	snprintf(out, n, "#%lld '%s' (%s %s%s%s%s%s%s%s%s%s%s, %d cores)", (long long)d->id,
		 mta_escape_str(d->name, name, sizeof name), d->backend,
		 mta_escape_str(d->arch, arch, sizeof arch), d->compiler[0] ? ", compiler '" : "",
		 mta_escape_str(d->compiler, cc, sizeof cc), d->compiler[0] ? "'" : "",
		 d->driver[0] ? ", driver '" : "", mta_escape_str(d->driver, drv, sizeof drv),
		 d->driver[0] ? "'" : "", d->nvrtc[0] ? ", nvrtc '" : "",
		 mta_escape_str(d->nvrtc, nv, sizeof nv), d->nvrtc[0] ? "'" : "", d->cores);
}

static void append(char *buf, size_t n, const char *item)
{
	size_t l = strlen(buf);
	snprintf(buf + l, n - l, "%s%s", l ? ", " : "", item);
}

static int device_cb(void *ctx, const struct mta_db_device *d)
{
	struct devices *ds = ctx;
	char one[1200];
	describe(d, one, sizeof one);
	append(ds->all, sizeof ds->all, one);
	const struct mta_backend *be = NULL;
	if ((ds->o->device && (ds->id >= 0 ? d->id != ds->id : strcmp(ds->o->device, d->name))) ||
	    (ds->o->arch && (mta_backend_find(d->backend, &be) || !be->binary_key)))
		return 0;
	int slot = ds->o->arch && !strcmp(d->arch, ds->o->arch);
	struct xdevice *f = &ds->found[slot];
	ds->n[slot]++;
	append(ds->match[slot], sizeof ds->match[slot], one);
	/* cut short, the text would no longer be what the database says */
	f->too_long = strlen(d->name) >= sizeof f->name || strlen(d->arch) >= sizeof f->arch ||
		      strlen(d->backend) >= sizeof f->backend;
	f->id = d->id;
	snprintf(f->backend, sizeof f->backend, "%s", d->backend);
	snprintf(f->name, sizeof f->name, "%s", d->name);
	snprintf(f->arch, sizeof f->arch, "%s", d->arch);
	return 0;
}

/*
 * The one device whose winners to export: --device ID (a number: the id
 * `mtatune list devices` shows) or NAME, else of --arch's backend (cuda; a
 * device of that very arch first), else the only device. Several devices
 * may share a name (a compiler upgrade is a new device): then the id tells
 * them apart, and the message lists them. None at all is fine when problems
 * were named (defaults only).
 */
static int pick_device(struct mta_db *db, const struct mta_export_opts *o, struct xdevice *d)
{
	struct devices ds = { .o = o, .id = -1 };
	char shown[300];
	if (o->device && o->device[0] && strspn(o->device, "0123456789") == strlen(o->device) &&
	    strlen(o->device) < 18)
		ds.id = atoll(o->device);
	if (o->device)
		mta_escape_str(o->device, shown, sizeof shown);
	int rc = mta_db_list_devices(db, device_cb, &ds);
	if (rc)
		return rc;
	int slot = ds.n[1] ? 1 : 0;
	memset(d, 0, sizeof *d);
	if (ds.n[slot] == 1) {
		*d = ds.found[slot];
	} else if (ds.n[slot] > 1 && o->device) {
		return mta_fail(MTA_EINVAL, "database %s has %d devices named '%s'%s: %s; choose one "
				"with --device ID", o->db_path, ds.n[slot], shown,
				o->arch ? " for --arch" : "", ds.match[slot]);
	} else if (ds.n[slot] > 1) {
		return mta_fail(MTA_EINVAL, "database %s has several devices%s: %s; choose one "
				"with --device ID (or NAME)", o->db_path, o->arch ? " for --arch" : "",
				ds.match[slot]);
	} else if (o->device || !o->problems) {
		char what[400];
		if (o->device)
			snprintf(what, sizeof what, "device %s%s%s%s", ds.id >= 0 ? "" : "named '",
				 shown, ds.id >= 0 ? "" : "'", o->arch ? " with cuda kernels" : "");
		else
			snprintf(what, sizeof what, "%s device", o->arch ? "cuda" : "tuned");
		return mta_fail(MTA_ENOTFOUND, "database %s has no %s%s%s", o->db_path, what,
				ds.all[0] ? "; it has " : " (tune first)", ds.all);
	} else {
		snprintf(d->backend, sizeof d->backend, "%s", o->arch ? "cuda" : "cpu");
	}
	if (o->arch)
		snprintf(d->arch, sizeof d->arch, "%s", o->arch);
	return MTA_OK;
}

/*
 * Whether s names a CUDA architecture NVRTC takes: sm_NN or sm_NNN (sm_50
 * .. sm_120 and on: compute capability NN/10 . NN%10), optionally with the
 * arch-specific suffix a or the family suffix f.
 */
static int cuda_arch(const char *s)
{
	int sm = 0, n = 0;
	if (sscanf(s, "sm_%d%n", &sm, &n) != 1 || sm < 50 || sm > 999 || !isdigit((unsigned char)s[3]))
		return 0;
	return !s[n] || ((s[n] == 'a' || s[n] == 'f') && !s[n + 1]);
}

/*
 * The device's text goes into the library's comments and strings (escaped
 * there): refuse a control character, which no device name needs and which
 * could end a line. A binary backend's arch is also a compiler option
 * (NVRTC's target): it must be an architecture such as sm_90.
 */
static int check_device_text(const char *db_path, const struct xdevice *d, int binary)
{
	const char *what[] = { "device name", "device arch" }, *text[] = { d->name, d->arch };
	char shown[1100];
	if (d->too_long)
		return mta_fail(MTA_EFORMAT, "database %s: device %lld has a name, arch or backend "
				"longer than %zu, %zu or %zu bytes: it is not exported", db_path,
				(long long)d->id, sizeof d->name - 1, sizeof d->arch - 1,
				sizeof d->backend - 1);
	for (int i = 0; i < 2; i++)
		for (const unsigned char *c = (const unsigned char *)text[i]; *c; c++)
			if (*c < 0x20 || *c == 0x7f)
				return mta_fail(MTA_EFORMAT, "database %s: %s '%s' holds a control "
						"character: it is not written into a library (export "
						"another device, or fix the name in the database)",
						db_path, what[i], mta_escape_str(text[i], shown,
										  sizeof shown));
	if (binary && d->id && !cuda_arch(d->arch))
		return mta_fail(MTA_EFORMAT, "database %s: device arch '%s' is not a CUDA "
				"architecture such as sm_90", db_path,
				mta_escape_str(d->arch, shown, sizeof shown));
	return MTA_OK;
}

/* ---- problems and their winners ---------------------------------------------------- */

static int cmp_problem(const void *a, const void *b)
{
	return strcmp(((const struct xproblem *)a)->key, ((const struct xproblem *)b)->key);
}

/* The problem with this key in plan x, added (unsorted) when add is set. */
static struct xproblem *problem(struct xplan *x, const char *key, int add)
{
	for (int i = 0; i < x->np; i++)
		if (!strcmp(x->p[i].key, key))
			return &x->p[i];
	if (!add)
		return NULL;
	struct xproblem *p = realloc(x->p, (size_t)(x->np + 1) * sizeof *p);
	if (!p)
		return NULL;
	x->p = p;
	p = &x->p[x->np++];
	memset(p, 0, sizeof *p);
	snprintf(p->key, sizeof p->key, "%s", key);
	return p;
}

/*
 * Does the plan's library ship backwards? Where the backend has one: a CPU
 * library's are C backward kernels, a CUDA library's cubins of the
 * backward template, run by the host side it ships (runtime/cuda/bwd.c).
 */
static int ships_backward(const struct xplan *x)
{
	return x->be->train_load && mta_gen_op_space(x->be->variants, MTA_OP_BWD);
}

/*
 * Does the plan's library ship decode cubins? A binary (CUDA) library
 * whose backend has a decode kernel: its caches run them through the host
 * side it ships (runtime/cuda/decode_dev.c). A CPU library's decode kernel
 * is C source (src/d_<i>.c), one per problem.
 */
static int ships_decode(const struct xplan *x)
{
	return x->binary && x->be->decode_load && mta_gen_op_space(x->be->variants, MTA_OP_DECODE);
}

struct winners {
	struct xplan *x;
	int add;      /* problems not yet in the plan are added */
	int rc;
};

static int winner_cb(void *ctx, const struct mta_db_winner *w)
{
	struct winners *ws = ctx;
	/* the forward's winners, and the backward's where the backend has one */
	int bwd = !strcmp(w->op, "bwd");
	int dec = !strcmp(w->op, "decode");
	if (dec && !ws->x->binary) { /* a CPU library's decode kernel: one per problem */
		struct xproblem *p = problem(ws->x, w->problem_key, ws->add);
		if (!p)
			return ws->add ? (ws->rc = mta_fail(MTA_ENOMEM, "out of memory")) : 0;
		if ((!p->dw.spec[0] || w->t_bucket > p->dw.t_bucket ||
			  (w->t_bucket == p->dw.t_bucket && w->b_bucket > p->dw.b_bucket))) {
			p->dw.t_bucket = w->t_bucket;
			p->dw.b_bucket = w->b_bucket;
			snprintf(p->dw.spec, sizeof p->dw.spec, "%s", w->spec);
		}
		return 0;
	}
	if (!bwd && !dec && strcmp(w->op, "fwd"))
		return 0;
	if ((bwd && !ships_backward(ws->x)) || (dec && !ships_decode(ws->x)))
		return 0;
	/* a problem tuned for the backward (or decode) alone is exported for all */
	struct xproblem *p = problem(ws->x, w->problem_key, ws->add);
	if (!p)
		return ws->add ? (ws->rc = mta_fail(MTA_ENOMEM, "out of memory")) : 0;
	struct xbucket **list = bwd ? &p->bb : dec ? &p->dk : &p->b;
	int *n = bwd ? &p->nbb : dec ? &p->ndk : &p->nb;
	struct xbucket *b = realloc(*list, (size_t)(*n + 1) * sizeof *b);
	if (!b)
		return ws->rc = mta_fail(MTA_ENOMEM, "out of memory");
	*list = b;
	b += *n;
	b->t_bucket = w->t_bucket;
	b->b_bucket = w->b_bucket;
	b->speedup = w->rounds ? 1 / w->ratio : NAN;
	b->ci_low = w->rounds ? 1 / w->ci_high : NAN;
	b->ci_high = w->rounds ? 1 / w->ci_low : NAN;
	b->rounds = w->rounds;
	b->significant = w->significant;
	snprintf(b->spec, sizeof b->spec, "%s", w->spec);
	(*n)++;
	return 0;
}

/* The problems named by --problem (canonical keys), or none when not named. */
static int named_problems(const struct mta_export_opts *o, struct xplan *x)
{
	for (size_t i = 0; i < o->nproblems; i++) {
		struct mta_problem p;
		char key[MTA_KEY_MAX];
		int rc;
		if ((rc = mta_problem_from_key(o->problems[i], &p)) ||
		    (rc = mta_problem_key(&p, key, sizeof key)))
			return mta_wrap(rc, "--problem %s", o->problems[i]);
		if (!problem(x, key, 1))
			return mta_fail(MTA_ENOMEM, "out of memory");
	}
	return MTA_OK;
}

static int cmp_bucket(const void *a, const void *b)
{
	const struct xbucket *x = a, *y = b;
	if (x->t_bucket != y->t_bucket)
		return (x->t_bucket > y->t_bucket) - (x->t_bucket < y->t_bucket);
	return (x->b_bucket > y->b_bucket) - (x->b_bucket < y->b_bucket);
}

/* Index of (problem, op, spec) among the plan's kernels, added on first sight. */
static int kernel(struct xplan *x, int pi, int op, const char *spec, int *index)
{
	for (int i = 0; i < x->nk; i++)
		if (x->k[i].problem == pi && x->k[i].op == op && !strcmp(x->k[i].spec, spec)) {
			*index = i;
			return MTA_OK;
		}
	struct xkernel *k = realloc(x->k, (size_t)(x->nk + 1) * sizeof *k);
	if (!k)
		return mta_fail(MTA_ENOMEM, "out of memory");
	x->k = k;
	k = &x->k[x->nk];
	memset(k, 0, sizeof *k);
	k->problem = pi;
	k->op = op;
	snprintf(k->spec, sizeof k->spec, "%s", spec);
	*index = x->nk++;
	return MTA_OK;
}

/*
 * Text that only the database vouches for. A key or a spec must be exactly
 * what mtatune writes for the struct it parses into (its canonical form:
 * what goes into the library is re-derived from that struct, and a stored
 * "bq=\n+64" would not even compile); a T bucket a power of two >= 1.
 */
static int canonical_key(const char *db_path, struct xproblem *p)
{
	char canon[MTA_KEY_MAX], shown[MTA_KEY_MAX * 4];
	int rc;
	if ((rc = mta_problem_from_key(p->key, &p->p)))
		return mta_wrap(MTA_EFORMAT, "database %s: it is not exported", db_path);
	if ((rc = mta_problem_key(&p->p, canon, sizeof canon)))
		return rc;
	if (strcmp(canon, p->key))
		return mta_fail(MTA_EFORMAT, "database %s holds the non-canonical problem key '%s' "
				"(canonical: '%s'): it is not exported", db_path,
				mta_escape_str(p->key, shown, sizeof shown), canon);
	return MTA_OK;
}

/*
 * A winner's spec held to the rules of its operation: a forward's to the
 * forward's, a decode's to its space's, a backward's to those of what the backward's
 * kernel reads (mta_variant_check_kernel, as the runtime holds its pick: a
 * CUDA backward's nb is no forward tunable).
 */
static int canonical_bucket(const char *db_path, const struct xplan *x, const struct xproblem *p,
			    const struct xbucket *b, int op)
{
	struct mta_variant v;
	char canon[MTA_SPEC_MAX], shown[MTA_SPEC_MAX * 4];
	int rc;
	if (b->t_bucket < 1 || (b->t_bucket & (b->t_bucket - 1)))
		return mta_fail(MTA_EDB, "database %s is damaged: the winner of %s has T bucket %lld, "
				"not a power of two >= 1", db_path, p->key, (long long)b->t_bucket);
	mta_escape_str(b->spec, shown, sizeof shown);
	if ((rc = mta_variant_parse(b->spec, &v)))
		return mta_wrap(MTA_EFORMAT, "database %s, winner of %s", db_path, p->key);
	if (v.backend != x->be->variants)
		return mta_fail(MTA_EFORMAT, "database %s: the %s device's winner of %s is '%s', not "
				"a %s variant", db_path, x->be->name, p->key, shown,
				mta_backend_name(x->be->variants));
	if ((rc = mta_variant_format(&v, canon, sizeof canon)))
		return rc;
	if (strcmp(canon, b->spec))
		return mta_fail(MTA_EFORMAT, "database %s holds the non-canonical variant spec '%s' "
				"of %s (canonical: '%s'): it is not exported", db_path, shown, p->key,
				canon);
	if ((rc = op == MTA_OP_BWD      ? mta_variant_check_kernel(&p->p, &v, MTA_OP_BWD)
		  : op == MTA_OP_DECODE ? mta_variant_check_op(&p->p, &v, MTA_OP_DECODE)
					: mta_variant_check(&p->p, &v)))
		return mta_wrap(MTA_EFORMAT, "database %s, winner %s of %s", db_path, shown, p->key);
	return MTA_OK;
}

/*
 * Sort problems by key and buckets by size, and number the kernels in that
 * order: each bucket's winner, then the default variant, one kernel per
 * distinct (problem, op, spec); then, for problems with backward winners,
 * those winners and the default backward variant likewise; last, in a CUDA
 * library, each problem's decode winners and its default decode variant.
 */
static int number_kernels(const char *db_path, struct xplan *x)
{
	int rc, backend = x->be->variants;
	qsort(x->p, (size_t)x->np, sizeof *x->p, cmp_problem);
	for (int i = 0; i < x->np; i++) {
		struct xproblem *p = &x->p[i];
		struct mta_variant v;
		char spec[MTA_SPEC_MAX];
		if ((rc = canonical_key(db_path, p)))
			return rc;
		if (p->nb)
			qsort(p->b, (size_t)p->nb, sizeof *p->b, cmp_bucket);
		for (int j = 0; j < p->nb; j++)
			if ((rc = canonical_bucket(db_path, x, p, &p->b[j], MTA_OP_FWD)) ||
			    (rc = kernel(x, i, MTA_OP_FWD, p->b[j].spec, &p->b[j].kernel)))
				return rc;
		if ((rc = mta_variant_default(&p->p, backend, &v)) ||
		    (rc = mta_variant_format(&v, spec, sizeof spec)) ||
		    (rc = kernel(x, i, MTA_OP_FWD, spec, &p->def)))
			return rc;
		struct mta_variant dv;
		if (p->dw.spec[0] && ((rc = canonical_bucket(db_path, x, p, &p->dw, MTA_OP_DECODE)) ||
				      (rc = mta_variant_parse(p->dw.spec, &dv)) ||
				      (rc = mta_variant_check_op(&p->p, &dv, MTA_OP_DECODE))))
			return mta_wrap(rc == MTA_EFORMAT ? rc : MTA_EFORMAT, "database %s, the decode "
					"winner of %s", db_path, p->key);
		/*
		 * The backward only for problems tuned for it: a backward library
		 * compiles several times longer than a forward kernel, and a
		 * forward-only database exports as it did.
		 */
		p->bdef = -1;
		if (!ships_backward(x) || !p->nbb)
			continue;
		if (p->nbb)
			qsort(p->bb, (size_t)p->nbb, sizeof *p->bb, cmp_bucket);
		for (int j = 0; j < p->nbb; j++)
			if ((rc = canonical_bucket(db_path, x, p, &p->bb[j], MTA_OP_BWD)) ||
			    (rc = kernel(x, i, MTA_OP_BWD, p->bb[j].spec, &p->bb[j].kernel)))
				return rc;
		if ((rc = mta_variant_default_op(&p->p, backend, MTA_OP_BWD, &v)) ||
		    (rc = mta_variant_format(&v, spec, sizeof spec)) ||
		    (rc = kernel(x, i, MTA_OP_BWD, spec, &p->bdef)))
			return rc;
	}
	/* a CUDA library's decode, after every forward and backward: its winners, its default */
	for (int i = 0; i < x->np; i++) {
		struct xproblem *p = &x->p[i];
		struct mta_variant v, dv;
		char spec[MTA_SPEC_MAX];
		p->ddef = -1;
		if (!ships_decode(x))
			continue;
		if (p->ndk)
			qsort(p->dk, (size_t)p->ndk, sizeof *p->dk, cmp_bucket);
		for (int j = 0; j < p->ndk; j++)
			if ((rc = canonical_bucket(db_path, x, p, &p->dk[j], MTA_OP_DECODE)) ||
			    (rc = mta_variant_parse(p->dk[j].spec, &dv)) ||
			    (rc = mta_variant_check_op(&p->p, &dv, MTA_OP_DECODE)) ||
			    (rc = kernel(x, i, MTA_OP_DECODE, p->dk[j].spec, &p->dk[j].kernel)))
				return mta_wrap(rc == MTA_ENOMEM ? rc : MTA_EFORMAT, "database %s, a "
						"decode winner of %s", db_path, p->key);
		if ((rc = mta_variant_default_op(&p->p, backend, MTA_OP_DECODE, &v)) ||
		    (rc = mta_variant_format(&v, spec, sizeof spec)) ||
		    (rc = kernel(x, i, MTA_OP_DECODE, spec, &p->ddef)))
			return rc;
	}
	return MTA_OK;
}

/* ---- kernel sources and binaries --------------------------------------------------- */

/*
 * The launch of binary kernel k of variant v: the forward's from the
 * backend, the backward's (cuda, the one binary backend with one) from its
 * plan at B = T = 1 (threads and shared memory do not depend on them) and
 * its shape, which the exported runtime plans each call with.
 */
static int launch_of(const struct xplan *x, struct xkernel *k, const struct mta_problem *p,
		     const struct mta_variant *v)
{
	struct mta_cuda_bwd_dims d;
	int rc;
	if (k->op == MTA_OP_DECODE) { /* a block per sequence: bq and hpb unused */
		size_t smem = 0;
		if (v->backend != MTA_BACKEND_CUDA)
			return mta_fail(MTA_EUNSUPPORTED, "a binary %s decode is not exported",
					mta_backend_name(v->backend));
		if ((rc = mta_cuda_decode_dims(p, v, &k->block, &smem)))
			return rc;
		k->smem = (unsigned)smem;
		return MTA_OK;
	}
	if (k->op != MTA_OP_BWD)
		return x->be->launch_dims(p, v, &k->block, &k->smem, &k->bq, &k->hpb, &k->cs);
	if (v->backend != MTA_BACKEND_CUDA)
		return mta_fail(MTA_EUNSUPPORTED, "a binary %s backward is not exported",
				mta_backend_name(v->backend));
	if ((rc = mta_cuda_bwd_dims(p, v, 1, 1, &d, NULL)))
		return rc;
	k->block = d.threads;
	k->smem = (unsigned)d.smem_bytes;
	k->shape = mta_cuda_bwd_shape_of(v);
	return MTA_OK;
}

/* Generate every kernel's source and, for binary backends, its launch numbers. */
static int generate(struct xplan *x)
{
	for (int i = 0; i < x->nk; i++) {
		struct xkernel *k = &x->k[i];
		const struct mta_problem *p = &x->p[k->problem].p;
		struct mta_variant v;
		int rc;
		if ((rc = mta_variant_parse(k->spec, &v)) ||
		    (rc = mta_gen_source_op(p, &v, k->op, &k->source)) ||
		    (x->binary && (rc = launch_of(x, k, p, &v))))
			return mta_wrap(rc, "problem %s, variant %s", x->p[k->problem].key, k->spec);
	}
	return MTA_OK;
}

/*
 * Fill every kernel's binary for the target: stored ones first (under the
 * key this compiler would store them, else any compiler's), the rest built
 * now in one batch.
 */
static int binaries(struct mta_db *db, struct xplan *x, struct mta_export_summary *s)
{
	struct mta_build *bs = calloc((size_t)x->nk + 1, sizeof *bs);
	int *which = calloc((size_t)x->nk + 1, sizeof *which);
	struct mta_device_info dev;
	int nb = 0, rc = MTA_OK;

	if (!bs || !which) {
		rc = mta_fail(MTA_ENOMEM, "out of memory");
		goto out;
	}
	/* this machine's compiler, if it has one, names the key its binaries have */
	int have_compiler = x->be->target(x->dev.arch, &dev) == MTA_OK;
	for (int i = 0; i < x->nk; i++) {
		struct xkernel *k = &x->k[i];
		struct mta_db_binary_key key;
		char hash[17], compiler[32];
		mta_hash_hex(k->source, strlen(k->source), hash);
		x->be->binary_key(&dev, hash, compiler, &key);
		rc = have_compiler ? mta_db_binary_get(db, &key, &k->cubin, &k->cubin_size)
				   : MTA_ENOTFOUND;
		if (rc == MTA_ENOTFOUND)
			rc = mta_db_binary_get_any(db, &key, &k->cubin, &k->cubin_size);
		if (rc == MTA_OK && k->cubin_size) {
			s->cubins_from_db++;
			continue;
		}
		if (rc != MTA_OK && rc != MTA_ENOTFOUND)
			goto out;
		free(k->cubin);
		k->cubin = NULL;
		bs[nb].p = x->p[k->problem].p;
		if ((rc = mta_variant_parse(k->spec, &bs[nb].v)))
			goto out;
		bs[nb].source = k->source;
		bs[nb].op = k->op; /* the backward's entry point and launch */
		which[nb++] = i;
	}
	rc = MTA_OK;
	if (!nb)
		goto out;
	if ((rc = x->be->build(&dev, bs, (size_t)nb, 0)))
		goto out;
	for (int j = 0; j < nb; j++) {
		struct xkernel *k = &x->k[which[j]];
		if (bs[j].status) {
			rc = mta_fail(bs[j].status, "problem %s, variant %s for %s: %s",
				      x->p[k->problem].key, k->spec, x->dev.arch, bs[j].message);
			goto out;
		}
		k->cubin = bs[j].binary;
		k->cubin_size = bs[j].binary_size;
		bs[j].binary = NULL;
		s->cubins_compiled++;
	}
out:
	for (int j = 0; bs && j < nb; j++)
		mta_build_free(&bs[j]);
	free(bs);
	free(which);
	return rc;
}

/* ---- the whole export --------------------------------------------------------------- */

static int check_opts(const struct mta_export_opts *o)
{
	if (!o->db_path || !o->out_dir || !*o->out_dir)
		return mta_fail(MTA_EINVAL, "export needs a database and an output folder");
	if (!o->name[0] || strspn(o->name, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
				  "0123456789_") != strlen(o->name) || strlen(o->name) > 64)
		return mta_fail(MTA_EINVAL, "library name '%s': expected 1 to 64 letters, digits "
				"or '_' (it names lib<NAME>.so)", o->name);
	if (o->arch && !cuda_arch(o->arch))
		return mta_fail(MTA_EINVAL, "--arch %s: expected a CUDA architecture such as sm_80 "
				"or sm_90", o->arch);
	return MTA_OK;
}

int mta_export(const struct mta_export_opts *opts, struct mta_export_summary *s)
{
	struct mta_export_opts o = *opts;
	struct mta_db *db = NULL;
	struct xplan x = { 0 };
	int rc;

	memset(s, 0, sizeof *s);
	if (!o.name)
		o.name = "mta";
	if (o.nproblems == 0)
		o.problems = NULL;
	if ((rc = check_opts(&o)) || (rc = mta_db_open(o.db_path, MTA_DB_READONLY, &db)) ||
	    (rc = pick_device(db, &o, &x.dev)))
		goto out;
	if (mta_backend_find(x.dev.backend, &x.be)) {
		char shown[100];
		rc = mta_fail(MTA_EFORMAT, "database %s: device backend '%s' is not one this mtatune "
			      "knows", o.db_path, mta_escape_str(x.dev.backend, shown, sizeof shown));
		goto out;
	}
	x.binary = x.be->binary_key != NULL;
	if ((rc = check_device_text(o.db_path, &x.dev, x.binary)))
		goto out;
	x.name = o.name;
	struct winners ws = { &x, !o.problems, MTA_OK };
	if ((rc = named_problems(&o, &x)))
		goto out;
	if (x.dev.id && (rc = mta_db_list_winners(db, x.dev.id, NULL, winner_cb, &ws)))
		goto out;
	if ((rc = ws.rc))
		goto out;
	if (!x.np) {
		rc = mta_fail(MTA_ENOTFOUND, "device '%s' has no winners in %s: tune first, or "
			      "name problems with --problem", x.dev.name, o.db_path);
		goto out;
	}
	if ((rc = number_kernels(o.db_path, &x)) || (rc = generate(&x)) ||
	    (x.binary && (rc = binaries(db, &x, s))) || (rc = mta_export_write(&x, o.out_dir)))
		goto out;
	s->problems = x.np;
	for (int i = 0; i < x.np; i++) {
		s->buckets += x.p[i].nb + x.p[i].nbb;
		s->bwd_buckets += x.p[i].nbb;
	}
	s->kernels = x.nk;
	snprintf(s->backend, sizeof s->backend, "%s", x.dev.backend);
	snprintf(s->device, sizeof s->device, "%s", x.dev.name);
	snprintf(s->arch, sizeof s->arch, "%s", x.dev.arch);
out:
	for (int i = 0; i < x.np; i++) {
		free(x.p[i].b);
		free(x.p[i].bb);
		free(x.p[i].dk);
	}
	for (int i = 0; i < x.nk; i++) {
		free(x.k[i].source);
		free(x.k[i].cubin);
	}
	free(x.p);
	free(x.k);
	mta_db_close(db);
	return rc;
}
