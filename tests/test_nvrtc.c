/*
 * test_nvrtc.c: NVRTC compiles of the generated CUDA kernels. The machine
 * that runs `make test` has libnvrtc, so its absence is a failure here, not
 * a skip. Also: ptxas report parsing, pruning, and the error paths.
 */
#include "tests/harness.h"
#include "gen/cuda/cudagen.h"
#include "runtime/backend.h"
#include "runtime/cuda/nvrtc.h"
#include "tuner/model/model.h"

#include <stdlib.h>
#include <string.h>

static const char *space_keys[] = {
	"h16kv16d96-pre6x11-hpre-post6x11-hc16-both-gn-gate-bf16", /* the paper's */
	"h4kv2d64-pre3x5-post3x5-hc2-left-gnr-f16",
	"h2kv1d32-gate-f32",
	"h16kv16d128-pre6x11-hpre-post6x11-hc16-both-gn-gate-bf16", /* D=128: 128 accumulators */
};

/*
 * Every variant of the default space (v1, and v2 and v3 for bf16/f16
 * problems) compiles for sm_80 and sm_90 and spills nothing on either (the
 * GPU run, bench/gpu_run.sh, counts a pruned variant as a failure); the
 * default and every tensor-core variant fit sm_90's limits, and keep 16
 * registers of headroom under the cap of their block size, so that a
 * toolchain that allocates a few more does not push them into spills: a
 * kernel that takes more is compiled again held to cap - 16 (MTA_MAXNREG,
 * templates/mta_cuda.cu) and must spill nothing there (the compiler spends
 * registers it is free to take on scheduling; what it takes is not all it
 * needs).
 */
/*
 * The headroom rule for a compiled job of `threads` threads a block: one that
 * takes more than 16 registers under the cap (min(255, 65536 / threads)) is
 * compiled again held to cap - 16 (MTA_MAXNREG) and must spill nothing there.
 */
static void check_headroom(const char *key, const char *spec, const char *src,
			   const struct mta_nvrtc_job *job, int threads)
{
	int cap = 65536 / threads;
	cap = cap < 255 ? cap : 255;
	if (job->stats.registers <= cap - 16)
		return;
	char opt[48];
	snprintf(opt, sizeof opt, "-DMTA_MAXNREG=%d", cap - 16);
	struct mta_nvrtc_job h = { .source = src, .kernel = MTA_CUDA_KERNEL, .arch = job->arch,
				   .options = opt };
	CHECKF(mta_nvrtc_compile(&h) == MTA_OK, "%s %s with %s: %s", key, spec, opt, h.message);
	CHECKF(h.status == MTA_OK && h.stats.registers <= cap - 16 && h.stats.spill_stores == 0 &&
	       h.stats.spill_loads == 0 && h.stats.stack_bytes == 0,
	       "%s %s takes %d registers on %s, within 16 of the cap %d, and held to %d it takes "
	       "%d and spills %d/%d bytes", key, spec, job->stats.registers, job->arch, cap,
	       cap - 16, h.stats.registers, h.stats.spill_stores, h.stats.spill_loads);
	mta_nvrtc_job_free(&h);
}

/*
 * family: compile only variants of this family (0: all), the default with
 * its own; part of nparts: only the family's variants i with i % nparts ==
 * part (the default with part 0), so that a large space is several tests,
 * each well inside the runner's time limit on two busy cores.
 */
static void space_compiles_part(size_t pi, int family, size_t part, size_t nparts)
{
	static const char *arch[2] = { "sm_80", "sm_90" };
	int maj = 0, min = 0;
	REQUIRE(mta_nvrtc_version(&maj, &min) == MTA_OK || (mt_fail(__FILE__, __LINE__, "%s",
			mta_last_error()), 0));
	CHECK(maj >= 11);
	{
		struct mta_problem p;
		struct mta_variant *vs = NULL, def;
		size_t n = 0;
		REQUIRE(mta_problem_from_key(space_keys[pi], &p) == MTA_OK);
		REQUIRE(mta_variant_space(&p, MTA_BACKEND_CUDA, &vs, &n) == MTA_OK);
		REQUIRE(mta_variant_default(&p, MTA_BACKEND_CUDA, &def) == MTA_OK);
		CHECKF(n >= (p.D <= 96 ? 3u : 2u), "%s: only %zu variants in the default space",
		       space_keys[pi], n);
		/* the default first, then every other variant of the space */
		size_t nv = 0, ntc = 0, algo1 = 0, n3 = 0;
		for (size_t i = 0; i < n; i++) {
			if (!memcmp(&vs[i], &def, sizeof def))
				continue;
			ntc += vs[i].version == 2;
			n3 += vs[i].version == 3;
			algo1 += vs[i].version == 2 && vs[i].algo == 1;
			vs[nv++] = vs[i];
		}
		CHECKF(nv + 1 == n, "%s: the default is not in its own space", space_keys[pi]);
		n = nv;
		/* this test's share of the compiles: one family (and the default with v1) */
		size_t keep = 0, fam = 0;
		for (size_t i = 0; i < n; i++)
			if ((!family || vs[i].version == family) && fam++ % nparts == part)
				vs[keep++] = vs[i];
		const int with_def = (!family || family == def.version) && part == 0;
		/* v2 holds at most 96 accumulators: none at D=128 (v3 is its tensor-core family) */
		const int v2fits = p.D <= 96;
		CHECKF(p.dtype == MTA_F32 || !v2fits ? ntc == 0 : ntc >= 1u + (p.cq > 0),
		       "%s: %zu v2 variants in the space", space_keys[pi], ntc);
		CHECKF(p.dtype == MTA_F32 ? n3 == 0 : n3 + (def.version == 3) >= 1,
		       "%s: %zu v3 variants in the space", space_keys[pi], n3);
		CHECKF(p.dtype == MTA_F32 || !p.cq || !v2fits || algo1 > 0,
		       "%s: no folded (algo 1) variant in the space", space_keys[pi]);
		CHECKF(p.dtype == MTA_F32 ? def.version == 1 : def.version == 3,
		       "%s: the default is v%d", space_keys[pi], def.version);
		n = keep;
		/* the variants to compile: the default (with v1's share), then the family's */
		const struct mta_variant **list = calloc(n + 1, sizeof *list);
		size_t nl = 0;
		if (with_def)
			list[nl++] = &def;
		for (size_t i = 0; i < n; i++)
			if (memcmp(&vs[i], &def, sizeof def))
				list[nl++] = &vs[i];
		size_t nj = 2 * nl;
		struct mta_nvrtc_job *jobs = calloc(nj ? nj : 1, sizeof *jobs);
		char **src = calloc(nl ? nl : 1, sizeof *src);
		for (size_t i = 0; i < nl; i++) {
			REQUIRE(mta_gen_cuda(&p, list[i], &src[i]) == MTA_OK);
			for (int a = 0; a < 2; a++) {
				jobs[2 * i + a].source = src[i];
				jobs[2 * i + a].kernel = MTA_CUDA_KERNEL;
				jobs[2 * i + a].arch = arch[a];
			}
		}
		REQUIRE(mta_nvrtc_compile_batch(jobs, nj, 0) == MTA_OK);
		for (size_t j = 0; j < nj; j++) {
			const struct mta_variant *v = list[j / 2];
			char spec[MTA_SPEC_MAX];
			mta_variant_format(v, spec, sizeof spec);
			CHECKF(jobs[j].status == MTA_OK && jobs[j].cubin_size > 0, "%s %s %s: %s",
			       space_keys[pi], spec, jobs[j].arch, jobs[j].message);
			if (jobs[j].status != MTA_OK)
				goto next;
			CHECKF(jobs[j].stats.spill_stores == 0 && jobs[j].stats.spill_loads == 0 &&
			       jobs[j].stats.stack_bytes == 0, "%s %s spills on %s: %d/%d bytes",
			       space_keys[pi], spec, jobs[j].arch, jobs[j].stats.spill_stores,
			       jobs[j].stats.spill_loads);
			if ((v == &def || v->version >= 2) && !strcmp(jobs[j].arch, "sm_90")) {
				struct mta_cuda_launch g;
				REQUIRE(mta_cuda_geometry(&p, v, 1, 2048, &g) == MTA_OK);
				CHECKF(mta_nvrtc_prune(&jobs[j].stats, jobs[j].arch, (int)g.block[0],
						       g.smem_bytes) == MTA_OK,
				       "%s %s pruned: %s", space_keys[pi], spec, mta_last_error());
				if (v->version >= 2)
					check_headroom(space_keys[pi], spec, src[j / 2], &jobs[j],
						       (int)g.block[0]);
			}
		next:
			mta_nvrtc_job_free(&jobs[j]);
		}
		for (size_t i = 0; i < nl; i++)
			free(src[i]);
		free(src);
		free(jobs);
		free(list);
		free(vs);
	}
}

/*
 * One test per problem and family, so that each stays a few minutes of
 * compiles on two busy cores (the paper's v1 kernels take 15-30 s each).
 */
static void space_compiles(size_t pi, int family) { space_compiles_part(pi, family, 0, 1); }

TEST_COMPILE_BOUND(nvrtc_space_paper_v1) { space_compiles(0, 1); }
TEST_COMPILE_BOUND(nvrtc_space_paper_v2) { space_compiles(0, 2); }
TEST_COMPILE_BOUND(nvrtc_space_paper_v3) { space_compiles(0, 3); }
TEST_COMPILE_BOUND(nvrtc_space_f16_gqa_left_v1) { space_compiles(1, 1); }
TEST_COMPILE_BOUND(nvrtc_space_f16_gqa_left_v2) { space_compiles(1, 2); }
/* 135 s alone, near the runner's 300 s beside another test: two halves */
TEST_COMPILE_BOUND(nvrtc_space_f16_gqa_left_v3) { space_compiles_part(1, 3, 0, 2); }
TEST_COMPILE_BOUND(nvrtc_space_f16_gqa_left_v3_more) { space_compiles_part(1, 3, 1, 2); }
TEST(nvrtc_space_f32) { space_compiles(2, 0); }
TEST_COMPILE_BOUND(nvrtc_space_paper128_v3) { space_compiles(3, 3); }

/* The parser reads ptxas -v output as NVRTC 13 prints it. */
TEST(nvrtc_parse_stats)
{
	static const char log[] =
		"ptxas info    : 0 bytes gmem\n"
		"ptxas info    : Compiling entry function 'mta_fwd' for 'sm_90'\n"
		"ptxas info    : Function properties for mta_fwd\n"
		"ptxas         .     16 bytes stack frame, 8 bytes spill stores, 12 bytes spill loads\n"
		"ptxas info    : Used 72 registers, used 1 barriers, 1024 bytes smem\n";
	struct mta_nvrtc_stats st;
	REQUIRE(mta_nvrtc_parse_stats(log, "mta_fwd", &st) == MTA_OK);
	CHECK_EQ_INT(st.registers, 72);
	CHECK_EQ_INT(st.stack_bytes, 16);
	CHECK_EQ_INT(st.spill_stores, 8);
	CHECK_EQ_INT(st.spill_loads, 12);
	CHECK_EQ_INT(st.smem_bytes, 1024);
	CHECK(mta_nvrtc_prune(&st, "sm_90", 128, 0) == MTA_EUNSUPPORTED);
	CHECK_STR_CONTAINS(mta_last_error(), "spills");
	st.spill_stores = st.spill_loads = 0;
	CHECK(mta_nvrtc_prune(&st, "sm_90", 128, 0) == MTA_OK);
	CHECK(mta_nvrtc_prune(&st, "sm_90", 1024, 0) == MTA_EUNSUPPORTED);
	CHECK(mta_nvrtc_prune(&st, "sm_80", 128, 200 * 1024) == MTA_EUNSUPPORTED);
	CHECK_STR_CONTAINS(mta_last_error(), "shared memory");
	CHECK(mta_nvrtc_parse_stats(log, "other", &st) == MTA_EFORMAT);
}

/* A failed compile keeps its log; a bad arch is refused with a message. */
TEST(nvrtc_errors)
{
	struct mta_nvrtc_job j = { .source = "extern \"C\" __global__ void mta_fwd() { undefined_x = 1; }",
				   .kernel = "mta_fwd", .arch = "sm_90" };
	CHECK_EQ_INT(mta_nvrtc_compile(&j), MTA_ECOMPILE);
	CHECK_STR_CONTAINS(j.log, "undefined_x");
	CHECK_STR_CONTAINS(j.message, "undefined_x");
	mta_nvrtc_job_free(&j);
	struct mta_nvrtc_job b = { .source = "", .kernel = "k", .arch = "compute_90" };
	CHECK_EQ_INT(mta_nvrtc_compile(&b), MTA_EINVAL);
	CHECK_STR_CONTAINS(b.message, "sm_NN");
	mta_nvrtc_job_free(&b);
}

/* Without libnvrtc every call says so (ENODEV), naming what was tried. */
TEST(nvrtc_missing_library)
{
	int a, b;
	setenv("MTATUNE_NVRTC", "/nonexistent/libnvrtc.so", 1);
	CHECK_EQ_INT(mta_nvrtc_version(&a, &b), MTA_ENODEV);
	CHECK_STR_CONTAINS(mta_last_error(), "/nonexistent/libnvrtc.so");
	struct mta_nvrtc_job j = { .source = "", .kernel = "k", .arch = "sm_90" };
	CHECK_EQ_INT(mta_nvrtc_compile(&j), MTA_ENODEV);
	CHECK_EQ_INT(mta_nvrtc_compile_batch(&j, 1, 1), MTA_ENODEV);
}

/*
 * The CUDA decode kernel (templates/mta_cuda_decode.cu) compiles with NVRTC
 * for sm_80 and sm_90 and spills nothing, within the limits of its 128
 * threads: the emulator (which runs it in the tests) compiles it with g++,
 * which accepts what NVRTC may not.
 */
TEST(nvrtc_decode_kernel_compiles)
{
	static const char *arch[2] = { "sm_80", "sm_90" };
	static const char *keys[] = {
		"h16kv16d96-pre6x11-hpre-post6x11-hc16-both-gn-gate-bf16",
		"h4kv2d64-pre3x5-post3x5-hc2-left-gnr-f16",
		"h8kv2d128-pre6x11-post6x11-hpost-both-gn-gate-f32",
		"h2kv1d32-gate-f32",
	};
	const size_t nk = sizeof keys / sizeof keys[0];
	struct mta_nvrtc_job jobs[2 * 4];
	char *src[4] = { 0 };
	memset(jobs, 0, sizeof jobs);
	for (size_t i = 0; i < nk; i++) {
		struct mta_problem p;
		REQUIRE(mta_problem_from_key(keys[i], &p) == MTA_OK);
		REQUIRE(mta_gen_cuda_decode(&p, NULL, &src[i]) == MTA_OK);
		for (int a = 0; a < 2; a++)
			jobs[2 * i + a] = (struct mta_nvrtc_job){ .source = src[i],
				.kernel = MTA_CUDA_DECODE_KERNEL, .arch = arch[a] };
	}
	REQUIRE(mta_nvrtc_compile_batch(jobs, 2 * nk, 0) == MTA_OK);
	for (size_t j = 0; j < 2 * nk; j++) {
		CHECKF(jobs[j].status == MTA_OK && jobs[j].cubin_size > 0, "%s %s: %s",
		       keys[j / 2], jobs[j].arch, jobs[j].message);
		if (jobs[j].status == MTA_OK) {
			CHECKF(jobs[j].stats.spill_stores == 0 && jobs[j].stats.spill_loads == 0,
			       "%s spills on %s: %d/%d bytes", keys[j / 2], jobs[j].arch,
			       jobs[j].stats.spill_stores, jobs[j].stats.spill_loads);
			struct mta_problem p;
			unsigned threads = 0;
			size_t smem = 0;
			REQUIRE(mta_problem_from_key(keys[j / 2], &p) == MTA_OK);
			REQUIRE(mta_cuda_decode_dims(&p, NULL, &threads, &smem) == MTA_OK);
			CHECKF(mta_nvrtc_prune(&jobs[j].stats, jobs[j].arch, (int)threads,
					       smem) == MTA_OK, "%s on %s pruned: %s",
			       keys[j / 2], jobs[j].arch, mta_last_error());
		}
		mta_nvrtc_job_free(&jobs[j]);
	}
	for (size_t i = 0; i < nk; i++)
		free(src[i]);
}

/*
 * Every point of the CUDA decode space (gen/cuda/space.c: warps 2, 4, 8
 * and P.V chunks of 32, 128, 512 keys) compiles with NVRTC for sm_80 and
 * sm_90 with no spill and no stack frame on the paper's problem and a
 * float32 one with D=128, within the limits of its launch
 * (mta_cuda_decode_dims); the registers it takes stay under the space's
 * rule (DEC_REGS_NEED, 200), and 16 warps are refused by that rule.
 */
TEST_COMPILE_BOUND(nvrtc_decode_every_point_without_spills)
{
	static const char *arch[2] = { "sm_80", "sm_90" };
	static const char *keys[] = {
		"h16kv16d96-pre6x11-hpre-post6x11-hc16-both-gn-gate-bf16",
		"h8kv2d128-pre6x11-post6x11-hpost-both-gn-gate-f32",
	};
	struct mta_nvrtc_job jobs[2 * 2 * 16];
	struct mta_variant vs[2 * 16];
	char *src[2 * 16] = { 0 };
	size_t nj = 0, nsrc = 0;
	int maxreg = 0;
	memset(jobs, 0, sizeof jobs);
	for (size_t i = 0; i < 2; i++) {
		struct mta_problem p;
		struct mta_variant *all = NULL, v;
		size_t n = 0;
		REQUIRE(mta_problem_from_key(keys[i], &p) == MTA_OK);
		REQUIRE(mta_variant_space_op(&p, MTA_BACKEND_CUDA, MTA_OP_DECODE, &all, &n) == MTA_OK);
		CHECK_EQ_INT(n, 9);
		for (size_t j = 0; j < n && nsrc < 2 * 16; j++) {
			vs[nsrc] = all[j];
			REQUIRE(mta_gen_cuda_decode(&p, &all[j], &src[nsrc]) == MTA_OK);
			for (int a = 0; a < 2; a++)
				jobs[nj++] = (struct mta_nvrtc_job){ .source = src[nsrc],
					.kernel = MTA_CUDA_DECODE_KERNEL, .arch = arch[a] };
			nsrc++;
		}
		/* 16 warps: 128 registers a thread, fewer than the kernel takes */
		REQUIRE(mta_variant_default_op(&p, MTA_BACKEND_CUDA, MTA_OP_DECODE, &v) == MTA_OK);
		v.warps = 16;
		CHECK(mta_variant_check_op(&p, &v, MTA_OP_DECODE) == MTA_EINVAL);
		CHECK_STR_CONTAINS(mta_last_error(), "fewer than the kernel's 200");
		v.warps = 4;
		v.bk = 16;
		CHECK(mta_variant_check_op(&p, &v, MTA_OP_DECODE) == MTA_EINVAL);
		CHECK_STR_CONTAINS(mta_last_error(), "bk=16: a cuda decode P.V chunk has 32");
		free(all);
	}
	REQUIRE(mta_nvrtc_compile_batch(jobs, nj, 0) == MTA_OK);
	for (size_t j = 0; j < nj; j++) {
		const struct mta_nvrtc_job *x = &jobs[j];
		const struct mta_variant *v = &vs[j / 2];
		struct mta_problem p;
		unsigned threads = 0;
		size_t smem = 0;
		REQUIRE(mta_problem_from_key(keys[j / 2 >= 9], &p) == MTA_OK);
		CHECKF(x->status == MTA_OK && x->cubin_size > 0, "%s warps=%d bk=%d %s: %s",
		       keys[j / 2 >= 9], v->warps, v->bk, x->arch, x->message);
		if (x->status != MTA_OK)
			continue;
		REQUIRE(mta_cuda_decode_dims(&p, v, &threads, &smem) == MTA_OK);
		CHECK_EQ_INT(threads, 32 * v->warps);
		CHECKF(x->stats.spill_stores == 0 && x->stats.spill_loads == 0 &&
		       x->stats.stack_bytes == 0, "%s warps=%d bk=%d spills on %s: %d/%d bytes, "
		       "stack %d", keys[j / 2 >= 9], v->warps, v->bk, x->arch, x->stats.spill_stores,
		       x->stats.spill_loads, x->stats.stack_bytes);
		CHECKF(mta_nvrtc_prune(&x->stats, x->arch, (int)threads, smem) == MTA_OK,
		       "%s warps=%d bk=%d pruned on %s: %s", keys[j / 2 >= 9], v->warps, v->bk,
		       x->arch, mta_last_error());
		maxreg = x->stats.registers > maxreg ? x->stats.registers : maxreg;
	}
	CHECKF(maxreg > 0 && maxreg <= 200, "the decode kernel takes %d registers", maxreg);
	printf("  decode space: %zu compiles, at most %d registers a thread\n", nj, maxreg);
	for (size_t j = 0; j < nj; j++)
		mta_nvrtc_job_free(&jobs[j]);
	for (size_t i = 0; i < nsrc; i++)
		free(src[i]);
}

/*
 * The cluster variant of v3 (cs > 1: the paper's 16 heads on four blocks of
 * 4, 64 rows a tile) compiles for sm_90 without spills, declares its
 * cluster and has the cluster barrier in its SASS; for sm_80, which has no
 * clusters, it compiles to a kernel that traps, and the backend's pruning
 * refuses it there (and keeps it on sm_90), so the tuner never runs it.
 */
TEST_COMPILE_BOUND(nvrtc_v3_cluster)
{
	static const char *arch[2] = { "sm_80", "sm_90" };
	struct mta_problem p;
	struct mta_variant v;
	struct mta_nvrtc_job jobs[2];
	char *src = NULL, *sass = NULL, nvd[4096];
	REQUIRE(mta_problem_from_key("h16kv16d96-pre6x11-hpre-post6x11-hc16-both-gn-gate-bf16",
				     &p) == MTA_OK);
	REQUIRE(mta_variant_parse("cuda:v3,bq=64,bk=32,hpb=4,warps=8,cs=4", &v) == MTA_OK);
	REQUIRE(mta_gen_cuda(&p, &v, &src) == MTA_OK);
	memset(jobs, 0, sizeof jobs);
	for (int a = 0; a < 2; a++)
		jobs[a] = (struct mta_nvrtc_job){ .source = src, .kernel = MTA_CUDA_KERNEL,
						  .arch = arch[a] };
	REQUIRE(mta_nvrtc_compile_batch(jobs, 2, 0) == MTA_OK);
	for (int a = 0; a < 2; a++) {
		CHECKF(jobs[a].status == MTA_OK, "%s: %s", arch[a], jobs[a].message);
		if (jobs[a].status != MTA_OK)
			continue;
		CHECKF(jobs[a].stats.spill_stores == 0 && jobs[a].stats.spill_loads == 0 &&
		       jobs[a].stats.stack_bytes == 0, "spills on %s", arch[a]);
		struct mta_build b;
		memset(&b, 0, sizeof b);
		b.p = p;
		b.v = v;
		b.op = MTA_OP_FWD;
		b.stats = (struct mta_kstats){ jobs[a].stats.registers, 0, 0,
			(int)mta_cuda_smem_bytes(&p, &v) + jobs[a].stats.smem_bytes, 0 };
		struct mta_device_info info;
		memset(&info, 0, sizeof info);
		snprintf(info.arch, sizeof info.arch, "%s", arch[a]);
		int rc = mta_backend_cuda.prune(&info, &b);
		if (a == 0) {
			CHECK_EQ_INT(rc, MTA_EUNSUPPORTED);
			CHECK_STR_CONTAINS(mta_last_error(), "clusters of 4 blocks");
		} else {
			CHECKF(rc == MTA_OK, "pruned on sm_90: %s", mta_last_error());
		}
	}
	if (jobs[1].status == MTA_OK && mta_model_nvdisasm(nvd, sizeof nvd) == MTA_OK &&
	    mta_sass_disasm(nvd, jobs[1].cubin, jobs[1].cubin_size, &sass) == MTA_OK) {
		CHECK(strstr(sass, "UCGABAR_WAIT") != NULL);
		CHECK(strstr(sass, "HMMA") != NULL);
	} else {
		CHECKF(0, "no SASS of the sm_90 build: %s", mta_last_error());
	}
	free(sass);
	/* sm_80's build is the trap alone */
	CHECKF(jobs[0].status != MTA_OK || jobs[0].cubin_size < jobs[1].cubin_size / 4,
	       "sm_80 cubin %zu bytes, sm_90 %zu", jobs[0].cubin_size, jobs[1].cubin_size);
	for (int a = 0; a < 2; a++)
		mta_nvrtc_job_free(&jobs[a]);
	free(src);
}

/*
 * The clusters the tuner tries for 32 heads mixed before the softmax (four
 * blocks of 8: gen/cuda/space.c v3_tried), at D=96 and 128: each compiles
 * for sm_90 without spills and keeps 16 registers of headroom (held to cap -
 * 16 it spills nothing), as the spaces above; for sm_80 it compiles (to a
 * trap) and the backend prunes it there.
 */
TEST_COMPILE_BOUND(nvrtc_v3_cluster_32)
{
	static const char *keys[2] = { "h32kv32d96-pre6x11-hpre-post6x11-hc16-both-gn-gate-bf16",
				       "h32kv32d128-pre6x11-hpre-post6x11-hc16-both-gn-gate-bf16" };
	for (int k = 0; k < 2; k++) {
		struct mta_problem p;
		struct mta_variant *vs = NULL;
		size_t n = 0, tried = 0;
		REQUIRE(mta_problem_from_key(keys[k], &p) == MTA_OK);
		REQUIRE(mta_variant_space(&p, MTA_BACKEND_CUDA, &vs, &n) == MTA_OK);
		for (size_t i = 0; i < n; i++) {
			if (vs[i].cs < 2)
				continue;
			tried++;
			char spec[MTA_SPEC_MAX], *src = NULL;
			mta_variant_format(&vs[i], spec, sizeof spec);
			REQUIRE(mta_gen_cuda(&p, &vs[i], &src) == MTA_OK);
			struct mta_nvrtc_job j = { .source = src, .kernel = MTA_CUDA_KERNEL,
						   .arch = "sm_90" };
			CHECKF(mta_nvrtc_compile(&j) == MTA_OK && j.status == MTA_OK, "%s %s: %s",
			       keys[k], spec, j.message);
			if (j.status == MTA_OK) {
				struct mta_cuda_launch g;
				REQUIRE(mta_cuda_geometry(&p, &vs[i], 1, 2048, &g) == MTA_OK);
				CHECKF(j.stats.spill_stores == 0 && j.stats.spill_loads == 0 &&
				       j.stats.stack_bytes == 0, "%s %s spills", keys[k], spec);
				CHECKF(mta_nvrtc_prune(&j.stats, "sm_90", (int)g.block[0],
						       g.smem_bytes) == MTA_OK,
				       "%s %s pruned: %s", keys[k], spec, mta_last_error());
				check_headroom(keys[k], spec, src, &j, (int)g.block[0]);
			}
			mta_nvrtc_job_free(&j);
			/* no clusters on sm_80: the build is a trap alone, which the
			 * backend refuses there */
			struct mta_nvrtc_job j80 = { .source = src, .kernel = MTA_CUDA_KERNEL,
						     .arch = "sm_80" };
			CHECKF(mta_nvrtc_compile(&j80) == MTA_OK && j80.status == MTA_OK &&
			       j80.stats.spill_stores == 0 && j80.stats.stack_bytes == 0,
			       "%s %s on sm_80: %s", keys[k], spec, j80.message);
			mta_nvrtc_job_free(&j80);
			struct mta_build b;
			memset(&b, 0, sizeof b);
			b.p = p;
			b.v = vs[i];
			b.op = MTA_OP_FWD;
			struct mta_device_info info;
			memset(&info, 0, sizeof info);
			snprintf(info.arch, sizeof info.arch, "sm_80");
			CHECK_EQ_INT(mta_backend_cuda.prune(&info, &b), MTA_EUNSUPPORTED);
			free(src);
		}
		CHECKF(tried >= 1, "%s: no cluster tried", keys[k]);
		free(vs);
	}
}
