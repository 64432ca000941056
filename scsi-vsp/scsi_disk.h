/* The SCSI disk target: SPC-4 / SBC-3 commands served from a struct vdisk on the async
 * block layer. Transport-neutral: storvsp (one EXECUTE_SRB packet, one scsi_request) and
 * the unit tests drive it the same way. The request and status types, and the answers for
 * REPORT LUNS and absent LUNs, are in scsi_request.h (included).
 *
 * A command arrives as a struct scsi_request whose CDB, direction and guest buffers (host
 * iovecs the transport has already translated and bounded) the caller filled in. The
 * target checks the CDB, moves at most min(transfer_len, size of the iovecs) bytes, and
 * reports a SAM status with fixed-format sense data when it is CHECK CONDITION. Commands
 * that need no disk I/O complete inline (done runs before scsi_disk_execute returns);
 * reads, writes, flushes and discards complete from vdisk_queue_poll() on the queue the
 * command was given. A vCPU thread never waits for a disk.
 *
 * Every field of the CDB and of parameter data is untrusted: a malformed command ends in
 * CHECK CONDITION with the sense SPC/SBC prescribe (ILLEGAL REQUEST and the field's ASC),
 * and no byte outside the iovecs is read or written. A data transfer that the CDB asks
 * for but the buffers cannot hold (READ/WRITE longer than the buffers) is refused whole,
 * INVALID FIELD IN CDB, before any I/O; replies shorter than the allocation length (or
 * the buffers) are cut, and transferred says how much moved.
 *
 * Unit attentions: scsi_disk_reset() queues 29/00 (reset occurred) and
 * scsi_disk_capacity_changed() 2A/09 (capacity data has changed). The next command other
 * than INQUIRY, REPORT LUNS and REQUEST SENSE ends in CHECK CONDITION with one of them
 * (a reset first), which is then gone; REQUEST SENSE returns it as data instead.
 *
 * REPORT LUNS belongs to the target (the transport knows which LUNs exist): answer it with
 * scsi_report_luns_execute() for any LUN; scsi_disk_execute() refuses it as an invalid
 * operation code.
 */
#ifndef HV_SCSI_DISK_H
#define HV_SCSI_DISK_H

#include <stdbool.h>
#include <stdint.h>

#include "scsi_request.h"

struct vdisk;
struct vdisk_queue;
struct scsi_disk;

/* What the guest is told about the disk. */
struct scsi_disk_config {
	char vendor[9]; /* INQUIRY fields, ASCII, padded with spaces on the wire */
	char product[17];
	char revision[5];
	uint8_t unit_id[16];	      /* identity: VPD 0x80 serial and 0x83 designators */
	uint32_t logical_block_size;  /* 512 or 4096 */
	uint32_t physical_block_size; /* a power-of-two multiple of the logical size */
	uint32_t max_transfer_bytes;  /* largest READ/WRITE (VPD 0xB0), >= one block */
	bool read_only;
	bool discard;		    /* UNMAP and WRITE SAME with UNMAP release space (LBPME) */
	bool discard_zeroes;	    /* released blocks read as zeros (LBPRZ) */
	bool thin;		    /* provisioning type thin (sparse image), else resource/full */
	uint32_t unmap_granularity; /* logical blocks; 0: 1 */
};

/* Default vendor/product/revision and the limits, with the rest taken from the image:
 * block sizes, read-only, discard (not for VHD, whose discard keeps the data), thin
 * (dynamic and differencing images, sparse raw files), the unmap granularity (the
 * format's block), and the identity: the VHDX page 83 GUID, the VHD unique id, or for a
 * raw file a hash of its canonical path. Returns 0 or -errno. */
int scsi_disk_config_from_vdisk(struct vdisk *disk, struct scsi_disk_config *cfg);

/* Returns 0, -EINVAL (bad block sizes, a disk smaller than one block, a zero transfer
 * limit) or -ENOMEM. The disk stays the caller's and must outlive the target. */
int scsi_disk_create(struct vdisk *disk, const struct scsi_disk_config *cfg,
		     struct scsi_disk **out);
/* Every command must have completed. */
void scsi_disk_destroy(struct scsi_disk *d);

/* Executes req on queue q (the caller's thread owns it). Never blocks on disk I/O. The
 * disk may serve several queues on several threads at once. */
void scsi_disk_execute(struct scsi_disk *d, struct vdisk_queue *q, struct scsi_request *req);

/* Capacity changed (the host resized the image): the next command gets UNIT ATTENTION
 * 2A/09. Callable from any thread. */
void scsi_disk_capacity_changed(struct scsi_disk *d);
/* A LUN, target or bus reset: the next command gets UNIT ATTENTION 29/00. Commands in
 * flight still complete. Callable from any thread. */
void scsi_disk_reset(struct scsi_disk *d);

#endif
