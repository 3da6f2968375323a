/*
 * ccompile.h: build generated source with the system compiler into a shared
 * object, cached by content, and load it.
 *
 * The cache lives in $MTATUNE_CACHE, else ~/.cache/mtatune/kernels (never a
 * shared folder: without HOME, MTATUNE_CACHE is required). It is made 0700,
 * and an existing folder is refused (MTA_EIO, saying what to do) unless this
 * user owns it and neither group nor others can write it. An entry's name is
 * a hash of the source, the language, the flags and the compiler's identity
 * (its --version text), so a changed compiler never reuses a stale object.
 * Each library's length and content hash are recorded beside it and checked
 * before it is returned or loaded: a damaged, empty or replaced one is built
 * again, never dlopened. Builds run in a private folder and are renamed into
 * place, so concurrent builders of the same source are safe, and a killed
 * build's leftovers are swept by the next one (details in ccompile.c).
 */
#ifndef MTA_CCOMPILE_H
#define MTA_CCOMPILE_H

#include <stddef.h>

enum { MTA_LANG_C = 0, MTA_LANG_CXX = 1 };

/*
 * Compile source (language MTA_LANG_C or MTA_LANG_CXX, extra compiler flags
 * may be NULL) into the cache; on success writes the .so path to so_path.
 * On MTA_ECOMPILE, *log (if log is not NULL) receives the compiler's output
 * (malloc'd; the caller frees). The compiler is $MTATUNE_CC / $MTATUNE_CXX,
 * else cc / c++.
 */
int mta_cc_build(const char *source, int lang, const char *flags, char *so_path, size_t n,
		 char **log);

/*
 * dlopen so_path (a library of the cache) and look up symbol; *dl is the
 * handle for mta_cc_close. MTA_ECOMPILE, without loading it, when the file
 * does not match the digest recorded when it was built.
 */
int mta_cc_open(const char *so_path, const char *symbol, void **dl, void **fn);
void mta_cc_close(void *dl);

/* The compiler's identity line (first line of `cc --version`), cached. */
const char *mta_cc_identity(int lang);

#endif
