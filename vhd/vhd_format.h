/* VHD ("Virtual PC" format, v1) on-disk layout. Everything is big-endian; fields are read
 * and written through storage/endian.h at the offsets below. */
#ifndef HV_VHD_FORMAT_H
#define HV_VHD_FORMAT_H

#include <stdint.h>

#include "geometry.h"

#define VHD_SECTOR 512u
#define VHD_FOOTER_SIZE 512u
#define VHD_HEADER_SIZE 1024u
#define VHD_COOKIE "conectix"
#define VHD_HEADER_COOKIE "cxsparse"
#define VHD_FEATURES_RESERVED 0x00000002u
#define VHD_VERSION 0x00010000u
#define VHD_HEADER_VERSION 0x00010000u
#define VHD_NO_OFFSET UINT64_C(0xFFFFFFFFFFFFFFFF)
#define VHD_BAT_UNUSED 0xFFFFFFFFu
#define VHD_LOCATORS 8
#define VHD_PARENT_NAME_BYTES 512u /* UTF-16 big-endian */
#define VHD_MAX_SIZE (UINT64_C(2040) << 30)
#define VHD_MAX_CHS_SECTORS VDISK_MAX_CHS_SECTORS
#define VHD_EPOCH 946684800 /* 2000-01-01 00:00:00 UTC, the VHD timestamp origin */
#define VHD_DEFAULT_BLOCK_SIZE (2u << 20)

enum vhd_disk_type {
	VHD_TYPE_FIXED = 2,
	VHD_TYPE_DYNAMIC = 3,
	VHD_TYPE_DIFFERENCING = 4,
};

/* Footer field offsets */
enum {
	VHD_F_COOKIE = 0,            /* char[8] */
	VHD_F_FEATURES = 8,          /* u32 */
	VHD_F_VERSION = 12,          /* u32 */
	VHD_F_DATA_OFFSET = 16,      /* u64: dynamic header, or all ones for fixed */
	VHD_F_TIMESTAMP = 24,        /* u32: seconds since VHD_EPOCH */
	VHD_F_CREATOR_APP = 28,      /* char[4] */
	VHD_F_CREATOR_VERSION = 32,  /* u32 */
	VHD_F_CREATOR_HOST_OS = 36,  /* u32: "Wi2k" or "Mac " */
	VHD_F_ORIGINAL_SIZE = 40,    /* u64 */
	VHD_F_CURRENT_SIZE = 48,     /* u64 */
	VHD_F_CYLINDERS = 56,        /* u16 */
	VHD_F_HEADS = 58,            /* u8 */
	VHD_F_SECTORS = 59,          /* u8: sectors per track */
	VHD_F_DISK_TYPE = 60,        /* u32 */
	VHD_F_CHECKSUM = 64,         /* u32 */
	VHD_F_UNIQUE_ID = 68,        /* u8[16] */
	VHD_F_SAVED_STATE = 84,      /* u8 */
};

/* Dynamic header field offsets */
enum {
	VHD_H_COOKIE = 0,             /* char[8] */
	VHD_H_DATA_OFFSET = 8,        /* u64: all ones */
	VHD_H_TABLE_OFFSET = 16,      /* u64: BAT */
	VHD_H_VERSION = 24,           /* u32 */
	VHD_H_MAX_TABLE_ENTRIES = 28, /* u32 */
	VHD_H_BLOCK_SIZE = 32,        /* u32 */
	VHD_H_CHECKSUM = 36,          /* u32 */
	VHD_H_PARENT_ID = 40,         /* u8[16] */
	VHD_H_PARENT_TIMESTAMP = 56,  /* u32 */
	VHD_H_PARENT_NAME = 64,       /* UTF-16BE [256] */
	VHD_H_LOCATORS = 576,         /* 8 x 24 bytes */
};

/* Parent locator entry (24 bytes each, at VHD_H_LOCATORS + 24 * i) */
enum {
	VHD_L_CODE = 0,        /* u32 platform code */
	VHD_L_DATA_SPACE = 4,  /* u32: sectors reserved (some writers store bytes) */
	VHD_L_DATA_LENGTH = 8, /* u32: bytes of locator data */
	VHD_L_DATA_OFFSET = 16, /* u64 */
	VHD_LOCATOR_SIZE = 24,
};

#define VHD_PLATFORM_NONE 0u
#define VHD_PLATFORM_W2RU 0x57327275u /* "W2ru": relative Windows path, UTF-16LE */
#define VHD_PLATFORM_W2KU 0x57326B75u /* "W2ku": absolute Windows path, UTF-16LE */
#define VHD_PLATFORM_WI2R 0x57693272u /* "Wi2r": deprecated relative, ANSI */
#define VHD_PLATFORM_WI2K 0x5769326Bu /* "Wi2k": deprecated absolute, ANSI */
#define VHD_PLATFORM_MAC 0x4D616320u  /* "Mac ": Mac OS alias blob */
#define VHD_PLATFORM_MACX 0x4D616358u /* "MacX": file URL, UTF-8 */

#define VHD_HOST_OS_WINDOWS 0x5769326Bu /* "Wi2k" */

#endif
