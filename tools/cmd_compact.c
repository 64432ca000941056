/* vdisk compact: gives the space of blocks that read as zeros (or mask nothing) back to
 * the host, like Hyper-V's Optimize-VHD. */
#include <getopt.h>
#include <inttypes.h>
#include <string.h>

#include "cli.h"
#include "progress.h"
#include "size.h"

static void compact_help(FILE *out)
{
	fprintf(out,
		"Usage: vdisk compact [OPTIONS] FILE\n\n"
		"Releases the blocks of an image that read as zeros or hide nothing of its\n"
		"parent, moves the blocks at the end of the file into the holes and shrinks the\n"
		"file. The image reads the same afterwards. It must not be in use: compact opens\n"
		"it for writing, which another writer's lock refuses.\n\n"
		"  raw               punches holes in whole 4 KiB pages of zeros (the file\n"
		"                    keeps its size)\n"
		"  dynamic VHD/VHDX  releases blocks of zeros, moves the last blocks into the\n"
		"                    holes, truncates the file (VHDX: crash-safe, by its log)\n"
		"  differencing      releases blocks equal to what the parent shows there; a\n"
		"                    VHDX block of zeros over parent data becomes a Zero block\n"
		"  fixed VHD/VHDX    refused, as Optimize-VHD refuses them: convert the image\n"
		"                    to a dynamic one to make it smaller\n\n"
		"Options:\n"
		"  -f, --format FMT   read the image as FMT instead of probing its content\n"
		"  -p, --progress     show a progress bar even when stderr is not a terminal\n"
		"      --json         print the result as one JSON object\n"
		"  -h, --help         show this help\n\n"
		"Exit code 0: compacted (also when there was nothing to release); 2: failed (the\n"
		"image is left as it was, or compacted as far as it got, and reads the same).\n");
}

/* Sizes before and after, from the block layer's view of the file. */
struct sizes {
	uint64_t file, allocated;
};

static int measure(struct vdisk *disk, struct sizes *s)
{
	struct vdisk_info info;
	int ret = vdisk_get_info(disk, &info);
	if (ret < 0)
		return ret;
	json_decref(info.details);
	*s = (struct sizes){ info.file_size, info.allocated_size };
	return 0;
}

static uint64_t reclaimed(const struct sizes *before, const struct sizes *after)
{
	return before->allocated > after->allocated ? before->allocated - after->allocated : 0;
}

static void print_change(const char *label, uint64_t before, uint64_t after)
{
	char b[32], a[32];
	size_format(before, b, sizeof(b));
	size_format(after, a, sizeof(a));
	printf("  %-16s %s -> %s (%" PRIu64 " -> %" PRIu64 " bytes)\n", label, b, a, before, after);
}

static void print_text(const char *path, const struct sizes *before, const struct sizes *after,
		       const struct vdisk_compact_result *r)
{
	char human[32];
	size_format(reclaimed(before, after), human, sizeof(human));
	printf("%s: compacted\n", path);
	print_change("file size:", before->file, after->file);
	print_change("allocated:", before->allocated, after->allocated);
	printf("  %-16s %" PRIu64 "\n", "blocks released:", r->blocks_released);
	printf("  %-16s %s (%" PRIu64 " bytes)\n", "reclaimed:", human, reclaimed(before, after));
}

static json_t *result_json(const char *path, const char *format, const struct sizes *before,
			   const struct sizes *after, const struct vdisk_compact_result *r)
{
	return json_pack("{s:s, s:s, s:I, s:I, s:I, s:I, s:I, s:I}", "file", path, "format", format,
			 "file_size_before", (json_int_t)before->file, "file_size_after",
			 (json_int_t)after->file, "allocated_before", (json_int_t)before->allocated,
			 "allocated_after", (json_int_t)after->allocated, "blocks_released",
			 (json_int_t)r->blocks_released, "bytes_reclaimed",
			 (json_int_t)reclaimed(before, after));
}

static int compact_image(const char *path, const struct vdisk_options *opts, bool force_progress,
			 bool json)
{
	struct vdisk *disk;
	int ret = cli_open("compact", path, opts, &disk);
	if (ret)
		return ret;
	struct sizes before, after = { 0 };
	struct vdisk_compact_result r;
	struct progress bar;
	char err[256] = "";
	int e = measure(disk, &before);
	if (e == 0) {
		progress_init(&bar, "compacting", force_progress);
		e = vdisk_compact(disk, progress_cb, &bar, &r, err, sizeof(err));
		progress_finish(&bar);
	} else {
		snprintf(err, sizeof(err), "cannot measure the file: %s", strerror(-e));
	}
	if (e == 0)
		e = vdisk_flush_sync(disk);
	if (e == 0)
		e = measure(disk, &after);
	const char *format = vdisk_format_name(disk);
	char format_name[16];
	snprintf(format_name, sizeof(format_name), "%s", format);
	vdisk_close(disk);
	if (e < 0)
		return cli_fail("compact", path, e, "cannot compact: %s",
				err[0] ? err : strerror(-e));
	if (json)
		return cli_print_json(result_json(path, format_name, &before, &after, &r));
	print_text(path, &before, &after, &r);
	return CLI_EXIT_OK;
}

static int compact_run(int argc, char **argv)
{
	static const struct option options[] = { { "format", required_argument, NULL, 'f' },
						 { "progress", no_argument, NULL, 'p' },
						 { "json", no_argument, NULL, 'j' },
						 { "help", no_argument, NULL, 'h' },
						 { 0 } };
	struct vdisk_options opts = { .cache = VDISK_CACHE_WRITEBACK };
	bool json = false, progress = false;
	int c;
	optind = 1;
	opterr = 0;
	while ((c = getopt_long(argc, argv, "f:ph", options, NULL)) != -1) {
		switch (c) {
		case 'f':
			opts.format = optarg;
			break;
		case 'p':
			progress = true;
			break;
		case 'j':
			json = true;
			break;
		case 'h':
			compact_help(stdout);
			return CLI_EXIT_OK;
		default:
			return cli_bad_option("compact", argv);
		}
	}
	int operands = cli_expect_one("compact", "FILE", argc);
	if (operands)
		return operands;
	return compact_image(argv[optind], &opts, progress, json);
}

const struct cli_command cmd_compact = {
	.name = "compact",
	.summary = "release zero blocks and shrink an image",
	.run = compact_run,
	.help = compact_help,
};
