/* Power cuts during VHDX compaction (crash_offline.h): at every cut the image opens (the
 * log replays), vdisk check finds no error (leaked space is allowed) and every byte reads
 * as before. Dynamic and differencing images, with blocks to release (zeros, blocks equal
 * to the parent, a partial block whose sector bitmap bits must be cleared) and blocks to
 * move into the holes. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "crash_offline.h"
#include "test_disk.h"
#include "test_util.h"
#include "vdisk.h"
#include "vhdx.h"

#define MiB  (UINT64_C(1) << 20)
#define DISK (16 * MiB)
#define CUTS 100 /* per case; HVSTACK_CRASH_OFFLINE_POINTS for more */
#define BS   MiB

struct scenario {
	const char *path;   /* the image compacted */
	const char *parent; /* differencing: its parent, NULL otherwise */
	uint8_t *want;	    /* what it reads as */
};

static int open_image(const char *path, bool read_only, struct vdisk **disk, char *why,
		      size_t why_size)
{
	struct vdisk_options o = { .read_only = read_only, .cache = VDISK_CACHE_WRITEBACK };
	char err[256];
	int ret = vdisk_open(path, &o, disk, err, sizeof(err));
	if (ret < 0)
		snprintf(why, why_size, "cannot open %s: %s", path, err);
	return ret;
}

static struct vdisk *open_or_fail(const char *path, bool read_only)
{
	struct vdisk *disk;
	char why[512];
	if (open_image(path, read_only, &disk, why, sizeof(why)) < 0)
		fail_msg("%s", why);
	return disk;
}

static void create(const char *path, const char *parent)
{
	struct vdisk_create_options o = {
		.format = "vhdx", .size = DISK, .block_size = BS, .parent = parent
	};
	char err[256];
	if (vdisk_create(path, &o, err, sizeof(err)) < 0)
		fail_msg("cannot create %s: %s", path, err);
}

static uint8_t *read_all(struct vdisk *disk)
{
	uint8_t *buf = malloc(DISK);
	if (buf && vdisk_pread(disk, buf, DISK, 0) < 0) {
		free(buf);
		return NULL;
	}
	return buf;
}

/* ---- the operation and the judge ---- */

static int compact(void *opaque)
{
	const struct scenario *s = opaque;
	struct vdisk *disk;
	char why[512];
	int ret = open_image(s->path, false, &disk, why, sizeof(why));
	if (ret < 0)
		return ret;
	struct vdisk_compact_result r;
	ret = vdisk_compact(disk, NULL, NULL, &r, why, sizeof(why));
	if (ret < 0)
		fprintf(stderr, "compact: %s\n", why);
	vdisk_close(disk);
	return ret;
}

/* The read-write open replays the log; then the check and the content. */
static int judge(void *opaque, const char *const *paths, uint64_t cut, uint64_t end, char *why,
		 size_t why_size)
{
	(void)cut;
	(void)end;
	const struct scenario *s = opaque;
	struct vdisk *disk;
	if (open_image(paths[0], false, &disk, why, why_size) < 0)
		return -1;
	struct vdisk_check_result r;
	int ret = vdisk_check(disk, 0, &r);
	if (ret < 0 || r.errors) {
		json_t *first = json_array_get(r.findings, 0);
		snprintf(why, why_size, "check: %s",
			 ret < 0 ? strerror(-ret)
				 : json_string_value(json_object_get(first, "message")));
		ret = -1;
	}
	json_decref(r.findings);
	uint8_t *have = ret == 0 ? read_all(disk) : NULL;
	if (ret == 0 && (!have || memcmp(have, s->want, DISK))) {
		snprintf(why, why_size, "the content changed");
		ret = -1;
	}
	free(have);
	vdisk_close(disk);
	return ret;
}

static void run_scenario(struct scenario *s, const char *name)
{
	struct vdisk *disk = open_or_fail(s->path, true);
	s->want = read_all(disk);
	assert_non_null(s->want);
	vdisk_close(disk);
	const char *paths[] = { s->path };
	const char *read_paths[] = { s->parent };
	struct crash_offline c = { .name = name,
				   .paths = paths,
				   .npaths = 1,
				   .read_paths = read_paths,
				   .nread_paths = s->parent ? 1 : 0,
				   .run = compact,
				   .check = judge,
				   .opaque = s };
	unsigned failed = crash_offline_run(&c, CUTS, test_tmpdir());
	free(s->want);
	assert_int_equal(failed, 0);
}

/* Blocks 0-11 written; 2-3 zeroed with write-zeroes, 5 overwritten with zeros, 7
 * discarded: holes for the blocks at the end. */
static void test_dynamic(void **state)
{
	(void)state;
	struct scenario s = { .path = test_path("dynamic.vhdx") };
	create(s.path, NULL);
	struct vdisk *disk = open_or_fail(s.path, false);
	assert_int_equal(test_disk_write_pattern(disk, 0, 12 * BS, 1), 0);
	assert_int_equal(vdisk_write_zeroes_sync(disk, 2 * BS, 2 * BS), 0);
	uint8_t *zeros = calloc(1, BS);
	assert_non_null(zeros);
	assert_int_equal(vdisk_pwrite(disk, zeros, BS, 5 * BS), 0);
	free(zeros);
	assert_int_equal(vdisk_discard_sync(disk, 7 * BS, BS), 0);
	vdisk_close(disk);
	run_scenario(&s, "vhdx-dynamic");
}

/* The child: block 1 equal to the parent's, 8 KiB of zeros over data in 2, 3 and 9 its own data, 4
 * a partial copy of the parent (its bits cleared), 6 a partial write of its own, and 12-13 past the
 * parent's data at the end of the file. */
static void test_differencing(void **state)
{
	(void)state;
	struct scenario s = { .path = test_path("child.vhdx"), .parent = test_path("base.vhdx") };
	create(s.parent, NULL);
	struct vdisk *p = open_or_fail(s.parent, false);
	assert_int_equal(test_disk_write_pattern(p, 0, 8 * BS, 2), 0);
	vdisk_close(p);
	create(s.path, s.parent);
	p = open_or_fail(s.parent, true);
	struct vdisk *c = open_or_fail(s.path, false);
	assert_int_equal(test_disk_copy(p, c, 1 * BS, BS), 0);
	assert_int_equal(vdisk_write_zeroes_sync(c, 2 * BS + 4096, 8192), 0);
	assert_int_equal(test_disk_write_pattern(c, 3 * BS, BS, 3), 0);
	assert_int_equal(test_disk_copy(p, c, 4 * BS + 512, 4096), 0);
	assert_int_equal(test_disk_write_pattern(c, 6 * BS + 8192, 4096, 4), 0);
	assert_int_equal(test_disk_write_pattern(c, 9 * BS, BS, 5), 0);
	assert_int_equal(test_disk_copy(p, c, 12 * BS, 2 * BS), 0);
	vdisk_close(c);
	vdisk_close(p);
	run_scenario(&s, "vhdx-differencing");
}

int main(void)
{
	vhdx_register();
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_dynamic),
		cmocka_unit_test(test_differencing),
	};
	int ret = cmocka_run_group_tests(tests, NULL, NULL);
	test_tmpdir_remove();
	return ret;
}
