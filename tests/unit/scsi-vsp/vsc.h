/* The test VSC: a guest that speaks VMBus and storvsc the way Linux 6.1 does
 * (drivers/hv/connection.c, channel_mgmt.c, channel.c, ring_buffer.c and
 * drivers/scsi/storvsc_drv.c), on simulated guest RAM, with no VM.
 *
 * Guest RAM is two regions with a hole between them, so "outside guest RAM" has
 * addresses both in the hole and past the end. The SynIC is simulated in the synic ops
 * handed to the host: messages land in the SIMP slot of SINT 2 of the target VP (a busy
 * slot gets msg_pending and -EAGAIN; taking the message frees the slot and, when pending,
 * calls vmbus_message_slot_free as the guest's EOM would), events set bits in the SIEF
 * page and are counted per relid.
 *
 * Messages and packets are built byte by byte at the offsets the Linux structures have
 * (include/linux/hyperv.h), independently of the host's code. Failures inside the library
 * fail the running cmocka test. The host side is driven by a pump callback the test
 * supplies, called whenever the guest waits for something.
 */
#ifndef HV_TEST_VSC_H
#define HV_TEST_VSC_H

#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "dev.h"
#include "vmbus.h"

#define VSC_RAM0_GPA	0ull
#define VSC_RAM0_SIZE	(16ull << 20)
#define VSC_RAM1_GPA	(64ull << 20) /* the hole is [16 MiB, 64 MiB) */
#define VSC_RAM1_SIZE	(16ull << 20)
#define VSC_MAX_VPS	4
#define VSC_MAX_OFFERS	80
#define VSC_PAGE	4096u
#define VSC_FIRST_GPADL 0xE1E10u /* where Linux starts its GPADL handles */
#define VSC_RELIDS	2048

/* Linux's VMBus message types (enum vmbus_channel_message_type). */
enum {
	VSC_OFFERCHANNEL = 1,
	VSC_RESCIND = 2,
	VSC_REQUESTOFFERS = 3,
	VSC_ALLOFFERS_DELIVERED = 4,
	VSC_OPENCHANNEL = 5,
	VSC_OPENCHANNEL_RESULT = 6,
	VSC_CLOSECHANNEL = 7,
	VSC_GPADL_HEADER = 8,
	VSC_GPADL_BODY = 9,
	VSC_GPADL_CREATED = 10,
	VSC_GPADL_TEARDOWN = 11,
	VSC_GPADL_TORNDOWN = 12,
	VSC_RELID_RELEASED = 13,
	VSC_INITIATE_CONTACT = 14,
	VSC_VERSION_RESPONSE = 15,
	VSC_UNLOAD = 16,
	VSC_UNLOAD_RESPONSE = 17,
	VSC_MODIFYCHANNEL = 22,
	VSC_MODIFYCHANNEL_RESPONSE = 24,
};

/* The versions Linux 6.1 tries, newest first. */
extern const uint32_t vsc_vmbus_versions[8];

struct vsc_offer {
	uint8_t class_id[16];
	uint8_t instance[16];
	uint16_t sub_index;
	uint32_t relid;
	uint8_t monitor_allocated;
	uint16_t dedicated_interrupt;
	uint32_t connection_id;
};

struct vsc_msg {
	uint32_t type;
	uint32_t len;
	uint8_t data[VMBUS_MESSAGE_MAX_PAYLOAD];
};

struct vsc {
	uint8_t *ram[2];
	struct guest_mem mem;
	uint64_t alloc_next; /* bump allocator over RAM0, page granular */
	struct vmbus *vb;
	unsigned nvps;
	uint64_t simp[VSC_MAX_VPS], sief[VSC_MAX_VPS];
	uint32_t version;     /* negotiated */
	uint32_t msg_conn_id; /* where control messages go after contact */
	uint32_t next_gpadl;
	struct vsc_offer offers[VSC_MAX_OFFERS];
	unsigned noffers;
	pthread_mutex_t lock; /* the SynIC pages, against host threads */
	unsigned posts, busy;
	unsigned signals[VSC_RELIDS];	     /* host -> guest events per relid */
	pthread_t signal_thread[VSC_RELIDS]; /* who set the last one */
	void (*pump)(void *opaque);	     /* run the host side a step */
	void *pump_opaque;
};

/* Guest RAM, SynIC pages for nvps VPs, and a VMBus host on them (stopped until the test
 * starts it). */
void vsc_init(struct vsc *v, unsigned nvps);
void vsc_fini(struct vsc *v);
struct vmbus_synic_ops vsc_synic_ops(struct vsc *v);

/* Guest memory: page-aligned allocations in RAM0, and host addresses of guest ranges. */
uint64_t vsc_alloc(struct vsc *v, uint64_t bytes);
void *vsc_host(struct vsc *v, uint64_t gpa);

/* ---- control messages ---- */

/* HvPostMessage from vp on connection id: the hypercall status. */
uint16_t vsc_post(struct vsc *v, unsigned vp, uint32_t connection_id, const void *msg, size_t len);
/* Posts on the negotiated message connection from VP 0 and expects success. */
void vsc_send(struct vsc *v, const void *msg, size_t len);
/* Takes the next message from VP vp's slot (EOM included); false when the slot is empty. */
bool vsc_take(struct vsc *v, unsigned vp, struct vsc_msg *m);
/* The next message on VP 0 (pumping the host while none), which must be of type. */
void vsc_expect(struct vsc *v, uint32_t type, struct vsc_msg *m);
/* Fails the test when a message is waiting in VP 0's slot. */
void vsc_expect_none(struct vsc *v);

/* INITIATE_CONTACT for one version as Linux sends it (connection 4 from 5.0 on, else 1):
 * returns version_supported of the reply. */
bool vsc_contact(struct vsc *v, uint32_t version);
/* Linux's negotiation: each version until one is accepted (0 when none). */
uint32_t vsc_negotiate(struct vsc *v);
/* REQUESTOFFERS; collects the offers until ALLOFFERS_DELIVERED. */
void vsc_request_offers(struct vsc *v);
/* The offer of sub-channel sub of the device with this instance, or NULL. */
const struct vsc_offer *vsc_find_offer(struct vsc *v, const uint8_t *instance, uint16_t sub);
/* The offer of sub-channel sub of the first device of this class, or NULL. */
const struct vsc_offer *vsc_find_class_offer(struct vsc *v, const uint8_t *class_id, uint16_t sub);
/* Waits (pumping) for more offers; returns how many arrived. */
unsigned vsc_collect_offers(struct vsc *v, unsigned want);

/* A GPADL as Linux makes one (one range, 26 PFNs in the header, 28 per body): returns
 * the creation status; *handle gets the handle used. */
uint32_t vsc_gpadl_create(struct vsc *v, uint32_t relid, uint64_t gpa, uint32_t bytes,
			  uint32_t *handle);
void vsc_gpadl_teardown(struct vsc *v, uint32_t relid, uint32_t handle);

/* ---- channels ---- */

struct vsc_channel {
	struct vsc *v;
	struct vsc_offer offer;
	uint64_t ring_gpa;
	uint32_t send_pages, recv_pages; /* each with its header page */
	uint32_t gpadl;
	unsigned target_vp;
	uint8_t *send_hdr, *recv_hdr; /* guest -> host and host -> guest headers */
	uint8_t *send_data, *recv_data;
	uint32_t send_size, recv_size;
	unsigned guest_signals; /* HvSignalEvent calls this guest made */
	/* storvsc */
	unsigned pkt_len;
	uint64_t next_trans;
	unsigned notices; /* unsolicited packets (trans id 0) seen */
	uint32_t last_notice;
};

/* Allocates and zeroes the rings, sets their feature bits, creates the GPADL and opens
 * the channel. Returns the OPENCHANNEL_RESULT status. */
uint32_t vsc_open(struct vsc *v, const struct vsc_offer *o, uint32_t send_bytes,
		  uint32_t recv_bytes, unsigned target_vp, struct vsc_channel *ch);
/* CLOSECHANNEL, then GPADL_TEARDOWN and its TORNDOWN, as vmbus_close does. */
void vsc_close(struct vsc_channel *ch);

/* Linux's hv_ringbuffer_write: returns 0 or -EAGAIN when the ring lacks room. extra is
 * placed between the descriptor and the payload (GPA-direct ranges). */
int vsc_ring_write(struct vsc_channel *ch, uint16_t type, uint16_t flags, uint64_t trans_id,
		   const void *extra, size_t extra_len, const void *payload, size_t len);
/* One packet from the host->guest ring: returns its payload length (copied up to size,
 * descriptor fields in *type / *trans_id), 0 when the ring is empty. */
size_t vsc_ring_read(struct vsc_channel *ch, void *buf, size_t size, uint16_t *type,
		     uint64_t *trans_id);
/* interrupt_mask of the host->guest ring, as vmbus_on_event sets it around a callback. */
void vsc_mask(struct vsc_channel *ch, bool masked);

/* ---- storvsc ---- */

struct vsc_srb_result {
	uint32_t operation, status;
	uint8_t srb_status, scsi_status, sense_len;
	uint8_t sense[20];
	uint32_t xfer;
	size_t reply_len;
};

/* Sends a vstor packet of ch->pkt_len bytes (in-band) and waits for its completion; the
 * reply packet lands in reply (64 bytes). Returns the reply's payload length. */
size_t vsc_stor_request(struct vsc_channel *ch, const uint8_t *pkt, uint8_t *reply);
/* Linux's storvsc_channel_init on the primary: BEGIN, versions in order until accepted,
 * PROPERTIES, END. Returns the accepted version (0: none); *max_sub and *max_xfer from
 * the properties. pkt_len is the packet size to start with: 64, or 48 for old guests,
 * which move to 64 once a version from 5.1 (Windows 8) on is accepted. */
uint16_t vsc_stor_init(struct vsc_channel *ch, const uint16_t *versions, unsigned n,
		       unsigned pkt_len, unsigned *max_sub, uint32_t *max_xfer);
/* CREATE_SUB_CHANNELS: the reply status. */
uint32_t vsc_stor_create_subchannels(struct vsc_channel *ch, unsigned count);
/* EXECUTE_SRB at path 0 target `target` lun; data_in 0 write, 1 read, 2 none; with len > 0
 * the buffer at gpa goes as a GPA-direct page list. */
void vsc_srb(struct vsc_channel *ch, uint8_t target, uint8_t lun, const uint8_t *cdb,
	     unsigned cdb_len, uint8_t data_in, uint64_t gpa, uint32_t len,
	     struct vsc_srb_result *res);
/* Sends without waiting (trans id returned); vsc_srb_wait collects one completion. */
uint64_t vsc_srb_send(struct vsc_channel *ch, uint8_t lun, const uint8_t *cdb, unsigned cdb_len,
		      uint8_t data_in, uint64_t gpa, uint32_t len);
void vsc_srb_wait(struct vsc_channel *ch, uint64_t trans_id, struct vsc_srb_result *res);
/* The completion of any request: returns its trans id. */
uint64_t vsc_srb_wait_any(struct vsc_channel *ch, struct vsc_srb_result *res);

#endif
