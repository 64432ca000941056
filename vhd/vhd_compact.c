/* Compaction of a VHD image. */
#include <errno.h>
#include <stdio.h>

#include "vhd_internal.h"

int vhd_compact(struct vdisk *disk, vdisk_progress_fn progress, void *opaque,
		 struct vdisk_compact_result *result, char *err, size_t err_size)
{
	(void)disk;
	(void)progress;
	(void)opaque;
	(void)result;
	snprintf(err, err_size, "compact is not implemented for VHD");
	return -ENOTSUP;
}
