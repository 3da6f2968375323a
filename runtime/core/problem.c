/*
 * problem.c: the MTA problem description, its validation, and its canonical
 * text key.
 *
 * The key lists the parts in a fixed order, each a dash-separated token:
 *
 *   h<H>kv<Hkv>d<D>   heads, key/value heads, head size       (always)
 *   pre<cq>x<ck>      pre-softmax key-query kernel            (kq_pre)
 *   hpre              pre-softmax linear head mixing          (head_pre)
 *   post<cq2>x<ck2>   post-softmax key-query kernel           (kq_post)
 *   hc<c>             post-softmax head conv, groups of c     (head_post)
 *   hpost             post-softmax linear head mixing         (head_post_linear)
 *   both|left|right   pad_key                                 (always)
 *   gn | gnr          group norm | group norm + layer rescale
 *   gate              sigmoid output gate
 *   s<scale>          softmax scale when not 1/sqrt(D) (%.9g, round-trips)
 *   f32|bf16|f16      element type of q, k, v                 (always)
 *
 * e.g. h16kv16d96-pre6x11-hpre-post6x11-hc16-both-gn-gate-bf16. The parser
 * accepts the tokens in any order but each at most once; the formatter always
 * writes the canonical order, so key -> problem -> key is the identity on
 * canonical keys.
 */
#include "runtime/core/error.h"
#include "runtime/core/strbuf.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void mta_problem_init(struct mta_problem *p, int H, int Hkv, int D)
{
	memset(p, 0, sizeof *p);
	p->H = H;
	p->Hkv = Hkv;
	p->D = D;
	p->pad = MTA_PAD_BOTH;
	p->dtype = MTA_F32;
}

const char *mta_pad_name(int pad)
{
	switch (pad) {
	case MTA_PAD_BOTH: return "both";
	case MTA_PAD_LEFT: return "left";
	case MTA_PAD_RIGHT: return "right";
	}
	return "?";
}

int mta_pad_parse(const char *s, int *pad)
{
	for (int i = 0; i < 3; i++)
		if (!strcmp(s, mta_pad_name(i))) {
			*pad = i;
			return mta_done(MTA_OK);
		}
	return mta_fail(MTA_EINVAL, "unknown pad_key '%s' (expected both, left or right)", s);
}

int mta_pad_offset(int pad, int ck)
{
	switch (pad) {
	case MTA_PAD_LEFT: return ck - 1;
	case MTA_PAD_RIGHT: return 0;
	default: return (ck - 1) / 2;
	}
}

double mta_problem_scale(const struct mta_problem *p)
{
	return p->scale != 0.0f ? (double)p->scale : 1.0 / sqrt((double)p->D);
}

double mta_layer_rescale(int layer_id)
{
	return 1.0 - (0.8 - 0.6 * exp(-0.3 * (double)layer_id));
}

static int check_kernel(const char *what, int cq, int ck, int pad)
{
	if (cq == 0 && ck == 0)
		return MTA_OK;
	if (cq < 1 || ck < 1)
		return mta_fail(MTA_EINVAL, "%s kernel %dx%d: both sizes must be at least 1",
				what, cq, ck);
	if (cq > MTA_MAX_KERNEL || ck > MTA_MAX_KERNEL)
		return mta_fail(MTA_EINVAL, "%s kernel %dx%d: sizes above %d are not supported",
				what, cq, ck, MTA_MAX_KERNEL);
	if (pad == MTA_PAD_BOTH && ck % 2 == 0)
		return mta_fail(MTA_EINVAL,
				"%s kernel %dx%d: pad_key both needs an odd key size ck "
				"(use left or right padding for an even one)", what, cq, ck);
	return MTA_OK;
}

int mta_problem_validate(const struct mta_problem *p)
{
	int rc;
	if (p->H < 1 || p->Hkv < 1 || p->D < 1)
		return mta_fail(MTA_EINVAL, "H=%d, Hkv=%d, D=%d: all must be at least 1",
				p->H, p->Hkv, p->D);
	if (p->H > MTA_MAX_HEADS || p->D > MTA_MAX_HEAD_DIM)
		return mta_fail(MTA_EINVAL, "H=%d, D=%d: at most %d heads of size %d are supported",
				p->H, p->D, MTA_MAX_HEADS, MTA_MAX_HEAD_DIM);
	if (p->H % p->Hkv)
		return mta_fail(MTA_EINVAL, "H=%d is not a multiple of Hkv=%d", p->H, p->Hkv);
	if (p->pad < MTA_PAD_BOTH || p->pad > MTA_PAD_RIGHT)
		return mta_fail(MTA_EINVAL, "pad_key %d is not one of both, left, right", p->pad);
	if ((rc = check_kernel("pre-softmax key-query", p->cq, p->ck, p->pad)))
		return rc;
	if ((rc = check_kernel("post-softmax key-query", p->cq2, p->ck2, p->pad)))
		return rc;
	if (p->head_pre != 0 && p->head_pre != 1)
		return mta_fail(MTA_EINVAL, "head_pre must be 0 or 1, not %d", p->head_pre);
	switch (p->head_post) {
	case MTA_HPOST_NONE:
	case MTA_HPOST_LINEAR:
		if (p->hc != 0)
			return mta_fail(MTA_EINVAL, "head group size c=%d given without head_post "
					"convolution", p->hc);
		break;
	case MTA_HPOST_CONV:
		if (p->hc < 1)
			return mta_fail(MTA_EINVAL, "head_post group size c=%d must be at least 1", p->hc);
		if (p->H % p->hc)
			return mta_fail(MTA_EINVAL, "H=%d is not a multiple of the head_post group "
					"size c=%d", p->H, p->hc);
		break;
	default:
		return mta_fail(MTA_EINVAL, "head_post kind %d is not none, conv or linear",
				p->head_post);
	}
	if ((p->gn | p->gn_rescale | p->gate) & ~1)
		return mta_fail(MTA_EINVAL, "gn, gn_rescale and gate are flags (0 or 1)");
	if (p->gn_rescale && !p->gn)
		return mta_fail(MTA_EINVAL, "the layer rescale applies to the group norm: "
				"gn_rescale needs gn");
	if (!isfinite(p->scale) || p->scale < 0.0f)
		return mta_fail(MTA_EINVAL, "scale %g must be finite and positive (0 = 1/sqrt(D))",
				(double)p->scale);
	/* Near or below 1e-4 the key would print the scale with a '-' exponent, which
	 * the key cannot carry (found by fuzzing: tests/fuzz/crashes/key/). */
	if (p->scale != 0.0f && (p->scale < 1e-3f || p->scale > 1e4f))
		return mta_fail(MTA_EINVAL, "scale %g is out of the supported range 1e-3 .. 1e4",
				(double)p->scale);
	if (p->dtype != MTA_F32 && p->dtype != MTA_BF16 && p->dtype != MTA_F16)
		return mta_fail(MTA_EINVAL, "element type %d is not f32, bf16 or f16", p->dtype);
	return mta_done(MTA_OK);
}

int mta_problem_key(const struct mta_problem *p, char *buf, size_t n)
{
	int rc = mta_problem_validate(p);
	if (rc)
		return rc;
	char tmp[MTA_KEY_MAX * 2];
	int len = snprintf(tmp, sizeof tmp, "h%dkv%dd%d", p->H, p->Hkv, p->D);
#define ADD(...) len += snprintf(tmp + len, sizeof tmp - (size_t)len, __VA_ARGS__)
	if (p->cq)
		ADD("-pre%dx%d", p->cq, p->ck);
	if (p->head_pre)
		ADD("-hpre");
	if (p->cq2)
		ADD("-post%dx%d", p->cq2, p->ck2);
	if (p->head_post == MTA_HPOST_CONV)
		ADD("-hc%d", p->hc);
	else if (p->head_post == MTA_HPOST_LINEAR)
		ADD("-hpost");
	ADD("-%s", mta_pad_name(p->pad));
	if (p->gn)
		ADD(p->gn_rescale ? "-gnr" : "-gn");
	if (p->gate)
		ADD("-gate");
	if (p->scale != 0.0f)
		ADD("-s%.9g", (double)p->scale);
	ADD("-%s", mta_dtype_name(p->dtype));
#undef ADD
	if ((size_t)len + 1 > n)
		return mta_fail(MTA_EINVAL, "problem key needs %d bytes, buffer holds %zu",
				len + 1, n);
	memcpy(buf, tmp, (size_t)len + 1);
	return mta_done(MTA_OK);
}

/* Parse a decimal int in [0, 1000000] at *s, advancing *s; -1 on error. */
static int num(const char **s)
{
	const char *c = *s;
	long v = 0;
	if (*c < '0' || *c > '9')
		return -1;
	while (*c >= '0' && *c <= '9') {
		v = v * 10 + (*c - '0');
		if (v > 1000000)
			return -1;
		c++;
	}
	*s = c;
	return (int)v;
}

/* "pre6x11" style: after the prefix, <a>x<b> and nothing else. */
static int pair(const char *s, int *a, int *b)
{
	if ((*a = num(&s)) < 0 || *s++ != 'x' || (*b = num(&s)) < 0 || *s)
		return -1;
	return 0;
}

static int token(const char *t, struct mta_problem *p, unsigned *seen, const char *key)
{
	enum { HEADS = 1, PRE = 2, HPRE = 4, POST = 8, HPOST = 16, PAD = 32, GN = 64,
	       GATE = 128, SCALE = 256, DTYPE = 512 };
	unsigned bit;
	const char *s = t;
	int pad, dtype;

	if (t[0] == 'h' && t[1] >= '0' && t[1] <= '9') {
		bit = HEADS;
		s = t + 1;
		if ((p->H = num(&s)) < 0 || strncmp(s, "kv", 2) || (s += 2, (p->Hkv = num(&s)) < 0) ||
		    *s++ != 'd' || (p->D = num(&s)) < 0 || *s)
			goto bad;
	} else if (!strncmp(t, "pre", 3)) {
		bit = PRE;
		if (pair(t + 3, &p->cq, &p->ck))
			goto bad;
	} else if (!strcmp(t, "hpre")) {
		bit = HPRE;
		p->head_pre = 1;
	} else if (!strncmp(t, "post", 4)) {
		bit = POST;
		if (pair(t + 4, &p->cq2, &p->ck2))
			goto bad;
	} else if (!strncmp(t, "hc", 2)) {
		bit = HPOST;
		s = t + 2;
		p->head_post = MTA_HPOST_CONV;
		if ((p->hc = num(&s)) < 0 || *s)
			goto bad;
	} else if (!strcmp(t, "hpost")) {
		bit = HPOST;
		p->head_post = MTA_HPOST_LINEAR;
	} else if (!strcmp(t, "gn") || !strcmp(t, "gnr")) {
		bit = GN;
		p->gn = 1;
		p->gn_rescale = t[2] == 'r';
	} else if (!strcmp(t, "gate")) {
		bit = GATE;
		p->gate = 1;
	} else if (t[0] == 's' && ((t[1] >= '0' && t[1] <= '9') || t[1] == '.')) {
		char *end;
		bit = SCALE;
		errno = 0;
		double v = strtod(t + 1, &end);
		if (*end || errno || !(v > 0) || v > 1e30)
			return mta_fail(MTA_EINVAL, "problem key '%s': scale '%s' is not a positive "
					"number", key, t + 1);
		p->scale = (float)v;
	} else if (mta_pad_parse(t, &pad) == MTA_OK) {
		bit = PAD;
		p->pad = pad;
	} else if (mta_dtype_parse(t, &dtype) == MTA_OK) {
		bit = DTYPE;
		p->dtype = dtype;
	} else {
		return mta_fail(MTA_EINVAL,
				"problem key '%s': unknown part '%s' (expected h<H>kv<Hkv>d<D>, "
				"pre<cq>x<ck>, hpre, post<cq>x<ck>, hc<c>, hpost, both|left|right, "
				"gn|gnr, gate, s<scale>, f32|bf16|f16)", key, t);
	}
	if (*seen & bit)
		return mta_fail(MTA_EINVAL, "problem key '%s': part '%s' repeats an earlier one",
				key, t);
	*seen |= bit;
	return MTA_OK;
bad:
	return mta_fail(MTA_EINVAL, "problem key '%s': malformed part '%s'", key, t);
}

int mta_problem_from_key(const char *key, struct mta_problem *out)
{
	struct mta_problem p;
	char buf[MTA_KEY_MAX * 2];
	unsigned seen = 0;
	int rc;

	if (!key || !*key)
		return mta_fail(MTA_EINVAL, "empty problem key");
	if (strlen(key) >= sizeof buf)
		return mta_fail(MTA_EINVAL, "problem key is %zu characters long; at most %zu are "
				"allowed", strlen(key), sizeof buf - 1);
	if (!mta_is_printable(key, strlen(key))) {
		char shown[MTA_KEY_MAX * 4];
		return mta_fail(MTA_EINVAL, "problem key '%s' holds a byte that is not printable",
				mta_escape_str(key, shown, sizeof shown));
	}
	strcpy(buf, key);
	mta_problem_init(&p, 0, 0, 0);
	for (char *save = NULL, *t = strtok_r(buf, "-", &save); t; t = strtok_r(NULL, "-", &save))
		if ((rc = token(t, &p, &seen, key)))
			return rc;
	if (!(seen & 1))
		return mta_fail(MTA_EINVAL, "problem key '%s' lacks the h<H>kv<Hkv>d<D> part", key);
	for (const char *c = key; *c; c++)
		if (c[0] == '-' && (c[1] == '-' || c[1] == 0))
			return mta_fail(MTA_EINVAL, "problem key '%s' has an empty part", key);
	if (key[0] == '-')
		return mta_fail(MTA_EINVAL, "problem key '%s' has an empty part", key);
	if ((rc = mta_problem_validate(&p)))
		return mta_wrap(rc, "problem key '%s'", key);
	*out = p;
	return mta_done(MTA_OK);
}
