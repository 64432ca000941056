/* vCPUs: creation at the power-on state, the thread that runs KVM_RUN, and the exits it
 * hands to the dev_bus or turns into VM stop/reset requests. */
#include "vm_internal.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <unistd.h>

#include "errmsg.h"

#define MSR_IA32_MISC_ENABLE	 0x1A0
#define MISC_ENABLE_FAST_STRING	 (1u << 0)
#define MISC_ENABLE_PERF_MON	 (1u << 7)
#define MISC_ENABLE_BTS_UNAVAIL	 (1u << 11)
#define MISC_ENABLE_PEBS_UNAVAIL (1u << 12)

static __thread struct vcpu *current_vcpu;

bool vcpu_is_current_thread(void)
{
	return current_vcpu != NULL;
}

/* MSRs KVM leaves at zero that a PC's firmware expects set at power-on. */
static int set_reset_msrs(int fd)
{
	enum { NMSRS = 1 };
	union {
		struct kvm_msrs msrs;
		uint8_t bytes[sizeof(struct kvm_msrs) + NMSRS * sizeof(struct kvm_msr_entry)];
	} m;
	memset(&m, 0, sizeof(m));
	m.msrs.nmsrs = NMSRS;
	m.msrs.entries[0].index = MSR_IA32_MISC_ENABLE;
	m.msrs.entries[0].data = MISC_ENABLE_FAST_STRING | MISC_ENABLE_PERF_MON |
				 MISC_ENABLE_BTS_UNAVAIL | MISC_ENABLE_PEBS_UNAVAIL;
	int n = ioctl(fd, KVM_SET_MSRS, &m.msrs);
	return n < 0 ? -errno : n == NMSRS ? 0 : -EINVAL;
}

/* The BSP starts at the reset vector F000:FFF0 with the CS base at FFFF0000 (KVM's reset
 * state, made explicit); EDX holds the processor signature as after a hardware reset. */
static int set_reset_vector(int fd, const struct kvm_cpuid2 *cpuid)
{
	struct kvm_sregs sregs;
	struct kvm_regs regs;
	if (ioctl(fd, KVM_GET_SREGS, &sregs) < 0 || ioctl(fd, KVM_GET_REGS, &regs) < 0)
		return -errno;
	sregs.cs.selector = 0xF000;
	sregs.cs.base = 0xFFFF0000;
	regs.rip = 0xFFF0;
	regs.rflags = 0x2;
	for (unsigned i = 0; i < cpuid->nent; i++)
		if (cpuid->entries[i].function == 1)
			regs.rdx = cpuid->entries[i].eax;
	if (ioctl(fd, KVM_SET_SREGS, &sregs) < 0 || ioctl(fd, KVM_SET_REGS, &regs) < 0)
		return -errno;
	return 0;
}

int vcpu_create(struct vm *vm, unsigned index, char *err, size_t err_size)
{
	struct vcpu *v = &vm->vcpus[index];
	*v = (struct vcpu){ .vm = vm, .index = index, .fd = -1 };
	v->fd = ioctl(vm->vm_fd, KVM_CREATE_VCPU, (unsigned long)index);
	if (v->fd < 0)
		return vdisk_errorf(err, err_size, -errno, "KVM_CREATE_VCPU %u: %s", index,
				    strerror(errno));
	void *run = mmap(NULL, vm->run_size, PROT_READ | PROT_WRITE, MAP_SHARED, v->fd, 0);
	if (run == MAP_FAILED)
		return vdisk_errorf(err, err_size, -errno, "mapping vCPU %u's kvm_run: %s", index,
				    strerror(errno));
	v->run = run;
	if (index == 0 && vm->synic != HYPERV_SYNIC_OFF)
		hvkvm_tsc_rate(vm, v->fd);
	int ret = cpuid_set_vcpu(v->fd, vm->cpuid, index, vm->cfg.cpus,
				 vm->synic != HYPERV_SYNIC_OFF ? vm->hv_cpuid : NULL);
	if (ret)
		return vdisk_errorf(err, err_size, ret, "KVM_SET_CPUID2 on vCPU %u: %s", index,
				    strerror(-ret));
	ret = hvkvm_setup_vcpu(v);
	if (ret)
		return vdisk_errorf(err, err_size, ret, "enabling the SynIC on vCPU %u: %s", index,
				    strerror(-ret));
	ret = set_reset_msrs(v->fd);
	if (ret)
		return vdisk_errorf(err, err_size, ret, "KVM_SET_MSRS on vCPU %u: %s", index,
				    strerror(-ret));
	/* APs stay in KVM's wait-for-SIPI state (in-kernel LAPIC) until the BSP starts them. */
	if (index == 0)
		ret = set_reset_vector(v->fd, vm->cpuid);
	if (ret)
		return vdisk_errorf(err, err_size, ret, "setting the reset vector: %s",
				    strerror(-ret));
	return 0;
}

void vcpu_destroy(struct vcpu *v)
{
	if (v->run)
		munmap(v->run, v->vm->run_size);
	if (v->fd >= 0)
		close(v->fd);
	v->run = NULL;
	v->fd = -1;
}

/* Makes a KVM_RUN in progress (or about to start) return promptly with EINTR. The order
 * matters: the caller set the request flag first, the vCPU clears immediate_exit before
 * it looks at the flags again. */
void vcpu_kick(struct vcpu *v)
{
	__atomic_store_n(&v->run->immediate_exit, 1, __ATOMIC_SEQ_CST);
	pthread_kill(v->thread, VM_KICK_SIGNAL);
}

static void count(uint64_t *counter)
{
	__atomic_add_fetch(counter, 1, __ATOMIC_RELAXED);
}

/* ---- exits ---- */

static void handle_io(struct vcpu *v)
{
	struct kvm_run *run = v->run;
	unsigned size = run->io.size;
	uint64_t bytes = (uint64_t)size * run->io.count;
	if ((size != 1 && size != 2 && size != 4) || run->io.data_offset > v->vm->run_size ||
	    bytes > v->vm->run_size - run->io.data_offset) {
		vm_stop_error(v->vm, "vCPU %u: malformed I/O exit (port 0x%x size %u count %u)",
			      v->index, run->io.port, size, run->io.count);
		return;
	}
	uint8_t *data = (uint8_t *)run + run->io.data_offset;
	for (uint32_t i = 0; i < run->io.count; i++, data += size) {
		uint64_t value = 0;
		if (run->io.direction == KVM_EXIT_IO_OUT) {
			memcpy(&value, data, size);
			dev_bus_write(&v->vm->bus, DEV_PIO, run->io.port, size, value);
		} else {
			value = dev_bus_read(&v->vm->bus, DEV_PIO, run->io.port, size);
			memcpy(data, &value, size);
		}
	}
}

static void handle_mmio(struct vcpu *v)
{
	struct kvm_run *run = v->run;
	unsigned len = run->mmio.len > 8 ? 8 : run->mmio.len;
	uint64_t gpa = run->mmio.phys_addr;
	if (memory_handle_mmio(v->vm, gpa, run->mmio.data, len, run->mmio.is_write))
		return;
	uint64_t value = 0;
	if (run->mmio.is_write) {
		memcpy(&value, run->mmio.data, len);
		dev_bus_write(&v->vm->bus, DEV_MMIO, gpa, len, value);
	} else {
		value = dev_bus_read(&v->vm->bus, DEV_MMIO, gpa, len);
		memcpy(run->mmio.data, &value, len);
	}
}

/* "CS:IP f000:fff0 (linear ...) RSP ... RAX ... CR0 ..." for error messages. */
static void describe_regs(struct vcpu *v, char *buf, size_t size)
{
	struct kvm_regs r;
	struct kvm_sregs s;
	if (ioctl(v->fd, KVM_GET_REGS, &r) < 0 || ioctl(v->fd, KVM_GET_SREGS, &s) < 0) {
		snprintf(buf, size, "registers unavailable: %s", strerror(errno));
		return;
	}
	snprintf(buf, size, "CS:IP %04x:%llx (linear 0x%llx) RSP 0x%llx RAX 0x%llx CR0 0x%llx",
		 s.cs.selector, (unsigned long long)r.rip, (unsigned long long)(s.cs.base + r.rip),
		 (unsigned long long)r.rsp, (unsigned long long)r.rax, (unsigned long long)s.cr0);
}

static const char *suberror_name(uint32_t suberror)
{
	switch (suberror) {
	case KVM_INTERNAL_ERROR_EMULATION:
		return "emulation failure";
	case KVM_INTERNAL_ERROR_SIMUL_EX:
		return "exception during exception delivery";
	case KVM_INTERNAL_ERROR_DELIVERY_EV:
		return "exit during event delivery";
	case KVM_INTERNAL_ERROR_UNEXPECTED_EXIT_REASON:
		return "unexpected exit reason";
	default:
		return "unknown";
	}
}

static void report_internal_error(struct vcpu *v)
{
	struct kvm_run *run = v->run;
	char regs[160];
	describe_regs(v, regs, sizeof(regs));
	unsigned long long d0 = run->internal.ndata > 0 ? run->internal.data[0] : 0;
	vm_stop_error(v->vm, "vCPU %u: KVM internal error, suberror %u (%s), data[0] 0x%llx; %s",
		      v->index, run->internal.suberror, suberror_name(run->internal.suberror), d0,
		      regs);
}

/* The CPU shut down: the machine resets. Where it was is worth telling (a guest that
 * crashes this way prints nothing itself), when KVM kept it: on AMD, KVM has already put
 * the vCPU in its INIT state (the VMCB is undefined after a shutdown). */
static void report_triple_fault(struct vcpu *v)
{
	char regs[160], cause[200];
	describe_regs(v, regs, sizeof(regs));
	if (strstr(regs, "CS:IP f000:fff0 "))
		snprintf(regs, sizeof(regs), "an address KVM did not keep");
	snprintf(cause, sizeof(cause), "triple fault on vCPU %u at %s", v->index, regs);
	vm_request_reset(v->vm, cause);
}

static void report_failed_entry(struct vcpu *v)
{
	char regs[160];
	describe_regs(v, regs, sizeof(regs));
	vm_stop_error(v->vm, "vCPU %u: KVM could not enter the guest, reason 0x%llx; %s", v->index,
		      (unsigned long long)v->run->fail_entry.hardware_entry_failure_reason, regs);
}

static void handle_system_event(struct vcpu *v)
{
	switch (v->run->system_event.type) {
	case KVM_SYSTEM_EVENT_SHUTDOWN:
		vm_request_stop(v->vm, VM_STOP_POWEROFF, 0);
		break;
	case KVM_SYSTEM_EVENT_RESET:
		vm_request_reset(v->vm, "system reset event");
		break;
	default:
		vm_stop_error(v->vm, "vCPU %u: system event %u", v->index,
			      v->run->system_event.type);
		break;
	}
}

/* Exits that end the run request a stop or reset, which parks this vCPU before it would
 * enter the guest again. */
static void handle_exit(struct vcpu *v)
{
	struct vm *vm = v->vm;
	count(&vm->stats.exits);
	switch (v->run->exit_reason) {
	case KVM_EXIT_IO:
		count(&vm->stats.io_exits);
		if (!hvkvm_handle_io(v))
			handle_io(v);
		break;
	case KVM_EXIT_X86_RDMSR:
	case KVM_EXIT_X86_WRMSR:
		hvkvm_handle_msr(v);
		break;
	case KVM_EXIT_HYPERV:
		hvkvm_handle_hyperv(v);
		break;
	case KVM_EXIT_MMIO:
		count(&vm->stats.mmio_exits);
		handle_mmio(v);
		break;
	case KVM_EXIT_HLT: /* only without an in-kernel LAPIC; nothing to wait for here */
		count(&vm->stats.halts);
		break;
	case KVM_EXIT_INTR:
		break;
	case KVM_EXIT_SHUTDOWN: /* triple fault: the CPU resets the machine */
		report_triple_fault(v);
		break;
	case KVM_EXIT_SYSTEM_EVENT:
		handle_system_event(v);
		break;
	case KVM_EXIT_INTERNAL_ERROR:
		report_internal_error(v);
		break;
	case KVM_EXIT_FAIL_ENTRY:
		report_failed_entry(v);
		break;
	default: {
		char regs[160];
		describe_regs(v, regs, sizeof(regs));
		vm_stop_error(vm, "vCPU %u: unexpected KVM exit %u; %s", v->index,
			      v->run->exit_reason, regs);
		break;
	}
	}
}

/* Parks while the VM is paused or a stop/reset is pending; false when the thread must end. */
static bool wait_until_runnable(struct vcpu *v)
{
	struct vm *vm = v->vm;
	pthread_mutex_lock(&vm->lock);
	while (!vm->vcpus_exit && (vm->paused || vm->stop_pending || vm->reset_pending)) {
		vm->active--;
		pthread_cond_broadcast(&vm->cond);
		pthread_cond_wait(&vm->cond, &vm->lock);
		vm->active++;
	}
	bool run = !vm->vcpus_exit;
	if (!run) {
		vm->active--;
		pthread_cond_broadcast(&vm->cond);
	}
	pthread_mutex_unlock(&vm->lock);
	return run;
}

void *vcpu_thread(void *arg)
{
	struct vcpu *v = arg;
	struct vm *vm = v->vm;
	current_vcpu = v;
	char name[16];
	snprintf(name, sizeof(name), "vcpu%u", v->index);
	pthread_setname_np(pthread_self(), name); /* for ps -L, top -H and /proc/PID/task */
	sigset_t set;
	sigemptyset(&set);
	sigaddset(&set, VM_KICK_SIGNAL);
	pthread_sigmask(SIG_UNBLOCK, &set, NULL);
	for (;;) {
		if (__atomic_load_n(&vm->attention, __ATOMIC_SEQ_CST) && !wait_until_runnable(v))
			break;
		if (ioctl(v->fd, KVM_RUN, 0) < 0) {
			int e = errno;
			if (e == EINTR || e == EAGAIN) {
				__atomic_store_n(&v->run->immediate_exit, 0, __ATOMIC_SEQ_CST);
				continue;
			}
			vm_stop_error(vm, "vCPU %u: KVM_RUN failed: %s", v->index, strerror(e));
			/* the stop request parks this thread until the VM is torn down */
			continue;
		}
		handle_exit(v);
	}
	return NULL;
}
