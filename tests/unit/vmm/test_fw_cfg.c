/* fw_cfg driven the way SeaBIOS and OVMF drive it, through its ports with simulated guest
 * memory: the PIO protocol (signature, ID, directory walk, byte reads), DMA read, skip,
 * select and write, and hostile descriptors that must end in the ERROR bit or zero-fill
 * without touching anything outside guest RAM (the sanitizer build checks the host side,
 * canaries the guest side). */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dev.h"
#include "endian.h"
#include "fw_cfg.h"
#include "gen1_layout.h"

#define LOW_SIZE  (1u << 20) /* guest RAM at 0 */
#define HIGH_GPA  0x100000000ull
#define HIGH_SIZE (64u << 10)
#define PORT	  GEN1_FW_CFG_PORT
#define DESC	  0x1000 /* where the tests put DMA descriptors */
#define BUF	  0x2000 /* and DMA buffers */

struct rig {
	uint8_t *low, *high;
	struct guest_mem mem;
	struct dev_bus bus;
	struct fw_cfg *fw;
};

static int rig_setup(void **state)
{
	struct rig *r = calloc(1, sizeof(*r));
	assert_non_null(r);
	r->low = calloc(1, LOW_SIZE);
	r->high = calloc(1, HIGH_SIZE);
	assert_non_null(r->low);
	assert_non_null(r->high);
	assert_int_equal(guest_mem_add(&r->mem, 0, LOW_SIZE, r->low), 0);
	assert_int_equal(guest_mem_add(&r->mem, HIGH_GPA, HIGH_SIZE, r->high), 0);
	dev_bus_init(&r->bus);
	assert_int_equal(fw_cfg_create(&r->mem, &r->fw), 0);
	assert_int_equal(fw_cfg_register(r->fw, &r->bus, PORT), 0);
	*state = r;
	return 0;
}

static int rig_teardown(void **state)
{
	struct rig *r = *state;
	fw_cfg_destroy(r->fw);
	dev_bus_destroy(&r->bus);
	free(r->low);
	free(r->high);
	free(r);
	return 0;
}

/* ---- the guest side ---- */

static void select_key(struct rig *r, uint16_t key)
{
	dev_bus_write(&r->bus, DEV_PIO, PORT, 2, key);
}

/* `rep insb` on the data port: one 1-byte access per byte. */
static void read_bytes(struct rig *r, void *buf, size_t len)
{
	uint8_t *p = buf;
	for (size_t i = 0; i < len; i++)
		p[i] = (uint8_t)dev_bus_read(&r->bus, DEV_PIO, PORT + 1, 1);
}

/* outl of a big-endian register half: the port carries the bytes in memory order. */
static void out_be32(struct rig *r, uint16_t port, uint32_t v)
{
	uint8_t b[4];
	store_be32(b, v);
	dev_bus_write(&r->bus, DEV_PIO, port, 4, load_le32(b));
}

static void put_desc(struct rig *r, uint64_t gpa, uint32_t control, uint32_t len, uint64_t addr)
{
	uint8_t d[FW_CFG_DMA_DESC];
	store_be32(d, control);
	store_be32(d + 4, len);
	store_be64(d + 8, addr);
	assert_int_equal(guest_mem_write(&r->mem, gpa, d, sizeof(d)), 0);
}

static uint32_t desc_control(struct rig *r, uint64_t gpa)
{
	uint8_t b[4];
	assert_int_equal(guest_mem_read(&r->mem, gpa, b, 4), 0);
	return load_be32(b);
}

/* Starts the transfer as OVMF does (high half, then low half); SeaBIOS writes only the low
 * half, which the high == 0 case covers. */
static void dma_start(struct rig *r, uint64_t desc_gpa)
{
	if (desc_gpa >> 32)
		out_be32(r, PORT + 4, (uint32_t)(desc_gpa >> 32));
	out_be32(r, PORT + 8, (uint32_t)desc_gpa);
}

/* One descriptor at DESC; returns the control written back. */
static uint32_t dma(struct rig *r, uint32_t control, uint32_t len, uint64_t addr)
{
	put_desc(r, DESC, control, len, addr);
	dma_start(r, DESC);
	return desc_control(r, DESC);
}

static uint32_t select_read(uint16_t key)
{
	return (uint32_t)key << 16 | FW_CFG_DMA_SELECT | FW_CFG_DMA_READ;
}

/* Finds a file by walking the directory with byte reads, as SeaBIOS does without DMA.
 * Returns its key (0 when absent) and size. */
static uint16_t find_file_pio(struct rig *r, const char *name, uint32_t *size)
{
	uint8_t count[4], entry[FW_CFG_DIR_ENTRY];
	select_key(r, FW_CFG_FILE_DIR);
	read_bytes(r, count, 4);
	for (uint32_t i = 0; i < load_be32(count); i++) {
		read_bytes(r, entry, sizeof(entry));
		if (strncmp((char *)entry + 8, name, FW_CFG_NAME_SIZE) == 0) {
			*size = load_be32(entry);
			return load_be16(entry + 4);
		}
	}
	return 0;
}

/* ---- PIO ---- */

static void test_signature_and_id(void **state)
{
	struct rig *r = *state;
	char sig[5] = { 0 };
	select_key(r, FW_CFG_SIGNATURE);
	read_bytes(r, sig, 4);
	assert_string_equal(sig, "QEMU");
	/* past the end: zeros */
	uint8_t more[3];
	read_bytes(r, more, 3);
	assert_int_equal(more[0] | more[1] | more[2], 0);
	uint8_t id[4];
	select_key(r, FW_CFG_ID);
	read_bytes(r, id, 4);
	assert_int_equal(load_le32(id), FW_CFG_ID_TRADITIONAL | FW_CFG_ID_DMA);
	/* the DMA register reads back "QEMU CFG" in memory order, at any width */
	uint8_t b[4];
	store_le32(b, (uint32_t)dev_bus_read(&r->bus, DEV_PIO, PORT + 4, 4));
	assert_memory_equal(b, "QEMU", 4);
	store_le32(b, (uint32_t)dev_bus_read(&r->bus, DEV_PIO, PORT + 8, 4));
	assert_memory_equal(b, " CFG", 4);
	assert_int_equal(dev_bus_read(&r->bus, DEV_PIO, PORT + 11, 1), 'G');
}

static void test_directory_sorted_and_file_reads(void **state)
{
	struct rig *r = *state;
	assert_int_equal(fw_cfg_add_file(r->fw, "etc/zeta", "zzz", 3), 0);
	assert_int_equal(fw_cfg_add_file(r->fw, "bootorder", "/pci\n", 6), 0);
	assert_int_equal(fw_cfg_add_file(r->fw, "etc/alpha", "0123456789", 10), 0);
	uint8_t count[4], entry[FW_CFG_DIR_ENTRY];
	select_key(r, FW_CFG_FILE_DIR);
	read_bytes(r, count, 4);
	assert_int_equal(load_be32(count), 3);
	const char *order[] = { "bootorder", "etc/alpha", "etc/zeta" };
	const uint32_t sizes[] = { 6, 10, 3 };
	for (unsigned i = 0; i < 3; i++) {
		read_bytes(r, entry, sizeof(entry));
		assert_int_equal(load_be32(entry), sizes[i]);
		assert_int_equal(load_be16(entry + 4), FW_CFG_FILE_FIRST + i);
		assert_string_equal((char *)entry + 8, order[i]);
	}
	uint32_t size;
	uint16_t key = find_file_pio(r, "etc/alpha", &size);
	assert_int_equal(key, FW_CFG_FILE_FIRST + 1);
	char data[12];
	select_key(r, key);
	read_bytes(r, data, sizeof(data));
	assert_memory_equal(data, "0123456789\0\0", 12);
	/* reselecting rewinds */
	select_key(r, key);
	assert_int_equal(dev_bus_read(&r->bus, DEV_PIO, PORT + 1, 1), '0');
	assert_int_equal(find_file_pio(r, "etc/missing", &size), 0);
}

static void test_unknown_key_and_ignored_writes(void **state)
{
	struct rig *r = *state;
	assert_int_equal(fw_cfg_add_file(r->fw, "etc/data", "abc", 3), 0);
	uint8_t b[4];
	select_key(r, 0x7777);
	read_bytes(r, b, 4);
	assert_int_equal(load_le32(b), 0);
	select_key(r, FW_CFG_FILE_FIRST + 1); /* one past the last file */
	read_bytes(r, b, 4);
	assert_int_equal(load_le32(b), 0);
	/* 1-byte selector writes and data port writes change nothing */
	select_key(r, FW_CFG_FILE_FIRST);
	dev_bus_write(&r->bus, DEV_PIO, PORT, 1, FW_CFG_SIGNATURE);
	dev_bus_write(&r->bus, DEV_PIO, PORT + 1, 1, 'X');
	read_bytes(r, b, 3);
	assert_memory_equal(b, "abc", 3);
	char out[3];
	assert_int_equal(fw_cfg_read_file(r->fw, "etc/data", out, 3), 3);
	assert_memory_equal(out, "abc", 3);
	/* the unused ports 0x512-0x513 belong to nobody */
	assert_int_equal(dev_bus_read(&r->bus, DEV_PIO, PORT + 2, 1), 0xFF);
}

/* ---- DMA ---- */

static void test_dma_read_skip_and_zero_fill(void **state)
{
	struct rig *r = *state;
	assert_int_equal(fw_cfg_add_file(r->fw, "etc/data", "0123456789", 10), 0);
	memset(r->low + BUF, 0xAA, 32);
	assert_int_equal(dma(r, select_read(FW_CFG_FILE_FIRST), 4, BUF), 0);
	assert_memory_equal(r->low + BUF, "0123", 4);
	assert_int_equal(r->low[BUF + 4], 0xAA);
	/* the offset carries on: skip 2, then read 8 of which 4 exist, 4 are zero-filled */
	assert_int_equal(dma(r, FW_CFG_DMA_SKIP, 2, 0), 0);
	assert_int_equal(dma(r, FW_CFG_DMA_READ, 8, BUF + 16), 0);
	assert_memory_equal(r->low + BUF + 16, "6789\0\0\0\0", 8);
	assert_int_equal(r->low[BUF + 24], 0xAA);
	/* and PIO shares it: at the end now */
	assert_int_equal(dev_bus_read(&r->bus, DEV_PIO, PORT + 1, 1), 0);
	/* SELECT without an operation only selects; the data port then starts at 0 */
	assert_int_equal(dma(r, (uint32_t)FW_CFG_FILE_FIRST << 16 | FW_CFG_DMA_SELECT, 5, BUF), 0);
	assert_int_equal(dev_bus_read(&r->bus, DEV_PIO, PORT + 1, 1), '0');
	/* a key nothing answers reads as zeros, without error */
	memset(r->low + BUF, 0xAA, 8);
	assert_int_equal(dma(r, select_read(0x1234), 8, BUF), 0);
	assert_memory_equal(r->low + BUF, "\0\0\0\0\0\0\0\0", 8);
	/* SeaBIOS reads the directory count with DMA too */
	assert_int_equal(dma(r, select_read(FW_CFG_FILE_DIR), 4, BUF), 0);
	assert_int_equal(load_be32(r->low + BUF), 1);
}

static void test_dma_descriptor_and_buffer_above_4g(void **state)
{
	struct rig *r = *state;
	assert_int_equal(fw_cfg_add_file(r->fw, "etc/data", "0123456789", 10), 0);
	uint64_t desc = HIGH_GPA + 0x100, buf = HIGH_GPA + 0x200;
	put_desc(r, desc, select_read(FW_CFG_FILE_FIRST), 10, buf);
	dma_start(r, desc);
	assert_int_equal(desc_control(r, desc), 0);
	assert_memory_equal(r->high + 0x200, "0123456789", 10);
	/* the high half is cleared after each transfer: a low-half write alone now means a
	 * descriptor below 4 GiB */
	put_desc(r, DESC, select_read(FW_CFG_SIGNATURE), 4, BUF);
	out_be32(r, PORT + 8, DESC);
	assert_int_equal(desc_control(r, DESC), 0);
	assert_memory_equal(r->low + BUF, "QEMU", 4);
}

static void test_dma_write(void **state)
{
	struct rig *r = *state;
	assert_int_equal(fw_cfg_add_writable_file(r->fw, "etc/rw", "........", 8), 0);
	assert_int_equal(fw_cfg_add_file(r->fw, "etc/ro", "readonly", 8), 0);
	uint16_t ro = FW_CFG_FILE_FIRST, rw = FW_CFG_FILE_FIRST + 1;
	uint32_t select_write = FW_CFG_DMA_SELECT | FW_CFG_DMA_WRITE;
	memcpy(r->low + BUF, "ABCDEFGHIJ", 10);
	/* in place, from offset 2 after a skip */
	assert_int_equal(dma(r, (uint32_t)rw << 16 | FW_CFG_DMA_SELECT | FW_CFG_DMA_SKIP, 2, 0), 0);
	assert_int_equal(dma(r, FW_CFG_DMA_WRITE, 4, BUF), 0);
	char got[8];
	assert_int_equal(fw_cfg_read_file(r->fw, "etc/rw", got, 8), 8);
	assert_memory_equal(got, "..ABCD..", 8);
	/* the guest reads back what it wrote */
	assert_int_equal(dma(r, select_read(rw), 8, BUF + 64), 0);
	assert_memory_equal(r->low + BUF + 64, "..ABCD..", 8);
	/* past the end of the item: ERROR, nothing written */
	assert_int_equal(dma(r, (uint32_t)rw << 16 | select_write, 9, BUF), FW_CFG_DMA_ERROR);
	assert_int_equal(fw_cfg_read_file(r->fw, "etc/rw", got, 8), 8);
	assert_memory_equal(got, "..ABCD..", 8);
	/* a read-only item, a key nothing answers, the signature: ERROR, unchanged */
	assert_int_equal(dma(r, (uint32_t)ro << 16 | select_write, 4, BUF), FW_CFG_DMA_ERROR);
	assert_int_equal(fw_cfg_read_file(r->fw, "etc/ro", got, 8), 8);
	assert_memory_equal(got, "readonly", 8);
	assert_int_equal(dma(r, 0x6666u << 16 | select_write, 4, BUF), FW_CFG_DMA_ERROR);
	assert_int_equal(dma(r, select_write, 4, BUF), FW_CFG_DMA_ERROR);
	assert_int_equal(dma(r, select_read(FW_CFG_SIGNATURE), 4, BUF), 0);
	assert_memory_equal(r->low + BUF, "QEMU", 4);
	/* a buffer outside RAM: ERROR, the item unchanged */
	assert_int_equal(dma(r, (uint32_t)rw << 16 | select_write, 4, LOW_SIZE - 2),
			 FW_CFG_DMA_ERROR);
	assert_int_equal(fw_cfg_read_file(r->fw, "etc/rw", got, 8), 8);
	assert_memory_equal(got, "..ABCD..", 8);
}

/* Guest RAM must be exactly as before except where the test expects a change. */
static uint8_t *snapshot(struct rig *r)
{
	uint8_t *copy = malloc(LOW_SIZE + HIGH_SIZE);
	assert_non_null(copy);
	memcpy(copy, r->low, LOW_SIZE);
	memcpy(copy + LOW_SIZE, r->high, HIGH_SIZE);
	return copy;
}

static void expect_unchanged(struct rig *r, const uint8_t *before)
{
	assert_memory_equal(r->low, before, LOW_SIZE);
	assert_memory_equal(r->high, before + LOW_SIZE, HIGH_SIZE);
}

/* The transfer fails: only the control word changes, to ERROR. */
static void expect_only_error(struct rig *r, uint32_t control, uint32_t len, uint64_t addr)
{
	put_desc(r, DESC, control, len, addr);
	uint8_t *before = snapshot(r);
	dma_start(r, DESC);
	store_be32(before + DESC, FW_CFG_DMA_ERROR);
	expect_unchanged(r, before);
	free(before);
}

static void test_dma_hostile_descriptors(void **state)
{
	struct rig *r = *state;
	assert_int_equal(fw_cfg_add_file(r->fw, "etc/data", "0123456789", 10), 0);
	memset(r->low, 0x5C, LOW_SIZE);
	memset(r->high, 0x5C, HIGH_SIZE);
	/* descriptors outside RAM, straddling its end, wrapping: no byte of RAM changes */
	const uint64_t nowhere[] = { LOW_SIZE,	     LOW_SIZE - 3,
				     0x80000000,     HIGH_GPA + HIGH_SIZE - 3,
				     UINT64_MAX - 7, 0xFFFFFFFFull };
	for (unsigned i = 0; i < sizeof(nowhere) / sizeof(nowhere[0]); i++) {
		uint8_t *before = snapshot(r);
		dma_start(r, nowhere[i]);
		expect_unchanged(r, before);
		free(before);
	}
	/* a descriptor whose control word is in RAM but the rest is not: ERROR written */
	uint8_t head[4];
	store_be32(head, select_read(FW_CFG_FILE_FIRST));
	memcpy(r->low + LOW_SIZE - 4, head, 4);
	dma_start(r, LOW_SIZE - 4);
	assert_int_equal(load_be32(r->low + LOW_SIZE - 4), FW_CFG_DMA_ERROR);
	/* buffers outside RAM, crossing its end, wrapping, in the hole between regions */
	const uint64_t bad_buf[] = { LOW_SIZE, LOW_SIZE - 4, UINT64_MAX - 3, 0xC0000000,
				     HIGH_GPA - 2 };
	for (unsigned i = 0; i < sizeof(bad_buf) / sizeof(bad_buf[0]); i++)
		expect_only_error(r, select_read(FW_CFG_FILE_FIRST), 10, bad_buf[i]);
	/* a huge length: the 10 bytes land, the zero fill runs off the end of RAM: ERROR,
	 * and nothing beyond RAM is touched (the sanitizer watches the host side) */
	assert_int_equal(dma(r, select_read(FW_CFG_FILE_FIRST), UINT32_MAX, LOW_SIZE - 64),
			 FW_CFG_DMA_ERROR);
	assert_int_equal(dma(r, select_read(0x4242), UINT32_MAX, BUF), FW_CFG_DMA_ERROR);
	/* a huge skip only moves the offset */
	assert_int_equal(
		dma(r, (uint32_t)FW_CFG_FILE_FIRST << 16 | FW_CFG_DMA_SELECT | FW_CFG_DMA_SKIP,
		    UINT32_MAX, 0),
		0);
	assert_int_equal(dev_bus_read(&r->bus, DEV_PIO, PORT + 1, 1), 0);
	/* an exact fit at the very end of RAM works */
	assert_int_equal(dma(r, select_read(FW_CFG_FILE_FIRST), 16, LOW_SIZE - 16), 0);
	assert_memory_equal(r->low + LOW_SIZE - 16, "0123456789\0\0\0\0\0\0", 16);
	/* odd accesses to the DMA register start nothing */
	put_desc(r, DESC, select_read(FW_CFG_FILE_FIRST), 4, BUF);
	uint8_t *before = snapshot(r);
	dev_bus_write(&r->bus, DEV_PIO, PORT + 8, 2, 0x1234);
	dev_bus_write(&r->bus, DEV_PIO, PORT + 9, 1, 0x10);
	dev_bus_write(&r->bus, DEV_PIO, PORT + 6, 2, 0x10);
	expect_unchanged(r, before);
	free(before);
}

/* ---- select hook and reset ---- */

struct hook_state {
	struct fw_cfg *fw;
	unsigned calls;
};

static void regenerate(void *opaque)
{
	struct hook_state *h = opaque;
	h->calls++;
	char text[16];
	int n = snprintf(text, sizeof(text), "generation %u", h->calls);
	assert_int_equal(fw_cfg_update_file(h->fw, "etc/acpi/tables", text, (size_t)n), 0);
}

static void test_select_hook_once_per_reset(void **state)
{
	struct rig *r = *state;
	struct hook_state h = { r->fw, 0 };
	assert_int_equal(fw_cfg_add_file(r->fw, "etc/acpi/tables", "stale", 5), 0);
	assert_int_equal(fw_cfg_set_select_hook(r->fw, "etc/acpi/tables", regenerate, &h), 0);
	assert_int_equal(fw_cfg_set_select_hook(r->fw, "etc/none", regenerate, &h), -ENOENT);
	assert_int_equal(h.calls, 0);
	/* the directory shows the size of what the guest will read */
	uint32_t size;
	uint16_t key = find_file_pio(r, "etc/acpi/tables", &size);
	assert_int_equal(h.calls, 0);
	char text[16] = { 0 };
	select_key(r, key);
	assert_int_equal(h.calls, 1);
	read_bytes(r, text, 12);
	assert_string_equal(text, "generation 1");
	assert_int_equal(find_file_pio(r, "etc/acpi/tables", &size), key);
	assert_int_equal(size, 12);
	/* selecting again (PIO or DMA) regenerates nothing until a reset */
	select_key(r, key);
	assert_int_equal(dma(r, select_read(key), 12, BUF), 0);
	assert_int_equal(h.calls, 1);
	fw_cfg_reset(r->fw);
	/* a reset selects the signature */
	read_bytes(r, text, 4);
	assert_memory_equal(text, "QEMU", 4);
	assert_int_equal(h.calls, 1);
	assert_int_equal(dma(r, select_read(key), 12, BUF), 0);
	assert_int_equal(h.calls, 2);
	assert_memory_equal(r->low + BUF, "generation 2", 12);
}

static void test_reset_clears_dma_latch(void **state)
{
	struct rig *r = *state;
	out_be32(r, PORT + 4, 0x1); /* a high half, then a reset */
	fw_cfg_reset(r->fw);
	assert_int_equal(dma(r, select_read(FW_CFG_SIGNATURE), 4, BUF), 0);
	assert_memory_equal(r->low + BUF, "QEMU", 4);
}

/* ---- concurrency: a descriptor that selects and reads is one locked step ---- */

#define THREADS 4
#define ROUNDS	300

struct worker {
	struct rig *r;
	unsigned index;
	unsigned bad;
};

static void *worker_run(void *opaque)
{
	struct worker *w = opaque;
	uint64_t desc = 0x10000 + w->index * 0x1000, buf = desc + 0x100;
	uint8_t want[256], got[256];
	memset(want, 'a' + w->index, sizeof(want));
	for (unsigned i = 0; i < ROUNDS; i++) {
		put_desc(w->r, desc, select_read(FW_CFG_FILE_FIRST + w->index), sizeof(got), buf);
		dma_start(w->r, desc);
		assert_int_equal(guest_mem_read(&w->r->mem, buf, got, sizeof(got)), 0);
		if (desc_control(w->r, desc) != 0 || memcmp(got, want, sizeof(got)) != 0)
			w->bad++;
		/* and PIO traffic on the shared selection in between */
		select_key(w->r, FW_CFG_ID);
		(void)dev_bus_read(&w->r->bus, DEV_PIO, PORT + 1, 1);
	}
	return NULL;
}

static void test_concurrent_vcpus(void **state)
{
	struct rig *r = *state;
	uint8_t content[256];
	char name[16];
	for (unsigned i = 0; i < THREADS; i++) {
		memset(content, 'a' + i, sizeof(content));
		snprintf(name, sizeof(name), "etc/cpu%u", i);
		assert_int_equal(fw_cfg_add_file(r->fw, name, content, sizeof(content)), 0);
	}
	pthread_t threads[THREADS];
	struct worker workers[THREADS];
	for (unsigned i = 0; i < THREADS; i++) {
		workers[i] = (struct worker){ r, i, 0 };
		assert_int_equal(pthread_create(&threads[i], NULL, worker_run, &workers[i]), 0);
	}
	for (unsigned i = 0; i < THREADS; i++) {
		pthread_join(threads[i], NULL);
		assert_int_equal(workers[i].bad, 0);
	}
}

/* ---- the host API ---- */

static void test_api_refusals(void **state)
{
	struct rig *r = *state;
	uint16_t v = 1;
	assert_int_equal(fw_cfg_add_item(r->fw, FW_CFG_SIGNATURE, &v, 2), -EINVAL);
	assert_int_equal(fw_cfg_add_item(r->fw, FW_CFG_ID, &v, 2), -EINVAL);
	assert_int_equal(fw_cfg_add_item(r->fw, FW_CFG_FILE_DIR, &v, 2), -EINVAL);
	assert_int_equal(fw_cfg_add_item(r->fw, FW_CFG_FILE_FIRST + 3, &v, 2), -EINVAL);
	assert_int_equal(fw_cfg_add_item(r->fw, FW_CFG_NB_CPUS, NULL, 2), -EINVAL);
	assert_int_equal(fw_cfg_add_item(r->fw, FW_CFG_NB_CPUS, &v, 2), 0);
	assert_int_equal(fw_cfg_add_item(r->fw, FW_CFG_NB_CPUS, &v, 2), -EEXIST);
	char name[FW_CFG_NAME_SIZE + 1];
	memset(name, 'n', sizeof(name));
	name[FW_CFG_NAME_SIZE] = 0;
	assert_int_equal(fw_cfg_add_file(r->fw, name, "x", 1), -EINVAL);
	name[FW_CFG_NAME_SIZE - 1] = 0; /* 55 characters and the NUL: the longest */
	assert_int_equal(fw_cfg_add_file(r->fw, name, "x", 1), 0);
	assert_int_equal(fw_cfg_add_file(r->fw, name, "x", 1), -EEXIST);
	assert_int_equal(fw_cfg_add_file(r->fw, "", "x", 1), -EINVAL);
	assert_int_equal(fw_cfg_update_file(r->fw, "etc/none", "x", 1), -ENOENT);
	assert_int_equal(fw_cfg_read_file(r->fw, "etc/none", name, 1), -ENOENT);
	for (unsigned i = 1; i < FW_CFG_MAX_FILES; i++) {
		snprintf(name, sizeof(name), "f%03u", i);
		assert_int_equal(fw_cfg_add_file(r->fw, name, NULL, 0), 0);
	}
	assert_int_equal(fw_cfg_add_file(r->fw, "one-too-many", "x", 1), -ENOSPC);
	/* the last key answers, with its empty contents */
	uint32_t size = 1;
	assert_int_equal(find_file_pio(r, "f255", &size), FW_CFG_FILE_FIRST + FW_CFG_MAX_FILES - 2);
	assert_int_equal(size, 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_signature_and_id, rig_setup, rig_teardown),
		cmocka_unit_test_setup_teardown(test_directory_sorted_and_file_reads, rig_setup,
						rig_teardown),
		cmocka_unit_test_setup_teardown(test_unknown_key_and_ignored_writes, rig_setup,
						rig_teardown),
		cmocka_unit_test_setup_teardown(test_dma_read_skip_and_zero_fill, rig_setup,
						rig_teardown),
		cmocka_unit_test_setup_teardown(test_dma_descriptor_and_buffer_above_4g, rig_setup,
						rig_teardown),
		cmocka_unit_test_setup_teardown(test_dma_write, rig_setup, rig_teardown),
		cmocka_unit_test_setup_teardown(test_dma_hostile_descriptors, rig_setup,
						rig_teardown),
		cmocka_unit_test_setup_teardown(test_select_hook_once_per_reset, rig_setup,
						rig_teardown),
		cmocka_unit_test_setup_teardown(test_reset_clears_dma_latch, rig_setup,
						rig_teardown),
		cmocka_unit_test_setup_teardown(test_concurrent_vcpus, rig_setup, rig_teardown),
		cmocka_unit_test_setup_teardown(test_api_refusals, rig_setup, rig_teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
