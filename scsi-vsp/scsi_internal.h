/* What the SCSI targets share: sense data, replies that honour allocation lengths and
 * buffers, and CDB decoding. */
#ifndef HV_SCSI_INTERNAL_H
#define HV_SCSI_INTERNAL_H

#include <stdbool.h>
#include <stdint.h>

#include "scsi_request.h"

/* Sense keys (SPC-4 4.5.6) */
enum {
	SK_NO_SENSE = 0x0,
	SK_NOT_READY = 0x2,
	SK_MEDIUM_ERROR = 0x3,
	SK_ILLEGAL_REQUEST = 0x5,
	SK_UNIT_ATTENTION = 0x6,
	SK_DATA_PROTECT = 0x7,
	SK_ABORTED_COMMAND = 0xB,
};

/* Additional sense code and qualifier, as one value: ASC << 8 | ASCQ */
enum {
	ASC_NO_ADDITIONAL_SENSE = 0x0000,
	ASC_WRITE_ERROR = 0x0C00,
	ASC_UNRECOVERED_READ_ERROR = 0x1100,
	ASC_PARAMETER_LIST_LENGTH_ERROR = 0x1A00,
	ASC_INVALID_OPCODE = 0x2000,
	ASC_LBA_OUT_OF_RANGE = 0x2100,
	ASC_INVALID_FIELD_IN_CDB = 0x2400,
	ASC_LUN_NOT_SUPPORTED = 0x2500,
	ASC_INVALID_FIELD_IN_PARAMETER_LIST = 0x2600,
	ASC_WRITE_PROTECTED = 0x2700,
	ASC_SPACE_ALLOCATION_FAILED = 0x2707,
	ASC_MEDIUM_MAY_HAVE_CHANGED = 0x2800,
	ASC_RESET_OCCURRED = 0x2900,
	ASC_CAPACITY_CHANGED = 0x2A09,
	ASC_SAVING_NOT_SUPPORTED = 0x3900,
	ASC_MEDIUM_NOT_PRESENT_TRAY_CLOSED = 0x3A01,
	ASC_MEDIUM_NOT_PRESENT_TRAY_OPEN = 0x3A02,
	ASC_MEDIUM_REMOVAL_PREVENTED = 0x5302,
};

/* SPC opcodes the targets share */
enum {
	OP_TEST_UNIT_READY = 0x00,
	OP_REQUEST_SENSE = 0x03,
	OP_INQUIRY = 0x12,
	OP_MODE_SENSE_6 = 0x1A,
	OP_START_STOP_UNIT = 0x1B,
	OP_PREVENT_ALLOW_MEDIUM_REMOVAL = 0x1E,
	OP_READ_CAPACITY_10 = 0x25,
	OP_READ_10 = 0x28,
	OP_MODE_SENSE_10 = 0x5A,
	OP_READ_12 = 0xA8,
};

/* A command handler's result. */
#define CMD_DONE    0 /* the result is set; the caller calls done */
#define CMD_STARTED 1 /* disk I/O is under way; its completion calls done */

/* Fills 18 bytes of fixed-format sense data (current error). */
void scsi_sense_fixed(uint8_t *sense, uint8_t key, uint16_t asc);
/* Ends req with CHECK CONDITION and that sense; returns CMD_DONE. */
int scsi_check(struct scsi_request *req, uint8_t key, uint16_t asc);
int scsi_invalid_field(struct scsi_request *req);
/* Ends req with GOOD and no data; returns CMD_DONE. */
int scsi_good(struct scsi_request *req);
/* Ends req with BUSY, nothing moved (the target ran out of memory: the initiator
 * retries); returns CMD_DONE. */
int scsi_busy(struct scsi_request *req);
/* Ends req with GOOD and a reply of len bytes of which the CDB allowed alloc: moves
 * min(len, alloc, buffer room) bytes. Returns CMD_DONE. */
int scsi_reply(struct scsi_request *req, const void *data, uint64_t len, uint64_t alloc);

/* Bytes the command may move in its direction: min(transfer_len, iovec bytes) when the
 * request's direction is the command's, else 0. */
uint64_t scsi_room_in(const struct scsi_request *req);
uint64_t scsi_room_out(const struct scsi_request *req);

/* The CDB length an opcode's group implies (SPC-4 4.2.5.1); 0 for the variable-length and
 * vendor groups. */
unsigned scsi_cdb_group_len(uint8_t opcode);

/* Whether the CDB is 6..16 bytes and holds at least what its opcode's group needs. */
bool scsi_cdb_complete(const struct scsi_request *req);

/* Copies a string into a fixed ASCII field, padded with spaces. */
void scsi_copy_ascii(uint8_t *field, const char *s, unsigned len);

/* Points req->ctx.iov at the first len bytes of the request's buffers (inline entries, or
 * an array on the heap when they do not fit). Returns 0 or -ENOMEM. */
int scsi_slice_buffers(struct scsi_request *req, uint64_t len);
/* Frees what a command allocated in its context (sliced iovecs, WRITE SAME's block). */
void scsi_ctx_release(struct scsi_request_ctx *c);

#endif
