/* What vm.c, vcpu.c, cpuid.c and memory.c share; not for device models. */
#ifndef HV_VMM_VM_INTERNAL_H
#define HV_VMM_VM_INTERNAL_H

#include <linux/kvm.h>
#include <pthread.h>

#include "vm.h"

/* 0xC0000-0xFFFFF in the 16 KiB granules the PAM registers switch. */
#define PAM_BASE     0xC0000ull
#define PAM_END	     0x100000ull
#define PAM_GRANULE  0x4000ull
#define PAM_GRANULES ((unsigned)((PAM_END - PAM_BASE) / PAM_GRANULE))
/* The legacy video window below the PAM area is not RAM: it stays a hole (MMIO). */
#define LOW_RAM_END 0xA0000ull

/* KVM memory slot numbers. */
enum {
	SLOT_LOW_RAM,	/* [0, 640 KiB) */
	SLOT_MID_RAM,	/* [1 MiB, low RAM end) */
	SLOT_HIGH_RAM,	/* [4 GiB, ...) */
	SLOT_FIRMWARE,	/* the image, ending at 4 GiB */
	SLOT_PAM_FIRST, /* one per PAM granule */
};

struct vcpu {
	struct vm *vm;
	unsigned index;
	int fd;
	struct kvm_run *run;
	pthread_t thread;
	bool thread_live; /* created and not yet asked to exit: may be kicked */
};

struct reset_hook {
	void (*fn)(void *opaque);
	void *opaque;
};

struct vm {
	struct vm_config cfg;
	int kvm_fd;
	int vm_fd; /* replaced on every reset */
	/* Readers (interrupt lines, PAM changes) hold it while they use vm_fd. */
	pthread_rwlock_t vm_fd_lock;
	size_t run_size;
	struct kvm_cpuid2 *cpuid; /* what KVM supports; filtered per vCPU */
	struct vcpu vcpus[VM_MAX_CPUS];

	/* memory */
	uint8_t *ram;
	size_t ram_map_size;
	uint64_t low_ram, high_ram; /* bytes below 4 GiB (incl. the holes), above */
	uint8_t *fw;		    /* page-rounded copy, ends with the image */
	size_t fw_map_size;
	uint8_t *rom_view; /* 0xC0000-0xFFFFF as read when the PAM says "ROM" */
	pthread_mutex_t pam_lock;
	uint8_t pam_mode[PAM_GRANULES];
	struct guest_mem mem;
	struct dev_bus bus;
	bool gsi_level[VM_NR_GSI];

	/* control: lock protects everything below */
	pthread_mutex_t lock;
	pthread_cond_t cond;
	bool attention; /* any of the flags below set: vCPUs take the lock before KVM_RUN */
	bool paused, stop_pending, reset_pending, vcpus_exit, in_run;
	char reset_cause[200]; /* of the last reset requested */
	unsigned active; /* vCPU threads neither parked nor gone */
	struct vm_exit_status stop;
	struct reset_hook hooks[VM_MAX_RESET_HOOKS];
	unsigned nhooks;

	struct vm_stats stats; /* updated with atomics */

	/* Hyper-V (hyperv_kvm.c): the resolved mode, the partition, the CPUID leaves and the
	 * kernel path's SINT routes; NULL/OFF without the interface. */
	enum hyperv_synic_mode synic;
	struct hyperv *hv;
	struct hyperv_cpuid_leaf hv_cpuid[HYPERV_CPUID_COUNT];
	struct hv_kvm *hvk;
};

/* memory.c */
int memory_create(struct vm *vm, char *err, size_t err_size);
void memory_destroy(struct vm *vm);
int memory_install_slots(struct vm *vm); /* all slots on the current vm_fd */
void memory_reset_pam(struct vm *vm);	 /* power-on state, before memory_install_slots */
/* An MMIO exit inside the PAM area or the firmware: emulated here (true), else false. */
bool memory_handle_mmio(struct vm *vm, uint64_t gpa, uint8_t *data, unsigned len, bool write);

/* cpuid.c */
int cpuid_get_supported(int kvm_fd, struct kvm_cpuid2 **out);
/* hv_leaves: the Hyper-V leaves replacing KVM's signature, or NULL for a plain KVM guest. */
int cpuid_set_vcpu(int vcpu_fd, const struct kvm_cpuid2 *supported, unsigned index, unsigned ncpus,
		   const struct hyperv_cpuid_leaf *hv_leaves);

/* vcpu.c */
int vcpu_create(struct vm *vm, unsigned index, char *err, size_t err_size);
void vcpu_destroy(struct vcpu *v);
void *vcpu_thread(void *arg);
bool vcpu_is_current_thread(void);
void vcpu_kick(struct vcpu *v);

/* hyperv_kvm.c: the Hyper-V interface on KVM; each is a no-op without it. */
int hvkvm_create(struct vm *vm, char *err, size_t err_size); /* after open_kvm, memory */
void hvkvm_tsc_rate(struct vm *vm, int vcpu_fd); /* vCPU 0: the TSC rate joins the leaves */
void hvkvm_destroy(struct vm *vm);
int hvkvm_setup_machine(struct vm *vm); /* each new vm_fd, before the vCPUs */
int hvkvm_setup_vcpu(struct vcpu *v);	/* after its CPUID */
/* The routes of the kernel path's SINTs, appended at e (room for max); returns how many. */
unsigned hvkvm_sint_routes(struct vm *vm, struct kvm_irq_routing_entry *e, unsigned max);
bool hvkvm_handle_io(struct vcpu *v); /* true: it was a hypercall, handled */
void hvkvm_handle_msr(struct vcpu *v);
void hvkvm_handle_hyperv(struct vcpu *v);

/* vm.c */
int vm_set_gsi_routing(struct vm *vm);	 /* the PC routes and the SINT routes, on vm_fd */
void vm_update_attention(struct vm *vm); /* with vm->lock held */
void vm_stop_error(struct vm *vm, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

#endif
