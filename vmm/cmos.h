/* CMOS RAM and the MC146818 real-time clock behind ports 0x70 (index) and 0x71 (data).
 *
 * - The index has the NMI-mask bit (0x80) stripped: 128 bytes.
 * - The clock is the host's UTC clock, read at each access, plus an offset the guest sets by
 *   writing the time registers (the written fields replace the current ones; while SET is
 *   on the clock is frozen at the written values and runs again from them when SET clears).
 *   Reg B's DM bit picks BCD or binary, its 24/12 bit 24- or 12-hour (PM = bit 7 of the
 *   hour). The day of the week follows the date. The century is byte 0x32.
 * - Reg A: UIP reads 1 only in the last 244 us before each second, as on the real part;
 *   rate and divider bits are stored. Reg C reads clear it. Reg D reads 0x80 (valid RAM and
 *   time) and ignores writes.
 * - No periodic, alarm or update-ended interrupt: IRQ 8 is never raised and reg C's flags
 *   stay 0. Alarm registers are stored.
 * - Configuration bytes filled at creation and on reset: base/extended memory (0x15-0x18,
 *   0x30/0x31), RAM above 16 MiB below 4 GiB in 64 KiB units (0x34/0x35), RAM above 4 GiB
 *   in 64 KiB units (0x5B-0x5D), CPUs - 1 (0x5F), boot order (0x3D, 0x38), equipment (0x14)
 *   and the checksum of 0x10-0x2D (0x2E high, 0x2F low).
 */
#ifndef HV_CMOS_H
#define HV_CMOS_H

#include <stdint.h>

#include "dev.h"

struct cmos;

/* Boot device codes as the BIOS reads them from the boot-order nibbles. */
enum cmos_boot_device {
	CMOS_BOOT_NONE = 0,
	CMOS_BOOT_FLOPPY = 1,
	CMOS_BOOT_DISK = 2,
	CMOS_BOOT_CDROM = 3,
	CMOS_BOOT_NETWORK = 4,
};

#define CMOS_BOOT_SLOTS 3

struct cmos_config {
	struct dev_bus *bus;
	uint64_t ram_bytes; /* all guest RAM; below 4 GiB up to GEN1_PCI_HOLE_START */
	unsigned cpus;	    /* 1..256 */
	enum cmos_boot_device boot_order[CMOS_BOOT_SLOTS]; /* first choice first; NONE ends */
	/* Source of "now" in seconds since the epoch (UTC) and nanoseconds; NULL means
	 * CLOCK_REALTIME. Tests pass a fixed clock. */
	void (*clock)(void *opaque, int64_t *sec, long *nsec);
	void *clock_opaque;
};

/* Returns 0, -EINVAL (no bus, cpus out of range, unknown boot device), -ENOMEM or the
 * dev_bus error. */
int cmos_create(const struct cmos_config *cfg, struct cmos **out);
/* After the VM stopped dispatching to the bus. */
void cmos_destroy(struct cmos *c);
/* Power-on contents: configuration bytes rebuilt, RTC control registers at their defaults
 * (reg A 0x26, reg B 24-hour BCD), the guest's clock offset kept (it lives in battery-backed
 * RAM). */
void cmos_reset(struct cmos *c);

#endif
