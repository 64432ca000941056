/* The SCSI DVD-ROM target (SPC-4, MMC-5) on the async block layer. See scsi_cdrom.h.
 *
 * One lock guards the drive's state (medium, tray, lock, unit attentions, media event,
 * kept sense, counters); commands run under it, which is short: replies are built on the
 * stack and reads are only submitted (their callbacks run from the queue's poll, never
 * from inside a submission). A read records the medium's generation when it is accepted;
 * a piece that finds another generation ends the read instead of reading a new medium.
 */
#include "scsi_cdrom.h"

#include <errno.h>
#include <limits.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "arith.h"
#include "endian.h"
#include "iov.h"
#include "scsi_internal.h"
#include "vdisk.h"

/* MMC opcodes served here besides the SPC ones in scsi_internal.h */
enum {
	OP_READ_SUBCHANNEL = 0x42,
	OP_READ_TOC = 0x43,
	OP_GET_CONFIGURATION = 0x46,
	OP_GET_EVENT_STATUS_NOTIFICATION = 0x4A,
	OP_READ_DISC_INFORMATION = 0x51,
	OP_READ_TRACK_INFORMATION = 0x52,
	OP_SET_CD_SPEED = 0xBB,
	OP_MECHANISM_STATUS = 0xBD,
};

/* Pending unit attentions, in the order they are reported. */
enum {
	UA_RESET = 1 << 0,
	UA_MEDIUM = 1 << 1,
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

#define CD_MAX_SECTORS (80u * 60 * 75)	/* an 80-minute CD; a larger medium is a DVD */
#define MSF_LEAD_IN    150u		/* LBA 0 is at 00:02:00 */
#define MSF_FRAMES     (256u * 60 * 75) /* what an MSF address can hold */
#define TOC_CONTROL    0x14		/* ADR 1 (Q: position), control 4 (data track) */
#define REPLY_MAX      128		/* the longest reply built here (GET CONFIGURATION: 76) */
#define CMD_READ_OPEN  2		/* scsi_cdrom_start accepted a read: pieces follow */
#define MODE_PC_SAVED  3
#define MODE_PAGE_ALL  0x3F
#define DVD_SPEED_KBS  11080 /* 8x DVD */

struct scsi_cdrom {
	struct scsi_cdrom_config cfg;
	pthread_mutex_t lock;
	struct vdisk *medium; /* NULL: none */
	uint64_t sectors;     /* of the medium */
	uint32_t generation;  /* moves with every change of medium */
	bool tray_open;
	bool locked; /* PREVENT ALLOW MEDIUM REMOVAL */
	unsigned ua; /* UA_* bits */
	uint8_t media_event;
	uint8_t sense[SCSI_SENSE_LEN]; /* of the last command, for REQUEST SENSE */
	unsigned reads_in_flight;
	struct scsi_cdrom_stats stats;
};

/* ---- state ---- */

static bool medium_ready(const struct scsi_cdrom *cd)
{
	return cd->medium && !cd->tray_open;
}

static bool is_dvd(const struct scsi_cdrom *cd)
{
	return cd->sectors > CD_MAX_SECTORS;
}

static int not_ready(const struct scsi_cdrom *cd, struct scsi_request *req)
{
	return scsi_check(req, SK_NOT_READY,
			  cd->tray_open ? ASC_MEDIUM_NOT_PRESENT_TRAY_OPEN
					: ASC_MEDIUM_NOT_PRESENT_TRAY_CLOSED);
}

/* Takes the pending unit attention to report, or returns ASC_NO_ADDITIONAL_SENSE. */
static uint16_t take_unit_attention(struct scsi_cdrom *cd)
{
	if (cd->ua & UA_RESET) {
		cd->ua &= ~(unsigned)UA_RESET;
		return ASC_RESET_OCCURRED;
	}
	if (cd->ua & UA_MEDIUM) {
		cd->ua &= ~(unsigned)UA_MEDIUM;
		return ASC_MEDIUM_MAY_HAVE_CHANGED;
	}
	return ASC_NO_ADDITIONAL_SENSE;
}

/* A command ran into a change of medium it started before: it reports the change, whose
 * unit attention is then gone. */
static int medium_changed_attention(struct scsi_cdrom *cd, struct scsi_request *req)
{
	cd->ua &= ~(unsigned)UA_MEDIUM;
	return scsi_check(req, SK_UNIT_ATTENTION, ASC_MEDIUM_MAY_HAVE_CHANGED);
}

static void media_changed(struct scsi_cdrom *cd, uint8_t event)
{
	cd->media_event = event;
	cd->ua |= UA_MEDIUM;
	cd->generation++;
}

/* Keeps the outcome of a finished command for REQUEST SENSE. */
static void keep_sense(struct scsi_cdrom *cd, const struct scsi_request *req)
{
	if (req->status == SCSI_STATUS_CHECK_CONDITION)
		memcpy(cd->sense, req->sense, SCSI_SENSE_LEN);
	else
		scsi_sense_fixed(cd->sense, SK_NO_SENSE, ASC_NO_ADDITIONAL_SENSE);
}

static void finish(struct scsi_request *req)
{
	scsi_ctx_release(&req->ctx);
	req->done(req);
}

/* ---- reading the medium ---- */

/* A block layer error as a status: out of memory is BUSY (the initiator retries), a
 * medium that went away NOT READY, anything else a read error. */
static int read_failed(struct scsi_cdrom *cd, struct scsi_request *req, int err)
{
	if (err == -ENOMEM || err == -EAGAIN)
		return scsi_busy(req);
	req->transferred = 0;
	if (err == -ENOMEDIUM)
		return not_ready(cd, req);
	return scsi_check(req, SK_MEDIUM_ERROR, ASC_UNRECOVERED_READ_ERROR);
}

static void read_done(void *opaque, int result)
{
	struct scsi_request *req = opaque;
	struct scsi_request_ctx *c = &req->ctx;
	struct scsi_cdrom *cd = c->cdrom;
	pthread_mutex_lock(&cd->lock);
	if (result < 0 && !c->error)
		c->error = result;
	if (--c->pending) {
		pthread_mutex_unlock(&cd->lock);
		return;
	}
	cd->reads_in_flight--;
	if (c->error) {
		read_failed(cd, req, c->error);
	} else {
		req->transferred = c->length;
		scsi_good(req);
	}
	keep_sense(cd, req);
	pthread_mutex_unlock(&cd->lock);
	finish(req);
}

/* Whether q is a queue of the medium that is in. */
static bool queue_of_medium(struct scsi_cdrom *cd, struct vdisk_queue *q)
{
	for (unsigned i = 0; q && i < vdisk_queue_count(cd->medium); i++)
		if (vdisk_queue(cd->medium, i) == q)
			return true;
	return false;
}

/* Reads len bytes at byte pos of the medium into the first len bytes of the request's
 * buffers, in block layer requests of at most IOV_MAX iovecs. */
static int submit_read(struct scsi_cdrom *cd, struct scsi_request *req, uint64_t pos, uint64_t len)
{
	struct scsi_request_ctx *c = &req->ctx;
	if (!queue_of_medium(cd, c->queue)) /* the caller chose it before a medium change */
		return medium_changed_attention(cd, req);
	int ret = scsi_slice_buffers(req, len);
	if (ret)
		return read_failed(cd, req, ret);
	c->length = len;
	c->error = 0;
	c->pending = 1; /* held while submitting; completions only run from the queue's poll */
	for (int first = 0; first < c->iovcnt; first += IOV_MAX) {
		int n = (int)min_u64((uint64_t)(c->iovcnt - first), IOV_MAX);
		uint64_t bytes = iov_size(c->iov + first, n);
		ret = vdisk_readv(cd->medium, c->queue, c->iov + first, n, pos, read_done, req);
		if (ret) {
			c->error = ret;
			break;
		}
		c->pending++;
		cd->stats.reads++;
		cd->stats.read_bytes += bytes;
		pos += bytes;
	}
	if (--c->pending) {
		cd->reads_in_flight++;
		return CMD_STARTED;
	}
	return read_failed(cd, req, c->error);
}

static int read_medium(struct scsi_cdrom *cd, struct scsi_request *req)
{
	const uint8_t *cdb = req->cdb;
	struct scsi_request_ctx *c = &req->ctx;
	uint64_t lba = load_be32(cdb + 2);
	uint64_t count = cdb[0] == OP_READ_12 ? load_be32(cdb + 6) : load_be16(cdb + 7);
	if (lba >= cd->sectors || count > cd->sectors - lba)
		return scsi_check(req, SK_ILLEGAL_REQUEST, ASC_LBA_OUT_OF_RANGE);
	if (!count)
		return scsi_good(req);
	c->offset = lba * SCSI_CDROM_SECTOR;
	c->end = c->offset + count * SCSI_CDROM_SECTOR;
	c->medium_generation = cd->generation;
	if (c->pieces)
		return CMD_READ_OPEN;
	if (c->end - c->offset > scsi_room_in(req))
		return scsi_invalid_field(req);
	return submit_read(cd, req, c->offset, c->end - c->offset);
}

/* ---- SPC commands ---- */

static int test_unit_ready(struct scsi_cdrom *cd, struct scsi_request *req)
{
	(void)cd;
	return scsi_good(req); /* the medium check came before */
}

/* A pending unit attention, else the sense of the last command, which is then gone. */
static int request_sense(struct scsi_cdrom *cd, struct scsi_request *req)
{
	uint8_t sense[SCSI_SENSE_LEN];
	if (req->cdb[1] & 0x01) /* DESC: descriptor format is not supported */
		return scsi_invalid_field(req);
	uint16_t asc = take_unit_attention(cd);
	if (asc)
		scsi_sense_fixed(sense, SK_UNIT_ATTENTION, asc);
	else
		memcpy(sense, cd->sense, sizeof(sense));
	return scsi_reply(req, sense, sizeof(sense), req->cdb[4]);
}

static int inquiry_vpd(struct scsi_cdrom *cd, struct scsi_request *req, uint8_t *out,
		       uint32_t alloc)
{
	out[0] = 0x05;
	out[1] = req->cdb[2];
	switch (req->cdb[2]) {
	case 0x00: /* supported pages */
		out[3] = 2;
		out[4] = 0x00;
		out[5] = 0x80;
		return scsi_reply(req, out, 6, alloc);
	case 0x80: /* unit serial number */
		out[3] = 20;
		scsi_copy_ascii(out + 4, cd->cfg.serial, 20);
		return scsi_reply(req, out, 24, alloc);
	default:
		return scsi_invalid_field(req);
	}
}

static int inquiry(struct scsi_cdrom *cd, struct scsi_request *req)
{
	const uint8_t *cdb = req->cdb;
	uint32_t alloc = load_be16(cdb + 3);
	uint8_t out[REPLY_MAX] = { 0 };
	if (cdb[1] & 0x02) /* CMDDT; bits 7-5 held the LUN in SCSI-2 and are ignored */
		return scsi_invalid_field(req);
	if (cdb[1] & 0x01)
		return inquiry_vpd(cd, req, out, alloc);
	if (cdb[2]) /* a page code without EVPD */
		return scsi_invalid_field(req);
	out[0] = 0x05; /* MMC device */
	out[1] = 0x80; /* removable */
	out[2] = 0x05; /* SPC-3 */
	out[3] = 0x02; /* response data format */
	out[4] = 36 - 5;
	scsi_copy_ascii(out + 8, cd->cfg.vendor, 8);
	scsi_copy_ascii(out + 16, cd->cfg.product, 16);
	scsi_copy_ascii(out + 32, cd->cfg.revision, 4);
	return scsi_reply(req, out, 36, alloc);
}

/* The mode page(s) page (3Fh: all) at out, zeroed values for the changeable ones; returns
 * their length, 0 for a page the drive does not have. */
static uint32_t put_mode_pages(const struct scsi_cdrom *cd, uint8_t page, bool changeable,
			       uint8_t *out)
{
	uint32_t len = 0;
	if (page == 0x01 || page == MODE_PAGE_ALL) { /* read error recovery */
		out[0] = 0x01;
		out[1] = 0x0A;
		if (!changeable)
			out[3] = 5; /* read retry count */
		len += 12;
	}
	if (page == 0x2A || page == MODE_PAGE_ALL) { /* capabilities and mechanical status */
		uint8_t *c = out + len;
		c[0] = 0x2A;
		c[1] = 0x12;
		if (!changeable) {
			c[2] = 0x0B; /* reads CD-R, CD-RW, DVD-ROM */
			c[4] = 0x70; /* mode 2 form 1 and 2, multi-session */
			c[6] = 0x29 | (cd->locked ? 0x02 : 0); /* tray, eject, lock */
			store_be16(c + 8, DVD_SPEED_KBS);
			store_be16(c + 12, 512); /* buffer, KiB */
			store_be16(c + 14, DVD_SPEED_KBS);
		}
		len += 20;
	}
	return len;
}

/* MODE SENSE(6) and (10): no block descriptors. */
static int mode_sense(struct scsi_cdrom *cd, struct scsi_request *req)
{
	const uint8_t *cdb = req->cdb;
	bool ten = cdb[0] == OP_MODE_SENSE_10;
	uint32_t header = ten ? 8 : 4, alloc = ten ? load_be16(cdb + 7) : cdb[4];
	uint8_t pc = cdb[2] >> 6, page = cdb[2] & 0x3F, out[REPLY_MAX] = { 0 };
	if (pc == MODE_PC_SAVED)
		return scsi_check(req, SK_ILLEGAL_REQUEST, ASC_SAVING_NOT_SUPPORTED);
	if (cdb[3]) /* subpages */
		return scsi_invalid_field(req);
	uint32_t len = put_mode_pages(cd, page, pc == 1, out + header);
	if (!len)
		return scsi_invalid_field(req);
	len += header;
	if (ten)
		store_be16(out, (uint16_t)(len - 2));
	else
		out[0] = (uint8_t)(len - 1);
	return scsi_reply(req, out, len, alloc);
}

/* ---- the tray ---- */

static int start_stop_unit(struct scsi_cdrom *cd, struct scsi_request *req)
{
	uint8_t flags = req->cdb[4];
	if (flags >> 4 || !(flags & 0x02)) /* a power condition, or spin up/down: nothing to do */
		return scsi_good(req);
	if (flags & 0x01) { /* load */
		if (cd->tray_open && cd->medium)
			cd->media_event = MEDIA_NEW;
		cd->tray_open = false;
		return scsi_good(req);
	}
	if (cd->locked)
		return scsi_check(req, SK_ILLEGAL_REQUEST, ASC_MEDIUM_REMOVAL_PREVENTED);
	if (!cd->tray_open && cd->medium)
		cd->media_event = MEDIA_REMOVAL;
	cd->tray_open = true;
	return scsi_good(req);
}

static int prevent_allow(struct scsi_cdrom *cd, struct scsi_request *req)
{
	cd->locked = req->cdb[4] & 0x01;
	return scsi_good(req);
}

static int mechanism_status(struct scsi_cdrom *cd, struct scsi_request *req)
{
	uint8_t out[8] = { 0 };
	out[1] = cd->tray_open ? 0x10 : 0;
	return scsi_reply(req, out, sizeof(out), load_be16(req->cdb + 8));
}

static int set_cd_speed(struct scsi_cdrom *cd, struct scsi_request *req)
{
	(void)cd;
	return scsi_good(req);
}

/* ---- capacity, TOC, disc and track ---- */

static int read_capacity(struct scsi_cdrom *cd, struct scsi_request *req)
{
	uint8_t out[8];
	store_be32(out, (uint32_t)min_u64(cd->sectors - 1, UINT32_MAX));
	store_be32(out + 4, SCSI_CDROM_SECTOR);
	return scsi_reply(req, out, sizeof(out), sizeof(out));
}

/* MSF of an LBA; past the 255 minutes MSF can say (a DVD) it stays at its largest. */
static void put_msf(uint8_t *out, uint64_t lba)
{
	uint64_t f = min_u64(lba + MSF_LEAD_IN, MSF_FRAMES - 1);
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
static int read_toc(struct scsi_cdrom *cd, struct scsi_request *req)
{
	const uint8_t *cdb = req->cdb;
	bool msf = cdb[1] & 0x02;
	uint8_t format = cdb[2] & 0x0F, track = cdb[6], out[REPLY_MAX] = { 0 };
	if (!format)
		format = cdb[9] >> 6; /* where SFF-8020 drives took it */
	uint32_t len = 4;
	out[2] = 1; /* first track or session */
	out[3] = 1; /* last */
	switch (format) {
	case 0:
		if (track > 1 && track != 0xAA)
			return scsi_invalid_field(req);
		if (track <= 1) {
			put_toc_track(out + len, 1, 0, msf);
			len += 8;
		}
		put_toc_track(out + len, 0xAA, cd->sectors, msf);
		len += 8;
		break;
	case 1: /* multi-session information: the first track of the last session */
		put_toc_track(out + len, 1, 0, msf);
		len += 8;
		break;
	default:
		return scsi_invalid_field(req);
	}
	store_be16(out, (uint16_t)(len - 2));
	return scsi_reply(req, out, len, load_be16(cdb + 7));
}

static int read_disc_information(struct scsi_cdrom *cd, struct scsi_request *req)
{
	(void)cd;
	uint8_t out[34] = { 0 };
	if (req->cdb[1] & 0x07) /* only standard disc information */
		return scsi_invalid_field(req);
	store_be16(out, sizeof(out) - 2);
	out[2] = 0x0E;			  /* last session complete, disc finalized */
	out[3] = 1;			  /* first track */
	out[4] = 1;			  /* sessions */
	out[5] = 1;			  /* first track of the last session */
	out[6] = 1;			  /* last track of the last session */
	out[7] = 0x20;			  /* unrestricted use */
	store_be32(out + 16, UINT32_MAX); /* no next session to write */
	store_be32(out + 20, UINT32_MAX);
	return scsi_reply(req, out, sizeof(out), load_be16(req->cdb + 7));
}

static int read_track_information(struct scsi_cdrom *cd, struct scsi_request *req)
{
	uint32_t address = load_be32(req->cdb + 2);
	uint8_t out[36] = { 0 };
	bool ok;
	switch (req->cdb[1] & 0x03) {
	case 0: /* an LBA in the track */
		ok = address < cd->sectors;
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
		return scsi_invalid_field(req);
	uint32_t sectors = (uint32_t)min_u64(cd->sectors, UINT32_MAX);
	store_be16(out, sizeof(out) - 2);
	out[2] = 1;			   /* track */
	out[3] = 1;			   /* session */
	out[5] = 0x04;			   /* track mode: data, uninterrupted */
	out[6] = 0x01;			   /* data mode 1 */
	store_be32(out + 24, sectors);	   /* track size */
	store_be32(out + 28, sectors - 1); /* last recorded address */
	return scsi_reply(req, out, sizeof(out), load_be16(req->cdb + 7));
}

static int read_subchannel(struct scsi_cdrom *cd, struct scsi_request *req)
{
	(void)cd;
	const uint8_t *cdb = req->cdb;
	uint8_t out[24] = { 0 };
	uint32_t len = 4;
	out[1] = 0x15;	     /* no current audio status */
	if (cdb[2] & 0x40) { /* SubQ: the data of the format */
		switch (cdb[3]) {
		case 1: /* current position: the start of the data track */
			out[4] = 1;
			out[5] = TOC_CONTROL;
			out[6] = 1;
			out[7] = 1;
			put_address(out + 8, 0, cdb[1] & 0x02);
			len = 16;
			break;
		case 2: /* media catalog number: none (MCval 0) */
			out[4] = 2;
			len = 24;
			break;
		default:
			return scsi_invalid_field(req);
		}
	}
	store_be16(out + 2, (uint16_t)(len - 4));
	return scsi_reply(req, out, len, load_be16(cdb + 7));
}

/* ---- GET CONFIGURATION ---- */

struct features {
	uint8_t *out;
	uint32_t len;
	uint8_t rt;
	uint16_t start;
	uint8_t scratch[16]; /* where a feature the request leaves out is built */
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

static int get_configuration(struct scsi_cdrom *cd, struct scsi_request *req)
{
	const uint8_t *cdb = req->cdb;
	uint8_t out[REPLY_MAX] = { 0 };
	if ((cdb[1] & 0x03) == 3)
		return scsi_invalid_field(req);
	struct features f = {
		.out = out, .len = 8, .rt = cdb[1] & 0x03, .start = load_be16(cdb + 2)
	};
	bool medium = medium_ready(cd), dvd = medium && is_dvd(cd), cd_rom = medium && !dvd;
	uint16_t profile = dvd ? PROFILE_DVD_ROM : cd_rom ? PROFILE_CD_ROM : PROFILE_NONE;

	uint8_t *x = add_feature(&f, 0x0000, 0, true, 8); /* profile list */
	store_be16(x, PROFILE_DVD_ROM);
	x[2] = dvd;
	store_be16(x + 4, PROFILE_CD_ROM);
	x[6] = cd_rom;
	x = add_feature(&f, 0x0001, 2, true, 8); /* core */
	store_be32(x, cd->cfg.interface);
	add_feature(&f, 0x0002, 1, true, 4);	   /* morphing: polled events only */
	x = add_feature(&f, 0x0003, 0, true, 4);   /* removable medium */
	x[0] = 1 << 5 | 0x08 | 0x01;		   /* tray, eject, lock */
	x = add_feature(&f, 0x0010, 0, medium, 8); /* random readable */
	store_be32(x, SCSI_CDROM_SECTOR);
	store_be16(x + 4, dvd ? 16 : 1);       /* blocking */
	x[6] = 1;			       /* the error recovery page is there */
	add_feature(&f, 0x001E, 2, cd_rom, 4); /* CD read */
	add_feature(&f, 0x001F, 1, dvd, 4);    /* DVD read */

	store_be32(out, f.len - 4);
	store_be16(out + 6, profile);
	return scsi_reply(req, out, f.len, load_be16(cdb + 7));
}

/* ---- GET EVENT STATUS NOTIFICATION ---- */

static int get_event_status(struct scsi_cdrom *cd, struct scsi_request *req)
{
	const uint8_t *cdb = req->cdb;
	uint32_t alloc = load_be16(cdb + 7);
	uint8_t out[8] = { 0 };
	if (!(cdb[1] & 0x01)) /* asynchronous notification: not supported */
		return scsi_invalid_field(req);
	out[3] = 1 << 4; /* supported classes: media */
	if (!(cdb[4] & (1 << 4))) {
		out[2] = 0x80; /* no event available of the classes asked */
		store_be16(out, 2);
		return scsi_reply(req, out, 4, alloc);
	}
	store_be16(out, 6);
	out[2] = 4; /* media class */
	out[4] = cd->media_event;
	out[5] = (medium_ready(cd) ? 2 : 0) | (cd->tray_open ? 1 : 0);
	cd->media_event = MEDIA_NO_CHANGE;
	return scsi_reply(req, out, sizeof(out), alloc);
}

/* ---- dispatch ---- */

enum {
	NEEDS_MEDIUM = 1 << 0,
	PASSES_UNIT_ATTENTION = 1 << 1,
};

static const struct command {
	uint8_t opcode, flags;
	int (*run)(struct scsi_cdrom *cd, struct scsi_request *req);
} commands[] = {
	{ OP_TEST_UNIT_READY, NEEDS_MEDIUM, test_unit_ready },
	{ OP_REQUEST_SENSE, PASSES_UNIT_ATTENTION, request_sense },
	{ OP_INQUIRY, PASSES_UNIT_ATTENTION, inquiry },
	{ OP_MODE_SENSE_6, 0, mode_sense },
	{ OP_START_STOP_UNIT, 0, start_stop_unit },
	{ OP_PREVENT_ALLOW_MEDIUM_REMOVAL, 0, prevent_allow },
	{ OP_READ_CAPACITY_10, NEEDS_MEDIUM, read_capacity },
	{ OP_READ_10, NEEDS_MEDIUM, read_medium },
	{ OP_READ_SUBCHANNEL, NEEDS_MEDIUM, read_subchannel },
	{ OP_READ_TOC, NEEDS_MEDIUM, read_toc },
	{ OP_GET_CONFIGURATION, PASSES_UNIT_ATTENTION, get_configuration },
	{ OP_GET_EVENT_STATUS_NOTIFICATION, PASSES_UNIT_ATTENTION, get_event_status },
	{ OP_READ_DISC_INFORMATION, NEEDS_MEDIUM, read_disc_information },
	{ OP_READ_TRACK_INFORMATION, NEEDS_MEDIUM, read_track_information },
	{ OP_MODE_SENSE_10, 0, mode_sense },
	{ OP_READ_12, NEEDS_MEDIUM, read_medium },
	{ OP_SET_CD_SPEED, 0, set_cd_speed },
	{ OP_MECHANISM_STATUS, 0, mechanism_status },
};

static const struct command *find_command(uint8_t opcode)
{
	for (size_t i = 0; i < sizeof(commands) / sizeof(commands[0]); i++)
		if (commands[i].opcode == opcode)
			return &commands[i];
	return NULL;
}

/* With the drive locked: the checks every command goes through (SPC-4 5.14 for the unit
 * attention; MMC-5 exempts GET CONFIGURATION and GET EVENT STATUS NOTIFICATION), then
 * the command. */
static int run_command(struct scsi_cdrom *cd, struct scsi_request *req)
{
	if (!req->cdb || req->cdb_len < 6 || req->cdb_len > 16)
		return scsi_invalid_field(req);
	const struct command *cmd = find_command(req->cdb[0]);
	bool passes = cmd ? cmd->flags & PASSES_UNIT_ATTENTION : req->cdb[0] == SCSI_OP_REPORT_LUNS;
	if (!passes) {
		uint16_t asc = take_unit_attention(cd);
		if (asc)
			return scsi_check(req, SK_UNIT_ATTENTION, asc);
	}
	if (!cmd)
		return scsi_check(req, SK_ILLEGAL_REQUEST, ASC_INVALID_OPCODE);
	if (!scsi_cdb_complete(req))
		return scsi_invalid_field(req);
	if ((cmd->flags & NEEDS_MEDIUM) && !medium_ready(cd))
		return not_ready(cd, req);
	return cmd->run(cd, req);
}

static void clear_result(struct scsi_request *req)
{
	req->status = SCSI_STATUS_GOOD;
	req->sense_len = 0;
	req->transferred = 0;
}

/* Runs the command with the drive locked; returns CMD_DONE, CMD_STARTED or CMD_READ_OPEN. */
static int run_locked(struct scsi_cdrom *cd, struct vdisk_queue *q, struct scsi_request *req,
		      bool pieces)
{
	clear_result(req);
	req->ctx = (struct scsi_request_ctx){ .cdrom = cd, .queue = q, .pieces = pieces };
	pthread_mutex_lock(&cd->lock);
	int ret = run_command(cd, req);
	if (ret != CMD_STARTED) /* a read in flight keeps its sense when it ends */
		keep_sense(cd, req);
	pthread_mutex_unlock(&cd->lock);
	return ret;
}

void scsi_cdrom_execute(struct scsi_cdrom *cd, struct vdisk_queue *q, struct scsi_request *req)
{
	if (run_locked(cd, q, req, false) == CMD_DONE)
		finish(req);
}

uint64_t scsi_cdrom_start(struct scsi_cdrom *cd, struct scsi_request *req)
{
	int ret = run_locked(cd, NULL, req, true);
	return ret == CMD_READ_OPEN ? req->ctx.end - req->ctx.offset : 0;
}

/* A read piece found another medium than the one its read was accepted on. */
static int medium_changed_under(struct scsi_cdrom *cd, struct scsi_request *req)
{
	return medium_ready(cd) ? medium_changed_attention(cd, req) : not_ready(cd, req);
}

void scsi_cdrom_read_piece(struct scsi_cdrom *cd, struct vdisk_queue *q, struct scsi_request *req,
			   uint64_t offset)
{
	struct scsi_request_ctx *c = &req->ctx;
	clear_result(req);
	c->queue = q;
	uint64_t total = c->end - c->offset;
	uint64_t len = offset < total ? min_u64(total - offset, scsi_room_in(req)) : 0;
	pthread_mutex_lock(&cd->lock);
	int ret;
	if (!c->pieces || c->cdrom != cd || !len) /* no open read, or no piece of it */
		ret = scsi_invalid_field(req);
	else if (c->medium_generation != cd->generation || !medium_ready(cd))
		ret = medium_changed_under(cd, req);
	else
		ret = submit_read(cd, req, c->offset + offset, len);
	if (ret == CMD_DONE)
		keep_sense(cd, req);
	pthread_mutex_unlock(&cd->lock);
	if (ret == CMD_DONE)
		finish(req);
}

void scsi_cdrom_transport_failed(struct scsi_cdrom *cd, struct scsi_request *req)
{
	pthread_mutex_lock(&cd->lock);
	scsi_check(req, SK_ABORTED_COMMAND, ASC_NO_ADDITIONAL_SENSE);
	keep_sense(cd, req);
	pthread_mutex_unlock(&cd->lock);
}

/* ---- the host side ---- */

static int medium_sectors(struct vdisk *medium, uint64_t *sectors)
{
	*sectors = medium ? vdisk_size(medium) / SCSI_CDROM_SECTOR : 0;
	return medium && !*sectors ? -EINVAL : 0;
}

int scsi_cdrom_create(const struct scsi_cdrom_config *cfg, struct vdisk *medium,
		      struct scsi_cdrom **out)
{
	uint64_t sectors;
	if (!cfg || medium_sectors(medium, &sectors) < 0)
		return -EINVAL;
	struct scsi_cdrom *cd = calloc(1, sizeof(*cd));
	if (!cd)
		return -ENOMEM;
	cd->cfg = *cfg;
	cd->cfg.vendor[sizeof(cd->cfg.vendor) - 1] = 0;
	cd->cfg.product[sizeof(cd->cfg.product) - 1] = 0;
	cd->cfg.revision[sizeof(cd->cfg.revision) - 1] = 0;
	cd->cfg.serial[sizeof(cd->cfg.serial) - 1] = 0;
	pthread_mutex_init(&cd->lock, NULL);
	cd->medium = medium;
	cd->sectors = sectors;
	cd->ua = UA_RESET; /* power on */
	scsi_sense_fixed(cd->sense, SK_NO_SENSE, ASC_NO_ADDITIONAL_SENSE);
	*out = cd;
	return 0;
}

void scsi_cdrom_destroy(struct scsi_cdrom *cd)
{
	if (!cd)
		return;
	pthread_mutex_destroy(&cd->lock);
	free(cd);
}

static void reset(struct scsi_cdrom *cd, bool power_on)
{
	pthread_mutex_lock(&cd->lock);
	cd->ua |= UA_RESET;
	scsi_sense_fixed(cd->sense, SK_NO_SENSE, ASC_NO_ADDITIONAL_SENSE);
	if (power_on)
		cd->locked = false; /* SPC: a power-on or hard reset ends the prevention */
	pthread_mutex_unlock(&cd->lock);
}

void scsi_cdrom_reset(struct scsi_cdrom *cd)
{
	reset(cd, false);
}

void scsi_cdrom_power_on(struct scsi_cdrom *cd)
{
	reset(cd, true);
}

int scsi_cdrom_eject(struct scsi_cdrom *cd, bool force)
{
	int ret = 0;
	pthread_mutex_lock(&cd->lock);
	if (cd->locked && !force) {
		ret = -EBUSY;
	} else if (cd->reads_in_flight) {
		ret = -EAGAIN;
	} else {
		if (cd->medium)
			media_changed(cd, MEDIA_REMOVAL);
		cd->medium = NULL;
		cd->sectors = 0;
		cd->tray_open = true;
	}
	pthread_mutex_unlock(&cd->lock);
	return ret;
}

int scsi_cdrom_insert(struct scsi_cdrom *cd, struct vdisk *medium)
{
	uint64_t sectors;
	if (!medium || medium_sectors(medium, &sectors) < 0)
		return -EINVAL;
	int ret = 0;
	pthread_mutex_lock(&cd->lock);
	if (cd->medium) {
		ret = -EBUSY;
	} else {
		cd->medium = medium;
		cd->sectors = sectors;
		cd->tray_open = false;
		media_changed(cd, MEDIA_NEW);
	}
	pthread_mutex_unlock(&cd->lock);
	return ret;
}

struct vdisk *scsi_cdrom_medium(struct scsi_cdrom *cd)
{
	pthread_mutex_lock(&cd->lock);
	struct vdisk *medium = cd->medium;
	pthread_mutex_unlock(&cd->lock);
	return medium;
}

void scsi_cdrom_get_state(struct scsi_cdrom *cd, struct scsi_cdrom_state *out)
{
	pthread_mutex_lock(&cd->lock);
	*out = (struct scsi_cdrom_state){ .medium = cd->medium,
					  .tray_open = cd->tray_open,
					  .locked = cd->locked,
					  .media_event = cd->media_event,
					  .reads_in_flight = cd->reads_in_flight,
					  .stats = cd->stats };
	pthread_mutex_unlock(&cd->lock);
}
