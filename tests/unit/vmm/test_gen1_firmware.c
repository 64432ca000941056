/* What SeaBIOS 1.16.2 reads from fw_cfg on generation 1: the e820 map for RAM below, at
 * and above the PCI hole, the boot order matched with SeaBIOS's own path patterns (through
 * fnmatch, an independent glob), and every key and file its paravirt.c, boot.c, acpi.c and
 * sercon.c read. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <fnmatch.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "acpi.h"
#include "dev.h"
#include "endian.h"
#include "fw_cfg.h"
#include "gen1_firmware.h"
#include "gen1_layout.h"
#include "table_loader.h"

#define MIB (1ull << 20)
#define GIB (1ull << 30)

struct rig {
	struct guest_mem mem; /* no RAM: these tests read through the port and the API */
	struct dev_bus bus;
	struct fw_cfg *fw;
};

static struct rig *rig_new(const struct gen1_firmware_params *p)
{
	struct rig *r = calloc(1, sizeof(*r));
	assert_non_null(r);
	dev_bus_init(&r->bus);
	assert_int_equal(fw_cfg_create(&r->mem, &r->fw), 0);
	assert_int_equal(fw_cfg_register(r->fw, &r->bus, GEN1_FW_CFG_PORT), 0);
	assert_int_equal(gen1_firmware_setup(r->fw, p), 0);
	return r;
}

static void rig_free(struct rig *r)
{
	fw_cfg_destroy(r->fw);
	dev_bus_destroy(&r->bus);
	free(r);
}

/* A numeric key as SeaBIOS reads it without DMA: select, then byte reads. */
static uint64_t read_key(struct rig *r, uint16_t key, unsigned len)
{
	uint8_t b[8] = { 0 };
	dev_bus_write(&r->bus, DEV_PIO, GEN1_FW_CFG_PORT, 2, key);
	for (unsigned i = 0; i < len; i++)
		b[i] = (uint8_t)dev_bus_read(&r->bus, DEV_PIO, GEN1_FW_CFG_PORT + 1, 1);
	return load_le64(b);
}

/* A file's contents (NULL when absent) and size. */
static uint8_t *read_file(struct rig *r, const char *name, size_t *size)
{
	ssize_t len = fw_cfg_read_file(r->fw, name, NULL, 0);
	if (len < 0)
		return NULL;
	uint8_t *data = malloc((size_t)len + 1);
	assert_non_null(data);
	assert_int_equal(fw_cfg_read_file(r->fw, name, data, (size_t)len), len);
	*size = (size_t)len;
	return data;
}

static struct gen1_firmware_params params(uint64_t ram, unsigned ncpus)
{
	return (struct gen1_firmware_params){ .ram_size = ram,
					      .ncpus = ncpus,
					      .boot_fail_wait_ms = GEN1_FW_BOOT_WAIT_EVER };
}

/* ---- e820 ---- */

struct e820 {
	uint64_t base, len;
	uint32_t type;
};

static void expect_e820(uint64_t ram, const struct e820 *want, unsigned n)
{
	struct gen1_firmware_params p = params(ram, 1);
	struct rig *r = rig_new(&p);
	size_t size;
	uint8_t *table = read_file(r, "etc/e820", &size);
	assert_non_null(table);
	assert_int_equal(size, n * GEN1_FW_E820_ENTRY);
	uint64_t ram_total = 0;
	for (unsigned i = 0; i < n; i++) {
		const uint8_t *e = table + i * GEN1_FW_E820_ENTRY;
		assert_int_equal(load_le64(e), want[i].base);
		assert_int_equal(load_le64(e + 8), want[i].len);
		assert_int_equal(load_le32(e + 16), want[i].type);
		if (want[i].type == GEN1_FW_E820_RAM) {
			ram_total += want[i].len;
			/* no RAM in the PCI hole or the KVM pages */
			uint64_t end = want[i].base + want[i].len;
			assert_true(end <= GEN1_PCI_HOLE_START || want[i].base >= 4 * GIB);
		}
	}
	assert_int_equal(ram_total, ram);
	free(table);
	rig_free(r);
}

static void test_e820_below_hole(void **state)
{
	(void)state;
	const struct e820 want[] = { { 0, 512 * MIB, 1 }, { 0xFEFFC000, 0x4000, 2 } };
	expect_e820(512 * MIB, want, 2);
}

static void test_e820_at_hole(void **state)
{
	(void)state;
	const struct e820 want[] = { { 0, 3 * GIB, 1 }, { 0xFEFFC000, 0x4000, 2 } };
	expect_e820(3 * GIB, want, 2);
	const struct e820 one_page_more[] = { { 0, 3 * GIB, 1 },
					      { 0xFEFFC000, 0x4000, 2 },
					      { 4 * GIB, 4096, 1 } };
	expect_e820(3 * GIB + 4096, one_page_more, 3);
}

static void test_e820_above_hole(void **state)
{
	(void)state;
	const struct e820 want[] = { { 0, 3 * GIB, 1 },
				     { 0xFEFFC000, 0x4000, 2 },
				     { 4 * GIB, 5 * GIB, 1 } };
	expect_e820(8 * GIB, want, 3);
}

/* ---- boot order ---- */

/* The patterns SeaBIOS 1.16.2 builds for ATA/ATAPI devices on a PCI IDE controller
 * (boot.c, bootprio_find_ata_device): "/pci@i0cf8/" then "*@<slot>,<fn>" for the
 * controller, then "/drive@<channel>/disk@<unit>". */
static void expect_seabios_match(const char *path, unsigned channel, unsigned unit)
{
	char pattern[96];
	snprintf(pattern, sizeof(pattern), "/pci@i0cf8/*@%x,%x/drive@%x/disk@%x", GEN1_PCI_DEV_PIIX,
		 GEN1_PCI_FN_IDE, channel, unit);
	assert_int_equal(fnmatch(pattern, path, FNM_PATHNAME), 0);
	for (unsigned c = 0; c < 2; c++)
		for (unsigned u = 0; u < 2; u++) {
			if (c == channel && u == unit)
				continue;
			snprintf(pattern, sizeof(pattern), "/pci@i0cf8/*@%x,%x/drive@%x/disk@%x",
				 GEN1_PCI_DEV_PIIX, GEN1_PCI_FN_IDE, c, u);
			assert_int_not_equal(fnmatch(pattern, path, FNM_PATHNAME), 0);
		}
}

static void test_ide_paths(void **state)
{
	(void)state;
	char path[GEN1_FW_PATH_SIZE];
	for (unsigned c = 0; c < 2; c++)
		for (unsigned u = 0; u < 2; u++) {
			assert_int_equal(gen1_firmware_ide_path(path, sizeof(path), c, u), 0);
			expect_seabios_match(path, c, u);
		}
	assert_int_equal(gen1_firmware_ide_path(path, sizeof(path), 0, 1), 0);
	assert_string_equal(path, "/pci@i0cf8/ide@1,1/drive@0/disk@1");
	assert_int_equal(gen1_firmware_ide_path(path, sizeof(path), 2, 0), -EINVAL);
	assert_int_equal(gen1_firmware_ide_path(path, sizeof(path), 0, 2), -EINVAL);
	assert_int_equal(gen1_firmware_ide_path(path, 16, 0, 0), -EINVAL);
}

static void test_bootorder_text(void **state)
{
	(void)state;
	char cd[GEN1_FW_PATH_SIZE], disk[GEN1_FW_PATH_SIZE];
	assert_int_equal(gen1_firmware_ide_path(cd, sizeof(cd), 1, 0), 0);
	assert_int_equal(gen1_firmware_ide_path(disk, sizeof(disk), 0, 0), 0);
	const char *order[] = { cd, disk };
	struct gen1_firmware_params p = params(256 * MIB, 1);
	p.boot_order = order;
	p.nboot = 2;
	struct rig *r = rig_new(&p);
	size_t size;
	char *text = (char *)read_file(r, "bootorder", &size);
	const char want[] = "/pci@i0cf8/ide@1,1/drive@1/disk@0\n"
			    "/pci@i0cf8/ide@1,1/drive@0/disk@0";
	assert_int_equal(size, sizeof(want)); /* with the NUL OVMF wants */
	assert_memory_equal(text, want, sizeof(want));
	free(text);
	rig_free(r);
	/* strict: HALT last */
	p.boot_strict = true;
	p.nboot = 1;
	r = rig_new(&p);
	text = (char *)read_file(r, "bootorder", &size);
	assert_string_equal(text, "/pci@i0cf8/ide@1,1/drive@1/disk@0\nHALT");
	assert_int_equal(size, strlen(text) + 1);
	free(text);
	rig_free(r);
	/* no order: no file, SeaBIOS keeps its own */
	p = params(256 * MIB, 1);
	r = rig_new(&p);
	assert_null(read_file(r, "bootorder", &size));
	rig_free(r);
}

static void test_refusals(void **state)
{
	(void)state;
	struct fw_cfg *fw;
	struct guest_mem mem = { 0 };
	const char *bad_paths[] = { "/pci@i0cf8/ide@1,1\n/drive@0", "", NULL };
	struct gen1_firmware_params cases[] = {
		params(0, 1),
		params(GEN1_FW_MIN_RAM - 4096, 1),
		params(64 * MIB + 512, 1),
		params(GEN1_FW_MAX_RAM + 4096, 1),
		params(64 * MIB, 0),
		params(64 * MIB, ACPI_MAX_CPUS + 1),
		params(64 * MIB, 1),
		params(64 * MIB, 1),
		params(64 * MIB, 1),
		params(64 * MIB, 1),
	};
	cases[6].boot_order = &bad_paths[0];
	cases[6].nboot = 1;
	cases[7].boot_order = &bad_paths[1];
	cases[7].nboot = 1;
	cases[8].boot_order = &bad_paths[2];
	cases[8].nboot = 1;
	cases[9].gen = 3;
	for (unsigned i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		assert_int_equal(fw_cfg_create(&mem, &fw), 0);
		if (gen1_firmware_setup(fw, &cases[i]) != -EINVAL)
			fail_msg("case %u accepted", i);
		fw_cfg_destroy(fw);
	}
}

/* ---- what SeaBIOS reads ---- */

static void test_seabios_items(void **state)
{
	(void)state;
	struct gen1_firmware_params p = params(2 * GIB, 4);
	p.serial_console = true;
	p.boot_fail_wait_ms = 5000;
	struct rig *r = rig_new(&p);
	/* qemu_cfg_detect: signature and the DMA bit */
	assert_int_equal(read_key(r, FW_CFG_SIGNATURE, 4), 0x554D4551); /* "QEMU" */
	assert_int_equal(read_key(r, FW_CFG_ID, 4) & FW_CFG_ID_DMA, FW_CFG_ID_DMA);
	/* CPU counts: SeaBIOS waits for NB_CPUS to check in; MAX_CPUS bounds APIC IDs */
	assert_int_equal(read_key(r, FW_CFG_NB_CPUS, 2), 4);
	assert_int_equal(read_key(r, FW_CFG_MAX_CPUS, 2), 4);
	assert_int_equal(read_key(r, FW_CFG_NOGRAPHIC, 2), 1);
	assert_int_equal(read_key(r, FW_CFG_BOOT_MENU, 2), 0); /* no menu wait */
	assert_int_equal(read_key(r, FW_CFG_IRQ0_OVERRIDE, 4), 1);
	/* legacy lists read as empty: ACPI tables, SMBIOS entries, e820 reservations, NUMA */
	assert_int_equal(read_key(r, 0x8000, 2), 0);
	assert_int_equal(read_key(r, 0x8001, 2), 0);
	assert_int_equal(read_key(r, 0x8003, 4), 0);
	assert_int_equal(read_key(r, 0x0D, 8), 0);
	size_t size;
	uint8_t *data = read_file(r, "etc/sercon-port", &size);
	assert_non_null(data);
	assert_int_equal(size, 2);
	assert_int_equal(load_le16(data), GEN1_COM1_BASE);
	free(data);
	data = read_file(r, "etc/boot-fail-wait", &size);
	assert_non_null(data);
	assert_int_equal(size, 4);
	assert_int_equal(load_le32(data), 5000);
	free(data);
	/* the ACPI files; their contents are test_acpi's business */
	const char *acpi[] = { TABLE_LOADER_FILE, ACPI_RSDP_FILE, ACPI_TABLES_FILE };
	for (unsigned i = 0; i < 3; i++) {
		data = read_file(r, acpi[i], &size);
		assert_non_null(data);
		assert_true(size > 0);
		free(data);
	}
	rig_free(r);
	/* without the serial console: no port file, NOGRAPHIC 0 */
	p.serial_console = false;
	r = rig_new(&p);
	assert_null(read_file(r, "etc/sercon-port", &size));
	assert_int_equal(read_key(r, FW_CFG_NOGRAPHIC, 2), 0);
	rig_free(r);
}

/* The generation picks the ACPI tables: generation 2's (for OVMF) say so in every header. */
static void test_generation_tables(void **state)
{
	(void)state;
	for (unsigned gen = 1; gen <= 2; gen++) {
		struct gen1_firmware_params p = params(1 * GIB, 2);
		p.gen = gen;
		struct rig *r = rig_new(&p);
		size_t size;
		uint8_t *data = read_file(r, ACPI_TABLES_FILE, &size);
		assert_non_null(data);
		const char *want = gen == 2 ? "HVGEN2" : "HVGEN1";
		const char *other = gen == 2 ? "HVGEN1" : "HVGEN2";
		assert_non_null(memmem(data, size, want, 6));
		assert_null(memmem(data, size, other, 6));
		free(data);
		rig_free(r);
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_e820_below_hole), cmocka_unit_test(test_generation_tables),
		cmocka_unit_test(test_e820_at_hole),	cmocka_unit_test(test_e820_above_hole),
		cmocka_unit_test(test_ide_paths),	cmocka_unit_test(test_bootorder_text),
		cmocka_unit_test(test_refusals),	cmocka_unit_test(test_seabios_items),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
