/*
 * cmd_db.c: `mtatune db SUB ...`: database maintenance. Sub-commands are
 * rows of the table below (name, function, summary), like the top level's.
 */
#include "tuner/cli/cli.h"
#include "db/db.h"
#include "runtime/core/error.h"

#include <string.h>
#include <sys/stat.h>

static int db_merge(int argc, char **argv);

static const struct sub {
	const char *name;
	int (*fn)(int argc, char **argv);
	const char *summary;
} subs[] = {
	{ "merge", db_merge, "merge shard databases IN... into OUT (created if absent)" },
};
#define NSUBS (sizeof subs / sizeof subs[0])

static void usage(FILE *f)
{
	fprintf(f, "usage: mtatune db <sub-command> [<args>]\n\nSub-commands:\n");
	for (size_t i = 0; i < NSUBS; i++)
		fprintf(f, "  %-8s %s\n", subs[i].name, subs[i].summary);
	fprintf(f, "\n'mtatune db <sub-command> --help' describes one.\n");
}

int cmd_db(int argc, char **argv)
{
	if (argc < 2) {
		usage(stderr);
		return CLI_USAGE;
	}
	if (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h")) {
		usage(stdout);
		return CLI_OK;
	}
	for (size_t i = 0; i < NSUBS; i++)
		if (!strcmp(argv[1], subs[i].name))
			return subs[i].fn(argc - 1, argv + 1);
	return cli_fail("db", CLI_USAGE, "'%s' is not a db sub-command (see 'mtatune db --help')",
			argv[1]);
}

static const struct cli_opt merge_opts[] = {
	{ "help", 'h', NULL, "show this text" },
	{ 0 },
};

static const struct cli_cmd merge_cmd = {
	"db merge",
	"mtatune db merge OUT IN...",
	"Merge the databases IN (e.g. the shards of a sweep) into OUT, which is created\n"
	"when it does not exist. Rows are matched by their natural keys: every result\n"
	"is kept (the later measurement wins when two files measured the same variant\n"
	"on the same device at the same T and B), devices are kept apart, and each\n"
	"winner is copied with the paired rounds that decided it (of two decisions\n"
	"for one device, problem, T and B bucket, the later stands), never re-decided\n"
	"from medians. Each IN is merged in one transaction and only read.\n",
	merge_opts, NULL,
};

struct counts {
	long results, winners;
};

static int count_result(void *ctx, const struct mta_db_result *r)
{
	((struct counts *)ctx)->results++;
	return 0;
}

static int count_winner(void *ctx, const struct mta_db_winner *w)
{
	((struct counts *)ctx)->winners++;
	return 0;
}

static int same_file(const char *a, const char *b)
{
	struct stat x, y;
	return !stat(a, &x) && !stat(b, &y) && x.st_dev == y.st_dev && x.st_ino == y.st_ino;
}

static int db_merge(int argc, char **argv)
{
	struct mta_db *db = NULL;
	struct cli_getopt g;
	struct counts n = { 0, 0 };
	int c, rc;

	cli_getopt_init(&g, &merge_cmd);
	while ((c = cli_next(&g, argc, argv)) != -1) {
		if (c == 'h') {
			cli_help(stdout, &merge_cmd);
			return CLI_OK;
		}
		return cli_bad_option("db merge", c, argv);
	}
	if (argc - optind < 2)
		return cli_fail("db merge", CLI_USAGE, "expected OUT and at least one IN database "
				"(see 'mtatune db merge --help')");
	const char *out = argv[optind];
	/* Check every input before OUT is created or touched. */
	for (int i = optind + 1; i < argc; i++) {
		if (same_file(out, argv[i]))
			return cli_fail("db merge", CLI_USAGE, "%s is both OUT and an input",
					argv[i]);
		if ((rc = mta_db_open(argv[i], MTA_DB_READONLY, &db)))
			return cli_fail("db merge", cli_db_status(rc, 1), "input %s",
					mta_last_error());
		mta_db_close(db);
		db = NULL;
	}
	if ((rc = mta_db_open(out, 0, &db)))
		return cli_fail("db merge", cli_db_status(rc, 0), "%s", mta_last_error());
	for (int i = optind + 1; i < argc; i++) {
		if ((rc = mta_db_merge(db, argv[i]))) {
			mta_db_close(db);
			return cli_fail("db merge", cli_db_status(rc, 0), "%s", mta_last_error());
		}
		printf("merged %s\n", argv[i]);
	}
	if ((rc = mta_db_list_results(db, 0, NULL, count_result, &n)) ||
	    (rc = mta_db_list_winners(db, 0, NULL, count_winner, &n))) {
		mta_db_close(db);
		return cli_fail("db merge", CLI_RUNTIME, "%s", mta_last_error());
	}
	mta_db_close(db);
	printf("%s: %ld results, %ld winners\n", out, n.results, n.winners);
	return CLI_OK;
}
