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
#include "test_cli.h"
#include "test_util.h"
#include "vdisk.h"
#include "vhd.h"
#include "vhdx.h"

#define DISK_SIZE (16u << 20)
#define MiB	  (1u << 20)

struct vdisk *test_open_disks[TEST_MAX_OPEN_DISKS];
static const char *vdisk_bin;
static char out[65536];

/* A command's exit code, with its output when it is not the one expected. */
#define assert_exit(call, code)                                                                    \
	do {                                                                                       \
		int exit_ = (call);                                                                \
		if (exit_ != (code))                                                               \
			fail_msg("exit code %d, expected %d; output:\n%s", exit_, (code), out);    \
	} while (0)

#define run(...) test_run_vdisk(out, sizeof(out), __VA_ARGS__)

static bool exists(const char *path)
{
	return access(path, F_OK) == 0;
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
		write_pattern(disk, 1 * MiB + (32 << 10) * (layer - 1), 64 << 10, seed);
		write_pattern(disk, 12 * MiB + 512 * (layer - 1), 512, seed);
		write_zeros(disk, 0, 4096 * (layer - 1));
		write_zeros(disk, 10 * MiB + 4096 * layer, 8192);
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
			assert_exit(run("create -f %s %s %s %u", fmt,
					!strcmp(fmt, "vhdx") ? "--block-size 1M" : "", names[0],
					DISK_SIZE),
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

/* A base image as QEMU reads it equals the shadow (converted to raw, compared by cmp). */
static void assert_qemu_reads_shadow(const char *path)
{
	if (!test_have("qemu-img"))
		return;
	const char *raw = test_path("qemu-view.raw");
	const char *want = test_path("expected.raw");
	FILE *f = fopen(want, "wb");
	assert_non_null(f);
	assert_int_equal(fwrite(shadow, 1, DISK_SIZE, f), DISK_SIZE);
	fclose(f);
	assert_exit(test_run(out, sizeof(out), "qemu-img convert -O raw '%s' '%s'", path, raw), 0);
	assert_exit(test_run(out, sizeof(out), "cmp '%s' '%s'", raw, want), 0);
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

#define LAYERS 4 /* a base and up to three differencing images */

/* Paths of the chain's images: base, mid, top, top2 (malloc'd). */
static void chain_paths(const char *fmt, const char *paths[LAYERS])
{
	static const char *const names[LAYERS] = { "base", "mid", "top", "top2" };
	for (int i = 0; i < LAYERS; i++) {
		char name[32];
		snprintf(name, sizeof(name), "%s.%s", names[i], fmt);
		paths[i] = strdup(test_path(name));
	}
}

static void free_paths(const char *paths[LAYERS])
{
	for (int i = 0; i < LAYERS; i++)
		free((char *)paths[i]);
}

/* ---- chain ---- */

/* Identities and expectations as vhdiinfo reads them from the files. */
static void check_chain(const char *fmt)
{
	const char *p[LAYERS];
	chain_paths(fmt, p);
	make_chain(fmt, 2, p);
	assert_reads_shadow(p[2]);
	assert_exit(run("chain %s", p[2]), 0);
	assert_contains(out, "[2] ");
	assert_contains(out, "identity matches");
	assert_exit(run("chain --json %s", p[2]), 0);
	assert_contains(out, "\"complete\": true");
	assert_contains(out, "\"consistent\": true");
	if (test_have("vhdiinfo")) {
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
	check_chain("vhd");
}

static void test_chain_vhdx(void **state)
{
	(void)state;
	check_chain("vhdx");
}

/* A missing parent: the chain as far as it goes, the parent named with where it was
 * looked for, exit 2. A replaced parent: shown, exit 1. Not an image: exit 2. */
static void test_chain_broken(void **state)
{
	(void)state;
	const char *p[LAYERS];
	chain_paths("vhdx", p);
	make_chain("vhdx", 2, p);
	const char *moved = test_path("moved-base.vhdx");
	assert_int_equal(rename(p[0], moved), 0);
	assert_exit(run("chain %s", p[2]), 2);
	assert_contains(out, "[1] ");
	assert_contains(out, "(not found)");
	assert_contains(out, "parent image \"base.vhdx\" not found (tried");
	assert_exit(run("chain --json %s", p[2]), 2);
	assert_contains(out, "\"complete\": false");
	assert_contains(out, "not found");

	assert_exit(run("create -f vhdx %s %u", p[0], DISK_SIZE), 0); /* an impostor */
	assert_exit(run("chain %s", p[2]), 1);
	assert_contains(out, "IDENTITY DIFFERS");
	assert_exit(run("chain --json %s", p[2]), 1);
	assert_contains(out, "\"matches\": false");
	assert_contains(out, "\"consistent\": false");

	assert_exit(run("chain %s", test_path("nothing-here.vhdx")), 2);
	assert_contains(out, "no such file");
	assert_exit(run("chain"), 3);
	assert_exit(run("chain --bogus %s", p[2]), 3);
	assert_exit(run("chain --help"), 0);
	assert_contains(out, "Usage: vdisk chain");
	free_paths(p);
}

/* ---- rebase ---- */

/* The base moves to another directory under a long name (VHD locators must grow); rebase
 * records it, the child reads the same data, vhdiinfo names the new parent, check is
 * clean. */
static void check_rebase_moved(const char *fmt)
{
	const char *p[LAYERS];
	char dir[512], moved[1024];
	chain_paths(fmt, p);
	make_chain(fmt, 1, p);
	snprintf(dir, sizeof(dir), "%s/%0200d", test_tmpdir(), 0);
	assert_int_equal(test_run(NULL, 0, "mkdir -p '%s'", dir), 0);
	snprintf(moved, sizeof(moved), "%s/moved-%0100d.%s", dir, 0, fmt);
	assert_int_equal(rename(p[0], moved), 0);
	assert_exit(run("info %s", p[1]), 2);
	assert_exit(run("rebase --json %s %s", p[1], moved), 0);
	assert_contains(out, "\"unsafe\": false");
	assert_reads_shadow(p[1]);
	assert_exit(run("check %s", p[1]), 0);
	assert_exit(run("chain %s", p[1]), 0);
	assert_contains(out, "identity matches");
	if (test_have("vhdiinfo")) {
		char name[2048];
		vhdiinfo_field(p[1], "Parent filename", name, sizeof(name));
		assert_non_null(strstr(name, "moved-"));
	}
	if (test_have("qemu-img") && !strcmp(fmt, "vhd")) {
		char q[4096];
		assert_int_equal(test_run(q, sizeof(q), "qemu-img info '%s'", p[1]), 0);
	}
	/* back next to the child, under its old name: the relative locator finds it */
	assert_int_equal(rename(moved, p[0]), 0);
	assert_exit(run("rebase %s %s", p[1], p[0]), 0);
	assert_reads_shadow(p[1]);
	assert_exit(run("check %s", p[1]), 0);
	free_paths(p);
}

static void test_rebase_vhd(void **state)
{
	(void)state;
	check_rebase_moved("vhd");
}

static void test_rebase_vhdx(void **state)
{
	(void)state;
	check_rebase_moved("vhdx");
}

/* A parent that is not the one the child was made from is refused with both identities;
 * --unsafe records it and its identity. */
static void check_rebase_refusals(const char *fmt)
{
	const char *p[LAYERS];
	chain_paths(fmt, p);
	make_chain(fmt, 1, p);
	const char *other = test_path(!strcmp(fmt, "vhd") ? "other.vhd" : "other.vhdx");
	unlink(other);
	assert_exit(run("create -f %s %s %u", fmt, other, DISK_SIZE), 0);
	char parent_id[80] = "", other_id[80] = "";
	if (test_have("vhdiinfo")) {
		vhdiinfo_field(p[1], "Parent identifier", parent_id, sizeof(parent_id));
		vhdiinfo_field(other, "Identifier", other_id, sizeof(other_id));
	}
	assert_exit(run("rebase %s %s", p[1], other), 2);
	assert_contains(out, "is not the image this one was made from");
	assert_contains(out, parent_id);
	assert_contains(out, other_id);
	assert_reads_shadow(p[1]); /* untouched */

	assert_exit(run("rebase %s %s", p[1], p[1]), 2);
	assert_contains(out, "its own parent");
	assert_exit(run("rebase %s %s", p[0], other), 2);
	assert_contains(out, "not a differencing image");
	assert_exit(run("rebase %s %s", test_path("no-child"), p[0]), 2);
	assert_contains(out, "no such file");
	assert_exit(run("rebase %s %s", p[1], test_path("no-parent")), 2);
	assert_contains(out, "no-parent");
	const char *raw = test_path("plain.raw");
	test_write_file(raw, DISK_SIZE, 1);
	assert_exit(run("rebase %s %s", p[1], raw), 2);
	assert_contains(out, "raw image");
	assert_exit(run("rebase %s", p[1]), 3);

	assert_exit(run("rebase --unsafe %s %s", p[1], other), 0);
	assert_exit(run("chain %s", p[1]), 0);
	assert_contains(out, "identity matches");
	if (test_have("vhdiinfo")) {
		vhdiinfo_field(p[1], "Parent identifier", parent_id, sizeof(parent_id));
		assert_string_equal(parent_id, other_id);
	}
	free_paths(p);
}

static void test_rebase_refusals_vhd(void **state)
{
	(void)state;
	check_rebase_refusals("vhd");
}

static void test_rebase_refusals_vhdx(void **state)
{
	(void)state;
	check_rebase_refusals("vhdx");
}

/* ---- merge ---- */

/* vdisk check finds no errors. Leaks are allowed: a VHDX block that a child zeroed whole
 * takes the Zero state in the ancestor, and the driver leaves its space for compact. */
static void assert_no_errors(const char *path)
{
	int ret = run("check --json %s", path);
	if (ret != 0 && ret != 1)
		fail_msg("check failed:\n%s", out);
	assert_contains(out, "\"errors\": 0");
}

/* A base image after a merge: QEMU reads the expected content and finds it clean. */
static void assert_good_base(const char *path)
{
	assert_reads_shadow(path);
	assert_no_errors(path);
	assert_qemu_reads_shadow(path);
	if (test_have("qemu-img") && strstr(path, ".vhdx"))
		assert_exit(test_run(out, sizeof(out), "qemu-img check '%s'", path), 0);
}

/* --new: the flattened chain in a new image (read by QEMU too), the chain untouched. */
static void check_flatten(const char *fmt, const char *top)
{
	const char *flat = test_path(!strcmp(fmt, "vhd") ? "flat.vhd" : "flat.vhdx");
	const char *raw = test_path("flat.raw");
	unlink(flat);
	unlink(raw);
	assert_exit(run("merge --json %s --new %s", top, flat), 0);
	assert_contains(out, "\"bytes_written\"");
	assert_good_base(flat);
	assert_reads_shadow(top);
	assert_exit(run("merge %s --new %s -O raw", top, raw), 0);
	assert_reads_shadow(raw);
	assert_exit(run("merge %s --new %s", top, raw), 2); /* never replaces a file */
	assert_contains(out, "exists");
	assert_reads_shadow(raw);
}

/* Depth 1: each image merged into its parent in turn, down to the base. */
static void check_merge_into_parent(const char *fmt)
{
	const char *p[LAYERS];
	chain_paths(fmt, p);
	make_chain(fmt, 3, p);
	check_flatten(fmt, p[3]);
	for (int top = 3; top >= 1; top--) {
		assert_exit(run("merge --json %s", p[top]), 0);
		assert_contains(out, "\"depth\": 1");
		assert_contains(out, p[top - 1]);
		assert_false(exists(p[top]));
		assert_reads_shadow(p[top - 1]);
		assert_no_errors(p[top - 1]);
		assert_exit(run("chain %s", p[top - 1]), 0);
	}
	assert_good_base(p[0]);
	free_paths(p);
}

static void test_merge_parent_vhd(void **state)
{
	(void)state;
	check_merge_into_parent("vhd");
}

static void test_merge_parent_vhdx(void **state)
{
	(void)state;
	check_merge_into_parent("vhdx");
}

/* --into an older ancestor: the images in between go too. */
static void check_merge_into_ancestor(const char *fmt)
{
	const char *p[LAYERS];
	chain_paths(fmt, p);
	make_chain(fmt, 3, p);
	assert_exit(run("merge -p %s --into %s", p[3], p[1]), 0); /* depth 2 */
	assert_contains(out, "merging [");
	assert_false(exists(p[3]));
	assert_false(exists(p[2]));
	assert_reads_shadow(p[1]);
	assert_no_errors(p[1]);

	make_chain(fmt, 3, p);
	assert_exit(run("merge --json --into %s %s", p[0], p[3]), 0); /* depth 3 */
	assert_contains(out, "\"depth\": 3");
	for (int i = 1; i < LAYERS; i++)
		assert_false(exists(p[i]));
	assert_good_base(p[0]);
	free_paths(p);
}

static void test_merge_ancestor_vhd(void **state)
{
	(void)state;
	check_merge_into_ancestor("vhd");
}

static void test_merge_ancestor_vhdx(void **state)
{
	(void)state;
	check_merge_into_ancestor("vhdx");
}

/* Refusals leave every image as it was. */
static void test_merge_refusals(void **state)
{
	(void)state;
	const char *p[LAYERS];
	chain_paths("vhdx", p);
	make_chain("vhdx", 2, p);
	assert_exit(run("merge %s", p[0]), 2);
	assert_contains(out, "not a differencing image");
	const char *stranger = test_path("stranger.vhdx");
	unlink(stranger);
	assert_exit(run("create -f vhdx %s 16M", stranger), 0);
	assert_exit(run("merge %s --into %s", p[2], stranger), 2);
	assert_contains(out, "is not in the chain");
	assert_exit(run("merge %s --into %s", p[2], p[2]), 2);
	assert_contains(out, "the child itself");
	assert_exit(run("merge %s --into %s --new x", p[2], p[0]), 3);
	assert_exit(run("merge %s -O vhd", p[2]), 3);
	assert_exit(run("merge"), 3);
	assert_exit(run("merge --help"), 0);
	assert_contains(out, "Usage: vdisk merge");

	/* the ancestor in use by a writer */
	struct vdisk *writer = open_rw(p[0]);
	assert_exit(run("merge %s --into %s", p[2], p[0]), 2);
	assert_contains(out, "in use");
	test_close_disk(writer);
	/* the child in use by a writer */
	writer = open_rw(p[2]);
	assert_exit(run("merge %s", p[2]), 2);
	assert_contains(out, "in use");
	test_close_disk(writer);
	assert_true(exists(p[2]) && exists(p[1]));
	assert_reads_shadow(p[2]);

	/* a smaller ancestor (recorded with rebase --unsafe) */
	const char *small = test_path("small.vhdx");
	unlink(small);
	assert_exit(run("create -f vhdx %s 8M", small), 0);
	assert_exit(run("rebase --unsafe %s %s", p[2], small), 0);
	assert_exit(run("merge %s", p[2]), 2);
	assert_contains(out, "is smaller than the child");
	assert_true(exists(p[2]));

	/* a replaced parent */
	assert_exit(run("rebase --unsafe %s %s", p[2], p[1]), 0);
	assert_exit(run("create -f vhdx --force %s 16M", p[0]), 0);
	assert_exit(run("merge %s", p[1]), 2);
	assert_contains(out, "but this image expects");
	assert_contains(out, "--allow-parent-mismatch");
	assert_true(exists(p[1]));
	free_paths(p);
}

/* A merge that stopped half way: part of the child's data is in the parent already. The
 * child still masks it, so the chain reads as before; VHDX now refuses the chain (the
 * parent's DataWriteGuid changed) and says how to finish, which then works. */
static void check_interrupted_merge(const char *fmt)
{
	const char *p[LAYERS];
	chain_paths(fmt, p);
	make_chain(fmt, 1, p);
	struct vdisk_options alone = { .cache = VDISK_CACHE_WRITEBACK,
				       .engine = VDISK_ENGINE_SYNC };
	struct vdisk *base;
	char err[256];
	assert_int_equal(vdisk_open(p[0], &alone, &base, err, sizeof(err)), 0);
	assert_int_equal(test_track_disk(base), 0);
	/* what the child holds, written by hand: its data and the zeros it wrote */
	assert_int_equal(vdisk_pwrite(base, shadow + 1 * MiB, 64 << 10, 1 * MiB), 0);
	assert_int_equal(vdisk_write_zeroes_sync(base, 2 * MiB, MiB / 2), 0);
	assert_int_equal(vdisk_flush_sync(base), 0);
	test_close_disk(base);

	struct vdisk_options mismatch = { .read_only = true,
					  .cache = VDISK_CACHE_WRITEBACK,
					  .engine = VDISK_ENGINE_SYNC,
					  .allow_parent_mismatch = true };
	assert_reads_shadow_with(p[1], &mismatch);
	if (!strcmp(fmt, "vhdx")) {
		assert_exit(run("merge %s", p[1]), 2);
		assert_contains(out, "run the same merge again with --allow-parent-mismatch");
		assert_true(exists(p[1]));
		assert_exit(run("merge --allow-parent-mismatch %s", p[1]), 0);
	} else { /* a VHD's unique id does not change when it is written */
		assert_exit(run("merge %s", p[1]), 0);
	}
	assert_false(exists(p[1]));
	assert_good_base(p[0]);
	free_paths(p);
}

static void test_merge_interrupted_vhd(void **state)
{
	(void)state;
	check_interrupted_merge("vhd");
}

static void test_merge_interrupted_vhdx(void **state)
{
	(void)state;
	check_interrupted_merge("vhdx");
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
	vdisk_bin = test_vdisk_binary();
	if (!vdisk_bin)
		return TEST_SKIP;
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
		cmocka_unit_test_teardown(test_merge_parent_vhd, teardown_test),
		cmocka_unit_test_teardown(test_merge_parent_vhdx, teardown_test),
		cmocka_unit_test_teardown(test_merge_ancestor_vhd, teardown_test),
		cmocka_unit_test_teardown(test_merge_ancestor_vhdx, teardown_test),
		cmocka_unit_test_teardown(test_merge_refusals, teardown_test),
		cmocka_unit_test_teardown(test_merge_interrupted_vhd, teardown_test),
		cmocka_unit_test_teardown(test_merge_interrupted_vhdx, teardown_test),
	};
	return cmocka_run_group_tests(tests, NULL, teardown);
}
