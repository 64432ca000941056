/* Rebase of a differencing VHDX image: a new parent locator (after the parent was moved or
 * renamed, or with VDISK_SET_PARENT_UNSAFE any VHDX, whose DataWriteGuid it then records).
 *
 * The locator item becomes the one creation writes (parent_linkage, relative_path,
 * absolute_win32_path). It stays where it is when it fits before the next item, otherwise
 * it moves after the last item of the metadata region and its table entry follows. The
 * changed 4 KiB sectors (item and table entry) go through the log as one entry, so a crash
 * leaves either the old locator or the new one.
 */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "endian.h"
#include "parent_search.h"
#include "vhdx_internal.h"

#define SECTOR VHDX_LOG_SECTOR

/* The new parent's identity: the DataWriteGuid of its current header. */
static int read_identity(struct vdisk *disk, const char *path, struct guid *id, char *err,
			 size_t err_size)
{
	struct vdisk *pdisk;
	int ret = vdisk_parent_open_for_rebase(disk, path, &pdisk, err, err_size);
	if (ret < 0)
		return ret;
	*id = ((struct vhdx *)pdisk->priv)->header.data_write_guid;
	vdisk_close(pdisk);
	return 0;
}

static int check_identity(const struct vhdx *v, const char *path, const struct guid *id, char *err,
			  size_t err_size)
{
	struct guid want;
	if (guid_parse(v->locator.parent_linkage, &want) == 0 && guid_equal(&want, id))
		return 0;
	char has[GUID_STR_LEN + 1];
	guid_format(id, has);
	return vdisk_errorf(
		err, err_size, -EINVAL,
		"%s is not the image this one was made from: its DataWriteGuid is %s, this "
		"image's parent_linkage is %s (record it anyway with --unsafe only if its "
		"content is the same)",
		path, has, v->locator.parent_linkage);
}

/* The metadata table and where the locator item goes. */
struct placement {
	uint8_t *table; /* VHDX_METADATA_TABLE_SIZE bytes */
	unsigned entry; /* index of the locator's entry */
	uint32_t old_offset, old_length;
	uint32_t offset; /* new place in the region */
};

static bool is_locator_entry(const uint8_t *e)
{
	struct guid id, want = VHDX_ITEM_PARENT_LOCATOR;
	memcpy(id.bytes, e + VHDX_ME_ITEM_ID, 16);
	return guid_equal(&id, &want) && !(load_le32(e + VHDX_ME_FLAGS) & VHDX_ME_IS_USER);
}

/* Stays in place when it fits before the next item; else goes after the last item. The
 * table was validated at open (entries bounded, not overlapping). */
static int place_item(const struct vhdx *v, struct placement *p, uint32_t len)
{
	unsigned n = load_le16(p->table + VHDX_MT_ENTRY_COUNT);
	uint64_t next = v->metadata_length, last_end = VHDX_METADATA_TABLE_SIZE;
	bool found = false;
	for (unsigned i = 0; i < n; i++) {
		const uint8_t *e = p->table + VHDX_MT_ENTRIES + (size_t)i * VHDX_ME_SIZE;
		if (is_locator_entry(e)) {
			p->entry = i;
			p->old_offset = load_le32(e + VHDX_ME_OFFSET);
			p->old_length = load_le32(e + VHDX_ME_LENGTH);
			found = true;
		}
	}
	if (!found)
		return -ENOENT;
	for (unsigned i = 0; i < n; i++) {
		const uint8_t *e = p->table + VHDX_MT_ENTRIES + (size_t)i * VHDX_ME_SIZE;
		uint64_t off = load_le32(e + VHDX_ME_OFFSET),
			 end = off + load_le32(e + VHDX_ME_LENGTH);
		if (i != p->entry && off > p->old_offset && off < next)
			next = off;
		if (end > last_end)
			last_end = end;
	}
	if ((uint64_t)p->old_offset + len <= next) {
		p->offset = p->old_offset;
		return 0;
	}
	last_end = (last_end + 7) & ~(uint64_t)7;
	if (last_end + len > v->metadata_length)
		return -ENOSPC;
	p->offset = (uint32_t)last_end;
	return 0;
}

/* The updates: the sectors the new item covers (the old item's bytes there zeroed first)
 * and, when the item moved or changed length, the table sector holding its entry. */
struct sectors {
	uint8_t *buf;	 /* the item's sectors as they will be */
	uint64_t first;	 /* file offset of buf */
	uint64_t length; /* bytes of buf */
	struct vhdx_log_update updates[VHDX_METADATA_ITEM_MAX / SECTOR + 2];
	unsigned count;
};

static int build_updates(struct vdisk *disk, struct placement *p, const uint8_t *item, uint32_t len,
			 struct sectors *s)
{
	const struct vhdx *v = disk->priv;
	uint64_t start = p->offset, end = start + len;
	if (p->offset == p->old_offset && p->old_offset + (uint64_t)p->old_length > end)
		end = p->old_offset + (uint64_t)p->old_length;
	s->first = v->metadata_offset + start / SECTOR * SECTOR;
	s->length = (v->metadata_offset + end + SECTOR - 1) / SECTOR * SECTOR - s->first;
	s->buf = vdisk_alloc_aligned(s->length);
	if (!s->buf)
		return -ENOMEM;
	int ret = vdisk_file_pread(disk->file, s->buf, s->length, s->first);
	if (ret < 0)
		return ret;
	uint8_t *at = s->buf + (v->metadata_offset + start - s->first);
	if (p->offset == p->old_offset)
		memset(at, 0, p->old_length);
	memcpy(at, item, len);
	for (uint64_t off = 0; off < s->length; off += SECTOR)
		s->updates[s->count++] = (struct vhdx_log_update){ .file_offset = s->first + off,
								   .data = s->buf + off };
	if (p->offset == p->old_offset && p->old_length == len)
		return 0;
	uint8_t *e = p->table + VHDX_MT_ENTRIES + (size_t)p->entry * VHDX_ME_SIZE;
	store_le32(e + VHDX_ME_OFFSET, p->offset);
	store_le32(e + VHDX_ME_LENGTH, len);
	size_t sector = (size_t)(e - p->table) / SECTOR * SECTOR;
	s->updates[s->count++] =
		(struct vhdx_log_update){ .file_offset = v->metadata_offset + sector,
					  .data = p->table + sector };
	return 0;
}

static int commit_item(struct vdisk *disk, const uint8_t *item, uint32_t len, char *err,
		       size_t err_size)
{
	const struct vhdx *v = disk->priv;
	struct placement p = { .table = vdisk_alloc_aligned(VHDX_METADATA_TABLE_SIZE) };
	struct sectors *s = calloc(1, sizeof(*s));
	int ret = p.table && s ? 0 : -ENOMEM;
	if (ret == 0 && v->metadata_offset % SECTOR)
		ret = vdisk_errorf(err, err_size, -EINVAL,
				   "the metadata region is not 4 KiB aligned: it cannot be changed "
				   "through the log");
	if (ret == 0)
		ret = vdisk_file_pread(disk->file, p.table, VHDX_METADATA_TABLE_SIZE,
				       v->metadata_offset);
	if (ret == 0 && (ret = place_item(v, &p, len)) < 0)
		vdisk_errorf(err, err_size, ret, "%s",
			     ret == -ENOSPC ? "the metadata region has no room for the new locator"
					    : "the metadata table has no parent locator entry");
	if (ret == 0)
		ret = build_updates(disk, &p, item, len, s);
	if (ret == 0 && s->count > vhdx_log_max_data_updates(v->header.log_length))
		ret = vdisk_errorf(err, err_size, -EFBIG,
				   "the new locator does not fit in one log entry of this image");
	if (ret == 0)
		ret = vhdx_log_commit(disk, s->updates, s->count);
	if (ret < 0 && !err[0])
		vdisk_errorf(err, err_size, ret, "cannot write the new parent locator: %s",
			     strerror(-ret));
	if (s)
		free(s->buf);
	free(s);
	free(p.table);
	return ret;
}

/* The open image follows the new locator. Takes the strings. */
static int adopt(struct vhdx *v, const struct guid *linkage, char *relative, char *absolute)
{
	struct vhdx_parent_locator *l = &v->locator;
	char text[GUID_STR_LEN + 3] = "{";
	guid_format(linkage, text + 1);
	strcat(text, "}");
	free(l->parent_linkage);
	free(l->parent_linkage2);
	free(l->volume_path);
	free(l->relative_path);
	free(l->absolute_win32_path);
	free(v->parent_path);
	*l = (struct vhdx_parent_locator){ .parent_linkage = strdup(text),
					   .relative_path = relative,
					   .absolute_win32_path = absolute };
	v->parent_path = strdup(absolute);
	return l->parent_linkage && v->parent_path ? 0 : -ENOMEM;
}

int vhdx_set_parent(struct vdisk *disk, const char *parent_path, unsigned flags, char *err,
		    size_t err_size)
{
	struct vhdx *v = disk->priv;
	char *absolute = NULL, *relative = NULL;
	uint8_t *item = NULL;
	uint32_t len;
	struct guid id;

	err[0] = 0;
	if (!v->has_parent)
		return vdisk_errorf(
			err, err_size, -EINVAL,
			"the image is not a differencing image: it has no parent to change");
	int ret = read_identity(disk, parent_path, &id, err, err_size);
	if (ret == 0 && (flags & VDISK_SET_PARENT_UNSAFE) == 0)
		ret = check_identity(v, parent_path, &id, err, err_size);
	if (ret == 0)
		ret = vdisk_parent_paths(vdisk_path(disk), parent_path, &absolute, &relative, err,
					 err_size);
	if (ret == 0 && (ret = vhdx_locator_build(&id, relative, absolute, &item, &len)) < 0)
		vdisk_errorf(err, err_size, ret, "cannot build the parent locator: %s",
			     ret == -ENAMETOOLONG ? "the parent's path is too long"
						  : strerror(-ret));
	if (ret == 0)
		ret = commit_item(disk, item, len, err, err_size);
	free(item);
	if (ret == 0) {
		ret = adopt(v, &id, relative, absolute);
		relative = absolute = NULL;
		if (ret < 0)
			vdisk_errorf(err, err_size, ret, "out of memory");
	}
	free(relative);
	free(absolute);
	return ret;
}
