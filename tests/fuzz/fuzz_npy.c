/*
 * fuzz_npy.c: libFuzzer target for the .npy parser (mta_npy_parse).
 *
 * Any byte string must give MTA_OK or MTA_EFORMAT with a message, never a
 * crash, leak or sanitizer report. An accepted array must be self-consistent
 * (count = product of the shape, nbytes = count * element size) and survive
 * conversion to every float type, and writing it back and re-reading it must
 * give the same shape and bytes.
 */
#include "tuner/io/npy.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static char path[64];

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	snprintf(path, sizeof path, "/tmp/fuzz_npy.%d.npy", (int)getpid());
	return 0;
}

int LLVMFuzzerTestOneInput(const unsigned char *data, size_t n)
{
	struct mta_npy a, b;
	char shape[128];
	int rc = mta_npy_parse("fuzz.npy", data, n, &a);
	if (rc != MTA_OK) {
		if (rc != MTA_EFORMAT || !mta_last_error()[0])
			abort();
		mta_npy_free(&a);
		return 0;
	}
	size_t count = 1;
	for (int i = 0; i < a.ndim; i++)
		count *= (size_t)a.shape[i];
	if (count != a.count || a.nbytes != count * mta_dtype_size(a.dtype))
		abort();
	mta_npy_shape_str(a.ndim, a.shape, shape, sizeof shape);
	if (a.nbytes <= (1 << 16)) {
		if (mta_npy_write(path, a.dtype, a.ndim, a.shape, a.data) || mta_npy_read(path, &b))
			abort();
		if (b.ndim != a.ndim || b.dtype != a.dtype || b.nbytes != a.nbytes ||
		    memcmp(b.shape, a.shape, (size_t)a.ndim * sizeof *a.shape) ||
		    memcmp(b.data, a.data, a.nbytes))
			abort();
		mta_npy_free(&b);
		unlink(path);
	}
	static const int to[] = { MTA_F64, MTA_F32, MTA_BF16, MTA_F16 };
	for (size_t i = 0; i < sizeof to / sizeof to[0] && a.nbytes <= (1 << 16); i++)
		if (mta_npy_convert(&a, to[i]))
			abort();
	mta_npy_free(&a);
	return 0;
}
