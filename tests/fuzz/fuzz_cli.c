/*
 * fuzz_cli.c: libFuzzer target for command-line arguments.
 *
 * The input is split at NUL bytes into at most 24 arguments and handed to
 * mtatune's own main() (tuner/cli/main.c compiled as mtatune_main), so the
 * dispatcher and every command's option parsing see it. Whatever the
 * arguments, the exit status must be one of the documented ones (0..4), and
 * nothing may crash, leak or trip a sanitizer.
 *
 * Kept cheap and harmless: arguments holding '/' are skipped, so every path
 * is relative to a private scratch folder that is emptied after each input;
 * the default database lies under /dev/null (it cannot be created), and the
 * C compiler does not exist, so a tune or a cpu run that gets that far fails
 * at the first compile instead of building kernels. Run it with
 * -close_fd_mask=3: the commands' own output is not interesting here.
 */
#include <dirent.h>
#include <sys/stat.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

int mtatune_main(int argc, char **argv);

static char dir[64];

static void scrub(void);

static void cleanup(void)
{
	scrub();
	if (chdir("/") == 0)
		rmdir(dir);
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	snprintf(dir, sizeof dir, "/tmp/fuzz_cli.%d", (int)getpid());
	mkdir(dir, 0700);
	if (chdir(dir))
		abort();
	atexit(cleanup);
	setenv("MTATUNE_DB", "/dev/null/mta.db", 1);
	setenv("MTATUNE_CC", "/nonexistent/cc", 1);
	setenv("MTATUNE_CACHE", "/dev/null/cache", 1);
	setenv("MTATUNE_DB_BUSY_MS", "10", 1);
	return 0;
}

/* Remove what the command left in the scratch folder (files only: nothing makes folders). */
static void scrub(void)
{
	DIR *d = opendir(".");
	struct dirent *e;
	if (!d)
		return;
	while ((e = readdir(d)))
		if (strcmp(e->d_name, ".") && strcmp(e->d_name, ".."))
			unlink(e->d_name);
	closedir(d);
}

int LLVMFuzzerTestOneInput(const unsigned char *data, size_t n)
{
	char *buf = malloc(n + 1), *argv[26];
	int argc = 0;
	if (!buf)
		return 0;
	memcpy(buf, data, n);
	buf[n] = 0;
	if (memchr(buf, '/', n)) {
		free(buf);
		return 0;
	}
	argv[argc++] = "mtatune";
	for (size_t i = 0; i <= n && argc < 25;) {
		argv[argc++] = buf + i;
		i += strlen(buf + i) + 1;
	}
	argv[argc] = NULL;
	optind = 0; /* glibc: reinitialise getopt completely */
	int rc = mtatune_main(argc, argv);
	if (rc < 0 || rc > 4)
		abort();
	scrub();
	free(buf);
	return 0;
}
