/* VHD metadata (vhd/vhd_meta.c): checksums, CHS geometry, footer/header parsing and
 * building, loading and validation, creation, info, check and repair.
 *
 * Oracles are independent where they can be: images and footers written by qemu-img and
 * qemu-io, `qemu-img info`/`qemu-img compare` reading our images, vhdiinfo (libvhdi), and
 * plain pread/pwrite of the file. Tests that need a tool skip when it is missing.
 *
 * vhd.c (open, I/O) is not used: images are loaded with vhd_load on a struct vdisk set up
 * here, and a minimal "vhd" format (probe + vhd_load + get_info) is registered so that
 * vdisk_open can open a parent for vhd_create and for the info chain.
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

#include "endian.h"
#include "format.h"
#include "test_util.h"
#include "vdisk.h"
#include "vhd_internal.h"

#define KiB 1024ull
#define MiB (1024ull * KiB)
#define GiB (1024ull * MiB)

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

/* ---- on-disk patching (fields are big-endian; the checksum is recomputed unless asked) --- */

static void patch_struct(const char *path, uint64_t at, size_t size, size_t csum_off, size_t field,
			 const void *value, size_t len, bool fix_checksum)
{
	uint8_t buf[VHD_HEADER_SIZE];
	test_file_read(path, buf, size, at);
	memcpy(buf + field, value, len);
	if (fix_checksum)
		store_be32(buf + csum_off, vhd_checksum(buf, size, csum_off));
	test_file_write(path, buf, size, at);
}

static uint64_t footer_at(const char *path)
{
	return file_size(path) - VHD_FOOTER_SIZE;
}

static void patch_footer32(const char *path, uint64_t at, size_t field, uint32_t v)
{
	uint8_t be[4];
	store_be32(be, v);
	patch_struct(path, at, VHD_FOOTER_SIZE, VHD_F_CHECKSUM, field, be, 4, true);
}

static void patch_header32(const char *path, size_t field, uint32_t v)
{
	uint8_t be[4];
	store_be32(be, v);
	patch_struct(path, VHD_FOOTER_SIZE, VHD_HEADER_SIZE, VHD_H_CHECKSUM, field, be, 4, true);
}

static void patch_header64(const char *path, size_t field, uint64_t v)
{
	uint8_t be[8];
	store_be64(be, v);
	patch_struct(path, VHD_FOOTER_SIZE, VHD_HEADER_SIZE, VHD_H_CHECKSUM, field, be, 8, true);
}

static void corrupt_byte(const char *path, uint64_t at)
{
	uint8_t b;
	test_file_read(path, &b, 1, at);
	b ^= 0x5a;
	test_file_write(path, &b, 1, at);
}

/* BAT entry on disk (images made here: BAT at 1536). */
static void set_bat(const char *path, uint32_t index, uint32_t sector)
{
	uint8_t be[4];
	store_be32(be, sector);
	test_file_write(path, be, 4, 1536 + 4ull * index);
}

static uint32_t get_bat(const char *path, uint32_t index)
{
	uint8_t be[4];
	test_file_read(path, be, 4, 1536 + 4ull * index);
	return load_be32(be);
}

/* Appends a block for BAT entry index the way an allocator does: bitmap (all set) at the
 * old footer position, then the data (pattern seed), then the footer; returns the block's
 * byte offset. block_size is the image's. */
static uint64_t append_block(const char *path, uint32_t index, uint32_t block_size, uint32_t seed)
{
	uint64_t at = footer_at(path);
	uint8_t footer[VHD_FOOTER_SIZE], bitmap[512];
	uint32_t bitmap_size = ((block_size / 512 / 8) + 511) & ~511u;
	uint8_t *data = malloc(block_size);
	assert_non_null(data);
	test_file_read(path, footer, sizeof(footer), at);
	memset(bitmap, 0xff, sizeof(bitmap));
	for (uint32_t o = 0; o < bitmap_size; o += 512)
		test_file_write(path, bitmap, 512, at + o);
	test_fill_pattern(data, block_size, 0, seed);
	test_file_write(path, data, block_size, at + bitmap_size);
	test_file_write(path, footer, sizeof(footer), at + bitmap_size + block_size);
	free(data);
	set_bat(path, index, (uint32_t)(at / 512));
	return at;
}

/* ---- images ---- */

static void create_image(const char *path, const char *type, uint64_t size, uint32_t block,
			 const char *parent)
{
	struct vdisk_create_options o = {
		.format = "vhd",
		.size = size,
		.type = type,
		.block_size = block,
		.parent = parent,
		.sparse = true,
		.overwrite = true,
	};
	char err[512] = "";
	int ret = vhd_create(path, &o, err, sizeof(err));
	if (ret)
		fail_msg("vhd_create %s: %d %s", path, ret, err);
}

struct image {
	struct vdisk disk;
	struct vhd vhd;
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
	im->disk.priv = &im->vhd;
	im->vhd.load_for_repair = for_repair;
	ret = vhd_load(&im->disk, &im->vhd, im->err, sizeof(im->err));
	if (ret) {
		vdisk_file_close(im->disk.file);
		im->disk.file = NULL;
	}
	return ret;
}

static void image_close(struct image *im)
{
	vhd_unload(&im->vhd);
	vdisk_file_close(im->disk.file);
	im->disk.file = NULL;
}

static void load_ok(struct image *im, const char *path)
{
	int ret = image_load(im, path, false, false);
	if (ret)
		fail_msg("vhd_load %s: %d %s", path, ret, im->err);
}

/* vhd_load must fail with ret and a message containing want. */
static void load_fails(const char *path, int ret, const char *want)
{
	struct image im;
	int got = image_load(&im, path, false, false);
	if (got == 0) {
		image_close(&im);
		fail_msg("vhd_load %s succeeded; expected %d (%s)", path, ret, want);
	}
	if (got != ret || !strstr(im.err, want))
		fail_msg("vhd_load %s: got %d \"%s\"; expected %d with \"%s\"", path, got, im.err,
			 ret, want);
}

struct check_out {
	struct vdisk_check_result res;
	char text[4096];
};

static void run_check(const char *path, bool repair, struct check_out *out)
{
	struct image im;
	int ret = image_load(&im, path, repair, true);
	if (ret)
		fail_msg("vhd_load %s: %s", path, im.err);
	memset(out, 0, sizeof(*out));
	out->res.findings = json_array();
	assert_int_equal(vhd_check(&im.disk, repair ? VDISK_CHECK_REPAIR : 0, &out->res), 0);
	test_findings_text(out->res.findings, out->text, sizeof(out->text));
	json_decref(out->res.findings);
	image_close(&im);
}

static void expect_clean(const char *path)
{
	struct check_out c;
	struct image im;
	load_ok(&im, path);
	assert_int_equal(im.vhd.bad_bat_entries, 0);
	image_close(&im);
	run_check(path, false, &c);
	if (c.res.errors || c.res.leaks || c.res.fixed)
		fail_msg("check %s not clean:\n%s", path, c.text);
}

/* ---- a minimal "vhd" format for vdisk_open (vhd.c is not part of this test) ---- */

static int stub_open(struct vdisk *disk, char *err, size_t err_size)
{
	struct vhd *vhd = calloc(1, sizeof(*vhd));
	if (!vhd)
		return -ENOMEM;
	int ret = vhd_load(disk, vhd, err, err_size);
	if (ret == 0 && vhd->parent_path) {
		struct vdisk_options o = { .read_only = true,
					   .cache = VDISK_CACHE_WRITEBACK,
					   .engine = VDISK_ENGINE_SYNC,
					   .no_lock = true };
		ret = vdisk_open(vhd->parent_path, &o, &vhd->parent, err, err_size);
		if (ret)
			vhd_unload(vhd);
	}
	if (ret) {
		free(vhd);
		return ret;
	}
	disk->size = vhd->virtual_size;
	disk->priv = vhd;
	return 0;
}

static void stub_close(struct vdisk *disk)
{
	struct vhd *vhd = disk->priv;
	if (!vhd)
		return;
	vdisk_close(vhd->parent);
	vhd_unload(vhd);
	free(vhd);
}

static const struct vdisk_format stub_vhd = {
	.name = "vhd",
	.probe = vhd_probe,
	.open = stub_open,
	.close = stub_close,
	.get_info = vhd_get_info,
	.check = vhd_check,
};

/* ---- tool output ---- */

/* `qemu-img info --output=json`: virtual size and format. */
static void qemu_info(const char *path, const char *fmt, uint64_t *size, char *format,
		      size_t format_size)
{
	static char out[8192];
	int rc = test_run(out, sizeof(out), "qemu-img info -U %s%s --output=json '%s' 2>/dev/null",
			  fmt ? "-f " : "", fmt ? fmt : "", path);
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

/* ---- checksum, geometry, sizes ---- */

/* A footer qemu-img wrote (100 MiB dynamic image), field by field; qemu computed the
 * checksum 0xffffed5e. */
static void test_checksum_known_footer(void **state)
{
	(void)state;
	static const uint8_t head[] = {
		0x63, 0x6f, 0x6e, 0x65, 0x63, 0x74, 0x69, 0x78, 0x00, 0x00, 0x00, 0x02, 0x00, 0x01,
		0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x02, 0x00, 0x32, 0x93, 0xf8, 0x66,
		0x71, 0x65, 0x6d, 0x75, 0x00, 0x05, 0x00, 0x03, 0x57, 0x69, 0x32, 0x6b, 0x00, 0x00,
		0x00, 0x00, 0x06, 0x40, 0x20, 0x00, 0x00, 0x00, 0x00, 0x00, 0x06, 0x40, 0x20, 0x00,
		0x03, 0xec, 0x0c, 0x11, 0x00, 0x00, 0x00, 0x03, 0xff, 0xff, 0xed, 0x5e, 0xe9, 0xb6,
		0x94, 0xe3, 0x24, 0xa4, 0x4d, 0x8c, 0x9b, 0x51, 0xb0, 0x2c, 0x0d, 0xc0, 0x31, 0xa7,
	};
	uint8_t raw[VHD_FOOTER_SIZE] = { 0 };
	memcpy(raw, head, sizeof(head));
	assert_int_equal(vhd_checksum(raw, sizeof(raw), VHD_F_CHECKSUM), 0xffffed5e);

	struct vhd_footer f;
	char err[256];
	assert_int_equal(vhd_footer_parse(raw, &f, err, sizeof(err)), 0);
	assert_int_equal(f.disk_type, VHD_TYPE_DYNAMIC);
	assert_int_equal(f.current_size, 104865792);
	assert_int_equal(f.cylinders, 1004);
	assert_int_equal(f.heads, 12);
	assert_int_equal(f.sectors, 17);
	assert_string_equal(f.creator_app, "qemu");
	/* "qemu" images are sized by CHS: here the same */
	assert_int_equal(vhd_virtual_size(&f), 1004ull * 12 * 17 * 512);

	/* the id as qemu generated it and vhdiinfo printed it */
	char uid[GUID_STR_LEN + 1];
	vhd_uuid_format(f.unique_id, uid);
	assert_string_equal(uid, "e9b694e3-24a4-4d8c-9b51-b02c0dc031a7");

	uint8_t again[VHD_FOOTER_SIZE];
	vhd_footer_build(&f, again);
	assert_memory_equal(again, raw, sizeof(raw));

	raw[100] ^= 1; /* a reserved byte counts too */
	assert_int_equal(vhd_footer_parse(raw, &f, err, sizeof(err)), -EINVAL);
	assert_non_null(strstr(err, "checksum"));
}

/* The specification's algorithm, worked by hand for a few sizes. */
static void test_geometry_spec_values(void **state)
{
	(void)state;
	static const struct {
		uint64_t size;
		uint16_t c;
		uint8_t h, s;
	} cases[] = {
		{ 2 * MiB, 60, 4, 17 }, /* 4096 sectors: 240 cyl*heads, 4 heads */
		{ 512ull * 17 * 4 * 1024 - 512, 1023, 4, 17 },
		{ 1079296, 31, 4, 17 },			      /* what qemu makes of "1M" */
		{ 65535ull * 16 * 63 * 512, 16191, 16, 255 }, /* from here 255 sectors */
		{ 65535ull * 16 * 255 * 512, 65535, 16, 255 },
		{ VHD_MAX_SIZE, 65535, 16, 255 }, /* capped */
		{ 0, 0, 4, 17 },
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		uint16_t c;
		uint8_t h, s;
		vhd_geometry(cases[i].size, &c, &h, &s);
		if (c != cases[i].c || h != cases[i].h || s != cases[i].s)
			fail_msg("size %llu: got %u/%u/%u, want %u/%u/%u",
				 (unsigned long long)cases[i].size, c, h, s, cases[i].c, cases[i].h,
				 cases[i].s);
	}
}

/* qemu-img rounds a size up to the next CHS-exact one and stores that CHS: our geometry
 * of qemu's size must be qemu's CHS; beyond the CHS limit both use the maximum. */
static void test_geometry_matches_qemu(void **state)
{
	(void)state;
	NEED_TOOL("qemu-img");
	static const char *const sizes[] = { "1M",  "10M",  "100M", "500M", "1G",   "3G",
					     "10G", "127G", "128G", "200G", "2000G" };
	const char *path = test_path("geom.vhd");
	for (size_t i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++) {
		unlink(path);
		assert_int_equal(
			test_run(NULL, 0, "qemu-img create -q -f vpc '%s' %s", path, sizes[i]), 0);
		uint8_t raw[VHD_FOOTER_SIZE];
		struct vhd_footer f;
		char err[256];
		test_file_read(path, raw, sizeof(raw), footer_at(path));
		assert_int_equal(vhd_footer_parse(raw, &f, err, sizeof(err)), 0);
		uint16_t c;
		uint8_t h, s;
		vhd_geometry(f.current_size, &c, &h, &s);
		if (c != f.cylinders || h != f.heads || s != f.sectors)
			fail_msg("%s (%llu bytes): qemu %u/%u/%u, ours %u/%u/%u", sizes[i],
				 (unsigned long long)f.current_size, f.cylinders, f.heads,
				 f.sectors, c, h, s);
	}
}

static void test_virtual_size_rules(void **state)
{
	(void)state;
	struct vhd_footer f = {
		.current_size = 10 * GiB + 4096, .cylinders = 1000, .heads = 16, .sectors = 63
	};
	uint64_t chs = 1000ull * 16 * 63 * 512;
	static const char by_size[][5] = { "win ", "qem2", "d2v ", "CTXS", "hvs " };
	static const char by_chs[][5] = { "vpc ", "qemu", "vbox", "abcd" };

	for (size_t i = 0; i < sizeof(by_size) / sizeof(by_size[0]); i++) {
		memcpy(f.creator_app, by_size[i], 5);
		assert_int_equal(vhd_virtual_size(&f), f.current_size);
	}
	for (size_t i = 0; i < sizeof(by_chs) / sizeof(by_chs[0]); i++) {
		memcpy(f.creator_app, by_chs[i], 5);
		assert_int_equal(vhd_virtual_size(&f), chs);
	}
	memcpy(f.creator_app, "tap\0", 5); /* XenServer: a NUL in the name */
	assert_int_equal(vhd_virtual_size(&f), f.current_size);
	memcpy(f.creator_app, "tap ", 5);
	assert_int_equal(vhd_virtual_size(&f), chs);
	memcpy(f.creator_app, "wa\0\0", 5); /* Azure */
	assert_int_equal(vhd_virtual_size(&f), f.current_size);

	/* at the CHS maximum every creator means current_size */
	memcpy(f.creator_app, "vpc ", 5);
	f.cylinders = 65535;
	f.heads = 16;
	f.sectors = 255;
	f.current_size = 1500 * GiB;
	assert_int_equal(vhd_virtual_size(&f), 1500 * GiB);
	/* a current_size that is not whole sectors is cut to them */
	memcpy(f.creator_app, "win ", 5);
	f.current_size = 1 * GiB + 100;
	assert_int_equal(vhd_virtual_size(&f), 1 * GiB);
}

/* ---- parse and build ---- */

static void test_footer_header_roundtrip(void **state)
{
	(void)state;
	struct vhd_footer f = {
		.features = 2,
		.version = VHD_VERSION,
		.data_offset = 512,
		.timestamp = 12345,
		.creator_app = "hvs ",
		.creator_version = 0x00010000,
		.creator_host_os = VHD_HOST_OS_WINDOWS,
		.original_size = 1 * GiB,
		.current_size = 1 * GiB,
		.cylinders = 2080,
		.heads = 16,
		.sectors = 63,
		.disk_type = VHD_TYPE_DIFFERENCING,
		.unique_id = { 1, 2, 3, 4, 5, 6, 7, 8, 9, 10 },
		.saved_state = 1,
	};
	uint8_t raw[VHD_HEADER_SIZE];
	struct vhd_footer g;
	char err[256];
	vhd_footer_build(&f, raw);
	assert_int_equal(vhd_footer_parse(raw, &g, err, sizeof(err)), 0);
	assert_int_equal(g.features, f.features);
	assert_int_equal(g.version, f.version);
	assert_int_equal(g.data_offset, f.data_offset);
	assert_int_equal(g.timestamp, f.timestamp);
	assert_string_equal(g.creator_app, f.creator_app);
	assert_int_equal(g.creator_version, f.creator_version);
	assert_int_equal(g.creator_host_os, f.creator_host_os);
	assert_int_equal(g.original_size, f.original_size);
	assert_int_equal(g.current_size, f.current_size);
	assert_int_equal(g.cylinders, f.cylinders);
	assert_int_equal(g.heads, f.heads);
	assert_int_equal(g.sectors, f.sectors);
	assert_int_equal(g.disk_type, f.disk_type);
	assert_memory_equal(g.unique_id, f.unique_id, 16);
	assert_int_equal(g.saved_state, f.saved_state);
	assert_int_equal(g.checksum, vhd_checksum(raw, VHD_FOOTER_SIZE, VHD_F_CHECKSUM));

	struct vhd_header h = {
		.data_offset = VHD_NO_OFFSET,
		.table_offset = 1536,
		.version = VHD_HEADER_VERSION,
		.max_table_entries = 512,
		.block_size = 2 * MiB,
		.parent_id = { 9, 8, 7 },
		.parent_timestamp = 777,
		.parent_name = "p\xc3\xa4rent \xe2\x82\xac.vhd",
	};
	h.locators[0] = (struct vhd_locator){ VHD_PLATFORM_W2KU, 512, 40, 3584, NULL };
	h.locators[3] = (struct vhd_locator){ VHD_PLATFORM_MACX, 1, 10, 4096, NULL };
	struct vhd_header k;
	vhd_header_build(&h, raw);
	/* UTF-16 big-endian on disk */
	assert_int_equal(raw[VHD_H_PARENT_NAME], 0);
	assert_int_equal(raw[VHD_H_PARENT_NAME + 1], 'p');
	assert_int_equal(raw[VHD_H_PARENT_NAME + 2], 0);
	assert_int_equal(raw[VHD_H_PARENT_NAME + 3], 0xe4);
	assert_int_equal(vhd_header_parse(raw, &k, err, sizeof(err)), 0);
	assert_int_equal(k.data_offset, h.data_offset);
	assert_int_equal(k.table_offset, h.table_offset);
	assert_int_equal(k.version, h.version);
	assert_int_equal(k.max_table_entries, h.max_table_entries);
	assert_int_equal(k.block_size, h.block_size);
	assert_memory_equal(k.parent_id, h.parent_id, 16);
	assert_int_equal(k.parent_timestamp, h.parent_timestamp);
	assert_string_equal(k.parent_name, h.parent_name);
	for (int i = 0; i < VHD_LOCATORS; i++) {
		assert_int_equal(k.locators[i].code, h.locators[i].code);
		assert_int_equal(k.locators[i].data_space, h.locators[i].data_space);
		assert_int_equal(k.locators[i].data_length, h.locators[i].data_length);
		assert_int_equal(k.locators[i].data_offset, h.locators[i].data_offset);
		assert_null(k.locators[i].path);
	}
}

static void test_parse_rejects(void **state)
{
	(void)state;
	struct vhd_footer f = { .features = 2,
				.version = VHD_VERSION,
				.data_offset = 512,
				.creator_app = "hvs ",
				.current_size = 1 * GiB,
				.disk_type = VHD_TYPE_DYNAMIC };
	uint8_t raw[VHD_HEADER_SIZE];
	char err[256];
	struct vhd_footer g;
	f.disk_type = 5;
	vhd_footer_build(&f, raw);
	assert_int_equal(vhd_footer_parse(raw, &g, err, sizeof(err)), -EINVAL);
	assert_non_null(strstr(err, "disk type 5"));
	f.disk_type = VHD_TYPE_DYNAMIC;
	f.version = 0x00020000;
	vhd_footer_build(&f, raw);
	assert_int_equal(vhd_footer_parse(raw, &g, err, sizeof(err)), -EINVAL);
	assert_non_null(strstr(err, "version 2.0"));
	f.version = VHD_VERSION;
	f.data_offset = 700;
	vhd_footer_build(&f, raw);
	assert_int_equal(vhd_footer_parse(raw, &g, err, sizeof(err)), -EINVAL);
	f.data_offset = VHD_NO_OFFSET; /* dynamic without a header */
	vhd_footer_build(&f, raw);
	assert_int_equal(vhd_footer_parse(raw, &g, err, sizeof(err)), -EINVAL);
	f.data_offset = 512;
	f.current_size = VHD_MAX_SIZE + 512;
	vhd_footer_build(&f, raw);
	assert_int_equal(vhd_footer_parse(raw, &g, err, sizeof(err)), -EFBIG);
	assert_non_null(strstr(err, "2040 GiB"));
	f.current_size = VHD_MAX_SIZE;
	vhd_footer_build(&f, raw);
	assert_int_equal(vhd_footer_parse(raw, &g, err, sizeof(err)), 0);
	f.disk_type = VHD_TYPE_FIXED; /* fixed with a header offset */
	vhd_footer_build(&f, raw);
	assert_int_equal(vhd_footer_parse(raw, &g, err, sizeof(err)), -EINVAL);
	f.data_offset = 0xffffffff; /* the specification's 32-bit "none" is accepted */
	vhd_footer_build(&f, raw);
	assert_int_equal(vhd_footer_parse(raw, &g, err, sizeof(err)), 0);

	struct vhd_header h = { .data_offset = VHD_NO_OFFSET,
				.table_offset = 1536,
				.version = VHD_HEADER_VERSION,
				.block_size = 2 * MiB,
				.max_table_entries = 10 };
	struct vhd_header k;
	static const uint32_t bad_blocks[] = { 0, 512, 2048, 3 * MiB, 512 * MiB, 0x80000000u };
	for (size_t i = 0; i < sizeof(bad_blocks) / sizeof(bad_blocks[0]); i++) {
		h.block_size = bad_blocks[i];
		vhd_header_build(&h, raw);
		assert_int_equal(vhd_header_parse(raw, &k, err, sizeof(err)), -EINVAL);
		assert_non_null(strstr(err, "block size"));
	}
	h.block_size = 4 * KiB;
	vhd_header_build(&h, raw);
	assert_int_equal(vhd_header_parse(raw, &k, err, sizeof(err)), 0);
	h.block_size = 256 * MiB;
	h.max_table_entries = 2040 * 4 + 1;
	vhd_header_build(&h, raw);
	assert_int_equal(vhd_header_parse(raw, &k, err, sizeof(err)), -EINVAL);
	assert_non_null(strstr(err, "entries"));
	h.max_table_entries = 10;
	h.version = 0x00020000;
	vhd_header_build(&h, raw);
	assert_int_equal(vhd_header_parse(raw, &k, err, sizeof(err)), -EINVAL);
	h.version = VHD_HEADER_VERSION;
	vhd_header_build(&h, raw);
	memcpy(raw, "cxsparsX", 8);
	assert_int_equal(vhd_header_parse(raw, &k, err, sizeof(err)), -EINVAL);
	assert_non_null(strstr(err, "cxsparse"));
}

static void test_probe(void **state)
{
	(void)state;
	uint8_t head[512] = { 0 }, tail[512] = { 0 };
	struct vdisk_probe p = { head, sizeof(head), tail, sizeof(tail), 1 * MiB };
	assert_int_equal(vhd_probe(&p), 0);
	memcpy(tail, VHD_COOKIE, 8);
	assert_int_equal(vhd_probe(&p), 100);
	memset(tail, 0, sizeof(tail));
	memcpy(head, VHD_COOKIE, 8);
	assert_int_equal(vhd_probe(&p), 100);
	memset(head, 0, sizeof(head));
	memcpy(tail + 1, VHD_COOKIE, 8); /* 511-byte footer */
	p.file_size = 1 * MiB + 511;
	assert_int_equal(vhd_probe(&p), 100);
	p.file_size = 1 * MiB;
	assert_int_equal(vhd_probe(&p), 0);
	p.tail_len = 4; /* short files */
	p.head_len = 4;
	assert_int_equal(vhd_probe(&p), 0);
}

/* ---- images written by qemu ---- */

static void test_load_qemu_images(void **state)
{
	(void)state;
	NEED_TOOL("qemu-img");
	static const struct {
		const char *opts;
		uint32_t type;
	} cases[] = {
		{ "subformat=dynamic", VHD_TYPE_DYNAMIC },
		{ "subformat=fixed", VHD_TYPE_FIXED },
		{ "subformat=dynamic,force_size=on", VHD_TYPE_DYNAMIC },
		{ "subformat=fixed,force_size=on", VHD_TYPE_FIXED },
	};
	const char *path = test_path("qemu.vhd");
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		unlink(path);
		assert_int_equal(test_run(NULL, 0, "qemu-img create -q -f vpc -o %s '%s' 1000M",
					  cases[i].opts, path),
				 0);
		uint64_t qsize;
		char fmt[32];
		qemu_info(path, "vpc", &qsize, fmt, sizeof(fmt));
		struct image im;
		load_ok(&im, path);
		assert_int_equal(im.vhd.footer.disk_type, cases[i].type);
		assert_int_equal(im.vhd.virtual_size, qsize);
		if (strstr(cases[i].opts, "force_size"))
			assert_int_equal(im.vhd.virtual_size, 1000 * MiB);
		if (cases[i].type == VHD_TYPE_DYNAMIC) {
			assert_int_equal(im.vhd.block_size, 2 * MiB);
			assert_int_equal(im.vhd.bitmap_size, 512);
			assert_int_equal(im.vhd.blocks, (qsize + 2 * MiB - 1) / (2 * MiB));
			assert_int_equal(im.vhd.footer_offset, file_size(path) - 512);
			for (uint32_t b = 0; b < im.vhd.bat_entries; b++)
				assert_int_equal(im.vhd.bat[b], VHD_BAT_UNUSED);
		}
		image_close(&im);
		expect_clean(path);
	}
}

/* ---- creation ---- */

static void test_create_fixed(void **state)
{
	(void)state;
	const char *path = test_path("fixed.vhd");
	struct vdisk_create_options o = {
		.format = "vhd", .size = 16 * MiB, .type = "fixed", .overwrite = true
	};
	char err[256];
	assert_int_equal(vhd_create(path, &o, err, sizeof(err)), 0);
	assert_int_equal(file_size(path), 16 * MiB + 512);
	struct stat st;
	assert_int_equal(stat(path, &st), 0);
	assert_true((uint64_t)st.st_blocks * 512 >= 16 * MiB); /* allocated */

	uint8_t zero[512] = { 0 }, head[512];
	test_file_read(path, head, sizeof(head), 0);
	assert_memory_equal(head, zero, sizeof(zero)); /* no copy: the data starts at 0 */

	struct image im;
	load_ok(&im, path);
	assert_int_equal(im.vhd.footer.disk_type, VHD_TYPE_FIXED);
	assert_int_equal(im.vhd.virtual_size, 16 * MiB);
	assert_int_equal(im.vhd.footer.current_size, 16 * MiB);
	assert_int_equal(im.vhd.footer.data_offset, VHD_NO_OFFSET);
	assert_string_equal(im.vhd.footer.creator_app, "win ");
	/* a random (version 4, RFC 4122 variant) UUID in RFC byte order */
	assert_int_equal(im.vhd.footer.unique_id[6] >> 4, 4);
	assert_int_equal(im.vhd.footer.unique_id[8] >> 6, 2);
	image_close(&im);
	expect_clean(path);

	o.sparse = true;
	assert_int_equal(vhd_create(path, &o, err, sizeof(err)), 0);
	assert_int_equal(stat(path, &st), 0);
	assert_true((uint64_t)st.st_blocks * 512 < 1 * MiB);

	if (have_tool("qemu-img")) {
		uint64_t size;
		char fmt[32];
		qemu_info(path, "vpc", &size, fmt, sizeof(fmt));
		assert_string_equal(fmt, "vpc");
		/* 16 MiB is not CHS-exact: qemu before 10 reads an unknown creator by CHS */
		uint16_t c;
		uint8_t h, s;
		vhd_geometry(16 * MiB, &c, &h, &s);
		assert_true(size == 16 * MiB || size == (uint64_t)c * h * s * 512);
	}
	if (have_tool("vhdiinfo")) {
		char type[64];
		vhdi_field(path, "Disk type", type, sizeof(type));
		assert_string_equal(type, "Fixed");
		assert_int_equal(vhdi_media_size(path), 16 * MiB);
	}
}

/* A CHS-exact size, so that every qemu version reports exactly our size. */
static uint64_t chs_exact_size(uint64_t near)
{
	uint16_t c;
	uint8_t h, s;
	vhd_geometry(near, &c, &h, &s);
	uint64_t size = (uint64_t)c * h * s * 512;
	vhd_geometry(size, &c, &h, &s);
	assert_int_equal((uint64_t)c * h * s * 512, size);
	return size;
}

static void test_create_dynamic(void **state)
{
	(void)state;
	const char *path = test_path("dyn.vhd");
	uint64_t size = chs_exact_size(3 * GiB);
	create_image(path, NULL, size, 0, NULL);

	uint32_t entries = (uint32_t)((size + 2 * MiB - 1) / (2 * MiB));
	uint64_t bat_bytes = ((uint64_t)entries * 4 + 511) & ~511ull;
	assert_int_equal(file_size(path), 1536 + bat_bytes + 512);
	uint8_t a[512], b[512];
	test_file_read(path, a, 512, 0);
	test_file_read(path, b, 512, footer_at(path));
	assert_memory_equal(a, b, 512); /* the copy at 0 is the footer */
	for (uint32_t i = 0; i < bat_bytes / 4; i++)
		assert_int_equal(get_bat(path, i), VHD_BAT_UNUSED);

	struct image im;
	load_ok(&im, path);
	assert_int_equal(im.vhd.footer.disk_type, VHD_TYPE_DYNAMIC);
	assert_int_equal(im.vhd.virtual_size, size);
	assert_int_equal(im.vhd.header.table_offset, 1536);
	assert_int_equal(im.vhd.header.data_offset, VHD_NO_OFFSET);
	assert_int_equal(im.vhd.bat_entries, entries);
	assert_int_equal(im.vhd.blocks, entries);
	image_close(&im);
	expect_clean(path);

	/* not CHS-exact, block size 512 KiB: current_size keeps the exact size */
	create_image(path, "dynamic", 1 * GiB + 512, 512 * KiB, NULL);
	load_ok(&im, path);
	assert_int_equal(im.vhd.virtual_size, 1 * GiB + 512);
	assert_int_equal(im.vhd.footer.current_size, 1 * GiB + 512);
	assert_int_equal(im.vhd.block_size, 512 * KiB);
	assert_int_equal(im.vhd.bat_entries, 2049);
	image_close(&im);

	if (have_tool("qemu-img")) {
		uint64_t qsize;
		char fmt[32];
		create_image(path, NULL, size, 0, NULL);
		qemu_info(path, NULL, &qsize, fmt, sizeof(fmt)); /* probed by content */
		assert_string_equal(fmt, "vpc");
		assert_int_equal(qsize, size);
	}
	if (have_tool("vhdiinfo")) {
		char type[64];
		create_image(path, NULL, 1 * GiB + 512, 0, NULL);
		vhdi_field(path, "Disk type", type, sizeof(type));
		assert_string_equal(type, "Dynamic");
		assert_int_equal(vhdi_media_size(path), 1 * GiB + 512);
	}
}

/* qemu-io allocates blocks in our image; the result must load and check clean, each BAT
 * entry must point at the data qemu wrote, and qemu must read back what it wrote. */
static void test_dynamic_written_by_qemu(void **state)
{
	(void)state;
	NEED_TOOL("qemu-io");
	NEED_TOOL("qemu-img");
	const char *path = test_path("qio.vhd"), *raw = test_path("qio.raw");
	uint64_t size = chs_exact_size(64 * MiB);
	create_image(path, NULL, size, 0, NULL);
	assert_int_equal(
		test_run(NULL, 0,
			 "qemu-io -f vpc -c 'write -P 0xa1 0 64k' -c 'write -P 0xb2 5M 8k' "
			 "-c 'write -P 0xc3 %llu 512' '%s'",
			 (unsigned long long)(size - 512), path),
		0);
	struct image im;
	load_ok(&im, path);
	uint32_t last = (uint32_t)((size - 512) / (2 * MiB));
	uint32_t idx[3] = { 0, 2, last };
	uint8_t want[3] = { 0xa1, 0xb2, 0xc3 };
	uint64_t in_block[3] = { 0, 1 * MiB, (size - 512) % (2 * MiB) };
	for (int k = 0; k < 3; k++) {
		assert_int_not_equal(im.vhd.bat[idx[k]], VHD_BAT_UNUSED);
		uint8_t b[512];
		test_file_read(path, b, sizeof(b),
			  (uint64_t)im.vhd.bat[idx[k]] * 512 + im.vhd.bitmap_size + in_block[k]);
		for (int j = 0; j < 512; j++)
			assert_int_equal(b[j], want[k]);
	}
	uint32_t allocated = 0;
	for (uint32_t i = 0; i < im.vhd.bat_entries; i++)
		allocated += im.vhd.bat[i] != VHD_BAT_UNUSED;
	assert_int_equal(allocated, 3);
	image_close(&im);
	expect_clean(path);

	assert_int_equal(test_run(NULL, 0,
				  "qemu-img create -q -f raw '%s' %llu && qemu-io -f raw "
				  "-c 'write -P 0xa1 0 64k' -c 'write -P 0xb2 5M 8k' "
				  "-c 'write -P 0xc3 %llu 512' '%s'",
				  raw, (unsigned long long)size, (unsigned long long)(size - 512),
				  raw),
			 0);
	char out[1024];
	if (test_run(out, sizeof(out), "qemu-img compare -f vpc -F raw '%s' '%s'", path, raw))
		fail_msg("qemu-img compare: %s", out);
}

static void test_create_differencing(void **state)
{
	(void)state;
	const char *parent = test_path("base.vhd"), *child = test_path("child.vhd");
	uint64_t size = chs_exact_size(1 * GiB);
	create_image(parent, "dynamic", size, 0, NULL);
	create_image(child, NULL, 0, 0, parent); /* differencing implied, size from parent */

	struct image p, c;
	load_ok(&p, parent);
	load_ok(&c, child);
	assert_int_equal(c.vhd.footer.disk_type, VHD_TYPE_DIFFERENCING);
	assert_int_equal(c.vhd.virtual_size, size);
	assert_int_equal(c.vhd.footer.cylinders, p.vhd.footer.cylinders);
	assert_int_equal(c.vhd.footer.heads, p.vhd.footer.heads);
	assert_int_equal(c.vhd.footer.sectors, p.vhd.footer.sectors);
	assert_memory_equal(c.vhd.header.parent_id, p.vhd.footer.unique_id, 16);
	assert_memory_not_equal(c.vhd.footer.unique_id, p.vhd.footer.unique_id, 16);
	assert_string_equal(c.vhd.header.parent_name, "base.vhd");
	struct stat st;
	assert_int_equal(stat(parent, &st), 0);
	assert_int_equal(c.vhd.header.parent_timestamp, (uint32_t)(st.st_mtime - VHD_EPOCH));
	/* W2ku: absolute path, W2ru: ".\\base.vhd"; data space in bytes, whole sectors */
	char *abs = realpath(parent, NULL);
	assert_int_equal(c.vhd.header.locators[0].code, VHD_PLATFORM_W2KU);
	assert_string_equal(c.vhd.header.locators[0].path, abs);
	assert_int_equal(c.vhd.header.locators[0].data_length, 2 * strlen(abs));
	assert_int_equal(c.vhd.header.locators[1].code, VHD_PLATFORM_W2RU);
	assert_string_equal(c.vhd.header.locators[1].path, ".\\base.vhd");
	for (int i = 0; i < 2; i++) {
		const struct vhd_locator *l = &c.vhd.header.locators[i];
		assert_true(l->data_space >= 512 && l->data_space % 512 == 0);
		assert_true(l->data_space >= l->data_length);
		assert_true(l->data_offset >= 1536 + 512 * 4 / 4);
	}
	assert_int_equal(c.vhd.header.locators[2].code, VHD_PLATFORM_NONE);
	assert_non_null(c.vhd.parent_path);
	assert_int_equal(stat(c.vhd.parent_path, &st), 0);
	free(abs);
	image_close(&c);
	image_close(&p);
	expect_clean(child);

	/* the parent in another directory: "..\\base\\p.vhd", found from the child's own
	 * directory whatever the current directory is */
	char dir_a[600], dir_b[600], p2[700], c2[700];
	snprintf(dir_a, sizeof(dir_a), "%s", test_path("base"));
	snprintf(dir_b, sizeof(dir_b), "%s", test_path("kids"));
	mkdir(dir_a, 0755);
	mkdir(dir_b, 0755);
	snprintf(p2, sizeof(p2), "%s/p.vhd", dir_a);
	snprintf(c2, sizeof(c2), "%s/c.vhd", dir_b);
	create_image(p2, NULL, 64 * MiB, 0, NULL);
	create_image(c2, "differencing", 64 * MiB, 512 * KiB, p2);
	load_ok(&c, c2);
	assert_string_equal(c.vhd.header.locators[1].path, "..\\base\\p.vhd");
	assert_int_equal(c.vhd.block_size, 512 * KiB);
	image_close(&c);
	/* move both: the absolute locator is stale, the relative one still finds it */
	char moved[700], mp[800], mc[800];
	snprintf(moved, sizeof(moved), "%s", test_path("moved"));
	mkdir(moved, 0755);
	assert_int_equal(test_run(NULL, 0, "mv '%s' '%s' '%s/'", dir_a, dir_b, moved), 0);
	snprintf(mp, sizeof(mp), "%s/base/p.vhd", moved);
	snprintf(mc, sizeof(mc), "%s/kids/c.vhd", moved);
	load_ok(&c, mc);
	char *want = realpath(mp, NULL), *got = realpath(c.vhd.parent_path, NULL);
	assert_string_equal(got, want);
	free(want);
	free(got);
	image_close(&c);

	/* a child of a differencing image */
	const char *grandchild = test_path("grandchild.vhd");
	create_image(grandchild, NULL, 0, 0, child);
	load_ok(&c, grandchild);
	assert_string_equal(c.vhd.header.parent_name, "child.vhd");
	image_close(&c);

	if (have_tool("vhdiinfo")) {
		char v[128], pid[64];
		vhdi_field(child, "Disk type", v, sizeof(v));
		assert_string_equal(v, "Differential");
		vhdi_field(child, "Parent filename", v, sizeof(v));
		assert_string_equal(v, "base.vhd");
		vhdi_field(child, "Parent identifier", pid, sizeof(pid));
		vhdi_field(parent, "Identifier", v, sizeof(v));
		assert_string_equal(pid, v);
		assert_int_equal(vhdi_media_size(child), size);
	}
	if (have_tool("qemu-img")) {
		/* qemu has no VHD differencing support, but reads the layout as dynamic */
		uint64_t qsize;
		char fmt[32];
		qemu_info(child, "vpc", &qsize, fmt, sizeof(fmt));
		assert_int_equal(qsize, size);
	}
}

/* A VHD written by qemu as the parent. */
static void test_create_differencing_on_qemu_parent(void **state)
{
	(void)state;
	NEED_TOOL("qemu-img");
	const char *parent = test_path("qparent.vhd"), *child = test_path("qchild.vhd");
	unlink(parent);
	assert_int_equal(test_run(NULL, 0, "qemu-img create -q -f vpc '%s' 100M", parent), 0);
	create_image(child, NULL, 0, 0, parent);
	struct image p, c;
	load_ok(&p, parent);
	load_ok(&c, child);
	assert_int_equal(c.vhd.virtual_size, p.vhd.virtual_size); /* qemu's CHS size */
	assert_memory_equal(c.vhd.header.parent_id, p.vhd.footer.unique_id, 16);
	image_close(&c);
	image_close(&p);
}

static void expect_create_error(const struct vdisk_create_options *o, const char *path, int ret,
				const char *want)
{
	char err[512] = "";
	int got = vhd_create(path, o, err, sizeof(err));
	if (got != ret || !strstr(err, want))
		fail_msg("vhd_create: got %d \"%s\", expected %d with \"%s\"", got, err, ret, want);
}

static void test_create_refusals(void **state)
{
	(void)state;
	const char *path = test_path("refused.vhd"), *exists = test_path("exists.vhd");
	const char *raw = test_path("plain.raw");
	struct vdisk_create_options o = { .format = "vhd", .size = 64 * MiB };

	unlink(path);
	o.size = VHD_MAX_SIZE + 512;
	expect_create_error(&o, path, -EFBIG, "2040 GiB");
	o.size = 64 * MiB + 100;
	expect_create_error(&o, path, -EINVAL, "multiple of 512");
	o.size = 0;
	expect_create_error(&o, path, -EINVAL, "multiple of 512");
	o.size = 64 * MiB;
	static const uint32_t bad_blocks[] = { 256 * KiB, 3 * MiB, 512 * MiB, 4 * KiB };
	for (size_t i = 0; i < sizeof(bad_blocks) / sizeof(bad_blocks[0]); i++) {
		o.block_size = bad_blocks[i];
		expect_create_error(&o, path, -EINVAL, "512 KiB to 256 MiB");
	}
	o.block_size = 2 * MiB;
	o.type = "fixed";
	expect_create_error(&o, path, -EINVAL, "no block size");
	o.block_size = 0;
	o.type = "sparse";
	expect_create_error(&o, path, -EINVAL, "known: fixed, dynamic, differencing");
	o.type = "differencing";
	expect_create_error(&o, path, -EINVAL, "needs a parent");
	assert_int_equal(access(path, F_OK), -1); /* nothing left behind */

	create_image(exists, NULL, 64 * MiB, 0, NULL);
	o.type = NULL;
	uint64_t before = file_size(exists);
	expect_create_error(&o, exists, -EEXIST, "exists");
	assert_int_equal(file_size(exists), before);

	o.type = "fixed";
	o.parent = exists;
	expect_create_error(&o, path, -EINVAL, "only differencing");
	o.type = NULL;
	o.size = 32 * MiB;
	expect_create_error(&o, path, -EINVAL, "parent's size");
	o.size = 0;
	o.overwrite = true;
	expect_create_error(&o, exists, -EINVAL, "its own parent");
	assert_int_equal(file_size(exists), before);
	test_write_file(raw, 1 * MiB, 1);
	o.parent = raw;
	expect_create_error(&o, path, -EINVAL, "needs a VHD parent");
	o.parent = test_path("nonexistent.vhd");
	expect_create_error(&o, path, -ENOENT, "cannot open the parent");
	assert_int_equal(access(path, F_OK), -1);
}

/* ---- loading damaged images ---- */

static void test_load_bad_footer(void **state)
{
	(void)state;
	const char *path = test_path("badfoot.vhd");
	char err[256];

	create_image(path, "fixed", 4 * MiB, 0, NULL);
	corrupt_byte(path, footer_at(path) + 40);
	load_fails(path, -EINVAL, "checksum");
	create_image(path, "fixed", 4 * MiB, 0, NULL);
	test_file_write(path, "connectx", 8, footer_at(path));
	load_fails(path, -EINVAL, "conectix");
	create_image(path, "fixed", 4 * MiB, 0, NULL);
	patch_footer32(path, footer_at(path), VHD_F_DISK_TYPE, 1);
	load_fails(path, -EINVAL, "disk type 1");
	/* a fixed image one sector short of its size */
	create_image(path, "fixed", 4 * MiB, 0, NULL);
	uint8_t f[512];
	test_file_read(path, f, 512, footer_at(path));
	file_truncate(path, 4 * MiB - 512);
	test_file_write(path, f, 512, 4 * MiB - 1024);
	load_fails(path, -EINVAL, "truncated");
	file_truncate(path, 100);
	load_fails(path, -EINVAL, "too small");
	file_truncate(path, 0);
	load_fails(path, -EINVAL, "too small");

	/* dynamic: a damaged footer at the end falls back to the copy at 0 */
	create_image(path, "dynamic", 64 * MiB, 0, NULL);
	corrupt_byte(path, footer_at(path) + 70);
	struct image im;
	load_ok(&im, path);
	assert_true(im.vhd.footer_from_copy);
	assert_int_equal(im.vhd.virtual_size, 64 * MiB);
	assert_int_equal(im.vhd.footer_offset, file_size(path));
	image_close(&im);
	/* ...but not when the copy is damaged too */
	corrupt_byte(path, 70);
	load_fails(path, -EINVAL, "checksum");
	/* a good copy of a fixed disk's footer at 0 is data, not a copy */
	create_image(path, "fixed", 4 * MiB, 0, NULL);
	test_file_read(path, f, 512, footer_at(path));
	test_file_write(path, f, 512, 0);
	corrupt_byte(path, footer_at(path) + 70);
	load_fails(path, -EINVAL, "checksum");
	(void)err;
}

static void test_load_bad_header(void **state)
{
	(void)state;
	const char *path = test_path("badhead.vhd");

	create_image(path, NULL, 64 * MiB, 0, NULL);
	corrupt_byte(path, 512 + 40);
	load_fails(path, -EINVAL, "header checksum");
	create_image(path, NULL, 64 * MiB, 0, NULL);
	test_file_write(path, "cxsparsy", 8, 512);
	load_fails(path, -EINVAL, "cxsparse");
	create_image(path, NULL, 64 * MiB, 0, NULL);
	patch_header32(path, VHD_H_BLOCK_SIZE, 3 * MiB);
	load_fails(path, -EINVAL, "block size 3145728");
	create_image(path, NULL, 64 * MiB, 0, NULL);
	patch_header32(path, VHD_H_MAX_TABLE_ENTRIES, 0xffffffff);
	load_fails(path, -EINVAL, "4294967295 entries");
	create_image(path, NULL, 64 * MiB, 0, NULL);
	patch_header32(path, VHD_H_MAX_TABLE_ENTRIES, 1000000); /* plausible, not in the file */
	load_fails(path, -EINVAL, "extends past the end");
	create_image(path, NULL, 64 * MiB, 0, NULL);
	patch_header32(path, VHD_H_MAX_TABLE_ENTRIES, 31); /* 64 MiB needs 32 */
	load_fails(path, -EINVAL, "need 32 blocks");
	create_image(path, NULL, 64 * MiB, 0, NULL);
	patch_header64(path, VHD_H_TABLE_OFFSET, UINT64_C(1) << 62);
	load_fails(path, -EINVAL, "past the end");
	create_image(path, NULL, 64 * MiB, 0, NULL);
	patch_header64(path, VHD_H_TABLE_OFFSET, 512);
	load_fails(path, -EINVAL, "overlaps the dynamic header");
	create_image(path, NULL, 64 * MiB, 0, NULL);
	patch_footer32(path, 0, VHD_F_DATA_OFFSET + 4, 0x10000000);
	patch_footer32(path, footer_at(path), VHD_F_DATA_OFFSET + 4, 0x10000000);
	load_fails(path, -EINVAL, "dynamic header (at byte 268435456) lies past the end");
}

static void test_load_bad_bat(void **state)
{
	(void)state;
	const char *path = test_path("badbat.vhd");
	uint32_t bs = 512 * KiB;

	create_image(path, NULL, 8 * MiB, bs, NULL);
	uint64_t at = append_block(path, 3, bs, 1);
	uint64_t at4 = append_block(path, 4, bs, 2);
	struct image im;
	load_ok(&im, path);
	assert_int_equal(im.vhd.bat[3], at / 512);
	image_close(&im);
	expect_clean(path);

	set_bat(path, 12, (uint32_t)(file_size(path) / 512 + 10));
	load_fails(path, -EINVAL, "BAT entry 12 points past the end of the file");
	set_bat(path, 12, VHD_BAT_UNUSED);
	set_bat(path, 5, (uint32_t)(at / 512)); /* the same block twice */
	load_fails(path, -EINVAL, "BAT entries 3 and 5 overlap");
	set_bat(path, 5, (uint32_t)(at / 512 + 1)); /* one sector further: still overlaps */
	load_fails(path, -EINVAL, "overlap");
	set_bat(path, 5, 1); /* over the header */
	load_fails(path, -EINVAL, "BAT entry 5 points into the dynamic header");
	set_bat(path, 5, 3); /* over the BAT */
	load_fails(path, -EINVAL, "BAT entry 5 points into the BAT");
	set_bat(path, 5, VHD_BAT_UNUSED);
	/* the last block cut short */
	file_truncate(path, at4 + 512 + bs / 2);
	load_fails(path, -EINVAL, "BAT entry 4 points past the end");
	/* an entry beyond the disk's blocks but inside the table is checked too */
	create_image(path, NULL, 8 * MiB, bs, NULL);
	patch_header32(path, VHD_H_MAX_TABLE_ENTRIES, 20);
	set_bat(path, 19, 0xfffffff0);
	load_fails(path, -EINVAL, "BAT entry 19");
}

static void test_load_bad_locators(void **state)
{
	(void)state;
	const char *parent = test_path("lparent.vhd"), *child = test_path("lchild.vhd");
	create_image(parent, NULL, 8 * MiB, 0, NULL);

	size_t loc0 = VHD_H_LOCATORS;
	create_image(child, NULL, 0, 0, parent);
	patch_header32(child, loc0 + VHD_L_DATA_LENGTH, 0x7fffffff);
	load_fails(child, -EINVAL, "parent locator 0 (W2ku) claims 2147483647 bytes");
	create_image(child, NULL, 0, 0, parent);
	patch_header64(child, loc0 + VHD_L_DATA_OFFSET, UINT64_MAX - 10);
	load_fails(child, -EINVAL, "parent locator 0 (W2ku) points past the end");
	create_image(child, NULL, 0, 0, parent);
	patch_header64(child, loc0 + VHD_L_DATA_OFFSET, 1536);
	load_fails(child, -EINVAL, "parent locator 0 (W2ku) overlaps the BAT");
	/* undecodable UTF-16 (a lone surrogate): that locator is skipped, the other works */
	create_image(child, NULL, 0, 0, parent);
	struct image im;
	load_ok(&im, child);
	uint64_t off = im.vhd.header.locators[1].data_offset;
	image_close(&im);
	test_file_write(child, "\x00\xd8", 2, off);
	load_ok(&im, child);
	assert_null(im.vhd.header.locators[1].path);
	assert_non_null(im.vhd.parent_path);
	image_close(&im);
	/* a dynamic image's locators are not looked at */
	create_image(parent, NULL, 8 * MiB, 0, NULL);
	patch_header32(parent, loc0 + VHD_L_CODE, VHD_PLATFORM_W2KU);
	patch_header32(parent, loc0 + VHD_L_DATA_LENGTH, 0x7fffffff);
	load_ok(&im, parent);
	image_close(&im);
}

static void test_load_missing_parent(void **state)
{
	(void)state;
	const char *parent = test_path("gone.vhd"), *child = test_path("orphan.vhd");
	create_image(parent, NULL, 8 * MiB, 0, NULL);
	create_image(child, NULL, 0, 0, parent);
	assert_int_equal(unlink(parent), 0);

	struct image im;
	assert_int_equal(image_load(&im, child, false, false), -ENOENT);
	assert_non_null(strstr(im.err, "parent image \"gone.vhd\" not found"));
	assert_non_null(strstr(im.err, parent)); /* the paths tried */

	/* the parent appears next to the child under its name, but the locators are lost:
	 * the header's parent name is the last resort */
	create_image(parent, NULL, 8 * MiB, 0, NULL);
	patch_header32(child, VHD_H_LOCATORS + VHD_L_CODE, 0);
	patch_header32(child, VHD_H_LOCATORS + VHD_LOCATOR_SIZE + VHD_L_CODE, 0);
	load_ok(&im, child);
	assert_non_null(strstr(im.vhd.parent_path, "gone.vhd"));
	image_close(&im);
	assert_int_equal(unlink(parent), 0);
	assert_int_equal(image_load(&im, child, false, false), -ENOENT);
	assert_non_null(strstr(im.err, "gone.vhd"));
}

/* Locators written by other tools: Windows paths, MacX URLs. */
static void test_parent_locator_forms(void **state)
{
	(void)state;
	const char *parent = test_path("Parent Disk.vhd"), *child = test_path("forms.vhd");
	create_image(parent, NULL, 8 * MiB, 0, NULL);
	create_image(child, NULL, 0, 0, parent);
	struct image im;
	load_ok(&im, child);
	uint64_t off0 = im.vhd.header.locators[0].data_offset;
	uint64_t off1 = im.vhd.header.locators[1].data_offset;
	image_close(&im);

	/* W2ku "C:\\VMs\\Parent Disk.vhd" (name found next to the child), W2ru cleared */
	static const char win[] = "C:\\VMs\\Parent Disk.vhd";
	uint8_t u16[128] = { 0 };
	for (size_t i = 0; i < strlen(win); i++)
		u16[2 * i] = (uint8_t)win[i];
	test_file_write(child, u16, 2 * strlen(win), off0);
	patch_header32(child, VHD_H_LOCATORS + VHD_L_DATA_LENGTH, (uint32_t)(2 * strlen(win)));
	patch_header32(child, VHD_H_LOCATORS + VHD_LOCATOR_SIZE + VHD_L_CODE, 0);
	load_ok(&im, child);
	assert_string_equal(im.vhd.header.locators[0].path, win);
	assert_non_null(strstr(im.vhd.parent_path, "/Parent Disk.vhd"));
	image_close(&im);

	/* MacX "file://localhost/abs/Parent%20Disk.vhd" */
	char *abs = realpath(parent, NULL), url[1024], *w = url;
	w += sprintf(w, "file://localhost");
	for (const char *p = abs; *p; p++)
		w += *p == ' ' ? sprintf(w, "%%20") : sprintf(w, "%c", *p);
	test_file_write(child, url, strlen(url), off1);
	patch_header32(child, VHD_H_LOCATORS + VHD_LOCATOR_SIZE + VHD_L_CODE, VHD_PLATFORM_MACX);
	patch_header32(child, VHD_H_LOCATORS + VHD_LOCATOR_SIZE + VHD_L_DATA_LENGTH,
		       (uint32_t)strlen(url));
	patch_header32(child, VHD_H_LOCATORS + VHD_LOCATOR_SIZE + VHD_L_DATA_SPACE,
		       2); /* sectors */
	patch_header32(child, VHD_H_LOCATORS + VHD_L_CODE, 0);
	load_ok(&im, child);
	assert_string_equal(im.vhd.header.locators[1].path, abs);
	assert_string_equal(im.vhd.parent_path, abs);
	image_close(&im);
	free(abs);
}

/* The layout Hyper-V writes (as seen in a real differencing image): W2ku data at 0x1000
 * (4096 bytes reserved), the BAT at 0x2000, W2ru at 0xc000 (65536 bytes reserved, data
 * space in bytes), the first block at sector 0xe7 so that its data starts at 0x1d000. */
static void test_hyperv_layout(void **state)
{
	(void)state;
	const char *parent = test_path("hvparent.vhd"), *child = test_path("hvchild.vhd");
	create_image(parent, NULL, 64 * MiB, 0, NULL);
	unlink(child);
	int fd = open(child, O_RDWR | O_CREAT | O_EXCL, 0644);
	assert_true(fd >= 0);
	close(fd);

	struct vhd_footer f = {
		.features = 2,
		.version = VHD_VERSION,
		.data_offset = 512,
		.timestamp = 500000000,
		.creator_app = "win ",
		.creator_version = 0x00060001,
		.creator_host_os = VHD_HOST_OS_WINDOWS,
		.original_size = 20 * GiB,
		.current_size = 20 * GiB,
		.disk_type = VHD_TYPE_DIFFERENCING,
	};
	vhd_geometry(20 * GiB, &f.cylinders, &f.heads, &f.sectors);
	static const char w2ku[] = "C:\\VMs\\hvparent.vhd", w2ru[] = ".\\hvparent.vhd";
	struct vhd_header h = {
		.data_offset = VHD_NO_OFFSET,
		.table_offset = 0x2000,
		.version = VHD_HEADER_VERSION,
		.max_table_entries = 10240,
		.block_size = 2 * MiB,
		.parent_name = "hvparent.vhd",
	};
	h.locators[0] = (struct vhd_locator){ VHD_PLATFORM_W2KU, 4096, 2 * (sizeof(w2ku) - 1),
					      0x1000, NULL };
	h.locators[1] = (struct vhd_locator){ VHD_PLATFORM_W2RU, 65536, 2 * (sizeof(w2ru) - 1),
					      0xc000, NULL };
	uint8_t raw[VHD_HEADER_SIZE], u16[64] = { 0 };
	vhd_footer_build(&f, raw);
	test_file_write(child, raw, 512, 0);
	uint64_t end = 0x1ce00 + 512 + 2 * MiB;
	test_file_write(child, raw, 512, end);
	vhd_header_build(&h, raw);
	test_file_write(child, raw, sizeof(raw), 512);
	for (size_t i = 0; i < sizeof(w2ku) - 1; i++)
		u16[2 * i] = (uint8_t)w2ku[i];
	test_file_write(child, u16, 2 * (sizeof(w2ku) - 1), 0x1000);
	memset(u16, 0, sizeof(u16));
	for (size_t i = 0; i < sizeof(w2ru) - 1; i++)
		u16[2 * i] = (uint8_t)w2ru[i];
	test_file_write(child, u16, 2 * (sizeof(w2ru) - 1), 0xc000);
	uint8_t *bat = malloc(10240 * 4);
	memset(bat, 0xff, 10240 * 4);
	store_be32(bat, 0xe7);
	test_file_write(child, bat, 10240 * 4, 0x2000);
	free(bat);
	uint8_t bitmap[512];
	memset(bitmap, 0xff, sizeof(bitmap));
	test_file_write(child, bitmap, sizeof(bitmap), 0x1ce00);

	struct image im;
	load_ok(&im, child);
	assert_int_equal(im.vhd.virtual_size, 20 * GiB);
	assert_string_equal(im.vhd.header.locators[0].path, w2ku);
	assert_string_equal(im.vhd.header.locators[1].path, w2ru);
	assert_non_null(strstr(im.vhd.parent_path, "/hvparent.vhd"));
	image_close(&im);
	expect_clean(child);
	if (have_tool("vhdiinfo")) {
		char v[128];
		vhdi_field(child, "Parent filename", v, sizeof(v));
		assert_string_equal(v, "hvparent.vhd");
		assert_int_equal(vhdi_media_size(child), 20 * GiB);
	}
}

/* Virtual PC before 2004 wrote 511-byte footers. */
static void test_load_footer_511(void **state)
{
	(void)state;
	const char *path = test_path("vpc511.vhd");
	create_image(path, "fixed", 4 * MiB, 0, NULL);
	file_truncate(path, 4 * MiB + 511); /* the last byte of a footer is reserved, zero */
	struct image im;
	load_ok(&im, path);
	assert_int_equal(im.vhd.footer_offset, 4 * MiB);
	assert_int_equal(im.vhd.virtual_size, 4 * MiB);
	image_close(&im);
	uint8_t tail[512];
	test_file_read(path, tail, 512, 4 * MiB - 1);
	struct vdisk_probe p = { tail, 8, tail, 512, 4 * MiB + 511 };
	p.head = (const uint8_t *)"\0\0\0\0\0\0\0\0";
	assert_int_equal(vhd_probe(&p), 100);
}

/* Random damage to a differencing image's metadata must give errors, never crashes (run
 * under the sanitizer build; VHD_FUZZ_ROUNDS=n for a longer run). */
static void test_load_random_damage(void **state)
{
	(void)state;
	const char *parent = test_path("fparent.vhd"), *child = test_path("fuzz.vhd");
	const char *pristine = test_path("fuzz.orig");
	create_image(parent, NULL, 16 * MiB, 512 * KiB, NULL);
	create_image(child, NULL, 0, 512 * KiB, parent);
	append_block(child, 1, 512 * KiB, 7);
	append_block(child, 30, 512 * KiB, 8);
	assert_int_equal(test_run(NULL, 0, "cp '%s' '%s'", child, pristine), 0);
	uint64_t meta = 1536 + 512 + 4096, size = file_size(pristine);
	const char *env = getenv("VHD_FUZZ_ROUNDS");
	int rounds = env ? atoi(env) : 400, loaded = 0, fixed = 0;
	srand(1234);
	for (int round = 0; round < rounds; round++) {
		assert_int_equal(test_run(NULL, 0, "cp '%s' '%s'", pristine, child), 0);
		int flips = 1 + rand() % 4;
		for (int k = 0; k < flips; k++) {
			uint64_t at = (uint64_t)rand() % meta;
			if (rand() % 3 == 0)
				at = size - 512 + (uint64_t)rand() % 512;
			uint8_t b = (uint8_t)rand();
			test_file_write(child, &b, 1, at);
		}
		if (rand() % 2) { /* make header damage pass the checksum */
			uint8_t h[VHD_HEADER_SIZE];
			test_file_read(child, h, sizeof(h), 512);
			store_be32(h + VHD_H_CHECKSUM, vhd_checksum(h, sizeof(h), VHD_H_CHECKSUM));
			test_file_write(child, h, sizeof(h), 512);
		}
		struct image im;
		bool repair = round % 2;
		if (image_load(&im, child, repair, repair) != 0) {
			assert_true(im.err[0] != 0);
			continue;
		}
		struct vdisk_check_result r = { .findings = json_array() };
		assert_int_equal(vhd_check(&im.disk, repair ? VDISK_CHECK_REPAIR : 0, &r), 0);
		json_decref(r.findings);
		image_close(&im);
		loaded++;
		fixed += r.fixed > 0;
		if (!repair)
			continue;
		/* what a repair leaves loads strictly and checks without errors */
		struct check_out c;
		load_ok(&im, child);
		image_close(&im);
		run_check(child, false, &c);
		if (c.res.errors)
			fail_msg("round %d: errors left after repair:\n%s", round, c.text);
	}
	print_message("%d damaged images: %d loaded, %d repaired\n", rounds, loaded, fixed);
}

/* ---- check and repair ---- */

static void test_check_footers(void **state)
{
	(void)state;
	const char *path = test_path("chkfoot.vhd");
	struct check_out c;
	create_image(path, NULL, 16 * MiB, 512 * KiB, NULL);
	append_block(path, 2, 512 * KiB, 3);
	uint64_t size = file_size(path);

	corrupt_byte(path, size - 512 + 30);
	run_check(path, false, &c);
	assert_int_equal(c.res.errors, 1);
	assert_non_null(strstr(c.text, "footer at the end of the file is damaged"));
	run_check(path, true, &c);
	assert_int_equal(c.res.errors, 0);
	assert_true(c.res.fixed >= 1);
	assert_non_null(strstr(c.text, "rewrote it from the copy"));
	assert_int_equal(file_size(path), size); /* footer back in its place */
	expect_clean(path);

	corrupt_byte(path, 30);
	run_check(path, false, &c);
	assert_int_equal(c.res.errors, 1);
	assert_non_null(strstr(c.text, "footer copy at offset 0 is damaged"));
	run_check(path, true, &c);
	assert_int_equal(c.res.fixed, 1);
	expect_clean(path);

	/* both valid but different */
	patch_footer32(path, 0, VHD_F_TIMESTAMP, 42);
	run_check(path, false, &c);
	assert_non_null(strstr(c.text, "differs"));
	run_check(path, true, &c);
	expect_clean(path);
	uint8_t a[512], b[512];
	test_file_read(path, a, 512, 0);
	test_file_read(path, b, 512, footer_at(path));
	assert_memory_equal(a, b, 512);

	/* a torn end: the footer gone and the file cut short mid-sector */
	file_truncate(path, size - 300);
	run_check(path, true, &c);
	assert_int_equal(c.res.errors, 0);
	assert_int_equal(file_size(path), size); /* footer rewritten, dead tail reclaimed */
	expect_clean(path);
	struct image im;
	load_ok(&im, path);
	assert_false(im.vhd.footer_from_copy);
	image_close(&im);
}

static void test_check_repair_bat(void **state)
{
	(void)state;
	const char *path = test_path("chkbat.vhd");
	uint32_t bs = 512 * KiB;
	struct check_out c;
	create_image(path, NULL, 16 * MiB, bs, NULL);
	uint64_t b1 = append_block(path, 1, bs, 11);
	append_block(path, 4, bs, 12);

	/* an entry past the end: opened for repair, reported, dropped */
	set_bat(path, 9, (uint32_t)(file_size(path) / 512 + 100));
	struct image im;
	assert_int_equal(image_load(&im, path, false, true), 0);
	assert_int_equal(im.vhd.bad_bat_entries, 1);
	assert_int_equal(im.vhd.bat[9], VHD_BAT_UNUSED); /* masked in memory */
	image_close(&im);
	run_check(path, false, &c);
	assert_int_equal(c.res.errors, 1);
	assert_non_null(strstr(c.text, "BAT entry 9 points past the end"));
	run_check(path, true, &c);
	assert_int_equal(c.res.errors, 0);
	assert_int_equal(c.res.fixed, 1);
	assert_int_equal(get_bat(path, 9), VHD_BAT_UNUSED);
	expect_clean(path);

	/* two entries share a block: the second gets its own copy, both read as before */
	set_bat(path, 7, (uint32_t)(b1 / 512));
	run_check(path, false, &c);
	assert_non_null(strstr(c.text, "BAT entries 1 and 7 overlap"));
	uint64_t before = file_size(path);
	run_check(path, true, &c);
	assert_int_equal(c.res.errors, 0);
	assert_int_equal(get_bat(path, 1), b1 / 512);
	uint64_t moved = (uint64_t)get_bat(path, 7) * 512;
	assert_true(moved >= before - 512);
	assert_int_equal((moved + 512) % 4096, 0); /* data on a 4 KiB boundary */
	uint8_t *want = malloc(bs), *got = malloc(bs);
	test_fill_pattern(want, bs, 0, 11);
	test_file_read(path, got, bs, moved + 512);
	assert_memory_equal(got, want, bs);
	test_file_read(path, got, bs, b1 + 512);
	assert_memory_equal(got, want, bs);
	free(want);
	free(got);
	expect_clean(path);

	/* an entry into the BAT: dropped */
	set_bat(path, 2, 3);
	run_check(path, true, &c);
	assert_non_null(strstr(c.text, "points into the BAT"));
	assert_int_equal(get_bat(path, 2), VHD_BAT_UNUSED);
	expect_clean(path);
}

static void test_check_leaks(void **state)
{
	(void)state;
	const char *path = test_path("leaks.vhd");
	uint32_t bs = 512 * KiB;
	struct check_out c;
	create_image(path, NULL, 16 * MiB, bs, NULL);
	append_block(path, 0, bs, 1);
	uint64_t b = append_block(path, 1, bs, 2);
	uint64_t size = file_size(path);

	/* the last block's entry lost: its space leaks at the end, and is reclaimed */
	set_bat(path, 1, VHD_BAT_UNUSED);
	run_check(path, false, &c);
	assert_int_equal(c.res.errors, 0);
	assert_int_equal(c.res.leaks, 1);
	assert_non_null(strstr(c.text, "not used by any block"));
	run_check(path, true, &c);
	assert_int_equal(c.res.leaks, 0);
	assert_non_null(strstr(c.text, "reclaimed"));
	assert_int_equal(file_size(path), b + 512);
	expect_clean(path);

	/* a block in the middle lost: reported, not reclaimable */
	append_block(path, 1, bs, 2);
	append_block(path, 2, bs, 3);
	set_bat(path, 1, VHD_BAT_UNUSED);
	run_check(path, true, &c);
	assert_int_equal(c.res.leaks, 1);
	assert_non_null(strstr(c.text, "before the block at byte"));
	assert_int_equal(file_size(path), size + 512 + bs);

	/* alignment padding below 4 KiB before a block is no leak */
	create_image(path, NULL, 16 * MiB, bs, NULL);
	uint64_t at = footer_at(path); /* 2048 */
	uint8_t footer[512];
	test_file_read(path, footer, 512, at);
	uint64_t block = 4096 - 512; /* data at 4096 */
	test_file_write(path, footer, 512, block + 512 + bs);
	set_bat(path, 0, (uint32_t)(block / 512));
	expect_clean(path);
}

/* ---- info ---- */

static void test_info(void **state)
{
	(void)state;
	const char *parent = test_path("ibase.vhd"), *child = test_path("ichild.vhd");
	const char *grand = test_path("igrand.vhd");
	create_image(parent, NULL, 64 * MiB, 0, NULL);
	create_image(child, NULL, 0, 0, parent);
	create_image(grand, NULL, 0, 512 * KiB, child);
	append_block(grand, 3, 512 * KiB, 1);

	struct vdisk_options o = { .read_only = true,
				   .cache = VDISK_CACHE_WRITEBACK,
				   .engine = VDISK_ENGINE_SYNC,
				   .no_lock = true };
	struct vdisk *disk;
	char err[512];
	if (vdisk_open(grand, &o, &disk, err, sizeof(err)))
		fail_msg("vdisk_open: %s", err);
	assert_string_equal(vdisk_format_name(disk), "vhd");
	struct vdisk_info info;
	assert_int_equal(vdisk_get_info(disk, &info), 0);
	json_t *d = info.details;
	assert_int_equal(info.cluster_size, 512 * KiB);
	assert_string_equal(json_string_value(json_object_get(d, "type")), "differencing");
	assert_string_equal(json_string_value(json_object_get(d, "creator_app")), "win");
	assert_string_equal(json_string_value(json_object_get(d, "creator_version")), "10.0");
	assert_string_equal(json_string_value(json_object_get(d, "creator_host_os")), "Wi2k");
	const char *created = json_string_value(json_object_get(d, "created"));
	assert_int_equal(strlen(created), 20);
	assert_int_equal(created[19], 'Z');
	assert_int_equal(json_integer_value(json_object_get(d, "current_size")), 64 * MiB);
	assert_int_equal(json_integer_value(json_object_get(d, "bat_entries")), 128);
	assert_int_equal(json_integer_value(json_object_get(d, "allocated_blocks")), 1);
	json_t *geo = json_object_get(d, "geometry");
	assert_non_null(json_object_get(geo, "sectors_per_track"));
	assert_true(json_is_false(json_object_get(d, "saved_state")));

	json_t *p = json_object_get(d, "parent");
	assert_string_equal(json_string_value(json_object_get(p, "name")), "ichild.vhd");
	assert_non_null(strstr(json_string_value(json_object_get(p, "path")), "ichild.vhd"));
	json_t *locs = json_object_get(p, "locators");
	assert_int_equal(json_array_size(locs), 2);
	assert_string_equal(json_string_value(json_object_get(json_array_get(locs, 1), "platform")),
			    "W2ru");
	assert_string_equal(json_string_value(json_object_get(json_array_get(locs, 1), "path")),
			    ".\\ichild.vhd");
	/* the chain: child's details, then the base's */
	json_t *cd = json_object_get(p, "details");
	assert_string_equal(json_string_value(json_object_get(p, "format")), "vhd");
	assert_string_equal(json_string_value(json_object_get(cd, "type")), "differencing");
	json_t *base = json_object_get(json_object_get(cd, "parent"), "details");
	assert_string_equal(json_string_value(json_object_get(base, "type")), "dynamic");
	assert_null(json_object_get(base, "parent"));
	/* parent ids name the parents' unique ids */
	assert_string_equal(json_string_value(json_object_get(p, "unique_id")),
			    json_string_value(json_object_get(cd, "unique_id")));
	char base_id[64];
	snprintf(base_id, sizeof(base_id), "%s",
		 json_string_value(json_object_get(base, "unique_id")));
	assert_string_equal(
		json_string_value(json_object_get(json_object_get(cd, "parent"), "unique_id")),
		base_id);
	json_decref(d);
	vdisk_close(disk);

	if (have_tool("vhdiinfo")) { /* ids print the way libvhdi prints them */
		char v[128];
		vhdi_field(parent, "Identifier", v, sizeof(v));
		assert_string_equal(v, base_id);
	}
	if (have_tool("qemu-img")) { /* a UUID qemu made prints the same way */
		const char *q = test_path("qid.vhd");
		unlink(q);
		assert_int_equal(test_run(NULL, 0, "qemu-img create -q -f vpc '%s' 10M", q), 0);
		if (vdisk_open(q, &o, &disk, err, sizeof(err)))
			fail_msg("vdisk_open: %s", err);
		assert_int_equal(vdisk_get_info(disk, &info), 0);
		assert_string_equal(json_string_value(json_object_get(info.details, "creator_app")),
				    "qemu");
		assert_string_equal(
			json_string_value(json_object_get(info.details, "creator_version")), "5.3");
		if (have_tool("vhdiinfo")) {
			char v[128];
			vhdi_field(q, "Identifier", v, sizeof(v));
			assert_string_equal(
				json_string_value(json_object_get(info.details, "unique_id")), v);
		}
		json_decref(info.details);
		vdisk_close(disk);
	}
}

static int setup(void **state)
{
	(void)state;
	test_tmpdir();
	return vdisk_format_register(&stub_vhd);
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
		cmocka_unit_test(test_checksum_known_footer),
		cmocka_unit_test(test_geometry_spec_values),
		cmocka_unit_test(test_geometry_matches_qemu),
		cmocka_unit_test(test_virtual_size_rules),
		cmocka_unit_test(test_footer_header_roundtrip),
		cmocka_unit_test(test_parse_rejects),
		cmocka_unit_test(test_probe),
		cmocka_unit_test(test_load_qemu_images),
		cmocka_unit_test(test_create_fixed),
		cmocka_unit_test(test_create_dynamic),
		cmocka_unit_test(test_dynamic_written_by_qemu),
		cmocka_unit_test(test_create_differencing),
		cmocka_unit_test(test_create_differencing_on_qemu_parent),
		cmocka_unit_test(test_create_refusals),
		cmocka_unit_test(test_load_bad_footer),
		cmocka_unit_test(test_load_bad_header),
		cmocka_unit_test(test_load_bad_bat),
		cmocka_unit_test(test_load_bad_locators),
		cmocka_unit_test(test_load_missing_parent),
		cmocka_unit_test(test_parent_locator_forms),
		cmocka_unit_test(test_hyperv_layout),
		cmocka_unit_test(test_load_footer_511),
		cmocka_unit_test(test_load_random_damage),
		cmocka_unit_test(test_check_footers),
		cmocka_unit_test(test_check_repair_bat),
		cmocka_unit_test(test_check_leaks),
		cmocka_unit_test(test_info),
	};
	return cmocka_run_group_tests(tests, setup, teardown);
}
