/* The offline power-cut harness must tell a crash-safe operation from one that is not:
 * both update a page of data and a commit page that says the data is new; the safe one
 * makes the data durable before it writes the commit page, the unsafe one writes the commit
 * page first. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <string.h>

#include "crash_offline.h"
#include "file.h"
#include "test_util.h"

#define PAGE 4096

struct op {
	const char *path;
	bool safe;
};

static int write_page(struct vdisk_file *f, char fill, uint64_t offset)
{
	char buf[PAGE];
	memset(buf, fill, sizeof(buf));
	return vdisk_file_pwrite(f, buf, sizeof(buf), offset);
}

static int update(void *opaque)
{
	const struct op *op = opaque;
	struct vdisk_file *f;
	char err[256];
	int ret =
		vdisk_file_open(op->path, false, VDISK_CACHE_WRITEBACK, true, &f, err, sizeof(err));
	if (ret < 0)
		return ret;
	if (op->safe) {
		ret = write_page(f, 'N', 0);
		if (ret == 0)
			ret = vdisk_file_sync(f);
		if (ret == 0)
			ret = write_page(f, '1', PAGE);
	} else {
		ret = write_page(f, '1', PAGE);
		if (ret == 0)
			ret = write_page(f, 'N', 0);
	}
	if (ret == 0)
		ret = vdisk_file_sync(f);
	vdisk_file_close(f);
	return ret;
}

/* Committed means new data; the finished operation must be committed. */
static int check(void *opaque, const char *const *paths, uint64_t cut, uint64_t end, char *why,
		 size_t why_size)
{
	(void)opaque;
	char buf[2 * PAGE];
	FILE *f = fopen(paths[0], "rb");
	size_t n = f ? fread(buf, 1, sizeof(buf), f) : 0;
	if (f)
		fclose(f);
	if (n != sizeof(buf)) {
		snprintf(why, why_size, "the file lost its size");
		return -1;
	}
	bool committed = buf[PAGE] == '1', new_data = buf[0] == 'N';
	if (committed && !new_data) {
		snprintf(why, why_size, "committed, but the data is old");
		return -1;
	}
	if (cut == end && !committed) {
		snprintf(why, why_size, "the finished operation is not committed");
		return -1;
	}
	return 0;
}

static unsigned run_case(bool safe)
{
	const char *path = test_path(safe ? "safe" : "unsafe");
	FILE *f = fopen(path, "wb");
	assert_non_null(f);
	char buf[2 * PAGE];
	memset(buf, 'O', PAGE);
	memset(buf + PAGE, '0', PAGE);
	assert_int_equal(fwrite(buf, 1, sizeof(buf), f), sizeof(buf));
	fclose(f);
	struct op op = { path, safe };
	const char *paths[] = { path };
	struct crash_offline c = { .name = safe ? "safe" : "unsafe",
				   .paths = paths,
				   .npaths = 1,
				   .run = update,
				   .check = check,
				   .opaque = &op };
	return crash_offline_run(&c, 200, test_tmpdir());
}

static void test_safe_operation_passes(void **state)
{
	(void)state;
	assert_int_equal(run_case(true), 0);
}

static void test_unsafe_operation_fails(void **state)
{
	(void)state;
	unsigned failed = run_case(false);
	assert_true(failed > 0 && failed != UINT32_MAX);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_safe_operation_passes),
		cmocka_unit_test(test_unsafe_operation_fails),
	};
	int ret = cmocka_run_group_tests(tests, NULL, NULL);
	test_tmpdir_remove();
	return ret;
}
