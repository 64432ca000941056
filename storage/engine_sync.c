/* Synchronous backend: operations run one after another from reap, on the queue's
 * thread. It needs nothing from the kernel beyond pread/pwrite and is the last fallback. */
#include "engine.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <sys/eventfd.h>
#include <unistd.h>

struct sync_engine {
	int event_fd;
	struct engine_io *head, *tail;
};

static int sync_init(struct engine *e, unsigned depth, char *why, size_t why_size)
{
	(void)depth;
	(void)why;
	(void)why_size;
	struct sync_engine *s = calloc(1, sizeof(*s));
	if (!s)
		return -ENOMEM;
	s->event_fd = -1;
	e->priv = s;
	return 0;
}

static void sync_fini(struct engine *e)
{
	struct sync_engine *s = e->priv;
	if (s->event_fd >= 0)
		close(s->event_fd);
	free(s);
}

static void sync_queue(struct engine *e, struct engine_io *io)
{
	struct sync_engine *s = e->priv;
	io->next = NULL;
	if (s->tail)
		s->tail->next = io;
	else
		s->head = io;
	s->tail = io;
	if (s->event_fd >= 0) {
		uint64_t one = 1;
		if (write(s->event_fd, &one, sizeof(one)) < 0) {
			/* the counter is saturated: already readable */
		}
	}
}

static int sync_kick(struct engine *e)
{
	(void)e;
	return 0;
}

static int64_t run(struct engine_io *io)
{
	ssize_t ret;
	int iovcnt;
	const struct iovec *iov;
	switch (io->op) {
	case ENGINE_READ:
		iov = engine_io_iov(io, &iovcnt);
		ret = preadv(io->fd, iov, iovcnt, (off_t)engine_io_offset(io));
		break;
	case ENGINE_WRITE:
		iov = engine_io_iov(io, &iovcnt);
		ret = pwritev(io->fd, iov, iovcnt, (off_t)engine_io_offset(io));
		break;
	case ENGINE_FDATASYNC:
		ret = fdatasync(io->fd);
		break;
	case ENGINE_FALLOCATE:
		ret = fallocate(io->fd, io->fallocate_mode, (off_t)io->offset, (off_t)io->length);
		break;
	default:
		return -EINVAL;
	}
	return ret < 0 ? -errno : ret;
}

/* Runs everything queued so far; what completions requeue waits for the next call. */
static int sync_reap(struct engine *e, unsigned min)
{
	(void)min;
	struct sync_engine *s = e->priv;
	if (s->event_fd >= 0) {
		uint64_t v;
		if (read(s->event_fd, &v, sizeof(v)) < 0) {
			/* nothing pending on a non-blocking eventfd */
		}
	}
	struct engine_io *io = s->head;
	s->head = s->tail = NULL;
	int finished = 0;
	while (io) {
		struct engine_io *next = io->next;
		finished += engine_complete(e, io, run(io));
		io = next;
	}
	return finished;
}

static int sync_event_fd(struct engine *e)
{
	struct sync_engine *s = e->priv;
	if (s->event_fd < 0) {
		s->event_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
		if (s->event_fd < 0)
			return -errno;
		if (s->head) {
			uint64_t one = 1;
			if (write(s->event_fd, &one, sizeof(one)) < 0)
				return -errno;
		}
	}
	return s->event_fd;
}

const struct engine_ops engine_sync_ops = {
	.name = "sync",
	.init = sync_init,
	.fini = sync_fini,
	.queue = sync_queue,
	.kick = sync_kick,
	.reap = sync_reap,
	.event_fd = sync_event_fd,
};
