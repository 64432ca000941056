/* The synthetic SCSI controllers of `vmm run` (see run_scsi.h). */
#include "run_scsi.h"

#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <time.h>
#include <unistd.h>

#include "hyperv.h"
#include "loop.h"
#include "run_args.h"
#include "scsi_disk.h"
#include "scsi_target.h"
#include "storvsp.h"
#include "vdisk.h"
#include "vm.h"
#include "vmbus.h"

#define DRAIN_POLL_NS 1000000 /* how often a change looks at the requests in flight */

struct scsi_controller;

/* One VMBus channel of a controller: its thread and the eventfd that wakes it. */
struct scsi_channel {
	struct scsi_controller *ctrl;
	unsigned index;
	struct event_loop *loop;
	int kick_fd;
};

/* A controller. Its LUNs as this file knows them (luns[]: what each slot holds, also while
 * a removal waits for the storvsp to release it) change only on the thread making the
 * changes; the storvsp has its own view for the channel threads. */
struct scsi_controller {
	unsigned number;
	struct storvsp *sv;
	struct storvsp_config cfg;
	struct storvsp_lun luns[STORVSP_MAX_LUNS];
	bool removing[STORVSP_MAX_LUNS]; /* detached, not yet released */
	struct scsi_channel channel[STORVSP_MAX_CHANNELS];
	unsigned channels;
};

struct vmm_scsi {
	struct vm *vm;
	struct vmbus *vb;
	struct scsi_controller ctrl[VMM_SCSI_CONTROLLERS];
	unsigned nctrl;
};

/* ---- the SynIC and the VMBus host, connected both ways ---- */

static uint16_t guest_post_message(void *opaque, unsigned vp, uint32_t connection_id,
				   uint32_t message_type, const void *payload, size_t len)
{
	return vmbus_post_message(opaque, vp, connection_id, message_type, payload, len);
}

static uint16_t guest_signal_event(void *opaque, uint32_t connection_id, uint16_t flag_number)
{
	return vmbus_signal_event(opaque, connection_id, flag_number);
}

static void guest_slot_free(void *opaque, unsigned vp, unsigned sint)
{
	vmbus_message_slot_free(opaque, vp, sint);
}

static int create_host(struct vmm_scsi *s, unsigned vps, char *err, size_t err_size)
{
	struct hyperv *hv = vm_hyperv(s->vm);
	if (!hv) {
		snprintf(err, err_size, "SCSI controllers need the Hyper-V interface (--synic)");
		return -EINVAL;
	}
	struct vmbus_config vc = { .mem = vm_guest_mem(s->vm),
				   .synic = { .opaque = hv,
					      .post_message = hyperv_synic_post_message,
					      .signal_event = hyperv_synic_signal_event },
				   .vp_count = vps };
	int ret = vmbus_create(&vc, &s->vb);
	if (ret < 0) {
		snprintf(err, err_size, "cannot create the VMBus host: %s", strerror(-ret));
		return ret;
	}
	struct hyperv_guest_ops ops = { .opaque = s->vb,
					.post_message = guest_post_message,
					.signal_event = guest_signal_event,
					.slot_free = guest_slot_free };
	hyperv_set_guest_ops(hv, &ops);
	return 0;
}

/* ---- channel threads ---- */

static void kick_channel(void *opaque, unsigned channel)
{
	struct scsi_controller *c = opaque;
	uint64_t one = 1;
	if (channel < c->channels && write(c->channel[channel].kick_fd, &one, sizeof(one)) < 0) {
		/* a saturated counter is already readable */
	}
}

static void channel_kicked(void *opaque)
{
	struct scsi_channel *ch = opaque;
	uint64_t n;
	if (read(ch->kick_fd, &n, sizeof(n)) < 0) {
		/* spurious wake-up */
	}
	storvsp_poll(ch->ctrl->sv, ch->index);
}

static void queue_ready(void *opaque)
{
	struct vdisk_queue *q = opaque;
	vdisk_queue_poll(q, 0);
}

/* Channel c's thread polls queue c of the image from now on. */
static int watch_queue(struct scsi_controller *c, unsigned index, struct vdisk *disk)
{
	struct vdisk_queue *q = vdisk_queue(disk, index);
	return event_loop_add_fd(c->channel[index].loop, vdisk_queue_event_fd(q), queue_ready, q);
}

/* Every channel thread polls its queue of the image; 0 or -errno with none watching. */
static int watch_image(struct scsi_controller *c, struct vdisk *disk)
{
	for (unsigned i = 0; i < c->channels; i++) {
		int ret = watch_queue(c, i, disk);
		if (ret < 0) {
			while (i--)
				event_loop_remove_fd(c->channel[i].loop,
						     vdisk_queue_event_fd(vdisk_queue(disk, i)));
			return ret;
		}
	}
	return 0;
}

/* No channel thread touches the image's queues any more when this returns (a callback
 * running on one has ended): they are the calling thread's. */
static void unwatch_image(struct scsi_controller *c, struct vdisk *disk)
{
	for (unsigned i = 0; i < c->channels; i++)
		event_loop_remove_fd(c->channel[i].loop,
				     vdisk_queue_event_fd(vdisk_queue(disk, i)));
}

static int start_channel(struct scsi_controller *c, unsigned index, char *err, size_t err_size)
{
	struct scsi_channel *ch = &c->channel[index];
	ch->ctrl = c;
	ch->index = index;
	ch->kick_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
	int ret = ch->kick_fd < 0 ? -errno : event_loop_create(&ch->loop);
	if (!ret)
		ret = event_loop_add_fd(ch->loop, ch->kick_fd, channel_kicked, ch);
	for (unsigned l = 0; !ret && l < STORVSP_MAX_LUNS; l++)
		if (c->luns[l].disk)
			ret = watch_queue(c, index, c->luns[l].disk);
	if (!ret)
		ret = event_loop_start(ch->loop);
	if (ret < 0)
		snprintf(err, err_size, "cannot start SCSI controller %u's channel %u: %s",
			 c->number, index, strerror(-ret));
	return ret;
}

static void stop_channel(struct scsi_channel *ch)
{
	if (ch->loop) {
		event_loop_stop(ch->loop);
		event_loop_destroy(ch->loop);
		ch->loop = NULL;
	}
	if (ch->kick_fd >= 0)
		close(ch->kick_fd);
	ch->kick_fd = -1;
}

/* ---- controllers ---- */

static struct scsi_controller *find_controller(struct vmm_scsi *s, unsigned number)
{
	for (unsigned i = 0; s && i < s->nctrl; i++)
		if (s->ctrl[i].number == number)
			return &s->ctrl[i];
	return NULL;
}

static struct scsi_controller *controller_for(struct vmm_scsi *s, unsigned number)
{
	struct scsi_controller *c = find_controller(s, number);
	if (c || s->nctrl == VMM_SCSI_CONTROLLERS)
		return c;
	c = &s->ctrl[s->nctrl++];
	c->number = number;
	return c;
}

/* A DVD-ROM drive as Hyper-V's synthetic SCSI DVD presents itself. */
static int make_cdrom(const struct vmm_scsi_disk *d, struct scsi_target *out)
{
	struct scsi_cdrom_config cfg = { .vendor = "Msft",
					 .product = "Virtual DVD-ROM",
					 .revision = "1.0",
					 .interface = SCSI_CDROM_INTERFACE_SCSI };
	snprintf(cfg.serial, sizeof(cfg.serial), "HVSCSI%u%02uDVD", d->controller, d->lun);
	struct scsi_cdrom *cd = NULL;
	int ret = scsi_cdrom_create(&cfg, d->disk, &cd);
	*out = scsi_target_of_cdrom(cd);
	return ret;
}

static int make_disk(const struct vmm_scsi_disk *d, struct scsi_target *out)
{
	struct scsi_disk_config dc;
	struct scsi_disk *target = NULL;
	int ret = scsi_disk_config_from_vdisk(d->disk, &dc);
	if (!ret)
		ret = scsi_disk_create(d->disk, &dc, &target);
	*out = scsi_target_of_disk(target);
	return ret;
}

/* The target for the image (a disk, or a DVD drive with it as the medium), in *lun. */
static int make_target(const struct vmm_scsi_disk *d, struct storvsp_lun *lun, char *err,
		       size_t err_size)
{
	struct scsi_target target;
	int ret = d->dvd ? make_cdrom(d, &target) : make_disk(d, &target);
	if (ret < 0) {
		snprintf(err, err_size, "cannot serve scsi:%u:%u: %s", d->controller, d->lun,
			 strerror(-ret));
		return ret;
	}
	*lun = (struct storvsp_lun){ target, d->disk };
	return 0;
}

static int add_lun(struct scsi_controller *c, const struct vmm_scsi_disk *d, char *err,
		   size_t err_size)
{
	int ret = make_target(d, &c->luns[d->lun], err, err_size);
	if (!ret)
		c->cfg.luns[d->lun] = c->luns[d->lun];
	return ret;
}

/* The guest's signal on a channel writes the channel's kick eventfd directly: in KVM with
 * the in-kernel SynIC (no exit to the VMM at all), on the vCPU thread with the user-space
 * one (no lookup in the VMBus host). fd -1 removes it. */
static int set_doorbell(struct vmm_scsi *s, struct scsi_controller *c, unsigned channel, int fd,
			char *err, size_t err_size)
{
	int ret = vm_hyperv_set_event_fd(s->vm, storvsp_connection_id(c->sv, channel), fd);
	if (ret < 0 && err)
		snprintf(err, err_size, "cannot connect SCSI controller %u's channel %u: %s",
			 c->number, channel, strerror(-ret));
	return ret;
}

static int start_controller(struct vmm_scsi *s, struct scsi_controller *c, unsigned channels,
			    char *err, size_t err_size)
{
	c->channels = channels;
	for (unsigned i = 0; i < channels; i++)
		c->channel[i].kick_fd = -1;
	c->cfg.controller = c->number;
	c->cfg.channels = channels;
	c->cfg.kick = kick_channel;
	c->cfg.kick_opaque = c;
	for (unsigned i = 0; i < channels; i++) {
		int ret = start_channel(c, i, err, err_size);
		if (ret)
			return ret;
	}
	int ret = storvsp_create(s->vb, &c->cfg, &c->sv);
	if (ret < 0)
		snprintf(err, err_size, "cannot create SCSI controller %u: %s", c->number,
			 strerror(-ret));
	for (unsigned i = 0; !ret && i < channels; i++)
		ret = set_doorbell(s, c, i, c->channel[i].kick_fd, err, err_size);
	return ret;
}

int vmm_scsi_create(struct vm *vm, const struct vmm_scsi_disk *disks, unsigned ndisks,
		    unsigned extra_controllers, unsigned channels, struct vmm_scsi **out, char *err,
		    size_t err_size)
{
	struct vmm_scsi *s = calloc(1, sizeof(*s));
	if (!s)
		return -ENOMEM;
	s->vm = vm;
	*out = s;
	if (channels > STORVSP_MAX_CHANNELS)
		channels = STORVSP_MAX_CHANNELS;
	int ret = create_host(s, channels, err, err_size);
	for (unsigned i = 0; !ret && i < ndisks; i++) {
		struct scsi_controller *c = controller_for(s, disks[i].controller);
		ret = c ? add_lun(c, &disks[i], err, err_size) : -EINVAL;
	}
	for (unsigned n = 0; !ret && n < VMM_SCSI_CONTROLLERS; n++)
		if (extra_controllers & 1u << n)
			controller_for(s, n);
	for (unsigned i = 0; !ret && i < s->nctrl; i++)
		ret = start_controller(s, &s->ctrl[i], channels, err, err_size);
	if (!ret)
		vmbus_start(s->vb);
	return ret;
}

static void sleep_ns(long ns)
{
	struct timespec ts = { 0, ns };
	nanosleep(&ts, NULL);
}

/* Completes what the guest left in flight, on this thread once the channel threads are
 * gone. */
static void drain_controller(struct scsi_controller *c)
{
	for (unsigned l = 0; l < STORVSP_MAX_LUNS; l++) {
		if (!c->luns[l].disk)
			continue;
		for (unsigned q = 0; q < c->channels; q++) {
			struct vdisk_queue *queue = vdisk_queue(c->luns[l].disk, q);
			while (vdisk_queue_inflight(queue))
				vdisk_queue_poll(queue, 1);
		}
	}
}

void vmm_scsi_destroy(struct vmm_scsi *s)
{
	if (!s)
		return;
	if (s->vb)
		vmbus_stop(s->vb);
	for (unsigned i = 0; i < s->nctrl; i++) {
		struct scsi_controller *c = &s->ctrl[i];
		for (unsigned ch = 0; c->sv && ch < c->channels; ch++)
			set_doorbell(s, c, ch, -1, NULL, 0);
		for (unsigned ch = 0; ch < c->channels; ch++)
			stop_channel(&c->channel[ch]);
		drain_controller(c);
		if (c->sv)
			storvsp_destroy(c->sv);
		for (unsigned l = 0; l < STORVSP_MAX_LUNS; l++)
			scsi_target_destroy(c->luns[l].target);
	}
	if (s->vb) {
		hyperv_set_guest_ops(vm_hyperv(s->vm), &(struct hyperv_guest_ops){ 0 });
		vmbus_destroy(s->vb);
	}
	free(s);
}

/* The guest's requests in flight write its memory: the reset waits for them (the channel
 * threads complete them and drop their replies), so none lands in RAM the rebooted guest
 * uses. */
void vmm_scsi_reset(void *opaque)
{
	struct vmm_scsi *s = opaque;
	vmbus_reset(s->vb);
	for (unsigned i = 0; i < s->nctrl; i++)
		while (s->ctrl[i].sv && storvsp_inflight(s->ctrl[i].sv))
			sleep_ns(DRAIN_POLL_NS);
}

/* ---- LUNs at run time ---- */

#define DRAIN_LIMIT_NS (VMM_SCSI_DRAIN_MS * 1000000l)

/* Waits until the slot's target has no command in flight, for at most VMM_SCSI_DRAIN_MS:
 * 0 or -ETIMEDOUT. The channel threads complete the commands meanwhile. */
static int wait_idle(struct storvsp *sv, unsigned lun)
{
	for (long waited = 0; storvsp_lun_inflight(sv, lun); waited += DRAIN_POLL_NS) {
		if (waited >= DRAIN_LIMIT_NS)
			return -ETIMEDOUT;
		sleep_ns(DRAIN_POLL_NS);
	}
	return 0;
}

/* Releases a detached LUN once its commands have completed (VMM_SCSI_DRAIN_MS at most):
 * 0 with its target and image in *out, or -ETIMEDOUT. */
static int release_when_idle(struct storvsp *sv, unsigned lun, struct storvsp_lun *out)
{
	for (long waited = 0;; waited += DRAIN_POLL_NS) {
		int ret = storvsp_release_lun(sv, lun, out);
		if (ret != -EBUSY)
			return ret;
		if (waited >= DRAIN_LIMIT_NS)
			return -ETIMEDOUT;
		sleep_ns(DRAIN_POLL_NS);
	}
}

/* Tells the guest its LUNs changed. A guest whose storvsc has not connected yet finds them
 * when it probes: nothing to tell then. */
static void tell_guest(struct scsi_controller *c, bool removed)
{
	storvsp_notify_luns_changed(c->sv, removed);
}

/* The controller and LUN of a change, or NULL with -ENODEV / -EINVAL in *ret and err. */
static struct scsi_controller *changed_controller(struct vmm_scsi *s, unsigned number, unsigned lun,
						  int *ret, char *err, size_t err_size)
{
	struct scsi_controller *c = find_controller(s, number);
	*ret = 0;
	if (!c) {
		snprintf(err, err_size,
			 "the VM has no SCSI controller %u (start it with --scsi-controller %u "
			 "or a --disk scsi:%u:L)",
			 number, number, number);
		*ret = -ENODEV;
	} else if (lun >= STORVSP_MAX_LUNS) {
		snprintf(err, err_size, "LUN %u is out of range: a controller has LUNs 0 to %u",
			 lun, STORVSP_MAX_LUNS - 1);
		*ret = -EINVAL;
	}
	return *ret ? NULL : c;
}

/* The controller with a disk at LUN lun, or NULL with -ENODEV / -EINVAL in *ret. */
static struct scsi_controller *disk_controller(struct vmm_scsi *s, unsigned number, unsigned lun,
					       int *ret, char *err, size_t err_size)
{
	struct scsi_controller *c = changed_controller(s, number, lun, ret, err, err_size);
	if (c && (!c->luns[lun].disk || c->removing[lun])) {
		snprintf(err, err_size, "scsi:%u:%u holds no disk", number, lun);
		*ret = -ENODEV;
		return NULL;
	}
	return c;
}

int vmm_scsi_lun_free(struct vmm_scsi *s, unsigned controller, unsigned lun, char *err,
		      size_t err_size)
{
	int ret;
	struct scsi_controller *c = changed_controller(s, controller, lun, &ret, err, err_size);
	if (!c || !c->luns[lun].disk)
		return ret;
	if (c->removing[lun]) {
		snprintf(err, err_size,
			 "scsi:%u:%u is still being removed (requests in flight): run scsi-remove "
			 "on it again",
			 controller, lun);
		return -EBUSY;
	}
	snprintf(err, err_size, "scsi:%u:%u already holds a disk: remove it first", controller,
		 lun);
	return -EEXIST;
}

int vmm_scsi_attach(struct vmm_scsi *s, const struct vmm_scsi_disk *d, char *err, size_t err_size)
{
	int ret = vmm_scsi_lun_free(s, d->controller, d->lun, err, err_size);
	if (ret < 0)
		return ret;
	struct scsi_controller *c = find_controller(s, d->controller);
	if (vdisk_queue_count(d->disk) < c->channels) {
		snprintf(err, err_size, "the image has %u queues, the controller needs %u",
			 vdisk_queue_count(d->disk), c->channels);
		return -EINVAL;
	}
	struct storvsp_lun lun;
	ret = make_target(d, &lun, err, err_size);
	if (ret)
		return ret;
	ret = watch_image(c, d->disk);
	if (!ret) {
		ret = storvsp_attach_lun(c->sv, d->lun, &lun);
		if (ret)
			unwatch_image(c, d->disk);
	}
	if (ret) {
		scsi_target_destroy(lun.target);
		snprintf(err, err_size, "cannot attach scsi:%u:%u: %s", d->controller, d->lun,
			 strerror(-ret));
		return ret;
	}
	c->luns[d->lun] = lun;
	tell_guest(c, false);
	return 0;
}

int vmm_scsi_detach(struct vmm_scsi *s, unsigned controller, unsigned lun, struct vdisk **disk,
		    char *err, size_t err_size)
{
	int ret;
	struct scsi_controller *c = changed_controller(s, controller, lun, &ret, err, err_size);
	if (!c)
		return ret;
	if (!c->luns[lun].disk) {
		snprintf(err, err_size, "scsi:%u:%u holds no disk", controller, lun);
		return -ENODEV;
	}
	if (!c->removing[lun]) { /* else a removal that timed out goes on */
		ret = storvsp_detach_lun(c->sv, lun);
		if (ret < 0) {
			snprintf(err, err_size, "cannot detach scsi:%u:%u: %s", controller, lun,
				 strerror(-ret));
			return ret;
		}
		c->removing[lun] = true;
		tell_guest(c, true);
	}
	struct storvsp_lun released;
	ret = release_when_idle(c->sv, lun, &released);
	if (ret) {
		snprintf(err, err_size,
			 "requests to scsi:%u:%u are still in flight after %d ms; the guest no "
			 "longer sees the disk: run scsi-remove again to finish",
			 controller, lun, VMM_SCSI_DRAIN_MS);
		return -ETIMEDOUT;
	}
	unwatch_image(c, released.disk);
	scsi_target_destroy(released.target);
	c->luns[lun] = (struct storvsp_lun){ 0 };
	c->removing[lun] = false;
	*disk = released.disk;
	return 0;
}

/* The image grows while the VM runs, but the block layer lets only one thread use a queue
 * and vdisk_resize does its own I/O on queue 0 and rebuilds the format's mapping: so the
 * LUN is quiesced (new commands wait on their channel, those in flight complete), the
 * channel threads stop polling the image's queues, and this thread owns the image for the
 * resize. Then the threads poll again and the held commands start, the first of them
 * meeting the capacity unit attention. */
int vmm_scsi_resize(struct vmm_scsi *s, unsigned controller, unsigned lun, uint64_t size, char *err,
		    size_t err_size)
{
	int ret;
	struct scsi_controller *c = disk_controller(s, controller, lun, &ret, err, err_size);
	if (!c)
		return ret;
	struct storvsp_lun *l = &c->luns[lun];
	uint64_t old = vdisk_size(l->disk);
	if (size < old) {
		snprintf(err, err_size,
			 "scsi:%u:%u is %llu bytes: shrinking a disk in use is refused (the guest "
			 "would lose what it keeps past the end)",
			 controller, lun, (unsigned long long)old);
		return -EINVAL;
	}
	if (size == old)
		return 0;
	ret = storvsp_quiesce_lun(c->sv, lun);
	if (!ret)
		ret = wait_idle(c->sv, lun);
	if (ret) {
		storvsp_resume_lun(c->sv, lun);
		snprintf(err, err_size,
			 ret == -ETIMEDOUT ? "requests to scsi:%u:%u did not complete in time; "
					     "the disk keeps its size"
					   : "cannot quiesce scsi:%u:%u",
			 controller, lun);
		return ret;
	}
	unwatch_image(c, l->disk);
	char why[256] = "";
	ret = vdisk_resize(l->disk, size, 0, NULL, why, sizeof(why));
	int watched = watch_image(c, l->disk);
	if (!ret)
		scsi_target_capacity_changed(l->target);
	storvsp_resume_lun(c->sv, lun);
	if (ret < 0) {
		snprintf(err, err_size, "cannot resize scsi:%u:%u: %s", controller, lun,
			 why[0] ? why : strerror(-ret));
		return ret;
	}
	if (watched < 0) {
		snprintf(err, err_size,
			 "scsi:%u:%u was resized, but its I/O threads cannot watch it again: %s",
			 controller, lun, strerror(-watched));
		return watched;
	}
	return 0;
}

unsigned vmm_scsi_bus_stats(struct vmm_scsi *s, struct vmbus_stats *bus,
			    struct vmm_scsi_controller_stats *out, unsigned max)
{
	vmbus_get_stats(s->vb, bus);
	unsigned n = 0;
	for (unsigned i = 0; i < s->nctrl && n < max; i++) {
		if (!s->ctrl[i].sv)
			continue;
		out[n].controller = s->ctrl[i].number;
		storvsp_get_stats(s->ctrl[i].sv, &out[n].stats);
		n++;
	}
	return n;
}

int vmm_scsi_get_stats(struct vmm_scsi *s, unsigned controller, unsigned lun,
		       struct storvsp_lun_stats *out)
{
	struct scsi_controller *c = find_controller(s, controller);
	if (!c || lun >= STORVSP_MAX_LUNS || !c->luns[lun].disk)
		return -ENODEV;
	return storvsp_get_lun_stats(c->sv, lun, out) < 0 ? -ENODEV : 0;
}
