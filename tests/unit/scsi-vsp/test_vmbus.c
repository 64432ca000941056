/* The VMBus host driven by the test VSC playing Linux 6.1: version negotiation, offers,
 * GPADLs, channel open/close, ring buffers (wrap-around, full rings, notification
 * rules), unload, rescind, and hostile messages and rings. The device on the bus is an
 * echo device that sends every packet back as a completion, so the ring traffic is
 * checked end to end by the guest's own ring code. Oracles: the Linux structure
 * offsets and protocol rules (REFERENCES-HYPERV.md §5-§6), the guest's view of its
 * rings, and the sanitizer build for memory outside guest RAM. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "endian.h"
#include "test_util.h"
#include "vmbus_device.h"
#include "vsc.h"

/* ---- the echo device ---- */

#define ECHO_CHANNELS 3

struct echo {
	struct vmbus_device *dev;
	bool kicked[ECHO_CHANNELS];
	unsigned opens, closes, resets, notifies;
	int refuse_open;
	bool holding[ECHO_CHANNELS]; /* a reply waiting for ring room */
	uint8_t held[ECHO_CHANNELS][512];
	size_t held_len[ECHO_CHANNELS];
	uint64_t held_id[ECHO_CHANNELS];
	int last_recv;
};

static int echo_open(void *opaque, struct vmbus_channel *ch)
{
	struct echo *e = opaque;
	(void)ch;
	e->opens++;
	return e->refuse_open;
}

static void echo_close(void *opaque, struct vmbus_channel *ch)
{
	struct echo *e = opaque;
	e->closes++;
	e->holding[vmbus_channel_index(ch)] = false;
}

static void echo_notify(void *opaque, struct vmbus_channel *ch)
{
	struct echo *e = opaque;
	e->notifies++;
	e->kicked[vmbus_channel_index(ch)] = true;
}

static void echo_reset(void *opaque)
{
	((struct echo *)opaque)->resets++;
}

static const struct vmbus_device_ops echo_ops = { echo_open, echo_close, echo_notify, echo_reset };

static int echo_send(struct vmbus_channel *ch, uint32_t session, const void *buf, size_t len,
		     uint64_t id)
{
	struct iovec iov = { (void *)buf, len };
	return vmbus_channel_send(ch, session, VMBUS_PACKET_COMPLETION, 0, id, &iov, 1);
}

/* Serves one channel: the held reply first, then every packet while replies fit. */
static void echo_poll(struct echo *e, unsigned idx)
{
	struct vmbus_channel *ch = vmbus_device_channel(e->dev, idx);
	uint32_t session = vmbus_channel_session(ch);
	if (!session)
		return;
	if (e->holding[idx]) {
		if (echo_send(ch, session, e->held[idx], e->held_len[idx], e->held_id[idx]) ==
		    -EAGAIN)
			return;
		e->holding[idx] = false;
	}
	do {
		vmbus_channel_begin_drain(ch, session);
		for (;;) {
			uint8_t pkt[512 + 16];
			struct vmbus_packet_info info;
			int ret = vmbus_channel_recv(ch, session, pkt, sizeof(pkt), &info);
			e->last_recv = ret;
			if (ret <= 0)
				break;
			size_t len = info.len - info.data_offset;
			if (echo_send(ch, session, pkt + info.data_offset, len, info.trans_id) ==
			    -EAGAIN) {
				memcpy(e->held[idx], pkt + info.data_offset, len);
				e->held_len[idx] = len;
				e->held_id[idx] = info.trans_id;
				e->holding[idx] = true;
				break;
			}
		}
	} while (!e->holding[idx] && e->last_recv >= 0 && vmbus_channel_end_drain(ch, session));
	if (e->holding[idx] || e->last_recv < 0)
		vmbus_channel_end_drain(ch, session);
}

static void echo_pump(void *opaque)
{
	struct echo *e = opaque;
	for (unsigned i = 0; i < ECHO_CHANNELS; i++)
		if (e->kicked[i]) {
			e->kicked[i] = false;
			echo_poll(e, i);
		}
}

/* ---- the rig ---- */

static const uint8_t echo_class[16] = { 0x11, 0x22, 0x33, 0x44, 0x55, 0x66, 0x77, 0x88,
					0x99, 0xaa, 0xbb, 0xcc, 0xdd, 0xee, 0xff, 0x01 };

struct rig {
	struct vsc v;
	struct echo e;
	struct vmbus_device_info info;
};

static void add_echo(struct rig *r, struct echo *e, uint8_t instance_tag)
{
	struct vmbus_device_info info = { .max_subchannels = ECHO_CHANNELS - 1 };
	memcpy(info.class_id.bytes, echo_class, 16);
	memset(info.instance_id.bytes, instance_tag, 16);
	assert_int_equal(vmbus_device_add(r->v.vb, &info, &echo_ops, e, &e->dev), 0);
	r->info = info;
}

static struct rig *rig_new(unsigned nvps)
{
	struct rig *r = test_xmalloc(sizeof(*r));
	memset(r, 0, sizeof(*r));
	vsc_init(&r->v, nvps);
	add_echo(r, &r->e, 0xA1);
	r->v.pump = echo_pump;
	r->v.pump_opaque = &r->e;
	vmbus_start(r->v.vb);
	return r;
}

static void rig_free(struct rig *r)
{
	vsc_fini(&r->v);
	free(r);
}

/* Connected at the newest version, offers collected. */
static struct rig *rig_connected(unsigned nvps)
{
	struct rig *r = rig_new(nvps);
	assert_int_equal(vsc_negotiate(&r->v), 0x50003);
	vsc_request_offers(&r->v);
	assert_int_equal(r->v.noffers, 1);
	return r;
}

static const struct vsc_offer *primary(struct rig *r)
{
	const struct vsc_offer *o = vsc_find_offer(&r->v, r->info.instance_id.bytes, 0);
	assert_non_null(o);
	return o;
}

static struct vmbus_stats stats(struct rig *r)
{
	struct vmbus_stats s;
	vmbus_get_stats(r->v.vb, &s);
	return s;
}

/* ---- connection ---- */

static void test_every_linux_version(void **state)
{
	(void)state;
	for (unsigned i = 0; i < 8; i++) {
		struct rig *r = rig_new(1);
		uint32_t version = vsc_vmbus_versions[i];
		assert_true(vsc_contact(&r->v, version));
		assert_int_equal(stats(r).version, version);
		/* from 5.0 on the guest posts on the id the response names */
		assert_int_equal(r->v.msg_conn_id, VMBUS_CONNECTION_ID_MESSAGE);
		vsc_request_offers(&r->v);
		assert_int_equal(r->v.noffers, 1);
		rig_free(r);
	}
}

static void test_negotiation_refusals(void **state)
{
	(void)state;
	struct rig *r = rig_new(2);
	/* WS2008 (0.13), Win7 (1.1), a future 6.0: refused, the guest tries the next */
	assert_false(vsc_contact(&r->v, 0x0000000D));
	assert_false(vsc_contact(&r->v, 0x00010001));
	assert_false(vsc_contact(&r->v, 0x00060000));
	assert_int_equal(stats(r).version, 0);
	/* 5.x belongs on connection 4, older versions on 1 */
	uint8_t msg[40] = { 0 };
	store_le32(msg, VSC_INITIATE_CONTACT);
	store_le32(msg + 8, 0x50003);
	assert_int_equal(vsc_post(&r->v, 0, 1, msg, sizeof(msg)), HV_STATUS_SUCCESS);
	struct vsc_msg m;
	vsc_expect(&r->v, VSC_VERSION_RESPONSE, &m);
	assert_int_equal(m.data[8], 0);
	store_le32(msg + 8, 0x40000);
	assert_int_equal(vsc_post(&r->v, 0, 4, msg, sizeof(msg)), HV_STATUS_SUCCESS);
	vsc_expect(&r->v, VSC_VERSION_RESPONSE, &m);
	assert_int_equal(m.data[8], 0);
	/* a target VP the guest does not have */
	store_le32(msg + 8, 0x40000);
	store_le32(msg + 12, 7);
	assert_int_equal(vsc_post(&r->v, 1, 1, msg, sizeof(msg)), HV_STATUS_SUCCESS);
	assert_true(vsc_take(&r->v, 1, &m)); /* answered on the VP that asked */
	assert_int_equal(m.type, VSC_VERSION_RESPONSE);
	assert_int_equal(m.data[8], 0);
	/* hypercall-level errors */
	assert_int_equal(vsc_post(&r->v, 0, 7, msg, sizeof(msg)), HV_STATUS_INVALID_CONNECTION_ID);
	assert_int_equal(vmbus_post_message(r->v.vb, 0, 1, 2, msg, sizeof(msg)),
			 HV_STATUS_INVALID_PARAMETER);
	uint8_t big[300] = { 0 };
	assert_int_equal(vsc_post(&r->v, 0, 1, big, sizeof(big)), HV_STATUS_INVALID_PARAMETER);
	assert_int_equal(vsc_post(&r->v, 5, 1, msg, sizeof(msg)), HV_STATUS_INVALID_PARAMETER);
	assert_int_equal(vsc_post(&r->v, 0, 1, NULL, 0), HV_STATUS_SUCCESS);
	/* and then Linux's full negotiation still lands on 5.3 */
	assert_int_equal(vsc_negotiate(&r->v), 0x50003);
	rig_free(r);
}

static void test_offers(void **state)
{
	(void)state;
	struct rig *r = rig_new(1);
	struct echo e2 = { 0 };
	add_echo(r, &e2, 0xB2);
	assert_true(vsc_contact(&r->v, 0x50003));
	vsc_expect_none(&r->v); /* nothing is offered before REQUESTOFFERS */
	vsc_request_offers(&r->v);
	assert_int_equal(r->v.noffers, 2);
	for (unsigned i = 0; i < 2; i++) {
		const struct vsc_offer *o = &r->v.offers[i];
		assert_memory_equal(o->class_id, echo_class, 16);
		assert_int_equal(o->sub_index, 0);
		assert_true(o->relid >= 1 && o->relid <= 2047);
		assert_int_equal(o->monitor_allocated, 0);
		assert_int_equal(o->dedicated_interrupt, 1);
		assert_int_equal(o->connection_id, VMBUS_CONNECTION_ID_CHANNELS + o->relid);
	}
	assert_int_not_equal(r->v.offers[0].relid, r->v.offers[1].relid);
	assert_int_equal(r->v.offers[0].instance[0], 0xA1);
	assert_int_equal(r->v.offers[1].instance[0], 0xB2);
	/* a second REQUESTOFFERS is out of place */
	uint64_t bad = stats(r).messages_bad;
	uint8_t msg[8] = { 0 };
	store_le32(msg, VSC_REQUESTOFFERS);
	vsc_send(&r->v, msg, sizeof(msg));
	vsc_expect_none(&r->v);
	assert_int_equal(stats(r).messages_bad, bad + 1);
	/* hot-add: offered at once */
	struct echo e3 = { 0 };
	add_echo(r, &e3, 0xC3);
	struct vsc_msg m;
	vsc_expect(&r->v, VSC_OFFERCHANNEL, &m);
	assert_int_equal(m.data[24], 0xC3);
	/* the same instance twice is refused */
	struct vmbus_device *dup;
	assert_int_equal(vmbus_device_add(r->v.vb, &r->info, &echo_ops, &e3, &dup), -EINVAL);
	/* sub-channels are offered after the primary, same GUIDs, their own relids */
	assert_int_equal(vmbus_device_offer_subchannels(e2.dev, 2), 0);
	assert_int_equal(vsc_collect_offers(&r->v, 2), 2);
	const struct vsc_offer *s1 = vsc_find_offer(&r->v, r->v.offers[1].instance, 1);
	const struct vsc_offer *s2 = vsc_find_offer(&r->v, r->v.offers[1].instance, 2);
	assert_non_null(s1);
	assert_non_null(s2);
	assert_int_not_equal(s1->relid, s2->relid);
	assert_int_equal(vmbus_device_offer_subchannels(e2.dev, 3), -EINVAL);
	rig_free(r);
}

static void test_message_slot_busy(void **state)
{
	(void)state;
	struct rig *r = rig_new(1);
	struct echo more[4] = { 0 };
	for (unsigned i = 0; i < 4; i++)
		add_echo(r, &more[i], (uint8_t)(0x10 + i));
	assert_true(vsc_contact(&r->v, 0x50003));
	unsigned posts = r->v.posts;
	uint8_t msg[8] = { 0 };
	store_le32(msg, VSC_REQUESTOFFERS);
	vsc_send(&r->v, msg, sizeof(msg));
	/* five offers and ALLOFFERS_DELIVERED: one in the slot, the rest wait for EOMs */
	assert_int_equal(r->v.posts, posts + 1);
	assert_true(r->v.busy >= 1);
	assert_int_equal(stats(r).slot_busy, r->v.busy);
	struct vsc_msg m;
	uint8_t tags[5];
	for (unsigned i = 0; i < 5; i++) {
		assert_true(vsc_take(&r->v, 0, &m));
		assert_int_equal(m.type, VSC_OFFERCHANNEL);
		tags[i] = m.data[24];
	}
	assert_true(vsc_take(&r->v, 0, &m));
	assert_int_equal(m.type, VSC_ALLOFFERS_DELIVERED);
	const uint8_t order[5] = { 0xA1, 0x10, 0x11, 0x12, 0x13 };
	assert_memory_equal(tags, order, 5);
	assert_int_equal(stats(r).messages_out, posts + 6);
	/* a guest that never takes its messages is told to retry, not queued without end */
	uint8_t hdr[28] = { 0 };
	store_le32(hdr, VSC_GPADL_HEADER);
	store_le32(hdr + 8, 999); /* no such channel: each answered with a failure */
	store_le16(hdr + 16, 16);
	store_le16(hdr + 18, 1);
	unsigned i;
	for (i = 0; i < 1000; i++) {
		store_le32(hdr + 12, i);
		if (vsc_post(&r->v, 0, 1, hdr, sizeof(hdr)) != HV_STATUS_SUCCESS)
			break;
	}
	assert_true(i < 1000);
	assert_int_equal(vsc_post(&r->v, 0, 1, hdr, sizeof(hdr)), HV_STATUS_INSUFFICIENT_BUFFERS);
	unsigned taken = 0;
	while (vsc_take(&r->v, 0, &m)) {
		assert_int_equal(m.type, VSC_GPADL_CREATED);
		assert_int_equal(load_le32(m.data + 12), taken);
		assert_int_not_equal(load_le32(m.data + 16), 0);
		taken++;
	}
	assert_int_equal(taken, i);
	rig_free(r);
}

/* ---- GPADLs ---- */

static uint32_t post_gpadl_header(struct rig *r, uint32_t relid, uint32_t handle, uint16_t buflen,
				  uint16_t rangecount, const uint8_t *ranges, size_t ranges_len)
{
	uint8_t msg[VMBUS_MESSAGE_MAX_PAYLOAD] = { 0 };
	store_le32(msg, VSC_GPADL_HEADER);
	store_le32(msg + 8, relid);
	store_le32(msg + 12, handle);
	store_le16(msg + 16, buflen);
	store_le16(msg + 18, rangecount);
	memcpy(msg + 20, ranges, ranges_len);
	vsc_send(&r->v, msg, 20 + ranges_len);
	struct vsc_msg m;
	if (!vsc_take(&r->v, 0, &m))
		return UINT32_MAX; /* waiting for bodies */
	assert_int_equal(m.type, VSC_GPADL_CREATED);
	assert_int_equal(load_le32(m.data + 12), handle);
	return load_le32(m.data + 16);
}

/* One range of n pages starting at pfn, in ranges (returns bytes written). */
static size_t range(uint8_t *p, uint32_t count, uint32_t offset, uint64_t pfn, unsigned n)
{
	store_le32(p, count);
	store_le32(p + 4, offset);
	for (unsigned i = 0; i < n; i++)
		store_le64(p + 8 + 8 * i, pfn + i);
	return 8 + 8 * (size_t)n;
}

static void test_gpadl_shapes(void **state)
{
	(void)state;
	struct rig *r = rig_connected(1);
	uint32_t relid = primary(r)->relid, h;
	/* Linux's shapes: one page, header only, header + bodies */
	uint64_t buf = vsc_alloc(&r->v, 64 * VSC_PAGE);
	assert_int_equal(vsc_gpadl_create(&r->v, relid, buf, VSC_PAGE, &h), 0);
	assert_int_equal(vsc_gpadl_create(&r->v, relid, buf, 26 * VSC_PAGE, &h), 0);
	assert_int_equal(vsc_gpadl_create(&r->v, relid, buf, 64 * VSC_PAGE, &h), 0);
	vsc_gpadl_teardown(&r->v, relid, h);
	/* two ranges, byte offsets, pages in both memory regions */
	uint8_t ranges[200];
	size_t n = range(ranges, 5000, 100, buf / VSC_PAGE, 2);
	n += range(ranges + n, 200, 4000, VSC_RAM1_GPA / VSC_PAGE + 3, 2);
	assert_int_equal(post_gpadl_header(r, relid, 77, (uint16_t)n, 2, ranges, n), 0);
	vsc_gpadl_teardown(&r->v, relid, 77);
	assert_int_equal(stats(r).gpadls, 4);
	rig_free(r);
}

static void test_gpadl_hostile(void **state)
{
	(void)state;
	struct rig *r = rig_connected(1);
	uint32_t relid = primary(r)->relid;
	uint64_t buf = vsc_alloc(&r->v, 4 * VSC_PAGE);
	uint8_t ranges[232];
	size_t n;
	/* a page in the hole, a page past the end, a page number past 2^52 */
	uint64_t bad_pfns[] = { (VSC_RAM0_SIZE + VSC_PAGE) / VSC_PAGE,
				(VSC_RAM1_GPA + VSC_RAM1_SIZE) / VSC_PAGE, 1ull << 60, UINT64_MAX };
	for (unsigned i = 0; i < 4; i++) {
		n = range(ranges, VSC_PAGE, 0, bad_pfns[i], 1);
		assert_int_not_equal(
			post_gpadl_header(r, relid, 100 + i, (uint16_t)n, 1, ranges, n), 0);
	}
	/* byte_offset past the page, zero byte_count, too few pages for the count */
	n = range(ranges, 10, 4096, buf / VSC_PAGE, 1);
	assert_int_not_equal(post_gpadl_header(r, relid, 110, (uint16_t)n, 1, ranges, n), 0);
	n = range(ranges, 0, 0, buf / VSC_PAGE, 1);
	assert_int_not_equal(post_gpadl_header(r, relid, 111, (uint16_t)n, 1, ranges, n), 0);
	n = range(ranges, 3 * VSC_PAGE, 0, buf / VSC_PAGE, 2);
	assert_int_not_equal(post_gpadl_header(r, relid, 112, (uint16_t)n, 1, ranges, n), 0);
	/* range data longer than the ranges need, no ranges, an unknown channel */
	n = range(ranges, VSC_PAGE, 0, buf / VSC_PAGE, 2);
	assert_int_not_equal(post_gpadl_header(r, relid, 113, (uint16_t)n, 1, ranges, n), 0);
	n = range(ranges, VSC_PAGE, 0, buf / VSC_PAGE, 1);
	assert_int_not_equal(post_gpadl_header(r, relid, 114, (uint16_t)n, 0, ranges, n), 0);
	assert_int_not_equal(post_gpadl_header(r, 1999, 115, (uint16_t)n, 1, ranges, n), 0);
	/* more bytes in the header than announced */
	assert_int_not_equal(post_gpadl_header(r, relid, 116, 8, 1, ranges, n), 0);
	/* a handle in use: refused, the first GPADL stays */
	assert_int_equal(post_gpadl_header(r, relid, 120, (uint16_t)n, 1, ranges, n), 0);
	assert_int_not_equal(post_gpadl_header(r, relid, 120, (uint16_t)n, 1, ranges, n), 0);
	vsc_gpadl_teardown(&r->v, relid, 120);
	/* an absurd page count: 8000 pages announced, bodies that overflow it */
	store_le32(ranges, 8000 * VSC_PAGE);
	store_le32(ranges + 4, 0);
	assert_int_equal(post_gpadl_header(r, relid, 130, 8 + 8 * 8000, 1, ranges, 8), UINT32_MAX);
	uint8_t body[VMBUS_MESSAGE_MAX_PAYLOAD] = { 0 };
	store_le32(body, VSC_GPADL_BODY);
	store_le32(body + 12, 130);
	struct vsc_msg m;
	unsigned bodies = 0;
	for (;; bodies++) {
		vsc_send(&r->v, body, sizeof(body));
		if (vsc_take(&r->v, 0, &m))
			break;
	}
	assert_int_equal(m.type, VSC_GPADL_CREATED);
	assert_int_equal(load_le32(m.data + 12), 130);
	assert_int_not_equal(load_le32(m.data + 16), 0);
	assert_int_equal(bodies, 8000 * 8 / 224); /* the one past the end failed it */
	/* a body for no GPADL, a body for a complete one, teardown of an unknown handle:
	 * ignored and counted */
	uint64_t bad = stats(r).messages_bad;
	store_le32(body + 12, 130);
	vsc_send(&r->v, body, 24);
	n = range(ranges, VSC_PAGE, 0, buf / VSC_PAGE, 1);
	assert_int_equal(post_gpadl_header(r, relid, 140, (uint16_t)n, 1, ranges, n), 0);
	store_le32(body + 12, 140);
	vsc_send(&r->v, body, 24);
	uint8_t td[16] = { 0 };
	store_le32(td, VSC_GPADL_TEARDOWN);
	store_le32(td + 12, 4242);
	vsc_send(&r->v, td, sizeof(td));
	vsc_expect_none(&r->v);
	assert_int_equal(stats(r).messages_bad, bad + 3);
	/* the count limit: GPADLs beyond it are refused until some go */
	unsigned made = 0;
	for (uint32_t h = 1000; h < 1000 + 600; h++) {
		if (post_gpadl_header(r, relid, h, (uint16_t)n, 1, ranges, n) != 0)
			break;
		made++;
	}
	assert_true(made >= 400 && made < 600);
	vsc_gpadl_teardown(&r->v, relid, 1000);
	assert_int_equal(post_gpadl_header(r, relid, 5000, (uint16_t)n, 1, ranges, n), 0);
	rig_free(r);
}

/* ---- channels ---- */

static void test_open_close(void **state)
{
	(void)state;
	struct rig *r = rig_connected(2);
	const struct vsc_offer *o = primary(r);
	struct vsc_channel ch;
	assert_int_equal(vsc_open(&r->v, o, 4 * VSC_PAGE, 4 * VSC_PAGE, 1, &ch), 0);
	assert_int_equal(r->e.opens, 1);
	assert_int_equal(stats(r).open_channels, 1);
	/* opening an open channel fails, and leaves it open */
	uint8_t msg[148] = { 0 };
	store_le32(msg, VSC_OPENCHANNEL);
	store_le32(msg + 8, o->relid);
	store_le32(msg + 12, o->relid);
	store_le32(msg + 16, ch.gpadl);
	store_le32(msg + 24, 4);
	vsc_send(&r->v, msg, sizeof(msg));
	struct vsc_msg m;
	vsc_expect(&r->v, VSC_OPENCHANNEL_RESULT, &m);
	assert_int_not_equal(load_le32(m.data + 16), 0);
	assert_int_equal(stats(r).open_channels, 1);
	/* the echo works over the rings */
	assert_int_equal(vsc_ring_write(&ch, 6, 1, 42, NULL, 0, "hello, host!", 12), 0);
	echo_pump(&r->e);
	char buf[64] = { 0 };
	uint16_t type;
	uint64_t id;
	assert_int_equal(vsc_ring_read(&ch, buf, sizeof(buf), &type, &id), 16);
	assert_string_equal(buf, "hello, host!");
	assert_int_equal(type, VMBUS_PACKET_COMPLETION);
	assert_int_equal(id, 42);
	/* host -> guest events go to the channel's target VP, bit relid */
	uint8_t *sief1 = vsc_host(&r->v, r->v.sief[1] + 2 * 256);
	assert_true(sief1[o->relid / 8] & (1u << (o->relid % 8)));
	vsc_close(&ch);
	assert_int_equal(r->e.closes, 1);
	assert_int_equal(stats(r).open_channels, 0);
	/* closing again is out of place */
	uint64_t bad = stats(r).messages_bad;
	uint8_t close[12] = { 0 };
	store_le32(close, VSC_CLOSECHANNEL);
	store_le32(close + 8, o->relid);
	vsc_send(&r->v, close, sizeof(close));
	assert_int_equal(stats(r).messages_bad, bad + 1);
	/* reopen after close: a new session */
	assert_int_equal(vsc_open(&r->v, o, 2 * VSC_PAGE, 2 * VSC_PAGE, 0, &ch), 0);
	vsc_close(&ch);
	rig_free(r);
}

/* OPENCHANNEL with the fields given; returns the result status. */
static uint32_t open_raw(struct rig *r, uint32_t relid, uint32_t gpadl, uint32_t vp, uint32_t split)
{
	uint8_t msg[148] = { 0 };
	store_le32(msg, VSC_OPENCHANNEL);
	store_le32(msg + 8, relid);
	store_le32(msg + 12, relid);
	store_le32(msg + 16, gpadl);
	store_le32(msg + 20, vp);
	store_le32(msg + 24, split);
	vsc_send(&r->v, msg, sizeof(msg));
	struct vsc_msg m;
	vsc_expect(&r->v, VSC_OPENCHANNEL_RESULT, &m);
	return load_le32(m.data + 16);
}

static void test_open_hostile(void **state)
{
	(void)state;
	struct rig *r = rig_connected(2);
	uint32_t relid = primary(r)->relid, h, h2;
	struct echo other = { 0 };
	add_echo(r, &other, 0xEE);
	struct vsc_msg m;
	vsc_expect(&r->v, VSC_OFFERCHANNEL, &m);
	uint32_t other_relid = load_le32(m.data + 184);
	uint64_t ring = vsc_alloc(&r->v, 8 * VSC_PAGE);
	assert_int_equal(vsc_gpadl_create(&r->v, relid, ring, 8 * VSC_PAGE, &h), 0);
	/* downstream offsets leaving a ring without a data page */
	const uint32_t splits[] = { 0, 1, 7, 8, 9, UINT32_MAX };
	for (unsigned i = 0; i < 6; i++)
		assert_int_not_equal(open_raw(r, relid, h, 0, splits[i]), 0);
	/* an unknown GPADL, another channel's GPADL, a VP the guest lacks, no such channel */
	assert_int_not_equal(open_raw(r, relid, 12345, 0, 4), 0);
	assert_int_equal(vsc_gpadl_create(&r->v, other_relid, ring, 8 * VSC_PAGE, &h2), 0);
	assert_int_not_equal(open_raw(r, relid, h2, 0, 4), 0);
	assert_int_not_equal(open_raw(r, relid, h, 2, 4), 0);
	uint64_t bad = stats(r).messages_bad;
	uint8_t msg[148] = { 0 };
	store_le32(msg, VSC_OPENCHANNEL);
	store_le32(msg + 8, 2000);
	vsc_send(&r->v, msg, sizeof(msg));
	vsc_expect_none(&r->v);
	assert_int_equal(stats(r).messages_bad, bad + 1);
	/* a ring GPADL not page-aligned (byte offset) cannot hold rings */
	uint8_t ranges[80];
	size_t n = range(ranges, 4 * VSC_PAGE, 8, ring / VSC_PAGE, 5);
	assert_int_equal(post_gpadl_header(r, relid, 300, (uint16_t)n, 1, ranges, n), 0);
	assert_int_not_equal(open_raw(r, relid, 300, 0, 2), 0);
	/* ring headers whose host-owned indices are garbage */
	uint8_t *hdr = vsc_host(&r->v, ring);
	store_le32(hdr + 4, 12345); /* read index of the guest->host ring: unaligned */
	assert_int_not_equal(open_raw(r, relid, h, 0, 4), 0);
	store_le32(hdr + 4, 0);
	store_le32(hdr + 4 * VSC_PAGE, 3 * VSC_PAGE); /* write index of host->guest: past it */
	assert_int_not_equal(open_raw(r, relid, h, 0, 4), 0);
	store_le32(hdr + 4 * VSC_PAGE, 0);
	/* a device that refuses */
	r->e.refuse_open = -EIO;
	assert_int_not_equal(open_raw(r, relid, h, 0, 4), 0);
	r->e.refuse_open = 0;
	assert_int_equal(r->e.closes, 0);
	assert_int_equal(stats(r).open_channels, 0);
	/* and the right open works after all that */
	assert_int_equal(open_raw(r, relid, h, 1, 4), 0);
	assert_int_equal(stats(r).opens, 1);
	/* the guest tears down the GPADL of the open ring: the channel closes first */
	vsc_gpadl_teardown(&r->v, relid, h);
	assert_int_equal(r->e.closes, 1);
	assert_int_equal(stats(r).open_channels, 0);
	rig_free(r);
}

static void test_close_before_result(void **state)
{
	(void)state;
	struct rig *r = rig_connected(1);
	uint32_t relid = primary(r)->relid, h;
	uint64_t ring = vsc_alloc(&r->v, 4 * VSC_PAGE);
	assert_int_equal(vsc_gpadl_create(&r->v, relid, ring, 4 * VSC_PAGE, &h), 0);
	/* OPENCHANNEL and CLOSECHANNEL before the guest reads the result */
	uint8_t msg[148] = { 0 };
	store_le32(msg, VSC_OPENCHANNEL);
	store_le32(msg + 8, relid);
	store_le32(msg + 16, h);
	store_le32(msg + 24, 2);
	vsc_send(&r->v, msg, sizeof(msg));
	uint8_t close[12] = { 0 };
	store_le32(close, VSC_CLOSECHANNEL);
	store_le32(close + 8, relid);
	vsc_send(&r->v, close, sizeof(close));
	struct vsc_msg m;
	vsc_expect(&r->v, VSC_OPENCHANNEL_RESULT, &m);
	assert_int_equal(r->e.closes, 1);
	/* a signal on the closed channel reaches nobody */
	unsigned notifies = r->e.notifies;
	assert_int_equal(vmbus_signal_event(r->v.vb, VMBUS_CONNECTION_ID_CHANNELS + relid, 0),
			 HV_STATUS_SUCCESS);
	assert_int_equal(r->e.notifies, notifies);
	/* signals for no channel, and with a flag number */
	assert_int_equal(vmbus_signal_event(r->v.vb, VMBUS_CONNECTION_ID_CHANNELS + 1500, 0),
			 HV_STATUS_INVALID_CONNECTION_ID);
	assert_int_equal(vmbus_signal_event(r->v.vb, 1, 0), HV_STATUS_INVALID_CONNECTION_ID);
	assert_int_equal(vmbus_signal_event(r->v.vb, VMBUS_CONNECTION_ID_CHANNELS + relid, 3),
			 HV_STATUS_INVALID_PARAMETER);
	/* the GPADL goes, then the guest could reuse the pages */
	vsc_gpadl_teardown(&r->v, relid, h);
	rig_free(r);
}

/* ---- ring buffers ---- */

static void test_ring_wraparound(void **state)
{
	(void)state;
	struct rig *r = rig_connected(1);
	struct vsc_channel ch;
	/* one data page per direction: every few packets wrap */
	assert_int_equal(vsc_open(&r->v, primary(r), 2 * VSC_PAGE, 2 * VSC_PAGE, 0, &ch), 0);
	uint64_t seed = 7;
	for (unsigned i = 0; i < 2000; i++) {
		size_t len = 1 + test_rnd_below(&seed, 300);
		uint8_t out[300], in[320];
		test_fill_pattern(out, len, i, 5);
		assert_int_equal(vsc_ring_write(&ch, 6, 1, 1000 + i, NULL, 0, out, len), 0);
		echo_pump(&r->e);
		uint16_t type;
		uint64_t id;
		size_t got = vsc_ring_read(&ch, in, sizeof(in), &type, &id);
		assert_int_equal(got, (len + 7) / 8 * 8); /* payloads come back padded */
		assert_memory_equal(in, out, len);
		assert_int_equal(id, 1000 + i);
	}
	/* the indices went round the ring many times */
	assert_int_equal(stats(r).ring_errors, 0);
	vsc_close(&ch);
	rig_free(r);
}

static void test_ring_full_and_pending_send(void **state)
{
	(void)state;
	struct rig *r = rig_connected(1);
	struct vsc_channel ch;
	/* a big guest->host ring and a one-page host->guest ring: replies fill it */
	assert_int_equal(vsc_open(&r->v, primary(r), 16 * VSC_PAGE, 2 * VSC_PAGE, 0, &ch), 0);
	uint8_t payload[200];
	unsigned sent = 0;
	while (vsc_ring_write(&ch, 6, 1, sent, NULL, 0, payload, sizeof(payload)) == 0)
		sent++;
	assert_true(sent > 40);
	echo_pump(&r->e);
	/* the host wrote what fitted, asked for room, and took no packet it cannot answer */
	assert_true(r->e.holding[0]);
	uint32_t pending = load_le32(ch.recv_hdr + 12);
	assert_int_equal(pending, 16 + 200 + 8);
	uint32_t host_read = load_le32(ch.send_hdr + 4);
	assert_int_not_equal(host_read, load_le32(ch.send_hdr + 0));
	/* the guest drains: its reads signal the host once room crosses pending_send_sz,
	 * and every reply arrives once, in order */
	unsigned got = 0;
	for (int spins = 0; got < sent && spins < 100000; spins++) {
		uint8_t in[256];
		uint16_t type;
		uint64_t id;
		if (vsc_ring_read(&ch, in, sizeof(in), &type, &id)) {
			assert_int_equal(id, got);
			got++;
		}
		echo_pump(&r->e);
	}
	assert_int_equal(got, sent);
	assert_int_equal(load_le32(ch.recv_hdr + 12), 0); /* no longer waiting */
	assert_false(r->e.holding[0]);
	vsc_close(&ch);
	rig_free(r);
}

static void test_notification_rules(void **state)
{
	(void)state;
	struct rig *r = rig_connected(1);
	struct vsc_channel ch;
	uint32_t relid = primary(r)->relid;
	assert_int_equal(vsc_open(&r->v, primary(r), 8 * VSC_PAGE, 8 * VSC_PAGE, 0, &ch), 0);
	/* guest -> host: only the write into an empty ring signals */
	for (unsigned i = 0; i < 10; i++)
		assert_int_equal(vsc_ring_write(&ch, 6, 1, i + 1, NULL, 0, "ping....", 8), 0);
	assert_int_equal(ch.guest_signals, 1);
	assert_int_equal(stats(r).signals_in, 1);
	/* host -> guest: ten replies, one signal (the ring was empty before the first) */
	unsigned before = r->v.signals[relid];
	echo_pump(&r->e);
	assert_int_equal(r->v.signals[relid], before + 1);
	/* while the host drained, its interrupt mask kept the guest quiet; now it is clear */
	assert_int_equal(load_le32(ch.send_hdr + 8), 0);
	/* the guest masks its ring while it reads: no signal for what arrives meanwhile */
	vsc_mask(&ch, true);
	uint8_t in[64];
	uint16_t type;
	uint64_t id;
	for (unsigned i = 0; i < 10; i++)
		assert_int_equal(vsc_ring_read(&ch, in, sizeof(in), &type, &id), 8);
	assert_int_equal(vsc_ring_write(&ch, 6, 1, 99, NULL, 0, "ping....", 8), 0);
	assert_int_equal(ch.guest_signals, 2);
	echo_pump(&r->e);
	assert_int_equal(r->v.signals[relid], before + 1);
	vsc_mask(&ch, false);
	assert_int_equal(vsc_ring_read(&ch, in, sizeof(in), &type, &id), 8);
	assert_int_equal(id, 99);
	/* unmasked and empty: the next reply signals again */
	assert_int_equal(vsc_ring_write(&ch, 6, 1, 100, NULL, 0, "ping....", 8), 0);
	echo_pump(&r->e);
	assert_int_equal(r->v.signals[relid], before + 2);
	assert_int_equal(stats(r).signals_out, r->v.signals[relid]);
	vsc_close(&ch);
	rig_free(r);
}

static void test_ring_hostile(void **state)
{
	(void)state;
	struct rig *r = rig_connected(1);
	struct vmbus_channel *vch = vmbus_device_channel(r->e.dev, 0);
	struct vsc_channel ch;
	/* each case corrupts the guest->host ring of a fresh channel */
	for (unsigned c = 0; c < 7; c++) {
		assert_int_equal(vsc_open(&r->v, primary(r), 2 * VSC_PAGE, 2 * VSC_PAGE, 0, &ch),
				 0);
		uint8_t *d = ch.send_data;
		switch (c) {
		case 0: /* write index past the ring */
			store_le32(ch.send_hdr, 5 * VSC_PAGE);
			break;
		case 1: /* write index unaligned */
			store_le32(ch.send_hdr, 13);
			break;
		case 2: /* a packet longer than what was written */
			store_le16(d + 2, 2);
			store_le16(d + 4, 100);
			store_le32(ch.send_hdr, 32);
			break;
		case 3: /* data offset inside the descriptor */
			store_le16(d + 2, 1);
			store_le16(d + 4, 3);
			store_le32(ch.send_hdr, 32);
			break;
		case 4: /* data offset past the packet */
			store_le16(d + 2, 5);
			store_le16(d + 4, 3);
			store_le32(ch.send_hdr, 32);
			break;
		case 5: /* a length that covers the whole ring */
			store_le16(d + 2, 2);
			store_le16(d + 4, 512);
			store_le32(ch.send_hdr, 8);
			break;
		case 6: /* fewer bytes than a descriptor */
			store_le32(ch.send_hdr, 8);
			break;
		}
		uint64_t errors = stats(r).ring_errors;
		assert_int_equal(vmbus_signal_event(r->v.vb, ch.offer.connection_id, 0),
				 HV_STATUS_SUCCESS);
		echo_pump(&r->e);
		assert_int_equal(r->e.last_recv, -EIO);
		assert_int_equal(stats(r).ring_errors, errors + 1);
		/* once corrupt, always: a valid-looking ring later changes nothing */
		store_le32(ch.send_hdr, 0);
		uint8_t pkt[8];
		struct vmbus_packet_info info;
		assert_int_equal(vmbus_channel_recv(vch, vmbus_channel_session(vch), pkt,
						    sizeof(pkt), &info),
				 -EIO);
		vsc_close(&ch);
	}
	/* the host->guest ring: a guest read index past the ring stops sends */
	assert_int_equal(vsc_open(&r->v, primary(r), 2 * VSC_PAGE, 2 * VSC_PAGE, 0, &ch), 0);
	store_le32(ch.recv_hdr + 4, 1 << 20);
	struct iovec iov = { "x", 1 };
	assert_int_equal(vmbus_channel_send(vch, vmbus_channel_session(vch), 6, 0, 1, &iov, 1),
			 -EIO);
	/* a packet larger than the receive buffer is taken whole and reported cut */
	vsc_close(&ch);
	assert_int_equal(vsc_open(&r->v, primary(r), 2 * VSC_PAGE, 2 * VSC_PAGE, 0, &ch), 0);
	uint8_t big[1000] = { 0 };
	assert_int_equal(vsc_ring_write(&ch, 6, 1, 5, NULL, 0, big, sizeof(big)), 0);
	assert_int_equal(vsc_ring_write(&ch, 6, 1, 6, NULL, 0, big, 8), 0);
	uint32_t session = vmbus_channel_session(vch);
	uint8_t small[64];
	struct vmbus_packet_info info;
	assert_int_equal(vmbus_channel_recv(vch, session, small, sizeof(small), &info), -EMSGSIZE);
	assert_int_equal(info.trans_id, 5);
	assert_int_equal(vmbus_channel_recv(vch, session, small, sizeof(small), &info), 1);
	assert_int_equal(info.trans_id, 6);
	/* a stale session cannot send or receive */
	assert_int_equal(vmbus_channel_send(vch, session + 1, 6, 0, 1, &iov, 1), -EPIPE);
	assert_int_equal(vmbus_channel_recv(vch, session + 1, small, sizeof(small), &info), -EPIPE);
	vsc_close(&ch);
	assert_int_equal(vmbus_channel_send(vch, session, 6, 0, 1, &iov, 1), -EPIPE);
	rig_free(r);
}

/* The look a device takes at a ring it left masked: it sees what the guest wrote, takes
 * nothing, changes no header field, and says nothing for a stale session, a stopped host
 * or a corrupt ring once found. */
static void test_has_packets(void **state)
{
	(void)state;
	struct rig *r = rig_connected(1);
	struct vmbus_channel *vch = vmbus_device_channel(r->e.dev, 0);
	struct vsc_channel ch;
	assert_int_equal(vsc_open(&r->v, primary(r), 2 * VSC_PAGE, 2 * VSC_PAGE, 0, &ch), 0);
	uint32_t session = vmbus_channel_session(vch);
	assert_false(vmbus_channel_has_packets(vch, session));
	/* masked, as a device leaves it while requests are in flight: the guest does not
	 * signal, and the look finds its packets */
	vmbus_channel_begin_drain(vch, session);
	unsigned signals = ch.guest_signals;
	assert_int_equal(vsc_ring_write(&ch, 6, 1, 1, NULL, 0, "ping....", 8), 0);
	assert_int_equal(vsc_ring_write(&ch, 6, 1, 2, NULL, 0, "ping....", 8), 0);
	assert_int_equal(ch.guest_signals, signals);
	uint8_t header[VSC_PAGE];
	memcpy(header, ch.send_hdr, sizeof(header));
	assert_true(vmbus_channel_has_packets(vch, session));
	assert_true(vmbus_channel_has_packets(vch, session));
	assert_memory_equal(header, ch.send_hdr, sizeof(header)); /* mask, read index */
	/* a stale session or a stopped host sees nothing */
	assert_false(vmbus_channel_has_packets(vch, session + 1));
	vmbus_stop(r->v.vb);
	assert_false(vmbus_channel_has_packets(vch, session));
	vmbus_start(r->v.vb);
	/* both packets are still there, in order; then the ring is empty */
	uint8_t pkt[64];
	struct vmbus_packet_info info;
	for (uint64_t id = 1; id <= 2; id++) {
		assert_int_equal(vmbus_channel_recv(vch, session, pkt, sizeof(pkt), &info), 1);
		assert_int_equal(info.trans_id, id);
	}
	assert_false(vmbus_channel_has_packets(vch, session));
	assert_false(vmbus_channel_end_drain(vch, session));
	/* a corrupt write index looks like packets, so the device polls and finds it */
	store_le32(ch.send_hdr, 13);
	assert_true(vmbus_channel_has_packets(vch, session));
	assert_int_equal(vmbus_channel_recv(vch, session, pkt, sizeof(pkt), &info), -EIO);
	assert_false(vmbus_channel_has_packets(vch, session));
	vsc_close(&ch);
	assert_false(vmbus_channel_has_packets(vch, session));
	rig_free(r);
}

/* ---- connection lifetime ---- */

static void test_unload_and_reconnect(void **state)
{
	(void)state;
	struct rig *r = rig_connected(1);
	struct vsc_channel ch;
	assert_int_equal(vsc_open(&r->v, primary(r), 2 * VSC_PAGE, 2 * VSC_PAGE, 0, &ch), 0);
	struct vmbus_channel *vch = vmbus_device_channel(r->e.dev, 0);
	uint32_t session = vmbus_channel_session(vch);
	/* a packet in flight when the guest unloads */
	assert_int_equal(vsc_ring_write(&ch, 6, 1, 1, NULL, 0, "late....", 8), 0);
	uint8_t msg[8] = { 0 };
	store_le32(msg, VSC_UNLOAD);
	vsc_send(&r->v, msg, sizeof(msg));
	struct vsc_msg m;
	vsc_expect(&r->v, VSC_UNLOAD_RESPONSE, &m);
	assert_int_equal(r->e.closes, 1);
	assert_int_equal(r->e.resets, 1);
	assert_int_equal(stats(r).open_channels, 0);
	assert_int_equal(stats(r).version, 0);
	/* the late reply goes nowhere */
	struct iovec iov = { "x", 1 };
	assert_int_equal(vmbus_channel_send(vch, session, 11, 0, 1, &iov, 1), -EPIPE);
	/* nothing but INITIATE_CONTACT is heard now */
	uint64_t bad = stats(r).messages_bad;
	store_le32(msg, VSC_REQUESTOFFERS);
	vsc_send(&r->v, msg, sizeof(msg));
	assert_int_equal(stats(r).messages_bad, bad + 1);
	/* the next kernel connects again from scratch; its GPADL handles start over */
	r->v.noffers = 0;
	r->v.next_gpadl = VSC_FIRST_GPADL;
	assert_int_equal(vsc_negotiate(&r->v), 0x50003);
	vsc_request_offers(&r->v);
	assert_int_equal(vsc_open(&r->v, primary(r), 2 * VSC_PAGE, 2 * VSC_PAGE, 0, &ch), 0);
	/* kexec: a new INITIATE_CONTACT without UNLOAD resets everything as well */
	assert_true(vsc_contact(&r->v, 0x40000));
	assert_int_equal(r->e.resets, 2);
	assert_int_equal(stats(r).open_channels, 0);
	r->v.noffers = 0;
	vsc_request_offers(&r->v);
	assert_int_equal(r->v.noffers, 1);
	/* and the VMM's reset (reboot) likewise */
	vmbus_reset(r->v.vb);
	assert_int_equal(r->e.resets, 3);
	assert_int_equal(stats(r).version, 0);
	rig_free(r);
}

static void test_rescind_and_modify(void **state)
{
	(void)state;
	struct rig *r = rig_connected(2);
	struct vsc_channel ch;
	uint32_t relid = primary(r)->relid;
	assert_int_equal(vsc_open(&r->v, primary(r), 2 * VSC_PAGE, 2 * VSC_PAGE, 0, &ch), 0);
	/* MODIFYCHANNEL (5.3 answers it): events move to VP 1 */
	uint8_t mod[16] = { 0 };
	store_le32(mod, VSC_MODIFYCHANNEL);
	store_le32(mod + 8, relid);
	store_le32(mod + 12, 1);
	vsc_send(&r->v, mod, sizeof(mod));
	struct vsc_msg m;
	vsc_expect(&r->v, VSC_MODIFYCHANNEL_RESPONSE, &m);
	assert_int_equal(load_le32(m.data + 8), relid);
	assert_int_equal(load_le32(m.data + 12), 0);
	assert_int_equal(vsc_ring_write(&ch, 6, 1, 1, NULL, 0, "ping....", 8), 0);
	echo_pump(&r->e);
	uint8_t *sief1 = vsc_host(&r->v, r->v.sief[1] + 2 * 256);
	assert_true(sief1[relid / 8] & (1u << (relid % 8)));
	store_le32(mod + 12, 9); /* no such VP */
	vsc_send(&r->v, mod, sizeof(mod));
	vsc_expect(&r->v, VSC_MODIFYCHANNEL_RESPONSE, &m);
	assert_int_not_equal(load_le32(m.data + 12), 0);
	/* rescind: the guest closes, tears down and releases the relid */
	assert_int_equal(vmbus_device_rescind(r->v.vb, r->e.dev), 0);
	vsc_expect(&r->v, VSC_RESCIND, &m);
	assert_int_equal(load_le32(m.data + 8), relid);
	assert_int_equal(vmbus_device_rescind(r->v.vb, r->e.dev), -ENODEV);
	/* a rescinded channel cannot get new GPADLs */
	uint32_t h;
	uint64_t buf = vsc_alloc(&r->v, VSC_PAGE);
	assert_int_not_equal(vsc_gpadl_create(&r->v, relid, buf, VSC_PAGE, &h), 0);
	vsc_close(&ch);
	uint8_t rel[12] = { 0 };
	store_le32(rel, VSC_RELID_RELEASED);
	store_le32(rel + 8, relid);
	vsc_send(&r->v, rel, sizeof(rel));
	assert_int_equal(stats(r).open_channels, 0);
	/* a second release is out of place */
	uint64_t bad = stats(r).messages_bad;
	vsc_send(&r->v, rel, sizeof(rel));
	assert_int_equal(stats(r).messages_bad, bad + 1);
	rig_free(r);
}

/* Every message type cut short, unknown types, and random bytes: ignored and counted,
 * never a reply or a crash. */
static void test_malformed_messages(void **state)
{
	(void)state;
	struct rig *r = rig_connected(1);
	const struct {
		uint32_t type;
		size_t min;
	} kinds[] = { { VSC_REQUESTOFFERS, 8 },	  { VSC_OPENCHANNEL, 28 },
		      { VSC_CLOSECHANNEL, 12 },	  { VSC_GPADL_HEADER, 20 },
		      { VSC_GPADL_BODY, 16 },	  { VSC_GPADL_TEARDOWN, 16 },
		      { VSC_RELID_RELEASED, 12 }, { VSC_INITIATE_CONTACT, 40 },
		      { VSC_UNLOAD, 8 },	  { VSC_MODIFYCHANNEL, 16 } };
	for (unsigned k = 0; k < sizeof(kinds) / sizeof(kinds[0]); k++) {
		for (size_t len = 0; len < kinds[k].min; len++) {
			uint8_t msg[64];
			memset(msg, 0xFF, sizeof(msg));
			if (len >= 4)
				store_le32(msg, kinds[k].type);
			uint64_t bad = stats(r).messages_bad;
			vsc_send(&r->v, msg, len);
			vsc_expect_none(&r->v);
			assert_int_equal(stats(r).messages_bad, bad + 1);
		}
	}
	/* types the host does not take: host-to-guest ones, unused, out of range */
	const uint32_t odd[] = { 0,  1,	 2,  4,	 6,  10, 12, 15,   17,
				 18, 19, 20, 21, 23, 24, 25, 1000, UINT32_MAX };
	for (unsigned i = 0; i < sizeof(odd) / sizeof(odd[0]); i++) {
		uint8_t msg[VMBUS_MESSAGE_MAX_PAYLOAD] = { 0 };
		store_le32(msg, odd[i]);
		uint64_t bad = stats(r).messages_bad;
		vsc_send(&r->v, msg, sizeof(msg));
		vsc_expect_none(&r->v);
		assert_int_equal(stats(r).messages_bad, bad + 1);
	}
	/* random messages of every type with random fields (relids and handles kept small so
	 * they hit real objects); replies are taken and thrown away */
	uint64_t seed = test_env_seed("VMBUS_SEED");
	for (unsigned i = 0; i < 20000; i++) {
		uint8_t msg[VMBUS_MESSAGE_MAX_PAYLOAD];
		for (size_t b = 0; b < sizeof(msg); b++)
			msg[b] = (uint8_t)test_rnd(&seed);
		store_le32(msg, (uint32_t)test_rnd_below(&seed, 26));
		store_le32(msg + 8, (uint32_t)test_rnd_below(&seed, 4));
		if (test_rnd_below(&seed, 2))
			store_le32(msg + 12, VSC_FIRST_GPADL + (uint32_t)test_rnd_below(&seed, 4));
		if (load_le32(msg) == VSC_INITIATE_CONTACT || load_le32(msg) == VSC_UNLOAD)
			continue; /* they would end the connection the rest needs */
		size_t len = test_rnd_below(&seed, sizeof(msg) + 1);
		uint16_t st = vsc_post(&r->v, 0, 1, msg, len);
		if (st != HV_STATUS_SUCCESS)
			fail_msg("seed %llu: status %u", (unsigned long long)seed, st);
		struct vsc_msg m;
		while (vsc_take(&r->v, 0, &m))
			;
		echo_pump(&r->e);
	}
	rig_free(r);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_every_linux_version),
		cmocka_unit_test(test_negotiation_refusals),
		cmocka_unit_test(test_offers),
		cmocka_unit_test(test_message_slot_busy),
		cmocka_unit_test(test_gpadl_shapes),
		cmocka_unit_test(test_gpadl_hostile),
		cmocka_unit_test(test_open_close),
		cmocka_unit_test(test_open_hostile),
		cmocka_unit_test(test_close_before_result),
		cmocka_unit_test(test_ring_wraparound),
		cmocka_unit_test(test_ring_full_and_pending_send),
		cmocka_unit_test(test_notification_rules),
		cmocka_unit_test(test_ring_hostile),
		cmocka_unit_test(test_has_packets),
		cmocka_unit_test(test_unload_and_reconnect),
		cmocka_unit_test(test_rescind_and_modify),
		cmocka_unit_test(test_malformed_messages),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
