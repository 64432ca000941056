/* Rebase of a differencing VHD image: a new parent locator. */
#include <errno.h>
#include <stdio.h>

#include "vhd_internal.h"

int vhd_set_parent(struct vdisk *disk, const char *parent_path, unsigned flags, char *err,
		    size_t err_size)
{
	(void)disk;
	(void)parent_path;
	(void)flags;
	snprintf(err, err_size, "rebase is not implemented for VHD");
	return -ENOTSUP;
}
