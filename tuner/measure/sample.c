/* sample.c: random inputs for a problem (see sample.h). */
#include "tuner/measure/sample.h"
#include "runtime/core/error.h"

#include <stdlib.h>
#include <string.h>

static double uni(unsigned long long *s)
{
	for (;;) {
		*s ^= *s >> 12;
		*s ^= *s << 25;
		*s ^= *s >> 27;
		double x = (double)((*s * 2685821657736338717ULL) >> 11) * (2.0 / 9007199254740992.0) - 1.0;
		if (x != 0.0)
			return x;
	}
}

/* n values of the dtype; weights are float32 scaled by amp. */
static void *fill(int dtype, size_t n, double amp, unsigned long long *st)
{
	void *m = malloc(n * mta_dtype_size(dtype) + 1);
	if (!m)
		return NULL;
	for (size_t i = 0; i < n; i++) {
		float f = (float)(amp * uni(st));
		if (dtype == MTA_F32)
			((float *)m)[i] = f;
		else if (dtype == MTA_BF16)
			((uint16_t *)m)[i] = mta_f32_to_bf16(f);
		else
			((uint16_t *)m)[i] = mta_f32_to_f16(f);
	}
	return m;
}

int mta_sample_make(const struct mta_problem *p, int64_t B, int64_t T, unsigned long long seed,
		    struct mta_sample *s)
{
	unsigned long long st = seed * 0x9E3779B97F4A7C15ULL + 1;
	size_t H = (size_t)p->H, D = (size_t)p->D, bt, nq, nk;
	int rc = mta_problem_validate(p);
	if (rc)
		return rc;
	/* q's element count, also the output's, must fit in bytes of doubles (the reference) */
	if (B < 1 || T < 1 || __builtin_mul_overflow((size_t)B, (size_t)T, &bt) ||
	    __builtin_mul_overflow(bt, H * D * sizeof(double), &nq))
		return mta_fail(MTA_ENOMEM, "inputs of B=%lld T=%lld H=%d D=%d are too large for "
				"this machine's address space", (long long)B, (long long)T, p->H, p->D);
	nq = bt * H * D;
	nk = bt * (size_t)p->Hkv * D;
	memset(s, 0, sizeof *s);
	s->B = B;
	s->T = T;
	s->mem[0] = fill(p->dtype, nq, 1.0, &st);
	s->mem[1] = fill(p->dtype, nk, 1.0, &st);
	s->mem[2] = fill(p->dtype, nk, 1.0, &st);
	/* Kernel weights scaled so that a 6x11 window keeps logits O(1). */
	s->mem[3] = fill(MTA_F32, H * (size_t)(p->cq * p->ck + 1), 1.0 / (1 + p->cq * p->ck) * 4, &st);
	s->mem[4] = fill(MTA_F32, H * H, 1.0 / (double)H * 2, &st);
	s->mem[5] = fill(MTA_F32, H * (size_t)(p->cq2 * p->ck2 + 1), 1.0 / (1 + p->cq2 * p->ck2) * 4, &st);
	s->mem[6] = fill(MTA_F32, H * H, 1.0, &st);
	s->mem[7] = fill(MTA_F32, H * H, 1.0 / (double)H * 2, &st);
	s->mem[8] = fill(MTA_F32, D, 1.0, &st);
	s->mem[9] = fill(MTA_F32, D, 1.0, &st);
	for (int i = 0; i < 10; i++)
		if (!s->mem[i]) {
			mta_sample_free(s);
			return mta_fail(MTA_ENOMEM, "out of memory for inputs B=%lld T=%lld",
					(long long)B, (long long)T);
		}
	mta_tensor_init(&s->q, s->mem[0], p->dtype, B, T, p->H, p->D);
	mta_tensor_init(&s->k, s->mem[1], p->dtype, B, T, p->Hkv, p->D);
	mta_tensor_init(&s->v, s->mem[2], p->dtype, B, T, p->Hkv, p->D);
	s->w.kq_pre = s->mem[3];
	s->w.head_pre = s->mem[4];
	s->w.kq_post = s->mem[5];
	s->w.head_post = s->mem[6];
	s->w.head_post_linear = s->mem[7];
	s->w.gn_weight = s->mem[8];
	s->w.gate_w = s->mem[9];
	s->w.gate_b = (float)uni(&st);
	s->w.layer_id = 1 + (int)(st % 11);
	return MTA_OK;
}

void mta_sample_free(struct mta_sample *s)
{
	for (int i = 0; i < 10; i++) {
		free(s->mem[i]);
		s->mem[i] = NULL;
	}
}
