/* Resize of a VHDX image. */
#include <errno.h>
#include <stdio.h>

#include "vhdx_internal.h"

int vhdx_resize(struct vdisk *disk, uint64_t new_size, char *err, size_t err_size)
{
	(void)disk;
	(void)new_size;
	snprintf(err, err_size, "resize is not implemented for VHDX");
	return -ENOTSUP;
}
