#include "acpi.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "arith.h"
#include "endian.h"
#include "gen1_layout.h"
#include "table_loader.h"

/* dsdt_gen1_aml_code[], dsdt_gen1_vmbus_aml_code[] and dsdt_gen2_aml_code[]: dsdt.asl as
 * compiled by iasl -tc at build time, for generation 1 without and with the VMBus device and
 * for generation 2 (always with it). */
#include "dsdt_gen1.hex"
#include "dsdt_gen1_vmbus.hex"
#include "dsdt_gen2.hex"

/* ---- table layout (ACPI 6.x numbering; FADT revision 3 is the ACPI 2.0 layout) ---- */

#define HDR_LEN	     36
#define HDR_CHECKSUM 9
#define OEM_ID	     "HVSTCK"
#define CREATOR_ID   "HVSK"

#define RSDP_LEN	  36
#define RSDP_CHECKSUM	  8
#define RSDP_V1_LEN	  20 /* what the first checksum covers */
#define RSDP_RSDT	  16
#define RSDP_XSDT	  24
#define RSDP_EXT_CHECKSUM 32

#define FACS_LEN 64

#define FADT_LEN	    244
#define FADT_REV	    3
#define FADT_FACS	    36
#define FADT_DSDT	    40
#define FADT_X_DSDT	    140
#define FADT_FLAG_WBINVD    (1u << 0)
#define FADT_FLAG_PROC_C1   (1u << 2)
#define FADT_FLAG_SLP_BTN   (1u << 5) /* no fixed sleep button; PWR_BUTTON (bit 4) clear */
#define FADT_FLAG_RTC_S4    (1u << 7)
#define FADT_FLAG_RESET_REG (1u << 10)
#define FADT_FLAG_PLAT_CLK  (1u << 15)
#define FADT_FLAG_APIC_PHYS (1u << 19) /* physical destination mode, for more than 8 CPUs */
#define BOOT_ARCH_LEGACY    (1u << 0)
#define BOOT_ARCH_8042	    (1u << 1)
#define GAS_SYSTEM_IO	    1
#define GAS_ACCESS_BYTE	    1
#define RTC_CENTURY	    0x32
#define RESET_VALUE	    0x06 /* 0xCF9: full reset (bit 2) with system reset (bit 1) */

#define MADT_PCAT_COMPAT    1
#define MADT_LAPIC	    0
#define MADT_LAPIC_LEN	    8
#define MADT_IOAPIC	    1
#define MADT_IOAPIC_LEN	    12
#define MADT_OVERRIDE	    2
#define MADT_OVERRIDE_LEN   10
#define MADT_LAPIC_NMI	    4
#define MADT_LAPIC_NMI_LEN  6
#define MADT_LEVEL_HIGH	    0x000D /* polarity active high (01), trigger level (11 << 2) */
#define MADT_ALL_PROCESSORS 0xFF
#define MADT_NMI_LINT	    1
#define IOAPIC_ID	    0
#define IRQ0_GSI	    2
#define ACPI_DEVICE_ENABLED 1

static const uint8_t pci_irqs[] = GEN1_PCI_IRQS;
#define MADT_OVERRIDES (1 + sizeof(pci_irqs))

/* ---- a growing buffer of tables, addressed by offset (it moves as it grows) ---- */

struct blob {
	uint8_t *data;
	size_t len, cap;
	int err;
};

/* Appends len zero bytes at an offset aligned to align; returns the offset (0 once an error
 * is recorded in b->err, which later calls keep). */
static size_t blob_reserve(struct blob *b, size_t len, size_t align)
{
	size_t at = round_up(b->len, align);
	if (b->err)
		return 0;
	if (at + len > b->cap) {
		size_t cap = max_u64(2 * b->cap, at + len + 4096);
		uint8_t *grown = realloc(b->data, cap);
		if (!grown) {
			b->err = -ENOMEM;
			return 0;
		}
		b->data = grown;
		b->cap = cap;
	}
	memset(b->data + b->len, 0, at + len - b->len);
	b->len = at + len;
	return at;
}

/* The header of a table built here for generation gen; the checksum stays 0 for the loader
 * to compute. */
static void put_header(uint8_t *t, unsigned gen, const char *sig, uint32_t len, uint8_t rev)
{
	memcpy(t, sig, 4);
	store_le32(t + 4, len);
	t[8] = rev;
	memcpy(t + 10, OEM_ID, 6);
	memcpy(t + 16, gen == 2 ? "HVGEN2  " : "HVGEN1  ", 8); /* as the DSDT's */
	store_le32(t + 24, 1);
	memcpy(t + 28, CREATOR_ID, 4);
	store_le32(t + 32, 1);
}

static void put_gas(uint8_t *p, uint8_t bits, uint8_t access, uint64_t port)
{
	p[0] = GAS_SYSTEM_IO;
	p[1] = bits;
	p[2] = 0;
	p[3] = access;
	store_le64(p + 4, port);
}

/* Everything one build produces. */
struct build {
	unsigned gen; /* 1 or 2 */
	bool vmbus;   /* generation 1: the DSDT with the VMBus device */
	struct blob tables;
	uint8_t rsdp[RSDP_LEN];
	struct table_loader loader;
};

/* A pointer at `file`+field to the table at `target` in etc/acpi/tables: the file holds the
 * offset, the loader adds where the tables land. */
static void link_pointer(struct build *b, uint8_t *file_data, const char *file, uint32_t field,
			 uint8_t size, size_t target)
{
	if (size == 8)
		store_le64(file_data + field, target);
	else
		store_le32(file_data + field, (uint32_t)target);
	table_loader_add_pointer(&b->loader, file, ACPI_TABLES_FILE, field, size);
}

static void checksum_table(struct build *b, size_t at, uint32_t len)
{
	table_loader_add_checksum(&b->loader, ACPI_TABLES_FILE, (uint32_t)(at + HDR_CHECKSUM),
				  (uint32_t)at, len);
}

/* ---- the tables ---- */

static size_t build_facs(struct build *b)
{
	size_t at = blob_reserve(&b->tables, FACS_LEN, 64);
	if (b->tables.err)
		return 0;
	memcpy(b->tables.data + at, "FACS", 4);
	store_le32(b->tables.data + at + 4, FACS_LEN);
	b->tables.data[at + 32] = 1; /* version */
	return at;
}

/* The compiled DSDT for the build's generation (and, on generation 1, VMBus or not). */
static void dsdt_aml(const struct build *b, const uint8_t **aml, size_t *len)
{
	if (b->gen == 2) {
		*aml = dsdt_gen2_aml_code;
		*len = sizeof(dsdt_gen2_aml_code);
	} else if (b->vmbus) {
		*aml = dsdt_gen1_vmbus_aml_code;
		*len = sizeof(dsdt_gen1_vmbus_aml_code);
	} else {
		*aml = dsdt_gen1_aml_code;
		*len = sizeof(dsdt_gen1_aml_code);
	}
}

static size_t build_dsdt(struct build *b)
{
	const uint8_t *aml;
	size_t len;
	dsdt_aml(b, &aml, &len);
	size_t at = blob_reserve(&b->tables, len, 8);
	if (b->tables.err)
		return 0;
	memcpy(b->tables.data + at, aml, len);
	b->tables.data[at + HDR_CHECKSUM] = 0;
	checksum_table(b, at, (uint32_t)len);
	return at;
}

static size_t build_fadt(struct build *b, unsigned ncpus, size_t facs, size_t dsdt)
{
	size_t at = blob_reserve(&b->tables, FADT_LEN, 8);
	if (b->tables.err)
		return 0;
	uint8_t *t = b->tables.data + at;
	const uint32_t pm_base = b->gen == 2 ? GEN2_PM_BASE : GEN1_PM_BASE;
	put_header(t, b->gen, "FACP", FADT_LEN, FADT_REV);
	t[44] = 1; /* ACPI 1.0 INT_MODEL: APIC */
	store_le16(t + 46, GEN1_SCI_IRQ);
	/* SMI_CMD, ACPI_ENABLE, ACPI_DISABLE stay 0: no SMM, always in ACPI mode. */
	store_le32(t + 56, pm_base + GEN1_PM1_EVT_OFFSET);
	store_le32(t + 64, pm_base + GEN1_PM1_CNT_OFFSET);
	store_le32(t + 76, pm_base + GEN1_PM_TMR_OFFSET);
	store_le32(t + 80, GEN1_GPE0_BASE);
	t[88] = 4; /* PM1_EVT_LEN */
	t[89] = 2; /* PM1_CNT_LEN */
	t[91] = 4; /* PM_TMR_LEN */
	t[92] = GEN1_GPE0_LEN;
	store_le16(t + 96, 0x0FFF); /* P_LVL2_LAT > 100: C2 unsupported */
	store_le16(t + 98, 0x0FFF); /* P_LVL3_LAT > 1000: C3 unsupported */
	t[108] = RTC_CENTURY;
	store_le16(t + 109, BOOT_ARCH_LEGACY | BOOT_ARCH_8042);
	uint32_t flags = FADT_FLAG_WBINVD | FADT_FLAG_PROC_C1 | FADT_FLAG_SLP_BTN |
			 FADT_FLAG_RTC_S4 | FADT_FLAG_RESET_REG | FADT_FLAG_PLAT_CLK;
	if (ncpus > 8)
		flags |= FADT_FLAG_APIC_PHYS;
	store_le32(t + 112, flags);
	put_gas(t + 116, 8, GAS_ACCESS_BYTE, GEN1_RESET_CONTROL);
	t[128] = RESET_VALUE;
	put_gas(t + 148, 32, 0, pm_base + GEN1_PM1_EVT_OFFSET);
	put_gas(t + 172, 16, 0, pm_base + GEN1_PM1_CNT_OFFSET);
	put_gas(t + 208, 32, 0, pm_base + GEN1_PM_TMR_OFFSET);
	put_gas(t + 220, GEN1_GPE0_LEN * 8, 0, GEN1_GPE0_BASE);
	/* The tables load below 4 GiB: FIRMWARE_CTRL (X_FIRMWARE_CTRL 0) and both DSDT fields. */
	link_pointer(b, b->tables.data, ACPI_TABLES_FILE, (uint32_t)(at + FADT_FACS), 4, facs);
	link_pointer(b, b->tables.data, ACPI_TABLES_FILE, (uint32_t)(at + FADT_DSDT), 4, dsdt);
	link_pointer(b, b->tables.data, ACPI_TABLES_FILE, (uint32_t)(at + FADT_X_DSDT), 8, dsdt);
	checksum_table(b, at, FADT_LEN);
	return at;
}

static uint8_t *put_override(uint8_t *p, uint8_t irq, uint32_t gsi, uint16_t flags)
{
	p[0] = MADT_OVERRIDE;
	p[1] = MADT_OVERRIDE_LEN;
	p[2] = 0; /* ISA */
	p[3] = irq;
	store_le32(p + 4, gsi);
	store_le16(p + 8, flags);
	return p + MADT_OVERRIDE_LEN;
}

static size_t build_madt(struct build *b, unsigned ncpus)
{
	uint32_t len = HDR_LEN + 8 + ncpus * MADT_LAPIC_LEN + MADT_IOAPIC_LEN +
		       MADT_OVERRIDES * MADT_OVERRIDE_LEN + MADT_LAPIC_NMI_LEN;
	size_t at = blob_reserve(&b->tables, len, 8);
	if (b->tables.err)
		return 0;
	uint8_t *t = b->tables.data + at;
	put_header(t, b->gen, "APIC", len, 1);
	store_le32(t + 36, GEN1_LAPIC_BASE);
	store_le32(t + 40, MADT_PCAT_COMPAT);
	uint8_t *p = t + 44;
	for (unsigned i = 0; i < ncpus; i++, p += MADT_LAPIC_LEN) {
		p[0] = MADT_LAPIC;
		p[1] = MADT_LAPIC_LEN;
		p[2] = (uint8_t)i; /* processor UID, the SSDT's _UID */
		p[3] = (uint8_t)i; /* APIC ID */
		store_le32(p + 4, ACPI_DEVICE_ENABLED);
	}
	p[0] = MADT_IOAPIC;
	p[1] = MADT_IOAPIC_LEN;
	p[2] = IOAPIC_ID;
	store_le32(p + 4, GEN1_IOAPIC_BASE);
	store_le32(p + 8, 0); /* GSI base */
	p += MADT_IOAPIC_LEN;
	/* Like a PC: the PIT on pin 2, PCI link IRQs level-triggered active high. */
	p = put_override(p, 0, IRQ0_GSI, 0);
	for (size_t i = 0; i < sizeof(pci_irqs); i++)
		p = put_override(p, pci_irqs[i], pci_irqs[i], MADT_LEVEL_HIGH);
	p[0] = MADT_LAPIC_NMI;
	p[1] = MADT_LAPIC_NMI_LEN;
	p[2] = MADT_ALL_PROCESSORS;
	store_le16(p + 3, 0);
	p[5] = MADT_NMI_LINT;
	checksum_table(b, at, len);
	return at;
}

/* ---- SSDT: Scope (\_SB) { Device (Cnnn) { Name (_HID, "ACPI0007") Name (_UID, n) } ... } */

#define AML_NAME_OP	0x08
#define AML_BYTE_PREFIX 0x0A
#define AML_STRING	0x0D
#define AML_SCOPE_OP	0x10
#define AML_EXT_OP	0x5B
#define AML_DEVICE_OP	0x82
#define AML_ROOT	'\\'

/* The body of one processor device after its PkgLength: name, _HID, _UID. */
#define CPU_BODY_LEN (4 + (1 + 4 + 1 + 9) + (1 + 4 + 2))

/* Bytes a PkgLength needs for a package whose contents (after it) are len bytes. */
static size_t pkg_length_size(size_t len)
{
	if (len + 1 < 0x40)
		return 1;
	if (len + 2 < 0x1000)
		return 2;
	return len + 3 < 0x100000 ? 3 : 4;
}

/* Writes the PkgLength (which counts itself) for contents of len bytes; returns the bytes
 * written. */
static size_t put_pkg_length(uint8_t *p, size_t len)
{
	size_t n = pkg_length_size(len);
	size_t total = len + n;
	if (n == 1) {
		p[0] = (uint8_t)total;
		return 1;
	}
	p[0] = (uint8_t)((n - 1) << 6 | (total & 0x0F));
	for (size_t i = 1; i < n; i++)
		p[i] = (uint8_t)(total >> (4 + 8 * (i - 1)));
	return n;
}

static const char hex_digits[] = "0123456789ABCDEF";

static uint8_t *put_cpu_device(uint8_t *p, unsigned uid)
{
	*p++ = AML_EXT_OP;
	*p++ = AML_DEVICE_OP;
	p += put_pkg_length(p, CPU_BODY_LEN);
	*p++ = 'C';
	*p++ = hex_digits[(uid >> 8) & 0xF];
	*p++ = hex_digits[(uid >> 4) & 0xF];
	*p++ = hex_digits[uid & 0xF];
	*p++ = AML_NAME_OP;
	memcpy(p, "_HID", 4);
	p += 4;
	*p++ = AML_STRING;
	memcpy(p, "ACPI0007", 9); /* with its NUL */
	p += 9;
	*p++ = AML_NAME_OP;
	memcpy(p, "_UID", 4);
	p += 4;
	*p++ = AML_BYTE_PREFIX;
	*p++ = (uint8_t)uid;
	return p;
}

static size_t build_ssdt(struct build *b, unsigned ncpus)
{
	size_t cpu_len = 2 + pkg_length_size(CPU_BODY_LEN) + CPU_BODY_LEN;
	size_t scope_body = 5 + ncpus * cpu_len; /* "\_SB_" and the devices */
	uint32_t len = (uint32_t)(HDR_LEN + 1 + pkg_length_size(scope_body) + scope_body);
	size_t at = blob_reserve(&b->tables, len, 8);
	if (b->tables.err)
		return 0;
	uint8_t *t = b->tables.data + at;
	put_header(t, b->gen, "SSDT", len, 2);
	uint8_t *p = t + HDR_LEN;
	*p++ = AML_SCOPE_OP;
	p += put_pkg_length(p, scope_body);
	*p++ = AML_ROOT;
	memcpy(p, "_SB_", 4);
	p += 4;
	for (unsigned i = 0; i < ncpus; i++)
		p = put_cpu_device(p, i);
	checksum_table(b, at, len);
	return at;
}

/* RSDT (4-byte entries) or XSDT (8-byte entries) listing the tables at offsets. */
static size_t build_sdt(struct build *b, const char *sig, uint8_t entry_size, const size_t *offsets,
			unsigned n)
{
	uint32_t len = HDR_LEN + entry_size * n;
	size_t at = blob_reserve(&b->tables, len, 8);
	if (b->tables.err)
		return 0;
	put_header(b->tables.data + at, b->gen, sig, len, 1);
	for (unsigned i = 0; i < n; i++)
		link_pointer(b, b->tables.data, ACPI_TABLES_FILE,
			     (uint32_t)(at + HDR_LEN + i * entry_size), entry_size, offsets[i]);
	checksum_table(b, at, len);
	return at;
}

static void build_rsdp(struct build *b, size_t rsdt, size_t xsdt)
{
	uint8_t *r = b->rsdp;
	memset(r, 0, RSDP_LEN);
	memcpy(r, "RSD PTR ", 8);
	memcpy(r + 9, OEM_ID, 6);
	r[15] = 2;
	store_le32(r + 20, RSDP_LEN);
	link_pointer(b, r, ACPI_RSDP_FILE, RSDP_RSDT, 4, rsdt);
	link_pointer(b, r, ACPI_RSDP_FILE, RSDP_XSDT, 8, xsdt);
	table_loader_add_checksum(&b->loader, ACPI_RSDP_FILE, RSDP_CHECKSUM, 0, RSDP_V1_LEN);
	table_loader_add_checksum(&b->loader, ACPI_RSDP_FILE, RSDP_EXT_CHECKSUM, 0, RSDP_LEN);
}

static int build_all(struct build *b, unsigned ncpus)
{
	table_loader_allocate(&b->loader, ACPI_TABLES_FILE, 64, TABLE_LOADER_ZONE_HIGH);
	table_loader_allocate(&b->loader, ACPI_RSDP_FILE, 16, TABLE_LOADER_ZONE_FSEG);
	size_t facs = build_facs(b);
	size_t dsdt = build_dsdt(b);
	size_t listed[3];
	listed[0] = build_fadt(b, ncpus, facs, dsdt);
	listed[1] = build_madt(b, ncpus);
	listed[2] = build_ssdt(b, ncpus);
	size_t rsdt = build_sdt(b, "RSDT", 4, listed, 3);
	size_t xsdt = build_sdt(b, "XSDT", 8, listed, 3);
	if (b->tables.err)
		return b->tables.err;
	build_rsdp(b, rsdt, xsdt);
	return b->loader.err;
}

int acpi_add_tables(struct fw_cfg *fw, unsigned gen, unsigned ncpus, bool vmbus)
{
	if (ncpus < 1 || ncpus > ACPI_MAX_CPUS || gen < 1 || gen > 2)
		return -EINVAL;
	struct build b = { .gen = gen, .vmbus = vmbus || gen == 2 };
	table_loader_init(&b.loader);
	int ret = build_all(&b, ncpus);
	if (ret == 0)
		ret = fw_cfg_add_file(fw, ACPI_TABLES_FILE, b.tables.data, b.tables.len);
	if (ret == 0)
		ret = fw_cfg_add_file(fw, ACPI_RSDP_FILE, b.rsdp, RSDP_LEN);
	if (ret == 0)
		ret = fw_cfg_add_file(fw, TABLE_LOADER_FILE, b.loader.buf, b.loader.len);
	free(b.tables.data);
	table_loader_free(&b.loader);
	return ret;
}
