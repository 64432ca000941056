/* The copy engine: moves a virtual disk's contents into another disk through the
 * asynchronous request API, with several requests in flight, and compares two disks the
 * same way. Used by vdisk convert, compare and merge.
 *
 * Both work from the block status of the source's chain, so ranges that read as zeros
 * are never read, and run on queue 0 of each disk from the calling thread (which must own
 * those queues). Two disks of one chain share their queues; that is allowed.
 */
#ifndef HV_STORAGE_COPY_H
#define HV_STORAGE_COPY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "vdisk.h"

/* What a copy did, in bytes of the virtual disk. */
struct vdisk_copy_stats {
	uint64_t bytes_read;	/* read from the source */
	uint64_t bytes_written; /* data written to the target */
	uint64_t bytes_zeroed;	/* made zero in the target with vdisk_write_zeroes */
	uint64_t bytes_skipped; /* not written at all (zero on a zero target, or not held
				 * by the layers asked for) */
};

struct vdisk_copy_options {
	unsigned depth; /* requests in flight (0: VDISK_COPY_DEFAULT_DEPTH) */
	uint32_t chunk; /* bytes per request, a multiple of 4096 (0: VDISK_COPY_DEFAULT_CHUNK) */
	/* The target reads as zeros (a fresh image): ranges that read as zeros in the source
	 * are not written at all. Otherwise they are written with vdisk_write_zeroes. */
	bool target_is_zero;
	/* Copy only the ranges held (block status DATA or ZERO) by the top `layers` images of
	 * the source's chain; 0: every range, as the whole chain reads. */
	unsigned layers;
	vdisk_progress_fn progress; /* bytes of the source done out of its size; may be NULL */
	void *opaque;
	struct vdisk_copy_stats *stats; /* filled in when not NULL */
};

/* Measured with bench/convert.sh: beyond these, a busy host disk gains nothing. */
#define VDISK_COPY_DEFAULT_DEPTH 8
#define VDISK_COPY_DEFAULT_CHUNK (1u << 20)

/* Copies [0, vdisk_size(src)) of src into dst (at least as large), then flushes dst.
 * Returns 0 or -errno with a one-line reason in err naming the side that failed and the
 * offset. On error the part of dst already written is left as it is. */
int vdisk_copy(struct vdisk *src, struct vdisk *dst, const struct vdisk_copy_options *o, char *err,
	       size_t err_size);

struct vdisk_compare_options {
	unsigned depth; /* 0: VDISK_COPY_DEFAULT_DEPTH */
	uint32_t chunk; /* 0: VDISK_COPY_DEFAULT_CHUNK */
	/* Disks of different sizes differ. Otherwise, like qemu-img compare, the common part
	 * is compared and the rest of the larger disk must read as zeros. */
	bool strict;
	vdisk_progress_fn progress; /* bytes done out of the larger size */
	void *opaque;
};

/* Compares the contents of a and b. Returns 0 when identical, 1 when they differ (with
 * the first differing byte's offset in *first_difference; the smaller size when --strict
 * finds the sizes differ), or -errno with a reason in err. */
int vdisk_compare(struct vdisk *a, struct vdisk *b, const struct vdisk_compare_options *o,
		  uint64_t *first_difference, char *err, size_t err_size);

/* Where [offset, offset + length) of a chain comes from. Fills ext with one extent
 * starting at offset (possibly shorter than asked): flags as the chain reads it (DATA:
 * stored in some image; ZERO: reads as zeros; neither: not held by the layers asked for)
 * and *depth, the image that holds it (0: disk itself, 1: its parent, ...) or -1 when none
 * does (past the end of a smaller parent, or not held by the top `layers` images; 0: all).
 * -ENODATA when a differencing image's parent is not open (no_backing) and the range
 * falls through to it. */
int vdisk_chain_status(struct vdisk *disk, uint64_t offset, uint64_t length, unsigned layers,
		       struct vdisk_extent *ext, int *depth);

#endif
