/* The 16550A through its ports: Linux 8250's autoconfig and THRE test, a polled console as
 * SeaBIOS's sercon drives it, interrupt priorities, FIFO levels and overflow; the
 * backends with pipes and a real Unix socket client. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "gen1_layout.h"
#include "platform_test.h"
#include "serial.h"

#define COM1 GEN1_COM1_BASE
#define RBR  (COM1 + 0)
#define IER  (COM1 + 1)
#define IIR  (COM1 + 2)
#define FCR  (COM1 + 2)
#define LCR  (COM1 + 3)
#define MCR  (COM1 + 4)
#define LSR  (COM1 + 5)
#define MSR  (COM1 + 6)
#define SCR  (COM1 + 7)

#define WAIT_MS 3000

struct rig {
	struct dev_bus bus;
	struct hook_log log;
	struct serial *uart;
	struct serial_backend *backend;
	int to_guest[2], from_guest[2]; /* pipes of the fd backend */
};

static void rig_start(struct rig *r, struct serial_backend *backend)
{
	dev_bus_init(&r->bus);
	struct platform_hooks hooks = hook_log_hooks(&r->log);
	r->backend = backend;
	struct serial_config cfg = { .bus = &r->bus,
				     .base = COM1,
				     .irq = { hooks.set_irq, hooks.opaque, GEN1_COM1_IRQ },
				     .backend = backend };
	assert_int_equal(serial_create(&cfg, &r->uart), 0);
}

static int setup(void **state)
{
	struct rig *r = calloc(1, sizeof(*r));
	assert_int_equal(pipe2(r->to_guest, O_CLOEXEC), 0);
	assert_int_equal(pipe2(r->from_guest, O_CLOEXEC), 0);
	struct serial_backend *b;
	assert_int_equal(serial_backend_open_fds(r->to_guest[0], r->from_guest[1], &b), 0);
	rig_start(r, b);
	*state = r;
	return 0;
}

static int teardown(void **state)
{
	struct rig *r = *state;
	serial_destroy(r->uart);
	serial_backend_close(r->backend);
	for (int i = 0; i < 2; i++) {
		if (r->to_guest[i] > 0)
			close(r->to_guest[i]);
		if (r->from_guest[i] > 0)
			close(r->from_guest[i]);
	}
	dev_bus_destroy(&r->bus);
	free(r);
	return 0;
}

static uint8_t in(struct rig *r, uint16_t port)
{
	return bus_inb(&r->bus, port);
}

static void out(struct rig *r, uint16_t port, uint8_t v)
{
	bus_outb(&r->bus, port, v);
}

/* A polled console's transmit: wait for THRE and TEMT, then write. */
static void console_put(struct rig *r, const char *s)
{
	for (; *s; s++) {
		assert_int_equal(in(r, LSR) & 0x60, 0x60);
		out(r, RBR, (uint8_t)*s);
	}
}

/* A polled console's receive, waiting for data ready as the backend thread delivers. */
static size_t console_get(struct rig *r, char *buf, size_t len)
{
	size_t n = 0;
	for (int ms = 0; n < len && ms < WAIT_MS;) {
		if (in(r, LSR) & 0x01) {
			buf[n++] = (char)in(r, RBR);
			continue;
		}
		usleep(1000);
		ms++;
	}
	return n;
}

/* Reads exactly len bytes from fd within the wait, or fails. */
static void read_exactly(int fd, void *buf, size_t len)
{
	size_t got = 0;
	while (got < len) {
		struct pollfd p = { fd, POLLIN, 0 };
		if (poll(&p, 1, WAIT_MS) <= 0)
			fail_msg("only %zu of %zu bytes arrived", got, len);
		ssize_t n = read(fd, (char *)buf + got, len - got);
		if (n <= 0)
			fail_msg("read ended after %zu of %zu bytes", got, len);
		got += (size_t)n;
	}
}

/* ---- what Linux's 8250 driver does ---- */

/* autoconfig(): scratch test of IER, loopback test of MSR, FIFO detection, then the
 * 16550A refinements (EFR, NS SuperIO, TI16750, XScale). Returns the type it would find. */
static const char *linux_autoconfig(struct rig *r)
{
	uint8_t scratch = in(r, IER);
	out(r, IER, 0);
	uint8_t scratch2 = in(r, IER) & 0x0F;
	out(r, IER, 0x0F);
	uint8_t scratch3 = in(r, IER) & 0x0F;
	out(r, IER, scratch);
	if (scratch2 != 0 || scratch3 != 0x0F)
		return "none (IER test)";
	uint8_t save_mcr = in(r, MCR);
	out(r, MCR, 0x10 | 0x0A);
	uint8_t status1 = in(r, MSR) & 0xF0;
	out(r, MCR, save_mcr);
	if (status1 != 0x90)
		return "none (loopback test)";
	out(r, LCR, 0xBF);
	out(r, IIR, 0); /* EFR on enhanced parts: FCR here */
	out(r, LCR, 0);
	out(r, FCR, 0x01);
	switch (in(r, IIR) >> 6) {
	case 0:
		return "8250/16450";
	case 1:
		return "unknown";
	case 2:
		return "16550";
	default:
		break;
	}
	out(r, LCR, 0xBF);
	if (in(r, IIR) == 0)
		return "EFR part";
	out(r, LCR, 0x80);
	if (in(r, IIR) == 0)
		return "16650";
	out(r, LCR, 0);
	status1 = in(r, MCR);
	out(r, LCR, 0xE0);
	uint8_t status2 = in(r, IIR);
	if (!((status2 ^ status1) & 0x10)) {
		out(r, LCR, 0);
		out(r, MCR, status1 ^ 0x10);
		out(r, LCR, 0xE0);
		status2 = in(r, IIR);
		out(r, LCR, 0);
		out(r, MCR, status1);
		if ((status2 ^ status1) & 0x10)
			return "NS16550";
	}
	out(r, LCR, 0);
	out(r, FCR, 0x01 | 0x20);
	status1 = in(r, IIR) >> 5;
	out(r, FCR, 0x01);
	out(r, LCR, 0x80);
	out(r, FCR, 0x01 | 0x20);
	status2 = in(r, IIR) >> 5;
	out(r, FCR, 0x01);
	out(r, LCR, 0);
	if (status1 == 6 && status2 == 7)
		return "16750";
	uint8_t iersave = in(r, IER);
	out(r, IER, iersave & ~0x40);
	if (!(in(r, IER) & 0x40)) {
		out(r, IER, iersave | 0x40);
		if (in(r, IER) & 0x40)
			return "XScale";
	}
	out(r, IER, iersave);
	return "16550A";
}

static void test_linux_detects_a_16550a(void **state)
{
	struct rig *r = *state;
	assert_string_equal(linux_autoconfig(r), "16550A");
	/* the probe left nothing pending */
	assert_int_equal(in(r, IIR) & 0x0F, 0x01);
	assert_int_equal(in(r, LSR), 0x60);
}

/* serial8250_do_startup's THRE test: enabling THRI with THR empty must raise the interrupt
 * at once, and again after IER was cleared and set. */
static void test_thre_interrupt_as_linux_tests_it(void **state)
{
	struct rig *r = *state;
	out(r, MCR, 0x08); /* OUT2: the IRQ reaches the PIC */
	out(r, IER, 0x02);
	assert_true(r->log.irq[GEN1_COM1_IRQ]);
	assert_int_equal(in(r, IIR), 0x02); /* reading IIR acknowledges it */
	assert_false(r->log.irq[GEN1_COM1_IRQ]);
	assert_int_equal(in(r, IIR), 0x01);
	out(r, IER, 0);
	out(r, IER, 0x02);
	assert_int_equal(in(r, IIR), 0x02);
	/* each transmitted byte empties THR again: a new THRE interrupt */
	out(r, RBR, 'x');
	assert_true(r->log.irq[GEN1_COM1_IRQ]);
	out(r, IER, 0);
	assert_false(r->log.irq[GEN1_COM1_IRQ]);
	/* without OUT2 the line stays low */
	out(r, MCR, 0);
	out(r, IER, 0x02);
	assert_int_equal(in(r, IIR), 0x02);
	assert_int_equal(r->log.irq_raises[GEN1_COM1_IRQ], 3);
	char c;
	read_exactly(r->from_guest[0], &c, 1);
	assert_int_equal(c, 'x');
}

/* ---- a polled console ---- */

static void test_console_transmit_and_receive(void **state)
{
	struct rig *r = *state;
	out(r, LCR, 0x03); /* sercon: 8N1, FIFO on */
	out(r, FCR, 0x01);
	console_put(r, "SeaBIOS (version x)\r\n");
	char got[64] = { 0 };
	read_exactly(r->from_guest[0], got, 21);
	assert_string_equal(got, "SeaBIOS (version x)\r\n");
	/* 100 bytes typed at once: more than the FIFO holds, none lost */
	char typed[100], seen[100];
	for (int i = 0; i < 100; i++)
		typed[i] = (char)('A' + i % 26);
	assert_int_equal(write(r->to_guest[1], typed, sizeof(typed)), (ssize_t)sizeof(typed));
	assert_int_equal(console_get(r, seen, sizeof(seen)), sizeof(seen));
	assert_memory_equal(seen, typed, sizeof(typed));
	struct serial_backend_stats st;
	serial_backend_get_stats(r->backend, &st);
	assert_int_equal(st.input_bytes, 100);
	assert_int_equal(st.output_bytes, 21);
	assert_int_equal(st.output_dropped, 0);
}

static void test_divisor_latch_and_scratch(void **state)
{
	struct rig *r = *state;
	out(r, LCR, 0x83);
	out(r, RBR, 0x01); /* 115200 baud */
	out(r, IER, 0x00);
	assert_int_equal(in(r, RBR), 0x01);
	assert_int_equal(in(r, IER), 0x00);
	out(r, LCR, 0x03);
	assert_int_equal(in(r, LCR), 0x03);
	assert_int_equal(in(r, IER), 0x00); /* the real IER again */
	out(r, SCR, 0x5A);
	assert_int_equal(in(r, SCR), 0x5A);
	out(r, LSR, 0x00); /* read-only */
	out(r, MSR, 0x00);
	assert_int_equal(in(r, LSR), 0x60);
	assert_int_equal(in(r, MSR) & 0xF0, 0xB0); /* CTS, DSR, DCD */
}

/* ---- loopback, FIFO, priorities ---- */

static void test_interrupt_priorities(void **state)
{
	struct rig *r = *state;
	out(r, FCR, 0x07);
	out(r, MCR, 0x10 | 0x08);	 /* loopback, OUT2 */
	(void)in(r, MSR);		 /* forget the deltas of entering loopback */
	out(r, MCR, 0x10 | 0x08 | 0x02); /* RTS: CTS changes, a modem status event */
	for (int i = 0; i < 17; i++)	 /* one more than the FIFO: overrun */
		out(r, RBR, (uint8_t)i);
	out(r, IER, 0x0F);
	assert_true(r->log.irq[GEN1_COM1_IRQ]);
	assert_int_equal(in(r, IIR), 0xC6); /* line status first */
	assert_int_equal(in(r, LSR) & 0x03, 0x03);
	assert_int_equal(in(r, IIR), 0xC4); /* then received data (above the trigger) */
	for (int i = 0; i < 16; i++)
		assert_int_equal(in(r, RBR), i);
	assert_int_equal(in(r, LSR) & 0x03, 0x00);
	assert_int_equal(in(r, IIR), 0xC2);	   /* then THR empty, acknowledged by this read */
	assert_int_equal(in(r, IIR), 0xC0);	   /* then modem status */
	assert_int_equal(in(r, MSR) & 0x11, 0x11); /* DCTS, CTS */
	assert_int_equal(in(r, IIR), 0xC1);
	assert_false(r->log.irq[GEN1_COM1_IRQ]);
}

static void test_fifo_levels_and_overflow(void **state)
{
	struct rig *r = *state;
	out(r, FCR, 0xC1); /* trigger at 14 */
	out(r, IER, 0x01);
	uint8_t bytes[20];
	for (int i = 0; i < 20; i++)
		bytes[i] = (uint8_t)(0x30 + i);
	assert_int_equal(serial_receive(r->uart, bytes, 3), 3);
	assert_int_equal(in(r, IIR), 0xCC); /* below the trigger: timeout indication */
	assert_int_equal(serial_receive(r->uart, bytes + 3, 17), 13); /* 16 fit */
	assert_int_equal(in(r, IIR), 0xC4);
	assert_int_equal(in(r, LSR) & 0x02, 0); /* refused, not overrun */
	for (int i = 0; i < 16; i++)
		assert_int_equal(in(r, RBR), 0x30 + i);
	assert_int_equal(in(r, LSR) & 0x01, 0);
	assert_int_equal(in(r, RBR), 0x3F); /* empty: the last byte again */
	/* FIFO off: one byte of holding register */
	out(r, FCR, 0x00);
	assert_int_equal(in(r, IIR), 0x01);
	assert_int_equal(serial_receive(r->uart, bytes, 2), 1);
	out(r, MCR, 0x10);
	out(r, RBR, 0xAA); /* loopback into a full holding register */
	assert_int_equal(in(r, LSR) & 0x03, 0x03);
	assert_int_equal(in(r, RBR), 0x30);
	/* switching the FIFO on empties it; FCR bit1 empties it too */
	serial_receive(r->uart, bytes, 1);
	out(r, FCR, 0x01);
	assert_int_equal(in(r, LSR) & 0x01, 0);
	serial_receive(r->uart, bytes, 5);
	out(r, FCR, 0x03);
	assert_int_equal(in(r, LSR) & 0x01, 0);
}

/* ---- backends ---- */

static void test_slow_reader_never_blocks(void **state)
{
	struct rig *r = *state;
	/* nobody reads from_guest: the pipe (64 KiB) and the ring (64 KiB) fill, then drops */
	const size_t total = 300 * 1024;
	for (size_t sent = 0; sent < total; sent++)
		out(r, RBR, 'z');
	struct serial_backend_stats st;
	serial_backend_get_stats(r->backend, &st);
	assert_true(st.output_dropped > 0);
	assert_true(st.output_dropped <= total - 64 * 1024);
}

static void test_backend_descriptions(void **state)
{
	(void)state;
	struct serial_backend *b = (struct serial_backend *)1;
	assert_int_equal(serial_backend_open("none", &b), 0);
	assert_null(b);
	assert_int_equal(serial_backend_open("tcp:1234", &b), -EINVAL);
	assert_int_equal(serial_backend_open("file:", &b), -EINVAL);
	assert_int_equal(serial_backend_open("file:/nonexistent-dir/x", &b), -ENOENT);
	char longpath[200];
	memset(longpath, 'a', sizeof(longpath) - 1);
	longpath[sizeof(longpath) - 1] = 0;
	memcpy(longpath, "unix:", 5);
	assert_int_equal(serial_backend_open(longpath, &b), -ENAMETOOLONG);
	/* file: output lands in the file */
	const char *path = test_path("console.log");
	char spec[300];
	snprintf(spec, sizeof(spec), "file:%s", path);
	assert_int_equal(serial_backend_open(spec, &b), 0);
	assert_int_equal(serial_backend_write(b, "boot\n", 5), 5);
	for (int i = 0; i < WAIT_MS; i++) {
		struct serial_backend_stats st;
		serial_backend_get_stats(b, &st);
		if (st.output_bytes == 5)
			break;
		usleep(1000);
	}
	serial_backend_close(b);
	char back[5];
	test_file_read(path, back, 5, 0);
	assert_memory_equal(back, "boot\n", 5);
}

/* What was written before the backend is closed reaches the file, even when the backend's
 * thread has not got to it yet: a VM that prints its last line and stops at once. */
static void test_close_delivers_pending_output(void **state)
{
	(void)state;
	const char *path = test_path("last-line.log");
	char spec[300], line[64], back[64];
	snprintf(spec, sizeof(spec), "file:%s", path);
	for (int i = 0; i < 16; i++) {
		struct serial_backend *b;
		assert_int_equal(serial_backend_open(spec, &b), 0);
		int n = snprintf(line, sizeof(line), "run %d: the last line\n", i);
		assert_int_equal(serial_backend_write(b, line, (size_t)n), (size_t)n);
		serial_backend_close(b);
		test_file_read(path, back, (size_t)n, 0);
		assert_memory_equal(back, line, (size_t)n);
	}
}

static int connect_unix(const char *path)
{
	struct sockaddr_un addr = { .sun_family = AF_UNIX };
	snprintf(addr.sun_path, sizeof(addr.sun_path), "%s", path);
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	assert_true(fd >= 0);
	assert_int_equal(connect(fd, (struct sockaddr *)&addr, sizeof(addr)), 0);
	return fd;
}

/* Connects once the backend has noticed that the previous client left (until then a new
 * client is turned away: closed at once). */
static int connect_when_free(const char *path)
{
	for (int ms = 0; ms < WAIT_MS; ms += 10) {
		int fd = connect_unix(path);
		struct pollfd p = { fd, POLLIN, 0 };
		char c;
		if (poll(&p, 1, 10) == 0 || recv(fd, &c, 1, MSG_PEEK) != 0)
			return fd;
		close(fd);
	}
	fail_msg("the backend kept turning clients away");
	return -1;
}

/* The guest prints a line; the client must receive it. */
static void guest_says(struct rig *r, int client, const char *line)
{
	console_put(r, line);
	char got[64] = { 0 };
	read_exactly(client, got, strlen(line));
	assert_string_equal(got, line);
}

static void test_unix_socket_end_to_end(void **state)
{
	(void)state;
	struct rig *r = calloc(1, sizeof(*r));
	const char *path = test_path("com1.sock");
	char spec[300];
	snprintf(spec, sizeof(spec), "unix:%s", path);
	struct serial_backend *b;
	assert_int_equal(serial_backend_open(spec, &b), 0);
	rig_start(r, b);
	console_put(r, "early\n"); /* nobody connected: waits in the ring */
	int client = connect_unix(path);
	char early[7] = { 0 };
	read_exactly(client, early, 6);
	assert_string_equal(early, "early\n");
	guest_says(r, client, "login: ");
	assert_int_equal(write(client, "root\n", 5), 5);
	char typed[6] = { 0 };
	assert_int_equal(console_get(r, typed, 5), 5);
	assert_string_equal(typed, "root\n");
	/* a second client is turned away while the first is connected */
	int second = connect_unix(path);
	char c;
	struct pollfd p = { second, POLLIN, 0 };
	assert_int_equal(poll(&p, 1, WAIT_MS), 1);
	assert_int_equal(read(second, &c, 1), 0);
	close(second);
	/* the first leaves; the next one gets the output from then on */
	close(client);
	client = connect_when_free(path);
	guest_says(r, client, "again\n");
	close(client);
	serial_destroy(r->uart);
	serial_backend_close(b);
	assert_int_equal(access(path, F_OK), -1); /* the socket file is removed */
	dev_bus_destroy(&r->bus);
	free(r);
}

static void test_garbage_on_every_port(void **state)
{
	struct rig *r = *state;
	uint64_t seed = test_env_seed("TEST_SEED");
	for (int round = 0; round < 2000; round++)
		bus_garbage(&r->bus, COM1, 8, &seed);
	uint8_t junk[32] = { 0 };
	serial_receive(r->uart, junk, sizeof(junk));
	serial_reset(r->uart);
	assert_false(r->log.irq[GEN1_COM1_IRQ]);
	assert_int_equal(in(r, LSR), 0x60);
	assert_int_equal(in(r, IIR), 0x01);
	assert_string_equal(linux_autoconfig(r), "16550A");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_linux_detects_a_16550a, setup, teardown),
		cmocka_unit_test_setup_teardown(test_thre_interrupt_as_linux_tests_it, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_console_transmit_and_receive, setup, teardown),
		cmocka_unit_test_setup_teardown(test_divisor_latch_and_scratch, setup, teardown),
		cmocka_unit_test_setup_teardown(test_interrupt_priorities, setup, teardown),
		cmocka_unit_test_setup_teardown(test_fifo_levels_and_overflow, setup, teardown),
		cmocka_unit_test_setup_teardown(test_slow_reader_never_blocks, setup, teardown),
		cmocka_unit_test(test_backend_descriptions),
		cmocka_unit_test(test_close_delivers_pending_output),
		cmocka_unit_test(test_unix_socket_end_to_end),
		cmocka_unit_test_setup_teardown(test_garbage_on_every_port, setup, teardown),
	};
	int ret = cmocka_run_group_tests(tests, NULL, NULL);
	test_tmpdir_remove();
	return ret;
}
