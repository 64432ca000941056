/* The block layer core: queues used from several threads at once, zero-length and
 * deferred completions, more requests in flight than the queue depth, block status
 * checks, the format registry and request completion through a format driver.
 *
 * A small "mock" format driver (forwarding to the file, but able to end a request inside
 * its submission or with an error, and to return malformed extents) reaches the paths
 * the raw driver never takes.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "format.h"
#include "test_disk.h"
#include "test_util.h"
#include "vdisk.h"

#define ARRAY_SIZE(a) (sizeof(a) / sizeof((a)[0]))
#define KiB 1024u
#define MiB (1024u * KiB)

static const struct {
	enum vdisk_engine_kind kind;
	const char *name;
} engines[] = {
	{ VDISK_ENGINE_URING, "io_uring" },
	{ VDISK_ENGINE_AIO, "libaio" },
	{ VDISK_ENGINE_SYNC, "sync" },
};

/* ---- helpers ---- */

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

static int cleanup(void **state)
{
	(void)state;
	test_close_tracked();
	alarm(0);
	return 0;
}

static unsigned bad_context; /* callbacks that ran outside a poll or inside a submission */
static bool engine_missing;   /* an engine could not start here */

static int watchdog(void **state)
{
	(void)state;
	bad_context = 0;
	engine_missing = false;
	alarm(30); /* a lost completion fails the program instead of hanging ctest */
	return 0;
}

/* Opens path; returns NULL (after saying why) when the engine cannot start here. A test
 * that met one ends with skip_if_engine_missing(), so the gap shows. */
static struct vdisk *try_open(const char *path, struct vdisk_options opts)
{
	struct vdisk *disk = NULL;
	char err[256];
	int ret = vdisk_open(path, &opts, &disk, err, sizeof(err));
	if (ret < 0 && strstr(err, "cannot start")) {
		print_message("  engine unavailable: %s\n", err);
		engine_missing = true;
		return NULL;
	}
	if (ret < 0)
		fail_msg("vdisk_open %s: %s", path, err);
	track(disk);
	return disk;
}

static void skip_if_engine_missing(void)
{
	if (engine_missing)
		skip();
}

static struct vdisk *open_ok(const char *path, struct vdisk_options opts)
{
	struct vdisk *disk = try_open(path, opts);
	assert_non_null(disk);
	return disk;
}

/* ---- completions ---- */

struct req {
	int calls;
	int result;
};

static int submitting; /* > 0 while a submission call runs on this (main) thread */
static int polling;    /* > 0 while vdisk_queue_poll runs on this (main) thread */

static void req_cb(void *opaque, int result)
{
	struct req *r = opaque;
	if (submitting || !polling)
		bad_context++;
	r->calls++;
	r->result = result;
}

static int qpoll(struct vdisk_queue *q, unsigned min)
{
	polling++;
	int ret = vdisk_queue_poll(q, min);
	polling--;
	return ret;
}

static int readv_req(struct vdisk *d, struct vdisk_queue *q, const struct iovec *iov, int cnt,
		     uint64_t off, struct req *r)
{
	*r = (struct req){ 0, 1 };
	submitting++;
	int ret = vdisk_readv(d, q, iov, cnt, off, req_cb, r);
	submitting--;
	return ret;
}

static int writev_req(struct vdisk *d, struct vdisk_queue *q, const struct iovec *iov, int cnt,
		      uint64_t off, struct req *r)
{
	*r = (struct req){ 0, 1 };
	submitting++;
	int ret = vdisk_writev(d, q, iov, cnt, off, req_cb, r);
	submitting--;
	return ret;
}

static void wait_reqs(struct vdisk_queue *q, struct req *rs, size_t n)
{
	for (;;) {
		size_t pending = 0;
		for (size_t i = 0; i < n; i++)
			pending += rs[i].calls == 0;
		if (!pending)
			break;
		int ret = qpoll(q, 1);
		if (ret <= 0)
			fail_msg("vdisk_queue_poll = %d with %zu requests pending", ret, pending);
	}
	for (size_t i = 0; i < n; i++)
		if (rs[i].calls != 1)
			fail_msg("request %zu completed %d times", i, rs[i].calls);
}

/* ---- a format driver for the paths raw never takes ---- */

/* Reads at MOCK_FAIL_NOW end inside the submission with -EIO; reads at MOCK_FAIL_LATE
 * issue the file read and also record -EILSEQ; discard ends inside the submission with
 * success. Block status at MOCK_BAD_* returns malformed extents. */
#define MOCK_FAIL_NOW 0
#define MOCK_FAIL_LATE 512
#define MOCK_BAD_LONG 0
#define MOCK_BAD_OFFSET 512
#define MOCK_BAD_EMPTY 1024

static int mock_probe(const struct vdisk_probe *probe)
{
	(void)probe;
	return 0;
}

static int mock_open(struct vdisk *disk, char *err, size_t err_size)
{
	(void)err;
	(void)err_size;
	disk->size = disk->file->size;
	return 0;
}

static void mock_close(struct vdisk *disk)
{
	(void)disk;
}

static void mock_readv(struct vdisk_req *req)
{
	if (req->offset == MOCK_FAIL_NOW) {
		vdisk_req_hold(req);
		vdisk_req_end(req, -EIO);
		return;
	}
	vdisk_req_file_io(req, ENGINE_READ, req->disk->file, req->iov, req->iovcnt, req->offset, 0,
			  0);
	if (req->offset == MOCK_FAIL_LATE) {
		vdisk_req_hold(req);
		vdisk_req_end(req, -EILSEQ);
	}
}

static void mock_writev(struct vdisk_req *req)
{
	vdisk_req_file_io(req, ENGINE_WRITE, req->disk->file, req->iov, req->iovcnt, req->offset,
			  0, 0);
}

static void mock_flush(struct vdisk_req *req)
{
	vdisk_req_file_io(req, ENGINE_FDATASYNC, req->disk->file, NULL, 0, 0, 0, 0);
}

static void mock_done_now(struct vdisk_req *req)
{
	vdisk_req_hold(req);
	vdisk_req_end(req, 0);
}

static int mock_block_status(struct vdisk *disk, uint64_t offset, uint64_t length,
			     struct vdisk_extent *ext)
{
	(void)disk;
	*ext = (struct vdisk_extent){ offset, length, VDISK_EXTENT_DATA };
	if (offset == MOCK_BAD_LONG)
		ext->length = length + 1;
	else if (offset == MOCK_BAD_OFFSET)
		ext->offset = offset + 1;
	else if (offset == MOCK_BAD_EMPTY)
		ext->length = 0;
	return 0;
}

static const struct vdisk_format mock_format = {
	.name = "mock",
	.probe = mock_probe,
	.open = mock_open,
	.close = mock_close,
	.readv = mock_readv,
	.writev = mock_writev,
	.flush = mock_flush,
	.discard = mock_done_now,
	.write_zeroes = mock_done_now,
	.block_status = mock_block_status,
};

/* ---- tests ---- */

/* Four threads, each owning one queue of the same disk, write and read back their own
 * region at the same time. Callbacks must run on the owning thread. */
#define NTHREADS 4
#define REGION (1 * MiB)
#define CHUNK (64 * KiB)
#define NCHUNKS (REGION / CHUNK)

struct worker {
	struct vdisk *disk;
	unsigned index;
	pthread_t self;
	int completions;
	int wrong_thread;
	int errors;
	int mismatches;
	char why[160];
};

struct worker_req {
	struct worker *w;
	int calls;
	int result;
};

static void worker_cb(void *opaque, int result)
{
	struct worker_req *r = opaque;
	if (!pthread_equal(pthread_self(), r->w->self))
		r->w->wrong_thread++;
	r->w->completions++;
	r->calls++;
	r->result = result;
}

static void worker_wait(struct worker *w, struct vdisk_queue *q, struct worker_req *rs)
{
	for (int spins = 0; spins < 100000; spins++) {
		int pending = 0;
		for (unsigned i = 0; i < NCHUNKS; i++)
			pending += rs[i].calls == 0;
		if (!pending)
			break;
		int ret = vdisk_queue_poll(q, 1);
		if (ret <= 0) {
			snprintf(w->why, sizeof(w->why), "poll = %d with %d pending", ret, pending);
			w->errors++;
			return;
		}
	}
	for (unsigned i = 0; i < NCHUNKS; i++)
		if (rs[i].calls != 1 || rs[i].result != 0) {
			snprintf(w->why, sizeof(w->why), "chunk %u: %d calls, result %d", i,
				 rs[i].calls, rs[i].result);
			w->errors++;
		}
}

static void *worker_main(void *arg)
{
	struct worker *w = arg;
	w->self = pthread_self();
	struct vdisk_queue *q = vdisk_queue(w->disk, w->index);
	uint64_t base = (uint64_t)w->index * REGION;
	uint8_t *buf = NULL;
	if (posix_memalign((void **)&buf, 4096, REGION) != 0) {
		w->errors++;
		return NULL;
	}
	struct iovec iov[NCHUNKS];
	struct worker_req rs[NCHUNKS];
	for (int round = 0; round < 3; round++) {
		uint32_t seed = 100 + w->index * 10 + (uint32_t)round;
		test_fill_pattern(buf, REGION, base, seed);
		for (unsigned i = 0; i < NCHUNKS; i++) {
			/* the chunks in reverse order */
			unsigned c = NCHUNKS - 1 - i;
			iov[i] = (struct iovec){ buf + c * CHUNK, CHUNK };
			rs[i] = (struct worker_req){ w, 0, 1 };
			if (vdisk_writev(w->disk, q, &iov[i], 1, base + c * CHUNK, worker_cb,
					 &rs[i]) != 0)
				w->errors++;
		}
		worker_wait(w, q, rs);
		memset(buf, 0, REGION);
		for (unsigned i = 0; i < NCHUNKS; i++) {
			rs[i] = (struct worker_req){ w, 0, 1 };
			if (vdisk_readv(w->disk, q, &iov[i], 1, base + (NCHUNKS - 1 - i) * CHUNK,
					worker_cb, &rs[i]) != 0)
				w->errors++;
		}
		worker_wait(w, q, rs);
		uint8_t *want = malloc(REGION);
		if (!want) {
			w->errors++;
			break;
		}
		test_fill_pattern(want, REGION, base, seed);
		if (memcmp(buf, want, REGION))
			w->mismatches++;
		free(want);
	}
	if (vdisk_queue_inflight(q) != 0)
		w->errors++;
	free(buf);
	return NULL;
}

static void test_threads_own_queues(void **state)
{
	(void)state;
	const char *path = test_path("threads.img");
	test_write_file(path, NTHREADS * REGION, 1);
	for (size_t e = 0; e < ARRAY_SIZE(engines); e++) {
		struct vdisk_options opts = { .cache = VDISK_CACHE_DIRECT,
					      .engine = engines[e].kind,
					      .queues = NTHREADS,
					      .queue_depth = 8 };
		struct vdisk *disk = try_open(path, opts);
		if (!disk)
			continue;
		assert_int_equal(vdisk_queue_count(disk), NTHREADS);
		struct worker w[NTHREADS];
		pthread_t tid[NTHREADS];
		memset(w, 0, sizeof(w));
		for (unsigned i = 0; i < NTHREADS; i++) {
			w[i].disk = disk;
			w[i].index = i;
			assert_int_equal(pthread_create(&tid[i], NULL, worker_main, &w[i]), 0);
		}
		for (unsigned i = 0; i < NTHREADS; i++)
			assert_int_equal(pthread_join(tid[i], NULL), 0);
		for (unsigned i = 0; i < NTHREADS; i++) {
			if (w[i].errors || w[i].mismatches || w[i].wrong_thread)
				fail_msg("%s thread %u: %d errors (%s), %d mismatches, %d callbacks on "
					 "another thread",
					 engines[e].name, i, w[i].errors, w[i].why, w[i].mismatches,
					 w[i].wrong_thread);
			assert_int_equal(w[i].completions, 3 * 2 * NCHUNKS);
		}
		close_disk(disk);
		/* What the file holds: each region has its thread's last round. */
		uint8_t *buf = test_xmalloc(REGION);
		for (unsigned i = 0; i < NTHREADS; i++) {
			test_file_read(path, buf, REGION, (uint64_t)i * REGION);
			test_expect_pattern(buf, REGION, (uint64_t)i * REGION, 100 + i * 10 + 2,
				       "region written by its thread");
		}
		free(buf);
	}
	skip_if_engine_missing();
}

static void test_queue_accessors(void **state)
{
	(void)state;
	const char *path = test_path("queues.img");
	test_write_file(path, 64 * KiB, 2);
	struct vdisk *disk = open_ok(path, (struct vdisk_options){ .cache = VDISK_CACHE_WRITEBACK,
								   .queues = 4 });
	assert_int_equal(vdisk_queue_count(disk), 4);
	for (unsigned i = 0; i < 4; i++) {
		assert_non_null(vdisk_queue(disk, i));
		for (unsigned j = 0; j < i; j++)
			assert_ptr_not_equal(vdisk_queue(disk, i), vdisk_queue(disk, j));
		assert_int_equal(vdisk_queue_inflight(vdisk_queue(disk, i)), 0);
	}
	assert_null(vdisk_queue(disk, 4));
	assert_null(vdisk_queue(disk, UINT32_MAX));
	/* A request on queue 2 completes from queue 2's poll only. */
	struct vdisk_queue *q2 = vdisk_queue(disk, 2), *q0 = vdisk_queue(disk, 0);
	uint8_t buf[512];
	struct iovec iov = { buf, sizeof(buf) };
	struct req r;
	assert_int_equal(readv_req(disk, q2, &iov, 1, 1024, &r), 0);
	assert_int_equal(vdisk_queue_inflight(q2), 1);
	assert_int_equal(vdisk_queue_inflight(q0), 0);
	assert_int_equal(qpoll(q0, 1), 0);
	assert_int_equal(r.calls, 0);
	wait_reqs(q2, &r, 1);
	assert_int_equal(r.result, 0);
	test_expect_pattern(buf, sizeof(buf), 1024, 2, "read on queue 2");
	close_disk(disk);

	/* queues = 0 means one. */
	disk = open_ok(path, (struct vdisk_options){ .cache = VDISK_CACHE_WRITEBACK });
	assert_int_equal(vdisk_queue_count(disk), 1);
	assert_null(vdisk_queue(disk, 1));
	close_disk(disk);
	assert_int_equal(bad_context, 0);
}

/* Requests with nothing to move complete with 0, from the next poll. */
static void test_zero_length(void **state)
{
	(void)state;
	const char *path = test_path("zero.img");
	test_write_file(path, 64 * KiB, 3);
	for (size_t e = 0; e < ARRAY_SIZE(engines); e++) {
		struct vdisk *disk = try_open(path, (struct vdisk_options){
							    .cache = VDISK_CACHE_DIRECT,
							    .engine = engines[e].kind });
		if (!disk)
			continue;
		struct vdisk_queue *q = vdisk_queue(disk, 0);
		uint8_t buf[16];
		struct iovec empty = { buf, 0 };
		struct req r[7];
		assert_int_equal(readv_req(disk, q, NULL, 0, 0, &r[0]), 0);
		assert_int_equal(readv_req(disk, q, &empty, 1, 4096, &r[1]), 0);
		assert_int_equal(writev_req(disk, q, &empty, 1, 7, &r[2]), 0);
		assert_int_equal(readv_req(disk, q, NULL, 0, 64 * KiB, &r[3]), 0); /* at the end */
		r[4] = r[5] = (struct req){ 0, 1 };
		submitting++;
		assert_int_equal(vdisk_discard(disk, q, 100, 0, req_cb, &r[4]), 0);
		assert_int_equal(vdisk_write_zeroes(disk, q, 64 * KiB, 0, req_cb, &r[5]), 0);
		submitting--;
		struct iovec two_empty[2] = { { buf, 0 }, { buf + 1, 0 } };
		assert_int_equal(writev_req(disk, q, two_empty, 2, 0, &r[6]), 0);
		assert_int_equal(vdisk_queue_inflight(q), 7);
		assert_int_equal(vdisk_queue_kick(q), 0);
		for (int i = 0; i < 7; i++)
			assert_int_equal(r[i].calls, 0);
		/* One non-blocking poll delivers them all. */
		assert_int_equal(qpoll(q, 0), 7);
		for (int i = 0; i < 7; i++) {
			assert_int_equal(r[i].calls, 1);
			assert_int_equal(r[i].result, 0);
		}
		assert_int_equal(vdisk_queue_inflight(q), 0);
		assert_int_equal(qpoll(q, 0), 0);
		/* Past the end even with nothing to move: refused. */
		assert_int_equal(readv_req(disk, q, NULL, 0, 64 * KiB + 1, &r[0]), -EINVAL);
		/* The synchronous layer. */
		assert_int_equal(vdisk_pread(disk, buf, 0, 0), 0);
		assert_int_equal(vdisk_pwrite(disk, buf, 0, 64 * KiB), 0);
		assert_int_equal(vdisk_discard_sync(disk, 0, 0), 0);
		assert_int_equal(vdisk_write_zeroes_sync(disk, 0, 0), 0);
		close_disk(disk);
	}
	/* Nothing was changed. */
	uint8_t *all = test_xmalloc(64 * KiB);
	test_file_read(path, all, 64 * KiB, 0);
	test_expect_pattern(all, 64 * KiB, 0, 3, "after zero-length requests");
	free(all);
	assert_int_equal(bad_context, 0);
	skip_if_engine_missing();
}

/* A request the driver finishes inside its submission (error or not) is delivered at the
 * next poll; the first error recorded for a request wins. */
static struct vdisk *nested_disk;
static struct req nested_reqs[3];
static bool nested_early; /* an inner callback ran inside the outer callback's submit */

static void outer_cb(void *opaque, int result)
{
	req_cb(opaque, result);
	struct vdisk_queue *q = vdisk_queue(nested_disk, 0);
	static uint8_t buf[512];
	static struct iovec iov; /* must outlive this callback */
	iov = (struct iovec){ buf, sizeof(buf) };
	/* From inside a callback: requests that finish at submission are deferred too. */
	assert_int_equal(readv_req(nested_disk, q, &iov, 1, MOCK_FAIL_NOW, &nested_reqs[0]), 0);
	assert_int_equal(readv_req(nested_disk, q, NULL, 0, 0, &nested_reqs[1]), 0);
	nested_reqs[2] = (struct req){ 0, 1 };
	submitting++;
	assert_int_equal(vdisk_discard(nested_disk, q, 0, 512, req_cb, &nested_reqs[2]), 0);
	submitting--;
	for (int i = 0; i < 3; i++)
		if (nested_reqs[i].calls)
			nested_early = true;
}

static void test_deferred_completion(void **state)
{
	(void)state;
	const char *path = test_path("mock.img");
	test_write_file(path, 64 * KiB, 4);
	struct vdisk_options opts = { .cache = VDISK_CACHE_WRITEBACK, .format = "mock" };
	struct vdisk *disk = open_ok(path, opts);
	assert_string_equal(vdisk_format_name(disk), "mock");
	struct vdisk_queue *q = vdisk_queue(disk, 0);
	uint8_t *buf = test_aligned_buf(4096);
	struct iovec iov = { buf, 4096 };
	struct req r[4];

	/* Finished with an error inside the submission. */
	assert_int_equal(readv_req(disk, q, &iov, 1, MOCK_FAIL_NOW, &r[0]), 0);
	assert_int_equal(r[0].calls, 0);
	assert_int_equal(vdisk_queue_inflight(q), 1);
	assert_int_equal(vdisk_queue_kick(q), 0);
	assert_int_equal(r[0].calls, 0);
	assert_int_equal(qpoll(q, 0), 1);
	assert_int_equal(r[0].calls, 1);
	assert_int_equal(r[0].result, -EIO);
	assert_int_equal(vdisk_queue_inflight(q), 0);

	/* Finished successfully inside the submission (discard, write zeroes). */
	r[1] = r[2] = (struct req){ 0, 1 };
	submitting++;
	assert_int_equal(vdisk_discard(disk, q, 0, 4096, req_cb, &r[1]), 0);
	assert_int_equal(vdisk_write_zeroes(disk, q, 4096, 4096, req_cb, &r[2]), 0);
	submitting--;
	assert_int_equal(r[1].calls + r[2].calls, 0);
	assert_int_equal(qpoll(q, 1), 2); /* both, at the first poll */
	assert_int_equal(r[1].result, 0);
	assert_int_equal(r[2].result, 0);

	/* The file read succeeds but the driver recorded an error first. */
	assert_int_equal(readv_req(disk, q, &iov, 1, MOCK_FAIL_LATE, &r[0]), 0);
	wait_reqs(q, r, 1);
	assert_int_equal(r[0].result, -EILSEQ);

	/* A plain read through the driver. */
	assert_int_equal(readv_req(disk, q, &iov, 1, 8192, &r[0]), 0);
	wait_reqs(q, r, 1);
	assert_int_equal(r[0].result, 0);
	test_expect_pattern(buf, 4096, 8192, 4, "read through the mock driver");

	/* Submissions from inside a callback. */
	nested_disk = disk;
	nested_early = false;
	r[3] = (struct req){ 0, 1 };
	submitting++;
	assert_int_equal(vdisk_readv(disk, q, &iov, 1, 16384, outer_cb, &r[3]), 0);
	submitting--;
	while (r[3].calls == 0)
		assert_true(qpoll(q, 1) > 0);
	assert_false(nested_early);
	wait_reqs(q, nested_reqs, 3);
	assert_int_equal(nested_reqs[0].result, -EIO);
	assert_int_equal(nested_reqs[1].result, 0);
	assert_int_equal(nested_reqs[2].result, 0);
	assert_int_equal(vdisk_queue_inflight(q), 0);

	/* The sync layer sees the same results. */
	assert_int_equal(vdisk_pread(disk, buf, 4096, MOCK_FAIL_NOW), -EIO);
	assert_int_equal(vdisk_pread(disk, buf, 512, MOCK_FAIL_LATE), -EILSEQ);
	assert_int_equal(vdisk_discard_sync(disk, 0, 512), 0);

	close_disk(disk);
	free(buf);
	assert_int_equal(bad_context, 0);
}

/* Work posted from a completion callback runs before the poll returns; a request it
 * submits must reach the kernel then, not wait for a kick nobody makes. An event loop
 * polls with min_complete 0 only when the queue's fd says so; a request left queued
 * would never run (the IDE model's requests start this way, posted from vCPU threads). */
struct posted_write {
	struct vdisk *disk;
	struct vdisk_queue *q;
	struct iovec iov;
	bool submitted;
	struct req done;
};

static void posted_submit(void *arg)
{
	struct posted_write *pw = arg;
	assert_int_equal(vdisk_writev(pw->disk, pw->q, &pw->iov, 1, 0, req_cb, &pw->done), 0);
	pw->submitted = true;
}

static void post_on_completion(void *opaque, int result)
{
	struct posted_write *pw = opaque;
	assert_int_equal(result, 0);
	assert_int_equal(vdisk_queue_post(pw->q, posted_submit, pw), 0);
}

static void test_posted_work_is_submitted(void **state)
{
	(void)state;
	const char *path = test_path("posted.img");
	test_write_file(path, 64 * KiB, 5);
	for (size_t e = 0; e < ARRAY_SIZE(engines); e++) {
		struct vdisk_options opts = { .cache = VDISK_CACHE_DIRECT,
					      .engine = engines[e].kind };
		struct vdisk *disk = try_open(path, opts);
		if (!disk)
			continue;
		struct vdisk_queue *q = vdisk_queue(disk, 0);
		uint8_t *rbuf = test_aligned_buf(4096), *wbuf = test_aligned_buf(4096);
		test_fill_pattern(wbuf, 4096, 0, 77 + (uint32_t)e);
		struct posted_write pw = { disk, q, { wbuf, 4096 }, false, { 0, 1 } };
		struct iovec riov = { rbuf, 4096 };
		assert_int_equal(vdisk_readv(disk, q, &riov, 1, 8192, post_on_completion, &pw), 0);
		/* Poll until the read's callback has run: it posts the write, which the same
		 * poll runs. From then on poll only when the event fd says so, as an event loop
		 * does: the write must still land. */
		while (!pw.submitted)
			assert_true(qpoll(q, 0) >= 0);
		int fd = vdisk_queue_event_fd(q);
		assert_true(fd >= 0);
		uint8_t back[4096];
		bool landed = false;
		for (int i = 0; i < 200 && !landed; i++) {
			test_file_read(path, back, sizeof(back), 0);
			landed = memcmp(back, wbuf, sizeof(back)) == 0;
			struct pollfd pfd = { .fd = fd, .events = POLLIN };
			if (!landed && poll(&pfd, 1, 10) == 1)
				assert_true(qpoll(q, 0) >= 0);
		}
		if (!landed)
			fail_msg("%s: the write submitted by posted work never reached the file",
				 engines[e].name);
		wait_reqs(q, &pw.done, 1);
		assert_int_equal(pw.done.result, 0);
		close_disk(disk);
		free(rbuf);
		free(wbuf);
	}
	skip_if_engine_missing();
}

/* Far more requests in flight than the queue was sized for. */
static void test_beyond_depth(void **state)
{
	(void)state;
	const unsigned n = 100;
	const char *path = test_path("depth.img");
	test_write_file(path, n * 4096, 5);
	uint8_t *model = test_xmalloc(n * 4096);
	test_fill_pattern(model, n * 4096, 0, 5);
	struct req *rs = calloc(n, sizeof(*rs));
	uint8_t *buf = test_aligned_buf(n * 4096);
	struct iovec *iov = calloc(n, sizeof(*iov));
	assert_non_null(rs);
	assert_non_null(iov);

	for (size_t e = 0; e < ARRAY_SIZE(engines); e++) {
		struct vdisk *disk = try_open(path, (struct vdisk_options){
							    .cache = VDISK_CACHE_DIRECT,
							    .engine = engines[e].kind,
							    .queue_depth = 4 });
		if (!disk)
			continue;
		struct vdisk_queue *q = vdisk_queue(disk, 0);

		/* Writes to the even blocks and reads of the odd ones, all at once. */
		uint32_t seed = 50 + (uint32_t)e;
		for (unsigned i = 0; i < n; i++) {
			iov[i] = (struct iovec){ buf + 4096 * i, 4096 };
			if (i % 2 == 0) {
				test_fill_pattern(buf + 4096 * i, 4096, 4096 * i, seed);
				test_fill_pattern(model + 4096 * i, 4096, 4096 * i, seed);
				assert_int_equal(writev_req(disk, q, &iov[i], 1, 4096 * i, &rs[i]),
						 0);
			} else {
				memset(buf + 4096 * i, 0, 4096);
				assert_int_equal(readv_req(disk, q, &iov[i], 1, 4096 * i, &rs[i]),
						 0);
			}
		}
		assert_int_equal(vdisk_queue_inflight(q), n);
		assert_int_equal(qpoll(q, n), (int)n);
		assert_int_equal(vdisk_queue_inflight(q), 0);
		for (unsigned i = 0; i < n; i++) {
			assert_int_equal(rs[i].calls, 1);
			assert_int_equal(rs[i].result, 0);
		}
		test_expect_equal(buf, model, n * 4096, "100 requests at depth 4", 0);

		/* Again, collected one completion at a time. */
		memset(buf, 0, n * 4096);
		for (unsigned i = 0; i < n; i++)
			assert_int_equal(readv_req(disk, q, &iov[n - 1 - i], 1,
						   4096 * (uint64_t)(n - 1 - i), &rs[i]),
					 0);
		wait_reqs(q, rs, n);
		for (unsigned i = 0; i < n; i++)
			assert_int_equal(rs[i].result, 0);
		test_expect_equal(buf, model, n * 4096, "100 reads at depth 4", 0);
		close_disk(disk);

		uint8_t *file = test_xmalloc(n * 4096);
		test_file_read(path, file, n * 4096, 0);
		test_expect_equal(file, model, n * 4096, "file after 100 requests", 0);
		free(file);
	}
	free(iov);
	free(buf);
	free(rs);
	free(model);
	assert_int_equal(bad_context, 0);
	skip_if_engine_missing();
}

static void test_block_status_args(void **state)
{
	(void)state;
	const char *path = test_path("status.img");
	const uint64_t size = 1 * MiB;
	char err[256];
	struct vdisk_create_options co = { .format = "raw", .size = size, .sparse = true };
	assert_int_equal(vdisk_create(path, &co, err, sizeof(err)), 0);
	struct vdisk *disk = open_ok(path, (struct vdisk_options){ .cache = VDISK_CACHE_WRITEBACK });
	struct vdisk_extent ext = { 7, 7, 7 };
	static const struct {
		uint64_t off, len;
	} bad[] = {
		{ 0, 0 },	     { size, 0 },	 { size, 1 },	  { size - 1, 2 },
		{ 0, size + 1 },   { UINT64_MAX, 1 }, { 1, UINT64_MAX }, { UINT64_MAX, UINT64_MAX },
		{ size + 1, 0 },   { 512, 0 },
	};
	for (size_t i = 0; i < ARRAY_SIZE(bad); i++)
		if (vdisk_block_status(disk, bad[i].off, bad[i].len, &ext) != -EINVAL)
			fail_msg("block status %llu+%llu not refused",
				 (unsigned long long)bad[i].off, (unsigned long long)bad[i].len);
	assert_int_equal(vdisk_block_status(disk, 0, size, &ext), 0);
	assert_true(ext.offset == 0 && ext.length == size);
	assert_int_equal(vdisk_block_status(disk, size - 1, 1, &ext), 0);
	assert_true(ext.offset == size - 1 && ext.length == 1);
	close_disk(disk);

	/* A driver that answers with a malformed extent is caught. */
	disk = open_ok(path, (struct vdisk_options){ .cache = VDISK_CACHE_WRITEBACK,
						     .format = "mock" });
	assert_int_equal(vdisk_block_status(disk, MOCK_BAD_LONG, 4096, &ext), -EIO);
	assert_int_equal(vdisk_block_status(disk, MOCK_BAD_OFFSET, 4096, &ext), -EIO);
	assert_int_equal(vdisk_block_status(disk, MOCK_BAD_EMPTY, 4096, &ext), -EIO);
	assert_int_equal(vdisk_block_status(disk, 4096, 4096, &ext), 0);
	assert_true(ext.offset == 4096 && ext.length == 4096);
	assert_int_equal(vdisk_block_status(disk, 4096, 0, &ext), -EINVAL);
	close_disk(disk);
}

static void test_format_registry(void **state)
{
	(void)state;
	assert_ptr_equal(vdisk_format_at(0), &vdisk_format_raw);
	assert_ptr_equal(vdisk_format_find("raw"), &vdisk_format_raw);
	assert_ptr_equal(vdisk_format_find("mock"), &mock_format);
	assert_null(vdisk_format_find("nope"));
	assert_null(vdisk_format_find(""));
	/* Registering the same driver again is harmless; another one by a taken name is not. */
	assert_int_equal(vdisk_format_register(&mock_format), 0);
	static const struct vdisk_format impostor = { .name = "raw", .probe = mock_probe };
	assert_int_equal(vdisk_format_register(&impostor), -EEXIST);
	assert_ptr_equal(vdisk_format_find("raw"), &vdisk_format_raw);
	unsigned n = 0;
	while (vdisk_format_at(n))
		n++;
	assert_int_equal(n, 2);
	assert_null(vdisk_format_at(n));
	assert_null(vdisk_format_at(UINT32_MAX));

	/* A probe of 0 is never chosen: a plain file still opens as raw. */
	const char *path = test_path("probe.img");
	test_write_file(path, 4096, 6);
	struct vdisk *disk = open_ok(path, (struct vdisk_options){ .cache = VDISK_CACHE_WRITEBACK });
	assert_string_equal(vdisk_format_name(disk), "raw");
	close_disk(disk);

	/* The registry is bounded. */
	static struct vdisk_format extra[32];
	static char names[32][16];
	int ret = 0;
	unsigned added = 0;
	for (unsigned i = 0; i < 32 && ret == 0; i++) {
		snprintf(names[i], sizeof(names[i]), "extra%u", i);
		extra[i] = (struct vdisk_format){ .name = names[i], .probe = mock_probe };
		ret = vdisk_format_register(&extra[i]);
		added += ret == 0;
	}
	assert_int_equal(ret, -ENOSPC);
	assert_true(added >= 1 && added < 32);
	assert_ptr_equal(vdisk_format_find("extra0"), &extra[0]);
	disk = open_ok(path, (struct vdisk_options){ .cache = VDISK_CACHE_WRITEBACK });
	assert_string_equal(vdisk_format_name(disk), "raw");
	close_disk(disk);
}

static int group_setup(void **state)
{
	(void)state;
	return vdisk_format_register(&mock_format);
}

static int group_teardown(void **state)
{
	cleanup(state);
	test_tmpdir_remove();
	return 0;
}

#define TEST(fn) cmocka_unit_test_setup_teardown(fn, watchdog, cleanup)

int main(void)
{
	const struct CMUnitTest tests[] = {
		TEST(test_threads_own_queues), TEST(test_queue_accessors),
		TEST(test_zero_length),	       TEST(test_deferred_completion),
		TEST(test_beyond_depth),       TEST(test_block_status_args),
		TEST(test_posted_work_is_submitted),
		TEST(test_format_registry), /* last: fills the registry */
	};

	return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
