/* vdisk mbr2gpt: disks partitioned by sfdisk/fdisk, file systems made by mkfs.vfat and
 * filled with mtools, converted, then judged by independent tools: gdisk's own MBR
 * conversion (sgdisk -g) for the expected layout, sgdisk -v and fdisk for the GPT, cmp for
 * untouched partition data, fsck.vfat and mtools for the file systems and the new ESP,
 * qemu-img to carry the disks in and out of VHD and VHDX. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <ctype.h>
#include <fcntl.h>
#include <jansson.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include "test_util.h"
#include "vdisk.h"
#include "vhdx.h"

#define MIB	 (1ull << 20)
#define ESP_TYPE "C12A7328-F81F-11D2-BA4B-00A0C93EC93B"

static const char *vdisk;
static char out[65536];

/* test_path() rotates through a few buffers: a test that keeps paths keeps copies. */
#define TEST_FILE(var, name)                                                                       \
	char var[600];                                                                             \
	snprintf(var, sizeof(var), "%s", test_path(name))

#define run(...) test_run_vdisk(out, sizeof(out), __VA_ARGS__)

/* A shell command that must succeed; its output is left in out. */
#define sh_ok(...)                                                                                 \
	do {                                                                                       \
		if (test_run(out, sizeof(out), __VA_ARGS__) != 0)                                  \
			fail_msg("command failed: %s", out);                                       \
	} while (0)

/* ---- building disks ---- */

/* A sparse raw disk of size_mib MiB partitioned by an sfdisk script. */
static void make_disk(const char *path, unsigned size_mib, const char *script)
{
	sh_ok("rm -f '%s' && truncate -s %uM '%s' && printf '%s' | sfdisk -q '%s'", path, size_mib,
	      path, script, path);
}

/* A FAT file system in the partition at byte offset, holding one file of pattern data. */
static void make_fat(const char *disk, uint64_t offset, uint64_t bytes, uint32_t seed,
		     const char *name)
{
	TEST_FILE(src, name);
	test_write_file(src, 300000 + seed, seed);
	sh_ok("mkfs.vfat -S 512 --offset %llu '%s' %llu >/dev/null",
	      (unsigned long long)(offset / 512), disk, (unsigned long long)(bytes / 1024));
	sh_ok("mcopy -i '%s@@%llu' '%s' ::/DATA.BIN", disk, (unsigned long long)offset, src);
}

/* Raw bytes into a file at an offset (hand-made partition tables). */
static void poke(const char *path, uint64_t offset, const void *buf, size_t len)
{
	int fd = open(path, O_WRONLY);
	assert_true(fd >= 0);
	assert_int_equal(pwrite(fd, buf, len, (off_t)offset), (ssize_t)len);
	close(fd);
}

struct mbr_entry {
	uint8_t status, type;
	uint32_t start, sectors;
};

/* Sector lba (of 512 bytes) of path becomes a boot record with the given entries and the
 * 0x55AA signature; no entries: a sector of zeros. */
static void write_record(const char *path, uint64_t lba, size_t n, const struct mbr_entry *e)
{
	uint8_t sector[512] = { 0 };
	for (size_t i = 0; i < n; i++) {
		uint8_t *p = sector + 446 + 16 * i;
		p[0] = e[i].status;
		p[4] = e[i].type;
		for (int b = 0; b < 4; b++) {
			p[8 + b] = (uint8_t)(e[i].start >> (8 * b));
			p[12 + b] = (uint8_t)(e[i].sectors >> (8 * b));
		}
	}
	if (n) {
		sector[510] = 0x55;
		sector[511] = 0xAA;
	}
	poke(path, lba * 512, sector, sizeof(sector));
}

#define RECORD(path, lba, ...)                                                                     \
	write_record(path, lba,                                                                    \
		     sizeof((struct mbr_entry[]){ __VA_ARGS__ }) / sizeof(struct mbr_entry),       \
		     (struct mbr_entry[]){ __VA_ARGS__ })

static void blank_disk(const char *path, unsigned size_mib)
{
	sh_ok("rm -f '%s' && truncate -s %uM '%s'", path, size_mib, path);
}

/* ---- oracles ---- */

static json_t *sfdisk_partitions(const char *path)
{
	sh_ok("sfdisk --json '%s' 2>/dev/null", path);
	json_error_t e;
	json_t *root = json_loads(out, 0, &e);
	if (!root)
		fail_msg("sfdisk --json: %s\n%s", e.text, out);
	json_t *parts =
		json_incref(json_object_get(json_object_get(root, "partitiontable"), "partitions"));
	json_decref(root);
	return parts;
}

static const char *node_number(json_t *part)
{
	const char *node = json_string_value(json_object_get(part, "node"));
	const char *p = node + strlen(node);
	while (p > node && p[-1] >= '0' && p[-1] <= '9')
		p--;
	return p;
}

static json_t *find_node(json_t *parts, const char *number)
{
	size_t i;
	json_t *p;
	json_array_foreach (parts, i, p) {
		if (!strcmp(node_number(p), number))
			return p;
	}
	return NULL;
}

/* Same numbers, starts, sizes and types as the layout gdisk's conversion produced. */
static void assert_same_layout(const char *ours, const char *gdisk)
{
	json_t *a = sfdisk_partitions(ours), *b = sfdisk_partitions(gdisk);
	size_t i;
	json_t *p;
	json_array_foreach (b, i, p) {
		json_t *q = find_node(a, node_number(p));
		if (!q)
			fail_msg("partition %s of gdisk's conversion is missing", node_number(p));
		assert_int_equal(json_integer_value(json_object_get(q, "start")),
				 json_integer_value(json_object_get(p, "start")));
		assert_int_equal(json_integer_value(json_object_get(q, "size")),
				 json_integer_value(json_object_get(p, "size")));
		assert_string_equal(json_string_value(json_object_get(q, "type")),
				    json_string_value(json_object_get(p, "type")));
	}
	json_decref(a);
	json_decref(b);
}

static void assert_gpt_clean(const char *path)
{
	sh_ok("sgdisk -v '%s'", path);
	assert_contains(out, "No problems found");
	if (strcasestr(out, "invalid GPT") || strcasestr(out, "corrupt"))
		fail_msg("sgdisk -v:\n%s", out);
}

/* Every partition of the MBR disk `before` holds the same bytes in `after`. */
static void assert_partitions_untouched(const char *before, json_t *mbr_parts, const char *after)
{
	size_t i;
	json_t *p;
	json_array_foreach (mbr_parts, i, p) {
		const char *type = json_string_value(json_object_get(p, "type"));
		if (!strcmp(type, "5") || !strcmp(type, "f") || !strcmp(type, "85"))
			continue;
		long long start = json_integer_value(json_object_get(p, "start")) * 512;
		long long size = json_integer_value(json_object_get(p, "size")) * 512;
		if (test_run(out, sizeof(out), "cmp -i %lld:%lld -n %lld '%s' '%s'", start, start,
			     size, before, after) != 0)
			fail_msg("partition %s changed: %s", node_number(p), out);
	}
}

/* The FAT file system at offset passes fsck.vfat on an extracted copy and still holds the
 * file make_fat put there. */
static void assert_fat_intact(const char *disk, uint64_t offset, uint64_t bytes, const char *name)
{
	TEST_FILE(copy, "extracted.fat");
	sh_ok("dd if='%s' of='%s' bs=1M skip=%llu count=%llu iflag=skip_bytes,count_bytes "
	      "status=none",
	      disk, copy, (unsigned long long)offset, (unsigned long long)bytes);
	sh_ok("fsck.vfat -n '%s'", copy);
	TEST_FILE(back, "readback.bin");
	sh_ok("rm -f '%s' && mcopy -i '%s' ::/DATA.BIN '%s' && cmp '%s' '%s'", back, copy, back,
	      back, test_path(name));
}

/* The ESP at [first, first + sectors) of a disk with sector_size sectors: a FAT32 that
 * fsck.vfat accepts and mtools can write to and read back. */
static void assert_esp_usable(const char *disk, uint64_t first, uint64_t sectors,
			      uint32_t sector_size)
{
	TEST_FILE(copy, "esp.fat");
	sh_ok("dd if='%s' of='%s' bs=1M skip=%llu count=%llu iflag=skip_bytes,count_bytes "
	      "status=none",
	      disk, copy, (unsigned long long)(first * sector_size),
	      (unsigned long long)(sectors * sector_size));
	sh_ok("fsck.vfat -v -n '%s'", copy);
	assert_contains(out, "32 bit entries");
	if (strstr(out, "Logical sector size is zero") || strstr(out, "FATs differ"))
		fail_msg("fsck.vfat:\n%s", out);
	sh_ok("mmd -i '%s' ::/EFI && mmd -i '%s' ::/EFI/BOOT && mcopy -i '%s' /etc/hostname "
	      "::/EFI/BOOT/TEST.TXT && mtype -i '%s' ::/EFI/BOOT/TEST.TXT | cmp - /etc/hostname",
	      copy, copy, copy, copy);
	sh_ok("fsck.vfat -n '%s'", copy);
}

/* Copies the data of src into dst (the same size) through the block layer: QEMU cannot
 * open VHDX files with 4 KiB logical sectors, so these travel in and out this way. */
static void copy_image(const char *src, const char *dst, const char *dst_format)
{
	struct vdisk_options ro = { .read_only = true, .cache = VDISK_CACHE_WRITEBACK };
	struct vdisk_options rw = { .cache = VDISK_CACHE_WRITEBACK, .format = dst_format };
	struct vdisk *from, *to;
	char err[256];
	if (vdisk_open(src, &ro, &from, err, sizeof(err)) < 0)
		fail_msg("open %s: %s", src, err);
	if (vdisk_open(dst, &rw, &to, err, sizeof(err)) < 0)
		fail_msg("open %s: %s", dst, err);
	assert_int_equal(vdisk_size(from), vdisk_size(to));
	static uint8_t buf[1 << 20], zeros[1 << 20];
	for (uint64_t off = 0; off < vdisk_size(from); off += sizeof(buf)) {
		assert_int_equal(vdisk_pread(from, buf, sizeof(buf), off), 0);
		if (memcmp(buf, zeros, sizeof(buf)))
			assert_int_equal(vdisk_pwrite(to, buf, sizeof(buf), off), 0);
	}
	assert_int_equal(vdisk_flush_sync(to), 0);
	vdisk_close(to);
	vdisk_close(from);
}

static bool have_tools(void)
{
	return test_run(NULL, 0,
			"command -v sfdisk && command -v sgdisk && command -v mkfs.vfat && "
			"command -v fsck.vfat && command -v mcopy && command -v qemu-img && "
			"command -v fdisk") == 0;
}

/* ---- tests ---- */

static void test_help_and_usage(void **state)
{
	(void)state;
	assert_int_equal(run("mbr2gpt --help"), 0);
	assert_contains(out, "Usage: vdisk mbr2gpt");
	assert_contains(out, "--create-esp");
	assert_int_equal(run("mbr2gpt"), 3);
	assert_contains(out, "missing FILE");
	assert_int_equal(run("mbr2gpt --map 83 x.raw"), 3);
	assert_contains(out, "MBRTYPE=GUID");
	assert_int_equal(run("mbr2gpt --map 0x100=0FC63DAF-8483-4772-8E79-3D69D8477DE4 x.raw"), 3);
	assert_int_equal(run("mbr2gpt --create-esp=lots x.raw"), 3);
	assert_int_equal(run("mbr2gpt --bogus x.raw"), 3);
	assert_int_equal(run("mbr2gpt %s", test_path("missing.raw")), 2);
	assert_contains(out, "hint:");
}

/* Primaries, an extended partition with two logicals, a bootable flag, a gap, FAT file
 * systems with data: the result matches gdisk's own conversion and the data stays. */
static const char *const mixed_script = "label: dos\\n"
					"start=2048, size=20M, type=c, bootable\\n"
					"start=43008, size=60M, type=5\\n"
					"start=188416, size=10M, type=82\\n"
					"start=45056, size=16M, type=83\\n"
					"start=83968, size=20M, type=6\\n";

static void make_mixed_disk(const char *path)
{
	make_disk(path, 160, mixed_script);
	make_fat(path, 2048 * 512, 20 * MIB, 1, "p1.bin");
	make_fat(path, 83968 * 512, 20 * MIB, 2, "p6.bin");
	/* pattern data straight into the Linux logical partition */
	TEST_FILE(data, "p5.bin");
	test_write_file(data, 16 * MIB, 3);
	sh_ok("dd if='%s' of='%s' bs=1M seek=%llu oflag=seek_bytes conv=notrunc status=none", data,
	      path, 45056ull * 512);
	/* recognisable boot code, which must survive */
	sh_ok("printf 'BOOTCODE-SENTINEL' | dd of='%s' bs=1 seek=100 conv=notrunc status=none",
	      path);
}

static void test_convert_raw(void **state)
{
	(void)state;
	TEST_FILE(img, "mixed.raw");
	TEST_FILE(orig, "mixed-orig.raw");
	TEST_FILE(gdisk, "mixed-gdisk.raw");
	make_mixed_disk(img);
	sh_ok("cp --sparse=always '%s' '%s' && cp --sparse=always '%s' '%s'", img, orig, img,
	      gdisk);
	sh_ok("sgdisk -g '%s'", gdisk);
	json_t *mbr = sfdisk_partitions(orig);

	assert_int_equal(run("mbr2gpt %s", img), 0);
	assert_contains(out, "converted to GPT");

	assert_gpt_clean(img);
	assert_same_layout(img, gdisk);
	assert_partitions_untouched(orig, mbr, img);
	assert_fat_intact(img, 2048 * 512, 20 * MIB, "p1.bin");
	assert_fat_intact(img, 83968 * 512, 20 * MIB, "p6.bin");
	sh_ok("cmp -n 440 '%s' '%s'", orig, img);

	sh_ok("sgdisk -i 1 '%s'", img);
	assert_contains(out, "Attribute flags: 0000000000000004");
	assert_contains(out, "Partition name: 'Basic data partition'");
	sh_ok("sgdisk -i 5 '%s'", img);
	assert_contains(out, "Attribute flags: 0000000000000000");
	assert_contains(out, "Partition name: 'Linux filesystem'");
	sh_ok("fdisk -l '%s'", img);
	assert_contains(out, "Disklabel type: gpt");
	/* the extended container is gone; nothing else appeared */
	json_t *gpt = sfdisk_partitions(img);
	assert_int_equal(json_array_size(gpt), 4);
	assert_null(find_node(gpt, "2"));
	json_decref(gpt);
	json_decref(mbr);

	assert_int_equal(run("mbr2gpt --validate %s", img), 1);
	assert_contains(out, "already has a GPT");
	assert_int_equal(run("mbr2gpt %s", img), 2);
	assert_contains(out, "already has a GPT");
}

/* sgdisk prints GUIDs in upper case. */
static void upper(char *dst, size_t size, const char *src)
{
	assert_non_null(src);
	snprintf(dst, size, "%s", src);
	for (char *p = dst; *p; p++)
		*p = (char)toupper((unsigned char)*p);
}

/* The JSON report lists both layouts; GUIDs are version 4 and match what sgdisk reads. */
static void test_json_report(void **state)
{
	(void)state;
	TEST_FILE(img, "json.raw");
	make_disk(img, 64, "label: dos\\nstart=2048, size=10M, type=83, bootable\\n");
	assert_int_equal(run("mbr2gpt --json %s", img), 0);
	json_error_t e;
	json_t *root = json_loads(out, 0, &e);
	if (!root)
		fail_msg("not JSON: %s\n%s", e.text, out);
	assert_true(json_is_true(json_object_get(root, "converted")));
	json_t *before = json_array_get(json_object_get(root, "before"), 0);
	assert_int_equal(json_integer_value(json_object_get(before, "start")), 2048);
	assert_string_equal(json_string_value(json_object_get(before, "type")), "0x83");
	json_t *after = json_array_get(json_object_get(root, "after"), 0);
	assert_int_equal(json_integer_value(json_object_get(after, "end")), 2048 + 20480 - 1);
	assert_string_equal(json_string_value(json_object_get(after, "name")), "Linux filesystem");
	char guid[64], disk_guid[64];
	upper(guid, sizeof(guid), json_string_value(json_object_get(after, "guid")));
	upper(disk_guid, sizeof(disk_guid), json_string_value(json_object_get(root, "disk_guid")));
	assert_int_equal(strlen(guid), 36);
	assert_int_equal(guid[14], '4'); /* version 4: random */
	sh_ok("sgdisk -i 1 '%s'", img);
	assert_contains(out, guid);
	sh_ok("sgdisk -p '%s'", img);
	assert_contains(out, disk_guid);
	json_decref(root);
}

static void test_validate_changes_nothing(void **state)
{
	(void)state;
	TEST_FILE(img, "validate.raw");
	TEST_FILE(orig, "validate-orig.raw");
	make_mixed_disk(img);
	sh_ok("cp '%s' '%s'", img, orig);
	assert_int_equal(run("mbr2gpt --validate --create-esp=40M %s", img), 0);
	assert_contains(out, "can be converted");
	assert_contains(out, "(planned)");
	sh_ok("cmp '%s' '%s'", img, orig);
	/* a refusal: --validate says no (1), conversion fails (2), nothing changes */
	assert_int_equal(run("mbr2gpt --validate --create-esp %s", img), 1);
	assert_contains(out, "more bytes are needed");
	assert_int_equal(run("mbr2gpt --create-esp %s", img), 2);
	assert_contains(out, "image is unchanged");
	sh_ok("cmp '%s' '%s'", img, orig);
	/* another writer holds the image: refused before anything is read */
	assert_int_equal(
		test_run(out, sizeof(out), "flock -x '%s' '%s' mbr2gpt '%s'", img, vdisk, img), 2);
	assert_contains(out, "stop the VM or tool");
	assert_int_equal(run("mbr2gpt --create-esp 8T %s", img), 2);
	assert_contains(out, "too large for FAT32");
	/* what the GPT will replace is reported: a BIOS boot loader after the MBR */
	poke(img, 512 * 5, "GRUB-CORE", 9);
	assert_int_equal(run("mbr2gpt --validate %s", img), 0);
	assert_contains(out, "LBA 1-33 are not empty");
	assert_contains(out, "what to do:");
}

/* The default 100 MiB ESP after the last partition: FAT32 that fsck.vfat and mtools
 * accept; the other partitions keep their data. */
static void test_create_esp(void **state)
{
	(void)state;
	TEST_FILE(img, "esp.raw");
	TEST_FILE(orig, "esp-orig.raw");
	make_disk(img, 200, "label: dos\\nstart=2048, size=40M, type=7\\n");
	make_fat(img, 2048 * 512, 40 * MIB, 4, "esp-p1.bin");
	sh_ok("cp '%s' '%s'", img, orig);
	assert_int_equal(run("mbr2gpt --create-esp %s", img), 0);
	assert_gpt_clean(img);
	json_t *gpt = sfdisk_partitions(img);
	json_t *esp = find_node(gpt, "2");
	assert_non_null(esp);
	assert_string_equal(json_string_value(json_object_get(esp, "type")), ESP_TYPE);
	assert_string_equal(json_string_value(json_object_get(esp, "name")),
			    "EFI system partition");
	uint64_t first = (uint64_t)json_integer_value(json_object_get(esp, "start"));
	uint64_t sectors = (uint64_t)json_integer_value(json_object_get(esp, "size"));
	assert_int_equal(sectors * 512, 100 * MIB);
	assert_int_equal(first % 2048, 0);
	assert_true(first >= 2048 + 40 * 2048);
	assert_esp_usable(img, first, sectors, 512);
	assert_fat_intact(img, 2048 * 512, 40 * MIB, "esp-p1.bin");
	json_decref(gpt);
}

/* No room at the end: the report says how much is missing, and growing the disk by that
 * much is enough. The ESP also goes into a gap between partitions when one is big enough. */
static void test_esp_placement(void **state)
{
	(void)state;
	TEST_FILE(img, "tight.raw");
	make_disk(img, 64, "label: dos\\nstart=2048, size=40M, type=83\\n");
	assert_int_equal(run("mbr2gpt --create-esp 40M %s", img), 2);
	assert_contains(out, "more bytes are needed");
	assert_contains(out, "vdisk resize");
	const char *size = strstr(out, "vdisk resize ");
	assert_non_null(size);
	size = strchr(size + strlen("vdisk resize "), ' ') + 1;
	unsigned long long grow_to = strtoull(size, NULL, 10);
	assert_true(grow_to > 64 * MIB);
	sh_ok("truncate -s %llu '%s'", grow_to, img);
	assert_int_equal(run("mbr2gpt --create-esp 40M %s", img), 0);
	assert_gpt_clean(img);

	TEST_FILE(gap, "gap.raw");
	make_disk(gap, 200,
		  "label: dos\\nstart=2048, size=10M, type=83\\n"
		  "start=165888, size=110M, type=83\\n");
	assert_int_equal(run("mbr2gpt --create-esp=50M %s", gap), 0);
	json_t *gpt = sfdisk_partitions(gap);
	json_t *esp = find_node(gpt, "3");
	assert_non_null(esp);
	assert_int_equal(json_integer_value(json_object_get(esp, "start")), 22528);
	assert_esp_usable(gap, 22528, 102400, 512);
	json_decref(gpt);
	assert_gpt_clean(gap);

	/* too small to be FAT32 */
	make_disk(gap, 200, "label: dos\\nstart=2048, size=10M, type=83\\n");
	assert_int_equal(run("mbr2gpt --create-esp=20M %s", gap), 2);
	assert_contains(out, "too small for FAT32");
}

/* Refusals a user can run into, each with its reason, each leaving the disk unchanged. */
static void assert_refused(const char *img, const char *extra, const char *why)
{
	TEST_FILE(orig, "refused-orig.raw");
	sh_ok("cp '%s' '%s'", img, orig);
	assert_int_equal(run("mbr2gpt --validate %s %s", extra, img), 1);
	assert_contains(out, why);
	assert_contains(out, "what to do:");
	assert_int_equal(run("mbr2gpt %s %s", extra, img), 2);
	assert_contains(out, why);
	assert_contains(out, "unchanged");
	if (test_run(NULL, 0, "cmp -s '%s' '%s'", img, orig) != 0)
		fail_msg("%s changed", img);
}

static void test_refusals(void **state)
{
	(void)state;
	TEST_FILE(img, "refuse.raw");
	make_disk(img, 64, "label: dos\\nstart=1, size=2047, type=83\\n");
	assert_refused(img, "", "inside the primary GPT");

	make_disk(img, 64, "label: dos\\nstart=2048, size=129014, type=83\\n");
	assert_refused(img, "", "inside the last 33 sectors");

	make_disk(img, 64, "label: dos\\nstart=2048, size=10M, type=da\\n");
	assert_refused(img, "", "--map 0xda=");
	assert_int_equal(run("mbr2gpt --map 0xDA=0FC63DAF-8483-4772-8E79-3D69D8477DE4 %s", img), 0);
	sh_ok("sgdisk -i 1 '%s'", img);
	assert_contains(out, "0FC63DAF-8483-4772-8E79-3D69D8477DE4");

	make_disk(img, 64, "label: dos\\nstart=2048, size=10M, type=ef\\n");
	assert_refused(img, "--create-esp=40M", "already has an EFI system partition");

	blank_disk(img, 64);
	assert_refused(img, "", "no MBR signature");

	blank_disk(img, 64);
	RECORD(img, 0, { 0, 0x83, 2048, 20480 }, { 0, 0x83, 20480, 20480 });
	assert_refused(img, "", "overlap");
}

/* Hostile tables: loops, ranges past the end, zero lengths, broken links. Each ends in a
 * clear error; none crashes or hangs. */
static void test_hostile_tables(void **state)
{
	(void)state;
	TEST_FILE(img, "hostile.raw");

	/* an extended chain whose second record links back to the first */
	blank_disk(img, 64);
	RECORD(img, 0, { 0, 0x05, 2048, 100000 });
	RECORD(img, 2048, { 0, 0x83, 2048, 4096 }, { 0, 0x05, 8192, 8192 });
	RECORD(img, 2048 + 8192, { 0, 0x83, 2048, 4096 }, { 0, 0x05, 0, 8192 });
	assert_refused(img, "", "points back (a loop)");

	/* a record that links to itself */
	RECORD(img, 2048, { 0, 0, 0, 0 }, { 0, 0x05, 0, 8192 });
	assert_refused(img, "", "points back (a loop)");

	/* a partition past the end of the disk, one with zero length */
	blank_disk(img, 64);
	RECORD(img, 0, { 0, 0x83, 2048, 0xFFFFFF00u }, { 0, 0x07, 4096, 0 });
	assert_refused(img, "", "ends past the end of the disk");
	assert_contains(out, "zero length");

	/* a logical partition past its container; a boot record without a signature */
	blank_disk(img, 64);
	RECORD(img, 0, { 0, 0x0F, 2048, 8192 });
	RECORD(img, 2048, { 0, 0x83, 2048, 100000 });
	assert_refused(img, "", "ends past its extended partition");
	write_record(img, 2048, 0, NULL);
	assert_refused(img, "", "no 0x55AA signature");

	/* garbage in the status byte: a file system's boot sector, not a table */
	blank_disk(img, 64);
	RECORD(img, 0, { 0x4F, 0x83, 2048, 8192 });
	assert_refused(img, "", "invalid boot flag");

	/* a chain of 130 logical partitions: more than a GPT holds */
	blank_disk(img, 64);
	RECORD(img, 0, { 0, 0x05, 2048, 130 * 16 + 16 });
	for (uint32_t i = 0; i < 130; i++)
		RECORD(img, 2048 + i * 16, { 0, 0x83, 1, 15 }, { 0, 0x05, (i + 1) * 16, 16 });
	assert_refused(img, "", "more than 124 logical partitions");
}

/* The disk converted inside a VHDX and a VHD (carried there and back by qemu-img): the
 * same checks as on raw. */
static void convert_in_image(const char *qemu_format, const char *qemu_opts, const char *ext)
{
	TEST_FILE(raw, "carried.raw");
	TEST_FILE(gdisk, "carried-gdisk.raw");
	TEST_FILE(back, "carried-back.raw");
	TEST_FILE(img, ext);
	make_mixed_disk(raw);
	sh_ok("cp --sparse=always '%s' '%s' && sgdisk -g '%s'", raw, gdisk, gdisk);
	sh_ok("rm -f '%s' && qemu-img convert -f raw -O %s %s '%s' '%s'", img, qemu_format,
	      qemu_opts, raw, img);
	json_t *mbr = sfdisk_partitions(raw);
	assert_int_equal(run("mbr2gpt --create-esp=40M %s", img), 0);
	if (!strcmp(qemu_format, "vhdx"))
		sh_ok("qemu-img check '%s'", img);
	else
		sh_ok("vhdiinfo '%s'", img);
	sh_ok("rm -f '%s' && qemu-img convert -O raw '%s' '%s'", back, img, back);
	assert_gpt_clean(back);
	assert_same_layout(back, gdisk);
	assert_partitions_untouched(raw, mbr, back);
	assert_fat_intact(back, 83968 * 512, 20 * MIB, "p6.bin");
	json_t *gpt = sfdisk_partitions(back);
	json_t *esp = find_node(gpt, "2");
	assert_non_null(esp);
	assert_string_equal(json_string_value(json_object_get(esp, "type")), ESP_TYPE);
	assert_esp_usable(back, (uint64_t)json_integer_value(json_object_get(esp, "start")),
			  (uint64_t)json_integer_value(json_object_get(esp, "size")), 512);
	json_decref(gpt);
	json_decref(mbr);
}

static void test_convert_vhdx(void **state)
{
	(void)state;
	convert_in_image("vhdx", "", "mixed.vhdx");
}

static void test_convert_vhd(void **state)
{
	(void)state;
	convert_in_image("vpc", "-o subformat=dynamic,force_size=on", "mixed.vhd");
}

/* One partition line of `fdisk -x -o Device,Start,End,Type-UUID,Attrs` (in out). */
struct fdisk_row {
	unsigned long long first, last;
	char type[40], attrs[40];
};

static bool fdisk_row(const char *disk, unsigned number, struct fdisk_row *row)
{
	char device[700];
	snprintf(device, sizeof(device), "\n%s%u ", disk, number);
	const char *line = strstr(out, device);
	if (!line)
		return false;
	row->attrs[0] = 0;
	return sscanf(line + strlen(device), "%llu %llu %39s %39s", &row->first, &row->last,
		      row->type, row->attrs) >= 3;
}

/* A 4 KiB-sector VHDX: the MBR counts 4 KiB sectors, the GPT starts its usable space at
 * LBA 6, and the ESP defaults to 260 MiB (FAT32 with 4 KiB clusters). fdisk -b 4096
 * partitions and reads the raw copies. */
static void test_convert_vhdx_4k(void **state)
{
	(void)state;
	TEST_FILE(raw, "k4.raw");
	TEST_FILE(back, "k4-back.raw");
	TEST_FILE(img, "k4.vhdx");
	TEST_FILE(data, "k4.bin");
	sh_ok("rm -f '%s' && truncate -s 400M '%s'", raw, raw);
	sh_ok("printf 'o\\nn\\np\\n1\\n256\\n+20M\\nt\\nc\\na\\nn\\ne\\n2\\n\\n+40M\\nn\\nl\\n\\n"
	      "+10M\\nw\\n' | fdisk -b 4096 '%s'",
	      raw);
	sh_ok("mkfs.vfat -S 4096 --offset 256 '%s' %d >/dev/null", raw, 20 * 1024);
	test_write_file(data, 123457, 9);
	sh_ok("mcopy -i '%s@@%d' '%s' ::/DATA.BIN", raw, 256 * 4096, data);
	assert_int_equal(run("create -f vhdx --logical-sector-size 4096 %s 400M", img), 0);
	copy_image(raw, img, NULL);

	assert_int_equal(run("mbr2gpt --validate %s", img), 0);
	assert_contains(out, "5632"); /* logical partition 5, in 4 KiB sectors */
	assert_int_equal(run("mbr2gpt --create-esp --json %s", img), 0);
	assert_contains(out, "\"sector_size\": 4096");
	assert_int_equal(run("check %s", img), 0);
	sh_ok("rm -f '%s' && truncate -s 400M '%s'", back, back);
	copy_image(img, back, "raw");

	sh_ok("fdisk -b 4096 -x -o Device,Start,End,Type-UUID,Attrs '%s'", back);
	if (strcasestr(out, "corrupt") || strcasestr(out, "invalid"))
		fail_msg("fdisk:\n%s", out);
	assert_contains(out, "Disklabel type: gpt");
	assert_contains(out, "First usable LBA: 6");
	struct fdisk_row p1, p5, esp;
	assert_true(fdisk_row(back, 1, &p1));
	assert_true(fdisk_row(back, 5, &p5));
	assert_true(fdisk_row(back, 2, &esp));
	assert_int_equal(p1.first, 256);
	assert_int_equal(p1.last, 5375);
	assert_string_equal(p1.type, "EBD0A0A2-B9E5-4433-87C0-68B6B72699C7");
	assert_string_equal(p1.attrs, "LegacyBIOSBootable");
	assert_int_equal(p5.first, 5632);
	assert_int_equal(p5.last, 8191);
	assert_string_equal(p5.type, "0FC63DAF-8483-4772-8E79-3D69D8477DE4");
	assert_string_equal(esp.type, ESP_TYPE);
	assert_int_equal((esp.last - esp.first + 1) * 4096, 260 * MIB);
	assert_int_equal(esp.first % 256, 0);
	assert_esp_usable(back, esp.first, esp.last - esp.first + 1, 4096);
	assert_fat_intact(back, 256 * 4096, 20 * MIB, "k4.bin");
}

int main(void)
{
	vhdx_register();
	vdisk = test_vdisk_binary();
	if (!vdisk)
		return TEST_SKIP;
	if (!have_tools()) {
		fprintf(stderr, "needs sfdisk, fdisk, sgdisk, mkfs.vfat, fsck.vfat, mtools and "
				"qemu-img (scripts/install-deps.sh)\n");
		return TEST_SKIP;
	}
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_help_and_usage),
		cmocka_unit_test(test_convert_raw),
		cmocka_unit_test(test_json_report),
		cmocka_unit_test(test_validate_changes_nothing),
		cmocka_unit_test(test_create_esp),
		cmocka_unit_test(test_esp_placement),
		cmocka_unit_test(test_refusals),
		cmocka_unit_test(test_hostile_tables),
		cmocka_unit_test(test_convert_vhdx),
		cmocka_unit_test(test_convert_vhd),
		cmocka_unit_test(test_convert_vhdx_4k),
	};
	return cmocka_run_group_tests(tests, NULL, test_teardown_tmpdir);
}
