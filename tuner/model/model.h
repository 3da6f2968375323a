/*
 * model.h: a static cost model of the generated CUDA kernels, for when no
 * GPU is at hand (docs/gpu/model.md states the method and its limits).
 *
 * NVRTC compiles the variant for an architecture (with -lineinfo); nvdisasm
 * disassembles the cubin with the source line and inline chain of every
 * instruction (sass.c); the templates mark their loops and branches with
 * `@model NAME` comments whose trip counts and fractions are formulas of the
 * problem, the variant and the block (regions.c); every instruction's count
 * per block is the product of the factors of the regions its chain lies in.
 * The counts by class (FP32, ALU, IMAD, MUFU, conversions, HMMA, shared and
 * global memory, shuffles, barriers), the registers and shared memory
 * (occupancy) and a machine's rates give each block's time on one
 * multiprocessor as the busiest of its pipes plus its barriers; the blocks
 * are dealt to the multiprocessors heaviest first; L2 and DRAM traffic bound
 * the total from below (model.c). The floor of the problem is printed beside.
 */
#ifndef MTA_MODEL_H
#define MTA_MODEL_H

#include "gen/variant.h"

#include <stdint.h>
#include <stdio.h>

/* Instruction classes, by the pipe or path that limits them. */
enum {
	MC_FP32,   /* FFMA FADD FMUL (and FMUL2 FFMA2 ...): the FP32 pipe */
	MC_IMAD,   /* IMAD, IMUL: half rate */
	MC_ALU,    /* integer and logic, compares, selects, min/max, moves */
	MC_MUFU,   /* exp2, rcp, rsqrt ...: the SFU */
	MC_CVT,    /* F2F F2I I2F F2FP: conversions */
	MC_HMMA,   /* mma.sync (count in m16n8k16 units) */
	MC_LDS,    /* shared loads, ldmatrix */
	MC_STS,    /* shared stores */
	MC_LDG,    /* global loads (LDG), cp.async (LDGSTS) */
	MC_STG,    /* global stores, reductions */
	MC_SHFL,   /* warp shuffles, votes */
	MC_BAR,    /* block barriers (and the cluster's: UCGABAR_WAIT) */
	MC_FENCE,  /* GPU- or system-scope fences (MEMBAR.GPU/SYS): a wait of an L2 round trip */
	MC_CTRL,   /* branches, convergence, uniform datapath, special registers */
	MC_N
};

const char *mta_model_class_name(int cls);

/* One SASS instruction as the model sees it. */
struct mta_sass_insn {
	int cls;          /* MC_* */
	int width;        /* memory: bytes per lane; HMMA: m16n8k16 units (0.5 for m16n8k8) x 2 */
	int lines[8];     /* the source line and its inline chain, innermost first */
	int nlines;
	int target;       /* index of a branch's target instruction, else -1 */
	int async;        /* a copy global -> shared (cp.async, bulk copies): L2 traffic */
	char op[24];      /* opcode with its first modifier, for listings */
};

struct mta_sass {
	struct mta_sass_insn *v;
	size_t n;
};

/*
 * The path of nvdisasm: $MTATUNE_NVDISASM, else PATH, /usr/local/cuda/bin,
 * and the Python virtual environments .venv/ of the working directory and of
 * the executable's parent folder (pip's nvidia-cuda-nvdisasm). MTA_ENODEV
 * with a message saying what was tried and how to get it.
 */
int mta_model_nvdisasm(char *path, size_t n);

/* Disassemble a cubin with nvdisasm -c -gi into *text (malloc'd). */
int mta_sass_disasm(const char *nvdisasm, const void *cubin, size_t n, char **text);

/* Parse nvdisasm -c -gi text (the kernel's own code; subroutines are left out). */
int mta_sass_parse(const char *text, struct mta_sass *s);
void mta_sass_free(struct mta_sass *s);

/* A machine's numbers: the model's one place for them. */
struct mta_machine {
	const char *name, *desc;
	int sms;
	double ghz;              /* SM clock under load */
	int smem_sm, smem_block; /* bytes */
	int regs_sm, warps_sm, blocks_sm;
	double rate[MC_N];       /* warp instructions per clock per SM (0: issue only) */
	double smem_bpc;         /* shared memory bytes per clock per SM */
	double l2_tbs, hbm_tbs;  /* TB/s */
	double bar_clk;          /* clocks a block waits at a barrier */
	double l2_lat_clk;       /* clocks from a copy's issue to its data in shared memory */
	double sm_l2_bpc;        /* bytes per clock one SM's copies can draw from L2 */
	double tc_tflops;        /* dense bf16 tensor peak (the floor), TFLOP/s */
	double eff;              /* fraction of the binding pipe a kernel reaches */
};

const struct mta_machine *mta_machine_find(const char *name);
/* "h100, h200" */
const char *mta_machine_names(void);

/* One row of the report: a group of instructions with the same regions. */
struct mta_model_row {
	char where[96];       /* innermost annotated region (or "once per block") */
	double count[MC_N];   /* warp instructions, whole grid */
	double statics;       /* static instructions */
	double smem;          /* bytes on the L1/shared path (LDS, STS, LDG), whole grid */
	double waves;         /* their wavefronts (clocks), whole grid */
};

struct mta_model_report {
	char key[MTA_KEY_MAX], spec[MTA_SPEC_MAX], arch[16];
	const struct mta_machine *m;
	int64_t B, T;
	int registers, spills, threads, blocks_sm, grid_blocks;
	size_t smem;
	double count[MC_N];   /* warp instructions, whole grid */
	double smem_bytes, l2_bytes, hmma_flops; /* smem_bytes: shared memory and L1 */
	double smem_waves;    /* their wavefronts (clocks of the L1/shared path), whole grid */
	double pipe_ms[MC_N]; /* each class's time at its rate over the whole chip */
	double issue_ms, bar_ms;
	double bound_ms;      /* LPT makespan of the blocks' pipe-bound times + barriers */
	double l2_ms, hbm_ms;
	double path_ms;       /* the staged phases' latency path (0: none), see model.c */
	double serial_ms;     /* of it: the staged phases' waits and lone warps */
	double estimate_ms;   /* max(max(bound, L2, HBM) / eff, path) */
	double floor_fp32_ms, floor_tc_ms, floor_exp_ms, floor_hbm_ms, floor_ms;
	double fma_per_elem;  /* issued FP32 FMA per causal (b, h, i, j), for the check */
	struct mta_model_row *rows;
	size_t nrows;
	char warnings[1024];
	size_t statics;
};

/*
 * Model variant v of p at (B, T) on machine (mta_machine_find) for arch:
 * NVRTC compile, disassemble with nvdisasm (path from mta_model_nvdisasm),
 * count, estimate. MTA_ENODEV without NVRTC or nvdisasm, MTA_EFORMAT when
 * the SASS or the annotations cannot be read, MTA_EINVAL for a bad variant.
 */
int mta_model_run(const struct mta_problem *p, const struct mta_variant *v, const char *arch,
		  const char *machine, int64_t B, int64_t T, const char *nvdisasm,
		  struct mta_model_report *r);

/*
 * The same from a cubin and its source (tests): registers and shared memory
 * as NVRTC reported them.
 */
int mta_model_count(const struct mta_problem *p, const struct mta_variant *v, const char *arch,
		    const char *machine, int64_t B, int64_t T, const char *source,
		    const char *sass_text, int registers, int spills, struct mta_model_report *r);

void mta_model_free(struct mta_model_report *r);

/* Print the report; rows: how many region rows (0: none). */
void mta_model_print(FILE *f, const struct mta_model_report *r, int rows);

/* The floor alone (no compile): fills the floor fields of r. */
void mta_model_floor(const struct mta_problem *p, const struct mta_machine *m, int64_t B,
		     int64_t T, struct mta_model_report *r);

/* ---- regions (regions.c) ---------------------------------------------------- */

/* A source region marked `@model NAME` (or `@model VAR=N`, setting VAR). */
struct mta_region {
	int start, end;  /* lines, inclusive */
	char name[24];
	char var[12];    /* set: variable name, value in val */
	int val;
};

/* Find the marks in source. MTA_EFORMAT for a mark whose region cannot be found. */
int mta_regions_parse(const char *source, struct mta_region **out, size_t *n);

/* What a block of the grid looks like to the factor formulas. */
struct mta_model_block {
	const struct mta_problem *p;
	const struct mta_variant *v;
	int64_t T;
	int i0;     /* first query row */
	int vars[6]; /* values of the @model VAR=N marks in the chain: pass, st, mix, cv, ways, rc */
};

/*
 * The factor of region name for a block: how many times the region's body
 * runs, per warp, each time its enclosing region runs. MTA_EINVAL for an
 * unknown name.
 */
int mta_region_factor(const char *name, const struct mta_model_block *b, double *f);

/*
 * The busiest warp's factor over the average (mta_region_factor) for a
 * region whose iterations are dealt to warps (1 for the rest): what the
 * latency path of a phase few warps work in needs (model.c).
 */
double mta_region_busiest(const char *name, const struct mta_model_block *b);

#endif
