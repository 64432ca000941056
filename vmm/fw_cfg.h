/* fw_cfg: the firmware configuration device SeaBIOS and OVMF read their platform
 * description from (CPU count, memory map, boot order, ACPI tables, ...).
 *
 * Guest interface, at a base port (GEN1_FW_CFG_PORT):
 *   base + 0   selector: a 16-bit write selects an item and rewinds it;
 *   base + 1   data: each 1-byte read returns the next byte (0 past the end);
 *   base + 4   DMA address, 8 bytes, big-endian: a 32-bit write at +4 latches the high
 *              half, a 32-bit write at +8 (low half) or a 64-bit write at +4 runs the
 *              transfer described at that guest address; reads return "QEMU CFG".
 * A DMA descriptor is 16 big-endian bytes in guest RAM {u32 control, u32 length,
 * u64 address}; control is written back as 0 or FW_CFG_DMA_ERROR when done.
 *
 * Items are numeric keys (little-endian integers by convention) or named files listed in
 * the directory at FW_CFG_FILE_DIR, sorted by name, with keys from FW_CFG_FILE_FIRST.
 * Every guest access runs under the device lock, so several vCPUs may use it at once.
 */
#ifndef HV_VMM_FW_CFG_H
#define HV_VMM_FW_CFG_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "dev.h"

/* Well-known keys. */
#define FW_CFG_SIGNATURE      0x00 /* "QEMU" */
#define FW_CFG_ID	      0x01 /* u32: FW_CFG_ID_TRADITIONAL | FW_CFG_ID_DMA */
#define FW_CFG_UUID	      0x02
#define FW_CFG_NOGRAPHIC      0x04 /* u16 */
#define FW_CFG_NB_CPUS	      0x05 /* u16 */
#define FW_CFG_BOOT_MENU      0x0E /* u16 */
#define FW_CFG_MAX_CPUS	      0x0F /* u16 */
#define FW_CFG_FILE_DIR	      0x19
#define FW_CFG_FILE_FIRST     0x20
#define FW_CFG_IRQ0_OVERRIDE  0x8002 /* u32 */
#define FW_CFG_ID_TRADITIONAL 0x01
#define FW_CFG_ID_DMA	      0x02

#define FW_CFG_MAX_FILES 256 /* keys FW_CFG_FILE_FIRST .. + 255 */
#define FW_CFG_NAME_SIZE 56  /* a file name with its NUL */
#define FW_CFG_DIR_ENTRY 64  /* u32 size, u16 key, u16 reserved, name[56]; big-endian */

/* Port offsets from the base. */
#define FW_CFG_PORT_SELECTOR 0
#define FW_CFG_PORT_DATA     1
#define FW_CFG_PORT_DMA	     4
#define FW_CFG_PORT_DMA_LEN  8

/* DMA control bits; SELECT carries the key in bits 31:16. */
#define FW_CFG_DMA_ERROR  0x01
#define FW_CFG_DMA_READ	  0x02
#define FW_CFG_DMA_SKIP	  0x04
#define FW_CFG_DMA_SELECT 0x08
#define FW_CFG_DMA_WRITE  0x10
#define FW_CFG_DMA_DESC	  16

struct fw_cfg;

/* A device with the signature, ID and an empty directory. DMA goes through mem, which must
 * outlive the device. Returns 0 or -ENOMEM. */
int fw_cfg_create(const struct guest_mem *mem, struct fw_cfg **out);
void fw_cfg_destroy(struct fw_cfg *fw);

/* Registers the selector/data ports at base and the DMA address at base + 4.
 * Returns 0 or dev_bus_register's error. */
int fw_cfg_register(struct fw_cfg *fw, struct dev_bus *bus, uint16_t base);

/* Adds a numeric item (a copy of data). Returns 0, -EINVAL for a key the device owns
 * (signature, ID, directory, file keys) or data NULL with len > 0, -EEXIST, -EFBIG when len
 * does not fit 32 bits, -ENOMEM. */
int fw_cfg_add_item(struct fw_cfg *fw, uint16_t key, const void *data, size_t len);
/* Numeric items are little-endian integers: fw_cfg_add_item of their bytes. */
int fw_cfg_add_u16(struct fw_cfg *fw, uint16_t key, uint16_t v);
int fw_cfg_add_u32(struct fw_cfg *fw, uint16_t key, uint32_t v);

/* Adds a named file (a copy of data); the guest may only read it. Returns 0, -EINVAL for a
 * name that is empty or not shorter than FW_CFG_NAME_SIZE, -EEXIST, -ENOSPC when
 * FW_CFG_MAX_FILES are already there, -EFBIG, -ENOMEM. Files are keyed in name order, so
 * add them all before the guest reads the directory. */
int fw_cfg_add_file(struct fw_cfg *fw, const char *name, const void *data, size_t len);
/* The same for a file the guest may also overwrite in place with DMA WRITE. */
int fw_cfg_add_writable_file(struct fw_cfg *fw, const char *name, const void *data, size_t len);

/* Replaces a file's contents (its key stays). Returns 0, -ENOENT, -EFBIG, -ENOMEM. */
int fw_cfg_update_file(struct fw_cfg *fw, const char *name, const void *data, size_t len);

/* Copies up to len bytes of a file (what the guest wrote, for a writable one) into buf and
 * returns the file's size, or -ENOENT. */
ssize_t fw_cfg_read_file(struct fw_cfg *fw, const char *name, void *buf, size_t len);

/* fn(opaque) runs, under the device lock, when the guest first selects `name` after a reset
 * (or after creation), before any byte is read: it may call fw_cfg_update_file to
 * regenerate the contents. Returns 0 or -ENOENT. */
int fw_cfg_set_select_hook(struct fw_cfg *fw, const char *name, void (*fn)(void *), void *opaque);

/* A VM reset: selects the signature, clears the DMA address latch and re-arms the hooks. */
void fw_cfg_reset(struct fw_cfg *fw);

#endif
