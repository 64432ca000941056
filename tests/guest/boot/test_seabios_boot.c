/* SeaBIOS boots our generation 1 VM from an IDE disk (raw, VHD, VHDX made by vdisk) and
 * from an El Torito ISO on the IDE DVD, on this machine's /dev/kvm.
 *
 * The boot sector (bootsect.S) reads sectors through INT 13h and prints a checksum on COM1;
 * the test computes the same checksum over the image's bytes itself, so the firmware, the
 * platform, the IDE model and the format drivers are all checked against the file. The
 * disk variant also writes one sector back through INT 13h, which the test reads with
 * qemu-img (an independent reader of VHD/VHDX) after the VM is gone.
 */
#include <fcntl.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "boot_vm.h"
#include "test_util.h"

#define SECTOR		 512
#define CD_SECTOR	 2048
#define PARAMS		 0x1E0
#define READ_SECTORS	 2048 /* 1 MiB through INT 13h */
#define WRITE_LBA	 (READ_SECTORS + 16)
#define DISK_BYTES	 (4u << 20)
#define RESETBOOT_METHOD 0x1F0 /* resetboot.S: params_method */

struct boot_params {
	uint32_t start, count, write_lba;
	uint16_t sector_size, chunk;
};

static const char *bootsect_path;

static void put_params(uint8_t *sector, const struct boot_params *p)
{
	uint8_t *q = sector + PARAMS;
	memcpy(q, &p->start, 4);
	memcpy(q + 4, &p->count, 4);
	memcpy(q + 8, &p->write_lba, 4);
	memcpy(q + 12, &p->sector_size, 2);
	memcpy(q + 14, &p->chunk, 2);
}

static void read_bootsect(uint8_t sector[SECTOR])
{
	test_file_read(bootsect_path, sector, SECTOR, 0);
	assert_int_equal(sector[510], 0x55);
	assert_int_equal(sector[511], 0xAA);
}

/* Runs the VM; returns the exit status and leaves the serial log in log (truncated). */
static int run_vm(const char *devices, char *log, size_t log_size)
{
	char out[4096];
	return boot_run_vm(devices, log, log_size, out, sizeof(out));
}

static void expect_sum_line(const char *log, uint32_t sum, uint32_t sectors)
{
	char want[80];
	snprintf(want, sizeof(want), "hvboot: sum %08X sectors %08X", sum, sectors);
	assert_contains(log, want);
}

/* A raw disk: the boot sector, READ_SECTORS of pattern, zeros after. */
static uint8_t *make_raw_disk(const char *path)
{
	uint8_t *disk = test_xmalloc(DISK_BYTES);
	memset(disk, 0, DISK_BYTES);
	read_bootsect(disk);
	struct boot_params p = { .start = 1,
				 .count = READ_SECTORS,
				 .write_lba = WRITE_LBA,
				 .sector_size = SECTOR,
				 .chunk = 64 };
	put_params(disk, &p);
	test_fill_pattern(disk + SECTOR, (size_t)READ_SECTORS * SECTOR, SECTOR, 0xB007);
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
	assert_true(fd >= 0);
	assert_int_equal(write(fd, disk, DISK_BYTES), DISK_BYTES);
	close(fd);
	return disk;
}

/* The sector the boot sector wrote, read back through qemu-img (raw output). */
static void expect_written_sector(const char *image, const char *qemu_format, uint32_t sum)
{
	const char *raw = test_path("readback.raw");
	char out[2048];
	int ret = test_run(out, sizeof(out), "qemu-img convert -f %s -O raw '%s' '%s'", qemu_format,
			   image, raw);
	if (ret != 0)
		fail_msg("qemu-img convert: %s", out);
	uint8_t got[SECTOR], want[SECTOR] = { 0 };
	memcpy(want, "hvboot-wrote", 12);
	memcpy(want + 12, &sum, 4);
	test_file_read(raw, got, SECTOR, (uint64_t)WRITE_LBA * SECTOR);
	test_expect_equal(got, want, SECTOR, "sector written through INT 13h",
			  (uint64_t)WRITE_LBA * SECTOR);
}

static void boot_disk(const char *format, const char *qemu_format)
{
	const char *raw = test_path("disk.raw");
	uint8_t *disk = make_raw_disk(raw);
	uint32_t sum = boot_fold(disk + SECTOR, (size_t)READ_SECTORS * SECTOR);
	char image[512];
	snprintf(image, sizeof(image), "%s", raw);
	if (strcmp(format, "raw") != 0) {
		snprintf(image, sizeof(image), "%s", test_path(format));
		char out[2048];
		if (test_run_vdisk(out, sizeof(out), "convert -O %s '%s' '%s'", format, raw,
				   image) != 0)
			fail_msg("vdisk convert: %s", out);
	}
	char devices[700], log[16384];
	snprintf(devices, sizeof(devices), "--disk ide:0:0='%s'", image);
	assert_int_equal(run_vm(devices, log, sizeof(log)), 64);
	expect_sum_line(log, sum, READ_SECTORS);
	assert_contains(log, "hvboot: wrote");
	expect_written_sector(image, qemu_format, sum);
	char out[4096];
	if (test_run_vdisk(out, sizeof(out), "check '%s'", image) != 0)
		fail_msg("vdisk check after the boot: %s", out);
	free(disk);
}

static void test_boot_raw(void **state)
{
	(void)state;
	boot_disk("raw", "raw");
}

static void test_boot_vhd(void **state)
{
	(void)state;
	boot_disk("vhd", "vpc");
}

static void test_boot_vhdx(void **state)
{
	(void)state;
	boot_disk("vhdx", "vhdx");
}

/* An ISO whose El Torito no-emulation image is the boot sector; it reads the whole ISO
 * through INT 13h on the DVD (2048-byte sectors). */
static void test_boot_dvd(void **state)
{
	(void)state;
	if (test_run(NULL, 0, "command -v xorriso >/dev/null") != 0)
		skip();
	const char *root = test_path("isoroot");
	char out[4096];
	assert_int_equal(test_run(out, sizeof(out), "mkdir -p '%s'", root), 0);
	uint8_t boot[CD_SECTOR] = { 0 };
	read_bootsect(boot);
	char path[600];
	snprintf(path, sizeof(path), "%s/boot.bin", root);
	FILE *bf = fopen(path, "wb");
	assert_non_null(bf);
	assert_int_equal(fwrite(boot, 1, sizeof(boot), bf), sizeof(boot));
	fclose(bf);
	snprintf(path, sizeof(path), "%s/data.bin", root);
	test_write_file(path, 700 * 1024, 0xD7D);
	const char *iso = test_path("boot.iso");
	if (test_run(out, sizeof(out),
		     "xorriso -as mkisofs -quiet -o '%s' -b boot.bin -no-emul-boot "
		     "-boot-load-size 4 '%s'",
		     iso, root) != 0)
		fail_msg("xorriso: %s", out);

	/* Patch the parameters into the boot image inside the ISO (found by content). */
	FILE *f = fopen(iso, "r+b");
	assert_non_null(f);
	fseek(f, 0, SEEK_END);
	long size = ftell(f);
	assert_true(size > 0 && size % CD_SECTOR == 0);
	uint8_t *img = test_xmalloc((size_t)size);
	test_file_read(iso, img, (size_t)size, 0);
	long at = -1;
	for (long s = 0; s < size && at < 0; s += CD_SECTOR)
		if (memcmp(img + s, boot, SECTOR) == 0)
			at = s;
	assert_true(at >= 0);
	struct boot_params p = { .start = 0,
				 .count = (uint32_t)(size / CD_SECTOR),
				 .sector_size = CD_SECTOR,
				 .chunk = 16 };
	put_params(img + at, &p);
	fseek(f, at, SEEK_SET);
	assert_int_equal(fwrite(img + at, 1, SECTOR, f), SECTOR);
	fclose(f);

	char devices[700], log[16384];
	snprintf(devices, sizeof(devices), "--dvd ide:1:0='%s' --boot dvd", iso);
	assert_int_equal(run_vm(devices, log, sizeof(log)), 64);
	expect_sum_line(log, boot_fold(img, (size_t)size), p.count);
	free(img);
}

/* The guest resets the machine while its disk has a command in progress, as a kernel
 * that reboots or triple-faults in the middle of its I/O leaves it (resetboot.S):
 * SeaBIOS finds the disk again and boots it a second time. */
static void reboot_after_reset(uint8_t method, const char *cause)
{
	const char *program = getenv("RESETBOOT");
	if (!program)
		skip();
	uint8_t disk[2 * SECTOR] = { 0 };
	test_file_read(program, disk, SECTOR, 0);
	disk[RESETBOOT_METHOD] = method;
	const char *raw = test_path("reset.raw");
	int fd = open(raw, O_WRONLY | O_CREAT | O_TRUNC, 0644);
	assert_true(fd >= 0);
	assert_int_equal(write(fd, disk, sizeof(disk)), sizeof(disk));
	assert_int_equal(ftruncate(fd, DISK_BYTES), 0);
	close(fd);
	char devices[700], log[16384], out[4096];
	snprintf(devices, sizeof(devices), "--disk ide:0:0='%s'", raw);
	assert_int_equal(boot_run_vm_rebooting(devices, 60, log, sizeof(log), out, sizeof(out)),
			 BOOT_VM_EXIT_OK);
	assert_contains(log, "hvreset: resetting");
	assert_contains(log, "hvreset: rebooted");
	char want[160];
	snprintf(want, sizeof(want), "vmm: the guest reset the machine (%s", cause);
	assert_contains(out, want);
}

static void test_reboot_after_reset_register(void **state)
{
	(void)state;
	reboot_after_reset(1, "reset control register)");
}

static void test_reboot_after_triple_fault(void **state)
{
	(void)state;
	reboot_after_reset(2, "triple fault on vCPU 0 at CS:IP 0008:");
}

static void test_reboot_after_keyboard_controller_reset(void **state)
{
	(void)state;
	reboot_after_reset(3, "keyboard controller reset line)");
}

int main(void)
{
	int ret = boot_test_init("BOOTSECT", &bootsect_path);
	if (ret)
		return ret;
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_boot_raw),
		cmocka_unit_test(test_boot_vhd),
		cmocka_unit_test(test_boot_vhdx),
		cmocka_unit_test(test_boot_dvd),
		cmocka_unit_test(test_reboot_after_reset_register),
		cmocka_unit_test(test_reboot_after_triple_fault),
		cmocka_unit_test(test_reboot_after_keyboard_controller_reset),
	};
	return cmocka_run_group_tests(tests, NULL, test_teardown_tmpdir);
}
