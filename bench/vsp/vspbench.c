/* vspbench: what the synthetic SCSI path costs the host per request, and how many
 * notifications a request needs, without a VM.
 *
 * The guest is the test VSC (tests/unit/scsi-vsp/vsc.h: Linux 6.1's VMBus and storvsc,
 * byte for byte, on simulated guest RAM and SynIC), one thread per channel standing for
 * the vCPU that channel targets. The host is the real VMBus host, storvsp and scsi_disk on
 * a raw image, each channel served the way `vmm run` serves it: one thread running the
 * VMM's event loop on the channel's kick eventfd and the disk queue's event fd.
 *
 * Each guest thread keeps QD requests of 4 KiB (random reads, or random writes) in flight
 * and behaves like Linux: it submits with hv_ringbuffer_write's signal rule (signal only
 * when the host is unmasked and had read everything), and reads completions only when
 * interrupted (its SIEF bit set), with its ring masked while it reads and a look for more
 * after unmasking.
 *
 * Measured over a window after a warm-up:
 * - CPU per request of the channel threads (CLOCK_THREAD_CPUTIME_ID), and of a baseline:
 *   the same event loop thread keeping QD requests in flight on the same queue directly
 *   (resubmitting from the completion callback, submitted once per poll). The difference is
 *   what storvsp, scsi_disk and the VMBus host add per request on the serving thread.
 * - guest->host signals (HvSignalEvent calls the ring rules did not suppress) and
 *   host->guest interrupts (the VMBus host's signal_event calls) per completed request.
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <jansson.h>
#include <limits.h>
#include <pthread.h>
#include <sched.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <time.h>
#include <unistd.h>

#include "endian.h"
#include "json_util.h"
#include "loop.h"
#include "scsi_disk.h"
#include "scsi_target.h"
#include "storvsp.h"
#include "test_util.h"
#include "vdisk.h"
#include "vmbus_ring.h"
#include "vsc.h"

#define BLOCK	     4096u
#define MAX_CHANNELS VSC_MAX_VPS /* one guest vCPU per channel */
#define MAX_QD	     64u
#define RING_BYTES   (33 * VSC_PAGE) /* storvsc's ring: 128 KiB of data plus the header */
#define SIEF_AREA    256u	     /* event flags of one SINT in the SIEF page */
#define PATTERN_SEED 7u
#define VERIFY_READS 32u		    /* reads per guest and row checked against the file */
#define STALL_NS     (5ull * 1000000000ull) /* no interrupt for this long: a lost request */
#define MIB	     (1024ull * 1024ull)

/* READ(10) / WRITE(10), and storvsp's answers (vstor_packet offsets). */
#define OP_READ10     0x28
#define OP_WRITE10    0x2A
#define SRB_SUCCESS   0x01
#define REPLY_STATUS  8u
#define REPLY_SRB     14u
#define REPLY_XFER    24u
#define STOR_PROTOCOL 0x0602

static uint64_t now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static void sleep_ns(uint64_t ns)
{
	struct timespec ts = { (time_t)(ns / 1000000000ull), (long)(ns % 1000000000ull) };
	while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
		;
}

static void die(const char *fmt, ...) __attribute__((format(printf, 1, 2), noreturn));
static void die(const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	fprintf(stderr, "vspbench: ");
	vfprintf(stderr, fmt, ap);
	fprintf(stderr, "\n");
	va_end(ap);
	exit(1);
}

/* ---- the disks ---- */

struct disk {
	const char *name; /* "ram" or "direct" */
	char path[PATH_MAX];
	enum vdisk_cache_mode cache;
	uint64_t size;
	struct vdisk *vd;
	uint32_t lba_size;
	bool written; /* the file no longer holds the pattern */
};

/* The images go on any exit, a failed run's too. */
static char *image_paths[2];

static void remove_images(void)
{
	for (unsigned i = 0; i < 2; i++)
		if (image_paths[i])
			unlink(image_paths[i]);
}

static void sync_file(const char *path)
{
	int fd = open(path, O_RDWR);
	if (fd < 0 || fsync(fd) < 0)
		die("cannot sync %s: %s", path, strerror(errno));
	close(fd);
}

/* A raw image of size bytes holding test_fill_pattern(PATTERN_SEED), with MAX_CHANNELS
 * queues. */
static void disk_open(struct disk *d, const char *dir, enum vdisk_cache_mode cache, uint64_t size)
{
	d->cache = cache;
	d->size = size;
	snprintf(d->path, sizeof(d->path), "%s/vspbench-%s-%d.raw", dir, d->name, (int)getpid());
	image_paths[cache == VDISK_CACHE_DIRECT] = d->path;
	test_write_file(d->path, size, PATTERN_SEED);
	sync_file(d->path);
	struct vdisk_options o = { .cache = cache, .queues = MAX_CHANNELS };
	char err[256] = "";
	if (vdisk_open(d->path, &o, &d->vd, err, sizeof(err)))
		die("cannot open %s: %s", d->path, err);
	struct scsi_disk_config sc;
	if (scsi_disk_config_from_vdisk(d->vd, &sc))
		die("no SCSI configuration for %s", d->path);
	d->lba_size = sc.logical_block_size;
}

static void disk_close(struct disk *d)
{
	if (!d->vd)
		return;
	vdisk_close(d->vd);
	d->vd = NULL;
}

/* ---- channel threads: the VMM's event loop on the kick eventfd and the queue ---- */

struct base_slot;

struct lane {
	struct event_loop *loop;
	int kick_fd; /* -1 in the baseline */
	struct vdisk *vd;
	struct vdisk_queue *q;
	struct storvsp *sv; /* NULL in the baseline */
	unsigned index;
	clockid_t clock;
	bool clock_known; /* atomic */
	/* the baseline's own load */
	struct base_slot *slots;
	unsigned qd;
	bool write;
	bool stop;	    /* atomic */
	uint64_t completed; /* atomic */
	unsigned inflight;  /* atomic */
	int error;	    /* atomic: first failed request */
	uint64_t rng, blocks;
	uint8_t *buffers;
};

static void note_clock(struct lane *l)
{
	if (__atomic_load_n(&l->clock_known, __ATOMIC_ACQUIRE))
		return;
	char name[16];
	snprintf(name, sizeof(name), "%s%u", l->sv ? "vsp-chan" : "vsp-base", l->index);
	pthread_setname_np(pthread_self(), name); /* for perf and top */
	if (pthread_getcpuclockid(pthread_self(), &l->clock) == 0)
		__atomic_store_n(&l->clock_known, true, __ATOMIC_RELEASE);
}

static uint64_t cpu_clock_ns(clockid_t clock)
{
	struct timespec ts;
	if (clock_gettime(clock, &ts) < 0)
		die("cannot read a CPU clock: %s", strerror(errno));
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static uint64_t thread_cpu_ns(pthread_t thread)
{
	clockid_t clock;
	if (pthread_getcpuclockid(thread, &clock))
		die("no CPU clock for a thread");
	return cpu_clock_ns(clock);
}

static uint64_t lane_cpu_ns(struct lane *l)
{
	if (!__atomic_load_n(&l->clock_known, __ATOMIC_ACQUIRE))
		die("channel %u's thread never ran", l->index);
	return cpu_clock_ns(l->clock);
}

/* The whole process but the (sleeping) main thread: the channel threads, the guest's
 * threads, and the io_uring workers the kernel runs for the queues' buffered I/O, which
 * belong to the process too (also those that exited during the window). */
static uint64_t process_cpu_ns(void)
{
	return cpu_clock_ns(CLOCK_PROCESS_CPUTIME_ID) - cpu_clock_ns(CLOCK_THREAD_CPUTIME_ID);
}

static void lane_kicked(void *opaque)
{
	struct lane *l = opaque;
	uint64_t n;
	note_clock(l);
	if (read(l->kick_fd, &n, sizeof(n)) < 0) {
		/* a spurious wake-up */
	}
	storvsp_poll(l->sv, l->index);
}

static void lane_queue_ready(void *opaque)
{
	struct lane *l = opaque;
	note_clock(l);
	vdisk_queue_poll(l->q, 0);
}

static void lane_start(struct lane *l, struct vdisk *vd, unsigned index, bool kickable)
{
	l->vd = vd;
	l->index = index;
	l->q = vdisk_queue(vd, index);
	l->kick_fd = kickable ? eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC) : -1;
	if (kickable && l->kick_fd < 0)
		die("eventfd: %s", strerror(errno));
	int ret = event_loop_create(&l->loop);
	if (!ret && kickable)
		ret = event_loop_add_fd(l->loop, l->kick_fd, lane_kicked, l);
	if (!ret)
		ret = event_loop_add_fd(l->loop, vdisk_queue_event_fd(l->q), lane_queue_ready, l);
	if (!ret)
		ret = event_loop_start(l->loop);
	if (ret)
		die("cannot start channel %u's thread: %s", index, strerror(-ret));
}

static void lane_stop(struct lane *l)
{
	event_loop_stop(l->loop);
	event_loop_destroy(l->loop);
	l->loop = NULL;
	if (l->kick_fd >= 0)
		close(l->kick_fd);
	l->kick_fd = -1;
	while (vdisk_queue_inflight(l->q))
		vdisk_queue_poll(l->q, 1);
}

/* ---- the baseline: QD requests kept in flight on the queue by its own thread ---- */

struct base_slot {
	struct lane *l;
	struct iovec iov;
};

static void base_done(void *opaque, int result);

static void base_issue(struct base_slot *s)
{
	struct lane *l = s->l;
	uint64_t offset = test_rnd_below(&l->rng, l->blocks) * BLOCK;
	int ret = l->write ? vdisk_writev(l->vd, l->q, &s->iov, 1, offset, base_done, s)
			   : vdisk_readv(l->vd, l->q, &s->iov, 1, offset, base_done, s);
	if (ret) {
		__atomic_store_n(&l->error, ret, __ATOMIC_RELAXED);
		return;
	}
	__atomic_fetch_add(&l->inflight, 1, __ATOMIC_RELAXED);
}

static void base_done(void *opaque, int result)
{
	struct base_slot *s = opaque;
	struct lane *l = s->l;
	__atomic_fetch_sub(&l->inflight, 1, __ATOMIC_RELAXED);
	if (result < 0)
		__atomic_store_n(&l->error, result, __ATOMIC_RELAXED);
	else
		__atomic_fetch_add(&l->completed, 1, __ATOMIC_RELAXED);
	if (!__atomic_load_n(&l->stop, __ATOMIC_ACQUIRE))
		base_issue(s);
}

/* Posted to the lane's thread, which owns the queue. */
static void base_begin(void *arg)
{
	struct lane *l = arg;
	for (unsigned i = 0; i < l->qd; i++)
		base_issue(&l->slots[i]);
}

/* ---- the guest: one vCPU per channel ---- */

struct guest {
	struct vsc_channel *ch;
	struct disk *disk;
	pthread_t thread;
	unsigned vp, qd, outstanding;
	bool write;
	uint64_t buf_gpa;	 /* qd pages of guest RAM */
	uint64_t trans[MAX_QD];	 /* the request each buffer carries; 0: free */
	uint64_t offset[MAX_QD]; /* its disk offset */
	uint64_t rng, blocks;
	unsigned verified;
	uint64_t completed; /* atomic */
	bool stop;	    /* atomic */
	const char *error;
};

/* storvsc: READ(10) or WRITE(10) of one block into buffer slot. */
static void guest_issue(struct guest *g, unsigned slot)
{
	uint64_t offset = test_rnd_below(&g->rng, g->blocks) * BLOCK;
	uint32_t lba_size = g->disk->lba_size;
	uint8_t cdb[16] = { g->write ? OP_WRITE10 : OP_READ10 };
	store_be32(cdb + 2, (uint32_t)(offset / lba_size));
	store_be16(cdb + 7, (uint16_t)(BLOCK / lba_size));
	g->offset[slot] = offset;
	g->trans[slot] = vsc_srb_send(g->ch, 0, cdb, 10, g->write ? 0 : 1,
				      g->buf_gpa + (uint64_t)slot * BLOCK, BLOCK);
	g->outstanding++;
}

/* The guest's ISR: its channel's bit in the SIEF page, tested and cleared. */
static bool guest_take_interrupt(struct guest *g)
{
	struct vsc *v = g->ch->v;
	uint32_t relid = g->ch->offer.relid;
	uint8_t *area = vsc_host(v, v->sief[g->vp] + VMBUS_MESSAGE_SINT * SIEF_AREA);
	uint8_t bit = (uint8_t)(1u << (relid % 8));
	if (!(__atomic_load_n(&area[relid / 8], __ATOMIC_ACQUIRE) & bit))
		return false;
	pthread_mutex_lock(&v->lock);
	area[relid / 8] &= (uint8_t)~bit;
	pthread_mutex_unlock(&v->lock);
	return true;
}

static bool ring_has_data(const struct vsc_channel *ch)
{
	uint32_t w =
		__atomic_load_n((const uint32_t *)(const void *)ch->recv_hdr, __ATOMIC_ACQUIRE);
	uint32_t r = __atomic_load_n((const uint32_t *)(const void *)(ch->recv_hdr + 4),
				     __ATOMIC_ACQUIRE);
	return w != r;
}

static bool read_matches_file(struct guest *g, unsigned slot)
{
	uint8_t want[BLOCK];
	test_fill_pattern(want, BLOCK, g->offset[slot], PATTERN_SEED);
	return !memcmp(vsc_host(g->ch->v, g->buf_gpa + (uint64_t)slot * BLOCK), want, BLOCK);
}

/* One COMPLETE_IO: frees its buffer slot (returned, or -1 for a packet that is none). */
static int guest_complete(struct guest *g, const uint8_t *reply, size_t len, uint64_t id)
{
	if (!id)
		return -1; /* an unsolicited bus notice */
	unsigned slot = 0;
	while (slot < g->qd && g->trans[slot] != id)
		slot++;
	if (slot == g->qd || len < REPLY_XFER + 4) {
		g->error = "a completion for no request in flight";
		return -1;
	}
	if (load_le32(reply + REPLY_STATUS) || reply[REPLY_SRB] != SRB_SUCCESS ||
	    load_le32(reply + REPLY_XFER) != BLOCK)
		g->error = "a request failed";
	else if (!g->write && !g->disk->written && g->verified < VERIFY_READS &&
		 (g->verified++, !read_matches_file(g, slot)))
		g->error = "a read returned data the file does not hold";
	g->trans[slot] = 0;
	g->outstanding--;
	__atomic_fetch_add(&g->completed, 1, __ATOMIC_RELAXED);
	return (int)slot;
}

/* vmbus_on_event for a batched channel: mask, read everything, unmask, and look again.
 * The freed slots are refilled afterwards, as the guest's I/O submitter would. */
static void guest_service(struct guest *g)
{
	unsigned freed[MAX_QD], nfreed = 0;
	do {
		vsc_mask(g->ch, true);
		uint8_t reply[64];
		uint16_t type;
		uint64_t id;
		size_t len;
		while ((len = vsc_ring_read(g->ch, reply, sizeof(reply), &type, &id))) {
			int slot = type == VMBUS_PACKET_COMPLETION
					   ? guest_complete(g, reply, len, id)
					   : -1;
			if (slot >= 0)
				freed[nfreed++] = (unsigned)slot;
		}
		vsc_mask(g->ch, false);
	} while (ring_has_data(g->ch));
	if (__atomic_load_n(&g->stop, __ATOMIC_ACQUIRE))
		return;
	for (unsigned i = 0; i < nfreed; i++)
		guest_issue(g, freed[i]);
}

static void *guest_run(void *arg)
{
	struct guest *g = arg;
	char name[16];
	snprintf(name, sizeof(name), "vsp-guest%u", g->vp);
	pthread_setname_np(pthread_self(), name);
	for (unsigned i = 0; i < g->qd; i++)
		guest_issue(g, i);
	uint64_t last = now_ns();
	while (!g->error && (g->outstanding || !__atomic_load_n(&g->stop, __ATOMIC_ACQUIRE))) {
		if (guest_take_interrupt(g)) {
			guest_service(g);
			last = now_ns();
		} else if (now_ns() - last > STALL_NS) {
			g->error = "no interrupt for 5 s with requests in flight";
		} else {
			sched_yield();
		}
	}
	return NULL;
}

/* ---- the rig: guest, VMBus host, storvsp on one disk, channel threads ---- */

struct rig {
	struct vsc v;
	struct storvsp *sv;
	struct scsi_disk *target;
	struct disk *disk;
	unsigned channels;
	struct lane lanes[MAX_CHANNELS];
	struct vsc_channel ch[MAX_CHANNELS];
	struct guest guests[MAX_CHANNELS];
};

static void rig_kick(void *opaque, unsigned channel)
{
	struct rig *r = opaque;
	uint64_t one = 1;
	if (channel < r->channels && write(r->lanes[channel].kick_fd, &one, sizeof(one)) < 0) {
		/* a saturated counter is already readable */
	}
}

/* While the guest waits during setup, the channel threads do the work. */
static void rig_pump(void *opaque)
{
	(void)opaque;
	sleep_ns(20000);
}

static const struct vsc_offer *storvsp_offer(struct rig *r, uint16_t sub)
{
	const struct vsc_offer *o = vsc_find_class_offer(&r->v, storvsp_scsi_class.bytes, sub);
	if (!o)
		die("storvsp offered no sub-channel %u", sub);
	return o;
}

/* storvsc's probe: VMBus contact, the primary at 6.2, then the sub-channels, each
 * targeting its own VP. */
static void rig_connect(struct rig *r)
{
	if (!vsc_negotiate(&r->v))
		die("the VMBus host accepted no version");
	vsc_request_offers(&r->v);
	if (vsc_open(&r->v, storvsp_offer(r, 0), RING_BYTES, RING_BYTES, 0, &r->ch[0]))
		die("storvsp refused its primary channel");
	static const uint16_t version = STOR_PROTOCOL;
	unsigned max_sub;
	uint32_t max_xfer;
	if (vsc_stor_init(&r->ch[0], &version, 1, 64, &max_sub, &max_xfer) != STOR_PROTOCOL)
		die("storvsp refused protocol 6.2");
	if (r->channels == 1)
		return;
	if (max_sub < r->channels - 1 || vsc_stor_create_subchannels(&r->ch[0], r->channels - 1))
		die("storvsp refused %u sub-channels", r->channels - 1);
	if (vsc_collect_offers(&r->v, r->channels - 1) != r->channels - 1)
		die("storvsp did not offer its sub-channels");
	for (unsigned c = 1; c < r->channels; c++)
		if (vsc_open(&r->v, storvsp_offer(r, (uint16_t)c), RING_BYTES, RING_BYTES, c,
			     &r->ch[c]))
			die("storvsp refused sub-channel %u", c);
}

static struct rig *rig_new(struct disk *d, unsigned channels)
{
	struct rig *r = test_xmalloc(sizeof(*r));
	memset(r, 0, sizeof(*r));
	r->disk = d;
	r->channels = channels;
	struct scsi_disk_config sc;
	if (scsi_disk_config_from_vdisk(d->vd, &sc) || scsi_disk_create(d->vd, &sc, &r->target))
		die("cannot create the SCSI target on %s", d->path);
	vsc_init(&r->v, channels);
	r->v.pump = rig_pump;
	struct storvsp_config cfg = { .channels = channels, .kick = rig_kick, .kick_opaque = r };
	cfg.luns[0] = (struct storvsp_lun){ scsi_target_of_disk(r->target), d->vd };
	if (storvsp_create(r->v.vb, &cfg, &r->sv))
		die("cannot create storvsp");
	for (unsigned c = 0; c < channels; c++) {
		r->lanes[c].sv = r->sv;
		lane_start(&r->lanes[c], d->vd, c, true);
	}
	vmbus_start(r->v.vb);
	rig_connect(r);
	return r;
}

/* The guest's own counts must be the host's: every HvSignalEvent it made arrived, and
 * every event the host set reached the guest's SIEF page. */
static void rig_check_counts(struct rig *r)
{
	struct vmbus_stats st;
	vmbus_get_stats(r->v.vb, &st);
	uint64_t sent = 0, got = 0;
	for (unsigned c = 0; c < r->channels; c++) {
		sent += r->ch[c].guest_signals;
		got += r->v.signals[r->ch[c].offer.relid];
	}
	if (sent != st.signals_in || got != st.signals_out)
		die("signal counts disagree: guest sent %llu, host saw %llu; host set %llu, guest "
		    "got %llu",
		    (unsigned long long)sent, (unsigned long long)st.signals_in,
		    (unsigned long long)st.signals_out, (unsigned long long)got);
}

static void rig_free(struct rig *r)
{
	vmbus_stop(r->v.vb);
	for (unsigned c = 0; c < r->channels; c++)
		lane_stop(&r->lanes[c]);
	rig_check_counts(r); /* no thread signals any more */
	storvsp_destroy(r->sv);
	vsc_fini(&r->v);
	scsi_disk_destroy(r->target);
	free(r);
}

/* ---- measurement ---- */

struct workload {
	struct disk *disk;
	bool write;
	unsigned qd, channels;
};

struct sample {
	uint64_t wall_ns, ios, g2h, h2g;
	uint64_t chan_ns; /* CPU of the channel threads */
	uint64_t host_ns; /* CPU of every host thread: those and the kernel's io_uring workers */
};

struct result {
	struct workload w;
	struct sample vsp, base; /* differences over the measured window */
};

static void sample_diff(struct sample *d, const struct sample *a, const struct sample *b)
{
	*d = (struct sample){ .wall_ns = b->wall_ns - a->wall_ns,
			      .ios = b->ios - a->ios,
			      .g2h = b->g2h - a->g2h,
			      .h2g = b->h2g - a->h2g,
			      .chan_ns = b->chan_ns - a->chan_ns,
			      .host_ns = b->host_ns - a->host_ns };
}

static void rig_sample(struct rig *r, struct sample *s)
{
	struct vmbus_stats st;
	vmbus_get_stats(r->v.vb, &st);
	*s = (struct sample){ .wall_ns = now_ns(),
			      .g2h = st.signals_in,
			      .h2g = st.signals_out,
			      .host_ns = process_cpu_ns() };
	for (unsigned c = 0; c < r->channels; c++) {
		s->chan_ns += lane_cpu_ns(&r->lanes[c]);
		s->host_ns -= thread_cpu_ns(r->guests[c].thread);
		s->ios += __atomic_load_n(&r->guests[c].completed, __ATOMIC_RELAXED);
	}
}

static void guests_start(struct rig *r, const struct workload *w, uint64_t seed)
{
	for (unsigned c = 0; c < r->channels; c++) {
		struct guest *g = &r->guests[c];
		*g = (struct guest){ .ch = &r->ch[c],
				     .disk = w->disk,
				     .vp = c,
				     .qd = w->qd,
				     .write = w->write,
				     .buf_gpa = vsc_alloc(&r->v, (uint64_t)w->qd * BLOCK),
				     .rng = seed + c,
				     .blocks = w->disk->size / BLOCK };
		if (pthread_create(&g->thread, NULL, guest_run, g))
			die("cannot start a guest thread");
	}
}

static void guests_stop(struct rig *r)
{
	for (unsigned c = 0; c < r->channels; c++)
		__atomic_store_n(&r->guests[c].stop, true, __ATOMIC_RELEASE);
	for (unsigned c = 0; c < r->channels; c++) {
		pthread_join(r->guests[c].thread, NULL);
		if (r->guests[c].error)
			die("%s, channel %u: %s", r->disk->name, c, r->guests[c].error);
	}
}

static void measure_vsp(const struct workload *w, uint64_t warm_ns, uint64_t run_ns,
			struct sample *out)
{
	struct rig *r = rig_new(w->disk, w->channels);
	struct sample a, b;
	guests_start(r, w, 1);
	sleep_ns(warm_ns);
	rig_sample(r, &a);
	sleep_ns(run_ns);
	rig_sample(r, &b);
	guests_stop(r);
	sample_diff(out, &a, &b);
	rig_free(r);
}

static void base_sample(struct lane *lanes, unsigned n, struct sample *s)
{
	*s = (struct sample){ .wall_ns = now_ns(), .host_ns = process_cpu_ns() };
	for (unsigned c = 0; c < n; c++) {
		s->chan_ns += lane_cpu_ns(&lanes[c]);
		s->ios += __atomic_load_n(&lanes[c].completed, __ATOMIC_RELAXED);
	}
}

static void base_lane_init(struct lane *l, const struct workload *w, unsigned c)
{
	*l = (struct lane){
		.qd = w->qd, .write = w->write, .rng = 1000 + c, .blocks = w->disk->size / BLOCK
	};
	l->buffers = test_aligned_buf((size_t)w->qd * BLOCK);
	l->slots = test_xmalloc(w->qd * sizeof(*l->slots));
	for (unsigned i = 0; i < w->qd; i++)
		l->slots[i] = (struct base_slot){ l, { l->buffers + (size_t)i * BLOCK, BLOCK } };
	lane_start(l, w->disk->vd, c, false);
	if (vdisk_queue_post(l->q, base_begin, l))
		die("cannot start the baseline load");
}

static void base_lane_end(struct lane *l)
{
	__atomic_store_n(&l->stop, true, __ATOMIC_RELEASE);
	uint64_t start = now_ns();
	while (__atomic_load_n(&l->inflight, __ATOMIC_RELAXED) && now_ns() - start < STALL_NS)
		sleep_ns(100000);
	lane_stop(l);
	int error = __atomic_load_n(&l->error, __ATOMIC_RELAXED);
	if (error)
		die("baseline request failed: %s", strerror(-error));
	free(l->slots);
	free(l->buffers);
}

static void measure_base(const struct workload *w, uint64_t warm_ns, uint64_t run_ns,
			 struct sample *out)
{
	struct lane lanes[MAX_CHANNELS];
	struct sample a, b;
	for (unsigned c = 0; c < w->channels; c++)
		base_lane_init(&lanes[c], w, c);
	sleep_ns(warm_ns);
	base_sample(lanes, w->channels, &a);
	sleep_ns(run_ns);
	base_sample(lanes, w->channels, &b);
	for (unsigned c = 0; c < w->channels; c++)
		base_lane_end(&lanes[c]);
	sample_diff(out, &a, &b);
}

static void measure(const struct workload *w, double runtime_s, struct result *res)
{
	uint64_t run_ns = (uint64_t)(runtime_s * 1e9), warm_ns = run_ns / 4;
	res->w = *w;
	measure_vsp(w, warm_ns, run_ns, &res->vsp);
	measure_base(w, warm_ns, run_ns, &res->base);
	if (w->write)
		w->disk->written = true;
	/* a row that moved nothing, or counted no CPU time or interrupt, measured nothing */
	if (!res->vsp.ios || !res->base.ios || !res->vsp.host_ns || !res->base.host_ns ||
	    !res->vsp.chan_ns || !res->base.chan_ns || !res->vsp.h2g)
		die("%s %s QD%u: a row produced no numbers", w->disk->name,
		    w->write ? "randwrite" : "randread", w->qd);
}

/* ---- output ---- */

static double per_io(uint64_t v, uint64_t ios)
{
	return ios ? (double)v / (double)ios : 0;
}

static double host_us(const struct sample *s)
{
	return per_io(s->host_ns, s->ios) / 1000.0;
}

static double chan_us(const struct sample *s)
{
	return per_io(s->chan_ns, s->ios) / 1000.0;
}

static double iops(const struct sample *s)
{
	return s->wall_ns ? (double)s->ios * 1e9 / (double)s->wall_ns : 0;
}

static const char *const method_text[] = {
	"storvsp path: the test VSC (Linux's ring and signal rules, one thread per channel as the "
	"vCPU it targets) -> VMBus host -> storvsp -> scsi_disk -> the disk queue, each channel "
	"served by the VMM's event loop on its kick eventfd and its queue's event fd.",
	"baseline: the same event loop thread and queue, keeping QD requests in flight by "
	"resubmitting from the completion callback.",
	"host CPU/req: CPU time over the requests completed in the window of every host thread: "
	"the channel threads and the io_uring workers the kernel runs for them (process CPU time "
	"minus the guest's threads and the idle main thread). added = storvsp path - baseline: "
	"what storvsp, scsi_disk and the VMBus host cost per request; the last CPU column is the "
	"same difference on the channel threads alone (CLOCK_THREAD_CPUTIME_ID). Not in either: "
	"the vCPU thread's share of a guest->host signal (vmbus_signal_event and one eventfd "
	"write).",
	"g->h: guest->host signals per request (HvSignalEvent calls the ring rules did not "
	"suppress); h->g: host->guest interrupts per request (the VMBus host's signal_event "
	"calls). User-space SynIC: each g->h is a hypercall exit to the VMM, each h->g a SINT "
	"the VMM injects (an MSI ioctl). In-kernel SynIC with KVM_HYPERV_EVENTFD and an irqfd: "
	"g->h is a hypercall exit KVM handles (an eventfd write, no exit to the VMM), h->g an "
	"irqfd write; both stay guest-visible events, so the target is on their sum.",
	"targets: added <= 2 us per request; g->h + h->g <= 0.1 per request at QD32.",
};

static void print_table(const struct result *res, unsigned n)
{
	printf("### storvsp + VMBus host cost (4 KiB random I/O, raw image)\n\n");
	printf("| disk | rw | QD | channels | storvsp IOPS | host CPU/req storvsp path | host "
	       "CPU/req baseline | added by storvsp+VMBus | added, channel threads only | g->h/IO "
	       "| h->g/IO | notifications/IO |\n");
	printf("|---|---|---|---|---|---|---|---|---|---|---|---|\n");
	for (unsigned i = 0; i < n; i++) {
		const struct result *r = &res[i];
		double g2h = per_io(r->vsp.g2h, r->vsp.ios), h2g = per_io(r->vsp.h2g, r->vsp.ios);
		printf("| %s | %s | %u | %u | %.0f | %.2f us | %.2f us | %.2f us | %.2f us | %.3f "
		       "| "
		       "%.3f | %.3f |\n",
		       r->w.disk->name, r->w.write ? "randwrite" : "randread", r->w.qd,
		       r->w.channels, iops(&r->vsp), host_us(&r->vsp), host_us(&r->base),
		       host_us(&r->vsp) - host_us(&r->base), chan_us(&r->vsp) - chan_us(&r->base),
		       g2h, h2g, g2h + h2g);
	}
	printf("\n");
	for (size_t i = 0; i < sizeof(method_text) / sizeof(method_text[0]); i++)
		printf("- %s\n", method_text[i]);
}

static json_t *sample_json(const struct sample *s, int *ret)
{
	json_t *o = json_object();
	vdisk_json_set(o, "ios", vdisk_json_u64(s->ios), ret);
	vdisk_json_set(o, "seconds", json_real((double)s->wall_ns / 1e9), ret);
	vdisk_json_set(o, "iops", json_real(iops(s)), ret);
	vdisk_json_set(o, "host_cpu_ns", vdisk_json_u64(s->host_ns), ret);
	vdisk_json_set(o, "host_cpu_us_per_io", json_real(host_us(s)), ret);
	vdisk_json_set(o, "channel_cpu_ns", vdisk_json_u64(s->chan_ns), ret);
	vdisk_json_set(o, "channel_cpu_us_per_io", json_real(chan_us(s)), ret);
	return o;
}

static json_t *result_json(const struct result *r, int *ret)
{
	json_t *o = json_object();
	vdisk_json_set(o, "disk", json_string(r->w.disk->name), ret);
	vdisk_json_set(o, "rw", json_string(r->w.write ? "randwrite" : "randread"), ret);
	vdisk_json_set(o, "block_size", json_integer(BLOCK), ret);
	vdisk_json_set(o, "qd", json_integer(r->w.qd), ret);
	vdisk_json_set(o, "channels", json_integer(r->w.channels), ret);
	json_t *vsp = sample_json(&r->vsp, ret);
	vdisk_json_set(vsp, "guest_to_host_signals", vdisk_json_u64(r->vsp.g2h), ret);
	vdisk_json_set(vsp, "host_to_guest_interrupts", vdisk_json_u64(r->vsp.h2g), ret);
	vdisk_json_set(vsp, "guest_to_host_per_io", json_real(per_io(r->vsp.g2h, r->vsp.ios)), ret);
	vdisk_json_set(vsp, "host_to_guest_per_io", json_real(per_io(r->vsp.h2g, r->vsp.ios)), ret);
	vdisk_json_set(o, "storvsp", vsp, ret);
	vdisk_json_set(o, "baseline", sample_json(&r->base, ret), ret);
	vdisk_json_set(o, "added_host_cpu_us_per_io",
		       json_real(host_us(&r->vsp) - host_us(&r->base)), ret);
	vdisk_json_set(o, "added_channel_cpu_us_per_io",
		       json_real(chan_us(&r->vsp) - chan_us(&r->base)), ret);
	return o;
}

static void print_json(const struct result *res, unsigned n)
{
	int ret = 0;
	json_t *top = json_object(), *rows = json_array(), *method = json_array();
	for (unsigned i = 0; i < n; i++)
		vdisk_json_append(rows, result_json(&res[i], &ret), &ret);
	for (size_t i = 0; i < sizeof(method_text) / sizeof(method_text[0]); i++)
		vdisk_json_append(method, json_string(method_text[i]), &ret);
	vdisk_json_set(top, "rows", rows, &ret);
	vdisk_json_set(top, "method", method, &ret);
	if (ret || json_dumpf(top, stdout, JSON_INDENT(2)) < 0)
		die("cannot write the JSON output");
	printf("\n");
	json_decref(top);
}

/* ---- main ---- */

struct options {
	bool quick, json;
	double runtime_s;
	const char *dir, *ram_dir;
	const char *disk, *rw; /* NULL: every one */
	unsigned qd, channels; /* 0: 1 and 32, 1 and 2 */
};

static void usage(FILE *f)
{
	fprintf(f,
		"usage: vspbench [--quick] [--json] [--runtime S] [--dir DIR] [--ram-dir DIR]\n"
		"                [--disk ram|direct] [--rw randread|randwrite] [--qd N]\n"
		"                [--channels N]\n"
		"  --quick         CI slice: five rows of 0.2 s, four on the RAM disk\n"
		"  --json          JSON instead of the markdown table\n"
		"  --runtime S     measured seconds per row and side (default 1)\n"
		"  --dir DIR       where the O_DIRECT raw file goes (default .)\n"
		"  --ram-dir DIR   where the RAM disk goes (default /dev/shm)\n"
		"  --disk, --rw    only the rows of that disk, that pattern\n"
		"  --qd N          rows at this depth (1..%u) instead of 1 and 32\n"
		"  --channels N    rows with this many channels (1..%u) instead of 1 and 2\n",
		MAX_QD, MAX_CHANNELS);
}

static unsigned parse_count(const char *text, const char *what, unsigned max)
{
	char *end;
	unsigned long v = strtoul(text, &end, 10);
	if (*end || !v || v > max)
		die("%s takes a number from 1 to %u, not '%s'", what, max, text);
	return (unsigned)v;
}

static void parse_options(int argc, char **argv, struct options *o)
{
	static const struct option longopts[] = {
		{ "quick", no_argument, NULL, 'q' },
		{ "json", no_argument, NULL, 'j' },
		{ "runtime", required_argument, NULL, 'r' },
		{ "dir", required_argument, NULL, 'd' },
		{ "ram-dir", required_argument, NULL, 'm' },
		{ "disk", required_argument, NULL, 'k' },
		{ "rw", required_argument, NULL, 'w' },
		{ "qd", required_argument, NULL, 'Q' },
		{ "channels", required_argument, NULL, 'c' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	*o = (struct options){ .runtime_s = 1.0, .dir = ".", .ram_dir = "/dev/shm" };
	int c;
	while ((c = getopt_long(argc, argv, "", longopts, NULL)) != -1) {
		switch (c) {
		case 'q':
			o->quick = true;
			o->runtime_s = 0.2;
			break;
		case 'j':
			o->json = true;
			break;
		case 'r':
			o->runtime_s = strtod(optarg, NULL);
			if (!(o->runtime_s > 0 && o->runtime_s <= 600))
				die("--runtime takes seconds, above 0 and at most 600");
			break;
		case 'd':
			o->dir = optarg;
			break;
		case 'm':
			o->ram_dir = optarg;
			break;
		case 'k':
			if (strcmp(optarg, "ram") && strcmp(optarg, "direct"))
				die("--disk is ram or direct, not '%s'", optarg);
			o->disk = optarg;
			break;
		case 'w':
			if (strcmp(optarg, "randread") && strcmp(optarg, "randwrite"))
				die("--rw is randread or randwrite, not '%s'", optarg);
			o->rw = optarg;
			break;
		case 'Q':
			o->qd = parse_count(optarg, "--qd", MAX_QD);
			break;
		case 'c':
			o->channels = parse_count(optarg, "--channels", MAX_CHANNELS);
			break;
		case 'h':
			usage(stdout);
			exit(0);
		default:
			usage(stderr);
			exit(2);
		}
	}
	if (optind != argc) {
		usage(stderr);
		exit(2);
	}
}

#define MAX_ROWS 16

/* The quick slice: reads at QD1 and QD32 on one channel and QD32 on two, a write row, and
 * one O_DIRECT row, so each path runs. */
static bool in_quick_slice(bool direct, bool write, unsigned qd, unsigned channels)
{
	if (direct)
		return !write && qd == 32 && channels == 1;
	return write ? qd == 32 && channels == 1 : channels == 1 || qd == 32;
}

/* Every disk's reads first (they check the data against the file), then its writes. */
static unsigned plan_rows(const struct options *o, struct disk *disks[2], struct workload *w)
{
	const unsigned qds[] = { o->qd ? o->qd : 1, 32 },
		       chans[] = { o->channels ? o->channels : 1, 2 };
	unsigned n = 0;
	for (unsigned d = 0; d < 2; d++)
		for (int write = 0; write < 2; write++)
			for (unsigned c = 0; c < (o->channels ? 1u : 2u); c++)
				for (unsigned q = 0; q < (o->qd ? 1u : 2u); q++) {
					bool filtered =
						(o->disk && strcmp(o->disk, disks[d]->name)) ||
						(o->rw &&
						 strcmp(o->rw, write ? "randwrite" : "randread"));
					bool custom = o->disk || o->rw || o->qd || o->channels;
					if (filtered ||
					    (o->quick && !custom &&
					     !in_quick_slice(d == 1, write, qds[q], chans[c])))
						continue;
					w[n++] = (struct workload){ disks[d], write, qds[q],
								    chans[c] };
				}
	return n;
}

static bool plan_uses(const struct workload *w, unsigned n, const struct disk *d)
{
	for (unsigned i = 0; i < n; i++)
		if (w[i].disk == d)
			return true;
	return false;
}

int main(int argc, char **argv)
{
	struct options o;
	parse_options(argc, argv, &o);
	atexit(remove_images);
	struct disk ram = { .name = "ram" }, direct = { .name = "direct" };
	struct disk *disks[2] = { &ram, &direct };
	struct workload plan[MAX_ROWS];
	unsigned n = plan_rows(&o, disks, plan);
	uint64_t size = (o.quick ? 16 : 64) * MIB;
	if (plan_uses(plan, n, &ram))
		disk_open(&ram, o.ram_dir, VDISK_CACHE_WRITEBACK, size);
	if (plan_uses(plan, n, &direct))
		disk_open(&direct, o.dir, VDISK_CACHE_DIRECT, 2 * size);
	struct result res[MAX_ROWS];
	for (unsigned i = 0; i < n; i++) {
		fprintf(stderr, "vspbench: %s %s QD%u, %u channel(s)\n", plan[i].disk->name,
			plan[i].write ? "randwrite" : "randread", plan[i].qd, plan[i].channels);
		measure(&plan[i], o.runtime_s, &res[i]);
	}
	disk_close(&ram);
	disk_close(&direct);
	if (o.json)
		print_json(res, n);
	else
		print_table(res, n);
	return 0;
}
