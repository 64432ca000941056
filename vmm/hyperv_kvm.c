/* The Hyper-V interface on KVM: choosing the SynIC path, and the exits and ioctls of each.
 *
 * User space (any KVM with the MSR filter): every MSR in 0x40000000-0x400001FF is denied
 * to KVM by KVM_X86_SET_MSR_FILTER, so the guest's accesses exit as KVM_EXIT_X86_RDMSR/
 * WRMSR and hyperv.c answers them (#GP through msr.error). The hypercall page hyperv.c
 * writes ends in an `out` to GEN1_HV_HCALL_PORT; that exit is decoded here from the
 * registers (RCX control, R11 the saved RDX, R8 output) when it comes from CPL 0 in long
 * mode inside the enabled page. A raised SINT is an MSI with its vector to the VP's LAPIC.
 *
 * In kernel (KVM_CAP_HYPERV_SYNIC2, written for the nested rig): SYNIC2 on each vCPU, KVM
 * handles the MSRs and the hypercall page; KVM_EXIT_HYPERV reports SynIC page changes and
 * HvPostMessage (and HvSignalEvent for ids without an eventfd); registered doorbells are
 * KVM_HYPERV_EVENTFDs. A SINT is raised through an irqfd on a KVM_IRQ_ROUTING_HV_SINT
 * route, created on first use; its resamplefd fires when the guest acknowledges the SINT
 * (EOM or EOI), which stands for the EOM exit KVM does not give.
 */
#include "vm_internal.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/ioctl.h>
#include <unistd.h>

#include "errmsg.h"
#include "gen1_layout.h"
#include "loop.h"

#define EFER_LMA       (1ull << 10)
#define UD_VECTOR      6
#define MSI_ADDRESS    0xFEE00000u
#define MSI_DEST_SHIFT 12
#define SINT_GSI_BASE  VM_NR_GSI /* the routes of the kernel path follow the PC's GSIs */

/* One SINT of one VP on the kernel path. */
struct sint_route {
	struct vm *vm;
	unsigned vp, sint;
	bool live; /* has its eventfds, route and loop watch */
	int fd, resample_fd;
};

struct hv_kvm {
	pthread_mutex_t lock; /* routes */
	struct event_loop *loop;
	struct sint_route routes[HYPERV_MAX_VPS][HYPERV_SINT_COUNT];
};

/* ---- choosing the path ---- */

static bool has_caps(struct vm *vm, const int *caps, unsigned n)
{
	for (unsigned i = 0; i < n; i++)
		if (ioctl(vm->kvm_fd, KVM_CHECK_EXTENSION, caps[i]) <= 0)
			return false;
	return true;
}

static const int kernel_caps[] = { KVM_CAP_HYPERV, KVM_CAP_HYPERV_SYNIC2, KVM_CAP_HYPERV_EVENTFD,
				   KVM_CAP_IRQFD, KVM_CAP_IRQFD_RESAMPLE };
static const int user_caps[] = { KVM_CAP_X86_USER_SPACE_MSR, KVM_CAP_X86_MSR_FILTER,
				 KVM_CAP_SIGNAL_MSI };
#define NCAPS(a) (sizeof(a) / sizeof((a)[0]))

static int resolve_mode(struct vm *vm, char *err, size_t err_size)
{
	bool kernel = has_caps(vm, kernel_caps, NCAPS(kernel_caps));
	bool user = has_caps(vm, user_caps, NCAPS(user_caps));
	switch (vm->cfg.synic) {
	case HYPERV_SYNIC_AUTO:
		vm->synic = kernel ? HYPERV_SYNIC_KERNEL : HYPERV_SYNIC_USER;
		if (kernel || user)
			return 0;
		return vdisk_errorf(
			err, err_size, -ENOTSUP,
			"this KVM has neither an in-kernel SynIC (KVM_CAP_HYPERV_SYNIC2) "
			"nor the MSR filter a user-space SynIC needs");
	case HYPERV_SYNIC_KERNEL:
		vm->synic = HYPERV_SYNIC_KERNEL;
		if (kernel)
			return 0;
		return vdisk_errorf(err, err_size, -ENOTSUP,
				    "this KVM has no in-kernel SynIC (KVM_CAP_HYPERV_SYNIC2, "
				    "HYPERV_EVENTFD, IRQFD_RESAMPLE); use --synic user");
	case HYPERV_SYNIC_USER:
		vm->synic = HYPERV_SYNIC_USER;
		if (user)
			return 0;
		return vdisk_errorf(err, err_size, -ENOTSUP,
				    "this KVM lacks KVM_CAP_X86_USER_SPACE_MSR, X86_MSR_FILTER or "
				    "SIGNAL_MSI, which the user-space SynIC needs");
	default:
		vm->synic = HYPERV_SYNIC_OFF;
		return 0;
	}
}

/* ---- raising a SINT ---- */

static void raise_msi(struct vm *vm, unsigned vp, uint8_t vector)
{
	/* fixed delivery, edge, physical destination = the VP's APIC ID (its index) */
	struct kvm_msi msi = { .address_lo = MSI_ADDRESS | vp << MSI_DEST_SHIFT, .data = vector };
	pthread_rwlock_rdlock(&vm->vm_fd_lock);
	ioctl(vm->vm_fd, KVM_SIGNAL_MSI, &msi);
	pthread_rwlock_unlock(&vm->vm_fd_lock);
}

static void route_acked(void *opaque)
{
	struct sint_route *r = opaque;
	uint64_t count;
	if (read(r->resample_fd, &count, sizeof(count)) == sizeof(count))
		hyperv_synic_eom(r->vm->hv, r->vp);
}

static unsigned route_gsi(const struct sint_route *r)
{
	return SINT_GSI_BASE + r->vp * HYPERV_SINT_COUNT + r->sint;
}

/* Attaches a live route's eventfds to the current vm_fd. */
static int attach_irqfd(struct vm *vm, const struct sint_route *r)
{
	struct kvm_irqfd irqfd = { .fd = (uint32_t)r->fd,
				   .gsi = route_gsi(r),
				   .flags = KVM_IRQFD_FLAG_RESAMPLE,
				   .resamplefd = (uint32_t)r->resample_fd };
	return ioctl(vm->vm_fd, KVM_IRQFD, &irqfd) < 0 ? -errno : 0;
}

/* With hvk->lock and vm_fd_lock (read) held: the route's eventfds, GSI route and irqfd. */
static int make_route_live(struct vm *vm, struct sint_route *r)
{
	r->fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	r->resample_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	int ret = r->fd < 0 || r->resample_fd < 0 ? -errno : 0;
	if (!ret) {
		r->live = true;
		ret = vm_set_gsi_routing(vm);
	}
	if (!ret)
		ret = attach_irqfd(vm, r);
	if (!ret)
		ret = event_loop_add_fd(vm->hvk->loop, r->resample_fd, route_acked, r);
	if (ret) {
		r->live = false;
		if (r->fd >= 0)
			close(r->fd);
		if (r->resample_fd >= 0)
			close(r->resample_fd);
		r->fd = r->resample_fd = -1;
	}
	return ret;
}

static void raise_kernel_sint(struct vm *vm, unsigned vp, unsigned sint)
{
	struct hv_kvm *hvk = vm->hvk;
	struct sint_route *r = &hvk->routes[vp][sint];
	pthread_rwlock_rdlock(&vm->vm_fd_lock);
	pthread_mutex_lock(&hvk->lock);
	int ret = r->live ? 0 : make_route_live(vm, r);
	pthread_mutex_unlock(&hvk->lock);
	pthread_rwlock_unlock(&vm->vm_fd_lock);
	uint64_t one = 1;
	if (!ret && write(r->fd, &one, sizeof(one)) != sizeof(one))
		ret = -errno;
	if (ret && ret != -EAGAIN) /* EAGAIN: a full counter is raised already */
		vm_stop_error(vm, "cannot raise SINT %u of VP %u: %s", sint, vp, strerror(-ret));
}

static void raise_sint(void *opaque, unsigned vp, unsigned sint, uint8_t vector)
{
	struct vm *vm = opaque;
	if (vm->synic == HYPERV_SYNIC_KERNEL)
		raise_kernel_sint(vm, vp, sint);
	else
		raise_msi(vm, vp, vector);
}

unsigned hvkvm_sint_routes(struct vm *vm, struct kvm_irq_routing_entry *e, unsigned max)
{
	if (!vm->hvk)
		return 0;
	unsigned n = 0;
	for (unsigned vp = 0; vp < vm->cfg.cpus; vp++) {
		for (unsigned sint = 0; sint < HYPERV_SINT_COUNT && n < max; sint++) {
			const struct sint_route *r = &vm->hvk->routes[vp][sint];
			if (!r->live)
				continue;
			e[n] = (struct kvm_irq_routing_entry){ .gsi = route_gsi(r),
							       .type = KVM_IRQ_ROUTING_HV_SINT };
			e[n].u.hv_sint.vcpu = vp;
			e[n].u.hv_sint.sint = sint;
			n++;
		}
	}
	return n;
}

/* ---- life cycle ---- */

static int create_kernel_state(struct vm *vm)
{
	struct hv_kvm *hvk = calloc(1, sizeof(*hvk));
	if (!hvk)
		return -ENOMEM;
	pthread_mutex_init(&hvk->lock, NULL);
	for (unsigned vp = 0; vp < HYPERV_MAX_VPS; vp++)
		for (unsigned sint = 0; sint < HYPERV_SINT_COUNT; sint++)
			hvk->routes[vp][sint] = (struct sint_route){
				.vm = vm, .vp = vp, .sint = sint, .fd = -1, .resample_fd = -1
			};
	vm->hvk = hvk;
	int ret = event_loop_create(&hvk->loop);
	if (!ret)
		ret = event_loop_start(hvk->loop);
	return ret;
}

void hvkvm_tsc_rate(struct vm *vm, int vcpu_fd)
{
	int khz = ioctl(vcpu_fd, KVM_GET_TSC_KHZ, 0);
	if (!vm->hv || khz <= 0)
		return; /* no rate: the guest calibrates the TSC itself */
	hyperv_cpuid_leaves(vm->cfg.cpus, true, true, vm->hv_cpuid);
	hyperv_set_tsc_hz(vm->hv, (uint64_t)khz * 1000);
}

int hvkvm_create(struct vm *vm, char *err, size_t err_size)
{
	int ret = resolve_mode(vm, err, err_size);
	if (ret || vm->synic == HYPERV_SYNIC_OFF)
		return ret;
	/* KVM runs the guest's TSC at a constant rate whatever the host's is, and Linux on
	 * Hyper-V without TSC_INVARIANT marks the TSC unstable (its boot then hung in the
	 * nested rig): the TSC is always offered as invariant; its rate is added with the
	 * first vCPU (hvkvm_tsc_rate). */
	hyperv_cpuid_leaves(vm->cfg.cpus, true, false, vm->hv_cpuid);
	struct hyperv_config hc = { .mem = &vm->mem,
				    .nvps = vm->cfg.cpus,
				    .kernel_synic = vm->synic == HYPERV_SYNIC_KERNEL,
				    .tsc_invariant = true,
				    .irq = { .opaque = vm, .raise = raise_sint },
				    .hypercall_port = GEN1_HV_HCALL_PORT };
	if (vm->cfg.cpus > HYPERV_MAX_VPS)
		return vdisk_errorf(err, err_size, -EINVAL,
				    "the Hyper-V interface serves at most %u vCPUs",
				    HYPERV_MAX_VPS);
	ret = hyperv_create(&hc, &vm->hv);
	if (!ret && vm->synic == HYPERV_SYNIC_KERNEL)
		ret = create_kernel_state(vm);
	if (ret)
		return vdisk_errorf(err, err_size, ret, "creating the Hyper-V partition: %s",
				    strerror(-ret));
	return 0;
}

void hvkvm_destroy(struct vm *vm)
{
	struct hv_kvm *hvk = vm->hvk;
	if (hvk) {
		event_loop_destroy(hvk->loop);
		for (unsigned vp = 0; vp < HYPERV_MAX_VPS; vp++) {
			for (unsigned sint = 0; sint < HYPERV_SINT_COUNT; sint++) {
				struct sint_route *r = &hvk->routes[vp][sint];
				if (r->live) {
					close(r->fd);
					close(r->resample_fd);
				}
			}
		}
		pthread_mutex_destroy(&hvk->lock);
		free(hvk);
		vm->hvk = NULL;
	}
	hyperv_destroy(vm->hv);
	vm->hv = NULL;
}

/* Every Hyper-V MSR exits to the VMM: a zero bitmap denies the whole range to KVM. */
static int trap_hyperv_msrs(struct vm *vm)
{
	struct kvm_enable_cap cap = { .cap = KVM_CAP_X86_USER_SPACE_MSR,
				      .args = { KVM_MSR_EXIT_REASON_FILTER } };
	if (ioctl(vm->vm_fd, KVM_ENABLE_CAP, &cap) < 0)
		return -errno;
	static uint8_t deny[HYPERV_MSR_RANGE_COUNT / 8];
	struct kvm_msr_filter filter = { .flags = KVM_MSR_FILTER_DEFAULT_ALLOW };
	filter.ranges[0] =
		(struct kvm_msr_filter_range){ .flags = KVM_MSR_FILTER_READ | KVM_MSR_FILTER_WRITE,
					       .nmsrs = HYPERV_MSR_RANGE_COUNT,
					       .base = HYPERV_MSR_RANGE_BASE,
					       .bitmap = deny };
	return ioctl(vm->vm_fd, KVM_X86_SET_MSR_FILTER, &filter) < 0 ? -errno : 0;
}

static int assign_event_fd(struct vm *vm, uint32_t id, int fd, bool deassign)
{
	struct kvm_hyperv_eventfd e = { .conn_id = id,
					.fd = fd,
					.flags = deassign ? KVM_HYPERV_EVENTFD_DEASSIGN : 0 };
	return ioctl(vm->vm_fd, KVM_HYPERV_EVENTFD, &e) < 0 ? -errno : 0;
}

/* A new vm_fd (power-on or reset) has none of the kernel path's fds: attach them again.
 * The routes themselves came with vm_set_gsi_routing. */
static int reattach_kernel_fds(struct vm *vm)
{
	uint32_t ids[HYPERV_MAX_EVENT_FDS];
	int fds[HYPERV_MAX_EVENT_FDS];
	unsigned n = hyperv_event_fds(vm->hv, ids, fds, HYPERV_MAX_EVENT_FDS);
	int ret = 0;
	for (unsigned i = 0; i < n && !ret; i++)
		ret = assign_event_fd(vm, ids[i], fds[i], false);
	pthread_mutex_lock(&vm->hvk->lock);
	for (unsigned vp = 0; vp < vm->cfg.cpus && !ret; vp++)
		for (unsigned sint = 0; sint < HYPERV_SINT_COUNT && !ret; sint++)
			if (vm->hvk->routes[vp][sint].live)
				ret = attach_irqfd(vm, &vm->hvk->routes[vp][sint]);
	pthread_mutex_unlock(&vm->hvk->lock);
	return ret;
}

/* An MSR KVM does not know exits to the VMM instead of faulting: the Hyper-V MSRs an older
 * KVM lacks (TSC_INVARIANT_CONTROL, which Linux writes when the TSC is offered as
 * invariant) are then answered by hyperv.c; any other still faults there. Without the
 * capability the guest gets KVM's #GP, which Linux reports and survives. */
static void trap_unknown_msrs(struct vm *vm)
{
	struct kvm_enable_cap cap = { .cap = KVM_CAP_X86_USER_SPACE_MSR,
				      .args = { KVM_MSR_EXIT_REASON_UNKNOWN } };
	ioctl(vm->vm_fd, KVM_ENABLE_CAP, &cap);
}

int hvkvm_setup_machine(struct vm *vm)
{
	if (vm->synic == HYPERV_SYNIC_USER)
		return trap_hyperv_msrs(vm);
	if (vm->synic == HYPERV_SYNIC_KERNEL) {
		trap_unknown_msrs(vm);
		return reattach_kernel_fds(vm);
	}
	return 0;
}

int hvkvm_setup_vcpu(struct vcpu *v)
{
	if (v->vm->synic != HYPERV_SYNIC_KERNEL)
		return 0;
	struct kvm_enable_cap cap = { .cap = KVM_CAP_HYPERV_SYNIC2 };
	return ioctl(v->fd, KVM_ENABLE_CAP, &cap) < 0 ? -errno : 0;
}

int vm_hyperv_set_event_fd(struct vm *vm, uint32_t connection_id, int fd)
{
	if (!vm->hv)
		return -ENODEV;
	int old = -1;
	if (fd < 0) {
		uint32_t ids[HYPERV_MAX_EVENT_FDS];
		int fds[HYPERV_MAX_EVENT_FDS];
		unsigned n = hyperv_event_fds(vm->hv, ids, fds, HYPERV_MAX_EVENT_FDS);
		for (unsigned i = 0; i < n; i++)
			if (ids[i] == connection_id)
				old = fds[i];
	}
	int ret = hyperv_set_event_fd(vm->hv, connection_id, fd);
	if (ret || vm->synic != HYPERV_SYNIC_KERNEL)
		return ret;
	pthread_rwlock_rdlock(&vm->vm_fd_lock);
	ret = assign_event_fd(vm, connection_id, fd < 0 ? old : fd, fd < 0);
	pthread_rwlock_unlock(&vm->vm_fd_lock);
	if (ret && fd >= 0)
		hyperv_set_event_fd(vm->hv, connection_id, -1);
	return ret;
}

/* ---- exits ---- */

void hvkvm_handle_msr(struct vcpu *v)
{
	struct kvm_run *run = v->run;
	struct hyperv *hv = v->vm->hv;
	int ret = -EINVAL;
	uint64_t value = 0;
	if (hv && run->exit_reason == KVM_EXIT_X86_RDMSR) {
		ret = hyperv_msr_read(hv, v->index, run->msr.index, &value);
		run->msr.data = value;
	} else if (hv)
		ret = hyperv_msr_write(hv, v->index, run->msr.index, run->msr.data);
	run->msr.error = ret ? 1 : 0; /* 1: KVM raises #GP */
}

static int inject_ud(struct vcpu *v)
{
	struct kvm_vcpu_events ev;
	if (ioctl(v->fd, KVM_GET_VCPU_EVENTS, &ev) < 0)
		return -errno;
	ev.exception.injected = 1;
	ev.exception.nr = UD_VECTOR;
	ev.exception.has_error_code = 0;
	return ioctl(v->fd, KVM_SET_VCPU_EVENTS, &ev) < 0 ? -errno : 0;
}

/* Whether the code at rip lies in the enabled hypercall page. */
static bool in_hypercall_page(struct vcpu *v, uint64_t rip)
{
	uint64_t page;
	if (!hyperv_hypercall_page(v->vm->hv, &page))
		return false;
	struct kvm_translation t = { .linear_address = rip };
	if (ioctl(v->fd, KVM_TRANSLATE, &t) < 0 || !t.valid)
		return false;
	return (t.physical_address & ~(uint64_t)(HYPERV_PAGE_SIZE - 1)) == page;
}

bool hvkvm_handle_io(struct vcpu *v)
{
	struct kvm_run *run = v->run;
	if (v->vm->synic != HYPERV_SYNIC_USER || run->io.port != GEN1_HV_HCALL_PORT ||
	    run->io.direction != KVM_EXIT_IO_OUT || run->io.count != 1)
		return false;
	struct kvm_regs r;
	struct kvm_sregs s;
	if (ioctl(v->fd, KVM_GET_REGS, &r) < 0 || ioctl(v->fd, KVM_GET_SREGS, &s) < 0 ||
	    !in_hypercall_page(v, r.rip))
		return false; /* not a hypercall: an ordinary port write that reaches nothing */
	int ret;
	if (!(s.efer & EFER_LMA) || !s.cs.l || (s.cs.selector & 3)) {
		ret = inject_ud(v); /* TLFS: hypercalls only from CPL 0 (64-bit page code) */
	} else {
		r.rax = hyperv_hypercall(v->vm->hv, v->index, r.rcx, r.r11, r.r8);
		ret = ioctl(v->fd, KVM_SET_REGS, &r) < 0 ? -errno : 0;
	}
	if (ret)
		vm_stop_error(v->vm, "vCPU %u: completing a hypercall: %s", v->index,
			      strerror(-ret));
	return true;
}

void hvkvm_handle_hyperv(struct vcpu *v)
{
	struct kvm_hyperv_exit *e = &v->run->hyperv;
	struct hyperv *hv = v->vm->hv;
	if (!hv) {
		vm_stop_error(v->vm, "vCPU %u: Hyper-V exit without the Hyper-V interface",
			      v->index);
		return;
	}
	if (e->type == KVM_EXIT_HYPERV_SYNIC) {
		hyperv_synic_set_pages(hv, v->index, e->u.synic.control, e->u.synic.evt_page,
				       e->u.synic.msg_page);
	} else if (e->type == KVM_EXIT_HYPERV_HCALL) {
		uint64_t control = e->u.hcall.input;
		/* KVM read a slow HvSignalEvent's input already: params[0] is its value */
		if ((control & 0xFFFF) == HYPERV_HCALL_SIGNAL_EVENT)
			control |= HYPERV_HCALL_FAST;
		e->u.hcall.result = hyperv_hypercall(hv, v->index, control, e->u.hcall.params[0],
						     e->u.hcall.params[1]);
	}
	/* KVM_EXIT_HYPERV_SYNDBG: no synthetic debugger is offered */
}
