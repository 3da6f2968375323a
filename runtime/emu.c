/*
 * emu.c: build a generated CUDA kernel for the CPU emulator and launch it
 * (see emu.h). The emulator header is embedded in the library and prepended
 * to the source, so an installed mtatune needs no source tree.
 */
#include "emu.h"
#include "ccompile.h"
#include "cudagen.h"
#include "error.h"

#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

const char *mta_embedded(const char *path);

#define EMU_HEADER "templates/cuda_emu.h"
#define EMU_FLAGS "-O2 -std=c++17 -Wno-unknown-pragmas"

typedef int (*launch_fn)(const void *args, size_t args_size, const unsigned grid[3],
			 unsigned threads, size_t smem_bytes);

/* Emulator header + the generated source, with line numbers of the latter. */
static int emu_source(const char *cuda, char **out)
{
	const char *hdr = mta_embedded(EMU_HEADER);
	static const char mark[] = "\n#line 1 \"mta_generated.cu\"\n";
	if (!hdr)
		return mta_fail(MTA_ENOTFOUND, "%s is not embedded in this build", EMU_HEADER);
	size_t lh = strlen(hdr), lm = strlen(mark), lc = strlen(cuda);
	char *s = malloc(lh + lm + lc + 1);
	if (!s)
		return mta_fail(MTA_ENOMEM, "out of memory for the emulator source");
	memcpy(s, hdr, lh);
	memcpy(s + lh, mark, lm);
	memcpy(s + lh + lm, cuda, lc + 1);
	*out = s;
	return MTA_OK;
}

int mta_emu_run(const struct mta_problem *p, const struct mta_variant *var,
		const struct mta_tensor *q, const struct mta_tensor *k,
		const struct mta_tensor *v, const struct mta_weights *w,
		struct mta_tensor *o)
{
	struct mta_cuda_args args;
	struct mta_cuda_launch g;
	char *cuda = NULL, *src = NULL, *log = NULL, so[PATH_MAX];
	void *dl = NULL, *fn = NULL;
	int rc;

	if (var->backend != MTA_BACKEND_CUDA)
		return mta_fail(MTA_EINVAL, "the CUDA emulator runs cuda variants, not %s",
				mta_backend_name(var->backend));
	if ((rc = mta_variant_check(p, var)) ||
	    (rc = mta_cuda_args_fill(p, q, k, v, w, o, &args)) ||
	    (rc = mta_cuda_geometry(p, var, args.B, args.T, &g)))
		return mta_wrap(rc, "cuda-emu");
	if ((rc = mta_gen_cuda(p, var, &cuda)) || (rc = emu_source(cuda, &src)))
		goto out;
	if ((rc = mta_cc_build(src, MTA_LANG_CXX, EMU_FLAGS, so, sizeof so, &log))) {
		if (rc == MTA_ECOMPILE)
			rc = mta_fail(rc, "cuda-emu: the host compiler refused the kernel: %.600s",
				      log ? log : "(no log)");
		goto out;
	}
	if ((rc = mta_cc_open(so, "mta_emu_launch", &dl, &fn)))
		goto out;
	int r = ((launch_fn)fn)(&args, sizeof args, g.grid, g.block[0], g.smem_bytes);
	if (r)
		rc = mta_fail(MTA_EKERNEL, "cuda-emu launch failed: %s",
			      r == -1 ? "kernel argument layout differs from struct mta_cuda_args"
			      : r == -2 ? "dynamic shared memory size differs from the kernel's need"
					: "could not start the block's threads");
out:
	if (dl)
		mta_cc_close(dl);
	free(cuda);
	free(src);
	free(log);
	return rc;
}
