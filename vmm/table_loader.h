/* The "etc/table-loader" fw_cfg file: commands that tell the firmware (SeaBIOS, OVMF) how
 * to place fw_cfg files in guest RAM, patch pointers between them and compute checksums.
 * Each command is a 128-byte record, little-endian: u32 command, then its fields. */
#ifndef HV_VMM_TABLE_LOADER_H
#define HV_VMM_TABLE_LOADER_H

#include <stddef.h>
#include <stdint.h>

#define TABLE_LOADER_FILE	  "etc/table-loader"
#define TABLE_LOADER_RECORD	  128
#define TABLE_LOADER_NAME_SIZE	  56
#define TABLE_LOADER_ALLOCATE	  1 /* file[56], u32 align, u8 zone */
#define TABLE_LOADER_ADD_POINTER  2 /* dest[56], src[56], u32 offset, u8 size */
#define TABLE_LOADER_ADD_CHECKSUM 3 /* file[56], u32 offset, u32 start, u32 length */
#define TABLE_LOADER_ZONE_HIGH	  1 /* anywhere in RAM */
#define TABLE_LOADER_ZONE_FSEG	  2 /* the F segment, where a BIOS looks for the RSDP */

/* Records accumulate in a growing buffer; the first error sticks and is returned by every
 * later call, so a sequence of calls needs one check at the end. */
struct table_loader {
	uint8_t *buf;
	size_t len, cap;
	int err;
};

void table_loader_init(struct table_loader *l);
void table_loader_free(struct table_loader *l);

/* Copy `file` into guest RAM at an address aligned to align (a power of two) in zone. */
int table_loader_allocate(struct table_loader *l, const char *file, uint32_t align, uint8_t zone);
/* Add src's guest address to the size-byte (1, 2, 4, 8) value at dest + offset. */
int table_loader_add_pointer(struct table_loader *l, const char *dest, const char *src,
			     uint32_t offset, uint8_t size);
/* Make the bytes [start, start + length) of file sum to 0 by adjusting the byte at offset,
 * which must lie inside that range and hold 0. */
int table_loader_add_checksum(struct table_loader *l, const char *file, uint32_t offset,
			      uint32_t start, uint32_t length);

#endif
