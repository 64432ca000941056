/* The KVM core run on this machine's /dev/kvm with tiny guest payloads (tests/guest/, one .S each)
 * loaded as the firmware. The payloads report through test devices registered on the VM's
 * bus; the expected values are computed here independently (the sequence the source port
 * hands out, the pattern of a composed image, the payload's own bytes), and guest RAM is
 * read back through vm_guest_mem. The last test boots Debian's SeaBIOS far enough to see
 * its banner on the debug console. Without /dev/kvm the program exits 77. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "gen1_layout.h"
#include "payload.h"
#include "test_util.h"
#include "vm.h"

#ifndef GUEST_PAYLOAD_DIR
#error "GUEST_PAYLOAD_DIR must name the built payloads"
#endif

#define RAM_SIZE	(16u << 20)
#define RUN_TIMEOUT_S	20
#define MAX_LOG		64
#define SEABIOS		"/usr/share/seabios/bios.bin"
#define DEBUGCON_BUF	16384
#define SEABIOS_BANNER	"SeaBIOS (version "
#define MMIO_LEN	0x100
#define MAX_MMIO_WRITES 8

struct log_entry {
	unsigned size;
	uint32_t value;
};

struct mmio_write {
	uint64_t offset;
	unsigned size;
	uint64_t value;
};

struct rig {
	struct vm *vm;
	pthread_mutex_t lock;
	pthread_cond_t cond;
	struct log_entry log[MAX_LOG];
	unsigned nlog;
	unsigned src_next;
	struct mmio_write mmio[MAX_MMIO_WRITES];
	unsigned nmmio;
	unsigned hooks_run;
	bool irq_ready;
	struct irq_line irq;
	char debugcon[DEBUGCON_BUF];
	size_t ndebugcon;
	const char *debugcon_stop; /* stop the VM once a line with this is complete */
	/* the i440FX stand-in of the SeaBIOS POST test */
	uint32_t pci_address;
	uint8_t host_config[256];
	uint8_t pam_writes[32]; /* PAM0 values in the order SeaBIOS wrote them */
	unsigned npam_writes;
	uint8_t cmos_index;
};

static struct rig rig;

/* ---- expected values ---- */

static uint32_t mask(unsigned size)
{
	return size >= 4 ? UINT32_MAX : (UINT32_C(1) << (size * 8)) - 1;
}

/* The n-th value the source port hands out. */
static uint32_t src_value(unsigned n)
{
	return (uint32_t)test_mix64(n + 1);
}

static uint32_t mmio_value(uint64_t offset, unsigned size)
{
	return (uint32_t)test_mix64(0x100 + offset) & mask(size);
}

static uint32_t le32_at(const uint8_t *p)
{
	return p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

/* ---- test devices ---- */

static void log_write(void *opaque, uint64_t offset, unsigned size, uint64_t value)
{
	(void)opaque;
	(void)offset;
	pthread_mutex_lock(&rig.lock);
	if (rig.nlog < MAX_LOG)
		rig.log[rig.nlog++] = (struct log_entry){ size, (uint32_t)value };
	pthread_mutex_unlock(&rig.lock);
}

static uint64_t src_read(void *opaque, uint64_t offset, unsigned size)
{
	(void)opaque;
	(void)offset;
	pthread_mutex_lock(&rig.lock);
	uint32_t v = src_value(rig.src_next++) & mask(size);
	pthread_mutex_unlock(&rig.lock);
	return v;
}

static void control_write(void *opaque, uint64_t offset, unsigned size, uint64_t value)
{
	(void)opaque;
	uint16_t port = (uint16_t)(TEST_EXIT_PORT + offset);
	if (port == TEST_EXIT_PORT && size == 1)
		vm_request_stop(rig.vm, VM_STOP_TEST_EXIT, (unsigned)value);
}

static void machine_write(void *opaque, uint64_t offset, unsigned size, uint64_t value)
{
	(void)opaque;
	uint16_t port = (uint16_t)(TEST_RESET_PORT + offset);
	if (port == TEST_RESET_PORT) {
		vm_request_reset(rig.vm, "test port");
	} else if (port == TEST_PAM_PORT && size == 4) {
		vm_set_pam(rig.vm, value & ~UINT64_C(0x3FFF), 0x4000, value & 3);
	} else if (port == TEST_IRQ_READY) {
		pthread_mutex_lock(&rig.lock);
		rig.irq_ready = true;
		pthread_cond_broadcast(&rig.cond);
		pthread_mutex_unlock(&rig.lock);
	} else if (port == TEST_IRQ_ACK) {
		irq_line_set(&rig.irq, false);
	}
}

static void mmio_write(void *opaque, uint64_t offset, unsigned size, uint64_t value)
{
	(void)opaque;
	pthread_mutex_lock(&rig.lock);
	if (rig.nmmio < MAX_MMIO_WRITES)
		rig.mmio[rig.nmmio++] = (struct mmio_write){ offset, size, value };
	pthread_mutex_unlock(&rig.lock);
}

static uint64_t mmio_read(void *opaque, uint64_t offset, unsigned size)
{
	(void)opaque;
	return mmio_value(offset, size);
}

static uint64_t debugcon_read(void *opaque, uint64_t offset, unsigned size)
{
	(void)opaque;
	(void)offset;
	(void)size;
	return 0xE9;
}

static void debugcon_write(void *opaque, uint64_t offset, unsigned size, uint64_t value)
{
	(void)opaque;
	(void)offset;
	(void)size;
	pthread_mutex_lock(&rig.lock);
	if (rig.ndebugcon < DEBUGCON_BUF - 1)
		rig.debugcon[rig.ndebugcon++] = (char)value;
	const char *seen = strstr(rig.debugcon, rig.debugcon_stop);
	bool done = seen && strchr(seen, '\n');
	pthread_mutex_unlock(&rig.lock);
	if (done)
		vm_request_stop(rig.vm, VM_STOP_QUIT, 0);
}

/* Just enough of an i440FX host bridge (00:00.0, 8086:1237, PAM registers 0x59-0x5F) for
 * SeaBIOS to shadow itself; every other PCI function is absent. */
#define I440FX_PAM0 0x59
#define I440FX_PAM6 0x5F

static bool host_bridge_selected(void)
{
	return (rig.pci_address & 0x80FFFF00u) == 0x80000000u;
}

static void pam_register_written(unsigned reg, uint8_t value)
{
	if (reg == I440FX_PAM0) {
		if (rig.npam_writes < sizeof(rig.pam_writes))
			rig.pam_writes[rig.npam_writes++] = value;
		vm_set_pam(rig.vm, 0xF0000, 0x10000, value >> 4);
		return;
	}
	uint64_t base = 0xC0000 + (reg - I440FX_PAM0 - 1) * 0x8000;
	vm_set_pam(rig.vm, base, 0x4000, value & 3);
	vm_set_pam(rig.vm, base + 0x4000, 0x4000, (value >> 4) & 3);
}

static uint64_t pci_read(void *opaque, uint64_t offset, unsigned size)
{
	(void)opaque;
	if (offset < 4)
		return rig.pci_address;
	if (!host_bridge_selected())
		return UINT64_MAX;
	uint64_t value = 0;
	unsigned reg = (rig.pci_address & 0xFC) + (unsigned)(offset - 4);
	memcpy(&value, rig.host_config + reg, size);
	return value;
}

static void pci_write(void *opaque, uint64_t offset, unsigned size, uint64_t value)
{
	(void)opaque;
	if (offset < 4) {
		if (size == 4)
			rig.pci_address = (uint32_t)value;
		return;
	}
	if (!host_bridge_selected())
		return;
	unsigned reg = (rig.pci_address & 0xFC) + (unsigned)(offset - 4);
	for (unsigned i = 0; i < size; i++, reg++, value >>= 8) {
		if (reg < I440FX_PAM0 || reg > I440FX_PAM6)
			continue;
		rig.host_config[reg] = (uint8_t)value;
		pam_register_written(reg, (uint8_t)value);
	}
}

/* CMOS as far as SeaBIOS's RAM sizing goes: 0x34/0x35 = RAM above 16 MiB in 64 KiB units. */
static uint64_t cmos_read(void *opaque, uint64_t offset, unsigned size)
{
	(void)size;
	uint64_t ram = *(const uint64_t *)opaque;
	if (offset == 0)
		return rig.cmos_index;
	switch (rig.cmos_index & 0x7F) {
	case 0x34:
		return ((ram - (16u << 20)) >> 16) & 0xFF;
	case 0x35:
		return ((ram - (16u << 20)) >> 24) & 0xFF;
	case 0x0D:
		return 0x80; /* RTC valid */
	default:
		return 0;
	}
}

static void cmos_write(void *opaque, uint64_t offset, unsigned size, uint64_t value)
{
	(void)opaque;
	(void)size;
	if (offset == 0)
		rig.cmos_index = (uint8_t)value;
}

static const struct dev_ops log_ops = { .write = log_write };
static const struct dev_ops src_ops = { .read = src_read };
static const struct dev_ops control_ops = { .write = control_write };
static const struct dev_ops machine_ops = { .write = machine_write };
static const struct dev_ops mmio_ops = { .read = mmio_read, .write = mmio_write };
static const struct dev_ops debugcon_ops = { .read = debugcon_read, .write = debugcon_write };
static const struct dev_ops pci_ops = { .read = pci_read, .write = pci_write };
static const struct dev_ops cmos_ops = { .read = cmos_read, .write = cmos_write };

static void count_hook(void *opaque)
{
	struct rig *r = opaque;
	pthread_mutex_lock(&r->lock);
	r->hooks_run++;
	pthread_mutex_unlock(&r->lock);
}

static void register_test_devices(void)
{
	struct dev_bus *bus = vm_bus(rig.vm);
	assert_int_equal(
		dev_bus_register(bus, DEV_PIO, TEST_EXIT_PORT, 1, &control_ops, NULL, "exit"), 0);
	assert_int_equal(dev_bus_register(bus, DEV_PIO, TEST_LOG_PORT, 4, &log_ops, NULL, "log"),
			 0);
	assert_int_equal(dev_bus_register(bus, DEV_PIO, TEST_SRC_PORT, 4, &src_ops, NULL, "src"),
			 0);
	assert_int_equal(
		dev_bus_register(bus, DEV_PIO, TEST_RESET_PORT, 10, &machine_ops, NULL, "machine"),
		0);
	assert_int_equal(
		dev_bus_register(bus, DEV_MMIO, TEST_MMIO_BASE, MMIO_LEN, &mmio_ops, NULL, "mmio"),
		0);
	assert_int_equal(vm_add_reset_hook(rig.vm, count_hook, &rig), 0);
	rig.irq = vm_gsi_line(rig.vm, TEST_IRQ);
}

/* ---- running ---- */

static uint8_t *read_whole_file(const char *path, size_t *size)
{
	FILE *f = fopen(path, "rb");
	if (!f)
		fail_msg("cannot open %s: %s", path, strerror(errno));
	fseek(f, 0, SEEK_END);
	long len = ftell(f);
	fseek(f, 0, SEEK_SET);
	uint8_t *buf = test_xmalloc((size_t)len);
	assert_int_equal(fread(buf, 1, (size_t)len, f), (size_t)len);
	fclose(f);
	*size = (size_t)len;
	return buf;
}

static uint8_t *load_payload(const char *name, size_t *size)
{
	char path[512];
	snprintf(path, sizeof(path), "%s/%s.bin", GUEST_PAYLOAD_DIR, name);
	uint8_t *p = read_whole_file(path, size);
	assert_int_equal(*size, PAYLOAD_SIZE);
	return p;
}

static void rig_create(const void *fw, size_t fw_size, unsigned cpus, bool no_reboot)
{
	struct vm_config cfg = { .ram_bytes = RAM_SIZE,
				 .cpus = cpus,
				 .firmware = fw,
				 .firmware_size = fw_size,
				 .no_reboot = no_reboot };
	char err[256] = "";
	int ret = vm_create(&cfg, &rig.vm, err, sizeof(err));
	if (ret)
		fail_msg("vm_create: %d: %s", ret, err);
	register_test_devices();
}

static void rig_create_payload(const char *name, unsigned cpus, bool no_reboot)
{
	size_t size;
	uint8_t *p = load_payload(name, &size);
	rig_create(p, size, cpus, no_reboot);
	free(p); /* vm_create keeps its own copy */
}

struct watchdog {
	pthread_t thread;
	pthread_mutex_t lock;
	pthread_cond_t cond;
	bool done, fired;
	unsigned seconds;
};

static void *watchdog_thread(void *arg)
{
	struct watchdog *w = arg;
	struct timespec until;
	clock_gettime(CLOCK_REALTIME, &until);
	until.tv_sec += w->seconds;
	pthread_mutex_lock(&w->lock);
	while (!w->done && pthread_cond_timedwait(&w->cond, &w->lock, &until) != ETIMEDOUT)
		;
	w->fired = !w->done;
	pthread_mutex_unlock(&w->lock);
	if (w->fired)
		vm_request_stop(rig.vm, VM_STOP_QUIT, 0);
	return NULL;
}

/* vm_run with a watchdog that quits a VM still running after seconds; returns whether it
 * had to. */
static bool run_with_timeout(struct vm_exit_status *st, unsigned seconds)
{
	struct watchdog w = { .seconds = seconds };
	pthread_mutex_init(&w.lock, NULL);
	pthread_cond_init(&w.cond, NULL);
	assert_int_equal(pthread_create(&w.thread, NULL, watchdog_thread, &w), 0);
	int ret = vm_run(rig.vm, st);
	pthread_mutex_lock(&w.lock);
	w.done = true;
	pthread_cond_signal(&w.cond);
	pthread_mutex_unlock(&w.lock);
	pthread_join(w.thread, NULL);
	assert_int_equal(ret, 0);
	return w.fired;
}

static void expect_test_exit(unsigned value)
{
	struct vm_exit_status st;
	bool timed_out = run_with_timeout(&st, RUN_TIMEOUT_S);
	if (timed_out)
		fail_msg("the payload did not exit within %u s (%u log entries)", RUN_TIMEOUT_S,
			 rig.nlog);
	if (st.reason != VM_STOP_TEST_EXIT)
		fail_msg("stopped with reason %d (%s), expected a test exit", st.reason,
			 st.message);
	assert_int_equal(st.test_exit_value, value);
}

static void expect_log(const struct log_entry *want, unsigned n)
{
	for (unsigned i = 0; i < n && i < rig.nlog; i++)
		if (rig.log[i].size != want[i].size || rig.log[i].value != want[i].value)
			fail_msg("log entry %u: %u bytes 0x%x, expected %u bytes 0x%x", i,
				 rig.log[i].size, rig.log[i].value, want[i].size, want[i].value);
	assert_int_equal(rig.nlog, n);
}

static uint32_t guest_u32(uint64_t gpa)
{
	uint8_t b[4];
	assert_int_equal(guest_mem_read(vm_guest_mem(rig.vm), gpa, b, 4), 0);
	return le32_at(b);
}

static int setup(void **state)
{
	(void)state;
	memset(&rig, 0, sizeof(rig));
	pthread_mutex_init(&rig.lock, NULL);
	pthread_cond_init(&rig.cond, NULL);
	return 0;
}

static int teardown(void **state)
{
	(void)state;
	vm_destroy(rig.vm);
	rig.vm = NULL;
	return 0;
}

/* ---- tests ---- */

static void test_port_io(void **state)
{
	(void)state;
	rig_create_payload("pio", 1, false);
	expect_test_exit(0x11);
	const char *msg = "string I/O works";
	struct log_entry want[6 + 16] = {
		{ 1, 0xA5 },
		{ 2, 0xBEEF },
		{ 4, 0xDEADBEEF },
		{ 1, src_value(0) & 0xFF },
		{ 2, src_value(1) & 0xFFFF },
		{ 4, src_value(2) },
	};
	for (unsigned i = 0; i < 16; i++)
		want[6 + i] = (struct log_entry){ 1, (uint8_t)msg[i] };
	expect_log(want, 22);
	/* rep insw: 8 words from the source, in order, in RAM */
	uint8_t buf[16];
	assert_int_equal(guest_mem_read(vm_guest_mem(rig.vm), RAM_STRING_BUF, buf, 16), 0);
	for (unsigned i = 0; i < 8; i++)
		assert_int_equal(buf[2 * i] | buf[2 * i + 1] << 8, src_value(3 + i) & 0xFFFF);
	/* 31 port accesses (6 + 16 + 8 + the exit): fewer exits means some carried count > 1
	 * (KVM batches `rep insw` into RAM; how it splits `rep outsb` from ROM is its choice) */
	struct vm_stats s;
	vm_get_stats(rig.vm, &s);
	assert_in_range(s.io_exits, 9, 30);
}

static void test_mmio(void **state)
{
	(void)state;
	rig_create_payload("mmio", 1, false);
	uint64_t unhandled_before = vm_bus(rig.vm)->unhandled;
	expect_test_exit(0x12);
	const struct mmio_write writes[] = { { 0, 1, 0x12 },
					     { 2, 2, 0x3456 },
					     { 4, 4, 0x789ABCDE } };
	assert_int_equal(rig.nmmio, 3);
	for (unsigned i = 0; i < 3; i++) {
		assert_int_equal(rig.mmio[i].offset, writes[i].offset);
		assert_int_equal(rig.mmio[i].size, writes[i].size);
		assert_int_equal(rig.mmio[i].value, writes[i].value);
	}
	const struct log_entry want[] = {
		{ 1, mmio_value(8, 1) },
		{ 2, mmio_value(10, 2) },
		{ 4, mmio_value(12, 4) },
		{ 4, 0xFFFFFFFF },
		{ 1, 0xFF },
		{ 4, 0xCAFEF00D },
		{ 4, 0xCAFEF00D },
	};
	expect_log(want, 7);
	/* two unmapped reads and one unmapped write reached no device */
	assert_int_equal(vm_bus(rig.vm)->unhandled - unhandled_before, 3);
}

static void test_pam(void **state)
{
	(void)state;
	size_t size;
	uint8_t *payload = load_payload("pam", &size);
	uint8_t *image = test_xmalloc(2 * PAYLOAD_SIZE);
	test_fill_pattern(image, PAYLOAD_SIZE, 0, 0x9A11);
	memcpy(image + PAYLOAD_SIZE, payload, PAYLOAD_SIZE);
	rig_create(image, 2 * PAYLOAD_SIZE, 1, false);
	expect_test_exit(0x13);
	const struct log_entry want[] = {
		{ 4, le32_at(image) },	 /* ROM */
		{ 4, 0 },		 /* RAM, still empty */
		{ 4, le32_at(payload) }, /* the copy */
		{ 4, le32_at(payload + 0x3FFC) },
		{ 4, le32_at(payload) },	/* read-only: the write was dropped */
		{ 4, le32_at(image) },		/* ROM again */
		{ 4, le32_at(image + 4) },	/* write-only: reads still see ROM */
		{ 4, 0x600DCAFE },		/* ... and the write reached RAM */
		{ 4, le32_at(image + 0x4000) }, /* the next granule never left ROM */
	};
	expect_log(want, sizeof(want) / sizeof(want[0]));
	assert_int_equal(guest_u32(0xE0000), le32_at(payload));
	assert_int_equal(guest_u32(0xE0004), 0x600DCAFE);
	assert_int_equal(guest_u32(0xE3FFC), le32_at(payload + 0x3FFC));
	free(payload);
	free(image);
}

static void *raise_when_ready(void *arg)
{
	(void)arg;
	struct timespec until;
	clock_gettime(CLOCK_REALTIME, &until);
	until.tv_sec += RUN_TIMEOUT_S;
	pthread_mutex_lock(&rig.lock);
	while (!rig.irq_ready && pthread_cond_timedwait(&rig.cond, &rig.lock, &until) != ETIMEDOUT)
		;
	bool ready = rig.irq_ready;
	pthread_mutex_unlock(&rig.lock);
	if (ready)
		irq_line_set(&rig.irq, true);
	return NULL;
}

static void test_interrupt_through_pic(void **state)
{
	(void)state;
	rig_create_payload("irq", 1, false);
	pthread_t t;
	assert_int_equal(pthread_create(&t, NULL, raise_when_ready, NULL), 0);
	expect_test_exit(0x14);
	pthread_join(t, NULL);
	const struct log_entry want[] = { { 1, 0x20 + TEST_IRQ }, { 1, 1 } };
	expect_log(want, 2);
}

static void test_ap_started_by_init_sipi(void **state)
{
	(void)state;
	rig_create_payload("smp", 2, false);
	expect_test_exit(0x15);
	/* the AP (APIC ID 1 in its CPUID) reported, then the BSP (APIC ID 0) saw its flag */
	const struct log_entry want[] = { { 1, 0x81 }, { 1, 0 }, { 1, AP_FLAG_VALUE } };
	expect_log(want, 3);
}

static void test_reset_keeps_ram_and_restores_pam(void **state)
{
	(void)state;
	rig_create_payload("reset", 1, false);
	expect_test_exit(0x16);
	/* 0xE0000 reads the ROM view (all ones below a 64 KiB image) on both runs */
	const struct log_entry want[] = {
		{ 2, 1 }, { 4, 0xFFFFFFFF }, { 2, 2 }, { 4, 0xFFFFFFFF }
	};
	expect_log(want, 4);
	assert_int_equal(rig.hooks_run, 1);
	struct vm_stats s;
	vm_get_stats(rig.vm, &s);
	assert_int_equal(s.resets, 1);
	assert_int_equal(guest_u32(0xE0000), 0x12345678); /* the shadow RAM itself was kept */
}

static void test_triple_fault_resets(void **state)
{
	(void)state;
	rig_create_payload("triple", 1, false);
	expect_test_exit(0x17);
	const struct log_entry want[] = { { 2, 1 }, { 2, 2 } };
	expect_log(want, 2);
	assert_int_equal(rig.hooks_run, 1);
}

static void test_triple_fault_no_reboot(void **state)
{
	(void)state;
	rig_create_payload("triple", 1, true);
	struct vm_exit_status st;
	assert_false(run_with_timeout(&st, RUN_TIMEOUT_S));
	assert_int_equal(st.reason, VM_STOP_RESET);
	const struct log_entry want[] = { { 2, 1 } };
	expect_log(want, 1);
	assert_int_equal(rig.hooks_run, 0);
}

/* ---- pause/resume: a helper thread drives the VM while vm_run blocks ---- */

struct pause_check {
	bool counted_before_pause, frozen, paused_flag, counted_after_resume;
	uint32_t before, after;
};

static uint32_t spin_count(void)
{
	uint8_t b[4];
	if (guest_mem_read(vm_guest_mem(rig.vm), RAM_SPIN_COUNTER, b, 4))
		return 0;
	return le32_at(b);
}

/* Waits (up to the run timeout) for the spin counter to pass above. */
static bool wait_count_above(uint32_t above)
{
	for (unsigned i = 0; i < RUN_TIMEOUT_S * 100; i++) {
		if (spin_count() > above)
			return true;
		usleep(10000);
	}
	return false;
}

static void *pause_driver(void *arg)
{
	struct pause_check *c = arg;
	/* started paused: nothing counts until the resume */
	usleep(100000);
	c->counted_before_pause = spin_count() != 0;
	vm_resume(rig.vm);
	if (wait_count_above(0)) {
		vm_pause(rig.vm);
		c->paused_flag = vm_is_paused(rig.vm);
		c->before = spin_count();
		usleep(100000);
		c->after = spin_count();
		c->frozen = c->before == c->after;
		vm_resume(rig.vm);
		c->counted_after_resume = wait_count_above(c->after);
	}
	vm_request_stop(rig.vm, VM_STOP_QUIT, 0);
	return NULL;
}

static void test_pause_resume(void **state)
{
	(void)state;
	/* two vCPUs: the AP, never started, waits for SIPI inside KVM_RUN and must be
	 * interrupted as promptly as the spinning BSP */
	rig_create_payload("spin", 2, false);
	assert_int_equal(vm_pause(rig.vm), 0);
	struct pause_check c = { 0 };
	pthread_t t;
	assert_int_equal(pthread_create(&t, NULL, pause_driver, &c), 0);
	struct vm_exit_status st;
	assert_false(run_with_timeout(&st, 3 * RUN_TIMEOUT_S));
	pthread_join(t, NULL);
	assert_int_equal(st.reason, VM_STOP_QUIT);
	assert_false(c.counted_before_pause);
	assert_true(c.paused_flag);
	if (!c.frozen)
		fail_msg("the counter moved while paused: %u -> %u", c.before, c.after);
	assert_true(c.counted_after_resume);
	assert_false(vm_is_paused(rig.vm));
}

static void test_internal_error_stops_cleanly(void **state)
{
	(void)state;
	rig_create_payload("badop", 1, false);
	struct vm_exit_status st;
	assert_false(run_with_timeout(&st, RUN_TIMEOUT_S));
	if (st.reason != VM_STOP_ERROR)
		fail_msg("stopped with reason %d, expected an error", st.reason);
	assert_contains(st.message, "vCPU 0: KVM internal error");
	assert_contains(st.message, "CS:IP a000:");
	const struct log_entry want[] = { { 1, 0x42 } };
	expect_log(want, 1);
}

/* ---- configuration and hostile arguments ---- */

static void expect_create_fails(const struct vm_config *cfg, int want, const char *reason)
{
	struct vm *vm = NULL;
	char err[256] = "";
	assert_int_equal(vm_create(cfg, &vm, err, sizeof(err)), want);
	assert_null(vm);
	assert_contains(err, reason);
}

static void test_bad_config_refused(void **state)
{
	(void)state;
	static uint8_t fw[4096];
	struct vm_config good = {
		.ram_bytes = RAM_SIZE, .cpus = 1, .firmware = fw, .firmware_size = sizeof(fw)
	};
	struct vm_config c = good;
	c.cpus = 0;
	expect_create_fails(&c, -EINVAL, "vCPUs");
	c.cpus = VM_MAX_CPUS + 1;
	expect_create_fails(&c, -EINVAL, "vCPUs");
	c = good;
	c.ram_bytes = 1 << 20;
	expect_create_fails(&c, -EINVAL, "RAM size");
	c.ram_bytes = RAM_SIZE + 1;
	expect_create_fails(&c, -EINVAL, "RAM size");
	c = good;
	c.firmware_size = 0;
	expect_create_fails(&c, -EINVAL, "firmware");
	c.firmware_size = VM_MAX_FIRMWARE + 1;
	expect_create_fails(&c, -EINVAL, "firmware");
	/* huge pages: a clear error when none are reserved */
	FILE *f = fopen("/proc/sys/vm/nr_hugepages", "r");
	unsigned long reserved = 1;
	if (f) {
		if (fscanf(f, "%lu", &reserved) != 1)
			reserved = 1;
		fclose(f);
	}
	if (reserved == 0) {
		c = good;
		c.hugepages = true;
		expect_create_fails(&c, -ENOMEM, "nr_hugepages");
	}
}

static void test_hostile_arguments_ignored(void **state)
{
	(void)state;
	size_t size;
	uint8_t *p = load_payload("pio", &size);
	rig_create(p, size, 1, false);
	free(p);
	/* outside the PAM area, wrapping, or an empty range: nothing changes */
	vm_set_pam(rig.vm, 0, 0x4000, 3);
	vm_set_pam(rig.vm, 0xFC000, 0x8000, 3);
	vm_set_pam(rig.vm, UINT64_MAX - 0x100, 0x200, 3);
	vm_set_pam(rig.vm, 0xE0000, 0, 3);
	struct irq_line none = vm_gsi_line(rig.vm, VM_NR_GSI);
	irq_line_set(&none, true);
	assert_int_equal(vm_add_reset_hook(rig.vm, NULL, NULL), -EINVAL);
	/* the payload still runs from the ROM alias, so PAM stayed at its power-on state */
	expect_test_exit(0x11);
}

/* ---- SeaBIOS ---- */

#define SEABIOS_RAM (64ull << 20)

/* A VM running Debian's SeaBIOS with only a debug console; false when it is missing. */
static bool create_seabios_vm(const char *stop_at)
{
	if (access(SEABIOS, R_OK) != 0) {
		print_message("skipped: %s is missing (Debian package seabios)\n", SEABIOS);
		return false;
	}
	size_t size;
	uint8_t *bios = read_whole_file(SEABIOS, &size);
	struct vm_config cfg = {
		.ram_bytes = SEABIOS_RAM, .cpus = 1, .firmware = bios, .firmware_size = size
	};
	char err[256] = "";
	int ret = vm_create(&cfg, &rig.vm, err, sizeof(err));
	free(bios);
	if (ret)
		fail_msg("vm_create: %s", err);
	rig.debugcon_stop = stop_at;
	assert_int_equal(dev_bus_register(vm_bus(rig.vm), DEV_PIO, GEN1_DEBUGCON_PORT, 1,
					  &debugcon_ops, NULL, "debugcon"),
			 0);
	return true;
}

static void run_seabios_until_stop_line(void)
{
	struct vm_exit_status st;
	bool timed_out = run_with_timeout(&st, RUN_TIMEOUT_S);
	if (timed_out || st.reason != VM_STOP_QUIT || !strstr(rig.debugcon, rig.debugcon_stop))
		fail_msg("no \"%s\" (reason %d, %s, timed out %d); debug console:\n%s",
			 rig.debugcon_stop, st.reason, st.message, timed_out, rig.debugcon);
}

/* The banner comes from the ROM through the reset vector and the low alias. */
static void test_seabios_banner(void **state)
{
	(void)state;
	if (!create_seabios_vm(SEABIOS_BANNER))
		skip();
	run_seabios_until_stop_line();
}

/* With PAM registers to program, SeaBIOS shadows itself (PAM 0x3x, copy, later 0x1x), sizes
 * RAM, calibrates its clock, builds its tables in the shadowed F segment and goes looking
 * for a boot device. */
static void test_seabios_post_shadows_itself(void **state)
{
	(void)state;
	if (!create_seabios_vm("No bootable device"))
		skip();
	static const uint64_t ram = SEABIOS_RAM;
	memcpy(rig.host_config, (const uint8_t[]){ 0x86, 0x80, 0x37, 0x12 }, 4);
	struct dev_bus *bus = vm_bus(rig.vm);
	assert_int_equal(
		dev_bus_register(bus, DEV_PIO, GEN1_PCI_CONFIG_ADDR, 8, &pci_ops, NULL, "i440fx"),
		0);
	assert_int_equal(
		dev_bus_register(bus, DEV_PIO, GEN1_CMOS_PORT, 2, &cmos_ops, (void *)&ram, "cmos"),
		0);
	run_seabios_until_stop_line();
	assert_contains(rig.debugcon, "Relocating init from");
	assert_contains(rig.debugcon, "RamSize: 0x04000000 [cmos]");
	/* PAM0 (0xF0000): read/write for the copy, then read-only for the boot */
	assert_true(rig.npam_writes >= 2);
	assert_int_equal(rig.pam_writes[0] >> 4, 3);
	assert_int_equal(rig.pam_writes[rig.npam_writes - 1] >> 4, 1);
	/* the PIR table SeaBIOS says it copied into the F segment is in the shadow RAM */
	const char *pir = strstr(rig.debugcon, "Copying PIR from ");
	assert_non_null(pir);
	unsigned long from, to;
	assert_int_equal(sscanf(pir, "Copying PIR from %lx to %lx", &from, &to), 2);
	assert_in_range(to, 0xF0000, 0xFFFF0);
	assert_int_equal(guest_u32(to), le32_at((const uint8_t *)"$PIR"));
}

int main(void)
{
	int fd = open("/dev/kvm", O_RDWR | O_CLOEXEC);
	if (fd < 0) {
		fprintf(stderr, "skipped: cannot open /dev/kvm: %s\n", strerror(errno));
		return TEST_SKIP;
	}
	close(fd);
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_port_io, setup, teardown),
		cmocka_unit_test_setup_teardown(test_mmio, setup, teardown),
		cmocka_unit_test_setup_teardown(test_pam, setup, teardown),
		cmocka_unit_test_setup_teardown(test_interrupt_through_pic, setup, teardown),
		cmocka_unit_test_setup_teardown(test_ap_started_by_init_sipi, setup, teardown),
		cmocka_unit_test_setup_teardown(test_reset_keeps_ram_and_restores_pam, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_triple_fault_resets, setup, teardown),
		cmocka_unit_test_setup_teardown(test_triple_fault_no_reboot, setup, teardown),
		cmocka_unit_test_setup_teardown(test_pause_resume, setup, teardown),
		cmocka_unit_test_setup_teardown(test_internal_error_stops_cleanly, setup, teardown),
		cmocka_unit_test_setup_teardown(test_bad_config_refused, setup, teardown),
		cmocka_unit_test_setup_teardown(test_hostile_arguments_ignored, setup, teardown),
		cmocka_unit_test_setup_teardown(test_seabios_banner, setup, teardown),
		cmocka_unit_test_setup_teardown(test_seabios_post_shadows_itself, setup, teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
