/* The synthetic interrupt controller: per-VP MSRs (VP index, VP assist page, SCONTROL,
 * SVERSION, SIEFP, SIMP, EOM, SINT0-15), message slots and event flags in guest RAM.
 *
 * The SIMP and SIEFP pages are ordinary guest RAM at the GPA the guest chose (as KVM does,
 * not overlays); they are zeroed when enabled, so stale contents never look like a full
 * slot. A slot is written in the TLFS order: everything after the type first, the type
 * last; a full slot gets its message-pending flag and the post waits for EOM. */
#include "hyperv_internal.h"

#include <errno.h>
#include <string.h>

/* hv_message header */
#define SLOT_TYPE	  0
#define SLOT_PAYLOAD_SIZE 4
#define SLOT_FLAGS	  5
#define SLOT_PAYLOAD	  16
#define FLAG_MSG_PENDING  0x01
#define SIEF_AREA	  (HYPERV_EVENT_FLAGS / 8) /* bytes per SINT */

#define SINT_VECTOR	0xFFull
#define SINT_RESERVED	(~0x7FFFFull)
#define SINT_MIN_VECTOR 16

void synic_reset_vp(struct hyperv_vp *v)
{
	pthread_mutex_lock(&v->lock);
	v->scontrol = v->siefp = v->simp = v->vp_assist = 0;
	for (unsigned i = 0; i < HYPERV_SINT_COUNT; i++)
		v->sint[i] = HYPERV_SINT_MASKED;
	v->full_slots = 0;
	pthread_mutex_unlock(&v->lock);
}

/* ---- MSRs ---- */

static bool is_sint(uint32_t msr)
{
	return msr >= HYPERV_MSR_SINT0 && msr <= HYPERV_MSR_SINT15;
}

int synic_msr_read(struct hyperv *hv, unsigned vp, uint32_t msr, uint64_t *value)
{
	struct hyperv_vp *v = &hv->vps[vp];
	int ret = 0;
	pthread_mutex_lock(&v->lock);
	if (is_sint(msr))
		*value = v->sint[msr - HYPERV_MSR_SINT0];
	else if (msr == HYPERV_MSR_VP_INDEX)
		*value = vp;
	else if (msr == HYPERV_MSR_VP_ASSIST_PAGE)
		*value = v->vp_assist;
	else if (msr == HYPERV_MSR_SCONTROL)
		*value = v->scontrol;
	else if (msr == HYPERV_MSR_SVERSION)
		*value = HYPERV_SVERSION;
	else if (msr == HYPERV_MSR_SIEFP)
		*value = v->siefp;
	else if (msr == HYPERV_MSR_SIMP)
		*value = v->simp;
	else if (msr == HYPERV_MSR_EOM)
		*value = 0; /* write-only; reads as zero */
	else
		ret = -EINVAL;
	pthread_mutex_unlock(&v->lock);
	return ret;
}

/* A page MSR (bit 0 enable, 1-11 kept, 12-63 GPA): the page must be RAM when enabled; it
 * is zeroed when it becomes enabled or moves. With v->lock held. */
static int write_page_msr(struct hyperv *hv, uint64_t *msr, uint64_t value, bool zero)
{
	bool enable = value & HYPERV_PAGE_ENABLE;
	uint8_t *page = hyperv_guest_ptr(hv, value & PAGE_GPA_MASK, HYPERV_PAGE_SIZE);
	if (enable && !page)
		return -EINVAL;
	bool was = *msr & HYPERV_PAGE_ENABLE;
	if (zero && enable && (!was || (*msr & PAGE_GPA_MASK) != (value & PAGE_GPA_MASK)))
		memset(page, 0, HYPERV_PAGE_SIZE);
	*msr = value;
	return 0;
}

/* SINTx: vector 16-255 unless masked, no AutoEOI (an MSI cannot end itself: CPUID asks
 * the guest to EOI instead), bits 19-63 reserved. */
static int write_sint(uint64_t *sint, uint64_t value)
{
	if (value & SINT_RESERVED || value & HYPERV_SINT_AUTO_EOI)
		return -EINVAL;
	if (!(value & HYPERV_SINT_MASKED) && (value & SINT_VECTOR) < SINT_MIN_VECTOR)
		return -EINVAL;
	*sint = value;
	return 0;
}

/* SCONTROL: bit 0 enable, the rest reserved. */
static int write_scontrol(uint64_t *scontrol, uint64_t value)
{
	if (value & ~HYPERV_SCONTROL_ENABLE)
		return -EINVAL;
	*scontrol = value;
	return 0;
}

int synic_msr_write(struct hyperv *hv, unsigned vp, uint32_t msr, uint64_t value)
{
	if (msr == HYPERV_MSR_EOM) {
		hyperv_synic_eom(hv, vp);
		return 0;
	}
	struct hyperv_vp *v = &hv->vps[vp];
	int ret = -EINVAL; /* VP_INDEX and SVERSION are read-only; others are unknown */
	pthread_mutex_lock(&v->lock);
	if (is_sint(msr))
		ret = write_sint(&v->sint[msr - HYPERV_MSR_SINT0], value);
	else if (msr == HYPERV_MSR_SCONTROL)
		ret = write_scontrol(&v->scontrol, value);
	else if (msr == HYPERV_MSR_SIEFP)
		ret = write_page_msr(hv, &v->siefp, value, true);
	else if (msr == HYPERV_MSR_SIMP)
		ret = write_page_msr(hv, &v->simp, value, true);
	else if (msr == HYPERV_MSR_VP_ASSIST_PAGE)
		ret = write_page_msr(hv, &v->vp_assist, value, false);
	pthread_mutex_unlock(&v->lock);
	return ret;
}

/* ---- the host side ---- */

/* The host address of an enabled page of an enabled SynIC, or NULL. With v->lock held. */
static uint8_t *active_page(struct hyperv *hv, const struct hyperv_vp *v, uint64_t page_msr)
{
	if (!(v->scontrol & HYPERV_SCONTROL_ENABLE) || !(page_msr & HYPERV_PAGE_ENABLE))
		return NULL;
	return hyperv_guest_ptr(hv, page_msr & PAGE_GPA_MASK, HYPERV_PAGE_SIZE);
}

struct sint_target {
	bool raise;
	uint8_t vector;
};

/* Whether and how to raise sint now; with v->lock held. KVM masks on the kernel path. */
static struct sint_target sint_target(const struct hyperv *hv, const struct hyperv_vp *v,
				      unsigned sint)
{
	if (hv->cfg.kernel_synic)
		return (struct sint_target){ true, 0 };
	uint64_t s = v->sint[sint];
	return (struct sint_target){ !(s & HYPERV_SINT_MASKED), (uint8_t)(s & SINT_VECTOR) };
}

static void raise_sint(struct hyperv *hv, unsigned vp, unsigned sint, struct sint_target t)
{
	if (t.raise)
		hv->cfg.irq.raise(hv->cfg.irq.opaque, vp, sint, t.vector);
}

/* With v->lock held: true when the slot is free to write. A full slot gets its pending
 * flag; the guest may have freed it meanwhile (then it is free after all). */
static bool claim_slot(uint8_t *slot)
{
	uint32_t *type = (uint32_t *)(slot + SLOT_TYPE);
	if (__atomic_load_n(type, __ATOMIC_ACQUIRE) == 0)
		return true;
	__atomic_fetch_or(slot + SLOT_FLAGS, FLAG_MSG_PENDING, __ATOMIC_SEQ_CST);
	return __atomic_load_n(type, __ATOMIC_SEQ_CST) == 0;
}

int hyperv_synic_post_message(void *opaque, unsigned vp, unsigned sint, uint32_t message_type,
			      const void *payload, size_t len)
{
	struct hyperv *hv = opaque;
	if (vp >= hv->cfg.nvps || sint >= HYPERV_SINT_COUNT || message_type == 0 ||
	    len > HYPERV_MESSAGE_PAYLOAD_MAX || (len && !payload))
		return -EINVAL;
	struct hyperv_vp *v = &hv->vps[vp];
	pthread_mutex_lock(&v->lock);
	uint8_t *page = active_page(hv, v, v->simp);
	if (!page) {
		pthread_mutex_unlock(&v->lock);
		return -ENXIO;
	}
	uint8_t *slot = page + sint * HYPERV_MESSAGE_SIZE;
	if (!claim_slot(slot)) {
		v->full_slots |= 1u << sint;
		pthread_mutex_unlock(&v->lock);
		return -EAGAIN;
	}
	memset(slot + SLOT_PAYLOAD_SIZE, 0, HYPERV_MESSAGE_SIZE - SLOT_PAYLOAD_SIZE);
	slot[SLOT_PAYLOAD_SIZE] = (uint8_t)len;
	if (len)
		memcpy(slot + SLOT_PAYLOAD, payload, len);
	__atomic_store_n((uint32_t *)(slot + SLOT_TYPE), message_type, __ATOMIC_RELEASE);
	struct sint_target t = sint_target(hv, v, sint);
	pthread_mutex_unlock(&v->lock);
	raise_sint(hv, vp, sint, t);
	return 0;
}

void hyperv_synic_signal_event(void *opaque, unsigned vp, unsigned sint, unsigned flag)
{
	struct hyperv *hv = opaque;
	if (vp >= hv->cfg.nvps || sint >= HYPERV_SINT_COUNT || flag >= HYPERV_EVENT_FLAGS)
		return;
	struct hyperv_vp *v = &hv->vps[vp];
	pthread_mutex_lock(&v->lock);
	uint8_t *page = active_page(hv, v, v->siefp);
	if (!page) {
		pthread_mutex_unlock(&v->lock);
		return;
	}
	uint32_t *word = (uint32_t *)(page + sint * SIEF_AREA) + flag / 32;
	uint32_t bit = 1u << (flag % 32);
	bool was_set = __atomic_fetch_or(word, bit, __ATOMIC_SEQ_CST) & bit;
	struct sint_target t = sint_target(hv, v, sint);
	pthread_mutex_unlock(&v->lock);
	if (!was_set) /* the guest scans the whole area once per interrupt */
		raise_sint(hv, vp, sint, t);
}

void hyperv_synic_set_pages(struct hyperv *hv, unsigned vp, uint64_t control, uint64_t siefp,
			    uint64_t simp)
{
	if (vp >= hv->cfg.nvps)
		return;
	struct hyperv_vp *v = &hv->vps[vp];
	pthread_mutex_lock(&v->lock);
	v->scontrol = control;
	/* KVM accepted these already; a page outside RAM stays unusable (active_page) */
	if (write_page_msr(hv, &v->siefp, siefp, true))
		v->siefp = siefp;
	if (write_page_msr(hv, &v->simp, simp, true))
		v->simp = simp;
	pthread_mutex_unlock(&v->lock);
}

void hyperv_synic_eom(struct hyperv *hv, unsigned vp)
{
	if (vp >= hv->cfg.nvps)
		return;
	struct hyperv_vp *v = &hv->vps[vp];
	pthread_mutex_lock(&v->lock);
	uint32_t full = v->full_slots;
	v->full_slots = 0;
	pthread_mutex_unlock(&v->lock);
	struct hyperv_guest_ops ops = hyperv_ops_snapshot(hv);
	for (unsigned sint = 0; full && ops.slot_free; sint++, full >>= 1)
		if (full & 1)
			ops.slot_free(ops.opaque, vp, sint);
}
