/* The PIIX IDE registers driven directly by a guest program on /dev/kvm: idetest.S, booted
 * by SeaBIOS from the IDE disk in `vmm run`, runs ATA PIO, bus-master DMA, error and ATAPI
 * steps and prints one line per step on COM1.
 *
 * Oracles: every checksum the guest prints is computed here from the image file before the
 * VM runs (raw, and VHD/VHDX converted from it by vdisk) or from the ISO xorriso made; what
 * the guest wrote is read back after the VM is gone with qemu-img, an independent reader of
 * VHD and VHDX, and compared with the guest's pattern regenerated here; the capacity the
 * guest checks is the file's size. The exit-cost test runs the guest's read loops with N
 * and 2N iterations and reports, from `vmm run --stats`, the VM exits per 4 KiB read.
 */
#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "boot_vm.h"
#include "endian.h"
#include "gen1_layout.h"
#include "test_util.h"

#define SECTOR	     512
#define CD_SECTOR    2048
#define PARAMS_AT    0x200 /* idetest.S: the parameter block's file offset */
#define PARAMS_MAGIC 0x50454449
/* guest-physical addresses: outside RAM, and 2 KiB before its end (a 4 KiB entry there
 * runs past it) */
#define BAD_ADDR  (4u * BOOT_VM_MEMORY_MIB << 20)
#define EDGE_ADDR ((BOOT_VM_MEMORY_MIB << 20) - 2048)

/* the small disks: the program, the pattern region, the scratch region the guest writes */
#define DISK_BYTES   (4u << 20)
#define DATA_LBA     64
#define DATA_SECTORS 256
#define SCRATCH_LBA  1024
#define PATTERN_SEED 0x1DE
#define WRITE_SEED   0xC0FFEE

/* the large raw disk: past the 28-bit LBA limit, its regions above it */
#define BIG_DISK_BYTES	(160ull << 30)
#define BIG_DATA_LBA	0x12345600u
#define BIG_SCRATCH_LBA (BIG_DATA_LBA + 0x1000)

#define ISO_DATA_BYTES (256u << 10)
#define LOOPS	       1000 /* iterations of the exit-cost loops (N; the second run does 2N) */

/* The steps, by their bit in the parameter block (the order of idetest.S's step table). */
enum {
	STEP_PCI,
	STEP_IDENTIFY,
	STEP_PIO_READ,
	STEP_PIO_READ_EXT,
	STEP_PIO_WRITE,
	STEP_PIO_MULTIPLE,
	STEP_DMA_READ,
	STEP_DMA_READ_SG,
	STEP_DMA_WRITE,
	STEP_ERR_RANGE,
	STEP_ERR_PRD,
	STEP_ERR_ABSENT,
	STEP_ATAPI_SIGNATURE,
	STEP_ATAPI_IDENTIFY,
	STEP_ATAPI_READY,
	STEP_ATAPI_CAPACITY,
	STEP_ATAPI_READ_PIO,
	STEP_ATAPI_READ_ODD,
	STEP_ATAPI_READ_DMA,
	STEP_LOOP_DMA,
	STEP_LOOP_PIO,
	STEP_DMA_PRD_EDGES,
	STEP_ATAPI_ERR_RANGE,
};
#define BIT(step) (1u << (step))
#define DISK_STEPS                                                                                 \
	(BIT(STEP_PCI) | BIT(STEP_IDENTIFY) | BIT(STEP_PIO_READ) | BIT(STEP_PIO_READ_EXT) |        \
	 BIT(STEP_PIO_WRITE) | BIT(STEP_PIO_MULTIPLE) | BIT(STEP_DMA_READ) |                       \
	 BIT(STEP_DMA_READ_SG) | BIT(STEP_DMA_WRITE) | BIT(STEP_DMA_PRD_EDGES) |                   \
	 BIT(STEP_ERR_RANGE) | BIT(STEP_ERR_PRD) | BIT(STEP_ERR_ABSENT))
#define ATAPI_STEPS                                                                                \
	(BIT(STEP_ATAPI_SIGNATURE) | BIT(STEP_ATAPI_IDENTIFY) | BIT(STEP_ATAPI_READY) |            \
	 BIT(STEP_ATAPI_CAPACITY) | BIT(STEP_ATAPI_READ_PIO) | BIT(STEP_ATAPI_READ_ODD) |          \
	 BIT(STEP_ATAPI_READ_DMA) | BIT(STEP_ATAPI_ERR_RANGE))

struct idetest_params {
	uint32_t steps;
	uint64_t sectors;
	uint32_t data_lba, scratch_lba;
	uint32_t iso_sectors, iso_lba;
	uint32_t dma_loops, pio_loops;
};

/* What `vmm run --stats` reported. */
struct run_stats {
	uint64_t exits, disk_reads;
};

/* A disk format, and its name for qemu-img. */
struct format {
	const char *name, *qemu_name;
};

static const char *idetest_path;

/* ---- checksums and patterns, as idetest.S computes them ---- */

/* The checksum of len bytes of a file at off. */
static uint32_t fold_file(const char *path, uint64_t off, size_t len)
{
	uint8_t *buf = test_xmalloc(len);
	test_file_read(path, buf, len, off);
	uint32_t h = boot_fold(buf, len);
	free(buf);
	return h;
}

/* The guest's write pattern: dword i is x_i, x_0 = seed, x_{i+1} = x_i * 1664525 + 1013904223. */
static void guest_pattern(uint8_t *buf, size_t len, uint32_t seed)
{
	uint32_t x = seed;
	for (size_t i = 0; i + 4 <= len; i += 4) {
		store_le32(buf + i, x);
		x = x * 1664525u + 1013904223u;
	}
}

static uint32_t fold_guest_pattern(size_t len, uint32_t seed)
{
	uint8_t *buf = test_xmalloc(len);
	guest_pattern(buf, len, seed);
	uint32_t h = boot_fold(buf, len);
	free(buf);
	return h;
}

/* ---- images ---- */

static void put_params(uint8_t *block, const struct idetest_params *p)
{
	const uint32_t words[] = { PARAMS_MAGIC,     p->steps,	   (uint32_t)p->sectors,
				   p->sectors >> 32, p->data_lba,  p->scratch_lba,
				   p->iso_sectors,   p->iso_lba,   BAD_ADDR,
				   p->dma_loops,     p->pio_loops, WRITE_SEED,
				   EDGE_ADDR };
	for (size_t i = 0; i < sizeof(words) / sizeof(words[0]); i++)
		store_le32(block + 4 * i, words[i]);
}

/* A raw disk of size bytes (sparse): the program with its parameters at sector 0, the
 * pattern at data_lba, zeros elsewhere. */
static void make_raw_disk(const char *path, uint64_t size, const struct idetest_params *p)
{
	uint8_t program[DATA_LBA * SECTOR];
	int fd = open(idetest_path, O_RDONLY);
	assert_true(fd >= 0);
	ssize_t n = read(fd, program, sizeof(program));
	close(fd);
	assert_true(n > PARAMS_AT && n < (ssize_t)sizeof(program) && n % SECTOR == 0);
	assert_int_equal(program[510], 0x55);
	assert_int_equal(program[511], 0xAA);
	put_params(program + PARAMS_AT, p);

	fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
	assert_true(fd >= 0);
	assert_int_equal(ftruncate(fd, (off_t)size), 0);
	close(fd);
	test_file_write(path, program, (size_t)n, 0);
	size_t data_len = (size_t)DATA_SECTORS * SECTOR;
	uint8_t *data = test_xmalloc(data_len);
	uint64_t off = (uint64_t)p->data_lba * SECTOR;
	test_fill_pattern(data, data_len, off, PATTERN_SEED);
	test_file_write(path, data, data_len, off);
	free(data);
}

/* image = raw converted to format by vdisk (or raw itself). */
static void convert_disk(const char *raw, const char *format, char *image, size_t image_size)
{
	if (strcmp(format, "raw") == 0) {
		snprintf(image, image_size, "%s", raw);
		return;
	}
	snprintf(image, image_size, "%s", test_path(format));
	char out[2048];
	if (test_run_vdisk(out, sizeof(out), "convert -O %s '%s' '%s'", format, raw, image) != 0)
		fail_msg("vdisk convert: %s", out);
}

struct iso {
	char path[512];
	uint32_t sectors, data_lba; /* data_lba: where xorriso put the pattern file */
};

static bool make_iso(struct iso *iso)
{
	if (test_run(NULL, 0, "command -v xorriso >/dev/null") != 0)
		return false;
	const char *root = test_path("isoroot");
	char out[4096], file[600];
	assert_int_equal(test_run(out, sizeof(out), "mkdir -p '%s'", root), 0);
	snprintf(file, sizeof(file), "%s/data.bin", root);
	test_write_file(file, ISO_DATA_BYTES, 0x150);
	snprintf(iso->path, sizeof(iso->path), "%s", test_path("data.iso"));
	if (test_run(out, sizeof(out), "xorriso -as mkisofs -quiet -o '%s' '%s'", iso->path,
		     root) != 0)
		fail_msg("xorriso: %s", out);
	FILE *f = fopen(iso->path, "rb");
	assert_non_null(f);
	fseek(f, 0, SEEK_END);
	long size = ftell(f);
	fclose(f);
	assert_true(size > 0 && size % CD_SECTOR == 0);
	iso->sectors = (uint32_t)(size / CD_SECTOR);
	/* the pattern file's first sector, found by content */
	uint8_t want[CD_SECTOR], got[CD_SECTOR];
	test_fill_pattern(want, sizeof(want), 0, 0x150);
	for (uint32_t s = 0; s < iso->sectors; s++) {
		test_file_read(iso->path, got, sizeof(got), (uint64_t)s * CD_SECTOR);
		if (memcmp(got, want, sizeof(got)) == 0) {
			iso->data_lba = s;
			return true;
		}
	}
	fail_msg("the pattern file is not in %s", iso->path);
	return false;
}

/* ---- running the VM ---- */

/* The --stats line (the last line of out that starts with '{'). */
static void parse_stats(const char *out, struct run_stats *st)
{
	const char *line = NULL;
	for (const char *p = out; p && *p; p = strchr(p, '\n') ? strchr(p, '\n') + 1 : NULL)
		if (*p == '{')
			line = p;
	if (!line)
		fail_msg("no --stats line in:\n%s", out);
	json_error_t err;
	json_t *j = json_loadb(line, strcspn(line, "\n"), 0, &err);
	if (!j)
		fail_msg("--stats is not JSON (%s): %s", err.text, line);
	json_t *disk = json_array_get(json_object_get(j, "drives"), 0);
	json_t *exits = json_object_get(j, "exits"), *reads = json_object_get(disk, "reads");
	if (!json_is_integer(exits) || !json_is_integer(reads))
		fail_msg("--stats lacks exits or the disk's reads: %s", line);
	st->exits = (uint64_t)json_integer_value(exits);
	st->disk_reads = (uint64_t)json_integer_value(reads);
	json_decref(j);
}

/* Boots the disk image (and the ISO on ide:1:0 when not NULL); returns the exit status,
 * leaves the serial log in log and, after a clean exit, the --stats counters in st. */
static int run_vm(const char *image, const char *iso, char *log, size_t log_size,
		  struct run_stats *st)
{
	char args[1400], out[8192];
	int n = snprintf(args, sizeof(args), "--stats --disk ide:0:0='%s'", image);
	if (iso)
		snprintf(args + n, sizeof(args) - (size_t)n, " --dvd ide:1:0='%s'", iso);
	int status = boot_run_vm(args, log, log_size, out, sizeof(out));
	if (status == BOOT_VM_EXIT_OK)
		parse_stats(out, st);
	return status;
}

/* make_raw_disk, then run_vm on it. */
static int boot_raw_disk(const char *raw, uint64_t size, const struct idetest_params *p, char *log,
			 size_t log_size, struct run_stats *st)
{
	make_raw_disk(raw, size, p);
	return run_vm(raw, NULL, log, log_size, st);
}

/* The line of step name says ok and contains fields (printf-formatted). */
static void expect_step(const char *log, const char *name, const char *fields, ...)
	__attribute__((format(printf, 3, 4)));

static void expect_step(const char *log, const char *name, const char *fields, ...)
{
	char head[64], want[256], line[512];
	snprintf(head, sizeof(head), "idetest: %s ", name);
	const char *at = strstr(log, head);
	if (!at)
		fail_msg("no line for step %s in the serial log:\n%s", name, log);
	size_t len = strcspn(at, "\r\n");
	snprintf(line, sizeof(line), "%.*s", (int)len, at);
	va_list ap;
	va_start(ap, fields);
	vsnprintf(want, sizeof(want), fields, ap);
	va_end(ap);
	if (strncmp(line + strlen(head), "ok", 2) != 0 || !strstr(line, want))
		fail_msg("step %s: expected ok and \"%s\", got:\n%s", name, want, line);
}

/* ---- what the disk steps should print ---- */

static uint32_t data_sum(const char *raw, uint32_t data_lba, uint32_t first, uint32_t count)
{
	return fold_file(raw, ((uint64_t)data_lba + first) * SECTOR, (size_t)count * SECTOR);
}

static void expect_pio_steps(const char *log, const char *raw, const struct idetest_params *p)
{
	uint64_t lba28 = p->sectors < 0x0FFFFFFF ? p->sectors : 0x0FFFFFFF;
	expect_step(log, "pci", "devfn=%02X", GEN1_PCI_DEV_PIIX << 3 | GEN1_PCI_FN_IDE);
	expect_step(log, "identify", "lba28=%08X lba48=%08X", (unsigned)lba28,
		    (unsigned)p->sectors);
	if (p->steps & BIT(STEP_PIO_READ))
		expect_step(log, "pio-read", "sum=%08X", data_sum(raw, p->data_lba, 0, 16));
	expect_step(log, "pio-read-ext", "sum=%08X irqs=10", data_sum(raw, p->data_lba, 16, 16));
	if (p->steps & BIT(STEP_PIO_WRITE))
		expect_step(log, "pio-write", "sum=%08X",
			    fold_guest_pattern(8 * SECTOR, WRITE_SEED));
	if (p->steps & BIT(STEP_PIO_MULTIPLE))
		expect_step(log, "pio-multiple", "w59=0108 sum=%08X irqs=04",
			    data_sum(raw, p->data_lba, 32, 32));
}

static void expect_dma_steps(const char *log, const char *raw, const struct idetest_params *p)
{
	if (p->steps & BIT(STEP_DMA_READ))
		expect_step(log, "dma-read", "bm=04 st=50 sum=%08X",
			    data_sum(raw, p->data_lba, 64, 16));
	expect_step(log, "dma-read-sg", "bm=04 st=50 bytes=00008000 sum=%08X",
		    data_sum(raw, p->data_lba, 80, 64));
	expect_step(log, "dma-write", "bm=04 st=50 sum=%08X",
		    fold_guest_pattern(32 * SECTOR, WRITE_SEED + 1));
	if (p->steps & BIT(STEP_DMA_PRD_EDGES))
		expect_step(log, "dma-prd-edges", "bm=04 st=50 sum=%08X bm=05 st=50 sum=%08X",
			    data_sum(raw, p->data_lba, 0, 128), data_sum(raw, p->data_lba, 64, 8));
	expect_step(log, "err-range", "st=51");
	if (p->steps & BIT(STEP_ERR_PRD))
		expect_step(log, "err-prd",
			    "bm=06 st=51 bm=06 st=51 bm=06 st=51 bm=06 st=51 sum=%08X",
			    data_sum(raw, p->data_lba, 64, 8));
}

static void expect_atapi_steps(const char *log, const struct iso *iso)
{
	uint64_t at = (uint64_t)iso->data_lba * CD_SECTOR;
	expect_step(log, "atapi-signature", "sig=0101EB14 sig=0101EB14");
	expect_step(log, "atapi-identify", "w0=");
	/* the reset left a unit attention: the first TEST UNIT READY reports it */
	expect_step(log, "atapi-ready", "first-sense=06");
	expect_step(log, "atapi-capacity", "last=%08X block=00000800", iso->sectors - 1);
	expect_step(log, "atapi-read-pio", "sum=%08X", fold_file(iso->path, at, 8 * CD_SECTOR));
	expect_step(log, "atapi-read-odd", "sum=%08X",
		    fold_file(iso->path, at + 8 * CD_SECTOR, 2 * CD_SECTOR));
	expect_step(log, "atapi-read-dma", "bm=04 st=50 sum=%08X",
		    fold_file(iso->path, at + 16 * CD_SECTOR, 16 * CD_SECTOR));
	/* sense key 5 (ILLEGAL REQUEST) in the error register's high nibble */
	expect_step(log, "atapi-err-range", "st=51 err=5");
}

/* After the VM: the guest's writes are in the image (read by qemu-img) and nothing else
 * changed; the write from outside guest RAM left its sectors zero. */
static void expect_disk_after(const char *raw, const char *image, const char *qemu_format)
{
	const char *back = test_path("readback.raw");
	char out[2048];
	if (test_run(out, sizeof(out), "qemu-img convert -f %s -O raw '%s' '%s'", qemu_format,
		     image, back) != 0)
		fail_msg("qemu-img convert: %s", out);
	uint8_t *want = test_xmalloc(DISK_BYTES), *got = test_xmalloc(DISK_BYTES);
	test_file_read(raw, want, DISK_BYTES, 0);
	test_file_read(back, got, DISK_BYTES, 0);
	guest_pattern(want + SCRATCH_LBA * SECTOR, 8 * SECTOR, WRITE_SEED);
	guest_pattern(want + (SCRATCH_LBA + 16) * SECTOR, 32 * SECTOR, WRITE_SEED + 1);
	test_expect_equal(got, want, DISK_BYTES, "the disk after the guest's writes", 0);
	free(want);
	free(got);
}

/* Every step against one disk format (the state), with the DVD. */
static void test_all_steps(void **state)
{
	const struct format *format = *state;
	struct iso iso;
	if (!make_iso(&iso))
		skip();
	const char *raw = test_path("disk.raw");
	struct idetest_params p = { .steps = DISK_STEPS | ATAPI_STEPS,
				    .sectors = DISK_BYTES / SECTOR,
				    .data_lba = DATA_LBA,
				    .scratch_lba = SCRATCH_LBA,
				    .iso_sectors = iso.sectors,
				    .iso_lba = iso.data_lba };
	make_raw_disk(raw, DISK_BYTES, &p);
	char image[512];
	convert_disk(raw, format->name, image, sizeof(image));

	char log[16384];
	struct run_stats st;
	assert_int_equal(run_vm(image, iso.path, log, sizeof(log), &st), BOOT_VM_EXIT_OK);
	expect_pio_steps(log, raw, &p);
	expect_dma_steps(log, raw, &p);
	expect_step(log, "err-absent", "c0d1=00 c1d1=00");
	expect_atapi_steps(log, &iso);
	assert_contains(log, "idetest: done failed=00");
	expect_disk_after(raw, image, format->qemu_name);
	if (strcmp(format->name, "raw") != 0) {
		char out[4096];
		if (test_run_vdisk(out, sizeof(out), "check '%s'", image) != 0)
			fail_msg("vdisk check after the run: %s", out);
	}
}

/* A 160 GiB raw disk: IDENTIFY's 28-bit capacity saturates, and the 48-bit commands reach
 * sectors above 2^28 (the high LBA bytes go through the HOB registers). */
static void test_steps_past_lba28(void **state)
{
	(void)state;
	const char *raw = test_path("big.raw");
	struct idetest_params p = { .steps = BIT(STEP_PCI) | BIT(STEP_IDENTIFY) |
					     BIT(STEP_PIO_READ_EXT) | BIT(STEP_DMA_READ_SG) |
					     BIT(STEP_DMA_WRITE) | BIT(STEP_ERR_RANGE),
				    .sectors = BIG_DISK_BYTES / SECTOR,
				    .data_lba = BIG_DATA_LBA,
				    .scratch_lba = BIG_SCRATCH_LBA };
	char log[16384];
	struct run_stats st;
	assert_int_equal(boot_raw_disk(raw, BIG_DISK_BYTES, &p, log, sizeof(log), &st),
			 BOOT_VM_EXIT_OK);
	expect_pio_steps(log, raw, &p);
	expect_dma_steps(log, raw, &p);
	assert_contains(log, "idetest: done failed=00");
	uint8_t got[32 * SECTOR], want[32 * SECTOR];
	guest_pattern(want, sizeof(want), WRITE_SEED + 1);
	test_file_read(raw, got, sizeof(got), (uint64_t)(BIG_SCRATCH_LBA + 16) * SECTOR);
	test_expect_equal(got, want, sizeof(got), "sectors written above 2^28",
			  (uint64_t)(BIG_SCRATCH_LBA + 16) * SECTOR);
	unlink(raw);
}

/* The program's checks can fail: told a wrong capacity, IDENTIFY fails and the exit status
 * counts the failed step. */
static void test_wrong_capacity_fails(void **state)
{
	(void)state;
	const char *raw = test_path("disk.raw");
	struct idetest_params p = { .steps = BIT(STEP_IDENTIFY),
				    .sectors = DISK_BYTES / SECTOR + 1,
				    .data_lba = DATA_LBA,
				    .scratch_lba = SCRATCH_LBA };
	char log[16384];
	struct run_stats st;
	assert_int_equal(boot_raw_disk(raw, DISK_BYTES, &p, log, sizeof(log), &st),
			 BOOT_VM_EXIT_OK + 1);
	assert_contains(log, "idetest: identify fail");
	assert_contains(log, "why=capacity");
	assert_contains(log, "idetest: done failed=01");
}

/* ---- exits per I/O ---- */

static void run_loops(const char *raw, uint32_t dma_loops, uint32_t pio_loops, struct run_stats *st)
{
	struct idetest_params p = { .steps = BIT(STEP_PCI) | BIT(STEP_ERR_ABSENT) |
					     BIT(STEP_LOOP_DMA) | BIT(STEP_LOOP_PIO),
				    .sectors = DISK_BYTES / SECTOR,
				    .data_lba = DATA_LBA,
				    .scratch_lba = SCRATCH_LBA,
				    .dma_loops = dma_loops,
				    .pio_loops = pio_loops };
	char log[16384];
	assert_int_equal(boot_raw_disk(raw, DISK_BYTES, &p, log, sizeof(log), st), BOOT_VM_EXIT_OK);
	/* no DVD: nothing drives channel 1's bus */
	expect_step(log, "err-absent", "c0d1=00 c1d1=FF");
	expect_step(log, "loop-dma", "n=%08X", dma_loops);
	expect_step(log, "loop-pio", "n=%08X", pio_loops);
	assert_contains(log, "idetest: done failed=00");
}

/* Runs (N, N), (2N, N) and (N, 2N) iterations of the 4 KiB DMA and PIO read loops: the
 * differences over N are the exits and disk requests of one read of each kind. */
static void test_exits_per_io(void **state)
{
	(void)state;
	const char *raw = test_path("loops.raw");
	struct run_stats base, dma, pio;
	run_loops(raw, LOOPS, LOOPS, &base);
	run_loops(raw, 2 * LOOPS, LOOPS, &dma);
	run_loops(raw, LOOPS, 2 * LOOPS, &pio);
	/* one READ DMA is one disk request; READ SECTORS reads one sector per DRQ block */
	assert_int_equal(dma.disk_reads - base.disk_reads, LOOPS);
	assert_int_equal(pio.disk_reads - base.disk_reads, 8 * LOOPS);
	double dma_exits = ((double)dma.exits - (double)base.exits) / LOOPS;
	double pio_exits = ((double)pio.exits - (double)base.exits) / LOOPS;
	printf("VM exits per 4 KiB read (N = %d): DMA %.2f, PIO %.2f\n", LOOPS, dma_exits,
	       pio_exits);
	assert_true(dma_exits > 0 && dma_exits < pio_exits);
	assert_true(dma_exits < 32); /* taskfile, bus master, status: tens, not hundreds */
}

int main(void)
{
	int ret = boot_test_init("IDETEST", &idetest_path);
	if (ret)
		return ret;
	if (test_run(NULL, 0, "command -v qemu-img >/dev/null") != 0) {
		printf("skipped: qemu-img (qemu-utils) is not installed\n");
		return TEST_SKIP;
	}
	static const struct format raw = { "raw", "raw" }, vhd = { "vhd", "vpc" },
				   vhdx = { "vhdx", "vhdx" };
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_prestate(test_all_steps, (void *)&raw),
		cmocka_unit_test_prestate(test_all_steps, (void *)&vhd),
		cmocka_unit_test_prestate(test_all_steps, (void *)&vhdx),
		cmocka_unit_test(test_steps_past_lba28),
		cmocka_unit_test(test_wrong_capacity_fails),
		cmocka_unit_test(test_exits_per_io),
	};
	return cmocka_run_group_tests(tests, NULL, test_teardown_tmpdir);
}
