/* Merging a differencing chain (like Hyper-V's Merge-VHD): what the child and the images
 * between it and an ancestor hold is copied into the ancestor, then they are removed. And
 * flattening a chain into a new image.
 *
 * Crash safety comes from the order: the ancestor is written and flushed before anything
 * is removed, and the child still holds every range that was copied, so until it is
 * removed the chain reads as before. A merge that stopped half way (a power cut, an I/O
 * error) leaves the child over an ancestor whose identity may have changed (VHDX renews
 * the DataWriteGuid on the first write): the same merge run again with
 * allow_parent_mismatch finishes it.
 */
#ifndef HV_STORAGE_MERGE_H
#define HV_STORAGE_MERGE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "copy.h"
#include "vdisk.h"

struct vdisk_merge_options {
	const char *ancestor;	    /* the image to merge into; NULL: the child's parent */
	bool allow_parent_mismatch; /* finishing an interrupted merge */
	vdisk_progress_fn progress; /* bytes of the child done out of its size */
	void *opaque;
	struct vdisk_copy_stats *stats; /* filled in when not NULL */
};

/* The chain as the merge sees it. */
struct vdisk_merge_plan {
	unsigned depth; /* the ancestor is this many images below the child (1: the parent) */
	char **paths;	/* [0] the child .. [depth - 1]: removed; [depth]: the ancestor */
	uint64_t child_size;
	uint64_t ancestor_size;
};

/* Opens the chain read-only and finds the ancestor in it; refuses a child that is not a
 * differencing image, an ancestor that is not in its chain or is smaller than the child,
 * and a chain whose parent identities do not match (unless allow_parent_mismatch; the
 * reason then says how to finish an interrupted merge). Returns 0 or -errno with a reason
 * in err. Release the plan with vdisk_merge_plan_free. */
int vdisk_merge_prepare(const char *child, const struct vdisk_merge_options *o,
			struct vdisk_merge_plan *plan, char *err, size_t err_size);
/* Copies into the ancestor what the images above it hold (zeros where they hold zeros),
 * flushes and closes it. Nothing is removed. */
int vdisk_merge_copy(const struct vdisk_merge_plan *plan, const struct vdisk_merge_options *o,
		     char *err, size_t err_size);
/* Removes the merged images (each under an exclusive lock: an image in use is not removed)
 * and syncs their directories. */
int vdisk_merge_remove(const struct vdisk_merge_plan *plan, char *err, size_t err_size);
void vdisk_merge_plan_free(struct vdisk_merge_plan *plan);

/* The three steps; plan says afterwards what was merged and removed. */
int vdisk_merge(const char *child, const struct vdisk_merge_options *o,
		struct vdisk_merge_plan *plan, char *err, size_t err_size);

/* Writes what the chain of child reads into a new image at target, of format (NULL: the
 * child's) and the child's size; the chain is not changed. A failed flatten removes the
 * new file. */
int vdisk_flatten(const char *child, const char *target, const char *format,
		  const struct vdisk_merge_options *o, char *err, size_t err_size);

#endif
