/* MBR partition tables read and checked for conversion, and the GPT that replaces them.
 *
 * Layout facts (UEFI specification): the GPT header is 92 bytes at LBA 1, followed by an
 * array of 128 entries of 128 bytes; the backup header is the last LBA with its array just
 * before it; the MBR becomes a protective MBR with one 0xEE entry. LBAs here are in the
 * disk's logical sectors (512 or 4096 bytes), as both tables count them.
 */
#ifndef HV_TOOLS_GPT_H
#define HV_TOOLS_GPT_H

#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>

#include "guid.h"
#include "vdisk.h"

#define GPT_ENTRIES		      128
#define GPT_ENTRY_SIZE		      128
#define GPT_ARRAY_BYTES		      (GPT_ENTRIES * GPT_ENTRY_SIZE)
#define GPT_NAME_CHARS		      36
#define GPT_ATTR_LEGACY_BIOS_BOOTABLE (1ull << 2)

/* Findings of the validation: each one says what is wrong and what to do about it. */
struct findings {
	json_t *list; /* array of {"severity", "message", "hint"} */
	unsigned errors;
};

/* severity "error" blocks the conversion; "warning" and "note" do not. hint may be NULL. */
void finding_add(struct findings *f, const char *severity, const char *hint, const char *fmt, ...)
	__attribute__((format(printf, 4, 5)));

/* A partition that holds data (extended containers are not listed). */
struct mbr_part {
	unsigned number; /* 1-4 primary, 5.. logical, as Linux counts: the GPT entry number */
	uint8_t type;
	bool bootable;
	uint64_t first, last; /* LBAs, inclusive */
};

struct mbr_disk {
	uint32_t sector_size;
	uint64_t sectors; /* whole logical sectors of the disk */
	uint8_t mbr[512]; /* sector 0 as read: its boot code is kept */
	unsigned count;	  /* data partitions, in table order */
	struct mbr_part parts[GPT_ENTRIES];
	unsigned ebr_count; /* boot records of the logical partitions, in use until the MBR is
			     * replaced: nothing may be written over them before that */
	uint64_t ebr[GPT_ENTRIES];
	bool has_esp;
};

/* The GPT type given to each MBR type: built in (gdisk's mapping) or from --map. */
struct type_map {
	bool set[256];
	struct guid type[256];
};

/* Parses "MBRTYPE=GUID" (MBRTYPE in hex, with or without 0x) into map. Returns 0 or
 * -EINVAL. */
int type_map_add(struct type_map *map, const char *text);
/* The GPT type for an MBR type; false when it has none. */
bool type_map_lookup(const struct type_map *map, uint8_t mbr_type, struct guid *out);
/* The name gdisk (or Windows, for basic data) gives a partition of this GPT type; "" when
 * the type is not one we know. */
const char *gpt_type_name(const struct guid *type);

/* First and last LBA a partition may use under a GPT on this disk. */
uint64_t gpt_first_usable(uint32_t sector_size);
uint64_t gpt_last_usable(uint32_t sector_size, uint64_t sectors);

/* Reads sector 0 and the chain of extended boot records and checks everything a
 * conversion needs; problems go to f. Returns 0 (even when f has errors) or -errno when
 * the disk could not be read. */
int mbr_inspect(struct vdisk *disk, uint32_t sector_size, const struct type_map *map,
		struct mbr_disk *out, struct findings *f);

/* Free space for a new partition of `sectors` sectors, 1 MiB aligned, between the
 * partitions (and boot records) of m. Returns true with *first set, or false with
 * *missing_bytes: how much the disk would have to grow to hold it at the end. */
bool gpt_find_free(const struct mbr_disk *m, uint64_t sectors, uint64_t *first,
		   uint64_t *missing_bytes);

struct gpt_entry {
	struct guid type;
	struct guid unique;
	uint64_t first, last;
	uint64_t attributes;
	char name[GPT_NAME_CHARS + 1];
};

/* The table that replaces the MBR: entries[i] is partition i + 1 (type zero: unused). */
struct gpt_table {
	struct guid disk_guid;
	struct gpt_entry entries[GPT_ENTRIES];
};

/* The GPT for the partitions of m (types from map), with new random GUIDs. Returns 0 or
 * -errno (no randomness). */
int gpt_from_mbr(const struct mbr_disk *m, const struct type_map *map, struct gpt_table *t);
/* The lowest unused entry number (1-based), 0 when the table is full. */
unsigned gpt_free_number(const struct gpt_table *t);

/* Writes the backup GPT, then the primary GPT, then the protective MBR, flushing after
 * each, so that until the last write the disk still reads as the MBR disk it was.
 * Returns 0 or -errno with *step naming the write that failed. */
int gpt_write(struct vdisk *disk, const struct mbr_disk *m, const struct gpt_table *t,
	      const char **step);

#endif
