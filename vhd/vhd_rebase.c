/* Rebase of a differencing VHD image: records another file as its parent (after the
 * parent was moved or renamed, or with VDISK_SET_PARENT_UNSAFE any VHD).
 *
 * The header gets the new parent's file name and file time (and, when unsafe, its unique
 * id); the locators become the W2ku and W2ru pair that creation writes. Each locator's data
 * goes into the space an old locator reserved when it fits and nothing else lies there;
 * otherwise after the last block, where the footer moves to make room. Blocks are never
 * overwritten.
 *
 * Order: the moved footer, then the locator data, then the header that points at them,
 * each synced. A crash before the header leaves the old header: at worst its locators name
 * data that was partly overwritten, so the parent is not found until the rebase is run
 * again (the identity it checks has not changed), and a moved footer leaves a gap that
 * `vdisk check --repair` reclaims.
 */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "parent_search.h"
#include "vhd_internal.h"

/* What the header is to record of the new parent. */
struct new_parent {
	uint8_t id[16];
	uint32_t timestamp;
	char name[VHD_PARENT_NAME_BYTES * 2];
	char *absolute, *relative;
	struct vhd_locator_data loc[2];
};

static uint64_t sectors_up(uint64_t v)
{
	return (v + VHD_SECTOR - 1) / VHD_SECTOR * VHD_SECTOR;
}

/* The new parent's unique id and file time, from its own footer. */
static int read_identity(struct vdisk *disk, const char *path, struct new_parent *np, char *err,
			 size_t err_size)
{
	struct vdisk *pdisk;
	struct stat st;
	int ret = vdisk_parent_open_for_rebase(disk, path, &pdisk, err, err_size);
	if (ret < 0)
		return ret;
	memcpy(np->id, vhd_of(pdisk)->footer.unique_id, 16);
	vdisk_close(pdisk);
	np->timestamp = stat(path, &st) == 0 ? vhd_time(st.st_mtime) : 0;
	return 0;
}

static int check_identity(const struct vhd *vhd, const char *path, const struct new_parent *np,
			  char *err, size_t err_size)
{
	if (memcmp(np->id, vhd->header.parent_id, 16) == 0)
		return 0;
	char has[GUID_STR_LEN + 1], wants[GUID_STR_LEN + 1];
	vhd_uuid_format(np->id, has);
	vhd_uuid_format(vhd->header.parent_id, wants);
	return vdisk_errorf(
		err, err_size, -EINVAL,
		"%s is not the image this one was made from: it has identity %s, this image "
		"expects %s (record it anyway with --unsafe only if its content is the same)",
		path, has, wants);
}

static bool overlaps(uint64_t a, uint64_t alen, uint64_t b, uint64_t blen)
{
	return a < b + blen && b < a + alen;
}

/* Whether [start, start + len) holds nothing but the data of old locator `self`: no other
 * metadata, no block, no other locator's data, and lies before the footer. */
static bool range_is_free(const struct vhd *vhd, int self, uint64_t start, uint64_t len)
{
	const struct vhd_header *h = &vhd->header;
	if (start < VHD_FOOTER_SIZE || start + len > vhd->footer_offset ||
	    overlaps(start, len, vhd->footer.data_offset, VHD_HEADER_SIZE) ||
	    overlaps(start, len, h->table_offset, sectors_up((uint64_t)vhd->bat_entries * 4)))
		return false;
	for (uint32_t i = 0; i < vhd->bat_entries; i++)
		if (vhd->bat[i] != VHD_BAT_UNUSED &&
		    overlaps(start, len, (uint64_t)vhd->bat[i] * VHD_SECTOR,
			     vhd->bitmap_size + (uint64_t)vhd->block_size))
			return false;
	for (int i = 0; i < VHD_LOCATORS; i++)
		if (i != self && h->locators[i].path &&
		    overlaps(start, len, h->locators[i].data_offset,
			     sectors_up(h->locators[i].data_length)))
			return false;
	return true;
}

/* Room an old locator leaves for new data: its reserved space (sectors when below 512,
 * bytes otherwise, see vhd_meta.c), or at least the sectors its data covers. */
static uint64_t old_capacity(const struct vhd *vhd, int i)
{
	const struct vhd_locator *loc = &vhd->header.locators[i];
	if (!loc->path) /* only locators that loaded (their data checked) are reused */
		return 0;
	uint64_t space = loc->data_space < VHD_SECTOR ? (uint64_t)loc->data_space * VHD_SECTOR
						      : loc->data_space;
	if (space > sectors_up(loc->data_length) && range_is_free(vhd, i, loc->data_offset, space))
		return space;
	return sectors_up(loc->data_length);
}

/* Where each new locator goes; *end is where the footer will be. */
static void place_locators(const struct vhd *vhd, const struct new_parent *np,
			   struct vhd_locator out[2], uint64_t *end)
{
	bool taken[VHD_LOCATORS] = { false };
	*end = vhd->footer_offset;
	for (int k = 0; k < 2; k++) {
		uint64_t need = sectors_up(np->loc[k].len);
		out[k] = (struct vhd_locator){ .code = np->loc[k].code,
					       .data_length = (uint32_t)np->loc[k].len };
		for (int i = 0; i < VHD_LOCATORS; i++) {
			if (taken[i] || old_capacity(vhd, i) < need)
				continue;
			taken[i] = true;
			out[k].data_offset = vhd->header.locators[i].data_offset;
			out[k].data_space = vhd->header.locators[i].data_space;
			break;
		}
		if (!out[k].data_offset) { /* bytes, as creation and Windows write them */
			out[k].data_offset = *end;
			out[k].data_space = (uint32_t)need;
			*end += need;
		}
	}
}

/* The locator data in whole sectors (zero padded) where place_locators put it. */
static int write_locators(struct vdisk_file *file, const struct new_parent *np,
			  const struct vhd_locator loc[2])
{
	int ret = 0;
	for (int k = 0; k < 2 && ret == 0; k++) {
		size_t len = (size_t)sectors_up(np->loc[k].len);
		uint8_t *buf = calloc(1, len);
		if (!buf)
			return -ENOMEM;
		memcpy(buf, np->loc[k].data, np->loc[k].len);
		ret = vdisk_file_pwrite(file, buf, len, loc[k].data_offset);
		free(buf);
	}
	return ret ? ret : vdisk_file_sync(file);
}

static int write_header(struct vdisk_file *file, const struct vhd *vhd, struct vhd_header *h,
			const struct new_parent *np, const struct vhd_locator loc[2])
{
	uint8_t raw[VHD_HEADER_SIZE];
	*h = vhd->header;
	memcpy(h->parent_id, np->id, 16);
	h->parent_timestamp = np->timestamp;
	snprintf(h->parent_name, sizeof(h->parent_name), "%s", np->name);
	memset(h->locators, 0, sizeof(h->locators));
	h->locators[0] = loc[0];
	h->locators[1] = loc[1];
	vhd_header_build(h, raw);
	return vdisk_file_pwrite_sync(file, raw, sizeof(raw), vhd->footer.data_offset);
}

/* The open image follows: new locators and parent path, allocation after the footer. */
static int adopt(struct vhd *vhd, const struct vhd_header *h, uint64_t footer_offset,
		 struct new_parent *np)
{
	for (int i = 0; i < VHD_LOCATORS; i++)
		free(vhd->header.locators[i].path);
	vhd->header = *h;
	vhd->header.locators[0].path = np->absolute;
	vhd->header.locators[1].path = np->relative;
	free(vhd->parent_path);
	vhd->parent_path = strdup(np->absolute);
	np->absolute = np->relative = NULL;
	vhd->footer_offset = footer_offset;
	vhd_io_free(vhd);
	int ret = vhd_io_init(vhd);
	return ret ? ret : vhd->parent_path ? 0 : -ENOMEM;
}

static int rewrite(struct vdisk *disk, struct new_parent *np, char *err, size_t err_size)
{
	struct vhd *vhd = vhd_of(disk);
	struct vhd_locator loc[2];
	struct vhd_header h;
	uint64_t footer_offset;

	place_locators(vhd, np, loc, &footer_offset);
	int ret = vhd_writeback_sync(disk);
	if (ret == 0 && footer_offset != vhd->footer_offset)
		ret = vdisk_file_pwrite_sync(disk->file, vhd->footer_raw, VHD_FOOTER_SIZE,
					     footer_offset);
	if (ret == 0)
		ret = write_locators(disk->file, np, loc);
	if (ret == 0)
		ret = write_header(disk->file, vhd, &h, np, loc);
	if (ret < 0)
		return vdisk_errorf(err, err_size, ret, "cannot write the new parent locators: %s",
				    strerror(-ret));
	ret = adopt(vhd, &h, footer_offset, np);
	if (ret < 0)
		return vdisk_errorf(err, err_size, ret, "out of memory");
	return 0;
}

int vhd_set_parent(struct vdisk *disk, const char *parent_path, unsigned flags, char *err,
		   size_t err_size)
{
	struct vhd *vhd = vhd_of(disk);
	if (!vhd_is_diff(vhd))
		return vdisk_errorf(
			err, err_size, -EINVAL,
			"the image is not a differencing image: it has no parent to change");
	struct new_parent *np = calloc(1, sizeof(*np));
	if (!np)
		return vdisk_errorf(err, err_size, -ENOMEM, "out of memory");
	int ret = read_identity(disk, parent_path, np, err, err_size);
	if (ret == 0 && (flags & VDISK_SET_PARENT_UNSAFE) == 0)
		ret = check_identity(vhd, parent_path, np, err, err_size);
	if (ret == 0)
		ret = vhd_parent_paths(vdisk_path(disk), parent_path, np->name, &np->absolute,
				       &np->relative, err, err_size);
	if (ret == 0 && vhd_locators_encode(np->absolute, np->relative, np->loc) < 0)
		ret = vdisk_errorf(err, err_size, -ENAMETOOLONG,
				   "the parent's path is too long for a parent locator");
	if (ret == 0)
		ret = rewrite(disk, np, err, err_size);
	free(np->absolute);
	free(np->relative);
	free(np);
	return ret;
}
