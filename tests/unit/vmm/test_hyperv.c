/* The Hyper-V partition (vmm/hyperv.c) over simulated guest RAM: the CPUID leaves against
 * the TLFS's values, the partition MSRs, the hypercall page's code (disassembled by
 * objdump, the independent oracle), and the decoding of HvPostMessage/HvSignalEvent with
 * hostile inputs, each answered with the TLFS status. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "endian.h"
#include "hyperv_rig.h"
#include "test_util.h"

#define LINUX_GUEST_OS_ID 0x8100000601140000ull /* what Linux 6.1.20 writes */
#define HCALL_PAGE	  0x3000u
#define INPUT_PAGE	  0x5000u
#define OUT_SIZE	  4096

static int setup(void **state)
{
	*state = hv_rig_new(2, false, true);
	return 0;
}

static int teardown(void **state)
{
	hv_rig_free(*state);
	return 0;
}

/* ---- CPUID ---- */

static void regs_text(const struct hyperv_cpuid_leaf *l, char out[13])
{
	memcpy(out, &l->ebx, 4);
	memcpy(out + 4, &l->ecx, 4);
	memcpy(out + 8, &l->edx, 4);
	out[12] = 0;
}

static void test_cpuid_leaves(void **state)
{
	(void)state;
	struct hyperv_cpuid_leaf l[HYPERV_CPUID_COUNT];
	hyperv_cpuid_leaves(4, false, false, l);
	for (unsigned i = 0; i < HYPERV_CPUID_COUNT; i++)
		assert_int_equal(l[i].function, 0x40000000u + i);
	char vendor[13];
	regs_text(&l[0], vendor);
	assert_string_equal(vendor, "Microsoft Hv");
	/* Linux 6.1 wants the max leaf in [0x40000005, 0x4000FFFF] */
	assert_int_equal(l[0].eax, 0x4000000A);
	assert_memory_equal(&l[1].eax, "Hv#1", 4);
	/* exactly what is implemented: SynIC (2), hypercall MSRs (5), VP index (6) */
	assert_int_equal(l[3].eax, (1u << 2) | (1u << 5) | (1u << 6));
	/* PostMessages (4), SignalEvents (5); never AccessPartitionId (1) or root (12) */
	assert_int_equal(l[3].ebx, (1u << 4) | (1u << 5));
	assert_int_equal(l[3].edx, 0);
	/* the guest EOIs its SINTs itself (no AutoEOI) */
	assert_int_equal(l[4].eax, 1u << 9);
	assert_int_equal(l[5].eax, 4);
	for (unsigned i = 6; i < HYPERV_CPUID_COUNT; i++)
		assert_true(!l[i].eax && !l[i].ebx && !l[i].ecx && !l[i].edx);
	hyperv_cpuid_leaves(1, true, false, l);
	assert_int_equal(l[3].eax, (1u << 2) | (1u << 5) | (1u << 6) | (1u << 15));
	/* the frequency MSRs: AccessFrequencyRegs (EAX 11) and their availability (EDX 8) */
	hyperv_cpuid_leaves(1, true, true, l);
	assert_int_equal(l[3].eax, (1u << 2) | (1u << 5) | (1u << 6) | (1u << 11) | (1u << 15));
	assert_int_equal(l[3].edx, 1u << 8);
}

/* ---- partition MSRs ---- */

static void test_hypercall_msr(void **state)
{
	struct hv_rig *r = *state;
	uint64_t enable = HCALL_PAGE | HYPERV_HYPERCALL_ENABLE;
	/* no hypercall page before the guest OS ID */
	rig_wrmsr(r, 0, HYPERV_MSR_HYPERCALL, enable);
	assert_int_equal(rig_rdmsr(r, 0, HYPERV_MSR_HYPERCALL), HCALL_PAGE);
	rig_wrmsr(r, 0, HYPERV_MSR_GUEST_OS_ID, LINUX_GUEST_OS_ID);
	assert_int_equal(rig_rdmsr(r, 1, HYPERV_MSR_GUEST_OS_ID), LINUX_GUEST_OS_ID);
	rig_wrmsr(r, 0, HYPERV_MSR_HYPERCALL, enable);
	assert_int_equal(rig_rdmsr(r, 1, HYPERV_MSR_HYPERCALL), enable); /* partition-wide */
	uint64_t gpa;
	assert_true(hyperv_hypercall_page(r->hv, &gpa));
	assert_int_equal(gpa, HCALL_PAGE);
	/* reserved bits 2-11, and a page outside RAM, #GP and change nothing */
	assert_true(rig_msr_faults(r, 0, HYPERV_MSR_HYPERCALL, enable | 0x4));
	assert_true(
		rig_msr_faults(r, 0, HYPERV_MSR_HYPERCALL, RIG_RAM_SIZE | HYPERV_HYPERCALL_ENABLE));
	assert_int_equal(rig_rdmsr(r, 0, HYPERV_MSR_HYPERCALL), enable);
	/* OS ID 0 withdraws the page */
	rig_wrmsr(r, 0, HYPERV_MSR_GUEST_OS_ID, 0);
	assert_false(hyperv_hypercall_page(r->hv, &gpa));
	/* locked: later writes are ignored until reset */
	rig_wrmsr(r, 0, HYPERV_MSR_GUEST_OS_ID, LINUX_GUEST_OS_ID);
	rig_wrmsr(r, 0, HYPERV_MSR_HYPERCALL, enable | HYPERV_HYPERCALL_LOCKED);
	rig_wrmsr(r, 0, HYPERV_MSR_HYPERCALL, 0);
	assert_int_equal(rig_rdmsr(r, 0, HYPERV_MSR_HYPERCALL), enable | HYPERV_HYPERCALL_LOCKED);
	hyperv_reset(r->hv);
	assert_int_equal(rig_rdmsr(r, 0, HYPERV_MSR_HYPERCALL), 0);
	assert_int_equal(rig_rdmsr(r, 0, HYPERV_MSR_GUEST_OS_ID), 0);
}

/* objdump reads the page back as x86-64: save RDX, out to the port, restore, return. */
static void test_hypercall_page_code(void **state)
{
	struct hv_rig *r = *state;
	rig_wrmsr(r, 0, HYPERV_MSR_GUEST_OS_ID, LINUX_GUEST_OS_ID);
	rig_wrmsr(r, 0, HYPERV_MSR_HYPERCALL, HCALL_PAGE | HYPERV_HYPERCALL_ENABLE);
	uint8_t code[HYPERV_HCALL_CODE_MAX];
	size_t len = hyperv_hypercall_code(RIG_HCALL_PORT, code);
	assert_memory_equal(r->ram + HCALL_PAGE, code, len);
	FILE *f = fopen(test_path("hcall.bin"), "wb");
	assert_non_null(f);
	assert_int_equal(fwrite(code, 1, len, f), len);
	fclose(f);
	char *out = test_xmalloc(OUT_SIZE);
	int status = test_run(out, OUT_SIZE, "objdump -D -b binary -m i386:x86-64 %s",
			      test_path("hcall.bin"));
	if (status != 0) {
		free(out);
		skip(); /* binutils missing: nothing to compare with */
	}
	const char *want[] = { "mov    %rdx,%r11", "mov    $0x4f0,%edx", "out    %eax,(%dx)",
			       "mov    %r11,%rdx", "ret" };
	const char *at = out;
	for (unsigned i = 0; i < sizeof(want) / sizeof(want[0]); i++) {
		at = strstr(at, want[i]);
		if (!at)
			fail_msg("\"%s\" not in order in:\n%s", want[i], out);
	}
	free(out);
}

static void test_tsc_invariant_msr(void **state)
{
	struct hv_rig *r = *state;
	rig_wrmsr(r, 0, HYPERV_MSR_TSC_INVARIANT_CTRL, 1);
	assert_int_equal(rig_rdmsr(r, 1, HYPERV_MSR_TSC_INVARIANT_CTRL), 1);
	assert_true(rig_msr_faults(r, 0, HYPERV_MSR_TSC_INVARIANT_CTRL, 2));
	struct hv_rig *plain = hv_rig_new(1, false, false); /* not offered: not there */
	assert_true(rig_msr_faults(plain, 0, HYPERV_MSR_TSC_INVARIANT_CTRL, 1));
	uint64_t v;
	assert_int_equal(hyperv_msr_read(plain->hv, 0, HYPERV_MSR_TSC_INVARIANT_CTRL, &v), -EINVAL);
	assert_int_equal(hyperv_msr_read(plain->hv, 0, HYPERV_MSR_TSC_FREQUENCY, &v), -EINVAL);
	hv_rig_free(plain);
	/* the frequency MSRs: the TSC rate given, the LAPIC bus at 1 GHz, both read-only */
	assert_int_equal(rig_rdmsr(r, 1, HYPERV_MSR_TSC_FREQUENCY), RIG_TSC_HZ);
	assert_int_equal(rig_rdmsr(r, 0, HYPERV_MSR_APIC_FREQUENCY), 1000000000ull);
	assert_true(rig_msr_faults(r, 0, HYPERV_MSR_TSC_FREQUENCY, 1));
}

/* ---- hypercalls ---- */

static void put_post_input(struct hv_rig *r, uint64_t gpa, uint32_t id, uint32_t type,
			   uint32_t size, const char *text)
{
	uint8_t *in = r->ram + gpa;
	memset(in, 0, HYPERV_POST_INPUT_SIZE);
	store_le32(in, id);
	store_le32(in + 8, type);
	store_le32(in + 12, size);
	memcpy(in + 16, text, strlen(text));
}

static uint64_t post(struct hv_rig *r, unsigned vp, uint64_t control, uint64_t gpa)
{
	return hyperv_hypercall(r->hv, vp, control, gpa, 0);
}

static void test_post_message(void **state)
{
	struct hv_rig *r = *state;
	const char *text = "INITIATE_CONTACT";
	/* the connection id keeps its low 24 bits */
	put_post_input(r, INPUT_PAGE, 0xAB000004, 1, (uint32_t)strlen(text), text);
	assert_int_equal(post(r, 1, HYPERV_HCALL_POST_MESSAGE, INPUT_PAGE), HV_STATUS_SUCCESS);
	assert_int_equal(r->nposts, 1);
	assert_int_equal(r->posts[0].vp, 1);
	assert_int_equal(r->posts[0].connection_id, 4);
	assert_int_equal(r->posts[0].type, 1);
	assert_int_equal(r->posts[0].len, strlen(text));
	assert_memory_equal(r->posts[0].payload, text, strlen(text));
	/* the VMBus side's status is the hypercall's: Linux retries on 18 */
	r->post_status = HV_STATUS_INVALID_CONNECTION_ID;
	assert_int_equal(post(r, 0, HYPERV_HCALL_POST_MESSAGE, INPUT_PAGE),
			 HV_STATUS_INVALID_CONNECTION_ID);
	/* a full 240 bytes is fine */
	put_post_input(r, INPUT_PAGE, 1, 1, HYPERV_MESSAGE_PAYLOAD_MAX, "");
	r->post_status = 0;
	assert_int_equal(post(r, 0, HYPERV_HCALL_POST_MESSAGE, INPUT_PAGE), 0);
	assert_int_equal(r->posts[2].len, HYPERV_MESSAGE_PAYLOAD_MAX);
}

static void test_post_message_hostile(void **state)
{
	struct hv_rig *r = *state;
	const struct {
		uint64_t control, gpa;
		uint32_t type, size;
		uint16_t status;
	} cases[] = {
		{ 0x5C, INPUT_PAGE, 1, 241, HV_STATUS_INVALID_PARAMETER }, /* too long */
		{ 0x5C, INPUT_PAGE, 1, 0xFFFFFFFF, HV_STATUS_INVALID_PARAMETER },
		{ 0x5C, INPUT_PAGE, 0, 8, HV_STATUS_INVALID_PARAMETER },	  /* type 0 */
		{ 0x5C, INPUT_PAGE, 0x80000010, 8, HV_STATUS_INVALID_PARAMETER }, /* hv's */
		{ 0x5C, INPUT_PAGE + 4, 1, 8, HV_STATUS_INVALID_ALIGNMENT },
		{ 0x5C, INPUT_PAGE + 0xF08, 1, 8, HV_STATUS_INVALID_ALIGNMENT }, /* crosses */
		{ 0x5C, RIG_RAM_SIZE, 1, 8, HV_STATUS_INVALID_PARAMETER },	 /* not RAM */
		{ 0x5C, UINT64_MAX & ~0xFFFull, 1, 8, HV_STATUS_INVALID_PARAMETER },
		{ 0x1005C, INPUT_PAGE, 1, 8, HV_STATUS_INVALID_HYPERCALL_INPUT }, /* fast */
		{ 0x5C | 1ull << 32, INPUT_PAGE, 1, 8,
		  HV_STATUS_INVALID_HYPERCALL_INPUT }, /* rep */
		{ 0x5C | 1ull << 17, INPUT_PAGE, 1, 8,
		  HV_STATUS_INVALID_HYPERCALL_INPUT }, /* varhd */
		{ 0x5C | 1ull << 27, INPUT_PAGE, 1, 8, HV_STATUS_INVALID_HYPERCALL_INPUT },
		{ 0x5C | 1ull << 63, INPUT_PAGE, 1, 8, HV_STATUS_INVALID_HYPERCALL_INPUT },
		{ 0x99, INPUT_PAGE, 1, 8, HV_STATUS_INVALID_HYPERCALL_CODE },
		{ 0x0002, INPUT_PAGE, 1, 8, HV_STATUS_INVALID_HYPERCALL_CODE }, /* TLB flush */
	};
	for (unsigned i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		put_post_input(r, INPUT_PAGE, 1, cases[i].type, cases[i].size, "x");
		uint64_t result = post(r, 0, cases[i].control, cases[i].gpa);
		if (result != cases[i].status)
			fail_msg("case %u: status %llu, expected %u", i, (unsigned long long)result,
				 cases[i].status);
	}
	assert_int_equal(r->nposts, 0); /* none reached the VMBus side */
	/* a VP that does not exist cannot call */
	put_post_input(r, INPUT_PAGE, 1, 1, 8, "x");
	assert_int_equal(post(r, 2, 0x5C, INPUT_PAGE), HV_STATUS_INVALID_HYPERCALL_INPUT);
}

static void test_post_without_vmbus(void **state)
{
	(void)state;
	struct hv_rig *r = hv_rig_new(1, false, false);
	struct hyperv_guest_ops none = { 0 };
	hyperv_set_guest_ops(r->hv, &none);
	put_post_input(r, INPUT_PAGE, 1, 1, 8, "x");
	assert_int_equal(post(r, 0, 0x5C, INPUT_PAGE), HV_STATUS_INVALID_CONNECTION_ID);
	assert_int_equal(post(r, 0, 0x1005D, 7), HV_STATUS_INVALID_CONNECTION_ID);
	hv_rig_free(r);
}

static void test_signal_event(void **state)
{
	struct hv_rig *r = *state;
	/* fast, as Linux calls it: connection id in bits 0-31, flag in 32-47 */
	assert_int_equal(hyperv_hypercall(r->hv, 0, 0x1005D, 0x000123 | 5ull << 32, 0), 0);
	/* slow: the same 8 bytes in RAM */
	store_le64(r->ram + INPUT_PAGE, 0x000456);
	assert_int_equal(hyperv_hypercall(r->hv, 1, 0x5D, INPUT_PAGE, 0), 0);
	assert_int_equal(r->nsignals, 2);
	assert_int_equal(r->signals[0].connection_id, 0x123);
	assert_int_equal(r->signals[0].flag, 5);
	assert_int_equal(r->signals[1].connection_id, 0x456);
	assert_int_equal(r->signals[1].flag, 0);
	r->signal_status = HV_STATUS_INVALID_PORT_ID;
	assert_int_equal(hyperv_hypercall(r->hv, 0, 0x1005D, 9, 0), HV_STATUS_INVALID_PORT_ID);
	/* reserved input bits, misaligned or absent input */
	assert_int_equal(hyperv_hypercall(r->hv, 0, 0x1005D, 0x01000001, 0),
			 HV_STATUS_INVALID_HYPERCALL_INPUT);
	assert_int_equal(hyperv_hypercall(r->hv, 0, 0x1005D, 1ull << 48, 0),
			 HV_STATUS_INVALID_HYPERCALL_INPUT);
	assert_int_equal(hyperv_hypercall(r->hv, 0, 0x5D, INPUT_PAGE + 2, 0),
			 HV_STATUS_INVALID_ALIGNMENT);
	assert_int_equal(hyperv_hypercall(r->hv, 0, 0x5D, RIG_RAM_SIZE + 8, 0),
			 HV_STATUS_INVALID_PARAMETER);
	assert_int_equal(hyperv_hypercall(r->hv, 0, 0x1005D | 3ull << 32, 1, 0),
			 HV_STATUS_INVALID_HYPERCALL_INPUT); /* not a rep call */
	assert_int_equal(r->nsignals, 3);
}

static void test_signal_event_fd(void **state)
{
	struct hv_rig *r = *state;
	int fd = eventfd(0, EFD_NONBLOCK);
	assert_true(fd >= 0);
	assert_int_equal(hyperv_set_event_fd(r->hv, 0x11, fd), 0);
	assert_int_equal(hyperv_hypercall(r->hv, 0, 0x1005D, 0x11, 0), 0);
	assert_int_equal(hyperv_hypercall(r->hv, 1, 0x1005D, 0x11, 0), 0);
	uint64_t count = 0;
	assert_int_equal(read(fd, &count, sizeof(count)), sizeof(count));
	assert_int_equal(count, 2);
	assert_int_equal(r->nsignals, 0); /* the doorbell bypasses the VMBus callback */
	/* a nonzero flag, or another id, still goes to the callback */
	assert_int_equal(hyperv_hypercall(r->hv, 0, 0x1005D, 0x11 | 1ull << 32, 0), 0);
	assert_int_equal(hyperv_hypercall(r->hv, 0, 0x1005D, 0x12, 0), 0);
	assert_int_equal(r->nsignals, 2);
	/* removed: back to the callback */
	assert_int_equal(hyperv_set_event_fd(r->hv, 0x11, -1), 0);
	assert_int_equal(hyperv_hypercall(r->hv, 0, 0x1005D, 0x11, 0), 0);
	assert_int_equal(r->nsignals, 3);
	assert_int_equal(read(fd, &count, sizeof(count)), -1);
	close(fd);
}

static void test_event_fd_table(void **state)
{
	struct hv_rig *r = *state;
	assert_int_equal(hyperv_set_event_fd(r->hv, 0x1000000, 3), -EINVAL);
	assert_int_equal(hyperv_set_event_fd(r->hv, 5, -1), -ENOENT);
	for (unsigned i = 0; i < HYPERV_MAX_EVENT_FDS; i++)
		assert_int_equal(hyperv_set_event_fd(r->hv, 100 + i, 10 + (int)i), 0);
	assert_int_equal(hyperv_set_event_fd(r->hv, 99, 3), -ENOSPC);
	assert_int_equal(hyperv_set_event_fd(r->hv, 100, 7), 0); /* replacing needs no room */
	uint32_t ids[HYPERV_MAX_EVENT_FDS];
	int fds[HYPERV_MAX_EVENT_FDS];
	assert_int_equal(hyperv_event_fds(r->hv, ids, fds, HYPERV_MAX_EVENT_FDS),
			 HYPERV_MAX_EVENT_FDS);
	assert_int_equal(ids[0], 100);
	assert_int_equal(fds[0], 7);
	assert_int_equal(hyperv_set_event_fd(r->hv, 150, -1), 0);
	assert_int_equal(hyperv_event_fds(r->hv, ids, fds, HYPERV_MAX_EVENT_FDS),
			 HYPERV_MAX_EVENT_FDS - 1);
	for (unsigned i = 0; i < HYPERV_MAX_EVENT_FDS - 1; i++)
		assert_int_not_equal(ids[i], 150);
	hyperv_reset(r->hv); /* fds outlive a guest reset */
	assert_int_equal(hyperv_event_fds(r->hv, ids, fds, 4), 4);
}

static void test_create_refusals(void **state)
{
	(void)state;
	struct guest_mem mem = { 0 };
	struct hyperv *hv = NULL;
	struct hyperv_config cfg = { .mem = &mem, .nvps = 0, .irq = { .raise = NULL } };
	assert_int_equal(hyperv_create(&cfg, &hv), -EINVAL);
	cfg.nvps = HYPERV_MAX_VPS + 1;
	assert_int_equal(hyperv_create(&cfg, &hv), -EINVAL);
	assert_null(hv);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_cpuid_leaves),
		cmocka_unit_test_setup_teardown(test_hypercall_msr, setup, teardown),
		cmocka_unit_test_setup_teardown(test_hypercall_page_code, setup, teardown),
		cmocka_unit_test_setup_teardown(test_tsc_invariant_msr, setup, teardown),
		cmocka_unit_test_setup_teardown(test_post_message, setup, teardown),
		cmocka_unit_test_setup_teardown(test_post_message_hostile, setup, teardown),
		cmocka_unit_test(test_post_without_vmbus),
		cmocka_unit_test_setup_teardown(test_signal_event, setup, teardown),
		cmocka_unit_test_setup_teardown(test_signal_event_fd, setup, teardown),
		cmocka_unit_test_setup_teardown(test_event_fd_table, setup, teardown),
		cmocka_unit_test(test_create_refusals),
	};
	return cmocka_run_group_tests(tests, NULL, test_teardown_tmpdir);
}
