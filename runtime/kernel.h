/*
 * kernel.h: the C kernel ABI. A generated CPU kernel is a shared object that
 * exports two symbols:
 *
 *   int mta_cpu_kernel(const struct mta_kargs *a);   the forward; 0 or MTA_KERR_*
 *   const struct mta_kinfo mta_cpu_info;             ABI, dtype, workspace size
 *
 * The argument layout has one definition, templates/mta_kargs.h, which the
 * generator also pastes into each kernel source. A loader must compare
 * mta_cpu_info.abi with MTA_KARGS_ABI and args_size with sizeof(struct
 * mta_kargs) before calling the kernel.
 */
#ifndef MTA_KERNEL_H
#define MTA_KERNEL_H

#include "mta_kargs.h"

#define MTA_CPU_ENTRY "mta_cpu_kernel"
#define MTA_CPU_INFO "mta_cpu_info"

typedef int (*mta_cpu_entry_fn)(const struct mta_kargs *a);

#endif
