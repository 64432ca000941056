#include "misc_ports.h"

#include <errno.h>
#include <stdlib.h>

#include "gen1_layout.h"
#include "serial.h"

#define DEBUGCON_SIGNATURE 0xE9

struct misc_ports {
	struct misc_ports_config cfg;
};

static void post_write(void *opaque, uint64_t offset, unsigned size, uint64_t value)
{
	(void)opaque;
	(void)offset;
	(void)size;
	(void)value;
}

static const struct dev_ops post_ops = { .write = post_write };

static uint64_t debugcon_read(void *opaque, uint64_t offset, unsigned size)
{
	(void)opaque;
	(void)offset;
	(void)size;
	return DEBUGCON_SIGNATURE;
}

/* The range is one port wide, so every access that reaches here is one byte. */
static void debugcon_write(void *opaque, uint64_t offset, unsigned size, uint64_t value)
{
	(void)offset;
	(void)size;
	struct misc_ports *m = opaque;
	uint8_t byte = (uint8_t)value;
	if (m->cfg.debugcon_output)
		serial_backend_write(m->cfg.debugcon_output, &byte, 1);
}

static const struct dev_ops debugcon_ops = { debugcon_read, debugcon_write };

static void test_exit_write(void *opaque, uint64_t offset, unsigned size, uint64_t value)
{
	(void)offset;
	struct misc_ports *m = opaque;
	if (size == 1)
		platform_test_exit(&m->cfg.hooks, (unsigned)(value & 0xFF));
}

static const struct dev_ops test_exit_ops = { .write = test_exit_write };

static int register_ports(struct misc_ports *m)
{
	struct dev_bus *bus = m->cfg.bus;
	int ret = 0;
	if (m->cfg.post)
		ret = dev_bus_register(bus, DEV_PIO, GEN1_POST_PORT, 1, &post_ops, m, "post");
	if (ret == 0 && m->cfg.debugcon)
		ret = dev_bus_register(bus, DEV_PIO, GEN1_DEBUGCON_PORT, 1, &debugcon_ops, m,
				       "debugcon");
	if (ret == 0 && m->cfg.test_exit)
		ret = dev_bus_register(bus, DEV_PIO, GEN1_TEST_EXIT_PORT, 1, &test_exit_ops, m,
				       "test-exit");
	return ret;
}

int misc_ports_create(const struct misc_ports_config *cfg, struct misc_ports **out)
{
	if (!cfg->bus)
		return -EINVAL;
	struct misc_ports *m = calloc(1, sizeof(*m));
	if (!m)
		return -ENOMEM;
	m->cfg = *cfg;
	int ret = register_ports(m);
	if (ret < 0) {
		free(m);
		return ret;
	}
	*out = m;
	return 0;
}

void misc_ports_destroy(struct misc_ports *m)
{
	free(m);
}
