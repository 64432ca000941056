/* Helpers for formats that map the virtual disk in fixed-size blocks. */
#include <errno.h>

#include "format.h"

void vdisk_req_for_each_block(struct vdisk_req *req, uint64_t block_size,
			      void (*fn)(struct vdisk_req *req, uint64_t skip, uint64_t len,
					 uint64_t offset))
{
	uint64_t skip = 0;
	while (skip < req->length) {
		uint64_t offset = req->offset + skip;
		uint64_t room = block_size - offset % block_size;
		uint64_t len = req->length - skip < room ? req->length - skip : room;
		fn(req, skip, len, offset);
		skip += len;
	}
}

void vdisk_req_read_backing_clipped(struct vdisk_req *req, struct vdisk *backing, uint64_t skip,
				    uint64_t len, uint64_t offset)
{
	if (!backing) { /* opened with no_backing */
		vdisk_req_fail(req, -ENODATA);
		return;
	}
	uint64_t size = vdisk_size(backing);
	uint64_t inside = offset >= size ? 0 : size - offset < len ? size - offset : len;
	if (inside)
		vdisk_req_backing_read(req, backing, skip, inside, offset);
	if (inside < len)
		iov_memset(req->iov, req->iovcnt, skip + inside, 0, len - inside);
}

int vdisk_block_status_by_runs(struct vdisk *disk, uint64_t offset, uint64_t length,
			       uint64_t block_size,
			       int (*run_fn)(struct vdisk *disk, uint64_t pos, uint64_t n,
					     unsigned *flags, uint64_t *run),
			       struct vdisk_extent *ext)
{
	ext->offset = offset;
	uint64_t pos = offset, end = offset + length;
	while (pos < end) {
		uint64_t room = block_size - pos % block_size;
		uint64_t n = end - pos < room ? end - pos : room;
		unsigned flags;
		uint64_t run;
		int ret = run_fn(disk, pos, n, &flags, &run);
		if (ret < 0)
			return ret;
		if (pos == offset)
			ext->flags = flags;
		else if (flags != ext->flags)
			break;
		pos += run;
	}
	ext->length = pos - offset;
	return 0;
}
