/*
 * npy.c: NumPy .npy files (see npy.h for what is accepted and why).
 *
 * A .npy file is: the magic "\x93NUMPY", a major and minor version byte, the
 * header length (2 bytes little-endian in version 1, 4 bytes in 2 and 3), the
 * header (a Python dict literal, padded with spaces and ended by '\n'), then
 * the raw elements. The header is parsed here as the small subset of Python
 * literal syntax NumPy writes: a dict of exactly the keys 'descr' (a string),
 * 'fortran_order' (True/False) and 'shape' (a tuple of non-negative ints).
 * Every path that refuses a file says which file and why.
 */
#include "tuner/io/npy.h"
#include "runtime/core/error.h"
#include "runtime/core/strbuf.h"
#include "tuner/io/outfile.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define MAGIC "\x93NUMPY"
#define MAX_HEADER (1u << 20) /* far above NumPy's own 10000-byte limit */
#define MAX_DIM ((int64_t)1 << 48)

const char *mta_npy_shape_str(int ndim, const int64_t *shape, char *buf, size_t n)
{
	size_t len = 0;
	if (!n)
		return buf;
	buf[0] = 0;
	len += (size_t)snprintf(buf, n, "[");
	for (int i = 0; i < ndim && len < n; i++)
		len += (size_t)snprintf(buf + len, n - len, "%s%" PRId64, i ? "," : "", shape[i]);
	if (len < n)
		snprintf(buf + len, n - len, "]");
	return buf;
}

void mta_npy_free(struct mta_npy *a)
{
	if (!a)
		return;
	free(a->data);
	memset(a, 0, sizeof *a);
}

/* ---- header parsing --------------------------------------------------- */

/* A cursor over the header text; name is the file, for messages. */
struct cur {
	const char *s, *e, *name;
};

static void skip_ws(struct cur *c)
{
	while (c->s < c->e && (*c->s == ' ' || *c->s == '\t' || *c->s == '\n' || *c->s == '\r'))
		c->s++;
}

/* Expect the character ch (after blanks); a message says what was found. */
static int expect(struct cur *c, char ch, const char *where)
{
	skip_ws(c);
	if (c->s >= c->e)
		return mta_fail(MTA_EFORMAT, "%s: malformed header: it ends where '%c' was expected %s",
				c->name, ch, where);
	if (*c->s != ch) {
		char found[8];
		return mta_fail(MTA_EFORMAT, "%s: malformed header: '%s' found where '%c' was "
				"expected %s", c->name, mta_escape(c->s, 1, found, sizeof found), ch,
				where);
	}
	c->s++;
	return MTA_OK;
}

/*
 * A quoted string without escapes, into buf[n]: printable ASCII only, so
 * that a NUL cannot cut the compared text short ('<f4\0junk' is not '<f4')
 * and no byte reaches a message raw.
 */
static int string(struct cur *c, char *buf, size_t n, const char *what)
{
	skip_ws(c);
	if (c->s >= c->e)
		return mta_fail(MTA_EFORMAT, "%s: malformed header: it ends where %s was expected "
				"(no closing '}')", c->name, what);
	if (*c->s != '\'' && *c->s != '"')
		return mta_fail(MTA_EFORMAT, "%s: malformed header: %s is not a quoted string",
				c->name, what);
	char q = *c->s++;
	size_t len = 0;
	while (c->s < c->e && *c->s != q) {
		if (*c->s == '\\' || len + 1 >= n)
			return mta_fail(MTA_EFORMAT, "%s: malformed header: %s is too long or has "
					"escapes", c->name, what);
		if (!mta_is_printable(c->s, 1)) {
			char b[8];
			return mta_fail(MTA_EFORMAT, "%s: malformed header: %s holds a byte that is "
					"not printable (%s)", c->name, what,
					mta_escape(c->s, 1, b, sizeof b));
		}
		buf[len++] = *c->s++;
	}
	if (c->s >= c->e)
		return mta_fail(MTA_EFORMAT, "%s: malformed header: unterminated string in %s",
				c->name, what);
	c->s++;
	buf[len] = 0;
	return MTA_OK;
}

static int word(struct cur *c, const char *w)
{
	size_t n = strlen(w);
	if ((size_t)(c->e - c->s) >= n && !memcmp(c->s, w, n)) {
		c->s += n;
		return 1;
	}
	return 0;
}

/* The 'shape' tuple: "()", "(5,)", "(2, 3)", "(2, 3,)"; Python 2's "3L" too. */
static int shape_tuple(struct cur *c, struct mta_npy *a)
{
	int rc, comma = 0;
	if ((rc = expect(c, '(', "to open the shape tuple")))
		return rc;
	a->ndim = 0;
	for (;;) {
		skip_ws(c);
		if (c->s < c->e && *c->s == ')') {
			c->s++;
			break;
		}
		if (a->ndim && !comma)
			return mta_fail(MTA_EFORMAT, "%s: malformed header: missing ',' in the shape "
					"tuple", c->name);
		if (c->s < c->e && *c->s == '-')
			return mta_fail(MTA_EFORMAT, "%s: shape has a negative dimension", c->name);
		if (c->s >= c->e || *c->s < '0' || *c->s > '9')
			return mta_fail(MTA_EFORMAT, "%s: malformed header: the shape tuple holds "
					"something other than non-negative integers", c->name);
		int64_t v = 0;
		while (c->s < c->e && *c->s >= '0' && *c->s <= '9') {
			v = v * 10 + (*c->s++ - '0');
			if (v > MAX_DIM)
				return mta_fail(MTA_EFORMAT, "%s: shape has a dimension above 2^48",
						c->name);
		}
		if (c->s < c->e && *c->s == 'L')
			c->s++;
		if (a->ndim == MTA_NPY_MAX_DIMS)
			return mta_fail(MTA_EFORMAT, "%s: shape has more than %d dimensions", c->name,
					MTA_NPY_MAX_DIMS);
		a->shape[a->ndim++] = v;
		skip_ws(c);
		comma = c->s < c->e && *c->s == ',';
		if (comma)
			c->s++;
	}
	if (a->ndim == 1 && !comma)
		return mta_fail(MTA_EFORMAT, "%s: malformed header: shape (%" PRId64 ") is not a "
				"tuple (a one-element tuple needs a trailing comma)", c->name, a->shape[0]);
	return MTA_OK;
}

/*
 * Integer element types, read only by mta_npy_read_offsets: codes of this
 * file, outside mta_dtype (no kernel takes integers).
 */
#define NPY_I32 100
#define NPY_I64 101
static size_t elem_size(int dtype)
{
	return dtype == NPY_I32 ? 4 : dtype == NPY_I64 ? 8 : mta_dtype_size(dtype);
}
static const char *elem_name(int dtype)
{
	return dtype == NPY_I32 ? "int32" : dtype == NPY_I64 ? "int64" : mta_dtype_name(dtype);
}

/* The integer descrs ('<i4', '<i8', '=' too): NPY_I32, NPY_I64, or -1. */
static int descr_int(const char *d)
{
	if (d[0] != '<' && d[0] != '=')
		return -1;
	return !strcmp(d + 1, "i4") ? NPY_I32 : !strcmp(d + 1, "i8") ? NPY_I64 : -1;
}

/* Map a descr string (printable, see string()) to an mta_dtype; refuse the rest with a reason. */
static int descr_dtype(const char *name, const char *d, int *dtype)
{
	if (!d[0])
		return mta_fail(MTA_EFORMAT, "%s: descr is empty (expected '<f4', '<f8', '<f2', "
				"or bfloat16 as '<V2' or '<u2')", name);
	static const struct { const char *code; int dtype; int no_order; } types[] = {
		{ "f4", MTA_F32, 0 }, { "f8", MTA_F64, 0 }, { "f2", MTA_F16, 0 },
		{ "V2", MTA_BF16, 1 }, { "u2", MTA_BF16, 1 },
	};
	char order = d[0];
	if (order == '>')
		return mta_fail(MTA_EFORMAT, "%s: descr '%s' is big-endian; only little-endian "
				"data are read (save with dtype '<%s')", name, d, d + 1);
	for (size_t i = 0; i < sizeof types / sizeof types[0]; i++) {
		if (strcmp(d + 1, types[i].code))
			continue;
		if (order == '<' || order == '=' || (order == '|' && types[i].no_order)) {
			*dtype = types[i].dtype;
			return MTA_OK;
		}
	}
	return mta_fail(MTA_EFORMAT, "%s: unsupported dtype descr '%s' (expected '<f4', '<f8', "
			"'<f2', or bfloat16 as '<V2' or '<u2')", name, d);
}

/*
 * Parse the header dict h[0..len) into a's dtype, shape, count and nbytes.
 * Version 3 allows UTF-8 in the header, but no valid key or value needs
 * non-ASCII text, so all versions are parsed alike.
 */
static int parse_dict(const char *name, const char *h, size_t len, int ints, struct mta_npy *a)
{
	struct cur c = { h, h + len, name };
	char key[32], descr[32];
	int rc, seen = 0, fortran = 0;
	enum { DESCR = 1, FORTRAN = 2, SHAPE = 4 };

	if ((rc = expect(&c, '{', "at the start of the header dict")))
		return rc;
	for (;;) {
		skip_ws(&c);
		if (c.s < c.e && *c.s == '}') {
			c.s++;
			break;
		}
		if ((rc = string(&c, key, sizeof key, "a dict key")) ||
		    (rc = expect(&c, ':', "after a dict key")))
			return rc;
		skip_ws(&c);
		int bit = !strcmp(key, "descr") ? DESCR : !strcmp(key, "fortran_order") ? FORTRAN
			: !strcmp(key, "shape") ? SHAPE : 0;
		if (!bit)
			return mta_fail(MTA_EFORMAT, "%s: malformed header: unexpected key '%s' (a .npy "
					"header has only descr, fortran_order and shape)", name, key);
		if (seen & bit)
			return mta_fail(MTA_EFORMAT, "%s: malformed header: key '%s' appears twice",
					name, key);
		seen |= bit;
		if (bit == DESCR) {
			if ((rc = string(&c, descr, sizeof descr, "descr")))
				return rc;
		} else if (bit == FORTRAN) {
			if (word(&c, "True"))
				fortran = 1;
			else if (!word(&c, "False"))
				return mta_fail(MTA_EFORMAT, "%s: malformed header: fortran_order is not "
						"True or False", name);
		} else if ((rc = shape_tuple(&c, a))) {
			return rc;
		}
		skip_ws(&c);
		if (c.s < c.e && *c.s == ',') {
			c.s++;
			continue;
		}
		if ((rc = expect(&c, '}', "to close the header dict")))
			return rc;
		break;
	}
	skip_ws(&c);
	if (c.s != c.e)
		return mta_fail(MTA_EFORMAT, "%s: malformed header: text after the closing '}'", name);
	if (seen != (DESCR | FORTRAN | SHAPE))
		return mta_fail(MTA_EFORMAT, "%s: malformed header: no '%s' key", name,
				!(seen & DESCR) ? "descr" : !(seen & FORTRAN) ? "fortran_order" : "shape");
	if (ints) {
		if ((a->dtype = descr_int(descr)) < 0)
			return mta_fail(MTA_EFORMAT, "%s: dtype descr '%s', expected integer offsets "
					"('<i4' int32 or '<i8' int64)", name, descr);
	} else if ((rc = descr_dtype(name, descr, &a->dtype))) {
		return rc;
	}
	if (fortran)
		return mta_fail(MTA_EFORMAT, "%s: fortran_order is True; only C-order arrays are "
				"read (save np.ascontiguousarray(x))", name);
	size_t count = 1;
	for (int i = 0; i < a->ndim; i++)
		if (__builtin_mul_overflow(count, (size_t)a->shape[i], &count) ||
		    count > (size_t)MAX_DIM)
			return mta_fail(MTA_EFORMAT, "%s: shape has more than 2^48 elements", name);
	a->count = count;
	a->nbytes = count * elem_size(a->dtype);
	return MTA_OK;
}

/*
 * Check the fixed prefix p[0..avail) of a file of size total; sets the
 * offset and length of the header text.
 */
static int parse_prefix(const char *name, const unsigned char *p, size_t avail, size_t total,
			size_t *hoff, size_t *hlen)
{
	if (avail < 6 || memcmp(p, MAGIC, 6))
		return mta_fail(MTA_EFORMAT, "%s: not a .npy file: bad magic string (%zu-byte file)",
				name, total);
	if (avail < 8)
		return mta_fail(MTA_EFORMAT, "%s: the file ends inside the format version", name);
	int major = p[6], minor = p[7];
	if (major < 1 || major > 3 || minor != 0)
		return mta_fail(MTA_EFORMAT, "%s: unsupported .npy format version %d.%d (expected "
				"1.0, 2.0 or 3.0)", name, major, minor);
	size_t width = major == 1 ? 2 : 4;
	if (avail < 8 + width)
		return mta_fail(MTA_EFORMAT, "%s: the file ends inside the header length", name);
	size_t len = (size_t)p[8] | (size_t)p[9] << 8;
	if (width == 4)
		len |= (size_t)p[10] << 16 | (size_t)p[11] << 24;
	if (len > MAX_HEADER)
		return mta_fail(MTA_EFORMAT, "%s: header length %zu is larger than %u bytes", name,
				len, MAX_HEADER);
	*hoff = 8 + width;
	if (*hoff + len > total)
		return mta_fail(MTA_EFORMAT, "%s: the header of %zu bytes runs past the end of the "
				"file (%zu bytes)", name, len, total);
	*hlen = len;
	return MTA_OK;
}

/* The payload has n bytes: exactly what the shape needs, or refuse. */
static int check_payload(const char *name, const struct mta_npy *a, size_t n)
{
	char s[200];
	if (n == a->nbytes)
		return MTA_OK;
	mta_npy_shape_str(a->ndim, a->shape, s, sizeof s);
	if (n < a->nbytes)
		return mta_fail(MTA_EFORMAT, "%s: truncated payload: %zu bytes, but shape %s of %s "
				"needs %zu", name, n, s, elem_name(a->dtype), a->nbytes);
	return mta_fail(MTA_EFORMAT, "%s: oversized payload: %zu bytes, %zu more than shape %s "
			"of %s needs", name, n, n - a->nbytes, s, elem_name(a->dtype));
}

int mta_npy_parse(const char *raw_name, const void *buf, size_t n, struct mta_npy *out)
{
	const unsigned char *p = buf;
	char name[1024];
	size_t hoff, hlen;
	int rc;
	memset(out, 0, sizeof *out);
	mta_escape_str(raw_name, name, sizeof name);
	if ((rc = parse_prefix(name, p, n, n, &hoff, &hlen)) ||
	    (rc = parse_dict(name, (const char *)p + hoff, hlen, 0, out)) ||
	    (rc = check_payload(name, out, n - hoff - hlen)))
		return rc;
	if (!(out->data = malloc(out->nbytes ? out->nbytes : 1)))
		return mta_fail(MTA_ENOMEM, "%s: out of memory for %zu bytes", name, out->nbytes);
	memcpy(out->data, p + hoff + hlen, out->nbytes);
	return MTA_OK;
}

/* Read exactly n bytes at the current offset; EIO with a reason otherwise. */
static int read_all(const char *path, int fd, void *buf, size_t n)
{
	char *b = buf;
	while (n) {
		ssize_t r = read(fd, b, n);
		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0)
			return mta_fail(MTA_EIO, "%s: read failed: %s", path, strerror(errno));
		if (r == 0)
			return mta_fail(MTA_EIO, "%s: the file shrank while it was read", path);
		b += r;
		n -= (size_t)r;
	}
	return MTA_OK;
}

/*
 * Opened without blocking (O_NONBLOCK: a FIFO would wait for a writer) and
 * its type checked on the open descriptor before a byte is read.
 */
static int read_npy(const char *raw_path, int ints, struct mta_npy *out)
{
	unsigned char prefix[12];
	char *hdr = NULL, path[1024];
	struct stat st;
	size_t hoff, hlen, total;
	int rc, fd;

	memset(out, 0, sizeof *out);
	mta_escape_str(raw_path, path, sizeof path); /* for messages */
	if ((fd = open(raw_path, O_RDONLY | O_NONBLOCK | O_NOCTTY | O_CLOEXEC)) < 0)
		return mta_fail(MTA_EIO, "%s: cannot open: %s", path, strerror(errno));
	if (fstat(fd, &st) < 0) {
		rc = mta_fail(MTA_EIO, "%s: cannot stat: %s", path, strerror(errno));
		goto out;
	}
	if (!S_ISREG(st.st_mode)) {
		rc = mta_fail(MTA_EIO, "%s: not a regular file", path);
		goto out;
	}
	total = (size_t)st.st_size;
	size_t np = total < sizeof prefix ? total : sizeof prefix;
	if ((rc = read_all(path, fd, prefix, np)) ||
	    (rc = parse_prefix(path, prefix, np, total, &hoff, &hlen)))
		goto out;
	if (!(hdr = malloc(hlen + 1))) {
		rc = mta_fail(MTA_ENOMEM, "%s: out of memory for the header", path);
		goto out;
	}
	if (lseek(fd, (off_t)hoff, SEEK_SET) < 0) {
		rc = mta_fail(MTA_EIO, "%s: seek failed: %s", path, strerror(errno));
		goto out;
	}
	if ((rc = read_all(path, fd, hdr, hlen)) ||
	    (rc = parse_dict(path, hdr, hlen, ints, out)) ||
	    (rc = check_payload(path, out, total - hoff - hlen)))
		goto out;
	if (!(out->data = malloc(out->nbytes ? out->nbytes : 1))) {
		rc = mta_fail(MTA_ENOMEM, "%s: out of memory for %zu bytes", path, out->nbytes);
		goto out;
	}
	rc = read_all(path, fd, out->data, out->nbytes);
out:
	free(hdr);
	close(fd);
	if (rc)
		mta_npy_free(out);
	return rc;
}

int mta_npy_read(const char *raw_path, struct mta_npy *out)
{
	return read_npy(raw_path, 0, out);
}

int mta_npy_read_offsets(const char *raw_path, int64_t **out, int64_t *n)
{
	struct mta_npy a;
	char path[1024];
	int rc;
	*out = NULL;
	*n = 0;
	mta_escape_str(raw_path, path, sizeof path);
	if ((rc = read_npy(raw_path, 1, &a)))
		return rc;
	if (a.ndim != 1) {
		char sh[200];
		rc = mta_fail(MTA_EFORMAT, "%s: shape %s, expected one dimension [ndocs+1]", path,
			      mta_npy_shape_str(a.ndim, a.shape, sh, sizeof sh));
		goto out;
	}
	if (!(*out = malloc((a.count ? a.count : 1) * sizeof **out))) {
		rc = mta_fail(MTA_ENOMEM, "%s: out of memory", path);
		goto out;
	}
	for (size_t i = 0; i < a.count; i++) {
		int32_t x32;
		int64_t x64;
		if (a.dtype == NPY_I32) {
			memcpy(&x32, (const char *)a.data + 4 * i, 4);
			(*out)[i] = x32;
		} else {
			memcpy(&x64, (const char *)a.data + 8 * i, 8);
			(*out)[i] = x64;
		}
	}
	*n = (int64_t)a.count;
out:
	mta_npy_free(&a);
	if (rc) {
		free(*out);
		*out = NULL;
	}
	return rc;
}

/* ---- writing ---------------------------------------------------------- */

static int write_all(int fd, const void *buf, size_t n)
{
	const char *b = buf;
	while (n) {
		ssize_t w = write(fd, b, n);
		if (w < 0 && errno == EINTR)
			continue;
		if (w <= 0)
			return -1;
		b += w;
		n -= (size_t)w;
	}
	return 0;
}

int mta_npy_write_temp(const char *path, int dtype, int ndim, const int64_t *shape,
		       const void *data, char *tmp, size_t tmpn)
{
	static const char *descr[] = { [MTA_F32] = "<f4", [MTA_BF16] = "<V2",
				       [MTA_F16] = "<f2", [MTA_F64] = "<f8" };
	static unsigned serial;
	char head[512];
	int fd = -1, rc = MTA_OK;

	if (dtype < MTA_F32 || dtype > MTA_F64)
		return mta_fail(MTA_EINVAL, "%s: cannot write element type %d", path, dtype);
	if ((rc = mta_output_path_ok(path))) /* never replace a FIFO, device or link */
		return rc;
	if (ndim < 0 || ndim > MTA_NPY_MAX_DIMS)
		return mta_fail(MTA_EINVAL, "%s: %d dimensions (at most %d)", path, ndim,
				MTA_NPY_MAX_DIMS);
	size_t count = 1;
	for (int i = 0; i < ndim; i++)
		if (shape[i] < 0 || shape[i] > MAX_DIM ||
		    __builtin_mul_overflow(count, (size_t)shape[i], &count) || count > (size_t)MAX_DIM)
			return mta_fail(MTA_EINVAL, "%s: dimension %d of size %" PRId64 " is negative "
					"or too large", path, i, shape[i]);
	size_t nbytes = count * mta_dtype_size(dtype);
	if (nbytes && !data)
		return mta_fail(MTA_EINVAL, "%s: no data to write", path);

	/* Header as NumPy writes it, padded so the data start at a multiple of 64. */
	int len = snprintf(head, sizeof head, "{'descr': '%s', 'fortran_order': False, 'shape': (",
			   descr[dtype]);
	for (int i = 0; i < ndim; i++)
		len += snprintf(head + len, sizeof head - (size_t)len, "%" PRId64 "%s", shape[i],
				i + 1 < ndim ? ", " : ndim == 1 ? "," : "");
	len += snprintf(head + len, sizeof head - (size_t)len, "), }");
	while ((10 + len + 1) % 64)
		head[len++] = ' ';
	head[len++] = '\n';
	unsigned char prefix[10] = { 0x93, 'N', 'U', 'M', 'P', 'Y', 1, 0,
				     (unsigned char)(len & 0xff), (unsigned char)(len >> 8) };

	/* O_EXCL on a fresh name: never clobber another writer's temporary, and
	 * never follow a link planted under that name. */
	for (int tries = 0; fd < 0; tries++) {
		int n = snprintf(tmp, tmpn, "%s.tmp-%ld-%u", path, (long)getpid(),
				 __atomic_fetch_add(&serial, 1, __ATOMIC_RELAXED));
		if (n < 0 || (size_t)n >= tmpn)
			return mta_fail(MTA_EINVAL, "%s: path too long", path);
		fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0666);
		if (fd < 0 && (errno != EEXIST || tries > 100))
			return mta_fail(MTA_EIO, "%s: cannot create a temporary file next to it: %s",
					path, strerror(errno));
	}
	if (write_all(fd, prefix, sizeof prefix) || write_all(fd, head, (size_t)len) ||
	    write_all(fd, data, nbytes) || fsync(fd) < 0) {
		rc = mta_fail(MTA_EIO, "%s: write failed: %s", path, strerror(errno));
		goto out;
	}
	int cfd = fd;
	fd = -1;
	if (close(cfd) < 0)
		rc = mta_fail(MTA_EIO, "%s: write failed on close: %s", path, strerror(errno));
out:
	if (fd >= 0)
		close(fd);
	if (rc)
		unlink(tmp);
	return rc;
}

int mta_npy_commit(const char *tmp, const char *path)
{
	if (rename(tmp, path) == 0)
		return MTA_OK;
	int rc = mta_fail(MTA_EIO, "%s: cannot replace the file: %s", path, strerror(errno));
	unlink(tmp);
	return rc;
}

int mta_npy_write(const char *path, int dtype, int ndim, const int64_t *shape,
		  const void *data)
{
	char tmp[4096];
	int rc = mta_npy_write_temp(path, dtype, ndim, shape, data, tmp, sizeof tmp);
	return rc ? rc : mta_npy_commit(tmp, path);
}

/* ---- conversion ------------------------------------------------------- */

static double get(const void *d, int dtype, size_t i)
{
	switch (dtype) {
	case MTA_F32: return ((const float *)d)[i];
	case MTA_F64: return ((const double *)d)[i];
	case MTA_BF16: return mta_bf16_to_f32(((const uint16_t *)d)[i]);
	default: return mta_f16_to_f32(((const uint16_t *)d)[i]);
	}
}

static void put(void *d, int dtype, size_t i, double x)
{
	switch (dtype) {
	case MTA_F32: ((float *)d)[i] = (float)x; break;
	case MTA_F64: ((double *)d)[i] = x; break;
	case MTA_BF16: ((uint16_t *)d)[i] = mta_f32_to_bf16((float)x); break;
	default: ((uint16_t *)d)[i] = mta_f32_to_f16((float)x); break;
	}
}

int mta_npy_convert(struct mta_npy *a, int dtype)
{
	if (dtype < MTA_F32 || dtype > MTA_F64 || a->dtype < MTA_F32 || a->dtype > MTA_F64)
		return mta_fail(MTA_EINVAL, "cannot convert element type %d to %d", a->dtype, dtype);
	if (dtype == a->dtype)
		return MTA_OK;
	size_t nbytes = a->count * mta_dtype_size(dtype);
	void *d = malloc(nbytes ? nbytes : 1);
	if (!d)
		return mta_fail(MTA_ENOMEM, "out of memory converting %zu elements", a->count);
	for (size_t i = 0; i < a->count; i++)
		put(d, dtype, i, get(a->data, a->dtype, i));
	free(a->data);
	a->data = d;
	a->dtype = dtype;
	a->nbytes = nbytes;
	return MTA_OK;
}
