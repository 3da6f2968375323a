/*
 * npy.h: reading and writing NumPy .npy files (format versions 1.0, 2.0, 3.0).
 *
 * Only what mtatune exchanges with users is accepted: little-endian,
 * C-order arrays of
 *
 *   descr '<f4' (or '=f4')          float32   -> MTA_F32
 *   descr '<f8' (or '=f8')          float64   -> MTA_F64
 *   descr '<f2' (or '=f2')          float16   -> MTA_F16
 *   descr '<V2', '|V2'              bfloat16  -> MTA_BF16
 *   descr '<u2', '|u2', '=u2'       bfloat16  -> MTA_BF16
 *
 * bfloat16 convention: NumPy has no bfloat16 type. ml_dtypes' bfloat16
 * arrays are saved as two-byte void ('<V2'); a uint16 array is read as
 * bfloat16 bits, i.e. each element holds the upper 16 bits of a float32
 * (in NumPy: (x.astype(np.float32).view(np.uint32) >> 16).astype(np.uint16),
 * which truncates; round first if that matters). mtatune always writes
 * bfloat16 as '<V2'. A uint16 array that is really integer data is therefore
 * misread as bfloat16: the convention is only for files meant as inputs.
 *
 * Everything else is refused with MTA_EFORMAT and a message naming the file
 * and the reason: bad magic, unknown version, a header that is not exactly a
 * {'descr', 'fortran_order', 'shape'} dict, big-endian or other dtypes,
 * fortran_order True, negative, huge or overflowing dimensions, more than
 * MTA_NPY_MAX_DIMS dimensions, and a payload shorter or longer than the
 * shape needs. Failures to open or read the file are MTA_EIO.
 */
#ifndef MTA_NPY_H
#define MTA_NPY_H

#include "runtime/mta.h"

#define MTA_NPY_MAX_DIMS 8

struct mta_npy {
	int dtype;                        /* mta_dtype */
	int ndim;                         /* 0 (a scalar) .. MTA_NPY_MAX_DIMS */
	int64_t shape[MTA_NPY_MAX_DIMS];
	size_t count;                     /* number of elements (1 for a scalar) */
	void *data;                       /* count elements, C order; owned */
	size_t nbytes;                    /* count * element size */
};

/* Read path into *out (zeroed first; free with mta_npy_free even on failure). */
int mta_npy_read(const char *path, struct mta_npy *out);

/*
 * Read a one-dimensional array of integer offsets ('<i4' int32 or '<i8'
 * int64, e.g. cu_seqlens) into *out (malloc'd, *n elements; the caller
 * frees). Any other dtype or shape is MTA_EFORMAT naming the file and what
 * was expected; the values are not judged here.
 */
int mta_npy_read_offsets(const char *path, int64_t **out, int64_t *n);

/*
 * Parse a whole .npy file held in memory; name is used in messages only.
 * The payload is copied, so buf may be freed afterwards.
 */
int mta_npy_parse(const char *name, const void *buf, size_t n, struct mta_npy *out);

/*
 * Write count(shape) elements of dtype (MTA_F32, MTA_F64, MTA_F16, MTA_BF16)
 * to path, atomically: the data go to a temporary file next to path, which
 * is renamed over path only when complete. On failure path is untouched and
 * no temporary file is left behind.
 */
int mta_npy_write(const char *path, int dtype, int ndim, const int64_t *shape,
		  const void *data);

/*
 * mta_npy_write in two halves, for a set of files that should appear
 * together: mta_npy_write_temp writes the whole file to a fresh temporary
 * name next to path (created O_CREAT|O_EXCL|O_NOFOLLOW, synced to disk) and
 * returns that name in tmp[tmpn]; nothing is left behind on failure.
 * mta_npy_commit renames tmp over path, removing tmp if it cannot. Write
 * every temporary first and commit only when all succeeded (unlink them
 * otherwise), and a failure leaves none of the set half-written.
 */
int mta_npy_write_temp(const char *path, int dtype, int ndim, const int64_t *shape,
		       const void *data, char *tmp, size_t tmpn);
int mta_npy_commit(const char *tmp, const char *path);

void mta_npy_free(struct mta_npy *a);

/*
 * Convert a's elements to dtype in place. Conversions to MTA_F32 and MTA_F64
 * are exact or round once; conversions to MTA_BF16 / MTA_F16 go through
 * float32 (round to float32, then to the 16-bit type, nearest even), which is
 * what a kernel reading float32 data as bf16 / f16 sees.
 */
int mta_npy_convert(struct mta_npy *a, int dtype);

/* "[2,3,4]" style text of a shape into buf (always NUL-terminated); returns buf. */
const char *mta_npy_shape_str(int ndim, const int64_t *shape, char *buf, size_t n);

#endif
