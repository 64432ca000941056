/* kvm_probe: proves a /dev/kvm is usable by the VMM before the VMM exists.
 *
 * Prints the KVM API version and every capability the VMM relies on, then runs a tiny
 * real-mode guest that reads a byte from guest memory, stores it plus one back, writes it
 * to the test-exit port and halts; the host side checks the port exit, the value and the
 * stored byte. The nested rig runs it in L1; on the host it is the rig_kvm_probe test.
 *
 * Exit status: 0 everything works, 1 a required capability is missing or the guest run
 * failed, 77 there is no /dev/kvm to probe.
 */
#include <errno.h>
#include <fcntl.h>
#include <linux/kvm.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <unistd.h>

#include "gen1_layout.h"

#define EXIT_SKIP 77

struct cap {
	const char *name;
	int id;
	bool required;
};

/* What the generation 1 VMM uses (required) and what later work looks at (reported). */
static const struct cap caps[] = {
	{ "USER_MEMORY", KVM_CAP_USER_MEMORY, true },
	{ "IRQCHIP", KVM_CAP_IRQCHIP, true },
	{ "PIT2", KVM_CAP_PIT2, true },
	{ "PIT_STATE2", KVM_CAP_PIT_STATE2, false },
	{ "IRQ_ROUTING", KVM_CAP_IRQ_ROUTING, true },
	{ "IRQFD", KVM_CAP_IRQFD, true },
	{ "IOEVENTFD", KVM_CAP_IOEVENTFD, true },
	{ "EXT_CPUID", KVM_CAP_EXT_CPUID, true },
	{ "SET_TSS_ADDR", KVM_CAP_SET_TSS_ADDR, true },
	{ "SET_IDENTITY_MAP_ADDR", KVM_CAP_SET_IDENTITY_MAP_ADDR, true },
	{ "IMMEDIATE_EXIT", KVM_CAP_IMMEDIATE_EXIT, true },
	{ "TSC_DEADLINE_TIMER", KVM_CAP_TSC_DEADLINE_TIMER, false },
	{ "X86_USER_SPACE_MSR", KVM_CAP_X86_USER_SPACE_MSR, false },
	{ "X86_MSR_FILTER", KVM_CAP_X86_MSR_FILTER, false },
	{ "COALESCED_MMIO", KVM_CAP_COALESCED_MMIO, false },
	{ "COALESCED_PIO", KVM_CAP_COALESCED_PIO, false },
	{ "NR_VCPUS", KVM_CAP_NR_VCPUS, false },
	{ "MAX_VCPUS", KVM_CAP_MAX_VCPUS, false },
	{ "HYPERV", KVM_CAP_HYPERV, false },
	{ "HYPERV_SYNIC2", KVM_CAP_HYPERV_SYNIC2, false },
	{ "HYPERV_VP_INDEX", KVM_CAP_HYPERV_VP_INDEX, false },
};

/* Real mode at 0000:1000:
 *   mov dx, GEN1_TEST_EXIT_PORT; mov al, [DATA]; add al, 1; mov [DATA + 1], al;
 *   out dx, al; hlt */
#define GUEST_MEM_SIZE 0x10000u
#define GUEST_CODE     0x1000u
#define GUEST_DATA     0x2000u
#define GUEST_INPUT    0x41u

static const uint8_t guest_code[] = {
	0xba,
	GEN1_TEST_EXIT_PORT & 0xff,
	GEN1_TEST_EXIT_PORT >> 8, /* mov dx, port */
	0xa0,
	GUEST_DATA & 0xff,
	GUEST_DATA >> 8, /* mov al, [DATA] */
	0x04,
	0x01, /* add al, 1 */
	0xa2,
	(GUEST_DATA + 1) & 0xff,
	(GUEST_DATA + 1) >> 8, /* mov [DATA+1], al */
	0xee,		       /* out dx, al */
	0xf4,		       /* hlt */
};

static bool print_caps(int kvm)
{
	bool ok = true;

	for (size_t i = 0; i < sizeof(caps) / sizeof(caps[0]); i++) {
		int v = ioctl(kvm, KVM_CHECK_EXTENSION, caps[i].id);

		if (v < 0)
			v = 0;
		printf("kvm_probe: cap %s = %d%s\n", caps[i].name, v,
		       caps[i].required && v == 0 ? " (required: MISSING)" : "");
		if (caps[i].required && v == 0)
			ok = false;
	}
	return ok;
}

static int setup_vcpu_real_mode(int vcpu)
{
	struct kvm_sregs sregs;
	struct kvm_regs regs;

	if (ioctl(vcpu, KVM_GET_SREGS, &sregs) < 0)
		return -errno;
	sregs.cs.base = 0;
	sregs.cs.selector = 0;
	sregs.ds.base = 0;
	sregs.ds.selector = 0;
	if (ioctl(vcpu, KVM_SET_SREGS, &sregs) < 0)
		return -errno;
	memset(&regs, 0, sizeof(regs));
	regs.rip = GUEST_CODE;
	regs.rflags = 0x2;
	if (ioctl(vcpu, KVM_SET_REGS, &regs) < 0)
		return -errno;
	return 0;
}

/* Checks the two exits the guest must produce: the port write, then the halt. */
static bool check_guest_exits(int vcpu, struct kvm_run *run, const uint8_t *mem)
{
	uint8_t want = GUEST_INPUT + 1;

	if (ioctl(vcpu, KVM_RUN, 0) < 0) {
		printf("kvm_probe: KVM_RUN: %s\n", strerror(errno));
		return false;
	}
	if (run->exit_reason != KVM_EXIT_IO || run->io.direction != KVM_EXIT_IO_OUT ||
	    run->io.port != GEN1_TEST_EXIT_PORT || run->io.size != 1 || run->io.count != 1) {
		printf("kvm_probe: expected a 1-byte OUT to port 0x%x, got exit reason %u\n",
		       GEN1_TEST_EXIT_PORT, run->exit_reason);
		return false;
	}
	uint8_t got = ((const uint8_t *)run)[run->io.data_offset];
	if (got != want || mem[GUEST_DATA + 1] != want) {
		printf("kvm_probe: guest wrote 0x%02x to the port and 0x%02x to memory, want "
		       "0x%02x\n",
		       got, mem[GUEST_DATA + 1], want);
		return false;
	}
	if (ioctl(vcpu, KVM_RUN, 0) < 0 || run->exit_reason != KVM_EXIT_HLT) {
		printf("kvm_probe: expected the guest to halt, got exit reason %u\n",
		       run->exit_reason);
		return false;
	}
	return true;
}

/* Runs the real-mode guest in a fresh VM. */
static bool run_guest(int kvm)
{
	bool ok = false;
	int vm = -1, vcpu = -1, err;
	uint8_t *mem = MAP_FAILED;
	struct kvm_run *run = MAP_FAILED;
	struct kvm_userspace_memory_region region = { .slot = 0, .memory_size = GUEST_MEM_SIZE };
	int run_size = ioctl(kvm, KVM_GET_VCPU_MMAP_SIZE, 0);

	vm = ioctl(kvm, KVM_CREATE_VM, 0);
	if (vm < 0 || run_size <= 0) {
		printf("kvm_probe: KVM_CREATE_VM: %s\n", strerror(errno));
		goto out;
	}
	/* The same reservations the generation 1 platform makes; SVM ignores them. */
	if (ioctl(vm, KVM_SET_TSS_ADDR, (unsigned long)GEN1_KVM_TSS) < 0) {
		printf("kvm_probe: KVM_SET_TSS_ADDR: %s\n", strerror(errno));
		goto out;
	}
	mem = mmap(NULL, GUEST_MEM_SIZE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1,
		   0);
	if (mem == MAP_FAILED) {
		printf("kvm_probe: mmap guest memory: %s\n", strerror(errno));
		goto out;
	}
	memcpy(mem + GUEST_CODE, guest_code, sizeof(guest_code));
	mem[GUEST_DATA] = GUEST_INPUT;
	region.userspace_addr = (uintptr_t)mem;
	if (ioctl(vm, KVM_SET_USER_MEMORY_REGION, &region) < 0) {
		printf("kvm_probe: KVM_SET_USER_MEMORY_REGION: %s\n", strerror(errno));
		goto out;
	}
	vcpu = ioctl(vm, KVM_CREATE_VCPU, 0);
	if (vcpu < 0) {
		printf("kvm_probe: KVM_CREATE_VCPU: %s\n", strerror(errno));
		goto out;
	}
	run = mmap(NULL, (size_t)run_size, PROT_READ | PROT_WRITE, MAP_SHARED, vcpu, 0);
	if (run == MAP_FAILED) {
		printf("kvm_probe: mmap kvm_run: %s\n", strerror(errno));
		goto out;
	}
	err = setup_vcpu_real_mode(vcpu);
	if (err) {
		printf("kvm_probe: vCPU registers: %s\n", strerror(-err));
		goto out;
	}
	ok = check_guest_exits(vcpu, run, mem);
out:
	if (run != MAP_FAILED)
		munmap(run, (size_t)run_size);
	if (vcpu >= 0)
		close(vcpu);
	if (mem != MAP_FAILED)
		munmap(mem, GUEST_MEM_SIZE);
	if (vm >= 0)
		close(vm);
	return ok;
}

int main(void)
{
	setvbuf(stdout, NULL, _IOLBF, 0);
	int kvm = open("/dev/kvm", O_RDWR | O_CLOEXEC);
	if (kvm < 0) {
		int err = errno;
		printf("kvm_probe: cannot open /dev/kvm: %s\n", strerror(err));
		return err == ENOENT ? EXIT_SKIP : 1;
	}
	int api = ioctl(kvm, KVM_GET_API_VERSION, 0);
	printf("kvm_probe: api version %d\n", api);
	bool caps_ok = api == KVM_API_VERSION && print_caps(kvm);
	bool guest_ok = run_guest(kvm);
	printf("kvm_probe: real-mode guest %s\n",
	       guest_ok ? "ran: port write, memory and halt as expected" : "FAILED");
	close(kvm);
	printf("kvm_probe: %s\n", caps_ok && guest_ok ? "ok" : "FAILED");
	return caps_ok && guest_ok ? 0 : 1;
}
