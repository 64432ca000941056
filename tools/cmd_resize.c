/* vdisk resize. */
#include "cli.h"

static void resize_help(FILE *out)
{
	fprintf(out, "Usage: vdisk resize ...\n\nNot available yet.\n");
}

static int resize_run(int argc, char **argv)
{
	(void)argc;
	(void)argv;
	return cli_fail("resize", NULL, 0, "not available yet");
}

const struct cli_command cmd_resize = {
	.name = "resize",
	.summary = "(not available yet)",
	.run = resize_run,
	.help = resize_help,
};
