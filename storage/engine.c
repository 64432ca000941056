/* The engine-independent half of the I/O engines: preparing operations for O_DIRECT and
 * finishing them (short transfers, -EAGAIN, end of file, bounce buffers). */
#include "engine.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static const struct engine_ops *engine_for_kind(enum vdisk_engine_kind kind)
{
	switch (kind) {
	case VDISK_ENGINE_URING:
		return &engine_uring_ops;
	case VDISK_ENGINE_AIO:
		return &engine_aio_ops;
	case VDISK_ENGINE_SYNC:
		return &engine_sync_ops;
	case VDISK_ENGINE_AUTO:
		break;
	}
	return NULL;
}

static int engine_try(const struct engine_ops *ops, unsigned depth, struct engine **out, char *why,
		      size_t why_size)
{
	struct engine *e = calloc(1, sizeof(*e));
	if (!e)
		return -ENOMEM;
	e->ops = ops;
	e->wake_fd = -1;
	int ret = ops->init(e, depth, why, why_size);
	if (ret < 0) {
		free(e);
		return ret;
	}
	*out = e;
	return 0;
}

static const struct engine_ops *override_ops;

void engine_set_override(const struct engine_ops *ops)
{
	__atomic_store_n(&override_ops, ops, __ATOMIC_RELEASE);
}

int engine_create(enum vdisk_engine_kind kind, unsigned depth, struct engine **out, char *why,
		  size_t why_size)
{
	if (why_size)
		why[0] = 0;
	const struct engine_ops *forced = __atomic_load_n(&override_ops, __ATOMIC_ACQUIRE);
	if (forced)
		return engine_try(forced, depth, out, why, why_size);
	if (kind != VDISK_ENGINE_AUTO)
		return engine_try(engine_for_kind(kind), depth, out, why, why_size);

	static const struct engine_ops *const order[] = {&engine_uring_ops, &engine_aio_ops,
							 &engine_sync_ops};
	char reasons[2][160] = {{0}};
	int ret = -ENODEV;
	for (unsigned i = 0; i < 3; i++) {
		char reason[160] = "";
		ret = engine_try(order[i], depth, out, reason, sizeof(reason));
		if (ret == 0) {
			if (i == 1)
				snprintf(why, why_size, "io_uring unavailable (%s); using libaio",
					 reasons[0]);
			else if (i == 2)
				snprintf(why, why_size,
					 "io_uring unavailable (%s), libaio unavailable (%s); using "
					 "synchronous I/O",
					 reasons[0], reasons[1]);
			return 0;
		}
		if (i < 2)
			snprintf(reasons[i], sizeof(reasons[i]), "%s", reason);
	}
	return ret;
}

void engine_destroy(struct engine *e)
{
	if (!e)
		return;
	e->ops->fini(e);
	free(e);
}

static uint64_t iov_total(const struct iovec *iov, int iovcnt)
{
	uint64_t total = 0;
	for (int i = 0; i < iovcnt; i++)
		total += iov[i].iov_len;
	return total;
}

static bool iov_mem_aligned(const struct vdisk_file *file, const struct iovec *iov, int iovcnt)
{
	for (int i = 0; i < iovcnt; i++)
		if (!vdisk_file_mem_aligned(file, iov[i].iov_base, iov[i].iov_len))
			return false;
	return true;
}

static void copy_to_iov(const struct iovec *iov, int iovcnt, const uint8_t *src, uint64_t len)
{
	for (int i = 0; i < iovcnt && len; i++) {
		size_t n = iov[i].iov_len < len ? iov[i].iov_len : (size_t)len;
		memcpy(iov[i].iov_base, src, n);
		src += n;
		len -= n;
	}
}

static void copy_from_iov(uint8_t *dst, const struct iovec *iov, int iovcnt)
{
	for (int i = 0; i < iovcnt; i++) {
		memcpy(dst, iov[i].iov_base, iov[i].iov_len);
		dst += iov[i].iov_len;
	}
}

/* Picks the descriptor and, for O_DIRECT with unaligned memory, a bounce buffer. Ranges
 * that O_DIRECT cannot express at all go through the buffered descriptor; the kernel keeps
 * the page cache coherent with direct I/O on the same file. */
static int prepare_transfer(struct engine_io *io)
{
	struct vdisk_file *file = io->file;
	io->fd = file->fd;
	io->buffered = false;
	io->prepare_error = 0;
	io->total = iov_total(io->iov, io->iovcnt);
	io->transferred = 0;
	io->bounce = NULL;
	io->rest = NULL;
	if (!file->direct)
		return 0;
	if (!vdisk_file_range_aligned(file, io->offset, io->total)) {
		io->fd = file->fd_buffered;
		io->buffered = true;
		return 0;
	}
	if (iov_mem_aligned(file, io->iov, io->iovcnt))
		return 0;
	io->bounce = vdisk_alloc_aligned(io->total);
	if (!io->bounce)
		return -ENOMEM;
	if (io->op == ENGINE_WRITE)
		copy_from_iov(io->bounce, io->iov, io->iovcnt);
	return 0;
}

const struct iovec *engine_io_iov(const struct engine_io *io, int *iovcnt)
{
	if (io->rest) {
		*iovcnt = io->rest_cnt;
		return io->rest;
	}
	if (io->bounce || io->transferred) {
		*iovcnt = 1;
		return &io->one;
	}
	*iovcnt = io->iovcnt;
	return io->iov;
}

uint64_t engine_io_offset(const struct engine_io *io)
{
	return io->offset + io->transferred;
}

/* Points the engine view at what is left after io->transferred bytes. */
static int advance_view(struct engine_io *io)
{
	if (io->bounce) {
		io->one.iov_base = (uint8_t *)io->bounce + io->transferred;
		io->one.iov_len = io->total - io->transferred;
		return 0;
	}
	uint64_t skip = io->transferred;
	int i = 0;
	while (i < io->iovcnt && skip >= io->iov[i].iov_len)
		skip -= io->iov[i++].iov_len;
	int left = io->iovcnt - i;
	if (left == 1) {
		free(io->rest);
		io->rest = NULL;
		io->one.iov_base = (uint8_t *)io->iov[i].iov_base + skip;
		io->one.iov_len = io->iov[i].iov_len - skip;
		return 0;
	}
	struct iovec *rest = io->rest ? io->rest : malloc(sizeof(*rest) * io->iovcnt);
	if (!rest)
		return -ENOMEM;
	memcpy(rest, io->iov + i, sizeof(*rest) * left);
	rest[0].iov_base = (uint8_t *)rest[0].iov_base + skip;
	rest[0].iov_len -= skip;
	io->rest = rest;
	io->rest_cnt = left;
	return 0;
}

static void zero_fill_rest(struct engine_io *io)
{
	if (io->bounce) {
		memset((uint8_t *)io->bounce + io->transferred, 0, io->total - io->transferred);
		return;
	}
	uint64_t skip = io->transferred;
	for (int i = 0; i < io->iovcnt; i++) {
		size_t len = io->iov[i].iov_len;
		if (skip >= len) {
			skip -= len;
			continue;
		}
		memset((uint8_t *)io->iov[i].iov_base + skip, 0, len - skip);
		skip = 0;
	}
}

static void finish(struct engine *e, struct engine_io *io, int result)
{
	if (io->bounce) {
		if (result == 0 && io->op == ENGINE_READ)
			copy_to_iov(io->iov, io->iovcnt, io->bounce, io->total);
		free(io->bounce);
		io->bounce = NULL;
	}
	free(io->rest);
	io->rest = NULL;
	e->inflight--;
	io->done(io, result);
}

static void requeue(struct engine *e, struct engine_io *io)
{
	io->next = NULL;
	if (e->retry_tail)
		e->retry_tail->next = io;
	else
		e->retry_head = io;
	e->retry_tail = io;
}

bool engine_complete(struct engine *e, struct engine_io *io, int64_t result)
{
	if (result == -EAGAIN || result == -EINTR) {
		requeue(e, io);
		return false;
	}
	if (io->op != ENGINE_READ && io->op != ENGINE_WRITE) {
		finish(e, io, result < 0 ? (int)result : 0);
		return true;
	}
	if (result < 0) {
		finish(e, io, (int)result);
		return true;
	}
	io->transferred += (uint64_t)result;
	if (io->transferred >= io->total) {
		finish(e, io, 0);
		return true;
	}
	if (result == 0) {
		/* End of file: reads see zeros there, a write that moves nothing failed. */
		if (io->op == ENGINE_WRITE) {
			finish(e, io, -EIO);
			return true;
		}
		zero_fill_rest(io);
		finish(e, io, 0);
		return true;
	}
	int ret = advance_view(io);
	if (ret < 0) {
		finish(e, io, ret);
		return true;
	}
	requeue(e, io);
	return false;
}

void engine_submit(struct engine *e, struct engine_io *io)
{
	e->inflight++;
	if (io->op == ENGINE_READ || io->op == ENGINE_WRITE) {
		int ret = prepare_transfer(io);
		if (ret < 0) {
			/* Deliver the error from the next poll, never from inside submit. */
			io->prepare_error = ret;
			requeue(e, io);
			return;
		}
		if (io->bounce)
			advance_view(io);
	} else {
		io->fd = io->file->fd;
		io->prepare_error = 0;
		io->bounce = NULL;
		io->rest = NULL;
	}
	e->ops->queue(e, io);
}

/* Operations waiting for another attempt go back to the backend (or fail, when their
 * preparation did). */
static int resubmit_retries(struct engine *e)
{
	int finished = 0;
	struct engine_io *io = e->retry_head;
	e->retry_head = e->retry_tail = NULL;
	while (io) {
		struct engine_io *next = io->next;
		if (io->prepare_error) {
			finish(e, io, io->prepare_error);
			finished++;
		} else {
			e->ops->queue(e, io);
		}
		io = next;
	}
	return finished;
}

int engine_kick(struct engine *e)
{
	resubmit_retries(e);
	return e->ops->kick(e);
}

int engine_poll(struct engine *e, unsigned min)
{
	int total = resubmit_retries(e);
	while (true) {
		/* reap submits what is queued in the same system call that waits */
		int ret;
		unsigned want = (unsigned)total >= min ? 0 : min - (unsigned)total;
		if (want > e->inflight)
			want = e->inflight;
		ret = e->ops->reap(e, want);
		if (ret < 0)
			return ret;
		total += ret;
		total += resubmit_retries(e);
		if (e->woken) {
			e->woken = false;
			return total;
		}
		if ((unsigned)total >= min || e->inflight == 0)
			return total;
		if (ret == 0 && want == 0)
			return total;
	}
}

int engine_event_fd(struct engine *e)
{
	return e->ops->event_fd(e);
}

char engine_wake_marker;

void engine_set_wake_fd(struct engine *e, int fd)
{
	e->wake_fd = fd;
	if (e->ops->watch)
		e->ops->watch(e, fd);
}

void engine_drain_wake(int fd)
{
	uint64_t v;
	if (read(fd, &v, sizeof(v)) < 0) {
		/* already drained */
	}
}
