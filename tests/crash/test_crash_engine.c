/* The power-cut recorder itself (crash_engine.c): what it journals, and the crash states
 * it builds from the journal, on plain files driven through the engine and the file
 * helpers directly, so every expectation below is written out by hand. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <fcntl.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "crash_engine.h"
#include "test_util.h"
#include "vdisk.h"

#define KiB 1024u

struct fixture {
	struct crash_journal *j;
	const char *path;
	int index;
	struct vdisk_file *file;
	struct engine *e;
};

/* A 16 KiB file of 0x11 bytes, tracked, opened buffered, with a crash engine. */
static void setup(struct fixture *f, const char *name)
{
	f->path = test_path(name);
	uint8_t buf[16 * KiB];
	memset(buf, 0x11, sizeof(buf));
	assert_int_equal(crash_write_file(f->path, buf, sizeof(buf)), 0);
	assert_int_equal(crash_journal_create(&f->j), 0);
	f->index = crash_journal_track(f->j, f->path);
	assert_int_equal(f->index, 0);
	crash_journal_start(f->j);
	char err[200];
	assert_int_equal(vdisk_file_open(f->path, false, VDISK_CACHE_WRITEBACK, true, &f->file, err,
					 sizeof(err)),
			 0);
	char why[200];
	/* the override makes any kind the crash engine */
	assert_int_equal(engine_create(VDISK_ENGINE_URING, 8, &f->e, why, sizeof(why)), 0);
	assert_string_equal(f->e->ops->name, "crash-sync");
}

static void teardown(struct fixture *f)
{
	engine_destroy(f->e);
	vdisk_file_close(f->file);
	crash_journal_stop(f->j);
	crash_journal_free(f->j);
	unlink(f->path);
}

struct io {
	struct engine_io io;
	struct iovec iov;
	uint8_t buf[32 * KiB];
	bool done;
	int result;
};

static void io_done(struct engine_io *eio, int result)
{
	struct io *io = (struct io *)eio;
	io->done = true;
	io->result = result;
}

static void submit(struct fixture *f, struct io *io, enum engine_op op, uint8_t fill, uint64_t len,
		   uint64_t off)
{
	memset(io->buf, fill, len);
	io->iov = (struct iovec){ io->buf, len };
	io->done = false;
	io->io = (struct engine_io){ .op = op,
				     .file = f->file,
				     .iov = &io->iov,
				     .iovcnt = 1,
				     .offset = off,
				     .done = io_done };
	engine_submit(f->e, &io->io);
}

static void wait_all(struct fixture *f)
{
	while (f->e->inflight)
		assert_true(engine_poll(f->e, 1) >= 0);
}

/* Builds the file at cut with policy; returns its size; content in out. */
static uint64_t build(struct fixture *f, uint64_t cut, enum crash_policy policy, uint64_t seed,
		      uint8_t *out)
{
	uint64_t size;
	struct crash_stats st;
	crash_journal_build(f->j, 0, cut, seed, policy, out, &size, &st);
	return size;
}

static void expect_bytes(const uint8_t *p, uint8_t v, uint64_t len, const char *what)
{
	for (uint64_t i = 0; i < len; i++)
		if (p[i] != v)
			fail_msg("%s: byte %llu is %02x, expected %02x", what,
				 (unsigned long long)i, p[i], v);
}

/* Journaled operations carry their data and sequence numbers; a write completed before
 * an fdatasync was submitted survives every cut after that fdatasync completes. */
static void test_flush_covers_completed_writes(void **state)
{
	(void)state;
	struct fixture f;
	setup(&f, "cover");
	static struct io a, s, b;
	submit(&f, &a, ENGINE_WRITE, 0xAA, 4 * KiB, 0);
	wait_all(&f);
	submit(&f, &s, ENGINE_FDATASYNC, 0, 0, 0);
	wait_all(&f);
	submit(&f, &b, ENGINE_WRITE, 0xBB, 4 * KiB, 4 * KiB);
	wait_all(&f);
	assert_int_equal(crash_journal_count(f.j), 3);
	const struct crash_op *w = crash_journal_op(f.j, 0), *sy = crash_journal_op(f.j, 1);
	assert_int_equal(w->kind, CRASH_WRITE);
	assert_true(w->via_engine);
	assert_int_equal(w->len, 4 * KiB);
	assert_int_equal(w->data[0], 0xAA);
	assert_true(w->submit < w->complete);
	assert_true(w->complete < sy->submit);
	assert_int_equal(sy->kind, CRASH_SYNC);

	uint8_t out[64 * KiB];
	uint64_t end = crash_journal_end(f.j);
	/* after the flush completed: a is there whatever happens to b */
	assert_int_equal(build(&f, end, CRASH_DROP_ALL, 1, out), 16 * KiB);
	expect_bytes(out, 0xAA, 4 * KiB, "a, dropping the rest");
	expect_bytes(out + 4 * KiB, 0x11, 4 * KiB, "b dropped");
	build(&f, end, CRASH_KEEP_ALL, 1, out);
	expect_bytes(out + 4 * KiB, 0xBB, 4 * KiB, "b kept");
	/* before the flush completed, a may be lost */
	build(&f, sy->complete, CRASH_DROP_ALL, 1, out);
	expect_bytes(out, 0x11, 4 * KiB, "a dropped before the flush completed");
	/* before a was submitted, nothing of it: even keeping everything */
	build(&f, w->submit, CRASH_KEEP_ALL, 1, out);
	expect_bytes(out, 0x11, 16 * KiB, "nothing before the first submission");
	teardown(&f);
}

/* An fdatasync covers only writes that completed before it was submitted: a write queued
 * together with it (the synchronous engine happens to run it first) is not covered. */
static void test_flush_does_not_cover_concurrent_writes(void **state)
{
	(void)state;
	struct fixture f;
	setup(&f, "concurrent");
	static struct io a, s;
	submit(&f, &a, ENGINE_WRITE, 0xAA, 4 * KiB, 0);
	submit(&f, &s, ENGINE_FDATASYNC, 0, 0, 0);
	wait_all(&f);
	uint8_t out[64 * KiB];
	build(&f, crash_journal_end(f.j), CRASH_DROP_ALL, 1, out);
	expect_bytes(out, 0x11, 4 * KiB, "a write in flight with the flush");
	teardown(&f);
}

/* Writes not covered are torn at 4 KiB pieces of the file, never inside one. */
static void test_tearing(void **state)
{
	(void)state;
	struct fixture f;
	setup(&f, "tear");
	static struct io a;
	submit(&f, &a, ENGINE_WRITE, 0xAA, 12 * KiB, 2 * KiB); /* pieces: 2K, 4K, 4K, 2K */
	wait_all(&f);
	bool seen_torn = false;
	uint8_t out[64 * KiB];
	for (uint64_t seed = 0; seed < 200; seed++) {
		build(&f, crash_journal_end(f.j), CRASH_MIXED, seed, out);
		expect_bytes(out, 0x11, 2 * KiB, "before the write");
		unsigned kept = 0;
		for (unsigned p = 0; p < 4; p++) {
			uint64_t start = p == 0 ? 2 * KiB : p * 4 * KiB;
			uint64_t len = p == 0 || p == 3 ? 2 * KiB : 4 * KiB;
			uint8_t v = out[start];
			assert_true(v == 0xAA || v == 0x11);
			expect_bytes(out + start, v, len, "one piece");
			kept += v == 0xAA;
		}
		seen_torn |= kept > 0 && kept < 4;
	}
	assert_true(seen_torn);
	teardown(&f);
}

/* Synchronous metadata I/O outside the engines is journaled through the observer: a
 * truncate persists only with a flush after it, or as part of the prefix of size changes
 * a cut keeps, and a buffered write covers its whole page. */
static void test_observed_io_and_sizes(void **state)
{
	(void)state;
	struct fixture f;
	setup(&f, "observed");
	uint8_t footer[100];
	memset(footer, 0xF0, sizeof(footer));
	assert_int_equal(vdisk_file_set_size(f.file, 24 * KiB), 0);
	assert_int_equal(vdisk_file_pwrite(f.file, footer, sizeof(footer), 20 * KiB + 50), 0);
	assert_int_equal(crash_journal_count(f.j), 2);
	const struct crash_op *t = crash_journal_op(f.j, 0), *w = crash_journal_op(f.j, 1);
	assert_int_equal(t->kind, CRASH_TRUNCATE);
	assert_int_equal(t->offset, 24 * KiB);
	assert_true(t->sizes);
	assert_false(w->via_engine);
	/* widened to the page, with the zeros around the 100 bytes */
	assert_int_equal(w->offset, 20 * KiB);
	assert_int_equal(w->len, 4 * KiB);
	assert_false(w->sizes);

	uint8_t out[64 * KiB];
	uint64_t end = crash_journal_end(f.j);
	assert_int_equal(build(&f, end, CRASH_DROP_ALL, 1, out), 16 * KiB);
	assert_int_equal(build(&f, end, CRASH_KEEP_ALL, 1, out), 24 * KiB);
	expect_bytes(out + 16 * KiB, 0, 4 * KiB + 50, "zeros the truncate added");
	expect_bytes(out + 20 * KiB + 50, 0xF0, 100, "the write");
	bool small = false, big = false;
	for (uint64_t seed = 0; seed < 64; seed++) {
		uint64_t size = build(&f, end, CRASH_MIXED, seed, out);
		assert_true(size == 16 * KiB || size == 24 * KiB);
		small |= size == 16 * KiB;
		big |= size == 24 * KiB;
	}
	assert_true(small && big);

	assert_int_equal(vdisk_file_sync(f.file), 0);
	end = crash_journal_end(f.j);
	assert_int_equal(build(&f, end, CRASH_DROP_ALL, 1, out), 24 * KiB);
	expect_bytes(out + 20 * KiB + 50, 0xF0, 100, "the write, flushed");
	teardown(&f);
}

/* A write that extends the file brings its size change along only within the prefix. */
static void test_extending_write(void **state)
{
	(void)state;
	struct fixture f;
	setup(&f, "extend");
	static struct io a;
	submit(&f, &a, ENGINE_WRITE, 0xAA, 8 * KiB, 16 * KiB);
	wait_all(&f);
	assert_true(crash_journal_op(f.j, 0)->sizes);
	assert_int_equal(crash_journal_max_size(f.j, 0), 24 * KiB);
	uint8_t out[64 * KiB];
	assert_int_equal(build(&f, crash_journal_end(f.j), CRASH_DROP_ALL, 1, out), 16 * KiB);
	assert_int_equal(build(&f, crash_journal_end(f.j), CRASH_KEEP_ALL, 1, out), 24 * KiB);
	expect_bytes(out + 16 * KiB, 0xAA, 8 * KiB, "the extension");
	teardown(&f);
}

/* Files nobody tracked must not be written while recording; the count says so. */
static void test_untracked(void **state)
{
	(void)state;
	struct fixture f;
	setup(&f, "tracked");
	const char *other = test_path("untracked");
	uint8_t b[512] = { 0 };
	assert_int_equal(crash_write_file(other, b, sizeof(b)), 0);
	struct vdisk_file *o;
	char err[200];
	assert_int_equal(
		vdisk_file_open(other, false, VDISK_CACHE_WRITEBACK, true, &o, err, sizeof(err)),
		0);
	assert_int_equal(vdisk_file_pwrite(o, b, sizeof(b), 0), 0);
	assert_int_equal(crash_journal_untracked(f.j), 1);
	vdisk_file_close(o);
	unlink(other);
	teardown(&f);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_flush_covers_completed_writes),
		cmocka_unit_test(test_flush_does_not_cover_concurrent_writes),
		cmocka_unit_test(test_tearing),
		cmocka_unit_test(test_observed_io_and_sizes),
		cmocka_unit_test(test_extending_write),
		cmocka_unit_test(test_untracked),
	};
	int failed = cmocka_run_group_tests(tests, NULL, NULL);
	test_tmpdir_remove();
	return failed;
}
