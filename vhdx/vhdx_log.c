/* The VHDX metadata log (MS-VHDX 2.3): building entries for the writer and replaying the
 * active sequence of an image that was not closed cleanly.
 *
 * On-disk layout (all little-endian). An entry is a run of 4 KiB log sectors:
 *   - a 64-byte header ("loge", Checksum, EntryLength, Tail, SequenceNumber,
 *     DescriptorCount, Reserved, LogGuid, FlushedFileOffset, LastFileOffset),
 *   - DescriptorCount 32-byte descriptors right after it ("desc": TrailingBytes,
 *     LeadingBytes, FileOffset, SequenceNumber; "zero": Reserved, ZeroLength, FileOffset,
 *     SequenceNumber), the header and descriptors padded to whole sectors,
 *   - one data sector per "desc" descriptor, in descriptor order ("data", SequenceHigh,
 *     4084 bytes, SequenceLow); the 4 KiB target sector is LeadingBytes (8) + those 4084
 *     bytes + TrailingBytes (4).
 * Checksum is the CRC-32C of the whole entry with the checksum field taken as zero. The log
 * is circular: the sector after the last one is the first one.
 *
 * Replay (what MS-VHDX 2.3.3 asks; DiscUtils does the same): a sequence is a chain of valid
 * entries, each starting where the previous one ends, with sequence numbers increasing by
 * one; it is valid when the Tail of its last entry (the head) names the start of an entry of
 * the chain at or before the head. The active sequence is the valid sequence whose head has
 * the highest sequence number; it is applied from the entry named by the head's Tail up to
 * the head. QEMU (block/vhdx-log.c) ignores Tail: scanning from log offset 0 it takes the run
 * of consecutive entries whose first entry has the highest sequence number and replays the
 * whole run. Both agree on the logs QEMU writes and on sequences that do not wrap; for a
 * sequence of several entries that wraps around the end of the log QEMU replays only the
 * entries after the wrap, so a writer that wants QEMU to recover its logs keeps at most one
 * entry unapplied, or does not let a multi-entry sequence wrap.
 *
 * Scanning is linear in the log length even for hostile logs: an entry is checked sector by
 * sector in order (header, descriptor sectors, data sectors) before its checksum, and every
 * sector after the first one of a plausible entry must start with a descriptor or "data"
 * signature, so two entries that pass those checks never overlap, and each sector is
 * examined a bounded number of times.
 */
#include "vhdx_log.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "arith.h"
#include "crc32c.h"
#include "endian.h"
#include "errmsg.h"

#define SECTOR		VHDX_LOG_SECTOR
#define MIB		(1024u * 1024u)
#define HEADER_AREA	MIB		     /* headers and region tables: never a target */
#define LOG_MAX_LENGTH	(1024u * MIB)	     /* the longest log replay reads */
#define FILE_OFFSET_MAX (UINT64_C(1) << 48)  /* 256 TiB: far above a 64 TiB disk's file */
#define ZERO_BYTES_MAX	(UINT64_C(16) << 30) /* zeros one replay may ask for in total */
#define ZERO_CHUNK	(1024u * 1024u)

/* entry header */
#define EH_SIGNATURE	0
#define EH_CHECKSUM	4
#define EH_ENTRY_LENGTH 8
#define EH_TAIL		12
#define EH_SEQUENCE	16
#define EH_DESC_COUNT	24
#define EH_RESERVED	28
#define EH_LOG_GUID	32
#define EH_FLUSHED	48
#define EH_LAST		56
#define EH_SIZE		64

/* descriptors ("desc" and "zero" share the signature, file offset and sequence fields) */
#define D_SIGNATURE   0
#define D_TRAILING    4 /* "desc" */
#define D_LEADING     8 /* "desc" */
#define D_ZERO_LENGTH 8 /* "zero" */
#define D_FILE_OFFSET 16
#define D_SEQUENCE    24
#define D_SIZE	      32

/* data sectors */
#define DS_SIGNATURE 0
#define DS_SEQ_HIGH  4
#define DS_DATA	     8
#define DS_DATA_LEN  4084
#define DS_SEQ_LOW   4092
#define LEADING_LEN  8
#define TRAILING_LEN 4

static const char SIG_ENTRY[4] = { 'l', 'o', 'g', 'e' };
static const char SIG_DATA_DESC[4] = { 'd', 'e', 's', 'c' };
static const char SIG_ZERO_DESC[4] = { 'z', 'e', 'r', 'o' };
static const char SIG_DATA[4] = { 'd', 'a', 't', 'a' };

_Static_assert(EH_SIZE == 2 * D_SIZE, "the header takes the place of two descriptors");
_Static_assert(LEADING_LEN + DS_DATA_LEN + TRAILING_LEN == SECTOR, "a data sector rebuilds 4 KiB");
_Static_assert(SECTOR % D_SIZE == 0, "descriptors never straddle a sector");

/* Sectors the header and n descriptors take. */
static uint64_t descriptor_sectors(uint64_t n)
{
	return (EH_SIZE + n * D_SIZE + SECTOR - 1) / SECTOR;
}

/* Whether [offset, offset + len) may be written by the log of a file whose log region is
 * [log_offset, log_offset + log_length), when all structures end below limit. */
static bool target_allowed(uint64_t log_offset, uint32_t log_length, uint64_t offset, uint64_t len,
			   uint64_t limit)
{
	if (offset % SECTOR || len % SECTOR || offset > UINT64_MAX - len)
		return false;
	if (offset < HEADER_AREA || ranges_overlap(offset, len, log_offset, log_length))
		return false;
	return offset + len <= limit;
}

static bool log_geometry_ok(uint64_t log_offset, uint32_t log_length)
{
	return log_offset >= HEADER_AREA && log_offset % MIB == 0 && log_length &&
	       log_length % MIB == 0 && log_length <= LOG_MAX_LENGTH &&
	       log_offset <= UINT64_MAX - log_length;
}

/* ---- writer ---- */

void vhdx_log_writer_init(struct vhdx_log_writer *w, uint64_t log_offset, uint32_t log_length,
			  const struct guid *log_guid, uint64_t first_sequence)
{
	memset(w, 0, sizeof(*w));
	w->log_offset = log_offset;
	w->log_length = log_length;
	w->log_guid = *log_guid;
	w->sequence = first_sequence ? first_sequence : 1;
}

static uint32_t used_bytes(const struct vhdx_log_writer *w)
{
	return (w->head + w->log_length - w->tail) % w->log_length;
}

static bool writer_ok(const struct vhdx_log_writer *w)
{
	return log_geometry_ok(w->log_offset, w->log_length) && w->head < w->log_length &&
	       w->tail < w->log_length && w->head % SECTOR == 0 && w->tail % SECTOR == 0;
}

uint32_t vhdx_log_space(const struct vhdx_log_writer *w)
{
	if (!writer_ok(w))
		return 0;
	return w->log_length - used_bytes(w) - SECTOR;
}

unsigned vhdx_log_max_data_updates(uint32_t log_length)
{
	uint64_t sectors = log_length / SECTOR;
	if (sectors < 3)
		return 0;
	/* n data sectors + the descriptor sectors must fit in sectors - 1 (one stays free) */
	uint64_t n = sectors - 2;
	while (n && n + descriptor_sectors(n) > sectors - 1)
		n--;
	return (unsigned)n;
}

static uint64_t entry_bytes(const struct vhdx_log_update *updates, unsigned count)
{
	uint64_t data = 0;
	for (unsigned i = 0; i < count; i++)
		data += updates[i].data != NULL;
	return (descriptor_sectors(count) + data) * SECTOR;
}

uint32_t vhdx_log_entry_size(const struct vhdx_log_update *updates, unsigned count)
{
	if (count && !updates)
		return 0;
	uint64_t bytes = entry_bytes(updates, count);
	return bytes > UINT32_MAX ? UINT32_MAX : (uint32_t)bytes;
}

static bool update_ok(const struct vhdx_log_writer *w, const struct vhdx_log_update *u,
		      uint64_t last_file_offset)
{
	uint64_t len = u->data ? SECTOR : u->zero_length;
	if (!u->data && !u->zero_length)
		return false;
	return target_allowed(w->log_offset, w->log_length, u->file_offset, len, last_file_offset);
}

static void put_header(uint8_t *h, const struct vhdx_log_writer *w, uint32_t length, unsigned count,
		       uint64_t flushed_file_offset, uint64_t last_file_offset)
{
	memcpy(h + EH_SIGNATURE, SIG_ENTRY, 4);
	store_le32(h + EH_ENTRY_LENGTH, length);
	store_le32(h + EH_TAIL, w->tail);
	store_le64(h + EH_SEQUENCE, w->sequence);
	store_le32(h + EH_DESC_COUNT, count);
	memcpy(h + EH_LOG_GUID, w->log_guid.bytes, 16);
	store_le64(h + EH_FLUSHED, flushed_file_offset);
	store_le64(h + EH_LAST, last_file_offset);
}

static void put_data(uint8_t *d, uint8_t *sector, const struct vhdx_log_update *u, uint64_t seq)
{
	memcpy(d + D_SIGNATURE, SIG_DATA_DESC, 4);
	memcpy(d + D_TRAILING, u->data + SECTOR - TRAILING_LEN, TRAILING_LEN);
	memcpy(d + D_LEADING, u->data, LEADING_LEN);
	store_le64(d + D_FILE_OFFSET, u->file_offset);
	store_le64(d + D_SEQUENCE, seq);

	memcpy(sector + DS_SIGNATURE, SIG_DATA, 4);
	store_le32(sector + DS_SEQ_HIGH, (uint32_t)(seq >> 32));
	memcpy(sector + DS_DATA, u->data + LEADING_LEN, DS_DATA_LEN);
	store_le32(sector + DS_SEQ_LOW, (uint32_t)seq);
}

static void put_zero(uint8_t *d, const struct vhdx_log_update *u, uint64_t seq)
{
	memcpy(d + D_SIGNATURE, SIG_ZERO_DESC, 4);
	store_le64(d + D_ZERO_LENGTH, u->zero_length);
	store_le64(d + D_FILE_OFFSET, u->file_offset);
	store_le64(d + D_SEQUENCE, seq);
}

/* Fills a zeroed buffer of length bytes with the entry for the writer's next sequence. */
static void fill_entry(uint8_t *buf, uint32_t length, const struct vhdx_log_writer *w,
		       const struct vhdx_log_update *updates, unsigned count,
		       uint64_t flushed_file_offset, uint64_t last_file_offset)
{
	put_header(buf, w, length, count, flushed_file_offset, last_file_offset);
	uint8_t *sector = buf + descriptor_sectors(count) * SECTOR;
	for (unsigned i = 0; i < count; i++) {
		uint8_t *d = buf + EH_SIZE + (size_t)i * D_SIZE;
		if (updates[i].data) {
			put_data(d, sector, &updates[i], w->sequence);
			sector += SECTOR;
		} else {
			put_zero(d, &updates[i], w->sequence);
		}
	}
	store_le32(buf + EH_CHECKSUM, crc32c(0, buf, length));
}

static void split_pieces(const struct vhdx_log_writer *w, uint32_t length,
			 struct vhdx_log_piece pieces[2], unsigned *npieces)
{
	uint32_t first = w->log_length - w->head;
	if (length <= first) {
		pieces[0] = (struct vhdx_log_piece){ w->log_offset + w->head, length, 0 };
		*npieces = 1;
		return;
	}
	pieces[0] = (struct vhdx_log_piece){ w->log_offset + w->head, first, 0 };
	pieces[1] = (struct vhdx_log_piece){ w->log_offset, length - first, first };
	*npieces = 2;
}

static int check_build(const struct vhdx_log_writer *w, const struct vhdx_log_update *updates,
		       unsigned count, uint64_t last_file_offset)
{
	if (!writer_ok(w) || (count && !updates) || last_file_offset > FILE_OFFSET_MAX)
		return -EINVAL;
	if (w->sequence == 0)
		return -EOVERFLOW;
	for (unsigned i = 0; i < count; i++)
		if (!update_ok(w, &updates[i], last_file_offset))
			return -EINVAL;
	uint64_t length = entry_bytes(updates, count);
	if (length > (uint64_t)w->log_length - SECTOR)
		return -EFBIG;
	if (length > vhdx_log_space(w))
		return -ENOSPC;
	return 0;
}

int vhdx_log_entry_build(struct vhdx_log_writer *w, const struct vhdx_log_update *updates,
			 unsigned count, uint64_t flushed_file_offset, uint64_t last_file_offset,
			 uint8_t **out, uint32_t *out_len, struct vhdx_log_piece pieces[2],
			 unsigned *npieces)
{
	*out = NULL;
	*out_len = 0;
	*npieces = 0;
	int ret = check_build(w, updates, count, last_file_offset);
	if (ret < 0)
		return ret;
	uint32_t length = (uint32_t)entry_bytes(updates, count);
	uint8_t *buf = vdisk_alloc_aligned(length);
	if (!buf)
		return -ENOMEM;
	memset(buf, 0, length);
	fill_entry(buf, length, w, updates, count, flushed_file_offset, last_file_offset);
	split_pieces(w, length, pieces, npieces);
	w->head = (uint32_t)(((uint64_t)w->head + length) % w->log_length);
	w->sequence++;
	*out = buf;
	*out_len = length;
	return 0;
}

void vhdx_log_set_tail(struct vhdx_log_writer *w, uint32_t new_tail)
{
	if (!writer_ok(w) || new_tail >= w->log_length || new_tail % SECTOR)
		return;
	/* only forward, within the entries written since the current tail */
	uint32_t advance = (new_tail + w->log_length - w->tail) % w->log_length;
	if (advance <= used_bytes(w))
		w->tail = new_tail;
}

/* ---- replay: the log image in memory ---- */

struct log_image {
	uint8_t *buf;
	uint32_t nsectors;
	const struct guid *guid;
};

static uint8_t *sector_at(const struct log_image *log, uint64_t index)
{
	return log->buf + (size_t)(index % log->nsectors) * SECTOR;
}

/* Descriptor i of the entry starting at sector start. */
static uint8_t *descriptor_at(const struct log_image *log, uint32_t start, uint64_t i)
{
	uint64_t byte = EH_SIZE + i * D_SIZE;
	return sector_at(log, start + byte / SECTOR) + byte % SECTOR;
}

/* A valid entry found in the log. Sector numbers are log sector indexes. */
struct entry {
	uint32_t start, sectors, tail;
	uint32_t ndesc, ndata;
	uint64_t seq;
	uint64_t flushed, last;
	int32_t next, prev, chain;
	uint32_t pos;
};

static bool header_plausible(const struct log_image *log, const uint8_t *h, struct entry *e)
{
	uint32_t length = load_le32(h + EH_ENTRY_LENGTH), tail = load_le32(h + EH_TAIL);
	uint64_t log_bytes = (uint64_t)log->nsectors * SECTOR;
	if (memcmp(h + EH_SIGNATURE, SIG_ENTRY, 4) != 0)
		return false;
	if (!length || length % SECTOR || length > log_bytes || tail % SECTOR || tail >= log_bytes)
		return false;
	if (memcmp(h + EH_LOG_GUID, log->guid->bytes, 16) != 0)
		return false;
	e->sectors = length / SECTOR;
	e->tail = tail / SECTOR;
	e->seq = load_le64(h + EH_SEQUENCE);
	e->ndesc = load_le32(h + EH_DESC_COUNT);
	e->flushed = load_le64(h + EH_FLUSHED);
	e->last = load_le64(h + EH_LAST);
	return e->seq != 0 && descriptor_sectors(e->ndesc) <= e->sectors;
}

/* Signatures and sequence numbers of the descriptors; counts the data descriptors. */
static bool descriptors_plausible(const struct log_image *log, struct entry *e)
{
	e->ndata = 0;
	for (uint32_t i = 0; i < e->ndesc; i++) {
		const uint8_t *d = descriptor_at(log, e->start, i);
		if (load_le64(d + D_SEQUENCE) != e->seq)
			return false;
		if (memcmp(d + D_SIGNATURE, SIG_DATA_DESC, 4) == 0)
			e->ndata++;
		else if (memcmp(d + D_SIGNATURE, SIG_ZERO_DESC, 4) != 0 ||
			 load_le64(d + D_ZERO_LENGTH) % SECTOR)
			return false;
	}
	return descriptor_sectors(e->ndesc) + e->ndata == e->sectors;
}

/* A data sector whose sequence number differs is a torn write of the entry. */
static bool data_sectors_plausible(const struct log_image *log, const struct entry *e)
{
	uint64_t first = e->start + descriptor_sectors(e->ndesc);
	for (uint32_t k = 0; k < e->ndata; k++) {
		const uint8_t *s = sector_at(log, first + k);
		if (memcmp(s + DS_SIGNATURE, SIG_DATA, 4) != 0 ||
		    load_le32(s + DS_SEQ_HIGH) != (uint32_t)(e->seq >> 32) ||
		    load_le32(s + DS_SEQ_LOW) != (uint32_t)e->seq)
			return false;
	}
	return true;
}

static bool checksum_ok(const struct log_image *log, const struct entry *e)
{
	static const uint8_t zero[4];
	const uint8_t *h = sector_at(log, e->start);
	uint32_t crc = crc32c(0, h, EH_CHECKSUM);
	crc = crc32c(crc, zero, sizeof(zero));
	crc = crc32c(crc, h + EH_CHECKSUM + 4, SECTOR - EH_CHECKSUM - 4);
	for (uint32_t k = 1; k < e->sectors; k++)
		crc = crc32c(crc, sector_at(log, (uint64_t)e->start + k), SECTOR);
	return crc == load_le32(h + EH_CHECKSUM);
}

/* Whether a complete, untorn entry of this log starts at sector start. */
static bool parse_entry(const struct log_image *log, uint32_t start, struct entry *e)
{
	memset(e, 0, sizeof(*e));
	e->start = start;
	e->next = e->prev = e->chain = -1;
	return header_plausible(log, sector_at(log, start), e) && descriptors_plausible(log, e) &&
	       data_sectors_plausible(log, e) && checksum_ok(log, e);
}

/* ---- replay: finding the active sequence ---- */

struct scan {
	struct log_image log;
	struct entry *entries;
	uint32_t count;
	int32_t *at; /* sector -> index of the entry starting there, or -1 */
};

static int scan_entries(struct scan *sc)
{
	uint32_t n = sc->log.nsectors;
	sc->entries = malloc(sizeof(*sc->entries) * n);
	sc->at = malloc(sizeof(*sc->at) * n);
	if (!sc->entries || !sc->at)
		return -ENOMEM;
	sc->count = 0;
	for (uint32_t s = 0; s < n; s++) {
		sc->at[s] = -1;
		if (parse_entry(&sc->log, s, &sc->entries[sc->count]))
			sc->at[s] = (int32_t)sc->count++;
	}
	return 0;
}

/* Links each entry to the one that starts where it ends with the next sequence number. Valid
 * entries never overlap, so an entry has at most one predecessor. */
static void link_entries(struct scan *sc)
{
	for (uint32_t i = 0; i < sc->count; i++) {
		struct entry *e = &sc->entries[i];
		int32_t j = sc->at[((uint64_t)e->start + e->sectors) % sc->log.nsectors];
		if (j < 0 || (uint32_t)j == i || e->seq == UINT64_MAX)
			continue;
		struct entry *n = &sc->entries[j];
		if (n->seq == e->seq + 1 && n->prev < 0) {
			e->next = j;
			n->prev = (int32_t)i;
		}
	}
	for (uint32_t i = 0; i < sc->count; i++) {
		if (sc->entries[i].prev >= 0)
			continue;
		uint32_t pos = 0;
		for (int32_t j = (int32_t)i; j >= 0 && pos <= sc->count; j = sc->entries[j].next) {
			sc->entries[j].chain = (int32_t)i;
			sc->entries[j].pos = pos++;
		}
	}
}

/* The entry the head's Tail names, when it is on the head's chain at or before it. */
static int32_t tail_of(const struct scan *sc, const struct entry *head)
{
	int32_t t = sc->at[head->tail];
	if (t < 0 || head->chain < 0)
		return -1;
	const struct entry *e = &sc->entries[t];
	return e->chain == head->chain && e->pos <= head->pos ? t : -1;
}

/* The head of the active sequence: the valid sequence whose head has the highest sequence
 * number. *head is -1 when the log holds no valid sequence. Two valid sequences ending with
 * the same sequence number cannot come from one writer: that is corruption. */
static int find_head(const struct scan *sc, int32_t *head, char *err, size_t err_size)
{
	int32_t best = -1;
	bool tie = false;
	for (uint32_t i = 0; i < sc->count; i++) {
		const struct entry *e = &sc->entries[i];
		if (tail_of(sc, e) < 0)
			continue;
		if (best < 0 || e->seq > sc->entries[best].seq) {
			best = (int32_t)i;
			tie = false;
		} else if (e->seq == sc->entries[best].seq) {
			tie = true;
		}
	}
	*head = best;
	if (tie)
		return vdisk_errorf(
			err, err_size, -EINVAL,
			"the log holds two sequences ending with sequence number %llu: the log "
			"is corrupt",
			(unsigned long long)sc->entries[best].seq);
	return 0;
}

/* ---- replay: checking and applying the active sequence ---- */

struct replay {
	struct scan sc;
	struct vdisk_file *file;
	uint64_t log_offset;
	uint32_t log_length;
	int32_t tail, head;
	uint8_t *zeros;
};

/* The entries of the active sequence, tail to head. */
#define FOR_EACH_ACTIVE(r, i)                                                                      \
	for (int32_t i = (r)->tail; i >= 0; i = i == (r)->head ? -1 : (r)->sc.entries[i].next)

static int check_descriptor(const struct replay *r, const struct entry *e, const uint8_t *d,
			    uint64_t *zero_bytes, char *err, size_t err_size)
{
	bool data = memcmp(d + D_SIGNATURE, SIG_DATA_DESC, 4) == 0;
	uint64_t offset = load_le64(d + D_FILE_OFFSET);
	uint64_t len = data ? SECTOR : load_le64(d + D_ZERO_LENGTH);
	/* LastFileOffset bounds every structure; be lenient with writers that set it low */
	uint64_t limit = e->last > r->file->size ? e->last : r->file->size;
	if (!data)
		*zero_bytes += len > ZERO_BYTES_MAX ? ZERO_BYTES_MAX + 1 : len;
	if (target_allowed(r->log_offset, r->log_length, offset, len, limit))
		return 0;
	const char *why;
	if (offset % SECTOR || len % SECTOR || offset > UINT64_MAX - len)
		why = "is not 4 KiB aligned or overflows";
	else if (offset < HEADER_AREA)
		why = "lies in the file header area (first 1 MiB)";
	else if (ranges_overlap(offset, len, r->log_offset, r->log_length))
		why = "lies inside the log itself";
	else
		why = "ends beyond the entry's LastFileOffset and the end of the file";
	return vdisk_errorf(
		err, err_size, -EINVAL,
		"log entry %llu writes %llu bytes at file offset %llu, which %s: the log is "
		"corrupt",
		(unsigned long long)e->seq, (unsigned long long)len, (unsigned long long)offset,
		why);
}

static int check_entry(const struct replay *r, const struct entry *e, uint64_t *zero_bytes,
		       char *err, size_t err_size)
{
	if (e->last > FILE_OFFSET_MAX)
		return vdisk_errorf(
			err, err_size, -EINVAL,
			"log entry %llu asks for a file size of %llu bytes: the log is corrupt",
			(unsigned long long)e->seq, (unsigned long long)e->last);
	for (uint32_t i = 0; i < e->ndesc; i++) {
		int ret = check_descriptor(r, e, descriptor_at(&r->sc.log, e->start, i), zero_bytes,
					   err, err_size);
		if (ret < 0)
			return ret;
	}
	return 0;
}

static int check_sequence(const struct replay *r, char *err, size_t err_size)
{
	uint64_t zero_bytes = 0;
	FOR_EACH_ACTIVE(r, i)
	{
		int ret = check_entry(r, &r->sc.entries[i], &zero_bytes, err, err_size);
		if (ret < 0)
			return ret;
	}
	if (zero_bytes > ZERO_BYTES_MAX)
		return vdisk_errorf(err, err_size, -EINVAL,
				    "the log asks to zero more than %llu GiB: the log is corrupt",
				    (unsigned long long)(ZERO_BYTES_MAX >> 30));
	const struct entry *h = &r->sc.entries[r->head];
	if (h->flushed > r->file->size)
		return vdisk_errorf(
			err, err_size, -EINVAL,
			"the file is %llu bytes but the log says %llu bytes were durable: the "
			"file was truncated",
			(unsigned long long)r->file->size, (unsigned long long)h->flushed);
	return 0;
}

static int apply_data(struct replay *r, const struct entry *e, const uint8_t *d,
		      uint32_t data_index)
{
	uint8_t sector[SECTOR];
	const uint8_t *s = sector_at(&r->sc.log, (uint64_t)e->start + descriptor_sectors(e->ndesc) +
							 data_index);
	memcpy(sector, d + D_LEADING, LEADING_LEN);
	memcpy(sector + LEADING_LEN, s + DS_DATA, DS_DATA_LEN);
	memcpy(sector + SECTOR - TRAILING_LEN, d + D_TRAILING, TRAILING_LEN);
	return vdisk_file_pwrite(r->file, sector, SECTOR, load_le64(d + D_FILE_OFFSET));
}

/* Zeros past the current end of the file need no writing: the file reads zeros there once
 * it is extended, and later writes land on top in order. */
static int apply_zero(struct replay *r, const uint8_t *d)
{
	uint64_t offset = load_le64(d + D_FILE_OFFSET);
	uint64_t end = offset + load_le64(d + D_ZERO_LENGTH);
	if (end > r->file->size)
		end = r->file->size;
	if (offset >= end)
		return 0;
	if (!r->zeros) {
		r->zeros = calloc(1, ZERO_CHUNK);
		if (!r->zeros)
			return -ENOMEM;
	}
	while (offset < end) {
		size_t n = end - offset < ZERO_CHUNK ? (size_t)(end - offset) : ZERO_CHUNK;
		int ret = vdisk_file_pwrite(r->file, r->zeros, n, offset);
		if (ret < 0)
			return ret;
		offset += n;
	}
	return 0;
}

static int apply_entry(struct replay *r, const struct entry *e)
{
	uint32_t data_index = 0;
	for (uint32_t i = 0; i < e->ndesc; i++) {
		const uint8_t *d = descriptor_at(&r->sc.log, e->start, i);
		int ret;
		if (memcmp(d + D_SIGNATURE, SIG_DATA_DESC, 4) == 0)
			ret = apply_data(r, e, d, data_index++);
		else
			ret = apply_zero(r, d);
		if (ret < 0)
			return ret;
	}
	return 0;
}

static int apply_sequence(struct replay *r, char *err, size_t err_size)
{
	FOR_EACH_ACTIVE(r, i)
	{
		int ret = apply_entry(r, &r->sc.entries[i]);
		if (ret < 0)
			return vdisk_errorf(
				err, err_size, ret, "cannot write log entry %llu in place: %s",
				(unsigned long long)r->sc.entries[i].seq, strerror(-ret));
	}
	uint64_t last = r->sc.entries[r->head].last;
	int ret = 0;
	if (r->file->size < last) {
		ret = vdisk_file_set_size(r->file, last);
		if (ret < 0)
			return vdisk_errorf(
				err, err_size, ret,
				"cannot extend the file to %llu bytes as the log asks: %s",
				(unsigned long long)last, strerror(-ret));
	}
	ret = vdisk_file_sync(r->file);
	if (ret < 0)
		return vdisk_errorf(err, err_size, ret, "cannot flush the replayed log: %s",
				    strerror(-ret));
	return 0;
}

static void fill_result(const struct replay *r, struct vhdx_log_replay_result *result)
{
	const struct entry *h = &r->sc.entries[r->head];
	result->sequence = h->seq;
	result->last_file_offset = h->last;
	FOR_EACH_ACTIVE(r, i)
	{
		result->entries++;
		result->descriptors += r->sc.entries[i].ndesc;
	}
}

static int check_region(const struct vdisk_file *file, uint64_t log_offset, uint32_t log_length,
			char *err, size_t err_size)
{
	if (!log_geometry_ok(log_offset, log_length))
		return vdisk_errorf(
			err, err_size, -EINVAL,
			"the log (offset %llu, %u bytes) is not a whole number of MiB at or "
			"after 1 MiB, or is longer than %u MiB",
			(unsigned long long)log_offset, log_length, LOG_MAX_LENGTH / MIB);
	if (log_offset + log_length > file->size)
		return vdisk_errorf(
			err, err_size, -EINVAL,
			"the log (offset %llu, %u bytes) ends beyond the end of the file (%llu "
			"bytes): the file is truncated or the header is corrupt",
			(unsigned long long)log_offset, log_length, (unsigned long long)file->size);
	return 0;
}

static int load_log(struct replay *r, const struct guid *log_guid, char *err, size_t err_size)
{
	r->sc.log.guid = log_guid;
	r->sc.log.nsectors = r->log_length / SECTOR;
	r->sc.log.buf = malloc(r->log_length);
	if (!r->sc.log.buf)
		return vdisk_errorf(err, err_size, -ENOMEM, "out of memory reading the %u MiB log",
				    r->log_length / MIB);
	int ret = vdisk_file_pread(r->file, r->sc.log.buf, r->log_length, r->log_offset);
	if (ret < 0)
		return vdisk_errorf(err, err_size, ret, "cannot read the log: %s", strerror(-ret));
	ret = scan_entries(&r->sc);
	if (ret < 0)
		return vdisk_errorf(err, err_size, ret, "out of memory scanning the log");
	link_entries(&r->sc);
	return 0;
}

static int find_sequence(struct replay *r, char *err, size_t err_size)
{
	int ret = find_head(&r->sc, &r->head, err, err_size);
	if (ret < 0 || r->head < 0)
		return ret;
	r->tail = tail_of(&r->sc, &r->sc.entries[r->head]);
	return check_sequence(r, err, err_size);
}

int vhdx_log_replay(struct vdisk_file *file, uint64_t log_offset, uint32_t log_length,
		    const struct guid *log_guid, bool apply, struct vhdx_log_replay_result *result,
		    char *err, size_t err_size)
{
	struct vhdx_log_replay_result none = { 0 };
	if (!result)
		result = &none;
	*result = (struct vhdx_log_replay_result){ 0 };
	if (guid_is_zero(log_guid))
		return 0; /* a zero LogGuid: the log is empty */
	int ret = check_region(file, log_offset, log_length, err, err_size);
	if (ret < 0)
		return ret;

	struct replay r = { .file = file,
			    .log_offset = log_offset,
			    .log_length = log_length,
			    .head = -1,
			    .tail = -1 };
	ret = load_log(&r, log_guid, err, err_size);
	if (ret == 0)
		ret = find_sequence(&r, err, err_size);
	if (ret == 0 && r.head >= 0 && apply)
		ret = apply_sequence(&r, err, err_size);
	if (ret == 0 && r.head >= 0)
		fill_result(&r, result);
	free(r.zeros);
	free(r.sc.at);
	free(r.sc.entries);
	free(r.sc.log.buf);
	return ret;
}
