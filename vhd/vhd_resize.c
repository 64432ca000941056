/* Resize of a VHD image. */
#include <errno.h>
#include <stdio.h>

#include "vhd_internal.h"

int vhd_resize(struct vdisk *disk, uint64_t new_size, char *err, size_t err_size)
{
	(void)disk;
	(void)new_size;
	snprintf(err, err_size, "resize is not implemented for VHD");
	return -ENOTSUP;
}
