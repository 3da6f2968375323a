/*
 * cmd_export.c: `mtatune export`: write a best-kernel library folder (export.h).
 */
#include "tuner/cli/cli.h"
#include "db/db.h"
#include "runtime/core/error.h"
#include "runtime/core/strbuf.h"
#include "tuner/export/export.h"

#include <stdlib.h>
#include <string.h>

enum { O_DB = 256, O_DEVICE, O_ARCH, O_PROBLEM, O_OUT, O_NAME };

static const struct cli_opt opts[] = {
	{ "db", O_DB, "PATH", "database (default $MTATUNE_DB, else ~/.cache/mtatune/mta.db)" },
	{ "device", O_DEVICE, "ID|NAME", "the device whose winners to export, when there are\n"
					"several: its id (mtatune list devices) or name" },
	{ "arch", O_ARCH, "sm_XX", "export CUDA winners as cubins for this architecture" },
	{ "problem", O_PROBLEM, "KEY", "export only this problem (repeatable); a problem without\n"
				       "winners is exported with its default variant" },
	{ "out", O_OUT, "DIR", "the folder to write: a new or empty one, or an earlier\n"
			       "export, of which only the files it wrote are replaced" },
	{ "name", O_NAME, "NAME", "library name: libNAME.so (default: mta)" },
	{ "help", 'h', NULL, "show this text" },
	{ 0 },
};

static const struct cli_cmd cmd = {
	"export",
	"mtatune export [--db PATH] [--device ID|NAME | --arch sm_XX]\n"
	"                      [--problem KEY ...] --out DIR [--name NAME]",
	"Write a self-contained folder holding one device's tuned winners: mta.h, the\n"
	"generated kernels and dispatch table, and a Makefile building libNAME.so and\n"
	"libNAME.a that need no database, compiler or NVRTC at run time (only libc,\n"
	"libm, libpthread and libdl). Each problem keeps its winner per T bucket, then\n"
	"the nearest bucket, then its default variant; problems not exported return\n"
	"MTA_ENOTFOUND. CUDA cubins come from the database, else NVRTC compiles them\n"
	"for --arch now (no GPU needed). The same database gives identical files.\n",
	opts,
	"Then: make -C DIR && cc prog.c -IDIR -LDIR -lNAME -ldl -lm -lpthread\n",
};

int cmd_export(int argc, char **argv)
{
	struct mta_export_opts o = { 0 };
	struct mta_export_summary s;
	char path[1024];
	const char **keys = calloc((size_t)argc + 1, sizeof *keys);
	int c, rc = CLI_OK;

	if (!keys)
		return cli_fail("export", CLI_RUNTIME, "out of memory");
	o.problems = keys;
	struct cli_getopt g;
	cli_getopt_init(&g, &cmd);
	while ((c = cli_next(&g, argc, argv)) != -1) {
		switch (c) {
		case 'h': cli_help(stdout, &cmd); goto out;
		case O_DB: o.db_path = optarg; break;
		case O_DEVICE: o.device = optarg; break;
		case O_ARCH: o.arch = optarg; break;
		case O_PROBLEM: keys[o.nproblems++] = optarg; break;
		case O_OUT: o.out_dir = optarg; break;
		case O_NAME: o.name = optarg; break;
		default: rc = cli_bad_option("export", c, argv); goto out;
		}
	}
	if (optind < argc) {
		rc = cli_fail("export", CLI_USAGE, "unexpected argument '%s'", argv[optind]);
		goto out;
	}
	if (!o.out_dir) {
		rc = cli_fail("export", CLI_USAGE, "--out DIR is required (see mtatune export --help)");
		goto out;
	}
	if (!o.db_path) {
		if (mta_db_default_path(path, sizeof path)) {
			rc = cli_fail("export", CLI_USAGE, "%s", mta_last_error());
			goto out;
		}
		o.db_path = path;
	}
	int st = mta_export(&o, &s);
	if (st) {
		/* EIO: the output folder could not be written (the database's own
		 * failures are EDB, ENOTFOUND, EFORMAT) */
		rc = cli_fail("export", st == MTA_EIO ? CLI_RUNTIME : cli_db_status(st, 1), "%s",
			      mta_last_error());
		goto out;
	}
	char dev[1100];
	printf("%s: lib%s for %s%s%s: %d problems, %d buckets, %d kernels", o.out_dir,
	       o.name ? o.name : "mta", s.backend, s.device[0] ? " on " : "",
	       mta_escape_str(s.device, dev, sizeof dev), s.problems, s.buckets, s.kernels);
	if (s.bwd_buckets)
		printf(" (%d of the buckets the backward's)", s.bwd_buckets);
	if (!strcmp(s.backend, "cuda"))
		printf(" (%s cubins: %d from the database, %d compiled)", s.arch, s.cubins_from_db,
		       s.cubins_compiled);
	printf("\n");
out:
	free(keys);
	return rc;
}
