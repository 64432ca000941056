/* vdisk info: what an image is, as text or JSON. */
#include <getopt.h>
#include <inttypes.h>
#include <string.h>

#include "cli.h"
#include "size.h"

static void info_help(FILE *out)
{
	fprintf(out,
		"Usage: vdisk info [OPTIONS] FILE\n\n"
		"Shows the format, sizes and format-specific details of an image.\n\n"
		"Options:\n"
		"  -f, --format FMT   read the image as FMT instead of probing its content\n"
		"      --allow-parent-mismatch\n"
		"                     open a differencing image whose parent's identity does\n"
		"                     not match the one it recorded\n"
		"  -U, --force-share  open even while another process writes the image\n"
		"      --replay       replay a VHDX log left by a crash first (opens the image\n"
		"                     for writing once)\n"
		"      --json         print one JSON object\n"
		"  -h, --help         show this help\n");
}

static json_t *info_json(const char *path, const struct vdisk_info *info)
{
	json_t *o = json_pack("{s:s, s:s, s:I, s:I, s:I, s:i, s:i}", "file", path, "format",
			      info->format, "virtual_size", (json_int_t)info->virtual_size,
			      "file_size", (json_int_t)info->file_size, "allocated_size",
			      (json_int_t)info->allocated_size, "logical_sector_size",
			      (int)info->logical_sector_size, "physical_sector_size",
			      (int)info->physical_sector_size);
	if (o && info->cluster_size)
		json_object_set_new(o, "cluster_size", json_integer(info->cluster_size));
	if (o && info->details)
		json_object_set(o, "details", info->details);
	return o;
}

static void print_bytes(const char *label, uint64_t bytes)
{
	char human[32];
	size_format(bytes, human, sizeof(human));
	printf("%-16s %s (%" PRIu64 " bytes)\n", label, human, bytes);
}

/* Format details are JSON; as text they become indented "key: value" lines. */
static void print_json_text(const char *key, json_t *value, int depth)
{
	printf("%*s%s:", depth * 2, "", key);
	switch (json_typeof(value)) {
	case JSON_OBJECT: {
		printf("\n");
		const char *k;
		json_t *v;
		json_object_foreach (value, k, v)
			print_json_text(k, v, depth + 1);
		break;
	}
	case JSON_ARRAY: {
		printf("\n");
		size_t i;
		json_t *v;
		json_array_foreach (value, i, v) {
			char index[24];
			snprintf(index, sizeof(index), "[%zu]", i);
			print_json_text(index, v, depth + 1);
		}
		break;
	}
	case JSON_STRING:
		printf(" %s\n", json_string_value(value));
		break;
	case JSON_INTEGER:
		printf(" %" JSON_INTEGER_FORMAT "\n", json_integer_value(value));
		break;
	case JSON_REAL:
		printf(" %g\n", json_real_value(value));
		break;
	case JSON_TRUE:
		printf(" yes\n");
		break;
	case JSON_FALSE:
		printf(" no\n");
		break;
	case JSON_NULL:
		printf(" -\n");
		break;
	}
}

static void info_text(const char *path, const struct vdisk_info *info)
{
	printf("%-16s %s\n", "file:", path);
	printf("%-16s %s\n", "format:", info->format);
	print_bytes("virtual size:", info->virtual_size);
	print_bytes("file size:", info->file_size);
	print_bytes("allocated:", info->allocated_size);
	printf("%-16s %u logical, %u physical\n", "sector size:", info->logical_sector_size,
	       info->physical_sector_size);
	if (info->cluster_size)
		print_bytes("block size:", info->cluster_size);
	const char *k;
	json_t *v;
	if (info->details)
		json_object_foreach (info->details, k, v)
			print_json_text(k, v, 0);
}

static int info_run(int argc, char **argv)
{
	static const struct option options[] = { { "format", required_argument, NULL, 'f' },
						 { "force-share", no_argument, NULL, 'U' },
						 { "json", no_argument, NULL, 'j' },
						 { "replay", no_argument, NULL, 'R' },
						 { "allow-parent-mismatch", no_argument, NULL,
						   'P' },
						 { "help", no_argument, NULL, 'h' },
						 { 0 } };
	struct vdisk_options opts = { .read_only = true,
				      .cache = VDISK_CACHE_WRITEBACK,
				      .engine = VDISK_ENGINE_AUTO };
	bool json = false, replay = false;
	int c;
	optind = 1;
	opterr = 0;
	while ((c = getopt_long(argc, argv, "f:Uh", options, NULL)) != -1) {
		switch (c) {
		case 'f':
			opts.format = optarg;
			break;
		case 'U':
			opts.no_lock = true;
			break;
		case 'j':
			json = true;
			break;
		case 'R':
			replay = true;
			break;
		case 'P':
			opts.allow_parent_mismatch = true;
			break;
		case 'h':
			info_help(stdout);
			return CLI_EXIT_OK;
		default:
			return cli_bad_option("info", argv);
		}
	}
	int operands = cli_expect_one("info", "FILE", argc);
	if (operands)
		return operands;
	const char *path = argv[optind];
	struct vdisk *disk;
	if (replay) { /* a read-write open replays a dirty log */
		struct vdisk_options rw = opts;
		rw.read_only = false;
		int ret = cli_open("info", path, &rw, &disk);
		if (ret)
			return ret;
		vdisk_close(disk);
	}
	int ret = cli_open("info", path, &opts, &disk);
	if (ret)
		return ret;
	struct vdisk_info info;
	int err = vdisk_get_info(disk, &info);
	vdisk_close(disk);
	if (err < 0)
		return cli_fail("info", path, err, "cannot read image details: %s", strerror(-err));
	if (json)
		ret = cli_print_json(info_json(path, &info));
	else
		info_text(path, &info);
	json_decref(info.details);
	return ret;
}

const struct cli_command cmd_info = {
	.name = "info",
	.summary = "show the format, sizes and details of an image",
	.run = info_run,
	.help = info_help,
};
