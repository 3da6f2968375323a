/*
 * ccompile.c: the run-time compiler cache of ccompile.h.
 *
 * The compiler runs through posix_spawnp with an argument vector (never a
 * shell), so paths and flags need no quoting; its stdout and stderr go into
 * one pipe that becomes the log. A finished object is renamed into place, so
 * a reader sees either nothing or a whole object, and two processes building
 * the same source at once both succeed. A failed build leaves its source and
 * log next to the cache entries (<hash>.fail.c, <hash>.fail.log) for
 * inspection; it never stops the caller, which gets MTA_ECOMPILE.
 */
#include "runtime/ccompile.h"
#include "runtime/core/error.h"
#include "runtime/core/hash.h"

#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

extern char **environ;

#define MAXARGS 64
#define LOG_MAX (1 << 20)

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
 * Run argv with stdout+stderr captured into *out (malloc'd, NUL-terminated,
 * at most LOG_MAX bytes kept). Returns the exit status, 127 if it could not
 * start (with the reason in *out), 128+signal if killed; -1 on a local error.
 */
static int run(char **argv, char **out)
{
	int fd[2], status = -1, err;
	pid_t pid;
	posix_spawn_file_actions_t fa;
	size_t len = 0, cap = 4096;
	char *buf = malloc(cap);

	*out = NULL;
	if (!buf || pipe(fd)) {
		free(buf);
		return -1;
	}
	posix_spawn_file_actions_init(&fa);
	posix_spawn_file_actions_adddup2(&fa, fd[1], 1);
	posix_spawn_file_actions_adddup2(&fa, fd[1], 2);
	posix_spawn_file_actions_addclose(&fa, fd[0]);
	posix_spawn_file_actions_addclose(&fa, fd[1]);
	err = posix_spawnp(&pid, argv[0], &fa, NULL, argv, environ);
	posix_spawn_file_actions_destroy(&fa);
	close(fd[1]);
	if (err) {
		close(fd[0]);
		snprintf(buf, cap, "cannot run '%s': %s\n", argv[0], strerror(err));
		*out = buf;
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
			if (run(argv, &out) == 0 && out && *out)
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

/* The cache folder, created with its parents. */
static int cache_dir(char *dir, size_t n)
{
	const char *env = getenv("MTATUNE_CACHE"), *home = getenv("HOME");
	int len = env && *env ? snprintf(dir, n, "%s", env)
			      : snprintf(dir, n, "%s/.cache/mtatune/kernels", home ? home : "/tmp");
	if (len < 0 || (size_t)len >= n - 40)
		return mta_fail(MTA_EINVAL, "kernel cache path is too long");
	for (char *s = dir + 1;; s++) {
		char c = *s;
		if (c != '/' && c)
			continue;
		*s = 0;
		if (mkdir(dir, 0777) && errno != EEXIST) {
			int e = errno;
			*s = c;
			return mta_fail(MTA_EIO, "cannot create kernel cache folder %s: %s", dir,
					strerror(e));
		}
		*s = c;
		if (!c)
			break;
	}
	return MTA_OK;
}

static int write_file(const char *path, const char *text)
{
	FILE *f = fopen(path, "w");
	if (!f)
		return mta_fail(MTA_EIO, "cannot write %s: %s", path, strerror(errno));
	size_t n = strlen(text);
	int bad = fwrite(text, 1, n, f) != n;
	bad |= fclose(f) != 0;
	return bad ? mta_fail(MTA_EIO, "cannot write %s", path) : MTA_OK;
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

int mta_cc_build(const char *source, int lang, const char *flags, char *so_path, size_t n,
		 char **log)
{
	char dir[PATH_MAX], hash[17], src[PATH_MAX + 64], tmp[PATH_MAX + 64], so[PATH_MAX + 64];
	char ccstore[512], flstore[1024], *argv[MAXARGS], *out = NULL;
	const char *cc = compiler(lang), *id = mta_cc_identity(lang);
	struct stat st;
	int argc = 0, rc, status;
	static int seq;

	if (log)
		*log = NULL;
	if (!source || (lang != MTA_LANG_C && lang != MTA_LANG_CXX))
		return mta_fail(MTA_EINVAL, "mta_cc_build: no source or unknown language %d", lang);
	if (!flags)
		flags = "";
	if ((rc = cache_dir(dir, sizeof dir)))
		return rc;

	/* key: language, compiler command, its identity, flags, source */
	size_t ls = strlen(source), lk = strlen(cc) + strlen(id) + strlen(flags) + 8;
	char *keytext = malloc(ls + lk);
	if (!keytext)
		return mta_fail(MTA_ENOMEM, "out of memory hashing a kernel source");
	int kl = snprintf(keytext, lk, "%d%c%s%c%s%c%s%c", lang, 0, cc, 0, id, 0, flags, 0);
	memcpy(keytext + kl, source, ls);
	mta_hash_hex(keytext, (size_t)kl + ls, hash);
	free(keytext);

	snprintf(so, sizeof so, "%s/%s.so", dir, hash);
	if (strlen(so) + 1 > n)
		return mta_fail(MTA_EINVAL, "shared object path %s does not fit in %zu bytes", so, n);
	if (stat(so, &st) == 0) {
		strcpy(so_path, so);
		return MTA_OK;
	}

	int id_seq = __atomic_add_fetch(&seq, 1, __ATOMIC_RELAXED);
	snprintf(src, sizeof src, "%s/%s.%ld.%d.%s", dir, hash, (long)getpid(), id_seq,
		 lang == MTA_LANG_CXX ? "cc" : "c");
	snprintf(tmp, sizeof tmp, "%s/%s.%ld.%d.tmp", dir, hash, (long)getpid(), id_seq);
	if ((rc = write_file(src, source)))
		return rc;
	if (split(cc, ccstore, sizeof ccstore, argv, &argc) || !argc ||
	    split(flags, flstore, sizeof flstore, argv, &argc)) {
		unlink(src);
		return mta_fail(MTA_EINVAL, "compiler '%s' or flags '%s' too long or empty", cc, flags);
	}
	const char *fixed[] = { "-shared", "-fPIC", "-pthread", "-o", tmp, "-x",
				lang == MTA_LANG_CXX ? "c++" : "c", src, "-x", "none", "-lm", NULL };
	for (int i = 0; fixed[i]; i++)
		argv[argc++] = (char *)fixed[i];
	argv[argc] = NULL;

	status = run(argv, &out);
	if (status == 0 && rename(tmp, so) == 0) {
		unlink(src);
		free(out);
		strcpy(so_path, so);
		return MTA_OK;
	}
	if (status == -1 || !out) {
		rc = mta_fail(MTA_EIO, "cannot run the compiler %s: %s", cc, strerror(errno));
		goto out;
	}
	if (status == 0) {
		rc = mta_fail(MTA_EIO, "cannot move %s into the cache: %s", tmp, strerror(errno));
		goto out;
	}
	char fsrc[PATH_MAX + 64], flog[PATH_MAX + 64];
	snprintf(fsrc, sizeof fsrc, "%s/%s.fail.c", dir, hash);
	snprintf(flog, sizeof flog, "%s/%s.fail.log", dir, hash);
	rename(src, fsrc);
	write_file(flog, out);
	rc = mta_fail(MTA_ECOMPILE, "%s failed (status %d) on %s; log in %s:\n%.*s", cc, status,
		      fsrc, flog, head_len(out, 8), out);
	if (log) {
		*log = out;
		out = NULL;
	}
out:
	unlink(src);
	unlink(tmp);
	free(out);
	return rc;
}

int mta_cc_open(const char *so_path, const char *symbol, void **dl, void **fn)
{
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
