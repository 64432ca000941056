/* The read/write path of a format driver (VHD or VHDX, named on the command line) against
 * a raw shadow copy: random workloads (sizes, alignments, block boundaries, many requests
 * in flight, several queues), then the image is compared with the shadow by qemu-img
 * (dynamic and fixed images), a reader that shares no code with ours, and checked with
 * vdisk check. QEMU reads neither format's differencing images, and Debian's libvhdi
 * (20210425) misreads VHD sector bitmaps (it compares unmasked shifted bytes), so chains
 * are checked against the shadow alone. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <jansson.h>

#include "test_util.h"
#include "vdisk.h"
#include "vhd.h"
#include "vhdx.h"

#define MiB (1024 * 1024)

/* What differs between the formats under test. */
struct format {
	const char *name;         /* of the test case */
	const char *format;       /* ours */
	const char *qemu_name;    /* qemu-img's */
	const char *qemu_dynamic; /* qemu-img create options: exact-size dynamic image */
	const char *qemu_fixed;
	uint32_t small_block;     /* a small block size we can create */
	uint32_t chain_block;     /* block size for differencing tests (0: default) */
	uint32_t logical_sector;  /* for images we create (0: the format's default) */
};

static const struct format formats[] = {
	{"vhd", "vhd", "vpc", "-o subformat=dynamic,force_size=on", "-o subformat=fixed,force_size=on",
	 512 * 1024, 0, 0},
	{"vhdx", "vhdx", "vhdx", "-o subformat=dynamic,block_size=1M", "-o subformat=fixed", 1 * MiB,
	 1 * MiB, 0},
	/* 4 KiB logical sectors: QEMU 7.2 does not open these, so only our own reader and
	 * vdisk check judge them; 512-byte writes to a child go through read-modify-write */
	{"vhdx-4k", "vhdx", NULL, NULL, NULL, 1 * MiB, 1 * MiB, 4096},
};

static const struct format *fmt;

static bool have(const char *tool)
{
	return test_run(NULL, 0, "command -v %s >/dev/null", tool) == 0;
}

static uint64_t rnd_from(uint64_t *state)
{
	*state ^= *state << 13;
	*state ^= *state >> 7;
	*state ^= *state << 17;
	return *state;
}

static uint64_t rng_state = 0x1234567;

static uint64_t rnd(void)
{
	return rnd_from(&rng_state);
}

static struct vdisk *open_rw(const char *path, unsigned queues)
{
	struct vdisk_options o = {.queues = queues, .queue_depth = 64};
	struct vdisk *disk;
	char err[256];
	int ret = vdisk_open(path, &o, &disk, err, sizeof(err));
	if (ret < 0)
		fail_msg("open %s: %s", path, err);
	return disk;
}

struct op {
	uint8_t *buf;
	struct iovec iov[3];
	int iovcnt;
	uint64_t off, len;
	bool done;
	int result;
};

static void op_done(void *opaque, int result)
{
	struct op *op = opaque;
	op->done = true;
	op->result = result;
}

/* Random writes inside [base, base + size), up to depth in flight, mirrored into shadow
 * (a memory image of the whole disk). Writes in flight never overlap, so the final
 * content is defined. align is 1 or 512. */
static void random_writes_in(struct vdisk *disk, unsigned qi, uint8_t *shadow, uint64_t base,
			     uint64_t size, unsigned count, unsigned depth, uint64_t align,
			     uint64_t max_len, uint64_t *rng)
{
	struct vdisk_queue *q = vdisk_queue(disk, qi);
	struct op *ops = calloc(depth, sizeof(*ops));
	unsigned issued = 0, busy = 0;
	while (issued < count || busy) {
		for (unsigned i = 0; i < depth && issued < count; i++) {
			struct op *op = &ops[i];
			if (op->buf)
				continue;
			uint64_t len = (rnd_from(rng) % max_len) / align * align + align;
			if (len > size)
				len = size / align * align;
			uint64_t off = base + rnd_from(rng) % (size - len + 1) / align * align;
			bool overlaps = false;
			for (unsigned j = 0; j < depth; j++)
				if (ops[j].buf && off < ops[j].off + ops[j].len && ops[j].off < off + len)
					overlaps = true;
			if (overlaps)
				continue;
			op->buf = malloc(len + 1);
			test_fill_pattern(op->buf, len, issued * 7919ULL, (uint32_t)issued + 1);
			memcpy(shadow + off, op->buf, len);
			/* split into up to 3 iovecs of odd sizes */
			uint64_t a = len > 2 ? rnd_from(rng) % len : len;
			uint64_t b = a < len ? rnd_from(rng) % (len - a) : 0;
			op->iovcnt = 0;
			uint64_t parts[3] = {a, b, len - a - b};
			uint64_t pos = 0;
			for (int k = 0; k < 3; k++) {
				if (!parts[k])
					continue;
				op->iov[op->iovcnt++] = (struct iovec){op->buf + pos, parts[k]};
				pos += parts[k];
			}
			op->off = off;
			op->len = len;
			op->done = false;
			assert_int_equal(vdisk_writev(disk, q, op->iov, op->iovcnt, off, op_done, op), 0);
			issued++;
			busy++;
		}
		assert_true(vdisk_queue_poll(q, 1) >= 0);
		for (unsigned i = 0; i < depth; i++) {
			if (ops[i].buf && ops[i].done) {
				assert_int_equal(ops[i].result, 0);
				free(ops[i].buf);
				ops[i].buf = NULL;
				busy--;
			}
		}
	}
	free(ops);
}

static void random_writes(struct vdisk *disk, unsigned qi, uint8_t *shadow, uint64_t size,
			  unsigned count, unsigned depth, uint64_t align, uint64_t max_len)
{
	random_writes_in(disk, qi, shadow, 0, size, count, depth, align, max_len, &rng_state);
}

static void expect_equal(const uint8_t *got, const uint8_t *want, uint64_t len, const char *what)
{
	for (uint64_t i = 0; i < len; i++)
		if (got[i] != want[i])
			fail_msg("%s: byte %llu is %02x, expected %02x", what, (unsigned long long)i,
				 got[i], want[i]);
}

/* Reads the whole disk through vdisk in random-sized pieces and compares. */
static void verify_reads(struct vdisk *disk, const uint8_t *shadow, uint64_t size)
{
	uint8_t *buf = malloc(size);
	for (uint64_t off = 0; off < size;) {
		uint64_t len = rnd() % (3 * MiB) + 1;
		if (len > size - off)
			len = size - off;
		assert_int_equal(vdisk_pread(disk, buf + off, len, off), 0);
		off += len;
	}
	expect_equal(buf, shadow, size, "vdisk read");
	free(buf);
}

static void write_shadow_file(const char *path, const uint8_t *shadow, uint64_t size)
{
	FILE *f = fopen(path, "wb");
	assert_non_null(f);
	assert_int_equal(fwrite(shadow, 1, size, f), size);
	fclose(f);
}

/* qemu-img reads the VHD and compares it with the raw shadow. */
static void qemu_compare(const char *vhd, const uint8_t *shadow, uint64_t size)
{
	if (!fmt->qemu_name || !have("qemu-img"))
		return;
	const char *raw = test_path("shadow.raw");
	write_shadow_file(raw, shadow, size);
	char out[4096];
	int ret = test_run(out, sizeof(out), "qemu-img compare -f %s -F raw '%s' '%s'",
			   fmt->qemu_name, vhd, raw);
	if (ret != 0)
		fail_msg("qemu-img compare: %s", out);
}

/* vdisk check finds nothing wrong with the metadata on disk (leaks are allowed only
 * after a crash). */
static void check_image(const char *path, bool allow_leaks)
{
	struct vdisk_options o = {.read_only = true, .no_lock = true};
	struct vdisk *disk;
	char err[256];
	if (vdisk_open(path, &o, &disk, err, sizeof(err)) < 0)
		fail_msg("reopen %s: %s", path, err);
	struct vdisk_check_result r;
	assert_int_equal(vdisk_check(disk, 0, &r), 0);
	if (r.errors || (r.leaks && !allow_leaks)) {
		char *text = json_dumps(r.findings, 0);
		fail_msg("%s: %u errors, %u leaks: %s", path, r.errors, r.leaks, text);
	}
	json_decref(r.findings);
	vdisk_close(disk);
}

/* After a flush, a copy of the file (what a power cut would leave, as far as the writer
 * has flushed) opened on its own reads the shadow: flush wrote the metadata (for VHDX,
 * into the log, which the copy's read-write open replays). */
static void expect_clean(const char *path)
{
	check_image(path, false);
}

static void expect_on_disk(const char *path, const uint8_t *shadow, uint64_t size)
{
	const char *copy = test_path("on-disk-copy.img");
	assert_int_equal(test_run(NULL, 0, "cp '%s' '%s'", path, copy), 0);
	struct vdisk_options o = {.no_lock = true};
	struct vdisk *disk;
	char err[256];
	if (vdisk_open(copy, &o, &disk, err, sizeof(err)) < 0)
		fail_msg("open a copy of %s: %s", path, err);
	verify_reads(disk, shadow, size);
	vdisk_close(disk);
	unlink(copy);
}

static void run_workload(const char *path, uint64_t size, uint64_t align, unsigned count)
{
	uint8_t *shadow = calloc(1, size);
	struct vdisk *disk = open_rw(path, 1);
	assert_int_equal(vdisk_size(disk), size);
	random_writes(disk, 0, shadow, size, count, 32, align, 3 * MiB);
	verify_reads(disk, shadow, size);
	assert_int_equal(vdisk_flush_sync(disk), 0);
	expect_on_disk(path, shadow, size);
	/* more writes, then close without a flush: close writes the metadata back */
	random_writes(disk, 0, shadow, size, count / 4, 32, align, 1 * MiB);
	vdisk_close(disk);
	disk = open_rw(path, 1);
	verify_reads(disk, shadow, size);
	vdisk_close(disk);
	expect_clean(path);
	qemu_compare(path, shadow, size);
	free(shadow);
}

static void qemu_create(const char *path, const char *opts, uint64_t size)
{
	if (!fmt->qemu_name || !have("qemu-img"))
		skip();
	char out[4096];
	if (test_run(out, sizeof(out), "qemu-img create -f %s %s '%s' %llu", fmt->qemu_name, opts,
		     path, (unsigned long long)size) != 0)
		fail_msg("qemu-img create: %s", out);
}

static void test_dynamic_qemu_made(void **state)
{
	(void)state;
	const char *path = test_path("dyn-qemu.img");
	qemu_create(path, fmt->qemu_dynamic, 40 * MiB);
	run_workload(path, 40 * MiB, 1, 1500);
}

static void test_fixed_qemu_made(void **state)
{
	(void)state;
	const char *path = test_path("fixed-qemu.img");
	qemu_create(path, fmt->qemu_fixed, 24 * MiB);
	run_workload(path, 24 * MiB, 1, 800);
}

static void create_image(const char *path, const char *type, uint64_t size, const char *parent,
			 uint32_t block_size)
{
	struct vdisk_create_options o = {.format = fmt->format,
					 .logical_sector_size = parent ? 0 : fmt->logical_sector,
					 .type = type, .size = size,
					 .parent = parent, .block_size = block_size};
	char err[256];
	int ret = vdisk_create(path, &o, err, sizeof(err));
	if (ret < 0)
		fail_msg("create %s: %s", path, err);
}

static void test_dynamic_ours(void **state)
{
	(void)state;
	const char *path = test_path("dyn-ours.img");
	/* a size that is not a whole number of blocks */
	uint64_t size = 33 * MiB + 3 * (fmt->logical_sector ? fmt->logical_sector : 512);
	create_image(path, "dynamic", size, NULL, fmt->small_block);
	run_workload(path, size, 1, 1500);
}

/* A 3-deep chain: base <- mid <- top, each written in turn; reads of top see the newest
 * data of the chain, also after reopening. */
static void test_differencing_chain(void **state)
{
	(void)state;
	uint64_t size = 20 * MiB;
	uint8_t *shadow = calloc(1, size);
	const char *base = test_path("base.img");
	const char *mid = test_path("mid.img");
	const char *top = test_path("top.img");
	create_image(base, "dynamic", size, NULL, fmt->small_block);
	struct vdisk *disk = open_rw(base, 1);
	random_writes(disk, 0, shadow, size, 300, 16, 512, 2 * MiB);
	vdisk_close(disk);

	create_image(mid, NULL, 0, base, fmt->chain_block);
	disk = open_rw(mid, 1);
	verify_reads(disk, shadow, size);
	random_writes(disk, 0, shadow, size, 300, 16, 512, 1 * MiB);
	vdisk_close(disk);

	create_image(top, NULL, 0, mid, fmt->chain_block);
	disk = open_rw(top, 1);
	verify_reads(disk, shadow, size);
	/* byte-aligned writes: partial sectors are read from the parent first */
	random_writes(disk, 0, shadow, size, 600, 32, 1, 600 * 1024);
	verify_reads(disk, shadow, size);
	vdisk_close(disk);

	disk = open_rw(top, 1);
	verify_reads(disk, shadow, size);
	vdisk_close(disk);
	expect_clean(top);
	expect_clean(mid);
	expect_clean(base);
	free(shadow);
}

/* Two unaligned writes into one sector of a differencing image, in flight together: the
 * sector keeps the parent's bytes around them and both writes' bytes. */
static void test_shared_sector_writes(void **state)
{
	(void)state;
	uint64_t size = 4 * MiB;
	const char *base = test_path("rmw-base.img");
	const char *child = test_path("rmw-child.img");
	create_image(base, "dynamic", size, NULL, fmt->small_block);
	uint8_t *want = malloc(4096);
	test_fill_pattern(want, 4096, 0, 77);
	struct vdisk *disk = open_rw(base, 1);
	assert_int_equal(vdisk_pwrite(disk, want, 4096, 8192), 0);
	vdisk_close(disk);
	create_image(child, NULL, 0, base, fmt->chain_block);
	disk = open_rw(child, 1);
	struct vdisk_queue *q = vdisk_queue(disk, 0);
	uint8_t a[100], b[150];
	memset(a, 0xA1, sizeof(a));
	memset(b, 0xB2, sizeof(b));
	struct op oa = {0}, ob = {0};
	struct iovec ia = {a, sizeof(a)}, ib = {b, sizeof(b)};
	assert_int_equal(vdisk_writev(disk, q, &ia, 1, 8192 + 10, op_done, &oa), 0);
	assert_int_equal(vdisk_writev(disk, q, &ib, 1, 8192 + 300, op_done, &ob), 0);
	while (!oa.done || !ob.done)
		assert_true(vdisk_queue_poll(q, 1) >= 0);
	assert_int_equal(oa.result, 0);
	assert_int_equal(ob.result, 0);
	memcpy(want + 10, a, sizeof(a));
	memcpy(want + 300, b, sizeof(b));
	uint8_t got[4096];
	assert_int_equal(vdisk_pread(disk, got, 4096, 8192), 0);
	expect_equal(got, want, 4096, "shared sector");
	vdisk_close(disk);
	free(want);
}

struct thread_arg {
	struct vdisk *disk;
	unsigned qi;
	uint8_t *shadow;
	uint64_t base, size;
};

static void *thread_writes(void *p)
{
	struct thread_arg *a = p;
	uint64_t rng = 0x9E3779B97F4A7C15ULL * (a->qi + 1);
	random_writes_in(a->disk, a->qi, a->shadow, a->base, a->size, 400, 16, 512, 256 * 1024,
			 &rng);
	return NULL;
}

/* Four queues on four threads allocating blocks of one image at once, each in its own
 * region: the metadata batch runs on one of them and completes the others' writes on
 * their own queues. */
static void test_multi_queue_allocation(void **state)
{
	(void)state;
	const uint64_t region = 8 * MiB, size = 4 * region;
	const char *path = test_path("mq.img");
	create_image(path, "dynamic", size, NULL, 1 * MiB);
	uint8_t *shadow = calloc(1, size);
	struct vdisk *disk = open_rw(path, 4);
	pthread_t t[4];
	struct thread_arg args[4];
	for (unsigned i = 0; i < 4; i++) {
		args[i] = (struct thread_arg){disk, i, shadow, i * region, region};
		pthread_create(&t[i], NULL, thread_writes, &args[i]);
	}
	for (unsigned i = 0; i < 4; i++)
		pthread_join(t[i], NULL);
	verify_reads(disk, shadow, size);
	vdisk_close(disk);
	expect_clean(path);
	qemu_compare(path, shadow, size);
	free(shadow);
}

/* An image left with a dirty log (a copy taken after a flush, with the writer still
 * open): a read-only open refuses and names the repair command; our replay (a read-write
 * open) and QEMU's (qemu-img check -r all) give images that read the same. VHDX only. */
static void test_dirty_log_replay(void **state)
{
	(void)state;
	if (strcmp(fmt->format, "vhdx") != 0)
		skip();
	uint64_t size = 24 * MiB;
	const char *path = test_path("dirty.img");
	create_image(path, "dynamic", size, NULL, 1 * MiB);
	uint8_t *shadow = calloc(1, size);
	struct vdisk *disk = open_rw(path, 1);
	random_writes(disk, 0, shadow, size, 300, 16, 512, 1 * MiB);
	assert_int_equal(vdisk_flush_sync(disk), 0);
	const char *ours = test_path("dirty-ours.img");
	const char *theirs = test_path("dirty-qemu.img");
	assert_int_equal(test_run(NULL, 0, "cp '%s' '%s' && cp '%s' '%s'", path, ours, path, theirs),
			 0);
	vdisk_close(disk);

	struct vdisk_options ro = {.read_only = true};
	char err[512];
	assert_int_equal(vdisk_open(ours, &ro, &disk, err, sizeof(err)), -EROFS);
	if (!strstr(err, "check --repair"))
		fail_msg("the refusal does not name the repair command: %s", err);

	disk = open_rw(ours, 1); /* replays */
	verify_reads(disk, shadow, size);
	vdisk_close(disk);
	check_image(ours, true); /* the copy was taken as a crash would leave it */
	if (!fmt->qemu_name || !have("qemu-img")) {
		free(shadow);
		return;
	}
	char out[4096];
	int ret = test_run(out, sizeof(out), "qemu-img check -r all -f vhdx '%s'", theirs);
	if (ret != 0)
		fail_msg("qemu-img check -r all: %s", out);
	ret = test_run(out, sizeof(out), "qemu-img compare -f vhdx -F vhdx '%s' '%s'", ours, theirs);
	if (ret != 0)
		fail_msg("after replay, QEMU's copy and ours differ: %s", out);
	qemu_compare(theirs, shadow, size);
	free(shadow);
}

static int teardown(void **state)
{
	(void)state;
	test_tmpdir_remove();
	return 0;
}

int main(int argc, char **argv)
{
	for (unsigned i = 0; argc > 1 && i < sizeof(formats) / sizeof(formats[0]); i++)
		if (!strcmp(argv[1], formats[i].name))
			fmt = &formats[i];
	if (!fmt) {
		fprintf(stderr, "usage: %s vhd|vhdx|vhdx-4k\n", argv[0]);
		return 2;
	}
	vhd_register();
	vhdx_register();
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_dynamic_qemu_made),
		cmocka_unit_test(test_fixed_qemu_made),
		cmocka_unit_test(test_dynamic_ours),
		cmocka_unit_test(test_differencing_chain),
		cmocka_unit_test(test_shared_sector_writes),
		cmocka_unit_test(test_multi_queue_allocation),
		cmocka_unit_test(test_dirty_log_replay),
	};
	return cmocka_run_group_tests_name(fmt->name, tests, NULL, teardown);
}
