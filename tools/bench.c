#include "bench.h"

#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>

static const char *const pattern_names[] = {
	[BENCH_RANDREAD] = "randread", [BENCH_RANDWRITE] = "randwrite", [BENCH_RANDRW] = "randrw",
	[BENCH_READ] = "read",	       [BENCH_WRITE] = "write",		[BENCH_RW] = "rw",
};

bool bench_pattern_parse(const char *text, enum bench_pattern *out)
{
	for (unsigned i = 0; i < sizeof(pattern_names) / sizeof(pattern_names[0]); i++) {
		if (!strcmp(text, pattern_names[i])) {
			*out = (enum bench_pattern)i;
			return true;
		}
	}
	if (!strcmp(text, "readwrite")) { /* fio's other name for rw */
		*out = BENCH_RW;
		return true;
	}
	return false;
}

const char *bench_pattern_name(enum bench_pattern p)
{
	return pattern_names[p];
}

bool bench_pattern_random(enum bench_pattern p)
{
	return p == BENCH_RANDREAD || p == BENCH_RANDWRITE || p == BENCH_RANDRW;
}

struct worker;

struct slot {
	struct worker *w;
	struct iovec iov;
	uint64_t offset;
	uint64_t start_ns;
	bool write;
};

#define HUGE_PAGE (2u << 20)

struct worker {
	pthread_t thread;
	struct vdisk *disk;
	struct vdisk_queue *queue;
	const struct bench_params *p;
	atomic_uint_fast64_t *issued; /* shared request budget in --ios mode */
	struct slot *slots;
	uint8_t *buffers; /* every slot's buffer, one after the other */
	size_t buffers_len;
	uint64_t rng;
	uint64_t region_start, region_blocks;
	uint64_t region_steps, next_step; /* sequential: positions stride apart */
	uint64_t stride;
	uint64_t measure_start_ns, end_ns, last_ns;
	unsigned unsubmitted; /* queued since the last kick */
	unsigned writes_since_flush, flushes_inflight;
	bool stopping;
	int error;
	uint64_t error_offset;
	struct bench_side read, write;
};

static uint64_t now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ULL + (uint64_t)ts.tv_nsec;
}

static uint64_t next_random(struct worker *w)
{
	/* xorshift64* */
	w->rng ^= w->rng >> 12;
	w->rng ^= w->rng << 25;
	w->rng ^= w->rng >> 27;
	return w->rng * 0x2545F4914F6CDD1DULL;
}

static bool pick_write(struct worker *w)
{
	switch (w->p->pattern) {
	case BENCH_RANDREAD:
	case BENCH_READ:
		return false;
	case BENCH_RANDWRITE:
	case BENCH_WRITE:
		return true;
	default:
		return next_random(w) % 100 >= w->p->read_pct;
	}
}

static uint64_t pick_offset(struct worker *w)
{
	if (bench_pattern_random(w->p->pattern))
		return w->region_start + next_random(w) % w->region_blocks * w->p->block_size;
	uint64_t step = w->next_step;
	w->next_step = (w->next_step + 1) % w->region_steps;
	return w->region_start + step * w->stride;
}

static bool budget_left(struct worker *w)
{
	if (!w->p->ios)
		return true;
	return atomic_fetch_add(w->issued, 1) < w->p->ios;
}

static void on_complete(void *opaque, int result);

static void issue(struct worker *w, struct slot *s, uint64_t now)
{
	if (w->stopping || !budget_left(w)) {
		w->stopping = true;
		return;
	}
	s->write = pick_write(w);
	s->offset = pick_offset(w);
	s->start_ns = now;
	int ret = s->write ? vdisk_writev(w->disk, w->queue, &s->iov, 1, s->offset, on_complete, s)
			   : vdisk_readv(w->disk, w->queue, &s->iov, 1, s->offset, on_complete, s);
	/* Like fio's iodepth_batch_submit: hand requests to the kernel once enough are queued. */
	if (ret == 0 && ++w->unsubmitted >= w->p->batch) {
		vdisk_queue_kick(w->queue);
		w->unsubmitted = 0;
	}
	if (ret < 0 && !w->error) {
		w->error = ret;
		w->error_offset = s->offset;
		w->stopping = true;
	}
}

static void on_flush(void *opaque, int result)
{
	struct worker *w = opaque;
	w->flushes_inflight--;
	if (result < 0 && !w->error) {
		w->error = result;
		w->stopping = true;
	}
}

/* Like fio's fsync=N: a flush after every N completed writes (not waited for). */
static void maybe_flush(struct worker *w)
{
	if (!w->p->fsync_every || ++w->writes_since_flush < w->p->fsync_every || w->stopping)
		return;
	w->writes_since_flush = 0;
	if (vdisk_flush(w->disk, w->queue, on_flush, w) == 0)
		w->flushes_inflight++;
}

static void on_complete(void *opaque, int result)
{
	struct slot *s = opaque;
	struct worker *w = s->w;
	uint64_t now = now_ns();
	if (result < 0 && !w->error) {
		w->error = result;
		w->error_offset = s->offset;
		w->stopping = true;
	}
	if (result == 0 && s->write)
		maybe_flush(w);
	if (result == 0 && s->start_ns >= w->measure_start_ns) {
		struct bench_side *side = s->write ? &w->write : &w->read;
		side->ios++;
		side->bytes += s->iov.iov_len;
		latency_add(&side->lat, now - s->start_ns);
		w->last_ns = now;
	}
	if (!w->p->ios && now >= w->end_ns)
		w->stopping = true;
	issue(w, s, now);
}

static void *worker_run(void *arg)
{
	struct worker *w = arg;
	uint64_t start = now_ns();
	w->measure_start_ns = start + (uint64_t)(w->p->ramp_s * 1e9);
	w->end_ns = w->measure_start_ns + (uint64_t)(w->p->runtime_s * 1e9);
	w->last_ns = w->measure_start_ns;
	for (unsigned i = 0; i < w->p->iodepth; i++)
		issue(w, &w->slots[i], start);
	while (vdisk_queue_inflight(w->queue)) {
		int ret = vdisk_queue_poll(w->queue, 1);
		if (ret < 0) {
			if (!w->error)
				w->error = ret;
			break;
		}
	}
	return NULL;
}

/* One region holds every slot's buffer, advised for transparent huge pages: a request's
 * buffer is then one physically contiguous segment (as from a guest's huge-page-backed
 * RAM), so the device sees one request per I/O. With 4 KiB pages a 1 MiB buffer has 256
 * segments, more than a virtio disk takes (254): the kernel splits it in two and may merge
 * the halves with their neighbours, and the device sees a pattern that depends on where
 * the pages happened to land. */
static int map_buffers(struct worker *w)
{
	size_t len = (size_t)w->p->iodepth * w->p->block_size;
	len = (len + HUGE_PAGE - 1) & ~(size_t)(HUGE_PAGE - 1);
	void *p = mmap(NULL, len + HUGE_PAGE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS,
		       -1, 0);
	if (p == MAP_FAILED)
		return -ENOMEM;
	/* keep the huge-page-aligned part only */
	uintptr_t start = ((uintptr_t)p + HUGE_PAGE - 1) & ~(uintptr_t)(HUGE_PAGE - 1);
	size_t head = start - (uintptr_t)p;
	if (head)
		munmap(p, head);
	munmap((uint8_t *)start + len, HUGE_PAGE - head);
	madvise((void *)start, len, MADV_HUGEPAGE); /* a hint: without THP, 4 KiB pages */
	w->buffers = (uint8_t *)start;
	w->buffers_len = len;
	return 0;
}

static int worker_setup(struct worker *w, struct vdisk *disk, const struct bench_params *p,
			unsigned index, atomic_uint_fast64_t *issued)
{
	uint64_t region = p->size ? p->size : vdisk_size(disk) - p->offset;
	*w = (struct worker){
		.disk = disk,
		.queue = vdisk_queue(disk, index),
		.p = p,
		.issued = issued,
		.rng = (p->seed + index) * 0x9E3779B97F4A7C15ULL | 1,
		.region_start = p->offset,
		.region_blocks = region / p->block_size,
		.stride = p->stride ? p->stride : p->block_size,
	};
	/* sequential offsets: every position where a whole block still fits */
	w->region_steps = (region - p->block_size) / w->stride + 1;
	latency_init(&w->read.lat);
	latency_init(&w->write.lat);
	/* Sequential queues each start at their own part of the region. */
	w->next_step = w->region_steps / p->queues * index;
	w->slots = calloc(p->iodepth, sizeof(*w->slots));
	if (!w->slots)
		return -ENOMEM;
	int ret = map_buffers(w);
	if (ret < 0)
		return ret;
	for (unsigned i = 0; i < p->iodepth; i++) {
		uint8_t *buf = w->buffers + (size_t)i * p->block_size;
		/* Incompressible, never all-zero data, like fio's default buffers. */
		for (uint32_t j = 0; j < p->block_size; j += 8) {
			uint64_t v = next_random(w);
			memcpy((uint8_t *)buf + j, &v,
			       p->block_size - j < 8 ? p->block_size - j : 8);
		}
		w->slots[i] = (struct slot){ .w = w, .iov = { buf, p->block_size } };
	}
	return 0;
}

static void worker_free(struct worker *w)
{
	if (w->buffers)
		munmap(w->buffers, w->buffers_len);
	free(w->slots);
}

static void merge(struct bench_result *r, struct worker *w, uint64_t start_ns)
{
	r->read.ios += w->read.ios;
	r->read.bytes += w->read.bytes;
	latency_merge(&r->read.lat, &w->read.lat);
	r->write.ios += w->write.ios;
	r->write.bytes += w->write.bytes;
	latency_merge(&r->write.lat, &w->write.lat);
	double secs = (double)(w->last_ns - start_ns) / 1e9;
	if (secs > r->seconds)
		r->seconds = secs;
	if (w->error && !r->error) {
		r->error = w->error;
		r->error_offset = w->error_offset;
	}
}

static int check_params(struct vdisk *disk, const struct bench_params *p)
{
	uint64_t size = vdisk_size(disk);
	if (!p->block_size || !p->iodepth || !p->queues || p->queues > vdisk_queue_count(disk))
		return -EINVAL;
	if (p->offset >= size || (p->size && p->size > size - p->offset))
		return -ERANGE;
	uint64_t region = p->size ? p->size : size - p->offset;
	if (region < p->block_size)
		return -ERANGE;
	return 0;
}

int bench_run(struct vdisk *disk, const struct bench_params *p, struct bench_result *r)
{
	int ret = check_params(disk, p);
	if (ret < 0)
		return ret;
	memset(r, 0, sizeof(*r));
	latency_init(&r->read.lat);
	latency_init(&r->write.lat);
	struct worker *workers = calloc(p->queues, sizeof(*workers));
	if (!workers)
		return -ENOMEM;
	atomic_uint_fast64_t issued = 0;
	for (unsigned i = 0; i < p->queues && ret == 0; i++)
		ret = worker_setup(&workers[i], disk, p, i, &issued);
	unsigned started = 0;
	if (ret == 0 && p->queues == 1) {
		worker_run(&workers[0]);
	} else if (ret == 0) {
		for (; started < p->queues; started++) {
			ret = -pthread_create(&workers[started].thread, NULL, worker_run,
					      &workers[started]);
			if (ret < 0)
				break;
		}
		for (unsigned i = 0; i < started; i++)
			pthread_join(workers[i].thread, NULL);
	}
	for (unsigned i = 0; i < p->queues; i++) {
		if (ret == 0)
			merge(r, &workers[i], workers[i].measure_start_ns);
		worker_free(&workers[i]);
	}
	free(workers);
	return ret;
}
