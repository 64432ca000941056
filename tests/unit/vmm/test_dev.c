/* The device interface: guest memory translation refuses anything outside RAM, and the
 * dispatch table routes accesses to the right handler and nothing else. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <string.h>

#include "dev.h"

static uint8_t low[4096], high[4096];

static void two_regions(struct guest_mem *m)
{
	memset(m, 0, sizeof(*m));
	assert_int_equal(guest_mem_add(m, 0, sizeof(low), low), 0);
	assert_int_equal(guest_mem_add(m, 0x10000, sizeof(high), high), 0);
}

static void test_regions_must_be_ordered(void **state)
{
	(void)state;
	struct guest_mem m;
	two_regions(&m);
	assert_int_equal(guest_mem_add(&m, 0x800, 16, low), -EINVAL);
	assert_int_equal(guest_mem_add(&m, 0x20000, 0, low), -EINVAL);
	assert_int_equal(guest_mem_add(&m, UINT64_MAX - 1, 16, low), -EINVAL);
}

static void test_iov_inside_and_outside(void **state)
{
	(void)state;
	struct guest_mem m;
	two_regions(&m);
	struct iovec iov[4];
	int n = 0;
	assert_int_equal(guest_mem_iov(&m, 100, 200, iov, 4, &n), 0);
	assert_int_equal(n, 1);
	assert_ptr_equal(iov[0].iov_base, low + 100);
	assert_int_equal(iov[0].iov_len, 200);
	/* contiguous: merged into the last entry */
	assert_int_equal(guest_mem_iov(&m, 300, 50, iov, 4, &n), 0);
	assert_int_equal(n, 1);
	assert_int_equal(iov[0].iov_len, 250);
	/* crossing the end of RAM, or in the hole between regions: refused, nothing changed */
	assert_int_equal(guest_mem_iov(&m, 4000, 200, iov, 4, &n), -EFAULT);
	assert_int_equal(guest_mem_iov(&m, 0x8000, 1, iov, 4, &n), -EFAULT);
	assert_int_equal(guest_mem_iov(&m, UINT64_MAX - 4, 100, iov, 4, &n), -EFAULT);
	assert_int_equal(n, 1);
	assert_int_equal(iov[0].iov_len, 250);
	/* a failure after extending the last entry restores it */
	assert_int_equal(guest_mem_iov(&m, 350, 4096, iov, 4, &n), -EFAULT);
	assert_int_equal(iov[0].iov_len, 250);
	/* no room for another entry */
	assert_int_equal(guest_mem_iov(&m, 0x10000, 8, iov, 1, &n), -E2BIG);
	assert_int_equal(n, 1);
	assert_int_equal(guest_mem_iov(&m, 0x10000, 8, iov, 4, &n), 0);
	assert_int_equal(n, 2);
	assert_ptr_equal(iov[1].iov_base, high);
}

static void test_copy(void **state)
{
	(void)state;
	struct guest_mem m;
	two_regions(&m);
	uint8_t buf[64];
	memset(buf, 0x5A, sizeof(buf));
	assert_int_equal(guest_mem_write(&m, 0x10000 + 4096 - 64, buf, 64), 0);
	assert_memory_equal(high + 4096 - 64, buf, 64);
	memset(high + 4096 - 64, 0, 64);
	assert_int_equal(guest_mem_write(&m, 0x10000 + 4096 - 63, buf, 64), -EFAULT);
	for (int i = 0; i < 64; i++)
		assert_int_equal(high[4096 - 64 + i], 0); /* nothing copied */
	assert_int_equal(guest_mem_read(&m, 4096 - 10, buf, 20), -EFAULT);
}

struct dev_state {
	uint64_t last_offset, last_value;
	unsigned last_size, reads, writes;
};

static uint64_t dev_read(void *opaque, uint64_t offset, unsigned size)
{
	struct dev_state *d = opaque;
	d->reads++;
	d->last_offset = offset;
	d->last_size = size;
	return 0x1122334455667788ULL;
}

static void dev_write(void *opaque, uint64_t offset, unsigned size, uint64_t value)
{
	struct dev_state *d = opaque;
	d->writes++;
	d->last_offset = offset;
	d->last_size = size;
	d->last_value = value;
}

static const struct dev_ops ops = { .read = dev_read, .write = dev_write };

static void test_dispatch(void **state)
{
	(void)state;
	struct dev_bus bus;
	dev_bus_init(&bus);
	struct dev_state a = { 0 }, b = { 0 };
	assert_int_equal(dev_bus_register(&bus, DEV_PIO, 0x1F0, 8, &ops, &a, "a"), 0);
	assert_int_equal(dev_bus_register(&bus, DEV_PIO, 0x1F4, 8, &ops, &b, "b"), -EEXIST);
	assert_int_equal(dev_bus_register(&bus, DEV_MMIO, 0x1F0, 8, &ops, &b, "b"), 0);
	assert_int_equal(dev_bus_register(&bus, DEV_PIO, 0xFFFF, 0, &ops, &b, "b"), -EINVAL);

	assert_int_equal(dev_bus_read(&bus, DEV_PIO, 0x1F2, 1), 0x88); /* masked to the size */
	assert_int_equal(a.last_offset, 2);
	assert_int_equal(a.last_size, 1);
	dev_bus_write(&bus, DEV_PIO, 0x1F6, 2, 0xABCD);
	assert_int_equal(a.last_offset, 6);
	assert_int_equal(a.last_value, 0xABCD);

	/* nothing there, or straddling the end of a range: all ones, counted, no handler */
	assert_int_equal(dev_bus_read(&bus, DEV_PIO, 0x80, 2), 0xFFFF);
	assert_int_equal(dev_bus_read(&bus, DEV_PIO, 0x1F6, 4), 0xFFFFFFFF);
	dev_bus_write(&bus, DEV_PIO, 0x1F7, 2, 0);
	assert_int_equal(bus.unhandled, 3);
	assert_int_equal(a.reads, 1);
	assert_int_equal(a.writes, 1);

	/* MMIO is a separate space */
	assert_int_equal(dev_bus_read(&bus, DEV_MMIO, 0x1F0, 8), 0x1122334455667788ULL);
	assert_int_equal(b.reads, 1);

	/* moving a range (a BAR write) */
	assert_int_equal(dev_bus_move(&bus, DEV_PIO, &ops, &a, 0xC000), 0);
	assert_int_equal(dev_bus_read(&bus, DEV_PIO, 0x1F0, 1), 0xFF);
	assert_int_equal(dev_bus_read(&bus, DEV_PIO, 0xC001, 1), 0x88);
	assert_int_equal(a.last_offset, 1);
	assert_int_equal(dev_bus_move(&bus, DEV_PIO, &ops, &b, 0xD000), -ENOENT);
	dev_bus_destroy(&bus);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_regions_must_be_ordered),
		cmocka_unit_test(test_iov_inside_and_outside),
		cmocka_unit_test(test_copy),
		cmocka_unit_test(test_dispatch),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
