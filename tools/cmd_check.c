/* vdisk check: consistency check of an image, with optional repair. */
#include <getopt.h>
#include <string.h>

#include "cli.h"

static void check_help(FILE *out)
{
	fprintf(out, "Usage: vdisk check [OPTIONS] FILE\n\n"
		     "Checks an image's metadata: checksums, tables, allocation, leaked space.\n"
		     "Exit code 0: clean; 1: problems found (or left after --repair); 2: the\n"
		     "check could not run.\n\n"
		     "Options:\n"
		     "  -r, --repair       fix what can be fixed without losing data (opens the\n"
		     "                     image for writing)\n"
		     "  -f, --format FMT   read the image as FMT instead of probing its content\n"
		     "      --allow-parent-mismatch\n"
		     "                     open a differencing image whose parent's identity does\n"
		     "                     not match the one it recorded\n"
		     "      --json         print the findings as one JSON object\n"
		     "  -h, --help         show this help\n");
}

static void print_findings(const char *path, const struct vdisk_check_result *r)
{
	size_t i;
	json_t *f;
	json_array_foreach (r->findings, i, f) {
		printf("%s: %s\n", json_string_value(json_object_get(f, "severity")),
		       json_string_value(json_object_get(f, "message")));
	}
	if (!r->errors && !r->leaks)
		printf("%s: no problems found%s\n", path, r->fixed ? " after repair" : "");
	else
		printf("%s: %u error(s), %u leak(s)%s\n", path, r->errors, r->leaks,
		       r->fixed ? " left after repair" : "");
	if (r->fixed)
		printf("%s: %u problem(s) repaired\n", path, r->fixed);
}

static int check_run(int argc, char **argv)
{
	static const struct option options[] = {
		{ "repair", no_argument, NULL, 'r' },
		{ "format", required_argument, NULL, 'f' },
		{ "json", no_argument, NULL, 'j' },
		{ "allow-parent-mismatch", no_argument, NULL, 'P' },
		{ "help", no_argument, NULL, 'h' },
		{ 0 }
	};
	struct vdisk_options opts = { .read_only = true, .cache = VDISK_CACHE_WRITEBACK };
	bool json = false, repair = false;
	int c;
	optind = 1;
	opterr = 0;
	while ((c = getopt_long(argc, argv, "rf:h", options, NULL)) != -1) {
		switch (c) {
		case 'r':
			repair = true;
			break;
		case 'f':
			opts.format = optarg;
			break;
		case 'j':
			json = true;
			break;
		case 'P':
			opts.allow_parent_mismatch = true;
			break;
		case 'h':
			check_help(stdout);
			return CLI_EXIT_OK;
		default:
			return cli_bad_option("check", argv);
		}
	}
	int operands = cli_expect_one("check", "FILE", argc);
	if (operands)
		return operands;
	const char *path = argv[optind];
	if (repair) {
		opts.read_only = false;
		opts.for_repair = true;
	}
	struct vdisk *disk;
	int ret = cli_open("check", path, &opts, &disk);
	if (ret)
		return ret;
	struct vdisk_check_result r;
	int err = vdisk_check(disk, repair ? VDISK_CHECK_REPAIR : 0, &r);
	if (err == 0 && repair)
		err = vdisk_flush_sync(disk);
	vdisk_close(disk);
	if (err < 0) {
		json_decref(r.findings);
		return cli_fail("check", path, err, "check failed: %s", strerror(-err));
	}
	if (json)
		cli_print_json(json_pack("{s:s, s:b, s:i, s:i, s:i, s:O}", "file", path, "repair",
					 repair, "errors", r.errors, "leaks", r.leaks, "fixed",
					 r.fixed, "findings", r.findings));
	else
		print_findings(path, &r);
	json_decref(r.findings);
	return r.errors || r.leaks ? CLI_EXIT_NO : CLI_EXIT_OK;
}

const struct cli_command cmd_check = {
	.name = "check",
	.summary = "check an image's consistency, and repair it",
	.run = check_run,
	.help = check_help,
};
