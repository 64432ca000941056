/* What SeaBIOS reads from fw_cfg on the generation 1 platform, filled in one call: the
 * signature and ID (from fw_cfg itself), CPU counts, the e820 memory map, boot order and
 * boot-failure wait, the serial console port, the IRQ0 override flag, and the ACPI tables
 * with their table loader. SMBIOS is left to SeaBIOS, which builds its own tables when
 * fw_cfg has none.
 *
 * Generation 2's OVMF reads the same items (it skips the SeaBIOS-only ones and takes the
 * CPU count as the exact number of APs to wait for); only its ACPI tables differ (acpi.h). */
#ifndef HV_VMM_GEN1_FIRMWARE_H
#define HV_VMM_GEN1_FIRMWARE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "fw_cfg.h"

#define GEN1_FW_MIN_RAM	       (1ull << 20) /* the BIOS needs at least the first MiB */
#define GEN1_FW_MAX_RAM	       (1ull << 46)
#define GEN1_FW_BOOT_WAIT_EVER UINT32_MAX /* boot-fail wait: never reboot */
#define GEN1_FW_PATH_SIZE      64	  /* enough for any gen1_firmware_ide_path */

/* e820 entry types */
#define GEN1_FW_E820_RAM      1
#define GEN1_FW_E820_RESERVED 2
#define GEN1_FW_E820_ENTRY    20 /* u64 base, u64 length, u32 type; little-endian */

struct gen1_firmware_params {
	uint64_t ram_size; /* bytes, a multiple of 4 KiB, GEN1_FW_MIN_RAM..GEN1_FW_MAX_RAM */
	unsigned ncpus;	   /* 1..ACPI_MAX_CPUS */
	/* OpenFirmware device paths, most preferred first (gen1_firmware_ide_path makes
	 * them); SeaBIOS tries the devices that match none after these. */
	const char *const *boot_order;
	unsigned nboot;
	bool boot_strict;	    /* try only the listed devices */
	bool serial_console;	    /* SeaBIOS's console on COM1 (no VGA needed) */
	uint32_t boot_fail_wait_ms; /* before rebooting when nothing boots */
	bool vmbus;		    /* the DSDT has the VMBus device (Hyper-V interface on) */
	unsigned gen;		    /* 2: generation 2's ACPI tables (with VMBus); 0 or 1: gen 1 */
};

/* Adds everything SeaBIOS reads to a fresh fw (only the built-in items). Returns 0,
 * -EINVAL for parameters out of range or a boot path that is empty or holds a newline,
 * -ENOMEM, or fw_cfg's error; after an error fw holds part of it and is for destroying. */
int gen1_firmware_setup(struct fw_cfg *fw, const struct gen1_firmware_params *p);

/* The path SeaBIOS matches for the PIIX IDE device on channel (0 primary, 1 secondary)
 * and unit (0 master, 1 slave), a disk or a CD-ROM alike:
 * "/pci@i0cf8/ide@1,1/drive@<channel>/disk@<unit>". Returns 0 or -EINVAL (channel or
 * unit above 1, or size below GEN1_FW_PATH_SIZE). */
int gen1_firmware_ide_path(char *buf, size_t size, unsigned channel, unsigned unit);

#endif
