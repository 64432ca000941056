/* The synthetic SCSI controllers of `vmm run`: the VMBus host on the VM's Hyper-V SynIC,
 * one storvsp per controller with its LUNs, and one I/O thread per VMBus channel (channel
 * c polls queue c of every LUN's image, where that channel's requests complete).
 */
#ifndef HV_VMM_RUN_SCSI_H
#define HV_VMM_RUN_SCSI_H

#include <stddef.h>

struct vm;
struct vdisk;
struct vmm_scsi;

/* One disk on a SCSI controller; the image has at least `channels` queues. */
struct vmm_scsi_disk {
	unsigned controller, lun;
	struct vdisk *disk;
};

/* Builds the VMBus host and the controllers (channels per controller: the vCPU count) and
 * starts their threads. The VM must have a Hyper-V interface. Returns 0 or -errno with a
 * sentence in err. */
int vmm_scsi_create(struct vm *vm, const struct vmm_scsi_disk *disks, unsigned ndisks,
		    unsigned channels, struct vmm_scsi **out, char *err, size_t err_size);
/* After the vCPUs stopped: stops the host, completes what is in flight, frees everything.
 * The images stay open (they are the caller's). */
void vmm_scsi_destroy(struct vmm_scsi *s);
/* A VM reset hook: every channel closes and the host waits for the guest to connect. */
void vmm_scsi_reset(void *opaque);

#endif
