/* Sense data, replies and the commands a target answers without a disk: an absent LUN and
 * REPORT LUNS (SPC-4). */
#include "scsi_internal.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "arith.h"
#include "endian.h"
#include "iov.h"

#define PQ_NOT_CONNECTED 0x7F  /* peripheral qualifier 3, device type 1Fh */
#define LUN_MAX		 16383 /* flat space addressing holds 14 bits */

void scsi_sense_fixed(uint8_t *sense, uint8_t key, uint16_t asc)
{
	memset(sense, 0, SCSI_SENSE_LEN);
	sense[0] = 0x70; /* current error, fixed format */
	sense[2] = key;
	sense[7] = SCSI_SENSE_LEN - 8; /* additional sense length */
	sense[12] = (uint8_t)(asc >> 8);
	sense[13] = (uint8_t)asc;
}

int scsi_check(struct scsi_request *req, uint8_t key, uint16_t asc)
{
	req->status = SCSI_STATUS_CHECK_CONDITION;
	scsi_sense_fixed(req->sense, key, asc);
	req->sense_len = SCSI_SENSE_LEN;
	req->transferred = 0;
	return CMD_DONE;
}

int scsi_invalid_field(struct scsi_request *req)
{
	return scsi_check(req, SK_ILLEGAL_REQUEST, ASC_INVALID_FIELD_IN_CDB);
}

int scsi_good(struct scsi_request *req)
{
	req->status = SCSI_STATUS_GOOD;
	req->sense_len = 0;
	return CMD_DONE;
}

int scsi_busy(struct scsi_request *req)
{
	req->status = SCSI_STATUS_BUSY;
	req->sense_len = 0;
	req->transferred = 0;
	return CMD_DONE;
}

static uint64_t room(const struct scsi_request *req)
{
	if (!req->iov || req->iovcnt <= 0)
		return 0;
	return min_u64(req->transfer_len, iov_size(req->iov, req->iovcnt));
}

uint64_t scsi_room_in(const struct scsi_request *req)
{
	return req->data_in ? room(req) : 0;
}

uint64_t scsi_room_out(const struct scsi_request *req)
{
	return req->data_in ? 0 : room(req);
}

int scsi_reply(struct scsi_request *req, const void *data, uint64_t len, uint64_t alloc)
{
	uint64_t n = min_u64(min_u64(len, alloc), scsi_room_in(req));
	iov_from_buf(req->iov, req->iovcnt, 0, data, n);
	req->transferred = n;
	return scsi_good(req);
}

unsigned scsi_cdb_group_len(uint8_t opcode)
{
	static const unsigned len[8] = { 6, 10, 10, 0, 16, 12, 0, 0 };
	return len[opcode >> 5];
}

void scsi_copy_ascii(uint8_t *field, const char *s, unsigned len)
{
	size_t n = strnlen(s, len);
	memset(field, ' ', len);
	memcpy(field, s, n);
}

int scsi_slice_buffers(struct scsi_request *req, uint64_t len)
{
	struct scsi_request_ctx *c = &req->ctx;
	if (iov_size(req->iov, req->iovcnt) == len) {
		c->iov = req->iov;
		c->iovcnt = req->iovcnt;
		return 0;
	}
	int n = iov_slice(req->iov, req->iovcnt, 0, len, c->iov_inline, 4);
	if (n == -E2BIG) {
		n = iov_slice_alloc(req->iov, req->iovcnt, 0, len, &c->iov_heap);
		c->iov = c->iov_heap;
	} else {
		c->iov = c->iov_inline;
	}
	if (n < 0)
		return n;
	c->iovcnt = n;
	return 0;
}

void scsi_ctx_release(struct scsi_request_ctx *c)
{
	free(c->iov_heap);
	c->iov_heap = NULL;
	free(c->buf);
	c->buf = NULL;
}

/* ---- absent LUN ---- */

static int absent_inquiry(struct scsi_request *req)
{
	uint8_t data[36] = { 0 };
	data[0] = PQ_NOT_CONNECTED;
	if (req->cdb[1] & 0x01) { /* a VPD page: the header says nobody is there */
		data[1] = req->cdb[2];
		return scsi_reply(req, data, 4, load_be16(req->cdb + 3));
	}
	data[2] = 0x06; /* SPC-4 */
	data[3] = 0x02; /* response data format */
	data[4] = sizeof(data) - 5;
	return scsi_reply(req, data, sizeof(data), load_be16(req->cdb + 3));
}

static int absent_request_sense(struct scsi_request *req)
{
	uint8_t sense[SCSI_SENSE_LEN];
	scsi_sense_fixed(sense, SK_ILLEGAL_REQUEST, ASC_LUN_NOT_SUPPORTED);
	return scsi_reply(req, sense, sizeof(sense), req->cdb[4]);
}

bool scsi_cdb_complete(const struct scsi_request *req)
{
	if (!req->cdb || req->cdb_len < 6 || req->cdb_len > 16)
		return false;
	unsigned need = scsi_cdb_group_len(req->cdb[0]);
	return need && req->cdb_len >= need;
}

void scsi_absent_lun_execute(struct scsi_request *req)
{
	req->transferred = 0;
	if (!scsi_cdb_complete(req))
		scsi_invalid_field(req);
	else if (req->cdb[0] == OP_INQUIRY)
		absent_inquiry(req);
	else if (req->cdb[0] == OP_REQUEST_SENSE)
		absent_request_sense(req);
	else
		scsi_check(req, SK_ILLEGAL_REQUEST, ASC_LUN_NOT_SUPPORTED);
	req->done(req);
}

/* ---- REPORT LUNS ---- */

/* Single-level LUN: peripheral device addressing below 256, flat space above. */
static void encode_lun(uint8_t *out, uint16_t lun)
{
	memset(out, 0, 8);
	out[0] = lun < 256 ? 0 : (uint8_t)(0x40 | lun >> 8);
	out[1] = (uint8_t)lun;
}

static int report_luns(struct scsi_request *req, const uint16_t *luns, unsigned count)
{
	const uint8_t *cdb = req->cdb;
	uint32_t alloc = load_be32(cdb + 6);
	uint8_t select = cdb[2];
	if (alloc < 16 || select > 0x02 || count > LUN_MAX + 1) /* SPC-4 6.33: 16 bytes at least */
		return scsi_invalid_field(req);
	if (select == 0x01) /* well-known LUNs only: this target has none */
		count = 0;
	for (unsigned i = 0; i < count; i++)
		if (luns[i] > LUN_MAX)
			return scsi_invalid_field(req);

	/* written entry by entry: the list can be longer than any buffer worth keeping */
	uint64_t limit = min_u64(alloc, scsi_room_in(req)), pos = 0;
	uint8_t entry[8] = { 0 };
	store_be32(entry, count * 8u);
	for (unsigned i = 0; pos < limit; i++) {
		uint64_t n = min_u64(8, limit - pos);
		iov_from_buf(req->iov, req->iovcnt, pos, entry, n);
		pos += n;
		if (i == count)
			break;
		encode_lun(entry, luns[i]);
	}
	req->transferred = pos;
	return scsi_good(req);
}

void scsi_report_luns_execute(struct scsi_request *req, const uint16_t *luns, unsigned count)
{
	req->transferred = 0;
	if (!scsi_cdb_complete(req) || req->cdb[0] != SCSI_OP_REPORT_LUNS)
		scsi_invalid_field(req);
	else
		report_luns(req, luns, count);
	req->done(req);
}
