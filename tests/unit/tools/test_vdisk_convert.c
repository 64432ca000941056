/* vdisk convert, compare and map from the command line, checked against independent
 * tools: qemu-img (compare, check, info, map, convert), qemu-io (to write images),
 * vhdiinfo (libvhdi), cmp, dd and stat. Tests that need a tool that is missing skip. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <dirent.h>
#include <jansson.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "test_cli.h"
#include "test_util.h"

#define MiB (1024ull * 1024)

static const char *vdisk;
static char out[65536];

/* Runs a shell command line with output in `out`; returns its exit status. */
static int sh(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static int sh(const char *fmt, ...)
{
	char cmd[4096];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(cmd, sizeof(cmd), fmt, ap);
	va_end(ap);
	return test_run(out, sizeof(out), "%s", cmd);
}

#define VDISK "'%s' "

static void need(const char *tool)
{
	if (!test_have(tool))
		skip();
}

static uint64_t allocated(const char *path)
{
	struct stat st;
	assert_int_equal(stat(path, &st), 0);
	return (uint64_t)st.st_blocks * 512;
}

static const char *qemu_format(const char *path)
{
	const char *dot = strrchr(path, '.');
	return !strcmp(dot, ".vhd") ? "vpc" : dot + 1;
}

/* Both qemu-img compare and vdisk compare must find the images identical. */
static void expect_same(const char *a, const char *b)
{
	if (sh("qemu-img compare -f %s -F %s '%s' '%s'", qemu_format(a), qemu_format(b), a, b))
		fail_msg("qemu-img compare %s %s: %s", a, b, out);
	if (sh(VDISK "compare '%s' '%s'", vdisk, a, b))
		fail_msg("vdisk compare %s %s: %s", a, b, out);
}

/* The only files in the test directory whose names start with prefix: none of the
 * hidden temporary files a convert makes may be left behind. */
static void expect_no_leftovers(const char *prefix)
{
	DIR *d = opendir(test_tmpdir());
	assert_non_null(d);
	struct dirent *e;
	char hidden[256];
	snprintf(hidden, sizeof(hidden), ".%s", prefix);
	while ((e = readdir(d)))
		if (!strncmp(e->d_name, hidden, strlen(hidden))) {
			closedir(d);
			fail_msg("temporary file %s left behind", e->d_name);
		}
	closedir(d);
}

/* A raw file of size bytes: zeros (allocated on the host) with pattern data in a few
 * places, one of them not sector aligned. */
static void make_raw(const char *path, uint64_t size)
{
	assert_int_equal(sh("head -c %llu /dev/zero > '%s'", (unsigned long long)size, path), 0);
	static const uint64_t at[] = { 0, 3 * MiB + 700, 17 * MiB, 40 * MiB - 4096 };
	for (unsigned i = 0; i < 4; i++)
		if (at[i] < size)
			assert_int_equal(
				sh("head -c 300000 /dev/urandom | dd of='%s' bs=4k seek=%llu "
				   "iflag=fullblock oflag=seek_bytes conv=notrunc status=none",
				   path, (unsigned long long)at[i]),
				0);
}

/* ---- command line ---- */

static void test_usage(void **state)
{
	(void)state;
	static const char *const cmds[] = { "convert", "compare", "map" };
	for (unsigned i = 0; i < 3; i++) {
		assert_int_equal(sh(VDISK "%s --help", vdisk, cmds[i]), 0);
		char usage[64];
		snprintf(usage, sizeof(usage), "Usage: vdisk %s", cmds[i]);
		assert_contains(out, usage);
		assert_int_equal(sh(VDISK "%s", vdisk, cmds[i]), 3);
		assert_contains(out, "missing");
		assert_int_equal(sh(VDISK "%s --bogus a b", vdisk, cmds[i]), 3);
		assert_contains(out, "--bogus");
	}
	assert_int_equal(sh(VDISK "convert a", vdisk), 3);
	assert_int_equal(sh(VDISK "convert a b c", vdisk), 3);
	assert_int_equal(sh(VDISK "convert --force --target-existing a b", vdisk), 3);
	assert_int_equal(sh(VDISK "convert --chunk 1000 a b", vdisk), 3);
	assert_int_equal(sh(VDISK "convert --depth 0 a b", vdisk), 3);
	assert_int_equal(sh(VDISK "convert --target-existing --type fixed a b", vdisk), 3);
	assert_int_equal(sh(VDISK "map a b", vdisk), 3);
	const char *missing = test_path("missing.raw");
	assert_int_equal(sh(VDISK "convert '%s' '%s'", vdisk, missing, test_path("m.vhdx")), 2);
	assert_contains(out, "no such file");
	assert_int_not_equal(access(test_path("m.vhdx"), F_OK), 0);
	assert_int_equal(sh(VDISK "compare '%s' '%s'", vdisk, missing, missing), 2);
	assert_int_equal(sh(VDISK "map '%s'", vdisk, missing), 2);
}

/* ---- convert ---- */

/* raw -> each format -> each format: byte for byte the same (qemu-img compare and vdisk
 * compare), and every output readable by QEMU and libvhdi. */
static void test_convert_all_formats(void **state)
{
	(void)state;
	need("qemu-img");
	const char *src = test_path("all.raw");
	make_raw(src, 24 * MiB + 512 * 3);
	static const char *const fmts[] = { "raw", "vhd", "vhdx" };
	for (unsigned i = 0; i < 3; i++) {
		char first[600];
		snprintf(first, sizeof(first), "%s", test_path(fmts[i]));
		strcat(first, ".");
		strcat(first, fmts[i]);
		assert_int_equal(sh(VDISK "convert -O %s '%s' '%s'", vdisk, fmts[i], src, first),
				 0);
		expect_same(src, first);
		for (unsigned j = 0; j < 3; j++) {
			char second[700];
			snprintf(second, sizeof(second), "%s-to.%s", first, fmts[j]);
			assert_int_equal(
				sh(VDISK "convert -O %s '%s' '%s'", vdisk, fmts[j], first, second),
				0);
			expect_same(src, second);
			if (strcmp(fmts[j], "raw")) {
				assert_int_equal(sh("qemu-img info --output=json '%s'", second), 0);
				assert_contains(out, "\"virtual-size\": 25167360");
			}
			if (!strcmp(fmts[j], "vhdx"))
				assert_int_equal(sh("qemu-img check -f vhdx '%s'", second), 0);
			if (strcmp(fmts[j], "raw") &&
			    !test_run(NULL, 0, "command -v vhdiinfo >/dev/null")) {
				assert_int_equal(sh("vhdiinfo '%s'", second), 0);
				assert_contains(out, "25167360 bytes");
			}
		}
	}
	expect_no_leftovers("all");
}

/* Fixed targets and --sparse; dynamic targets of a mostly zero source stay small. */
static void test_convert_sparse(void **state)
{
	(void)state;
	need("qemu-img");
	const char *src = test_path("zeros.raw");
	make_raw(src, 128 * MiB); /* 1.2 MB of data, the rest zeros written on the host */
	assert_true(allocated(src) >= 128 * MiB);

	const char *vhdx = test_path("zeros.vhdx");
	assert_int_equal(sh(VDISK "convert --json -O vhdx '%s' '%s'", vdisk, src, vhdx), 0);
	json_t *j = json_loads(out, 0, NULL);
	assert_non_null(j);
	uint64_t written = (uint64_t)json_integer_value(json_object_get(j, "bytes_written"));
	assert_true(written >= 4 * 300000 && written <= 8 * MiB); /* 5 chunks of 1 MiB */
	assert_true(json_real_value(json_object_get(j, "mb_per_s")) > 0);
	assert_int_equal(json_integer_value(json_object_get(j, "virtual_size")), 128 * MiB);
	json_decref(j);
	assert_true(allocated(vhdx) < 16 * MiB); /* the chunks written, not whole blocks */
	expect_same(src, vhdx);

	const char *vhd = test_path("zeros.vhd");
	assert_int_equal(sh(VDISK "convert -O vhd '%s' '%s'", vdisk, src, vhd), 0);
	assert_true(allocated(vhd) < 16 * MiB);
	expect_same(src, vhd);

	const char *raw_sparse = test_path("zeros-sparse.raw");
	assert_int_equal(sh(VDISK "convert --sparse '%s' '%s'", vdisk, vhdx, raw_sparse), 0);
	assert_true(allocated(raw_sparse) < 16 * MiB);
	assert_int_equal(sh("cmp '%s' '%s'", src, raw_sparse), 0);

	const char *raw_full = test_path("zeros-full.raw");
	assert_int_equal(sh(VDISK "convert '%s' '%s'", vdisk, vhdx, raw_full), 0);
	assert_true(allocated(raw_full) >= 128 * MiB);
	assert_int_equal(sh("cmp '%s' '%s'", src, raw_full), 0);

	const char *fixed = test_path("zeros-fixed.vhdx");
	assert_int_equal(sh(VDISK "convert -O vhdx --type fixed '%s' '%s'", vdisk, src, fixed), 0);
	assert_true(allocated(fixed) >= 128 * MiB);
	expect_same(src, fixed);
	assert_int_equal(sh("qemu-img check -f vhdx '%s'", fixed), 0);
	assert_int_equal(sh(VDISK "convert -O vhd --type fixed --sparse '%s' '%s'", vdisk, src,
			    test_path("zeros-fixed.vhd")),
			 0);
	assert_true(allocated(test_path("zeros-fixed.vhd")) < 16 * MiB);
	expect_same(src, test_path("zeros-fixed.vhd"));

	/* other block sizes: VHD 512 KiB, VHDX 1 MiB */
	assert_int_equal(sh(VDISK "convert -O vhdx --block-size 1M '%s' '%s'", vdisk, src,
			    test_path("bs.vhdx")),
			 0);
	assert_int_equal(sh(VDISK "info '%s'", vdisk, test_path("bs.vhdx")), 0);
	assert_contains(out, "block size:      1 MiB");
	expect_same(src, test_path("bs.vhdx"));
	assert_int_equal(
		sh(VDISK "convert -O vhd -b 512K '%s' '%s'", vdisk, src, test_path("bs.vhd")), 0);
	expect_same(src, test_path("bs.vhd"));
}

/* A differencing VHDX is flattened: the output reads like base + child, built here with
 * dd as the independent oracle. */
static void test_convert_chain(void **state)
{
	(void)state;
	need("qemu-img");
	const char *base_raw = test_path("chain-base.raw");
	make_raw(base_raw, 64 * MiB);
	const char *base = test_path("chain-base.vhdx");
	const char *child = test_path("chain-child.vhdx");
	assert_int_equal(sh(VDISK "convert -O vhdx '%s' '%s'", vdisk, base_raw, base), 0);
	assert_int_equal(sh(VDISK "create -f vhdx --parent '%s' '%s'", vdisk, base, child), 0);
	/* the child gets 5 MiB of new data at offset 0 (a smaller source) */
	const char *patch = test_path("chain-patch.raw");
	assert_int_equal(sh("head -c %llu /dev/urandom > '%s'", 5 * MiB, patch), 0);
	assert_int_equal(sh(VDISK "convert --target-existing '%s' '%s'", vdisk, patch, child), 0);

	const char *want = test_path("chain-want.raw");
	assert_int_equal(sh("cp '%s' '%s' && dd if='%s' of='%s' conv=notrunc status=none", base_raw,
			    want, patch, want),
			 0);
	const char *flat = test_path("chain-flat.raw");
	assert_int_equal(sh(VDISK "convert '%s' '%s'", vdisk, child, flat), 0);
	assert_int_equal(sh("cmp '%s' '%s'", want, flat), 0);
	const char *flat_vhdx = test_path("chain-flat.vhdx");
	assert_int_equal(sh(VDISK "convert -O vhdx '%s' '%s'", vdisk, child, flat_vhdx), 0);
	expect_same(want, flat_vhdx);
	assert_int_equal(sh(VDISK "info --json '%s'", vdisk, flat_vhdx), 0);
	assert_contains(out, "\"type\": \"dynamic\"");
	assert_int_equal(sh(VDISK "compare '%s' '%s'", vdisk, child, want), 0);

	/* map: the child's range at depth 0, the base's data at depth 1 */
	assert_int_equal(sh(VDISK "map --json '%s'", vdisk, child), 0);
	json_t *map = json_loads(out, 0, NULL);
	assert_non_null(map);
	json_t *first = json_array_get(map, 0);
	assert_int_equal(json_integer_value(json_object_get(first, "start")), 0);
	assert_int_equal(json_integer_value(json_object_get(first, "length")), 5 * MiB);
	assert_int_equal(json_integer_value(json_object_get(first, "depth")), 0);
	assert_true(json_is_true(json_object_get(first, "data")));
	size_t i;
	json_t *e;
	bool base_data = false;
	json_array_foreach (map, i, e)
		base_data |= json_integer_value(json_object_get(e, "depth")) == 1 &&
			     json_is_true(json_object_get(e, "data"));
	assert_true(base_data);
	json_decref(map);
}

/* Sizes and sector sizes: kept exactly, or refused with a reason and no file left. */
static void test_convert_sizes(void **state)
{
	(void)state;
	need("qemu-img");
	const char *odd = test_path("odd.raw");
	assert_int_equal(sh("head -c 1000 /dev/urandom > '%s'", odd), 0);
	const char *odd_vhd = test_path("odd.vhd");
	assert_int_equal(sh(VDISK "convert -O vhd '%s' '%s'", vdisk, odd, odd_vhd), 2);
	assert_contains(out, "multiple of 512");
	assert_int_not_equal(access(odd_vhd, F_OK), 0);

	const char *huge = test_path("huge.raw");
	assert_int_equal(sh("truncate -s 3T '%s'", huge), 0);
	assert_int_equal(sh(VDISK "convert -O vhd '%s' '%s'", vdisk, huge, test_path("huge.vhd")),
			 2);
	assert_contains(out, "2040");
	assert_int_not_equal(access(test_path("huge.vhd"), F_OK), 0);
	expect_no_leftovers("huge");
	/* a sparse 3 TiB disk fits a dynamic VHDX and costs nothing to convert */
	assert_int_equal(sh(VDISK "convert -O vhdx '%s' '%s'", vdisk, huge, test_path("huge.vhdx")),
			 0);
	assert_int_equal(sh("qemu-img info --output=json '%s'", test_path("huge.vhdx")), 0);
	assert_contains(out, "\"virtual-size\": 3298534883328");

	/* 4 KiB sectors carry over from VHDX to VHDX */
	const char *k4 = test_path("k4.vhdx");
	assert_int_equal(sh(VDISK "create -f vhdx --logical-sector-size 4096 "
				  "--physical-sector-size 4096 '%s' 64M",
			    vdisk, k4),
			 0);
	const char *k4_copy = test_path("k4-copy.vhdx");
	assert_int_equal(sh(VDISK "convert -O vhdx '%s' '%s'", vdisk, k4, k4_copy), 0);
	assert_int_equal(sh(VDISK "info '%s'", vdisk, k4_copy), 0);
	assert_contains(out, "4096 logical, 4096 physical");
	if (!test_run(NULL, 0, "command -v vhdiinfo >/dev/null")) {
		assert_int_equal(sh("vhdiinfo '%s'", k4_copy), 0);
		assert_contains(out, "4096 bytes");
	}
}

/* An existing DST: refused, replaced with --force, written into with --target-existing. */
static void test_convert_existing(void **state)
{
	(void)state;
	const char *src = test_path("ex-src.raw");
	make_raw(src, 8 * MiB);
	const char *dst = test_path("ex-dst.vhdx");
	assert_int_equal(sh(VDISK "create -f vhdx '%s' 8M", vdisk, dst), 0);
	assert_int_equal(sh(VDISK "convert -O vhdx '%s' '%s'", vdisk, src, dst), 2);
	assert_contains(out, "exists");
	assert_int_equal(sh(VDISK "compare '%s' '%s'", vdisk, src, dst), 1); /* untouched */
	assert_int_equal(sh(VDISK "convert -O vhdx --force '%s' '%s'", vdisk, src, dst), 0);
	assert_int_equal(sh(VDISK "compare '%s' '%s'", vdisk, src, dst), 0);
	/* never onto the source itself */
	assert_int_equal(sh(VDISK "convert --force '%s' '%s'", vdisk, src, src), 2);
	assert_contains(out, "is the source");
	const char *child = test_path("ex-child.vhdx");
	assert_int_equal(sh(VDISK "create -f vhdx --parent '%s' '%s'", vdisk, dst, child), 0);
	assert_int_equal(sh(VDISK "convert -O vhdx --force '%s' '%s'", vdisk, child, dst), 2);
	assert_contains(out, "one of its parents");

	/* a larger existing image: the part past the source stays */
	const char *big = test_path("ex-big.raw");
	assert_int_equal(sh("head -c %llu /dev/urandom > '%s'", 12 * MiB, big), 0);
	const char *tail = test_path("ex-tail.raw");
	assert_int_equal(sh("tail -c %llu '%s' > '%s'", 4 * MiB, big, tail), 0);
	assert_int_equal(sh(VDISK "convert --target-existing '%s' '%s'", vdisk, src, big), 0);
	assert_int_equal(sh("cmp -n %llu '%s' '%s'", 8 * MiB, src, big), 0);
	assert_int_equal(sh("tail -c %llu '%s' | cmp - '%s'", 4 * MiB, big, tail), 0);
	assert_int_equal(sh(VDISK "convert --target-existing '%s' '%s'", vdisk, big, src), 2);
	assert_contains(out, "cannot hold");
	assert_int_equal(sh(VDISK "convert --target-existing '%s' '%s'", vdisk, src,
			    test_path("ex-none.raw")),
			 2);

	/* a DST another process holds (a running VM) is not replaced */
	if (!test_run(NULL, 0, "command -v flock >/dev/null")) {
		assert_int_equal(sh("flock -x '%s' -c \"'%s' convert -O vhdx --force '%s' '%s'\"",
				    dst, vdisk, big, dst),
				 2);
		assert_contains(out, "in use");
		assert_int_equal(sh(VDISK "compare '%s' '%s'", vdisk, src, dst), 0);
	}
	expect_no_leftovers("ex-");
}

/* A convert stopped by a signal leaves neither DST nor its temporary file. */
static void test_convert_interrupted(void **state)
{
	(void)state;
	const char *src = test_path("int-src.raw");
	assert_int_equal(sh("head -c %llu /dev/urandom > '%s'", 64 * MiB, src), 0);
	const char *dst = test_path("int-dst.vhdx");
	/* 4 KiB requests one at a time: far longer than the 0.2 s it gets */
	int ret = sh("timeout -s TERM 0.2 '%s' convert -O vhdx --depth 1 --chunk 4K '%s' '%s'",
		     vdisk, src, dst);
	if (ret == 0)
		skip(); /* the machine was fast enough to finish */
	assert_int_equal(ret, 124);
	assert_int_not_equal(access(dst, F_OK), 0);
	expect_no_leftovers("int-dst");
}

static void test_convert_progress(void **state)
{
	(void)state;
	const char *src = test_path("prog.raw");
	make_raw(src, 8 * MiB);
	assert_int_equal(sh(VDISK "convert -p '%s' '%s' 2>&1", vdisk, src, test_path("prog.vhdx")),
			 0);
	assert_contains(out, "converting [");
	assert_contains(out, "100.0%");
	assert_int_equal(sh(VDISK "compare -p '%s' '%s' 2>&1", vdisk, src, test_path("prog.vhdx")),
			 0);
	assert_contains(out, "comparing [");
}

/* ---- compare ---- */

/* The same pairs through qemu-img compare and vdisk compare: the same exit codes, and
 * the same first difference (QEMU names the 512-byte sector, we name the byte). */
static void test_compare_like_qemu(void **state)
{
	(void)state;
	need("qemu-img");
	const char *a = test_path("cmp-a.raw");
	make_raw(a, 16 * MiB);
	const char *b = test_path("cmp-b.vhdx");
	assert_int_equal(sh(VDISK "convert -O vhdx '%s' '%s'", vdisk, a, b), 0);
	struct {
		const char *what;
		const char *change; /* shell commands run on the raw copy c */
		int want;
	} cases[] = {
		{ "identical", "true", 0 },
		{ "one byte",
		  "printf 'Z' | dd of=\"$c\" bs=1 seek=5000000 conv=notrunc status=none", 1 },
		{ "longer, zero tail", "truncate -s 20M \"$c\"", 0 },
		{ "longer, data in tail",
		  "truncate -s 20M \"$c\" && printf 'Z' | dd of=\"$c\" bs=1 seek=18000000 "
		  "conv=notrunc "
		  "status=none",
		  1 },
		{ "shorter, zero past it", "truncate -s 12M \"$c\"", 0 },
		{ "shorter, data past it", "truncate -s 2M \"$c\"", 1 },
	};
	const char *c = test_path("cmp-c.raw");
	for (unsigned i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		assert_int_equal(sh("cp '%s' '%s' && c='%s' && %s", a, c, c, cases[i].change), 0);
		int qemu = sh("qemu-img compare -f vhdx -F raw '%s' '%s'", b, c);
		char qemu_out[sizeof(out)];
		memcpy(qemu_out, out, sizeof(out));
		int ours = sh(VDISK "compare --json '%s' '%s'", vdisk, b, c);
		if (qemu != cases[i].want || ours != cases[i].want)
			fail_msg("%s: qemu-img %d, vdisk %d, expected %d\n%s", cases[i].what, qemu,
				 ours, cases[i].want, out);
		if (ours != 1)
			continue;
		json_t *j = json_loads(out, 0, NULL);
		assert_non_null(j);
		json_int_t at = json_integer_value(json_object_get(j, "first_difference"));
		json_decref(j);
		const char *q = strstr(qemu_out, "offset ");
		if (q) /* QEMU 7.2 names the offset unless the smaller image is the first */
			assert_int_equal(at / 512 * 512, strtoll(q + 7, NULL, 10));
	}
	/* --strict: any size difference differs, as with qemu-img compare -s */
	assert_int_equal(sh("cp '%s' '%s' && truncate -s 20M '%s'", a, c, c), 0);
	assert_int_equal(sh("qemu-img compare -s -f vhdx -F raw '%s' '%s'", b, c), 1);
	assert_int_equal(sh(VDISK "compare --strict '%s' '%s'", vdisk, b, c), 1);
	assert_contains(out, "differ in size");
}

/* ---- map ---- */

/* Marks, for each block of block_size bytes, whether a map (qemu-img map or vdisk map
 * JSON) calls any byte of it data. */
static void data_blocks(const char *map_json, uint64_t block_size, bool *blocks, size_t n)
{
	json_error_t error;
	json_t *map = json_loads(map_json, 0, &error);
	if (!map)
		fail_msg("not JSON (%s): %s", error.text, map_json);
	memset(blocks, 0, n);
	size_t i;
	json_t *e;
	json_array_foreach (map, i, e) {
		if (!json_is_true(json_object_get(e, "data")))
			continue;
		uint64_t start = (uint64_t)json_integer_value(json_object_get(e, "start"));
		uint64_t len = (uint64_t)json_integer_value(json_object_get(e, "length"));
		for (uint64_t b = start / block_size;
		     b < (start + len + block_size - 1) / block_size && b < n; b++)
			blocks[b] = true;
	}
	json_decref(map);
}

/* vdisk map and a QEMU map of the same bytes agree on data vs. not data per block. */
static void expect_same_data(const char *ours_path, const char *qemu_path, const char *qfmt,
			     uint64_t size, uint64_t block_size)
{
	size_t n = (size_t)(size / block_size);
	bool *ours = calloc(n, 1), *theirs = calloc(n, 1);
	assert_int_equal(sh(VDISK "map --json '%s'", vdisk, ours_path), 0);
	data_blocks(out, block_size, ours, n);
	assert_int_equal(sh("qemu-img map -f %s --output=json '%s'", qfmt, qemu_path), 0);
	data_blocks(out, block_size, theirs, n);
	for (size_t i = 0; i < n; i++)
		if (ours[i] != theirs[i])
			fail_msg("%s: block %zu (of %llu bytes): vdisk map says %s, QEMU says %s",
				 ours_path, i, (unsigned long long)block_size,
				 ours[i] ? "data" : "no data", theirs[i] ? "data" : "no data");
	free(ours);
	free(theirs);
}

static const char *const qemu_writes =
	"-c 'write -P 171 1M 1M' -c 'write -P 172 6M 3M' -c 'write -P 173 15M 512k'";

static void test_map_like_qemu(void **state)
{
	(void)state;
	need("qemu-img");
	need("qemu-io");
	/* raw: holes are not data, at the file system's 4 KiB granularity */
	const char *raw = test_path("map.raw");
	assert_int_equal(
		sh("truncate -s 16M '%s' && qemu-io -f raw %s '%s'", raw, qemu_writes, raw), 0);
	expect_same_data(raw, raw, "raw", 16 * MiB, 4096);

	/* dynamic VHD: allocated 2 MiB blocks are data, for both */
	const char *vhd = test_path("map.vhd");
	assert_int_equal(sh(VDISK "create -f vhd '%s' 16M", vdisk, vhd), 0);
	assert_int_equal(sh("qemu-io -f vpc %s '%s'", qemu_writes, vhd), 0);
	expect_same_data(vhd, vhd, "vpc", 16 * MiB, 2 * MiB);

	/* dynamic VHDX: QEMU 7.2 reports every VHDX byte as data (its driver has no block
	 * status), so the reference is QEMU's map of QEMU's own qcow2 conversion, which
	 * leaves out zero clusters (a raw one would not do: QEMU allocates the first block
	 * of every raw file it creates). The blocks written above are filled whole with
	 * non-zero bytes, so allocated blocks and blocks with data content are the same set.
	 * (Deliberately, vdisk map reports allocation: a block written with zeros counts as
	 * data; none is written here.) */
	const char *vhdx = test_path("map.vhdx");
	const char *ref = test_path("map-ref.qcow2");
	assert_int_equal(sh(VDISK "create -f vhdx --block-size 1M '%s' 16M", vdisk, vhdx), 0);
	assert_int_equal(sh("qemu-io -f vhdx %s '%s'", qemu_writes, vhdx), 0);
	assert_int_equal(sh("qemu-img convert -f vhdx -O qcow2 '%s' '%s'", vhdx, ref), 0);
	expect_same_data(vhdx, ref, "qcow2", 16 * MiB, 1 * MiB);

	/* merged ranges, and the human table */
	assert_int_equal(sh(VDISK "map '%s'", vdisk, vhdx), 0);
	assert_contains(out, "         1048576          1048576  yes   no    0");
	assert_contains(out, "         6291456          3145728  yes   no    0");
	assert_contains(out, "         9437184          6291456  no    yes   0");
}

int main(void)
{
	vdisk = test_vdisk_binary();
	if (!vdisk)
		return TEST_SKIP;
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_usage),
		cmocka_unit_test(test_convert_all_formats),
		cmocka_unit_test(test_convert_sparse),
		cmocka_unit_test(test_convert_chain),
		cmocka_unit_test(test_convert_sizes),
		cmocka_unit_test(test_convert_existing),
		cmocka_unit_test(test_convert_interrupted),
		cmocka_unit_test(test_convert_progress),
		cmocka_unit_test(test_compare_like_qemu),
		cmocka_unit_test(test_map_like_qemu),
	};
	return cmocka_run_group_tests(tests, NULL, test_teardown_tmpdir);
}
