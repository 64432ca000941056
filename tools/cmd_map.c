/* vdisk map: the ranges of a disk, where in its chain each is stored and which read as
 * zeros (vdisk_chain_status in storage/copy.h). */
#include <getopt.h>
#include <inttypes.h>
#include <string.h>

#include "cli.h"
#include "copy.h"

static void map_help(FILE *out)
{
	fprintf(out,
		"Usage: vdisk map [OPTIONS] FILE\n\n"
		"Lists the ranges of the disk, adjacent ones merged when they agree:\n"
		"  data   stored in an image of the chain\n"
		"  zero   reads as zeros\n"
		"  depth  the image that holds the range: 0 the image itself, 1 its parent, ...;\n"
		"         none when no image does (past the end of a smaller parent)\n"
		"A range an image holds as zeros (an unallocated block of a dynamic image, a\n"
		"block in the Zero state, a hole of a raw file) counts as held by it.\n\n"
		"Options:\n"
		"  -f, --format FMT   read FILE as FMT instead of probing its content\n"
		"      --json         an array like qemu-img map --output=json: start, length,\n"
		"                     depth (absent with none), present, zero, data\n"
		"  -h, --help         show this help\n");
}

struct range {
	uint64_t start, length;
	bool data, zero;
	int depth; /* -1: no image holds it */
};

static bool same_kind(const struct range *a, const struct range *b)
{
	return a->data == b->data && a->zero == b->zero && a->depth == b->depth;
}

/* The image at depth below disk (depth >= 0). */
static struct vdisk *image_at(struct vdisk *disk, int depth)
{
	while (depth-- > 0 && disk)
		disk = vdisk_backing(disk);
	return disk;
}

static void print_range(const struct range *r, struct vdisk *disk, json_t *array)
{
	if (array) {
		json_t *o = json_pack("{s:I, s:I}", "start", (json_int_t)r->start, "length",
				      (json_int_t)r->length);
		if (r->depth >= 0)
			json_object_set_new(o, "depth", json_integer(r->depth));
		json_object_set_new(o, "present", json_boolean(r->depth >= 0));
		json_object_set_new(o, "zero", json_boolean(r->zero));
		json_object_set_new(o, "data", json_boolean(r->data));
		json_array_append_new(array, o);
		return;
	}
	char depth[16] = "-";
	if (r->depth >= 0)
		snprintf(depth, sizeof(depth), "%d", r->depth);
	printf("%16" PRIu64 " %16" PRIu64 "  %-4s  %-4s  %-5s  %s\n", r->start, r->length,
	       r->data ? "yes" : "no", r->zero ? "yes" : "no", depth,
	       r->depth >= 0 ? vdisk_path(image_at(disk, r->depth)) : "");
}

/* Walks the disk, printing each run of ranges that agree. Returns 0 or -errno. */
static int map_disk(struct vdisk *disk, json_t *array)
{
	if (!array)
		printf("%16s %16s  %-4s  %-4s  %-5s  %s\n", "start", "length", "data", "zero",
		       "depth", "file");
	uint64_t size = vdisk_size(disk);
	struct range run = { 0 };
	for (uint64_t pos = 0; pos < size;) {
		struct vdisk_extent ext;
		int depth;
		int ret = vdisk_chain_status(disk, pos, size - pos, 0, &ext, &depth);
		if (ret < 0) {
			cli_fail("map", vdisk_path(disk), ret,
				 "cannot read the block status at offset %" PRIu64 ": %s", pos,
				 strerror(-ret));
			return ret;
		}
		struct range r = { pos, ext.length, ext.flags & VDISK_EXTENT_DATA,
				   (ext.flags & VDISK_EXTENT_ZERO) != 0, depth };
		if (run.length && same_kind(&run, &r)) {
			run.length += r.length;
		} else {
			if (run.length)
				print_range(&run, disk, array);
			run = r;
		}
		pos += ext.length;
	}
	if (run.length)
		print_range(&run, disk, array);
	return 0;
}

static int map_run(int argc, char **argv)
{
	static const struct option options[] = { { "format", required_argument, NULL, 'f' },
						 { "json", no_argument, NULL, 'j' },
						 { "help", no_argument, NULL, 'h' },
						 { 0 } };
	struct vdisk_options opts = { .read_only = true, .cache = VDISK_CACHE_WRITEBACK };
	bool json = false;
	int c;
	optind = 1;
	opterr = 0;
	while ((c = getopt_long(argc, argv, "f:h", options, NULL)) != -1) {
		switch (c) {
		case 'f':
			opts.format = optarg;
			break;
		case 'j':
			json = true;
			break;
		case 'h':
			map_help(stdout);
			return CLI_EXIT_OK;
		default:
			return cli_bad_option("map", argv);
		}
	}
	int operands = cli_expect_one("map", "FILE", argc);
	if (operands)
		return operands;
	struct vdisk *disk;
	int ret = cli_open("map", argv[optind], &opts, &disk);
	if (ret)
		return ret;
	json_t *array = json ? json_array() : NULL;
	if (json && !array) {
		vdisk_close(disk);
		return cli_print_json(NULL);
	}
	ret = map_disk(disk, array);
	vdisk_close(disk);
	if (ret < 0) {
		json_decref(array);
		return CLI_EXIT_FAIL;
	}
	return array ? cli_print_json(array) : CLI_EXIT_OK;
}

const struct cli_command cmd_map = {
	.name = "map",
	.summary = "list which ranges hold data, read as zeros, and which image holds them",
	.run = map_run,
	.help = map_help,
};
