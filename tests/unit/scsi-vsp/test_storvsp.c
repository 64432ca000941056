/* storvsp driven by the test VSC playing Linux 6.1's hv_storvsc over the VMBus host:
 * protocol negotiation at every version storvsc knows (6.2, 6.0, 5.1, and 2.0 with the old
 * 48-byte packets), properties, sub-channels served by their own threads and queues,
 * READ/WRITE through GPA-direct page lists against a raw image (checked against the file)
 * and a VHDX (checked with qemu-img compare), the SCSI paths of the target (absent LUNs,
 * REPORT LUNS, sense, unit attentions), small rings that wrap and fill, unsolicited bus
 * notices, and hostile packets and teardown orders. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "endian.h"
#include "scsi_disk.h"
#include "storvsp.h"
#include "test_cli.h"
#include "test_disk.h"
#include "vdisk.h"
#include "vhdx.h"
#include "vmbus_device.h"
#include "vsc.h"

struct vdisk *test_open_disks[TEST_MAX_OPEN_DISKS];

#define MIB	     (1024u * 1024u)
#define RAW_SIZE     (16ull * MIB)
#define VHDX_SIZE    (32ull * MIB)
#define SEED	     23
#define CHANNELS     4
#define RING	     (33 * VSC_PAGE) /* storvsc: 128 KiB of data plus the header page */
#define STATUS_OK    0u
#define SRB_SUCCESS  0x01
#define SRB_ERROR    0x04
#define SRB_INVALID  0x06
#define SRB_BAD_LUN  0x20
#define SRB_AUTOSENS 0x80

static const uint16_t linux_versions[] = { 0x0602, 0x0600, 0x0501 };

/* ---- the rig: a raw image at LUN 0, a VHDX at LUN 1, one storvsp controller; room for a
 * third image (HOT) that tests attach at run time ---- */

#define HOT	 2 /* the rig's index of a hot-added image */
#define HOT_SEED 77

struct rig {
	struct vsc v;
	struct storvsp *sv;
	struct vdisk *disk[3]; /* atomic: channel threads poll the queues of those set */
	struct scsi_disk *target[3];
	char path[3][512];
	uint64_t low_buf;      /* 2 MiB of RAM0 for data buffers */
	bool kicked[CHANNELS]; /* atomic */
	unsigned kicks;
	/* threaded serving */
	bool threaded, stop;
	pthread_t threads[CHANNELS];
	struct server {
		struct rig *r;
		unsigned channel;
	} servers[CHANNELS];
	struct vsc_channel ch[CHANNELS];
	unsigned open_channels;
	uint16_t protocol;
	unsigned max_sub;
	uint32_t max_xfer;
};

static void on_kick(void *opaque, unsigned channel)
{
	struct rig *r = opaque;
	assert_true(channel < CHANNELS);
	__atomic_fetch_add(&r->kicks, 1, __ATOMIC_RELAXED);
	__atomic_store_n(&r->kicked[channel], true, __ATOMIC_RELEASE);
}

/* What a channel's thread does: serve the channel when kicked, and reap its queues. */
static void serve_channel(struct rig *r, unsigned c, bool wait)
{
	if (__atomic_exchange_n(&r->kicked[c], false, __ATOMIC_ACQ_REL))
		storvsp_poll(r->sv, c);
	for (unsigned d = 0; d < 3; d++) {
		struct vdisk *disk = __atomic_load_n(&r->disk[d], __ATOMIC_ACQUIRE);
		if (!disk)
			continue;
		struct vdisk_queue *q = vdisk_queue(disk, c);
		vdisk_queue_poll(q, wait && vdisk_queue_inflight(q) ? 1 : 0);
	}
}

static void pump(void *opaque)
{
	struct rig *r = opaque;
	if (r->threaded) {
		struct timespec ts = { 0, 20000 };
		nanosleep(&ts, NULL);
		return;
	}
	for (unsigned c = 0; c < CHANNELS; c++)
		serve_channel(r, c, true);
}

static void *channel_thread(void *arg)
{
	struct server *s = arg;
	struct rig *r = s->r;
	unsigned c = s->channel;
	while (!__atomic_load_n(&r->stop, __ATOMIC_ACQUIRE)) {
		serve_channel(r, c, false);
		struct timespec ts = { 0, 10000 };
		nanosleep(&ts, NULL);
	}
	return NULL;
}

static struct vdisk *open_disk(const char *path)
{
	struct vdisk_options o = { .cache = VDISK_CACHE_WRITEBACK, .queues = CHANNELS };
	struct vdisk *d;
	char err[256] = "";
	if (vdisk_open(path, &o, &d, err, sizeof(err)))
		fail_msg("open %s: %s", path, err);
	assert_int_equal(test_track_disk(d), 0);
	return d;
}

static struct storvsp_config rig_config(struct rig *r)
{
	struct storvsp_config cfg = {
		.controller = 0, .channels = CHANNELS, .kick = on_kick, .kick_opaque = r
	};
	cfg.luns[0] = (struct storvsp_lun){ scsi_target_of_disk(r->target[0]), r->disk[0] };
	cfg.luns[1] = (struct storvsp_lun){ scsi_target_of_disk(r->target[1]), r->disk[1] };
	return cfg;
}

static struct rig *rig_new(void)
{
	struct rig *r = test_xmalloc(sizeof(*r));
	memset(r, 0, sizeof(*r));
	snprintf(r->path[0], sizeof(r->path[0]), "%s", test_path("lun0.raw"));
	snprintf(r->path[1], sizeof(r->path[1]), "%s", test_path("lun1.vhdx"));
	test_write_file(r->path[0], RAW_SIZE, SEED);
	struct vdisk_create_options co = { .format = "vhdx", .size = VHDX_SIZE, .overwrite = true };
	char err[256] = "";
	if (vdisk_create(r->path[1], &co, err, sizeof(err)))
		fail_msg("create vhdx: %s", err);
	for (unsigned d = 0; d < 2; d++) {
		r->disk[d] = open_disk(r->path[d]);
		struct scsi_disk_config sc;
		assert_int_equal(scsi_disk_config_from_vdisk(r->disk[d], &sc), 0);
		assert_int_equal(scsi_disk_create(r->disk[d], &sc, &r->target[d]), 0);
	}
	vsc_init(&r->v, CHANNELS);
	r->v.pump = pump;
	r->v.pump_opaque = r;
	struct storvsp_config cfg = rig_config(r);
	assert_int_equal(storvsp_create(r->v.vb, &cfg, &r->sv), 0);
	vmbus_start(r->v.vb);
	return r;
}

/* The rig whose channel threads run, for a teardown after a failed assertion: it stops
 * them before the disks close under them (the failure is then reported, not a crash). */
static struct rig *threaded_rig;

/* Each channel served by its own thread from now on. */
static void start_threads(struct rig *r)
{
	threaded_rig = r;
	r->threaded = true;
	for (unsigned c = 0; c < CHANNELS; c++) {
		r->servers[c] = (struct server){ r, c };
		assert_int_equal(
			pthread_create(&r->threads[c], NULL, channel_thread, &r->servers[c]), 0);
	}
}

static void stop_threads(struct rig *r)
{
	if (!r->threaded)
		return;
	__atomic_store_n(&r->stop, true, __ATOMIC_RELEASE);
	for (unsigned c = 0; c < CHANNELS; c++)
		pthread_join(r->threads[c], NULL);
	r->threaded = false;
	threaded_rig = NULL;
}

/* Every request completes (or is dropped) before the controller goes. */
static void drain_all(struct rig *r)
{
	for (int i = 0; storvsp_inflight(r->sv) && i < 100000; i++)
		pump(r);
	assert_int_equal(storvsp_inflight(r->sv), 0);
}

static void rig_free(struct rig *r)
{
	stop_threads(r);
	vmbus_stop(r->v.vb);
	drain_all(r);
	storvsp_destroy(r->sv);
	vsc_fini(&r->v);
	for (unsigned d = 0; d < 3; d++) {
		scsi_disk_destroy(r->target[d]);
		if (r->disk[d])
			test_close_disk(r->disk[d]);
	}
	free(r);
}

static const struct vsc_offer *offer(struct rig *r, uint16_t sub)
{
	const struct vsc_offer *o = vsc_find_class_offer(&r->v, storvsp_scsi_class.bytes, sub);
	if (!o)
		fail_msg("no storvsp offer for sub-channel %u", sub);
	return o;
}

/* VMBus connected, the primary open; no storvsc init yet. */
static void connect_primary(struct rig *r)
{
	assert_int_equal(vsc_negotiate(&r->v), 0x50003);
	vsc_request_offers(&r->v);
	assert_int_equal(vsc_open(&r->v, offer(r, 0), RING, RING, 0, &r->ch[0]), 0);
	r->open_channels = 1;
}

/* storvsc's probe at the newest version. */
static struct rig *rig_ready(void)
{
	struct rig *r = rig_new();
	connect_primary(r);
	r->protocol = vsc_stor_init(&r->ch[0], linux_versions, 3, 64, &r->max_sub, &r->max_xfer);
	assert_int_equal(r->protocol, 0x0602);
	return r;
}

/* ---- CDBs ---- */

static unsigned cdb_rw10(uint8_t *cdb, uint8_t op, uint32_t lba, uint16_t blocks)
{
	memset(cdb, 0, 16);
	cdb[0] = op;
	store_be32(cdb + 2, lba);
	store_be16(cdb + 7, blocks);
	return 10;
}

static unsigned cdb_simple(uint8_t *cdb, uint8_t op, uint32_t alloc)
{
	memset(cdb, 0, 16);
	cdb[0] = op;
	switch (op) {
	case 0x12: /* INQUIRY */
		store_be16(cdb + 3, (uint16_t)alloc);
		return 6;
	case 0xA0: /* REPORT LUNS */
		store_be32(cdb + 6, alloc);
		return 12;
	case 0x9E: /* READ CAPACITY(16) */
		cdb[1] = 0x10;
		store_be32(cdb + 10, alloc);
		return 16;
	case 0x35: /* SYNCHRONIZE CACHE(10) */
		return 10;
	}
	return 6; /* TEST UNIT READY, and opcodes the target does not know */
}

#define assert_srb_good(res, want_xfer)                                                            \
	do {                                                                                       \
		const struct vsc_srb_result *r_ = (res);                                           \
		if (r_->srb_status != SRB_SUCCESS || r_->scsi_status != 0 || r_->status != 0)      \
			fail_msg("srb %02x scsi %02x status %08x sense %x/%02x/%02x",              \
				 r_->srb_status, r_->scsi_status, r_->status, r_->sense[2] & 15,   \
				 r_->sense[12], r_->sense[13]);                                    \
		assert_int_equal(r_->operation, 1);                                                \
		assert_int_equal(r_->xfer, (want_xfer));                                           \
	} while (0)

static void assert_check(const struct vsc_srb_result *res, uint8_t srb, uint8_t key, uint8_t asc,
			 uint8_t ascq)
{
	if (res->srb_status != srb || res->scsi_status != 2 || res->sense_len != 18 ||
	    (res->sense[2] & 15) != key || res->sense[12] != asc || res->sense[13] != ascq)
		fail_msg("want srb %02x CHECK %x/%02x/%02x, got srb %02x scsi %02x len %u "
			 "sense %x/%02x/%02x",
			 srb, key, asc, ascq, res->srb_status, res->scsi_status, res->sense_len,
			 res->sense[2] & 15, res->sense[12], res->sense[13]);
	assert_int_equal(res->xfer, 0);
}

static void assert_refused(const struct vsc_srb_result *res)
{
	assert_int_equal(res->operation, 1);
	assert_int_not_equal(res->status, 0);
}

/* ---- negotiation ---- */

/* INQUIRY on LUN 0 through the primary: checks the data, returns the reply's size. */
static size_t inquiry_reply_len(struct rig *r)
{
	uint8_t cdb[16];
	struct vsc_srb_result res;
	uint64_t buf = vsc_alloc(&r->v, VSC_PAGE);
	vsc_srb(&r->ch[0], 0, 0, cdb, cdb_simple(cdb, 0x12, 36), 1, buf, 36, &res);
	assert_srb_good(&res, 36);
	assert_memory_equal((uint8_t *)vsc_host(&r->v, buf) + 8, "Msft    ", 8);
	return res.reply_len;
}

static void test_protocol_versions(void **state)
{
	(void)state;
	/* Linux's order from each starting point: 6.2, 6.0, 5.1 */
	for (unsigned start = 0; start < 3; start++) {
		struct rig *r = rig_new();
		connect_primary(r);
		unsigned max_sub;
		uint32_t max_xfer;
		uint16_t v = vsc_stor_init(&r->ch[0], linux_versions + start, 3 - start, 64,
					   &max_sub, &max_xfer);
		assert_int_equal(v, linux_versions[start]);
		assert_int_equal(max_sub, CHANNELS - 1);
		assert_true(max_xfer >= 4096 && max_xfer % 4096 == 0);
		struct storvsp_stats st;
		storvsp_get_stats(r->sv, &st);
		assert_int_equal(st.protocol, v);
		assert_int_equal(inquiry_reply_len(r), 64);
		rig_free(r);
	}
	/* an old guest starts with 48-byte packets and moves to 64 once 6.2 is accepted */
	struct rig *r = rig_new();
	connect_primary(r);
	const uint16_t old[] = { 0x0602, 0x0200 };
	unsigned max_sub;
	uint32_t max_xfer;
	assert_int_equal(vsc_stor_init(&r->ch[0], old, 2, 48, &max_sub, &max_xfer), 0x0602);
	assert_int_equal(r->ch[0].pkt_len, 64);
	rig_free(r);
	/* a guest at 2.0: 48-byte packets both ways, no multi-channel */
	r = rig_new();
	connect_primary(r);
	assert_int_equal(vsc_stor_init(&r->ch[0], old + 1, 1, 48, &max_sub, &max_xfer), 0x0200);
	assert_int_equal(max_sub, 0);
	assert_int_equal(inquiry_reply_len(r), 48);
	assert_int_not_equal(vsc_stor_create_subchannels(&r->ch[0], 1), 0);
	rig_free(r);
	/* versions the host does not know: every one refused with REVISION_MISMATCH */
	r = rig_new();
	connect_primary(r);
	const uint16_t none[] = { 0x0700, 0x0603, 0x0101, 0x0000 };
	assert_int_equal(vsc_stor_init(&r->ch[0], none, 4, 64, &max_sub, &max_xfer), 0);
	rig_free(r);
}

/* Initialization out of order, and operations the host does not serve. */
static void test_init_order(void **state)
{
	(void)state;
	struct rig *r = rig_new();
	connect_primary(r);
	struct vsc_channel *ch = &r->ch[0];
	uint8_t pkt[64], reply[64];
	const struct {
		uint32_t op;
		bool ok;
	} steps[] = {
		{ 8, false },  /* END before BEGIN */
		{ 10, false }, /* PROPERTIES before BEGIN */
		{ 3, false },  /* EXECUTE_SRB before init */
		{ 7, true },   /* BEGIN */
		{ 7, false },  /* BEGIN again */
		{ 10, false }, /* PROPERTIES before a version */
		{ 8, false },  /* END before a version */
		{ 13, false }, /* sub-channels before END */
	};
	for (unsigned i = 0; i < sizeof(steps) / sizeof(steps[0]); i++) {
		memset(pkt, 0, sizeof(pkt));
		store_le32(pkt, steps[i].op);
		store_le32(pkt + 4, 1);
		assert_int_equal(vsc_stor_request(ch, pkt, reply), 64);
		assert_int_equal(load_le32(reply), 1);
		if (steps[i].ok)
			assert_int_equal(load_le32(reply + 8), 0);
		else
			assert_int_not_equal(load_le32(reply + 8), 0);
	}
	/* operations a guest does not send: refused with a status */
	const uint32_t odd[] = { 1, 2, 11, 12, 14, 99, UINT32_MAX };
	for (unsigned i = 0; i < sizeof(odd) / sizeof(odd[0]); i++) {
		memset(pkt, 0, sizeof(pkt));
		store_le32(pkt, odd[i]);
		vsc_stor_request(ch, pkt, reply);
		assert_int_equal(load_le32(reply), 1);
		assert_int_not_equal(load_le32(reply + 8), 0);
	}
	struct storvsp_stats st;
	storvsp_get_stats(r->sv, &st);
	assert_true(st.bad_packets >= 7);
	rig_free(r);
}

/* ---- I/O ---- */

/* A guest buffer of len bytes at a byte offset into its first page, in RAM0 or RAM1. */
static uint64_t guest_buffer(struct rig *r, uint32_t len, uint32_t offset, bool high)
{
	assert_true(len + offset <= 2 * MIB);
	if (high)
		return VSC_RAM1_GPA + 5 * VSC_PAGE + offset;
	if (!r->low_buf)
		r->low_buf = vsc_alloc(&r->v, 2 * MIB);
	return r->low_buf + offset;
}

static void test_read_write_raw(void **state)
{
	(void)state;
	struct rig *r = rig_ready();
	struct vsc_channel *ch = &r->ch[0];
	uint64_t seed = 99;
	uint8_t cdb[16];
	struct vsc_srb_result res;
	for (unsigned i = 0; i < 60; i++) {
		uint16_t blocks = (uint16_t)(1 + test_rnd_below(&seed, 256));
		uint32_t lba = (uint32_t)test_rnd_below(&seed, RAW_SIZE / 512 - blocks);
		uint32_t len = blocks * 512u;
		uint32_t offset = (uint32_t)test_rnd_below(&seed, 8) * 512;
		uint64_t gpa = guest_buffer(r, len, offset, i % 3 == 0);
		uint8_t *host = vsc_host(&r->v, gpa);
		uint8_t *want = test_xmalloc(len);
		if (i % 2) { /* write a fresh pattern, then check the file */
			test_fill_pattern(host, len, (uint64_t)lba * 512, SEED + i);
			vsc_srb(ch, 0, 0, cdb, cdb_rw10(cdb, 0x2A, lba, blocks), 0, gpa, len, &res);
			assert_srb_good(&res, len);
			test_file_read(r->path[0], want, len, (uint64_t)lba * 512);
			test_expect_equal(want, host, len, "raw image after WRITE", lba * 512ull);
		} else { /* read, and compare with the file */
			memset(host, 0xEE, len);
			vsc_srb(ch, 0, 0, cdb, cdb_rw10(cdb, 0x28, lba, blocks), 1, gpa, len, &res);
			assert_srb_good(&res, len);
			test_file_read(r->path[0], want, len, (uint64_t)lba * 512);
			test_expect_equal(host, want, len, "READ from the raw image", lba * 512ull);
		}
		free(want);
	}
	struct storvsp_stats st;
	storvsp_get_stats(r->sv, &st);
	assert_int_equal(st.reads, 30);
	assert_int_equal(st.writes, 30);
	assert_int_equal(st.requests, 60);
	assert_int_equal(st.errors, 0);
	rig_free(r);
}

static void test_read_write_vhdx(void **state)
{
	(void)state;
	struct rig *r = rig_ready();
	struct vsc_channel *ch = &r->ch[0];
	const char *ref = test_path("ref.raw");
	FILE *f = fopen(ref, "w");
	assert_non_null(f);
	fclose(f);
	assert_int_equal(truncate(ref, VHDX_SIZE), 0);
	uint8_t cdb[16];
	struct vsc_srb_result res;
	uint64_t seed = 5;
	for (unsigned i = 0; i < 40; i++) {
		uint16_t blocks = (uint16_t)(1 + test_rnd_below(&seed, 2048));
		uint32_t lba = (uint32_t)test_rnd_below(&seed, VHDX_SIZE / 512 - blocks);
		uint32_t len = blocks * 512u;
		uint64_t gpa = guest_buffer(r, len, (uint32_t)test_rnd_below(&seed, 4096), false);
		uint8_t *host = vsc_host(&r->v, gpa);
		test_fill_pattern(host, len, (uint64_t)lba * 512, SEED + i);
		vsc_srb(ch, 0, 1, cdb, cdb_rw10(cdb, 0x2A, lba, blocks), 0, gpa, len, &res);
		assert_srb_good(&res, len);
		test_file_write(ref, host, len, (uint64_t)lba * 512);
		/* read back through another buffer */
		uint64_t back = guest_buffer(r, len, 0, true);
		vsc_srb(ch, 0, 1, cdb, cdb_rw10(cdb, 0x28, lba, blocks), 1, back, len, &res);
		assert_srb_good(&res, len);
		test_expect_equal(vsc_host(&r->v, back), host, len, "VHDX read back", lba * 512ull);
	}
	vsc_srb(ch, 0, 1, cdb, cdb_simple(cdb, 0x35, 0), 2, 0, 0, &res);
	assert_srb_good(&res, 0);
	rig_free(r);
	if (!test_have("qemu-img"))
		skip();
	char out[4096];
	if (test_run(out, sizeof(out), "qemu-img compare -f vhdx -F raw '%s' '%s'",
		     test_path("lun1.vhdx"), ref))
		fail_msg("qemu-img compare: %s", out);
}

/* The target's SCSI paths as storvsc sees them through SRB status, SCSI status, sense
 * and the transfer length. */
static void test_scsi_paths(void **state)
{
	(void)state;
	struct rig *r = rig_ready();
	struct vsc_channel *ch = &r->ch[0];
	uint8_t cdb[16];
	struct vsc_srb_result res;
	uint64_t buf = vsc_alloc(&r->v, 4 * VSC_PAGE);
	uint8_t *host = vsc_host(&r->v, buf);
	/* REPORT LUNS on target 0 lists LUNs 0 and 1; target 1 holds none */
	vsc_srb(ch, 0, 0, cdb, cdb_simple(cdb, 0xA0, 256), 1, buf, 256, &res);
	assert_srb_good(&res, 24);
	assert_int_equal(load_be32(host), 16);
	assert_int_equal(load_be16(host + 8), 0);
	assert_int_equal(load_be16(host + 16), 1);
	vsc_srb(ch, 1, 0, cdb, cdb_simple(cdb, 0xA0, 256), 1, buf, 256, &res);
	assert_srb_good(&res, 8);
	assert_int_equal(load_be32(host), 0);
	/* an absent LUN: INQUIRY answers 7Fh (Linux ignores its status), anything else
	 * INVALID_LUN with LOGICAL UNIT NOT SUPPORTED */
	vsc_srb(ch, 0, 5, cdb, cdb_simple(cdb, 0x12, 36), 1, buf, 36, &res);
	assert_srb_good(&res, 36);
	assert_int_equal(host[0], 0x7F);
	vsc_srb(ch, 0, 5, cdb, cdb_simple(cdb, 0x00, 0), 2, 0, 0, &res);
	assert_check(&res, SRB_BAD_LUN | SRB_AUTOSENS, 5, 0x25, 0);
	vsc_srb(ch, 1, 0, cdb, cdb_simple(cdb, 0x00, 0), 2, 0, 0, &res);
	assert_check(&res, SRB_BAD_LUN | SRB_AUTOSENS, 5, 0x25, 0);
	vsc_srb(ch, 0, 200, cdb, cdb_simple(cdb, 0x00, 0), 2, 0, 0, &res);
	assert_check(&res, SRB_BAD_LUN | SRB_AUTOSENS, 5, 0x25, 0);
	/* READ CAPACITY(16): the image's size */
	vsc_srb(ch, 0, 0, cdb, cdb_simple(cdb, 0x9E, 32), 1, buf, 32, &res);
	assert_srb_good(&res, 32);
	assert_int_equal(load_be64(host) + 1, RAW_SIZE / 512);
	assert_int_equal(load_be32(host + 8), 512);
	/* an unknown opcode: ERROR with sense, INVALID COMMAND OPERATION CODE */
	vsc_srb(ch, 0, 0, cdb, cdb_simple(cdb, 0xFF, 0), 2, 0, 0, &res);
	assert_check(&res, SRB_ERROR | SRB_AUTOSENS, 5, 0x20, 0);
	/* pages past the end of the disk: LBA OUT OF RANGE, no data moved */
	memset(host, 0x5A, 8 * 512);
	vsc_srb(ch, 0, 0, cdb, cdb_rw10(cdb, 0x28, RAW_SIZE / 512 - 4, 8), 1, buf, 8 * 512, &res);
	assert_check(&res, SRB_ERROR | SRB_AUTOSENS, 5, 0x21, 0);
	assert_int_equal(host[0], 0x5A);
	/* a READ longer than its buffer: refused whole */
	vsc_srb(ch, 0, 0, cdb, cdb_rw10(cdb, 0x28, 0, 8), 1, buf, 512, &res);
	assert_check(&res, SRB_ERROR | SRB_AUTOSENS, 5, 0x24, 0);
	/* RESET_BUS (storvsc's host reset): then a unit attention, once */
	uint8_t pkt[64] = { 0 }, reply[64];
	store_le32(pkt, 6);
	store_le32(pkt + 4, 1);
	vsc_stor_request(ch, pkt, reply);
	assert_int_equal(load_le32(reply + 8), 0);
	vsc_srb(ch, 0, 0, cdb, cdb_simple(cdb, 0x00, 0), 2, 0, 0, &res);
	assert_check(&res, SRB_ERROR | SRB_AUTOSENS, 6, 0x29, 0);
	vsc_srb(ch, 0, 0, cdb, cdb_simple(cdb, 0x00, 0), 2, 0, 0, &res);
	assert_srb_good(&res, 0);
	/* a short sense buffer: only what the guest has room for */
	uint64_t id = vsc_srb_send(ch, 0, cdb, cdb_simple(cdb, 0xFF, 0), 2, 0, 0);
	vsc_srb_wait(ch, id, &res);
	assert_int_equal(res.sense_len, 18);
	rig_free(r);
}

/* ---- sub-channels ---- */

static void open_subchannels(struct rig *r)
{
	assert_int_equal(r->max_sub, CHANNELS - 1);
	assert_int_equal(vsc_stor_create_subchannels(&r->ch[0], CHANNELS - 1), 0);
	assert_int_equal(vsc_collect_offers(&r->v, CHANNELS - 1), CHANNELS - 1);
	for (unsigned c = 1; c < CHANNELS; c++) {
		const struct vsc_offer *o = offer(r, (uint16_t)c);
		assert_memory_equal(o->instance, offer(r, 0)->instance, 16);
		assert_int_equal(vsc_open(&r->v, o, RING, RING, c, &r->ch[c]), 0);
		r->ch[c].pkt_len = 64;
	}
	r->open_channels = CHANNELS;
}

static void test_subchannels_own_threads(void **state)
{
	(void)state;
	struct rig *r = rig_ready();
	open_subchannels(r);
	/* no sub-channel may run initialization or create more */
	uint8_t pkt[64] = { 0 }, reply[64];
	store_le32(pkt, 7);
	vsc_stor_request(&r->ch[2], pkt, reply);
	assert_int_not_equal(load_le32(reply + 8), 0);
	assert_int_not_equal(vsc_stor_create_subchannels(&r->ch[0], CHANNELS), 0);
	start_threads(r);
	uint8_t cdb[16];
	uint64_t bufs[CHANNELS];
	for (unsigned c = 0; c < CHANNELS; c++)
		bufs[c] = vsc_alloc(&r->v, 64 * 1024);
	for (unsigned round = 0; round < 20; round++) {
		uint64_t ids[CHANNELS];
		for (unsigned c = 0; c < CHANNELS; c++) {
			uint32_t lba = (round * CHANNELS + c) * 128;
			ids[c] = vsc_srb_send(&r->ch[c], (uint8_t)(c % 2), cdb,
					      cdb_rw10(cdb, 0x28, lba, 128), 1, bufs[c], 64 * 1024);
		}
		for (unsigned c = 0; c < CHANNELS; c++) {
			struct vsc_srb_result res;
			vsc_srb_wait(&r->ch[c], ids[c], &res);
			assert_srb_good(&res, 64 * 1024);
			if (c % 2 == 0) {
				uint32_t lba = (round * CHANNELS + c) * 128;
				test_expect_pattern(vsc_host(&r->v, bufs[c]), 64 * 1024,
						    (uint64_t)lba * 512, SEED,
						    "READ on a sub-channel");
			}
		}
	}
	/* each channel's completions were signalled from the thread serving it */
	for (unsigned c = 0; c < CHANNELS; c++) {
		uint32_t relid = r->ch[c].offer.relid;
		assert_true(r->v.signals[relid] > 0);
		assert_true(pthread_equal(r->v.signal_thread[relid], r->threads[c]));
	}
	struct storvsp_stats st;
	storvsp_get_stats(r->sv, &st);
	assert_int_equal(st.subchannels, CHANNELS - 1);
	assert_int_equal(st.reads, 20 * CHANNELS);
	rig_free(r);
}

/* ---- the ring left masked while requests are in flight ---- */

static uint32_t guest_to_host_mask(const struct vsc_channel *ch)
{
	return load_le32(ch->send_hdr + 8);
}

/* Requests the guest adds while the host keeps its ring masked make no signal; the
 * completions of those in flight find them and start them, with no kick; the last one
 * unmasks the ring, so the guest's next request signals again (no lost wake-up). */
static void test_masked_ring_completions_poll(void **state)
{
	(void)state;
	struct rig *r = rig_ready();
	struct vsc_channel *ch = &r->ch[0];
	struct vdisk_queue *q = vdisk_queue(r->disk[0], 0);
	const unsigned first = 8, later = 8;
	uint64_t buf = vsc_alloc(&r->v, (first + later) * 4096ull);
	uint8_t cdb[16];
	unsigned signals = ch->guest_signals;
	for (unsigned i = 0; i < first; i++)
		vsc_srb_send(ch, 0, cdb, cdb_rw10(cdb, 0x28, i * 8, 8), 1, buf + i * 4096ull, 4096);
	assert_int_equal(ch->guest_signals, signals + 1); /* only the first into an idle host */
	assert_true(__atomic_exchange_n(&r->kicked[0], false, __ATOMIC_ACQ_REL));
	assert_int_equal(storvsp_poll(r->sv, 0), first);
	assert_int_equal(storvsp_inflight(r->sv), first);
	assert_int_equal(guest_to_host_mask(ch), 1);
	for (unsigned i = first; i < first + later; i++)
		vsc_srb_send(ch, 0, cdb, cdb_rw10(cdb, 0x28, i * 8, 8), 1, buf + i * 4096ull, 4096);
	assert_int_equal(ch->guest_signals, signals + 1);
	/* only the queue is reaped: the host takes the new requests from completions */
	unsigned kicks = __atomic_load_n(&r->kicks, __ATOMIC_RELAXED);
	for (int i = 0; storvsp_inflight(r->sv) && i < 100000; i++)
		vdisk_queue_poll(q, 1);
	assert_int_equal(storvsp_inflight(r->sv), 0);
	assert_int_equal(__atomic_load_n(&r->kicks, __ATOMIC_RELAXED), kicks);
	assert_false(__atomic_load_n(&r->kicked[0], __ATOMIC_ACQUIRE));
	assert_int_equal(guest_to_host_mask(ch), 0);
	for (unsigned n = 0; n < first + later; n++) {
		struct vsc_srb_result res;
		uint64_t id = vsc_srb_wait_any(ch, &res);
		assert_srb_good(&res, 4096);
		assert_true(id >= 1);
	}
	for (unsigned i = 0; i < first + later; i++)
		test_expect_pattern(vsc_host(&r->v, buf + i * 4096ull), 4096, i * 4096ull, SEED,
				    "READ started by a completion");
	/* idle and unmasked: the next request signals and kicks */
	struct vsc_srb_result res;
	vsc_srb(ch, 0, 0, cdb, cdb_rw10(cdb, 0x28, 0, 8), 1, buf, 4096, &res);
	assert_srb_good(&res, 4096);
	assert_int_equal(ch->guest_signals, signals + 2);
	assert_true(__atomic_load_n(&r->kicks, __ATOMIC_RELAXED) > kicks);
	struct storvsp_stats st;
	storvsp_get_stats(r->sv, &st);
	assert_int_equal(st.reads, first + later + 1);
	rig_free(r);
}

/* ---- rings ---- */

static void test_small_rings(void **state)
{
	(void)state;
	struct rig *r = rig_new();
	assert_int_equal(vsc_negotiate(&r->v), 0x50003);
	vsc_request_offers(&r->v);
	/* 8 KiB guest->host, 4 KiB host->guest: completions (88 bytes each) wrap constantly */
	struct vsc_channel *ch = &r->ch[0];
	assert_int_equal(vsc_open(&r->v, offer(r, 0), 3 * VSC_PAGE, 2 * VSC_PAGE, 0, ch), 0);
	unsigned max_sub;
	uint32_t max_xfer;
	assert_int_equal(vsc_stor_init(ch, linux_versions, 3, 64, &max_sub, &max_xfer), 0x0602);
	uint8_t cdb[16];
	struct vsc_srb_result res;
	uint64_t buf = vsc_alloc(&r->v, 4096);
	for (unsigned i = 0; i < 300; i++) {
		vsc_srb(ch, 0, 0, cdb, cdb_rw10(cdb, 0x28, i, 8), 1, buf, 4096, &res);
		assert_srb_good(&res, 4096);
		test_expect_pattern(vsc_host(&r->v, buf), 4096, i * 512ull, SEED, "READ");
	}
	/* more requests than the reply ring holds, before the guest reads any reply: the
	 * host parks replies, asks for room, and every one arrives once */
	const unsigned sent = 80;
	uint64_t first = ch->next_trans;
	for (unsigned i = 0; i < sent; i++) {
		vsc_srb_send(ch, 0, cdb, cdb_simple(cdb, 0x00, 0), 2, 0, 0);
		pump(r);
	}
	assert_int_not_equal(load_le32(ch->recv_hdr + 12), 0); /* pending_send_sz */
	bool seen[80] = { 0 };
	for (unsigned i = 0; i < sent; i++) {
		uint64_t id = vsc_srb_wait_any(ch, &res);
		assert_srb_good(&res, 0);
		assert_true(id >= first && id < first + sent);
		assert_false(seen[id - first]);
		seen[id - first] = true;
	}
	struct storvsp_stats st;
	storvsp_get_stats(r->sv, &st);
	assert_true(st.ring_full >= 1);
	rig_free(r);
}

static void test_bus_notices(void **state)
{
	(void)state;
	struct rig *r = rig_new();
	assert_int_equal(storvsp_notify_luns_changed(r->sv, false), -ENOTCONN);
	connect_primary(r);
	assert_int_equal(storvsp_notify_luns_changed(r->sv, false), -ENOTCONN);
	r->protocol = vsc_stor_init(&r->ch[0], linux_versions, 3, 64, &r->max_sub, &r->max_xfer);
	assert_int_equal(storvsp_notify_luns_changed(r->sv, false), 0);
	uint8_t cdb[16];
	struct vsc_srb_result res;
	vsc_srb(&r->ch[0], 0, 0, cdb, cdb_simple(cdb, 0x00, 0), 2, 0, 0, &res);
	assert_int_equal(r->ch[0].notices, 1);
	assert_int_equal(r->ch[0].last_notice, 11); /* ENUMERATE_BUS */
	assert_int_equal(storvsp_notify_luns_changed(r->sv, true), 0);
	vsc_srb(&r->ch[0], 0, 0, cdb, cdb_simple(cdb, 0x00, 0), 2, 0, 0, &res);
	assert_int_equal(r->ch[0].notices, 2);
	assert_int_equal(r->ch[0].last_notice, 2); /* REMOVE_DEVICE */
	rig_free(r);
}

/* ---- hostile packets ---- */

/* Writes a raw packet (descriptor fields and bytes after the descriptor as given). */
static void raw_packet(struct vsc_channel *ch, uint16_t type, const void *extra, size_t extra_len,
		       const void *payload, size_t len, uint64_t id)
{
	assert_int_equal(vsc_ring_write(ch, type, 1, id, extra, extra_len, payload, len), 0);
}

static void srb_packet(uint8_t *pkt, uint8_t cdb_len, uint8_t data_in, uint32_t xfer)
{
	memset(pkt, 0, 64);
	store_le32(pkt, 3);
	store_le32(pkt + 4, 1);
	store_le16(pkt + 12, 0x34);
	pkt[20] = cdb_len;
	pkt[21] = 0x14;
	pkt[22] = data_in;
	store_le32(pkt + 24, xfer);
	cdb_rw10(pkt + 28, 0x28, 0, (uint16_t)(xfer / 512));
}

/* GPA-direct ranges: rangecount, then {len, offset, pfns}. */
static size_t gpa_ranges(uint8_t *e, uint32_t count, uint32_t len, uint32_t offset,
			 const uint64_t *pfns, unsigned npfns)
{
	memset(e, 0, 16 + 8 * (size_t)npfns);
	store_le32(e + 4, count);
	store_le32(e + 8, len);
	store_le32(e + 12, offset);
	for (unsigned i = 0; i < npfns; i++)
		store_le64(e + 16 + 8 * i, pfns[i]);
	return 16 + 8 * (size_t)npfns;
}

static void test_hostile_packets(void **state)
{
	(void)state;
	struct rig *r = rig_ready();
	struct vsc_channel *ch = &r->ch[0];
	uint64_t buf = vsc_alloc(&r->v, 2 * VSC_PAGE);
	uint64_t pfn = buf / VSC_PAGE;
	uint8_t pkt[64], extra[256];
	struct vsc_srb_result res;
	uint64_t id = 500;
	/* too short for a vstor packet; a packet type storvsc never sends */
	raw_packet(ch, 6, NULL, 0, "\x03\0\0\0", 4, ++id);
	vsc_srb_wait(ch, id, &res);
	assert_refused(&res);
	srb_packet(pkt, 10, 1, 512);
	raw_packet(ch, 11, NULL, 0, pkt, 64, ++id);
	vsc_srb_wait(ch, id, &res);
	assert_refused(&res);
	/* bad SRB fields: CDB length 0 and 17, data_in 7, a transfer past the limit, a
	 * 48-byte SRB after 6.2 was negotiated */
	const struct {
		uint8_t cdb_len, data_in;
		uint32_t xfer;
		size_t len;
	} bad[] = { { 0, 2, 0, 64 },
		    { 17, 2, 0, 64 },
		    { 10, 7, 0, 64 },
		    { 10, 1, STORVSP_MAX_TRANSFER_BYTES + 512, 64 },
		    { 10, 2, 0, 48 } };
	for (unsigned i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		srb_packet(pkt, bad[i].cdb_len, bad[i].data_in, bad[i].xfer);
		raw_packet(ch, 6, NULL, 0, pkt, bad[i].len, ++id);
		vsc_srb_wait(ch, id, &res);
		assert_refused(&res);
		assert_int_equal(res.srb_status, SRB_INVALID);
	}
	/* GPA-direct descriptors: no range, too many ranges, a zero length, an offset past the
	 * page, a PFN array that runs past the descriptor, pages in the hole and past RAM */
	srb_packet(pkt, 10, 1, 4096);
	const uint64_t good[2] = { pfn, pfn + 1 };
	const uint64_t hole[2] = { (VSC_RAM0_SIZE / VSC_PAGE) + 2, pfn };
	const uint64_t past[2] = { pfn, (VSC_RAM1_GPA + VSC_RAM1_SIZE) / VSC_PAGE };
	const uint64_t huge[2] = { UINT64_MAX, pfn };
	struct {
		uint32_t count, len, offset;
		const uint64_t *pfns;
		unsigned npfns;
	} descs[] = { { 0, 4096, 0, good, 1 },	 { 9, 4096, 0, good, 1 },
		      { 1, 0, 0, good, 1 },	 { 1, 4096, 4096, good, 2 },
		      { 1, 8192, 0, good, 1 },	 { 1, 4096, 100, good, 1 },
		      { 1, 4096, 100, hole, 2 }, { 1, 4096, 100, past, 2 },
		      { 1, 4096, 0, huge, 1 },	 { 2, 4096, 0, good, 1 } };
	for (unsigned i = 0; i < sizeof(descs) / sizeof(descs[0]); i++) {
		size_t n = gpa_ranges(extra, descs[i].count, descs[i].len, descs[i].offset,
				      descs[i].pfns, descs[i].npfns);
		raw_packet(ch, 9, extra, n, pkt, 64, ++id);
		vsc_srb_wait(ch, id, &res);
		assert_refused(&res);
	}
	/* a packet bigger than any storvsc sends */
	uint8_t *big = test_xmalloc(6000);
	memset(big, 0, 6000);
	memcpy(big, pkt, 64);
	raw_packet(ch, 6, NULL, 0, big, 6000, ++id);
	vsc_srb_wait(ch, id, &res);
	assert_refused(&res);
	free(big);
	/* random packets of every kind: each answered, the channel alive */
	uint64_t seed = test_env_seed("STORVSP_SEED");
	for (unsigned i = 0; i < 3000; i++) {
		for (size_t b = 0; b < 64; b++)
			pkt[b] = (uint8_t)test_rnd(&seed);
		store_le32(pkt, (uint32_t)test_rnd_below(&seed, 15));
		pkt[17] = pkt[18] = 0;
		pkt[19] = (uint8_t)test_rnd_below(&seed, 3);
		pkt[20] = (uint8_t)test_rnd_below(&seed, 18);
		if (load_le32(pkt) == 13 || load_le32(pkt) == 5 || load_le32(pkt) == 6 ||
		    load_le32(pkt) == 4)
			store_le32(pkt, 3); /* keep the bus as it is */
		store_le32(pkt + 24, (uint32_t)test_rnd_below(&seed, 3 * VSC_PAGE));
		size_t n = gpa_ranges(extra, 1, 1 + (uint32_t)test_rnd_below(&seed, 8000),
				      (uint32_t)test_rnd_below(&seed, 4096), good, 2);
		if (test_rnd_below(&seed, 2))
			raw_packet(ch, 9, extra, n, pkt, 64, ++id);
		else
			raw_packet(ch, 6, NULL, 0, pkt, 64, ++id);
		vsc_srb_wait(ch, id, &res);
		assert_int_equal(res.operation, 1);
	}
	/* after all that, plain I/O still works */
	uint8_t cdb[16];
	vsc_srb(ch, 0, 0, cdb, cdb_rw10(cdb, 0x28, 8, 8), 1, buf, 4096, &res);
	assert_srb_good(&res, 4096);
	test_expect_pattern(vsc_host(&r->v, buf), 4096, 8 * 512, SEED, "READ after hostility");
	/* a corrupt ring stops the channel: no reply, no crash */
	store_le32(ch->send_hdr, ch->send_size + 8);
	assert_int_equal(vmbus_signal_event(r->v.vb, ch->offer.connection_id, 0), 0);
	for (int i = 0; i < 10; i++)
		pump(r);
	struct vmbus_stats vs;
	vmbus_get_stats(r->v.vb, &vs);
	assert_int_equal(vs.ring_errors, 1);
	rig_free(r);
}

/* ---- teardown in the middle of I/O ---- */

static void start_reads(struct rig *r, struct vsc_channel *ch, unsigned n, uint64_t buf)
{
	uint8_t cdb[16];
	for (unsigned i = 0; i < n; i++)
		vsc_srb_send(ch, 0, cdb, cdb_rw10(cdb, 0x28, i * 64, 64), 1, buf + i * 32768,
			     32768);
	/* the host takes them and starts the I/O, but the guest reads no completion */
	for (unsigned c = 0; c < CHANNELS; c++)
		if (__atomic_exchange_n(&r->kicked[c], false, __ATOMIC_ACQ_REL))
			storvsp_poll(r->sv, c);
	assert_true(storvsp_inflight(r->sv) > 0);
}

static void test_teardown_mid_io(void **state)
{
	(void)state;
	for (unsigned how = 0; how < 3; how++) {
		struct rig *r = rig_ready();
		uint64_t buf = vsc_alloc(&r->v, 16 * 32768);
		start_reads(r, &r->ch[0], 16, buf);
		/* snapshot the host->guest ring: nothing may be written there afterwards */
		uint8_t *ring = test_xmalloc(RING);
		if (how == 0) { /* the guest closes the channel and takes its ring back */
			vsc_close(&r->ch[0]);
		} else if (how == 1) { /* the guest unloads VMBus */
			uint8_t msg[8] = { 0 };
			store_le32(msg, VSC_UNLOAD);
			vsc_send(&r->v, msg, sizeof(msg));
			struct vsc_msg m;
			vsc_expect(&r->v, VSC_UNLOAD_RESPONSE, &m);
		} else { /* the VM reboots */
			vmbus_reset(r->v.vb);
		}
		memcpy(ring, r->ch[0].recv_hdr, RING);
		drain_all(r);
		assert_memory_equal(ring, r->ch[0].recv_hdr, RING);
		free(ring);
		/* and the guest comes back: a new probe on the same controller works */
		if (how == 0) {
			assert_int_equal(vsc_open(&r->v, offer(r, 0), RING, RING, 0, &r->ch[0]), 0);
		} else {
			r->v.noffers = 0;
			connect_primary(r);
		}
		unsigned max_sub;
		uint32_t max_xfer;
		assert_int_equal(
			vsc_stor_init(&r->ch[0], linux_versions, 3, 64, &max_sub, &max_xfer),
			0x0602);
		uint8_t cdb[16];
		struct vsc_srb_result res;
		vsc_srb(&r->ch[0], 0, 0, cdb, cdb_rw10(cdb, 0x28, 0, 8), 1, buf, 4096, &res);
		assert_srb_good(&res, 4096);
		rig_free(r);
	}
}

/* ---- LUNs at run time ---- */

static struct storvsp_lun rig_lun(struct rig *r, unsigned d)
{
	return (struct storvsp_lun){ scsi_target_of_disk(r->target[d]), r->disk[d] };
}

/* A raw image of its own pattern, opened with a target, for attaching as LUN HOT_LUN. */
static void make_hot_disk(struct rig *r, uint64_t size)
{
	snprintf(r->path[HOT], sizeof(r->path[HOT]), "%s", test_path("hot.raw"));
	test_write_file(r->path[HOT], size, HOT_SEED);
	struct vdisk *disk = open_disk(r->path[HOT]);
	struct scsi_disk_config sc;
	assert_int_equal(scsi_disk_config_from_vdisk(disk, &sc), 0);
	assert_int_equal(scsi_disk_create(disk, &sc, &r->target[HOT]), 0);
	__atomic_store_n(&r->disk[HOT], disk, __ATOMIC_RELEASE);
}

/* REPORT LUNS on target 0: the LUNs listed, in *luns; returns their count. */
static unsigned report_luns(struct rig *r, struct vsc_channel *ch, uint16_t *luns)
{
	uint8_t cdb[16];
	struct vsc_srb_result res;
	uint64_t buf = guest_buffer(r, 1024, 0, true);
	uint8_t *host = vsc_host(&r->v, buf);
	vsc_srb(ch, 0, 0, cdb, cdb_simple(cdb, 0xA0, 1024), 1, buf, 1024, &res);
	assert_int_equal(res.srb_status, SRB_SUCCESS);
	unsigned n = load_be32(host) / 8;
	for (unsigned i = 0; i < n; i++)
		luns[i] = load_be16(host + 8 + 8 * i);
	return n;
}

static void expect_lun_stats(struct rig *r, unsigned lun, const struct storvsp_lun_stats *want)
{
	struct storvsp_lun_stats got;
	assert_int_equal(storvsp_get_lun_stats(r->sv, lun, &got), 0);
	assert_int_equal(got.reads, want->reads);
	assert_int_equal(got.writes, want->writes);
	assert_int_equal(got.read_bytes, want->read_bytes);
	assert_int_equal(got.write_bytes, want->write_bytes);
	assert_int_equal(got.flushes, want->flushes);
	assert_int_equal(got.errors, want->errors);
}

#define HOT_LUN	 9
#define HOT_SIZE (4ull * MIB)

/* A disk attached while every channel's thread runs reads: the guest is told (an
 * ENUMERATE_BUS on the primary), REPORT LUNS lists it, and its data reads back. */
static void test_attach_under_io(void **state)
{
	(void)state;
	struct rig *r = rig_ready();
	open_subchannels(r);
	start_threads(r);
	make_hot_disk(r, HOT_SIZE);
	uint8_t cdb[16];
	struct vsc_srb_result res;
	uint64_t bufs[CHANNELS];
	for (unsigned c = 0; c < CHANNELS; c++)
		bufs[c] = vsc_alloc(&r->v, 64 * 1024);
	uint64_t ids[CHANNELS];
	for (unsigned c = 0; c < CHANNELS; c++)
		ids[c] = vsc_srb_send(&r->ch[c], 0, cdb, cdb_rw10(cdb, 0x28, c * 128, 128), 1,
				      bufs[c], 64 * 1024);
	/* an absent LUN until now */
	struct storvsp_lun hot = rig_lun(r, HOT);
	assert_int_equal(storvsp_attach_lun(r->sv, HOT_LUN, &hot), 0);
	assert_int_equal(storvsp_notify_luns_changed(r->sv, false), 0);
	for (unsigned c = 0; c < CHANNELS; c++) {
		vsc_srb_wait(&r->ch[c], ids[c], &res);
		assert_srb_good(&res, 64 * 1024);
		test_expect_pattern(vsc_host(&r->v, bufs[c]), 64 * 1024, c * 128 * 512ull, SEED,
				    "READ while a LUN came");
	}
	uint16_t luns[STORVSP_MAX_LUNS];
	assert_int_equal(report_luns(r, &r->ch[0], luns), 3);
	assert_int_equal(luns[0], 0);
	assert_int_equal(luns[1], 1);
	assert_int_equal(luns[2], HOT_LUN);
	assert_int_equal(r->ch[0].notices, 1);
	assert_int_equal(r->ch[0].last_notice, 11); /* ENUMERATE_BUS */
	/* storvsc's scan: INQUIRY, then reads on every channel from the new image */
	uint64_t buf = bufs[0];
	vsc_srb(&r->ch[1], 0, HOT_LUN, cdb, cdb_simple(cdb, 0x12, 36), 1, buf, 36, &res);
	assert_srb_good(&res, 36);
	assert_int_equal(((uint8_t *)vsc_host(&r->v, buf))[0], 0x00); /* a disk */
	for (unsigned c = 0; c < CHANNELS; c++) {
		uint32_t lba = 1000 + c * 64;
		vsc_srb(&r->ch[c], 0, HOT_LUN, cdb, cdb_rw10(cdb, 0x28, lba, 64), 1, bufs[c],
			32 * 1024, &res);
		assert_srb_good(&res, 32 * 1024);
		test_expect_pattern(vsc_host(&r->v, bufs[c]), 32 * 1024, lba * 512ull, HOT_SEED,
				    "READ from the attached disk");
	}
	/* a slot taken, and requests the controller refuses */
	assert_int_equal(storvsp_attach_lun(r->sv, HOT_LUN, &hot), -EBUSY);
	assert_int_equal(storvsp_attach_lun(r->sv, 0, &hot), -EBUSY);
	assert_int_equal(storvsp_attach_lun(r->sv, STORVSP_MAX_LUNS, &hot), -EINVAL);
	struct storvsp_lun none = { 0 };
	assert_int_equal(storvsp_attach_lun(r->sv, 20, &none), -EINVAL);
	struct storvsp_lun no_disk = { hot.target, NULL };
	assert_int_equal(storvsp_attach_lun(r->sv, 20, &no_disk), -EINVAL);
	expect_lun_stats(r, HOT_LUN,
			 &(struct storvsp_lun_stats){ .reads = CHANNELS,
						      .read_bytes = CHANNELS * 32 * 1024 });
	rig_free(r);
}

/* Hot-remove with reads in flight: the LUN is absent to new commands at once, the reads
 * complete with their data, and only then is the target handed back (an ASan build would
 * catch the controller touching it afterwards). */
static void test_detach_in_flight(void **state)
{
	(void)state;
	struct rig *r = rig_ready();
	uint64_t buf = vsc_alloc(&r->v, 16 * 32768);
	start_reads(r, &r->ch[0], 16, buf);
	unsigned started = storvsp_lun_inflight(r->sv, 0);
	assert_true(started > 0);
	assert_int_equal(storvsp_detach_lun(r->sv, 0), 0);
	assert_int_equal(storvsp_detach_lun(r->sv, 0), -ENOENT);
	struct storvsp_lun out;
	assert_int_equal(storvsp_release_lun(r->sv, 0, &out), -EBUSY);
	assert_int_equal(storvsp_release_lun(r->sv, 1, &out), -ENOENT); /* not detached */
	assert_int_equal(storvsp_notify_luns_changed(r->sv, true), 0);
	/* the guest rescans: INQUIRY on LUN 0 answers "no LUN here" (7Fh) */
	uint8_t cdb[16];
	struct vsc_srb_result res;
	uint64_t inq = vsc_alloc(&r->v, VSC_PAGE);
	uint64_t id = vsc_srb_send(&r->ch[0], 0, cdb, cdb_simple(cdb, 0x12, 36), 1, inq, 36);
	/* the reads started before the removal complete with the image's data */
	for (unsigned i = 0; i < 16; i++) {
		uint64_t got = vsc_srb_wait_any(&r->ch[0], &res);
		if (got == id) {
			assert_srb_good(&res, 36);
			assert_int_equal(((uint8_t *)vsc_host(&r->v, inq))[0], 0x7F);
			i--;
			continue;
		}
		assert_srb_good(&res, 32768);
	}
	for (unsigned i = 0; i < 16; i++)
		test_expect_pattern(vsc_host(&r->v, buf + i * 32768), 32768, i * 64 * 512ull, SEED,
				    "READ in flight at the removal");
	assert_int_equal(r->ch[0].last_notice, 2); /* REMOVE_DEVICE */
	assert_int_equal(storvsp_lun_inflight(r->sv, 0), 0);
	assert_int_equal(storvsp_release_lun(r->sv, 0, &out), 0);
	assert_ptr_equal(out.target.impl, r->target[0]);
	assert_ptr_equal(out.disk, r->disk[0]);
	scsi_target_destroy(out.target);
	r->target[0] = NULL;
	/* gone for good: other commands fail as LOGICAL UNIT NOT SUPPORTED, REPORT LUNS
	 * lists only LUN 1, and the slot takes a disk again */
	vsc_srb(&r->ch[0], 0, 0, cdb, cdb_rw10(cdb, 0x28, 0, 8), 1, buf, 4096, &res);
	assert_check(&res, SRB_BAD_LUN | SRB_AUTOSENS, 5, 0x25, 0);
	uint16_t luns[STORVSP_MAX_LUNS];
	assert_int_equal(report_luns(r, &r->ch[0], luns), 1);
	assert_int_equal(luns[0], 1);
	assert_int_equal(storvsp_get_lun_stats(r->sv, 0, &(struct storvsp_lun_stats){ 0 }),
			 -ENOENT);
	assert_int_equal(storvsp_release_lun(r->sv, 0, &out), -ENOENT);
	make_hot_disk(r, HOT_SIZE);
	struct storvsp_lun hot = rig_lun(r, HOT);
	assert_int_equal(storvsp_attach_lun(r->sv, 0, &hot), 0);
	vsc_srb(&r->ch[0], 0, 0, cdb, cdb_rw10(cdb, 0x28, 8, 8), 1, buf, 4096, &res);
	assert_srb_good(&res, 4096);
	test_expect_pattern(vsc_host(&r->v, buf), 4096, 8 * 512ull, HOT_SEED,
			    "READ from the disk attached in its place");
	/* its counters start from zero */
	expect_lun_stats(r, 0, &(struct storvsp_lun_stats){ .reads = 1, .read_bytes = 4096 });
	rig_free(r);
}

/* Commands wait while their LUN is quiesced and start in order on resume; a LUN removed
 * while quiesced answers them as absent. */
static void test_quiesce(void **state)
{
	(void)state;
	struct rig *r = rig_ready();
	struct vsc_channel *ch = &r->ch[0];
	uint8_t cdb[16];
	struct vsc_srb_result res;
	uint64_t buf = vsc_alloc(&r->v, 8 * 4096);
	assert_int_equal(storvsp_quiesce_lun(r->sv, 0), 0);
	assert_int_equal(storvsp_quiesce_lun(r->sv, 0), -EBUSY);
	assert_int_equal(storvsp_quiesce_lun(r->sv, 7), -ENOENT);
	assert_int_equal(storvsp_resume_lun(r->sv, 1), -ENOENT);
	assert_int_equal(storvsp_quiesce_lun(r->sv, 64), -EINVAL);
	uint64_t ids[4];
	for (unsigned i = 0; i < 4; i++)
		ids[i] = vsc_srb_send(ch, 0, cdb, cdb_rw10(cdb, 0x28, i * 8, 8), 1, buf + i * 4096,
				      4096);
	/* LUN 1 still works meanwhile; LUN 0's commands are held, not started */
	vsc_srb(ch, 0, 1, cdb, cdb_simple(cdb, 0x00, 0), 2, 0, 0, &res);
	assert_srb_good(&res, 0);
	for (int i = 0; i < 20; i++)
		pump(r);
	assert_int_equal(storvsp_lun_inflight(r->sv, 0), 0);
	assert_int_equal(storvsp_inflight(r->sv), 4);
	uint16_t type;
	uint64_t tid;
	uint8_t pkt[128];
	assert_int_equal(vsc_ring_read(ch, pkt, sizeof(pkt), &type, &tid), 0);
	assert_int_equal(storvsp_resume_lun(r->sv, 0), 0);
	for (unsigned i = 0; i < 4; i++) {
		assert_int_equal(vsc_srb_wait_any(ch, &res), ids[i]); /* in order */
		assert_srb_good(&res, 4096);
		test_expect_pattern(vsc_host(&r->v, buf + i * 4096), 4096, i * 8 * 512ull, SEED,
				    "READ held by a quiesce");
	}
	/* removed while quiesced: what it held ends as "no LUN" */
	assert_int_equal(storvsp_quiesce_lun(r->sv, 0), 0);
	uint64_t id = vsc_srb_send(ch, 0, cdb, cdb_simple(cdb, 0x00, 0), 2, 0, 0);
	for (int i = 0; i < 5; i++)
		pump(r);
	assert_int_equal(storvsp_inflight(r->sv), 1);
	assert_int_equal(storvsp_detach_lun(r->sv, 0), 0);
	vsc_srb_wait(ch, id, &res);
	assert_check(&res, SRB_BAD_LUN | SRB_AUTOSENS, 5, 0x25, 0);
	struct storvsp_lun out;
	assert_int_equal(storvsp_release_lun(r->sv, 0, &out), 0);
	assert_int_equal(storvsp_resume_lun(r->sv, 0), -ENOENT);
	assert_int_equal(storvsp_inflight(r->sv), 0);
	rig_free(r);
}

/* A held command whose channel the guest closed is dropped, never started. */
static void test_quiesce_then_close(void **state)
{
	(void)state;
	struct rig *r = rig_ready();
	uint8_t cdb[16];
	uint64_t buf = vsc_alloc(&r->v, 4096);
	assert_int_equal(storvsp_quiesce_lun(r->sv, 0), 0);
	memset(vsc_host(&r->v, buf), 0x33, 4096);
	vsc_srb_send(&r->ch[0], 0, cdb, cdb_rw10(cdb, 0x2A, 0, 8), 0, buf, 4096);
	for (int i = 0; i < 5; i++)
		pump(r);
	vsc_close(&r->ch[0]);
	assert_int_equal(storvsp_resume_lun(r->sv, 0), 0);
	drain_all(r);
	uint8_t head[4096];
	test_file_read(r->path[0], head, sizeof(head), 0);
	test_expect_pattern(head, sizeof(head), 0, SEED, "the image after a dropped WRITE");
	rig_free(r);
}

/* Online resize as the VMM does it: quiesce, wait for nothing in flight, grow the image,
 * tell the target, resume. The held command meets UNIT ATTENTION 2A/09; READ CAPACITY(16)
 * then says the new size and the new blocks read as zeros. */
static void test_resize(void **state)
{
	(void)state;
	struct rig *r = rig_ready();
	struct vsc_channel *ch = &r->ch[0];
	uint8_t cdb[16];
	struct vsc_srb_result res;
	uint64_t buf = vsc_alloc(&r->v, 4 * VSC_PAGE);
	uint8_t *host = vsc_host(&r->v, buf);
	start_reads(r, ch, 4, vsc_alloc(&r->v, 4 * 32768));
	assert_int_equal(storvsp_quiesce_lun(r->sv, 0), 0);
	uint64_t tur = vsc_srb_send(ch, 0, cdb, cdb_simple(cdb, 0x00, 0), 2, 0, 0);
	struct vsc_srb_result reads[4];
	for (unsigned i = 0; i < 4; i++)
		vsc_srb_wait_any(ch, &reads[i]);
	for (unsigned i = 0; i < 4; i++)
		assert_srb_good(&reads[i], 32768);
	assert_int_equal(storvsp_lun_inflight(r->sv, 0), 0);
	char err[256] = "";
	if (vdisk_resize(r->disk[0], 2 * RAW_SIZE, 0, NULL, err, sizeof(err)))
		fail_msg("resize: %s", err);
	scsi_target_capacity_changed(scsi_target_of_disk(r->target[0]));
	assert_int_equal(storvsp_resume_lun(r->sv, 0), 0);
	vsc_srb_wait(ch, tur, &res);
	assert_check(&res, SRB_ERROR | SRB_AUTOSENS, 6, 0x2A, 0x09);
	vsc_srb(ch, 0, 0, cdb, cdb_simple(cdb, 0x9E, 32), 1, buf, 32, &res);
	assert_srb_good(&res, 32);
	assert_int_equal(load_be64(host) + 1, 2 * RAW_SIZE / 512);
	memset(host, 0xEE, 4096);
	vsc_srb(ch, 0, 0, cdb, cdb_rw10(cdb, 0x28, RAW_SIZE / 512, 8), 1, buf, 4096, &res);
	assert_srb_good(&res, 4096);
	for (unsigned i = 0; i < 4096; i++)
		assert_int_equal(host[i], 0);
	/* the file grew: the host sees it */
	FILE *f = fopen(r->path[0], "r");
	assert_non_null(f);
	assert_int_equal(fseek(f, 0, SEEK_END), 0);
	assert_int_equal(ftell(f), 2 * RAW_SIZE);
	fclose(f);
	rig_free(r);
}

/* Each LUN counts its own commands, as the guest issued them. */
static void test_lun_counters(void **state)
{
	(void)state;
	struct rig *r = rig_ready();
	struct vsc_channel *ch = &r->ch[0];
	uint8_t cdb[16];
	struct vsc_srb_result res;
	uint64_t buf = vsc_alloc(&r->v, 64 * 1024);
	struct storvsp_lun_stats want[2] = { { 0 } };
	uint64_t seed = 3;
	for (unsigned i = 0; i < 40; i++) {
		unsigned lun = (unsigned)test_rnd_below(&seed, 2);
		uint16_t blocks = (uint16_t)(1 + test_rnd_below(&seed, 128));
		bool write = test_rnd_below(&seed, 2);
		vsc_srb(ch, 0, (uint8_t)lun, cdb,
			cdb_rw10(cdb, write ? 0x2A : 0x28, i * 128, blocks), write ? 0 : 1, buf,
			blocks * 512u, &res);
		assert_srb_good(&res, blocks * 512u);
		if (write) {
			want[lun].writes++;
			want[lun].write_bytes += blocks * 512u;
		} else {
			want[lun].reads++;
			want[lun].read_bytes += blocks * 512u;
		}
	}
	vsc_srb(ch, 0, 1, cdb, cdb_simple(cdb, 0x35, 0), 2, 0, 0, &res);
	assert_srb_good(&res, 0);
	want[1].flushes++;
	/* a read past the end fails, and counts as an error, not a read */
	vsc_srb(ch, 0, 0, cdb, cdb_rw10(cdb, 0x28, RAW_SIZE / 512, 1), 1, buf, 512, &res);
	assert_check(&res, SRB_ERROR | SRB_AUTOSENS, 5, 0x21, 0);
	want[0].errors++;
	/* commands that move no data count nowhere; an absent LUN counts for no LUN */
	vsc_srb(ch, 0, 0, cdb, cdb_simple(cdb, 0x00, 0), 2, 0, 0, &res);
	vsc_srb(ch, 0, 5, cdb, cdb_simple(cdb, 0x00, 0), 2, 0, 0, &res);
	expect_lun_stats(r, 0, &want[0]);
	expect_lun_stats(r, 1, &want[1]);
	struct storvsp_lun_stats none;
	assert_int_equal(storvsp_get_lun_stats(r->sv, 5, &none), -ENOENT);
	assert_int_equal(storvsp_get_lun_stats(r->sv, 64, &none), -EINVAL);
	/* the controller's totals are the sums */
	struct storvsp_stats st;
	storvsp_get_stats(r->sv, &st);
	assert_int_equal(st.reads, want[0].reads + want[1].reads);
	assert_int_equal(st.write_bytes, want[0].write_bytes + want[1].write_bytes);
	assert_int_equal(st.errors, 2);
	rig_free(r);
}

/* Configuration the controller refuses. */
static void test_config(void **state)
{
	(void)state;
	struct rig *r = rig_new();
	struct storvsp_config cfg = rig_config(r);
	struct storvsp *sv;
	cfg.channels = 0;
	assert_int_equal(storvsp_create(r->v.vb, &cfg, &sv), -EINVAL);
	cfg.channels = CHANNELS + 1; /* more than the disks have queues */
	assert_int_equal(storvsp_create(r->v.vb, &cfg, &sv), -EINVAL);
	cfg = rig_config(r);
	cfg.luns[3].target = scsi_target_of_disk(r->target[0]); /* a LUN without its disk */
	assert_int_equal(storvsp_create(r->v.vb, &cfg, &sv), -EINVAL);
	cfg = rig_config(r);
	cfg.kick = NULL;
	assert_int_equal(storvsp_create(r->v.vb, &cfg, &sv), -EINVAL);
	/* a second controller: its own instance, offered beside the first */
	cfg = rig_config(r);
	cfg.controller = 1;
	cfg.channels = 1;
	assert_int_equal(storvsp_create(r->v.vb, &cfg, &sv), 0);
	assert_int_equal(vsc_negotiate(&r->v), 0x50003);
	vsc_request_offers(&r->v);
	assert_int_equal(r->v.noffers, 2);
	assert_memory_not_equal(r->v.offers[0].instance, r->v.offers[1].instance, 16);
	/* storvsc's class GUID on the wire: ba6163d9-04a1-4d29-b605-72e2ffb1dc7f */
	const uint8_t wire[16] = { 0xd9, 0x63, 0x61, 0xba, 0xa1, 0x04, 0x29, 0x4d,
				   0xb6, 0x05, 0x72, 0xe2, 0xff, 0xb1, 0xdc, 0x7f };
	assert_memory_equal(r->v.offers[1].class_id, wire, 16);
	storvsp_destroy(sv);
	rig_free(r);
}

/* What a failed test left open. */
static int close_disks(void **state)
{
	(void)state;
	if (threaded_rig)
		stop_threads(threaded_rig);
	test_close_tracked();
	return 0;
}

static int group_teardown(void **state)
{
	test_close_tracked();
	return test_teardown_tmpdir(state);
}

/* A DVD-ROM drive in a LUN slot (scsi_cdrom behind the same ops as a disk): storvsc's
 * sr probe sees a CD/DVD device, the medium reads back in 2048-byte sectors on every
 * channel, and writes are refused as MMC says for a read-only drive. */
#define DVD_LUN	    5
#define DVD_SECTORS 512
#define DVD_SEED    0xD7D

static void test_dvd_lun(void **state)
{
	(void)state;
	struct rig *r = rig_ready();
	open_subchannels(r);
	start_threads(r);
	const char *path = test_path("dvd.iso");
	test_write_file(path, DVD_SECTORS * 2048ull, DVD_SEED);
	struct vdisk *iso = open_disk(path);
	__atomic_store_n(&r->disk[HOT], iso, __ATOMIC_RELEASE); /* the channel threads poll it */
	struct scsi_cdrom_config cc = { .vendor = "Msft",
					.product = "Virtual DVD-ROM",
					.revision = "1.0",
					.serial = "DVD5",
					.interface = SCSI_CDROM_INTERFACE_SCSI };
	struct scsi_cdrom *cd;
	assert_int_equal(scsi_cdrom_create(&cc, iso, &cd), 0);
	struct storvsp_lun lun = { scsi_target_of_cdrom(cd), iso };
	assert_int_equal(storvsp_attach_lun(r->sv, DVD_LUN, &lun), 0);

	uint8_t cdb[16];
	struct vsc_srb_result res;
	uint64_t buf = vsc_alloc(&r->v, 64 * 1024);
	uint8_t *host = vsc_host(&r->v, buf);
	vsc_srb(&r->ch[0], 0, DVD_LUN, cdb, cdb_simple(cdb, 0x12, 36), 1, buf, 36, &res);
	assert_srb_good(&res, 36);
	assert_int_equal(host[0], 0x05);	/* CD/DVD device */
	assert_int_equal(host[1] & 0x80, 0x80); /* removable */
	assert_memory_equal(host + 8, "Msft    ", 8);
	vsc_srb(&r->ch[0], 0, DVD_LUN, cdb, cdb_simple(cdb, 0x00, 0), 2, 0, 0, &res);
	assert_check(&res, SRB_ERROR | SRB_AUTOSENS, 6, 0x29, 0); /* power on */
	memset(cdb, 0, sizeof(cdb));
	cdb[0] = 0x25; /* READ CAPACITY(10) */
	vsc_srb(&r->ch[0], 0, DVD_LUN, cdb, 10, 1, buf, 8, &res);
	assert_srb_good(&res, 8);
	assert_int_equal(load_be32(host), DVD_SECTORS - 1);
	assert_int_equal(load_be32(host + 4), 2048);
	for (unsigned c = 0; c < CHANNELS; c++) {
		uint32_t lba = 100 + 16 * c;
		vsc_srb(&r->ch[c], 0, DVD_LUN, cdb, cdb_rw10(cdb, 0x28, lba, 16), 1, buf, 32 * 1024,
			&res);
		assert_srb_good(&res, 32 * 1024);
		test_expect_pattern(host, 32 * 1024, lba * 2048ull, DVD_SEED,
				    "READ(10) of the DVD");
	}
	vsc_srb(&r->ch[1], 0, DVD_LUN, cdb, cdb_rw10(cdb, 0x2A, 0, 1), 0, buf, 2048, &res);
	assert_check(&res, SRB_ERROR | SRB_AUTOSENS, 5, 0x20, 0);
	expect_lun_stats(r, DVD_LUN,
			 &(struct storvsp_lun_stats){ .reads = CHANNELS,
						      .read_bytes = CHANNELS * 32 * 1024,
						      .errors = 2 });

	assert_int_equal(storvsp_detach_lun(r->sv, DVD_LUN), 0);
	struct storvsp_lun out;
	while (storvsp_release_lun(r->sv, DVD_LUN, &out) == -EBUSY)
		usleep(1000);
	scsi_target_destroy(out.target);
	rig_free(r);
}

int main(void)
{
	vhdx_register();
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_teardown(test_protocol_versions, close_disks),
		cmocka_unit_test_teardown(test_init_order, close_disks),
		cmocka_unit_test_teardown(test_read_write_raw, close_disks),
		cmocka_unit_test_teardown(test_read_write_vhdx, close_disks),
		cmocka_unit_test_teardown(test_scsi_paths, close_disks),
		cmocka_unit_test_teardown(test_subchannels_own_threads, close_disks),
		cmocka_unit_test_teardown(test_masked_ring_completions_poll, close_disks),
		cmocka_unit_test_teardown(test_small_rings, close_disks),
		cmocka_unit_test_teardown(test_bus_notices, close_disks),
		cmocka_unit_test_teardown(test_hostile_packets, close_disks),
		cmocka_unit_test_teardown(test_teardown_mid_io, close_disks),
		cmocka_unit_test_teardown(test_config, close_disks),
		cmocka_unit_test_teardown(test_attach_under_io, close_disks),
		cmocka_unit_test_teardown(test_detach_in_flight, close_disks),
		cmocka_unit_test_teardown(test_quiesce, close_disks),
		cmocka_unit_test_teardown(test_quiesce_then_close, close_disks),
		cmocka_unit_test_teardown(test_resize, close_disks),
		cmocka_unit_test_teardown(test_lun_counters, close_disks),
		cmocka_unit_test_teardown(test_dvd_lun, close_disks),
	};
	return cmocka_run_group_tests(tests, NULL, group_teardown);
}
