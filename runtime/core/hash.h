/*
 * hash.h: the content hash that names generated sources (kernel cache
 * entries, stored binaries, database variants). Core layer: used by the
 * compiler cache, the CUDA cubin store, the tuner and the exporter alike.
 */
#ifndef MTA_CORE_HASH_H
#define MTA_CORE_HASH_H

#include <stddef.h>

/* 64-bit content hash (FNV-1a 64 over bytes) as 16 hex digits into out[17]. */
void mta_hash_hex(const void *data, size_t n, char out[17]);

#endif
