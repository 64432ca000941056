/* io_uring backend: one ring per queue, submissions batched until kick or poll. */
#include "engine.h"

#include <errno.h>
#include <liburing.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>

#define REAP_BATCH 64

struct uring {
	struct io_uring ring;
	int event_fd;
	struct engine_io *pending_head, *pending_tail; /* waiting for a free SQE */
	bool wake_unarmed;
};

static int uring_init(struct engine *e, unsigned depth, char *why, size_t why_size)
{
	struct uring *u = calloc(1, sizeof(*u));
	if (!u)
		return -ENOMEM;
	u->event_fd = -1;
	unsigned entries = depth < 8 ? 8 : depth > 4096 ? 4096 : depth;
	struct io_uring_params p = {.flags = IORING_SETUP_COOP_TASKRUN};
	int ret = io_uring_queue_init_params(entries, &u->ring, &p);
	if (ret == -EINVAL) { /* kernels before 5.19 lack COOP_TASKRUN */
		memset(&p, 0, sizeof(p));
		ret = io_uring_queue_init_params(entries, &u->ring, &p);
	}
	if (ret < 0) {
		snprintf(why, why_size, "io_uring_setup: %s", strerror(-ret));
		free(u);
		return ret;
	}
	if (!(p.features & IORING_FEAT_NODROP)) {
		/* Without NODROP a burst beyond the CQ size would lose completions. */
		snprintf(why, why_size, "kernel io_uring lacks IORING_FEAT_NODROP (too old)");
		io_uring_queue_exit(&u->ring);
		free(u);
		return -ENOTSUP;
	}
	e->priv = u;
	return 0;
}

static void uring_fini(struct engine *e)
{
	struct uring *u = e->priv;
	io_uring_queue_exit(&u->ring);
	if (u->event_fd >= 0)
		close(u->event_fd);
	free(u);
}

static void prep_sqe(struct io_uring_sqe *sqe, struct engine_io *io)
{
	int iovcnt;
	const struct iovec *iov;
	switch (io->op) {
	case ENGINE_READ:
		iov = engine_io_iov(io, &iovcnt);
		if (iovcnt == 1)
			io_uring_prep_read(sqe, io->fd, iov->iov_base, (unsigned)iov->iov_len,
					   engine_io_offset(io));
		else
			io_uring_prep_readv(sqe, io->fd, iov, (unsigned)iovcnt, engine_io_offset(io));
		break;
	case ENGINE_WRITE:
		iov = engine_io_iov(io, &iovcnt);
		if (iovcnt == 1)
			io_uring_prep_write(sqe, io->fd, iov->iov_base, (unsigned)iov->iov_len,
					    engine_io_offset(io));
		else
			io_uring_prep_writev(sqe, io->fd, iov, (unsigned)iovcnt,
					     engine_io_offset(io));
		break;
	case ENGINE_FDATASYNC:
		io_uring_prep_fsync(sqe, io->fd, IORING_FSYNC_DATASYNC);
		break;
	case ENGINE_FALLOCATE:
		io_uring_prep_fallocate(sqe, io->fd, io->fallocate_mode, io->offset, io->length);
		break;
	}
	io_uring_sqe_set_data(sqe, io);
}

/* A one-shot poll on the wake fd, armed again after each wake-up. */
static void arm_wake(struct engine *e)
{
	struct uring *u = e->priv;
	struct io_uring_sqe *sqe = io_uring_get_sqe(&u->ring);
	if (!sqe) {
		io_uring_submit(&u->ring);
		sqe = io_uring_get_sqe(&u->ring);
	}
	if (!sqe) {
		u->wake_unarmed = true; /* retried at the next reap */
		return;
	}
	io_uring_prep_poll_add(sqe, e->wake_fd, POLLIN);
	io_uring_sqe_set_data(sqe, &engine_wake_marker);
	u->wake_unarmed = false;
}

static void uring_watch(struct engine *e, int fd)
{
	(void)fd;
	arm_wake(e);
}

static bool try_queue(struct uring *u, struct engine_io *io)
{
	struct io_uring_sqe *sqe = io_uring_get_sqe(&u->ring);
	if (!sqe) {
		io_uring_submit(&u->ring);
		sqe = io_uring_get_sqe(&u->ring);
		if (!sqe)
			return false;
	}
	prep_sqe(sqe, io);
	return true;
}

static void uring_queue(struct engine *e, struct engine_io *io)
{
	struct uring *u = e->priv;
	if (!u->pending_head && try_queue(u, io))
		return;
	io->next = NULL;
	if (u->pending_tail)
		u->pending_tail->next = io;
	else
		u->pending_head = io;
	u->pending_tail = io;
}

static void drain_pending(struct uring *u)
{
	while (u->pending_head && try_queue(u, u->pending_head)) {
		u->pending_head = u->pending_head->next;
		if (!u->pending_head)
			u->pending_tail = NULL;
	}
}

static int uring_kick(struct engine *e)
{
	struct uring *u = e->priv;
	drain_pending(u);
	if (!io_uring_sq_ready(&u->ring))
		return 0;
	int ret = io_uring_submit(&u->ring);
	return ret == -EAGAIN || ret == -EBUSY || ret == -EINTR ? 0 : ret < 0 ? ret : 0;
}

static int uring_reap(struct engine *e, unsigned min)
{
	struct uring *u = e->priv;
	drain_pending(u);
	if (u->wake_unarmed)
		arm_wake(e);
	int ret;
	if (min)
		ret = io_uring_submit_and_wait(&u->ring, min);
	else
		ret = io_uring_sq_ready(&u->ring) ? io_uring_submit(&u->ring) : 0;
	if (ret < 0 && ret != -EINTR && ret != -EAGAIN && ret != -EBUSY && ret != -ETIME)
		return ret;
	if (u->event_fd >= 0) {
		uint64_t v;
		if (read(u->event_fd, &v, sizeof(v)) < 0) {
			/* nothing pending on a non-blocking eventfd */
		}
	}

	int finished = 0;
	for (;;) {
		struct io_uring_cqe *cqes[REAP_BATCH];
		unsigned n = io_uring_peek_batch_cqe(&u->ring, cqes, REAP_BATCH);
		if (!n)
			break;
		/* Copy out before advancing: completion handlers may submit again. */
		struct {
			struct engine_io *io;
			int res;
		} done[REAP_BATCH];
		for (unsigned i = 0; i < n; i++) {
			done[i].io = io_uring_cqe_get_data(cqes[i]);
			done[i].res = cqes[i]->res;
		}
		io_uring_cq_advance(&u->ring, n);
		for (unsigned i = 0; i < n; i++) {
			if ((void *)done[i].io == &engine_wake_marker) {
				e->woken = true;
				engine_drain_wake(e->wake_fd);
				arm_wake(e);
				continue;
			}
			finished += engine_complete(e, done[i].io, done[i].res);
		}
	}
	return finished;
}

static int uring_event_fd(struct engine *e)
{
	struct uring *u = e->priv;
	if (u->event_fd >= 0)
		return u->event_fd;
	int fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
	if (fd < 0)
		return -errno;
	int ret = io_uring_register_eventfd(&u->ring, fd);
	if (ret < 0) {
		close(fd);
		return ret;
	}
	u->event_fd = fd;
	return fd;
}

const struct engine_ops engine_uring_ops = {
	.name = "io_uring",
	.init = uring_init,
	.fini = uring_fini,
	.queue = uring_queue,
	.kick = uring_kick,
	.reap = uring_reap,
	.event_fd = uring_event_fd,
	.watch = uring_watch,
};
