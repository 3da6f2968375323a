/* outfile.c: an output file replaced atomically (see outfile.h). */
#include "tuner/io/outfile.h"
#include "runtime/core/error.h"
#include "runtime/core/strbuf.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <unistd.h>

static const char *kind(mode_t m)
{
	return S_ISFIFO(m) ? "a FIFO" : S_ISLNK(m) ? "a symbolic link" : S_ISDIR(m) ? "a folder"
	       : S_ISCHR(m) ? "a character device" : S_ISBLK(m) ? "a block device"
	       : S_ISSOCK(m) ? "a socket" : "not a regular file";
}

int mta_output_path_ok(const char *path)
{
	struct stat st;
	char shown[1024];
	if (lstat(path, &st) != 0)
		return errno == ENOENT ? MTA_OK
		       : mta_fail(MTA_EIO, "%s: %s", mta_escape_str(path, shown, sizeof shown),
				  strerror(errno));
	if (S_ISREG(st.st_mode))
		return MTA_OK;
	return mta_fail(MTA_EIO, "%s: it exists and is not a regular file (it is %s), so it is "
			"not replaced; remove it or name another file",
			mta_escape_str(path, shown, sizeof shown), kind(st.st_mode));
}

int mta_outfile_open(struct mta_outfile *o, const char *path)
{
	int rc;
	memset(o, 0, sizeof *o);
	o->fd = -1;
	if (snprintf(o->path, sizeof o->path, "%s", path) >= (int)sizeof o->path)
		return mta_fail(MTA_EINVAL, "output path is too long (over %zu bytes)",
				sizeof o->path - 1);
	if ((rc = mta_output_path_ok(path)))
		return rc;
	for (int tries = 0; o->fd < 0; tries++) {
		unsigned long long r = 0;
		if (getrandom(&r, sizeof r, GRND_NONBLOCK) != (ssize_t)sizeof r)
			r ^= (unsigned long long)getpid() << 32 ^ (unsigned long long)(size_t)o ^
			     (unsigned long long)tries * 0x9e3779b97f4a7c15ULL;
		snprintf(o->tmp, sizeof o->tmp, "%s.tmp-%ld-%016llx", path, (long)getpid(), r);
		o->fd = open(o->tmp, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0666);
		if (o->fd < 0 && (errno != EEXIST || tries > 100)) {
			char shown[1024];
			o->tmp[0] = 0;
			return mta_fail(MTA_EIO, "%s: cannot create a temporary file next to it: %s",
					mta_escape_str(path, shown, sizeof shown), strerror(errno));
		}
	}
	return MTA_OK;
}

void mta_outfile_write(struct mta_outfile *o, const void *buf, size_t n)
{
	const char *b = buf;
	while (n && !o->failed && o->fd >= 0) {
		ssize_t w = write(o->fd, b, n);
		if (w < 0 && errno == EINTR)
			continue;
		if (w <= 0) {
			o->failed = 1;
			o->err = w < 0 ? errno : EIO;
			break;
		}
		b += w;
		n -= (size_t)w;
	}
}

void mta_outfile_abort(struct mta_outfile *o)
{
	if (o->fd >= 0)
		close(o->fd);
	o->fd = -1;
	if (o->tmp[0])
		unlink(o->tmp);
	o->tmp[0] = 0;
}

int mta_outfile_commit(struct mta_outfile *o)
{
	char shown[1024];
	int rc = MTA_OK;
	mta_escape_str(o->path, shown, sizeof shown);
	if (o->fd < 0)
		return mta_fail(MTA_EINVAL, "%s: output was not opened", shown);
	if (!o->failed && fsync(o->fd) < 0) {
		o->failed = 1;
		o->err = errno;
	}
	int fd = o->fd;
	o->fd = -1;
	if (close(fd) < 0 && !o->failed) {
		o->failed = 1;
		o->err = errno;
	}
	if (o->failed)
		rc = mta_fail(MTA_EIO, "%s: write failed: %s", shown, strerror(o->err));
	/* looked at again just before the rename: the window is as small as it gets */
	else if ((rc = mta_output_path_ok(o->path)))
		;
	else if (rename(o->tmp, o->path) < 0)
		rc = mta_fail(MTA_EIO, "%s: cannot replace the file: %s", shown, strerror(errno));
	if (rc)
		unlink(o->tmp);
	o->tmp[0] = 0;
	return rc;
}
