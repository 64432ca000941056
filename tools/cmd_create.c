/* vdisk create: make a new image. */
#include <getopt.h>
#include <string.h>

#include "cli.h"
#include "size.h"

static void create_help(FILE *out)
{
	fprintf(out,
		"Usage: vdisk create [OPTIONS] FILE SIZE\n\n"
		"Creates an image of SIZE bytes (suffixes K, M, G, T: 512, 64M, 10G, 1.5T).\n\n"
		"Options:\n"
		"  -f, --format FMT       image format: raw, vhd or vhdx (default raw)\n"
		"  -t, --type TYPE        fixed, dynamic or differencing, where the format has "
		"types\n"
		"  -b, --block-size SIZE  allocation block size, where the format has blocks\n"
		"  -p, --parent FILE      parent image of a differencing image\n"
		"      --sparse           leave fixed and raw images unallocated on the host\n"
		"      --round-mib        round SIZE up to a whole MiB (Azure requires it)\n"
		"      --logical-sector-size N   VHDX: 512 (default) or 4096\n"
		"      --physical-sector-size N  VHDX: 512 or 4096 (default)\n"
		"      --force            replace FILE if it exists\n"
		"      --json             report the result as JSON\n"
		"  -h, --help             show this help\n");
}

static int report(const char *path, struct vdisk_create_options *o, bool json)
{
	if (!o->size) { /* a child takes its parent's size: read it back */
		struct vdisk *disk;
		struct vdisk_options ro = { .read_only = true, .cache = VDISK_CACHE_WRITEBACK };
		if (vdisk_open(path, &ro, &disk, NULL, 0) == 0) {
			o->size = vdisk_size(disk);
			vdisk_close(disk);
		}
	}
	if (json)
		return cli_print_json(json_pack("{s:s, s:s, s:I}", "file", path, "format",
						o->format, "virtual_size", (json_int_t)o->size));
	char human[32];
	size_format(o->size, human, sizeof(human));
	printf("created %s: %s, %s\n", path, o->format, human);
	return CLI_EXIT_OK;
}

static int create_run(int argc, char **argv)
{
	static const struct option options[] = {
		{ "format", required_argument, NULL, 'f' },
		{ "type", required_argument, NULL, 't' },
		{ "block-size", required_argument, NULL, 'b' },
		{ "parent", required_argument, NULL, 'p' },
		{ "sparse", no_argument, NULL, 's' },
		{ "round-mib", no_argument, NULL, 'M' },
		{ "logical-sector-size", required_argument, NULL, 'L' },
		{ "physical-sector-size", required_argument, NULL, 'Y' },
		{ "force", no_argument, NULL, 'F' },
		{ "json", no_argument, NULL, 'j' },
		{ "help", no_argument, NULL, 'h' },
		{ 0 }
	};
	struct vdisk_create_options o = { .format = "raw" };
	bool json = false, round_mib = false;
	uint64_t block_size = 0;
	int c;
	optind = 1;
	opterr = 0;
	while ((c = getopt_long(argc, argv, "f:t:b:p:h", options, NULL)) != -1) {
		switch (c) {
		case 'f':
			o.format = optarg;
			break;
		case 't':
			o.type = optarg;
			break;
		case 'b':
			if (!cli_parse_size("create", "--block-size", optarg, &block_size))
				return CLI_EXIT_USAGE;
			if (block_size > UINT32_MAX)
				return cli_usage_error("create", "--block-size '%s' is too large",
						       optarg);
			o.block_size = (uint32_t)block_size;
			break;
		case 'p':
			o.parent = optarg;
			break;
		case 's':
			o.sparse = true;
			break;
		case 'F':
			o.overwrite = true;
			break;
		case 'M':
			round_mib = true;
			break;
		case 'L':
			if (!cli_parse_uint("create", "--logical-sector-size", optarg, 512, 4096,
					    &o.logical_sector_size))
				return CLI_EXIT_USAGE;
			break;
		case 'Y':
			if (!cli_parse_uint("create", "--physical-sector-size", optarg, 512, 4096,
					    &o.physical_sector_size))
				return CLI_EXIT_USAGE;
			break;
		case 'j':
			json = true;
			break;
		case 'h':
			create_help(stdout);
			return CLI_EXIT_OK;
		default:
			return cli_bad_option("create", argv);
		}
	}
	int left = argc - optind;
	if (left < 1)
		return cli_usage_error("create", "missing FILE and SIZE");
	if (left < 2 && !o.parent)
		return cli_usage_error("create", "missing SIZE");
	if (left > 2)
		return cli_usage_error("create", "unexpected argument '%s'", argv[optind + 2]);
	const char *path = argv[optind];
	if (left == 2 && !cli_parse_size("create", "SIZE", argv[optind + 1], &o.size))
		return CLI_EXIT_USAGE;
	if (left == 2 && (o.size == 0 || o.size > INT64_MAX))
		return cli_usage_error("create", "SIZE '%s' must be between 1 byte and 8 EiB",
				       argv[optind + 1]);
	if (round_mib)
		o.size = (o.size + (1 << 20) - 1) & ~(uint64_t)((1 << 20) - 1);
	char err[256];
	int ret = vdisk_create(path, &o, err, sizeof(err));
	if (ret < 0)
		return cli_fail("create", path, ret, "cannot create: %s", err);
	return report(path, &o, json);
}

const struct cli_command cmd_create = {
	.name = "create",
	.summary = "create a new image",
	.run = create_run,
	.help = create_help,
};
