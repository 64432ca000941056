/* The vdisk command line: exit codes, messages, and results checked against independent
 * tools (stat, qemu-img, cmp, flock). */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include "test_cli.h"
#include "test_util.h"

static const char *vdisk;
static char out[65536];

#define run(...) test_run_vdisk(out, sizeof(out), __VA_ARGS__)

static void test_help(void **state)
{
	(void)state;
	assert_int_equal(run("--help"), 0);
	assert_contains(out, "Usage: vdisk COMMAND");
	assert_contains(out, "create");
	assert_contains(out, "bench");
	assert_contains(out, "Exit codes");
	static const char *const cmds[] = { "create", "info", "check", "bench" };
	for (unsigned i = 0; i < 4; i++) {
		assert_int_equal(run("%s --help", cmds[i]), 0);
		char usage[64];
		snprintf(usage, sizeof(usage), "Usage: vdisk %s", cmds[i]);
		assert_contains(out, usage);
		assert_int_equal(run("help %s", cmds[i]), 0);
		assert_contains(out, usage);
	}
}

static void test_usage_errors(void **state)
{
	(void)state;
	assert_int_equal(run("%s", ""), 3);
	assert_int_equal(run("frobnicate"), 3);
	assert_contains(out, "unknown command 'frobnicate'");
	assert_int_equal(run("info"), 3);
	assert_contains(out, "missing FILE");
	assert_int_equal(run("info --bogus x"), 3);
	assert_contains(out, "--bogus");
	assert_int_equal(run("info a b"), 3);
	assert_int_equal(run("create"), 3);
	assert_int_equal(run("create %s", test_path("x.raw")), 3);
	assert_contains(out, "missing SIZE");
}

static void test_bad_files(void **state)
{
	(void)state;
	const char *missing = test_path("does-not-exist.raw");
	assert_int_equal(run("info %s", missing), 2);
	assert_contains(out, missing);
	assert_contains(out, "no such file");
	assert_contains(out, "hint:");

	assert_int_equal(run("info %s", test_tmpdir()), 2);
	assert_contains(out, "directory");

	const char *empty = test_path("empty.raw");
	fclose(fopen(empty, "w"));
	assert_int_equal(run("info %s", empty), 2);
	assert_contains(out, "empty");

	const char *img = test_path("small.raw");
	test_write_file(img, 65536, 1);
	assert_int_equal(run("info -f nope %s", img), 2);
	assert_contains(out, "unknown format 'nope'");
}

static void test_create_sizes(void **state)
{
	(void)state;
	const char *img = test_path("ten-g.raw");
	assert_int_equal(run("create --sparse %s 10G", img), 0);
	struct stat st;
	assert_int_equal(stat(img, &st), 0);
	assert_int_equal(st.st_size, 10737418240LL);

	assert_int_equal(run("info --json %s", img), 0);
	assert_contains(out, "\"virtual_size\": 10737418240");
	assert_contains(out, "\"format\": \"raw\"");
	if (test_have("qemu-img")) {
		char q[4096];
		assert_int_equal(test_run(q, sizeof(q), "qemu-img info --output=json '%s'", img),
				 0);
		assert_contains(q, "\"virtual-size\": 10737418240");
	}

	assert_int_equal(run("create %s 10G", img), 2);
	assert_contains(out, "exists");
	assert_int_equal(run("create --force --sparse %s 1.5M", img), 0);
	assert_int_equal(stat(img, &st), 0);
	assert_int_equal(st.st_size, 1572864);

	const char *bad = test_path("bad.raw");
	assert_int_equal(run("create %s abc", bad), 3);
	assert_contains(out, "not a size");
	assert_int_equal(run("create %s 99999999999999999999", bad), 3);
	assert_contains(out, "too large");
	assert_int_equal(run("create %s 16E", bad), 3);
	assert_int_equal(run("create %s 0", bad), 3);
	assert_int_equal(run("create %s 1000", bad), 2);
	assert_contains(out, "multiple of 512");
	assert_int_equal(run("create -f nope %s 1M", bad), 2);
	assert_contains(out, "unknown format");
	assert_int_not_equal(access(bad, F_OK), 0);
}

static void test_create_allocated(void **state)
{
	(void)state;
	const char *img = test_path("alloc.raw");
	assert_int_equal(run("create %s 8M", img), 0);
	struct stat st;
	assert_int_equal(stat(img, &st), 0);
	assert_true((uint64_t)st.st_blocks * 512 >= 8u << 20);
	const char *sparse = test_path("sparse.raw");
	assert_int_equal(run("create --sparse %s 8M", sparse), 0);
	assert_int_equal(stat(sparse, &st), 0);
	assert_true((uint64_t)st.st_blocks * 512 < 8u << 20);
}

static void test_bench_counts(void **state)
{
	(void)state;
	const char *img = test_path("bench.raw");
	test_write_file(img, 4 << 20, 7);
	assert_int_equal(run("bench --ios 1000 --json %s", img), 0);
	assert_contains(out, "\"ios\": 1000");
	assert_contains(out, "\"rw\": \"randread\"");
	assert_contains(out, "\"p99.9\"");
	static const char *const engines[] = { "io_uring", "libaio", "sync" };
	for (unsigned i = 0; i < 3; i++) {
		assert_int_equal(
			run("bench --engine %s --ios 300 --iodepth 8 --json %s", engines[i], img),
			0);
		char want[64];
		snprintf(want, sizeof(want), "\"engine\": \"%s\"", engines[i]);
		assert_contains(out, want);
		assert_contains(out, "\"ios\": 300");
	}
	assert_int_equal(run("bench --rw randrw --queues 2 --ios 2000 --bs 8k %s", img), 0);
	assert_contains(out, "read ");
	assert_contains(out, "write ");
}

/* A write workload really writes: the region no longer matches the zeros it held. */
static void test_bench_writes_data(void **state)
{
	(void)state;
	const char *img = test_path("zeros.raw");
	assert_int_equal(run("create %s 4M", img), 0);
	assert_int_equal(test_run(NULL, 0, "cmp -s -n 4194304 '%s' /dev/zero", img), 0);
	assert_int_equal(run("bench --rw write --bs 64k --ios 64 %s", img), 0);
	assert_int_equal(test_run(NULL, 0, "cmp -s -n 4194304 '%s' /dev/zero", img), 1);
}

static void test_bench_bad_options(void **state)
{
	(void)state;
	const char *img = test_path("opts.raw");
	test_write_file(img, 1 << 20, 3);
	assert_int_equal(run("bench --bs 1000 %s", img), 3);
	assert_int_equal(run("bench --iodepth 0 %s", img), 3);
	assert_int_equal(run("bench --rw sideways %s", img), 3);
	assert_int_equal(run("bench --engine warp %s", img), 3);
	assert_int_equal(run("bench --runtime -1 %s", img), 3);
	assert_int_equal(run("bench --rwmixread 101 %s", img), 3);
	assert_int_equal(run("bench --bs 2M %s", img), 2);
	assert_contains(out, "region");
	assert_int_equal(run("bench --offset 2M %s", img), 2);
}

/* Another process holding an exclusive flock (util-linux flock(1)) keeps writers out. */
static void test_locked_image(void **state)
{
	(void)state;
	if (!test_have("flock"))
		skip();
	const char *img = test_path("locked.raw");
	test_write_file(img, 1 << 20, 5);
	assert_int_equal(test_run(out, sizeof(out),
				  "flock -x '%s' -c \"'%s' bench --rw write --ios 10 '%s'\"", img,
				  vdisk, img),
			 2);
	assert_contains(out, "in use");
	assert_int_equal(
		test_run(out, sizeof(out), "flock -s '%s' -c \"'%s' info '%s'\"", img, vdisk, img),
		0);
	assert_int_equal(test_run(out, sizeof(out), "flock -x '%s' -c \"'%s' info -U '%s'\"", img,
				  vdisk, img),
			 0);
}

/* create --force never replaces an image someone holds (a running VM): every format
 * refuses, and the image keeps its bytes (cmp against a copy). */
static void test_force_create_refuses_locked_image(void **state)
{
	(void)state;
	if (!test_have("flock"))
		skip();
	static const char *const formats[] = { "raw", "vhd", "vhdx" };
	for (unsigned i = 0; i < 3; i++) {
		char img[600], copy[620];
		snprintf(img, sizeof(img), "%s", test_path(formats[i]));
		snprintf(copy, sizeof(copy), "%s.copy", img);
		assert_int_equal(run("create -f %s --force '%s' 4M", formats[i], img), 0);
		assert_int_equal(test_run(NULL, 0, "cp '%s' '%s'", img, copy), 0);
		assert_int_equal(test_run(out, sizeof(out),
					  "flock -s '%s' -c \"'%s' create -f %s --force '%s' 8M\"",
					  img, vdisk, formats[i], img),
				 2);
		assert_contains(out, "in use");
		assert_int_equal(test_run(NULL, 0, "cmp '%s' '%s'", img, copy), 0);
		/* unheld, --force replaces it */
		assert_int_equal(run("create -f %s --force '%s' 8M", formats[i], img), 0);
		assert_int_not_equal(test_run(NULL, 0, "cmp -s '%s' '%s'", img, copy), 0);
	}
}

/* Runs vdisk in a child where io_uring_setup fails with ENOSYS, as on a kernel without
 * io_uring; output goes to out. Returns the exit status. */
static int run_without_io_uring(const char *args_path)
{
	struct sock_filter filter[] = {
		BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, nr)),
		BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, __NR_io_uring_setup, 0, 1),
		BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ERRNO | ENOSYS),
		BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
	};
	struct sock_fprog prog = { sizeof(filter) / sizeof(filter[0]), filter };
	const char *log = test_path("no-uring.log");
	pid_t pid = fork();
	if (pid == 0) {
		int fd = open(log, O_WRONLY | O_CREAT | O_TRUNC, 0644);
		dup2(fd, 1);
		dup2(fd, 2);
		if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) ||
		    prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, &prog))
			_exit(99);
		execl(vdisk, vdisk, "bench", "--ios", "200", "--json", args_path, (char *)NULL);
		_exit(98);
	}
	int status;
	waitpid(pid, &status, 0);
	FILE *f = fopen(log, "r");
	size_t n = f ? fread(out, 1, sizeof(out) - 1, f) : 0;
	out[n] = 0;
	if (f)
		fclose(f);
	return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

static void test_engine_fallback(void **state)
{
	(void)state;
	const char *img = test_path("fallback.raw");
	test_write_file(img, 1 << 20, 9);
	int status = run_without_io_uring(img);
	if (status == 99)
		skip(); /* seccomp unavailable */
	assert_int_equal(status, 0);
	assert_contains(out, "io_uring unavailable");
	assert_contains(out, "using libaio");
	assert_contains(out, "\"engine\": \"libaio\"");
	assert_contains(out, "\"ios\": 200");
}

/* VHD images from the CLI, read back by qemu-img and libvhdi's vhdiinfo. */
static void test_vhd_create_info(void **state)
{
	(void)state;
	const char *base = test_path("cli-base.vhd");
	const char *child = test_path("cli-child.vhd");
	assert_int_equal(run("create -f vhd %s 100M", base), 0);
	assert_int_equal(run("create -f vhd --parent %s %s", base, child), 0);
	assert_contains(out, "100 MiB");
	assert_int_equal(run("info --json %s", child), 0);
	assert_contains(out, "\"type\": \"differencing\"");
	assert_contains(out, "\"virtual_size\": 104857600");
	assert_contains(out, "cli-base.vhd");
	if (test_have("qemu-img")) {
		char q[4096];
		assert_int_equal(test_run(q, sizeof(q), "qemu-img info --output=json '%s'", base),
				 0);
		assert_contains(q, "\"virtual-size\": 104857600");
	}
	if (test_have("vhdiinfo")) {
		char v[4096];
		assert_int_equal(test_run(v, sizeof(v), "vhdiinfo '%s'", child), 0);
		assert_contains(v, "Differential");
		assert_contains(v, "104857600 bytes");
		assert_contains(v, "cli-base.vhd");
	}
	const char *fixed = test_path("cli-fixed.vhd");
	assert_int_equal(run("create -f vhd --type fixed --round-mib %s 1000000", fixed), 0);
	struct stat st;
	assert_int_equal(stat(fixed, &st), 0);
	assert_int_equal(st.st_size, 1048576 + 512);
	assert_int_equal(run("create -f vhd --type sparse %s 1M", test_path("bad.vhd")), 2);
	assert_int_equal(run("create -f vhd %s 3T", test_path("huge.vhd")), 2);
	assert_contains(out, "2040");
}

/* A damaged end footer: check finds it (exit 1), repair fixes it from the copy at 0. */
static void test_vhd_check_repair(void **state)
{
	(void)state;
	const char *img = test_path("damaged.vhd");
	assert_int_equal(run("create -f vhd %s 16M", img), 0);
	assert_int_equal(run("check %s", img), 0);
	assert_contains(out, "no problems found");
	struct stat st;
	assert_int_equal(stat(img, &st), 0);
	/* flip a byte inside the end footer's checksummed area */
	assert_int_equal(test_run(NULL, 0,
				  "printf 'X' | dd of='%s' bs=1 seek=%lld conv=notrunc 2>/dev/null",
				  img, (long long)st.st_size - 512 + 40),
			 0);
	assert_int_equal(run("check %s", img), 1);
	assert_int_equal(run("check --repair %s", img), 0);
	assert_contains(out, "repaired");
	assert_int_equal(run("check --json %s", img), 0);
	assert_contains(out, "\"errors\": 0");
	if (test_have("qemu-img")) {
		char q[4096];
		assert_int_equal(test_run(q, sizeof(q), "qemu-img info '%s'", img), 0);
		assert_contains(q, "vpc");
	}
}

/* A parent replaced by another image is refused unless forced; a chain that loops back
 * on itself is refused. */
static void test_vhd_chain_errors(void **state)
{
	(void)state;
	const char *base = test_path("p-base.vhd");
	const char *child = test_path("p-child.vhd");
	assert_int_equal(run("create -f vhd %s 8M", base), 0);
	assert_int_equal(run("create -f vhd --parent %s %s", base, child), 0);
	assert_int_equal(run("create -f vhd --force %s 8M", base), 0); /* a new identity */
	assert_int_equal(run("info %s", child), 2);
	assert_contains(out, "identity");
	assert_int_equal(run("info --allow-parent-mismatch %s", child), 0);

	/* loop: the base's path now holds a child of itself */
	const char *a = test_path("loop-a.vhd");
	const char *b = test_path("loop-b.vhd");
	assert_int_equal(run("create -f vhd %s 8M", a), 0);
	assert_int_equal(run("create -f vhd --parent %s %s", a, b), 0);
	assert_int_equal(test_run(NULL, 0, "cp '%s' '%s'", b, a), 0);
	assert_int_equal(run("info --allow-parent-mismatch %s", b), 2);
	assert_contains(out, "loop");

	assert_int_equal(test_run(NULL, 0, "rm -f '%s'", a), 0);
	assert_int_equal(run("info %s", b), 2);
	assert_contains(out, "loop-a.vhd");
}

/* VHDX images from the CLI, read back by qemu-img and vhdiinfo. */
static void test_vhdx_create_info(void **state)
{
	(void)state;
	const char *dyn = test_path("cli.vhdx");
	const char *child = test_path("cli-child.vhdx");
	const char *fixed = test_path("cli-fixed.vhdx");
	assert_int_equal(run("create -f vhdx %s 1G", dyn), 0);
	assert_int_equal(run("create -f vhdx --parent %s %s", dyn, child), 0);
	assert_contains(out, "1 GiB");
	assert_int_equal(run("create -f vhdx --type fixed %s 8M", fixed), 0);
	assert_int_equal(run("info --json %s", child), 0);
	assert_contains(out, "\"format\": \"vhdx\"");
	assert_contains(out, "\"type\": \"differencing\"");
	assert_contains(out, "\"virtual_size\": 1073741824");
	assert_int_equal(run("info %s", dyn), 0);
	assert_contains(out, "block size:      32 MiB");
	assert_int_equal(run("check %s", dyn), 0);
	if (test_have("qemu-img")) {
		char q[4096];
		assert_int_equal(test_run(q, sizeof(q), "qemu-img info --output=json '%s'", dyn),
				 0);
		assert_contains(q, "\"virtual-size\": 1073741824");
		assert_contains(q, "\"format\": \"vhdx\"");
		assert_int_equal(test_run(q, sizeof(q), "qemu-img check '%s'", dyn), 0);
		assert_int_equal(test_run(q, sizeof(q), "qemu-img check '%s'", fixed), 0);
	}
	if (test_have("vhdiinfo")) {
		char v[4096];
		assert_int_equal(test_run(v, sizeof(v), "vhdiinfo '%s'", child), 0);
		assert_contains(v, "VHDX");
		assert_contains(v, "1073741824 bytes");
		assert_contains(v, "Differential");
	}
	assert_int_equal(run("create -f vhdx %s 65T", test_path("huge.vhdx")), 2);
	assert_contains(out, "64 TiB");
	assert_int_equal(run("create -f vhdx --block-size 3M %s 1G", test_path("odd.vhdx")), 2);
}

/* A VHDX written with flushes by a process that is killed: the log is left dirty. info
 * refuses and names the repair, info --replay and check --repair replay it, and QEMU
 * then finds the image clean. */
static void test_vhdx_dirty_log(void **state)
{
	(void)state;
	const char *img = test_path("killed.vhdx");
	assert_int_equal(run("create -f vhdx --block-size 1M %s 256M", img), 0);
	assert_int_equal(
		test_run(NULL, 0,
			 "'%s' bench --rw randwrite --fsync 8 --runtime 30 '%s' >/dev/null & "
			 "pid=$!; sleep 2; kill -9 $pid; wait $pid",
			 vdisk, img),
		137);
	/* The killed process's io_uring lets go of the file (and its lock) asynchronously. */
	int ret;
	for (int tries = 0; (ret = run("info %s", img)) == 2 && strstr(out, "in use") && tries < 50;
	     tries++)
		usleep(100 * 1000);
	if (ret == 0)
		skip(); /* killed before the first write-back: nothing to replay */
	assert_int_equal(ret, 2);
	assert_contains(out, "check --repair");
	assert_int_equal(run("info --replay --json %s", img), 0);
	assert_contains(out, "\"format\": \"vhdx\"");
	assert_int_equal(run("check --repair %s", img), 0);
	if (test_have("qemu-img")) {
		char q[4096];
		assert_int_equal(test_run(q, sizeof(q), "qemu-img check '%s'", img), 0);
	}
}

int main(void)
{
	vdisk = test_vdisk_binary();
	if (!vdisk)
		return TEST_SKIP;
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_help),
		cmocka_unit_test(test_usage_errors),
		cmocka_unit_test(test_bad_files),
		cmocka_unit_test(test_create_sizes),
		cmocka_unit_test(test_create_allocated),
		cmocka_unit_test(test_bench_counts),
		cmocka_unit_test(test_bench_writes_data),
		cmocka_unit_test(test_bench_bad_options),
		cmocka_unit_test(test_locked_image),
		cmocka_unit_test(test_force_create_refuses_locked_image),
		cmocka_unit_test(test_engine_fallback),
		cmocka_unit_test(test_vhd_create_info),
		cmocka_unit_test(test_vhd_check_repair),
		cmocka_unit_test(test_vhd_chain_errors),
		cmocka_unit_test(test_vhdx_create_info),
		cmocka_unit_test(test_vhdx_dirty_log),
	};
	return cmocka_run_group_tests(tests, NULL, test_teardown_tmpdir);
}
