/* Bus-master DMA: the PIIX registers (command, status, PRD table address per channel) and
 * the transfer of a DMA command straight between guest memory and the disk.
 *
 * The PRD table is read from guest memory when the transfer starts: at most IDE_PRD_MAX
 * entries (a table may not cross 64 KiB), each a 32-bit address, a byte count (0 means
 * 64 KiB) and an end-of-table bit. Entries are translated to host iovecs with bounds
 * checks, so a table pointing outside guest RAM ends the command with an error instead of
 * touching host memory. A table shorter than the transfer is an error; a longer one leaves
 * the bus master active, as the hardware does.
 */
#include "ide_internal.h"

#include <errno.h>
#include <string.h>

#include "endian.h"
#include "iov.h"
#include "vdisk.h"

static bool packet_device(struct ide_channel *ch)
{
	return ide_current(ch)->kind == IDE_DEVICE_CDROM;
}

/* The transfer could not be set up (bad PRD table, direction): the device aborts and the
 * bus master reports the error. */
static void dma_fail(struct ide_channel *ch)
{
	ch->bm_status = (uint8_t)((ch->bm_status & ~BM_ST_ACTIVE) | BM_ST_ERROR);
	if (packet_device(ch))
		ide_atapi_dma_done(ch, -EFAULT);
	else
		ide_command_done(ch, ERR_ABRT);
}

/* Splits the iovecs into block-layer requests of at most IDE_IOV_PER_REQ iovecs. */
static void split_parts(struct ide_channel *ch, int iovcnt)
{
	uint64_t offset = ch->io_offset;
	ch->dma_nparts = 0;
	for (int first = 0; first < iovcnt; first += IDE_IOV_PER_REQ) {
		int n = iovcnt - first < IDE_IOV_PER_REQ ? iovcnt - first : IDE_IOV_PER_REQ;
		ch->dma_parts[ch->dma_nparts++] = (struct ide_dma_part){ first, n, offset };
		for (int i = first; i < first + n; i++)
			offset += ch->dma_iov[i].iov_len;
	}
}

/* Walks the PRD table for bytes bytes. Returns the iovec count or -1. */
static int map_prd_table(struct ide_channel *ch, uint64_t bytes)
{
	const struct guest_mem *mem = ch->ctrl->cfg.mem;
	uint64_t got = 0;
	int iovcnt = 0;
	for (unsigned i = 0; i < IDE_PRD_MAX; i++) {
		uint8_t prd[8];
		if (guest_mem_read(mem, (uint64_t)ch->prd_addr + 8u * i, prd, sizeof(prd)) < 0)
			return -1;
		uint32_t addr = load_le32(prd) & ~1u;
		uint32_t count = load_le16(prd + 4) & 0xFFFE;
		bool last = prd[7] & 0x80;
		if (!count)
			count = 65536;
		uint64_t take = bytes - got < count ? bytes - got : count;
		if (guest_mem_iov(mem, addr, take, ch->dma_iov, IDE_PRD_MAX + 1, &iovcnt) < 0)
			return -1;
		got += take;
		if (got == bytes) {
			ch->prd_longer = take < count || !last;
			return iovcnt;
		}
		if (last)
			return -1; /* the table ends before the transfer */
	}
	return -1;
}

static void dma_start(struct ide_channel *ch)
{
	ch->dma_waiting = false;
	bool to_memory = ch->xfer != XFER_DMA_OUT;
	if (!!(ch->bm_cmd & BM_CMD_TO_MEMORY) != to_memory) {
		dma_fail(ch);
		return;
	}
	int iovcnt = map_prd_table(ch, ch->io_bytes);
	if (iovcnt <= 0) {
		dma_fail(ch);
		return;
	}
	if (ch->xfer == XFER_DMA_BUF) { /* a reply the device built: no disk involved */
		iov_from_buf(ch->dma_iov, iovcnt, 0, ch->buf, ch->io_bytes);
		ide_dma_done(ch, 0);
		return;
	}
	if (packet_device(ch)) { /* a read of the DVD drive's medium, through its target */
		ide_atapi_dma_read(ch, iovcnt);
		return;
	}
	split_parts(ch, iovcnt);
	int ret = ide_start_io(ch);
	if (ret < 0)
		ide_dma_done(ch, ret);
}

void ide_dma_command(struct ide_channel *ch)
{
	ch->status = ST_BSY | ST_DRDY | ST_DSC;
	ch->dma_waiting = true;
	if (ch->bm_cmd & BM_CMD_START)
		dma_start(ch);
}

void ide_dma_done(struct ide_channel *ch, int result)
{
	if (result == 0)
		ch->ctrl->stats.dma_sectors += ch->io_bytes / IDE_SECTOR;
	if (result < 0 || !ch->prd_longer)
		ch->bm_status &= (uint8_t)~BM_ST_ACTIVE;
	if (packet_device(ch))
		ide_atapi_dma_done(ch, result);
	else
		ide_command_done(ch, result < 0 ? (ch->xfer == XFER_DMA_IN ? ERR_UNC : 0) | ERR_ABRT
						: 0);
}

void ide_dma_reset(struct ide_channel *ch)
{
	ch->dma_waiting = false;
}

/* ---- registers: 8 bytes per channel ---- */

static uint8_t bm_read_byte(struct ide_channel *ch, unsigned reg)
{
	switch (reg) {
	case 0:
		return ch->bm_cmd;
	case 2:
		return ch->bm_status;
	case 4:
	case 5:
	case 6:
	case 7:
		return (uint8_t)(ch->prd_addr >> (8 * (reg - 4)));
	default:
		return 0;
	}
}

static void bm_write_command(struct ide_channel *ch, uint8_t v)
{
	bool was_started = ch->bm_cmd & BM_CMD_START;
	/* the direction can change only while stopped */
	uint8_t dir = was_started ? ch->bm_cmd & BM_CMD_TO_MEMORY : v & BM_CMD_TO_MEMORY;
	ch->bm_cmd = (uint8_t)((v & BM_CMD_START) | dir);
	if (!(v & BM_CMD_START)) {
		/* stop: requests in flight still complete and report through the device */
		ch->bm_status &= (uint8_t)~BM_ST_ACTIVE;
		return;
	}
	if (!was_started) {
		ch->bm_status |= BM_ST_ACTIVE;
		if (ch->dma_waiting)
			dma_start(ch);
	}
}

static void bm_write_byte(struct ide_channel *ch, unsigned reg, uint8_t v)
{
	switch (reg) {
	case 0:
		bm_write_command(ch, v);
		break;
	case 2: /* error and interrupt are cleared by writing 1; capable bits are plain */
		ch->bm_status = (uint8_t)((ch->bm_status & BM_ST_ACTIVE) |
					  (ch->bm_status & ~v & (BM_ST_ERROR | BM_ST_INTERRUPT)) |
					  (v & BM_ST_CAPABLE));
		break;
	case 4:
	case 5:
	case 6:
	case 7: {
		unsigned shift = 8 * (reg - 4);
		uint32_t mask = 0xFFu << shift;
		ch->prd_addr = ((ch->prd_addr & ~mask) | ((uint32_t)v << shift)) & ~3u;
		break;
	}
	default:
		break;
	}
}

static uint64_t busmaster_read(void *opaque, uint64_t offset, unsigned size)
{
	struct ide_controller *c = opaque;
	uint64_t v = 0;
	for (unsigned i = 0; i < size; i++) {
		uint64_t off = offset + i;
		struct ide_channel *ch = &c->channel[(off >> 3) & 1];
		pthread_mutex_lock(&ch->lock);
		v |= (uint64_t)bm_read_byte(ch, off & 7) << (8 * i);
		pthread_mutex_unlock(&ch->lock);
	}
	return v;
}

static void busmaster_write(void *opaque, uint64_t offset, unsigned size, uint64_t value)
{
	struct ide_controller *c = opaque;
	/* the PRD address first when a wide write also starts the engine: bytes go high to
	 * low so that the command byte (offset 0) comes last */
	for (unsigned i = size; i-- > 0;) {
		uint64_t off = offset + i;
		struct ide_channel *ch = &c->channel[(off >> 3) & 1];
		pthread_mutex_lock(&ch->lock);
		bm_write_byte(ch, off & 7, (uint8_t)(value >> (8 * i)));
		pthread_mutex_unlock(&ch->lock);
	}
}

const struct dev_ops ide_busmaster_ops = { .read = busmaster_read, .write = busmaster_write };
