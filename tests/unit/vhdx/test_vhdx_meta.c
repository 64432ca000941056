/* VHDX metadata (vhdx/vhdx_meta.c): checksums, headers and their update protocol, loading
 * and validation (headers, log replay, region tables, metadata items, BAT, parent
 * locator), creation, info, check and repair.
 *
 * Oracles are independent where they can be: images written by qemu-img and qemu-io,
 * `qemu-img info`/`check`/`compare` reading our images, vhdiinfo (libvhdi), and plain
 * pread/pwrite of the file. Tests that need a tool skip when it is missing.
 *
 * vhdx.c (open, I/O) is not used: images are loaded with vhdx_load on a struct vdisk set
 * up here, and a minimal "vhdx" format (probe + vhdx_load + get_info) is registered so
 * that vdisk_open can open a parent for vhdx_create and for the info chain. Dirty logs are
 * written with vhdx_log.c's entry builder.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <jansson.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "crc32c.h"
#include "endian.h"
#include "format.h"
#include "test_util.h"
#include "utf16.h"
#include "vdisk.h"
#include "vhdx_internal.h"

#define KiB 1024ull
#define MiB (1024ull * KiB)
#define GiB (1024ull * MiB)
#define TiB (1024ull * GiB)

/* Where vhdx_create puts things. */
#define LOG_AT	    (1 * MiB)
#define METADATA_AT (2 * MiB)
#define BAT_AT	    (3 * MiB)

/* ---- files ---- */

static uint64_t file_size(const char *path)
{
	struct stat st;
	assert_int_equal(stat(path, &st), 0);
	return (uint64_t)st.st_size;
}

static void file_truncate(const char *path, uint64_t size)
{
	assert_int_equal(truncate(path, (off_t)size), 0);
}

static void corrupt_byte(const char *path, uint64_t at)
{
	uint8_t b;
	test_file_read(path, &b, 1, at);
	b ^= 0x5a;
	test_file_write(path, &b, 1, at);
}

static void copy_file(const char *from, const char *to)
{
	assert_int_equal(test_run(NULL, 0, "cp '%s' '%s'", from, to), 0);
}

static bool have_tool(const char *name)
{
	return test_run(NULL, 0, "command -v %s", name) == 0;
}

#define NEED_TOOL(name)                                                                            \
	do {                                                                                       \
		if (!have_tool(name)) {                                                            \
			print_message("%s not installed: skipped\n", name);                        \
			skip();                                                                    \
		}                                                                                  \
	} while (0)

/* ---- on-disk structures ---- */

static const uint64_t header_at[2] = { 64 * KiB, 128 * KiB };
static const uint64_t table_at[2] = { 192 * KiB, 256 * KiB };

static bool header_get(const char *path, int slot, struct vhdx_header *h)
{
	uint8_t raw[4096];
	char why[200];
	test_file_read(path, raw, sizeof(raw), header_at[slot]);
	return vhdx_header_parse(raw, h, why, sizeof(why)) == 0;
}

static void header_put(const char *path, int slot, const struct vhdx_header *h)
{
	uint8_t raw[4096];
	vhdx_header_build(h, raw);
	test_file_write(path, raw, sizeof(raw), header_at[slot]);
}

/* Both headers from the current one with a change applied, sequence numbers going on. */
static void headers_change(const char *path, void (*change)(struct vhdx_header *, void *),
			   void *arg)
{
	struct vhdx_header a, b;
	bool va = header_get(path, 0, &a), vb = header_get(path, 1, &b);
	assert_true(va || vb);
	struct vhdx_header h = !vb || (va && a.sequence > b.sequence) ? a : b;
	change(&h, arg);
	h.sequence++;
	header_put(path, 0, &h);
	h.sequence++;
	header_put(path, 1, &h);
}

static void set_log_guid(struct vhdx_header *h, void *arg)
{
	h->log_guid = *(const struct guid *)arg;
}

/* A region table, with its checksum recomputed when asked. */
static void table_get(const char *path, int t, uint8_t *raw)
{
	test_file_read(path, raw, 64 * KiB, table_at[t]);
}

static void table_put(const char *path, int t, uint8_t *raw, bool fix_checksum)
{
	if (fix_checksum)
		store_le32(raw + VHDX_RT_CHECKSUM, vhdx_checksum(raw, 64 * KiB, VHDX_RT_CHECKSUM));
	test_file_write(path, raw, 64 * KiB, table_at[t]);
}

/* Applies a change to both region tables (checksums recomputed). */
static void tables_change(const char *path, void (*change)(uint8_t *raw, void *), void *arg)
{
	uint8_t *raw = malloc(64 * KiB);
	for (int t = 0; t < 2; t++) {
		table_get(path, t, raw);
		change(raw, arg);
		table_put(path, t, raw, true);
	}
	free(raw);
}

/* The metadata table of an image made by vhdx_create (at 2 MiB); no checksum. */
static uint8_t *meta_entry(uint8_t *table, const struct guid *id)
{
	unsigned n = load_le16(table + VHDX_MT_ENTRY_COUNT);
	for (unsigned i = 0; i < n; i++) {
		uint8_t *e = table + VHDX_MT_ENTRIES + i * VHDX_ME_SIZE;
		if (!memcmp(e, id->bytes, 16))
			return e;
	}
	fail_msg("no such metadata item");
	return NULL;
}

static uint64_t item_at(const char *path, const struct guid *id)
{
	uint8_t table[64 * KiB];
	test_file_read(path, table, sizeof(table), METADATA_AT);
	return METADATA_AT + load_le32(meta_entry(table, id) + VHDX_ME_OFFSET);
}

static void item_write32(const char *path, const struct guid *id, uint32_t at, uint32_t v)
{
	uint8_t le[4];
	store_le32(le, v);
	test_file_write(path, le, 4, item_at(path, id) + at);
}

static void item_write64(const char *path, const struct guid *id, uint64_t v)
{
	uint8_t le[8];
	store_le64(le, v);
	test_file_write(path, le, 8, item_at(path, id));
}

/* BAT entries (images made here: BAT at 3 MiB). */
static void set_bat(const char *path, uint64_t index, uint64_t value)
{
	uint8_t le[8];
	store_le64(le, value);
	test_file_write(path, le, 8, BAT_AT + 8 * index);
}

static uint64_t get_bat(const char *path, uint64_t index)
{
	uint8_t le[8];
	test_file_read(path, le, 8, BAT_AT + 8 * index);
	return load_le64(le);
}

/* Appends a block of the pattern seed at the 1 MiB aligned end of the file and points BAT
 * entry index at it with the given state; returns its offset. */
static uint64_t append_block(const char *path, uint64_t index, uint32_t len, unsigned state,
			     uint32_t seed)
{
	uint64_t at = (file_size(path) + MiB - 1) / MiB * MiB;
	uint8_t *data = malloc(len);
	assert_non_null(data);
	test_fill_pattern(data, len, 0, seed);
	test_file_write(path, data, len, at);
	free(data);
	set_bat(path, index, vhdx_bat_entry(state, at));
	return at;
}

/* ---- images ---- */

static void create_image(const char *path, const char *type, uint64_t size, uint32_t block,
			 const char *parent)
{
	struct vdisk_create_options o = {
		.format = "vhdx",
		.size = size,
		.type = type,
		.block_size = block,
		.parent = parent,
		.overwrite = true,
	};
	char err[512] = "";
	int ret = vhdx_create(path, &o, err, sizeof(err));
	if (ret)
		fail_msg("vhdx_create %s: %d %s", path, ret, err);
}

struct image {
	struct vdisk disk;
	struct vhdx v;
	char err[512];
};

static int image_load(struct image *im, const char *path, bool rw, bool for_repair)
{
	memset(im, 0, sizeof(*im));
	int ret = vdisk_file_open(path, !rw, VDISK_CACHE_WRITEBACK, true, &im->disk.file, im->err,
				  sizeof(im->err));
	if (ret)
		return ret;
	im->disk.read_only = !rw;
	im->disk.opts.read_only = !rw;
	im->disk.opts.for_repair = for_repair;
	im->disk.priv = &im->v;
	ret = vhdx_load(&im->disk, &im->v, im->err, sizeof(im->err));
	if (ret) {
		vdisk_file_close(im->disk.file);
		im->disk.file = NULL;
	}
	return ret;
}

static void image_close(struct image *im)
{
	vhdx_unload(&im->v);
	vdisk_file_close(im->disk.file);
	im->disk.file = NULL;
}

static void load_ok(struct image *im, const char *path)
{
	int ret = image_load(im, path, false, false);
	if (ret)
		fail_msg("vhdx_load %s: %d %s", path, ret, im->err);
}

/* vhdx_load (read-only, strict) must fail with ret and a message containing want. */
static void load_fails(const char *path, int ret, const char *want)
{
	struct image im;
	int got = image_load(&im, path, false, false);
	if (got == 0) {
		image_close(&im);
		fail_msg("vhdx_load %s succeeded; expected %d (%s)", path, ret, want);
	}
	if (got != ret || !strstr(im.err, want))
		fail_msg("vhdx_load %s: got %d \"%s\"; expected %d with \"%s\"", path, got, im.err,
			 ret, want);
}

struct check_out {
	struct vdisk_check_result res;
	char text[8192];
};

/* Loads for repair (read-write when repairing) and checks. */
static void run_check(const char *path, bool repair, struct check_out *out)
{
	struct image im;
	int ret = image_load(&im, path, repair, true);
	if (ret)
		fail_msg("vhdx_load %s: %s", path, im.err);
	memset(out, 0, sizeof(*out));
	out->res.findings = json_array();
	assert_int_equal(vhdx_check(&im.disk, repair ? VDISK_CHECK_REPAIR : 0, &out->res), 0);
	test_findings_text(out->res.findings, out->text, sizeof(out->text));
	json_decref(out->res.findings);
	image_close(&im);
}

static void expect_clean(const char *path)
{
	struct check_out c;
	struct image im;
	load_ok(&im, path);
	assert_int_equal(im.v.bad_bat_entries, 0);
	image_close(&im);
	run_check(path, false, &c);
	if (c.res.errors || c.res.leaks || c.res.fixed)
		fail_msg("check %s not clean:\n%s", path, c.text);
}

/* ---- a minimal "vhdx" format for vdisk_open (vhdx.c is not part of this test) ---- */

static int stub_open(struct vdisk *disk, char *err, size_t err_size)
{
	struct vhdx *v = calloc(1, sizeof(*v));
	if (!v)
		return -ENOMEM;
	int ret = vhdx_load(disk, v, err, err_size);
	if (ret == 0 && v->parent_path) {
		struct vdisk_options o = { .read_only = true,
					   .cache = VDISK_CACHE_WRITEBACK,
					   .engine = VDISK_ENGINE_SYNC,
					   .no_lock = true };
		ret = vdisk_open(v->parent_path, &o, &v->parent, err, err_size);
		if (ret)
			vhdx_unload(v);
	}
	if (ret) {
		free(v);
		return ret;
	}
	disk->size = v->virtual_size;
	disk->logical_sector_size = v->logical_sector_size;
	disk->physical_sector_size = v->physical_sector_size;
	disk->priv = v;
	return 0;
}

static void stub_close(struct vdisk *disk)
{
	struct vhdx *v = disk->priv;
	if (!v)
		return;
	vdisk_close(v->parent);
	vhdx_unload(v);
	free(v);
}

static const struct vdisk_format stub_vhdx = {
	.name = "vhdx",
	.probe = vhdx_probe,
	.open = stub_open,
	.close = stub_close,
	.get_info = vhdx_get_info,
	.check = vhdx_check,
};

static struct vdisk *open_ro(const char *path)
{
	struct vdisk_options o = { .read_only = true,
				   .cache = VDISK_CACHE_WRITEBACK,
				   .engine = VDISK_ENGINE_SYNC,
				   .no_lock = true };
	struct vdisk *disk;
	char err[512];
	if (vdisk_open(path, &o, &disk, err, sizeof(err)))
		fail_msg("vdisk_open %s: %s", path, err);
	return disk;
}

/* ---- tool output ---- */

/* `qemu-img info --output=json`: virtual size and format. */
static void qemu_info(const char *path, uint64_t *size, char *format, size_t format_size)
{
	static char out[8192];
	int rc =
		test_run(out, sizeof(out), "qemu-img info -U --output=json '%s' 2>/dev/null", path);
	if (rc != 0)
		fail_msg("qemu-img info %s failed:\n%s", path, out);
	json_error_t e;
	json_t *j = json_loads(out, 0, &e);
	if (!j)
		fail_msg("qemu-img info output is not JSON: %s\n%s", e.text, out);
	*size = (uint64_t)json_integer_value(json_object_get(j, "virtual-size"));
	snprintf(format, format_size, "%s", json_string_value(json_object_get(j, "format")));
	json_decref(j);
}

static void qemu_check_ok(const char *path)
{
	static char out[8192];
	if (test_run(out, sizeof(out), "qemu-img check -f vhdx '%s'", path) != 0)
		fail_msg("qemu-img check %s failed:\n%s", path, out);
}

/* A "Key : value" line of vhdiinfo's output (value trimmed), or "" when absent. */
static void vhdi_field(const char *path, const char *key, char *value, size_t size)
{
	static char out[8192];
	if (test_run(out, sizeof(out), "vhdiinfo '%s'", path) != 0)
		fail_msg("vhdiinfo %s failed:\n%s", path, out);
	value[0] = 0;
	for (char *line = strtok(out, "\n"); line; line = strtok(NULL, "\n")) {
		while (*line == '\t' || *line == ' ')
			line++;
		if (strncmp(line, key, strlen(key)))
			continue;
		char *colon = strchr(line, ':');
		if (!colon)
			continue;
		for (colon++; *colon == ' ' || *colon == '\t'; colon++)
			;
		snprintf(value, size, "%s", colon);
		return;
	}
}

static uint64_t vhdi_media_size(const char *path)
{
	char v[128];
	vhdi_field(path, "Media size", v, sizeof(v));
	char *open = strchr(v, '(');
	if (!open)
		fail_msg("vhdiinfo %s: no media size in \"%s\"", path, v);
	return strtoull(open + 1, NULL, 10);
}

/* ---- checksums, headers, probe ---- */

static void test_checksum_and_header_roundtrip(void **state)
{
	(void)state;
	/* the checksum field counts as zero */
	uint8_t buf[64];
	for (size_t i = 0; i < sizeof(buf); i++)
		buf[i] = (uint8_t)(i * 7 + 1);
	uint8_t zeroed[64];
	memcpy(zeroed, buf, sizeof(buf));
	memset(zeroed + 4, 0, 4);
	assert_int_equal(vhdx_checksum(buf, sizeof(buf), 4), crc32c(0, zeroed, sizeof(zeroed)));

	struct vhdx_header h = { .sequence = 0x0123456789abcdefull,
				 .log_version = 0,
				 .version = 1,
				 .log_length = 2 * MiB,
				 .log_offset = 5 * MiB };
	for (int i = 0; i < 16; i++) {
		h.file_write_guid.bytes[i] = (uint8_t)i;
		h.data_write_guid.bytes[i] = (uint8_t)(0x40 + i);
		h.log_guid.bytes[i] = (uint8_t)(0x80 + i);
	}
	uint8_t raw[4096];
	struct vhdx_header g;
	char why[200];
	vhdx_header_build(&h, raw);
	assert_memory_equal(raw, "head", 4);
	assert_int_equal(load_le64(raw + 8), h.sequence);
	assert_int_equal(load_le16(raw + 66), 1);
	assert_int_equal(load_le64(raw + 72), 5 * MiB);
	for (size_t i = 80; i < sizeof(raw); i++)
		assert_int_equal(raw[i], 0);
	assert_int_equal(vhdx_header_parse(raw, &g, why, sizeof(why)), 0);
	assert_int_equal(g.sequence, h.sequence);
	assert_true(guid_equal(&g.file_write_guid, &h.file_write_guid));
	assert_true(guid_equal(&g.data_write_guid, &h.data_write_guid));
	assert_true(guid_equal(&g.log_guid, &h.log_guid));
	assert_int_equal(g.log_length, h.log_length);
	assert_int_equal(g.log_offset, h.log_offset);
	assert_int_equal(g.checksum, load_le32(raw + 4));

	raw[3000] ^= 1; /* reserved bytes count too */
	assert_int_equal(vhdx_header_parse(raw, &g, why, sizeof(why)), -EINVAL);
	assert_non_null(strstr(why, "checksum"));

	/* headers and region tables qemu-img wrote have the checksums we compute */
	if (have_tool("qemu-img")) {
		const char *q = test_path("crc.vhdx");
		unlink(q);
		assert_int_equal(test_run(NULL, 0, "qemu-img create -q -f vhdx '%s' 64M", q), 0);
		for (int i = 0; i < 2; i++) {
			test_file_read(q, raw, sizeof(raw), header_at[i]);
			assert_int_equal(vhdx_header_parse(raw, &g, why, sizeof(why)), 0);
			uint8_t *rt = malloc(64 * KiB);
			table_get(q, i, rt);
			assert_int_equal(vhdx_checksum(rt, 64 * KiB, 4), load_le32(rt + 4));
			free(rt);
		}
	}
}

static void test_header_parse_rejects(void **state)
{
	(void)state;
	struct vhdx_header h = { .version = 1, .log_length = 1 * MiB, .log_offset = 1 * MiB };
	struct vhdx_header g;
	uint8_t raw[4096];
	char why[200];

	vhdx_header_build(&h, raw);
	memcpy(raw, "heaD", 4);
	assert_int_equal(vhdx_header_parse(raw, &g, why, sizeof(why)), -EINVAL);
	assert_non_null(strstr(why, "signature"));
	h.version = 2;
	vhdx_header_build(&h, raw);
	assert_int_equal(vhdx_header_parse(raw, &g, why, sizeof(why)), -EINVAL);
	assert_non_null(strstr(why, "version 2"));
	h.version = 1;
	h.log_offset = 1 * MiB + 4096;
	vhdx_header_build(&h, raw);
	assert_int_equal(vhdx_header_parse(raw, &g, why, sizeof(why)), -EINVAL);
	assert_non_null(strstr(why, "whole MiB"));
	h.log_offset = 0; /* over the header section */
	vhdx_header_build(&h, raw);
	assert_int_equal(vhdx_header_parse(raw, &g, why, sizeof(why)), -EINVAL);
	assert_non_null(strstr(why, "header section"));
	h.log_length = 0; /* no log at all is well-formed */
	vhdx_header_build(&h, raw);
	assert_int_equal(vhdx_header_parse(raw, &g, why, sizeof(why)), 0);
	h.log_length = 1 * MiB;
	h.log_offset = UINT64_MAX - MiB + 1; /* wraps */
	vhdx_header_build(&h, raw);
	assert_int_equal(vhdx_header_parse(raw, &g, why, sizeof(why)), -EINVAL);
}

static void test_probe(void **state)
{
	(void)state;
	uint8_t head[512] = { 0 }, tail[512] = { 0 };
	struct vdisk_probe p = { head, sizeof(head), tail, sizeof(tail), 4 * MiB };
	assert_int_equal(vhdx_probe(&p), 0);
	memcpy(head, "vhdxfile", 8);
	assert_int_equal(vhdx_probe(&p), 100);
	head[7] = 'E';
	assert_int_equal(vhdx_probe(&p), 0);
	head[7] = 'e';
	p.head_len = 7;
	assert_int_equal(vhdx_probe(&p), 0);
}

/* ---- images written by qemu ---- */

static void test_load_qemu_images(void **state)
{
	(void)state;
	NEED_TOOL("qemu-img");
	static const struct {
		const char *opts;
		const char *size;
		uint64_t bytes;
		uint32_t block;
		bool fixed;
	} cases[] = {
		{ "", "1G", 1 * GiB, 0, false },
		{ "subformat=fixed", "20M", 20 * MiB, 0, true },
		{ "subformat=fixed,block_state_zero=off,block_size=8M", "20M", 20 * MiB, 8 * MiB,
		  true },
		{ "block_size=1M", "100M", 100 * MiB, 1 * MiB, false },
		{ "block_size=64M,log_size=4M", "3G", 3 * GiB, 64 * MiB, false },
		{ "block_size=256M", "10G", 10 * GiB, 256 * MiB, false },
		{ "block_state_zero=off", "33M", 33 * MiB, 0, false },
	};
	const char *path = test_path("qemu.vhdx");
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		unlink(path);
		assert_int_equal(test_run(NULL, 0, "qemu-img create -q -f vhdx %s%s '%s' %s",
					  cases[i].opts[0] ? "-o " : "", cases[i].opts, path,
					  cases[i].size),
				 0);
		uint64_t qsize;
		char fmt[32];
		qemu_info(path, &qsize, fmt, sizeof(fmt));
		assert_string_equal(fmt, "vhdx");
		struct image im;
		load_ok(&im, path);
		assert_int_equal(im.v.virtual_size, cases[i].bytes);
		assert_int_equal(im.v.virtual_size, qsize);
		assert_non_null(strstr(im.v.creator, "QEMU"));
		if (cases[i].block)
			assert_int_equal(im.v.block_size, cases[i].block);
		assert_int_equal(im.v.leave_blocks_allocated, cases[i].fixed);
		assert_false(im.v.has_parent);
		assert_int_equal(im.v.logical_sector_size, 512);
		assert_int_equal(im.v.chunk_ratio, (1ull << 23) * 512 / im.v.block_size);
		assert_int_equal(im.v.data_blocks,
				 (cases[i].bytes + im.v.block_size - 1) / im.v.block_size);
		if (strstr(cases[i].opts, "log_size=4M"))
			assert_int_equal(im.v.header.log_length, 4 * MiB);
		if (strstr(cases[i].opts, "block_state_zero=off") && cases[i].fixed) {
			for (uint64_t b = 0; b < im.v.data_blocks; b++)
				assert_int_equal(
					vhdx_bat_state(im.v.bat[vhdx_payload_index(&im.v, b)]),
					VHDX_BLOCK_FULLY_PRESENT);
		}
		image_close(&im);
		expect_clean(path);
	}
}

/* ---- creation ---- */

static void test_create_dynamic(void **state)
{
	(void)state;
	const char *path = test_path("dyn.vhdx");
	create_image(path, NULL, 10 * GiB, 0, NULL);
	assert_int_equal(file_size(path), 4 * MiB); /* header section, log, metadata, BAT */

	uint8_t id[24];
	test_file_read(path, id, sizeof(id), 0);
	assert_memory_equal(id, "vhdxfile", 8);
	assert_memory_equal(id + 8, "h\0v\0s\0t\0a\0c\0k\0\0", 16);

	struct image im;
	load_ok(&im, path);
	assert_string_equal(im.v.creator, "hvstack");
	assert_int_equal(im.v.virtual_size, 10 * GiB);
	assert_int_equal(im.v.block_size, 32 * MiB);
	assert_false(im.v.leave_blocks_allocated);
	assert_int_equal(im.v.logical_sector_size, 512);
	assert_int_equal(im.v.physical_sector_size, 4096);
	assert_int_equal(im.v.header.log_offset, LOG_AT);
	assert_int_equal(im.v.header.log_length, 1 * MiB);
	assert_true(guid_is_zero(&im.v.header.log_guid));
	assert_false(guid_is_zero(&im.v.header.file_write_guid));
	assert_false(guid_is_zero(&im.v.header.data_write_guid));
	assert_false(guid_is_zero(&im.v.page83));
	assert_int_equal(im.v.metadata_offset, METADATA_AT);
	assert_int_equal(im.v.bat_offset, BAT_AT);
	assert_int_equal(im.v.bat_length, 1 * MiB);
	assert_int_equal(im.v.chunk_ratio, 128);
	assert_int_equal(im.v.data_blocks, 320);
	assert_int_equal(im.v.bat_entries, 320 + 319 / 128);
	for (uint64_t i = 0; i < im.v.bat_entries; i++)
		assert_int_equal(im.v.bat[i], 0);
	image_close(&im);
	expect_clean(path);

	/* both headers valid, header 2 current */
	struct vhdx_header a, b;
	assert_true(header_get(path, 0, &a));
	assert_true(header_get(path, 1, &b));
	assert_true(b.sequence > a.sequence);

	if (have_tool("qemu-img")) {
		uint64_t size;
		char fmt[32];
		qemu_info(path, &size, fmt, sizeof(fmt));
		assert_string_equal(fmt, "vhdx");
		assert_int_equal(size, 10 * GiB);
		qemu_check_ok(path);
		/* reads as zeros: the same as a raw file of zeros */
		const char *raw = test_path("dyn.raw");
		unlink(raw);
		create_image(path, NULL, 40 * MiB, 1 * MiB, NULL);
		assert_int_equal(test_run(NULL, 0, "truncate -s 40M '%s'", raw), 0);
		assert_int_equal(test_run(NULL, 0, "qemu-img compare -q -f vhdx -F raw '%s' '%s'",
					  path, raw),
				 0);
	}
	if (have_tool("vhdiinfo")) {
		create_image(path, NULL, 10 * GiB, 0, NULL);
		char type[64];
		vhdi_field(path, "Disk type", type, sizeof(type));
		assert_string_equal(type, "Dynamic");
		assert_int_equal(vhdi_media_size(path), 10 * GiB);
	}
}

static void test_create_fixed(void **state)
{
	(void)state;
	const char *path = test_path("fixed.vhdx");
	create_image(path, "fixed", 70 * MiB, 8 * MiB, NULL); /* 9 blocks, the last partly used */
	uint64_t data = 4 * MiB;
	assert_int_equal(file_size(path), data + 9 * 8 * MiB);
	struct stat st;
	assert_int_equal(stat(path, &st), 0);
	assert_true((uint64_t)st.st_blocks * 512 >= 9 * 8 * MiB); /* allocated, not sparse */

	struct image im;
	load_ok(&im, path);
	assert_true(im.v.leave_blocks_allocated);
	assert_int_equal(im.v.virtual_size, 70 * MiB);
	assert_int_equal(im.v.block_size, 8 * MiB);
	for (uint64_t b = 0; b < 9; b++) {
		uint64_t e = im.v.bat[vhdx_payload_index(&im.v, b)];
		assert_int_equal(vhdx_bat_state(e), VHDX_BLOCK_FULLY_PRESENT);
		assert_int_equal(vhdx_bat_offset(e), data + b * 8 * MiB);
	}
	image_close(&im);
	expect_clean(path);

	/* more than one chunk: sector bitmap entries between them stay empty */
	create_image(path, "fixed", 130 * MiB, 1 * MiB, NULL);
	load_ok(&im, path);
	assert_int_equal(im.v.chunk_ratio, 4096);
	assert_int_equal(im.v.bat_entries, 130);
	image_close(&im);
	expect_clean(path);

	if (have_tool("qemu-img")) {
		create_image(path, "fixed", 70 * MiB, 8 * MiB, NULL);
		uint64_t size;
		char fmt[32];
		qemu_info(path, &size, fmt, sizeof(fmt));
		assert_string_equal(fmt, "vhdx");
		assert_int_equal(size, 70 * MiB);
		qemu_check_ok(path);
		const char *raw = test_path("fixed.raw");
		unlink(raw);
		assert_int_equal(test_run(NULL, 0, "truncate -s 70M '%s'", raw), 0);
		assert_int_equal(test_run(NULL, 0, "qemu-img compare -q -f vhdx -F raw '%s' '%s'",
					  path, raw),
				 0);
	}
	if (have_tool("vhdiinfo")) {
		char type[64];
		vhdi_field(path, "Disk type", type, sizeof(type));
		assert_string_equal(type, "Fixed");
		assert_int_equal(vhdi_media_size(path), 70 * MiB);
	}
}

static json_t *json_path(json_t *j, const char *a, const char *b)
{
	json_t *o = json_object_get(j, a);
	return b ? json_object_get(o, b) : o;
}

static void test_create_differencing(void **state)
{
	(void)state;
	const char *parent = test_path("base.vhdx"), *child = test_path("child.vhdx");
	create_image(parent, NULL, 1 * GiB, 0, NULL);
	create_image(child, NULL, 0, 0, parent); /* type and size from the parent */

	struct image pim, im;
	load_ok(&pim, parent);
	load_ok(&im, child);
	assert_true(im.v.has_parent);
	assert_false(im.v.leave_blocks_allocated);
	assert_int_equal(im.v.virtual_size, 1 * GiB);
	assert_int_equal(im.v.block_size, 2 * MiB);
	assert_int_equal(im.v.chunk_ratio, 2048);
	assert_int_equal(im.v.data_blocks, 512);
	assert_int_equal(im.v.bitmap_blocks, 1);
	assert_int_equal(im.v.bat_entries, 2049);
	/* parent_linkage is the parent's DataWriteGuid, "{guid}" in lower case */
	char want[GUID_STR_LEN + 3];
	want[0] = '{';
	guid_format(&pim.v.header.data_write_guid, want + 1);
	strcat(want, "}");
	assert_string_equal(im.v.locator.parent_linkage, want);
	assert_string_equal(im.v.locator.relative_path, ".\\base.vhdx");
	char *abs = realpath(parent, NULL);
	assert_string_equal(im.v.locator.absolute_win32_path, abs);
	assert_string_equal(im.v.parent_path, test_path("base.vhdx"));
	assert_null(im.v.locator.volume_path);
	image_close(&im);
	image_close(&pim);
	expect_clean(child);

	/* a parent in another directory: "..\" */
	char dir[512];
	snprintf(dir, sizeof(dir), "%s", test_path("sub"));
	assert_int_equal(mkdir(dir, 0755), 0);
	char deep[600];
	snprintf(deep, sizeof(deep), "%s/deep.vhdx", dir);
	create_image(deep, "differencing", 1 * GiB, 4 * MiB, parent);
	load_ok(&im, deep);
	assert_string_equal(im.v.locator.relative_path, "..\\base.vhdx");
	assert_non_null(strstr(im.v.parent_path, "/sub/../base.vhdx"));
	assert_int_equal(im.v.block_size, 4 * MiB);
	image_close(&im);
	free(abs);

	if (have_tool("vhdiinfo")) {
		char v[256];
		vhdi_field(child, "Disk type", v, sizeof(v));
		assert_string_equal(v, "Differential");
		assert_int_equal(vhdi_media_size(child), 1 * GiB);
		vhdi_field(child, "Parent filename", v, sizeof(v));
		assert_non_null(strstr(v, "/base.vhdx")); /* absolute_win32_path */
		/* libvhdi reads "{guid}" in lower case only (upper case gives zeros) */
		vhdi_field(child, "Parent identifier", v, sizeof(v));
		assert_int_equal(strncmp(v, want + 1, GUID_STR_LEN), 0);
	}
	if (have_tool("qemu-img")) {
		/* QEMU does not read differencing VHDX; it must say so, not misread it */
		char out[4096];
		assert_true(test_run(out, sizeof(out), "qemu-img info '%s'", child) != 0);
	}
}

static void test_create_refusals(void **state)
{
	(void)state;
	const char *path = test_path("refused.vhdx"), *parent = test_path("rparent.vhdx");
	struct vdisk_create_options o = { .format = "vhdx", .size = 1 * GiB };
	char err[512];

	unlink(path);
	o.type = "sparse";
	assert_int_equal(vhdx_create(path, &o, err, sizeof(err)), -EINVAL);
	assert_non_null(strstr(err, "no type 'sparse'"));
	o.type = NULL;
	static const uint32_t bad_blocks[] = { 512 * KiB, 3 * MiB, 512 * MiB, 0x80000000u };
	for (size_t i = 0; i < sizeof(bad_blocks) / sizeof(bad_blocks[0]); i++) {
		o.block_size = bad_blocks[i];
		assert_int_equal(vhdx_create(path, &o, err, sizeof(err)), -EINVAL);
		assert_non_null(strstr(err, "block size"));
	}
	o.block_size = 0;
	o.size = 0;
	assert_int_equal(vhdx_create(path, &o, err, sizeof(err)), -EINVAL);
	o.size = 1 * GiB + 100;
	assert_int_equal(vhdx_create(path, &o, err, sizeof(err)), -EINVAL);
	assert_non_null(strstr(err, "multiple of the logical sector size (512"));
	o.size = 64 * TiB + 512;
	assert_int_equal(vhdx_create(path, &o, err, sizeof(err)), -EFBIG);
	assert_non_null(strstr(err, "64 TiB"));
	o.size = 1 * GiB;
	o.type = "fixed";
	o.sparse = true;
	assert_int_equal(vhdx_create(path, &o, err, sizeof(err)), -EINVAL);
	assert_non_null(strstr(err, "sparse"));
	o.sparse = false;
	o.type = "differencing";
	assert_int_equal(vhdx_create(path, &o, err, sizeof(err)), -EINVAL);
	assert_non_null(strstr(err, "needs a parent"));
	o.type = "dynamic";
	o.parent = parent;
	assert_int_equal(vhdx_create(path, &o, err, sizeof(err)), -EINVAL);
	assert_non_null(strstr(err, "only differencing"));
	assert_int_equal(access(path, F_OK), -1); /* nothing left behind */

	/* parents: missing, not VHDX, another size, itself */
	o.type = NULL;
	unlink(parent);
	assert_int_equal(vhdx_create(path, &o, err, sizeof(err)), -ENOENT);
	assert_non_null(strstr(err, "cannot open the parent"));
	test_write_file(parent, 1 * MiB, 1);
	assert_int_equal(vhdx_create(path, &o, err, sizeof(err)), -EINVAL);
	assert_non_null(strstr(err, "raw image"));
	create_image(parent, NULL, 8 * MiB, 0, NULL);
	o.size = 16 * MiB;
	assert_int_equal(vhdx_create(path, &o, err, sizeof(err)), -EINVAL);
	assert_non_null(strstr(err, "its parent's size (8388608"));
	o.size = 0;
	o.parent = path;
	create_image(path, NULL, 8 * MiB, 0, NULL);
	o.overwrite = true;
	assert_int_equal(vhdx_create(path, &o, err, sizeof(err)), -EINVAL);
	assert_non_null(strstr(err, "its own parent"));
	/* a parent whose path is not UTF-8 cannot be named in a locator */
	char bad[600];
	snprintf(bad, sizeof(bad), "%s", test_path("bad\xff.vhdx"));
	create_image(bad, NULL, 8 * MiB, 0, NULL);
	o.parent = bad;
	unlink(path);
	assert_int_equal(vhdx_create(path, &o, err, sizeof(err)), -EILSEQ);
	assert_non_null(strstr(err, "not valid UTF-8"));
	assert_int_equal(access(path, F_OK), -1);
	unlink(bad);
	o.overwrite = false;
	o.parent = NULL;
	create_image(path, NULL, 8 * MiB, 0, NULL);

	/* an existing file stays as it was */
	o.size = 1 * GiB;
	uint64_t before = file_size(path);
	assert_int_equal(vhdx_create(path, &o, err, sizeof(err)), -EEXIST);
	assert_non_null(strstr(err, "exists"));
	assert_int_equal(file_size(path), before);
	o.overwrite = true;
	assert_int_equal(vhdx_create(path, &o, err, sizeof(err)), 0);

	/* the largest size: a 17 MiB BAT region */
	o.size = 64 * TiB;
	assert_int_equal(vhdx_create(path, &o, err, sizeof(err)), 0);
	struct image im;
	load_ok(&im, path);
	assert_int_equal(im.v.virtual_size, 64 * TiB);
	assert_int_equal(im.v.bat_entries, 2097152 + 2097151 / 128);
	assert_int_equal(im.v.bat_length, 17 * MiB);
	image_close(&im);
	unlink(path);
}

/* qemu-io writes into our images; they load, check clean, and compare equal to a raw file
 * with the same writes. */
static void test_qemu_writes_into_ours(void **state)
{
	(void)state;
	NEED_TOOL("qemu-io");
	const char *path = test_path("qw.vhdx"), *raw = test_path("qw.raw");
	static const char *const writes[] = { "write -P 0x11 0 1M", "write -P 0x22 5M 3M",
					      "write -P 0x33 63M 1M", "write -z 8M 2M" };
	for (int fixed = 0; fixed < 2; fixed++) {
		create_image(path, fixed ? "fixed" : NULL, 64 * MiB, 2 * MiB, NULL);
		unlink(raw);
		assert_int_equal(test_run(NULL, 0, "truncate -s 64M '%s'", raw), 0);
		for (size_t i = 0; i < sizeof(writes) / sizeof(writes[0]); i++) {
			assert_int_equal(
				test_run(NULL, 0, "qemu-io -f vhdx -c '%s' '%s'", writes[i], path),
				0);
			assert_int_equal(
				test_run(NULL, 0, "qemu-io -f raw -c '%s' '%s'", writes[i], raw),
				0);
		}
		struct image im;
		load_ok(&im, path);
		uint64_t present = 0;
		for (uint64_t b = 0; b < im.v.data_blocks; b++)
			present += vhdx_bat_state(im.v.bat[vhdx_payload_index(&im.v, b)]) ==
				   VHDX_BLOCK_FULLY_PRESENT;
		/* blocks 0, 2, 3, 31 (and 4: QEMU writes zeros as data) */
		assert_true(fixed ? present == 32 : present >= 4);
		image_close(&im);
		expect_clean(path);
		assert_int_equal(test_run(NULL, 0, "qemu-img compare -q -f vhdx -F raw '%s' '%s'",
					  path, raw),
				 0);
		qemu_check_ok(path);
	}
}

/* ---- loading damaged images ---- */

static void test_load_headers(void **state)
{
	(void)state;
	const char *path = test_path("heads.vhdx"), *pristine = test_path("heads.orig");
	create_image(path, NULL, 64 * MiB, 0, NULL);
	copy_file(path, pristine);
	struct vhdx_header h1, h2;
	assert_true(header_get(path, 0, &h1));
	assert_true(header_get(path, 1, &h2));
	struct image im;

	/* header 2 (current) damaged: header 1 is used */
	corrupt_byte(path, header_at[1] + 100);
	load_ok(&im, path);
	assert_int_equal(im.v.current_header, 0);
	assert_int_equal(im.v.header.sequence, h1.sequence);
	image_close(&im);
	/* header 1 damaged instead */
	copy_file(pristine, path);
	corrupt_byte(path, header_at[0] + 8);
	load_ok(&im, path);
	assert_int_equal(im.v.current_header, 1);
	image_close(&im);
	/* both */
	corrupt_byte(path, header_at[1] + 4000);
	load_fails(path, -EINVAL, "neither VHDX header is valid");
	load_fails(path, -EINVAL, "header 2 at 128 KiB: checksum mismatch");

	/* the higher sequence number wins, whichever copy */
	copy_file(pristine, path);
	h1.sequence = h2.sequence + 5;
	h1.log_offset = 1 * MiB;
	header_put(path, 0, &h1);
	load_ok(&im, path);
	assert_int_equal(im.v.current_header, 0);
	image_close(&im);
	/* equal sequence numbers: identical headers are fine (Disk2VHD), different ones not */
	h2.sequence = h1.sequence;
	h2.file_write_guid.bytes[0] ^= 1;
	header_put(path, 1, &h2);
	load_fails(path, -EINVAL, "both headers have sequence number");
	header_put(path, 1, &h1);
	load_ok(&im, path);
	assert_int_equal(im.v.current_header, 0);
	image_close(&im);

	/* a sequence number at its maximum loads, and the next update wraps safely */
	copy_file(pristine, path);
	h2.sequence = UINT64_MAX;
	header_put(path, 1, &h2);
	load_ok(&im, path);
	assert_int_equal(im.v.header.sequence, UINT64_MAX);
	image_close(&im);
	assert_int_equal(image_load(&im, path, true, false), 0);
	struct guid g;
	assert_int_equal(guid_generate(&g), 0);
	assert_int_equal(vhdx_header_update(&im.disk, &im.v, NULL, &g, NULL), 0);
	assert_true(im.v.header.sequence < 10);
	image_close(&im);
	struct vhdx_header a, b;
	assert_true(header_get(path, 0, &a));
	assert_true(header_get(path, 1, &b));
	assert_true(guid_equal(&a.data_write_guid, &g));
	assert_true(guid_equal(&b.data_write_guid, &g));
	assert_int_equal(a.sequence > b.sequence ? a.sequence : b.sequence, 4);
	load_ok(&im, path);
	assert_true(guid_equal(&im.v.header.data_write_guid, &g));
	image_close(&im);
	/* one less than the maximum: same */
	copy_file(pristine, path);
	h2.sequence = UINT64_MAX - 1;
	header_put(path, 1, &h2);
	assert_int_equal(image_load(&im, path, true, false), 0);
	assert_int_equal(vhdx_header_update(&im.disk, &im.v, NULL, NULL, NULL), 0);
	assert_true(im.v.header.sequence < 10);
	image_close(&im);
	expect_clean(path);

	/* not a VHDX, too small */
	copy_file(pristine, path);
	test_file_write(path, "vhdxfilf", 8, 0);
	load_fails(path, -EINVAL, "vhdxfile");
	copy_file(pristine, path);
	file_truncate(path, 1 * MiB - 1);
	load_fails(path, -EINVAL, "too small");
	file_truncate(path, 0);
	load_fails(path, -EINVAL, "too small");
}

static void test_header_update(void **state)
{
	(void)state;
	const char *path = test_path("update.vhdx");
	create_image(path, NULL, 64 * MiB, 0, NULL);
	struct image im;
	struct vhdx_header a, b, before;
	struct guid fw, dw, lg;
	assert_int_equal(guid_generate(&fw), 0);
	assert_int_equal(guid_generate(&dw), 0);
	assert_int_equal(guid_generate(&lg), 0);

	load_ok(&im, path);
	assert_int_equal(vhdx_header_update(&im.disk, &im.v, &fw, NULL, NULL), -EROFS);
	image_close(&im);

	assert_int_equal(image_load(&im, path, true, false), 0);
	before = im.v.header;
	int current = im.v.current_header;
	assert_int_equal(vhdx_header_update(&im.disk, &im.v, &fw, NULL, NULL), 0);
	/* two writes: the other copy first, then this one; this one is current again */
	assert_int_equal(im.v.header.sequence, before.sequence + 2);
	assert_int_equal(im.v.current_header, current);
	assert_true(guid_equal(&im.v.header.file_write_guid, &fw));
	assert_true(guid_equal(&im.v.header.data_write_guid, &before.data_write_guid));
	assert_true(guid_is_zero(&im.v.header.log_guid));
	assert_int_equal(vhdx_header_update(&im.disk, &im.v, NULL, &dw, &lg), 0);
	image_close(&im);
	assert_true(header_get(path, 0, &a));
	assert_true(header_get(path, 1, &b));
	assert_int_equal(a.sequence + b.sequence, 2 * before.sequence + 7);
	for (int i = 0; i < 2; i++) {
		const struct vhdx_header *h = i ? &b : &a;
		assert_true(guid_equal(&h->file_write_guid, &fw));
		assert_true(guid_equal(&h->data_write_guid, &dw));
		assert_true(guid_equal(&h->log_guid, &lg));
		assert_int_equal(h->log_offset, before.log_offset);
		assert_int_equal(h->log_length, before.log_length);
	}
}

struct rt_edit {
	int entry;
	int field; /* VHDX_RE_* */
	uint64_t value;
	int count; /* new entry count, or -1 */
	const struct guid *guid;
};

static void rt_apply(uint8_t *raw, void *arg)
{
	const struct rt_edit *e = arg;
	uint8_t *ent = raw + VHDX_RT_ENTRIES + e->entry * VHDX_RE_SIZE;
	if (e->count >= 0)
		store_le32(raw + VHDX_RT_ENTRY_COUNT, (uint32_t)e->count);
	if (e->guid)
		memcpy(ent, e->guid->bytes, 16);
	if (e->field == VHDX_RE_FILE_OFFSET)
		store_le64(ent + e->field, e->value);
	else if (e->field)
		store_le32(ent + e->field, (uint32_t)e->value);
}

static void test_load_region_tables(void **state)
{
	(void)state;
	const char *path = test_path("regions.vhdx"), *pristine = test_path("regions.orig");
	create_image(path, NULL, 64 * MiB, 0, NULL);
	copy_file(path, pristine);
	struct image im;

	/* one copy damaged: the other is used */
	corrupt_byte(path, table_at[0] + 20);
	load_ok(&im, path);
	assert_int_equal(im.v.region_table, 1);
	assert_int_equal(im.v.bat_offset, BAT_AT);
	image_close(&im);
	copy_file(pristine, path);
	corrupt_byte(path, table_at[1] + 60000);
	load_ok(&im, path);
	assert_int_equal(im.v.region_table, 0);
	image_close(&im);
	corrupt_byte(path, table_at[0]);
	load_fails(path, -EINVAL, "neither region table is valid");

	/* an unknown region: refused when required, ignored otherwise */
	struct guid other;
	assert_int_equal(guid_parse("01234567-89ab-cdef-0123-456789abcdef", &other), 0);
	copy_file(pristine, path);
	struct rt_edit e = { .entry = 2, .count = 3, .guid = &other };
	tables_change(path, rt_apply, &e);
	e = (struct rt_edit){
		.entry = 2, .field = VHDX_RE_FILE_OFFSET, .value = 4 * MiB, .count = -1
	};
	tables_change(path, rt_apply, &e);
	e = (struct rt_edit){ .entry = 2, .field = VHDX_RE_LENGTH, .value = 1 * MiB, .count = -1 };
	tables_change(path, rt_apply, &e);
	file_truncate(path, 5 * MiB);
	load_ok(&im, path);
	assert_int_equal(im.v.nregions, 3);
	image_close(&im);
	e = (struct rt_edit){ .entry = 2, .field = VHDX_RE_FLAGS, .value = 1, .count = -1 };
	tables_change(path, rt_apply, &e);
	load_fails(path, -ENOTSUP, "required region 01234567-89ab-cdef-0123-456789abcdef");
	/* ...overlapping the BAT */
	e = (struct rt_edit){ .entry = 2, .field = VHDX_RE_FLAGS, .value = 0, .count = -1 };
	tables_change(path, rt_apply, &e);
	e = (struct rt_edit){
		.entry = 2, .field = VHDX_RE_FILE_OFFSET, .value = 3 * MiB, .count = -1
	};
	tables_change(path, rt_apply, &e);
	load_fails(path, -EINVAL, "overlap");

	/* bad entries */
	copy_file(pristine, path);
	e = (struct rt_edit){ .count = 2048 };
	tables_change(path, rt_apply, &e);
	load_fails(path, -EINVAL, "2048 entries");
	copy_file(pristine, path);
	e = (struct rt_edit){
		.entry = 0, .field = VHDX_RE_FILE_OFFSET, .value = 3 * MiB + 4096, .count = -1
	};
	tables_change(path, rt_apply, &e);
	load_fails(path, -EINVAL, "not in whole MiB");
	copy_file(pristine, path);
	e = (struct rt_edit){ .entry = 0, .field = VHDX_RE_FILE_OFFSET, .value = 0, .count = -1 };
	tables_change(path, rt_apply, &e);
	load_fails(path, -EINVAL, "header section");
	copy_file(pristine, path);
	e = (struct rt_edit){ .entry = 1, .guid = &VHDX_REGION_BAT, .count = -1 };
	tables_change(path, rt_apply, &e);
	load_fails(path, -EINVAL, "the BAT region is listed twice");
	copy_file(pristine, path);
	e = (struct rt_edit){ .count = 1 };
	tables_change(path, rt_apply, &e);
	load_fails(path, -EINVAL, "no metadata region");
	copy_file(pristine, path);
	e = (struct rt_edit){
		.entry = 1, .field = VHDX_RE_FILE_OFFSET, .value = 1 * MiB, .count = -1
	};
	tables_change(path, rt_apply, &e); /* the metadata region over the log */
	load_fails(path, -EINVAL, "overlaps the log");
	copy_file(pristine, path);
	e = (struct rt_edit){
		.entry = 0, .field = VHDX_RE_FILE_OFFSET, .value = UINT64_MAX - MiB + 1, .count = -1
	};
	tables_change(path, rt_apply, &e);
	load_fails(path, -EINVAL, "beyond any file");
	copy_file(pristine, path);
	e = (struct rt_edit){
		.entry = 0, .field = VHDX_RE_FILE_OFFSET, .value = 1ull << 50, .count = -1
	};
	tables_change(path, rt_apply, &e);
	load_fails(path, -EINVAL,
		   "the BAT region (1048576 bytes at byte 1125899906842624) "
		   "extends past the end of the file");
	/* a truncated file */
	copy_file(pristine, path);
	file_truncate(path, 3 * MiB + 4096);
	load_fails(path, -EINVAL, "truncated");
}

static void test_load_metadata(void **state)
{
	(void)state;
	const char *path = test_path("meta.vhdx"), *pristine = test_path("meta.orig");
	create_image(path, NULL, 64 * MiB, 0, NULL);
	copy_file(path, pristine);
	uint8_t table[64 * KiB];

	/* item values */
	item_write32(path, &VHDX_ITEM_FILE_PARAMETERS, 0, 3 * MiB);
	load_fails(path, -EINVAL, "block size 3145728 is not a power of two");
	item_write32(path, &VHDX_ITEM_FILE_PARAMETERS, 0, 512 * KiB);
	load_fails(path, -EINVAL, "block size 524288");
	item_write32(path, &VHDX_ITEM_FILE_PARAMETERS, 0, 512 * MiB);
	load_fails(path, -EINVAL, "block size");
	copy_file(pristine, path);
	item_write64(path, &VHDX_ITEM_VIRTUAL_DISK_SIZE, UINT64_MAX);
	load_fails(path, -EINVAL, "not between 1 byte and 64 TiB");
	item_write64(path, &VHDX_ITEM_VIRTUAL_DISK_SIZE, 64 * TiB + 512);
	load_fails(path, -EINVAL, "64 TiB");
	item_write64(path, &VHDX_ITEM_VIRTUAL_DISK_SIZE, 0);
	load_fails(path, -EINVAL, "virtual size 0");
	item_write64(path, &VHDX_ITEM_VIRTUAL_DISK_SIZE, 64 * MiB + 100);
	load_fails(path, -EINVAL, "not a multiple of the logical sector size");
	/* a size that needs a bigger BAT than the region holds */
	item_write64(path, &VHDX_ITEM_VIRTUAL_DISK_SIZE, 64 * TiB);
	load_fails(path, -EINVAL, "the BAT region (1048576 bytes) is too small");
	copy_file(pristine, path);
	item_write32(path, &VHDX_ITEM_LOGICAL_SECTOR_SIZE, 0, 1024);
	load_fails(path, -EINVAL, "logical sector size 1024");
	copy_file(pristine, path);
	item_write32(path, &VHDX_ITEM_PHYSICAL_SECTOR_SIZE, 0, 0);
	load_fails(path, -EINVAL, "physical sector size 0");
	copy_file(pristine, path);
	item_write32(path, &VHDX_ITEM_FILE_PARAMETERS, 4, VHDX_FP_HAS_PARENT);
	load_fails(path, -EINVAL, "no Parent Locator item");

	/* 4 KiB logical sectors: another chunk ratio */
	copy_file(pristine, path);
	item_write32(path, &VHDX_ITEM_LOGICAL_SECTOR_SIZE, 0, 4096);
	struct image im;
	load_ok(&im, path);
	assert_int_equal(im.v.chunk_ratio, (1ull << 23) * 4096 / (32 * MiB));
	image_close(&im);

	/* the table */
	copy_file(pristine, path);
	test_file_read(path, table, sizeof(table), METADATA_AT);
	uint8_t *fp = meta_entry(table, &VHDX_ITEM_FILE_PARAMETERS);
	struct guid unknown;
	assert_int_equal(guid_parse("{aaaaaaaa-bbbb-cccc-dddd-eeeeeeeeeeee}", &unknown), 0);
	memcpy(fp, unknown.bytes, 16); /* an unknown item, not required... */
	store_le32(fp + VHDX_ME_FLAGS, 0);
	test_file_write(path, table, sizeof(table), METADATA_AT);
	load_fails(path, -EINVAL, "no File Parameters item");
	store_le32(fp + VHDX_ME_FLAGS, VHDX_ME_IS_REQUIRED); /* ...required */
	test_file_write(path, table, sizeof(table), METADATA_AT);
	load_fails(path, -ENOTSUP, "required metadata item aaaaaaaa-bbbb-cccc-dddd-eeeeeeeeeeee");
	store_le32(fp + VHDX_ME_FLAGS, VHDX_ME_IS_REQUIRED | VHDX_ME_IS_USER);
	test_file_write(path, table, sizeof(table), METADATA_AT);
	load_fails(path, -ENOTSUP, "required user item");

	copy_file(pristine, path);
	test_file_read(path, table, sizeof(table), METADATA_AT);
	fp = meta_entry(table, &VHDX_ITEM_FILE_PARAMETERS);
	store_le32(fp + VHDX_ME_LENGTH, 4);
	test_file_write(path, table, sizeof(table), METADATA_AT);
	load_fails(path, -EINVAL, "the File Parameters item is 4 bytes; 8 are needed");
	store_le32(fp + VHDX_ME_LENGTH, 2 * MiB);
	test_file_write(path, table, sizeof(table), METADATA_AT);
	load_fails(path, -EINVAL, "at most 1 MiB");
	store_le32(fp + VHDX_ME_LENGTH, 8);
	store_le32(fp + VHDX_ME_OFFSET, 1 * MiB - 4);
	test_file_write(path, table, sizeof(table), METADATA_AT);
	load_fails(path, -EINVAL, "extends past the metadata region");
	store_le32(fp + VHDX_ME_OFFSET, 100);
	test_file_write(path, table, sizeof(table), METADATA_AT);
	load_fails(path, -EINVAL, "overlaps the metadata table");
	store_le32(fp + VHDX_ME_OFFSET, 64 * KiB + 4); /* over the virtual size */
	test_file_write(path, table, sizeof(table), METADATA_AT);
	load_fails(path, -EINVAL, "overlap");
	store_le32(fp + VHDX_ME_OFFSET, 64 * KiB);
	memcpy(fp, VHDX_ITEM_VIRTUAL_DISK_SIZE.bytes, 16);
	test_file_write(path, table, sizeof(table), METADATA_AT);
	load_fails(path, -EINVAL, "listed twice");
	copy_file(pristine, path);
	test_file_read(path, table, sizeof(table), METADATA_AT);
	store_le16(table + VHDX_MT_ENTRY_COUNT, 2048);
	test_file_write(path, table, sizeof(table), METADATA_AT);
	load_fails(path, -EINVAL, "2048 entries");
	memcpy(table, "metadatX", 8);
	test_file_write(path, table, sizeof(table), METADATA_AT);
	load_fails(path, -EINVAL, "no metadata table signature");
}

static void test_load_bad_bat(void **state)
{
	(void)state;
	const char *path = test_path("badbat.vhdx"), *pristine = test_path("badbat.orig");
	create_image(path, NULL, 64 * MiB, 1 * MiB, NULL); /* 64 one-MiB blocks */
	uint64_t b3 = append_block(path, 3, 1 * MiB, VHDX_BLOCK_FULLY_PRESENT, 1);
	append_block(path, 4, 1 * MiB, VHDX_BLOCK_FULLY_PRESENT, 2);
	copy_file(path, pristine);
	struct image im;
	load_ok(&im, path);
	assert_int_equal(vhdx_bat_offset(im.v.bat[3]), b3);
	image_close(&im);
	expect_clean(path);

	set_bat(path, 7, vhdx_bat_entry(VHDX_BLOCK_FULLY_PRESENT, 0));
	load_fails(path, -EINVAL,
		   "BAT entry 7 (payload block 7) is present but has no file offset");
	set_bat(path, 7, vhdx_bat_entry(VHDX_BLOCK_FULLY_PRESENT, 100 * MiB));
	load_fails(path, -EINVAL, "BAT entry 7 (payload block 7) points past the end of the file");
	set_bat(path, 7, vhdx_bat_entry(VHDX_BLOCK_FULLY_PRESENT, LOG_AT));
	load_fails(path, -EINVAL, "points into the log");
	set_bat(path, 7, vhdx_bat_entry(VHDX_BLOCK_FULLY_PRESENT, METADATA_AT));
	load_fails(path, -EINVAL, "points into the metadata region");
	set_bat(path, 7, vhdx_bat_entry(VHDX_BLOCK_FULLY_PRESENT, BAT_AT));
	load_fails(path, -EINVAL, "points into the BAT region");
	set_bat(path, 7, vhdx_bat_entry(VHDX_BLOCK_FULLY_PRESENT, b3));
	load_fails(path, -EINVAL,
		   "BAT entry 3 (payload block 3) and BAT entry 7 (payload block 7) "
		   "overlap");
	file_truncate(path, b3 + 3 * MiB); /* room for a third block */
	set_bat(path, 7, vhdx_bat_entry(VHDX_BLOCK_PARTIALLY_PRESENT, b3 + 2 * MiB));
	load_fails(path, -EINVAL, "partially present, which only differencing images may be");
	set_bat(path, 7, 4);
	load_fails(path, -EINVAL, "BAT entry 7 (payload block 7) has the invalid state 4");
	set_bat(path, 7, 5);
	load_fails(path, -EINVAL, "invalid state 5");

	/* absent blocks with an offset load (the state decides); check reports them */
	set_bat(path, 7, vhdx_bat_entry(VHDX_BLOCK_ZERO, b3));
	load_ok(&im, path);
	image_close(&im);
	set_bat(path, 7, vhdx_bat_entry(VHDX_BLOCK_NOT_PRESENT, 0));
	load_ok(&im, path);
	image_close(&im);

	/* the last block cut short */
	copy_file(pristine, path);
	file_truncate(path, file_size(path) - 4096);
	load_fails(path, -EINVAL, "BAT entry 4 (payload block 4) points past the end of the file");

	/* opened for repair, bad entries are masked in memory and counted */
	copy_file(pristine, path);
	set_bat(path, 9, vhdx_bat_entry(VHDX_BLOCK_FULLY_PRESENT, 1ull << 40));
	set_bat(path, 10, vhdx_bat_entry(VHDX_BLOCK_FULLY_PRESENT, b3));
	set_bat(path, 11, vhdx_bat_entry(VHDX_BLOCK_PARTIALLY_PRESENT, b3 + 2 * MiB));
	file_truncate(path, b3 + 3 * MiB);
	assert_int_equal(image_load(&im, path, false, true), 0);
	assert_int_equal(im.v.bad_bat_entries, 3);
	assert_int_equal(im.v.bat[9], 0);
	assert_int_equal(vhdx_bat_offset(im.v.bat[10]), b3); /* overlaps stay: check copies */
	assert_int_equal(vhdx_bat_state(im.v.bat[11]), VHDX_BLOCK_FULLY_PRESENT);
	image_close(&im);

	/* a sector bitmap entry (index 64 with 1 MiB blocks: chunk ratio 4096, so none here;
	 * use 32 MiB blocks and many chunks instead) */
	create_image(path, NULL, 10 * GiB, 0, NULL); /* chunk ratio 128 */
	set_bat(path, 128, 3);
	load_fails(path, -EINVAL,
		   "BAT entry 128 (sector bitmap of chunk 0) has the invalid state 3");
	set_bat(path, 128, vhdx_bat_entry(VHDX_BITMAP_PRESENT, 100 * MiB));
	load_fails(path, -EINVAL, "BAT entry 128 (sector bitmap of chunk 0) points past the end");
	append_block(path, 128, 1 * MiB, VHDX_BITMAP_PRESENT, 3);
	load_ok(&im, path); /* meaningless in a dynamic image, but well-formed */
	assert_int_equal(im.v.bat_entries, 322);
	image_close(&im);
}

/* Writes one log entry updating the 4 KiB page at page_off with page, and names the log in
 * the headers. */
static void write_dirty_log(const char *path, uint64_t page_off, const uint8_t *page)
{
	struct guid lg;
	struct vhdx_log_writer w;
	struct vhdx_log_update u = { .file_offset = page_off, .data = page };
	struct vhdx_log_piece pieces[2];
	unsigned np = 0;
	uint8_t *entry;
	uint32_t len;
	uint64_t size = file_size(path);
	assert_int_equal(guid_generate(&lg), 0);
	vhdx_log_writer_init(&w, LOG_AT, 1 * MiB, &lg, 1);
	assert_int_equal(vhdx_log_entry_build(&w, &u, 1, size, size, &entry, &len, pieces, &np), 0);
	for (unsigned i = 0; i < np; i++)
		test_file_write(path, entry + pieces[i].buf_offset, pieces[i].length,
			   pieces[i].file_offset);
	free(entry);
	headers_change(path, set_log_guid, &lg);
}

static void test_load_log(void **state)
{
	(void)state;
	const char *path = test_path("log.vhdx"), *pristine = test_path("log.orig");
	create_image(path, NULL, 64 * MiB, 1 * MiB, NULL);
	uint64_t b = append_block(path, 0, 1 * MiB, VHDX_BLOCK_FULLY_PRESENT, 5);
	copy_file(path, pristine);

	/* a BAT page whose entry 1 was logged but not written in place */
	uint8_t page[4096];
	test_file_read(path, page, sizeof(page), BAT_AT);
	store_le64(page + 8, vhdx_bat_entry(VHDX_BLOCK_FULLY_PRESENT, b));
	store_le64(page, 0);
	write_dirty_log(path, BAT_AT, page);
	copy_file(path, test_path("log.dirty"));

	/* read-only: refused, naming the command that replays it */
	load_fails(path, -EROFS, "the log holds changes that were not applied");
	load_fails(path, -EROFS, "vdisk check --repair");
	struct check_out c;
	run_check(path, false, &c); /* read-only for repair: loads, reports */
	assert_int_equal(c.res.errors, 1);
	assert_non_null(strstr(c.text, "the log needs replay: it holds 1 entry"));
	struct image im;
	assert_int_equal(image_load(&im, path, false, true), 0);
	assert_true(im.v.log_dirty);
	assert_int_equal(vhdx_bat_offset(im.v.bat[0]), b); /* not replayed */
	image_close(&im);

	/* read-write: replayed, the header's log GUID cleared on disk */
	struct vhdx_header before;
	assert_true(header_get(path, 1, &before));
	assert_int_equal(image_load(&im, path, true, false), 0);
	assert_true(im.v.replayed);
	assert_int_equal(im.v.replay.entries, 1);
	assert_int_equal(im.v.bat[0], 0);
	assert_int_equal(vhdx_bat_offset(im.v.bat[1]), b);
	assert_true(guid_is_zero(&im.v.header.log_guid));
	assert_false(guid_equal(&im.v.header.file_write_guid, &before.file_write_guid));
	image_close(&im);
	struct vhdx_header h0, h1;
	assert_true(header_get(path, 0, &h0));
	assert_true(header_get(path, 1, &h1));
	assert_true(guid_is_zero(&h0.log_guid));
	assert_true(guid_is_zero(&h1.log_guid));
	assert_int_equal(get_bat(path, 1), vhdx_bat_entry(VHDX_BLOCK_FULLY_PRESENT, b));
	expect_clean(path);

	/* repair: the open replays, check reports it fixed */
	copy_file(test_path("log.dirty"), path);
	run_check(path, true, &c);
	assert_int_equal(c.res.errors, 0);
	assert_int_equal(c.res.fixed, 1);
	assert_non_null(strstr(c.text, "replayed when the image was opened"));
	expect_clean(path);

	/* a log GUID with nothing in the log: cleared */
	copy_file(pristine, path);
	struct guid lg;
	assert_int_equal(guid_generate(&lg), 0);
	headers_change(path, set_log_guid, &lg);
	assert_int_equal(image_load(&im, path, true, false), 0);
	assert_true(im.v.replayed);
	assert_int_equal(im.v.replay.entries, 0);
	image_close(&im);
	expect_clean(path);

	/* a log longer than the file, or over the metadata */
	copy_file(pristine, path);
	struct vhdx_header h;
	assert_true(header_get(path, 1, &h));
	h.log_length = 1024 * MiB;
	h.sequence += 10;
	header_put(path, 1, &h);
	load_fails(path, -EINVAL,
		   "the log (1073741824 bytes at byte 1048576) extends past the end");
	h.log_length = 2 * MiB;
	header_put(path, 1, &h);
	load_fails(path, -EINVAL, "the metadata region overlaps the log");
	/* an unknown log version only matters for a log to replay */
	h.log_length = 1 * MiB;
	h.log_version = 3;
	header_put(path, 1, &h);
	load_ok(&im, path);
	image_close(&im);
	h.log_guid = lg;
	header_put(path, 1, &h);
	assert_int_equal(image_load(&im, path, true, false), -EINVAL);
	assert_non_null(strstr(im.err, "format version 3"));
}

/* ---- parent locators ---- */

/* Rewrites a differencing image's parent locator item with these key/value pairs. */
static void locator_rewrite(const char *path, const char *const kv[][2], unsigned n)
{
	uint8_t item[8192] = { 0 };
	memcpy(item, VHDX_LOCATOR_TYPE_VHDX.bytes, 16);
	store_le16(item + VHDX_PL_KEY_VALUE_COUNT, (uint16_t)n);
	size_t at = VHDX_PL_ENTRIES + n * VHDX_PLE_SIZE;
	for (unsigned i = 0; i < n; i++) {
		uint8_t *e = item + VHDX_PL_ENTRIES + i * VHDX_PLE_SIZE;
		ssize_t kl = utf8_to_utf16le(kv[i][0], item + at, sizeof(item) - at);
		assert_true(kl > 0);
		ssize_t vl = utf8_to_utf16le(kv[i][1], item + at + kl, sizeof(item) - at - kl);
		assert_true(vl >= 0);
		store_le32(e + VHDX_PLE_KEY_OFFSET, (uint32_t)at);
		store_le32(e + VHDX_PLE_VALUE_OFFSET, (uint32_t)(at + kl));
		store_le16(e + VHDX_PLE_KEY_LENGTH, (uint16_t)kl);
		store_le16(e + VHDX_PLE_VALUE_LENGTH, (uint16_t)vl);
		at += (size_t)(kl + vl);
	}
	uint8_t table[64 * KiB];
	test_file_read(path, table, sizeof(table), METADATA_AT);
	uint8_t *ent = meta_entry(table, &VHDX_ITEM_PARENT_LOCATOR);
	store_le32(ent + VHDX_ME_LENGTH, (uint32_t)at);
	test_file_write(path, table, sizeof(table), METADATA_AT);
	test_file_write(path, item, at, METADATA_AT + load_le32(ent + VHDX_ME_OFFSET));
}

static void test_parent_locator(void **state)
{
	(void)state;
	const char *parent = test_path("Parent Disk.vhdx"), *child = test_path("loc.vhdx");
	const char *pristine = test_path("loc.orig");
	create_image(parent, NULL, 16 * MiB, 0, NULL);
	create_image(child, NULL, 0, 0, parent);
	copy_file(child, pristine);
	char *abs = realpath(parent, NULL);
	struct image im;
	static const char linkage[] = "{01234567-89AB-CDEF-0123-456789ABCDEF}";

	/* Hyper-V forms: a Windows relative path, a Windows absolute path, a volume path */
	const char *hyperv[][2] = { { "parent_linkage", linkage },
				    { "relative_path", ".\\Parent Disk.vhdx" },
				    { "volume_path", "\\\\?\\Volume{1b2c3d4e-0000-0000-0000-"
						     "000000000000}\\VMs\\Parent Disk.vhdx" },
				    { "absolute_win32_path", "C:\\VMs\\Parent Disk.vhdx" } };
	locator_rewrite(child, hyperv, 4);
	load_ok(&im, child);
	assert_string_equal(im.v.locator.parent_linkage, linkage);
	assert_string_equal(im.v.locator.absolute_win32_path, "C:\\VMs\\Parent Disk.vhdx");
	assert_string_equal(im.v.parent_path, parent);
	image_close(&im);
	/* only the Windows absolute path: its file name next to the child */
	const char *win_only[][2] = { { "parent_linkage", linkage },
				      { "absolute_win32_path", "C:\\VMs\\Parent Disk.vhdx" } };
	locator_rewrite(child, win_only, 2);
	load_ok(&im, child);
	assert_non_null(strstr(im.v.parent_path, "/Parent Disk.vhdx"));
	image_close(&im);
	/* only a volume path: the path after the volume, from the root */
	char vol[1024];
	snprintf(vol, sizeof(vol), "\\\\?\\Volume{1b2c3d4e-0000-0000-0000-000000000000}%s", abs);
	for (char *p = vol + 48; *p; p++)
		if (*p == '/')
			*p = '\\';
	const char *vol_only[][2] = { { "parent_linkage", linkage }, { "volume_path", vol } };
	locator_rewrite(child, vol_only, 2);
	load_ok(&im, child);
	assert_string_equal(im.v.parent_path, abs);
	image_close(&im);
	/* relative paths going up: "..\\" */
	char up[1024];
	const char *dir = strrchr(abs, '/');
	const char *dirname_start = dir;
	while (dirname_start > abs && dirname_start[-1] != '/')
		dirname_start--;
	snprintf(up, sizeof(up), "..\\%.*s\\Parent Disk.vhdx", (int)(dir - dirname_start),
		 dirname_start);
	const char *rel_up[][2] = { { "parent_linkage", linkage }, { "relative_path", up } };
	locator_rewrite(child, rel_up, 2);
	load_ok(&im, child);
	assert_non_null(strstr(im.v.parent_path, "/../"));
	image_close(&im);

	/* missing keys, bad values */
	const char *no_linkage[][2] = { { "relative_path", ".\\Parent Disk.vhdx" } };
	locator_rewrite(child, no_linkage, 1);
	load_fails(child, -EINVAL, "no parent_linkage");
	const char *bad_linkage[][2] = { { "parent_linkage", "not a guid" } };
	locator_rewrite(child, bad_linkage, 1);
	load_fails(child, -EINVAL, "\"not a guid\" is not a GUID");
	const char *twice[][2] = { { "parent_linkage", linkage }, { "parent_linkage", linkage } };
	locator_rewrite(child, twice, 2);
	load_fails(child, -EINVAL, "parent_linkage twice");
	const char *no_path[][2] = { { "parent_linkage", linkage }, { "unknown_key", "x" } };
	locator_rewrite(child, no_path, 2);
	load_fails(child, -ENOENT, "names no path");

	/* entries pointing outside the item, huge counts, odd lengths */
	copy_file(pristine, child);
	uint64_t loc = item_at(child, &VHDX_ITEM_PARENT_LOCATOR);
	uint8_t e[12];
	test_file_read(child, e, sizeof(e), loc + VHDX_PL_ENTRIES);
	store_le16(e + VHDX_PLE_VALUE_LENGTH, 0xfffe);
	test_file_write(child, e, sizeof(e), loc + VHDX_PL_ENTRIES);
	load_fails(child, -EINVAL, "parent locator entry 0 points outside the locator");
	store_le16(e + VHDX_PLE_VALUE_LENGTH, 2);
	store_le32(e + VHDX_PLE_VALUE_OFFSET, 0xfffffff0u);
	test_file_write(child, e, sizeof(e), loc + VHDX_PL_ENTRIES);
	load_fails(child, -EINVAL, "points outside the locator");
	store_le32(e + VHDX_PLE_VALUE_OFFSET, 100);
	store_le16(e + VHDX_PLE_KEY_LENGTH, 0);
	test_file_write(child, e, sizeof(e), loc + VHDX_PL_ENTRIES);
	load_fails(child, -EINVAL, "empty key");
	store_le16(e + VHDX_PLE_KEY_LENGTH, 3);
	test_file_write(child, e, sizeof(e), loc + VHDX_PL_ENTRIES);
	load_fails(child, -EINVAL, "not UTF-16");
	copy_file(pristine, child);
	uint8_t count[2];
	store_le16(count, 0xffff);
	test_file_write(child, count, 2, loc + VHDX_PL_KEY_VALUE_COUNT);
	load_fails(child, -EINVAL, "claims 65535 entries");
	copy_file(pristine, child);
	test_file_write(child, "\x01", 1, loc);
	load_fails(child, -ENOTSUP, "the parent locator has type");

	/* the parent gone: -ENOENT with its name and the paths tried */
	copy_file(pristine, child);
	assert_int_equal(rename(parent, test_path("moved.vhdx")), 0);
	assert_int_equal(image_load(&im, child, false, false), -ENOENT);
	assert_non_null(strstr(im.err, "parent image \"Parent Disk.vhdx\" not found (tried "));
	assert_non_null(strstr(im.err, abs));
	assert_int_equal(rename(test_path("moved.vhdx"), parent), 0);
	/* never its own parent */
	const char *self[][2] = { { "parent_linkage", linkage },
				  { "relative_path", ".\\loc.vhdx" } };
	locator_rewrite(child, self, 2);
	load_fails(child, -ENOENT, "not found");
	free(abs);
}

/* Random damage to a differencing image's metadata must give errors or a repair, never a
 * crash (run under the sanitizer build; VHDX_FUZZ_ROUNDS=n for a longer run). */
static void test_load_random_damage(void **state)
{
	(void)state;
	const char *parent = test_path("fparent.vhdx"), *child = test_path("fuzz.vhdx");
	const char *pristine = test_path("fuzz.orig");
	create_image(parent, NULL, 64 * MiB, 1 * MiB, NULL);
	create_image(child, NULL, 0, 1 * MiB, parent); /* chunk ratio 4096: bitmap entry 4096 */
	append_block(child, 4096, 1 * MiB, VHDX_BITMAP_PRESENT, 6);
	append_block(child, 1, 1 * MiB, VHDX_BLOCK_FULLY_PRESENT, 7);
	append_block(child, 30, 1 * MiB, VHDX_BLOCK_PARTIALLY_PRESENT, 8);
	expect_clean(child);
	copy_file(child, pristine);
	static const struct {
		uint64_t at, len;
	} areas[] = {
		{ 0, 600 },			 /* file identifier */
		{ 64 * KiB, 128 },		 /* header 1 fields */
		{ 128 * KiB, 128 },		 /* header 2 fields */
		{ 192 * KiB, 96 },		 /* region table 1 */
		{ 256 * KiB, 96 },		 /* region table 2 */
		{ METADATA_AT, 256 },		 /* metadata table */
		{ METADATA_AT + 64 * KiB, 400 }, /* items and the locator */
		{ BAT_AT, 8 * 40 },		 /* BAT */
		{ BAT_AT + 4096 * 8, 8 },	 /* the sector bitmap entry */
	};
	const char *env = getenv("VHDX_FUZZ_ROUNDS");
	int rounds = env ? atoi(env) : 300, loaded = 0, fixed = 0;
	uint8_t *rt = malloc(64 * KiB);
	srand(4321);
	for (int round = 0; round < rounds; round++) {
		copy_file(pristine, child);
		int flips = 1 + rand() % 4;
		for (int k = 0; k < flips; k++) {
			int a = rand() % (int)(sizeof(areas) / sizeof(areas[0]));
			uint64_t at = areas[a].at + (uint64_t)rand() % areas[a].len;
			uint8_t b = (uint8_t)rand();
			test_file_write(child, &b, 1, at);
		}
		if (rand() % 2) { /* let header and region table damage pass the checksums */
			for (int i = 0; i < 2; i++) {
				uint8_t h[4096];
				test_file_read(child, h, sizeof(h), header_at[i]);
				store_le32(h + 4, vhdx_checksum(h, sizeof(h), 4));
				test_file_write(child, h, sizeof(h), header_at[i]);
				table_get(child, i, rt);
				table_put(child, i, rt, true);
			}
		}
		struct image im;
		bool repair = round % 2;
		if (image_load(&im, child, repair, repair) != 0) {
			assert_true(im.err[0] != 0);
			continue;
		}
		struct vdisk_check_result r = { .findings = json_array() };
		assert_int_equal(vhdx_check(&im.disk, repair ? VDISK_CHECK_REPAIR : 0, &r), 0);
		char text[8192];
		test_findings_text(r.findings, text, sizeof(text));
		json_decref(r.findings);
		struct vdisk_info info;
		assert_int_equal(vhdx_get_info(&im.disk, &info), 0);
		json_decref(info.details);
		image_close(&im);
		loaded++;
		fixed += r.fixed > 0;
		if (!repair)
			continue;
		/* what a repair leaves loads strictly and checks without errors */
		struct check_out c;
		if (image_load(&im, child, false, false) != 0)
			fail_msg("round %d: does not load after repair: %s\nrepair said:\n%s",
				 round, im.err, text);
		image_close(&im);
		run_check(child, false, &c);
		if (c.res.errors)
			fail_msg("round %d: errors left after repair:\n%s\nrepair said:\n%s", round,
				 c.text, text);
	}
	free(rt);
	print_message("%d damaged images: %d loaded, %d repaired\n", rounds, loaded, fixed);
}

/* ---- check and repair ---- */

static void test_check_headers_and_tables(void **state)
{
	(void)state;
	const char *path = test_path("chkhead.vhdx");
	struct check_out c;
	create_image(path, NULL, 64 * MiB, 0, NULL);

	corrupt_byte(path, header_at[0] + 50);
	run_check(path, false, &c);
	assert_int_equal(c.res.errors, 1);
	assert_non_null(strstr(c.text, "header 1 (at 64 KiB) is damaged (checksum mismatch"));
	run_check(path, true, &c);
	assert_int_equal(c.res.errors, 0);
	assert_int_equal(c.res.fixed, 1);
	expect_clean(path);
	struct vhdx_header a, b;
	assert_true(header_get(path, 0, &a));
	assert_true(header_get(path, 1, &b));

	corrupt_byte(path, header_at[1] + 3);
	run_check(path, true, &c);
	assert_non_null(strstr(c.text, "header 2 (at 128 KiB) was damaged"));
	expect_clean(path);

	corrupt_byte(path, table_at[1] + 1000);
	run_check(path, false, &c);
	assert_non_null(strstr(c.text, "region table 2 (at 256 KiB) is damaged"));
	run_check(path, true, &c);
	assert_int_equal(c.res.fixed, 1);
	expect_clean(path);
	uint8_t *t0 = malloc(64 * KiB), *t1 = malloc(64 * KiB);
	table_get(path, 0, t0);
	table_get(path, 1, t1);
	assert_memory_equal(t0, t1, 64 * KiB);

	/* both valid, different: the one in use wins */
	t1[64 * KiB - 1] = 1;
	table_put(path, 1, t1, true);
	run_check(path, false, &c);
	assert_non_null(strstr(c.text, "region table 2 (at 256 KiB) differs from the one in use"));
	run_check(path, true, &c);
	expect_clean(path);
	table_get(path, 1, t1);
	assert_memory_equal(t0, t1, 64 * KiB);
	free(t0);
	free(t1);

	/* metadata entries load accepts but the specification does not */
	uint8_t table[64 * KiB];
	test_file_read(path, table, sizeof(table), METADATA_AT);
	uint8_t *e = meta_entry(table, &VHDX_ITEM_PHYSICAL_SECTOR_SIZE);
	store_le32(e + VHDX_ME_FLAGS, VHDX_ME_IS_VIRTUAL_DISK);
	store_le32(e + VHDX_ME_LENGTH, 12);
	test_file_write(path, table, sizeof(table), METADATA_AT);
	run_check(path, false, &c);
	assert_int_equal(c.res.errors, 2);
	assert_non_null(strstr(c.text, "the Physical Sector Size item is 12 bytes"));
	assert_non_null(strstr(c.text, "the Physical Sector Size item is not marked required"));
	run_check(path, true, &c);
	assert_int_equal(c.res.errors, 0);
	assert_int_equal(c.res.fixed, 2);
	expect_clean(path);
}

static void test_check_repair_bat(void **state)
{
	(void)state;
	const char *path = test_path("chkbat.vhdx");
	struct check_out c;
	create_image(path, NULL, 64 * MiB, 1 * MiB, NULL);
	uint64_t b1 = append_block(path, 1, 1 * MiB, VHDX_BLOCK_FULLY_PRESENT, 11);
	append_block(path, 4, 1 * MiB, VHDX_BLOCK_FULLY_PRESENT, 12);
	expect_clean(path);

	/* past the end: dropped; offset 0, into metadata, bad state: dropped */
	set_bat(path, 9, vhdx_bat_entry(VHDX_BLOCK_FULLY_PRESENT, 1ull << 40));
	set_bat(path, 10, vhdx_bat_entry(VHDX_BLOCK_FULLY_PRESENT, 0));
	set_bat(path, 11, vhdx_bat_entry(VHDX_BLOCK_FULLY_PRESENT, METADATA_AT));
	set_bat(path, 12, vhdx_bat_entry(5, 0));
	run_check(path, false, &c);
	assert_int_equal(c.res.errors, 4);
	assert_non_null(strstr(c.text, "BAT entry 9 (payload block 9) points past the end"));
	assert_non_null(strstr(c.text, "BAT entry 11 (payload block 11) points into the metadata"));
	run_check(path, true, &c);
	assert_int_equal(c.res.errors, 0);
	assert_int_equal(c.res.fixed, 4);
	assert_non_null(strstr(c.text, "dropped the entry (that part of the disk reads as zeros)"));
	for (uint64_t i = 9; i <= 12; i++)
		assert_int_equal(get_bat(path, i), 0);
	expect_clean(path);

	/* two entries share a block: the second gets its own copy; both read as before */
	set_bat(path, 7, vhdx_bat_entry(VHDX_BLOCK_FULLY_PRESENT, b1));
	run_check(path, false, &c);
	assert_non_null(strstr(c.text, "BAT entry 1 (payload block 1) and BAT entry 7 (payload "
				       "block 7) overlap"));
	uint64_t before = file_size(path);
	run_check(path, true, &c);
	assert_int_equal(c.res.errors, 0);
	assert_non_null(strstr(c.text, "gave entry 7 its own copy"));
	assert_int_equal(vhdx_bat_offset(get_bat(path, 1)), b1);
	uint64_t moved = vhdx_bat_offset(get_bat(path, 7));
	assert_int_equal(moved, before);
	uint8_t *want = malloc(MiB), *got = malloc(MiB);
	test_fill_pattern(want, MiB, 0, 11);
	test_file_read(path, got, MiB, moved);
	assert_memory_equal(got, want, MiB);
	test_file_read(path, got, MiB, b1);
	assert_memory_equal(got, want, MiB);
	expect_clean(path);

	/* absent blocks with offsets: the offset is cleared, the state kept */
	set_bat(path, 20, vhdx_bat_entry(VHDX_BLOCK_ZERO, b1));
	set_bat(path, 21, vhdx_bat_entry(VHDX_BLOCK_UNMAPPED, 7 * MiB));
	run_check(path, false, &c);
	assert_int_equal(c.res.errors, 2);
	assert_non_null(strstr(c.text, "Hyper-V fails to read"));
	run_check(path, true, &c);
	assert_int_equal(c.res.fixed, 2);
	assert_int_equal(get_bat(path, 20), VHDX_BLOCK_ZERO);
	assert_int_equal(get_bat(path, 21), VHDX_BLOCK_UNMAPPED);
	expect_clean(path);

	/* reserved bits: loaded, reported, cleared */
	set_bat(path, 1, vhdx_bat_entry(VHDX_BLOCK_FULLY_PRESENT, b1) | 0x100);
	set_bat(path, 30, 0x80000);
	struct image im;
	load_ok(&im, path);
	image_close(&im);
	run_check(path, false, &c);
	assert_int_equal(c.res.errors, 2);
	assert_non_null(strstr(c.text, "BAT entry 1 (payload block 1) has reserved bits set "
				       "(0x100)"));
	run_check(path, true, &c);
	assert_int_equal(c.res.fixed, 2);
	assert_int_equal(get_bat(path, 1), vhdx_bat_entry(VHDX_BLOCK_FULLY_PRESENT, b1));
	assert_int_equal(get_bat(path, 30), 0);
	expect_clean(path);

	/* partially present in a dynamic image: fully present, data kept */
	set_bat(path, 1, vhdx_bat_entry(VHDX_BLOCK_PARTIALLY_PRESENT, b1));
	run_check(path, true, &c);
	assert_non_null(strstr(c.text, "marked the block fully present"));
	assert_int_equal(get_bat(path, 1), vhdx_bat_entry(VHDX_BLOCK_FULLY_PRESENT, b1));
	expect_clean(path);

	/* the last block cut short: the file grows back, the data before the cut stays */
	uint64_t last = vhdx_bat_offset(get_bat(path, 7));
	file_truncate(path, last + MiB / 2);
	run_check(path, false, &c);
	assert_non_null(strstr(c.text, "BAT entry 7 (payload block 7) points past the end"));
	run_check(path, true, &c);
	assert_non_null(strstr(c.text, "extended the file by 524288 bytes"));
	assert_int_equal(file_size(path), last + MiB);
	test_file_read(path, got, MiB / 2, last);
	assert_memory_equal(got, want, MiB / 2);
	expect_clean(path);
	free(want);
	free(got);

	/* many problems: the first ones in full, then a count */
	for (uint64_t i = 22; i < 62; i++)
		set_bat(path, i, vhdx_bat_entry(VHDX_BLOCK_ZERO, 5 * MiB));
	run_check(path, false, &c);
	assert_int_equal(c.res.errors, 40);
	assert_non_null(strstr(c.text, "8 more BAT entries have problems"));
	run_check(path, true, &c);
	assert_int_equal(c.res.fixed, 40);
	assert_non_null(strstr(c.text, "8 more BAT entries were repaired"));
	expect_clean(path);
}

static void test_check_differencing(void **state)
{
	(void)state;
	const char *parent = test_path("dparent.vhdx"), *child = test_path("dchild.vhdx");
	struct check_out c;
	create_image(parent, NULL, 64 * MiB, 1 * MiB, NULL);
	create_image(child, NULL, 0, 1 * MiB, parent);
	uint64_t bm = append_block(child, 4096, 1 * MiB, VHDX_BITMAP_PRESENT, 1);
	append_block(child, 2, 1 * MiB, VHDX_BLOCK_PARTIALLY_PRESENT, 2);
	expect_clean(child);

	/* a partially present block whose chunk lost its bitmap: reads the parent */
	set_bat(child, 4096, 0);
	load_fails(child, -EINVAL,
		   "BAT entry 2 (payload block 2) is partially present but its "
		   "chunk has no sector bitmap");
	run_check(child, true, &c);
	assert_non_null(strstr(c.text, "now reads from the parent"));
	assert_int_equal(get_bat(child, 2), 0);
	set_bat(child, 4096, vhdx_bat_entry(VHDX_BITMAP_PRESENT, bm));

	/* a fully present block wholly past the end of a differencing image reads as zeros:
	 * it becomes a Zero block, not the parent's data */
	set_bat(child, 3, vhdx_bat_entry(VHDX_BLOCK_FULLY_PRESENT, 1ull << 38));
	run_check(child, true, &c);
	assert_non_null(strstr(c.text, "marked the block zero"));
	assert_int_equal(get_bat(child, 3), VHDX_BLOCK_ZERO);
	expect_clean(child);
}

static void test_check_leaks(void **state)
{
	(void)state;
	const char *path = test_path("leaks.vhdx");
	struct check_out c;
	create_image(path, NULL, 64 * MiB, 1 * MiB, NULL);
	append_block(path, 0, 1 * MiB, VHDX_BLOCK_FULLY_PRESENT, 1);
	uint64_t b = append_block(path, 1, 1 * MiB, VHDX_BLOCK_FULLY_PRESENT, 2);
	append_block(path, 2, 1 * MiB, VHDX_BLOCK_FULLY_PRESENT, 3);
	uint64_t size = file_size(path);

	/* the last block's entry lost: its space leaks at the end, and is reclaimed */
	set_bat(path, 2, 0);
	run_check(path, false, &c);
	assert_int_equal(c.res.errors, 0);
	assert_int_equal(c.res.leaks, 1);
	assert_non_null(strstr(c.text, "1048576 bytes at the end of the file"));
	run_check(path, true, &c);
	assert_int_equal(c.res.leaks, 0);
	assert_non_null(strstr(c.text, "reclaimed 1048576 leaked bytes"));
	assert_int_equal(file_size(path), size - MiB);
	expect_clean(path);

	/* a block in the middle lost: reported, not reclaimable */
	set_bat(path, 1, 0);
	append_block(path, 5, 1 * MiB, VHDX_BLOCK_FULLY_PRESENT, 4);
	run_check(path, true, &c);
	assert_int_equal(c.res.leaks, 1);
	assert_non_null(strstr(c.text, "1 MiB at byte 5242880 (before the block at byte 6291456)"));
	(void)b;

	/* space before the first block is the creator's layout; no blocks, no tail leak */
	create_image(path, NULL, 64 * MiB, 1 * MiB, NULL);
	file_truncate(path, 9 * MiB);
	expect_clean(path);
	append_block(path, 0, 1 * MiB, VHDX_BLOCK_FULLY_PRESENT, 1);
	expect_clean(path);
}

/* ---- info ---- */

static void test_info(void **state)
{
	(void)state;
	const char *base = test_path("ibase.vhdx"), *mid = test_path("imid.vhdx");
	const char *top = test_path("itop.vhdx");
	create_image(base, "fixed", 16 * MiB, 1 * MiB, NULL);
	create_image(mid, NULL, 0, 0, base);
	create_image(top, NULL, 0, 1 * MiB, mid);
	append_block(top, 4096, 1 * MiB, VHDX_BITMAP_PRESENT, 1);
	append_block(top, 3, 1 * MiB, VHDX_BLOCK_PARTIALLY_PRESENT, 2);
	append_block(top, 5, 1 * MiB, VHDX_BLOCK_FULLY_PRESENT, 3);
	set_bat(top, 6, VHDX_BLOCK_ZERO);
	set_bat(top, 7, VHDX_BLOCK_UNMAPPED);

	struct vdisk *disk = open_ro(top);
	assert_string_equal(vdisk_format_name(disk), "vhdx");
	assert_int_equal(vdisk_size(disk), 16 * MiB);
	struct vdisk_info info;
	assert_int_equal(vdisk_get_info(disk, &info), 0);
	json_t *d = info.details;
	assert_int_equal(info.cluster_size, 1 * MiB);
	assert_int_equal(info.logical_sector_size, 512);
	assert_int_equal(info.physical_sector_size, 4096);
	assert_string_equal(json_string_value(json_object_get(d, "type")), "differencing");
	assert_string_equal(json_string_value(json_object_get(d, "creator")), "hvstack");
	json_t *heads = json_object_get(d, "headers");
	assert_int_equal(json_array_size(heads), 2);
	assert_true(json_is_true(json_object_get(json_array_get(heads, 1), "current")));
	assert_true(json_is_true(json_object_get(json_array_get(heads, 0), "valid")));
	assert_int_equal(json_integer_value(json_object_get(json_array_get(heads, 0), "offset")),
			 64 * KiB);
	assert_string_equal(json_string_value(json_path(d, "log", "state")), "clean");
	assert_int_equal(json_integer_value(json_path(d, "log", "offset")), 1 * MiB);
	json_t *regions = json_object_get(d, "regions");
	assert_int_equal(json_array_size(regions), 2);
	assert_string_equal(json_string_value(json_object_get(json_array_get(regions, 0), "name")),
			    "BAT");
	assert_true(json_is_true(json_object_get(json_array_get(regions, 0), "required")));
	assert_string_equal(json_string_value(json_object_get(json_array_get(regions, 1), "guid")),
			    "8b7ca206-4790-4b9a-b8fe-575f050f886e");
	assert_int_equal(json_integer_value(json_path(d, "metadata", "block_size")), 1 * MiB);
	assert_int_equal(json_integer_value(json_path(d, "metadata", "virtual_size")), 16 * MiB);
	assert_true(json_is_true(json_path(d, "metadata", "has_parent")));
	assert_non_null(json_string_value(json_path(d, "metadata", "page83")));
	assert_int_equal(json_integer_value(json_path(d, "block_states", "fully_present")), 1);
	assert_int_equal(json_integer_value(json_path(d, "block_states", "partially_present")), 1);
	assert_int_equal(json_integer_value(json_path(d, "block_states", "zero")), 1);
	assert_int_equal(json_integer_value(json_path(d, "block_states", "unmapped")), 1);
	assert_int_equal(json_integer_value(json_path(d, "block_states", "not_present")), 12);
	assert_int_equal(json_integer_value(json_object_get(d, "sector_bitmaps_present")), 1);

	json_t *p = json_object_get(d, "parent");
	assert_string_equal(json_string_value(json_object_get(p, "relative_path")), ".\\imid.vhdx");
	assert_string_equal(json_string_value(json_object_get(p, "path")), mid);
	assert_true(json_is_null(json_object_get(p, "volume_path")));
	assert_string_equal(json_string_value(json_object_get(p, "format")), "vhdx");
	/* the chain: mid's details, then base's */
	json_t *md = json_object_get(p, "details");
	assert_string_equal(json_string_value(json_object_get(md, "type")), "differencing");
	json_t *bd = json_path(json_object_get(md, "parent"), "details", NULL);
	assert_string_equal(json_string_value(json_object_get(bd, "type")), "fixed");
	assert_null(json_object_get(bd, "parent"));
	assert_int_equal(json_integer_value(json_path(bd, "block_states", "fully_present")), 16);
	/* each linkage names its parent's DataWriteGuid */
	const char *link =
		json_string_value(json_object_get(json_object_get(md, "parent"), "linkage"));
	const char *dwg = json_string_value(json_object_get(
		json_array_get(json_object_get(bd, "headers"), 1), "data_write_guid"));
	assert_int_equal(strncasecmp(link + 1, dwg, GUID_STR_LEN), 0);
	json_decref(d);
	vdisk_close(disk);

	/* a damaged header shows as such */
	corrupt_byte(base, header_at[0] + 9);
	disk = open_ro(base);
	assert_int_equal(vdisk_get_info(disk, &info), 0);
	heads = json_object_get(info.details, "headers");
	assert_true(json_is_false(json_object_get(json_array_get(heads, 0), "valid")));
	assert_non_null(
		strstr(json_string_value(json_object_get(json_array_get(heads, 0), "problem")),
		       "checksum"));
	json_decref(info.details);
	vdisk_close(disk);
}

static int setup(void **state)
{
	(void)state;
	test_tmpdir();
	return vdisk_format_register(&stub_vhdx);
}

static int teardown(void **state)
{
	(void)state;
	test_tmpdir_remove();
	return 0;
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_checksum_and_header_roundtrip),
		cmocka_unit_test(test_header_parse_rejects),
		cmocka_unit_test(test_probe),
		cmocka_unit_test(test_load_qemu_images),
		cmocka_unit_test(test_create_dynamic),
		cmocka_unit_test(test_create_fixed),
		cmocka_unit_test(test_create_differencing),
		cmocka_unit_test(test_create_refusals),
		cmocka_unit_test(test_qemu_writes_into_ours),
		cmocka_unit_test(test_load_headers),
		cmocka_unit_test(test_header_update),
		cmocka_unit_test(test_load_region_tables),
		cmocka_unit_test(test_load_metadata),
		cmocka_unit_test(test_load_bad_bat),
		cmocka_unit_test(test_load_log),
		cmocka_unit_test(test_parent_locator),
		cmocka_unit_test(test_load_random_damage),
		cmocka_unit_test(test_check_headers_and_tables),
		cmocka_unit_test(test_check_repair_bat),
		cmocka_unit_test(test_check_differencing),
		cmocka_unit_test(test_check_leaks),
		cmocka_unit_test(test_info),
	};
	return cmocka_run_group_tests(tests, setup, teardown);
}
