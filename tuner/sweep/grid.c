/*
 * grid.c: the sweep grid parser (see grid.h and docs/grid.md).
 *
 * Line-oriented: each line is a keyword and its values separated by blanks,
 * '#' starts a comment. Lists accumulate over repeated keywords. Values are
 * checked as they are read so that a message can point at the token; the
 * product is built once the whole text is read (a kernel size is checked
 * against the problems then, since a problem line may come after it, so each
 * value remembers where it was written). The parser takes a buffer and a
 * length, never assumes a terminating NUL, and bounds every list, so that it
 * can be fed arbitrary bytes (fuzzing).
 */
#define _GNU_SOURCE /* memmem */
#include "tuner/sweep/grid.h"
#include "runtime/core/error.h"

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/*
 * A list of distinct values in the order first written. The values are also
 * kept in an open-addressing hash set (index + 1 per slot, 0 empty) so that
 * dropping repeats costs O(1) each: a line of many long ranges that repeat
 * would otherwise cost O(values^2) per token, seconds for a few KiB of
 * input (the fuzz target's timeout).
 */
#define SLOTS (2 * MTA_GRID_MAX_VALUES) /* a power of two, at most half full */

/* Where a token was written: line and column, from 1. */
struct pos {
	int line;
	size_t col;
};

struct list {
	int64_t *v;
	struct pos *at; /* where each value was written */
	size_t n, cap;
	uint32_t *slot;
	struct pos kw;  /* the keyword's first line (line 0: never written) */
};

/* The kernel-size axes, in their nesting order (ck2 varies fastest). */
enum { CQ, CK, CQ2, CK2, NAXES };
static const char *const axis_name[NAXES] = { "cq", "ck", "cq2", "ck2" };

struct parser {
	const char *name;
	int line;
	struct list seq, batch, dtype, op, axis[NAXES];
	struct mta_problem *probs;
	struct pos *probs_at;
	size_t nprobs, capprobs;
};

/* "name:line:col: message" as MTA_EFORMAT, at a given place. */
static int at_pos(struct parser *ps, struct pos where, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
static int at_pos(struct parser *ps, struct pos where, const char *fmt, ...)
{
	char what[768];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(what, sizeof what, fmt, ap);
	va_end(ap);
	return mta_fail(MTA_EFORMAT, "%s:%d:%zu: %s", ps->name, where.line, where.col, what);
}

/* The same at column col of the line being read. */
#define at(ps, col, ...) at_pos((ps), (struct pos){ (ps)->line, (col) }, __VA_ARGS__)

/* Tokens are quoted in messages up to this many bytes. */
#define Q(n) (int)((n) > 64 ? 64 : (n))

/* Append v unless present (lists keep first occurrences, in order). */
static int add(struct parser *ps, struct list *l, int64_t v, size_t col, const char *tok,
	       size_t len)
{
	if (!l->slot && !(l->slot = calloc(SLOTS, sizeof *l->slot)))
		return mta_fail(MTA_ENOMEM, "out of memory");
	size_t h = (size_t)((uint64_t)v * 0x9e3779b97f4a7c15u >> 40) & (SLOTS - 1);
	for (; l->slot[h]; h = (h + 1) & (SLOTS - 1))
		if (l->v[l->slot[h] - 1] == v)
			return MTA_OK;
	if (l->n == MTA_GRID_MAX_VALUES)
		return at(ps, col, "'%.*s' makes the list longer than %d values", Q(len), tok,
			  MTA_GRID_MAX_VALUES);
	if (l->n == l->cap) {
		size_t cap = l->cap ? 2 * l->cap : 16;
		int64_t *nv = realloc(l->v, cap * sizeof *nv);
		if (!nv)
			return mta_fail(MTA_ENOMEM, "out of memory");
		l->v = nv;
		struct pos *na = realloc(l->at, cap * sizeof *na);
		if (!na)
			return mta_fail(MTA_ENOMEM, "out of memory");
		l->at = na;
		l->cap = cap;
	}
	l->at[l->n] = (struct pos){ ps->line, col };
	l->v[l->n++] = v;
	l->slot[h] = (uint32_t)l->n;
	return MTA_OK;
}

static void list_free(struct list *l)
{
	free(l->v);
	free(l->at);
	free(l->slot);
}

/* A whole decimal number in 1..max at s[0..n); -1 if not. */
static int64_t number(const char *s, size_t n, int64_t max)
{
	int64_t v = 0;
	if (!n || n > 9)
		return -1;
	for (size_t i = 0; i < n; i++) {
		if (s[i] < '0' || s[i] > '9')
			return -1;
		v = 10 * v + (s[i] - '0');
	}
	return v >= 1 && v <= max ? v : -1;
}

static int bad_size(struct parser *ps, const char *kw, int64_t max, const char *t, size_t n,
		    size_t col)
{
	return at(ps, col, "expected a %s value: N, A..B, A..B+S or A..B*M with whole numbers "
		  "in 1..%lld, A <= B, S >= 1, M >= 2; got '%.*s'", kw, (long long)max, Q(n), t);
}

/* N, A..B, A..B+S or A..B*M with numbers in 1..max, appended to l. */
static int size_value(struct parser *ps, struct list *l, const char *kw, int64_t max,
		      const char *t, size_t n, size_t col)
{
	const char *dots = memmem(t, n, "..", 2);
	if (!dots) {
		int64_t v = number(t, n, max);
		return v < 0 ? bad_size(ps, kw, max, t, n, col) : add(ps, l, v, col, t, n);
	}
	const char *b = dots + 2, *end = t + n, *op = b;
	while (op < end && *op != '+' && *op != '*')
		op++;
	int64_t lo = number(t, (size_t)(dots - t), max), hi = number(b, (size_t)(op - b), max);
	int64_t step = 1;
	int mul = op < end && *op == '*';
	if (op < end) /* a step may exceed max: 1..9+100 is just 1 */
		step = number(op + 1, (size_t)(end - op - 1), MTA_GRID_MAX_SIZE);
	if (lo < 0 || hi < 0 || step < 0 || lo > hi || (mul && step < 2))
		return bad_size(ps, kw, max, t, n, col);
	for (int64_t v = lo; v <= hi; v = mul ? v * step : v + step) {
		int rc = add(ps, l, v, col, t, n);
		if (rc)
			return rc;
	}
	return MTA_OK;
}

static int problem_value(struct parser *ps, const char *t, size_t n, size_t col)
{
	char key[MTA_KEY_MAX];
	struct mta_problem p;
	if (n >= sizeof key)
		return at(ps, col, "problem key '%.*s...' is too long (expected at most %d "
			  "characters)", Q(n), t, MTA_KEY_MAX - 1);
	memcpy(key, t, n);
	key[n] = 0;
	if (mta_problem_from_key(key, &p))
		return at(ps, col, "'%s' is not a problem key: %s", key, mta_last_error());
	if (ps->nprobs == MTA_GRID_MAX_VALUES)
		return at(ps, col, "'%.*s' makes the problem list longer than %d keys", Q(n), t,
			  MTA_GRID_MAX_VALUES);
	if (ps->nprobs == ps->capprobs) {
		size_t cap = ps->capprobs ? 2 * ps->capprobs : 8;
		struct mta_problem *np = realloc(ps->probs, cap * sizeof *np);
		if (!np)
			return mta_fail(MTA_ENOMEM, "out of memory");
		ps->probs = np;
		struct pos *na = realloc(ps->probs_at, cap * sizeof *na);
		if (!na)
			return mta_fail(MTA_ENOMEM, "out of memory");
		ps->probs_at = na;
		ps->capprobs = cap;
	}
	ps->probs_at[ps->nprobs] = (struct pos){ ps->line, col };
	ps->probs[ps->nprobs++] = p;
	return MTA_OK;
}

static int dtype_value(struct parser *ps, const char *t, size_t n, size_t col)
{
	static const char *const names[] = { "f32", "bf16", "f16" };
	static const int types[] = { MTA_F32, MTA_BF16, MTA_F16 };
	for (size_t i = 0; i < 3; i++)
		if (strlen(names[i]) == n && !memcmp(names[i], t, n))
			return add(ps, &ps->dtype, types[i], col, t, n);
	return at(ps, col, "expected a dtype (f32, bf16 or f16), got '%.*s'", Q(n), t);
}

/* An operation: fwd, bwd or decode (MTA_OP_*, gen/variant.h). */
static int op_value(struct parser *ps, const char *t, size_t n, size_t col)
{
	for (int i = 0; i < MTA_OP_COUNT; i++)
		if (strlen(mta_op_name(i)) == n && !memcmp(mta_op_name(i), t, n))
			return add(ps, &ps->op, i, col, t, n);
	return at(ps, col, "expected an operation (fwd, bwd or decode), got '%.*s'", Q(n), t);
}

/* The keywords; a kernel axis k is AXIS + k. */
enum { NONE, PROBLEM, SEQ, BATCH, DTYPE, OP, AXIS };
static const char *const kw_name[] = { "", "problem", "seq", "batch", "dtype", "op",
				       "cq", "ck", "cq2", "ck2" };

/* One line (without its newline): keyword, then values. */
static int parse_line(struct parser *ps, const char *s, size_t len)
{
	int kw = NONE;
	size_t i = 0, kwcol = 0;
	int nvals = 0, rc;
	for (;;) {
		while (i < len && (s[i] == ' ' || s[i] == '\t' || s[i] == '\r'))
			i++;
		if (i == len || s[i] == '#')
			break;
		size_t start = i;
		while (i < len && s[i] != ' ' && s[i] != '\t' && s[i] != '\r' && s[i] != '#')
			i++;
		const char *t = s + start;
		size_t n = i - start, col = start + 1;
		if (kw == NONE) {
			kwcol = col;
			for (int k = PROBLEM; k < AXIS + NAXES && kw == NONE; k++)
				if (strlen(kw_name[k]) == n && !memcmp(t, kw_name[k], n))
					kw = k;
			if (kw == NONE)
				return at(ps, col, "'%.*s' is not a grid keyword (expected problem, "
					  "seq, batch, dtype, op, cq, ck, cq2 or ck2)", Q(n), t);
			if (kw >= AXIS && !ps->axis[kw - AXIS].kw.line)
				ps->axis[kw - AXIS].kw = (struct pos){ ps->line, col };
			continue;
		}
		nvals++;
		if (kw == PROBLEM)
			rc = problem_value(ps, t, n, col);
		else if (kw == DTYPE)
			rc = dtype_value(ps, t, n, col);
		else if (kw == OP)
			rc = op_value(ps, t, n, col);
		else if (kw >= AXIS)
			rc = size_value(ps, &ps->axis[kw - AXIS], kw_name[kw], MTA_MAX_KERNEL, t, n,
					col);
		else
			rc = size_value(ps, kw == SEQ ? &ps->seq : &ps->batch, kw_name[kw],
					MTA_GRID_MAX_SIZE, t, n, col);
		if (rc)
			return rc;
	}
	if (kw != NONE && !nvals)
		return at(ps, kwcol, "'%s' needs at least one value", kw_name[kw]);
	return MTA_OK;
}

/* The field of p that kernel axis a sets. */
static int *axis_field(struct mta_problem *p, int a)
{
	return a == CQ ? &p->cq : a == CK ? &p->ck : a == CQ2 ? &p->cq2 : &p->ck2;
}

/*
 * Check that every kernel size written fits base (the problem written at
 * where, its dtype applied): the kernel it resizes exists, and the problem
 * with that one size replaced is valid. A size is checked alone: validity
 * couples a kernel's sizes only with the padding, never with each other.
 */
static int check_axes(struct parser *ps, const struct mta_problem *base, struct pos where)
{
	static const char *const kernel[NAXES] = { "pre-softmax", "pre-softmax", "post-softmax",
						   "post-softmax" };
	static const char *const part[NAXES] = { "pre<cq>x<ck>", "pre<cq>x<ck>", "post<cq2>x<ck2>",
						 "post<cq2>x<ck2>" };
	char key[MTA_KEY_MAX], why[512];
	if (mta_problem_key(base, key, sizeof key))
		return mta_fail(MTA_EFORMAT, "%s:%d:%zu: %s", ps->name, where.line, where.col,
				mta_last_error());
	for (int a = 0; a < NAXES; a++) {
		const struct list *l = &ps->axis[a];
		if (!l->n)
			continue;
		if (!(a < CQ2 ? base->cq : base->cq2))
			return at_pos(ps, l->kw, "'%s' sets a size of the %s key-query kernel, but "
				      "problem '%s' (line %d) has no such kernel (expected problem "
				      "keys with a %s part)", axis_name[a], kernel[a], key,
				      where.line, part[a]);
		for (size_t i = 0; i < l->n; i++) {
			struct mta_problem q = *base;
			*axis_field(&q, a) = (int)l->v[i];
			if (mta_problem_validate(&q)) {
				snprintf(why, sizeof why, "%s", mta_last_error());
				return at_pos(ps, l->at[i], "%s %lld does not fit problem '%s' (line "
					      "%d): %s", axis_name[a], (long long)l->v[i], key,
					      where.line, why);
			}
		}
	}
	return MTA_OK;
}

/*
 * The distinct canonical keys of problems x dtypes x cq x ck x cq2 x ck2, in
 * that nesting order, each kernel axis that is not written keeping the
 * problem's own size. Two bases (problem, dtype) that agree once the sizes
 * the axes replace are masked give the same keys, and two that do not give
 * disjoint sets of keys; so repeats are dropped base by base and the number
 * of keys is known, and bounded, before any is made.
 */
static int make_keys(struct parser *ps, struct mta_grid *g)
{
	size_t nd = ps->dtype.n ? ps->dtype.n : 1, nb = ps->nprobs * nd, nuniq = 0, ncomb = 1;
	struct mta_problem *base = malloc(nb * sizeof *base);
	char (*masked)[MTA_KEY_MAX] = malloc(nb * sizeof *masked);
	int rc = MTA_OK;
	if (!base || !masked) {
		rc = mta_fail(MTA_ENOMEM, "out of memory");
		goto out;
	}
	for (int a = 0; a < NAXES; a++)
		ncomb *= ps->axis[a].n ? ps->axis[a].n : 1;
	for (size_t i = 0; i < nb; i++) {
		struct mta_problem p = ps->probs[i / nd], m;
		if (ps->dtype.n)
			p.dtype = (int)ps->dtype.v[i % nd];
		if ((rc = check_axes(ps, &p, ps->probs_at[i / nd])))
			goto out;
		m = p;
		for (int a = 0; a < NAXES; a++)
			if (ps->axis[a].n)
				*axis_field(&m, a) = 1;
		if ((rc = mta_problem_key(&m, masked[nuniq], sizeof masked[nuniq])))
			goto out;
		size_t k = 0;
		while (k < nuniq && strcmp(masked[k], masked[nuniq]))
			k++;
		if (k == nuniq)
			base[nuniq++] = p;
	}
	if (nuniq * ncomb > MTA_GRID_MAX_PROBLEMS) {
		rc = mta_fail(MTA_EFORMAT, "%s: the grid has %zu problems (keys x dtypes x kernel "
			      "sizes), more than the %d allowed", ps->name, nuniq * ncomb,
			      MTA_GRID_MAX_PROBLEMS);
		goto out;
	}
	if (!(g->keys = calloc(nuniq * ncomb, sizeof *g->keys))) {
		rc = mta_fail(MTA_ENOMEM, "out of memory");
		goto out;
	}
	for (size_t u = 0; u < nuniq; u++)
		for (size_t c = 0; c < ncomb; c++) {
			struct mta_problem p = base[u];
			for (int a = NAXES - 1, r = (int)c; a >= 0; a--) {
				const struct list *l = &ps->axis[a];
				if (!l->n)
					continue;
				*axis_field(&p, a) = (int)l->v[(size_t)r % l->n];
				r /= (int)l->n;
			}
			if ((rc = mta_problem_key(&p, g->keys[g->nkeys], sizeof g->keys[0])))
				goto out; /* not reached: each size was checked above */
			g->nkeys++;
		}
out:
	free(base);
	free(masked);
	return rc;
}

int mta_grid_parse(const char *text, size_t len, const char *name, struct mta_grid *g)
{
	struct parser ps;
	size_t pos = 0;
	int rc = MTA_OK;

	memset(&ps, 0, sizeof ps);
	ps.name = name ? name : "grid";
	memset(g, 0, sizeof *g);
	while (pos < len) {
		const char *nl = memchr(text + pos, '\n', len - pos);
		size_t n = nl ? (size_t)(nl - (text + pos)) : len - pos;
		ps.line++;
		const char *nul = memchr(text + pos, 0, n);
		if (nul) {
			rc = mta_fail(MTA_EFORMAT, "%s:%d:%zu: unexpected NUL byte (expected text)",
				      ps.name, ps.line, (size_t)(nul - (text + pos)) + 1);
			goto out;
		}
		if ((rc = parse_line(&ps, text + pos, n)))
			goto out;
		pos += n + 1;
	}
	ps.line++;
	if (!ps.nprobs || !ps.seq.n) {
		rc = mta_fail(MTA_EFORMAT, "%s:%d:1: end of the grid without a '%s' line (expected "
			      "at least one problem key and one sequence length)", ps.name, ps.line,
			      ps.nprobs ? "seq" : "problem");
		goto out;
	}
	if (!ps.batch.n && (rc = add(&ps, &ps.batch, 1, 1, "", 0)))
		goto out;
	if (!ps.op.n && (rc = add(&ps, &ps.op, MTA_OP_FWD, 1, "", 0)))
		goto out;
	if ((rc = make_keys(&ps, g)))
		goto out;
	const size_t total = g->nkeys * ps.op.n * ps.batch.n * ps.seq.n;
	if (total > MTA_GRID_MAX_ITEMS) {
		rc = mta_fail(MTA_EFORMAT, "%s: the grid has %zu items, more than the %d allowed",
			      ps.name, total, MTA_GRID_MAX_ITEMS);
		goto out;
	}
	if (!(g->items = malloc(total * sizeof *g->items))) {
		rc = mta_fail(MTA_ENOMEM, "out of memory");
		goto out;
	}
	for (size_t k = 0; k < g->nkeys; k++)
		for (size_t o = 0; o < ps.op.n; o++)
			for (size_t b = 0; b < ps.batch.n; b++)
				for (size_t t = 0; t < ps.seq.n; t++)
					g->items[g->n++] = (struct mta_grid_item){
						k, ps.seq.v[t], ps.batch.v[b], (int)ps.op.v[o] };
out:
	list_free(&ps.seq);
	list_free(&ps.batch);
	list_free(&ps.dtype);
	list_free(&ps.op);
	for (int a = 0; a < NAXES; a++)
		list_free(&ps.axis[a]);
	free(ps.probs);
	free(ps.probs_at);
	if (rc)
		mta_grid_free(g);
	return rc;
}

/*
 * The file is opened without blocking (a FIFO would wait for a writer) and
 * must be a regular file, checked on the open descriptor.
 */
int mta_grid_load(const char *path, struct mta_grid *g)
{
	struct stat st;
	memset(g, 0, sizeof *g);
	int fd = open(path, O_RDONLY | O_NONBLOCK | O_NOCTTY | O_CLOEXEC);
	if (fd < 0)
		return mta_fail(MTA_EIO, "cannot open grid file %s: %s", path, strerror(errno));
	if (fstat(fd, &st) || !S_ISREG(st.st_mode)) {
		close(fd);
		return mta_fail(MTA_EIO, "cannot read grid file %s: not a regular file", path);
	}
	FILE *f = fdopen(fd, "rb");
	if (!f) {
		close(fd);
		return mta_fail(MTA_ENOMEM, "cannot read grid file %s: %s", path, strerror(errno));
	}
	char *buf = NULL;
	size_t n = 0, cap = 0;
	int rc = MTA_OK;
	for (;;) {
		if (n == cap) {
			cap = cap ? 2 * cap : 4096;
			char *nb = cap > (64u << 20) ? NULL : realloc(buf, cap);
			if (!nb) {
				rc = mta_fail(MTA_EFORMAT, "grid file %s is larger than 64 MiB", path);
				break;
			}
			buf = nb;
		}
		size_t got = fread(buf + n, 1, cap - n, f);
		n += got;
		if (got == 0) {
			if (ferror(f))
				rc = mta_fail(MTA_EIO, "cannot read grid file %s", path);
			break;
		}
	}
	fclose(f);
	if (!rc)
		rc = mta_grid_parse(buf, n, path, g);
	free(buf);
	return rc;
}

void mta_grid_free(struct mta_grid *g)
{
	free(g->keys);
	free(g->items);
	memset(g, 0, sizeof *g);
}
