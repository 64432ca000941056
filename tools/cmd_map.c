/* vdisk map. */
#include "cli.h"

static void map_help(FILE *out)
{
	fprintf(out, "Usage: vdisk map ...\n\nNot available yet.\n");
}

static int map_run(int argc, char **argv)
{
	(void)argc;
	(void)argv;
	return cli_fail("map", NULL, 0, "not available yet");
}

const struct cli_command cmd_map = {
	.name = "map",
	.summary = "(not available yet)",
	.run = map_run,
	.help = map_help,
};
