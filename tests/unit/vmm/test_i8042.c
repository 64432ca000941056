/* The i8042 and port 0x92 driven through their ports with the sequences SeaBIOS's ps2port
 * and Linux's i8042/atkbd probes use; resets and interrupts seen through the hooks. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdlib.h>

#include "gen1_layout.h"
#include "i8042.h"
#include "platform_test.h"

#define STAT_OBF     0x01
#define STAT_SYS     0x04
#define STAT_CMD     0x08
#define STAT_AUX_OBF 0x20

struct rig {
	struct dev_bus bus;
	struct hook_log log;
	struct i8042 *kbc;
};

static int setup(void **state)
{
	struct rig *r = calloc(1, sizeof(*r));
	dev_bus_init(&r->bus);
	struct i8042_config cfg = { .bus = &r->bus };
	cfg.hooks = hook_log_hooks(&r->log);
	assert_int_equal(i8042_create(&cfg, &r->kbc), 0);
	*state = r;
	return 0;
}

static int teardown(void **state)
{
	struct rig *r = *state;
	i8042_destroy(r->kbc);
	dev_bus_destroy(&r->bus);
	free(r);
	return 0;
}

static uint8_t status(struct rig *r)
{
	return bus_inb(&r->bus, 0x64);
}

static void command(struct rig *r, uint8_t cmd)
{
	bus_outb(&r->bus, 0x64, cmd);
}

static void data(struct rig *r, uint8_t v)
{
	bus_outb(&r->bus, 0x60, v);
}

/* The next byte the guest would read after polling for OBF. */
static uint8_t next_byte(struct rig *r)
{
	if (!(status(r) & STAT_OBF))
		fail_msg("no byte waiting");
	return bus_inb(&r->bus, 0x60);
}

static void expect_empty(struct rig *r)
{
	assert_int_equal(status(r) & STAT_OBF, 0);
}

static void test_controller_self_tests(void **state)
{
	struct rig *r = *state;
	expect_empty(r);
	assert_int_equal(status(r) & STAT_SYS, 0);
	command(r, 0xAA);
	assert_int_equal(status(r) & (STAT_CMD | STAT_SYS), STAT_CMD | STAT_SYS);
	assert_int_equal(next_byte(r), 0x55);
	expect_empty(r);
	command(r, 0xAB);
	assert_int_equal(next_byte(r), 0x00);
	command(r, 0xA9);
	assert_int_equal(next_byte(r), 0x00);
	expect_empty(r);
	assert_int_equal(bus_inb(&r->bus, 0x60), 0x00); /* empty: the last byte again */
}

static void test_command_byte_and_port_enables(void **state)
{
	struct rig *r = *state;
	command(r, 0x60);
	data(r, 0x30); /* both ports disabled, no interrupts */
	command(r, 0x20);
	assert_int_equal(next_byte(r), 0x30);
	command(r, 0xAE);
	command(r, 0xA8);
	command(r, 0x20);
	assert_int_equal(next_byte(r), 0x00);
	command(r, 0xAD);
	command(r, 0xA7);
	command(r, 0x20);
	assert_int_equal(next_byte(r), 0x30);
	command(r, 0x21); /* controller RAM reads 0 */
	assert_int_equal(next_byte(r), 0x00);
	command(r, 0x65); /* controller RAM write takes a byte and keeps nothing visible */
	data(r, 0x99);
	expect_empty(r);
	command(r, 0x20);
	assert_int_equal(next_byte(r), 0x30);
}

static void test_keyboard_answers(void **state)
{
	struct rig *r = *state;
	data(r, 0xFF); /* reset */
	assert_int_equal(next_byte(r), 0xFA);
	assert_int_equal(next_byte(r), 0xAA);
	expect_empty(r);
	data(r, 0xF2); /* identify */
	assert_int_equal(next_byte(r), 0xFA);
	assert_int_equal(next_byte(r), 0xAB);
	assert_int_equal(next_byte(r), 0x83);
	data(r, 0xED); /* LEDs and their parameter */
	assert_int_equal(next_byte(r), 0xFA);
	data(r, 0x07);
	assert_int_equal(next_byte(r), 0xFA);
	expect_empty(r);
	data(r, 0xF0); /* scan code set query */
	data(r, 0x00);
	assert_int_equal(next_byte(r), 0xFA);
	assert_int_equal(next_byte(r), 0xFA);
	assert_int_equal(next_byte(r), 0x02);
	data(r, 0xEE);
	assert_int_equal(next_byte(r), 0xEE);
	data(r, 0xF4);
	assert_int_equal(next_byte(r), 0xFA);
	expect_empty(r);
}

static void test_interrupts_follow_the_queue(void **state)
{
	struct rig *r = *state;
	command(r, 0x60);
	data(r, 0x00); /* interrupts off */
	data(r, 0xFF);
	assert_false(r->log.irq[GEN1_KBD_IRQ]);
	next_byte(r);
	next_byte(r);
	command(r, 0x60);
	data(r, 0x03); /* keyboard and auxiliary interrupts on */
	data(r, 0xFF);
	assert_true(r->log.irq[GEN1_KBD_IRQ]);
	assert_int_equal(r->log.irq_raises[GEN1_KBD_IRQ], 1);
	next_byte(r); /* the second byte gets an edge of its own */
	assert_true(r->log.irq[GEN1_KBD_IRQ]);
	assert_int_equal(r->log.irq_raises[GEN1_KBD_IRQ], 2);
	next_byte(r);
	assert_false(r->log.irq[GEN1_KBD_IRQ]);
	/* Linux's AUX loopback: the byte comes back flagged as auxiliary, on IRQ 12 */
	command(r, 0xD3);
	data(r, 0x5A);
	assert_int_equal(status(r) & (STAT_OBF | STAT_AUX_OBF), STAT_OBF | STAT_AUX_OBF);
	assert_true(r->log.irq[GEN1_AUX_IRQ]);
	assert_false(r->log.irq[GEN1_KBD_IRQ]);
	assert_int_equal(next_byte(r), 0x5A);
	assert_false(r->log.irq[GEN1_AUX_IRQ]);
	/* nothing is attached to the auxiliary port */
	command(r, 0xD4);
	data(r, 0xFF);
	expect_empty(r);
	command(r, 0xD2); /* keyboard loopback */
	data(r, 0x1C);
	assert_int_equal(status(r) & STAT_AUX_OBF, 0);
	assert_int_equal(next_byte(r), 0x1C);
}

static void test_queue_overflow_drops(void **state)
{
	struct rig *r = *state;
	for (int i = 0; i < 20; i++) {
		command(r, 0xD2);
		data(r, (uint8_t)i);
	}
	for (int i = 0; i < 16; i++)
		assert_int_equal(next_byte(r), i);
	expect_empty(r);
}

static void test_reset_paths(void **state)
{
	struct rig *r = *state;
	command(r, 0xD0);
	assert_int_equal(next_byte(r) & 0x03, 0x03); /* reset line high, A20 on */
	command(r, 0xD1);
	data(r, 0x01); /* A20 off, no reset */
	command(r, 0xD0);
	assert_int_equal(next_byte(r), 0x01);
	assert_int_equal(r->log.resets, 0);
	command(r, 0xF1); /* pulse without the reset line */
	assert_int_equal(r->log.resets, 0);
	command(r, 0xFE); /* OVMF's and Linux's reset */
	assert_int_equal(r->log.resets, 1);
	assert_string_equal(r->log.reset_cause, "keyboard controller reset line");
	command(r, 0xD1);
	data(r, 0x02); /* reset line low */
	assert_int_equal(r->log.resets, 2);

	assert_int_equal(bus_inb(&r->bus, 0x92), 0x00);
	bus_outb(&r->bus, 0x92, 0x02); /* fast A20 */
	assert_int_equal(bus_inb(&r->bus, 0x92), 0x02);
	assert_int_equal(r->log.resets, 2);
	bus_outb(&r->bus, 0x92, 0x03); /* fast reset */
	assert_int_equal(r->log.resets, 3);
	assert_string_equal(r->log.reset_cause, "port 92h fast reset");
	assert_int_equal(bus_inb(&r->bus, 0x92), 0x02);

	i8042_reset(r->kbc);
	assert_int_equal(bus_inb(&r->bus, 0x92), 0x00);
	expect_empty(r);
	assert_int_equal(status(r) & STAT_SYS, 0);
}

static void test_garbage_on_every_port(void **state)
{
	struct rig *r = *state;
	uint64_t seed = test_env_seed("TEST_SEED");
	for (int round = 0; round < 3000; round++) {
		bus_garbage(&r->bus, 0x60, 1, &seed);
		bus_garbage(&r->bus, 0x64, 1, &seed);
		bus_garbage(&r->bus, 0x92, 1, &seed);
	}
	i8042_reset(r->kbc);
	assert_false(r->log.irq[GEN1_KBD_IRQ]);
	assert_false(r->log.irq[GEN1_AUX_IRQ]);
	command(r, 0xAA);
	assert_int_equal(next_byte(r), 0x55);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_controller_self_tests, setup, teardown),
		cmocka_unit_test_setup_teardown(test_command_byte_and_port_enables, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_keyboard_answers, setup, teardown),
		cmocka_unit_test_setup_teardown(test_interrupts_follow_the_queue, setup, teardown),
		cmocka_unit_test_setup_teardown(test_queue_overflow_drops, setup, teardown),
		cmocka_unit_test_setup_teardown(test_reset_paths, setup, teardown),
		cmocka_unit_test_setup_teardown(test_garbage_on_every_port, setup, teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
