/* `vmm run --kernel/--initrd/--append` end to end on this machine's /dev/kvm: SeaBIOS runs
 * the Linux loader option ROM from fw_cfg, the ROM loads a fake bzImage (fakelinux.S)
 * through fw_cfg DMA and enters its real-mode setup, and the fake reports on COM1 what it
 * was given: the setup address, the header fields the loader writes, the command line,
 * the initrd's address, size and a checksum of its bytes in guest memory, and the head and
 * checksum of the protected-mode kernel at code32_start. The test compares all of it with
 * the files it passed. The refusals (not a bzImage, too old, initrd or command line too
 * large) need no /dev/kvm: they happen before a VM exists.
 */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "endian.h"
#include "linux_boot.h"
#include "boot_vm.h"
#include "test_util.h"

#define INITRD_BYTES  (200u * 1024 + 3) /* not a whole number of dwords or pages */
#define EXIT_FAIL     2			/* CLI_EXIT_FAIL */
#define EXIT_GUEST_OK 64		/* --test-exit with 0 */
#define FOLD_SEED     0x12345678u
#define HEAD_BYTES    16

static const char *vmm_binary;
static const char *fakelinux_path;
static const char *bootsect_path;
static bool have_kvm;

/* The fake's checksum: the bytes zero-padded to whole dwords, h = rol(h, 5) ^ dword. */
static uint32_t fold_padded(const uint8_t *data, size_t len)
{
	uint32_t h = FOLD_SEED;
	for (size_t i = 0; i < len; i += 4) {
		uint8_t w[4] = { 0 };
		memcpy(w, data + i, len - i < 4 ? len - i : 4);
		h = (h << 5 | h >> 27) ^ load_le32(w);
	}
	return h;
}

struct fake_kernel {
	uint8_t *image;
	size_t size;
};

static struct fake_kernel read_fake(void)
{
	struct fake_kernel k;
	uint8_t *buf;
	assert_int_equal(linux_boot_read_file(fakelinux_path, 1u << 20, &buf, &k.size), 0);
	k.image = buf;
	return k;
}

static void write_new_file(const char *path, const void *data, size_t len)
{
	FILE *f = fopen(path, "wb");
	assert_non_null(f);
	assert_int_equal(fwrite(data, 1, len, f), len);
	assert_int_equal(fclose(f), 0);
}

static const char *write_kernel(const struct fake_kernel *k, const char *name)
{
	const char *path = test_path(name);
	write_new_file(path, k->image, k->size);
	return path;
}

static uint8_t *make_initrd(const char *path, size_t len)
{
	uint8_t *data = test_xmalloc(len);
	test_fill_pattern(data, len, 0, 0x1A17D);
	write_new_file(path, data, len);
	return data;
}

static void boot(const char *args, char *log, size_t log_size)
{
	char out[4096];
	int status = boot_run_vm(args, log, log_size, out, sizeof(out));
	if (status != EXIT_GUEST_OK)
		fail_msg("vmm exited %d\n%s\nserial:\n%s", status, out, log);
	assert_contains(log, "fakelinux: done");
}

struct reported_initrd {
	uint32_t addr, size, sum;
};

static struct reported_initrd reported_initrd(const char *log)
{
	struct reported_initrd r;
	const char *line = strstr(log, "fakelinux: initrd ");
	assert_non_null(line);
	assert_int_equal(
		sscanf(line, "fakelinux: initrd %x size %x sum %x", &r.addr, &r.size, &r.sum), 3);
	return r;
}

/* What every boot must show: the protocol's layout, the fields written, the kernel. */
static void expect_common(const char *log, const struct fake_kernel *k, const char *cmdline)
{
	char want[256];
	snprintf(want, sizeof(want),
		 "fakelinux: setup %08X loader %02X flags %02X heap %04X vid %04X",
		 LINUX_BOOT_SETUP_ADDR, LINUX_BOOT_LOADER_ID,
		 LINUX_LOADED_HIGH | LINUX_CAN_USE_HEAP, LINUX_BOOT_HEAP_END_PTR,
		 LINUX_VID_MODE_NORMAL);
	assert_contains(log, want);
	snprintf(want, sizeof(want), "fakelinux: cmdline [%s]\r\n", cmdline);
	assert_contains(log, want);

	const uint8_t *pm = k->image + (k->image[LINUX_HDR_SETUP_SECTS] + 1) * LINUX_SECTOR;
	size_t pm_len = load_le32(k->image + LINUX_HDR_SYSSIZE) * 16u;
	assert_int_equal(pm_len, k->size - (size_t)(pm - k->image));
	int at = snprintf(want, sizeof(want), "fakelinux: kernel %08X head ",
			  LINUX_BOOT_KERNEL_ADDR);
	for (int i = 0; i < HEAD_BYTES; i++)
		at += snprintf(want + at, sizeof(want) - (size_t)at, "%02X", pm[i]);
	snprintf(want + at, sizeof(want) - (size_t)at, " sum %08X", fold_padded(pm, pm_len));
	assert_contains(log, want);
}

static void set_initrd_addr_max(struct fake_kernel *k, uint32_t max)
{
	store_le32(k->image + LINUX_HDR_INITRD_ADDR_MAX, max);
}

/* Boots k with a fresh INITRD_BYTES initrd and cmdline; checks what every boot shows and
 * the initrd's size and bytes, and returns the address the kernel was told. */
static uint32_t boot_with_initrd(const struct fake_kernel *k, const char *cmdline)
{
	const char *kernel = write_kernel(k, "kernel");
	const char *initrd_path = test_path("initrd.img");
	uint8_t *initrd = make_initrd(initrd_path, INITRD_BYTES);
	char args[1024], log[8192];
	snprintf(args, sizeof(args), "--kernel '%s' --initrd '%s' --append '%s'", kernel,
		 initrd_path, cmdline);
	boot(args, log, sizeof(log));
	expect_common(log, k, cmdline);
	struct reported_initrd r = reported_initrd(log);
	assert_int_equal(r.size, INITRD_BYTES);
	assert_int_equal(r.sum, fold_padded(initrd, INITRD_BYTES));
	free(initrd);
	return r.addr;
}

/* initrd_addr_max below the RAM: the ROM keeps the address the VMM chose, which is the
 * highest page-aligned one whose initrd ends below initrd_addr_max. */
static void test_initrd_below_initrd_addr_max(void **state)
{
	(void)state;
	if (!have_kvm)
		skip();
	struct fake_kernel k = read_fake();
	const uint32_t max = 0x01FFFFFF; /* 32 MiB in a 64 MiB VM */
	set_initrd_addr_max(&k, max);
	uint32_t addr = boot_with_initrd(&k, "console=ttyS0 root=/dev/sda1 hv.test=\"a b\" end");
	assert_int_equal(addr, (max - INITRD_BYTES) & ~0xFFFu);
	free(k.image);
}

/* RAM below initrd_addr_max: the ROM puts the initrd at the top of the RAM SeaBIOS reports,
 * which must be page aligned, at or above the VMM's choice and inside RAM. */
static void test_initrd_at_top_of_ram(void **state)
{
	(void)state;
	if (!have_kvm)
		skip();
	struct fake_kernel k = read_fake();
	uint32_t addr = boot_with_initrd(&k, "console=ttyS0");
	const uint64_t ram = (uint64_t)BOOT_VM_MEMORY_MIB << 20;
	uint64_t vmm_choice = (ram - LINUX_BOOT_FW_RESERVE - 1 - INITRD_BYTES) & ~0xFFFull;
	assert_int_equal(addr % LINUX_BOOT_INITRD_ALIGN, 0);
	assert_true(addr >= vmm_choice);
	assert_true((uint64_t)addr + INITRD_BYTES <= ram);
	free(k.image);
}

/* No initrd, no --append: ramdisk fields 0 and an empty command line. */
static void test_no_initrd_no_append(void **state)
{
	(void)state;
	if (!have_kvm)
		skip();
	struct fake_kernel k = read_fake();
	char args[1024], log[8192];
	snprintf(args, sizeof(args), "--kernel '%s'", write_kernel(&k, "kernel"));
	boot(args, log, sizeof(log));
	expect_common(log, &k, "");
	char want[80];
	snprintf(want, sizeof(want), "fakelinux: initrd 00000000 size 00000000 sum %08X",
		 FOLD_SEED);
	assert_contains(log, want);
	free(k.image);
}

/* A bootable disk attached too: the loader ROM still boots first. */
static void test_kernel_before_disk(void **state)
{
	(void)state;
	if (!have_kvm || !bootsect_path)
		skip();
	uint8_t sector[LINUX_SECTOR];
	test_file_read(bootsect_path, sector, sizeof(sector), 0);
	const char *disk = test_path("boot.raw");
	write_new_file(disk, sector, sizeof(sector));
	assert_int_equal(truncate(disk, 1 << 20), 0);
	struct fake_kernel k = read_fake();
	char args[1024], log[8192];
	snprintf(args, sizeof(args), "--disk ide:0:0='%s' --kernel '%s'", disk,
		 write_kernel(&k, "kernel"));
	boot(args, log, sizeof(log));
	if (strstr(log, "hvboot:"))
		fail_msg("the disk booted before the kernel:\n%s", log);
	free(k.image);
}

/* ---- refusals, before any VM exists ---- */

static void expect_refusal(const char *args, const char *message)
{
	char out[4096], log[1024];
	int status = boot_run_vm(args, log, sizeof(log), out, sizeof(out));
	if (status != EXIT_FAIL)
		fail_msg("vmm exited %d, want %d:\n%s", status, EXIT_FAIL, out);
	assert_contains(out, message);
}

static void test_refuses_non_bzimage(void **state)
{
	(void)state;
	const char *junk = test_path("junk.bin");
	test_write_file(junk, 64 * 1024, 0x7A4C);
	char args[700];
	snprintf(args, sizeof(args), "--kernel '%s'", junk);
	expect_refusal(args, "is not a Linux kernel");

	struct fake_kernel k = read_fake();
	store_le16(k.image + LINUX_HDR_VERSION, 0x0205);
	snprintf(args, sizeof(args), "--kernel '%s'", write_kernel(&k, "old-kernel"));
	expect_refusal(args, "boot protocol 2.05");
	store_le16(k.image + LINUX_HDR_VERSION, 0x020F);
	k.image[LINUX_HDR_LOADFLAGS] = 0;
	snprintf(args, sizeof(args), "--kernel '%s'", write_kernel(&k, "zimage"));
	expect_refusal(args, "zImage");
	k.image[LINUX_HDR_LOADFLAGS] = LINUX_LOADED_HIGH;
	k.size -= 16; /* shorter than syssize says */
	snprintf(args, sizeof(args), "--kernel '%s'", write_kernel(&k, "truncated"));
	expect_refusal(args, "truncated");
	free(k.image);
}

static void test_refuses_what_does_not_fit(void **state)
{
	(void)state;
	struct fake_kernel k = read_fake();
	const char *kernel = write_kernel(&k, "kernel");
	/* The fake needs RAM up to 17 MiB (pref_address 16 MiB + init_size 1 MiB); the
	 * initrd may end 1 MiB below the end of RAM. */
	const char *initrd = test_path("big-initrd.img");
	test_write_file(initrd, (uint64_t)(BOOT_VM_MEMORY_MIB - 18) << 20, 0xB16);
	char args[700];
	snprintf(args, sizeof(args), "--kernel '%s' --initrd '%s'", kernel, initrd);
	expect_refusal(args, "does not fit");

	store_le32(k.image + LINUX_HDR_CMDLINE_SIZE, 8);
	snprintf(args, sizeof(args), "--kernel '%s' --append 123456789",
		 write_kernel(&k, "short-cmdline"));
	expect_refusal(args, "the command line has 9 characters; the kernel takes at most 8");
	free(k.image);
}

int main(void)
{
	vmm_binary = getenv("VMM");
	fakelinux_path = getenv("FAKELINUX");
	bootsect_path = getenv("BOOTSECT");
	if (!vmm_binary || !fakelinux_path || access(vmm_binary, X_OK) != 0) {
		printf("skipped: VMM and FAKELINUX must name the built vmm and fake kernel\n");
		return TEST_SKIP;
	}
	if (access(LINUX_BOOT_DEFAULT_ROM, R_OK) != 0) {
		printf("skipped: %s is missing (install qemu-system-data)\n",
		       LINUX_BOOT_DEFAULT_ROM);
		return TEST_SKIP;
	}
	have_kvm = access("/dev/kvm", R_OK | W_OK) == 0;
	if (!have_kvm)
		printf("/dev/kvm is not usable (%s): the boots are skipped\n", strerror(errno));
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_refuses_non_bzimage),
		cmocka_unit_test(test_refuses_what_does_not_fit),
		cmocka_unit_test(test_initrd_below_initrd_addr_max),
		cmocka_unit_test(test_initrd_at_top_of_ram),
		cmocka_unit_test(test_no_initrd_no_append),
		cmocka_unit_test(test_kernel_before_disk),
	};
	return cmocka_run_group_tests(tests, NULL, test_teardown_tmpdir);
}
