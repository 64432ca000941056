/* Power cuts during a VHDX resize (crash_offline.h): growing far enough that the BAT moves
 * to a larger region, growing a fixed image (new blocks through the log), and shrinking.
 * Every cut must leave an image that opens (replaying its log), that vdisk check finds
 * without errors (space leaked by the cut is allowed), whose size is the old or the new
 * one (the new one once the resize finished), and whose content below the smaller of the
 * two is what it was. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <inttypes.h>
#include <jansson.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "crash_offline.h"
#include "test_util.h"
#include "vdisk.h"
#include "vhdx.h"

#define MiB (UINT64_C(1) << 20)
#define GiB (UINT64_C(1) << 30)

struct resize_case {
	const char *name;
	const char *type;    /* "dynamic" or "fixed" */
	uint32_t block_size; /* 0: the default */
	uint64_t old_size, new_size;
	const char *path;
	uint8_t *shadow; /* the first min(old, new) bytes */
};

static uint64_t min_size(const struct resize_case *rc)
{
	return rc->old_size < rc->new_size ? rc->old_size : rc->new_size;
}

static int open_image(const char *path, bool read_only, struct vdisk **d, char *err,
		      size_t err_size)
{
	struct vdisk_options o = { .read_only = read_only,
				   .cache = VDISK_CACHE_WRITEBACK,
				   .engine = VDISK_ENGINE_SYNC };
	return vdisk_open(path, &o, d, err, err_size);
}

static int run_resize(void *opaque)
{
	struct resize_case *rc = opaque;
	struct vdisk *d;
	char err[256];
	int ret = open_image(rc->path, false, &d, err, sizeof(err));
	if (ret < 0) {
		fprintf(stderr, "%s: %s\n", rc->path, err);
		return ret;
	}
	ret = vdisk_resize(d, rc->new_size, VDISK_RESIZE_FORCE, NULL, err, sizeof(err));
	if (ret < 0)
		fprintf(stderr, "%s: resize: %s\n", rc->path, err);
	vdisk_close(d);
	return ret;
}

/* Opened read-write (a dirty log is replayed), at the old or the new size, content kept. */
static int check_content(const struct resize_case *rc, const char *path, bool finished, char *why,
			 size_t why_size)
{
	struct vdisk *d;
	char err[256];
	if (open_image(path, false, &d, err, sizeof(err)) < 0) {
		snprintf(why, why_size, "does not open: %s", err);
		return -1;
	}
	uint64_t size = vdisk_size(d);
	int ret = 0;
	uint8_t *buf = malloc(min_size(rc));
	if (size != rc->new_size && (finished || size != rc->old_size)) {
		snprintf(why, why_size, "size %" PRIu64 " is neither the old nor the new one",
			 size);
		ret = -1;
	} else if (!buf || vdisk_pread(d, buf, min_size(rc), 0) < 0) {
		snprintf(why, why_size, "cannot read the disk");
		ret = -1;
	} else if (memcmp(buf, rc->shadow, min_size(rc))) {
		snprintf(why, why_size, "the content below %" PRIu64 " changed", min_size(rc));
		ret = -1;
	}
	free(buf);
	vdisk_close(d);
	return ret;
}

static int check_clean(const char *path, char *why, size_t why_size)
{
	struct vdisk *d;
	char err[256];
	if (open_image(path, true, &d, err, sizeof(err)) < 0) {
		snprintf(why, why_size, "does not open read-only after replay: %s", err);
		return -1;
	}
	struct vdisk_check_result r;
	int ret = vdisk_check(d, 0, &r);
	if (ret == 0 && r.errors) {
		const char *first = json_string_value(
			json_object_get(json_array_get(r.findings, 0), "message"));
		for (size_t i = 0; i < json_array_size(r.findings); i++) {
			json_t *f = json_array_get(r.findings, i);
			if (!strcmp(json_string_value(json_object_get(f, "severity")), "error")) {
				first = json_string_value(json_object_get(f, "message"));
				break;
			}
		}
		snprintf(why, why_size, "check: %u error(s): %s", r.errors, first ? first : "");
		ret = -1;
	} else if (ret < 0) {
		snprintf(why, why_size, "check failed: %s", strerror(-ret));
	}
	json_decref(r.findings);
	vdisk_close(d);
	return ret;
}

static int check_cut(void *opaque, const char *const *paths, uint64_t cut, uint64_t end, char *why,
		     size_t why_size)
{
	const struct resize_case *rc = opaque;
	if (check_content(rc, paths[0], cut == end, why, why_size) < 0)
		return -1;
	return check_clean(paths[0], why, why_size);
}

/* The image before the resize: data in most blocks, the last one partly. */
static void make_image(struct resize_case *rc)
{
	char err[256];
	struct vdisk_create_options co = { .format = "vhdx",
					   .size = rc->old_size,
					   .type = rc->type,
					   .block_size = rc->block_size,
					   .overwrite = true };
	assert_int_equal(vdisk_create(rc->path, &co, err, sizeof(err)), 0);
	struct vdisk *d;
	assert_int_equal(open_image(rc->path, false, &d, err, sizeof(err)), 0);
	uint8_t *data = malloc(rc->old_size);
	assert_non_null(data);
	test_fill_pattern(data, rc->old_size, 0, 11);
	memset(data + MiB, 0, MiB); /* one block left unallocated */
	assert_int_equal(vdisk_pwrite(d, data, MiB, 0), 0);
	assert_int_equal(vdisk_pwrite(d, data + 2 * MiB, rc->old_size - 2 * MiB, 2 * MiB), 0);
	assert_int_equal(vdisk_flush_sync(d), 0);
	vdisk_close(d);
	rc->shadow = data;
}

static void run_case(struct resize_case *rc, unsigned cuts)
{
	rc->path = test_path(rc->name);
	make_image(rc);
	const char *paths[] = { rc->path };
	struct crash_offline c = { .name = rc->name,
				   .paths = paths,
				   .npaths = 1,
				   .run = run_resize,
				   .check = check_cut,
				   .opaque = rc };
	unsigned failed = crash_offline_run(&c, cuts, test_tmpdir());
	free(rc->shadow);
	assert_int_equal(failed, 0);
}

/* 1 MiB blocks: the BAT region made for 8 MiB holds 128 GiB. */
static void test_grow_moves_bat(void **state)
{
	(void)state;
	struct resize_case rc = { .name = "grow-bat.vhdx",
				  .type = "dynamic",
				  .block_size = 1u << 20,
				  .old_size = 8 * MiB,
				  .new_size = 200 * GiB };
	run_case(&rc, 150);
}

static void test_grow_fixed(void **state)
{
	(void)state;
	struct resize_case rc = { .name = "grow-fixed.vhdx",
				  .type = "fixed",
				  .block_size = 1u << 20,
				  .old_size = 6 * MiB + 512 * 1024,
				  .new_size = 24 * MiB };
	run_case(&rc, 150);
}

static void test_shrink(void **state)
{
	(void)state;
	struct resize_case rc = { .name = "shrink.vhdx",
				  .type = "dynamic",
				  .block_size = 1u << 20,
				  .old_size = 12 * MiB,
				  .new_size = 5 * MiB + 512 * 1024 };
	run_case(&rc, 150);
}

int main(void)
{
	vhdx_register();
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_grow_moves_bat),
		cmocka_unit_test(test_grow_fixed),
		cmocka_unit_test(test_shrink),
	};
	int ret = cmocka_run_group_tests(tests, NULL, NULL);
	test_tmpdir_remove();
	return ret;
}
