/* VHDX on-disk layout ([MS-VHDX], Virtual Hard Disk v2). Everything is little-endian;
 * fields are read and written through storage/endian.h at the offsets below. GUIDs are
 * stored in Microsoft's mixed-endian order, which is what struct guid holds.
 *
 * The file: the header section (first 1 MiB: file identifier, two headers, two region
 * tables), then the log, the BAT and the metadata regions and the blocks, anywhere after
 * it on 1 MiB boundaries, as the headers (log) and region table (BAT, metadata) say. */
#ifndef HV_VHDX_FORMAT_H
#define HV_VHDX_FORMAT_H

#include <stdint.h>

#include "guid.h"

#define VHDX_MiB (UINT64_C(1) << 20)

/* ---- the header section ---- */

#define VHDX_FILE_SIGNATURE	  "vhdxfile" /* 8 bytes at 0 */
#define VHDX_CREATOR_OFFSET	  8u	     /* UTF-16LE, NUL-padded */
#define VHDX_CREATOR_BYTES	  512u
#define VHDX_HEADER1_OFFSET	  (64u << 10)
#define VHDX_HEADER2_OFFSET	  (128u << 10)
#define VHDX_HEADER_SIZE	  4096u /* the checksum covers all of it */
#define VHDX_REGION_TABLE1_OFFSET (192u << 10)
#define VHDX_REGION_TABLE2_OFFSET (256u << 10)
#define VHDX_REGION_TABLE_SIZE	  (64u << 10) /* the checksum covers all of it */
#define VHDX_HEADER_SECTION_SIZE  (1u << 20)
#define VHDX_ALIGN		  (1u << 20) /* regions, the log and blocks */

/* Header (4 KiB; the rest is reserved, zero) */
#define VHDX_HEADER_SIGNATURE	"head"
#define VHDX_HEADER_VERSION	1u
#define VHDX_LOG_FORMAT_VERSION 0u
enum {
	VHDX_H_SIGNATURE = 0,	     /* char[4] */
	VHDX_H_CHECKSUM = 4,	     /* u32: CRC-32C of the 4 KiB, this field zero */
	VHDX_H_SEQUENCE = 8,	     /* u64: the valid header with the higher one is current */
	VHDX_H_FILE_WRITE_GUID = 16, /* guid: renewed before the first change after open */
	VHDX_H_DATA_WRITE_GUID = 32, /* guid: renewed before the first guest-visible change */
	VHDX_H_LOG_GUID = 48,	     /* guid: zero when the log holds nothing to replay */
	VHDX_H_LOG_VERSION = 64,     /* u16: 0 */
	VHDX_H_VERSION = 66,	     /* u16: 1 */
	VHDX_H_LOG_LENGTH = 68,	     /* u32: multiple of 1 MiB */
	VHDX_H_LOG_OFFSET = 72,	     /* u64: multiple of 1 MiB, at least 1 MiB */
	VHDX_H_FIELDS_END = 80,
};

/* Region table (64 KiB): a 16-byte header, then 32-byte entries */
#define VHDX_REGION_SIGNATURE	"regi"
#define VHDX_REGION_MAX_ENTRIES 2047u
enum {
	VHDX_RT_SIGNATURE = 0,	 /* char[4] */
	VHDX_RT_CHECKSUM = 4,	 /* u32: CRC-32C of the 64 KiB, this field zero */
	VHDX_RT_ENTRY_COUNT = 8, /* u32: at most 2047 */
	VHDX_RT_RESERVED = 12,	 /* u32 */
	VHDX_RT_ENTRIES = 16,

	VHDX_RE_GUID = 0,	  /* guid: what the region is */
	VHDX_RE_FILE_OFFSET = 16, /* u64: multiple of 1 MiB, at least 1 MiB */
	VHDX_RE_LENGTH = 24,	  /* u32: multiple of 1 MiB */
	VHDX_RE_FLAGS = 28,	  /* u32: bit 0 Required */
	VHDX_RE_SIZE = 32,
};
#define VHDX_RE_REQUIRED 1u

/* ---- the metadata region: a 64 KiB table, then the items ---- */

#define VHDX_METADATA_SIGNATURE	  "metadata"
#define VHDX_METADATA_TABLE_SIZE  (64u << 10)
#define VHDX_METADATA_MAX_ENTRIES 2047u
#define VHDX_METADATA_ITEM_MAX	  (1u << 20)
enum {
	VHDX_MT_SIGNATURE = 0,	  /* char[8] */
	VHDX_MT_RESERVED = 8,	  /* u16 */
	VHDX_MT_ENTRY_COUNT = 10, /* u16: at most 2047 */
	VHDX_MT_RESERVED2 = 12,	  /* u32[5] */
	VHDX_MT_ENTRIES = 32,

	VHDX_ME_ITEM_ID = 0, /* guid; (item id, IsUser) is unique */
	VHDX_ME_OFFSET = 16, /* u32: from the start of the region, at least 64 KiB (0 if empty) */
	VHDX_ME_LENGTH = 20, /* u32: at most 1 MiB */
	VHDX_ME_FLAGS = 24,  /* u32: VHDX_ME_IS_* */
	VHDX_ME_RESERVED2 = 28,
	VHDX_ME_SIZE = 32,
};
#define VHDX_ME_IS_USER		1u
#define VHDX_ME_IS_VIRTUAL_DISK 2u
#define VHDX_ME_IS_REQUIRED	4u

/* File Parameters item (8 bytes) */
enum {
	VHDX_FP_BLOCK_SIZE = 0, /* u32: power of two, 1 MiB to 256 MiB */
	VHDX_FP_FLAGS = 4,	/* u32: VHDX_FP_* */
	VHDX_FP_SIZE = 8,
};
#define VHDX_FP_LEAVE_BLOCKS_ALLOCATED 1u
#define VHDX_FP_HAS_PARENT	       2u

#define VHDX_VIRTUAL_SIZE_ITEM_SIZE 8u	/* u64 */
#define VHDX_PAGE83_ITEM_SIZE	    16u /* guid */
#define VHDX_SECTOR_SIZE_ITEM_SIZE  4u	/* u32: 512 or 4096 (logical and physical) */

/* Parent Locator item: a 20-byte header, 12-byte entries, then UTF-16LE keys and values
 * (no terminators) at offsets from the start of the item. */
enum {
	VHDX_PL_LOCATOR_TYPE = 0,     /* guid: VHDX_LOCATOR_TYPE_VHDX */
	VHDX_PL_RESERVED = 16,	      /* u16 */
	VHDX_PL_KEY_VALUE_COUNT = 18, /* u16 */
	VHDX_PL_ENTRIES = 20,

	VHDX_PLE_KEY_OFFSET = 0,    /* u32 */
	VHDX_PLE_VALUE_OFFSET = 4,  /* u32 */
	VHDX_PLE_KEY_LENGTH = 8,    /* u16: bytes */
	VHDX_PLE_VALUE_LENGTH = 10, /* u16: bytes */
	VHDX_PLE_SIZE = 12,
};

#define VHDX_MIN_BLOCK_SIZE (1u << 20)
#define VHDX_MAX_BLOCK_SIZE (256u << 20)
#define VHDX_MAX_SIZE	    (UINT64_C(64) << 40)
/* chunk ratio = VHDX_CHUNK_SECTORS * logical sector size / block size: the payload blocks
 * one sector bitmap block (one bit per logical sector) covers. */
#define VHDX_CHUNK_SECTORS (UINT64_C(1) << 23)

/* ---- the BAT: 64-bit entries, state in bits 0-2, FileOffsetMB in bits 20-63 ---- */

#define VHDX_BAT_ENTRY_SIZE    8u
#define VHDX_BAT_STATE_MASK    7u
#define VHDX_BAT_OFFSET_SHIFT  20
#define VHDX_BITMAP_BLOCK_SIZE (1u << 20)

enum vhdx_block_state {
	VHDX_BLOCK_NOT_PRESENT = 0,	  /* reads from the parent, or as zeros */
	VHDX_BLOCK_UNDEFINED = 1,	  /* reads as anything (zeros here) */
	VHDX_BLOCK_ZERO = 2,		  /* reads as zeros */
	VHDX_BLOCK_UNMAPPED = 3,	  /* discarded: reads as anything (zeros here) */
	VHDX_BLOCK_FULLY_PRESENT = 6,	  /* the data is in the file */
	VHDX_BLOCK_PARTIALLY_PRESENT = 7, /* differencing: the sector bitmap decides */
};

enum vhdx_bitmap_state {
	VHDX_BITMAP_NOT_PRESENT = 0,
	VHDX_BITMAP_PRESENT = 6,
};

/* ---- the log (see vhdx_log.h): 4 KiB sectors ---- */

#define VHDX_LOG_ENTRY_SIGNATURE "loge"
#define VHDX_LOG_DESC_SIGNATURE	 "desc"
#define VHDX_LOG_ZERO_SIGNATURE	 "zero"
#define VHDX_LOG_DATA_SIGNATURE	 "data"
enum {
	/* entry header (64 bytes; the checksum covers the whole entry) */
	VHDX_LE_SIGNATURE = 0,
	VHDX_LE_CHECKSUM = 4,		  /* u32 */
	VHDX_LE_ENTRY_LENGTH = 8,	  /* u32: multiple of 4 KiB */
	VHDX_LE_TAIL = 12,		  /* u32 */
	VHDX_LE_SEQUENCE = 16,		  /* u64 */
	VHDX_LE_DESCRIPTOR_COUNT = 24,	  /* u32 */
	VHDX_LE_RESERVED = 28,		  /* u32 */
	VHDX_LE_LOG_GUID = 32,		  /* guid */
	VHDX_LE_FLUSHED_FILE_OFFSET = 48, /* u64 */
	VHDX_LE_LAST_FILE_OFFSET = 56,	  /* u64 */
	VHDX_LE_SIZE = 64,

	/* descriptors (32 bytes): "desc" (a data sector follows) or "zero" */
	VHDX_LD_SIGNATURE = 0,
	VHDX_LD_TRAILING_BYTES = 4, /* u32, "desc" */
	VHDX_LD_LEADING_BYTES = 8,  /* u64, "desc" */
	VHDX_LD_ZERO_LENGTH = 8,    /* u64, "zero" */
	VHDX_LD_FILE_OFFSET = 16,   /* u64 */
	VHDX_LD_SEQUENCE = 24,	    /* u64 */
	VHDX_LD_SIZE = 32,

	/* data sector (4 KiB) */
	VHDX_LS_SIGNATURE = 0,
	VHDX_LS_SEQUENCE_HIGH = 4,   /* u32 */
	VHDX_LS_DATA = 8,	     /* 4084 bytes */
	VHDX_LS_SEQUENCE_LOW = 4092, /* u32 */
	VHDX_LS_SIZE = 4096,
};

/* ---- GUIDs ---- */

/* A GUID written as in the specification (data1-data2-data3-data4[8]), as on-disk bytes. */
#define VHDX_GUID(d1, d2, d3, b0, b1, b2, b3, b4, b5, b6, b7)                                      \
	((struct guid){ { (d1)&0xff, ((d1) >> 8) & 0xff, ((d1) >> 16) & 0xff, ((d1) >> 24) & 0xff, \
			  (d2)&0xff, ((d2) >> 8) & 0xff, (d3)&0xff, ((d3) >> 8) & 0xff, (b0),      \
			  (b1), (b2), (b3), (b4), (b5), (b6), (b7) } })

/* regions */
#define VHDX_REGION_BAT                                                                            \
	VHDX_GUID(0x2DC27766u, 0xF623u, 0x4200u, 0x9D, 0x64, 0x11, 0x5E, 0x9B, 0xFD, 0x4A, 0x08)
#define VHDX_REGION_METADATA                                                                       \
	VHDX_GUID(0x8B7CA206u, 0x4790u, 0x4B9Au, 0xB8, 0xFE, 0x57, 0x5F, 0x05, 0x0F, 0x88, 0x6E)

/* metadata items */
#define VHDX_ITEM_FILE_PARAMETERS                                                                  \
	VHDX_GUID(0xCAA16737u, 0xFA36u, 0x4D43u, 0xB3, 0xB6, 0x33, 0xF0, 0xAA, 0x44, 0xE7, 0x6B)
#define VHDX_ITEM_VIRTUAL_DISK_SIZE                                                                \
	VHDX_GUID(0x2FA54224u, 0xCD1Bu, 0x4876u, 0xB2, 0x11, 0x5D, 0xBE, 0xD8, 0x3B, 0xF4, 0xB8)
#define VHDX_ITEM_PAGE83_DATA                                                                      \
	VHDX_GUID(0xBECA12ABu, 0xB2E6u, 0x4523u, 0x93, 0xEF, 0xC3, 0x09, 0xE0, 0x00, 0xC7, 0x46)
#define VHDX_ITEM_LOGICAL_SECTOR_SIZE                                                              \
	VHDX_GUID(0x8141BF1Du, 0xA96Fu, 0x4709u, 0xBA, 0x47, 0xF2, 0x33, 0xA8, 0xFA, 0xAB, 0x5F)
#define VHDX_ITEM_PHYSICAL_SECTOR_SIZE                                                             \
	VHDX_GUID(0xCDA348C7u, 0x445Du, 0x4471u, 0x9C, 0xC9, 0xE9, 0x88, 0x52, 0x51, 0xC5, 0x56)
#define VHDX_ITEM_PARENT_LOCATOR                                                                   \
	VHDX_GUID(0xA8D35F2Du, 0xB30Bu, 0x454Du, 0xAB, 0xF7, 0xD3, 0xD8, 0x48, 0x34, 0xAB, 0x0C)

/* parent locator type: a VHDX parent */
#define VHDX_LOCATOR_TYPE_VHDX                                                                     \
	VHDX_GUID(0xB04AEFB7u, 0xD19Eu, 0x4A81u, 0xB7, 0x89, 0x25, 0xB8, 0xE9, 0x44, 0x59, 0x13)

/* ---- layout facts the code relies on ---- */

_Static_assert(VHDX_H_FIELDS_END <= VHDX_HEADER_SIZE, "header fields fit the 4 KiB header");
_Static_assert(VHDX_H_LOG_OFFSET + 8 == VHDX_H_FIELDS_END, "header fields end at 80");
_Static_assert(VHDX_RT_ENTRIES + VHDX_REGION_MAX_ENTRIES * VHDX_RE_SIZE <= VHDX_REGION_TABLE_SIZE,
	       "2047 region entries fit the 64 KiB table");
_Static_assert(VHDX_MT_ENTRIES + VHDX_METADATA_MAX_ENTRIES * VHDX_ME_SIZE <=
		       VHDX_METADATA_TABLE_SIZE,
	       "2047 metadata entries fit the 64 KiB table");
_Static_assert(VHDX_HEADER2_OFFSET + VHDX_HEADER_SIZE <= VHDX_REGION_TABLE1_OFFSET &&
		       VHDX_REGION_TABLE2_OFFSET + VHDX_REGION_TABLE_SIZE <=
			       VHDX_HEADER_SECTION_SIZE,
	       "the header section holds both headers and both region tables");
_Static_assert(VHDX_LE_LAST_FILE_OFFSET + 8 == VHDX_LE_SIZE, "log entry header is 64 bytes");
_Static_assert(VHDX_LD_SEQUENCE + 8 == VHDX_LD_SIZE, "log descriptors are 32 bytes");
_Static_assert(VHDX_LS_SEQUENCE_LOW + 4 == VHDX_LS_SIZE, "log data sectors are 4 KiB");
_Static_assert(sizeof(struct guid) == 16, "GUIDs are 16 bytes on disk");
_Static_assert((uint64_t)VHDX_BITMAP_BLOCK_SIZE * 8 == VHDX_CHUNK_SECTORS,
	       "a sector bitmap block has one bit per sector of a chunk");

#endif
