/*
 * db_int.h: what the files in db/ share, and the hooks the tests use. Not
 * part of the public interface.
 */
#ifndef MTA_DB_INT_H
#define MTA_DB_INT_H

#include <sqlite3.h>

#include "db/db.h"
#include "runtime/core/error.h"

/* Files embedded at build time (gen/embed.sh): db/schema.sql, db/migrate_<N>.sql. */
const char *mta_embedded(const char *path);
typedef const char *(*mta_db_lookup_fn)(const char *path);

struct mta_db {
	sqlite3 *h;
	char *path;
	int readonly;
	int immutable;  /* opened with immutable=1 (a read-only WAL copy, see db_open.c) */
	double op_t0;   /* when the statement running now began (db_clock_start) */
	double limit_s; /* how long one may run before the progress handler stops it */
	int interrupted; /* the last statement was stopped for running too long */
	int group;      /* inside mta_db_begin() */
	int failed;     /* the group was rolled back after an error */
	char **keep;    /* strings handed out until the next call */
	size_t nkeep, capkeep;
};

/*
 * mta_db_open() with the schema version, the oldest version a read-only
 * handle reads unmigrated (read_min), and the source of the schema and
 * migrations as parameters: the tests migrate to a version this build does
 * not have.
 */
int mta_db_open_to(const char *path, int flags, int version, int read_min,
		   mta_db_lookup_fn lookup, struct mta_db **out);

/*
 * Start the clock of the time limit for the statement about to run:
 * db_prepare and db_exec call it; so must any other way a statement starts.
 */
void db_clock_start(struct mta_db *db);
/* "file:" URI of path for SQLite (every unsafe byte %-escaped), with query q ("" or "?..."). */
int db_uri(const char *path, const char *q, char *out, size_t n);

/* MTA_EDB naming the file, what failed, and SQLite's reason. */
int db_err(struct mta_db *db, const char *what);
int db_prepare(struct mta_db *db, sqlite3_stmt **st, const char *sql);
int db_exec(struct mta_db *db, const char *sql, const char *what);
/* Bind text, NULL as "". */
int db_text(sqlite3_stmt *st, int i, const char *s);
/* Bind a double, NaN (or any non-finite) as NULL. */
int db_real(sqlite3_stmt *st, int i, double x);
/* Column as double, NULL as NAN. */
double db_col_real(sqlite3_stmt *st, int i);

/*
 * Around every write: db_write_begin starts a transaction unless a group is
 * open (refusing a read-only handle); db_write_end(db, rc) commits on
 * MTA_OK, else rolls back (the whole group, if in one) and returns rc.
 */
int db_write_begin(struct mta_db *db, const char *what);
int db_write_end(struct mta_db *db, int rc);

/* Unix time as SQLite computes it, for recorded_at, updated_at and created_at. */
#define NOW_SQL "((julianday('now') - 2440587.5) * 86400.0)"

/* Helpers of db_read.c that db_write.c shares. */
extern const char *const db_compile_names[3];    /* MTA_COMPILE_* as stored */
/* Run a one-value lookup; MTA_ENOTFOUND (message "nf") when no row. */
int db_step_find(struct mta_db *db, sqlite3_stmt *st, int64_t *id, const char *nf);
int db_check_device(const struct mta_db_device *d);
void db_bind_device(sqlite3_stmt *st, const struct mta_db_device *d);
int db_check_binary_key(struct mta_db *db, const struct mta_db_binary_key *k);
void db_bind_binary_key(sqlite3_stmt *st, const struct mta_db_binary_key *k);

/* Forget the strings handed out by the previous call; keep a copy of s. */
void db_keep_reset(struct mta_db *db);
const char *db_keep(struct mta_db *db, const unsigned char *s);

#endif
