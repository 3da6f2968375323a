/*
 * db_open.c: finding, opening, checking, creating and migrating the tuning
 * database, and the transaction helpers every write goes through.
 *
 * Opening classifies the file before trusting it:
 *   missing or empty file       -> new: gets db/schema.sql (not read-only)
 *   not a regular file          -> refused: MTA_EFORMAT (a FIFO is never read)
 *   not starting "SQLite format 3" -> refused: not an SQLite file (MTA_EFORMAT)
 *   SQLite, application_id ours -> its user_version must be 1..current;
 *                                  older ones are migrated, newer refused
 *   SQLite, no tables, id 0     -> new (an empty database someone made)
 *   any other SQLite file       -> refused: not an mtatune database (MTA_EFORMAT)
 *   unreadable pages            -> refused: damaged, MTA_EDB (SQLite checks the page
 *                                  count in the header against the file size
 *                                  on the first read, so truncation shows)
 *   one of the schema's tables     -> refused: damaged (a view there could
 *   not a table                       recurse for ever)
 * Creation and migration run inside BEGIN IMMEDIATE and re-read the version
 * there, so two processes opening a new file at once create it once.
 *
 * A read-only copy of a WAL database, in a folder the reader cannot write,
 * cannot be read the usual way: SQLite must create its -shm beside it. Such
 * a file is opened again with immutable=1 (no locks, no -shm), which is
 * exact as long as nothing can write it, and nothing can: a writer would
 * have to create the -wal in that folder. If a -wal with changes is there
 * already, immutable would not see them: that copy is refused, saying how
 * to make one that can be read.
 *
 * Every statement runs under a time limit (MTA_DB_QUERY_TIMEOUT_MS): the
 * progress handler stops one that runs longer, so that no view or trigger
 * of a hostile file can hang a command.
 */
#define _GNU_SOURCE
#include "db/db_int.h"
#include "runtime/core/strbuf.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

/* ---- errors, statements, binding --------------------------------------- */

static double now_s(void);

/* The progress handler: non-zero stops the statement (SQLITE_INTERRUPT). */
static int progress(void *ctx)
{
	struct mta_db *db = ctx;
	if (now_s() - db->op_t0 <= db->limit_s)
		return 0;
	db->interrupted = 1;
	return 1;
}

void db_clock_start(struct mta_db *db)
{
	db->op_t0 = now_s();
	db->interrupted = 0;
}

int db_uri(const char *path, const char *q, char *out, size_t n)
{
	size_t k = (size_t)snprintf(out, n, "file:%s", path[0] == '/' ? "//" : "");
	for (const unsigned char *p = (const unsigned char *)path; *p && k + 4 < n; p++) {
		if ((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') || (*p >= '0' && *p <= '9') ||
		    strchr("/._-~", *p))
			out[k++] = (char)*p;
		else
			k += (size_t)snprintf(out + k, n - k, "%%%02X", *p);
	}
	if (k + strlen(q) + 1 > n)
		return mta_fail(MTA_EINVAL, "database path too long: %s", path);
	snprintf(out + k, n - k, "%s", q);
	return MTA_OK;
}

int db_err(struct mta_db *db, const char *what)
{
	int code = sqlite3_errcode(db->h) & 0xff;
	const char *why = sqlite3_errmsg(db->h);
	if (code == SQLITE_INTERRUPT && db->interrupted)
		return mta_fail(MTA_EDB, "database %s: cannot %s: a statement ran for over %.1f s and "
				"was stopped (a view or trigger of the file that never ends?); "
				"$MTATUNE_DB_QUERY_MS sets the limit", db->path, what, db->limit_s);
	if (code == SQLITE_CORRUPT || code == SQLITE_NOTADB)
		return mta_fail(MTA_EDB, "database %s is damaged (SQLite: %s) while trying to %s; "
				"it may be truncated or overwritten: restore it from a copy or "
				"remove it to start afresh", db->path, why, what);
	if (code == SQLITE_READONLY)
		return mta_fail(MTA_EDB, "database %s: cannot %s: the file is read-only (%s)",
				db->path, what, why);
	/* SQLite reports a full disk (ENOSPC) as SQLITE_FULL, but a file size
	 * limit (EFBIG) or a quota only as a failed write; errno may be stale. */
	int ext = sqlite3_extended_errcode(db->h), sys = sqlite3_system_errno(db->h);
	int full = sys == ENOSPC || sys == EFBIG || sys == EDQUOT;
	if (code == SQLITE_FULL || ext == SQLITE_IOERR_WRITE || full)
		return mta_fail(MTA_EDB, "database %s: cannot %s: writing to the disk failed (%s%s%s): "
				"the disk may be full or a file size limit reached; the write was "
				"rolled back and what was recorded before stays", db->path, what, why,
				full ? ", " : "", full ? strerror(sys) : "");
	return mta_fail(MTA_EDB, "database %s: cannot %s: %s", db->path, what, why);
}

int db_prepare(struct mta_db *db, sqlite3_stmt **st, const char *sql)
{
	db_clock_start(db);
	if (sqlite3_prepare_v2(db->h, sql, -1, st, NULL) != SQLITE_OK) {
		*st = NULL;
		return db_err(db, "prepare a statement");
	}
	return MTA_OK;
}

int db_exec(struct mta_db *db, const char *sql, const char *what)
{
	db_clock_start(db);
	if (sqlite3_exec(db->h, sql, NULL, NULL, NULL) != SQLITE_OK)
		return db_err(db, what);
	return MTA_OK;
}

int db_text(sqlite3_stmt *st, int i, const char *s)
{
	return sqlite3_bind_text(st, i, s ? s : "", -1, SQLITE_TRANSIENT);
}

int db_real(sqlite3_stmt *st, int i, double x)
{
	return isfinite(x) ? sqlite3_bind_double(st, i, x) : sqlite3_bind_null(st, i);
}

double db_col_real(sqlite3_stmt *st, int i)
{
	return sqlite3_column_type(st, i) == SQLITE_NULL ? NAN : sqlite3_column_double(st, i);
}

void db_keep_reset(struct mta_db *db)
{
	for (size_t i = 0; i < db->nkeep; i++)
		free(db->keep[i]);
	db->nkeep = 0;
}

/* A copy of s that lives until the next db_keep_reset; "" if out of memory. */
const char *db_keep(struct mta_db *db, const unsigned char *s)
{
	if (!s)
		return "";
	if (db->nkeep == db->capkeep) {
		size_t cap = db->capkeep ? 2 * db->capkeep : 16;
		char **k = realloc(db->keep, cap * sizeof *k);
		if (!k)
			return "";
		db->keep = k;
		db->capkeep = cap;
	}
	char *c = strdup((const char *)s);
	if (!c)
		return "";
	db->keep[db->nkeep++] = c;
	return c;
}

/* ---- transactions ---------------------------------------------------------- */

static double now_s(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/*
 * How long to wait for another writer: MTA_DB_BUSY_TIMEOUT_MS, or
 * $MTATUNE_DB_BUSY_MS when set to a whole number of milliseconds (the fault
 * tests use it to see a held lock time out in well under a second).
 */
static int busy_ms(void)
{
	const char *e = getenv("MTATUNE_DB_BUSY_MS");
	char *end;
	long v = e && *e ? strtol(e, &end, 10) : -1;
	return e && *e && !*end && v >= 0 && v <= 3600000 ? (int)v : MTA_DB_BUSY_TIMEOUT_MS;
}

/*
 * BEGIN IMMEDIATE takes the write lock at once, so a transaction never fails
 * half way for want of it. SQLite's busy handler waits for the lock; some
 * BUSY cases (WAL recovery by another process) skip the handler, so retry
 * here as well, up to the same timeout.
 */
static int begin_immediate(struct mta_db *db)
{
	double t0 = now_s();
	for (;;) {
		db_clock_start(db);
		int rc = sqlite3_exec(db->h, "BEGIN IMMEDIATE", NULL, NULL, NULL);
		if (rc == SQLITE_OK)
			return MTA_OK;
		if ((rc & 0xff) != SQLITE_BUSY && (rc & 0xff) != SQLITE_LOCKED)
			return db_err(db, "begin a transaction");
		if (now_s() - t0 > busy_ms() / 1000.0)
			return mta_fail(MTA_EDB, "database %s: cannot begin a transaction: another "
					"process has held the write lock for over %.1f s",
					db->path, busy_ms() / 1000.0);
		usleep(5000);
	}
}

static void rollback_quietly(struct mta_db *db)
{
	int interrupted = db->interrupted;
	db_clock_start(db);
	if (!sqlite3_get_autocommit(db->h))
		sqlite3_exec(db->h, "ROLLBACK", NULL, NULL, NULL);
	db->interrupted = interrupted;
}

int db_write_begin(struct mta_db *db, const char *what)
{
	if (db->readonly)
		return mta_fail(MTA_EDB, "database %s is open read-only: cannot %s", db->path, what);
	if (db->group && db->failed)
		return mta_fail(MTA_EDB, "database %s: cannot %s: the transaction was rolled back "
				"after an earlier error", db->path, what);
	return db->group ? MTA_OK : begin_immediate(db);
}

int db_write_end(struct mta_db *db, int rc)
{
	if (rc != MTA_OK) {
		rollback_quietly(db);
		if (db->group)
			db->failed = 1;
		return rc;
	}
	if (db->group)
		return MTA_OK;
	db_clock_start(db);
	if (sqlite3_exec(db->h, "COMMIT", NULL, NULL, NULL) != SQLITE_OK) {
		rc = db_err(db, "commit");
		rollback_quietly(db);
	}
	return rc;
}

int mta_db_begin(struct mta_db *db)
{
	if (db->group)
		return mta_fail(MTA_EINVAL, "database %s: a transaction is already open "
				"(mta_db_begin does not nest)", db->path);
	int rc = db_write_begin(db, "begin a transaction");
	if (rc == MTA_OK) {
		db->group = 1;
		db->failed = 0;
	}
	return rc;
}

int mta_db_commit(struct mta_db *db)
{
	if (!db->group)
		return mta_fail(MTA_EINVAL, "database %s: commit without mta_db_begin", db->path);
	int failed = db->failed;
	db->group = db->failed = 0;
	if (failed)
		return mta_fail(MTA_EDB, "database %s: nothing committed: the transaction was "
				"rolled back after an earlier error", db->path);
	return db_write_end(db, MTA_OK);
}

int mta_db_rollback(struct mta_db *db)
{
	if (!db->group)
		return mta_fail(MTA_EINVAL, "database %s: rollback without mta_db_begin", db->path);
	db->group = db->failed = 0;
	rollback_quietly(db);
	return MTA_OK;
}

/* ---- where the database lives ---------------------------------------------- */

int mta_db_default_path(char *buf, size_t n)
{
	const char *env = getenv("MTATUNE_DB");
	int len;
	if (env && *env) {
		len = snprintf(buf, n, "%s", env);
	} else {
		const char *home = getenv("HOME");
		if (!home || !*home)
			return mta_fail(MTA_EINVAL, "no database given: set MTATUNE_DB, use --db PATH, "
					"or set HOME (the default is ~/.cache/mtatune/mta.db)");
		len = snprintf(buf, n, "%s/.cache/mtatune/mta.db", home);
	}
	if (len < 0 || (size_t)len >= n)
		return mta_fail(MTA_EINVAL, "database path too long (over %zu bytes)", n);
	if (env && *env)
		return MTA_OK;
	/*
	 * The database keeps compiled kernels that are loaded and run: its
	 * default folder must be this user's and closed to others' writes (as
	 * the kernel cache's), or another user could plant one. (A path given by
	 * MTATUNE_DB or --db is the caller's choice.)
	 */
	struct stat st;
	buf[len - 7] = 0; /* the folder: without "/mta.db" */
	const int there = stat(buf, &st) == 0;
	buf[len - 7] = '/';
	if (there && (!S_ISDIR(st.st_mode) || st.st_uid != geteuid() || (st.st_mode & 022)))
		return mta_fail(MTA_EIO, "the default database's folder %.*s is %s: another user "
				"could plant kernels in its database, so it is not used; fix it "
				"(chmod go-w, or remove it), or set MTATUNE_DB or --db to a "
				"database of your own", len - 7, buf,
				!S_ISDIR(st.st_mode) ? "not a folder" : st.st_uid != geteuid() ?
				"owned by another user" : "writable by group or others");
	return MTA_OK;
}

/* mkdir -p of the folder holding path. */
static int make_parent(const char *path)
{
	char dir[PATH_MAX];
	if (snprintf(dir, sizeof dir, "%s", path) >= (int)sizeof dir)
		return mta_fail(MTA_EINVAL, "database path too long: %s", path);
	char *slash = strrchr(dir, '/');
	if (!slash || slash == dir)
		return MTA_OK;
	*slash = 0;
	for (char *p = dir + 1; ; p++) {
		if (*p != '/' && *p)
			continue;
		char c = *p;
		*p = 0;
		if (mkdir(dir, 0700) != 0 && errno != EEXIST) /* private: the database runs code */
			return mta_fail(MTA_EIO, "cannot create folder %s for database %s: %s",
					dir, path, strerror(errno));
		*p = c;
		if (!c)
			break;
	}
	return MTA_OK;
}

/*
 * Look at the file before SQLite does: *fresh is set when it is missing or
 * empty. A file that is not SQLite is refused here with a plain reason. It
 * is opened without blocking (a FIFO would wait for a writer) and its type
 * checked on that descriptor, before a byte is read.
 */
static int sniff(const char *path, int flags, int *fresh)
{
	struct stat sb;
	*fresh = 0;
	int fd = open(path, O_RDONLY | O_NONBLOCK | O_NOCTTY | O_CLOEXEC);
	if (fd < 0 && errno == ENOENT) {
		if (flags & MTA_DB_READONLY)
			return mta_fail(MTA_ENOTFOUND, "database %s does not exist", path);
		/* a dangling link: SQLite would create the file it names, wherever */
		if (lstat(path, &sb) == 0 && S_ISLNK(sb.st_mode))
			return mta_fail(MTA_EIO, "database %s is a symbolic link to a file that does "
					"not exist: a database is never created through a link "
					"(create it at the link's target, or remove the link)", path);
		*fresh = 1;
		return MTA_OK;
	}
	if (fd < 0 && errno == EISDIR)
		return mta_fail(MTA_EFORMAT, "database %s is not a regular file (a folder)", path);
	if (fd < 0)
		return mta_fail(MTA_EIO, "cannot read database %s: %s", path, strerror(errno));
	if (fstat(fd, &sb) != 0 || !S_ISREG(sb.st_mode)) {
		close(fd);
		return mta_fail(MTA_EFORMAT, "database %s is not a regular file", path);
	}
	if (sb.st_size == 0) {
		close(fd);
		if (flags & MTA_DB_READONLY)
			return mta_fail(MTA_EFORMAT, "database %s is empty: not an mtatune database "
					"yet", path);
		*fresh = 1;
		return MTA_OK;
	}
	char head[16] = { 0 };
	ssize_t got = read(fd, head, sizeof head);
	close(fd);
	if (got < (ssize_t)sizeof head || memcmp(head, "SQLite format 3", 16) != 0)
		return mta_fail(MTA_EFORMAT, "%s is not an mtatune database: it is not an SQLite "
				"file at all", path);
	return MTA_OK;
}

/* ---- schema ------------------------------------------------------------------ */

struct marker {
	int app, version, objects;
	char format[16];
};

static int int_query(struct mta_db *db, const char *sql, int *v)
{
	sqlite3_stmt *st;
	int rc = db_prepare(db, &st, sql);
	if (rc)
		return rc;
	if (sqlite3_step(st) == SQLITE_ROW)
		*v = sqlite3_column_int(st, 0);
	else
		rc = db_err(db, "read the schema marker");
	sqlite3_finalize(st);
	return rc;
}

static int read_marker(struct mta_db *db, struct marker *m)
{
	memset(m, 0, sizeof *m);
	int rc = int_query(db, "PRAGMA application_id", &m->app);
	if (!rc)
		rc = int_query(db, "PRAGMA user_version", &m->version);
	if (!rc)
		rc = int_query(db, "SELECT count(*) FROM sqlite_schema", &m->objects);
	if (rc || m->app != MTA_DB_APPLICATION_ID || m->objects == 0)
		return rc;
	sqlite3_stmt *st;
	db_clock_start(db);
	if (sqlite3_prepare_v2(db->h, "SELECT value FROM meta WHERE key = 'format'", -1, &st,
			       NULL) != SQLITE_OK)
		return MTA_OK; /* no meta table: judged by the caller */
	if (sqlite3_step(st) == SQLITE_ROW)
		snprintf(m->format, sizeof m->format, "%s", (const char *)sqlite3_column_text(st, 0));
	else if (sqlite3_errcode(db->h) != SQLITE_DONE)
		rc = db_err(db, "read the meta table");
	sqlite3_finalize(st);
	return rc;
}

/*
 * What to do with a file with marker m: 0 nothing, 1 create, 2 migrate; or
 * refuse it with a message.
 */
static int judge(struct mta_db *db, const struct marker *m, int want, int *todo)
{
	*todo = 0;
	if (m->app == 0 && m->objects == 0 && m->version == 0) {
		*todo = 1;
		return MTA_OK;
	}
	if (m->app != MTA_DB_APPLICATION_ID)
		return mta_fail(MTA_EFORMAT, "%s is not an mtatune database: it is an SQLite file "
				"without the mtatune marker (application_id %d, %d schema objects)",
				db->path, m->app, m->objects);
	if (m->version > want)
		return mta_fail(MTA_EDB, "database %s has schema version %d; this mtatune "
				"understands up to %d; upgrade mtatune", db->path, m->version, want);
	if (m->version < 1 || strcmp(m->format, "mtatune") != 0)
		return mta_fail(MTA_EDB, "database %s is damaged: it carries the mtatune marker "
				"but its schema is incomplete (version %d, format '%s')",
				db->path, m->version, m->format);
	*todo = m->version < want ? 2 : 0;
	return MTA_OK;
}

/* Apply one embedded SQL file; "what" names it in a failure. */
static int apply(struct mta_db *db, mta_db_lookup_fn lookup, const char *file)
{
	const char *sql = lookup(file);
	if (!sql)
		return mta_fail(MTA_EDB, "database %s: this build lacks %s, needed to create or "
				"migrate the schema", db->path, file);
	char what[128];
	snprintf(what, sizeof what, "apply %s", file);
	return db_exec(db, sql, what);
}

/* Create or migrate to version want, in one transaction (see the file comment). */
static int upgrade(struct mta_db *db, int want, mta_db_lookup_fn lookup)
{
	struct marker m;
	int todo, rc = begin_immediate(db);
	if (rc)
		return rc;
	rc = read_marker(db, &m);
	if (!rc)
		rc = judge(db, &m, want, &todo);
	if (!rc && todo == 1) {
		rc = apply(db, lookup, "db/schema.sql");
		if (!rc)
			rc = read_marker(db, &m);
		if (!rc && (m.version != want || m.app != MTA_DB_APPLICATION_ID))
			rc = mta_fail(MTA_EDB, "database %s: db/schema.sql made version %d, expected %d",
				      db->path, m.version, want);
	}
	/* Every step must be in this build before the first is taken. */
	for (int v = m.version + 1; !rc && todo == 2 && v <= want; v++) {
		char file[64];
		snprintf(file, sizeof file, "db/migrate_%d.sql", v);
		if (!lookup(file))
			rc = mta_fail(MTA_EDB, "database %s has schema version %d; this build lacks "
				      "%s, needed to migrate it to %d", db->path, m.version, file, want);
	}
	for (int v = m.version + 1; !rc && todo == 2 && v <= want; v++) {
		char file[64], sql[64];
		snprintf(file, sizeof file, "db/migrate_%d.sql", v);
		snprintf(sql, sizeof sql, "PRAGMA user_version = %d", v);
		rc = apply(db, lookup, file);
		if (!rc)
			rc = db_exec(db, sql, "set the schema version");
		if (rc)
			mta_wrap(rc, "migrating from schema version %d to %d", v - 1, v);
	}
	if (!rc)
		db_clock_start(db);
	if (!rc && sqlite3_exec(db->h, "COMMIT", NULL, NULL, NULL) != SQLITE_OK)
		rc = db_err(db, "commit the new schema");
	if (rc)
		rollback_quietly(db);
	return rc;
}

/* journal_mode=WAL needs a moment of exclusive access: retry while busy. */
static int set_wal(struct mta_db *db)
{
	double t0 = now_s();
	for (;;) {
		sqlite3_stmt *st;
		int rc = db_prepare(db, &st, "PRAGMA journal_mode = WAL");
		if (rc)
			return rc;
		int s = sqlite3_step(st);
		int ok = s == SQLITE_ROW &&
			 !sqlite3_stricmp((const char *)sqlite3_column_text(st, 0), "wal");
		sqlite3_finalize(st);
		if (ok)
			return MTA_OK;
		if ((s & 0xff) != SQLITE_BUSY || now_s() - t0 > busy_ms() / 1000.0)
			return s == SQLITE_ROW
				? mta_fail(MTA_EDB, "database %s: cannot switch to WAL mode "
					   "(its file system may not support it)", db->path)
				: db_err(db, "switch to WAL mode");
		usleep(5000);
	}
}

static int quick_check(struct mta_db *db)
{
	sqlite3_stmt *st;
	int rc = db_prepare(db, &st, "PRAGMA quick_check(1)");
	if (rc)
		return rc;
	if (sqlite3_step(st) != SQLITE_ROW)
		rc = db_err(db, "check its integrity");
	else if (strcmp((const char *)sqlite3_column_text(st, 0), "ok") != 0)
		rc = mta_fail(MTA_EDB, "database %s is damaged: %s", db->path,
			      (const char *)sqlite3_column_text(st, 0));
	sqlite3_finalize(st);
	return rc;
}

/* The time limit of one statement: $MTATUNE_DB_QUERY_MS, else MTA_DB_QUERY_TIMEOUT_MS. */
static double query_limit_s(void)
{
	const char *e = getenv("MTATUNE_DB_QUERY_MS");
	char *end;
	long v = e && *e ? strtol(e, &end, 10) : -1;
	return (e && *e && !*end && v > 0 && v <= 86400000 ? v : MTA_DB_QUERY_TIMEOUT_MS) / 1000.0;
}

/* Open db->h on db->path (as a URI, query q appended): busy timeout, time limit. */
static int connect_to(struct mta_db *db, const char *q)
{
	char uri[PATH_MAX * 3 + 64];
	int rc = db_uri(db->path, q, uri, sizeof uri);
	if (rc)
		return rc;
	int oflags = (db->readonly ? SQLITE_OPEN_READONLY : SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE)
		     | SQLITE_OPEN_URI;
	if (sqlite3_open_v2(uri, &db->h, oflags, NULL) != SQLITE_OK)
		return db->h ? db_err(db, "open it")
			     : mta_fail(MTA_ENOMEM, "out of memory opening database %s", db->path);
	sqlite3_extended_result_codes(db->h, 1);
	sqlite3_busy_timeout(db->h, busy_ms());
	sqlite3_progress_handler(db->h, 1000, progress, db);
	return MTA_OK;
}

/*
 * The marker, in one read transaction so that it is one snapshot: another
 * process may be creating the schema right now.
 */
static int first_read(struct mta_db *db, struct marker *m, int *code)
{
	int rc = db_exec(db, "BEGIN", "begin reading");
	if (!rc)
		rc = read_marker(db, m);
	*code = sqlite3_errcode(db->h) & 0xff; /* before the rollback resets it */
	rollback_quietly(db);
	return rc;
}

/* A read-only WAL file whose -shm cannot be made: immutable, when that is exact (file comment). */
static int open_immutable(struct mta_db *db)
{
	char wal[PATH_MAX + 8];
	struct stat st;
	snprintf(wal, sizeof wal, "%s-wal", db->path);
	if (stat(wal, &st) == 0 && st.st_size > 0)
		return mta_fail(MTA_EDB, "database %s cannot be read here: it is in WAL mode, its "
				"-wal (%s) still holds changes, and its -shm cannot be created beside "
				"it (the folder is not writable); read it where it can be written, or "
				"copy it after sqlite3 FILE 'PRAGMA wal_checkpoint(TRUNCATE)'",
				db->path, wal);
	sqlite3_close_v2(db->h);
	db->h = NULL;
	db->immutable = 1;
	return connect_to(db, "?immutable=1");
}

/* The schema's tables must be tables: a view in the place of one could recurse for ever. */
static int check_tables(struct mta_db *db)
{
	sqlite3_stmt *st;
	int rc = db_prepare(db, &st, "SELECT name, type FROM sqlite_schema WHERE name IN ('meta', "
			    "'devices', 'problems', 'variants', 'results', 'winners', 'binaries') "
			    "AND type <> 'table' ORDER BY name LIMIT 1");
	if (rc)
		return rc;
	int s = sqlite3_step(st);
	if (s == SQLITE_ROW) {
		char name[64], type[64];
		mta_escape_str((const char *)sqlite3_column_text(st, 0), name, sizeof name);
		mta_escape_str((const char *)sqlite3_column_text(st, 1), type, sizeof type);
		rc = mta_fail(MTA_EDB, "database %s is damaged: %s is a %s, not a table", db->path,
			      name, type);
	} else if (s != SQLITE_DONE) {
		rc = db_err(db, "read its schema");
	}
	sqlite3_finalize(st);
	return rc;
}

int mta_db_open_to(const char *path, int flags, int want, int read_min,
		   mta_db_lookup_fn lookup, struct mta_db **out)
{
	char def[PATH_MAX];
	struct mta_db *db = NULL;
	struct marker m;
	int fresh, todo, rc;

	*out = NULL;
	if (!path) {
		if ((rc = mta_db_default_path(def, sizeof def)))
			return rc;
		if (!(flags & MTA_DB_READONLY) && (rc = make_parent(def)))
			return rc;
		path = def;
	}
	if ((rc = sniff(path, flags, &fresh)))
		return rc;
	db = calloc(1, sizeof *db);
	if (!db || !(db->path = strdup(path))) {
		rc = mta_fail(MTA_ENOMEM, "out of memory opening database %s", path);
		goto out;
	}
	db->readonly = !!(flags & MTA_DB_READONLY);
	db->limit_s = query_limit_s();
	if ((rc = connect_to(db, "")))
		goto out;
	int code;
	rc = first_read(db, &m, &code);
	if (rc && db->readonly && (code == SQLITE_READONLY || code == SQLITE_CANTOPEN)) {
		if ((rc = open_immutable(db)))
			goto out;
		rc = first_read(db, &m, &code);
	}
	if (rc || (rc = judge(db, &m, want, &todo)))
		goto out;
	/* an older schema that this build reads as it is: no migration to read it */
	if (db->readonly && todo == 2 && m.version >= read_min)
		todo = 0;
	if (db->readonly && todo)
		rc = todo == 1 ? mta_fail(MTA_EFORMAT, "database %s has no mtatune schema yet and is "
					  "open read-only", path)
			       : mta_fail(MTA_EDB, "database %s has schema version %d and needs "
					  "migrating to %d; open it once for writing", path,
					  m.version, want);
	if (rc || (m.objects && (rc = check_tables(db))))
		goto out;
	/* synchronous=NORMAL in WAL mode: a crash of the process loses nothing. */
	if (!db->readonly && ((rc = set_wal(db)) ||
			      (rc = db_exec(db, "PRAGMA synchronous = NORMAL", "set synchronous"))))
		goto out;
	/*
	 * Foreign keys are enforced from here on, not during a migration: one
	 * that rebuilds a table others refer to (migrate_4.sql: variants) drops
	 * the old table, which with them on would be a delete through its
	 * children. The rebuilt table keeps every id, so the references hold.
	 */
	if ((fresh || todo) && (rc = upgrade(db, want, lookup)))
		goto out;
	if ((rc = db_exec(db, "PRAGMA foreign_keys = ON", "enable foreign keys")))
		goto out;
	if (flags & MTA_DB_CHECK)
		rc = quick_check(db);
out:
	if (rc) {
		mta_db_close(db);
		db = NULL;
	}
	*out = db;
	return rc;
}

int mta_db_open(const char *path, int flags, struct mta_db **out)
{
	return mta_db_open_to(path, flags, MTA_DB_SCHEMA_VERSION, MTA_DB_READ_MIN_VERSION,
			      mta_embedded, out);
}

void mta_db_close(struct mta_db *db)
{
	if (!db)
		return;
	if (db->h) {
		rollback_quietly(db);
		sqlite3_close_v2(db->h);
	}
	db_keep_reset(db);
	free(db->keep);
	free(db->path);
	free(db);
}

const char *mta_db_path(const struct mta_db *db) { return db->path; }

int mta_db_schema_version(struct mta_db *db, int *version)
{
	return int_query(db, "PRAGMA user_version", version);
}
