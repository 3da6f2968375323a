/*
 * cpu.h: generated C kernels for the CPU: generate, build (cached), load,
 * run. runtime/cpu/backend.c puts these behind struct mta_backend.
 *
 * The C kernel ABI: a generated CPU kernel is a shared object that exports
 * two symbols (it starts no threads and allocates nothing: it runs on the
 * pool in its arguments, runtime/core/pool.h),
 *
 *   int mta_cpu_kernel(const struct mta_kargs *a);   the forward; 0 or MTA_KERR_*
 *   const struct mta_kinfo mta_cpu_info;             ABI, dtype, workspace size
 *
 * with the argument layout of runtime/core/mta_kargs.h, which the generator
 * also pastes into each kernel source. The loader compares mta_cpu_info.abi
 * with MTA_KARGS_ABI and args_size with sizeof(struct mta_kargs) before
 * calling the kernel.
 */
#ifndef MTA_CPU_CPU_H
#define MTA_CPU_CPU_H

#include "gen/variant.h"
#include "runtime/core/mta_kargs.h"
#include "runtime/core/decode.h"

#define MTA_CPU_ENTRY "mta_cpu_kernel"
#define MTA_CPU_INFO "mta_cpu_info"

typedef int (*mta_cpu_entry_fn)(const struct mta_kargs *a);

/* Compiler flags of every CPU kernel (why: see cpu.c); exported libraries build with them too. */
#define MTA_CPU_CFLAGS "-std=gnu11 -O3 -march=native -fno-math-errno"

struct mta_cpu_kernel; /* a loaded kernel for one (problem, variant) */

/*
 * Generate, compile (through the cache of ccompile.h) and load the kernel.
 * On MTA_ECOMPILE the message holds the first lines of the compiler's log;
 * *log (if log is not NULL) receives all of it (malloc'd, caller frees).
 */
int mta_cpu_load_log(const struct mta_problem *p, const struct mta_variant *v,
		     struct mta_cpu_kernel **k, char **log);
int mta_cpu_load(const struct mta_problem *p, const struct mta_variant *v,
		 struct mta_cpu_kernel **k);

struct mta_pool; /* runtime/core/pool.h */

/*
 * Run the forward: q, k, v of the problem's dtype with a contiguous head
 * dimension, o float32 [B,T,H,D] (any strides, d contiguous). nthreads 0
 * takes the variant's choice (0 there: all cores). w may omit the weights the
 * problem does not use. The kernel runs on pool's threads and memory (the
 * device's; NULL: a pool made for this call, which costs the thread starts
 * and allocations a kept pool saves).
 */
int mta_cpu_run(struct mta_cpu_kernel *k, const struct mta_problem *p,
		const struct mta_tensor *q, const struct mta_tensor *kt,
		const struct mta_tensor *v, const struct mta_weights *w,
		struct mta_tensor *o, int nthreads, struct mta_pool *pool);

/*
 * The packed forward (mta.h, packed documents): q, k, v, o with B = 1 and
 * T = total_T, document d rows [cu_seqlens[d], cu_seqlens[d+1]). One kernel
 * call: the kernel takes the offsets.
 */
int mta_cpu_run_varlen(struct mta_cpu_kernel *k, const struct mta_problem *p,
		       const struct mta_tensor *q, const struct mta_tensor *kt,
		       const struct mta_tensor *v, const struct mta_weights *w,
		       const int64_t *cu_seqlens, int64_t ndocs, struct mta_tensor *o,
		       int nthreads, struct mta_pool *pool);

/* Bytes of workspace the kernel takes per thread at sequence length T (at most). */
long long mta_cpu_workspace(const struct mta_cpu_kernel *k, int64_t T);
/* Path of the kernel's shared object in the cache. */
const char *mta_cpu_path(const struct mta_cpu_kernel *k);

void mta_cpu_free(struct mta_cpu_kernel *k);

/*
 * The decode kernel of problem p and decode variant v (NULL: the default;
 * gen/cpu/cgen.c, mta_gen_c_decode): generated, built through the cache,
 * loaded, its ABI
 * (runtime/core/mta_dargs.h) checked. Its entry feeds
 * mta_cache_create_kernel (runtime/core/decode.h).
 */
struct mta_cpu_decode;
int mta_cpu_decode_load(const struct mta_problem *p, const struct mta_variant *v,
			struct mta_cpu_decode **k);
mta_decode_fn mta_cpu_decode_entry(const struct mta_cpu_decode *k);
void mta_cpu_decode_free(struct mta_cpu_decode *k);

#endif
