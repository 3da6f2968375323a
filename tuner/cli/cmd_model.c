/*
 * cmd_model.c: `mtatune model`: the static cost model of a CUDA variant
 * (tuner/model/, docs/gpu/model.md): SASS counted by class and loop, an
 * estimated time on an H100/H200 and the problem's floor beside it.
 */
#include "tuner/cli/cli.h"
#include "runtime/core/error.h"
#include "tuner/model/model.h"

#include <stdio.h>
#include <string.h>

enum { O_PROBLEM = 256, O_VARIANT, O_ARCH, O_MACHINE, O_SEQ, O_BATCH, O_ROWS };

static const struct cli_opt opts[] = {
	{ "problem", O_PROBLEM, "KEY", "problem key (required)" },
	{ "variant", O_VARIANT, "SPEC", "a cuda variant (default: the problem's default CUDA\n"
					"variant on --arch, what an untuned problem runs there)" },
	{ "arch", O_ARCH, "SM", "architecture to compile for (default sm_90)" },
	{ "machine", O_MACHINE, "NAME", "h100 (default) or h200: the rates and bandwidths" },
	{ "seq", O_SEQ, "T", "sequence length (default 4096)" },
	{ "batch", O_BATCH, "B", "batch (default 4)" },
	{ "rows", O_ROWS, "N", "list the N heaviest regions (default 12; 0: none)" },
	{ "help", 'h', NULL, "show this text" },
	{ 0 },
};

static const struct cli_cmd cmd = {
	"model",
	"mtatune model --problem KEY [--variant SPEC] [--arch SM] [--machine NAME]\n"
	"                     [--seq T] [--batch B] [--rows N]",
	"Estimate, without a GPU, the time of a CUDA variant: compile it with NVRTC,\n"
	"disassemble the cubin with nvdisasm, count the instructions of every marked\n"
	"loop by class (FP32, integer, SFU, conversions, HMMA, shared and global memory,\n"
	"shuffles, barriers) times its trip count, and turn the counts, the registers\n"
	"and shared memory (occupancy) into a time on an H100 or H200; print the floor of\n"
	"the problem beside it. Needs NVRTC and nvdisasm (from the CUDA toolkit, or\n"
	"pip install nvidia-cuda-nvdisasm into .venv/). docs/gpu/model.md says how good\n"
	"the numbers are.\n",
	opts, NULL,
};

int cmd_model(int argc, char **argv)
{
	const char *key = NULL, *spec = NULL, *arch = "sm_90", *machine = "h100";
	long T = 4096, B = 4, rows = 12;
	struct mta_problem p;
	struct mta_variant v;
	struct mta_model_report r;
	struct cli_getopt g;
	char nvdisasm[4096];
	int c, rc;

	cli_getopt_init(&g, &cmd);
	while ((c = cli_next(&g, argc, argv)) != -1) {
		switch (c) {
		case 'h': cli_help(stdout, &cmd); return CLI_OK;
		case O_PROBLEM: key = optarg; break;
		case O_VARIANT: spec = optarg; break;
		case O_ARCH: arch = optarg; break;
		case O_MACHINE:
			if (!mta_machine_find(optarg))
				return cli_fail("model", CLI_USAGE, "--machine '%s': expected %s", optarg,
						mta_machine_names());
			machine = optarg;
			break;
		case O_SEQ:
			if (cli_parse_long(optarg, 1, 1L << 30, &T))
				return cli_fail("model", CLI_USAGE, "--seq '%s' is not an integer in "
						"1..2^30", optarg);
			break;
		case O_BATCH:
			if (cli_parse_long(optarg, 1, 65535, &B))
				return cli_fail("model", CLI_USAGE, "--batch '%s' is not an integer in "
						"1..65535", optarg);
			break;
		case O_ROWS:
			if (cli_parse_long(optarg, 0, 1000, &rows))
				return cli_fail("model", CLI_USAGE, "--rows '%s' is not an integer in "
						"0..1000", optarg);
			break;
		default: return cli_bad_option("model", c, argv);
		}
	}
	if (optind < argc)
		return cli_fail("model", CLI_USAGE, "unexpected argument '%s'", argv[optind]);
	if (!key)
		return cli_fail("model", CLI_USAGE, "--problem KEY is required (see 'mtatune model "
				"--help')");
	if (mta_problem_from_key(key, &p))
		return cli_fail("model", CLI_USAGE, "--problem: %s", mta_last_error());
	if (spec ? mta_variant_parse(spec, &v)
		 : mta_variant_default_arch(&p, MTA_BACKEND_CUDA, arch, &v))
		return cli_fail("model", CLI_USAGE, "--variant: %s", mta_last_error());
	if (v.backend != MTA_BACKEND_CUDA)
		return cli_fail("model", CLI_USAGE, "--variant: the model reads CUDA kernels; '%s' "
				"is not a cuda variant", spec);
	if (mta_variant_check(&p, &v))
		return cli_fail("model", CLI_USAGE, "variant does not fit the problem: %s",
				mta_last_error());
	if (mta_model_nvdisasm(nvdisasm, sizeof nvdisasm))
		return cli_fail("model", CLI_RUNTIME, "%s", mta_last_error());
	if ((rc = mta_model_run(&p, &v, arch, machine, B, T, nvdisasm, &r)))
		return cli_fail("model", rc == MTA_EINVAL ? CLI_USAGE : CLI_RUNTIME, "%s",
				mta_last_error());
	mta_model_print(stdout, &r, (int)rows);
	mta_model_free(&r);
	if (fflush(stdout) || ferror(stdout))
		return cli_fail("model", CLI_RUNTIME, "cannot write the report");
	return CLI_OK;
}
