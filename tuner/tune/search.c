/*
 * search.c: the screening strategies (see search.h).
 *
 * The model of the auto strategy is deliberately simple: log(time) as a sum
 * of one term per value of each tunable that varies in the space (and the
 * kernel family). Tile shapes, vector widths and head blocks interact, but
 * their main effects dominate on every space measured so far, and an
 * additive model needs only as many measurements as there are values to
 * start predicting; the measurements it then asks for are exactly where its
 * errors would matter (the predicted best), which corrects them.
 */
#include "tuner/tune/search.h"
#include "gen/gen.h"
#include "runtime/core/error.h"
#include "tuner/tune/tune.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#define MAX_FEATURES 128
#define RIDGE 0.05      /* pulls unseen or rarely seen values to the mean */
#define COVER 2        /* sightings of each tunable value before the model leads */
#define PROMISING 1.02  /* a prediction within 2% of the best measured is worth measuring */

enum { UNSEEN = 0, ASKED = 1, TOLD = 2 };

struct mta_search {
	int strategy;
	size_t n, budget, asked, told;
	struct mta_variant *v;
	unsigned char *state;   /* UNSEEN, ASKED, TOLD */
	double *y;              /* log(ms) when TOLD; NAN: failed */
	size_t *order;          /* exhaustive and random: the order to screen */
	size_t norder, next;
	/* auto: variant i's feature of tunable k is feat[i * nk + k] (an index < nf) */
	int nk, nf;
	int *feat;
	unsigned long long rng;
};

static unsigned long long rnd(unsigned long long *s)
{
	*s ^= *s << 13;
	*s ^= *s >> 7;
	*s ^= *s << 17;
	return *s;
}

/* Features: each varying tunable (and the family) of the space, one per value present. */
static int features(struct mta_search *s)
{
	const struct mta_gen_backend *g = mta_gen_backend(s->v[0].backend);
	size_t offs[32];
	int nt = 0;
	offs[nt++] = offsetof(struct mta_variant, version);
	for (const struct mta_tunable *t = g ? g->space->tunables : NULL; t && t->name && nt < 32; t++)
		offs[nt++] = t->offset;
	if (!(s->feat = calloc(s->n * (size_t)nt + 1, sizeof *s->feat)))
		return mta_fail(MTA_ENOMEM, "out of memory for the search");
	s->nk = 0;
	s->nf = 0;
	for (int k = 0; k < nt; k++) {
		int vals[MAX_FEATURES], nv = 0;
		for (size_t i = 0; i < s->n; i++) {
			int x = *(const int *)((const char *)&s->v[i] + offs[k]), j = 0;
			while (j < nv && vals[j] != x)
				j++;
			if (j == nv) {
				if (nv == MAX_FEATURES || s->nf + nv >= MAX_FEATURES)
					return mta_fail(MTA_EUNSUPPORTED, "the space has more than %d "
							"tunable values; the auto search models at most that",
							MAX_FEATURES);
				vals[nv++] = x;
			}
			s->feat[i * (size_t)nt + (size_t)s->nk] = s->nf + j;
		}
		if (nv > 1) { /* a tunable that never changes explains nothing */
			s->nf += nv;
			s->nk++;
		}
	}
	/* compact: rows were written with stride nt; re-pack to stride nk */
	for (size_t i = 0; i < s->n; i++)
		memmove(&s->feat[i * (size_t)s->nk], &s->feat[i * (size_t)nt],
			(size_t)s->nk * sizeof *s->feat);
	return MTA_OK;
}

int mta_search_new(int strategy, const struct mta_variant *vs, size_t n, size_t budget,
		   unsigned long long seed, const size_t *seeds, size_t nseeds,
		   struct mta_search **out)
{
	struct mta_search *s = calloc(1, sizeof *s);
	int rc = MTA_OK;
	*out = NULL;
	if (!s || !(s->v = malloc((n ? n : 1) * sizeof *s->v)) ||
	    !(s->state = calloc(n ? n : 1, 1)) || !(s->y = malloc((n ? n : 1) * sizeof *s->y)) ||
	    !(s->order = malloc((n + nseeds + 1) * sizeof *s->order))) {
		rc = mta_fail(MTA_ENOMEM, "out of memory for the search");
		goto out;
	}
	if (n)
		memcpy(s->v, vs, n * sizeof *vs);
	s->n = n;
	s->strategy = strategy;
	s->rng = seed | 1;
	for (size_t i = 0; i < nseeds; i++) /* the seeds first, each once */
		if (seeds[i] < n) {
			size_t j = 0;
			while (j < s->norder && s->order[j] != seeds[i])
				j++;
			if (j == s->norder)
				s->order[s->norder++] = seeds[i];
		}
	size_t nseed = s->norder;
	s->budget = mta_search_plan(strategy, n, budget);
	if (strategy == MTA_TUNE_AUTO && n) {
		if ((rc = features(s)))
			goto out;
	} else {
		for (size_t i = 0; i < n; i++) {
			size_t j = 0;
			while (j < nseed && s->order[j] != i)
				j++;
			if (j == nseed)
				s->order[s->norder++] = i;
		}
		if (strategy == MTA_TUNE_RANDOM) /* shuffle the rest, keep the seeds first */
			for (size_t i = s->norder; i > nseed + 1; i--) {
				size_t j = nseed + (size_t)(rnd(&s->rng) % (i - nseed)), t = s->order[i - 1];
				s->order[i - 1] = s->order[j];
				s->order[j] = t;
			}
	}
	*out = s;
	s = NULL;
out:
	mta_search_free(s);
	return rc;
}

void mta_search_free(struct mta_search *s)
{
	if (!s)
		return;
	free(s->v);
	free(s->state);
	free(s->y);
	free(s->order);
	free(s->feat);
	free(s);
}

size_t mta_search_screened(const struct mta_search *s)
{
	return s->told;
}

size_t mta_search_budget(const struct mta_search *s)
{
	return s->budget;
}

size_t mta_search_plan(int strategy, size_t n, size_t budget)
{
	if (!budget && strategy == MTA_TUNE_AUTO) {
		budget = n / 3; /* at most a third */
		if (budget < 8)
			budget = 8;
	}
	return budget && budget < n ? budget : n;
}

void mta_search_tell(struct mta_search *s, size_t i, double ms)
{
	if (i >= s->n || s->state[i] != ASKED)
		return;
	s->state[i] = TOLD;
	s->y[i] = isfinite(ms) && ms > 0 ? log(ms) : NAN;
	s->told++;
}

static void ask(struct mta_search *s, size_t i, size_t *idx, size_t *k)
{
	s->state[i] = ASKED;
	s->asked++;
	idx[(*k)++] = i;
}

/* Solve a x = b (n x n, row-major, overwritten) by Gaussian elimination with pivoting. */
static int solve(double *a, double *b, int n)
{
	for (int c = 0; c < n; c++) {
		int p = c;
		for (int r = c + 1; r < n; r++)
			if (fabs(a[r * n + c]) > fabs(a[p * n + c]))
				p = r;
		if (fabs(a[p * n + c]) < 1e-12)
			return -1;
		if (p != c) {
			for (int j = 0; j < n; j++) {
				double t = a[c * n + j];
				a[c * n + j] = a[p * n + j];
				a[p * n + j] = t;
			}
			double t = b[c];
			b[c] = b[p];
			b[p] = t;
		}
		for (int r = c + 1; r < n; r++) {
			double f = a[r * n + c] / a[c * n + c];
			for (int j = c; j < n; j++)
				a[r * n + j] -= f * a[c * n + j];
			b[r] -= f * b[c];
		}
	}
	for (int c = n - 1; c >= 0; c--) {
		for (int j = c + 1; j < n; j++)
			b[c] -= a[c * n + j] * b[j];
		b[c] /= a[c * n + c];
	}
	return 0;
}

/*
 * Fit the additive model to what was told (failures count as twice the
 * slowest time seen, so the model steers away from them) and predict every
 * variant into pred. -1 when nothing ran.
 */
static int fit(struct mta_search *s, double *pred)
{
	const int m = s->nf + 1;
	double worst = -INFINITY, *a = calloc((size_t)(m * m), sizeof *a), *b = calloc((size_t)m,
										      sizeof *b);
	int rc = -1, ok = 0;
	if (!a || !b)
		goto out;
	for (size_t i = 0; i < s->n; i++)
		if (s->state[i] == TOLD && isfinite(s->y[i])) {
			worst = fmax(worst, s->y[i]);
			ok++;
		}
	if (!ok)
		goto out;
	for (size_t i = 0; i < s->n; i++) {
		if (s->state[i] != TOLD)
			continue;
		double y = isfinite(s->y[i]) ? s->y[i] : worst + log(2.0);
		int cols[MAX_FEATURES + 1], nc = 0;
		cols[nc++] = 0; /* the intercept */
		for (int k = 0; k < s->nk; k++)
			cols[nc++] = 1 + s->feat[i * (size_t)s->nk + (size_t)k];
		for (int x = 0; x < nc; x++) {
			b[cols[x]] += y;
			for (int z = 0; z < nc; z++)
				a[cols[x] * m + cols[z]] += 1;
		}
	}
	for (int f = 1; f < m; f++)
		a[f * m + f] += RIDGE;
	if (solve(a, b, m))
		goto out;
	for (size_t i = 0; i < s->n; i++) {
		pred[i] = b[0];
		for (int k = 0; k < s->nk; k++)
			pred[i] += b[1 + s->feat[i * (size_t)s->nk + (size_t)k]];
	}
	rc = 0;
out:
	free(a);
	free(b);
	return rc;
}

/* The auto strategy's next variants. */
static size_t next_auto(struct mta_search *s, size_t *idx, size_t max)
{
	size_t k = 0;
	/* 1. the seeds */
	while (s->next < s->norder && k < max && s->asked < s->budget) {
		size_t i = s->order[s->next++];
		if (s->state[i] == UNSEEN)
			ask(s, i, idx, &k);
	}
	if (k)
		return k;
	/*
	 * 2. a covering design: every tunable value seen COVER times, the
	 * variants that add the most unseen values first (one sighting of a
	 * value leaves its effect confounded with its companions')
	 */
	unsigned char seen[MAX_FEATURES] = { 0 };
	for (size_t i = 0; i < s->n; i++)
		if (s->state[i] != UNSEEN)
			for (int f = 0; f < s->nk; f++)
				seen[s->feat[i * (size_t)s->nk + (size_t)f]]++;
	while (k < max && s->asked < s->budget) {
		size_t best = s->n;
		int bestnew = 0;
		for (size_t i = 0; i < s->n; i++) {
			int nw = 0;
			if (s->state[i] != UNSEEN)
				continue;
			for (int f = 0; f < s->nk; f++) {
				int c = seen[s->feat[i * (size_t)s->nk + (size_t)f]];
				nw += c < COVER ? 1 + (COVER - c) * s->nk : 0;
			}
			if (nw > bestnew) {
				best = i;
				bestnew = nw;
			}
		}
		if (best == s->n)
			break;
		for (int f = 0; f < s->nk; f++)
			seen[s->feat[best * (size_t)s->nk + (size_t)f]]++;
		ask(s, best, idx, &k);
	}
	if (k)
		return k;
	/* 3. what the model predicts fastest, while it looks promising */
	double *pred = malloc(s->n * sizeof *pred), best_y = INFINITY;
	if (!pred || fit(s, pred)) {
		free(pred);
		return 0;
	}
	for (size_t i = 0; i < s->n; i++)
		if (s->state[i] == TOLD && isfinite(s->y[i]) && s->y[i] < best_y)
			best_y = s->y[i];
	while (k < max && k < 2 && s->asked < s->budget) {
		size_t best = s->n;
		for (size_t i = 0; i < s->n; i++)
			if (s->state[i] == UNSEEN && (best == s->n || pred[i] < pred[best]))
				best = i;
		if (best == s->n || pred[best] > best_y + log(PROMISING))
			break;
		ask(s, best, idx, &k);
	}
	free(pred);
	return k;
}

size_t mta_search_next(struct mta_search *s, size_t *idx, size_t max)
{
	size_t k = 0;
	if (s->asked > s->told) /* answer first */
		return 0;
	if (s->strategy == MTA_TUNE_AUTO)
		return next_auto(s, idx, max);
	while (s->next < s->norder && k < max && s->asked < s->budget)
		ask(s, s->order[s->next++], idx, &k);
	return k;
}
