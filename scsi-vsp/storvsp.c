/* storvsp: the storage VSP protocol on VMBus channels, SCSI commands to the LUNs' targets.
 *
 * A LUN slot changes at run time while channel threads route commands to it. A command
 * enters a slot by counting itself in the slot's inflight and then reading the slot's
 * state (both sequentially consistent); a host change stores the state and then reads
 * inflight. So either the command sees the new state, or the host sees the command and
 * waits for it: a target is handed back (release) only when no command can reach it. */
#include "storvsp.h"

#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "arith.h"
#include "endian.h"
#include "scsi_disk.h"
#include "scsi_target.h"
#include "vdisk.h"
#include "vmbus_device.h"

const struct guid storvsp_scsi_class = { { 0xd9, 0x63, 0x61, 0xba, 0xa1, 0x04, 0x29, 0x4d, 0xb6,
					   0x05, 0x72, 0xe2, 0xff, 0xb1, 0xdc, 0x7f } };

/* Operations (vstor_packet.operation). */
enum {
	OP_COMPLETE_IO = 1,
	OP_REMOVE_DEVICE = 2,
	OP_EXECUTE_SRB = 3,
	OP_RESET_LUN = 4,
	OP_RESET_ADAPTER = 5,
	OP_RESET_BUS = 6,
	OP_BEGIN_INITIALIZATION = 7,
	OP_END_INITIALIZATION = 8,
	OP_QUERY_PROTOCOL_VERSION = 9,
	OP_QUERY_PROPERTIES = 10,
	OP_ENUMERATE_BUS = 11,
	OP_CREATE_SUB_CHANNELS = 13,
};

/* NTSTATUS values in vstor_packet.status. */
#define STATUS_SUCCESS		    0u
#define STATUS_INVALID_PARAMETER    0xC000000Du
#define STATUS_REVISION_MISMATCH    0xC0000059u
#define STATUS_INVALID_DEVICE_STATE 0xC0000184u

/* SRB status (vmscsi_request.srb_status). */
enum {
	SRB_SUCCESS = 0x01,
	SRB_ERROR = 0x04,
	SRB_INVALID_REQUEST = 0x06,
	SRB_INVALID_LUN = 0x20,
	SRB_AUTOSENSE_VALID = 0x80,
};

/* vstor_packet: operation @0, flags @4, status @8, then the 52-byte union at @12; before
 * protocol 5.1 the SCSI request lacks its 16-byte Windows 8 extension. */
#define PACKET_LEN	   64u
#define PACKET_LEN_OLD	   48u
#define PROTOCOL_WIN8	   0x0501
#define SRB		   12u /* vmscsi_request */
#define SRB_STATUS_AT	   (SRB + 2)
#define SRB_SCSI_STATUS_AT (SRB + 3)
#define SRB_PATH_AT	   (SRB + 5)
#define SRB_TARGET_AT	   (SRB + 6)
#define SRB_LUN_AT	   (SRB + 7)
#define SRB_CDB_LEN_AT	   (SRB + 8)
#define SRB_SENSE_LEN_AT   (SRB + 9)
#define SRB_DATA_IN_AT	   (SRB + 10)
#define SRB_XFER_AT	   (SRB + 12)
#define SRB_CDB_AT	   (SRB + 16) /* cdb[16] in requests, sense[20] in replies */
#define SRB_SENSE_MAX	   20u
#define SRB_DATA_IN_READ   1
#define SRB_DATA_IN_NONE   2

/* GPA-direct descriptor after the packet descriptor: reserved, rangecount, ranges. */
#define GPA_RANGES_AT	  24u
#define GPA_MAX_RANGES	  8u
#define MAX_PFNS	  (STORVSP_MAX_TRANSFER_BYTES / VMBUS_PAGE_SIZE + GPA_MAX_RANGES)
#define MAX_IOV		  (MAX_PFNS + GUEST_MEM_MAX_REGIONS)
#define MAX_PACKET	  4096u /* larger packets are refused */
#define REQUESTS_PER_CHAN 256u	/* past this the channel stops taking packets */
/* How long an idle ring may be watched before it is unmasked; the window adapts between 0
 * and the maximum to how soon the guest came back after the last unmask. */
#define IDLE_POLL_MAX_NS   10000u
#define IDLE_POLL_START_NS 1000u
#define SELF_POLL_BUDGET   256u /* packets completions may take between kicked polls */

static const uint16_t protocols[] = { 0x0602, 0x0600, 0x0501, 0x0402, 0x0200 };

enum init_state { INIT_NONE, INIT_BEGUN, INIT_VERSION, INIT_DONE };

/* A LUN slot's state. */
enum lun_state {
	LUN_EMPTY,    /* no target */
	LUN_PRESENT,  /* commands run on the target */
	LUN_QUIESCED, /* new commands wait on their channel */
	LUN_DETACHED, /* absent to new commands; the target waits for its release */
};

struct sv_lun {
	struct storvsp_lun held;	/* written only while no command can reach it */
	unsigned state;			/* enum lun_state; atomic */
	unsigned inflight;		/* atomic: commands on the target, not yet completed */
	struct storvsp_lun_stats stats; /* atomics */
};

struct sv_request {
	struct sv_channel *chan;
	struct sv_lun *lun; /* the slot whose target runs the command, or NULL */
	struct scsi_request req;
	uint32_t session;
	uint64_t trans_id;
	unsigned reply_len;
	uint8_t reply[PACKET_LEN];
	uint8_t cdb[16];
	bool absent; /* the LUN holds nothing */
	struct iovec iov[MAX_IOV];
	struct sv_request *next;
};

struct sv_channel {
	struct storvsp *sv;
	struct vmbus_channel *ch;
	unsigned index;
	bool kicked;	       /* atomic: a poll is due */
	bool starved;	       /* the pool ran dry: a freed request asks for a poll */
	bool masked;	       /* the guest's ring was left masked: a completion asks for a poll */
	bool polling;	       /* storvsp_poll runs on this channel: no poll from inside it */
	unsigned self_polled;  /* packets taken by completions' polls since a kicked poll */
	uint32_t idle_poll_ns; /* the current window of the idle poll */
	uint64_t unmasked_at;  /* when an idle poll found nothing and unmasked; 0: not since */
	struct sv_request *free;
	unsigned allocated;
	unsigned inflight;			   /* atomic */
	struct sv_request *backlog, *backlog_tail; /* replies waiting for ring room */
	struct sv_request *held, *held_tail;	   /* commands to quiesced LUNs */
	/* LUNs whose queue got requests this poll (bit = LUN), each holding one extra count
	 * of the LUN's in-flight commands so that it cannot be released before the kick */
	uint64_t unkicked;
	/* The queue whose completion runs now (on this thread, inside its vdisk_queue_poll,
	 * which submits what was queued on it when it returns), or NULL. */
	struct vdisk_queue *reaping;
	uint8_t packet[MAX_PACKET];
};

struct storvsp {
	struct vmbus *vb;
	struct vmbus_device *dev;
	struct storvsp_config cfg;
	pthread_mutex_t lock; /* initialization state */
	enum init_state state;
	uint16_t protocol;
	unsigned subchannels;
	unsigned io_packet_len;	  /* atomic: reply size once initialized, else 0 */
	uint32_t bus_notice;	  /* atomic: unsolicited operation to send on the primary */
	pthread_mutex_t lun_lock; /* one slot change at a time */
	struct sv_lun luns[STORVSP_MAX_LUNS];
	struct storvsp_stats stats; /* updated with atomics */
	struct sv_channel *chans;
};

#define SV_STAT_ADD(sv, field, n) __atomic_fetch_add(&(sv)->stats.field, (n), __ATOMIC_RELAXED)

static void kick(struct sv_channel *c)
{
	if (!__atomic_exchange_n(&c->kicked, true, __ATOMIC_ACQ_REL))
		c->sv->cfg.kick(c->sv->cfg.kick_opaque, c->index);
}

/* ---- the request pool (channel thread only) ---- */

static struct sv_request *request_get(struct sv_channel *c)
{
	struct sv_request *r = c->free;
	if (r) {
		c->free = r->next;
	} else {
		if (c->allocated == REQUESTS_PER_CHAN || !(r = malloc(sizeof(*r))))
			return NULL;
		c->allocated++;
	}
	r->chan = c;
	r->lun = NULL;
	r->next = NULL;
	__atomic_fetch_add(&c->inflight, 1, __ATOMIC_RELAXED);
	return r;
}

static bool request_available(const struct sv_channel *c)
{
	return c->free || c->allocated < REQUESTS_PER_CHAN;
}

static void poll_channel(struct sv_channel *c);

/* With the guest's ring left masked, a completion polls only when the guest queued
 * packets, or when it is the last one in flight and the ring must be unmasked. */
static bool masked_poll_due(struct sv_channel *c)
{
	return !__atomic_load_n(&c->inflight, __ATOMIC_RELAXED) ||
	       vmbus_channel_has_packets(c->ch, vmbus_channel_session(c->ch));
}

static void request_put(struct sv_request *r)
{
	struct sv_channel *c = r->chan;
	r->next = c->free;
	c->free = r;
	__atomic_fetch_sub(&c->inflight, 1, __ATOMIC_RELAXED);
	if (c->starved || (c->masked && masked_poll_due(c))) {
		c->starved = c->masked = false;
		poll_channel(c);
	}
}

/* ---- replies ---- */

static int send_reply(struct sv_request *r)
{
	struct iovec iov = { r->reply, r->reply_len };
	return vmbus_channel_send(r->chan->ch, r->session, VMBUS_PACKET_COMPLETION, 0, r->trans_id,
				  &iov, 1);
}

static void list_append(struct sv_request **head, struct sv_request **tail, struct sv_request *r)
{
	r->next = NULL;
	if (*tail)
		(*tail)->next = r;
	else
		*head = r;
	*tail = r;
}

/* Sends r's reply, or parks it until the guest makes room; a reply for a closed session
 * is dropped. */
static void complete(struct sv_request *r)
{
	struct sv_channel *c = r->chan;
	if (c->backlog || send_reply(r) == -EAGAIN) {
		if (!c->backlog)
			SV_STAT_ADD(c->sv, ring_full, 1);
		list_append(&c->backlog, &c->backlog_tail, r);
		return;
	}
	request_put(r);
}

static void flush_backlog(struct sv_channel *c)
{
	while (c->backlog) {
		struct sv_request *r = c->backlog;
		if (send_reply(r) == -EAGAIN)
			return;
		c->backlog = r->next;
		if (!c->backlog)
			c->backlog_tail = NULL;
		request_put(r);
	}
}

/* The reply starts as the request (storvsc reads the SCSI request fields back) and
 * becomes a COMPLETE_IO with status. */
static void reply_init(struct sv_request *r, const uint8_t *payload, size_t len, unsigned reply_len,
		       uint32_t status)
{
	memset(r->reply, 0, sizeof(r->reply));
	memcpy(r->reply, payload, min_u64(len, sizeof(r->reply)));
	r->reply_len = reply_len;
	store_le32(r->reply, OP_COMPLETE_IO);
	store_le32(r->reply + 4, 0);
	store_le32(r->reply + 8, status);
}

/* Packet size of replies: the negotiated protocol's once initialized; before, the size the
 * guest used (Linux matches completions against its request's size during init). */
static unsigned reply_len_for(struct storvsp *sv, size_t request_len)
{
	unsigned len = __atomic_load_n(&sv->io_packet_len, __ATOMIC_ACQUIRE);
	if (len)
		return len;
	return request_len >= PACKET_LEN ? PACKET_LEN : PACKET_LEN_OLD;
}

static void refuse(struct sv_request *r, const uint8_t *payload, size_t len, uint32_t status)
{
	reply_init(r, payload, len, reply_len_for(r->chan->sv, len), status);
	if (status == STATUS_INVALID_PARAMETER || status == STATUS_INVALID_DEVICE_STATE) {
		r->reply[SRB_STATUS_AT] = SRB_INVALID_REQUEST;
		SV_STAT_ADD(r->chan->sv, bad_packets, 1);
	}
	complete(r);
}

/* ---- initialization (primary channel) ---- */

static bool protocol_known(uint16_t v)
{
	for (size_t i = 0; i < sizeof(protocols) / sizeof(protocols[0]); i++)
		if (protocols[i] == v)
			return true;
	return false;
}

static void properties(struct storvsp *sv, uint8_t *reply)
{
	memset(reply + SRB, 0, PACKET_LEN - SRB);
	bool multi = sv->protocol >= PROTOCOL_WIN8 && sv->cfg.channels > 1;
	store_le16(reply + 16, (uint16_t)(multi ? sv->cfg.channels - 1 : 0));
	store_le32(reply + 20, multi ? 1 : 0);
	store_le32(reply + 24, STORVSP_MAX_TRANSFER_BYTES);
}

/* One initialization step; returns the status of the reply (sv->lock held). */
static uint32_t init_step(struct sv_channel *c, uint32_t op, const uint8_t *p, uint8_t *reply,
			  unsigned reply_len)
{
	struct storvsp *sv = c->sv;
	if (c->index != 0)
		return STATUS_INVALID_DEVICE_STATE;
	switch (op) {
	case OP_BEGIN_INITIALIZATION:
		if (sv->state != INIT_NONE)
			return STATUS_INVALID_DEVICE_STATE;
		sv->state = INIT_BEGUN;
		return STATUS_SUCCESS;
	case OP_QUERY_PROTOCOL_VERSION:
		if (sv->state != INIT_BEGUN)
			return STATUS_INVALID_DEVICE_STATE;
		if (!protocol_known(load_le16(p + 12)) || load_le16(p + 14) != 0)
			return STATUS_REVISION_MISMATCH;
		sv->protocol = load_le16(p + 12);
		sv->state = INIT_VERSION;
		return STATUS_SUCCESS;
	case OP_QUERY_PROPERTIES:
		if (sv->state != INIT_VERSION)
			return STATUS_INVALID_DEVICE_STATE;
		properties(sv, reply);
		return STATUS_SUCCESS;
	case OP_END_INITIALIZATION:
		if (sv->state != INIT_VERSION)
			return STATUS_INVALID_DEVICE_STATE;
		if (reply_len < (sv->protocol >= PROTOCOL_WIN8 ? PACKET_LEN : PACKET_LEN_OLD))
			return STATUS_INVALID_PARAMETER;
		sv->state = INIT_DONE;
		__atomic_store_n(&sv->io_packet_len,
				 sv->protocol >= PROTOCOL_WIN8 ? PACKET_LEN : PACKET_LEN_OLD,
				 __ATOMIC_RELEASE);
		return STATUS_SUCCESS;
	}
	return STATUS_INVALID_PARAMETER;
}

static void handle_init(struct sv_channel *c, struct sv_request *r, uint32_t op, const uint8_t *p,
			size_t len)
{
	struct storvsp *sv = c->sv;
	unsigned reply_len = reply_len_for(sv, len);
	reply_init(r, p, len, reply_len, 0);
	pthread_mutex_lock(&sv->lock);
	uint32_t status = init_step(c, op, p, r->reply, reply_len);
	if (status == STATUS_SUCCESS && op == OP_QUERY_PROTOCOL_VERSION)
		__atomic_store_n(&sv->stats.protocol, sv->protocol, __ATOMIC_RELAXED);
	pthread_mutex_unlock(&sv->lock);
	if (status == STATUS_SUCCESS || status == STATUS_REVISION_MISMATCH) {
		store_le32(r->reply + 8, status);
		complete(r);
	} else {
		refuse(r, p, len, status);
	}
}

static void create_subchannels(struct sv_channel *c, struct sv_request *r, const uint8_t *p,
			       size_t len)
{
	struct storvsp *sv = c->sv;
	unsigned count = load_le16(p + 12);
	pthread_mutex_lock(&sv->lock);
	bool ok = c->index == 0 && sv->state == INIT_DONE && sv->protocol >= PROTOCOL_WIN8 &&
		  count >= 1 && count < sv->cfg.channels;
	if (ok)
		sv->subchannels = max_u64(sv->subchannels, count);
	pthread_mutex_unlock(&sv->lock);
	if (!ok) {
		refuse(r, p, len, STATUS_INVALID_PARAMETER);
		return;
	}
	reply_init(r, p, len, reply_len_for(sv, len), STATUS_SUCCESS);
	complete(r);
	if (vmbus_device_offer_subchannels(sv->dev, count) == 0)
		__atomic_store_n(&sv->stats.subchannels, count, __ATOMIC_RELAXED);
}

/* ---- EXECUTE_SRB ---- */

static bool opcode_reads(uint8_t op)
{
	return op == 0x08 || op == 0x28 || op == 0xA8 || op == 0x88;
}

static bool opcode_writes(uint8_t op)
{
	return op == 0x0A || op == 0x2A || op == 0xAA || op == 0x8A;
}

/* Adds a completed command to the I/O counters, which the controller and a LUN keep in the
 * same fields. */
#define COUNT_IO(st, r)                                                                            \
	do {                                                                                       \
		uint8_t op_ = (r)->cdb[0];                                                         \
		uint64_t moved_ = (r)->req.transferred;                                            \
		if ((r)->reply[SRB_STATUS_AT] != SRB_SUCCESS) {                                    \
			__atomic_fetch_add(&(st)->errors, 1, __ATOMIC_RELAXED);                    \
		} else if (opcode_reads(op_)) {                                                    \
			__atomic_fetch_add(&(st)->reads, 1, __ATOMIC_RELAXED);                     \
			__atomic_fetch_add(&(st)->read_bytes, moved_, __ATOMIC_RELAXED);           \
		} else if (opcode_writes(op_)) {                                                   \
			__atomic_fetch_add(&(st)->writes, 1, __ATOMIC_RELAXED);                    \
			__atomic_fetch_add(&(st)->write_bytes, moved_, __ATOMIC_RELAXED);          \
		} else if (op_ == 0x35 || op_ == 0x91) {                                           \
			__atomic_fetch_add(&(st)->flushes, 1, __ATOMIC_RELAXED);                   \
		}                                                                                  \
	} while (0)

static void count_io(struct storvsp *sv, const struct sv_request *r)
{
	SV_STAT_ADD(sv, requests, 1);
	COUNT_IO(&sv->stats, r);
	if (r->lun)
		COUNT_IO(&r->lun->stats, r);
}

/* ---- LUN slots ---- */

/* Counts a command in the slot when the slot is in one of the states of mask (1 << state);
 * returns the state seen. */
static enum lun_state lun_enter(struct sv_lun *l, unsigned mask)
{
	__atomic_fetch_add(&l->inflight, 1, __ATOMIC_SEQ_CST);
	enum lun_state state = __atomic_load_n(&l->state, __ATOMIC_SEQ_CST);
	if (!(mask & 1u << state))
		__atomic_fetch_sub(&l->inflight, 1, __ATOMIC_SEQ_CST);
	return state;
}

static void lun_exit(struct sv_lun *l)
{
	__atomic_fetch_sub(&l->inflight, 1, __ATOMIC_SEQ_CST);
}

static enum lun_state lun_state(const struct sv_lun *l)
{
	return __atomic_load_n(&l->state, __ATOMIC_SEQ_CST);
}

static void lun_set_state(struct sv_lun *l, enum lun_state state)
{
	__atomic_store_n(&l->state, state, __ATOMIC_SEQ_CST);
}

/* The LUNs REPORT LUNS lists: those a command may reach or that wait for a resume. */
static unsigned listed_luns(struct storvsp *sv, uint16_t *luns)
{
	unsigned n = 0;
	for (unsigned i = 0; i < STORVSP_MAX_LUNS; i++) {
		enum lun_state state = lun_state(&sv->luns[i]);
		if (state == LUN_PRESENT || state == LUN_QUIESCED)
			luns[n++] = (uint16_t)i;
	}
	return n;
}

/* The target's verdict into the reply: SRB status, SCSI status, sense, bytes moved. */
static void srb_done(struct scsi_request *req)
{
	struct sv_request *r =
		(struct sv_request *)((char *)req - offsetof(struct sv_request, req));
	uint8_t *reply = r->reply;
	uint8_t sense_room = reply[SRB_SENSE_LEN_AT];
	reply[SRB_SCSI_STATUS_AT] = req->status;
	reply[SRB_SENSE_LEN_AT] = 0;
	store_le32(reply + SRB_XFER_AT, 0);
	if (req->status == SCSI_STATUS_GOOD) {
		reply[SRB_STATUS_AT] = SRB_SUCCESS;
		store_le32(reply + SRB_XFER_AT, (uint32_t)req->transferred);
	} else if (req->status == SCSI_STATUS_CHECK_CONDITION) {
		reply[SRB_STATUS_AT] =
			(r->absent ? SRB_INVALID_LUN : SRB_ERROR) | SRB_AUTOSENSE_VALID;
		unsigned n = (unsigned)min_u64(min_u64(req->sense_len, sense_room), SRB_SENSE_MAX);
		memset(reply + SRB_CDB_AT, 0, SRB_SENSE_MAX);
		memcpy(reply + SRB_CDB_AT, req->sense, n);
		reply[SRB_SENSE_LEN_AT] = (uint8_t)n;
	} else {
		reply[SRB_STATUS_AT] = SRB_ERROR;
	}
	struct sv_channel *c = r->chan;
	count_io(c->sv, r);
	struct vdisk_queue *outer = c->reaping;
	if (r->lun) {
		c->reaping = vdisk_queue(r->lun->held.disk, c->index);
		lun_exit(r->lun); /* the target is done with it: after this it may go */
	}
	complete(r);
	c->reaping = outer;
}

/* The data buffer of a GPA-direct packet: page ranges between the packet descriptor and
 * the payload, each page translated through guest memory. Returns the iovec count or
 * -EINVAL for ranges that run past the descriptor, pages outside guest RAM, or more than
 * the largest transfer. */
static int map_buffer(struct storvsp *sv, const uint8_t *pkt, uint32_t data_offset,
		      struct iovec *iov)
{
	if (data_offset < GPA_RANGES_AT)
		return -EINVAL;
	uint32_t ranges = load_le32(pkt + 20), pos = GPA_RANGES_AT;
	if (!ranges || ranges > GPA_MAX_RANGES)
		return -EINVAL;
	const struct guest_mem *mem = vmbus_guest_mem(sv->vb);
	uint64_t total = 0;
	int n = 0;
	for (uint32_t i = 0; i < ranges; i++) {
		if (data_offset - pos < 8)
			return -EINVAL;
		uint32_t len = load_le32(pkt + pos), offset = load_le32(pkt + pos + 4);
		pos += 8;
		total += len;
		if (!len || offset >= VMBUS_PAGE_SIZE || total > STORVSP_MAX_TRANSFER_BYTES)
			return -EINVAL;
		uint64_t pages = div_round_up((uint64_t)offset + len, VMBUS_PAGE_SIZE);
		if ((data_offset - pos) / 8 < pages)
			return -EINVAL;
		for (uint64_t p = 0; p < pages; p++, pos += 8) {
			uint64_t pfn = load_le64(pkt + pos);
			uint32_t start = p ? 0 : offset;
			uint32_t chunk = (uint32_t)min_u64(len, VMBUS_PAGE_SIZE - start);
			if (pfn >= UINT64_MAX / VMBUS_PAGE_SIZE ||
			    guest_mem_iov(mem, pfn * VMBUS_PAGE_SIZE + start, chunk, iov, MAX_IOV,
					  &n))
				return -EINVAL;
			len -= chunk;
		}
	}
	return n;
}

/* The slot a request addresses (its SRB fields are in the reply), or NULL. */
static struct sv_lun *addressed_lun(struct storvsp *sv, const struct sv_request *r)
{
	uint8_t lun = r->reply[SRB_LUN_AT];
	if (r->reply[SRB_PATH_AT] || r->reply[SRB_TARGET_AT] || lun >= STORVSP_MAX_LUNS)
		return NULL;
	return &sv->luns[lun];
}

/* Runs a prepared SCSI request on its LUN's target, answers it for an absent LUN, or holds
 * it on the channel while the LUN is quiesced. */
static void start_srb(struct sv_channel *c, struct sv_request *r)
{
	struct storvsp *sv = c->sv;
	struct sv_lun *l = addressed_lun(sv, r);
	/* REPORT LUNS is the target's (path 0, target 0), whichever LUN it is sent to */
	if (r->cdb[0] == SCSI_OP_REPORT_LUNS) {
		uint16_t luns[STORVSP_MAX_LUNS];
		bool target0 = !r->reply[SRB_PATH_AT] && !r->reply[SRB_TARGET_AT];
		r->absent = !l || lun_state(l) != LUN_PRESENT;
		scsi_report_luns_execute(&r->req, luns, target0 ? listed_luns(sv, luns) : 0);
		return;
	}
	enum lun_state state = l ? lun_enter(l, 1u << LUN_PRESENT) : LUN_EMPTY;
	if (state == LUN_QUIESCED) {
		list_append(&c->held, &c->held_tail, r);
		return;
	}
	r->lun = state == LUN_PRESENT ? l : NULL;
	r->absent = !r->lun;
	if (!r->lun) {
		scsi_absent_lun_execute(&r->req);
		return;
	}
	uint64_t bit = 1ull << (l - sv->luns);
	if (!(c->unkicked & bit)) {
		c->unkicked |= bit;
		__atomic_fetch_add(&l->inflight, 1, __ATOMIC_SEQ_CST); /* until kick_queues */
	}
	scsi_target_execute(l->held.target, vdisk_queue(l->held.disk, c->index), &r->req);
}

/* Starts the commands held for quiesced LUNs, in order; those whose LUN is still quiesced
 * wait on, and those of a session that closed meanwhile are dropped unanswered. */
static void start_held(struct sv_channel *c, uint32_t session)
{
	struct sv_request *r = c->held;
	c->held = c->held_tail = NULL;
	while (r) {
		struct sv_request *next = r->next;
		if (r->session == session)
			start_srb(c, r);
		else
			request_put(r);
		r = next;
	}
}

static void execute_srb(struct sv_channel *c, struct sv_request *r,
			const struct vmbus_packet_info *info, const uint8_t *p, size_t len)
{
	struct storvsp *sv = c->sv;
	unsigned reply_len = __atomic_load_n(&sv->io_packet_len, __ATOMIC_ACQUIRE);
	if (!reply_len) {
		refuse(r, p, len, STATUS_INVALID_DEVICE_STATE);
		return;
	}
	unsigned cdb_len = p[SRB_CDB_LEN_AT];
	uint32_t xfer = load_le32(p + SRB_XFER_AT);
	int iovcnt = 0;
	if (info->type == VMBUS_PACKET_DATA_GPA_DIRECT)
		iovcnt = map_buffer(sv, c->packet, info->data_offset, r->iov);
	if (len < reply_len || !cdb_len || cdb_len > sizeof(r->cdb) ||
	    p[SRB_DATA_IN_AT] > SRB_DATA_IN_NONE || xfer > STORVSP_MAX_TRANSFER_BYTES ||
	    iovcnt < 0) {
		refuse(r, p, len, STATUS_INVALID_PARAMETER);
		return;
	}
	reply_init(r, p, len, reply_len, STATUS_SUCCESS);
	memset(r->cdb, 0, sizeof(r->cdb));
	memcpy(r->cdb, p + SRB_CDB_AT, cdb_len);
	r->req = (struct scsi_request){ .cdb = r->cdb,
					.cdb_len = cdb_len,
					.data_in = p[SRB_DATA_IN_AT] == SRB_DATA_IN_READ,
					.iov = r->iov,
					.iovcnt = iovcnt,
					.transfer_len = xfer,
					.done = srb_done };
	start_srb(c, r);
}

/* ---- packets ---- */

/* A LUN, adapter or bus reset: every target that is there (also a quiesced one) gets its
 * unit attention. */
static void reset_luns(struct storvsp *sv)
{
	const unsigned there = 1u << LUN_PRESENT | 1u << LUN_QUIESCED;
	for (unsigned i = 0; i < STORVSP_MAX_LUNS; i++) {
		struct sv_lun *l = &sv->luns[i];
		if (!(there & 1u << lun_enter(l, there)))
			continue;
		scsi_target_reset(l->held.target);
		lun_exit(l);
	}
}

static void handle_packet(struct sv_channel *c, struct sv_request *r,
			  const struct vmbus_packet_info *info, bool cut)
{
	const uint8_t *p = c->packet + info->data_offset;
	size_t len = cut ? 0 : info->len - info->data_offset;
	r->trans_id = info->trans_id;
	if (len < PACKET_LEN_OLD || (info->type != VMBUS_PACKET_DATA_INBAND &&
				     info->type != VMBUS_PACKET_DATA_GPA_DIRECT)) {
		refuse(r, p, min_u64(len, PACKET_LEN), STATUS_INVALID_PARAMETER);
		return;
	}
	uint32_t op = load_le32(p);
	switch (op) {
	case OP_EXECUTE_SRB:
		execute_srb(c, r, info, p, len);
		return;
	case OP_BEGIN_INITIALIZATION:
	case OP_QUERY_PROTOCOL_VERSION:
	case OP_QUERY_PROPERTIES:
	case OP_END_INITIALIZATION:
		handle_init(c, r, op, p, len);
		return;
	case OP_CREATE_SUB_CHANNELS:
		create_subchannels(c, r, p, len);
		return;
	case OP_RESET_LUN:
	case OP_RESET_ADAPTER:
	case OP_RESET_BUS:
		if (!__atomic_load_n(&c->sv->io_packet_len, __ATOMIC_ACQUIRE)) {
			refuse(r, p, len, STATUS_INVALID_DEVICE_STATE);
			return;
		}
		reset_luns(c->sv);
		reply_init(r, p, len, reply_len_for(c->sv, len), STATUS_SUCCESS);
		complete(r);
		return;
	}
	refuse(r, p, len, STATUS_INVALID_PARAMETER);
}

/* The unsolicited ENUMERATE_BUS / REMOVE_DEVICE, with transaction id 0. */
static void send_bus_notice(struct sv_channel *c, uint32_t session)
{
	struct storvsp *sv = c->sv;
	uint32_t op = __atomic_load_n(&sv->bus_notice, __ATOMIC_ACQUIRE);
	unsigned len = __atomic_load_n(&sv->io_packet_len, __ATOMIC_ACQUIRE);
	if (!op || !len)
		return;
	uint8_t pkt[PACKET_LEN] = { 0 };
	store_le32(pkt, op);
	struct iovec iov = { pkt, len };
	if (vmbus_channel_send(c->ch, session, VMBUS_PACKET_DATA_INBAND, 0, 0, &iov, 1) != -EAGAIN)
		__atomic_compare_exchange_n(&sv->bus_notice, &op, 0, false, __ATOMIC_ACQ_REL,
					    __ATOMIC_RELAXED);
}

/* Drains the ring while replies can go out and requests are free. Returns the packets
 * taken; sets *stalled when it stopped for lack of either. */
static unsigned drain(struct sv_channel *c, uint32_t session, bool *stalled)
{
	unsigned taken = 0;
	for (;;) {
		if (c->backlog || !request_available(c)) {
			*stalled = true;
			return taken;
		}
		struct vmbus_packet_info info;
		int ret = vmbus_channel_recv(c->ch, session, c->packet, sizeof(c->packet), &info);
		if (ret == 0)
			return taken;
		if (ret < 0 && ret != -EMSGSIZE) {
			*stalled = true; /* session over, or a corrupt ring: nothing more */
			return taken;
		}
		/* A bus change the host announced before the guest wrote this packet goes out
		 * before its reply: the packet's arrival makes that announcement visible. */
		if (c->index == 0)
			send_bus_notice(c, session);
		struct sv_request *r = request_get(c);
		r->session = session;
		taken++;
		handle_packet(c, r, &info, ret == -EMSGSIZE);
	}
}

static uint64_t monotonic_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

/* Before unmasking an idle ring, watches it for a moment: a guest refilling its queue after
 * a batch of completions adds its next request within microseconds, and finding it here
 * spares the guest's signal and this thread's wake-up. Yielding between looks lets a
 * vCPU that shares this CPU run meanwhile. */
static bool packets_soon(struct sv_channel *c, uint32_t session)
{
	uint64_t start = monotonic_ns(), now = start;
	while (now - start < c->idle_poll_ns) {
		if (vmbus_channel_has_packets(c->ch, session))
			return true;
		sched_yield();
		now = monotonic_ns();
	}
	c->unmasked_at = now;
	return false;
}

/* After an idle poll that found nothing, the next poll tells how long the guest took to
 * come back: within the maximum window the window grows to catch it next time, past it
 * the window shrinks (to 0 for a guest that is slow to come back: polling would only
 * burn CPU). */
static void adapt_idle_poll(struct sv_channel *c)
{
	if (!c->unmasked_at)
		return;
	uint64_t idle = monotonic_ns() - c->unmasked_at;
	c->unmasked_at = 0;
	if (idle > IDLE_POLL_MAX_NS)
		c->idle_poll_ns /= 2;
	else
		c->idle_poll_ns = (uint32_t)min_u64(
			max_u64(2ull * c->idle_poll_ns, IDLE_POLL_START_NS), IDLE_POLL_MAX_NS);
}

/* Hands what this poll queued to the kernel, once per queue: the channel's thread may
 * poll its queues only when their event fd fires, which requests never submitted cannot
 * make happen. The queue being reaped is left to its poll, which submits once after the
 * whole batch of completions rather than between their replies. */
static void kick_queues(struct sv_channel *c)
{
	for (uint64_t m = c->unkicked; m; m &= m - 1) {
		struct sv_lun *l = &c->sv->luns[__builtin_ctzll(m)];
		struct vdisk_queue *q = vdisk_queue(l->held.disk, c->index);
		if (q != c->reaping)
			vdisk_queue_kick(q);
		lun_exit(l);
	}
	c->unkicked = 0;
}

/* What storvsp_poll does (c->polling set). */
static unsigned serve(struct sv_channel *c)
{
	unsigned channel = c->index;
	__atomic_store_n(&c->kicked, false, __ATOMIC_RELEASE);
	c->starved = c->masked = false;
	adapt_idle_poll(c);
	flush_backlog(c);
	uint32_t session = vmbus_channel_session(c->ch);
	start_held(c, session);
	if (!session)
		return 0;
	if (channel == 0)
		send_bus_notice(c, session);
	unsigned taken = 0;
	bool stalled = false;
	for (;;) {
		vmbus_channel_begin_drain(c->ch, session);
		taken += drain(c, session, &stalled);
		/* While requests are in flight, their completions bring this thread back here:
		 * the ring stays masked until then, so the guest adds requests without
		 * signalling each first one after the host caught up. */
		if (__atomic_load_n(&c->inflight, __ATOMIC_RELAXED)) {
			c->masked = true;
			break;
		}
		if (!stalled && packets_soon(c, session))
			continue;
		if (!vmbus_channel_end_drain(c->ch, session) || stalled)
			break;
	}
	kick_queues(c);
	if (stalled && !c->backlog && !request_available(c))
		c->starved = true;
	return taken;
}

/* Polls from a completion, on the channel's thread (where its queues complete), instead of
 * waking that thread through the kick: it is already running. Inside a poll it must not
 * recurse; and past a budget it leaves the poll to the thread's event loop, so that a guest
 * that keeps queueing cannot hold the thread in one queue's completions for ever. */
static void poll_channel(struct sv_channel *c)
{
	if (c->polling || c->self_polled >= SELF_POLL_BUDGET) {
		kick(c);
		return;
	}
	c->polling = true;
	c->self_polled += serve(c);
	c->polling = false;
}

unsigned storvsp_poll(struct storvsp *sv, unsigned channel)
{
	if (channel >= sv->cfg.channels)
		return 0;
	struct sv_channel *c = &sv->chans[channel];
	c->self_polled = 0;
	c->polling = true;
	unsigned taken = serve(c);
	c->polling = false;
	return taken;
}

uint32_t storvsp_connection_id(struct storvsp *sv, unsigned channel)
{
	if (channel >= sv->cfg.channels)
		return 0;
	return VMBUS_CONNECTION_ID_CHANNELS + vmbus_channel_relid(sv->chans[channel].ch);
}

unsigned storvsp_inflight(struct storvsp *sv)
{
	unsigned n = 0;
	for (unsigned i = 0; i < sv->cfg.channels; i++)
		n += __atomic_load_n(&sv->chans[i].inflight, __ATOMIC_RELAXED);
	return n;
}

int storvsp_notify_luns_changed(struct storvsp *sv, bool removed)
{
	if (!__atomic_load_n(&sv->io_packet_len, __ATOMIC_ACQUIRE) ||
	    !vmbus_channel_session(sv->chans[0].ch))
		return -ENOTCONN;
	__atomic_store_n(&sv->bus_notice, removed ? OP_REMOVE_DEVICE : OP_ENUMERATE_BUS,
			 __ATOMIC_RELEASE);
	kick(&sv->chans[0]);
	return 0;
}

void storvsp_get_stats(struct storvsp *sv, struct storvsp_stats *out)
{
	pthread_mutex_lock(&sv->lock);
	*out = sv->stats;
	pthread_mutex_unlock(&sv->lock);
}

/* ---- LUNs at run time ---- */

static bool queues_enough(const struct storvsp_lun *l, unsigned channels)
{
	return l->disk && vdisk_queue_count(l->disk) >= channels;
}

/* Moves slot lun from state `from` to `to` under the LUN lock; -ENOENT when it is in
 * another state, which *seen gets. */
static int lun_change(struct storvsp *sv, unsigned lun, enum lun_state from, enum lun_state to,
		      enum lun_state *seen)
{
	if (lun >= STORVSP_MAX_LUNS)
		return -EINVAL;
	struct sv_lun *l = &sv->luns[lun];
	pthread_mutex_lock(&sv->lun_lock);
	*seen = lun_state(l);
	int ret = *seen == from ? 0 : -ENOENT;
	if (!ret)
		lun_set_state(l, to);
	pthread_mutex_unlock(&sv->lun_lock);
	return ret;
}

static void kick_all(struct storvsp *sv)
{
	for (unsigned i = 0; i < sv->cfg.channels; i++)
		kick(&sv->chans[i]);
}

int storvsp_attach_lun(struct storvsp *sv, unsigned lun, const struct storvsp_lun *l)
{
	if (lun >= STORVSP_MAX_LUNS || !l || !scsi_target_present(l->target) ||
	    !queues_enough(l, sv->cfg.channels))
		return -EINVAL;
	struct sv_lun *slot = &sv->luns[lun];
	pthread_mutex_lock(&sv->lun_lock);
	int ret = lun_state(slot) == LUN_EMPTY ? 0 : -EBUSY;
	if (!ret) {
		/* no command can reach an empty slot: its fields are ours until the state
		 * says otherwise */
		slot->held = *l;
		memset(&slot->stats, 0, sizeof(slot->stats));
		lun_set_state(slot, LUN_PRESENT);
	}
	pthread_mutex_unlock(&sv->lun_lock);
	return ret;
}

int storvsp_detach_lun(struct storvsp *sv, unsigned lun)
{
	if (lun >= STORVSP_MAX_LUNS)
		return -EINVAL;
	struct sv_lun *l = &sv->luns[lun];
	pthread_mutex_lock(&sv->lun_lock);
	enum lun_state state = lun_state(l);
	int ret = state == LUN_PRESENT || state == LUN_QUIESCED ? 0 : -ENOENT;
	if (!ret)
		lun_set_state(l, LUN_DETACHED);
	pthread_mutex_unlock(&sv->lun_lock);
	if (!ret && state == LUN_QUIESCED)
		kick_all(sv); /* the commands it held are answered: no LUN */
	return ret;
}

int storvsp_release_lun(struct storvsp *sv, unsigned lun, struct storvsp_lun *out)
{
	if (lun >= STORVSP_MAX_LUNS)
		return -EINVAL;
	struct sv_lun *l = &sv->luns[lun];
	pthread_mutex_lock(&sv->lun_lock);
	int ret = lun_state(l) != LUN_DETACHED			    ? -ENOENT
		  : __atomic_load_n(&l->inflight, __ATOMIC_SEQ_CST) ? -EBUSY
								    : 0;
	if (!ret) {
		*out = l->held;
		l->held = (struct storvsp_lun){ 0 };
		lun_set_state(l, LUN_EMPTY);
	}
	pthread_mutex_unlock(&sv->lun_lock);
	return ret;
}

int storvsp_quiesce_lun(struct storvsp *sv, unsigned lun)
{
	enum lun_state seen;
	int ret = lun_change(sv, lun, LUN_PRESENT, LUN_QUIESCED, &seen);
	return ret == -ENOENT && seen == LUN_QUIESCED ? -EBUSY : ret;
}

int storvsp_resume_lun(struct storvsp *sv, unsigned lun)
{
	enum lun_state seen;
	int ret = lun_change(sv, lun, LUN_QUIESCED, LUN_PRESENT, &seen);
	if (!ret)
		kick_all(sv); /* the held commands start */
	return ret;
}

unsigned storvsp_lun_inflight(struct storvsp *sv, unsigned lun)
{
	if (lun >= STORVSP_MAX_LUNS)
		return 0;
	return __atomic_load_n(&sv->luns[lun].inflight, __ATOMIC_SEQ_CST);
}

int storvsp_get_lun_stats(struct storvsp *sv, unsigned lun, struct storvsp_lun_stats *out)
{
	if (lun >= STORVSP_MAX_LUNS)
		return -EINVAL;
	struct sv_lun *l = &sv->luns[lun];
	pthread_mutex_lock(&sv->lun_lock);
	int ret = lun_state(l) == LUN_EMPTY ? -ENOENT : 0;
#define LOAD(field) __atomic_load_n(&l->stats.field, __ATOMIC_RELAXED)
	if (!ret)
		*out = (struct storvsp_lun_stats){ .reads = LOAD(reads),
						   .writes = LOAD(writes),
						   .read_bytes = LOAD(read_bytes),
						   .write_bytes = LOAD(write_bytes),
						   .flushes = LOAD(flushes),
						   .errors = LOAD(errors) };
#undef LOAD
	pthread_mutex_unlock(&sv->lun_lock);
	return ret;
}

/* ---- VMBus device callbacks ---- */

static void forget_initialization(struct storvsp *sv)
{
	pthread_mutex_lock(&sv->lock);
	sv->state = INIT_NONE;
	sv->protocol = 0;
	sv->subchannels = 0;
	__atomic_store_n(&sv->io_packet_len, 0, __ATOMIC_RELEASE);
	__atomic_store_n(&sv->bus_notice, 0, __ATOMIC_RELEASE);
	pthread_mutex_unlock(&sv->lock);
}

static int on_open(void *opaque, struct vmbus_channel *ch)
{
	struct storvsp *sv = opaque;
	unsigned index = vmbus_channel_index(ch);
	if (index >= sv->cfg.channels)
		return -EINVAL;
	if (index == 0)
		forget_initialization(sv); /* a new storvsc probe */
	return 0;
}

static void on_close(void *opaque, struct vmbus_channel *ch)
{
	struct storvsp *sv = opaque;
	if (vmbus_channel_index(ch) == 0)
		forget_initialization(sv);
	/* the channel's thread drops what it still holds for the session (-EPIPE) */
	kick(&sv->chans[vmbus_channel_index(ch)]);
}

static void on_notify(void *opaque, struct vmbus_channel *ch)
{
	struct storvsp *sv = opaque;
	kick(&sv->chans[vmbus_channel_index(ch)]);
}

static void on_reset(void *opaque)
{
	forget_initialization(opaque);
}

static const struct vmbus_device_ops device_ops = {
	.open = on_open,
	.close = on_close,
	.notify = on_notify,
	.reset = on_reset,
};

/* ---- creation ---- */

static bool config_valid(const struct storvsp_config *cfg)
{
	if (!cfg->kick || !cfg->channels || cfg->channels > STORVSP_MAX_CHANNELS)
		return false;
	for (unsigned i = 0; i < STORVSP_MAX_LUNS; i++) {
		const struct storvsp_lun *l = &cfg->luns[i];
		if (scsi_target_present(l->target) && !queues_enough(l, cfg->channels))
			return false;
	}
	return true;
}

/* A stable instance per controller number when the VMM gives none. */
static struct guid default_instance(unsigned controller)
{
	struct guid g = { { 0x5c, 0x1a, 0x7e, 0x3b, 0x9d, 0x24, 0x4f, 0x61, 0x8a, 0x0e, 0x48, 0x76,
			    0x73, 0x74, 0x00, 0x00 } };
	store_le16(g.bytes + 14, (uint16_t)controller);
	return g;
}

int storvsp_create(struct vmbus *vb, const struct storvsp_config *cfg, struct storvsp **out)
{
	if (!vb || !cfg || !config_valid(cfg))
		return -EINVAL;
	struct storvsp *sv = calloc(1, sizeof(*sv));
	struct sv_channel *chans = calloc(cfg->channels, sizeof(*chans));
	if (!sv || !chans) {
		free(sv);
		free(chans);
		return -ENOMEM;
	}
	sv->vb = vb;
	sv->cfg = *cfg;
	sv->chans = chans;
	pthread_mutex_init(&sv->lock, NULL);
	pthread_mutex_init(&sv->lun_lock, NULL);
	for (unsigned i = 0; i < STORVSP_MAX_LUNS; i++) {
		sv->luns[i].held = cfg->luns[i];
		if (scsi_target_present(cfg->luns[i].target))
			sv->luns[i].state = LUN_PRESENT;
	}
	memset(sv->cfg.luns, 0, sizeof(sv->cfg.luns)); /* the slots hold them from now on */
	struct vmbus_device_info info = { .class_id = storvsp_scsi_class,
					  .instance_id = cfg->instance,
					  .max_subchannels = cfg->channels - 1 };
	if (guid_is_zero(&info.instance_id))
		info.instance_id = default_instance(cfg->controller);
	for (unsigned i = 0; i < cfg->channels; i++)
		chans[i] = (struct sv_channel){ .sv = sv,
						.index = i,
						.idle_poll_ns = IDLE_POLL_MAX_NS };
	int ret = vmbus_device_add(vb, &info, &device_ops, sv, &sv->dev);
	if (ret) {
		pthread_mutex_destroy(&sv->lun_lock);
		pthread_mutex_destroy(&sv->lock);
		free(chans);
		free(sv);
		return ret;
	}
	for (unsigned i = 0; i < cfg->channels; i++)
		chans[i].ch = vmbus_device_channel(sv->dev, i);
	*out = sv;
	return 0;
}

static void free_list(struct sv_request *r)
{
	while (r) {
		struct sv_request *next = r->next;
		free(r);
		r = next;
	}
}

void storvsp_destroy(struct storvsp *sv)
{
	if (!sv)
		return;
	vmbus_device_remove(sv->vb, sv->dev);
	for (unsigned i = 0; i < sv->cfg.channels; i++) {
		struct sv_channel *c = &sv->chans[i];
		free_list(c->backlog);
		free_list(c->held);
		free_list(c->free);
	}
	pthread_mutex_destroy(&sv->lun_lock);
	pthread_mutex_destroy(&sv->lock);
	free(sv->chans);
	free(sv);
}
