/* vdisk resize for raw, VHD and VHDX (fixed, dynamic, differencing): growing, shrinking,
 * BAT relocation, refusals. Results are judged by qemu-img (info, compare against a raw
 * copy resized with truncate, check), vhdiinfo and vdisk check; differencing images, which
 * QEMU cannot write, are read back through the library against a shadow copy. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <inttypes.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <unistd.h>

#include "test_disk.h"
#include "test_cli.h"
#include "test_util.h"
#include "vdisk.h"
#include "vhd.h"
#include "vhdx.h"

#define MiB (UINT64_C(1) << 20)
#define GiB (UINT64_C(1) << 30)

struct vdisk *test_open_disks[TEST_MAX_OPEN_DISKS];

static const char *vdisk;
static char out[65536];

static int run(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static int run(const char *fmt, ...)
{
	char args[3000];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(args, sizeof(args), fmt, ap);
	va_end(ap);
	return test_run(out, sizeof(out), "'%s' %s", vdisk, args);
}

static struct vdisk *open_disk(const char *path, bool read_only)
{
	struct vdisk_options o = { .read_only = read_only, .cache = VDISK_CACHE_WRITEBACK };
	struct vdisk *d;
	char err[256];
	int ret = vdisk_open(path, &o, &d, err, sizeof(err));
	if (ret < 0)
		fail_msg("cannot open %s: %s", path, err);
	assert_int_equal(test_track_disk(d), 0);
	return d;
}

/* Writes len bytes of pattern seed at offset of the image. */
static void write_pattern(const char *path, uint64_t offset, uint64_t len, uint32_t seed)
{
	struct vdisk *d = open_disk(path, false);
	uint8_t *buf = malloc(len);
	assert_non_null(buf);
	test_fill_pattern(buf, len, offset, seed);
	assert_int_equal(vdisk_pwrite(d, buf, len, offset), 0);
	assert_int_equal(vdisk_flush_sync(d), 0);
	free(buf);
	test_close_disk(d);
}

/* The image reads like the raw file ref (whole, at the same size). */
static void assert_reads_like(const char *path, const char *ref)
{
	struct vdisk *d = open_disk(path, true);
	FILE *f = fopen(ref, "rb");
	assert_non_null(f);
	fseek(f, 0, SEEK_END);
	assert_int_equal(vdisk_size(d), (uint64_t)ftell(f));
	enum { CHUNK = 1 << 20 };
	uint8_t *a = malloc(CHUNK), *b = malloc(CHUNK);
	assert_true(a && b);
	for (uint64_t pos = 0; pos < vdisk_size(d); pos += CHUNK) {
		size_t n = vdisk_size(d) - pos < CHUNK ? vdisk_size(d) - pos : CHUNK;
		assert_int_equal(vdisk_pread(d, a, n, pos), 0);
		fseek(f, (long)pos, SEEK_SET);
		assert_int_equal(fread(b, 1, n, f), n);
		if (memcmp(a, b, n))
			fail_msg("%s differs from %s in the MiB at %" PRIu64, path, ref, pos);
	}
	free(a);
	free(b);
	fclose(f);
	test_close_disk(d);
}

static const char *qemu_fmt(const char *format, const char *type)
{
	if (!strcmp(format, "vhd"))
		return "vpc";
	(void)type;
	return format;
}

/* QEMU reads count MiB at MiB first of the image like the raw file ref. */
static void assert_qemu_reads(const char *path, const char *q, const char *ref, uint64_t first,
			      uint64_t count)
{
	const char *a = test_path("qemu.part"), *b = test_path("ref.part");
	/* qemu-img dd counts the skipped blocks in count */
	assert_int_equal(test_run(out, sizeof(out),
				  "rm -f '%s' && qemu-img dd -f %s -O raw bs=1M skip=%" PRIu64
				  " count=%" PRIu64 " if='%s' of='%s' && dd if='%s' of='%s' bs=1M "
				  "skip=%" PRIu64 " count=%" PRIu64 " status=none",
				  a, q, first, first + count, path, a, ref, b, first, count),
			 0);
	if (test_run(out, sizeof(out), "cmp '%s' '%s'", a, b) != 0)
		fail_msg("QEMU reads %s differently from %s: %s", path, ref, out);
}

/* QEMU's compare walks a large sparse VHDX slowly: large images are compared at their
 * start and their end. */
static void assert_qemu_content(const char *path, const char *q, const char *ref, uint64_t size)
{
	if (size <= GiB) {
		if (test_run(out, sizeof(out), "qemu-img compare -q -f %s -F raw '%s' '%s'", q,
			     path, ref) != 0)
			fail_msg("qemu-img compare %s %s: %s", path, ref, out);
		return;
	}
	assert_qemu_reads(path, q, ref, 0, 16);
	assert_qemu_reads(path, q, ref, size / MiB - 1, 1);
}

/* vdisk check finds nothing, or (leaks_ok: after shrinking a VHDX, whose released space
 * waits for compact) only leaks. */
static void assert_vdisk_check(const char *path, bool leaks_ok)
{
	int rc = run("check '%s'", path);
	if (rc == 0 || (leaks_ok && rc == 1 && strstr(out, " 0 error(s)")))
		return;
	fail_msg("vdisk check %s: %s", path, out);
}

/* Oracles for an image QEMU can read: its virtual size, its content (against a raw copy
 * truncated the same way), its check, ours. */
static void assert_image(const char *path, const char *format, const char *type, const char *ref,
			 uint64_t size, bool leaks_ok)
{
	char want[64];
	snprintf(want, sizeof(want), "(%" PRIu64 " bytes)", size);
	if (test_have("qemu-img")) {
		const char *q = qemu_fmt(format, type);
		assert_int_equal(test_run(out, sizeof(out), "qemu-img info -f %s '%s'", q, path),
				 0);
		assert_contains(out, want);
		assert_qemu_content(path, q, ref, size);
		if (!strcmp(format, "vhdx") &&
		    test_run(out, sizeof(out), "qemu-img check -f vhdx '%s'", path) != 0)
			fail_msg("qemu-img check %s: %s", path, out);
	} else {
		assert_reads_like(path, ref);
	}
	if (strcmp(format, "raw") && strcmp(type, "fixed") && test_have("vhdiinfo")) {
		assert_int_equal(test_run(out, sizeof(out), "vhdiinfo '%s'", path), 0);
		assert_contains(out, want);
	}
	assert_vdisk_check(path, leaks_ok);
}

static void truncate_ref(const char *ref, uint64_t size)
{
	assert_int_equal(truncate(ref, (off_t)size), 0);
}

/* A raw copy of what the image reads now. */
static void snapshot(const char *path, const char *ref)
{
	struct vdisk *d = open_disk(path, true);
	uint64_t size = vdisk_size(d);
	uint8_t *buf = malloc(MiB);
	FILE *f = fopen(ref, "wb");
	assert_true(buf && f);
	for (uint64_t pos = 0; pos < size; pos += MiB) {
		size_t n = size - pos < MiB ? size - pos : MiB;
		assert_int_equal(vdisk_pread(d, buf, n, pos), 0);
		assert_int_equal(fwrite(buf, 1, n, f), n);
	}
	fclose(f);
	free(buf);
	test_close_disk(d);
}

struct kind {
	const char *format, *type, *block;
};

static const struct kind kinds[] = {
	{ "raw", "fixed", NULL },  { "vhd", "fixed", NULL },	{ "vhd", "dynamic", "512K" },
	{ "vhdx", "fixed", NULL }, { "vhdx", "dynamic", "1M" },
};

static void create(const struct kind *k, const char *path, const char *size)
{
	char bs[32] = "";
	if (k->block)
		snprintf(bs, sizeof(bs), "-b %s", k->block);
	if (run("create --force -f %s -t %s %s '%s' %s", k->format, k->type, bs, path, size))
		fail_msg("create: %s", out);
}

/* Grow (relative), shrink refused, shrink forced, grow back: content below the smaller
 * size unchanged, the new part zeros. */
static void test_grow_and_shrink(void **state)
{
	(void)state;
	for (size_t i = 0; i < sizeof(kinds) / sizeof(kinds[0]); i++) {
		const struct kind *k = &kinds[i];
		char name[64];
		snprintf(name, sizeof(name), "gs-%s-%s.img", k->format, k->type);
		const char *img = test_path(name), *ref = test_path("gs.ref");
		create(k, img, "8M");
		write_pattern(img, 0, MiB, 1);
		write_pattern(img, 7 * MiB + 4096, 512 * 1024, 2);
		snapshot(img, ref);

		assert_int_equal(run("resize '%s' +24M", img), 0);
		assert_contains(out, "to 32 MiB (33554432 bytes)");
		truncate_ref(ref, 32 * MiB);
		assert_image(img, k->format, k->type, ref, 32 * MiB, false);

		assert_int_equal(run("resize '%s' 7M", img), 2);
		assert_contains(out, "offset 7344128");
		assert_contains(out, "--force");
		assert_image(img, k->format, k->type, ref, 32 * MiB, false);

		assert_int_equal(run("resize --force --json '%s' -25M", img), 0);
		assert_contains(out, "\"old_size\": 33554432");
		assert_contains(out, "\"new_size\": 7340032");
		truncate_ref(ref, 7 * MiB);
		bool vhdx = !strcmp(k->format, "vhdx");
		assert_image(img, k->format, k->type, ref, 7 * MiB, vhdx);

		/* the data cut off must not come back */
		assert_int_equal(run("resize '%s' 9M", img), 0);
		truncate_ref(ref, 9 * MiB);
		assert_image(img, k->format, k->type, ref, 9 * MiB, vhdx);
	}
}

/* A BAT made for a small disk is full: growing a lot needs a new one. */
static void test_bat_relocation(void **state)
{
	(void)state;
	static const struct kind sparse[] = { { "vhd", "dynamic", "512K" },
					      { "vhdx", "dynamic", "1M" } };
	for (size_t i = 0; i < 2; i++) {
		const struct kind *k = &sparse[i];
		const char *img = test_path(k->format), *ref = test_path("reloc.ref");
		create(k, img, "8M");
		write_pattern(img, 3 * MiB, 2 * MiB, 3);
		snapshot(img, ref);
		uint64_t size = 300 * GiB;
		assert_int_equal(run("resize '%s' 300G", img), 0);
		truncate_ref(ref, size);
		assert_image(img, k->format, k->type, ref, size, false);
		/* the grown image takes writes anywhere: blocks go after the new BAT */
		write_pattern(img, size - MiB, MiB, 4);
		write_pattern(img, 9 * MiB, MiB, 5);
		struct vdisk *d = open_disk(img, true);
		uint8_t *buf = malloc(MiB), *want = malloc(MiB);
		assert_true(buf && want);
		assert_int_equal(vdisk_pread(d, buf, MiB, size - MiB), 0);
		test_fill_pattern(want, MiB, size - MiB, 4);
		assert_memory_equal(buf, want, MiB);
		assert_int_equal(vdisk_pread(d, buf, MiB, 3 * MiB), 0);
		test_fill_pattern(want, MiB, 3 * MiB, 3);
		assert_memory_equal(buf, want, MiB);
		free(buf);
		free(want);
		test_close_disk(d);
		if (run("check '%s'", img) != 0)
			fail_msg("vdisk check %s: %s", img, out);
		if (!strcmp(k->format, "vhdx") && test_have("qemu-img"))
			assert_int_equal(test_run(out, sizeof(out), "qemu-img check '%s'", img), 0);
	}
}

/* Differencing images: the parent stays as it was; the child's new part reads as zeros,
 * also where a parent larger than the child would show through. */
static void test_differencing(void **state)
{
	(void)state;
	static const char *const formats[] = { "vhd", "vhdx" };
	for (size_t i = 0; i < 2; i++) {
		char pname[32], cname[32];
		snprintf(pname, sizeof(pname), "parent.%s", formats[i]);
		snprintf(cname, sizeof(cname), "child.%s", formats[i]);
		const char *parent = test_path(pname), *child = test_path(cname);
		const char *ref = test_path("diff.ref"), *pref = test_path("parent.ref");
		assert_int_equal(run("create --force -f %s '%s' 8M", formats[i], parent), 0);
		write_pattern(parent, 0, 8 * MiB, 6);
		snapshot(parent, pref);
		assert_int_equal(
			run("create --force -f %s -p '%s' '%s'", formats[i], parent, child), 0);
		write_pattern(child, MiB, MiB, 7);
		snapshot(child, ref);

		assert_int_equal(run("resize '%s' 1G", child), 0);
		truncate_ref(ref, GiB);
		assert_reads_like(child, ref);
		assert_int_equal(run("check '%s'", child), 0);
		if (!strcmp(formats[i], "vhdx") && test_have("vhdiinfo")) {
			assert_int_equal(test_run(out, sizeof(out), "vhdiinfo '%s'", child), 0);
			assert_contains(out, "(1073741824 bytes)");
		}
		/* shrink below the parent, grow back: the parent must not show through */
		assert_int_equal(run("resize --force '%s' 4M", child), 0);
		assert_int_equal(run("resize '%s' 8M", child), 0);
		truncate_ref(ref, 4 * MiB);
		truncate_ref(ref, 8 * MiB);
		assert_reads_like(child, ref);
		assert_int_equal(run("check '%s'", child), 0);
		assert_reads_like(parent, pref);
	}
}

static void test_bad_sizes(void **state)
{
	(void)state;
	const char *vhd = test_path("bad.vhd"), *vhdx = test_path("bad.vhdx");
	assert_int_equal(run("create --force -f vhd '%s' 8M", vhd), 0);
	assert_int_equal(run("create --force -f vhdx '%s' 8M", vhdx), 0);
	assert_int_equal(run("resize '%s' 0", vhd), 3);
	assert_int_equal(run("resize '%s' 1000", vhd), 3);
	assert_contains(out, "multiple of the 512-byte sector");
	assert_int_equal(run("resize '%s' 2041G", vhd), 3);
	assert_contains(out, "2040 GiB");
	assert_int_equal(run("resize '%s' 65T", vhdx), 3);
	assert_contains(out, "64 TiB");
	assert_int_equal(run("resize '%s' -8M", vhd), 3);
	assert_int_equal(run("resize '%s' ten", vhd), 3);
	assert_int_equal(run("resize '%s'", vhd), 3);
	assert_int_equal(run("resize --bogus '%s' 9M", vhd), 3);
	/* nothing changed */
	assert_int_equal(run("info --json '%s'", vhd), 0);
	assert_contains(out, "\"virtual_size\": 8388608");
	assert_int_equal(run("check '%s'", vhdx), 0);
}

static void test_help(void **state)
{
	(void)state;
	assert_int_equal(run("resize --help"), 0);
	assert_contains(out, "Usage: vdisk resize");
	assert_contains(out, "Shrink the partitions and file systems");
	assert_contains(out, "--force");
	assert_contains(out, "+1G");
}

/* Another open of the image (a running VM) holds its lock: resize refuses. */
static void test_locked(void **state)
{
	(void)state;
	const char *img = test_path("locked.vhdx");
	assert_int_equal(run("create --force -f vhdx '%s' 8M", img), 0);
	struct vdisk *d = open_disk(img, false);
	assert_int_equal(run("resize '%s' 16M", img), 2);
	assert_contains(out, "in use");
	test_close_disk(d);
	assert_int_equal(run("info --json '%s'", img), 0);
	assert_contains(out, "\"virtual_size\": 8388608");
}

/* A VM grows a dynamic VHDX it is writing (block-resize): the file was extended ahead of
 * the blocks in use (allocation does that in steps), and that reserve must not become
 * space nothing uses: after the close the image checks clean and ends where its data ends,
 * and the data written before and after the resize reads back through qemu-img. */
static void test_vhdx_grow_while_written(void **state)
{
	(void)state;
	const char *img = test_path("online.vhdx");
	assert_int_equal(run("create --force -f vhdx '%s' 256M", img), 0);
	struct vdisk *d = open_disk(img, false);
	uint8_t a[4096], b[4096];
	memset(a, 0xA1, sizeof(a));
	memset(b, 0xB2, sizeof(b));
	assert_int_equal(vdisk_pwrite(d, a, sizeof(a), 0), 0);
	char err[256];
	assert_int_equal(vdisk_resize(d, 320 * MiB, 0, NULL, err, sizeof(err)), 0);
	assert_int_equal(vdisk_pwrite(d, b, sizeof(b), 300 * MiB), 0);
	test_close_disk(d);
	if (run("check '%s'", img) != 0)
		fail_msg("vdisk check after an online grow: %s", out);
	assert_int_equal(run("info --json '%s'", img), 0);
	assert_contains(out, "\"virtual_size\": 335544320");
	struct stat st;
	assert_int_equal(stat(img, &st), 0);
	assert_true((uint64_t)st.st_size < 64 * MiB + 2 * 32 * MiB); /* two blocks, metadata */
	char cmd[1024];
	snprintf(cmd, sizeof(cmd),
		 "qemu-io -f vhdx -c 'read -P 0xA1 0 4k' -c 'read -P 0xB2 300M 4k' '%s'", img);
	if (test_run(out, sizeof(out), "%s", cmd) != 0 || strstr(out, "fail"))
		fail_msg("qemu-io: %s", out);
}

/* Read-only opens and read-only file systems: refused with a clear error. */
static void test_read_only(void **state)
{
	(void)state;
	const char *img = test_path("ro.vhd");
	assert_int_equal(run("create --force -f vhd '%s' 8M", img), 0);
	struct vdisk *d = open_disk(img, true);
	char err[256];
	assert_int_equal(vdisk_resize(d, 16 * MiB, 0, NULL, err, sizeof(err)), -EROFS);
	assert_contains(err, "read-only");
	test_close_disk(d);

	char mp[4096];
	snprintf(mp, sizeof(mp), "%s/ro-mount", test_tmpdir());
	mkdir(mp, 0755);
	if (mount("tmpfs", mp, "tmpfs", 0, "size=16M") != 0) {
		print_message("no tmpfs mount (%s): read-only file system case skipped\n",
			      strerror(errno));
		rmdir(mp);
		return;
	}
	char ro_img[4200];
	snprintf(ro_img, sizeof(ro_img), "%s/a.vhdx", mp);
	int created = run("create -f vhdx '%s' 8M", ro_img);
	int remounted = mount(NULL, mp, NULL, MS_REMOUNT | MS_RDONLY, NULL);
	int rc = run("resize '%s' 16M", ro_img);
	umount2(mp, MNT_DETACH);
	rmdir(mp);
	assert_int_equal(created, 0);
	assert_int_equal(remounted, 0);
	assert_int_equal(rc, 2);
	assert_contains(out, "read-only");
}

static int teardown(void **state)
{
	(void)state;
	test_close_tracked();
	return 0;
}

int main(void)
{
	vdisk = test_vdisk_binary();
	if (!vdisk)
		return TEST_SKIP;
	vhd_register();
	vhdx_register();
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_teardown(test_help, teardown),
		cmocka_unit_test_teardown(test_grow_and_shrink, teardown),
		cmocka_unit_test_teardown(test_bat_relocation, teardown),
		cmocka_unit_test_teardown(test_differencing, teardown),
		cmocka_unit_test_teardown(test_bad_sizes, teardown),
		cmocka_unit_test_teardown(test_locked, teardown),
		cmocka_unit_test_teardown(test_read_only, teardown),
		cmocka_unit_test_teardown(test_vhdx_grow_while_written, teardown),
	};
	int ret = cmocka_run_group_tests(tests, NULL, NULL);
	test_tmpdir_remove();
	return ret;
}
