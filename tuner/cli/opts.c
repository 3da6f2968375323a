/* opts.c: getopt tables and --help text from one option table (see opts.h). */
#include "tuner/cli/opts.h"

#include <string.h>

#define LABEL_WIDTH 18

void cli_getopt_init(struct cli_getopt *g, const struct cli_cmd *c)
{
	size_t n = 0, s = 0;
	memset(g, 0, sizeof *g);
	g->so[s++] = ':'; /* report a missing argument as ':' */
	for (const struct cli_opt *o = c->opts; o->name && n < CLI_MAX_OPTS; o++, n++) {
		g->lo[n] = (struct option){ o->name, o->meta ? required_argument : no_argument, NULL,
					    o->key };
		if (o->key > 0 && o->key < 128) {
			g->so[s++] = (char)o->key;
			if (o->meta)
				g->so[s++] = ':';
		}
	}
}

int cli_next(struct cli_getopt *g, int argc, char **argv)
{
	opterr = 0;
	return getopt_long(argc, argv, g->so, g->lo, NULL);
}

void cli_help_options(FILE *f, const struct cli_cmd *c)
{
	for (const struct cli_opt *o = c->opts; o->name; o++) {
		char label[64];
		if (o->key > 0 && o->key < 128)
			snprintf(label, sizeof label, "-%c, --%s%s%s", o->key, o->name, o->meta ? " " : "",
				 o->meta ? o->meta : "");
		else
			snprintf(label, sizeof label, "--%s%s%s", o->name, o->meta ? " " : "",
				 o->meta ? o->meta : "");
		fprintf(f, "  %-*s", LABEL_WIDTH, label);
		if (strlen(label) >= LABEL_WIDTH)
			fprintf(f, "\n  %-*s", LABEL_WIDTH, "");
		for (const char *h = o->help;;) {
			size_t len = strcspn(h, "\n");
			fprintf(f, "%.*s\n", (int)len, h);
			if (!h[len])
				break;
			h += len + 1;
			fprintf(f, "  %-*s", LABEL_WIDTH, "");
		}
	}
}

void cli_help(FILE *f, const struct cli_cmd *c)
{
	fprintf(f, "usage: %s\n\n%s\n", c->usage, c->about);
	cli_help_options(f, c);
	if (c->epilog)
		fprintf(f, "\n%s", c->epilog);
}
