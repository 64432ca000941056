/* What a device (a VSP such as storvsp) sees of the VMBus host: it registers once with
 * its class and instance GUIDs and gets a primary channel, offered to the guest when the
 * guest asks for offers; it may offer sub-channels later (up to the number it declared).
 *
 * Callbacks (struct vmbus_device_ops) come from the host's callers' threads:
 * - open/close/reset run on the vCPU thread handling the control message, with the
 *   host's control lock held: they must not call back into the host.
 * - notify runs on the vCPU thread of the guest's HvSignalEvent (or from vmbus_start,
 *   with the control lock held): it should only wake the thread that serves the channel.
 *
 * Packets: the serving thread calls vmbus_channel_recv / vmbus_channel_send. Each open
 * has a session number; a send for a session that ended (the guest closed, reopened,
 * unloaded or rebooted meanwhile) is dropped with -EPIPE, so late completions never
 * land in a ring the guest has reused.
 */
#ifndef HV_VMBUS_DEVICE_H
#define HV_VMBUS_DEVICE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/uio.h>

#include "guid.h"
#include "vmbus.h"
#include "vmbus_ring.h"

struct vmbus_device;
struct vmbus_channel;

struct vmbus_device_ops {
	/* The guest opened channel ch (index 0: primary). Return 0, or -errno to refuse (the
	 * guest gets a failed OPENCHANNEL_RESULT). */
	int (*open)(void *opaque, struct vmbus_channel *ch);
	/* The guest closed ch (or the host closed it: teardown of its ring, unload, reset).
	 * No packet moves on it afterwards. */
	void (*close)(void *opaque, struct vmbus_channel *ch);
	/* The guest signalled ch: packets (or room) may be waiting. */
	void (*notify)(void *opaque, struct vmbus_channel *ch);
	/* The connection ended (UNLOAD, a new INITIATE_CONTACT, vmbus_reset): every channel
	 * is closed and sub-channels are gone; forget protocol state. */
	void (*reset)(void *opaque);
};

struct vmbus_device_info {
	struct guid class_id;	 /* the interface type, e.g. the SCSI controller class */
	struct guid instance_id; /* unique per device and stable across boots */
	unsigned max_subchannels;
};

/* Registers a device and assigns it relids (the primary's and its sub-channels'). If the
 * guest already asked for offers, the primary is offered now. Returns 0, -EINVAL (bad
 * info, an instance already registered), -ENOSPC (relids exhausted) or -ENOMEM. */
int vmbus_device_add(struct vmbus *vb, const struct vmbus_device_info *info,
		     const struct vmbus_device_ops *ops, void *opaque, struct vmbus_device **out);
/* Unregisters (the host is being torn down, or the device was rescinded and the guest
 * released it): no callback runs afterwards. Channels still open are closed. */
void vmbus_device_remove(struct vmbus *vb, struct vmbus_device *dev);
/* Hot-remove: sends RESCIND_CHANNELOFFER for every offered channel; the guest closes them
 * and releases the relids. Returns 0 or -ENODEV when nothing was offered. */
int vmbus_device_rescind(struct vmbus *vb, struct vmbus_device *dev);

/* The primary channel (index 0) or sub-channel index 1..max_subchannels. */
struct vmbus_channel *vmbus_device_channel(struct vmbus_device *dev, unsigned index);

/* Offers sub-channels 1..count (those not yet offered) to the guest. Any thread. Returns
 * 0, -EINVAL (count past max_subchannels) or -ENOTCONN (the guest is not connected). */
int vmbus_device_offer_subchannels(struct vmbus_device *dev, unsigned count);

unsigned vmbus_channel_index(const struct vmbus_channel *ch);
uint32_t vmbus_channel_relid(const struct vmbus_channel *ch);
/* The session of the current open (0 when closed). */
uint32_t vmbus_channel_session(struct vmbus_channel *ch);

/* Takes the next packet from the guest->host ring (see vmbus_ring_recv; the host must
 * be running and the session current). Returns 1, -EMSGSIZE (taken, cut), 0 (empty,
 * closed, stopped), -EPIPE (another session), -EIO (the ring is corrupt and the channel
 * stops serving). Drains are bracketed by begin/end, which mask the guest's signals and
 * publish the read index: end returns true when more packets arrived (drain again). */
void vmbus_channel_begin_drain(struct vmbus_channel *ch, uint32_t session);
int vmbus_channel_recv(struct vmbus_channel *ch, uint32_t session, void *buf, size_t size,
		       struct vmbus_packet_info *info);
bool vmbus_channel_end_drain(struct vmbus_channel *ch, uint32_t session);
/* Whether packets wait in the guest->host ring (false when the session is over or the host
 * stopped). It takes nothing and changes no header field: a device that left the ring
 * masked (no end_drain) can look at each completion instead of being woken. */
bool vmbus_channel_has_packets(struct vmbus_channel *ch, uint32_t session);

/* Sends one packet on the host->guest ring and signals the guest when it needs it.
 * Returns 0, -EAGAIN (ring full: the guest signals once it has read; try again then),
 * -EPIPE (session over: drop it), -EIO (ring corrupt), -EMSGSIZE. */
int vmbus_channel_send(struct vmbus_channel *ch, uint32_t session, uint16_t type, uint16_t flags,
		       uint64_t trans_id, const struct iovec *iov, int iovcnt);

/* Guest memory, for the device's own translations (GPA-direct buffers). */
const struct guest_mem *vmbus_guest_mem(const struct vmbus *vb);

#endif
