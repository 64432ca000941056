/* The synchronous convenience layer: one request on queue 0, run to completion. */
#include <errno.h>

#include "vdisk.h"

struct sync_wait {
	bool done;
	int result;
};

static void sync_done(void *opaque, int result)
{
	struct sync_wait *w = opaque;
	w->done = true;
	w->result = result;
}

static int wait_for(struct vdisk *disk, struct sync_wait *w, int submitted)
{
	if (submitted < 0)
		return submitted;
	struct vdisk_queue *q = vdisk_queue(disk, 0);
	while (!w->done) {
		int ret = vdisk_queue_poll(q, 1);
		if (ret < 0)
			return ret;
	}
	return w->result;
}

int vdisk_preadv(struct vdisk *disk, const struct iovec *iov, int iovcnt, uint64_t offset)
{
	struct sync_wait w = {0};
	return wait_for(disk, &w,
			vdisk_readv(disk, vdisk_queue(disk, 0), iov, iovcnt, offset, sync_done, &w));
}

int vdisk_pwritev(struct vdisk *disk, const struct iovec *iov, int iovcnt, uint64_t offset)
{
	struct sync_wait w = {0};
	return wait_for(disk, &w,
			vdisk_writev(disk, vdisk_queue(disk, 0), iov, iovcnt, offset, sync_done, &w));
}

int vdisk_pread(struct vdisk *disk, void *buf, uint64_t length, uint64_t offset)
{
	struct iovec iov = {buf, (size_t)length};
	return vdisk_preadv(disk, &iov, 1, offset);
}

int vdisk_pwrite(struct vdisk *disk, const void *buf, uint64_t length, uint64_t offset)
{
	struct iovec iov = {(void *)buf, (size_t)length};
	return vdisk_pwritev(disk, &iov, 1, offset);
}

int vdisk_flush_sync(struct vdisk *disk)
{
	struct sync_wait w = {0};
	return wait_for(disk, &w, vdisk_flush(disk, vdisk_queue(disk, 0), sync_done, &w));
}

int vdisk_discard_sync(struct vdisk *disk, uint64_t offset, uint64_t length)
{
	struct sync_wait w = {0};
	return wait_for(disk, &w,
			vdisk_discard(disk, vdisk_queue(disk, 0), offset, length, sync_done, &w));
}

int vdisk_write_zeroes_sync(struct vdisk *disk, uint64_t offset, uint64_t length)
{
	struct sync_wait w = {0};
	return wait_for(disk, &w,
			vdisk_write_zeroes(disk, vdisk_queue(disk, 0), offset, length, sync_done,
					   &w));
}
