/* vdisk rebase: records a new parent for a differencing image (after the parent was moved
 * or renamed), like `qemu-img rebase -u` but checking that it is the same parent. */
#include <getopt.h>
#include <string.h>

#include "cli.h"

static void rebase_help(FILE *out)
{
	fprintf(out,
		"Usage: vdisk rebase [OPTIONS] CHILD NEWPARENT\n\n"
		"Records NEWPARENT as the parent of the differencing image CHILD, for when\n"
		"the parent was moved, renamed or copied: the parent locators get its\n"
		"absolute path and its path relative to CHILD. NEWPARENT must be the image\n"
		"CHILD was made from (the VHD unique id or VHDX DataWriteGuid that CHILD\n"
		"recorded); the data of CHILD is not touched.\n\n"
		"Options:\n"
		"  -u, --unsafe       accept any parent of the same format and record its\n"
		"                     identity (like 'qemu-img rebase -u'): only when it holds\n"
		"                     the same content as the original parent\n"
		"      --json         print the result as one JSON object\n"
		"  -h, --help         show this help\n");
}

static int rebase_run(int argc, char **argv)
{
	static const struct option options[] = { { "unsafe", no_argument, NULL, 'u' },
						 { "json", no_argument, NULL, 'j' },
						 { "help", no_argument, NULL, 'h' },
						 { 0 } };
	bool json = false;
	unsigned flags = 0;
	int c;
	optind = 1;
	opterr = 0;
	while ((c = getopt_long(argc, argv, "uh", options, NULL)) != -1) {
		switch (c) {
		case 'u':
			flags |= VDISK_SET_PARENT_UNSAFE;
			break;
		case 'j':
			json = true;
			break;
		case 'h':
			rebase_help(stdout);
			return CLI_EXIT_OK;
		default:
			return cli_bad_option("rebase", argv);
		}
	}
	if (argc - optind != 2)
		return cli_usage_error("rebase",
				       argc - optind < 2 ? "missing %s"
							 : "expected CHILD and NEWPARENT%.0s",
				       argc == optind ? "CHILD and NEWPARENT" : "NEWPARENT");
	const char *child = argv[optind], *parent = argv[optind + 1];
	/* The old parent may be gone: the child opens without it. */
	struct vdisk_options opts = { .cache = VDISK_CACHE_WRITEBACK,
				      .engine = VDISK_ENGINE_SYNC,
				      .no_backing = true };
	struct vdisk *disk;
	int ret = cli_open("rebase", child, &opts, &disk);
	if (ret)
		return ret;
	char err[768];
	int r = vdisk_set_parent(disk, parent, flags, err, sizeof(err));
	vdisk_close(disk);
	if (r < 0)
		return cli_fail("rebase", child, r, "cannot rebase: %s", err);
	if (json)
		return cli_print_json(json_pack("{s:s, s:s, s:b}", "file", child, "parent", parent,
						"unsafe", (flags & VDISK_SET_PARENT_UNSAFE) != 0));
	printf("%s: parent is now %s\n", child, parent);
	return CLI_EXIT_OK;
}

const struct cli_command cmd_rebase = {
	.name = "rebase",
	.summary = "record a new parent for a differencing image",
	.run = rebase_run,
	.help = rebase_help,
};
