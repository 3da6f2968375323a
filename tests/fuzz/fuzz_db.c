/*
 * fuzz_db.c: libFuzzer target for database rows read back.
 *
 * The input is written to a file and opened as a tuning database, first
 * read-only with the integrity check, then for writing, then merged into a
 * fresh database as `mtatune db merge` merges a shard. Whatever the file
 * holds (not SQLite, a foreign SQLite file, a damaged page, our schema with
 * odd rows: NULLs, wrong types, unknown status names, dangling ids, T
 * buckets of 0, views or triggers that recurse for ever, device names and
 * specs with control characters), every call must return a status with a
 * message, never crash, leak or hang (statements run under a short time
 * limit here); rows that are read back are walked through every list and
 * get function. A file that opens is also exported (mtatune export): the
 * Makefile and the table it writes must hold printable text only, whatever
 * text the database held (seeds in corpus/db: hostile ones next to a tuned
 * file of schema version 1).
 */
#include "db/db.h"
#include "tuner/export/export.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static char path[64], wal[80], shm[80], out[64], out_wal[80], out_shm[80], outdir[80];

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	snprintf(path, sizeof path, "/tmp/fuzz_db.%d.db", (int)getpid());
	snprintf(wal, sizeof wal, "%s-wal", path);
	snprintf(shm, sizeof shm, "%s-shm", path);
	snprintf(out, sizeof out, "/tmp/fuzz_db.%d.out.db", (int)getpid());
	snprintf(out_wal, sizeof out_wal, "%s-wal", out);
	snprintf(out_shm, sizeof out_shm, "%s-shm", out);
	snprintf(outdir, sizeof outdir, "/tmp/fuzz_db.%d.lib", (int)getpid());
	/* a recursive view or trigger is stopped well inside libFuzzer's -timeout */
	setenv("MTATUNE_DB_QUERY_MS", "300", 1);
	return 0;
}

/* Every byte of file is printable ASCII, a tab or a newline (or the file is missing). */
static void printable_only(const char *file)
{
	FILE *f = fopen(file, "rb");
	int c;
	while (f && (c = fgetc(f)) != EOF)
		if ((c < 0x20 || c > 0x7e) && c != '\n' && c != '\t')
			abort();
	if (f)
		fclose(f);
}

/* Export the database and check what reached the generated text; remove it. */
static void export_it(void)
{
	struct mta_export_opts o = { .db_path = path, .out_dir = outdir, .name = "fz" };
	struct mta_export_summary s;
	char cmd[200], file[200];
	snprintf(cmd, sizeof cmd, "rm -rf '%s'", outdir);
	if (system(cmd) != 0)
		abort();
	int rc = mta_export(&o, &s);
	if (rc != MTA_OK && !mta_last_error()[0])
		abort();
	if (rc == MTA_OK) {
		snprintf(file, sizeof file, "%s/Makefile", outdir);
		printable_only(file);
		snprintf(file, sizeof file, "%s/src/fz_table.c", outdir);
		printable_only(file);
	}
	if (system(cmd) != 0)
		abort();
}

struct walk {
	struct mta_db *db;
	int64_t dev;
};

static int on_device(void *ctx, const struct mta_db_device *d)
{
	struct walk *w = ctx;
	if (!d->backend || !d->name || !d->arch)
		abort();
	w->dev = d->id;
	return 0;
}

static int on_problem(void *ctx, const struct mta_db_problem_info *p)
{
	struct walk *w = ctx;
	struct mta_db_winner win;
	if (!p->key)
		abort();
	mta_db_winner_get(w->db, w->dev, p->key, "fwd", 1, 100, &win);
	return 0;
}

static int on_result(void *ctx, const struct mta_db_result *r)
{
	struct walk *w = ctx;
	struct mta_db_variant v;
	struct mta_db_result again;
	if (!r->error || !r->run_id || !r->problem_key || !r->spec)
		abort();
	if (mta_result_status_name(r->status) == NULL)
		abort();
	mta_db_variant_get(w->db, r->variant_id, &v);
	mta_db_result_get(w->db, r->device_id, r->variant_id, r->T, r->B, &again);
	return 0;
}

static int on_winner(void *ctx, const struct mta_db_winner *x)
{
	if (!x->problem_key || !x->spec || !x->source_hash)
		abort();
	return 0;
}

static void walk(struct mta_db *db)
{
	struct walk w = { db, 0 };
	int v;
	mta_db_schema_version(db, &v);
	mta_db_list_devices(db, on_device, &w);
	mta_db_list_problems(db, on_problem, &w);
	mta_db_list_results(db, 0, NULL, on_result, &w);
	mta_db_list_winners(db, 0, NULL, on_winner, &w);
}

int LLVMFuzzerTestOneInput(const unsigned char *data, size_t n)
{
	struct mta_db *db = NULL;
	FILE *f = fopen(path, "wb");
	if (!f || fwrite(data, 1, n, f) != n || fclose(f))
		abort();
	unlink(wal);
	unlink(shm);
	for (int flags = MTA_DB_READONLY | MTA_DB_CHECK;; flags = MTA_DB_CHECK) {
		int rc = mta_db_open(path, flags, &db);
		if (rc) {
			if (!mta_last_error()[0])
				abort();
		} else {
			walk(db);
			if (!(flags & MTA_DB_READONLY)) { /* a write into whatever the file holds */
				int64_t id;
				mta_db_problem_upsert(db, "h1kv1d8-both-f32", &id);
			}
			mta_db_close(db);
			if (flags & MTA_DB_READONLY)
				export_it();
		}
		if (!(flags & MTA_DB_READONLY))
			break;
	}
	/* The merge: every row of the file, matched by natural keys, written into
	 * a fresh database, which must then read back like any other. */
	unlink(out);
	unlink(out_wal);
	unlink(out_shm);
	if (mta_db_open(out, 0, &db))
		abort();
	if (mta_db_merge(db, path) && !mta_last_error()[0])
		abort();
	walk(db);
	mta_db_close(db);
	unlink(out);
	unlink(out_wal);
	unlink(out_shm);
	unlink(path);
	unlink(wal);
	unlink(shm);
	return 0;
}
