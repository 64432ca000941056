/* The Hyper-V partition: CPUID leaves, partition MSRs, hypercall decoding and the
 * event-fd doorbells. The SynIC (per-VP MSRs, message and event-flag pages) is in
 * hyperv_synic.c; what both share is in hyperv_internal.h. */
#include "hyperv_internal.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "endian.h"

/* "Microsoft Hv" and "Hv#1" as CPUID registers hold them. */
#define SIGNATURE_EBX 0x7263694Du
#define SIGNATURE_ECX 0x666F736Fu
#define SIGNATURE_EDX 0x76482074u
#define INTERFACE_HV1 0x31237648u
/* The version a Windows Server 2016 host reports (10.0, build 14393). */
#define VERSION_BUILD 14393u
#define VERSION_MAJOR 10u
#define SPIN_NEVER    0xFFFFFFFFu /* 0x40000004 EBX: never notify long spin waits */

/* Control bits that must be zero in every hypercall, and the rep/variable-header fields
 * that must be zero in the simple calls this VMM implements. */
#define CONTROL_RESERVED  0xF000F000F8000000ull
#define CONTROL_REP_VARHD 0x0FFF0FFF07FE0000ull
#define CONTROL_CODE	  0xFFFFull

/* HvPostMessage input fields */
#define POST_CONNECTION_ID	0
#define POST_MESSAGE_TYPE	8
#define POST_PAYLOAD_SIZE	12
#define POST_PAYLOAD		16
#define MESSAGE_TYPE_HYPERVISOR (1u << 31) /* types the guest may not send */

/* HvSignalEvent input: u32 connection id, u16 flag number, u16 reserved. */
#define SIGNAL_INPUT_SIZE 8
#define SIGNAL_RESERVED	  0xFFFF0000FF000000ull

void hyperv_cpuid_leaves(unsigned nvps, bool tsc_invariant, bool frequency_msrs,
			 struct hyperv_cpuid_leaf out[HYPERV_CPUID_COUNT])
{
	memset(out, 0, HYPERV_CPUID_COUNT * sizeof(out[0]));
	for (unsigned i = 0; i < HYPERV_CPUID_COUNT; i++)
		out[i].function = HYPERV_CPUID_FIRST + i;
	out[0].eax = HYPERV_CPUID_LAST;
	out[0].ebx = SIGNATURE_EBX;
	out[0].ecx = SIGNATURE_ECX;
	out[0].edx = SIGNATURE_EDX;
	out[1].eax = INTERFACE_HV1;
	out[2].eax = VERSION_BUILD;
	out[2].ebx = VERSION_MAJOR << 16;
	out[3].eax = HYPERV_PRIV_SYNIC | HYPERV_PRIV_HYPERCALL | HYPERV_PRIV_VP_INDEX |
		     (tsc_invariant ? HYPERV_PRIV_TSC_INVARIANT : 0) |
		     (frequency_msrs ? HYPERV_PRIV_FREQUENCY_MSRS : 0);
	out[3].ebx = HYPERV_PRIV_POST_MESSAGES | HYPERV_PRIV_SIGNAL_EVENTS;
	out[3].edx = frequency_msrs ? HYPERV_FEATURE_FREQUENCY_MSRS : 0;
	out[4].eax = HYPERV_HINT_DEPRECATING_AEOI;
	out[4].ebx = SPIN_NEVER;
	out[5].eax = nvps; /* maximum virtual processors */
	out[5].ebx = nvps; /* maximum logical processors */
}

int hyperv_create(const struct hyperv_config *cfg, struct hyperv **out)
{
	if (!cfg->mem || !cfg->irq.raise || cfg->nvps < 1 || cfg->nvps > HYPERV_MAX_VPS)
		return -EINVAL;
	struct hyperv *hv = calloc(1, sizeof(*hv) + cfg->nvps * sizeof(hv->vps[0]));
	if (!hv)
		return -ENOMEM;
	hv->cfg = *cfg;
	pthread_mutex_init(&hv->lock, NULL);
	for (unsigned i = 0; i < cfg->nvps; i++)
		pthread_mutex_init(&hv->vps[i].lock, NULL);
	hyperv_reset(hv);
	*out = hv;
	return 0;
}

void hyperv_destroy(struct hyperv *hv)
{
	if (!hv)
		return;
	for (unsigned i = 0; i < hv->cfg.nvps; i++)
		pthread_mutex_destroy(&hv->vps[i].lock);
	pthread_mutex_destroy(&hv->lock);
	free(hv);
}

void hyperv_set_guest_ops(struct hyperv *hv, const struct hyperv_guest_ops *ops)
{
	pthread_mutex_lock(&hv->lock);
	hv->ops = *ops;
	pthread_mutex_unlock(&hv->lock);
}

void hyperv_set_tsc_hz(struct hyperv *hv, uint64_t hz)
{
	pthread_mutex_lock(&hv->lock);
	hv->cfg.tsc_hz = hz;
	pthread_mutex_unlock(&hv->lock);
}

struct hyperv_guest_ops hyperv_ops_snapshot(struct hyperv *hv)
{
	pthread_mutex_lock(&hv->lock);
	struct hyperv_guest_ops ops = hv->ops;
	pthread_mutex_unlock(&hv->lock);
	return ops;
}

void hyperv_reset(struct hyperv *hv)
{
	pthread_mutex_lock(&hv->lock);
	hv->guest_os_id = 0;
	hv->hypercall = 0;
	hv->tsc_invariant_ctrl = 0;
	pthread_mutex_unlock(&hv->lock);
	for (unsigned i = 0; i < hv->cfg.nvps; i++)
		synic_reset_vp(&hv->vps[i]);
}

void *hyperv_guest_ptr(const struct hyperv *hv, uint64_t gpa, size_t len)
{
	struct iovec iov;
	int n = 0;
	if (guest_mem_iov(hv->cfg.mem, gpa, len, &iov, 1, &n) || n != 1)
		return NULL;
	return iov.iov_base;
}

/* ---- partition MSRs ---- */

size_t hyperv_hypercall_code(uint16_t port, uint8_t code[HYPERV_HCALL_CODE_MAX])
{
	static const uint8_t save_rdx[] = { 0x49, 0x89, 0xD3 };	   /* mov %rdx, %r11 */
	static const uint8_t restore_rdx[] = { 0x4C, 0x89, 0xDA }; /* mov %r11, %rdx */
	size_t n = 0;
	memcpy(code + n, save_rdx, sizeof(save_rdx));
	n += sizeof(save_rdx);
	code[n++] = 0xBA; /* mov $port, %edx */
	store_le32(code + n, port);
	n += 4;
	code[n++] = 0xEF; /* out %eax, %dx */
	memcpy(code + n, restore_rdx, sizeof(restore_rdx));
	n += sizeof(restore_rdx);
	code[n++] = 0xC3; /* ret */
	return n;
}

/* With hv->lock held. The page is ordinary guest RAM: it must lie inside RAM. */
static int write_hypercall_msr(struct hyperv *hv, uint64_t value)
{
	if (value & ~(PAGE_GPA_MASK | HYPERV_HYPERCALL_ENABLE | HYPERV_HYPERCALL_LOCKED))
		return -EINVAL;
	if (hv->hypercall & HYPERV_HYPERCALL_LOCKED)
		return 0; /* locked until the next reset: writes are ignored */
	if (!hv->guest_os_id)
		value &= ~HYPERV_HYPERCALL_ENABLE; /* no hypercalls before the guest says who it is
						    */
	if (value & HYPERV_HYPERCALL_ENABLE) {
		uint8_t *page = hyperv_guest_ptr(hv, value & PAGE_GPA_MASK, HYPERV_PAGE_SIZE);
		if (!page)
			return -EINVAL;
		uint8_t code[HYPERV_HCALL_CODE_MAX];
		size_t len = hyperv_hypercall_code(hv->cfg.hypercall_port, code);
		memcpy(page, code, len);
	}
	hv->hypercall = value;
	return 0;
}

bool hyperv_hypercall_page(struct hyperv *hv, uint64_t *gpa)
{
	pthread_mutex_lock(&hv->lock);
	uint64_t v = hv->hypercall;
	pthread_mutex_unlock(&hv->lock);
	*gpa = v & PAGE_GPA_MASK;
	return v & HYPERV_HYPERCALL_ENABLE;
}

static bool is_partition_msr(uint32_t msr)
{
	return msr == HYPERV_MSR_GUEST_OS_ID || msr == HYPERV_MSR_HYPERCALL ||
	       msr == HYPERV_MSR_TSC_INVARIANT_CTRL || msr == HYPERV_MSR_TSC_FREQUENCY ||
	       msr == HYPERV_MSR_APIC_FREQUENCY;
}

static int partition_msr_read(struct hyperv *hv, uint32_t msr, uint64_t *value)
{
	if (msr == HYPERV_MSR_TSC_FREQUENCY || msr == HYPERV_MSR_APIC_FREQUENCY) {
		if (!hv->cfg.tsc_hz)
			return -EINVAL;
		*value =
			msr == HYPERV_MSR_TSC_FREQUENCY ? hv->cfg.tsc_hz : HYPERV_APIC_FREQUENCY_HZ;
		return 0;
	}
	if (msr == HYPERV_MSR_TSC_INVARIANT_CTRL && !hv->cfg.tsc_invariant)
		return -EINVAL;
	pthread_mutex_lock(&hv->lock);
	*value = msr == HYPERV_MSR_GUEST_OS_ID ? hv->guest_os_id
		 : msr == HYPERV_MSR_HYPERCALL ? hv->hypercall
					       : hv->tsc_invariant_ctrl;
	pthread_mutex_unlock(&hv->lock);
	return 0;
}

static int partition_msr_write(struct hyperv *hv, uint32_t msr, uint64_t value)
{
	int ret = 0;
	pthread_mutex_lock(&hv->lock);
	switch (msr) {
	case HYPERV_MSR_GUEST_OS_ID:
		hv->guest_os_id = value;
		if (!value) /* the guest withdrew: so does its hypercall page */
			hv->hypercall &= ~HYPERV_HYPERCALL_ENABLE;
		break;
	case HYPERV_MSR_HYPERCALL:
		ret = write_hypercall_msr(hv, value);
		break;
	case HYPERV_MSR_TSC_FREQUENCY:
	case HYPERV_MSR_APIC_FREQUENCY:
		ret = -EINVAL; /* read-only */
		break;
	default: /* TSC_INVARIANT_CONTROL: bit 0 only, and only when offered */
		if (!hv->cfg.tsc_invariant || value > 1)
			ret = -EINVAL;
		else
			hv->tsc_invariant_ctrl = value;
		break;
	}
	pthread_mutex_unlock(&hv->lock);
	return ret;
}

/* With the in-kernel SynIC, KVM answers the Hyper-V MSRs, except those it does not know
 * (TSC_INVARIANT_CONTROL before Linux 6.2), which still reach this file. */
static bool msr_served_here(const struct hyperv *hv, unsigned vp, uint32_t msr)
{
	return vp < hv->cfg.nvps && (!hv->cfg.kernel_synic || msr == HYPERV_MSR_TSC_INVARIANT_CTRL);
}

int hyperv_msr_read(struct hyperv *hv, unsigned vp, uint32_t msr, uint64_t *value)
{
	if (!msr_served_here(hv, vp, msr))
		return -EINVAL;
	if (is_partition_msr(msr))
		return partition_msr_read(hv, msr, value);
	return synic_msr_read(hv, vp, msr, value);
}

int hyperv_msr_write(struct hyperv *hv, unsigned vp, uint32_t msr, uint64_t value)
{
	if (!msr_served_here(hv, vp, msr))
		return -EINVAL;
	if (is_partition_msr(msr))
		return partition_msr_write(hv, msr, value);
	return synic_msr_write(hv, vp, msr, value);
}

/* ---- event fds ---- */

int hyperv_set_event_fd(struct hyperv *hv, uint32_t connection_id, int fd)
{
	if (connection_id & ~HYPERV_CONNECTION_ID_MASK)
		return -EINVAL;
	int ret = fd < 0 ? -ENOENT : -ENOSPC;
	pthread_mutex_lock(&hv->lock);
	unsigned i = 0;
	while (i < hv->nevent_fds && hv->event_fds[i].id != connection_id)
		i++;
	if (fd < 0 && i < hv->nevent_fds) {
		hv->event_fds[i] = hv->event_fds[--hv->nevent_fds];
		ret = 0;
	} else if (fd >= 0 && (i < hv->nevent_fds || i < HYPERV_MAX_EVENT_FDS)) {
		hv->event_fds[i] = (struct hyperv_event_fd){ connection_id, fd };
		if (i == hv->nevent_fds)
			hv->nevent_fds++;
		ret = 0;
	}
	pthread_mutex_unlock(&hv->lock);
	return ret;
}

unsigned hyperv_event_fds(struct hyperv *hv, uint32_t *ids, int *fds, unsigned max)
{
	pthread_mutex_lock(&hv->lock);
	unsigned n = hv->nevent_fds < max ? hv->nevent_fds : max;
	for (unsigned i = 0; i < n; i++) {
		ids[i] = hv->event_fds[i].id;
		fds[i] = hv->event_fds[i].fd;
	}
	pthread_mutex_unlock(&hv->lock);
	return n;
}

static int event_fd_of(struct hyperv *hv, uint32_t connection_id)
{
	int fd = -1;
	pthread_mutex_lock(&hv->lock);
	for (unsigned i = 0; i < hv->nevent_fds && fd < 0; i++)
		if (hv->event_fds[i].id == connection_id)
			fd = hv->event_fds[i].fd;
	pthread_mutex_unlock(&hv->lock);
	return fd;
}

/* ---- hypercalls ---- */

/* The checks every slow input block passes: 8-byte aligned, not crossing a page. */
static uint16_t check_input_gpa(uint64_t gpa, size_t len)
{
	if (gpa & 7 || (gpa % HYPERV_PAGE_SIZE) + len > HYPERV_PAGE_SIZE)
		return HV_STATUS_INVALID_ALIGNMENT;
	return HV_STATUS_SUCCESS;
}

static uint16_t post_message_call(struct hyperv *hv, unsigned vp, bool fast, uint64_t input)
{
	if (fast)
		return HV_STATUS_INVALID_HYPERCALL_INPUT; /* the input is always a page */
	uint16_t status = check_input_gpa(input, HYPERV_POST_INPUT_SIZE);
	if (status)
		return status;
	uint8_t in[HYPERV_POST_INPUT_SIZE];
	if (guest_mem_read(hv->cfg.mem, input, in, sizeof(in)))
		return HV_STATUS_INVALID_PARAMETER;
	uint32_t connection_id = load_le32(in + POST_CONNECTION_ID) & HYPERV_CONNECTION_ID_MASK;
	uint32_t type = load_le32(in + POST_MESSAGE_TYPE);
	uint32_t size = load_le32(in + POST_PAYLOAD_SIZE);
	if (size > HYPERV_MESSAGE_PAYLOAD_MAX || type == 0 || (type & MESSAGE_TYPE_HYPERVISOR))
		return HV_STATUS_INVALID_PARAMETER;
	struct hyperv_guest_ops ops = hyperv_ops_snapshot(hv);
	if (!ops.post_message)
		return HV_STATUS_INVALID_CONNECTION_ID;
	return ops.post_message(ops.opaque, vp, connection_id, type, in + POST_PAYLOAD, size);
}

static uint16_t signal_event_call(struct hyperv *hv, bool fast, uint64_t input)
{
	uint64_t param = input;
	if (!fast) {
		uint8_t in[SIGNAL_INPUT_SIZE];
		uint16_t status = check_input_gpa(input, sizeof(in));
		if (status)
			return status;
		if (guest_mem_read(hv->cfg.mem, input, in, sizeof(in)))
			return HV_STATUS_INVALID_PARAMETER;
		param = load_le64(in);
	}
	if (param & SIGNAL_RESERVED)
		return HV_STATUS_INVALID_HYPERCALL_INPUT;
	uint32_t connection_id = (uint32_t)param;
	uint16_t flag = (uint16_t)(param >> 32);
	int fd = flag == 0 ? event_fd_of(hv, connection_id) : -1;
	if (fd >= 0) {
		uint64_t one = 1;
		/* a full counter (EAGAIN) already says "signalled" */
		return write(fd, &one, sizeof(one)) == sizeof(one) || errno == EAGAIN
			       ? HV_STATUS_SUCCESS
			       : HV_STATUS_INSUFFICIENT_BUFFERS;
	}
	struct hyperv_guest_ops ops = hyperv_ops_snapshot(hv);
	if (!ops.signal_event)
		return HV_STATUS_INVALID_CONNECTION_ID;
	return ops.signal_event(ops.opaque, connection_id, flag);
}

uint64_t hyperv_hypercall(struct hyperv *hv, unsigned vp, uint64_t control, uint64_t input,
			  uint64_t output)
{
	(void)output; /* neither call has output */
	if (vp >= hv->cfg.nvps || control & CONTROL_RESERVED)
		return HV_STATUS_INVALID_HYPERCALL_INPUT;
	uint64_t code = control & CONTROL_CODE;
	if (code != HYPERV_HCALL_POST_MESSAGE && code != HYPERV_HCALL_SIGNAL_EVENT)
		return HV_STATUS_INVALID_HYPERCALL_CODE;
	if (control & CONTROL_REP_VARHD)
		return HV_STATUS_INVALID_HYPERCALL_INPUT; /* neither is a rep call */
	bool fast = control & HYPERV_HCALL_FAST;
	if (code == HYPERV_HCALL_POST_MESSAGE)
		return post_message_call(hv, vp, fast, input);
	return signal_event_call(hv, fast, input);
}
