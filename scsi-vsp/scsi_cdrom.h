/* The SCSI DVD-ROM target: the MMC-5 command set of a read-only drive with a removable
 * medium (a raw image read in 2048-byte sectors), served on the async block layer. The
 * one implementation of MMC in this tree: the IDE ATAPI drive (ide-emul/) and the
 * synthetic SCSI controller (storvsp) are transports over it.
 *
 * Requests are struct scsi_request (scsi_request.h), executed as the disk target executes
 * them: replies are built inline, reads go to the block layer on the caller's queue and
 * complete from its poll; a vCPU thread never waits for a disk. Every CDB field is
 * untrusted: a malformed command ends in CHECK CONDITION, and no byte outside the iovecs
 * is read or written. A read longer than the buffers is refused whole (INVALID FIELD IN
 * CDB), as the disk refuses it; replies are cut to the allocation length and the buffers.
 *
 * Commands: TEST UNIT READY, REQUEST SENSE, INQUIRY (VPD 00h, 80h), MODE SENSE(6/10)
 * (pages 01h, 2Ah, 3Fh), START STOP UNIT (the tray), PREVENT ALLOW MEDIUM REMOVAL, READ
 * CAPACITY, READ(10), READ(12), READ SUBCHANNEL, READ TOC (formats 0 and 1, LBA or MSF),
 * GET CONFIGURATION (DVD-ROM profile for a medium larger than an 80-minute CD, CD-ROM
 * otherwise), GET EVENT STATUS NOTIFICATION (polled, media class), READ DISC INFORMATION,
 * READ TRACK INFORMATION, SET CD SPEED, MECHANISM STATUS. A DVD-ROM drive has no write
 * features: WRITE and every other command are INVALID COMMAND OPERATION CODE.
 *
 * Sense. CHECK CONDITION comes with its sense data (autosense); the target also keeps the
 * sense of the last command (NO SENSE when it succeeded) for REQUEST SENSE, which
 * transports without autosense (ATAPI) rely on. Unit attentions: 29/00 at power-on and
 * after scsi_cdrom_reset(), 28/00 after the host changed the medium; the next command
 * other than INQUIRY, REQUEST SENSE, GET CONFIGURATION and GET EVENT STATUS NOTIFICATION
 * ends with one of them (the reset first), REQUEST SENSE returns it as data instead.
 *
 * Threads: every function may be called from any thread; the target locks its own state.
 * Requests on several queues may run at once.
 */
#ifndef HV_SCSI_CDROM_H
#define HV_SCSI_CDROM_H

#include <stdbool.h>
#include <stdint.h>

#include "scsi_request.h"

struct vdisk;
struct vdisk_queue;
struct scsi_cdrom;

#define SCSI_CDROM_SECTOR 2048u

/* The physical interface GET CONFIGURATION's core feature reports (MMC-5 5.3.2). */
enum scsi_cdrom_interface {
	SCSI_CDROM_INTERFACE_SCSI = 1,
	SCSI_CDROM_INTERFACE_ATAPI = 2,
};

/* What the guest is told about the drive: INQUIRY fields (ASCII, space padded on the
 * wire), the serial number of VPD page 80h (20 bytes, space padded) and the interface. */
struct scsi_cdrom_config {
	char vendor[9];
	char product[17];
	char revision[5];
	char serial[21];
	enum scsi_cdrom_interface interface;
};

/* Requests the drive sent to the block layer. */
struct scsi_cdrom_stats {
	uint64_t reads, read_bytes;
};

/* The drive as the host sees it. */
struct scsi_cdrom_state {
	struct vdisk *medium; /* NULL: none */
	bool tray_open;	      /* the guest or the host opened it */
	bool locked;	      /* the guest prevents medium removal */
	uint8_t media_event;  /* the event GET EVENT STATUS reports next: 0 none, 2 new
			       * medium, 3 medium removal */
	unsigned reads_in_flight;
	struct scsi_cdrom_stats stats;
};

/* A drive with medium (a raw image opened read-only; a partial last sector is not seen)
 * or, with NULL, an empty one with its tray closed. A power-on unit attention is pending.
 * Returns 0, -EINVAL (a medium smaller than one sector) or -ENOMEM. */
int scsi_cdrom_create(const struct scsi_cdrom_config *cfg, struct vdisk *medium,
		      struct scsi_cdrom **out);
/* Every request must have completed. Takes NULL. The medium stays the caller's. */
void scsi_cdrom_destroy(struct scsi_cdrom *cd);

/* Executes req on queue q, the caller's queue of the medium that is in (any queue of it;
 * NULL when the drive is empty: then nothing is read). The transport keeps medium
 * changes from racing with its choice of queue (a queue of a medium that was changed
 * meanwhile ends the command in UNIT ATTENTION 28/00 or NOT READY). */
void scsi_cdrom_execute(struct scsi_cdrom *cd, struct vdisk_queue *q, struct scsi_request *req);

/* ---- reads in pieces, for transports that cannot give a read's buffers with it ----
 * ATAPI moves a read through a small PIO buffer, or by DMA into a table it sees only once
 * the bus master starts. It calls scsi_cdrom_start() when the command arrives: that runs
 * every command to its end inline, without a queue and without calling done, except a
 * READ with sectors to move, which is checked (unit attention, medium, range), moves
 * nothing, and stays open: start returns its length in bytes (0 when the command
 * ended; req holds its result). The transport then has each piece of the read (bytes
 * [offset, offset + the buffers) of its data, in order) read with
 * scsi_cdrom_read_piece() into req's buffers (iov, iovcnt, transfer_len updated for each
 * piece). A piece completes like an executed command (done runs inline or from q's poll)
 * with GOOD and transferred, or with the CHECK CONDITION that ends the read: NOT READY
 * when the medium went away, a read error. */
uint64_t scsi_cdrom_start(struct scsi_cdrom *cd, struct scsi_request *req);
void scsi_cdrom_read_piece(struct scsi_cdrom *cd, struct vdisk_queue *q, struct scsi_request *req,
			   uint64_t offset);
/* The transport could not move the data of req (a DMA table outside guest memory): req
 * ends with CHECK CONDITION ABORTED COMMAND, which REQUEST SENSE then reports. Does not
 * call done. */
void scsi_cdrom_transport_failed(struct scsi_cdrom *cd, struct scsi_request *req);

/* A reset of the drive (bus, device or LUN reset): the next command gets UNIT ATTENTION
 * 29/00, the kept sense is cleared. Reads in flight still complete. */
void scsi_cdrom_reset(struct scsi_cdrom *cd);
/* A power-on or hard reset (the machine's): as a reset, and the tray is unlocked. */
void scsi_cdrom_power_on(struct scsi_cdrom *cd);

/* Media changes from the host. The guest sees UNIT ATTENTION 28/00 and a media event.
 * Eject opens the tray and takes the medium out (an empty drive just opens its tray): a
 * tray the guest locked refuses with -EBUSY unless force; while a read of the medium is
 * in flight it returns -EAGAIN (reads are short: try again). After 0 the target holds no
 * reference to the medium. Insert loads medium and closes the tray: -EBUSY when a medium
 * is in, -EINVAL for NULL or an image smaller than one sector. */
int scsi_cdrom_eject(struct scsi_cdrom *cd, bool force);
int scsi_cdrom_insert(struct scsi_cdrom *cd, struct vdisk *medium);

/* The medium that is in (NULL: none), for the transport to pick its queue. */
struct vdisk *scsi_cdrom_medium(struct scsi_cdrom *cd);
void scsi_cdrom_get_state(struct scsi_cdrom *cd, struct scsi_cdrom_state *out);

#endif
