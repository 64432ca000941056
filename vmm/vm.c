/* The VM object: the KVM VM with its irqchip, PIT and slots, and the control that starts,
 * pauses, resets and stops the vCPU threads.
 *
 * A guest reset re-creates the KVM VM object and its vCPUs (power-on state for CPUs,
 * irqchip and PIT in one step) while the RAM mapping, the device bus and the PAM logic stay.
 */
#include "vm_internal.h"

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <unistd.h>

#include "errmsg.h"
#include "gen1_layout.h"

struct required_cap {
	int cap;
	const char *name, *why;
};

static const struct required_cap required_caps[] = {
	{ KVM_CAP_USER_MEMORY, "KVM_CAP_USER_MEMORY", "guest RAM" },
	{ KVM_CAP_READONLY_MEM, "KVM_CAP_READONLY_MEM", "the firmware ROM and PAM" },
	{ KVM_CAP_SET_TSS_ADDR, "KVM_CAP_SET_TSS_ADDR", "real mode" },
	{ KVM_CAP_SET_IDENTITY_MAP_ADDR, "KVM_CAP_SET_IDENTITY_MAP_ADDR", "real mode" },
	{ KVM_CAP_IRQCHIP, "KVM_CAP_IRQCHIP", "the PIC, IOAPIC and LAPICs" },
	{ KVM_CAP_IRQ_ROUTING, "KVM_CAP_IRQ_ROUTING", "the PC interrupt routing" },
	{ KVM_CAP_PIT2, "KVM_CAP_PIT2", "the PIT" },
	{ KVM_CAP_EXT_CPUID, "KVM_CAP_EXT_CPUID", "CPUID" },
	{ KVM_CAP_IMMEDIATE_EXIT, "KVM_CAP_IMMEDIATE_EXIT", "pausing vCPUs" },
	{ KVM_CAP_MP_STATE, "KVM_CAP_MP_STATE", "starting APs with INIT/SIPI" },
};

static void kick_handler(int sig)
{
	(void)sig; /* only interrupts KVM_RUN */
}

static int open_kvm(struct vm *vm, char *err, size_t err_size)
{
	vm->kvm_fd = open("/dev/kvm", O_RDWR | O_CLOEXEC);
	if (vm->kvm_fd < 0)
		return vdisk_errorf(err, err_size, -errno,
				    "cannot open /dev/kvm: %s (is KVM available and may this user "
				    "use it?)",
				    strerror(errno));
	int version = ioctl(vm->kvm_fd, KVM_GET_API_VERSION, 0);
	if (version != KVM_API_VERSION)
		return vdisk_errorf(err, err_size, -ENOTSUP, "/dev/kvm speaks API %d, not %d",
				    version, KVM_API_VERSION);
	for (size_t i = 0; i < sizeof(required_caps) / sizeof(required_caps[0]); i++)
		if (ioctl(vm->kvm_fd, KVM_CHECK_EXTENSION, required_caps[i].cap) <= 0)
			return vdisk_errorf(err, err_size, -ENOTSUP,
					    "this KVM lacks %s, needed for %s",
					    required_caps[i].name, required_caps[i].why);
	int max_vcpus = ioctl(vm->kvm_fd, KVM_CHECK_EXTENSION, KVM_CAP_MAX_VCPUS);
	if (max_vcpus > 0 && vm->cfg.cpus > (unsigned)max_vcpus)
		return vdisk_errorf(err, err_size, -EINVAL, "%u vCPUs asked, this KVM allows %d",
				    vm->cfg.cpus, max_vcpus);
	int run_size = ioctl(vm->kvm_fd, KVM_GET_VCPU_MMAP_SIZE, 0);
	if (run_size < (int)sizeof(struct kvm_run))
		return vdisk_errorf(err, err_size, -ENOTSUP, "KVM_GET_VCPU_MMAP_SIZE: %d",
				    run_size);
	vm->run_size = (size_t)run_size;
	int ret = cpuid_get_supported(vm->kvm_fd, &vm->cpuid);
	if (ret)
		return vdisk_errorf(err, err_size, ret, "KVM_GET_SUPPORTED_CPUID: %s",
				    strerror(-ret));
	return 0;
}

/* ISA IRQ i (not 2, the cascade) on PIC pin i; IOAPIC pin i for GSI 1-23; GSI 0 (the PIT)
 * on IOAPIC pin 2, as the MADT's interrupt source override says. Then the Hyper-V SINT
 * routes of the kernel path, if any. */
int vm_set_gsi_routing(struct vm *vm)
{
	enum { MAX_ROUTES = 16 + VM_NR_GSI + HYPERV_MAX_VPS * HYPERV_SINT_COUNT };
	struct kvm_irq_routing *r = calloc(1, sizeof(*r) + MAX_ROUTES * sizeof(r->entries[0]));
	if (!r)
		return -ENOMEM;
	unsigned n = 0;
	for (unsigned gsi = 0; gsi < 16; gsi++) {
		if (gsi == 2)
			continue;
		r->entries[n].gsi = gsi;
		r->entries[n].type = KVM_IRQ_ROUTING_IRQCHIP;
		r->entries[n].u.irqchip.irqchip =
			gsi < 8 ? KVM_IRQCHIP_PIC_MASTER : KVM_IRQCHIP_PIC_SLAVE;
		r->entries[n].u.irqchip.pin = gsi % 8;
		n++;
	}
	for (unsigned gsi = 0; gsi < VM_NR_GSI; gsi++) {
		r->entries[n].gsi = gsi;
		r->entries[n].type = KVM_IRQ_ROUTING_IRQCHIP;
		r->entries[n].u.irqchip.irqchip = KVM_IRQCHIP_IOAPIC;
		r->entries[n].u.irqchip.pin = gsi == 0 ? 2 : gsi;
		n++;
	}
	n += hvkvm_sint_routes(vm, r->entries + n, MAX_ROUTES - n);
	r->nr = n;
	int ret = ioctl(vm->vm_fd, KVM_SET_GSI_ROUTING, r) < 0 ? -errno : 0;
	free(r);
	return ret;
}

static int ioctl_error(char *err, size_t err_size, const char *what)
{
	return vdisk_errorf(err, err_size, -errno, "%s: %s", what, strerror(errno));
}

/* The KVM VM object at power-on: platform pieces, memory slots, vCPUs. */
static int create_machine(struct vm *vm, char *err, size_t err_size)
{
	vm->vm_fd = ioctl(vm->kvm_fd, KVM_CREATE_VM, 0);
	if (vm->vm_fd < 0)
		return ioctl_error(err, err_size, "KVM_CREATE_VM");
	uint64_t identity = GEN1_KVM_IDENTITY_MAP;
	if (ioctl(vm->vm_fd, KVM_SET_IDENTITY_MAP_ADDR, &identity) < 0)
		return ioctl_error(err, err_size, "KVM_SET_IDENTITY_MAP_ADDR");
	if (ioctl(vm->vm_fd, KVM_SET_TSS_ADDR, (unsigned long)GEN1_KVM_TSS) < 0)
		return ioctl_error(err, err_size, "KVM_SET_TSS_ADDR");
	if (ioctl(vm->vm_fd, KVM_CREATE_IRQCHIP, 0) < 0)
		return ioctl_error(err, err_size, "KVM_CREATE_IRQCHIP");
	int ret = vm_set_gsi_routing(vm);
	if (ret)
		return vdisk_errorf(err, err_size, ret, "KVM_SET_GSI_ROUTING: %s", strerror(-ret));
	ret = hvkvm_setup_machine(vm);
	if (ret)
		return vdisk_errorf(err, err_size, ret, "setting up the Hyper-V interface: %s",
				    strerror(-ret));
	/* Without the dummy speaker port 0x61 bit 5 never toggles and SeaBIOS spins on it. */
	struct kvm_pit_config pit = { .flags = KVM_PIT_SPEAKER_DUMMY };
	if (ioctl(vm->vm_fd, KVM_CREATE_PIT2, &pit) < 0)
		return ioctl_error(err, err_size, "KVM_CREATE_PIT2");
	ret = memory_install_slots(vm);
	if (ret)
		return vdisk_errorf(err, err_size, ret, "KVM_SET_USER_MEMORY_REGION: %s",
				    strerror(-ret));
	for (unsigned i = 0; i < vm->cfg.cpus && !ret; i++)
		ret = vcpu_create(vm, i, err, err_size);
	return ret;
}

static void destroy_machine(struct vm *vm)
{
	for (unsigned i = 0; i < vm->cfg.cpus; i++)
		vcpu_destroy(&vm->vcpus[i]);
	if (vm->vm_fd >= 0)
		close(vm->vm_fd);
	vm->vm_fd = -1;
}

int vm_create(const struct vm_config *cfg, struct vm **out, char *err, size_t err_size)
{
	if (!cfg->cpus || cfg->cpus > VM_MAX_CPUS)
		return vdisk_errorf(err, err_size, -EINVAL, "%u vCPUs: must be 1 to %u", cfg->cpus,
				    VM_MAX_CPUS);
	struct vm *vm = calloc(1, sizeof(*vm));
	if (!vm)
		return vdisk_errorf(err, err_size, -ENOMEM, "out of memory");
	vm->cfg = *cfg;
	vm->kvm_fd = vm->vm_fd = -1;
	for (unsigned i = 0; i < VM_MAX_CPUS; i++)
		vm->vcpus[i].fd = -1;
	pthread_mutex_init(&vm->lock, NULL);
	pthread_cond_init(&vm->cond, NULL);
	pthread_rwlock_init(&vm->vm_fd_lock, NULL);
	pthread_mutex_init(&vm->pam_lock, NULL);
	dev_bus_init(&vm->bus);
	struct sigaction sa = { .sa_handler = kick_handler };
	sigemptyset(&sa.sa_mask);
	sigaction(VM_KICK_SIGNAL, &sa, NULL);
	int ret = memory_create(vm, err, err_size);
	if (!ret)
		ret = open_kvm(vm, err, err_size);
	if (!ret)
		ret = hvkvm_create(vm, err, err_size);
	if (!ret)
		ret = create_machine(vm, err, err_size);
	if (ret) {
		vm_destroy(vm);
		return ret;
	}
	*out = vm;
	return 0;
}

void vm_destroy(struct vm *vm)
{
	if (!vm)
		return;
	destroy_machine(vm);
	hvkvm_destroy(vm);
	memory_destroy(vm);
	if (vm->kvm_fd >= 0)
		close(vm->kvm_fd);
	free(vm->cpuid);
	dev_bus_destroy(&vm->bus);
	pthread_mutex_destroy(&vm->pam_lock);
	pthread_rwlock_destroy(&vm->vm_fd_lock);
	pthread_cond_destroy(&vm->cond);
	pthread_mutex_destroy(&vm->lock);
	free(vm);
}

struct dev_bus *vm_bus(struct vm *vm)
{
	return &vm->bus;
}

const struct guest_mem *vm_guest_mem(struct vm *vm)
{
	return &vm->mem;
}

struct hyperv *vm_hyperv(struct vm *vm)
{
	return vm->hv;
}

enum hyperv_synic_mode vm_synic_mode(struct vm *vm)
{
	return vm->synic;
}

/* ---- interrupts ---- */

static void set_gsi(void *opaque, unsigned gsi, bool level)
{
	struct vm *vm = opaque;
	pthread_rwlock_rdlock(&vm->vm_fd_lock);
	__atomic_store_n(&vm->gsi_level[gsi], level, __ATOMIC_RELAXED);
	struct kvm_irq_level irq = { .irq = gsi, .level = level };
	ioctl(vm->vm_fd, KVM_IRQ_LINE, &irq);
	pthread_rwlock_unlock(&vm->vm_fd_lock);
}

struct irq_line vm_gsi_line(struct vm *vm, unsigned gsi)
{
	if (gsi >= VM_NR_GSI)
		return (struct irq_line){ NULL, NULL, 0 };
	return (struct irq_line){ set_gsi, vm, gsi };
}

/* A fresh irqchip has every line low: lines devices still hold high are raised again. */
static void reassert_lines(struct vm *vm)
{
	for (unsigned gsi = 0; gsi < VM_NR_GSI; gsi++)
		if (__atomic_load_n(&vm->gsi_level[gsi], __ATOMIC_RELAXED))
			set_gsi(vm, gsi, true);
}

/* ---- control ---- */

void vm_update_attention(struct vm *vm)
{
	bool a = vm->paused || vm->stop_pending || vm->reset_pending || vm->vcpus_exit;
	__atomic_store_n(&vm->attention, a, __ATOMIC_SEQ_CST);
}

static void kick_all(struct vm *vm)
{
	for (unsigned i = 0; i < vm->cfg.cpus; i++)
		if (vm->vcpus[i].thread_live)
			vcpu_kick(&vm->vcpus[i]);
}

/* With vm->lock held: the VM's attention changed; wake the control thread and the parked
 * vCPUs, interrupt the running ones. */
static void signal_change(struct vm *vm)
{
	vm_update_attention(vm);
	pthread_cond_broadcast(&vm->cond);
	kick_all(vm);
}

static void request_stop(struct vm *vm, enum vm_stop_reason reason, unsigned value,
			 const char *message)
{
	pthread_mutex_lock(&vm->lock);
	if (!vm->stop_pending) {
		vm->stop_pending = true;
		vm->stop.reason = reason;
		vm->stop.test_exit_value = value;
		snprintf(vm->stop.message, sizeof(vm->stop.message), "%s", message);
		signal_change(vm);
	}
	pthread_mutex_unlock(&vm->lock);
}

void vm_request_stop(struct vm *vm, enum vm_stop_reason reason, unsigned test_exit_value)
{
	request_stop(vm, reason, test_exit_value, "");
}

void vm_stop_error(struct vm *vm, const char *fmt, ...)
{
	char message[sizeof(vm->stop.message)];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(message, sizeof(message), fmt, ap);
	va_end(ap);
	request_stop(vm, VM_STOP_ERROR, 0, message);
}

void vm_request_reset(struct vm *vm, const char *cause)
{
	pthread_mutex_lock(&vm->lock);
	if (!vm->stop_pending && !vm->reset_pending) {
		vm->reset_pending = true;
		snprintf(vm->reset_cause, sizeof(vm->reset_cause), "%s", cause);
		signal_change(vm);
	}
	pthread_mutex_unlock(&vm->lock);
}

int vm_pause(struct vm *vm)
{
	if (vcpu_is_current_thread())
		return -EDEADLK;
	pthread_mutex_lock(&vm->lock);
	vm->paused = true;
	signal_change(vm);
	while (vm->active)
		pthread_cond_wait(&vm->cond, &vm->lock);
	pthread_mutex_unlock(&vm->lock);
	return 0;
}

int vm_resume(struct vm *vm)
{
	pthread_mutex_lock(&vm->lock);
	vm->paused = false;
	vm_update_attention(vm);
	pthread_cond_broadcast(&vm->cond);
	pthread_mutex_unlock(&vm->lock);
	return 0;
}

bool vm_is_paused(struct vm *vm)
{
	pthread_mutex_lock(&vm->lock);
	bool paused = vm->paused;
	pthread_mutex_unlock(&vm->lock);
	return paused;
}

const char *vm_reset_cause(struct vm *vm)
{
	pthread_mutex_lock(&vm->lock);
	const char *cause = vm->reset_cause[0] ? vm->reset_cause : NULL;
	pthread_mutex_unlock(&vm->lock);
	return cause;
}

int vm_add_reset_hook(struct vm *vm, void (*fn)(void *opaque), void *opaque)
{
	if (!fn)
		return -EINVAL;
	pthread_mutex_lock(&vm->lock);
	int ret = -ENOSPC;
	if (vm->nhooks < VM_MAX_RESET_HOOKS) {
		vm->hooks[vm->nhooks++] = (struct reset_hook){ fn, opaque };
		ret = 0;
	}
	pthread_mutex_unlock(&vm->lock);
	return ret;
}

void vm_get_stats(struct vm *vm, struct vm_stats *out)
{
	out->exits = __atomic_load_n(&vm->stats.exits, __ATOMIC_RELAXED);
	out->io_exits = __atomic_load_n(&vm->stats.io_exits, __ATOMIC_RELAXED);
	out->mmio_exits = __atomic_load_n(&vm->stats.mmio_exits, __ATOMIC_RELAXED);
	out->halts = __atomic_load_n(&vm->stats.halts, __ATOMIC_RELAXED);
	out->resets = __atomic_load_n(&vm->stats.resets, __ATOMIC_RELAXED);
}

static int start_vcpus(struct vm *vm)
{
	int ret = 0;
	pthread_mutex_lock(&vm->lock);
	for (unsigned i = 0; i < vm->cfg.cpus && !ret; i++) {
		struct vcpu *v = &vm->vcpus[i];
		ret = -pthread_create(&v->thread, NULL, vcpu_thread, v);
		if (!ret) {
			v->thread_live = true;
			vm->active++;
		}
	}
	pthread_mutex_unlock(&vm->lock);
	return ret;
}

/* Ends every vCPU thread (they leave KVM_RUN and return) and waits for them. */
static void stop_vcpus(struct vm *vm)
{
	bool started[VM_MAX_CPUS];
	pthread_mutex_lock(&vm->lock);
	vm->vcpus_exit = true;
	signal_change(vm);
	for (unsigned i = 0; i < vm->cfg.cpus; i++) {
		started[i] = vm->vcpus[i].thread_live;
		vm->vcpus[i].thread_live = false;
	}
	pthread_mutex_unlock(&vm->lock);
	for (unsigned i = 0; i < vm->cfg.cpus; i++)
		if (started[i])
			pthread_join(vm->vcpus[i].thread, NULL);
	pthread_mutex_lock(&vm->lock);
	vm->vcpus_exit = false;
	vm_update_attention(vm);
	pthread_mutex_unlock(&vm->lock);
}

/* Warm reset with the vCPU threads stopped: RAM stays, everything else powers on. */
static int reset_machine(struct vm *vm, char *err, size_t err_size)
{
	pthread_rwlock_wrlock(&vm->vm_fd_lock);
	destroy_machine(vm);
	memory_reset_pam(vm);
	if (vm->hv)
		hyperv_reset(vm->hv);
	int ret = create_machine(vm, err, err_size);
	pthread_rwlock_unlock(&vm->vm_fd_lock);
	if (ret)
		return ret;
	for (unsigned i = 0; i < vm->nhooks; i++)
		vm->hooks[i].fn(vm->hooks[i].opaque);
	reassert_lines(vm);
	__atomic_add_fetch(&vm->stats.resets, 1, __ATOMIC_RELAXED);
	return 0;
}

/* With vm->lock held: true when a reset was requested and carried out (the vCPUs run
 * again), false when the VM must stop. */
static bool handle_reset_request(struct vm *vm)
{
	vm->reset_pending = false;
	if (vm->cfg.no_reboot) {
		vm->stop_pending = true;
		vm->stop = (struct vm_exit_status){ .reason = VM_STOP_RESET };
		vm_update_attention(vm);
		return false;
	}
	vm_update_attention(vm);
	pthread_mutex_unlock(&vm->lock);
	stop_vcpus(vm);
	char err[sizeof(vm->stop.message)];
	int ret = reset_machine(vm, err, sizeof(err));
	if (ret)
		request_stop(vm, VM_STOP_ERROR, 0, err);
	else
		ret = start_vcpus(vm);
	if (ret)
		request_stop(vm, VM_STOP_ERROR, 0, "cannot start the vCPU threads after a reset");
	pthread_mutex_lock(&vm->lock);
	return !ret;
}

int vm_run(struct vm *vm, struct vm_exit_status *status)
{
	pthread_mutex_lock(&vm->lock);
	if (vm->in_run) {
		pthread_mutex_unlock(&vm->lock);
		return -EBUSY;
	}
	vm->in_run = true;
	pthread_mutex_unlock(&vm->lock);
	int ret = start_vcpus(vm);
	pthread_mutex_lock(&vm->lock);
	while (!ret && !vm->stop_pending) {
		while (!vm->stop_pending && !vm->reset_pending)
			pthread_cond_wait(&vm->cond, &vm->lock);
		if (!vm->stop_pending && !handle_reset_request(vm))
			break;
	}
	*status = vm->stop;
	pthread_mutex_unlock(&vm->lock);
	stop_vcpus(vm);
	pthread_mutex_lock(&vm->lock);
	vm->stop_pending = vm->reset_pending = false;
	vm->stop = (struct vm_exit_status){ 0 };
	vm->in_run = false;
	vm_update_attention(vm);
	pthread_mutex_unlock(&vm->lock);
	return ret;
}
