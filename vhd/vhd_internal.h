/* State of an open VHD and the functions shared between the metadata code (vhd_meta.c:
 * parsing, validation, creation, info, check) and the I/O path (vhd.c). */
#ifndef HV_VHD_INTERNAL_H
#define HV_VHD_INTERNAL_H

#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <time.h>

#include "format.h"
#include "guid.h"
#include "vhd_format.h"

struct vhd_footer {
	uint32_t features;
	uint32_t version;
	uint64_t data_offset;
	uint32_t timestamp;
	char creator_app[5]; /* NUL-terminated copy of the 4 bytes */
	uint32_t creator_version;
	uint32_t creator_host_os;
	uint64_t original_size;
	uint64_t current_size;
	uint16_t cylinders;
	uint8_t heads;
	uint8_t sectors;
	uint32_t disk_type;
	uint32_t checksum;
	uint8_t unique_id[16];
	uint8_t saved_state;
};

struct vhd_locator {
	uint32_t code;
	uint32_t data_space;
	uint32_t data_length;
	uint64_t data_offset;
	char *path; /* decoded UTF-8 path for W2ru/W2ku/MacX, else NULL */
};

struct vhd_header {
	uint64_t data_offset;
	uint64_t table_offset;
	uint32_t version;
	uint32_t max_table_entries;
	uint32_t block_size;
	uint32_t checksum;
	uint8_t parent_id[16];
	uint32_t parent_timestamp;
	char parent_name[VHD_PARENT_NAME_BYTES * 2]; /* UTF-8 */
	struct vhd_locator locators[VHD_LOCATORS];
};

struct vhd {
	struct vhd_footer footer;
	struct vhd_header header; /* dynamic and differencing only */
	uint8_t footer_raw[VHD_FOOTER_SIZE];
	bool footer_from_copy; /* the footer at the end was damaged; the copy at 0 was used */
	uint64_t virtual_size; /* what the guest sees (see vhd_virtual_size) */

	/* Dynamic and differencing */
	uint32_t *bat;	      /* host-endian sector numbers, VHD_BAT_UNUSED when absent */
	uint32_t bat_entries; /* max_table_entries */
	uint32_t blocks;      /* blocks covering virtual_size (<= bat_entries) */
	uint32_t block_size;
	uint32_t bitmap_size;	/* bytes, rounded up to whole sectors */
	uint64_t footer_offset; /* where the footer is (end of the file). When the footer at the
				 * end was damaged (footer_from_copy), the file size rounded up to
				 * a sector: the footer is rewritten there, after everything. */

	/* Differencing */
	char *parent_path; /* the parent's resolved path */
	struct vdisk *parent;

	/* Set by the caller before vhd_load to open an image that only `check --repair` should
	 * touch: BAT entries that point past the end of the file or into metadata are then
	 * masked (VHD_BAT_UNUSED) in vhd->bat and counted in bad_bat_entries instead of
	 * failing the load; vhd_check reports and repairs them from the BAT on disk. */
	bool load_for_repair;
	uint32_t bad_bat_entries;
	/* Set before vhd_load for an open with no_backing: a parent that cannot be found
	 * leaves parent_path NULL instead of failing the load. */
	bool parent_optional;

	/* Owned by the I/O path (vhd.c). */
	void *io;
};

/* ---- the I/O path: vhd.c (reads, writes, status) and vhd_alloc.c (metadata) ---- */

/* A write segment (inside one block) that needs a metadata change. */
struct vhd_member {
	struct vdisk_req *req;
	uint32_t block;
	uint64_t voff; /* virtual offset */
	uint64_t skip; /* offset of the segment in the request's buffer */
	uint64_t len;
	struct vhd_member *next;
};

struct vhd_io {
	pthread_mutex_t lock;
	/* allocation batches */
	struct vhd_member *waiting_head, *waiting_tail;
	bool batch_running;
	uint64_t alloc_end; /* where the next block may start: the footer offset after all
			     * reservations */
	uint8_t **bitmaps;  /* differencing: committed bitmaps by block, NULL until loaded */
	/* metadata changed in memory, not yet written (see vhd_alloc.c) */
	uint32_t *dirty;
	uint32_t ndirty, dirty_cap;
	uint8_t *dirty_mark; /* per block: already listed in dirty */
	bool writeback_running;
	struct vdisk_req_list flushes; /* waiting for the next write-back */
};

/* Bytes a data block takes in the file: its sector bitmap, then its data. */
static inline uint64_t vhd_block_span(const struct vhd *vhd)
{
	return (uint64_t)vhd->bitmap_size + vhd->block_size;
}

static inline struct vhd *vhd_of(struct vdisk *disk)
{
	return disk->priv;
}

static inline struct vhd_io *vhd_io_of(struct vdisk *disk)
{
	return vhd_of(disk)->io;
}

static inline bool vhd_is_sparse(const struct vhd *vhd)
{
	return vhd->footer.disk_type != VHD_TYPE_FIXED;
}

static inline bool vhd_is_diff(const struct vhd *vhd)
{
	return vhd->footer.disk_type == VHD_TYPE_DIFFERENCING;
}

/* BAT entries change under the lock but are read without it. */
static inline uint32_t vhd_bat_get(const struct vhd *vhd, uint32_t block)
{
	return __atomic_load_n(&vhd->bat[block], __ATOMIC_ACQUIRE);
}

static inline uint64_t vhd_block_data_offset(const struct vhd *vhd, uint32_t sector)
{
	return (uint64_t)sector * VHD_SECTOR + vhd->bitmap_size;
}

/* Sector bitmaps are MSB first. */
static inline bool vhd_bit_is_set(const uint8_t *bitmap, uint64_t sector)
{
	return bitmap[sector / 8] & (0x80 >> (sector % 8));
}

static inline void vhd_bit_set(uint8_t *bitmap, uint64_t sector)
{
	bitmap[sector / 8] |= (uint8_t)(0x80 >> (sector % 8));
}

/* vhd.c: the committed bitmap of an allocated block of a differencing image. */
const uint8_t *vhd_bitmap_get(struct vdisk *disk, uint32_t block, uint32_t sector);

/* vhd_alloc.c */
int vhd_io_init(struct vhd *vhd);
void vhd_io_free(struct vhd *vhd);
/* Queues a write segment that needs metadata; vhd_alloc_kick starts a batch for it. */
void vhd_alloc_add(struct vdisk_req *req, uint32_t block, uint64_t skip, uint64_t len,
		   uint64_t voff);
void vhd_alloc_kick(struct vdisk *disk, struct vdisk_queue *q);
/* A flush: writes back metadata, then makes everything durable. */
void vhd_flush_req(struct vdisk_req *req);
/* Writes back metadata synchronously (close, check); nothing may be in flight. */
int vhd_writeback_sync(struct vdisk *disk);

/* ---- vhd_meta.c ---- */

/* Checksum: one's complement of the byte sum with the checksum field taken as zero. */
uint32_t vhd_checksum(const uint8_t *buf, size_t len, size_t checksum_offset);

/* Parses and validates a 512-byte footer (cookie, checksum, version, disk type, sizes).
 * Returns 0 or -EINVAL with a reason in err. */
int vhd_footer_parse(const uint8_t *raw, struct vhd_footer *f, char *err, size_t err_size);
/* Serialises a footer, computing its checksum. */
void vhd_footer_build(const struct vhd_footer *f, uint8_t *raw);
int vhd_header_parse(const uint8_t *raw, struct vhd_header *h, char *err, size_t err_size);
void vhd_header_build(const struct vhd_header *h, uint8_t *raw);

/* Formats a VHD unique id (footer unique_id, header parent_id) as a GUID string: VHD stores
 * them in RFC 4122 byte order, as qemu writes them and vhdiinfo prints them, not in
 * struct guid's Microsoft order. out needs GUID_STR_LEN + 1 bytes. */
void vhd_uuid_format(const uint8_t *raw, char *out);

/* CHS geometry for a size by the VHD specification's algorithm. */
void vhd_geometry(uint64_t size, uint16_t *cylinders, uint8_t *heads, uint8_t *sectors);
/* The size a guest sees: current_size for creators known to use it (Hyper-V "win ",
 * qemu "qem2", Disk2VHD "d2v ", "tap\0", "CTXS", ours), CHS otherwise, as qemu does. */
uint64_t vhd_virtual_size(const struct vhd_footer *f);

/* Reads and validates everything but the parent on disk->file: footer (falling back to
 * the copy at offset 0 for dynamic/differencing images), dynamic header, BAT (entries
 * inside the file, not overlapping metadata or each other), locators (decoding their
 * paths) and, for differencing images, sets vhd->parent_path to the first locator path
 * that exists (relative to the child's directory first, then absolute). Returns 0 or
 * -errno with a reason in err. */
int vhd_load(struct vdisk *disk, struct vhd *vhd, char *err, size_t err_size);
void vhd_unload(struct vhd *vhd);

int vhd_create(const char *path, const struct vdisk_create_options *opts, char *err,
	       size_t err_size);
int vhd_get_info(struct vdisk *disk, struct vdisk_info *info);
int vhd_check(struct vdisk *disk, unsigned flags, struct vdisk_check_result *result);
int vhd_probe(const struct vdisk_probe *probe);

/* What creation records of a differencing image's parent, shared with rebase: */
/* a time in VHD seconds (since 2000-01-01 UTC); */
uint32_t vhd_time(time_t t);
/* the parent's canonical absolute path and Windows-style path relative to the child (both
 * malloc'd) and its file name for the header (name: VHD_PARENT_NAME_BYTES * 2 bytes); */
int vhd_parent_paths(const char *child, const char *parent, char *name, char **absolute,
		     char **relative, char *err, size_t err_size);
/* the W2ku (absolute) and W2ru (relative) locator data, UTF-16LE without a terminator. */
#define VHD_LOCATOR_MAX_DATA (64u << 10) /* a 32767-unit Windows path fits */
struct vhd_locator_data {
	uint32_t code;
	uint8_t data[VHD_LOCATOR_MAX_DATA];
	size_t len;
};
int vhd_locators_encode(const char *absolute, const char *relative, struct vhd_locator_data loc[2]);

/* ---- maintenance operations (vhd_resize.c, vhd_compact.c, vhd_rebase.c) ---- */
int vhd_resize(struct vdisk *disk, uint64_t new_size, char *err, size_t err_size);
int vhd_compact(struct vdisk *disk, vdisk_progress_fn progress, void *opaque,
		struct vdisk_compact_result *result, char *err, size_t err_size);
int vhd_set_parent(struct vdisk *disk, const char *parent_path, unsigned flags, char *err,
		   size_t err_size);

#endif
