/* The PIIX IDE function: two channels with two devices each, ATA disks and ATAPI DVD
 * drives on the async block layer, PIO and bus-master DMA.
 *
 * The model owns no thread. Guest register accesses arrive through the struct dev_ops
 * handlers below (on vCPU threads); disk I/O is started on the disk's queue 0 with
 * vdisk_queue_post and completes from that queue's poll (the VMM's I/O thread), which
 * updates the registers and raises the channel's interrupt. A vCPU never waits for a disk.
 *
 * Registration (the platform does it, see ide_register_legacy): per channel the command
 * block (8 ports at 0x1F0 / 0x170, opaque = the channel), the control block (1 port at
 * 0x3F6 / 0x376) and, in PCI BAR4, 16 bytes of bus-master registers (8 per channel,
 * opaque = the controller).
 */
#ifndef HV_IDE_H
#define HV_IDE_H

#include <stdbool.h>
#include <stdint.h>

#include "dev.h"

struct vdisk;
struct ide_controller;
struct ide_channel;

struct ide_config {
	const struct guest_mem *mem; /* for DMA */
	struct irq_line irq[2];	     /* channel 0 (IRQ 14) and channel 1 (IRQ 15) */
};

int ide_create(const struct ide_config *cfg, struct ide_controller **out);
/* Every request must have completed: the queues of the attached disks are idle. */
void ide_destroy(struct ide_controller *c);

/* Platform reset (PCI RST#): every device, register and the bus master back to the
 * power-on state, media and attachments kept. Waits until the requests still in flight
 * have completed (they write guest memory), so call it with the vCPUs stopped and not
 * from the thread that polls the disks' queues. */
void ide_reset(struct ide_controller *c);

/* Attaches an ATA disk at channel 0..1, unit 0 (master) or 1 (slave). The disk must have
 * 512-byte logical sectors. Returns 0, -EINVAL (bad slot or sector size) or -EBUSY. */
int ide_attach_disk(struct ide_controller *c, unsigned channel, unsigned unit, struct vdisk *disk);

/* Attaches an ATAPI DVD-ROM drive with medium iso (a raw image the VMM opened read-only,
 * read in 2048-byte sectors; a partial last sector is not seen) or, with NULL, an empty
 * tray. The drive is the MMC target of scsi-vsp/scsi_cdrom.h behind an ATAPI transport.
 * Returns 0, -EINVAL (bad slot, image smaller than one sector), -EBUSY or -ENOMEM. */
int ide_attach_cdrom(struct ide_controller *c, unsigned channel, unsigned unit, struct vdisk *iso);

/* Media changes from the host (the control socket). The guest sees a UNIT ATTENTION
 * "medium may have changed" and a media event in GET EVENT STATUS NOTIFICATION.
 *
 * Eject opens the tray and takes the medium out (an empty drive just opens its tray). A
 * tray the guest locked (PREVENT ALLOW MEDIUM REMOVAL) refuses with -EBUSY unless force.
 * While a read from the medium is in flight it returns -EAGAIN: try again (reads are
 * short). After 0 the model holds no reference to the medium and it may be closed.
 * Insert loads iso and closes the tray; -EBUSY when a medium is already in.
 * Both return -ENODEV when the slot holds no DVD drive and -EINVAL for a bad slot. */
int ide_cdrom_eject(struct ide_controller *c, unsigned channel, unsigned unit, bool force);
int ide_cdrom_insert(struct ide_controller *c, unsigned channel, unsigned unit, struct vdisk *iso);

/* What a slot holds, for the control socket's query-block. */
enum ide_device_kind {
	IDE_DEVICE_NONE,
	IDE_DEVICE_DISK,
	IDE_DEVICE_CDROM,
};
/* Guest requests that reached the block layer, per drive (a DVD drive: reads only). */
struct ide_io_stats {
	uint64_t reads, writes, flushes;
	uint64_t read_bytes, write_bytes;
};

struct ide_device_info {
	enum ide_device_kind kind;
	struct vdisk *disk; /* the disk or the medium; NULL for an empty drive */
	bool inserted;	    /* a disk, or a medium in the drive (the tray may be open) */
	bool tray_open;	    /* DVD drive only */
	bool locked;	    /* DVD drive only: the guest prevents medium removal */
	struct ide_io_stats stats;
};
/* Returns 0 or -EINVAL (bad slot). */
int ide_query_device(struct ide_controller *c, unsigned channel, unsigned unit,
		     struct ide_device_info *out);

/* Register handlers. */
extern const struct dev_ops ide_command_ops;   /* opaque: struct ide_channel */
extern const struct dev_ops ide_control_ops;   /* opaque: struct ide_channel */
extern const struct dev_ops ide_busmaster_ops; /* opaque: struct ide_controller, 16 bytes */

/* Registers both channels at their legacy ports and the bus-master block at bm_base. */
int ide_register_legacy(struct ide_controller *c, struct dev_bus *bus, uint16_t bm_base);

/* Counters for tests and the control socket. */
struct ide_stats {
	uint64_t commands, pio_sectors, dma_sectors, errors;
};
void ide_get_stats(struct ide_controller *c, struct ide_stats *out);

#endif
