/* What the platform device tests share: port access through a dev_bus as a guest does it,
 * PCI configuration cycles through 0xCF8/0xCFC, and a recorder for the platform hooks. */
#ifndef HV_PLATFORM_TEST_H
#define HV_PLATFORM_TEST_H

#include <stdbool.h>
#include <stdint.h>
#include <string.h>

#include "dev.h"
#include "platform_hooks.h"
#include "test_util.h"

static inline uint8_t bus_inb(struct dev_bus *bus, uint64_t port)
{
	return (uint8_t)dev_bus_read(bus, DEV_PIO, port, 1);
}

static inline uint16_t bus_inw(struct dev_bus *bus, uint64_t port)
{
	return (uint16_t)dev_bus_read(bus, DEV_PIO, port, 2);
}

static inline uint32_t bus_inl(struct dev_bus *bus, uint64_t port)
{
	return (uint32_t)dev_bus_read(bus, DEV_PIO, port, 4);
}

static inline void bus_outb(struct dev_bus *bus, uint64_t port, uint8_t v)
{
	dev_bus_write(bus, DEV_PIO, port, 1, v);
}

static inline void bus_outw(struct dev_bus *bus, uint64_t port, uint16_t v)
{
	dev_bus_write(bus, DEV_PIO, port, 2, v);
}

static inline void bus_outl(struct dev_bus *bus, uint64_t port, uint32_t v)
{
	dev_bus_write(bus, DEV_PIO, port, 4, v);
}

/* ---- PCI configuration mechanism #1 ---- */

static inline void cfg_select(struct dev_bus *bus, unsigned devfn, unsigned offset)
{
	bus_outl(bus, 0xCF8, 0x80000000u | devfn << 8 | (offset & 0xFC));
}

static inline uint32_t cfg_read(struct dev_bus *bus, unsigned devfn, unsigned offset, unsigned size)
{
	cfg_select(bus, devfn, offset);
	return (uint32_t)dev_bus_read(bus, DEV_PIO, 0xCFC + (offset & 3), size);
}

static inline void cfg_write(struct dev_bus *bus, unsigned devfn, unsigned offset, unsigned size,
			     uint32_t value)
{
	cfg_select(bus, devfn, offset);
	dev_bus_write(bus, DEV_PIO, 0xCFC + (offset & 3), size, value);
}

/* BAR sizing as firmware does it: save, write ~0, read the mask back, restore. */
static inline uint32_t cfg_bar_mask(struct dev_bus *bus, unsigned devfn, unsigned bar)
{
	unsigned off = 0x10 + 4 * bar;
	uint32_t old = cfg_read(bus, devfn, off, 4);
	cfg_write(bus, devfn, off, 4, 0xFFFFFFFFu);
	uint32_t mask = cfg_read(bus, devfn, off, 4);
	cfg_write(bus, devfn, off, 4, old);
	return mask;
}

/* ---- hook recorder ---- */

#define HOOK_MAX_PAM 64

struct pam_call {
	uint64_t base, len;
	unsigned mode;
};

struct hook_log {
	struct pam_call pam[HOOK_MAX_PAM];
	unsigned npam;
	unsigned resets, poweroffs, test_exits, last_test_exit;
	const char *reset_cause; /* of the last reset */
	bool irq[24];
	unsigned irq_raises[24];
};

static inline void log_set_pam(void *opaque, uint64_t base, uint64_t len, unsigned mode)
{
	struct hook_log *log = opaque;
	if (log->npam < HOOK_MAX_PAM)
		log->pam[log->npam++] = (struct pam_call){ base, len, mode };
}

static inline void log_reset(void *opaque, const char *cause)
{
	((struct hook_log *)opaque)->resets++;
	((struct hook_log *)opaque)->reset_cause = cause;
}

static inline void log_poweroff(void *opaque)
{
	((struct hook_log *)opaque)->poweroffs++;
}

static inline void log_test_exit(void *opaque, unsigned value)
{
	struct hook_log *log = opaque;
	log->test_exits++;
	log->last_test_exit = value;
}

static inline void log_set_irq(void *opaque, unsigned gsi, bool level)
{
	struct hook_log *log = opaque;
	if (gsi >= 24)
		return;
	if (level && !log->irq[gsi])
		log->irq_raises[gsi]++;
	log->irq[gsi] = level;
}

static inline struct platform_hooks hook_log_hooks(struct hook_log *log)
{
	memset(log, 0, sizeof(*log));
	return (struct platform_hooks){ .opaque = log,
					.set_pam = log_set_pam,
					.request_reset = log_reset,
					.request_poweroff = log_poweroff,
					.test_exit = log_test_exit,
					.set_irq = log_set_irq };
}

/* Writes a byte of every value to every offset of [base, base + len) in every access size,
 * then reads them back: whatever the device does, it must not crash. */
static inline void bus_garbage(struct dev_bus *bus, uint64_t base, unsigned len, uint64_t *seed)
{
	for (unsigned size = 1; size <= 4; size *= 2)
		for (unsigned off = 0; off < len; off++) {
			dev_bus_write(bus, DEV_PIO, base + off, size, test_rnd(seed));
			(void)dev_bus_read(bus, DEV_PIO, base + off, size);
		}
}

#endif
