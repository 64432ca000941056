/* VHD driver: open/close glue, the read and write paths and block status. Metadata
 * changes (allocation, bitmaps, write-back) live in vhd_alloc.c; parsing, creation, info
 * and check in vhd_meta.c.
 *
 * Writes that need no metadata change (fixed images, allocated blocks of dynamic images,
 * sectors already present in a differencing image) go straight to the file, in parallel,
 * without a lock; the others go through vhd_alloc.c.
 *
 * Dynamic images are read as QEMU reads them: an allocated block's data is authoritative
 * (new blocks are zero-filled and their bitmaps all ones). Differencing images follow
 * their sector bitmaps: clear bits read from the parent.
 */
#include "vhd.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "endian.h"
#include "iov.h"
#include "vhd_internal.h"

/* ---- differencing bitmaps ---- */

/* The committed bitmap of an allocated block, loaded on first use. Loading reads one
 * bitmap synchronously, once per block for the life of the open image. */
const uint8_t *vhd_bitmap_get(struct vdisk *disk, uint32_t block, uint32_t sector)
{
	struct vhd_io *io = vhd_io_of(disk);
	uint8_t *bm = __atomic_load_n(&io->bitmaps[block], __ATOMIC_ACQUIRE);
	if (bm)
		return bm;
	struct vhd *vhd = vhd_of(disk);
	bm = vdisk_alloc_aligned(vhd->bitmap_size);
	if (!bm)
		return NULL;
	if (vdisk_file_pread(disk->file, bm, vhd->bitmap_size, (uint64_t)sector * VHD_SECTOR) < 0) {
		free(bm);
		return NULL;
	}
	pthread_mutex_lock(&io->lock);
	if (io->bitmaps[block]) {
		free(bm);
		bm = io->bitmaps[block];
	} else {
		__atomic_store_n(&io->bitmaps[block], bm, __ATOMIC_RELEASE);
	}
	pthread_mutex_unlock(&io->lock);
	return bm;
}

/* Length of the run of sectors from first (within a block) whose bits equal the first
 * one's, at most count sectors. */
static uint64_t bitmap_run(const uint8_t *bitmap, uint64_t first, uint64_t count, bool *set)
{
	*set = vhd_bit_is_set(bitmap, first);
	uint64_t n = 1;
	while (n < count && vhd_bit_is_set(bitmap, first + n) == *set)
		n++;
	return n;
}

/* ---- reads ---- */

/* Reads part of a differencing block, sector run by sector run. Unaligned edges belong
 * to the sector that holds them. */
static void read_diff_segment(struct vdisk_req *req, uint32_t sector, uint64_t skip,
			      uint64_t len, uint64_t voff)
{
	struct vhd *vhd = vhd_of(req->disk);
	uint32_t block = (uint32_t)(voff / vhd->block_size);
	const uint8_t *bm = vhd_bitmap_get(req->disk, block, sector);
	if (!bm) {
		vdisk_req_fail(req, -EIO);
		return;
	}
	uint64_t in_block = voff % vhd->block_size;
	while (len) {
		uint64_t first = in_block / VHD_SECTOR;
		uint64_t last = (in_block + len - 1) / VHD_SECTOR;
		bool set;
		uint64_t run = bitmap_run(bm, first, last - first + 1, &set);
		uint64_t run_end = (first + run) * VHD_SECTOR;
		uint64_t n = run_end - in_block < len ? run_end - in_block : len;
		if (set)
			vdisk_req_file_io_part(req, ENGINE_READ, req->disk->file, skip, n,
					       vhd_block_data_offset(vhd, sector) + in_block);
		else
			vdisk_req_read_backing_clipped(req, vhd->parent, skip, n, voff);
		skip += n;
		len -= n;
		voff += n;
		in_block += n;
	}
}

static void read_segment(struct vdisk_req *req, uint64_t skip, uint64_t len, uint64_t voff)
{
	struct vhd *vhd = vhd_of(req->disk);
	uint32_t block = (uint32_t)(voff / vhd->block_size);
	uint32_t sector = vhd_bat_get(vhd, block);
	if (sector == VHD_BAT_UNUSED) {
		if (vhd_is_diff(vhd))
			vdisk_req_read_backing_clipped(req, vhd->parent, skip, len, voff);
		else
			iov_memset(req->iov, req->iovcnt, skip, 0, len);
		return;
	}
	if (vhd_is_diff(vhd)) {
		read_diff_segment(req, sector, skip, len, voff);
		return;
	}
	uint64_t off = vhd_block_data_offset(vhd, sector) + voff % vhd->block_size;
	if (skip == 0 && len == req->length) /* the whole request: no slicing */
		vdisk_req_file_io(req, ENGINE_READ, req->disk->file, req->iov, req->iovcnt, off, 0,
				  0);
	else
		vdisk_req_file_io_part(req, ENGINE_READ, req->disk->file, skip, len, off);
}

/* Calls fn for each piece of the request that lies inside one block. */
static void vhd_readv(struct vdisk_req *req)
{
	if (!vhd_is_sparse(vhd_of(req->disk))) {
		vdisk_req_file_io(req, ENGINE_READ, req->disk->file, req->iov, req->iovcnt,
				  req->offset, 0, 0);
		return;
	}
	vdisk_req_for_each_block(req, vhd_of(req->disk)->block_size, read_segment);
}

/* ---- writes ---- */

/* Whether every sector the segment touches is already present in the block. */
static bool segment_present(struct vdisk *disk, uint32_t block, uint32_t sector, uint64_t voff,
			    uint64_t len)
{
	struct vhd *vhd = vhd_of(disk);
	if (!vhd_is_diff(vhd))
		return true;
	const uint8_t *bm = vhd_bitmap_get(disk, block, sector);
	if (!bm)
		return false;
	uint64_t in_block = voff % vhd->block_size;
	for (uint64_t s = in_block / VHD_SECTOR; s <= (in_block + len - 1) / VHD_SECTOR; s++)
		if (!vhd_bit_is_set(bm, s))
			return false;
	return true;
}

static void write_segment(struct vdisk_req *req, uint64_t skip, uint64_t len, uint64_t voff)
{
	struct vhd *vhd = vhd_of(req->disk);
	uint32_t block = (uint32_t)(voff / vhd->block_size);
	uint32_t sector = vhd_bat_get(vhd, block);
	if (sector != VHD_BAT_UNUSED && segment_present(req->disk, block, sector, voff, len)) {
		uint64_t off = vhd_block_data_offset(vhd, sector) + voff % vhd->block_size;
		if (skip == 0 && len == req->length)
			vdisk_req_file_io(req, ENGINE_WRITE, req->disk->file, req->iov,
					  req->iovcnt, off, 0, 0);
		else
			vdisk_req_file_io_part(req, ENGINE_WRITE, req->disk->file, skip, len, off);
		return;
	}
	vhd_alloc_add(req, block, skip, len, voff);
}

static void vhd_writev(struct vdisk_req *req)
{
	if (!vhd_is_sparse(vhd_of(req->disk))) {
		vdisk_req_file_io(req, ENGINE_WRITE, req->disk->file, req->iov, req->iovcnt,
				  req->offset, 0, 0);
		return;
	}
	vdisk_req_for_each_block(req, vhd_of(req->disk)->block_size, write_segment);
	vhd_alloc_kick(req->disk, req->queue);
}

/* ---- flush, discard, write zeroes ---- */

static void vhd_flush(struct vdisk_req *req)
{
	if (vhd_is_sparse(vhd_of(req->disk)) && !req->disk->read_only)
		vhd_flush_req(req);
	else
		vdisk_req_file_io(req, ENGINE_FDATASYNC, req->disk->file, NULL, 0, 0, 0, 0);
}

/* VHD has no way to give space back in place: discard keeps the data (compaction
 * reclaims blocks later). */
static void vhd_discard(struct vdisk_req *req)
{
	(void)req;
}

static void zero_segment(struct vdisk_req *req, uint64_t skip, uint64_t len, uint64_t voff)
{
	(void)skip;
	struct vhd *vhd = vhd_of(req->disk);
	uint32_t block = (uint32_t)(voff / vhd->block_size);
	if (vhd_bat_get(vhd, block) == VHD_BAT_UNUSED && !vhd_is_diff(vhd))
		return; /* reads as zeros already */
	vdisk_req_write_zeroes_via(req, voff, len);
}

static void vhd_write_zeroes(struct vdisk_req *req)
{
	if (!vhd_is_sparse(vhd_of(req->disk))) {
		vdisk_req_zero_file(req, req->disk->file, req->offset, req->length);
		return;
	}
	vdisk_req_for_each_block(req, vhd_of(req->disk)->block_size, zero_segment);
}

/* ---- block status ---- */

/* Status of the run starting at pos inside one block: flags and length (<= n). */
static int block_run(struct vdisk *disk, uint64_t pos, uint64_t n, unsigned *flags,
		     uint64_t *run)
{
	struct vhd *vhd = vhd_of(disk);
	uint32_t block = (uint32_t)(pos / vhd->block_size);
	uint32_t sector = vhd_bat_get(vhd, block);
	*run = n;
	if (sector == VHD_BAT_UNUSED) {
		*flags = vhd_is_diff(vhd) ? 0 : VDISK_EXTENT_ZERO;
		return 0;
	}
	*flags = VDISK_EXTENT_DATA;
	if (!vhd_is_diff(vhd))
		return 0;
	const uint8_t *bm = vhd_bitmap_get(disk, block, sector);
	if (!bm)
		return -EIO;
	uint64_t in_block = pos % vhd->block_size;
	uint64_t first = in_block / VHD_SECTOR;
	bool set;
	uint64_t sectors = bitmap_run(bm, first, (in_block + n - 1) / VHD_SECTOR - first + 1, &set);
	uint64_t bytes = (first + sectors) * VHD_SECTOR - in_block;
	*run = bytes < n ? bytes : n;
	*flags = set ? VDISK_EXTENT_DATA : 0;
	return 0;
}

static int vhd_block_status(struct vdisk *disk, uint64_t offset, uint64_t length,
			    struct vdisk_extent *ext)
{
	struct vhd *vhd = vhd_of(disk);
	if (!vhd_is_sparse(vhd)) {
		*ext = (struct vdisk_extent){offset, length, VDISK_EXTENT_DATA};
		return 0;
	}
	return vdisk_block_status_by_runs(disk, offset, length, vhd->block_size, block_run, ext);
}

/* ---- open, close ---- */

static int open_parent(struct vdisk *disk, struct vhd *vhd, char *err, size_t err_size)
{
	char why[256];
	int ret = vdisk_open_backing(disk, vhd->parent_path, &vhd->parent, why, sizeof(why));
	if (ret < 0) {
		snprintf(err, err_size, "cannot open parent '%s': %s", vhd->parent_path, why);
		return ret;
	}
	if (strcmp(vdisk_format_name(vhd->parent), "vhd") != 0) {
		snprintf(err, err_size, "parent '%s' is a %s image; a differencing VHD needs a VHD parent",
			 vhd->parent_path, vdisk_format_name(vhd->parent));
		return -EINVAL;
	}
	const struct vhd *pv = vhd->parent->priv;
	if (memcmp(pv->footer.unique_id, vhd->header.parent_id, 16) != 0 &&
	    !disk->opts.allow_parent_mismatch) {
		char ws[GUID_STR_LEN + 1], hs[GUID_STR_LEN + 1];
		vhd_uuid_format(vhd->header.parent_id, ws);
		vhd_uuid_format(pv->footer.unique_id, hs);
		snprintf(err, err_size,
			 "parent '%s' has identity %s but this image expects %s (the parent was "
			 "replaced or modified; force with --allow-parent-mismatch)",
			 vhd->parent_path, hs, ws);
		return -EINVAL;
	}
	return 0;
}

static void vhd_close(struct vdisk *disk)
{
	struct vhd *vhd = disk->priv;
	if (!vhd)
		return;
	/* Completed writes keep their metadata even when nobody flushed. */
	if (!disk->read_only)
		vhd_writeback_sync(disk);
	vdisk_close(vhd->parent);
	vhd_io_free(vhd);
	vhd_unload(vhd);
	free(vhd);
	disk->priv = NULL;
}

/* A crash between growing the file and writing the new footer leaves no footer at the
 * end: a read-write open puts the copy from offset 0 back there, as a log replay would. */
static int restore_end_footer(struct vdisk *disk, struct vhd *vhd, char *err, size_t err_size)
{
	uint8_t copy[VHD_FOOTER_SIZE];
	int ret = vdisk_file_pread(disk->file, copy, sizeof(copy), 0);
	if (ret == 0)
		ret = vdisk_file_pwrite(disk->file, copy, sizeof(copy), vhd->footer_offset);
	if (ret == 0)
		ret = vdisk_file_sync(disk->file);
	if (ret < 0) {
		snprintf(err, err_size, "cannot restore the footer at the end of the file: %s",
			 strerror(-ret));
		return ret;
	}
	memcpy(vhd->footer_raw, copy, sizeof(copy));
	vhd->footer_from_copy = false;
	return 0;
}

static int vhd_open(struct vdisk *disk, char *err, size_t err_size)
{
	struct vhd *vhd = calloc(1, sizeof(*vhd));
	if (!vhd)
		return -ENOMEM;
	disk->priv = vhd;
	vhd->load_for_repair = disk->opts.for_repair;
	vhd->parent_optional = disk->opts.no_backing;
	int ret = vhd_load(disk, vhd, err, err_size);
	if (ret == 0 && vhd_is_sparse(vhd))
		ret = vhd_io_init(vhd);
	if (ret == 0 && vhd->footer_from_copy && !disk->read_only)
		ret = restore_end_footer(disk, vhd, err, err_size);
	if (ret == 0 && vhd_is_diff(vhd) && !disk->opts.no_backing)
		ret = open_parent(disk, vhd, err, err_size);
	if (ret < 0) {
		vhd_close(disk);
		return ret;
	}
	disk->size = vhd->virtual_size;
	/* Bitmaps mark whole sectors: a partial sector must first be read from the parent. */
	if (vhd_is_diff(vhd))
		disk->write_granularity = VHD_SECTOR;
	return 0;
}

/* Check may move the footer and blocks: the allocator and cached bitmaps start over. */
static int vhd_check_disk(struct vdisk *disk, unsigned flags, struct vdisk_check_result *result)
{
	struct vhd *vhd = vhd_of(disk);
	if (!disk->read_only) {
		int ret = vhd_writeback_sync(disk); /* check reads the metadata on disk */
		if (ret < 0)
			return ret;
	}
	int ret = vhd_check(disk, flags, result);
	if ((flags & VDISK_CHECK_REPAIR) && vhd_is_sparse(vhd)) {
		vhd_io_free(vhd);
		int r = vhd_io_init(vhd);
		if (ret == 0)
			ret = r;
	}
	return ret;
}

static const struct vdisk_format vhd_format = {
	.name = "vhd",
	.probe = vhd_probe,
	.open = vhd_open,
	.close = vhd_close,
	.readv = vhd_readv,
	.writev = vhd_writev,
	.flush = vhd_flush,
	.discard = vhd_discard,
	.write_zeroes = vhd_write_zeroes,
	.block_status = vhd_block_status,
	.get_info = vhd_get_info,
	.check = vhd_check_disk,
	.create = vhd_create,
	.resize = vhd_resize,
	.compact = vhd_compact,
	.set_parent = vhd_set_parent,
};

int vhd_register(void)
{
	return vdisk_format_register(&vhd_format);
}
