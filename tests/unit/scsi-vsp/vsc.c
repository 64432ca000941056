/* The test VSC: see vsc.h. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include "vsc.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "endian.h"
#include "test_util.h"

const uint32_t vsc_vmbus_versions[8] = { 0x50003, 0x50002, 0x50001, 0x50000,
					 0x40001, 0x40000, 0x30000, 0x20004 };

#define SLOT_SIZE  256u
#define WAIT_LIMIT 200000		 /* pump rounds before a wait fails */
#define RQST_INIT  0xFFFFFFFFFFFFFFFDull /* storvsc's id for init packets */
#define STOR_PKT   64u

/* ---- guest RAM and the simulated SynIC ---- */

uint64_t vsc_alloc(struct vsc *v, uint64_t bytes)
{
	uint64_t gpa = v->alloc_next;
	bytes = (bytes + VSC_PAGE - 1) / VSC_PAGE * VSC_PAGE;
	if (gpa + bytes > VSC_RAM0_SIZE)
		fail_msg("guest RAM exhausted");
	v->alloc_next += bytes;
	memset(v->ram[0] + gpa, 0, bytes);
	return gpa;
}

void *vsc_host(struct vsc *v, uint64_t gpa)
{
	if (gpa < VSC_RAM0_SIZE)
		return v->ram[0] + gpa;
	if (gpa >= VSC_RAM1_GPA && gpa < VSC_RAM1_GPA + VSC_RAM1_SIZE)
		return v->ram[1] + (gpa - VSC_RAM1_GPA);
	fail_msg("gpa 0x%llx is not guest RAM", (unsigned long long)gpa);
	return NULL;
}

static uint8_t *slot_of(struct vsc *v, unsigned vp, unsigned sint)
{
	return vsc_host(v, v->simp[vp] + (uint64_t)sint * SLOT_SIZE);
}

/* What the SynIC does with a host message: the slot is free when its type is 0; else the
 * host is told to retry once the guest has taken the message (msg_pending). */
static int synic_post(void *opaque, unsigned vp, unsigned sint, uint32_t type, const void *payload,
		      size_t len)
{
	struct vsc *v = opaque;
	if (vp >= v->nvps || sint >= 16 || len > VMBUS_MESSAGE_MAX_PAYLOAD)
		abort(); /* the host broke the SynIC contract */
	pthread_mutex_lock(&v->lock);
	uint8_t *slot = slot_of(v, vp, sint);
	if (__atomic_load_n((uint32_t *)(void *)slot, __ATOMIC_ACQUIRE)) {
		slot[5] |= 1;
		v->busy++;
		pthread_mutex_unlock(&v->lock);
		return -EAGAIN;
	}
	slot[4] = (uint8_t)len;
	slot[5] = 0;
	memset(slot + 8, 0, SLOT_SIZE - 8);
	memcpy(slot + 16, payload, len);
	__atomic_store_n((uint32_t *)(void *)slot, type, __ATOMIC_RELEASE);
	v->posts++;
	pthread_mutex_unlock(&v->lock);
	return 0;
}

static void synic_signal(void *opaque, unsigned vp, unsigned sint, unsigned flag)
{
	struct vsc *v = opaque;
	if (vp >= v->nvps || sint >= 16 || flag >= VSC_RELIDS)
		abort();
	pthread_mutex_lock(&v->lock);
	uint8_t *area = vsc_host(v, v->sief[vp] + (uint64_t)sint * SLOT_SIZE);
	area[flag / 8] |= (uint8_t)(1u << (flag % 8));
	v->signals[flag]++;
	v->signal_thread[flag] = pthread_self();
	pthread_mutex_unlock(&v->lock);
}

struct vmbus_synic_ops vsc_synic_ops(struct vsc *v)
{
	return (struct vmbus_synic_ops){ .opaque = v,
					 .post_message = synic_post,
					 .signal_event = synic_signal };
}

void vsc_init(struct vsc *v, unsigned nvps)
{
	memset(v, 0, sizeof(*v));
	assert_true(nvps >= 1 && nvps <= VSC_MAX_VPS);
	v->nvps = nvps;
	v->ram[0] = aligned_alloc(VSC_PAGE, VSC_RAM0_SIZE);
	v->ram[1] = aligned_alloc(VSC_PAGE, VSC_RAM1_SIZE);
	assert_non_null(v->ram[0]);
	assert_non_null(v->ram[1]);
	memset(v->ram[1], 0, VSC_RAM1_SIZE);
	assert_int_equal(guest_mem_add(&v->mem, VSC_RAM0_GPA, VSC_RAM0_SIZE, v->ram[0]), 0);
	assert_int_equal(guest_mem_add(&v->mem, VSC_RAM1_GPA, VSC_RAM1_SIZE, v->ram[1]), 0);
	v->alloc_next = VSC_PAGE; /* page 0 stays unused */
	for (unsigned i = 0; i < nvps; i++) {
		v->simp[i] = vsc_alloc(v, VSC_PAGE);
		v->sief[i] = vsc_alloc(v, VSC_PAGE);
	}
	v->next_gpadl = VSC_FIRST_GPADL;
	v->msg_conn_id = VMBUS_CONNECTION_ID_MESSAGE;
	pthread_mutex_init(&v->lock, NULL);
	struct vmbus_config cfg = { .mem = &v->mem, .synic = vsc_synic_ops(v), .vp_count = nvps };
	assert_int_equal(vmbus_create(&cfg, &v->vb), 0);
}

void vsc_fini(struct vsc *v)
{
	vmbus_destroy(v->vb);
	pthread_mutex_destroy(&v->lock);
	free(v->ram[0]);
	free(v->ram[1]);
	v->vb = NULL;
}

/* ---- control messages ---- */

uint16_t vsc_post(struct vsc *v, unsigned vp, uint32_t connection_id, const void *msg, size_t len)
{
	return vmbus_post_message(v->vb, vp, connection_id, VMBUS_MESSAGE_TYPE, msg, len);
}

void vsc_send(struct vsc *v, const void *msg, size_t len)
{
	assert_int_equal(vsc_post(v, 0, v->msg_conn_id, msg, len), HV_STATUS_SUCCESS);
}

bool vsc_take(struct vsc *v, unsigned vp, struct vsc_msg *m)
{
	pthread_mutex_lock(&v->lock);
	uint8_t *slot = slot_of(v, vp, VMBUS_MESSAGE_SINT);
	uint32_t type = __atomic_load_n((uint32_t *)(void *)slot, __ATOMIC_ACQUIRE);
	if (!type) {
		pthread_mutex_unlock(&v->lock);
		return false;
	}
	assert_int_equal(type, VMBUS_MESSAGE_TYPE);
	m->len = slot[4];
	assert_true(m->len >= 8 && m->len <= VMBUS_MESSAGE_MAX_PAYLOAD);
	memset(m->data, 0, sizeof(m->data));
	memcpy(m->data, slot + 16, m->len);
	m->type = load_le32(m->data);
	bool pending = slot[5] & 1;
	slot[5] = 0;
	__atomic_store_n((uint32_t *)(void *)slot, 0, __ATOMIC_RELEASE);
	pthread_mutex_unlock(&v->lock);
	if (pending) /* the EOM the guest writes when the host waits for the slot */
		vmbus_message_slot_free(v->vb, vp, VMBUS_MESSAGE_SINT);
	return true;
}

void vsc_expect(struct vsc *v, uint32_t type, struct vsc_msg *m)
{
	for (int i = 0; i < WAIT_LIMIT; i++) {
		if (vsc_take(v, 0, m)) {
			if (m->type != type)
				fail_msg("expected message %u, got %u", type, m->type);
			return;
		}
		if (!v->pump)
			break;
		v->pump(v->pump_opaque);
	}
	fail_msg("no message %u from the host", type);
}

void vsc_expect_none(struct vsc *v)
{
	struct vsc_msg m;
	if (vsc_take(v, 0, &m))
		fail_msg("unexpected message %u from the host", m.type);
}

bool vsc_contact(struct vsc *v, uint32_t version)
{
	uint8_t msg[40] = { 0 };
	store_le32(msg, VSC_INITIATE_CONTACT);
	store_le32(msg + 8, version);
	store_le32(msg + 12, 0); /* target VP: CPU 0's VP index */
	if (version >= 0x50000)
		msg[16] = VMBUS_MESSAGE_SINT;
	else
		store_le64(msg + 16, vsc_alloc(v, VSC_PAGE)); /* the interrupt page */
	store_le64(msg + 24, vsc_alloc(v, VSC_PAGE));
	store_le64(msg + 32, vsc_alloc(v, VSC_PAGE));
	uint32_t id =
		version >= 0x50000 ? VMBUS_CONNECTION_ID_CONTACT : VMBUS_CONNECTION_ID_MESSAGE;
	assert_int_equal(vsc_post(v, 0, id, msg, sizeof(msg)), HV_STATUS_SUCCESS);
	struct vsc_msg m;
	vsc_expect(v, VSC_VERSION_RESPONSE, &m);
	assert_true(m.len >= 16); /* Linux drops a shorter response and waits forever */
	if (!m.data[8])
		return false;
	v->version = version;
	v->msg_conn_id = version >= 0x50000 ? load_le32(m.data + 12) : VMBUS_CONNECTION_ID_MESSAGE;
	return true;
}

uint32_t vsc_negotiate(struct vsc *v)
{
	for (unsigned i = 0; i < 8; i++)
		if (vsc_contact(v, vsc_vmbus_versions[i]))
			return vsc_vmbus_versions[i];
	return 0;
}

static void parse_offer(struct vsc *v, const struct vsc_msg *m)
{
	assert_true(m->len >= 196); /* Linux's minimum for OFFERCHANNEL */
	assert_true(v->noffers < VSC_MAX_OFFERS);
	struct vsc_offer *o = &v->offers[v->noffers++];
	memcpy(o->class_id, m->data + 8, 16);
	memcpy(o->instance, m->data + 24, 16);
	o->sub_index = load_le16(m->data + 180);
	o->relid = load_le32(m->data + 184);
	o->monitor_allocated = m->data[189] & 1;
	o->dedicated_interrupt = load_le16(m->data + 190);
	o->connection_id = load_le32(m->data + 192);
}

void vsc_request_offers(struct vsc *v)
{
	uint8_t msg[8] = { 0 };
	store_le32(msg, VSC_REQUESTOFFERS);
	vsc_send(v, msg, sizeof(msg));
	for (;;) {
		struct vsc_msg m;
		if (!vsc_take(v, 0, &m))
			fail_msg("offers stopped before ALLOFFERS_DELIVERED");
		if (m.type == VSC_ALLOFFERS_DELIVERED)
			return;
		assert_int_equal(m.type, VSC_OFFERCHANNEL);
		parse_offer(v, &m);
	}
}

unsigned vsc_collect_offers(struct vsc *v, unsigned want)
{
	unsigned got = 0;
	for (int i = 0; i < WAIT_LIMIT && got < want; i++) {
		struct vsc_msg m;
		if (vsc_take(v, 0, &m)) {
			assert_int_equal(m.type, VSC_OFFERCHANNEL);
			parse_offer(v, &m);
			got++;
		} else if (v->pump) {
			v->pump(v->pump_opaque);
		} else {
			break;
		}
	}
	return got;
}

const struct vsc_offer *vsc_find_offer(struct vsc *v, const uint8_t *instance, uint16_t sub)
{
	for (unsigned i = 0; i < v->noffers; i++)
		if (!memcmp(v->offers[i].instance, instance, 16) && v->offers[i].sub_index == sub)
			return &v->offers[i];
	return NULL;
}

const struct vsc_offer *vsc_find_class_offer(struct vsc *v, const uint8_t *class_id, uint16_t sub)
{
	for (unsigned i = 0; i < v->noffers; i++)
		if (!memcmp(v->offers[i].class_id, class_id, 16) && v->offers[i].sub_index == sub)
			return &v->offers[i];
	return NULL;
}

uint32_t vsc_gpadl_create(struct vsc *v, uint32_t relid, uint64_t gpa, uint32_t bytes,
			  uint32_t *handle)
{
	uint32_t pages = bytes / VSC_PAGE, h = v->next_gpadl++;
	uint8_t msg[VMBUS_MESSAGE_MAX_PAYLOAD] = { 0 };
	uint32_t first = pages < 26 ? pages : 26;
	store_le32(msg, VSC_GPADL_HEADER);
	store_le32(msg + 8, relid);
	store_le32(msg + 12, h);
	store_le16(msg + 16, (uint16_t)(8 + 8 * pages));
	store_le16(msg + 18, 1);
	store_le32(msg + 20, bytes);
	store_le32(msg + 24, 0);
	for (uint32_t i = 0; i < first; i++)
		store_le64(msg + 28 + 8 * i, gpa / VSC_PAGE + i);
	vsc_send(v, msg, 28 + 8 * first);
	for (uint32_t done = first; done < pages;) {
		uint32_t n = pages - done < 28 ? pages - done : 28;
		memset(msg, 0, sizeof(msg));
		store_le32(msg, VSC_GPADL_BODY);
		store_le32(msg + 12, h); /* msgnumber @8 left 0, as Linux does */
		for (uint32_t i = 0; i < n; i++)
			store_le64(msg + 16 + 8 * i, gpa / VSC_PAGE + done + i);
		vsc_send(v, msg, 16 + 8 * n);
		done += n;
	}
	struct vsc_msg m;
	vsc_expect(v, VSC_GPADL_CREATED, &m);
	assert_int_equal(load_le32(m.data + 8), relid);
	assert_int_equal(load_le32(m.data + 12), h);
	*handle = h;
	return load_le32(m.data + 16);
}

void vsc_gpadl_teardown(struct vsc *v, uint32_t relid, uint32_t handle)
{
	uint8_t msg[16] = { 0 };
	store_le32(msg, VSC_GPADL_TEARDOWN);
	store_le32(msg + 8, relid);
	store_le32(msg + 12, handle);
	vsc_send(v, msg, sizeof(msg));
	struct vsc_msg m;
	vsc_expect(v, VSC_GPADL_TORNDOWN, &m);
	assert_int_equal(load_le32(m.data + 8), handle);
}

/* ---- channels ---- */

uint32_t vsc_open(struct vsc *v, const struct vsc_offer *o, uint32_t send_bytes,
		  uint32_t recv_bytes, unsigned target_vp, struct vsc_channel *ch)
{
	memset(ch, 0, sizeof(*ch));
	ch->v = v;
	ch->offer = *o;
	ch->send_pages = send_bytes / VSC_PAGE;
	ch->recv_pages = recv_bytes / VSC_PAGE;
	ch->target_vp = target_vp;
	ch->ring_gpa = vsc_alloc(v, send_bytes + recv_bytes);
	ch->send_hdr = vsc_host(v, ch->ring_gpa);
	ch->send_data = ch->send_hdr + VSC_PAGE;
	ch->send_size = send_bytes - VSC_PAGE;
	ch->recv_hdr = ch->send_hdr + send_bytes;
	ch->recv_data = ch->recv_hdr + VSC_PAGE;
	ch->recv_size = recv_bytes - VSC_PAGE;
	store_le32(ch->send_hdr + 64, 1); /* feature bits: pending_send_sz */
	store_le32(ch->recv_hdr + 64, 1);
	ch->pkt_len = STOR_PKT;
	ch->next_trans = 1;
	uint32_t status =
		vsc_gpadl_create(v, o->relid, ch->ring_gpa, send_bytes + recv_bytes, &ch->gpadl);
	assert_int_equal(status, 0);
	uint8_t msg[148] = { 0 };
	store_le32(msg, VSC_OPENCHANNEL);
	store_le32(msg + 8, o->relid);
	store_le32(msg + 12, o->relid);
	store_le32(msg + 16, ch->gpadl);
	store_le32(msg + 20, target_vp);
	store_le32(msg + 24, ch->send_pages);
	vsc_send(v, msg, sizeof(msg));
	struct vsc_msg m;
	vsc_expect(v, VSC_OPENCHANNEL_RESULT, &m);
	assert_int_equal(load_le32(m.data + 8), o->relid);
	assert_int_equal(load_le32(m.data + 12), o->relid);
	return load_le32(m.data + 16);
}

void vsc_close(struct vsc_channel *ch)
{
	uint8_t msg[12] = { 0 };
	store_le32(msg, VSC_CLOSECHANNEL);
	store_le32(msg + 8, ch->offer.relid);
	vsc_send(ch->v, msg, sizeof(msg));
	vsc_gpadl_teardown(ch->v, ch->offer.relid, ch->gpadl);
}

static uint32_t hdr_load(const uint8_t *hdr, unsigned off)
{
	return __atomic_load_n((const uint32_t *)(const void *)(hdr + off), __ATOMIC_ACQUIRE);
}

static void hdr_store(uint8_t *hdr, unsigned off, uint32_t val)
{
	__atomic_store_n((uint32_t *)(void *)(hdr + off), val, __ATOMIC_RELEASE);
}

static uint32_t ring_put(uint8_t *data, uint32_t size, uint32_t pos, const void *src, size_t len)
{
	const uint8_t *s = src;
	for (size_t i = 0; i < len; i++)
		data[(pos + i) % size] = s ? s[i] : 0;
	return (uint32_t)((pos + len) % size);
}

static void ring_get(const uint8_t *data, uint32_t size, uint32_t pos, void *dst, size_t len)
{
	uint8_t *d = dst;
	for (size_t i = 0; i < len; i++)
		d[i] = data[(pos + i) % size];
}

static void signal_host(struct vsc_channel *ch)
{
	ch->guest_signals++;
	assert_int_equal(vmbus_signal_event(ch->v->vb, ch->offer.connection_id, 0),
			 HV_STATUS_SUCCESS);
}

int vsc_ring_write(struct vsc_channel *ch, uint16_t type, uint16_t flags, uint64_t trans_id,
		   const void *extra, size_t extra_len, const void *payload, size_t len)
{
	uint32_t size = ch->send_size;
	uint32_t desc_len = 16 + (uint32_t)extra_len;
	uint32_t packet = (uint32_t)((desc_len + len + 7) / 8 * 8);
	uint32_t total = packet + 8;
	uint32_t w = hdr_load(ch->send_hdr, 0), r = hdr_load(ch->send_hdr, 4);
	uint32_t avail = w >= r ? size - (w - r) : r - w;
	if (avail <= total)
		return -EAGAIN;
	uint8_t desc[16];
	store_le16(desc, type);
	store_le16(desc + 2, (uint16_t)(desc_len / 8));
	store_le16(desc + 4, (uint16_t)(packet / 8));
	store_le16(desc + 6, flags);
	store_le64(desc + 8, trans_id);
	uint32_t pos = ring_put(ch->send_data, size, w, desc, 16);
	pos = ring_put(ch->send_data, size, pos, extra, extra_len);
	pos = ring_put(ch->send_data, size, pos, payload, len);
	pos = ring_put(ch->send_data, size, pos, NULL, packet - desc_len - len);
	uint8_t trailer[8];
	store_le64(trailer, (uint64_t)w << 32);
	pos = ring_put(ch->send_data, size, pos, trailer, 8);
	hdr_store(ch->send_hdr, 0, pos);
	__atomic_thread_fence(__ATOMIC_SEQ_CST);
	/* hv_signal_on_write: only when the host is not masked and had read everything */
	if (!hdr_load(ch->send_hdr, 8) && hdr_load(ch->send_hdr, 4) == w)
		signal_host(ch);
	return 0;
}

size_t vsc_ring_read(struct vsc_channel *ch, void *buf, size_t size, uint16_t *type,
		     uint64_t *trans_id)
{
	uint32_t rsize = ch->recv_size;
	uint32_t w = hdr_load(ch->recv_hdr, 0), r = hdr_load(ch->recv_hdr, 4);
	if (w == r)
		return 0;
	assert_true(w < rsize && w % 8 == 0);
	uint32_t avail = w > r ? w - r : rsize - (r - w);
	uint8_t desc[16];
	ring_get(ch->recv_data, rsize, r, desc, 16);
	uint32_t off = load_le16(desc + 2) * 8u, len = load_le16(desc + 4) * 8u;
	assert_true(len >= 16 && off >= 16 && off <= len && len + 8 <= avail);
	uint8_t trailer[8];
	ring_get(ch->recv_data, rsize, (r + len) % rsize, trailer, 8);
	assert_int_equal(load_le64(trailer) >> 32, r); /* the host's trailer: its start index */
	size_t payload = len - off;
	ring_get(ch->recv_data, rsize, (r + off) % rsize, buf, payload < size ? payload : size);
	*type = load_le16(desc);
	*trans_id = load_le64(desc + 8);
	uint32_t nr = (r + len + 8) % rsize;
	hdr_store(ch->recv_hdr, 4, nr);
	/* hv_pkt_iter_close: wake a host waiting for room once it crossed pending_send_sz */
	__atomic_thread_fence(__ATOMIC_SEQ_CST);
	uint32_t pending = hdr_load(ch->recv_hdr, 12);
	if ((hdr_load(ch->recv_hdr, 64) & 1) && pending) {
		uint32_t hw = hdr_load(ch->recv_hdr, 0);
		uint32_t room = hw >= nr ? rsize - (hw - nr) : nr - hw;
		if (!(room - (len + 8) > pending) && room > pending)
			signal_host(ch);
	}
	return payload;
}

void vsc_mask(struct vsc_channel *ch, bool masked)
{
	hdr_store(ch->recv_hdr, 8, masked);
	__atomic_thread_fence(__ATOMIC_SEQ_CST);
}

/* ---- storvsc ---- */

/* The next packet for us (pumping while none): unsolicited ones are counted and skipped.
 * Returns the completion's trans id and payload length. */
static uint64_t wait_completion(struct vsc_channel *ch, uint8_t *reply, size_t *len)
{
	for (int i = 0; i < WAIT_LIMIT; i++) {
		uint8_t pkt[256];
		uint16_t type;
		uint64_t id;
		vsc_mask(ch, true);
		size_t n = vsc_ring_read(ch, pkt, sizeof(pkt), &type, &id);
		vsc_mask(ch, false);
		if (!n) {
			if (ch->v->pump)
				ch->v->pump(ch->v->pump_opaque);
			continue;
		}
		if (id == 0) {
			assert_true(n >= 4);
			ch->notices++;
			ch->last_notice = load_le32(pkt);
			continue;
		}
		assert_int_equal(type, 11); /* VM_PKT_COMP */
		assert_true(n <= STOR_PKT);
		memset(reply, 0, STOR_PKT);
		memcpy(reply, pkt, n);
		*len = n;
		return id;
	}
	fail_msg("no completion from the host");
	return 0;
}

size_t vsc_stor_request(struct vsc_channel *ch, const uint8_t *pkt, uint8_t *reply)
{
	int ret = vsc_ring_write(ch, 6, 1, RQST_INIT, NULL, 0, pkt, ch->pkt_len);
	assert_int_equal(ret, 0);
	size_t len;
	assert_true(wait_completion(ch, reply, &len) == RQST_INIT);
	return len;
}

static bool init_op(struct vsc_channel *ch, uint32_t op, const uint8_t *body, size_t body_len,
		    uint8_t *reply)
{
	uint8_t pkt[STOR_PKT] = { 0 };
	store_le32(pkt, op);
	store_le32(pkt + 4, 1); /* REQUEST_COMPLETION_FLAG */
	if (body)
		memcpy(pkt + 12, body, body_len);
	size_t n = vsc_stor_request(ch, pkt, reply);
	/* storvsc checks the size against its own packet size */
	assert_int_equal(n, ch->pkt_len);
	assert_int_equal(load_le32(reply), 1); /* COMPLETE_IO, else init aborts */
	return load_le32(reply + 8) == 0;
}

uint16_t vsc_stor_init(struct vsc_channel *ch, const uint16_t *versions, unsigned n,
		       unsigned pkt_len, unsigned *max_sub, uint32_t *max_xfer)
{
	uint8_t reply[STOR_PKT];
	ch->pkt_len = pkt_len;
	assert_true(init_op(ch, 7, NULL, 0, reply));
	uint16_t accepted = 0;
	for (unsigned i = 0; i < n && !accepted; i++) {
		uint8_t body[4] = { 0 };
		store_le16(body, versions[i]);
		if (init_op(ch, 9, body, sizeof(body), reply)) {
			accepted = versions[i];
			/* a guest that started with old packets grows them from Windows 8 on */
			if (accepted >= 0x0501)
				ch->pkt_len = STOR_PKT;
		} else
			assert_int_equal(load_le32(reply + 8), 0xC0000059); /* REVISION_MISMATCH */
	}
	if (!accepted)
		return 0;
	assert_true(init_op(ch, 10, NULL, 0, reply));
	*max_sub = load_le32(reply + 20) & 1 ? load_le16(reply + 16) : 0;
	*max_xfer = load_le32(reply + 24);
	assert_true(init_op(ch, 8, NULL, 0, reply));
	return accepted;
}

uint32_t vsc_stor_create_subchannels(struct vsc_channel *ch, unsigned count)
{
	uint8_t pkt[STOR_PKT] = { 0 }, reply[STOR_PKT];
	store_le32(pkt, 13);
	store_le32(pkt + 4, 1);
	store_le16(pkt + 12, (uint16_t)count);
	assert_int_equal(vsc_stor_request(ch, pkt, reply), ch->pkt_len);
	assert_int_equal(load_le32(reply), 1);
	return load_le32(reply + 8);
}

static void build_srb(struct vsc_channel *ch, uint8_t *pkt, uint8_t target, uint8_t lun,
		      const uint8_t *cdb, unsigned cdb_len, uint8_t data_in, uint32_t len)
{
	memset(pkt, 0, STOR_PKT);
	store_le32(pkt, 3); /* EXECUTE_SRB */
	store_le32(pkt + 4, 1);
	store_le16(pkt + 12, ch->pkt_len == STOR_PKT ? 0x34 : 0x24);
	pkt[16] = 3; /* port_number: the guest's SCSI host number, meaningless to the host */
	pkt[18] = target;
	pkt[19] = lun;
	pkt[20] = (uint8_t)cdb_len;
	pkt[21] = 0x14; /* sense_info_length */
	pkt[22] = data_in;
	store_le32(pkt + 24, len);
	memcpy(pkt + 28, cdb, cdb_len < 16 ? cdb_len : 16);
	if (ch->pkt_len == STOR_PKT) { /* the Windows 8 extension */
		pkt[50] = 0xFF;
		pkt[51] = 0x20;
		store_le32(pkt + 52, data_in == 1 ? 0x40 : data_in == 0 ? 0x80 : 0);
		store_le32(pkt + 56, 60);
	}
}

static uint64_t send_srb(struct vsc_channel *ch, uint8_t target, uint8_t lun, const uint8_t *cdb,
			 unsigned cdb_len, uint8_t data_in, uint64_t gpa, uint32_t len)
{
	uint8_t pkt[STOR_PKT];
	build_srb(ch, pkt, target, lun, cdb, cdb_len, data_in, len);
	uint64_t id = ch->next_trans++;
	int ret;
	if (len) {
		/* vmbus_sendpacket_mpb_desc: reserved, rangecount 1, {len, offset, pfn[]} */
		uint32_t pages = (uint32_t)((gpa % VSC_PAGE + len + VSC_PAGE - 1) / VSC_PAGE);
		size_t extra_len = 16 + 8 * (size_t)pages;
		uint8_t *extra = calloc(1, extra_len);
		assert_non_null(extra);
		store_le32(extra + 4, 1);
		store_le32(extra + 8, len);
		store_le32(extra + 12, (uint32_t)(gpa % VSC_PAGE));
		for (uint32_t i = 0; i < pages; i++)
			store_le64(extra + 16 + 8 * i, gpa / VSC_PAGE + i);
		ret = vsc_ring_write(ch, 9, 1, id, extra, extra_len, pkt, ch->pkt_len);
		free(extra);
	} else {
		ret = vsc_ring_write(ch, 6, 1, id, NULL, 0, pkt, ch->pkt_len);
	}
	assert_int_equal(ret, 0);
	return id;
}

uint64_t vsc_srb_send(struct vsc_channel *ch, uint8_t lun, const uint8_t *cdb, unsigned cdb_len,
		      uint8_t data_in, uint64_t gpa, uint32_t len)
{
	return send_srb(ch, 0, lun, cdb, cdb_len, data_in, gpa, len);
}

static void parse_result(const uint8_t *reply, size_t len, struct vsc_srb_result *res)
{
	memset(res, 0, sizeof(*res));
	res->reply_len = len;
	res->operation = load_le32(reply);
	res->status = load_le32(reply + 8);
	res->srb_status = reply[14];
	res->scsi_status = reply[15];
	res->sense_len = reply[21];
	res->xfer = load_le32(reply + 24);
	memcpy(res->sense, reply + 28, 20);
}

uint64_t vsc_srb_wait_any(struct vsc_channel *ch, struct vsc_srb_result *res)
{
	uint8_t reply[STOR_PKT];
	size_t len;
	uint64_t id = wait_completion(ch, reply, &len);
	parse_result(reply, len, res);
	return id;
}

void vsc_srb_wait(struct vsc_channel *ch, uint64_t trans_id, struct vsc_srb_result *res)
{
	uint64_t id = vsc_srb_wait_any(ch, res);
	if (id != trans_id)
		fail_msg("completion for %llu while waiting for %llu", (unsigned long long)id,
			 (unsigned long long)trans_id);
}

void vsc_srb(struct vsc_channel *ch, uint8_t target, uint8_t lun, const uint8_t *cdb,
	     unsigned cdb_len, uint8_t data_in, uint64_t gpa, uint32_t len,
	     struct vsc_srb_result *res)
{
	uint64_t id = send_srb(ch, target, lun, cdb, cdb_len, data_in, gpa, len);
	vsc_srb_wait(ch, id, res);
}
