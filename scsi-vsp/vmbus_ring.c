#include "vmbus_ring.h"

#include <errno.h>
#include <string.h>

#include "arith.h"
#include "endian.h"

/* Header fields (byte offsets in the header page). The indices are shared with a guest
 * running concurrently on another CPU: they are loaded and stored as aligned 32-bit
 * atomics (x86 is little-endian, as the ring is). */
enum {
	RING_WRITE_INDEX = 0,
	RING_READ_INDEX = 4,
	RING_INTERRUPT_MASK = 8,
	RING_PENDING_SEND_SZ = 12,
	RING_FEATURE_BITS = 64,
};
#define RING_FEATURE_PENDING_SEND_SZ 1u
#define RING_TRAILER_LEN	     8u
#define RING_MAX_PACKET		     (0xFFFFu * 8u) /* len8 is 16 bits */

static uint32_t *field(const struct vmbus_ring *r, unsigned offset)
{
	return (uint32_t *)(void *)(r->header + offset);
}

static uint32_t load_acquire(const struct vmbus_ring *r, unsigned offset)
{
	return __atomic_load_n(field(r, offset), __ATOMIC_ACQUIRE);
}

static void store_release(const struct vmbus_ring *r, unsigned offset, uint32_t v)
{
	__atomic_store_n(field(r, offset), v, __ATOMIC_RELEASE);
}

/* Orders our index store before the load of the guest's flag or index that follows, as
 * the guest's virt_mb() does on its side: neither side can miss the other's update. */
static void full_barrier(void)
{
	__atomic_thread_fence(__ATOMIC_SEQ_CST);
}

static bool index_valid(const struct vmbus_ring *r, uint32_t index)
{
	return index < r->size && index % 8 == 0;
}

/* Bytes from index `from` forward to index `to`. */
static uint32_t distance(const struct vmbus_ring *r, uint32_t from, uint32_t to)
{
	return to >= from ? to - from : r->size - (from - to);
}

/* Room for the writer at w when the reader is at rd; the writer must keep one byte
 * free, so a packet of n bytes fits only when room > n. */
static uint32_t room(const struct vmbus_ring *r, uint32_t w, uint32_t rd)
{
	return r->size - distance(r, rd, w);
}

static void copy_from_ring(const struct vmbus_ring *r, uint32_t pos, void *buf, size_t len)
{
	uint8_t *out = buf;
	while (len) {
		uint32_t in_page = pos % VMBUS_PAGE_SIZE;
		size_t n = min_u64(len, VMBUS_PAGE_SIZE - in_page);
		memcpy(out, r->data[pos / VMBUS_PAGE_SIZE] + in_page, n);
		out += n;
		len -= n;
		pos = (uint32_t)((pos + n) % r->size);
	}
}

static uint32_t copy_to_ring(const struct vmbus_ring *r, uint32_t pos, const void *buf, size_t len)
{
	const uint8_t *in = buf;
	while (len) {
		uint32_t in_page = pos % VMBUS_PAGE_SIZE;
		size_t n = min_u64(len, VMBUS_PAGE_SIZE - in_page);
		memcpy(r->data[pos / VMBUS_PAGE_SIZE] + in_page, in, n);
		in += n;
		len -= n;
		pos = (uint32_t)((pos + n) % r->size);
	}
	return pos;
}

static int ring_fail(struct vmbus_ring *r)
{
	r->broken = true;
	return -EIO;
}

int vmbus_ring_init(struct vmbus_ring *r, uint8_t *header, uint8_t **data, uint32_t data_pages,
		    bool host_reads)
{
	if (!header || !data || !data_pages || data_pages > UINT32_MAX / VMBUS_PAGE_SIZE ||
	    (uintptr_t)header % 8)
		return -EINVAL;
	*r = (struct vmbus_ring){ .header = header,
				  .data = data,
				  .size = data_pages * VMBUS_PAGE_SIZE };
	uint32_t own = load_acquire(r, host_reads ? RING_READ_INDEX : RING_WRITE_INDEX);
	if (!index_valid(r, own))
		return -EINVAL;
	r->index = r->published = own;
	return 0;
}

int vmbus_ring_recv(struct vmbus_ring *r, void *buf, size_t buf_size,
		    struct vmbus_packet_info *info)
{
	if (r->broken)
		return -EIO;
	uint32_t w = load_acquire(r, RING_WRITE_INDEX);
	if (!index_valid(r, w))
		return ring_fail(r);
	uint32_t avail = distance(r, r->index, w);
	if (!avail)
		return 0;
	if (avail < VMBUS_PACKET_DESC_LEN + RING_TRAILER_LEN)
		return ring_fail(r);
	uint8_t desc[VMBUS_PACKET_DESC_LEN];
	copy_from_ring(r, r->index, desc, sizeof(desc));
	uint32_t offset = load_le16(desc + 2) * 8u, len = load_le16(desc + 4) * 8u;
	if (len < VMBUS_PACKET_DESC_LEN || offset < VMBUS_PACKET_DESC_LEN || offset > len ||
	    (uint64_t)len + RING_TRAILER_LEN > avail)
		return ring_fail(r);
	*info = (struct vmbus_packet_info){ .type = load_le16(desc),
					    .flags = load_le16(desc + 6),
					    .data_offset = offset,
					    .len = len,
					    .trans_id = load_le64(desc + 8) };
	copy_from_ring(r, r->index, buf, min_u64(len, buf_size));
	r->index = (r->index + len + RING_TRAILER_LEN) % r->size;
	return len > buf_size ? -EMSGSIZE : 1;
}

bool vmbus_ring_recv_done(struct vmbus_ring *r)
{
	if (r->broken || r->index == r->published)
		return false;
	uint32_t freed = distance(r, r->published, r->index);
	store_release(r, RING_READ_INDEX, r->index);
	r->published = r->index;
	full_barrier();
	if (!(load_acquire(r, RING_FEATURE_BITS) & RING_FEATURE_PENDING_SEND_SZ))
		return false;
	uint32_t pending = load_acquire(r, RING_PENDING_SEND_SZ);
	uint32_t w = load_acquire(r, RING_WRITE_INDEX);
	if (!pending || !index_valid(r, w))
		return false;
	/* Signal only when this read made the room cross what the guest waits for; when the
	 * guest wrote meanwhile the room before is unknown, and a spare signal is harmless. */
	uint32_t now = room(r, w, r->index);
	if (now <= pending)
		return false;
	return now < freed || now - freed <= pending;
}

void vmbus_ring_mask(struct vmbus_ring *r)
{
	if (!r->broken)
		store_release(r, RING_INTERRUPT_MASK, 1);
}

bool vmbus_ring_unmask(struct vmbus_ring *r)
{
	if (r->broken)
		return false;
	store_release(r, RING_INTERRUPT_MASK, 0);
	full_barrier();
	return load_acquire(r, RING_WRITE_INDEX) != r->index;
}

bool vmbus_ring_has_packets(const struct vmbus_ring *r)
{
	return !r->broken && load_acquire(r, RING_WRITE_INDEX) != r->index;
}

/* Whether a packet of total bytes fits now; if not, asks the guest (pending_send_sz) to
 * signal once it has made room, then looks again so a read racing with the request is
 * not missed. */
static int reserve(struct vmbus_ring *r, uint32_t total)
{
	uint32_t rd = load_acquire(r, RING_READ_INDEX);
	if (!index_valid(r, rd))
		return ring_fail(r);
	if (room(r, r->index, rd) > total)
		return 0;
	store_release(r, RING_PENDING_SEND_SZ, total);
	r->pending_set = true;
	full_barrier();
	rd = load_acquire(r, RING_READ_INDEX);
	if (!index_valid(r, rd))
		return ring_fail(r);
	return room(r, r->index, rd) > total ? 0 : -EAGAIN;
}

int vmbus_ring_send(struct vmbus_ring *r, uint16_t type, uint16_t flags, uint64_t trans_id,
		    const struct iovec *iov, int iovcnt)
{
	static const uint8_t zeros[8];
	if (r->broken)
		return -EIO;
	uint64_t payload = 0;
	for (int i = 0; i < iovcnt; i++)
		payload += iov[i].iov_len;
	uint64_t padded = round_up(VMBUS_PACKET_DESC_LEN + payload, 8);
	if (padded > RING_MAX_PACKET || padded + RING_TRAILER_LEN >= r->size)
		return -EMSGSIZE;
	uint32_t total = (uint32_t)padded + RING_TRAILER_LEN;
	int ret = reserve(r, total);
	if (ret < 0)
		return ret;
	if (r->pending_set) {
		store_release(r, RING_PENDING_SEND_SZ, 0);
		r->pending_set = false;
	}
	uint8_t desc[VMBUS_PACKET_DESC_LEN], trailer[RING_TRAILER_LEN];
	store_le16(desc, type);
	store_le16(desc + 2, VMBUS_PACKET_DESC_LEN / 8);
	store_le16(desc + 4, (uint16_t)(padded / 8));
	store_le16(desc + 6, flags);
	store_le64(desc + 8, trans_id);
	uint32_t old = r->index;
	store_le64(trailer, (uint64_t)old << 32);
	uint32_t pos = copy_to_ring(r, old, desc, sizeof(desc));
	for (int i = 0; i < iovcnt; i++)
		pos = copy_to_ring(r, pos, iov[i].iov_base, iov[i].iov_len);
	pos = copy_to_ring(r, pos, zeros, padded - VMBUS_PACKET_DESC_LEN - payload);
	r->index = copy_to_ring(r, pos, trailer, sizeof(trailer));
	store_release(r, RING_WRITE_INDEX, r->index);
	full_barrier();
	/* The guest drains until empty once signalled: only the first packet after it went
	 * idle (it had read everything we wrote before) needs a signal. */
	if (load_acquire(r, RING_INTERRUPT_MASK))
		return 0;
	return load_acquire(r, RING_READ_INDEX) == old;
}
