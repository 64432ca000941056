/* vdisk: create, inspect, convert, maintain and benchmark virtual disk images. */
#include <stdio.h>
#include <string.h>

#include "cli.h"
#include "vhd.h"
#include "vhdx.h"

static const struct cli_command *const commands[] = {
	&cmd_create, &cmd_info,	   &cmd_check, &cmd_convert, &cmd_compare, &cmd_map,  &cmd_resize,
	&cmd_compact, &cmd_merge, &cmd_rebase, &cmd_chain,   &cmd_mbr2gpt, &cmd_bench};
#define NCOMMANDS (sizeof(commands) / sizeof(commands[0]))

static void usage(FILE *out)
{
	fprintf(out, "Usage: vdisk COMMAND [OPTIONS] ...\n\n"
		     "Create, inspect, convert, maintain and benchmark virtual disk images.\n\n"
		     "Commands:\n");
	for (unsigned i = 0; i < NCOMMANDS; i++)
		fprintf(out, "  %-10s %s\n", commands[i]->name, commands[i]->summary);
	fprintf(out, "\n'vdisk COMMAND --help' describes a command.\n\n"
		     "Exit codes:\n"
		     "  0  success\n"
		     "  1  the answer is no (for example: check found problems)\n"
		     "  2  the operation failed (missing file, damaged image, I/O error)\n"
		     "  3  the command line is wrong\n");
}

static const struct cli_command *find_command(const char *name)
{
	for (unsigned i = 0; i < NCOMMANDS; i++)
		if (!strcmp(commands[i]->name, name))
			return commands[i];
	return NULL;
}

int main(int argc, char **argv)
{
	vhd_register();
	vhdx_register();
	if (argc < 2) {
		usage(stderr);
		return CLI_EXIT_USAGE;
	}
	const char *name = argv[1];
	if (!strcmp(name, "--help") || !strcmp(name, "-h")) {
		usage(stdout);
		return CLI_EXIT_OK;
	}
	if (!strcmp(name, "help")) {
		if (argc < 3) {
			usage(stdout);
			return CLI_EXIT_OK;
		}
		name = argv[2];
		const struct cli_command *cmd = find_command(name);
		if (!cmd)
			goto unknown;
		cmd->help(stdout);
		return CLI_EXIT_OK;
	}
	const struct cli_command *cmd = find_command(name);
	if (cmd)
		return cmd->run(argc - 1, argv + 1);
unknown:
	fprintf(stderr, "vdisk: unknown command '%s'\nTry 'vdisk --help'.\n", name);
	return CLI_EXIT_USAGE;
}
