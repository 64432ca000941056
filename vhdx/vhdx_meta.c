/* VHDX metadata: checksums, headers (parse, build, the update protocol), loading an image
 * (file identifier, headers, log replay, region tables, metadata items, BAT, parent
 * locator) with every size and offset bounded, finding a differencing image's parent,
 * creation, info and check/repair. The I/O path (vhdx.c) works from what vhdx_load leaves
 * in struct vhdx; the log (vhdx_log.c) replays what an unclean close left.
 *
 * Format facts this file relies on, from [MS-VHDX] and from what Hyper-V, QEMU
 * (block/vhdx.c) and libvhdi do:
 * - Fixed and dynamic images differ only in the LeaveBlocksAllocated flag (and in having
 *   every block present); QEMU and libvhdi call an image "fixed" by that flag.
 * - A payload block needs to lie in the file only as far as the virtual disk reaches into
 *   it: QEMU makes fixed images exactly data offset + virtual size long, so the last block
 *   of a size that is not whole blocks ends beyond the end of the file.
 * - QEMU leaves 5 MiB between its metadata and the first block, and Hyper-V lays regions
 *   out as it likes: space before the first block is the creator's layout, not a leak.
 * - parent_linkage is the parent's DataWriteGuid as "{guid}" in lower case: libvhdi parses
 *   exactly that form (38 characters, braces, lower-case hex); readers here take any case.
 * - Sector bitmap entries of non-differencing images carry no meaning; they are accepted
 *   in any valid bitmap state.
 */
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <jansson.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "arith.h"
#include "json_util.h"
#include "crc32c.h"
#include "endian.h"
#include "guid.h"
#include "utf16.h"
#include "parent_search.h"
#include "vhdx_internal.h"

#define MiB VHDX_MiB

#define CREATOR			"hvstack"
#define DEFAULT_BLOCK_SIZE	(32u << 20) /* Hyper-V's for fixed and dynamic images */
#define DEFAULT_DIFF_BLOCK_SIZE (2u << 20)  /* Hyper-V's for differencing images */
#define CREATE_LOG_OFFSET	(1u << 20)
#define CREATE_LOG_LENGTH	(1u << 20)
#define CREATE_METADATA_OFFSET	(2u << 20)
#define CREATE_METADATA_LENGTH	(1u << 20)
#define CREATE_BAT_OFFSET	(3u << 20)
#define CREATE_LOGICAL_SECTOR	512u
#define CREATE_PHYSICAL_SECTOR	4096u
#define LOCATOR_VALUE_MAX	65534u /* a u16 length in bytes, even */
#define MAX_REPEATED_FINDINGS	32
#define COPY_CHUNK		(1u << 20)

/* ---- small helpers ---- */

static unsigned long long ull(uint64_t v)
{
	return (unsigned long long)v;
}

static const char *plural(uint64_t n, const char *one, const char *many)
{
	return n == 1 ? one : many;
}

static void guid_text(const struct guid *g, char *out)
{
	guid_format(g, out);
}

/* UTF-16LE (len bytes, no terminator needed) as malloc'd UTF-8; NULL in *out when it does
 * not decode. Returns 0 or -ENOMEM. */
static int utf16_dup(const uint8_t *data, size_t len, char **out)
{
	size_t size = len / 2 * 3 + 1;
	char *s = malloc(size);
	*out = NULL;
	if (!s)
		return -ENOMEM;
	if ((len & 1) || utf16le_to_utf8(data, len, s, size) < 0) {
		free(s);
		return 0;
	}
	*out = s;
	return 0;
}

/* ---- checksums and headers ---- */

uint32_t vhdx_checksum(const uint8_t *buf, size_t len, size_t checksum_offset)
{
	static const uint8_t zero[4];
	uint32_t crc = crc32c(0, buf, checksum_offset);
	crc = crc32c(crc, zero, sizeof(zero));
	return crc32c(crc, buf + checksum_offset + 4, len - checksum_offset - 4);
}

static void header_fields(const uint8_t *raw, struct vhdx_header *h)
{
	h->checksum = load_le32(raw + VHDX_H_CHECKSUM);
	h->sequence = load_le64(raw + VHDX_H_SEQUENCE);
	memcpy(h->file_write_guid.bytes, raw + VHDX_H_FILE_WRITE_GUID, 16);
	memcpy(h->data_write_guid.bytes, raw + VHDX_H_DATA_WRITE_GUID, 16);
	memcpy(h->log_guid.bytes, raw + VHDX_H_LOG_GUID, 16);
	h->log_version = load_le16(raw + VHDX_H_LOG_VERSION);
	h->version = load_le16(raw + VHDX_H_VERSION);
	h->log_length = load_le32(raw + VHDX_H_LOG_LENGTH);
	h->log_offset = load_le64(raw + VHDX_H_LOG_OFFSET);
}

int vhdx_header_parse(const uint8_t *raw, struct vhdx_header *h, char *why, size_t why_size)
{
	memset(h, 0, sizeof(*h));
	if (memcmp(raw + VHDX_H_SIGNATURE, VHDX_HEADER_SIGNATURE, 4))
		return vdisk_errorf(why, why_size, -EINVAL, "no header signature (\"head\")");
	header_fields(raw, h);
	uint32_t sum = vhdx_checksum(raw, VHDX_HEADER_SIZE, VHDX_H_CHECKSUM);
	if (h->checksum != sum)
		return vdisk_errorf(why, why_size, -EINVAL,
				    "checksum mismatch (stored 0x%08" PRIx32
				    ", computed 0x%08" PRIx32 ")",
				    h->checksum, sum);
	if (h->version != VHDX_HEADER_VERSION)
		return vdisk_errorf(why, why_size, -EINVAL, "unsupported version %u (1 is known)",
				    h->version);
	if (h->log_offset % MiB || h->log_length % MiB)
		return vdisk_errorf(why, why_size, -EINVAL,
				    "the log (%" PRIu32 " bytes at byte %llu) is not in whole MiB",
				    h->log_length, ull(h->log_offset));
	if (h->log_length && h->log_offset < VHDX_HEADER_SECTION_SIZE)
		return vdisk_errorf(
			why, why_size, -EINVAL,
			"the log (at byte %llu) overlaps the header section (the first 1 MiB)",
			ull(h->log_offset));
	if (h->log_offset > UINT64_MAX - h->log_length)
		return vdisk_errorf(why, why_size, -EINVAL,
				    "the log offset %llu is beyond any file", ull(h->log_offset));
	return 0;
}

void vhdx_header_build(const struct vhdx_header *h, uint8_t *raw)
{
	memset(raw, 0, VHDX_HEADER_SIZE);
	memcpy(raw + VHDX_H_SIGNATURE, VHDX_HEADER_SIGNATURE, 4);
	store_le64(raw + VHDX_H_SEQUENCE, h->sequence);
	memcpy(raw + VHDX_H_FILE_WRITE_GUID, h->file_write_guid.bytes, 16);
	memcpy(raw + VHDX_H_DATA_WRITE_GUID, h->data_write_guid.bytes, 16);
	memcpy(raw + VHDX_H_LOG_GUID, h->log_guid.bytes, 16);
	store_le16(raw + VHDX_H_LOG_VERSION, h->log_version);
	store_le16(raw + VHDX_H_VERSION, h->version);
	store_le32(raw + VHDX_H_LOG_LENGTH, h->log_length);
	store_le64(raw + VHDX_H_LOG_OFFSET, h->log_offset);
	store_le32(raw + VHDX_H_CHECKSUM, vhdx_checksum(raw, VHDX_HEADER_SIZE, VHDX_H_CHECKSUM));
}

static const uint64_t header_offsets[2] = { VHDX_HEADER1_OFFSET, VHDX_HEADER2_OFFSET };
static const uint64_t region_table_offsets[2] = { VHDX_REGION_TABLE1_OFFSET,
						  VHDX_REGION_TABLE2_OFFSET };

/* Both copies of the header as on disk. */
struct header_pair {
	uint8_t raw[2][VHDX_HEADER_SIZE];
	struct vhdx_header h[2];
	bool valid[2];
	char why[2][160];
};

static int read_headers(struct vdisk_file *file, struct header_pair *p)
{
	for (int i = 0; i < 2; i++) {
		int ret = vdisk_file_pread(file, p->raw[i], VHDX_HEADER_SIZE, header_offsets[i]);
		if (ret)
			return ret;
		p->valid[i] =
			vhdx_header_parse(p->raw[i], &p->h[i], p->why[i], sizeof(p->why[i])) == 0;
	}
	return 0;
}

static bool headers_same(const struct vhdx_header *a, const struct vhdx_header *b)
{
	return a->sequence == b->sequence && guid_equal(&a->file_write_guid, &b->file_write_guid) &&
	       guid_equal(&a->data_write_guid, &b->data_write_guid) &&
	       guid_equal(&a->log_guid, &b->log_guid) && a->log_version == b->log_version &&
	       a->version == b->version && a->log_length == b->log_length &&
	       a->log_offset == b->log_offset;
}

/* The current header: the valid one with the higher sequence number. Two valid headers
 * with the same sequence number are accepted when they are the same (Disk2VHD writes
 * them so). */
static int pick_header(const struct header_pair *p, int *current, char *err, size_t err_size)
{
	if (!p->valid[0] && !p->valid[1])
		return vdisk_errorf(
			err, err_size, -EINVAL,
			"neither VHDX header is valid (header 1 at 64 KiB: %s; header 2 at "
			"128 KiB: %s)",
			p->why[0], p->why[1]);
	if (!p->valid[0] || !p->valid[1]) {
		*current = p->valid[1];
		return 0;
	}
	if (p->h[0].sequence != p->h[1].sequence) {
		*current = p->h[1].sequence > p->h[0].sequence;
		return 0;
	}
	if (!headers_same(&p->h[0], &p->h[1]))
		return vdisk_errorf(
			err, err_size, -EINVAL,
			"both headers have sequence number %llu but differ: which one is "
			"current cannot be told",
			ull(p->h[0].sequence));
	*current = 0;
	return 0;
}

static int load_headers(struct vdisk_file *file, struct vhdx *v, char *err, size_t err_size)
{
	struct header_pair *p = malloc(sizeof(*p));
	if (!p)
		return vdisk_errorf(err, err_size, -ENOMEM, "out of memory");
	int ret = read_headers(file, p);
	if (ret)
		vdisk_errorf(err, err_size, ret, "cannot read the headers: %s", strerror(-ret));
	else
		ret = pick_header(p, &v->current_header, err, err_size);
	if (ret == 0)
		v->header = p->h[v->current_header];
	free(p);
	return ret;
}

static int write_header(struct vdisk_file *file, int slot, const struct vhdx_header *h)
{
	uint8_t *raw = malloc(VHDX_HEADER_SIZE);
	if (!raw)
		return -ENOMEM;
	vhdx_header_build(h, raw);
	int ret = vdisk_file_pwrite(file, raw, VHDX_HEADER_SIZE, header_offsets[slot]);
	if (ret == 0)
		ret = vdisk_file_sync(file);
	free(raw);
	return ret;
}

/* Sequence numbers about to wrap: both copies are rewritten with the current contents and
 * sequence numbers 1 (the other copy) and 2 (the current copy). Each step leaves the
 * current copy intact or the contents unchanged, so a crash in between is harmless. */
static int renumber_headers(struct vdisk_file *file, struct vhdx *v)
{
	struct vhdx_header h = v->header;
	h.sequence = 1;
	int ret = write_header(file, !v->current_header, &h);
	if (ret)
		return ret;
	h.sequence = 2;
	ret = write_header(file, v->current_header, &h);
	if (ret == 0)
		v->header = h;
	return ret;
}

int vhdx_header_update(struct vdisk *disk, struct vhdx *vhdx, const struct guid *file_write,
		       const struct guid *data_write, const struct guid *log_guid)
{
	if (disk->read_only)
		return -EROFS;
	if (vhdx->header.sequence >= UINT64_MAX - 1) {
		int ret = renumber_headers(disk->file, vhdx);
		if (ret)
			return ret;
	}
	struct vhdx_header h = vhdx->header;
	if (file_write)
		h.file_write_guid = *file_write;
	if (data_write)
		h.data_write_guid = *data_write;
	if (log_guid)
		h.log_guid = *log_guid;
	for (int i = 0; i < 2; i++) {
		int slot = !vhdx->current_header;
		h.sequence = vhdx->header.sequence + 1;
		int ret = write_header(disk->file, slot, &h);
		if (ret)
			return ret;
		vhdx->header = h;
		vhdx->current_header = slot;
	}
	return 0;
}

/* ---- probe ---- */

int vhdx_probe(const struct vdisk_probe *probe)
{
	if (probe->head_len >= 8 && !memcmp(probe->head, VHDX_FILE_SIGNATURE, 8))
		return 100;
	return 0;
}

/* ---- the file identifier ---- */

/* The creator as UTF-8, cut (on a character boundary) to what out holds. */
static void creator_decode(const uint8_t *utf16, char *out, size_t out_size)
{
	char buf[VHDX_CREATOR_BYTES / 2 * 3 + 1];
	ssize_t n = utf16le_to_utf8(utf16, VHDX_CREATOR_BYTES, buf, sizeof(buf));
	size_t len = n > 0 ? (size_t)n : 0;
	if (len >= out_size) {
		len = out_size - 1;
		while (len && ((unsigned char)buf[len] & 0xc0) == 0x80)
			len--;
	}
	memcpy(out, buf, len);
	out[len] = 0;
}

static int load_file_id(struct vdisk_file *file, struct vhdx *v, char *err, size_t err_size)
{
	uint8_t id[VHDX_CREATOR_OFFSET + VHDX_CREATOR_BYTES];

	if (file->size < VHDX_HEADER_SECTION_SIZE)
		return vdisk_errorf(
			err, err_size, -EINVAL,
			"the file is %llu bytes, too small for a VHDX (its header section "
			"alone is 1 MiB)",
			ull(file->size));
	int ret = vdisk_file_pread(file, id, sizeof(id), 0);
	if (ret)
		return vdisk_errorf(err, err_size, ret, "cannot read the file identifier: %s",
				    strerror(-ret));
	if (memcmp(id, VHDX_FILE_SIGNATURE, 8))
		return vdisk_errorf(
			err, err_size, -EINVAL,
			"no VHDX file identifier (the file does not start with \"vhdxfile\")");
	creator_decode(id + VHDX_CREATOR_OFFSET, v->creator, sizeof(v->creator));
	return 0;
}

/* ---- the log ---- */

static int check_log_region(const struct vdisk_file *file, const struct vhdx *v, char *err,
			    size_t err_size)
{
	const struct vhdx_header *h = &v->header;
	if (h->log_length && h->log_offset + h->log_length > file->size)
		return vdisk_errorf(err, err_size, -EINVAL,
				    "the log (%" PRIu32
				    " bytes at byte %llu) extends past the end of the "
				    "file (%llu bytes)",
				    h->log_length, ull(h->log_offset), ull(file->size));
	return 0;
}

/* Replays a dirty log (or, read-only for repair, only looks at it). The specification
 * counts replay as a change of the file: FileWriteGuid is renewed before, LogGuid cleared
 * after. */
static int load_log(struct vdisk *disk, struct vhdx *v, char *err, size_t err_size)
{
	const struct vhdx_header *h = &v->header;
	static const struct guid zero;
	struct guid fw;
	char why[256];

	if (guid_is_zero(&h->log_guid))
		return 0;
	if (h->log_version != VHDX_LOG_FORMAT_VERSION)
		return vdisk_errorf(
			err, err_size, -EINVAL,
			"the log has format version %u (0 is known): it cannot be replayed",
			h->log_version);
	if (!h->log_length)
		return vdisk_errorf(err, err_size, -EINVAL,
				    "the header says the log holds changes, but the log is empty");
	if (disk->read_only) {
		if (!disk->opts.for_repair)
			return vdisk_errorf(
				err, err_size, -EROFS,
				"the log holds changes that were not applied (the image was "
				"not closed cleanly); run 'vdisk check --repair %s' to replay "
				"it",
				disk->file->path);
		/* what replay would do, for check to report */
		vhdx_log_replay(disk->file, h->log_offset, h->log_length, &h->log_guid, false,
				&v->replay, why, sizeof(why));
		v->log_dirty = true;
		return 0;
	}
	int ret = guid_generate(&fw);
	if (ret == 0)
		ret = vhdx_header_update(disk, v, &fw, NULL, NULL);
	if (ret)
		return vdisk_errorf(err, err_size, ret,
				    "cannot update the header to replay the log: %s",
				    strerror(-ret));
	ret = vhdx_log_replay(disk->file, h->log_offset, h->log_length, &h->log_guid, true,
			      &v->replay, why, sizeof(why));
	if (ret)
		return vdisk_errorf(err, err_size, ret, "cannot replay the log: %s", why);
	ret = vhdx_header_update(disk, v, NULL, NULL, &zero);
	if (ret)
		return vdisk_errorf(err, err_size, ret,
				    "cannot clear the log after replaying it: %s", strerror(-ret));
	v->replayed = true;
	return 0;
}

/* ---- region tables ---- */

static const char *region_name(const struct guid *g)
{
	if (guid_equal(g, &VHDX_REGION_BAT))
		return "BAT";
	if (guid_equal(g, &VHDX_REGION_METADATA))
		return "metadata";
	return NULL;
}

/* "the BAT region", "region 01234567-..." */
static void region_text(const struct guid *g, char *out, size_t size)
{
	const char *name = region_name(g);
	char s[GUID_STR_LEN + 1];
	if (name) {
		snprintf(out, size, "the %s region", name);
		return;
	}
	guid_text(g, s);
	snprintf(out, size, "region %s", s);
}

static int region_entry_parse(const uint8_t *e, unsigned i, struct vhdx_region *r, char *why,
			      size_t why_size)
{
	char name[64];
	memcpy(r->guid.bytes, e + VHDX_RE_GUID, 16);
	r->file_offset = load_le64(e + VHDX_RE_FILE_OFFSET);
	r->length = load_le32(e + VHDX_RE_LENGTH);
	r->required = load_le32(e + VHDX_RE_FLAGS) & VHDX_RE_REQUIRED;
	region_text(&r->guid, name, sizeof(name));
	if (r->file_offset % MiB || r->length % MiB)
		return vdisk_errorf(why, why_size, -EINVAL,
				    "entry %u (%s: %" PRIu32
				    " bytes at byte %llu) is not in whole MiB",
				    i, name, r->length, ull(r->file_offset));
	if (r->length && r->file_offset < VHDX_HEADER_SECTION_SIZE)
		return vdisk_errorf(why, why_size, -EINVAL,
				    "entry %u (%s) lies in the header section (at byte %llu)", i,
				    name, ull(r->file_offset));
	if (r->file_offset > UINT64_MAX - r->length)
		return vdisk_errorf(why, why_size, -EINVAL, "entry %u (%s) lies beyond any file", i,
				    name);
	return 0;
}

/* A region table: signature, checksum, count, entries (aligned, unique, not overlapping).
 * *out is malloc'd. */
static int region_table_parse(const uint8_t *raw, struct vhdx_region **out, unsigned *count,
			      char *why, size_t why_size)
{
	*out = NULL;
	*count = 0;
	if (memcmp(raw + VHDX_RT_SIGNATURE, VHDX_REGION_SIGNATURE, 4))
		return vdisk_errorf(why, why_size, -EINVAL, "no region table signature (\"regi\")");
	uint32_t stored = load_le32(raw + VHDX_RT_CHECKSUM);
	uint32_t sum = vhdx_checksum(raw, VHDX_REGION_TABLE_SIZE, VHDX_RT_CHECKSUM);
	if (stored != sum)
		return vdisk_errorf(why, why_size, -EINVAL,
				    "checksum mismatch (stored 0x%08" PRIx32
				    ", computed 0x%08" PRIx32 ")",
				    stored, sum);
	uint32_t n = load_le32(raw + VHDX_RT_ENTRY_COUNT);
	if (n > VHDX_REGION_MAX_ENTRIES)
		return vdisk_errorf(why, why_size, -EINVAL,
				    "%" PRIu32 " entries (at most 2047 are allowed)", n);
	struct vhdx_region *r = calloc(n ? n : 1, sizeof(*r));
	if (!r)
		return vdisk_errorf(why, why_size, -ENOMEM, "out of memory");
	for (uint32_t i = 0; i < n; i++) {
		int ret = region_entry_parse(raw + VHDX_RT_ENTRIES + (size_t)i * VHDX_RE_SIZE, i,
					     &r[i], why, why_size);
		for (uint32_t k = 0; ret == 0 && k < i; k++) {
			char a[64], b[64];
			region_text(&r[k].guid, a, sizeof(a));
			region_text(&r[i].guid, b, sizeof(b));
			if (guid_equal(&r[k].guid, &r[i].guid))
				ret = vdisk_errorf(why, why_size, -EINVAL, "%s is listed twice", a);
			else if (ranges_overlap(r[k].file_offset, r[k].length, r[i].file_offset,
						r[i].length))
				ret = vdisk_errorf(why, why_size, -EINVAL, "%s and %s overlap", a,
						   b);
		}
		if (ret) {
			free(r);
			return ret;
		}
	}
	*out = r;
	*count = n;
	return 0;
}

/* Both region tables as on disk. */
struct region_pair {
	uint8_t *raw[2];
	struct vhdx_region *r[2];
	unsigned n[2];
	bool valid[2];
	char why[2][200];
};

static void region_pair_free(struct region_pair *p)
{
	for (int i = 0; i < 2; i++) {
		free(p->raw[i]);
		free(p->r[i]);
	}
}

static int read_region_tables(struct vdisk_file *file, struct region_pair *p)
{
	memset(p, 0, sizeof(*p));
	for (int i = 0; i < 2; i++) {
		p->raw[i] = malloc(VHDX_REGION_TABLE_SIZE);
		if (!p->raw[i])
			return -ENOMEM;
		int ret = vdisk_file_pread(file, p->raw[i], VHDX_REGION_TABLE_SIZE,
					   region_table_offsets[i]);
		if (ret)
			return ret;
		ret = region_table_parse(p->raw[i], &p->r[i], &p->n[i], p->why[i],
					 sizeof(p->why[i]));
		if (ret == -ENOMEM)
			return ret;
		p->valid[i] = ret == 0;
	}
	return 0;
}

/* A known region: inside the file and clear of the log. */
static int region_usable(const struct vdisk_file *file, const struct vhdx *v,
			 const struct vhdx_region *r, char *err, size_t err_size)
{
	const struct vhdx_header *h = &v->header;
	char name[64];
	region_text(&r->guid, name, sizeof(name));
	if (r->file_offset + r->length > file->size)
		return vdisk_errorf(err, err_size, -EINVAL,
				    "%s (%" PRIu32
				    " bytes at byte %llu) extends past the end of the file "
				    "(%llu bytes): the file is truncated",
				    name, r->length, ull(r->file_offset), ull(file->size));
	if (ranges_overlap(r->file_offset, r->length, h->log_offset, h->log_length))
		return vdisk_errorf(err, err_size, -EINVAL, "%s overlaps the log", name);
	return 0;
}

static int use_regions(const struct vdisk_file *file, struct vhdx *v, char *err, size_t err_size)
{
	bool bat = false, meta = false;
	for (unsigned i = 0; i < v->nregions; i++) {
		const struct vhdx_region *r = &v->regions[i];
		char name[64];
		int ret = 0;
		region_text(&r->guid, name, sizeof(name));
		if (guid_equal(&r->guid, &VHDX_REGION_BAT)) {
			bat = true;
			v->bat_offset = r->file_offset;
			v->bat_length = r->length;
		} else if (guid_equal(&r->guid, &VHDX_REGION_METADATA)) {
			meta = true;
			v->metadata_offset = r->file_offset;
			v->metadata_length = r->length;
			if (r->length < VHDX_METADATA_TABLE_SIZE)
				return vdisk_errorf(err, err_size, -EINVAL,
						    "the metadata region is empty");
		} else if (r->required) {
			return vdisk_errorf(
				err, err_size, -ENOTSUP,
				"the image has a required %s that this implementation does not "
				"know: it cannot be opened",
				name);
		} else {
			continue;
		}
		ret = region_usable(file, v, r, err, err_size);
		if (ret)
			return ret;
	}
	if (!bat || !meta)
		return vdisk_errorf(err, err_size, -EINVAL, "the region table has no %s region",
				    bat ? "metadata" : "BAT");
	return 0;
}

/* A change of the region table (resize moving the BAT) writes one copy after the other;
 * a crash between them leaves two valid tables that differ. A read-write open makes the
 * other copy equal to the one in use, as it replays the log (after a new FileWriteGuid:
 * the headers change before anything else). */
static int sync_region_tables(struct vdisk *disk, struct vhdx *v, const struct region_pair *p,
			      int used, char *err, size_t err_size)
{
	if (disk->read_only || !p->valid[!used] ||
	    !memcmp(p->raw[0], p->raw[1], VHDX_REGION_TABLE_SIZE))
		return 0;
	struct guid fw;
	int ret = guid_generate(&fw);
	if (ret == 0)
		ret = vhdx_header_update(disk, v, &fw, NULL, NULL);
	if (ret == 0)
		ret = vdisk_file_pwrite(disk->file, p->raw[used], VHDX_REGION_TABLE_SIZE,
					region_table_offsets[!used]);
	if (ret == 0)
		ret = vdisk_file_sync(disk->file);
	if (ret)
		vdisk_errorf(err, err_size, ret,
			     "cannot rewrite the out-of-date region table %d: %s", 2 - used,
			     strerror(-ret));
	return ret;
}

static int load_regions(struct vdisk *disk, struct vhdx *v, char *err, size_t err_size)
{
	struct vdisk_file *file = disk->file;
	struct region_pair p;
	int ret = read_region_tables(file, &p);
	if (ret) {
		vdisk_errorf(err, err_size, ret, "cannot read the region tables: %s",
			     strerror(-ret));
	} else if (!p.valid[0] && !p.valid[1]) {
		ret = vdisk_errorf(
			err, err_size, -EINVAL,
			"neither region table is valid (table 1 at 192 KiB: %s; table 2 at "
			"256 KiB: %s)",
			p.why[0], p.why[1]);
	} else {
		int i = p.valid[0] ? 0 : 1;
		v->region_table = i;
		v->regions = p.r[i];
		v->nregions = p.n[i];
		p.r[i] = NULL;
		ret = use_regions(file, v, err, err_size);
		if (ret == 0)
			ret = sync_region_tables(disk, v, &p, i, err, err_size);
	}
	region_pair_free(&p);
	return ret;
}

/* ---- metadata ---- */

enum item {
	ITEM_FILE_PARAMETERS,
	ITEM_VIRTUAL_SIZE,
	ITEM_PAGE83,
	ITEM_LOGICAL_SECTOR,
	ITEM_PHYSICAL_SECTOR,
	ITEM_PARENT_LOCATOR,
	ITEM_COUNT,
};

static const struct {
	const char *name;
	uint32_t size; /* exact size; the locator's is its minimum */
	uint32_t flags;
} items[ITEM_COUNT] = {
	[ITEM_FILE_PARAMETERS] = { "File Parameters", VHDX_FP_SIZE, VHDX_ME_IS_REQUIRED },
	[ITEM_VIRTUAL_SIZE] = { "Virtual Disk Size", VHDX_VIRTUAL_SIZE_ITEM_SIZE,
				VHDX_ME_IS_REQUIRED | VHDX_ME_IS_VIRTUAL_DISK },
	[ITEM_PAGE83] = { "Page 83 Data", VHDX_PAGE83_ITEM_SIZE,
			  VHDX_ME_IS_REQUIRED | VHDX_ME_IS_VIRTUAL_DISK },
	[ITEM_LOGICAL_SECTOR] = { "Logical Sector Size", VHDX_SECTOR_SIZE_ITEM_SIZE,
				  VHDX_ME_IS_REQUIRED | VHDX_ME_IS_VIRTUAL_DISK },
	[ITEM_PHYSICAL_SECTOR] = { "Physical Sector Size", VHDX_SECTOR_SIZE_ITEM_SIZE,
				   VHDX_ME_IS_REQUIRED | VHDX_ME_IS_VIRTUAL_DISK },
	[ITEM_PARENT_LOCATOR] = { "Parent Locator", VHDX_PL_ENTRIES, VHDX_ME_IS_REQUIRED },
};

static struct guid item_guid(enum item i)
{
	switch (i) {
	case ITEM_FILE_PARAMETERS:
		return VHDX_ITEM_FILE_PARAMETERS;
	case ITEM_VIRTUAL_SIZE:
		return VHDX_ITEM_VIRTUAL_DISK_SIZE;
	case ITEM_PAGE83:
		return VHDX_ITEM_PAGE83_DATA;
	case ITEM_LOGICAL_SECTOR:
		return VHDX_ITEM_LOGICAL_SECTOR_SIZE;
	case ITEM_PHYSICAL_SECTOR:
		return VHDX_ITEM_PHYSICAL_SECTOR_SIZE;
	default:
		return VHDX_ITEM_PARENT_LOCATOR;
	}
}

/* Which known (system) item an entry is, or ITEM_COUNT. */
static enum item item_of(const struct guid *id, uint32_t flags)
{
	if (flags & VHDX_ME_IS_USER)
		return ITEM_COUNT;
	for (int i = 0; i < ITEM_COUNT; i++) {
		struct guid g = item_guid((enum item)i);
		if (guid_equal(id, &g))
			return (enum item)i;
	}
	return ITEM_COUNT;
}

struct meta_entry {
	struct guid id;
	uint32_t offset, length, flags;
};

static void meta_text(const struct meta_entry *m, char *out, size_t size)
{
	enum item k = item_of(&m->id, m->flags);
	char s[GUID_STR_LEN + 1];
	if (k != ITEM_COUNT) {
		snprintf(out, size, "the %s item", items[k].name);
		return;
	}
	guid_text(&m->id, s);
	snprintf(out, size, "%s item %s", m->flags & VHDX_ME_IS_USER ? "user" : "metadata", s);
}

static int meta_entry_check(const struct meta_entry *m, const struct meta_entry *all, unsigned i,
			    uint32_t region_length, char *why, size_t why_size)
{
	char name[80];
	meta_text(m, name, sizeof(name));
	if (m->length > VHDX_METADATA_ITEM_MAX)
		return vdisk_errorf(why, why_size, -EINVAL,
				    "%s is %" PRIu32 " bytes (at most 1 MiB)", name, m->length);
	if (m->length && m->offset < VHDX_METADATA_TABLE_SIZE)
		return vdisk_errorf(why, why_size, -EINVAL,
				    "%s (at offset %" PRIu32 ") overlaps the metadata table", name,
				    m->offset);
	if ((uint64_t)m->offset + m->length > region_length)
		return vdisk_errorf(why, why_size, -EINVAL,
				    "%s (%" PRIu32 " bytes at offset %" PRIu32
				    ") extends past the metadata region (%" PRIu32 " bytes)",
				    name, m->length, m->offset, region_length);
	for (unsigned k = 0; k < i; k++) {
		bool same = guid_equal(&all[k].id, &m->id) &&
			    (all[k].flags & VHDX_ME_IS_USER) == (m->flags & VHDX_ME_IS_USER);
		if (same)
			return vdisk_errorf(why, why_size, -EINVAL, "%s is listed twice", name);
		if (ranges_overlap(all[k].offset, all[k].length, m->offset, m->length)) {
			char other[80];
			meta_text(&all[k], other, sizeof(other));
			return vdisk_errorf(why, why_size, -EINVAL, "%s and %s overlap", other,
					    name);
		}
	}
	return 0;
}

/* The metadata table: signature, count, entries (bounded, unique, not overlapping). */
static int meta_table_parse(const uint8_t *raw, uint32_t region_length, struct meta_entry **out,
			    unsigned *count, char *why, size_t why_size)
{
	*out = NULL;
	*count = 0;
	if (memcmp(raw + VHDX_MT_SIGNATURE, VHDX_METADATA_SIGNATURE, 8))
		return vdisk_errorf(
			why, why_size, -EINVAL,
			"no metadata table signature (\"metadata\") at the start of the metadata "
			"region");
	unsigned n = load_le16(raw + VHDX_MT_ENTRY_COUNT);
	if (n > VHDX_METADATA_MAX_ENTRIES)
		return vdisk_errorf(why, why_size, -EINVAL,
				    "the metadata table has %u entries (at most 2047 are allowed)",
				    n);
	struct meta_entry *m = calloc(n ? n : 1, sizeof(*m));
	if (!m)
		return vdisk_errorf(why, why_size, -ENOMEM, "out of memory");
	for (unsigned i = 0; i < n; i++) {
		const uint8_t *e = raw + VHDX_MT_ENTRIES + (size_t)i * VHDX_ME_SIZE;
		memcpy(m[i].id.bytes, e + VHDX_ME_ITEM_ID, 16);
		m[i].offset = load_le32(e + VHDX_ME_OFFSET);
		m[i].length = load_le32(e + VHDX_ME_LENGTH);
		m[i].flags = load_le32(e + VHDX_ME_FLAGS);
		int ret = meta_entry_check(&m[i], m, i, region_length, why, why_size);
		if (ret) {
			free(m);
			return ret;
		}
	}
	*out = m;
	*count = n;
	return 0;
}

static int read_meta_table(struct vdisk_file *file, const struct vhdx *v, struct meta_entry **m,
			   unsigned *n, char *err, size_t err_size)
{
	uint8_t *raw = malloc(VHDX_METADATA_TABLE_SIZE);
	if (!raw)
		return vdisk_errorf(err, err_size, -ENOMEM, "out of memory");
	int ret = vdisk_file_pread(file, raw, VHDX_METADATA_TABLE_SIZE, v->metadata_offset);
	if (ret)
		vdisk_errorf(err, err_size, ret, "cannot read the metadata table: %s",
			     strerror(-ret));
	else
		ret = meta_table_parse(raw, v->metadata_length, m, n, err, err_size);
	free(raw);
	return ret;
}

/* The known items' entries (NULL where absent); unknown required items refuse the file. */
static int find_items(const struct meta_entry *m, unsigned n, const struct meta_entry *found[],
		      char *err, size_t err_size)
{
	for (int i = 0; i < ITEM_COUNT; i++)
		found[i] = NULL;
	for (unsigned i = 0; i < n; i++) {
		enum item k = item_of(&m[i].id, m[i].flags);
		if (k != ITEM_COUNT) {
			found[k] = &m[i];
		} else if (m[i].flags & VHDX_ME_IS_REQUIRED) {
			char name[80];
			meta_text(&m[i], name, sizeof(name));
			return vdisk_errorf(
				err, err_size, -ENOTSUP,
				"the image has a required %s that this implementation does not "
				"know: it cannot be opened",
				name);
		}
	}
	for (int k = 0; k < ITEM_PARENT_LOCATOR; k++)
		if (!found[k])
			return vdisk_errorf(err, err_size, -EINVAL, "the metadata has no %s item",
					    items[k].name);
	return 0;
}

/* Reads a known item (at least its minimum size) into a malloc'd buffer. */
static int read_item(struct vdisk_file *file, const struct vhdx *v, enum item k,
		     const struct meta_entry *e, uint8_t **out, char *err, size_t err_size)
{
	*out = NULL;
	if (e->length < items[k].size)
		return vdisk_errorf(err, err_size, -EINVAL,
				    "the %s item is %" PRIu32 " bytes; %" PRIu32 " are needed",
				    items[k].name, e->length, items[k].size);
	uint8_t *buf = malloc(e->length);
	if (!buf)
		return vdisk_errorf(err, err_size, -ENOMEM, "out of memory");
	int ret = vdisk_file_pread(file, buf, e->length, v->metadata_offset + e->offset);
	if (ret) {
		free(buf);
		return vdisk_errorf(err, err_size, ret, "cannot read the %s item: %s",
				    items[k].name, strerror(-ret));
	}
	*out = buf;
	return 0;
}

static int check_values(const struct vhdx *v, char *err, size_t err_size)
{
	if (!is_power_of_two(v->block_size) || v->block_size < VHDX_MIN_BLOCK_SIZE ||
	    v->block_size > VHDX_MAX_BLOCK_SIZE)
		return vdisk_errorf(err, err_size, -EINVAL,
				    "block size %" PRIu32
				    " is not a power of two from 1 MiB to 256 MiB",
				    v->block_size);
	if (v->logical_sector_size != 512 && v->logical_sector_size != 4096)
		return vdisk_errorf(err, err_size, -EINVAL,
				    "logical sector size %" PRIu32 " is neither 512 nor 4096",
				    v->logical_sector_size);
	if (v->physical_sector_size != 512 && v->physical_sector_size != 4096)
		return vdisk_errorf(err, err_size, -EINVAL,
				    "physical sector size %" PRIu32 " is neither 512 nor 4096",
				    v->physical_sector_size);
	if (v->virtual_size == 0 || v->virtual_size > VHDX_MAX_SIZE)
		return vdisk_errorf(err, err_size, -EINVAL,
				    "virtual size %llu bytes is not between 1 byte and 64 TiB",
				    ull(v->virtual_size));
	if (v->virtual_size % v->logical_sector_size)
		return vdisk_errorf(
			err, err_size, -EINVAL,
			"virtual size %llu bytes is not a multiple of the logical sector size "
			"(%" PRIu32 ")",
			ull(v->virtual_size), v->logical_sector_size);
	return 0;
}

/* Chunk ratio, block counts and BAT entries from block size, sector size, size and
 * whether the image has a parent. */
void vhdx_derive_geometry(struct vhdx *v)
{
	v->chunk_ratio = VHDX_CHUNK_SECTORS * v->logical_sector_size / v->block_size;
	v->data_blocks = div_round_up(v->virtual_size, v->block_size);
	v->bitmap_blocks = div_round_up(v->data_blocks, v->chunk_ratio);
	if (v->has_parent)
		v->bat_entries = v->bitmap_blocks * (v->chunk_ratio + 1);
	else
		v->bat_entries = v->data_blocks + (v->data_blocks - 1) / v->chunk_ratio;
}

static int locator_parse(const uint8_t *item, uint32_t len, struct vhdx_parent_locator *loc,
			 char *err, size_t err_size);

static void item_values(struct vhdx *v, uint8_t *const val[])
{
	uint32_t flags = load_le32(val[ITEM_FILE_PARAMETERS] + VHDX_FP_FLAGS);
	v->block_size = load_le32(val[ITEM_FILE_PARAMETERS] + VHDX_FP_BLOCK_SIZE);
	v->leave_blocks_allocated = flags & VHDX_FP_LEAVE_BLOCKS_ALLOCATED;
	v->has_parent = flags & VHDX_FP_HAS_PARENT;
	v->virtual_size = load_le64(val[ITEM_VIRTUAL_SIZE]);
	memcpy(v->page83.bytes, val[ITEM_PAGE83], 16);
	v->logical_sector_size = load_le32(val[ITEM_LOGICAL_SECTOR]);
	v->physical_sector_size = load_le32(val[ITEM_PHYSICAL_SECTOR]);
}

static int load_items(struct vdisk_file *file, struct vhdx *v, const struct meta_entry *found[],
		      char *err, size_t err_size)
{
	uint8_t *val[ITEM_COUNT] = { 0 };
	int ret = 0;
	for (int k = 0; k < ITEM_PARENT_LOCATOR && ret == 0; k++)
		ret = read_item(file, v, (enum item)k, found[k], &val[k], err, err_size);
	if (ret == 0) {
		item_values(v, val);
		ret = check_values(v, err, err_size);
	}
	if (ret == 0 && v->has_parent && !found[ITEM_PARENT_LOCATOR])
		ret = vdisk_errorf(
			err, err_size, -EINVAL,
			"the image is a differencing image (HasParent) but has no Parent "
			"Locator item");
	if (ret == 0 && v->has_parent)
		ret = read_item(file, v, ITEM_PARENT_LOCATOR, found[ITEM_PARENT_LOCATOR],
				&val[ITEM_PARENT_LOCATOR], err, err_size);
	if (ret == 0 && v->has_parent)
		ret = locator_parse(val[ITEM_PARENT_LOCATOR], found[ITEM_PARENT_LOCATOR]->length,
				    &v->locator, err, err_size);
	for (int k = 0; k < ITEM_COUNT; k++)
		free(val[k]);
	return ret;
}

static int load_metadata(struct vdisk_file *file, struct vhdx *v, char *err, size_t err_size)
{
	const struct meta_entry *found[ITEM_COUNT];
	struct meta_entry *m;
	unsigned n;

	int ret = read_meta_table(file, v, &m, &n, err, err_size);
	if (ret)
		return ret;
	ret = find_items(m, n, found, err, err_size);
	if (ret == 0)
		ret = load_items(file, v, found, err, err_size);
	free(m);
	if (ret)
		return ret;
	vhdx_derive_geometry(v);
	if ((uint64_t)v->bat_length < v->bat_entries * VHDX_BAT_ENTRY_SIZE)
		return vdisk_errorf(
			err, err_size, -EINVAL,
			"the BAT region (%" PRIu32 " bytes) is too small for the %llu entries "
			"a %llu-byte disk in %" PRIu32 "-byte blocks needs",
			v->bat_length, ull(v->bat_entries), ull(v->virtual_size), v->block_size);
	return 0;
}

/* ---- the parent locator ---- */

static const char *const locator_keys[] = { "parent_linkage", "parent_linkage2", "relative_path",
					    "volume_path", "absolute_win32_path" };

static char **locator_slot(struct vhdx_parent_locator *loc, unsigned k)
{
	char **slots[] = { &loc->parent_linkage, &loc->parent_linkage2, &loc->relative_path,
			   &loc->volume_path, &loc->absolute_win32_path };
	return slots[k];
}

static int locator_entry(const uint8_t *item, uint32_t len, unsigned i,
			 struct vhdx_parent_locator *loc, char *err, size_t err_size)
{
	const uint8_t *e = item + VHDX_PL_ENTRIES + (size_t)i * VHDX_PLE_SIZE;
	uint32_t ko = load_le32(e + VHDX_PLE_KEY_OFFSET), vo = load_le32(e + VHDX_PLE_VALUE_OFFSET);
	uint32_t kl = load_le16(e + VHDX_PLE_KEY_LENGTH), vl = load_le16(e + VHDX_PLE_VALUE_LENGTH);
	char *key = NULL, *value = NULL;

	if (ko > len || len - ko < kl || vo > len || len - vo < vl)
		return vdisk_errorf(
			err, err_size, -EINVAL,
			"parent locator entry %u points outside the locator (key %" PRIu32
			" bytes at %" PRIu32 ", value %" PRIu32 " bytes at %" PRIu32
			"; the locator is %" PRIu32 " bytes)",
			i, kl, ko, vl, vo, len);
	if (!kl)
		return vdisk_errorf(err, err_size, -EINVAL,
				    "parent locator entry %u has an empty key", i);
	if (utf16_dup(item + ko, kl, &key))
		return vdisk_errorf(err, err_size, -ENOMEM, "out of memory");
	if (!key)
		return vdisk_errorf(err, err_size, -EINVAL,
				    "parent locator entry %u has a key that is not UTF-16", i);
	int ret = 0;
	for (unsigned k = 0; k < sizeof(locator_keys) / sizeof(locator_keys[0]); k++) {
		if (strcmp(key, locator_keys[k]))
			continue;
		char **slot = locator_slot(loc, k);
		if (*slot) {
			ret = vdisk_errorf(err, err_size, -EINVAL,
					   "the parent locator has %s twice", key);
		} else if (utf16_dup(item + vo, vl, &value)) {
			ret = vdisk_errorf(err, err_size, -ENOMEM, "out of memory");
		} else if (!value) {
			ret = vdisk_errorf(err, err_size, -EINVAL,
					   "the parent locator's %s is not UTF-16", key);
		} else {
			*slot = value;
		}
		break;
	}
	free(key);
	return ret;
}

static int locator_parse(const uint8_t *item, uint32_t len, struct vhdx_parent_locator *loc,
			 char *err, size_t err_size)
{
	struct guid type, linkage;
	char s[GUID_STR_LEN + 1];

	memcpy(type.bytes, item + VHDX_PL_LOCATOR_TYPE, 16);
	if (!guid_equal(&type, &VHDX_LOCATOR_TYPE_VHDX)) {
		guid_text(&type, s);
		return vdisk_errorf(err, err_size, -ENOTSUP,
				    "the parent locator has type %s; only VHDX parents "
				    "(b04aefb7-d19e-4a81-b789-25b8e9445913) are known",
				    s);
	}
	unsigned n = load_le16(item + VHDX_PL_KEY_VALUE_COUNT);
	if ((uint64_t)VHDX_PL_ENTRIES + (uint64_t)n * VHDX_PLE_SIZE > len)
		return vdisk_errorf(err, err_size, -EINVAL,
				    "the parent locator claims %u entries but is only %" PRIu32
				    " bytes",
				    n, len);
	for (unsigned i = 0; i < n; i++) {
		int ret = locator_entry(item, len, i, loc, err, err_size);
		if (ret)
			return ret;
	}
	if (!loc->parent_linkage)
		return vdisk_errorf(
			err, err_size, -EINVAL,
			"the parent locator has no parent_linkage (the parent's identity)");
	if (guid_parse(loc->parent_linkage, &linkage))
		return vdisk_errorf(err, err_size, -EINVAL,
				    "the parent locator's parent_linkage \"%.64s\" "
				    "is not a GUID",
				    loc->parent_linkage);
	return 0;
}

/* ---- finding the parent ---- */

/* "C:\x", "\\server\share\x", "\\?\..." */
static bool is_windows_absolute(const char *p)
{
	return (isalpha((unsigned char)p[0]) && p[1] == ':') || (p[0] == '\\' && p[1] == '\\');
}

/* relative_path: Windows style (".\x.vhdx", "..\d\x.vhdx") next to the child. */
static int try_relative_path(struct vdisk_parent_search *s, const char *path)
{
	if (is_windows_absolute(path))
		return 0;
	char *p = path[0] == '/' ? strdup(path) : vdisk_path_with_slashes(path);
	if (!p)
		return -ENOMEM;
	int ret = vdisk_parent_try_relative(s, p);
	free(p);
	return ret;
}

/* absolute_win32_path: a host path as it is (what we write); a Windows one cannot be
 * looked up here (its file name is tried next to the child later). */
static int try_absolute_path(struct vdisk_parent_search *s, const char *path)
{
	return path[0] == '/' ? vdisk_parent_try(s, path) : 0;
}

/* volume_path "\\?\Volume{GUID}\dir\x.vhdx": the part after the volume, from the root. */
static int try_volume_path(struct vdisk_parent_search *s, const char *path)
{
	const char *brace = strchr(path, '}');
	const char *rest = brace ? brace + 1 : path;
	if (*rest != '\\' && *rest != '/')
		return 0;
	char *p = vdisk_path_with_slashes(rest);
	if (!p)
		return -ENOMEM;
	int ret = vdisk_parent_try(s, p);
	free(p);
	return ret;
}

static const char *base_name(const char *path)
{
	const char *b = path;
	for (const char *p = path; *p; p++)
		if (*p == '/' || *p == '\\')
			b = p + 1;
	return b;
}

static int search_parent(struct vdisk_parent_search *s, const struct vhdx *v)
{
	const struct vhdx_parent_locator *l = &v->locator;
	const char *names[3] = { l->absolute_win32_path, l->volume_path, l->relative_path };
	int ret = 0;

	if (l->relative_path)
		ret = try_relative_path(s, l->relative_path);
	if (ret == 0 && l->absolute_win32_path)
		ret = try_absolute_path(s, l->absolute_win32_path);
	if (ret == 0 && l->volume_path)
		ret = try_volume_path(s, l->volume_path);
	for (int i = 0; i < 3 && ret == 0; i++)
		if (names[i])
			ret = vdisk_parent_try_name(s, names[i]);
	return ret;
}

static int resolve_parent(struct vdisk_file *file, struct vhdx *v, char *err, size_t err_size)
{
	const struct vhdx_parent_locator *l = &v->locator;
	const char *any = l->relative_path	   ? l->relative_path
			  : l->absolute_win32_path ? l->absolute_win32_path
						   : l->volume_path;
	struct vdisk_parent_search s;
	char tried[768];
	int ret = vdisk_parent_search_init(&s, file->path);
	if (ret == 0)
		ret = search_parent(&s, v);
	if (ret == 0 && !any) {
		ret = vdisk_errorf(
			err, err_size, -ENOENT,
			"the parent locator names no path (no relative_path, "
			"absolute_win32_path or volume_path): the parent cannot be found");
	} else if (ret == 0) {
		vdisk_parent_search_tried(&s, tried, sizeof(tried));
		ret = vdisk_errorf(err, err_size, -ENOENT,
				   "parent image \"%s\" not found (tried %s)", base_name(any),
				   s.ntried ? tried : "nothing usable on this host");
	} else if (ret == 1) {
		v->parent_path = s.found;
		s.found = NULL;
		ret = 0;
	}
	if (ret == -ENOMEM)
		vdisk_errorf(err, err_size, ret, "out of memory while looking for the parent");
	vdisk_parent_search_fini(&s);
	return ret;
}

/* ---- the layout: what blocks must stay clear of ---- */

struct span {
	uint64_t start, end;
	char what[64];
};

struct layout {
	struct span *s;
	unsigned n;
};

static void layout_add(struct layout *l, uint64_t start, uint64_t len, const char *what)
{
	struct span *s = &l->s[l->n++];
	s->start = start;
	s->end = start + len;
	snprintf(s->what, sizeof(s->what), "%s", what);
}

/* The header section, the log and every region of the table. */
static int layout_build(const struct vhdx *v, struct layout *l)
{
	l->n = 0;
	l->s = malloc((v->nregions + 2) * sizeof(*l->s));
	if (!l->s)
		return -ENOMEM;
	layout_add(l, 0, VHDX_HEADER_SECTION_SIZE, "header section");
	if (v->header.log_length)
		layout_add(l, v->header.log_offset, v->header.log_length, "log");
	for (unsigned i = 0; i < v->nregions; i++) {
		char name[64];
		region_text(&v->regions[i].guid, name, sizeof(name));
		layout_add(l, v->regions[i].file_offset, v->regions[i].length,
			   strncmp(name, "the ", 4) ? name : name + 4);
	}
	return 0;
}

static const struct span *layout_hit(const struct layout *l, uint64_t start, uint64_t len)
{
	for (unsigned i = 0; i < l->n; i++)
		if (ranges_overlap(start, len, l->s[i].start, l->s[i].end - l->s[i].start))
			return &l->s[i];
	return NULL;
}

/* ---- BAT entries ---- */

/* Payload block number of a payload entry, chunk number of a bitmap entry. */
static uint64_t entry_block(const struct vhdx *v, uint64_t index)
{
	uint64_t chunk = index / (v->chunk_ratio + 1);
	if (vhdx_is_bitmap_index(v, index))
		return chunk;
	return chunk * v->chunk_ratio + index % (v->chunk_ratio + 1);
}

static bool entry_present(const struct vhdx *v, uint64_t index, uint64_t entry)
{
	unsigned st = vhdx_bat_state(entry);
	if (vhdx_is_bitmap_index(v, index))
		return st == VHDX_BITMAP_PRESENT;
	return st == VHDX_BLOCK_FULLY_PRESENT || st == VHDX_BLOCK_PARTIALLY_PRESENT;
}

/* Bytes of the block that must be in the file: a sector bitmap block whole, a payload
 * block as far as the virtual disk reaches into it. */
static uint64_t entry_need(const struct vhdx *v, uint64_t index)
{
	if (vhdx_is_bitmap_index(v, index))
		return VHDX_BITMAP_BLOCK_SIZE;
	uint64_t start = entry_block(v, index) * v->block_size;
	if (start >= v->virtual_size)
		return v->block_size;
	return min_u64(v->block_size, v->virtual_size - start);
}

/* The whole block: what the block owns in the file. */
static uint64_t entry_span(const struct vhdx *v, uint64_t index)
{
	return vhdx_is_bitmap_index(v, index) ? VHDX_BITMAP_BLOCK_SIZE : v->block_size;
}

static void entry_text(const struct vhdx *v, uint64_t index, char *out, size_t size)
{
	if (vhdx_is_bitmap_index(v, index))
		snprintf(out, size, "BAT entry %llu (sector bitmap of chunk %llu)", ull(index),
			 ull(entry_block(v, index)));
	else
		snprintf(out, size, "BAT entry %llu (payload block %llu)", ull(index),
			 ull(entry_block(v, index)));
}

/* bits 3-19 of an entry */
#define BAT_RESERVED_MASK                                                                          \
	(((UINT64_C(1) << VHDX_BAT_OFFSET_SHIFT) - 1) & ~(uint64_t)VHDX_BAT_STATE_MASK)

enum bat_problem {
	BAT_BAD_STATE,
	BAT_NO_OFFSET,
	BAT_PAST_END,
	BAT_OVER_METADATA,
	BAT_OVERLAP,
	BAT_PARTIAL_NOT_DIFF,
	BAT_PARTIAL_NO_BITMAP,
	BAT_STALE_OFFSET,
	BAT_RESERVED_BITS,
};

struct bat_issue {
	enum bat_problem kind;
	uint64_t index;
	uint64_t other;	  /* BAT_OVERLAP: the entry whose block keeps its place */
	const char *what; /* BAT_OVER_METADATA: the structure hit */
	uint64_t limit;	  /* BAT_PAST_END: the file size */
};

static void describe_issue(const struct vhdx *v, const uint64_t *bat, const struct bat_issue *is,
			   char *out, size_t size)
{
	char e[96], o[96];
	uint64_t entry = bat[is->index], off = vhdx_bat_offset(entry);
	unsigned st = vhdx_bat_state(entry);

	entry_text(v, is->index, e, sizeof(e));
	switch (is->kind) {
	case BAT_BAD_STATE:
		snprintf(out, size, "%s has the invalid state %u", e, st);
		break;
	case BAT_NO_OFFSET:
		snprintf(out, size, "%s is present but has no file offset", e);
		break;
	case BAT_PAST_END:
		snprintf(out, size,
			 "%s points past the end of the file (its block at byte %llu needs %llu "
			 "bytes; the file ends at byte %llu)",
			 e, ull(off), ull(entry_need(v, is->index)), ull(is->limit));
		break;
	case BAT_OVER_METADATA:
		snprintf(out, size, "%s points into the %s (its block is at byte %llu)", e,
			 is->what, ull(off));
		break;
	case BAT_OVERLAP:
		entry_text(v, is->other, o, sizeof(o));
		snprintf(out, size, "%s and %s overlap (their blocks are at bytes %llu and %llu)",
			 o, e, ull(vhdx_bat_offset(bat[is->other])), ull(off));
		break;
	case BAT_PARTIAL_NOT_DIFF:
		snprintf(out, size,
			 "%s is partially present, which only differencing images may be", e);
		break;
	case BAT_PARTIAL_NO_BITMAP:
		snprintf(out, size, "%s is partially present but its chunk has no sector bitmap",
			 e);
		break;
	case BAT_STALE_OFFSET:
		snprintf(out, size,
			 "%s is in state %u but keeps file offset %llu (Hyper-V fails to read "
			 "such entries)",
			 e, st, ull(off));
		break;
	case BAT_RESERVED_BITS:
		snprintf(out, size, "%s has reserved bits set (0x%llx)", e,
			 ull(entry & BAT_RESERVED_MASK));
		break;
	}
}

/* Returns 0 to go on, > 0 to stop the scan, -errno to stop with an error. The callback may
 * change the entry in bat and the file size behind *limit. */
typedef int (*bat_issue_fn)(void *ctx, const struct bat_issue *issue);

struct placed {
	uint64_t start, len, index;
};

struct bat_scan {
	const struct vhdx *v;
	uint64_t *bat;
	const uint64_t *limit; /* the file size */
	const struct layout *layout;
	bat_issue_fn fn;
	void *ctx;
	struct placed *placed; /* blocks in place after the scan, for overlaps */
	uint64_t nplaced;
};

static int report(struct bat_scan *s, enum bat_problem kind, uint64_t index)
{
	struct bat_issue issue = { .kind = kind, .index = index, .limit = *s->limit };
	return s->fn(s->ctx, &issue);
}

static bool past_end(const struct bat_scan *s, uint64_t off, uint64_t need)
{
	return off >= *s->limit || *s->limit - off < need;
}

/* An entry that is not present: a known state, and offset 0. */
static int scan_absent(struct bat_scan *s, uint64_t i, uint64_t e)
{
	unsigned st = vhdx_bat_state(e);
	bool known = vhdx_is_bitmap_index(s->v, i) ? st == VHDX_BITMAP_NOT_PRESENT
						   : st <= VHDX_BLOCK_UNMAPPED;
	if (!known)
		return report(s, BAT_BAD_STATE, i);
	return vhdx_bat_offset(e) ? report(s, BAT_STALE_OFFSET, i) : 0;
}

/* A partially present payload block: only in differencing images, with its chunk's sector
 * bitmap (whose entries are scanned first). */
static int scan_partial(struct bat_scan *s, uint64_t i)
{
	const struct vhdx *v = s->v;
	if (!v->has_parent)
		return report(s, BAT_PARTIAL_NOT_DIFF, i);
	uint64_t b = vhdx_bitmap_index(v, entry_block(v, i) / v->chunk_ratio);
	if (b >= v->bat_entries || vhdx_bat_state(s->bat[b]) != VHDX_BITMAP_PRESENT)
		return report(s, BAT_PARTIAL_NO_BITMAP, i);
	return 0;
}

static int scan_entry(struct bat_scan *s, uint64_t i)
{
	uint64_t e = s->bat[i], off = vhdx_bat_offset(e), need = entry_need(s->v, i);
	const struct span *hit;
	int ret;

	if (e & BAT_RESERVED_MASK) {
		ret = report(s, BAT_RESERVED_BITS, i);
		if (ret)
			return ret;
		e = s->bat[i];
	}

	if (!entry_present(s->v, i, e))
		return scan_absent(s, i, e);
	if (!off)
		return report(s, BAT_NO_OFFSET, i);
	if (past_end(s, off, need)) {
		ret = report(s, BAT_PAST_END, i);
		if (ret || s->bat[i] != e || past_end(s, off, need))
			return ret; /* unless the callback extended the file */
	}
	hit = layout_hit(s->layout, off, need);
	if (hit) {
		struct bat_issue issue = { .kind = BAT_OVER_METADATA,
					   .index = i,
					   .what = hit->what };
		return s->fn(s->ctx, &issue);
	}
	if (vhdx_bat_state(e) == VHDX_BLOCK_PARTIALLY_PRESENT && !vhdx_is_bitmap_index(s->v, i)) {
		ret = scan_partial(s, i);
		if (ret)
			return ret;
	}
	if (entry_present(s->v, i, s->bat[i]) && vhdx_bat_offset(s->bat[i]) == off)
		s->placed[s->nplaced++] = (struct placed){ off, need, i };
	return 0;
}

static int compare_placed(const void *a, const void *b)
{
	const struct placed *x = a, *y = b;
	if (x->start != y->start)
		return x->start < y->start ? -1 : 1;
	return x->index < y->index ? -1 : x->index > y->index;
}

/* Blocks clear of each other: after sorting, a block overlaps when it starts before the end
 * of the last block that kept its place. */
static int scan_overlaps(struct bat_scan *s)
{
	uint64_t kept_end = 0, kept = 0;
	bool have = false;

	qsort(s->placed, s->nplaced, sizeof(*s->placed), compare_placed);
	for (uint64_t k = 0; k < s->nplaced; k++) {
		const struct placed *p = &s->placed[k];
		if (have && p->start < kept_end) {
			struct bat_issue issue = { .kind = BAT_OVERLAP,
						   .index = p->index,
						   .other = kept };
			int ret = s->fn(s->ctx, &issue);
			if (ret)
				return ret;
			continue;
		}
		kept_end = p->start + p->len;
		kept = p->index;
		have = true;
	}
	return 0;
}

/* Entries that name a block; the callbacks of a scan never add any. */
static uint64_t present_entries(const struct vhdx *v, const uint64_t *bat)
{
	uint64_t n = 0;
	for (uint64_t i = 0; i < v->bat_entries; i++)
		n += entry_present(v, i, bat[i]);
	return n;
}

/* Every entry: sector bitmap entries first (partially present blocks need theirs), then
 * payload entries, then overlaps between the blocks that passed. */
static int bat_scan(const struct vhdx *v, uint64_t *bat, const uint64_t *limit,
		    const struct layout *l, bat_issue_fn fn, void *ctx)
{
	struct bat_scan s = {
		.v = v, .bat = bat, .limit = limit, .layout = l, .fn = fn, .ctx = ctx
	};
	int ret = 0;

	s.placed = malloc((present_entries(v, bat) + 1) * sizeof(*s.placed));
	if (!s.placed)
		return -ENOMEM;
	for (uint64_t i = v->chunk_ratio; i < v->bat_entries && ret == 0; i += v->chunk_ratio + 1)
		ret = scan_entry(&s, i);
	for (uint64_t i = 0; i < v->bat_entries && ret == 0; i++)
		if (!vhdx_is_bitmap_index(v, i))
			ret = scan_entry(&s, i);
	if (ret == 0)
		ret = scan_overlaps(&s);
	free(s.placed);
	return ret;
}

/* ---- loading the BAT ---- */

static int read_bat(struct vdisk_file *file, const struct vhdx *v, uint64_t **out)
{
	size_t bytes = (size_t)v->bat_entries * VHDX_BAT_ENTRY_SIZE;
	uint64_t *bat = malloc(bytes);
	*out = NULL;
	if (!bat)
		return -ENOMEM;
	int ret = vdisk_file_pread(file, bat, bytes, v->bat_offset);
	if (ret) {
		free(bat);
		return ret;
	}
	for (uint64_t i = 0; i < v->bat_entries; i++)
		bat[i] = load_le64(&bat[i]);
	*out = bat;
	return 0;
}

struct load_scan {
	struct vhdx *v;
	bool for_repair;
	char *err;
	size_t err_size;
};

/* Strict on open: the first bad entry refuses the image. Opened for repair, bad entries
 * are masked in memory (vhdx_check repairs them on disk). Stale offsets of absent blocks
 * are accepted: the state says what to read. */
static int load_issue(void *ctx, const struct bat_issue *issue)
{
	struct load_scan *s = ctx;
	uint64_t *e = &s->v->bat[issue->index];

	if (issue->kind == BAT_STALE_OFFSET || issue->kind == BAT_RESERVED_BITS)
		return 0;
	if (!s->for_repair) {
		describe_issue(s->v, s->v->bat, issue, s->err, s->err_size);
		return 1;
	}
	if (issue->kind == BAT_PARTIAL_NOT_DIFF)
		*e = vhdx_bat_entry(VHDX_BLOCK_FULLY_PRESENT, vhdx_bat_offset(*e));
	else if (issue->kind != BAT_OVERLAP)
		*e = vhdx_bat_entry(VHDX_BLOCK_NOT_PRESENT, 0);
	s->v->bad_bat_entries++;
	return 0;
}

static int load_bat(struct vdisk *disk, struct vhdx *v, char *err, size_t err_size)
{
	struct load_scan s = { v, disk->opts.for_repair, err, err_size };
	struct layout l;

	int ret = read_bat(disk->file, v, &v->bat);
	if (ret)
		return vdisk_errorf(err, err_size, ret, "cannot read the BAT (%llu entries): %s",
				    ull(v->bat_entries), strerror(-ret));
	ret = layout_build(v, &l);
	if (ret == 0) {
		ret = bat_scan(v, v->bat, &disk->file->size, &l, load_issue, &s);
		free(l.s);
	}
	if (ret > 0)
		return -EINVAL;
	if (ret < 0)
		return vdisk_errorf(err, err_size, ret, "out of memory while checking the BAT");
	return 0;
}

/* ---- load, unload ---- */

/* What the rest of the image hangs on: file identifier, headers (and the log), region
 * tables, metadata. */
static int load_core(struct vdisk *disk, struct vhdx *v, bool replay, char *err, size_t err_size)
{
	struct vdisk_file *file = disk->file;
	int ret = load_file_id(file, v, err, err_size);
	if (ret == 0)
		ret = load_headers(file, v, err, err_size);
	if (ret == 0)
		ret = check_log_region(file, v, err, err_size);
	if (ret == 0 && replay)
		ret = load_log(disk, v, err, err_size);
	if (ret == 0)
		ret = load_regions(disk, v, err, err_size);
	if (ret == 0)
		ret = load_metadata(file, v, err, err_size);
	return ret;
}

int vhdx_load(struct vdisk *disk, struct vhdx *vhdx, char *err, size_t err_size)
{
	int ret = load_core(disk, vhdx, true, err, err_size);
	if (ret == 0)
		ret = load_bat(disk, vhdx, err, err_size);
	if (ret == 0 && vhdx->has_parent) {
		ret = resolve_parent(disk->file, vhdx, err, err_size);
		if (ret == -ENOENT && disk->opts.no_backing) {
			err[0] = 0;
			ret = 0;
		}
	}
	if (ret)
		vhdx_unload(vhdx);
	return ret;
}

void vhdx_unload(struct vhdx *vhdx)
{
	free(vhdx->bat);
	vhdx->bat = NULL;
	for (unsigned k = 0; k < sizeof(locator_keys) / sizeof(locator_keys[0]); k++) {
		char **slot = locator_slot(&vhdx->locator, k);
		free(*slot);
		*slot = NULL;
	}
	free(vhdx->parent_path);
	vhdx->parent_path = NULL;
	free(vhdx->regions);
	vhdx->regions = NULL;
	vhdx->nregions = 0;
}

/* ---- creation ---- */

enum image_type {
	TYPE_FIXED,
	TYPE_DYNAMIC,
	TYPE_DIFFERENCING,
};

struct create_plan {
	enum image_type type;
	struct vhdx g; /* geometry: block size, sector sizes, size, BAT entries */
	uint64_t data_offset;
	uint64_t file_size;
	struct guid parent_linkage;
	char *absolute; /* the parent's absolute host path */
	char *relative; /* from the child's directory, Windows style */
};

static int plan_type(const struct vdisk_create_options *o, struct create_plan *p, char *err,
		     size_t err_size)
{
	static const uint32_t codes[] = { [VDISK_TYPE_FIXED] = TYPE_FIXED,
					  [VDISK_TYPE_DYNAMIC] = TYPE_DYNAMIC,
					  [VDISK_TYPE_DIFFERENCING] = TYPE_DIFFERENCING };
	enum vdisk_image_type t;
	int ret = vdisk_create_type(o, "VHDX", &t, err, err_size);
	if (ret)
		return ret;
	p->type = codes[t];
	if (p->type == TYPE_FIXED && o->sparse)
		return vdisk_errorf(
			err, err_size, -EINVAL,
			"a fixed VHDX cannot be sparse: Windows refuses to attach sparse fixed "
			"VHDX files (use a dynamic image instead)");
	return 0;
}

static int plan_block_size(const struct vdisk_create_options *o, struct create_plan *p, char *err,
			   size_t err_size)
{
	uint32_t bs = o->block_size		     ? o->block_size
		      : p->type == TYPE_DIFFERENCING ? DEFAULT_DIFF_BLOCK_SIZE
						     : DEFAULT_BLOCK_SIZE;
	if (!is_power_of_two(bs) || bs < VHDX_MIN_BLOCK_SIZE || bs > VHDX_MAX_BLOCK_SIZE)
		return vdisk_errorf(err, err_size, -EINVAL,
				    "VHDX block size %" PRIu32
				    " is not a power of two from 1 MiB to 256 MiB",
				    bs);
	p->g.block_size = bs;
	return 0;
}

static int plan_size(uint64_t size, uint32_t sector, char *err, size_t err_size)
{
	if (size == 0 || size % sector)
		return vdisk_errorf(
			err, err_size, -EINVAL,
			"size must be a positive multiple of the logical sector size (%" PRIu32
			" bytes)",
			sector);
	if (size > VHDX_MAX_SIZE)
		return vdisk_errorf(err, err_size, -EFBIG,
				    "size %llu bytes is beyond the VHDX maximum of 64 TiB",
				    ull(size));
	return 0;
}

static int plan_parent_paths(const char *child, const char *parent, struct create_plan *p,
			     char *err, size_t err_size)
{
	return vdisk_parent_paths(child, parent, &p->absolute, &p->relative, err, err_size);
}

/* The parent's identity (its current DataWriteGuid), size and logical sector size, read
 * from its file with this file's parser. */
static int parent_facts(struct vdisk *pdisk, const char *parent, struct create_plan *p, char *err,
			size_t err_size)
{
	struct vhdx pv = { 0 };
	char why[256];

	if (strcmp(vdisk_format_name(pdisk), "vhdx"))
		return vdisk_errorf(
			err, err_size, -EINVAL,
			"the parent %s is a %s image; a VHDX differencing image needs a VHDX "
			"parent",
			parent, vdisk_format_name(pdisk));
	int ret = load_core(pdisk, &pv, false, why, sizeof(why));
	if (ret == 0) {
		p->parent_linkage = pv.header.data_write_guid;
		p->g.virtual_size = pv.virtual_size;
		p->g.logical_sector_size = pv.logical_sector_size;
	} else {
		vdisk_errorf(err, err_size, ret, "cannot read the parent %s: %s", parent, why);
	}
	vhdx_unload(&pv);
	return ret;
}

static int plan_parent(const char *child, const struct vdisk_create_options *o,
		       struct create_plan *p, char *err, size_t err_size)
{
	struct vdisk_options vo = { .read_only = true,
				    .cache = VDISK_CACHE_WRITEBACK,
				    .engine = VDISK_ENGINE_SYNC };
	struct vdisk *pdisk;
	struct stat a, b;
	char why[256];

	if (stat(child, &a) == 0 && stat(o->parent, &b) == 0 && a.st_dev == b.st_dev &&
	    a.st_ino == b.st_ino)
		return vdisk_errorf(err, err_size, -EINVAL,
				    "the new image would replace its own parent");
	int ret = vdisk_open(o->parent, &vo, &pdisk, why, sizeof(why));
	if (ret)
		return vdisk_errorf(err, err_size, ret, "cannot open the parent %s: %s", o->parent,
				    why);
	ret = parent_facts(pdisk, o->parent, p, err, err_size);
	vdisk_close(pdisk);
	if (ret)
		return ret;
	if (o->size && o->size != p->g.virtual_size)
		return vdisk_errorf(
			err, err_size, -EINVAL,
			"a differencing image has its parent's size (%llu bytes): leave the "
			"size out or give exactly that",
			ull(p->g.virtual_size));
	return plan_parent_paths(child, o->parent, p, err, err_size);
}

static int plan_image(const char *path, const struct vdisk_create_options *o, struct create_plan *p,
		      char *err, size_t err_size)
{
	p->g.logical_sector_size =
		o->logical_sector_size ? o->logical_sector_size : CREATE_LOGICAL_SECTOR;
	p->g.physical_sector_size =
		o->physical_sector_size ? o->physical_sector_size : CREATE_PHYSICAL_SECTOR;
	if ((p->g.logical_sector_size != 512 && p->g.logical_sector_size != 4096) ||
	    (p->g.physical_sector_size != 512 && p->g.physical_sector_size != 4096))
		return vdisk_errorf(
			err, err_size, -EINVAL,
			"sector sizes must be 512 or 4096 bytes (logical %u, physical %u)",
			p->g.logical_sector_size, p->g.physical_sector_size);
	int ret = plan_type(o, p, err, err_size);
	if (ret == 0)
		ret = plan_block_size(o, p, err, err_size);
	if (ret)
		return ret;
	if (p->type == TYPE_DIFFERENCING) {
		ret = plan_parent(path, o, p, err, err_size);
	} else {
		p->g.virtual_size = o->size;
		ret = plan_size(o->size, p->g.logical_sector_size, err, err_size);
	}
	if (ret)
		return ret;
	p->g.has_parent = p->type == TYPE_DIFFERENCING;
	p->g.leave_blocks_allocated = p->type == TYPE_FIXED;
	vhdx_derive_geometry(&p->g);
	p->g.bat_offset = CREATE_BAT_OFFSET;
	p->g.bat_length = (uint32_t)round_up(p->g.bat_entries * VHDX_BAT_ENTRY_SIZE, MiB);
	p->data_offset = p->g.bat_offset + p->g.bat_length;
	p->file_size = p->data_offset;
	if (p->type == TYPE_FIXED)
		p->file_size += p->g.data_blocks * p->g.block_size;
	return 0;
}

/* ---- creation: writing ---- */

static void put_region(uint8_t *e, const struct guid *g, uint64_t off, uint32_t len)
{
	memcpy(e + VHDX_RE_GUID, g->bytes, 16);
	store_le64(e + VHDX_RE_FILE_OFFSET, off);
	store_le32(e + VHDX_RE_LENGTH, len);
	store_le32(e + VHDX_RE_FLAGS, VHDX_RE_REQUIRED);
}

/* File identifier, both headers, both region tables: the first 320 KiB. */
static int build_header_section(const struct create_plan *p, uint8_t **out, size_t *len)
{
	size_t size = VHDX_REGION_TABLE2_OFFSET + VHDX_REGION_TABLE_SIZE;
	uint8_t *buf = calloc(1, size);
	struct vhdx_header h = { .version = VHDX_HEADER_VERSION,
				 .log_version = VHDX_LOG_FORMAT_VERSION,
				 .log_offset = CREATE_LOG_OFFSET,
				 .log_length = CREATE_LOG_LENGTH };
	if (!buf)
		return -ENOMEM;
	int ret = guid_generate(&h.file_write_guid);
	if (ret == 0)
		ret = guid_generate(&h.data_write_guid);
	if (ret) {
		free(buf);
		return ret;
	}
	memcpy(buf, VHDX_FILE_SIGNATURE, 8);
	utf8_to_utf16le(CREATOR, buf + VHDX_CREATOR_OFFSET, VHDX_CREATOR_BYTES);
	for (int i = 0; i < 2; i++) {
		h.sequence = (uint64_t)i + 1;
		vhdx_header_build(&h, buf + header_offsets[i]);
	}
	uint8_t *rt = buf + VHDX_REGION_TABLE1_OFFSET;
	memcpy(rt + VHDX_RT_SIGNATURE, VHDX_REGION_SIGNATURE, 4);
	store_le32(rt + VHDX_RT_ENTRY_COUNT, 2);
	put_region(rt + VHDX_RT_ENTRIES, &VHDX_REGION_BAT, p->g.bat_offset, p->g.bat_length);
	put_region(rt + VHDX_RT_ENTRIES + VHDX_RE_SIZE, &VHDX_REGION_METADATA,
		   CREATE_METADATA_OFFSET, CREATE_METADATA_LENGTH);
	store_le32(rt + VHDX_RT_CHECKSUM,
		   vhdx_checksum(rt, VHDX_REGION_TABLE_SIZE, VHDX_RT_CHECKSUM));
	memcpy(buf + VHDX_REGION_TABLE2_OFFSET, rt, VHDX_REGION_TABLE_SIZE);
	*out = buf;
	*len = size;
	return 0;
}

/* The parent locator item: parent_linkage ("{guid}", lower case), relative_path,
 * absolute_win32_path (the host path: Windows cannot use it anyway, libvhdi and we can). */
int vhdx_locator_build(const struct guid *parent_linkage, const char *relative,
		       const char *absolute, uint8_t **out, uint32_t *out_len)
{
	char linkage[GUID_STR_LEN + 3];
	const char *keys[3] = { "parent_linkage", "relative_path", "absolute_win32_path" };
	const char *values[3] = { linkage, relative, absolute };

	linkage[0] = '{';
	guid_format(parent_linkage, linkage + 1);
	strcat(linkage, "}");
	size_t size = VHDX_PL_ENTRIES + 3 * VHDX_PLE_SIZE;
	for (int i = 0; i < 3; i++)
		size += 2 * (strlen(keys[i]) + strlen(values[i])); /* UTF-16: at most twice */
	uint8_t *buf = calloc(1, size);
	if (!buf)
		return -ENOMEM;
	memcpy(buf + VHDX_PL_LOCATOR_TYPE, VHDX_LOCATOR_TYPE_VHDX.bytes, 16);
	store_le16(buf + VHDX_PL_KEY_VALUE_COUNT, 3);
	size_t at = VHDX_PL_ENTRIES + 3 * VHDX_PLE_SIZE;
	for (int i = 0; i < 3; i++) {
		uint8_t *e = buf + VHDX_PL_ENTRIES + i * VHDX_PLE_SIZE;
		ssize_t kl = utf8_to_utf16le(keys[i], buf + at, size - at);
		ssize_t vl =
			kl < 0 ? kl
			       : utf8_to_utf16le(values[i], buf + at + kl, size - at - (size_t)kl);
		if (kl < 0 || vl < 0 || vl > LOCATOR_VALUE_MAX) {
			free(buf);
			return vl == -EINVAL		 ? -EILSEQ
			       : vl < 0 && vl != -ENOSPC ? (int)vl
							 : -ENAMETOOLONG;
		}
		store_le32(e + VHDX_PLE_KEY_OFFSET, (uint32_t)at);
		store_le32(e + VHDX_PLE_VALUE_OFFSET, (uint32_t)(at + (size_t)kl));
		store_le16(e + VHDX_PLE_KEY_LENGTH, (uint16_t)kl);
		store_le16(e + VHDX_PLE_VALUE_LENGTH, (uint16_t)vl);
		at += (size_t)(kl + vl);
	}
	*out = buf;
	*out_len = (uint32_t)at;
	return 0;
}

static void put_item(uint8_t *table, unsigned i, enum item k, uint32_t offset, uint32_t length)
{
	uint8_t *e = table + VHDX_MT_ENTRIES + i * VHDX_ME_SIZE;
	struct guid g = item_guid(k);
	memcpy(e + VHDX_ME_ITEM_ID, g.bytes, 16);
	store_le32(e + VHDX_ME_OFFSET, offset);
	store_le32(e + VHDX_ME_LENGTH, length);
	store_le32(e + VHDX_ME_FLAGS, items[k].flags);
}

/* The metadata table and its items, packed after the 64 KiB table. */
static int build_metadata(const struct create_plan *p, uint8_t **out, size_t *out_len)
{
	uint8_t *loc = NULL;
	uint32_t loc_len = 0;
	int ret = p->type == TYPE_DIFFERENCING ? vhdx_locator_build(&p->parent_linkage, p->relative,
								    p->absolute, &loc, &loc_len)
					       : 0;
	if (ret)
		return ret;
	size_t size = VHDX_METADATA_TABLE_SIZE + 40 + loc_len;
	uint8_t *buf = calloc(1, size);
	struct guid page83;
	if (!buf || (ret = guid_generate(&page83))) {
		free(buf);
		free(loc);
		return buf ? ret : -ENOMEM;
	}
	uint8_t *item = buf + VHDX_METADATA_TABLE_SIZE;
	uint32_t flags = (p->g.leave_blocks_allocated ? VHDX_FP_LEAVE_BLOCKS_ALLOCATED : 0) |
			 (p->g.has_parent ? VHDX_FP_HAS_PARENT : 0);
	store_le32(item + VHDX_FP_BLOCK_SIZE, p->g.block_size);
	store_le32(item + VHDX_FP_FLAGS, flags);
	store_le64(item + 8, p->g.virtual_size);
	memcpy(item + 16, page83.bytes, 16);
	store_le32(item + 32, p->g.logical_sector_size);
	store_le32(item + 36, p->g.physical_sector_size);
	if (loc)
		memcpy(item + 40, loc, loc_len);
	free(loc);

	static const uint32_t at[ITEM_COUNT] = { 0, 8, 16, 32, 36, 40 };
	unsigned n = loc_len ? ITEM_COUNT : ITEM_PARENT_LOCATOR;
	memcpy(buf + VHDX_MT_SIGNATURE, VHDX_METADATA_SIGNATURE, 8);
	store_le16(buf + VHDX_MT_ENTRY_COUNT, (uint16_t)n);
	for (unsigned k = 0; k < n; k++)
		put_item(buf, k, (enum item)k, VHDX_METADATA_TABLE_SIZE + at[k],
			 k == ITEM_PARENT_LOCATOR ? loc_len : items[k].size);
	*out = buf;
	*out_len = size;
	return 0;
}

/* Fixed images: every payload block present, in order after the BAT; written 1 MiB of
 * entries at a time. */
static int write_fixed_bat(int fd, const struct create_plan *p)
{
	const struct vhdx *g = &p->g;
	uint8_t *buf = malloc(COPY_CHUNK);
	int ret = 0;
	if (!buf)
		return -ENOMEM;
	for (uint64_t i = 0; i < g->bat_entries && ret == 0;) {
		uint64_t n = min_u64(COPY_CHUNK / 8, g->bat_entries - i);
		for (uint64_t k = 0; k < n; k++, i++) {
			uint64_t e = 0;
			if (!vhdx_is_bitmap_index(g, i))
				e = vhdx_bat_entry(VHDX_BLOCK_FULLY_PRESENT,
						   p->data_offset +
							   entry_block(g, i) * g->block_size);
			store_le64(buf + k * 8, e);
		}
		ret = vdisk_fd_pwrite_all(fd, buf, (size_t)n * 8, g->bat_offset + (i - n) * 8);
	}
	free(buf);
	return ret;
}

/* Really allocated, never sparse: fallocate, or zeros written where it is missing. */
static int allocate_file(int fd, uint64_t size)
{
	if (fallocate(fd, 0, 0, (off_t)size) == 0)
		return 0;
	if (errno != EOPNOTSUPP && errno != ENOSYS)
		return -errno;
	uint8_t *zeros = calloc(1, COPY_CHUNK);
	int ret = 0;
	if (!zeros)
		return -ENOMEM;
	for (uint64_t off = 0; off < size && ret == 0; off += COPY_CHUNK)
		ret = vdisk_fd_pwrite_all(fd, zeros, (size_t)min_u64(COPY_CHUNK, size - off), off);
	free(zeros);
	return ret;
}

static int write_image(int fd, const struct create_plan *p)
{
	uint8_t *buf = NULL;
	size_t len;

	int ret = p->type == TYPE_FIXED ? allocate_file(fd, p->file_size) : 0;
	if (ret == 0 && ftruncate(fd, (off_t)p->file_size) != 0)
		ret = -errno;
	if (ret == 0 && p->type == TYPE_FIXED)
		ret = write_fixed_bat(fd, p);
	if (ret == 0)
		ret = build_metadata(p, &buf, &len);
	if (ret == 0)
		ret = vdisk_fd_pwrite_all(fd, buf, len, CREATE_METADATA_OFFSET);
	free(buf);
	buf = NULL;
	if (ret == 0)
		ret = build_header_section(p, &buf, &len);
	if (ret == 0)
		ret = vdisk_fd_pwrite_all(fd, buf, len, 0);
	free(buf);
	return ret;
}

int vhdx_create(const char *path, const struct vdisk_create_options *opts, char *err,
		size_t err_size)
{
	struct create_plan p = { 0 };
	int fd = -1;
	bool created = false;

	int ret = plan_image(path, opts, &p, err, err_size);
	if (ret == 0)
		ret = vdisk_create_begin(path, opts->overwrite, &fd, &created, err, err_size);
	if (ret)
		goto out;
	ret = write_image(fd, &p);
	ret = vdisk_create_end(path, fd, created, ret);
	if (ret) {
		if (ret == -ENAMETOOLONG)
			vdisk_errorf(err, err_size, ret,
				     "the parent's path is too long for a parent locator");
		else if (ret == -EILSEQ)
			vdisk_errorf(err, err_size, ret,
				     "the parent's path is not valid UTF-8: a parent locator "
				     "cannot hold "
				     "it");
		else
			vdisk_errorf(err, err_size, ret, "cannot write the image: %s",
				     strerror(-ret));
	}
out:
	free(p.absolute);
	free(p.relative);
	return ret;
}

/* ---- info ---- */

static json_t *json_guid(const struct guid *g)
{
	char s[GUID_STR_LEN + 1];
	guid_text(g, s);
	return json_string(s);
}

static json_t *json_str_or_null(const char *s)
{
	return s ? json_string(s) : json_null();
}

static const char *type_name(const struct vhdx *v)
{
	return v->has_parent ? "differencing" : v->leave_blocks_allocated ? "fixed" : "dynamic";
}

static json_t *info_header(const struct header_pair *p, int i, int current)
{
	const struct vhdx_header *h = &p->h[i];
	json_t *o = json_object();
	int ret = 0;
	if (!o)
		return NULL;
	vdisk_json_set(o, "offset", vdisk_json_u64(header_offsets[i]), &ret);
	vdisk_json_set(o, "valid", json_boolean(p->valid[i]), &ret);
	vdisk_json_set(o, "current", json_boolean(i == current), &ret);
	if (p->valid[i]) {
		vdisk_json_set(o, "sequence", vdisk_json_u64(h->sequence), &ret);
		vdisk_json_set(o, "file_write_guid", json_guid(&h->file_write_guid), &ret);
		vdisk_json_set(o, "data_write_guid", json_guid(&h->data_write_guid), &ret);
		vdisk_json_set(o, "log_guid", json_guid(&h->log_guid), &ret);
	} else {
		vdisk_json_set(o, "problem", json_string(p->why[i]), &ret);
	}
	if (ret) {
		json_decref(o);
		return NULL;
	}
	return o;
}

static int info_headers(struct vdisk *disk, const struct vhdx *v, json_t *d)
{
	struct header_pair *p = malloc(sizeof(*p));
	json_t *a = json_array();
	int ret = p && a ? 0 : -ENOMEM;
	if (ret == 0)
		ret = read_headers(disk->file, p);
	for (int i = 0; i < 2 && ret == 0; i++) {
		json_t *o = info_header(p, i, v->current_header);
		if (!o)
			ret = -ENOMEM;
		else
			vdisk_json_append(a, o, &ret);
	}
	free(p);
	if (ret) {
		json_decref(a);
		return ret;
	}
	vdisk_json_set(d, "headers", a, &ret);
	return ret;
}

static int info_log(const struct vhdx *v, json_t *d)
{
	const char *state = v->log_dirty  ? "needs replay"
			    : v->replayed ? "replayed on open"
					  : "clean";
	json_t *o = json_object();
	int ret = o ? 0 : -ENOMEM;
	if (ret)
		return ret;
	vdisk_json_set(o, "offset", vdisk_json_u64(v->header.log_offset), &ret);
	vdisk_json_set(o, "length", vdisk_json_u64(v->header.log_length), &ret);
	vdisk_json_set(o, "state", json_string(state), &ret);
	if (v->replayed || v->log_dirty)
		vdisk_json_set(o, "entries", vdisk_json_u64(v->replay.entries), &ret);
	vdisk_json_set(d, "log", o, &ret);
	return ret;
}

static int info_regions(const struct vhdx *v, json_t *d)
{
	json_t *a = json_array();
	int ret = a ? 0 : -ENOMEM;
	for (unsigned i = 0; i < v->nregions && ret == 0; i++) {
		const struct vhdx_region *r = &v->regions[i];
		json_t *o = json_object();
		if (!o) {
			ret = -ENOMEM;
			break;
		}
		vdisk_json_set(o, "guid", json_guid(&r->guid), &ret);
		vdisk_json_set(o, "name", json_str_or_null(region_name(&r->guid)), &ret);
		vdisk_json_set(o, "offset", vdisk_json_u64(r->file_offset), &ret);
		vdisk_json_set(o, "length", vdisk_json_u64(r->length), &ret);
		vdisk_json_set(o, "required", json_boolean(r->required), &ret);
		vdisk_json_append(a, o, &ret);
	}
	vdisk_json_set(d, "regions", a, &ret);
	vdisk_json_set(d, "region_table", json_integer(v->region_table + 1), &ret);
	return ret;
}

static int info_metadata(const struct vhdx *v, json_t *d)
{
	json_t *o = json_object();
	int ret = o ? 0 : -ENOMEM;
	if (ret)
		return ret;
	vdisk_json_set(o, "block_size", vdisk_json_u64(v->block_size), &ret);
	vdisk_json_set(o, "leave_blocks_allocated", json_boolean(v->leave_blocks_allocated), &ret);
	vdisk_json_set(o, "has_parent", json_boolean(v->has_parent), &ret);
	vdisk_json_set(o, "virtual_size", vdisk_json_u64(v->virtual_size), &ret);
	vdisk_json_set(o, "logical_sector_size", vdisk_json_u64(v->logical_sector_size), &ret);
	vdisk_json_set(o, "physical_sector_size", vdisk_json_u64(v->physical_sector_size), &ret);
	vdisk_json_set(o, "page83", json_guid(&v->page83), &ret);
	vdisk_json_set(d, "metadata", o, &ret);
	return ret;
}

static int info_blocks(const struct vhdx *v, json_t *d)
{
	uint64_t count[8] = { 0 }, bitmaps = 0;
	int ret = 0;

	/* the I/O path may be allocating meanwhile: it stores entries atomically */
	for (uint64_t i = 0; i < v->bat_entries; i++) {
		uint64_t e = __atomic_load_n(&v->bat[i], __ATOMIC_RELAXED);
		if (vhdx_is_bitmap_index(v, i))
			bitmaps += vhdx_bat_state(e) == VHDX_BITMAP_PRESENT;
		else if (entry_block(v, i) < v->data_blocks)
			count[vhdx_bat_state(e)]++;
	}
	json_t *o = json_object();
	if (!o)
		return -ENOMEM;
	vdisk_json_set(o, "not_present", vdisk_json_u64(count[VHDX_BLOCK_NOT_PRESENT]), &ret);
	vdisk_json_set(o, "undefined", vdisk_json_u64(count[VHDX_BLOCK_UNDEFINED]), &ret);
	vdisk_json_set(o, "zero", vdisk_json_u64(count[VHDX_BLOCK_ZERO]), &ret);
	vdisk_json_set(o, "unmapped", vdisk_json_u64(count[VHDX_BLOCK_UNMAPPED]), &ret);
	vdisk_json_set(o, "fully_present", vdisk_json_u64(count[VHDX_BLOCK_FULLY_PRESENT]), &ret);
	vdisk_json_set(o, "partially_present", vdisk_json_u64(count[VHDX_BLOCK_PARTIALLY_PRESENT]),
		       &ret);
	vdisk_json_set(d, "block_states", o, &ret);
	vdisk_json_set(d, "sector_bitmaps_present", vdisk_json_u64(bitmaps), &ret);
	vdisk_json_set(d, "bat_entries", vdisk_json_u64(v->bat_entries), &ret);
	vdisk_json_set(d, "chunk_ratio", vdisk_json_u64(v->chunk_ratio), &ret);
	return ret;
}

/* The parent chain: the parent's own details (its "parent" in turn) under "details". */
static int info_parent_image(const struct vhdx *v, json_t *p)
{
	struct vdisk_info pi;
	int ret = vdisk_get_info(v->parent, &pi);
	if (ret)
		return ret;
	vdisk_json_set(p, "format", json_string(pi.format), &ret);
	vdisk_json_set(p, "virtual_size", vdisk_json_u64(pi.virtual_size), &ret);
	vdisk_json_set(p, "file_size", vdisk_json_u64(pi.file_size), &ret);
	if (pi.details)
		vdisk_json_set(p, "details", pi.details, &ret);
	return ret;
}

static int info_parent(const struct vhdx *v, json_t *d)
{
	const struct vhdx_parent_locator *l = &v->locator;
	json_t *p = json_object();
	int ret = p ? 0 : -ENOMEM;
	if (ret)
		return ret;
	vdisk_json_set(p, "linkage", json_str_or_null(l->parent_linkage), &ret);
	vdisk_json_set(p, "linkage2", json_str_or_null(l->parent_linkage2), &ret);
	vdisk_json_set(p, "relative_path", json_str_or_null(l->relative_path), &ret);
	vdisk_json_set(p, "absolute_win32_path", json_str_or_null(l->absolute_win32_path), &ret);
	vdisk_json_set(p, "volume_path", json_str_or_null(l->volume_path), &ret);
	vdisk_json_set(p, "path", json_str_or_null(v->parent_path), &ret);
	if (ret == 0 && v->parent)
		ret = info_parent_image(v, p);
	vdisk_json_set(d, "parent", p, &ret);
	return ret;
}

int vhdx_get_info(struct vdisk *disk, struct vdisk_info *info)
{
	const struct vhdx *v = disk->priv;
	json_t *d = json_object();
	int ret = d ? 0 : -ENOMEM;

	info->cluster_size = v->block_size;
	info->logical_sector_size = v->logical_sector_size;
	info->physical_sector_size = v->physical_sector_size;
	if (ret == 0) {
		vdisk_json_set(d, "type", json_string(type_name(v)), &ret);
		vdisk_json_set(d, "creator", json_string(v->creator), &ret);
	}
	if (ret == 0)
		ret = info_headers(disk, v, d);
	if (ret == 0)
		ret = info_log(v, d);
	if (ret == 0)
		ret = info_regions(v, d);
	if (ret == 0)
		ret = info_metadata(v, d);
	if (ret == 0)
		ret = info_blocks(v, d);
	if (ret == 0 && v->has_parent)
		ret = info_parent(v, d);
	if (ret) {
		json_decref(d);
		return ret;
	}
	info->details = d;
	return 0;
}

/* ---- check and repair ---- */

/* A repaired problem is reported once, as "fixed", not also as "error": errors and leaks
 * count what is still wrong afterwards. */
enum severity {
	SEV_ERROR,
	SEV_LEAK,
	SEV_FIXED,
};

struct check {
	struct vdisk *disk;
	struct vhdx *v;
	struct vdisk_file *file;
	bool repair;
	struct vdisk_check_result *res;
	uint64_t *bat; /* the BAT as on disk, host-endian */
	bool wrote;    /* sync before returning */
	unsigned bat_findings;
	unsigned quiet[3]; /* BAT findings beyond MAX_REPEATED_FINDINGS, by severity */
	int error;	   /* out of memory: the check could not finish */
};

static const char *const severity_names[] = { "error", "leak", "fixed" };

static void tally(struct check *c, enum severity sev)
{
	if (sev == SEV_ERROR)
		c->res->errors++;
	else if (sev == SEV_LEAK)
		c->res->leaks++;
	else
		c->res->fixed++;
}

static void add_finding(struct check *c, enum severity sev, const char *msg)
{
	json_t *o = json_pack("{s:s, s:s}", "severity", severity_names[sev], "message", msg);
	if (!o || json_array_append_new(c->res->findings, o))
		c->error = -ENOMEM;
}

static void finding(struct check *c, enum severity sev, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

static void finding(struct check *c, enum severity sev, const char *fmt, ...)
{
	char msg[700];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	add_finding(c, sev, msg);
	tally(c, sev);
}

/* BAT findings: the first ones in full, the rest counted and summed up at the end. */
static void bat_finding(struct check *c, enum severity sev, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

static void bat_finding(struct check *c, enum severity sev, const char *fmt, ...)
{
	char msg[700];
	va_list ap;

	if (c->bat_findings++ >= MAX_REPEATED_FINDINGS) {
		c->quiet[sev]++;
		tally(c, sev);
		return;
	}
	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	add_finding(c, sev, msg);
	tally(c, sev);
}

static void bat_findings_summary(struct check *c)
{
	static const char *const what[] = { "more BAT entries have problems",
					    "more BAT entries leak space",
					    "more BAT entries were repaired" };
	for (int s = 0; s < 3; s++) {
		if (!c->quiet[s])
			continue;
		char msg[120];
		snprintf(msg, sizeof(msg), "%u %s", c->quiet[s], what[s]);
		add_finding(c, (enum severity)s, msg); /* counted one by one already */
	}
}

static void check_log(struct check *c)
{
	const struct vhdx *v = c->v;
	unsigned n = v->replay.entries;
	if (v->replayed && n)
		finding(c, SEV_FIXED,
			"the log held %u entr%s that %s not applied (the image was not closed "
			"cleanly); %s replayed when the image was opened",
			n, plural(n, "y", "ies"), plural(n, "was", "were"),
			plural(n, "it was", "they were"));
	else if (v->replayed)
		finding(c, SEV_FIXED,
			"the header named a log but the log held no complete entry; the log was "
			"cleared when the image was opened");
	if (v->log_dirty)
		finding(c, SEV_ERROR,
			"the log needs replay: it holds %u entr%s that %s not applied (the image "
			"was not closed cleanly); 'vdisk check --repair' replays it",
			n, plural(n, "y", "ies"), plural(n, "was", "were"));
}

static void check_headers(struct check *c)
{
	struct header_pair *p = malloc(sizeof(*p));
	if (!p) {
		c->error = -ENOMEM;
		return;
	}
	int ret = read_headers(c->file, p);
	if (ret)
		finding(c, SEV_ERROR, "cannot read the headers: %s", strerror(-ret));
	for (int i = 0; i < 2 && ret == 0; i++) {
		if (p->valid[i])
			continue;
		if (!c->repair) {
			finding(c, SEV_ERROR,
				"header %d (at %u KiB) is damaged (%s); header %d is "
				"intact",
				i + 1, (unsigned)(header_offsets[i] >> 10), p->why[i], 2 - i);
			continue;
		}
		/* the update writes the other (damaged) copy first, then the current one */
		struct guid fw;
		ret = guid_generate(&fw);
		if (ret == 0)
			ret = vhdx_header_update(c->disk, c->v, &fw, NULL, NULL);
		if (ret)
			finding(c, SEV_ERROR,
				"header %d (at %u KiB) is damaged (%s) and could not "
				"be rewritten: %s",
				i + 1, (unsigned)(header_offsets[i] >> 10), p->why[i],
				strerror(-ret));
		else
			finding(c, SEV_FIXED,
				"header %d (at %u KiB) was damaged (%s); rewrote both "
				"headers from header %d",
				i + 1, (unsigned)(header_offsets[i] >> 10), p->why[i], 2 - i);
		break;
	}
	free(p);
}

static void fix_region_table(struct check *c, const struct region_pair *p, int bad,
			     const char *problem)
{
	unsigned kib = (unsigned)(region_table_offsets[bad] >> 10);
	if (!c->repair) {
		finding(c, SEV_ERROR, "region table %d (at %u KiB) %s", bad + 1, kib, problem);
		return;
	}
	int ret = vdisk_file_pwrite_sync(c->file, p->raw[!bad], VHDX_REGION_TABLE_SIZE,
					 region_table_offsets[bad]);
	if (ret)
		finding(c, SEV_ERROR,
			"region table %d (at %u KiB) %s, and could not be "
			"rewritten: %s",
			bad + 1, kib, problem, strerror(-ret));
	else
		finding(c, SEV_FIXED, "region table %d (at %u KiB) %s; rewrote it from table %d",
			bad + 1, kib, problem, 2 - bad);
}

static void check_region_tables(struct check *c)
{
	struct region_pair p;
	char problem[260];
	int ret = read_region_tables(c->file, &p);
	if (ret == -ENOMEM)
		c->error = ret;
	else if (ret)
		finding(c, SEV_ERROR, "cannot read the region tables: %s", strerror(-ret));
	else if (!p.valid[0] && !p.valid[1])
		finding(c, SEV_ERROR, "neither region table is valid (table 1: %s; table 2: %s)",
			p.why[0], p.why[1]);
	else if (!p.valid[0] || !p.valid[1]) {
		int bad = !p.valid[0] ? 0 : 1;
		snprintf(problem, sizeof(problem), "is damaged (%s)", p.why[bad]);
		fix_region_table(c, &p, bad, problem);
	} else if (memcmp(p.raw[0], p.raw[1], VHDX_REGION_TABLE_SIZE)) {
		fix_region_table(c, &p, !c->v->region_table, "differs from the one in use");
	}
	region_pair_free(&p);
}

/* What load tolerates but the specification does not: known items longer than they are,
 * known items not marked required. Repair rewrites the entry's length and flags. */
static void check_meta_entry(struct check *c, const struct meta_entry *m, unsigned i)
{
	enum item k = item_of(&m->id, m->flags);
	char problem[2][120];
	int n = 0;
	if (k == ITEM_COUNT || (k == ITEM_PARENT_LOCATOR && !c->v->has_parent))
		return;
	uint32_t length = m->length, flags = m->flags | VHDX_ME_IS_REQUIRED;
	if (k != ITEM_PARENT_LOCATOR && m->length != items[k].size) {
		length = items[k].size;
		snprintf(problem[n++], sizeof(problem[0]),
			 "is %" PRIu32 " bytes (the "
			 "specification says %" PRIu32 ")",
			 m->length, length);
	}
	if (!(m->flags & VHDX_ME_IS_REQUIRED))
		snprintf(problem[n++], sizeof(problem[0]), "is not marked required");
	for (int p = 0; p < n && !c->repair; p++)
		finding(c, SEV_ERROR, "the %s item %s", items[k].name, problem[p]);
	if (!n || !c->repair)
		return;
	uint8_t le[8];
	store_le32(le, length);
	store_le32(le + 4, flags);
	int ret = vdisk_file_pwrite_sync(c->file, le, sizeof(le),
					 c->v->metadata_offset + VHDX_MT_ENTRIES +
						 (uint64_t)i * VHDX_ME_SIZE + VHDX_ME_LENGTH);
	for (int p = 0; p < n; p++) {
		if (ret)
			finding(c, SEV_ERROR,
				"the %s item %s, and its entry could not be "
				"rewritten: %s",
				items[k].name, problem[p], strerror(-ret));
		else
			finding(c, SEV_FIXED, "the %s item %s; rewrote its entry", items[k].name,
				problem[p]);
	}
}

static void check_metadata(struct check *c)
{
	struct meta_entry *m;
	unsigned n;
	char why[300];
	int ret = read_meta_table(c->file, c->v, &m, &n, why, sizeof(why));
	if (ret == -ENOMEM) {
		c->error = ret;
		return;
	}
	if (ret) {
		finding(c, SEV_ERROR, "%s", why);
		return;
	}
	for (unsigned i = 0; i < n; i++)
		check_meta_entry(c, &m[i], i);
	free(m);
}

static int set_entry(struct check *c, uint64_t index, uint64_t value)
{
	uint8_t le[8];
	store_le64(le, value);
	int ret = vdisk_file_pwrite(c->file, le, sizeof(le), c->v->bat_offset + 8 * index);
	if (ret == 0) {
		c->wrote = true;
		c->bat[index] = value;
		__atomic_store_n(&c->v->bat[index], value, __ATOMIC_RELEASE);
	}
	return ret;
}

static void fix_entry(struct check *c, uint64_t index, uint64_t value, const char *what,
		      const char *how)
{
	int ret = set_entry(c, index, value);
	if (ret)
		bat_finding(c, SEV_ERROR, "%s; could not change the entry: %s", what,
			    strerror(-ret));
	else
		bat_finding(c, SEV_FIXED, "%s; %s", what, how);
}

/* Drops an entry whose block cannot be read: in a differencing image a fully present block
 * becomes Zero (it read as zeros, past the end of the file), everything else not present
 * (zeros, or the parent: the I/O path reads an absent sector bitmap as all clear). */
static void drop_entry(struct check *c, uint64_t index, const char *what, bool past_end)
{
	const struct vhdx *v = c->v;
	bool zero = past_end && v->has_parent && !vhdx_is_bitmap_index(v, index) &&
		    vhdx_bat_state(c->bat[index]) == VHDX_BLOCK_FULLY_PRESENT;
	const char *how = zero ? "marked the block zero (it read as zeros)"
			  : vhdx_is_bitmap_index(v, index) ? "dropped the sector bitmap"
			  : v->has_parent
				  ? "dropped the entry (that part of the disk now reads from "
				    "the parent)"
				  : "dropped the entry (that part of the disk reads as zeros)";
	fix_entry(c, index, vhdx_bat_entry(zero ? VHDX_BLOCK_ZERO : VHDX_BLOCK_NOT_PRESENT, 0),
		  what, how);
}

static int copy_range(struct check *c, uint64_t from, uint64_t to, uint64_t len)
{
	uint8_t *buf = malloc(COPY_CHUNK);
	int ret = 0;
	if (!buf)
		return -ENOMEM;
	for (uint64_t done = 0; done < len && ret == 0;) {
		size_t n = (size_t)min_u64(COPY_CHUNK, len - done);
		ret = vdisk_file_pread(c->file, buf, n, from + done);
		if (ret == 0)
			ret = vdisk_file_pwrite(c->file, buf, n, to + done);
		done += n;
	}
	free(buf);
	return ret;
}

/* Gives a block that overlaps another its own copy at the end of the file (1 MiB
 * aligned), so both entries keep reading what they read now. */
static int relocate_block(struct check *c, uint64_t index, const char *what)
{
	uint64_t need = entry_need(c->v, index), from = vhdx_bat_offset(c->bat[index]);
	uint64_t to = round_up(c->file->size, MiB), len = entry_span(c->v, index);
	int ret = copy_range(c, from, to, need);
	if (ret == 0 && c->file->size < to + len)
		ret = vdisk_file_set_size(c->file, to + len);
	if (ret == 0)
		ret = vdisk_file_sync(c->file);
	if (ret == 0)
		ret = set_entry(c, index, vhdx_bat_entry(vhdx_bat_state(c->bat[index]), to));
	if (ret == -ENOMEM)
		return ret;
	if (ret)
		bat_finding(c, SEV_ERROR, "%s; could not copy the block of entry %llu: %s", what,
			    ull(index), strerror(-ret));
	else
		bat_finding(c, SEV_FIXED, "%s; gave entry %llu its own copy at byte %llu", what,
			    ull(index), ull(to));
	return 0;
}

/* A block the end of the file cuts short is made whole (the rest reads as zeros, as it did
 * past the end); one that starts past the end is dropped. */
static void fix_past_end(struct check *c, uint64_t index, const char *what)
{
	uint64_t off = vhdx_bat_offset(c->bat[index]);
	if (off >= c->file->size || c->file->is_block_device) {
		drop_entry(c, index, what, true);
		return;
	}
	uint64_t grow = off + entry_span(c->v, index) - c->file->size;
	int ret = vdisk_file_set_size(c->file, off + entry_span(c->v, index));
	if (ret) {
		bat_finding(c, SEV_ERROR, "%s; could not extend the file: %s", what,
			    strerror(-ret));
		return;
	}
	c->wrote = true;
	bat_finding(c, SEV_FIXED,
		    "%s; extended the file by %llu bytes so that the block is "
		    "whole (its missing part reads as zeros, as before)",
		    what, ull(grow));
}

static int check_issue(void *ctx, const struct bat_issue *issue)
{
	struct check *c = ctx;
	uint64_t i = issue->index, e = c->bat[i];
	char what[400];

	describe_issue(c->v, c->bat, issue, what, sizeof(what));
	if (!c->repair) {
		bat_finding(c, SEV_ERROR, "%s", what);
		return 0;
	}
	switch (issue->kind) {
	case BAT_STALE_OFFSET:
		fix_entry(c, i, vhdx_bat_entry(vhdx_bat_state(e), 0), what, "cleared the offset");
		break;
	case BAT_RESERVED_BITS:
		fix_entry(c, i, e & ~BAT_RESERVED_MASK, what, "cleared them");
		break;
	case BAT_PARTIAL_NOT_DIFF:
		fix_entry(c, i, vhdx_bat_entry(VHDX_BLOCK_FULLY_PRESENT, vhdx_bat_offset(e)), what,
			  "marked the block fully present (its data stays)");
		break;
	case BAT_OVERLAP:
		return relocate_block(c, i, what);
	case BAT_PAST_END:
		fix_past_end(c, i, what);
		break;
	default:
		drop_entry(c, i, what, false);
		break;
	}
	return 0;
}

static int check_bat(struct check *c)
{
	struct layout l;
	int ret = read_bat(c->file, c->v, &c->bat);
	if (ret == -ENOMEM)
		return c->error = ret;
	if (ret) {
		finding(c, SEV_ERROR, "cannot read the BAT: %s", strerror(-ret));
		return ret;
	}
	ret = layout_build(c->v, &l);
	if (ret == 0) {
		ret = bat_scan(c->v, c->bat, &c->file->size, &l, check_issue, c);
		free(l.s);
	}
	bat_findings_summary(c);
	if (ret == 0 && c->repair) {
		/* what was masked in memory at load now matches the repaired BAT */
		for (uint64_t i = 0; i < c->v->bat_entries; i++)
			__atomic_store_n(&c->v->bat[i], c->bat[i], __ATOMIC_RELEASE);
		c->v->bad_bat_entries = 0;
	}
	if (ret < 0)
		c->error = ret;
	return ret;
}

/* Space in use, sorted: the header section, the log and the regions (VDISK_SPAN_FIXED)
 * and the blocks (their BAT index; whole blocks, even where the virtual disk ends before
 * the block does). */
static struct vdisk_span *used_extents(struct check *c, size_t *count)
{
	const struct vhdx *v = c->v;
	struct layout l;
	size_t n = 0;

	if (layout_build(v, &l))
		return NULL;
	struct vdisk_span *e = malloc((l.n + present_entries(v, c->bat)) * sizeof(*e));
	if (!e) {
		free(l.s);
		return NULL;
	}
	for (unsigned i = 0; i < l.n; i++)
		e[n++] = (struct vdisk_span){ l.s[i].start, l.s[i].end, VDISK_SPAN_FIXED };
	free(l.s);
	for (uint64_t i = 0; i < v->bat_entries; i++) {
		uint64_t off = vhdx_bat_offset(c->bat[i]);
		if (entry_present(v, i, c->bat[i]) && off)
			e[n++] = (struct vdisk_span){ off, off + entry_span(v, i), i };
	}
	vdisk_spans_sort(e, n);
	*count = n;
	return e;
}

/* Truncates the file after its last used byte. */
static void reclaim_tail(struct check *c, uint64_t used_end)
{
	uint64_t size = c->file->size, leaked = size - used_end;
	if (!c->repair || c->file->is_block_device) {
		finding(c, SEV_LEAK,
			"%llu bytes at the end of the file (bytes %llu to %llu) are not used by "
			"any "
			"block",
			ull(leaked), ull(used_end), ull(size));
		return;
	}
	int ret = vdisk_file_set_size(c->file, used_end);
	if (ret == 0)
		ret = vdisk_file_sync(c->file);
	if (ret)
		finding(c, SEV_LEAK,
			"%llu bytes at the end of the file are not used by any block and could not "
			"be reclaimed: %s",
			ull(leaked), strerror(-ret));
	else
		finding(c, SEV_FIXED, "reclaimed %llu leaked bytes at the end of the file",
			ull(leaked));
}

/* Leaks are unused MiB between blocks and a tail after the last block. Space before the
 * first block is the creator's layout. */
static void check_leaks(struct check *c)
{
	uint64_t pos = 0, gaps = 0;
	bool blocks = false;
	size_t n;

	struct vdisk_span *e = used_extents(c, &n);
	if (!e) {
		c->error = -ENOMEM;
		return;
	}
	for (size_t i = 0; i < n; i++) {
		if (blocks && e[i].start > pos && gaps++ < MAX_REPEATED_FINDINGS)
			finding(c, SEV_LEAK,
				"%llu MiB at byte %llu (before the block at byte %llu) are not "
				"used "
				"by any block",
				ull((e[i].start - pos) / MiB), ull(pos), ull(e[i].start));
		blocks |= e[i].index != VDISK_SPAN_FIXED;
		if (e[i].end > pos)
			pos = e[i].end;
	}
	free(e);
	if (gaps > MAX_REPEATED_FINDINGS)
		finding(c, SEV_LEAK, "%llu more unused ranges between blocks",
			ull(gaps - MAX_REPEATED_FINDINGS));
	if (blocks && c->file->size > pos)
		reclaim_tail(c, pos);
}

int vhdx_check(struct vdisk *disk, unsigned flags, struct vdisk_check_result *result)
{
	struct check c = { .disk = disk,
			   .v = disk->priv,
			   .file = disk->file,
			   .repair = flags & VDISK_CHECK_REPAIR,
			   .res = result };

	if (c.repair && disk->read_only)
		return -EROFS;
	if (!result->findings && !(result->findings = json_array()))
		return -ENOMEM;
	check_log(&c);
	if (c.error == 0)
		check_headers(&c);
	if (c.error == 0)
		check_region_tables(&c);
	if (c.error == 0)
		check_metadata(&c);
	if (c.error == 0 && check_bat(&c) == 0)
		check_leaks(&c);
	free(c.bat);
	if (c.wrote && c.error == 0) {
		int ret = vdisk_file_sync(c.file);
		if (ret)
			finding(&c, SEV_ERROR, "cannot flush the repairs: %s", strerror(-ret));
	}
	return c.error;
}
