/* vdisk compare. */
#include "cli.h"

static void compare_help(FILE *out)
{
	fprintf(out, "Usage: vdisk compare ...\n\nNot available yet.\n");
}

static int compare_run(int argc, char **argv)
{
	(void)argc;
	(void)argv;
	return cli_fail("compare", NULL, 0, "not available yet");
}

const struct cli_command cmd_compare = {
	.name = "compare",
	.summary = "(not available yet)",
	.run = compare_run,
	.help = compare_help,
};
