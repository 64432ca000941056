#include "piix.h"

#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <time.h>

#include "arith.h"
#include "endian.h"
#include "gen1_layout.h"
#include "ide.h"
#include "pci.h"

/* i440FX */
#define PAM0	      0x59 /* high nibble: 0xF0000, 64 KiB */
#define PAM1	      0x5A /* PAM1-6: two 16 KiB segments each from 0xC0000 */
#define PAM6	      0x5F
#define PAM_LOW_BASE  0xC0000u
#define PAM_SEGMENT   0x4000u
#define PAM_BIOS_BASE 0xF0000u
#define PAM_BIOS_LEN  0x10000u
#define SMRAM	      0x72
/* PIIX3 ISA bridge */
#define PIRQRC		0x60
#define PIRQ_DISABLED	0x80
#define PIRQ_WRITABLE	0x8F
#define RC_SOFT_OR_HARD 0x02 /* reset control: system reset (hard) vs CPU only */
#define RC_RESET_CPU	0x04
#define RC_FULL_RESET	0x08
/* PIIX IDE */
#define IDE_BM_BAR  4
#define IDE_BM_SIZE 16
/* PIIX4 PM */
#define PMBA		   0x40
#define PMBA_ADDRESS	   0xFFC0u
#define DEVACTB_APMC	   0x5B /* byte of DEVACTB holding APMC_EN (bit1) */
#define PMREGMISC	   0x80
#define PMIOSE		   0x01
#define PM_SLOT		   PCI_NUM_BARS /* parked slot for the PM block */
#define PM1_STS_TMR	   0x0001
#define PM1_STS_PWRBTN	   0x0100
#define PM1_EN_WRITABLE	   0x0521 /* TMR, GBL, PWRBTN, RTC */
#define PM1_CNT_STORED	   0x1C03 /* SCI_EN, BM_RLD, SLP_TYP; GBL_RLS and SLP_EN read 0 */
#define PM1_CNT_SLP_TYP(v) ((v) >> 10 & 7)
#define PM1_CNT_SLP_EN	   0x2000
#define PM_TMR_CARRY_SHIFT 23
#define PM_TMR_MASK	   0xFFFFFFu
#define ELCR1_WRITABLE	   0xF8 /* IRQ 0-2 are always edge */
#define ELCR2_WRITABLE	   0xDE /* and IRQ 8 and 13 */

struct pm_regs {
	uint16_t sts, en, cnt;
	uint64_t tmr_carry_cleared; /* PM timer value >> 23 when TMR_STS was last cleared */
	uint8_t other[GEN1_PM_LEN]; /* the PIIX4 registers beyond the ACPI ones: stored only */
	uint8_t gpe[GEN1_GPE0_LEN]; /* status (write 1 to clear), then enable */
	bool sci;
};

struct piix {
	struct piix_config cfg;
	struct pci_host host;
	struct pci_function i440fx, isa, ide_fn, pm;
	struct ide_controller *ide;
	pthread_mutex_t lock; /* pm, elcr, reset_control */
	struct pm_regs regs;
	uint8_t elcr[2];
	uint8_t reset_control;
};

/* ---- i440FX ---- */

static void apply_pam(struct piix *p, unsigned reg, uint8_t v)
{
	const struct platform_hooks *h = &p->cfg.hooks;
	if (reg == PAM0) {
		platform_set_pam(h, PAM_BIOS_BASE, PAM_BIOS_LEN, v >> 4 & 3);
		return;
	}
	uint64_t base = PAM_LOW_BASE + (uint64_t)(reg - PAM1) * 2 * PAM_SEGMENT;
	platform_set_pam(h, base, PAM_SEGMENT, v & 3);
	platform_set_pam(h, base + PAM_SEGMENT, PAM_SEGMENT, v >> 4 & 3);
}

static void i440fx_config_changed(void *opaque, struct pci_function *fn, unsigned offset,
				  unsigned len)
{
	for (unsigned reg = PAM0; reg <= PAM6; reg++)
		if (ranges_overlap(offset, len, reg, 1))
			apply_pam(opaque, reg, fn->config[reg]);
}

static const struct pci_function_ops i440fx_ops = { .config_changed = i440fx_config_changed };

static int add_i440fx(struct piix *p)
{
	const struct pci_function_id id = {
		.vendor = 0x8086, .device = 0x1237, .revision = 0x02, .class_code = 0x060000
	};
	pci_function_init(&p->i440fx, &id, &i440fx_ops, p);
	pci_function_define(&p->i440fx, PAM0, 1, 0, 0x30);
	for (unsigned reg = PAM1; reg <= PAM6; reg++)
		pci_function_define(&p->i440fx, reg, 1, 0, 0x33);
	pci_function_define(&p->i440fx, SMRAM, 1, 0x02, 0x78); /* D_OPEN, D_CLS, D_LCK, G_SMRAME */
	return pci_host_add(&p->host, PCI_DEVFN(GEN1_PCI_DEV_HOST, 0), &p->i440fx);
}

/* ---- PIIX3 ISA bridge, reset control, ELCR ---- */

static int add_isa_bridge(struct piix *p)
{
	const struct pci_function_id id = { .vendor = 0x8086,
					    .device = 0x7000,
					    .class_code = 0x060100,
					    .header_type = PCI_HEADER_MULTI_FN };
	pci_function_init(&p->isa, &id, NULL, p);
	for (unsigned i = 0; i < 4; i++)
		pci_function_define(&p->isa, PIRQRC + i, 1, PIRQ_DISABLED, PIRQ_WRITABLE);
	return pci_host_add(&p->host, PCI_DEVFN(GEN1_PCI_DEV_PIIX, GEN1_PCI_FN_ISA), &p->isa);
}

static uint64_t reset_control_read(void *opaque, uint64_t offset, unsigned size)
{
	(void)offset;
	(void)size;
	struct piix *p = opaque;
	pthread_mutex_lock(&p->lock);
	uint8_t v = p->reset_control;
	pthread_mutex_unlock(&p->lock);
	return v;
}

/* Setting RST_CPU resets (SYS_RST only chooses hard or soft, the VM does one kind). */
static void reset_control_write(void *opaque, uint64_t offset, unsigned size, uint64_t value)
{
	(void)offset;
	(void)size;
	struct piix *p = opaque;
	pthread_mutex_lock(&p->lock);
	p->reset_control = (uint8_t)(value & (RC_SOFT_OR_HARD | RC_FULL_RESET));
	pthread_mutex_unlock(&p->lock);
	if (value & RC_RESET_CPU)
		platform_request_reset(&p->cfg.hooks, "reset control register");
}

static const struct dev_ops reset_control_ops = { reset_control_read, reset_control_write };

/* A read of the byte registers bytes[0..len) under the chipset lock. */
static uint64_t read_byte_registers(struct piix *p, const uint8_t *bytes, unsigned len,
				    uint64_t offset, unsigned size)
{
	uint64_t v = 0;
	pthread_mutex_lock(&p->lock);
	for (unsigned i = 0; i < size && offset + i < len; i++)
		v |= (uint64_t)bytes[offset + i] << (8 * i);
	pthread_mutex_unlock(&p->lock);
	return v;
}

static uint64_t elcr_read(void *opaque, uint64_t offset, unsigned size)
{
	struct piix *p = opaque;
	return read_byte_registers(p, p->elcr, sizeof(p->elcr), offset, size);
}

static void elcr_write(void *opaque, uint64_t offset, unsigned size, uint64_t value)
{
	static const uint8_t writable[2] = { ELCR1_WRITABLE, ELCR2_WRITABLE };
	struct piix *p = opaque;
	pthread_mutex_lock(&p->lock);
	for (unsigned i = 0; i < size && offset + i < 2; i++)
		p->elcr[offset + i] = (uint8_t)(value >> (8 * i)) & writable[offset + i];
	pthread_mutex_unlock(&p->lock);
}

static const struct dev_ops elcr_ops = { elcr_read, elcr_write };

/* ---- IDE ---- */

static int add_ide(struct piix *p)
{
	const struct platform_hooks *h = &p->cfg.hooks;
	struct ide_config ic = { .mem = p->cfg.mem,
				 .irq = { { h->set_irq, h->opaque, GEN1_IDE0_IRQ },
					  { h->set_irq, h->opaque, GEN1_IDE1_IRQ } } };
	int ret = ide_create(&ic, &p->ide);
	if (ret < 0)
		return ret;
	/* ide_register_legacy needs a port for the bus-master block. It borrows the PM block's
	 * (nothing decodes there before the firmware sets PMBA), and adding the function below
	 * parks the block at once, until the guest programs BAR4. */
	ret = ide_register_legacy(p->ide, p->cfg.bus, GEN1_PM_BASE);
	if (ret < 0)
		return ret;
	const struct pci_function_id id = { .vendor = 0x8086,
					    .device = 0x7010,
					    .class_code = 0x010180 };
	pci_function_init(&p->ide_fn, &id, NULL, p);
	ret = pci_function_set_bar(&p->ide_fn, IDE_BM_BAR, IDE_BM_SIZE, DEV_PIO, &ide_busmaster_ops,
				   p->ide, "ide-busmaster");
	if (ret == 0)
		ret = pci_host_add(&p->host, PCI_DEVFN(GEN1_PCI_DEV_PIIX, GEN1_PCI_FN_IDE),
				   &p->ide_fn);
	return ret;
}

/* ---- PIIX4 PM ---- */

static uint64_t pm_timer_now(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * GEN1_PM_TIMER_HZ +
	       (uint64_t)ts.tv_nsec * GEN1_PM_TIMER_HZ / 1000000000u;
}

static uint16_t pm1_status(const struct pm_regs *r, uint64_t now)
{
	bool carried = now >> PM_TMR_CARRY_SHIFT != r->tmr_carry_cleared;
	return (uint16_t)(r->sts | (carried ? PM1_STS_TMR : 0));
}

/* The SCI follows the enabled status bits (level-triggered). Called with the lock held. */
static void update_sci(struct piix *p, uint64_t now)
{
	struct pm_regs *r = &p->regs;
	uint16_t gpe_sts = load_le16(r->gpe), gpe_en = load_le16(r->gpe + GEN1_GPE0_LEN / 2);
	bool level = (pm1_status(r, now) & r->en) || (gpe_sts & gpe_en);
	if (level != r->sci) {
		r->sci = level;
		platform_set_irq(&p->cfg.hooks, GEN1_SCI_IRQ, level);
	}
}

static uint8_t byte_of(uint32_t v, unsigned i)
{
	return (uint8_t)(v >> (8 * i));
}

static uint8_t pm_read_byte(struct pm_regs *r, unsigned off, uint64_t now)
{
	switch (off) {
	case GEN1_PM1_EVT_OFFSET:
	case GEN1_PM1_EVT_OFFSET + 1:
		return byte_of(pm1_status(r, now), off - GEN1_PM1_EVT_OFFSET);
	case GEN1_PM1_EVT_OFFSET + 2:
	case GEN1_PM1_EVT_OFFSET + 3:
		return byte_of(r->en, off - GEN1_PM1_EVT_OFFSET - 2);
	case GEN1_PM1_CNT_OFFSET:
	case GEN1_PM1_CNT_OFFSET + 1:
		return byte_of(r->cnt, off - GEN1_PM1_CNT_OFFSET);
	case GEN1_PM_TMR_OFFSET:
	case GEN1_PM_TMR_OFFSET + 1:
	case GEN1_PM_TMR_OFFSET + 2:
	case GEN1_PM_TMR_OFFSET + 3:
		return byte_of((uint32_t)now & PM_TMR_MASK, off - GEN1_PM_TMR_OFFSET);
	default:
		return r->other[off];
	}
}

/* Replaces byte i of a 16-bit register with v, keeping the bits outside mask. */
static uint16_t merge_byte(uint16_t reg, unsigned i, uint8_t v, uint16_t mask)
{
	uint16_t m = (uint16_t)(mask & (0xFFu << (8 * i)));
	return (uint16_t)((reg & ~m) | ((unsigned)v << (8 * i) & m));
}

static void pm_write_byte(struct pm_regs *r, unsigned off, uint8_t v, uint64_t now)
{
	switch (off) {
	case GEN1_PM1_EVT_OFFSET:
	case GEN1_PM1_EVT_OFFSET + 1: {
		uint16_t clear = (uint16_t)(v << (8 * (off - GEN1_PM1_EVT_OFFSET)));
		r->sts &= (uint16_t)~clear;
		if (clear & PM1_STS_TMR)
			r->tmr_carry_cleared = now >> PM_TMR_CARRY_SHIFT;
		break;
	}
	case GEN1_PM1_EVT_OFFSET + 2:
	case GEN1_PM1_EVT_OFFSET + 3:
		r->en = merge_byte(r->en, off - GEN1_PM1_EVT_OFFSET - 2, v, PM1_EN_WRITABLE);
		break;
	case GEN1_PM1_CNT_OFFSET:
	case GEN1_PM1_CNT_OFFSET + 1:
		r->cnt = merge_byte(r->cnt, off - GEN1_PM1_CNT_OFFSET, v, PM1_CNT_STORED);
		break;
	case GEN1_PM_TMR_OFFSET:
	case GEN1_PM_TMR_OFFSET + 1:
	case GEN1_PM_TMR_OFFSET + 2:
	case GEN1_PM_TMR_OFFSET + 3:
		break; /* read-only */
	default:
		r->other[off] = v;
	}
}

static uint64_t pm_read(void *opaque, uint64_t offset, unsigned size)
{
	struct piix *p = opaque;
	uint64_t now = pm_timer_now(), v = 0;
	pthread_mutex_lock(&p->lock);
	for (unsigned i = 0; i < size && offset + i < GEN1_PM_LEN; i++)
		v |= (uint64_t)pm_read_byte(&p->regs, (unsigned)offset + i, now) << (8 * i);
	update_sci(p, now);
	pthread_mutex_unlock(&p->lock);
	return v;
}

static void pm_write(void *opaque, uint64_t offset, unsigned size, uint64_t value)
{
	struct piix *p = opaque;
	uint64_t now = pm_timer_now();
	bool sleep = false;
	pthread_mutex_lock(&p->lock);
	for (unsigned i = 0; i < size && offset + i < GEN1_PM_LEN; i++) {
		unsigned off = (unsigned)offset + i;
		uint8_t v = (uint8_t)(value >> (8 * i));
		pm_write_byte(&p->regs, off, v, now);
		if (off == GEN1_PM1_CNT_OFFSET + 1 && (v << 8 & PM1_CNT_SLP_EN))
			sleep = true;
	}
	bool poweroff = sleep && PM1_CNT_SLP_TYP(p->regs.cnt) == GEN1_SLP_TYP_S5;
	update_sci(p, now);
	pthread_mutex_unlock(&p->lock);
	if (poweroff)
		platform_request_poweroff(&p->cfg.hooks);
}

static const struct dev_ops pm_ops = { pm_read, pm_write };

static uint64_t gpe_read(void *opaque, uint64_t offset, unsigned size)
{
	struct piix *p = opaque;
	return read_byte_registers(p, p->regs.gpe, sizeof(p->regs.gpe), offset, size);
}

static void gpe_write(void *opaque, uint64_t offset, unsigned size, uint64_t value)
{
	struct piix *p = opaque;
	pthread_mutex_lock(&p->lock);
	for (unsigned i = 0; i < size && offset + i < GEN1_GPE0_LEN; i++) {
		unsigned off = (unsigned)offset + i;
		uint8_t v = (uint8_t)(value >> (8 * i));
		if (off < GEN1_GPE0_LEN / 2)
			p->regs.gpe[off] &= (uint8_t)~v; /* status: write 1 to clear */
		else
			p->regs.gpe[off] = v;
	}
	update_sci(p, pm_timer_now());
	pthread_mutex_unlock(&p->lock);
}

static const struct dev_ops gpe_ops = { gpe_read, gpe_write };

/* PMBA or PMREGMISC changed: decode the PM block where PMBA says, or park it. */
static void pm_config_changed(void *opaque, struct pci_function *fn, unsigned offset, unsigned len)
{
	if (!ranges_overlap(offset, len, PMBA, 4) && !ranges_overlap(offset, len, PMREGMISC, 1))
		return;
	uint64_t base = pci_config_get(fn, PMBA, 4) & PMBA_ADDRESS;
	bool decode = (fn->config[PMREGMISC] & PMIOSE) && base != 0;
	pci_place_range(fn->bus, DEV_PIO, &pm_ops, opaque, decode, base,
			pci_parked_base(fn->devfn, PM_SLOT));
}

static const struct pci_function_ops pm_function_ops = { .config_changed = pm_config_changed };

static int add_pm(struct piix *p)
{
	const unsigned devfn = PCI_DEVFN(GEN1_PCI_DEV_PIIX, GEN1_PCI_FN_PM);
	const struct pci_function_id id = { .vendor = 0x8086,
					    .device = 0x7113,
					    .revision = 0x03,
					    .class_code = 0x068000,
					    .interrupt_pin = 1 };
	pci_function_init(&p->pm, &id, &pm_function_ops, p);
	pci_function_define(&p->pm, PMBA, 4, PCI_BAR_IO, PMBA_ADDRESS);
	pci_function_define(&p->pm, PMREGMISC, 1, 0, PMIOSE);
	/* APMC_EN preset and read-only: the 256 KiB SeaBIOS then leaves SMM alone. */
	pci_function_define(&p->pm, DEVACTB_APMC, 1, 0x02, 0xFD);
	int ret = dev_bus_register(p->cfg.bus, DEV_PIO, pci_parked_base(devfn, PM_SLOT),
				   GEN1_PM_LEN, &pm_ops, p, "piix4-pm");
	if (ret == 0)
		ret = dev_bus_register(p->cfg.bus, DEV_PIO, GEN1_GPE0_BASE, GEN1_GPE0_LEN, &gpe_ops,
				       p, "gpe0");
	if (ret == 0)
		ret = pci_host_add(&p->host, devfn, &p->pm);
	return ret;
}

/* ---- the chipset ---- */

static void reset_registers(struct piix *p)
{
	pthread_mutex_lock(&p->lock);
	bool sci = p->regs.sci;
	p->regs = (struct pm_regs){ .tmr_carry_cleared = pm_timer_now() >> PM_TMR_CARRY_SHIFT };
	p->elcr[0] = p->elcr[1] = 0;
	p->reset_control = 0;
	if (sci)
		platform_set_irq(&p->cfg.hooks, GEN1_SCI_IRQ, false);
	pthread_mutex_unlock(&p->lock);
}

void piix_reset(struct piix *p)
{
	pci_host_reset(&p->host);
	reset_registers(p);
	if (p->ide)
		ide_reset(p->ide);
}

int piix_create(const struct piix_config *cfg, struct piix **out)
{
	if (!cfg->bus)
		return -EINVAL;
	struct piix *p = calloc(1, sizeof(*p));
	if (!p)
		return -ENOMEM;
	p->cfg = *cfg;
	pthread_mutex_init(&p->lock, NULL);
	reset_registers(p);
	int ret = pci_host_init(&p->host, cfg->bus, &reset_control_ops, p);
	if (ret < 0)
		goto fail_host;
	ret = add_i440fx(p);
	if (ret == 0)
		ret = add_isa_bridge(p);
	if (ret == 0 && !cfg->without_ide)
		ret = add_ide(p);
	if (ret == 0)
		ret = add_pm(p);
	if (ret == 0)
		ret = dev_bus_register(cfg->bus, DEV_PIO, GEN1_ELCR_PORT, 2, &elcr_ops, p, "elcr");
	if (ret < 0)
		goto fail;
	*out = p;
	return 0;
fail:
	ide_destroy(p->ide);
	pci_host_destroy(&p->host);
fail_host:
	pthread_mutex_destroy(&p->lock);
	free(p);
	return ret;
}

void piix_destroy(struct piix *p)
{
	if (!p)
		return;
	ide_destroy(p->ide);
	pci_host_destroy(&p->host);
	pthread_mutex_destroy(&p->lock);
	free(p);
}

struct ide_controller *piix_ide(struct piix *p)
{
	return p->ide;
}

struct pci_host *piix_pci_host(struct piix *p)
{
	return &p->host;
}

void piix_power_button(struct piix *p)
{
	pthread_mutex_lock(&p->lock);
	p->regs.sts |= PM1_STS_PWRBTN;
	update_sci(p, pm_timer_now());
	pthread_mutex_unlock(&p->lock);
}
