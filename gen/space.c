/*
 * space.c: checking a variant against its space's tables (see space.h):
 * the family, each tunable's rule, the rules between tunables, the limits,
 * in that order; the first broken row's message is the answer.
 */
#include "gen/space.h"
#include "runtime/core/error.h"

#include <stdio.h>
#include <string.h>

int *mta_tunable_field(struct mta_variant *v, const struct mta_tunable *t)
{
	return (int *)((char *)v + t->offset);
}

/* The value named by a {placeholder} (name of length n), as text into buf; 0 if unknown. */
static int lookup(const struct mta_space *s, const struct mta_problem *p,
		  const struct mta_variant *v, const char *name, size_t n, char *buf, size_t cap)
{
	static const struct { const char *name; size_t off; } pf[] = {
		{ "H", offsetof(struct mta_problem, H) }, { "Hkv", offsetof(struct mta_problem, Hkv) },
		{ "D", offsetof(struct mta_problem, D) }, { "cq", offsetof(struct mta_problem, cq) },
		{ "ck", offsetof(struct mta_problem, ck) }, { "cq2", offsetof(struct mta_problem, cq2) },
		{ "ck2", offsetof(struct mta_problem, ck2) }, { "hc", offsetof(struct mta_problem, hc) },
	};
	if (n == 1 && name[0] == 'v') {
		snprintf(buf, cap, "%d", v->version);
		return 1;
	}
	if (n == 5 && !strncmp(name, "dtype", 5)) {
		snprintf(buf, cap, "%s", mta_dtype_name(p->dtype));
		return 1;
	}
	if (n == 5 && !strncmp(name, "group", 5)) { /* the heads one head-mixing group spans */
		int g = p->head_pre || p->head_post == MTA_HPOST_LINEAR ? p->H
			: p->head_post == MTA_HPOST_CONV ? p->hc : 1;
		snprintf(buf, cap, "%d", g);
		return 1;
	}
	if (n == 7 && !strncmp(name, "backend", 7)) {
		snprintf(buf, cap, "%s", s->backend);
		return 1;
	}
	for (size_t i = 0; i < sizeof pf / sizeof pf[0]; i++)
		if (strlen(pf[i].name) == n && !strncmp(pf[i].name, name, n)) {
			snprintf(buf, cap, "%d", *(const int *)((const char *)p + pf[i].off));
			return 1;
		}
	for (const struct mta_tunable *t = s->tunables; t->name; t++)
		if (strlen(t->name) == n && !strncmp(t->name, name, n)) {
			snprintf(buf, cap, "%d", *mta_tunable_field((struct mta_variant *)v, t));
			return 1;
		}
	return 0;
}

/* MTA_EINVAL with msg's {placeholders} filled in. */
static int broken(const struct mta_space *s, const struct mta_problem *p,
		  const struct mta_variant *v, const char *msg)
{
	char out[512], val[64];
	size_t len = 0;
	for (const char *c = msg; *c && len + 1 < sizeof out; c++) {
		const char *end = *c == '{' ? strchr(c, '}') : NULL;
		if (end && lookup(s, p, v, c + 1, (size_t)(end - c - 1), val, sizeof val)) {
			len += (size_t)snprintf(out + len, sizeof out - len, "%s", val);
			if (len >= sizeof out)
				len = sizeof out - 1;
			c = end;
		} else {
			out[len++] = *c;
		}
	}
	out[len] = 0;
	return mta_fail(MTA_EINVAL, "%s", out);
}

int mta_space_check(const struct mta_space *s, const struct mta_problem *p,
		    const struct mta_variant *v)
{
	if (v->version < 1 || v->version > s->nversions) {
		char have[64] = "v1";
		for (int i = 2; i <= s->nversions; i++)
			snprintf(have + strlen(have), sizeof have - strlen(have), ", v%d", i);
		return mta_fail(MTA_EINVAL, "%s kernel family v%d does not exist (have %s)",
				s->backend, v->version, have);
	}
	for (const struct mta_tunable *t = s->tunables; t->name; t++)
		if (t->rule.ok && !t->rule.ok(p, v))
			return broken(s, p, v, t->rule.msg);
	for (const struct mta_rule *r = s->rules; r && r->ok; r++)
		if (!r->ok(p, v))
			return broken(s, p, v, r->msg);
	for (const struct mta_limit *l = s->limits; l && l->what; l++) {
		long need = l->need(p, v), cap = l->cap[v->version - 1];
		if (cap > 0 && need > cap) {
			char spec[MTA_SPEC_MAX] = "?";
			mta_variant_format(v, spec, sizeof spec);
			return mta_fail(MTA_EINVAL, "%s needs %ld %s, at most %ld", spec, need, l->what,
					cap);
		}
	}
	return MTA_OK;
}
