/* The user-space Hyper-V interface on this machine's /dev/kvm: the hyperv payload
 * (tests/guest/hyperv.S) runs in long mode and uses CPUID, the MSRs, the hypercall page
 * and the SynIC the way Linux does, against a test double of the VMBus host that checks
 * what the guest posts and answers with messages and an event flag. The payload logs what
 * it sees; the expected values are the TLFS's. Without /dev/kvm the program exits 77. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <fcntl.h>
#include <linux/kvm.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <unistd.h>

#include "gen1_layout.h"
#include "hyperv_payload.h"
#include "payload.h"
#include "test_util.h"
#include "vm.h"

#define RAM_SIZE      (16u << 20)
#define RUN_TIMEOUT_S 30
#define MAX_LOG	      64
#define REPLY_A	      0xA1A1A1A1u /* first dwords of the host's two messages */
#define REPLY_B	      0xB2B2B2B2u

/* ---- the VMBus side's test double, and the log ---- */

struct host {
	struct vm *vm;
	pthread_mutex_t lock;
	uint32_t log[MAX_LOG];
	unsigned nlog;
	unsigned posts, frees, signals, unexpected;
	unsigned post_vp, post_len;
	uint32_t post_conn, post_type, signal_conn;
	uint16_t signal_flag;
	uint8_t post_payload[HYPERV_MESSAGE_PAYLOAD_MAX];
	bool b_waiting; /* REPLY_B found the slot full */
	int a_result, b_result, b_retry_result;
};

static struct host host;

static void log_write(void *opaque, uint64_t offset, unsigned size, uint64_t value)
{
	(void)opaque;
	(void)offset;
	pthread_mutex_lock(&host.lock);
	if (size == 4 && host.nlog < MAX_LOG)
		host.log[host.nlog++] = (uint32_t)value;
	else
		host.unexpected++;
	pthread_mutex_unlock(&host.lock);
}

static void exit_write(void *opaque, uint64_t offset, unsigned size, uint64_t value)
{
	(void)opaque;
	(void)offset;
	if (size == 1)
		vm_request_stop(host.vm, VM_STOP_TEST_EXIT, (unsigned)value);
}

static int post_reply(uint32_t first_dword)
{
	uint8_t payload[8] = { 0 };
	memcpy(payload, &first_dword, 4);
	return hyperv_synic_post_message(vm_hyperv(host.vm), 0, HVP_SINT, 1, payload,
					 sizeof(payload));
}

/* The guest's message: record it, answer with two messages; the slot holds one. */
static uint16_t vmbus_post(void *opaque, unsigned vp, uint32_t connection_id, uint32_t message_type,
			   const void *payload, size_t len)
{
	(void)opaque;
	host.posts++;
	host.post_vp = vp;
	host.post_conn = connection_id;
	host.post_type = message_type;
	host.post_len = (unsigned)len;
	memcpy(host.post_payload, payload, len);
	host.a_result = post_reply(REPLY_A);
	host.b_result = post_reply(REPLY_B);
	host.b_waiting = host.b_result == -EAGAIN;
	return HV_STATUS_SUCCESS;
}

static void vmbus_slot_free(void *opaque, unsigned vp, unsigned sint)
{
	(void)opaque;
	host.frees++;
	if (vp == 0 && sint == HVP_SINT && host.b_waiting) {
		host.b_waiting = false;
		host.b_retry_result = post_reply(REPLY_B);
	}
}

static uint16_t vmbus_signal(void *opaque, uint32_t connection_id, uint16_t flag)
{
	(void)opaque;
	host.signals++;
	host.signal_conn = connection_id;
	host.signal_flag = flag;
	hyperv_synic_signal_event(vm_hyperv(host.vm), 0, HVP_SINT, HVP_EVENT_FLAG);
	return HV_STATUS_SUCCESS;
}

/* ---- running ---- */

static const struct dev_ops log_ops = { .write = log_write };
static const struct dev_ops exit_ops = { .write = exit_write };

static bool kvm_available(void)
{
	int fd = open("/dev/kvm", O_RDWR | O_CLOEXEC);
	if (fd < 0)
		return false;
	close(fd);
	return true;
}

static bool kvm_has(int cap)
{
	int fd = open("/dev/kvm", O_RDWR | O_CLOEXEC);
	int r = fd < 0 ? 0 : ioctl(fd, KVM_CHECK_EXTENSION, cap);
	if (fd >= 0)
		close(fd);
	return r > 0;
}

static uint8_t *load_payload(size_t *size)
{
	char path[512];
	snprintf(path, sizeof(path), "%s/hyperv.bin", GUEST_PAYLOAD_DIR);
	FILE *f = fopen(path, "rb");
	if (!f)
		fail_msg("cannot open %s: %s", path, strerror(errno));
	uint8_t *buf = test_xmalloc(PAYLOAD_SIZE);
	*size = fread(buf, 1, PAYLOAD_SIZE, f);
	fclose(f);
	assert_int_equal(*size, PAYLOAD_SIZE);
	return buf;
}

static int create_vm(enum hyperv_synic_mode synic, struct vm **out, char *err, size_t err_size)
{
	size_t size;
	uint8_t *fw = load_payload(&size);
	struct vm_config cfg = { .ram_bytes = RAM_SIZE,
				 .cpus = 1,
				 .firmware = fw,
				 .firmware_size = size,
				 .synic = synic };
	int ret = vm_create(&cfg, out, err, err_size);
	free(fw);
	return ret;
}

static void *watchdog(void *arg)
{
	struct vm *vm = arg;
	for (unsigned i = 0; i < RUN_TIMEOUT_S * 10; i++) {
		usleep(100000);
		pthread_testcancel();
	}
	vm_request_stop(vm, VM_STOP_QUIT, 0);
	return NULL;
}

static void run_to_exit(unsigned value)
{
	pthread_t t;
	assert_int_equal(pthread_create(&t, NULL, watchdog, host.vm), 0);
	struct vm_exit_status st;
	assert_int_equal(vm_run(host.vm, &st), 0);
	pthread_cancel(t);
	pthread_join(t, NULL);
	if (st.reason != VM_STOP_TEST_EXIT)
		fail_msg("stopped with reason %d (%s) after %u log entries, expected a test exit",
			 st.reason, st.message, host.nlog);
	assert_int_equal(st.test_exit_value, value);
}

/* ---- tests ---- */

static void expect_log(unsigned i, uint32_t want, const char *what)
{
	if (i >= host.nlog)
		fail_msg("log entry %u (%s) missing: only %u", i, what, host.nlog);
	if (host.log[i] != want)
		fail_msg("log entry %u (%s): 0x%x, expected 0x%x", i, what, host.log[i], want);
}

static void check_cpuid_log(void)
{
	expect_log(0, 0x4000000A, "max leaf");
	char vendor[13] = { 0 };
	memcpy(vendor, &host.log[1], 12);
	assert_string_equal(vendor, "Microsoft Hv");
	assert_memory_equal(&host.log[4], "Hv#1", 4);
	/* SynIC, hypercall, VP index, TSC invariant; the frequency MSRs (EAX bit 11 with EDX
	 * bit 8) when KVM told the VMM the TSC rate */
	bool rate = host.log[5] & (1u << 11);
	assert_int_equal(host.log[5] & ~(1u << 11), (1u << 2) | (1u << 5) | (1u << 6) | (1u << 15));
	expect_log(6, (1u << 4) | (1u << 5), "privileges EBX");
	expect_log(7, rate ? 1u << 8 : 0, "features EDX");
	expect_log(8, 1u << 9, "hints: no AutoEOI");
	assert_int_not_equal(host.log[9], 0x4B4D564B); /* no "KVMK" at 0x40000100 */
}

static void test_guest_uses_hyperv_interface(void **state)
{
	(void)state;
	char err[256] = "";
	int ret = create_vm(HYPERV_SYNIC_USER, &host.vm, err, sizeof(err));
	if (ret)
		fail_msg("vm_create: %s", err);
	assert_int_equal(vm_synic_mode(host.vm), HYPERV_SYNIC_USER);
	struct dev_bus *bus = vm_bus(host.vm);
	assert_int_equal(dev_bus_register(bus, DEV_PIO, TEST_LOG_PORT, 4, &log_ops, NULL, "log"),
			 0);
	assert_int_equal(dev_bus_register(bus, DEV_PIO, TEST_EXIT_PORT, 1, &exit_ops, NULL, "exit"),
			 0);
	struct hyperv_guest_ops ops = { .post_message = vmbus_post,
					.signal_event = vmbus_signal,
					.slot_free = vmbus_slot_free };
	hyperv_set_guest_ops(vm_hyperv(host.vm), &ops);
	uint64_t unhandled = bus->unhandled;
	run_to_exit(HVP_EXIT);

	check_cpuid_log();
	expect_log(10, 0, "VP index");
	expect_log(11, HVP_OS_ID_HIGH, "guest OS ID");
	expect_log(12, HVP_HCALL_PAGE | 1, "hypercall MSR");
	expect_log(13, 5, "#GP count");
	expect_log(14, HV_STATUS_SUCCESS, "HvPostMessage");
	expect_log(15, 1, "first message type");
	expect_log(16, REPLY_A, "first message");
	expect_log(17, 1, "second message type");
	expect_log(18, REPLY_B, "second message");
	expect_log(19, 2, "interrupts");
	expect_log(20, HV_STATUS_SUCCESS, "HvSignalEvent");
	expect_log(21, 1u << HVP_EVENT_FLAG, "event flags");
	expect_log(22, HV_STATUS_INVALID_PARAMETER, "payload of 241 bytes");
	expect_log(23, HV_STATUS_INVALID_ALIGNMENT, "misaligned input");
	expect_log(24, HV_STATUS_INVALID_PARAMETER, "input outside RAM");
	expect_log(25, HV_STATUS_INVALID_HYPERCALL_INPUT, "fast HvPostMessage");
	expect_log(26, HV_STATUS_INVALID_HYPERCALL_CODE, "unknown call");
	assert_int_equal(host.nlog, 27);
	assert_int_equal(host.unexpected, 0);

	/* the VMBus side saw exactly the guest's message (the stray port write was none) */
	assert_int_equal(host.posts, 1);
	assert_int_equal(host.post_vp, 0);
	assert_int_equal(host.post_conn, HVP_POST_CONN);
	assert_int_equal(host.post_type, HVP_POST_TYPE);
	assert_int_equal(host.post_len, HVP_POST_LEN);
	assert_memory_equal(host.post_payload, HVP_POST_TEXT, HVP_POST_LEN);
	assert_int_equal(bus->unhandled - unhandled, 1);
	/* the second reply waited for the guest's EOM */
	assert_int_equal(host.a_result, 0);
	assert_int_equal(host.b_result, -EAGAIN);
	assert_int_equal(host.frees, 1);
	assert_int_equal(host.b_retry_result, 0);
	assert_int_equal(host.signals, 1);
	assert_int_equal(host.signal_conn, HVP_SIGNAL_CONN);
	assert_int_equal(host.signal_flag, 0);
	/* the page the guest called holds the code hyperv.c writes */
	uint8_t code[HYPERV_HCALL_CODE_MAX], page[HYPERV_HCALL_CODE_MAX];
	size_t len = hyperv_hypercall_code(GEN1_HV_HCALL_PORT, code);
	assert_int_equal(guest_mem_read(vm_guest_mem(host.vm), HVP_HCALL_PAGE, page, len), 0);
	assert_memory_equal(page, code, len);
}

static void test_synic_mode_choice(void **state)
{
	(void)state;
	char err[256] = "";
	struct vm *vm = NULL;
	bool kernel = kvm_has(KVM_CAP_HYPERV_SYNIC2) && kvm_has(KVM_CAP_HYPERV_EVENTFD) &&
		      kvm_has(KVM_CAP_IRQFD_RESAMPLE) && kvm_has(KVM_CAP_HYPERV);
	assert_int_equal(create_vm(HYPERV_SYNIC_AUTO, &vm, err, sizeof(err)), 0);
	assert_int_equal(vm_synic_mode(vm), kernel ? HYPERV_SYNIC_KERNEL : HYPERV_SYNIC_USER);
	vm_destroy(vm);
	vm = NULL;
	assert_int_equal(create_vm(HYPERV_SYNIC_OFF, &vm, err, sizeof(err)), 0);
	assert_int_equal(vm_synic_mode(vm), HYPERV_SYNIC_OFF);
	assert_null(vm_hyperv(vm));
	assert_int_equal(vm_hyperv_set_event_fd(vm, 1, 0), -ENODEV);
	vm_destroy(vm);
	vm = NULL;
	if (!kernel) { /* asked for explicitly, it is a clear error */
		assert_int_equal(create_vm(HYPERV_SYNIC_KERNEL, &vm, err, sizeof(err)), -ENOTSUP);
		assert_null(vm);
		assert_contains(err, "no in-kernel SynIC");
		assert_contains(err, "--synic user");
	}
}

static int setup(void **state)
{
	(void)state;
	memset(&host, 0, sizeof(host));
	pthread_mutex_init(&host.lock, NULL);
	return 0;
}

static int teardown(void **state)
{
	(void)state;
	vm_destroy(host.vm);
	host.vm = NULL;
	return 0;
}

int main(void)
{
	if (!kvm_available()) {
		fprintf(stderr, "/dev/kvm cannot be opened: the guest tests need KVM\n");
		return TEST_SKIP;
	}
	if (!kvm_has(KVM_CAP_X86_USER_SPACE_MSR) || !kvm_has(KVM_CAP_X86_MSR_FILTER)) {
		fprintf(stderr, "this KVM has no MSR filter: the user-space SynIC cannot run\n");
		return TEST_SKIP;
	}
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_guest_uses_hyperv_interface, setup, teardown),
		cmocka_unit_test_setup_teardown(test_synic_mode_choice, setup, teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
