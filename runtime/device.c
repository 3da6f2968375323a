/* device.c: this machine's identity for the database (see device.h). */
#include "device.h"
#include "ccompile.h"
#include "error.h"

#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <sys/utsname.h>
#include <unistd.h>

static char name[256], arch[96];
static pthread_once_t once = PTHREAD_ONCE_INIT;

static void probe(void)
{
	struct utsname u;
	char line[4096];
	const char *ext = "";
	FILE *f = fopen("/proc/cpuinfo", "r");

	snprintf(name, sizeof name, "unknown CPU");
	while (f && fgets(line, sizeof line, f)) {
		char *colon = strchr(line, ':');
		if (!colon)
			continue;
		if (!strncmp(line, "model name", 10) && !strcmp(name, "unknown CPU")) {
			char *v = colon + 2;
			v[strcspn(v, "\n")] = 0;
			snprintf(name, sizeof name, "%s", v);
		}
		if (!strncmp(line, "flags", 5) && !*ext)
			ext = strstr(line, " avx512f") ? "-avx512" : strstr(line, " avx2") ? "-avx2"
			      : strstr(line, " avx ") ? "-avx" : "-sse";
	}
	if (f)
		fclose(f);
	if (uname(&u))
		snprintf(u.machine, sizeof u.machine, "unknown");
	snprintf(arch, sizeof arch, "%s%s", u.machine, strcmp(u.machine, "x86_64") ? "" : ext);
}

int mta_device_cpu(struct mta_db_device *d)
{
	pthread_once(&once, probe);
	memset(d, 0, sizeof *d);
	d->backend = "cpu";
	d->name = name;
	d->arch = arch;
	d->driver = "";
	d->nvrtc = "";
	d->compiler = mta_cc_identity(MTA_LANG_C);
	if (!d->compiler)
		d->compiler = "";
	d->cores = (int)sysconf(_SC_NPROCESSORS_ONLN);
	return MTA_OK;
}
