/* The IDE model driven the way a guest drives it, through its ports, with simulated guest
 * memory and a recording interrupt line; disks are raw files whose content the tests know
 * (test_fill_pattern) and read back independently with pread. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <time.h>

#include "format.h"
#include "geometry.h"
#include "ide_rig.h"

struct vdisk *test_open_disks[TEST_MAX_OPEN_DISKS];

#define DISK_SIZE (64u << 20)
#define SEED	  7

static int setup(void **state)
{
	struct rig *r = rig_new("disk.raw");
	r->disk = rig_open_raw(r->path, DISK_SIZE, SEED, false);
	assert_int_equal(ide_attach_disk(r->ide, 0, 0, r->disk), 0);
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
	return rig_wait_not_busy(r, 0x3F6);
}

static void lba28(struct rig *r, uint32_t lba, uint8_t count, uint8_t cmd)
{
	outb(r, 0x1F6, (uint8_t)(0xE0 | ((lba >> 24) & 0x0F)));
	outb(r, 0x1F2, count);
	outb(r, 0x1F3, (uint8_t)lba);
	outb(r, 0x1F4, (uint8_t)(lba >> 8));
	outb(r, 0x1F5, (uint8_t)(lba >> 16));
	outb(r, 0x1F7, cmd);
}

static void lba48(struct rig *r, uint64_t lba, uint16_t count, uint8_t cmd)
{
	outb(r, 0x1F6, 0x40);
	outb(r, 0x1F2, (uint8_t)(count >> 8));
	outb(r, 0x1F3, (uint8_t)(lba >> 24));
	outb(r, 0x1F4, (uint8_t)(lba >> 32));
	outb(r, 0x1F5, (uint8_t)(lba >> 40));
	outb(r, 0x1F2, (uint8_t)count);
	outb(r, 0x1F3, (uint8_t)lba);
	outb(r, 0x1F4, (uint8_t)(lba >> 8));
	outb(r, 0x1F5, (uint8_t)(lba >> 16));
	outb(r, 0x1F7, cmd);
}

static void expected(uint8_t *buf, uint64_t offset, size_t len)
{
	test_fill_pattern(buf, len, offset, SEED);
}

/* Reads one DRQ block of n sectors through the data port (16-bit). */
static void pio_read_block(struct rig *r, uint8_t *out, unsigned sectors)
{
	for (unsigned i = 0; i < sectors * 256; i++) {
		uint16_t w = inw(r, 0x1F0);
		out[2 * i] = (uint8_t)w;
		out[2 * i + 1] = (uint8_t)(w >> 8);
	}
}

/* ---- tests ---- */

static void test_signature_and_absent_devices(void **state)
{
	struct rig *r = *state;
	assert_int_equal(inb(r, 0x1F2), 1);
	assert_int_equal(inb(r, 0x1F3), 1);
	assert_int_equal(inb(r, 0x1F4), 0);
	assert_int_equal(inb(r, 0x1F5), 0);
	assert_int_equal(inb(r, 0x1F7) & 0xC0, 0x40); /* ready */
	outb(r, 0x1F6, 0xB0);			      /* the slave: absent */
	assert_int_equal(inb(r, 0x1F7), 0);
	outb(r, 0x1F7, 0xEC); /* a command to it is ignored */
	assert_false(r->irq[14]);
	assert_int_equal(inb(r, 0x177), 0xFF); /* secondary channel: nothing attached */
	assert_int_equal(ide_attach_disk(r->ide, 0, 0, r->disk), -EBUSY);
	assert_int_equal(ide_attach_disk(r->ide, 2, 0, r->disk), -EINVAL);
}

static void test_identify(void **state)
{
	struct rig *r = *state;
	outb(r, 0x1F6, 0xA0);
	outb(r, 0x1F7, 0xEC);
	assert_true(r->irq[14]);
	uint8_t st = inb(r, 0x1F7);
	assert_int_equal(st & 0x89, 0x08); /* DRQ, not busy, no error */
	assert_false(r->irq[14]);	   /* reading status acknowledged it */
	uint8_t id[512];
	pio_read_block(r, id, 1);
	uint16_t w[256];
	for (int i = 0; i < 256; i++)
		w[i] = (uint16_t)(id[2 * i] | id[2 * i + 1] << 8);
	uint64_t sectors = DISK_SIZE / 512;
	assert_int_equal(w[0] & 0x8000, 0); /* ATA */
	assert_int_equal((uint32_t)w[60] | (uint32_t)w[61] << 16, sectors);
	assert_int_equal((uint64_t)w[100] | (uint64_t)w[101] << 16, sectors);
	assert_true(w[83] & (1 << 10)); /* LBA48 */
	assert_true(w[49] & (1 << 9));	/* LBA */
	uint16_t c;
	uint8_t h, spt;
	vdisk_chs_geometry(sectors, &c, &h, &spt);
	assert_int_equal(w[1], c);
	assert_int_equal(w[3], h);
	assert_int_equal(w[6], spt);
	char model[41];
	for (int i = 0; i < 20; i++) {
		model[2 * i] = (char)(w[27 + i] >> 8);
		model[2 * i + 1] = (char)w[27 + i];
	}
	model[40] = 0;
	assert_memory_equal(model, "hvstack Virtual Disk", 20);
	uint8_t sum = 0;
	for (int i = 0; i < 512; i++)
		sum += id[i];
	assert_int_equal(sum, 0);		   /* integrity word */
	assert_int_equal(inb(r, 0x1F7) & 0x08, 0); /* transfer over */
}

static void test_pio_read_sectors(void **state)
{
	struct rig *r = *state;
	lba28(r, 5, 3, 0x20);
	uint8_t got[3 * 512], want[3 * 512];
	for (int s = 0; s < 3; s++) {
		wait_not_busy(r);
		uint8_t st = inb(r, 0x1F7); /* acknowledges the block's interrupt */
		assert_int_equal(st & 0x09, 0x08);
		pio_read_block(r, got + s * 512, 1);
	}
	assert_int_equal(inb(r, 0x1F7) & 0x89, 0);
	expected(want, 5 * 512, sizeof(want));
	assert_memory_equal(got, want, sizeof(want));
	assert_int_equal(r->irq_raises[14], 3); /* one per DRQ block */
}

static void test_pio_write_sectors_32bit(void **state)
{
	struct rig *r = *state;
	uint8_t data[2 * 512];
	for (size_t i = 0; i < sizeof(data); i++)
		data[i] = (uint8_t)(i * 7 + 3);
	lba28(r, 100, 2, 0x30);
	for (int s = 0; s < 2; s++) {
		uint8_t st = wait_not_busy(r);
		assert_int_equal(st & 0x09, 0x08);
		for (int i = 0; i < 128; i++) {
			uint32_t v;
			memcpy(&v, data + s * 512 + i * 4, 4);
			outl(r, 0x1F0, v);
		}
	}
	uint8_t st = wait_not_busy(r);
	assert_int_equal(st & 0x09, 0);
	uint8_t back[sizeof(data)];
	test_file_read(r->path, back, sizeof(back), 100 * 512);
	assert_memory_equal(back, data, sizeof(data));
}

static void test_multiple(void **state)
{
	struct rig *r = *state;
	lba28(r, 0, 4, 0xC4); /* READ MULTIPLE before SET MULTIPLE MODE */
	uint8_t st = wait_not_busy(r);
	assert_int_equal(st & 0x01, 0x01);
	assert_int_equal(inb(r, 0x1F1), 0x04);
	outb(r, 0x1F2, 3); /* not a power of two */
	outb(r, 0x1F7, 0xC6);
	assert_int_equal(inb(r, 0x1F7) & 0x01, 0x01);
	outb(r, 0x1F2, 8);
	outb(r, 0x1F7, 0xC6);
	assert_int_equal(inb(r, 0x1F7) & 0x01, 0);
	lba28(r, 10, 20, 0xC4); /* blocks of 8, 8, 4 */
	uint8_t got[20 * 512], want[20 * 512];
	unsigned blocks[] = { 8, 8, 4 }, done = 0;
	for (int b = 0; b < 3; b++) {
		st = wait_not_busy(r);
		assert_int_equal(st & 0x09, 0x08);
		pio_read_block(r, got + done * 512, blocks[b]);
		done += blocks[b];
	}
	expected(want, 10 * 512, sizeof(want));
	assert_memory_equal(got, want, sizeof(want));
}

static void test_lba48_and_range_errors(void **state)
{
	struct rig *r = *state;
	uint64_t last = DISK_SIZE / 512 - 1;
	lba48(r, last, 1, 0x24);
	uint8_t st = wait_not_busy(r);
	assert_int_equal(st & 0x09, 0x08);
	uint8_t got[512], want[512];
	pio_read_block(r, got, 1);
	expected(want, last * 512, 512);
	assert_memory_equal(got, want, 512);

	lba48(r, last, 2, 0x24); /* one sector past the end */
	st = wait_not_busy(r);
	assert_int_equal(st & 0x01, 0x01);
	assert_int_equal(inb(r, 0x1F1) & 0x10, 0x10); /* IDNF */
	lba48(r, UINT64_C(1) << 47, 1, 0x25);
	assert_int_equal(wait_not_busy(r) & 0x01, 0x01);

	outb(r, 0x1F7, 0xA1); /* IDENTIFY PACKET DEVICE: not a packet device */
	assert_int_equal(inb(r, 0x1F7) & 0x01, 0x01);
	outb(r, 0x1F7, 0x00); /* NOP always aborts */
	assert_int_equal(inb(r, 0x1F1), 0x04);
}

static void test_hob_registers(void **state)
{
	struct rig *r = *state;
	outb(r, 0x1F3, 0x12);
	outb(r, 0x1F3, 0x34);
	assert_int_equal(inb(r, 0x1F3), 0x34);
	outb(r, 0x3F6, 0x80);
	assert_int_equal(inb(r, 0x1F3), 0x12);
	outb(r, 0x1F4, 0); /* a register write clears HOB */
	assert_int_equal(inb(r, 0x1F3), 0x34);
	outb(r, 0x3F6, 0);
}

static void test_chs(void **state)
{
	struct rig *r = *state;
	/* INITIALIZE DEVICE PARAMETERS: 16 heads, 63 sectors per track */
	outb(r, 0x1F6, 0xA0 | 15);
	outb(r, 0x1F2, 63);
	outb(r, 0x1F7, 0x91);
	assert_int_equal(inb(r, 0x1F7) & 0x01, 0);
	/* C=2 H=3 S=4: LBA (2 * 16 + 3) * 63 + 3 */
	outb(r, 0x1F6, 0xA0 | 3);
	outb(r, 0x1F2, 1);
	outb(r, 0x1F3, 4);
	outb(r, 0x1F4, 2);
	outb(r, 0x1F5, 0);
	outb(r, 0x1F7, 0x20);
	assert_int_equal(wait_not_busy(r) & 0x09, 0x08);
	uint8_t got[512], want[512];
	pio_read_block(r, got, 1);
	expected(want, ((2 * 16 + 3) * 63 + 3) * 512, 512);
	assert_memory_equal(got, want, 512);
	/* sector 0 does not exist in CHS */
	outb(r, 0x1F3, 0);
	outb(r, 0x1F7, 0x20);
	assert_int_equal(wait_not_busy(r) & 0x01, 0x01);
}

/* ---- DMA ---- */

static void bm_start(struct rig *r, uint32_t table, bool to_memory)
{
	outl(r, BM_BASE + 4, table);
	outb(r, BM_BASE + 2, 0x06); /* clear error and interrupt */
	outb(r, BM_BASE, (uint8_t)((to_memory ? 0x08 : 0) | 1));
}

static uint8_t bm_status(struct rig *r)
{
	return inb(r, BM_BASE + 2);
}

static void test_dma_read_across_regions(void **state)
{
	struct rig *r = *state;
	const uint32_t table = 0x1000;
	put_prd(table, 0, 0x20000, 1024, false);
	put_prd(table, 1, HIGH_GPA, 0, false); /* 0 means 64 KiB */
	put_prd(table, 2, 0x30000, 3072, true);
	lba28(r, 64, (1024 + 65536 + 3072) / 512, 0xC8);
	assert_int_equal(inb(r, 0x3F6) & 0x80, 0x80); /* waits for the bus master */
	bm_start(r, table, true);
	uint8_t st = wait_not_busy(r);
	assert_int_equal(st & 0x09, 0);
	assert_true(r->irq[14]);
	assert_int_equal(bm_status(r) & 0x07, 0x04); /* interrupt, not active, no error */
	uint8_t *want = malloc(1024 + 65536 + 3072);
	expected(want, 64 * 512, 1024 + 65536 + 3072);
	assert_memory_equal(ram_low + 0x20000, want, 1024);
	assert_memory_equal(ram_high, want + 1024, 65536);
	assert_memory_equal(ram_low + 0x30000, want + 1024 + 65536, 3072);
	free(want);
	outb(r, BM_BASE, 0);
	struct ide_stats s;
	ide_get_stats(r->ide, &s);
	assert_int_equal(s.dma_sectors, (1024 + 65536 + 3072) / 512);
	struct ide_device_info info;
	assert_int_equal(ide_query_device(r->ide, 0, 0, &info), 0);
	assert_int_equal(info.stats.reads, 1);
	assert_int_equal(info.stats.read_bytes, 1024 + 65536 + 3072);
	assert_int_equal(info.stats.writes + info.stats.flushes, 0);
}

static void test_dma_write(void **state)
{
	struct rig *r = *state;
	const uint32_t table = 0x1000;
	for (int i = 0; i < 8192; i++)
		ram_low[0x40000 + i] = (uint8_t)(i * 13 + 1);
	put_prd(table, 0, 0x40000, 8192, true);
	bm_start(r, table, false);
	lba48(r, 2000, 16, 0x35); /* the bus master already started: the transfer runs */
	assert_int_equal(wait_not_busy(r) & 0x09, 0);
	uint8_t back[8192];
	test_file_read(r->path, back, sizeof(back), 2000 * 512);
	assert_memory_equal(back, ram_low + 0x40000, 8192);
	outb(r, BM_BASE, 0);
	struct ide_device_info info;
	assert_int_equal(ide_query_device(r->ide, 0, 0, &info), 0);
	assert_int_equal(info.stats.writes, 1);
	assert_int_equal(info.stats.write_bytes, 8192);
}

/* More PRD entries than one block-layer request takes iovecs: split, same result. */
static void test_dma_many_entries(void **state)
{
	struct rig *r = *state;
	const uint32_t table = 0x10000, n = 2048;
	for (uint32_t i = 0; i < n; i++) /* 512 bytes each, with gaps so none merge */
		put_prd(table, i, 0x100000 + i * 1024, 512, i == n - 1);
	lba28(r, 0, 0, 0xC8); /* count 0: 256 sectors... */
	bm_start(r, table, true);
	/* 256 sectors need 256 entries: the table is longer, so the bus master stays active */
	assert_int_equal(wait_not_busy(r) & 0x09, 0);
	assert_int_equal(bm_status(r) & 0x07, 0x05);
	outb(r, BM_BASE, 0);
	lba48(r, 0, (uint16_t)n, 0x25);
	bm_start(r, table, true);
	assert_int_equal(wait_not_busy(r) & 0x09, 0);
	assert_int_equal(bm_status(r) & 0x07, 0x04);
	uint8_t want[512];
	for (uint32_t i = 0; i < n; i += 97) {
		expected(want, (uint64_t)i * 512, 512);
		assert_memory_equal(ram_low + 0x100000 + i * 1024, want, 512);
	}
	outb(r, BM_BASE, 0);
}

static void expect_dma_error(struct rig *r)
{
	uint8_t st = wait_not_busy(r);
	assert_int_equal(st & 0x01, 0x01);
	assert_int_equal(inb(r, 0x1F1) & 0x04, 0x04);
	assert_int_equal(bm_status(r) & 0x03, 0x02); /* error, no longer active */
	outb(r, BM_BASE, 0);
}

static void test_hostile_prd_tables(void **state)
{
	struct rig *r = *state;
	const uint32_t table = 0x1000;
	/* a buffer outside guest RAM */
	put_prd(table, 0, RAM_LOW - 512, 1024, true);
	lba28(r, 0, 2, 0xC8);
	bm_start(r, table, true);
	expect_dma_error(r);
	/* the table itself outside guest RAM */
	lba28(r, 0, 1, 0xC8);
	bm_start(r, 0x0FFFFFF0, true);
	expect_dma_error(r);
	/* shorter than the transfer */
	put_prd(table, 0, 0x20000, 512, true);
	lba28(r, 0, 2, 0xC8);
	bm_start(r, table, true);
	expect_dma_error(r);
	/* no end-of-table bit anywhere in 64 KiB of tiny entries: bounded, then an error */
	for (uint32_t i = 0; i < 8192; i++)
		put_prd(0x100000, i, 0x20000, 2, false);
	lba48(r, 0, 65535, 0x25);
	bm_start(r, 0x100000, true);
	expect_dma_error(r);
	/* direction of the bus master against the command */
	put_prd(table, 0, 0x20000, 512, true);
	lba28(r, 0, 1, 0xCA);
	bm_start(r, table, true);
	expect_dma_error(r);
	/* the device still works */
	lba28(r, 0, 1, 0xC8);
	bm_start(r, table, true);
	assert_int_equal(wait_not_busy(r) & 0x01, 0);
	outb(r, BM_BASE, 0);
}

static void test_reset_drops_a_transfer_in_flight(void **state)
{
	struct rig *r = *state;
	const uint32_t table = 0x1000;
	memset(ram_low + 0x20000, 0xEE, 4096);
	put_prd(table, 0, 0x20000, 4096, true);
	lba28(r, 0, 8, 0xC8);
	bm_start(r, table, true); /* posted to the disk's queue, not yet run */
	outb(r, 0x3F6, 0x04);	  /* SRST */
	assert_int_equal(inb(r, 0x3F6) & 0x80, 0x80);
	outb(r, 0x3F6, 0x00);
	vdisk_queue_poll(vdisk_queue(r->disk, 0), 0);
	uint8_t st = inb(r, 0x1F7);
	assert_int_equal(st & 0xC9, 0x40);  /* ready, idle, no error */
	assert_int_equal(inb(r, 0x1F2), 1); /* signature */
	outb(r, BM_BASE, 0);
	/* and a command after the reset runs normally */
	lba28(r, 3, 1, 0x20);
	assert_int_equal(wait_not_busy(r) & 0x09, 0x08);
}

static void test_flush_features_power(void **state)
{
	struct rig *r = *state;
	outb(r, 0x1F7, 0xE7);
	assert_int_equal(wait_not_busy(r) & 0x01, 0);
	struct ide_device_info info;
	assert_int_equal(ide_query_device(r->ide, 0, 0, &info), 0);
	assert_int_equal(info.stats.flushes, 1);
	outb(r, 0x1F1, 0x03); /* SET FEATURES: UDMA mode 5 */
	outb(r, 0x1F2, 0x45);
	outb(r, 0x1F7, 0xEF);
	assert_int_equal(inb(r, 0x1F7) & 0x01, 0);
	outb(r, 0x1F2, 0x47); /* UDMA 7 does not exist */
	outb(r, 0x1F7, 0xEF);
	assert_int_equal(inb(r, 0x1F7) & 0x01, 0x01);
	outb(r, 0x1F7, 0xEC);
	inb(r, 0x1F7);
	uint8_t id[512];
	pio_read_block(r, id, 1);
	assert_int_equal(id[88 * 2 + 1], 0x20); /* UDMA 5 selected */
	outb(r, 0x1F2, 0);
	outb(r, 0x1F7, 0xE5);
	assert_int_equal(inb(r, 0x1F2), 0xFF); /* active */
}

static void test_nien_masks_the_interrupt(void **state)
{
	struct rig *r = *state;
	outb(r, 0x3F6, 0x02);
	outb(r, 0x1F7, 0xE5);
	assert_false(r->irq[14]);
	outb(r, 0x3F6, 0x00); /* pending, now visible */
	assert_true(r->irq[14]);
	inb(r, 0x1F7);
	assert_false(r->irq[14]);
}

static void test_data_port_without_transfer(void **state)
{
	struct rig *r = *state;
	assert_int_equal(inw(r, 0x1F0), 0xFFFF);
	outw(r, 0x1F0, 0x1234); /* ignored */
	assert_int_equal(inb(r, 0x1F7) & 0x89, 0);
	for (int port = 0x1F0; port < 0x1F8; port++) /* odd sizes do not hurt */
		(void)inl(r, (uint16_t)port);
}

/* ---- platform reset (ide_reset) ---- */

/* The registers a BIOS finds after power-on: ready, not busy, the disk's signature, no
 * interrupt, nIEN clear, the bus master stopped with its registers zero. */
static void expect_power_on_state(struct rig *r)
{
	assert_int_equal(inb(r, 0x3F6) & 0xC9, 0x40);
	assert_int_equal(inb(r, 0x1F2), 1);
	assert_int_equal(inb(r, 0x1F3), 1);
	assert_false(r->irq[14]);
	assert_int_equal(inb(r, BM_BASE), 0);
	assert_int_equal(bm_status(r), 0);
	assert_int_equal(inl(r, BM_BASE + 4), 0);
}

/* A guest issued READ DMA and the machine reset before it started the bus master: the
 * channel must not stay busy (SeaBIOS would never find the disk again). */
static void test_platform_reset_ends_a_dma_command_never_started(void **state)
{
	struct rig *r = *state;
	outb(r, 0x3F6, 0x02);	    /* nIEN, as Linux leaves it at times */
	outb(r, BM_BASE + 2, 0x60); /* DMA-capable bits, set by firmware */
	lba28(r, 0, 8, 0xC8);
	assert_int_equal(inb(r, 0x3F6) & 0x80, 0x80);
	ide_reset(r->ide);
	expect_power_on_state(r);
	lba28(r, 5, 1, 0x20); /* a BIOS's PIO read works */
	assert_int_equal(wait_not_busy(r) & 0x09, 0x08);
	uint8_t got[512], want[512];
	pio_read_block(r, got, 1);
	expected(want, 5 * 512, sizeof(want));
	assert_memory_equal(got, want, sizeof(want));
}

/* A raw disk whose reads stay open until the test's I/O thread lets them end: a request
 * that is in flight for as long as the test needs. */
static struct vdisk_req *_Atomic gated_req;

static int gated_probe(const struct vdisk_probe *probe)
{
	(void)probe;
	return 0; /* opened by name only */
}

static void gated_readv(struct vdisk_req *req)
{
	vdisk_req_hold(req);
	vdisk_format_raw.readv(req);
	atomic_store(&gated_req, req);
}

static struct vdisk_format gated_format;

static int setup_gated(void **state)
{
	gated_format = vdisk_format_raw;
	gated_format.name = "gated";
	gated_format.probe = gated_probe;
	gated_format.readv = gated_readv;
	int ret = vdisk_format_register(&gated_format);
	assert_true(ret == 0 || ret == -EEXIST);
	struct rig *r = rig_new("gated.raw");
	test_write_file(r->path, DISK_SIZE, SEED);
	struct vdisk_options o = { .cache = VDISK_CACHE_WRITEBACK, .format = "gated" };
	assert_int_equal(vdisk_open(r->path, &o, &r->disk, NULL, 0), 0);
	assert_int_equal(test_track_disk(r->disk), 0);
	assert_int_equal(ide_attach_disk(r->ide, 0, 0, r->disk), 0);
	*state = r;
	return 0;
}

static uint64_t now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

/* The VMM's I/O thread: polls the disk's queue and ends a gated read 100 ms after it
 * arrived, noting that it did. */
struct io_thread {
	struct vdisk_queue *q;
	atomic_bool stop, released;
};

static void *run_io_thread(void *arg)
{
	struct io_thread *t = arg;
	uint64_t seen = 0;
	while (!atomic_load(&t->stop)) {
		vdisk_queue_poll(t->q, 0);
		struct vdisk_req *req = atomic_load(&gated_req);
		if (!req)
			continue;
		if (!seen)
			seen = now_ms();
		if (now_ms() - seen < 100)
			continue;
		atomic_store(&gated_req, NULL);
		atomic_store(&t->released, true);
		vdisk_req_end(req, 0);
	}
	return NULL;
}

/* A DMA read in flight at the reset: ide_reset returns only once the request has ended,
 * so nothing of the old command writes RAM the rebooted guest uses; the cancelled
 * command raises no interrupt. */
static void test_platform_reset_waits_for_a_transfer_in_flight(void **state)
{
	struct rig *r = *state;
	const uint32_t table = 0x1000, buf = 0x40000, bytes = 64 * 1024;
	put_prd(table, 0, buf, 0, true); /* 0: 64 KiB */
	lba28(r, 0, (uint8_t)(bytes / 512), 0xC8);
	bm_start(r, table, true);
	struct io_thread t = { .q = vdisk_queue(r->disk, 0) };
	pthread_t thread;
	assert_int_equal(pthread_create(&thread, NULL, run_io_thread, &t), 0);
	while (!atomic_load(&gated_req) && !atomic_load(&t.released))
		usleep(1000);
	unsigned raises = r->irq_raises[14];
	ide_reset(r->ide);
	bool ended_before_return = atomic_load(&t.released);
	atomic_store(&t.stop, true);
	pthread_join(thread, NULL);
	assert_true(ended_before_return);
	expect_power_on_state(r);
	assert_int_equal(r->irq_raises[14], raises);
}

int main(void)
{
	rig_ram_alloc();
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_signature_and_absent_devices, setup, teardown),
		cmocka_unit_test_setup_teardown(test_identify, setup, teardown),
		cmocka_unit_test_setup_teardown(test_pio_read_sectors, setup, teardown),
		cmocka_unit_test_setup_teardown(test_pio_write_sectors_32bit, setup, teardown),
		cmocka_unit_test_setup_teardown(test_multiple, setup, teardown),
		cmocka_unit_test_setup_teardown(test_lba48_and_range_errors, setup, teardown),
		cmocka_unit_test_setup_teardown(test_hob_registers, setup, teardown),
		cmocka_unit_test_setup_teardown(test_chs, setup, teardown),
		cmocka_unit_test_setup_teardown(test_dma_read_across_regions, setup, teardown),
		cmocka_unit_test_setup_teardown(test_dma_write, setup, teardown),
		cmocka_unit_test_setup_teardown(test_dma_many_entries, setup, teardown),
		cmocka_unit_test_setup_teardown(test_hostile_prd_tables, setup, teardown),
		cmocka_unit_test_setup_teardown(test_reset_drops_a_transfer_in_flight, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_flush_features_power, setup, teardown),
		cmocka_unit_test_setup_teardown(test_nien_masks_the_interrupt, setup, teardown),
		cmocka_unit_test_setup_teardown(test_data_port_without_transfer, setup, teardown),
		cmocka_unit_test_setup_teardown(
			test_platform_reset_ends_a_dma_command_never_started, setup, teardown),
		cmocka_unit_test_setup_teardown(test_platform_reset_waits_for_a_transfer_in_flight,
						setup_gated, teardown),
	};
	int ret = cmocka_run_group_tests(tests, NULL, NULL);
	test_tmpdir_remove();
	rig_ram_free();
	return ret;
}
