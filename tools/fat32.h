/* A FAT32 formatter for EFI System Partitions: boot sector, FSInfo, their backups, two
 * FATs and an empty root directory cluster (Microsoft's FAT specification, fatgen103). */
#ifndef HV_TOOLS_FAT32_H
#define HV_TOOLS_FAT32_H

#include <stddef.h>
#include <stdint.h>

#include "vdisk.h"

#define FAT32_MIN_CLUSTERS 65525u /* fewer clusters make it FAT16, whatever it says */

struct fat32_layout {
	uint32_t sector_size;
	uint32_t sectors_per_cluster;
	uint32_t reserved_sectors;
	uint32_t fat_sectors; /* of each of the two FATs */
	uint32_t clusters;
	uint32_t total_sectors;
};

/* Chooses the cluster size for a volume of `sectors` sectors (as Windows does: 512-byte
 * clusters up to 260 MiB, then 4 KiB, ... never smaller than a sector) and lays it out.
 * Returns 0, or -EINVAL with the reason (and the smallest size that works) in err. */
int fat32_plan(uint64_t sectors, uint32_t sector_size, struct fat32_layout *out, char *err,
	       size_t err_size);

/* Writes the file system at LBA first_lba of disk (the partition's start, which the boot
 * sector records as its hidden sectors). progress may be NULL. Returns 0 or -errno. */
int fat32_format(struct vdisk *disk, uint64_t first_lba, const struct fat32_layout *l,
		 vdisk_progress_fn progress, void *opaque);

#endif
