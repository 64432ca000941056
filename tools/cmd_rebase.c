/* vdisk rebase. */
#include "cli.h"

static void rebase_help(FILE *out)
{
	fprintf(out, "Usage: vdisk rebase ...\n\nNot available yet.\n");
}

static int rebase_run(int argc, char **argv)
{
	(void)argc;
	(void)argv;
	return cli_fail("rebase", NULL, 0, "not available yet");
}

const struct cli_command cmd_rebase = {
	.name = "rebase",
	.summary = "(not available yet)",
	.run = rebase_run,
	.help = rebase_help,
};
