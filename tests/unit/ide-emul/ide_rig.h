/* What the IDE tests share: simulated guest RAM in two regions, a port bus, the controller
 * with recording interrupt lines, port accessors, PRD entries and raw files of a known
 * pattern as disks and media. Include after cmocka.h. */
#ifndef HV_TEST_IDE_RIG_H
#define HV_TEST_IDE_RIG_H

#include <fcntl.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "dev.h"
#include "endian.h"
#include "ide.h"
#include "test_disk.h"
#include "test_util.h"
#include "vdisk.h"

#define RAM_LOW	 (4u << 20) /* guest RAM at 0 */
#define RAM_HIGH (1u << 20) /* and a second region at HIGH_GPA */
#define HIGH_GPA 0x10000000u
#define BM_BASE	 0xC000

static uint8_t *ram_low, *ram_high;

struct rig {
	struct guest_mem mem;
	struct dev_bus bus;
	struct ide_controller *ide;
	struct vdisk *disk; /* the disk or medium whose queue runs the tested device's I/O */
	char *path;	    /* its file, removed at the end */
	bool irq[16];
	unsigned irq_raises[16];
	unsigned irq_seen; /* irq_raises of the tested line when the guest last acknowledged */
};

static inline void rig_ram_alloc(void)
{
	ram_low = aligned_alloc(4096, RAM_LOW);
	ram_high = aligned_alloc(4096, RAM_HIGH);
}

static inline void rig_ram_free(void)
{
	free(ram_low);
	free(ram_high);
}

static inline void rig_irq_set(void *opaque, unsigned line, bool level)
{
	struct rig *r = opaque;
	if (level && !r->irq[line])
		r->irq_raises[line]++;
	r->irq[line] = level;
}

/* Zeroed guest RAM and a controller with its legacy ports and bus master at BM_BASE. */
static inline struct rig *rig_new(const char *file_name)
{
	struct rig *r = calloc(1, sizeof(*r));
	assert_non_null(r);
	memset(ram_low, 0, RAM_LOW);
	memset(ram_high, 0, RAM_HIGH);
	guest_mem_add(&r->mem, 0, RAM_LOW, ram_low);
	guest_mem_add(&r->mem, HIGH_GPA, RAM_HIGH, ram_high);
	dev_bus_init(&r->bus);
	struct ide_config cfg = { .mem = &r->mem,
				  .irq = { { rig_irq_set, r, 14 }, { rig_irq_set, r, 15 } } };
	assert_int_equal(ide_create(&cfg, &r->ide), 0);
	assert_int_equal(ide_register_legacy(r->ide, &r->bus, BM_BASE), 0);
	r->path = strdup(test_path(file_name));
	return r;
}

static inline void rig_free(struct rig *r)
{
	ide_destroy(r->ide);
	test_close_tracked();
	dev_bus_destroy(&r->bus);
	unlink(r->path);
	free(r->path);
	free(r);
}

/* A raw file of test_fill_pattern(seed), or sparse zeros for seed 0, opened and tracked. */
static inline struct vdisk *rig_open_raw(const char *path, uint64_t size, uint32_t seed,
					 bool read_only)
{
	if (seed) {
		test_write_file(path, size, seed);
	} else {
		int fd = open(path, O_CREAT | O_TRUNC | O_WRONLY, 0600);
		assert_true(fd >= 0);
		assert_int_equal(ftruncate(fd, (off_t)size), 0);
		close(fd);
	}
	struct vdisk_options o = { .read_only = read_only,
				   .cache = VDISK_CACHE_WRITEBACK,
				   .format = "raw" };
	struct vdisk *d;
	assert_int_equal(vdisk_open(path, &o, &d, NULL, 0), 0);
	assert_int_equal(test_track_disk(d), 0);
	return d;
}

/* ---- port access ---- */

static inline uint8_t inb(struct rig *r, uint16_t port)
{
	return (uint8_t)dev_bus_read(&r->bus, DEV_PIO, port, 1);
}

static inline uint16_t inw(struct rig *r, uint16_t port)
{
	return (uint16_t)dev_bus_read(&r->bus, DEV_PIO, port, 2);
}

static inline uint32_t inl(struct rig *r, uint16_t port)
{
	return (uint32_t)dev_bus_read(&r->bus, DEV_PIO, port, 4);
}

static inline void outb(struct rig *r, uint16_t port, uint8_t v)
{
	dev_bus_write(&r->bus, DEV_PIO, port, 1, v);
}

static inline void outw(struct rig *r, uint16_t port, uint16_t v)
{
	dev_bus_write(&r->bus, DEV_PIO, port, 2, v);
}

static inline void outl(struct rig *r, uint16_t port, uint32_t v)
{
	dev_bus_write(&r->bus, DEV_PIO, port, 4, v);
}

/* Runs the disk's completions until the device no longer reads busy at its control port
 * (the guest polling the alternate status). */
static inline uint8_t rig_wait_not_busy(struct rig *r, uint16_t ctl_port)
{
	for (int i = 0; i < 10000; i++) {
		uint8_t st = inb(r, ctl_port);
		if (!(st & 0x80))
			return st;
		assert_non_null(r->disk);
		vdisk_queue_poll(vdisk_queue(r->disk, 0), 1);
	}
	fail_msg("the device stayed busy");
	return 0;
}

/* PRD entry i of the table at guest address table (in the low region). */
static inline void put_prd(uint32_t table, unsigned i, uint32_t addr, uint32_t count, bool last)
{
	uint8_t *p = ram_low + table + 8 * i;
	store_le32(p, addr);
	store_le16(p + 4, (uint16_t)count);
	p[6] = 0;
	p[7] = last ? 0x80 : 0;
}

#endif
