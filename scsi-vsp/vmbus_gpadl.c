/* GPADLs: page lists the guest describes its buffers (ring buffers above all) with. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "arith.h"
#include "endian.h"
#include "vmbus_internal.h"

/* Bounds against a guest that creates GPADLs without end: at most this many at once,
 * with this much range data (8 bytes a page: 8 MiB describe 4 GiB) between them. */
#define GPADL_MAX_COUNT	   512u
#define GPADL_MAX_BYTES	   (8u << 20)
#define GPADL_HEADER_FIXED 20u		/* msgtype, pad, relid, handle, range_buflen, rangecount */
#define GPADL_BODY_FIXED   16u		/* msgtype, pad, msgnumber, handle */
#define GPADL_RANGE_FIXED  8u		/* byte_count, byte_offset before each range's pfns */
#define PFN_LIMIT	   (1ull << 52) /* page numbers beyond this do not make a 64-bit GPA */

struct vmbus_gpadl *vmbus_gpadl_find(struct vmbus *vb, uint32_t handle)
{
	for (struct vmbus_gpadl *g = vb->gpadls; g; g = g->next)
		if (g->handle == handle)
			return g;
	return NULL;
}

static void send_created(struct vmbus *vb, uint32_t relid, uint32_t handle, uint32_t status)
{
	struct vmbus_msg m = { .len = 20 };
	store_le32(m.data, MSG_GPADL_CREATED);
	store_le32(m.data + 8, relid);
	store_le32(m.data + 12, handle);
	store_le32(m.data + 16, status);
	vmbus_queue_msg(vb, &m);
	if (status)
		STAT_INC(vb, gpadls_refused);
	else
		STAT_INC(vb, gpadls);
}

static void unlink_gpadl(struct vmbus *vb, struct vmbus_gpadl *g)
{
	for (struct vmbus_gpadl **p = &vb->gpadls; *p; p = &(*p)->next)
		if (*p == g) {
			*p = g->next;
			break;
		}
	vb->ngpadls--;
	vb->gpadl_bytes -= g->expected;
	free(g->ranges);
	free(g);
}

static bool page_in_ram(struct vmbus *vb, uint64_t pfn)
{
	struct iovec iov[2];
	int n = 0;
	return pfn < PFN_LIMIT &&
	       guest_mem_iov(vb->cfg.mem, pfn * VMBUS_PAGE_SIZE, VMBUS_PAGE_SIZE, iov, 2, &n) == 0;
}

/* The whole range data: every range has a length, an offset inside its first page and
 * exactly the pages they span, every page is guest RAM, and nothing is left over. */
static bool ranges_valid(struct vmbus *vb, const struct vmbus_gpadl *g)
{
	uint32_t pos = 0;
	for (unsigned i = 0; i < g->rangecount; i++) {
		if (g->expected - pos < GPADL_RANGE_FIXED)
			return false;
		uint32_t count = load_le32(g->ranges + pos),
			 offset = load_le32(g->ranges + pos + 4);
		pos += GPADL_RANGE_FIXED;
		if (!count || offset >= VMBUS_PAGE_SIZE)
			return false;
		uint64_t pages = div_round_up((uint64_t)offset + count, VMBUS_PAGE_SIZE);
		if ((g->expected - pos) / 8 < pages)
			return false;
		for (uint64_t p = 0; p < pages; p++, pos += 8)
			if (!page_in_ram(vb, load_le64(g->ranges + pos)))
				return false;
	}
	return pos == g->expected;
}

static void finish(struct vmbus *vb, struct vmbus_gpadl *g)
{
	if (!ranges_valid(vb, g)) {
		send_created(vb, g->relid, g->handle, VMBUS_STATUS_FAILED);
		unlink_gpadl(vb, g);
		return;
	}
	g->complete = true;
	send_created(vb, g->relid, g->handle, 0);
}

static bool channel_offered(struct vmbus *vb, uint32_t relid)
{
	struct vmbus_channel *ch = relid <= VMBUS_MAX_RELID ? vb->relids[relid] : NULL;
	return ch && ch->state != CHANNEL_UNOFFERED && !ch->rescinded;
}

bool vmbus_gpadl_header(struct vmbus *vb, const uint8_t *msg, size_t len)
{
	if (len < GPADL_HEADER_FIXED)
		return false;
	uint32_t relid = load_le32(msg + 8), handle = load_le32(msg + 12);
	uint32_t expected = load_le16(msg + 16), rangecount = load_le16(msg + 18);
	uint32_t carried = (uint32_t)len - GPADL_HEADER_FIXED;
	/* A handle in use is refused without touching the GPADL that holds it. */
	if (vmbus_gpadl_find(vb, handle) || !channel_offered(vb, relid) || !rangecount ||
	    expected < rangecount * (GPADL_RANGE_FIXED + 8) || carried > expected ||
	    vb->ngpadls >= GPADL_MAX_COUNT || vb->gpadl_bytes + expected > GPADL_MAX_BYTES) {
		send_created(vb, relid, handle, VMBUS_STATUS_FAILED);
		return true;
	}
	struct vmbus_gpadl *g = calloc(1, sizeof(*g));
	uint8_t *ranges = malloc(expected);
	if (!g || !ranges) {
		free(g);
		free(ranges);
		send_created(vb, relid, handle, VMBUS_STATUS_FAILED);
		return true;
	}
	*g = (struct vmbus_gpadl){ .handle = handle,
				   .relid = relid,
				   .rangecount = (uint16_t)rangecount,
				   .expected = expected,
				   .received = carried,
				   .ranges = ranges,
				   .next = vb->gpadls };
	memcpy(ranges, msg + GPADL_HEADER_FIXED, carried);
	vb->gpadls = g;
	vb->ngpadls++;
	vb->gpadl_bytes += expected;
	if (carried == expected)
		finish(vb, g);
	return true;
}

bool vmbus_gpadl_body(struct vmbus *vb, const uint8_t *msg, size_t len)
{
	if (len < GPADL_BODY_FIXED)
		return false;
	struct vmbus_gpadl *g = vmbus_gpadl_find(vb, load_le32(msg + 12));
	if (!g || g->complete)
		return false;
	uint32_t carried = (uint32_t)len - GPADL_BODY_FIXED;
	if (carried > g->expected - g->received) {
		/* more pages than the header announced */
		send_created(vb, g->relid, g->handle, VMBUS_STATUS_FAILED);
		unlink_gpadl(vb, g);
		return true;
	}
	memcpy(g->ranges + g->received, msg + GPADL_BODY_FIXED, carried);
	g->received += carried;
	if (g->received == g->expected)
		finish(vb, g);
	return true;
}

bool vmbus_gpadl_teardown(struct vmbus *vb, const uint8_t *msg, size_t len)
{
	if (len < 16)
		return false;
	uint32_t handle = load_le32(msg + 12);
	struct vmbus_gpadl *g = vmbus_gpadl_find(vb, handle);
	if (!g)
		return false;
	/* The guest takes back the pages of a ring still in use: the channel closes first so
	 * that the host never touches them again. */
	if (g->user)
		vmbus_close_channel(g->user);
	unlink_gpadl(vb, g);
	struct vmbus_msg m = { .len = 12 };
	store_le32(m.data, MSG_GPADL_TORNDOWN);
	store_le32(m.data + 8, handle);
	vmbus_queue_msg(vb, &m);
	return true;
}

uint32_t vmbus_gpadl_ring_pages(const struct vmbus_gpadl *g)
{
	if (!g->complete || g->rangecount != 1)
		return 0;
	uint32_t count = load_le32(g->ranges), offset = load_le32(g->ranges + 4);
	return offset == 0 && count % VMBUS_PAGE_SIZE == 0 ? count / VMBUS_PAGE_SIZE : 0;
}

int vmbus_gpadl_map_pages(struct vmbus *vb, const struct vmbus_gpadl *g, uint8_t **pages,
			  uint32_t n)
{
	if (vmbus_gpadl_ring_pages(g) != n)
		return -EINVAL;
	for (uint32_t i = 0; i < n; i++) {
		uint64_t pfn = load_le64(g->ranges + GPADL_RANGE_FIXED + 8 * i);
		struct iovec iov;
		int count = 0;
		/* one host mapping per page: a page split across two memory regions is refused */
		if (pfn >= PFN_LIMIT || guest_mem_iov(vb->cfg.mem, pfn * VMBUS_PAGE_SIZE,
						      VMBUS_PAGE_SIZE, &iov, 1, &count))
			return -EINVAL;
		pages[i] = iov.iov_base;
	}
	return 0;
}

void vmbus_gpadl_free_all(struct vmbus *vb)
{
	while (vb->gpadls)
		unlink_gpadl(vb, vb->gpadls);
}
