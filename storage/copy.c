/* The copy engine (copy.h).
 *
 * A pipeline is a set of slots, each one piece of the disk (at most one chunk) in flight:
 * a copy slot reads its piece from the source and then writes it (or zeros) to the
 * target; a compare slot reads its piece from both disks. Completions only advance their
 * slot; the loop in pipeline_run() hands freed slots the next piece, sends the new
 * requests with one kick per queue, and waits for completions on one or two queues.
 * Pieces are cut at chunk-aligned offsets, so writes into a block-based target line up
 * with its blocks.
 */
#include "copy.h"

#include <errno.h>
#include <inttypes.h>
#include <poll.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "arith.h"
#include "file.h"
#include "iov.h"

#define MAX_DEPTH 1024
#define MAX_CHUNK (64u << 20)
/* Write-zeroes requests stay below this, so progress moves on huge zero ranges. */
#define MAX_ZERO_REQUEST (1ull << 30)

/* ---- chain status ---- */

int vdisk_chain_status(struct vdisk *disk, uint64_t offset, uint64_t length, unsigned layers,
		       struct vdisk_extent *ext, int *depth)
{
	struct vdisk *image = disk;
	for (unsigned level = 0;; level++) {
		int ret = vdisk_block_status(image, offset, length, ext);
		if (ret < 0)
			return ret;
		length = ext->length;
		if (ext->flags & (VDISK_EXTENT_DATA | VDISK_EXTENT_ZERO)) {
			*depth = (int)level;
			return 0;
		}
		*depth = -1;
		if (layers && level + 1 >= layers)
			return 0; /* not held by the layers asked for */
		struct vdisk *below = vdisk_backing(image);
		if (!below)
			return -ENODATA; /* a differencing image opened without its parent */
		uint64_t below_size = vdisk_size(below);
		if (offset >= below_size) { /* past the end of a smaller parent: zeros */
			ext->flags = VDISK_EXTENT_ZERO;
			return 0;
		}
		length = min_u64(length, below_size - offset);
		image = below;
	}
}

/* The chain status of one disk, fetched an extent at a time and handed out piece by
 * piece: a status query may scan many blocks, so it is never repeated per chunk. Past
 * `size` the disk counts as zeros (the shorter side of a compare). */
struct cursor {
	struct vdisk *disk;
	unsigned layers;
	uint64_t size;
	struct vdisk_extent ext; /* the extent fetched last */
};

static void cursor_init(struct cursor *c, struct vdisk *disk, unsigned layers)
{
	*c = (struct cursor){ .disk = disk, .layers = layers, .size = vdisk_size(disk) };
}

/* The status of [pos, end): one extent starting at pos. */
static int cursor_at(struct cursor *c, uint64_t pos, uint64_t end, struct vdisk_extent *out)
{
	if (pos >= c->size) {
		*out = (struct vdisk_extent){ pos, end - pos, VDISK_EXTENT_ZERO };
		return 0;
	}
	if (pos < c->ext.offset || pos - c->ext.offset >= c->ext.length) {
		int depth;
		int ret = vdisk_chain_status(c->disk, pos, min_u64(end, c->size) - pos, c->layers,
					     &c->ext, &depth);
		if (ret < 0)
			return ret;
	}
	uint64_t ext_end = c->ext.offset + c->ext.length;
	*out = (struct vdisk_extent){ pos, min_u64(ext_end, end) - pos, c->ext.flags };
	return 0;
}

/* ---- the pipeline ---- */

struct pipeline;

struct slot {
	struct pipeline *p;
	uint64_t offset, length;
	uint8_t *buf[2];
	struct iovec iov[2];
	unsigned pending; /* reads in flight (compare) */
	bool zeroing;	  /* copy: the write in flight is a write-zeroes */
	bool read[2];	  /* compare: which sides were read (the other reads as zeros) */
	struct slot *next_free;
};

struct pipeline {
	struct vdisk_queue *queues[2];
	unsigned nqueues;
	int event_fds[2];
	struct slot *slots;
	unsigned nslots, busy;
	struct slot *free;
	uint32_t chunk;
	uint64_t pos, end; /* the next byte to hand out; the end of the work */
	uint64_t done;	   /* bytes finished, for progress */
	vdisk_progress_fn progress;
	void *opaque;
	bool stop; /* hand out no more work */
	int error; /* the first error */
	char *err;
	size_t err_size;
	/* Gives slot s the next piece and submits its first request. Returns 1 when it did,
	 * 0 when no work is left, or -errno (after pipeline_fail). */
	int (*issue)(struct pipeline *p, struct slot *s);
};

/* Records the first error and its reason; stops new work. Returns error. */
static int pipeline_fail(struct pipeline *p, int error, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
static int pipeline_fail(struct pipeline *p, int error, const char *fmt, ...)
{
	p->stop = true;
	if (p->error)
		return error;
	p->error = error;
	va_list ap;
	va_start(ap, fmt);
	int n = vsnprintf(p->err, p->err_size, fmt, ap);
	va_end(ap);
	if (n >= 0 && (size_t)n < p->err_size)
		snprintf(p->err + n, p->err_size - (size_t)n, ": %s", strerror(-error));
	return error;
}

/* Counts bytes as done and reports progress. */
static void pipeline_advance(struct pipeline *p, uint64_t bytes)
{
	p->done += bytes;
	if (p->progress)
		p->progress(p->opaque, p->done, p->end);
}

/* Ends a slot's piece: counts it as done and frees the slot. */
static void slot_finish(struct slot *s)
{
	struct pipeline *p = s->p;
	pipeline_advance(p, s->length);
	s->next_free = p->free;
	p->free = s;
	p->busy--;
}

static struct slot *slot_take(struct pipeline *p)
{
	struct slot *s = p->free;
	p->free = s->next_free;
	p->busy++;
	return s;
}

/* Hands a slot back that issue() did not use. */
static void slot_return(struct pipeline *p, struct slot *s)
{
	s->next_free = p->free;
	p->free = s;
	p->busy--;
}

static int pipeline_init(struct pipeline *p, struct vdisk *a, struct vdisk *b, unsigned depth,
			 uint32_t chunk, unsigned buffers, char *err, size_t err_size)
{
	*p = (struct pipeline){ .err = err, .err_size = err_size, .event_fds = { -1, -1 } };
	depth = depth ? depth : VDISK_COPY_DEFAULT_DEPTH;
	chunk = chunk ? chunk : VDISK_COPY_DEFAULT_CHUNK;
	if (depth > MAX_DEPTH || chunk % 4096 || chunk > MAX_CHUNK) {
		snprintf(err, err_size,
			 "depth must be at most %u and the chunk a multiple of 4096 bytes up to %u "
			 "MiB",
			 MAX_DEPTH, MAX_CHUNK >> 20);
		return -EINVAL;
	}
	p->chunk = chunk;
	p->queues[0] = vdisk_queue(a, 0);
	p->queues[1] = vdisk_queue(b, 0);
	p->nqueues = p->queues[0] == p->queues[1] ? 1 : 2; /* two images of one chain */
	for (unsigned i = 0; p->nqueues == 2 && i < 2; i++) {
		p->event_fds[i] = vdisk_queue_event_fd(p->queues[i]);
		if (p->event_fds[i] < 0) {
			snprintf(err, err_size, "cannot wait for completions: %s",
				 strerror(-p->event_fds[i]));
			return p->event_fds[i];
		}
	}
	p->slots = calloc(depth, sizeof(*p->slots));
	if (!p->slots)
		goto nomem;
	p->nslots = depth;
	for (unsigned i = 0; i < depth; i++) {
		struct slot *s = &p->slots[i];
		s->p = p;
		for (unsigned k = 0; k < buffers; k++)
			if (!(s->buf[k] = vdisk_alloc_aligned(chunk)))
				goto nomem;
		s->next_free = p->free;
		p->free = s;
	}
	return 0;
nomem:
	snprintf(err, err_size, "out of memory for %u buffers of %u bytes", depth * buffers, chunk);
	return -ENOMEM;
}

static void pipeline_fini(struct pipeline *p)
{
	for (unsigned i = 0; i < p->nslots; i++) {
		free(p->slots[i].buf[0]);
		free(p->slots[i].buf[1]);
	}
	free(p->slots);
}

/* Waits until at least one request of the pipeline completes (its callback has run). */
static int pipeline_wait(struct pipeline *p)
{
	struct vdisk_queue *a = p->queues[0], *b = p->queues[1];
	bool wait_a = vdisk_queue_inflight(a) > 0;
	bool wait_b = p->nqueues == 2 && vdisk_queue_inflight(b) > 0;
	if (!wait_b)
		return vdisk_queue_poll(a, 1);
	if (!wait_a)
		return vdisk_queue_poll(b, 1);
	/* Both queues have requests in flight: take what is ready on either, and when
	 * nothing is, sleep until either queue's completion eventfd fires. */
	int n = vdisk_queue_poll(a, 0);
	int m = n < 0 ? 0 : vdisk_queue_poll(b, 0);
	if (n < 0 || m < 0)
		return n < 0 ? n : m;
	if (n + m)
		return n + m;
	struct pollfd fds[2] = { { .fd = p->event_fds[0], .events = POLLIN },
				 { .fd = p->event_fds[1], .events = POLLIN } };
	while (poll(fds, 2, -1) < 0)
		if (errno != EINTR)
			return -errno;
	return 0;
}

/* Keeps every slot busy until the work is done or has failed, then waits for what is in
 * flight. Returns the first error or 0. */
static int pipeline_run(struct pipeline *p)
{
	for (;;) {
		while (!p->stop && p->free) {
			struct slot *s = slot_take(p);
			int issued = p->issue(p, s);
			if (issued <= 0) { /* no work left, or it failed */
				slot_return(p, s);
				p->stop = true;
				break;
			}
		}
		for (unsigned i = 0; i < p->nqueues; i++)
			vdisk_queue_kick(p->queues[i]);
		if (!p->busy)
			break;
		int ret = pipeline_wait(p);
		if (ret < 0) {
			/* the queue cannot wait any more: requests in flight are lost with it */
			pipeline_fail(p, ret, "waiting for completions");
			return ret;
		}
	}
	return p->error;
}

/* The length of a piece at pos that ends at the extent's end or the next chunk boundary. */
static uint64_t piece_length(const struct pipeline *p, uint64_t pos, uint64_t extent_length)
{
	uint64_t to_boundary = p->chunk - pos % p->chunk;
	return min_u64(extent_length, to_boundary);
}

/* ---- copy ---- */

struct copy {
	struct pipeline p;
	struct vdisk *src, *dst;
	struct cursor cursor;
	bool target_is_zero;
	struct vdisk_copy_stats stats;
};

static struct copy *copy_of(struct pipeline *p)
{
	return (struct copy *)((char *)p - offsetof(struct copy, p));
}

static void copy_write_done(void *opaque, int result)
{
	struct slot *s = opaque;
	struct copy *c = copy_of(s->p);
	if (result < 0)
		pipeline_fail(&c->p, result, "writing '%s' at offset %" PRIu64, vdisk_path(c->dst),
			      s->offset);
	else if (s->zeroing)
		c->stats.bytes_zeroed += s->length;
	else
		c->stats.bytes_written += s->length;
	slot_finish(s);
}

/* Writes zeros for the slot's piece; returns 0 or the refusal. */
static int copy_write_zeroes(struct copy *c, struct slot *s)
{
	s->zeroing = true;
	return vdisk_write_zeroes(c->dst, c->p.queues[1], s->offset, s->length, copy_write_done, s);
}

static void copy_read_done(void *opaque, int result)
{
	struct slot *s = opaque;
	struct copy *c = copy_of(s->p);
	if (result < 0) {
		pipeline_fail(&c->p, result, "reading '%s' at offset %" PRIu64, vdisk_path(c->src),
			      s->offset);
		slot_finish(s);
		return;
	}
	c->stats.bytes_read += s->length;
	if (c->p.error) { /* another piece failed: write nothing more */
		slot_finish(s);
		return;
	}
	int ret;
	if (!iov_is_zero(s->iov, 1, 0, s->length)) {
		s->zeroing = false;
		ret = vdisk_writev(c->dst, c->p.queues[1], s->iov, 1, s->offset, copy_write_done,
				   s);
	} else if (c->target_is_zero) {
		c->stats.bytes_skipped += s->length;
		slot_finish(s);
		return;
	} else {
		ret = copy_write_zeroes(c, s);
	}
	if (ret < 0) {
		pipeline_fail(&c->p, ret, "writing '%s' at offset %" PRIu64, vdisk_path(c->dst),
			      s->offset);
		slot_finish(s);
	}
}

static int copy_issue(struct pipeline *p, struct slot *s)
{
	struct copy *c = copy_of(p);
	while (p->pos < p->end) {
		struct vdisk_extent ext;
		int ret = cursor_at(&c->cursor, p->pos, p->end, &ext);
		if (ret < 0)
			return pipeline_fail(p, ret,
					     "reading the block status of '%s' at offset %" PRIu64,
					     vdisk_path(c->src), p->pos);
		bool zero = !(ext.flags & VDISK_EXTENT_DATA) && (ext.flags & VDISK_EXTENT_ZERO);
		if (ext.flags & VDISK_EXTENT_DATA) {
			s->offset = p->pos;
			s->length = piece_length(p, p->pos, ext.length);
			s->iov[0] = (struct iovec){ s->buf[0], (size_t)s->length };
			ret = vdisk_readv(c->src, p->queues[0], s->iov, 1, s->offset,
					  copy_read_done, s);
			if (ret < 0)
				return pipeline_fail(p, ret, "reading '%s' at offset %" PRIu64,
						     vdisk_path(c->src), s->offset);
		} else if (zero && !c->target_is_zero) {
			s->offset = p->pos;
			s->length = min_u64(ext.length, MAX_ZERO_REQUEST);
			ret = copy_write_zeroes(c, s);
			if (ret < 0)
				return pipeline_fail(p, ret,
						     "writing zeros to '%s' at offset %" PRIu64,
						     vdisk_path(c->dst), s->offset);
		} else { /* zeros on a zero target, or not held by the layers asked for */
			c->stats.bytes_skipped += ext.length;
			p->pos += ext.length;
			pipeline_advance(p, ext.length);
			continue;
		}
		p->pos += s->length;
		return 1;
	}
	return 0;
}

int vdisk_copy(struct vdisk *src, struct vdisk *dst, const struct vdisk_copy_options *o, char *err,
	       size_t err_size)
{
	char scratch[8];
	if (!err || !err_size) {
		err = scratch;
		err_size = sizeof(scratch);
	}
	err[0] = 0;
	if (vdisk_size(dst) < vdisk_size(src)) {
		snprintf(err, err_size,
			 "the target '%s' (%" PRIu64 " bytes) is smaller than the source (%" PRIu64
			 " bytes)",
			 vdisk_path(dst), vdisk_size(dst), vdisk_size(src));
		return -EINVAL;
	}
	if (vdisk_read_only(dst)) {
		snprintf(err, err_size, "the target '%s' is open read-only", vdisk_path(dst));
		return -EROFS;
	}
	struct copy c = { .src = src, .dst = dst, .target_is_zero = o->target_is_zero };
	int ret = pipeline_init(&c.p, src, dst, o->depth, o->chunk, 1, err, err_size);
	if (ret == 0) {
		cursor_init(&c.cursor, src, o->layers);
		c.p.end = vdisk_size(src);
		c.p.progress = o->progress;
		c.p.opaque = o->opaque;
		c.p.issue = copy_issue;
		ret = pipeline_run(&c.p);
	}
	pipeline_fini(&c.p);
	if (ret == 0) {
		ret = vdisk_flush_sync(dst);
		if (ret < 0)
			snprintf(err, err_size, "flushing '%s': %s", vdisk_path(dst),
				 strerror(-ret));
	}
	if (o->stats)
		*o->stats = c.stats;
	return ret;
}

/* ---- compare ---- */

struct compare {
	struct pipeline p;
	struct vdisk *disk[2];
	struct cursor cursor[2];
	uint64_t first_difference; /* UINT64_MAX: none found yet */
};

static struct compare *compare_of(struct pipeline *p)
{
	return (struct compare *)((char *)p - offsetof(struct compare, p));
}

/* The index of the first byte where a and b differ (b NULL: where a is not zero), or len. */
static size_t first_mismatch(const uint8_t *a, const uint8_t *b, size_t len)
{
	enum { STEP = 4096 };
	size_t i = 0;
	/* whole steps first: memcmp and the zero test are vectorised, the byte loop is not */
	for (; i < len; i += STEP) {
		size_t n = len - i < STEP ? len - i : STEP;
		struct iovec iov = { (void *)(a + i), n };
		if (b ? memcmp(a + i, b + i, n) != 0 : !iov_is_zero(&iov, 1, 0, n))
			break;
	}
	for (; i < len; i++)
		if (a[i] != (b ? b[i] : 0))
			return i;
	return len;
}

/* A read of one side of a slot has completed (side: 0 for a, 1 for b, -1 for none). */
static void compare_side_done(struct slot *s, int side, int result)
{
	struct compare *c = compare_of(s->p);
	if (result < 0)
		pipeline_fail(&c->p, result, "reading '%s' at offset %" PRIu64,
			      vdisk_path(c->disk[side]), s->offset);
	if (--s->pending)
		return;
	if (!c->p.error) {
		const uint8_t *a = s->read[0] ? s->buf[0] : s->buf[1];
		const uint8_t *b = s->read[0] && s->read[1] ? s->buf[1] : NULL;
		size_t at = first_mismatch(a, b, (size_t)s->length);
		if (at < s->length && s->offset + at < c->first_difference) {
			c->first_difference = s->offset + at;
			c->p.stop = true; /* pieces before this one are done or in flight */
		}
	}
	slot_finish(s);
}

static void compare_a_done(void *opaque, int result)
{
	compare_side_done(opaque, 0, result);
}

static void compare_b_done(void *opaque, int result)
{
	compare_side_done(opaque, 1, result);
}

static int compare_issue(struct pipeline *p, struct slot *s)
{
	struct compare *c = compare_of(p);
	while (p->pos < p->end) {
		struct vdisk_extent ext[2];
		for (unsigned i = 0; i < 2; i++) {
			int ret = cursor_at(&c->cursor[i], p->pos, p->end, &ext[i]);
			if (ret < 0)
				return pipeline_fail(
					p, ret,
					"reading the block status of '%s' at offset %" PRIu64,
					vdisk_path(c->disk[i]), p->pos);
		}
		bool zero[2];
		for (unsigned i = 0; i < 2; i++)
			zero[i] = !(ext[i].flags & VDISK_EXTENT_DATA) &&
				  (ext[i].flags & VDISK_EXTENT_ZERO);
		uint64_t len = min_u64(ext[0].length, ext[1].length);
		if (zero[0] && zero[1]) {
			p->pos += len;
			pipeline_advance(p, len);
			continue;
		}
		s->offset = p->pos;
		s->length = piece_length(p, p->pos, len);
		s->pending = 1; /* held while the reads are submitted */
		for (unsigned i = 0; i < 2; i++) {
			s->read[i] = !zero[i];
			if (zero[i])
				continue;
			s->iov[i] = (struct iovec){ s->buf[i], (size_t)s->length };
			s->pending++;
			int ret = vdisk_readv(c->disk[i], p->queues[i], &s->iov[i], 1, s->offset,
					      i ? compare_b_done : compare_a_done, s);
			if (ret < 0) {
				s->pending--;
				pipeline_fail(p, ret, "reading '%s' at offset %" PRIu64,
					      vdisk_path(c->disk[i]), s->offset);
				break;
			}
		}
		p->pos += s->length;
		compare_side_done(s, -1, 0); /* drops the hold: the slot ends here if no read is
					      * in flight */
		return 1;
	}
	return 0;
}

int vdisk_compare(struct vdisk *a, struct vdisk *b, const struct vdisk_compare_options *o,
		  uint64_t *first_difference, char *err, size_t err_size)
{
	char scratch[8];
	if (!err || !err_size) {
		err = scratch;
		err_size = sizeof(scratch);
	}
	err[0] = 0;
	uint64_t size_a = vdisk_size(a), size_b = vdisk_size(b);
	if (o->strict && size_a != size_b) {
		*first_difference = min_u64(size_a, size_b);
		return 1;
	}
	struct compare c = { .disk = { a, b }, .first_difference = UINT64_MAX };
	int ret = pipeline_init(&c.p, a, b, o->depth, o->chunk, 2, err, err_size);
	if (ret == 0) {
		cursor_init(&c.cursor[0], a, 0);
		cursor_init(&c.cursor[1], b, 0);
		c.p.end = size_a > size_b ? size_a : size_b;
		c.p.progress = o->progress;
		c.p.opaque = o->opaque;
		c.p.issue = compare_issue;
		ret = pipeline_run(&c.p);
	}
	pipeline_fini(&c.p);
	if (ret < 0)
		return ret;
	if (c.first_difference == UINT64_MAX)
		return 0;
	*first_difference = c.first_difference;
	return 1;
}
