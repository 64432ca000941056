/* vdisk compact on raw, VHD and VHDX images (dynamic and differencing): the content reads
 * the same afterwards (qemu-img compare against a raw copy made before, or our own reads
 * of differencing chains, which QEMU does not open), the file really shrinks by the blocks
 * the scenario releases (block counts from `vdisk info --json` and qemu-img map), the
 * results pass qemu-img check, vdisk check and vhdiinfo, and a second compact changes
 * nothing. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <jansson.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "test_cli.h"
#include "test_disk.h"
#include "test_util.h"
#include "vdisk.h"
#include "vhd.h"
#include "vhdx.h"

#define MiB		       (UINT64_C(1) << 20)
#define VHDX_TEST_HEADER_BYTES MiB /* headers a read-write open renews */

struct vdisk *test_open_disks[TEST_MAX_OPEN_DISKS];
static const char *vdisk_bin;
static char out[65536];

#define run(...) test_run_vdisk(out, sizeof(out), __VA_ARGS__)

/* ---- images through the library ---- */

static struct vdisk *open_disk(const char *path, bool read_only)
{
	struct vdisk_options o = { .read_only = read_only, .cache = VDISK_CACHE_WRITEBACK };
	struct vdisk *disk;
	char err[256];
	int ret = vdisk_open(path, &o, &disk, err, sizeof(err));
	if (ret < 0)
		fail_msg("cannot open %s: %s", path, err);
	assert_int_equal(test_track_disk(disk), 0);
	return disk;
}

static void write_zeros(struct vdisk *disk, uint64_t off, uint64_t len)
{
	uint8_t *buf = calloc(1, len);
	assert_non_null(buf);
	assert_int_equal(vdisk_pwrite(disk, buf, len, off), 0);
	free(buf);
}

/* `vdisk create ARGS PATH SIZE`, then a pattern over the first data_len bytes. */
static void create_with_data(const char *args, const char *path, const char *size,
			     uint64_t data_len, uint32_t seed)
{
	assert_int_equal(run("create %s '%s' %s", args, path, size), 0);
	struct vdisk *disk = open_disk(path, false);
	assert_int_equal(test_disk_write_pattern(disk, 0, data_len, seed), 0);
	test_close_disk(disk);
}

/* Copies len bytes of one image into another at the same offset. */
/* What the image reads as, all of it (a differencing image through its chain). */
static uint8_t *read_all(const char *path, uint64_t *size)
{
	struct vdisk *disk = open_disk(path, true);
	*size = vdisk_size(disk);
	uint8_t *buf = malloc(*size);
	assert_non_null(buf);
	assert_int_equal(vdisk_pread(disk, buf, *size, 0), 0);
	test_close_disk(disk);
	return buf;
}

static void assert_reads_same(const char *path, const uint8_t *want, uint64_t size)
{
	uint64_t n;
	uint8_t *have = read_all(path, &n);
	assert_int_equal(n, size);
	assert_memory_equal(have, want, size);
	free(have);
}

static uint64_t file_size(const char *path)
{
	struct stat st;
	assert_int_equal(stat(path, &st), 0);
	return (uint64_t)st.st_size;
}

static uint64_t allocated(const char *path)
{
	struct stat st;
	assert_int_equal(stat(path, &st), 0);
	return (uint64_t)st.st_blocks * 512;
}

/* ---- JSON from the command line ---- */

static json_t *run_json(const char *fmt, const char *path)
{
	char cmd[1200];
	snprintf(cmd, sizeof(cmd), fmt, path);
	assert_int_equal(run("%s", cmd), 0);
	json_error_t e;
	json_t *j = json_loads(out, 0, &e);
	if (!j)
		fail_msg("not JSON (%s):\n%s", e.text, out);
	return j;
}

static json_int_t json_path_int(json_t *j, const char *a, const char *b, const char *c)
{
	json_t *v = json_object_get(j, a);
	if (b)
		v = json_object_get(v, b);
	if (c)
		v = json_object_get(v, c);
	if (!json_is_integer(v))
		fail_msg("no integer at %s.%s.%s", a, b ? b : "", c ? c : "");
	return json_integer_value(v);
}

/* Runs compact --json and returns the blocks it released. */
static json_int_t compact(const char *path)
{
	json_t *j = run_json("compact --json '%s'", path);
	json_int_t released = json_path_int(j, "blocks_released", NULL, NULL);
	assert_int_equal(json_path_int(j, "file_size_after", NULL, NULL), file_size(path));
	json_decref(j);
	return released;
}

struct block_states {
	json_int_t not_present, zero, unmapped, fully, partially, bitmaps;
};

static struct block_states vhdx_states(const char *path)
{
	json_t *j = run_json("info --json '%s'", path);
	struct block_states s = {
		json_path_int(j, "details", "block_states", "not_present"),
		json_path_int(j, "details", "block_states", "zero"),
		json_path_int(j, "details", "block_states", "unmapped"),
		json_path_int(j, "details", "block_states", "fully_present"),
		json_path_int(j, "details", "block_states", "partially_present"),
		json_path_int(j, "details", "sector_bitmaps_present", NULL),
	};
	json_decref(j);
	return s;
}

static json_t *qemu_map(const char *fmt, const char *path)
{
	static char map[1 << 20];
	assert_int_equal(
		test_run(map, sizeof(map), "qemu-img map -f %s --output=json '%s'", fmt, path), 0);
	json_error_t e;
	json_t *j = json_loads(map, 0, &e);
	if (!j)
		fail_msg("qemu-img map printed no JSON (%s):\n%s", e.text, map);
	return j;
}

/* Bytes QEMU maps as data stored in the image itself. */
static uint64_t qemu_data_bytes(const char *fmt, const char *path)
{
	json_t *j = qemu_map(fmt, path);
	uint64_t bytes = 0;
	size_t i;
	json_t *ext;
	json_array_foreach (j, i, ext) {
		if (json_is_true(json_object_get(ext, "data")))
			bytes += (uint64_t)json_integer_value(json_object_get(ext, "length"));
	}
	json_decref(j);
	return bytes;
}

/* Where QEMU finds the data of the first two extents: the distance between two blocks
 * written one after the other. */
static uint64_t qemu_block_stride(const char *fmt, const char *path)
{
	json_t *j = qemu_map(fmt, path);
	json_int_t a = json_integer_value(json_object_get(json_array_get(j, 0), "offset"));
	json_int_t b = json_integer_value(json_object_get(json_array_get(j, 1), "offset"));
	json_decref(j);
	assert_true(b > a);
	return (uint64_t)(b - a);
}

/* The checks every result passes: ours, QEMU's where it reads the format, libvhdi's. */
static void assert_checks_clean(const char *path, const char *qemu_fmt)
{
	assert_int_equal(run("check '%s'", path), 0);
	assert_contains(out, "no problems found");
	if (qemu_fmt && !strcmp(qemu_fmt, "vhdx"))
		assert_int_equal(test_run(out, sizeof(out), "qemu-img check -f vhdx '%s'", path),
				 0);
	if (test_have("vhdiinfo"))
		assert_int_equal(test_run(out, sizeof(out), "vhdiinfo '%s'", path), 0);
}

/* A raw copy of what QEMU reads, and the comparison against it. */
static void qemu_snapshot(const char *fmt, const char *path, const char *raw)
{
	assert_int_equal(test_run(out, sizeof(out), "qemu-img convert -f %s -O raw '%s' '%s'", fmt,
				  path, raw),
			 0);
}

static void qemu_assert_same(const char *fmt, const char *path, const char *raw)
{
	assert_int_equal(test_run(out, sizeof(out), "qemu-img compare -f %s -F raw '%s' '%s'", fmt,
				  path, raw),
			 0);
}

/* A second compact releases nothing and leaves every byte after skip as it was (skip: the
 * headers a read-write open renews). */
static void assert_second_compact_changes_nothing(const char *path, uint64_t skip)
{
	const char *copy = test_path("second-compact.copy");
	assert_int_equal(test_run(NULL, 0, "cp --sparse=always '%s' '%s'", path, copy), 0);
	uint64_t alloc = allocated(path);
	assert_int_equal(compact(path), 0);
	assert_int_equal(file_size(path), file_size(copy));
	assert_int_equal(allocated(path), alloc);
	assert_int_equal(test_run(out, sizeof(out), "cmp -i %llu '%s' '%s'",
				  (unsigned long long)skip, path, copy),
			 0);
	unlink(copy);
}

/* ---- the command line ---- */

static void test_usage(void **state)
{
	(void)state;
	assert_int_equal(run("compact --help"), 0);
	assert_contains(out, "Usage: vdisk compact");
	assert_contains(out, "fixed");
	assert_int_equal(run("compact"), 3);
	assert_contains(out, "missing FILE");
	assert_int_equal(run("compact --bogus x"), 3);
	assert_int_equal(run("compact a b"), 3);
	assert_int_equal(run("compact '%s'", test_path("missing.vhdx")), 2);
	assert_contains(out, "missing.vhdx");
	assert_contains(out, "hint:");
}

/* The exclusive lock of the read-write open keeps compact out of an image in use, by
 * another process (flock(1)) or by an open disk in this one; the image stays as it was. */
static void test_refuses_image_in_use(void **state)
{
	(void)state;
	const char *img = test_path("busy.vhdx");
	assert_int_equal(run("create -f vhdx --block-size 1M '%s' 8M", img), 0);
	struct vdisk *disk = open_disk(img, false);
	write_zeros(disk, 0, MiB); /* a block compact would release */
	assert_int_equal(run("compact '%s'", img), 2);
	assert_contains(out, "in use");
	test_close_disk(disk);
	if (test_have("flock")) {
		assert_int_equal(test_run(out, sizeof(out),
					  "flock -s '%s' -c \"'%s' compact '%s'\"", img, vdisk_bin,
					  img),
				 2);
		assert_contains(out, "in use");
	}
	assert_int_equal(vhdx_states(img).fully, 1);
}

static void test_fixed_images_refused(void **state)
{
	(void)state;
	const char *vhd = test_path("fixed.vhd"), *vhdx = test_path("fixed.vhdx");
	const char *copy = test_path("fixed.copy");
	assert_int_equal(run("create -f vhd --type fixed '%s' 4M", vhd), 0);
	assert_int_equal(run("create -f vhdx --type fixed '%s' 4M", vhdx), 0);
	const char *imgs[] = { vhd, vhdx };
	for (int i = 0; i < 2; i++) {
		assert_int_equal(test_run(NULL, 0, "cp '%s' '%s'", imgs[i], copy), 0);
		assert_int_equal(run("compact '%s'", imgs[i]), 2);
		assert_contains(out, "fixed");
		assert_contains(out, "convert");
		/* the read-write open renews the VHDX headers (first MiB), nothing else */
		assert_int_equal(test_run(out, sizeof(out), "cmp -i %u '%s' '%s'",
					  i ? 1u << 20 : 0u, imgs[i], copy),
				 0);
	}
}

static void test_progress_bar(void **state)
{
	(void)state;
	const char *img = test_path("progress.vhd");
	create_with_data("-f vhd", img, "8M", 4 * MiB, 3);
	assert_int_equal(run("compact -p '%s'", img), 0);
	assert_contains(out, "compacting [");
	assert_contains(out, "100.0%");
	assert_contains(out, "blocks released:");
}

/* ---- raw ---- */

/* Zero ranges that cover whole 4 KiB pages become holes; partial pages and data stay. */
static void test_raw_digs_holes(void **state)
{
	(void)state;
	const char *img = test_path("dig.raw"), *copy = test_path("dig.copy");
	test_write_file(img, 8 * MiB, 11);
	struct vdisk *disk = open_disk(img, false);
	write_zeros(disk, 1 * MiB, MiB);	 /* 256 pages */
	write_zeros(disk, 3 * MiB + 4096, 4096); /* 1 page */
	write_zeros(disk, 5 * MiB + 100, 8192);	 /* 1 whole page inside it */
	write_zeros(disk, 6 * MiB + 2048, 2048); /* no whole page */
	assert_int_equal(vdisk_flush_sync(disk), 0);
	test_close_disk(disk);
	assert_int_equal(test_run(NULL, 0, "cp '%s' '%s'", img, copy), 0);
	uint64_t before = allocated(img);

	assert_int_equal(compact(img), 256 + 1 + 1);
	assert_int_equal(file_size(img), 8 * MiB);
	/* the holes, less the extent-tree blocks the file system may add for them */
	assert_true(allocated(img) <= before - 258 * 4096 + 16384);
	assert_int_equal(test_run(out, sizeof(out), "cmp '%s' '%s'", img, copy), 0);
	assert_int_equal(qemu_data_bytes("raw", img), 8 * MiB - 258 * 4096);
	assert_second_compact_changes_nothing(img, 0);
}

/* ---- VHDX ---- */

/* Block 0-15 written; of them 2-3 zeroed with write-zeroes (Zero state, space left behind),
 * 5 overwritten with zeros (stays allocated until compact), 7 discarded (Unmapped), 9 half
 * zeros. Compact releases block 5 and fills the holes with the blocks from the end. */
static void test_vhdx_dynamic(void **state)
{
	(void)state;
	const char *img = test_path("dyn.vhdx"), *raw = test_path("dyn.raw");
	assert_int_equal(run("create -f vhdx --block-size 1M '%s' 32M", img), 0);
	uint64_t empty = file_size(img);
	struct vdisk *disk = open_disk(img, false);
	assert_int_equal(test_disk_write_pattern(disk, 0, 16 * MiB, 21), 0);
	assert_int_equal(vdisk_write_zeroes_sync(disk, 2 * MiB, 2 * MiB), 0);
	write_zeros(disk, 5 * MiB, MiB);
	assert_int_equal(vdisk_discard_sync(disk, 7 * MiB, MiB), 0);
	write_zeros(disk, 9 * MiB, MiB / 2);
	test_close_disk(disk);
	struct block_states s = vhdx_states(img);
	assert_int_equal(s.fully, 13);
	qemu_snapshot("vhdx", img, raw);
	uint64_t before = file_size(img);
	assert_true(before >= empty + 16 * MiB);

	assert_int_equal(compact(img), 1);
	s = vhdx_states(img);
	assert_int_equal(s.fully, 12);
	assert_int_equal(s.zero, 2);
	assert_int_equal(s.unmapped, 1);
	assert_int_equal(s.not_present, 32 - 15);
	assert_int_equal(file_size(img), empty + 12 * MiB);
	qemu_assert_same("vhdx", img, raw);
	assert_checks_clean(img, "vhdx");
	assert_second_compact_changes_nothing(img, VHDX_TEST_HEADER_BYTES);

	/* the open disk goes on allocating after the new end */
	disk = open_disk(img, false);
	assert_int_equal(test_disk_write_pattern(disk, 20 * MiB, MiB, 22), 0);
	test_close_disk(disk);
	assert_int_equal(file_size(img), empty + 13 * MiB);
	assert_checks_clean(img, "vhdx");
}

/* A differencing VHDX over a parent with data in blocks 0-7 and 11: the child's block 1
 * equals the parent's (released), block 2 is zeros over data (becomes Zero), block 3 is
 * its own data (stays), block 10 is zeros over zeros (released), block 11 holds 4 KiB equal
 * to the parent's (partially present, released with its bits cleared) and block 12 a
 * partial write of its own (stays, keeping the chunk's sector bitmap). */
static void make_vhdx_chain(const char *parent, const char *child)
{
	create_with_data("-f vhdx --block-size 1M", parent, "32M", 8 * MiB, 31);
	struct vdisk *p = open_disk(parent, false);
	assert_int_equal(test_disk_write_pattern(p, 11 * MiB, MiB, 32), 0);
	test_close_disk(p);
	assert_int_equal(run("create -f vhdx --block-size 1M --parent '%s' '%s'", parent, child),
			 0);
	p = open_disk(parent, true);
	struct vdisk *c = open_disk(child, false);
	assert_int_equal(test_disk_copy(p, c, 1 * MiB, MiB), 0);
	write_zeros(c, 2 * MiB, MiB);
	assert_int_equal(test_disk_write_pattern(c, 3 * MiB, MiB, 33), 0);
	write_zeros(c, 10 * MiB, MiB);
	assert_int_equal(test_disk_copy(p, c, 11 * MiB + 8192, 4096), 0);
	assert_int_equal(test_disk_write_pattern(c, 12 * MiB + 4096, 8192, 34), 0);
	test_close_disk(c);
	test_close_disk(p);
}

static void test_vhdx_differencing(void **state)
{
	(void)state;
	const char *parent = test_path("base.vhdx"), *child = test_path("child.vhdx");
	make_vhdx_chain(parent, child);
	struct block_states s = vhdx_states(child);
	assert_int_equal(s.fully, 4);
	assert_int_equal(s.partially, 2);
	assert_int_equal(s.bitmaps, 1);
	uint64_t size, before = file_size(child);
	uint8_t *want = read_all(child, &size);

	assert_int_equal(compact(child), 4);
	s = vhdx_states(child);
	assert_int_equal(s.fully, 1);
	assert_int_equal(s.partially, 1);
	assert_int_equal(s.zero, 1);
	assert_int_equal(s.bitmaps, 1);
	assert_int_equal(file_size(child), before - 4 * MiB);
	assert_reads_same(child, want, size);
	assert_checks_clean(child, NULL);
	assert_second_compact_changes_nothing(child, VHDX_TEST_HEADER_BYTES);

	/* Block 11 again: only the new sectors are the child's; the 4 KiB whose bits compact
	 * cleared read from the parent again. */
	struct vdisk *c = open_disk(child, false);
	assert_int_equal(test_disk_write_pattern(c, 11 * MiB, 4096, 35), 0);
	test_close_disk(c);
	test_fill_pattern(want + 11 * MiB, 4096, 11 * MiB, 35);
	assert_reads_same(child, want, size);
	free(want);
}

/* When no block of a chunk stays partially present, its sector bitmap block goes too. */
static void test_vhdx_differencing_drops_bitmap(void **state)
{
	(void)state;
	const char *parent = test_path("base2.vhdx"), *child = test_path("child2.vhdx");
	create_with_data("-f vhdx --block-size 1M", parent, "16M", 4 * MiB, 41);
	assert_int_equal(run("create -f vhdx --block-size 1M --parent '%s' '%s'", parent, child),
			 0);
	struct vdisk *p = open_disk(parent, true);
	struct vdisk *c = open_disk(child, false);
	assert_int_equal(test_disk_copy(p, c, 2 * MiB + 512, 1024), 0);
	assert_int_equal(test_disk_write_pattern(c, 6 * MiB, MiB, 42), 0);
	test_close_disk(c);
	test_close_disk(p);
	assert_int_equal(vhdx_states(child).bitmaps, 1);
	uint64_t size, before = file_size(child);
	uint8_t *want = read_all(child, &size);

	assert_int_equal(compact(child), 2); /* the block and the bitmap */
	struct block_states s = vhdx_states(child);
	assert_int_equal(s.partially, 0);
	assert_int_equal(s.fully, 1);
	assert_int_equal(s.bitmaps, 0);
	assert_int_equal(file_size(child), before - 2 * MiB);
	assert_reads_same(child, want, size);
	assert_checks_clean(child, NULL);
	free(want);
}

/* ---- VHD ---- */

static uint64_t vhd_blocks_mapped(const char *path)
{
	return qemu_data_bytes("vpc", path) / (512 * 1024);
}

/* 512 KiB blocks 0-11 written; 3 and 4 zeroed (write-zeroes allocates zeros in VHD), 6
 * discarded (VHD keeps the data: not released), 8 zeroed in part. */
static void test_vhd_dynamic(void **state)
{
	(void)state;
	const char *img = test_path("dyn.vhd"), *raw = test_path("dyn-vhd.raw");
	const uint64_t bs = 512 * 1024;
	create_with_data("-f vhd --block-size 512K", img, "16M", 12 * bs, 51);
	struct vdisk *disk = open_disk(img, false);
	assert_int_equal(vdisk_write_zeroes_sync(disk, 3 * bs, 2 * bs), 0);
	assert_int_equal(vdisk_discard_sync(disk, 6 * bs, bs), 0);
	write_zeros(disk, 8 * bs, bs / 2);
	test_close_disk(disk);
	uint64_t before = file_size(img), stride = qemu_block_stride("vpc", img);
	assert_true(stride >= bs + 512);
	qemu_snapshot("vpc", img, raw);
	assert_int_equal(vhd_blocks_mapped(img), 12);

	assert_int_equal(compact(img), 2);
	assert_int_equal(file_size(img), before - 2 * stride);
	qemu_assert_same("vpc", img, raw);
	assert_int_equal(vhd_blocks_mapped(img), 10);
	assert_checks_clean(img, "vpc");
	assert_second_compact_changes_nothing(img, 0);

	disk = open_disk(img, false);
	assert_int_equal(test_disk_write_pattern(disk, 14 * bs, bs, 52), 0);
	test_close_disk(disk);
	assert_checks_clean(img, "vpc");
}

/* A differencing VHD: block 1 equal to the parent's (released), 2 zeros over data (stays:
 * VHD has no Zero state), 3 a partial write equal to the parent (released), 4 its own
 * data (stays). */
static void test_vhd_differencing(void **state)
{
	(void)state;
	const char *parent = test_path("base.vhd"), *child = test_path("child.vhd");
	const uint64_t bs = 512 * 1024;
	create_with_data("-f vhd --block-size 512K", parent, "8M", 6 * bs, 61);
	assert_int_equal(run("create -f vhd --block-size 512K --parent '%s' '%s'", parent, child),
			 0);
	struct vdisk *p = open_disk(parent, true);
	struct vdisk *c = open_disk(child, false);
	assert_int_equal(test_disk_copy(p, c, 1 * bs, bs), 0);
	write_zeros(c, 2 * bs, bs);
	assert_int_equal(test_disk_copy(p, c, 3 * bs + 4096, 4096), 0);
	assert_int_equal(test_disk_write_pattern(c, 4 * bs, bs, 62), 0);
	test_close_disk(c);
	test_close_disk(p);
	uint64_t size, before = file_size(child);
	uint8_t *want = read_all(child, &size);

	assert_int_equal(compact(child), 2);
	assert_true(file_size(child) < before);
	assert_reads_same(child, want, size);
	assert_checks_clean(child, NULL);
	assert_second_compact_changes_nothing(child, 0);
	free(want);
}

/* Images QEMU wrote: a VHD with its blocks packed (no alignment padding), and a VHDX.
 * Blocks 2-5 zeroed with write -z; the holes take the last blocks without leaving space. */
static void test_images_made_by_qemu(void **state)
{
	(void)state;
	if (!test_have("qemu-io"))
		skip();
	const char *fmts[] = { "vpc", "vhdx" }, *names[] = { "q.vhd", "q.vhdx" };
	for (int i = 0; i < 2; i++) {
		const char *img = test_path(names[i]), *raw = test_path("q.raw");
		const char *opts = i ? "-o block_size=2M" : "";
		assert_int_equal(test_run(out, sizeof(out), "qemu-img create -f %s %s '%s' 64M",
					  fmts[i], opts, img),
				 0);
		assert_int_equal(test_run(out, sizeof(out),
					  "qemu-io -f %s -c 'write -P 0x22 0 20M' "
					  "-c 'write -z 4M 8M' -c 'write -P 0x33 40M 4M' '%s'",
					  fmts[i], img),
				 0);
		qemu_snapshot(fmts[i], img, raw);
		uint64_t before = file_size(img);
		uint64_t stride = i ? 0 : qemu_block_stride("vpc", img);

		assert_int_equal(compact(img), 4);
		if (i) /* QEMU's VHDX leaves room at the end: the check finds no leak now */
			assert_int_equal(vhdx_states(img).fully, 12 - 4);
		else
			assert_int_equal(file_size(img), before - 4 * stride);
		assert_true(file_size(img) < before);
		qemu_assert_same(fmts[i], img, raw);
		assert_checks_clean(img, fmts[i]);
	}
}

static int teardown(void **state)
{
	(void)state;
	test_close_tracked();
	test_tmpdir_remove();
	return 0;
}

static int after_each(void **state)
{
	(void)state;
	test_close_tracked();
	return 0;
}

int main(void)
{
	vdisk_bin = test_vdisk_binary();
	if (!vdisk_bin)
		return TEST_SKIP;
	if (!test_have("qemu-img")) {
		fprintf(stderr, "qemu-img is the oracle of these tests\n");
		return TEST_SKIP;
	}
	vhd_register();
	vhdx_register();
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_teardown(test_usage, after_each),
		cmocka_unit_test_teardown(test_refuses_image_in_use, after_each),
		cmocka_unit_test_teardown(test_fixed_images_refused, after_each),
		cmocka_unit_test_teardown(test_progress_bar, after_each),
		cmocka_unit_test_teardown(test_raw_digs_holes, after_each),
		cmocka_unit_test_teardown(test_vhdx_dynamic, after_each),
		cmocka_unit_test_teardown(test_vhdx_differencing, after_each),
		cmocka_unit_test_teardown(test_vhdx_differencing_drops_bitmap, after_each),
		cmocka_unit_test_teardown(test_vhd_dynamic, after_each),
		cmocka_unit_test_teardown(test_vhd_differencing, after_each),
		cmocka_unit_test_teardown(test_images_made_by_qemu, after_each),
	};
	return cmocka_run_group_tests(tests, NULL, teardown);
}
