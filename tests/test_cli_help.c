/*
 * test_cli_help.c: the README's command reference is what the commands
 * say. For every command `mtatune --help` lists (db: its sub-command
 * merge), the README has a heading "### `mtatune CMD`" followed by an
 * indented block that must equal the usage lines and the option block of
 * `mtatune CMD --help`, both printed from the command's option table.
 */
#include "tests/harness.h"

/* The text of file (malloc'd), or NULL. */
static char *slurp(const char *path)
{
	FILE *f = fopen(path, "rb");
	if (!f)
		return NULL;
	fseek(f, 0, SEEK_END);
	long n = ftell(f);
	fseek(f, 0, SEEK_SET);
	char *s = malloc((size_t)n + 1);
	if (s && fread(s, 1, (size_t)n, f) != (size_t)n) {
		free(s);
		s = NULL;
	}
	if (s)
		s[n] = 0;
	fclose(f);
	return s;
}

/*
 * The part of a --help text the README shows: the usage lines (up to the
 * first blank line), a blank line, and the option block (from the first line
 * that starts with "  -" to the next blank line).
 */
static char *help_block(const char *help)
{
	const char *blank = strstr(help, "\n\n");
	const char *opts = strstr(help, "\n  -");
	if (!blank || !opts)
		return NULL;
	opts++;
	const char *end = strstr(opts, "\n\n");
	size_t nu = (size_t)(blank - help) + 1, no = end ? (size_t)(end - opts) + 1 : strlen(opts);
	char *out = malloc(nu + no + 2);
	if (!out)
		return NULL;
	memcpy(out, help, nu);
	out[nu] = '\n';
	memcpy(out + nu + 1, opts, no);
	out[nu + 1 + no] = 0;
	return out;
}

/* The README's indented block after "### `mtatune CMD`", de-indented (malloc'd), or NULL. */
static char *readme_block(const char *readme, const char *cmd)
{
	char head[64];
	snprintf(head, sizeof head, "\n### `mtatune %s`\n", cmd);
	const char *s = strstr(readme, head);
	if (!s)
		return NULL;
	s += strlen(head);
	while (*s == '\n')
		s++;
	char *out = malloc(strlen(s) + 1);
	size_t n = 0;
	if (!out)
		return NULL;
	/* lines indented by four spaces, and the blank lines between them */
	while (*s) {
		size_t len = strcspn(s, "\n");
		if (len == 0) {
			const char *next = s + 1;
			if (strncmp(next, "    ", 4))
				break;
			out[n++] = '\n';
		} else if (!strncmp(s, "    ", 4)) {
			memcpy(out + n, s + 4, len - 4);
			n += len - 4;
			out[n++] = '\n';
		} else {
			break;
		}
		s += len + (s[len] ? 1 : 0);
	}
	out[n] = 0;
	return out;
}

TEST(readme_shows_every_commands_help_as_it_is)
{
	char *readme = slurp("README.md"), *list = NULL;
	REQUIRE(readme);
	REQUIRE(mt_sh(&list, "%s --help", mt_bin()) == 0 && list);
	/* the commands: lines "  NAME  summary" after "Commands:" */
	const char *c = strstr(list, "Commands:\n");
	REQUIRE(c);
	c += strlen("Commands:\n");
	int n = 0;
	while (!strncmp(c, "  ", 2)) {
		char name[32], cmd[48];
		sscanf(c + 2, "%31s", name);
		snprintf(cmd, sizeof cmd, "%s%s", name, strcmp(name, "db") ? "" : " merge");
		char *help = NULL;
		int rc = mt_sh(&help, "%s %s --help", mt_bin(), cmd);
		CHECKF(rc == 0, "%s --help: exit %d", cmd, rc);
		char *want = help ? help_block(help) : NULL;
		char *have = readme_block(readme, cmd);
		CHECKF(want, "%s --help has no usage or option block:\n%s", cmd, help);
		CHECKF(have, "README.md has no section \"### `mtatune %s`\"", cmd);
		if (want && have)
			CHECKF(!strcmp(want, have), "README.md's block for %s differs from --help:\n"
			       "--- README ---\n%s--- --help ---\n%s", cmd, have, want);
		free(help);
		free(want);
		free(have);
		n++;
		c += strcspn(c, "\n") + 1;
	}
	CHECKF(n >= 10, "only %d commands listed", n);
	free(list);
	free(readme);
}
