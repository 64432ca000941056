/* vdisk chain: a differencing image's chain of parents down to its base, with each image's
 * identity and what it expects of its parent.
 *
 * Each image is opened on its own with no_backing, so a chain whose parent is missing or
 * replaced is still shown as far as it goes; the tool compares the identities itself.
 */
#include <errno.h>
#include <getopt.h>
#include <stdarg.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "cli.h"
#include "guid.h"
#include "size.h"

#define CHAIN_MAX 64 /* the block layer's limit on a chain (VDISK_MAX_CHAIN) */

static void chain_help(FILE *out)
{
	fprintf(out,
		"Usage: vdisk chain [OPTIONS] FILE\n\n"
		"Shows the chain of images from FILE down to its base: for each image its\n"
		"path, format, type, sizes and identity (VHD unique id, VHDX DataWriteGuid),\n"
		"and for a differencing image the identity it expects of its parent and\n"
		"whether the parent found has it.\n"
		"Exit code 0: the chain is complete and consistent; 1: a parent does not have\n"
		"the identity its child expects; 2: a parent is missing or cannot be read.\n\n"
		"Options:\n"
		"      --json         print one JSON object\n"
		"  -h, --help         show this help\n");
}

/* What the format's details say about one image. */
struct layer {
	json_t *entry;	      /* the image's JSON object in the output */
	struct guid identity; /* VHD unique id or VHDX DataWriteGuid */
	bool has_identity;
	struct guid expects; /* what it recorded of its parent */
	bool has_parent;
	const char *parent_path; /* resolved parent (inside details), NULL when not found */
	json_t *details;
};

static const char *string_at(json_t *obj, const char *key)
{
	return json_string_value(json_object_get(obj, key));
}

/* VHDX: the DataWriteGuid of the current header. */
static const char *vhdx_identity(json_t *details)
{
	size_t i;
	json_t *h;
	json_array_foreach (json_object_get(details, "headers"), i, h) {
		if (json_is_true(json_object_get(h, "current")))
			return string_at(h, "data_write_guid");
	}
	return NULL;
}

static bool parse_guid(const char *text, struct guid *out)
{
	return text && guid_parse(text, out) == 0;
}

/* A GUID in the canonical form (VHDX writes braces, VHD none); text as it is otherwise. */
static json_t *guid_json(const char *text)
{
	struct guid g;
	char s[GUID_STR_LEN + 1];
	if (!parse_guid(text, &g))
		return text ? json_string(text) : json_null();
	guid_format(&g, s);
	return json_string(s);
}

/* Fills the identity fields and the "identity"/"parent" members of l->entry. */
static int layer_identity(struct layer *l, const char *format)
{
	bool vhdx = !strcmp(format, "vhdx");
	json_t *parent = json_object_get(l->details, "parent");
	const char *id = vhdx ? vhdx_identity(l->details) : string_at(l->details, "unique_id");
	l->has_identity = parse_guid(id, &l->identity);
	if (l->has_identity)
		json_object_set_new(l->entry, "identity", guid_json(id));
	if (!parent)
		return 0;
	l->has_parent = true;
	const char *want = string_at(parent, vhdx ? "linkage" : "unique_id");
	parse_guid(want, &l->expects);
	l->parent_path = string_at(parent, "path");
	json_t *p = json_pack("{s:o, s:s?}", "expected_identity", guid_json(want), "path",
			      l->parent_path);
	if (!p)
		return -ENOMEM;
	if (!vhdx)
		json_object_set(p, "expected_timestamp", json_object_get(parent, "timestamp"));
	if (vhdx)
		json_object_set(p, "relative_path", json_object_get(parent, "relative_path"));
	return json_object_set_new(l->entry, "parent", p) ? -ENOMEM : 0;
}

static int layer_read(struct vdisk *disk, struct layer *l)
{
	struct vdisk_info info;
	int ret = vdisk_get_info(disk, &info);
	if (ret < 0)
		return ret;
	l->details = info.details;
	const char *type = string_at(info.details, "type");
	l->entry =
		json_pack("{s:s, s:s, s:s, s:I, s:I}", "path", vdisk_path(disk), "format",
			  info.format, "type", type ? type : info.format, "virtual_size",
			  (json_int_t)info.virtual_size, "file_size", (json_int_t)info.file_size);
	if (!l->entry)
		return -ENOMEM;
	return info.details ? layer_identity(l, info.format) : 0;
}

static void layer_free(struct layer *l)
{
	json_decref(l->details);
	json_decref(l->entry);
}

/* The chain as it was walked; the reason it stopped early. */
struct walk {
	json_t *images;
	dev_t dev[CHAIN_MAX];
	ino_t ino[CHAIN_MAX];
	unsigned depth;
	bool mismatch;
	char problem[1024]; /* why the walk stopped before a base image */
	char problem_file[4096];
	int problem_err;
};

static bool seen_before(struct walk *w, const char *path)
{
	struct stat st;
	if (stat(path, &st) != 0)
		return false;
	for (unsigned i = 0; i < w->depth; i++)
		if (w->dev[i] == st.st_dev && w->ino[i] == st.st_ino)
			return true;
	w->dev[w->depth] = st.st_dev;
	w->ino[w->depth] = st.st_ino;
	return false;
}

static void stop(struct walk *w, const char *file, int err, const char *fmt, ...)
	__attribute__((format(printf, 4, 5)));

static void stop(struct walk *w, const char *file, int err, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(w->problem, sizeof(w->problem), fmt, ap);
	va_end(ap);
	snprintf(w->problem_file, sizeof(w->problem_file), "%s", file);
	w->problem_err = err;
}

/* The parent of path was not found: a normal open repeats the search and says where it
 * looked. */
static void explain_missing_parent(struct walk *w, const char *path)
{
	struct vdisk_options opts = { .read_only = true,
				      .cache = VDISK_CACHE_WRITEBACK,
				      .engine = VDISK_ENGINE_SYNC };
	struct vdisk *disk;
	char why[768];
	int ret = vdisk_open(path, &opts, &disk, why, sizeof(why));
	if (ret == 0) { /* it appeared meanwhile */
		vdisk_close(disk);
		snprintf(why, sizeof(why), "parent not found");
	}
	stop(w, path, -ENOENT, "%s", why);
}

static int open_layer(struct walk *w, const char *path, struct layer *l)
{
	struct vdisk_options opts = { .read_only = true,
				      .cache = VDISK_CACHE_WRITEBACK,
				      .engine = VDISK_ENGINE_SYNC,
				      .no_backing = true };
	struct vdisk *disk;
	char why[512];
	int ret = vdisk_open(path, &opts, &disk, why, sizeof(why));
	if (ret < 0) {
		stop(w, path, ret, "cannot open: %s", why);
		return ret;
	}
	ret = layer_read(disk, l);
	vdisk_close(disk);
	if (ret < 0)
		stop(w, path, ret, "cannot describe the image: %s", strerror(-ret));
	return ret;
}

/* Records whether the image below matches what the image above expects. */
static void link_layers(struct walk *w, struct layer *above, const struct layer *below)
{
	bool match = below->has_identity && guid_equal(&above->expects, &below->identity);
	json_object_set_new(json_object_get(above->entry, "parent"), "matches",
			    json_boolean(match));
	if (!match)
		w->mismatch = true;
}

/* Walks from path down; returns 0 when it reached a base image. */
static int walk_chain(struct walk *w, const char *path)
{
	struct layer above = { 0 };
	char *next = strdup(path);
	int ret = next ? 0 : -ENOMEM;
	while (ret == 0 && next) {
		struct layer l = { 0 };
		if (w->depth == CHAIN_MAX || seen_before(w, next)) {
			stop(w, next, -ELOOP,
			     w->depth == CHAIN_MAX ? "the chain is deeper than %d images"
						   : "the chain loops back to this image (%d)",
			     CHAIN_MAX);
			ret = -ELOOP;
			break;
		}
		ret = open_layer(w, next, &l);
		if (ret < 0)
			break;
		if (w->depth)
			link_layers(w, &above, &l);
		w->depth++;
		json_array_append(w->images, l.entry);
		if (l.has_parent && !l.parent_path) {
			explain_missing_parent(w, next);
			ret = -ENOENT;
		}
		free(next);
		next = l.parent_path ? strdup(l.parent_path) : NULL;
		if (l.parent_path && !next)
			ret = -ENOMEM;
		layer_free(&above);
		above = l;
	}
	layer_free(&above);
	free(next);
	return ret;
}

static void print_image(unsigned i, json_t *img)
{
	char human[32];
	json_t *p = json_object_get(img, "parent");
	printf("[%u] %s\n", i, string_at(img, "path"));
	printf("    %-17s %s, %s\n", "format:", string_at(img, "format"), string_at(img, "type"));
	uint64_t vs = (uint64_t)json_integer_value(json_object_get(img, "virtual_size"));
	size_format(vs, human, sizeof(human));
	printf("    %-17s %s (%" PRIu64 " bytes)\n", "virtual size:", human, vs);
	uint64_t fs = (uint64_t)json_integer_value(json_object_get(img, "file_size"));
	size_format(fs, human, sizeof(human));
	printf("    %-17s %s (%" PRIu64 " bytes)\n", "file size:", human, fs);
	const char *id = string_at(img, "identity");
	printf("    %-17s %s\n", "identity:", id ? id : "-");
	if (!p)
		return;
	const char *want = string_at(p, "expected_identity");
	const char *when = string_at(p, "expected_timestamp");
	printf("    %-17s %s%s%s\n", "expects parent:", want ? want : "-", when ? " of " : "",
	       when ? when : "");
	json_t *m = json_object_get(p, "matches");
	const char *path = string_at(p, "path");
	printf("    %-17s %s%s\n", "parent:", path ? path : "(not found)",
	       !m		 ? ""
	       : json_is_true(m) ? " (identity matches)"
				 : " (IDENTITY DIFFERS)");
}

static void print_chain(const struct walk *w)
{
	size_t i;
	json_t *img;
	json_array_foreach (w->images, i, img)
		print_image((unsigned)i, img);
	if (w->mismatch)
		printf("a parent does not have the identity its child expects: it was replaced "
		       "or modified after the child was made\n");
}

static int chain_run(int argc, char **argv)
{
	static const struct option options[] = { { "json", no_argument, NULL, 'j' },
						 { "help", no_argument, NULL, 'h' },
						 { 0 } };
	bool json = false;
	int c;
	optind = 1;
	opterr = 0;
	while ((c = getopt_long(argc, argv, "h", options, NULL)) != -1) {
		switch (c) {
		case 'j':
			json = true;
			break;
		case 'h':
			chain_help(stdout);
			return CLI_EXIT_OK;
		default:
			return cli_bad_option("chain", argv);
		}
	}
	int operands = cli_expect_one("chain", "FILE", argc);
	if (operands)
		return operands;
	const char *path = argv[optind];
	struct walk w = { .images = json_array() };
	if (!w.images)
		return cli_fail("chain", NULL, -ENOMEM, "out of memory");
	int ret = walk_chain(&w, path);
	if (ret < 0 && w.depth == 0) {
		json_decref(w.images);
		return cli_fail("chain", w.problem_file[0] ? w.problem_file : path, w.problem_err,
				"%s", w.problem[0] ? w.problem : strerror(-ret));
	}
	if (json)
		cli_print_json(json_pack("{s:s, s:b, s:b, s:o, s:s?}", "file", path, "complete",
					 ret == 0, "consistent", ret == 0 && !w.mismatch, "images",
					 w.images, "problem", ret < 0 ? w.problem : NULL));
	else
		print_chain(&w);
	if (!json)
		json_decref(w.images);
	if (ret < 0)
		return cli_fail("chain", w.problem_file, w.problem_err, "%s", w.problem);
	return w.mismatch ? CLI_EXIT_NO : CLI_EXIT_OK;
}

const struct cli_command cmd_chain = {
	.name = "chain",
	.summary = "show a differencing image's chain of parents",
	.run = chain_run,
	.help = chain_help,
};
