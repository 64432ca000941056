/* The device interface: what a device model (IDE, storvsp, serial, ...) may use of the VM.
 *
 * Device models never call KVM. They see guest memory through struct guest_mem (guest
 * physical ranges translated to host memory with bounds checks), raise interrupts through
 * struct irq_line, and receive guest port and MMIO accesses through handlers registered on
 * a struct dev_bus. The VMM connects these to KVM; unit tests connect them to simulated
 * memory and a recording interrupt line, with no VM at all.
 *
 * Threads: handlers run on vCPU threads, concurrently for different devices (and for the
 * same device on different vCPUs: a device that can be reached from several vCPUs locks its
 * own state). irq_line_set may be called from any thread.
 */
#ifndef HV_VMM_DEV_H
#define HV_VMM_DEV_H

#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/uio.h>

/* ---- guest memory ---- */

struct guest_mem_region {
	uint64_t gpa;  /* guest physical address of the first byte */
	uint64_t size; /* bytes */
	uint8_t *host; /* where they are mapped in the VMM */
};

#define GUEST_MEM_MAX_REGIONS 8

struct guest_mem {
	struct guest_mem_region regions[GUEST_MEM_MAX_REGIONS]; /* sorted, not overlapping */
	unsigned nregions;
};

/* Adds a region (gpa order, no overlap). Returns 0, -EINVAL or -ENOSPC. */
int guest_mem_add(struct guest_mem *mem, uint64_t gpa, uint64_t size, void *host);

/* Appends to iov[*count..max) the host ranges of guest [gpa, gpa + len), merging with the
 * last entry when contiguous. Returns 0, -EFAULT when any byte lies outside guest RAM, or
 * -E2BIG when more than max entries would be needed. *count is left unchanged on error. */
int guest_mem_iov(const struct guest_mem *mem, uint64_t gpa, uint64_t len, struct iovec *iov,
		  int max, int *count);

/* Copies between guest RAM and a buffer; -EFAULT (nothing copied) when any byte of the
 * range lies outside guest RAM. */
int guest_mem_read(const struct guest_mem *mem, uint64_t gpa, void *buf, size_t len);
int guest_mem_write(const struct guest_mem *mem, uint64_t gpa, const void *buf, size_t len);

/* ---- interrupts ---- */

/* A level-triggered interrupt line (ISA IRQ, PCI INTx after routing). */
struct irq_line {
	void (*set)(void *opaque, unsigned line, bool level);
	void *opaque;
	unsigned line;
};

static inline void irq_line_set(const struct irq_line *irq, bool level)
{
	if (irq && irq->set)
		irq->set(irq->opaque, irq->line, level);
}

/* ---- port I/O and MMIO dispatch ---- */

/* Handlers get the offset from the start of their range and the access size (1, 2, 4, or 8
 * for MMIO). A read returns the value (unused high bytes ignored). */
struct dev_ops {
	uint64_t (*read)(void *opaque, uint64_t offset, unsigned size);
	void (*write)(void *opaque, uint64_t offset, unsigned size, uint64_t value);
};

enum dev_space { DEV_PIO, DEV_MMIO };

struct dev_range {
	enum dev_space space;
	uint64_t base, len;
	const struct dev_ops *ops;
	void *opaque;
	const char *name;
};

#define DEV_BUS_MAX_RANGES 128

/* The VM's dispatch table. Ranges may be registered and moved (PCI BAR programming) while
 * vCPUs run, also from inside a handler: a dispatch looks its range up under the lock and
 * calls the handler after releasing it. */
struct dev_bus {
	pthread_rwlock_t lock;
	struct dev_range ranges[DEV_BUS_MAX_RANGES];
	unsigned nranges;
	uint64_t unhandled; /* accesses that hit no range (reads return all ones) */
};

void dev_bus_init(struct dev_bus *bus);
void dev_bus_destroy(struct dev_bus *bus);

/* Returns 0, -EEXIST when the range overlaps one already registered, -EINVAL for an empty
 * or wrapping range, -ENOSPC when the table is full. */
int dev_bus_register(struct dev_bus *bus, enum dev_space space, uint64_t base, uint64_t len,
		     const struct dev_ops *ops, void *opaque, const char *name);
/* Moves the range registered for (ops, opaque) in space to a new base (a PCI BAR write);
 * same errors. */
int dev_bus_move(struct dev_bus *bus, enum dev_space space, const struct dev_ops *ops, void *opaque,
		 uint64_t new_base);

/* Dispatch an access. An access that hits no range, or straddles the end of one, reads as
 * all ones and is counted in bus->unhandled; the guest keeps running. */
uint64_t dev_bus_read(struct dev_bus *bus, enum dev_space space, uint64_t addr, unsigned size);
void dev_bus_write(struct dev_bus *bus, enum dev_space space, uint64_t addr, unsigned size,
		   uint64_t value);

#endif
