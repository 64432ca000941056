#include "linux_boot.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "arith.h"
#include "endian.h"
#include "errmsg.h"

#define MIB		    (1024.0 * 1024.0)
#define DEFAULT_SETUP_SECTS 4 /* what a setup_sects of 0 means */
#define ROM_SIGNATURE	    0xAA55
#define ROM_SIZE_UNIT	    512
#define ROM_HEADER	    3	   /* signature + size byte */
#define PROTOCOL_2_10	    0x020A /* pref_address and init_size */

/* ---- the setup header ---- */

static bool is_linux_image(const uint8_t *p, size_t size)
{
	return size >= LINUX_HDR_MAGIC + 4 &&
	       load_le16(p + LINUX_HDR_BOOT_FLAG) == LINUX_BOOT_FLAG &&
	       memcmp(p + LINUX_HDR_MAGIC, LINUX_MAGIC, 4) == 0;
}

static void read_header(const uint8_t *p, size_t size, struct linux_boot_header *h)
{
	unsigned sects = p[LINUX_HDR_SETUP_SECTS] ? p[LINUX_HDR_SETUP_SECTS] : DEFAULT_SETUP_SECTS;
	*h = (struct linux_boot_header){
		.version = load_le16(p + LINUX_HDR_VERSION),
		.loadflags = p[LINUX_HDR_LOADFLAGS],
		.setup_size = (sects + 1) * LINUX_SECTOR,
		.code32_start = load_le32(p + LINUX_HDR_CODE32_START),
		.initrd_addr_max = load_le32(p + LINUX_HDR_INITRD_ADDR_MAX),
		.kernel_alignment = load_le32(p + LINUX_HDR_KERNEL_ALIGN),
		.relocatable = p[LINUX_HDR_RELOCATABLE] != 0,
		.cmdline_size = load_le32(p + LINUX_HDR_CMDLINE_SIZE),
	};
	if (h->version >= PROTOCOL_2_10) {
		h->pref_address = load_le64(p + LINUX_HDR_PREF_ADDRESS);
		h->init_size = load_le32(p + LINUX_HDR_INIT_SIZE);
	}
	if (size > h->setup_size)
		h->kernel_size = size - h->setup_size;
}

/* The checks that need the whole header; h is filled and the setup is in the file. */
static int check_header(const uint8_t *p, const struct linux_boot_header *h, char *err,
			size_t err_size)
{
	if (!(h->loadflags & LINUX_LOADED_HIGH))
		return vdisk_errorf(err, err_size, -EINVAL,
				    "is a zImage (loaded below 1 MiB); only bzImage kernels boot");
	uint64_t syssize = (uint64_t)load_le32(p + LINUX_HDR_SYSSIZE) * 16;
	if (h->kernel_size == 0 || h->kernel_size < syssize)
		return vdisk_errorf(err, err_size, -EINVAL,
				    "is truncated: its header says %llu bytes of protected-mode "
				    "code, the file has %llu",
				    (unsigned long long)syssize,
				    (unsigned long long)h->kernel_size);
	if (h->relocatable && !is_power_of_two(h->kernel_alignment))
		return vdisk_errorf(err, err_size, -EINVAL,
				    "has a kernel_alignment of 0x%x, not a power of two",
				    h->kernel_alignment);
	if (!h->relocatable && h->code32_start != LINUX_BOOT_KERNEL_ADDR)
		return vdisk_errorf(err, err_size, -EINVAL,
				    "is not relocatable and starts at 0x%x, not at 1 MiB",
				    h->code32_start);
	return 0;
}

int linux_boot_parse(const void *image, size_t size, struct linux_boot_header *hdr, char *err,
		     size_t err_size)
{
	const uint8_t *p = image;
	if (!is_linux_image(p, size))
		return vdisk_errorf(err, err_size, -EINVAL,
				    "is not a Linux kernel (no boot flag and \"HdrS\" header)");
	read_header(p, size, hdr);
	if (hdr->version < LINUX_BOOT_MIN_VERSION)
		return vdisk_errorf(err, err_size, -EINVAL,
				    "uses boot protocol %u.%02u; it needs 2.06 or newer (Linux "
				    "2.6.22 and later)",
				    hdr->version >> 8, hdr->version & 0xFF);
	if (hdr->setup_size > LINUX_BOOT_MAX_SETUP)
		return vdisk_errorf(err, err_size, -EINVAL,
				    "has %u bytes of real-mode setup; the protocol allows %u",
				    hdr->setup_size, LINUX_BOOT_MAX_SETUP);
	if (size < hdr->setup_size)
		return vdisk_errorf(err, err_size, -EINVAL,
				    "is truncated: %zu bytes, shorter than its %u-byte setup", size,
				    hdr->setup_size);
	return check_header(p, hdr, err, err_size);
}

/* ---- addresses ---- */

/* Where the kernel runs while it decompresses: a relocatable kernel moves up to its
 * alignment, and never below pref_address (the decompressor's LOAD_PHYSICAL_ADDR). */
static uint64_t runtime_start(const struct linux_boot_header *h)
{
	uint64_t load = LINUX_BOOT_KERNEL_ADDR;
	if (h->relocatable)
		return max_u64(round_up(load, h->kernel_alignment), h->pref_address);
	return h->pref_address ? h->pref_address : load;
}

/* A start above 4 GiB (a hostile pref_address) is capped there: it fits no RAM anyway, and
 * the sum cannot wrap. */
static uint64_t kernel_end(const struct linux_boot_header *h)
{
	uint64_t start = min_u64(runtime_start(h), 1ull << 32);
	return max_u64(LINUX_BOOT_KERNEL_ADDR + h->kernel_size, start + h->init_size);
}

/* Whether the ROM keeps the initrd where [addr, addr + size) puts it: it does when the initrd
 * ends in the page of initrd_addr_max, and otherwise moves it to the top of the RAM the
 * BIOS reports. */
static bool rom_keeps_initrd(const struct linux_boot_header *h, uint64_t addr, uint64_t size)
{
	uint64_t page = ~(uint64_t)(LINUX_BOOT_INITRD_ALIGN - 1);
	return ((addr + size) & page) == (h->initrd_addr_max & page);
}

/* The initrd goes as high as it may, page aligned, its last byte a byte short of the limit
 * (so that it ends in the page of initrd_addr_max when that is the limit). */
static int place_initrd(const struct linux_boot_header *h, uint64_t low_ram_end,
			uint64_t usable_end, uint64_t initrd_size, struct linux_boot_layout *l,
			char *err, size_t err_size)
{
	l->initrd_limit = min_u64(h->initrd_addr_max, usable_end - 1);
	if (initrd_size == 0)
		return 0;
	uint64_t room = l->initrd_limit > l->kernel_end ? l->initrd_limit - l->kernel_end : 0;
	uint64_t addr = 0;
	if (initrd_size <= l->initrd_limit)
		addr = (l->initrd_limit - initrd_size) & ~(uint64_t)(LINUX_BOOT_INITRD_ALIGN - 1);
	if (initrd_size > l->initrd_limit || addr < l->kernel_end)
		return vdisk_errorf(err, err_size, -ENOSPC,
				    "the initrd (%.1f MiB) does not fit: %.1f MiB lie between the "
				    "kernel's end (%.1f MiB) and the highest address it may use "
				    "(%.1f MiB: initrd_addr_max or the end of RAM less %u MiB for "
				    "the firmware); give the VM more memory",
				    initrd_size / MIB, room / MIB, l->kernel_end / MIB,
				    (l->initrd_limit + 1) / MIB, LINUX_BOOT_FW_RESERVE >> 20);
	if (!rom_keeps_initrd(h, addr, initrd_size) && h->initrd_addr_max < low_ram_end - 1)
		return vdisk_errorf(err, err_size, -ENOSPC,
				    "the loader ROM would move the initrd above the kernel's "
				    "initrd_addr_max (0x%x, not the last byte of a page or too "
				    "close to the end of RAM); give the VM at most %u MiB",
				    h->initrd_addr_max,
				    (unsigned)((h->initrd_addr_max + 1ull) >> 20));
	l->initrd_addr = (uint32_t)addr;
	l->initrd_size = (uint32_t)initrd_size;
	return 0;
}

int linux_boot_plan(const struct linux_boot_header *hdr, uint64_t low_ram_end, size_t cmdline_chars,
		    uint64_t initrd_size, struct linux_boot_layout *out, char *err, size_t err_size)
{
	size_t max_chars = min_u64(hdr->cmdline_size, LINUX_BOOT_MAX_CMDLINE - 1);
	if (cmdline_chars > max_chars)
		return vdisk_errorf(err, err_size, -E2BIG,
				    "the command line has %zu characters; the kernel takes at "
				    "most %zu",
				    cmdline_chars, max_chars);
	*out = (struct linux_boot_layout){ .setup_addr = LINUX_BOOT_SETUP_ADDR,
					   .cmdline_addr = LINUX_BOOT_CMDLINE_ADDR,
					   .kernel_addr = LINUX_BOOT_KERNEL_ADDR,
					   .cmdline_len = (uint32_t)cmdline_chars + 1,
					   .kernel_end = kernel_end(hdr) };
	uint64_t usable_end =
		low_ram_end > LINUX_BOOT_FW_RESERVE ? low_ram_end - LINUX_BOOT_FW_RESERVE : 0;
	if (out->kernel_end > usable_end)
		return vdisk_errorf(err, err_size, -ENOSPC,
				    "the kernel needs RAM up to %.1f MiB while it starts (the VM "
				    "has %.1f MiB below 4 GiB, %u MiB of it kept for the "
				    "firmware); give the VM more memory",
				    out->kernel_end / MIB, low_ram_end / MIB,
				    LINUX_BOOT_FW_RESERVE >> 20);
	return place_initrd(hdr, low_ram_end, usable_end, initrd_size, out, err, err_size);
}

void linux_boot_patch_setup(uint8_t *setup, const struct linux_boot_header *hdr,
			    const struct linux_boot_layout *layout)
{
	store_le16(setup + LINUX_HDR_VID_MODE, LINUX_VID_MODE_NORMAL);
	setup[LINUX_HDR_TYPE_OF_LOADER] = LINUX_BOOT_LOADER_ID;
	setup[LINUX_HDR_LOADFLAGS] = hdr->loadflags | LINUX_CAN_USE_HEAP;
	store_le16(setup + LINUX_HDR_HEAP_END_PTR, LINUX_BOOT_HEAP_END_PTR);
	store_le32(setup + LINUX_HDR_CMD_LINE_PTR, layout->cmdline_addr);
	store_le32(setup + LINUX_HDR_RAMDISK_IMAGE, layout->initrd_addr);
	store_le32(setup + LINUX_HDR_RAMDISK_SIZE, layout->initrd_size);
	if (hdr->relocatable)
		store_le32(setup + LINUX_HDR_CODE32_START, layout->kernel_addr);
}

/* ---- the option ROM ---- */

int linux_boot_check_rom(const void *rom, size_t size, char *err, size_t err_size)
{
	const uint8_t *p = rom;
	if (size < ROM_HEADER || load_le16(p) != ROM_SIGNATURE)
		return vdisk_errorf(err, err_size, -EINVAL,
				    "is not an option ROM (no 0x55 0xAA signature)");
	size_t len = (size_t)p[2] * ROM_SIZE_UNIT;
	if (len == 0 || len > size)
		return vdisk_errorf(err, err_size, -EINVAL,
				    "is not an option ROM: its header says %zu bytes, the file "
				    "has %zu",
				    len, size);
	uint8_t sum = 0;
	for (size_t i = 0; i < len; i++)
		sum += p[i];
	if (sum)
		return vdisk_errorf(err, err_size, -EINVAL,
				    "is not an option ROM: its checksum is wrong");
	return 0;
}

/* ---- fw_cfg ---- */

/* An address, a size and the data, as the ROM reads them. */
static int add_blob(struct fw_cfg *fw, uint16_t addr_key, uint16_t size_key, uint16_t data_key,
		    uint32_t addr, const void *data, uint32_t len)
{
	int ret = fw_cfg_add_u32(fw, addr_key, addr);
	if (ret == 0)
		ret = fw_cfg_add_u32(fw, size_key, len);
	if (ret == 0)
		ret = fw_cfg_add_item(fw, data_key, data, len);
	return ret;
}

int linux_boot_publish(struct fw_cfg *fw, const struct linux_boot_input *in,
		       const struct linux_boot_header *hdr, const struct linux_boot_layout *l)
{
	uint8_t *setup = malloc(hdr->setup_size);
	if (!setup)
		return -ENOMEM;
	memcpy(setup, in->kernel, hdr->setup_size);
	linux_boot_patch_setup(setup, hdr, l);
	const char *cmdline = in->cmdline ? in->cmdline : "";
	int ret = add_blob(fw, FW_CFG_SETUP_ADDR, FW_CFG_SETUP_SIZE, FW_CFG_SETUP_DATA,
			   l->setup_addr, setup, hdr->setup_size);
	if (ret == 0)
		ret = add_blob(fw, FW_CFG_KERNEL_ADDR, FW_CFG_KERNEL_SIZE, FW_CFG_KERNEL_DATA,
			       l->kernel_addr, in->kernel + hdr->setup_size,
			       (uint32_t)hdr->kernel_size);
	if (ret == 0)
		ret = add_blob(fw, FW_CFG_INITRD_ADDR, FW_CFG_INITRD_SIZE, FW_CFG_INITRD_DATA,
			       l->initrd_addr, in->initrd, l->initrd_size);
	if (ret == 0)
		ret = add_blob(fw, FW_CFG_CMDLINE_ADDR, FW_CFG_CMDLINE_SIZE, FW_CFG_CMDLINE_DATA,
			       l->cmdline_addr, cmdline, l->cmdline_len);
	if (ret == 0 && in->rom)
		ret = fw_cfg_add_file(fw, LINUX_BOOT_ROM_FILE, in->rom, in->rom_size);
	free(setup);
	return ret;
}

/* ---- files ---- */

static int read_all(int fd, uint8_t *buf, size_t len)
{
	size_t done = 0;
	while (done < len) {
		ssize_t n = pread(fd, buf + done, len - done, (off_t)done);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return -errno;
		if (n == 0)
			return -EIO; /* it shrank under us */
		done += (size_t)n;
	}
	return 0;
}

int linux_boot_read_file(const char *path, size_t max, uint8_t **buf, size_t *len)
{
	*buf = NULL;
	*len = 0;
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	struct stat st;
	int ret = fstat(fd, &st) < 0 ? -errno : 0;
	if (ret == 0 && !S_ISREG(st.st_mode))
		ret = -EINVAL;
	if (ret == 0) {
		*len = (size_t)st.st_size;
		ret = (uint64_t)st.st_size > max ? -EFBIG : 0;
	}
	if (ret == 0) {
		*buf = malloc(*len ? *len : 1);
		ret = *buf ? read_all(fd, *buf, *len) : -ENOMEM;
	}
	close(fd);
	if (ret < 0) {
		free(*buf);
		*buf = NULL;
		if (ret != -EFBIG)
			*len = 0;
	}
	return ret;
}
