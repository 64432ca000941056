/* storvsp: the Hyper-V synthetic SCSI controller, served over VMBus to the guest's
 * storvsc (Linux hv_storvsc). One controller is one VMBus device with up to 64 LUNs of
 * scsi_disk targets at path 0, target 0.
 *
 * Protocol: on the primary channel BEGIN_INITIALIZATION, QUERY_PROTOCOL_VERSION (2.0,
 * 4.2, 5.1, 6.0 and 6.2 accepted, others refused with REVISION_MISMATCH), QUERY_PROPERTIES
 * (multi-channel with channels - 1 sub-channels, max_transfer_bytes),
 * END_INITIALIZATION, then CREATE_SUB_CHANNELS. EXECUTE_SRB packets (in-band, or
 * GPA-direct with the data buffer as page ranges) are translated to host iovecs through
 * guest_mem and executed by the LUN's scsi_disk; COMPLETE_IO carries SRB and SCSI
 * status, sense and the bytes moved. Packets are 64 bytes from protocol 5.1 on and 48
 * before; during initialization replies match the request's size.
 *
 * Threads: channel c (0: primary, 1..: sub-channels) is served by one thread, the one that
 * polls queue c of every LUN's vdisk: it calls storvsp_poll(sv, c) when the kick callback
 * asked for it, and runs vdisk_queue_poll on those queues, where the channel's I/O
 * completes. The kick callback comes from vCPU threads (the guest's signal) and from the
 * storvsp itself; it only has to wake that thread. A single-threaded VMM may serve every
 * channel from one loop.
 *
 * Untrusted input: packets with bad lengths, unknown operations, out-of-order
 * initialization, PFN arrays past the packet, pages outside guest RAM and transfers past
 * the limits are answered with a failure status (STATUS_INVALID_PARAMETER and
 * SRB_STATUS_INVALID_REQUEST for EXECUTE_SRB); a corrupt ring stops that channel.
 */
#ifndef HV_STORVSP_H
#define HV_STORVSP_H

#include <stdbool.h>
#include <stdint.h>

#include "guid.h"
#include "vmbus.h"

struct scsi_disk;
struct vdisk;
struct storvsp;

#define STORVSP_MAX_LUNS	   64
#define STORVSP_MAX_CHANNELS	   64	      /* primary + 63 sub-channels */
#define STORVSP_MAX_TRANSFER_BYTES (1u << 20) /* QUERY_PROPERTIES: the largest request */

/* The SCSI controller interface type (class GUID) storvsc binds to. */
extern const struct guid storvsp_scsi_class;

struct storvsp_lun {
	struct scsi_disk *target; /* NULL: no LUN here */
	struct vdisk *disk;	  /* the target's image: queue c serves channel c */
};

struct storvsp_config {
	unsigned controller;  /* SCSI controller number */
	struct guid instance; /* the VMBus instance; all zero: derived from controller */
	unsigned channels;    /* 1..STORVSP_MAX_CHANNELS; every LUN's disk has that many queues */
	struct storvsp_lun luns[STORVSP_MAX_LUNS];
	/* Channel c has work: call storvsp_poll(sv, c) soon on its thread. */
	void (*kick)(void *opaque, unsigned channel);
	void *kick_opaque;
};

/* Registers the controller on the VMBus host (offered with the others, or at once when
 * the guest already asked for offers). Returns 0, -EINVAL (bad channel count, a LUN
 * without its disk, a disk with fewer queues than channels, no kick) or -ENOMEM. */
int storvsp_create(struct vmbus *vb, const struct storvsp_config *cfg, struct storvsp **out);
/* Unregisters; every request must have completed (storvsp_inflight() == 0: stop the
 * VMBus host, then poll the queues until then). */
void storvsp_destroy(struct storvsp *sv);

/* On channel c's thread: takes what the guest queued on that channel (as much as the
 * ring and the request pool allow), starts it on queue c, and sends completions that
 * waited for room. Returns the packets taken. */
unsigned storvsp_poll(struct storvsp *sv, unsigned channel);

/* Requests started and not yet completed, over every channel. */
unsigned storvsp_inflight(struct storvsp *sv);

/* Tells the guest the set of LUNs changed (hot-plug): an unsolicited ENUMERATE_BUS, or
 * REMOVE_DEVICE when removed, on the primary channel; the guest rescans. Any thread.
 * Returns 0 or -ENOTCONN when the guest has no initialized channel. */
int storvsp_notify_luns_changed(struct storvsp *sv, bool removed);

struct storvsp_stats {
	uint64_t requests;	/* EXECUTE_SRB executed */
	uint64_t reads, writes; /* READ / WRITE commands that moved data */
	uint64_t read_bytes, write_bytes;
	uint64_t flushes;     /* SYNCHRONIZE CACHE */
	uint64_t errors;      /* SRB status other than success */
	uint64_t bad_packets; /* refused with a failure status */
	uint64_t ring_full;   /* completions that waited for room in the guest's ring */
	uint16_t protocol;    /* negotiated (major << 8 | minor), 0 before */
	unsigned subchannels; /* offered to the guest */
};
void storvsp_get_stats(struct storvsp *sv, struct storvsp_stats *out);

#endif
