/* The power-cut harness: for each image format of the table below, one random workload is
 * recorded through the crash engine (crash_engine.h), and many power cuts are then built
 * from that one recording and checked.
 *
 * The workload runs on one queue with up to DEPTH requests in flight: sector-aligned
 * writes of random sizes (allocating and overwriting, some across block boundaries),
 * unaligned writes where the format takes them, write-zeroes, discards, reads that check
 * the live image against a shadow copy, and a flush every few requests (submitted while
 * other requests are in flight). Requests in flight never share a sector, so the content
 * every request leaves is defined. Every request's submission and completion take a
 * number from the journal's sequence, so the model knows, for any cut, which requests had
 * completed and which flushes had.
 *
 * The expected content after a cut, per 512-byte sector: the value as of the last flush
 * that completed before the cut (what the writes that completed before that flush was
 * submitted left), plus the values of the requests submitted before the cut that are not
 * covered by it (in flight, or completed after that flush was submitted). A discard may
 * leave the old value, zeros or (differencing) the parent's. Each cut then:
 * 1. builds the image file the cut leaves (crash_journal_build: writes not covered by a
 *    completed fdatasync dropped, kept or torn at 4 KiB, size changes as a prefix),
 * 2. opens it read-write (a format with a log replays it), reads every sector and checks
 *    that it holds one of its acceptable values: that is both "every write acknowledged
 *    before the last completed flush reads back" and "no block reads data never written
 *    there",
 * 3. runs vdisk_check: no errors. Leaks (space no metadata references) are what a cut
 *    may legitimately leave behind (allocation extends the file before the metadata
 *    that uses it is durable); they are counted, not failed,
 * 4. for formats QEMU checks (VHDX; QEMU has no check for VHD), runs `qemu-img check`,
 *    which must exit 0 or report leaks only (3),
 * 5. every RECOVERY_EVERY-th cut also writes to the recovered image (allocating and
 *    overwriting), flushes, reopens and checks it: the image stays usable.
 *
 * Environment: HVSTACK_CRASH_POINTS (total cut points, default 1000, shared by the
 * formats present), HVSTACK_CRASH_SEED (default: from the clock; printed), HVSTACK_CRASH_ONLY
 * ("NAME" or "NAME:CUT" to rerun one format or one cut), HVSTACK_CRASH_JOBS (threads
 * checking cuts; default the CPU count, at most 4), HVSTACK_CRASH_QEMU_EVERY (run
 * qemu-img check on every n-th cut, default 2), HVSTACK_CRASH_VERBOSE=1 (print every
 * failure, not only the first five per format).
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <jansson.h>
#include <xxhash.h>

#include "crash_engine.h"
#include "format.h"
#include "test_util.h"
#include "vdisk.h"
#include "vhd.h"
#ifdef HV_CRASH_HAVE_VHDX
#include "vhdx.h"
#endif

#define KiB		   1024ull
#define MiB		   (1024 * KiB)
#define SECTOR		   512u
#define DEPTH		   16
#define MAX_VALUES	   6 /* acceptable values kept per sector; more: the sector is not checked */
#define RECOVERY_EVERY	   8
#define KEEP_FAILED_IMAGES 3

/* ---- the formats ---- */

struct crash_case {
	const char *name;
	const char *format;	 /* vdisk_create format; skipped when not registered */
	bool differencing;	 /* the image under test has a parent */
	uint64_t size;		 /* virtual size */
	uint32_t block_size;	 /* 0: the format's default */
	bool unaligned;		 /* byte-granular writes */
	const char *qemu_format; /* qemu-img check -f FORMAT; NULL: QEMU cannot check it */
	unsigned ops;		 /* requests in the recorded workload */
	unsigned weight;	 /* share of the cut points */
	const char *ext;
};

static const struct crash_case cases[] = {
	{ "vhd-dynamic", "vhd", false, 32 * MiB, 512 * KiB, true, NULL, 1500, 1, "vhd" },
	{ "vhd-differencing", "vhd", true, 32 * MiB, 512 * KiB, true, NULL, 1500, 1, "vhd" },
	{ "vhdx-dynamic", "vhdx", false, 32 * MiB, 1 * MiB, true, "vhdx", 1500, 1, "vhdx" },
	/* QEMU does not open differencing VHDX images */
	{ "vhdx-differencing", "vhdx", true, 32 * MiB, 1 * MiB, true, NULL, 1500, 1, "vhdx" },
};
#define NCASES (sizeof(cases) / sizeof(cases[0]))

/* ---- settings ---- */

static uint64_t master_seed;
static unsigned total_points = 1000;
static unsigned jobs = 2;
static unsigned qemu_every = 2;
static const char *only_case;
static long only_cut = -1;
static bool have_qemu;
static bool verbose; /* HVSTACK_CRASH_VERBOSE: every failure, not the first five */
static unsigned points_for[NCASES];

static uint64_t sector_hash(const uint8_t *p)
{
	return XXH3_64bits(p, SECTOR);
}

/* ---- the workload's record ---- */

enum wkind { W_WRITE, W_ZEROES, W_DISCARD, W_FLUSH, W_READ };

struct wop {
	enum wkind kind;
	uint64_t off, len;	   /* bytes */
	uint64_t first, count;	   /* sectors touched */
	uint64_t submit, complete; /* journal sequence */
	uint64_t *hash;		   /* WRITE, ZEROES: each sector's content after the request */
};

struct model {
	const struct crash_case *c;
	uint64_t size, nsec;
	uint64_t zero_hash;
	uint64_t *initial; /* each sector's hash before the workload */
	uint64_t *parent;  /* what a sector the image does not hold reads: parent or zeros */
	struct wop *ops;
	size_t nops, cap;
	uint8_t *shadow; /* the live content */
};

static struct wop *model_add(struct model *m, enum wkind kind, uint64_t off, uint64_t len)
{
	if (m->nops == m->cap) {
		m->cap = m->cap ? m->cap * 2 : 1024;
		m->ops = realloc(m->ops, sizeof(*m->ops) * m->cap);
		assert_non_null(m->ops);
	}
	struct wop *w = &m->ops[m->nops++];
	*w = (struct wop){ .kind = kind, .off = off, .len = len, .complete = CRASH_NEVER };
	if (len) {
		w->first = off / SECTOR;
		w->count = (off + len + SECTOR - 1) / SECTOR - w->first;
	}
	return w;
}

static void model_free(struct model *m)
{
	for (size_t i = 0; i < m->nops; i++)
		free(m->ops[i].hash);
	free(m->ops);
	free(m->initial);
	free(m->parent);
	free(m->shadow);
}

/* ---- images ---- */

/* Opens without the advisory lock: every cut is a private copy, and the worker threads
 * start `qemu-img check`; a forked child holds duplicates of all of this process's
 * descriptors (and so their flock) until it execs, which made a close-and-reopen in
 * another worker fail now and then with "in use". */
static struct vdisk *open_image(const char *path, bool read_only, enum vdisk_cache_mode cache,
				char *err, size_t err_size)
{
	struct vdisk_options o = {
		.read_only = read_only, .cache = cache, .queue_depth = 64, .no_lock = true
	};
	struct vdisk *disk = NULL;
	if (vdisk_open(path, &o, &disk, err, err_size) < 0)
		return NULL;
	return disk;
}

static struct vdisk *must_open(const char *path, bool read_only)
{
	char err[256];
	struct vdisk *disk = open_image(path, read_only, VDISK_CACHE_DIRECT, err, sizeof(err));
	if (!disk)
		fail_msg("open %s: %s", path, err);
	return disk;
}

static void must_create(const char *path, const struct crash_case *c, const char *parent)
{
	struct vdisk_create_options o = { .format = c->format,
					  .size = parent ? 0 : c->size,
					  .type = parent ? NULL : "dynamic",
					  .block_size = c->block_size,
					  .parent = parent,
					  .overwrite = true };
	char err[256];
	if (vdisk_create(path, &o, err, sizeof(err)) < 0)
		fail_msg("create %s: %s", path, err);
}

/* Writes count random pieces of pattern (seeded by seed) to an image, then closes it. */
static void populate(const char *path, unsigned count, uint64_t seed, uint64_t size)
{
	struct vdisk *disk = must_open(path, false);
	uint8_t *buf = malloc(1 * MiB);
	for (unsigned i = 0; i < count; i++) {
		uint64_t len = (test_rnd_below(&seed, 1 * MiB / SECTOR) + 1) * SECTOR;
		uint64_t off = test_rnd_below(&seed, (size - len) / SECTOR + 1) * SECTOR;
		test_fill_pattern(buf, len, off, (uint32_t)test_rnd(&seed));
		assert_int_equal(vdisk_pwrite(disk, buf, len, off), 0);
	}
	assert_int_equal(vdisk_flush_sync(disk), 0);
	vdisk_close(disk);
	free(buf);
}

/* Hashes of every sector of an image (and its content, when out is not NULL). */
static uint64_t *read_hashes(const char *path, uint64_t size, uint8_t *out)
{
	struct vdisk *disk = must_open(path, true);
	uint64_t *h = malloc(sizeof(*h) * (size / SECTOR));
	uint8_t *buf = malloc(1 * MiB);
	assert_non_null(h);
	for (uint64_t off = 0; off < size; off += 1 * MiB) {
		uint64_t n = size - off < 1 * MiB ? size - off : 1 * MiB;
		assert_int_equal(vdisk_pread(disk, buf, n, off), 0);
		for (uint64_t s = 0; s < n / SECTOR; s++)
			h[off / SECTOR + s] = sector_hash(buf + s * SECTOR);
		if (out)
			memcpy(out + off, buf, n);
	}
	free(buf);
	vdisk_close(disk);
	return h;
}

/* ---- recording ---- */

struct slot {
	bool used, done;
	int result;
	size_t wop;
	bool refresh; /* a discard's follow-up read: learns what the discard left */
	uint8_t *buf;
	struct iovec iov[3];
	int iovcnt;
	struct crash_journal *journal;
	struct model *m;
};

static void slot_done(void *opaque, int result)
{
	struct slot *s = opaque;
	s->done = true;
	s->result = result;
	if (!s->refresh)
		s->m->ops[s->wop].complete = crash_journal_mark(s->journal);
}

struct recorder {
	struct model *m;
	struct crash_journal *j;
	struct vdisk *disk;
	struct vdisk_queue *q;
	uint64_t rng;
	uint8_t *busy; /* per sector: a request in flight touches it */
	struct slot slots[DEPTH];
	unsigned inflight;
	unsigned until_flush;
	uint64_t last_off;
	unsigned issued;
};

static bool range_free(struct recorder *r, uint64_t first, uint64_t count)
{
	for (uint64_t s = first; s < first + count; s++)
		if (r->busy[s])
			return false;
	return true;
}

static void mark_busy(struct recorder *r, const struct wop *w, uint8_t v)
{
	memset(r->busy + w->first, v, w->count);
}

static struct slot *free_slot(struct recorder *r)
{
	for (unsigned i = 0; i < DEPTH; i++)
		if (!r->slots[i].used)
			return &r->slots[i];
	return NULL;
}

/* A random byte range for a request: mostly sector-aligned, near the last one written
 * (overwrites), anywhere below a frontier that moves from a fifth of the disk to its end
 * over the workload (so new blocks are allocated all along), or across a block boundary. */
static void pick_range(struct recorder *r, bool unaligned, uint64_t *off, uint64_t *len)
{
	const struct crash_case *c = r->m->c;
	uint64_t size = r->m->size, block = c->block_size ? c->block_size : 2 * MiB;
	uint64_t frontier = size / 5 + (size - size / 5) / c->ops * r->issued;
	if (frontier < block)
		frontier = block;
	if (unaligned) {
		*len = test_rnd_below(&r->rng, 3000) + 1;
		*off = test_rnd_below(&r->rng, frontier - *len);
		return;
	}
	uint64_t pick = test_rnd_below(&r->rng, 100), sectors;
	if (pick < 60)
		sectors = test_rnd_below(&r->rng, 16) + 1;
	else if (pick < 90)
		sectors = test_rnd_below(&r->rng, 112) + 16;
	else
		sectors = test_rnd_below(&r->rng, 896) + 128;
	*len = sectors * SECTOR;
	uint64_t where = test_rnd_below(&r->rng, 100), o;
	if (where < 35 && r->last_off >= 128 * KiB)
		o = r->last_off + test_rnd_below(&r->rng, 256 * KiB) - 128 * KiB;
	else if (where < 55)
		o = (test_rnd_below(&r->rng, frontier / block) + 1) * block -
		    test_rnd_below(&r->rng, 16) * SECTOR;
	else
		o = test_rnd_below(&r->rng, frontier);
	o = o / SECTOR * SECTOR;
	if (o > size - *len)
		o = (size - *len) / SECTOR * SECTOR;
	*off = o;
}

static void split_iov(struct recorder *r, struct slot *s, uint64_t len)
{
	uint64_t a = len > 2 ? test_rnd_below(&r->rng, len) : len;
	uint64_t b = a < len ? test_rnd_below(&r->rng, len - a) : 0;
	uint64_t parts[3] = { a, b, len - a - b }, pos = 0;
	s->iovcnt = 0;
	for (int k = 0; k < 3; k++) {
		if (!parts[k])
			continue;
		s->iov[s->iovcnt++] = (struct iovec){ s->buf + pos, parts[k] };
		pos += parts[k];
	}
}

/* Submits one request; false when the range it drew is busy (try again later). */
static bool submit_one(struct recorder *r)
{
	struct model *m = r->m;
	struct slot *s = free_slot(r);
	if (!s)
		return false;
	enum wkind kind;
	uint64_t pick = test_rnd_below(&r->rng, 100);
	bool unaligned = false;
	if (r->until_flush == 0)
		kind = W_FLUSH;
	else if (pick < 6)
		kind = W_READ;
	else if (pick < 13)
		kind = W_DISCARD;
	else if (pick < 18)
		kind = W_ZEROES;
	else {
		kind = W_WRITE;
		unaligned = m->c->unaligned && pick < 28;
	}
	uint64_t off = 0, len = 0;
	if (kind != W_FLUSH) {
		pick_range(r, unaligned, &off, &len);
		uint64_t first = off / SECTOR, count = (off + len + SECTOR - 1) / SECTOR - first;
		if (!range_free(r, first, count))
			return false;
	}
	*s = (struct slot){ .used = true, .wop = m->nops, .journal = r->j, .m = m };
	struct wop *w = model_add(m, kind, off, len);
	mark_busy(r, w, 1);
	int ret = 0;
	switch (kind) {
	case W_FLUSH:
		r->until_flush = (unsigned)test_rnd_below(&r->rng, 11) + 2;
		w->submit = crash_journal_mark(r->j);
		ret = vdisk_flush(r->disk, r->q, slot_done, s);
		break;
	case W_READ:
		s->buf = malloc(len);
		split_iov(r, s, len);
		w->submit = crash_journal_mark(r->j);
		ret = vdisk_readv(r->disk, r->q, s->iov, s->iovcnt, off, slot_done, s);
		break;
	case W_DISCARD:
		w->submit = crash_journal_mark(r->j);
		ret = vdisk_discard(r->disk, r->q, off, len, slot_done, s);
		r->until_flush--;
		break;
	case W_ZEROES:
	case W_WRITE:
		if (kind == W_WRITE) {
			s->buf = malloc(len);
			test_fill_pattern(s->buf, len, off,
					  (uint32_t)test_mix64(master_seed + m->nops));
			memcpy(m->shadow + off, s->buf, len);
			split_iov(r, s, len);
		} else {
			memset(m->shadow + off, 0, len);
		}
		w->hash = malloc(sizeof(*w->hash) * w->count);
		for (uint64_t k = 0; k < w->count; k++)
			w->hash[k] = sector_hash(m->shadow + (w->first + k) * SECTOR);
		r->last_off = off;
		w->submit = crash_journal_mark(r->j);
		if (kind == W_WRITE)
			ret = vdisk_writev(r->disk, r->q, s->iov, s->iovcnt, off, slot_done, s);
		else
			ret = vdisk_write_zeroes(r->disk, r->q, off, len, slot_done, s);
		r->until_flush--;
		break;
	}
	assert_int_equal(ret, 0);
	r->inflight++;
	r->issued++;
	return true;
}

/* What a discard left: each sector must read its old value, zeros or the parent's; the
 * shadow learns which. */
static void discard_refreshed(struct recorder *r, struct slot *s)
{
	struct model *m = r->m;
	const struct wop *w = &m->ops[s->wop];
	for (uint64_t k = 0; k < w->count; k++) {
		uint64_t sec = w->first + k;
		uint64_t h = sector_hash(s->buf + k * SECTOR);
		if (h != sector_hash(m->shadow + sec * SECTOR) && h != m->zero_hash &&
		    h != m->parent[sec])
			fail_msg("%s: sector %" PRIu64 " reads something else than its old data, "
				 "zeros or the parent's after a discard (seed %#" PRIx64 ")",
				 m->c->name, sec, master_seed);
	}
	memcpy(m->shadow + w->first * SECTOR, s->buf, w->count * SECTOR);
}

static void reap(struct recorder *r)
{
	struct model *m = r->m;
	for (unsigned i = 0; i < DEPTH; i++) {
		struct slot *s = &r->slots[i];
		if (!s->used || !s->done)
			continue;
		struct wop *w = &m->ops[s->wop];
		if (s->result != 0)
			fail_msg("%s: request %zu (kind %d, %" PRIu64 "+%" PRIu64 ") failed: %s",
				 m->c->name, s->wop, (int)w->kind, w->off, w->len,
				 strerror(-s->result));
		if (w->kind == W_READ && memcmp(s->buf, m->shadow + w->off, w->len) != 0)
			fail_msg("%s: a read of %" PRIu64 "+%" PRIu64 " differs from what was "
				 "written (no crash involved; seed %#" PRIx64 ")",
				 m->c->name, w->off, w->len, master_seed);
		if (w->kind == W_DISCARD && !s->refresh) {
			/* read back what the discard left, the range still reserved */
			s->refresh = true;
			s->done = false;
			s->buf = malloc(w->count * SECTOR);
			s->iov[0] = (struct iovec){ s->buf, w->count * SECTOR };
			assert_int_equal(vdisk_readv(r->disk, r->q, s->iov, 1, w->first * SECTOR,
						     slot_done, s),
					 0);
			continue;
		}
		if (w->kind == W_DISCARD)
			discard_refreshed(r, s);
		mark_busy(r, w, 0);
		free(s->buf);
		s->used = false;
		r->inflight--;
	}
}

/* Opens the image under the crash engine, runs the workload, flushes and closes. */
static void record(struct model *m, struct crash_journal *j, const char *path, uint64_t seed)
{
	struct recorder *r = calloc(1, sizeof(*r));
	r->m = m;
	r->j = j;
	r->rng = seed;
	r->busy = calloc(1, m->nsec);
	r->until_flush = 3;
	crash_journal_start(j);
	r->disk = must_open(path, false);
	assert_string_equal(vdisk_engine_name(r->disk), "crash-sync");
	r->q = vdisk_queue(r->disk, 0);
	while (r->issued < m->c->ops || r->inflight) {
		reap(r);
		unsigned tries = 0;
		while (r->issued < m->c->ops && r->inflight < DEPTH && tries++ < 4)
			submit_one(r);
		if (r->inflight)
			assert_true(vdisk_queue_poll(r->q, 1) >= 0);
	}
	struct wop *w = model_add(m, W_FLUSH, 0, 0);
	w->submit = crash_journal_mark(j);
	assert_int_equal(vdisk_flush_sync(r->disk), 0);
	w = &m->ops[m->nops - 1];
	w->complete = crash_journal_mark(j);
	vdisk_close(r->disk);
	crash_journal_stop(j);
	free(r->busy);
	free(r);
}

/* ---- checking one cut ---- */

struct values {
	uint8_t n; /* > MAX_VALUES: too many to keep, not checked */
	uint64_t v[MAX_VALUES];
};

static void values_add(struct values *s, uint64_t h)
{
	if (s->n > MAX_VALUES)
		return;
	for (unsigned i = 0; i < s->n; i++)
		if (s->v[i] == h)
			return;
	if (s->n == MAX_VALUES) {
		s->n = MAX_VALUES + 1;
		return;
	}
	s->v[s->n++] = h;
}

static bool values_has(const struct values *s, uint64_t h)
{
	if (s->n > MAX_VALUES)
		return true;
	for (unsigned i = 0; i < s->n; i++)
		if (s->v[i] == h)
			return true;
	return false;
}

/* The acceptable values of every sector after a cut at `cut`. Returns D, the submission
 * of the last request-level flush completed before the cut. */
static uint64_t acceptable(const struct model *m, uint64_t cut, struct values *vals,
			   unsigned *unchecked)
{
	uint64_t d = 0;
	for (size_t i = 0; i < m->nops; i++) {
		const struct wop *w = &m->ops[i];
		if (w->kind == W_FLUSH && w->complete < cut && w->submit > d)
			d = w->submit;
	}
	for (uint64_t s = 0; s < m->nsec; s++) {
		vals[s].n = 1;
		vals[s].v[0] = m->initial[s];
	}
	for (size_t i = 0; i < m->nops; i++) {
		const struct wop *w = &m->ops[i];
		if (w->submit >= cut || w->kind == W_FLUSH || w->kind == W_READ)
			continue;
		/* Requests in flight never share a sector: one that completed before D was
		 * followed, on its sectors, only by requests that started after it. */
		bool required = w->complete < d;
		for (uint64_t k = 0; k < w->count; k++) {
			struct values *v = &vals[w->first + k];
			if (w->kind == W_DISCARD) {
				values_add(v, m->zero_hash);
				values_add(v, m->parent[w->first + k]);
			} else if (required) {
				v->n = 1;
				v->v[0] = w->hash[k];
			} else {
				values_add(v, w->hash[k]);
			}
		}
	}
	*unchecked = 0;
	for (uint64_t s = 0; s < m->nsec; s++)
		*unchecked += vals[s].n > MAX_VALUES;
	return d;
}

/* Names what a sector holds, for failure messages. */
static void describe_value(const struct model *m, uint64_t sec, uint64_t h, uint64_t cut, char *out,
			   size_t size)
{
	if (h == m->zero_hash) {
		snprintf(out, size, "zeros");
		return;
	}
	if (h == m->initial[sec]) {
		snprintf(out, size, "its data from before the workload");
		return;
	}
	if (h == m->parent[sec]) {
		snprintf(out, size, "the parent's data");
		return;
	}
	for (size_t i = m->nops; i-- > 0;) {
		const struct wop *w = &m->ops[i];
		if (!w->hash || sec < w->first || sec >= w->first + w->count ||
		    w->hash[sec - w->first] != h)
			continue;
		snprintf(out, size,
			 "the data of request %zu (submitted at %" PRIu64 ", %s the cut)", i,
			 w->submit, w->submit < cut ? "before" : "after");
		return;
	}
	snprintf(out, size, "data never written there");
}

enum failure_kind {
	FAIL_NONE,
	FAIL_OPEN,     /* the image does not open */
	FAIL_DATA,     /* a sector holds an unacceptable value */
	FAIL_CHECK,    /* vdisk check reports errors */
	FAIL_RECOVERY, /* writing to the recovered image went wrong */
	FAIL_QEMU,     /* qemu-img check disagrees */
	FAIL_OTHER,
	FAIL_KINDS
};
static const char *const failure_names[FAIL_KINDS] = {
	"",	"does not open", "wrong data", "check errors", "recovery writes", "qemu-img check",
	"other"
};

struct outcome {
	bool failed;
	enum failure_kind kind;
	char message[1536];
	unsigned leaks; /* leak findings */
	bool qemu_checked;
	bool recovery_checked;
	struct crash_stats stats;
	bool before_flush;  /* no request-level flush had completed */
	unsigned unchecked; /* sectors with more than MAX_VALUES acceptable values */
};

static void failf(struct outcome *o, enum failure_kind kind, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

static void failf(struct outcome *o, enum failure_kind kind, const char *fmt, ...)
{
	if (o->failed)
		return;
	o->failed = true;
	o->kind = kind;
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(o->message, sizeof(o->message), fmt, ap);
	va_end(ap);
}

struct runner {
	const struct crash_case *c;
	const struct model *m;
	const struct crash_journal *j;
	unsigned top; /* journal index of the image under test */
	const char *dir;
	unsigned points;
	unsigned next; /* next cut to take */
	pthread_mutex_t lock;
	struct outcome *outcomes;
	size_t *special; /* journal indexes of syncs, size changes, writes outside the engine */
	size_t nspecial;
	unsigned kept_images; /* of failed cuts, at most KEEP_FAILED_IMAGES */
};

static uint64_t cut_seed(const struct crash_case *c, unsigned index)
{
	return test_mix64(master_seed ^ test_mix64((uint64_t)(c - cases) + 1) ^
			  test_mix64(index + 0x1000));
}

static void check_sectors(const struct model *m, struct vdisk *disk, const struct values *vals,
			  uint64_t cut, uint64_t d, uint8_t *buf, struct outcome *o)
{
	for (uint64_t off = 0; off < m->size && !o->failed; off += 1 * MiB) {
		uint64_t n = m->size - off < 1 * MiB ? m->size - off : 1 * MiB;
		int ret = vdisk_pread(disk, buf, n, off);
		if (ret < 0) {
			failf(o, FAIL_DATA, "reading %" PRIu64 "+%" PRIu64 " failed: %s", off, n,
			      strerror(-ret));
			return;
		}
		for (uint64_t k = 0; k < n / SECTOR; k++) {
			uint64_t sec = off / SECTOR + k, h = sector_hash(buf + k * SECTOR);
			if (values_has(&vals[sec], h))
				continue;
			char got[160], want[160];
			describe_value(m, sec, h, cut, got, sizeof(got));
			describe_value(m, sec, vals[sec].v[0], cut, want, sizeof(want));
			failf(o, FAIL_DATA,
			      "sector %" PRIu64 " (byte %" PRIu64 ") holds %s; acceptable: %u "
			      "value(s), the first %s (last completed flush submitted at %" PRIu64
			      ")",
			      sec, sec * SECTOR, got, vals[sec].n, want, d);
			return;
		}
	}
}

static void check_findings(struct vdisk *disk, struct outcome *o, enum failure_kind kind,
			   const char *when)
{
	struct vdisk_check_result r;
	int ret = vdisk_check(disk, 0, &r);
	if (ret < 0) {
		failf(o, kind, "vdisk check %s failed: %s", when, strerror(-ret));
	} else if (r.errors) {
		char *text = json_dumps(r.findings, JSON_COMPACT);
		failf(o, kind, "vdisk check %s: %u error(s): %s", when, r.errors,
		      text ? text : "?");
		free(text);
	}
	o->leaks += r.leaks;
	json_decref(r.findings);
}

/* Writes to the recovered image (an allocating and an overwriting range), flushes,
 * reopens it and checks that the writes are there and that check finds no error. */
static void recovery_writes(const struct crash_case *c, struct vdisk *disk, const char *path,
			    uint64_t seed, uint64_t size, struct outcome *o)
{
	uint64_t offs[3] = { 64 * KiB + test_rnd_below(&seed, (size - 192 * KiB) / SECTOR) * SECTOR,
			     0, size - 64 * KiB };
	uint8_t *want = malloc(3 * 32 * KiB), *got = malloc(32 * KiB);
	for (int i = 0; i < 3; i++) {
		test_fill_pattern(want + i * 32 * KiB, 32 * KiB, offs[i], (uint32_t)seed + i);
		int ret = vdisk_pwrite(disk, want + i * 32 * KiB, 32 * KiB, offs[i]);
		if (ret < 0)
			failf(o, FAIL_RECOVERY, "recovery write at %" PRIu64 " failed: %s", offs[i],
			      strerror(-ret));
	}
	int ret = vdisk_flush_sync(disk);
	if (ret < 0)
		failf(o, FAIL_RECOVERY, "recovery flush failed: %s", strerror(-ret));
	vdisk_close(disk);
	char err[256];
	disk = open_image(path, false, VDISK_CACHE_WRITEBACK, err, sizeof(err));
	if (!disk) {
		failf(o, FAIL_RECOVERY, "reopening after the recovery writes failed: %s", err);
		goto out;
	}
	for (int i = 0; i < 3 && !o->failed; i++) {
		ret = vdisk_pread(disk, got, 32 * KiB, offs[i]);
		if (ret < 0 || memcmp(got, want + i * 32 * KiB, 32 * KiB) != 0)
			failf(o, FAIL_RECOVERY,
			      "%s: a recovery write at %" PRIu64 " does not read back", c->name,
			      offs[i]);
	}
	check_findings(disk, o, FAIL_RECOVERY, "after recovery writes");
	vdisk_close(disk);
	o->recovery_checked = true;
out:
	free(want);
	free(got);
}

static void qemu_check(const struct crash_case *c, const char *path, struct outcome *o)
{
	char out[2048];
	int ret = test_run(out, sizeof(out), "qemu-img check -f %s '%s'", c->qemu_format, path);
	o->qemu_checked = true;
	if (ret != 0 && ret != 3) /* 3: leaks only */
		failf(o, FAIL_QEMU, "qemu-img check exited %d: %s", ret, out);
}

/* Where a cut falls: anywhere in the recording (three in four), or right around one of
 * the rarer operations where ordering matters most: an fdatasync, a size change, a write
 * outside the engine. */
static uint64_t pick_cut(const struct runner *run, uint64_t *rng)
{
	uint64_t end = crash_journal_end(run->j);
	if (test_rnd_below(rng, 4) != 0 || run->nspecial == 0)
		return test_rnd_below(rng, end + 1);
	const struct crash_op *op =
		crash_journal_op(run->j, run->special[test_rnd_below(rng, run->nspecial)]);
	uint64_t at =
		test_rnd_below(rng, 2) && op->complete != CRASH_NEVER ? op->complete : op->submit;
	at += test_rnd_below(rng, 3); /* just before it, or one or two events later */
	return at > end ? end : at;
}

/* Builds, opens and checks the image a cut leaves. Keeps the image of a failed cut. */
static void check_cut(struct runner *run, unsigned index, uint8_t *file_buf, struct values *vals,
		      uint8_t *read_buf, unsigned worker)
{
	const struct crash_case *c = run->c;
	const struct model *m = run->m;
	struct outcome *o = &run->outcomes[index];
	uint64_t seed = cut_seed(c, index), rng = seed;
	uint64_t cut = pick_cut(run, &rng);
	uint64_t pick = test_rnd_below(&rng, 4);
	enum crash_policy policy = pick == 0   ? CRASH_KEEP_ALL
				   : pick == 1 ? CRASH_DROP_ALL
					       : CRASH_MIXED;
	char path[700];
	snprintf(path, sizeof(path), "%s/cut-w%u.%s", run->dir, worker, c->ext);
	uint64_t size;
	crash_journal_build(run->j, run->top, cut, test_rnd(&rng), policy, file_buf, &size,
			    &o->stats);
	int ret = crash_write_file(path, file_buf, size);
	if (ret < 0) {
		failf(o, FAIL_OTHER, "writing %s: %s", path, strerror(-ret));
		return;
	}
	uint64_t d = acceptable(m, cut, vals, &o->unchecked);
	o->before_flush = d == 0;

	char err[256];
	struct vdisk *disk = open_image(path, false, VDISK_CACHE_WRITEBACK, err, sizeof(err));
	if (!disk) {
		failf(o, FAIL_OPEN, "the image does not open: %s", err);
	} else {
		check_sectors(m, disk, vals, cut, d, read_buf, o);
		if (!o->failed)
			check_findings(disk, o, FAIL_CHECK, "after the cut");
		if (!o->failed && index % RECOVERY_EVERY == 0)
			recovery_writes(c, disk, path, seed, m->size, o);
		else
			vdisk_close(disk);
	}
	if (!o->failed && c->qemu_format && have_qemu && index % qemu_every == 0)
		qemu_check(c, path, o);
	if (o->failed) {
		char kept[760], msg[1200];
		pthread_mutex_lock(&run->lock);
		bool keep = run->kept_images < KEEP_FAILED_IMAGES;
		run->kept_images += keep;
		pthread_mutex_unlock(&run->lock);
		if (keep) {
			snprintf(kept, sizeof(kept), "%s/failed-%s-cut%u.%s", run->dir, c->name,
				 index, c->ext);
			rename(path, kept);
		} else {
			snprintf(kept, sizeof(kept), "(not kept: only the first %d are)",
				 KEEP_FAILED_IMAGES);
			unlink(path);
		}
		snprintf(msg, sizeof(msg), "%.1100s", o->message);
		snprintf(o->message, sizeof(o->message),
			 "%s: cut %u at sequence %" PRIu64 " of %" PRIu64 " (policy %s, %u pending "
			 "file operations, size changes %u/%u kept): %.1000s\n    image kept as "
			 "%.200s\n"
			 "    reproduce: HVSTACK_CRASH_SEED=%#" PRIx64 " HVSTACK_CRASH_ONLY=%s:%u",
			 c->name, index, cut, crash_journal_end(run->j),
			 policy == CRASH_KEEP_ALL   ? "keep-all"
			 : policy == CRASH_DROP_ALL ? "drop-all"
						    : "mixed",
			 o->stats.pending, o->stats.size_kept, o->stats.size_ops, msg, kept,
			 master_seed, c->name, index);
	} else {
		unlink(path);
	}
}

struct worker_arg {
	struct runner *run;
	unsigned id;
};

static void *worker(void *p)
{
	struct worker_arg *a = p;
	struct runner *run = a->run;
	uint8_t *file_buf = malloc(crash_journal_max_size(run->j, run->top) + 1);
	struct values *vals = malloc(sizeof(*vals) * run->m->nsec);
	uint8_t *read_buf = malloc(1 * MiB);
	for (;;) {
		pthread_mutex_lock(&run->lock);
		unsigned index = run->next++;
		pthread_mutex_unlock(&run->lock);
		if (index >= run->points)
			break;
		if (only_cut >= 0 && index != (unsigned)only_cut)
			continue;
		check_cut(run, index, file_buf, vals, read_buf, a->id);
	}
	free(file_buf);
	free(vals);
	free(read_buf);
	return NULL;
}

/* ---- one format ---- */

static bool case_selected(const struct crash_case *c)
{
	if (!only_case)
		return true;
	size_t n = strcspn(only_case, ":");
	return strlen(c->name) == n && strncmp(c->name, only_case, n) == 0;
}

/* The recording must reproduce the real file: the journal saw every change. */
static void check_recording(struct crash_journal *j, unsigned top, const char *path)
{
	assert_int_equal(crash_journal_untracked(j), 0);
	assert_int_equal(crash_journal_unsupported(j), 0);
	uint64_t cap = crash_journal_max_size(j, top), size;
	uint8_t *built = malloc(cap + 1), *real = malloc(cap + 1);
	struct crash_stats st;
	crash_journal_build(j, top, crash_journal_end(j), 0, CRASH_KEEP_ALL, built, &size, &st);
	FILE *f = fopen(path, "rb");
	assert_non_null(f);
	size_t n = fread(real, 1, cap + 1, f);
	fclose(f);
	if (n != size)
		fail_msg("the journal rebuilds %s with %" PRIu64 " bytes, the file has %zu", path,
			 size, n);
	for (uint64_t i = 0; i < size; i++)
		if (built[i] != real[i])
			fail_msg("the journal rebuilds byte %" PRIu64 " of %s as %02x, the file "
				 "has %02x: a change escaped the recording",
				 i, path, built[i], real[i]);
	free(built);
	free(real);
}

static void test_case(void **state)
{
	const struct crash_case *c = *state;
	if (!vdisk_format_find(c->format)) {
		printf("%s: SKIPPED: the %s format is not registered (its driver is not built "
		       "yet)\n",
		       c->name, c->format);
		skip();
	}
	if (!case_selected(c) || points_for[c - cases] == 0)
		skip();
	if (c->qemu_format && !have_qemu)
		printf("%s: qemu-img not found: its check is skipped\n", c->name);
	struct timespec t0, t1, t2;
	clock_gettime(CLOCK_MONOTONIC, &t0);

	char top[600], parent[600];
	snprintf(top, sizeof(top), "%s", test_path(c->differencing ? "child" : "image"));
	snprintf(parent, sizeof(parent), "%s", test_path("parent"));
	strcat(top, ".");
	strcat(top, c->ext);
	strcat(parent, ".");
	strcat(parent, c->ext);
	uint64_t seed = test_mix64(master_seed ^ (uint64_t)(c - cases));

	struct model m = { .c = c, .size = c->size, .nsec = c->size / SECTOR };
	uint8_t zero[SECTOR] = { 0 };
	m.zero_hash = sector_hash(zero);
	if (c->differencing) {
		must_create(parent, c, NULL);
		populate(parent, 24, seed + 1, c->size);
		must_create(top, c, parent);
		populate(top, 6, seed + 2, c->size);
		m.parent = read_hashes(parent, c->size, NULL);
	} else {
		must_create(top, c, NULL);
		populate(top, 10, seed + 2, c->size);
		m.parent = calloc(m.nsec, sizeof(*m.parent));
		for (uint64_t s = 0; s < m.nsec; s++)
			m.parent[s] = m.zero_hash;
	}
	m.shadow = malloc(c->size);
	m.initial = read_hashes(top, c->size, m.shadow);

	struct stat st;
	assert_int_equal(stat(top, &st), 0);
	uint64_t initial_file_size = (uint64_t)st.st_size;
	struct crash_journal *j;
	assert_int_equal(crash_journal_create(&j), 0);
	int top_index = crash_journal_track(j, top);
	assert_true(top_index >= 0);
	record(&m, j, top, seed + 3);
	check_recording(j, (unsigned)top_index, top);
	assert_int_equal(stat(top, &st), 0);
	uint64_t final_file_size = (uint64_t)st.st_size;
	/* the image as the workload left it reads the shadow */
	uint64_t *final = read_hashes(top, c->size, NULL);
	for (uint64_t s = 0; s < m.nsec; s++)
		if (final[s] != sector_hash(m.shadow + s * SECTOR))
			fail_msg("%s: after the workload sector %" PRIu64 " differs from what was "
				 "written (seed %#" PRIx64 ")",
				 c->name, s, master_seed);
	free(final);
	clock_gettime(CLOCK_MONOTONIC, &t1);

	struct runner run = { .c = c,
			      .m = &m,
			      .j = j,
			      .top = (unsigned)top_index,
			      .dir = test_tmpdir(),
			      .points = points_for[c - cases] };
	pthread_mutex_init(&run.lock, NULL);
	run.outcomes = calloc(run.points, sizeof(*run.outcomes));
	run.special = malloc(sizeof(*run.special) * (crash_journal_count(j) + 1));
	unsigned syncs = 0, resizes = 0, outside = 0;
	uint64_t last_resize = 0;
	for (size_t i = 0; i < crash_journal_count(j); i++) {
		const struct crash_op *op = crash_journal_op(j, i);
		if (op->sizes)
			last_resize = op->submit;
		syncs += op->kind == CRASH_SYNC;
		resizes += op->sizes;
		outside += !op->via_engine && op->kind == CRASH_WRITE;
		if (op->kind == CRASH_SYNC || op->sizes || !op->via_engine)
			run.special[run.nspecial++] = i;
	}
	unsigned nthreads = jobs < run.points ? jobs : run.points;
	pthread_t threads[16];
	struct worker_arg args[16];
	for (unsigned i = 0; i < nthreads; i++) {
		args[i] = (struct worker_arg){ &run, i };
		assert_int_equal(pthread_create(&threads[i], NULL, worker, &args[i]), 0);
	}
	for (unsigned i = 0; i < nthreads; i++)
		pthread_join(threads[i], NULL);
	clock_gettime(CLOCK_MONOTONIC, &t2);

	unsigned checked = 0, failures = 0, leaky = 0, qemu = 0, recovery = 0, before_flush = 0;
	unsigned with_pending = 0, size_partial = 0, by_kind[FAIL_KINDS] = { 0 };
	uint64_t kept = 0, dropped = 0, torn = 0, unchecked = 0;
	const char *first_failure = NULL;
	for (unsigned i = 0; i < run.points; i++) {
		const struct outcome *o = &run.outcomes[i];
		if (only_cut >= 0 && i != (unsigned)only_cut)
			continue;
		checked++;
		if (o->failed) {
			failures++;
			by_kind[o->kind]++;
			if (!first_failure)
				first_failure = o->message;
			if (failures <= 5 || verbose)
				printf("FAILED %s\n", o->message);
		}
		leaky += o->leaks > 0;
		qemu += o->qemu_checked;
		recovery += o->recovery_checked;
		before_flush += o->before_flush;
		with_pending += o->stats.pending > 0;
		size_partial += o->stats.size_kept < o->stats.size_ops;
		kept += o->stats.kept;
		dropped += o->stats.dropped;
		torn += o->stats.torn;
		unchecked += o->unchecked;
	}
	double rec_s = (double)(t1.tv_sec - t0.tv_sec) + (double)(t1.tv_nsec - t0.tv_nsec) / 1e9;
	double cut_s = (double)(t2.tv_sec - t1.tv_sec) + (double)(t2.tv_nsec - t1.tv_nsec) / 1e9;
	printf("%s: %u cut points, %u consistent (%u failures), %u with leaks\n", c->name, checked,
	       checked - failures, failures, leaky);
	printf("    workload: %zu requests, %zu file operations (%u fdatasync, %u size changes, "
	       "%u writes outside the engine; the last size change at %u%% of the recording), "
	       "image file %.1f -> %.1f MiB; recorded in %.1f s, cuts checked in %.1f s with %u "
	       "threads\n",
	       m.nops, crash_journal_count(j), syncs, resizes, outside,
	       (unsigned)(last_resize * 100 / crash_journal_end(j)),
	       (double)initial_file_size / MiB, (double)final_file_size / MiB, rec_s, cut_s,
	       nthreads);
	printf("    crash states: %u with unflushed file operations (%" PRIu64 " kept, %" PRIu64
	       " dropped, %" PRIu64 " torn), %u with size changes partly lost, %u before the "
	       "first flush; %" PRIu64 " sector checks skipped (more than %d acceptable "
	       "values); %u recovery-write checks; qemu-img check: %s%u\n",
	       with_pending, kept, dropped, torn, size_partial, before_flush, unchecked, MAX_VALUES,
	       recovery, c->qemu_format ? "" : "not supported for this format, ", qemu);
	if (failures) {
		printf("    failures by kind:");
		for (unsigned k = 1; k < FAIL_KINDS; k++)
			if (by_kind[k])
				printf(" %s %u;", failure_names[k], by_kind[k]);
		printf("\n");
	}
	fflush(stdout);
	pthread_mutex_destroy(&run.lock);
	if (failures) {
		char msg[sizeof(run.outcomes[0].message)];
		snprintf(msg, sizeof(msg), "%s", first_failure);
		free(run.outcomes);
		free(run.special);
		crash_journal_free(j);
		model_free(&m);
		fail_msg("%s: %u of %u cut points inconsistent; first: %s", c->name, failures,
			 checked, msg);
	}
	free(run.outcomes);
	free(run.special);
	crash_journal_free(j);
	model_free(&m);
	unlink(top);
	unlink(parent);
}

static unsigned env_unsigned(const char *name, unsigned dflt, unsigned min)
{
	const char *v = getenv(name);
	if (!v || !*v)
		return dflt;
	char *end;
	unsigned long n = strtoul(v, &end, 0);
	if (*end || n < min) {
		fprintf(stderr, "%s=%s: expected a number >= %u\n", name, v, min);
		exit(2);
	}
	return (unsigned)n;
}

int main(void)
{
	vhd_register();
#ifdef HV_CRASH_HAVE_VHDX
	vhdx_register();
#endif
	master_seed = test_env_seed("HVSTACK_CRASH_SEED");
	total_points = env_unsigned("HVSTACK_CRASH_POINTS", 1000, 1);
	long cpus = sysconf(_SC_NPROCESSORS_ONLN);
	jobs = env_unsigned("HVSTACK_CRASH_JOBS", cpus < 1 ? 1 : cpus > 4 ? 4 : (unsigned)cpus, 1);
	if (jobs > 16)
		jobs = 16;
	qemu_every = env_unsigned("HVSTACK_CRASH_QEMU_EVERY", 2, 1);
	verbose = env_unsigned("HVSTACK_CRASH_VERBOSE", 0, 0) != 0;
	only_case = getenv("HVSTACK_CRASH_ONLY");
	if (only_case && !*only_case)
		only_case = NULL;
	if (only_case && strchr(only_case, ':'))
		only_cut = strtol(strchr(only_case, ':') + 1, NULL, 10);
	have_qemu = test_run(NULL, 0, "command -v qemu-img >/dev/null") == 0;

	/* The cut points go to the formats present, by weight. */
	unsigned weights = 0;
	for (unsigned i = 0; i < NCASES; i++)
		if (vdisk_format_find(cases[i].format) && case_selected(&cases[i]))
			weights += cases[i].weight;
	for (unsigned i = 0, given = 0, w = 0; i < NCASES; i++) {
		if (!vdisk_format_find(cases[i].format) || !case_selected(&cases[i]))
			continue;
		w += cases[i].weight;
		unsigned upto = (unsigned)((uint64_t)total_points * w / weights);
		points_for[i] = upto - given;
		given = upto;
	}
	if (only_cut >= 0)
		for (unsigned i = 0; i < NCASES; i++)
			if (points_for[i] && points_for[i] <= (unsigned)only_cut)
				points_for[i] = (unsigned)only_cut + 1;
	printf("power-cut harness: seed %#" PRIx64 " (HVSTACK_CRASH_SEED), %u cut points "
	       "(HVSTACK_CRASH_POINTS), %u threads\n",
	       master_seed, total_points, jobs);
	fflush(stdout);

	struct CMUnitTest tests[NCASES];
	for (unsigned i = 0; i < NCASES; i++)
		tests[i] = (struct CMUnitTest){ .name = cases[i].name,
						.test_func = test_case,
						.initial_state = (void *)&cases[i] };
	int failed = cmocka_run_group_tests_name("crash", tests, NULL, NULL);
	if (failed == 0)
		test_tmpdir_remove();
	else
		printf("images of failed cuts are kept in %s\n", test_tmpdir());
	return failed;
}
