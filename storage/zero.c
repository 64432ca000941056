/* Writing zeros: FALLOC_FL_ZERO_RANGE where the file system has it, and otherwise writes
 * from one shared, never-written zero buffer. */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <string.h>

#include "format.h"

/* An iovec for every length a zero write can need: they must outlive the writes. */
static uint8_t *zero_buf;
static struct iovec zero_sectors[VDISK_ZERO_MAX / 512]; /* [k]: (k + 1) * 512 bytes */
static struct iovec zero_bytes[512];                    /* [k]: k bytes */
static pthread_once_t zero_once = PTHREAD_ONCE_INIT;

static void zero_init(void)
{
	zero_buf = vdisk_alloc_aligned(VDISK_ZERO_MAX);
	if (!zero_buf)
		return;
	memset(zero_buf, 0, VDISK_ZERO_MAX);
	for (unsigned k = 0; k < VDISK_ZERO_MAX / 512; k++)
		zero_sectors[k] = (struct iovec){zero_buf, (size_t)(k + 1) * 512};
	for (unsigned k = 0; k < 512; k++)
		zero_bytes[k] = (struct iovec){zero_buf, k};
}

const struct iovec *vdisk_zero_iov(uint64_t len)
{
	pthread_once(&zero_once, zero_init);
	if (!zero_buf || len > VDISK_ZERO_MAX || (len >= 512 && len % 512))
		return NULL;
	return len < 512 ? &zero_bytes[len] : &zero_sectors[len / 512 - 1];
}

/* Splits [offset, offset + len) into pieces vdisk_zero_iov can describe. */
static void for_each_zero_piece(uint64_t offset, uint64_t len,
				void (*fn)(struct vdisk_req *, const struct iovec *, uint64_t, void *),
				struct vdisk_req *req, void *ctx)
{
	uint64_t end = offset + len;
	while (offset < end) {
		uint64_t n = end - offset;
		if (n >= 512)
			n = n < VDISK_ZERO_MAX ? n & ~511ULL : VDISK_ZERO_MAX;
		const struct iovec *iov = vdisk_zero_iov(n);
		if (!iov) {
			vdisk_req_fail(req, -ENOMEM);
			return;
		}
		fn(req, iov, offset, ctx);
		offset += n;
	}
}

static void write_file_piece(struct vdisk_req *req, const struct iovec *iov, uint64_t offset,
			     void *file)
{
	vdisk_req_file_io(req, ENGINE_WRITE, file, iov, 1, offset, 0, 0);
}

static void zero_range_done(struct engine_io *io, int result)
{
	struct vdisk_req *req = io->owner;
	if (result == -EOPNOTSUPP || result == -EINVAL) {
		/* this io still holds the request open while the fallback is issued */
		for_each_zero_piece(io->offset, io->length, write_file_piece, req, io->file);
		result = 0;
	}
	vdisk_req_io_put(req, io, result);
}

void vdisk_req_zero_file(struct vdisk_req *req, struct vdisk_file *file, uint64_t offset,
			 uint64_t len)
{
	if (file->is_block_device) {
		for_each_zero_piece(offset, len, write_file_piece, req, file);
		return;
	}
	struct engine_io *io = vdisk_req_io_get(req);
	if (!io) {
		vdisk_req_fail(req, -ENOMEM);
		return;
	}
	*io = (struct engine_io){
		.op = ENGINE_FALLOCATE,
		.file = file,
		.offset = offset,
		.length = len,
		.fallocate_mode = FALLOC_FL_ZERO_RANGE | FALLOC_FL_KEEP_SIZE,
		.done = zero_range_done,
	};
	vdisk_req_io_submit(req, io);
}

static void sub_write_done(void *opaque, int result)
{
	vdisk_req_end(opaque, result);
}

static void write_disk_piece(struct vdisk_req *req, const struct iovec *iov, uint64_t offset,
			     void *ctx)
{
	(void)ctx;
	int ret = vdisk_writev(req->disk, req->queue, iov, 1, offset, sub_write_done, req);
	if (ret < 0)
		vdisk_req_fail(req, ret);
	else
		vdisk_req_hold(req);
}

void vdisk_req_write_zeroes_via(struct vdisk_req *req, uint64_t offset, uint64_t len)
{
	for_each_zero_piece(offset, len, write_disk_piece, req, NULL);
}
