/* The raw format: creation, block status from SEEK_DATA/SEEK_HOLE, discard and write
 * zeroes, info, the refusals of vdisk_open and the advisory image lock.
 *
 * Results are checked with stat(2), plain pread(2) against test_fill_pattern(), and
 * flock(1) from another process, never against the block layer's own view.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#include "test_disk.h"
#include "test_util.h"
#include "vdisk.h"

#define ARRAY_SIZE(a) (sizeof(a) / sizeof((a)[0]))
#define KiB 1024u
#define MiB (1024u * KiB)

/* ---- helpers ---- */

static void expect_file(const char *path, const uint8_t *model, size_t size, const char *what)
{
	struct stat st;
	assert_int_equal(stat(path, &st), 0);
	assert_int_equal(st.st_size, size);
	uint8_t *buf = test_xmalloc(size);
	test_file_read(path, buf, size, 0);
	test_expect_equal(buf, model, size, what, 0);
	free(buf);
}

static uint64_t allocated_bytes(const char *path)
{
	struct stat st;
	assert_int_equal(stat(path, &st), 0);
	return (uint64_t)st.st_blocks * 512;
}

static bool file_exists(const char *path)
{
	struct stat st;
	return stat(path, &st) == 0;
}

/* Disks a failed test left open are closed by the teardown (their locks would fail the
 * next test). */
struct vdisk *test_open_disks[TEST_MAX_OPEN_DISKS];

static void track(struct vdisk *disk)
{
	if (test_track_disk(disk) < 0)
		fail_msg("too many open disks");
}

static void close_disk(struct vdisk *disk)
{
	test_close_disk(disk);
}

static int close_leftovers(void **state)
{
	(void)state;
	test_close_tracked();
	return 0;
}

/* Opens with opts (NULL: read-write, page cache) or fails the test. */
static struct vdisk *open_ok(const char *path, const struct vdisk_options *opts)
{
	struct vdisk_options def = { .cache = VDISK_CACHE_WRITEBACK };
	struct vdisk *disk = NULL;
	char err[256];
	int ret = vdisk_open(path, opts ? opts : &def, &disk, err, sizeof(err));
	if (ret < 0)
		fail_msg("vdisk_open %s: %s (%d)", path, err, ret);
	track(disk);
	return disk;
}

/* Expects vdisk_open to fail with want and a reason containing needle. */
static void open_fails(const char *path, const struct vdisk_options *opts, int want,
		       const char *needle)
{
	struct vdisk *disk = (struct vdisk *)0x1;
	char err[256];
	memset(err, 'X', sizeof(err));
	int ret = vdisk_open(path, opts, &disk, err, sizeof(err));
	if (ret == 0)
		track(disk);
	if (ret != want)
		fail_msg("vdisk_open %s: %d (%s), expected %d", path, ret, ret ? err : "opened",
			 want);
	assert_true(disk == (struct vdisk *)0x1); /* untouched on failure */
	assert_non_null(memchr(err, 0, sizeof(err)));
	assert_true(err[0] != 0);
	if (needle && !strstr(err, needle))
		fail_msg("vdisk_open %s: reason \"%s\" does not mention \"%s\"", path, err, needle);
}

static int create(const char *path, uint64_t size, bool sparse, bool overwrite, char *err,
		  size_t err_size)
{
	struct vdisk_create_options o = {
		.format = "raw", .size = size, .sparse = sparse, .overwrite = overwrite
	};
	return vdisk_create(path, &o, err, err_size);
}

/* ---- creation ---- */

static void test_create_sparse(void **state)
{
	(void)state;
	const char *path = test_path("sparse.img");
	char err[256] = "";
	assert_int_equal(create(path, 8 * MiB, true, false, err, sizeof(err)), 0);
	struct stat st;
	assert_int_equal(stat(path, &st), 0);
	assert_true(S_ISREG(st.st_mode));
	assert_int_equal(st.st_size, 8 * MiB);
	assert_true(allocated_bytes(path) < 1 * MiB);

	struct vdisk *disk = open_ok(path, NULL);
	assert_int_equal(vdisk_size(disk), 8 * MiB);
	assert_string_equal(vdisk_format_name(disk), "raw");
	assert_string_equal(vdisk_path(disk), path);
	assert_false(vdisk_read_only(disk));
	uint8_t *buf = test_xmalloc(64 * KiB), *zero = calloc(1, 64 * KiB);
	memset(buf, 0xFF, 64 * KiB);
	assert_int_equal(vdisk_pread(disk, buf, 64 * KiB, 8 * MiB - 64 * KiB), 0);
	test_expect_equal(buf, zero, 64 * KiB, "sparse image", 8 * MiB - 64 * KiB);
	/* The whole image is one zero extent. */
	struct vdisk_extent ext;
	assert_int_equal(vdisk_block_status(disk, 0, 8 * MiB, &ext), 0);
	assert_true(ext.offset == 0);
	assert_true(ext.length == 8 * MiB);
	assert_int_equal(ext.flags, VDISK_EXTENT_ZERO);
	close_disk(disk);
	free(zero);
	free(buf);

	/* The default format is raw. */
	const char *path2 = test_path("default.img");
	struct vdisk_create_options o = { .size = 1 * MiB, .sparse = true };
	assert_int_equal(vdisk_create(path2, &o, err, sizeof(err)), 0);
	assert_int_equal(stat(path2, &st), 0);
	assert_int_equal(st.st_size, 1 * MiB);
}

static void test_create_allocated(void **state)
{
	(void)state;
	const char *path = test_path("allocated.img");
	char err[256] = "";
	struct vdisk_create_options o = { .format = "raw", .size = 8 * MiB, .type = "fixed" };
	assert_int_equal(vdisk_create(path, &o, err, sizeof(err)), 0);
	struct stat st;
	assert_int_equal(stat(path, &st), 0);
	assert_int_equal(st.st_size, 8 * MiB);
	assert_true(allocated_bytes(path) >= 8 * MiB);
	uint8_t *buf = test_xmalloc(8 * MiB), *zero = calloc(1, 8 * MiB);
	test_file_read(path, buf, 8 * MiB, 0);
	test_expect_equal(buf, zero, 8 * MiB, "allocated image", 0);
	free(zero);
	free(buf);
}

static void test_create_existing(void **state)
{
	(void)state;
	const char *path = test_path("existing.img");
	test_write_file(path, 64 * KiB, 1);
	uint8_t *model = test_xmalloc(64 * KiB);
	test_fill_pattern(model, 64 * KiB, 0, 1);

	char err[256] = "";
	assert_int_equal(create(path, 1 * MiB, true, false, err, sizeof(err)), -EEXIST);
	assert_non_null(strstr(err, "exists"));
	expect_file(path, model, 64 * KiB, "not overwritten");
	assert_int_equal(create(path, 1 * MiB, false, false, err, sizeof(err)), -EEXIST);
	expect_file(path, model, 64 * KiB, "not overwritten");

	/* With overwrite: replaced, and all zeros. */
	assert_int_equal(create(path, 1 * MiB, true, true, err, sizeof(err)), 0);
	uint8_t *zero = calloc(1, 1 * MiB);
	expect_file(path, zero, 1 * MiB, "overwritten");
	/* Also to a smaller size. */
	assert_int_equal(create(path, 4 * KiB, false, true, err, sizeof(err)), 0);
	expect_file(path, zero, 4 * KiB, "overwritten smaller");
	free(zero);
	free(model);
}

/* Replacing an image another user has open (a running VM) would pull it from under it. */
static void test_create_overwrite_in_use(void **state)
{
	(void)state;
	const char *path = test_path("in_use.img");
	test_write_file(path, 64 * KiB, 13);
	uint8_t *model = test_xmalloc(64 * KiB);
	test_fill_pattern(model, 64 * KiB, 0, 13);
	char err[256] = "";
	struct vdisk_options rw = { .cache = VDISK_CACHE_WRITEBACK };
	struct vdisk_options ro = { .cache = VDISK_CACHE_WRITEBACK, .read_only = true };
	const struct vdisk_options *modes[] = { &rw, &ro };
	for (size_t i = 0; i < ARRAY_SIZE(modes); i++) {
		struct vdisk *disk = open_ok(path, modes[i]);
		assert_int_equal(create(path, 1 * MiB, true, true, err, sizeof(err)), -EBUSY);
		assert_non_null(strstr(err, "in use"));
		expect_file(path, model, 64 * KiB, "image in use not replaced");
		uint8_t buf[4096];
		assert_int_equal(vdisk_pread(disk, buf, sizeof(buf), 60 * KiB), 0);
		test_expect_equal(buf, model + 60 * KiB, sizeof(buf), "image in use", 60 * KiB);
		close_disk(disk);
	}
	/* Closed: replaced. */
	assert_int_equal(create(path, 1 * MiB, true, true, err, sizeof(err)), 0);
	uint8_t *zero = calloc(1, 1 * MiB);
	expect_file(path, zero, 1 * MiB, "replaced once closed");
	free(zero);
	free(model);
}

/* A failed create never removes a file it did not make (here a device node). */
static void test_create_failure_keeps_foreign_file(void **state)
{
	(void)state;
	const char *node = test_path("null.dev");
	if (mknod(node, S_IFCHR | 0666, makedev(1, 3)) != 0) {
		print_message("cannot make a device node (%s)\n", strerror(errno));
		skip();
	}
	char err[256] = "";
	assert_true(create(node, 1 * MiB, true, true, err, sizeof(err)) < 0);
	assert_true(err[0] != 0);
	struct stat st;
	assert_int_equal(stat(node, &st), 0);
	assert_true(S_ISCHR(st.st_mode));
	unlink(node);

	/* A regular file that cannot take the new size: kept too, not unlinked. */
	const char *path = test_path("keep.img");
	test_write_file(path, 4096, 14);
	assert_true(create(path, 1ULL << 62, true, true, err, sizeof(err)) < 0);
	assert_true(file_exists(path));
}

static void test_create_bad_args(void **state)
{
	(void)state;
	const char *path = test_path("bad.img");
	char err[256];
	static const uint64_t sizes[] = { 0, 1, 511, 513, 1000, 4097 };
	for (size_t i = 0; i < ARRAY_SIZE(sizes); i++) {
		err[0] = 0;
		assert_int_equal(create(path, sizes[i], true, false, err, sizeof(err)), -EINVAL);
		assert_non_null(strstr(err, "512"));
		assert_false(file_exists(path));
	}
	struct vdisk_create_options o = { .format = "raw", .size = 1 * MiB, .type = "dynamic" };
	assert_int_equal(vdisk_create(path, &o, err, sizeof(err)), -EINVAL);
	assert_non_null(strstr(err, "dynamic"));
	o = (struct vdisk_create_options){ .format = "raw", .size = 1 * MiB, .parent = "p.img" };
	assert_int_equal(vdisk_create(path, &o, err, sizeof(err)), -EINVAL);
	o = (struct vdisk_create_options){ .format = "raw", .size = 1 * MiB, .block_size = 4096 };
	assert_int_equal(vdisk_create(path, &o, err, sizeof(err)), -EINVAL);
	o = (struct vdisk_create_options){ .format = "nope", .size = 1 * MiB };
	assert_int_equal(vdisk_create(path, &o, err, sizeof(err)), -EINVAL);
	assert_non_null(strstr(err, "unknown format"));
	assert_non_null(strstr(err, "raw"));
	assert_false(file_exists(path));

	/* A directory that does not exist. */
	assert_int_equal(create(test_path("no/such/dir.img"), 1 * MiB, true, false, err,
				sizeof(err)),
			 -ENOENT);
	assert_true(err[0] != 0);

	/* A size the file system cannot hold: refused, and nothing left behind. */
	assert_true(create(path, 1ULL << 62, true, false, err, sizeof(err)) < 0);
	assert_non_null(strstr(err, "cannot allocate"));
	assert_false(file_exists(path));
}

/* ---- block status ---- */

struct run {
	uint64_t off, len;
	unsigned flags;
};

/* Walks [0, size) with block status; merges neighbours with equal flags. */
static size_t map_extents(struct vdisk *disk, uint64_t size, struct run *runs, size_t max)
{
	size_t n = 0;
	uint64_t off = 0;
	unsigned calls = 0;
	while (off < size) {
		struct vdisk_extent ext = { 0, 0, 0xFFFF };
		assert_int_equal(vdisk_block_status(disk, off, size - off, &ext), 0);
		assert_true(ext.offset == off);
		assert_true(ext.length >= 1 && ext.length <= size - off);
		assert_true(ext.flags == VDISK_EXTENT_DATA || ext.flags == VDISK_EXTENT_ZERO);
		if (n && runs[n - 1].flags == ext.flags) {
			runs[n - 1].len += ext.length;
		} else {
			assert_true(n < max);
			runs[n++] = (struct run){ off, ext.length, ext.flags };
		}
		off += ext.length;
		assert_true(++calls < 10000);
	}
	return n;
}

static void test_block_status(void **state)
{
	(void)state;
	const char *path = test_path("status.img");
	char err[256];
	assert_int_equal(create(path, 1 * MiB, true, false, err, sizeof(err)), 0);
	/* Data at 128 KiB (written through the disk) and 512 KiB (written beside it). */
	struct vdisk *disk = open_ok(path, NULL);
	uint8_t *buf = test_xmalloc(64 * KiB);
	test_fill_pattern(buf, 64 * KiB, 128 * KiB, 2);
	assert_int_equal(vdisk_pwrite(disk, buf, 64 * KiB, 128 * KiB), 0);
	assert_int_equal(vdisk_flush_sync(disk), 0);
	test_fill_pattern(buf, 64 * KiB, 512 * KiB, 3);
	test_file_write(path, buf, 64 * KiB, 512 * KiB);

	static const struct run want[] = {
		{ 0, 128 * KiB, VDISK_EXTENT_ZERO },
		{ 128 * KiB, 64 * KiB, VDISK_EXTENT_DATA },
		{ 192 * KiB, 320 * KiB, VDISK_EXTENT_ZERO },
		{ 512 * KiB, 64 * KiB, VDISK_EXTENT_DATA },
		{ 576 * KiB, 448 * KiB, VDISK_EXTENT_ZERO },
	};
	struct run got[16];
	size_t n = map_extents(disk, 1 * MiB, got, ARRAY_SIZE(got));
	for (size_t i = 0; i < n; i++)
		print_message("  extent %llu+%llu %s\n", (unsigned long long)got[i].off,
			      (unsigned long long)got[i].len,
			      got[i].flags == VDISK_EXTENT_DATA ? "data" : "zero");
	assert_int_equal(n, ARRAY_SIZE(want));
	for (size_t i = 0; i < n; i++) {
		assert_true(got[i].off == want[i].off);
		assert_true(got[i].len == want[i].len);
		assert_int_equal(got[i].flags, want[i].flags);
	}

	/* Queries that start inside a run or end before its end are clipped to the query. */
	struct vdisk_extent ext;
	assert_int_equal(vdisk_block_status(disk, 130 * KiB, 10 * KiB, &ext), 0);
	assert_true(ext.offset == 130 * KiB && ext.length == 10 * KiB);
	assert_int_equal(ext.flags, VDISK_EXTENT_DATA);
	assert_int_equal(vdisk_block_status(disk, 130 * KiB, 1 * MiB - 130 * KiB, &ext), 0);
	assert_true(ext.offset == 130 * KiB && ext.length == 62 * KiB);
	assert_int_equal(ext.flags, VDISK_EXTENT_DATA);
	assert_int_equal(vdisk_block_status(disk, 100 * KiB, 100 * KiB, &ext), 0);
	assert_true(ext.offset == 100 * KiB && ext.length == 28 * KiB);
	assert_int_equal(ext.flags, VDISK_EXTENT_ZERO);
	assert_int_equal(vdisk_block_status(disk, 0, 4096, &ext), 0);
	assert_true(ext.offset == 0 && ext.length == 4096);
	assert_int_equal(ext.flags, VDISK_EXTENT_ZERO);
	assert_int_equal(vdisk_block_status(disk, 600 * KiB, 1, &ext), 0);
	assert_true(ext.offset == 600 * KiB && ext.length == 1);
	assert_int_equal(ext.flags, VDISK_EXTENT_ZERO);
	assert_int_equal(vdisk_block_status(disk, 1 * MiB - 1, 1, &ext), 0);
	assert_true(ext.offset == 1 * MiB - 1 && ext.length == 1);
	assert_int_equal(vdisk_block_status(disk, 1 * MiB - 1, 2, &ext), -EINVAL);
	assert_int_equal(vdisk_block_status(disk, 0, 0, &ext), -EINVAL);

	/* What the extents say matches what the image reads. */
	for (size_t i = 0; i < n; i++) {
		uint8_t *chunk = test_xmalloc(got[i].len);
		assert_int_equal(vdisk_pread(disk, chunk, got[i].len, got[i].off), 0);
		if (got[i].flags == VDISK_EXTENT_ZERO) {
			for (uint64_t k = 0; k < got[i].len; k++)
				if (chunk[k])
					fail_msg("zero extent has data at %llu",
						 (unsigned long long)(got[i].off + k));
		} else {
			uint32_t seed = got[i].off == 128 * KiB ? 2 : 3;
			uint8_t *expect = test_xmalloc(got[i].len);
			test_fill_pattern(expect, got[i].len, got[i].off, seed);
			test_expect_equal(chunk, expect, got[i].len, "data extent", got[i].off);
			free(expect);
		}
		free(chunk);
	}
	close_disk(disk);
	free(buf);

	/* A fully written image is one data extent. */
	test_write_file(path, 256 * KiB, 4);
	disk = open_ok(path, NULL);
	n = map_extents(disk, 256 * KiB, got, ARRAY_SIZE(got));
	assert_int_equal(n, 1);
	assert_int_equal(got[0].flags, VDISK_EXTENT_DATA);
	close_disk(disk);
}

/* ---- discard, write zeroes, flush ---- */

static void test_discard(void **state)
{
	(void)state;
	static const enum vdisk_cache_mode caches[] = { VDISK_CACHE_WRITEBACK, VDISK_CACHE_DIRECT };
	const char *path = test_path("discard.img");
	const size_t size = 1 * MiB;
	for (size_t c = 0; c < ARRAY_SIZE(caches); c++) {
		test_write_file(path, size, 5);
		uint8_t *model = test_xmalloc(size);
		test_fill_pattern(model, size, 0, 5);
		struct vdisk_options opts = { .cache = caches[c] };
		struct vdisk *disk = open_ok(path, &opts);
		assert_int_equal(vdisk_flush_sync(disk), 0);
		uint64_t before = allocated_bytes(path);
		assert_true(before >= size);

		assert_int_equal(vdisk_discard_sync(disk, 256 * KiB, 256 * KiB), 0);
		memset(model + 256 * KiB, 0, 256 * KiB);
		uint64_t after = allocated_bytes(path);
		if (after > before - 256 * KiB)
			fail_msg("discard freed %llu bytes, expected at least %u",
				 (unsigned long long)(before - after), 256 * KiB);
		expect_file(path, model, size, "after discard");
		struct vdisk_extent ext;
		assert_int_equal(vdisk_block_status(disk, 256 * KiB, 256 * KiB, &ext), 0);
		assert_int_equal(ext.flags, VDISK_EXTENT_ZERO);
		assert_true(ext.length == 256 * KiB);
		assert_int_equal(vdisk_block_status(disk, 0, 1 * MiB, &ext), 0);
		assert_int_equal(ext.flags, VDISK_EXTENT_DATA);
		assert_true(ext.length == 256 * KiB);

		/* Unaligned: exactly the range reads as zeros. */
		assert_int_equal(vdisk_discard_sync(disk, 1000, 11000), 0);
		memset(model + 1000, 0, 11000);
		assert_int_equal(vdisk_discard_sync(disk, size - 3, 3), 0);
		memset(model + size - 3, 0, 3);
		assert_int_equal(vdisk_discard_sync(disk, 5, 0), 0);
		expect_file(path, model, size, "after unaligned discard");
		uint8_t *buf = test_xmalloc(size);
		assert_int_equal(vdisk_pread(disk, buf, size, 0), 0);
		test_expect_equal(buf, model, size, "read through the disk", 0);
		free(buf);
		close_disk(disk);
		free(model);
	}
}

static void test_write_zeroes(void **state)
{
	(void)state;
	static const enum vdisk_cache_mode caches[] = { VDISK_CACHE_WRITEBACK, VDISK_CACHE_DIRECT };
	const char *path = test_path("zeroes.img");
	const size_t size = 1 * MiB;
	static const struct {
		uint64_t off, len;
	} ranges[] = {
		{ 4096, 64 * KiB }, { 777, 3000 }, { 1 * MiB - 1, 1 }, { 100 * KiB + 1, 511 },
		{ 200 * KiB + 300, 2 * 512 + 17 }, { 300 * KiB, 512 }, { 400 * KiB - 1, 2 },
	};
	for (size_t c = 0; c < ARRAY_SIZE(caches); c++) {
		test_write_file(path, size, 6);
		uint8_t *model = test_xmalloc(size);
		test_fill_pattern(model, size, 0, 6);
		struct vdisk_options opts = { .cache = caches[c] };
		struct vdisk *disk = open_ok(path, &opts);
		for (size_t i = 0; i < ARRAY_SIZE(ranges); i++) {
			assert_int_equal(vdisk_write_zeroes_sync(disk, ranges[i].off, ranges[i].len),
					 0);
			memset(model + ranges[i].off, 0, ranges[i].len);
			expect_file(path, model, size, "after write zeroes");
		}
		assert_int_equal(vdisk_write_zeroes_sync(disk, 12345, 0), 0);
		assert_int_equal(vdisk_flush_sync(disk), 0);
		expect_file(path, model, size, "after flush");
		/* The whole disk. */
		assert_int_equal(vdisk_write_zeroes_sync(disk, 0, size), 0);
		memset(model, 0, size);
		expect_file(path, model, size, "whole disk zeroed");
		close_disk(disk);
		free(model);
	}
}

struct flush_wait {
	int calls, result;
};

static void flush_cb(void *opaque, int result)
{
	struct flush_wait *w = opaque;
	w->calls++;
	w->result = result;
}

static void test_flush(void **state)
{
	(void)state;
	const char *path = test_path("flush.img");
	test_write_file(path, 64 * KiB, 7);
	static const enum vdisk_cache_mode caches[] = { VDISK_CACHE_WRITEBACK, VDISK_CACHE_DIRECT };
	for (size_t c = 0; c < ARRAY_SIZE(caches); c++) {
		struct vdisk_options opts = { .cache = caches[c] };
		struct vdisk *disk = open_ok(path, &opts);
		uint8_t buf[1000];
		test_fill_pattern(buf, sizeof(buf), 3000, 8 + (uint32_t)c);
		assert_int_equal(vdisk_pwrite(disk, buf, sizeof(buf), 3000), 0);
		assert_int_equal(vdisk_flush_sync(disk), 0);
		struct flush_wait w[3] = { { 0, 1 }, { 0, 1 }, { 0, 1 } };
		struct vdisk_queue *q = vdisk_queue(disk, 0);
		for (int i = 0; i < 3; i++)
			assert_int_equal(vdisk_flush(disk, q, flush_cb, &w[i]), 0);
		int done = 0;
		while (done < 3) {
			int n = vdisk_queue_poll(q, 1);
			assert_true(n > 0);
			done += n;
		}
		for (int i = 0; i < 3; i++) {
			assert_int_equal(w[i].calls, 1);
			assert_int_equal(w[i].result, 0);
		}
		uint8_t got[1000];
		test_file_read(path, got, sizeof(got), 3000);
		test_expect_equal(got, buf, sizeof(buf), "flushed write", 3000);
		close_disk(disk);
	}
}

/* ---- info ---- */

static void test_get_info(void **state)
{
	(void)state;
	const char *path = test_path("info.img");
	char err[256];
	assert_int_equal(create(path, 2 * MiB, false, false, err, sizeof(err)), 0);
	struct vdisk *disk = open_ok(path, NULL);
	struct vdisk_info info;
	memset(&info, 0xAB, sizeof(info));
	assert_int_equal(vdisk_get_info(disk, &info), 0);
	assert_string_equal(info.format, "raw");
	assert_true(info.virtual_size == 2 * MiB);
	assert_true(info.file_size == 2 * MiB);
	assert_true(info.allocated_size == allocated_bytes(path));
	assert_int_equal(info.logical_sector_size, 512);
	assert_int_equal(info.physical_sector_size, 512);
	assert_int_equal(info.cluster_size, 0);
	assert_non_null(info.details);
	assert_true(json_is_object(info.details));
	json_t *bd = json_object_get(info.details, "block_device");
	assert_non_null(bd);
	assert_true(json_is_false(bd));
	json_decref(info.details);
	close_disk(disk);

	/* A sparse image of an odd size: raw takes any file size. */
	test_write_file(path, 1000, 9);
	assert_int_equal(truncate(path, 3 * MiB + 1000), 0);
	disk = open_ok(path, NULL);
	assert_int_equal(vdisk_get_info(disk, &info), 0);
	assert_true(info.virtual_size == 3 * MiB + 1000);
	assert_true(info.file_size == 3 * MiB + 1000);
	assert_true(info.allocated_size == allocated_bytes(path));
	assert_true(info.allocated_size < 1 * MiB);
	json_decref(info.details);
	assert_true(vdisk_size(disk) == 3 * MiB + 1000);
	close_disk(disk);
}

/* ---- open refusals ---- */

static void test_open_refusals(void **state)
{
	(void)state;
	struct vdisk_options rw = { .cache = VDISK_CACHE_WRITEBACK };
	struct vdisk_options ro = { .cache = VDISK_CACHE_WRITEBACK, .read_only = true };

	open_fails(test_path("missing.img"), &rw, -ENOENT, "no such file");
	open_fails(test_path("missing.img"), &ro, -ENOENT, "no such file");
	open_fails(test_tmpdir(), &rw, -EISDIR, "directory");
	open_fails(test_tmpdir(), &ro, -EISDIR, "directory");
	open_fails("/dev/null", &ro, -EINVAL, "neither a regular file nor a block device");

	const char *empty = test_path("empty.img");
	int fd = open(empty, O_WRONLY | O_CREAT | O_TRUNC, 0644);
	assert_true(fd >= 0);
	close(fd);
	open_fails(empty, &rw, -EINVAL, "empty");
	open_fails(empty, &ro, -EINVAL, "empty");

	const char *path = test_path("forced.img");
	test_write_file(path, 64 * KiB, 10);
	struct vdisk_options nope = { .cache = VDISK_CACHE_WRITEBACK, .format = "nope" };
	open_fails(path, &nope, -EINVAL, "unknown format");
	open_fails(path, &nope, -EINVAL, "nope");
	struct vdisk_options raw = { .cache = VDISK_CACHE_WRITEBACK, .format = "raw" };
	struct vdisk *disk = open_ok(path, &raw);
	assert_string_equal(vdisk_format_name(disk), "raw");
	close_disk(disk);

	/* Bad queue options. */
	struct vdisk_options many = { .cache = VDISK_CACHE_WRITEBACK, .queues = 100000 };
	open_fails(path, &many, -EINVAL, "queues");
	struct vdisk_options deep = { .cache = VDISK_CACHE_WRITEBACK, .queue_depth = 1u << 30 };
	open_fails(path, &deep, -EINVAL, "depth");

	/* No options and no error buffer: defaults, no crash. */
	disk = NULL;
	assert_int_equal(vdisk_open(path, NULL, &disk, NULL, 0), 0);
	track(disk);
	uint8_t buf[512];
	assert_int_equal(vdisk_pread(disk, buf, sizeof(buf), 512), 0);
	uint8_t want[512];
	test_fill_pattern(want, sizeof(want), 512, 10);
	test_expect_equal(buf, want, sizeof(buf), "opened with defaults", 512);
	close_disk(disk);
	struct vdisk *none = (struct vdisk *)0x1;
	assert_int_equal(vdisk_open(test_path("missing.img"), NULL, &none, NULL, 0), -ENOENT);
	assert_true(none == (struct vdisk *)0x1);

	/* A refused open leaves no lock behind: the image opens read-write again. */
	disk = open_ok(path, NULL);
	close_disk(disk);
}

static void test_open_unreadable(void **state)
{
	(void)state;
	if (geteuid() == 0) {
		print_message("running as root: permissions do not apply\n");
		skip();
	}
	const char *path = test_path("unreadable.img");
	test_write_file(path, 64 * KiB, 11);
	assert_int_equal(chmod(path, 0), 0);
	struct vdisk_options ro = { .cache = VDISK_CACHE_WRITEBACK, .read_only = true };
	open_fails(path, &ro, -EACCES, "denied");
	assert_int_equal(chmod(path, 0444), 0);
	struct vdisk *disk = open_ok(path, &ro);
	close_disk(disk);
	struct vdisk_options rw = { .cache = VDISK_CACHE_WRITEBACK };
	open_fails(path, &rw, -EACCES, "denied");
}

/* ---- locks ---- */

/* Whether another process can take the lock with flock(1): 0 yes, 1 no, -1 no flock(1). */
static int flock_from_outside(const char *path, bool exclusive)
{
	if (test_run(NULL, 0, "command -v flock") != 0)
		return -1;
	int st = test_run(NULL, 0, "flock -n %s '%s' true", exclusive ? "-x" : "-s", path);
	return st == 0 ? 0 : 1;
}

static void test_locks(void **state)
{
	(void)state;
	const char *path = test_path("locked.img");
	test_write_file(path, 64 * KiB, 12);
	struct vdisk_options rw = { .cache = VDISK_CACHE_WRITEBACK };
	struct vdisk_options ro = { .cache = VDISK_CACHE_WRITEBACK, .read_only = true };
	struct vdisk_options rw_nolock = { .cache = VDISK_CACHE_WRITEBACK, .no_lock = true };
	struct vdisk_options rw_direct = { .cache = VDISK_CACHE_DIRECT };

	/* A writer excludes other writers and readers. */
	struct vdisk *a = open_ok(path, &rw);
	open_fails(path, &rw, -EBUSY, "in use");
	open_fails(path, &rw_direct, -EBUSY, "in use");
	open_fails(path, &ro, -EBUSY, "in use");
	int outside = flock_from_outside(path, false);
	if (outside >= 0)
		assert_int_equal(outside, 1);
	struct vdisk *b = open_ok(path, &rw_nolock);
	close_disk(b);
	close_disk(a);
	if (outside >= 0)
		assert_int_equal(flock_from_outside(path, true), 0);

	/* Readers share; a writer is refused while any reader is there. */
	a = open_ok(path, &ro);
	b = open_ok(path, &ro);
	open_fails(path, &rw, -EBUSY, "in use");
	if (outside >= 0) {
		assert_int_equal(flock_from_outside(path, false), 0);
		assert_int_equal(flock_from_outside(path, true), 1);
	}
	struct vdisk *c = open_ok(path, &rw_nolock);
	close_disk(c);
	close_disk(a);
	open_fails(path, &rw, -EBUSY, "in use");
	close_disk(b);

	/* Everything closed: a writer gets in again. */
	a = open_ok(path, &rw_direct);
	close_disk(a);

	/* The lock of a failed open is released with it. */
	struct vdisk_options nope = { .cache = VDISK_CACHE_WRITEBACK, .format = "nope" };
	open_fails(path, &nope, -EINVAL, "unknown format");
	a = open_ok(path, &rw);
	close_disk(a);
}

static int group_teardown(void **state)
{
	close_leftovers(state);
	test_tmpdir_remove();
	return 0;
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_teardown(test_create_sparse, close_leftovers),
		cmocka_unit_test_teardown(test_create_allocated, close_leftovers),
		cmocka_unit_test_teardown(test_create_existing, close_leftovers),
		cmocka_unit_test_teardown(test_create_overwrite_in_use, close_leftovers),
		cmocka_unit_test_teardown(test_create_failure_keeps_foreign_file, close_leftovers),
		cmocka_unit_test_teardown(test_create_bad_args, close_leftovers),
		cmocka_unit_test_teardown(test_block_status, close_leftovers),
		cmocka_unit_test_teardown(test_discard, close_leftovers),
		cmocka_unit_test_teardown(test_write_zeroes, close_leftovers),
		cmocka_unit_test_teardown(test_flush, close_leftovers),
		cmocka_unit_test_teardown(test_get_info, close_leftovers),
		cmocka_unit_test_teardown(test_open_refusals, close_leftovers),
		cmocka_unit_test_teardown(test_open_unreadable, close_leftovers),
		cmocka_unit_test_teardown(test_locks, close_leftovers),
	};

	return cmocka_run_group_tests(tests, NULL, group_teardown);
}
