/* libaio backend, the fallback when io_uring is unavailable. Linux AIO has no fallocate:
 * those operations run synchronously at the next kick and complete from the next reap. */
#include "engine.h"

#include <errno.h>
#include <fcntl.h>
#include <libaio.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>

#define SUBMIT_BATCH 64
#define REAP_BATCH 64

_Static_assert(sizeof(struct iocb) <= sizeof(((struct engine_io *)0)->backend.aio_iocb),
	       "struct iocb must fit in engine_io");

struct aio {
	io_context_t ctx;
	int event_fd;
	unsigned kernel_inflight;
	struct iocb wake_iocb; /* one-shot poll on the engine's wake fd */
	bool wake_armed;
	struct engine_io *pending_head, *pending_tail; /* not yet given to the kernel */
	struct engine_io *done_head, *done_tail;       /* finished without the kernel */
};

static int aio_init(struct engine *e, unsigned depth, char *why, size_t why_size)
{
	struct aio *a = calloc(1, sizeof(*a));
	if (!a)
		return -ENOMEM;
	a->event_fd = -1;
	int ret = io_setup(depth < 8 ? 8 : depth > 4096 ? 4096 : (int)depth, &a->ctx);
	if (ret < 0) {
		snprintf(why, why_size, "io_setup: %s", strerror(-ret));
		free(a);
		return ret;
	}
	e->priv = a;
	return 0;
}

static void aio_fini(struct engine *e)
{
	struct aio *a = e->priv;
	io_destroy(a->ctx);
	if (a->event_fd >= 0)
		close(a->event_fd);
	free(a);
}

static void list_add(struct engine_io **head, struct engine_io **tail, struct engine_io *io)
{
	io->next = NULL;
	if (*tail)
		(*tail)->next = io;
	else
		*head = io;
	*tail = io;
}

static struct iocb *prep_iocb(struct aio *a, struct engine_io *io)
{
	struct iocb *cb = (struct iocb *)io->backend.aio_iocb;
	int iovcnt;
	const struct iovec *iov;
	switch (io->op) {
	case ENGINE_READ:
		iov = engine_io_iov(io, &iovcnt);
		io_prep_preadv(cb, io->fd, iov, iovcnt, (long long)engine_io_offset(io));
		break;
	case ENGINE_WRITE:
		iov = engine_io_iov(io, &iovcnt);
		io_prep_pwritev(cb, io->fd, iov, iovcnt, (long long)engine_io_offset(io));
		break;
	case ENGINE_FDATASYNC:
		io_prep_fdsync(cb, io->fd);
		break;
	case ENGINE_FALLOCATE:
		return NULL;
	}
	cb->data = io;
	if (a->event_fd >= 0)
		io_set_eventfd(cb, a->event_fd);
	return cb;
}

static void signal_event(struct aio *a)
{
	if (a->event_fd >= 0) {
		uint64_t one = 1;
		if (write(a->event_fd, &one, sizeof(one)) < 0) {
			/* the counter is saturated: already readable */
		}
	}
}

/* fallocate has no AIO opcode: run it now, complete it from the next reap. */
static void run_fallocate(struct aio *a, struct engine_io *io)
{
	int ret = fallocate(io->fd, io->fallocate_mode, (off_t)io->offset, (off_t)io->length);
	io->local_result = ret < 0 ? -errno : 0;
	list_add(&a->done_head, &a->done_tail, io);
	signal_event(a);
}

static void aio_queue(struct engine *e, struct engine_io *io)
{
	struct aio *a = e->priv;
	list_add(&a->pending_head, &a->pending_tail, io);
}

static int aio_kick(struct engine *e)
{
	struct aio *a = e->priv;
	while (a->pending_head) {
		struct iocb *batch[SUBMIT_BATCH];
		struct engine_io *io = a->pending_head;
		int n = 0;
		while (io && n < SUBMIT_BATCH) {
			struct engine_io *next = io->next;
			if (io->op == ENGINE_FALLOCATE) {
				if (n)
					break; /* keep submission order */
				a->pending_head = next;
				run_fallocate(a, io);
			} else {
				batch[n++] = prep_iocb(a, io);
			}
			io = next;
		}
		if (!n) {
			if (!a->pending_head)
				a->pending_tail = NULL;
			continue;
		}
		int ret = io_submit(a->ctx, n, batch);
		if (ret == -EAGAIN || ret == 0)
			return 0; /* the kernel is full: retry after the next reap */
		if (ret < 0) {
			/* The first iocb was refused: fail it alone, keep the rest. */
			struct engine_io *bad = a->pending_head;
			a->pending_head = bad->next;
			bad->local_result = ret;
			list_add(&a->done_head, &a->done_tail, bad);
			continue;
		}
		for (int i = 0; i < ret; i++)
			a->pending_head = a->pending_head->next;
		a->kernel_inflight += (unsigned)ret;
		if (!a->pending_head)
			a->pending_tail = NULL;
	}
	a->pending_tail = NULL;
	return 0;
}

static void arm_wake(struct engine *e)
{
	struct aio *a = e->priv;
	struct iocb *cb = &a->wake_iocb;
	io_prep_poll(cb, e->wake_fd, POLLIN);
	cb->data = &engine_wake_marker;
	a->wake_armed = io_submit(a->ctx, 1, &cb) == 1;
}

static int reap_local(struct engine *e)
{
	struct aio *a = e->priv;
	int finished = 0;
	struct engine_io *io = a->done_head;
	a->done_head = a->done_tail = NULL;
	while (io) {
		struct engine_io *next = io->next;
		finished += engine_complete(e, io, io->local_result);
		io = next;
	}
	return finished;
}

static int aio_reap(struct engine *e, unsigned min)
{
	struct aio *a = e->priv;
	if (a->event_fd >= 0) {
		uint64_t v;
		if (read(a->event_fd, &v, sizeof(v)) < 0) {
			/* nothing pending on a non-blocking eventfd */
		}
	}
	int ret = aio_kick(e);
	if (ret < 0)
		return ret;
	int finished = reap_local(e);
	unsigned want = (unsigned)finished >= min ? 0 : min - (unsigned)finished;
	if (want > a->kernel_inflight)
		want = a->kernel_inflight;
	do {
		struct io_event events[REAP_BATCH];
		long n = io_getevents(a->ctx, want > REAP_BATCH ? REAP_BATCH : want, REAP_BATCH,
				      events, NULL);
		if (n == -EINTR)
			continue;
		if (n < 0)
			return (int)n;
		for (long i = 0; i < n; i++) {
			struct engine_io *io = events[i].data;
			if ((void *)io == &engine_wake_marker) {
				e->woken = true;
				engine_drain_wake(e->wake_fd);
				arm_wake(e);
				continue;
			}
			a->kernel_inflight--;
			finished += engine_complete(e, io, (int64_t)(long)events[i].res);
		}
		if (e->woken)
			break;
		want = (unsigned)n >= want ? 0 : want - (unsigned)n;
		if (n < REAP_BATCH && !want)
			break;
	} while (a->kernel_inflight);
	return finished;
}

static void aio_watch(struct engine *e, int fd)
{
	(void)fd;
	arm_wake(e);
}

static int aio_event_fd(struct engine *e)
{
	struct aio *a = e->priv;
	if (a->event_fd < 0) {
		a->event_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
		if (a->event_fd < 0)
			return -errno;
	}
	return a->event_fd;
}

const struct engine_ops engine_aio_ops = {
	.name = "libaio",
	.init = aio_init,
	.fini = aio_fini,
	.queue = aio_queue,
	.kick = aio_kick,
	.reap = aio_reap,
	.event_fd = aio_event_fd,
	.watch = aio_watch,
};
