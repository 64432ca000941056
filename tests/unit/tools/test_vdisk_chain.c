/* vdisk chain, rebase and merge on VHD and VHDX chains. The test writes known data into
 * each layer and keeps what the chain must read in memory (the shadow), so every result is
 * judged against that model; identities and locators are checked against vhdiinfo
 * (libvhdi), base images against qemu-img (check, and convert to raw compared with cmp). */
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

#include "test_disk.h"
#include "test_util.h"
#include "vdisk.h"
#include "vhd.h"
#include "vhdx.h"

#define DISK_SIZE (16u << 20)
#define MiB	  (1u << 20)

struct vdisk *test_open_disks[TEST_MAX_OPEN_DISKS];
static const char *vdisk_bin;
static char out[65536];

#define assert_contains(haystack, needle)                                                          \
	do {                                                                                       \
		if (!strstr((haystack), (needle)))                                                 \
			fail_msg("expected \"%s\" in output:\n%s", (needle), (haystack));          \
	} while (0)

static int run(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static int run(const char *fmt, ...)
{
	char args[3000];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(args, sizeof(args), fmt, ap);
	va_end(ap);
	return test_run(out, sizeof(out), "'%s' %s", vdisk_bin, args);
}

static bool have(const char *tool)
{
	return test_run(NULL, 0, "command -v %s >/dev/null", tool) == 0;
}

/* ---- chains with known content ---- */

/* What the top of the chain must read. */
static uint8_t *shadow;

static struct vdisk *open_rw(const char *path)
{
	struct vdisk_options o = { .cache = VDISK_CACHE_WRITEBACK, .engine = VDISK_ENGINE_SYNC };
	struct vdisk *disk;
	char err[512];
	int ret = vdisk_open(path, &o, &disk, err, sizeof(err));
	if (ret < 0)
		fail_msg("cannot open %s: %s", path, err);
	assert_int_equal(test_track_disk(disk), 0);
	return disk;
}

static void write_pattern(struct vdisk *disk, uint64_t off, uint64_t len, uint32_t seed)
{
	uint8_t *buf = malloc(len);
	assert_non_null(buf);
	test_fill_pattern(buf, len, off, seed);
	assert_int_equal(vdisk_pwrite(disk, buf, len, off), 0);
	memcpy(shadow + off, buf, len);
	free(buf);
}

static void write_zeros(struct vdisk *disk, uint64_t off, uint64_t len)
{
	assert_int_equal(vdisk_write_zeroes_sync(disk, off, len), 0);
	memset(shadow + off, 0, len);
}

/* Layer 0 (the base) holds data in the first 6 MiB; each child overwrites pieces of it
 * (whole blocks, single sectors across block boundaries), writes zeros over it, and adds
 * data where nothing was. */
static void fill_layer(const char *path, unsigned layer)
{
	struct vdisk *disk = open_rw(path);
	uint32_t seed = 100 + layer;
	switch (layer) {
	case 0:
		write_pattern(disk, 0, 6 * MiB, seed);
		break;
	case 1:
		write_pattern(disk, 1 * MiB, 64 << 10, seed);
		write_pattern(disk, 4 * MiB - 512, 4096, seed);
		write_zeros(disk, 2 * MiB, 1 * MiB);
		write_pattern(disk, 10 * MiB, 1 * MiB, seed);
		break;
	default:
		write_pattern(disk, 1 * MiB + (32 << 10), 64 << 10, seed);
		write_pattern(disk, 12 * MiB + 512, 512, seed);
		write_zeros(disk, 0, 4096);
		write_pattern(disk, DISK_SIZE - 4096, 4096, seed);
		break;
	}
	assert_int_equal(vdisk_flush_sync(disk), 0);
	test_close_disk(disk);
}

/* names[0] is the base; names[depth] the top. */
static void make_chain(const char *fmt, unsigned depth, const char *const names[])
{
	memset(shadow, 0, DISK_SIZE);
	for (unsigned i = 0; i <= depth; i++) {
		unlink(names[i]);
		if (i == 0)
			assert_int_equal(run("create -f %s %s %s %u", fmt,
					     !strcmp(fmt, "vhdx") ? "--block-size 1M" : "",
					     names[0], DISK_SIZE),
					 0);
		else
			assert_int_equal(
				run("create -f %s --parent %s %s", fmt, names[i - 1], names[i]), 0);
		fill_layer(names[i], i);
	}
}

/* Reads the whole disk through the chain (opened with opts) and compares it with the
 * shadow. */
static void assert_reads_shadow_with(const char *path, const struct vdisk_options *opts)
{
	struct vdisk *disk;
	char err[512];
	int ret = vdisk_open(path, opts, &disk, err, sizeof(err));
	if (ret < 0)
		fail_msg("cannot open %s: %s", path, err);
	assert_int_equal(test_track_disk(disk), 0);
	assert_int_equal(vdisk_size(disk), DISK_SIZE);
	uint8_t *buf = malloc(DISK_SIZE);
	assert_non_null(buf);
	assert_int_equal(vdisk_pread(disk, buf, DISK_SIZE, 0), 0);
	test_close_disk(disk);
	for (uint64_t off = 0; off < DISK_SIZE; off += 512)
		if (memcmp(buf + off, shadow + off, 512))
			fail_msg("%s differs from the expected content at byte %llu", path,
				 (unsigned long long)off);
	free(buf);
}

static void assert_reads_shadow(const char *path)
{
	struct vdisk_options o = { .read_only = true,
				   .cache = VDISK_CACHE_WRITEBACK,
				   .engine = VDISK_ENGINE_SYNC };
	assert_reads_shadow_with(path, &o);
}

/* The "Identifier" / "Parent identifier" / "Parent filename" lines of vhdiinfo. */
static void vhdiinfo_field(const char *path, const char *field, char *value, size_t size)
{
	char info[8192];
	assert_int_equal(test_run(info, sizeof(info), "vhdiinfo '%s'", path), 0);
	char key[64];
	snprintf(key, sizeof(key), "\t%s\t", field);
	const char *p = strstr(info, key);
	if (!p)
		fail_msg("no %s in vhdiinfo output:\n%s", field, info);
	p = strchr(p, ':') + 2;
	size_t n = strcspn(p, "\n");
	snprintf(value, size, "%.*s", (int)n, p);
}

static const char *const vhd_names[] = { "base.vhd", "mid.vhd", "top.vhd" };
static const char *const vhdx_names[] = { "base.vhdx", "mid.vhdx", "top.vhdx" };

static void chain_paths(const char *const names[], const char *paths[3])
{
	for (int i = 0; i < 3; i++)
		paths[i] = strdup(test_path(names[i]));
}

static void free_paths(const char *paths[3])
{
	for (int i = 0; i < 3; i++)
		free((char *)paths[i]);
}

/* ---- chain ---- */

/* Identities and expectations as vhdiinfo reads them from the files. */
static void check_chain(const char *fmt, const char *const names[])
{
	const char *p[3];
	chain_paths(names, p);
	make_chain(fmt, 2, p);
	assert_reads_shadow(p[2]);
	assert_int_equal(run("chain %s", p[2]), 0);
	assert_contains(out, "[2] ");
	assert_contains(out, "identity matches");
	assert_int_equal(run("chain --json %s", p[2]), 0);
	assert_contains(out, "\"complete\": true");
	assert_contains(out, "\"consistent\": true");
	if (have("vhdiinfo")) {
		char id[80], parent_id[80];
		for (int i = 1; i <= 2; i++) {
			char want[200];
			vhdiinfo_field(p[i], "Identifier", id, sizeof(id));
			vhdiinfo_field(p[i], "Parent identifier", parent_id, sizeof(parent_id));
			snprintf(want, sizeof(want), "\"identity\": \"%s\"", id);
			assert_contains(out, want);
			snprintf(want, sizeof(want), "\"expected_identity\": \"%s\"", parent_id);
			assert_contains(out, want);
		}
		vhdiinfo_field(p[0], "Identifier", id, sizeof(id));
		assert_contains(out, id);
	}
	free_paths(p);
}

static void test_chain_vhd(void **state)
{
	(void)state;
	check_chain("vhd", vhd_names);
}

static void test_chain_vhdx(void **state)
{
	(void)state;
	check_chain("vhdx", vhdx_names);
}

/* A missing parent: the chain as far as it goes, the parent named with where it was
 * looked for, exit 2. A replaced parent: shown, exit 1. Not an image: exit 2. */
static void test_chain_broken(void **state)
{
	(void)state;
	const char *p[3];
	chain_paths(vhdx_names, p);
	make_chain("vhdx", 2, p);
	const char *moved = test_path("moved-base.vhdx");
	assert_int_equal(rename(p[0], moved), 0);
	assert_int_equal(run("chain %s", p[2]), 2);
	assert_contains(out, "[1] ");
	assert_contains(out, "(not found)");
	assert_contains(out, "parent image \"base.vhdx\" not found (tried");
	assert_int_equal(run("chain --json %s", p[2]), 2);
	assert_contains(out, "\"complete\": false");
	assert_contains(out, "not found");

	assert_int_equal(run("create -f vhdx %s %u", p[0], DISK_SIZE), 0); /* an impostor */
	assert_int_equal(run("chain %s", p[2]), 1);
	assert_contains(out, "IDENTITY DIFFERS");
	assert_int_equal(run("chain --json %s", p[2]), 1);
	assert_contains(out, "\"matches\": false");
	assert_contains(out, "\"consistent\": false");

	assert_int_equal(run("chain %s", test_path("nothing-here.vhdx")), 2);
	assert_contains(out, "no such file");
	assert_int_equal(run("chain"), 3);
	assert_int_equal(run("chain --bogus %s", p[2]), 3);
	assert_int_equal(run("chain --help"), 0);
	assert_contains(out, "Usage: vdisk chain");
	free_paths(p);
}

/* ---- rebase ---- */

/* The base moves to another directory under a long name (VHD locators must grow); rebase
 * records it, the child reads the same data, vhdiinfo names the new parent, check is
 * clean. */
static void check_rebase_moved(const char *fmt, const char *const names[])
{
	const char *p[3];
	char dir[512], moved[1024];
	chain_paths(names, p);
	make_chain(fmt, 1, p);
	snprintf(dir, sizeof(dir), "%s/%0200d", test_tmpdir(), 0);
	assert_int_equal(test_run(NULL, 0, "mkdir -p '%s'", dir), 0);
	snprintf(moved, sizeof(moved), "%s/moved-%0100d.%s", dir, 0, fmt);
	assert_int_equal(rename(p[0], moved), 0);
	assert_int_equal(run("info %s", p[1]), 2);
	assert_int_equal(run("rebase --json %s %s", p[1], moved), 0);
	assert_contains(out, "\"unsafe\": false");
	assert_reads_shadow(p[1]);
	assert_int_equal(run("check %s", p[1]), 0);
	assert_int_equal(run("chain %s", p[1]), 0);
	assert_contains(out, "identity matches");
	if (have("vhdiinfo")) {
		char name[2048];
		vhdiinfo_field(p[1], "Parent filename", name, sizeof(name));
		assert_non_null(strstr(name, "moved-"));
	}
	if (have("qemu-img") && !strcmp(fmt, "vhd")) {
		char q[4096];
		assert_int_equal(test_run(q, sizeof(q), "qemu-img info '%s'", p[1]), 0);
	}
	/* back next to the child, under its old name: the relative locator finds it */
	assert_int_equal(rename(moved, p[0]), 0);
	assert_int_equal(run("rebase %s %s", p[1], p[0]), 0);
	assert_reads_shadow(p[1]);
	assert_int_equal(run("check %s", p[1]), 0);
	free_paths(p);
}

static void test_rebase_vhd(void **state)
{
	(void)state;
	check_rebase_moved("vhd", vhd_names);
}

static void test_rebase_vhdx(void **state)
{
	(void)state;
	check_rebase_moved("vhdx", vhdx_names);
}

/* A parent that is not the one the child was made from is refused with both identities;
 * --unsafe records it and its identity. */
static void check_rebase_refusals(const char *fmt, const char *const names[])
{
	const char *p[3];
	chain_paths(names, p);
	make_chain(fmt, 1, p);
	const char *other = test_path(!strcmp(fmt, "vhd") ? "other.vhd" : "other.vhdx");
	unlink(other);
	assert_int_equal(run("create -f %s %s %u", fmt, other, DISK_SIZE), 0);
	char parent_id[80] = "", other_id[80] = "";
	if (have("vhdiinfo")) {
		vhdiinfo_field(p[1], "Parent identifier", parent_id, sizeof(parent_id));
		vhdiinfo_field(other, "Identifier", other_id, sizeof(other_id));
	}
	assert_int_equal(run("rebase %s %s", p[1], other), 2);
	assert_contains(out, "is not the image this one was made from");
	assert_contains(out, parent_id);
	assert_contains(out, other_id);
	assert_reads_shadow(p[1]); /* untouched */

	assert_int_equal(run("rebase %s %s", p[1], p[1]), 2);
	assert_contains(out, "its own parent");
	assert_int_equal(run("rebase %s %s", p[0], other), 2);
	assert_contains(out, "not a differencing image");
	assert_int_equal(run("rebase %s %s", test_path("no-child"), p[0]), 2);
	assert_contains(out, "no such file");
	assert_int_equal(run("rebase %s %s", p[1], test_path("no-parent")), 2);
	assert_contains(out, "no-parent");
	const char *raw = test_path("plain.raw");
	test_write_file(raw, DISK_SIZE, 1);
	assert_int_equal(run("rebase %s %s", p[1], raw), 2);
	assert_contains(out, "raw image");
	assert_int_equal(run("rebase %s", p[1]), 3);

	assert_int_equal(run("rebase --unsafe %s %s", p[1], other), 0);
	assert_int_equal(run("chain %s", p[1]), 0);
	assert_contains(out, "identity matches");
	if (have("vhdiinfo")) {
		vhdiinfo_field(p[1], "Parent identifier", parent_id, sizeof(parent_id));
		assert_string_equal(parent_id, other_id);
	}
	free_paths(p);
}

static void test_rebase_refusals_vhd(void **state)
{
	(void)state;
	check_rebase_refusals("vhd", vhd_names);
}

static void test_rebase_refusals_vhdx(void **state)
{
	(void)state;
	check_rebase_refusals("vhdx", vhdx_names);
}

static int teardown_test(void **state)
{
	(void)state;
	test_close_tracked();
	return 0;
}

static int teardown(void **state)
{
	(void)state;
	free(shadow);
	test_tmpdir_remove();
	return 0;
}

int main(void)
{
	vdisk_bin = getenv("VDISK");
	if (!vdisk_bin || access(vdisk_bin, X_OK) != 0) {
		fprintf(stderr, "VDISK must name the vdisk binary\n");
		return TEST_SKIP;
	}
	if (vhd_register() || vhdx_register())
		return 1;
	shadow = malloc(DISK_SIZE);
	if (!shadow)
		return 1;
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_teardown(test_chain_vhd, teardown_test),
		cmocka_unit_test_teardown(test_chain_vhdx, teardown_test),
		cmocka_unit_test_teardown(test_chain_broken, teardown_test),
		cmocka_unit_test_teardown(test_rebase_vhd, teardown_test),
		cmocka_unit_test_teardown(test_rebase_vhdx, teardown_test),
		cmocka_unit_test_teardown(test_rebase_refusals_vhd, teardown_test),
		cmocka_unit_test_teardown(test_rebase_refusals_vhdx, teardown_test),
	};
	return cmocka_run_group_tests(tests, NULL, teardown);
}
