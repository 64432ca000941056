#include "fw_cfg.h"

#include <errno.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "arith.h"
#include "endian.h"

struct item {
	uint16_t key; /* numeric items only; a file's key is its place in the sorted list */
	char name[FW_CFG_NAME_SIZE];
	uint8_t *data;
	size_t len;
	bool writable;
	void (*hook)(void *);
	void *hook_opaque;
	bool hook_armed;
};

struct fw_cfg {
	/* Recursive: a select hook runs under the lock and may update its file. */
	pthread_mutex_t lock;
	const struct guest_mem *mem;
	struct item *items; /* numeric, including the signature, ID and directory */
	unsigned nitems;
	struct item files[FW_CFG_MAX_FILES]; /* sorted by name */
	unsigned nfiles;
	uint16_t cur_key;
	size_t cur_offset;
	uint64_t dma_addr; /* the high half latched by a write at +4 */
};

static const char dma_signature[8] = "QEMU CFG";

/* ---- items ---- */

static bool is_file_key(uint16_t key)
{
	return key >= FW_CFG_FILE_FIRST && key - FW_CFG_FILE_FIRST < FW_CFG_MAX_FILES;
}

static struct item *find_key(struct fw_cfg *fw, uint16_t key)
{
	if (is_file_key(key)) {
		unsigned at = key - FW_CFG_FILE_FIRST;
		return at < fw->nfiles ? &fw->files[at] : NULL;
	}
	for (unsigned i = 0; i < fw->nitems; i++)
		if (fw->items[i].key == key)
			return &fw->items[i];
	return NULL;
}

static struct item *find_file(struct fw_cfg *fw, const char *name)
{
	for (unsigned i = 0; i < fw->nfiles; i++)
		if (strcmp(fw->files[i].name, name) == 0)
			return &fw->files[i];
	return NULL;
}

/* Replaces the item's contents with a copy of data. */
static int set_data(struct item *it, const void *data, size_t len)
{
	if (len > UINT32_MAX)
		return -EFBIG;
	if (len && !data)
		return -EINVAL;
	uint8_t *copy = malloc(len ? len : 1);
	if (!copy)
		return -ENOMEM;
	if (len)
		memcpy(copy, data, len);
	free(it->data);
	it->data = copy;
	it->len = len;
	return 0;
}

/* The directory item: a big-endian count, then one entry per file in key order. */
static int rebuild_directory(struct fw_cfg *fw)
{
	size_t len = 4 + (size_t)fw->nfiles * FW_CFG_DIR_ENTRY;
	uint8_t *dir = calloc(1, len);
	if (!dir)
		return -ENOMEM;
	store_be32(dir, fw->nfiles);
	for (unsigned i = 0; i < fw->nfiles; i++) {
		uint8_t *e = dir + 4 + (size_t)i * FW_CFG_DIR_ENTRY;
		store_be32(e, (uint32_t)fw->files[i].len);
		store_be16(e + 4, (uint16_t)(FW_CFG_FILE_FIRST + i));
		memcpy(e + 8, fw->files[i].name, FW_CFG_NAME_SIZE);
	}
	struct item *it = find_key(fw, FW_CFG_FILE_DIR);
	free(it->data);
	it->data = dir;
	it->len = len;
	return 0;
}

static int append_item(struct fw_cfg *fw, uint16_t key, const void *data, size_t len)
{
	struct item *grown = realloc(fw->items, (fw->nitems + 1) * sizeof(*grown));
	if (!grown)
		return -ENOMEM;
	fw->items = grown;
	struct item *it = &fw->items[fw->nitems];
	memset(it, 0, sizeof(*it));
	it->key = key;
	int ret = set_data(it, data, len);
	if (ret == 0)
		fw->nitems++;
	return ret;
}

int fw_cfg_create(const struct guest_mem *mem, struct fw_cfg **out)
{
	struct fw_cfg *fw = calloc(1, sizeof(*fw));
	if (!fw)
		return -ENOMEM;
	pthread_mutexattr_t attr;
	pthread_mutexattr_init(&attr);
	pthread_mutexattr_settype(&attr, PTHREAD_MUTEX_RECURSIVE);
	pthread_mutex_init(&fw->lock, &attr);
	pthread_mutexattr_destroy(&attr);
	fw->mem = mem;
	uint8_t id[4];
	store_le32(id, FW_CFG_ID_TRADITIONAL | FW_CFG_ID_DMA);
	int ret = append_item(fw, FW_CFG_SIGNATURE, "QEMU", 4);
	if (ret == 0)
		ret = append_item(fw, FW_CFG_ID, id, sizeof(id));
	if (ret == 0)
		ret = append_item(fw, FW_CFG_FILE_DIR, NULL, 0);
	if (ret == 0)
		ret = rebuild_directory(fw);
	if (ret < 0) {
		fw_cfg_destroy(fw);
		return ret;
	}
	*out = fw;
	return 0;
}

void fw_cfg_destroy(struct fw_cfg *fw)
{
	if (!fw)
		return;
	for (unsigned i = 0; i < fw->nitems; i++)
		free(fw->items[i].data);
	for (unsigned i = 0; i < fw->nfiles; i++)
		free(fw->files[i].data);
	free(fw->items);
	pthread_mutex_destroy(&fw->lock);
	free(fw);
}

int fw_cfg_add_item(struct fw_cfg *fw, uint16_t key, const void *data, size_t len)
{
	if (key == FW_CFG_SIGNATURE || key == FW_CFG_ID || key == FW_CFG_FILE_DIR ||
	    is_file_key(key) || (len && !data))
		return -EINVAL;
	pthread_mutex_lock(&fw->lock);
	int ret = find_key(fw, key) ? -EEXIST : append_item(fw, key, data, len);
	pthread_mutex_unlock(&fw->lock);
	return ret;
}

int fw_cfg_add_u16(struct fw_cfg *fw, uint16_t key, uint16_t v)
{
	uint8_t b[2];
	store_le16(b, v);
	return fw_cfg_add_item(fw, key, b, sizeof(b));
}

int fw_cfg_add_u32(struct fw_cfg *fw, uint16_t key, uint32_t v)
{
	uint8_t b[4];
	store_le32(b, v);
	return fw_cfg_add_item(fw, key, b, sizeof(b));
}

static int insert_file(struct fw_cfg *fw, const char *name, const void *data, size_t len,
		       bool writable)
{
	if (!name || !name[0] || strlen(name) >= FW_CFG_NAME_SIZE)
		return -EINVAL;
	if (find_file(fw, name))
		return -EEXIST;
	if (fw->nfiles == FW_CFG_MAX_FILES)
		return -ENOSPC;
	struct item it = { .writable = writable };
	strcpy(it.name, name);
	int ret = set_data(&it, data, len);
	if (ret < 0)
		return ret;
	unsigned at = 0;
	while (at < fw->nfiles && strcmp(fw->files[at].name, name) < 0)
		at++;
	memmove(&fw->files[at + 1], &fw->files[at], (fw->nfiles - at) * sizeof(it));
	fw->files[at] = it;
	fw->nfiles++;
	ret = rebuild_directory(fw);
	if (ret < 0) { /* take it out again */
		fw->nfiles--;
		memmove(&fw->files[at], &fw->files[at + 1], (fw->nfiles - at) * sizeof(it));
		free(it.data);
	}
	return ret;
}

static int add_file(struct fw_cfg *fw, const char *name, const void *data, size_t len,
		    bool writable)
{
	pthread_mutex_lock(&fw->lock);
	int ret = insert_file(fw, name, data, len, writable);
	pthread_mutex_unlock(&fw->lock);
	return ret;
}

int fw_cfg_add_file(struct fw_cfg *fw, const char *name, const void *data, size_t len)
{
	return add_file(fw, name, data, len, false);
}

int fw_cfg_add_writable_file(struct fw_cfg *fw, const char *name, const void *data, size_t len)
{
	return add_file(fw, name, data, len, true);
}

int fw_cfg_update_file(struct fw_cfg *fw, const char *name, const void *data, size_t len)
{
	pthread_mutex_lock(&fw->lock);
	struct item *it = find_file(fw, name);
	int ret = it ? set_data(it, data, len) : -ENOENT;
	if (ret == 0)
		ret = rebuild_directory(fw);
	pthread_mutex_unlock(&fw->lock);
	return ret;
}

ssize_t fw_cfg_read_file(struct fw_cfg *fw, const char *name, void *buf, size_t len)
{
	pthread_mutex_lock(&fw->lock);
	struct item *it = find_file(fw, name);
	ssize_t ret = -ENOENT;
	if (it) {
		if (len && it->len)
			memcpy(buf, it->data, min_u64(len, it->len));
		ret = (ssize_t)it->len;
	}
	pthread_mutex_unlock(&fw->lock);
	return ret;
}

int fw_cfg_set_select_hook(struct fw_cfg *fw, const char *name, void (*fn)(void *), void *opaque)
{
	pthread_mutex_lock(&fw->lock);
	struct item *it = find_file(fw, name);
	if (it) {
		it->hook = fn;
		it->hook_opaque = opaque;
		it->hook_armed = true;
	}
	pthread_mutex_unlock(&fw->lock);
	return it ? 0 : -ENOENT;
}

void fw_cfg_reset(struct fw_cfg *fw)
{
	pthread_mutex_lock(&fw->lock);
	fw->cur_key = FW_CFG_SIGNATURE;
	fw->cur_offset = 0;
	fw->dma_addr = 0;
	for (unsigned i = 0; i < fw->nfiles; i++)
		fw->files[i].hook_armed = fw->files[i].hook != NULL;
	pthread_mutex_unlock(&fw->lock);
}

/* ---- guest interface (called with the lock held) ---- */

static void select_key(struct fw_cfg *fw, uint16_t key)
{
	fw->cur_key = key;
	fw->cur_offset = 0;
	struct item *it = find_key(fw, key);
	if (it && it->hook_armed) {
		it->hook_armed = false;
		it->hook(it->hook_opaque);
	}
}

/* The bytes of the current item from the offset on (0 of them past its end or for a key
 * nothing answers). */
static size_t current_avail(struct fw_cfg *fw, struct item **out)
{
	struct item *it = find_key(fw, fw->cur_key);
	*out = it;
	return it && fw->cur_offset < it->len ? it->len - fw->cur_offset : 0;
}

static uint8_t read_data_byte(struct fw_cfg *fw)
{
	struct item *it;
	if (!current_avail(fw, &it))
		return 0;
	return it->data[fw->cur_offset++];
}

/* Zeroes guest [gpa, gpa + len), all or nothing. */
static int zero_guest(const struct guest_mem *mem, uint64_t gpa, uint64_t len)
{
	struct iovec iov[GUEST_MEM_MAX_REGIONS];
	int n = 0;
	int ret = guest_mem_iov(mem, gpa, len, iov, GUEST_MEM_MAX_REGIONS, &n);
	if (ret < 0)
		return ret;
	for (int i = 0; i < n; i++)
		memset(iov[i].iov_base, 0, iov[i].iov_len);
	return 0;
}

/* READ copies what the item has and zero-fills the rest; WRITE must fit a writable item;
 * SKIP only moves the offset. Returns the control value to write back. */
static uint32_t dma_data(struct fw_cfg *fw, uint32_t op, uint64_t addr, uint32_t len)
{
	struct item *it;
	uint32_t n = (uint32_t)min_u64(len, current_avail(fw, &it));
	if (len == 0)
		return 0;
	if (op == FW_CFG_DMA_WRITE) {
		if (!it || !it->writable || n != len ||
		    guest_mem_read(fw->mem, addr, it->data + fw->cur_offset, n) < 0)
			return FW_CFG_DMA_ERROR;
	} else if (op == FW_CFG_DMA_READ) {
		if ((n && guest_mem_write(fw->mem, addr, it->data + fw->cur_offset, n) < 0) ||
		    (len > n && zero_guest(fw->mem, addr + n, len - n) < 0))
			return FW_CFG_DMA_ERROR;
	}
	fw->cur_offset += n;
	return 0;
}

static void dma_transfer(struct fw_cfg *fw, uint64_t desc_gpa)
{
	uint8_t desc[FW_CFG_DMA_DESC];
	uint32_t result = FW_CFG_DMA_ERROR;
	if (guest_mem_read(fw->mem, desc_gpa, desc, sizeof(desc)) == 0) {
		uint32_t control = load_be32(desc);
		if (control & FW_CFG_DMA_SELECT)
			select_key(fw, (uint16_t)(control >> 16));
		/* One operation per descriptor, READ first, as QEMU decides. */
		uint32_t op = control & FW_CFG_DMA_READ	   ? FW_CFG_DMA_READ
			      : control & FW_CFG_DMA_WRITE ? FW_CFG_DMA_WRITE
			      : control & FW_CFG_DMA_SKIP  ? FW_CFG_DMA_SKIP
							   : 0;
		result = op ? dma_data(fw, op, load_be64(desc + 8), load_be32(desc + 4)) : 0;
	}
	uint8_t control[4];
	store_be32(control, result);
	/* Nothing more can be reported when the descriptor itself is outside RAM. */
	(void)guest_mem_write(fw->mem, desc_gpa, control, sizeof(control));
}

/* The guest's big-endian register bytes as a number: a port access carries them in
 * little-endian order. */
static uint64_t register_be(uint64_t value, unsigned size)
{
	uint8_t b[8];
	store_le64(b, value);
	return size == 8 ? load_be64(b) : load_be32(b);
}

static void dma_write(void *opaque, uint64_t offset, unsigned size, uint64_t value)
{
	struct fw_cfg *fw = opaque;
	pthread_mutex_lock(&fw->lock);
	if (size == 4 && offset == 0) {
		fw->dma_addr = register_be(value, 4) << 32;
	} else if ((size == 4 && offset == 4) || (size == 8 && offset == 0)) {
		uint64_t desc =
			size == 8 ? register_be(value, 8) : fw->dma_addr | register_be(value, 4);
		fw->dma_addr = 0;
		dma_transfer(fw, desc);
	}
	pthread_mutex_unlock(&fw->lock);
}

static uint64_t dma_read(void *opaque, uint64_t offset, unsigned size)
{
	(void)opaque;
	uint8_t b[8] = { 0 };
	memcpy(b, dma_signature + offset, min_u64(size, sizeof(b) - offset));
	return load_le64(b);
}

static void port_write(void *opaque, uint64_t offset, unsigned size, uint64_t value)
{
	struct fw_cfg *fw = opaque;
	if (offset != FW_CFG_PORT_SELECTOR || size != 2)
		return; /* data port writes are obsolete: ignored */
	pthread_mutex_lock(&fw->lock);
	select_key(fw, (uint16_t)value);
	pthread_mutex_unlock(&fw->lock);
}

/* The data port returns the next byte; the selector reads as 0. */
static uint64_t port_read(void *opaque, uint64_t offset, unsigned size)
{
	struct fw_cfg *fw = opaque;
	(void)size; /* 1: the range is 2 ports, so only the selector could be read wider */
	if (offset != FW_CFG_PORT_DATA)
		return 0;
	pthread_mutex_lock(&fw->lock);
	uint8_t value = read_data_byte(fw);
	pthread_mutex_unlock(&fw->lock);
	return value;
}

static const struct dev_ops port_ops = { .read = port_read, .write = port_write };
static const struct dev_ops dma_ops = { .read = dma_read, .write = dma_write };

int fw_cfg_register(struct fw_cfg *fw, struct dev_bus *bus, uint16_t base)
{
	int ret = dev_bus_register(bus, DEV_PIO, base, 2, &port_ops, fw, "fw_cfg");
	if (ret == 0)
		ret = dev_bus_register(bus, DEV_PIO, (uint64_t)base + FW_CFG_PORT_DMA,
				       FW_CFG_PORT_DMA_LEN, &dma_ops, fw, "fw_cfg-dma");
	return ret;
}
