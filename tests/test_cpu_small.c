/*
 * test_cpu_small.c: v2's path for short sequences (templates/mta_cpu2.c,
 * small()): a sequence of T <= min(vec, bq) rows runs as one block whose
 * rows are one vector each, without the chunks and rings of the general
 * path. Every option, each vector width, T from 1 to the limit, batches,
 * strides, half inputs and threads, against the float64 reference (relative
 * L2 and every element, mt_kernel_check); and T one past the limit, where
 * the general path runs.
 */
#include "tests/harness.h"
#include "tests/cpu_util.h"

#define DEF "h4kv4d32-pre3x5-hpre-post3x5-hc4-both-gn-gate-f32"
#define V16 "cpu:v2,bq=16,bk=256,hpb=0,vec=16"

/* The default problem at every T the path takes at vec=16, and the first it does not. */
TEST(cpu_small_every_length)
{
	for (int T = 1; T <= 17; T++) {
		const struct mt_kcase c = { DEF, V16, 1 + T % 2, T, T % 3 == 0, T % 4 == 0 ? 2 : 0 };
		mt_cpu_cases(&c, 1);
	}
}

/* Every option alone and together, each vector width at its limit and below. */
TEST(cpu_small_options)
{
	static const struct mt_kcase c[] = {
		/* everything, GQA, odd D, custom scale, right pad */
		{ "h4kv2d13-pre3x5-post2x3-hc2-right-gn-gate-s0.3-f32",
		  "cpu:v2,bq=16,bk=32,hpb=0,vec=16", 2, 16, 1, 2 },
		{ "h4kv2d13-pre3x5-post2x3-hc2-right-gn-gate-s0.3-f32",
		  "cpu:v2,bq=8,bk=16,hpb=2,vec=8", 2, 8, 0, 0 },
		{ "h4kv2d13-pre3x5-post2x3-hc2-right-gn-gate-s0.3-f32",
		  "cpu:v2,bq=5,bk=16,hpb=2,vec=4", 3, 4, 0, 0 },
		/* head mixing before and after (linear), group norm with rescale */
		{ "h3kv3d6-pre2x3-hpre-post3x3-hpost-both-gnr-f32",
		  "cpu:v2,bq=8,bk=16,hpb=0,vec=8", 2, 7, 1, 0 },
		/* head_pre alone: the Z rows without their convolution */
		{ "h2kv2d8-hpre-both-f32", "cpu:v2,bq=16,bk=16,hpb=0,vec=16", 2, 11, 0, 2 },
		/* plain attention: no step before or after the softmax, scores straight into the band */
		{ "h2kv2d8-both-f32", "cpu:v2,bq=16,bk=16,hpb=1,vec=16", 3, 16, 0, 3 },
		{ "h2kv2d8-both-f32", "cpu:v2,bq=16,bk=16,hpb=1,vec=4", 1, 3, 1, 0 },
		/* kernels wider and taller than T, left and right pads */
		{ "h2kv1d6-pre5x7-post4x5-left-f32", "cpu:v2,bq=16,bk=16,hpb=1,vec=16", 2, 5, 1, 2 },
		{ "h4kv4d16-pre6x11-hpre-post6x11-hc4-both-gn-gate-f32",
		  "cpu:v2,bq=16,bk=32,hpb=0,vec=16", 1, 13, 0, 0 },
		/* post-softmax steps alone, gate alone */
		{ "h2kv2d16-post4x7-both-f32", "cpu:v2,bq=8,bk=16,hpb=1,vec=8", 2, 8, 0, 0 },
		{ "h4kv4d8-post2x3-hpost-both-f32", "cpu:v2,bq=16,bk=16,hpb=0,vec=16", 1, 9, 0, 0 },
		{ "h1kv1d1-post2x2-right-gate-f32", "cpu:v2,hpb=0,bq=4,bk=16,vec=4", 2, 4, 1, 0 },
		{ "h3kv1d5-pre2x3-left-gate-f32", "cpu:v2,bq=4,bk=16,hpb=1,vec=16", 2, 4, 0, 0 },
		/* logits of +-100: one row's exps span the whole float range */
		{ "h2kv2d8-post2x3-hpost-both-s40-f32", "cpu:v2,bq=16,bk=16,hpb=0,vec=16", 1, 16, 0, 0 },
		/* half inputs */
		{ "h4kv4d16-pre3x3-hpre-post3x5-hpost-both-gn-gate-bf16",
		  "cpu:v2,bq=16,bk=16,hpb=0,vec=16", 2, 12, 0, 0 },
		{ "h4kv2d8-pre2x3-hc4-left-gnr-f16", "cpu:v2,bq=8,bk=16,hpb=0,vec=8", 2, 6, 1, 2 },
	};
	mt_cpu_cases(c, (int)(sizeof c / sizeof c[0]));
}
