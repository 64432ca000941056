/* Disks a test opened, so that a failed test (which cmocka leaves with a longjmp) does not
 * leave them open for the next one. */
#ifndef HV_TEST_DISK_H
#define HV_TEST_DISK_H

#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>

#include "test_util.h"
#include "vdisk.h"

#define TEST_MAX_OPEN_DISKS 8
extern struct vdisk *test_open_disks[TEST_MAX_OPEN_DISKS];

/* Remembers an open disk (fails the test when too many are open). */
static inline int test_track_disk(struct vdisk *disk)
{
	for (size_t i = 0; i < TEST_MAX_OPEN_DISKS; i++)
		if (!test_open_disks[i]) {
			test_open_disks[i] = disk;
			return 0;
		}
	return -1;
}

static inline void test_close_disk(struct vdisk *disk)
{
	for (size_t i = 0; i < TEST_MAX_OPEN_DISKS; i++)
		if (test_open_disks[i] == disk)
			test_open_disks[i] = NULL;
	vdisk_close(disk);
}

/* Closes what a failed test left open. */
static inline void test_close_tracked(void)
{
	for (size_t i = 0; i < TEST_MAX_OPEN_DISKS; i++)
		if (test_open_disks[i]) {
			vdisk_close(test_open_disks[i]);
			test_open_disks[i] = NULL;
		}
}

/* Writes test_fill_pattern(seed) over [off, off + len) of disk. Returns 0 or -errno. */
static inline int test_disk_write_pattern(struct vdisk *disk, uint64_t off, uint64_t len,
					  uint32_t seed)
{
	uint8_t *buf = malloc(len);
	if (!buf)
		return -1;
	test_fill_pattern(buf, len, off, seed);
	int ret = vdisk_pwrite(disk, buf, len, off);
	free(buf);
	return ret;
}

/* Copies [off, off + len) of one disk into another at the same offset. */
static inline int test_disk_copy(struct vdisk *from, struct vdisk *to, uint64_t off,
				 uint64_t len)
{
	uint8_t *buf = malloc(len);
	int ret = buf ? vdisk_pread(from, buf, len, off) : -1;
	if (ret == 0)
		ret = vdisk_pwrite(to, buf, len, off);
	free(buf);
	return ret;
}

#endif
