/*
 * variant.c: variant specs (text <-> struct) and the generic walk over a
 * backend's space (see space.h). Backend knowledge lives in gen/<b>/space.c.
 */
#include "gen/gen.h"
#include "runtime/core/error.h"
#include "runtime/core/strbuf.h"

#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

const char *mta_backend_name(int backend)
{
	const struct mta_gen_backend *g = mta_gen_backend(backend);
	return g ? g->name : "?";
}

int mta_backend_parse(const char *s, int *backend)
{
	char names[128] = "";
	for (int i = 0; i < mta_gen_backend_count(); i++) {
		if (!strcmp(s, mta_gen_backend(i)->name)) {
			*backend = i;
			return MTA_OK;
		}
		snprintf(names + strlen(names), sizeof names - strlen(names), "%s%s",
			 i ? (i + 1 == mta_gen_backend_count() ? " or " : ", ") : "",
			 mta_gen_backend(i)->name);
	}
	return mta_fail(MTA_EINVAL, "unknown backend '%s' (expected %s)", s, names);
}

static const struct mta_space *space_of(int backend)
{
	const struct mta_gen_backend *g = mta_gen_backend(backend);
	return g ? g->space : NULL;
}

#define field mta_tunable_field

static const struct mta_tunable *base_row(const struct mta_space *s, const char *name)
{
	for (const struct mta_tunable *b = s->tunables; b->name; b++)
		if (!strcmp(b->name, name))
			return b;
	return NULL;
}

/*
 * The i-th tunable of an operation of backend that the backend's space
 * lacks (gen/space.h: an op space's check rows, such as cuda's nb), with
 * *op its operation; NULL past the last.
 */
static const struct mta_tunable *own_row(int backend, int i, int *op)
{
	const struct mta_space *s = space_of(backend);
	for (int o = MTA_OP_FWD + 1; s && o < MTA_OP_COUNT; o++) {
		const struct mta_op_space *os = mta_gen_op_space(backend, o);
		for (const struct mta_tunable *t = os && os->check ? os->check->tunables : NULL;
		     t && t->name; t++)
			if (!base_row(s, t->name) && i-- == 0) {
				if (op)
					*op = o;
				return t;
			}
	}
	return NULL;
}

static void defaults(const struct mta_space *s, int backend, struct mta_variant *v)
{
	memset(v, 0, sizeof *v);
	v->backend = backend;
	v->version = s->def_version > 0 ? s->def_version : 1;
	for (const struct mta_tunable *t = s->tunables; t->name; t++)
		*field(v, t) = t->def;
}

int mta_variant_format(const struct mta_variant *v, char *buf, size_t n)
{
	const struct mta_space *s = space_of(v->backend);
	if (!s)
		return mta_fail(MTA_EINVAL, "variant has unknown backend %d", v->backend);
	char tmp[MTA_SPEC_MAX * 2];
	int len = snprintf(tmp, sizeof tmp, "%s:v%d", s->backend, v->version), i_own = 0;
	for (const struct mta_tunable *t = s->tunables; t->name; t++)
		if (!t->quiet || *field((struct mta_variant *)v, t) != t->def)
			len += snprintf(tmp + len, sizeof tmp - (size_t)len, ",%s=%d", t->name,
					*field((struct mta_variant *)v, t));
	/* an operation's own tunables, when set (0 in every other variant) */
	for (const struct mta_tunable *t; (t = own_row(v->backend, i_own, NULL)); i_own++)
		if (*field((struct mta_variant *)v, t))
			len += snprintf(tmp + len, sizeof tmp - (size_t)len, ",%s=%d", t->name,
					*field((struct mta_variant *)v, t));
	if ((size_t)len + 1 > n || len + 1 > MTA_SPEC_MAX)
		return mta_fail(MTA_EINVAL, "variant spec needs %d bytes, buffer holds %zu", len + 1, n);
	memcpy(buf, tmp, (size_t)len + 1);
	return MTA_OK;
}

int mta_variant_parse(const char *spec, struct mta_variant *out)
{
	char buf[MTA_SPEC_MAX * 2];
	struct mta_variant v;
	unsigned seen = 0;
	int backend, rc;

	if (!spec || strlen(spec) >= sizeof buf)
		return mta_fail(MTA_EINVAL, "variant spec is missing or too long");
	if (!mta_is_printable(spec, strlen(spec))) {
		char shown[sizeof buf * 4];
		return mta_fail(MTA_EINVAL, "variant spec '%s' holds a byte that is not printable",
				mta_escape_str(spec, shown, sizeof shown));
	}
	strcpy(buf, spec);
	char *colon = strchr(buf, ':');
	if (!colon)
		return mta_fail(MTA_EINVAL, "variant spec '%s': expected <backend>:v<N>[,key=value...], "
				"e.g. cpu:v1,bq=16", spec);
	*colon = 0;
	if ((rc = mta_backend_parse(buf, &backend)))
		return mta_wrap(rc, "variant spec '%s'", spec);
	const struct mta_space *s = space_of(backend);
	defaults(s, backend, &v);
	char *save = NULL;
	for (char *t = strtok_r(colon + 1, ",", &save); t; t = strtok_r(NULL, ",", &save)) {
		char *end;
		if (t[0] == 'v' && t[1] >= '0' && t[1] <= '9') {
			long n = strtol(t + 1, &end, 10);
			if (*end || n < 1 || n > 99)
				return mta_fail(MTA_EINVAL, "variant spec '%s': bad version '%s'", spec, t);
			if (seen & 1u)
				return mta_fail(MTA_EINVAL, "variant spec '%s': version given twice", spec);
			seen |= 1u;
			v.version = (int)n;
			continue;
		}
		char *eq = strchr(t, '=');
		if (!eq)
			return mta_fail(MTA_EINVAL, "variant spec '%s': '%s' is not key=value", spec, t);
		*eq = 0;
		const struct mta_tunable *tu = s->tunables, *own = NULL;
		int idx = 1, op = 0;
		for (; tu->name && strcmp(tu->name, t); tu++)
			idx++;
		for (int i = 0; !tu->name && (own = own_row(backend, i, &op)); i++, idx++)
			if (!strcmp(own->name, t)) {
				tu = own;
				break;
			}
		if (!tu->name) {
			char names[256] = "";
			for (const struct mta_tunable *x = s->tunables; x->name; x++)
				snprintf(names + strlen(names), sizeof names - strlen(names), "%s%s",
					 x == s->tunables ? "" : ", ", x->name);
			for (int i = 0; (own = own_row(backend, i, &op)); i++)
				snprintf(names + strlen(names), sizeof names - strlen(names),
					 ", %s (%s only)", own->name, mta_op_name(op));
			return mta_fail(MTA_EINVAL, "variant spec '%s': unknown %s tunable '%s' "
					"(expected %s)", spec, s->backend, t, names);
		}
		if (seen & (1u << idx))
			return mta_fail(MTA_EINVAL, "variant spec '%s': '%s' given twice", spec, t);
		seen |= 1u << idx;
		/* digits only: strtol alone would take " +64" */
		long n = eq[1] >= '0' && eq[1] <= '9' ? strtol(eq + 1, &end, 10) : -1;
		if (!eq[1] || n < 0 || *end || n > 1 << 20)
			return mta_fail(MTA_EINVAL, "variant spec '%s': %s='%s' is not a number in "
					"[0, 1048576]", spec, t, eq + 1);
		*field(&v, tu) = (int)n;
	}
	*out = v;
	return MTA_OK;
}

/* MTA_OK, or why v, a variant of the forward, carries an operation's own tunable. */
static int own_unset(const struct mta_variant *v)
{
	int op = 0;
	for (int i = 0; own_row(v->backend, i, &op); i++) {
		const struct mta_tunable *t = own_row(v->backend, i, &op);
		if (*field((struct mta_variant *)v, t))
			return mta_fail(MTA_EINVAL, "%s=%d is a tunable of the %s %s alone; a %s "
					"forward variant has none", t->name,
					*field((struct mta_variant *)v, t), mta_backend_name(v->backend),
					mta_op_name(op), mta_backend_name(v->backend));
	}
	return MTA_OK;
}

int mta_variant_check(const struct mta_problem *p, const struct mta_variant *v)
{
	const struct mta_space *s = space_of(v->backend);
	int rc;
	if (!s)
		return mta_fail(MTA_EINVAL, "variant has unknown backend %d", v->backend);
	if ((rc = mta_problem_validate(p)))
		return rc;
	if ((rc = mta_space_check(s, p, v)))
		return rc;
	return own_unset(v);
}

/* Visit every point of the cartesian product of the value lists. */
static int walk(const struct mta_problem *p, const struct mta_space *s, int backend,
		struct mta_variant **out, size_t *n, int first_only)
{
	int nt = 0, idx[32] = { 0 };
	size_t cap = 0, cnt = 0;
	struct mta_variant *arr = NULL, v;

	while (s->tunables[nt].name)
		nt++;
	for (int ver = 1; ver <= (s->nversions > 1 ? s->nversions : 1); ver++)
	for (memset(idx, 0, sizeof idx);;) {
		defaults(s, backend, &v);
		v.version = ver;
		int tried = 1;
		for (int i = 0; i < nt; i++) {
			const unsigned char in = s->tunables[i].tried_in[idx[i]];
			*field(&v, &s->tunables[i]) = s->tunables[i].vals[idx[i]];
			if (in && !(in & (1u << (ver - 1))))
				tried = 0;
		}
		if (tried && mta_space_check(s, p, &v) == MTA_OK && (!s->tried || s->tried(p, &v))) {
			if (cnt == cap) {
				cap = cap ? cap * 2 : 64;
				struct mta_variant *na = realloc(arr, cap * sizeof *arr);
				if (!na) {
					free(arr);
					return mta_fail(MTA_ENOMEM, "out of memory enumerating variants");
				}
				arr = na;
			}
			arr[cnt++] = v;
			if (first_only)
				goto done;
		}
		int i = 0;
		while (i < nt && ++idx[i] >= s->tunables[i].nvals)
			idx[i++] = 0;
		if (i == nt)
			break;
	}
done:
	mta_clear_error();
	*out = arr;
	*n = cnt;
	return MTA_OK;
}

int mta_variant_space(const struct mta_problem *p, int backend, struct mta_variant **out, size_t *n)
{
	const struct mta_space *s = space_of(backend);
	int rc;
	if (!s)
		return mta_fail(MTA_EINVAL, "unknown backend %d", backend);
	if ((rc = mta_problem_validate(p)))
		return rc;
	return walk(p, s, backend, out, n, 0);
}

int mta_variant_default(const struct mta_problem *p, int backend, struct mta_variant *v)
{
	const struct mta_space *s = space_of(backend);
	struct mta_variant *arr = NULL;
	size_t n = 0;
	int rc;
	if (!s)
		return mta_fail(MTA_EINVAL, "unknown backend %d", backend);
	if ((rc = mta_problem_validate(p)))
		return rc;
	defaults(s, backend, v);
	if (s->tailor)
		s->tailor(p, v);
	if (mta_space_check(s, p, v) == MTA_OK)
		return MTA_OK;
	if ((rc = walk(p, s, backend, &arr, &n, 0)))
		return rc;
	if (!n) {
		free(arr);
		return mta_fail(MTA_EUNSUPPORTED, "no %s variant fits this problem", s->backend);
	}
	*v = arr[0]; /* the first point of the default's family, else the first */
	for (size_t i = n; i-- > 0;)
		if (arr[i].version == (s->def_version > 0 ? s->def_version : 1))
			*v = arr[i];
	free(arr);
	return MTA_OK;
}

int mta_variant_default_arch(const struct mta_problem *p, int backend, const char *arch,
			     struct mta_variant *v)
{
	const struct mta_space *s = space_of(backend);
	int rc = mta_variant_default(p, backend, v);
	if (rc || !arch || !s->arch_default)
		return rc;
	return s->arch_default(p, arch, v);
}

/* ---- operations (variant.h: the backward's variants) ---- */

const char *mta_op_name(int op)
{
	return op == MTA_OP_FWD ? "fwd" : op == MTA_OP_BWD ? "bwd" : op == MTA_OP_DECODE ? "decode"
											  : "?";
}

int mta_op_parse(const char *s, int *op)
{
	for (int i = 0; i < MTA_OP_COUNT; i++)
		if (s && !strcmp(s, mta_op_name(i))) {
			*op = i;
			return MTA_OK;
		}
	char shown[64];
	return mta_fail(MTA_EINVAL, "unknown operation '%s' (expected fwd, bwd or decode)",
			mta_escape_str(s ? s : "", shown, sizeof shown));
}

/* The op space of (backend, op), or a message: NULL for the forward. */
static int op_space(int backend, int op, const struct mta_op_space **out)
{
	*out = NULL;
	if (op == MTA_OP_FWD)
		return MTA_OK;
	if (op != MTA_OP_BWD && op != MTA_OP_DECODE)
		return mta_fail(MTA_EINVAL, "unknown operation %d", op);
	if (!space_of(backend))
		return mta_fail(MTA_EINVAL, "unknown backend %d", backend);
	if (!(*out = mta_gen_op_space(backend, op)))
		return mta_fail(MTA_EUNSUPPORTED, "the %s kernels have no %s space (tunables "
				"to tune) yet (cpu has)", mta_backend_name(backend),
				op == MTA_OP_BWD ? "backward" : "decode");
	return MTA_OK;
}

/*
 * The row of the tunable the op space's row t names: the backend's, or the
 * operation's own (its check's).
 */
static const struct mta_tunable *base_tunable(const struct mta_space *s,
					      const struct mta_op_space *os,
					      const struct mta_op_tunable *t)
{
	const struct mta_tunable *b = base_row(s, t->name);
	return b ? b : os->check ? base_row(os->check, t->name) : NULL;
}

/*
 * The rules that judge the tunables op's kernel reads: with an op space
 * that has its own (gen/space.h), those, the family's range and the
 * problem; else the backend's.
 */
int mta_variant_check_kernel(const struct mta_problem *p, const struct mta_variant *v, int op)
{
	const struct mta_op_space *os;
	int rc;
	if (op == MTA_OP_FWD || !space_of(v->backend))
		return mta_variant_check(p, v);
	if (op != MTA_OP_BWD && op != MTA_OP_DECODE)
		return mta_fail(MTA_EINVAL, "unknown operation %d", op);
	/*
	 * No space of its own for op (cuda's decode kernel has no tunables): the
	 * kernel is built for the backend's default rules, as the forward's.
	 */
	if (!(os = mta_gen_op_space(v->backend, op)) || !os->check)
		return mta_variant_check(p, v);
	if ((rc = mta_problem_validate(p)))
		return rc;
	if (v->version < 1 || v->version > space_of(v->backend)->nversions)
		return mta_space_check(space_of(v->backend), p, v); /* its message */
	return mta_space_check(os->check, p, v);
}

int mta_variant_default_op(const struct mta_problem *p, int backend, int op,
			   struct mta_variant *v)
{
	const struct mta_op_space *os;
	int rc;
	if ((rc = op_space(backend, op, &os)) || (rc = mta_variant_default(p, backend, v)) || !os)
		return rc;
	for (const struct mta_op_tunable *t = os->tunables; t->name; t++) {
		const struct mta_tunable *b = base_tunable(space_of(backend), os, t);
		if (!b)
			return mta_fail(MTA_EINVAL, "the %s %s space names tunable '%s', which %s "
					"variants lack", mta_backend_name(backend), os->op, t->name,
					mta_backend_name(backend));
		*field(v, b) = t->def;
	}
	return mta_variant_check_kernel(p, v, op);
}

int mta_variant_check_op(const struct mta_problem *p, const struct mta_variant *v, int op)
{
	const struct mta_op_space *os;
	struct mta_variant d;
	int rc;
	if ((rc = mta_variant_check_kernel(p, v, op)) || (rc = op_space(v->backend, op, &os)) ||
	    !os || (rc = mta_variant_default_op(p, v->backend, op, &d)))
		return rc;
	const struct mta_space *s = space_of(v->backend);
	char names[128] = "";
	for (const struct mta_op_tunable *t = os->tunables; t->name; t++)
		snprintf(names + strlen(names), sizeof names - strlen(names), "%s%s",
			 t == os->tunables ? "" : t[1].name ? ", " : " and ", t->name);
	if (v->version != d.version)
		return mta_fail(MTA_EINVAL, "a %s %s variant reads only %s: its family must be the "
				"default's, v%d (got v%d)", s->backend, os->op, names, d.version,
				v->version);
	for (const struct mta_tunable *b = s->tunables; b->name; b++) {
		int in = 0;
		for (const struct mta_op_tunable *t = os->tunables; t->name; t++)
			in |= !strcmp(t->name, b->name);
		if (!in && *field((struct mta_variant *)v, b) != *field(&d, b))
			return mta_fail(MTA_EINVAL, "a %s %s variant reads only %s: %s must keep the "
					"default's value %d (got %d)", s->backend, os->op, names,
					b->name, *field(&d, b), *field((struct mta_variant *)v, b));
	}
	return MTA_OK;
}

int mta_variant_space_op(const struct mta_problem *p, int backend, int op,
			 struct mta_variant **out, size_t *n)
{
	const struct mta_op_space *os;
	struct mta_variant d, *arr = NULL;
	int rc, nt = 0, idx[16] = { 0 };
	size_t cnt = 0, cap = 1;
	*out = NULL;
	*n = 0;
	if ((rc = op_space(backend, op, &os)))
		return rc;
	if (!os)
		return mta_variant_space(p, backend, out, n);
	if ((rc = mta_variant_default_op(p, backend, op, &d)))
		return rc;
	for (; os->tunables[nt].name; nt++)
		cap *= (size_t)os->tunables[nt].nvals;
	if (!(arr = malloc((cap ? cap : 1) * sizeof *arr)))
		return mta_fail(MTA_ENOMEM, "out of memory enumerating variants");
	/* every point of the product of the value lists, on the default */
	for (;;) {
		struct mta_variant v = d;
		for (int i = 0; i < nt; i++)
			*field(&v, base_tunable(space_of(backend), os, &os->tunables[i])) =
				os->tunables[i].vals[idx[i]];
		if (mta_variant_check_kernel(p, &v, op) == MTA_OK)
			arr[cnt++] = v;
		int i = 0;
		while (i < nt && ++idx[i] >= os->tunables[i].nvals)
			idx[i++] = 0;
		if (i == nt)
			break;
	}
	mta_clear_error();
	*out = arr;
	*n = cnt;
	return MTA_OK;
}
