/*
 * fuzz_grid.c: libFuzzer target for sweep grid files (mta_grid_parse).
 *
 * Any bytes are accepted or refused with MTA_EFORMAT and a message that
 * starts with the file's name, leaving the grid empty. An accepted grid is
 * a full product keys x ops x batches x seqs of canonical keys, operations
 * and sizes in range; written back as a grid file (its keys, ops, batches,
 * seqs) it parses to the same keys and the same numbered items (a fixed
 * point).
 */
#include "tuner/sweep/grid.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Check g's shape; the number of seqs, batches and ops through *ns, *nb, *no. */
static void check(const struct mta_grid *g, size_t *ns, size_t *nb, size_t *no)
{
	size_t s = 0, b = 0, o;
	if (!g->nkeys || !g->n || !g->keys || !g->items)
		abort();
	while (s < g->n && g->items[s].B == g->items[0].B && g->items[s].problem == 0 &&
	       g->items[s].op == g->items[0].op)
		s++;
	while (b * s < g->n && g->items[b * s].problem == 0 && g->items[b * s].op == g->items[0].op)
		b++;
	o = g->n / g->nkeys / (s * b);
	if (s * b * o * g->nkeys != g->n)
		abort();
	for (size_t i = 0; i < g->n; i++) {
		const struct mta_grid_item *it = &g->items[i];
		if (it->problem != i / (s * b * o) || it->T != g->items[i % s].T ||
		    it->B != g->items[i / s % b * s].B ||
		    it->op != g->items[i / (s * b) % o * s * b].op ||
		    (it->op < MTA_OP_FWD || it->op >= MTA_OP_COUNT) || it->T < 1 || it->B < 1 ||
		    it->T > MTA_GRID_MAX_SIZE || it->B > MTA_GRID_MAX_SIZE)
			abort();
	}
	for (size_t k = 0; k < g->nkeys; k++) {
		struct mta_problem p;
		char key[MTA_KEY_MAX];
		if (mta_problem_from_key(g->keys[k], &p) || mta_problem_key(&p, key, sizeof key) ||
		    strcmp(key, g->keys[k]))
			abort();
		for (size_t j = 0; j < k; j++)
			if (!strcmp(g->keys[j], g->keys[k]))
				abort();
	}
	*ns = s;
	*nb = b;
	*no = o;
}

/* g written back as grid text (malloc'd). */
static char *unparse(const struct mta_grid *g, size_t ns, size_t nb, size_t no, size_t *len)
{
	size_t cap = g->nkeys * (MTA_KEY_MAX + 1) + (ns + nb + no) * 10 + 64, n = 0;
	char *t = malloc(cap);
	if (!t)
		abort();
	n += (size_t)snprintf(t + n, cap - n, "problem");
	for (size_t k = 0; k < g->nkeys; k++)
		n += (size_t)snprintf(t + n, cap - n, " %s", g->keys[k]);
	n += (size_t)snprintf(t + n, cap - n, "\nseq");
	for (size_t i = 0; i < ns; i++)
		n += (size_t)snprintf(t + n, cap - n, " %lld", (long long)g->items[i].T);
	n += (size_t)snprintf(t + n, cap - n, "\nbatch");
	for (size_t i = 0; i < nb; i++)
		n += (size_t)snprintf(t + n, cap - n, " %lld", (long long)g->items[i * ns].B);
	n += (size_t)snprintf(t + n, cap - n, "\nop");
	for (size_t i = 0; i < no; i++)
		n += (size_t)snprintf(t + n, cap - n, " %s", mta_op_name(g->items[i * ns * nb].op));
	n += (size_t)snprintf(t + n, cap - n, "\n");
	if (n >= cap)
		abort();
	*len = n;
	return t;
}

int LLVMFuzzerTestOneInput(const unsigned char *data, size_t n)
{
	struct mta_grid g, h;
	size_t ns, nb, no, len;
	/* an exact-size copy, so that ASan sees any read past len */
	char *s = malloc(n ? n : 1);
	if (!s)
		return 0;
	memcpy(s, data, n);
	int rc = mta_grid_parse(s, n, "f.grid", &g);
	if (rc) {
		if (rc != MTA_EFORMAT && rc != MTA_ENOMEM)
			abort();
		if (strncmp(mta_last_error(), "f.grid:", 7) || g.keys || g.items || g.n || g.nkeys)
			abort();
		goto out;
	}
	check(&g, &ns, &nb, &no);
	char *t = unparse(&g, ns, nb, no, &len);
	if (mta_grid_parse(t, len, "back", &h) || h.nkeys != g.nkeys || h.n != g.n)
		abort();
	/* field by field: an item's padding (after op) is not part of its value */
	for (size_t i = 0; i < g.n; i++)
		if (h.items[i].problem != g.items[i].problem || h.items[i].T != g.items[i].T ||
		    h.items[i].B != g.items[i].B || h.items[i].op != g.items[i].op)
			abort();
	for (size_t k = 0; k < g.nkeys; k++)
		if (strcmp(h.keys[k], g.keys[k]))
			abort();
	mta_grid_free(&h);
	free(t);
	mta_grid_free(&g);
out:
	free(s);
	return 0;
}
