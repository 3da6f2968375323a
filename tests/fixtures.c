/* fixtures.c: see fixtures.h. */
#include "tests/fixtures.h"

#include <sqlite3.h>
#include "tests/harness.h"
#include "db/db.h"
#include "runtime/core/error.h"
#include "tuner/io/inputs.h"
#include "tuner/io/npy.h"
#include "gen/variant.h"

#include <dirent.h>
#include <sqlite3.h>
#include <stdarg.h>
#include <sys/stat.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static int cmp(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

char **mt_golden_cases(void)
{
	DIR *d = opendir(mt_golden_dir());
	if (!d)
		return NULL;
	size_t n = 0;
	char **v = calloc(64, sizeof *v);
	struct dirent *e;
	while (v && (e = readdir(d)))
		if (e->d_name[0] != '.' && e->d_type == DT_DIR && n < 63)
			v[n++] = strdup(e->d_name);
	closedir(d);
	if (v)
		qsort(v, n, sizeof *v, cmp);
	return v;
}

void mt_golden_free(char **cases)
{
	for (size_t i = 0; cases && cases[i]; i++)
		free(cases[i]);
	free(cases);
}

/* The text just after "key": in s, or NULL. */
static const char *field(const char *s, const char *key)
{
	char k[64];
	snprintf(k, sizeof k, "\"%s\"", key);
	const char *p = strstr(s, k);
	if (!p)
		return NULL;
	p += strlen(k);
	while (*p == ' ' || *p == ':' || *p == '\n' || *p == '\t')
		p++;
	return p;
}

int mt_golden_config(const char *dir, char *pad, size_t n, int *layer_id)
{
	char path[1024], buf[8192];
	snprintf(path, sizeof path, "%s/config.json", dir);
	FILE *f = fopen(path, "r");
	if (!f)
		return -1;
	size_t len = fread(buf, 1, sizeof buf - 1, f);
	fclose(f);
	buf[len] = 0;
	const char *p = field(buf, "pad_key");
	snprintf(pad, n, "both");
	if (p && *p == '"') {
		size_t m = strcspn(p + 1, "\"");
		snprintf(pad, n, "%.*s", (int)m, p + 1);
	}
	*layer_id = -1;
	p = field(buf, "layer_norm_rescale");
	if (p && !strncmp(p, "true", 4)) {
		p = field(buf, "layer_id");
		if (!p)
			return -1;
		*layer_id = atoi(p);
	}
	return 0;
}

int mt_golden_load(const char *name, struct mta_inputs *in, struct mta_npy *e)
{
	char dir[1024], pad[16], path[1100];
	int layer_id, rc;
	struct mta_input_options opt;
	memset(in, 0, sizeof *in);
	memset(e, 0, sizeof *e);
	snprintf(dir, sizeof dir, "%s/%s", mt_golden_dir(), name);
	mta_input_options_init(&opt);
	if (mt_golden_config(dir, pad, sizeof pad, &layer_id))
		return mta_fail(MTA_EIO, "%s/config.json: cannot read it or its layer_id", dir);
	if ((rc = mta_pad_parse(pad, &opt.pad)))
		return rc;
	opt.layer_id = layer_id;
	if ((rc = mta_inputs_load(dir, &opt, in)))
		return rc;
	snprintf(path, sizeof path, "%s/expected.npy", dir);
	if ((rc = mta_npy_read(path, e)) || (rc = mta_npy_convert(e, MTA_F64))) {
		mta_npy_free(e);
		mta_inputs_free(in);
	}
	return rc;
}

void mt_put_npy(const char *dir, const char *name, int ndim, ...)
{
	int64_t shape[8];
	size_t count = 1;
	va_list ap;
	va_start(ap, ndim);
	for (int i = 0; i < ndim; i++) {
		shape[i] = va_arg(ap, int64_t);
		count *= (size_t)shape[i];
	}
	va_end(ap);
	float *x = malloc(count * sizeof *x + 4);
	for (size_t i = 0; i < count; i++)
		x[i] = (float)mt_uniform();
	char path[700];
	snprintf(path, sizeof path, "%s/%s.npy", dir, name);
	if (mta_npy_write(path, MTA_F32, ndim, shape, x))
		mt_fail(__FILE__, __LINE__, "%s", mta_last_error());
	free(x);
}

const char *mt_small_case(const char *sub)
{
	static char dir[600];
	snprintf(dir, sizeof dir, "%s/%s", mt_tmpdir(), sub);
	mkdir(dir, 0777);
	mt_put_npy(dir, "q", 4, (int64_t)1, (int64_t)5, (int64_t)4, (int64_t)8);
	mt_put_npy(dir, "k", 4, (int64_t)1, (int64_t)5, (int64_t)2, (int64_t)8);
	mt_put_npy(dir, "v", 4, (int64_t)1, (int64_t)5, (int64_t)2, (int64_t)8);
	return dir;
}

char *mt_sql_rows(const char *db, const char *sql)
{
	sqlite3 *h = NULL;
	sqlite3_stmt *st;
	size_t cap = 1 << 16, n = 0;
	char *out = calloc(1, cap);
	if (out && sqlite3_open_v2(db, &h, SQLITE_OPEN_READONLY, NULL) == SQLITE_OK &&
	    sqlite3_prepare_v2(h, sql, -1, &st, NULL) == SQLITE_OK) {
		sqlite3_busy_timeout(h, 5000);
		while (sqlite3_step(st) == SQLITE_ROW && n < cap - 512) {
			for (int c = 0; c < sqlite3_column_count(st); c++) {
				const char *t = (const char *)sqlite3_column_text(st, c);
				n += (size_t)snprintf(out + n, cap - n, "%s%s", c ? "|" : "", t ? t : "");
			}
			n += (size_t)snprintf(out + n, cap - n, "\n");
		}
		sqlite3_finalize(st);
	}
	sqlite3_close(h);
	return out;
}

void mt_cuda_winner_db(const char *db, const char *key)
{
	struct mta_db *h;
	struct mta_db_device dev = { .backend = "cuda", .name = "NVIDIA H100 80GB HBM3",
				     .arch = "sm_90", .driver = "580", .nvrtc = "13.0",
				     .cores = 132 };
	struct mta_problem p;
	struct mta_variant v;
	char spec[MTA_SPEC_MAX];
	int64_t dev_id, prob_id, var_id;
	REQUIRE(mta_problem_from_key(key, &p) == MTA_OK);
	REQUIRE(mta_variant_default(&p, MTA_BACKEND_CUDA, &v) == MTA_OK);
	REQUIRE(mta_variant_format(&v, spec, sizeof spec) == MTA_OK);
	REQUIRE(mta_db_open(db, 0, &h) == MTA_OK);
	REQUIRE(mta_db_device_upsert(h, &dev, &dev_id) == MTA_OK);
	REQUIRE(mta_db_problem_upsert(h, key, &prob_id) == MTA_OK);
	REQUIRE(mta_db_variant_upsert(h, prob_id, spec, "", &var_id) == MTA_OK);
	struct mta_db_winner w = { .device_id = dev_id, .problem_id = prob_id,
				   .variant_id = var_id, .T = 1024, .B = 1, .time_ms = 0.1 };
	REQUIRE(mta_db_winner_set(h, &w) == MTA_OK);
	mta_db_close(h);
}

long long mt_db_count(const char *db, const char *sql)
{
	sqlite3 *h;
	sqlite3_stmt *st;
	long long n = -1;
	if (sqlite3_open_v2(db, &h, SQLITE_OPEN_READONLY, NULL) == SQLITE_OK &&
	    sqlite3_prepare_v2(h, sql, -1, &st, NULL) == SQLITE_OK) {
		sqlite3_busy_timeout(h, 5000);
		if (sqlite3_step(st) == SQLITE_ROW)
			n = sqlite3_column_int64(st, 0);
		sqlite3_finalize(st);
	}
	sqlite3_close(h);
	return n;
}

pid_t mt_spawn_pipe(char *const argv[], int *fd)
{
	int p[2];
	if (pipe(p))
		return -1;
	fflush(NULL);
	pid_t pid = fork();
	if (pid == 0) {
		close(p[0]);
		dup2(p[1], 1);
		dup2(p[1], 2);
		close(p[1]);
		execvp(argv[0], argv);
		_exit(98);
	}
	close(p[1]);
	*fd = p[0];
	return pid;
}

int mt_read_lines(int fd, int lines, double *gap)
{
	int seen = 0;
	double last = -1, now;
	char c;
	struct timespec ts;
	*gap = 0;
	while (seen < lines && read(fd, &c, 1) == 1) {
		if (c != '\n')
			continue;
		clock_gettime(CLOCK_MONOTONIC, &ts);
		now = (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
		if (last >= 0)
			*gap = now - last;
		last = now;
		seen++;
	}
	return seen;
}

void mt_put_ints(const char *path, const char *descr, const char *shape, const int64_t *x,
		 int n)
{
	char hdr[128];
	int len = snprintf(hdr, sizeof hdr, "{'descr': '%s', 'fortran_order': False, 'shape': %s, }",
			   descr, shape);
	while ((10 + len + 1) % 64)
		hdr[len++] = ' ';
	hdr[len++] = '\n';
	FILE *f = fopen(path, "wb");
	REQUIRE(f);
	unsigned char pre[10] = { 0x93, 'N', 'U', 'M', 'P', 'Y', 1, 0, (unsigned char)len,
				  (unsigned char)(len >> 8) };
	fwrite(pre, 1, 10, f);
	fwrite(hdr, 1, (size_t)len, f);
	for (int i = 0; i < n; i++) {
		int32_t v32 = (int32_t)x[i];
		if (descr[2] == '4')
			fwrite(&v32, 4, 1, f);
		else
			fwrite(&x[i], 8, 1, f);
	}
	REQUIRE(fclose(f) == 0);
}
