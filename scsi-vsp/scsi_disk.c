/* The SCSI disk target (SPC-4, SBC-3) on the async block layer. See scsi_disk.h.
 *
 * Commands that only answer (INQUIRY, MODE SENSE, READ CAPACITY, ...) build their reply
 * on the stack and complete inline. Reads and writes hand the guest's iovecs to the block
 * layer as they are (sliced when the buffers are longer than the transfer), so data moves
 * once, straight between guest memory and the image. Parameter data (UNMAP lists, MODE
 * SELECT pages, the WRITE SAME block) is copied out of guest memory once and checked
 * whole before anything is done: the guest cannot change it under the target.
 */
#include "scsi_disk.h"
#include "scsi_internal.h"

#include <errno.h>
#include <jansson.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <xxhash.h>

#include "arith.h"
#include "endian.h"
#include "guid.h"
#include "iov.h"
#include "vdisk.h"

/* SBC-3 and SPC-4 opcodes served here */
enum {
	OP_READ_6 = 0x08,
	OP_WRITE_6 = 0x0A,
	OP_MODE_SELECT_6 = 0x15,
	OP_WRITE_10 = 0x2A,
	OP_VERIFY_10 = 0x2F,
	OP_SYNCHRONIZE_CACHE_10 = 0x35,
	OP_WRITE_SAME_10 = 0x41,
	OP_UNMAP = 0x42,
	OP_MODE_SELECT_10 = 0x55,
	OP_READ_16 = 0x88,
	OP_WRITE_16 = 0x8A,
	OP_VERIFY_16 = 0x8F,
	OP_SYNCHRONIZE_CACHE_16 = 0x91,
	OP_WRITE_SAME_16 = 0x93,
	OP_SERVICE_ACTION_IN_16 = 0x9E,
	OP_WRITE_12 = 0xAA,
	OP_VERIFY_12 = 0xAF,
};
#define SA_READ_CAPACITY_16 0x10

/* CDB byte 1 flags */
#define CDB_PROTECT   0xE0 /* RDPROTECT, WRPROTECT, VRPROTECT */
#define CDB_FUA	      0x08
#define CDB_WS_ANCHOR 0x10
#define CDB_WS_UNMAP  0x08
#define CDB_WS_NDOB   0x01

/* Limits the target reports in the block limits VPD page and enforces. */
#define MAX_UNMAP_DESCRIPTORS 256
#define MAX_UNMAP_BYTES	      (4ull << 30) /* per command */
#define MAX_WRITE_SAME_BYTES  (64u << 20)
#define WRITE_SAME_CHUNK      (1u << 20) /* the replicated block is written this much at a time */
#define DEFAULT_MAX_TRANSFER  (8u << 20)
#define MODE_SELECT_MAX	      512 /* longer parameter lists hold pages this target lacks */
#define REPLY_MAX	      128 /* the longest reply built here (standard INQUIRY: 74) */

/* Mode pages */
#define MODE_PC_CURRENT	    0
#define MODE_PC_CHANGEABLE  1
#define MODE_PC_DEFAULT	    2
#define MODE_PC_SAVED	    3
#define MODE_PAGE_ALL	    0x3F
#define MODE_CACHING_WCE    0x04
#define MODE_DEV_WP	    0x80 /* device-specific parameter: write protected */
#define MODE_DEV_DPOFUA	    0x10 /* FUA is honoured */
#define MODE_BLOCK_DESC_LEN 8
#define MODE_LONG_DESC_LEN  16

/* Pending unit attentions, in the order they are reported. */
enum {
	UA_RESET = 1 << 0,
	UA_CAPACITY = 1 << 1,
};

struct scsi_disk {
	struct vdisk *disk;
	struct scsi_disk_config cfg;
	unsigned ua; /* UA_* bits; atomic: set from the host, taken by any queue */
	bool wce;    /* write cache enabled (MODE SELECT); atomic */
};

/* ---- small helpers ---- */

static uint32_t block_size(const struct scsi_disk *d)
{
	return d->cfg.logical_block_size;
}

static uint64_t capacity(const struct scsi_disk *d)
{
	return vdisk_size(d->disk) / block_size(d);
}

/* The last LBA (0 on a disk shrunk below one block, which then refuses every LBA). */
static uint64_t last_lba(const struct scsi_disk *d)
{
	uint64_t cap = capacity(d);
	return cap ? cap - 1 : 0;
}

/* Whether blocks [lba, lba + count) are on the disk, without overflowing. */
static bool in_range(const struct scsi_disk *d, uint64_t lba, uint64_t count)
{
	uint64_t cap = capacity(d);
	return lba <= cap && count <= cap - lba;
}

static bool write_cache_enabled(const struct scsi_disk *d)
{
	return __atomic_load_n(&d->wce, __ATOMIC_RELAXED);
}

static int lba_out_of_range(struct scsi_request *req)
{
	return scsi_check(req, SK_ILLEGAL_REQUEST, ASC_LBA_OUT_OF_RANGE);
}

static int write_protected(struct scsi_request *req)
{
	return scsi_check(req, SK_DATA_PROTECT, ASC_WRITE_PROTECTED);
}

static int invalid_parameter(struct scsi_request *req)
{
	return scsi_check(req, SK_ILLEGAL_REQUEST, ASC_INVALID_FIELD_IN_PARAMETER_LIST);
}

static int parameter_length_error(struct scsi_request *req)
{
	return scsi_check(req, SK_ILLEGAL_REQUEST, ASC_PARAMETER_LIST_LENGTH_ERROR);
}

/* The LBA and block count of READ, WRITE, VERIFY, SYNCHRONIZE CACHE and WRITE SAME: the
 * fields sit in the same place for every command of one CDB size. */
struct lba_range {
	uint64_t lba;
	uint32_t blocks;
};

static struct lba_range decode_lba_range(const uint8_t *cdb)
{
	switch (scsi_cdb_group_len(cdb[0])) {
	case 6: /* a transfer length of 0 means 256 blocks */
		return (struct lba_range){ (uint32_t)(cdb[1] & 0x1F) << 16 | load_be16(cdb + 2),
					   cdb[4] ? cdb[4] : 256u };
	case 10:
		return (struct lba_range){ load_be32(cdb + 2), load_be16(cdb + 7) };
	case 12:
		return (struct lba_range){ load_be32(cdb + 2), load_be32(cdb + 6) };
	default:
		return (struct lba_range){ load_be64(cdb + 2), load_be32(cdb + 10) };
	}
}

/* ---- unit attentions ---- */

/* Takes the pending unit attention to report, or returns ASC_NO_ADDITIONAL_SENSE. */
static uint16_t take_unit_attention(struct scsi_disk *d)
{
	if (__atomic_fetch_and(&d->ua, ~(unsigned)UA_RESET, __ATOMIC_ACQ_REL) & UA_RESET)
		return ASC_RESET_OCCURRED;
	if (__atomic_fetch_and(&d->ua, ~(unsigned)UA_CAPACITY, __ATOMIC_ACQ_REL) & UA_CAPACITY)
		return ASC_CAPACITY_CHANGED;
	return ASC_NO_ADDITIONAL_SENSE;
}

void scsi_disk_capacity_changed(struct scsi_disk *d)
{
	__atomic_fetch_or(&d->ua, (unsigned)UA_CAPACITY, __ATOMIC_ACQ_REL);
}

void scsi_disk_reset(struct scsi_disk *d)
{
	__atomic_fetch_or(&d->ua, (unsigned)UA_RESET, __ATOMIC_ACQ_REL);
}

/* ---- completion of commands with disk I/O ---- */

static void finish(struct scsi_request *req)
{
	scsi_ctx_release(&req->ctx);
	req->done(req);
}

/* Maps a block layer error to a status: out of memory is BUSY (the initiator retries),
 * everything else a medium error of the command's direction. Returns CMD_DONE. */
static int io_failed(struct scsi_request *req, int err)
{
	bool write = req->ctx.write;
	if (err == -ENOMEM || err == -EAGAIN)
		return scsi_busy(req);
	req->transferred = 0;
	if (err == -EROFS)
		return write_protected(req);
	if (write && (err == -ENOSPC || err == -EDQUOT))
		return scsi_check(req, SK_DATA_PROTECT, ASC_SPACE_ALLOCATION_FAILED);
	return scsi_check(req, SK_MEDIUM_ERROR,
			  write ? ASC_WRITE_ERROR : ASC_UNRECOVERED_READ_ERROR);
}

static void io_done(void *opaque, int result);

static int start_flush(struct scsi_request *req)
{
	struct scsi_request_ctx *c = &req->ctx;
	int ret = vdisk_flush(c->disk->disk, c->queue, io_done, req);
	return ret ? io_failed(req, ret) : CMD_STARTED;
}

/* The end of a read, a write, a flush or a discard: a write that must be durable flushes
 * first. */
static void io_done(void *opaque, int result)
{
	struct scsi_request *req = opaque;
	struct scsi_request_ctx *c = &req->ctx;
	if (result < 0) {
		io_failed(req, result);
	} else if (c->flush_after) {
		c->flush_after = false;
		if (start_flush(req) == CMD_STARTED)
			return;
	} else {
		req->transferred = c->length;
		scsi_good(req);
	}
	finish(req);
}

/* ---- READ, WRITE ---- */

static bool is_write(uint8_t opcode)
{
	return opcode == OP_WRITE_6 || opcode == OP_WRITE_10 || opcode == OP_WRITE_12 ||
	       opcode == OP_WRITE_16;
}

static int read_write(struct scsi_disk *d, struct scsi_request *req)
{
	const uint8_t *cdb = req->cdb;
	struct scsi_request_ctx *c = &req->ctx;
	struct lba_range r = decode_lba_range(cdb);
	bool six = scsi_cdb_group_len(cdb[0]) == 6;
	c->write = is_write(cdb[0]);

	if (!six && (cdb[1] & CDB_PROTECT)) /* no protection information */
		return scsi_invalid_field(req);
	if (!in_range(d, r.lba, r.blocks))
		return lba_out_of_range(req);
	if (c->write && d->cfg.read_only)
		return write_protected(req);
	if (r.blocks == 0)
		return scsi_good(req);
	uint64_t bytes = (uint64_t)r.blocks * block_size(d);
	uint64_t room = c->write ? scsi_room_out(req) : scsi_room_in(req);
	if (bytes > d->cfg.max_transfer_bytes || bytes > room)
		return scsi_invalid_field(req);

	c->offset = r.lba * block_size(d);
	c->length = bytes;
	c->flush_after = c->write && ((!six && (cdb[1] & CDB_FUA)) || !write_cache_enabled(d));
	int ret = scsi_slice_buffers(req, bytes);
	if (ret == 0)
		ret = c->write ? vdisk_writev(d->disk, c->queue, c->iov, c->iovcnt, c->offset,
					      io_done, req)
			       : vdisk_readv(d->disk, c->queue, c->iov, c->iovcnt, c->offset,
					     io_done, req);
	return ret ? io_failed(req, ret) : CMD_STARTED;
}

/* ---- VERIFY, SYNCHRONIZE CACHE ---- */

/* VERIFY without a byte check: the range is checked, the medium is always readable. */
static int verify(struct scsi_disk *d, struct scsi_request *req)
{
	const uint8_t *cdb = req->cdb;
	struct lba_range r = decode_lba_range(cdb);
	if ((cdb[1] & CDB_PROTECT) || (cdb[1] & 0x06)) /* VRPROTECT, BYTCHK: no compare */
		return scsi_invalid_field(req);
	if (!in_range(d, r.lba, r.blocks))
		return lba_out_of_range(req);
	return scsi_good(req);
}

static int synchronize_cache(struct scsi_disk *d, struct scsi_request *req)
{
	struct lba_range r = decode_lba_range(req->cdb);
	if (!in_range(d, r.lba, r.blocks)) /* 0 blocks: to the end of the disk */
		return lba_out_of_range(req);
	req->ctx.write = true; /* a failed flush is a write error */
	return start_flush(req);
}

/* ---- UNMAP, WRITE SAME ---- */

static void unmap_done(void *opaque, int result)
{
	struct scsi_request *req = opaque;
	struct scsi_request_ctx *c = &req->ctx;
	if (result < 0 && !c->error)
		c->error = result;
	if (--c->pending)
		return;
	io_done(req, c->error);
}

/* Checks every descriptor of a copied UNMAP parameter list. Returns CMD_STARTED when the
 * list is good, else ends req (CMD_DONE). */
static int check_unmap_list(struct scsi_disk *d, struct scsi_request *req, const uint8_t *list,
			    uint32_t len)
{
	uint32_t data_len = load_be16(list), desc_len = load_be16(list + 2);
	if (data_len + 2u > len || desc_len + 8u > len || desc_len % 16 ||
	    desc_len / 16 > MAX_UNMAP_DESCRIPTORS)
		return invalid_parameter(req);
	uint64_t total = 0; /* at most 256 * 2^32 blocks: no overflow */
	for (uint32_t i = 0; i < desc_len / 16; i++) {
		const uint8_t *desc = list + 8 + 16 * i;
		uint64_t lba = load_be64(desc);
		uint32_t blocks = load_be32(desc + 8);
		if (!in_range(d, lba, blocks))
			return lba_out_of_range(req);
		total += blocks;
	}
	if (total > MAX_UNMAP_BYTES / block_size(d)) /* the maximum UNMAP LBA count */
		return invalid_parameter(req);
	return CMD_STARTED;
}

static int unmap(struct scsi_disk *d, struct scsi_request *req)
{
	const uint8_t *cdb = req->cdb;
	struct scsi_request_ctx *c = &req->ctx;
	uint32_t len = load_be16(cdb + 7);
	uint8_t list[8 + 16 * MAX_UNMAP_DESCRIPTORS];

	if (!d->cfg.discard)
		return scsi_check(req, SK_ILLEGAL_REQUEST, ASC_INVALID_OPCODE);
	if (cdb[1] & 0x01) /* ANCHOR: anchored blocks are not supported (ANC_SUP 0) */
		return scsi_invalid_field(req);
	if (len == 0)
		return scsi_good(req);
	if (len < 8)
		return parameter_length_error(req);
	if (len > scsi_room_out(req))
		return scsi_invalid_field(req);
	if (d->cfg.read_only)
		return write_protected(req);
	len = (uint32_t)min_u64(len, sizeof(list)); /* a longer list holds too many descriptors */
	iov_to_buf(req->iov, req->iovcnt, 0, list, len);
	if (check_unmap_list(d, req, list, len) == CMD_DONE)
		return CMD_DONE;

	c->write = true;
	c->length = len;
	c->pending = 1; /* held while submitting; completions only run from the queue's poll */
	for (uint32_t i = 0; i < load_be16(list + 2) / 16u && !c->error; i++) {
		const uint8_t *desc = list + 8 + 16 * i;
		uint64_t blocks = load_be32(desc + 8);
		if (!blocks)
			continue;
		int ret = vdisk_discard(d->disk, c->queue, load_be64(desc) * block_size(d),
					blocks * block_size(d), unmap_done, req);
		if (ret)
			c->error = ret;
		else
			c->pending++;
	}
	if (--c->pending)
		return CMD_STARTED;
	if (c->error)
		return io_failed(req, c->error);
	req->transferred = c->length;
	return scsi_good(req);
}

static int write_same_next(struct scsi_request *req);

static void write_same_chunk_done(void *opaque, int result)
{
	struct scsi_request *req = opaque;
	struct scsi_request_ctx *c = &req->ctx;
	if (result == 0) {
		c->offset += c->iov_inline[0].iov_len;
		if (c->offset < c->end) {
			if (write_same_next(req) == CMD_DONE)
				finish(req);
			return;
		}
	}
	io_done(req, result);
}

/* Writes the next chunk of replicated blocks. */
static int write_same_next(struct scsi_request *req)
{
	struct scsi_request_ctx *c = &req->ctx;
	c->iov_inline[0] =
		(struct iovec){ c->buf, (size_t)min_u64(c->buf_len, c->end - c->offset) };
	int ret = vdisk_writev(c->disk->disk, c->queue, c->iov_inline, 1, c->offset,
			       write_same_chunk_done, req);
	return ret ? io_failed(req, ret) : CMD_STARTED;
}

/* Fills a chunk buffer with copies of the block in c->buf. */
static int replicate_block(struct scsi_request_ctx *c, uint32_t bs)
{
	uint64_t len = min_u64(c->end - c->offset, WRITE_SAME_CHUNK);
	uint8_t *chunk = malloc(len);
	if (!chunk)
		return -ENOMEM;
	for (uint64_t pos = 0; pos < len; pos += bs)
		memcpy(chunk + pos, c->buf, bs);
	free(c->buf);
	c->buf = chunk;
	c->buf_len = len;
	return 0;
}

/* WRITE SAME: zeros (the block is all zero, or NDOB) are written with write-zeroes, or
 * discarded when UNMAP is set and discarded blocks read as zeros; any other block is
 * replicated through a bounded buffer, one chunk after the other. */
static int write_same(struct scsi_disk *d, struct scsi_request *req)
{
	const uint8_t *cdb = req->cdb;
	struct scsi_request_ctx *c = &req->ctx;
	struct lba_range r = decode_lba_range(cdb);
	uint32_t bs = block_size(d);
	bool ndob = cdb[0] == OP_WRITE_SAME_16 && (cdb[1] & CDB_WS_NDOB);

	if (cdb[1] & (CDB_PROTECT | CDB_WS_ANCHOR))
		return scsi_invalid_field(req);
	/* WSNZ: 0 blocks (the whole rest of the disk) is refused, as are long runs */
	if (r.blocks == 0 || (uint64_t)r.blocks * bs > MAX_WRITE_SAME_BYTES)
		return scsi_invalid_field(req);
	if (!in_range(d, r.lba, r.blocks))
		return lba_out_of_range(req);
	if (d->cfg.read_only)
		return write_protected(req);
	if (!ndob && scsi_room_out(req) < bs)
		return scsi_invalid_field(req);

	c->write = true;
	c->offset = r.lba * bs;
	c->end = c->offset + (uint64_t)r.blocks * bs;
	c->length = ndob ? 0 : bs;
	c->flush_after = !write_cache_enabled(d);
	bool zero = true;
	if (!ndob) {
		if (!(c->buf = malloc(bs)))
			return io_failed(req, -ENOMEM);
		iov_to_buf(req->iov, req->iovcnt, 0, c->buf, bs);
		struct iovec block = { c->buf, bs };
		zero = iov_is_zero(&block, 1, 0, bs);
	}
	int ret;
	if (!zero) {
		ret = replicate_block(c, bs);
		return ret ? io_failed(req, ret) : write_same_next(req);
	}
	uint64_t len = c->end - c->offset;
	if ((cdb[1] & CDB_WS_UNMAP) && d->cfg.discard && d->cfg.discard_zeroes)
		ret = vdisk_discard(d->disk, c->queue, c->offset, len, io_done, req);
	else
		ret = vdisk_write_zeroes(d->disk, c->queue, c->offset, len, io_done, req);
	return ret ? io_failed(req, ret) : CMD_STARTED;
}

/* ---- INQUIRY ---- */

static void hex_id(const struct scsi_disk *d, uint8_t *out)
{
	static const char digits[] = "0123456789ABCDEF";
	for (int i = 0; i < 16; i++) {
		out[2 * i] = (uint8_t)digits[d->cfg.unit_id[i] >> 4];
		out[2 * i + 1] = (uint8_t)digits[d->cfg.unit_id[i] & 0xF];
	}
}

static size_t standard_inquiry(const struct scsi_disk *d, uint8_t *out)
{
	out[0] = 0x00; /* peripheral qualifier 0, direct access block device */
	out[2] = 0x06; /* SPC-4 */
	out[3] = 0x12; /* HISUP, response data format 2 */
	out[4] = 74 - 5;
	out[7] = 0x02; /* CMDQUE */
	scsi_copy_ascii(out + 8, d->cfg.vendor, 8);
	scsi_copy_ascii(out + 16, d->cfg.product, 16);
	scsi_copy_ascii(out + 32, d->cfg.revision, 4);
	store_be16(out + 58, 0x00A0); /* version descriptors: SAM-5, SPC-4, SBC-3 */
	store_be16(out + 60, 0x0460);
	store_be16(out + 62, 0x04C0);
	return 74;
}

/* VPD pages: each fill writes the page from byte 4 and returns that length. */
static size_t vpd_supported_pages(const struct scsi_disk *d, uint8_t *p);

static size_t vpd_unit_serial(const struct scsi_disk *d, uint8_t *p)
{
	hex_id(d, p);
	return 32;
}

/* A T10 vendor ID designator (vendor + the unit id in hex) and an NAA locally assigned
 * one (type 3, 60 bits folded from the unit id): neither needs an IEEE company id. */
static size_t vpd_device_identification(const struct scsi_disk *d, uint8_t *p)
{
	p[0] = 0x02; /* code set ASCII */
	p[1] = 0x01; /* associated with the logical unit, T10 vendor ID */
	p[3] = 8 + 32;
	scsi_copy_ascii(p + 4, d->cfg.vendor, 8);
	hex_id(d, p + 12);

	uint8_t *naa = p + 4 + 40;
	naa[0] = 0x01; /* code set binary */
	naa[1] = 0x03; /* associated with the logical unit, NAA */
	naa[3] = 8;
	uint64_t id = load_be64(d->cfg.unit_id) ^ load_be64(d->cfg.unit_id + 8);
	store_be64(naa + 4, (id & 0x0FFFFFFFFFFFFFFFull) | 3ull << 60);
	return 44 + 12;
}

static size_t vpd_block_limits(const struct scsi_disk *d, uint8_t *p)
{
	uint32_t bs = block_size(d);
	p[0] = 0x01; /* WSNZ: WRITE SAME of 0 blocks is refused */
	store_be16(p + 2, (uint16_t)(d->cfg.physical_block_size / bs)); /* optimal granularity */
	store_be32(p + 4, d->cfg.max_transfer_bytes / bs);
	if (d->cfg.discard) {
		store_be32(p + 16, (uint32_t)min_u64(MAX_UNMAP_BYTES / bs, UINT32_MAX));
		store_be32(p + 20, MAX_UNMAP_DESCRIPTORS);
		store_be32(p + 24, d->cfg.unmap_granularity);
		store_be32(p + 28, 0x80000000u); /* UGAVALID, aligned at LBA 0 */
	}
	store_be64(p + 32, MAX_WRITE_SAME_BYTES / bs);
	return 0x3C;
}

static size_t vpd_block_characteristics(const struct scsi_disk *d, uint8_t *p)
{
	(void)d;
	store_be16(p, 0x0001); /* non-rotating medium */
	return 0x3C;
}

static size_t vpd_logical_block_provisioning(const struct scsi_disk *d, uint8_t *p)
{
	if (d->cfg.discard)
		p[1] = 0x80 | 0x40 | 0x20; /* LBPU, LBPWS, LBPWS10 */
	if (d->cfg.discard && d->cfg.discard_zeroes)
		p[1] |= 0x04;				 /* LBPRZ */
	p[2] = d->cfg.thin ? 2 : d->cfg.discard ? 1 : 0; /* thin, resource, full */
	return 4;
}

static const struct vpd_page {
	uint8_t code;
	size_t (*fill)(const struct scsi_disk *d, uint8_t *p);
} vpd_pages[] = {
	{ 0x00, vpd_supported_pages },	     { 0x80, vpd_unit_serial },
	{ 0x83, vpd_device_identification }, { 0xB0, vpd_block_limits },
	{ 0xB1, vpd_block_characteristics }, { 0xB2, vpd_logical_block_provisioning },
};
#define VPD_PAGE_COUNT (sizeof(vpd_pages) / sizeof(vpd_pages[0]))

static size_t vpd_supported_pages(const struct scsi_disk *d, uint8_t *p)
{
	(void)d;
	for (size_t i = 0; i < VPD_PAGE_COUNT; i++)
		p[i] = vpd_pages[i].code;
	return VPD_PAGE_COUNT;
}

static int inquiry(struct scsi_disk *d, struct scsi_request *req)
{
	const uint8_t *cdb = req->cdb;
	uint8_t out[REPLY_MAX] = { 0 };
	if (cdb[1] & 0xFE) /* CMDDT and reserved bits */
		return scsi_invalid_field(req);
	if (!(cdb[1] & 0x01)) {
		if (cdb[2]) /* a page code without EVPD */
			return scsi_invalid_field(req);
		return scsi_reply(req, out, standard_inquiry(d, out), load_be16(cdb + 3));
	}
	for (size_t i = 0; i < VPD_PAGE_COUNT; i++) {
		if (vpd_pages[i].code != cdb[2])
			continue;
		size_t len = vpd_pages[i].fill(d, out + 4);
		out[1] = cdb[2];
		store_be16(out + 2, (uint16_t)len);
		return scsi_reply(req, out, len + 4, load_be16(cdb + 3));
	}
	return scsi_invalid_field(req);
}

/* ---- READ CAPACITY ---- */

static int read_capacity_10(struct scsi_disk *d, struct scsi_request *req)
{
	const uint8_t *cdb = req->cdb;
	uint8_t out[8];
	if (!(cdb[8] & 0x01) && load_be32(cdb + 2)) /* an LBA needs PMI */
		return scsi_invalid_field(req);
	store_be32(out,
		   (uint32_t)min_u64(last_lba(d), UINT32_MAX)); /* FFFFFFFFh: use the 16-byte one */
	store_be32(out + 4, block_size(d));
	return scsi_reply(req, out, sizeof(out), sizeof(out));
}

static unsigned log2_u32(uint32_t v)
{
	unsigned n = 0;
	while (v >>= 1)
		n++;
	return n;
}

static int service_action_in(struct scsi_disk *d, struct scsi_request *req)
{
	const uint8_t *cdb = req->cdb;
	uint8_t out[32] = { 0 };
	if ((cdb[1] & 0x1F) != SA_READ_CAPACITY_16)
		return scsi_invalid_field(req);
	store_be64(out, last_lba(d));
	store_be32(out + 8, block_size(d));
	out[13] = (uint8_t)log2_u32(d->cfg.physical_block_size / block_size(d));
	if (d->cfg.discard)
		out[14] = 0x80; /* LBPME */
	if (d->cfg.discard && d->cfg.discard_zeroes)
		out[14] |= 0x40; /* LBPRZ */
	return scsi_reply(req, out, sizeof(out), load_be32(cdb + 10));
}

/* ---- MODE SENSE, MODE SELECT ---- */

static void mode_caching(const struct scsi_disk *d, int pc, uint8_t *p)
{
	p[0] = 0x08;
	p[1] = 0x12;
	if (pc != MODE_PC_CURRENT || write_cache_enabled(d))
		p[2] = MODE_CACHING_WCE; /* changeable, on by default; read cache on (RCD 0) */
}

static void mode_control(const struct scsi_disk *d, int pc, uint8_t *p)
{
	(void)d;
	p[0] = 0x0A;
	p[1] = 0x0A;
	if (pc != MODE_PC_CHANGEABLE)
		p[3] = 0x10; /* queue algorithm modifier 1: commands may complete in any order */
}

static const struct mode_page {
	uint8_t code;
	uint8_t len;
	void (*fill)(const struct scsi_disk *d, int pc, uint8_t *p);
} mode_pages[] = {
	{ 0x08, 20, mode_caching },
	{ 0x0A, 12, mode_control },
};
#define MODE_PAGE_COUNT (sizeof(mode_pages) / sizeof(mode_pages[0]))

static const struct mode_page *find_mode_page(uint8_t code)
{
	for (size_t i = 0; i < MODE_PAGE_COUNT; i++)
		if (mode_pages[i].code == code)
			return &mode_pages[i];
	return NULL;
}

/* A block descriptor (short, or long for LLBAA); changeable values: none. */
static size_t block_descriptor(const struct scsi_disk *d, int pc, bool long_lba, uint8_t *p)
{
	bool values = pc != MODE_PC_CHANGEABLE;
	if (long_lba) {
		store_be64(p, values ? capacity(d) : 0);
		store_be32(p + 12, values ? block_size(d) : 0);
		return MODE_LONG_DESC_LEN;
	}
	store_be32(p, values ? (uint32_t)min_u64(capacity(d), UINT32_MAX) : 0);
	store_be32(p + 4, values ? block_size(d) : 0); /* byte 4 (density code) stays 0 */
	return MODE_BLOCK_DESC_LEN;
}

static int mode_sense(struct scsi_disk *d, struct scsi_request *req)
{
	const uint8_t *cdb = req->cdb;
	bool ten = cdb[0] == OP_MODE_SENSE_10;
	bool dbd = cdb[1] & 0x08, long_lba = ten && (cdb[1] & 0x10);
	int pc = cdb[2] >> 6;
	uint8_t page = cdb[2] & 0x3F, subpage = cdb[3];
	uint32_t alloc = ten ? load_be16(cdb + 7) : cdb[4];
	uint8_t out[REPLY_MAX] = { 0 };

	if (pc == MODE_PC_SAVED)
		return scsi_check(req, SK_ILLEGAL_REQUEST, ASC_SAVING_NOT_SUPPORTED);
	if (subpage != 0 && subpage != 0xFF) /* no subpages; FFh asks for them too */
		return scsi_invalid_field(req);
	size_t header = ten ? 8 : 4, len = header;
	if (!dbd)
		len += block_descriptor(d, pc, long_lba, out + len);
	size_t bd_len = len - header;
	for (size_t i = 0; i < MODE_PAGE_COUNT; i++) {
		if (page != MODE_PAGE_ALL && page != mode_pages[i].code)
			continue;
		mode_pages[i].fill(d, pc, out + len);
		len += mode_pages[i].len;
	}
	if (len == header + bd_len)
		return scsi_invalid_field(req); /* a page this target lacks */

	uint8_t device_specific = MODE_DEV_DPOFUA | (d->cfg.read_only ? MODE_DEV_WP : 0);
	if (ten) {
		store_be16(out, (uint16_t)(len - 2));
		out[3] = device_specific;
		out[4] = long_lba && bd_len ? 0x01 : 0; /* LONGLBA */
		store_be16(out + 6, (uint16_t)bd_len);
	} else {
		out[0] = (uint8_t)(len - 1);
		out[2] = device_specific;
		out[3] = (uint8_t)bd_len;
	}
	return scsi_reply(req, out, len, alloc);
}

/* Block descriptors in MODE SELECT may restate the block size; they cannot change it
 * (nor the capacity: the number of blocks is ignored). */
static bool block_descriptors_acceptable(const struct scsi_disk *d, const uint8_t *p, size_t len,
					 bool long_lba)
{
	size_t each = long_lba ? MODE_LONG_DESC_LEN : MODE_BLOCK_DESC_LEN;
	if (len % each)
		return false;
	for (size_t pos = 0; pos < len; pos += each) {
		uint32_t bs =
			long_lba ? load_be32(p + pos + 12) : load_be32(p + pos + 4) & 0xFFFFFF;
		if (bs != block_size(d))
			return false;
	}
	return true;
}

/* Checks one page of MODE SELECT against the current values: only changeable bits may
 * differ (the PS bit is reserved here and ignored). */
static bool mode_page_acceptable(const struct scsi_disk *d, const struct mode_page *mp,
				 const uint8_t *p)
{
	uint8_t current[32] = { 0 }, changeable[32] = { 0 };
	mp->fill(d, MODE_PC_CURRENT, current);
	mp->fill(d, MODE_PC_CHANGEABLE, changeable);
	for (size_t i = 1; i < mp->len; i++)
		if ((p[i] ^ current[i]) & ~changeable[i])
			return false;
	return true;
}

/* Walks the pages after the header and block descriptors; sets *wce to the caching
 * page's value. Returns CMD_STARTED when every page is acceptable, else ends req. */
static int check_mode_pages(struct scsi_disk *d, struct scsi_request *req, const uint8_t *buf,
			    size_t pos, size_t len, bool *wce)
{
	while (pos < len) {
		if (len - pos < 2)
			return parameter_length_error(req);
		const struct mode_page *mp = find_mode_page(buf[pos] & 0x3F);
		size_t page_len = buf[pos + 1] + 2u;
		if (page_len > len - pos)
			return parameter_length_error(req);
		if (!mp || (buf[pos] & 0x40) || page_len != mp->len ||
		    !mode_page_acceptable(d, mp, buf + pos))
			return invalid_parameter(req);
		if (mp->code == 0x08)
			*wce = buf[pos + 2] & MODE_CACHING_WCE;
		pos += page_len;
	}
	return CMD_STARTED;
}

static int mode_select(struct scsi_disk *d, struct scsi_request *req)
{
	const uint8_t *cdb = req->cdb;
	bool ten = cdb[0] == OP_MODE_SELECT_10;
	size_t len = ten ? load_be16(cdb + 7) : cdb[4], header = ten ? 8 : 4;
	uint8_t buf[MODE_SELECT_MAX];

	if (!(cdb[1] & 0x10) || (cdb[1] & 0x01)) /* page format only; saving not supported */
		return scsi_invalid_field(req);
	if (len == 0)
		return scsi_good(req);
	if (len > sizeof(buf) || len < header)
		return parameter_length_error(req);
	if (len > scsi_room_out(req))
		return scsi_invalid_field(req);
	iov_to_buf(req->iov, req->iovcnt, 0, buf, len);

	size_t bd_len = ten ? load_be16(buf + 6) : buf[3];
	if (bd_len > len - header)
		return parameter_length_error(req);
	if (buf[1] != 0 || /* medium type */
	    !block_descriptors_acceptable(d, buf + header, bd_len, ten && (buf[4] & 0x01)))
		return invalid_parameter(req);
	bool wce = write_cache_enabled(d);
	if (check_mode_pages(d, req, buf, header + bd_len, len, &wce) == CMD_DONE)
		return CMD_DONE;
	__atomic_store_n(&d->wce, wce, __ATOMIC_RELAXED);
	req->transferred = len;
	return scsi_good(req);
}

/* ---- the rest of SPC ---- */

static int test_unit_ready(struct scsi_disk *d, struct scsi_request *req)
{
	(void)d;
	return scsi_good(req);
}

/* The unit attention that would have failed this command, or NO SENSE: sense data is
 * otherwise returned with each CHECK CONDITION (autosense), none is kept. */
static int request_sense(struct scsi_disk *d, struct scsi_request *req)
{
	uint8_t sense[SCSI_SENSE_LEN];
	if (req->cdb[1] & 0x01) /* DESC: descriptor format is not supported */
		return scsi_invalid_field(req);
	uint16_t asc = take_unit_attention(d);
	scsi_sense_fixed(sense, asc ? SK_UNIT_ATTENTION : SK_NO_SENSE, asc);
	return scsi_reply(req, sense, sizeof(sense), req->cdb[4]);
}

/* START STOP UNIT and PREVENT ALLOW MEDIUM REMOVAL: a virtual disk is always spinning
 * and its medium cannot be removed; both are accepted and change nothing. */
static int accept(struct scsi_disk *d, struct scsi_request *req)
{
	(void)d;
	return scsi_good(req);
}

/* ---- dispatch ---- */

static const struct command {
	uint8_t opcode;
	int (*run)(struct scsi_disk *d, struct scsi_request *req);
} commands[] = {
	{ OP_TEST_UNIT_READY, test_unit_ready },
	{ OP_REQUEST_SENSE, request_sense },
	{ OP_READ_6, read_write },
	{ OP_WRITE_6, read_write },
	{ OP_INQUIRY, inquiry },
	{ OP_MODE_SELECT_6, mode_select },
	{ OP_MODE_SENSE_6, mode_sense },
	{ OP_START_STOP_UNIT, accept },
	{ OP_PREVENT_ALLOW_MEDIUM_REMOVAL, accept },
	{ OP_READ_CAPACITY_10, read_capacity_10 },
	{ OP_READ_10, read_write },
	{ OP_WRITE_10, read_write },
	{ OP_VERIFY_10, verify },
	{ OP_SYNCHRONIZE_CACHE_10, synchronize_cache },
	{ OP_WRITE_SAME_10, write_same },
	{ OP_UNMAP, unmap },
	{ OP_MODE_SELECT_10, mode_select },
	{ OP_MODE_SENSE_10, mode_sense },
	{ OP_READ_16, read_write },
	{ OP_WRITE_16, read_write },
	{ OP_VERIFY_16, verify },
	{ OP_SYNCHRONIZE_CACHE_16, synchronize_cache },
	{ OP_WRITE_SAME_16, write_same },
	{ OP_SERVICE_ACTION_IN_16, service_action_in },
	{ OP_READ_12, read_write },
	{ OP_WRITE_12, read_write },
	{ OP_VERIFY_12, verify },
};

static const struct command *find_command(uint8_t opcode)
{
	for (size_t i = 0; i < sizeof(commands) / sizeof(commands[0]); i++)
		if (commands[i].opcode == opcode)
			return &commands[i];
	return NULL;
}

/* Commands a pending unit attention does not fail (SPC-4 5.14). */
static bool passes_unit_attention(uint8_t opcode)
{
	return opcode == OP_INQUIRY || opcode == OP_REQUEST_SENSE || opcode == SCSI_OP_REPORT_LUNS;
}

static int run_command(struct scsi_disk *d, struct scsi_request *req)
{
	if (!req->cdb || req->cdb_len < 6 || req->cdb_len > 16)
		return scsi_invalid_field(req);
	uint8_t opcode = req->cdb[0];
	if (!passes_unit_attention(opcode)) {
		uint16_t asc = take_unit_attention(d);
		if (asc)
			return scsi_check(req, SK_UNIT_ATTENTION, asc);
	}
	const struct command *cmd = find_command(opcode);
	if (!cmd)
		return scsi_check(req, SK_ILLEGAL_REQUEST, ASC_INVALID_OPCODE);
	if (!scsi_cdb_complete(req))
		return scsi_invalid_field(req);
	return cmd->run(d, req);
}

void scsi_disk_execute(struct scsi_disk *d, struct vdisk_queue *q, struct scsi_request *req)
{
	req->status = SCSI_STATUS_GOOD;
	req->sense_len = 0;
	req->transferred = 0;
	req->ctx = (struct scsi_request_ctx){ .disk = d, .queue = q };
	if (run_command(d, req) == CMD_DONE)
		finish(req);
}

/* ---- creation ---- */

static bool config_valid(const struct scsi_disk_config *cfg, uint64_t disk_size)
{
	uint32_t bs = cfg->logical_block_size, pbs = cfg->physical_block_size;
	return (bs == 512 || bs == 4096) && is_power_of_two(pbs) && pbs >= bs &&
	       pbs / bs <= 1u << 15 && disk_size >= bs && cfg->max_transfer_bytes >= bs;
}

int scsi_disk_create(struct vdisk *disk, const struct scsi_disk_config *cfg, struct scsi_disk **out)
{
	if (!disk || !cfg || !config_valid(cfg, vdisk_size(disk)))
		return -EINVAL;
	struct scsi_disk *d = calloc(1, sizeof(*d));
	if (!d)
		return -ENOMEM;
	d->disk = disk;
	d->cfg = *cfg;
	d->cfg.vendor[sizeof(d->cfg.vendor) - 1] = 0;
	d->cfg.product[sizeof(d->cfg.product) - 1] = 0;
	d->cfg.revision[sizeof(d->cfg.revision) - 1] = 0;
	d->cfg.read_only = cfg->read_only || vdisk_read_only(disk);
	if (!d->cfg.unmap_granularity)
		d->cfg.unmap_granularity = 1;
	d->wce = true;
	*out = d;
	return 0;
}

void scsi_disk_destroy(struct scsi_disk *d)
{
	free(d);
}

/* The image's identity: the VHDX page 83 GUID or the VHD unique id where the format keeps
 * one, else a hash of the file's canonical path. */
static int unit_id_of(struct vdisk *disk, json_t *details, uint8_t *out)
{
	const char *id =
		json_string_value(json_object_get(json_object_get(details, "metadata"), "page83"));
	if (!id)
		id = json_string_value(json_object_get(details, "unique_id"));
	struct guid g;
	if (id && guid_parse(id, &g) == 0) {
		memcpy(out, g.bytes, 16);
		return 0;
	}
	char *path = realpath(vdisk_path(disk), NULL);
	if (!path)
		return -ENOMEM;
	XXH128_canonical_t hash;
	XXH128_canonicalFromHash(&hash, XXH3_128bits(path, strlen(path)));
	free(path);
	memcpy(out, hash.digest, 16);
	return 0;
}

int scsi_disk_config_from_vdisk(struct vdisk *disk, struct scsi_disk_config *cfg)
{
	struct vdisk_info info;
	int ret = vdisk_get_info(disk, &info);
	if (ret < 0)
		return ret;
	*cfg = (struct scsi_disk_config){
		.vendor = "Msft",
		.product = "Virtual Disk",
		.revision = "1.0",
		.logical_block_size = info.logical_sector_size ? info.logical_sector_size : 512,
		.max_transfer_bytes = DEFAULT_MAX_TRANSFER,
		.read_only = vdisk_read_only(disk),
	};
	cfg->physical_block_size =
		(uint32_t)max_u64(info.physical_sector_size, cfg->logical_block_size);
	/* VHD has no way to release space in place: its discard keeps the data */
	cfg->discard = cfg->discard_zeroes = strcmp(info.format, "vhd") != 0;
	const char *type = json_string_value(json_object_get(info.details, "type"));
	cfg->thin = type ? strcmp(type, "fixed") != 0 : info.allocated_size < info.virtual_size;
	/* the format's block, at least the 4 KiB host file systems allocate in */
	cfg->unmap_granularity =
		(uint32_t)(max_u64(max_u64(info.cluster_size, 4096), cfg->physical_block_size) /
			   cfg->logical_block_size);
	ret = unit_id_of(disk, info.details, cfg->unit_id);
	json_decref(info.details);
	return ret;
}
