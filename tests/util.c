/* util.c: helpers the tests share (see harness.h for the contracts). */
#include "tests/harness.h"
#include "runtime/mta.h"

#include <stdarg.h>
#include <stdint.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static char tmpdir[512];
static unsigned long long seed, state;

/*
 * Begin a test in its child: seed its random numbers (s, chosen by the
 * runner so that it can name the seed of a test that crashes) and make its
 * temporary directory.
 */
void mt_util_begin(const char *name, unsigned long long s)
{
	seed = s;
	state = seed ? seed : 1;
	const char *base = getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp";
	snprintf(tmpdir, sizeof tmpdir, "%s/mt-%s-XXXXXX", base, name);
	if (!mkdtemp(tmpdir))
		tmpdir[0] = 0;
}

/* The seed of a test: MT_SEED when set, else fresh from the clock and a counter. */
unsigned long long mt_util_seed(void)
{
	static unsigned long long n;
	const char *s = getenv("MT_SEED");
	struct timespec ts;
	if (s)
		return strtoull(s, NULL, 10);
	clock_gettime(CLOCK_REALTIME, &ts);
	return (unsigned long long)ts.tv_nsec ^ ((unsigned long long)getpid() << 32) ^
	       (++n * 0x9e3779b97f4a7c15ull);
}

void mt_util_end(void)
{
	char cmd[600];
	if (tmpdir[0] && !getenv("MT_KEEP")) {
		snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmpdir);
		if (system(cmd) != 0)
			fprintf(stderr, "could not remove %s\n", tmpdir);
	}
}

unsigned long long mt_seed(void) { return seed; }
unsigned long long mt_rng_save(void) { return state; }
void mt_rng_restore(unsigned long long s) { state = s; }
const char *mt_tmpdir(void) { return tmpdir; }

const char *mt_golden_dir(void)
{
	const char *g = getenv("MTA_GOLDEN");
	return g ? g : "../shared/golden";
}

int mt_sanitized(void)
{
#if defined(__SANITIZE_ADDRESS__)
	return 1;
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
	return 1;
#else
	return 0;
#endif
#else
	return 0;
#endif
}

const char *mt_bin(void)
{
	const char *b = getenv("MTATUNE_BIN");
	return b ? b : "bin/mtatune";
}

double mt_uniform(void)
{
	for (;;) {
		/* xorshift64* */
		state ^= state >> 12;
		state ^= state << 25;
		state ^= state >> 27;
		uint64_t r = state * 2685821657736338717ULL;
		double u = (double)(r >> 11) * (1.0 / 9007199254740992.0);
		double x = 2.0 * u - 1.0;
		if (x != 0.0)
			return x;
	}
}

double mt_rel_l2_f32(const float *a, const double *b, size_t n) { return mta_rel_l2(a, b, n); }

double mt_rel_l2_f64(const double *a, const double *b, size_t n)
{
	double num = 0, den = 0;
	for (size_t i = 0; i < n; i++) {
		if (!isfinite(a[i]))
			return INFINITY;
		double d = a[i] - b[i];
		num += d * d;
		den += b[i] * b[i];
	}
	return den > 0 ? sqrt(num / den) : sqrt(num);
}

int mt_sh(char **output, const char *fmt, ...)
{
	char cmd[8192];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(cmd, sizeof cmd, fmt, ap);
	va_end(ap);
	char full[8300];
	snprintf(full, sizeof full, "( %s ) 2>&1", cmd);
	FILE *f = popen(full, "r");
	if (!f)
		return -1;
	size_t cap = 4096, len = 0;
	char *buf = malloc(cap);
	size_t r;
	while (buf && (r = fread(buf + len, 1, cap - len - 1, f)) > 0) {
		len += r;
		if (cap - len < 2) {
			char *nb = realloc(buf, cap * 2);
			if (!nb)
				break;
			buf = nb;
			cap *= 2;
		}
	}
	if (buf)
		buf[len] = 0;
	int st = pclose(f);
	if (output)
		*output = buf;
	else
		free(buf);
	return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + (WIFSIGNALED(st) ? WTERMSIG(st) : 0);
}
