/* vdisk convert. */
#include "cli.h"

static void convert_help(FILE *out)
{
	fprintf(out, "Usage: vdisk convert ...\n\nNot available yet.\n");
}

static int convert_run(int argc, char **argv)
{
	(void)argc;
	(void)argv;
	return cli_fail("convert", NULL, 0, "not available yet");
}

const struct cli_command cmd_convert = {
	.name = "convert",
	.summary = "(not available yet)",
	.run = convert_run,
	.help = convert_help,
};
