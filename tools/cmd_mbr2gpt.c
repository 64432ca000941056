/* vdisk mbr2gpt: converts an MBR partition table to GPT in place, like Windows' MBR2GPT
 * run offline. File systems are not touched: partitions keep their sectors. */
#include <ctype.h>
#include <errno.h>
#include <getopt.h>
#include <string.h>

#include "cli.h"
#include "fat32.h"
#include "gpt.h"
#include "progress.h"

#define CMD		     "mbr2gpt"
#define ESP_TYPE	     "C12A7328-F81F-11D2-BA4B-00A0C93EC93B"
#define ESP_DEFAULT_BYTES    (100ull << 20)
#define ESP_DEFAULT_BYTES_4K (260ull << 20) /* FAT32 needs 65525 clusters of 4 KiB */
#define PROCEED		     -1

static void mbr2gpt_help(FILE *out)
{
	fprintf(out,
		"Usage: vdisk mbr2gpt [OPTIONS] FILE\n\n"
		"Converts the MBR partition table of a raw, VHD or VHDX disk to GPT in place.\n"
		"Partitions (primary and logical) keep their sectors, so file systems are not\n"
		"touched; types are mapped as gdisk maps them, the boot flag becomes the legacy\n"
		"BIOS bootable attribute. The disk is checked first (valid MBR, partitions inside\n"
		"the disk and not overlapping, room for the GPT at both ends, known types); the\n"
		"backup GPT is written first, the primary next and the protective MBR last, so\n"
		"an interrupted conversion leaves the MBR disk as it was.\n\n"
		"Exit code 0: converted (or, with --validate, convertible); 1: --validate found\n"
		"problems; 2: not converted (problems found, or the image could not be used).\n\n"
		"Options:\n"
		"      --validate         check and report only; the image is opened read-only\n"
		"      --create-esp[=SIZE]\n"
		"                         also create and format (FAT32) an EFI system partition\n"
		"                         in free space, 1 MiB aligned; SIZE defaults to 100 MiB\n"
		"                         (260 MiB on 4 KiB-sector disks); '--create-esp SIZE'\n"
		"                         works too\n"
		"      --map MBRTYPE=GUID give partitions of MBR type MBRTYPE (hex) the GPT type\n"
		"                         GUID; repeatable; overrides the built-in mapping\n"
		"      --json             print the report as one JSON object\n"
		"  -p, --progress         show a progress bar even when stderr is not a terminal\n"
		"  -h, --help             show this help\n");
}

struct mbr2gpt_args {
	bool validate, json, progress, create_esp;
	uint64_t esp_bytes; /* 0: the default for the sector size */
	struct type_map map;
	const char *path;
};

/* --create-esp takes an optional SIZE, either "=SIZE" or as the next word when a FILE
 * still follows it. */
static bool parse_esp_size(int argc, char **argv, struct mbr2gpt_args *a)
{
	a->create_esp = true;
	const char *text = optarg;
	if (!text && optind < argc - 1 && isdigit((unsigned char)argv[optind][0]))
		text = argv[optind++];
	if (!text)
		return true;
	if (!cli_parse_size(CMD, "--create-esp", text, &a->esp_bytes))
		return false;
	if (a->esp_bytes == 0) {
		cli_usage_error(CMD, "--create-esp size must not be zero");
		return false;
	}
	return true;
}

static int parse_args(int argc, char **argv, struct mbr2gpt_args *a)
{
	static const struct option options[] = { { "validate", no_argument, NULL, 'V' },
						 { "create-esp", optional_argument, NULL, 'E' },
						 { "map", required_argument, NULL, 'm' },
						 { "json", no_argument, NULL, 'j' },
						 { "progress", no_argument, NULL, 'p' },
						 { "help", no_argument, NULL, 'h' },
						 { 0 } };
	int c;
	optind = 1;
	opterr = 0;
	while ((c = getopt_long(argc, argv, "ph", options, NULL)) != -1) {
		switch (c) {
		case 'V':
			a->validate = true;
			break;
		case 'E':
			if (!parse_esp_size(argc, argv, a))
				return CLI_EXIT_USAGE;
			break;
		case 'm':
			if (type_map_add(&a->map, optarg) < 0)
				return cli_usage_error(CMD,
						       "--map '%s' must be MBRTYPE=GUID, MBRTYPE a "
						       "hex byte other than 0 (example: "
						       "0x42=AF9B60A0-1431-4F62-BC68-3311714A69AD)",
						       optarg);
			break;
		case 'j':
			a->json = true;
			break;
		case 'p':
			a->progress = true;
			break;
		case 'h':
			mbr2gpt_help(stdout);
			return CLI_EXIT_OK;
		default:
			return cli_bad_option(CMD, argv);
		}
	}
	int operands = cli_expect_one(CMD, "FILE", argc);
	if (operands)
		return operands;
	a->path = argv[optind];
	return PROCEED;
}

/* ---- the EFI system partition ---- */

struct esp_plan {
	uint64_t first, sectors;
	unsigned number;
	struct fat32_layout fat;
};

/* Places the ESP and adds it to the table; problems go to f. */
static void plan_esp(const struct mbr2gpt_args *a, const struct mbr_disk *m, struct gpt_table *t,
		     struct esp_plan *esp, struct findings *f)
{
	uint32_t ss = m->sector_size;
	uint64_t bytes = a->esp_bytes ? a->esp_bytes
			 : ss >= 4096 ? ESP_DEFAULT_BYTES_4K
				      : ESP_DEFAULT_BYTES;
	esp->sectors = bytes / ss + (bytes % ss != 0);
	char why[256], hint[512];
	if (m->has_esp) {
		finding_add(f, "error", "drop --create-esp: the existing one is converted too",
			    "the disk already has an EFI system partition (MBR type 0xEF)");
		return;
	}
	if (fat32_plan(esp->sectors, ss, &esp->fat, why, sizeof(why)) < 0) {
		finding_add(f, "error", "choose another size with --create-esp=SIZE",
			    "cannot create the EFI system partition: %s", why);
		return;
	}
	uint64_t missing;
	if (!gpt_find_free(m, esp->sectors, &esp->first, &missing)) {
		uint64_t want =
			((m->sectors * ss + missing) + (1u << 20) - 1) & ~((1ull << 20) - 1);
		snprintf(hint, sizeof(hint),
			 "grow the disk with 'vdisk resize %s %llu' (or more), then run mbr2gpt "
			 "again; or choose a smaller --create-esp=SIZE",
			 a->path, (unsigned long long)want);
		finding_add(f, "error", hint,
			    "no free space for a %llu-byte EFI system partition (1 MiB aligned): "
			    "%llu more bytes are needed",
			    (unsigned long long)(esp->sectors * ss), (unsigned long long)missing);
		return;
	}
	esp->number = gpt_free_number(t);
	if (!esp->number) {
		finding_add(f, "error", NULL, "no free GPT entry for the EFI system partition");
		return;
	}
	struct gpt_entry *e = &t->entries[esp->number - 1];
	guid_parse(ESP_TYPE, &e->type);
	e->first = esp->first;
	e->last = esp->first + esp->sectors - 1;
	snprintf(e->name, sizeof(e->name), "%s", gpt_type_name(&e->type));
	if (guid_generate(&e->unique) < 0)
		finding_add(f, "error", NULL, "no random numbers for the partition's GUID");
}

/* ---- the report ---- */

static json_t *mbr_json(const struct mbr_disk *m)
{
	json_t *list = json_array();
	for (unsigned i = 0; i < m->count; i++) {
		const struct mbr_part *p = &m->parts[i];
		char type[8];
		snprintf(type, sizeof(type), "0x%02x", p->type);
		json_array_append_new(
			list, json_pack("{s:i, s:s, s:I, s:I, s:s, s:b}", "number", p->number,
					"kind", p->number > 4 ? "logical" : "primary", "start",
					(json_int_t)p->first, "end", (json_int_t)p->last, "type",
					type, "bootable", p->bootable));
	}
	return list;
}

static json_t *gpt_json(const struct gpt_table *t, bool with_guids)
{
	json_t *list = json_array();
	for (unsigned i = 0; i < GPT_ENTRIES; i++) {
		const struct gpt_entry *e = &t->entries[i];
		if (guid_is_zero(&e->type))
			continue;
		char type[GUID_STR_LEN + 1], unique[GUID_STR_LEN + 1];
		guid_format(&e->type, type);
		guid_format(&e->unique, unique);
		json_array_append_new(
			list, json_pack("{s:i, s:I, s:I, s:s, s:s?, s:s, s:I}", "number", i + 1,
					"start", (json_int_t)e->first, "end", (json_int_t)e->last,
					"type", type, "guid", with_guids ? unique : NULL, "name",
					e->name, "attributes", (json_int_t)e->attributes));
	}
	return list;
}

static void print_findings(const struct findings *f)
{
	size_t i;
	json_t *item;
	json_array_foreach (f->list, i, item) {
		const char *hint = json_string_value(json_object_get(item, "hint"));
		printf("%s: %s\n", json_string_value(json_object_get(item, "severity")),
		       json_string_value(json_object_get(item, "message")));
		if (hint)
			printf("  what to do: %s\n", hint);
	}
}

static void print_layout(const struct mbr_disk *m, const struct gpt_table *t, bool converted)
{
	printf("MBR partitions:\n  %-3s %12s %12s  %-4s  %s\n", "#", "start", "end", "type",
	       "boot");
	for (unsigned i = 0; i < m->count; i++) {
		const struct mbr_part *p = &m->parts[i];
		printf("  %-3u %12llu %12llu  0x%02x  %s\n", p->number,
		       (unsigned long long)p->first, (unsigned long long)p->last, p->type,
		       p->bootable ? "*" : "");
	}
	printf("GPT partitions%s:\n  %-3s %12s %12s  %-36s  %s\n", converted ? "" : " (planned)",
	       "#", "start", "end", "type", "name");
	for (unsigned i = 0; i < GPT_ENTRIES; i++) {
		const struct gpt_entry *e = &t->entries[i];
		if (guid_is_zero(&e->type))
			continue;
		char type[GUID_STR_LEN + 1];
		guid_format(&e->type, type);
		printf("  %-3u %12llu %12llu  %s  %s%s\n", i + 1, (unsigned long long)e->first,
		       (unsigned long long)e->last, type, e->name,
		       e->attributes & GPT_ATTR_LEGACY_BIOS_BOOTABLE ? " (legacy BIOS bootable)"
								     : "");
	}
}

static const char *verdict(const struct mbr2gpt_args *a, const struct findings *f)
{
	if (f->errors)
		return "cannot be converted";
	return a->validate ? "can be converted to GPT" : "converted to GPT";
}

static void report(const struct mbr2gpt_args *a, const struct mbr_disk *m,
		   const struct gpt_table *t, const struct findings *f, bool converted)
{
	if (a->json) {
		char disk_guid[GUID_STR_LEN + 1];
		guid_format(&t->disk_guid, disk_guid);
		cli_print_json(json_pack(
			"{s:s, s:I, s:I, s:b, s:b, s:s?, s:O, s:o, s:o}", "file", a->path,
			"sector_size", (json_int_t)m->sector_size, "sectors",
			(json_int_t)m->sectors, "valid", !f->errors, "converted", converted,
			"disk_guid", converted ? disk_guid : NULL, "findings", f->list, "before",
			mbr_json(m), "after", f->errors ? json_array() : gpt_json(t, converted)));
		return;
	}
	print_findings(f);
	if (!f->errors)
		print_layout(m, t, converted);
	printf("%s: %s\n", a->path, verdict(a, f));
}

/* ---- conversion ---- */

static int convert(struct vdisk *disk, const struct mbr2gpt_args *a, const struct mbr_disk *m,
		   const struct gpt_table *t, const struct esp_plan *esp)
{
	if (esp->number) {
		struct progress bar;
		progress_init(&bar, "formatting the EFI system partition", a->progress);
		int ret = fat32_format(disk, esp->first, &esp->fat, progress_cb, &bar);
		progress_finish(&bar);
		if (ret == 0)
			ret = vdisk_flush_sync(disk);
		if (ret < 0)
			return cli_fail(CMD, a->path, ret,
					"formatting the EFI system partition failed: %s; the MBR "
					"is unchanged",
					strerror(-ret));
	}
	const char *step;
	int ret = gpt_write(disk, m, t, &step);
	if (ret < 0)
		return cli_fail(CMD, a->path, ret, "%s failed: %s; %s", step, strerror(-ret),
				strstr(step, "MBR") ? "the disk may need 'sgdisk -v' to check it"
						    : "the MBR is unchanged and still in use");
	return CLI_EXIT_OK;
}

static int inspect_and_convert(struct vdisk *disk, const struct mbr2gpt_args *a)
{
	struct vdisk_info info;
	int ret = vdisk_get_info(disk, &info);
	if (ret < 0)
		return cli_fail(CMD, a->path, ret, "cannot read the image's sector size: %s",
				strerror(-ret));
	json_decref(info.details);
	struct findings f = { .list = json_array() };
	static struct mbr_disk m;
	static struct gpt_table t;
	struct esp_plan esp = { 0 };
	ret = mbr_inspect(disk, info.logical_sector_size, &a->map, &m, &f);
	if (ret == 0 && !f.errors)
		ret = gpt_from_mbr(&m, &a->map, &t);
	if (ret == 0 && !f.errors && a->create_esp)
		plan_esp(a, &m, &t, &esp, &f);
	if (ret < 0) {
		json_decref(f.list);
		return cli_fail(CMD, a->path, ret, "cannot read the partition table: %s",
				strerror(-ret));
	}
	int exit_code;
	if (a->validate) {
		report(a, &m, &t, &f, false);
		exit_code = f.errors ? CLI_EXIT_NO : CLI_EXIT_OK;
	} else if (f.errors) {
		report(a, &m, &t, &f, false);
		exit_code = cli_fail(CMD, a->path, 0,
				     "not converted: %u problem(s) found (listed above); the image "
				     "is unchanged",
				     f.errors);
	} else {
		exit_code = convert(disk, a, &m, &t, &esp);
		if (exit_code == CLI_EXIT_OK)
			report(a, &m, &t, &f, true);
	}
	json_decref(f.list);
	return exit_code;
}

static int mbr2gpt_run(int argc, char **argv)
{
	struct mbr2gpt_args a = { 0 };
	int ret = parse_args(argc, argv, &a);
	if (ret != PROCEED)
		return ret;
	struct vdisk_options opts = { .read_only = a.validate, .cache = VDISK_CACHE_WRITEBACK };
	struct vdisk *disk;
	ret = cli_open(CMD, a.path, &opts, &disk);
	if (ret)
		return ret;
	ret = inspect_and_convert(disk, &a);
	vdisk_close(disk);
	return ret;
}

const struct cli_command cmd_mbr2gpt = {
	.name = "mbr2gpt",
	.summary = "convert an MBR partition table to GPT in place (optionally add an ESP)",
	.run = mbr2gpt_run,
	.help = mbr2gpt_help,
};
