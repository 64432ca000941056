/* The control socket against a running generation 1 VM on this machine's /dev/kvm:
 * `vmm ctl` queries, pauses, resumes and stops a VM whose firmware finds nothing to boot
 * (SeaBIOS retries forever), and a second VM cannot take a disk the first one holds; SCSI
 * disks are added, grown and removed while such a VM runs, as query-block and the image
 * files show.
 */
#include <errno.h>
#include <jansson.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "test_util.h"

static const char *vmm_binary;
static pid_t vm_pid = -1;

static void sleep_ms(long ms)
{
	struct timespec ts = { ms / 1000, (ms % 1000) * 1000000 };
	nanosleep(&ts, NULL);
}

/* Starts `vmm run` with the given drive options in the background. */
static void start_vm(const char *drives, const char *sock)
{
	char cmd[2048];
	snprintf(cmd, sizeof(cmd),
		 "exec '%s' run --gen 1 --memory 64M --cpus 2 %s --control '%s' "
		 "--serial file:'%s' 2>'%s'",
		 vmm_binary, drives, sock, test_path("serial.log"), test_path("vmm.err"));
	vm_pid = fork();
	assert_true(vm_pid >= 0);
	if (vm_pid == 0) {
		execl("/bin/sh", "sh", "-c", cmd, (char *)NULL);
		_exit(127);
	}
	struct stat st;
	for (int i = 0; i < 200 && stat(sock, &st) != 0; i++)
		sleep_ms(50);
	if (stat(sock, &st) != 0)
		fail_msg("the control socket %s never appeared", sock);
}

/* Waits for the VM to exit; returns its status, or -1 after killing it on timeout. */
static int wait_vm(int timeout_ms)
{
	for (int waited = 0; waited < timeout_ms; waited += 20) {
		int status;
		pid_t r = waitpid(vm_pid, &status, WNOHANG);
		if (r == vm_pid) {
			vm_pid = -1;
			return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
		}
		sleep_ms(20);
	}
	kill(vm_pid, SIGKILL);
	waitpid(vm_pid, NULL, 0);
	vm_pid = -1;
	return -1;
}

/* `vmm ctl --json SOCK COMMAND`: the reply's "return" member (new reference). */
static json_t *ctl(const char *sock, const char *command)
{
	char out[8192];
	int status =
		test_run(out, sizeof(out), "'%s' ctl --json '%s' %s", vmm_binary, sock, command);
	if (status != 0)
		fail_msg("vmm ctl %s exited %d: %s", command, status, out);
	json_error_t e;
	json_t *reply = json_loads(out, 0, &e);
	if (!reply)
		fail_msg("vmm ctl %s printed no JSON: %s", command, out);
	json_t *ret = json_incref(json_object_get(reply, "return"));
	json_decref(reply);
	assert_non_null(ret);
	return ret;
}

/* `vmm ctl --json SOCK COMMAND` that the VM refuses: checks the error's class and text. */
static void ctl_refused(const char *sock, const char *command, const char *class, const char *desc)
{
	char out[8192];
	int status =
		test_run(out, sizeof(out), "'%s' ctl --json '%s' %s", vmm_binary, sock, command);
	json_t *reply = json_loads(out, 0, NULL);
	json_t *e = json_object_get(reply, "error");
	const char *got_class = json_string_value(json_object_get(e, "class"));
	const char *got_desc = json_string_value(json_object_get(e, "desc"));
	if (status != 1 || !got_class || strcmp(got_class, class) || !strstr(got_desc, desc))
		fail_msg("vmm ctl %s: want %s '%s', got status %d: %s", command, class, desc,
			 status, out);
	json_decref(reply);
}

static const char *status_of(const char *sock)
{
	static char text[32];
	json_t *r = ctl(sock, "query-status");
	snprintf(text, sizeof(text), "%s", json_string_value(json_object_get(r, "status")));
	json_decref(r);
	return text;
}

static json_t *drive_at(json_t *drives, const char *location)
{
	size_t i;
	json_t *d;
	json_array_foreach (drives, i, d) {
		if (!strcmp(json_string_value(json_object_get(d, "location")), location))
			return d;
	}
	fail_msg("query-block has no drive at %s", location);
	return NULL;
}

static uint64_t disk_reads(const char *sock)
{
	json_t *drives = ctl(sock, "query-block");
	json_t *stats = json_object_get(drive_at(drives, "ide:0:0"), "stats");
	uint64_t n = (uint64_t)json_integer_value(json_object_get(stats, "rd_operations"));
	json_decref(drives);
	return n;
}

static long file_size(const char *path)
{
	struct stat st;
	return stat(path, &st) == 0 ? (long)st.st_size : -1;
}

static void test_query_pause_resume_quit(void **state)
{
	(void)state;
	const char *raw = test_path("blank.raw"), *vhdx = test_path("blank.vhdx");
	const char *sock = test_path("vm.sock");
	test_run(NULL, 0, "truncate -s 8M '%s'", raw);
	char out[2048], drives[1024];
	if (test_run_vdisk(out, sizeof(out), "convert -O vhdx '%s' '%s'", raw, vhdx) != 0)
		fail_msg("vdisk convert: %s", out);
	snprintf(drives, sizeof(drives), "--disk ide:0:0='%s' --dvd ide:1:0", vhdx);
	start_vm(drives, sock);

	assert_string_equal(status_of(sock), "running");
	/* SeaBIOS reads the disk's first sector, finds no boot signature and retries. */
	uint64_t reads = 0;
	for (int i = 0; i < 200 && reads == 0; i++, sleep_ms(50))
		reads = disk_reads(sock);
	assert_true(reads > 0);

	/* the exit counters move while SeaBIOS runs; the drive counters match query-block's */
	json_t *stats = ctl(sock, "query-stats");
	uint64_t exits = (uint64_t)json_integer_value(json_object_get(stats, "exits"));
	assert_true(json_integer_value(json_object_get(stats, "io_exits")) > 0);
	json_t *first = json_array_get(json_object_get(stats, "drives"), 0);
	assert_string_equal(json_string_value(json_object_get(first, "location")), "ide:0:0");
	assert_true((uint64_t)json_integer_value(json_object_get(first, "reads")) >= reads);
	json_decref(stats);
	sleep_ms(200);
	stats = ctl(sock, "query-stats");
	assert_true((uint64_t)json_integer_value(json_object_get(stats, "exits")) > exits);
	json_decref(stats);

	json_t *list = ctl(sock, "query-block");
	assert_int_equal(json_array_size(list), 2);
	json_t *disk = drive_at(list, "ide:0:0"), *dvd = drive_at(list, "ide:1:0");
	assert_string_equal(json_string_value(json_object_get(disk, "kind")), "disk");
	assert_string_equal(json_string_value(json_object_get(disk, "format")), "vhdx");
	assert_string_equal(json_string_value(json_object_get(disk, "file")), vhdx);
	assert_int_equal(json_integer_value(json_object_get(disk, "size")), 8 << 20);
	assert_true(json_is_true(json_object_get(disk, "inserted")));
	assert_string_equal(json_string_value(json_object_get(dvd, "kind")), "dvd");
	assert_true(json_is_false(json_object_get(dvd, "inserted")));
	assert_true(json_is_null(json_object_get(dvd, "file")));
	json_decref(list);

	/* Paused, the guest makes no progress: its serial output stops growing. */
	json_decref(ctl(sock, "pause"));
	assert_string_equal(status_of(sock), "paused");
	long before = file_size(test_path("serial.log"));
	uint64_t reads_before = disk_reads(sock);
	sleep_ms(1500);
	assert_int_equal(file_size(test_path("serial.log")), before);
	assert_int_equal(disk_reads(sock), reads_before);
	json_decref(ctl(sock, "resume"));
	assert_string_equal(status_of(sock), "running");

	/* A second VM cannot attach the disk the first one holds. */
	int second = test_run(out, sizeof(out),
			      "timeout 30 '%s' run --memory 64M --disk ide:0:0='%s' --serial none",
			      vmm_binary, vhdx);
	assert_int_equal(second, 2);
	assert_contains(out, "in use");

	json_decref(ctl(sock, "quit"));
	assert_int_equal(wait_vm(10000), 0);
	assert_int_equal(file_size(sock), -1); /* the socket is gone */
}

/* The drive at location in query-block, or NULL (a new reference). */
static json_t *find_drive(const char *sock, const char *location)
{
	json_t *drives = ctl(sock, "query-block"), *found = NULL, *d;
	size_t i;
	json_array_foreach (drives, i, d) {
		if (!strcmp(json_string_value(json_object_get(d, "location")), location))
			found = json_incref(d);
	}
	json_decref(drives);
	return found;
}

static void test_scsi_hotplug(void **state)
{
	(void)state;
	const char *boot = test_path("boot.raw"), *data = test_path("data.raw");
	const char *sock = test_path("hot.sock");
	char out[2048], drives[1024], cmd[1024];
	test_run(NULL, 0, "truncate -s 8M '%s' '%s'", boot, data);
	snprintf(drives, sizeof(drives), "--disk ide:0:0='%s' --scsi-controller 0", boot);
	start_vm(drives, sock);
	assert_string_equal(status_of(sock), "running");
	assert_null(find_drive(sock, "scsi:0:2"));
	/* the empty controller is on the VMBus host; no guest driver has connected */
	json_t *vm_stats = ctl(sock, "query-stats");
	json_t *vmbus = json_object_get(vm_stats, "vmbus");
	assert_string_equal(json_string_value(json_object_get(vmbus, "version")), "0.0");
	json_t *scsi = json_array_get(json_object_get(vmbus, "scsi"), 0);
	assert_int_equal(json_integer_value(json_object_get(scsi, "controller")), 0);
	assert_string_equal(json_string_value(json_object_get(scsi, "protocol")), "0.0");
	json_decref(vm_stats);

	snprintf(cmd, sizeof(cmd), "scsi-add controller=0 lun=2 file='%s'", data);
	json_decref(ctl(sock, cmd));
	json_t *d = find_drive(sock, "scsi:0:2");
	assert_non_null(d);
	assert_string_equal(json_string_value(json_object_get(d, "kind")), "disk");
	assert_string_equal(json_string_value(json_object_get(d, "format")), "raw");
	assert_string_equal(json_string_value(json_object_get(d, "file")), data);
	assert_int_equal(json_integer_value(json_object_get(d, "size")), 8 << 20);
	assert_true(json_is_false(json_object_get(d, "read_only")));
	json_t *stats = json_object_get(d, "stats");
	assert_int_equal(json_integer_value(json_object_get(stats, "rd_operations")), 0);
	json_decref(d);

	/* what the VM refuses, and why */
	ctl_refused(sock, cmd, "CommandFailed", "scsi:0:2 already holds a disk");
	snprintf(cmd, sizeof(cmd), "scsi-add controller=0 lun=3 file='%s'", data);
	ctl_refused(sock, cmd, "CommandFailed", "in use"); /* the image is locked */
	snprintf(cmd, sizeof(cmd), "scsi-add controller=1 lun=0 file='%s'", data);
	ctl_refused(sock, cmd, "DeviceNotFound", "the VM has no SCSI controller 1");
	snprintf(cmd, sizeof(cmd), "scsi-add controller=0 lun=4 file='%s'", test_path("none"));
	ctl_refused(sock, cmd, "CommandFailed", "cannot open");
	ctl_refused(sock, "block-resize controller=0 lun=2 size=4194304", "CommandFailed",
		    "shrinking a disk in use is refused");
	ctl_refused(sock, "block-resize controller=0 lun=5 size=4194304", "DeviceNotFound",
		    "scsi:0:5 holds no disk");
	ctl_refused(sock, "block-resize controller=0 lun=2 size=16777217", "CommandFailed",
		    "multiple of the 512-byte sector");
	ctl_refused(sock, "block-resize controller=0 lun=2 size=9223372036854775296",
		    "CommandFailed", "cannot resize scsi:0:2");
	assert_int_equal(file_size(data), 8 << 20);

	/* grown while the VM runs: the file and query-block agree */
	json_decref(ctl(sock, "block-resize controller=0 lun=2 size=16777216"));
	assert_int_equal(file_size(data), 16 << 20);
	d = find_drive(sock, "scsi:0:2");
	assert_int_equal(json_integer_value(json_object_get(d, "size")), 16 << 20);
	json_decref(d);

	/* removed: gone from query-block, and the image is free for vdisk again */
	json_decref(ctl(sock, "scsi-remove controller=0 lun=2"));
	assert_null(find_drive(sock, "scsi:0:2"));
	ctl_refused(sock, "scsi-remove controller=0 lun=2", "DeviceNotFound",
		    "scsi:0:2 holds no disk");
	if (test_run_vdisk(out, sizeof(out), "resize '%s' 24M", data) != 0)
		fail_msg("vdisk resize after scsi-remove: %s", out);
	assert_int_equal(file_size(data), 24 << 20);
	/* and a LUN takes a disk again, read-only this time */
	snprintf(cmd, sizeof(cmd), "scsi-add controller=0 lun=2 file='%s' read-only=true", data);
	json_decref(ctl(sock, cmd));
	d = find_drive(sock, "scsi:0:2");
	assert_true(json_is_true(json_object_get(d, "read_only")));
	assert_int_equal(json_integer_value(json_object_get(d, "size")), 24 << 20);
	json_decref(d);
	ctl_refused(sock, "block-resize controller=0 lun=2 size=33554432", "CommandFailed",
		    "read-only");

	json_decref(ctl(sock, "quit"));
	assert_int_equal(wait_vm(10000), 0);
}

static int teardown(void **state)
{
	if (vm_pid > 0) {
		kill(vm_pid, SIGKILL);
		waitpid(vm_pid, NULL, 0);
	}
	return test_teardown_tmpdir(state);
}

int main(void)
{
	vmm_binary = getenv("VMM");
	if (!vmm_binary || access(vmm_binary, X_OK) != 0) {
		printf("skipped: VMM must name the built vmm\n");
		return TEST_SKIP;
	}
	if (access("/dev/kvm", R_OK | W_OK) != 0) {
		printf("skipped: /dev/kvm is not usable (%s)\n", strerror(errno));
		return TEST_SKIP;
	}
	if (!test_vdisk_binary())
		return TEST_SKIP;
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_query_pause_resume_quit),
		cmocka_unit_test(test_scsi_hotplug),
	};
	return cmocka_run_group_tests(tests, NULL, teardown);
}
