/* The power-cut recorder and crash-state builder; the model is described in crash_engine.h. */
#include "crash_engine.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/falloc.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "file.h"

struct tracked {
	char *path;
	uint64_t dev, ino;
	uint8_t *initial;
	uint64_t initial_size;
	uint64_t size;	   /* logical size as the journal has seen it change */
	uint64_t max_size; /* largest extent ever */
	uint8_t *live;	   /* the content as the journal has seen it change (zeros past size) */
	uint64_t live_cap;
};

struct crash_journal {
	pthread_mutex_t lock;
	uint64_t seq;
	struct crash_op *ops;
	size_t nops, cap;
	struct tracked *files;
	unsigned nfiles;
	unsigned untracked, unsupported;
	struct vdisk_file_observer observer;
};

/* The journal the hooks record into (one at a time). */
static struct crash_journal *active;

/* ---- the journal ---- */

int crash_journal_create(struct crash_journal **out)
{
	struct crash_journal *j = calloc(1, sizeof(*j));
	if (!j)
		return -ENOMEM;
	pthread_mutex_init(&j->lock, NULL);
	j->seq = 1; /* a cut at 0 is before everything */
	*out = j;
	return 0;
}

void crash_journal_free(struct crash_journal *j)
{
	if (!j)
		return;
	if (active == j)
		crash_journal_stop(j);
	for (size_t i = 0; i < j->nops; i++)
		free(j->ops[i].data);
	free(j->ops);
	for (unsigned i = 0; i < j->nfiles; i++) {
		free(j->files[i].path);
		free(j->files[i].initial);
		free(j->files[i].live);
	}
	free(j->files);
	pthread_mutex_destroy(&j->lock);
	free(j);
}

int crash_journal_track(struct crash_journal *j, const char *path)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	struct stat st;
	int ret = 0;
	uint8_t *buf = NULL;
	if (fstat(fd, &st) != 0) {
		ret = -errno;
		goto out;
	}
	buf = malloc(st.st_size ? (size_t)st.st_size : 1);
	if (!buf) {
		ret = -ENOMEM;
		goto out;
	}
	for (off_t done = 0; done < st.st_size;) {
		ssize_t n = pread(fd, buf + done, (size_t)(st.st_size - done), done);
		if (n <= 0) {
			ret = n < 0 ? -errno : -EIO;
			goto out;
		}
		done += n;
	}
	struct tracked *files = realloc(j->files, sizeof(*files) * (j->nfiles + 1));
	if (!files) {
		ret = -ENOMEM;
		goto out;
	}
	j->files = files;
	struct tracked *t = &files[j->nfiles];
	*t = (struct tracked){ .path = strdup(path),
			       .dev = st.st_dev,
			       .ino = st.st_ino,
			       .initial = buf,
			       .initial_size = (uint64_t)st.st_size,
			       .size = (uint64_t)st.st_size,
			       .max_size = (uint64_t)st.st_size };
	t->live_cap = t->initial_size ? t->initial_size : 1;
	t->live = malloc(t->live_cap);
	if (!t->path || !t->live) {
		free(t->path);
		free(t->live);
		ret = -ENOMEM;
		goto out;
	}
	memcpy(t->live, buf, t->initial_size);
	buf = NULL;
	ret = (int)j->nfiles++;
out:
	free(buf);
	close(fd);
	return ret;
}

unsigned crash_journal_files(const struct crash_journal *j)
{
	return j->nfiles;
}

const char *crash_journal_path(const struct crash_journal *j, unsigned file)
{
	return j->files[file].path;
}

uint64_t crash_journal_mark(struct crash_journal *j)
{
	pthread_mutex_lock(&j->lock);
	uint64_t s = j->seq++;
	pthread_mutex_unlock(&j->lock);
	return s;
}

uint64_t crash_journal_end(const struct crash_journal *j)
{
	return j->seq;
}

size_t crash_journal_count(const struct crash_journal *j)
{
	return j->nops;
}

const struct crash_op *crash_journal_op(const struct crash_journal *j, size_t index)
{
	return &j->ops[index];
}

unsigned crash_journal_untracked(const struct crash_journal *j)
{
	return j->untracked;
}

unsigned crash_journal_unsupported(const struct crash_journal *j)
{
	return j->unsupported;
}

uint64_t crash_journal_max_size(const struct crash_journal *j, unsigned file)
{
	return j->files[file].max_size;
}

static int find_file(const struct crash_journal *j, const struct vdisk_file *file)
{
	for (unsigned i = 0; i < j->nfiles; i++)
		if (j->files[i].dev == file->dev && j->files[i].ino == file->ino)
			return (int)i;
	return -1;
}

static bool fallocate_supported(int mode)
{
	switch (mode) {
	case 0:
	case FALLOC_FL_KEEP_SIZE:
	case FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE:
	case FALLOC_FL_ZERO_RANGE:
	case FALLOC_FL_ZERO_RANGE | FALLOC_FL_KEEP_SIZE:
		return true;
	default:
		return false;
	}
}

/* Makes room for len bytes of live content (new room reads as zeros). */
static int live_reserve(struct tracked *t, uint64_t len)
{
	if (len <= t->live_cap)
		return 0;
	uint64_t cap = t->live_cap * 2 > len ? t->live_cap * 2 : len;
	uint8_t *live = realloc(t->live, cap);
	if (!live)
		return -ENOMEM;
	memset(live + t->live_cap, 0, cap - t->live_cap);
	t->live = live;
	t->live_cap = cap;
	return 0;
}

/* Applies op (its size already accounted, its room reserved) to the live content. */
static int live_apply(struct tracked *t, const struct crash_op *op, uint64_t old_size)
{
	uint64_t end = op->offset + op->len;
	switch (op->kind) {
	case CRASH_WRITE:
		memcpy(t->live + op->offset, op->data, op->len);
		return 0;
	case CRASH_TRUNCATE:
		if (op->offset < old_size)
			memset(t->live + op->offset, 0, old_size - op->offset);
		return 0;
	case CRASH_FALLOCATE:
		if (!(op->mode & (FALLOC_FL_PUNCH_HOLE | FALLOC_FL_ZERO_RANGE)))
			return 0;
		if (end > t->size)
			end = t->size;
		if (op->offset < end)
			memset(t->live + op->offset, 0, end - op->offset);
		return 0;
	case CRASH_SYNC:
		return 0;
	}
	return 0;
}

/* A buffered write dirties whole pages of the page cache, and writeback writes them
 * whole: the journal keeps the pages it touched (up to the end of the file) with their
 * content after the write. */
static int widen_to_pages(struct tracked *t, struct crash_op *op)
{
	uint64_t start = op->offset / CRASH_PIECE * CRASH_PIECE;
	uint64_t end = (op->offset + op->len + CRASH_PIECE - 1) / CRASH_PIECE * CRASH_PIECE;
	if (end > t->size)
		end = t->size > op->offset + op->len ? t->size : op->offset + op->len;
	if (start == op->offset && end == op->offset + op->len)
		return 0;
	uint8_t *data = malloc(end - start);
	if (!data)
		return -ENOMEM;
	memcpy(data, t->live + start, end - start);
	free(op->data);
	op->data = data;
	op->offset = start;
	op->len = end - start;
	return 0;
}

/* Under the lock: appends op (taking its data) with the next sequence number as its
 * submission and notes how it changes the file's size. A buffered write is widened to
 * whole pages. Returns its index, or SIZE_MAX when memory ran out (counted as
 * unsupported: the journal is then incomplete). */
static size_t journal_append(struct crash_journal *j, struct crash_op op, bool buffered)
{
	if (j->nops == j->cap) {
		size_t cap = j->cap ? j->cap * 2 : 1024;
		struct crash_op *ops = realloc(j->ops, sizeof(*ops) * cap);
		if (!ops) {
			free(op.data);
			j->unsupported++;
			return SIZE_MAX;
		}
		j->ops = ops;
		j->cap = cap;
	}
	struct tracked *t = &j->files[op.file];
	uint64_t old_size = t->size;
	op.submit = j->seq++;
	op.complete = CRASH_NEVER;
	uint64_t end = op.offset + op.len;
	switch (op.kind) {
	case CRASH_TRUNCATE:
		op.sizes = op.offset != t->size;
		t->size = op.offset;
		end = op.offset;
		break;
	case CRASH_WRITE:
		op.sizes = end > t->size;
		break;
	case CRASH_FALLOCATE:
		op.sizes = !(op.mode & FALLOC_FL_KEEP_SIZE) && end > t->size;
		if (!fallocate_supported(op.mode))
			j->unsupported++;
		break;
	case CRASH_SYNC:
		end = 0;
		break;
	}
	if (op.sizes && end > t->size)
		t->size = end;
	if (end > t->max_size)
		t->max_size = end;
	if (live_reserve(t, t->size > end ? t->size : end) < 0 ||
	    live_apply(t, &op, old_size) < 0 ||
	    (buffered && op.kind == CRASH_WRITE && widen_to_pages(t, &op) < 0)) {
		free(op.data);
		j->unsupported++;
		return SIZE_MAX;
	}
	j->ops[j->nops] = op;
	return j->nops++;
}

static void journal_complete(struct crash_journal *j, size_t index, int result)
{
	pthread_mutex_lock(&j->lock);
	j->ops[index].complete = j->seq++;
	j->ops[index].result = result;
	pthread_mutex_unlock(&j->lock);
}

/* ---- the engine ---- */

/* What the crash engine keeps in an operation's backend storage (the synchronous engine
 * uses none of it): the submitter's done() and the journal entry. */
struct io_tag {
	void (*done)(struct engine_io *io, int result);
	struct crash_journal *journal;
	size_t op;
};
_Static_assert(sizeof(struct io_tag) <= sizeof(((struct engine_io *)0)->backend),
	       "the tag must fit the backend storage of an engine_io");

static void crash_io_done(struct engine_io *io, int result)
{
	struct io_tag tag;
	memcpy(&tag, &io->backend, sizeof(tag));
	journal_complete(tag.journal, tag.op, result);
	io->done = tag.done;
	tag.done(io, result);
}

static uint64_t iov_bytes(const struct iovec *iov, int iovcnt)
{
	uint64_t n = 0;
	for (int i = 0; i < iovcnt; i++)
		n += iov[i].iov_len;
	return n;
}

/* Journals an operation at its first submission; returns false when it is not journaled
 * (reads, untracked files, no memory). */
static bool journal_io(struct crash_journal *j, struct engine_io *io, size_t *index)
{
	struct crash_op op = { .via_engine = true };
	switch (io->op) {
	case ENGINE_WRITE:
		op.kind = CRASH_WRITE;
		op.offset = io->offset;
		op.len = iov_bytes(io->iov, io->iovcnt);
		op.data = malloc(op.len ? op.len : 1);
		if (op.data) {
			uint8_t *p = op.data;
			for (int i = 0; i < io->iovcnt; i++) {
				memcpy(p, io->iov[i].iov_base, io->iov[i].iov_len);
				p += io->iov[i].iov_len;
			}
		}
		break;
	case ENGINE_FALLOCATE:
		op.kind = CRASH_FALLOCATE;
		op.offset = io->offset;
		op.len = io->length;
		op.mode = io->fallocate_mode;
		break;
	case ENGINE_FDATASYNC:
		op.kind = CRASH_SYNC;
		break;
	default:
		return false;
	}
	pthread_mutex_lock(&j->lock);
	int file = find_file(j, io->file);
	if (file < 0 || (op.kind == CRASH_WRITE && !op.data)) {
		if (op.kind != CRASH_SYNC)
			j->untracked += file < 0;
		j->unsupported += file >= 0;
		pthread_mutex_unlock(&j->lock);
		free(op.data);
		return false;
	}
	op.file = (unsigned)file;
	*index = journal_append(j, op, io->buffered || !io->file->direct);
	pthread_mutex_unlock(&j->lock);
	return *index != SIZE_MAX;
}

static void crash_queue(struct engine *e, struct engine_io *io)
{
	struct crash_journal *j = __atomic_load_n(&active, __ATOMIC_ACQUIRE);
	size_t index;
	/* A resubmission after a short transfer already carries the tag. */
	if (j && io->done != crash_io_done && journal_io(j, io, &index)) {
		struct io_tag tag = { .done = io->done, .journal = j, .op = index };
		memcpy(&io->backend, &tag, sizeof(tag));
		io->done = crash_io_done;
	}
	engine_sync_ops.queue(e, io);
}

static int crash_init(struct engine *e, unsigned depth, char *why, size_t why_size)
{
	return engine_sync_ops.init(e, depth, why, why_size);
}

static void crash_fini(struct engine *e)
{
	engine_sync_ops.fini(e);
}

static int crash_kick(struct engine *e)
{
	return engine_sync_ops.kick(e);
}

static int crash_reap(struct engine *e, unsigned min)
{
	return engine_sync_ops.reap(e, min);
}

static int crash_event_fd(struct engine *e)
{
	return engine_sync_ops.event_fd(e);
}

const struct engine_ops crash_engine_ops = {
	.name = "crash-sync",
	.init = crash_init,
	.fini = crash_fini,
	.queue = crash_queue,
	.kick = crash_kick,
	.reap = crash_reap,
	.event_fd = crash_event_fd,
};

/* ---- the file observer ---- */

/* The observed operation between its two events (they come from one thread, with
 * nothing of the same thread in between). */
static __thread size_t observed_op = SIZE_MAX;

static void observe(void *opaque, const struct vdisk_file_event *ev)
{
	struct crash_journal *j = opaque;
	if (ev->done) {
		if (observed_op != SIZE_MAX)
			journal_complete(j, observed_op, ev->result);
		observed_op = SIZE_MAX;
		return;
	}
	struct crash_op op = { .via_engine = false };
	switch (ev->op) {
	case VDISK_FILE_PWRITE:
		op.kind = CRASH_WRITE;
		op.offset = ev->offset;
		op.len = ev->len;
		op.data = malloc(ev->len ? ev->len : 1);
		if (op.data)
			memcpy(op.data, ev->buf, ev->len);
		break;
	case VDISK_FILE_SET_SIZE:
		op.kind = CRASH_TRUNCATE;
		op.offset = ev->offset;
		break;
	case VDISK_FILE_SYNC:
		op.kind = CRASH_SYNC;
		break;
	}
	pthread_mutex_lock(&j->lock);
	int file = find_file(j, ev->file);
	if (file < 0 || (op.kind == CRASH_WRITE && !op.data)) {
		if (op.kind != CRASH_SYNC)
			j->untracked += file < 0;
		j->unsupported += file >= 0;
		free(op.data);
		observed_op = SIZE_MAX;
	} else {
		op.file = (unsigned)file;
		observed_op = journal_append(j, op, true); /* vdisk_file_pwrite is buffered */
	}
	pthread_mutex_unlock(&j->lock);
}

void crash_journal_start(struct crash_journal *j)
{
	j->observer = (struct vdisk_file_observer){ .event = observe, .opaque = j };
	__atomic_store_n(&active, j, __ATOMIC_RELEASE);
	vdisk_file_set_observer(&j->observer);
	engine_set_override(&crash_engine_ops);
}

void crash_journal_stop(struct crash_journal *j)
{
	(void)j;
	engine_set_override(NULL);
	vdisk_file_set_observer(NULL);
	__atomic_store_n(&active, NULL, __ATOMIC_RELEASE);
}

/* ---- crash states ---- */

static uint64_t next_rand(uint64_t *s)
{
	/* splitmix64 */
	uint64_t z = (*s += 0x9E3779B97F4A7C15ULL);
	z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
	z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
	return z ^ (z >> 31);
}

enum fate { FATE_DROP, FATE_KEEP, FATE_TEAR };

/* Writes (or zeroes, data NULL) the pieces of [off, off + len) the fate keeps. Returns
 * the end of the last byte written (0: none). */
static uint64_t apply_pieces(uint8_t *buf, uint64_t cap, const uint8_t *data, uint64_t off,
			     uint64_t len, enum fate fate, uint64_t *rng, bool *some_kept,
			     bool *some_dropped)
{
	uint64_t end = off + len, last = 0;
	for (uint64_t pos = off; pos < end;) {
		uint64_t piece_end = (pos / CRASH_PIECE + 1) * CRASH_PIECE;
		if (piece_end > end)
			piece_end = end;
		bool keep = fate == FATE_KEEP || (fate == FATE_TEAR && (next_rand(rng) & 1));
		if (keep && pos < cap) {
			uint64_t n = (piece_end < cap ? piece_end : cap) - pos;
			if (data)
				memcpy(buf + pos, data + (pos - off), n);
			else
				memset(buf + pos, 0, n);
			last = pos + n;
		}
		*some_kept |= keep;
		*some_dropped |= !keep;
		pos = piece_end;
	}
	return last;
}

void crash_journal_build(const struct crash_journal *j, unsigned file, uint64_t cut, uint64_t seed,
			 enum crash_policy policy, uint8_t *buf, uint64_t *size,
			 struct crash_stats *st)
{
	const struct tracked *t = &j->files[file];
	uint64_t rng = seed, cap = t->max_size;
	*st = (struct crash_stats){ 0 };

	/* D: the latest submission of an fdatasync of this file that completed before the
	 * cut. What completed before D is durable. */
	uint64_t d = 0;
	for (size_t i = 0; i < j->nops; i++) {
		const struct crash_op *op = &j->ops[i];
		if (op->file == file && op->kind == CRASH_SYNC && op->complete < cut &&
		    op->result == 0 && op->submit > d)
			d = op->submit;
	}
	st->last_flush = d;

	/* Size changes not covered by D persist as a prefix. */
	unsigned size_ops = 0;
	for (size_t i = 0; i < j->nops; i++) {
		const struct crash_op *op = &j->ops[i];
		if (op->file != file || op->submit >= cut || !op->sizes)
			continue;
		bool failed = op->complete != CRASH_NEVER && op->result < 0;
		bool durable = op->complete < d;
		size_ops += !failed && !durable;
	}
	unsigned prefix = policy == CRASH_KEEP_ALL   ? size_ops
			  : policy == CRASH_DROP_ALL ? 0
						     : (unsigned)(next_rand(&rng) % (size_ops + 1));
	st->size_ops = size_ops;
	st->size_kept = prefix;

	memcpy(buf, t->initial, t->initial_size);
	memset(buf + t->initial_size, 0, cap - t->initial_size);
	uint64_t cur = t->initial_size;	  /* extent of the content built so far */
	uint64_t final = t->initial_size; /* size by the size model */
	unsigned size_index = 0;
	for (size_t i = 0; i < j->nops; i++) {
		const struct crash_op *op = &j->ops[i];
		if (op->file != file || op->submit >= cut || op->kind == CRASH_SYNC)
			continue;
		if (op->complete != CRASH_NEVER && op->result < 0)
			continue; /* failed: taken as never done (fallocate modes a file system
				     lacks) */
		bool durable = op->complete < d;
		bool size_applies = durable;
		if (op->sizes && !durable)
			size_applies = size_index++ < prefix;
		if (op->sizes && size_applies) {
			if (op->kind == CRASH_TRUNCATE)
				final = op->offset;
			else if (op->offset + op->len > final)
				final = op->offset + op->len;
		}
		if (op->kind == CRASH_TRUNCATE) {
			if (durable || size_applies) {
				if (op->offset < cur)
					memset(buf + op->offset, 0, cur - op->offset);
				cur = op->offset;
			}
			if (durable)
				st->durable++;
			else
				st->pending++;
			continue;
		}
		bool zeroes = op->kind == CRASH_FALLOCATE &&
			      (op->mode & (FALLOC_FL_PUNCH_HOLE | FALLOC_FL_ZERO_RANGE));
		if (op->kind == CRASH_FALLOCATE && !zeroes) {
			st->durable += durable;
			st->pending += !durable;
			continue; /* allocation only: the content does not change */
		}
		enum fate fate = FATE_KEEP;
		if (durable) {
			st->durable++;
		} else {
			st->pending++;
			fate = policy == CRASH_KEEP_ALL	  ? FATE_KEEP
			       : policy == CRASH_DROP_ALL ? FATE_DROP
							  : (enum fate)(next_rand(&rng) % 3);
		}
		uint64_t len = op->len;
		if (zeroes && (op->mode & FALLOC_FL_KEEP_SIZE)) /* nothing happens past the end */
			len = op->offset >= cur	       ? 0
			      : op->offset + len > cur ? cur - op->offset
						       : len;
		bool kept = false, dropped = false;
		uint64_t last = apply_pieces(buf, cap, op->kind == CRASH_WRITE ? op->data : NULL,
					     op->offset, len, fate, &rng, &kept, &dropped);
		if (last > cur)
			cur = last;
		if (!durable) {
			st->kept += kept && !dropped;
			st->dropped += dropped && !kept;
			st->torn += kept && dropped;
		}
	}
	*size = final;
	if (final > cap)
		*size = cap; /* cannot happen: every size op counted in max_size */
}

int crash_write_file(const char *path, const uint8_t *buf, uint64_t len)
{
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	if (fd < 0)
		return -errno;
	int ret = 0;
	for (uint64_t done = 0; done < len;) {
		ssize_t n = pwrite(fd, buf + done, len - done, (off_t)done);
		if (n <= 0) {
			ret = n < 0 ? -errno : -EIO;
			break;
		}
		done += (uint64_t)n;
	}
	if (close(fd) != 0 && ret == 0)
		ret = -errno;
	return ret;
}
