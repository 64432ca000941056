#include "hyperv_rig.h"

#include <stdarg.h>
#include <setjmp.h>
#include <cmocka.h>

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "endian.h"
#include "test_util.h"

static void record_raise(void *opaque, unsigned vp, unsigned sint, uint8_t vector)
{
	struct hv_rig *r = opaque;
	pthread_mutex_lock(&r->lock);
	if (r->nraises < RIG_MAX_CALLS)
		r->raises[r->nraises++] = (struct rig_raise){ vp, sint, vector };
	pthread_mutex_unlock(&r->lock);
}

static uint16_t record_post(void *opaque, unsigned vp, uint32_t connection_id,
			    uint32_t message_type, const void *payload, size_t len)
{
	struct hv_rig *r = opaque;
	pthread_mutex_lock(&r->lock);
	if (r->nposts < RIG_MAX_CALLS) {
		struct rig_post *p = &r->posts[r->nposts++];
		*p = (struct rig_post){
			.vp = vp, .connection_id = connection_id, .type = message_type, .len = len
		};
		memcpy(p->payload, payload, len);
	}
	uint16_t status = r->post_status;
	pthread_mutex_unlock(&r->lock);
	return status;
}

static uint16_t record_signal(void *opaque, uint32_t connection_id, uint16_t flag)
{
	struct hv_rig *r = opaque;
	pthread_mutex_lock(&r->lock);
	if (r->nsignals < RIG_MAX_CALLS)
		r->signals[r->nsignals++] = (struct rig_signal){ connection_id, flag };
	uint16_t status = r->signal_status;
	pthread_mutex_unlock(&r->lock);
	return status;
}

static void record_free(void *opaque, unsigned vp, unsigned sint)
{
	struct hv_rig *r = opaque;
	pthread_mutex_lock(&r->lock);
	if (r->nfrees < RIG_MAX_CALLS)
		r->frees[r->nfrees++] = (struct rig_free){ vp, sint };
	pthread_mutex_unlock(&r->lock);
}

struct hv_rig *hv_rig_new(unsigned nvps, bool kernel_synic, bool tsc_invariant)
{
	struct hv_rig *r = test_xmalloc(sizeof(*r));
	memset(r, 0, sizeof(*r));
	pthread_mutex_init(&r->lock, NULL);
	r->ram = test_xmalloc(RIG_RAM_SIZE);
	memset(r->ram, 0xA5, RIG_RAM_SIZE); /* stale contents show */
	assert_int_equal(guest_mem_add(&r->mem, 0, RIG_RAM_SIZE, r->ram), 0);
	struct hyperv_config cfg = { .mem = &r->mem,
				     .nvps = nvps,
				     .kernel_synic = kernel_synic,
				     .tsc_invariant = tsc_invariant,
				     .tsc_hz = tsc_invariant ? RIG_TSC_HZ : 0,
				     .irq = { .opaque = r, .raise = record_raise },
				     .hypercall_port = RIG_HCALL_PORT };
	assert_int_equal(hyperv_create(&cfg, &r->hv), 0);
	struct hyperv_guest_ops ops = { .opaque = r,
					.post_message = record_post,
					.signal_event = record_signal,
					.slot_free = record_free };
	hyperv_set_guest_ops(r->hv, &ops);
	return r;
}

void hv_rig_free(struct hv_rig *r)
{
	hyperv_destroy(r->hv);
	free(r->ram);
	pthread_mutex_destroy(&r->lock);
	free(r);
}

uint64_t rig_rdmsr(struct hv_rig *r, unsigned vp, uint32_t msr)
{
	uint64_t value = 0;
	if (hyperv_msr_read(r->hv, vp, msr, &value))
		fail_msg("RDMSR 0x%x on VP %u faulted", msr, vp);
	return value;
}

void rig_wrmsr(struct hv_rig *r, unsigned vp, uint32_t msr, uint64_t value)
{
	if (hyperv_msr_write(r->hv, vp, msr, value))
		fail_msg("WRMSR 0x%x <- 0x%llx on VP %u faulted", msr, (unsigned long long)value,
			 vp);
}

bool rig_msr_faults(struct hv_rig *r, unsigned vp, uint32_t msr, uint64_t value)
{
	return hyperv_msr_write(r->hv, vp, msr, value) == -EINVAL;
}

void rig_enable_synic(struct hv_rig *r, unsigned vp, uint64_t simp, uint64_t siefp, unsigned sint,
		      uint8_t vector)
{
	rig_wrmsr(r, vp, HYPERV_MSR_SIMP, simp | HYPERV_PAGE_ENABLE);
	rig_wrmsr(r, vp, HYPERV_MSR_SIEFP, siefp | HYPERV_PAGE_ENABLE);
	rig_wrmsr(r, vp, HYPERV_MSR_SINT0 + sint, vector);
	rig_wrmsr(r, vp, HYPERV_MSR_SCONTROL, HYPERV_SCONTROL_ENABLE);
}

uint32_t rig_le32(struct hv_rig *r, uint64_t gpa)
{
	return load_le32(r->ram + gpa);
}
