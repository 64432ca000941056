/* The Hyper-V guest interface of the VMM: the hypervisor CPUID leaves, the partition and
 * SynIC MSRs, the hypercalls VMBus uses (HvPostMessage, HvSignalEvent) and the synthetic
 * interrupt controller's message and event-flag pages, as the Hyper-V TLFS describes them.
 *
 * This module holds the semantics and never calls KVM: it sees guest memory through
 * struct guest_mem and raises a SINT through struct hyperv_irq_ops, so unit tests drive it
 * with simulated memory. The KVM glue (hyperv_kvm.c, through vm.h) feeds it the guest's
 * MSR accesses and hypercalls and turns a raised SINT into an interrupt:
 *   - user-space SynIC: the MSRs and the hypercall page are emulated here, a raised SINT
 *     is an MSI with the SINT's vector to the VP's LAPIC;
 *   - in-kernel SynIC (KVM_CAP_HYPERV_SYNIC2): KVM owns the MSRs and the hypercall page
 *     and reports the message/event page addresses (hyperv_synic_set_pages); a raised
 *     SINT fires the VP's KVM_IRQ_ROUTING_HV_SINT route.
 *
 * The VMBus host is reached through struct hyperv_guest_ops (what the guest sends) and
 * reaches the guest with hyperv_synic_post_message / hyperv_synic_signal_event, whose
 * signatures are those of struct vmbus_synic_ops's callbacks (opaque = the struct hyperv).
 *
 * Threads: MSR and hypercall entry points run on the VP's vCPU thread; the synic entry
 * points may be called from any thread. Each VP's state has its own lock. No callback of
 * hyperv_guest_ops or hyperv_irq_ops is called with a lock of this module held, so a
 * guest op may post a message or signal an event at once.
 */
#ifndef HV_VMM_HYPERV_H
#define HV_VMM_HYPERV_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "dev.h"

/* How the VMM offers the Hyper-V interface (vmm run --synic). */
enum hyperv_synic_mode {
	HYPERV_SYNIC_OFF = 0, /* no Hyper-V interface: plain KVM leaves, no VMBus */
	HYPERV_SYNIC_AUTO,    /* the kernel SynIC when KVM has one, else user space */
	HYPERV_SYNIC_KERNEL,
	HYPERV_SYNIC_USER,
};

#define HYPERV_MAX_VPS		   64
#define HYPERV_SINT_COUNT	   16
#define HYPERV_MESSAGE_SIZE	   256 /* one SIMP slot */
#define HYPERV_MESSAGE_PAYLOAD_MAX 240
#define HYPERV_EVENT_FLAGS	   2048 /* bits in one SINT's 256-byte SIEF area */
#define HYPERV_PAGE_SIZE	   4096u

/* ---- CPUID ---- */

#define HYPERV_CPUID_FIRST 0x40000000u
#define HYPERV_CPUID_LAST  0x4000000Au
#define HYPERV_CPUID_COUNT (HYPERV_CPUID_LAST - HYPERV_CPUID_FIRST + 1)

/* 0x40000003 EAX: partition privileges this VMM implements. */
#define HYPERV_PRIV_SYNIC	   (1u << 2)
#define HYPERV_PRIV_HYPERCALL	   (1u << 5)
#define HYPERV_PRIV_VP_INDEX	   (1u << 6)
#define HYPERV_PRIV_FREQUENCY_MSRS (1u << 11)
#define HYPERV_PRIV_TSC_INVARIANT  (1u << 15)
/* 0x40000003 EDX: the frequency MSRs can be read (with HYPERV_PRIV_FREQUENCY_MSRS) */
#define HYPERV_FEATURE_FREQUENCY_MSRS (1u << 8)
/* 0x40000003 EBX */
#define HYPERV_PRIV_POST_MESSAGES (1u << 4)
#define HYPERV_PRIV_SIGNAL_EVENTS (1u << 5)
/* 0x40000004 EAX: the guest is to program SINTs without AutoEOI and EOI them itself. */
#define HYPERV_HINT_DEPRECATING_AEOI (1u << 9)

struct hyperv_cpuid_leaf {
	uint32_t function, eax, ebx, ecx, edx;
};

/* The leaves 0x40000000..0x4000000A for a partition of nvps VPs; tsc_invariant lets the
 * guest keep the TSC as its clock (Linux marks it unstable otherwise), frequency_msrs
 * offers the TSC and APIC frequency MSRs (so the guest need not calibrate the TSC against
 * the PIT, which fails under nested emulation). Fills out[HYPERV_CPUID_COUNT]. */
void hyperv_cpuid_leaves(unsigned nvps, bool tsc_invariant, bool frequency_msrs,
			 struct hyperv_cpuid_leaf out[HYPERV_CPUID_COUNT]);

/* ---- MSRs ---- */

#define HYPERV_MSR_GUEST_OS_ID	      0x40000000u
#define HYPERV_MSR_HYPERCALL	      0x40000001u
#define HYPERV_MSR_VP_INDEX	      0x40000002u
#define HYPERV_MSR_TSC_FREQUENCY      0x40000022u   /* Hz, read-only */
#define HYPERV_MSR_APIC_FREQUENCY     0x40000023u   /* Hz, read-only */
#define HYPERV_APIC_FREQUENCY_HZ      1000000000ull /* KVM's LAPIC bus: 1 ns per cycle */
#define HYPERV_MSR_VP_ASSIST_PAGE     0x40000073u
#define HYPERV_MSR_SCONTROL	      0x40000080u
#define HYPERV_MSR_SVERSION	      0x40000081u
#define HYPERV_MSR_SIEFP	      0x40000082u
#define HYPERV_MSR_SIMP		      0x40000083u
#define HYPERV_MSR_EOM		      0x40000084u
#define HYPERV_MSR_SINT0	      0x40000090u
#define HYPERV_MSR_SINT15	      0x4000009Fu
#define HYPERV_MSR_TSC_INVARIANT_CTRL 0x40000118u
/* The range the user-space path traps (every Hyper-V MSR lies in it). */
#define HYPERV_MSR_RANGE_BASE  0x40000000u
#define HYPERV_MSR_RANGE_COUNT 0x200u

#define HYPERV_HYPERCALL_ENABLE (1ull << 0)
#define HYPERV_HYPERCALL_LOCKED (1ull << 1)
#define HYPERV_PAGE_ENABLE	(1ull << 0) /* SIMP, SIEFP, VP assist page */
#define HYPERV_SCONTROL_ENABLE	(1ull << 0)
#define HYPERV_SINT_MASKED	(1ull << 16)
#define HYPERV_SINT_AUTO_EOI	(1ull << 17)
#define HYPERV_SINT_POLLING	(1ull << 18)
#define HYPERV_SVERSION		1

/* ---- hypercalls ---- */

#define HYPERV_HCALL_POST_MESSAGE 0x005C
#define HYPERV_HCALL_SIGNAL_EVENT 0x005D
#define HYPERV_HCALL_FAST	  (1ull << 16)

#include "hyperv_status.h"

/* HvPostMessage input (256 bytes in guest RAM, 8-byte aligned, not crossing a page). */
#define HYPERV_POST_INPUT_SIZE	  256
#define HYPERV_CONNECTION_ID_MASK 0x00FFFFFFu

/* ---- the partition ---- */

/* What the guest sends to the VMBus host. Every callback runs on the calling VP's vCPU
 * thread (or the thread of hyperv_synic_eom) with no lock of this module held. */
struct hyperv_guest_ops {
	void *opaque;
	/* HvPostMessage from VP vp; returns the hypercall status. */
	uint16_t (*post_message)(void *opaque, unsigned vp, uint32_t connection_id,
				 uint32_t message_type, const void *payload, size_t len);
	/* HvSignalEvent for a connection with no event fd; returns the hypercall status. */
	uint16_t (*signal_event)(void *opaque, uint32_t connection_id, uint16_t flag_number);
	/* The guest freed a message slot that a post found full (-EAGAIN): post again. */
	void (*slot_free)(void *opaque, unsigned vp, unsigned sint);
};

/* How a SINT reaches the VP: vector is the SINT's vector on the user-space path, 0 on the
 * kernel path (KVM knows the vector). Called from any thread with no lock held. */
struct hyperv_irq_ops {
	void *opaque;
	void (*raise)(void *opaque, unsigned vp, unsigned sint, uint8_t vector);
};

struct hyperv_config {
	const struct guest_mem *mem;
	unsigned nvps; /* 1..HYPERV_MAX_VPS; VP index = vCPU index */
	/* KVM owns the MSRs and the hypercall page (in-kernel SynIC): the MSR entry points
	 * are not used, page addresses come from hyperv_synic_set_pages and SINT masking
	 * and vectors are KVM's business. */
	bool kernel_synic;
	bool tsc_invariant; /* CPUID offers HYPERV_PRIV_TSC_INVARIANT and its MSR */
	uint64_t tsc_hz;    /* the guest's TSC rate; not 0: the frequency MSRs are offered */
	struct hyperv_irq_ops irq;
	/* The user-space hypercall page traps with an `out` to this port (GEN1_HV_HCALL_PORT). */
	uint16_t hypercall_port;
};

struct hyperv;

/* Returns 0, -EINVAL (nvps out of range, no memory or no raise callback) or -ENOMEM. */
int hyperv_create(const struct hyperv_config *cfg, struct hyperv **out);
void hyperv_destroy(struct hyperv *hv);

/* Connects the VMBus host; before this, posts answer HV_STATUS_INVALID_CONNECTION_ID. Call
 * before the vCPUs run. */
void hyperv_set_guest_ops(struct hyperv *hv, const struct hyperv_guest_ops *ops);
/* The guest's TSC rate, for the frequency MSRs (before the vCPUs run). */
void hyperv_set_tsc_hz(struct hyperv *hv, uint64_t hz);

/* Every MSR back to its power-on value (a guest reset); event fds stay. */
void hyperv_reset(struct hyperv *hv);

/* Guest RDMSR/WRMSR of a Hyper-V MSR on VP vp. Returns 0, or -EINVAL when the access must
 * raise #GP (unknown MSR, read-only MSR written, reserved bits set, a page outside RAM). */
int hyperv_msr_read(struct hyperv *hv, unsigned vp, uint32_t msr, uint64_t *value);
int hyperv_msr_write(struct hyperv *hv, unsigned vp, uint32_t msr, uint64_t value);

/* A hypercall from VP vp by the x64 convention: control (RCX), input (RDX: a GPA, or the
 * first 8 bytes of input for a fast call), output (R8). Returns the value for RAX: the
 * status in bits 0-15, reps completed in bits 32-43. */
uint64_t hyperv_hypercall(struct hyperv *hv, unsigned vp, uint64_t control, uint64_t input,
			  uint64_t output);

/* The bytes the user-space path writes into the guest's hypercall page: save RDX in R11
 * (the VMM reads the input from there), `out` to the hypercall port, restore RDX, `ret`.
 * Returns the length (at most HYPERV_HCALL_CODE_MAX). */
#define HYPERV_HCALL_CODE_MAX 16
size_t hyperv_hypercall_code(uint16_t port, uint8_t code[HYPERV_HCALL_CODE_MAX]);

/* The GPA of vp's enabled hypercall page, or false when it is disabled. */
bool hyperv_hypercall_page(struct hyperv *hv, uint64_t *gpa);

/* HvSignalEvent for connection_id (flag 0) is a write to fd (an eventfd), with no call of
 * signal_event: the VMBus host's doorbell. fd -1 removes it. Returns 0, -EINVAL (id above
 * 24 bits), -ENOENT (removing an unknown id) or -ENOSPC. */
#define HYPERV_MAX_EVENT_FDS 64
int hyperv_set_event_fd(struct hyperv *hv, uint32_t connection_id, int fd);
/* The registered (connection id, fd) pairs, for re-registering them in a new KVM VM;
 * returns how many (at most max). */
unsigned hyperv_event_fds(struct hyperv *hv, uint32_t *ids, int *fds, unsigned max);

/* ---- the SynIC, host side (struct vmbus_synic_ops's callbacks; opaque = hv) ---- */

/* Writes one message (type != 0, at most HYPERV_MESSAGE_PAYLOAD_MAX bytes) into SINT
 * sint's slot of vp's message page and raises the SINT. Returns 0; -EAGAIN when the slot
 * is full (its message-pending flag is set; slot_free follows the guest's EOM); -ENXIO
 * when vp's SynIC or message page is not enabled; -EINVAL for a bad vp, sint, type or
 * length. */
int hyperv_synic_post_message(void *opaque, unsigned vp, unsigned sint, uint32_t message_type,
			      const void *payload, size_t len);
/* Sets bit flag of SINT sint's area in vp's event-flags page and raises the SINT when the
 * bit was clear. Nothing happens when the page is disabled or the arguments are out of
 * range. */
void hyperv_synic_signal_event(void *opaque, unsigned vp, unsigned sint, unsigned flag);

/* In-kernel SynIC: KVM reported vp's SCONTROL, SIEFP and SIMP (KVM_EXIT_HYPERV_SYNIC). A
 * page that becomes enabled (or moves) is zeroed. */
void hyperv_synic_set_pages(struct hyperv *hv, unsigned vp, uint64_t control, uint64_t siefp,
			    uint64_t simp);
/* The guest signalled end of message on vp (the EOM MSR; on the kernel path the SINT's
 * acknowledgement): the slots a post found full are offered again through slot_free. */
void hyperv_synic_eom(struct hyperv *hv, unsigned vp);

#endif
