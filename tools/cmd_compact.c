/* vdisk compact. */
#include "cli.h"

static void compact_help(FILE *out)
{
	fprintf(out, "Usage: vdisk compact ...\n\nNot available yet.\n");
}

static int compact_run(int argc, char **argv)
{
	(void)argc;
	(void)argv;
	return cli_fail("compact", NULL, 0, "not available yet");
}

const struct cli_command cmd_compact = {
	.name = "compact",
	.summary = "(not available yet)",
	.run = compact_run,
	.help = compact_help,
};
