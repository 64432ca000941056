/* Direct Linux boot on the generation 1 platform (`vmm run --kernel`): the VMM's half of the
 * Linux x86 boot protocol (Documentation/arch/x86/boot.rst) for a bzImage.
 *
 * The firmware does the loading: SeaBIOS runs the option ROM published as
 * LINUX_BOOT_ROM_FILE (Debian's qemu-system-data linuxboot_dma.bin) as the first boot
 * device; the ROM reads the items below through fw_cfg DMA, copies the real-mode setup, the
 * protected-mode kernel, the initrd and the command line to the addresses they name, and
 * enters the setup code at (setup segment + 0x20):0 with the stack below the command line.
 * This module checks the kernel's setup header, chooses those addresses, patches the
 * fields a boot loader writes, and publishes the items. Everything here works on buffers
 * (no KVM, no printing), so the unit tests drive it with made-up and real kernels.
 *
 * Memory the kernel gets (the protocol's layout for a modern bzImage):
 *   0x10000   boot sector + setup (at most 32 KiB), its heap and stack up to 0x20000;
 *   0x20000   the command line (NUL-terminated);
 *   0x100000  the protected-mode kernel (the rest of the file);
 *   initrd    page aligned, as high as allowed below min(initrd_addr_max, the top of RAM
 *             below 4 GiB less LINUX_BOOT_FW_RESERVE), above what the kernel occupies
 *             while it starts (its runtime start + init_size).
 * The ROM keeps that initrd address when the initrd ends in the page of initrd_addr_max;
 * otherwise (RAM, not initrd_addr_max, is the limit) it moves the initrd to the top of
 * the RAM the BIOS reports (INT 15h E801) and rewrites ramdisk_image, which is at or
 * above the address chosen here since the BIOS keeps less than LINUX_BOOT_FW_RESERVE.
 */
#ifndef HV_VMM_LINUX_BOOT_H
#define HV_VMM_LINUX_BOOT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "fw_cfg.h"

/* The loader ROM: its default path, its fw_cfg file and the bootorder entry that makes
 * SeaBIOS run it before any disk. */
#define LINUX_BOOT_DEFAULT_ROM "/usr/share/qemu/linuxboot_dma.bin"
#define LINUX_BOOT_ROM_FILE    "genroms/linuxboot_dma.bin"
#define LINUX_BOOT_ROM_PATH    "/rom@" LINUX_BOOT_ROM_FILE

/* fw_cfg items the ROM reads: u32 addresses and sizes (little-endian), then the data. */
#define FW_CFG_KERNEL_ADDR  0x07
#define FW_CFG_KERNEL_SIZE  0x08
#define FW_CFG_INITRD_ADDR  0x0A
#define FW_CFG_INITRD_SIZE  0x0B
#define FW_CFG_KERNEL_DATA  0x11
#define FW_CFG_INITRD_DATA  0x12
#define FW_CFG_CMDLINE_ADDR 0x13
#define FW_CFG_CMDLINE_SIZE 0x14
#define FW_CFG_CMDLINE_DATA 0x15
#define FW_CFG_SETUP_ADDR   0x16
#define FW_CFG_SETUP_SIZE   0x17
#define FW_CFG_SETUP_DATA   0x18

/* Setup header offsets from the start of the file. */
#define LINUX_HDR_SETUP_SECTS	  0x1F1 /* u8, 0 means 4 */
#define LINUX_HDR_SYSSIZE	  0x1F4 /* u32, 16-byte units of protected-mode code */
#define LINUX_HDR_VID_MODE	  0x1FA /* u16 */
#define LINUX_HDR_BOOT_FLAG	  0x1FE /* u16, 0xAA55 */
#define LINUX_HDR_MAGIC		  0x202 /* "HdrS" */
#define LINUX_HDR_VERSION	  0x206 /* u16, major << 8 | minor */
#define LINUX_HDR_TYPE_OF_LOADER  0x210 /* u8 */
#define LINUX_HDR_LOADFLAGS	  0x211 /* u8 */
#define LINUX_HDR_CODE32_START	  0x214 /* u32 */
#define LINUX_HDR_RAMDISK_IMAGE	  0x218 /* u32 */
#define LINUX_HDR_RAMDISK_SIZE	  0x21C /* u32 */
#define LINUX_HDR_HEAP_END_PTR	  0x224 /* u16 */
#define LINUX_HDR_CMD_LINE_PTR	  0x228 /* u32 */
#define LINUX_HDR_INITRD_ADDR_MAX 0x22C /* u32, the highest byte the initrd may occupy */
#define LINUX_HDR_KERNEL_ALIGN	  0x230 /* u32 */
#define LINUX_HDR_RELOCATABLE	  0x234 /* u8 */
#define LINUX_HDR_CMDLINE_SIZE	  0x238 /* u32, characters without the NUL */
#define LINUX_HDR_PREF_ADDRESS	  0x258 /* u64, protocol 2.10+ */
#define LINUX_HDR_INIT_SIZE	  0x260 /* u32, protocol 2.10+ */

#define LINUX_BOOT_FLAG		0xAA55
#define LINUX_MAGIC		"HdrS"
#define LINUX_LOADED_HIGH	0x01   /* loadflags: a bzImage, loaded at 1 MiB */
#define LINUX_CAN_USE_HEAP	0x80   /* loadflags: heap_end_ptr is valid */
#define LINUX_BOOT_MIN_VERSION	0x0206 /* cmdline_size; Linux 2.6.22 and later */
#define LINUX_BOOT_LOADER_ID	0xFF   /* type_of_loader: no assigned boot loader id */
#define LINUX_VID_MODE_NORMAL	0xFFFF
#define LINUX_SECTOR		512
#define LINUX_BOOT_MAX_SETUP	0x8000 /* boot sector + setup: the protocol's 32 KiB */
#define LINUX_BOOT_SETUP_ADDR	0x10000u
#define LINUX_BOOT_CMDLINE_ADDR 0x20000u /* setup + 64 KiB: the end of its heap and stack */
#define LINUX_BOOT_HEAP_END_PTR 0xFE00	 /* heap end (the command line) - setup - 0x200 */
#define LINUX_BOOT_MAX_CMDLINE	0x10000u /* bytes with the NUL: 0x20000-0x2FFFF */
#define LINUX_BOOT_KERNEL_ADDR	0x100000u
#define LINUX_BOOT_INITRD_ALIGN 4096u
/* The top of RAM below 4 GiB left to the firmware: SeaBIOS keeps at most 256 KiB there
 * for its tables (ACPI, SMBIOS), and the E801 size it reports is rounded to 64 KiB. */
#define LINUX_BOOT_FW_RESERVE (1u << 20)

/* Bounds on what `vmm run` reads into memory. */
#define LINUX_BOOT_MAX_KERNEL_FILE (256u << 20)
#define LINUX_BOOT_MAX_INITRD_FILE (1024u << 20)
#define LINUX_BOOT_MAX_ROM_FILE	   (64u << 10)

/* What the kernel's setup header says. */
struct linux_boot_header {
	uint16_t version;
	uint8_t loadflags;
	uint32_t setup_size;  /* boot sector + setup, bytes */
	uint64_t kernel_size; /* the protected-mode part: the rest of the file */
	uint32_t code32_start;
	uint32_t initrd_addr_max;
	uint32_t kernel_alignment;
	bool relocatable;
	uint32_t cmdline_size; /* characters without the NUL */
	uint64_t pref_address; /* 0 before protocol 2.10 */
	uint32_t init_size;    /* 0 before protocol 2.10 */
};

/* Where everything goes. */
struct linux_boot_layout {
	uint32_t setup_addr, cmdline_addr, kernel_addr;
	uint32_t cmdline_len;		   /* with the NUL */
	uint32_t initrd_addr, initrd_size; /* 0, 0 without an initrd */
	uint64_t kernel_end;   /* the first byte above what the kernel uses while it starts */
	uint64_t initrd_limit; /* the highest byte the initrd may occupy */
};

/* Parses and checks a bzImage. Returns 0, or -EINVAL with the reason in err: too small, no
 * boot flag or "HdrS" (not a Linux kernel), protocol below LINUX_BOOT_MIN_VERSION, not a
 * bzImage (LOADED_HIGH clear), setup over LINUX_BOOT_MAX_SETUP, a file shorter than its
 * header says, a relocatable kernel whose alignment is not a power of two, a fixed
 * kernel that does not start at 1 MiB. */
int linux_boot_parse(const void *image, size_t size, struct linux_boot_header *hdr, char *err,
		     size_t err_size);

/* Chooses the addresses for a kernel hdr, a command line of cmdline_chars characters and
 * an initrd of initrd_size bytes (0: none) in a VM whose RAM below 4 GiB ends at
 * low_ram_end. Returns 0, -E2BIG when the command line is longer than the kernel takes, or
 * -ENOSPC when the kernel or the initrd does not fit (err says how much RAM is needed). */
int linux_boot_plan(const struct linux_boot_header *hdr, uint64_t low_ram_end, size_t cmdline_chars,
		    uint64_t initrd_size, struct linux_boot_layout *out, char *err,
		    size_t err_size);

/* Writes the loader's fields into setup, a copy of the file's first hdr->setup_size bytes:
 * vid_mode, type_of_loader, loadflags (CAN_USE_HEAP), heap_end_ptr, cmd_line_ptr,
 * ramdisk_image/size, and code32_start for a relocatable kernel. */
void linux_boot_patch_setup(uint8_t *setup, const struct linux_boot_header *hdr,
			    const struct linux_boot_layout *layout);

/* Checks an option ROM image: 0x55AA, a size byte that fits the file, a zero checksum.
 * Returns 0 or -EINVAL with the reason in err. */
int linux_boot_check_rom(const void *rom, size_t size, char *err, size_t err_size);

/* What the guest is given: the files' contents. */
struct linux_boot_input {
	const uint8_t *kernel; /* checked by linux_boot_parse */
	size_t kernel_size;
	const uint8_t *initrd; /* NULL with initrd_size 0: none */
	size_t initrd_size;
	const char *cmdline; /* NULL: empty */
	const uint8_t *rom;  /* checked by linux_boot_check_rom; NULL for OVMF, which loads */
	size_t rom_size;     /* the kernel itself (as an EFI program) */
};

/* Publishes a boot on fw, which keeps copies: the ROM file (if any) and the twelve items, the setup
 * patched. hdr comes from linux_boot_parse(in->kernel), layout from linux_boot_plan for
 * this command line and initrd. Returns 0 or fw_cfg's error (-ENOMEM, -EEXIST, -ENOSPC). */
int linux_boot_publish(struct fw_cfg *fw, const struct linux_boot_input *in,
		       const struct linux_boot_header *hdr, const struct linux_boot_layout *layout);

/* Reads all of path into a new buffer the caller frees, when it is a regular file of at
 * most max bytes. Returns 0, -EFBIG (*len says the size), -EINVAL (not a regular file),
 * -ENOMEM or open's/read's -errno. */
int linux_boot_read_file(const char *path, size_t max, uint8_t **buf, size_t *len);

#endif
