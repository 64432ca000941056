/* The VHDX metadata log (vhdx/vhdx_log.c): entry building, the circular writer, replay.
 *
 * Entries are built with vhdx_log_entry_build, written into the log region of a plain file
 * (no VHDX structures are needed for the log itself) and replayed with vhdx_log_replay.
 * Where the format itself is under test the bytes are checked field by field against
 * MS-VHDX 2.3 with the offsets written out here, independently of vhdx_log.c. Hostile logs
 * are made by patching built entries and resealing their CRC-32C.
 *
 * The independent oracle is QEMU (qemu-img/qemu-io, skipped when absent): QEMU replays a
 * log we wrote into a qemu-img image (qemu-img check -r all) and we replay the same copy;
 * the files must agree outside the headers, and the guest view must show the logged data.
 * The other way round, QEMU is made to leave a dirty log behind (blkdebug fails the
 * in-place BAT write after the log entry is durable) and we replay what QEMU wrote.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <fcntl.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "crc32c.h"
#include "endian.h"
#include "file.h"
#include "guid.h"
#include "test_util.h"
#include "vhdx_log.h"

#define KiB	    1024ull
#define MiB	    (1024ull * KiB)
#define GiB	    (1024ull * MiB)
#define SECTOR	    4096u
#define LOG_OFF	    (1 * MiB)
#define LOG_LEN	    (1 * MiB)
#define LOG_SECTORS (LOG_LEN / SECTOR)
#define FILE_SIZE   (8 * MiB)
#define SEED	    7 /* the pattern the test files start with */
#define SEQ0	    UINT64_C(100)

/* MS-VHDX 2.3.1: entry header, descriptors, data sector */
#define EH_CHECKSUM	4
#define EH_ENTRY_LENGTH 8
#define EH_TAIL		12
#define EH_SEQUENCE	16
#define EH_DESC_COUNT	24
#define EH_LOG_GUID	32
#define EH_FLUSHED	48
#define EH_LAST		56
#define D_TRAILING	4
#define D_LEADING	8
#define D_ZERO_LENGTH	8
#define D_FILE_OFFSET	16
#define D_SEQUENCE	24

/* ---- fixture: a plain file with a 1 MiB log at 1 MiB ---- */

struct fx {
	char path[600];
	struct vdisk_file *file;
	struct vhdx_log_writer w;
	struct guid guid;
	char err[512];
};

static const struct guid GUID_A = { { 0x8e, 0x3d, 0x54, 0x1a, 0x77, 0x02, 0x4c, 0x41, 0x9b, 0x10,
				      0x22, 0x33, 0x44, 0x55, 0x66, 0x77 } };
static const struct guid GUID_B = { { 0x8e, 0x3d, 0x54, 0x1a, 0x77, 0x02, 0x4c, 0x41, 0x9b, 0x10,
				      0x22, 0x33, 0x44, 0x55, 0x66, 0x78 } };

static void fx_open_file(struct fx *f)
{
	int ret = vdisk_file_open(f->path, false, VDISK_CACHE_WRITEBACK, true, &f->file, f->err,
				  sizeof(f->err));
	if (ret)
		fail_msg("open %s: %d %s", f->path, ret, f->err);
}

static void fx_open(struct fx *f, const char *name)
{
	memset(f, 0, sizeof(*f));
	snprintf(f->path, sizeof(f->path), "%s", test_path(name));
	test_write_file(f->path, FILE_SIZE, SEED);
	fx_open_file(f);
	f->guid = GUID_A;
	vhdx_log_writer_init(&f->w, LOG_OFF, LOG_LEN, &f->guid, SEQ0);
}

static void fx_close(struct fx *f)
{
	vdisk_file_close(f->file);
	f->file = NULL;
	unlink(f->path);
}

/* Reopens the file so that file->size is what is on disk again. */
static void fx_reopen(struct fx *f)
{
	vdisk_file_close(f->file);
	fx_open_file(f);
}

static void read_at(struct fx *f, uint64_t off, void *buf, size_t len)
{
	assert_int_equal(vdisk_file_pread(f->file, buf, len, off), 0);
}

static void write_at(struct fx *f, uint64_t off, const void *buf, size_t len)
{
	assert_int_equal(vdisk_file_pwrite(f->file, buf, len, off), 0);
}

static uint8_t *snapshot(struct fx *f)
{
	uint8_t *buf = malloc(f->file->size);
	assert_non_null(buf);
	read_at(f, 0, buf, f->file->size);
	return buf;
}

static void expect_unchanged(struct fx *f, const uint8_t *before, uint64_t size)
{
	uint8_t *now = snapshot(f);
	assert_int_equal(f->file->size, size);
	assert_memory_equal(now, before, size);
	free(now);
}

static void sector_data(uint8_t *buf, uint32_t seed)
{
	test_fill_pattern(buf, SECTOR, 0, seed);
}

static void expect_sector(struct fx *f, uint64_t off, const uint8_t *want)
{
	uint8_t got[SECTOR];
	read_at(f, off, got, SECTOR);
	assert_memory_equal(got, want, SECTOR);
}

static void expect_original(struct fx *f, uint64_t off, size_t len)
{
	uint8_t *got = malloc(len), *want = malloc(len);
	assert_non_null(got);
	assert_non_null(want);
	read_at(f, off, got, len);
	test_fill_pattern(want, len, off, SEED);
	assert_memory_equal(got, want, len);
	free(got);
	free(want);
}

static void expect_zero(struct fx *f, uint64_t off, size_t len)
{
	uint8_t *got = malloc(len), *zero = calloc(1, len);
	assert_non_null(got);
	assert_non_null(zero);
	read_at(f, off, got, len);
	assert_memory_equal(got, zero, len);
	free(got);
	free(zero);
}

static struct vhdx_log_update data_update(uint64_t off, const uint8_t *data)
{
	return (struct vhdx_log_update){ .file_offset = off, .data = data };
}

static struct vhdx_log_update zero_update(uint64_t off, uint64_t len)
{
	return (struct vhdx_log_update){ .file_offset = off, .zero_length = len };
}

/* Builds the next entry and writes its pieces into the log; returns its log offset. */
static uint32_t put_entry_sizes(struct fx *f, const struct vhdx_log_update *u, unsigned n,
				uint64_t flushed, uint64_t last)
{
	uint32_t start = f->w.head, len = 0;
	uint8_t *buf = NULL;
	struct vhdx_log_piece p[2];
	unsigned np = 0;
	int ret = vhdx_log_entry_build(&f->w, u, n, flushed, last, &buf, &len, p, &np);
	if (ret)
		fail_msg("vhdx_log_entry_build: %d", ret);
	assert_int_equal(len, vhdx_log_entry_size(u, n));
	for (unsigned i = 0; i < np; i++)
		write_at(f, p[i].file_offset, buf + p[i].buf_offset, p[i].length);
	free(buf);
	return start;
}

static uint32_t put_entry(struct fx *f, const struct vhdx_log_update *u, unsigned n)
{
	return put_entry_sizes(f, u, n, FILE_SIZE, FILE_SIZE);
}

static int replay(struct fx *f, bool apply, struct vhdx_log_replay_result *r)
{
	f->err[0] = 0;
	return vhdx_log_replay(f->file, LOG_OFF, f->w.log_length, &f->guid, apply, r, f->err,
			       sizeof(f->err));
}

static void replay_ok(struct fx *f, struct vhdx_log_replay_result *r)
{
	int ret = replay(f, true, r);
	if (ret)
		fail_msg("vhdx_log_replay: %d %s", ret, f->err);
}

/* Replay must refuse with -EINVAL, a message containing want, and leave the file as it
 * was. */
static void replay_refused(struct fx *f, const char *want)
{
	uint64_t size = f->file->size;
	uint8_t *before = snapshot(f);
	struct vhdx_log_replay_result r;
	assert_int_equal(replay(f, true, &r), -EINVAL);
	if (!strstr(f->err, want))
		fail_msg("message '%s' lacks '%s'", f->err, want);
	expect_unchanged(f, before, size);
	free(before);
}

/* Replay must find no valid entry and write nothing. */
static void replay_finds_nothing(struct fx *f)
{
	uint64_t size = f->file->size;
	uint8_t *before = snapshot(f);
	struct vhdx_log_replay_result r;
	int ret = replay(f, true, &r);
	if (ret)
		fail_msg("vhdx_log_replay: %d %s", ret, f->err);
	assert_int_equal(r.entries, 0);
	assert_int_equal(r.sequence, 0);
	expect_unchanged(f, before, size);
	free(before);
}

/* ---- patching entries (non-wrapping ones) ---- */

static uint8_t *read_entry(struct fx *f, uint32_t log_off, uint32_t *len)
{
	uint8_t h[64];
	read_at(f, LOG_OFF + log_off, h, sizeof(h));
	*len = load_le32(h + EH_ENTRY_LENGTH);
	assert_true(*len && *len <= LOG_LEN - log_off);
	uint8_t *buf = malloc(*len);
	assert_non_null(buf);
	read_at(f, LOG_OFF + log_off, buf, *len);
	return buf;
}

static void reseal(uint8_t *entry, uint32_t len)
{
	store_le32(entry + EH_CHECKSUM, 0);
	store_le32(entry + EH_CHECKSUM, crc32c(0, entry, len));
}

static void write_entry(struct fx *f, uint32_t log_off, uint8_t *entry, uint32_t len, bool seal)
{
	if (seal)
		reseal(entry, len);
	write_at(f, LOG_OFF + log_off, entry, len);
	free(entry);
}

/* ---- the format, byte by byte ---- */

/* One data update and one zero update: header, descriptors and the data sector as MS-VHDX
 * 2.3.1 lays them out, and the checksum as an independent CRC-32C of the entry. */
static void test_entry_layout(void **state)
{
	(void)state;
	struct fx f;
	fx_open(&f, "layout");
	uint8_t data[SECTOR];
	sector_data(data, 1);
	struct vhdx_log_update u[2] = { data_update(2 * MiB, data), zero_update(3 * MiB, 8 * KiB) };
	assert_int_equal(vhdx_log_entry_size(u, 2), 2 * SECTOR);

	uint8_t *e = NULL;
	uint32_t len = 0;
	struct vhdx_log_piece p[2];
	unsigned np = 0;
	assert_int_equal(vhdx_log_entry_build(&f.w, u, 2, 5 * MiB, 6 * MiB, &e, &len, p, &np), 0);
	assert_int_equal(len, 2 * SECTOR);
	assert_int_equal(np, 1);
	assert_int_equal(p[0].file_offset, LOG_OFF);
	assert_int_equal(p[0].length, len);
	assert_int_equal(p[0].buf_offset, 0);
	assert_int_equal(f.w.head, 2 * SECTOR);
	assert_int_equal(f.w.sequence, SEQ0 + 1);

	assert_memory_equal(e, "loge", 4);
	assert_int_equal(load_le32(e + EH_ENTRY_LENGTH), 2 * SECTOR);
	assert_int_equal(load_le32(e + EH_TAIL), 0);
	assert_int_equal(load_le64(e + EH_SEQUENCE), SEQ0);
	assert_int_equal(load_le32(e + EH_DESC_COUNT), 2);
	assert_int_equal(load_le32(e + 28), 0);
	assert_memory_equal(e + EH_LOG_GUID, GUID_A.bytes, 16);
	assert_int_equal(load_le64(e + EH_FLUSHED), 5 * MiB);
	assert_int_equal(load_le64(e + EH_LAST), 6 * MiB);

	const uint8_t *d = e + 64;
	assert_memory_equal(d, "desc", 4);
	assert_memory_equal(d + D_TRAILING, data + SECTOR - 4, 4);
	assert_memory_equal(d + D_LEADING, data, 8);
	assert_int_equal(load_le64(d + D_FILE_OFFSET), 2 * MiB);
	assert_int_equal(load_le64(d + D_SEQUENCE), SEQ0);
	d += 32;
	assert_memory_equal(d, "zero", 4);
	assert_int_equal(load_le32(d + 4), 0);
	assert_int_equal(load_le64(d + D_ZERO_LENGTH), 8 * KiB);
	assert_int_equal(load_le64(d + D_FILE_OFFSET), 3 * MiB);
	assert_int_equal(load_le64(d + D_SEQUENCE), SEQ0);
	for (size_t i = 128; i < SECTOR; i++)
		assert_int_equal(e[i], 0);

	const uint8_t *s = e + SECTOR;
	assert_memory_equal(s, "data", 4);
	assert_int_equal(load_le32(s + 4), (uint32_t)(SEQ0 >> 32));
	assert_memory_equal(s + 8, data + 8, 4084);
	assert_int_equal(load_le32(s + 4092), (uint32_t)SEQ0);

	uint32_t stored = load_le32(e + EH_CHECKSUM);
	store_le32(e + EH_CHECKSUM, 0);
	assert_int_equal(crc32c_sw(0, e, len), stored);
	free(e);

	/* the descriptor area grows by a sector after 126 descriptors */
	struct vhdx_log_update z[127];
	for (unsigned i = 0; i < 127; i++)
		z[i] = zero_update(2 * MiB + i * SECTOR, SECTOR);
	assert_int_equal(vhdx_log_entry_size(z, 126), SECTOR);
	assert_int_equal(vhdx_log_entry_size(z, 127), 2 * SECTOR);
	assert_int_equal(vhdx_log_entry_size(NULL, 0), SECTOR);
	fx_close(&f);
}

/* ---- replay ---- */

static void test_single_entry(void **state)
{
	(void)state;
	struct fx f;
	fx_open(&f, "single");
	uint8_t a[SECTOR], b[SECTOR];
	sector_data(a, 1);
	sector_data(b, 2);
	struct vhdx_log_update u[2] = { data_update(2 * MiB, a), data_update(3 * MiB + SECTOR, b) };
	put_entry(&f, u, 2);

	/* apply = false: found, nothing written */
	uint8_t *before = snapshot(&f);
	struct vhdx_log_replay_result r;
	assert_int_equal(replay(&f, false, &r), 0);
	assert_int_equal(r.entries, 1);
	assert_int_equal(r.sequence, SEQ0);
	assert_int_equal(r.descriptors, 2);
	assert_int_equal(r.last_file_offset, FILE_SIZE);
	expect_unchanged(&f, before, FILE_SIZE);
	free(before);

	replay_ok(&f, &r);
	assert_int_equal(r.entries, 1);
	assert_int_equal(r.sequence, SEQ0);
	expect_sector(&f, 2 * MiB, a);
	expect_sector(&f, 3 * MiB + SECTOR, b);
	expect_original(&f, 2 * MiB + SECTOR, 1 * MiB);
	expect_original(&f, 3 * MiB + 2 * SECTOR, SECTOR);

	/* a result pointer is optional; replaying twice gives the same file */
	assert_int_equal(vhdx_log_replay(f.file, LOG_OFF, LOG_LEN, &f.guid, true, NULL, NULL, 0),
			 0);
	expect_sector(&f, 2 * MiB, a);
	fx_close(&f);
}

static void test_empty_log(void **state)
{
	(void)state;
	struct fx f;
	fx_open(&f, "empty");
	/* the log region holds the test pattern: no entry */
	replay_finds_nothing(&f);
	uint8_t zero[64 * KiB] = { 0 };
	for (uint64_t off = 0; off < LOG_LEN; off += sizeof(zero))
		write_at(&f, LOG_OFF + off, zero, sizeof(zero));
	replay_finds_nothing(&f);

	/* a zero LogGuid means no log, whatever the region holds */
	uint8_t a[SECTOR];
	sector_data(a, 1);
	struct vhdx_log_update u = data_update(2 * MiB, a);
	put_entry(&f, &u, 1);
	static const struct guid zero_guid;
	struct vhdx_log_replay_result r;
	assert_int_equal(vhdx_log_replay(f.file, LOG_OFF, LOG_LEN, &zero_guid, true, &r, f.err,
					 sizeof(f.err)),
			 0);
	assert_int_equal(r.entries, 0);
	expect_original(&f, 2 * MiB, SECTOR);
	fx_close(&f);
}

static void test_zero_descriptors(void **state)
{
	(void)state;
	struct fx f;
	fx_open(&f, "zero");
	uint8_t a[SECTOR];
	sector_data(a, 3);
	struct vhdx_log_update u[3] = { zero_update(4 * MiB, 16 * KiB), data_update(5 * MiB, a),
					zero_update(5 * MiB + 8 * KiB, SECTOR) };
	/* zero updates take no data sector */
	assert_int_equal(vhdx_log_entry_size(u, 3), 2 * SECTOR);
	put_entry(&f, u, 3);
	struct vhdx_log_replay_result r;
	replay_ok(&f, &r);
	assert_int_equal(r.descriptors, 3);
	expect_original(&f, 4 * MiB - SECTOR, SECTOR);
	expect_zero(&f, 4 * MiB, 16 * KiB);
	expect_original(&f, 4 * MiB + 16 * KiB, SECTOR);
	expect_sector(&f, 5 * MiB, a);
	expect_original(&f, 5 * MiB + SECTOR, SECTOR);
	expect_zero(&f, 5 * MiB + 8 * KiB, SECTOR);

	/* a data update after a zero update of the same sector wins, and the reverse */
	uint8_t b[SECTOR];
	sector_data(b, 4);
	struct vhdx_log_update v[4] = { zero_update(6 * MiB, 8 * KiB), data_update(6 * MiB, b),
					data_update(6 * MiB + 8 * KiB, b),
					zero_update(6 * MiB + 8 * KiB, SECTOR) };
	vhdx_log_set_tail(&f.w, f.w.head);
	put_entry(&f, v, 4);
	replay_ok(&f, &r);
	assert_int_equal(r.entries, 1);
	expect_sector(&f, 6 * MiB, b);
	expect_zero(&f, 6 * MiB + SECTOR, SECTOR);
	expect_zero(&f, 6 * MiB + 8 * KiB, SECTOR);
	fx_close(&f);
}

/* Several entries of one sequence write the same sector: the last one wins. */
static void test_last_entry_wins(void **state)
{
	(void)state;
	struct fx f;
	fx_open(&f, "lastwins");
	uint8_t d[3][SECTOR], other[SECTOR];
	sector_data(other, 99);
	for (unsigned i = 0; i < 3; i++) {
		sector_data(d[i], 10 + i);
		struct vhdx_log_update u[2] = { data_update(2 * MiB, d[i]),
						data_update(3 * MiB + i * SECTOR, other) };
		put_entry(&f, u, 2);
	}
	struct vhdx_log_replay_result r;
	replay_ok(&f, &r);
	assert_int_equal(r.entries, 3);
	assert_int_equal(r.sequence, SEQ0 + 2);
	assert_int_equal(r.descriptors, 6);
	expect_sector(&f, 2 * MiB, d[2]);
	for (unsigned i = 0; i < 3; i++)
		expect_sector(&f, 3 * MiB + i * SECTOR, other);
	fx_close(&f);
}

/* Moves the writer's head to log offset at by writing one-sector (empty) entries that are
 * declared applied at once. */
static void advance_head(struct fx *f, uint32_t at)
{
	while (f->w.head != at) {
		put_entry(f, NULL, 0);
		vhdx_log_set_tail(&f->w, f->w.head);
	}
}

static void test_wraparound(void **state)
{
	(void)state;
	struct fx f;
	fx_open(&f, "wrap");
	/* an early entry, applied and released: it must never be replayed */
	uint8_t early[SECTOR];
	sector_data(early, 20);
	struct vhdx_log_update eu = data_update(7 * MiB, early);
	put_entry(&f, &eu, 1);
	vhdx_log_set_tail(&f.w, f.w.head);
	advance_head(&f, LOG_LEN - 6 * SECTOR);

	/* 9 data sectors + 1 descriptor sector from sector 250: 6 at the end, 4 at the start */
	uint8_t d[9][SECTOR];
	struct vhdx_log_update u[9];
	for (unsigned i = 0; i < 9; i++) {
		sector_data(d[i], 30 + i);
		u[i] = data_update(2 * MiB + i * SECTOR, d[i]);
	}
	uint8_t *buf = NULL;
	uint32_t len = 0;
	struct vhdx_log_piece p[2];
	unsigned np = 0;
	assert_int_equal(vhdx_log_entry_build(&f.w, u, 9, FILE_SIZE, FILE_SIZE, &buf, &len, p, &np),
			 0);
	assert_int_equal(len, 10 * SECTOR);
	assert_int_equal(np, 2);
	assert_int_equal(p[0].file_offset, LOG_OFF + LOG_LEN - 6 * SECTOR);
	assert_int_equal(p[0].length, 6 * SECTOR);
	assert_int_equal(p[0].buf_offset, 0);
	assert_int_equal(p[1].file_offset, LOG_OFF);
	assert_int_equal(p[1].length, 4 * SECTOR);
	assert_int_equal(p[1].buf_offset, 6 * SECTOR);
	assert_int_equal(f.w.head, 4 * SECTOR);
	for (unsigned i = 0; i < np; i++)
		write_at(&f, p[i].file_offset, buf + p[i].buf_offset, p[i].length);
	free(buf);

	/* a second entry after the wrap, the tail still at the first one */
	uint8_t last[SECTOR];
	sector_data(last, 40);
	struct vhdx_log_update lu = data_update(2 * MiB, last);
	put_entry(&f, &lu, 1);

	struct vhdx_log_replay_result r;
	replay_ok(&f, &r);
	assert_int_equal(r.entries, 2);
	assert_int_equal(r.descriptors, 10);
	expect_sector(&f, 2 * MiB, last);
	for (unsigned i = 1; i < 9; i++)
		expect_sector(&f, 2 * MiB + i * SECTOR, d[i]);
	expect_original(&f, 7 * MiB, SECTOR);
	fx_close(&f);
}

/* The header in the last sector of the log, its descriptors and data after the wrap; and a
 * descriptor area that itself wraps (130 descriptors: two sectors). */
static void test_wrap_in_descriptors(void **state)
{
	(void)state;
	struct fx f;
	fx_open(&f, "wrapdesc");
	advance_head(&f, LOG_LEN - SECTOR);
	uint8_t a[SECTOR];
	sector_data(a, 50);
	struct vhdx_log_update u[131];
	for (unsigned i = 0; i < 130; i++)
		u[i] = zero_update(3 * MiB + 2 * i * SECTOR, SECTOR);
	u[130] = data_update(6 * MiB, a);
	assert_int_equal(vhdx_log_entry_size(u, 131), 3 * SECTOR);
	put_entry(&f, u, 131);
	assert_int_equal(f.w.head, 2 * SECTOR);
	struct vhdx_log_replay_result r;
	replay_ok(&f, &r);
	assert_int_equal(r.entries, 1);
	assert_int_equal(r.descriptors, 131);
	for (unsigned i = 0; i < 130; i++) {
		expect_zero(&f, 3 * MiB + 2 * i * SECTOR, SECTOR);
		expect_original(&f, 3 * MiB + (2 * i + 1) * SECTOR, SECTOR);
	}
	expect_sector(&f, 6 * MiB, a);
	fx_close(&f);
}

/* Three entries of one sequence; the third is torn in different ways: replay applies the
 * first two. */
static void torn_case(unsigned how)
{
	struct fx f;
	fx_open(&f, "torn");
	uint8_t d[3][SECTOR];
	uint32_t start[3];
	for (unsigned i = 0; i < 3; i++) {
		sector_data(d[i], 60 + i);
		struct vhdx_log_update u[2] = { data_update(2 * MiB, d[i]),
						data_update(4 * MiB + i * SECTOR, d[i]) };
		start[i] = put_entry(&f, u, 2);
	}
	uint32_t len;
	uint8_t *e = read_entry(&f, start[2], &len);
	switch (how) {
	case 0: /* a bit flipped in the data sector */
		e[SECTOR + 100] ^= 1;
		break;
	case 1: /* the last data sector never reached the disk: old content there */
		test_fill_pattern(e + len - SECTOR, SECTOR, LOG_OFF + start[2] + len - SECTOR,
				  SEED);
		break;
	case 2: /* only the header sector reached the disk */
		test_fill_pattern(e + SECTOR, len - SECTOR, LOG_OFF + start[2] + SECTOR, SEED);
		break;
	case 3: /* a data sector of an older entry there (sequence number mismatch) */
		memcpy(e + 2 * SECTOR, "data", 4);
		store_le32(e + 2 * SECTOR + 4092, SEQ0);
		break;
	}
	write_entry(&f, start[2], e, len, how == 3);
	struct vhdx_log_replay_result r;
	replay_ok(&f, &r);
	assert_int_equal(r.entries, 2);
	assert_int_equal(r.sequence, SEQ0 + 1);
	expect_sector(&f, 2 * MiB, d[1]);
	expect_sector(&f, 4 * MiB, d[0]);
	expect_sector(&f, 4 * MiB + SECTOR, d[1]);
	expect_original(&f, 4 * MiB + 2 * SECTOR, SECTOR);
	fx_close(&f);
}

static void test_torn_last_entry(void **state)
{
	(void)state;
	for (unsigned how = 0; how < 4; how++)
		torn_case(how);
}

/* A torn entry in the middle: the entry after it cannot reach its tail, so only the
 * sequence before the torn entry is replayed. */
static void test_torn_middle_entry(void **state)
{
	(void)state;
	struct fx f;
	fx_open(&f, "tornmid");
	uint8_t d[3][SECTOR];
	uint32_t start[3];
	for (unsigned i = 0; i < 3; i++) {
		sector_data(d[i], 70 + i);
		struct vhdx_log_update u = data_update(2 * MiB + i * SECTOR, d[i]);
		start[i] = put_entry(&f, &u, 1);
	}
	uint32_t len;
	uint8_t *e = read_entry(&f, start[1], &len);
	e[SECTOR + 5] ^= 0x40;
	write_entry(&f, start[1], e, len, false);
	struct vhdx_log_replay_result r;
	replay_ok(&f, &r);
	assert_int_equal(r.entries, 1);
	assert_int_equal(r.sequence, SEQ0);
	expect_sector(&f, 2 * MiB, d[0]);
	expect_original(&f, 2 * MiB + SECTOR, 2 * SECTOR);
	fx_close(&f);
}

/* A Tail must name an entry at or before its own in the chain: an entry whose Tail names a
 * later entry, or a sector where no entry starts, heads no valid sequence. */
static void test_tail_must_precede_head(void **state)
{
	(void)state;
	struct fx f;
	fx_open(&f, "tailorder");
	uint8_t d[3][SECTOR];
	uint32_t start[3];
	for (unsigned i = 0; i < 3; i++) {
		sector_data(d[i], 75 + i);
		struct vhdx_log_update u = data_update(2 * MiB + i * SECTOR, d[i]);
		start[i] = put_entry(&f, &u, 1);
	}
	uint32_t len;
	uint8_t *e = read_entry(&f, start[1], &len);
	store_le32(e + EH_TAIL, start[2]);
	write_entry(&f, start[1], e, len, true);
	e = read_entry(&f, start[2], &len);
	store_le32(e + EH_TAIL, start[0] + SECTOR); /* A's data sector */
	write_entry(&f, start[2], e, len, true);
	struct vhdx_log_replay_result r;
	replay_ok(&f, &r);
	assert_int_equal(r.entries, 1);
	assert_int_equal(r.sequence, SEQ0);
	expect_sector(&f, 2 * MiB, d[0]);
	expect_original(&f, 2 * MiB + SECTOR, 2 * SECTOR);
	fx_close(&f);
}

static void test_bad_crc(void **state)
{
	(void)state;
	struct fx f;
	fx_open(&f, "crc");
	uint8_t a[SECTOR];
	sector_data(a, 80);
	struct vhdx_log_update u = data_update(2 * MiB, a);
	uint32_t start = put_entry(&f, &u, 1);
	uint32_t len;
	/* the leading bytes live in the descriptor: a change there is caught by the CRC */
	uint8_t *e = read_entry(&f, start, &len);
	e[64 + D_LEADING] ^= 0xff;
	write_entry(&f, start, e, len, false);
	replay_finds_nothing(&f);
	/* and a wrong checksum with everything else intact */
	e = read_entry(&f, start, &len);
	e[64 + D_LEADING] ^= 0xff;
	reseal(e, len);
	store_le32(e + EH_CHECKSUM, load_le32(e + EH_CHECKSUM) + 1);
	write_entry(&f, start, e, len, false);
	replay_finds_nothing(&f);
	fx_close(&f);
}

static void test_wrong_guid(void **state)
{
	(void)state;
	struct fx f;
	fx_open(&f, "guid");
	uint8_t a[SECTOR];
	sector_data(a, 81);
	struct vhdx_log_update u = data_update(2 * MiB, a);
	put_entry(&f, &u, 1);
	f.guid = GUID_B; /* the header names another log */
	replay_finds_nothing(&f);

	/* entries of another log GUID end a sequence */
	f.guid = GUID_A;
	vhdx_log_writer_init(&f.w, LOG_OFF, LOG_LEN, &GUID_A, SEQ0);
	put_entry(&f, &u, 1);
	struct vhdx_log_writer other = f.w;
	other.log_guid = GUID_B;
	struct vhdx_log_writer mine = f.w;
	f.w = other;
	uint8_t b[SECTOR];
	sector_data(b, 82);
	struct vhdx_log_update v = data_update(2 * MiB, b);
	put_entry(&f, &v, 1);
	f.w = mine;
	struct vhdx_log_replay_result r;
	replay_ok(&f, &r);
	assert_int_equal(r.entries, 1);
	expect_sector(&f, 2 * MiB, a);
	fx_close(&f);
}

/* The writer refuses targets that replay would refuse. */
static void test_build_refusals(void **state)
{
	(void)state;
	struct fx f;
	fx_open(&f, "buildref");
	uint8_t a[SECTOR] = { 0 };
	struct vhdx_log_update bad[] = {
		data_update(64 * KiB, a),		       /* header area */
		data_update(1 * MiB - SECTOR, a),	       /* last sector of it */
		data_update(LOG_OFF, a),		       /* the log */
		data_update(LOG_OFF + LOG_LEN - SECTOR, a),    /* its last sector */
		zero_update(LOG_OFF - 4 * SECTOR, 8 * SECTOR), /* across the log start */
		data_update(2 * MiB + 512, a),		       /* unaligned */
		zero_update(2 * MiB, 512),		       /* unaligned length */
		zero_update(2 * MiB, 0),		       /* nothing to do */
		data_update(FILE_SIZE, a),		       /* beyond LastFileOffset */
		zero_update(FILE_SIZE - SECTOR, 2 * SECTOR),   /* ends beyond it */
		zero_update(2 * MiB, UINT64_MAX - SECTOR + 1), /* overflows */
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		uint8_t *buf = (uint8_t *)1;
		uint32_t len = 1;
		struct vhdx_log_piece p[2];
		unsigned np = 1;
		int ret = vhdx_log_entry_build(&f.w, &bad[i], 1, FILE_SIZE, FILE_SIZE, &buf, &len,
					       p, &np);
		if (ret != -EINVAL)
			fail_msg("update %zu: %d", i, ret);
		assert_null(buf);
		assert_int_equal(len, 0);
		assert_int_equal(np, 0);
	}
	assert_int_equal(f.w.head, 0);
	assert_int_equal(f.w.sequence, SEQ0);

	/* a writer with a bad log geometry, or a wrapped sequence number */
	uint8_t *buf;
	uint32_t len;
	struct vhdx_log_piece p[2];
	unsigned np;
	struct vhdx_log_update ok = data_update(2 * MiB, a);
	struct vhdx_log_writer w;
	vhdx_log_writer_init(&w, LOG_OFF + 4096, LOG_LEN, &GUID_A, 1);
	assert_int_equal(vhdx_log_entry_build(&w, &ok, 1, FILE_SIZE, FILE_SIZE, &buf, &len, p, &np),
			 -EINVAL);
	vhdx_log_writer_init(&w, LOG_OFF, LOG_LEN + 4096, &GUID_A, 1);
	assert_int_equal(vhdx_log_entry_build(&w, &ok, 1, FILE_SIZE, FILE_SIZE, &buf, &len, p, &np),
			 -EINVAL);
	vhdx_log_writer_init(&w, LOG_OFF, LOG_LEN, &GUID_A, 0);
	assert_int_equal(w.sequence, 1);
	w.sequence = UINT64_MAX;
	assert_int_equal(vhdx_log_entry_build(&w, &ok, 1, FILE_SIZE, FILE_SIZE, &buf, &len, p, &np),
			 0);
	free(buf);
	assert_int_equal(vhdx_log_entry_build(&w, &ok, 1, FILE_SIZE, FILE_SIZE, &buf, &len, p, &np),
			 -EOVERFLOW);
	fx_close(&f);
}

/* A built entry with one descriptor field changed and the CRC resealed: structurally
 * valid, so replay must refuse it with a clear reason instead of writing. */
static void refuse_patched(uint64_t desc_off, uint64_t zero_len, bool zero, uint64_t last,
			   const char *want)
{
	struct fx f;
	fx_open(&f, "patched");
	uint8_t a[SECTOR];
	sector_data(a, 90);
	struct vhdx_log_update u = zero ? zero_update(2 * MiB, SECTOR) : data_update(2 * MiB, a);
	uint32_t start = put_entry(&f, &u, 1);
	uint32_t len;
	uint8_t *e = read_entry(&f, start, &len);
	store_le64(e + 64 + D_FILE_OFFSET, desc_off);
	if (zero)
		store_le64(e + 64 + D_ZERO_LENGTH, zero_len);
	store_le64(e + EH_LAST, last);
	write_entry(&f, start, e, len, true);
	replay_refused(&f, want);
	fx_close(&f);
}

static void test_forbidden_targets(void **state)
{
	(void)state;
	refuse_patched(0, 0, false, FILE_SIZE, "header area");
	refuse_patched(128 * KiB, 0, false, FILE_SIZE, "header area");
	refuse_patched(1 * MiB - SECTOR, 0, false, FILE_SIZE, "header area");
	refuse_patched(512 * KiB, 1 * MiB, true, FILE_SIZE, "header area");
	refuse_patched(LOG_OFF, 0, false, FILE_SIZE, "inside the log");
	refuse_patched(LOG_OFF + LOG_LEN - SECTOR, 0, false, FILE_SIZE, "inside the log");
	refuse_patched(LOG_OFF + LOG_LEN - SECTOR, 2 * SECTOR, true, FILE_SIZE, "inside the log");
	refuse_patched(2 * MiB + 8, 0, false, FILE_SIZE, "aligned");
	refuse_patched(2 * MiB, UINT64_MAX - SECTOR + 1, true, FILE_SIZE, "overflows");
	refuse_patched(FILE_SIZE, 0, false, FILE_SIZE, "LastFileOffset");
	refuse_patched(2 * MiB, FILE_SIZE, true, FILE_SIZE, "LastFileOffset");
	refuse_patched(2 * MiB, 32 * GiB, true, 64 * GiB, "zero more than");
	refuse_patched(2 * MiB, 0, false, UINT64_MAX, "file size");

	/* a LastFileOffset below the target but a file long enough: accepted */
	struct fx f;
	fx_open(&f, "lowlast");
	uint8_t a[SECTOR];
	sector_data(a, 89);
	struct vhdx_log_update u = data_update(6 * MiB, a);
	uint32_t start = put_entry(&f, &u, 1);
	uint32_t len;
	uint8_t *e = read_entry(&f, start, &len);
	store_le64(e + EH_LAST, 4 * MiB);
	write_entry(&f, start, e, len, true);
	struct vhdx_log_replay_result r;
	replay_ok(&f, &r);
	assert_int_equal(r.entries, 1);
	expect_sector(&f, 6 * MiB, a);
	assert_int_equal(f.file->size, FILE_SIZE);
	fx_close(&f);
}

/* Fields that make an entry invalid, resealed so that only the field is wrong: the entry
 * is not replayed (it is not an error: a torn or foreign entry looks the same), and
 * nothing crashes or reads outside the log. */
static void ignore_patched(size_t field, unsigned width, uint64_t value)
{
	struct fx f;
	fx_open(&f, "absurd");
	uint8_t a[SECTOR];
	sector_data(a, 91);
	struct vhdx_log_update u[2] = { data_update(2 * MiB, a), zero_update(3 * MiB, SECTOR) };
	uint32_t start = put_entry(&f, u, 2);
	uint32_t len;
	uint8_t *e = read_entry(&f, start, &len);
	if (width == 4)
		store_le32(e + field, (uint32_t)value);
	else
		store_le64(e + field, value);
	write_entry(&f, start, e, len, true);
	replay_finds_nothing(&f);
	fx_close(&f);
}

static void test_absurd_fields(void **state)
{
	(void)state;
	const struct {
		size_t field;
		unsigned width;
		uint64_t value;
	} cases[] = {
		{ EH_ENTRY_LENGTH, 4, 0 },
		{ EH_ENTRY_LENGTH, 4, SECTOR },	    /* shorter than its descriptors say */
		{ EH_ENTRY_LENGTH, 4, 3 * SECTOR }, /* longer than its descriptors say */
		{ EH_ENTRY_LENGTH, 4, 2 * SECTOR + 1 },
		{ EH_ENTRY_LENGTH, 4, LOG_LEN + SECTOR },
		{ EH_ENTRY_LENGTH, 4, UINT32_MAX },
		{ EH_TAIL, 4, 100 },
		{ EH_TAIL, 4, LOG_LEN },
		{ EH_TAIL, 4, UINT32_MAX - 4095 },
		{ EH_TAIL, 4, SECTOR }, /* inside the entry: no entry starts there */
		{ EH_SEQUENCE, 8, 0 },
		{ EH_DESC_COUNT, 4, 0 },
		{ EH_DESC_COUNT, 4, 3 },
		{ EH_DESC_COUNT, 4, 127 },
		{ EH_DESC_COUNT, 4, UINT32_MAX },
		{ 0, 4, 0x65676f6d },		  /* "moge" */
		{ 64, 4, 0x61746164 },		  /* a descriptor signed "data" */
		{ 64 + D_SEQUENCE, 8, SEQ0 + 1 }, /* a descriptor of another entry */
		{ 96 + D_ZERO_LENGTH, 8, 100 },	  /* a zero length that is not whole sectors */
		{ SECTOR, 4, 0x61746165 },	  /* the data sector's signature */
		{ SECTOR + 4, 4, 1 },		  /* its SequenceHigh */
		{ SECTOR + 4092, 4, SEQ0 + 1 },	  /* its SequenceLow */
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++)
		ignore_patched(cases[i].field, cases[i].width, cases[i].value);
}

static void test_log_region_checks(void **state)
{
	(void)state;
	struct fx f;
	fx_open(&f, "region");
	uint8_t a[SECTOR];
	sector_data(a, 92);
	struct vhdx_log_update u = data_update(2 * MiB, a);
	put_entry(&f, &u, 1);
	struct vhdx_log_replay_result r;
	const struct {
		uint64_t off;
		uint32_t len;
	} bad[] = {
		{ LOG_OFF, 0 },
		{ LOG_OFF, LOG_LEN + SECTOR },
		{ LOG_OFF, 1024 * MiB + MiB },
		{ 0, LOG_LEN },
		{ 512 * KiB, LOG_LEN },
		{ LOG_OFF + SECTOR, LOG_LEN },
		{ FILE_SIZE - MiB, 2 * MiB },	   /* ends beyond the file */
		{ UINT64_MAX - MiB + 1, LOG_LEN }, /* wraps */
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		f.err[0] = 0;
		int ret = vhdx_log_replay(f.file, bad[i].off, bad[i].len, &f.guid, true, &r, f.err,
					  sizeof(f.err));
		if (ret != -EINVAL)
			fail_msg("log %llu+%u: %d", (unsigned long long)bad[i].off, bad[i].len,
				 ret);
		assert_true(strstr(f.err, "log") != NULL);
	}
	/* the file ends inside the log */
	assert_int_equal(truncate(f.path, (off_t)(LOG_OFF + LOG_LEN / 2)), 0);
	fx_reopen(&f);
	replay_refused(&f, "beyond the end of the file");
	fx_close(&f);
}

static void test_flushed_file_offset(void **state)
{
	(void)state;
	struct fx f;
	fx_open(&f, "flushed");
	uint8_t a[SECTOR];
	sector_data(a, 93);
	struct vhdx_log_update u = data_update(2 * MiB, a);
	put_entry_sizes(&f, &u, 1, FILE_SIZE + MiB, FILE_SIZE + MiB);
	replay_refused(&f, "truncated");

	/* only the head's FlushedFileOffset counts: an earlier entry may predate a shrink */
	vhdx_log_writer_init(&f.w, LOG_OFF, LOG_LEN, &GUID_A, SEQ0);
	put_entry_sizes(&f, &u, 1, FILE_SIZE + MiB, FILE_SIZE + MiB);
	put_entry_sizes(&f, &u, 1, FILE_SIZE, FILE_SIZE);
	struct vhdx_log_replay_result r;
	replay_ok(&f, &r);
	assert_int_equal(r.entries, 2);
	expect_sector(&f, 2 * MiB, a);
	fx_close(&f);
}

static void test_extend_to_last_file_offset(void **state)
{
	(void)state;
	struct fx f;
	fx_open(&f, "extend");
	uint8_t a[SECTOR], b[SECTOR];
	sector_data(a, 94);
	sector_data(b, 95);
	struct vhdx_log_update u[3] = { data_update(2 * MiB, a), data_update(FILE_SIZE + MiB, b),
					zero_update(FILE_SIZE + 2 * SECTOR, 64 * KiB) };
	put_entry_sizes(&f, u, 3, FILE_SIZE, FILE_SIZE + 4 * MiB);
	struct vhdx_log_replay_result r;
	assert_int_equal(replay(&f, false, &r), 0);
	assert_int_equal(r.last_file_offset, FILE_SIZE + 4 * MiB);
	assert_int_equal(f.file->size, FILE_SIZE);
	replay_ok(&f, &r);
	fx_reopen(&f);
	assert_int_equal(f.file->size, FILE_SIZE + 4 * MiB);
	expect_sector(&f, 2 * MiB, a);
	expect_sector(&f, FILE_SIZE + MiB, b);
	expect_zero(&f, FILE_SIZE, MiB);
	expect_zero(&f, FILE_SIZE + MiB + SECTOR, 3 * MiB - SECTOR);

	/* a file longer than LastFileOffset is not shrunk */
	vhdx_log_writer_init(&f.w, LOG_OFF, LOG_LEN, &GUID_A, SEQ0 + 50);
	put_entry_sizes(&f, u, 1, FILE_SIZE, FILE_SIZE);
	replay_ok(&f, &r);
	fx_reopen(&f);
	assert_int_equal(f.file->size, FILE_SIZE + 4 * MiB);
	fx_close(&f);
}

/* Zeros beyond the end of the file are not written: the extension reads as zeros. */
static void test_zero_beyond_end(void **state)
{
	(void)state;
	struct fx f;
	fx_open(&f, "zeroend");
	struct vhdx_log_update u[2] = { zero_update(FILE_SIZE - SECTOR, 256 * MiB),
					zero_update(2 * MiB, SECTOR) };
	put_entry_sizes(&f, u, 2, FILE_SIZE, FILE_SIZE + 512 * MiB);
	struct vhdx_log_replay_result r;
	replay_ok(&f, &r);
	fx_reopen(&f);
	assert_int_equal(f.file->size, FILE_SIZE + 512 * MiB);
	assert_true(vdisk_file_allocated(f.file) < FILE_SIZE + 4 * MiB);
	expect_zero(&f, FILE_SIZE - SECTOR, 2 * SECTOR);
	expect_zero(&f, FILE_SIZE + 300 * MiB, SECTOR);
	expect_zero(&f, 2 * MiB, SECTOR);
	expect_original(&f, FILE_SIZE - 2 * SECTOR, SECTOR);
	fx_close(&f);
}

/* A 64 MiB log holding the biggest entry it can (16 thousand descriptors): replayed, then
 * refused as torn once its last data sector changes. Also shows the scan stays linear. */
static void test_large_log(void **state)
{
	(void)state;
	const uint32_t log_len = 64 * MiB;
	const uint64_t target = LOG_OFF + log_len, size = target + 72 * MiB;
	struct fx f;
	memset(&f, 0, sizeof(f));
	snprintf(f.path, sizeof(f.path), "%s", test_path("large"));
	int fd = open(f.path, O_CREAT | O_TRUNC | O_WRONLY | O_CLOEXEC, 0644);
	assert_true(fd >= 0);
	assert_int_equal(ftruncate(fd, (off_t)size), 0);
	close(fd);
	fx_open_file(&f);
	f.guid = GUID_A;
	vhdx_log_writer_init(&f.w, LOG_OFF, log_len, &GUID_A, 1ull << 40);
	unsigned max = vhdx_log_max_data_updates(log_len);
	assert_true(max > 16000);
	static uint8_t data[16][SECTOR];
	for (unsigned i = 0; i < 16; i++)
		sector_data(data[i], 300 + i);
	struct vhdx_log_update *u = calloc(max, sizeof(*u));
	assert_non_null(u);
	for (unsigned i = 0; i < max; i++)
		u[i] = data_update(target + (uint64_t)i * SECTOR, data[i % 16]);
	f.w.head = f.w.tail = log_len / 2;
	uint32_t start = put_entry_sizes(&f, u, max, size, size);
	assert_int_equal(vhdx_log_space(&f.w), 0);
	struct vhdx_log_replay_result r;
	f.err[0] = 0;
	assert_int_equal(
		vhdx_log_replay(f.file, LOG_OFF, log_len, &f.guid, true, &r, f.err, sizeof(f.err)),
		0);
	assert_int_equal(r.entries, 1);
	assert_int_equal(r.descriptors, max);
	assert_int_equal(r.sequence, 1ull << 40);
	for (unsigned i = 0; i < max; i += 997)
		expect_sector(&f, target + (uint64_t)i * SECTOR, data[i % 16]);
	expect_sector(&f, target + (uint64_t)(max - 1) * SECTOR, data[(max - 1) % 16]);

	/* the last data sector sits just before the entry's start, after the wrap */
	uint8_t s[SECTOR];
	uint64_t last = LOG_OFF + (start + log_len - 2 * SECTOR) % log_len;
	read_at(&f, last, s, SECTOR);
	assert_memory_equal(s, "data", 4);
	s[2000] ^= 1;
	write_at(&f, last, s, SECTOR);
	assert_int_equal(
		vhdx_log_replay(f.file, LOG_OFF, log_len, &f.guid, true, &r, f.err, sizeof(f.err)),
		0);
	assert_int_equal(r.entries, 0);
	free(u);
	fx_close(&f);
}

static void test_log_full(void **state)
{
	(void)state;
	struct fx f;
	fx_open(&f, "full");
	/* 15 data sectors + 1 descriptor sector: 64 KiB entries; 256 sectors, one kept free */
	uint8_t a[SECTOR];
	sector_data(a, 96);
	struct vhdx_log_update u[15];
	for (unsigned i = 0; i < 15; i++)
		u[i] = data_update(2 * MiB + i * SECTOR, a);
	uint32_t starts[16];
	assert_int_equal(vhdx_log_space(&f.w), LOG_LEN - SECTOR);
	for (unsigned i = 0; i < 15; i++)
		starts[i] = put_entry(&f, u, 15);
	assert_int_equal(vhdx_log_space(&f.w), 15 * SECTOR);
	uint8_t *buf = (uint8_t *)1;
	uint32_t len = 1;
	struct vhdx_log_piece p[2];
	unsigned np = 1;
	struct vhdx_log_writer before = f.w;
	assert_int_equal(
		vhdx_log_entry_build(&f.w, u, 15, FILE_SIZE, FILE_SIZE, &buf, &len, p, &np),
		-ENOSPC);
	assert_null(buf);
	assert_memory_equal(&f.w, &before, sizeof(before));
	/* an entry of 15 sectors still fits: the log is then full but for one sector */
	put_entry(&f, u, 14);
	assert_int_equal(vhdx_log_space(&f.w), 0);
	assert_int_equal(
		vhdx_log_entry_build(&f.w, NULL, 0, FILE_SIZE, FILE_SIZE, &buf, &len, p, &np),
		-ENOSPC);

	/* a tail that is not a sector of the log is ignored */
	vhdx_log_set_tail(&f.w, 100);
	vhdx_log_set_tail(&f.w, LOG_LEN);
	assert_int_equal(f.w.tail, 0);
	vhdx_log_set_tail(&f.w, starts[1]);
	assert_int_equal(vhdx_log_space(&f.w), 16 * SECTOR);
	starts[15] = put_entry(&f, u, 15);
	assert_int_equal(starts[15], LOG_LEN - SECTOR);
	assert_int_equal(f.w.head, 15 * SECTOR);

	/* replay finds entries 1..16 (the first one's space was reused) */
	struct vhdx_log_replay_result r;
	replay_ok(&f, &r);
	assert_int_equal(r.entries, 16);
	assert_int_equal(r.sequence, SEQ0 + 16);

	/* too big for any log of this length */
	struct vhdx_log_update *many = calloc(256, sizeof(*many));
	assert_non_null(many);
	for (unsigned i = 0; i < 256; i++)
		many[i] = data_update(2 * MiB + i * SECTOR, a);
	vhdx_log_writer_init(&f.w, LOG_OFF, LOG_LEN, &GUID_A, SEQ0);
	unsigned max = vhdx_log_max_data_updates(LOG_LEN);
	assert_int_equal(max, 253);
	assert_int_equal(
		vhdx_log_entry_build(&f.w, many, max + 1, FILE_SIZE, FILE_SIZE, &buf, &len, p, &np),
		-EFBIG);
	/* the biggest entry fills all but one sector and replays */
	for (unsigned i = 0; i < max; i++)
		many[i] = data_update(2 * MiB + i * SECTOR, a);
	vhdx_log_set_tail(&f.w, 0);
	f.w.head = f.w.tail = 128 * SECTOR;
	put_entry(&f, many, max);
	assert_int_equal(f.w.head, 127 * SECTOR);
	assert_int_equal(vhdx_log_space(&f.w), 0);
	replay_ok(&f, &r);
	assert_int_equal(r.entries, 1);
	assert_int_equal(r.descriptors, max);
	free(many);
	assert_int_equal(vhdx_log_max_data_updates(2 * SECTOR), 0);
	assert_int_equal(vhdx_log_max_data_updates(2 * MiB), 507);

	/* in an empty log the tail cannot move away from the head */
	vhdx_log_writer_init(&f.w, LOG_OFF, LOG_LEN, &GUID_A, SEQ0);
	vhdx_log_set_tail(&f.w, 16 * SECTOR);
	assert_int_equal(f.w.tail, 0);
	put_entry(&f, u, 1);
	vhdx_log_set_tail(&f.w, 4 * SECTOR); /* beyond the head */
	assert_int_equal(f.w.tail, 0);
	vhdx_log_set_tail(&f.w, 2 * SECTOR);
	assert_int_equal(f.w.tail, 2 * SECTOR);
	fx_close(&f);
}

/* The log after a full lap: the current sequence at the start of the log, older entries of
 * the same log after its head. Old entries (lower sequence numbers) and entries before the
 * head's tail must not be replayed, even where they chain up with the current ones. */
static void test_stale_entries_after_head(void **state)
{
	(void)state;
	struct fx f;
	fx_open(&f, "stale");
	uint8_t old[SECTOR], cur[2][SECTOR];
	sector_data(old, 100);
	/* first lap: 16 entries of 64 KiB (15 data sectors), each applied and released; each
	 * writes its own sector 5 MiB + i * 4 KiB among others */
	struct vhdx_log_update u[15];
	for (unsigned i = 0; i < 15; i++)
		u[i] = data_update(6 * MiB + i * SECTOR, old);
	for (unsigned i = 0; i < 15; i++) {
		u[0] = data_update(5 * MiB + i * SECTOR, old);
		put_entry(&f, u, 15);
		vhdx_log_set_tail(&f.w, f.w.head);
	}
	/* sectors 240..255: one more of the same size ending exactly at the end of the log */
	u[0] = data_update(5 * MiB + 15 * SECTOR, old);
	put_entry(&f, u, 15);
	vhdx_log_set_tail(&f.w, f.w.head);
	assert_int_equal(f.w.head, 0);

	/* second lap, smaller entries (10 sectors): the first one chains to the last old one */
	for (unsigned i = 0; i < 2; i++) {
		sector_data(cur[i], 101 + i);
		struct vhdx_log_update v[9];
		for (unsigned k = 0; k < 9; k++)
			v[k] = data_update(2 * MiB + k * SECTOR, cur[i]);
		put_entry(&f, v, 9);
	}
	struct vhdx_log_replay_result r;
	replay_ok(&f, &r);
	assert_int_equal(r.entries, 2);
	assert_int_equal(r.sequence, SEQ0 + 17);
	for (unsigned k = 0; k < 9; k++)
		expect_sector(&f, 2 * MiB + k * SECTOR, cur[1]);
	expect_original(&f, 5 * MiB, 16 * SECTOR);
	expect_original(&f, 6 * MiB, 16 * SECTOR);

	/* the same first lap, then a torn entry: the newest valid sequence is the last entry of
	 * the old lap alone (already applied, its tail is itself); nothing older comes back */
	fx_close(&f);
	fx_open(&f, "stale2");
	for (unsigned i = 0; i < 15; i++) {
		u[0] = data_update(5 * MiB + i * SECTOR, old);
		put_entry(&f, u, 15);
		vhdx_log_set_tail(&f.w, f.w.head);
	}
	u[0] = data_update(5 * MiB + 15 * SECTOR, old);
	put_entry(&f, u, 15);
	uint32_t h = f.w.head;
	vhdx_log_set_tail(&f.w, h);
	struct vhdx_log_update v = data_update(2 * MiB, cur[0]);
	put_entry(&f, &v, 1);
	uint8_t junk[SECTOR];
	test_fill_pattern(junk, SECTOR, 0, 5);
	write_at(&f, LOG_OFF + h + SECTOR, junk, SECTOR);
	/* the last old entry (sequence 115) is the valid head: its tail is itself */
	replay_ok(&f, &r);
	assert_int_equal(r.entries, 1);
	assert_int_equal(r.sequence, SEQ0 + 15);
	expect_original(&f, 5 * MiB, 15 * SECTOR);
	expect_sector(&f, 5 * MiB + 15 * SECTOR, old);
	expect_original(&f, 2 * MiB, SECTOR);
	fx_close(&f);
}

/* Two valid sequences ending with the same sequence number cannot come from one writer. */
static void test_duplicate_sequence(void **state)
{
	(void)state;
	struct fx f;
	fx_open(&f, "dup");
	uint8_t a[SECTOR];
	sector_data(a, 110);
	struct vhdx_log_update u = data_update(2 * MiB, a);
	put_entry(&f, &u, 1);
	vhdx_log_writer_init(&f.w, LOG_OFF, LOG_LEN, &GUID_A, SEQ0);
	f.w.head = f.w.tail = 128 * SECTOR;
	put_entry(&f, &u, 1);
	replay_refused(&f, "two sequences");
	fx_close(&f);
}

/* ---- random sequences against a model ---- */

struct model {
	uint8_t *file; /* what the file must hold after replay */
	struct vhdx_log_update *pending[64];
	unsigned npending[64];
	uint32_t start[64];
	unsigned n;
	unsigned built;	    /* entries built */
	unsigned oldest;    /* number of the oldest pending entry */
	unsigned head_tail; /* number of the entry the last one's Tail names */
};

static uint64_t rnd(uint64_t *s)
{
	*s ^= *s << 13;
	*s ^= *s >> 7;
	*s ^= *s << 17;
	return *s;
}

static void model_apply(uint8_t *file, const struct vhdx_log_update *u, unsigned n)
{
	for (unsigned i = 0; i < n; i++) {
		if (u[i].data)
			memcpy(file + u[i].file_offset, u[i].data, SECTOR);
		else
			memset(file + u[i].file_offset, 0, u[i].zero_length);
	}
}

static void free_updates(struct vhdx_log_update *u, unsigned n)
{
	for (unsigned i = 0; i < n; i++)
		free((void *)u[i].data);
	free(u);
}

/* The oldest pending entry is applied in place and released, as the driver does. */
static void apply_oldest(struct fx *f, struct model *m)
{
	struct vhdx_log_update *u = m->pending[0];
	for (unsigned i = 0; i < m->npending[0]; i++) {
		if (u[i].data) {
			write_at(f, u[i].file_offset, u[i].data, SECTOR);
		} else {
			uint8_t *z = calloc(1, u[i].zero_length);
			write_at(f, u[i].file_offset, z, u[i].zero_length);
			free(z);
		}
	}
	free_updates(u, m->npending[0]);
	memmove(m->pending, m->pending + 1, (m->n - 1) * sizeof(m->pending[0]));
	memmove(m->npending, m->npending + 1, (m->n - 1) * sizeof(m->npending[0]));
	memmove(m->start, m->start + 1, (m->n - 1) * sizeof(m->start[0]));
	m->n--;
	m->oldest++;
	vhdx_log_set_tail(&f->w, m->n ? m->start[0] : f->w.head);
}

static struct vhdx_log_update *random_updates(uint64_t *s, unsigned *n)
{
	*n = 1 + (unsigned)(rnd(s) % 24);
	struct vhdx_log_update *u = calloc(*n, sizeof(*u));
	assert_non_null(u);
	for (unsigned i = 0; i < *n; i++) {
		uint64_t sector = 2 * MiB / SECTOR + rnd(s) % (6 * MiB / SECTOR - 16);
		if (rnd(s) % 4 == 0) {
			u[i] = zero_update(sector * SECTOR, (1 + rnd(s) % 16) * SECTOR);
		} else {
			uint8_t *d = malloc(SECTOR);
			assert_non_null(d);
			test_fill_pattern(d, SECTOR, 0, (uint32_t)rnd(s));
			u[i] = data_update(sector * SECTOR, d);
		}
	}
	return u;
}

static void random_round(uint64_t seed)
{
	uint64_t s = seed * 0x9E3779B97F4A7C15ull + 1;
	struct fx f;
	fx_open(&f, "random");
	/* start anywhere in the log */
	advance_head(&f, (uint32_t)(rnd(&s) % LOG_SECTORS) * SECTOR);
	struct model m = { .file = snapshot(&f) };
	unsigned steps = 1 + (unsigned)(rnd(&s) % 120);
	for (unsigned k = 0; k < steps; k++) {
		unsigned n;
		struct vhdx_log_update *u = random_updates(&s, &n);
		while (vhdx_log_entry_size(u, n) > vhdx_log_space(&f.w) || m.n == 64)
			apply_oldest(&f, &m);
		m.head_tail = m.n ? m.oldest : m.built;
		if (!m.n)
			m.oldest = m.built;
		m.start[m.n] = put_entry(&f, u, n);
		m.built++;
		model_apply(m.file, u, n);
		m.pending[m.n] = u;
		m.npending[m.n++] = n;
		while (m.n && rnd(&s) % 3 == 0)
			apply_oldest(&f, &m);
	}
	/* replay starts at the entry the head's Tail names: the oldest pending one when the
	 * head was built (entries applied since are applied again, which changes nothing) */
	struct vhdx_log_replay_result r;
	replay_ok(&f, &r);
	assert_int_equal(r.entries, m.built - m.head_tail);
	assert_int_equal(r.sequence, f.w.sequence - 1);
	read_at(&f, LOG_OFF, m.file + LOG_OFF, LOG_LEN); /* the log itself is not modelled */
	expect_unchanged(&f, m.file, FILE_SIZE);
	while (m.n)
		apply_oldest(&f, &m);
	free(m.file);
	fx_close(&f);
}

static void test_random_sequences(void **state)
{
	(void)state;
	for (uint64_t seed = 1; seed <= 60; seed++)
		random_round(seed);
}

/* ---- QEMU ---- */

#define QEMU_LOG_GUID 48 /* LogGuid in the 4 KiB VHDX header */

static bool have_tool(const char *name)
{
	return test_run(NULL, 0, "command -v %s >/dev/null 2>&1", name) == 0;
}

#define NEED_TOOL(name)                                                                            \
	do {                                                                                       \
		if (!have_tool(name)) {                                                            \
			print_message("%s not installed: skipped\n", name);                        \
			skip();                                                                    \
		}                                                                                  \
	} while (0)

static uint64_t file_size(const char *path)
{
	struct stat st;
	assert_int_equal(stat(path, &st), 0);
	return (uint64_t)st.st_size;
}

static uint8_t *file_slurp(const char *path, uint64_t *size)
{
	*size = file_size(path);
	uint8_t *buf = malloc(*size);
	assert_non_null(buf);
	test_file_read(path, buf, *size, 0);
	return buf;
}

/* What the test needs of a VHDX: the current header's log and the BAT's offset. */
struct qimage {
	uint64_t log_offset;
	uint32_t log_length;
	struct guid log_guid;
	uint64_t bat_offset;
};

static bool header_valid(const uint8_t *h)
{
	uint8_t copy[SECTOR];
	memcpy(copy, h, SECTOR);
	store_le32(copy + 4, 0);
	return memcmp(h, "head", 4) == 0 && crc32c(0, copy, SECTOR) == load_le32(h + 4);
}

static void qimage_parse(const char *path, struct qimage *q)
{
	uint8_t h[2][SECTOR], rt[SECTOR];
	test_file_read(path, h[0], SECTOR, 64 * KiB);
	test_file_read(path, h[1], SECTOR, 128 * KiB);
	bool v0 = header_valid(h[0]), v1 = header_valid(h[1]);
	assert_true(v0 || v1);
	const uint8_t *cur = !v1 || (v0 && load_le64(h[0] + 8) > load_le64(h[1] + 8)) ? h[0] : h[1];
	memcpy(q->log_guid.bytes, cur + QEMU_LOG_GUID, 16);
	q->log_length = load_le32(cur + 68);
	q->log_offset = load_le64(cur + 72);
	test_file_read(path, rt, SECTOR, 192 * KiB);
	assert_memory_equal(rt, "regi", 4);
	struct guid bat;
	assert_int_equal(guid_parse("2DC27766-F623-4200-9D64-115E9BFD4A08", &bat), 0);
	q->bat_offset = 0;
	for (uint32_t i = 0; i < load_le32(rt + 8) && i < 100; i++)
		if (memcmp(rt + 16 + 32 * i, bat.bytes, 16) == 0)
			q->bat_offset = load_le64(rt + 16 + 32 * i + 16);
	assert_true(q->bat_offset != 0);
}

/* Sets the LogGuid of both headers, resealing each. */
static void set_log_guid(const char *path, const struct guid *g)
{
	for (uint64_t off = 64 * KiB; off <= 128 * KiB; off += 64 * KiB) {
		uint8_t h[SECTOR];
		test_file_read(path, h, SECTOR, off);
		memcpy(h + QEMU_LOG_GUID, g->bytes, 16);
		store_le32(h + 4, 0);
		store_le32(h + 4, crc32c(0, h, SECTOR));
		test_file_write(path, h, SECTOR, off);
	}
}

static uint64_t bat_entry(const char *path, const struct qimage *q, unsigned i)
{
	uint8_t e[8];
	test_file_read(path, e, 8, q->bat_offset + 8 * i);
	return load_le64(e);
}

static void run_ok(const char *what, int rc, const char *out)
{
	if (rc != 0)
		fail_msg("%s failed (%d):\n%s", what, rc, out);
}

/* Our replay of path, as the driver would do it at open; returns the entries replayed. */
static unsigned our_replay(const char *path, const struct qimage *q)
{
	struct vdisk_file *file;
	char err[512];
	assert_int_equal(
		vdisk_file_open(path, false, VDISK_CACHE_WRITEBACK, true, &file, err, sizeof(err)),
		0);
	struct vhdx_log_replay_result r;
	int ret = vhdx_log_replay(file, q->log_offset, q->log_length, &q->log_guid, true, &r, err,
				  sizeof(err));
	vdisk_file_close(file);
	if (ret)
		fail_msg("vhdx_log_replay %s: %d %s", path, ret, err);
	return r.entries;
}

/* The two files must be the same outside the two headers (QEMU renews their GUIDs and
 * clears LogGuid; our replay leaves headers to the caller). */
static void expect_same_but_headers(const char *a, const char *b)
{
	uint64_t na, nb;
	uint8_t *x = file_slurp(a, &na), *y = file_slurp(b, &nb);
	assert_int_equal(na, nb);
	memset(x + 64 * KiB, 0, 128 * KiB);
	memset(y + 64 * KiB, 0, 128 * KiB);
	for (uint64_t i = 0; i < na; i += SECTOR)
		if (memcmp(x + i, y + i, SECTOR) != 0)
			fail_msg("%s and %s differ in the sector at %llu", a, b,
				 (unsigned long long)i);
	free(x);
	free(y);
}

/* Writes our log into the qemu-img image x (block 0 allocated at block0): a payload sector
 * written twice (the second write wins), a zero run, another payload sector, and the BAT
 * sector rewritten as it is. wrap: as one entry that wraps around the end of the log;
 * otherwise as two entries from the start of the log. Returns the log GUID to set. */
static struct guid write_our_log(const char *x, const struct qimage *q, uint64_t block0, bool wrap,
				 const uint8_t *p1, const uint8_t *p2, const uint8_t *p3)
{
	uint64_t size = file_size(x);
	struct guid g;
	assert_int_equal(guid_generate(&g), 0);
	struct fx f;
	memset(&f, 0, sizeof(f));
	snprintf(f.path, sizeof(f.path), "%s", x);
	fx_open_file(&f);
	f.guid = g;
	vhdx_log_writer_init(&f.w, q->log_offset, q->log_length, &g, 1);
	uint8_t bat[SECTOR];
	read_at(&f, q->bat_offset, bat, SECTOR);
	struct vhdx_log_update u[5] = { data_update(block0 + SECTOR, p1),
					zero_update(block0 + 16 * KiB, 8 * KiB),
					data_update(q->bat_offset, bat),
					data_update(block0 + SECTOR, p2),
					data_update(block0 + 3 * SECTOR, p3) };
	if (wrap) {
		/* 1 descriptor sector + 4 data sectors: 2 at the end of the log, 3 at its start */
		f.w.head = f.w.tail = q->log_length - 2 * SECTOR;
		put_entry_sizes(&f, u, 5, size, size);
		assert_int_equal(f.w.head, 3 * SECTOR);
	} else {
		put_entry_sizes(&f, u, 3, size, size);
		put_entry_sizes(&f, u + 3, 2, size, size);
	}
	vdisk_file_close(f.file);
	return g;
}

/* What a guest sees after the replay: the first MiB of the disk. */
static void expect_guest_view(const char *x, const char *raw, const uint8_t *p2, const uint8_t *p3)
{
	char out[4096];
	run_ok("qemu-img convert",
	       test_run(out, sizeof(out), "qemu-img convert -f vhdx -O raw '%s' '%s'", x, raw),
	       out);
	uint8_t *view = malloc(MiB);
	assert_non_null(view);
	test_file_read(raw, view, MiB, 0);
	assert_memory_equal(view + SECTOR, p2, SECTOR);
	assert_memory_equal(view + 3 * SECTOR, p3, SECTOR);
	for (size_t i = 0; i < SECTOR; i++) {
		assert_int_equal(view[i], 0x11);
		assert_int_equal(view[2 * SECTOR + i], 0x11);
	}
	for (size_t i = 16 * KiB; i < 24 * KiB; i++)
		assert_int_equal(view[i], 0);
	for (size_t i = 24 * KiB; i < MiB; i++)
		assert_int_equal(view[i], 0x11);
	free(view);
	unlink(raw);
}

/* Our log in a qemu-img image: QEMU replays it (a read-write open does), we replay a copy;
 * the files must agree but for the headers, and the guest must see the logged data. */
static void qemu_replays_ours(bool wrap)
{
	char out[8192];
	const char *x = test_path("ours.vhdx"), *y = test_path("ours-copy.vhdx");
	const char *raw = test_path("ours.raw");
	run_ok("qemu-img create",
	       test_run(out, sizeof(out), "qemu-img create -q -f vhdx -o log_size=1M '%s' 64M", x),
	       out);
	run_ok("qemu-io write",
	       test_run(out, sizeof(out), "qemu-io -f vhdx -c 'write -q -P 0x11 0 1M' '%s'", x),
	       out);
	struct qimage q;
	qimage_parse(x, &q);
	assert_true(guid_is_zero(&q.log_guid));
	uint64_t block0 = bat_entry(x, &q, 0);
	assert_int_equal(block0 & 7, 6); /* fully present */
	block0 = (block0 >> 20) << 20;

	uint8_t p1[SECTOR], p2[SECTOR], p3[SECTOR];
	sector_data(p1, 201);
	sector_data(p2, 202);
	sector_data(p3, 203);
	q.log_guid = write_our_log(x, &q, block0, wrap, p1, p2, p3);
	set_log_guid(x, &q.log_guid);
	run_ok("cp", test_run(out, sizeof(out), "cp '%s' '%s'", x, y), out);

	int rc = test_run(out, sizeof(out), "qemu-img check -r all '%s'", x);
	print_message("qemu-img check -r all (exit %d):\n%s", rc, out);
	run_ok("qemu-img check -r all", rc, out);
	struct qimage after;
	qimage_parse(x, &after);
	assert_true(guid_is_zero(&after.log_guid));
	uint8_t got[SECTOR];
	test_file_read(x, got, SECTOR, block0 + SECTOR);
	assert_memory_equal(got, p2, SECTOR);
	test_file_read(x, got, SECTOR, block0 + 3 * SECTOR);
	assert_memory_equal(got, p3, SECTOR);
	expect_guest_view(x, raw, p2, p3);

	assert_int_equal(our_replay(y, &q), wrap ? 1 : 2);
	expect_same_but_headers(x, y);
	/* with LogGuid cleared as the driver would, QEMU sees the same disk and no errors */
	static const struct guid zero;
	set_log_guid(y, &zero);
	run_ok("qemu-img check", test_run(out, sizeof(out), "qemu-img check '%s'", y), out);
	run_ok("qemu-img compare",
	       test_run(out, sizeof(out), "qemu-img compare -f vhdx -F vhdx '%s' '%s'", x, y), out);
	unlink(x);
	unlink(y);
}

static void test_qemu_replays_our_log(void **state)
{
	(void)state;
	NEED_TOOL("qemu-img");
	NEED_TOOL("qemu-io");
	qemu_replays_ours(false);
	qemu_replays_ours(true);
}

/* QEMU allocates two blocks (one log entry each) and stops at its n-th write (blkdebug
 * fails it): depending on n, the log is not yet named in the headers, named but torn, or
 * complete with the BAT update not yet applied, for the first or the second entry of the
 * session (the second one lies after the first in the log, with its own Tail). */
static void qemu_interrupted(const char *base, const char *path, unsigned n)
{
	char cfg[700], out[4096];
	snprintf(cfg, sizeof(cfg), "%s.blkdebug", path);
	FILE *c = fopen(cfg, "w");
	assert_non_null(c);
	for (unsigned i = 1; i < n; i++)
		fprintf(c,
			"[set-state]\nstate = \"%u\"\nevent = \"pwritev\"\nnew_state = \"%u\"\n\n",
			i, i + 1);
	fprintf(c,
		"[inject-error]\nstate = \"%u\"\nevent = \"pwritev\"\nerrno = \"5\"\nonce = "
		"\"on\"\n",
		n);
	fclose(c);
	run_ok("cp", test_run(out, sizeof(out), "cp '%s' '%s'", base, path), out);
	test_run(out, sizeof(out),
		 "qemu-io -f vhdx -c 'write -q -P 0x22 8M 1M' -c 'write -q -P 0x33 16M 1M' "
		 "'blkdebug:%s:%s'",
		 cfg, path);
	unlink(cfg);
}

/* Logs QEMU wrote and did not finish: for each point of interruption that leaves the log
 * named in the header, we replay a copy and QEMU replays the image (qemu-img check -r all);
 * the files must agree outside the headers. At least one of them must hold a complete
 * entry whose BAT update the replay applies. */
static void test_we_replay_qemu_log(void **state)
{
	(void)state;
	NEED_TOOL("qemu-img");
	NEED_TOOL("qemu-io");
	char out[8192];
	const char *base = test_path("q-base.vhdx"), *x = test_path("q.vhdx");
	const char *y = test_path("q-copy.vhdx");
	run_ok("qemu-img create",
	       test_run(out, sizeof(out), "qemu-img create -q -f vhdx -o log_size=1M '%s' 64M",
			base),
	       out);
	struct qimage qb;
	qimage_parse(base, &qb);
	unsigned dirty = 0, replayed = 0;
	for (unsigned n = 1; n <= 24; n++) {
		qemu_interrupted(base, x, n);
		struct qimage q;
		qimage_parse(x, &q);
		if (guid_is_zero(&q.log_guid))
			continue;
		dirty++;
		run_ok("cp", test_run(out, sizeof(out), "cp '%s' '%s'", x, y), out);
		unsigned entries = our_replay(y, &q);
		int rc = test_run(out, sizeof(out), "qemu-img check -r all '%s'", x);
		run_ok("qemu-img check -r all", rc, out);
		expect_same_but_headers(x, y);
		print_message("interrupted at write %u: we replayed %u entries\n", n, entries);
		if (entries) {
			assert_true(bat_entry(y, &q, 1) != bat_entry(base, &qb, 1) ||
				    bat_entry(y, &q, 2) != bat_entry(base, &qb, 2));
			replayed++;
		}
	}
	if (!replayed) {
		print_message("QEMU never left a complete log entry (%u dirty): skipped\n", dirty);
		skip();
	}
	unlink(base);
	unlink(x);
	unlink(y);
}

static int setup(void **state)
{
	(void)state;
	test_tmpdir();
	return 0;
}

static int teardown(void **state)
{
	(void)state;
	test_tmpdir_remove();
	return 0;
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_entry_layout),
		cmocka_unit_test(test_single_entry),
		cmocka_unit_test(test_empty_log),
		cmocka_unit_test(test_zero_descriptors),
		cmocka_unit_test(test_last_entry_wins),
		cmocka_unit_test(test_wraparound),
		cmocka_unit_test(test_wrap_in_descriptors),
		cmocka_unit_test(test_torn_last_entry),
		cmocka_unit_test(test_torn_middle_entry),
		cmocka_unit_test(test_tail_must_precede_head),
		cmocka_unit_test(test_bad_crc),
		cmocka_unit_test(test_wrong_guid),
		cmocka_unit_test(test_build_refusals),
		cmocka_unit_test(test_forbidden_targets),
		cmocka_unit_test(test_absurd_fields),
		cmocka_unit_test(test_log_region_checks),
		cmocka_unit_test(test_flushed_file_offset),
		cmocka_unit_test(test_extend_to_last_file_offset),
		cmocka_unit_test(test_zero_beyond_end),
		cmocka_unit_test(test_large_log),
		cmocka_unit_test(test_log_full),
		cmocka_unit_test(test_stale_entries_after_head),
		cmocka_unit_test(test_duplicate_sequence),
		cmocka_unit_test(test_random_sequences),
		cmocka_unit_test(test_qemu_replays_our_log),
		cmocka_unit_test(test_we_replay_qemu_log),
	};
	return cmocka_run_group_tests(tests, setup, teardown);
}
