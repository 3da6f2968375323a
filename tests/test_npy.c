/* test_npy.c: .npy round trips, accepted header variants, and every refusal. */
#include "tests/harness.h"
#include "tuner/io/npy.h"

#include <dirent.h>
#include <errno.h>
#include <signal.h>
#include <stdint.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

/* Write n raw bytes to path. */
static void put_file(const char *path, const void *bytes, size_t n)
{
	FILE *f = fopen(path, "wb");
	if (!f || fwrite(bytes, 1, n, f) != n || fclose(f))
		mt_fail(__FILE__, __LINE__, "cannot write %s", path);
}

/* A .npy of version major with header text hdr and nbytes of payload 0x3f. */
static void put_npy(const char *path, int major, const char *hdr, size_t nbytes)
{
	size_t hl = strlen(hdr), w = major == 1 ? 2 : 4;
	size_t n = 8 + w + hl + nbytes;
	unsigned char *b = malloc(n);
	memcpy(b, "\x93NUMPY", 6);
	b[6] = (unsigned char)major;
	b[7] = 0;
	for (size_t i = 0; i < w; i++)
		b[8 + i] = (unsigned char)(hl >> (8 * i));
	memcpy(b + 8 + w, hdr, hl);
	memset(b + 8 + w + hl, 0x3f, nbytes);
	put_file(path, b, n);
	free(b);
}

static char *path_in(const char *name)
{
	static char p[8][600];
	static int k;
	char *s = p[k++ % 8];
	snprintf(s, 600, "%s/%s", mt_tmpdir(), name);
	return s;
}

static int count_dir_entries(const char *dir)
{
	DIR *d = opendir(dir);
	int n = 0;
	struct dirent *e;
	while (d && (e = readdir(d)))
		if (strcmp(e->d_name, ".") && strcmp(e->d_name, ".."))
			n++;
	if (d)
		closedir(d);
	return n;
}

TEST(npy_round_trip_every_dtype)
{
	static const int dtypes[] = { MTA_F32, MTA_F64, MTA_F16, MTA_BF16 };
	for (int rep = 0; rep < 40; rep++) {
		int dtype = dtypes[rep % 4];
		int ndim = (int)((mt_uniform() + 1) * 3.5); /* 0..6 */
		int64_t shape[MTA_NPY_MAX_DIMS];
		size_t count = 1;
		for (int i = 0; i < ndim; i++) {
			shape[i] = 1 + (int64_t)((mt_uniform() + 1) * 2.5);
			count *= (size_t)shape[i];
		}
		if (rep == 39) { /* an empty array */
			ndim = 2, shape[0] = 3, shape[1] = 0, count = 0;
		}
		size_t es = mta_dtype_size(dtype);
		unsigned char *data = malloc(count * es + 1);
		for (size_t i = 0; i < count; i++) {
			float x = (float)mt_uniform() * 100.0f;
			if (dtype == MTA_F32)
				memcpy(data + 4 * i, &x, 4);
			else if (dtype == MTA_F64) {
				double d = mt_uniform();
				memcpy(data + 8 * i, &d, 8);
			} else {
				uint16_t h = dtype == MTA_F16 ? mta_f32_to_f16(x) : mta_f32_to_bf16(x);
				memcpy(data + 2 * i, &h, 2);
			}
		}
		const char *p = path_in("a.npy");
		REQUIRE(mta_npy_write(p, dtype, ndim, shape, data) == MTA_OK);
		struct stat st;
		REQUIRE(stat(p, &st) == 0);
		CHECKF((st.st_size - (off_t)(count * es)) % 64 == 0,
		       "data should start at a multiple of 64, file is %lld bytes", (long long)st.st_size);
		struct mta_npy a;
		int rc = mta_npy_read(p, &a);
		CHECKF(rc == MTA_OK, "read back: %s", mta_last_error());
		CHECK_EQ_INT(a.dtype, dtype);
		CHECK_EQ_INT(a.ndim, ndim);
		CHECK_EQ_INT(a.count, count);
		CHECK_EQ_INT(a.nbytes, count * es);
		for (int i = 0; i < ndim && i < a.ndim; i++)
			CHECK_EQ_INT(a.shape[i], shape[i]);
		CHECK(rc || !memcmp(a.data, data, count * es));
		mta_npy_free(&a);
		free(data);
	}
	CHECK_EQ_INT(count_dir_entries(mt_tmpdir()), 1); /* no temporaries left */
}

/* Headers NumPy (or other writers) produce that must all be accepted. */
TEST(npy_reads_header_variants)
{
	static const struct { int major; const char *hdr; int dtype, ndim; int64_t d0; size_t count; } ok[] = {
		{ 1, "{'descr': '<f4', 'fortran_order': False, 'shape': (3,), }\n", MTA_F32, 1, 3, 3 },
		{ 2, "{'descr': '<f8', 'fortran_order': False, 'shape': (3,), }\n", MTA_F64, 1, 3, 3 },
		{ 3, "{'descr': '<f2', 'fortran_order': False, 'shape': (3,), }\n", MTA_F16, 1, 3, 3 },
		{ 1, "{'descr': '|V2', 'fortran_order': False, 'shape': (3,), }\n", MTA_BF16, 1, 3, 3 },
		{ 1, "{'descr': '<V2', 'fortran_order': False, 'shape': (3,), }\n", MTA_BF16, 1, 3, 3 },
		{ 1, "{'descr': '<u2', 'fortran_order': False, 'shape': (3,), }\n", MTA_BF16, 1, 3, 3 },
		{ 1, "{'descr': '|u2', 'fortran_order': False, 'shape': (3,), }\n", MTA_BF16, 1, 3, 3 },
		{ 1, "{'descr': '=f4', 'fortran_order': False, 'shape': (3,), }\n", MTA_F32, 1, 3, 3 },
		{ 1, "{\"shape\": (3L, 1L), \"descr\": \"<f4\", \"fortran_order\": False}   \n",
		  MTA_F32, 2, 3, 3 },
		{ 1, "{'descr':'<f4','fortran_order':False,'shape':(1,3)}", MTA_F32, 2, 1, 3 },
		{ 1, "{'descr': '<f4', 'fortran_order': False, 'shape': (), }\n", MTA_F32, 0, 0, 1 },
		{ 1, "{'descr': '<f4', 'fortran_order': False, 'shape': (0, 5), }\n", MTA_F32, 2, 0, 0 },
	};
	for (size_t i = 0; i < sizeof ok / sizeof ok[0]; i++) {
		size_t count = ok[i].count;
		const char *p = path_in("v.npy");
		put_npy(p, ok[i].major, ok[i].hdr, count * mta_dtype_size(ok[i].dtype));
		struct mta_npy a;
		int rc = mta_npy_read(p, &a);
		CHECKF(rc == MTA_OK, "variant %zu: %s", i, mta_last_error());
		CHECK_EQ_INT(a.dtype, ok[i].dtype);
		CHECK_EQ_INT(a.ndim, ok[i].ndim);
		CHECK_EQ_INT(a.count, count);
		if (ok[i].ndim)
			CHECK_EQ_INT(a.shape[0], ok[i].d0);
		mta_npy_free(&a);
	}
}

TEST(npy_convert_goes_through_f32)
{
	float f[64];
	double d[64];
	uint16_t u[64];
	for (int i = 0; i < 64; i++) {
		d[i] = mt_uniform() * 1000.0;
		f[i] = (float)mt_uniform();
		u[i] = mta_f32_to_bf16(f[i]);
	}
	int64_t n = 64;
	/* uint16 bfloat16 bits, the documented convention */
	char hdr[] = "{'descr': '<u2', 'fortran_order': False, 'shape': (64,), }\n";
	const char *p = path_in("u.npy");
	put_npy(p, 1, hdr, 0);
	FILE *fh = fopen(p, "ab");
	REQUIRE(fh && fwrite(u, 2, 64, fh) == 64 && !fclose(fh));
	struct mta_npy a;
	REQUIRE(mta_npy_read(p, &a) == MTA_OK);
	REQUIRE(mta_npy_convert(&a, MTA_F32) == MTA_OK);
	CHECK_EQ_INT(a.dtype, MTA_F32);
	CHECK_EQ_INT(a.nbytes, 256);
	for (int i = 0; i < 64; i++)
		CHECKF(((float *)a.data)[i] == mta_bf16_to_f32(u[i]), "element %d", i);
	mta_npy_free(&a);

	REQUIRE(mta_npy_write(p, MTA_F64, 1, &n, d) == MTA_OK);
	REQUIRE(mta_npy_read(p, &a) == MTA_OK);
	REQUIRE(mta_npy_convert(&a, MTA_F16) == MTA_OK);
	for (int i = 0; i < 64; i++)
		CHECKF(((uint16_t *)a.data)[i] == mta_f32_to_f16((float)d[i]), "element %d", i);
	REQUIRE(mta_npy_convert(&a, MTA_F64) == MTA_OK);
	for (int i = 0; i < 64; i++)
		CHECKF(((double *)a.data)[i] == mta_f16_to_f32(mta_f32_to_f16((float)d[i])),
		       "element %d", i);
	CHECK(mta_npy_convert(&a, 7) == MTA_EINVAL);
	mta_npy_free(&a);
}

/* Every malformed file: status, file name and reason in the message. */
TEST(npy_refuses_malformed_files)
{
	static const struct { int major; const char *hdr; size_t payload; const char *why; } bad[] = {
		{ 1, "{'descr': '>f4', 'fortran_order': False, 'shape': (2,), }\n", 8, "big-endian" },
		{ 1, "{'descr': '<i4', 'fortran_order': False, 'shape': (2,), }\n", 8, "unsupported dtype descr '<i4'" },
		{ 1, "{'descr': '<c8', 'fortran_order': False, 'shape': (2,), }\n", 16, "unsupported dtype" },
		{ 1, "{'descr': '|f4', 'fortran_order': False, 'shape': (2,), }\n", 8, "unsupported dtype" },
		{ 1, "{'descr': '<V4', 'fortran_order': False, 'shape': (2,), }\n", 8, "unsupported dtype" },
		{ 1, "{'descr': '<f4', 'fortran_order': True, 'shape': (2,), }\n", 8, "fortran_order is True" },
		{ 1, "{'descr': '<f4', 'fortran_order': 0, 'shape': (2,), }\n", 8, "not True or False" },
		{ 1, "{'descr': '<f4', 'fortran_order': False, 'shape': (2,), \n", 8, "no closing '}'" },
		{ 1, "'descr': '<f4', 'fortran_order': False, 'shape': (2,), }\n", 8, "start of the header dict" },
		{ 1, "{'descr': '<f4', 'fortran_order': False, 'shape': (2,) x}\n", 8, "close the header dict" },
		{ 1, "{'descr': '<f4', 'fortran_order': False, 'shape': (2,)} x\n", 8, "text after the closing" },
		{ 1, "{'descr': '<f4', 'fortran_order': False}\n", 8, "no 'shape' key" },
		{ 1, "{'fortran_order': False, 'shape': (2,)}\n", 8, "no 'descr' key" },
		{ 1, "{'descr': '<f4', 'fortran_order': False, 'shape': (2,), 'x': 1}\n", 8, "unexpected key 'x'" },
		{ 1, "{'descr': '<f4', 'descr': '<f4', 'fortran_order': False, 'shape': (2,)}\n", 8, "appears twice" },
		{ 1, "{'descr': <f4, 'fortran_order': False, 'shape': (2,)}\n", 8, "descr is not a quoted string" },
		{ 1, "{'descr': '<f4, 'fortran_order': False, 'shape': (2,)}\n", 8, "malformed header" },
		{ 1, "{'descr': '<f4', 'fortran_order': False, 'shape': (2)}\n", 8, "not a tuple" },
		{ 1, "{'descr': '<f4', 'fortran_order': False, 'shape': (2 3)}\n", 24, "missing ','" },
		{ 1, "{'descr': '<f4', 'fortran_order': False, 'shape': (2, -3)}\n", 8, "negative dimension" },
		{ 1, "{'descr': '<f4', 'fortran_order': False, 'shape': (2, x)}\n", 8, "non-negative integers" },
		{ 1, "{'descr': '<f4', 'fortran_order': False, 'shape': (99999999999999999999,)}\n", 8,
		  "dimension above 2^48" },
		{ 1, "{'descr': '<f4', 'fortran_order': False, 'shape': (16777216, 16777216, 16777216)}\n", 8,
		  "more than 2^48 elements" },
		{ 1, "{'descr': '<f4', 'fortran_order': False, 'shape': (1,1,1,1,1,1,1,1,1)}\n", 4,
		  "more than 8 dimensions" },
		{ 1, "{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), }\n", 23, "truncated payload: 23 bytes" },
		{ 1, "{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), }\n", 25, "oversized payload: 25 bytes, 1 more" },
		{ 2, "{'descr': '<f8', 'fortran_order': False, 'shape': (2,), }\n", 0, "truncated payload" },
		{ 4, "{'descr': '<f4', 'fortran_order': False, 'shape': (2,), }\n", 8, "version 4.0" },
	};
	for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
		char name[32];
		snprintf(name, sizeof name, "bad%zu.npy", i);
		const char *p = path_in(name);
		put_npy(p, bad[i].major, bad[i].hdr, bad[i].payload);
		struct mta_npy a;
		int rc = mta_npy_read(p, &a);
		CHECKF(rc == MTA_EFORMAT, "case %zu (%s): status %s", i, bad[i].why, mta_status_name(rc));
		CHECK_STR_CONTAINS(mta_last_error(), p);
		CHECK_STR_CONTAINS(mta_last_error(), bad[i].why);
		CHECK(a.data == NULL);
		mta_npy_free(&a);
	}
}

/* Damage to the fixed prefix: magic, version, header length. */
TEST(npy_refuses_bad_prefix)
{
	static const struct { const char *bytes; size_t n; const char *why; } bad[] = {
		{ "", 0, "bad magic" },
		{ "\x93NUMP", 5, "bad magic" },
		{ "PK\x03\x04 not npy at all", 18, "bad magic" },
		{ "\x93NUMPY\x01", 7, "ends inside the format version" },
		{ "\x93NUMPY\x01\x00\x10", 9, "ends inside the header length" },
		{ "\x93NUMPY\x02\x00\x10\x00\x00", 11, "ends inside the header length" },
		{ "\x93NUMPY\x01\x00\x40\x00{'descr'", 17, "runs past the end of the file" },
		{ "\x93NUMPY\x01\x01\x00\x00", 10, "version 1.1" },
		{ "\x93NUMPY\x03\x00\xff\xff\xff\x7f", 12, "larger than" },
	};
	for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
		const char *p = path_in("prefix.npy");
		put_file(p, bad[i].bytes, bad[i].n);
		struct mta_npy a;
		int rc = mta_npy_read(p, &a);
		CHECKF(rc == MTA_EFORMAT, "case %zu: status %s", i, mta_status_name(rc));
		CHECK_STR_CONTAINS(mta_last_error(), p);
		CHECK_STR_CONTAINS(mta_last_error(), bad[i].why);
		mta_npy_free(&a);
		/* the in-memory parser refuses the same bytes for the same reason */
		rc = mta_npy_parse("mem.npy", bad[i].bytes, bad[i].n, &a);
		CHECK_EQ_INT(rc, MTA_EFORMAT);
		CHECK_STR_CONTAINS(mta_last_error(), "mem.npy");
		CHECK_STR_CONTAINS(mta_last_error(), bad[i].why);
		mta_npy_free(&a);
	}
}

TEST(npy_read_io_errors)
{
	struct mta_npy a;
	const char *p = path_in("missing.npy");
	CHECK_EQ_INT(mta_npy_read(p, &a), MTA_EIO);
	CHECK_STR_CONTAINS(mta_last_error(), p);
	CHECK_STR_CONTAINS(mta_last_error(), strerror(ENOENT));
	CHECK_EQ_INT(mta_npy_read(mt_tmpdir(), &a), MTA_EIO);
	CHECK_STR_CONTAINS(mta_last_error(), "not a regular file");
}

TEST(npy_parse_matches_read)
{
	float x[6];
	int64_t shape[2] = { 2, 3 };
	for (int i = 0; i < 6; i++)
		x[i] = (float)mt_uniform();
	const char *p = path_in("m.npy");
	REQUIRE(mta_npy_write(p, MTA_F32, 2, shape, x) == MTA_OK);
	FILE *f = fopen(p, "rb");
	unsigned char buf[256];
	size_t n = fread(buf, 1, sizeof buf, f);
	fclose(f);
	struct mta_npy a;
	REQUIRE(mta_npy_parse("m", buf, n, &a) == MTA_OK);
	CHECK_EQ_INT(a.ndim, 2);
	CHECK_EQ_INT(a.shape[1], 3);
	CHECK(!memcmp(a.data, x, sizeof x));
	mta_npy_free(&a);
	CHECK_EQ_INT(mta_npy_parse("m", buf, n - 1, &a), MTA_EFORMAT);
	CHECK_STR_CONTAINS(mta_last_error(), "truncated payload");
}

/* A failed write leaves the old file (or nothing) and no temporary. */
TEST(npy_write_is_atomic)
{
	float x[4] = { 1, 2, 3, 4 }, y[4];
	int64_t n = 4, big = 1 << 20;
	char sub[600], p[700];
	snprintf(sub, sizeof sub, "%s/out", mt_tmpdir());
	REQUIRE(mkdir(sub, 0777) == 0);

	/* into a folder that does not exist */
	snprintf(p, sizeof p, "%s/nope/o.npy", mt_tmpdir());
	CHECK_EQ_INT(mta_npy_write(p, MTA_F32, 1, &n, x), MTA_EIO);
	CHECK_STR_CONTAINS(mta_last_error(), p);
	CHECK(access(p, F_OK) != 0);

	/* over a directory: rename fails after the data were written */
	snprintf(p, sizeof p, "%s/dir.npy", sub);
	REQUIRE(mkdir(p, 0777) == 0);
	CHECK_EQ_INT(mta_npy_write(p, MTA_F32, 1, &n, x), MTA_EIO);
	CHECK_STR_CONTAINS(mta_last_error(), p);
	CHECK_EQ_INT(count_dir_entries(sub), 1);
	rmdir(p);

	/* bad arguments create nothing */
	snprintf(p, sizeof p, "%s/o.npy", sub);
	int64_t neg = -1;
	CHECK_EQ_INT(mta_npy_write(p, MTA_F32, 1, &neg, x), MTA_EINVAL);
	CHECK_EQ_INT(mta_npy_write(p, 9, 1, &n, x), MTA_EINVAL);
	CHECK_EQ_INT(mta_npy_write(p, MTA_F32, 9, &n, x), MTA_EINVAL);
	CHECK_EQ_INT(count_dir_entries(sub), 0);

	/* a write that fails half way (file size limit) keeps the old file */
	REQUIRE(mta_npy_write(p, MTA_F32, 1, &n, x) == MTA_OK);
	float *lots = calloc((size_t)big, sizeof *lots);
	signal(SIGXFSZ, SIG_IGN);
	struct rlimit rl = { 64 * 1024, 64 * 1024 };
	REQUIRE(setrlimit(RLIMIT_FSIZE, &rl) == 0);
	CHECK_EQ_INT(mta_npy_write(p, MTA_F32, 1, &big, lots), MTA_EIO);
	CHECK_STR_CONTAINS(mta_last_error(), "write failed");
	free(lots);
	CHECK_EQ_INT(count_dir_entries(sub), 1);
	struct mta_npy a;
	REQUIRE(mta_npy_read(p, &a) == MTA_OK);
	CHECK_EQ_INT(a.count, 4);
	memcpy(y, a.data, sizeof y);
	CHECK(!memcmp(x, y, sizeof x));
	mta_npy_free(&a);
}

/*
 * Issue 18: an empty descr read past the copied string (uninitialised bytes,
 * valgrind), a NUL inside the quotes cut the compared text short ('<f4\0junk'
 * passed as '<f4'), and bytes that are not printable reached the message raw.
 */
TEST(npy_refuses_empty_or_nul_descr_and_escapes_bytes)
{
#define H(s) s, sizeof(s) - 1
	static const struct { const char *hdr; size_t len; const char *why; } bad[] = {
		{ H("{'descr': '', 'fortran_order': False, 'shape': (2,), }\n"), "descr is empty" },
		{ H("{'descr': '<f4\0junk', 'fortran_order': False, 'shape': (2,), }\n"),
		  "descr holds a byte that is not printable (\\x00)" },
		{ H("{'desc\0': '<f4', 'fortran_order': False, 'shape': (2,), }\n"),
		  "a dict key holds a byte that is not printable (\\x00)" },
		{ H("{'descr': '\x1b[31m', 'fortran_order': False, 'shape': (2,), }\n"), "(\\x1b)" },
		{ H("{'descr'\x07 '<f4', 'fortran_order': False, 'shape': (2,), }\n"),
		  "'\\x07' found where" },
	};
#undef H
	for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
		char name[32];
		size_t hl = bad[i].len;
		unsigned char b[256];
		memcpy(b, "\x93NUMPY\x01\x00", 8);
		b[8] = (unsigned char)hl;
		b[9] = 0;
		memcpy(b + 10, bad[i].hdr, hl);
		memset(b + 10 + hl, 0x3f, 8);
		snprintf(name, sizeof name, "nul%zu.npy", i);
		const char *p = path_in(name);
		put_file(p, b, 10 + hl + 8);
		struct mta_npy a;
		int rc = mta_npy_read(p, &a);
		CHECKF(rc == MTA_EFORMAT, "case %zu: status %s", i, mta_status_name(rc));
		CHECK_STR_CONTAINS(mta_last_error(), bad[i].why);
		for (const char *s = mta_last_error(); *s; s++)
			CHECKF((unsigned char)*s >= 0x20 && (unsigned char)*s < 0x7f,
			       "case %zu: raw byte 0x%02x in the message", i, (unsigned char)*s);
		mta_npy_free(&a);
		rc = mta_npy_parse("mem.npy", b, 10 + hl + 8, &a);
		CHECK_EQ_INT(rc, MTA_EFORMAT);
		CHECK_STR_CONTAINS(mta_last_error(), bad[i].why);
		mta_npy_free(&a);
	}
	/* a file name with a control character is quoted escaped too */
	const char *p = path_in("bell\a.npy");
	put_file(p, "not numpy", 9);
	struct mta_npy a;
	CHECK_EQ_INT(mta_npy_read(p, &a), MTA_EFORMAT);
	CHECK_STR_CONTAINS(mta_last_error(), "bell\\x07.npy");
	mta_npy_free(&a);
}

/* Issue 18: opening a FIFO (or a device) as an input blocked until a writer came. */
TEST(npy_fifo_or_device_input_never_blocks)
{
	const char *p = path_in("fifo.npy");
	struct mta_npy a;
	REQUIRE(mkfifo(p, 0600) == 0);
	alarm(10); /* a blocked open ends the test here (SIGALRM) */
	CHECK_EQ_INT(mta_npy_read(p, &a), MTA_EIO);
	CHECK_STR_CONTAINS(mta_last_error(), "not a regular file");
	CHECK_EQ_INT(mta_npy_read("/dev/zero", &a), MTA_EIO);
	CHECK_STR_CONTAINS(mta_last_error(), "not a regular file");
	alarm(300);
}
