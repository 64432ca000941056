/* vdisk merge: merges a differencing image into its parent or an older ancestor (like
 * Hyper-V's Merge-VHD), or flattens its chain into a new image. */
#include <getopt.h>
#include <inttypes.h>
#include <string.h>

#include "cli.h"
#include "merge.h"
#include "progress.h"

static void merge_help(FILE *out)
{
	fprintf(out,
		"Usage: vdisk merge [OPTIONS] CHILD [--into ANCESTOR | --new FILE [-O FMT]]\n\n"
		"Merges the differencing image CHILD into its parent, or into the older ancestor\n"
		"named by --into: what CHILD and the images between them hold is written into\n"
		"the ancestor, then CHILD and those images are removed. The ancestor is written\n"
		"and flushed before anything is removed; a merge that was interrupted is\n"
		"finished by running it again with --allow-parent-mismatch.\n"
		"With --new, the whole chain is written into a new image instead and nothing\n"
		"in the chain changes.\n\n"
		"Options:\n"
		"      --into ANCESTOR  the image of the chain to merge into (default: the\n"
		"                       parent)\n"
		"      --new FILE       write the flattened chain into a new image FILE\n"
		"  -O, --output-format FMT\n"
		"                       format of the new image (default: CHILD's)\n"
		"      --allow-parent-mismatch\n"
		"                       open the chain although a parent's identity does not\n"
		"                       match (to finish an interrupted merge)\n"
		"  -p, --progress       show a progress bar even when stderr is not a terminal\n"
		"      --json           print the result as one JSON object\n"
		"  -h, --help           show this help\n");
}

struct merge_args {
	const char *child, *into, *new_file, *format;
	bool json, progress;
	struct vdisk_merge_options opts;
};

/* 0, or the exit code to return. */
static int parse_args(int argc, char **argv, struct merge_args *a)
{
	static const struct option options[] = { { "into", required_argument, NULL, 'i' },
						 { "new", required_argument, NULL, 'n' },
						 { "output-format", required_argument, NULL, 'O' },
						 { "allow-parent-mismatch", no_argument, NULL,
						   'P' },
						 { "progress", no_argument, NULL, 'p' },
						 { "json", no_argument, NULL, 'j' },
						 { "help", no_argument, NULL, 'h' },
						 { 0 } };
	int c;
	optind = 1;
	opterr = 0;
	while ((c = getopt_long(argc, argv, "O:ph", options, NULL)) != -1) {
		switch (c) {
		case 'i':
			a->into = optarg;
			break;
		case 'n':
			a->new_file = optarg;
			break;
		case 'O':
			a->format = optarg;
			break;
		case 'P':
			a->opts.allow_parent_mismatch = true;
			break;
		case 'p':
			a->progress = true;
			break;
		case 'j':
			a->json = true;
			break;
		case 'h':
			merge_help(stdout);
			return -1;
		default:
			return cli_bad_option("merge", argv);
		}
	}
	int operands = cli_expect_one("merge", "CHILD", argc);
	if (operands)
		return operands;
	a->child = argv[optind];
	if (a->into && a->new_file)
		return cli_usage_error("merge", "--into and --new exclude each other");
	if (a->format && !a->new_file)
		return cli_usage_error("merge", "-O only applies to --new");
	return 0;
}

static json_t *removed_json(const struct vdisk_merge_plan *plan)
{
	json_t *a = json_array();
	for (unsigned i = 0; a && i < plan->depth; i++)
		json_array_append_new(a, json_string(plan->paths[i]));
	return a;
}

static void print_stats(const struct vdisk_copy_stats *s)
{
	printf("  %" PRIu64 " bytes written, %" PRIu64 " bytes made zero\n", s->bytes_written,
	       s->bytes_zeroed);
}

static int report_merge(const struct merge_args *a, const struct vdisk_merge_plan *plan,
			const struct vdisk_copy_stats *s)
{
	const char *anc = plan->paths[plan->depth];
	if (a->json)
		return cli_print_json(json_pack("{s:s, s:s, s:i, s:I, s:I, s:o}", "child", a->child,
						"ancestor", anc, "depth", (int)plan->depth,
						"bytes_written", (json_int_t)s->bytes_written,
						"bytes_zeroed", (json_int_t)s->bytes_zeroed,
						"removed", removed_json(plan)));
	printf("merged %s into %s\n", a->child, anc);
	print_stats(s);
	for (unsigned i = 0; i < plan->depth; i++)
		printf("  removed %s\n", plan->paths[i]);
	return CLI_EXIT_OK;
}

static int run_merge(struct merge_args *a, struct progress *bar)
{
	struct vdisk_copy_stats stats = { 0 };
	struct vdisk_merge_plan plan;
	char err[1024];
	a->opts.ancestor = a->into;
	a->opts.stats = &stats;
	int ret = vdisk_merge_prepare(a->child, &a->opts, &plan, err, sizeof(err));
	if (ret < 0)
		return cli_fail("merge", a->child, ret, "cannot merge: %s", err);
	ret = vdisk_merge_copy(&plan, &a->opts, err, sizeof(err));
	progress_finish(bar);
	if (ret == 0)
		ret = vdisk_merge_remove(&plan, err, sizeof(err));
	int code = ret < 0 ? cli_fail("merge", a->child, ret, "%s", err)
			   : report_merge(a, &plan, &stats);
	vdisk_merge_plan_free(&plan);
	return code;
}

static int run_flatten(struct merge_args *a, struct progress *bar)
{
	struct vdisk_copy_stats stats = { 0 };
	char err[1024];
	a->opts.stats = &stats;
	int ret = vdisk_flatten(a->child, a->new_file, a->format, &a->opts, err, sizeof(err));
	progress_finish(bar);
	if (ret < 0)
		return cli_fail("merge", a->child, ret, "cannot flatten: %s", err);
	if (a->json)
		return cli_print_json(json_pack("{s:s, s:s, s:I, s:I}", "child", a->child, "new",
						a->new_file, "bytes_written",
						(json_int_t)stats.bytes_written, "bytes_zeroed",
						(json_int_t)stats.bytes_zeroed));
	printf("flattened %s into %s\n", a->child, a->new_file);
	print_stats(&stats);
	return CLI_EXIT_OK;
}

static int merge_run(int argc, char **argv)
{
	struct merge_args a = { 0 };
	int ret = parse_args(argc, argv, &a);
	if (ret)
		return ret < 0 ? CLI_EXIT_OK : ret;
	struct progress bar;
	progress_init(&bar, a.new_file ? "flattening" : "merging", a.progress);
	a.opts.progress = progress_cb;
	a.opts.opaque = &bar;
	return a.new_file ? run_flatten(&a, &bar) : run_merge(&a, &bar);
}

const struct cli_command cmd_merge = {
	.name = "merge",
	.summary = "merge a differencing image into an ancestor, or flatten its chain",
	.run = merge_run,
	.help = merge_help,
};
