/*
 * outfile.h: an output file replaced atomically (`run --out`, `report
 * --out`, .npy files).
 *
 * The bytes go to a temporary next to the path, created O_CREAT|O_EXCL|
 * O_NOFOLLOW under a name with a random part (so no one can plant a symlink
 * or a file there in advance), are flushed to the disk and renamed over the
 * path only when complete: a reader sees the old file or the whole new one,
 * and a failure leaves the old file and no temporary.
 *
 * The path must be missing or a regular file. Anything else that exists
 * there (a FIFO, a device such as /dev/null, a symlink, a folder) is refused
 * with MTA_EIO before anything is written: a rename would replace the device
 * node or the link itself, which is never what the user meant.
 */
#ifndef MTA_IO_OUTFILE_H
#define MTA_IO_OUTFILE_H

#include <stddef.h>

struct mta_outfile {
	int fd;            /* the temporary, -1 when closed */
	char path[4096];   /* the output, as given */
	char tmp[4200];    /* the temporary's path */
	int failed;        /* a write failed (errno in err) */
	int err;
};

/* Check path and create its temporary. MTA_EIO / MTA_EINVAL with the path named. */
int mta_outfile_open(struct mta_outfile *o, const char *path);
/* Append n bytes; a failure is remembered and reported by commit. */
void mta_outfile_write(struct mta_outfile *o, const void *buf, size_t n);
/* Flush, close and rename into place; on any failure the temporary is removed. */
int mta_outfile_commit(struct mta_outfile *o);
/* Give up: close and remove the temporary (nothing if o was never opened). */
void mta_outfile_abort(struct mta_outfile *o);

/*
 * MTA_OK when path is missing or a regular file; MTA_EIO naming what it is
 * otherwise ("a FIFO", "a symbolic link", ...).
 */
int mta_output_path_ok(const char *path);

#endif
