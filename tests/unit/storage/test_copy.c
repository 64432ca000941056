/* The copy engine (storage/copy.c): vdisk_copy between raw, VHD and VHDX images, chains
 * copied whole or by their top layers, zero and non-zero targets, injected read and write
 * errors; vdisk_compare and vdisk_chain_status.
 *
 * The oracle is a shadow buffer holding what the test wrote; where QEMU can read both
 * images, `qemu-img compare` must agree too.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "copy.h"
#include "format.h"
#include "test_disk.h"
#include "test_util.h"
#include "vdisk.h"
#include "vhd.h"
#include "vhdx.h"

#define KiB 1024ull
#define MiB (1024ull * KiB)
/* Not a whole number of VHD (2 MiB) or VHDX (1 MiB) blocks: the last block is partial. */
#define DISK_SIZE (20 * MiB + 64 * KiB)

struct vdisk *test_open_disks[TEST_MAX_OPEN_DISKS];

static bool have_qemu;

/* ---- images and their shadows ---- */

struct shadow {
	uint8_t *buf;
	uint64_t size;
};

static struct shadow shadow_new(uint64_t size, int fill)
{
	struct shadow s = { malloc(size), size };
	assert_non_null(s.buf);
	memset(s.buf, fill, size);
	return s;
}

static void create_image(const char *path, const char *format, uint64_t size, const char *parent)
{
	struct vdisk_create_options o = {
		.format = format, .size = size, .parent = parent, .overwrite = true, .sparse = true
	};
	if (!strcmp(format, "vhdx"))
		o.block_size = 1 << 20; /* many blocks in a small disk */
	char err[256];
	int ret = vdisk_create(path, &o, err, sizeof(err));
	if (ret < 0)
		fail_msg("create %s (%s): %s", path, format, err);
}

static struct vdisk *open_image(const char *path, const struct vdisk_options *opts)
{
	struct vdisk_options o = opts ? *opts : (struct vdisk_options){ 0 };
	o.cache = VDISK_CACHE_WRITEBACK;
	struct vdisk *disk;
	char err[256];
	int ret = vdisk_open(path, &o, &disk, err, sizeof(err));
	if (ret < 0)
		fail_msg("open %s: %s", path, err);
	assert_int_equal(test_track_disk(disk), 0);
	return disk;
}

static void write_pattern(struct vdisk *disk, struct shadow *s, uint64_t off, uint64_t len,
			  uint32_t seed)
{
	test_fill_pattern(s->buf + off, len, off, seed);
	assert_int_equal(vdisk_pwrite(disk, s->buf + off, len, off), 0);
}

/* Zeros written as data: allocated, but all zero. */
static void write_zero_data(struct vdisk *disk, struct shadow *s, uint64_t off, uint64_t len)
{
	memset(s->buf + off, 0, len);
	assert_int_equal(vdisk_pwrite(disk, s->buf + off, len, off), 0);
}

static void write_zeroes(struct vdisk *disk, struct shadow *s, uint64_t off, uint64_t len)
{
	memset(s->buf + off, 0, len);
	assert_int_equal(vdisk_write_zeroes_sync(disk, off, len), 0);
}

/* Reads the whole disk and fails at the first byte that differs from the shadow. */
static void expect_content(struct vdisk *disk, const struct shadow *s, const char *what)
{
	assert_int_equal(vdisk_size(disk), s->size);
	uint8_t *buf = malloc(s->size);
	assert_non_null(buf);
	assert_int_equal(vdisk_pread(disk, buf, s->size, 0), 0);
	for (uint64_t i = 0; i < s->size; i++)
		if (buf[i] != s->buf[i]) {
			uint8_t got = buf[i];
			free(buf);
			fail_msg("%s: byte %llu is 0x%02x, expected 0x%02x", what,
				 (unsigned long long)i, got, s->buf[i]);
		}
	free(buf);
}

static const char *qemu_format(const char *format)
{
	return !strcmp(format, "vhd") ? "vpc" : format;
}

/* `qemu-img compare` on two images must exit with want (0 identical, 1 different). */
static void qemu_compare(const char *a, const char *fa, const char *b, const char *fb, int want)
{
	char out[4096];
	int ret = test_run(out, sizeof(out), "qemu-img compare -f %s -F %s '%s' '%s'",
			   qemu_format(fa), qemu_format(fb), a, b);
	if (ret != want)
		fail_msg("qemu-img compare %s %s: exit %d, expected %d: %s", a, b, ret, want, out);
}

/* A source with every kind of range: data, data crossing blocks at an odd sector, zeros
 * stored as data, zeros written with write-zeroes, holes, and data in the partial last
 * block. */
static void fill_source(struct vdisk *disk, struct shadow *s)
{
	write_pattern(disk, s, 0, 64 * KiB, 1);
	write_pattern(disk, s, 1 * MiB + 512, 2 * MiB + 512, 2);
	write_zero_data(disk, s, 5 * MiB, 1 * MiB);
	write_pattern(disk, s, 8 * MiB, 2 * MiB, 3);
	write_zeroes(disk, s, 8 * MiB, 1 * MiB);
	write_pattern(disk, s, 10 * MiB, 2 * MiB, 4);
	write_zero_data(disk, s, 10 * MiB + 256 * KiB, 256 * KiB);
	write_pattern(disk, s, DISK_SIZE - 64 * KiB, 64 * KiB, 5);
}

/* A new image filled by fill_source, closed (so that QEMU can read it) and opened again
 * read-only. */
static struct vdisk *make_source(const char *path, const char *format, struct shadow *s)
{
	create_image(path, format, DISK_SIZE, NULL);
	struct vdisk *disk = open_image(path, NULL);
	fill_source(disk, s);
	test_close_disk(disk);
	return open_image(path, &(struct vdisk_options){ .read_only = true });
}

static uint64_t allocated_bytes(const char *path)
{
	struct stat st;
	assert_int_equal(stat(path, &st), 0);
	return (uint64_t)st.st_blocks * 512;
}

static int copy(struct vdisk *src, struct vdisk *dst, const struct vdisk_copy_options *o, char *err,
		size_t err_size)
{
	int ret = vdisk_copy(src, dst, o, err, err_size);
	if (ret < 0 && ret != -EIO)
		fail_msg("copy: %s", err);
	return ret;
}

/* ---- copies between formats ---- */

static const char *const formats[] = { "raw", "vhd", "vhdx" };

/* Every format into every format, onto a fresh (zero) target: the target reads like the
 * source, QEMU agrees, and a dynamic target allocates no more than the source's data. */
static void test_copy_formats(void **state)
{
	(void)state;
	for (unsigned i = 0; i < 3; i++) {
		char src_path[64];
		snprintf(src_path, sizeof(src_path), "src.%s", formats[i]);
		const char *sp = test_path(src_path);
		struct shadow s = shadow_new(DISK_SIZE, 0);
		struct vdisk *src = make_source(sp, formats[i], &s);
		for (unsigned j = 0; j < 3; j++) {
			char dst_name[64];
			snprintf(dst_name, sizeof(dst_name), "dst-%s.%s", formats[i], formats[j]);
			const char *dp = test_path(dst_name);
			create_image(dp, formats[j], DISK_SIZE, NULL);
			struct vdisk *dst = open_image(dp, NULL);
			struct vdisk_copy_stats stats;
			char err[256];
			struct vdisk_copy_options o = { .target_is_zero = true,
							.stats = &stats,
							.chunk = j == 1 ? 64 * KiB : 0,
							.depth = j + 1 };
			assert_int_equal(copy(src, dst, &o, err, sizeof(err)), 0);
			expect_content(dst, &s, dst_name);
			/* only the pattern ranges are data: 64K + 2M+512 + 1M + 1.75M + 64K */
			assert_true(stats.bytes_written >=
				    64 * KiB + 2 * MiB + 512 + 1 * MiB + 1792 * KiB + 64 * KiB);
			assert_true(stats.bytes_written <= 8 * MiB);
			assert_int_equal(stats.bytes_zeroed, 0);
			test_close_disk(dst);
			if (strcmp(formats[j], "raw"))
				assert_true(allocated_bytes(dp) < 12 * MiB);
			if (have_qemu) {
				qemu_compare(sp, formats[i], dp, formats[j], 0);
				if (!strcmp(formats[j], "vhdx")) {
					char out[4096];
					assert_int_equal(test_run(out, sizeof(out),
								  "qemu-img check -f vhdx '%s'",
								  dp),
							 0);
				}
			}
		}
		test_close_disk(src);
		free(s.buf);
	}
}

/* A target that is not zero: zero ranges of the source are written as zeros. */
static void test_copy_onto_data(void **state)
{
	(void)state;
	for (unsigned j = 0; j < 3; j++) {
		const char *sp = test_path("onto-src.raw");
		create_image(sp, "raw", DISK_SIZE, NULL);
		struct vdisk *src = open_image(sp, NULL);
		struct shadow s = shadow_new(DISK_SIZE, 0);
		fill_source(src, &s);

		char name[64];
		snprintf(name, sizeof(name), "onto.%s", formats[j]);
		const char *dp = test_path(name);
		create_image(dp, formats[j], DISK_SIZE + 1 * MiB, NULL); /* larger is fine */
		struct vdisk *dst = open_image(dp, NULL);
		struct shadow garbage = shadow_new(DISK_SIZE + 1 * MiB, 0);
		write_pattern(dst, &garbage, 0, DISK_SIZE + 1 * MiB, 9);
		struct vdisk_copy_stats stats;
		char err[256];
		struct vdisk_copy_options o = { .stats = &stats };
		assert_int_equal(copy(src, dst, &o, err, sizeof(err)), 0);
		memcpy(garbage.buf, s.buf, DISK_SIZE); /* the part past the source stays */
		expect_content(dst, &garbage, name);
		assert_true(stats.bytes_zeroed >= 8 * MiB);
		assert_int_equal(stats.bytes_skipped, 0);
		test_close_disk(dst);
		test_close_disk(src);
		free(s.buf);
		free(garbage.buf);
	}
}

/* A mostly zero source makes a dynamic target that stays small, and a raw target that
 * stays sparse. */
static void test_copy_stays_sparse(void **state)
{
	(void)state;
	const char *sp = test_path("sparse-src.raw");
	create_image(sp, "raw", 64 * MiB, NULL);
	struct vdisk *src = open_image(sp, NULL);
	struct shadow s = shadow_new(64 * MiB, 0);
	write_zero_data(src, &s, 0, 64 * MiB); /* allocated zeros on the host */
	write_pattern(src, &s, 40 * MiB, 4 * KiB, 7);
	for (unsigned j = 0; j < 3; j++) {
		char name[64];
		snprintf(name, sizeof(name), "sparse.%s", formats[j]);
		const char *dp = test_path(name);
		create_image(dp, formats[j], 64 * MiB, NULL);
		struct vdisk *dst = open_image(dp, NULL);
		struct vdisk_copy_options o = { .target_is_zero = true };
		char err[256];
		assert_int_equal(copy(src, dst, &o, err, sizeof(err)), 0);
		expect_content(dst, &s, name);
		test_close_disk(dst);
		assert_true(allocated_bytes(dp) < 8 * MiB);
	}
	test_close_disk(src);
	free(s.buf);
}

/* ---- chains ---- */

/* base <- mid <- top, all of one format, with what each layer holds known. */
struct chain {
	const char *format;
	char base[600], mid[600], top[600];
	struct shadow all;   /* what the whole chain reads */
	struct shadow upper; /* 1 where the top image holds the byte */
};

static void mark(struct shadow *held, uint64_t off, uint64_t len)
{
	memset(held->buf + off, 1, len);
}

static void build_chain(struct chain *c, const char *format)
{
	c->format = format;
	char name[64];
	snprintf(name, sizeof(name), "base.%s", format);
	snprintf(c->base, sizeof(c->base), "%s", test_path(name));
	snprintf(name, sizeof(name), "mid.%s", format);
	snprintf(c->mid, sizeof(c->mid), "%s", test_path(name));
	snprintf(name, sizeof(name), "top.%s", format);
	snprintf(c->top, sizeof(c->top), "%s", test_path(name));
	c->all = shadow_new(DISK_SIZE, 0);
	c->upper = shadow_new(DISK_SIZE, 0);

	create_image(c->base, format, DISK_SIZE, NULL);
	struct vdisk *d = open_image(c->base, NULL);
	write_pattern(d, &c->all, 0, 12 * MiB, 11);
	test_close_disk(d);

	create_image(c->mid, format, 0, c->base);
	d = open_image(c->mid, NULL);
	write_pattern(d, &c->all, 4 * MiB, 2 * MiB, 12);
	write_pattern(d, &c->all, 14 * MiB, 1 * MiB, 13);
	test_close_disk(d);

	create_image(c->top, format, 0, c->mid);
	d = open_image(c->top, NULL);
	write_pattern(d, &c->all, 1 * MiB + 4 * KiB, 8 * KiB, 14); /* inside a block */
	mark(&c->upper, 1 * MiB + 4 * KiB, 8 * KiB);
	write_zeroes(d, &c->all, 6 * MiB, 2 * MiB); /* zeros over the base's data */
	mark(&c->upper, 6 * MiB, 2 * MiB);
	write_pattern(d, &c->all, 16 * MiB, 2 * MiB, 15);
	mark(&c->upper, 16 * MiB, 2 * MiB);
	test_close_disk(d);
}

static void free_chain(struct chain *c)
{
	free(c->all.buf);
	free(c->upper.buf);
}

/* The whole chain flattens into one image of each format. */
static void test_copy_chain_whole(void **state)
{
	(void)state;
	for (unsigned f = 1; f < 3; f++) {
		struct chain c;
		build_chain(&c, formats[f]);
		struct vdisk *src = open_image(c.top, &(struct vdisk_options){ .read_only = true });
		for (unsigned j = 0; j < 3; j++) {
			char name[64];
			snprintf(name, sizeof(name), "flat-%s.%s", formats[f], formats[j]);
			const char *dp = test_path(name);
			create_image(dp, formats[j], DISK_SIZE, NULL);
			struct vdisk *dst = open_image(dp, NULL);
			char err[256];
			assert_int_equal(
				copy(src, dst,
				     &(struct vdisk_copy_options){ .target_is_zero = true }, err,
				     sizeof(err)),
				0);
			expect_content(dst, &c.all, name);
			test_close_disk(dst);
		}
		test_close_disk(src);
		free_chain(&c);
	}
}

/* layers = 1 copies only what the top image holds (its zeros included) onto a target
 * holding other data; the rest of the target stays. */
static void test_copy_chain_top_layer(void **state)
{
	(void)state;
	for (unsigned f = 1; f < 3; f++) {
		struct chain c;
		build_chain(&c, formats[f]);
		struct vdisk *src = open_image(c.top, &(struct vdisk_options){ .read_only = true });
		const char *dp = test_path("layer.raw");
		create_image(dp, "raw", DISK_SIZE, NULL);
		struct vdisk *dst = open_image(dp, NULL);
		struct shadow want = shadow_new(DISK_SIZE, 0);
		write_pattern(dst, &want, 0, DISK_SIZE, 21);
		for (uint64_t i = 0; i < DISK_SIZE; i++)
			if (c.upper.buf[i])
				want.buf[i] = c.all.buf[i];
		struct vdisk_copy_stats stats;
		char err[256];
		struct vdisk_copy_options o = { .layers = 1, .stats = &stats, .chunk = 64 * KiB };
		assert_int_equal(copy(src, dst, &o, err, sizeof(err)), 0);
		expect_content(dst, &want, formats[f]);
		/* VHD holds whole sectors, both formats may round up to a sector */
		assert_true(stats.bytes_written >= 8 * KiB + 2 * MiB);
		assert_true(stats.bytes_zeroed >= 2 * MiB);
		test_close_disk(dst);
		test_close_disk(src);
		free(want.buf);
		free_chain(&c);
	}
}

/* The merge case: the top layer copied into its own parent, opened writable in the same
 * chain (the two share their queue). Afterwards the parent alone reads like the chain. */
static void test_copy_into_parent(void **state)
{
	(void)state;
	for (unsigned f = 1; f < 3; f++) {
		struct chain c;
		build_chain(&c, formats[f]);
		struct vdisk *top =
			open_image(c.top, &(struct vdisk_options){ .writable_depth = 1 });
		struct vdisk *mid = vdisk_backing(top);
		assert_non_null(mid);
		assert_false(vdisk_read_only(mid));
		char err[256];
		struct vdisk_copy_options o = { .layers = 1 };
		assert_int_equal(copy(top, mid, &o, err, sizeof(err)), 0);
		test_close_disk(top);
		struct vdisk *merged =
			open_image(c.mid, &(struct vdisk_options){ .read_only = true });
		expect_content(merged, &c.all, c.mid);
		test_close_disk(merged);
		free_chain(&c);
	}
}

/* ---- chain status ---- */

static void expect_status(struct vdisk *disk, uint64_t off, unsigned layers, unsigned flags,
			  int depth)
{
	struct vdisk_extent ext;
	int got_depth;
	assert_int_equal(vdisk_chain_status(disk, off, 64 * KiB, layers, &ext, &got_depth), 0);
	assert_int_equal(ext.offset, off);
	assert_true(ext.length >= 1 && ext.length <= 64 * KiB);
	if (ext.flags != flags || got_depth != depth)
		fail_msg("offset %llu: flags %u depth %d, expected flags %u depth %d",
			 (unsigned long long)off, ext.flags, got_depth, flags, depth);
}

static void test_chain_status(void **state)
{
	(void)state;
	struct chain c;
	build_chain(&c, "vhdx");
	struct vdisk *top = open_image(c.top, &(struct vdisk_options){ .read_only = true });
	expect_status(top, 1 * MiB + 4 * KiB, 0, VDISK_EXTENT_DATA, 0);
	expect_status(top, 6 * MiB, 0, VDISK_EXTENT_ZERO, 0);
	expect_status(top, 4 * MiB, 0, VDISK_EXTENT_DATA, 1);
	expect_status(top, 0, 0, VDISK_EXTENT_DATA, 2);
	expect_status(top, 19 * MiB, 0, VDISK_EXTENT_ZERO, 2); /* unallocated in the base */
	expect_status(top, 4 * MiB, 1, 0, -1);		       /* not in the top layer */
	expect_status(top, 0, 2, 0, -1);
	expect_status(top, 0, 3, VDISK_EXTENT_DATA, 2);
	test_close_disk(top);

	/* without its parent, what falls through cannot be told */
	top = open_image(c.top, &(struct vdisk_options){ .read_only = true, .no_backing = true });
	struct vdisk_extent ext;
	int depth;
	assert_int_equal(vdisk_chain_status(top, 4 * MiB, 64 * KiB, 0, &ext, &depth), -ENODATA);
	expect_status(top, 4 * MiB, 1, 0, -1);
	test_close_disk(top);
	free_chain(&c);
}

/* ---- errors ---- */

/* Raw images whose reads or writes of one byte fail (only one request of a copy does). */
static uint64_t fail_read_at = UINT64_MAX, fail_write_at = UINT64_MAX;
static struct vdisk_format faulty;

static bool covers(const struct vdisk_req *req, uint64_t offset)
{
	return req->offset <= offset && offset - req->offset < req->length;
}

static void faulty_readv(struct vdisk_req *req)
{
	if (covers(req, fail_read_at))
		vdisk_req_fail(req, -EIO);
	else
		vdisk_format_raw.readv(req);
}

static void faulty_writev(struct vdisk_req *req)
{
	if (covers(req, fail_write_at))
		vdisk_req_fail(req, -EIO);
	else
		vdisk_format_raw.writev(req);
}

static int never_probe(const struct vdisk_probe *probe)
{
	(void)probe;
	return 0;
}

static void test_copy_errors(void **state)
{
	(void)state;
	const char *sp = test_path("faulty-src.raw");
	const char *dp = test_path("faulty-dst.raw");
	test_write_file(sp, 8 * MiB, 31);
	create_image(dp, "raw", 8 * MiB, NULL);
	struct vdisk_options faulty_opts = { .format = "faulty" };
	char err[256];
	struct vdisk *dst = open_image(dp, NULL);

	fail_read_at = 5 * MiB + 4096;
	struct vdisk *src = open_image(sp, &faulty_opts);
	int ret = vdisk_copy(src, dst, &(struct vdisk_copy_options){ .target_is_zero = true }, err,
			     sizeof(err));
	assert_int_equal(ret, -EIO);
	assert_non_null(strstr(err, "reading"));
	assert_non_null(strstr(err, sp));
	assert_non_null(strstr(err, "offset 5242880"));
	test_close_disk(src);
	test_close_disk(dst);
	fail_read_at = UINT64_MAX;

	fail_write_at = 3 * MiB - 1;
	src = open_image(sp, NULL);
	dst = open_image(dp, &faulty_opts);
	ret = vdisk_copy(src, dst, &(struct vdisk_copy_options){ .chunk = 512 * KiB }, err,
			 sizeof(err));
	assert_int_equal(ret, -EIO);
	assert_non_null(strstr(err, "writing"));
	assert_non_null(strstr(err, dp));
	assert_non_null(strstr(err, "offset 2621440"));
	fail_write_at = UINT64_MAX;

	/* bad arguments are refused before anything is written */
	assert_int_equal(vdisk_copy(src, dst, &(struct vdisk_copy_options){ .chunk = 1000 }, err,
				    sizeof(err)),
			 -EINVAL);
	assert_non_null(strstr(err, "chunk"));
	test_close_disk(dst);
	const char *small = test_path("small.raw");
	create_image(small, "raw", 4 * MiB, NULL);
	dst = open_image(small, NULL);
	assert_int_equal(vdisk_copy(src, dst, &(struct vdisk_copy_options){ 0 }, err, sizeof(err)),
			 -EINVAL);
	assert_non_null(strstr(err, "smaller"));
	test_close_disk(dst);
	test_close_disk(src);
}

/* Every engine moves the data, with the two disks on separate queues. */
static void test_copy_engines(void **state)
{
	(void)state;
	static const enum vdisk_engine_kind kinds[] = { VDISK_ENGINE_AIO, VDISK_ENGINE_SYNC };
	const char *sp = test_path("engine-src.raw");
	test_write_file(sp, 8 * MiB, 41);
	struct shadow s = shadow_new(8 * MiB, 0);
	test_fill_pattern(s.buf, s.size, 0, 41);
	for (unsigned k = 0; k < 2; k++) {
		struct vdisk_options o = { .engine = kinds[k] };
		struct vdisk *src = open_image(sp, &o);
		const char *dp = test_path("engine.vhdx");
		create_image(dp, "vhdx", 8 * MiB, NULL);
		struct vdisk *dst = open_image(dp, &o);
		char err[256];
		assert_int_equal(copy(src, dst,
				      &(struct vdisk_copy_options){ .target_is_zero = true }, err,
				      sizeof(err)),
				 0);
		expect_content(dst, &s, vdisk_engine_name(dst));
		test_close_disk(dst);
		test_close_disk(src);
	}
	free(s.buf);
}

/* ---- compare ---- */

static int compare(struct vdisk *a, struct vdisk *b, bool strict, uint64_t *at)
{
	char err[256];
	struct vdisk_compare_options o = { .strict = strict, .chunk = 64 * KiB, .depth = 4 };
	int ret = vdisk_compare(a, b, &o, at, err, sizeof(err));
	if (ret < 0)
		fail_msg("compare: %s", err);
	return ret;
}

static void test_compare(void **state)
{
	(void)state;
	const char *ap = test_path("cmp-a.vhdx");
	const char *bp = test_path("cmp-b.raw");
	struct shadow s = shadow_new(DISK_SIZE, 0);
	struct vdisk *a = make_source(ap, "vhdx", &s);
	create_image(bp, "raw", DISK_SIZE + 2 * MiB, NULL);
	struct vdisk *b = open_image(bp, NULL);
	struct shadow sb = shadow_new(DISK_SIZE + 2 * MiB, 0);
	memcpy(sb.buf, s.buf, DISK_SIZE);
	assert_int_equal(vdisk_pwrite(b, sb.buf, sb.size, 0), 0);

	uint64_t at = 0;
	assert_int_equal(compare(a, b, false, &at), 0); /* the extra 2 MiB read as zeros */
	assert_int_equal(compare(a, b, true, &at), 1);
	assert_int_equal(at, DISK_SIZE);
	if (have_qemu)
		qemu_compare(ap, "vhdx", bp, "raw", 0);

	/* one byte differs inside a zero range of a, then one earlier in data */
	static const uint8_t one = 1;
	assert_int_equal(vdisk_pwrite(b, &one, 1, 8 * MiB + 777), 0);
	assert_int_equal(compare(a, b, false, &at), 1);
	assert_int_equal(at, 8 * MiB + 777);
	assert_int_equal(compare(b, a, false, &at), 1);
	assert_int_equal(at, 8 * MiB + 777);
	uint8_t flipped = s.buf[1 * MiB + 4097] ^ 0x40;
	assert_int_equal(vdisk_pwrite(b, &flipped, 1, 1 * MiB + 4097), 0);
	assert_int_equal(compare(a, b, false, &at), 1);
	assert_int_equal(at, 1 * MiB + 4097);
	if (have_qemu)
		qemu_compare(ap, "vhdx", bp, "raw", 1);

	/* a non-zero byte in the part past the smaller disk */
	assert_int_equal(vdisk_pwrite(b, sb.buf + 1 * MiB + 4097, 1, 1 * MiB + 4097), 0);
	assert_int_equal(vdisk_pwrite(b, sb.buf + 8 * MiB + 777, 1, 8 * MiB + 777), 0);
	assert_int_equal(compare(a, b, false, &at), 0);
	assert_int_equal(vdisk_pwrite(b, &one, 1, DISK_SIZE + 1 * MiB + 3), 0);
	assert_int_equal(compare(a, b, false, &at), 1);
	assert_int_equal(at, DISK_SIZE + 1 * MiB + 3);
	if (have_qemu)
		qemu_compare(ap, "vhdx", bp, "raw", 1);
	test_close_disk(b);
	test_close_disk(a);
	free(s.buf);
	free(sb.buf);
}

static int teardown_test(void **state)
{
	(void)state;
	test_close_tracked();
	fail_read_at = fail_write_at = UINT64_MAX;
	return 0;
}

static int teardown(void **state)
{
	(void)state;
	test_tmpdir_remove();
	return 0;
}

int main(void)
{
	vhd_register();
	vhdx_register();
	faulty = vdisk_format_raw;
	faulty.name = "faulty";
	faulty.probe = never_probe;
	faulty.readv = faulty_readv;
	faulty.writev = faulty_writev;
	vdisk_format_register(&faulty);
	have_qemu = test_run(NULL, 0, "command -v qemu-img >/dev/null") == 0;
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_teardown(test_copy_formats, teardown_test),
		cmocka_unit_test_teardown(test_copy_onto_data, teardown_test),
		cmocka_unit_test_teardown(test_copy_stays_sparse, teardown_test),
		cmocka_unit_test_teardown(test_copy_chain_whole, teardown_test),
		cmocka_unit_test_teardown(test_copy_chain_top_layer, teardown_test),
		cmocka_unit_test_teardown(test_copy_into_parent, teardown_test),
		cmocka_unit_test_teardown(test_chain_status, teardown_test),
		cmocka_unit_test_teardown(test_copy_errors, teardown_test),
		cmocka_unit_test_teardown(test_copy_engines, teardown_test),
		cmocka_unit_test_teardown(test_compare, teardown_test),
	};
	return cmocka_run_group_tests(tests, NULL, teardown);
}
