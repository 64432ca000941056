/* The MMC target driven with struct scsi_request as storvsc and the Linux sr driver would
 * drive it, on ISO images made by xorriso. Oracles: the ISO file read directly (pread),
 * its size, sg3-utils decoding our INQUIRY, VPD and sense bytes, and the SPC-4/MMC-5
 * field layouts. Guest buffers sit between guard bytes; a random-CDB run checks that no
 * command writes outside them (the sanitizer build watches the rest). */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "endian.h"
#include "scsi_cdrom.h"
#include "test_cli.h"
#include "test_disk.h"
#include "vdisk.h"

struct vdisk *test_open_disks[TEST_MAX_OPEN_DISKS];

#define SECTOR	   2048u
#define FENCE	   48		  /* guard bytes on each side of a data buffer */
#define FENCE_BYTE 0xC3		  /* what they hold */
#define DVD_SIZE   (800ull << 20) /* past an 80-minute CD: the DVD-ROM profile */
#define DATA_SEED  5

/* Status and sense as the tests look at them. */
struct outcome {
	uint8_t status;
	uint8_t key, asc, ascq;
	uint64_t moved;
	uint8_t sense[SCSI_SENSE_LEN];
};

/* A drive and the medium whose queue 0 its reads use. */
struct drive {
	struct scsi_cdrom *cd;
	struct vdisk *medium;
};

/* The media, built once: an ISO holding data.bin (a known pattern), and the same ISO
 * padded with zeros to DVD size. */
static char cd_iso[512], dvd_iso[512];
static uint64_t cd_iso_size;

/* ---- media and drives ---- */

static struct vdisk *open_medium(const char *path)
{
	struct vdisk_options o = { .read_only = true, .format = "raw" };
	struct vdisk *d;
	assert_int_equal(vdisk_open(path, &o, &d, NULL, 0), 0);
	assert_int_equal(test_track_disk(d), 0);
	return d;
}

static struct drive drive_new(const char *iso)
{
	struct scsi_cdrom_config cfg = { .vendor = "Msft",
					 .product = "Virtual DVD-ROM",
					 .revision = "1.0",
					 .serial = "SCSI0DVD",
					 .interface = SCSI_CDROM_INTERFACE_SCSI };
	struct drive d = { NULL, iso ? open_medium(iso) : NULL };
	assert_int_equal(scsi_cdrom_create(&cfg, d.medium, &d.cd), 0);
	return d;
}

static void drive_free(struct drive *d)
{
	struct scsi_cdrom_state s;
	scsi_cdrom_get_state(d->cd, &s);
	assert_int_equal(s.reads_in_flight, 0);
	scsi_cdrom_destroy(d->cd);
	test_close_tracked();
}

static struct vdisk_queue *drive_queue(const struct drive *d)
{
	return d->medium ? vdisk_queue(d->medium, 0) : NULL;
}

static uint64_t file_size(const char *path)
{
	int fd = open(path, O_RDONLY);
	assert_true(fd >= 0);
	off_t end = lseek(fd, 0, SEEK_END);
	close(fd);
	return (uint64_t)end;
}

/* ---- one command ---- */

struct pending {
	struct scsi_request req;
	int completions;
};

static void count_completion(struct scsi_request *req)
{
	((struct pending *)((char *)req - offsetof(struct pending, req)))->completions++;
}

static unsigned group_len(uint8_t opcode)
{
	static const unsigned len[8] = { 6, 10, 10, 16, 16, 12, 12, 12 };
	return len[opcode >> 5];
}

/* Polls the drive's queue until the request completed once; its outcome. */
static struct outcome wait_outcome(struct drive *d, struct pending *p)
{
	for (int spins = 0; p->completions == 0; spins++) {
		assert_non_null(drive_queue(d)); /* an empty drive completes inline */
		assert_true(spins < 100000);
		assert_true(vdisk_queue_poll(drive_queue(d), 1) >= 0);
	}
	assert_int_equal(p->completions, 1);
	struct outcome o = { .status = p->req.status, .moved = p->req.transferred };
	bool check = o.status == SCSI_STATUS_CHECK_CONDITION;
	assert_int_equal(p->req.sense_len, check ? SCSI_SENSE_LEN : 0); /* autosense */
	if (!check)
		return o;
	assert_int_equal(o.moved, 0);
	memcpy(o.sense, p->req.sense, SCSI_SENSE_LEN);
	assert_int_equal(o.sense[0], 0x70); /* current, fixed format */
	o.key = o.sense[2] & 0x0F;
	o.asc = o.sense[12];
	o.ascq = o.sense[13];
	return o;
}

static struct outcome run_iov(struct drive *d, const uint8_t *cdb, const struct iovec *iov,
			      int iovcnt, uint64_t transfer_len)
{
	struct pending p = { .req = { .cdb = cdb,
				      .cdb_len = group_len(cdb[0]),
				      .data_in = true,
				      .iov = iov,
				      .iovcnt = iovcnt,
				      .transfer_len = transfer_len,
				      .done = count_completion } };
	scsi_cdrom_execute(d->cd, drive_queue(d), &p.req);
	return wait_outcome(d, &p);
}

/* A buffer of len bytes fenced on both sides. */
static uint8_t *fenced_alloc(size_t len)
{
	uint8_t *m = test_xmalloc(len + 2 * FENCE);
	memset(m, FENCE_BYTE, len + 2 * FENCE);
	return m + FENCE;
}

static void fenced_free(uint8_t *data, size_t len)
{
	uint8_t *m = data - FENCE;
	for (size_t i = 0; i < FENCE; i++)
		if (m[i] != FENCE_BYTE || data[len + i] != FENCE_BYTE)
			fail_msg("a fence byte of a %zu-byte buffer changed", len);
	free(m);
}

/* Runs cdb with a fenced buffer of len bytes (0: no data) and copies the data to out. */
static struct outcome run(struct drive *d, const uint8_t *cdb, void *out, size_t len)
{
	uint8_t *buf = fenced_alloc(len);
	struct iovec iov = { buf, len };
	struct outcome o = run_iov(d, cdb, &iov, len ? 1 : 0, len);
	if (out)
		memcpy(out, buf, len);
	fenced_free(buf, len);
	return o;
}

static void want_good(struct outcome o)
{
	if (o.status != SCSI_STATUS_GOOD)
		fail_msg("status %02x sense %x/%02x/%02x", o.status, o.key, o.asc, o.ascq);
}

static void want_sense(struct outcome o, uint8_t key, uint8_t asc, uint8_t ascq)
{
	if (o.status != SCSI_STATUS_CHECK_CONDITION || o.key != key || o.asc != asc ||
	    o.ascq != ascq)
		fail_msg("want %x/%02x/%02x, got status %02x sense %x/%02x/%02x", key, asc, ascq,
			 o.status, o.key, o.asc, o.ascq);
}

/* ---- CDBs ---- */

static const uint8_t TEST_UNIT_READY[12] = { 0x00 };

static void cdb_read(uint8_t cdb[12], bool twelve, uint32_t lba, uint32_t sectors)
{
	memset(cdb, 0, 12);
	cdb[0] = twelve ? 0xA8 : 0x28;
	store_be32(cdb + 2, lba);
	if (twelve)
		store_be32(cdb + 6, sectors);
	else
		store_be16(cdb + 7, (uint16_t)sectors);
}

static void cdb_alloc16(uint8_t cdb[12], uint8_t op, uint8_t b1, uint8_t b2, uint16_t alloc)
{
	memset(cdb, 0, 12);
	cdb[0] = op;
	cdb[1] = b1;
	cdb[2] = b2;
	store_be16(cdb + 7, alloc);
}

static struct outcome request_sense(struct drive *d, uint8_t sense[SCSI_SENSE_LEN])
{
	uint8_t cdb[12] = { 0x03, 0, 0, 0, SCSI_SENSE_LEN };
	return run(d, cdb, sense, SCSI_SENSE_LEN);
}

/* GET EVENT STATUS NOTIFICATION, polled, media class: the event code and media status. */
static void media_event(struct drive *d, uint8_t *event, uint8_t *media_status)
{
	uint8_t cdb[12], out[8];
	cdb_alloc16(cdb, 0x4A, 0x01, 0, sizeof(out));
	cdb[4] = 1 << 4;
	struct outcome o = run(d, cdb, out, sizeof(out));
	want_good(o);
	assert_int_equal(o.moved, 8);
	assert_int_equal(load_be16(out), 6);
	assert_int_equal(out[2], 4); /* media class, NEA clear */
	*event = out[4] & 0x0F;
	*media_status = out[5];
}

/* ---- sg3-utils as the decoder ---- */

static bool have_sg3(void)
{
	return test_have("sg_inq") && test_have("sg_vpd") && test_have("sg_decode_sense");
}

/* Runs tool on bytes written as ASCII hex to a file (its path replaces %s in tool). */
static void sg3_decode(const char *tool, const uint8_t *bytes, size_t len, char *out, size_t size)
{
	const char *path = test_path("bytes.hex");
	FILE *f = fopen(path, "w");
	assert_non_null(f);
	for (size_t i = 0; i < len; i++)
		fprintf(f, "%02x%s", bytes[i], (i + 1) % 16 ? " " : "\n");
	fclose(f);
	char cmd[1024];
	snprintf(cmd, sizeof(cmd), tool, path);
	int st = test_run(out, size, "%s", cmd);
	if (st != 0)
		fail_msg("%s: exit %d\n%s", cmd, st, out);
}

static void expect_sense_decoded(const struct outcome *o, const char *key, const char *asc)
{
	if (!have_sg3())
		return;
	char out[4096];
	sg3_decode("sg_decode_sense --file=%s", o->sense, SCSI_SENSE_LEN, out, sizeof(out));
	assert_contains(out, key);
	assert_contains(out, asc);
}

/* ---- tests ---- */

/* Linux sr's probe over storvsc: the power-on attention, INQUIRY, READ CAPACITY, the
 * capabilities page, the current profile, the media event poll. */
static void test_sr_probe_sequence(void **state)
{
	(void)state;
	struct drive d = drive_new(dvd_iso);
	uint8_t cdb[12], b[256];

	struct outcome o = run(&d, TEST_UNIT_READY, NULL, 0);
	want_sense(o, 0x6, 0x29, 0x00);
	expect_sense_decoded(&o, "Unit Attention", "Power on, reset, or bus device reset");
	want_good(run(&d, TEST_UNIT_READY, NULL, 0));

	uint8_t inquiry[12] = { 0x12, 0, 0, 0, 36 };
	o = run(&d, inquiry, b, 36);
	want_good(o);
	assert_int_equal(o.moved, 36);
	assert_int_equal(b[0], 0x05); /* MMC device, connected */
	assert_int_equal(b[1], 0x80); /* RMB */
	assert_memory_equal(b + 8, "Msft    Virtual DVD-ROM 1.0 ", 28);
	if (have_sg3()) {
		char out[4096];
		sg3_decode("sg_inq --inhex=%s", b, o.moved, out, sizeof(out));
		assert_contains(out, "PDT=5");
		assert_contains(out, "RMB=1");
		assert_contains(out, "cd/dvd");
		assert_contains(out, "Virtual DVD-ROM");
	}
	/* VPD: the supported pages, the serial number */
	inquiry[1] = 0x01;
	inquiry[4] = 255;
	o = run(&d, inquiry, b, 255);
	want_good(o);
	assert_int_equal(o.moved, 6);
	assert_memory_equal(b + 4, "\x00\x80", 2);
	inquiry[2] = 0x80;
	o = run(&d, inquiry, b, 255);
	want_good(o);
	assert_int_equal(o.moved, 24);
	if (have_sg3()) {
		char out[4096];
		sg3_decode("sg_vpd --page=sn --inhex=%s", b, o.moved, out, sizeof(out));
		assert_contains(out, "Unit serial number: SCSI0DVD");
	}

	uint8_t capacity[12] = { 0x25 };
	o = run(&d, capacity, b, 8);
	want_good(o);
	assert_int_equal(o.moved, 8);
	assert_int_equal(load_be32(b), DVD_SIZE / SECTOR - 1);
	assert_int_equal(load_be32(b + 4), SECTOR);

	/* MODE SENSE(10) of the capabilities page, as sr's get_capabilities */
	cdb_alloc16(cdb, 0x5A, 0, 0x2A, 128);
	o = run(&d, cdb, b, 128);
	want_good(o);
	assert_int_equal(o.moved, 8 + 20);
	assert_int_equal(load_be16(b), 8 + 20 - 2);
	assert_int_equal(load_be16(b + 6), 0); /* no block descriptors */
	assert_int_equal(b[8] & 0x3F, 0x2A);
	assert_int_equal(b[9], 0x12);
	assert_true(b[10] & 0x08);	      /* reads DVD-ROM */
	assert_int_equal(b[11], 0);	      /* writes nothing */
	assert_int_equal(b[14] & 0x09, 0x09); /* eject, lock */
	assert_int_equal(b[14] >> 5, 1);      /* tray loader */
	assert_true(load_be16(b + 16) / 176 > 1);

	/* GET CONFIGURATION, the header only: the current profile */
	cdb_alloc16(cdb, 0x46, 0x01, 0, 8);
	o = run(&d, cdb, b, 8);
	want_good(o);
	assert_int_equal(o.moved, 8);
	assert_int_equal(load_be16(b + 6), 0x0010);
	assert_true(load_be32(b) > 4); /* what a longer allocation would bring */
	/* and the profile list: DVD-ROM current, CD-ROM not */
	cdb_alloc16(cdb, 0x46, 0x02, 0, 64);
	o = run(&d, cdb, b, 64);
	want_good(o);
	assert_int_equal(load_be16(b + 8), 0x0000);
	assert_int_equal(load_be16(b + 12), 0x0010);
	assert_int_equal(b[14] & 1, 1);
	assert_int_equal(load_be16(b + 16), 0x0008);
	assert_int_equal(b[18] & 1, 0);
	cdb_alloc16(cdb, 0x46, 0x02, 0, 64);
	store_be16(cdb + 2, 0x0001); /* the core feature only: the SCSI interface */
	o = run(&d, cdb, b, 64);
	assert_int_equal(load_be16(b + 8), 0x0001);
	assert_int_equal(load_be32(b + 12), 1);

	uint8_t event, media;
	media_event(&d, &event, &media);
	assert_int_equal(event, 0);
	assert_int_equal(media, 2); /* present, tray closed */
	drive_free(&d);
}

/* READ(10) and READ(12) return the ISO file's bytes, into one buffer or scattered ones. */
static void test_reads_match_iso(void **state)
{
	(void)state;
	struct drive d = drive_new(dvd_iso);
	run(&d, TEST_UNIT_READY, NULL, 0);
	uint8_t cdb[12];
	uint64_t sectors = cd_iso_size / SECTOR;
	static const struct {
		uint32_t lba, count;
		bool twelve;
	} reads[] = { { 0, 1, false }, { 16, 2, false }, { 17, 30, true }, { 0, 64, true } };
	for (size_t i = 0; i < sizeof(reads) / sizeof(reads[0]); i++) {
		size_t len = (size_t)reads[i].count * SECTOR;
		uint8_t *got = test_xmalloc(len), *want = test_xmalloc(len);
		cdb_read(cdb, reads[i].twelve, reads[i].lba, reads[i].count);
		struct outcome o = run(&d, cdb, got, len);
		want_good(o);
		assert_int_equal(o.moved, len);
		test_file_read(dvd_iso, want, len, (uint64_t)reads[i].lba * SECTOR);
		test_expect_equal(got, want, len, "medium data", (uint64_t)reads[i].lba * SECTOR);
		free(got);
		free(want);
	}
	/* the primary volume descriptor: the ISO 9660 signature */
	uint8_t pvd[SECTOR];
	cdb_read(cdb, false, 16, 1);
	want_good(run(&d, cdb, pvd, SECTOR));
	assert_memory_equal(pvd, "\001CD001", 6);
	/* the zeros padding the image to DVD size, and its last sector */
	cdb_read(cdb, true, (uint32_t)(DVD_SIZE / SECTOR - 1), 1);
	uint8_t zero[SECTOR] = { 0 }, last[SECTOR];
	want_good(run(&d, cdb, last, SECTOR));
	assert_memory_equal(last, zero, SECTOR);

	/* scattered, unequal buffers */
	uint8_t *a = fenced_alloc(3000), *b = fenced_alloc(1096), *c = fenced_alloc(4096);
	struct iovec iov[3] = { { a, 3000 }, { b, 1096 }, { c, 4096 } };
	cdb_read(cdb, false, (uint32_t)sectors - 4, 4);
	struct outcome o = run_iov(&d, cdb, iov, 3, 8192);
	want_good(o);
	uint8_t want[8192];
	test_file_read(dvd_iso, want, sizeof(want), (sectors - 4) * SECTOR);
	assert_memory_equal(a, want, 3000);
	assert_memory_equal(b, want + 3000, 1096);
	assert_memory_equal(c, want + 4096, 4096);
	fenced_free(a, 3000);
	fenced_free(b, 1096);
	fenced_free(c, 4096);

	/* more iovecs than one block layer request takes: 1500 of 512 bytes */
	struct scsi_cdrom_state before, after;
	scsi_cdrom_get_state(d.cd, &before);
	uint8_t *big = test_xmalloc(1500 * 512), *big_want = test_xmalloc(1500 * 512);
	struct iovec *many = test_xmalloc(1500 * sizeof(*many));
	for (int i = 0; i < 1500; i++)
		many[i] = (struct iovec){ big + 512 * i, 512 };
	cdb_read(cdb, false, 2, 375);
	o = run_iov(&d, cdb, many, 1500, 1500 * 512);
	want_good(o);
	assert_int_equal(o.moved, 1500 * 512);
	test_file_read(dvd_iso, big_want, 1500 * 512, 2 * SECTOR);
	test_expect_equal(big, big_want, 1500 * 512, "scattered read", 2 * SECTOR);
	scsi_cdrom_get_state(d.cd, &after);
	assert_int_equal(after.stats.reads - before.stats.reads, 2);
	assert_int_equal(after.stats.read_bytes - before.stats.read_bytes, 1500 * 512);
	free(big);
	free(big_want);
	free(many);
	drive_free(&d);
}

static void test_read_limits(void **state)
{
	(void)state;
	struct drive d = drive_new(cd_iso);
	run(&d, TEST_UNIT_READY, NULL, 0);
	uint32_t sectors = (uint32_t)(cd_iso_size / SECTOR);
	uint8_t cdb[12], buf[2 * SECTOR];
	cdb_read(cdb, false, sectors, 1);
	struct outcome o = run(&d, cdb, buf, SECTOR);
	want_sense(o, 0x5, 0x21, 0x00);
	expect_sense_decoded(&o, "Illegal Request", "Logical block address out of range");
	cdb_read(cdb, false, sectors - 1, 2); /* straddles the end */
	want_sense(run(&d, cdb, buf, 2 * SECTOR), 0x5, 0x21, 0x00);
	cdb_read(cdb, true, UINT32_MAX, UINT32_MAX);
	want_sense(run(&d, cdb, buf, SECTOR), 0x5, 0x21, 0x00);
	cdb_read(cdb, true, sectors - 1, 0); /* nothing to read */
	o = run(&d, cdb, buf, SECTOR);
	want_good(o);
	assert_int_equal(o.moved, 0);
	/* a read longer than the buffers, or than the transfer length, is refused whole */
	cdb_read(cdb, false, 0, 2);
	want_sense(run(&d, cdb, buf, SECTOR), 0x5, 0x24, 0x00);
	struct iovec iov = { buf, sizeof(buf) };
	want_sense(run_iov(&d, cdb, &iov, 1, SECTOR), 0x5, 0x24, 0x00);
	/* a CDB shorter than its opcode's group */
	struct pending p = { .req = { .cdb = cdb,
				      .cdb_len = 6,
				      .data_in = true,
				      .iov = &iov,
				      .iovcnt = 1,
				      .transfer_len = sizeof(buf),
				      .done = count_completion } };
	scsi_cdrom_execute(d.cd, drive_queue(&d), &p.req);
	want_sense(wait_outcome(&d, &p), 0x5, 0x24, 0x00);
	/* a queue of another image than the medium in (chosen before a change): nothing is
	 * read from it */
	struct vdisk *other = open_medium(dvd_iso);
	p.completions = 0;
	p.req.cdb_len = 10; /* READ(10) of 2 sectors into the 2-sector buffer */
	scsi_cdrom_execute(d.cd, vdisk_queue(other, 0), &p.req);
	assert_int_equal(p.completions, 1);
	want_sense(wait_outcome(&d, &p), 0x6, 0x28, 0x00);
	assert_int_equal(vdisk_queue_inflight(vdisk_queue(other, 0)), 0);
	drive_free(&d);
}

/* An empty drive, a medium inserted, then ejected by the host. */
static void test_no_medium_insert_eject(void **state)
{
	(void)state;
	struct drive d = drive_new(NULL);
	uint8_t cdb[12], b[64], event, media;
	want_sense(run(&d, TEST_UNIT_READY, NULL, 0), 0x6, 0x29, 0x00);
	struct outcome o = run(&d, TEST_UNIT_READY, NULL, 0);
	want_sense(o, 0x2, 0x3A, 0x01); /* medium not present, tray closed */
	expect_sense_decoded(&o, "Not Ready", "Medium not present");
	uint8_t capacity[12] = { 0x25 };
	want_sense(run(&d, capacity, b, 8), 0x2, 0x3A, 0x01);
	cdb_read(cdb, false, 0, 1);
	want_sense(run(&d, cdb, b, sizeof(b)), 0x2, 0x3A, 0x01);
	uint8_t inquiry[12] = { 0x12, 0, 0, 0, 36 };
	want_good(run(&d, inquiry, b, 36));
	cdb_alloc16(cdb, 0x46, 0x00, 0, 8);
	want_good(run(&d, cdb, b, 8));
	assert_int_equal(load_be16(b + 6), 0); /* no current profile */
	media_event(&d, &event, &media);
	assert_int_equal(event, 0);
	assert_int_equal(media, 0);

	/* the host inserts the CD-sized ISO: one unit attention, one event */
	assert_int_equal(scsi_cdrom_insert(d.cd, NULL), -EINVAL);
	d.medium = open_medium(cd_iso);
	assert_int_equal(scsi_cdrom_insert(d.cd, d.medium), 0);
	assert_int_equal(scsi_cdrom_insert(d.cd, d.medium), -EBUSY);
	o = run(&d, TEST_UNIT_READY, NULL, 0);
	want_sense(o, 0x6, 0x28, 0x00);
	expect_sense_decoded(&o, "Unit Attention",
			     "Not ready to ready change, medium may have changed");
	want_good(run(&d, TEST_UNIT_READY, NULL, 0));
	media_event(&d, &event, &media);
	assert_int_equal(event, 2); /* new media */
	assert_int_equal(media, 2);
	media_event(&d, &event, &media);
	assert_int_equal(event, 0); /* reported once */
	want_good(run(&d, capacity, b, 8));
	assert_int_equal(load_be32(b), cd_iso_size / SECTOR - 1);
	cdb_alloc16(cdb, 0x46, 0x00, 0, 8);
	want_good(run(&d, cdb, b, 8));
	assert_int_equal(load_be16(b + 6), 0x0008); /* a CD-sized medium: CD-ROM */

	/* the host ejects it */
	assert_int_equal(scsi_cdrom_eject(d.cd, false), 0);
	struct scsi_cdrom_state s;
	scsi_cdrom_get_state(d.cd, &s);
	assert_null(s.medium);
	assert_true(s.tray_open);
	assert_int_equal(s.media_event, 3);
	d.medium = NULL;
	want_sense(run(&d, TEST_UNIT_READY, NULL, 0), 0x6, 0x28, 0x00);
	want_sense(run(&d, TEST_UNIT_READY, NULL, 0), 0x2, 0x3A, 0x02); /* tray open */
	media_event(&d, &event, &media);
	assert_int_equal(event, 3);			    /* media removal */
	assert_int_equal(media, 1);			    /* tray open, no medium */
	assert_int_equal(scsi_cdrom_eject(d.cd, false), 0); /* an empty drive: no news */
	want_sense(run(&d, TEST_UNIT_READY, NULL, 0), 0x2, 0x3A, 0x02);
	drive_free(&d);
}

/* PREVENT ALLOW MEDIUM REMOVAL locks out the host's eject and the guest's own. */
static void test_locked_tray(void **state)
{
	(void)state;
	struct drive d = drive_new(cd_iso);
	run(&d, TEST_UNIT_READY, NULL, 0);
	uint8_t prevent[12] = { 0x1E, 0, 0, 0, 1 }, eject[12] = { 0x1B, 0, 0, 0, 0x02 };
	uint8_t load[12] = { 0x1B, 0, 0, 0, 0x03 }, cdb[12], b[64];
	want_good(run(&d, prevent, NULL, 0));
	assert_int_equal(scsi_cdrom_eject(d.cd, false), -EBUSY);
	struct outcome o = run(&d, eject, NULL, 0);
	want_sense(o, 0x5, 0x53, 0x02);
	expect_sense_decoded(&o, "Illegal Request", "Medium removal prevented");
	cdb_alloc16(cdb, 0x5A, 0, 0x2A, 64);
	want_good(run(&d, cdb, b, 64));
	assert_int_equal(b[8 + 6] & 0x02, 0x02); /* the lock state */
	struct scsi_cdrom_state s;
	scsi_cdrom_get_state(d.cd, &s);
	assert_true(s.locked);
	assert_non_null(s.medium);
	want_good(run(&d, TEST_UNIT_READY, NULL, 0)); /* nothing changed */

	/* allowed again: the guest opens the tray (the medium stays in it) and closes it */
	prevent[4] = 0;
	want_good(run(&d, prevent, NULL, 0));
	want_good(run(&d, eject, NULL, 0));
	want_sense(run(&d, TEST_UNIT_READY, NULL, 0), 0x2, 0x3A, 0x02);
	uint8_t mech[12] = { 0xBD };
	store_be16(mech + 8, 8);
	want_good(run(&d, mech, b, 8));
	assert_int_equal(b[1] & 0x10, 0x10); /* door open */
	want_good(run(&d, load, NULL, 0));
	want_good(run(&d, TEST_UNIT_READY, NULL, 0));

	/* a forced host eject overrides the lock */
	prevent[4] = 1;
	want_good(run(&d, prevent, NULL, 0));
	assert_int_equal(scsi_cdrom_eject(d.cd, true), 0);
	d.medium = NULL;
	want_sense(run(&d, TEST_UNIT_READY, NULL, 0), 0x6, 0x28, 0x00);
	want_sense(run(&d, TEST_UNIT_READY, NULL, 0), 0x2, 0x3A, 0x02);
	drive_free(&d);
}

/* READ TOC formats 0 and 1, in LBA and MSF form. */
static void test_read_toc(void **state)
{
	(void)state;
	struct drive d = drive_new(cd_iso);
	run(&d, TEST_UNIT_READY, NULL, 0);
	uint64_t sectors = cd_iso_size / SECTOR;
	uint8_t cdb[12], b[64];
	cdb_alloc16(cdb, 0x43, 0, 0, sizeof(b));
	struct outcome o = run(&d, cdb, b, sizeof(b));
	want_good(o);
	assert_int_equal(o.moved, 4 + 2 * 8);
	assert_int_equal(load_be16(b), 18);
	assert_int_equal(b[2], 1); /* first and last track */
	assert_int_equal(b[3], 1);
	assert_int_equal(b[5], 0x14); /* ADR 1, data track */
	assert_int_equal(b[6], 1);
	assert_int_equal(load_be32(b + 8), 0);
	assert_int_equal(b[14], 0xAA); /* the lead-out, after the last sector */
	assert_int_equal(load_be32(b + 16), sectors);
	/* MSF: LBA 0 is 00:02:00 */
	cdb[1] = 0x02;
	want_good(run(&d, cdb, b, sizeof(b)));
	assert_memory_equal(b + 8, "\0\0\2\0", 4);
	/* the lead-out: 75 frames a second, 2 seconds of lead-in before LBA 0 */
	assert_int_equal(b[16], 0);
	assert_int_equal((b[17] * 60u + b[18]) * 75u + b[19], sectors + 150);
	assert_true(b[18] < 60 && b[19] < 75);
	/* format 1: the first track of the last session, also asked the SFF-8020 way */
	cdb[1] = 0;
	cdb[2] = 1;
	o = run(&d, cdb, b, sizeof(b));
	want_good(o);
	assert_int_equal(o.moved, 12);
	assert_int_equal(load_be16(b), 10);
	assert_int_equal(b[6], 1);
	assert_int_equal(load_be32(b + 8), 0);
	cdb[2] = 0;
	cdb[9] = 0x40;
	o = run(&d, cdb, b, sizeof(b));
	assert_int_equal(o.moved, 12);
	/* a track that does not exist, a format not served, a short allocation */
	cdb[9] = 0;
	cdb[6] = 2;
	want_sense(run(&d, cdb, b, sizeof(b)), 0x5, 0x24, 0x00);
	cdb[6] = 0;
	cdb[2] = 4;
	want_sense(run(&d, cdb, b, sizeof(b)), 0x5, 0x24, 0x00);
	cdb[2] = 0;
	store_be16(cdb + 7, 6);
	o = run(&d, cdb, b, sizeof(b));
	assert_int_equal(o.moved, 6);
	drive_free(&d);
}

/* A DVD-ROM drive has no write features: writes are unknown commands and the image stays
 * as it was. */
static void test_writes_refused(void **state)
{
	(void)state;
	struct drive d = drive_new(cd_iso);
	run(&d, TEST_UNIT_READY, NULL, 0);
	uint8_t before[4 * SECTOR], after[4 * SECTOR], data[4 * SECTOR];
	test_file_read(cd_iso, before, sizeof(before), 16 * SECTOR);
	memset(data, 0xEE, sizeof(data));
	static const uint8_t writes[] = { 0x0A, 0x2A, 0x2E, 0x8A, 0xAA, 0x15, 0x55, 0x35 };
	for (size_t i = 0; i < sizeof(writes); i++) {
		uint8_t cdb[16] = { writes[i] };
		store_be32(cdb + 2, 16);
		cdb[8] = 4;
		struct iovec iov = { data, sizeof(data) };
		struct pending p = { .req = { .cdb = cdb,
					      .cdb_len = group_len(writes[i]),
					      .data_in = false,
					      .iov = &iov,
					      .iovcnt = 1,
					      .transfer_len = sizeof(data),
					      .done = count_completion } };
		scsi_cdrom_execute(d.cd, drive_queue(&d), &p.req);
		struct outcome o = wait_outcome(&d, &p);
		want_sense(o, 0x5, 0x20, 0x00);
		if (i == 1)
			expect_sense_decoded(&o, "Illegal Request",
					     "Invalid command operation code");
	}
	test_file_read(cd_iso, after, sizeof(after), 16 * SECTOR);
	assert_memory_equal(before, after, sizeof(before));
	struct scsi_cdrom_state s;
	scsi_cdrom_get_state(d.cd, &s);
	assert_int_equal(s.stats.reads, 0);
	drive_free(&d);
}

/* REQUEST SENSE: the sense of the last command, once; a pending unit attention first. */
static void test_request_sense(void **state)
{
	(void)state;
	struct drive d = drive_new(cd_iso);
	uint8_t sense[SCSI_SENSE_LEN];
	want_good(request_sense(&d, sense)); /* the power-on attention, as data */
	assert_int_equal(sense[2], 0x6);
	assert_int_equal(sense[12], 0x29);
	uint8_t unknown[12] = { 0xFF };
	want_sense(run(&d, unknown, NULL, 0), 0x5, 0x20, 0x00);
	want_good(request_sense(&d, sense));
	assert_int_equal(sense[2], 0x5);
	assert_int_equal(sense[12], 0x20);
	want_good(request_sense(&d, sense));
	assert_int_equal(sense[2], 0x0); /* reported once */
	assert_int_equal(sense[12], 0x00);
	/* a reset: the attention fails the next command, not INQUIRY */
	scsi_cdrom_reset(d.cd);
	uint8_t inquiry[12] = { 0x12, 0, 0, 0, 36 }, b[36];
	want_good(run(&d, inquiry, b, 36));
	want_sense(run(&d, TEST_UNIT_READY, NULL, 0), 0x6, 0x29, 0x00);
	/* the host's medium change and a reset: the reset first, then the change */
	assert_int_equal(scsi_cdrom_eject(d.cd, false), 0);
	d.medium = open_medium(cd_iso);
	assert_int_equal(scsi_cdrom_insert(d.cd, d.medium), 0);
	scsi_cdrom_reset(d.cd);
	want_sense(run(&d, TEST_UNIT_READY, NULL, 0), 0x6, 0x29, 0x00);
	want_sense(run(&d, TEST_UNIT_READY, NULL, 0), 0x6, 0x28, 0x00);
	want_good(run(&d, TEST_UNIT_READY, NULL, 0));
	uint8_t desc[12] = { 0x03, 0x01, 0, 0, SCSI_SENSE_LEN }; /* descriptor format */
	want_sense(run(&d, desc, sense, sizeof(sense)), 0x5, 0x24, 0x00);
	drive_free(&d);
}

/* ---- reads in pieces, as ATAPI moves them ---- */

struct piecewise {
	struct pending p;
	uint8_t cdb[12];
	struct iovec iov;
};

static uint64_t piecewise_start(struct drive *d, struct piecewise *w, uint32_t lba, uint32_t count,
				uint8_t *buf, size_t len)
{
	cdb_read(w->cdb, false, lba, count);
	w->iov = (struct iovec){ buf, len };
	w->p = (struct pending){ .req = { .cdb = w->cdb,
					  .cdb_len = 12,
					  .data_in = true,
					  .iov = &w->iov,
					  .iovcnt = 1,
					  .transfer_len = len,
					  .done = count_completion } };
	uint64_t n = scsi_cdrom_start(d->cd, &w->p.req);
	assert_int_equal(w->p.completions, 0); /* start never calls done */
	return n;
}

static struct outcome piece(struct drive *d, struct piecewise *w, uint64_t offset)
{
	w->p.completions = 0;
	scsi_cdrom_read_piece(d->cd, drive_queue(d), &w->p.req, offset);
	if (!drive_queue(d))
		assert_int_equal(w->p.completions, 1);
	return wait_outcome(d, &w->p);
}

static void test_read_in_pieces(void **state)
{
	(void)state;
	struct drive d = drive_new(cd_iso);
	run(&d, TEST_UNIT_READY, NULL, 0);
	struct piecewise w;
	uint8_t buf[8192], want[8192], sense[SCSI_SENSE_LEN];
	/* 10 sectors through an 8 KiB buffer: 8 KiB, 8 KiB, 4 KiB */
	assert_int_equal(piecewise_start(&d, &w, 20, 10, buf, sizeof(buf)), 10 * SECTOR);
	assert_int_equal(w.p.req.status, SCSI_STATUS_GOOD);
	assert_int_equal(w.p.req.transferred, 0);
	for (uint64_t off = 0; off < 10 * SECTOR; off += sizeof(buf)) {
		struct outcome o = piece(&d, &w, off);
		want_good(o);
		uint64_t n = off + sizeof(buf) <= 10 * SECTOR ? sizeof(buf) : 10 * SECTOR - off;
		assert_int_equal(o.moved, n);
		test_file_read(cd_iso, want, n, 20 * SECTOR + off);
		assert_memory_equal(buf, want, n);
	}
	/* past the read's end: no such piece */
	want_sense(piece(&d, &w, 10 * SECTOR), 0x5, 0x24, 0x00);

	/* other commands end in start; an error is the start's result */
	uint8_t cap[12] = { 0x25 };
	memcpy(w.cdb, cap, sizeof(cap));
	assert_int_equal(scsi_cdrom_start(d.cd, &w.p.req), 0);
	assert_int_equal(w.p.req.status, SCSI_STATUS_GOOD);
	assert_int_equal(w.p.req.transferred, 8);
	assert_int_equal(load_be32(buf), cd_iso_size / SECTOR - 1);
	want_sense(piece(&d, &w, 0), 0x5, 0x24, 0x00); /* no read is open */
	cdb_read(w.cdb, false, (uint32_t)(cd_iso_size / SECTOR), 1);
	assert_int_equal(scsi_cdrom_start(d.cd, &w.p.req), 0);
	assert_int_equal(w.p.req.status, SCSI_STATUS_CHECK_CONDITION);
	assert_int_equal(w.p.req.sense[12], 0x21);

	/* the host cannot take the medium while a piece reads it */
	assert_int_equal(piecewise_start(&d, &w, 0, 8, buf, sizeof(buf)), 8 * SECTOR);
	w.p.completions = 0;
	scsi_cdrom_read_piece(d.cd, drive_queue(&d), &w.p.req, 0);
	assert_int_equal(scsi_cdrom_eject(d.cd, true), -EAGAIN);
	want_good(wait_outcome(&d, &w.p));
	/* between pieces it can: the next piece finds no medium */
	assert_int_equal(scsi_cdrom_eject(d.cd, false), 0);
	struct vdisk *old = d.medium;
	d.medium = NULL;
	want_sense(piece(&d, &w, sizeof(buf)), 0x2, 0x3A, 0x02);
	want_good(request_sense(&d, sense)); /* the attention of the change, first */
	assert_int_equal(sense[12], 0x28);
	want_good(request_sense(&d, sense)); /* which replaced the piece's own */
	assert_int_equal(sense[2], 0x0);
	/* a read accepted on one medium does not read the next one */
	assert_int_equal(scsi_cdrom_insert(d.cd, old), 0);
	d.medium = old;
	assert_int_equal(piecewise_start(&d, &w, 0, 8, buf, sizeof(buf)), 0); /* 28/00 */
	assert_int_equal(piecewise_start(&d, &w, 0, 8, buf, sizeof(buf)), 8 * SECTOR);
	assert_int_equal(scsi_cdrom_eject(d.cd, false), 0);
	assert_int_equal(scsi_cdrom_insert(d.cd, old), 0);
	want_sense(piece(&d, &w, 0), 0x6, 0x28, 0x00);
	want_good(run(&d, TEST_UNIT_READY, NULL, 0)); /* that was the attention */

	/* the transport's own failure is what REQUEST SENSE then reports */
	assert_int_equal(piecewise_start(&d, &w, 0, 1, buf, sizeof(buf)), SECTOR);
	scsi_cdrom_transport_failed(d.cd, &w.p.req);
	assert_int_equal(w.p.req.status, SCSI_STATUS_CHECK_CONDITION);
	assert_int_equal(w.p.completions, 0);
	want_good(request_sense(&d, sense));
	assert_int_equal(sense[2], 0xB); /* ABORTED COMMAND */
	drive_free(&d);
}

/* Random CDBs of random lengths into small fenced buffers, with host media changes in
 * between: every one ends in a defined status, moves no more than allowed and leaves the
 * fences alone. */
static void test_random_cdbs(void **state)
{
	(void)state;
	struct drive d = drive_new(cd_iso);
	uint64_t seed = test_env_seed("HVSTACK_SCSI_SEED"), s = seed;
	static const uint8_t ops[] = { 0x00, 0x03, 0x12, 0x1A, 0x1B, 0x1E, 0x25, 0x28,
				       0x42, 0x43, 0x46, 0x4A, 0x51, 0x52, 0x5A, 0xA8,
				       0xBB, 0xBD, 0x2A, 0xA0, 0xBE, 0x9E };
	for (int i = 0; i < 6000; i++) {
		if (test_rnd_below(&s, 200) == 0) { /* the host changes the medium */
			assert_int_equal(scsi_cdrom_eject(d.cd, true), 0);
			if (d.medium)
				test_close_disk(d.medium);
			d.medium = NULL;
			if (test_rnd_below(&s, 2)) {
				d.medium = open_medium(test_rnd_below(&s, 2) ? cd_iso : dvd_iso);
				assert_int_equal(scsi_cdrom_insert(d.cd, d.medium), 0);
			}
		}
		uint8_t cdb[16];
		for (size_t k = 0; k < sizeof(cdb); k++)
			cdb[k] = (uint8_t)test_rnd(&s);
		if (test_rnd_below(&s, 5))
			cdb[0] = ops[test_rnd_below(&s, sizeof(ops))];
		if (test_rnd_below(&s, 2)) { /* LBAs and counts small enough to read */
			memset(cdb + 2, 0, 8);
			cdb[5] = (uint8_t)test_rnd_below(&s, 64);
			cdb[8] = (uint8_t)test_rnd_below(&s, 5);
		}
		size_t len = (size_t)test_rnd_below(&s, 12000);
		uint64_t allowed = test_rnd_below(&s, 3) ? len : test_rnd_below(&s, 1u << 20);
		uint8_t *buf = fenced_alloc(len);
		struct iovec iov = { buf, len };
		struct pending p = { .req = { .cdb = cdb,
					      .cdb_len = (unsigned)test_rnd_below(&s, 18),
					      .data_in = test_rnd_below(&s, 8) != 0,
					      .iov = &iov,
					      .iovcnt = len ? 1 : 0,
					      .transfer_len = allowed,
					      .done = count_completion } };
		scsi_cdrom_execute(d.cd, drive_queue(&d), &p.req);
		struct outcome o = wait_outcome(&d, &p);
		if (o.status != SCSI_STATUS_GOOD && o.status != SCSI_STATUS_CHECK_CONDITION)
			fail_msg("seed %" PRIu64 " command %d: status %02x", seed, i, o.status);
		if (o.moved > len || o.moved > allowed)
			fail_msg("seed %" PRIu64 " command %d: moved %" PRIu64 " of %zu", seed, i,
				 o.moved, len);
		fenced_free(buf, len);
	}
	drive_free(&d);
}

/* ---- the media ---- */

static int make_media(void **state)
{
	(void)state;
	if (!test_have("xorriso"))
		return 0;
	const char *dir = test_path("iso-root");
	char out[4096];
	assert_int_equal(test_run(out, sizeof(out), "mkdir -p %s", dir), 0);
	test_write_file(test_path("iso-root/data.bin"), 200 * 1024 + 123, DATA_SEED);
	snprintf(cd_iso, sizeof(cd_iso), "%s", test_path("cd.iso"));
	snprintf(dvd_iso, sizeof(dvd_iso), "%s", test_path("dvd.iso"));
	if (test_run(out, sizeof(out), "xorriso -as mkisofs -quiet -V HVCDROM -o %s %s", cd_iso,
		     dir) != 0)
		fail_msg("xorriso failed:\n%s", out);
	cd_iso_size = file_size(cd_iso);
	assert_int_equal(cd_iso_size % SECTOR, 0);
	assert_int_equal(test_run(out, sizeof(out), "cp %s %s && truncate -s %llu %s", cd_iso,
				  dvd_iso, (unsigned long long)DVD_SIZE, dvd_iso),
			 0);
	return 0;
}

static int group_teardown(void **state)
{
	test_close_tracked();
	return test_teardown_tmpdir(state);
}

int main(void)
{
	if (!test_have("xorriso")) {
		fprintf(stderr,
			"xorriso is missing: no ISO images to serve (scripts/install-deps.sh)\n");
		return TEST_SKIP;
	}
	if (!have_sg3())
		fprintf(stderr, "note: sg3-utils missing, INQUIRY/VPD/sense decoding not "
				"cross-checked (scripts/install-deps.sh)\n");
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_sr_probe_sequence),
		cmocka_unit_test(test_reads_match_iso),
		cmocka_unit_test(test_read_limits),
		cmocka_unit_test(test_no_medium_insert_eject),
		cmocka_unit_test(test_locked_tray),
		cmocka_unit_test(test_read_toc),
		cmocka_unit_test(test_writes_refused),
		cmocka_unit_test(test_request_sense),
		cmocka_unit_test(test_read_in_pieces),
		cmocka_unit_test(test_random_cdbs),
	};
	return cmocka_run_group_tests(tests, make_media, group_teardown);
}
