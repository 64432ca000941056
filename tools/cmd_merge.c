/* vdisk merge. */
#include "cli.h"

static void merge_help(FILE *out)
{
	fprintf(out, "Usage: vdisk merge ...\n\nNot available yet.\n");
}

static int merge_run(int argc, char **argv)
{
	(void)argc;
	(void)argv;
	return cli_fail("merge", NULL, 0, "not available yet");
}

const struct cli_command cmd_merge = {
	.name = "merge",
	.summary = "(not available yet)",
	.run = merge_run,
	.help = merge_help,
};
