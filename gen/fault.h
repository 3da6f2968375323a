/*
 * fault.h: test-only fault injection in generated kernels.
 *
 * $MTATUNE_TEST_FAULT = KIND[@TEXT] makes the kernel of every variant whose
 * canonical spec contains TEXT (all when no @TEXT) misbehave: crash (a
 * segfault), hang (loops forever), wrong (one output element off by 1),
 * slow (right, but it sleeps for a third of its own run time after each
 * call), nomem (returns what a kernel returns when its workspace cannot be
 * allocated: the check fails with MTA_ENOMEM, a failure of the machine, not
 * of the kernel): CPU kernels only; syntax (the source does not compile: an
 * #error line): CPU and CUDA. The fault tests use it to check that the tuner
 * records such
 * variants and carries on; nothing else should set it.
 */
#ifndef MTA_GEN_FAULT_H
#define MTA_GEN_FAULT_H

enum { MTA_FAULT_CRASH = 1, MTA_FAULT_HANG, MTA_FAULT_WRONG, MTA_FAULT_SYNTAX, MTA_FAULT_SLOW,
       MTA_FAULT_NOMEM };

/* 0 (no fault for spec) or the MTA_FAULT_* kind. */
int mta_test_fault(const char *spec);

/* The line a generator appends to a source that must not compile. */
#define MTA_FAULT_SYNTAX_LINE "\n#error \"test-only fault injected by MTATUNE_TEST_FAULT\"\n"

#endif
