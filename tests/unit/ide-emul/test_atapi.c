/* The ATAPI DVD drive driven through its ports the way SeaBIOS (src/hw/ata.c, cdrom.c) and
 * Linux (libata's ATAPI path, sr_mod) drive it, with simulated guest memory. Media are raw
 * files of a known pattern read back independently with pread, and an El Torito ISO made
 * by xorriso whose boot image file is the oracle for what the boot sequence reads. Packet
 * replies are checked field by field against the SPC-4/MMC-5 layouts. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <stdio.h>

#include "ide_rig.h"
#include "test_cli.h"

struct vdisk *test_open_disks[TEST_MAX_OPEN_DISKS];

#define CMD	   0x170 /* the DVD drive: secondary channel, master */
#define CTL	   0x376
#define BM	   (BM_BASE + 8)
#define IRQ	   15
#define CD_SECTORS 512u /* a 1 MiB medium */
#define SEED	   11
#define SEED2	   23
#define PRD_TABLE  0x1000u

/* Status, interrupt reason */
enum { BSY = 0x80, DRDY = 0x40, DRQ = 0x08, ERR = 0x01 };
enum { COD = 1, IO = 2 };

static int setup(void **state)
{
	struct rig *r = rig_new("medium.raw");
	r->disk = rig_open_raw(r->path, CD_SECTORS * 2048, SEED, true);
	assert_int_equal(ide_attach_cdrom(r->ide, 1, 0, r->disk), 0);
	*state = r;
	return 0;
}

static int setup_empty(void **state)
{
	struct rig *r = rig_new("medium.raw");
	assert_int_equal(ide_attach_cdrom(r->ide, 1, 0, NULL), 0);
	*state = r;
	return 0;
}

static int teardown(void **state)
{
	rig_free(*state);
	return 0;
}

static uint8_t wait_not_busy(struct rig *r)
{
	return rig_wait_not_busy(r, CTL);
}

static void srst(struct rig *r)
{
	outb(r, CTL, 0x0E);
	assert_int_equal(inb(r, CTL) & BSY, BSY);
	outb(r, CTL, 0x0A);
	outb(r, CTL, 0x08);
}

static void expect_signature(struct rig *r, uint16_t cmd)
{
	assert_int_equal(inb(r, cmd + 2), 1);
	assert_int_equal(inb(r, cmd + 3), 1);
	assert_int_equal(inb(r, cmd + 4), 0x14);
	assert_int_equal(inb(r, cmd + 5), 0xEB);
}

/* ---- the packet protocol ---- */

struct result {
	uint8_t status, error, reason;
	uint32_t bytes;	      /* data the device sent */
	uint32_t blocks;      /* DRQ blocks */
	uint32_t block[4096]; /* their byte counts */
};

/* PACKET with a byte count limit (PIO) or the DMA bit, then the 12-byte packet. */
static void send_packet(struct rig *r, const uint8_t cdb[12], uint16_t limit, bool dma)
{
	outb(r, CMD + 6, 0xA0);
	outb(r, CMD + 1, dma ? 1 : 0);
	outb(r, CMD + 4, (uint8_t)limit);
	outb(r, CMD + 5, (uint8_t)(limit >> 8));
	outb(r, CMD + 7, 0xA0);
	uint8_t st = wait_not_busy(r);
	assert_int_equal(st & (DRQ | ERR), DRQ);
	assert_int_equal(inb(r, CMD + 2) & 3, COD); /* the device wants the packet */
	r->irq_seen = r->irq_raises[IRQ];
	for (int i = 0; i < 6; i++)
		outw(r, CMD, (uint16_t)(cdb[2 * i] | cdb[2 * i + 1] << 8));
}

/* The data-in phase in PIO, as libata's atapi_pio_bytes: each DRQ block announces its
 * size in LBA mid/high with interrupt reason IO; then the status phase. */
static void pio_data_in(struct rig *r, uint8_t *out, uint32_t max, struct result *res)
{
	memset(res, 0, sizeof(*res));
	for (;;) {
		wait_not_busy(r);
		/* every DRQ block and the status phase come with an interrupt */
		assert_true(r->irq_raises[IRQ] > r->irq_seen);
		uint8_t st = inb(r, CMD + 7); /* acknowledges it */
		r->irq_seen = r->irq_raises[IRQ];
		if (!(st & DRQ))
			break;
		assert_int_equal(inb(r, CMD + 2) & 3, IO);
		uint32_t n = inb(r, CMD + 4) | inb(r, CMD + 5) << 8;
		assert_true(n > 0);
		assert_true(res->bytes + n <= max);
		assert_true(res->blocks < 4096);
		res->block[res->blocks++] = n;
		for (uint32_t i = 0; i < n; i += 2) {
			uint16_t w = inw(r, CMD);
			out[res->bytes + i] = (uint8_t)w;
			if (i + 1 < n)
				out[res->bytes + i + 1] = (uint8_t)(w >> 8);
		}
		res->bytes += n;
	}
	res->status = inb(r, CMD + 7);
	res->error = inb(r, CMD + 1);
	res->reason = inb(r, CMD + 2) & 3;
	assert_int_equal(res->reason, COD | IO); /* the status phase */
	assert_int_equal(res->status & (BSY | DRQ), 0);
}

static struct result res; /* large: static */

static struct result *packet_pio(struct rig *r, const uint8_t cdb[12], uint16_t limit, void *out,
				 uint32_t max)
{
	send_packet(r, cdb, limit, false);
	pio_data_in(r, out, max, &res);
	return &res;
}

/* The sense key in the error register; 0 for GOOD status. */
static uint8_t packet_sense_key(struct result *x)
{
	if (!(x->status & ERR))
		return 0;
	return x->error >> 4;
}

static void request_sense(struct rig *r, uint8_t *key, uint8_t *asc, uint8_t *ascq)
{
	uint8_t cdb[12] = { 0x03, 0, 0, 0, 18 }, s[18];
	struct result *x = packet_pio(r, cdb, 18, s, sizeof(s));
	assert_int_equal(x->status & ERR, 0);
	assert_int_equal(x->bytes, 18);
	assert_int_equal(s[0] & 0x7F, 0x70); /* current, fixed format */
	assert_int_equal(s[7], 10);
	*key = s[2] & 0x0F;
	*asc = s[12];
	*ascq = s[13];
}

/* Runs cdb without data and expects CHECK CONDITION with this sense (GOOD for key 0). */
static void expect_sense(struct rig *r, const uint8_t cdb[12], uint8_t key, uint8_t asc,
			 uint8_t ascq)
{
	static uint8_t sink[65536];
	struct result *x = packet_pio(r, cdb, 0xFFFE, sink, sizeof(sink));
	assert_int_equal(packet_sense_key(x), key);
	if (!key)
		return;
	assert_int_equal(x->bytes, 0);
	uint8_t k, a, q;
	request_sense(r, &k, &a, &q);
	assert_int_equal(k, key);
	assert_int_equal(a, asc);
	assert_int_equal(q, ascq);
}

static const uint8_t TUR[12] = { 0x00 };

/* The power-on UNIT ATTENTION, as every guest sees first. */
static void clear_power_on(struct rig *r)
{
	expect_sense(r, TUR, 6, 0x29, 0);
}

/* The host changes the medium for a new raw file of sectors (pattern seed, 0: sparse); the
 * guest takes note of the change. */
static void change_medium(struct rig *r, const char *name, uint64_t sectors, uint32_t seed)
{
	assert_int_equal(ide_cdrom_eject(r->ide, 1, 0, false), 0);
	struct vdisk *m = rig_open_raw(test_path(name), sectors * 2048, seed, true);
	assert_int_equal(ide_cdrom_insert(r->ide, 1, 0, m), 0);
	r->disk = m;
	expect_sense(r, TUR, 6, 0x28, 0);
}

static void read10_cdb(uint8_t cdb[12], uint32_t lba, uint16_t count)
{
	memset(cdb, 0, 12);
	cdb[0] = 0x28;
	store_be32(cdb + 2, lba);
	store_be16(cdb + 7, count);
}

static void expect_medium(const uint8_t *got, uint64_t lba, size_t len, uint32_t seed)
{
	test_expect_pattern(got, len, lba * 2048, seed, "medium data");
}

/* ---- bus master ---- */

static void bm_start(struct rig *r, uint32_t table)
{
	outl(r, BM + 4, table);
	outb(r, BM + 2, 0x06); /* clear error and interrupt */
	outb(r, BM, 0x09);     /* to memory, start */
}

/* libata's order: PACKET, the packet, then the bus master starts. */
static uint8_t packet_dma(struct rig *r, const uint8_t cdb[12], uint32_t table)
{
	send_packet(r, cdb, 0, true);
	bm_start(r, table);
	uint8_t st = wait_not_busy(r);
	assert_int_equal(inb(r, CMD + 2) & 3, COD | IO);
	outb(r, BM, 0);
	return st;
}

/* ---- tests: registers and ATA commands ---- */

static void test_signature_reset_and_diagnostics(void **state)
{
	struct rig *r = *state;
	expect_signature(r, CMD);
	assert_int_equal(inb(r, CMD + 7), 0); /* a packet device: DRDY clear after reset */
	srst(r);
	expect_signature(r, CMD);
	assert_int_equal(inb(r, CMD + 1), 0x01); /* diagnostics passed */
	assert_int_equal(inb(r, CMD + 7) & BSY, 0);

	outb(r, CTL, 0);
	outb(r, CMD + 4, 0x55); /* the registers are writable... */
	assert_int_equal(inb(r, CMD + 4), 0x55);
	outb(r, CMD + 7, 0x90); /* ...and EXECUTE DEVICE DIAGNOSTIC restores the signature */
	assert_true(r->irq[IRQ]);
	expect_signature(r, CMD);
	assert_int_equal(inb(r, CMD + 1), 0x01);

	outb(r, CMD + 4, 0);
	outb(r, CMD + 7, 0xEC); /* IDENTIFY DEVICE: aborted, signature */
	assert_int_equal(inb(r, CMD + 7) & (ERR | DRQ), ERR);
	assert_int_equal(inb(r, CMD + 1), 0x04);
	expect_signature(r, CMD);

	outb(r, CMD + 4, 0);
	unsigned raises = r->irq_raises[IRQ];
	outb(r, CMD + 7, 0x08); /* DEVICE RESET: no interrupt */
	assert_int_equal(r->irq_raises[IRQ], raises);
	expect_signature(r, CMD);
	assert_int_equal(inb(r, CMD + 7), 0);
	expect_sense(r, TUR, 6, 0x29, 0); /* the reset is reported once */
	expect_sense(r, TUR, 0, 0, 0);
}

/* A disk and a DVD drive on one channel: each shows its own signature after a reset. */
static void test_signatures_of_two_devices(void **state)
{
	struct rig *r = *state;
	const char *path = test_path("disk.raw");
	struct vdisk *disk = rig_open_raw(path, 1 << 20, 5, true);
	assert_int_equal(ide_attach_disk(r->ide, 0, 0, disk), 0);
	struct vdisk *empty = NULL;
	assert_int_equal(ide_attach_cdrom(r->ide, 0, 1, empty), 0);
	outb(r, 0x3F6, 0x04);
	outb(r, 0x3F6, 0x00);
	outb(r, 0x1F6, 0xA0);
	assert_int_equal(inb(r, 0x1F4), 0);
	assert_int_equal(inb(r, 0x1F5), 0);
	assert_int_equal(inb(r, 0x1F7) & DRDY, DRDY);
	outb(r, 0x1F6, 0xB0);
	expect_signature(r, 0x1F0);
	assert_int_equal(inb(r, 0x1F7), 0);
	outb(r, 0x1F6, 0xA0);
	assert_int_equal(inb(r, 0x1F4), 0);
	outb(r, 0x1F2, 0x55); /* a write reaches both devices: no signature any more */
	outb(r, 0x1F6, 0xB0);
	assert_int_equal(inb(r, 0x1F2), 0x55);
	/* the slave answers IDENTIFY PACKET DEVICE, the master aborts it */
	outb(r, 0x1F7, 0xA1);
	assert_int_equal(inb(r, 0x1F7) & (DRQ | ERR), DRQ);
	uint8_t id[512];
	for (int i = 0; i < 256; i++)
		store_le16(id + 2 * i, inw(r, 0x1F0));
	assert_int_equal(load_le16(id), 0x85C0);
	assert_int_equal(load_le16(id + 2 * 93) & 0x0100, 0x0100); /* device 1 */
	outb(r, 0x1F6, 0xA0);
	outb(r, 0x1F7, 0xA1);
	assert_int_equal(inb(r, 0x1F7) & (DRQ | ERR), ERR);
	struct ide_device_info info;
	assert_int_equal(ide_query_device(r->ide, 0, 0, &info), 0);
	assert_int_equal(info.kind, IDE_DEVICE_DISK);
	assert_ptr_equal(info.disk, disk);
	assert_int_equal(ide_query_device(r->ide, 0, 1, &info), 0);
	assert_int_equal(info.kind, IDE_DEVICE_CDROM);
	assert_false(info.inserted);
	assert_int_equal(ide_attach_disk(r->ide, 0, 1, disk), -EBUSY);
	assert_int_equal(ide_attach_cdrom(r->ide, 0, 0, NULL), -EBUSY);
	assert_int_equal(ide_cdrom_eject(r->ide, 0, 0, false), -ENODEV);
	assert_int_equal(ide_cdrom_insert(r->ide, 1, 1, r->disk), -ENODEV);
	assert_int_equal(ide_attach_cdrom(r->ide, 2, 0, NULL), -EINVAL);
}

static void read_identify(struct rig *r, uint16_t w[256])
{
	outb(r, CMD + 6, 0xA0);
	outb(r, CMD + 7, 0xA1);
	assert_true(r->irq[IRQ]);
	assert_int_equal(inb(r, CMD + 7) & (BSY | DRQ | ERR), DRQ);
	uint8_t id[512];
	for (int i = 0; i < 256; i++)
		store_le16(id + 2 * i, inw(r, CMD));
	assert_int_equal(inb(r, CMD + 7) & (BSY | DRQ), 0);
	uint8_t sum = 0;
	for (int i = 0; i < 512; i++)
		sum += id[i];
	assert_int_equal(sum, 0);
	assert_int_equal(id[510], 0xA5);
	for (int i = 0; i < 256; i++)
		w[i] = load_le16(id + 2 * i);
}

static void test_identify_packet_device(void **state)
{
	struct rig *r = *state;
	uint16_t w[256];
	read_identify(r, w);
	assert_int_equal(w[0], 0x85C0);
	assert_int_equal(w[0] >> 14, 2);	 /* ATAPI */
	assert_int_equal((w[0] >> 8) & 0x1F, 5); /* CD/DVD, as SeaBIOS tests */
	assert_true(w[0] & 0x80);		 /* removable */
	assert_int_equal(w[0] & 3, 0);		 /* 12-byte packets */
	char model[41];
	for (int i = 0; i < 20; i++) {
		model[2 * i] = (char)(w[27 + i] >> 8);
		model[2 * i + 1] = (char)w[27 + i];
	}
	model[40] = 0;
	assert_memory_equal(model, "hvstack Virtual DVD-ROM ", 24);
	assert_true(w[49] & (1 << 8)); /* DMA */
	assert_int_equal(w[53] & 6, 6);
	assert_int_equal(w[63] & 7, 7);
	assert_int_equal(w[88] & 0x3F, 0x3F);
	assert_true(w[82] & (1 << 4)); /* PACKET */
	assert_true(w[82] & (1 << 9)); /* DEVICE RESET */
	/* SeaBIOS's ATAPI version: the highest bit of word 80 */
	int version = 15;
	while (version > 0 && !(w[80] & (1 << version)))
		version--;
	assert_int_equal(version, 7);
	/* SeaBIOS skips the slave when the master's word 93 claims it answers for both */
	assert_int_not_equal(w[93] & 0xDF61, 0x4041);

	outb(r, CMD + 1, 0x03); /* SET FEATURES: UDMA mode 2 */
	outb(r, CMD + 2, 0x42);
	outb(r, CMD + 7, 0xEF);
	assert_int_equal(inb(r, CMD + 7) & ERR, 0);
	read_identify(r, w);
	assert_int_equal(w[88] >> 8, 1 << 2);
	outb(r, CMD + 7, 0xE5); /* CHECK POWER MODE: active */
	assert_int_equal(inb(r, CMD + 7) & ERR, 0);
	assert_int_equal(inb(r, CMD + 2), 0xFF);
	outb(r, CMD + 7, 0x24); /* READ SECTORS EXT: not for a packet device */
	assert_int_equal(inb(r, CMD + 7) & ERR, ERR);
	assert_int_equal(inb(r, CMD + 1), 0x04);
}

/* ---- the SeaBIOS boot sequence on an El Torito ISO made by xorriso ---- */

/* What SeaBIOS's ata_atapi_process_op does: PACKET with nIEN and the byte count = the
 * block size, the packet, then ata_pio_transfer: one DRQ block per 2048-byte sector with
 * DRQ (and nothing else) between blocks, none of BSY/DRQ/ERR at the end. */
static int seabios_read(struct rig *r, uint32_t lba, uint16_t count, uint8_t *out)
{
	uint8_t cdb[12];
	read10_cdb(cdb, lba, count);
	outb(r, CTL, 0x0A);
	send_packet(r, cdb, 2048, false);
	uint8_t st = wait_not_busy(r);
	if (st & ERR)
		return -1;
	for (unsigned s = 0; s < count; s++) {
		assert_int_equal(st & (BSY | DRQ | ERR), DRQ);
		assert_int_equal(inb(r, CMD + 4) | inb(r, CMD + 5) << 8, 2048);
		for (int i = 0; i < 1024; i++)
			store_le16(out + s * 2048 + 2 * i, inw(r, CMD));
		(void)inb(r, CTL);
		st = wait_not_busy(r);
	}
	assert_int_equal(st & (BSY | DRQ | ERR), 0);
	outb(r, CTL, 0x08);
	return 0;
}

static void test_seabios_el_torito_boot(void **state)
{
	struct rig *r = *state;
	if (!test_have("xorriso"))
		skip();
	/* a 3-sector boot image and a data file, both of known bytes */
	const char *dir = test_path("iso-root");
	char cmd_out[4096];
	assert_int_equal(test_run(cmd_out, sizeof(cmd_out), "mkdir -p %s", dir), 0);
	char boot[512], iso[512];
	snprintf(boot, sizeof(boot), "%s/boot.img", dir);
	snprintf(iso, sizeof(iso), "%s", test_path("boot.iso"));
	test_write_file(boot, 3 * 2048, 77);
	test_write_file(test_path("iso-root/data.bin"), 300 * 1024, 78);
	int rc = test_run(cmd_out, sizeof(cmd_out),
			  "xorriso -as mkisofs -quiet -o %s -b boot.img -no-emul-boot "
			  "-boot-load-size 12 %s",
			  iso, dir);
	if (rc != 0)
		fail_msg("xorriso failed:\n%s", cmd_out);

	/* the medium changes to the ISO */
	assert_int_equal(ide_cdrom_eject(r->ide, 1, 0, false), 0);
	struct vdisk_options o = { .read_only = true, .format = "raw" };
	assert_int_equal(vdisk_open(iso, &o, &r->disk, NULL, 0), 0);
	assert_int_equal(test_track_disk(r->disk), 0);
	assert_int_equal(ide_cdrom_insert(r->ide, 1, 0, r->disk), 0);

	/* detection: reset, IDENTIFY PACKET DEVICE first */
	srst(r);
	assert_int_equal(wait_not_busy(r) & BSY, 0);
	outb(r, CMD + 6, 0xA0);
	outb(r, CMD + 7, 0xA1);
	assert_int_equal(wait_not_busy(r) & (DRQ | ERR), DRQ);
	for (int i = 0; i < 256; i++)
		(void)inw(r, CMD);

	/* scsi_is_ready: TEST UNIT READY, REQUEST SENSE after each failure */
	int tries = 0;
	for (;;) {
		assert_true(++tries < 5);
		static uint8_t sink[16];
		struct result *x = packet_pio(r, TUR, 0, sink, sizeof(sink));
		if (!(x->status & ERR))
			break;
		uint8_t key, asc, ascq;
		request_sense(r, &key, &asc, &ascq);
		assert_int_equal(key, 6); /* the reset and the media change */
		assert_int_not_equal(asc, 0x3A);
	}

	/* cdrom_boot: the boot record volume descriptor, the catalog, the image */
	uint8_t brvd[2048], catalog[2048], image[3 * 2048], want[3 * 2048];
	assert_int_equal(seabios_read(r, 0x11, 1, brvd), 0);
	assert_int_equal(brvd[0], 0);
	assert_memory_equal(brvd + 1, "CD001\001EL TORITO SPECIFICATION", 30);
	uint32_t catalog_lba = load_le32(brvd + 0x47);
	assert_int_equal(seabios_read(r, catalog_lba, 1, catalog), 0);
	assert_int_equal(catalog[0x00], 0x01);
	assert_int_equal(catalog[0x01], 0x00);
	assert_int_equal(catalog[0x1E], 0x55);
	assert_int_equal(catalog[0x1F], 0xAA);
	assert_int_equal(catalog[0x20], 0x88);
	assert_int_equal(catalog[0x21], 0); /* no emulation */
	uint16_t count512 = load_le16(catalog + 0x26);
	assert_int_equal(count512, 12);
	uint32_t image_lba = load_le32(catalog + 0x28);
	assert_int_equal(seabios_read(r, image_lba, (count512 + 3) / 4, image), 0);
	test_file_read(boot, want, sizeof(want), 0);
	assert_memory_equal(image, want, sizeof(want));
	/* and the same sectors straight from the ISO file */
	test_file_read(iso, want, 2048, 0x11 * 2048);
	assert_memory_equal(brvd, want, 2048);
}

/* ---- PIO byte count limits ---- */

static void check_limit(struct rig *r, uint16_t limit, uint32_t expect_block)
{
	uint8_t cdb[12], buf[3 * 2048];
	read10_cdb(cdb, 5, 3);
	struct result *x = packet_pio(r, cdb, limit, buf, sizeof(buf));
	assert_int_equal(x->status & ERR, 0);
	assert_int_equal(x->bytes, sizeof(buf));
	expect_medium(buf, 5, sizeof(buf), SEED);
	for (uint32_t i = 0; i + 1 < x->blocks; i++) {
		assert_int_equal(x->block[i] % 2, 0);
		assert_true(x->block[i] <= expect_block);
	}
	assert_int_equal(x->block[0], expect_block < sizeof(buf) ? expect_block : sizeof(buf));
}

static void test_pio_byte_count_limits(void **state)
{
	struct rig *r = *state;
	clear_power_on(r);
	check_limit(r, 2048, 2048);
	assert_int_equal(res.blocks, 3);
	check_limit(r, 512, 512); /* four blocks per sector */
	assert_int_equal(res.blocks, 12);
	check_limit(r, 0x3FF, 0x3FE); /* odd: rounded down to even */
	assert_int_equal(res.blocks, 7);
	assert_int_equal(res.block[6], 3 * 2048 - 6 * 0x3FE);
	check_limit(r, 0xFFFF, 3 * 2048);
	check_limit(r, 0, 3 * 2048); /* a zero limit: the largest blocks */
	check_limit(r, 1, 3 * 2048);
	/* an odd limit and an odd reply: the last block is the odd one */
	uint8_t cdb[12] = { 0x12, 0, 0, 0, 35 }, inq[64];
	struct result *x = packet_pio(r, cdb, 7, inq, sizeof(inq));
	assert_int_equal(x->bytes, 35);
	assert_int_equal(x->blocks, 6);
	for (int i = 0; i < 5; i++)
		assert_int_equal(x->block[i], 6);
	assert_int_equal(x->block[5], 5);
	assert_memory_equal(inq + 8, "hvstack Virtual DVD-ROM", 23);
	/* a read larger than the buffer crosses several refills */
	static uint8_t big[40 * 2048];
	read10_cdb(cdb, 100, 40);
	x = packet_pio(r, cdb, 0xF000, big, sizeof(big));
	assert_int_equal(x->bytes, sizeof(big));
	expect_medium(big, 100, sizeof(big), SEED);
	assert_int_equal(x->blocks, 10); /* the buffer's 4 sectors at a time */
}

/* ---- DMA ---- */

static void test_dma_reads(void **state)
{
	struct rig *r = *state;
	clear_power_on(r);
	uint8_t cdb[12];
	/* READ(10) of 5 sectors into two regions */
	put_prd(PRD_TABLE, 0, 0x20000, 4096, false);
	put_prd(PRD_TABLE, 1, HIGH_GPA, 3 * 2048, true);
	read10_cdb(cdb, 17, 5);
	uint8_t st = packet_dma(r, cdb, PRD_TABLE);
	assert_int_equal(st & ERR, 0);
	assert_true(r->irq[IRQ]);
	assert_int_equal(inb(r, BM + 2) & 7, 4); /* interrupt, not active, no error */
	expect_medium(ram_low + 0x20000, 17, 4096, SEED);
	expect_medium(ram_high, 19, 3 * 2048, SEED);
	/* READ(12) of the last 64 sectors, one PRD entry of 128 KiB split in two */
	memset(cdb, 0, sizeof(cdb));
	cdb[0] = 0xA8;
	store_be32(cdb + 2, CD_SECTORS - 64);
	store_be32(cdb + 6, 64);
	put_prd(PRD_TABLE, 0, 0x100000, 0, false);
	put_prd(PRD_TABLE, 1, 0x110000, 0, true);
	st = packet_dma(r, cdb, PRD_TABLE);
	assert_int_equal(st & ERR, 0);
	expect_medium(ram_low + 0x100000, CD_SECTORS - 64, 64 * 2048, SEED);
	/* a reply by DMA: INQUIRY, into a longer PRD table */
	uint8_t inq[12] = { 0x12, 0, 0, 0, 36 };
	put_prd(PRD_TABLE, 0, 0x30000, 512, true);
	st = packet_dma(r, inq, PRD_TABLE);
	assert_int_equal(st & ERR, 0);
	assert_int_equal(ram_low[0x30000], 0x05);
	assert_memory_equal(ram_low + 0x30000 + 8, "hvstack ", 8);
	assert_int_equal(ram_low[0x30000 + 36], 0); /* nothing past the reply */
	struct ide_stats s;
	ide_get_stats(r->ide, &s);
	assert_true(s.dma_sectors >= (5 + 64) * 4);
}

/* A PRD table of more entries than one block layer request takes, and the drive's
 * counters for query-block: one request per 1024 iovecs. */
static void test_dma_many_prd_entries(void **state)
{
	struct rig *r = *state;
	clear_power_on(r);
	struct ide_device_info before, after;
	assert_int_equal(ide_query_device(r->ide, 1, 0, &before), 0);
	const unsigned entries = 1200, each = 512; /* 300 sectors, in 512-byte pieces */
	for (unsigned i = 0; i < entries; i++)
		put_prd(PRD_TABLE, i, 0x100000 + 1024 * i, each, i + 1 == entries);
	uint8_t cdb[12] = { 0xA8 };
	store_be32(cdb + 2, 7);
	store_be32(cdb + 6, entries * each / 2048);
	uint8_t st = packet_dma(r, cdb, PRD_TABLE);
	assert_int_equal(st & ERR, 0);
	for (unsigned i = 0; i < entries; i++) {
		test_expect_pattern(ram_low + 0x100000 + 1024 * i, each, 7 * 2048 + i * each, SEED,
				    "PRD entry");
		assert_int_equal(ram_low[0x100000 + 1024 * i + each], 0); /* the gaps stay */
	}
	assert_int_equal(ide_query_device(r->ide, 1, 0, &after), 0);
	assert_int_equal(after.stats.reads - before.stats.reads, 2);
	assert_int_equal(after.stats.read_bytes - before.stats.read_bytes, entries * each);
	assert_int_equal(after.stats.writes, 0);
}

/* ---- packet command replies ---- */

static void test_capacity_toc_disc_track(void **state)
{
	struct rig *r = *state;
	clear_power_on(r);
	uint8_t cdb[12] = { 0x25 }, b[256];
	struct result *x = packet_pio(r, cdb, 8, b, sizeof(b));
	assert_int_equal(x->bytes, 8);
	assert_int_equal(load_be32(b), CD_SECTORS - 1);
	assert_int_equal(load_be32(b + 4), 2048);

	/* READ TOC format 0, LBA: track 1 at 0, the lead-out at the capacity */
	memset(cdb, 0, 12);
	cdb[0] = 0x43;
	store_be16(cdb + 7, 100);
	x = packet_pio(r, cdb, 100, b, sizeof(b));
	assert_int_equal(x->bytes, 20);
	assert_int_equal(load_be16(b), 18);
	assert_int_equal(b[2], 1);
	assert_int_equal(b[3], 1);
	assert_int_equal(b[5], 0x14); /* ADR 1, data track */
	assert_int_equal(b[6], 1);
	assert_int_equal(load_be32(b + 8), 0);
	assert_int_equal(b[14], 0xAA);
	assert_int_equal(load_be32(b + 16), CD_SECTORS);
	/* MSF: 00:02:00, and the lead-out at capacity + 150 frames */
	cdb[1] = 2;
	x = packet_pio(r, cdb, 100, b, sizeof(b));
	assert_memory_equal(b + 8, "\0\0\2\0", 4);
	uint32_t f = CD_SECTORS + 150;
	uint8_t msf[4] = { 0, (uint8_t)(f / 4500), (uint8_t)(f / 75 % 60), (uint8_t)(f % 75) };
	assert_memory_equal(b + 16, msf, 4);
	/* from the lead-out only; a track that does not exist */
	cdb[1] = 0;
	cdb[6] = 0xAA;
	x = packet_pio(r, cdb, 100, b, sizeof(b));
	assert_int_equal(x->bytes, 12);
	assert_int_equal(b[6], 0xAA);
	cdb[6] = 2;
	expect_sense(r, cdb, 5, 0x24, 0);
	/* format 1, in byte 2 and the old way in byte 9 */
	cdb[6] = 0;
	cdb[2] = 1;
	x = packet_pio(r, cdb, 100, b, sizeof(b));
	assert_int_equal(x->bytes, 12);
	assert_int_equal(load_be16(b), 10);
	assert_int_equal(b[6], 1);
	cdb[2] = 0;
	cdb[9] = 0x40;
	x = packet_pio(r, cdb, 100, b, sizeof(b));
	assert_int_equal(x->bytes, 12);
	cdb[9] = 0;
	cdb[2] = 5;
	expect_sense(r, cdb, 5, 0x24, 0);
	/* allocation length honoured */
	cdb[2] = 0;
	store_be16(cdb + 7, 6);
	x = packet_pio(r, cdb, 100, b, sizeof(b));
	assert_int_equal(x->bytes, 6);

	/* READ DISC INFORMATION: one complete session of one track */
	memset(cdb, 0, 12);
	cdb[0] = 0x51;
	store_be16(cdb + 7, 34);
	x = packet_pio(r, cdb, 0xFFFE, b, sizeof(b));
	assert_int_equal(x->bytes, 34);
	assert_int_equal(load_be16(b), 32);
	assert_int_equal(b[2] & 3, 2);	      /* disc status: complete */
	assert_int_equal((b[2] >> 2) & 3, 3); /* last session: complete */
	assert_int_equal(b[3], 1);
	assert_int_equal(b[4], 1);
	/* READ TRACK INFORMATION of track 1 */
	memset(cdb, 0, 12);
	cdb[0] = 0x52;
	cdb[1] = 1;
	store_be32(cdb + 2, 1);
	store_be16(cdb + 7, 36);
	x = packet_pio(r, cdb, 0xFFFE, b, sizeof(b));
	assert_int_equal(x->bytes, 36);
	assert_int_equal(b[2], 1);
	assert_int_equal(load_be32(b + 8), 0);
	assert_int_equal(load_be32(b + 24), CD_SECTORS);
	store_be32(cdb + 2, 2);
	expect_sense(r, cdb, 5, 0x24, 0);
}

/* Feature descriptors of a GET CONFIGURATION reply: codes and current bits. */
static unsigned config_features(const uint8_t *b, uint32_t len, uint16_t *codes, bool *current)
{
	unsigned n = 0;
	assert_int_equal(load_be32(b), len - 4);
	for (uint32_t off = 8; off < len; off += 4u + b[off + 3]) {
		codes[n] = load_be16(b + off);
		current[n] = b[off + 2] & 1;
		n++;
	}
	return n;
}

static void get_configuration(struct rig *r, uint8_t rt, uint16_t start, uint8_t *b,
			      struct result **x)
{
	uint8_t cdb[12] = { 0x46, rt };
	store_be16(cdb + 2, start);
	store_be16(cdb + 7, 512);
	*x = packet_pio(r, cdb, 0xFFFE, b, 512);
	assert_int_equal((*x)->status & ERR, 0);
}

static void test_get_configuration(void **state)
{
	struct rig *r = *state;
	uint8_t b[512];
	uint16_t codes[32];
	bool cur[32];
	struct result *x;
	/* before the power-on attention is cleared: GET CONFIGURATION still answers */
	get_configuration(r, 0, 0, b, &x);
	assert_int_equal(load_be16(b + 6), 0x0008); /* a 1 MiB medium is a CD */
	unsigned n = config_features(b, x->bytes, codes, cur);
	const uint16_t all[] = { 0x0000, 0x0001, 0x0002, 0x0003, 0x0010, 0x001E, 0x001F };
	assert_int_equal(n, 7);
	for (unsigned i = 0; i < n; i++)
		assert_int_equal(codes[i], all[i]);
	assert_false(cur[6]); /* DVD read: not with a CD */
	/* the profile list: DVD-ROM, then CD-ROM current */
	assert_int_equal(b[11], 8);
	assert_int_equal(load_be16(b + 12), 0x0010);
	assert_int_equal(b[14] & 1, 0);
	assert_int_equal(load_be16(b + 16), 0x0008);
	assert_int_equal(b[18] & 1, 1);
	/* the core feature: ATAPI */
	assert_int_equal(load_be32(b + 20 + 4), 2);
	/* RT 1: current ones from 0x0003 */
	get_configuration(r, 1, 3, b, &x);
	n = config_features(b, x->bytes, codes, cur);
	assert_int_equal(n, 3);
	assert_int_equal(codes[0], 0x0003);
	assert_int_equal(codes[1], 0x0010);
	assert_int_equal(codes[2], 0x001E);
	/* RT 2: that one only, current or not */
	get_configuration(r, 2, 0x1F, b, &x);
	n = config_features(b, x->bytes, codes, cur);
	assert_int_equal(n, 1);
	assert_int_equal(codes[0], 0x001F);
	assert_false(cur[0]);
	get_configuration(r, 2, 0x0107, b, &x);
	assert_int_equal(x->bytes, 8); /* not supported: the header */
	uint8_t cdb[12] = { 0x46, 3 };
	store_be16(cdb + 7, 8);
	clear_power_on(r);
	expect_sense(r, cdb, 5, 0x24, 0);
	/* allocation length: the header says how much there would be */
	cdb[1] = 0;
	x = packet_pio(r, cdb, 0xFFFE, b, sizeof(b));
	assert_int_equal(x->bytes, 8);
	assert_true(load_be32(b) > 4);

	/* a medium larger than a CD is a DVD */
	change_medium(r, "dvd.raw", 360000 + 1, 0);
	get_configuration(r, 1, 0, b, &x);
	assert_int_equal(load_be16(b + 6), 0x0010);
	n = config_features(b, x->bytes, codes, cur);
	assert_int_equal(codes[n - 1], 0x001F);
	assert_int_equal(b[14] & 1, 1); /* DVD-ROM current */
}

static void test_mode_sense(void **state)
{
	struct rig *r = *state;
	clear_power_on(r);
	uint8_t cdb[12] = { 0x5A, 0, 0x2A }, b[256];
	store_be16(cdb + 7, 128);
	struct result *x = packet_pio(r, cdb, 128, b, sizeof(b));
	assert_int_equal(x->bytes, 8 + 20);
	assert_int_equal(load_be16(b), 8 + 20 - 2);
	assert_int_equal(load_be16(b + 6), 0); /* no block descriptors */
	const uint8_t *p = b + 8;
	assert_int_equal(p[0] & 0x3F, 0x2A);
	assert_int_equal(p[1], 0x12);
	assert_true(p[2] & 0x08);		 /* reads DVD-ROM: sr_mod keeps CDC_DVD */
	assert_int_equal(p[3], 0);		 /* writes nothing */
	assert_true(p[6] & 0x08);		 /* eject */
	assert_true(p[6] & 0x01);		 /* lock */
	assert_int_equal(p[6] & 0x02, 0);	 /* not locked */
	assert_int_equal(p[6] >> 5, 1);		 /* tray */
	assert_true(load_be16(p + 8) / 176 > 0); /* sr_mod's speed */
	/* the error recovery page, then all pages */
	cdb[2] = 0x01;
	x = packet_pio(r, cdb, 128, b, sizeof(b));
	assert_int_equal(x->bytes, 8 + 12);
	assert_int_equal(b[8], 0x01);
	assert_int_equal(b[9], 0x0A);
	cdb[2] = 0x3F;
	x = packet_pio(r, cdb, 128, b, sizeof(b));
	assert_int_equal(x->bytes, 8 + 12 + 20);
	assert_int_equal(b[8], 0x01);
	assert_int_equal(b[20], 0x2A);
	/* changeable values: none */
	cdb[2] = 0x40 | 0x2A;
	x = packet_pio(r, cdb, 128, b, sizeof(b));
	assert_int_equal(b[10], 0);
	assert_int_equal(b[14], 0);
	/* saved values and pages it does not have */
	cdb[2] = 0xC0 | 0x2A;
	expect_sense(r, cdb, 5, 0x39, 0);
	cdb[2] = 0x05;
	expect_sense(r, cdb, 5, 0x24, 0);
	/* MODE SENSE(6), allocation length in byte 4 */
	uint8_t six[12] = { 0x1A, 0, 0x2A, 0, 255 };
	x = packet_pio(r, six, 255, b, sizeof(b));
	assert_int_equal(x->bytes, 4 + 20);
	assert_int_equal(b[0], 4 + 20 - 1);
	assert_int_equal(b[3], 0);
	assert_int_equal(b[4], 0x2A);
	six[4] = 2;
	x = packet_pio(r, six, 255, b, sizeof(b));
	assert_int_equal(x->bytes, 2);
}

static void test_inquiry_and_sense(void **state)
{
	struct rig *r = *state;
	uint8_t cdb[12] = { 0x12, 0, 0, 0, 96 }, b[256];
	/* INQUIRY answers despite the pending power-on attention */
	struct result *x = packet_pio(r, cdb, 96, b, sizeof(b));
	assert_int_equal(x->bytes, 36);
	assert_int_equal(b[0], 0x05); /* MMC */
	assert_int_equal(b[1], 0x80); /* removable */
	assert_int_equal(b[4], 31);
	assert_memory_equal(b + 8, "hvstack Virtual DVD-ROM 1.0 ", 28);
	cdb[4] = 5;
	x = packet_pio(r, cdb, 96, b, sizeof(b));
	assert_int_equal(x->bytes, 5);
	/* VPD: the supported pages, the serial number; a page it lacks */
	cdb[1] = 1;
	cdb[4] = 96;
	x = packet_pio(r, cdb, 96, b, sizeof(b));
	assert_int_equal(x->bytes, 6);
	assert_int_equal(b[5], 0x80);
	cdb[2] = 0x80;
	x = packet_pio(r, cdb, 96, b, sizeof(b));
	assert_int_equal(b[3], 20);
	assert_memory_equal(b + 4, "HV10DVD", 7);
	cdb[2] = 0x83;
	clear_power_on(r);
	expect_sense(r, cdb, 5, 0x24, 0);
	cdb[1] = 0; /* a page without EVPD */
	expect_sense(r, cdb, 5, 0x24, 0);
	/* an unknown opcode; the sense belongs to one command only */
	uint8_t unknown[12] = { 0xFF };
	expect_sense(r, unknown, 5, 0x20, 0);
	uint8_t key, asc, ascq;
	request_sense(r, &key, &asc, &ascq);
	assert_int_equal(key, 0);
	assert_int_equal(asc, 0);
	/* REQUEST SENSE: descriptor format is refused; the allocation length is honoured */
	uint8_t rs[12] = { 0x03, 1, 0, 0, 18 };
	expect_sense(r, rs, 5, 0x24, 0);
	rs[1] = 0;
	rs[4] = 8;
	x = packet_pio(r, rs, 18, b, sizeof(b));
	assert_int_equal(x->bytes, 8);
	/* MECHANISM STATUS, SET CD SPEED */
	uint8_t mech[12] = { 0xBD };
	store_be16(mech + 8, 8);
	x = packet_pio(r, mech, 8, b, sizeof(b));
	assert_int_equal(x->bytes, 8);
	assert_int_equal(b[1] & 0x10, 0); /* tray closed */
	uint8_t speed[12] = { 0xBB, 0, 0xFF, 0xFF };
	expect_sense(r, speed, 0, 0, 0);
	/* READ SUBCHANNEL: the current position */
	uint8_t sub[12] = { 0x42, 0, 0x40, 1 };
	store_be16(sub + 7, 16);
	x = packet_pio(r, sub, 16, b, sizeof(b));
	assert_int_equal(x->bytes, 16);
	assert_int_equal(b[4], 1);
	assert_int_equal(b[6], 1);
}

/* ---- media change, tray, lock ---- */

static void get_event(struct rig *r, uint8_t *code, uint8_t *media_status)
{
	uint8_t cdb[12] = { 0x4A, 1, 0, 0, 1 << 4 }, b[8];
	store_be16(cdb + 7, 8);
	struct result *x = packet_pio(r, cdb, 8, b, sizeof(b));
	assert_int_equal(x->status & ERR, 0);
	assert_int_equal(x->bytes, 8);
	assert_int_equal(load_be16(b), 6);
	assert_int_equal(b[2], 4); /* media class, an event available */
	assert_true(b[3] & (1 << 4));
	*code = b[4] & 0x0F;
	*media_status = b[5];
}

static void test_media_change(void **state)
{
	struct rig *r = *state;
	clear_power_on(r);
	uint8_t code, ms;
	get_event(r, &code, &ms);
	assert_int_equal(code, 0);
	assert_int_equal(ms, 2); /* present, tray closed */

	assert_int_equal(ide_cdrom_eject(r->ide, 1, 0, false), 0);
	struct ide_device_info info;
	assert_int_equal(ide_query_device(r->ide, 1, 0, &info), 0);
	assert_int_equal(info.kind, IDE_DEVICE_CDROM);
	assert_false(info.inserted);
	assert_true(info.tray_open);
	assert_null(info.disk);
	expect_sense(r, TUR, 6, 0x28, 0);
	get_event(r, &code, &ms);
	assert_int_equal(code, 3); /* media removal */
	assert_int_equal(ms, 1);   /* no medium, tray open */
	expect_sense(r, TUR, 2, 0x3A, 2);

	/* another medium with other bytes */
	struct vdisk *m2 = rig_open_raw(test_path("medium2.raw"), 64 * 2048, SEED2, true);
	assert_int_equal(ide_cdrom_insert(r->ide, 1, 0, m2), 0);
	assert_int_equal(ide_cdrom_insert(r->ide, 1, 0, m2), -EBUSY);
	r->disk = m2;
	expect_sense(r, TUR, 6, 0x28, 0);
	get_event(r, &code, &ms);
	assert_int_equal(code, 2); /* new media */
	assert_int_equal(ms, 2);
	get_event(r, &code, &ms);
	assert_int_equal(code, 0); /* reported once */
	expect_sense(r, TUR, 0, 0, 0);
	uint8_t cdb[12], buf[2048];
	read10_cdb(cdb, 63, 1);
	struct result *x = packet_pio(r, cdb, 2048, buf, sizeof(buf));
	assert_int_equal(x->bytes, 2048);
	expect_medium(buf, 63, 2048, SEED2);
	uint8_t cap[12] = { 0x25 }, b[8];
	packet_pio(r, cap, 8, b, sizeof(b));
	assert_int_equal(load_be32(b), 63);
	/* the event class not asked for: "no event available" */
	uint8_t ge[12] = { 0x4A, 1, 0, 0, 1 << 2 };
	store_be16(ge + 7, 8);
	x = packet_pio(r, ge, 8, b, sizeof(b));
	assert_int_equal(x->bytes, 4);
	assert_int_equal(b[2] & 0x80, 0x80);
	ge[1] = 0; /* asynchronous: refused */
	expect_sense(r, ge, 5, 0x24, 0);
}

static void test_locked_tray(void **state)
{
	struct rig *r = *state;
	clear_power_on(r);
	uint8_t prevent[12] = { 0x1E, 0, 0, 0, 1 }, eject[12] = { 0x1B, 0, 0, 0, 0x02 };
	uint8_t load[12] = { 0x1B, 0, 0, 0, 0x03 };
	expect_sense(r, prevent, 0, 0, 0);
	assert_int_equal(ide_cdrom_eject(r->ide, 1, 0, false), -EBUSY);
	expect_sense(r, eject, 5, 0x53, 2); /* the guest's own eject too */
	struct ide_device_info info;
	ide_query_device(r->ide, 1, 0, &info);
	assert_true(info.locked);
	assert_true(info.inserted);
	uint8_t ms[12] = { 0x5A, 0, 0x2A }, b[64];
	store_be16(ms + 7, 64);
	packet_pio(r, ms, 64, b, sizeof(b));
	assert_int_equal(b[8 + 6] & 0x02, 0x02); /* lock state */

	prevent[4] = 0; /* allow: the guest ejects, then loads again */
	expect_sense(r, prevent, 0, 0, 0);
	expect_sense(r, eject, 0, 0, 0);
	ide_query_device(r->ide, 1, 0, &info);
	assert_true(info.tray_open);
	assert_true(info.inserted); /* the medium is in the open tray */
	expect_sense(r, TUR, 2, 0x3A, 2);
	uint8_t mech[12] = { 0xBD };
	store_be16(mech + 8, 8);
	packet_pio(r, mech, 8, b, sizeof(b));
	assert_int_equal(b[1] & 0x10, 0x10);
	expect_sense(r, load, 0, 0, 0);
	expect_sense(r, TUR, 0, 0, 0);

	/* a forced host eject overrides the lock */
	prevent[4] = 1;
	expect_sense(r, prevent, 0, 0, 0);
	assert_int_equal(ide_cdrom_eject(r->ide, 1, 0, true), 0);
	ide_query_device(r->ide, 1, 0, &info);
	assert_false(info.inserted);
	expect_sense(r, TUR, 6, 0x28, 0);
	expect_sense(r, TUR, 2, 0x3A, 2);
}

static void test_empty_tray(void **state)
{
	struct rig *r = *state;
	clear_power_on(r);
	expect_sense(r, TUR, 2, 0x3A, 1); /* tray closed, no medium */
	uint8_t cap[12] = { 0x25 }, toc[12] = { 0x43, 0, 0, 0, 0, 0, 0, 0, 12 };
	expect_sense(r, cap, 2, 0x3A, 1);
	expect_sense(r, toc, 2, 0x3A, 1);
	uint8_t cdb[12];
	read10_cdb(cdb, 0, 1);
	expect_sense(r, cdb, 2, 0x3A, 1);
	uint8_t inq[12] = { 0x12, 0, 0, 0, 36 }, b[64];
	struct result *x = packet_pio(r, inq, 36, b, sizeof(b));
	assert_int_equal(x->bytes, 36);
	uint8_t code, ms;
	get_event(r, &code, &ms);
	assert_int_equal(ms, 0);
	uint8_t gc[12] = { 0x46, 0 };
	store_be16(gc + 7, 64);
	packet_pio(r, gc, 64, b, sizeof(b));
	assert_int_equal(load_be16(b + 6), 0);			   /* no current profile */
	assert_int_equal(ide_cdrom_eject(r->ide, 1, 0, false), 0); /* just opens the tray */
	expect_sense(r, TUR, 2, 0x3A, 2);
	assert_int_equal(ide_cdrom_insert(r->ide, 1, 0, NULL), -EINVAL);
}

static void test_out_of_range(void **state)
{
	struct rig *r = *state;
	clear_power_on(r);
	uint8_t cdb[12];
	read10_cdb(cdb, CD_SECTORS, 1);
	expect_sense(r, cdb, 5, 0x21, 0);
	read10_cdb(cdb, CD_SECTORS - 1, 2);
	expect_sense(r, cdb, 5, 0x21, 0);
	read10_cdb(cdb, 0, 65535);
	expect_sense(r, cdb, 5, 0x21, 0);
	memset(cdb, 0, 12);
	cdb[0] = 0xA8;
	store_be32(cdb + 2, UINT32_MAX);
	store_be32(cdb + 6, UINT32_MAX);
	expect_sense(r, cdb, 5, 0x21, 0);
	read10_cdb(cdb, CD_SECTORS - 1, 0); /* no sectors: good, no data */
	expect_sense(r, cdb, 0, 0, 0);
	assert_int_equal(res.bytes, 0);
}

/* ---- hostile input ---- */

static void test_hostile_dma(void **state)
{
	struct rig *r = *state;
	clear_power_on(r);
	uint8_t cdb[12], key, asc, ascq;
	/* a buffer past the end of guest RAM */
	put_prd(PRD_TABLE, 0, RAM_LOW - 2048, 4096, true);
	read10_cdb(cdb, 0, 2);
	uint8_t st = packet_dma(r, cdb, PRD_TABLE);
	assert_int_equal(st & ERR, ERR);
	assert_int_equal(inb(r, CMD + 1) >> 4, 0x0B); /* ABORTED COMMAND */
	assert_int_equal(inb(r, BM + 2) & 3, 2);      /* bus master error */
	request_sense(r, &key, &asc, &ascq);
	assert_int_equal(key, 0x0B);
	/* the table itself outside guest RAM */
	send_packet(r, cdb, 0, true);
	bm_start(r, 0x0FFFFFF0);
	assert_int_equal(wait_not_busy(r) & ERR, ERR);
	outb(r, BM, 0);
	/* a table shorter than the transfer: 65535 sectors of a large sparse medium */
	change_medium(r, "big.raw", 70000, 0);
	put_prd(PRD_TABLE, 0, 0x20000, 0, true);
	read10_cdb(cdb, 0, 65535);
	st = packet_dma(r, cdb, PRD_TABLE);
	assert_int_equal(st & ERR, ERR);
	/* a reply into a table out of RAM */
	uint8_t inq[12] = { 0x12, 0, 0, 0, 36 };
	put_prd(PRD_TABLE, 0, HIGH_GPA + RAM_HIGH - 16, 36, true);
	st = packet_dma(r, inq, PRD_TABLE);
	assert_int_equal(st & ERR, ERR);
	/* and the drive still works */
	put_prd(PRD_TABLE, 0, 0x20000, 2048, true);
	read10_cdb(cdb, 3, 1);
	st = packet_dma(r, cdb, PRD_TABLE);
	assert_int_equal(st & ERR, 0);
	test_expect_equal(ram_low + 0x20000, (uint8_t[2048]){ 0 }, 2048, "sparse medium", 0);
}

static void test_reset_mid_transfer(void **state)
{
	struct rig *r = *state;
	clear_power_on(r);
	uint8_t cdb[12], buf[2048];
	/* SRST while a DMA read is posted: busy until it is gone, then the signature */
	memset(ram_low + 0x20000, 0xEE, 8192);
	put_prd(PRD_TABLE, 0, 0x20000, 8192, true);
	read10_cdb(cdb, 0, 4);
	send_packet(r, cdb, 0, true);
	bm_start(r, PRD_TABLE);
	assert_int_equal(ide_cdrom_eject(r->ide, 1, 0, true), -EAGAIN); /* in flight */
	outb(r, CTL, 0x04);
	outb(r, CTL, 0x00);
	assert_int_equal(inb(r, CTL) & BSY, BSY);
	assert_int_equal(wait_not_busy(r) & (BSY | DRQ | ERR), 0);
	expect_signature(r, CMD);
	assert_int_equal(ram_low[0x20000], 0xEE); /* the cancelled read never ran */
	outb(r, BM, 0);
	expect_sense(r, TUR, 6, 0x29, 0);
	expect_sense(r, TUR, 0, 0, 0);

	/* a PIO read of 65535 sectors on a large medium, abandoned after two blocks by SRST */
	change_medium(r, "big.raw", 70000, 0);
	read10_cdb(cdb, 0, 65535);
	send_packet(r, cdb, 2048, false);
	for (int b = 0; b < 2; b++) {
		assert_int_equal(wait_not_busy(r) & DRQ, DRQ);
		for (int i = 0; i < 1024; i++)
			(void)inw(r, CMD);
	}
	srst(r);
	assert_int_equal(wait_not_busy(r) & (DRQ | ERR), 0);
	expect_signature(r, CMD);
	assert_int_equal(inw(r, CMD), 0xFFFF); /* no data left to read */
	expect_sense(r, TUR, 6, 0x29, 0);

	/* a new command in the middle of a PIO transfer replaces it */
	read10_cdb(cdb, 0, 65535);
	send_packet(r, cdb, 2048, false);
	assert_int_equal(wait_not_busy(r) & DRQ, DRQ);
	(void)inw(r, CMD);
	uint8_t inq[12] = { 0x12, 0, 0, 0, 36 };
	struct result *x = packet_pio(r, inq, 36, buf, sizeof(buf));
	assert_int_equal(x->bytes, 36);
	assert_int_equal(buf[0], 0x05);

	/* DEVICE RESET while the drive waits for the bus master */
	read10_cdb(cdb, 0, 1);
	send_packet(r, cdb, 0, true);
	assert_int_equal(inb(r, CTL) & BSY, BSY);
	outb(r, CMD + 7, 0x08);
	assert_int_equal(wait_not_busy(r), 0);
	expect_signature(r, CMD);
	expect_sense(r, TUR, 6, 0x29, 0);

	/* the packet phase: extra data port writes and reads are ignored */
	send_packet(r, TUR, 0, false);
	outw(r, CMD, 0x1234);
	assert_int_equal(inw(r, CMD), 0xFFFF);
	assert_int_equal(wait_not_busy(r) & (DRQ | ERR), 0);
	/* a PACKET whose packet never comes, then SRST */
	outb(r, CMD + 7, 0xA0);
	outw(r, CMD, 0x0028);
	srst(r);
	expect_signature(r, CMD);
}

/* The host takes the medium out between the packet and the bus master's start. */
static void test_eject_before_dma_start(void **state)
{
	struct rig *r = *state;
	clear_power_on(r);
	uint8_t cdb[12];
	read10_cdb(cdb, 0, 1);
	put_prd(PRD_TABLE, 0, 0x20000, 2048, true);
	send_packet(r, cdb, 0, true);
	assert_int_equal(ide_cdrom_eject(r->ide, 1, 0, false), 0);
	bm_start(r, PRD_TABLE);
	uint8_t st = inb(r, CTL);
	assert_int_equal(st & (BSY | ERR), ERR);
	assert_int_equal(inb(r, CMD + 1) >> 4, 2); /* NOT READY */
	outb(r, BM, 0);
	/* a PIO read whose medium goes away between two buffer refills */
	expect_sense(r, TUR, 6, 0x28, 0);
	change_medium(r, "m3.raw", 64, SEED2);
	read10_cdb(cdb, 0, 8);
	send_packet(r, cdb, 0xFFFE, false);
	assert_int_equal(wait_not_busy(r) & DRQ, DRQ);
	uint32_t n = inb(r, CMD + 4) | inb(r, CMD + 5) << 8;
	assert_int_equal(n, 8192); /* the buffer holds four sectors */
	assert_int_equal(ide_cdrom_eject(r->ide, 1, 0, false), 0);
	for (uint32_t i = 0; i < n; i += 2)
		(void)inw(r, CMD);
	st = inb(r, CMD + 7);
	assert_int_equal(st & (DRQ | ERR), ERR);
	assert_int_equal(inb(r, CMD + 1) >> 4, 2);
}

/* A machine reset is a hard reset: the guest's lock on the tray ends (SPC), and the next
 * command reports the reset. */
static void test_machine_reset_unlocks_the_tray(void **state)
{
	struct rig *r = *state;
	clear_power_on(r);
	uint8_t prevent[12] = { 0x1E, 0, 0, 0, 1 };
	expect_sense(r, prevent, 0, 0, 0);
	ide_reset(r->ide);
	struct ide_device_info info;
	ide_query_device(r->ide, 1, 0, &info);
	assert_false(info.locked);
	expect_sense(r, TUR, 6, 0x29, 0);
	assert_int_equal(ide_cdrom_eject(r->ide, 1, 0, false), 0);
}

int main(void)
{
	rig_ram_alloc();
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_signature_reset_and_diagnostics, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_signatures_of_two_devices, setup, teardown),
		cmocka_unit_test_setup_teardown(test_identify_packet_device, setup, teardown),
		cmocka_unit_test_setup_teardown(test_seabios_el_torito_boot, setup, teardown),
		cmocka_unit_test_setup_teardown(test_pio_byte_count_limits, setup, teardown),
		cmocka_unit_test_setup_teardown(test_dma_reads, setup, teardown),
		cmocka_unit_test_setup_teardown(test_dma_many_prd_entries, setup, teardown),
		cmocka_unit_test_setup_teardown(test_capacity_toc_disc_track, setup, teardown),
		cmocka_unit_test_setup_teardown(test_get_configuration, setup, teardown),
		cmocka_unit_test_setup_teardown(test_mode_sense, setup, teardown),
		cmocka_unit_test_setup_teardown(test_inquiry_and_sense, setup, teardown),
		cmocka_unit_test_setup_teardown(test_media_change, setup, teardown),
		cmocka_unit_test_setup_teardown(test_locked_tray, setup, teardown),
		cmocka_unit_test_setup_teardown(test_machine_reset_unlocks_the_tray, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_empty_tray, setup_empty, teardown),
		cmocka_unit_test_setup_teardown(test_out_of_range, setup, teardown),
		cmocka_unit_test_setup_teardown(test_hostile_dma, setup, teardown),
		cmocka_unit_test_setup_teardown(test_reset_mid_transfer, setup, teardown),
		cmocka_unit_test_setup_teardown(test_eject_before_dma_start, setup, teardown),
	};
	int ret = cmocka_run_group_tests(tests, NULL, NULL);
	test_tmpdir_remove();
	rig_ram_free();
	return ret;
}
