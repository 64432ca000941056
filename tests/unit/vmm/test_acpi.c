/* The generation 1 ACPI tables as a firmware sees them: an interpreter written here from
 * the table-loader specification (not from acpi.c) runs "etc/table-loader" against
 * simulated guest RAM, checking each command the way SeaBIOS and OVMF do; the test then
 * walks RSDP -> RSDT/XSDT -> FADT -> DSDT/FACS, MADT and SSDT in that memory checking
 * signatures, lengths, checksums and fields. The oracle for the contents is ACPICA: each
 * table is dumped and disassembled with `iasl -d` (no errors or warnings, the key fields
 * in its words), and the DSDT's methods are run in `acpiexec`. The VMBus device is checked
 * the same way in the DSDT of a VM with the Hyper-V interface, and absent otherwise. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "acpi.h"
#include "dev.h"
#include "endian.h"
#include "fw_cfg.h"
#include "gen1_layout.h"
#include "table_loader.h"
#include "test_util.h"

#define RAM_SIZE  (8u << 20)
#define FSEG_BASE 0xF0000u
#define FSEG_END  0x100000u
#define HIGH_BASE 0x400000u /* where this "firmware" puts HIGH allocations */
#define RECORD	  TABLE_LOADER_RECORD
#define NAME	  TABLE_LOADER_NAME_SIZE
#define MAX_FILES 8
#define MAX_PTRS  64
#define OUT_SIZE  (512u << 10)

static uint8_t *ram;
static struct guest_mem mem;
static char *out; /* command output */

/* ---- the loader interpreter ---- */

struct loaded {
	char name[NAME];
	uint64_t gpa;
	uint32_t size;
};

struct load {
	struct loaded files[MAX_FILES];
	unsigned nfiles;
	uint64_t fseg_next, high_next;
	uint64_t targets[MAX_PTRS]; /* what each ADD_POINTER points at, as OVMF visits them */
	unsigned ntargets;
};

static struct loaded *loaded_file(struct load *l, const uint8_t *name)
{
	assert_non_null(memchr(name, 0, NAME)); /* NUL-terminated within 56 bytes */
	for (unsigned i = 0; i < l->nfiles; i++)
		if (strcmp(l->files[i].name, (const char *)name) == 0)
			return &l->files[i];
	fail_msg("%s used before it was allocated", name);
	return NULL;
}

static void cmd_allocate(struct load *l, struct fw_cfg *fw, const uint8_t *r)
{
	uint32_t align = load_le32(r + 4 + NAME);
	uint8_t zone = r[4 + NAME + 4];
	/* OVMF refuses alignments above a page; both firmwares need a power of two */
	assert_true(align && !(align & (align - 1)) && align <= 4096);
	assert_true(zone == TABLE_LOADER_ZONE_HIGH || zone == TABLE_LOADER_ZONE_FSEG);
	assert_true(l->nfiles < MAX_FILES);
	struct loaded *f = &l->files[l->nfiles++];
	assert_non_null(memchr(r + 4, 0, NAME));
	strcpy(f->name, (const char *)r + 4);
	ssize_t size = fw_cfg_read_file(fw, f->name, NULL, 0);
	assert_true(size > 0);
	f->size = (uint32_t)size;
	uint64_t *next = zone == TABLE_LOADER_ZONE_FSEG ? &l->fseg_next : &l->high_next;
	f->gpa = (*next + align - 1) & ~(uint64_t)(align - 1);
	*next = f->gpa + f->size;
	if (zone == TABLE_LOADER_ZONE_FSEG)
		assert_true(*next <= FSEG_END);
	uint8_t *data = malloc(f->size);
	assert_int_equal(fw_cfg_read_file(fw, f->name, data, f->size), size);
	assert_int_equal(guest_mem_write(&mem, f->gpa, data, f->size), 0);
	free(data);
}

static void cmd_add_pointer(struct load *l, const uint8_t *r)
{
	struct loaded *dest = loaded_file(l, r + 4);
	struct loaded *src = loaded_file(l, r + 4 + NAME);
	uint32_t offset = load_le32(r + 4 + 2 * NAME);
	uint8_t size = r[4 + 2 * NAME + 4];
	assert_true(size == 1 || size == 2 || size == 4 || size == 8);
	assert_true(offset <= dest->size && size <= dest->size - offset);
	uint8_t field[8] = { 0 };
	assert_int_equal(guest_mem_read(&mem, dest->gpa + offset, field, size), 0);
	uint64_t value = load_le64(field);
	assert_true(value < src->size); /* OVMF: an offset inside src */
	value += src->gpa;
	if (size < 8)
		assert_true(value >> (8 * size) == 0);
	store_le64(field, value);
	assert_int_equal(guest_mem_write(&mem, dest->gpa + offset, field, size), 0);
	assert_true(l->ntargets < MAX_PTRS);
	l->targets[l->ntargets++] = value;
}

static void cmd_add_checksum(struct load *l, const uint8_t *r)
{
	struct loaded *f = loaded_file(l, r + 4);
	uint32_t offset = load_le32(r + 4 + NAME);
	uint32_t start = load_le32(r + 4 + NAME + 4);
	uint32_t length = load_le32(r + 4 + NAME + 8);
	assert_true(start <= f->size && length <= f->size - start);
	assert_true(offset >= start && offset - start < length);
	uint8_t *p = ram + f->gpa;
	uint8_t sum = 0;
	for (uint32_t i = 0; i < length; i++)
		sum += p[start + i];
	p[offset] -= sum;
}

static void run_loader(struct fw_cfg *fw, struct load *l)
{
	memset(l, 0, sizeof(*l));
	l->fseg_next = FSEG_BASE;
	l->high_next = HIGH_BASE;
	ssize_t len = fw_cfg_read_file(fw, TABLE_LOADER_FILE, NULL, 0);
	assert_true(len > 0 && len % RECORD == 0);
	uint8_t *script = malloc((size_t)len);
	assert_int_equal(fw_cfg_read_file(fw, TABLE_LOADER_FILE, script, (size_t)len), len);
	for (const uint8_t *r = script; r < script + len; r += RECORD) {
		switch (load_le32(r)) {
		case TABLE_LOADER_ALLOCATE:
			cmd_allocate(l, fw, r);
			break;
		case TABLE_LOADER_ADD_POINTER:
			cmd_add_pointer(l, r);
			break;
		case TABLE_LOADER_ADD_CHECKSUM:
			cmd_add_checksum(l, r);
			break;
		default:
			fail_msg("unexpected loader command %u", load_le32(r));
		}
	}
	free(script);
}

/* ---- walking the tables ---- */

static uint8_t checksum(uint64_t gpa, uint32_t len)
{
	uint8_t sum = 0;
	for (uint32_t i = 0; i < len; i++)
		sum += ram[gpa + i];
	return sum;
}

/* A valid table with this signature at gpa; returns its length. */
static uint32_t expect_table(uint64_t gpa, const char *sig)
{
	assert_true(gpa >= HIGH_BASE && gpa + 36 <= RAM_SIZE);
	assert_memory_equal(ram + gpa, sig, 4);
	uint32_t len = load_le32(ram + gpa + 4);
	assert_true(len >= 36 && gpa + len <= RAM_SIZE);
	assert_int_equal(checksum(gpa, len), 0);
	return len;
}

/* The RSDP as an OS finds it: "RSD PTR " on a 16-byte boundary in 0xE0000-0xFFFFF. */
static uint64_t find_rsdp(void)
{
	for (uint64_t gpa = 0xE0000; gpa < FSEG_END; gpa += 16)
		if (memcmp(ram + gpa, "RSD PTR ", 8) == 0)
			return gpa;
	fail_msg("no RSDP in the F segment");
	return 0;
}

struct tables {
	uint64_t rsdt, xsdt, fadt, madt, ssdt, dsdt, facs;
};

static void walk(struct tables *t)
{
	uint64_t rsdp = find_rsdp();
	assert_int_equal(checksum(rsdp, 20), 0);
	assert_int_equal(ram[rsdp + 15], 2);
	assert_int_equal(load_le32(ram + rsdp + 20), 36);
	assert_int_equal(checksum(rsdp, 36), 0);
	t->rsdt = load_le32(ram + rsdp + 16);
	t->xsdt = load_le64(ram + rsdp + 24);
	uint32_t rlen = expect_table(t->rsdt, "RSDT");
	uint32_t xlen = expect_table(t->xsdt, "XSDT");
	unsigned n = (rlen - 36) / 4;
	assert_int_equal(xlen - 36, 8 * n);
	t->fadt = t->madt = t->ssdt = 0;
	for (unsigned i = 0; i < n; i++) {
		uint64_t gpa = load_le64(ram + t->xsdt + 36 + 8 * i);
		assert_int_equal(load_le32(ram + t->rsdt + 36 + 4 * i), gpa);
		uint64_t *slot = memcmp(ram + gpa, "FACP", 4) == 0   ? &t->fadt
				 : memcmp(ram + gpa, "APIC", 4) == 0 ? &t->madt
				 : memcmp(ram + gpa, "SSDT", 4) == 0 ? &t->ssdt
								     : NULL;
		assert_non_null(slot);
		assert_int_equal(*slot, 0); /* each once */
		*slot = gpa;
		expect_table(gpa, (const char *)ram + gpa);
	}
	assert_true(t->fadt && t->madt && t->ssdt);
	assert_int_equal(expect_table(t->fadt, "FACP"), 244);
	assert_int_equal(ram[t->fadt + 8], 3);
	t->dsdt = load_le32(ram + t->fadt + 40);
	assert_int_equal(load_le64(ram + t->fadt + 140), t->dsdt); /* X_DSDT */
	expect_table(t->dsdt, "DSDT");
	t->facs = load_le32(ram + t->fadt + 36);
	assert_int_equal(load_le64(ram + t->fadt + 132), 0); /* X_FIRMWARE_CTRL unused */
	assert_int_equal(t->facs % 64, 0);
	assert_memory_equal(ram + t->facs, "FACS", 4);
	assert_int_equal(load_le32(ram + t->facs + 4), 64);
}

static bool is_target(const struct load *l, uint64_t gpa)
{
	for (unsigned i = 0; i < l->ntargets; i++)
		if (l->targets[i] == gpa)
			return true;
	return false;
}

static void check_fadt_pm(uint64_t fadt, unsigned ncpus, uint32_t pm_base);

static void check_fadt(uint64_t fadt, unsigned ncpus)
{
	check_fadt_pm(fadt, ncpus, GEN1_PM_BASE);
}

/* The FADT with the PM block at pm_base (where the generation's firmware puts it). */
static void check_fadt_pm(uint64_t fadt, unsigned ncpus, uint32_t pm_base)
{
	const uint8_t *f = ram + fadt;
	assert_int_equal(load_le16(f + 46), GEN1_SCI_IRQ);
	assert_int_equal(load_le32(f + 48), 0); /* SMI_CMD: no SMM */
	assert_int_equal(load_le32(f + 56), pm_base + GEN1_PM1_EVT_OFFSET);
	assert_int_equal(load_le32(f + 64), pm_base + GEN1_PM1_CNT_OFFSET);
	assert_int_equal(load_le32(f + 76), pm_base + GEN1_PM_TMR_OFFSET);
	assert_int_equal(load_le32(f + 80), GEN1_GPE0_BASE);
	assert_int_equal(f[108], 0x32);				     /* century */
	assert_int_equal(load_le16(f + 109) & 3, 3);		     /* legacy devices, 8042 */
	assert_int_equal(load_le32(f + 112) & (1u << 4), 0);	     /* fixed power button */
	assert_int_equal(load_le32(f + 112) & (1u << 10), 1u << 10); /* RESET_REG_SUP */
	/* physical destination mode with more than 8 CPUs */
	assert_int_equal(!!(load_le32(f + 112) & (1u << 19)), ncpus > 8);
	assert_int_equal(f[116], 1); /* reset register in I/O */
	assert_int_equal(load_le64(f + 120), GEN1_RESET_CONTROL);
	assert_int_equal(f[128], 6);
	assert_int_equal(load_le64(f + 172 + 4), pm_base + GEN1_PM1_CNT_OFFSET); /* X_ */
	assert_int_equal(load_le64(f + 208 + 4), pm_base + GEN1_PM_TMR_OFFSET);
}

static void check_madt(uint64_t madt, unsigned ncpus)
{
	const uint8_t *m = ram + madt;
	uint32_t len = load_le32(m + 4);
	assert_int_equal(load_le32(m + 36), GEN1_LAPIC_BASE);
	unsigned lapics = 0, ioapics = 0, nmis = 0, overrides = 0;
	static const uint8_t pci_irqs[] = GEN1_PCI_IRQS;
	for (uint32_t off = 44; off < len;) {
		const uint8_t *e = m + off;
		assert_true(e[1] >= 2 && off + e[1] <= len);
		switch (e[0]) {
		case 0:
			assert_int_equal(e[3], lapics); /* APIC IDs 0..n-1 */
			assert_int_equal(load_le32(e + 4) & 1, 1);
			lapics++;
			break;
		case 1:
			assert_int_equal(load_le32(e + 4), GEN1_IOAPIC_BASE);
			assert_int_equal(load_le32(e + 8), 0);
			ioapics++;
			break;
		case 2:
			if (e[3] == 0) {
				assert_int_equal(load_le32(e + 4), 2);
			} else {
				assert_non_null(memchr(pci_irqs, e[3], sizeof(pci_irqs)));
				assert_int_equal(load_le32(e + 4), e[3]);
				assert_int_equal(load_le16(e + 8), 0x000D);
			}
			overrides++;
			break;
		case 4:
			assert_int_equal(e[2], 0xFF); /* all processors */
			assert_int_equal(load_le16(e + 3), 0);
			assert_int_equal(e[5], 1); /* LINT1 */
			nmis++;
			break;
		default:
			fail_msg("unexpected MADT entry type %u", e[0]);
		}
		off += e[1];
	}
	assert_int_equal(lapics, ncpus);
	assert_int_equal(ioapics, 1);
	assert_int_equal(overrides, 1 + sizeof(pci_irqs));
	assert_int_equal(nmis, 1);
}

/* ---- ACPICA as the oracle ---- */

static void write_new_file(const char *name, const void *data, size_t len)
{
	FILE *f = fopen(test_path(name), "wb");
	assert_non_null(f);
	assert_int_equal(fwrite(data, 1, len, f), len);
	assert_int_equal(fclose(f), 0);
}

static void dump(const char *name, uint64_t gpa, uint32_t len)
{
	write_new_file(name, ram + gpa, len);
}

/* Runs of spaces become one, so fields can be matched whatever iasl's column layout. */
static void squeeze_spaces(char *text)
{
	char *to = text;
	for (const char *from = text; *from; from++)
		if (*from != ' ' || to == text || to[-1] != ' ')
			*to++ = *from;
	*to = 0;
}

/* iasl -d NAME.dat: must succeed without errors or warnings; leaves NAME.dsl in out, its
 * spaces squeezed. */
static void disassemble(const char *name)
{
	int status = test_run(out, OUT_SIZE, "cd %s && iasl -d %s.dat", test_tmpdir(), name);
	if (status != 0 || strstr(out, "rror") || strstr(out, "arning"))
		fail_msg("iasl -d %s.dat (status %d):\n%s", name, status, out);
	char dsl[32];
	snprintf(dsl, sizeof(dsl), "%s.dsl", name);
	assert_int_equal(test_run(out, OUT_SIZE, "cat %s", test_path(dsl)), 0);
	if (strstr(out, "**** ") || strstr(out, "Invalid"))
		fail_msg("iasl complained in %s:\n%s", dsl, out);
	squeeze_spaces(out);
}

static unsigned count(const char *text, const char *needle)
{
	unsigned n = 0;
	for (const char *p = strstr(text, needle); p; p = strstr(p + 1, needle))
		n++;
	return n;
}

static void check_with_iasl(const struct tables *t, unsigned ncpus)
{
	char want[128];
	dump("facp.dat", t->fadt, load_le32(ram + t->fadt + 4));
	disassemble("facp");
	snprintf(want, sizeof(want), "PM1A Control Block Address : %08X",
		 GEN1_PM_BASE + GEN1_PM1_CNT_OFFSET);
	assert_contains(out, want);
	snprintf(want, sizeof(want), "SCI Interrupt : %04X", GEN1_SCI_IRQ);
	assert_contains(out, want);
	snprintf(want, sizeof(want), "PM Timer Block Address : %08X",
		 GEN1_PM_BASE + GEN1_PM_TMR_OFFSET);
	assert_contains(out, want);
	assert_contains(out, "Value to cause reset : 06");
	assert_contains(out, "Reset Register Supported (V2) : 1");
	assert_contains(out, "Control Method Power Button (V1) : 0");
	assert_contains(out, "RTC Century Index : 32");

	dump("apic.dat", t->madt, load_le32(ram + t->madt + 4));
	disassemble("apic");
	assert_int_equal(count(out, "Subtable Type : 00 [Processor Local APIC]"), ncpus);
	snprintf(want, sizeof(want), "Local Apic ID : %02X", ncpus - 1);
	assert_contains(out, want);
	snprintf(want, sizeof(want), "Address : %08llX", (unsigned long long)GEN1_IOAPIC_BASE);
	assert_contains(out, want);
	assert_int_equal(count(out, "[Interrupt Source Override]"), 5);

	dump("ssdt.dat", t->ssdt, load_le32(ram + t->ssdt + 4));
	disassemble("ssdt");
	assert_int_equal(count(out, "\"ACPI0007\""), ncpus);
	snprintf(want, sizeof(want), "Device (C%03X)", ncpus - 1);
	assert_contains(out, want);
	snprintf(want, sizeof(want), "Name (_UID, 0x%02X)", ncpus - 1); /* the MADT's UID */
	assert_contains(out, want);
}

/* The tables that do not depend on the CPU count: checked once. */
static void check_fixed_tables(const struct tables *t)
{
	dump("facs.dat", t->facs, 64);
	disassemble("facs");
	dump("xsdt.dat", t->xsdt, load_le32(ram + t->xsdt + 4));
	disassemble("xsdt");
	dump("rsdt.dat", t->rsdt, load_le32(ram + t->rsdt + 4));
	disassemble("rsdt");
	dump("dsdt.dat", t->dsdt, load_le32(ram + t->dsdt + 4));
	disassemble("dsdt");
	assert_contains(out, "Name (_HID, EisaId (\"PNP0A03\")");
	char want[160];
	snprintf(want, sizeof(want), "0x%08llX, // Range Minimum",
		 (unsigned long long)GEN1_PCI_HOLE_START);
	assert_contains(out, want);
	snprintf(want, sizeof(want), "0x%08llX, // Range Maximum",
		 (unsigned long long)GEN1_PCI_MMIO_END - 1);
	assert_contains(out, want);
	snprintf(want, sizeof(want), "0x%08llX, // Length",
		 (unsigned long long)(GEN1_PCI_MMIO_END - GEN1_PCI_HOLE_START));
	assert_contains(out, want);
	assert_contains(out, "0x0CF7, // Range Maximum");
	assert_contains(out, "0x0D00, // Range Minimum");
	assert_contains(out, "OperationRegion (PIRQ, PCI_Config, 0x60, 0x04)");
	assert_contains(out, "EisaId (\"PNP0B00\")");
	assert_contains(out, "EisaId (\"PNP0303\")");
	assert_contains(out, "EisaId (\"PNP0501\")");
	snprintf(want, sizeof(want), "0x%04X, // Range Minimum", GEN1_COM1_BASE);
	assert_contains(out, want);
	assert_int_equal(count(out, "EisaId (\"PNP0C0F\")"), 4);
	assert_contains(out, "Name (_S5, Package (0x04)");
	assert_null(strstr(out, "VMB")); /* no Hyper-V interface, no VMBus */
}

/* acpiexec runs the DSDT's methods; a helper table lets it return half of _PRT at a time
 * (the whole package is more than its debugger prints). */
static const char prt_helper[] =
	"DefinitionBlock (\"\", \"SSDT\", 2, \"HVTEST\", \"PRTCHECK\", 1)\n"
	"{\n"
	"    External (\\_SB.PCI0._PRT, MethodObj)\n"
	"    Method (PRTN, 0) { Return (SizeOf (\\_SB.PCI0._PRT ())) }\n"
	"    Method (PRTH, 1)\n"
	"    {\n"
	"        Local0 = \\_SB.PCI0._PRT ()\n"
	"        Local1 = Package (0x40) {}\n"
	"        Local2 = Zero\n"
	"        While (Local2 < 0x40)\n"
	"        {\n"
	"            Local1 [Local2] = DerefOf (Local0 [Arg0 * 0x40 + Local2])\n"
	"            Local2++\n"
	"        }\n"
	"        Return (Local1)\n"
	"    }\n"
	"}\n";

#define PRT_ENTRIES 128

/* Finds _PRT entry (slot, pin) in acpiexec's output from at on; returns where it ends. */
static const char *expect_prt_entry(const char *at, unsigned slot, unsigned pin)
{
	char entry[128];
	snprintf(entry, sizeof(entry), "[Integer] = %016X\n [Integer] = %016X\n",
		 slot << 16 | 0xFFFF, pin);
	at = strstr(at, entry);
	if (!at)
		fail_msg("_PRT entry for slot %u pin %u not found:\n%s", slot, pin, out);
	const char *link = strstr(at, "Name LNK");
	assert_non_null(link);
	assert_int_equal(link[8], 'A' + (slot + 3 + pin) % 4);
	return link;
}

static void check_dsdt_methods(void)
{
	write_new_file("prt.asl", prt_helper, strlen(prt_helper));
	assert_int_equal(test_run(out, OUT_SIZE, "cd %s && iasl prt.asl", test_tmpdir()), 0);
	/* acpiexec's debugger reads the commands from its input */
	char commands[512], *p = commands;
	p += sprintf(p, "evaluate \\_S5\nevaluate \\PRTN\nevaluate \\PRTH 0\nevaluate \\PRTH 1\n");
	/* a link's _SRS lands in the PIIX PIRQRC register, _CRS reports it, _DIS turns it off */
	p += sprintf(p, "evaluate \\_SB.LNKC._PRS\n"
			"evaluate \\_SB.LNKC._SRS (89 06 00 09 01 0A 00 00 00 79 00)\n"
			"evaluate \\_SB.LNKC._CRS\nevaluate \\_SB.LNKC._STA\n"
			"evaluate \\_SB.LNKC._DIS\nevaluate \\_SB.LNKC._STA\n"
			"evaluate \\_SB.LNKC._CRS\nquit\n");
	write_new_file("commands", commands, (size_t)(p - commands));
	int status = test_run(out, OUT_SIZE, "cd %s && acpiexec dsdt.dat prt.aml < commands",
			      test_tmpdir());
	if (status != 0 || strstr(out, "ACPI Error") || strstr(out, "ACPI Warning"))
		fail_msg("acpiexec (status %d):\n%s", status, out);
	squeeze_spaces(out);
	char want[96];
	snprintf(want, sizeof(want), "[Integer] = %016X", GEN1_SLP_TYP_S5);
	const char *at = strstr(out, "[Package] Contains 4 Elements:"); /* _S5 */
	assert_non_null(at);
	assert_non_null(strstr(at, want));
	at = strstr(at, "[Integer] = 0000000000000080"); /* PRTN */
	assert_non_null(at);
	/* every slot and pin: link (slot - 1 + pin) mod 4, SeaBIOS's and the i440FX's swizzle */
	for (unsigned i = 0; i < PRT_ENTRIES; i++)
		at = expect_prt_entry(at, i / 4, i % 4);
	at = strstr(at, "89 12 00 09 04 05 00 00 00 09 00 00 00 0A 00 00"); /* 5 9 10 11 */
	assert_non_null(at);
	at = strstr(at, "89 06 00 09 01 0A 00 00 00 79 00"); /* routed to 10 */
	assert_non_null(at);
	at = strstr(at, "[Integer] = 000000000000000B"); /* enabled */
	assert_non_null(at);
	at = strstr(at, "[Integer] = 0000000000000009"); /* disabled */
	assert_non_null(at);
	assert_non_null(strstr(at, "89 06 00 09 01 00 00 00 00 79 00")); /* no IRQ */
}

/* ---- the tests ---- */

static void build_and_check(unsigned ncpus)
{
	memset(ram, 0, RAM_SIZE);
	struct fw_cfg *fw;
	assert_int_equal(fw_cfg_create(&mem, &fw), 0);
	assert_int_equal(acpi_add_tables(fw, 1, ncpus, false), 0);
	struct load l;
	run_loader(fw, &l);
	struct tables t;
	walk(&t);
	/* OVMF installs what ADD_POINTER reaches: every table must be a target */
	const uint64_t reached[] = { t.rsdt, t.xsdt, t.fadt, t.madt, t.ssdt, t.dsdt, t.facs };
	for (unsigned i = 0; i < sizeof(reached) / sizeof(reached[0]); i++)
		assert_true(is_target(&l, reached[i]));
	check_fadt(t.fadt, ncpus);
	check_madt(t.madt, ncpus);
	check_with_iasl(&t, ncpus);
	if (ncpus == 1) {
		check_fixed_tables(&t);
		check_dsdt_methods();
	}
	fw_cfg_destroy(fw);
}

static void test_one_cpu(void **state)
{
	(void)state;
	build_and_check(1);
}

static void test_cpu_counts(void **state)
{
	(void)state;
	const unsigned counts[] = { 2, 8, 9, 64, ACPI_MAX_CPUS };
	for (unsigned i = 0; i < sizeof(counts) / sizeof(counts[0]); i++)
		build_and_check(counts[i]);
}

/* What Linux 6.1's hv_vmbus looks for (drivers/hv/vmbus_drv.c): a device whose _HID or
 * _CID is "VMBus" or "VMBUS" (exact case) with a _CRS it can walk, below PCI0 whose _CRS
 * holds the MMIO windows. acpiexec evaluates the objects as the kernel's ACPICA would. */
static void check_vmbus_device(void)
{
	disassemble("dsdt");
	assert_contains(out, "Device (VMBS)");
	assert_contains(out, "Return (\"VMBus\")");
	assert_contains(out, "Name (_CID, \"VMBUS\")");
	assert_contains(out, "Name (_UID, Zero)");
	const char commands[] = "evaluate \\_SB.PCI0.ISA.VMBS._HID\n"
				"evaluate \\_SB.PCI0.ISA.VMBS._CID\n"
				"evaluate \\_SB.PCI0.ISA.VMBS._STA\n"
				"evaluate \\_SB.PCI0.ISA.VMBS._CRS\n"
				"evaluate \\_SB.PCI0._CRS\nquit\n";
	write_new_file("vmbus_commands", commands, strlen(commands));
	int status = test_run(out, OUT_SIZE, "cd %s && acpiexec dsdt.dat < vmbus_commands",
			      test_tmpdir());
	if (status != 0 || strstr(out, "ACPI Error") || strstr(out, "ACPI Warning"))
		fail_msg("acpiexec (status %d):\n%s", status, out);
	squeeze_spaces(out);
	/* ACPICA (the kernel's too) upper-cases what _HID returns: "VMBUS", which Linux takes */
	const char *at = strstr(out, "VMBS._HID returned");
	assert_non_null(at);
	at = strstr(at, "[String] Length 05 = \"VMBUS\"");
	assert_non_null(at);
	at = strstr(at, "VMBS._CID returned");
	assert_non_null(at);
	at = strstr(at, "[String] Length 05 = \"VMBUS\"");
	assert_non_null(at);
	at = strstr(at, "[Integer] = 000000000000000F");
	assert_non_null(at);
	at = strstr(at, "79 00"); /* the resource template: its end tag alone */
	assert_non_null(at);
	/* the window VMBus takes from PCI0, as the bytes of its minimum */
	uint8_t hole[4];
	store_le32(hole, (uint32_t)GEN1_PCI_HOLE_START);
	char want[64];
	snprintf(want, sizeof(want), "%02X %02X %02X %02X", hole[0], hole[1], hole[2], hole[3]);
	assert_non_null(strstr(at, want));
}

static void test_vmbus_device(void **state)
{
	(void)state;
	memset(ram, 0, RAM_SIZE);
	struct fw_cfg *fw;
	assert_int_equal(fw_cfg_create(&mem, &fw), 0);
	assert_int_equal(acpi_add_tables(fw, 1, 2, true), 0);
	struct load l;
	run_loader(fw, &l);
	struct tables t;
	walk(&t);
	check_fadt(t.fadt, 2);
	check_madt(t.madt, 2);
	dump("dsdt.dat", t.dsdt, load_le32(ram + t.dsdt + 4));
	check_vmbus_device();
	fw_cfg_destroy(fw);
}

/* Generation 2: OVMF's PM block address in the FADT, the VMBus device in the DSDT whether
 * or not vmbus is asked for, and every table says which generation it describes. */
static void test_generation2(void **state)
{
	(void)state;
	memset(ram, 0, RAM_SIZE);
	struct fw_cfg *fw;
	assert_int_equal(fw_cfg_create(&mem, &fw), 0);
	assert_int_equal(acpi_add_tables(fw, 2, 2, false), 0);
	struct load l;
	run_loader(fw, &l);
	struct tables t;
	walk(&t);
	check_fadt_pm(t.fadt, 2, GEN2_PM_BASE);
	check_madt(t.madt, 2);
	const uint64_t all[] = { t.rsdt, t.xsdt, t.fadt, t.madt, t.ssdt, t.dsdt };
	for (unsigned i = 0; i < sizeof(all) / sizeof(all[0]); i++)
		assert_memory_equal(ram + all[i] + 16, "HVGEN2", 6);
	dump("dsdt.dat", t.dsdt, load_le32(ram + t.dsdt + 4));
	disassemble("dsdt");
	assert_contains(out, "DefinitionBlock (\"\", \"DSDT\", 2, \"HVSTCK\", \"HVGEN2\"");
	check_vmbus_device();
	fw_cfg_destroy(fw);
}

static void test_refusals(void **state)
{
	(void)state;
	struct fw_cfg *fw;
	assert_int_equal(fw_cfg_create(&mem, &fw), 0);
	assert_int_equal(acpi_add_tables(fw, 1, 0, false), -EINVAL);
	assert_int_equal(acpi_add_tables(fw, 1, ACPI_MAX_CPUS + 1, true), -EINVAL);
	assert_int_equal(acpi_add_tables(fw, 0, 1, false), -EINVAL);
	assert_int_equal(acpi_add_tables(fw, 3, 1, true), -EINVAL);
	assert_int_equal(fw_cfg_read_file(fw, TABLE_LOADER_FILE, NULL, 0), -ENOENT);
	assert_int_equal(acpi_add_tables(fw, 1, 4, false), 0);
	assert_int_equal(acpi_add_tables(fw, 1, 4, true), -EEXIST);
	fw_cfg_destroy(fw);
}

int main(void)
{
	if (test_run(NULL, 0, "command -v iasl && command -v acpiexec") != 0) {
		fprintf(stderr, "iasl and acpiexec (acpica-tools) are needed\n");
		return TEST_SKIP;
	}
	ram = calloc(1, RAM_SIZE);
	out = malloc(OUT_SIZE);
	if (!ram || !out || guest_mem_add(&mem, 0, RAM_SIZE, ram) != 0)
		return 1;
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_one_cpu),	     cmocka_unit_test(test_cpu_counts),
		cmocka_unit_test(test_vmbus_device), cmocka_unit_test(test_generation2),
		cmocka_unit_test(test_refusals),
	};
	int ret = cmocka_run_group_tests(tests, NULL, test_teardown_tmpdir);
	free(ram);
	free(out);
	return ret;
}
