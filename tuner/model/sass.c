/*
 * sass.c: nvdisasm found, run and read (see model.h).
 *
 * nvdisasm runs through posix_spawn with an argument vector (never a
 * shell) on a cubin written into a private temporary folder (mkdtemp,
 * 0700; the file created with O_EXCL|O_NOFOLLOW), which is removed again.
 * Its -gi listing gives every instruction the source line it came from and
 * the chain of lines it was inlined through (comments "## File ..., line N
 * inlined at ..., line M", one line per level, innermost first).
 */
#include "tuner/model/model.h"
#include "runtime/core/error.h"

#include <errno.h>
#include <fcntl.h>
#include <glob.h>
#include <limits.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

extern char **environ;

#define OUT_MAX (256u << 20)

static const char *const class_names[MC_N] = {
	"fp32", "imad", "alu", "mufu", "cvt", "hmma", "lds", "sts", "ldg", "stg", "shfl", "bar",
	"fence", "ctrl",
};

const char *mta_model_class_name(int cls)
{
	return cls >= 0 && cls < MC_N ? class_names[cls] : "?";
}

static int executable(const char *path)
{
	struct stat st;
	return stat(path, &st) == 0 && S_ISREG(st.st_mode) && access(path, X_OK) == 0;
}

/* The first match of pattern that is executable, into path. */
static int glob_first(const char *pattern, char *path, size_t n)
{
	glob_t g;
	int found = 0;
	if (glob(pattern, 0, NULL, &g) == 0) {
		for (size_t i = 0; i < g.gl_pathc && !found; i++)
			if (executable(g.gl_pathv[i]) && strlen(g.gl_pathv[i]) < n) {
				snprintf(path, n, "%s", g.gl_pathv[i]);
				found = 1;
			}
		globfree(&g);
	}
	return found;
}

#define VENV_BIN ".venv/lib/python3*/site-packages/nvidia/cu*/bin/nvdisasm"

int mta_model_nvdisasm(char *path, size_t n)
{
	const char *env = getenv("MTATUNE_NVDISASM"), *pathv = getenv("PATH");
	char buf[PATH_MAX + 64], self[PATH_MAX];
	if (env && *env) {
		if (executable(env) && strlen(env) < n) {
			snprintf(path, n, "%s", env);
			return MTA_OK;
		}
		return mta_fail(MTA_ENODEV, "MTATUNE_NVDISASM=%s is not an executable file", env);
	}
	if (pathv) {
		const char *p = pathv;
		while (*p) {
			size_t len = strcspn(p, ":");
			if (len && len < PATH_MAX) {
				snprintf(buf, sizeof buf, "%.*s/nvdisasm", (int)len, p);
				if (executable(buf) && strlen(buf) < n) {
					snprintf(path, n, "%s", buf);
					return MTA_OK;
				}
			}
			p += len + (p[len] == ':');
		}
	}
	if (executable("/usr/local/cuda/bin/nvdisasm")) {
		snprintf(path, n, "/usr/local/cuda/bin/nvdisasm");
		return MTA_OK;
	}
	if (glob_first(VENV_BIN, path, n))
		return MTA_OK;
	/* the virtual environment beside the binary's folder (bin/mtatune, build/x/mtatune) */
	ssize_t len = readlink("/proc/self/exe", self, sizeof self - 1);
	if (len > 0) {
		self[len] = 0;
		for (int up = 0; up < 3; up++) {
			char *slash = strrchr(self, '/');
			if (!slash)
				break;
			*slash = 0;
			snprintf(buf, sizeof buf, "%s/" VENV_BIN, self);
			if (glob_first(buf, path, n))
				return MTA_OK;
		}
	}
	return mta_fail(MTA_ENODEV, "nvdisasm not found (tried $MTATUNE_NVDISASM, PATH, "
			"/usr/local/cuda/bin and .venv/); the model disassembles cubins with it. It "
			"comes with the CUDA toolkit, or from PyPI: python3 -m venv .venv && "
			".venv/bin/pip install nvidia-cuda-nvdisasm (found there from the project's "
			"folder), or set MTATUNE_NVDISASM to its path");
}

/* Write n bytes to a new file path (O_EXCL: never an existing file or link). */
static int write_new(const char *path, const void *data, size_t n)
{
	int fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
	const char *p = data;
	if (fd < 0)
		return mta_fail(MTA_EIO, "cannot create %s: %s", path, strerror(errno));
	while (n) {
		ssize_t w = write(fd, p, n);
		if (w < 0 && errno == EINTR)
			continue;
		if (w <= 0) {
			close(fd);
			return mta_fail(MTA_EIO, "cannot write %s: %s", path, strerror(errno));
		}
		p += w;
		n -= (size_t)w;
	}
	if (close(fd))
		return mta_fail(MTA_EIO, "cannot write %s: %s", path, strerror(errno));
	return MTA_OK;
}

int mta_sass_disasm(const char *nvdisasm, const void *cubin, size_t n, char **text)
{
	const char *tmp = getenv("TMPDIR");
	char dir[PATH_MAX], file[PATH_MAX + 16], *buf = NULL, *err = NULL;
	size_t len = 0, cap = 0, elen = 0;
	int fd[2] = { -1, -1 }, efd[2] = { -1, -1 }, rc = MTA_OK, st = 0, made = 0;
	pid_t pid = -1;

	*text = NULL;
	snprintf(dir, sizeof dir, "%s/mtatune-model-XXXXXX", tmp && *tmp ? tmp : "/tmp");
	if (!mkdtemp(dir))
		return mta_fail(MTA_EIO, "cannot make a temporary folder %s: %s", dir, strerror(errno));
	snprintf(file, sizeof file, "%s/k.cubin", dir);
	if ((rc = write_new(file, cubin, n)))
		goto out;
	made = 1;
	if (pipe(fd) || pipe(efd)) {
		rc = mta_fail(MTA_EIO, "pipe: %s", strerror(errno));
		goto out;
	}
	char *argv[] = { (char *)nvdisasm, "-c", "-gi", file, NULL };
	posix_spawn_file_actions_t fa;
	posix_spawn_file_actions_init(&fa);
	posix_spawn_file_actions_adddup2(&fa, fd[1], 1);
	posix_spawn_file_actions_adddup2(&fa, efd[1], 2);
	posix_spawn_file_actions_addclose(&fa, fd[0]);
	posix_spawn_file_actions_addclose(&fa, efd[0]);
	int e = posix_spawn(&pid, nvdisasm, &fa, NULL, argv, environ);
	posix_spawn_file_actions_destroy(&fa);
	close(fd[1]);
	close(efd[1]);
	fd[1] = efd[1] = -1;
	if (e) {
		pid = -1;
		rc = mta_fail(MTA_ENODEV, "cannot run %s: %s", nvdisasm, strerror(e));
		goto out;
	}
	/* stdout in full; stderr is small and read after (nvdisasm writes it last) */
	for (;;) {
		if (len + 65536 + 1 > cap) {
			size_t nc = cap ? cap * 2 : 1 << 20;
			char *nb = nc <= OUT_MAX ? realloc(buf, nc) : NULL;
			if (!nb) {
				rc = mta_fail(MTA_ENOMEM, "nvdisasm's listing is too large");
				goto out;
			}
			buf = nb;
			cap = nc;
		}
		ssize_t r = read(fd[0], buf + len, cap - len - 1);
		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0)
			break;
		len += (size_t)r;
	}
	buf[len] = 0;
	if ((err = malloc(4096))) {
		ssize_t r;
		while (elen < 4095 && ((r = read(efd[0], err + elen, 4095 - elen)) > 0 ||
				       (r < 0 && errno == EINTR)))
			if (r > 0)
				elen += (size_t)r;
		err[elen] = 0;
	}
out:
	if (fd[0] >= 0)
		close(fd[0]);
	if (efd[0] >= 0)
		close(efd[0]);
	if (fd[1] >= 0)
		close(fd[1]);
	if (efd[1] >= 0)
		close(efd[1]);
	if (pid > 0) {
		while (waitpid(pid, &st, 0) < 0 && errno == EINTR)
			;
		if (!rc && !(WIFEXITED(st) && WEXITSTATUS(st) == 0))
			rc = mta_fail(MTA_EFORMAT, "%s failed on the cubin: %.300s", nvdisasm,
				      err && err[0] ? err : "no message");
	}
	if (made)
		unlink(file);
	rmdir(dir);
	free(err);
	if (rc) {
		free(buf);
		return rc;
	}
	*text = buf;
	return MTA_OK;
}

/*
 * The class and width of an instruction from its text: the opcode and its
 * modifiers, which end at the first blank (an operand's ".64", a 64-bit
 * address as in [R10.64], is not a width).
 */
static void classify(const char *text, int *cls, int *width)
{
	char base[24], op[64];
	snprintf(op, sizeof op, "%.*s", (int)strcspn(text, " \t;"), text);
	size_t k = strcspn(op, ". ");
	snprintf(base, sizeof base, "%.*s", (int)(k < sizeof base ? k : sizeof base - 1), op);
	*width = 0;
#define IS(s) (!strcmp(base, s))
	if (IS("FFMA") || IS("FADD") || IS("FMUL") || IS("FSWZADD") || IS("HFMA2") || IS("HADD2") ||
	    IS("HMUL2") || IS("FFMA2") || IS("FADD2") || IS("FMUL2"))
		*cls = MC_FP32;
	else if (IS("IMAD") || IS("IMUL") || IS("IDP") || IS("IDP4A"))
		*cls = MC_IMAD;
	else if (IS("MUFU"))
		*cls = MC_MUFU;
	else if (IS("F2F") || IS("F2I") || IS("I2F") || IS("F2FP") || IS("I2FP") || IS("FRND"))
		*cls = MC_CVT;
	else if (IS("HMMA") || IS("BMMA") || IS("IMMA")) {
		*cls = MC_HMMA;
		*width = strstr(op, ".16816") ? 2 : 1;
	} else if (IS("HGMMA")) {
		*cls = MC_HMMA; /* wgmma: m64nNk16 per warpgroup, a quarter per warp */
		const char *n = strstr(op, ".64x");
		*width = n ? 2 * 4 * atoi(n + 4) / 8 / 4 : 8;
	} else if (IS("LDS") || IS("LDSM")) {
		*cls = MC_LDS;
		*width = IS("LDSM") ? (strstr(op, ".4") ? 16 : strstr(op, ".2") ? 8 : 4)
			: strstr(op, ".128") ? 16 : strstr(op, ".64") ? 8 : 4;
	} else if (IS("STS") || IS("STSM") || IS("STAS") || IS("ST")) {
		/*
		 * STAS: st.async into a cluster peer's shared memory. ST, the
		 * generic store: in these kernels only a store through mapa into
		 * a peer's shared memory (distributed shared memory) compiles to
		 * it, global stores are STG; priced as a shared store.
		 */
		*cls = MC_STS;
		*width = strstr(op, ".128") ? 16 : strstr(op, ".64") ? 8 : 4;
	} else if (IS("LDG") || IS("LDGSTS") || IS("LDL") || IS("LD") || IS("UBLKCP") ||
		   IS("UTMALDG")) {
		*cls = MC_LDG;
		*width = strstr(op, ".128") ? 16 : strstr(op, ".64") ? 8 :
			 strstr(op, ".U16") || strstr(op, ".S16") ? 2 :
			 strstr(op, ".U8") || strstr(op, ".S8") ? 1 : 4;
	} else if (IS("STG") || IS("STL") || IS("RED") || IS("ATOM") || IS("ATOMG") ||
		   IS("REDG")) {
		*cls = MC_STG;
		*width = strstr(op, ".128") ? 16 : strstr(op, ".64") ? 8 :
			 strstr(op, ".U16") || strstr(op, ".S16") ? 2 :
			 strstr(op, ".U8") || strstr(op, ".S8") ? 1 : 4;
	} else if (IS("SHFL") || IS("VOTE") || IS("MATCH") || IS("REDUX"))
		*cls = MC_SHFL;
	else if (IS("BAR") || IS("UCGABAR_WAIT") || (IS("SYNCS") && strstr(op, ".PHASECHK")))
		*cls = MC_BAR; /* SYNCS.PHASECHK: an mbarrier wait, as long as a barrier's */
	else if (IS("MEMBAR") && (strstr(op, ".GPU") || strstr(op, ".SYS")))
		*cls = MC_FENCE;
	else if (IS("IADD3") || IS("IADD") || IS("LOP3") || IS("LOP") || IS("SHF") || IS("SHL") ||
		 IS("SHR") || IS("LEA") || IS("ISETP") || IS("FSETP") || IS("HSETP2") || IS("SEL") ||
		 IS("FSEL") || IS("PRMT") || IS("MOV") || IS("IMNMX") || IS("VIMNMX") ||
		 IS("VIADD") || IS("VIADDMNMX") || IS("FMNMX") || IS("IABS") || IS("POPC") ||
		 IS("FLO") || IS("BREV") || IS("PLOP3") || IS("P2R") || IS("R2P") || IS("CS2R") ||
		 IS("FCHK") || IS("BMSK") || IS("SGXT") || IS("HMNMX2") || IS("VHMNMX"))
		*cls = MC_ALU;
	else
		*cls = MC_CTRL; /* branches, convergence, uniform datapath, S2R, LDC ... */
#undef IS
}

void mta_sass_free(struct mta_sass *s)
{
	free(s->v);
	s->v = NULL;
	s->n = 0;
}

int mta_sass_parse(const char *text, struct mta_sass *s)
{
	struct label { char name[24]; size_t at; } *labels = NULL;
	struct branch { size_t insn; char name[24]; } *branches = NULL;
	size_t nl = 0, cl = 0, nb = 0, cb = 0, cap = 0;
	int chain[8], nchain = 0, fresh = 1, rc = MTA_OK, in_kernel = 0;

	s->v = NULL;
	s->n = 0;
	for (const char *line = text; line && *line;) {
		const char *eol = strchr(line, '\n');
		size_t len = eol ? (size_t)(eol - line) : strlen(line);
		char l[512];
		snprintf(l, sizeof l, "%.*s", (int)(len < sizeof l ? len : sizeof l - 1), line);
		line = eol ? eol + 1 : NULL;
		const char *t = l + strspn(l, " \t");
		if (!in_kernel) {
			/* the kernel's code starts at its .text section's label */
			if (!strncmp(t, ".text.", 6) && strchr(t, ':'))
				in_kernel = 1;
			continue;
		}
		if (t[0] == '$' && strchr(t, ':'))
			break; /* a subroutine (a slow path); the kernel's own code ended */
		if (!strncmp(t, "//## File", 9)) {
			const char *ln = strstr(t, ", line ");
			if (fresh) {
				nchain = 0;
				fresh = 0;
			}
			if (ln && nchain < 8)
				chain[nchain++] = atoi(ln + 7);
			continue;
		}
		if (!strncmp(t, ".L_", 3) && strchr(t, ':')) {
			if (nl == cl) {
				cl = cl ? 2 * cl : 256;
				struct label *nlb = realloc(labels, cl * sizeof *labels);
				if (!nlb) {
					rc = mta_fail(MTA_ENOMEM, "out of memory");
					goto out;
				}
				labels = nlb;
			}
			snprintf(labels[nl].name, sizeof labels[nl].name, "%.*s", (int)strcspn(t, ":"), t);
			labels[nl++].at = s->n;
			continue;
		}
		if (strncmp(t, "/*", 2) || !strstr(t, "*/"))
			continue;
		/* an instruction: address comment, [@predicate] OPCODE operands ; */
		const char *p = strstr(t, "*/") + 2;
		p += strspn(p, " \t");
		if (*p == '@') {
			/* @!PT: predicated off for good (the compiler's padding): never issued */
			int never = !strncmp(p, "@!PT ", 5) || !strncmp(p, "@!PT\t", 5);
			p += strcspn(p, " \t");
			p += strspn(p, " \t");
			if (never) {
				fresh = 1;
				continue;
			}
		}
		if (!*p || *p == ';')
			continue;
		fresh = 1;
		/* a NOP issues like any instruction (the compiler puts them
		 * between dependent HMMAs); the padding after the last EXIT is
		 * cut with the cold paths below */
		if (s->n == cap) {
			cap = cap ? 2 * cap : 4096;
			struct mta_sass_insn *nv = realloc(s->v, cap * sizeof *s->v);
			if (!nv) {
				rc = mta_fail(MTA_ENOMEM, "out of memory");
				goto out;
			}
			s->v = nv;
		}
		struct mta_sass_insn *in = &s->v[s->n];
		memset(in, 0, sizeof *in);
		size_t oplen = strcspn(p, " \t;");
		snprintf(in->op, sizeof in->op, "%.*s", (int)(oplen < sizeof in->op ? oplen :
							       sizeof in->op - 1), p);
		classify(p, &in->cls, &in->width);
		in->async = !strncmp(p, "LDGSTS", 6) || !strncmp(p, "UBLKCP", 6) ||
			    !strncmp(p, "UTMALDG", 7);
		in->nlines = nchain;
		memcpy(in->lines, chain, sizeof chain[0] * (size_t)nchain);
		in->target = -1;
		const char *bq = strstr(p, "`(");
		if (!strncmp(p, "BRA", 3) && bq) {
			if (nb == cb) {
				cb = cb ? 2 * cb : 256;
				struct branch *nbr = realloc(branches, cb * sizeof *branches);
				if (!nbr) {
					rc = mta_fail(MTA_ENOMEM, "out of memory");
					goto out;
				}
				branches = nbr;
			}
			branches[nb].insn = s->n;
			snprintf(branches[nb].name, sizeof branches[nb].name, "%.*s",
				 (int)strcspn(bq + 2, ")"), bq + 2);
			nb++;
		}
		s->n++;
	}
	/* After the last EXIT the compiler puts cold paths (the shuffles of a
	 * diverged warp, reached only then): they are not counted. */
	size_t last_exit = s->n;
	for (size_t i = 0; i < s->n; i++)
		if (!strncmp(s->v[i].op, "EXIT", 4))
			last_exit = i;
	if (last_exit < s->n)
		s->n = last_exit + 1;
	if (!s->n) {
		rc = mta_fail(MTA_EFORMAT, "no instructions in nvdisasm's listing (was it a cubin with "
			      "one kernel?)");
		goto out;
	}
	for (size_t i = 0; i < nb; i++)
		for (size_t k = 0; k < nl && branches[i].insn < s->n; k++)
			if (!strcmp(labels[k].name, branches[i].name)) {
				if (labels[k].at < s->n)
					s->v[branches[i].insn].target = (int)labels[k].at;
				break;
			}
out:
	free(labels);
	free(branches);
	if (rc)
		mta_sass_free(s);
	return rc;
}
