/* A SCSI target as a transport holds it in a LUN slot: the target's state behind a small
 * ops table, so a disk (scsi_disk) and other device types with the same command shape sit
 * in the same slots and the transport never knows which it serves.
 *
 * The contract every implementation keeps:
 * - execute(impl, q, req) runs one command on queue q, owned by the calling thread, and
 *   calls req->done exactly once (inline, or later from vdisk_queue_poll on q). After done
 *   returns the target touches neither req nor, for that command, its own state: a
 *   transport may destroy the target as soon as the last done has run.
 * - reset and capacity_changed only queue a unit attention; any thread may call them while
 *   commands run.
 * - destroy frees the target; no command may be in flight. The image stays the caller's.
 */
#ifndef HV_SCSI_TARGET_H
#define HV_SCSI_TARGET_H

#include <stdbool.h>

#include "scsi_cdrom.h"
#include "scsi_disk.h"

struct scsi_target_ops {
	void (*execute)(void *impl, struct vdisk_queue *q, struct scsi_request *req);
	void (*reset)(void *impl);
	void (*capacity_changed)(void *impl);
	void (*destroy)(void *impl);
};

/* A target by value: ops NULL means "no target". */
struct scsi_target {
	const struct scsi_target_ops *ops;
	void *impl;
};

static inline bool scsi_target_present(struct scsi_target t)
{
	return t.ops != NULL;
}

static inline void scsi_target_execute(struct scsi_target t, struct vdisk_queue *q,
				       struct scsi_request *req)
{
	t.ops->execute(t.impl, q, req);
}

static inline void scsi_target_reset(struct scsi_target t)
{
	t.ops->reset(t.impl);
}

static inline void scsi_target_capacity_changed(struct scsi_target t)
{
	t.ops->capacity_changed(t.impl);
}

/* Destroys the target if there is one. */
static inline void scsi_target_destroy(struct scsi_target t)
{
	if (t.ops)
		t.ops->destroy(t.impl);
}

/* ---- scsi_disk as a target ---- */

static inline void scsi_target_disk_execute(void *impl, struct vdisk_queue *q,
					    struct scsi_request *req)
{
	scsi_disk_execute(impl, q, req);
}

static inline void scsi_target_disk_reset(void *impl)
{
	scsi_disk_reset(impl);
}

static inline void scsi_target_disk_capacity_changed(void *impl)
{
	scsi_disk_capacity_changed(impl);
}

static inline void scsi_target_disk_destroy(void *impl)
{
	scsi_disk_destroy(impl);
}

/* The disk d as a target (NULL: no target). */
static inline struct scsi_target scsi_target_of_disk(struct scsi_disk *d)
{
	static const struct scsi_target_ops disk_ops = {
		.execute = scsi_target_disk_execute,
		.reset = scsi_target_disk_reset,
		.capacity_changed = scsi_target_disk_capacity_changed,
		.destroy = scsi_target_disk_destroy,
	};
	return (struct scsi_target){ d ? &disk_ops : NULL, d };
}

/* ---- scsi_cdrom as a target ---- */

/* The queue a transport hands over is that of the LUN's image, the medium the drive was
 * created with: a transport using this wrapper changes no medium while the LUN is there. */
static inline void scsi_target_cdrom_execute(void *impl, struct vdisk_queue *q,
					     struct scsi_request *req)
{
	scsi_cdrom_execute(impl, q, req);
}

static inline void scsi_target_cdrom_reset(void *impl)
{
	scsi_cdrom_reset(impl);
}

static inline void scsi_target_cdrom_capacity_changed(void *impl)
{
	(void)impl; /* a medium's size does not change under the drive */
}

static inline void scsi_target_cdrom_destroy(void *impl)
{
	scsi_cdrom_destroy(impl);
}

/* The DVD drive cd as a target (NULL: no target). */
static inline struct scsi_target scsi_target_of_cdrom(struct scsi_cdrom *cd)
{
	static const struct scsi_target_ops cdrom_ops = {
		.execute = scsi_target_cdrom_execute,
		.reset = scsi_target_cdrom_reset,
		.capacity_changed = scsi_target_cdrom_capacity_changed,
		.destroy = scsi_target_cdrom_destroy,
	};
	return (struct scsi_target){ cd ? &cdrom_ops : NULL, cd };
}

#endif
