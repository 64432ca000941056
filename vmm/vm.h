/* The KVM core of the VMM: one virtual machine with its RAM, firmware ROM, PAM-controlled
 * shadow area, in-kernel irqchip and PIT, and one thread per vCPU.
 *
 * Device models never see this header: they get vm_bus(), vm_guest_mem() and
 * vm_gsi_line() through vmm/dev.h types. Guest port and MMIO accesses that KVM hands to user
 * space are dispatched through the dev_bus on the vCPU thread that made them.
 *
 * Threads: vCPU threads are interrupted (to pause, stop or reset the VM) with
 * VM_KICK_SIGNAL; the process must leave that signal to this module.
 */
#ifndef HV_VMM_VM_H
#define HV_VMM_VM_H

#include <signal.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "dev.h"
#include "hyperv.h"

#define VM_MAX_CPUS	   64
#define VM_MAX_FIRMWARE	   (16u << 20) /* must end at 4 GiB without covering the KVM pages */
#define VM_MIN_RAM	   (2u << 20)
#define VM_KICK_SIGNAL	   SIGUSR1
#define VM_NR_GSI	   24 /* IOAPIC pins; ISA IRQs 0-15 also reach the PIC */
#define VM_MAX_RESET_HOOKS 32

struct vm_config {
	uint64_t ram_bytes;   /* below 4 GiB up to GEN1_PCI_HOLE_START, the rest from 4 GiB */
	unsigned cpus;	      /* 1..VM_MAX_CPUS */
	const void *firmware; /* image mapped read-only so it ends at 4 GiB; its last */
	size_t firmware_size; /* 128 KiB also at 0xE0000 while the PAM says "ROM" */
	bool hugepages;	      /* back RAM with MAP_HUGETLB (clear error if unavailable) */
	bool no_reboot;	      /* a guest reset stops the VM instead of restarting it */
	/* The Hyper-V interface (CPUID leaves, MSRs, hypercalls, SynIC); OFF (the zero
	 * value) gives a plain KVM guest. AUTO takes the in-kernel SynIC when KVM has one. */
	enum hyperv_synic_mode synic;
};

enum vm_stop_reason {
	VM_STOP_POWEROFF,
	VM_STOP_RESET,
	VM_STOP_QUIT,
	VM_STOP_TEST_EXIT,
	VM_STOP_ERROR,
};

struct vm_exit_status {
	enum vm_stop_reason reason;
	unsigned test_exit_value;
	char message[256]; /* for VM_STOP_ERROR: which vCPU, what KVM said, the registers */
};

struct vm;

/* Opens /dev/kvm, checks the capabilities the platform needs, maps RAM and the firmware and
 * creates the vCPUs (not yet running). On failure returns -errno and a sentence in err. */
int vm_create(const struct vm_config *cfg, struct vm **out, char *err, size_t err_size);
/* Frees everything; only when vm_run is not running (it has returned or never ran). */
void vm_destroy(struct vm *vm);

struct dev_bus *vm_bus(struct vm *vm);		     /* devices register PIO/MMIO here */
const struct guest_mem *vm_guest_mem(struct vm *vm); /* RAM regions only */
/* A line into the in-kernel irqchip (KVM_IRQ_LINE): GSI 0-15 are the ISA IRQs (PIC pin i,
 * IOAPIC pin i, except GSI 0 which the IOAPIC sees on pin 2), 16-23 IOAPIC only. A gsi out
 * of range gives a line that does nothing. Callable from any thread. */
struct irq_line vm_gsi_line(struct vm *vm, unsigned gsi);

/* i440FX PAM: [base, base+len) inside 0xC0000-0xFFFFF (16 KiB granules); mode bit0 = reads
 * go to RAM, bit1 = writes go to RAM; otherwise reads see the firmware's low alias (or all
 * ones outside it) and writes are dropped. Called from vCPU threads (PCI config writes). */
void vm_set_pam(struct vm *vm, uint64_t base, uint64_t len, unsigned mode);

/* Device reset hooks, run (in registration order) on every guest reset before the vCPUs
 * restart, after PAM has returned to its power-on state (all "ROM"). -ENOSPC past
 * VM_MAX_RESET_HOOKS. Register before vm_run. */
int vm_add_reset_hook(struct vm *vm, void (*fn)(void *opaque), void *opaque);
/* The cause of the last reset requested (NULL before any), e.g. for a reset hook; valid
 * until the next reset request (none comes while the hooks run). */
const char *vm_reset_cause(struct vm *vm);

/* Thread-safe, callable from device handlers on vCPU threads and from other threads. The
 * first stop request wins; a stop wins over a pending reset. cause says who asked for the
 * reset ("triple fault ...", "reset control register", ...); it is copied. */
void vm_request_reset(struct vm *vm, const char *cause);
void vm_request_stop(struct vm *vm, enum vm_stop_reason reason, unsigned test_exit_value);

/* Returns when every vCPU is out of KVM_RUN and parked; -EDEADLK from a vCPU thread. Works
 * before vm_run too (the vCPUs then start parked). */
int vm_pause(struct vm *vm);
int vm_resume(struct vm *vm);
bool vm_is_paused(struct vm *vm);

/* Starts the vCPU threads and blocks until the VM stops (power-off, quit, test exit, an
 * unrecoverable error, or a reset when no_reboot). Returns 0 with *status filled, or -errno
 * when the VM could not run at all (-EBUSY when it already runs). */
int vm_run(struct vm *vm, struct vm_exit_status *status);

/* The Hyper-V partition (hyperv.h), NULL when the VM has no Hyper-V interface. The VMBus
 * host connects with hyperv_set_guest_ops and posts through hyperv_synic_* (opaque = it). */
struct hyperv *vm_hyperv(struct vm *vm);
/* The SynIC path in use: HYPERV_SYNIC_OFF, _KERNEL or _USER (never _AUTO). */
enum hyperv_synic_mode vm_synic_mode(struct vm *vm);
/* HvSignalEvent for connection_id (flag 0) becomes a write to the eventfd fd, made by KVM
 * on the kernel path (KVM_HYPERV_EVENTFD, no exit to the VMM) and by the vCPU thread on
 * the user-space path; fd -1 removes it. Kept across guest resets. Returns 0, -ENODEV
 * without a Hyper-V interface, hyperv_set_event_fd's errors, or KVM's. */
int vm_hyperv_set_event_fd(struct vm *vm, uint32_t connection_id, int fd);

struct vm_stats {
	uint64_t exits, io_exits, mmio_exits, halts, resets;
};
void vm_get_stats(struct vm *vm, struct vm_stats *out);

#endif
