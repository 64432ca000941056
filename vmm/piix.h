/* The generation 1 chipset: i440FX host bridge (00:00.0) and the PIIX functions at 00:01
 * (PIIX3 ISA bridge .0, PIIX3 IDE .1, PIIX4 ACPI/PM .3), on PCI bus 0 behind ports
 * 0xCF8/0xCFC. Also the chipset's fixed ports: reset control 0xCF9, ELCR 0x4D0/0x4D1 and the
 * GPE0 block.
 *
 * - i440FX: PAM0-6 (0x59-0x5F) report each segment's mode through set_pam; SMRAM (0x72) is
 *   stored and has no effect (no SMM).
 * - ISA bridge: PIRQRC A-D (0x60-0x63, reset 0x80 = routing off) stored for the firmware and
 *   the DSDT's interrupt links; ELCR stored (with an in-kernel PIC the kernel answers those
 *   ports first).
 * - IDE: the ide-emul controller in legacy mode (prog-if 0x80: 0x1F0/0x3F6 IRQ 14,
 *   0x170/0x376 IRQ 15, always decoded) with its bus-master block in BAR4 (16 bytes of I/O),
 *   decoded where the guest programs BAR4 once I/O decode is on.
 * - PM: PMBA (0x40) places the 64-byte PM block once PMREGMISC (0x80) bit0 is set; config
 *   0x5B bit1 is preset so SeaBIOS skips its SMM setup. PM1a status/enable/control, the
 *   24-bit PM timer (3.579545 MHz from CLOCK_MONOTONIC), GPE0 at GEN1_GPE0_BASE and the SCI
 *   (level, GEN1_SCI_IRQ) while any enabled status bit is set. SLP_EN with SLP_TYP S5 powers
 *   off; other sleep types are ignored (the guest keeps running). TMR_STS is derived when the
 *   registers are read, so an enabled timer carry raises the SCI only at the next PM access.
 *
 * Locking: configuration cycles run under the PCI host lock, the PM/GPE/ELCR/reset-control
 * registers under the chipset's own lock; hooks that end the VM run after it is released.
 */
#ifndef HV_PIIX_H
#define HV_PIIX_H

#include <stdbool.h>

#include "dev.h"
#include "platform_hooks.h"

struct piix;
struct pci_host;
struct ide_controller;

struct piix_config {
	struct dev_bus *bus;	     /* where everything registers */
	const struct guest_mem *mem; /* guest RAM for IDE bus-master DMA */
	struct platform_hooks hooks;
	bool without_ide; /* generation 2: no function 1, nothing on the IDE ports */
};

/* Builds the chipset and registers its ports. Returns 0 or -errno (-ENOMEM, or -EEXIST when
 * a port is taken). A dev_bus range cannot be removed, so after a failure the bus may still
 * hold ranges of the discarded chipset: discard the bus too. */
int piix_create(const struct piix_config *cfg, struct piix **out);
/* After the VM stopped dispatching to the bus, with every IDE request completed. */
void piix_destroy(struct piix *p);

/* Power-on state: configuration spaces (BAR4 back to 0, PAM to the ROM view, PM block
 * undecoded), PM/GPE registers, ELCR, reset control, and the IDE devices (ide_reset: it
 * waits for their requests in flight, so the vCPUs must be stopped). Firmware cannot be
 * left to reset IDE itself: SeaBIOS waits for a channel to leave busy before its SRST. */
void piix_reset(struct piix *p);

/* The IDE controller, for attaching disks; NULL for a chipset built without_ide. */
struct ide_controller *piix_ide(struct piix *p);
/* Bus 0, for further PCI functions. */
struct pci_host *piix_pci_host(struct piix *p);

/* The power button was pressed: sets PWRBTN_STS and raises the SCI if PWRBTN_EN is set.
 * Thread-safe. */
void piix_power_button(struct piix *p);

#endif
