/* The ATAPI DVD-ROM drive: the PACKET protocol (ATA8-ACS) and the packet commands a BIOS
 * and an operating system send to a read-only drive (SPC-4, MMC-5).
 *
 * Protocol. PACKET (A0h) asks for the 12-byte command packet with DRQ and interrupt reason
 * CoD. The packet's data goes to the host either through the bus master (features bit 0)
 * or in PIO DRQ blocks: each block is announced in LBA mid/high (the byte count), with
 * interrupt reason IO and an interrupt, and is at most the byte count limit the host put
 * there; an odd limit is rounded down to even for every block but the last, and a limit
 * below 2 (or FFFFh) counts as FFFEh. The command ends with interrupt reason CoD|IO and an
 * interrupt; a CHECK CONDITION sets ERR and the sense key in the error register's high
 * nibble, and REQUEST SENSE returns the details.
 *
 * Sense. Every command but REQUEST SENSE replaces the sense data with its own (NO SENSE
 * when it succeeds). A pending UNIT ATTENTION (29h after a reset, 28h after a media
 * change) fails the next command, except INQUIRY, REQUEST SENSE, GET CONFIGURATION and GET
 * EVENT STATUS NOTIFICATION, and is then gone.
 *
 * Reads of the medium go through the block layer like ATA reads: PIO reads fill the
 * channel's buffer IDE_BUF_SIZE bytes at a time, DMA reads go straight to guest memory.
 */
#include "ide_internal.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "arith.h"
#include "endian.h"
#include "vdisk.h"

/* Sense keys (SPC-4) */
enum {
	SK_NO_SENSE = 0x0,
	SK_NOT_READY = 0x2,
	SK_MEDIUM_ERROR = 0x3,
	SK_ILLEGAL_REQUEST = 0x5,
	SK_UNIT_ATTENTION = 0x6,
	SK_ABORTED_COMMAND = 0xB,
};
/* Additional sense codes */
enum {
	ASC_UNRECOVERED_READ_ERROR = 0x11,
	ASC_INVALID_OPCODE = 0x20,
	ASC_LBA_OUT_OF_RANGE = 0x21,
	ASC_INVALID_FIELD_IN_CDB = 0x24,
	ASC_MEDIUM_MAY_HAVE_CHANGED = 0x28,
	ASC_RESET_OCCURRED = 0x29,
	ASC_SAVING_NOT_SUPPORTED = 0x39,
	ASC_MEDIUM_NOT_PRESENT = 0x3A,
	ASC_MEDIUM_REMOVAL_PREVENTED = 0x53,
};
/* Interrupt reason, in the sector count register */
enum {
	IR_COD = 0x01,
	IR_IO = 0x02,
};
/* GET EVENT STATUS NOTIFICATION, media class event codes */
enum {
	MEDIA_NO_CHANGE = 0,
	MEDIA_NEW = 2,
	MEDIA_REMOVAL = 3,
};
/* MMC profiles */
enum {
	PROFILE_NONE = 0x0000,
	PROFILE_CD_ROM = 0x0008,
	PROFILE_DVD_ROM = 0x0010,
};

#define CD_MAX_SECTORS (80u * 60 * 75) /* an 80-minute CD; a larger medium is a DVD */
#define MSF_LEAD_IN    150u	       /* LBA 0 is at 00:02:00 */
#define TOC_CONTROL    0x14	       /* ADR 1 (Q: position), control 4 (data track) */

/* A handler's result: the length of the reply in the buffer (0: none), or one of these. */
#define CHECK_CONDITION	 (-1)
#define TRANSFER_STARTED (-2) /* a read of the medium is under way */

struct packet {
	struct ide_channel *ch;
	struct ide_drive *d;
	const uint8_t *cdb;
	uint8_t *out; /* IDE_BUF_SIZE bytes, zeroed */
};

/* ---- sense and command endings ---- */

static int fail(struct ide_drive *d, uint8_t key, uint8_t asc, uint8_t ascq)
{
	d->atapi.sense_key = key;
	d->atapi.asc = asc;
	d->atapi.ascq = ascq;
	return CHECK_CONDITION;
}

static int invalid_field(struct ide_drive *d)
{
	return fail(d, SK_ILLEGAL_REQUEST, ASC_INVALID_FIELD_IN_CDB, 0);
}

static bool medium_ready(const struct ide_drive *d)
{
	return d->disk && !d->atapi.tray_open;
}

static int not_ready(struct ide_drive *d)
{
	/* ASCQ 01h: tray closed, 02h: tray open */
	return fail(d, SK_NOT_READY, ASC_MEDIUM_NOT_PRESENT, d->atapi.tray_open ? 2 : 1);
}

static void media_changed(struct ide_drive *d, uint8_t event)
{
	d->atapi.media_event = event;
	if (d->atapi.ua_asc != ASC_RESET_OCCURRED) /* the higher priority one stays */
		d->atapi.ua_asc = ASC_MEDIUM_MAY_HAVE_CHANGED;
}

static void packet_good(struct ide_channel *ch)
{
	ch->nsect = IR_COD | IR_IO;
	ide_command_done(ch, 0);
}

static void packet_check(struct ide_channel *ch, const struct ide_drive *d)
{
	ch->nsect = IR_COD | IR_IO;
	ide_command_done(ch, (uint8_t)(d->atapi.sense_key << 4));
}

/* A reply of len bytes, of which the host allowed alloc. */
static int reply(uint32_t len, uint32_t alloc)
{
	return (int)min_u64(len, alloc);
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

/* A medium read ended with an error: NOT READY when the medium went away, else a read
 * error. */
static void medium_failed(struct ide_channel *ch, int result)
{
	struct ide_drive *d = ide_current(ch);
	if (result == -ENOMEDIUM)
		not_ready(d);
	else
		fail(d, SK_MEDIUM_ERROR, ASC_UNRECOVERED_READ_ERROR, 0);
	packet_check(ch, d);
}

/* Reads the next part of the transfer from the medium into the buffer. */
static void refill(struct ide_channel *ch)
{
	uint32_t chunk = (uint32_t)min_u64(ch->atapi_left, IDE_BUF_SIZE);
	ch->buf_pos = ch->drq_end = 0;
	ch->buf_len = chunk;
	ch->pio_iov = (struct iovec){ ch->buf, chunk };
	ch->io_offset = ch->lba * CD_SECTOR;
	ch->lba += chunk / CD_SECTOR;
	ch->atapi_left -= chunk;
	int ret = ide_start_io(ch);
	if (ret < 0)
		medium_failed(ch, ret);
}

void ide_atapi_pio_io_done(struct ide_channel *ch, int result)
{
	if (result < 0) {
		medium_failed(ch, result);
		return;
	}
	ch->ctrl->stats.pio_sectors += ch->buf_len / IDE_SECTOR;
	next_drq_block(ch);
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

/* ---- the packet commands ---- */

static int test_unit_ready(struct packet *p)
{
	(void)p;
	return 0; /* the medium check came before */
}

static int request_sense(struct packet *p)
{
	struct ide_atapi *a = &p->d->atapi;
	if (p->cdb[1] & 1) /* descriptor format */
		return invalid_field(p->d);
	if (a->ua_asc) {
		fail(p->d, SK_UNIT_ATTENTION, a->ua_asc, 0);
		a->ua_asc = 0;
	}
	p->out[0] = 0x70; /* current error, fixed format */
	p->out[2] = a->sense_key;
	p->out[7] = 10; /* additional length */
	p->out[12] = a->asc;
	p->out[13] = a->ascq;
	fail(p->d, SK_NO_SENSE, 0, 0);
	return reply(18, p->cdb[4]);
}

/* An SPC string field: left aligned, space padded, not terminated. */
static void put_field(uint8_t *out, size_t len, const char *s)
{
	size_t n = strlen(s);
	memset(out, ' ', len);
	memcpy(out, s, n < len ? n : len);
}

static int inquiry_vpd(struct packet *p, uint32_t alloc)
{
	uint8_t *out = p->out;
	out[0] = 0x05;
	out[1] = p->cdb[2];
	switch (p->cdb[2]) {
	case 0x00: /* supported pages */
		out[3] = 2;
		out[4] = 0x00;
		out[5] = 0x80;
		return reply(6, alloc);
	case 0x80: /* unit serial number */
		out[3] = 20;
		put_field(out + 4, 20, p->d->serial);
		return reply(24, alloc);
	default:
		return invalid_field(p->d);
	}
}

static int inquiry(struct packet *p)
{
	uint32_t alloc = load_be16(p->cdb + 3);
	if (p->cdb[1] & 1)
		return inquiry_vpd(p, alloc);
	if (p->cdb[2])
		return invalid_field(p->d);
	uint8_t *out = p->out;
	out[0] = 0x05; /* MMC device */
	out[1] = 0x80; /* removable */
	out[2] = 0x05; /* SPC-3 */
	out[3] = 0x02; /* response data format */
	out[4] = 36 - 5;
	put_field(out + 8, 8, "hvstack");
	put_field(out + 16, 16, "Virtual DVD-ROM");
	put_field(out + 32, 4, "1.0");
	return reply(36, alloc);
}

static int read_capacity(struct packet *p)
{
	store_be32(p->out, (uint32_t)min_u64(p->d->sectors - 1, UINT32_MAX));
	store_be32(p->out + 4, CD_SECTOR);
	return 8;
}

static int read_medium(struct packet *p, uint64_t lba, uint64_t count)
{
	struct ide_channel *ch = p->ch;
	if (lba >= p->d->sectors || count > p->d->sectors - lba)
		return fail(p->d, SK_ILLEGAL_REQUEST, ASC_LBA_OUT_OF_RANGE, 0);
	if (!count)
		return 0;
	ch->lba = lba;
	if (ch->packet_dma) {
		ch->xfer = XFER_DMA_IN;
		ch->io_offset = lba * CD_SECTOR;
		ch->io_bytes = count * CD_SECTOR;
		ide_dma_command(ch);
	} else {
		ch->xfer = XFER_ATAPI_IN;
		ch->atapi_left = count * CD_SECTOR;
		refill(ch);
	}
	return TRANSFER_STARTED;
}

static int read10(struct packet *p)
{
	return read_medium(p, load_be32(p->cdb + 2), load_be16(p->cdb + 7));
}

static int read12(struct packet *p)
{
	return read_medium(p, load_be32(p->cdb + 2), load_be32(p->cdb + 6));
}

static bool is_dvd(const struct ide_drive *d)
{
	return d->sectors > CD_MAX_SECTORS;
}

/* MSF of an LBA; past the 255 minutes MSF can say (a DVD) it stays at its largest. */
static void put_msf(uint8_t *out, uint64_t lba)
{
	uint64_t f = lba + MSF_LEAD_IN;
	if (f >= 256u * 60 * 75)
		f = 256u * 60 * 75 - 1;
	out[0] = 0;
	out[1] = (uint8_t)(f / (60 * 75));
	out[2] = (uint8_t)(f / 75 % 60);
	out[3] = (uint8_t)(f % 75);
}

static void put_address(uint8_t *out, uint64_t lba, bool msf)
{
	if (msf)
		put_msf(out, lba);
	else
		store_be32(out, (uint32_t)lba);
}

/* A TOC track descriptor (8 bytes). */
static void put_toc_track(uint8_t *out, uint8_t track, uint64_t lba, bool msf)
{
	out[1] = TOC_CONTROL;
	out[2] = track;
	put_address(out + 4, lba, msf);
}

/* One data track from LBA 0, one session, the lead-out after the last sector. */
static int read_toc(struct packet *p)
{
	const uint8_t *cdb = p->cdb;
	bool msf = cdb[1] & 2;
	uint8_t format = cdb[2] & 0x0F, track = cdb[6];
	if (!format)
		format = cdb[9] >> 6; /* where SFF-8020 drives took it */
	uint8_t *out = p->out;
	uint32_t len = 4;
	out[2] = 1; /* first track or session */
	out[3] = 1; /* last */
	switch (format) {
	case 0:
		if (track > 1 && track != 0xAA)
			return invalid_field(p->d);
		if (track <= 1) {
			put_toc_track(out + len, 1, 0, msf);
			len += 8;
		}
		put_toc_track(out + len, 0xAA, p->d->sectors, msf);
		len += 8;
		break;
	case 1: /* multi-session information: the first track of the last session */
		put_toc_track(out + len, 1, 0, msf);
		len += 8;
		break;
	default:
		return invalid_field(p->d);
	}
	store_be16(out, (uint16_t)(len - 2));
	return reply(len, load_be16(cdb + 7));
}

static int read_disc_information(struct packet *p)
{
	if (p->cdb[1] & 7) /* only standard disc information */
		return invalid_field(p->d);
	uint8_t *out = p->out;
	store_be16(out, 34 - 2);
	out[2] = 0x0E;			  /* last session complete, disc finalized */
	out[3] = 1;			  /* first track */
	out[4] = 1;			  /* sessions */
	out[5] = 1;			  /* first track of the last session */
	out[6] = 1;			  /* last track of the last session */
	out[7] = 0x20;			  /* unrestricted use */
	store_be32(out + 16, UINT32_MAX); /* no next session to write */
	store_be32(out + 20, UINT32_MAX);
	return reply(34, load_be16(p->cdb + 7));
}

static int read_track_information(struct packet *p)
{
	uint32_t address = load_be32(p->cdb + 2);
	bool ok;
	switch (p->cdb[1] & 3) {
	case 0: /* an LBA in the track */
		ok = address < p->d->sectors;
		break;
	case 1: /* a track number */
	case 2: /* a session number */
		ok = address == 1;
		break;
	default:
		ok = false;
		break;
	}
	if (!ok)
		return invalid_field(p->d);
	uint8_t *out = p->out;
	store_be16(out, 36 - 2);
	out[2] = 1;					   /* track */
	out[3] = 1;					   /* session */
	out[5] = 0x04;					   /* track mode: data, uninterrupted */
	out[6] = 0x01;					   /* data mode 1 */
	store_be32(out + 24, (uint32_t)p->d->sectors);	   /* track size */
	store_be32(out + 28, (uint32_t)p->d->sectors - 1); /* last recorded address */
	return reply(36, load_be16(p->cdb + 7));
}

static int read_subchannel(struct packet *p)
{
	const uint8_t *cdb = p->cdb;
	uint8_t *out = p->out;
	uint32_t len = 4;
	out[1] = 0x15;	     /* no current audio status */
	if (cdb[2] & 0x40) { /* SubQ: the data of the format */
		switch (cdb[3]) {
		case 1: /* current position: the start of the data track */
			out[4] = 1;
			out[5] = TOC_CONTROL;
			out[6] = 1;
			out[7] = 1;
			put_address(out + 8, 0, cdb[1] & 2);
			len = 16;
			break;
		case 2: /* media catalog number: none (MCval 0) */
			out[4] = 2;
			len = 24;
			break;
		default:
			return invalid_field(p->d);
		}
	}
	store_be16(out + 2, (uint16_t)(len - 4));
	return reply(len, load_be16(cdb + 7));
}

/* ---- GET CONFIGURATION ---- */

struct features {
	uint8_t *out;
	uint32_t len;
	uint8_t rt;
	uint16_t start;
	uint8_t scratch[64]; /* where a feature the request leaves out is built */
};

/* Appends a feature header when the request wants the feature; returns where its len
 * bytes of data go. */
static uint8_t *add_feature(struct features *f, uint16_t code, uint8_t version, bool current,
			    uint8_t len)
{
	bool wanted = f->rt == 2 ? code == f->start : code >= f->start && (current || !f->rt);
	if (!wanted)
		return memset(f->scratch, 0, sizeof(f->scratch));
	uint8_t *h = f->out + f->len;
	store_be16(h, code);
	/* version, persistent (all but the medium's), current */
	h[2] = (uint8_t)(version << 2 | (code < 0x10 ? 2 : 0) | current);
	h[3] = len;
	f->len += 4u + len;
	return h + 4;
}

static int get_configuration(struct packet *p)
{
	const uint8_t *cdb = p->cdb;
	if ((cdb[1] & 3) == 3)
		return invalid_field(p->d);
	struct features f = {
		.out = p->out, .len = 8, .rt = cdb[1] & 3, .start = load_be16(cdb + 2)
	};
	bool medium = medium_ready(p->d), dvd = medium && is_dvd(p->d), cd = medium && !dvd;
	uint16_t profile = dvd ? PROFILE_DVD_ROM : cd ? PROFILE_CD_ROM : PROFILE_NONE;

	uint8_t *x = add_feature(&f, 0x0000, 0, true, 8); /* profile list */
	store_be16(x, PROFILE_DVD_ROM);
	x[2] = dvd;
	store_be16(x + 4, PROFILE_CD_ROM);
	x[6] = cd;
	x = add_feature(&f, 0x0001, 2, true, 8);   /* core */
	store_be32(x, 2);			   /* physical interface: ATAPI */
	x = add_feature(&f, 0x0002, 1, true, 4);   /* morphing: polled events only */
	x = add_feature(&f, 0x0003, 0, true, 4);   /* removable medium */
	x[0] = 1 << 5 | 0x08 | 0x01;		   /* tray, eject, lock */
	x = add_feature(&f, 0x0010, 0, medium, 8); /* random readable */
	store_be32(x, CD_SECTOR);
	store_be16(x + 4, dvd ? 16 : 1);    /* blocking */
	x[6] = 1;			    /* the error recovery page is there */
	add_feature(&f, 0x001E, 2, cd, 4);  /* CD read */
	add_feature(&f, 0x001F, 1, dvd, 4); /* DVD read */

	store_be32(p->out, f.len - 4);
	store_be16(p->out + 6, profile);
	return reply(f.len, load_be16(cdb + 7));
}

/* ---- MODE SENSE ---- */

/* The mode page(s) page (3Fh: all) at out, zeroed values for the changeable ones; returns
 * their length, 0 for a page the drive does not have. */
static uint32_t put_mode_pages(const struct ide_drive *d, uint8_t page, bool changeable,
			       uint8_t *out)
{
	uint32_t len = 0;
	if (page == 0x01 || page == 0x3F) { /* read error recovery */
		out[0] = 0x01;
		out[1] = 0x0A;
		if (!changeable)
			out[3] = 5; /* read retry count */
		len += 12;
	}
	if (page == 0x2A || page == 0x3F) { /* capabilities and mechanical status */
		uint8_t *c = out + len;
		c[0] = 0x2A;
		c[1] = 0x12;
		if (!changeable) {
			c[2] = 0x0B; /* reads CD-R, CD-RW, DVD-ROM */
			c[4] = 0x70; /* mode 2 form 1 and 2, multi-session */
			c[6] = 0x29 | (d->atapi.locked ? 0x02 : 0); /* tray, eject, lock */
			store_be16(c + 8, 11080);		    /* 8x DVD, kB/s */
			store_be16(c + 12, 512);		    /* buffer, KiB */
			store_be16(c + 14, 11080);
		}
		len += 20;
	}
	return len;
}

/* MODE SENSE(6) and (10): header_len 4 or 8, no block descriptors. */
static int mode_sense(struct packet *p, uint32_t header_len, uint32_t alloc)
{
	uint8_t pc = p->cdb[2] >> 6, page = p->cdb[2] & 0x3F;
	if (pc == 3)
		return fail(p->d, SK_ILLEGAL_REQUEST, ASC_SAVING_NOT_SUPPORTED, 0);
	if (p->cdb[3]) /* subpages */
		return invalid_field(p->d);
	uint32_t len = put_mode_pages(p->d, page, pc == 1, p->out + header_len);
	if (!len)
		return invalid_field(p->d);
	len += header_len;
	if (header_len == 4)
		p->out[0] = (uint8_t)(len - 1);
	else
		store_be16(p->out, (uint16_t)(len - 2));
	return reply(len, alloc);
}

static int mode_sense6(struct packet *p)
{
	return mode_sense(p, 4, p->cdb[4]);
}

static int mode_sense10(struct packet *p)
{
	return mode_sense(p, 8, load_be16(p->cdb + 7));
}

/* ---- events and the tray ---- */

static int get_event_status(struct packet *p)
{
	const uint8_t *cdb = p->cdb;
	struct ide_atapi *a = &p->d->atapi;
	if (!(cdb[1] & 1)) /* asynchronous notification: not supported */
		return invalid_field(p->d);
	uint8_t *out = p->out;
	out[3] = 1 << 4; /* supported classes: media */
	if (!(cdb[4] & (1 << 4))) {
		out[2] = 0x80; /* no event available of the classes asked */
		store_be16(out, 2);
		return reply(4, load_be16(cdb + 7));
	}
	store_be16(out, 6);
	out[2] = 4; /* media class */
	out[4] = a->media_event;
	out[5] = (medium_ready(p->d) ? 2 : 0) | (a->tray_open ? 1 : 0);
	a->media_event = MEDIA_NO_CHANGE;
	return reply(8, load_be16(cdb + 7));
}

static int prevent_allow(struct packet *p)
{
	p->d->atapi.locked = p->cdb[4] & 1;
	return 0;
}

static int start_stop_unit(struct packet *p)
{
	struct ide_drive *d = p->d;
	uint8_t flags = p->cdb[4];
	if (flags >> 4 || !(flags & 2)) /* a power condition, or spin up/down: nothing to do */
		return 0;
	if (flags & 1) { /* load */
		if (d->atapi.tray_open && d->disk)
			d->atapi.media_event = MEDIA_NEW;
		d->atapi.tray_open = false;
		return 0;
	}
	if (d->atapi.locked)
		return fail(d, SK_ILLEGAL_REQUEST, ASC_MEDIUM_REMOVAL_PREVENTED, 2);
	if (!d->atapi.tray_open && d->disk)
		d->atapi.media_event = MEDIA_REMOVAL;
	d->atapi.tray_open = true;
	return 0;
}

static int mechanism_status(struct packet *p)
{
	p->out[1] = p->d->atapi.tray_open ? 0x10 : 0;
	return reply(8, load_be16(p->cdb + 8));
}

static int set_cd_speed(struct packet *p)
{
	(void)p;
	return 0;
}

enum {
	NEEDS_MEDIUM = 1 << 0,
	ALLOWS_UNIT_ATTENTION = 1 << 1,
};

static const struct packet_op {
	uint8_t opcode, flags;
	int (*run)(struct packet *p);
} packet_ops[] = {
	{ 0x00, NEEDS_MEDIUM, test_unit_ready },
	{ 0x03, ALLOWS_UNIT_ATTENTION, request_sense },
	{ 0x12, ALLOWS_UNIT_ATTENTION, inquiry },
	{ 0x1A, 0, mode_sense6 },
	{ 0x1B, 0, start_stop_unit },
	{ 0x1E, 0, prevent_allow },
	{ 0x25, NEEDS_MEDIUM, read_capacity },
	{ 0x28, NEEDS_MEDIUM, read10 },
	{ 0x42, NEEDS_MEDIUM, read_subchannel },
	{ 0x43, NEEDS_MEDIUM, read_toc },
	{ 0x46, ALLOWS_UNIT_ATTENTION, get_configuration },
	{ 0x4A, ALLOWS_UNIT_ATTENTION, get_event_status },
	{ 0x51, NEEDS_MEDIUM, read_disc_information },
	{ 0x52, NEEDS_MEDIUM, read_track_information },
	{ 0x5A, 0, mode_sense10 },
	{ 0xA8, NEEDS_MEDIUM, read12 },
	{ 0xBB, 0, set_cd_speed },
	{ 0xBD, 0, mechanism_status },
};

static const struct packet_op *find_op(uint8_t opcode)
{
	for (size_t i = 0; i < sizeof(packet_ops) / sizeof(packet_ops[0]); i++)
		if (packet_ops[i].opcode == opcode)
			return &packet_ops[i];
	return NULL;
}

static int run_packet(struct packet *p)
{
	struct ide_atapi *a = &p->d->atapi;
	const struct packet_op *op = find_op(p->cdb[0]);
	if (!op)
		return fail(p->d, SK_ILLEGAL_REQUEST, ASC_INVALID_OPCODE, 0);
	if (a->ua_asc && !(op->flags & ALLOWS_UNIT_ATTENTION)) {
		uint8_t asc = a->ua_asc;
		a->ua_asc = 0;
		return fail(p->d, SK_UNIT_ATTENTION, asc, 0);
	}
	if ((op->flags & NEEDS_MEDIUM) && !medium_ready(p->d))
		return not_ready(p->d);
	if (op->run != request_sense)
		fail(p->d, SK_NO_SENSE, 0, 0);
	return op->run(p);
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
	uint8_t cdb[ATAPI_CDB_SIZE];
	memcpy(cdb, ch->buf, sizeof(cdb)); /* the reply is built where the packet came in */
	memset(ch->buf, 0, IDE_BUF_SIZE);
	ch->xfer = XFER_NONE;
	ch->buf_pos = ch->buf_len = 0;
	struct packet p = { .ch = ch, .d = d, .cdb = cdb, .out = ch->buf };
	int r = run_packet(&p);
	if (r == CHECK_CONDITION)
		packet_check(ch, d);
	else if (r != TRANSFER_STARTED)
		send_reply(ch, (uint32_t)r);
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
	struct ide_drive *d = ide_current(ch);
	if (result == 0) {
		packet_good(ch);
		return;
	}
	if (result == -EFAULT) { /* the bus master could not use the PRD table */
		fail(d, SK_ABORTED_COMMAND, 0, 0);
		packet_check(ch, d);
		return;
	}
	medium_failed(ch, result);
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
	d->atapi.ua_asc = ASC_RESET_OCCURRED;
	fail(d, SK_NO_SENSE, 0, 0);
}

/* ---- the host side ---- */

static int cdrom_sectors(struct vdisk *iso, uint64_t *sectors)
{
	uint64_t n = iso ? vdisk_size(iso) / CD_SECTOR : 0;
	if (iso && !n)
		return -EINVAL;
	*sectors = n;
	return 0;
}

int ide_attach_cdrom(struct ide_controller *c, unsigned channel, unsigned unit, struct vdisk *iso)
{
	struct ide_drive d = { .kind = IDE_DEVICE_CDROM, .disk = iso, .transfer_mode = 0x08 };
	if (cdrom_sectors(iso, &d.sectors) < 0)
		return -EINVAL;
	d.atapi.ua_asc = ASC_RESET_OCCURRED; /* power on */
	snprintf(d.serial, sizeof(d.serial), "HV%u%uDVD", channel, unit);
	return ide_attach_drive(c, channel, unit, &d);
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
	if (ret == 0 && d->atapi.locked && !force)
		ret = -EBUSY;
	else if (ret == 0 && ch->io_pending)
		ret = -EAGAIN; /* the requests in flight use the medium */
	if (ret == 0) {
		if (d->disk)
			media_changed(d, MEDIA_REMOVAL);
		d->disk = NULL;
		d->sectors = 0;
		d->atapi.tray_open = true;
	}
	pthread_mutex_unlock(&ch->lock);
	return ret;
}

int ide_cdrom_insert(struct ide_controller *c, unsigned channel, unsigned unit, struct vdisk *iso)
{
	uint64_t sectors;
	if (!iso || cdrom_sectors(iso, &sectors) < 0)
		return -EINVAL;
	struct ide_drive *d;
	int ret;
	struct ide_channel *ch = lock_cdrom(c, channel, unit, &d, &ret);
	if (!ch)
		return ret;
	if (ret == 0 && d->disk)
		ret = -EBUSY;
	if (ret == 0) {
		d->disk = iso;
		d->sectors = sectors;
		d->atapi.tray_open = false;
		media_changed(d, MEDIA_NEW);
	}
	pthread_mutex_unlock(&ch->lock);
	return ret;
}
