#include "table_loader.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "arith.h"
#include "endian.h"

void table_loader_init(struct table_loader *l)
{
	memset(l, 0, sizeof(*l));
}

void table_loader_free(struct table_loader *l)
{
	free(l->buf);
	table_loader_init(l);
}

/* A zeroed record with its command set, or NULL (and l->err) on failure. */
static uint8_t *new_record(struct table_loader *l, uint32_t command)
{
	if (l->err)
		return NULL;
	if (l->len == l->cap) {
		size_t cap = l->cap ? 2 * l->cap : 16 * TABLE_LOADER_RECORD;
		uint8_t *grown = realloc(l->buf, cap);
		if (!grown) {
			l->err = -ENOMEM;
			return NULL;
		}
		l->buf = grown;
		l->cap = cap;
	}
	uint8_t *r = l->buf + l->len;
	l->len += TABLE_LOADER_RECORD;
	memset(r, 0, TABLE_LOADER_RECORD);
	store_le32(r, command);
	return r;
}

/* Copies a file name into a record field; refuses one that does not fit with its NUL. */
static int put_name(struct table_loader *l, uint8_t *field, const char *name)
{
	if (l->err)
		return l->err;
	if (!name || !name[0] || strlen(name) >= TABLE_LOADER_NAME_SIZE)
		l->err = -EINVAL;
	else
		memcpy(field, name, strlen(name));
	return l->err;
}

static int fail(struct table_loader *l, int err)
{
	if (!l->err)
		l->err = err;
	return l->err;
}

int table_loader_allocate(struct table_loader *l, const char *file, uint32_t align, uint8_t zone)
{
	if (!is_power_of_two(align) ||
	    (zone != TABLE_LOADER_ZONE_HIGH && zone != TABLE_LOADER_ZONE_FSEG))
		return fail(l, -EINVAL);
	uint8_t *r = new_record(l, TABLE_LOADER_ALLOCATE);
	if (!r || put_name(l, r + 4, file))
		return l->err;
	store_le32(r + 4 + TABLE_LOADER_NAME_SIZE, align);
	r[4 + TABLE_LOADER_NAME_SIZE + 4] = zone;
	return 0;
}

int table_loader_add_pointer(struct table_loader *l, const char *dest, const char *src,
			     uint32_t offset, uint8_t size)
{
	if (size != 1 && size != 2 && size != 4 && size != 8)
		return fail(l, -EINVAL);
	uint8_t *r = new_record(l, TABLE_LOADER_ADD_POINTER);
	if (!r || put_name(l, r + 4, dest) || put_name(l, r + 4 + TABLE_LOADER_NAME_SIZE, src))
		return l->err;
	store_le32(r + 4 + 2 * TABLE_LOADER_NAME_SIZE, offset);
	r[4 + 2 * TABLE_LOADER_NAME_SIZE + 4] = size;
	return 0;
}

int table_loader_add_checksum(struct table_loader *l, const char *file, uint32_t offset,
			      uint32_t start, uint32_t length)
{
	if (offset < start || offset - start >= length)
		return fail(l, -EINVAL);
	uint8_t *r = new_record(l, TABLE_LOADER_ADD_CHECKSUM);
	if (!r || put_name(l, r + 4, file))
		return l->err;
	store_le32(r + 4 + TABLE_LOADER_NAME_SIZE, offset);
	store_le32(r + 4 + TABLE_LOADER_NAME_SIZE + 4, start);
	store_le32(r + 4 + TABLE_LOADER_NAME_SIZE + 8, length);
	return 0;
}
