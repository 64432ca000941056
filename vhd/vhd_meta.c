/* VHD metadata: the footer and the dynamic header (parse, build, validate), CHS geometry,
 * loading an image's metadata and BAT, finding a differencing image's parent, creation,
 * info and check/repair. The I/O path (vhd.c) works from what vhd_load leaves in struct vhd.
 *
 * Format facts this file relies on, from Microsoft's "Virtual Hard Disk Image Format
 * Specification" and from what qemu (block/vpc.c), blktap (libvhd) and libvhdi do:
 * - A locator's "data space" is in sectors by the specification, but Virtual PC and Hyper-V
 *   store bytes. Readers (blktap, VirtualBox) take a value below 512 as sectors and anything
 *   else as bytes. We write bytes, a multiple of 512 and never below 512, as Windows does:
 *   every reader then agrees on the space.
 * - Unique ids are stored in RFC 4122 (big-endian) byte order: qemu writes them so and
 *   libvhdi/vhdiinfo print them so. struct guid holds Microsoft's mixed-endian order, so
 *   the first three fields are swapped on the way in and out.
 * - A child's parent timestamp is the parent file's modification time in VHD seconds (the
 *   specification's definition; blktap and VirtualBox write the same). Nothing here
 *   compares it: file copies change it, so the parent's unique id is the identity.
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
#include <time.h>
#include <unistd.h>

#include "arith.h"
#include "json_util.h"
#include "endian.h"
#include "guid.h"
#include "utf16.h"
#include "geometry.h"
#include "parent_search.h"
#include "vhd_internal.h"

#define ARRAY_SIZE(a) (sizeof(a) / sizeof((a)[0]))

#define LOCATOR_MAX_DATA VHD_LOCATOR_MAX_DATA
#define OPEN_MIN_BLOCK	 (4u << 10)
#define OPEN_MAX_BLOCK	 (256u << 20)
#define CREATE_MIN_BLOCK (512u << 10)
#define CREATE_MAX_BLOCK (256u << 20)
#define DATA_ALIGN	 4096u /* vhd.c starts each block's data on this boundary */
/* QEMU up to 9.x sizes a VHD by its CHS geometry unless the creator is one it knows to
 * use current_size ("win ", "qem2", "d2v ", "tap\0", "CTXS"); geometry rounds the size
 * down and cuts off the end of the disk (a GPT's backup header). Our images therefore
 * carry Hyper-V's tag, which every reader sizes by current_size. */
#define CREATOR_APP	      "win "
#define CREATOR_VERSION	      0x000a0000u
#define CREATE_BAT_OFFSET     1536u /* footer copy, then the 1024-byte header */
#define MAX_REPEATED_FINDINGS 16
#define COPY_CHUNK	      (1u << 20)

/* ---- small helpers ---- */

static bool is_sparse(uint32_t type)
{
	return type == VHD_TYPE_DYNAMIC || type == VHD_TYPE_DIFFERENCING;
}

static unsigned long long ull(uint64_t v)
{
	return (unsigned long long)v;
}

uint32_t vhd_time(time_t t)
{
	if (t < VHD_EPOCH)
		return 0;
	if ((uint64_t)(t - VHD_EPOCH) > UINT32_MAX)
		return UINT32_MAX;
	return (uint32_t)(t - VHD_EPOCH);
}

/* Four bytes (a creator, host OS or platform code) as text: printable ASCII, '?' for other
 * bytes, trailing spaces and NULs dropped. */
static void fourcc_text(const uint8_t *in, char *out)
{
	int n = 0;
	for (int i = 0; i < 4; i++)
		out[i] = in[i] >= 0x20 && in[i] < 0x7f ? (char)in[i] : in[i] ? '?' : ' ';
	for (n = 4; n > 0 && out[n - 1] == ' '; n--)
		;
	out[n] = 0;
}

static void code_text(uint32_t code, char *out)
{
	uint8_t b[4];
	store_be32(b, code);
	fourcc_text(b, out);
}

/* ---- checksums, unique ids ---- */

uint32_t vhd_checksum(const uint8_t *buf, size_t len, size_t checksum_offset)
{
	uint32_t sum = 0;
	for (size_t i = 0; i < len; i++)
		if (i < checksum_offset || i >= checksum_offset + 4)
			sum += buf[i];
	return ~sum;
}

/* RFC 4122 order on disk <-> Microsoft order in struct guid; the swap is its own inverse. */
static void uuid_swap(const uint8_t *in, uint8_t *out)
{
	static const uint8_t order[16] = { 3, 2, 1, 0, 5, 4, 7, 6, 8, 9, 10, 11, 12, 13, 14, 15 };
	for (int i = 0; i < 16; i++)
		out[i] = in[order[i]];
}

void vhd_uuid_format(const uint8_t *raw, char *out)
{
	struct guid g;
	uuid_swap(raw, g.bytes);
	guid_format(&g, out);
}

static int uuid_generate(uint8_t *raw)
{
	struct guid g;
	int ret = guid_generate(&g);
	if (ret == 0)
		uuid_swap(g.bytes, raw);
	return ret;
}

/* ---- geometry and size ---- */

void vhd_geometry(uint64_t size, uint16_t *cylinders, uint8_t *heads, uint8_t *sectors)
{
	vdisk_chs_geometry(size / VHD_SECTOR, cylinders, heads, sectors);
}

/* Creators whose images are sized by current_size; qemu reads every other creator ("vpc ",
 * "qemu", unknown ones) by CHS, except that a CHS at its maximum means current_size. The
 * list is qemu's (block/vpc.c) plus Azure's "wa\0\0" (known to newer qemu) and ours. */
static const char current_size_creators[][4] = {
	{ 'w', 'i', 'n', ' ' }, { 'q', 'e', 'm', '2' }, { 'd', '2', 'v', ' ' },
	{ 't', 'a', 'p', 0 },	{ 'C', 'T', 'X', 'S' }, { 'w', 'a', 0, 0 },
	{ 'h', 'v', 's', ' ' },
};

uint64_t vhd_virtual_size(const struct vhd_footer *f)
{
	uint64_t chs = (uint64_t)f->cylinders * f->heads * f->sectors;
	bool by_size = chs == VHD_MAX_CHS_SECTORS;

	for (size_t i = 0; i < ARRAY_SIZE(current_size_creators) && !by_size; i++)
		by_size = !memcmp(f->creator_app, current_size_creators[i], 4);
	/* whole sectors: what qemu does with a current_size that is not */
	return by_size ? f->current_size / VHD_SECTOR * VHD_SECTOR : chs * VHD_SECTOR;
}

/* ---- footer ---- */

static int footer_check_offset(const struct vhd_footer *f, char *err, size_t err_size)
{
	switch (f->disk_type) {
	case VHD_TYPE_FIXED:
		/* unused; a few old writers stored the specification's 32-bit 0xFFFFFFFF */
		if (f->data_offset != VHD_NO_OFFSET && f->data_offset != UINT32_MAX)
			return vdisk_errorf(
				err, err_size, -EINVAL,
				"the fixed VHD's footer points to a dynamic header (data offset "
				"%llu); a fixed VHD has none",
				ull(f->data_offset));
		return 0;
	case VHD_TYPE_DYNAMIC:
	case VHD_TYPE_DIFFERENCING:
		if (f->data_offset < VHD_FOOTER_SIZE || f->data_offset % VHD_SECTOR)
			return vdisk_errorf(
				err, err_size, -EINVAL,
				"the footer's dynamic header offset %llu is not a whole sector "
				"after the footer copy",
				ull(f->data_offset));
		return 0;
	default:
		return vdisk_errorf(err, err_size, -EINVAL,
				    "unsupported disk type %" PRIu32
				    " (known: 2 fixed, 3 dynamic, 4 differencing)",
				    f->disk_type);
	}
}

static void footer_fields(const uint8_t *raw, struct vhd_footer *f)
{
	f->features = load_be32(raw + VHD_F_FEATURES);
	f->version = load_be32(raw + VHD_F_VERSION);
	f->data_offset = load_be64(raw + VHD_F_DATA_OFFSET);
	f->timestamp = load_be32(raw + VHD_F_TIMESTAMP);
	memcpy(f->creator_app, raw + VHD_F_CREATOR_APP, 4);
	f->creator_app[4] = 0;
	f->creator_version = load_be32(raw + VHD_F_CREATOR_VERSION);
	f->creator_host_os = load_be32(raw + VHD_F_CREATOR_HOST_OS);
	f->original_size = load_be64(raw + VHD_F_ORIGINAL_SIZE);
	f->current_size = load_be64(raw + VHD_F_CURRENT_SIZE);
	f->cylinders = load_be16(raw + VHD_F_CYLINDERS);
	f->heads = raw[VHD_F_HEADS];
	f->sectors = raw[VHD_F_SECTORS];
	f->disk_type = load_be32(raw + VHD_F_DISK_TYPE);
	f->checksum = load_be32(raw + VHD_F_CHECKSUM);
	memcpy(f->unique_id, raw + VHD_F_UNIQUE_ID, 16);
	f->saved_state = raw[VHD_F_SAVED_STATE];
}

int vhd_footer_parse(const uint8_t *raw, struct vhd_footer *f, char *err, size_t err_size)
{
	if (memcmp(raw + VHD_F_COOKIE, VHD_COOKIE, 8))
		return vdisk_errorf(err, err_size, -EINVAL,
				    "no VHD footer (the cookie is not \"conectix\")");
	uint32_t sum = vhd_checksum(raw, VHD_FOOTER_SIZE, VHD_F_CHECKSUM);
	footer_fields(raw, f);
	if (f->checksum != sum)
		return vdisk_errorf(err, err_size, -EINVAL,
				    "footer checksum mismatch (stored 0x%08" PRIx32
				    ", computed 0x%08" PRIx32 ")",
				    f->checksum, sum);
	if (f->version >> 16 != 1)
		return vdisk_errorf(err, err_size, -EINVAL,
				    "unsupported VHD version %u.%u (1.x is known)",
				    (unsigned)(f->version >> 16), (unsigned)(f->version & 0xffff));
	int ret = footer_check_offset(f, err, err_size);
	if (ret)
		return ret;
	uint64_t size = vhd_virtual_size(f);
	if (size > VHD_MAX_SIZE)
		return vdisk_errorf(err, err_size, -EFBIG,
				    "virtual size %llu bytes is beyond the VHD maximum of 2040 GiB",
				    ull(size));
	return 0;
}

void vhd_footer_build(const struct vhd_footer *f, uint8_t *raw)
{
	memset(raw, 0, VHD_FOOTER_SIZE);
	memcpy(raw + VHD_F_COOKIE, VHD_COOKIE, 8);
	store_be32(raw + VHD_F_FEATURES, f->features);
	store_be32(raw + VHD_F_VERSION, f->version);
	store_be64(raw + VHD_F_DATA_OFFSET, f->data_offset);
	store_be32(raw + VHD_F_TIMESTAMP, f->timestamp);
	memcpy(raw + VHD_F_CREATOR_APP, f->creator_app, 4);
	store_be32(raw + VHD_F_CREATOR_VERSION, f->creator_version);
	store_be32(raw + VHD_F_CREATOR_HOST_OS, f->creator_host_os);
	store_be64(raw + VHD_F_ORIGINAL_SIZE, f->original_size);
	store_be64(raw + VHD_F_CURRENT_SIZE, f->current_size);
	store_be16(raw + VHD_F_CYLINDERS, f->cylinders);
	raw[VHD_F_HEADS] = f->heads;
	raw[VHD_F_SECTORS] = f->sectors;
	store_be32(raw + VHD_F_DISK_TYPE, f->disk_type);
	memcpy(raw + VHD_F_UNIQUE_ID, f->unique_id, 16);
	raw[VHD_F_SAVED_STATE] = f->saved_state;
	store_be32(raw + VHD_F_CHECKSUM, vhd_checksum(raw, VHD_FOOTER_SIZE, VHD_F_CHECKSUM));
}

/* ---- dynamic header ---- */

static void swap_utf16(const uint8_t *in, uint8_t *out, size_t len)
{
	for (size_t i = 0; i + 1 < len; i += 2) {
		out[i] = in[i + 1];
		out[i + 1] = in[i];
	}
}

static void parent_name_decode(const uint8_t *be, char *out, size_t out_size)
{
	uint8_t le[VHD_PARENT_NAME_BYTES];
	swap_utf16(be, le, sizeof(le));
	if (utf16le_to_utf8(le, sizeof(le), out, out_size) < 0)
		out[0] = 0; /* undecodable: only messages and a last-resort lookup use it */
}

static int parent_name_encode(const char *name, uint8_t *be)
{
	uint8_t le[VHD_PARENT_NAME_BYTES];
	ssize_t n = utf8_to_utf16le(name, le, sizeof(le));
	memset(be, 0, VHD_PARENT_NAME_BYTES);
	if (n < 0)
		return (int)n;
	swap_utf16(le, be, (size_t)n);
	return 0;
}

static void header_fields(const uint8_t *raw, struct vhd_header *h)
{
	h->data_offset = load_be64(raw + VHD_H_DATA_OFFSET);
	h->table_offset = load_be64(raw + VHD_H_TABLE_OFFSET);
	h->version = load_be32(raw + VHD_H_VERSION);
	h->max_table_entries = load_be32(raw + VHD_H_MAX_TABLE_ENTRIES);
	h->block_size = load_be32(raw + VHD_H_BLOCK_SIZE);
	h->checksum = load_be32(raw + VHD_H_CHECKSUM);
	memcpy(h->parent_id, raw + VHD_H_PARENT_ID, 16);
	h->parent_timestamp = load_be32(raw + VHD_H_PARENT_TIMESTAMP);
	parent_name_decode(raw + VHD_H_PARENT_NAME, h->parent_name, sizeof(h->parent_name));
	for (int i = 0; i < VHD_LOCATORS; i++) {
		const uint8_t *l = raw + VHD_H_LOCATORS + VHD_LOCATOR_SIZE * i;
		h->locators[i] = (struct vhd_locator){
			.code = load_be32(l + VHD_L_CODE),
			.data_space = load_be32(l + VHD_L_DATA_SPACE),
			.data_length = load_be32(l + VHD_L_DATA_LENGTH),
			.data_offset = load_be64(l + VHD_L_DATA_OFFSET),
		};
	}
}

int vhd_header_parse(const uint8_t *raw, struct vhd_header *h, char *err, size_t err_size)
{
	if (memcmp(raw, VHD_HEADER_COOKIE, 8))
		return vdisk_errorf(err, err_size, -EINVAL,
				    "no dynamic disk header (the cookie is not \"cxsparse\")");
	uint32_t sum = vhd_checksum(raw, VHD_HEADER_SIZE, VHD_H_CHECKSUM);
	header_fields(raw, h);
	if (h->checksum != sum)
		return vdisk_errorf(err, err_size, -EINVAL,
				    "dynamic header checksum mismatch (stored 0x%08" PRIx32
				    ", computed 0x%08" PRIx32 ")",
				    h->checksum, sum);
	if (h->version != VHD_HEADER_VERSION)
		return vdisk_errorf(err, err_size, -EINVAL,
				    "unsupported dynamic header version 0x%08" PRIx32
				    " (0x00010000 is known)",
				    h->version);
	if (!is_power_of_two(h->block_size) || h->block_size < OPEN_MIN_BLOCK ||
	    h->block_size > OPEN_MAX_BLOCK)
		return vdisk_errorf(err, err_size, -EINVAL,
				    "block size %" PRIu32
				    " is not a power of two from 4 KiB to 256 MiB",
				    h->block_size);
	if (h->max_table_entries > VHD_MAX_SIZE / h->block_size)
		return vdisk_errorf(err, err_size, -EINVAL,
				    "the BAT claims %" PRIu32 " entries; %llu blocks of %" PRIu32
				    " bytes already make 2040 GiB, the VHD maximum",
				    h->max_table_entries, ull(VHD_MAX_SIZE / h->block_size),
				    h->block_size);
	return 0;
}

void vhd_header_build(const struct vhd_header *h, uint8_t *raw)
{
	memset(raw, 0, VHD_HEADER_SIZE);
	memcpy(raw, VHD_HEADER_COOKIE, 8);
	store_be64(raw + VHD_H_DATA_OFFSET, h->data_offset);
	store_be64(raw + VHD_H_TABLE_OFFSET, h->table_offset);
	store_be32(raw + VHD_H_VERSION, h->version);
	store_be32(raw + VHD_H_MAX_TABLE_ENTRIES, h->max_table_entries);
	store_be32(raw + VHD_H_BLOCK_SIZE, h->block_size);
	memcpy(raw + VHD_H_PARENT_ID, h->parent_id, 16);
	store_be32(raw + VHD_H_PARENT_TIMESTAMP, h->parent_timestamp);
	parent_name_encode(h->parent_name, raw + VHD_H_PARENT_NAME); /* too long: left empty */
	for (int i = 0; i < VHD_LOCATORS; i++) {
		uint8_t *l = raw + VHD_H_LOCATORS + VHD_LOCATOR_SIZE * i;
		const struct vhd_locator *loc = &h->locators[i];
		store_be32(l + VHD_L_CODE, loc->code);
		store_be32(l + VHD_L_DATA_SPACE, loc->data_space);
		store_be32(l + VHD_L_DATA_LENGTH, loc->data_length);
		store_be64(l + VHD_L_DATA_OFFSET, loc->data_offset);
	}
	store_be32(raw + VHD_H_CHECKSUM, vhd_checksum(raw, VHD_HEADER_SIZE, VHD_H_CHECKSUM));
}

/* ---- probe ---- */

int vhd_probe(const struct vdisk_probe *probe)
{
	if (probe->tail_len >= 8 && !memcmp(probe->tail, VHD_COOKIE, 8))
		return 100;
	/* the 511-byte footer of Virtual PC before 2004 */
	if (probe->tail_len == VHD_FOOTER_SIZE && probe->file_size % VHD_SECTOR == VHD_SECTOR - 1 &&
	    !memcmp(probe->tail + 1, VHD_COOKIE, 8))
		return 100;
	if (probe->head_len >= 8 && !memcmp(probe->head, VHD_COOKIE, 8))
		return 100;
	return 0;
}

/* ---- the layout of a sparse image ---- */

/* Space the metadata of a dynamic or differencing image occupies: the footer copy, the
 * header, the BAT (padded to a sector) and, for differencing images, each parent locator's
 * data. The first three are always r[0..2]. */
struct region {
	uint64_t start, end;
	char what[40];
};

struct layout {
	struct region r[3 + VHD_LOCATORS];
	unsigned n;
};

/* Blocks and metadata end where the footer is, and inside the file. */
static uint64_t data_limit(const struct vhd *vhd, uint64_t file_size)
{
	return min_u64(vhd->footer_offset, file_size);
}

static uint64_t block_offset(uint32_t entry)
{
	return (uint64_t)entry * VHD_SECTOR;
}

static bool locator_known(uint32_t code)
{
	return code == VHD_PLATFORM_W2RU || code == VHD_PLATFORM_W2KU ||
	       code == VHD_PLATFORM_WI2R || code == VHD_PLATFORM_WI2K || code == VHD_PLATFORM_MAC ||
	       code == VHD_PLATFORM_MACX;
}

/* Locators count only in differencing images, and only known platforms with data. */
static bool locator_used(const struct vhd *vhd, const struct vhd_locator *loc)
{
	return vhd->footer.disk_type == VHD_TYPE_DIFFERENCING && locator_known(loc->code) &&
	       loc->data_length;
}

/* Reserved space: sectors when below 512, else bytes (see the top of the file). */
static uint64_t locator_space(const struct vhd_locator *loc)
{
	if (loc->data_space < VHD_SECTOR)
		return (uint64_t)loc->data_space * VHD_SECTOR;
	return loc->data_space;
}

static void layout_add(struct layout *l, uint64_t start, uint64_t len, const char *what)
{
	struct region *r = &l->r[l->n++];
	r->start = start;
	r->end = start + len;
	snprintf(r->what, sizeof(r->what), "%s", what);
}

static void layout_base(const struct vhd *vhd, struct layout *l)
{
	uint64_t bat = vhd->header.table_offset;
	l->n = 0;
	layout_add(l, 0, VHD_FOOTER_SIZE, "footer copy");
	layout_add(l, vhd->footer.data_offset, VHD_HEADER_SIZE, "dynamic header");
	layout_add(l, bat, round_up(bat + (uint64_t)vhd->bat_entries * 4, VHD_SECTOR) - bat, "BAT");
}

/* With reserved, each locator covers its whole reserved space (for leak accounting), else
 * its data, in whole sectors. */
static void layout_build(const struct vhd *vhd, struct layout *l, bool reserved)
{
	layout_base(vhd, l);
	for (int i = 0; i < VHD_LOCATORS; i++) {
		const struct vhd_locator *loc = &vhd->header.locators[i];
		if (!locator_used(vhd, loc))
			continue;
		uint64_t len = round_up(loc->data_length, VHD_SECTOR);
		if (reserved && locator_space(loc) > len)
			len = locator_space(loc);
		char what[40], name[5];
		code_text(loc->code, name);
		snprintf(what, sizeof(what), "parent locator %d (%s)", i, name);
		layout_add(l, loc->data_offset, len, what);
	}
}

static const struct region *layout_overlap(const struct layout *l, unsigned count, uint64_t start,
					   uint64_t len)
{
	for (unsigned i = 0; i < count && i < l->n; i++)
		if (ranges_overlap(start, len, l->r[i].start, l->r[i].end - l->r[i].start))
			return &l->r[i];
	return NULL;
}

/* ---- BAT validation, shared by load and check ---- */

enum bat_problem {
	BAT_PAST_END,
	BAT_OVER_METADATA,
	BAT_OVERLAP,
};

struct bat_issue {
	enum bat_problem kind;
	uint32_t index;
	uint32_t other;	  /* BAT_OVERLAP: the entry whose block keeps the place */
	const char *what; /* BAT_OVER_METADATA: the structure hit */
	uint64_t limit;	  /* BAT_PAST_END: where the data area ends */
};

/* Returns 0 to go on, > 0 to stop the scan, -errno to stop with an error. */
typedef int (*bat_issue_fn)(void *ctx, const struct bat_issue *issue);

static void describe_issue(const struct vhd *vhd, const uint32_t *bat, const struct bat_issue *is,
			   char *out, size_t size)
{
	uint64_t start = block_offset(bat[is->index]);
	switch (is->kind) {
	case BAT_PAST_END:
		snprintf(out, size,
			 "BAT entry %" PRIu32 " points past the end of the file (its block at byte "
			 "%llu needs %llu bytes; the data area ends at byte %llu)",
			 is->index, ull(start), ull(vhd_block_span(vhd)), ull(is->limit));
		break;
	case BAT_OVER_METADATA:
		snprintf(out, size,
			 "BAT entry %" PRIu32 " points into the %s (its block is at byte %llu)",
			 is->index, is->what, ull(start));
		break;
	case BAT_OVERLAP:
		snprintf(out, size,
			 "BAT entries %" PRIu32 " and %" PRIu32
			 " overlap (their blocks are at bytes %llu and %llu)",
			 is->other, is->index, ull(block_offset(bat[is->other])), ull(start));
		break;
	}
}

static int compare_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
	return x < y ? -1 : x > y;
}

/* Pass 1: every block inside the data area and clear of the metadata. The blocks that pass
 * go to keys as (sector << 32 | index), ready for sorting. */
static int scan_bounds(const struct vhd *vhd, const uint32_t *bat, uint64_t limit,
		       const struct layout *l, uint64_t *keys, uint32_t *nkeys, bat_issue_fn fn,
		       void *ctx)
{
	uint64_t span = vhd_block_span(vhd);
	uint32_t n = 0;

	for (uint32_t i = 0; i < vhd->bat_entries; i++) {
		if (bat[i] == VHD_BAT_UNUSED)
			continue;
		uint64_t start = block_offset(bat[i]);
		const struct region *r = NULL;
		struct bat_issue issue = { .index = i, .limit = limit };
		if (start > limit || limit - start < span) {
			issue.kind = BAT_PAST_END;
		} else if ((r = layout_overlap(l, l->n, start, span))) {
			issue.kind = BAT_OVER_METADATA;
			issue.what = r->what;
		} else {
			keys[n++] = (uint64_t)bat[i] << 32 | i;
			continue;
		}
		int ret = fn(ctx, &issue);
		if (ret)
			return ret;
	}
	*nkeys = n;
	return 0;
}

/* Pass 2: blocks clear of each other. Blocks are all the same length, so after sorting
 * each block needs comparing only with the last one that kept its place: of overlapping
 * blocks the one at the lowest offset (then the lowest entry) keeps it. */
static int scan_overlaps(const struct vhd *vhd, uint64_t *keys, uint32_t n, bat_issue_fn fn,
			 void *ctx)
{
	uint64_t span = vhd_block_span(vhd);
	uint64_t kept = 0;
	bool have = false;

	qsort(keys, n, sizeof(*keys), compare_u64);
	for (uint32_t k = 0; k < n; k++) {
		uint64_t start = block_offset((uint32_t)(keys[k] >> 32));
		if (have && start < block_offset((uint32_t)(kept >> 32)) + span) {
			struct bat_issue issue = { .kind = BAT_OVERLAP,
						   .index = (uint32_t)keys[k],
						   .other = (uint32_t)kept };
			int ret = fn(ctx, &issue);
			if (ret)
				return ret;
			continue;
		}
		kept = keys[k];
		have = true;
	}
	return 0;
}

static int bat_scan(const struct vhd *vhd, const uint32_t *bat, uint64_t limit,
		    const struct layout *l, bat_issue_fn fn, void *ctx)
{
	uint32_t count = 0, n = 0;
	for (uint32_t i = 0; i < vhd->bat_entries; i++)
		count += bat[i] != VHD_BAT_UNUSED;
	uint64_t *keys = malloc((count ? count : 1) * sizeof(*keys));
	if (!keys)
		return -ENOMEM;
	int ret = scan_bounds(vhd, bat, limit, l, keys, &n, fn, ctx);
	if (ret == 0)
		ret = scan_overlaps(vhd, keys, n, fn, ctx);
	free(keys);
	return ret;
}

/* ---- loading: footer, header, BAT ---- */

static int read_footer(struct vdisk_file *file, uint64_t offset, size_t len, uint8_t *raw)
{
	memset(raw, 0, VHD_FOOTER_SIZE);
	return vdisk_file_pread(file, raw, len, offset);
}

/* The footer at the end: 512 bytes before the end of the file and, first, for a file one
 * byte short of whole sectors, the 511-byte footer of Virtual PC before 2004. */
static int load_end_footer(struct vdisk_file *file, struct vhd *vhd, char *why, size_t why_size)
{
	uint64_t size = file->size, offsets[2];
	size_t lens[2];
	int n = 0, ret = -EINVAL;

	if (size % VHD_SECTOR == VHD_SECTOR - 1) {
		offsets[n] = size - (VHD_FOOTER_SIZE - 1);
		lens[n++] = VHD_FOOTER_SIZE - 1;
	}
	if (size >= VHD_FOOTER_SIZE) {
		offsets[n] = size - VHD_FOOTER_SIZE;
		lens[n++] = VHD_FOOTER_SIZE;
	}
	if (n == 0)
		return vdisk_errorf(why, why_size, -EINVAL,
				    "the file is %llu bytes, too small for a VHD footer",
				    ull(size));
	for (int i = 0; i < n; i++) {
		uint8_t raw[VHD_FOOTER_SIZE];
		ret = read_footer(file, offsets[i], lens[i], raw);
		if (ret)
			return vdisk_errorf(why, why_size, ret, "cannot read the footer: %s",
					    strerror(-ret));
		ret = vhd_footer_parse(raw, &vhd->footer, why, why_size);
		if (ret == 0) {
			memcpy(vhd->footer_raw, raw, sizeof(raw));
			vhd->footer_offset = offsets[i];
			return 0;
		}
	}
	return ret;
}

/* The end footer, or for a dynamic/differencing image whose end footer is damaged, the
 * copy at offset 0. */
static int load_footer(struct vdisk_file *file, struct vhd *vhd, char *err, size_t err_size)
{
	char why[200], why_copy[200];
	uint8_t raw[VHD_FOOTER_SIZE];
	struct vhd_footer copy;

	vhd->footer_from_copy = false;
	int ret = load_end_footer(file, vhd, why, sizeof(why));
	if (ret == 0)
		return 0;
	if (ret != -EINVAL && ret != -EFBIG)
		return vdisk_errorf(err, err_size, ret, "%s", why);
	if (file->size < VHD_FOOTER_SIZE)
		return vdisk_errorf(err, err_size, ret, "%s", why);
	int rret = read_footer(file, 0, VHD_FOOTER_SIZE, raw);
	if (rret)
		return vdisk_errorf(err, err_size, rret, "cannot read the footer copy: %s",
				    strerror(-rret));
	if (vhd_footer_parse(raw, &copy, why_copy, sizeof(why_copy)) == 0 &&
	    is_sparse(copy.disk_type)) {
		vhd->footer = copy;
		memcpy(vhd->footer_raw, raw, sizeof(raw));
		vhd->footer_from_copy = true;
		vhd->footer_offset = round_up(file->size, VHD_SECTOR);
		return 0;
	}
	return vdisk_errorf(err, err_size, ret, "bad VHD footer at the end of the file: %s", why);
}

static int load_fixed(struct vhd *vhd, char *err, size_t err_size)
{
	if (vhd->virtual_size > vhd->footer_offset)
		return vdisk_errorf(
			err, err_size, -EINVAL,
			"the fixed VHD is truncated: the disk needs %llu bytes of data before "
			"the footer, the file has %llu",
			ull(vhd->virtual_size), ull(vhd->footer_offset));
	return 0;
}

static int load_header(struct vdisk_file *file, struct vhd *vhd, char *err, size_t err_size)
{
	uint64_t limit = data_limit(vhd, file->size), off = vhd->footer.data_offset;
	uint8_t raw[VHD_HEADER_SIZE];

	if (off > limit || limit - off < VHD_HEADER_SIZE)
		return vdisk_errorf(
			err, err_size, -EINVAL,
			"the dynamic header (at byte %llu) lies past the end of the file "
			"(%llu bytes)",
			ull(off), ull(file->size));
	int ret = vdisk_file_pread(file, raw, sizeof(raw), off);
	if (ret)
		return vdisk_errorf(err, err_size, ret, "cannot read the dynamic header: %s",
				    strerror(-ret));
	ret = vhd_header_parse(raw, &vhd->header, err, err_size);
	if (ret)
		return ret;
	vhd->block_size = vhd->header.block_size;
	vhd->bitmap_size = (uint32_t)round_up(vhd->block_size / VHD_SECTOR / 8, VHD_SECTOR);
	vhd->bat_entries = vhd->header.max_table_entries;
	vhd->blocks = (uint32_t)((vhd->virtual_size + vhd->block_size - 1) / vhd->block_size);
	if (vhd->blocks > vhd->bat_entries)
		return vdisk_errorf(err, err_size, -EINVAL,
				    "the BAT has %" PRIu32 " entries, but %llu bytes need %" PRIu32
				    " blocks of %" PRIu32 " bytes",
				    vhd->bat_entries, ull(vhd->virtual_size), vhd->blocks,
				    vhd->block_size);
	return 0;
}

static int load_bat(struct vdisk_file *file, struct vhd *vhd, char *err, size_t err_size)
{
	uint64_t limit = data_limit(vhd, file->size), off = vhd->header.table_offset;
	uint64_t bytes = (uint64_t)vhd->bat_entries * 4;
	struct layout l;

	if (off > limit || limit - off < bytes)
		return vdisk_errorf(err, err_size, -EINVAL,
				    "the BAT (%" PRIu32
				    " entries at byte %llu) extends past the end of "
				    "the file (%llu bytes)",
				    vhd->bat_entries, ull(off), ull(file->size));
	layout_base(vhd, &l);
	const struct region *r = layout_overlap(&l, 2, l.r[2].start, l.r[2].end - l.r[2].start);
	if (r)
		return vdisk_errorf(err, err_size, -EINVAL,
				    "the BAT (at byte %llu) overlaps the %s", ull(off), r->what);
	vhd->bat = malloc(bytes ? bytes : 1);
	if (!vhd->bat)
		return vdisk_errorf(err, err_size, -ENOMEM, "out of memory for a %llu-byte BAT",
				    ull(bytes));
	int ret = vdisk_file_pread(file, vhd->bat, bytes, off);
	if (ret)
		return vdisk_errorf(err, err_size, ret, "cannot read the BAT: %s", strerror(-ret));
	for (uint32_t i = 0; i < vhd->bat_entries; i++)
		vhd->bat[i] = load_be32(&vhd->bat[i]);
	return 0;
}

struct load_scan {
	struct vhd *vhd;
	char *err;
	size_t err_size;
};

static int load_issue(void *ctx, const struct bat_issue *issue)
{
	struct load_scan *s = ctx;
	if (s->vhd->load_for_repair) {
		/* overlapping blocks stay: each reads what it did; check gives them copies */
		if (issue->kind != BAT_OVERLAP)
			s->vhd->bat[issue->index] = VHD_BAT_UNUSED;
		s->vhd->bad_bat_entries++;
		return 0;
	}
	describe_issue(s->vhd, s->vhd->bat, issue, s->err, s->err_size);
	return 1;
}

static int load_blocks(struct vdisk_file *file, struct vhd *vhd, char *err, size_t err_size)
{
	struct layout l;
	struct load_scan s = { vhd, err, err_size };

	vhd->bad_bat_entries = 0;
	layout_build(vhd, &l, false);
	int ret = bat_scan(vhd, vhd->bat, data_limit(vhd, file->size), &l, load_issue, &s);
	if (ret > 0)
		return -EINVAL;
	if (ret < 0)
		return vdisk_errorf(err, err_size, ret, "out of memory while checking the BAT");
	return 0;
}

/* ---- loading: parent locators ---- */

static int decode_utf16_path(const uint8_t *data, size_t len, char **out)
{
	len &= ~(size_t)1;
	size_t size = len / 2 * 3 + 1;
	char *s = malloc(size);
	if (!s)
		return -ENOMEM;
	if (utf16le_to_utf8(data, len, s, size) <= 0) {
		free(s); /* undecodable or empty: no path */
		return 0;
	}
	*out = s;
	return 0;
}

/* Deprecated Wi2r/Wi2k locators hold an ANSI path: taken as Latin-1. */
static int decode_ansi_path(const uint8_t *data, size_t len, char **out)
{
	char *s = malloc(len * 2 + 1);
	size_t n = 0;
	if (!s)
		return -ENOMEM;
	for (size_t i = 0; i < len && data[i]; i++) {
		if (data[i] < 0x80) {
			s[n++] = (char)data[i];
		} else {
			s[n++] = (char)(0xc0 | data[i] >> 6);
			s[n++] = (char)(0x80 | (data[i] & 0x3f));
		}
	}
	s[n] = 0;
	if (n)
		*out = s;
	else
		free(s);
	return 0;
}

static int hex_digit(char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	c = (char)tolower((unsigned char)c);
	return c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
}

/* MacX: a UTF-8 file URL ("file://localhost/path" or "file:///path", %-escapes). */
static int decode_file_url(const uint8_t *data, size_t len, char **out)
{
	const char *s = (const char *)data;
	size_t n = strnlen(s, len), k = 0;

	if (n >= 7 && !strncmp(s, "file://", 7)) {
		s += 7;
		n -= 7;
		if (n >= 9 && !strncmp(s, "localhost", 9)) {
			s += 9;
			n -= 9;
		}
	}
	char *p = malloc(n + 1);
	if (!p)
		return -ENOMEM;
	for (size_t i = 0; i < n; i++) {
		int hi = s[i] == '%' && i + 2 < n ? hex_digit(s[i + 1]) : -1;
		int lo = hi >= 0 ? hex_digit(s[i + 2]) : -1;
		if (lo >= 0 && (hi | lo)) {
			p[k++] = (char)(hi << 4 | lo);
			i += 2;
		} else {
			p[k++] = s[i];
		}
	}
	p[k] = 0;
	if (k)
		*out = p;
	else
		free(p);
	return 0;
}

static int decode_locator(uint32_t code, const uint8_t *data, size_t len, char **out)
{
	*out = NULL;
	switch (code) {
	case VHD_PLATFORM_W2RU:
	case VHD_PLATFORM_W2KU:
		return decode_utf16_path(data, len, out);
	case VHD_PLATFORM_WI2R:
	case VHD_PLATFORM_WI2K:
		return decode_ansi_path(data, len, out);
	case VHD_PLATFORM_MACX:
		return decode_file_url(data, len, out);
	default:
		return 0; /* "Mac ": an alias record, listed but not resolved */
	}
}

static int load_locator(struct vdisk_file *file, struct vhd *vhd, int i, const struct layout *l,
			char *err, size_t err_size)
{
	struct vhd_locator *loc = &vhd->header.locators[i];
	uint64_t limit = data_limit(vhd, file->size);
	char name[5];

	code_text(loc->code, name);
	if (loc->data_length > LOCATOR_MAX_DATA)
		return vdisk_errorf(err, err_size, -EINVAL,
				    "parent locator %d (%s) claims %" PRIu32
				    " bytes of data; at most %u "
				    "are accepted",
				    i, name, loc->data_length, LOCATOR_MAX_DATA);
	if (loc->data_offset > limit || limit - loc->data_offset < loc->data_length)
		return vdisk_errorf(
			err, err_size, -EINVAL,
			"parent locator %d (%s) points past the end of the file (%" PRIu32
			" bytes at byte %llu)",
			i, name, loc->data_length, ull(loc->data_offset));
	const struct region *r = layout_overlap(l, 3, loc->data_offset, loc->data_length);
	if (r)
		return vdisk_errorf(err, err_size, -EINVAL,
				    "parent locator %d (%s) overlaps the %s", i, name, r->what);
	uint8_t *data = malloc(loc->data_length);
	if (!data)
		return vdisk_errorf(err, err_size, -ENOMEM, "out of memory");
	int ret = vdisk_file_pread(file, data, loc->data_length, loc->data_offset);
	if (ret == 0)
		ret = decode_locator(loc->code, data, loc->data_length, &loc->path);
	free(data);
	if (ret)
		return vdisk_errorf(err, err_size, ret, "cannot read parent locator %d (%s): %s", i,
				    name, strerror(-ret));
	return 0;
}

static int load_locators(struct vdisk_file *file, struct vhd *vhd, char *err, size_t err_size)
{
	struct layout l;
	layout_base(vhd, &l);
	for (int i = 0; i < VHD_LOCATORS; i++) {
		if (!locator_used(vhd, &vhd->header.locators[i]))
			continue;
		int ret = load_locator(file, vhd, i, &l, err, err_size);
		if (ret)
			return ret;
	}
	return 0;
}

/* ---- loading: finding the parent ---- */

/* "C:/x/y.vhd", "//server/share/y.vhd", "//?/C:/y.vhd": nothing to look up on this host. */
static bool is_windows_absolute(const char *p)
{
	return (isalpha((unsigned char)p[0]) && p[1] == ':') || (p[0] == '/' && p[1] == '/');
}

enum search_pass {
	PASS_RELATIVE, /* W2ru, Wi2r: next to the child */
	PASS_ABSOLUTE, /* W2ku, Wi2k: as written, when a host path */
	PASS_URL,      /* MacX */
	PASS_NAME,     /* last resort: each locator's file name next to the child */
};

static bool locator_in_pass(uint32_t code, enum search_pass pass)
{
	switch (pass) {
	case PASS_RELATIVE:
		return code == VHD_PLATFORM_W2RU || code == VHD_PLATFORM_WI2R;
	case PASS_ABSOLUTE:
		return code == VHD_PLATFORM_W2KU || code == VHD_PLATFORM_WI2K;
	case PASS_URL:
		return code == VHD_PLATFORM_MACX;
	case PASS_NAME:
		break;
	}
	return true;
}

static int try_locator(struct vdisk_parent_search *s, const struct vhd_locator *loc,
		       enum search_pass pass)
{
	if (pass == PASS_NAME)
		return vdisk_parent_try_name(s, loc->path);
	if (pass == PASS_URL)
		return vdisk_parent_try_relative(s, loc->path);
	char *p = vdisk_path_with_slashes(loc->path);
	if (!p)
		return -ENOMEM;
	int ret = is_windows_absolute(p) ? 0 : vdisk_parent_try_relative(s, p);
	free(p);
	return ret;
}

static int search_parent(struct vdisk_parent_search *s, struct vhd *vhd)
{
	struct vhd_header *h = &vhd->header;
	int ret = 0;

	for (int pass = PASS_RELATIVE; pass <= PASS_NAME && ret == 0; pass++)
		for (int i = 0; i < VHD_LOCATORS && ret == 0; i++)
			if (h->locators[i].path && locator_in_pass(h->locators[i].code, pass))
				ret = try_locator(s, &h->locators[i], pass);
	if (ret == 0 && h->parent_name[0])
		ret = vdisk_parent_try_name(s, h->parent_name);
	return ret;
}

static int resolve_parent(struct vdisk_file *file, struct vhd *vhd, char *err, size_t err_size)
{
	struct vdisk_parent_search s;
	const char *name = vhd->header.parent_name[0] ? vhd->header.parent_name : "(unnamed)";
	char tried[768];
	int ret = vdisk_parent_search_init(&s, file->path);
	if (ret == 0)
		ret = search_parent(&s, vhd);
	if (ret == 0 && !s.ntried) {
		ret = vdisk_errorf(
			err, err_size, -ENOENT,
			"parent image \"%s\" not found: the image has no usable parent locator",
			name);
	} else if (ret == 0) {
		vdisk_parent_search_tried(&s, tried, sizeof(tried));
		ret = vdisk_errorf(err, err_size, -ENOENT,
				   "parent image \"%s\" not found (tried %s)", name, tried);
	} else if (ret == 1) {
		vhd->parent_path = s.found;
		s.found = NULL;
		ret = 0;
	}
	if (ret == -ENOMEM)
		vdisk_errorf(err, err_size, ret, "out of memory while looking for the parent");
	vdisk_parent_search_fini(&s);
	return ret;
}

/* ---- load, unload ---- */

static int load_sparse(struct vdisk_file *file, struct vhd *vhd, char *err, size_t err_size)
{
	bool diff = vhd->footer.disk_type == VHD_TYPE_DIFFERENCING;
	int ret = load_header(file, vhd, err, err_size);
	if (ret == 0)
		ret = load_bat(file, vhd, err, err_size);
	if (ret == 0 && diff)
		ret = load_locators(file, vhd, err, err_size);
	if (ret == 0)
		ret = load_blocks(file, vhd, err, err_size);
	if (ret == 0 && diff) {
		ret = resolve_parent(file, vhd, err, err_size);
		if (ret == -ENOENT && vhd->parent_optional) {
			err[0] = 0;
			ret = 0;
		}
	}
	return ret;
}

int vhd_load(struct vdisk *disk, struct vhd *vhd, char *err, size_t err_size)
{
	struct vdisk_file *file = disk->file;
	int ret = load_footer(file, vhd, err, err_size);
	if (ret)
		goto fail;
	vhd->virtual_size = vhd_virtual_size(&vhd->footer);
	if (vhd->footer.disk_type == VHD_TYPE_FIXED)
		ret = load_fixed(vhd, err, err_size);
	else
		ret = load_sparse(file, vhd, err, err_size);
	if (ret)
		goto fail;
	return 0;
fail:
	vhd_unload(vhd);
	return ret;
}

void vhd_unload(struct vhd *vhd)
{
	free(vhd->bat);
	vhd->bat = NULL;
	for (int i = 0; i < VHD_LOCATORS; i++) {
		free(vhd->header.locators[i].path);
		vhd->header.locators[i].path = NULL;
	}
	free(vhd->parent_path);
	vhd->parent_path = NULL;
}

/* ---- creation ---- */

struct create_plan {
	uint32_t type;
	uint64_t size;
	uint32_t block_size;
	bool have_geometry; /* differencing: the parent's */
	uint16_t cylinders;
	uint8_t heads, sectors;
	uint8_t parent_id[16];
	uint32_t parent_timestamp;
	char parent_name[VHD_PARENT_NAME_BYTES * 2];
	char *absolute; /* W2ku: the parent's absolute host path */
	char *relative; /* W2ru: from the child's directory, Windows style */
};

static int plan_type(const struct vdisk_create_options *o, struct create_plan *p, char *err,
		     size_t err_size)
{
	static const uint32_t codes[] = { [VDISK_TYPE_FIXED] = VHD_TYPE_FIXED,
					  [VDISK_TYPE_DYNAMIC] = VHD_TYPE_DYNAMIC,
					  [VDISK_TYPE_DIFFERENCING] = VHD_TYPE_DIFFERENCING };
	enum vdisk_image_type t;
	int ret = vdisk_create_type(o, "VHD", &t, err, err_size);
	if (ret)
		return ret;
	p->type = codes[t];
	return 0;
}

static int plan_block_size(const struct vdisk_create_options *o, struct create_plan *p, char *err,
			   size_t err_size)
{
	if (p->type == VHD_TYPE_FIXED) {
		if (o->block_size)
			return vdisk_errorf(err, err_size, -EINVAL,
					    "fixed VHD images have no block size");
		return 0;
	}
	uint32_t bs = o->block_size ? o->block_size : VHD_DEFAULT_BLOCK_SIZE;
	if (!is_power_of_two(bs) || bs < CREATE_MIN_BLOCK || bs > CREATE_MAX_BLOCK)
		return vdisk_errorf(err, err_size, -EINVAL,
				    "VHD block size %" PRIu32
				    " is not a power of two from 512 KiB to "
				    "256 MiB (Hyper-V takes 512 KiB and 2 MiB, the default)",
				    bs);
	p->block_size = bs;
	return 0;
}

static int plan_size(const struct vdisk_create_options *o, struct create_plan *p, char *err,
		     size_t err_size)
{
	if (o->size == 0 || o->size % VHD_SECTOR)
		return vdisk_errorf(err, err_size, -EINVAL,
				    "size must be a positive multiple of 512 bytes");
	if (o->size > VHD_MAX_SIZE)
		return vdisk_errorf(
			err, err_size, -EFBIG,
			"size %llu bytes is beyond the VHD maximum of 2040 GiB (use VHDX for "
			"larger disks)",
			ull(o->size));
	p->size = o->size;
	return 0;
}

int vhd_parent_paths(const char *child, const char *parent, char *name, char **absolute,
		     char **relative, char *err, size_t err_size)
{
	int ret = vdisk_parent_paths(child, parent, absolute, relative, err, err_size);
	if (ret < 0)
		return ret;
	const char *base = strrchr(*absolute, '/') + 1;
	uint8_t encoded[VHD_PARENT_NAME_BYTES];
	if (strlen(base) >= VHD_PARENT_NAME_BYTES * 2 || parent_name_encode(base, encoded) < 0)
		return vdisk_errorf(
			err, err_size, -ENAMETOOLONG,
			"the parent's file name is too long for a VHD header (at most 256 "
			"UTF-16 characters)");
	strcpy(name, base);
	return 0;
}

static int plan_parent_paths(const char *child, const char *parent, struct create_plan *p,
			     char *err, size_t err_size)
{
	return vhd_parent_paths(child, parent, p->parent_name, &p->absolute, &p->relative, err,
				err_size);
}

static int parent_facts(struct vdisk *pdisk, const char *parent, struct create_plan *p, char *err,
			size_t err_size)
{
	struct stat st;

	if (strcmp(vdisk_format_name(pdisk), "vhd"))
		return vdisk_errorf(
			err, err_size, -EINVAL,
			"the parent %s is a %s image; a VHD differencing image needs a VHD "
			"parent",
			parent, vdisk_format_name(pdisk));
	const struct vhd *pv = pdisk->priv;
	p->size = vdisk_size(pdisk);
	p->have_geometry = true;
	p->cylinders = pv->footer.cylinders;
	p->heads = pv->footer.heads;
	p->sectors = pv->footer.sectors;
	memcpy(p->parent_id, pv->footer.unique_id, 16);
	if (stat(parent, &st) != 0)
		return vdisk_errorf(err, err_size, -errno, "cannot stat the parent %s: %s", parent,
				    strerror(errno));
	p->parent_timestamp = vhd_time(st.st_mtime);
	return 0;
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
	if (o->size && o->size != p->size)
		return vdisk_errorf(
			err, err_size, -EINVAL,
			"a differencing image has its parent's size (%llu bytes): leave the "
			"size out or give exactly that",
			ull(p->size));
	if (p->size > VHD_MAX_SIZE)
		return vdisk_errorf(err, err_size, -EFBIG, "the parent is larger than 2040 GiB");
	return plan_parent_paths(child, o->parent, p, err, err_size);
}

static int plan_image(const char *path, const struct vdisk_create_options *o, struct create_plan *p,
		      char *err, size_t err_size)
{
	int ret = plan_type(o, p, err, err_size);
	if (ret == 0)
		ret = plan_block_size(o, p, err, err_size);
	if (ret == 0 && p->type == VHD_TYPE_DIFFERENCING)
		ret = plan_parent(path, o, p, err, err_size);
	else if (ret == 0)
		ret = plan_size(o, p, err, err_size);
	return ret;
}

static int plan_footer(const struct create_plan *p, struct vhd_footer *f)
{
	*f = (struct vhd_footer){
		.features = VHD_FEATURES_RESERVED,
		.version = VHD_VERSION,
		.data_offset = p->type == VHD_TYPE_FIXED ? VHD_NO_OFFSET : VHD_FOOTER_SIZE,
		.timestamp = vhd_time(time(NULL)),
		.creator_version = CREATOR_VERSION,
		.creator_host_os = VHD_HOST_OS_WINDOWS,
		.original_size = p->size,
		.current_size = p->size, /* exact: the virtual size is never rounded to CHS */
		.disk_type = p->type,
	};
	memcpy(f->creator_app, CREATOR_APP, sizeof(f->creator_app));
	if (p->have_geometry) {
		f->cylinders = p->cylinders;
		f->heads = p->heads;
		f->sectors = p->sectors;
	} else {
		vhd_geometry(p->size, &f->cylinders, &f->heads, &f->sectors);
	}
	return uuid_generate(f->unique_id);
}

static int write_fixed(int fd, const struct vhd_footer *f, uint64_t size, bool sparse)
{
	uint8_t raw[VHD_FOOTER_SIZE];
	vhd_footer_build(f, raw);
	if (ftruncate(fd, (off_t)(size + VHD_FOOTER_SIZE)) != 0)
		return -errno;
	if (!sparse && fallocate(fd, 0, 0, (off_t)(size + VHD_FOOTER_SIZE)) != 0 &&
	    errno != EOPNOTSUPP)
		return -errno;
	return vdisk_fd_pwrite_all(fd, raw, sizeof(raw), size);
}

int vhd_locators_encode(const char *absolute, const char *relative, struct vhd_locator_data loc[2])
{
	/* in the order Hyper-V writes them */
	const char *paths[2] = { absolute, relative };
	const uint32_t codes[2] = { VHD_PLATFORM_W2KU, VHD_PLATFORM_W2RU };
	for (int i = 0; i < 2; i++) {
		ssize_t n = utf8_to_utf16le(paths[i], loc[i].data, sizeof(loc[i].data));
		if (n <= 0)
			return n < 0 ? (int)n : -EINVAL;
		loc[i].code = codes[i];
		loc[i].len = (size_t)n;
	}
	return 0;
}

static int encode_locators(const struct create_plan *p, struct vhd_locator_data *loc, int *count)
{
	*count = 0;
	if (p->type != VHD_TYPE_DIFFERENCING)
		return 0;
	int ret = vhd_locators_encode(p->absolute, p->relative, loc);
	if (ret == 0)
		*count = 2;
	return ret;
}

static void plan_header(const struct create_plan *p, uint32_t entries, struct vhd_header *h)
{
	memset(h, 0, sizeof(*h));
	h->data_offset = VHD_NO_OFFSET; /* all 64 bits: Microsoft's tools insist */
	h->table_offset = CREATE_BAT_OFFSET;
	h->version = VHD_HEADER_VERSION;
	h->max_table_entries = entries;
	h->block_size = p->block_size;
	memcpy(h->parent_id, p->parent_id, 16);
	h->parent_timestamp = p->parent_timestamp;
	strcpy(h->parent_name, p->parent_name);
}

/* Footer copy, header, BAT (all unused, padded to a sector), locators (each padded to
 * whole sectors, data space in bytes as Windows writes it), footer. */
static int build_sparse(const struct create_plan *p, const struct vhd_footer *f, uint8_t **out,
			size_t *out_len)
{
	uint32_t entries = (uint32_t)((p->size + p->block_size - 1) / p->block_size);
	uint64_t bat_bytes = round_up((uint64_t)entries * 4, VHD_SECTOR);
	struct vhd_locator_data *loc = malloc(2 * sizeof(*loc));
	struct vhd_header h;
	int nloc = 0;

	if (!loc)
		return -ENOMEM;
	int ret = encode_locators(p, loc, &nloc);
	if (ret) {
		free(loc);
		return ret == -ENOSPC ? -ENAMETOOLONG : ret;
	}
	plan_header(p, entries, &h);
	uint64_t end = CREATE_BAT_OFFSET + bat_bytes;
	for (int i = 0; i < nloc; i++) {
		uint32_t space = (uint32_t)round_up(loc[i].len, VHD_SECTOR);
		h.locators[i] = (struct vhd_locator){ .code = loc[i].code,
						      .data_space = space,
						      .data_length = (uint32_t)loc[i].len,
						      .data_offset = end };
		end += space;
	}
	uint8_t *buf = calloc(1, end + VHD_FOOTER_SIZE);
	if (!buf) {
		free(loc);
		return -ENOMEM;
	}
	vhd_footer_build(f, buf);
	vhd_header_build(&h, buf + VHD_FOOTER_SIZE);
	memset(buf + CREATE_BAT_OFFSET, 0xff, bat_bytes);
	for (int i = 0; i < nloc; i++)
		memcpy(buf + h.locators[i].data_offset, loc[i].data, loc[i].len);
	memcpy(buf + end, buf, VHD_FOOTER_SIZE);
	free(loc);
	*out = buf;
	*out_len = end + VHD_FOOTER_SIZE;
	return 0;
}

static int write_image(int fd, const struct create_plan *p, bool sparse)
{
	struct vhd_footer f;
	int ret = plan_footer(p, &f);
	if (ret)
		return ret;
	if (p->type == VHD_TYPE_FIXED)
		return write_fixed(fd, &f, p->size, sparse);
	uint8_t *buf;
	size_t len;
	ret = build_sparse(p, &f, &buf, &len);
	if (ret)
		return ret;
	ret = vdisk_fd_pwrite_all(fd, buf, len, 0);
	free(buf);
	return ret;
}

int vhd_create(const char *path, const struct vdisk_create_options *opts, char *err,
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
	ret = write_image(fd, &p, opts->sparse);
	ret = vdisk_create_end(path, fd, created, ret);
	if (ret) {
		if (ret == -ENAMETOOLONG)
			vdisk_errorf(err, err_size, ret,
				     "the parent's path is too long for a parent locator");
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

static const char *type_name(uint32_t type)
{
	switch (type) {
	case VHD_TYPE_FIXED:
		return "fixed";
	case VHD_TYPE_DYNAMIC:
		return "dynamic";
	default:
		return "differencing";
	}
}

static void iso_time(uint32_t vhd_seconds, char *out, size_t size)
{
	time_t t = (time_t)VHD_EPOCH + (time_t)vhd_seconds;
	struct tm tm;
	if (!gmtime_r(&t, &tm) || !strftime(out, size, "%Y-%m-%dT%H:%M:%SZ", &tm))
		snprintf(out, size, "?");
}

static int info_footer(const struct vhd *vhd, json_t *d)
{
	const struct vhd_footer *f = &vhd->footer;
	char app[5], os[5], version[24], created[32], uid[GUID_STR_LEN + 1];
	int ret = 0;

	fourcc_text((const uint8_t *)f->creator_app, app);
	code_text(f->creator_host_os, os);
	snprintf(version, sizeof(version), "%u.%u", (unsigned)(f->creator_version >> 16),
		 (unsigned)(f->creator_version & 0xffff));
	iso_time(f->timestamp, created, sizeof(created));
	vhd_uuid_format(f->unique_id, uid);
	vdisk_json_set(d, "type", json_string(type_name(f->disk_type)), &ret);
	vdisk_json_set(d, "creator_app", json_string(app), &ret);
	vdisk_json_set(d, "creator_version", json_string(version), &ret);
	vdisk_json_set(d, "creator_host_os", json_string(os), &ret);
	vdisk_json_set(d, "created", json_string(created), &ret);
	vdisk_json_set(d, "unique_id", json_string(uid), &ret);
	vdisk_json_set(d, "current_size", vdisk_json_u64(f->current_size), &ret);
	vdisk_json_set(d, "original_size", vdisk_json_u64(f->original_size), &ret);
	vdisk_json_set(d, "geometry",
		       json_pack("{s:i, s:i, s:i}", "cylinders", (int)f->cylinders, "heads",
				 (int)f->heads, "sectors_per_track", (int)f->sectors),
		       &ret);
	vdisk_json_set(d, "saved_state", json_boolean(f->saved_state), &ret);
	if (vhd->footer_from_copy)
		vdisk_json_set(d, "end_footer_damaged", json_true(), &ret);
	return ret;
}

static int info_sparse(const struct vhd *vhd, json_t *d)
{
	uint32_t allocated = 0;
	int ret = 0;

	/* the I/O path may be allocating meanwhile: it stores entries atomically */
	for (uint32_t i = 0; i < vhd->bat_entries; i++)
		allocated += __atomic_load_n(&vhd->bat[i], __ATOMIC_RELAXED) != VHD_BAT_UNUSED;
	vdisk_json_set(d, "block_size", json_integer(vhd->block_size), &ret);
	vdisk_json_set(d, "bat_entries", json_integer(vhd->bat_entries), &ret);
	vdisk_json_set(d, "allocated_blocks", json_integer(allocated), &ret);
	return ret;
}

static json_t *info_locators(const struct vhd *vhd)
{
	json_t *a = json_array();
	for (int i = 0; a && i < VHD_LOCATORS; i++) {
		const struct vhd_locator *loc = &vhd->header.locators[i];
		char name[5];
		if (loc->code == VHD_PLATFORM_NONE)
			continue;
		code_text(loc->code, name);
		json_t *o = json_pack("{s:s, s:o}", "platform", name, "path",
				      loc->path ? json_string(loc->path) : json_null());
		if (!o || json_array_append_new(a, o)) {
			json_decref(a);
			return NULL;
		}
	}
	return a;
}

/* The parent chain: the parent's own details (its "parent" in turn) under "details". */
static int info_parent_image(const struct vhd *vhd, json_t *p)
{
	struct vdisk_info pi;
	int ret = vdisk_get_info(vhd->parent, &pi);
	if (ret)
		return ret;
	vdisk_json_set(p, "format", json_string(pi.format), &ret);
	vdisk_json_set(p, "virtual_size", vdisk_json_u64(pi.virtual_size), &ret);
	vdisk_json_set(p, "file_size", vdisk_json_u64(pi.file_size), &ret);
	if (pi.details)
		vdisk_json_set(p, "details", pi.details, &ret);
	return ret;
}

static int info_parent(const struct vhd *vhd, json_t *d)
{
	const struct vhd_header *h = &vhd->header;
	char uid[GUID_STR_LEN + 1], when[32];
	json_t *p = json_object();
	int ret = 0;

	if (!p)
		return -ENOMEM;
	vhd_uuid_format(h->parent_id, uid);
	iso_time(h->parent_timestamp, when, sizeof(when));
	vdisk_json_set(p, "name", json_string(h->parent_name), &ret);
	vdisk_json_set(p, "unique_id", json_string(uid), &ret);
	vdisk_json_set(p, "timestamp", json_string(when), &ret);
	vdisk_json_set(p, "path", vhd->parent_path ? json_string(vhd->parent_path) : json_null(),
		       &ret);
	vdisk_json_set(p, "locators", info_locators(vhd), &ret);
	if (ret == 0 && vhd->parent)
		ret = info_parent_image(vhd, p);
	vdisk_json_set(d, "parent", p, &ret);
	return ret;
}

int vhd_get_info(struct vdisk *disk, struct vdisk_info *info)
{
	const struct vhd *vhd = disk->priv;
	json_t *d = json_object();
	if (!d)
		return -ENOMEM;
	int ret = info_footer(vhd, d);
	if (ret == 0 && is_sparse(vhd->footer.disk_type)) {
		info->cluster_size = vhd->block_size;
		ret = info_sparse(vhd, d);
	}
	if (ret == 0 && vhd->footer.disk_type == VHD_TYPE_DIFFERENCING)
		ret = info_parent(vhd, d);
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
	struct vhd *vhd;
	struct vdisk_file *file;
	uint64_t file_size; /* see check_file_size() */
	bool repair;
	struct vdisk_check_result *res;
	uint32_t *bat; /* the BAT as on disk, host-endian */
	int error;     /* out of memory: the check could not finish */
};

static void finding(struct check *c, enum severity sev, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

static void finding(struct check *c, enum severity sev, const char *fmt, ...)
{
	static const char *const names[] = { "error", "leak", "fixed" };
	char msg[600];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	json_t *o = json_pack("{s:s, s:s}", "severity", names[sev], "message", msg);
	if (!o || json_array_append_new(c->res->findings, o)) {
		c->error = -ENOMEM;
		return;
	}
	if (sev == SEV_ERROR)
		c->res->errors++;
	else if (sev == SEV_LEAK)
		c->res->leaks++;
	else
		c->res->fixed++;
}

static int write_synced(struct check *c, const void *buf, size_t len, uint64_t off)
{
	int ret = vdisk_file_pwrite_sync(c->file, buf, len, off);
	if (ret == 0 && off + len > c->file_size)
		c->file_size = off + len;
	return ret;
}

static void check_fixed(struct check *c)
{
	struct vhd *vhd = c->vhd;
	uint8_t raw[VHD_FOOTER_SIZE];
	struct vhd_footer f;
	char why[200];
	size_t len = (size_t)min_u64(VHD_FOOTER_SIZE, c->file_size - vhd->footer_offset);

	int ret = read_footer(c->file, vhd->footer_offset, len, raw);
	if (ret)
		finding(c, SEV_ERROR, "cannot read the footer: %s", strerror(-ret));
	else if (vhd_footer_parse(raw, &f, why, sizeof(why)))
		finding(c, SEV_ERROR, "the footer is damaged: %s", why);
	if (vhd->virtual_size > vhd->footer_offset)
		finding(c, SEV_ERROR, "the fixed VHD is truncated: %llu bytes of data, %llu needed",
			ull(vhd->footer_offset), ull(vhd->virtual_size));
}

static void fix_end_footer(struct check *c, const uint8_t *copy, const char *why)
{
	struct vhd *vhd = c->vhd;
	if (!c->repair) {
		finding(c, SEV_ERROR,
			"the footer at the end of the file is damaged (%s); the copy at offset 0 "
			"is intact",
			why);
		return;
	}
	int ret = write_synced(c, copy, VHD_FOOTER_SIZE, vhd->footer_offset);
	if (ret) {
		finding(c, SEV_ERROR,
			"the footer at the end of the file is damaged (%s) and "
			"could not be rewritten: %s",
			why, strerror(-ret));
		return;
	}
	memcpy(vhd->footer_raw, copy, VHD_FOOTER_SIZE);
	vhd->footer_from_copy = false;
	finding(c, SEV_FIXED,
		"the footer at the end of the file was damaged (%s); rewrote it from the copy at "
		"offset 0",
		why);
}

static void fix_footer_copy(struct check *c, const uint8_t *end, const char *problem)
{
	if (!c->repair) {
		finding(c, SEV_ERROR, "the footer copy at offset 0 %s", problem);
		return;
	}
	int ret = write_synced(c, end, VHD_FOOTER_SIZE, 0);
	if (ret)
		finding(c, SEV_ERROR,
			"the footer copy at offset 0 %s, and could not be rewritten: %s", problem,
			strerror(-ret));
	else
		finding(c, SEV_FIXED,
			"the footer copy at offset 0 %s; rewrote it from the footer at the end",
			problem);
}

static void check_footers(struct check *c)
{
	uint8_t end[VHD_FOOTER_SIZE], copy[VHD_FOOTER_SIZE];
	char why_end[200], why_copy[200], problem[240];
	struct vhd_footer f;

	int ret = read_footer(c->file, c->vhd->footer_offset, VHD_FOOTER_SIZE, end);
	if (ret == 0)
		ret = read_footer(c->file, 0, VHD_FOOTER_SIZE, copy);
	if (ret) {
		finding(c, SEV_ERROR, "cannot read the footers: %s", strerror(-ret));
		return;
	}
	bool end_ok = vhd_footer_parse(end, &f, why_end, sizeof(why_end)) == 0;
	bool copy_ok = vhd_footer_parse(copy, &f, why_copy, sizeof(why_copy)) == 0;
	if (!end_ok && !copy_ok) {
		finding(c, SEV_ERROR,
			"neither the footer at the end of the file (%s) nor its copy at offset 0 "
			"(%s) is valid",
			why_end, why_copy);
	} else if (!end_ok) {
		fix_end_footer(c, copy, why_end);
	} else if (!copy_ok) {
		snprintf(problem, sizeof(problem), "is damaged (%s)", why_copy);
		fix_footer_copy(c, end, problem);
	} else if (memcmp(end, copy, VHD_FOOTER_SIZE)) {
		fix_footer_copy(c, end, "differs from the footer at the end of the file");
	}
}

static void check_header(struct check *c)
{
	uint8_t raw[VHD_HEADER_SIZE];
	struct vhd_header h;
	char why[200];

	int ret = vdisk_file_pread(c->file, raw, sizeof(raw), c->vhd->footer.data_offset);
	if (ret)
		finding(c, SEV_ERROR, "cannot read the dynamic header: %s", strerror(-ret));
	else if (vhd_header_parse(raw, &h, why, sizeof(why)))
		finding(c, SEV_ERROR, "the dynamic header is damaged: %s", why);
}

static int set_entry(struct check *c, uint32_t index, uint32_t value)
{
	uint8_t be[4];
	store_be32(be, value);
	int ret = write_synced(c, be, sizeof(be), c->vhd->header.table_offset + 4ull * index);
	if (ret == 0)
		c->bat[index] = c->vhd->bat[index] = value;
	return ret;
}

static void drop_entry(struct check *c, uint32_t index, const char *what)
{
	int ret = set_entry(c, index, VHD_BAT_UNUSED);
	if (ret) {
		finding(c, SEV_ERROR, "%s; could not drop the entry: %s", what, strerror(-ret));
		return;
	}
	finding(c, SEV_FIXED, "%s; dropped the entry (that part of the disk now reads %s)", what,
		c->vhd->footer.disk_type == VHD_TYPE_DIFFERENCING ? "from the parent" : "as zeros");
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
		if (ret == 0 && to + done > c->file_size)
			c->file_size = to + done;
	}
	free(buf);
	return ret;
}

/* Gives a block that overlaps another its own copy at the end of the file, so both entries
 * keep reading what they read now: nothing is lost, whichever of them held the real data.
 * The block goes where vhd.c would allocate it (data on a 4 KiB boundary), then the footer
 * after it, then the BAT entry. */
static int relocate_block(struct check *c, uint32_t index, const char *what)
{
	struct vhd *vhd = c->vhd;
	uint64_t span = vhd_block_span(vhd), from = block_offset(c->bat[index]);
	uint64_t to =
		round_up(vhd->footer_offset + vhd->bitmap_size, DATA_ALIGN) - vhd->bitmap_size;

	if (to / VHD_SECTOR >= VHD_BAT_UNUSED) {
		finding(c, SEV_ERROR, "%s; no room to give entry %" PRIu32 " its own copy", what,
			index);
		return 0;
	}
	int ret = copy_range(c, from, to, span);
	if (ret == 0)
		ret = write_synced(c, vhd->footer_raw, VHD_FOOTER_SIZE, to + span);
	if (ret == 0) {
		vhd->footer_offset = to + span;
		ret = set_entry(c, index, (uint32_t)(to / VHD_SECTOR));
	}
	if (ret == -ENOMEM)
		return ret;
	if (ret)
		finding(c, SEV_ERROR, "%s; could not copy the block of entry %" PRIu32 ": %s", what,
			index, strerror(-ret));
	else
		finding(c, SEV_FIXED, "%s; gave entry %" PRIu32 " its own copy at byte %llu", what,
			index, ull(to));
	return 0;
}

static int check_issue(void *ctx, const struct bat_issue *issue)
{
	struct check *c = ctx;
	char what[300];

	describe_issue(c->vhd, c->bat, issue, what, sizeof(what));
	if (!c->repair) {
		finding(c, SEV_ERROR, "%s", what);
		return 0;
	}
	if (issue->kind == BAT_OVERLAP)
		return relocate_block(c, issue->index, what);
	drop_entry(c, issue->index, what);
	return 0;
}

static int check_bat(struct check *c)
{
	struct vhd *vhd = c->vhd;
	size_t bytes = (size_t)vhd->bat_entries * 4;
	struct layout l;

	c->bat = malloc(bytes ? bytes : 1);
	if (!c->bat)
		return c->error = -ENOMEM;
	int ret = vdisk_file_pread(c->file, c->bat, bytes, vhd->header.table_offset);
	if (ret) {
		finding(c, SEV_ERROR, "cannot read the BAT: %s", strerror(-ret));
		return ret;
	}
	for (uint32_t i = 0; i < vhd->bat_entries; i++)
		c->bat[i] = load_be32(&c->bat[i]);
	layout_build(vhd, &l, false);
	ret = bat_scan(vhd, c->bat, data_limit(vhd, c->file_size), &l, check_issue, c);
	if (ret < 0)
		c->error = ret;
	return ret;
}

static void check_bitmaps(struct check *c)
{
	struct vhd *vhd = c->vhd;
	uint8_t *buf = malloc(vhd->bitmap_size);
	uint32_t bad = 0;

	if (!buf) {
		c->error = -ENOMEM;
		return;
	}
	for (uint32_t i = 0; i < vhd->bat_entries; i++) {
		if (c->bat[i] == VHD_BAT_UNUSED)
			continue;
		int ret = vdisk_file_pread(c->file, buf, vhd->bitmap_size, block_offset(c->bat[i]));
		if (ret && bad++ < MAX_REPEATED_FINDINGS)
			finding(c, SEV_ERROR, "cannot read the bitmap of block %" PRIu32 ": %s", i,
				strerror(-ret));
	}
	if (bad > MAX_REPEATED_FINDINGS)
		finding(c, SEV_ERROR, "%" PRIu32 " more bitmaps cannot be read",
			bad - MAX_REPEATED_FINDINGS);
	free(buf);
}

/* Space in use, sorted: metadata (VDISK_SPAN_FIXED) and blocks (their BAT index). */
static struct vdisk_span *used_extents(struct check *c, size_t *count)
{
	struct vhd *vhd = c->vhd;
	struct layout l;
	size_t n = 0, blocks = 0;

	layout_build(vhd, &l, true);
	for (uint32_t i = 0; i < vhd->bat_entries; i++)
		blocks += c->bat[i] != VHD_BAT_UNUSED;
	struct vdisk_span *e = malloc((l.n + blocks) * sizeof(*e));
	if (!e)
		return NULL;
	for (unsigned i = 0; i < l.n; i++)
		e[n++] = (struct vdisk_span){ l.r[i].start, l.r[i].end, VDISK_SPAN_FIXED };
	for (uint32_t i = 0; i < vhd->bat_entries; i++) {
		uint64_t start = block_offset(c->bat[i]);
		if (c->bat[i] != VHD_BAT_UNUSED &&
		    start + vhd_block_span(vhd) <= vhd->footer_offset)
			e[n++] = (struct vdisk_span){ start, start + vhd_block_span(vhd), i };
	}
	vdisk_spans_sort(e, n);
	*count = n;
	return e;
}

/* A gap before a block is alignment padding when it is shorter than the alignment of the
 * block's data: vhd.c aligns data to 4 KiB, other writers may align more. */
static bool is_padding(const struct vhd *vhd, uint64_t gap, uint64_t block)
{
	uint64_t data = block + vhd->bitmap_size;
	uint64_t align = data & (~data + 1);
	if (align > vhd->block_size)
		align = vhd->block_size;
	if (align < DATA_ALIGN)
		align = DATA_ALIGN;
	return gap < align;
}

/* Moves the footer down over leaked space at the end of the file and truncates it. The
 * new footer is written and synced before the file shrinks, so a crash leaves a valid one. */
static void reclaim_tail(struct check *c, uint64_t used_end)
{
	struct vhd *vhd = c->vhd;
	uint64_t to = round_up(used_end, VHD_SECTOR), leaked = vhd->footer_offset - used_end;

	if (!c->repair || c->file->is_block_device || to >= vhd->footer_offset) {
		finding(c, SEV_LEAK,
			"%llu bytes at the end of the file (bytes %llu to %llu) are "
			"not used by any block",
			ull(leaked), ull(used_end), ull(vhd->footer_offset));
		return;
	}
	int ret = write_synced(c, vhd->footer_raw, VHD_FOOTER_SIZE, to);
	if (ret == 0)
		ret = vdisk_file_set_size(c->file, to + VHD_FOOTER_SIZE);
	if (ret == 0)
		ret = vdisk_file_sync(c->file);
	if (ret) {
		finding(c, SEV_LEAK,
			"%llu bytes at the end of the file are not used by any block "
			"and could not be reclaimed: %s",
			ull(leaked), strerror(-ret));
		return;
	}
	vhd->footer_offset = to;
	c->file_size = to + VHD_FOOTER_SIZE;
	finding(c, SEV_FIXED, "reclaimed %llu leaked bytes at the end of the file", ull(leaked));
}

/* Leaks are gaps before blocks (beyond padding) and before the footer. Gaps between
 * metadata structures are the creator's layout, not leaks. */
static void check_leaks(struct check *c)
{
	struct vhd *vhd = c->vhd;
	uint64_t pos = 0, gaps = 0;
	size_t n;

	struct vdisk_span *e = used_extents(c, &n);
	if (!e) {
		c->error = -ENOMEM;
		return;
	}
	for (size_t i = 0; i < n; i++) {
		if (e[i].index != VDISK_SPAN_FIXED && e[i].start > pos &&
		    !is_padding(vhd, e[i].start - pos, e[i].start) &&
		    gaps++ < MAX_REPEATED_FINDINGS)
			finding(c, SEV_LEAK,
				"%llu bytes before the block at byte %llu are not used",
				ull(e[i].start - pos), ull(e[i].start));
		if (e[i].end > pos)
			pos = e[i].end;
	}
	free(e);
	if (gaps > MAX_REPEATED_FINDINGS)
		finding(c, SEV_LEAK, "%llu more unused ranges between blocks",
			ull(gaps - MAX_REPEATED_FINDINGS));
	if (vhd->footer_offset > pos)
		reclaim_tail(c, pos);
}

/* disk->file->size is the size at open (and after vdisk_file_* writes); writes the I/O
 * path issued through the engine since may have grown the file, and the footer the I/O
 * path keeps at vhd->footer_offset is then the better witness. */
static uint64_t check_file_size(const struct vdisk *disk, const struct vhd *vhd)
{
	uint64_t size = disk->file->size;
	if (!vhd->footer_from_copy && vhd->footer_offset + VHD_FOOTER_SIZE > size)
		size = vhd->footer_offset + VHD_FOOTER_SIZE;
	return size;
}

int vhd_check(struct vdisk *disk, unsigned flags, struct vdisk_check_result *result)
{
	struct check c = { .vhd = disk->priv,
			   .file = disk->file,
			   .file_size = check_file_size(disk, disk->priv),
			   .repair = flags & VDISK_CHECK_REPAIR,
			   .res = result };

	if (c.repair && disk->read_only)
		return -EROFS;
	if (!result->findings && !(result->findings = json_array()))
		return -ENOMEM;
	if (c.vhd->footer.disk_type == VHD_TYPE_FIXED) {
		check_fixed(&c);
		return c.error;
	}
	check_footers(&c);
	check_header(&c);
	if (c.error == 0 && check_bat(&c) == 0) {
		check_bitmaps(&c);
		if (c.error == 0)
			check_leaks(&c);
	}
	free(c.bat);
	return c.error;
}
