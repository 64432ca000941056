/* The VMBus host's state, shared by vmbus.c (connection, offers, channels) and
 * vmbus_gpadl.c (GPADLs). Not for devices: they use vmbus_device.h. */
#ifndef HV_VMBUS_INTERNAL_H
#define HV_VMBUS_INTERNAL_H

#include <pthread.h>

#include "vmbus_device.h"

/* Control message types (the u32 at the start of every VMBus message). */
enum {
	MSG_OFFERCHANNEL = 1,
	MSG_RESCIND_CHANNELOFFER = 2,
	MSG_REQUESTOFFERS = 3,
	MSG_ALLOFFERS_DELIVERED = 4,
	MSG_OPENCHANNEL = 5,
	MSG_OPENCHANNEL_RESULT = 6,
	MSG_CLOSECHANNEL = 7,
	MSG_GPADL_HEADER = 8,
	MSG_GPADL_BODY = 9,
	MSG_GPADL_CREATED = 10,
	MSG_GPADL_TEARDOWN = 11,
	MSG_GPADL_TORNDOWN = 12,
	MSG_RELID_RELEASED = 13,
	MSG_INITIATE_CONTACT = 14,
	MSG_VERSION_RESPONSE = 15,
	MSG_UNLOAD = 16,
	MSG_UNLOAD_RESPONSE = 17,
	MSG_MODIFYCHANNEL = 22,
	MSG_MODIFYCHANNEL_RESPONSE = 24,
};

/* A failure in GPADL_CREATED / OPENCHANNEL_RESULT / MODIFYCHANNEL_RESPONSE
 * (STATUS_UNSUCCESSFUL; the guest only tests for non-zero). */
#define VMBUS_STATUS_FAILED 0xC0000001u

/* One host -> guest message waiting for the guest's slot. */
struct vmbus_msg {
	uint32_t len;
	uint8_t data[VMBUS_MESSAGE_MAX_PAYLOAD];
};

/* A guest page list. The range data (byte_count, byte_offset, pfn[] per range) arrives in
 * one GPADL_HEADER and any number of GPADL_BODY messages; it is checked whole once the
 * last byte is in. */
struct vmbus_gpadl {
	uint32_t handle;
	uint32_t relid;
	uint16_t rangecount;
	uint32_t expected; /* bytes of range data announced */
	uint32_t received;
	uint8_t *ranges;
	bool complete;
	struct vmbus_channel *user; /* the open channel whose rings live in it */
	struct vmbus_gpadl *next;
};

enum vmbus_channel_state {
	CHANNEL_UNOFFERED, /* sub-channel not created yet, or released after a rescind */
	CHANNEL_OFFERED,
	CHANNEL_OPEN,
};

struct vmbus_channel {
	struct vmbus *vb;
	struct vmbus_device *dev;
	unsigned index;
	uint32_t relid;
	enum vmbus_channel_state state; /* vb->lock */
	bool rescinded;			/* vb->lock */
	struct vmbus_gpadl *ring_gpadl; /* vb->lock: while open */
	/* Ring state, taken by the serving thread around each packet and by the control
	 * path around open, close and retargeting. */
	pthread_mutex_t lock;
	uint32_t session; /* 0 when closed; read unlocked (atomic) by notify */
	unsigned target_vp;
	struct vmbus_ring in, out;
	uint8_t **pages; /* host address of each ring page while open */
};

struct vmbus_device {
	struct vmbus *vb;
	struct vmbus_device_info info;
	const struct vmbus_device_ops *ops;
	void *opaque;
	unsigned nchannels;
	struct vmbus_channel *channels;
	struct vmbus_device *next;
};

struct vmbus {
	struct vmbus_config cfg;
	pthread_mutex_t lock;
	bool running; /* atomic */
	/* the connection */
	bool connected;
	bool offers_requested;
	uint32_t version;
	unsigned msg_vp; /* where control messages go: INITIATE_CONTACT's target VP */
	uint64_t monitor_pages[2];
	uint32_t session_seq;
	/* devices and their channels by relid (entries read unlocked by vmbus_signal_event) */
	struct vmbus_device *devices;
	struct vmbus_channel *relids[VMBUS_MAX_RELID + 1];
	uint32_t next_relid;
	/* GPADLs */
	struct vmbus_gpadl *gpadls;
	unsigned ngpadls;
	uint64_t gpadl_bytes;
	/* outgoing messages, oldest at head */
	struct vmbus_msg *outbox;
	unsigned out_head, out_count, out_cap;
	bool flushing, flush_again, slot_busy;
	uint64_t slot_frees;
	uint64_t out_clears;
	struct vmbus_stats stats; /* counters updated with atomics */
};

#define STAT_INC(vb, field) __atomic_fetch_add(&(vb)->stats.field, 1, __ATOMIC_RELAXED)

/* Queues a message for the guest (vb->lock held). */
void vmbus_queue_msg(struct vmbus *vb, const struct vmbus_msg *m);
/* Closes an open channel (vb->lock held): the device's close runs, the ring pages are let
 * go and its GPADL is free again. */
void vmbus_close_channel(struct vmbus_channel *ch);

/* GPADL messages (vb->lock held). Each returns false for a message that is malformed or
 * out of place (counted and ignored by the caller). */
bool vmbus_gpadl_header(struct vmbus *vb, const uint8_t *msg, size_t len);
bool vmbus_gpadl_body(struct vmbus *vb, const uint8_t *msg, size_t len);
bool vmbus_gpadl_teardown(struct vmbus *vb, const uint8_t *msg, size_t len);
struct vmbus_gpadl *vmbus_gpadl_find(struct vmbus *vb, uint32_t handle);
/* The host address of each of the n pages of a complete single-range, page-aligned
 * GPADL in pages[]. Returns 0 or -EINVAL. */
int vmbus_gpadl_map_pages(struct vmbus *vb, const struct vmbus_gpadl *g, uint8_t **pages,
			  uint32_t n);
/* Pages of a complete single-range, page-aligned GPADL; 0 for any other. */
uint32_t vmbus_gpadl_ring_pages(const struct vmbus_gpadl *g);
void vmbus_gpadl_free_all(struct vmbus *vb);

#endif
