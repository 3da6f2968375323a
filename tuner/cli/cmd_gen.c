/* cmd_gen.c: `mtatune gen`: print a generated kernel's source. */
#include "tuner/cli/cli.h"
#include "gen/gen.h"
#include "runtime/backend.h"
#include "runtime/core/error.h"

#include <stdlib.h>

enum { O_PROBLEM = 256, O_VARIANT, O_BACKEND };

static const struct cli_opt opts[] = {
	{ "problem", O_PROBLEM, "KEY", "problem key (required)" },
	{ "variant", O_VARIANT, "SPEC", "variant spec" },
	{ "backend", O_BACKEND, "NAME", "cpu (default) or cuda: the backend whose default variant to print" },
	{ "help", 'h', NULL, "show this text" },
	{ 0 },
};

static const struct cli_cmd cmd = {
	"gen",
	"mtatune gen --problem KEY [--variant SPEC | --backend NAME]",
	"Print the source the generator emits for a problem and a variant (default:\n"
	"the backend's default variant for the problem). Variant specs look like\n"
	"cpu:v1,bq=16,bk=64,hpb=4,vec=8,thr=0,algo=0 or cuda:v1,bq=16,bk=32,hpb=4,warps=4;\n"
	"keys left out take defaults.\n",
	opts, NULL,
};

int cmd_gen(int argc, char **argv)
{
	const char *key = NULL, *spec = NULL;
	const struct mta_backend *be = &mta_backend_cpu;
	struct mta_problem p;
	struct mta_variant v;
	struct cli_getopt g;
	char *src = NULL;
	int c;

	cli_getopt_init(&g, &cmd);
	while ((c = cli_next(&g, argc, argv)) != -1) {
		switch (c) {
		case 'h': cli_help(stdout, &cmd); return CLI_OK;
		case O_PROBLEM: key = optarg; break;
		case O_VARIANT: spec = optarg; break;
		case O_BACKEND:
			if (mta_backend_find(optarg, &be))
				return cli_fail("gen", CLI_USAGE, "--backend: %s", mta_last_error());
			break;
		default: return cli_bad_option("gen", c, argv);
		}
	}
	if (optind < argc)
		return cli_fail("gen", CLI_USAGE, "unexpected argument '%s'", argv[optind]);
	if (!key)
		return cli_fail("gen", CLI_USAGE, "--problem KEY is required (see 'mtatune gen --help')");
	if (mta_problem_from_key(key, &p))
		return cli_fail("gen", CLI_USAGE, "--problem: %s", mta_last_error());
	if (spec ? mta_variant_parse(spec, &v) : mta_variant_default(&p, be->variants, &v))
		return cli_fail("gen", CLI_USAGE, "--variant: %s", mta_last_error());
	if (mta_variant_check(&p, &v))
		return cli_fail("gen", CLI_USAGE, "variant does not fit the problem: %s",
				mta_last_error());
	if (mta_gen_source(&p, &v, &src))
		return cli_fail("gen", CLI_RUNTIME, "%s", mta_last_error());
	fputs(src, stdout);
	free(src);
	return CLI_OK;
}
