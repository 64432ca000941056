/* The three I/O engines (io_uring, libaio, sync) driven through the public block layer API
 * on raw images: O_DIRECT with aligned and unaligned memory and ranges, multi-segment
 * requests, short reads at end of file, many requests in flight, where callbacks run,
 * refusals, I/O errors from the kernel, the event fd, engine selection.
 *
 * Every test runs once per engine. Data is checked against test_fill_pattern() and plain
 * pread(2)/pwrite(2) on the image file, never against what the block layer itself returns.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <sched.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/vfs.h>
#include <unistd.h>

#include "test_disk.h"
#include "test_util.h"
#include "vdisk.h"

#define ARRAY_SIZE(a) (sizeof(a) / sizeof((a)[0]))
#define KiB 1024u
#define MiB (1024u * KiB)
#define TMPFS_MAGIC 0x01021994

struct engine_case {
	enum vdisk_engine_kind kind;
	const char *name; /* what vdisk_engine_name() reports */
	bool available;
	char why[256]; /* why it is not */
};

static struct engine_case engines[] = {
	{ VDISK_ENGINE_URING, "io_uring", false, "" },
	{ VDISK_ENGINE_AIO, "libaio", false, "" },
	{ VDISK_ENGINE_SYNC, "sync", false, "" },
};

/* ---- helpers: plain file access, the independent oracle ---- */

static void expect_zero(const void *got, size_t len, uint64_t off, const char *what)
{
	const uint8_t *g = got;
	for (size_t i = 0; i < len; i++)
		if (g[i])
			fail_msg("%s: byte at offset %llu is 0x%02x, expected 0", what,
				 (unsigned long long)(off + i), g[i]);
}

/* The whole file must equal model. */
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

static uint8_t *pattern_model(size_t size, uint32_t seed)
{
	uint8_t *m = test_xmalloc(size);
	test_fill_pattern(m, size, 0, seed);
	return m;
}

/* ---- helpers: requests and where their callbacks run ---- */

struct req {
	int calls;
	int result;
	void (*then)(struct req *r); /* runs inside the callback */
	void *arg;
};

static int submit_depth; /* > 0 while a vdisk_* submission call is running */
static int poll_depth;   /* > 0 while vdisk_queue_poll is running */
static unsigned bad_context; /* callbacks that ran outside a poll or inside a submission */

static void req_cb(void *opaque, int result)
{
	struct req *r = opaque;
	if (submit_depth || !poll_depth)
		bad_context++;
	r->calls++;
	r->result = result;
	if (r->then)
		r->then(r);
}

static void req_init(struct req *r)
{
	*r = (struct req){ .result = 1 }; /* neither 0 nor -errno */
}

static int do_readv(struct vdisk *d, struct vdisk_queue *q, const struct iovec *iov, int cnt,
		    uint64_t off, struct req *r)
{
	req_init(r);
	submit_depth++;
	int ret = vdisk_readv(d, q, iov, cnt, off, req_cb, r);
	submit_depth--;
	return ret;
}

static int do_writev(struct vdisk *d, struct vdisk_queue *q, const struct iovec *iov, int cnt,
		     uint64_t off, struct req *r)
{
	req_init(r);
	submit_depth++;
	int ret = vdisk_writev(d, q, iov, cnt, off, req_cb, r);
	submit_depth--;
	return ret;
}

static int do_flush(struct vdisk *d, struct vdisk_queue *q, struct req *r)
{
	req_init(r);
	submit_depth++;
	int ret = vdisk_flush(d, q, req_cb, r);
	submit_depth--;
	return ret;
}

static int do_discard(struct vdisk *d, struct vdisk_queue *q, uint64_t off, uint64_t len,
		      struct req *r)
{
	req_init(r);
	submit_depth++;
	int ret = vdisk_discard(d, q, off, len, req_cb, r);
	submit_depth--;
	return ret;
}

static int do_zeroes(struct vdisk *d, struct vdisk_queue *q, uint64_t off, uint64_t len,
		     struct req *r)
{
	req_init(r);
	submit_depth++;
	int ret = vdisk_write_zeroes(d, q, off, len, req_cb, r);
	submit_depth--;
	return ret;
}

static int qpoll(struct vdisk_queue *q, unsigned min)
{
	poll_depth++;
	int ret = vdisk_queue_poll(q, min);
	poll_depth--;
	return ret;
}

/* Polls until every request in reqs has completed; a poll that waits for one completion
 * and returns none while requests are outstanding means a request was lost. */
static void wait_reqs(struct vdisk_queue *q, struct req *reqs, size_t n)
{
	for (;;) {
		size_t pending = 0;
		for (size_t i = 0; i < n; i++)
			pending += reqs[i].calls == 0;
		if (!pending)
			break;
		int ret = qpoll(q, 1);
		if (ret < 0)
			fail_msg("vdisk_queue_poll: %s", strerror(-ret));
		if (ret == 0)
			fail_msg("vdisk_queue_poll returned nothing with %zu requests pending",
				 pending);
	}
	for (size_t i = 0; i < n; i++)
		if (reqs[i].calls != 1)
			fail_msg("request %zu completed %d times", i, reqs[i].calls);
	assert_int_equal(vdisk_queue_inflight(q), 0);
}

static int run_one(struct vdisk_queue *q, struct req *r)
{
	wait_reqs(q, r, 1);
	return r->result;
}

static int sync_readv(struct vdisk *d, const struct iovec *iov, int cnt, uint64_t off)
{
	struct req r;
	struct vdisk_queue *q = vdisk_queue(d, 0);
	int ret = do_readv(d, q, iov, cnt, off, &r);
	return ret ? ret : run_one(q, &r);
}

static int sync_writev(struct vdisk *d, const struct iovec *iov, int cnt, uint64_t off)
{
	struct req r;
	struct vdisk_queue *q = vdisk_queue(d, 0);
	int ret = do_writev(d, q, iov, cnt, off, &r);
	return ret ? ret : run_one(q, &r);
}

static int sync_read(struct vdisk *d, void *buf, size_t len, uint64_t off)
{
	struct iovec iov = { buf, len };
	return sync_readv(d, &iov, 1, off);
}

static int sync_write(struct vdisk *d, const void *buf, size_t len, uint64_t off)
{
	struct iovec iov = { (void *)buf, len };
	return sync_writev(d, &iov, 1, off);
}

/* ---- helpers: opening, and closing what a failed test left open ---- */

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

static void close_leftovers(void)
{
	test_close_tracked();
}

struct open_args {
	enum vdisk_cache_mode cache;
	bool read_only;
	unsigned queue_depth;
	bool fallback_ok; /* go on with the page cache when O_DIRECT is refused */
};

static struct vdisk *open_disk(const struct engine_case *ec, const char *path,
			       struct open_args a)
{
	if (!ec->available) {
		print_message("%s unavailable: %s\n", ec->name, ec->why);
		skip();
	}
	struct vdisk_options opts = {
		.read_only = a.read_only,
		.cache = a.cache,
		.engine = ec->kind,
		.queue_depth = a.queue_depth,
	};
	struct vdisk *disk = NULL;
	char err[256];
	int ret = vdisk_open(path, &opts, &disk, err, sizeof(err));
	if (ret < 0)
		fail_msg("vdisk_open %s (%s): %s", path, ec->name, err);
	track(disk);
	assert_string_equal(vdisk_engine_name(disk), ec->name);
	if (a.cache == VDISK_CACHE_DIRECT && !a.fallback_ok && vdisk_engine_fallback_reason(disk)) {
		/* O_DIRECT refused by the file system: nothing here tests what it should */
		print_message("%s\n", vdisk_engine_fallback_reason(disk));
		close_disk(disk);
		skip();
	}
	return disk;
}

static struct vdisk *open_direct(const struct engine_case *ec, const char *path)
{
	return open_disk(ec, path, (struct open_args){ .cache = VDISK_CACHE_DIRECT });
}

static void end_test(struct vdisk *disk)
{
	close_disk(disk);
	assert_int_equal(bad_context, 0);
}

/* ---- tests ---- */

static void test_direct_aligned(void **state)
{
	const struct engine_case *ec = *state;
	const char *path = test_path("aligned.img");
	test_write_file(path, 1 * MiB, 1);
	uint8_t *model = pattern_model(1 * MiB, 1);
	struct vdisk *disk = open_direct(ec, path);
	struct vdisk_queue *q = vdisk_queue(disk, 0);
	assert_int_equal(vdisk_size(disk), 1 * MiB);

	uint8_t *buf = test_aligned_buf(64 * KiB);
	assert_int_equal(sync_read(disk, buf, 64 * KiB, 128 * KiB), 0);
	test_expect_pattern(buf, 64 * KiB, 128 * KiB, 1, "aligned read");

	test_fill_pattern(buf, 64 * KiB, 256 * KiB, 2);
	test_fill_pattern(model + 256 * KiB, 64 * KiB, 256 * KiB, 2);
	assert_int_equal(sync_write(disk, buf, 64 * KiB, 256 * KiB), 0);
	expect_file(path, model, 1 * MiB, "after aligned write");

	/* The synchronous layer over the same engine. */
	uint8_t *small = test_aligned_buf(8 * KiB);
	test_fill_pattern(small, 8 * KiB, 512 * KiB, 3);
	test_fill_pattern(model + 512 * KiB, 8 * KiB, 512 * KiB, 3);
	assert_int_equal(vdisk_pwrite(disk, small, 8 * KiB, 512 * KiB), 0);
	memset(small, 0, 8 * KiB);
	assert_int_equal(vdisk_pread(disk, small, 8 * KiB, 512 * KiB), 0);
	test_expect_pattern(small, 8 * KiB, 512 * KiB, 3, "vdisk_pread");
	assert_int_equal(vdisk_pread(disk, buf, 64 * KiB, 1 * MiB - 64 * KiB), 0);
	test_expect_pattern(buf, 64 * KiB, 1 * MiB - 64 * KiB, 1, "last 64 KiB");

	struct req r;
	assert_int_equal(do_flush(disk, q, &r), 0);
	assert_int_equal(run_one(q, &r), 0);
	assert_int_equal(vdisk_flush_sync(disk), 0);
	expect_file(path, model, 1 * MiB, "after flush");

	end_test(disk);
	free(small);
	free(buf);
	free(model);
}

static void test_direct_unaligned_memory(void **state)
{
	const struct engine_case *ec = *state;
	const char *path = test_path("unaligned_mem.img");
	test_write_file(path, 1 * MiB, 1);
	uint8_t *model = pattern_model(1 * MiB, 1);
	struct vdisk *disk = open_direct(ec, path);

	/* One buffer at an odd address. */
	uint8_t *raw = test_xmalloc(64 * KiB + 1), *buf = raw + 1;
	memset(buf, 0x5A, 64 * KiB);
	assert_int_equal(vdisk_pread(disk, buf, 32 * KiB, 64 * KiB), 0);
	test_expect_pattern(buf, 32 * KiB, 64 * KiB, 1, "read into malloc+1");
	test_fill_pattern(buf, 32 * KiB, 96 * KiB, 4);
	test_fill_pattern(model + 96 * KiB, 32 * KiB, 96 * KiB, 4);
	assert_int_equal(vdisk_pwrite(disk, buf, 32 * KiB, 96 * KiB), 0);
	expect_file(path, model, 1 * MiB, "write from malloc+1");

	/* Segments of odd lengths at odd addresses, 8 KiB in all at an aligned offset. */
	static const size_t wlens[] = { 1, 1000, 3000, 4191 };
	static const size_t rlens[] = { 4095, 1, 4096 };
	uint8_t *seg = test_xmalloc(8 * KiB + 64);
	uint8_t *src = pattern_model(8 * KiB, 0);
	test_fill_pattern(src, 8 * KiB, 200 * KiB, 5);
	memcpy(model + 200 * KiB, src, 8 * KiB);
	struct iovec iov[4];
	size_t pos = 0, addr = 3;
	for (size_t i = 0; i < ARRAY_SIZE(wlens); i++) {
		iov[i] = (struct iovec){ seg + addr, wlens[i] };
		memcpy(seg + addr, src + pos, wlens[i]);
		pos += wlens[i];
		addr += wlens[i] + 7;
	}
	assert_int_equal(pos, 8 * KiB);
	assert_int_equal(sync_writev(disk, iov, 4, 200 * KiB), 0);
	expect_file(path, model, 1 * MiB, "writev of odd segments");

	memset(seg, 0, 8 * KiB + 64);
	pos = 0;
	addr = 5;
	for (size_t i = 0; i < ARRAY_SIZE(rlens); i++) {
		iov[i] = (struct iovec){ seg + addr, rlens[i] };
		addr += rlens[i] + 11;
	}
	assert_int_equal(sync_readv(disk, iov, 3, 200 * KiB), 0);
	for (size_t i = 0; i < ARRAY_SIZE(rlens); i++) {
		test_expect_equal(iov[i].iov_base, src + pos, rlens[i], "readv into odd segments",
			     200 * KiB + pos);
		pos += rlens[i];
	}

	/* IOV_MAX segments of 8 bytes at odd addresses. */
	uint8_t *many = test_xmalloc(IOV_MAX * 9 + 1);
	struct iovec *miov = test_xmalloc(IOV_MAX * sizeof(*miov));
	test_fill_pattern(model + 300 * KiB, IOV_MAX * 8, 300 * KiB, 6);
	for (int i = 0; i < IOV_MAX; i++) {
		miov[i] = (struct iovec){ many + 1 + 9 * i, 8 };
		memcpy(miov[i].iov_base, model + 300 * KiB + 8 * i, 8);
	}
	assert_int_equal(sync_writev(disk, miov, IOV_MAX, 300 * KiB), 0);
	expect_file(path, model, 1 * MiB, "writev of IOV_MAX segments");
	memset(many, 0, IOV_MAX * 9 + 1);
	assert_int_equal(sync_readv(disk, miov, IOV_MAX, 300 * KiB), 0);
	for (int i = 0; i < IOV_MAX; i++)
		test_expect_equal(miov[i].iov_base, model + 300 * KiB + 8 * i, 8,
			     "readv of IOV_MAX segments", 300 * KiB + 8 * i);

	end_test(disk);
	free(miov);
	free(many);
	free(src);
	free(seg);
	free(raw);
	free(model);
}

static void test_direct_unaligned_range(void **state)
{
	const struct engine_case *ec = *state;
	const char *path = test_path("unaligned_range.img");
	const size_t size = 64 * KiB;
	test_write_file(path, size, 1);
	uint8_t *model = pattern_model(size, 1);
	struct vdisk *disk = open_direct(ec, path);

	/* 100 bytes at offset 7, from and to unaligned memory. */
	uint8_t *raw = test_xmalloc(16 * KiB + 1), *buf = raw + 1;
	test_fill_pattern(buf, 100, 7, 7);
	test_fill_pattern(model + 7, 100, 7, 7);
	assert_int_equal(vdisk_pwrite(disk, buf, 100, 7), 0);
	expect_file(path, model, size, "100 bytes at 7");
	memset(buf, 0, 100);
	assert_int_equal(vdisk_pread(disk, buf, 100, 7), 0);
	test_expect_pattern(buf, 100, 7, 7, "read 100 bytes at 7");

	/* Across block boundaries, from aligned memory. */
	uint8_t *abuf = test_aligned_buf(8 * KiB);
	test_fill_pattern(abuf, 5000, 4000, 8);
	test_fill_pattern(model + 4000, 5000, 4000, 8);
	assert_int_equal(vdisk_pwrite(disk, abuf, 5000, 4000), 0);
	expect_file(path, model, size, "5000 bytes at 4000");
	memset(abuf, 0, 8 * KiB);
	assert_int_equal(vdisk_pread(disk, abuf, 513, 511), 0);
	test_expect_equal(abuf, model + 511, 513, "513 bytes at 511", 511);
	assert_int_equal(vdisk_pread(disk, abuf, 1, size - 1), 0);
	test_expect_equal(abuf, model + size - 1, 1, "last byte", size - 1);
	/* An aligned length at an unaligned offset, and the reverse. */
	assert_int_equal(vdisk_pread(disk, abuf, 4096, 3), 0);
	test_expect_equal(abuf, model + 3, 4096, "4096 bytes at 3", 3);
	assert_int_equal(vdisk_pread(disk, abuf, 4095, 4096), 0);
	test_expect_equal(abuf, model + 4096, 4095, "4095 bytes at 4096", 4096);

	/* Three small segments at an odd offset. */
	uint8_t a[10], b[20], c[30];
	struct iovec iov[3] = { { a, 10 }, { b, 20 }, { c, 30 } };
	test_fill_pattern(model + 12345, 60, 12345, 9);
	memcpy(a, model + 12345, 10);
	memcpy(b, model + 12355, 20);
	memcpy(c, model + 12375, 30);
	assert_int_equal(sync_writev(disk, iov, 3, 12345), 0);
	expect_file(path, model, size, "writev at 12345");

	/* Bytes written through the page cache are seen by an O_DIRECT read of the whole
	 * image, and an O_DIRECT write is seen by a later unaligned read. */
	uint8_t *all = test_aligned_buf(size);
	assert_int_equal(vdisk_pread(disk, all, size, 0), 0);
	test_expect_equal(all, model, size, "aligned read after unaligned writes", 0);
	assert_int_equal(vdisk_pread(disk, buf, 3000, 1000), 0); /* caches the page */
	test_fill_pattern(abuf, 4096, 0, 10);
	test_fill_pattern(model, 4096, 0, 10);
	assert_int_equal(vdisk_pwrite(disk, abuf, 4096, 0), 0);
	assert_int_equal(vdisk_pread(disk, buf, 3000, 1000), 0);
	test_expect_equal(buf, model + 1000, 3000, "unaligned read after aligned write", 1000);
	expect_file(path, model, size, "end");

	end_test(disk);
	free(all);
	free(abuf);
	free(raw);
	free(model);
}

static void test_multi_iovec(void **state)
{
	const struct engine_case *ec = *state;
	static const enum vdisk_cache_mode caches[] = { VDISK_CACHE_DIRECT, VDISK_CACHE_WRITEBACK };
	const size_t size = 256 * KiB;

	for (size_t c = 0; c < ARRAY_SIZE(caches); c++) {
		const char *path = test_path("multi.img");
		test_write_file(path, size, 1);
		uint8_t *model = pattern_model(size, 1);
		struct vdisk *disk =
			open_disk(ec, path, (struct open_args){ .cache = caches[c] });

		/* Four aligned 4 KiB segments in separate buffers. */
		uint8_t *seg[4];
		struct iovec iov[5];
		test_fill_pattern(model + 64 * KiB, 16 * KiB, 64 * KiB, 11);
		for (int i = 0; i < 4; i++) {
			seg[i] = test_aligned_buf(4 * KiB);
			memcpy(seg[i], model + 64 * KiB + 4 * KiB * i, 4 * KiB);
			iov[i] = (struct iovec){ seg[i], 4 * KiB };
		}
		assert_int_equal(sync_writev(disk, iov, 4, 64 * KiB), 0);
		expect_file(path, model, size, "writev of 4 segments");

		/* Read back into five segments of other sizes, aligned. */
		static const size_t lens[] = { 4096, 4096, 2048, 2048, 4096 };
		uint8_t *dst = test_aligned_buf(5 * 4096);
		size_t pos = 0;
		for (int i = 0; i < 5; i++)
			iov[i] = (struct iovec){ dst + 4096 * i, lens[i] };
		assert_int_equal(sync_readv(disk, iov, 5, 64 * KiB), 0);
		for (int i = 0; i < 5; i++) {
			test_expect_equal(iov[i].iov_base, model + 64 * KiB + pos, lens[i],
				     "readv of 5 segments", 64 * KiB + pos);
			pos += lens[i];
		}
		/* A single segment of length 0 among others is fine. */
		iov[0] = (struct iovec){ dst, 512 };
		iov[1] = (struct iovec){ dst + 4096, 0 };
		iov[2] = (struct iovec){ dst + 8192, 512 };
		memset(dst, 0, 3 * 4096);
		assert_int_equal(sync_readv(disk, iov, 3, 4 * KiB), 0);
		test_expect_equal(dst, model + 4 * KiB, 512, "segment before empty one", 4 * KiB);
		test_expect_equal(dst + 8192, model + 4 * KiB + 512, 512, "segment after empty one",
			     4 * KiB + 512);

		end_test(disk);
		free(dst);
		for (int i = 0; i < 4; i++)
			free(seg[i]);
		free(model);
	}
}

static void test_eof_short_read(void **state)
{
	const struct engine_case *ec = *state;

	/* An image of 3 pages and a sector, read whole. */
	const size_t size = 4096 * 3 + 512;
	const char *path = test_path("eof.img");
	test_write_file(path, size, 8);
	struct vdisk *disk = open_direct(ec, path);
	assert_int_equal(vdisk_size(disk), size);
	uint8_t *abuf = test_aligned_buf(size);
	assert_int_equal(vdisk_pread(disk, abuf, size, 0), 0);
	test_expect_pattern(abuf, size, 0, 8, "whole image, aligned");
	uint8_t *raw = test_xmalloc(size + 1);
	memset(raw, 0, size + 1);
	assert_int_equal(vdisk_pread(disk, raw + 1, size, 0), 0);
	test_expect_pattern(raw + 1, size, 0, 8, "whole image, malloc+1");
	memset(abuf, 0, size);
	struct iovec iov[3] = { { abuf, 8192 }, { abuf + 8192, size - 8192 } };
	assert_int_equal(sync_readv(disk, iov, 2, 0), 0);
	test_expect_pattern(abuf, size, 0, 8, "whole image, 2 segments");
	assert_int_equal(vdisk_pread(disk, abuf, 512, size - 512), 0);
	test_expect_pattern(abuf, 512, size - 512, 8, "last sector");
	end_test(disk);

	/* Not even a whole number of sectors. */
	const size_t odd = 4096 * 3 + 100;
	test_write_file(path, odd, 9);
	disk = open_direct(ec, path);
	assert_int_equal(vdisk_size(disk), odd);
	memset(abuf, 0, size);
	assert_int_equal(vdisk_pread(disk, abuf, odd, 0), 0);
	test_expect_pattern(abuf, odd, 0, 9, "whole odd image");
	assert_int_equal(vdisk_pread(disk, abuf, 100, 4096 * 3), 0);
	test_expect_pattern(abuf, 100, 4096 * 3, 9, "odd tail");
	end_test(disk);
	free(raw);
	free(abuf);

	/* The file shrinks behind the disk's back: the kernel returns short reads, and what
	 * lies past the new end reads as zeros. */
	static const enum vdisk_cache_mode caches[] = { VDISK_CACHE_DIRECT, VDISK_CACHE_WRITEBACK };
	const size_t full = 24 * KiB, cut = 4096 * 3 + 512;
	for (size_t c = 0; c < ARRAY_SIZE(caches); c++) {
		test_write_file(path, full, 10);
		disk = open_disk(ec, path, (struct open_args){ .cache = caches[c] });
		assert_int_equal(truncate(path, cut), 0);

		abuf = test_aligned_buf(full);
		assert_int_equal(vdisk_pread(disk, abuf, full, 0), 0);
		test_expect_pattern(abuf, cut, 0, 10, "before the cut, aligned");
		expect_zero(abuf + cut, full - cut, cut, "after the cut, aligned");

		raw = test_xmalloc(full + 1);
		memset(raw, 0xEE, full + 1);
		assert_int_equal(vdisk_pread(disk, raw + 1, full, 0), 0);
		test_expect_pattern(raw + 1, cut, 0, 10, "before the cut, malloc+1");
		expect_zero(raw + 1 + cut, full - cut, cut, "after the cut, malloc+1");

		memset(abuf, 0xEE, full);
		struct iovec three[3] = { { abuf, 8192 }, { abuf + 8192, 8192 },
					  { abuf + 16384, 8192 } };
		assert_int_equal(sync_readv(disk, three, 3, 0), 0);
		test_expect_pattern(abuf, cut, 0, 10, "before the cut, 3 segments");
		expect_zero(abuf + cut, full - cut, cut, "after the cut, 3 segments");

		/* Entirely past the new end. */
		memset(abuf, 0xEE, 4096);
		assert_int_equal(vdisk_pread(disk, abuf, 4096, 16 * KiB), 0);
		expect_zero(abuf, 4096, 16 * KiB, "past the cut");

		end_test(disk);
		free(raw);
		free(abuf);
	}
}

/* 256 requests of random placement and size, in flight at once on a queue sized for 32. */
#define NREQ 256
#define SLOT (16 * KiB)

struct placed {
	uint64_t offset;
	size_t len;
	uint8_t *raw, *buf;
	struct iovec iov;
	struct req r;
};

static uint32_t lcg(uint32_t *s)
{
	*s = *s * 1103515245u + 12345u;
	return *s >> 8;
}

static void test_many_concurrent(void **state)
{
	const struct engine_case *ec = *state;
	const size_t size = NREQ * SLOT;
	const char *path = test_path("many.img");
	test_write_file(path, size, 12);
	uint8_t *model = pattern_model(size, 12);
	struct vdisk *disk = open_disk(ec, path,
				       (struct open_args){ .cache = VDISK_CACHE_DIRECT,
							   .queue_depth = 32 });
	struct vdisk_queue *q = vdisk_queue(disk, 0);
	struct placed *p = calloc(NREQ, sizeof(*p));
	assert_non_null(p);

	/* A random permutation of the slots; inside its slot each request takes a random
	 * offset and length, every fourth one unaligned in memory and on disk. */
	unsigned perm[NREQ];
	uint32_t seed = 0x12345678;
	for (unsigned i = 0; i < NREQ; i++)
		perm[i] = i;
	for (unsigned i = NREQ - 1; i > 0; i--) {
		unsigned j = lcg(&seed) % (i + 1), t = perm[i];
		perm[i] = perm[j];
		perm[j] = t;
	}
	for (unsigned i = 0; i < NREQ; i++) {
		bool odd = i % 4 == 3;
		p[i].offset = (uint64_t)perm[i] * SLOT + (lcg(&seed) % 16) * 512;
		p[i].len = 512 * (1 + lcg(&seed) % 16);
		if (odd) {
			p[i].offset += 1 + lcg(&seed) % 511;
			p[i].len -= lcg(&seed) % 511;
		}
		p[i].raw = test_aligned_buf(p[i].len + 1);
		p[i].buf = p[i].raw + odd;
		p[i].iov = (struct iovec){ p[i].buf, p[i].len };
		test_fill_pattern(p[i].buf, p[i].len, p[i].offset, 1000 + i);
		test_fill_pattern(model + p[i].offset, p[i].len, p[i].offset, 1000 + i);
	}

	for (unsigned i = 0; i < NREQ; i++)
		assert_int_equal(do_writev(disk, q, &p[i].iov, 1, p[i].offset, &p[i].r), 0);
	assert_int_equal(vdisk_queue_inflight(q), NREQ);
	for (unsigned i = 0; i < NREQ; i++)
		assert_int_equal(p[i].r.calls, 0);
	/* One poll waits for all of them. */
	assert_int_equal(qpoll(q, NREQ), NREQ);
	assert_int_equal(vdisk_queue_inflight(q), 0);
	for (unsigned i = 0; i < NREQ; i++) {
		assert_int_equal(p[i].r.calls, 1);
		assert_int_equal(p[i].r.result, 0);
	}
	expect_file(path, model, size, "after 256 concurrent writes");

	/* Read every one back, all at once, and collect them one poll at a time. */
	for (unsigned i = 0; i < NREQ; i++) {
		memset(p[i].buf, 0, p[i].len);
		assert_int_equal(do_readv(disk, q, &p[i].iov, 1, p[i].offset, &p[i].r), 0);
	}
	for (;;) {
		unsigned pending = 0;
		for (unsigned i = 0; i < NREQ; i++)
			pending += p[i].r.calls == 0;
		if (!pending)
			break;
		assert_true(qpoll(q, 1) > 0);
	}
	for (unsigned i = 0; i < NREQ; i++) {
		assert_int_equal(p[i].r.calls, 1);
		assert_int_equal(p[i].r.result, 0);
		test_expect_pattern(p[i].buf, p[i].len, p[i].offset, 1000 + i, "concurrent read");
		free(p[i].raw);
	}
	end_test(disk);
	free(p);
	free(model);
}

/* Callbacks run from vdisk_queue_poll only, never from the submission or a kick, also when
 * the callback itself submits. */
static struct vdisk *chain_disk;
static uint8_t chain_buf[2][512];
static struct iovec chain_iov; /* must outlive the callback that submits with it */

static void chain_submit(struct req *r)
{
	struct req *next = r->arg;
	struct vdisk_queue *q = vdisk_queue(chain_disk, 0);
	chain_iov = (struct iovec){ chain_buf[0], 512 };
	/* inside the callback: a read, a zero-length read and a flush */
	assert_int_equal(do_readv(chain_disk, q, &chain_iov, 1, 4096, &next[0]), 0);
	assert_int_equal(do_readv(chain_disk, q, NULL, 0, 0, &next[1]), 0);
	assert_int_equal(do_flush(chain_disk, q, &next[2]), 0);
	assert_int_equal(next[0].calls + next[1].calls + next[2].calls, 0);
}

static void test_callbacks_only_from_poll(void **state)
{
	const struct engine_case *ec = *state;
	const char *path = test_path("cb.img");
	test_write_file(path, 256 * KiB, 13);
	struct vdisk *disk = open_direct(ec, path);
	struct vdisk_queue *q = vdisk_queue(disk, 0);

	uint8_t *abuf = test_aligned_buf(8 * KiB);
	uint8_t ubuf[300], wbuf[300];
	struct iovec a = { abuf, 8 * KiB }, u = { ubuf, sizeof(ubuf) }, w = { wbuf, sizeof(wbuf) };
	memset(wbuf, 0x3C, sizeof(wbuf));
	struct req r[12];
	memset(r, 0, sizeof(r));
	assert_int_equal(do_readv(disk, q, &a, 1, 0, &r[0]), 0);
	assert_int_equal(do_readv(disk, q, &u, 1, 333, &r[1]), 0);
	assert_int_equal(do_writev(disk, q, &w, 1, 64 * KiB + 5, &r[2]), 0);
	assert_int_equal(do_flush(disk, q, &r[3]), 0);
	assert_int_equal(do_discard(disk, q, 128 * KiB, 8 * KiB, &r[4]), 0);
	assert_int_equal(do_zeroes(disk, q, 160 * KiB, 8 * KiB, &r[5]), 0);
	assert_int_equal(do_zeroes(disk, q, 170 * KiB + 3, 1000, &r[6]), 0);
	assert_int_equal(do_readv(disk, q, &u, 0, 0, &r[7]), 0); /* zero length */
	assert_int_equal(vdisk_queue_inflight(q), 8);
	assert_int_equal(vdisk_queue_kick(q), 0);
	usleep(20000); /* let the kernel finish: still nothing may be called back */
	for (int i = 0; i < 8; i++)
		assert_int_equal(r[i].calls, 0);
	assert_int_equal(vdisk_queue_kick(q), 0);
	for (int i = 0; i < 8; i++)
		assert_int_equal(r[i].calls, 0);

	/* r[0]'s callback submits r[8..10]. */
	chain_disk = disk;
	r[0].then = chain_submit;
	r[0].arg = &r[8];
	for (int i = 8; i < 11; i++)
		r[i].calls = 0;
	while (r[0].calls == 0)
		assert_true(qpoll(q, 1) > 0);
	r[0].then = NULL;
	wait_reqs(q, r, 11);
	for (int i = 0; i < 11; i++)
		if (r[i].result != 0)
			fail_msg("request %d: %s", i, strerror(-r[i].result));
	test_expect_pattern(abuf, 8 * KiB, 0, 13, "chained read");
	test_expect_pattern(chain_buf[0], 512, 4096, 13, "read submitted from a callback");

	end_test(disk);
	free(abuf);
}

/* Refusals are synchronous: the call returns -errno and no callback ever runs. */
static void test_refusals(void **state)
{
	const struct engine_case *ec = *state;
	const size_t size = 64 * KiB;
	const char *path = test_path("refuse.img");
	test_write_file(path, size, 14);
	struct vdisk *disk = open_disk(ec, path,
				       (struct open_args){ .cache = VDISK_CACHE_DIRECT,
							   .read_only = true });
	struct vdisk_queue *q = vdisk_queue(disk, 0);
	assert_true(vdisk_read_only(disk));
	uint8_t *buf = test_aligned_buf(8 * KiB);
	struct iovec iov = { buf, 4096 };
	struct req r;
	memset(&r, 0, sizeof(r));

	/* Read-only. */
	assert_int_equal(do_writev(disk, q, &iov, 1, 0, &r), -EROFS);
	assert_int_equal(do_discard(disk, q, 0, 4096, &r), -EROFS);
	assert_int_equal(do_zeroes(disk, q, 0, 4096, &r), -EROFS);
	assert_int_equal(vdisk_pwrite(disk, buf, 4096, 0), -EROFS);
	assert_int_equal(vdisk_write_zeroes_sync(disk, 0, 512), -EROFS);
	assert_int_equal(vdisk_discard_sync(disk, 0, 512), -EROFS);
	assert_int_equal(vdisk_queue_inflight(q), 0);
	assert_int_equal(qpoll(q, 0), 0);
	assert_int_equal(r.calls, 0);
	/* Flushing a read-only disk succeeds (a guest may flush any disk), reading still
	 * works, and nothing changed on disk. */
	assert_int_equal(vdisk_flush_sync(disk), 0);
	assert_int_equal(vdisk_pread(disk, buf, 8 * KiB, 0), 0);
	test_expect_pattern(buf, 8 * KiB, 0, 14, "read-only disk");

	/* Out of range: past the end, overflowing. */
	struct {
		uint64_t off;
		size_t len;
	} bad[] = {
		{ size, 512 },		{ size - 512, 1024 }, { size + 512, 0 },
		{ UINT64_MAX - 1, 4 },	{ UINT64_MAX, 0 },    { UINT64_MAX - 4095, 4096 },
		{ size - 1, 2 },	{ 1ULL << 63, 512 },
	};
	for (size_t i = 0; i < ARRAY_SIZE(bad); i++) {
		iov.iov_len = bad[i].len;
		if (do_readv(disk, q, &iov, 1, bad[i].off, &r) != -EINVAL)
			fail_msg("read of %zu at %llu not refused", bad[i].len,
				 (unsigned long long)bad[i].off);
		if (vdisk_pread(disk, buf, bad[i].len, bad[i].off) != -EINVAL)
			fail_msg("vdisk_pread of %zu at %llu not refused", bad[i].len,
				 (unsigned long long)bad[i].off);
	}
	/* Segment lengths that overflow when added up. */
	struct iovec huge[2] = { { buf, SIZE_MAX / 2 + 1 }, { buf, SIZE_MAX / 2 + 1 } };
	assert_int_equal(do_readv(disk, q, huge, 2, 0, &r), -EINVAL);
	huge[0].iov_len = SIZE_MAX;
	huge[1].iov_len = 2;
	assert_int_equal(do_readv(disk, q, huge, 2, 0, &r), -EINVAL);
	assert_int_equal(do_readv(disk, q, huge, 1, 0, &r), -EINVAL);
	/* Bad arguments. */
	iov.iov_len = 512;
	assert_int_equal(do_readv(disk, q, &iov, -1, 0, &r), -EINVAL);
	assert_int_equal(do_readv(disk, q, NULL, 1, 0, &r), -EINVAL);
	struct iovec *many = calloc(IOV_MAX + 1, sizeof(*many));
	assert_non_null(many);
	for (int i = 0; i <= IOV_MAX; i++)
		many[i] = (struct iovec){ buf, 1 };
	assert_int_equal(do_readv(disk, q, many, IOV_MAX + 1, 0, &r), -EINVAL);
	free(many);
	assert_int_equal(vdisk_readv(disk, q, &iov, 1, 0, NULL, NULL), -EINVAL);
	assert_int_equal(do_readv(disk, NULL, &iov, 1, 0, &r), -EINVAL);

	/* Another disk's queue. */
	struct vdisk *other = open_disk(ec, path, (struct open_args){ .read_only = true });
	assert_int_equal(do_readv(disk, vdisk_queue(other, 0), &iov, 1, 0, &r), -EINVAL);
	assert_int_equal(do_readv(other, q, &iov, 1, 0, &r), -EINVAL);
	close_disk(other);

	assert_int_equal(vdisk_queue_inflight(q), 0);
	assert_int_equal(qpoll(q, 0), 0);
	assert_int_equal(qpoll(q, 1), 0); /* nothing in flight: returns at once */
	assert_int_equal(r.calls, 0);
	end_test(disk);

	/* The same checks on a writable disk, for writes, discards and write zeroes. */
	disk = open_direct(ec, path);
	q = vdisk_queue(disk, 0);
	iov.iov_len = 4096;
	assert_int_equal(do_writev(disk, q, &iov, 1, size - 512, &r), -EINVAL);
	assert_int_equal(do_writev(disk, q, &iov, 1, UINT64_MAX - 1, &r), -EINVAL);
	assert_int_equal(do_discard(disk, q, 512, UINT64_MAX, &r), -EINVAL);
	assert_int_equal(do_discard(disk, q, size, 1, &r), -EINVAL);
	assert_int_equal(do_zeroes(disk, q, UINT64_MAX - 1, 2, &r), -EINVAL);
	assert_int_equal(do_zeroes(disk, q, 0, size + 1, &r), -EINVAL);
	assert_int_equal(vdisk_pwrite(disk, buf, 2, size - 1), -EINVAL);
	assert_int_equal(vdisk_queue_inflight(q), 0);
	assert_int_equal(qpoll(q, 0), 0);
	assert_int_equal(r.calls, 0);
	/* Whole-disk requests right at the edge are fine. */
	assert_int_equal(do_zeroes(disk, q, 0, size, &r), 0);
	assert_int_equal(run_one(q, &r), 0);
	assert_int_equal(do_readv(disk, q, &iov, 0, size, &r), 0);
	assert_int_equal(run_one(q, &r), 0);
	uint8_t *all = test_xmalloc(size);
	test_file_read(path, all, size, 0);
	expect_zero(all, size, 0, "write zeroes of the whole disk");
	free(all);
	end_test(disk);
	free(buf);
}

/* An I/O error from the kernel travels to the callback: a write beyond the space of a
 * 1 MiB tmpfs fails with -ENOSPC. */
static const char *small_mount;

static int umount_small(void **state)
{
	(void)state;
	if (small_mount) {
		umount2(small_mount, MNT_DETACH);
		rmdir(small_mount);
		small_mount = NULL;
	}
	return 0;
}

static void test_enospc(void **state)
{
	const struct engine_case *ec = *state;
	if (!ec->available)
		skip();
	static char mp[600];
	snprintf(mp, sizeof(mp), "%s", test_path("small"));
	if (mkdir(mp, 0755) != 0 && errno != EEXIST)
		fail_msg("mkdir %s: %s", mp, strerror(errno));
	if (mount("tmpfs", mp, "tmpfs", 0, "size=1M") != 0) {
		print_message("cannot mount a tmpfs (%s)\n", strerror(errno));
		rmdir(mp);
		skip();
	}
	small_mount = mp;

	static const enum vdisk_cache_mode caches[] = { VDISK_CACHE_WRITEBACK, VDISK_CACHE_DIRECT };
	for (size_t c = 0; c < ARRAY_SIZE(caches); c++) {
		char path[700];
		snprintf(path, sizeof(path), "%s/full.img", mp);
		unlink(path);
		int fd = open(path, O_RDWR | O_CREAT | O_EXCL, 0644);
		assert_true(fd >= 0);
		assert_int_equal(ftruncate(fd, 8 * MiB), 0);
		close(fd);
		struct vdisk_options opts = { .cache = caches[c], .engine = ec->kind };
		struct vdisk *disk;
		char err[256];
		int ret = vdisk_open(path, &opts, &disk, err, sizeof(err));
		if (ret < 0)
			fail_msg("vdisk_open: %s", err);
		track(disk);
		struct vdisk_queue *q = vdisk_queue(disk, 0);

		/* One write of 2 MiB: the first part may fit, the rest cannot. */
		uint8_t *buf = test_aligned_buf(2 * MiB);
		test_fill_pattern(buf, 2 * MiB, 0, 15);
		struct iovec iov = { buf, 2 * MiB };
		struct req r;
		assert_int_equal(do_writev(disk, q, &iov, 1, 0, &r), 0);
		assert_int_equal(run_one(q, &r), -ENOSPC);

		/* Eight writes of 256 KiB in flight at once into the full file system. */
		struct req rs[8];
		struct iovec iovs[8];
		for (int i = 0; i < 8; i++) {
			iovs[i] = (struct iovec){ buf + 256 * KiB * i, 256 * KiB };
			assert_int_equal(do_writev(disk, q, &iovs[i], 1,
						   4 * MiB + 256 * KiB * (uint64_t)i, &rs[i]),
					 0);
		}
		wait_reqs(q, rs, 8);
		int failed = 0;
		for (int i = 0; i < 8; i++) {
			if (rs[i].result != 0 && rs[i].result != -ENOSPC)
				fail_msg("write %d: %s", i, strerror(-rs[i].result));
			failed += rs[i].result == -ENOSPC;
		}
		assert_true(failed > 0);

		/* An unaligned write that does not fit either. */
		iov = (struct iovec){ buf + 1, 1 * MiB + 3 };
		assert_int_equal(do_writev(disk, q, &iov, 1, 6 * MiB + 7, &r), 0);
		assert_int_equal(run_one(q, &r), -ENOSPC);

		/* The disk keeps working for reads. */
		assert_int_equal(vdisk_pread(disk, buf, 4096, 7 * MiB), 0);
		expect_zero(buf, 4096, 7 * MiB, "hole on a full tmpfs");
		end_test(disk);
		free(buf);
		unlink(path);
	}
}

static bool fd_readable(int fd, int timeout_ms)
{
	struct pollfd pfd = { .fd = fd, .events = POLLIN };
	int n = poll(&pfd, 1, timeout_ms);
	assert_true(n >= 0);
	return n == 1 && (pfd.revents & POLLIN);
}

static void test_event_fd(void **state)
{
	const struct engine_case *ec = *state;
	static const enum vdisk_cache_mode caches[] = { VDISK_CACHE_DIRECT, VDISK_CACHE_WRITEBACK };
	const char *path = test_path("event.img");
	test_write_file(path, 64 * KiB, 16);

	for (size_t c = 0; c < ARRAY_SIZE(caches); c++) {
		struct vdisk *disk = open_disk(ec, path, (struct open_args){ .cache = caches[c] });
		struct vdisk_queue *q = vdisk_queue(disk, 0);
		int fd = vdisk_queue_event_fd(q);
		assert_true(fd >= 0);
		assert_int_equal(vdisk_queue_event_fd(q), fd);
		assert_false(fd_readable(fd, 0));

		/* A read: readable once it is done, quiet again once it is collected. */
		uint8_t *buf = test_aligned_buf(16 * KiB);
		struct iovec iov = { buf, 16 * KiB };
		struct req r;
		for (int round = 0; round < 3; round++) {
			assert_int_equal(do_readv(disk, q, &iov, 1, 16 * KiB * round, &r), 0);
			assert_int_equal(vdisk_queue_kick(q), 0);
			assert_true(fd_readable(fd, 5000));
			assert_int_equal(r.calls, 0);
			int spins = 0;
			while (r.calls == 0) {
				int n = qpoll(q, 0);
				assert_true(n >= 0);
				if (r.calls == 0) {
					assert_true(++spins < 1000);
					assert_true(fd_readable(fd, 5000));
				}
			}
			assert_int_equal(r.result, 0);
			test_expect_pattern(buf, 16 * KiB, 16 * KiB * round, 16, "event-driven read");
			assert_false(fd_readable(fd, 0));
		}

		/* Several writes, collected only through the event fd and non-blocking polls. */
		struct req rs[4];
		struct iovec wiov[4];
		for (int i = 0; i < 4; i++) {
			wiov[i] = (struct iovec){ buf + 4 * KiB * i, 4 * KiB };
			test_fill_pattern(wiov[i].iov_base, 4 * KiB, 48 * KiB + 4 * KiB * i, 17);
			assert_int_equal(do_writev(disk, q, &wiov[i], 1, 48 * KiB + 4 * KiB * i,
						   &rs[i]),
					 0);
		}
		assert_int_equal(vdisk_queue_kick(q), 0);
		int done = 0, spins = 0;
		while (done < 4) {
			assert_true(fd_readable(fd, 5000));
			int n = qpoll(q, 0);
			assert_true(n >= 0);
			done += n;
			assert_true(++spins < 1000);
		}
		assert_int_equal(done, 4);
		for (int i = 0; i < 4; i++)
			assert_int_equal(rs[i].calls, 1);
		assert_false(fd_readable(fd, 0));

		/* A request finished at submission (zero length) also makes it readable. */
		assert_int_equal(do_readv(disk, q, NULL, 0, 0, &r), 0);
		assert_true(fd_readable(fd, 5000));
		assert_int_equal(r.calls, 0);
		assert_int_equal(qpoll(q, 0), 1);
		assert_int_equal(r.calls, 1);
		assert_int_equal(r.result, 0);
		assert_false(fd_readable(fd, 0));

		end_test(disk);
		free(buf);
	}
	uint8_t *check = test_xmalloc(16 * KiB);
	test_file_read(path, check, 16 * KiB, 48 * KiB);
	test_expect_pattern(check, 16 * KiB, 48 * KiB, 17, "event-driven writes");
	free(check);
}

/* Write zeroes and discard, aligned and not, on the test directory's file system and on
 * tmpfs (which has no FALLOC_FL_ZERO_RANGE: write zeroes falls back to writing zeros). */
static char shm_path[128];

static int remove_shm(void **state)
{
	(void)state;
	if (shm_path[0])
		unlink(shm_path);
	shm_path[0] = 0;
	return 0;
}

static void check_zeroes_and_discard(const struct engine_case *ec, const char *path,
				     struct open_args how)
{
	const size_t size = 512 * KiB;
	test_write_file(path, size, 18);
	uint8_t *model = pattern_model(size, 18);
	struct vdisk *disk = open_disk(ec, path, how);
	struct vdisk_queue *q = vdisk_queue(disk, 0);
	static const struct {
		bool discard;
		uint64_t off, len;
	} ops[] = {
		{ false, 4096, 8192 },	      { false, 777, 3000 },	 { false, 20000, 1 },
		{ false, 40 * KiB, 300 * KiB }, { true, 384 * KiB, 64 * KiB }, { true, 130001, 5000 },
		{ true, 512 * KiB - 100, 100 },
	};
	struct req r[ARRAY_SIZE(ops)];
	for (size_t i = 0; i < ARRAY_SIZE(ops); i++) {
		int ret = ops[i].discard ? do_discard(disk, q, ops[i].off, ops[i].len, &r[i])
					 : do_zeroes(disk, q, ops[i].off, ops[i].len, &r[i]);
		assert_int_equal(ret, 0);
		memset(model + ops[i].off, 0, ops[i].len);
	}
	wait_reqs(q, r, ARRAY_SIZE(ops));
	for (size_t i = 0; i < ARRAY_SIZE(ops); i++)
		if (r[i].result)
			fail_msg("%s %llu+%llu: %s", ops[i].discard ? "discard" : "write zeroes",
				 (unsigned long long)ops[i].off, (unsigned long long)ops[i].len,
				 strerror(-r[i].result));
	expect_file(path, model, size, "after write zeroes and discard");
	/* The synchronous forms. */
	assert_int_equal(vdisk_write_zeroes_sync(disk, 1, 4094), 0);
	memset(model + 1, 0, 4094);
	assert_int_equal(vdisk_discard_sync(disk, 0, 4096), 0);
	memset(model, 0, 4096);
	assert_int_equal(vdisk_flush_sync(disk), 0);
	expect_file(path, model, size, "after the synchronous forms");
	uint8_t *buf = test_aligned_buf(size);
	assert_int_equal(vdisk_pread(disk, buf, size, 0), 0);
	test_expect_equal(buf, model, size, "read back through the disk", 0);
	end_test(disk);
	free(buf);
	free(model);
}

static void test_zeroes_and_discard(void **state)
{
	const struct engine_case *ec = *state;
	check_zeroes_and_discard(ec, test_path("zeroes.img"),
				 (struct open_args){ .cache = VDISK_CACHE_DIRECT });

	struct statfs sfs;
	if (statfs("/dev/shm", &sfs) != 0 || sfs.f_type != TMPFS_MAGIC) {
		print_message("no tmpfs at /dev/shm: fallback path not tested\n");
		return;
	}
	snprintf(shm_path, sizeof(shm_path), "/dev/shm/hvtest-engine-%d.img", (int)getpid());
	check_zeroes_and_discard(ec, shm_path,
				 (struct open_args){ .cache = VDISK_CACHE_DIRECT, .fallback_ok = true });
	check_zeroes_and_discard(ec, shm_path, (struct open_args){ .cache = VDISK_CACHE_WRITEBACK });
	remove_shm(NULL);
}

static void test_engine_name(void **state)
{
	const struct engine_case *ec = *state;
	const char *path = test_path("name.img");
	test_write_file(path, 4096, 19);
	struct vdisk *disk = open_disk(ec, path, (struct open_args){ .cache = VDISK_CACHE_WRITEBACK });
	assert_string_equal(vdisk_engine_name(disk), ec->name);
	assert_null(vdisk_engine_fallback_reason(disk));
	end_test(disk);
}

/* Not per engine: what AUTO picks. */
static void test_engine_auto(void **state)
{
	(void)state;
	const char *path = test_path("auto.img");
	test_write_file(path, 4096, 20);
	struct vdisk_options opts = { .cache = VDISK_CACHE_WRITEBACK, .engine = VDISK_ENGINE_AUTO };
	struct vdisk *disk;
	char err[256];
	int ret = vdisk_open(path, &opts, &disk, err, sizeof(err));
	if (ret < 0)
		fail_msg("vdisk_open: %s", err);
	track(disk);
	if (engines[0].available) {
		assert_string_equal(vdisk_engine_name(disk), "io_uring");
		assert_null(vdisk_engine_fallback_reason(disk));
	} else {
		print_message("io_uring unavailable (%s)\n", engines[0].why);
		assert_string_not_equal(vdisk_engine_name(disk), "io_uring");
		assert_non_null(vdisk_engine_fallback_reason(disk));
		assert_non_null(strstr(vdisk_engine_fallback_reason(disk), "io_uring unavailable"));
	}
	uint8_t buf[4096];
	assert_int_equal(vdisk_pread(disk, buf, 4096, 0), 0);
	test_expect_pattern(buf, 4096, 0, 20, "auto engine");
	close_disk(disk);

	/* An engine kind that does not exist is refused, not dereferenced. */
	opts.engine = (enum vdisk_engine_kind)42;
	disk = NULL;
	assert_int_equal(vdisk_open(path, &opts, &disk, err, sizeof(err)), -EINVAL);
	assert_null(disk);
	assert_true(err[0] != 0);
}

/* ---- the program ---- */

static int watchdog_on(void **state)
{
	(void)state;
	bad_context = 0;
	alarm(30); /* a hung engine fails the program instead of hanging ctest */
	return 0;
}

static int watchdog_off(void **state)
{
	close_leftovers();
	umount_small(state);
	remove_shm(state);
	alarm(0);
	return 0;
}

static int group_setup(void **state)
{
	(void)state;
	/* A private mount namespace: the tmpfs of test_enospc disappears with the program even
	 * when it crashes. Without one (not root) that test mounts in the shared namespace or
	 * skips. */
	if (unshare(CLONE_NEWNS) == 0)
		mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL);
	const char *path = test_path("probe.img");
	test_write_file(path, 4096, 0);
	for (size_t i = 0; i < ARRAY_SIZE(engines); i++) {
		struct vdisk_options opts = { .cache = VDISK_CACHE_WRITEBACK,
					      .engine = engines[i].kind };
		struct vdisk *disk;
		int ret = vdisk_open(path, &opts, &disk, engines[i].why, sizeof(engines[i].why));
		engines[i].available = ret == 0;
		if (ret == 0)
			vdisk_close(disk);
		else
			print_message("engine %s unavailable: %s\n", engines[i].name,
				      engines[i].why);
	}
	return 0;
}

static int group_teardown(void **state)
{
	close_leftovers();
	umount_small(state);
	remove_shm(state);
	test_tmpdir_remove();
	return 0;
}

#define T(fn, e) { #fn "/" #e, fn, watchdog_on, watchdog_off, &engines[e] }
#define PER_ENGINE(e)                                                                         \
	T(test_direct_aligned, e), T(test_direct_unaligned_memory, e),                        \
		T(test_direct_unaligned_range, e), T(test_multi_iovec, e),                    \
		T(test_eof_short_read, e), T(test_many_concurrent, e),                        \
		T(test_callbacks_only_from_poll, e), T(test_refusals, e), T(test_enospc, e),  \
		T(test_event_fd, e), T(test_zeroes_and_discard, e), T(test_engine_name, e)

enum { URING, AIO, SYNC };

int main(void)
{
	const struct CMUnitTest tests[] = {
		PER_ENGINE(URING),
		PER_ENGINE(AIO),
		PER_ENGINE(SYNC),
		cmocka_unit_test_setup_teardown(test_engine_auto, watchdog_on, watchdog_off),
	};

	return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
