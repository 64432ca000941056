#include "fat32.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>

#include "endian.h"

#define RESERVED_SECTORS   32 /* what Windows and mkfs.fat use; room for the backups */
#define FSINFO_SECTOR	   1
#define BACKUP_BOOT_SECTOR 6
#define FAT32_MAX_CLUSTERS 0x0FFFFFF5u /* cluster numbers 2..0x0FFFFFF6 */
#define MEDIA_FIXED_DISK   0xF8
#define ZERO_CHUNK	   (1u << 20)

#define MIB (1ull << 20)
#define GIB (1ull << 30)

/* Microsoft's default cluster sizes for FAT32 volumes. */
static uint32_t default_cluster_bytes(uint64_t volume_bytes)
{
	if (volume_bytes <= 260 * MIB)
		return 512;
	if (volume_bytes <= 8 * GIB)
		return 4096;
	if (volume_bytes <= 16 * GIB)
		return 8192;
	if (volume_bytes <= 32 * GIB)
		return 16384;
	return 32768;
}

static uint64_t div_up(uint64_t a, uint64_t b)
{
	return (a + b - 1) / b;
}

/* FAT sectors for up to `clusters` clusters (plus the two reserved entries). */
static uint64_t fat_sectors_for(uint64_t clusters, uint32_t sector_size)
{
	return div_up((clusters + 2) * 4, sector_size);
}

int fat32_plan(uint64_t sectors, uint32_t sector_size, struct fat32_layout *out, char *err,
	       size_t err_size)
{
	if (sectors > UINT32_MAX) {
		snprintf(
			err, err_size,
			"the size is too large for FAT32 with %u-byte sectors (at most %llu bytes)",
			sector_size, (unsigned long long)UINT32_MAX * sector_size);
		return -EINVAL;
	}
	uint64_t bytes = sectors * sector_size;
	uint32_t cluster = default_cluster_bytes(bytes);
	if (cluster < sector_size)
		cluster = sector_size;
	uint32_t spc = cluster / sector_size;
	/* A FAT big enough for every cluster the space could hold: slightly generous. */
	uint64_t fat = sectors > RESERVED_SECTORS
			       ? fat_sectors_for((sectors - RESERVED_SECTORS) / spc, sector_size)
			       : 0;
	uint64_t meta = RESERVED_SECTORS + 2 * fat;
	uint64_t clusters = sectors > meta ? (sectors - meta) / spc : 0;
	if (clusters < FAT32_MIN_CLUSTERS) {
		/* With one sector per cluster, the smallest clusters there are. */
		uint64_t min_sectors = RESERVED_SECTORS +
				       2 * fat_sectors_for(FAT32_MIN_CLUSTERS, sector_size) +
				       FAT32_MIN_CLUSTERS;
		snprintf(err, err_size,
			 "%llu bytes is too small for FAT32 with %u-byte sectors: it needs %u "
			 "clusters, at least %llu MiB",
			 (unsigned long long)bytes, sector_size, FAT32_MIN_CLUSTERS,
			 (unsigned long long)div_up(min_sectors * sector_size, MIB));
		return -EINVAL;
	}
	if (clusters > FAT32_MAX_CLUSTERS) {
		snprintf(err, err_size, "%llu bytes is too large for FAT32",
			 (unsigned long long)bytes);
		return -EINVAL;
	}
	*out = (struct fat32_layout){ .sector_size = sector_size,
				      .sectors_per_cluster = spc,
				      .reserved_sectors = RESERVED_SECTORS,
				      .fat_sectors = (uint32_t)fat,
				      .clusters = (uint32_t)clusters,
				      .total_sectors = (uint32_t)sectors };
	return 0;
}

static uint32_t volume_id(void)
{
	uint32_t id;
	if (getrandom(&id, sizeof(id), 0) != sizeof(id))
		id = (uint32_t)time(NULL);
	return id;
}

static void encode_boot_sector(const struct fat32_layout *l, uint64_t first_lba, uint32_t id,
			       uint8_t *s)
{
	static const uint8_t jump[3] = { 0xEB, 0x58, 0x90 };
	static const uint8_t halt[4] = { 0xFA, 0xF4, 0xEB, 0xFD }; /* cli; hlt; jmp to hlt */
	memcpy(s, jump, sizeof(jump));
	memcpy(s + 3, "MSWIN4.1", 8);
	store_le16(s + 11, (uint16_t)l->sector_size);
	s[13] = (uint8_t)l->sectors_per_cluster;
	store_le16(s + 14, (uint16_t)l->reserved_sectors);
	s[16] = 2; /* FATs */
	s[21] = MEDIA_FIXED_DISK;
	store_le16(s + 24, 63);	 /* sectors per track, for BIOS geometry only */
	store_le16(s + 26, 255); /* heads */
	store_le32(s + 28, first_lba > UINT32_MAX ? 0 : (uint32_t)first_lba);
	store_le32(s + 32, l->total_sectors);
	store_le32(s + 36, l->fat_sectors);
	store_le32(s + 44, 2); /* root directory cluster */
	store_le16(s + 48, FSINFO_SECTOR);
	store_le16(s + 50, BACKUP_BOOT_SECTOR);
	s[64] = 0x80; /* drive number */
	s[66] = 0x29; /* extended boot signature: the next three fields are valid */
	store_le32(s + 67, id);
	memcpy(s + 71, "NO NAME    ", 11);
	memcpy(s + 82, "FAT32   ", 8);
	memcpy(s + 90, halt, sizeof(halt));
	s[510] = 0x55;
	s[511] = 0xAA;
}

static void encode_fsinfo(const struct fat32_layout *l, uint8_t *s)
{
	store_le32(s, 0x41615252);
	store_le32(s + 484, 0x61417272);
	store_le32(s + 488, l->clusters - 1); /* free: all but the root directory's */
	store_le32(s + 492, 3);		      /* next free cluster hint */
	store_le32(s + 508, 0xAA550000);
}

static void encode_fat_head(uint8_t *s)
{
	store_le32(s, 0x0FFFFF00 | MEDIA_FIXED_DISK);
	store_le32(s + 4, 0x0FFFFFFF); /* end of chain; clean, no I/O errors */
	store_le32(s + 8, 0x0FFFFFFF); /* root directory: one cluster */
}

/* Zeroes the reserved sectors, both FATs and the root directory cluster. */
static int zero_metadata(struct vdisk *disk, uint64_t offset, uint64_t length,
			 vdisk_progress_fn progress, void *opaque)
{
	uint8_t *zeros = calloc(1, ZERO_CHUNK);
	if (!zeros)
		return -ENOMEM;
	int ret = 0;
	for (uint64_t done = 0; done < length && ret == 0;) {
		uint64_t n = length - done < ZERO_CHUNK ? length - done : ZERO_CHUNK;
		ret = vdisk_pwrite(disk, zeros, n, offset + done);
		done += n;
		if (progress)
			progress(opaque, done, length);
	}
	free(zeros);
	return ret;
}

int fat32_format(struct vdisk *disk, uint64_t first_lba, const struct fat32_layout *l,
		 vdisk_progress_fn progress, void *opaque)
{
	uint32_t ss = l->sector_size;
	uint64_t base = first_lba * ss;
	uint64_t meta_sectors =
		(uint64_t)l->reserved_sectors + 2ull * l->fat_sectors + l->sectors_per_cluster;
	int ret = zero_metadata(disk, base, meta_sectors * ss, progress, opaque);
	uint8_t *s = calloc(1, ss);
	if (!s)
		return -ENOMEM;
	uint32_t id = volume_id();
	encode_boot_sector(l, first_lba, id, s);
	if (ret == 0)
		ret = vdisk_pwrite(disk, s, ss, base);
	if (ret == 0)
		ret = vdisk_pwrite(disk, s, ss, base + (uint64_t)BACKUP_BOOT_SECTOR * ss);
	memset(s, 0, ss);
	encode_fsinfo(l, s);
	if (ret == 0)
		ret = vdisk_pwrite(disk, s, ss, base + (uint64_t)FSINFO_SECTOR * ss);
	if (ret == 0)
		ret = vdisk_pwrite(disk, s, ss, base + (uint64_t)(BACKUP_BOOT_SECTOR + 1) * ss);
	memset(s, 0, ss);
	encode_fat_head(s);
	for (unsigned fat = 0; fat < 2 && ret == 0; fat++)
		ret = vdisk_pwrite(
			disk, s, ss,
			base + ((uint64_t)l->reserved_sectors + (uint64_t)fat * l->fat_sectors) *
					ss);
	free(s);
	return ret;
}
