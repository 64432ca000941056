/* State of an open VHDX and the functions shared between the metadata code (vhdx_meta.c:
 * parsing, validation, header updates, creation, info, check), the log (vhdx_log.c) and
 * the I/O path (vhdx.c). */
#ifndef HV_VHDX_INTERNAL_H
#define HV_VHDX_INTERNAL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "format.h"
#include "guid.h"
#include "vhdx_format.h"
#include "vhdx_log.h"

struct vhdx_header {
	uint32_t checksum;
	uint64_t sequence;
	struct guid file_write_guid;
	struct guid data_write_guid;
	struct guid log_guid;
	uint16_t log_version;
	uint16_t version;
	uint32_t log_length;
	uint64_t log_offset;
};

/* Parent locator (differencing images); strings are UTF-8, NULL when absent. */
struct vhdx_parent_locator {
	char *parent_linkage;
	char *parent_linkage2;
	char *relative_path;
	char *volume_path;
	char *absolute_win32_path;
};

/* A region table entry. */
struct vhdx_region {
	struct guid guid;
	uint64_t file_offset;
	uint32_t length;
	bool required;
};

struct vhdx {
	struct vhdx_header header; /* the current header */
	int current_header;	   /* 0 or 1: which copy (at 64 KiB or 128 KiB) */
	char creator[257];	   /* from the file identifier, UTF-8 */

	uint64_t bat_offset; /* BAT region */
	uint32_t bat_length;
	uint64_t metadata_offset; /* metadata region */
	uint32_t metadata_length;

	/* metadata items */
	uint32_t block_size;
	bool leave_blocks_allocated;
	bool has_parent;
	uint64_t virtual_size;
	uint32_t logical_sector_size;
	uint32_t physical_sector_size;
	struct guid page83;

	/* derived */
	uint64_t chunk_ratio;	/* payload blocks per sector bitmap block */
	uint64_t data_blocks;	/* payload blocks covering virtual_size */
	uint64_t bitmap_blocks; /* sector bitmap blocks */
	uint64_t bat_entries;	/* entries in the BAT (payload and bitmap) */
	uint64_t *bat;		/* host-endian entries */

	struct vhdx_parent_locator locator;
	char *parent_path; /* resolved parent (differencing) */
	struct vdisk *parent;

	bool replayed; /* open replayed a dirty log */
	struct vhdx_log_replay_result replay;

	void *io; /* owned by the I/O path (vhdx.c) */

	/* kept by vhdx_meta.c for info and check */
	struct vhdx_region *regions; /* the region table in use */
	unsigned nregions;
	int region_table;	  /* 0 or 1: which copy (at 192 KiB or 256 KiB) */
	bool log_dirty;		  /* loaded read-only for repair: the log was not replayed */
	uint64_t bad_bat_entries; /* loaded for repair: bad BAT entries masked in memory */
};

/* BAT entry states (enum vhdx_block_state, VHDX_BITMAP_PRESENT) and VHDX_BITMAP_BLOCK_SIZE
 * are on-disk layout: see vhdx_format.h. */

/* BAT entry fields */
static inline unsigned vhdx_bat_state(uint64_t entry)
{
	return (unsigned)(entry & 7);
}

static inline uint64_t vhdx_bat_offset(uint64_t entry)
{
	return (entry >> 20) << 20; /* FileOffsetMB, in bytes */
}

static inline uint64_t vhdx_bat_entry(unsigned state, uint64_t file_offset)
{
	return (file_offset & ~((UINT64_C(1) << 20) - 1)) | state;
}

static inline uint64_t vhdx_sectors_per_block(const struct vhdx *v)
{
	return v->block_size / v->logical_sector_size;
}

/* Whether BAT entry index is a sector bitmap entry (one after every chunk_ratio payload
 * entries). */
static inline bool vhdx_is_bitmap_index(const struct vhdx *v, uint64_t index)
{
	return index % (v->chunk_ratio + 1) == v->chunk_ratio;
}

/* A BAT entry that points at data in the file: a payload block fully or partially
 * present, or a present sector bitmap block. */
static inline bool vhdx_entry_present(const struct vhdx *v, uint64_t index)
{
	unsigned st = vhdx_bat_state(v->bat[index]);
	if (vhdx_is_bitmap_index(v, index))
		return st == VHDX_BITMAP_PRESENT;
	return st == VHDX_BLOCK_FULLY_PRESENT || st == VHDX_BLOCK_PARTIALLY_PRESENT;
}

/* Index in the BAT of payload block n, and of the sector bitmap block of chunk c. */
static inline uint64_t vhdx_payload_index(const struct vhdx *v, uint64_t n)
{
	return n + n / v->chunk_ratio;
}

static inline uint64_t vhdx_bitmap_index(const struct vhdx *v, uint64_t chunk)
{
	return chunk * (v->chunk_ratio + 1) + v->chunk_ratio;
}

/* ---- vhdx_meta.c ---- */

/* CRC-32C of buf with the 4-byte checksum field at checksum_offset taken as zero. */
uint32_t vhdx_checksum(const uint8_t *buf, size_t len, size_t checksum_offset);
/* Parses and validates a 4 KiB header: signature, checksum, version, log geometry
 * (offset and length multiples of 1 MiB, the log after the header section). Returns 0 or
 * -EINVAL with a reason in why. */
int vhdx_header_parse(const uint8_t *raw, struct vhdx_header *h, char *why, size_t why_size);
/* Serialises a header into 4 KiB (reserved bytes zero) with its checksum. */
void vhdx_header_build(const struct vhdx_header *h, uint8_t *raw);

/* Reads and validates everything on disk->file (file identifier, both headers, region
 * tables, metadata items, BAT, parent locator). A set log GUID means the log must be
 * replayed first: with disk->read_only and !disk->opts.for_repair that is refused with a
 * message naming `vdisk check --repair`; otherwise the log is replayed (vhdx_log_replay)
 * before the metadata is read (FileWriteGuid renewed before, LogGuid cleared after; a
 * read-only open for repair only looks at the log and sets log_dirty). For differencing
 * images, resolves vhdx->parent_path (relative_path first, then absolute_win32_path and
 * volume_path). BAT entries are validated (state, offset, inside the file, clear of the
 * header section, log, regions and each other); with disk->opts.for_repair bad entries
 * are masked in vhdx->bat and counted in bad_bat_entries instead of failing, for
 * vhdx_check to repair on disk. Returns 0 or -errno with a reason in err. */
int vhdx_load(struct vdisk *disk, struct vhdx *vhdx, char *err, size_t err_size);
/* Chunk ratio, block counts and BAT entries from block size, logical sector size, virtual
 * size and whether the image has a parent. */
void vhdx_derive_geometry(struct vhdx *v);
void vhdx_unload(struct vhdx *vhdx);

/* Writes a new header (sequence + 1) over the non-current copy, flushes, and does it
 * again so both copies are current; fields come from vhdx->header with the given GUIDs
 * (NULL keeps the current one). Synchronous. Sequence numbers about to wrap are first
 * renumbered (1 and 2, each step crash-safe). Returns 0, -EROFS for a read-only disk, or
 * -errno. */
int vhdx_header_update(struct vdisk *disk, struct vhdx *vhdx, const struct guid *file_write,
		       const struct guid *data_write, const struct guid *log_guid);

int vhdx_create(const char *path, const struct vdisk_create_options *opts, char *err,
		size_t err_size);
/* The parent locator item creation writes (parent_linkage, relative_path,
 * absolute_win32_path), malloc'd, for rebase too. Returns 0, -ENAMETOOLONG, -EILSEQ or
 * -ENOMEM. */
int vhdx_locator_build(const struct guid *parent_linkage, const char *relative,
		       const char *absolute, uint8_t **out, uint32_t *out_len);
int vhdx_get_info(struct vdisk *disk, struct vdisk_info *info);
/* With VDISK_CHECK_REPAIR it may move blocks to the end of the file, extend or truncate
 * the file and rewrite BAT entries (vhdx->bat follows): the I/O path must recompute where
 * it allocates (disk->file->size) and drop cached sector bitmaps afterwards. */
int vhdx_check(struct vdisk *disk, unsigned flags, struct vdisk_check_result *result);
int vhdx_probe(const struct vdisk_probe *probe);

/* ---- vhdx.c: what offline maintenance uses (the disk is open read-write, nothing is in
 * flight) ---- */

/* Writes every changed metadata page back through the log, synchronously. */
int vhdx_writeback(struct vdisk *disk);
/* One atomic change: writes back what is pending, flushes, then logs the updates as one
 * entry (they must fit in an empty log: see vhdx_log_max_data_updates), flushes and
 * applies them in place. A crash after the flush replays the whole entry; before it,
 * none of it. Updates may lie past the end of the file, which grows to hold them. */
int vhdx_log_commit(struct vdisk *disk, const struct vhdx_log_update *updates, unsigned count);
/* Shrinks (or grows) the file to size once every change is durable and the log holds
 * nothing to replay; nothing the BAT names may lie past size. */
int vhdx_truncate_file(struct vdisk *disk, uint64_t size);
/* Where the next block goes: the end of everything in use (the file may reach past it). */
uint64_t vhdx_alloc_end(struct vdisk *disk);
/* The end of the log, the regions and every present block, 1 MiB aligned; the end of the
 * last present block alone in *blocks_end (unaligned) when not NULL. */
uint64_t vhdx_used_end(const struct vhdx *v, uint64_t *blocks_end);
/* Rebuilds the I/O path's state after the geometry (virtual size, BAT) changed; the log
 * writer's position carries over. */
int vhdx_io_reinit(struct vdisk *disk);

/* ---- maintenance operations (vhdx_resize.c, vhdx_compact.c, vhdx_rebase.c) ---- */
int vhdx_resize(struct vdisk *disk, uint64_t new_size, char *err, size_t err_size);
int vhdx_compact(struct vdisk *disk, vdisk_progress_fn progress, void *opaque,
		 struct vdisk_compact_result *result, char *err, size_t err_size);
int vhdx_set_parent(struct vdisk *disk, const char *parent_path, unsigned flags, char *err,
		    size_t err_size);

#endif
