/* The synthetic SCSI controllers of `vmm run`: the VMBus host on the VM's Hyper-V SynIC,
 * one storvsp per controller with its LUNs, and one I/O thread per VMBus channel (channel
 * c polls queue c of every LUN's image, where that channel's requests complete).
 *
 * LUNs change while the VM runs (the control socket's scsi-add, scsi-remove and
 * block-resize): the calls below come from one thread at a time (the control server's),
 * never from a channel thread, and may wait up to VMM_SCSI_DRAIN_MS for the LUN's requests
 * in flight.
 */
#ifndef HV_VMM_RUN_SCSI_H
#define HV_VMM_RUN_SCSI_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "storvsp.h"
#include "vmbus.h"

struct vm;
struct vdisk;
struct vmm_scsi;
struct storvsp_lun_stats;

#define VMM_SCSI_DRAIN_MS 5000 /* how long a change waits for requests in flight */

/* One disk on a SCSI controller; the image has at least `channels` queues. */
struct vmm_scsi_disk {
	unsigned controller, lun;
	struct vdisk *disk; /* a disk, or the medium of a DVD drive */
	bool dvd;	    /* a DVD-ROM drive (MMC) with disk as its medium */
};

/* Builds the VMBus host and the controllers (channels per controller: the vCPU count) and
 * starts their threads: one controller per number the disks name, plus each number whose
 * bit is set in extra_controllers (controllers that start empty). The VM must have a
 * Hyper-V interface. Returns 0 or -errno with a sentence in err. */
int vmm_scsi_create(struct vm *vm, const struct vmm_scsi_disk *disks, unsigned ndisks,
		    unsigned extra_controllers, unsigned channels, struct vmm_scsi **out, char *err,
		    size_t err_size);
/* After the vCPUs stopped: stops the host, completes what is in flight, frees everything.
 * The images stay open (they are the caller's). */
void vmm_scsi_destroy(struct vmm_scsi *s);
/* A VM reset hook: every channel closes and the host waits for the guest to connect. */
void vmm_scsi_reset(void *opaque);

/* Whether controller:lun can take a disk: 0, -ENODEV (no such controller; also with s
 * NULL), -EINVAL (lun out of range), -EEXIST (the LUN holds a disk) or -EBUSY (the LUN's
 * removal has not finished), with a sentence in err. */
int vmm_scsi_lun_free(struct vmm_scsi *s, unsigned controller, unsigned lun, char *err,
		      size_t err_size);
/* Hot-add: serves d->disk at d->controller:d->lun and tells the guest to rescan. Returns 0,
 * an error of vmm_scsi_lun_free, or another -errno, with a sentence in err. The image stays
 * the caller's; on success it must stay open until it is detached. s may be NULL (no
 * controllers) in these calls. */
int vmm_scsi_attach(struct vmm_scsi *s, const struct vmm_scsi_disk *d, char *err, size_t err_size);
/* Hot-remove: the LUN is absent to the guest at once (which is told to rescan); once its
 * requests in flight have completed the image is handed back in *disk, no longer used by
 * any thread. Returns 0, -ENODEV (no disk there) or -ETIMEDOUT (requests still in flight
 * after VMM_SCSI_DRAIN_MS: the LUN stays absent, call again to finish), with a sentence
 * in err. */
int vmm_scsi_detach(struct vmm_scsi *s, unsigned controller, unsigned lun, struct vdisk **disk,
		    char *err, size_t err_size);
/* Grows the LUN's image to size bytes while the VM runs; the guest's next command to it
 * gets UNIT ATTENTION, CAPACITY DATA HAS CHANGED. Returns 0, -ENODEV, -EINVAL (smaller
 * than the image: shrinking is refused), -ETIMEDOUT or the image's error, with a sentence
 * in err. */
int vmm_scsi_resize(struct vmm_scsi *s, unsigned controller, unsigned lun, uint64_t size, char *err,
		    size_t err_size);
/* The LUN's I/O counters since it was attached: 0 or -ENODEV. */
/* What the guest negotiated and the host counted: the VMBus host's counters, and per
 * controller (up to max, in out) its number and storvsp's counters. Returns how many. */
struct vmm_scsi_controller_stats {
	unsigned controller;
	struct storvsp_stats stats;
};
unsigned vmm_scsi_bus_stats(struct vmm_scsi *s, struct vmbus_stats *bus,
			    struct vmm_scsi_controller_stats *out, unsigned max);

int vmm_scsi_get_stats(struct vmm_scsi *s, unsigned controller, unsigned lun,
		       struct storvsp_lun_stats *out);

#endif
