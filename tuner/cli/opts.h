/*
 * opts.h: a command's options as data. One table per command gives, for
 * each option, what getopt_long needs and what --help prints, so the two
 * cannot drift apart; the README's option blocks are compared with --help
 * by a test (tests/test_cli_help.c).
 *
 * Help layout: "usage: " + usage, a blank line, about, a blank line, one
 * block line per option ("  -q, --quiet       text": the label padded to 18
 * columns, further lines of text indented to the same column), then the
 * epilog after a blank line if there is one.
 */
#ifndef MTA_CLI_OPTS_H
#define MTA_CLI_OPTS_H

#include <getopt.h>
#include <stdio.h>

#define CLI_MAX_OPTS 40

struct cli_opt {
	const char *name;   /* long name without "--" */
	int key;            /* getopt's value: a short option letter, or an id >= 256 */
	const char *meta;   /* the argument's name ("KEY"), NULL for a flag */
	const char *help;   /* lines of text, '\n'-separated */
};

struct cli_cmd {
	const char *name;              /* "tune", "db merge" */
	const char *usage;             /* synopsis, without "usage: "; continuation lines indented */
	const char *about;             /* the description above the options */
	const struct cli_opt *opts;    /* ends with name == NULL */
	const char *epilog;            /* after the options, or NULL */
};

/* getopt_long's tables built from a command's options. */
struct cli_getopt {
	struct option lo[CLI_MAX_OPTS + 1];
	char so[2 * CLI_MAX_OPTS + 2];
};
void cli_getopt_init(struct cli_getopt *g, const struct cli_cmd *c);
/* getopt_long over argv with c's options (opterr off; ':' and '?' come back). */
int cli_next(struct cli_getopt *g, int argc, char **argv);

/* The command's --help text. */
void cli_help(FILE *f, const struct cli_cmd *c);
/* Just the option block of it (what the README shows). */
void cli_help_options(FILE *f, const struct cli_cmd *c);

#endif
