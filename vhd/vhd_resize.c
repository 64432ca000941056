/* Resize of a VHD image (offline: nothing in flight).
 *
 * The size lives in the footer (current_size and CHS geometry), which a fixed image keeps
 * only at the end of the file and a dynamic or differencing image also copies to offset 0.
 * Every step leaves a valid footer at the end of the file:
 * - Fixed: the host space is reserved first (a full file system fails before anything
 *   changed); growing writes the new footer past the old end (one write extends the file),
 *   flushes, then zeroes the old footer, now inside the disk; shrinking writes the new
 *   footer inside the old data, flushes, then truncates the old one away.
 * - Dynamic and differencing: the BAT entries of blocks past the new end are freed first
 *   (flushed: from then on a crash leaves the old size with zeros there, never the new
 *   size with stale blocks); blocks freed at the end of the file are trimmed (footer moved
 *   down, flushed, truncated). A BAT too small for the new size is rewritten at the end of
 *   the file with a footer after it and flushed before the header points to it (one
 *   1024-byte write in the first 4 KiB of the file). Then the footer at the end, flushed,
 *   then its copy at offset 0: a crash between the two leaves the copy stale, which
 *   `vdisk check --repair` rewrites from the end footer.
 * The old BAT's space stays unused after a relocation (check counts it as leaked when it is
 * more than alignment padding; compact reclaims it), and so do freed blocks that are not at
 * the end of the file.
 *
 * The original size follows the current size: libvhdi reports it as the disk's size.
 * The current size is exact: our images carry creator "win ", which every reader sizes by
 * current_size. An image whose creator makes readers size it by CHS geometry can only take
 * sizes the geometry expresses; others are refused rather than silently rounded.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "arith.h"
#include "endian.h"
#include "vhd_internal.h"

#define ZERO_CHUNK (1u << 20)
#define BAT_ALIGN  4096u

/* Writes zeros over [offset, offset + len) of the file. */
static int zero_range(struct vdisk_file *file, uint64_t offset, uint64_t len)
{
	const struct iovec *zero = vdisk_zero_iov(ZERO_CHUNK);
	if (!zero)
		return -ENOMEM;
	for (uint64_t done = 0; done < len;) {
		uint64_t n = len - done < ZERO_CHUNK ? len - done : ZERO_CHUNK;
		int ret = vdisk_file_pwrite(file, zero->iov_base, n, offset + done);
		if (ret < 0)
			return ret;
		done += n;
	}
	return 0;
}

/* The footer for the new size, or -ENOTSUP when readers would size it otherwise. */
static int new_footer(const struct vhd *vhd, uint64_t new_size, struct vhd_footer *f, char *err,
		      size_t err_size)
{
	if (new_size > VHD_MAX_SIZE) {
		snprintf(err, err_size,
			 "%" PRIu64 " bytes is beyond the VHD maximum of 2040 GiB (convert to VHDX "
			 "for larger disks)",
			 new_size);
		return -EFBIG;
	}
	*f = vhd->footer;
	f->current_size = new_size;
	/* "informational" by the specification, but libvhdi (vhdiinfo) reports it as the
	 * disk's size */
	f->original_size = new_size;
	vhd_geometry(new_size, &f->cylinders, &f->heads, &f->sectors);
	if (vhd_virtual_size(f) != new_size) {
		snprintf(err, err_size,
			 "the image's creator (\"%s\") makes readers size it by its CHS geometry, "
			 "which cannot express %" PRIu64 " bytes exactly",
			 vhd->footer.creator_app, new_size);
		return -ENOTSUP;
	}
	return 0;
}

/* Makes the new footer the one in memory. */
static void adopt_footer(struct vhd *vhd, const struct vhd_footer *f, const uint8_t *raw)
{
	vhd->footer = *f;
	memcpy(vhd->footer_raw, raw, VHD_FOOTER_SIZE);
	vhd->virtual_size = f->current_size;
}

/* ---- fixed ---- */

static int resize_fixed(struct vdisk *disk, const struct vhd_footer *f, char *err, size_t err_size)
{
	struct vhd *vhd = vhd_of(disk);
	struct vdisk_file *file = disk->file;
	uint64_t old_size = vhd->virtual_size, old_end = vhd->footer_offset + VHD_FOOTER_SIZE;
	uint64_t new_size = f->current_size;
	uint8_t raw[VHD_FOOTER_SIZE];
	vhd_footer_build(f, raw);

	int ret = new_size + VHD_FOOTER_SIZE > old_end
			  ? vdisk_file_reserve(file, old_end, new_size + VHD_FOOTER_SIZE - old_end)
			  : 0;
	if (ret < 0)
		return vdisk_error_errno(err, err_size, ret,
					 "cannot reserve space for the larger disk");
	ret = vdisk_file_pwrite_sync(file, raw, sizeof(raw), new_size);
	if (ret < 0)
		return vdisk_error_errno(err, err_size, ret, "cannot write the new footer");
	if (old_end > new_size + VHD_FOOTER_SIZE) {
		ret = vdisk_file_set_size(file, new_size + VHD_FOOTER_SIZE);
		if (ret == 0)
			ret = vdisk_file_sync(file);
		if (ret < 0)
			return vdisk_error_errno(err, err_size, ret, "cannot truncate the file");
	}
	/* What lay past the old disk (the old footer) is now disk space: it reads as zeros. */
	if (new_size > old_size) {
		uint64_t stale_end = old_end < new_size ? old_end : new_size;
		ret = zero_range(file, old_size, stale_end - old_size);
		if (ret == 0)
			ret = vdisk_file_sync(file);
		if (ret < 0)
			return vdisk_error_errno(err, err_size, ret, "cannot clear the old footer");
	}
	adopt_footer(vhd, f, raw);
	vhd->footer_offset = new_size;
	disk->size = new_size;
	return 0;
}

/* ---- dynamic and differencing: BAT ---- */

static int write_bat_entry(struct vdisk *disk, uint32_t block, uint32_t value)
{
	struct vhd *vhd = vhd_of(disk);
	uint8_t be[4];
	store_be32(be, value);
	int ret = vdisk_file_pwrite(disk->file, be, sizeof(be),
				    vhd->header.table_offset + (uint64_t)block * 4);
	if (ret == 0)
		vhd->bat[block] = value;
	return ret;
}

/* Frees the entries of blocks [from, to): their data leaves the disk. */
static int free_blocks(struct vdisk *disk, uint32_t from, uint32_t to)
{
	struct vhd *vhd = vhd_of(disk);
	bool changed = false;
	for (uint32_t b = from; b < to && b < vhd->bat_entries; b++) {
		if (vhd->bat[b] == VHD_BAT_UNUSED)
			continue;
		int ret = write_bat_entry(disk, b, VHD_BAT_UNUSED);
		if (ret < 0)
			return ret;
		changed = true;
	}
	return changed ? vdisk_file_sync(disk->file) : 0;
}

/* Where the metadata and the allocated blocks end. */
static uint64_t used_end(const struct vhd *vhd)
{
	uint64_t end = vhd->footer.data_offset + VHD_HEADER_SIZE;
	uint64_t bat_end = vhd->header.table_offset + (uint64_t)vhd->bat_entries * 4;
	if (bat_end > end)
		end = bat_end;
	for (int i = 0; vhd_is_diff(vhd) && i < VHD_LOCATORS; i++) {
		const struct vhd_locator *loc = &vhd->header.locators[i];
		/* data space: sectors below 512, bytes otherwise (see vhd_meta.c) */
		uint64_t len = loc->data_space < VHD_SECTOR ? (uint64_t)loc->data_space * VHD_SECTOR
							    : loc->data_space;
		if (loc->data_length > len)
			len = loc->data_length;
		if (loc->code != VHD_PLATFORM_NONE && loc->data_offset + len > end)
			end = loc->data_offset + len;
	}
	for (uint32_t b = 0; b < vhd->bat_entries; b++) {
		if (vhd->bat[b] == VHD_BAT_UNUSED)
			continue;
		uint64_t block_end = vhd_block_data_offset(vhd, vhd->bat[b]) + vhd->block_size;
		if (block_end > end)
			end = block_end;
	}
	return round_up(end, VHD_SECTOR);
}

/* Moves the footer down over space that no block uses any more, and truncates. */
static int trim_tail(struct vdisk *disk)
{
	struct vhd *vhd = vhd_of(disk);
	uint64_t to = used_end(vhd);
	if (disk->file->is_block_device || to >= vhd->footer_offset)
		return 0;
	int ret = vdisk_file_pwrite_sync(disk->file, vhd->footer_raw, VHD_FOOTER_SIZE, to);
	if (ret == 0)
		ret = vdisk_file_set_size(disk->file, to + VHD_FOOTER_SIZE);
	if (ret == 0)
		ret = vdisk_file_sync(disk->file);
	if (ret == 0)
		vhd->footer_offset = to;
	return ret;
}

/* A BAT for `entries` blocks at the end of the file: the old entries, the rest unused, a
 * footer (still of the old size) after it; then the header points to it. */
static int relocate_bat(struct vdisk *disk, uint32_t entries)
{
	struct vhd *vhd = vhd_of(disk);
	uint64_t offset = round_up(vhd->footer_offset, BAT_ALIGN);
	uint64_t bytes = round_up((uint64_t)entries * 4, BAT_ALIGN);
	entries = (uint32_t)(bytes / 4); /* the padding is capacity too */
	uint32_t *bat = malloc(bytes);
	uint8_t *raw = vdisk_alloc_aligned(bytes);
	uint8_t header[VHD_HEADER_SIZE];
	int ret = -ENOMEM;
	if (!bat || !raw)
		goto out;
	for (uint32_t i = 0; i < entries; i++) {
		bat[i] = i < vhd->bat_entries ? vhd->bat[i] : VHD_BAT_UNUSED;
		store_be32(raw + (size_t)i * 4, bat[i]);
	}
	ret = vdisk_file_reserve(disk->file, vhd->footer_offset,
				 offset + bytes + VHD_FOOTER_SIZE - vhd->footer_offset);
	if (ret == 0)
		ret = vdisk_file_pwrite(disk->file, raw, bytes, offset);
	if (ret == 0)
		ret = vdisk_file_pwrite_sync(disk->file, vhd->footer_raw, VHD_FOOTER_SIZE,
					     offset + bytes);
	if (ret < 0)
		goto out;
	vhd->footer_offset = offset + bytes; /* the old place is data space now */
	struct vhd_header h = vhd->header;
	h.table_offset = offset;
	h.max_table_entries = entries;
	vhd_header_build(&h, header);
	ret = vdisk_file_pwrite_sync(disk->file, header, sizeof(header), vhd->footer.data_offset);
	if (ret < 0)
		goto out;
	vhd->header.table_offset = offset;
	vhd->header.max_table_entries = entries;
	vhd->header.checksum = load_be32(header + VHD_H_CHECKSUM);
	free(vhd->bat);
	vhd->bat = bat;
	vhd->bat_entries = entries;
	bat = NULL;
out:
	free(bat);
	free(raw);
	return ret;
}

/* The part of the last block past the old end may hold data an earlier forced shrink left
 * there; it becomes disk space that must read as zeros. */
static int clear_old_tail(struct vdisk *disk, uint64_t old_size)
{
	struct vhd *vhd = vhd_of(disk);
	uint64_t in_block = old_size % vhd->block_size;
	uint32_t block = (uint32_t)(old_size / vhd->block_size);
	if (!in_block || vhd->bat[block] == VHD_BAT_UNUSED)
		return 0;
	uint64_t data = vhd_block_data_offset(vhd, vhd->bat[block]);
	int ret = zero_range(disk->file, data + in_block, vhd->block_size - in_block);
	return ret ? ret : vdisk_file_sync(disk->file);
}

/* End footer, flushed, then the copy at offset 0. */
static int write_footers(struct vdisk *disk, const uint8_t *raw)
{
	struct vhd *vhd = vhd_of(disk);
	int ret = vdisk_file_pwrite_sync(disk->file, raw, VHD_FOOTER_SIZE, vhd->footer_offset);
	return ret ? ret : vdisk_file_pwrite_sync(disk->file, raw, VHD_FOOTER_SIZE, 0);
}

/* Everything but the I/O path's state, which the caller rebuilds. */
static int change_sparse(struct vdisk *disk, const struct vhd_footer *f, char *err, size_t err_size)
{
	struct vhd *vhd = vhd_of(disk);
	uint64_t old_size = vhd->virtual_size, new_size = f->current_size;
	uint32_t old_blocks = vhd->blocks;
	uint32_t blocks = (uint32_t)((new_size + vhd->block_size - 1) / vhd->block_size);
	uint8_t raw[VHD_FOOTER_SIZE];
	vhd_footer_build(f, raw);

	/* Shrinking frees what falls off; growing frees stale entries another tool may have
	 * left past the old end, so that the new part of the disk reads as zeros. */
	int ret = free_blocks(disk, blocks < old_blocks ? blocks : old_blocks, vhd->bat_entries);
	if (ret == 0 && new_size < old_size)
		ret = trim_tail(disk);
	if (ret < 0)
		return vdisk_error_errno(err, err_size, ret,
					 "cannot free the blocks past the new end");
	if (new_size > old_size) {
		ret = clear_old_tail(disk, old_size);
		if (ret < 0)
			return vdisk_error_errno(err, err_size, ret,
						 "cannot clear the end of the last block");
	}
	if (blocks > vhd->bat_entries) {
		ret = relocate_bat(disk, blocks);
		if (ret < 0)
			return vdisk_error_errno(err, err_size, ret, "cannot write a larger BAT");
	}
	ret = write_footers(disk, raw);
	if (ret < 0)
		return vdisk_error_errno(err, err_size, ret, "cannot write the new footer");
	adopt_footer(vhd, f, raw);
	vhd->blocks = blocks;
	disk->size = new_size;
	return 0;
}

static int resize_sparse(struct vdisk *disk, const struct vhd_footer *f, char *err, size_t err_size)
{
	struct vhd *vhd = vhd_of(disk);
	int ret = vhd_writeback_sync(disk);
	if (ret < 0)
		return vdisk_error_errno(err, err_size, ret, "cannot write back the metadata");
	/* The I/O path's tables are sized by the BAT and it allocates after the footer: it
	 * starts over from what the change leaves, whether it succeeded or not. */
	vhd_io_free(vhd);
	ret = change_sparse(disk, f, err, err_size);
	int r = vhd_io_init(vhd);
	if (ret == 0 && r < 0)
		ret = vdisk_error_errno(err, err_size, r, "cannot set up the resized image");
	return ret;
}

int vhd_resize(struct vdisk *disk, uint64_t new_size, char *err, size_t err_size)
{
	struct vhd *vhd = vhd_of(disk);
	struct vhd_footer f;
	int ret = new_footer(vhd, new_size, &f, err, err_size);
	if (ret < 0)
		return ret;
	if (!vhd_is_sparse(vhd))
		return resize_fixed(disk, &f, err, err_size);
	return resize_sparse(disk, &f, err, err_size);
}
