/* storvsp: the Hyper-V synthetic SCSI controller, served over VMBus to the guest's
 * storvsc (Linux hv_storvsc). One controller is one VMBus device with up to 64 LUNs at
 * path 0, target 0, each holding a SCSI target (scsi_target.h: a scsi_disk, or another
 * device type with the same command shape).
 *
 * Protocol: on the primary channel BEGIN_INITIALIZATION, QUERY_PROTOCOL_VERSION (2.0,
 * 4.2, 5.1, 6.0 and 6.2 accepted, others refused with REVISION_MISMATCH), QUERY_PROPERTIES
 * (multi-channel with channels - 1 sub-channels, max_transfer_bytes),
 * END_INITIALIZATION, then CREATE_SUB_CHANNELS. EXECUTE_SRB packets (in-band, or
 * GPA-direct with the data buffer as page ranges) are translated to host iovecs through
 * guest_mem and executed by the LUN's target; COMPLETE_IO carries SRB and SCSI
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
 * LUNs change while the channels run (hot-plug): storvsp_attach_lun fills an empty slot;
 * storvsp_detach_lun makes a LUN absent to new commands, and storvsp_release_lun hands its
 * target and image back once the commands it had started have completed. A quiesced LUN
 * (storvsp_quiesce_lun) holds new commands on their channels until it is resumed, so the
 * host can change its image (resize) with nothing running on it. Each change is followed
 * by storvsp_notify_luns_changed, which makes the guest rescan.
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
#include "scsi_target.h"
#include "vmbus.h"

struct vdisk;
struct storvsp;

#define STORVSP_MAX_LUNS	   64
#define STORVSP_MAX_CHANNELS	   64	      /* primary + 63 sub-channels */
#define STORVSP_MAX_TRANSFER_BYTES (1u << 20) /* QUERY_PROPERTIES: the largest request */

/* The SCSI controller interface type (class GUID) storvsc binds to. */
extern const struct guid storvsp_scsi_class;

struct storvsp_lun {
	struct scsi_target target; /* ops NULL: no LUN here */
	struct vdisk *disk;	   /* the target's image: queue c serves channel c */
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

/* The connection id the guest signals channel c on (HvSignalEvent): the VMM may turn it
 * into a write to the channel's eventfd (KVM_HYPERV_EVENTFD), which then stands for the
 * kick the VMBus host would give. Stable for the controller's life; 0 for a bad channel. */
uint32_t storvsp_connection_id(struct storvsp *sv, unsigned channel);

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

/* ---- LUNs at run time; any thread, one change at a time per LUN ---- */

/* Puts lun->target (serving lun->disk, which has a queue per channel) in the empty slot
 * number lun; commands see it from then on. Returns 0, -EINVAL (lun past
 * STORVSP_MAX_LUNS, no target or disk, too few queues) or -EBUSY (the slot holds a LUN, or
 * one whose release is not done). */
int storvsp_attach_lun(struct storvsp *sv, unsigned lun, const struct storvsp_lun *l);

/* Hot-remove, first step: from now on commands to lun find no LUN there (INQUIRY answers
 * 7Fh, other commands LOGICAL UNIT NOT SUPPORTED), also those a quiesce held. Commands
 * already started go on. Returns 0, -EINVAL or -ENOENT (no LUN there). */
int storvsp_detach_lun(struct storvsp *sv, unsigned lun);
/* Second step: once the last command the detached LUN had started has completed, empties
 * the slot and hands back what it held in *out (the caller destroys the target, then may
 * close the image). -EBUSY while commands are in flight (poll the queues, call again),
 * -ENOENT when lun is not detached. */
int storvsp_release_lun(struct storvsp *sv, unsigned lun, struct storvsp_lun *out);

/* New commands to lun wait on their channel (answered once resumed, in order) while
 * commands already started go on; once storvsp_lun_inflight() is 0 no channel touches the
 * LUN's target or image until storvsp_resume_lun. Returns 0, -EINVAL, -ENOENT (no LUN
 * there) or -EBUSY (already quiesced). */
int storvsp_quiesce_lun(struct storvsp *sv, unsigned lun);
/* Lets a quiesced LUN take commands again; the held ones start. 0, -EINVAL or -ENOENT
 * (not quiesced). */
int storvsp_resume_lun(struct storvsp *sv, unsigned lun);
/* Commands of lun's target started and not yet completed (0 for a bad lun). */
unsigned storvsp_lun_inflight(struct storvsp *sv, unsigned lun);

/* What a LUN's target did since it was attached: commands it completed with SRB success,
 * by kind, and those it failed. */
struct storvsp_lun_stats {
	uint64_t reads, writes; /* READ / WRITE commands that moved data */
	uint64_t read_bytes, write_bytes;
	uint64_t flushes; /* SYNCHRONIZE CACHE */
	uint64_t errors;  /* completed with an SRB status other than success */
};
/* Returns 0, or -EINVAL / -ENOENT (no LUN there). */
int storvsp_get_lun_stats(struct storvsp *sv, unsigned lun, struct storvsp_lun_stats *out);

#endif
