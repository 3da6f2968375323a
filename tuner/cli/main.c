/*
 * main.c: mtatune's entry point: global options, the table of subcommands
 * (from MTATUNE_COMMANDS in cli.h), and the helpers every cmd_*.c shares.
 * Nothing here knows about a particular subcommand.
 */
#include "tuner/cli/cli.h"
#include "runtime/mta.h"
#include "tuner/tune/tune.h"
#include "tuner/io/npy.h"
#include "runtime/core/strbuf.h"

#include <errno.h>
#include <getopt.h>
#include <math.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

struct command {
	const char *name;
	int (*fn)(int argc, char **argv);
	const char *summary;
};

static const struct command commands[] = {
#define X(name, summary) { #name, cmd_##name, summary },
	MTATUNE_COMMANDS(X)
#undef X
};

#define NCOMMANDS (sizeof commands / sizeof commands[0])

static void usage(FILE *f)
{
	fprintf(f, "usage: mtatune [--version] [--help] <command> [<options>]\n\n"
		   "Generate, tune and run fused Multi-Token Attention kernels.\n\n"
		   "Commands:\n");
	for (size_t i = 0; i < NCOMMANDS; i++)
		fprintf(f, "  %-10s %s\n", commands[i].name, commands[i].summary);
	fprintf(f, "\n'mtatune help <command>' or 'mtatune <command> --help' describes one.\n"
		   "Exit status: 0 ok, 1 runtime failure, 2 usage error, 3 bad input data,\n"
		   "4 verification failure, 5 stopped by a signal (rerun to resume).\n");
}

static const struct command *find(const char *name)
{
	for (size_t i = 0; i < NCOMMANDS; i++)
		if (!strcmp(commands[i].name, name))
			return &commands[i];
	return NULL;
}

static int unknown(const char *name)
{
	fprintf(stderr, "mtatune: '%s' is not a command (see 'mtatune --help'); commands:", name);
	for (size_t i = 0; i < NCOMMANDS; i++)
		fprintf(stderr, " %s", commands[i].name);
	fprintf(stderr, "\n");
	return CLI_USAGE;
}

/*
 * A command's status once its output is flushed: what stdio still buffers
 * at exit would otherwise fail unseen (a full disk, /dev/full), with 0.
 */
static int flushed(const char *cmd, int code)
{
	if ((fflush(stdout) || ferror(stdout)) && code == CLI_OK)
		return cli_fail(cmd, CLI_RUNTIME, "cannot write stdout: %s", strerror(errno));
	return code;
}

int main(int argc, char **argv)
{
	if (argc < 2) {
		usage(stderr);
		return CLI_USAGE;
	}
	const char *a = argv[1];
	if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
		usage(stdout);
		return CLI_OK;
	}
	if (!strcmp(a, "--version")) {
		printf("mtatune %s\n", MTATUNE_VERSION);
		return CLI_OK;
	}
	if (!strcmp(a, "help")) {
		if (argc < 3) {
			usage(stdout);
			return CLI_OK;
		}
		const struct command *c = find(argv[2]);
		if (!c)
			return unknown(argv[2]);
		char *av[] = { argv[2], "--help", NULL };
		return c->fn(2, av);
	}
	if (a[0] == '-') {
		fprintf(stderr, "mtatune: unknown option '%s' (see 'mtatune --help')\n", a);
		return CLI_USAGE;
	}
	const struct command *c = find(a);
	if (!c)
		return unknown(a);
	return flushed(c->name, c->fn(argc - 1, argv + 1));
}

/* ---- helpers for cmd_*.c ------------------------------------------------ */

int cli_fail(const char *cmd, int code, const char *fmt, ...)
{
	va_list ap;
	fprintf(stderr, "mtatune %s: ", cmd);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
	return code;
}

int cli_bad_option(const char *cmd, int c, char **argv)
{
	const char *arg = argv[optind - 1];
	if (c == ':')
		fprintf(stderr, "mtatune %s: option '%s' needs an argument\n", cmd, arg);
	else if (optopt && arg[0] == '-' && arg[1] != '-')
		fprintf(stderr, "mtatune %s: unknown option '-%c'\n", cmd, optopt);
	else
		fprintf(stderr, "mtatune %s: unknown option '%s'\n", cmd, arg);
	fprintf(stderr, "Try 'mtatune %s --help'.\n", cmd);
	return CLI_USAGE;
}

int cli_exit_status(int mta_status)
{
	switch (mta_status) {
	case MTA_OK: return CLI_OK;
	case MTA_EINVAL:
	case MTA_EIO:
	case MTA_EFORMAT:
	case MTA_ESHAPE:
	case MTA_ENOTFOUND: return CLI_DATA;
	case MTA_EVERIFY: return CLI_VERIFY;
	default: return CLI_RUNTIME;
	}
}

int cli_db_status(int mta_status, int reading)
{
	switch (mta_status) {
	case MTA_OK: return CLI_OK;
	case MTA_ENOTFOUND:
	case MTA_EFORMAT: return CLI_DATA;
	case MTA_EINVAL: return CLI_USAGE;
	case MTA_EIO: return reading ? CLI_DATA : CLI_RUNTIME;
	case MTA_EVERIFY: return CLI_VERIFY;
	default: return CLI_RUNTIME;
	}
}

int cli_parse_long(const char *s, long lo, long hi, long *out)
{
	char *end;
	errno = 0;
	long v = strtol(s, &end, 10);
	if (errno || end == s || *end || v < lo || v > hi)
		return -1;
	*out = v;
	return 0;
}

int cli_parse_positive(const char *s, double *out)
{
	char *end;
	errno = 0;
	double v = strtod(s, &end);
	if (errno || end == s || *end || !isfinite(v) || v <= 0)
		return -1;
	*out = v;
	return 0;
}

int cli_default_device(void)
{
	long n;
	const char *s = getenv("MTATUNE_CUDA_DEVICE");
	return s && *s && !cli_parse_long(s, 0, 4095, &n) ? (int)n : 0;
}

int cli_tune_option(const char *cmd, int c, const char *arg, struct mta_tune_opts *o)
{
	static const char *const names[] = { "strategy", "budget", "seed", "reps", "warmup", "top",
					     "timeout", "threads", "verify-seq", "seq", "batch",
					     "device", "rounds", "rounds-budget", "time-budget" };
	long n;
	double x;
	if (c == CLI_O_STRATEGY) {
		if (!strcmp(arg, "auto"))
			o->strategy = MTA_TUNE_AUTO;
		else if (!strcmp(arg, "exhaustive"))
			o->strategy = MTA_TUNE_EXHAUSTIVE;
		else if (!strcmp(arg, "random"))
			o->strategy = MTA_TUNE_RANDOM;
		else
			return cli_fail(cmd, CLI_USAGE, "--strategy '%s': expected auto, exhaustive "
					"or random", arg);
		return CLI_OK;
	}
	if (c == CLI_O_TIMEOUT || c == CLI_O_ROUNDS_BUDGET || c == CLI_O_TIME_BUDGET) {
		if (cli_parse_positive(arg, &x))
			return cli_fail(cmd, CLI_USAGE, "--%s '%s' is not a positive number of "
					"seconds", names[c - CLI_O_TUNE], arg);
		if (c == CLI_O_TIMEOUT)
			o->timeout_s = x;
		else if (c == CLI_O_ROUNDS_BUDGET)
			o->rounds_budget_s = x;
		else
			o->time_budget_s = x;
		return CLI_OK;
	}
	if (c == CLI_O_ROUNDS) {
		if (cli_parse_long(arg, 2, MTA_ROUNDS_MAX, &n))
			return cli_fail(cmd, CLI_USAGE, "--rounds '%s' is not an integer in 2..%d", arg,
					MTA_ROUNDS_MAX);
		o->max_rounds = (int)n;
		if (o->min_rounds > o->max_rounds)
			o->min_rounds = o->max_rounds;
		return CLI_OK;
	}
	long lo = c == CLI_O_WARMUP || c == CLI_O_THREADS || c == CLI_O_SEED || c == CLI_O_DEVICE
		  ? 0 : 1;
	long hi = c == CLI_O_SEED ? 2147483647L : 1L << 24;
	if (cli_parse_long(arg, lo, hi, &n))
		return cli_fail(cmd, CLI_USAGE, "--%s '%s' is not an integer in %ld..%ld",
				names[c - CLI_O_TUNE], arg, lo, hi);
	switch (c) {
	case CLI_O_BUDGET: o->budget = (int)n; break;
	case CLI_O_SEED: o->seed = (unsigned long long)n; break;
	case CLI_O_REPS: o->reps = (int)n; break;
	case CLI_O_WARMUP: o->warmup = (int)n; break;
	case CLI_O_TOP: o->top = (int)n; break;
	case CLI_O_THREADS: o->threads = (int)n; break;
	case CLI_O_VSEQ: o->verify_T = n; break;
	case CLI_O_SEQ: o->T = n; break;
	case CLI_O_BATCH: o->B = n; break;
	case CLI_O_DEVICE: o->device_index = (int)n; break;
	}
	return CLI_OK;
}

int cli_load_cu_seqlens(const char *cmd, const char *path, const char *dir, int64_t B,
			int64_t T, int64_t **cu, int64_t *ndocs)
{
	char esc[1024];
	int64_t n = 0;
	int rc;
	*cu = NULL;
	mta_escape_str(path, esc, sizeof esc);
	if ((rc = mta_npy_read_offsets(path, cu, &n)))
		return cli_fail(cmd, cli_exit_status(rc), "--cu-seqlens: %s", mta_last_error());
	if (B != 1) {
		free(*cu);
		*cu = NULL;
		return cli_fail(cmd, CLI_DATA, "--cu-seqlens %s: packed documents need q, k, v with "
				"B=1 ([1,total_T,H,D]), but %s has B=%lld", esc, dir, (long long)B);
	}
	if (mta_check_cu_seqlens(*cu, n - 1, T)) {
		free(*cu);
		*cu = NULL;
		return cli_fail(cmd, CLI_DATA, "--cu-seqlens %s: %s", esc, mta_last_error());
	}
	*ndocs = n - 1;
	return CLI_OK;
}
