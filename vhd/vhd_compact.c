/* Compaction of a dynamic or differencing VHD:
 *
 * 1. Release. A block that masks nothing (vdisk_block_compare: a dynamic block of zeros,
 *    a differencing block whose present sectors equal its parent's, or whose bitmap is
 *    clear) gets an unused BAT entry. VHD has no Zero state: a differencing block of
 *    zeros over a parent with data stays.
 * 2. Move. The block that ends last moves into the lowest free space below it (its data
 *    4 KiB aligned where that fits), until none does. Moves go in groups: the copies,
 *    flush, the BAT sectors, flush; so the BAT on disk never names a copy that is not
 *    durable, and a block never moves into space the BAT on disk still names.
 * 3. The footer is written after the last block, flushed, and the file cut after it.
 *
 * VHD has no log: a power cut leaves an image that opens and reads the same, with at
 * worst space that `vdisk check --repair` reclaims.
 *
 * Fixed images are refused, as Optimize-VHD refuses them: a fixed VHD is the disk itself.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "endian.h"
#include "vhd_internal.h"

#define DATA_ALIGN  4096u /* as vhd_alloc.c places new blocks */
#define MOVES_GROUP 64u	  /* copies between two BAT updates */

struct compactor {
	struct vdisk *disk;
	struct vhd *vhd;
	struct vdisk_compact_ctx ctx;
	uint8_t *bat_sector_dirty; /* per BAT sector: changed in memory, not yet written */
	uint64_t released;
	bool changed;
};

static uint32_t bat_sectors(const struct vhd *vhd)
{
	return (uint32_t)(((uint64_t)vhd->bat_entries * 4 + VHD_SECTOR - 1) / VHD_SECTOR);
}

static void set_entry(struct compactor *c, uint32_t block, uint32_t sector)
{
	__atomic_store_n(&c->vhd->bat[block], sector, __ATOMIC_RELEASE);
	c->bat_sector_dirty[block * 4 / VHD_SECTOR] = 1;
	c->changed = true;
}

/* Writes the changed BAT sectors and flushes. */
static int write_bat(struct compactor *c)
{
	const struct vhd *vhd = c->vhd;
	uint8_t sector[VHD_SECTOR];
	int ret = 0;
	for (uint32_t s = 0; s < bat_sectors(vhd) && ret == 0; s++) {
		if (!c->bat_sector_dirty[s])
			continue;
		for (uint32_t e = 0; e < VHD_SECTOR / 4; e++) {
			uint64_t idx = (uint64_t)s * (VHD_SECTOR / 4) + e;
			store_be32(sector + e * 4,
				   idx < vhd->bat_entries ? vhd->bat[idx] : VHD_BAT_UNUSED);
		}
		ret = vdisk_file_pwrite(c->disk->file, sector, VHD_SECTOR,
					vhd->header.table_offset + (uint64_t)s * VHD_SECTOR);
		c->bat_sector_dirty[s] = 0;
	}
	if (ret == 0)
		ret = vdisk_file_sync(c->disk->file);
	return ret < 0 ? vdisk_compact_fail(&c->ctx, ret, "cannot write the BAT") : 0;
}

/* ---- step 1: release ---- */

static bool bit_is_set(const void *ctx, uint64_t sector)
{
	return vhd_bit_is_set(ctx, sector);
}

/* Whether block n masks nothing: the image reads the same without it. */
static int masks_nothing(struct compactor *c, uint32_t n, uint8_t *bitmap, bool *result)
{
	const struct vhd *vhd = c->vhd;
	uint32_t sector = vhd->bat[n];
	uint64_t start = (uint64_t)n * vhd->block_size;
	int ret = 0;
	if (vhd_is_diff(vhd))
		ret = vdisk_file_pread(c->disk->file, bitmap, vhd->bitmap_size,
				       (uint64_t)sector * VHD_SECTOR);
	struct vdisk_block b = {
		.disk = c->disk,
		.file_offset = vhd_block_data_offset(vhd, sector),
		.offset = start,
		.length = vhd->virtual_size - start < vhd->block_size ? vhd->virtual_size - start
								      : vhd->block_size,
		.sector_size = VHD_SECTOR,
		/* dynamic images read an allocated block's data whatever its bitmap says */
		.present = vhd_is_diff(vhd) ? bit_is_set : NULL,
		.ctx = bitmap,
		.below = vhd->parent,
	};
	struct vdisk_block_view view;
	if (ret == 0)
		ret = vdisk_block_compare(&b, &view);
	if (ret < 0)
		return vdisk_compact_fail(&c->ctx, ret, "cannot read a block to compare it");
	*result = view.masks_nothing;
	return 0;
}

static int release_all(struct compactor *c)
{
	struct vhd *vhd = c->vhd;
	uint8_t *bitmap = malloc(vhd->bitmap_size);
	if (!bitmap)
		return vdisk_compact_fail(&c->ctx, -ENOMEM, "cannot scan the blocks");
	int ret = 0;
	for (uint32_t n = 0; n < vhd->blocks && ret == 0; n++) {
		if (vhd->bat[n] == VHD_BAT_UNUSED)
			continue;
		bool release = false;
		ret = masks_nothing(c, n, bitmap, &release);
		if (ret == 0 && release) {
			set_entry(c, n, VHD_BAT_UNUSED);
			c->released++;
		}
		vdisk_compact_advance(&c->ctx, 1);
	}
	free(bitmap);
	return ret == 0 ? write_bat(c) : ret;
}

/* ---- step 2: move ---- */

static void add_span(struct vdisk_span *used, size_t *n, uint64_t start, uint64_t len,
		     uint64_t index)
{
	used[(*n)++] = (struct vdisk_span){ start, start + len, index };
}

/* Reserved space of a parent locator: sectors when below 512, else bytes (writers differ),
 * at least its data. */
static uint64_t locator_bytes(const struct vhd_locator *loc)
{
	uint64_t space = loc->data_space < VHD_SECTOR ? (uint64_t)loc->data_space * VHD_SECTOR
						      : loc->data_space;
	uint64_t data = ((uint64_t)loc->data_length + VHD_SECTOR - 1) / VHD_SECTOR * VHD_SECTOR;
	return space > data ? space : data;
}

/* The footer copy, the dynamic header, the BAT, every locator that names space (whether
 * or not it is used: blocks never move over one) and every block. */
static struct vdisk_span *used_spans(const struct vhd *vhd, size_t *count)
{
	struct vdisk_span *used = malloc((vhd->bat_entries + 3 + VHD_LOCATORS) * sizeof(*used));
	size_t n = 0;
	if (!used)
		return NULL;
	add_span(used, &n, 0, VHD_FOOTER_SIZE, VDISK_SPAN_FIXED);
	add_span(used, &n, vhd->footer.data_offset, VHD_HEADER_SIZE, VDISK_SPAN_FIXED);
	add_span(used, &n, vhd->header.table_offset, (uint64_t)bat_sectors(vhd) * VHD_SECTOR,
		 VDISK_SPAN_FIXED);
	for (int i = 0; i < VHD_LOCATORS; i++) {
		const struct vhd_locator *loc = &vhd->header.locators[i];
		if (loc->code != VHD_PLATFORM_NONE && loc->data_offset < vhd->footer_offset)
			add_span(used, &n, loc->data_offset, locator_bytes(loc), VDISK_SPAN_FIXED);
	}
	for (uint32_t b = 0; b < vhd->bat_entries; b++)
		if (vhd->bat[b] != VHD_BAT_UNUSED)
			add_span(used, &n, (uint64_t)vhd->bat[b] * VHD_SECTOR, vhd_block_span(vhd),
				 b);
	*count = n;
	return used;
}

/* Copies a group of blocks, flushes, then points the BAT at the copies. */
static int move_group(struct compactor *c, const struct vdisk_move *m, size_t count)
{
	for (size_t i = 0; i < count; i++) {
		int ret = vdisk_file_copy(c->disk->file, m[i].from, m[i].to, m[i].len);
		if (ret < 0)
			return vdisk_compact_fail(&c->ctx, ret, "cannot copy a block");
	}
	int ret = vdisk_file_sync(c->disk->file);
	if (ret < 0)
		return vdisk_compact_fail(&c->ctx, ret, "cannot flush the moved blocks");
	for (size_t i = 0; i < count; i++)
		set_entry(c, (uint32_t)m[i].index, (uint32_t)(m[i].to / VHD_SECTOR));
	ret = write_bat(c);
	vdisk_compact_advance(&c->ctx, count);
	return ret;
}

/* The footer after the last used byte, flushed, before the file is cut after it: the
 * footer at the end of the file is valid at every moment. */
static int move_footer(struct compactor *c, uint64_t used_end)
{
	struct vhd *vhd = c->vhd;
	uint64_t to = (used_end + VHD_SECTOR - 1) / VHD_SECTOR * VHD_SECTOR;
	if (c->disk->file->is_block_device || to >= vhd->footer_offset)
		return 0;
	int ret = vdisk_file_pwrite(c->disk->file, vhd->footer_raw, VHD_FOOTER_SIZE, to);
	if (ret == 0)
		ret = vdisk_file_sync(c->disk->file);
	if (ret == 0)
		ret = vdisk_file_set_size(c->disk->file, to + VHD_FOOTER_SIZE);
	if (ret == 0)
		ret = vdisk_file_sync(c->disk->file);
	if (ret < 0)
		return vdisk_compact_fail(&c->ctx, ret,
					  "cannot move the footer and truncate the file");
	vhd->footer_offset = to;
	c->changed = true;
	return 0;
}

static int move_and_truncate(struct compactor *c)
{
	const struct vhd *vhd = c->vhd;
	size_t n;
	struct vdisk_span *used = used_spans(vhd, &n);
	struct vdisk_move_plan p;
	/* data 4 KiB aligned where the space allows it, as new blocks are placed */
	int ret = used ? vdisk_plan_moves(used, n, DATA_ALIGN, vhd->bitmap_size, VHD_SECTOR, &p)
		       : -ENOMEM;
	free(used);
	if (ret < 0)
		return vdisk_compact_fail(&c->ctx, ret, "cannot plan the moves");
	c->ctx.total = c->ctx.done + p.nmoves;
	vdisk_compact_advance(&c->ctx, 0);
	for (size_t i = 0; i < p.nmoves && ret == 0; i += MOVES_GROUP)
		ret = move_group(c, p.moves + i,
				 p.nmoves - i < MOVES_GROUP ? p.nmoves - i : MOVES_GROUP);
	if (ret == 0)
		ret = move_footer(c, p.end);
	free(p.moves);
	return ret;
}

/* ---- the operation ---- */

static int refuse(const struct vhd *vhd, char *err, size_t err_size)
{
	if (!vhd_is_sparse(vhd)) {
		snprintf(err, err_size,
			 "a fixed VHD is the disk itself, with nothing to release; convert it to "
			 "a dynamic image to make it smaller");
		return -ENOTSUP;
	}
	if (vhd_is_diff(vhd) && !vhd->parent) {
		snprintf(err, err_size,
			 "a differencing image is compacted with its parent open (opened without "
			 "it, which blocks mask the parent is unknown)");
		return -EINVAL;
	}
	if (vhd->bad_bat_entries) {
		snprintf(err, err_size,
			 "the BAT has bad entries: run 'vdisk check --repair' first");
		return -EINVAL;
	}
	return 0;
}

int vhd_compact(struct vdisk *disk, vdisk_progress_fn progress, void *opaque,
		struct vdisk_compact_result *result, char *err, size_t err_size)
{
	struct vhd *vhd = disk->priv;
	struct compactor c = {
		.disk = disk,
		.vhd = vhd,
		.ctx = { .progress = progress, .opaque = opaque, .err = err, .err_size = err_size }
	};
	result->file_size_before = result->file_size_after = disk->file->size;
	int ret = refuse(vhd, err, err_size);
	if (ret < 0)
		return ret;
	ret = vhd_writeback_sync(disk); /* the BAT and bitmaps on disk are the ones in memory */
	if (ret < 0)
		return vdisk_compact_fail(&c.ctx, ret, "cannot write back the metadata");
	c.bat_sector_dirty = calloc(bat_sectors(vhd) + 1, 1);
	if (!c.bat_sector_dirty)
		return vdisk_compact_fail(&c.ctx, -ENOMEM, "cannot scan the blocks");
	for (uint32_t n = 0; n < vhd->blocks; n++)
		c.ctx.total += 2 * (vhd->bat[n] != VHD_BAT_UNUSED); /* a scan, at most a move */
	ret = release_all(&c);
	if (ret == 0)
		ret = move_and_truncate(&c);
	free(c.bat_sector_dirty);
	if (c.changed) { /* cached bitmaps, and where allocation goes on */
		vhd_io_free(vhd);
		int r = vhd_io_init(vhd);
		if (ret == 0 && r < 0)
			ret = vdisk_compact_fail(&c.ctx, r, "cannot reopen the image for I/O");
	}
	result->blocks_released = c.released;
	result->file_size_after = disk->file->size;
	return ret;
}
