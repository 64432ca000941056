/* Power cuts during a merge (storage/merge.c: copy into the parent, flush, close), on VHDX
 * and VHD. At every cut the parent opens and checks without errors, and the child over it
 * (its changed identity allowed, as the finishing merge opens it) reads what the chain
 * read before the merge; once the merge has finished, the parent alone reads it. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "crash_offline.h"
#include "merge.h"
#include "test_util.h"
#include "vdisk.h"
#include "vhd.h"
#include "vhdx.h"

#define DISK_SIZE    (8u << 20)
#define MiB	     (1u << 20)
#define DEFAULT_CUTS 50

static uint8_t *expected; /* what the chain reads before the merge */

static int open_disk(const char *path, const struct vdisk_options *o, struct vdisk **disk)
{
	char err[512];
	int ret = vdisk_open(path, o, disk, err, sizeof(err));
	if (ret < 0)
		fprintf(stderr, "cannot open %s: %s\n", path, err);
	return ret;
}

static void write_pattern(struct vdisk *disk, uint64_t off, uint64_t len, uint32_t seed)
{
	uint8_t *buf = malloc(len);
	assert_non_null(buf);
	test_fill_pattern(buf, len, off, seed);
	assert_int_equal(vdisk_pwrite(disk, buf, len, off), 0);
	memcpy(expected + off, buf, len);
	free(buf);
}

/* The parent holds data in the first 5 MiB; the child overwrites pieces, zeros a whole
 * megabyte of it, and adds data where the parent has none. */
static void make_chain(const char *fmt, const char *base, const char *child)
{
	struct vdisk_create_options bo = { .format = fmt, .size = DISK_SIZE, .block_size = MiB };
	struct vdisk_create_options co = { .format = fmt, .parent = base };
	struct vdisk_options o = { .cache = VDISK_CACHE_WRITEBACK, .engine = VDISK_ENGINE_SYNC };
	struct vdisk *disk;
	char err[512];
	unlink(base);
	unlink(child);
	memset(expected, 0, DISK_SIZE);
	if (!strcmp(fmt, "vhd"))
		bo.block_size = 0; /* VHD's default, 2 MiB */
	assert_int_equal(vdisk_create(base, &bo, err, sizeof(err)), 0);
	assert_int_equal(open_disk(base, &o, &disk), 0);
	write_pattern(disk, 0, 5 * MiB, 1);
	vdisk_close(disk);
	assert_int_equal(vdisk_create(child, &co, err, sizeof(err)), 0);
	assert_int_equal(open_disk(child, &o, &disk), 0);
	write_pattern(disk, 1 * MiB, 64 << 10, 2);
	write_pattern(disk, 4 * MiB - 512, 4096, 2);
	assert_int_equal(vdisk_write_zeroes_sync(disk, 2 * MiB, MiB), 0);
	memset(expected + 2 * MiB, 0, MiB);
	write_pattern(disk, 6 * MiB, MiB, 2);
	vdisk_close(disk);
}

static int merge_copy(void *opaque)
{
	const char *child = opaque;
	struct vdisk_merge_options o = { 0 };
	struct vdisk_merge_plan plan;
	char err[1024];
	int ret = vdisk_merge_prepare(child, &o, &plan, err, sizeof(err));
	if (ret == 0)
		ret = vdisk_merge_copy(&plan, &o, err, sizeof(err));
	if (ret < 0)
		fprintf(stderr, "merge failed: %s\n", err);
	vdisk_merge_plan_free(&plan);
	return ret;
}

static int reads_expected(const char *path, const struct vdisk_options *o, char *why,
			  size_t why_size)
{
	struct vdisk *disk;
	if (open_disk(path, o, &disk) < 0) {
		snprintf(why, why_size, "%s does not open", path);
		return -1;
	}
	uint8_t *buf = malloc(DISK_SIZE);
	int ret = buf && vdisk_pread(disk, buf, DISK_SIZE, 0) == 0 ? 0 : -1;
	vdisk_close(disk);
	for (uint64_t off = 0; ret == 0 && off < DISK_SIZE; off += 512)
		if (memcmp(buf + off, expected + off, 512)) {
			snprintf(why, why_size, "%s reads other data at byte %llu", path,
				 (unsigned long long)off);
			ret = -1;
		}
	if (!buf)
		snprintf(why, why_size, "out of memory");
	free(buf);
	return ret;
}

/* Opened read-write, as the finishing merge opens it: a dirty VHDX log is replayed. */
static int parent_checks_clean(const char *path, char *why, size_t why_size)
{
	struct vdisk_options o = { .cache = VDISK_CACHE_WRITEBACK, .engine = VDISK_ENGINE_SYNC };
	struct vdisk_check_result r = { 0 };
	struct vdisk *disk;
	if (open_disk(path, &o, &disk) < 0) {
		snprintf(why, why_size, "the parent does not open");
		return -1;
	}
	int ret = vdisk_check(disk, 0, &r);
	vdisk_close(disk);
	if (ret < 0 || r.errors) {
		json_t *first = json_array_get(r.findings, 0);
		const char *msg = json_string_value(json_object_get(first, "message"));
		snprintf(why, why_size, "the parent checks with %u error(s): %s", r.errors,
			 msg ? msg : "the check failed");
	}
	json_decref(r.findings);
	return ret < 0 || r.errors ? -1 : 0;
}

static int check_cut(void *opaque, const char *const *cut_paths, uint64_t cut, uint64_t end,
		     char *why, size_t why_size)
{
	(void)opaque;
	struct vdisk_options chain = { .read_only = true,
				       .cache = VDISK_CACHE_WRITEBACK,
				       .engine = VDISK_ENGINE_SYNC,
				       .allow_parent_mismatch = true };
	if (parent_checks_clean(cut_paths[1], why, why_size) < 0)
		return -1;
	if (reads_expected(cut_paths[0], &chain, why, why_size) < 0)
		return -1;
	if (cut == end)
		return reads_expected(cut_paths[1], &chain, why, why_size);
	return 0;
}

static unsigned cuts(void)
{
	const char *env = getenv("HVSTACK_CRASH_OFFLINE_POINTS");
	return env && atoi(env) > 0 ? (unsigned)atoi(env) : DEFAULT_CUTS;
}

static void run_case(const char *fmt)
{
	char base[64], child[64];
	snprintf(base, sizeof(base), "base.%s", fmt);
	snprintf(child, sizeof(child), "child.%s", fmt);
	const char *paths[] = { strdup(test_path(child)), strdup(test_path(base)) };
	make_chain(fmt, paths[1], paths[0]);
	struct vdisk_options chain = { .read_only = true,
				       .cache = VDISK_CACHE_WRITEBACK,
				       .engine = VDISK_ENGINE_SYNC };
	char why[512];
	if (reads_expected(paths[0], &chain, why, sizeof(why)) < 0)
		fail_msg("the chain before the merge: %s", why);
	struct crash_offline c = { .name = fmt,
				   .paths = paths,
				   .npaths = 2,
				   .run = merge_copy,
				   .check = check_cut,
				   .opaque = (void *)paths[0] };
	assert_int_equal(crash_offline_run(&c, cuts(), test_tmpdir()), 0);
	free((char *)paths[0]);
	free((char *)paths[1]);
}

static void test_merge_vhdx(void **state)
{
	(void)state;
	run_case("vhdx");
}

static void test_merge_vhd(void **state)
{
	(void)state;
	run_case("vhd");
}

int main(void)
{
	if (vhd_register() || vhdx_register())
		return 1;
	expected = malloc(DISK_SIZE);
	if (!expected)
		return 1;
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_merge_vhdx),
		cmocka_unit_test(test_merge_vhd),
	};
	int ret = cmocka_run_group_tests(tests, NULL, NULL);
	test_tmpdir_remove();
	free(expected);
	return ret;
}
