/* The block layer core: opening and probing, queues, request checks and dispatch to the
 * format drivers, request completion. */
#include "vdisk.h"

#include <errno.h>
#include <inttypes.h>
#include <jansson.h>
#include <limits.h>
#include <poll.h>
#include <stdarg.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/stat.h>
#include <unistd.h>

#include "format.h"
#include "iov.h"

#define DEFAULT_QUEUE_DEPTH 128
#define MAX_QUEUES	    256
#define MAX_QUEUE_DEPTH	    65536
#define MAX_FORMATS	    16

/* A file operation beyond a request's embedded one, or a read from a backing image;
 * kept on per-queue free lists. */
struct io_slot {
	struct engine_io io;
	struct vdisk_req *req;
	struct iovec iov[IOV_INLINE]; /* a slice of the request's buffer */
	struct iovec *heap_iov;	      /* when the slice needs more entries */
	struct io_slot *next;
};

/* Work handed to a queue's thread by vdisk_queue_post. */
struct posted {
	void (*fn)(void *arg);
	void *arg;
	struct posted *next;
};

struct vdisk_queue {
	struct vdisk *disk;
	struct engine *engine;
	unsigned inflight; /* requests accepted and not yet completed */
	unsigned long long completed;
	bool in_poll;
	int event_fd;
	struct vdisk_req *free_reqs;
	struct io_slot *free_ios;
	struct vdisk_req *deferred_head, *deferred_tail;
	/* Cross-thread posts: the only fields other threads touch. */
	pthread_mutex_t post_lock;
	struct posted *posted_head, *posted_tail;
	int wake_fd; /* eventfd: posts wake a poll blocked in the engine or on it */
};

/* ---- format registry ---- */

static const struct vdisk_format *formats[MAX_FORMATS] = { &vdisk_format_raw };
static unsigned nformats = 1;

int vdisk_format_register(const struct vdisk_format *format)
{
	for (unsigned i = 0; i < nformats; i++)
		if (formats[i] == format || !strcmp(formats[i]->name, format->name))
			return formats[i] == format ? 0 : -EEXIST;
	if (nformats == MAX_FORMATS)
		return -ENOSPC;
	formats[nformats++] = format;
	return 0;
}

const struct vdisk_format *vdisk_format_find(const char *name)
{
	for (unsigned i = 0; i < nformats; i++)
		if (!strcmp(formats[i]->name, name))
			return formats[i];
	return NULL;
}

const struct vdisk_format *vdisk_format_at(unsigned index)
{
	return index < nformats ? formats[index] : NULL;
}

static void format_names(char *out, size_t size)
{
	size_t used = 0;
	out[0] = 0;
	for (unsigned i = 0; i < nformats && used < size; i++)
		used += (size_t)snprintf(out + used, size - used, "%s%s", i ? ", " : "",
					 formats[i]->name);
}

/* ---- requests ---- */

static void signal_event(struct vdisk_queue *q)
{
	if (q->event_fd >= 0) {
		uint64_t one = 1;
		if (write(q->event_fd, &one, sizeof(one)) < 0) {
			/* saturated counter: already readable */
		}
	}
}

static void run_completion(struct vdisk_req *req)
{
	struct vdisk_queue *q = req->queue;
	vdisk_cb cb = req->cb;
	void *opaque = req->opaque;
	int result = req->result;
	/* Discard is a hint: a file system that cannot punch holes keeps the data. */
	if (req->op == VDISK_OP_DISCARD && result == -EOPNOTSUPP)
		result = 0;
	req->next = q->free_reqs;
	q->free_reqs = req;
	q->inflight--;
	q->completed++;
	cb(opaque, result);
}

static void req_finish(struct vdisk_req *req)
{
	struct vdisk_queue *q = req->queue;
	if (q->in_poll && !req->submitting) {
		run_completion(req);
		return;
	}
	/* Never call back from inside a submission (or a kick): defer to the next poll. */
	req->next = NULL;
	if (q->deferred_tail)
		q->deferred_tail->next = req;
	else
		q->deferred_head = req;
	q->deferred_tail = req;
	signal_event(q);
}

void vdisk_req_hold(struct vdisk_req *req)
{
	req->pending++;
}

void vdisk_req_end(struct vdisk_req *req, int result)
{
	if (result < 0 && !req->result)
		req->result = result;
	if (--req->pending == 0)
		req_finish(req);
}

static void file_io_done(struct engine_io *io, int result);

static struct io_slot *slot_get(struct vdisk_req *req)
{
	struct vdisk_queue *q = req->queue;
	struct io_slot *slot = q->free_ios;
	if (slot)
		q->free_ios = slot->next;
	else if (!(slot = calloc(1, sizeof(*slot))))
		return NULL;
	slot->req = req;
	slot->heap_iov = NULL;
	return slot;
}

static void slot_put(struct vdisk_queue *q, struct io_slot *slot)
{
	free(slot->heap_iov);
	slot->heap_iov = NULL;
	slot->next = q->free_ios;
	q->free_ios = slot;
}

/* Points slot at bytes [skip, skip + len) of the request's buffer. Returns the number of
 * iovec entries or -errno. */
static int slot_slice(struct io_slot *slot, uint64_t skip, uint64_t len, struct iovec **iov)
{
	struct vdisk_req *req = slot->req;
	int n = iov_slice(req->iov, req->iovcnt, skip, len, slot->iov, IOV_INLINE);
	*iov = slot->iov;
	if (n == -E2BIG) {
		n = iov_slice_alloc(req->iov, req->iovcnt, skip, len, &slot->heap_iov);
		*iov = slot->heap_iov;
	}
	return n;
}

struct engine_io *vdisk_req_io_get(struct vdisk_req *req)
{
	if (!req->io_busy) {
		req->io_busy = true;
		return &req->io;
	}
	struct io_slot *slot = slot_get(req);
	return slot ? &slot->io : NULL;
}

void vdisk_req_io_submit(struct vdisk_req *req, struct engine_io *io)
{
	req->pending++;
	io->owner = req;
	engine_submit(req->queue->engine, io);
}

void vdisk_req_io_put(struct vdisk_req *req, struct engine_io *io, int result)
{
	if (io == &req->io)
		req->io_busy = false;
	else
		slot_put(req->queue, (struct io_slot *)((char *)io - offsetof(struct io_slot, io)));
	vdisk_req_end(req, result);
}

void vdisk_req_set_error(struct vdisk_req *req, int error)
{
	if (error < 0 && !req->result)
		req->result = error;
}

void vdisk_req_fail(struct vdisk_req *req, int error)
{
	vdisk_req_hold(req);
	vdisk_req_end(req, error);
}

void vdisk_req_file_io_part(struct vdisk_req *req, enum engine_op op, struct vdisk_file *file,
			    uint64_t skip, uint64_t len, uint64_t file_offset)
{
	struct io_slot *slot = slot_get(req);
	if (!slot) {
		vdisk_req_fail(req, -ENOMEM);
		return;
	}
	struct iovec *iov;
	int n = slot_slice(slot, skip, len, &iov);
	if (n < 0) {
		slot_put(req->queue, slot);
		vdisk_req_fail(req, n);
		return;
	}
	slot->io = (struct engine_io){ .op = op,
				       .file = file,
				       .iov = iov,
				       .iovcnt = n,
				       .offset = file_offset,
				       .done = file_io_done };
	vdisk_req_io_submit(req, &slot->io);
}

static void backing_read_done(void *opaque, int result)
{
	struct io_slot *slot = opaque;
	struct vdisk_req *req = slot->req;
	slot_put(req->queue, slot);
	vdisk_req_end(req, result);
}

void vdisk_req_backing_read(struct vdisk_req *req, struct vdisk *backing, uint64_t skip,
			    uint64_t len, uint64_t offset)
{
	if (!backing) { /* opened with no_backing */
		vdisk_req_fail(req, -ENODATA);
		return;
	}
	struct io_slot *slot = slot_get(req);
	if (!slot) {
		vdisk_req_fail(req, -ENOMEM);
		return;
	}
	struct iovec *iov;
	int n = slot_slice(slot, skip, len, &iov);
	int ret = n < 0 ? n
			: vdisk_readv(backing, req->queue, iov, n, offset, backing_read_done, slot);
	if (ret < 0) {
		slot_put(req->queue, slot);
		vdisk_req_fail(req, ret);
		return;
	}
	vdisk_req_hold(req);
}

struct engine *vdisk_queue_engine(struct vdisk_queue *q)
{
	return q->engine;
}

static void file_io_done(struct engine_io *io, int result)
{
	vdisk_req_io_put(io->owner, io, result);
}

void vdisk_req_file_io(struct vdisk_req *req, enum engine_op op, struct vdisk_file *file,
		       const struct iovec *iov, int iovcnt, uint64_t offset, uint64_t length,
		       int fallocate_mode)
{
	struct engine_io *io = vdisk_req_io_get(req);
	if (!io) {
		if (!req->result)
			req->result = -ENOMEM;
		return;
	}
	io->op = op;
	io->file = file;
	io->iov = iov;
	io->iovcnt = iovcnt;
	io->offset = offset;
	io->length = length;
	io->fallocate_mode = fallocate_mode;
	io->done = file_io_done;
	vdisk_req_io_submit(req, io);
}

static struct vdisk_req *req_get(struct vdisk_queue *q)
{
	struct vdisk_req *req = q->free_reqs;
	if (req) {
		q->free_reqs = req->next;
		return req;
	}
	return malloc(sizeof(*req));
}

static uint64_t iov_length(const struct iovec *iov, int iovcnt, bool *overflow)
{
	uint64_t total = 0;
	*overflow = false;
	for (int i = 0; i < iovcnt; i++) {
		if (iov[i].iov_len > UINT64_MAX - total)
			*overflow = true;
		total += iov[i].iov_len;
	}
	return total;
}

static int check_range(const struct vdisk *disk, uint64_t offset, uint64_t length)
{
	if (offset > disk->size || length > disk->size - offset)
		return -EINVAL;
	return 0;
}

static int submit(struct vdisk *disk, struct vdisk_queue *q, enum vdisk_op op,
		  const struct iovec *iov, int iovcnt, uint64_t offset, uint64_t length,
		  vdisk_cb cb, void *opaque)
{
	if (!q || q->disk != disk->top || !cb)
		return -EINVAL;
	if (op != VDISK_OP_READ && op != VDISK_OP_FLUSH && disk->read_only)
		return -EROFS;
	if (op != VDISK_OP_FLUSH && check_range(disk, offset, length) < 0)
		return -EINVAL;
	if (op == VDISK_OP_DISCARD && disk->opts.discard_zeroes)
		op = VDISK_OP_WRITE_ZEROES;
	struct vdisk_req *req = req_get(q);
	if (!req)
		return -ENOMEM;
	*req = (struct vdisk_req){
		.disk = disk,
		.queue = q,
		.op = op,
		.iov = iov,
		.iovcnt = iovcnt,
		.offset = offset,
		.length = length,
		.cb = cb,
		.opaque = opaque,
		.pending = 1,
		.submitting = true,
	};
	q->inflight++;
	const struct vdisk_format *f = disk->format;
	if (length == 0 && op != VDISK_OP_FLUSH)
		; /* nothing to move: complete from the next poll */
	else if (op == VDISK_OP_READ)
		f->readv(req);
	else if (op == VDISK_OP_WRITE)
		f->writev(req);
	else if (op == VDISK_OP_FLUSH)
		f->flush(req);
	else if (op == VDISK_OP_DISCARD)
		f->discard(req);
	else
		f->write_zeroes(req);
	/* Drop the reference held across the driver call while still submitting: a request
	 * that is already finished (zero length, an error) is deferred to the next poll, also
	 * when this submission comes from a callback inside vdisk_queue_poll(). */
	vdisk_req_end(req, 0);
	req->submitting = false;
	return 0;
}

/* ---- read-modify-write for drivers with a write granularity ---- */

/* An unaligned write: the partial units at its edges are read through the disk itself
 * (so a differencing image reads them from its parent), merged with the caller's data in
 * a bounce buffer, and written back as one aligned write. Two of them that share a unit
 * would each write back the other's old bytes, so they run one after the other. */
struct rmw {
	struct vdisk *disk;
	struct vdisk_queue *queue;
	const struct iovec *iov;
	int iovcnt;
	uint64_t offset, length; /* the caller's write */
	uint64_t start, end;	 /* the aligned range */
	uint8_t *buf;
	struct iovec biov;
	struct iovec edge[2]; /* the head and tail reads */
	unsigned pending;
	int result;
	vdisk_cb cb;
	void *opaque;
	struct rmw *next;    /* disk->rmw_active list */
	struct rmw *waiters; /* started when this one ends */
};

static void rmw_start(void *arg);

/* Ends r: reports result, then starts the writes that waited for its units. */
static void rmw_end(struct rmw *r, int result)
{
	struct vdisk *disk = r->disk;
	pthread_mutex_lock(&disk->rmw_lock);
	for (struct rmw **p = &disk->rmw_active; *p; p = &(*p)->next) {
		if (*p == r) {
			*p = r->next;
			break;
		}
	}
	struct rmw *w = r->waiters;
	pthread_mutex_unlock(&disk->rmw_lock);
	while (w) {
		struct rmw *next = w->next;
		if (w->queue == r->queue || vdisk_queue_post(w->queue, rmw_start, w) < 0)
			rmw_start(w);
		w = next;
	}
	vdisk_cb cb = r->cb;
	void *arg = r->opaque;
	struct vdisk_queue *q = r->queue;
	free(r->buf);
	free(r);
	q->inflight--;
	q->completed++;
	cb(arg, result);
}

static void rmw_written(void *opaque, int result)
{
	rmw_end(opaque, result);
}

static void rmw_edge_read(void *opaque, int result)
{
	struct rmw *r = opaque;
	if (result < 0 && !r->result)
		r->result = result;
	if (--r->pending)
		return;
	int ret = r->result;
	if (ret == 0) {
		iov_to_buf(r->iov, r->iovcnt, 0, r->buf + (r->offset - r->start), r->length);
		r->biov = (struct iovec){ r->buf, r->end - r->start };
		ret = submit(r->disk, r->queue, VDISK_OP_WRITE, &r->biov, 1, r->start,
			     r->end - r->start, rmw_written, r);
	}
	if (ret < 0)
		rmw_end(r, ret);
}

static int rmw_read_unit(struct rmw *r, struct iovec *edge, uint64_t unit_start)
{
	uint32_t unit = r->disk->write_granularity;
	uint64_t len = unit_start + unit <= r->disk->size ? unit : r->disk->size - unit_start;
	*edge = (struct iovec){ r->buf + (unit_start - r->start), (size_t)len };
	r->pending++;
	int ret = submit(r->disk, r->queue, VDISK_OP_READ, edge, 1, unit_start, len, rmw_edge_read,
			 r);
	if (ret < 0) {
		r->pending--;
		if (!r->result)
			r->result = ret;
	}
	return ret;
}

/* Reads the edges of r, unless a running read-modify-write shares a unit with it: then r
 * waits for that one to end. Runs on r's queue thread. */
static void rmw_start(void *arg)
{
	struct rmw *r = arg;
	struct vdisk *disk = r->disk;
	pthread_mutex_lock(&disk->rmw_lock);
	for (struct rmw *a = disk->rmw_active; a; a = a->next) {
		if (r->start < a->end && a->start < r->end) {
			r->next = a->waiters;
			a->waiters = r;
			pthread_mutex_unlock(&disk->rmw_lock);
			return;
		}
	}
	r->next = disk->rmw_active;
	disk->rmw_active = r;
	pthread_mutex_unlock(&disk->rmw_lock);

	uint32_t unit = disk->write_granularity;
	uint64_t head = r->start, tail = (r->offset + r->length - 1) / unit * unit;
	r->pending = 1; /* held while the edge reads are issued */
	if (r->offset != head)
		rmw_read_unit(r, &r->edge[0], head);
	if ((r->offset + r->length) % unit && (tail != head || r->offset == head))
		rmw_read_unit(r, &r->edge[1], tail);
	/* Drop the hold. With no read in flight (both refused) this ends r now: that can
	 * only happen on a queue that is already polling or from a post. */
	rmw_edge_read(r, 0);
}

static int submit_rmw(struct vdisk *disk, struct vdisk_queue *q, const struct iovec *iov,
		      int iovcnt, uint64_t offset, uint64_t length, vdisk_cb cb, void *opaque)
{
	uint32_t unit = disk->write_granularity;
	struct rmw *r = calloc(1, sizeof(*r));
	if (!r)
		return -ENOMEM;
	*r = (struct rmw){ .disk = disk,
			   .queue = q,
			   .iov = iov,
			   .iovcnt = iovcnt,
			   .offset = offset,
			   .length = length,
			   .cb = cb,
			   .opaque = opaque };
	r->start = offset / unit * unit;
	r->end = (offset + length + unit - 1) / unit * unit;
	if (r->end > disk->size)
		r->end = disk->size;
	r->buf = vdisk_alloc_aligned(r->end - r->start);
	if (!r->buf) {
		free(r);
		return -ENOMEM;
	}
	/* The completion must not run inside this call: start from the queue's next poll. */
	int ret = vdisk_queue_post(q, rmw_start, r);
	if (ret < 0) {
		free(r->buf);
		free(r);
		return ret;
	}
	q->inflight++;
	return 0;
}

static int submit_iov(struct vdisk *disk, struct vdisk_queue *q, enum vdisk_op op,
		      const struct iovec *iov, int iovcnt, uint64_t offset, vdisk_cb cb,
		      void *opaque)
{
	if (iovcnt < 0 || iovcnt > IOV_MAX || (iovcnt && !iov))
		return -EINVAL;
	bool overflow;
	uint64_t length = iov_length(iov, iovcnt, &overflow);
	if (overflow)
		return -EINVAL;
	uint32_t unit = disk->write_granularity;
	if (op == VDISK_OP_WRITE && unit > 1 && length && ((offset | length) % unit) &&
	    !disk->read_only && q && q->disk == disk->top && cb &&
	    check_range(disk, offset, length) == 0)
		return submit_rmw(disk, q, iov, iovcnt, offset, length, cb, opaque);
	return submit(disk, q, op, iov, iovcnt, offset, length, cb, opaque);
}

int vdisk_readv(struct vdisk *disk, struct vdisk_queue *q, const struct iovec *iov, int iovcnt,
		uint64_t offset, vdisk_cb cb, void *opaque)
{
	return submit_iov(disk, q, VDISK_OP_READ, iov, iovcnt, offset, cb, opaque);
}

int vdisk_writev(struct vdisk *disk, struct vdisk_queue *q, const struct iovec *iov, int iovcnt,
		 uint64_t offset, vdisk_cb cb, void *opaque)
{
	return submit_iov(disk, q, VDISK_OP_WRITE, iov, iovcnt, offset, cb, opaque);
}

int vdisk_flush(struct vdisk *disk, struct vdisk_queue *q, vdisk_cb cb, void *opaque)
{
	return submit(disk, q, VDISK_OP_FLUSH, NULL, 0, 0, 0, cb, opaque);
}

int vdisk_discard(struct vdisk *disk, struct vdisk_queue *q, uint64_t offset, uint64_t length,
		  vdisk_cb cb, void *opaque)
{
	return submit(disk, q, VDISK_OP_DISCARD, NULL, 0, offset, length, cb, opaque);
}

int vdisk_write_zeroes(struct vdisk *disk, struct vdisk_queue *q, uint64_t offset, uint64_t length,
		       vdisk_cb cb, void *opaque)
{
	return submit(disk, q, VDISK_OP_WRITE_ZEROES, NULL, 0, offset, length, cb, opaque);
}

/* ---- queues ---- */

static int run_deferred(struct vdisk_queue *q)
{
	int n = 0;
	while (q->deferred_head) {
		struct vdisk_req *req = q->deferred_head;
		q->deferred_head = req->next;
		if (!q->deferred_head)
			q->deferred_tail = NULL;
		run_completion(req);
		n++;
	}
	return n;
}

int vdisk_queue_kick(struct vdisk_queue *q)
{
	return engine_kick(q->engine);
}

int vdisk_queue_post(struct vdisk_queue *q, void (*fn)(void *arg), void *arg)
{
	struct posted *p = malloc(sizeof(*p));
	if (!p)
		return -ENOMEM;
	*p = (struct posted){ fn, arg, NULL };
	pthread_mutex_lock(&q->post_lock);
	if (q->posted_tail)
		q->posted_tail->next = p;
	else
		__atomic_store_n(&q->posted_head, p, __ATOMIC_RELEASE);
	q->posted_tail = p;
	pthread_mutex_unlock(&q->post_lock);
	uint64_t one = 1;
	if (write(q->wake_fd, &one, sizeof(one)) < 0) {
		/* saturated counter: the queue is already awake */
	}
	signal_event(q);
	return 0;
}

static void run_posted(struct vdisk_queue *q)
{
	/* Most polls find nothing posted: skip the lock then. (Whoever sees the wake fd
	 * fire drains it: the engine, or wait_for_post.) */
	if (!__atomic_load_n(&q->posted_head, __ATOMIC_ACQUIRE))
		return;
	pthread_mutex_lock(&q->post_lock);
	struct posted *p = q->posted_head;
	q->posted_head = q->posted_tail = NULL;
	pthread_mutex_unlock(&q->post_lock);
	while (p) {
		struct posted *next = p->next;
		p->fn(p->arg);
		free(p);
		p = next;
	}
}

/* Nothing is in the engine but requests wait on work another thread will post. */
static void wait_for_post(struct vdisk_queue *q)
{
	struct pollfd pfd = { .fd = q->wake_fd, .events = POLLIN };
	while (poll(&pfd, 1, -1) < 0 && errno == EINTR)
		;
	engine_drain_wake(q->wake_fd);
}

int vdisk_queue_poll(struct vdisk_queue *q, unsigned min_complete)
{
	unsigned long long start = q->completed;
	int ret = 0;
	q->in_poll = true;
	run_posted(q);
	run_deferred(q);
	for (;;) {
		unsigned done = (unsigned)(q->completed - start);
		unsigned want = done >= min_complete ? 0 : min_complete - done;
		/* Each request still in the engine needs at least one engine completion. The
		 * engine also returns early when work is posted. */
		ret = engine_poll(q->engine, want);
		run_posted(q);
		run_deferred(q);
		if (ret < 0)
			break;
		done = (unsigned)(q->completed - start);
		if (done >= min_complete || !q->inflight)
			break;
		if (!q->engine->inflight) {
			if (!q->deferred_head)
				wait_for_post(q);
			run_posted(q);
			run_deferred(q);
		}
	}
	q->in_poll = false;
	/* Posted work and deferred completions run after the last reap may have queued
	 * requests: send them now. A caller that polls only when the event fd fires (an event
	 * loop, min_complete 0) would otherwise leave them waiting for a kick nobody makes. */
	if (ret >= 0)
		ret = engine_kick(q->engine);
	if (ret < 0)
		return ret;
	return (int)(q->completed - start);
}

int vdisk_queue_event_fd(struct vdisk_queue *q)
{
	if (q->event_fd < 0) {
		int fd = engine_event_fd(q->engine);
		if (fd < 0)
			return fd;
		q->event_fd = fd;
		if (q->deferred_head)
			signal_event(q);
	}
	return q->event_fd;
}

unsigned vdisk_queue_inflight(const struct vdisk_queue *q)
{
	return q->inflight;
}

static void queue_destroy(struct vdisk_queue *q)
{
	if (!q)
		return;
	run_posted(q);
	engine_destroy(q->engine);
	close(q->wake_fd);
	pthread_mutex_destroy(&q->post_lock);
	while (q->free_reqs) {
		struct vdisk_req *r = q->free_reqs;
		q->free_reqs = r->next;
		free(r);
	}
	while (q->free_ios) {
		struct io_slot *s = q->free_ios;
		q->free_ios = s->next;
		free(s);
	}
	free(q);
}

static int queue_create(struct vdisk *disk, unsigned depth, struct vdisk_queue **out, char *why,
			size_t why_size)
{
	struct vdisk_queue *q = calloc(1, sizeof(*q));
	if (!q)
		return -ENOMEM;
	q->disk = disk;
	q->event_fd = -1;
	q->wake_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
	if (q->wake_fd < 0) {
		free(q);
		return -errno;
	}
	int ret = engine_create(disk->opts.engine, depth, &q->engine, why, why_size);
	if (ret < 0) {
		close(q->wake_fd);
		free(q);
		return ret;
	}
	engine_set_wake_fd(q->engine, q->wake_fd);
	pthread_mutex_init(&q->post_lock, NULL);
	/* Preallocate requests so the steady state never allocates. */
	for (unsigned i = 0; i < depth; i++) {
		struct vdisk_req *r = malloc(sizeof(*r));
		if (!r)
			break;
		r->next = q->free_reqs;
		q->free_reqs = r;
	}
	*out = q;
	return 0;
}

static int create_queues(struct vdisk *disk, char *err, size_t err_size)
{
	unsigned n = disk->opts.queues ? disk->opts.queues : 1;
	unsigned depth = disk->opts.queue_depth ? disk->opts.queue_depth : DEFAULT_QUEUE_DEPTH;
	if (n > MAX_QUEUES || depth > MAX_QUEUE_DEPTH) {
		snprintf(err, err_size, "at most %d queues of depth %d", MAX_QUEUES,
			 MAX_QUEUE_DEPTH);
		return -EINVAL;
	}
	if ((unsigned)disk->opts.engine > VDISK_ENGINE_SYNC) {
		snprintf(err, err_size, "unknown I/O engine %d", (int)disk->opts.engine);
		return -EINVAL;
	}
	disk->queues = calloc(n, sizeof(*disk->queues));
	if (!disk->queues)
		return -ENOMEM;
	for (unsigned i = 0; i < n; i++) {
		char why[200] = "";
		int ret = queue_create(disk, depth, &disk->queues[i], why, sizeof(why));
		if (ret < 0) {
			snprintf(err, err_size, "cannot start the %sI/O engine: %s",
				 disk->opts.engine == VDISK_ENGINE_AUTO	   ? ""
				 : disk->opts.engine == VDISK_ENGINE_URING ? "io_uring "
				 : disk->opts.engine == VDISK_ENGINE_AIO   ? "libaio "
									   : "sync ",
				 why[0] ? why : strerror(-ret));
			return ret;
		}
		disk->nqueues++;
		if (i == 0 && why[0])
			snprintf(disk->engine_fallback, sizeof(disk->engine_fallback), "%s", why);
	}
	return 0;
}

/* ---- open, close ---- */

static int probe_format(struct vdisk *disk, char *err, size_t err_size)
{
	struct vdisk_file *file = disk->file;
	if (disk->opts.format) {
		disk->format = vdisk_format_find(disk->opts.format);
		if (!disk->format) {
			char names[128];
			format_names(names, sizeof(names));
			snprintf(err, err_size, "unknown format '%s' (known: %s)",
				 disk->opts.format, names);
			return -EINVAL;
		}
		return 0;
	}
	size_t head_len = file->size < VDISK_PROBE_HEAD ? (size_t)file->size : VDISK_PROBE_HEAD;
	size_t tail_len = file->size < 512 ? (size_t)file->size : 512;
	uint8_t *head = malloc(head_len);
	uint8_t tail[512];
	if (!head)
		return -ENOMEM;
	int ret = vdisk_file_pread(file, head, head_len, 0);
	if (ret == 0)
		ret = vdisk_file_pread(file, tail, tail_len, file->size - tail_len);
	if (ret < 0) {
		snprintf(err, err_size, "cannot read: %s", strerror(-ret));
		free(head);
		return ret;
	}
	struct vdisk_probe probe = { head, head_len, tail, tail_len, file->size };
	int best = 0;
	for (unsigned i = 0; i < nformats; i++) {
		int score = formats[i]->probe(&probe);
		if (score > best) {
			best = score;
			disk->format = formats[i];
		}
	}
	free(head);
	return 0;
}

/* Opens one image of a chain: the top (child NULL) or a backing image of child. */
static int open_image(const char *path, const struct vdisk_options *opts, struct vdisk *child,
		      struct vdisk **out, char *err, size_t err_size)
{
	err[0] = 0;
	struct vdisk *disk = calloc(1, sizeof(*disk));
	if (!disk) {
		snprintf(err, err_size, "out of memory");
		return -ENOMEM;
	}
	if (opts)
		disk->opts = *opts;
	disk->read_only = disk->opts.read_only;
	disk->logical_sector_size = disk->physical_sector_size = 512;
	disk->child = child;
	disk->top = child ? child->top : disk;
	disk->write_granularity = 1;
	pthread_mutex_init(&disk->rmw_lock, NULL);
	disk->depth = child ? child->depth + 1 : 0;

	int ret = vdisk_file_open(path, disk->read_only, disk->opts.cache, disk->opts.no_lock,
				  &disk->file, err, err_size);
	if (ret < 0)
		goto fail;
	if (disk->file->size == 0) {
		snprintf(err, err_size, "file is empty (0 bytes): not a disk image");
		ret = -EINVAL;
		goto fail;
	}
	ret = probe_format(disk, err, err_size);
	if (ret < 0)
		goto fail;
	ret = disk->format->open(disk, err, err_size);
	if (ret < 0) {
		disk->format = NULL;
		goto fail;
	}
	if (!child) {
		ret = create_queues(disk, err, err_size);
		if (ret < 0)
			goto fail;
	}
	*out = disk;
	return 0;
fail:
	if (!err[0])
		snprintf(err, err_size, "%s", strerror(-ret));
	vdisk_close(disk);
	return ret;
}

int vdisk_open(const char *path, const struct vdisk_options *opts, struct vdisk **out, char *err,
	       size_t err_size)
{
	char scratch[8];
	if (!err || !err_size) {
		err = scratch;
		err_size = sizeof(scratch);
	}
	return open_image(path, opts, NULL, out, err, err_size);
}

/* Whether path is already an image of the chain below (and including) disk. */
static bool in_chain(const struct vdisk *disk, const char *path)
{
	struct stat st;
	if (stat(path, &st) != 0)
		return false;
	for (; disk; disk = disk->child)
		if (disk->file->dev == st.st_dev && disk->file->ino == st.st_ino)
			return true;
	return false;
}

int vdisk_open_backing(struct vdisk *disk, const char *path, struct vdisk **out, char *err,
		       size_t err_size)
{
	if (disk->depth + 1 >= VDISK_MAX_CHAIN) {
		snprintf(err, err_size, "the chain of parents is deeper than %d images",
			 VDISK_MAX_CHAIN);
		return -ELOOP;
	}
	if (in_chain(disk, path)) {
		snprintf(err, err_size,
			 "the chain of parents loops back to an image already in it");
		return -ELOOP;
	}
	struct vdisk_options opts = disk->opts;
	opts.read_only = disk->top->opts.writable_depth != disk->depth + 1;
	opts.format = NULL;
	int ret = open_image(path, &opts, disk, out, err, err_size);
	if (ret == 0)
		disk->backing = *out;
	return ret;
}

struct vdisk *vdisk_backing(struct vdisk *disk)
{
	return disk->backing;
}

void vdisk_close(struct vdisk *disk)
{
	if (!disk)
		return;
	if (disk->top == disk) {
		for (unsigned i = 0; i < disk->nqueues; i++)
			queue_destroy(disk->queues[i]);
		free(disk->queues);
	}
	if (disk->format)
		disk->format->close(disk);
	vdisk_file_close(disk->file);
	pthread_mutex_destroy(&disk->rmw_lock);
	free(disk);
}

/* ---- accessors and synchronous operations ---- */

uint64_t vdisk_size(const struct vdisk *disk)
{
	return disk->size;
}

const char *vdisk_format_name(const struct vdisk *disk)
{
	return disk->format->name;
}

const char *vdisk_path(const struct vdisk *disk)
{
	return disk->file->path;
}

bool vdisk_read_only(const struct vdisk *disk)
{
	return disk->read_only;
}

const char *vdisk_engine_name(const struct vdisk *disk)
{
	return disk->top->queues[0]->engine->ops->name;
}

const char *vdisk_engine_fallback_reason(const struct vdisk *disk)
{
	if (disk->top->engine_fallback[0])
		return disk->top->engine_fallback;
	if (disk->file->fallback_reason[0])
		return disk->file->fallback_reason;
	return NULL;
}

unsigned vdisk_queue_count(const struct vdisk *disk)
{
	return disk->top->nqueues;
}

struct vdisk_queue *vdisk_queue(struct vdisk *disk, unsigned index)
{
	return index < disk->top->nqueues ? disk->top->queues[index] : NULL;
}

int vdisk_block_status(struct vdisk *disk, uint64_t offset, uint64_t length,
		       struct vdisk_extent *ext)
{
	if (length == 0 || check_range(disk, offset, length) < 0)
		return -EINVAL;
	int ret = disk->format->block_status(disk, offset, length, ext);
	if (ret == 0 && (ext->offset != offset || ext->length == 0 || ext->length > length))
		return -EIO; /* a driver bug must not turn into an endless loop in a caller */
	return ret;
}

int vdisk_get_info(struct vdisk *disk, struct vdisk_info *info)
{
	*info = (struct vdisk_info){
		.format = disk->format->name,
		.virtual_size = disk->size,
		.file_size = disk->file->size,
		.allocated_size = vdisk_file_allocated(disk->file),
		.logical_sector_size = disk->logical_sector_size,
		.physical_sector_size = disk->physical_sector_size,
	};
	return disk->format->get_info ? disk->format->get_info(disk, info) : 0;
}

int vdisk_check(struct vdisk *disk, unsigned flags, struct vdisk_check_result *result)
{
	*result = (struct vdisk_check_result){ .findings = json_array() };
	if (!result->findings)
		return -ENOMEM;
	if ((flags & VDISK_CHECK_REPAIR) && disk->read_only)
		return -EROFS;
	return disk->format->check ? disk->format->check(disk, flags, result) : 0;
}

int vdisk_errorf(char *err, size_t err_size, int ret, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(err, err_size, fmt, ap);
	va_end(ap);
	return ret;
}

int vdisk_error_errno(char *err, size_t err_size, int ret, const char *what)
{
	return vdisk_errorf(err, err_size, ret, "%s: %s", what, strerror(-ret));
}

/* ---- maintenance ---- */

static int maintenance_start(struct vdisk *disk, bool supported, char *err, size_t err_size)
{
	err[0] = 0;
	if (!supported) {
		snprintf(err, err_size, "the %s format does not support this", disk->format->name);
		return -ENOTSUP;
	}
	if (disk->read_only) {
		snprintf(err, err_size, "the image is open read-only");
		return -EROFS;
	}
	return 0;
}

/* The first offset at or past from holding non-zero data, or UINT64_MAX. */
static int first_data_at_or_past(struct vdisk *disk, uint64_t from, uint64_t *found)
{
	enum { CHUNK = 1 << 20 };
	uint8_t *buf = vdisk_alloc_aligned(CHUNK);
	if (!buf)
		return -ENOMEM;
	int ret = 0;
	*found = UINT64_MAX;
	for (uint64_t pos = from; pos < disk->size && *found == UINT64_MAX;) {
		struct vdisk_extent ext;
		ret = vdisk_block_status(disk, pos, disk->size - pos, &ext);
		if (ret < 0)
			break;
		if (ext.flags & VDISK_EXTENT_ZERO) {
			pos += ext.length;
			continue;
		}
		uint64_t n = ext.length < CHUNK ? ext.length : CHUNK;
		ret = vdisk_pread(disk, buf, n, pos);
		if (ret < 0)
			break;
		for (uint64_t i = 0; i < n; i++)
			if (buf[i]) {
				*found = pos + i;
				break;
			}
		pos += n;
	}
	free(buf);
	return ret;
}

/* A grown differencing image reads its new part from its parent where the parent reaches
 * (a child shrunk below its parent's size, then grown): the new part must read as zeros,
 * as it does for a raw file grown with truncate. */
static int zero_backing_past(struct vdisk *disk, uint64_t old_size, char *err, size_t err_size)
{
	if (!disk->backing || vdisk_size(disk->backing) <= old_size)
		return 0;
	uint64_t end =
		vdisk_size(disk->backing) < disk->size ? vdisk_size(disk->backing) : disk->size;
	int ret = vdisk_write_zeroes_sync(disk, old_size, end - old_size);
	if (ret == 0)
		ret = vdisk_flush_sync(disk);
	if (ret < 0)
		snprintf(err, err_size, "cannot hide the parent's data past the old size: %s",
			 strerror(-ret));
	return ret;
}

int vdisk_resize(struct vdisk *disk, uint64_t new_size, unsigned flags, uint64_t *lost_offset,
		 char *err, size_t err_size)
{
	int ret = maintenance_start(disk, disk->format->resize != NULL, err, err_size);
	if (ret < 0)
		return ret;
	if (new_size == 0 || new_size % disk->logical_sector_size) {
		snprintf(err, err_size,
			 "the new size must be a non-zero multiple of the %u-byte sector",
			 disk->logical_sector_size);
		return -EINVAL;
	}
	if (new_size < disk->size && !(flags & VDISK_RESIZE_FORCE)) {
		uint64_t at;
		ret = first_data_at_or_past(disk, new_size, &at);
		if (ret < 0) {
			snprintf(err, err_size, "cannot read the part shrinking would drop: %s",
				 strerror(-ret));
			return ret;
		}
		if (at != UINT64_MAX) {
			if (lost_offset)
				*lost_offset = at;
			snprintf(err, err_size,
				 "shrinking would lose data: offset %" PRIu64
				 " (past the new size) is not zero",
				 at);
			return -ENOTEMPTY;
		}
	}
	if (new_size == disk->size)
		return 0;
	uint64_t old_size = disk->size;
	ret = disk->format->resize(disk, new_size, err, err_size);
	if (ret == 0 && new_size > old_size)
		ret = zero_backing_past(disk, old_size, err, err_size);
	return ret;
}

int vdisk_compact(struct vdisk *disk, vdisk_progress_fn progress, void *opaque,
		  struct vdisk_compact_result *result, char *err, size_t err_size)
{
	*result = (struct vdisk_compact_result){ 0 };
	int ret = maintenance_start(disk, disk->format->compact != NULL, err, err_size);
	if (ret < 0)
		return ret;
	return disk->format->compact(disk, progress, opaque, result, err, err_size);
}

int vdisk_set_parent(struct vdisk *disk, const char *parent_path, unsigned flags, char *err,
		     size_t err_size)
{
	int ret = maintenance_start(disk, disk->format->set_parent != NULL, err, err_size);
	if (ret < 0)
		return ret;
	return disk->format->set_parent(disk, parent_path, flags, err, err_size);
}

int vdisk_create_type(const struct vdisk_create_options *o, const char *format,
		      enum vdisk_image_type *type, char *err, size_t err_size)
{
	const char *t = o->type ? o->type : o->parent ? "differencing" : "dynamic";
	if (!strcmp(t, "fixed"))
		*type = VDISK_TYPE_FIXED;
	else if (!strcmp(t, "dynamic"))
		*type = VDISK_TYPE_DYNAMIC;
	else if (!strcmp(t, "differencing"))
		*type = VDISK_TYPE_DIFFERENCING;
	else
		return vdisk_errorf(
			err, err_size, -EINVAL,
			"%s images have no type '%s' (known: fixed, dynamic, differencing)", format,
			t);
	if (*type == VDISK_TYPE_DIFFERENCING && !o->parent)
		return vdisk_errorf(err, err_size, -EINVAL,
				    "a differencing image needs a parent image");
	if (*type != VDISK_TYPE_DIFFERENCING && o->parent)
		return vdisk_errorf(
			err, err_size, -EINVAL,
			"only differencing images have a parent (type '%s' was asked for)", t);
	return 0;
}

int vdisk_create(const char *path, const struct vdisk_create_options *opts, char *err,
		 size_t err_size)
{
	const struct vdisk_format *f = vdisk_format_find(opts->format ? opts->format : "raw");
	if (!f) {
		char names[128];
		format_names(names, sizeof(names));
		snprintf(err, err_size, "unknown format '%s' (known: %s)", opts->format, names);
		return -EINVAL;
	}
	if (!f->create) {
		snprintf(err, err_size, "the %s format cannot create images", f->name);
		return -ENOTSUP;
	}
	err[0] = 0;
	int ret = f->create(path, opts, err, err_size);
	if (ret < 0 && !err[0])
		snprintf(err, err_size, "%s", strerror(-ret));
	return ret;
}
