/* hash.c: FNV-1a 64 content hash (see hash.h). */
#include "runtime/core/hash.h"

#include <stdint.h>
#include <stdio.h>

void mta_hash_hex(const void *data, size_t n, char out[17])
{
	uint64_t h = 0xcbf29ce484222325ULL;
	for (size_t i = 0; i < n; i++)
		h = (h ^ ((const unsigned char *)data)[i]) * 0x100000001b3ULL;
	snprintf(out, 17, "%016llx", (unsigned long long)h);
}
