/* The VMBus host: connection, offers, channels, and the SynIC glue. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "endian.h"
#include "vmbus_internal.h"

/* Replies the guest is still to take from its slot: past this, a new message is refused
 * with HV_STATUS_INSUFFICIENT_BUFFERS (Linux retries it) instead of queueing without end. */
#define OUTBOX_SOFT_LIMIT 256u

/* Minimum payload of each message the guest sends; shorter ones are ignored. */
static const uint8_t min_len[] = {
	[MSG_REQUESTOFFERS] = 8,   [MSG_OPENCHANNEL] = 28,	[MSG_CLOSECHANNEL] = 12,
	[MSG_GPADL_HEADER] = 20,   [MSG_GPADL_BODY] = 16,	[MSG_GPADL_TEARDOWN] = 16,
	[MSG_RELID_RELEASED] = 12, [MSG_INITIATE_CONTACT] = 40, [MSG_UNLOAD] = 8,
	[MSG_MODIFYCHANNEL] = 16,
};

/* The versions Linux 6.1 offers, newest first: (major << 16) | minor. */
#define VERSION_WIN8	0x00020004u
#define VERSION_WIN10	0x00040000u
#define VERSION_WIN10_1 0x00040001u
#define VERSION_V5_0	0x00050000u
#define VERSION_V5_3	0x00050003u
static const uint32_t versions[] = { 0x00050003,      0x00050002,    0x00050001, VERSION_V5_0,
				     VERSION_WIN10_1, VERSION_WIN10, 0x00030000, VERSION_WIN8 };

static bool version_known(uint32_t v)
{
	for (size_t i = 0; i < sizeof(versions) / sizeof(versions[0]); i++)
		if (versions[i] == v)
			return true;
	return false;
}

/* ---- outgoing messages ---- */

static void outbox_clear(struct vmbus *vb)
{
	vb->out_head = vb->out_count = 0;
	vb->out_clears++;
}

void vmbus_queue_msg(struct vmbus *vb, const struct vmbus_msg *m)
{
	if (vb->out_count == vb->out_cap) {
		unsigned cap = vb->out_cap ? vb->out_cap * 2 : 64;
		struct vmbus_msg *q = malloc(cap * sizeof(*q));
		if (!q)
			return; /* lost: counted as a message the guest never saw */
		for (unsigned i = 0; i < vb->out_count; i++)
			q[i] = vb->outbox[(vb->out_head + i) % vb->out_cap];
		free(vb->outbox);
		vb->outbox = q;
		vb->out_cap = cap;
		vb->out_head = 0;
	}
	vb->outbox[(vb->out_head + vb->out_count) % vb->out_cap] = *m;
	vb->out_count++;
}

/* Delivers queued messages in order until the slot is full. One thread flushes at a time
 * (others leave a note) and the SynIC is called without our lock, since it may hold its
 * own while it calls vmbus_message_slot_free. */
static void outbox_flush(struct vmbus *vb)
{
	pthread_mutex_lock(&vb->lock);
	if (vb->flushing) {
		vb->flush_again = true;
		pthread_mutex_unlock(&vb->lock);
		return;
	}
	vb->flushing = true;
	do {
		vb->flush_again = false;
		while (vb->out_count && !vb->slot_busy) {
			struct vmbus_msg m = vb->outbox[vb->out_head];
			unsigned vp = vb->msg_vp;
			uint64_t frees = vb->slot_frees, clears = vb->out_clears;
			pthread_mutex_unlock(&vb->lock);
			int ret = vb->cfg.synic.post_message(vb->cfg.synic.opaque, vp,
							     VMBUS_MESSAGE_SINT, VMBUS_MESSAGE_TYPE,
							     m.data, m.len);
			pthread_mutex_lock(&vb->lock);
			if (ret == -EAGAIN) {
				STAT_INC(vb, slot_busy);
				/* a slot freed while we posted: try again at once */
				vb->slot_busy = vb->slot_frees == frees;
				continue;
			}
			if (ret == 0)
				STAT_INC(vb, messages_out);
			if (vb->out_clears ==
			    clears) { /* else a reset emptied the queue meanwhile */
				vb->out_head = (vb->out_head + 1) % vb->out_cap;
				vb->out_count--;
			}
		}
	} while (vb->flush_again);
	vb->flushing = false;
	pthread_mutex_unlock(&vb->lock);
}

void vmbus_message_slot_free(struct vmbus *vb, unsigned vp, unsigned sint)
{
	(void)vp;
	if (sint != VMBUS_MESSAGE_SINT)
		return;
	pthread_mutex_lock(&vb->lock);
	vb->slot_busy = false;
	vb->slot_frees++;
	pthread_mutex_unlock(&vb->lock);
	outbox_flush(vb);
}

/* ---- channels ---- */

static void signal_guest(struct vmbus *vb, unsigned vp, uint32_t relid)
{
	STAT_INC(vb, signals_out);
	vb->cfg.synic.signal_event(vb->cfg.synic.opaque, vp, VMBUS_MESSAGE_SINT, relid);
}

static void send_offer(struct vmbus *vb, struct vmbus_channel *ch)
{
	struct vmbus_msg m = { .len = 196 };
	store_le32(m.data, MSG_OFFERCHANNEL);
	memcpy(m.data + 8, ch->dev->info.class_id.bytes, 16);
	memcpy(m.data + 24, ch->dev->info.instance_id.bytes, 16);
	store_le16(m.data + 180, (uint16_t)ch->index);
	store_le32(m.data + 184, ch->relid);
	/* no monitor page (monitorid 0, monitor_allocated 0): the guest signals with
	 * HvSignalEvent; a dedicated interrupt keeps it off the shared interrupt page */
	store_le16(m.data + 190, 1);
	store_le32(m.data + 192, VMBUS_CONNECTION_ID_CHANNELS + ch->relid);
	vmbus_queue_msg(vb, &m);
	ch->state = CHANNEL_OFFERED;
	ch->rescinded = false;
}

void vmbus_close_channel(struct vmbus_channel *ch)
{
	if (ch->state != CHANNEL_OPEN)
		return;
	pthread_mutex_lock(&ch->lock);
	__atomic_store_n(&ch->session, 0, __ATOMIC_RELEASE);
	free(ch->pages);
	ch->pages = NULL;
	pthread_mutex_unlock(&ch->lock);
	ch->ring_gpadl->user = NULL;
	ch->ring_gpadl = NULL;
	ch->state = CHANNEL_OFFERED;
	ch->dev->ops->close(ch->dev->opaque, ch);
}

static struct vmbus_channel *channel_of(struct vmbus *vb, uint32_t relid)
{
	return relid <= VMBUS_MAX_RELID ? vb->relids[relid] : NULL;
}

/* Binds the rings of ch to GPADL g: pages [0, split) carry guest -> host, [split, n)
 * host -> guest, each starting with its header page. */
static int map_rings(struct vmbus *vb, struct vmbus_channel *ch, struct vmbus_gpadl *g,
		     uint32_t split)
{
	uint32_t n = vmbus_gpadl_ring_pages(g);
	if (n < 4 || split < 2 || split > n - 2)
		return -EINVAL;
	uint8_t **pages = calloc(n, sizeof(*pages));
	if (!pages)
		return -ENOMEM;
	int ret = vmbus_gpadl_map_pages(vb, g, pages, n);
	if (!ret)
		ret = vmbus_ring_init(&ch->in, pages[0], pages + 1, split - 1, true);
	if (!ret)
		ret = vmbus_ring_init(&ch->out, pages[split], pages + split + 1, n - split - 1,
				      false);
	if (ret) {
		free(pages);
		return ret;
	}
	ch->pages = pages;
	return 0;
}

static int open_channel(struct vmbus *vb, struct vmbus_channel *ch, uint32_t handle,
			unsigned target_vp, uint32_t split)
{
	struct vmbus_gpadl *g = vmbus_gpadl_find(vb, handle);
	if (ch->state != CHANNEL_OFFERED || ch->rescinded || !g || g->user ||
	    g->relid != ch->relid || target_vp >= vb->cfg.vp_count)
		return -EINVAL;
	pthread_mutex_lock(&ch->lock);
	int ret = map_rings(vb, ch, g, split);
	if (ret) {
		pthread_mutex_unlock(&ch->lock);
		return ret;
	}
	ch->target_vp = target_vp;
	if (++vb->session_seq == 0)
		vb->session_seq = 1;
	__atomic_store_n(&ch->session, vb->session_seq, __ATOMIC_RELEASE);
	pthread_mutex_unlock(&ch->lock);
	ch->state = CHANNEL_OPEN;
	ch->ring_gpadl = g;
	g->user = ch;
	ret = ch->dev->ops->open(ch->dev->opaque, ch);
	if (ret) {
		/* the device refused: undo without telling it about a close */
		pthread_mutex_lock(&ch->lock);
		__atomic_store_n(&ch->session, 0, __ATOMIC_RELEASE);
		free(ch->pages);
		ch->pages = NULL;
		pthread_mutex_unlock(&ch->lock);
		g->user = NULL;
		ch->ring_gpadl = NULL;
		ch->state = CHANNEL_OFFERED;
	}
	return ret;
}

/* ---- control messages from the guest (vb->lock held) ---- */

/* Everything the connection built goes: channels close, sub-channels and GPADLs are
 * dropped, replies not yet delivered are discarded, and devices forget their state. */
static void reset_connection(struct vmbus *vb)
{
	for (struct vmbus_device *d = vb->devices; d; d = d->next) {
		for (unsigned i = 0; i < d->nchannels; i++) {
			vmbus_close_channel(&d->channels[i]);
			d->channels[i].state = CHANNEL_UNOFFERED;
			d->channels[i].rescinded = false;
		}
		d->ops->reset(d->opaque);
	}
	vmbus_gpadl_free_all(vb);
	outbox_clear(vb);
	vb->connected = vb->offers_requested = false;
	vb->version = 0;
}

static void on_initiate_contact(struct vmbus *vb, unsigned vp, uint32_t connection_id,
				const uint8_t *msg)
{
	uint32_t version = load_le32(msg + 8), target = load_le32(msg + 12);
	/* a new contact is a new guest kernel (kexec, kdump): start from nothing */
	if (vb->connected)
		reset_connection(vb);
	uint32_t expected_id =
		version >= VERSION_V5_0 ? VMBUS_CONNECTION_ID_CONTACT : VMBUS_CONNECTION_ID_MESSAGE;
	bool ok =
		version_known(version) && connection_id == expected_id && target < vb->cfg.vp_count;
	vb->msg_vp = ok ? target : vp;
	if (ok) {
		vb->connected = true;
		vb->version = version;
		vb->monitor_pages[0] = load_le64(msg + 24);
		vb->monitor_pages[1] = load_le64(msg + 32);
	}
	struct vmbus_msg m = { .len = 16 };
	store_le32(m.data, MSG_VERSION_RESPONSE);
	m.data[8] = ok;
	m.data[9] = 0; /* connection state: successful */
	store_le32(m.data + 12, VMBUS_CONNECTION_ID_MESSAGE);
	vmbus_queue_msg(vb, &m);
}

static bool on_request_offers(struct vmbus *vb)
{
	if (vb->offers_requested)
		return false;
	vb->offers_requested = true;
	for (struct vmbus_device *d = vb->devices; d; d = d->next)
		send_offer(vb, &d->channels[0]);
	struct vmbus_msg m = { .len = 8 };
	store_le32(m.data, MSG_ALLOFFERS_DELIVERED);
	vmbus_queue_msg(vb, &m);
	return true;
}

static bool on_open(struct vmbus *vb, const uint8_t *msg)
{
	uint32_t relid = load_le32(msg + 8);
	struct vmbus_channel *ch = channel_of(vb, relid);
	if (!ch)
		return false;
	int ret =
		open_channel(vb, ch, load_le32(msg + 16), load_le32(msg + 20), load_le32(msg + 24));
	struct vmbus_msg m = { .len = 20 };
	store_le32(m.data, MSG_OPENCHANNEL_RESULT);
	store_le32(m.data + 8, relid);
	store_le32(m.data + 12, load_le32(msg + 12));
	store_le32(m.data + 16, ret ? VMBUS_STATUS_FAILED : 0);
	vmbus_queue_msg(vb, &m);
	if (ret)
		STAT_INC(vb, opens_refused);
	else
		STAT_INC(vb, opens);
	return true;
}

static bool on_close(struct vmbus *vb, const uint8_t *msg)
{
	struct vmbus_channel *ch = channel_of(vb, load_le32(msg + 8));
	if (!ch || ch->state != CHANNEL_OPEN)
		return false;
	vmbus_close_channel(ch);
	return true;
}

static bool on_relid_released(struct vmbus *vb, const uint8_t *msg)
{
	struct vmbus_channel *ch = channel_of(vb, load_le32(msg + 8));
	if (!ch || !ch->rescinded)
		return false;
	vmbus_close_channel(ch);
	ch->state = CHANNEL_UNOFFERED;
	ch->rescinded = false;
	return true;
}

static void on_unload(struct vmbus *vb)
{
	reset_connection(vb);
	struct vmbus_msg m = { .len = 8 };
	store_le32(m.data, MSG_UNLOAD_RESPONSE);
	vmbus_queue_msg(vb, &m);
}

static bool on_modify(struct vmbus *vb, const uint8_t *msg)
{
	struct vmbus_channel *ch = channel_of(vb, load_le32(msg + 8));
	uint32_t target = load_le32(msg + 12);
	if (!ch || ch->state == CHANNEL_UNOFFERED || vb->version < VERSION_WIN10_1)
		return false;
	bool ok = target < vb->cfg.vp_count;
	if (ok) {
		pthread_mutex_lock(&ch->lock);
		ch->target_vp = target;
		pthread_mutex_unlock(&ch->lock);
	}
	if (vb->version >= VERSION_V5_3) {
		struct vmbus_msg m = { .len = 16 };
		store_le32(m.data, MSG_MODIFYCHANNEL_RESPONSE);
		store_le32(m.data + 8, ch->relid);
		store_le32(m.data + 12, ok ? 0 : VMBUS_STATUS_FAILED);
		vmbus_queue_msg(vb, &m);
	}
	return true;
}

/* Returns false for a message that is malformed or out of place. */
static bool handle_message(struct vmbus *vb, unsigned vp, uint32_t connection_id,
			   const uint8_t *msg, size_t len)
{
	if (len < 8)
		return false;
	uint32_t type = load_le32(msg);
	if (type >= sizeof(min_len) || !min_len[type] || len < min_len[type])
		return false;
	if (type == MSG_INITIATE_CONTACT) {
		on_initiate_contact(vb, vp, connection_id, msg);
		return true;
	}
	if (!vb->connected)
		return false;
	switch (type) {
	case MSG_REQUESTOFFERS:
		return on_request_offers(vb);
	case MSG_GPADL_HEADER:
		return vmbus_gpadl_header(vb, msg, len);
	case MSG_GPADL_BODY:
		return vmbus_gpadl_body(vb, msg, len);
	case MSG_GPADL_TEARDOWN:
		return vmbus_gpadl_teardown(vb, msg, len);
	case MSG_OPENCHANNEL:
		return on_open(vb, msg);
	case MSG_CLOSECHANNEL:
		return on_close(vb, msg);
	case MSG_RELID_RELEASED:
		return on_relid_released(vb, msg);
	case MSG_UNLOAD:
		on_unload(vb);
		return true;
	case MSG_MODIFYCHANNEL:
		return on_modify(vb, msg);
	}
	return false;
}

uint16_t vmbus_post_message(struct vmbus *vb, unsigned vp, uint32_t connection_id,
			    uint32_t message_type, const void *payload, size_t len)
{
	if (vp >= vb->cfg.vp_count || message_type != VMBUS_MESSAGE_TYPE ||
	    len > VMBUS_MESSAGE_MAX_PAYLOAD || (len && !payload))
		return HV_STATUS_INVALID_PARAMETER;
	if (connection_id != VMBUS_CONNECTION_ID_MESSAGE &&
	    connection_id != VMBUS_CONNECTION_ID_CONTACT)
		return HV_STATUS_INVALID_CONNECTION_ID;
	/* one copy, so the guest cannot change the message while it is checked */
	uint8_t msg[VMBUS_MESSAGE_MAX_PAYLOAD];
	if (len)
		memcpy(msg, payload, len);
	pthread_mutex_lock(&vb->lock);
	if (vb->out_count >= OUTBOX_SOFT_LIMIT) {
		pthread_mutex_unlock(&vb->lock);
		return HV_STATUS_INSUFFICIENT_BUFFERS;
	}
	if (handle_message(vb, vp, connection_id, msg, len))
		STAT_INC(vb, messages_in);
	else
		STAT_INC(vb, messages_bad);
	pthread_mutex_unlock(&vb->lock);
	outbox_flush(vb);
	return HV_STATUS_SUCCESS;
}

uint16_t vmbus_signal_event(struct vmbus *vb, uint32_t connection_id, uint16_t flag_number)
{
	if (connection_id <= VMBUS_CONNECTION_ID_CHANNELS ||
	    connection_id > VMBUS_CONNECTION_ID_CHANNELS + VMBUS_MAX_RELID)
		return HV_STATUS_INVALID_CONNECTION_ID;
	struct vmbus_channel *ch = __atomic_load_n(
		&vb->relids[connection_id - VMBUS_CONNECTION_ID_CHANNELS], __ATOMIC_ACQUIRE);
	if (!ch)
		return HV_STATUS_INVALID_CONNECTION_ID;
	if (flag_number)
		return HV_STATUS_INVALID_PARAMETER;
	STAT_INC(vb, signals_in);
	if (__atomic_load_n(&ch->session, __ATOMIC_ACQUIRE) &&
	    __atomic_load_n(&vb->running, __ATOMIC_ACQUIRE))
		ch->dev->ops->notify(ch->dev->opaque, ch);
	return HV_STATUS_SUCCESS;
}

/* ---- the host ---- */

int vmbus_create(const struct vmbus_config *cfg, struct vmbus **out)
{
	if (!cfg || !cfg->mem || !cfg->synic.post_message || !cfg->synic.signal_event ||
	    !cfg->vp_count)
		return -EINVAL;
	struct vmbus *vb = calloc(1, sizeof(*vb));
	if (!vb)
		return -ENOMEM;
	vb->cfg = *cfg;
	vb->next_relid = 1;
	pthread_mutex_init(&vb->lock, NULL);
	*out = vb;
	return 0;
}

void vmbus_destroy(struct vmbus *vb)
{
	if (!vb)
		return;
	while (vb->devices)
		vmbus_device_remove(vb, vb->devices);
	vmbus_gpadl_free_all(vb);
	free(vb->outbox);
	pthread_mutex_destroy(&vb->lock);
	free(vb);
}

/* Every open channel looks at its ring again (packets may have come while stopped). */
static void notify_open_channels(struct vmbus *vb)
{
	pthread_mutex_lock(&vb->lock);
	for (struct vmbus_device *d = vb->devices; d; d = d->next)
		for (unsigned i = 0; i < d->nchannels; i++)
			if (d->channels[i].state == CHANNEL_OPEN)
				d->ops->notify(d->opaque, &d->channels[i]);
	pthread_mutex_unlock(&vb->lock);
}

void vmbus_start(struct vmbus *vb)
{
	__atomic_store_n(&vb->running, true, __ATOMIC_RELEASE);
	notify_open_channels(vb);
}

void vmbus_stop(struct vmbus *vb)
{
	__atomic_store_n(&vb->running, false, __ATOMIC_RELEASE);
}

void vmbus_reset(struct vmbus *vb)
{
	pthread_mutex_lock(&vb->lock);
	reset_connection(vb);
	vb->slot_busy = false;
	pthread_mutex_unlock(&vb->lock);
}

void vmbus_get_stats(struct vmbus *vb, struct vmbus_stats *out)
{
	pthread_mutex_lock(&vb->lock);
	*out = vb->stats;
	out->version = vb->version;
	out->open_channels = 0;
	for (struct vmbus_device *d = vb->devices; d; d = d->next)
		for (unsigned i = 0; i < d->nchannels; i++)
			out->open_channels += d->channels[i].state == CHANNEL_OPEN;
	pthread_mutex_unlock(&vb->lock);
}

const struct guest_mem *vmbus_guest_mem(const struct vmbus *vb)
{
	return vb->cfg.mem;
}

/* ---- devices ---- */

int vmbus_device_add(struct vmbus *vb, const struct vmbus_device_info *info,
		     const struct vmbus_device_ops *ops, void *opaque, struct vmbus_device **out)
{
	if (!info || !ops || !ops->open || !ops->close || !ops->notify || !ops->reset ||
	    info->max_subchannels > VMBUS_MAX_RELID)
		return -EINVAL;
	struct vmbus_device *d = calloc(1, sizeof(*d));
	unsigned n = info->max_subchannels + 1;
	struct vmbus_channel *chs = calloc(n, sizeof(*chs));
	if (!d || !chs) {
		free(d);
		free(chs);
		return -ENOMEM;
	}
	*d = (struct vmbus_device){ .vb = vb,
				    .info = *info,
				    .ops = ops,
				    .opaque = opaque,
				    .nchannels = n,
				    .channels = chs };
	pthread_mutex_lock(&vb->lock);
	int ret = vb->next_relid + n - 1 > VMBUS_MAX_RELID ? -ENOSPC : 0;
	for (struct vmbus_device *o = vb->devices; o && !ret; o = o->next)
		if (guid_equal(&o->info.instance_id, &info->instance_id))
			ret = -EINVAL;
	if (ret) {
		pthread_mutex_unlock(&vb->lock);
		free(chs);
		free(d);
		return ret;
	}
	for (unsigned i = 0; i < n; i++) {
		struct vmbus_channel *ch = &chs[i];
		*ch = (struct vmbus_channel){ .vb = vb, .dev = d, .index = i };
		ch->relid = vb->next_relid++;
		pthread_mutex_init(&ch->lock, NULL);
		__atomic_store_n(&vb->relids[ch->relid], ch, __ATOMIC_RELEASE);
	}
	struct vmbus_device **tail = &vb->devices;
	while (*tail)
		tail = &(*tail)->next;
	*tail = d;
	if (vb->offers_requested)
		send_offer(vb, &chs[0]); /* hot-add */
	pthread_mutex_unlock(&vb->lock);
	outbox_flush(vb);
	*out = d;
	return 0;
}

void vmbus_device_remove(struct vmbus *vb, struct vmbus_device *dev)
{
	pthread_mutex_lock(&vb->lock);
	for (struct vmbus_device **p = &vb->devices; *p; p = &(*p)->next)
		if (*p == dev) {
			*p = dev->next;
			break;
		}
	for (unsigned i = 0; i < dev->nchannels; i++) {
		vmbus_close_channel(&dev->channels[i]);
		__atomic_store_n(&vb->relids[dev->channels[i].relid], NULL, __ATOMIC_RELEASE);
	}
	pthread_mutex_unlock(&vb->lock);
	for (unsigned i = 0; i < dev->nchannels; i++)
		pthread_mutex_destroy(&dev->channels[i].lock);
	free(dev->channels);
	free(dev);
}

int vmbus_device_rescind(struct vmbus *vb, struct vmbus_device *dev)
{
	int ret = -ENODEV;
	pthread_mutex_lock(&vb->lock);
	for (unsigned i = 0; i < dev->nchannels; i++) {
		struct vmbus_channel *ch = &dev->channels[i];
		if (ch->state == CHANNEL_UNOFFERED || ch->rescinded)
			continue;
		struct vmbus_msg m = { .len = 12 };
		store_le32(m.data, MSG_RESCIND_CHANNELOFFER);
		store_le32(m.data + 8, ch->relid);
		vmbus_queue_msg(vb, &m);
		ch->rescinded = true;
		ret = 0;
	}
	pthread_mutex_unlock(&vb->lock);
	outbox_flush(vb);
	return ret;
}

struct vmbus_channel *vmbus_device_channel(struct vmbus_device *dev, unsigned index)
{
	return index < dev->nchannels ? &dev->channels[index] : NULL;
}

int vmbus_device_offer_subchannels(struct vmbus_device *dev, unsigned count)
{
	struct vmbus *vb = dev->vb;
	if (count >= dev->nchannels)
		return -EINVAL;
	pthread_mutex_lock(&vb->lock);
	int ret = vb->offers_requested && !dev->channels[0].rescinded ? 0 : -ENOTCONN;
	for (unsigned i = 1; i <= count && !ret; i++)
		if (dev->channels[i].state == CHANNEL_UNOFFERED)
			send_offer(vb, &dev->channels[i]);
	pthread_mutex_unlock(&vb->lock);
	outbox_flush(vb);
	return ret;
}

unsigned vmbus_channel_index(const struct vmbus_channel *ch)
{
	return ch->index;
}

uint32_t vmbus_channel_relid(const struct vmbus_channel *ch)
{
	return ch->relid;
}

uint32_t vmbus_channel_session(struct vmbus_channel *ch)
{
	return __atomic_load_n(&ch->session, __ATOMIC_ACQUIRE);
}

/* ---- packets (the serving thread) ---- */

static bool session_current(struct vmbus_channel *ch, uint32_t session)
{
	return session && ch->session == session;
}

void vmbus_channel_begin_drain(struct vmbus_channel *ch, uint32_t session)
{
	pthread_mutex_lock(&ch->lock);
	if (session_current(ch, session))
		vmbus_ring_mask(&ch->in);
	pthread_mutex_unlock(&ch->lock);
}

int vmbus_channel_recv(struct vmbus_channel *ch, uint32_t session, void *buf, size_t size,
		       struct vmbus_packet_info *info)
{
	struct vmbus *vb = ch->vb;
	if (!__atomic_load_n(&vb->running, __ATOMIC_ACQUIRE))
		return 0;
	pthread_mutex_lock(&ch->lock);
	if (!session_current(ch, session)) {
		pthread_mutex_unlock(&ch->lock);
		return -EPIPE;
	}
	int ret = vmbus_ring_recv(&ch->in, buf, size, info);
	bool wake = ret != 0 && ret != -EIO && vmbus_ring_recv_done(&ch->in);
	unsigned vp = ch->target_vp;
	pthread_mutex_unlock(&ch->lock);
	if (ret == -EIO)
		STAT_INC(vb, ring_errors);
	if (wake)
		signal_guest(vb, vp, ch->relid);
	return ret;
}

bool vmbus_channel_end_drain(struct vmbus_channel *ch, uint32_t session)
{
	bool more = false;
	pthread_mutex_lock(&ch->lock);
	if (session_current(ch, session))
		more = vmbus_ring_unmask(&ch->in);
	pthread_mutex_unlock(&ch->lock);
	return more && __atomic_load_n(&ch->vb->running, __ATOMIC_ACQUIRE);
}

bool vmbus_channel_has_packets(struct vmbus_channel *ch, uint32_t session)
{
	if (!__atomic_load_n(&ch->vb->running, __ATOMIC_ACQUIRE))
		return false;
	pthread_mutex_lock(&ch->lock);
	bool more = session_current(ch, session) && vmbus_ring_has_packets(&ch->in);
	pthread_mutex_unlock(&ch->lock);
	return more;
}

int vmbus_channel_send(struct vmbus_channel *ch, uint32_t session, uint16_t type, uint16_t flags,
		       uint64_t trans_id, const struct iovec *iov, int iovcnt)
{
	struct vmbus *vb = ch->vb;
	pthread_mutex_lock(&ch->lock);
	if (!session_current(ch, session)) {
		pthread_mutex_unlock(&ch->lock);
		return -EPIPE;
	}
	int ret = vmbus_ring_send(&ch->out, type, flags, trans_id, iov, iovcnt);
	unsigned vp = ch->target_vp;
	pthread_mutex_unlock(&ch->lock);
	if (ret == -EIO)
		STAT_INC(vb, ring_errors);
	if (ret == 1)
		signal_guest(vb, vp, ch->relid);
	return ret < 0 ? ret : 0;
}
