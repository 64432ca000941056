/* What hyperv.c and hyperv_synic.c share; not for other modules. */
#ifndef HV_VMM_HYPERV_INTERNAL_H
#define HV_VMM_HYPERV_INTERNAL_H

#include <pthread.h>

#include "hyperv.h"

#define PAGE_GPA_MASK (~(uint64_t)(HYPERV_PAGE_SIZE - 1))

/* One virtual processor's SynIC. */
struct hyperv_vp {
	pthread_mutex_t lock;
	uint64_t scontrol, siefp, simp, vp_assist;
	uint64_t sint[HYPERV_SINT_COUNT];
	uint32_t full_slots; /* SINTs whose slot a post found full: offered again on EOM */
};

struct hyperv_event_fd {
	uint32_t id;
	int fd;
};

struct hyperv {
	struct hyperv_config cfg;
	pthread_mutex_t lock; /* the partition-wide state below */
	uint64_t guest_os_id, hypercall, tsc_invariant_ctrl;
	struct hyperv_guest_ops ops;
	struct hyperv_event_fd event_fds[HYPERV_MAX_EVENT_FDS];
	unsigned nevent_fds;
	struct hyperv_vp vps[];
};

/* hyperv.c: the host address of guest [gpa, gpa + len) when it lies in one RAM region,
 * else NULL. */
void *hyperv_guest_ptr(const struct hyperv *hv, uint64_t gpa, size_t len);
/* hyperv.c: the guest ops as they are now (they may be set while vCPUs run). */
struct hyperv_guest_ops hyperv_ops_snapshot(struct hyperv *hv);

/* hyperv_synic.c */
void synic_reset_vp(struct hyperv_vp *v);
int synic_msr_read(struct hyperv *hv, unsigned vp, uint32_t msr, uint64_t *value);
int synic_msr_write(struct hyperv *hv, unsigned vp, uint32_t msr, uint64_t value);

#endif
