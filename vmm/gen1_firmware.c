#include "gen1_firmware.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "acpi.h"
#include "arith.h"
#include "endian.h"
#include "gen1_layout.h"

#define PAGE_SIZE     4096
#define E820_MAX      3	     /* low RAM, the KVM reservation, high RAM */
#define BOOT_HALT     "HALT" /* a bootorder entry that makes the list strict */
#define IRQ0_OVERRIDE 1	     /* the PIT is on IOAPIC pin 2 (the MADT says so too) */

int gen1_firmware_ide_path(char *buf, size_t size, unsigned channel, unsigned unit)
{
	if (channel > 1 || unit > 1 || size < GEN1_FW_PATH_SIZE)
		return -EINVAL;
	snprintf(buf, size, "/pci@i0cf8/ide@%x,%x/drive@%x/disk@%x", GEN1_PCI_DEV_PIIX,
		 GEN1_PCI_FN_IDE, channel, unit);
	return 0;
}

static uint8_t *put_e820(uint8_t *p, uint64_t base, uint64_t len, uint32_t type)
{
	store_le64(p, base);
	store_le64(p + 8, len);
	store_le32(p + 16, type);
	return p + GEN1_FW_E820_ENTRY;
}

/* RAM below the PCI hole, the pages KVM needs for real mode, and the rest of RAM above
 * 4 GiB; returns the table's length. */
static size_t build_e820(uint64_t ram, uint8_t *table)
{
	uint64_t low = min_u64(ram, GEN1_PCI_HOLE_START);
	uint8_t *p = put_e820(table, 0, low, GEN1_FW_E820_RAM);
	p = put_e820(p, GEN1_KVM_IDENTITY_MAP, GEN1_KVM_RESERVED_LEN, GEN1_FW_E820_RESERVED);
	if (ram > low)
		p = put_e820(p, GEN1_HIGH_RAM_START, ram - low, GEN1_FW_E820_RAM);
	return (size_t)(p - table);
}

/* The paths one per line, then "HALT" when strict, NUL-terminated (OVMF wants the NUL,
 * SeaBIOS stops at it). NULL with *err set on failure. */
static char *build_bootorder(const struct gen1_firmware_params *p, size_t *len, int *err)
{
	size_t total = sizeof(BOOT_HALT);
	for (unsigned i = 0; i < p->nboot; i++) {
		const char *path = p->boot_order[i];
		if (!path || !path[0] || strchr(path, '\n')) {
			*err = -EINVAL;
			return NULL;
		}
		total += strlen(path) + 1;
	}
	char *text = malloc(total);
	if (!text) {
		*err = -ENOMEM;
		return NULL;
	}
	char *end = text;
	for (unsigned i = 0; i < p->nboot; i++)
		end += sprintf(end, "%s%s", i ? "\n" : "", p->boot_order[i]);
	if (p->boot_strict)
		end += sprintf(end, "%s%s", p->nboot ? "\n" : "", BOOT_HALT);
	*len = (size_t)(end - text) + 1;
	return text;
}

static int add_bootorder(struct fw_cfg *fw, const struct gen1_firmware_params *p)
{
	if (!p->nboot && !p->boot_strict)
		return 0; /* SeaBIOS's own order: floppy, disk, CD, network */
	if (p->nboot && !p->boot_order)
		return -EINVAL;
	size_t len;
	int ret = 0;
	char *text = build_bootorder(p, &len, &ret);
	if (text)
		ret = fw_cfg_add_file(fw, "bootorder", text, len);
	free(text);
	return ret;
}

static int add_file_u16(struct fw_cfg *fw, const char *name, uint16_t v)
{
	uint8_t b[2];
	store_le16(b, v);
	return fw_cfg_add_file(fw, name, b, sizeof(b));
}

static int add_file_u32(struct fw_cfg *fw, const char *name, uint32_t v)
{
	uint8_t b[4];
	store_le32(b, v);
	return fw_cfg_add_file(fw, name, b, sizeof(b));
}

static bool params_valid(const struct gen1_firmware_params *p)
{
	return p->ram_size >= GEN1_FW_MIN_RAM && p->ram_size <= GEN1_FW_MAX_RAM &&
	       p->ram_size % PAGE_SIZE == 0 && p->ncpus >= 1 && p->ncpus <= ACPI_MAX_CPUS &&
	       p->gen <= 2;
}

/* Keys SeaBIOS reads that stay absent read as zeros: UUID, NUMA, and the legacy ACPI,
 * SMBIOS and e820 lists (counts of 0). */
int gen1_firmware_setup(struct fw_cfg *fw, const struct gen1_firmware_params *p)
{
	if (!params_valid(p))
		return -EINVAL;
	uint8_t e820[E820_MAX * GEN1_FW_E820_ENTRY];
	size_t e820_len = build_e820(p->ram_size, e820);
	int ret = fw_cfg_add_u16(fw, FW_CFG_NB_CPUS, (uint16_t)p->ncpus);
	if (ret == 0)
		ret = fw_cfg_add_u16(fw, FW_CFG_MAX_CPUS, (uint16_t)p->ncpus);
	if (ret == 0)
		ret = fw_cfg_add_u16(fw, FW_CFG_NOGRAPHIC, p->serial_console);
	if (ret == 0)
		ret = fw_cfg_add_u16(fw, FW_CFG_BOOT_MENU, 0); /* no menu, no wait for a key */
	if (ret == 0)
		ret = fw_cfg_add_u32(fw, FW_CFG_IRQ0_OVERRIDE, IRQ0_OVERRIDE);
	if (ret == 0)
		ret = fw_cfg_add_file(fw, "etc/e820", e820, e820_len);
	if (ret == 0)
		ret = add_bootorder(fw, p);
	if (ret == 0)
		ret = add_file_u32(fw, "etc/boot-fail-wait", p->boot_fail_wait_ms);
	if (ret == 0 && p->serial_console)
		ret = add_file_u16(fw, "etc/sercon-port", GEN1_COM1_BASE);
	if (ret == 0)
		ret = acpi_add_tables(fw, p->gen == 2 ? 2 : 1, p->ncpus, p->vmbus);
	return ret;
}
