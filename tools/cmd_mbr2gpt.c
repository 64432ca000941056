/* vdisk mbr2gpt. */
#include "cli.h"

static void mbr2gpt_help(FILE *out)
{
	fprintf(out, "Usage: vdisk mbr2gpt ...\n\nNot available yet.\n");
}

static int mbr2gpt_run(int argc, char **argv)
{
	(void)argc;
	(void)argv;
	return cli_fail("mbr2gpt", NULL, 0, "not available yet");
}

const struct cli_command cmd_mbr2gpt = {
	.name = "mbr2gpt",
	.summary = "(not available yet)",
	.run = mbr2gpt_run,
	.help = mbr2gpt_help,
};
