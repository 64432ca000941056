/* Resize of a VHDX image (offline: nothing in flight).
 *
 * The virtual size is one metadata item; the BAT's layout (payload entries with a sector
 * bitmap entry after every chunk_ratio of them) does not depend on it, so a new size needs
 * only the item, the entries of the blocks that appear or disappear, and enough room in
 * the BAT region. The order of the steps, and why each crash leaves the old size or the
 * new one with the disk below both unchanged:
 *
 * 1. The DataWriteGuid is renewed (the size is user-visible data, MS-VHDX 2.2.2).
 * 2. Growing: space the new size needs is prepared where nothing on disk points yet: the
 *    data of the last old block past the old size is zeroed (an earlier forced shrink may
 *    have left data there), a fixed image's new blocks are reserved and appended (zeros,
 *    not sparse: Windows refuses sparse fixed VHDX).
 * 3. A BAT region too small for the new size is rewritten whole, old entries and new, at
 *    the 1 MiB-aligned end of the used space, and flushed. Then the region tables point to
 *    it. They live in the first 1 MiB, where the log cannot reach (MS-VHDX asks for log
 *    updates, but its replay rules and ours refuse log targets there), so they are written
 *    in place, one after the other, each flushed: table 2 first, then table 1. QEMU reads
 *    only table 1, and our loader uses table 1 whenever it is valid, so until table 1 is
 *    written every reader uses the old BAT, and from then on the new one; table 2 is a
 *    backup, written while table 1 still describes a complete, consistent image. A crash
 *    between the two writes leaves two valid tables that differ: a read-write open copies
 *    the one in use (table 1) over the other. Only the first 4 KiB of a table changes, so
 *    a torn write leaves it either old or new on disks with 4 KiB atomic writes.
 * 4. One log entry (vhdx_log_commit) changes the size item together with the BAT pages of
 *    the entries that change (new blocks' entries, entries past a smaller end set to
 *    NOT_PRESENT): replay applies all of it or none. Entries past the old end are not read
 *    by anyone at the old size, so when the pages do not fit one entry, entries-only
 *    entries go first and the last one carries the size.
 *
 * Shrinking leaves the space of the released blocks in the file: the file can only be
 * truncated with an empty log (a log entry names the file size that is durable, and
 * replay refuses a shorter file), and `vdisk compact` reclaims it.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "arith.h"
#include "endian.h"
#include "vhdx_internal.h"

#define PAGE		 VHDX_LOG_SECTOR
#define ENTRIES_PER_PAGE (PAGE / VHDX_BAT_ENTRY_SIZE)
#define CHUNK		 (1u << 20)

/* ---- the plan: the geometry of the new size and where new things go ---- */

struct plan {
	struct vhdx *v;	     /* the image as it is */
	struct vhdx g;	     /* only the geometry fields: the new size */
	bool fixed;	     /* new blocks are allocated (LeaveBlocksAllocated) */
	uint64_t used_end;   /* end of everything in use, 1 MiB aligned */
	uint64_t blocks_end; /* end of the last present block (may be past the file's end) */
	bool relocate;	     /* the BAT region is too small */
	uint64_t bat_offset; /* new BAT region when relocating */
	uint32_t bat_length;
	uint64_t new_blocks; /* fixed images: where the first new block goes */
};

/* What is in use ends at the allocator's end (the file may reach past it, extended ahead
 * of allocation), or further where metadata or blocks lie. */
static void plan_used_end(struct plan *p, struct vdisk *disk)
{
	uint64_t end = vhdx_used_end(p->v, &p->blocks_end);
	p->used_end = max_u64(round_up(vhdx_alloc_end(disk), VHDX_ALIGN), end);
}

static int plan_make(struct plan *p, struct vdisk *disk, uint64_t new_size, char *err,
		     size_t err_size)
{
	struct vhdx *v = disk->priv;
	if (new_size > VHDX_MAX_SIZE) {
		snprintf(err, err_size, "%" PRIu64 " bytes is beyond the VHDX maximum of 64 TiB",
			 new_size);
		return -EFBIG;
	}
	*p = (struct plan){ .v = v, .g = *v };
	p->g.bat = NULL;
	p->g.virtual_size = new_size;
	vhdx_derive_geometry(&p->g);
	p->fixed = v->leave_blocks_allocated && !v->has_parent;
	plan_used_end(p, disk);
	uint64_t need = p->g.bat_entries * VHDX_BAT_ENTRY_SIZE;
	uint64_t next = p->used_end;
	if (need > v->bat_length) {
		if (round_up(need, VHDX_ALIGN) > UINT32_MAX) {
			snprintf(err, err_size,
				 "a BAT for %" PRIu64 " bytes would not fit a region", new_size);
			return -EFBIG;
		}
		p->relocate = true;
		p->bat_offset = next;
		p->bat_length = (uint32_t)round_up(need, VHDX_ALIGN);
		next += p->bat_length;
	}
	p->new_blocks = next;
	return 0;
}

/* The entry at index for the new size. Entries of blocks below both sizes, and sector
 * bitmap entries of chunks below both, keep their value; everything past the new end is
 * NOT_PRESENT (0); blocks that appear are NOT_PRESENT, or allocated in a fixed image. */
static uint64_t new_entry(const struct plan *p, uint64_t index)
{
	const struct vhdx *v = p->v, *g = &p->g;
	if (index >= g->bat_entries)
		return 0;
	uint64_t chunk = index / (g->chunk_ratio + 1);
	if (vhdx_is_bitmap_index(g, index))
		return chunk < min_u64(v->bitmap_blocks, g->bitmap_blocks) && index < v->bat_entries
			       ? v->bat[index]
			       : 0;
	uint64_t block = chunk * g->chunk_ratio + index % (g->chunk_ratio + 1);
	if (block < v->data_blocks && block < g->data_blocks)
		return v->bat[index];
	if (block >= g->data_blocks || !p->fixed)
		return 0;
	return vhdx_bat_entry(VHDX_BLOCK_FULLY_PRESENT,
			      p->new_blocks + (block - v->data_blocks) * (uint64_t)v->block_size);
}

/* Fills one 4 KiB page of the new BAT (page number page); returns whether it is all zero. */
static bool fill_bat_page(const struct plan *p, uint64_t page, uint8_t *out)
{
	bool zero = true;
	for (uint64_t k = 0; k < ENTRIES_PER_PAGE; k++) {
		uint64_t e = new_entry(p, page * ENTRIES_PER_PAGE + k);
		store_le64(out + k * 8, e);
		zero &= e == 0;
	}
	return zero;
}

/* ---- step 2: space for growing ---- */

/* The last old block's data past the old size becomes disk space that must read as zeros
 * (an earlier forced shrink may have left data there). It lies past the old end, so
 * nothing reads it until the size changes. The file is first extended over present
 * blocks that end beyond it (QEMU sizes fixed images to the disk's end): new blocks must
 * not be allocated inside them. */
static int prepare_old_tail(struct vdisk *disk, const struct plan *p)
{
	const struct vhdx *v = p->v;
	struct vdisk_file *file = disk->file;
	int ret = 0;
	if (p->blocks_end > file->size)
		ret = vdisk_file_set_size(file, p->blocks_end);
	uint64_t in_block = v->virtual_size % v->block_size;
	if (ret < 0 || !in_block)
		return ret;
	uint64_t index = vhdx_payload_index(v, v->virtual_size / v->block_size);
	unsigned st = vhdx_bat_state(v->bat[index]);
	if (st != VHDX_BLOCK_FULLY_PRESENT && st != VHDX_BLOCK_PARTIALLY_PRESENT)
		return 0;
	const struct iovec *zero = vdisk_zero_iov(CHUNK);
	if (!zero)
		return -ENOMEM;
	uint64_t base = vhdx_bat_offset(v->bat[index]);
	for (uint64_t off = in_block; off < v->block_size && ret == 0;) {
		uint64_t n = min_u64(CHUNK - off % CHUNK, v->block_size - off);
		ret = vdisk_file_pwrite(file, zero->iov_base, n, base + off);
		off += n;
	}
	return ret;
}

/* A fixed image's new blocks: reserved (a full file system fails here, before anything
 * points to them) and inside the file. */
static int allocate_new_blocks(struct vdisk *disk, const struct plan *p)
{
	uint64_t count = p->g.data_blocks - p->v->data_blocks;
	uint64_t len = count * p->v->block_size, end = p->new_blocks + len;
	int ret = vdisk_file_reserve(disk->file, p->new_blocks, len);
	if (ret == 0 && end > disk->file->size)
		ret = vdisk_file_set_size(disk->file, end);
	return ret;
}

/* ---- step 3: a larger BAT region ---- */

static int write_new_bat(struct vdisk *disk, const struct plan *p)
{
	uint8_t *buf = vdisk_alloc_aligned(CHUNK);
	if (!buf)
		return -ENOMEM;
	int ret = 0;
	uint64_t pages = p->bat_length / PAGE;
	for (uint64_t page = 0; page < pages && ret == 0;) {
		uint64_t n = min_u64(CHUNK / PAGE, pages - page);
		for (uint64_t k = 0; k < n; k++)
			fill_bat_page(p, page + k, buf + k * PAGE);
		ret = vdisk_file_pwrite(disk->file, buf, n * PAGE, p->bat_offset + page * PAGE);
		page += n;
	}
	free(buf);
	return ret ? ret : vdisk_file_sync(disk->file);
}

/* The region table in use with the BAT entry moved, checksum recomputed. */
static int build_region_table(struct vdisk *disk, const struct plan *p, uint8_t *raw)
{
	const struct vhdx *v = p->v;
	uint64_t at = v->region_table ? VHDX_REGION_TABLE2_OFFSET : VHDX_REGION_TABLE1_OFFSET;
	int ret = vdisk_file_pread(disk->file, raw, VHDX_REGION_TABLE_SIZE, at);
	if (ret < 0)
		return ret;
	uint32_t n = load_le32(raw + VHDX_RT_ENTRY_COUNT);
	for (uint32_t i = 0; i < n && i < VHDX_REGION_MAX_ENTRIES; i++) {
		uint8_t *e = raw + VHDX_RT_ENTRIES + (size_t)i * VHDX_RE_SIZE;
		struct guid g;
		memcpy(g.bytes, e + VHDX_RE_GUID, sizeof(g.bytes));
		if (!guid_equal(&g, &VHDX_REGION_BAT))
			continue;
		store_le64(e + VHDX_RE_FILE_OFFSET, p->bat_offset);
		store_le32(e + VHDX_RE_LENGTH, p->bat_length);
		store_le32(raw + VHDX_RT_CHECKSUM, 0);
		store_le32(raw + VHDX_RT_CHECKSUM,
			   vhdx_checksum(raw, VHDX_REGION_TABLE_SIZE, VHDX_RT_CHECKSUM));
		return 0;
	}
	return -EIO; /* the loader found it: the table changed under us */
}

/* Table 2, flushed, then table 1, flushed: see the top of the file. */
static int switch_region_tables(struct vdisk *disk, const struct plan *p)
{
	uint8_t *raw = vdisk_alloc_aligned(VHDX_REGION_TABLE_SIZE);
	if (!raw)
		return -ENOMEM;
	int ret = build_region_table(disk, p, raw);
	const uint64_t order[2] = { VHDX_REGION_TABLE2_OFFSET, VHDX_REGION_TABLE1_OFFSET };
	for (int i = 0; i < 2 && ret == 0; i++) {
		ret = vdisk_file_pwrite(disk->file, raw, VHDX_REGION_TABLE_SIZE, order[i]);
		if (ret == 0)
			ret = vdisk_file_sync(disk->file);
	}
	free(raw);
	return ret;
}

static void adopt_bat_region(struct vhdx *v, const struct plan *p)
{
	v->bat_offset = p->bat_offset;
	v->bat_length = p->bat_length;
	for (unsigned i = 0; i < v->nregions; i++)
		if (guid_equal(&v->regions[i].guid, &VHDX_REGION_BAT)) {
			v->regions[i].file_offset = p->bat_offset;
			v->regions[i].length = p->bat_length;
		}
}

static int relocate_bat(struct vdisk *disk, const struct plan *p)
{
	int ret = write_new_bat(disk, p);
	if (ret == 0)
		ret = switch_region_tables(disk, p);
	if (ret == 0)
		adopt_bat_region(p->v, p);
	return ret;
}

/* ---- step 4: the log entries ---- */

struct updates {
	struct vhdx_log_update *u;
	unsigned n, cap;
	uint8_t **pages; /* data buffers, freed with the list */
	unsigned npages;
};

static void updates_free(struct updates *l)
{
	for (unsigned i = 0; i < l->npages; i++)
		free(l->pages[i]);
	free(l->pages);
	free(l->u);
}

static int updates_add(struct updates *l, struct vhdx_log_update u)
{
	if (l->n == l->cap) {
		unsigned cap = l->cap ? l->cap * 2 : 16;
		struct vhdx_log_update *n = realloc(l->u, cap * sizeof(*n));
		uint8_t **pages = realloc(l->pages, cap * sizeof(*pages));
		if (n)
			l->u = n;
		if (pages)
			l->pages = pages;
		if (!n || !pages)
			return -ENOMEM;
		l->cap = cap;
	}
	/* a zero run right after another grows it */
	struct vhdx_log_update *last = l->n ? &l->u[l->n - 1] : NULL;
	if (!u.data && last && !last->data &&
	    last->file_offset + last->zero_length == u.file_offset) {
		last->zero_length += u.zero_length;
		return 0;
	}
	if (u.data)
		l->pages[l->npages++] = (uint8_t *)u.data;
	l->u[l->n++] = u;
	return 0;
}

/* A page of data for the list (owned by it). */
static uint8_t *updates_page(struct updates *l, uint64_t file_offset)
{
	uint8_t *page = vdisk_alloc_aligned(PAGE);
	if (!page)
		return NULL;
	if (updates_add(l, (struct vhdx_log_update){ .file_offset = file_offset, .data = page }) <
	    0) {
		free(page);
		return NULL;
	}
	return page;
}

/* The BAT pages from the first entry that may change to the last of the old or new BAT. */
static int add_bat_pages(struct updates *l, const struct plan *p)
{
	const struct vhdx *v = p->v;
	uint64_t first = vhdx_payload_index(v, min_u64(v->data_blocks, p->g.data_blocks));
	uint64_t last = max_u64(v->bat_entries, p->g.bat_entries) - 1;
	uint8_t tmp[PAGE];
	for (uint64_t page = first / ENTRIES_PER_PAGE; page <= last / ENTRIES_PER_PAGE; page++) {
		uint64_t off = v->bat_offset + page * PAGE;
		if (fill_bat_page(p, page, tmp)) {
			int ret = updates_add(l, (struct vhdx_log_update){ .file_offset = off,
									   .zero_length = PAGE });
			if (ret < 0)
				return ret;
			continue;
		}
		uint8_t *data = updates_page(l, off);
		if (!data)
			return -ENOMEM;
		memcpy(data, tmp, PAGE);
	}
	return 0;
}

/* Where the Virtual Disk Size item is (the loader validated the table and the item). */
static int size_item_offset(struct vdisk *disk, const struct vhdx *v, uint64_t *out)
{
	uint8_t *table = malloc(VHDX_METADATA_TABLE_SIZE);
	if (!table)
		return -ENOMEM;
	int ret = vdisk_file_pread(disk->file, table, VHDX_METADATA_TABLE_SIZE, v->metadata_offset);
	unsigned n = ret == 0 ? load_le16(table + VHDX_MT_ENTRY_COUNT) : 0;
	ret = ret ? ret : -EIO;
	for (unsigned i = 0; i < n && i < VHDX_METADATA_MAX_ENTRIES; i++) {
		const uint8_t *e = table + VHDX_MT_ENTRIES + (size_t)i * VHDX_ME_SIZE;
		struct guid id;
		memcpy(id.bytes, e + VHDX_ME_ITEM_ID, sizeof(id.bytes));
		if (guid_equal(&id, &VHDX_ITEM_VIRTUAL_DISK_SIZE) &&
		    !(load_le32(e + VHDX_ME_FLAGS) & VHDX_ME_IS_USER)) {
			*out = v->metadata_offset + load_le32(e + VHDX_ME_OFFSET);
			ret = 0;
			break;
		}
	}
	free(table);
	return ret;
}

/* The page(s) holding the size item, with the new size. */
static int add_size_pages(struct updates *l, struct vdisk *disk, const struct plan *p)
{
	uint64_t item = 0;
	int ret = size_item_offset(disk, p->v, &item);
	if (ret < 0)
		return ret;
	uint8_t value[8];
	store_le64(value, p->g.virtual_size);
	for (uint64_t page = item / PAGE; page <= (item + 7) / PAGE; page++) {
		uint8_t *data = updates_page(l, page * PAGE);
		if (!data)
			return -ENOMEM;
		ret = vdisk_file_pread(disk->file, data, PAGE, page * PAGE);
		if (ret < 0)
			return ret;
		for (uint64_t b = 0; b < 8; b++)
			if ((item + b) / PAGE == page)
				data[(item + b) % PAGE] = value[b];
	}
	return 0;
}

/* Commits the list in as few entries as fit the log, in order: the last one holds the
 * size. */
static int commit_updates(struct vdisk *disk, const struct updates *l)
{
	const struct vhdx *v = disk->priv;
	uint32_t room = v->header.log_length - PAGE; /* one log sector always stays free */
	for (unsigned start = 0; start < l->n;) {
		unsigned count = 1;
		while (start + count < l->n && vhdx_log_entry_size(l->u + start, count + 1) <= room)
			count++;
		int ret = vhdx_log_commit(disk, l->u + start, count);
		if (ret < 0)
			return ret;
		start += count;
	}
	return 0;
}

/* ---- the whole change ---- */

static int renew_data_write_guid(struct vdisk *disk)
{
	struct guid g;
	int ret = guid_generate(&g);
	return ret ? ret : vhdx_header_update(disk, disk->priv, NULL, &g, NULL);
}

static int prepare_growth(struct vdisk *disk, const struct plan *p, char *err, size_t err_size)
{
	int ret = prepare_old_tail(disk, p);
	if (ret == 0 && p->fixed)
		ret = allocate_new_blocks(disk, p);
	if (ret == 0)
		ret = vdisk_file_sync(disk->file);
	return ret ? vdisk_error_errno(err, err_size, ret,
				       "cannot prepare the space for the larger disk")
		   : 0;
}

static int log_new_size(struct vdisk *disk, const struct plan *p, char *err, size_t err_size)
{
	struct updates l = { 0 };
	int ret = p->relocate ? 0 : add_bat_pages(&l, p);
	if (ret == 0)
		ret = add_size_pages(&l, disk, p);
	if (ret == 0)
		ret = commit_updates(disk, &l);
	updates_free(&l);
	return ret ? vdisk_error_errno(err, err_size, ret, "cannot log the new size") : 0;
}

/* The image in memory at the new size, and the I/O path rebuilt for it. */
static int adopt_size(struct vdisk *disk, const struct plan *p, char *err, size_t err_size)
{
	struct vhdx *v = p->v;
	uint64_t *bat = malloc(p->g.bat_entries * sizeof(*bat));
	if (!bat)
		return vdisk_error_errno(err, err_size, -ENOMEM, "cannot hold the new BAT");
	for (uint64_t i = 0; i < p->g.bat_entries; i++)
		bat[i] = new_entry(p, i);
	free(v->bat);
	v->bat = bat;
	v->virtual_size = p->g.virtual_size;
	vhdx_derive_geometry(v);
	disk->size = v->virtual_size;
	int ret = vhdx_io_reinit(disk);
	return ret ? vdisk_error_errno(err, err_size, ret, "cannot set up the resized image") : 0;
}

int vhdx_resize(struct vdisk *disk, uint64_t new_size, char *err, size_t err_size)
{
	struct plan p;
	int ret = plan_make(&p, disk, new_size, err, err_size);
	if (ret < 0)
		return ret;
	ret = vhdx_writeback(disk);
	if (ret == 0)
		ret = renew_data_write_guid(disk);
	if (ret < 0)
		return vdisk_error_errno(err, err_size, ret, "cannot update the image's header");
	if (new_size > p.v->virtual_size) {
		ret = prepare_growth(disk, &p, err, err_size);
		if (ret < 0)
			return ret;
	}
	if (p.relocate) {
		ret = relocate_bat(disk, &p);
		if (ret < 0)
			return vdisk_error_errno(err, err_size, ret,
						 "cannot move the BAT to a larger region");
	}
	ret = log_new_size(disk, &p, err, err_size);
	return ret ? ret : adopt_size(disk, &p, err, err_size);
}
