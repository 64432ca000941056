/* POST, debug console and test-exit ports: present only when configured, and doing what
 * firmware and test payloads expect of them. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <string.h>
#include <unistd.h>

#include "gen1_layout.h"
#include "misc_ports.h"
#include "platform_test.h"
#include "serial.h"

static void test_nothing_unless_asked(void **state)
{
	(void)state;
	struct dev_bus bus;
	dev_bus_init(&bus);
	struct misc_ports *m;
	struct misc_ports_config cfg = { .bus = &bus };
	assert_int_equal(misc_ports_create(&cfg, &m), 0);
	assert_int_equal(bus_inb(&bus, GEN1_DEBUGCON_PORT), 0xFF);
	bus_outb(&bus, GEN1_POST_PORT, 0x12);
	bus_outb(&bus, GEN1_TEST_EXIT_PORT, 1);
	assert_int_equal(bus.unhandled, 3);
	misc_ports_destroy(m);
	dev_bus_destroy(&bus);
}

static void test_post_and_test_exit(void **state)
{
	(void)state;
	struct dev_bus bus;
	dev_bus_init(&bus);
	struct hook_log log;
	struct misc_ports *m;
	struct misc_ports_config cfg = { .bus = &bus, .post = true, .test_exit = true };
	cfg.hooks = hook_log_hooks(&log);
	assert_int_equal(misc_ports_create(&cfg, &m), 0);
	for (unsigned v = 0; v < 256; v++)
		bus_outb(&bus, GEN1_POST_PORT, (uint8_t)v);
	assert_int_equal(bus_inb(&bus, GEN1_POST_PORT), 0xFF);
	assert_int_equal(bus.unhandled, 0);
	bus_outw(&bus, GEN1_TEST_EXIT_PORT, 0x0101); /* wider than the port: not handled */
	assert_int_equal(log.test_exits, 0);
	bus_outb(&bus, GEN1_TEST_EXIT_PORT, 0x2A);
	assert_int_equal(log.test_exits, 1);
	assert_int_equal(log.last_test_exit, 0x2A);
	/* the ports are taken now */
	struct misc_ports *again;
	assert_int_equal(misc_ports_create(&cfg, &again), -EEXIST);
	misc_ports_destroy(m);
	dev_bus_destroy(&bus);
}

static void test_debug_console(void **state)
{
	(void)state;
	int fds[2];
	assert_int_equal(pipe2(fds, O_CLOEXEC), 0);
	struct serial_backend *out;
	assert_int_equal(serial_backend_open_fds(-1, fds[1], &out), 0);
	struct dev_bus bus;
	dev_bus_init(&bus);
	struct misc_ports *m;
	struct misc_ports_config cfg = { .bus = &bus, .debugcon = true, .debugcon_output = out };
	assert_int_equal(misc_ports_create(&cfg, &m), 0);
	/* SeaBIOS writes there only after reading back 0xE9 */
	assert_int_equal(bus_inb(&bus, GEN1_DEBUGCON_PORT), 0xE9);
	const char *banner = "SeaBIOS (version test)\n";
	for (const char *p = banner; *p; p++)
		bus_outb(&bus, GEN1_DEBUGCON_PORT, (uint8_t)*p);
	char got[32] = { 0 };
	size_t len = strlen(banner), have = 0;
	while (have < len) {
		struct pollfd p = { fds[0], POLLIN, 0 };
		assert_int_equal(poll(&p, 1, 3000), 1);
		ssize_t n = read(fds[0], got + have, len - have);
		assert_true(n > 0);
		have += (size_t)n;
	}
	assert_string_equal(got, banner);
	misc_ports_destroy(m);
	serial_backend_close(out);
	close(fds[0]);
	close(fds[1]);
	/* without an output the bytes are discarded */
	cfg.debugcon_output = NULL;
	dev_bus_destroy(&bus);
	dev_bus_init(&bus);
	assert_int_equal(misc_ports_create(&cfg, &m), 0);
	bus_outb(&bus, GEN1_DEBUGCON_PORT, 'x');
	bus_outl(&bus, GEN1_DEBUGCON_PORT, 0x41424344); /* too wide: not handled */
	assert_int_equal(bus_inb(&bus, GEN1_DEBUGCON_PORT), 0xE9);
	misc_ports_destroy(m);
	dev_bus_destroy(&bus);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_nothing_unless_asked),
		cmocka_unit_test(test_post_and_test_exit),
		cmocka_unit_test(test_debug_console),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
