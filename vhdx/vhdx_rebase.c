/* Rebase of a differencing VHDX image: a new parent locator. */
#include <errno.h>
#include <stdio.h>

#include "vhdx_internal.h"

int vhdx_set_parent(struct vdisk *disk, const char *parent_path, unsigned flags, char *err,
		    size_t err_size)
{
	(void)disk;
	(void)parent_path;
	(void)flags;
	snprintf(err, err_size, "rebase is not implemented for VHDX");
	return -ENOTSUP;
}
