/* What every SCSI target of this tree shares with its transports: one command as a
 * struct scsi_request, its SAM status and fixed-format sense data, and the answers a
 * transport gives for LUNs without a target (REPORT LUNS, an absent LUN).
 *
 * The targets (scsi_disk.h: SPC/SBC disk, scsi_cdrom.h: MMC DVD-ROM) take a request with
 * the CDB, the direction and the guest's buffers as host iovecs the transport already
 * translated and bounded, and give it back with a status, sense data and the number of
 * bytes moved. Commands that need no I/O complete inline; the others complete from
 * vdisk_queue_poll() on the queue the command was given. A target never moves a byte
 * outside the iovecs, nor more than transfer_len.
 */
#ifndef HV_SCSI_REQUEST_H
#define HV_SCSI_REQUEST_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/uio.h>

struct vdisk_queue;
struct scsi_disk;
struct scsi_cdrom;

/* SAM status codes */
enum {
	SCSI_STATUS_GOOD = 0x00,
	SCSI_STATUS_CHECK_CONDITION = 0x02,
	SCSI_STATUS_BUSY = 0x08, /* out of memory: the initiator retries */
};

#define SCSI_SENSE_LEN	    18 /* fixed-format sense data, as returned */
#define SCSI_OP_REPORT_LUNS 0xA0

/* The target's own state while a command runs; callers do not touch it. */
struct scsi_request_ctx {
	struct scsi_disk *disk;
	struct scsi_cdrom *cdrom;
	struct vdisk_queue *queue;
	uint64_t offset; /* bytes: where the current disk operation starts */
	uint64_t end;	 /* bytes: where the command's range ends */
	uint64_t length; /* bytes the command moves to or from the guest */
	unsigned pending;
	int error;
	uint32_t medium_generation; /* scsi_cdrom: the medium a read was accepted on */
	bool pieces;		    /* scsi_cdrom: a read moves in pieces (scsi_cdrom_start) */
	uint8_t opcode;
	bool write;
	bool flush_after; /* FUA, or a write while the write cache is disabled */
	const struct iovec *iov;
	int iovcnt;
	struct iovec iov_inline[4];
	struct iovec *iov_heap;
	uint8_t *buf; /* WRITE SAME: the block, replicated */
	uint64_t buf_len;
};

/* One command, owned by the caller until done runs. */
struct scsi_request {
	const uint8_t *cdb;
	unsigned cdb_len; /* 6..16 bytes */
	bool data_in;	  /* device -> guest; false for data-out or no data */
	const struct iovec *iov;
	int iovcnt;
	uint64_t transfer_len; /* bytes the initiator allows */
	/* results, valid when done runs: */
	uint8_t status; /* SCSI_STATUS_* */
	uint8_t sense[SCSI_SENSE_LEN];
	unsigned sense_len;   /* SCSI_SENSE_LEN with CHECK CONDITION, else 0 */
	uint64_t transferred; /* data bytes actually moved */
	/* Called once: inline from the execute call, or from the queue's poll. */
	void (*done)(struct scsi_request *req);
	struct scsi_request_ctx ctx;
};

/* An absent LUN: INQUIRY answered with peripheral qualifier 3 / type 1Fh (byte 0 = 7Fh),
 * REQUEST SENSE with LOGICAL UNIT NOT SUPPORTED as data, everything else CHECK CONDITION
 * ILLEGAL REQUEST / LOGICAL UNIT NOT SUPPORTED (05/25/00). Completes inline. */
void scsi_absent_lun_execute(struct scsi_request *req);

/* REPORT LUNS for a target holding the count LUNs in luns[] (each 0..16383, reported
 * with single-level addressing; a larger one fails the command). Completes inline. */
void scsi_report_luns_execute(struct scsi_request *req, const uint16_t *luns, unsigned count);

#endif
