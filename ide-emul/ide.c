/* The IDE taskfile, ATA command set and PIO transfers; DMA is in ide_dma.c, the packet
 * device (ATAPI DVD drive) in ide_atapi.c. */
#include "ide_internal.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "file.h"
#include "geometry.h"
#include "iov.h"
#include "scsi_cdrom.h"
#include "vdisk.h"

/* ---- interrupts and command completion ---- */

static void update_irq(struct ide_channel *ch)
{
	irq_line_set(&ch->ctrl->cfg.irq[ch->index], ch->irq_pending && !(ch->control & CTL_NIEN));
}

void ide_raise_irq(struct ide_channel *ch)
{
	ch->irq_pending = true;
	ch->bm_status |= BM_ST_INTERRUPT; /* the bus master latches every interrupt */
	update_irq(ch);
}

struct ide_drive *ide_current(struct ide_channel *ch)
{
	return &ch->drive[(ch->select >> 4) & 1];
}

void ide_command_done(struct ide_channel *ch, uint8_t error)
{
	ch->xfer = XFER_NONE;
	ch->error = error;
	ch->status = ST_DRDY | ST_DSC | (error ? ST_ERR : 0);
	ch->buf_pos = ch->buf_len = 0;
	if (error)
		ch->ctrl->stats.errors++;
	ide_raise_irq(ch);
}

/* ---- asynchronous I/O ---- */

static void io_done(void *opaque, int result);
static void try_finish_reset(struct ide_channel *ch);

static void pio_io_done(struct ide_channel *ch, int result)
{
	if (result < 0) {
		ide_command_done(ch, ch->xfer == XFER_PIO_IN ? ERR_UNC | ERR_ABRT : ERR_ABRT);
		return;
	}
	uint32_t n = ch->buf_len / IDE_SECTOR;
	ch->ctrl->stats.pio_sectors += n;
	if (ch->xfer == XFER_PIO_IN) {
		/* the block is in the buffer: the guest may read it */
		ch->buf_pos = 0;
		ch->status = ST_DRDY | ST_DSC | ST_DRQ;
		ide_raise_irq(ch);
		return;
	}
	ch->lba += n;
	ch->remaining -= n;
	if (!ch->remaining) {
		ide_command_done(ch, 0);
		return;
	}
	uint32_t next = ch->remaining < ch->block ? ch->remaining : ch->block;
	ch->buf_pos = 0;
	ch->buf_len = next * IDE_SECTOR;
	ch->status = ST_DRDY | ST_DSC | ST_DRQ;
	ide_raise_irq(ch);
}

static void io_finish(struct ide_channel *ch)
{
	int result = ch->io_result;
	switch (ch->xfer) {
	case XFER_PIO_IN:
	case XFER_PIO_OUT:
		pio_io_done(ch, result);
		break;
	case XFER_DMA_IN:
	case XFER_DMA_OUT:
		ide_dma_done(ch, result);
		break;
	case XFER_FLUSH:
		ide_command_done(ch, result < 0 ? ERR_ABRT : 0);
		break;
	case XFER_NONE:
	case XFER_PACKET:
	case XFER_ATAPI_IN: /* the ATAPI drive's reads go through its target */
	case XFER_DMA_BUF:
		break;
	}
}

static bool dma_xfer(enum ide_xfer xfer)
{
	return xfer == XFER_DMA_IN || xfer == XFER_DMA_OUT;
}

/* One request of the transfer; returns 0 or the error that refused it. */
static int submit_part(struct ide_channel *ch, struct vdisk *disk, struct vdisk_queue *q,
		       const struct iovec *iov, int iovcnt, uint64_t offset)
{
	switch (ch->xfer) {
	case XFER_PIO_IN:
	case XFER_DMA_IN:
		return vdisk_readv(disk, q, iov, iovcnt, offset, io_done, ch);
	case XFER_PIO_OUT:
	case XFER_DMA_OUT:
		return vdisk_writev(disk, q, iov, iovcnt, offset, io_done, ch);
	case XFER_FLUSH:
		return vdisk_flush(disk, q, io_done, ch);
	case XFER_NONE:
	case XFER_PACKET:
	case XFER_ATAPI_IN:
	case XFER_DMA_BUF:
		break;
	}
	return -EINVAL;
}

static void count_io(struct ide_drive *d, enum ide_xfer xfer, uint64_t bytes)
{
	switch (xfer) {
	case XFER_PIO_IN:
	case XFER_DMA_IN:
		d->stats.reads++;
		d->stats.read_bytes += bytes;
		break;
	case XFER_PIO_OUT:
	case XFER_DMA_OUT:
		d->stats.writes++;
		d->stats.write_bytes += bytes;
		break;
	case XFER_FLUSH:
		d->stats.flushes++;
		break;
	case XFER_NONE:
	case XFER_PACKET:
	case XFER_ATAPI_IN:
	case XFER_DMA_BUF:
		break;
	}
}

static uint64_t request_bytes(const struct ide_channel *ch, unsigned parts)
{
	if (ch->xfer == XFER_FLUSH)
		return 0;
	if (!dma_xfer(ch->xfer))
		return ch->pio_iov.iov_len;
	uint64_t bytes = 0;
	for (unsigned i = 0; i < parts; i++)
		bytes +=
			iov_size(ch->dma_iov + ch->dma_parts[i].first_iov, ch->dma_parts[i].iovcnt);
	return bytes;
}

/* A request of a cancelled command ended: once none is left, a reset can complete and a
 * platform reset waiting in ide_reset goes on. */
static void io_idle(struct ide_channel *ch)
{
	if (ch->io_pending)
		return;
	if (ch->reset_pending)
		try_finish_reset(ch);
	pthread_cond_broadcast(&ch->idle);
}

/* On the queue's thread: submits what ide_start_io prepared, unless a reset came first. */
static void io_submit(void *arg)
{
	struct ide_channel *ch = arg;
	pthread_mutex_lock(&ch->lock);
	struct vdisk *disk = ide_current(ch)->disk;
	struct vdisk_queue *q = disk ? vdisk_queue(disk, 0) : NULL;
	unsigned parts = dma_xfer(ch->xfer) ? ch->dma_nparts : 1;
	ch->io_pending--; /* the post's own reference */
	if (ch->io_generation != ch->generation || !q) {
		io_idle(ch);
		pthread_mutex_unlock(&ch->lock);
		return;
	}
	count_io(ide_current(ch), ch->xfer, request_bytes(ch, parts));
	for (unsigned i = 0; i < parts; i++) {
		int ret;
		if (!dma_xfer(ch->xfer))
			ret = submit_part(ch, disk, q, &ch->pio_iov, 1, ch->io_offset);
		else
			ret = submit_part(ch, disk, q, ch->dma_iov + ch->dma_parts[i].first_iov,
					  ch->dma_parts[i].iovcnt, ch->dma_parts[i].offset);
		if (ret < 0) {
			if (!ch->io_result)
				ch->io_result = ret;
			continue;
		}
		ch->io_pending++;
	}
	if (!ch->io_pending)
		io_finish(ch);
	pthread_mutex_unlock(&ch->lock);
}

static void io_done(void *opaque, int result)
{
	struct ide_channel *ch = opaque;
	pthread_mutex_lock(&ch->lock);
	if (result < 0 && !ch->io_result)
		ch->io_result = result;
	if (--ch->io_pending == 0 && ch->io_generation == ch->generation)
		io_finish(ch);
	else
		io_idle(ch);
	pthread_mutex_unlock(&ch->lock);
}

void ide_io_begin(struct ide_channel *ch)
{
	ch->status = ST_BSY | ST_DRDY | ST_DSC;
	ch->io_generation = ch->generation;
	ch->io_pending++;
}

bool ide_io_end(struct ide_channel *ch)
{
	ch->io_pending--;
	if (ch->io_generation == ch->generation)
		return true;
	if (!ch->io_pending && ch->reset_pending)
		try_finish_reset(ch);
	return false;
}

int ide_start_io(struct ide_channel *ch)
{
	struct vdisk *disk = ide_current(ch)->disk;
	ch->io_result = 0;
	ide_io_begin(ch);
	int ret = vdisk_queue_post(vdisk_queue(disk, 0), io_submit, ch);
	if (ret < 0)
		ch->io_pending--;
	return ret;
}

/* ---- the taskfile ---- */

static bool lba48_command(uint8_t cmd)
{
	switch (cmd) {
	case 0x24:
	case 0x25:
	case 0x27:
	case 0x29:
	case 0x34:
	case 0x35:
	case 0x39:
	case 0x42:
	case 0xEA:
		return true;
	default:
		return false;
	}
}

/* The sector count of the command (0 means 256, or 65536 for 48-bit commands). */
static uint32_t command_count(const struct ide_channel *ch, bool lba48)
{
	if (lba48) {
		uint32_t n = (uint32_t)ch->hob_nsect << 8 | ch->nsect;
		return n ? n : 65536;
	}
	return ch->nsect ? ch->nsect : 256;
}

/* The starting sector, from LBA (28 or 48 bit) or CHS registers; UINT64_MAX for a CHS
 * address outside the geometry. */
static uint64_t command_lba(const struct ide_channel *ch, const struct ide_drive *d, bool lba48)
{
	if (lba48)
		return (uint64_t)ch->hob_lbah << 40 | (uint64_t)ch->hob_lbam << 32 |
		       (uint64_t)ch->hob_lbal << 24 | (uint64_t)ch->lbah << 16 |
		       (uint64_t)ch->lbam << 8 | ch->lbal;
	if (ch->select & 0x40)
		return (uint64_t)(ch->select & 0x0F) << 24 | (uint64_t)ch->lbah << 16 |
		       (uint64_t)ch->lbam << 8 | ch->lbal;
	unsigned cyl = (unsigned)ch->lbah << 8 | ch->lbam, head = ch->select & 0x0F;
	unsigned sector = ch->lbal;
	if (sector == 0 || sector > d->cur_spt || head >= d->cur_heads)
		return UINT64_MAX;
	return ((uint64_t)cyl * d->cur_heads + head) * d->cur_spt + sector - 1;
}

/* Writes the next sector address back to the registers (error reporting and the end of a
 * command leave them pointing at the last sector transferred, as drives do). */
static void set_command_lba(struct ide_channel *ch, uint64_t lba, bool lba48)
{
	ch->lbal = (uint8_t)lba;
	ch->lbam = (uint8_t)(lba >> 8);
	ch->lbah = (uint8_t)(lba >> 16);
	if (lba48) {
		ch->hob_lbal = (uint8_t)(lba >> 24);
		ch->hob_lbam = (uint8_t)(lba >> 32);
		ch->hob_lbah = (uint8_t)(lba >> 40);
	} else {
		ch->select = (uint8_t)((ch->select & 0xF0) | ((lba >> 24) & 0x0F));
	}
}

/* ---- IDENTIFY DEVICE ---- */

void ide_put_string(uint16_t *words, unsigned first, unsigned count, const char *s)
{
	/* ATA strings: two characters per word, the first in the high byte, space padded */
	for (unsigned i = 0; i < count * 2; i++) {
		char c = *s ? *s++ : ' ';
		uint16_t *w = &words[first + i / 2];
		*w = i % 2 ? (uint16_t)((*w & 0xFF00) | (uint8_t)c)
			   : (uint16_t)((*w & 0x00FF) | (uint8_t)c << 8);
	}
}

static void identify_device(const struct ide_drive *d, uint8_t *out)
{
	uint16_t w[256] = { 0 };
	uint64_t lba28 = d->sectors < 0x0FFFFFFF ? d->sectors : 0x0FFFFFFF;
	uint64_t chs = (uint64_t)d->cylinders * d->cur_heads * d->cur_spt;
	w[0] = 0x0040; /* fixed disk */
	w[1] = d->cylinders;
	w[3] = d->heads;
	w[6] = d->spt;
	ide_put_string(w, 10, 10, d->serial);
	ide_put_string(w, 23, 4, "1.0");
	ide_put_string(w, 27, 20, "hvstack Virtual Disk");
	w[47] = 0x8000 | IDE_MAX_MULTIPLE;
	w[49] = 0x0F00; /* IORDY, IORDY can be disabled, LBA, DMA */
	w[50] = 0x4000;
	w[53] = 0x0007; /* words 54-58, 64-70 and 88 are valid */
	w[54] = d->cylinders;
	w[55] = d->cur_heads;
	w[56] = d->cur_spt;
	w[57] = (uint16_t)chs;
	w[58] = (uint16_t)(chs >> 16);
	w[59] = d->multiple ? 0x0100 | d->multiple : 0;
	w[60] = (uint16_t)lba28;
	w[61] = (uint16_t)(lba28 >> 16);
	ide_identify_modes(w, d->transfer_mode);
	w[80] = 0x00F0; /* ATA/ATAPI-4 to -7 */
	w[82] = 0x4020; /* NOP, write cache */
	w[83] = 0x7400; /* FLUSH CACHE EXT, FLUSH CACHE, 48-bit addresses */
	w[84] = 0x4000;
	w[85] = 0x4000 | (d->write_cache ? 0x0020 : 0);
	w[86] = 0x3400;
	w[87] = 0x4000;
	w[93] = 0x6001; /* 80-conductor cable detected, device 0 passed diagnostics */
	for (unsigned i = 0; i < 4; i++)
		w[100 + i] = (uint16_t)(d->sectors >> (16 * i));
	ide_identify_finish(w, out);
}

/* Multiword DMA 0-2, PIO 3-4 and UDMA 0-5 supported, the mode SET FEATURES chose. */
void ide_identify_modes(uint16_t *w, uint8_t transfer_mode)
{
	uint8_t kind = transfer_mode & 0xF8, mode = transfer_mode & 7;
	w[63] = 0x0007 | (kind == 0x20 ? 0x100 << mode : 0);
	w[64] = 0x0003;
	w[65] = w[66] = w[67] = w[68] = 120;
	w[88] = 0x003F | (kind == 0x40 ? 0x100 << mode : 0);
}

void ide_identify_finish(uint16_t *w, uint8_t *out)
{
	/* integrity word: signature A5h, then the checksum making all 512 bytes sum to 0 */
	w[255] = 0x00A5;
	uint8_t sum = 0;
	for (unsigned i = 0; i < 255; i++)
		sum += (uint8_t)(w[i] & 0xFF) + (uint8_t)(w[i] >> 8);
	sum += 0xA5;
	w[255] |= (uint16_t)((uint8_t)-sum) << 8;
	for (unsigned i = 0; i < 256; i++) {
		out[2 * i] = (uint8_t)w[i];
		out[2 * i + 1] = (uint8_t)(w[i] >> 8);
	}
}

/* ---- commands ---- */

void ide_start_identify(struct ide_channel *ch)
{
	ch->xfer = XFER_PIO_IN;
	ch->remaining = 1;
	ch->block = 1;
	ch->lba = 0;
	ch->buf_pos = 0;
	ch->buf_len = IDE_SECTOR;
	ch->status = ST_DRDY | ST_DSC | ST_DRQ;
	ide_raise_irq(ch);
}

static void start_pio_in(struct ide_channel *ch)
{
	uint32_t n = ch->remaining < ch->block ? ch->remaining : ch->block;
	ch->buf_len = n * IDE_SECTOR;
	ch->buf_pos = 0;
	ch->io_offset = ch->lba * IDE_SECTOR;
	ch->pio_iov = (struct iovec){ ch->buf, ch->buf_len };
	if (ide_start_io(ch) < 0)
		ide_command_done(ch, ERR_ABRT);
}

/* Read and write commands: checks the range, then starts the transfer. */
static void rw_command(struct ide_channel *ch, struct ide_drive *d, enum ide_xfer xfer, bool lba48,
		       uint32_t block)
{
	uint32_t count = command_count(ch, lba48);
	uint64_t lba = command_lba(ch, d, lba48);
	if (lba == UINT64_MAX || lba > d->sectors || count > d->sectors - lba) {
		ide_command_done(ch, ERR_IDNF | ERR_ABRT);
		return;
	}
	ch->xfer = xfer;
	ch->lba = lba;
	ch->remaining = count;
	ch->block = block;
	ch->io_offset = lba * IDE_SECTOR;
	ch->io_bytes = (uint64_t)count * IDE_SECTOR;
	switch (xfer) {
	case XFER_PIO_IN:
		start_pio_in(ch);
		break;
	case XFER_PIO_OUT: /* the first block is asked for without an interrupt */
		ch->buf_pos = 0;
		ch->buf_len = (count < block ? count : block) * IDE_SECTOR;
		ch->status = ST_DRDY | ST_DSC | ST_DRQ;
		break;
	case XFER_DMA_IN:
	case XFER_DMA_OUT:
		ide_dma_command(ch);
		break;
	default:
		break;
	}
}

void ide_set_features(struct ide_channel *ch, struct ide_drive *d)
{
	switch (ch->feature) {
	case 0x02: /* enable write cache */
	case 0x82: /* disable write cache */
		d->write_cache = ch->feature == 0x02;
		break;
	case 0x03: { /* set transfer mode: mode in the sector count */
		uint8_t kind = ch->nsect & 0xF8, mode = ch->nsect & 7;
		if ((kind == 0x00 || kind == 0x08) && mode <= 4)
			d->transfer_mode = ch->nsect;
		else if ((kind == 0x20 && mode <= 2) || (kind == 0x40 && mode <= 5))
			d->transfer_mode = ch->nsect;
		else {
			ide_command_done(ch, ERR_ABRT);
			return;
		}
		break;
	}
	case 0x55:
	case 0xAA: /* read look-ahead off/on */
	case 0x66:
	case 0xCC: /* keep/restore settings at reset */
		break;
	default:
		ide_command_done(ch, ERR_ABRT);
		return;
	}
	ide_command_done(ch, 0);
}

static void read_native_max(struct ide_channel *ch, const struct ide_drive *d, bool lba48)
{
	uint64_t max = d->sectors - 1;
	if (!lba48 && max > 0x0FFFFFFF)
		max = 0x0FFFFFFF;
	set_command_lba(ch, max, lba48);
	ide_command_done(ch, 0);
}

static void ata_command(struct ide_channel *ch, struct ide_drive *d, uint8_t cmd)
{
	bool lba48 = lba48_command(cmd);
	switch (cmd) {
	case 0x20:
	case 0x21:
	case 0x24:
		rw_command(ch, d, XFER_PIO_IN, lba48, 1);
		break;
	case 0x30:
	case 0x31:
	case 0x34:
		rw_command(ch, d, XFER_PIO_OUT, lba48, 1);
		break;
	case 0xC4:
	case 0x29:
	case 0xC5:
	case 0x39:
		if (!d->multiple)
			ide_command_done(ch, ERR_ABRT);
		else
			rw_command(ch, d, cmd == 0xC4 || cmd == 0x29 ? XFER_PIO_IN : XFER_PIO_OUT,
				   lba48, d->multiple);
		break;
	case 0xC8:
	case 0xC9:
	case 0x25:
		rw_command(ch, d, XFER_DMA_IN, lba48, 0);
		break;
	case 0xCA:
	case 0xCB:
	case 0x35:
		rw_command(ch, d, XFER_DMA_OUT, lba48, 0);
		break;
	case 0x40:
	case 0x41:
	case 0x42: { /* READ VERIFY SECTORS: the range must exist */
		uint32_t count = command_count(ch, lba48);
		uint64_t lba = command_lba(ch, d, lba48);
		bool ok = lba != UINT64_MAX && lba <= d->sectors && count <= d->sectors - lba;
		ide_command_done(ch, ok ? 0 : ERR_IDNF | ERR_ABRT);
		break;
	}
	case 0xE7:
	case 0xEA:
		ch->xfer = XFER_FLUSH;
		if (ide_start_io(ch) < 0)
			ide_command_done(ch, ERR_ABRT);
		break;
	case 0xEC:
		identify_device(d, ch->buf);
		ide_start_identify(ch);
		break;
	case 0xEF:
		ide_set_features(ch, d);
		break;
	case 0xC6: /* SET MULTIPLE MODE: 0 disables, else a power of two up to the maximum */
		if (ch->nsect > IDE_MAX_MULTIPLE || (ch->nsect & (ch->nsect - 1))) {
			ide_command_done(ch, ERR_ABRT);
		} else {
			d->multiple = ch->nsect;
			ide_command_done(ch, 0);
		}
		break;
	case 0x91: /* INITIALIZE DEVICE PARAMETERS: the CHS translation to use */
		if (ch->nsect == 0) {
			ide_command_done(ch, ERR_ABRT);
		} else {
			d->cur_heads = (uint8_t)((ch->select & 0x0F) + 1);
			d->cur_spt = ch->nsect;
			ide_command_done(ch, 0);
		}
		break;
	case 0xF8:
	case 0x27:
		read_native_max(ch, d, lba48);
		break;
	case 0x70: /* SEEK */
		ide_command_done(ch, 0);
		break;
	default:
		if (cmd >= 0x10 && cmd <= 0x1F) { /* RECALIBRATE */
			ide_command_done(ch, 0);
			break;
		}
		/* NOP, PACKET, IDENTIFY PACKET DEVICE, DEVICE RESET and everything unknown */
		ide_command_done(ch, ERR_ABRT);
		break;
	}
}

/* ---- signature and reset ---- */

/* What a device's registers hold after a reset or EXECUTE DEVICE DIAGNOSTIC: the signature
 * (LBA mid/high 14h/EBh for a packet device), diagnostics passed, and DRDY for an ATA
 * device only (a packet device sets it once it executes a command). */
void ide_load_signature(struct ide_channel *ch, const struct ide_drive *d)
{
	bool packet = d->kind == IDE_DEVICE_CDROM;
	ch->nsect = 1;
	ch->lbal = 1;
	ch->lbam = packet ? 0x14 : 0;
	ch->lbah = packet ? 0xEB : 0;
	ch->error = 0x01;
	ch->status = d->kind == IDE_DEVICE_DISK ? ST_DRDY | ST_DSC : 0;
}

void ide_show_signature(struct ide_channel *ch, const struct ide_drive *d)
{
	ide_load_signature(ch, d);
	ch->select &= 0x10;
	ch->signature_shown = true;
}

static void reset_drive_settings(struct ide_drive *d)
{
	d->cur_heads = d->heads;
	d->cur_spt = d->spt;
	d->multiple = 0;
}

/* Cancels the command in progress: late completions are dropped, and the device stays busy
 * until the requests still in flight are gone (try_finish_reset). */
static void cancel_command(struct ide_channel *ch)
{
	ch->generation++;
	ch->xfer = XFER_NONE;
	ch->buf_pos = ch->buf_len = 0;
	ide_dma_reset(ch);
	ch->status = ST_BSY;
	ch->irq_pending = false;
	update_irq(ch);
	ch->reset_pending = true;
}

/* The end of a reset: once SRST is released and no request of the cancelled command is in
 * flight, the selected device shows its signature (no interrupt). */
static void try_finish_reset(struct ide_channel *ch)
{
	if (ch->io_pending || (ch->control & CTL_SRST))
		return;
	ch->reset_pending = false;
	ide_show_signature(ch, ide_current(ch));
}

/* Software reset (SRST) asserted: every command ends; late completions are dropped. */
static void channel_reset(struct ide_channel *ch)
{
	cancel_command(ch);
	for (unsigned i = 0; i < 2; i++) {
		if (ch->drive[i].kind == IDE_DEVICE_DISK)
			reset_drive_settings(&ch->drive[i]);
		else if (ch->drive[i].kind == IDE_DEVICE_CDROM)
			ide_atapi_reset(&ch->drive[i]);
	}
	ch->select = 0;
}

/* A platform reset (PCI RST#) of one channel: the devices and the bus master return to
 * their power-on state. Requests still in flight write guest memory, so the reset waits
 * for them: after it nothing of the old command touches RAM. Without it a command the
 * guest left behind (a DMA command whose bus master never started) would keep the channel
 * busy, and a BIOS waits for not-busy before it even tries a software reset. */
static void channel_power_on(struct ide_channel *ch)
{
	channel_reset(ch);
	for (unsigned i = 0; i < 2; i++) {
		struct ide_drive *d = &ch->drive[i];
		d->write_cache = true;
		d->transfer_mode = 0x08;
		if (d->kind == IDE_DEVICE_CDROM)
			scsi_cdrom_power_on(d->cdrom);
	}
	ch->control = 0;
	ch->feature = ch->hob_feature = ch->hob_nsect = ch->hob_lbal = 0;
	ch->hob_lbam = ch->hob_lbah = 0;
	ch->bm_cmd = ch->bm_status = 0;
	ch->prd_addr = 0;
	while (ch->io_pending)
		pthread_cond_wait(&ch->idle, &ch->lock);
	try_finish_reset(ch);
	update_irq(ch);
}

void ide_reset(struct ide_controller *c)
{
	for (unsigned i = 0; i < 2; i++) {
		struct ide_channel *ch = &c->channel[i];
		pthread_mutex_lock(&ch->lock);
		channel_power_on(ch);
		pthread_mutex_unlock(&ch->lock);
	}
}

/* DEVICE RESET: the packet device's own reset, accepted even while it is busy. */
static void device_reset(struct ide_channel *ch, struct ide_drive *d)
{
	cancel_command(ch);
	ide_atapi_reset(d);
	try_finish_reset(ch);
}

static void execute_diagnostic(struct ide_channel *ch)
{
	ide_show_signature(ch, ide_current(ch));
	ide_raise_irq(ch);
}

/* ---- register access ---- */

static bool channel_empty(const struct ide_channel *ch)
{
	return !ch->drive[0].kind && !ch->drive[1].kind;
}

static uint8_t read_status(struct ide_channel *ch)
{
	if (channel_empty(ch))
		return 0xFF; /* floating bus: no device answers */
	if (!ide_current(ch)->kind)
		return 0;
	return ch->status;
}

static uint32_t data_read(struct ide_channel *ch, unsigned size)
{
	if (ch->xfer == XFER_ATAPI_IN)
		return ide_atapi_data_read(ch, size);
	if (!(ch->status & ST_DRQ) || ch->xfer != XFER_PIO_IN || ch->buf_pos + size > ch->buf_len)
		return 0xFFFFFFFF;
	uint32_t v = 0;
	memcpy(&v, ch->buf + ch->buf_pos, size);
	ch->buf_pos += size;
	if (ch->buf_pos < ch->buf_len)
		return v;
	/* the block was read out */
	uint32_t n = ch->buf_len / IDE_SECTOR;
	if (ch->command == 0xEC || ch->command == 0xA1) { /* IDENTIFY (PACKET) DEVICE */
		ide_command_done(ch, 0);
		ch->irq_pending = false; /* no interrupt at the end of a PIO read */
		update_irq(ch);
		return v;
	}
	ch->lba += n;
	ch->remaining -= n;
	if (ch->remaining) {
		start_pio_in(ch);
	} else {
		ch->xfer = XFER_NONE;
		ch->status = ST_DRDY | ST_DSC;
	}
	return v;
}

static void data_write(struct ide_channel *ch, unsigned size, uint32_t v)
{
	if (ch->xfer == XFER_PACKET) {
		ide_atapi_data_write(ch, size, v);
		return;
	}
	if (!(ch->status & ST_DRQ) || ch->xfer != XFER_PIO_OUT || ch->buf_pos + size > ch->buf_len)
		return;
	memcpy(ch->buf + ch->buf_pos, &v, size);
	ch->buf_pos += size;
	if (ch->buf_pos < ch->buf_len)
		return;
	ch->pio_iov = (struct iovec){ ch->buf, ch->buf_len };
	ch->io_offset = ch->lba * IDE_SECTOR;
	if (ide_start_io(ch) < 0)
		ide_command_done(ch, ERR_ABRT);
}

static uint64_t command_read(void *opaque, uint64_t offset, unsigned size)
{
	struct ide_channel *ch = opaque;
	bool hob = ch->control & CTL_HOB;
	uint64_t v;
	pthread_mutex_lock(&ch->lock);
	if (offset == 0) {
		v = data_read(ch, size == 4 ? 4 : 2);
	} else if (channel_empty(ch)) {
		v = 0xFF;
	} else if (!ide_current(ch)->kind && offset != 6) {
		v = 0; /* an absent device next to a present one */
	} else {
		switch (offset) {
		case 1:
			v = hob ? ch->hob_feature : ch->error;
			break;
		case 2:
			v = hob ? ch->hob_nsect : ch->nsect;
			break;
		case 3:
			v = hob ? ch->hob_lbal : ch->lbal;
			break;
		case 4:
			v = hob ? ch->hob_lbam : ch->lbam;
			break;
		case 5:
			v = hob ? ch->hob_lbah : ch->lbah;
			break;
		case 6:
			v = ch->select | 0xA0;
			break;
		default: /* status: reading it acknowledges the interrupt */
			v = read_status(ch);
			ch->irq_pending = false;
			update_irq(ch);
			break;
		}
	}
	pthread_mutex_unlock(&ch->lock);
	return v;
}

static void write_taskfile(struct ide_channel *ch, uint64_t offset, uint8_t v)
{
	ch->control &= (uint8_t)~CTL_HOB; /* a register write clears HOB */
	if (offset != 6)
		ch->signature_shown = false; /* the write reached both devices */
	switch (offset) {
	case 1:
		ch->hob_feature = ch->feature;
		ch->feature = v;
		break;
	case 2:
		ch->hob_nsect = ch->nsect;
		ch->nsect = v;
		break;
	case 3:
		ch->hob_lbal = ch->lbal;
		ch->lbal = v;
		break;
	case 4:
		ch->hob_lbam = ch->lbam;
		ch->lbam = v;
		break;
	case 5:
		ch->hob_lbah = ch->lbah;
		ch->lbah = v;
		break;
	case 6: {
		bool other_unit = (ch->select ^ v) & 0x10;
		ch->select = v & 0x5F;
		if (other_unit && ch->signature_shown)
			ide_load_signature(ch, ide_current(ch));
		break;
	}
	}
}

/* Power management, the same for both kinds of device: always active. */
static bool power_command(struct ide_channel *ch, uint8_t cmd)
{
	switch (cmd) {
	case 0xE5:
	case 0x98: /* CHECK POWER MODE: active or idle */
		ch->nsect = 0xFF;
		ide_command_done(ch, 0);
		return true;
	case 0xE0:
	case 0xE1:
	case 0xE2:
	case 0xE3: /* standby/idle (immediate) */
	case 0x94:
	case 0x95:
	case 0x96:
	case 0x97:
		ide_command_done(ch, 0);
		return true;
	default:
		return false;
	}
}

/* A command register write to the selected device. */
static void start_command(struct ide_channel *ch, struct ide_drive *d, uint8_t cmd)
{
	if (ch->xfer != XFER_NONE) /* a new command ends the one in progress */
		ide_dma_reset(ch);
	ch->signature_shown = false;
	ch->irq_pending = false;
	update_irq(ch);
	ch->ctrl->stats.commands++;
	ch->command = cmd;
	if (cmd == 0x90)
		execute_diagnostic(ch);
	else if (power_command(ch, cmd))
		return;
	else if (cmd == 0x08 && d->kind == IDE_DEVICE_CDROM)
		device_reset(ch, d);
	else if (d->kind == IDE_DEVICE_CDROM)
		ide_atapi_command(ch, d, cmd);
	else
		ata_command(ch, d, cmd);
}

static void command_write(void *opaque, uint64_t offset, unsigned size, uint64_t value)
{
	struct ide_channel *ch = opaque;
	pthread_mutex_lock(&ch->lock);
	struct ide_drive *d = ide_current(ch);
	if (offset == 0) {
		data_write(ch, size == 4 ? 4 : 2, (uint32_t)value);
	} else if (ch->status & ST_BSY) {
		/* registers are not writable while busy; DEVICE RESET reaches a packet device */
		if (offset == 7 && (uint8_t)value == 0x08 && d->kind == IDE_DEVICE_CDROM &&
		    !(ch->control & CTL_SRST))
			device_reset(ch, d);
	} else if (offset < 7) {
		write_taskfile(ch, offset, (uint8_t)value);
	} else if (d->kind) {
		start_command(ch, d, (uint8_t)value);
	}
	pthread_mutex_unlock(&ch->lock);
}

static uint64_t control_read(void *opaque, uint64_t offset, unsigned size)
{
	(void)offset;
	(void)size;
	struct ide_channel *ch = opaque;
	pthread_mutex_lock(&ch->lock);
	uint8_t v = read_status(ch); /* alternate status: no acknowledgement */
	pthread_mutex_unlock(&ch->lock);
	return v;
}

static void control_write(void *opaque, uint64_t offset, unsigned size, uint64_t value)
{
	(void)offset;
	(void)size;
	struct ide_channel *ch = opaque;
	pthread_mutex_lock(&ch->lock);
	uint8_t old = ch->control;
	ch->control = (uint8_t)value;
	if ((value & CTL_SRST) && !(old & CTL_SRST))
		channel_reset(ch);
	else if (!(value & CTL_SRST) && (old & CTL_SRST))
		try_finish_reset(ch);
	update_irq(ch);
	pthread_mutex_unlock(&ch->lock);
}

const struct dev_ops ide_command_ops = { .read = command_read, .write = command_write };
const struct dev_ops ide_control_ops = { .read = control_read, .write = control_write };

/* ---- setup ---- */

int ide_create(const struct ide_config *cfg, struct ide_controller **out)
{
	struct ide_controller *c = calloc(1, sizeof(*c));
	if (!c)
		return -ENOMEM;
	c->cfg = *cfg;
	for (unsigned i = 0; i < 2; i++) {
		struct ide_channel *ch = &c->channel[i];
		ch->ctrl = c;
		ch->index = i;
		pthread_mutex_init(&ch->lock, NULL);
		pthread_cond_init(&ch->idle, NULL);
		ch->buf = vdisk_alloc_aligned(IDE_MAX_MULTIPLE * IDE_SECTOR);
		ch->dma_iov = calloc(IDE_PRD_MAX + 1, sizeof(*ch->dma_iov));
		ch->dma_parts = calloc(IDE_PRD_MAX / IDE_IOV_PER_REQ + 2, sizeof(*ch->dma_parts));
		if (!ch->buf || !ch->dma_iov || !ch->dma_parts) {
			ide_destroy(c);
			return -ENOMEM;
		}
		ide_show_signature(ch, &ch->drive[0]);
	}
	*out = c;
	return 0;
}

void ide_destroy(struct ide_controller *c)
{
	if (!c)
		return;
	for (unsigned i = 0; i < 2; i++) {
		for (unsigned unit = 0; unit < 2; unit++)
			scsi_cdrom_destroy(c->channel[i].drive[unit].cdrom);
		free(c->channel[i].buf);
		free(c->channel[i].dma_iov);
		free(c->channel[i].dma_parts);
		pthread_mutex_destroy(&c->channel[i].lock);
		pthread_cond_destroy(&c->channel[i].idle);
	}
	free(c);
}

/* The default CHS geometry: the VHD algorithm (what Hyper-V reports, and what a VHD
 * footer records). Past 31 GiB it answers 255 sectors per track, which ATA does not allow
 * (at most 63): there the ATA convention for disks too large for CHS, 16383/16/63, holds. */
static void default_geometry(struct ide_drive *d)
{
	vdisk_chs_geometry(d->sectors, &d->cylinders, &d->heads, &d->spt);
	if (d->spt > 63) {
		d->cylinders = 16383;
		d->heads = 16;
		d->spt = 63;
	}
	if (!d->cylinders)
		d->cylinders = 1;
}

int ide_attach_drive(struct ide_controller *c, unsigned channel, unsigned unit,
		     const struct ide_drive *init)
{
	if (channel > 1 || unit > 1)
		return -EINVAL;
	struct ide_channel *ch = &c->channel[channel];
	pthread_mutex_lock(&ch->lock);
	struct ide_drive *d = &ch->drive[unit];
	int ret = 0;
	if (d->kind) {
		ret = -EBUSY;
	} else {
		*d = *init;
		ide_show_signature(ch, ide_current(ch));
	}
	pthread_mutex_unlock(&ch->lock);
	return ret;
}

int ide_attach_disk(struct ide_controller *c, unsigned channel, unsigned unit, struct vdisk *disk)
{
	if (!disk || vdisk_size(disk) < IDE_SECTOR)
		return -EINVAL;
	struct ide_drive d = { .kind = IDE_DEVICE_DISK,
			       .disk = disk,
			       .sectors = vdisk_size(disk) / IDE_SECTOR,
			       .write_cache = true,
			       .transfer_mode = 0x08 };
	default_geometry(&d);
	reset_drive_settings(&d);
	snprintf(d.serial, sizeof(d.serial), "HV%u%u%016llx", channel, unit,
		 (unsigned long long)d.sectors);
	return ide_attach_drive(c, channel, unit, &d);
}

int ide_register_legacy(struct ide_controller *c, struct dev_bus *bus, uint16_t bm_base)
{
	static const uint16_t cmd_base[2] = { 0x1F0, 0x170 }, ctl_base[2] = { 0x3F6, 0x376 };
	static const char *const names[2] = { "ide0", "ide1" };
	int ret = 0;
	for (unsigned i = 0; i < 2 && ret == 0; i++) {
		ret = dev_bus_register(bus, DEV_PIO, cmd_base[i], 8, &ide_command_ops,
				       &c->channel[i], names[i]);
		if (ret == 0)
			ret = dev_bus_register(bus, DEV_PIO, ctl_base[i], 1, &ide_control_ops,
					       &c->channel[i], names[i]);
	}
	if (ret == 0)
		ret = dev_bus_register(bus, DEV_PIO, bm_base, 16, &ide_busmaster_ops, c,
				       "ide-busmaster");
	return ret;
}

int ide_query_device(struct ide_controller *c, unsigned channel, unsigned unit,
		     struct ide_device_info *out)
{
	if (channel > 1 || unit > 1)
		return -EINVAL;
	struct ide_channel *ch = &c->channel[channel];
	pthread_mutex_lock(&ch->lock);
	const struct ide_drive *d = &ch->drive[unit];
	*out = (struct ide_device_info){
		.kind = d->kind, .disk = d->disk, .inserted = d->disk != NULL, .stats = d->stats
	};
	if (d->kind == IDE_DEVICE_CDROM) {
		struct scsi_cdrom_state s;
		scsi_cdrom_get_state(d->cdrom, &s);
		out->disk = s.medium;
		out->inserted = s.medium != NULL;
		out->tray_open = s.tray_open;
		out->locked = s.locked;
		out->stats.reads = s.stats.reads;
		out->stats.read_bytes = s.stats.read_bytes;
	}
	pthread_mutex_unlock(&ch->lock);
	return 0;
}

void ide_get_stats(struct ide_controller *c, struct ide_stats *out)
{
	*out = c->stats;
}
