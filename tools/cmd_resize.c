/* vdisk resize: changes an image's virtual size. */
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <string.h>

#include "cli.h"
#include "size.h"

static void resize_help(FILE *out)
{
	fprintf(out,
		"Usage: vdisk resize [OPTIONS] FILE SIZE\n\n"
		"Changes the virtual size of a raw, VHD or VHDX image (fixed, dynamic or\n"
		"differencing). SIZE is absolute (10G) or relative to the current size (+1G,\n"
		"-512M); it must be a whole number of logical sectors.\n\n"
		"Growing adds space at the end of the disk that reads as zeros. Partitions and\n"
		"file systems do not grow with it: extend them inside the guest afterwards.\n\n"
		"Shrinking cuts off the end of the disk, and whatever is stored there is lost.\n"
		"Shrink the partitions and file systems inside the guest first, so that nothing\n"
		"lies past the new size (as Resize-VHD requires); a GPT also keeps its backup\n"
		"header in the last sectors, which must be moved (sgdisk -e) after shrinking.\n"
		"Unless --force is given, resize reads the part that would be cut off and refuses\n"
		"when any byte of it is not zero, naming the first such offset.\n\n"
		"Options:\n"
		"  -f, --format FMT   read the image as FMT instead of probing its content\n"
		"      --force        shrink even when the part cut off holds data (it is lost)\n"
		"      --json         print the old and new size as one JSON object\n"
		"  -h, --help         show this help\n\n"
		"Exit code 0: resized; 2: refused or failed (the image is unchanged, or changed\n"
		"crash-safely); 3: bad command line.\n");
}

/* SIZE: absolute, or +N / -N relative to current. */
struct size_arg {
	int sign; /* 0 absolute, +1 grow by, -1 shrink by */
	uint64_t bytes;
};

static bool parse_size_arg(const char *text, struct size_arg *out)
{
	out->sign = text[0] == '+' ? 1 : text[0] == '-' ? -1 : 0;
	return cli_parse_size("resize", "SIZE", text + (out->sign != 0), &out->bytes);
}

static bool target_size(const struct size_arg *a, uint64_t current, const char *text, uint64_t *out)
{
	if (a->sign > 0 && a->bytes > UINT64_MAX - current) {
		cli_usage_error("resize", "SIZE '%s' is too large", text);
		return false;
	}
	if (a->sign < 0 && a->bytes >= current) {
		cli_usage_error("resize",
				"SIZE '%s' would leave no disk (the disk has %" PRIu64 " bytes)",
				text, current);
		return false;
	}
	*out = a->sign > 0 ? current + a->bytes : a->sign < 0 ? current - a->bytes : a->bytes;
	return true;
}

static void print_result(const char *path, const char *format, uint64_t old_size, uint64_t new_size,
			 bool json)
{
	if (json) {
		cli_print_json(json_pack("{s:s, s:s, s:I, s:I}", "file", path, "format", format,
					 "old_size", (json_int_t)old_size, "new_size",
					 (json_int_t)new_size));
		return;
	}
	char a[32], b[32];
	size_format(old_size, a, sizeof(a));
	size_format(new_size, b, sizeof(b));
	printf("%s: resized from %s (%" PRIu64 " bytes) to %s (%" PRIu64 " bytes)\n", path, a,
	       old_size, b, new_size);
}

static int resize_image(const char *path, const struct vdisk_options *opts,
			const struct size_arg *arg, const char *size_text, unsigned flags,
			bool json)
{
	struct vdisk *disk;
	int ret = cli_open("resize", path, opts, &disk);
	if (ret)
		return ret;
	uint64_t old_size = vdisk_size(disk), new_size, lost = 0;
	if (!target_size(arg, old_size, size_text, &new_size)) {
		vdisk_close(disk);
		return CLI_EXIT_USAGE;
	}
	char err[256];
	int r = vdisk_resize(disk, new_size, flags, &lost, err, sizeof(err));
	const char *format = vdisk_format_name(disk);
	vdisk_close(disk);
	if (r == -ENOTEMPTY) {
		cli_fail("resize", path, r,
			 "refused: offset %" PRIu64 " (past the new size of %" PRIu64
			 " bytes) holds data",
			 lost, new_size);
		fprintf(stderr,
			"vdisk: resize: hint: shrink the partitions and file systems first; "
			"--force cuts the data off\n");
		return CLI_EXIT_FAIL;
	}
	if (r == -EINVAL || r == -EFBIG)
		return cli_usage_error("resize", "%s", err);
	if (r < 0)
		return cli_fail("resize", path, r, "%s", err);
	print_result(path, format, old_size, new_size, json);
	return CLI_EXIT_OK;
}

static int resize_run(int argc, char **argv)
{
	static const struct option options[] = { { "format", required_argument, NULL, 'f' },
						 { "force", no_argument, NULL, 'F' },
						 { "json", no_argument, NULL, 'j' },
						 { "help", no_argument, NULL, 'h' },
						 { 0 } };
	struct vdisk_options opts = { .cache = VDISK_CACHE_WRITEBACK };
	unsigned flags = 0;
	bool json = false;
	int c;
	optind = 1;
	opterr = 0;
	/* "+": stop at the first operand, so that "-512M" is a SIZE, not options */
	while ((c = getopt_long(argc, argv, "+f:h", options, NULL)) != -1) {
		switch (c) {
		case 'f':
			opts.format = optarg;
			break;
		case 'F':
			flags |= VDISK_RESIZE_FORCE;
			break;
		case 'j':
			json = true;
			break;
		case 'h':
			resize_help(stdout);
			return CLI_EXIT_OK;
		default:
			return cli_bad_option("resize", argv);
		}
	}
	if (argc - optind != 2)
		return cli_usage_error("resize", "expected FILE and SIZE, got %d argument(s)",
				       argc - optind);
	struct size_arg arg;
	if (!parse_size_arg(argv[optind + 1], &arg))
		return CLI_EXIT_USAGE;
	return resize_image(argv[optind], &opts, &arg, argv[optind + 1], flags, json);
}

const struct cli_command cmd_resize = {
	.name = "resize",
	.summary = "change an image's virtual size",
	.run = resize_run,
	.help = resize_help,
};
