/*
 * cmd_devices.c: `mtatune devices`: what this machine can run kernels on.
 *
 * Prints the CPU's identity (as the database records it), NVRTC's version,
 * and each CUDA device with its architecture, multiprocessors, memory and
 * driver version; or one plain line saying that no CUDA driver or device
 * was found and why. That is information, not a failure: the exit status
 * is 0 either way.
 */
#include "tuner/cli/cli.h"
#include "runtime/cuda/cuda.h"
#include "runtime/host.h"
#include "runtime/core/error.h"

#include <stdio.h>
#include <string.h>

static const struct cli_opt opts[] = {
	{ "help", 'h', NULL, "show this text" },
	{ 0 },
};

static const struct cli_cmd cmd = {
	"devices",
	"mtatune devices",
	"List the devices mtatune can tune and run kernels on: the CPU, and the CUDA\n"
	"devices the driver (libcuda.so.1, loaded at run time; MTATUNE_LIBCUDA names\n"
	"another path) makes visible (CUDA_VISIBLE_DEVICES applies). Without a driver or\n"
	"a device it says so and still exits 0.\n",
	opts, NULL,
};

int cmd_devices(int argc, char **argv)
{
	struct mta_db_device d;
	char nv[16];
	int c, n = 0;

	struct cli_getopt g;
	cli_getopt_init(&g, &cmd);
	while ((c = cli_next(&g, argc, argv)) != -1) {
		if (c == 'h') {
			cli_help(stdout, &cmd);
			return CLI_OK;
		}
		return cli_bad_option("devices", c, argv);
	}
	if (optind < argc)
		return cli_fail("devices", CLI_USAGE, "unexpected argument '%s' (see 'mtatune devices "
				"--help')", argv[optind]);
	mta_device_cpu(&d);
	printf("cpu: %s, %s, %d cores, compiler %s\n", d.name, d.arch, d.cores,
	       *d.compiler ? d.compiler : "none found");
	if (mta_cuda_nvrtc_version(nv, sizeof nv) == MTA_OK)
		printf("nvrtc: %s\n", nv);
	else
		printf("nvrtc: not available: %s\n", mta_last_error());
	if (mta_cuda_device_count(&n)) {
		printf("no CUDA driver or device found: %s\n", mta_last_error());
		return CLI_OK;
	}
	for (int i = 0; i < n; i++) {
		struct mta_cuda_device dev;
		if (mta_cuda_device_info(i, &dev)) {
			printf("cuda %d: %s\n", i, mta_last_error());
			continue;
		}
		printf("cuda %d: %s, %s, %d SMs, %.1f GiB, L2 %d KiB, shared memory %d KiB per "
		       "block, driver %s\n", i, dev.name, dev.arch, dev.sms,
		       (double)dev.total_mem / (1024.0 * 1024 * 1024), dev.l2_bytes / 1024,
		       dev.smem_optin / 1024, dev.driver_str);
	}
	return CLI_OK;
}
