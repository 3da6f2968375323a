/*
 * cli.h: the mtatune command line, shared by tuner/main.c and tuner/cmd_*.c.
 *
 * mtatune is git-style: `mtatune CMD [options]`. Each subcommand lives in
 * tuner/cli/cmd_CMD.c, defines int cmd_CMD(int argc, char **argv) (argv[0]
 * is the command name) and describes its options as data (opts.h), from
 * which both its getopt parsing and its --help text come. To add one, write
 * that file and add one X(CMD, "summary") line to MTATUNE_COMMANDS below;
 * the Makefile picks up the file, main.c the table row, and
 * tests/test_cli_help.c compares its --help with the README.
 *
 * Exit statuses (keep in step with README.md, "Exit statuses"):
 *   0  success
 *   1  runtime failure: out of memory, output not writable, compiler, device,
 *      kernel or database failure
 *   2  usage error: unknown command or option, missing or malformed argument
 *   3  bad input data: a missing, unreadable or malformed input file, shapes
 *      that contradict each other or the options; a database path that holds
 *      no mtatune database (cli_db_status)
 *   4  verification failure: an output differs from the expected one by more
 *      than the tolerance (or is NaN); sweep: an item had no passing variant
 *   5  stopped by SIGINT or SIGTERM (sweep): everything measured is
 *      recorded, a variant cut short is not; rerun to resume
 */
#ifndef MTATUNE_CLI_H
#define MTATUNE_CLI_H

#include <stdint.h>
#include <stdio.h>

#include "tuner/cli/opts.h"

#define MTATUNE_VERSION "0.1.0"

enum {
	CLI_OK = 0,
	CLI_RUNTIME = 1,
	CLI_USAGE = 2,
	CLI_DATA = 3,
	CLI_VERIFY = 4,
	CLI_STOPPED = 5,
};

/* The subcommands, in the order `mtatune --help` lists them. */
#define MTATUNE_COMMANDS(X) \
	X(tune, "tune a problem at a sequence length and record the winner") \
	X(best, "show the recorded winners, or the variant picked for a problem") \
	X(list, "list the database's devices, problems or results") \
	X(gen, "print the generated kernel source of a problem and variant") \
	X(run, "run one forward on a folder of .npy inputs and write o.npy") \
	X(grad, "run one backward: the gradients of q, k, v and the weights") \
	X(sweep, "tune a grid of problems and sizes: resumable, many devices, shards") \
	X(db, "database maintenance: merge shard databases") \
	X(report, "write an HTML report (inline SVG charts), CSV or JSON of the results") \
	X(export, "write a library of the tuned winners that needs no compiler or database") \
	X(model, "estimate a CUDA variant's time from its SASS, without a GPU") \
	X(devices, "list the CPU and the CUDA devices kernels can run on")

#define X(name, summary) int cmd_##name(int argc, char **argv);
MTATUNE_COMMANDS(X)
#undef X

/* Print "mtatune CMD: message" to stderr and return code. */
int cli_fail(const char *cmd, int code, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

/*
 * Report the getopt_long result c ('?' unknown option, ':' missing
 * argument) for argv[optind-1], with a hint to run --help; returns CLI_USAGE.
 */
int cli_bad_option(const char *cmd, int c, char **argv);

/* The exit status for a library status from reading or checking inputs. */
int cli_exit_status(int mta_status);

/*
 * The exit status of a failure to open or use a database, the same in every
 * command (README, "Exit statuses"): a path that holds no mtatune database
 * (missing where it must exist, not a regular file, not SQLite, another
 * application's file; MTA_ENOTFOUND, MTA_EFORMAT) is bad input data, 3, and
 * so is one that cannot be read (MTA_EIO) when reading is all the command
 * does; a database of ours that is damaged, newer, read-only or locked
 * (MTA_EDB), or one that cannot be created, is a runtime failure, 1.
 */
int cli_db_status(int mta_status, int reading);


/* Parse a whole decimal integer in [lo, hi]; 0 on success. */
int cli_parse_long(const char *s, long lo, long hi, long *out);
/* Parse a whole finite number > 0; 0 on success. */
int cli_parse_positive(const char *s, double *out);

/*
 * The tuner's options, shared by `mtatune tune` and `mtatune sweep`: each
 * command lists the ones it takes in its option table with these keys and
 * hands every key in CLI_O_TUNE..CLI_O_TUNE_END-1 to cli_tune_option, so
 * that both check the values alike and say the same about a bad one.
 */
enum { CLI_O_TUNE = 1000, CLI_O_STRATEGY = CLI_O_TUNE, CLI_O_BUDGET, CLI_O_SEED, CLI_O_REPS,
       CLI_O_WARMUP, CLI_O_TOP, CLI_O_TIMEOUT, CLI_O_THREADS, CLI_O_VSEQ, CLI_O_SEQ,
       CLI_O_BATCH, CLI_O_DEVICE, CLI_O_ROUNDS, CLI_O_ROUNDS_BUDGET, CLI_O_TIME_BUDGET,
       CLI_O_TUNE_END };

/* The search options' rows, the same in both commands' tables. */
#define CLI_SEARCH_OPTS                                                                          \
	{ "strategy", CLI_O_STRATEGY, "S", "auto, exhaustive or random (default: auto for spaces " \
					   "over\n24 variants, else exhaustive)" },                 \
	{ "budget", CLI_O_BUDGET, "N", "random: variants to screen (default 8); auto: at most "    \
				       "this\nmany (default a third of the space, at least 8)" },   \
	{ "time-budget", CLI_O_TIME_BUDGET, "S", "seconds screening may take; then the best so "   \
						 "far go on\nto the paired rounds (default: no "  \
						 "limit)" }

struct mta_tune_opts;
/*
 * Check arg, the argument of tuning option c, and set its field of o.
 * CLI_OK, or CLI_USAGE after "mtatune CMD: --NAME 'ARG' is not ..." on stderr.
 */
int cli_tune_option(const char *cmd, int c, const char *arg, struct mta_tune_opts *o);

/*
 * The device index a command uses when --device is not given: 
 * $MTATUNE_CUDA_DEVICE when set (the command line's default; the library
 * itself reads no environment for it), else 0.
 */
int cli_default_device(void);

/*
 * A command's --cu-seqlens FILE for q, k, v of total length T and batch B
 * loaded from dir: the offsets read (.npy of int32 or int64, one
 * dimension), B = 1 required, and the offsets held to
 * mta_check_cu_seqlens. CLI_OK with *cu (malloc'd, ndocs+1 elements; the
 * caller frees it) and *ndocs, or the exit status (3 for bad data) after a
 * message naming FILE and what was expected. The one loader of run and
 * grad.
 */
int cli_load_cu_seqlens(const char *cmd, const char *path, const char *dir, int64_t B,
			int64_t T, int64_t **cu, int64_t *ndocs);

#endif
