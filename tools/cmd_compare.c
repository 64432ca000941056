/* vdisk compare: whether two images read the same, through the copy engine's compare
 * (storage/copy.h): ranges zero on both sides are skipped by block status, the rest is
 * read with several requests in flight and compared with memcmp. */
#include <getopt.h>
#include <inttypes.h>
#include <string.h>

#include "cli.h"
#include "copy.h"
#include "progress.h"

static void compare_help(FILE *out)
{
	fprintf(out,
		"Usage: vdisk compare [OPTIONS] A B\n\n"
		"Compares what the images A and B read (a differencing image through its chain).\n"
		"As with qemu-img compare, images of different sizes are compared over the\n"
		"common part, and the rest of the larger one must read as zeros.\n"
		"Exit code 0: identical; 1: different (the first differing offset is printed);\n"
		"2: the comparison could not run.\n\n"
		"Options:\n"
		"  -f, --format FMT     read A as FMT instead of probing its content\n"
		"  -F, --format-b FMT   read B as FMT\n"
		"  -s, --strict         images of different sizes differ\n"
		"  -p, --progress       show a progress bar even when stderr is no terminal\n"
		"      --json           print the result as one JSON object\n"
		"  -h, --help           show this help\n");
}

/* same: 0 identical, 1 different (at the offset at); strict: --strict was given. */
static int report(const char *a, const char *b, struct vdisk *da, struct vdisk *db, int same,
		  uint64_t at, bool strict, bool json)
{
	bool size_differs = strict && vdisk_size(da) != vdisk_size(db);
	if (json) {
		json_t *r = json_pack("{s:s, s:s, s:I, s:I, s:b}", "a", a, "b", b, "size_a",
				      (json_int_t)vdisk_size(da), "size_b",
				      (json_int_t)vdisk_size(db), "identical", same == 0);
		if (r && same)
			json_object_set_new(r, "first_difference", json_integer((json_int_t)at));
		cli_print_json(r);
	} else if (same == 0) {
		printf("%s and %s are identical\n", a, b);
	} else if (size_differs) {
		printf("%s and %s differ in size (%" PRIu64 " and %" PRIu64 " bytes)\n", a, b,
		       vdisk_size(da), vdisk_size(db));
	} else {
		printf("%s and %s differ at offset %" PRIu64 "\n", a, b, at);
	}
	return same ? CLI_EXIT_NO : CLI_EXIT_OK;
}

static int compare_run(int argc, char **argv)
{
	static const struct option options[] = { { "format", required_argument, NULL, 'f' },
						 { "format-b", required_argument, NULL, 'F' },
						 { "strict", no_argument, NULL, 's' },
						 { "progress", no_argument, NULL, 'p' },
						 { "json", no_argument, NULL, 'j' },
						 { "help", no_argument, NULL, 'h' },
						 { 0 } };
	struct vdisk_options opts[2] = { { .read_only = true, .cache = VDISK_CACHE_WRITEBACK },
					 { .read_only = true, .cache = VDISK_CACHE_WRITEBACK } };
	struct vdisk_compare_options o = { 0 };
	bool json = false, force_progress = false;
	int c;
	optind = 1;
	opterr = 0;
	while ((c = getopt_long(argc, argv, "f:F:sph", options, NULL)) != -1) {
		switch (c) {
		case 'f':
			opts[0].format = optarg;
			break;
		case 'F':
			opts[1].format = optarg;
			break;
		case 's':
			o.strict = true;
			break;
		case 'p':
			force_progress = true;
			break;
		case 'j':
			json = true;
			break;
		case 'h':
			compare_help(stdout);
			return CLI_EXIT_OK;
		default:
			return cli_bad_option("compare", argv);
		}
	}
	if (argc - optind < 2)
		return cli_usage_error("compare", "missing A or B");
	if (argc - optind > 2)
		return cli_usage_error("compare", "unexpected argument '%s'", argv[optind + 2]);
	const char *path[2] = { argv[optind], argv[optind + 1] };
	struct vdisk *disk[2];
	int ret = cli_open("compare", path[0], &opts[0], &disk[0]);
	if (ret)
		return ret;
	ret = cli_open("compare", path[1], &opts[1], &disk[1]);
	if (ret) {
		vdisk_close(disk[0]);
		return ret;
	}
	struct progress bar;
	progress_init(&bar, "comparing", force_progress);
	o.progress = progress_cb;
	o.opaque = &bar;
	uint64_t at = 0;
	char err[512];
	int same = vdisk_compare(disk[0], disk[1], &o, &at, err, sizeof(err));
	progress_finish(&bar);
	ret = same < 0 ? cli_fail("compare", NULL, same, "%s", err)
		       : report(path[0], path[1], disk[0], disk[1], same, at, o.strict, json);
	vdisk_close(disk[1]);
	vdisk_close(disk[0]);
	return ret;
}

const struct cli_command cmd_compare = {
	.name = "compare",
	.summary = "tell whether two images read the same",
	.run = compare_run,
	.help = compare_help,
};
