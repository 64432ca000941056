/* The SCSI disk target driven as the Linux sd driver drives it through storvsc: CDBs built
 * byte by byte, guest buffers as plain memory with guard bytes around them, real raw and
 * VHDX images. Oracles: the image file read directly (raw), qemu-img compare and map
 * (VHDX), `vdisk info --json`, st_blocks, the block layer's completion count (a FUA write
 * is a write and a flush), sg3-utils decoding INQUIRY, VPD pages and sense data, and the
 * SPC-4/SBC-3 field layouts. */
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
#include <sys/resource.h>
#include <sys/stat.h>
#include <signal.h>
#include <unistd.h>

#include <jansson.h>

#include "endian.h"
#include "guid.h"
#include "scsi_disk.h"
#include "test_cli.h"
#include "test_disk.h"
#include "vhdx.h"

struct vdisk *test_open_disks[TEST_MAX_OPEN_DISKS];

#define MIB	  (1024u * 1024u)
#define DISK_SIZE (64ull * MIB)
#define SEED	  11
#define GUARD	  64 /* bytes checked on each side of every guest buffer */

/* ---- the rig: one disk, one target, queue 0 ---- */

struct rig {
	struct vdisk *disk;
	struct scsi_disk *sd;
	struct vdisk_queue *q;
	char path[512];
};

static struct vdisk *open_image(const char *path, bool read_only)
{
	struct vdisk_options o = { .read_only = read_only, .cache = VDISK_CACHE_WRITEBACK };
	struct vdisk *d;
	char err[256] = "";
	int ret = vdisk_open(path, &o, &d, err, sizeof(err));
	if (ret)
		fail_msg("open %s: %s", path, err);
	assert_int_equal(test_track_disk(d), 0);
	return d;
}

static void rig_attach(struct rig *r, bool read_only)
{
	struct scsi_disk_config cfg;
	r->disk = open_image(r->path, read_only);
	r->q = vdisk_queue(r->disk, 0);
	assert_int_equal(scsi_disk_config_from_vdisk(r->disk, &cfg), 0);
	assert_int_equal(scsi_disk_create(r->disk, &cfg, &r->sd), 0);
}

static void rig_detach(struct rig *r)
{
	scsi_disk_destroy(r->sd);
	test_close_disk(r->disk);
	r->sd = NULL;
	r->disk = NULL;
}

/* A raw image filled with the pattern of SEED. */
static void rig_raw(struct rig *r, const char *name, uint64_t size, bool read_only)
{
	snprintf(r->path, sizeof(r->path), "%s", test_path(name));
	test_write_file(r->path, size, SEED);
	rig_attach(r, read_only);
}

/* A sparse file of size bytes (zeros). */
static void make_sparse(const char *path, uint64_t size)
{
	int fd = open(path, O_CREAT | O_TRUNC | O_WRONLY, 0600);
	assert_true(fd >= 0);
	assert_int_equal(ftruncate(fd, (off_t)size), 0);
	close(fd);
}

static void create_vhdx(const char *path, uint64_t size, uint32_t block, uint32_t sector)
{
	struct vdisk_create_options o = { .format = "vhdx",
					  .size = size,
					  .block_size = block,
					  .logical_sector_size = sector,
					  .physical_sector_size = 4096,
					  .overwrite = true };
	char err[256] = "";
	if (vdisk_create(path, &o, err, sizeof(err)))
		fail_msg("create %s: %s", path, err);
}

static void rig_vhdx(struct rig *r, const char *name, uint32_t sector)
{
	snprintf(r->path, sizeof(r->path), "%s", test_path(name));
	create_vhdx(r->path, DISK_SIZE, MIB, sector);
	rig_attach(r, false);
}

/* ---- commands ---- */

/* A guest buffer: len bytes between two guard areas. */
struct gbuf {
	uint8_t *mem;
	uint8_t *data;
	size_t len;
};

static struct gbuf gbuf_new(size_t len)
{
	struct gbuf b = { test_xmalloc(len + 2 * GUARD), NULL, len };
	memset(b.mem, 0xA5, len + 2 * GUARD);
	b.data = b.mem + GUARD;
	return b;
}

static void gbuf_check_free(struct gbuf *b)
{
	for (size_t i = 0; i < GUARD; i++) {
		if (b->mem[i] != 0xA5 || b->mem[GUARD + b->len + i] != 0xA5)
			fail_msg("guard byte %zu around a %zu-byte buffer was written", i, b->len);
	}
	free(b->mem);
}

struct result {
	uint8_t status;
	uint8_t key, asc, ascq;
	uint64_t transferred;
	unsigned completions; /* block layer callbacks run while the command was in flight */
	uint8_t sense[SCSI_SENSE_LEN];
};

struct cmd {
	struct scsi_request req;
	unsigned done_calls;
};

static void on_done(struct scsi_request *req)
{
	((struct cmd *)((char *)req - offsetof(struct cmd, req)))->done_calls++;
}

static struct result finish_cmd(struct rig *r, struct cmd *c)
{
	struct result res = { 0 };
	for (int spins = 0; !c->done_calls; spins++) {
		assert_true(spins < 100000);
		int n = vdisk_queue_poll(r->q, 1);
		assert_true(n >= 0);
		res.completions += (unsigned)n;
	}
	assert_int_equal(c->done_calls, 1);
	assert_int_equal(vdisk_queue_inflight(r->q), 0);
	res.status = c->req.status;
	res.transferred = c->req.transferred;
	if (res.status == SCSI_STATUS_CHECK_CONDITION) {
		assert_int_equal(c->req.sense_len, SCSI_SENSE_LEN);
		memcpy(res.sense, c->req.sense, SCSI_SENSE_LEN);
		assert_int_equal(res.sense[0], 0x70);
		assert_int_equal(res.sense[7], 10);
		res.key = res.sense[2] & 0x0F;
		res.asc = res.sense[12];
		res.ascq = res.sense[13];
		assert_int_equal(res.transferred, 0);
	} else {
		assert_int_equal(c->req.sense_len, 0);
	}
	return res;
}

/* Runs one command with buffers iov (data_in tells their direction), transfer_len
 * allowed. */
static struct result exec_iov(struct rig *r, const uint8_t *cdb, unsigned cdb_len, bool data_in,
			      const struct iovec *iov, int iovcnt, uint64_t transfer_len)
{
	struct cmd c = { .req = { .cdb = cdb,
				  .cdb_len = cdb_len,
				  .data_in = data_in,
				  .iov = iov,
				  .iovcnt = iovcnt,
				  .transfer_len = transfer_len,
				  .done = on_done } };
	scsi_disk_execute(r->sd, r->q, &c.req);
	return finish_cmd(r, &c);
}

static struct result exec(struct rig *r, const uint8_t *cdb, unsigned cdb_len, bool data_in,
			  void *buf, size_t len)
{
	struct iovec iov = { buf, len };
	return exec_iov(r, cdb, cdb_len, data_in, &iov, buf ? 1 : 0, len);
}

/* Runs a data-in command into a guarded buffer of len bytes and copies the reply out. */
static struct result exec_in(struct rig *r, const uint8_t *cdb, unsigned cdb_len, void *out,
			     size_t len)
{
	struct gbuf b = gbuf_new(len);
	struct result res = exec(r, cdb, cdb_len, true, b.data, len);
	memcpy(out, b.data, len);
	gbuf_check_free(&b);
	return res;
}

static struct result exec_out(struct rig *r, const uint8_t *cdb, unsigned cdb_len, const void *data,
			      size_t len)
{
	struct gbuf b = gbuf_new(len);
	memcpy(b.data, data, len);
	struct result res = exec(r, cdb, cdb_len, false, b.data, len);
	gbuf_check_free(&b);
	return res;
}

static struct result exec_none(struct rig *r, const uint8_t *cdb, unsigned cdb_len)
{
	return exec(r, cdb, cdb_len, false, NULL, 0);
}

#define assert_good(res)                                                                           \
	do {                                                                                       \
		struct result r_ = (res);                                                          \
		if (r_.status != SCSI_STATUS_GOOD)                                                 \
			fail_msg("status %02x sense %x/%02x/%02x", r_.status, r_.key, r_.asc,      \
				 r_.ascq);                                                         \
	} while (0)

static void assert_sense(struct result res, uint8_t key, uint8_t asc, uint8_t ascq)
{
	if (res.status != SCSI_STATUS_CHECK_CONDITION || res.key != key || res.asc != asc ||
	    res.ascq != ascq)
		fail_msg("want CHECK CONDITION %x/%02x/%02x, got status %02x sense %x/%02x/%02x",
			 key, asc, ascq, res.status, res.key, res.asc, res.ascq);
}

/* ---- CDBs as Linux builds them ---- */

enum {
	READ_6 = 0x08,
	WRITE_6 = 0x0A,
	READ_10 = 0x28,
	WRITE_10 = 0x2A,
	READ_12 = 0xA8,
	WRITE_12 = 0xAA,
	READ_16 = 0x88,
	WRITE_16 = 0x8A,
};

/* READ/WRITE/VERIFY/SYNCHRONIZE CACHE/WRITE SAME of any size; returns the CDB length. */
static unsigned cdb_rw(uint8_t *cdb, uint8_t op, uint64_t lba, uint32_t blocks, uint8_t flags)
{
	memset(cdb, 0, 16);
	cdb[0] = op;
	switch (op >> 5) {
	case 0:
		cdb[1] = (uint8_t)(lba >> 16 & 0x1F);
		store_be16(cdb + 2, (uint16_t)lba);
		cdb[4] = (uint8_t)blocks;
		return 6;
	case 1:
	case 2:
		cdb[1] = flags;
		store_be32(cdb + 2, (uint32_t)lba);
		store_be16(cdb + 7, (uint16_t)blocks);
		return 10;
	case 5:
		cdb[1] = flags;
		store_be32(cdb + 2, (uint32_t)lba);
		store_be32(cdb + 6, blocks);
		return 12;
	default:
		cdb[1] = flags;
		store_be64(cdb + 2, lba);
		store_be32(cdb + 10, blocks);
		return 16;
	}
}

static struct result inquiry(struct rig *r, bool evpd, uint8_t page, uint8_t *out, uint16_t alloc)
{
	uint8_t cdb[6] = { 0x12, evpd, page, 0, 0, 0 };
	store_be16(cdb + 3, alloc);
	return exec_in(r, cdb, 6, out, alloc);
}

static struct result read_capacity_16(struct rig *r, uint8_t *out)
{
	uint8_t cdb[16] = { 0x9E, 0x10 };
	store_be32(cdb + 10, 32);
	return exec_in(r, cdb, 16, out, 32);
}

static struct result mode_sense_10(struct rig *r, uint8_t byte1, uint8_t page_byte, uint8_t *out,
				   uint16_t alloc)
{
	uint8_t cdb[10] = { 0x5A, byte1, page_byte };
	store_be16(cdb + 7, alloc);
	return exec_in(r, cdb, 10, out, alloc);
}

static struct result test_unit_ready(struct rig *r)
{
	uint8_t cdb[6] = { 0 };
	return exec_none(r, cdb, 6);
}

static uint64_t file_blocks(const char *path)
{
	struct stat st;
	assert_int_equal(stat(path, &st), 0);
	return (uint64_t)st.st_blocks;
}

/* ---- sg3-utils as the decoding oracle ---- */

static bool have_sg3(void)
{
	return test_have("sg_inq") && test_have("sg_vpd") && test_have("sg_decode_sense");
}

/* Writes bytes as the ASCII hex sg3-utils reads with --inhex. */
static const char *hex_file(const uint8_t *data, size_t len)
{
	const char *path = test_path("reply.hex");
	FILE *f = fopen(path, "w");
	assert_non_null(f);
	for (size_t i = 0; i < len; i++)
		fprintf(f, "%02x%c", data[i], i % 16 == 15 ? '\n' : ' ');
	fclose(f);
	return path;
}

static void sg_decode(char *out, size_t size, const char *tool_args, const uint8_t *data,
		      size_t len)
{
	const char *hex = hex_file(data, len);
	int st = test_run(out, size, "%s --inhex=%s", tool_args, hex);
	if (st != 0)
		fail_msg("%s exited %d:\n%s", tool_args, st, out);
}

/* ---- the sd probe ---- */

static void check_standard_inquiry(struct rig *r)
{
	uint8_t data[255];
	assert_good(inquiry(r, false, 0, data, 36)); /* the scan's first, short INQUIRY */
	assert_int_equal(data[0], 0x00);	     /* connected direct-access block device */
	assert_int_equal(data[1] & 0x80, 0);	     /* not removable */
	assert_true(data[2] == 0x05 || data[2] == 0x06);
	assert_int_equal(data[3] & 0x0F, 2);
	assert_true(data[7] & 0x02); /* CMDQUE: tagged queueing */
	assert_memory_equal(data + 8, "Msft    ", 8);
	assert_memory_equal(data + 16, "Virtual Disk    ", 16);
	unsigned len = data[4] + 5u;
	assert_true(len >= 36 && len <= sizeof(data));

	struct result res = inquiry(r, false, 0, data, 255);
	assert_good(res);
	assert_int_equal(res.transferred, len); /* the reply ends where its length says */
	if (have_sg3()) {
		char out[8192];
		sg_decode(out, sizeof(out), "sg_inq --descriptors", data, len);
		assert_contains(out, "Msft");
		assert_contains(out, "Virtual Disk");
		assert_contains(out, "PQual=0");
		assert_contains(out, "PDT=0");
		assert_contains(out, "CmdQue=1");
		assert_contains(out, "HiSUP=1");
		assert_contains(out, "SPC-4");
		assert_contains(out, "SBC-3");
	}
}

/* Fetches a VPD page (the 4-byte header first, then the whole page, as Linux does). */
static size_t vpd(struct rig *r, uint8_t page, uint8_t *out)
{
	uint8_t head[4];
	assert_good(inquiry(r, true, page, head, 4));
	assert_int_equal(head[1], page);
	size_t len = load_be16(head + 2) + 4u;
	assert_true(len <= 255);
	struct result res = inquiry(r, true, page, out, 255);
	assert_good(res);
	assert_int_equal(res.transferred, len);
	assert_int_equal(out[0], 0x00);
	assert_int_equal(out[1], page);
	return len;
}

static void check_vpd_pages(struct rig *r, uint64_t unmap_granularity, bool thin)
{
	uint8_t p[255];
	char out[8192];
	bool sg = have_sg3();

	size_t n = vpd(r, 0x00, p);
	uint8_t want[] = { 0x00, 0x80, 0x83, 0xB0, 0xB1, 0xB2 };
	assert_int_equal(n - 4, sizeof(want));
	assert_memory_equal(p + 4, want, sizeof(want)); /* ascending, as SPC requires */

	n = vpd(r, 0x80, p);
	assert_int_equal(n, 4 + 32);
	for (size_t i = 4; i < n; i++)
		assert_true(strchr("0123456789ABCDEF", p[i]) != NULL);

	n = vpd(r, 0x83, p);
	bool t10 = false, naa = false;
	for (size_t pos = 4; pos + 4 <= n; pos += 4 + p[pos + 3]) {
		assert_true(pos + 4 + p[pos + 3] <= n);
		uint8_t type = p[pos + 1] & 0x0F, assoc = p[pos + 1] >> 4 & 3;
		assert_int_equal(assoc, 0); /* the logical unit */
		if (type == 1) {
			t10 = true;
			assert_int_equal(p[pos] & 0x0F, 2); /* ASCII */
			assert_memory_equal(p + pos + 4, "Msft    ", 8);
		} else if (type == 3) {
			naa = true;
			assert_int_equal(p[pos] & 0x0F, 1); /* binary */
			assert_int_equal(p[pos + 3], 8);
			assert_int_equal(p[pos + 4] >> 4, 3); /* locally assigned */
		}
	}
	assert_true(t10 && naa);
	if (sg) {
		sg_decode(out, sizeof(out), "sg_vpd --page=di", p, n);
		assert_contains(out,
				"designator type: T10 vendor identification,  code set: ASCII");
		assert_contains(out, "vendor id: Msft");
		assert_contains(out, "designator type: NAA,  code set: Binary");
		char naa[40];
		snprintf(naa, sizeof(naa), "0x%016" PRIx64, load_be64(p + 4 + 44 + 4));
		assert_contains(out, naa);
	}

	n = vpd(r, 0xB0, p);
	assert_int_equal(n, 0x40);
	assert_int_equal(p[4] & 0x01, 0x01); /* WSNZ: WRITE SAME of 0 blocks is refused */
	uint32_t bs = 0;
	uint8_t rc[32];
	assert_good(read_capacity_16(r, rc));
	bs = load_be32(rc + 8);
	uint32_t max_transfer = load_be32(p + 8);
	uint32_t max_unmap = load_be32(p + 20), max_desc = load_be32(p + 24);
	assert_true(max_transfer >= 4096 / bs);
	assert_true(max_unmap > 0 && max_desc > 0);
	assert_int_equal(load_be32(p + 28), unmap_granularity);
	assert_true(p[32] & 0x80); /* UGAVALID */
	uint64_t max_ws = load_be64(p + 36);
	assert_true(max_ws > 0);
	if (sg) {
		sg_decode(out, sizeof(out), "sg_vpd --page=bl", p, n);
		char line[128];
		snprintf(line, sizeof(line), "Maximum transfer length: %u blocks", max_transfer);
		assert_contains(out, line);
		snprintf(line, sizeof(line), "Maximum unmap LBA count: %u", max_unmap);
		assert_contains(out, line);
		snprintf(line, sizeof(line), "Maximum unmap block descriptor count: %u", max_desc);
		assert_contains(out, line);
		snprintf(line, sizeof(line), "Optimal unmap granularity: %" PRIu64 " blocks",
			 unmap_granularity);
		assert_contains(out, line);
		snprintf(line, sizeof(line), "Maximum write same length: 0x%" PRIx64 " blocks",
			 max_ws);
		assert_contains(out, line);
	}

	n = vpd(r, 0xB1, p);
	assert_int_equal(load_be16(p + 4), 1); /* non-rotating */
	if (sg) {
		sg_decode(out, sizeof(out), "sg_vpd --page=bdc", p, n);
		assert_contains(out, "Non-rotating medium");
	}

	n = vpd(r, 0xB2, p);
	assert_true(p[5] & 0x80); /* LBPU */
	assert_true(p[5] & 0x40); /* LBPWS */
	assert_true(p[5] & 0x04); /* LBPRZ */
	assert_int_equal(p[6] & 7, thin ? 2 : 1);
	if (sg) {
		sg_decode(out, sizeof(out), "sg_vpd --page=lbpv", p, n);
		assert_contains(out, "Unmap command supported (LBPU): 1");
		assert_contains(out, "Write same (16) with unmap bit supported (LBPWS): 1");
		assert_contains(out, thin ? "Provisioning type: 2 (thin provisioned)"
					  : "Provisioning type: 1 (resource provisioned)");
	}
}

static void check_mode_pages(struct rig *r, bool read_only)
{
	uint8_t m[255];
	/* sd_read_write_protect_flag: MODE SENSE(6), all pages, 4-byte header only */
	uint8_t cdb6[6] = { 0x1A, 0, 0x3F, 0, 4, 0 };
	struct result res = exec_in(r, cdb6, 6, m, 4);
	assert_good(res);
	assert_int_equal(res.transferred, 4);
	assert_int_equal(!!(m[2] & 0x80), read_only); /* WP */
	unsigned total = m[0] + 1u;
	cdb6[4] = 255;
	res = exec_in(r, cdb6, 6, m, 255);
	assert_good(res);
	assert_int_equal(res.transferred, total);
	assert_int_equal(m[3], 8); /* one short block descriptor */
	size_t pos = 4 + 8;
	assert_int_equal(m[pos], 0x08); /* pages in ascending order: caching, control */
	assert_int_equal(m[pos + 1], 0x12);
	pos += 20;
	assert_int_equal(m[pos], 0x0A);
	assert_int_equal(m[pos + 1], 0x0A);
	assert_int_equal(pos + 12, total);

	/* sd_read_cache_type: MODE SENSE(10), caching page, DBD */
	res = mode_sense_10(r, 0x08, 0x08, m, 255);
	assert_good(res);
	assert_int_equal(res.transferred, 8 + 20);
	assert_int_equal(load_be16(m), 8 + 20 - 2);
	assert_int_equal(load_be16(m + 6), 0); /* DBD: no block descriptors */
	assert_int_equal(m[3] & 0x10, 0x10);   /* DPOFUA */
	assert_int_equal(m[8], 0x08);
	assert_int_equal(m[8 + 2] & 0x04, 0x04); /* WCE */
	assert_int_equal(m[8 + 2] & 0x01, 0);	 /* RCD */

	/* changeable values: WCE only */
	res = mode_sense_10(r, 0x08, 0x40 | 0x08, m, 255);
	assert_good(res);
	assert_int_equal(m[8 + 2], 0x04);
	/* saved values are not supported */
	assert_sense(mode_sense_10(r, 0x08, 0xC0 | 0x08, m, 255), 5, 0x39, 0);

	/* LLBAA: a long block descriptor */
	res = mode_sense_10(r, 0x10, 0x0A, m, 255);
	assert_good(res);
	assert_int_equal(m[4] & 1, 1);
	assert_int_equal(load_be16(m + 6), 16);
	uint8_t rc[32];
	assert_good(read_capacity_16(r, rc));
	assert_int_equal(load_be64(m + 8), load_be64(rc) + 1);
	assert_int_equal(load_be32(m + 8 + 12), load_be32(rc + 8));
	assert_int_equal(m[24], 0x0A);
}

static void check_report_luns(void)
{
	uint16_t luns[] = { 0, 3, 300 };
	uint8_t cdb[12] = { 0xA0 };
	store_be32(cdb + 6, 64);
	struct gbuf b = gbuf_new(64);
	struct cmd c = { .req = { .cdb = cdb,
				  .cdb_len = 12,
				  .data_in = true,
				  .iov = &(struct iovec){ b.data, 64 },
				  .iovcnt = 1,
				  .transfer_len = 64,
				  .done = on_done } };
	scsi_report_luns_execute(&c.req, luns, 3);
	assert_int_equal(c.done_calls, 1);
	assert_int_equal(c.req.status, SCSI_STATUS_GOOD);
	assert_int_equal(c.req.transferred, 8 + 3 * 8);
	assert_int_equal(load_be32(b.data), 3 * 8);
	uint8_t want[24] = { 0, 0, 0, 0, 0, 0, 0, 0, 0, 3, 0, 0, 0, 0, 0, 0, 0x41, 0x2C };
	assert_memory_equal(b.data + 8, want, sizeof(want));

	/* an allocation length that cuts an entry: exactly that much moves */
	store_be32(cdb + 6, 20);
	memset(b.data, 0xA5, 64);
	c.done_calls = 0;
	scsi_report_luns_execute(&c.req, luns, 3);
	assert_int_equal(c.req.status, SCSI_STATUS_GOOD);
	assert_int_equal(c.req.transferred, 20);
	assert_int_equal(b.data[17], 3); /* the second LUN, cut after 4 of its 8 bytes */
	for (int i = 20; i < 64; i++)
		assert_int_equal(b.data[i], 0xA5);
	/* below 16 bytes is refused (SPC-4) */
	store_be32(cdb + 6, 15);
	c.done_calls = 0;
	scsi_report_luns_execute(&c.req, luns, 3);
	assert_int_equal(c.req.status, SCSI_STATUS_CHECK_CONDITION);
	assert_int_equal(c.req.sense[12], 0x24);
	gbuf_check_free(&b);
}

static void sd_probe(struct rig *r, uint32_t bs, unsigned phys_exp, uint64_t unmap_gran, bool thin)
{
	check_standard_inquiry(r);
	check_report_luns();
	assert_good(test_unit_ready(r));

	uint8_t rc[32];
	struct result res = read_capacity_16(r, rc);
	assert_good(res);
	assert_int_equal(res.transferred, 32);
	assert_int_equal(load_be64(rc) + 1, vdisk_size(r->disk) / bs);
	assert_int_equal(load_be32(rc + 8), bs);
	assert_int_equal(rc[13] & 0x0F, phys_exp);
	assert_int_equal(rc[14] & 0xC0, 0xC0); /* LBPME, LBPRZ */

	uint8_t rc10[8], cdb10[10] = { 0x25 };
	assert_good(exec_in(r, cdb10, 10, rc10, 8));
	assert_int_equal(load_be32(rc10), load_be64(rc));
	assert_int_equal(load_be32(rc10 + 4), bs);

	check_vpd_pages(r, unmap_gran, thin);
	check_mode_pages(r, false);
}

static void test_probe_raw(void **state)
{
	(void)state;
	struct rig r = { 0 };
	rig_raw(&r, "probe.raw", DISK_SIZE, false);
	sd_probe(&r, 512, 0, 4096 / 512, false);
	rig_detach(&r);
}

static void test_probe_vhdx_4k(void **state)
{
	(void)state;
	struct rig r = { 0 };
	rig_vhdx(&r, "probe4k.vhdx", 4096);
	sd_probe(&r, 4096, 0, MIB / 4096, true);
	rig_detach(&r);
}

/* The identity is the image's: the same across opens, the VHDX page 83 GUID, different
 * for another image. */
static void test_identity_stable(void **state)
{
	(void)state;
	struct rig r = { 0 };
	uint8_t a[255], b[255];
	rig_vhdx(&r, "id.vhdx", 512);
	size_t n = vpd(&r, 0x83, a);
	rig_detach(&r);
	rig_attach(&r, false);
	assert_int_equal(vpd(&r, 0x83, b), n);
	assert_memory_equal(a, b, n);
	rig_detach(&r);

	char out[16384];
	assert_int_equal(test_run_vdisk(out, sizeof(out), "info --json %s", r.path), 0);
	json_t *info = json_loads(out, 0, NULL);
	assert_non_null(info);
	const char *page83 = json_string_value(json_object_get(
		json_object_get(json_object_get(info, "details"), "metadata"), "page83"));
	assert_non_null(page83);
	struct guid g;
	assert_int_equal(guid_parse(page83, &g), 0);
	char want[33];
	for (int i = 0; i < 16; i++)
		snprintf(want + 2 * i, 3, "%02X", g.bytes[i]);
	assert_memory_equal(a + 4 + 12, want, 32); /* T10 vendor ID: vendor + the GUID */
	json_decref(info);

	struct rig other = { 0 };
	rig_vhdx(&other, "id2.vhdx", 512);
	vpd(&other, 0x83, b);
	assert_memory_not_equal(a + 16, b + 16, 32);
	rig_detach(&other);
}

/* ---- data ---- */

static const uint8_t read_ops[] = { READ_6, READ_10, READ_12, READ_16 };
static const uint8_t write_ops[] = { WRITE_6, WRITE_10, WRITE_12, WRITE_16 };

/* Reads of every CDB size return what the file holds; writes of every size land in the
 * file where they should. */
static void test_read_write_raw(void **state)
{
	(void)state;
	struct rig r = { 0 };
	rig_raw(&r, "rw.raw", DISK_SIZE, false);
	uint8_t cdb[16];
	for (int i = 0; i < 4; i++) {
		uint64_t lba = 1000 + 977 * (uint64_t)i;
		uint32_t blocks = 5 + (uint32_t)i * 3;
		size_t len = blocks * 512u;
		uint8_t *buf = test_xmalloc(len), *file = test_xmalloc(len);

		unsigned n = cdb_rw(cdb, read_ops[i], lba, blocks, 0);
		struct result res = exec_in(&r, cdb, n, buf, len);
		assert_good(res);
		assert_int_equal(res.transferred, len);
		test_expect_pattern(buf, len, lba * 512, SEED, "READ");

		test_fill_pattern(buf, len, 0, SEED + 1 + i);
		n = cdb_rw(cdb, write_ops[i], lba, blocks, 0);
		res = exec_out(&r, cdb, n, buf, len);
		assert_good(res);
		assert_int_equal(res.transferred, len);
		test_file_read(r.path, file, len, lba * 512);
		test_expect_equal(file, buf, len, "WRITE", lba * 512);
		/* the neighbours are untouched */
		test_file_read(r.path, file, 512, (lba + blocks) * 512);
		test_expect_pattern(file, 512, (lba + blocks) * 512, SEED, "after WRITE");
		free(buf);
		free(file);
	}
	/* READ(6) with 0 blocks moves 256 */
	unsigned n = cdb_rw(cdb, READ_6, 7, 0, 0);
	uint8_t *buf = test_xmalloc(256 * 512);
	struct result res = exec_in(&r, cdb, n, buf, 256 * 512);
	assert_good(res);
	assert_int_equal(res.transferred, 256 * 512);
	test_expect_pattern(buf, 256 * 512, 7 * 512, SEED, "READ(6) of 256");
	free(buf);
	rig_detach(&r);
}

/* Several iovecs, longer than the transfer: the data lands in order across them and the
 * tail beyond the transfer is untouched. */
static void test_scattered_buffers(void **state)
{
	(void)state;
	struct rig r = { 0 };
	rig_raw(&r, "sg.raw", DISK_SIZE, false);
	struct gbuf parts[7];
	struct iovec iov[7];
	size_t sizes[7] = { 100, 412, 1, 1023, 512, 2000, 4096 }; /* 8144 bytes */
	for (int i = 0; i < 7; i++) {
		parts[i] = gbuf_new(sizes[i]);
		iov[i] = (struct iovec){ parts[i].data, sizes[i] };
	}
	uint8_t cdb[16];
	unsigned n = cdb_rw(cdb, READ_10, 50, 8, 0); /* 4096 bytes */
	assert_good(exec_iov(&r, cdb, n, true, iov, 7, 8144));
	uint8_t want[4096], got[4096];
	test_fill_pattern(want, sizeof(want), 50 * 512, SEED);
	size_t pos = 0;
	for (int i = 0; i < 7 && pos < 4096; i++) {
		size_t k = sizes[i] < 4096 - pos ? sizes[i] : 4096 - pos;
		memcpy(got + pos, parts[i].data, k);
		if (k < sizes[i])
			assert_int_equal(parts[i].data[k], 0xA5);
		pos += k;
	}
	test_expect_equal(got, want, 4096, "scattered READ", 50 * 512);
	for (int i = 0; i < 7; i++)
		gbuf_check_free(&parts[i]);
	rig_detach(&r);
}

/* VHDX: writes of every CDB size, then qemu-img compares the image with a raw file that
 * got the same writes. */
static void test_read_write_vhdx(void **state)
{
	(void)state;
	struct rig r = { 0 };
	rig_vhdx(&r, "rw.vhdx", 512);
	const char *ref = test_path("rw-ref.raw");
	make_sparse(ref, DISK_SIZE);

	uint8_t cdb[16];
	for (int i = 0; i < 4; i++) {
		uint64_t lba = 3 + 30001 * (uint64_t)i; /* spread over several VHDX blocks */
		uint32_t blocks = 9 + (uint32_t)i;
		size_t len = blocks * 512u;
		uint8_t *buf = test_xmalloc(len), *back = test_xmalloc(len);
		test_fill_pattern(buf, len, lba * 512, SEED + i);
		unsigned n = cdb_rw(cdb, write_ops[i], lba, blocks, i == 3 ? 0x08 : 0);
		assert_good(exec_out(&r, cdb, n, buf, len));
		test_file_write(ref, buf, len, lba * 512);
		n = cdb_rw(cdb, read_ops[(i + 1) % 4], lba, blocks, 0);
		assert_good(exec_in(&r, cdb, n, back, len));
		test_expect_equal(back, buf, len, "VHDX read back", lba * 512);
		free(buf);
		free(back);
	}
	rig_detach(&r);
	if (!test_have("qemu-img"))
		return;
	char out[4096];
	int st = test_run(out, sizeof(out), "qemu-img compare -f vhdx -F raw '%s' '%s'", r.path,
			  ref);
	if (st != 0)
		fail_msg("qemu-img compare: %s", out);
}

/* FUA, and any write while the write cache is off, is a write and then a flush: the
 * command completes after two block layer completions, not one. MODE SELECT turns the
 * cache off the way Linux does (sysfs cache_type). */
static void test_fua_and_write_cache(void **state)
{
	(void)state;
	struct rig r = { 0 };
	rig_raw(&r, "fua.raw", DISK_SIZE, false);
	uint8_t buf[512] = { 1 }, cdb[16];
	unsigned n = cdb_rw(cdb, WRITE_10, 1, 1, 0);
	assert_int_equal(exec_out(&r, cdb, n, buf, 512).completions, 1);
	n = cdb_rw(cdb, WRITE_10, 1, 1, 0x08);
	assert_int_equal(exec_out(&r, cdb, n, buf, 512).completions, 2);
	n = cdb_rw(cdb, WRITE_16, 1, 1, 0x08);
	assert_int_equal(exec_out(&r, cdb, n, buf, 512).completions, 2);
	uint8_t sync[10] = { 0x35 };
	struct result res = exec_none(&r, sync, 10);
	assert_good(res);
	assert_int_equal(res.completions, 1);

	/* cache_type_store: MODE SENSE(10) caching page with DBD, clear WCE, MODE SELECT(10)
	 * with PF and the header's mode data length and device-specific byte cleared */
	uint8_t m[64];
	assert_good(mode_sense_10(&r, 0x08, 0x08, m, sizeof(m)));
	uint8_t sel[8 + 20] = { 0 };
	memcpy(sel + 8, m + 8, 20);
	sel[8 + 2] &= (uint8_t)~0x04;
	uint8_t cdb_sel[10] = { 0x55, 0x10 };
	store_be16(cdb_sel + 7, sizeof(sel));
	res = exec_out(&r, cdb_sel, 10, sel, sizeof(sel));
	assert_good(res);
	assert_int_equal(res.transferred, sizeof(sel));
	assert_good(mode_sense_10(&r, 0x08, 0x08, m, sizeof(m)));
	assert_int_equal(m[8 + 2] & 0x04, 0);
	n = cdb_rw(cdb, WRITE_10, 1, 1, 0);
	assert_int_equal(exec_out(&r, cdb, n, buf, 512).completions, 2);

	/* and back on with MODE SELECT(6), block descriptor included */
	uint8_t sel6[4 + 8 + 20] = { 0, 0, 0, 8 };
	store_be32(sel6 + 4 + 4, 512);
	memcpy(sel6 + 12, m + 8, 20);
	sel6[12 + 2] |= 0x04;
	uint8_t cdb6[6] = { 0x15, 0x10, 0, 0, sizeof(sel6), 0 };
	assert_good(exec_out(&r, cdb6, 6, sel6, sizeof(sel6)));
	n = cdb_rw(cdb, WRITE_10, 1, 1, 0);
	assert_int_equal(exec_out(&r, cdb, n, buf, 512).completions, 1);

	/* refusals: a non-changeable bit, an unknown page, a page running past the list, a
	 * block size change, saving */
	uint8_t bad[8 + 20];
	memcpy(bad, sel, sizeof(bad));
	bad[8 + 2] |= 0x01; /* RCD */
	assert_sense(exec_out(&r, cdb_sel, 10, bad, sizeof(bad)), 5, 0x26, 0);
	memcpy(bad, sel, sizeof(bad));
	bad[8] = 0x1C;
	assert_sense(exec_out(&r, cdb_sel, 10, bad, sizeof(bad)), 5, 0x26, 0);
	memcpy(bad, sel, sizeof(bad));
	bad[9] = 0x40;
	assert_sense(exec_out(&r, cdb_sel, 10, bad, sizeof(bad)), 5, 0x1A, 0);
	uint8_t bad6[sizeof(sel6)];
	memcpy(bad6, sel6, sizeof(bad6));
	store_be32(bad6 + 4 + 4, 4096);
	assert_sense(exec_out(&r, cdb6, 6, bad6, sizeof(bad6)), 5, 0x26, 0);
	cdb6[1] = 0x11;
	assert_sense(exec_out(&r, cdb6, 6, sel6, sizeof(sel6)), 5, 0x24, 0);
	rig_detach(&r);
}

/* ---- discard ---- */

static struct result unmap_list(struct rig *r, const uint8_t *list, size_t len, uint16_t plen)
{
	uint8_t cdb[10] = { 0x42 };
	store_be16(cdb + 7, plen);
	return exec_out(r, cdb, 10, list, len);
}

static size_t build_unmap(uint8_t *list, const uint64_t (*desc)[2], unsigned n)
{
	memset(list, 0, 8 + 16 * n);
	store_be16(list, (uint16_t)(6 + 16 * n));
	store_be16(list + 2, (uint16_t)(16 * n));
	for (unsigned i = 0; i < n; i++) {
		store_be64(list + 8 + 16 * i, desc[i][0]);
		store_be32(list + 8 + 16 * i + 8, (uint32_t)desc[i][1]);
	}
	return 8 + 16 * n;
}

static uint64_t info_allocated(const char *path)
{
	char out[16384];
	assert_int_equal(test_run_vdisk(out, sizeof(out), "info -U --json %s", path), 0);
	json_t *info = json_loads(out, 0, NULL);
	assert_non_null(info);
	json_t *v = json_object_get(info, "allocated_size");
	assert_non_null(v);
	uint64_t n = (uint64_t)json_integer_value(v);
	json_decref(info);
	return n;
}

static void expect_zero_file(const char *path, uint64_t off, size_t len)
{
	uint8_t *buf = test_xmalloc(len), *zero = calloc(1, len);
	test_file_read(path, buf, len, off);
	test_expect_equal(buf, zero, len, "discarded range", off);
	free(buf);
	free(zero);
}

/* UNMAP and WRITE SAME with UNMAP on a raw file: the ranges read zeros and their blocks
 * go back to the file system. */
static void test_discard_raw(void **state)
{
	(void)state;
	struct rig r = { 0 };
	rig_raw(&r, "discard.raw", DISK_SIZE, false);
	uint64_t before = file_blocks(r.path), alloc_before = info_allocated(r.path);

	uint8_t list[8 + 16 * 3];
	const uint64_t desc[3][2] = { { 2048, 2048 }, { 8192, 4096 }, { 20000, 0 } };
	size_t len = build_unmap(list, desc, 3);
	struct result res = unmap_list(&r, list, len, (uint16_t)len);
	assert_good(res);
	assert_int_equal(res.transferred, len);
	expect_zero_file(r.path, 2048 * 512, 2048 * 512);
	expect_zero_file(r.path, 8192 * 512, 4096 * 512);
	uint8_t edge[512];
	test_file_read(r.path, edge, 512, 4096 * 512);
	test_expect_pattern(edge, 512, 4096 * 512, SEED, "after the unmapped range");

	/* WRITE SAME(16) with UNMAP and a zero block, as sd issues discards in WS16 mode */
	uint8_t cdb[16], zero[512] = { 0 };
	unsigned n = cdb_rw(cdb, 0x93, 40960, 8192, 0x08);
	assert_good(exec_out(&r, cdb, n, zero, 512));
	expect_zero_file(r.path, 40960ull * 512, 8192 * 512);
	/* WRITE SAME(16) with NDOB: no data-out buffer at all */
	n = cdb_rw(cdb, 0x93, 60000, 100, 0x01);
	assert_good(exec_none(&r, cdb, n));
	expect_zero_file(r.path, 60000ull * 512, 100 * 512);

	uint64_t after = file_blocks(r.path);
	assert_true(before - after >= 2048 + 4096 + 8192 - 64); /* both in 512-byte units */
	assert_true(info_allocated(r.path) < alloc_before);
	rig_detach(&r);
}

/* The number of VHDX payload blocks in a state, from `vdisk info --json`. */
static uint64_t vhdx_blocks(const char *path, const char *state)
{
	char out[65536];
	int st = test_run_vdisk(out, sizeof(out), "info --json %s", path);
	if (st != 0)
		fail_msg("vdisk info: %s", out);
	json_t *info = json_loads(out, 0, NULL);
	assert_non_null(info);
	json_t *states = json_object_get(json_object_get(info, "details"), "block_states");
	json_t *v = json_object_get(states, state);
	if (!json_is_integer(v))
		fail_msg("no block state %s in:\n%s", state, out);
	uint64_t n = (uint64_t)json_integer_value(v);
	json_decref(info);
	return n;
}

/* VHDX: UNMAP and WRITE SAME with UNMAP of whole blocks give them back to the format
 * (`vdisk info` counts no present block) and the image reads zeros, in QEMU too. */
static void test_discard_vhdx(void **state)
{
	(void)state;
	struct rig r = { 0 };
	rig_vhdx(&r, "discard.vhdx", 512);
	/* fill blocks 2..4 (1 MiB each) */
	uint8_t *buf = test_xmalloc(3 * MIB), cdb[16];
	test_fill_pattern(buf, 3 * MIB, 0, SEED);
	unsigned n = cdb_rw(cdb, WRITE_16, 2 * MIB / 512, 3 * MIB / 512, 0);
	assert_good(exec_out(&r, cdb, n, buf, 3 * MIB));
	rig_detach(&r); /* an image open for writing is described only after it closes */
	assert_int_equal(vhdx_blocks(r.path, "fully_present"), 3);
	rig_attach(&r, false);

	uint8_t list[8 + 16];
	const uint64_t desc[1][2] = { { 2 * MIB / 512, 2 * MIB / 512 } };
	size_t len = build_unmap(list, desc, 1);
	assert_good(unmap_list(&r, list, len, (uint16_t)len));
	/* the last block by WRITE SAME(10) with UNMAP */
	uint8_t zero[512] = { 0 };
	n = cdb_rw(cdb, 0x41, 4 * MIB / 512, MIB / 512, 0x08);
	assert_good(exec_out(&r, cdb, n, zero, 512));
	n = cdb_rw(cdb, READ_16, 2 * MIB / 512, 3 * MIB / 512, 0);
	assert_good(exec_in(&r, cdb, n, buf, 3 * MIB));
	uint8_t *zeros = calloc(1, 3 * MIB);
	test_expect_equal(buf, zeros, 3 * MIB, "unmapped VHDX blocks", 2 * MIB);
	free(zeros);
	free(buf);
	rig_detach(&r);
	assert_int_equal(vhdx_blocks(r.path, "fully_present"), 0);
	if (!test_have("qemu-img"))
		return;
	const char *ref = test_path("zero-ref.raw");
	make_sparse(ref, DISK_SIZE);
	char out[4096];
	if (test_run(out, sizeof(out), "qemu-img compare -f vhdx -F raw '%s' '%s'", r.path, ref))
		fail_msg("qemu-img compare: %s", out);
}

/* WRITE SAME without UNMAP replicates its block, across the chunks it is written in. */
static void test_write_same_replicates(void **state)
{
	(void)state;
	struct rig r = { 0 };
	rig_raw(&r, "ws.raw", DISK_SIZE, false);
	uint8_t block[512], cdb[16];
	test_fill_pattern(block, 512, 0, 99);
	uint32_t blocks = 5000; /* 2.4 MiB: three chunks */
	unsigned n = cdb_rw(cdb, 0x41, 777, blocks, 0);
	struct result res = exec_out(&r, cdb, n, block, 512);
	assert_good(res);
	assert_int_equal(res.transferred, 512);
	uint8_t *file = test_xmalloc(blocks * 512u);
	test_file_read(r.path, file, blocks * 512u, 777 * 512);
	for (uint32_t i = 0; i < blocks; i++)
		test_expect_equal(file + 512 * i, block, 512, "replicated block", (777 + i) * 512);
	free(file);
	test_file_read(r.path, block, 512, (777 + blocks) * 512);
	test_expect_pattern(block, 512, (777 + blocks) * 512, SEED, "after WRITE SAME");
	rig_detach(&r);
}

/* ---- sense codes ---- */

static void test_sense_codes(void **state)
{
	(void)state;
	struct rig r = { 0 };
	rig_raw(&r, "sense.raw", DISK_SIZE, false);
	uint8_t cdb[16], buf[4096];
	uint64_t cap = DISK_SIZE / 512;

	uint8_t bad_op[10] = { 0xC7 };
	assert_sense(exec_none(&r, bad_op, 10), 5, 0x20, 0);
	uint8_t rsoc[12] = { 0xA3, 0x0C }; /* REPORT SUPPORTED OPERATION CODES: not offered */
	assert_sense(exec_in(&r, rsoc, 12, buf, 512), 5, 0x20, 0);
	assert_sense(exec_in(&r, (uint8_t[12]){ 0xA0 }, 12, buf, 64), 5, 0x20, 0);

	unsigned n = cdb_rw(cdb, READ_10, cap - 1, 2, 0);
	assert_sense(exec_in(&r, cdb, n, buf, 1024), 5, 0x21, 0);
	n = cdb_rw(cdb, WRITE_16, cap, 1, 0);
	assert_sense(exec_out(&r, cdb, n, buf, 512), 5, 0x21, 0);
	n = cdb_rw(cdb, 0x2F, cap, 1, 0); /* VERIFY(10) */
	assert_sense(exec_none(&r, cdb, n), 5, 0x21, 0);
	n = cdb_rw(cdb, 0x2F, cap - 1, 1, 0);
	assert_good(exec_none(&r, cdb, n));
	n = cdb_rw(cdb, 0x91, cap + 1, 0, 0); /* SYNCHRONIZE CACHE(16) */
	assert_sense(exec_none(&r, cdb, n), 5, 0x21, 0);

	n = cdb_rw(cdb, READ_10, 0, 1, 0x20); /* RDPROTECT without protection information */
	assert_sense(exec_in(&r, cdb, n, buf, 512), 5, 0x24, 0);
	n = cdb_rw(cdb, 0x2F, 0, 1, 0x02); /* VERIFY with BYTCHK */
	assert_sense(exec_out(&r, cdb, n, buf, 512), 5, 0x24, 0);
	assert_sense(inquiry(&r, false, 0x80, buf, 255), 5, 0x24, 0); /* page without EVPD */
	assert_sense(inquiry(&r, true, 0x89, buf, 255), 5, 0x24, 0);  /* no ATA information */
	uint8_t sai[16] = { 0x9E, 0x12 }; /* GET LBA STATUS: not offered */
	assert_sense(exec_in(&r, sai, 16, buf, 32), 5, 0x24, 0);
	uint8_t rc10[10] = { 0x25, 0, 0, 0, 0, 1 }; /* an LBA without PMI */
	assert_sense(exec_in(&r, rc10, 10, buf, 8), 5, 0x24, 0);
	assert_sense(mode_sense_10(&r, 0, 0x1C, buf, 255), 5, 0x24, 0); /* no such page */

	uint8_t list[8 + 16];
	const uint64_t desc[1][2] = { { 0, 8 } };
	build_unmap(list, desc, 1);
	store_be16(list + 2, 32); /* descriptors past the parameter data */
	assert_sense(unmap_list(&r, list, sizeof(list), sizeof(list)), 5, 0x26, 0);

	uint8_t rs[6] = { 0x03, 0, 0, 0, 18, 0 };
	struct result res = exec_in(&r, rs, 6, buf, 18);
	assert_good(res);
	assert_int_equal(buf[2] & 0x0F, 0); /* NO SENSE */
	rs[1] = 0x01;			    /* descriptor format */
	assert_sense(exec_in(&r, rs, 6, buf, 18), 5, 0x24, 0);

	if (have_sg3()) {
		char out[4096];
		n = cdb_rw(cdb, READ_10, cap, 1, 0);
		res = exec_in(&r, cdb, n, buf, 512);
		const char *hex = hex_file(res.sense, SCSI_SENSE_LEN);
		assert_int_equal(test_run(out, sizeof(out), "sg_decode_sense --file=%s", hex), 0);
		assert_contains(out, "Illegal Request");
		assert_contains(out, "Logical block address out of range");
	}
	rig_detach(&r);
}

static void test_read_only(void **state)
{
	(void)state;
	struct rig r = { 0 };
	rig_raw(&r, "ro.raw", DISK_SIZE, true);
	uint8_t cdb[16], buf[512] = { 0 }, m[64];
	for (int i = 0; i < 4; i++) {
		unsigned n = cdb_rw(cdb, write_ops[i], 10, 1, 0);
		assert_sense(exec_out(&r, cdb, n, buf, 512), 7, 0x27, 0);
	}
	unsigned n = cdb_rw(cdb, 0x93, 10, 1, 0x08);
	assert_sense(exec_out(&r, cdb, n, buf, 512), 7, 0x27, 0);
	uint8_t list[8 + 16];
	const uint64_t desc[1][2] = { { 0, 8 } };
	build_unmap(list, desc, 1);
	assert_sense(unmap_list(&r, list, sizeof(list), sizeof(list)), 7, 0x27, 0);
	uint8_t sync[10] = { 0x35 };
	assert_good(exec_none(&r, sync, 10));
	n = cdb_rw(cdb, READ_10, 10, 1, 0);
	assert_good(exec_in(&r, cdb, n, buf, 512));
	test_expect_pattern(buf, 512, 10 * 512, SEED, "read-only READ");
	assert_good(mode_sense_10(&r, 0x08, 0x3F, m, sizeof(m)));
	assert_int_equal(m[3] & 0x80, 0x80); /* WP */
	rig_detach(&r);
	uint8_t file[512];
	test_file_read(r.path, file, 512, 10 * 512);
	test_expect_pattern(file, 512, 10 * 512, SEED, "read-only image");
}

/* Medium errors: a differencing VHDX opened without its parent fails reads of what it
 * does not hold (-ENODATA): 03/11/00. A write that must grow a VHDX past the file size
 * limit fails: 03/0C/00. */
static void test_medium_errors(void **state)
{
	(void)state;
	const char *base = test_path("base.vhdx"), *child = test_path("child.vhdx");
	create_vhdx(base, DISK_SIZE, MIB, 512);
	struct vdisk_create_options o = { .format = "vhdx", .parent = base, .overwrite = true };
	char err[256] = "";
	if (vdisk_create(child, &o, err, sizeof(err)))
		fail_msg("create %s: %s", child, err);

	struct rig r = { 0 };
	struct vdisk_options vo = { .cache = VDISK_CACHE_WRITEBACK,
				    .no_backing = true,
				    .engine = VDISK_ENGINE_SYNC };
	assert_int_equal(vdisk_open(child, &vo, &r.disk, err, sizeof(err)), 0);
	assert_int_equal(test_track_disk(r.disk), 0);
	r.q = vdisk_queue(r.disk, 0);
	struct scsi_disk_config cfg;
	assert_int_equal(scsi_disk_config_from_vdisk(r.disk, &cfg), 0);
	assert_int_equal(scsi_disk_create(r.disk, &cfg, &r.sd), 0);
	uint8_t cdb[16], buf[4096];
	unsigned n = cdb_rw(cdb, READ_10, 100, 8, 0);
	assert_sense(exec_in(&r, cdb, n, buf, 4096), 3, 0x11, 0);

	struct stat st;
	assert_int_equal(stat(child, &st), 0);
	struct rlimit old, lim;
	assert_int_equal(getrlimit(RLIMIT_FSIZE, &old), 0);
	lim = old;
	lim.rlim_cur = (rlim_t)st.st_size;
	void (*prev)(int) = signal(SIGXFSZ, SIG_IGN);
	assert_int_equal(setrlimit(RLIMIT_FSIZE, &lim), 0);
	memset(buf, 0x5A, sizeof(buf));
	n = cdb_rw(cdb, WRITE_10, 40 * MIB / 512, 8, 0);
	struct result res = exec_out(&r, cdb, n, buf, 4096);
	setrlimit(RLIMIT_FSIZE, &old);
	signal(SIGXFSZ, prev);
	assert_sense(res, 3, 0x0C, 0);
	scsi_disk_destroy(r.sd);
	test_close_disk(r.disk);
}

/* ---- unit attentions ---- */

static void test_unit_attentions(void **state)
{
	(void)state;
	struct rig r = { 0 };
	snprintf(r.path, sizeof(r.path), "%s", test_path("ua.vhdx"));
	create_vhdx(r.path, DISK_SIZE, MIB, 512);
	rig_attach(&r, false);
	uint8_t buf[255], rc[32];

	scsi_disk_reset(r.sd);
	assert_good(inquiry(&r, false, 0, buf, 36)); /* INQUIRY passes, and leaves it */
	assert_sense(test_unit_ready(&r), 6, 0x29, 0);
	assert_good(test_unit_ready(&r));

	char err[256];
	assert_int_equal(vdisk_resize(r.disk, 2 * DISK_SIZE, 0, NULL, err, sizeof(err)), 0);
	scsi_disk_capacity_changed(r.sd);
	assert_sense(read_capacity_16(&r, rc), 6, 0x2A, 0x09);
	assert_good(read_capacity_16(&r, rc));
	assert_int_equal(load_be64(rc) + 1, 2 * DISK_SIZE / 512);

	/* both pending: the reset first; REQUEST SENSE reports and clears one */
	scsi_disk_capacity_changed(r.sd);
	scsi_disk_reset(r.sd);
	uint8_t rs[6] = { 0x03, 0, 0, 0, 18, 0 };
	assert_good(exec_in(&r, rs, 6, buf, 18));
	assert_int_equal(buf[2] & 0x0F, 6);
	assert_int_equal(buf[12], 0x29);
	assert_sense(test_unit_ready(&r), 6, 0x2A, 0x09);
	assert_good(test_unit_ready(&r));
	rig_detach(&r);
}

/* ---- the absent LUN ---- */

static void run_inline(struct scsi_request *req, void (*fn)(struct scsi_request *))
{
	struct cmd *c = (struct cmd *)((char *)req - offsetof(struct cmd, req));
	c->done_calls = 0;
	req->done = on_done;
	fn(req);
	assert_int_equal(c->done_calls, 1);
}

static void test_absent_lun(void **state)
{
	(void)state;
	uint8_t data[96];
	uint8_t inq[6] = { 0x12, 0, 0, 0, 96, 0 };
	struct cmd c = { .req = { .cdb = inq,
				  .cdb_len = 6,
				  .data_in = true,
				  .iov = &(struct iovec){ data, sizeof(data) },
				  .iovcnt = 1,
				  .transfer_len = sizeof(data) } };
	run_inline(&c.req, scsi_absent_lun_execute);
	assert_int_equal(c.req.status, SCSI_STATUS_GOOD);
	assert_int_equal(data[0], 0x7F);
	assert_true(c.req.transferred >= 5 && c.req.transferred == data[4] + 5u);
	if (have_sg3()) {
		char out[4096];
		sg_decode(out, sizeof(out), "sg_inq", data, c.req.transferred);
		assert_contains(out, "PQual=3");
	}
	uint8_t tur[6] = { 0 };
	c.req.cdb = tur;
	run_inline(&c.req, scsi_absent_lun_execute);
	assert_int_equal(c.req.status, SCSI_STATUS_CHECK_CONDITION);
	assert_int_equal(c.req.sense[2], 5);
	assert_int_equal(c.req.sense[12], 0x25);
	uint8_t rs[6] = { 0x03, 0, 0, 0, 18, 0 };
	c.req.cdb = rs;
	run_inline(&c.req, scsi_absent_lun_execute);
	assert_int_equal(c.req.status, SCSI_STATUS_GOOD);
	assert_int_equal(data[12], 0x25);
}

/* ---- hostile input ---- */

static void test_hostile_cdbs(void **state)
{
	(void)state;
	struct rig r = { 0 };
	rig_raw(&r, "hostile.raw", DISK_SIZE, false);
	uint8_t cdb[32] = { 0 }, buf[4096];

	/* CDBs of the wrong length */
	assert_sense(exec_none(&r, cdb, 5), 5, 0x24, 0);
	assert_sense(exec_none(&r, cdb, 17), 5, 0x24, 0);
	assert_sense(exec_none(&r, NULL, 6), 5, 0x24, 0);
	unsigned n = cdb_rw(cdb, READ_10, 0, 1, 0);
	assert_sense(exec_in(&r, cdb, 6, buf, 512), 5, 0x24, 0);
	n = cdb_rw(cdb, READ_16, 0, 1, 0);
	assert_sense(exec_in(&r, cdb, 12, buf, 512), 5, 0x24, 0);
	assert_good(exec_in(&r, cdb, n, buf, 512));

	/* LBA + length past 2^64 */
	n = cdb_rw(cdb, READ_16, UINT64_MAX - 3, 16, 0);
	assert_sense(exec_in(&r, cdb, n, buf, 4096), 5, 0x21, 0);
	n = cdb_rw(cdb, 0x93, UINT64_MAX, 2, 0x08);
	assert_sense(exec_out(&r, cdb, n, buf, 512), 5, 0x21, 0);
	n = cdb_rw(cdb, 0x91, UINT64_MAX, UINT32_MAX, 0);
	assert_sense(exec_none(&r, cdb, n), 5, 0x21, 0);
	uint8_t list[8 + 16];
	const uint64_t wrap[1][2] = { { UINT64_MAX - 1, 4 } };
	build_unmap(list, wrap, 1);
	assert_sense(unmap_list(&r, list, sizeof(list), sizeof(list)), 5, 0x21, 0);

	/* transfers longer than the buffers or than transfer_len: refused whole */
	n = cdb_rw(cdb, READ_10, 0, 8, 0);
	assert_sense(exec_in(&r, cdb, n, buf, 2048), 5, 0x24, 0);
	struct gbuf g = gbuf_new(4096);
	struct iovec iov = { g.data, 4096 };
	assert_sense(exec_iov(&r, cdb, n, true, &iov, 1, 1024), 5, 0x24, 0);
	n = cdb_rw(cdb, READ_10, 0, 8, 0); /* data-in command, data-out buffer */
	assert_sense(exec_iov(&r, cdb, n, false, &iov, 1, 4096), 5, 0x24, 0);
	n = cdb_rw(cdb, WRITE_10, 0, 8, 0); /* data-out command, data-in buffer */
	assert_sense(exec_iov(&r, cdb, n, true, &iov, 1, 4096), 5, 0x24, 0);
	gbuf_check_free(&g);
	/* a 4 GiB READ on a small buffer */
	n = cdb_rw(cdb, READ_16, 0, 8u << 20, 0);
	assert_sense(exec_in(&r, cdb, n, buf, sizeof(buf)), 5, 0x21, 0);
	rig_detach(&r);

	/* a sparse 3 TiB disk: more blocks than READ CAPACITY(10) can count */
	struct rig big = { 0 };
	uint64_t big_size = 3ull << 40;
	snprintf(big.path, sizeof(big.path), "%s", test_path("big.raw"));
	make_sparse(big.path, big_size);
	rig_attach(&big, false);
	n = cdb_rw(cdb, READ_16, 0, 8u << 20, 0); /* 4 GiB */
	assert_sense(exec_in(&big, cdb, n, buf, sizeof(buf)), 5, 0x24, 0);
	n = cdb_rw(cdb, READ_12, 0, 16, 0); /* within the limits, beyond the buffer */
	assert_sense(exec_in(&big, cdb, n, buf, sizeof(buf)), 5, 0x24, 0);
	n = cdb_rw(cdb, WRITE_16, 0, 8u << 20, 0);
	assert_sense(exec_out(&big, cdb, n, buf, sizeof(buf)), 5, 0x24, 0);
	/* a million-block WRITE SAME, with and without UNMAP */
	n = cdb_rw(cdb, 0x93, 0, 1000000, 0);
	memset(buf, 0x77, 512);
	assert_sense(exec_out(&big, cdb, n, buf, 512), 5, 0x24, 0);
	n = cdb_rw(cdb, 0x93, 0, 1000000, 0x08);
	assert_sense(exec_out(&big, cdb, n, buf, 512), 5, 0x24, 0);
	n = cdb_rw(cdb, 0x93, 0, 0, 0); /* 0 blocks (WSNZ) */
	assert_sense(exec_out(&big, cdb, n, buf, 512), 5, 0x24, 0);
	n = cdb_rw(cdb, 0x93, 0, 4, 0); /* the block is not in the buffer */
	assert_sense(exec_out(&big, cdb, n, buf, 100), 5, 0x24, 0);
	/* UNMAP beyond the maximum LBA count (VPD B0h) in one command, each descriptor
	 * below it */
	uint8_t b0[255];
	vpd(&big, 0xB0, b0);
	uint32_t max_unmap = load_be32(b0 + 20);
	uint8_t big_list[8 + 32];
	const uint64_t many[2][2] = { { 0, max_unmap / 2 + 1 }, { 1ull << 32, max_unmap / 2 } };
	build_unmap(big_list, many, 2);
	assert_sense(unmap_list(&big, big_list, sizeof(big_list), sizeof(big_list)), 5, 0x26, 0);
	/* READ CAPACITY(10) says FFFFFFFFh (use the 16-byte one), and so does the short
	 * block descriptor of MODE SENSE */
	uint8_t rc10[10] = { 0x25 };
	memset(buf, 0, 8);
	assert_good(exec_in(&big, rc10, 10, buf, 8));
	assert_int_equal(load_be32(buf), 0xFFFFFFFF);
	uint8_t rc[32];
	assert_good(read_capacity_16(&big, rc));
	assert_int_equal(load_be64(rc), big_size / 512 - 1);
	uint8_t ms6[6] = { 0x1A, 0, 0x08, 0, 255, 0 };
	assert_good(exec_in(&big, ms6, 6, buf, 255));
	assert_int_equal(load_be32(buf + 4), 0xFFFFFFFF);
	rig_detach(&big);
	unlink(big.path);
}

/* UNMAP parameter lists that lie about their lengths. */
static void test_hostile_unmap(void **state)
{
	(void)state;
	struct rig r = { 0 };
	rig_raw(&r, "hunmap.raw", DISK_SIZE, false);
	uint8_t list[8 + 16 * 300];
	uint64_t desc[300][2];
	for (int i = 0; i < 300; i++) {
		desc[i][0] = (uint64_t)i * 16;
		desc[i][1] = 8;
	}
	size_t len = build_unmap(list, (const uint64_t(*)[2])desc, 2);
	assert_sense(unmap_list(&r, list, len, 4), 5, 0x1A, 0);			   /* < 8 bytes */
	assert_sense(unmap_list(&r, list, len, (uint16_t)(len + 16)), 5, 0x24, 0); /* > buffer */
	store_be16(list, 200); /* data length past the list */
	assert_sense(unmap_list(&r, list, len, (uint16_t)len), 5, 0x26, 0);
	len = build_unmap(list, (const uint64_t(*)[2])desc, 2);
	store_be16(list + 2, 20); /* not a multiple of 16 */
	assert_sense(unmap_list(&r, list, len, (uint16_t)len), 5, 0x26, 0);
	len = build_unmap(list, (const uint64_t(*)[2])desc, 2);
	assert_sense(unmap_list(&r, list, len, (uint16_t)len - 8), 5, 0x26, 0); /* cut list */
	len = build_unmap(list, (const uint64_t(*)[2])desc, 300); /* too many descriptors */
	assert_sense(unmap_list(&r, list, len, (uint16_t)len), 5, 0x26, 0);
	len = build_unmap(list, (const uint64_t(*)[2])desc, 2);
	store_be32(list + 8 + 8, 0xFFFFFFFF); /* more than the disk */
	assert_sense(unmap_list(&r, list, len, (uint16_t)len), 5, 0x21, 0);
	/* none of the refused lists discarded anything */
	uint8_t *back = test_xmalloc(300 * 16 * 512);
	test_file_read(r.path, back, 300 * 16 * 512, 0);
	test_expect_pattern(back, 300 * 16 * 512, 0, SEED, "after refused UNMAPs");
	free(back);
	uint8_t cdb[10] = { 0x42, 0x01 }; /* ANCHOR */
	store_be16(cdb + 7, 24);
	assert_sense(exec_out(&r, cdb, 10, list, 24), 5, 0x24, 0);
	cdb[1] = 0;
	store_be16(cdb + 7, 0); /* an empty list does nothing */
	assert_good(exec_none(&r, cdb, 10));
	rig_detach(&r);
}

/* Replies cut by the allocation length or the buffers, never past either. */
static void test_short_buffers(void **state)
{
	(void)state;
	struct rig r = { 0 };
	rig_raw(&r, "short.raw", DISK_SIZE, false);
	uint8_t full[255], part[255];
	assert_good(inquiry(&r, false, 0, full, 255));
	for (uint16_t alloc = 0; alloc < 80; alloc += 7) {
		struct result res = inquiry(&r, false, 0, part, alloc);
		assert_good(res);
		assert_int_equal(res.transferred, alloc < 74 ? alloc : 74);
		assert_memory_equal(part, full, res.transferred);
	}
	/* allocation length larger than the buffer: the buffer bounds it */
	uint8_t cdb[6] = { 0x12, 1, 0x83, 0, 255, 0 };
	struct result res = exec_in(&r, cdb, 6, part, 10);
	assert_good(res);
	assert_int_equal(res.transferred, 10);
	uint8_t rc[16] = { 0x9E, 0x10 };
	store_be32(rc + 10, 12);
	res = exec_in(&r, rc, 16, part, 32);
	assert_good(res);
	assert_int_equal(res.transferred, 12);
	rig_detach(&r);
}

/* Random CDBs of random lengths against small guarded buffers: every one ends in a
 * defined status, with sense when CHECK CONDITION, never moving more than allowed, never
 * touching the guards (the sanitizer build watches the rest). */
static void test_random_cdbs(void **state)
{
	(void)state;
	struct rig r = { 0 };
	rig_raw(&r, "fuzz.raw", DISK_SIZE, false);
	uint64_t seed = test_env_seed("HVSTACK_SCSI_SEED"), s = seed;
	static const uint8_t ops[] = { 0x00, 0x03, 0x08, 0x0A, 0x12, 0x15, 0x1A, 0x1B, 0x1E, 0x25,
				       0x28, 0x2A, 0x2F, 0x35, 0x41, 0x42, 0x55, 0x5A, 0x88, 0x8A,
				       0x8F, 0x91, 0x93, 0x9E, 0xA0, 0xA8, 0xAA, 0xAF };
	for (int i = 0; i < 20000; i++) {
		uint8_t cdb[20];
		for (size_t k = 0; k < sizeof(cdb); k++)
			cdb[k] = (uint8_t)test_rnd(&s);
		if (test_rnd_below(&s, 4))
			cdb[0] = ops[test_rnd_below(&s, sizeof(ops))];
		if (test_rnd_below(&s, 2)) { /* small LBAs and counts reach the I/O paths */
			memset(cdb + 2, 0, 6);
			cdb[5] = (uint8_t)test_rnd(&s);
			memset(cdb + 6, 0, 8);
			cdb[8] = (uint8_t)test_rnd_below(&s, 16);
			cdb[13] = (uint8_t)test_rnd_below(&s, 16);
		}
		unsigned cdb_len = (unsigned)test_rnd_below(&s, 19);
		size_t len = (size_t)test_rnd_below(&s, 9000);
		bool in = test_rnd_below(&s, 2);
		uint64_t transfer = test_rnd_below(&s, 4) ? len : test_rnd(&s);
		struct gbuf b = gbuf_new(len);
		test_fill_pattern(b.data, len, 0, (uint32_t)i);
		struct iovec iov = { b.data, len };
		struct result res = exec_iov(&r, cdb, cdb_len, in, &iov, 1, transfer);
		if (res.status != SCSI_STATUS_GOOD && res.status != SCSI_STATUS_CHECK_CONDITION)
			fail_msg("seed %" PRIu64 " cdb %d: status %02x", seed, i, res.status);
		if (res.transferred > len || res.transferred > transfer)
			fail_msg("seed %" PRIu64 " cdb %d: moved %" PRIu64 " of %zu", seed, i,
				 res.transferred, len);
		gbuf_check_free(&b);
	}
	rig_detach(&r);
}

static int group_teardown(void **state)
{
	test_close_tracked();
	return test_teardown_tmpdir(state);
}

int main(void)
{
	vhdx_register();
	if (!test_vdisk_binary())
		return TEST_SKIP;
	if (!have_sg3())
		fprintf(stderr, "note: sg3-utils missing, INQUIRY/VPD/sense decoding not "
				"cross-checked (scripts/install-deps.sh)\n");
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_probe_raw),
		cmocka_unit_test(test_probe_vhdx_4k),
		cmocka_unit_test(test_identity_stable),
		cmocka_unit_test(test_read_write_raw),
		cmocka_unit_test(test_scattered_buffers),
		cmocka_unit_test(test_read_write_vhdx),
		cmocka_unit_test(test_fua_and_write_cache),
		cmocka_unit_test(test_discard_raw),
		cmocka_unit_test(test_discard_vhdx),
		cmocka_unit_test(test_write_same_replicates),
		cmocka_unit_test(test_sense_codes),
		cmocka_unit_test(test_read_only),
		cmocka_unit_test(test_medium_errors),
		cmocka_unit_test(test_unit_attentions),
		cmocka_unit_test(test_absent_lun),
		cmocka_unit_test(test_hostile_cdbs),
		cmocka_unit_test(test_hostile_unmap),
		cmocka_unit_test(test_short_buffers),
		cmocka_unit_test(test_random_cdbs),
	};
	return cmocka_run_group_tests(tests, NULL, group_teardown);
}
