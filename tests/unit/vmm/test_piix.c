/* The generation 1 chipset driven as SeaBIOS and a guest drive it, through the ports:
 * enumeration, PAM, PIRQ/ELCR, reset control, the IDE function's BAR4 carrying real DMA
 * transfers from a raw disk into simulated guest memory, and the PIIX4 PM block (PMBA,
 * S5, power button, PM timer against CLOCK_MONOTONIC, GPE0). */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "gen1_layout.h"
#include "ide.h"
#include "pci.h"
#include "piix.h"
#include "platform_test.h"
#include "test_disk.h"
#include "test_util.h"
#include "vdisk.h"

struct vdisk *test_open_disks[TEST_MAX_OPEN_DISKS];

#define HOST PCI_DEVFN(GEN1_PCI_DEV_HOST, 0)
#define ISA  PCI_DEVFN(GEN1_PCI_DEV_PIIX, GEN1_PCI_FN_ISA)
#define IDE  PCI_DEVFN(GEN1_PCI_DEV_PIIX, GEN1_PCI_FN_IDE)
#define PM   PCI_DEVFN(GEN1_PCI_DEV_PIIX, GEN1_PCI_FN_PM)

#define RAM_SIZE  (2u << 20)
#define DISK_SIZE (8u << 20)
#define SEED	  11
#define PM1_STS	  (GEN1_PM_BASE + GEN1_PM1_EVT_OFFSET)
#define PM1_EN	  (GEN1_PM_BASE + GEN1_PM1_EVT_OFFSET + 2)
#define PM1_CNT	  (GEN1_PM_BASE + GEN1_PM1_CNT_OFFSET)
#define PM_TMR	  (GEN1_PM_BASE + GEN1_PM_TMR_OFFSET)
#define PWRBTN	  0x0100
#define SLP_EN	  0x2000

struct rig {
	struct dev_bus bus;
	struct guest_mem mem;
	uint8_t *ram;
	struct hook_log log;
	struct piix *piix;
	struct vdisk *disk;
	char *path;
};

static int setup(void **state)
{
	struct rig *r = calloc(1, sizeof(*r));
	dev_bus_init(&r->bus);
	r->ram = calloc(1, RAM_SIZE);
	guest_mem_add(&r->mem, 0, RAM_SIZE, r->ram);
	struct piix_config cfg = { .bus = &r->bus, .mem = &r->mem };
	cfg.hooks = hook_log_hooks(&r->log);
	assert_int_equal(piix_create(&cfg, &r->piix), 0);
	*state = r;
	return 0;
}

static int teardown(void **state)
{
	struct rig *r = *state;
	piix_destroy(r->piix);
	test_close_tracked();
	if (r->path) {
		unlink(r->path);
		free(r->path);
	}
	dev_bus_destroy(&r->bus);
	free(r->ram);
	free(r);
	return 0;
}

/* ---- enumeration ---- */

struct found {
	unsigned devfn;
	uint32_t id, class_rev;
	uint8_t header;
};

/* Bus 0 as SeaBIOS walks it: function 0 of each slot, the others only when function 0 says
 * multi-function; absent functions read vendor 0xFFFF. */
static unsigned enumerate(struct dev_bus *b, struct found *out, unsigned max)
{
	unsigned n = 0;
	for (unsigned dev = 0; dev < 32; dev++) {
		for (unsigned fn = 0; fn < 8 && n < max; fn++) {
			unsigned devfn = PCI_DEVFN(dev, fn);
			uint16_t vendor = (uint16_t)cfg_read(b, devfn, 0, 2);
			if (vendor == 0xFFFF) {
				if (fn == 0)
					break;
				continue;
			}
			uint8_t header = (uint8_t)cfg_read(b, devfn, 0x0E, 1);
			out[n++] = (struct found){ devfn, cfg_read(b, devfn, 0, 4),
						   cfg_read(b, devfn, 0x08, 4), header };
			if (fn == 0 && !(header & PCI_HEADER_MULTI_FN))
				break;
		}
	}
	return n;
}

static void test_enumeration_as_seabios_does(void **state)
{
	struct rig *r = *state;
	bus_outl(&r->bus, 0xCF8, 0x80000000u);
	assert_int_equal(bus_inl(&r->bus, 0xCF8), 0x80000000u);
	struct found f[16];
	unsigned n = enumerate(&r->bus, f, 16);
	assert_int_equal(n, 4);
	assert_int_equal(f[0].devfn, HOST);
	assert_int_equal(f[0].id, 0x12378086u);
	assert_int_equal(f[0].class_rev >> 8, 0x060000);
	assert_int_equal(f[0].header, 0);
	assert_int_equal(f[1].devfn, ISA);
	assert_int_equal(f[1].id, 0x70008086u);
	assert_int_equal(f[1].class_rev >> 8, 0x060100);
	assert_int_equal(f[1].header, 0x80);
	assert_int_equal(f[2].devfn, IDE);
	assert_int_equal(f[2].id, 0x70108086u);
	assert_int_equal(f[2].class_rev >> 8, 0x010180);
	assert_int_equal(f[3].devfn, PM);
	assert_int_equal(f[3].id, 0x71138086u);
	assert_int_equal(f[3].class_rev >> 8, 0x068000);
	assert_int_equal(cfg_read(&r->bus, PM, PCI_INTERRUPT_PIN, 1), 1);
	/* only BAR4 of the IDE function exists: 16 bytes of I/O */
	for (unsigned bar = 0; bar < 6; bar++) {
		assert_int_equal(cfg_bar_mask(&r->bus, HOST, bar), 0);
		assert_int_equal(cfg_bar_mask(&r->bus, IDE, bar), bar == 4 ? 0xFFFFFFF1u : 0);
	}
}

/* Generation 2's chipset: the same bus without the IDE function, and nothing on the IDE
 * ports; a reset still works without IDE to reset. */
static void test_generation2_has_no_ide(void **state)
{
	(void)state;
	struct dev_bus bus;
	dev_bus_init(&bus);
	struct hook_log log = { 0 };
	struct piix_config cfg = { .bus = &bus,
				   .hooks = hook_log_hooks(&log),
				   .without_ide = true };
	struct piix *p;
	assert_int_equal(piix_create(&cfg, &p), 0);
	assert_null(piix_ide(p));
	struct found f[16];
	assert_int_equal(enumerate(&bus, f, 16), 3);
	assert_int_equal(f[0].id, 0x12378086u);
	assert_int_equal(f[1].devfn, ISA);
	assert_int_equal(f[2].devfn, PM);
	assert_int_equal(cfg_read(&bus, IDE, 0, 4), 0xFFFFFFFFu);
	const uint16_t ide_ports[] = { 0x1F0, 0x1F7, 0x3F6, 0x170, 0x177, 0x376 };
	for (unsigned i = 0; i < sizeof(ide_ports) / sizeof(ide_ports[0]); i++)
		assert_int_equal(bus_inb(&bus, ide_ports[i]), 0xFF);
	uint64_t unhandled = bus.unhandled;
	bus_outb(&bus, 0x1F7, 0xEC); /* IDENTIFY to nobody */
	assert_int_equal(bus.unhandled, unhandled + 1);
	piix_reset(p);
	assert_int_equal(enumerate(&bus, f, 16), 3);
	piix_destroy(p);
	dev_bus_destroy(&bus);
}

/* ---- i440FX ---- */

static void expect_pam(const struct pam_call *c, uint64_t base, uint64_t len, unsigned mode)
{
	assert_int_equal(c->base, base);
	assert_int_equal(c->len, len);
	assert_int_equal(c->mode, mode);
}

static void test_pam_segments(void **state)
{
	struct rig *r = *state;
	struct dev_bus *b = &r->bus;
	/* what make_bios_writable does: PAM0 = 0x30, PAM1-6 = 0x33 */
	cfg_write(b, HOST, 0x59, 1, 0x30);
	assert_int_equal(r->log.npam, 1);
	expect_pam(&r->log.pam[0], 0xF0000, 0x10000, 3);
	for (unsigned reg = 0x5A; reg <= 0x5F; reg++)
		cfg_write(b, HOST, reg, 1, 0x33);
	assert_int_equal(r->log.npam, 13);
	for (unsigned i = 0; i < 12; i++)
		expect_pam(&r->log.pam[1 + i], 0xC0000 + i * 0x4000, 0x4000, 3);
	/* the nibbles are separate segments with their own modes */
	r->log.npam = 0;
	cfg_write(b, HOST, 0x5E, 1, 0x21);
	assert_int_equal(r->log.npam, 2);
	expect_pam(&r->log.pam[0], 0xE0000, 0x4000, 1);
	expect_pam(&r->log.pam[1], 0xE4000, 0x4000, 2);
	/* a dword at 0x58 covers PAM0-PAM2; reserved bits do not stick */
	r->log.npam = 0;
	cfg_write(b, HOST, 0x58, 4, 0xFFCC1FFFu);
	assert_int_equal(r->log.npam, 5);
	expect_pam(&r->log.pam[0], 0xF0000, 0x10000, 1);
	expect_pam(&r->log.pam[1], 0xC0000, 0x4000, 0);
	expect_pam(&r->log.pam[2], 0xC4000, 0x4000, 0);
	expect_pam(&r->log.pam[3], 0xC8000, 0x4000, 3);
	expect_pam(&r->log.pam[4], 0xCC000, 0x4000, 3);
	assert_int_equal(cfg_read(b, HOST, 0x59, 1), 0x10);
	assert_int_equal(cfg_read(b, HOST, 0x5A, 1), 0x00);
	assert_int_equal(cfg_read(b, HOST, 0x5B, 1), 0x33);
	/* SMRAM is accepted and changes nothing else */
	r->log.npam = 0;
	cfg_write(b, HOST, 0x72, 1, 0x4A);
	assert_int_equal(cfg_read(b, HOST, 0x72, 1), 0x4A);
	assert_int_equal(r->log.npam, 0);
	/* reset: every segment back to the ROM view */
	piix_reset(r->piix);
	assert_int_equal(r->log.npam, 13);
	for (unsigned i = 0; i < 13; i++)
		assert_int_equal(r->log.pam[i].mode, 0);
	assert_int_equal(cfg_read(b, HOST, 0x58, 4), 0);
	assert_int_equal(cfg_read(b, HOST, 0x5C, 4), 0);
	assert_int_equal(cfg_read(b, HOST, 0x72, 1), 0x02);
}

/* ---- ISA bridge, ELCR, reset control ---- */

static void test_pirq_elcr_and_reset_control(void **state)
{
	struct rig *r = *state;
	struct dev_bus *b = &r->bus;
	assert_int_equal(cfg_read(b, ISA, 0x60, 4), 0x80808080u);
	cfg_write(b, ISA, 0x60, 4, 0x0B0B0A0Au); /* SeaBIOS's routing: 10, 10, 11, 11 */
	assert_int_equal(cfg_read(b, ISA, 0x60, 1), 10);
	assert_int_equal(cfg_read(b, ISA, 0x63, 1), 11);
	cfg_write(b, ISA, 0x61, 1, 0xFF);
	assert_int_equal(cfg_read(b, ISA, 0x61, 1), 0x8F);

	bus_outb(b, 0x4D0, 0x00);
	bus_outb(b, 0x4D1, 0x0C);
	assert_int_equal(bus_inb(b, 0x4D0), 0x00);
	assert_int_equal(bus_inb(b, 0x4D1), 0x0C);
	bus_outw(b, 0x4D0, 0xFFFF); /* IRQ 0-2, 8 and 13 cannot be level-triggered */
	assert_int_equal(bus_inw(b, 0x4D0), 0xDEF8);

	bus_outb(b, 0xCF9, 0x02); /* SeaBIOS: 0x02, then 0x06 */
	assert_int_equal(r->log.resets, 0);
	assert_int_equal(bus_inb(b, 0xCF9), 0x02);
	bus_outb(b, 0xCF9, 0x06);
	assert_int_equal(r->log.resets, 1);
	assert_string_equal(r->log.reset_cause, "reset control register");
	bus_outb(b, 0xCF9, 0x04); /* soft reset too */
	assert_int_equal(r->log.resets, 2);

	piix_reset(r->piix);
	assert_int_equal(cfg_read(b, ISA, 0x60, 4), 0x80808080u);
	assert_int_equal(bus_inw(b, 0x4D0), 0);
	assert_int_equal(bus_inb(b, 0xCF9), 0);
}

/* ---- IDE bus master in BAR4 ---- */

static void attach_disk(struct rig *r)
{
	r->path = strdup(test_path("piix.raw"));
	test_write_file(r->path, DISK_SIZE, SEED);
	struct vdisk_options o = { .cache = VDISK_CACHE_WRITEBACK };
	assert_int_equal(vdisk_open(r->path, &o, &r->disk, NULL, 0), 0);
	assert_int_equal(test_track_disk(r->disk), 0);
	assert_int_equal(ide_attach_disk(piix_ide(r->piix), 0, 0, r->disk), 0);
}

static void put_prd(uint8_t *ram, uint32_t table, uint32_t addr, uint16_t count)
{
	uint8_t *p = ram + table;
	memcpy(p, &addr, 4);
	memcpy(p + 4, &count, 2);
	p[6] = 0;
	p[7] = 0x80; /* last entry */
}

/* READ DMA of count sectors at lba into guest memory at 0x20000 through the bus master at
 * bm; returns the IDE status at the end. */
static uint8_t dma_read(struct rig *r, uint16_t bm, uint32_t lba, uint8_t count)
{
	struct dev_bus *b = &r->bus;
	memset(r->ram + 0x20000, 0, 0x10000);
	put_prd(r->ram, 0x1000, 0x20000, (uint16_t)(count * 512));
	bus_outb(b, 0x1F6, (uint8_t)(0xE0 | (lba >> 24 & 0x0F)));
	bus_outb(b, 0x1F2, count);
	bus_outb(b, 0x1F3, (uint8_t)lba);
	bus_outb(b, 0x1F4, (uint8_t)(lba >> 8));
	bus_outb(b, 0x1F5, (uint8_t)(lba >> 16));
	bus_outb(b, 0x1F7, 0xC8);
	bus_outl(b, bm + 4, 0x1000);
	bus_outb(b, bm + 2, 0x06);
	bus_outb(b, bm, 0x09); /* start, towards memory */
	for (int i = 0; i < 10000; i++) {
		uint8_t st = bus_inb(b, 0x3F6);
		if (!(st & 0x80)) {
			bus_outb(b, bm, 0);
			return bus_inb(b, 0x1F7);
		}
		vdisk_queue_poll(vdisk_queue(r->disk, 0), 1);
	}
	fail_msg("the DMA transfer never finished");
	return 0xFF;
}

static void expect_disk_data(struct rig *r, uint32_t lba, unsigned count)
{
	test_expect_pattern(r->ram + 0x20000, count * 512, (uint64_t)lba * 512, SEED, "DMA data");
}

static void test_ide_bar4_moves_the_bus_master(void **state)
{
	struct rig *r = *state;
	struct dev_bus *b = &r->bus;
	attach_disk(r);
	/* the legacy channels answer from the start; the bus master nowhere yet */
	assert_int_equal(bus_inb(b, 0x1F2), 1); /* ATA signature */
	assert_int_equal(bus_inb(b, GEN1_PM_BASE + 2), 0xFF);
	assert_int_equal(bus_inb(b, 0xC002), 0xFF);
	/* SeaBIOS: size, program 0xC000, enable I/O and bus mastering */
	assert_int_equal(cfg_bar_mask(b, IDE, 4), 0xFFFFFFF1u);
	cfg_write(b, IDE, 0x20, 4, 0xC000);
	assert_int_equal(bus_inb(b, 0xC002), 0xFF); /* I/O decode still off */
	cfg_write(b, IDE, 0x04, 2, PCI_COMMAND_IO | PCI_COMMAND_MASTER);
	cfg_write(b, IDE, 0x40, 2, 0x8000);
	cfg_write(b, IDE, 0x42, 2, 0x8000);
	assert_int_equal(cfg_read(b, IDE, 0x40, 4), 0x80008000u);
	assert_int_equal(bus_inb(b, 0xC002) & 0x01, 0); /* bus master idle */

	assert_int_equal(dma_read(r, 0xC000, 100, 16) & 0x89, 0);
	expect_disk_data(r, 100, 16);
	assert_true(r->log.irq_raises[GEN1_IDE0_IRQ] >= 1);

	/* the guest moves BAR4: the old ports go dead, the new ones carry the transfer */
	cfg_write(b, IDE, 0x20, 4, 0xD010);
	assert_int_equal(bus_inb(b, 0xC002), 0xFF);
	assert_int_equal(dma_read(r, 0xD010, 7, 3) & 0x89, 0);
	expect_disk_data(r, 7, 3);
	struct ide_stats st;
	ide_get_stats(piix_ide(r->piix), &st);
	assert_int_equal(st.dma_sectors, 19);

	/* reset: BAR4 back to 0 and undecoded */
	piix_reset(r->piix);
	assert_int_equal(cfg_read(b, IDE, 0x20, 4), PCI_BAR_IO);
	assert_int_equal(cfg_read(b, IDE, 0x04, 2), 0);
	assert_int_equal(bus_inb(b, 0xD012), 0xFF);
}

/* ---- PIIX4 PM ---- */

/* SeaBIOS's piix4_pm_setup: PMBA = base | 1, PMREGMISC = 1. */
static void enable_pm(struct dev_bus *b, uint16_t base)
{
	cfg_write(b, PM, 0x40, 4, base | 1u);
	cfg_write(b, PM, 0x80, 1, 0x01);
}

static void test_pm_block_placement(void **state)
{
	struct rig *r = *state;
	struct dev_bus *b = &r->bus;
	assert_int_equal(cfg_read(b, PM, 0x5B, 1) & 0x02, 0x02); /* SMM setup skipped */
	cfg_write(b, PM, 0x5B, 1, 0x00);
	assert_int_equal(cfg_read(b, PM, 0x5B, 1) & 0x02, 0x02);
	assert_int_equal(cfg_bar_mask(b, PM, 0), 0);
	assert_int_equal(cfg_read(b, PM, 0x40, 4), 1);
	assert_int_equal(bus_inl(b, PM_TMR), 0xFFFFFFFFu);
	cfg_write(b, PM, 0x40, 4, 0x601);
	assert_int_equal(cfg_read(b, PM, 0x40, 4), 0x601);
	assert_int_equal(bus_inl(b, PM_TMR), 0xFFFFFFFFu); /* PMIOSE still off */
	cfg_write(b, PM, 0x80, 1, 0x01);
	assert_int_equal(bus_inl(b, PM_TMR) >> 24, 0); /* 24-bit timer */
	/* OVMF's PMBA, 0xB000: the block moves */
	cfg_write(b, PM, 0x40, 4, 0xB001);
	assert_int_equal(bus_inl(b, PM_TMR), 0xFFFFFFFFu);
	assert_int_equal(bus_inl(b, 0xB000 + GEN1_PM_TMR_OFFSET) >> 24, 0);
	/* low bits of PMBA are fixed: the block stays 64-byte aligned */
	cfg_write(b, PM, 0x40, 4, 0xFFFF);
	assert_int_equal(cfg_read(b, PM, 0x40, 4), 0xFFC1);
	cfg_write(b, PM, 0x80, 1, 0x00);
	assert_int_equal(bus_inl(b, 0xFFC0 + GEN1_PM_TMR_OFFSET), 0xFFFFFFFFu);
	/* a PMBA of 0 is not decoded */
	cfg_write(b, PM, 0x40, 4, 0);
	cfg_write(b, PM, 0x80, 1, 0x01);
	assert_int_equal(bus_inl(b, GEN1_PM_TMR_OFFSET), 0xFFFFFFFFu);
	enable_pm(b, GEN1_PM_BASE);
	piix_reset(r->piix);
	assert_int_equal(bus_inl(b, PM_TMR), 0xFFFFFFFFu);
}

static void test_s5_poweroff(void **state)
{
	struct rig *r = *state;
	struct dev_bus *b = &r->bus;
	enable_pm(b, GEN1_PM_BASE);
	bus_outw(b, PM1_CNT, 0x0001); /* SCI_EN */
	assert_int_equal(bus_inw(b, PM1_CNT), 0x0001);
	bus_outw(b, PM1_CNT, 0x0001 | 5 << 10); /* SLP_TYP alone does nothing */
	assert_int_equal(bus_inw(b, PM1_CNT), 0x0001 | 5 << 10);
	bus_outw(b, PM1_CNT, 0x0001 | 5 << 10 | SLP_EN); /* another sleep state: ignored */
	assert_int_equal(r->log.poweroffs, 0);
	assert_int_equal(bus_inw(b, PM1_CNT) & SLP_EN, 0); /* SLP_EN reads 0 */
	bus_outw(b, PM1_CNT, (uint16_t)(0x0001 | GEN1_SLP_TYP_S5 << 10 | SLP_EN));
	assert_int_equal(r->log.poweroffs, 1);
	/* byte-wise as well: SLP_TYP and SLP_EN share the high byte */
	bus_outb(b, PM1_CNT + 1, (uint8_t)((GEN1_SLP_TYP_S5 << 10 | SLP_EN) >> 8));
	assert_int_equal(r->log.poweroffs, 2);
}

static void test_power_button_sci(void **state)
{
	struct rig *r = *state;
	struct dev_bus *b = &r->bus;
	enable_pm(b, GEN1_PM_BASE);
	piix_power_button(r->piix); /* not enabled: status only */
	assert_int_equal(bus_inw(b, PM1_STS) & PWRBTN, PWRBTN);
	assert_false(r->log.irq[GEN1_SCI_IRQ]);
	bus_outw(b, PM1_EN, PWRBTN);
	assert_int_equal(bus_inw(b, PM1_EN), PWRBTN);
	assert_true(r->log.irq[GEN1_SCI_IRQ]);
	bus_outw(b, PM1_STS, 0); /* writing 0 clears nothing */
	assert_true(r->log.irq[GEN1_SCI_IRQ]);
	bus_outw(b, PM1_STS, PWRBTN); /* write 1 to clear */
	assert_false(r->log.irq[GEN1_SCI_IRQ]);
	assert_int_equal(bus_inw(b, PM1_STS) & PWRBTN, 0);
	piix_power_button(r->piix); /* enabled: raised at once */
	assert_true(r->log.irq[GEN1_SCI_IRQ]);
	assert_int_equal(r->log.irq_raises[GEN1_SCI_IRQ], 2);
	bus_outw(b, PM1_EN, 0xFFFF); /* only the defined enables stick */
	assert_int_equal(bus_inw(b, PM1_EN), 0x0521);
	piix_reset(r->piix); /* lowers the SCI */
	assert_false(r->log.irq[GEN1_SCI_IRQ]);
}

static uint64_t monotonic_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static void test_pm_timer_rate(void **state)
{
	struct rig *r = *state;
	struct dev_bus *b = &r->bus;
	enable_pm(b, GEN1_PM_BASE);
	uint64_t t0 = monotonic_ns();
	uint32_t first = bus_inl(b, PM_TMR), prev = first;
	uint64_t ticks = 0;
	/* never frozen, never backwards (modulo 2^24), for 100 ms of polling */
	while (monotonic_ns() - t0 < 100000000u) {
		uint32_t now = bus_inl(b, PM_TMR);
		assert_int_equal(now >> 24, 0);
		ticks += (now - prev) & 0xFFFFFF;
		prev = now;
	}
	uint64_t elapsed = monotonic_ns() - t0;
	double rate = (double)ticks * 1e9 / (double)elapsed;
	if (rate < GEN1_PM_TIMER_HZ * 0.95 || rate > GEN1_PM_TIMER_HZ * 1.05)
		fail_msg("PM timer ran at %.0f Hz", rate);
	assert_true(ticks > 0);
	/* byte reads see the same counter */
	uint8_t hi = bus_inb(b, PM_TMR + 3);
	assert_int_equal(hi, 0);
}

static void test_gpe0_block(void **state)
{
	struct rig *r = *state;
	struct dev_bus *b = &r->bus;
	assert_int_equal(bus_inl(b, GEN1_GPE0_BASE), 0);
	bus_outw(b, GEN1_GPE0_BASE + 2, 0x00FF);
	assert_int_equal(bus_inw(b, GEN1_GPE0_BASE + 2), 0x00FF);
	bus_outw(b, GEN1_GPE0_BASE, 0xFFFF); /* nothing to clear, nothing set */
	assert_int_equal(bus_inw(b, GEN1_GPE0_BASE), 0);
	assert_false(r->log.irq[GEN1_SCI_IRQ]);
	piix_reset(r->piix);
	assert_int_equal(bus_inl(b, GEN1_GPE0_BASE), 0);
}

static void test_hostile_configuration_and_ports(void **state)
{
	struct rig *r = *state;
	struct dev_bus *b = &r->bus;
	enable_pm(b, GEN1_PM_BASE);
	uint64_t seed = test_env_seed("TEST_SEED");
	static const unsigned functions[] = { HOST, ISA, IDE, PM, PCI_DEVFN(1, 2) };
	for (unsigned round = 0; round < 2000; round++) {
		unsigned devfn = functions[test_rnd_below(&seed, 5)];
		unsigned off = (unsigned)test_rnd_below(&seed, 256);
		unsigned size = 1u << test_rnd_below(&seed, 3);
		cfg_write(b, devfn, off, size, (uint32_t)test_rnd(&seed));
		(void)cfg_read(b, devfn, off, size);
	}
	bus_garbage(b, GEN1_PM_BASE, GEN1_PM_LEN, &seed);
	bus_garbage(b, GEN1_GPE0_BASE, GEN1_GPE0_LEN, &seed);
	bus_garbage(b, GEN1_ELCR_PORT, 2, &seed);
	bus_garbage(b, 0xCF8, 8, &seed);
	/* whatever happened, the identities hold and a reset brings the chipset back */
	assert_int_equal(cfg_read(b, HOST, 0, 4), 0x12378086u);
	assert_int_equal(cfg_read(b, PM, 0, 4), 0x71138086u);
	assert_int_equal(cfg_read(b, IDE, 0x08, 4) >> 8, 0x010180);
	piix_reset(r->piix);
	assert_int_equal(cfg_read(b, IDE, 0x20, 4), PCI_BAR_IO);
	assert_int_equal(cfg_read(b, PM, 0x40, 4), 1);
	assert_false(r->log.irq[GEN1_SCI_IRQ]);
	assert_int_equal(bus_inb(b, 0x1F2), 0xFF); /* no disk attached: floating bus */
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_enumeration_as_seabios_does, setup, teardown),
		cmocka_unit_test(test_generation2_has_no_ide),
		cmocka_unit_test_setup_teardown(test_pam_segments, setup, teardown),
		cmocka_unit_test_setup_teardown(test_pirq_elcr_and_reset_control, setup, teardown),
		cmocka_unit_test_setup_teardown(test_ide_bar4_moves_the_bus_master, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_pm_block_placement, setup, teardown),
		cmocka_unit_test_setup_teardown(test_s5_poweroff, setup, teardown),
		cmocka_unit_test_setup_teardown(test_power_button_sci, setup, teardown),
		cmocka_unit_test_setup_teardown(test_pm_timer_rate, setup, teardown),
		cmocka_unit_test_setup_teardown(test_gpe0_block, setup, teardown),
		cmocka_unit_test_setup_teardown(test_hostile_configuration_and_ports, setup,
						teardown),
	};
	int ret = cmocka_run_group_tests(tests, NULL, NULL);
	test_tmpdir_remove();
	return ret;
}
