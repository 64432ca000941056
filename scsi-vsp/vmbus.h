/* The VMBus host: the connection a Hyper-V guest opens over the SynIC, the channels it is
 * offered (one per synthetic device, plus the sub-channels a device creates), the GPADLs
 * (guest page lists) it describes its buffers with, and the ring buffers of each open
 * channel. Devices (storvsp) sit on top through vmbus_device.h.
 *
 * What the guest sends arrives through the two hypercalls, which the VMM forwards on the
 * vCPU thread that issued them: HvPostMessage (control messages: vmbus_post_message) and
 * HvSignalEvent (a channel has new packets: vmbus_signal_event). What the host sends
 * leaves through struct vmbus_synic_ops: messages into the guest's SIMP slot of SINT 2
 * (queued here while the slot is full, resent after vmbus_message_slot_free) and event
 * flags into its SIEF page (one bit per channel, the channel's relid).
 *
 * The host owns no thread. Control messages are handled on the calling vCPU thread and
 * never wait for a disk; ring buffers are read and written by the device on the thread
 * that serves the channel. Every guest value (message fields, GPADL page numbers, ring
 * indices, packet lengths) is checked before use; guest memory is reached only through
 * the struct guest_mem given at creation, page by page with bounds checks.
 *
 * Versions: the host accepts every VMBus version Linux 6.1 offers (2.4, 3.0, 4.0, 4.1,
 * 5.0-5.3) and answers with VERSION_RESPONSE on the same connection; for 5.0 and newer
 * the guest then posts on VMBUS_CONNECTION_ID_MESSAGE. Channels are offered without
 * monitor pages (monitor_allocated 0), so the guest always signals with HvSignalEvent.
 */
#ifndef HV_VMBUS_H
#define HV_VMBUS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "dev.h"
#include "hyperv_status.h" /* HvPostMessage / HvSignalEvent results */

struct vmbus;


#define VMBUS_MESSAGE_SINT	     2	    /* messages and channel events arrive on SINT 2 */
#define VMBUS_MESSAGE_TYPE	     1	    /* the SynIC message type of every VMBus message */
#define VMBUS_MESSAGE_MAX_PAYLOAD    240    /* bytes after the 16-byte SynIC message header */
#define VMBUS_CONNECTION_ID_MESSAGE  1	    /* control messages (and INITIATE_CONTACT < 5.0) */
#define VMBUS_CONNECTION_ID_CONTACT  4	    /* INITIATE_CONTACT for versions 5.0 and newer */
#define VMBUS_CONNECTION_ID_CHANNELS 0x2000 /* a channel signals on this + its relid */
#define VMBUS_MAX_RELID		     2047   /* the guest's event scan covers bits 1..2047 */

/* What the VMBus host needs from the SynIC; the VMM implements it (user-space or KVM
 * in-kernel SynIC), the tests simulate it. Called from the VMBus host's threads. */
struct vmbus_synic_ops {
	void *opaque;
	/* Deliver one message (header + payload, at most 256 bytes) to SINT `sint` of virtual
	 * processor `vp`: 0, or -EAGAIN when that slot is still full (the SynIC calls
	 * vmbus_message_slot_free() after the guest's EOM; retry then). */
	int (*post_message)(void *opaque, unsigned vp, unsigned sint, uint32_t message_type,
			    const void *payload, size_t len);
	/* Set bit `flag` in vp's SIEF page for `sint` and raise the SINT (a channel interrupt). */
	void (*signal_event)(void *opaque, unsigned vp, unsigned sint, unsigned flag);
};

struct vmbus_config {
	const struct guest_mem *mem; /* must outlive the host */
	struct vmbus_synic_ops synic;
	unsigned vp_count; /* the guest's VP indexes are 0 .. vp_count - 1 */
};

/* Returns 0, -EINVAL (no memory map, no post_message/signal_event, no VP) or -ENOMEM. The
 * host starts stopped: see vmbus_start(). */
int vmbus_create(const struct vmbus_config *cfg, struct vmbus **out);
/* Devices first (storvsp_destroy), then the host. */
void vmbus_destroy(struct vmbus *vb);

/* Running: channels see the guest's signals and may move packets. Stopped (at creation,
 * while the VM is paused): control messages are still answered, but devices find their
 * rings empty; vmbus_start() then lets every open channel look at its ring again. */
void vmbus_start(struct vmbus *vb);
void vmbus_stop(struct vmbus *vb);

/* The guest rebooted: every channel closes (devices see close, then reset), GPADLs and
 * sub-channels are dropped, queued messages discarded, and the host waits for a new
 * INITIATE_CONTACT. I/O still in flight completes into nothing. */
void vmbus_reset(struct vmbus *vb);

/* From the VMM, on a vCPU thread: the guest's HvPostMessage / HvSignalEvent hypercalls.
 * Return the hypercall status (HV_STATUS_*). */
uint16_t vmbus_post_message(struct vmbus *vb, unsigned vp, uint32_t connection_id,
			    uint32_t message_type, const void *payload, size_t len);
uint16_t vmbus_signal_event(struct vmbus *vb, uint32_t connection_id, uint16_t flag_number);
void vmbus_message_slot_free(struct vmbus *vb, unsigned vp, unsigned sint);

/* Counters since creation. */
struct vmbus_stats {
	uint64_t messages_in;	 /* accepted from the guest */
	uint64_t messages_out;	 /* delivered into the guest's slot */
	uint64_t messages_bad;	 /* malformed or out of place, ignored */
	uint64_t slot_busy;	 /* deliveries the SynIC refused with -EAGAIN */
	uint64_t signals_in;	 /* HvSignalEvent on a channel */
	uint64_t signals_out;	 /* event flags set for the guest */
	uint64_t gpadls;	 /* GPADLs created */
	uint64_t gpadls_refused; /* GPADLs answered with a failure status */
	uint64_t opens;		 /* channels opened */
	uint64_t opens_refused;	 /* OPENCHANNEL answered with a failure status */
	uint64_t ring_errors;	 /* rings found corrupt: the channel stopped serving it */
	uint32_t version;	 /* negotiated VMBus version, 0 when not connected */
	unsigned open_channels;
};
void vmbus_get_stats(struct vmbus *vb, struct vmbus_stats *out);

#endif
