/* PCI configuration mechanism #1 and the generic type-0 header, driven through ports
 * 0xCF8/0xCFC as firmware drives them, with a test function that has an I/O BAR and a
 * memory BAR whose ranges count the accesses that reach them. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <stdlib.h>

#include "pci.h"
#include "platform_test.h"

#define DEVFN	   PCI_DEVFN(3, 0)
#define IO_SIZE	   32
#define MEM_SIZE   4096
#define IO_BASE	   0xC040
#define MEM_BASE   0xFEB00000u
#define CF9_MARKER 0x5A

struct rig {
	struct dev_bus bus;
	struct pci_host host;
	struct pci_function fn;
	unsigned io_hits, mem_hits, changes, cf9_writes;
	unsigned last_change_offset, last_change_len;
	uint8_t cf9;
};

static uint64_t bar_read(void *opaque, uint64_t offset, unsigned size)
{
	(void)size;
	unsigned *hits = opaque;
	(*hits)++;
	return 0x100 + offset;
}

static void bar_write(void *opaque, uint64_t offset, unsigned size, uint64_t value)
{
	(void)offset;
	(void)size;
	(void)value;
	unsigned *hits = opaque;
	(*hits)++;
}

static const struct dev_ops bar_ops = { bar_read, bar_write };

static uint64_t cf9_read(void *opaque, uint64_t offset, unsigned size)
{
	(void)offset;
	(void)size;
	return ((struct rig *)opaque)->cf9;
}

static void cf9_write(void *opaque, uint64_t offset, unsigned size, uint64_t value)
{
	(void)offset;
	(void)size;
	struct rig *r = opaque;
	r->cf9 = (uint8_t)value;
	r->cf9_writes++;
}

static const struct dev_ops cf9_ops = { cf9_read, cf9_write };

static void changed(void *opaque, struct pci_function *fn, unsigned offset, unsigned len)
{
	(void)fn;
	struct rig *r = opaque;
	r->changes++;
	r->last_change_offset = offset;
	r->last_change_len = len;
}

static const struct pci_function_ops fn_ops = { .config_changed = changed };

static int setup(void **state)
{
	struct rig *r = calloc(1, sizeof(*r));
	dev_bus_init(&r->bus);
	assert_int_equal(pci_host_init(&r->host, &r->bus, &cf9_ops, r), 0);
	const struct pci_function_id id = { .vendor = 0x1234,
					    .device = 0x5678,
					    .revision = 0x07,
					    .class_code = 0x0C0330,
					    .subsystem_vendor = 0xABCD,
					    .subsystem = 0x0102,
					    .interrupt_pin = 1 };
	pci_function_init(&r->fn, &id, &fn_ops, r);
	assert_int_equal(
		pci_function_set_bar(&r->fn, 0, IO_SIZE, DEV_PIO, &bar_ops, &r->io_hits, "test-io"),
		0);
	assert_int_equal(pci_function_set_bar(&r->fn, 1, MEM_SIZE, DEV_MMIO, &bar_ops, &r->mem_hits,
					      "test-mem"),
			 0);
	pci_function_define(&r->fn, 0x40, 2, 0x1234, 0x00FF); /* half read-only */
	assert_int_equal(pci_host_add(&r->host, DEVFN, &r->fn), 0);
	*state = r;
	return 0;
}

static int teardown(void **state)
{
	struct rig *r = *state;
	pci_host_destroy(&r->host);
	dev_bus_destroy(&r->bus);
	free(r);
	return 0;
}

static void test_address_register(void **state)
{
	struct rig *r = *state;
	/* the presence probe: the enable bit reads back */
	bus_outl(&r->bus, 0xCF8, 0x80000000u);
	assert_int_equal(bus_inl(&r->bus, 0xCF8), 0x80000000u);
	/* reserved bits 30:24 and 1:0 read 0 */
	bus_outl(&r->bus, 0xCF8, 0xFFFFFFFFu);
	assert_int_equal(bus_inl(&r->bus, 0xCF8), 0x80FFFFFCu);
	/* without the enable bit, data reads all ones and writes go nowhere */
	bus_outl(&r->bus, 0xCF8, DEVFN << 8);
	assert_int_equal(bus_inl(&r->bus, 0xCFC), 0xFFFFFFFFu);
	bus_outl(&r->bus, 0xCFC, 0);
	assert_int_equal(cfg_read(&r->bus, DEVFN, 0, 4), 0x56781234u);
	/* a byte at 0xCF9 is not the address register: it goes to reset control */
	bus_outl(&r->bus, 0xCF8, 0x80000000u);
	bus_outb(&r->bus, 0xCF9, CF9_MARKER);
	assert_int_equal(r->cf9_writes, 1);
	assert_int_equal(bus_inb(&r->bus, 0xCF9), CF9_MARKER);
	assert_int_equal(bus_inl(&r->bus, 0xCF8), 0x80000000u);
	/* other partial accesses to the address register are ignored */
	bus_outw(&r->bus, 0xCF8, 0x1234);
	bus_outb(&r->bus, 0xCFA, 0x12);
	assert_int_equal(bus_inl(&r->bus, 0xCF8), 0x80000000u);
	assert_int_equal(bus_inw(&r->bus, 0xCF8), 0xFFFF);
}

static void test_absent_functions_and_other_buses(void **state)
{
	struct rig *r = *state;
	for (unsigned devfn = 0; devfn < 256; devfn++) {
		uint32_t id = cfg_read(&r->bus, devfn, 0, 4);
		assert_int_equal(id, devfn == DEVFN ? 0x56781234u : 0xFFFFFFFFu);
	}
	/* the same device/function on bus 1 is absent */
	bus_outl(&r->bus, 0xCF8, 0x80000000u | 1u << 16 | DEVFN << 8);
	assert_int_equal(bus_inw(&r->bus, 0xCFC), 0xFFFF);
	assert_int_equal(pci_host_add(&r->host, DEVFN, &r->fn), -EINVAL); /* already added */
	struct pci_function other;
	const struct pci_function_id id = { .vendor = 1 };
	pci_function_init(&other, &id, NULL, NULL);
	assert_int_equal(pci_host_add(&r->host, DEVFN, &other), -EBUSY);
	assert_int_equal(pci_host_add(&r->host, 256, &other), -EINVAL);
}

static void test_header_fields_and_access_sizes(void **state)
{
	struct rig *r = *state;
	struct dev_bus *b = &r->bus;
	assert_int_equal(cfg_read(b, DEVFN, 0x00, 2), 0x1234);
	assert_int_equal(cfg_read(b, DEVFN, 0x02, 2), 0x5678);
	assert_int_equal(cfg_read(b, DEVFN, 0x01, 1), 0x12);
	assert_int_equal(cfg_read(b, DEVFN, 0x03, 1), 0x56);
	assert_int_equal(cfg_read(b, DEVFN, 0x08, 4), 0x0C033007u);
	assert_int_equal(cfg_read(b, DEVFN, 0x0A, 2), 0x0C03);
	assert_int_equal(cfg_read(b, DEVFN, 0x0E, 1), 0x00);
	assert_int_equal(cfg_read(b, DEVFN, 0x2C, 4), 0x0102ABCDu);
	assert_int_equal(cfg_read(b, DEVFN, 0x3D, 1), 1);
	assert_int_equal(cfg_read(b, DEVFN, 0x10, 4), PCI_BAR_IO);
	assert_int_equal(cfg_read(b, DEVFN, 0x14, 4), 0);
	assert_int_equal(cfg_read(b, DEVFN, 0x18, 4), 0); /* not implemented */
	/* word at 0xCFE, byte at 0xCFF: the upper bytes of the dword */
	cfg_select(b, DEVFN, 0x00);
	assert_int_equal(bus_inw(b, 0xCFE), 0x5678);
	assert_int_equal(bus_inb(b, 0xCFF), 0x56);
	/* a dword straddling the data ports reaches no handler */
	assert_int_equal(bus_inl(b, 0xCFD), 0xFFFFFFFFu);
	/* INTERRUPT_LINE and the writable half of the device register take byte writes */
	cfg_write(b, DEVFN, 0x3C, 1, 11);
	assert_int_equal(cfg_read(b, DEVFN, 0x3C, 1), 11);
	cfg_write(b, DEVFN, 0x40, 2, 0xFFFF);
	assert_int_equal(cfg_read(b, DEVFN, 0x40, 2), 0x12FF);
	assert_int_equal(r->last_change_offset, 0x40);
	assert_int_equal(r->last_change_len, 2);
}

static void test_read_only_fields_stay(void **state)
{
	struct rig *r = *state;
	struct dev_bus *b = &r->bus;
	uint8_t before[64];
	for (unsigned i = 0; i < 64; i++)
		before[i] = (uint8_t)cfg_read(b, DEVFN, i, 1);
	/* identity, class, header type, subsystem, pin, unimplemented BARs */
	const unsigned offsets[] = { 0x00, 0x02, 0x08, 0x0A, 0x0E, 0x18, 0x2C, 0x2E, 0x3D, 0x30 };
	for (size_t i = 0; i < sizeof(offsets) / sizeof(offsets[0]); i++) {
		cfg_write(b, DEVFN, offsets[i], 2, 0xA5A5);
		cfg_write(b, DEVFN, offsets[i] & ~3u, 4, 0x5A5A5A5A);
	}
	for (size_t i = 0; i < sizeof(offsets) / sizeof(offsets[0]); i++) {
		unsigned off = offsets[i];
		assert_int_equal(cfg_read(b, DEVFN, off, 1), before[off]);
		assert_int_equal(cfg_read(b, DEVFN, off + 1, 1), before[off + 1]);
	}
	/* status: error bits are write-1-to-clear, the rest read-only */
	r->fn.config[0x07] |= 0x80; /* as if a parity error had been detected */
	cfg_write(b, DEVFN, 0x06, 2, 0x0000);
	assert_int_equal(cfg_read(b, DEVFN, 0x06, 2), 0x8200);
	cfg_write(b, DEVFN, 0x06, 2, 0xFFFF);
	assert_int_equal(cfg_read(b, DEVFN, 0x06, 2), 0x0200);
	/* command: only the defined bits stick */
	cfg_write(b, DEVFN, 0x04, 2, 0xFFFF);
	assert_int_equal(cfg_read(b, DEVFN, 0x04, 2), 0x0547);
}

static void test_bar_sizing_and_programming(void **state)
{
	struct rig *r = *state;
	struct dev_bus *b = &r->bus;
	/* sizing reads back the size mask with the type bits */
	assert_int_equal(cfg_bar_mask(b, DEVFN, 0), (uint32_t)-IO_SIZE | PCI_BAR_IO);
	assert_int_equal(cfg_bar_mask(b, DEVFN, 1), (uint32_t)-MEM_SIZE);
	assert_int_equal(cfg_bar_mask(b, DEVFN, 2), 0);
	/* programmed but not decoded: nothing answers there */
	cfg_write(b, DEVFN, 0x10, 4, IO_BASE);
	cfg_write(b, DEVFN, 0x14, 4, MEM_BASE);
	assert_int_equal(cfg_read(b, DEVFN, 0x10, 4), IO_BASE | PCI_BAR_IO);
	assert_int_equal(bus_inb(b, IO_BASE), 0xFF);
	assert_int_equal(dev_bus_read(b, DEV_MMIO, MEM_BASE, 4), 0xFFFFFFFFu);
	assert_int_equal(r->io_hits + r->mem_hits, 0);
	/* I/O decode on: the I/O BAR answers, the memory one still not */
	cfg_write(b, DEVFN, 0x04, 2, PCI_COMMAND_IO);
	assert_int_equal(bus_inb(b, IO_BASE + 5), 0x05);
	assert_int_equal(bus_inb(b, IO_BASE + IO_SIZE), 0xFF);
	assert_int_equal(dev_bus_read(b, DEV_MMIO, MEM_BASE, 4), 0xFFFFFFFFu);
	assert_int_equal(r->io_hits, 1);
	cfg_write(b, DEVFN, 0x04, 2, PCI_COMMAND_IO | PCI_COMMAND_MEMORY);
	assert_int_equal(dev_bus_read(b, DEV_MMIO, MEM_BASE + 0x10, 4), 0x110);
	assert_int_equal(r->mem_hits, 1);
	/* moving a BAR moves the range */
	cfg_write(b, DEVFN, 0x10, 4, 0xD000);
	assert_int_equal(bus_inb(b, IO_BASE), 0xFF);
	assert_int_equal(bus_inb(b, 0xD000), 0x00);
	/* byte writes to the BAR program it too (low byte's type bit stays) */
	cfg_write(b, DEVFN, 0x11, 1, 0xE0);
	assert_int_equal(cfg_read(b, DEVFN, 0x10, 4), 0xE000 | PCI_BAR_IO);
	assert_int_equal(bus_inb(b, 0xE001), 0x01);
	/* decode off again: nothing answers */
	cfg_write(b, DEVFN, 0x04, 2, 0);
	assert_int_equal(bus_inb(b, 0xE001), 0xFF);
	assert_int_equal(dev_bus_read(b, DEV_MMIO, MEM_BASE, 4), 0xFFFFFFFFu);
}

static void test_unreachable_bar_addresses(void **state)
{
	struct rig *r = *state;
	struct dev_bus *b = &r->bus;
	unsigned hits = r->io_hits;
	cfg_write(b, DEVFN, 0x04, 2, PCI_COMMAND_IO | PCI_COMMAND_MEMORY);
	/* address 0, and I/O above the 16-bit port space, are not decoded */
	cfg_write(b, DEVFN, 0x10, 4, 0);
	assert_int_equal(bus_inb(b, 0), 0xFF);
	cfg_write(b, DEVFN, 0x10, 4, 0xFFE0);
	assert_int_equal(bus_inb(b, 0xFFE0), 0x00); /* the last 32 ports are fine */
	cfg_write(b, DEVFN, 0x10, 4, 0x12340);
	assert_int_equal(bus_inb(b, 0x2340), 0xFF);
	assert_int_equal(bus_inb(b, 0xFFE0), 0xFF);
	/* over a port another device holds: not decoded, neither there nor at the old place */
	cfg_write(b, DEVFN, 0x10, 4, 0xC000);
	assert_int_equal(bus_inb(b, 0xC000), 0x00);
	cfg_write(b, DEVFN, 0x10, 4, 0xCE0); /* covers 0xCF8-0xCFF */
	assert_int_equal(bus_inb(b, 0xC000), 0xFF);
	assert_int_equal(cfg_read(b, DEVFN, 0, 2), 0x1234); /* configuration still works */
	/* memory at the top of the 32-bit space fits, nothing wraps */
	cfg_write(b, DEVFN, 0x14, 4, 0xFFFFF000u);
	assert_int_equal(dev_bus_read(b, DEV_MMIO, 0xFFFFF000u, 4), 0x100);
	assert_int_equal(r->io_hits - hits, 2);
}

static void test_reset_restores_power_on(void **state)
{
	struct rig *r = *state;
	struct dev_bus *b = &r->bus;
	cfg_write(b, DEVFN, 0x10, 4, IO_BASE);
	cfg_write(b, DEVFN, 0x04, 2, PCI_COMMAND_IO);
	cfg_write(b, DEVFN, 0x3C, 1, 5);
	cfg_write(b, DEVFN, 0x40, 1, 0x99);
	assert_int_equal(bus_inb(b, IO_BASE), 0);
	r->changes = 0;
	pci_host_reset(&r->host);
	assert_int_equal(r->changes, 1);
	assert_int_equal(r->last_change_offset, 0);
	assert_int_equal(r->last_change_len, PCI_CONFIG_SIZE);
	assert_int_equal(bus_inb(b, IO_BASE), 0xFF);
	assert_int_equal(bus_inl(b, 0xCF8), 0);
	assert_int_equal(cfg_read(b, DEVFN, 0x10, 4), PCI_BAR_IO);
	assert_int_equal(cfg_read(b, DEVFN, 0x04, 2), 0);
	assert_int_equal(cfg_read(b, DEVFN, 0x3C, 1), 0);
	assert_int_equal(cfg_read(b, DEVFN, 0x40, 2), 0x1234);
	/* and it decodes again when programmed again */
	cfg_write(b, DEVFN, 0x10, 4, IO_BASE);
	cfg_write(b, DEVFN, 0x04, 2, PCI_COMMAND_IO);
	assert_int_equal(bus_inb(b, IO_BASE + 3), 3);
}

static void test_bar_declarations_checked(void **state)
{
	(void)state;
	struct pci_function fn;
	const struct pci_function_id id = { .vendor = 1 };
	pci_function_init(&fn, &id, NULL, NULL);
	assert_int_equal(pci_function_set_bar(&fn, 6, 16, DEV_PIO, &bar_ops, NULL, "x"), -EINVAL);
	assert_int_equal(pci_function_set_bar(&fn, 0, 24, DEV_PIO, &bar_ops, NULL, "x"), -EINVAL);
	assert_int_equal(pci_function_set_bar(&fn, 0, 2, DEV_PIO, &bar_ops, NULL, "x"), -EINVAL);
	assert_int_equal(pci_function_set_bar(&fn, 0, 8, DEV_MMIO, &bar_ops, NULL, "x"), -EINVAL);
	assert_int_equal(pci_function_set_bar(&fn, 0, 16, DEV_PIO, NULL, NULL, "x"), -EINVAL);
	/* direct accesses beyond the space are clipped, not overrun */
	pci_function_write(&fn, 0xFE, 4, 0xFFFFFFFFu);
	assert_int_equal(pci_function_read(&fn, 0xFE, 4), 0xFFFF);
	assert_int_equal(pci_function_read(&fn, 0x100, 4), 0);
}

static void test_garbage_on_every_port(void **state)
{
	struct rig *r = *state;
	uint64_t seed = test_env_seed("TEST_SEED");
	for (int round = 0; round < 200; round++) {
		bus_garbage(&r->bus, 0xCF8, 8, &seed);
		bus_outl(&r->bus, 0xCF8, 0x80000000u | (uint32_t)test_rnd_below(&seed, 1u << 24));
		bus_garbage(&r->bus, 0xCFC, 4, &seed);
	}
	/* the identity survived whatever was written */
	assert_int_equal(cfg_read(&r->bus, DEVFN, 0, 4), 0x56781234u);
	assert_int_equal(cfg_read(&r->bus, DEVFN, 0x08, 4), 0x0C033007u);
	assert_int_equal(cfg_read(&r->bus, DEVFN, 0x10, 4) & 1, PCI_BAR_IO);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_address_register, setup, teardown),
		cmocka_unit_test_setup_teardown(test_absent_functions_and_other_buses, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_header_fields_and_access_sizes, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_read_only_fields_stay, setup, teardown),
		cmocka_unit_test_setup_teardown(test_bar_sizing_and_programming, setup, teardown),
		cmocka_unit_test_setup_teardown(test_unreachable_bar_addresses, setup, teardown),
		cmocka_unit_test_setup_teardown(test_reset_restores_power_on, setup, teardown),
		cmocka_unit_test(test_bar_declarations_checked),
		cmocka_unit_test_setup_teardown(test_garbage_on_every_port, setup, teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
