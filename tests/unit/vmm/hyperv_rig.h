/* A Hyper-V partition (vmm/hyperv.h) over simulated guest RAM, with recording SINT and
 * VMBus-side callbacks: what the hyperv unit tests drive, with no KVM. */
#ifndef HV_TEST_HYPERV_RIG_H
#define HV_TEST_HYPERV_RIG_H

#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "hyperv.h"

#define RIG_RAM_SIZE   (1u << 20)    /* guest RAM at GPA 0 */
#define RIG_TSC_HZ     2500000000ull /* the rate the frequency MSR reports when offered */
#define RIG_HCALL_PORT 0x4F0
#define RIG_MAX_CALLS  64

struct rig_raise {
	unsigned vp, sint;
	uint8_t vector;
};

struct rig_post {
	unsigned vp;
	uint32_t connection_id, type;
	uint8_t payload[HYPERV_MESSAGE_PAYLOAD_MAX];
	size_t len;
};

struct rig_signal {
	uint32_t connection_id;
	uint16_t flag;
};

struct rig_free {
	unsigned vp, sint;
};

struct hv_rig {
	uint8_t *ram;
	struct guest_mem mem;
	struct hyperv *hv;
	pthread_mutex_t lock; /* the records below */
	struct rig_raise raises[RIG_MAX_CALLS];
	unsigned nraises;
	struct rig_post posts[RIG_MAX_CALLS];
	unsigned nposts;
	struct rig_signal signals[RIG_MAX_CALLS];
	unsigned nsignals;
	struct rig_free frees[RIG_MAX_CALLS];
	unsigned nfrees;
	uint16_t post_status, signal_status; /* what the VMBus side answers */
};

/* A partition of nvps VPs with the rig's guest ops connected. */
struct hv_rig *hv_rig_new(unsigned nvps, bool kernel_synic, bool tsc_invariant);
void hv_rig_free(struct hv_rig *r);

uint64_t rig_rdmsr(struct hv_rig *r, unsigned vp, uint32_t msr);		  /* must succeed */
void rig_wrmsr(struct hv_rig *r, unsigned vp, uint32_t msr, uint64_t value);	  /* must succeed */
bool rig_msr_faults(struct hv_rig *r, unsigned vp, uint32_t msr, uint64_t value); /* write #GPs */

/* The SynIC of vp as Linux sets it up: SIMP, SIEFP, SINT sint with vector, SCONTROL. */
void rig_enable_synic(struct hv_rig *r, unsigned vp, uint64_t simp, uint64_t siefp, unsigned sint,
		      uint8_t vector);

uint32_t rig_le32(struct hv_rig *r, uint64_t gpa);

#endif
