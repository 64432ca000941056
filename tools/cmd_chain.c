/* vdisk chain. */
#include "cli.h"

static void chain_help(FILE *out)
{
	fprintf(out, "Usage: vdisk chain ...\n\nNot available yet.\n");
}

static int chain_run(int argc, char **argv)
{
	(void)argc;
	(void)argv;
	return cli_fail("chain", NULL, 0, "not available yet");
}

const struct cli_command cmd_chain = {
	.name = "chain",
	.summary = "(not available yet)",
	.run = chain_run,
	.help = chain_help,
};
