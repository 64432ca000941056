/* The synthetic SCSI controllers of `vmm run` (see run_scsi.h). */
#include "run_scsi.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "hyperv.h"
#include "loop.h"
#include "scsi_disk.h"
#include "scsi_target.h"
#include "storvsp.h"
#include "vdisk.h"
#include "vm.h"
#include "vmbus.h"

#define MAX_CONTROLLERS 4

struct scsi_controller;

/* One VMBus channel of a controller: its thread and the eventfd that wakes it. */
struct scsi_channel {
	struct scsi_controller *ctrl;
	unsigned index;
	struct event_loop *loop;
	int kick_fd;
};

struct scsi_controller {
	unsigned number;
	struct storvsp *sv;
	struct storvsp_config cfg;
	struct scsi_channel channel[STORVSP_MAX_CHANNELS];
	unsigned channels;
};

struct vmm_scsi {
	struct vm *vm;
	struct vmbus *vb;
	struct scsi_controller ctrl[MAX_CONTROLLERS];
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

static int start_channel(struct scsi_controller *c, unsigned index, char *err, size_t err_size)
{
	struct scsi_channel *ch = &c->channel[index];
	ch->ctrl = c;
	ch->index = index;
	ch->kick_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
	int ret = ch->kick_fd < 0 ? -errno : event_loop_create(&ch->loop);
	if (!ret)
		ret = event_loop_add_fd(ch->loop, ch->kick_fd, channel_kicked, ch);
	for (unsigned l = 0; !ret && l < STORVSP_MAX_LUNS; l++) {
		if (!c->cfg.luns[l].disk)
			continue;
		struct vdisk_queue *q = vdisk_queue(c->cfg.luns[l].disk, index);
		ret = event_loop_add_fd(ch->loop, vdisk_queue_event_fd(q), queue_ready, q);
	}
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

static struct scsi_controller *controller_for(struct vmm_scsi *s, unsigned number)
{
	for (unsigned i = 0; i < s->nctrl; i++)
		if (s->ctrl[i].number == number)
			return &s->ctrl[i];
	if (s->nctrl == MAX_CONTROLLERS)
		return NULL;
	struct scsi_controller *c = &s->ctrl[s->nctrl++];
	c->number = number;
	return c;
}

static int add_lun(struct scsi_controller *c, const struct vmm_scsi_disk *d, char *err,
		   size_t err_size)
{
	struct scsi_disk_config dc;
	struct scsi_disk *target = NULL;
	int ret = scsi_disk_config_from_vdisk(d->disk, &dc);
	if (!ret)
		ret = scsi_disk_create(d->disk, &dc, &target);
	if (ret < 0) {
		snprintf(err, err_size, "cannot serve scsi:%u:%u: %s", d->controller, d->lun,
			 strerror(-ret));
		return ret;
	}
	c->cfg.luns[d->lun] = (struct storvsp_lun){ scsi_target_of_disk(target), d->disk };
	return 0;
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
	return ret;
}

int vmm_scsi_create(struct vm *vm, const struct vmm_scsi_disk *disks, unsigned ndisks,
		    unsigned channels, struct vmm_scsi **out, char *err, size_t err_size)
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
	for (unsigned i = 0; !ret && i < s->nctrl; i++)
		ret = start_controller(s, &s->ctrl[i], channels, err, err_size);
	if (!ret)
		vmbus_start(s->vb);
	return ret;
}

/* Completes what the guest left in flight, on this thread once the channel threads are
 * gone. */
static void drain_controller(struct scsi_controller *c)
{
	for (unsigned l = 0; l < STORVSP_MAX_LUNS; l++) {
		if (!c->cfg.luns[l].disk)
			continue;
		for (unsigned q = 0; q < c->channels; q++) {
			struct vdisk_queue *queue = vdisk_queue(c->cfg.luns[l].disk, q);
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
		for (unsigned ch = 0; ch < c->channels; ch++)
			stop_channel(&c->channel[ch]);
		drain_controller(c);
		if (c->sv)
			storvsp_destroy(c->sv);
		for (unsigned l = 0; l < STORVSP_MAX_LUNS; l++)
			scsi_target_destroy(c->cfg.luns[l].target);
	}
	if (s->vb) {
		hyperv_set_guest_ops(vm_hyperv(s->vm), &(struct hyperv_guest_ops){ 0 });
		vmbus_destroy(s->vb);
	}
	free(s);
}

void vmm_scsi_reset(void *opaque)
{
	struct vmm_scsi *s = opaque;
	vmbus_reset(s->vb);
}
