/* One direction of a VMBus channel: a ring buffer in guest memory, in the layout Linux
 * uses. A 4 KiB header page (write_index @0, read_index @4, interrupt_mask @8,
 * pending_send_sz @12, feature_bits @64) and data pages after it; indices are byte offsets
 * into the data area. Packets are a 16-byte descriptor (type, offset8, len8, flags,
 * trans_id), the payload padded to 8 bytes, and an 8-byte trailer holding the packet's
 * start index in its upper half.
 *
 * The host keeps its own index (the read index of the guest->host ring, the write index
 * of the host->guest ring) privately and only publishes it: the guest can scribble over
 * the header, but the host never reads back what it owns. The guest's index is read with
 * acquire ordering and checked (inside the ring, 8-byte aligned) before use; a packet
 * whose length runs past what the guest wrote makes the ring corrupt (-EIO), for good:
 * the host stops serving it.
 *
 * Not thread-safe: one thread works on a ring at a time (the channel's lock).
 */
#ifndef HV_VMBUS_RING_H
#define HV_VMBUS_RING_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/uio.h>

#define VMBUS_PAGE_SIZE	      4096u
#define VMBUS_PACKET_DESC_LEN 16u /* the descriptor at the start of every packet */

/* Packet types (descriptor type field). */
enum {
	VMBUS_PACKET_DATA_INBAND = 6,
	VMBUS_PACKET_DATA_GPA_DIRECT = 9,
	VMBUS_PACKET_COMPLETION = 11,
};
#define VMBUS_PACKET_FLAG_COMPLETION_REQUESTED 1u

struct vmbus_ring {
	uint8_t *header;    /* host address of the header page */
	uint8_t **data;	    /* host address of each data page */
	uint32_t size;	    /* data bytes: pages * 4096 */
	uint32_t index;	    /* the host's own index */
	uint32_t published; /* guest->host: the read index the guest last saw */
	bool pending_set;   /* host->guest: we asked the guest for pending_send_sz */
	bool broken;	    /* corrupt: never touched again */
};

/* What a received packet's descriptor says (already checked against the ring). */
struct vmbus_packet_info {
	uint16_t type;
	uint16_t flags;
	uint32_t data_offset; /* bytes from the packet start to its payload (>= 16) */
	uint32_t len;	      /* bytes of descriptor + payload, without the trailer */
	uint64_t trans_id;
};

/* Binds a ring to its pages (header and data_pages data pages, host addresses of whole
 * guest pages) and takes the host's index from the header as the guest left it. Returns
 * 0 or -EINVAL (an index outside the ring or unaligned, a misaligned header, fewer than
 * one data page). data is kept, not copied. */
int vmbus_ring_init(struct vmbus_ring *r, uint8_t *header, uint8_t **data, uint32_t data_pages,
		    bool host_reads);

/* ---- guest -> host ---- */

/* Takes the next packet: copies min(len, buf_size) bytes of it (descriptor included) to
 * buf, fills *info and advances the host's private read index (published by
 * vmbus_ring_recv_done). Returns 1 for a packet, -EMSGSIZE for a packet longer than
 * buf_size (taken all the same, only its start copied), 0 when the ring is empty, -EIO
 * when the ring is corrupt. */
int vmbus_ring_recv(struct vmbus_ring *r, void *buf, size_t buf_size,
		    struct vmbus_packet_info *info);
/* Publishes the read index (release). Returns true when the guest waits for room it now
 * has (its pending_send_sz was crossed) and must be signalled. */
bool vmbus_ring_recv_done(struct vmbus_ring *r);
/* interrupt_mask: set while the host drains the ring, so the guest does not signal each
 * packet. Clearing it returns whether packets arrived meanwhile (drain again then). */
void vmbus_ring_mask(struct vmbus_ring *r);
bool vmbus_ring_unmask(struct vmbus_ring *r);
/* Whether the guest wrote past the host's read index: a look at its write index that takes
 * nothing (a corrupt index counts as packets; the next recv reports it). */
bool vmbus_ring_has_packets(const struct vmbus_ring *r);

/* ---- host -> guest ---- */

/* Writes one packet: the descriptor (type, flags, trans_id, payload right after it) and
 * the payload gathered from iov. Returns 1 when the guest must be signalled (its
 * interrupt_mask is clear and the ring was empty), 0 when it need not be, -EAGAIN when
 * the ring has no room (pending_send_sz asks the guest to signal when it has), -EIO when
 * the ring is corrupt, -EMSGSIZE when the packet can never fit. */
int vmbus_ring_send(struct vmbus_ring *r, uint16_t type, uint16_t flags, uint64_t trans_id,
		    const struct iovec *iov, int iovcnt);

#endif
