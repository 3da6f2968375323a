/* cmd_gen.c: `mtatune gen`: print a generated kernel's source. */
#include "cli.h"
#include "cgen.h"
#include "cudagen.h"
#include "error.h"
#include "variant.h"

#include <getopt.h>
#include <stdlib.h>

static const char usage_text[] =
	"usage: mtatune gen --problem KEY [--variant SPEC | --backend NAME]\n"
	"\n"
	"Print the source the generator emits for a problem and a variant (default:\n"
	"the backend's default variant for the problem). Variant specs look like\n"
	"cpu:v1,bq=16,bk=64,hpb=4,vec=8,thr=0,algo=0 or cuda:v1,bq=16,bk=32,hpb=4,warps=4;\n"
	"keys left out take defaults.\n"
	"\n"
	"  --problem KEY     problem key (required)\n"
	"  --variant SPEC    variant spec\n"
	"  --backend NAME    cpu (default) or cuda: the backend whose default variant to print\n"
	"  -h, --help        show this text\n";

int cmd_gen(int argc, char **argv)
{
	enum { O_PROBLEM = 256, O_VARIANT, O_BACKEND };
	static const struct option opts[] = {
		{ "problem", required_argument, NULL, O_PROBLEM },
		{ "variant", required_argument, NULL, O_VARIANT },
		{ "backend", required_argument, NULL, O_BACKEND },
		{ "help", no_argument, NULL, 'h' },
		{ 0 },
	};
	const char *key = NULL, *spec = NULL;
	int backend = MTA_BACKEND_CPU, c, rc;
	struct mta_problem p;
	struct mta_variant v;
	char *src = NULL;

	opterr = 0;
	while ((c = getopt_long(argc, argv, ":h", opts, NULL)) != -1) {
		switch (c) {
		case 'h': fputs(usage_text, stdout); return CLI_OK;
		case O_PROBLEM: key = optarg; break;
		case O_VARIANT: spec = optarg; break;
		case O_BACKEND:
			if (mta_backend_parse(optarg, &backend))
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
	if (spec ? mta_variant_parse(spec, &v) : mta_variant_default(&p, backend, &v))
		return cli_fail("gen", CLI_USAGE, "--variant: %s", mta_last_error());
	if (mta_variant_check(&p, &v))
		return cli_fail("gen", CLI_USAGE, "variant does not fit the problem: %s",
				mta_last_error());
	if ((rc = v.backend == MTA_BACKEND_CUDA ? mta_gen_cuda(&p, &v, &src) : mta_gen_c(&p, &v, &src)))
		return cli_fail("gen", CLI_RUNTIME, "%s", mta_last_error());
	fputs(src, stdout);
	free(src);
	return CLI_OK;
}
