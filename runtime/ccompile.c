/*
 * ccompile.c: the run-time compiler cache of ccompile.h.
 *
 * The compiler runs through posix_spawnp with an argument vector (never a
 * shell), so paths and flags need no quoting; its stdout and stderr go into
 * one pipe that becomes the log.
 *
 * The cache is code this process will dlopen, so it must be a place no one
 * else can write: the folder is made 0700, and an existing one is used only
 * when this user owns it and neither group nor others may write it (else
 * refused, naming it and what to do). There is no fallback to a shared
 * folder: without HOME, MTATUNE_CACHE must name one.
 *
 * Entries. <key>.so is the library of a source, <key> a hash of the source,
 * language, flags and compiler identity; <key>.sum records the length and
 * the content hash of that file. Before a library is returned or dlopened
 * its bytes are hashed and compared with the record: a library that is
 * missing its record, empty, truncated, changed, or not a regular file of
 * this user's (a symlink planted there) is removed and built again, never
 * loaded. The hash is FNV-1a 64 (core/hash.h): it detects damage; what keeps
 * others from writing the entries is the folder's ownership and mode.
 *
 * A build happens in a fresh folder <key>.build-<random> inside the cache,
 * made with mkdir, so nothing can be planted at the names the compiler
 * writes; every file of ours is created O_CREAT|O_EXCL|O_NOFOLLOW. The
 * compiler runs in that folder on k.c and writes k.so, so two builders of
 * one source make the same bytes; the library and then its record are
 * renamed into place. While it builds, the builder holds a lock on
 * <folder>/lock: the first build of a process sweeps the folders whose lock
 * nobody holds (their builder was killed), so a killed compile leaves
 * nothing for long. A failed build keeps its source and log as
 * <key>.fail.c and <key>.fail.log for inspection (renamed into place, so a
 * symlink there is replaced, not followed); it never stops the caller,
 * which gets MTA_ECOMPILE.
 *
 * Not every failed build is the source's fault. A compiler that cannot be
 * started (MTA_ENODEV), a cache that cannot be written, and a compiler that
 * fails for lack of disk space or memory or a piece of its own toolchain, or
 * is killed (MTA_EIO, MTA_ENOMEM; told by its exit and its log, see
 * environment()) are failures of the machine: the tuner records them as
 * env_error and measures the variant again on its next run, where
 * MTA_ECOMPILE would be kept for ever.
 */
#define _GNU_SOURCE
#include "runtime/ccompile.h"
#include "runtime/core/error.h"
#include "runtime/core/hash.h"
#include "runtime/core/strbuf.h"

#include <dirent.h>
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <signal.h>
#include <spawn.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

extern char **environ;

#define MAXARGS 64
#define LOG_MAX (1 << 20)
#define SUM_HEAD "mtatune kernel digest 1"
#define ORPHAN_AGE_S 600 /* a build folder without a lock this old is abandoned */

static const char *compiler(int lang)
{
	const char *c = getenv(lang == MTA_LANG_CXX ? "MTATUNE_CXX" : "MTATUNE_CC");
	return c && *c ? c : lang == MTA_LANG_CXX ? "c++" : "cc";
}

/* Split s on blanks into argv[*argc..] (copies into store); -1 if too many. */
static int split(const char *s, char *store, size_t cap, char **argv, int *argc)
{
	size_t len = strlen(s);
	if (len + 1 > cap)
		return -1;
	memcpy(store, s, len + 1);
	for (char *save = NULL, *t = strtok_r(store, " \t\n", &save); t;
	     t = strtok_r(NULL, " \t\n", &save)) {
		if (*argc >= MAXARGS - 12)
			return -1;
		argv[(*argc)++] = t;
	}
	return 0;
}

/*
 * Run argv (in folder dir when not NULL) with stdout+stderr captured into
 * *out (malloc'd, NUL-terminated, at most LOG_MAX bytes kept). Returns the
 * exit status, 127 if it could not start (with the reason in *out and errno
 * in *spawn_err), 128+signal if killed; -1 on a local error.
 */
static int run(char **argv, const char *dir, char **out, int *spawn_err)
{
	int fd[2], status = -1, err;
	pid_t pid;
	posix_spawn_file_actions_t fa;
	size_t len = 0, cap = 4096;
	char *buf = malloc(cap);

	*out = NULL;
	if (spawn_err)
		*spawn_err = 0;
	if (!buf || pipe2(fd, O_CLOEXEC)) {
		free(buf);
		return -1;
	}
	posix_spawn_file_actions_init(&fa);
	posix_spawn_file_actions_adddup2(&fa, fd[1], 1);
	posix_spawn_file_actions_adddup2(&fa, fd[1], 2);
	if (dir)
		posix_spawn_file_actions_addchdir_np(&fa, dir);
	err = posix_spawnp(&pid, argv[0], &fa, NULL, argv, environ);
	posix_spawn_file_actions_destroy(&fa);
	close(fd[1]);
	if (err) {
		close(fd[0]);
		snprintf(buf, cap, "cannot run '%s': %s\n", argv[0], strerror(err));
		*out = buf;
		if (spawn_err)
			*spawn_err = err;
		return 127;
	}
	for (;;) {
		if (cap - len < 2 && cap < LOG_MAX) {
			char *nb = realloc(buf, cap * 2);
			if (nb) {
				buf = nb;
				cap *= 2;
			}
		}
		char sink[4096];
		int full = cap - len < 2;
		ssize_t r = full ? read(fd[0], sink, sizeof sink)
				 : read(fd[0], buf + len, cap - len - 1);
		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0)
			break;
		if (!full)
			len += (size_t)r;
	}
	close(fd[0]);
	buf[len] = 0;
	while (waitpid(pid, &status, 0) < 0)
		if (errno != EINTR) {
			status = -1;
			break;
		}
	*out = buf;
	if (status == -1)
		return -1;
	return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

static pthread_mutex_t id_lock = PTHREAD_MUTEX_INITIALIZER;
static char id_text[2][256], id_for[2][256];

const char *mta_cc_identity(int lang)
{
	int l = lang == MTA_LANG_CXX;
	const char *cc = compiler(lang);
	pthread_mutex_lock(&id_lock);
	if (strcmp(id_for[l], cc) || !id_text[l][0]) {
		char store[256], *argv[MAXARGS], *out = NULL;
		int argc = 0;
		snprintf(id_text[l], sizeof id_text[l], "unknown compiler %s", cc);
		if (!split(cc, store, sizeof store, argv, &argc) && argc) {
			argv[argc++] = "--version";
			argv[argc] = NULL;
			if (run(argv, NULL, &out, NULL) == 0 && out && *out)
				snprintf(id_text[l], sizeof id_text[l], "%.*s",
					 (int)strcspn(out, "\n"), out);
			free(out);
		}
		snprintf(id_for[l], sizeof id_for[l], "%s", cc);
	}
	const char *r = id_text[l];
	pthread_mutex_unlock(&id_lock);
	return r;
}

/* ---- the cache folder ------------------------------------------------------------ */

/*
 * Is the existing folder dir this user's own and closed to others? The
 * refusal says what is wrong and what to do.
 */
static int check_private(const char *dir, const char *shown)
{
	struct stat st;
	if (stat(dir, &st) != 0)
		return mta_fail(MTA_EIO, "kernel cache folder %s: %s", shown, strerror(errno));
	if (!S_ISDIR(st.st_mode))
		return mta_fail(MTA_EIO, "kernel cache %s is not a folder: remove it, or set "
				"MTATUNE_CACHE to a folder of your own", shown);
	if (st.st_uid != geteuid())
		return mta_fail(MTA_EIO, "kernel cache folder %s is owned by uid %ld, not by you "
				"(uid %ld): another user could plant code there, so nothing in it "
				"is loaded; remove it, or set MTATUNE_CACHE to a folder of your own",
				shown, (long)st.st_uid, (long)geteuid());
	if (st.st_mode & 022)
		return mta_fail(MTA_EIO, "kernel cache folder %s is writable by group or others "
				"(mode %04o): another user could plant code there, so nothing in "
				"it is loaded; run chmod go-w %s, or set MTATUNE_CACHE to a folder "
				"of your own", shown, (unsigned)(st.st_mode & 07777), shown);
	return MTA_OK;
}

/*
 * The cache folder: $MTATUNE_CACHE, else $HOME/.cache/mtatune/kernels; the
 * missing parts made 0700, the folder itself checked (check_private).
 */
static int cache_dir(char *dir, size_t n)
{
	const char *env = getenv("MTATUNE_CACHE"), *home = getenv("HOME");
	char shown[1024];
	int len;
	if (env && *env)
		len = snprintf(dir, n, "%s", env);
	else if (home && *home)
		len = snprintf(dir, n, "%s/.cache/mtatune/kernels", home);
	else
		return mta_fail(MTA_EIO, "no kernel cache folder: HOME is not set; set MTATUNE_CACHE "
				"to a folder of your own (compiled kernels are never kept in a "
				"shared folder)");
	if (len < 0 || (size_t)len >= n - 64)
		return mta_fail(MTA_EINVAL, "kernel cache path is too long");
	while (len > 1 && dir[len - 1] == '/')
		dir[--len] = 0;
	mta_escape_str(dir, shown, sizeof shown);
	for (char *s = dir + 1;; s++) {
		char c = *s;
		if (c != '/' && c)
			continue;
		*s = 0;
		if (mkdir(dir, 0700) && errno != EEXIST) {
			int e = errno;
			*s = c;
			return mta_fail(MTA_EIO, "cannot create kernel cache folder %s: %s", shown,
					strerror(e));
		}
		*s = c;
		if (!c)
			break;
	}
	return check_private(dir, shown);
}

/* ---- entries and their records --------------------------------------------------- */

/*
 * Length and hash of the regular file fd, which must be this user's and
 * non-empty; -1 otherwise.
 */
static int digest_fd(int fd, long long *size, char hash[17])
{
	struct stat st;
	if (fstat(fd, &st) || !S_ISREG(st.st_mode) || st.st_uid != geteuid() || st.st_size <= 0 ||
	    st.st_size > (1LL << 30))
		return -1;
	char *buf = malloc((size_t)st.st_size);
	size_t got = 0;
	while (buf && got < (size_t)st.st_size) {
		ssize_t r = pread(fd, buf + got, (size_t)st.st_size - got, (off_t)got);
		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0)
			break;
		got += (size_t)r;
	}
	int ok = buf && got == (size_t)st.st_size;
	if (ok)
		mta_hash_hex(buf, got, hash);
	free(buf);
	*size = st.st_size;
	return ok ? 0 : -1;
}

/* The record of a library: SUM_HEAD, its length and its hash. */
static void sum_text(long long size, const char *hash, char *out, size_t n)
{
	snprintf(out, n, "%s\n%lld %s\n", SUM_HEAD, size, hash);
}

/*
 * Does so (a path ending ".so") match the record beside it (".sum")? 0 yes;
 * -1 with *why otherwise. Neither file is followed through a symlink.
 */
static int verify(const char *so, const char **why)
{
	char sum[PATH_MAX + 8], want[128], have[128], hash[17];
	long long size;
	size_t l = strlen(so);
	*why = "its path does not end in .so";
	if (l < 4 || strcmp(so + l - 3, ".so") || l + 2 > sizeof sum)
		return -1;
	snprintf(sum, sizeof sum, "%.*s.sum", (int)(l - 3), so);
	int fd = open(so, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC);
	*why = errno == ELOOP ? "it is a symbolic link" : "it cannot be opened";
	if (fd < 0)
		return -1;
	int bad = digest_fd(fd, &size, hash);
	close(fd);
	*why = "it is empty, not a regular file, or not yours";
	if (bad)
		return -1;
	sum_text(size, hash, want, sizeof want);
	*why = "it has no digest recorded beside it";
	if ((fd = open(sum, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC)) < 0)
		return -1;
	struct stat st;
	ssize_t r = fstat(fd, &st) || !S_ISREG(st.st_mode) || st.st_uid != geteuid()
		    ? -1 : read(fd, have, sizeof have - 1);
	close(fd);
	have[r > 0 ? r : 0] = 0;
	*why = "its bytes do not match its recorded digest (damaged, truncated or replaced)";
	return strcmp(want, have) ? -1 : 0;
}

/* Write text to path, which must not exist (O_EXCL|O_NOFOLLOW). */
static int write_new(const char *path, const char *text, size_t n)
{
	int fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
	if (fd < 0)
		return -1;
	const char *p = text;
	while (n) {
		ssize_t w = write(fd, p, n);
		if (w < 0 && errno == EINTR)
			continue;
		if (w <= 0) {
			int e = w < 0 ? errno : EIO;
			close(fd);
			errno = e;
			return -1;
		}
		p += w;
		n -= (size_t)w;
	}
	return close(fd);
}

/* Remove the files of a build folder (no recursion, no links followed) and the folder. */
static void remove_build_dir(int cachefd, const char *name)
{
	int fd = openat(cachefd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	DIR *d = fd >= 0 ? fdopendir(fd) : NULL;
	struct dirent *e;
	while (d && (e = readdir(d)))
		if (strcmp(e->d_name, ".") && strcmp(e->d_name, ".."))
			unlinkat(dirfd(d), e->d_name, 0);
	if (d)
		closedir(d);
	else if (fd >= 0)
		close(fd);
	unlinkat(cachefd, name, AT_REMOVEDIR);
}

/*
 * Sweep what dead builders left in dir: build folders whose lock nobody
 * holds (or, lockless, older than ORPHAN_AGE_S), and the <key>.<pid>.<n>.c
 * / .tmp files of the cache's earlier layout once as old. Once per process.
 */
static void sweep(const char *dir)
{
	static int swept;
	if (__atomic_exchange_n(&swept, 1, __ATOMIC_SEQ_CST))
		return;
	int cfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	DIR *d = cfd >= 0 ? fdopendir(dup(cfd)) : NULL;
	struct dirent *e;
	time_t now = time(NULL);
	while (d && (e = readdir(d))) {
		struct stat st;
		const char *b = strstr(e->d_name, ".build-");
		if (fstatat(cfd, e->d_name, &st, AT_SYMLINK_NOFOLLOW))
			continue;
		int old = now - st.st_mtime > ORPHAN_AGE_S;
		if (b && S_ISDIR(st.st_mode)) {
			char lock[NAME_MAX + 8];
			snprintf(lock, sizeof lock, "%s/lock", e->d_name);
			int lfd = openat(cfd, lock, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC);
			/* where the file system has no flock, age alone tells */
			int dead = lfd < 0 ? old : flock(lfd, LOCK_EX | LOCK_NB) == 0 ? 1
				 : errno != EWOULDBLOCK && old;
			if (dead)
				remove_build_dir(cfd, e->d_name);
			if (lfd >= 0)
				close(lfd); /* also drops the lock taken to test it */
			continue;
		}
		size_t n = strlen(e->d_name);
		int legacy = n > 20 && e->d_name[16] == '.' &&
			     strspn(e->d_name, "0123456789abcdef") == 16 &&
			     ((n > 2 && !strcmp(e->d_name + n - 2, ".c")) ||
			      (n > 3 && !strcmp(e->d_name + n - 3, ".cc")) ||
			      (n > 4 && !strcmp(e->d_name + n - 4, ".tmp"))) &&
			     !strstr(e->d_name, ".fail.");
		if (legacy && old && !S_ISDIR(st.st_mode))
			unlinkat(cfd, e->d_name, 0);
	}
	if (d)
		closedir(d);
	if (cfd >= 0)
		close(cfd);
}

/* The first few lines of a log, for an error message. */
static int head_len(const char *log, int lines)
{
	const char *s = log;
	while (*s && lines > 0) {
		s += strcspn(s, "\n");
		if (*s)
			s++;
		lines--;
	}
	return (int)(s - log) > 1500 ? 1500 : (int)(s - log);
}

/*
 * Did the compiler fail for a reason of the machine rather than of the
 * source? MTA_EIO (disk, toolchain), MTA_ENOMEM, or MTA_OK when the log reads
 * as the source's fault. A compiler killed by SIGKILL was most likely the
 * out-of-memory killer's.
 */
static int environment(int status, const char *log)
{
	static const char *const disk[] = {
		"No space left on device", "Disk quota exceeded", "File too large",
		"Read-only file system", "Input/output error", "cannot find -l",
		"cannot find crt", "cannot execute '", "error trying to exec",
	};
	static const char *const memory[] = {
		"Cannot allocate memory", "out of memory", "virtual memory exhausted",
		"memory exhausted", "Killed signal terminated program",
	};
	if (status == 128 + SIGKILL)
		return MTA_ENOMEM;
	for (size_t i = 0; i < sizeof memory / sizeof memory[0]; i++)
		if (strstr(log, memory[i]))
			return MTA_ENOMEM;
	for (size_t i = 0; i < sizeof disk / sizeof disk[0]; i++)
		if (strstr(log, disk[i]))
			return MTA_EIO;
	return MTA_OK;
}

/* ---- building ------------------------------------------------------------------------ */

struct job {
	char dir[PATH_MAX];       /* the cache */
	char key[17];
	char bdir[PATH_MAX + 64]; /* the build folder, "" when none */
	int lockfd;
};

/* A fresh build folder, locked for as long as the build runs. */
static int job_start(struct job *j, const char *shown)
{
	char lock[PATH_MAX + 80];
	for (int tries = 0;; tries++) {
		unsigned long long r = 0;
		if (getrandom(&r, sizeof r, GRND_NONBLOCK) != (ssize_t)sizeof r)
			r = ((unsigned long long)getpid() << 20) ^ (unsigned long long)tries ^
			    (unsigned long long)(uintptr_t)j;
		snprintf(j->bdir, sizeof j->bdir, "%s/%s.build-%016llx", j->dir, j->key, r);
		if (mkdir(j->bdir, 0700) == 0)
			break;
		if (errno != EEXIST || tries > 100) {
			int e = errno;
			j->bdir[0] = 0;
			return mta_fail(MTA_EIO, "cannot create a build folder in the kernel cache %s: "
					"%s", shown, strerror(e));
		}
	}
	/*
	 * Locked under another name, then renamed to "lock": a sweeper that finds
	 * "lock" finds it held (else it could take an unlocked one for a dead
	 * builder's). Where the file system has no flock, the sweep goes by age.
	 */
	char tmp[PATH_MAX + 96];
	snprintf(tmp, sizeof tmp, "%s/lock.new", j->bdir);
	snprintf(lock, sizeof lock, "%s/lock", j->bdir);
	j->lockfd = open(tmp, O_RDWR | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
	if (j->lockfd < 0)
		return mta_fail(MTA_EIO, "cannot create a file in the kernel cache %s: %s", shown,
				strerror(errno));
	if (flock(j->lockfd, LOCK_EX) && errno != ENOLCK && errno != EOPNOTSUPP &&
	    errno != ENOSYS && errno != EINVAL)
		return mta_fail(MTA_EIO, "cannot lock a build folder in the kernel cache %s: %s",
				shown, strerror(errno));
	if (rename(tmp, lock))
		return mta_fail(MTA_EIO, "cannot create a file in the kernel cache %s: %s", shown,
				strerror(errno));
	return MTA_OK;
}

static void job_end(struct job *j)
{
	if (j->bdir[0]) {
		int cfd = open(j->dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
		const char *name = strrchr(j->bdir, '/') + 1;
		if (cfd >= 0) {
			remove_build_dir(cfd, name);
			close(cfd);
		}
		j->bdir[0] = 0;
	}
	if (j->lockfd >= 0)
		close(j->lockfd);
	j->lockfd = -1;
}

/* bdir/name -> dir/<key><suffix>, replacing (never following) what is there. */
static int move_in(const struct job *j, const char *name, const char *suffix)
{
	char from[PATH_MAX + 128], to[PATH_MAX + 64];
	snprintf(from, sizeof from, "%s/%s", j->bdir, name);
	snprintf(to, sizeof to, "%s/%s%s", j->dir, j->key, suffix);
	return rename(from, to);
}

/* Record k.so's digest as k.sum, then move both into place (library first). */
static int install(struct job *j, const char *shown)
{
	char so[PATH_MAX + 128], sum[PATH_MAX + 128], text[128], hash[17];
	long long size;
	snprintf(so, sizeof so, "%s/k.so", j->bdir);
	snprintf(sum, sizeof sum, "%s/k.sum", j->bdir);
	int fd = open(so, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
	int bad = fd < 0 || digest_fd(fd, &size, hash);
	if (fd >= 0)
		close(fd);
	if (bad)
		return mta_fail(MTA_EIO, "the compiler reported success but left no library in %s",
				shown);
	sum_text(size, hash, text, sizeof text);
	if (write_new(sum, text, strlen(text)) || move_in(j, "k.so", ".so") ||
	    move_in(j, "k.sum", ".sum"))
		return mta_fail(MTA_EIO, "cannot move a library into the kernel cache %s: %s", shown,
				strerror(errno));
	return MTA_OK;
}

int mta_cc_build(const char *source, int lang, const char *flags, char *so_path, size_t n,
		 char **log)
{
	char shown[1024], so[PATH_MAX + 64], src[PATH_MAX + 128], ccabs[PATH_MAX + 512];
	char ccstore[512], flstore[1024], *argv[MAXARGS], *out = NULL;
	const char *cc = compiler(lang), *id = mta_cc_identity(lang), *why;
	struct job j = { .lockfd = -1 };
	int argc = 0, rc, status, spawn_err;

	if (log)
		*log = NULL;
	if (!source || (lang != MTA_LANG_C && lang != MTA_LANG_CXX))
		return mta_fail(MTA_EINVAL, "mta_cc_build: no source or unknown language %d", lang);
	if (!flags)
		flags = "";
	if ((rc = cache_dir(j.dir, sizeof j.dir)))
		return rc;
	mta_escape_str(j.dir, shown, sizeof shown);

	/* key: language, compiler command, its identity, flags, source */
	size_t ls = strlen(source), lk = strlen(cc) + strlen(id) + strlen(flags) + 8;
	char *keytext = malloc(ls + lk);
	if (!keytext)
		return mta_fail(MTA_ENOMEM, "out of memory hashing a kernel source");
	int kl = snprintf(keytext, lk, "%d%c%s%c%s%c%s%c", lang, 0, cc, 0, id, 0, flags, 0);
	memcpy(keytext + kl, source, ls);
	mta_hash_hex(keytext, (size_t)kl + ls, j.key);
	free(keytext);

	snprintf(so, sizeof so, "%s/%s.so", j.dir, j.key);
	if (strlen(so) + 1 > n)
		return mta_fail(MTA_EINVAL, "shared object path %s does not fit in %zu bytes", so, n);
	if (verify(so, &why) == 0) {
		strcpy(so_path, so);
		return MTA_OK;
	}
	/* missing or not as recorded: build it (again) */
	sweep(j.dir);
	if ((rc = job_start(&j, shown)))
		goto out;
	snprintf(src, sizeof src, "%s/k.c", j.bdir);
	if (write_new(src, source, ls)) {
		rc = mta_fail(MTA_EIO, "cannot write a kernel source into the kernel cache %s: %s",
			      shown, strerror(errno));
		goto out;
	}
	if (split(cc, ccstore, sizeof ccstore, argv, &argc) || !argc ||
	    split(flags, flstore, sizeof flstore, argv, &argc)) {
		rc = mta_fail(MTA_EINVAL, "compiler '%s' or flags '%s' too long or empty", cc, flags);
		goto out;
	}
	/* the compiler runs in the build folder: a relative path to it is made absolute */
	if (strchr(argv[0], '/') && argv[0][0] != '/') {
		char cwd[PATH_MAX];
		if (!getcwd(cwd, sizeof cwd) ||
		    snprintf(ccabs, sizeof ccabs, "%s/%s", cwd, argv[0]) >= (int)sizeof ccabs) {
			rc = mta_fail(MTA_EINVAL, "compiler path %s is too long", argv[0]);
			goto out;
		}
		argv[0] = ccabs;
	}
	const char *fixed[] = { "-shared", "-fPIC", "-pthread", "-o", "k.so", "-x",
				lang == MTA_LANG_CXX ? "c++" : "c", "k.c", "-x", "none", "-lm", NULL };
	for (int i = 0; fixed[i]; i++)
		argv[argc++] = (char *)fixed[i];
	argv[argc] = NULL;

	status = run(argv, j.bdir, &out, &spawn_err);
	if (status == 0) {
		if ((rc = install(&j, shown)))
			goto out;
		strcpy(so_path, so);
		goto out;
	}
	if (status == -1 || !out) {
		rc = mta_fail(MTA_EIO, "cannot run the compiler %s: %s", cc, strerror(errno));
		goto out;
	}
	if (status == 127 && spawn_err) {
		rc = mta_fail(MTA_ENODEV, "no C compiler: %.*s (set MTATUNE_%s to one)",
			      (int)strcspn(out, "\n"), out, lang == MTA_LANG_CXX ? "CXX" : "CC");
		goto keep_log;
	}
	int env = environment(status, out);
	if (env) {
		rc = mta_fail(env, "%s failed (status %d) for a reason of this machine, not of the "
			      "kernel's source:\n%.*s", cc, status, head_len(out, 8), out);
		goto keep_log;
	}
	/* the compiler refused the source: keep it and the log for inspection */
	char logp[PATH_MAX + 128], fsrc[PATH_MAX + 64], flog[PATH_MAX + 64];
	snprintf(logp, sizeof logp, "%s/k.log", j.bdir);
	snprintf(fsrc, sizeof fsrc, "%s/%s.fail.c", j.dir, j.key);
	snprintf(flog, sizeof flog, "%s/%s.fail.log", j.dir, j.key);
	int kept = !move_in(&j, "k.c", ".fail.c") && !write_new(logp, out, strlen(out)) &&
		   !move_in(&j, "k.log", ".fail.log");
	rc = mta_fail(MTA_ECOMPILE, "%s failed (status %d) on %s; log in %s:\n%.*s", cc, status,
		      kept ? fsrc : "its source", kept ? flog : "(not kept)", head_len(out, 8), out);
keep_log:
	if (log) {
		*log = out;
		out = NULL;
	}
out:
	job_end(&j);
	free(out);
	return rc;
}

int mta_cc_open(const char *so_path, const char *symbol, void **dl, void **fn)
{
	const char *why;
	char shown[1024];
	*dl = NULL;
	/* a library is loaded only as it was recorded when built (see the file comment) */
	if (verify(so_path, &why))
		return mta_fail(MTA_ECOMPILE, "%s is not loaded: %s (its digest is checked before "
				"loading)", mta_escape_str(so_path, shown, sizeof shown), why);
	*dl = dlopen(so_path, RTLD_NOW | RTLD_LOCAL);
	if (!*dl)
		return mta_fail(MTA_ECOMPILE, "cannot load %s: %s", so_path, dlerror());
	*fn = dlsym(*dl, symbol);
	if (!*fn) {
		mta_fail(MTA_ECOMPILE, "%s has no symbol %s", so_path, symbol);
		dlclose(*dl);
		*dl = NULL;
		return MTA_ECOMPILE;
	}
	return MTA_OK;
}

void mta_cc_close(void *dl)
{
	if (dl)
		dlclose(dl);
}
