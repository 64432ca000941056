/* The ATAPI DVD-ROM drive: the PACKET protocol (ATA8-ACS) over the MMC target
 * (scsi-vsp/scsi_cdrom.h), which owns the command set, the medium, the tray, unit
 * attentions and sense data. This file is the transport.
 *
 * Protocol. PACKET (A0h) asks for the 12-byte command packet with DRQ and interrupt reason
 * CoD. The packet's data goes to the host either through the bus master (features bit 0)
 * or in PIO DRQ blocks: each block is announced in LBA mid/high (the byte count), with
 * interrupt reason IO and an interrupt, and is at most the byte count limit the host put
 * there; an odd limit is rounded down to even for every block but the last, and a limit
 * below 2 (or FFFFh) counts as FFFEh. The command ends with interrupt reason CoD|IO and an
 * interrupt; a CHECK CONDITION sets ERR and the sense key in the error register's high
 * nibble, and REQUEST SENSE (the target keeps the sense) returns the details. A DMA table
 * the bus master cannot use, or a target out of memory, ends the command with ABORTED
 * COMMAND.
 *
 * The packet goes to the target when it is in (scsi_cdrom_start: no I/O, on the vCPU
 * thread); a reply comes back in the channel's buffer. A read stays open and moves in
 * pieces, each read on the thread of the medium's queue 0 (vdisk_queue_post), where it
 * completes: PIO reads fill the buffer IDE_BUF_SIZE bytes at a time, a DMA read goes
 * straight into the PRD table's memory once the bus master starts. A vCPU never waits.
 */
#include "ide_internal.h"

#include <errno.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>

#include "arith.h"
#include "vdisk.h"

/* Interrupt reason, in the sector count register */
enum {
	IR_COD = 0x01,
	IR_IO = 0x02,
};

/* The channel whose call into the target runs on this thread: a read piece that the target
 * ends inline finds its channel locked already. */
static _Thread_local struct ide_channel *calling;

/* ---- command endings ---- */

static void packet_good(struct ide_channel *ch)
{
	ch->nsect = IR_COD | IR_IO;
	ide_command_done(ch, 0);
}

/* The command ended in error: CHECK CONDITION with the target's sense key, or ABORTED
 * COMMAND when the target had no sense to give (BUSY) or the transfer failed. */
static void packet_failed(struct ide_channel *ch)
{
	struct scsi_request *req = &ch->atapi_req;
	if (req->status != SCSI_STATUS_CHECK_CONDITION)
		scsi_cdrom_transport_failed(ide_current(ch)->cdrom, req);
	ch->nsect = IR_COD | IR_IO;
	ide_command_done(ch, (uint8_t)((req->sense[2] & 0x0F) << 4));
}

/* ---- PIO data-in ---- */

static uint32_t drq_block_size(const struct ide_channel *ch)
{
	uint32_t left = ch->buf_len - ch->buf_pos;
	uint32_t limit = ch->byte_limit < 2 || ch->byte_limit == 0xFFFF ? 0xFFFE : ch->byte_limit;
	if (left <= limit)
		return left;
	return limit & ~1u;
}

static void next_drq_block(struct ide_channel *ch)
{
	uint32_t n = drq_block_size(ch);
	ch->drq_end = ch->buf_pos + n;
	ch->lbam = (uint8_t)n;
	ch->lbah = (uint8_t)(n >> 8);
	ch->nsect = IR_IO;
	ch->status = ST_DRDY | ST_DSC | ST_DRQ;
	ide_raise_irq(ch);
}

/* ---- read pieces ---- */

/* A piece of the read ended (channel locked, the command still current). */
static void piece_ended(struct ide_channel *ch)
{
	struct scsi_request *req = &ch->atapi_req;
	bool good = req->status == SCSI_STATUS_GOOD;
	if (ch->xfer == XFER_DMA_IN) {
		ide_dma_done(ch, good ? 0 : -EIO);
	} else if (!good) {
		packet_failed(ch);
	} else {
		ch->ctrl->stats.pio_sectors += req->transferred / IDE_SECTOR;
		next_drq_block(ch);
	}
}

static void piece_done(struct ide_channel *ch)
{
	if (ide_io_end(ch)) /* else a reset dropped the command */
		piece_ended(ch);
}

static void piece_request_done(struct scsi_request *req)
{
	struct ide_channel *ch =
		(struct ide_channel *)((char *)req - offsetof(struct ide_channel, atapi_req));
	if (calling == ch) {
		ch->atapi_done_inline = true;
		return;
	}
	pthread_mutex_lock(&ch->lock);
	piece_done(ch);
	pthread_mutex_unlock(&ch->lock);
}

static void read_piece(struct ide_channel *ch, struct vdisk_queue *q)
{
	ch->atapi_done_inline = false;
	calling = ch;
	scsi_cdrom_read_piece(ide_current(ch)->cdrom, q, &ch->atapi_req, ch->atapi_piece);
	calling = NULL;
	if (ch->atapi_done_inline)
		piece_done(ch);
}

/* On the thread of the medium's queue 0. The medium cannot change meanwhile: the host's
 * eject waits while the channel has work in flight. */
static void piece_posted(void *arg)
{
	struct ide_channel *ch = arg;
	pthread_mutex_lock(&ch->lock);
	if (ch->io_generation != ch->generation) {
		ide_io_end(ch);
	} else {
		struct vdisk *medium = scsi_cdrom_medium(ide_current(ch)->cdrom);
		read_piece(ch, medium ? vdisk_queue(medium, 0) : NULL);
	}
	pthread_mutex_unlock(&ch->lock);
}

/* Reads the piece at atapi_piece into len bytes of buffers: on the medium's queue thread,
 * or at once when the drive is empty (the target then ends the read NOT READY). */
static void start_piece(struct ide_channel *ch, const struct iovec *iov, int iovcnt, uint64_t len)
{
	struct scsi_cdrom *cd = ide_current(ch)->cdrom;
	struct scsi_request *req = &ch->atapi_req;
	req->iov = iov;
	req->iovcnt = iovcnt;
	req->transfer_len = len;
	ide_io_begin(ch);
	struct vdisk *medium = scsi_cdrom_medium(cd);
	if (!medium) {
		read_piece(ch, NULL);
	} else if (vdisk_queue_post(vdisk_queue(medium, 0), piece_posted, ch) < 0) {
		ide_io_end(ch);
		scsi_cdrom_transport_failed(cd, req);
		piece_ended(ch);
	}
}

/* The next part of a PIO read, into the buffer. */
static void refill(struct ide_channel *ch)
{
	uint32_t chunk = (uint32_t)min_u64(ch->atapi_left, IDE_BUF_SIZE);
	ch->buf_pos = ch->drq_end = 0;
	ch->buf_len = chunk;
	ch->atapi_piece = ch->atapi_len - ch->atapi_left;
	ch->atapi_left -= chunk;
	ch->atapi_iov = (struct iovec){ ch->buf, chunk };
	start_piece(ch, &ch->atapi_iov, 1, chunk);
}

void ide_atapi_dma_read(struct ide_channel *ch, int iovcnt)
{
	ch->atapi_piece = 0;
	start_piece(ch, ch->dma_iov, iovcnt, ch->io_bytes);
}

uint32_t ide_atapi_data_read(struct ide_channel *ch, unsigned size)
{
	if (!(ch->status & ST_DRQ) || ch->buf_pos >= ch->drq_end)
		return 0xFFFFFFFF;
	uint32_t v = 0, n = (uint32_t)min_u64(size, ch->drq_end - ch->buf_pos);
	memcpy(&v, ch->buf + ch->buf_pos, n); /* the last word of an odd block is padded */
	ch->buf_pos += n;
	if (ch->buf_pos < ch->drq_end)
		return v;
	if (ch->buf_pos < ch->buf_len)
		next_drq_block(ch);
	else if (ch->atapi_left)
		refill(ch);
	else
		packet_good(ch);
	return v;
}

/* ---- the packet ---- */

static void start_read(struct ide_channel *ch, uint64_t len)
{
	ch->atapi_len = ch->atapi_left = len;
	if (ch->packet_dma) {
		ch->xfer = XFER_DMA_IN;
		ch->io_bytes = len;
		ide_dma_command(ch);
	} else {
		ch->xfer = XFER_ATAPI_IN;
		refill(ch);
	}
}

/* The reply in the buffer goes to the host. */
static void send_reply(struct ide_channel *ch, uint32_t len)
{
	if (!len) {
		packet_good(ch);
	} else if (ch->packet_dma) {
		ch->xfer = XFER_DMA_BUF;
		ch->io_bytes = len;
		ide_dma_command(ch);
	} else {
		ch->xfer = XFER_ATAPI_IN;
		ch->buf_pos = 0;
		ch->buf_len = len;
		ch->atapi_left = 0;
		next_drq_block(ch);
	}
}

static void execute_packet(struct ide_channel *ch, struct ide_drive *d)
{
	memcpy(ch->atapi_cdb, ch->buf, sizeof(ch->atapi_cdb)); /* replies go where it came in */
	ch->xfer = XFER_NONE;
	ch->buf_pos = ch->buf_len = 0;
	ch->atapi_iov = (struct iovec){ ch->buf, IDE_BUF_SIZE };
	ch->atapi_req = (struct scsi_request){ .cdb = ch->atapi_cdb,
					       .cdb_len = ATAPI_CDB_SIZE,
					       .data_in = true,
					       .iov = &ch->atapi_iov,
					       .iovcnt = 1,
					       .transfer_len = IDE_BUF_SIZE,
					       .done = piece_request_done };
	uint64_t read_len = scsi_cdrom_start(d->cdrom, &ch->atapi_req);
	if (read_len)
		start_read(ch, read_len);
	else if (ch->atapi_req.status != SCSI_STATUS_GOOD)
		packet_failed(ch);
	else
		send_reply(ch, (uint32_t)ch->atapi_req.transferred);
}

void ide_atapi_data_write(struct ide_channel *ch, unsigned size, uint32_t value)
{
	if (!(ch->status & ST_DRQ) || ch->buf_pos >= ATAPI_CDB_SIZE)
		return;
	uint32_t n = (uint32_t)min_u64(size, ATAPI_CDB_SIZE - ch->buf_pos);
	memcpy(ch->buf + ch->buf_pos, &value, n);
	ch->buf_pos += n;
	if (ch->buf_pos == ATAPI_CDB_SIZE)
		execute_packet(ch, ide_current(ch));
}

void ide_atapi_dma_done(struct ide_channel *ch, int result)
{
	if (result == 0)
		packet_good(ch);
	else
		packet_failed(ch); /* a PRD table it could not use leaves the request GOOD so far */
}

/* ---- ATA commands to the packet device ---- */

static void packet_command(struct ide_channel *ch)
{
	ch->packet_dma = ch->feature & 1;
	ch->byte_limit = (uint16_t)(ch->lbah << 8 | ch->lbam);
	ch->xfer = XFER_PACKET;
	ch->buf_pos = 0;
	ch->buf_len = ATAPI_CDB_SIZE;
	ch->nsect = IR_COD;
	/* IDENTIFY PACKET DEVICE word 0 promises DRQ within 50 us: no interrupt for it */
	ch->status = ST_DRDY | ST_DSC | ST_DRQ;
}

static void identify_packet_device(const struct ide_drive *d, unsigned unit, uint8_t *out)
{
	uint16_t w[256] = { 0 };
	w[0] = 0x85C0; /* ATAPI, CD/DVD device, removable, DRQ in 50 us, 12-byte packets */
	ide_put_string(w, 10, 10, d->serial);
	ide_put_string(w, 23, 4, "1.0");
	ide_put_string(w, 27, 20, "hvstack Virtual DVD-ROM");
	w[49] = 0x0F00; /* IORDY, IORDY can be disabled, LBA, DMA */
	w[50] = 0x4000;
	w[53] = 0x0006; /* words 64-70 and 88 are valid */
	ide_identify_modes(w, d->transfer_mode);
	w[80] = 0x00F0;		/* ATA/ATAPI-4 to -7 */
	w[82] = w[85] = 0x0218; /* DEVICE RESET, PACKET, power management */
	w[83] = w[84] = w[87] = 0x4000;
	w[93] = unit ? 0x6100 : 0x6001; /* 80-conductor cable; which device this is */
	ide_identify_finish(w, out);
}

void ide_atapi_command(struct ide_channel *ch, struct ide_drive *d, uint8_t cmd)
{
	switch (cmd) {
	case 0xA0:
		packet_command(ch);
		break;
	case 0xA1:
		identify_packet_device(d, (ch->select >> 4) & 1, ch->buf);
		ide_start_identify(ch);
		break;
	case 0xEF:
		ide_set_features(ch, d);
		break;
	case 0xEC:
	case 0x20:
	case 0x21: /* ATA commands a packet device aborts, showing its signature */
		ide_load_signature(ch, d);
		ide_command_done(ch, ERR_ABRT);
		break;
	default:
		ide_command_done(ch, ERR_ABRT);
		break;
	}
}

void ide_atapi_reset(struct ide_drive *d)
{
	scsi_cdrom_reset(d->cdrom);
}

/* ---- the host side ---- */

int ide_attach_cdrom(struct ide_controller *c, unsigned channel, unsigned unit, struct vdisk *iso)
{
	struct scsi_cdrom_config cfg = { .vendor = "hvstack",
					 .product = "Virtual DVD-ROM",
					 .revision = "1.0",
					 .interface = SCSI_CDROM_INTERFACE_ATAPI };
	snprintf(cfg.serial, sizeof(cfg.serial), "HV%u%uDVD", channel, unit);
	struct ide_drive d = { .kind = IDE_DEVICE_CDROM, .transfer_mode = 0x08 };
	memcpy(d.serial, cfg.serial, sizeof(d.serial));
	int ret = scsi_cdrom_create(&cfg, iso, &d.cdrom);
	if (ret < 0)
		return ret;
	ret = ide_attach_drive(c, channel, unit, &d);
	if (ret < 0)
		scsi_cdrom_destroy(d.cdrom);
	return ret;
}

static struct ide_channel *lock_cdrom(struct ide_controller *c, unsigned channel, unsigned unit,
				      struct ide_drive **d, int *ret)
{
	if (channel > 1 || unit > 1) {
		*ret = -EINVAL;
		return NULL;
	}
	struct ide_channel *ch = &c->channel[channel];
	pthread_mutex_lock(&ch->lock);
	*d = &ch->drive[unit];
	*ret = (*d)->kind == IDE_DEVICE_CDROM ? 0 : -ENODEV;
	return ch;
}

int ide_cdrom_eject(struct ide_controller *c, unsigned channel, unsigned unit, bool force)
{
	struct ide_drive *d;
	int ret;
	struct ide_channel *ch = lock_cdrom(c, channel, unit, &d, &ret);
	if (!ch)
		return ret;
	if (ret == 0 && ch->io_pending)
		ret = -EAGAIN; /* a read piece is posted or in flight: it uses the medium */
	if (ret == 0)
		ret = scsi_cdrom_eject(d->cdrom, force);
	pthread_mutex_unlock(&ch->lock);
	return ret;
}

int ide_cdrom_insert(struct ide_controller *c, unsigned channel, unsigned unit, struct vdisk *iso)
{
	struct ide_drive *d;
	int ret;
	struct ide_channel *ch = lock_cdrom(c, channel, unit, &d, &ret);
	if (!ch)
		return ret;
	if (ret == 0)
		ret = scsi_cdrom_insert(d->cdrom, iso);
	pthread_mutex_unlock(&ch->lock);
	return ret;
}
