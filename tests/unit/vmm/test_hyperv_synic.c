/* The SynIC (vmm/hyperv_synic.c) over simulated guest RAM: MSR reset values and the #GPs
 * the TLFS asks for, message slots written as the guest reads them (type last, the
 * message-pending flag on a full slot, EOM offering the slot again), event flags set
 * bit by bit with one interrupt per 0->1 transition, and posts racing a consuming guest. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <sched.h>
#include <stdlib.h>
#include <string.h>

#include "hyperv_rig.h"
#include "test_util.h"

#define SIMP	    0x10000u
#define SIEFP	    0x11000u
#define VMBUS_SINT  2
#define VECTOR	    0xF3 /* Linux's HYPERVISOR_CALLBACK_VECTOR */
#define SLOT(sint)  (SIMP + 256u * (sint))
#define MSG_PENDING 0x01

static int setup(void **state)
{
	*state = hv_rig_new(4, false, false);
	return 0;
}

static int teardown(void **state)
{
	hv_rig_free(*state);
	return 0;
}

/* ---- MSRs ---- */

static void test_reset_values(void **state)
{
	struct hv_rig *r = *state;
	for (unsigned vp = 0; vp < 4; vp++) {
		assert_int_equal(rig_rdmsr(r, vp, HYPERV_MSR_VP_INDEX), vp);
		assert_int_equal(rig_rdmsr(r, vp, HYPERV_MSR_SVERSION), 1);
		assert_int_equal(rig_rdmsr(r, vp, HYPERV_MSR_SCONTROL), 0);
		assert_int_equal(rig_rdmsr(r, vp, HYPERV_MSR_SIMP), 0);
		assert_int_equal(rig_rdmsr(r, vp, HYPERV_MSR_SIEFP), 0);
		assert_int_equal(rig_rdmsr(r, vp, HYPERV_MSR_EOM), 0);
		for (unsigned i = 0; i < 16; i++) /* masked */
			assert_int_equal(rig_rdmsr(r, vp, HYPERV_MSR_SINT0 + i), 0x10000);
	}
	rig_enable_synic(r, 1, SIMP, SIEFP, VMBUS_SINT, VECTOR);
	hyperv_reset(r->hv);
	assert_int_equal(rig_rdmsr(r, 1, HYPERV_MSR_SCONTROL), 0);
	assert_int_equal(rig_rdmsr(r, 1, HYPERV_MSR_SINT0 + VMBUS_SINT), 0x10000);
}

static void test_msr_faults(void **state)
{
	struct hv_rig *r = *state;
	/* read-only, unknown, reserved bits, vectors 0-15, AutoEOI, pages outside RAM */
	assert_true(rig_msr_faults(r, 0, HYPERV_MSR_VP_INDEX, 3));
	assert_true(rig_msr_faults(r, 0, HYPERV_MSR_SVERSION, 1));
	assert_true(rig_msr_faults(r, 0, 0x400000FF, 0));
	assert_true(rig_msr_faults(r, 0, 0x40000020, 0)); /* TIME_REF_COUNT: not offered */
	uint64_t v;
	assert_int_equal(hyperv_msr_read(r->hv, 0, 0x400000FF, &v), -EINVAL);
	assert_int_equal(hyperv_msr_read(r->hv, 0, 0x40000020, &v), -EINVAL);
	assert_int_equal(hyperv_msr_read(r->hv, 4, HYPERV_MSR_VP_INDEX, &v), -EINVAL);
	assert_true(rig_msr_faults(r, 0, HYPERV_MSR_SCONTROL, 2));
	assert_true(rig_msr_faults(r, 0, HYPERV_MSR_SINT0, 1ull << 19 | VECTOR));
	assert_true(rig_msr_faults(r, 0, HYPERV_MSR_SINT0, 15)); /* unmasked vector < 16 */
	assert_true(rig_msr_faults(r, 0, HYPERV_MSR_SINT0, HYPERV_SINT_AUTO_EOI | VECTOR));
	assert_true(rig_msr_faults(r, 0, HYPERV_MSR_SIMP, RIG_RAM_SIZE | 1));
	assert_true(rig_msr_faults(r, 0, HYPERV_MSR_SIEFP, 0xFFFFFFFFFFFFF001ull));
	assert_true(rig_msr_faults(r, 0, HYPERV_MSR_VP_ASSIST_PAGE, RIG_RAM_SIZE | 1));
	/* nothing changed */
	assert_int_equal(rig_rdmsr(r, 0, HYPERV_MSR_SINT0), 0x10000);
	assert_int_equal(rig_rdmsr(r, 0, HYPERV_MSR_SIMP), 0);
	/* allowed: a masked SINT with a low vector, polling, EOM with any value */
	rig_wrmsr(r, 0, HYPERV_MSR_SINT0 + 3, HYPERV_SINT_MASKED | 5);
	rig_wrmsr(r, 0, HYPERV_MSR_SINT0 + 4, HYPERV_SINT_POLLING | VECTOR);
	assert_int_equal(rig_rdmsr(r, 0, HYPERV_MSR_SINT0 + 4), HYPERV_SINT_POLLING | VECTOR);
	rig_wrmsr(r, 0, HYPERV_MSR_EOM, 0x1234);
	/* the VP assist page Linux 6.1 writes on every CPU is kept */
	rig_wrmsr(r, 2, HYPERV_MSR_VP_ASSIST_PAGE, 0x7000 | 1);
	assert_int_equal(rig_rdmsr(r, 2, HYPERV_MSR_VP_ASSIST_PAGE), 0x7001);
}

static void test_pages_zeroed_when_enabled(void **state)
{
	struct hv_rig *r = *state;
	/* bits 1-11 are the guest's to keep */
	rig_wrmsr(r, 0, HYPERV_MSR_SIMP, SIMP | 0x7F0 | 1);
	assert_int_equal(rig_rdmsr(r, 0, HYPERV_MSR_SIMP), SIMP | 0x7F1);
	for (unsigned i = 0; i < 4096; i++)
		assert_int_equal(r->ram[SIMP + i], 0);
	assert_int_equal(r->ram[SIEFP], 0xA5); /* only the page that was enabled */
	/* re-writing the same page leaves its contents */
	r->ram[SIMP + 8] = 0x42;
	rig_wrmsr(r, 0, HYPERV_MSR_SIMP, SIMP | 1);
	assert_int_equal(r->ram[SIMP + 8], 0x42);
	rig_wrmsr(r, 0, HYPERV_MSR_SIEFP, SIEFP | 1);
	assert_int_equal(r->ram[SIEFP + 4095], 0);
}

/* ---- messages ---- */

static void test_post_needs_enabled_synic(void **state)
{
	struct hv_rig *r = *state;
	assert_int_equal(hyperv_synic_post_message(r->hv, 0, VMBUS_SINT, 1, "x", 1), -ENXIO);
	rig_wrmsr(r, 0, HYPERV_MSR_SIMP, SIMP | 1);
	assert_int_equal(hyperv_synic_post_message(r->hv, 0, VMBUS_SINT, 1, "x", 1), -ENXIO);
	rig_wrmsr(r, 0, HYPERV_MSR_SCONTROL, 1);
	assert_int_equal(hyperv_synic_post_message(r->hv, 0, VMBUS_SINT, 1, "x", 1), 0);
	uint8_t big[HYPERV_MESSAGE_PAYLOAD_MAX + 1] = { 0 };
	assert_int_equal(hyperv_synic_post_message(r->hv, 0, 3, 1, big, sizeof(big)), -EINVAL);
	assert_int_equal(hyperv_synic_post_message(r->hv, 0, 3, 0, big, 8), -EINVAL);
	assert_int_equal(hyperv_synic_post_message(r->hv, 0, 16, 1, big, 8), -EINVAL);
	assert_int_equal(hyperv_synic_post_message(r->hv, 4, 3, 1, big, 8), -EINVAL);
	assert_int_equal(hyperv_synic_post_message(r->hv, 0, 3, 1, NULL, 8), -EINVAL);
}

static void test_message_slot(void **state)
{
	struct hv_rig *r = *state;
	rig_enable_synic(r, 1, SIMP, SIEFP, VMBUS_SINT, VECTOR);
	const char text[] = "VERSION_RESPONSE";
	assert_int_equal(hyperv_synic_post_message(r->hv, 1, VMBUS_SINT, 1, text, 16), 0);
	const uint8_t *slot = r->ram + SLOT(VMBUS_SINT);
	assert_int_equal(rig_le32(r, SLOT(VMBUS_SINT)), 1); /* message_type */
	assert_int_equal(slot[4], 16);			    /* payload_size */
	assert_int_equal(slot[5], 0);			    /* flags */
	for (unsigned i = 6; i < 16; i++)		    /* reserved, sender */
		assert_int_equal(slot[i], 0);
	assert_memory_equal(slot + 16, text, 16);
	for (unsigned i = 32; i < 256; i++)
		assert_int_equal(slot[i], 0);
	assert_int_equal(rig_le32(r, SLOT(VMBUS_SINT - 1)), 0); /* other slots untouched */
	assert_int_equal(r->nraises, 1);
	assert_int_equal(r->raises[0].vp, 1);
	assert_int_equal(r->raises[0].sint, VMBUS_SINT);
	assert_int_equal(r->raises[0].vector, VECTOR);
	/* a masked SINT still gets the message, but no interrupt */
	rig_wrmsr(r, 1, HYPERV_MSR_SINT0 + 5, HYPERV_SINT_MASKED | 0x40);
	assert_int_equal(hyperv_synic_post_message(r->hv, 1, 5, 7, NULL, 0), 0);
	assert_int_equal(rig_le32(r, SLOT(5)), 7);
	assert_int_equal(r->nraises, 1);
}

/* The guest's side of a slot, as Linux does it: free it, EOM only if pending was set. */
static bool guest_consume(struct hv_rig *r, unsigned vp, unsigned sint)
{
	uint32_t *type = (uint32_t *)(r->ram + SLOT(sint));
	__atomic_store_n(type, 0, __ATOMIC_SEQ_CST);
	bool pending = __atomic_load_n(r->ram + SLOT(sint) + 5, __ATOMIC_SEQ_CST) & MSG_PENDING;
	if (pending)
		rig_wrmsr(r, vp, HYPERV_MSR_EOM, 0);
	return pending;
}

static void test_full_slot_and_eom(void **state)
{
	struct hv_rig *r = *state;
	rig_enable_synic(r, 0, SIMP, SIEFP, VMBUS_SINT, VECTOR);
	assert_int_equal(hyperv_synic_post_message(r->hv, 0, VMBUS_SINT, 1, "first", 5), 0);
	assert_int_equal(hyperv_synic_post_message(r->hv, 0, VMBUS_SINT, 1, "second", 6), -EAGAIN);
	/* the first message is intact; its pending flag asks the guest for EOM */
	assert_memory_equal(r->ram + SLOT(VMBUS_SINT) + 16, "first", 5);
	assert_int_equal(r->ram[SLOT(VMBUS_SINT) + 5], MSG_PENDING);
	assert_int_equal(r->nraises, 1);
	assert_int_equal(r->nfrees, 0);
	assert_true(guest_consume(r, 0, VMBUS_SINT));
	assert_int_equal(r->nfrees, 1);
	assert_int_equal(r->frees[0].vp, 0);
	assert_int_equal(r->frees[0].sint, VMBUS_SINT);
	assert_int_equal(hyperv_synic_post_message(r->hv, 0, VMBUS_SINT, 1, "second", 6), 0);
	assert_int_equal(r->ram[SLOT(VMBUS_SINT) + 5], 0); /* a fresh message: no flag */
	assert_false(guest_consume(r, 0, VMBUS_SINT));
	/* an EOM with nothing waiting offers nothing */
	rig_wrmsr(r, 0, HYPERV_MSR_EOM, 0);
	assert_int_equal(r->nfrees, 1);
	assert_int_equal(r->nraises, 2);
}

static void test_stale_page_contents(void **state)
{
	struct hv_rig *r = *state;
	/* the page held junk (0xA5) before the guest enabled it: it must not look full */
	rig_enable_synic(r, 3, SIMP, SIEFP, VMBUS_SINT, VECTOR);
	assert_int_equal(hyperv_synic_post_message(r->hv, 3, VMBUS_SINT, 1, "x", 1), 0);
}

/* ---- event flags ---- */

static void test_event_flags(void **state)
{
	struct hv_rig *r = *state;
	rig_enable_synic(r, 2, SIMP, SIEFP, VMBUS_SINT, VECTOR);
	const unsigned flags[] = { 1, 7, 8, 31, 32, 2047 };
	for (unsigned i = 0; i < sizeof(flags) / sizeof(flags[0]); i++)
		hyperv_synic_signal_event(r->hv, 2, VMBUS_SINT, flags[i]);
	const uint8_t *area = r->ram + SIEFP + 256 * VMBUS_SINT;
	for (unsigned bit = 0; bit < HYPERV_EVENT_FLAGS; bit++) {
		bool want = false;
		for (unsigned i = 0; i < sizeof(flags) / sizeof(flags[0]); i++)
			want |= flags[i] == bit;
		if (!!(area[bit / 8] & (1u << (bit % 8))) != want)
			fail_msg("flag %u is %s", bit, want ? "clear" : "set");
	}
	assert_int_equal(r->nraises, 6);
	/* already set: no interrupt; other SINT areas untouched */
	hyperv_synic_signal_event(r->hv, 2, VMBUS_SINT, 7);
	assert_int_equal(r->nraises, 6);
	assert_int_equal(r->ram[SIEFP + 256 * (VMBUS_SINT + 1)], 0);
	/* the guest clears it: the next one interrupts again */
	__atomic_and_fetch(r->ram + SIEFP + 256 * VMBUS_SINT, (uint8_t) ~(1u << 7),
			   __ATOMIC_SEQ_CST);
	hyperv_synic_signal_event(r->hv, 2, VMBUS_SINT, 7);
	assert_int_equal(r->nraises, 7);
	assert_int_equal(r->raises[6].vector, VECTOR);
	/* out of range or disabled: nothing, no crash */
	hyperv_synic_signal_event(r->hv, 2, VMBUS_SINT, HYPERV_EVENT_FLAGS);
	hyperv_synic_signal_event(r->hv, 2, 16, 1);
	hyperv_synic_signal_event(r->hv, 9, VMBUS_SINT, 1);
	hyperv_synic_signal_event(r->hv, 0, VMBUS_SINT, 1);
	assert_int_equal(r->nraises, 7);
}

/* ---- the in-kernel SynIC's share ---- */

static void test_kernel_synic(void **state)
{
	(void)state;
	struct hv_rig *r = hv_rig_new(2, true, false);
	uint64_t v;
	/* KVM owns the MSRs */
	assert_int_equal(hyperv_msr_read(r->hv, 0, HYPERV_MSR_SCONTROL, &v), -EINVAL);
	assert_int_equal(hyperv_msr_write(r->hv, 0, HYPERV_MSR_SCONTROL, 1), -EINVAL);
	assert_int_equal(hyperv_synic_post_message(r->hv, 1, VMBUS_SINT, 1, "x", 1), -ENXIO);
	hyperv_synic_set_pages(r->hv, 1, 1, SIEFP | 1, SIMP | 1);
	assert_int_equal(r->ram[SIMP + 100], 0); /* zeroed: KVM's SYNIC2 does not */
	assert_int_equal(hyperv_synic_post_message(r->hv, 1, VMBUS_SINT, 1, "x", 1), 0);
	hyperv_synic_signal_event(r->hv, 1, VMBUS_SINT, 3);
	assert_int_equal(r->nraises, 2); /* KVM masks and picks the vector */
	assert_int_equal(r->raises[0].vector, 0);
	assert_int_equal(hyperv_synic_post_message(r->hv, 1, VMBUS_SINT, 1, "y", 1), -EAGAIN);
	hyperv_synic_eom(r->hv, 1); /* the SINT's resamplefd */
	assert_int_equal(r->nfrees, 1);
	/* a page KVM reports outside RAM is never used */
	hyperv_synic_set_pages(r->hv, 0, 1, RIG_RAM_SIZE | 1, RIG_RAM_SIZE | 1);
	assert_int_equal(hyperv_synic_post_message(r->hv, 0, VMBUS_SINT, 1, "x", 1), -ENXIO);
	hyperv_synic_signal_event(r->hv, 0, VMBUS_SINT, 3);
	assert_int_equal(r->nraises, 2);
	hv_rig_free(r);

	/* an MSR KVM 6.1 does not know reaches this side: TSC_INVARIANT_CONTROL when offered */
	r = hv_rig_new(2, true, true);
	assert_int_equal(hyperv_msr_write(r->hv, 1, HYPERV_MSR_TSC_INVARIANT_CTRL, 1), 0);
	assert_int_equal(hyperv_msr_read(r->hv, 1, HYPERV_MSR_TSC_INVARIANT_CTRL, &v), 0);
	assert_int_equal(v, 1);
	assert_int_equal(hyperv_msr_write(r->hv, 1, HYPERV_MSR_TSC_INVARIANT_CTRL, 2), -EINVAL);
	assert_int_equal(hyperv_msr_read(r->hv, 0, HYPERV_MSR_GUEST_OS_ID, &v), -EINVAL);
	hv_rig_free(r);
}

/* ---- a guest consuming while the host posts ---- */

#define RACE_MESSAGES 2000

struct race {
	struct hv_rig *r;
	unsigned received, out_of_order;
	bool stop;
};

static void *race_guest(void *arg)
{
	struct race *g = arg;
	uint32_t *type = (uint32_t *)(g->r->ram + SLOT(VMBUS_SINT));
	while (!__atomic_load_n(&g->stop, __ATOMIC_ACQUIRE)) {
		if (__atomic_load_n(type, __ATOMIC_ACQUIRE) == 0) {
			sched_yield(); /* the machine may have fewer cores than spinners */
			continue;
		}
		uint32_t seq;
		memcpy(&seq, g->r->ram + SLOT(VMBUS_SINT) + 16, 4);
		unsigned received = __atomic_load_n(&g->received, __ATOMIC_RELAXED);
		if (seq != received)
			__atomic_add_fetch(&g->out_of_order, 1, __ATOMIC_RELAXED);
		__atomic_store_n(&g->received, received + 1, __ATOMIC_RELAXED);
		guest_consume(g->r, 0, VMBUS_SINT);
	}
	return NULL;
}

static void test_posts_race_the_guest(void **state)
{
	struct hv_rig *r = *state;
	rig_enable_synic(r, 0, SIMP, SIEFP, VMBUS_SINT, VECTOR);
	struct race g = { .r = r };
	pthread_t t;
	assert_int_equal(pthread_create(&t, NULL, race_guest, &g), 0);
	unsigned busy = 0;
	for (uint32_t seq = 0; seq < RACE_MESSAGES;) {
		int ret = hyperv_synic_post_message(r->hv, 0, VMBUS_SINT, 1, &seq, 4);
		if (ret == -EAGAIN) {
			busy++; /* a real host waits for slot_free; spinning is the same here */
			sched_yield();
			continue;
		}
		assert_int_equal(ret, 0);
		seq++;
	}
	while (__atomic_load_n(&g.received, __ATOMIC_RELAXED) < RACE_MESSAGES &&
	       __atomic_load_n(&g.out_of_order, __ATOMIC_RELAXED) == 0)
		sched_yield();
	__atomic_store_n(&g.stop, true, __ATOMIC_RELEASE);
	pthread_join(t, NULL);
	assert_int_equal(g.out_of_order, 0);
	assert_int_equal(g.received, RACE_MESSAGES);
	assert_true(busy > 0); /* the race did happen: some posts found the slot full */
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_reset_values, setup, teardown),
		cmocka_unit_test_setup_teardown(test_msr_faults, setup, teardown),
		cmocka_unit_test_setup_teardown(test_pages_zeroed_when_enabled, setup, teardown),
		cmocka_unit_test_setup_teardown(test_post_needs_enabled_synic, setup, teardown),
		cmocka_unit_test_setup_teardown(test_message_slot, setup, teardown),
		cmocka_unit_test_setup_teardown(test_full_slot_and_eom, setup, teardown),
		cmocka_unit_test_setup_teardown(test_stale_page_contents, setup, teardown),
		cmocka_unit_test_setup_teardown(test_event_flags, setup, teardown),
		cmocka_unit_test(test_kernel_synic),
		cmocka_unit_test_setup_teardown(test_posts_race_the_guest, setup, teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
