/* Raw images: regular files and block devices, byte for byte. Block status comes from
 * SEEK_DATA/SEEK_HOLE, discard punches holes, write zeroes uses fallocate when it can. */
#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include "format.h"

static int raw_probe(const struct vdisk_probe *probe)
{
	(void)probe;
	return 1; /* anything is a raw image, at the lowest confidence */
}

static int raw_open(struct vdisk *disk, char *err, size_t err_size)
{
	(void)err;
	(void)err_size;
	disk->size = disk->file->size;
	disk->logical_sector_size = disk->file->logical_sector_size;
	disk->physical_sector_size = disk->file->logical_sector_size;
	return 0;
}

static void raw_close(struct vdisk *disk)
{
	(void)disk;
}

static void raw_readv(struct vdisk_req *req)
{
	vdisk_req_file_io(req, ENGINE_READ, req->disk->file, req->iov, req->iovcnt, req->offset, 0,
			  0);
}

static void raw_writev(struct vdisk_req *req)
{
	vdisk_req_file_io(req, ENGINE_WRITE, req->disk->file, req->iov, req->iovcnt, req->offset, 0,
			  0);
}

static void raw_flush(struct vdisk_req *req)
{
	vdisk_req_file_io(req, ENGINE_FDATASYNC, req->disk->file, NULL, 0, 0, 0, 0);
}

static void raw_discard(struct vdisk_req *req)
{
	vdisk_req_file_io(req, ENGINE_FALLOCATE, req->disk->file, NULL, 0, req->offset, req->length,
			  FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE);
}

static void raw_write_zeroes(struct vdisk_req *req)
{
	vdisk_req_zero_file(req, req->disk->file, req->offset, req->length);
}

static int raw_block_status(struct vdisk *disk, uint64_t offset, uint64_t length,
			    struct vdisk_extent *ext)
{
	ext->offset = offset;
	ext->length = length;
	ext->flags = VDISK_EXTENT_DATA;
	if (disk->file->is_block_device)
		return 0;
	int fd = disk->file->fd_buffered;
	off_t data = lseek(fd, (off_t)offset, SEEK_DATA);
	if (data < 0) {
		if (errno == ENXIO) { /* no data from here to the end */
			ext->flags = VDISK_EXTENT_ZERO;
			return 0;
		}
		return 0; /* no hole support: everything is data */
	}
	if ((uint64_t)data > offset) {
		ext->flags = VDISK_EXTENT_ZERO;
		if ((uint64_t)data - offset < length)
			ext->length = (uint64_t)data - offset;
		return 0;
	}
	off_t hole = lseek(fd, (off_t)offset, SEEK_HOLE);
	if (hole > (off_t)offset && (uint64_t)hole - offset < length)
		ext->length = (uint64_t)hole - offset;
	return 0;
}

static int raw_get_info(struct vdisk *disk, struct vdisk_info *info)
{
	info->details = json_pack("{s:b}", "block_device", disk->file->is_block_device);
	return info->details ? 0 : -ENOMEM;
}

/* A raw image's size is its file's: a regular file is truncated or extended (sparse). */
static int raw_resize(struct vdisk *disk, uint64_t new_size, char *err, size_t err_size)
{
	if (disk->file->is_block_device) {
		snprintf(err, err_size, "a block device cannot be resized by this tool");
		return -ENOTSUP;
	}
	int ret = vdisk_file_set_size(disk->file, new_size);
	if (ret == 0)
		ret = vdisk_file_sync(disk->file);
	if (ret < 0) {
		snprintf(err, err_size, "cannot set the file size: %s", strerror(-ret));
		return ret;
	}
	disk->size = new_size;
	return 0;
}

static int raw_create(const char *path, const struct vdisk_create_options *opts, char *err,
		      size_t err_size)
{
	if (opts->size == 0 || opts->size % 512) {
		snprintf(err, err_size, "size must be a positive multiple of 512 bytes");
		return -EINVAL;
	}
	if (opts->type && strcmp(opts->type, "fixed")) {
		snprintf(err, err_size, "raw images have no type '%s' (only fixed)", opts->type);
		return -EINVAL;
	}
	if (opts->parent || opts->block_size) {
		snprintf(err, err_size, "raw images take no parent and no block size");
		return -EINVAL;
	}
	int fd;
	bool created;
	int ret = vdisk_create_begin(path, opts->overwrite, &fd, &created, err, err_size);
	if (ret < 0)
		return ret;
	if (ftruncate(fd, (off_t)opts->size) != 0)
		ret = -errno;
	else if (!opts->sparse && fallocate(fd, 0, 0, (off_t)opts->size) != 0 &&
		 errno != EOPNOTSUPP)
		ret = -errno;
	ret = vdisk_create_end(path, fd, created, ret);
	if (ret < 0)
		snprintf(err, err_size, "cannot allocate %llu bytes: %s",
			 (unsigned long long)opts->size, strerror(-ret));
	return ret;
}

const struct vdisk_format vdisk_format_raw = {
	.name = "raw",
	.probe = raw_probe,
	.open = raw_open,
	.close = raw_close,
	.readv = raw_readv,
	.writev = raw_writev,
	.flush = raw_flush,
	.discard = raw_discard,
	.write_zeroes = raw_write_zeroes,
	.block_status = raw_block_status,
	.get_info = raw_get_info,
	.create = raw_create,
	.resize = raw_resize,
	.compact = vdisk_raw_compact,
};
