/* CPUID: what KVM supports, with each vCPU's APIC ID and the package topology filled in,
 * the hypervisor bit set, and either the KVM signature leaves or, with the Hyper-V
 * interface, the Hyper-V leaves alone: Linux picks the hypervisor whose signature sits at
 * the highest base, so KVM's leaves moved up to 0x40000100 (as QEMU does) would win over
 * Hyper-V and leave the guest without VMBus. */
#include "vm_internal.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>

#define CPUID_MAX_ENTRIES 256
#define CPUID_HYPERVISOR  (1u << 31) /* leaf 1 ECX */
#define CPUID_HTT	  (1u << 28) /* leaf 1 EDX */
#define KVM_SIGNATURE	  0x40000000u
#define HYPERVISOR_LEAVES 0x40000000u /* 0x40000000-0x4FFFFFFF belong to the hypervisor */

static struct kvm_cpuid2 *alloc_cpuid(unsigned n)
{
	struct kvm_cpuid2 *c = calloc(1, sizeof(*c) + n * sizeof(c->entries[0]));
	if (c)
		c->nent = n;
	return c;
}

int cpuid_get_supported(int kvm_fd, struct kvm_cpuid2 **out)
{
	struct kvm_cpuid2 *c = alloc_cpuid(CPUID_MAX_ENTRIES);
	if (!c)
		return -ENOMEM;
	if (ioctl(kvm_fd, KVM_GET_SUPPORTED_CPUID, c) < 0) {
		int ret = -errno;
		free(c);
		return ret;
	}
	*out = c;
	return 0;
}

static unsigned bits_for(unsigned n)
{
	unsigned b = 0;
	while ((1u << b) < n)
		b++;
	return b;
}

/* Leaves 0xB and 0x1F: one thread per core, ncpus cores in one package. */
static void set_topology(struct kvm_cpuid_entry2 *e, unsigned apic_id, unsigned ncpus)
{
	e->edx = apic_id;
	switch (e->index) {
	case 0:
		e->eax = 0;
		e->ebx = 1;
		e->ecx = 0 | (1u << 8); /* SMT level */
		break;
	case 1:
		e->eax = bits_for(ncpus);
		e->ebx = ncpus;
		e->ecx = 1 | (2u << 8); /* core level */
		break;
	default:
		e->eax = e->ebx = 0;
		e->ecx = e->index; /* invalid level: the list ends */
		break;
	}
}

static void filter_entry(struct kvm_cpuid_entry2 *e, unsigned apic_id, unsigned ncpus)
{
	switch (e->function) {
	case 1:
		e->ebx = (e->ebx & 0x0000FFFFu) | (apic_id << 24) | ((ncpus & 0xFFu) << 16);
		e->ecx |= CPUID_HYPERVISOR;
		if (ncpus > 1)
			e->edx |= CPUID_HTT;
		else
			e->edx &= ~CPUID_HTT;
		break;
	case 4: /* cores per package - 1 in 31:26; each cache private to one thread */
		if (e->eax & 0x1F)
			e->eax = (e->eax & 0x3FFFu) | ((ncpus - 1) << 26);
		break;
	case 0xB:
	case 0x1F:
		set_topology(e, apic_id, ncpus);
		break;
	}
}

static bool has_signature(const struct kvm_cpuid2 *c)
{
	for (unsigned i = 0; i < c->nent; i++)
		if (c->entries[i].function == KVM_SIGNATURE)
			return true;
	return false;
}

static bool is_hypervisor_leaf(uint32_t function)
{
	return (function & 0xF0000000u) == HYPERVISOR_LEAVES;
}

/* Replaces every hypervisor leaf of c (room for HYPERV_CPUID_COUNT more) with hv's. */
static void use_hyperv_leaves(struct kvm_cpuid2 *c, const struct hyperv_cpuid_leaf *hv)
{
	unsigned n = 0;
	for (unsigned i = 0; i < c->nent; i++)
		if (!is_hypervisor_leaf(c->entries[i].function))
			c->entries[n++] = c->entries[i];
	for (unsigned i = 0; i < HYPERV_CPUID_COUNT; i++)
		c->entries[n++] = (struct kvm_cpuid_entry2){ .function = hv[i].function,
							     .eax = hv[i].eax,
							     .ebx = hv[i].ebx,
							     .ecx = hv[i].ecx,
							     .edx = hv[i].edx };
	c->nent = n;
}

int cpuid_set_vcpu(int vcpu_fd, const struct kvm_cpuid2 *supported, unsigned index, unsigned ncpus,
		   const struct hyperv_cpuid_leaf *hv_leaves)
{
	struct kvm_cpuid2 *c = alloc_cpuid(supported->nent + HYPERV_CPUID_COUNT);
	if (!c)
		return -ENOMEM;
	memcpy(c->entries, supported->entries, supported->nent * sizeof(c->entries[0]));
	c->nent = supported->nent;
	for (unsigned i = 0; i < c->nent; i++)
		filter_entry(&c->entries[i], index, ncpus);
	if (hv_leaves) {
		use_hyperv_leaves(c, hv_leaves);
	} else if (!has_signature(c)) {
		/* "KVMKVMKVM\0\0\0" with 0x40000001 as the highest hypervisor leaf */
		c->entries[c->nent++] = (struct kvm_cpuid_entry2){
			.function = KVM_SIGNATURE,
			.eax = KVM_SIGNATURE + 1,
			.ebx = 0x4B4D564B,
			.ecx = 0x564B4D56,
			.edx = 0x0000004D,
		};
	}
	int ret = ioctl(vcpu_fd, KVM_SET_CPUID2, c) < 0 ? -errno : 0;
	free(c);
	return ret;
}
