/* `vmm run`: builds the generation 1 or 2 VM from a parsed configuration and runs it.
 *
 * Both generations share the chipset (gen1_layout.h). Generation 2 has no IDE function,
 * boots OVMF (its variable store mapped below the code, read-only: OVMF then keeps its
 * variables in RAM) and always has VMBus with SCSI controller 0.
 *
 * Threads: one per vCPU (vm.c), the event loop (disk queue completions: every IDE drive's
 * queue 0 belongs to it), the SCSI channel threads (run_scsi.c), the serial backend's
 * thread, the control server's thread, and the main thread, which waits in vm_run and
 * tears everything down afterwards. The drive list changes only on the control server's
 * thread (scsi-add, scsi-remove), which is stopped before anything else reads the list
 * once the VM has stopped.
 */
#include <errno.h>
#include <inttypes.h>
#include <jansson.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "arith.h"
#include "cli.h"
#include "cmos.h"
#include "control.h"
#include "fw_cfg.h"
#include "gen1_firmware.h"
#include "gen1_layout.h"
#include "i8042.h"
#include "ide.h"
#include "linux_boot.h"
#include "loop.h"
#include "misc_ports.h"
#include "piix.h"
#include "run_args.h"
#include "run_scsi.h"
#include "serial.h"
#include "storvsp.h"
#include "vdisk.h"
#include "vm.h"

#define BOOT_FAIL_WAIT_MS 5000 /* SeaBIOS's wait before it reboots when nothing boots */

struct run_drive {
	const struct vmm_drive *cfg; /* NULL: a free entry (its drive was removed) */
	struct vmm_drive hot;	     /* a drive scsi-add attached: cfg points here */
	struct vdisk *disk;	     /* NULL: a DVD drive with no medium */
	struct vdisk_queue *queue;
	bool polled; /* its queue's event fd is on the loop */
};

/* --kernel: the files as read, and where the boot puts them. */
struct run_kernel {
	uint8_t *kernel, *initrd, *rom;
	size_t kernel_size, initrd_size, rom_size;
	struct linux_boot_header hdr;
	struct linux_boot_layout layout;
};

struct vmm {
	const struct vmm_run_config *cfg;
	uint8_t *firmware;
	size_t firmware_size;
	struct run_kernel kernel;
	struct vm *vm;
	struct irq_line gsi[VM_NR_GSI];
	struct event_loop *loop;
	struct run_drive drives[VMM_MAX_DRIVES];
	unsigned ndrives;
	struct piix *piix;
	struct cmos *cmos;
	struct i8042 *kbd;
	struct serial_backend *serial_backend, *debugcon_backend;
	struct serial *serial;
	struct misc_ports *misc;
	struct fw_cfg *fw;
	struct control_server *control;
	struct vmm_scsi *scsi; /* NULL without SCSI drives */
	bool stopping;	       /* powerdown or quit asked for */
};

static int fail(const char *what, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static int fail(const char *what, const char *fmt, ...)
{
	char msg[512];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	return cli_fail("run", what, 0, "%s", msg);
}

/* ---- firmware and drives ---- */

/* Reads a whole file the VM needs (firmware, kernel, initrd, option ROM), saying what it is
 * when that fails. */
static int read_whole_file(const char *path, const char *what, const char *hint, size_t max,
			   uint8_t **buf, size_t *len)
{
	int ret = linux_boot_read_file(path, max, buf, len);
	if (ret == -EFBIG)
		return fail(path, "the %s is %zu MiB; at most %zu MiB is read", what, *len >> 20,
			    max >> 20);
	if (ret == -EINVAL)
		return fail(path, "the %s is not a regular file", what);
	if (ret < 0)
		return fail(path, "cannot read the %s: %s%s", what, strerror(-ret), hint);
	return 0;
}

static int check_firmware_size(const char *path, const char *what, size_t size)
{
	if (!size || size % 512)
		return fail(path, "is not %s: %zu bytes (want a multiple of 512)", what, size);
	return 0;
}

/* OVMF's flash device: the variable store directly below the code, both ending at 4 GiB
 * (REFERENCES-FIRMWARE 3.1), as one image. */
static int prepend_uefi_vars(struct vmm *v)
{
	const char *path = v->cfg->uefi_vars;
	uint8_t *vars;
	size_t size;
	int ret = read_whole_file(path, "UEFI variable store", " (install the ovmf package)",
				  VM_MAX_FIRMWARE, &vars, &size);
	if (!ret)
		ret = check_firmware_size(path, "a UEFI variable store", size);
	if (!ret && size > VM_MAX_FIRMWARE - v->firmware_size)
		ret = fail(path, "with the firmware it is %zu MiB; at most %u MiB fit below 4 GiB",
			   (size + v->firmware_size) >> 20, VM_MAX_FIRMWARE >> 20);
	uint8_t *image = ret ? NULL : malloc(size + v->firmware_size);
	if (!ret && !image)
		ret = fail(NULL, "out of memory");
	if (!ret) {
		memcpy(image, vars, size);
		memcpy(image + size, v->firmware, v->firmware_size);
		free(v->firmware);
		v->firmware = image;
		v->firmware_size += size;
	}
	free(vars);
	return ret;
}

static int load_firmware(struct vmm *v)
{
	const char *path = v->cfg->firmware;
	int ret = read_whole_file(path, "firmware",
				  v->cfg->gen == 2
					  ? " (install the ovmf package or give --firmware)"
					  : " (install the seabios package or give --firmware)",
				  VM_MAX_FIRMWARE, &v->firmware, &v->firmware_size);
	if (!ret)
		ret = check_firmware_size(path, "a firmware image", v->firmware_size);
	if (!ret && v->cfg->uefi_vars)
		ret = prepend_uefi_vars(v);
	return ret;
}

static bool on_scsi(const struct run_drive *d)
{
	return d->cfg->loc.bus == VMM_BUS_SCSI;
}

/* VMBus channels per SCSI controller: one per vCPU, as Linux's storvsc asks for. */
static unsigned scsi_channels(const struct vmm_run_config *cfg)
{
	return cfg->cpus;
}

/* Empty SCSI controllers the VM has (a mask): those asked for, and on generation 2
 * controller 0, which it always has (as on Hyper-V). */
static unsigned empty_scsi_controllers(const struct vmm_run_config *cfg)
{
	return cfg->scsi_controllers | (cfg->gen == 2 ? 1u : 0u);
}

/* Whether the VM has SCSI controllers: for its disks, or empty ones. */
static bool has_scsi(const struct vmm_run_config *cfg)
{
	for (unsigned i = 0; i < cfg->ndrives; i++)
		if (cfg->drives[i].loc.bus == VMM_BUS_SCSI)
			return true;
	return empty_scsi_controllers(cfg) != 0;
}

/* Opens a drive's image as the drive asks: -errno with the reason in err. */
static int open_image(const struct vmm_run_config *cfg, const struct vmm_drive *drive,
		      struct vdisk **disk, char *err, size_t err_size)
{
	struct vdisk_options o = { .read_only = drive->read_only,
				   .cache = drive->cache,
				   .queues = drive->loc.bus == VMM_BUS_SCSI ? scsi_channels(cfg)
									    : 1 };
	if (drive->kind == VMM_DRIVE_DVD)
		o.format = "raw"; /* an ISO is a plain file of 2048-byte sectors */
	return vdisk_open(drive->path, &o, disk, err, err_size);
}

static int open_drive(const struct vmm_run_config *cfg, struct run_drive *d)
{
	if (!d->cfg->path)
		return 0;
	char err[256];
	int ret = open_image(cfg, d->cfg, &d->disk, err, sizeof(err));
	if (ret < 0)
		return fail(d->cfg->path, "%s", err);
	d->queue = vdisk_queue(d->disk, 0);
	return 0;
}

static void poll_drive(void *opaque)
{
	struct run_drive *d = opaque;
	vdisk_queue_poll(d->queue, 0);
}

static int open_drives(struct vmm *v)
{
	for (unsigned i = 0; i < v->cfg->ndrives; i++) {
		struct run_drive *d = &v->drives[v->ndrives++];
		d->cfg = &v->cfg->drives[i];
		int ret = open_drive(v->cfg, d);
		if (ret)
			return ret;
	}
	return 0;
}

static int poll_drives(struct vmm *v)
{
	for (unsigned i = 0; i < v->ndrives; i++) {
		struct run_drive *d = &v->drives[i];
		if (!d->disk || on_scsi(d)) /* SCSI queues belong to their channel threads */
			continue;
		int ret = event_loop_add_fd(v->loop, vdisk_queue_event_fd(d->queue), poll_drive, d);
		if (ret < 0)
			return fail(d->cfg->path, "cannot watch its I/O queue: %s", strerror(-ret));
		d->polled = true;
	}
	return 0;
}

/* Completes what the guest left in flight, on this thread once the loop has stopped. */
static void drain_drives(struct vmm *v)
{
	for (unsigned i = 0; i < v->ndrives; i++) {
		struct run_drive *d = &v->drives[i];
		while (d->disk && !on_scsi(d) && vdisk_queue_inflight(d->queue) > 0)
			vdisk_queue_poll(d->queue, 1);
	}
}

/* ---- direct kernel boot ---- */

/* SeaBIOS boots a kernel through QEMU's loader option ROM. */
static int load_linux_loader_rom(struct run_kernel *k)
{
	int ret = read_whole_file(LINUX_BOOT_DEFAULT_ROM, "Linux loader option ROM",
				  " (install the qemu-system-data package)",
				  LINUX_BOOT_MAX_ROM_FILE, &k->rom, &k->rom_size);
	char err[256];
	if (!ret && linux_boot_check_rom(k->rom, k->rom_size, err, sizeof(err)) < 0)
		ret = fail(LINUX_BOOT_DEFAULT_ROM, "%s", err);
	return ret;
}

/* Reads the kernel, initrd and loader ROM and decides where they go, so that whatever
 * refuses the boot does it before a VM exists. */
static int load_kernel(struct vmm *v)
{
	const struct vmm_run_config *cfg = v->cfg;
	struct run_kernel *k = &v->kernel;
	char err[512];
	int ret = read_whole_file(cfg->kernel, "kernel", "", LINUX_BOOT_MAX_KERNEL_FILE, &k->kernel,
				  &k->kernel_size);
	if (ret)
		return ret;
	if (linux_boot_parse(k->kernel, k->kernel_size, &k->hdr, err, sizeof(err)) < 0)
		return fail(cfg->kernel, "%s; --kernel takes a bzImage", err);
	if (cfg->initrd) {
		ret = read_whole_file(cfg->initrd, "initrd", "", LINUX_BOOT_MAX_INITRD_FILE,
				      &k->initrd, &k->initrd_size);
		if (ret)
			return ret;
	}
	ret = cfg->gen == 1 ? load_linux_loader_rom(k) : 0; /* OVMF loads the kernel itself */
	if (ret)
		return ret;
	uint64_t low_ram_end = min_u64(cfg->memory_bytes, GEN1_PCI_HOLE_START);
	size_t cmdline_chars = cfg->append ? strlen(cfg->append) : 0;
	if (linux_boot_plan(&k->hdr, low_ram_end, cmdline_chars, k->initrd_size, &k->layout, err,
			    sizeof(err)) < 0)
		return fail(cfg->initrd ? cfg->initrd : cfg->kernel, "%s", err);
	return 0;
}

static int publish_kernel(struct vmm *v)
{
	struct run_kernel *k = &v->kernel;
	struct linux_boot_input in = { .kernel = k->kernel,
				       .kernel_size = k->kernel_size,
				       .initrd = k->initrd,
				       .initrd_size = k->initrd_size,
				       .cmdline = v->cfg->append,
				       .rom = k->rom,
				       .rom_size = k->rom_size };
	int ret = linux_boot_publish(v->fw, &in, &k->hdr, &k->layout);
	return ret < 0 ? fail(v->cfg->kernel, "cannot hand the kernel to the firmware: %s",
			      strerror(-ret))
		       : 0;
}

static void free_kernel(struct run_kernel *k)
{
	free(k->kernel);
	free(k->initrd);
	free(k->rom);
}

/* ---- the platform ---- */

static void hook_set_pam(void *opaque, uint64_t base, uint64_t len, unsigned mode)
{
	struct vmm *v = opaque;
	vm_set_pam(v->vm, base, len, mode);
}

static void hook_reset(void *opaque, const char *cause)
{
	struct vmm *v = opaque;
	vm_request_reset(v->vm, cause);
}

static void hook_poweroff(void *opaque)
{
	struct vmm *v = opaque;
	vm_request_stop(v->vm, VM_STOP_POWEROFF, 0);
}

static void hook_test_exit(void *opaque, unsigned value)
{
	struct vmm *v = opaque;
	vm_request_stop(v->vm, VM_STOP_TEST_EXIT, value);
}

static void hook_set_irq(void *opaque, unsigned gsi, bool level)
{
	struct vmm *v = opaque;
	if (gsi < VM_NR_GSI)
		irq_line_set(&v->gsi[gsi], level);
}

static struct platform_hooks platform_hooks(struct vmm *v)
{
	return (struct platform_hooks){ .opaque = v,
					.set_pam = hook_set_pam,
					.request_reset = hook_reset,
					.request_poweroff = hook_poweroff,
					.test_exit = hook_test_exit,
					.set_irq = hook_set_irq };
}

static int attach_ide_drives(struct vmm *v)
{
	struct ide_controller *ide = piix_ide(v->piix);
	for (unsigned i = 0; i < v->ndrives; i++) {
		struct run_drive *d = &v->drives[i];
		const struct vmm_location *loc = &d->cfg->loc;
		if (on_scsi(d))
			continue;
		int ret = d->cfg->kind == VMM_DRIVE_DVD
				  ? ide_attach_cdrom(ide, loc->controller, loc->lun, d->disk)
				  : ide_attach_disk(ide, loc->controller, loc->lun, d->disk);
		if (ret < 0) {
			char where[VMM_LOCATION_TEXT_MAX];
			vmm_location_format(loc, where, sizeof(where));
			return fail(d->cfg->path ? d->cfg->path : where,
				    "cannot attach it at %s: %s", where,
				    ret == -EINVAL ? "the IDE disk model needs 512-byte sectors"
						   : strerror(-ret));
		}
	}
	return 0;
}

/* The CMOS boot order SeaBIOS falls back on, and the fw_cfg "bootorder" it prefers: the
 * --boot list, or disks first then DVDs. */
static void boot_kinds(const struct vmm_run_config *cfg, enum vmm_drive_kind kinds[2], unsigned *n)
{
	*n = 0;
	if (cfg->nboot) {
		for (unsigned i = 0; i < cfg->nboot; i++)
			kinds[(*n)++] =
				cfg->boot[i] == VMM_BOOT_DVD ? VMM_DRIVE_DVD : VMM_DRIVE_DISK;
		return;
	}
	kinds[(*n)++] = VMM_DRIVE_DISK;
	kinds[(*n)++] = VMM_DRIVE_DVD;
}

static int create_cmos(struct vmm *v)
{
	struct cmos_config c = { .bus = vm_bus(v->vm),
				 .ram_bytes = v->cfg->memory_bytes,
				 .cpus = v->cfg->cpus };
	enum vmm_drive_kind kinds[2];
	unsigned n;
	boot_kinds(v->cfg, kinds, &n);
	for (unsigned i = 0; i < n && i < CMOS_BOOT_SLOTS; i++)
		c.boot_order[i] = kinds[i] == VMM_DRIVE_DVD ? CMOS_BOOT_CDROM : CMOS_BOOT_DISK;
	int ret = cmos_create(&c, &v->cmos);
	return ret < 0 ? fail(NULL, "cannot create the CMOS/RTC: %s", strerror(-ret)) : 0;
}

static int open_serial(struct vmm *v)
{
	char spec[600];
	switch (v->cfg->serial) {
	case VMM_SERIAL_NONE:
		return 0;
	case VMM_SERIAL_STDIO:
		snprintf(spec, sizeof(spec), "stdio");
		break;
	case VMM_SERIAL_FILE:
		snprintf(spec, sizeof(spec), "file:%s", v->cfg->serial_path);
		break;
	case VMM_SERIAL_UNIX:
		snprintf(spec, sizeof(spec), "unix:%s", v->cfg->serial_path);
		break;
	}
	int ret = serial_backend_open(spec, &v->serial_backend);
	if (ret < 0)
		return fail(v->cfg->serial_path, "cannot open the serial port's backend: %s",
			    strerror(-ret));
	return 0;
}

static int create_legacy_devices(struct vmm *v)
{
	struct dev_bus *bus = vm_bus(v->vm);
	struct i8042_config k = { .bus = bus, .hooks = platform_hooks(v) };
	int ret = i8042_create(&k, &v->kbd);
	if (ret < 0)
		return fail(NULL, "cannot create the i8042: %s", strerror(-ret));
	ret = open_serial(v);
	if (ret)
		return ret;
	struct serial_config s = { .bus = bus,
				   .base = GEN1_COM1_BASE,
				   .irq = v->gsi[GEN1_COM1_IRQ],
				   .backend = v->serial_backend };
	ret = serial_create(&s, &v->serial);
	if (ret < 0)
		return fail(NULL, "cannot create COM1: %s", strerror(-ret));
	if (v->cfg->debugcon) {
		char spec[600];
		snprintf(spec, sizeof(spec), "file:%s", v->cfg->debugcon);
		ret = serial_backend_open(spec, &v->debugcon_backend);
		if (ret < 0)
			return fail(v->cfg->debugcon, "cannot open it for the debug console: %s",
				    strerror(-ret));
	}
	struct misc_ports_config m = { .bus = bus,
				       .hooks = platform_hooks(v),
				       .post = true,
				       .debugcon = v->cfg->debugcon != NULL,
				       .debugcon_output = v->debugcon_backend,
				       .test_exit = v->cfg->test_exit };
	ret = misc_ports_create(&m, &v->misc);
	return ret < 0 ? fail(NULL, "cannot create the POST/debug ports: %s", strerror(-ret)) : 0;
}

static int setup_firmware_config(struct vmm *v)
{
	int ret = fw_cfg_create(vm_guest_mem(v->vm), &v->fw);
	if (ret == 0)
		ret = fw_cfg_register(v->fw, vm_bus(v->vm), GEN1_FW_CFG_PORT);
	if (ret < 0)
		return fail(NULL, "cannot create fw_cfg: %s", strerror(-ret));

	char paths[VMM_MAX_DRIVES + 1][GEN1_FW_PATH_SIZE];
	const char *order[VMM_MAX_DRIVES + 1];
	unsigned n = 0, nkinds;
	enum vmm_drive_kind kinds[2];
	boot_kinds(v->cfg, kinds, &nkinds);
	if (v->cfg->kernel) {
		ret = publish_kernel(v);
		if (ret)
			return ret;
		if (v->cfg->gen == 1)
			order[n++] = LINUX_BOOT_ROM_PATH; /* SeaBIOS runs the loader ROM first */
	}
	for (unsigned k = 0; k < nkinds; k++)
		for (unsigned i = 0; i < v->ndrives; i++) {
			const struct vmm_drive *d = v->drives[i].cfg;
			if (d->kind != kinds[k] || d->loc.bus != VMM_BUS_IDE)
				continue;
			gen1_firmware_ide_path(paths[n], sizeof(paths[n]), d->loc.controller,
					       d->loc.lun);
			order[n] = paths[n];
			n++;
		}
	struct gen1_firmware_params p = { .ram_size = v->cfg->memory_bytes,
					  .ncpus = v->cfg->cpus,
					  .boot_order = order,
					  .nboot = n,
					  .boot_strict = v->cfg->nboot > 0,
					  .serial_console = v->cfg->serial != VMM_SERIAL_NONE,
					  .boot_fail_wait_ms = BOOT_FAIL_WAIT_MS,
					  .vmbus = vm_hyperv(v->vm) != NULL,
					  .gen = v->cfg->gen };
	ret = gen1_firmware_setup(v->fw, &p);
	return ret < 0 ? fail(NULL, "cannot fill fw_cfg for the firmware: %s", strerror(-ret)) : 0;
}

static void reset_piix(void *opaque)
{
	piix_reset(opaque);
}

static void reset_cmos(void *opaque)
{
	cmos_reset(opaque);
}

static void reset_i8042(void *opaque)
{
	i8042_reset(opaque);
}

static void reset_serial(void *opaque)
{
	serial_reset(opaque);
}

static void reset_fw_cfg(void *opaque)
{
	fw_cfg_reset(opaque);
}

/* A guest reset is worth a line: a reboot loop or a crashing guest shows up as resets. */
static void report_reset(void *opaque)
{
	struct vmm *v = opaque;
	const char *cause = vm_reset_cause(v->vm);
	fprintf(stderr, "vmm: the guest reset the machine (%s)\n", cause ? cause : "unknown");
}

static int add_reset_hooks(struct vmm *v)
{
	int ret = vm_add_reset_hook(v->vm, report_reset, v);
	if (!ret)
		ret = vm_add_reset_hook(v->vm, reset_piix, v->piix);
	if (!ret)
		ret = vm_add_reset_hook(v->vm, reset_cmos, v->cmos);
	if (!ret)
		ret = vm_add_reset_hook(v->vm, reset_i8042, v->kbd);
	if (!ret)
		ret = vm_add_reset_hook(v->vm, reset_serial, v->serial);
	if (!ret)
		ret = vm_add_reset_hook(v->vm, reset_fw_cfg, v->fw);
	return ret < 0 ? fail(NULL, "cannot register reset hooks: %s", strerror(-ret)) : 0;
}

/* The synthetic SCSI controllers with their disks, on the VMBus host. */
static int create_scsi(struct vmm *v)
{
	struct vmm_scsi_disk disks[VMM_MAX_DRIVES];
	unsigned n = 0;
	for (unsigned i = 0; i < v->ndrives; i++)
		if (on_scsi(&v->drives[i]))
			disks[n++] = (struct vmm_scsi_disk){
				.controller = v->drives[i].cfg->loc.controller,
				.lun = v->drives[i].cfg->loc.lun,
				.disk = v->drives[i].disk,
				.dvd = v->drives[i].cfg->kind == VMM_DRIVE_DVD
			};
	if (!has_scsi(v->cfg))
		return 0;
	char err[256];
	int ret = vmm_scsi_create(v->vm, disks, n, empty_scsi_controllers(v->cfg),
				  scsi_channels(v->cfg), &v->scsi, err, sizeof(err));
	if (ret < 0)
		return fail(NULL, "%s", err);
	ret = vm_add_reset_hook(v->vm, vmm_scsi_reset, v->scsi);
	return ret < 0 ? fail(NULL, "cannot register a reset hook: %s", strerror(-ret)) : 0;
}

static int build_platform(struct vmm *v)
{
	for (unsigned i = 0; i < VM_NR_GSI; i++)
		v->gsi[i] = vm_gsi_line(v->vm, i);
	struct piix_config pc = { .bus = vm_bus(v->vm),
				  .mem = vm_guest_mem(v->vm),
				  .hooks = platform_hooks(v),
				  .without_ide = v->cfg->gen == 2 };
	int ret = piix_create(&pc, &v->piix);
	if (ret < 0)
		return fail(NULL, "cannot create the i440FX/PIIX chipset: %s", strerror(-ret));
	ret = attach_ide_drives(v);
	if (!ret)
		ret = create_cmos(v);
	if (!ret)
		ret = create_legacy_devices(v);
	if (!ret)
		ret = setup_firmware_config(v);
	if (!ret)
		ret = add_reset_hooks(v);
	if (!ret)
		ret = create_scsi(v);
	return ret;
}

/* ---- the control socket ---- */

static int ctl_query_status(void *opaque, enum control_run_state *state, char *err, size_t err_size)
{
	(void)err, (void)err_size;
	struct vmm *v = opaque;
	*state = v->stopping	       ? CONTROL_SHUTTING_DOWN
		 : vm_is_paused(v->vm) ? CONTROL_PAUSED
				       : CONTROL_RUNNING;
	return 0;
}

/* A SCSI drive's state in the IDE model's terms, with the counters its LUN keeps. */
static void scsi_drive_state(struct vmm *v, const struct run_drive *d, struct ide_device_info *dev)
{
	*dev = (struct ide_device_info){ .disk = d->disk, .inserted = d->disk != NULL };
	struct storvsp_lun_stats st;
	if (vmm_scsi_get_stats(v->scsi, d->cfg->loc.controller, d->cfg->loc.lun, &st) < 0)
		return;
	dev->stats = (struct ide_io_stats){ .reads = st.reads,
					    .writes = st.writes,
					    .flushes = st.flushes,
					    .read_bytes = st.read_bytes,
					    .write_bytes = st.write_bytes };
}

/* What a drive holds now and its I/O counters, which the IDE model and the SCSI LUNs
 * keep. */
static void drive_state(struct vmm *v, const struct run_drive *d, struct ide_device_info *dev)
{
	if (on_scsi(d))
		scsi_drive_state(v, d, dev);
	else if (ide_query_device(piix_ide(v->piix), d->cfg->loc.controller, d->cfg->loc.lun, dev) <
		 0)
		*dev = (struct ide_device_info){ .disk = d->disk, .inserted = d->disk != NULL };
}

static int ctl_query_block(void *opaque, json_t *drives, char *err, size_t err_size)
{
	(void)err, (void)err_size;
	struct vmm *v = opaque;
	for (unsigned i = 0; i < v->ndrives; i++) {
		const struct vmm_drive *cfg = v->drives[i].cfg;
		if (!cfg)
			continue;
		struct ide_device_info dev;
		drive_state(v, &v->drives[i], &dev);
		char where[VMM_LOCATION_TEXT_MAX];
		vmm_location_format(&cfg->loc, where, sizeof(where));
		struct control_block_info info = {
			.location = where,
			.dvd = cfg->kind == VMM_DRIVE_DVD,
			.format = dev.disk ? vdisk_format_name(dev.disk) : NULL,
			.file = dev.disk ? cfg->path : NULL,
			.size = dev.disk ? vdisk_size(dev.disk) : 0,
			.read_only = cfg->read_only,
			.inserted = dev.inserted,
			.rd_bytes = dev.stats.read_bytes,
			.wr_bytes = dev.stats.write_bytes,
			.rd_operations = dev.stats.reads,
			.wr_operations = dev.stats.writes,
			.flush_operations = dev.stats.flushes,
		};
		if (control_block_append(drives, &info) < 0)
			return -ENOMEM;
	}
	return 0;
}

static json_t *stats_json(struct vmm *v);

static char *version_text(char *buf, size_t size, unsigned major, unsigned minor)
{
	snprintf(buf, size, "%u.%u", major, minor);
	return buf;
}

/* The VMBus host and each SCSI controller: what the guest negotiated, what moved. */
static json_t *vmbus_json(struct vmm_scsi *scsi)
{
	struct vmbus_stats bus;
	struct vmm_scsi_controller_stats ctrl[VMM_SCSI_CONTROLLERS];
	unsigned n = vmm_scsi_bus_stats(scsi, &bus, ctrl, VMM_SCSI_CONTROLLERS);
	char version[16];
	json_t *controllers = json_array();
	for (unsigned i = 0; i < n; i++) {
		const struct storvsp_stats *st = &ctrl[i].stats;
		json_array_append_new(
			controllers,
			json_pack("{s:i, s:s, s:i, s:I, s:I, s:I}", "controller",
				  (int)ctrl[i].controller, "protocol",
				  version_text(version, sizeof(version), st->protocol >> 8,
					       st->protocol & 0xFF),
				  "subchannels", (int)st->subchannels, "requests",
				  (json_int_t)st->requests, "errors", (json_int_t)st->errors,
				  "ring_full", (json_int_t)st->ring_full));
	}
	return json_pack(
		"{s:s, s:I, s:I, s:I, s:o}", "version",
		version_text(version, sizeof(version), bus.version >> 16, bus.version & 0xFFFF),
		"messages_in", (json_int_t)bus.messages_in, "signals_in",
		(json_int_t)bus.signals_in, "signals_out", (json_int_t)bus.signals_out, "scsi",
		controllers);
}

static int ctl_query_stats(void *opaque, json_t **stats, char *err, size_t err_size)
{
	(void)err, (void)err_size;
	*stats = stats_json(opaque);
	return *stats ? 0 : -ENOMEM;
}

static int ctl_pause(void *opaque, char *err, size_t err_size)
{
	(void)err, (void)err_size;
	struct vmm *v = opaque;
	return vm_pause(v->vm);
}

static int ctl_resume(void *opaque, char *err, size_t err_size)
{
	(void)err, (void)err_size;
	struct vmm *v = opaque;
	return vm_resume(v->vm);
}

static int ctl_powerdown(void *opaque, char *err, size_t err_size)
{
	struct vmm *v = opaque;
	if (vm_is_paused(v->vm)) {
		snprintf(err, err_size, "the VM is paused: resume it first");
		return -EBUSY;
	}
	v->stopping = true;
	piix_power_button(v->piix);
	return 0;
}

static int ctl_quit(void *opaque, char *err, size_t err_size)
{
	(void)err, (void)err_size;
	struct vmm *v = opaque;
	v->stopping = true;
	vm_request_stop(v->vm, VM_STOP_QUIT, 0);
	return 0;
}

/* The drive at a SCSI location, or NULL. */
static struct run_drive *scsi_drive(struct vmm *v, unsigned controller, unsigned lun)
{
	for (unsigned i = 0; i < v->ndrives; i++) {
		struct run_drive *d = &v->drives[i];
		if (d->cfg && on_scsi(d) && d->cfg->loc.controller == controller &&
		    d->cfg->loc.lun == lun)
			return d;
	}
	return NULL;
}

/* An entry for a new drive: a free one, or one past the end. */
static struct run_drive *free_drive(struct vmm *v)
{
	for (unsigned i = 0; i < v->ndrives; i++)
		if (!v->drives[i].cfg)
			return &v->drives[i];
	return v->ndrives < VMM_MAX_DRIVES ? &v->drives[v->ndrives++] : NULL;
}

static void forget_drive(struct run_drive *d)
{
	free(d->hot.path);
	*d = (struct run_drive){ 0 };
}

static int ctl_scsi_add(void *opaque, unsigned controller, unsigned lun, const char *file,
			bool read_only, char *err, size_t err_size)
{
	struct vmm *v = opaque;
	/* the place first: a wrong one is not worth opening (and locking) the image */
	int ret = vmm_scsi_lun_free(v->scsi, controller, lun, err, err_size);
	if (ret < 0)
		return ret;
	struct run_drive *d = free_drive(v);
	char *path = strdup(file);
	if (!d || !path) {
		free(path);
		snprintf(err, err_size, "out of memory");
		return -ENOMEM;
	}
	d->hot = (struct vmm_drive){ .kind = VMM_DRIVE_DISK,
				     .loc = { VMM_BUS_SCSI, controller, lun },
				     .path = path,
				     .read_only = read_only,
				     .cache = VDISK_CACHE_DIRECT };
	char why[256];
	ret = open_image(v->cfg, &d->hot, &d->disk, why, sizeof(why));
	if (ret < 0) {
		snprintf(err, err_size, "cannot open '%s': %s", file, why);
		forget_drive(d);
		return ret;
	}
	struct vmm_scsi_disk sd = { controller, lun, d->disk, false };
	ret = vmm_scsi_attach(v->scsi, &sd, err, err_size);
	if (ret < 0) {
		vdisk_close(d->disk);
		forget_drive(d);
		return ret;
	}
	d->queue = vdisk_queue(d->disk, 0);
	d->cfg = &d->hot;
	return 0;
}

static int ctl_scsi_remove(void *opaque, unsigned controller, unsigned lun, char *err,
			   size_t err_size)
{
	struct vmm *v = opaque;
	struct vdisk *disk;
	int ret = vmm_scsi_detach(v->scsi, controller, lun, &disk, err, err_size);
	if (ret < 0)
		return ret;
	/* the image is this thread's alone now */
	ret = vdisk_read_only(disk) ? 0 : vdisk_flush_sync(disk);
	vdisk_close(disk);
	struct run_drive *d = scsi_drive(v, controller, lun);
	if (d)
		forget_drive(d);
	if (ret < 0) {
		snprintf(err, err_size, "scsi:%u:%u was removed, but flushing its image failed: %s",
			 controller, lun, strerror(-ret));
		return ret;
	}
	return 0;
}

static int ctl_block_resize(void *opaque, unsigned controller, unsigned lun, uint64_t size,
			    char *err, size_t err_size)
{
	struct vmm *v = opaque;
	return vmm_scsi_resize(v->scsi, controller, lun, size, err, err_size);
}

static const struct control_ops control_ops = {
	.query_status = ctl_query_status,
	.query_block = ctl_query_block,
	.query_stats = ctl_query_stats,
	.pause = ctl_pause,
	.resume = ctl_resume,
	.powerdown = ctl_powerdown,
	.quit = ctl_quit,
	.scsi_add = ctl_scsi_add,
	.scsi_remove = ctl_scsi_remove,
	.block_resize = ctl_block_resize,
};

static int start_control(struct vmm *v)
{
	if (!v->cfg->control)
		return 0;
	char err[256];
	int ret = control_server_start(v->cfg->control, &control_ops, v, &v->control, err,
				       sizeof(err));
	return ret < 0 ? fail(v->cfg->control, "cannot open the control socket: %s", err) : 0;
}

/* ---- running ---- */

static int exit_status(const struct vm_exit_status *st)
{
	switch (st->reason) {
	case VM_STOP_POWEROFF:
	case VM_STOP_QUIT:
		return CLI_EXIT_OK;
	case VM_STOP_RESET:
		return VMM_EXIT_RESET;
	case VM_STOP_TEST_EXIT:
		return VMM_EXIT_TEST_BASE + (int)(st->test_exit_value & 63);
	case VM_STOP_ERROR:
		break;
	}
	return fail(NULL, "the VM stopped: %s", st->message);
}

/* The VM's counters (exits by kind, resets, each drive's I/O): what --stats prints at the
 * end and query-stats answers while the VM runs. */
static json_t *stats_json(struct vmm *v)
{
	struct vm_stats vs;
	vm_get_stats(v->vm, &vs);
	json_t *drives = json_array();
	for (unsigned i = 0; i < v->ndrives; i++) {
		const struct vmm_drive *cfg = v->drives[i].cfg;
		if (!cfg)
			continue;
		struct ide_device_info dev;
		drive_state(v, &v->drives[i], &dev);
		char where[VMM_LOCATION_TEXT_MAX];
		vmm_location_format(&cfg->loc, where, sizeof(where));
		json_array_append_new(drives,
				      json_pack("{s:s, s:I, s:I, s:I, s:I, s:I}", "location", where,
						"reads", (json_int_t)dev.stats.reads, "read_bytes",
						(json_int_t)dev.stats.read_bytes, "writes",
						(json_int_t)dev.stats.writes, "write_bytes",
						(json_int_t)dev.stats.write_bytes, "flushes",
						(json_int_t)dev.stats.flushes));
	}
	json_t *all =
		json_pack("{s:I, s:I, s:I, s:I, s:o}", "exits", (json_int_t)vs.exits, "io_exits",
			  (json_int_t)vs.io_exits, "mmio_exits", (json_int_t)vs.mmio_exits,
			  "resets", (json_int_t)vs.resets, "drives", drives);
	if (all && v->scsi)
		json_object_set_new(all, "vmbus", vmbus_json(v->scsi));
	return all;
}

/* --stats: one JSON line on stderr, for benchmarks and tests that count exits per I/O. */
static void print_stats(struct vmm *v)
{
	json_t *all = stats_json(v);
	char *text = all ? json_dumps(all, JSON_COMPACT) : NULL;
	if (text)
		fprintf(stderr, "%s\n", text);
	free(text);
	json_decref(all);
}

static int run_vm(struct vmm *v)
{
	int ret = event_loop_start(v->loop);
	if (ret < 0)
		return fail(NULL, "cannot start the I/O thread: %s", strerror(-ret));
	struct vm_exit_status st = { 0 };
	ret = vm_run(v->vm, &st);
	event_loop_stop(v->loop);
	/* no drive comes or goes from here on */
	control_server_stop(v->control);
	v->control = NULL;
	if (ret < 0)
		return fail(NULL, "cannot run the VM: %s", strerror(-ret));
	if (v->cfg->stats)
		print_stats(v);
	return exit_status(&st);
}

static int build(struct vmm *v)
{
	int ret = load_firmware(v);
	if (!ret && v->cfg->kernel)
		ret = load_kernel(v);
	if (!ret)
		ret = open_drives(v);
	if (ret)
		return ret;
	struct vm_config vc = { .ram_bytes = v->cfg->memory_bytes,
				.cpus = v->cfg->cpus,
				.firmware = v->firmware,
				.firmware_size = v->firmware_size,
				.hugepages = v->cfg->hugepages,
				.no_reboot = v->cfg->no_reboot,
				.synic = has_scsi(v->cfg) ? v->cfg->synic : HYPERV_SYNIC_OFF };
	char err[256];
	ret = vm_create(&vc, &v->vm, err, sizeof(err));
	if (ret < 0)
		return fail("/dev/kvm", "%s", err);
	ret = event_loop_create(&v->loop);
	if (ret < 0)
		return fail(NULL, "cannot create the I/O thread: %s", strerror(-ret));
	ret = poll_drives(v);
	if (!ret)
		ret = build_platform(v);
	if (!ret)
		ret = start_control(v);
	return ret;
}

static void teardown(struct vmm *v)
{
	if (v->control)
		control_server_stop(v->control);
	for (unsigned i = 0; i < v->ndrives; i++)
		if (v->drives[i].polled)
			event_loop_remove_fd(v->loop, vdisk_queue_event_fd(v->drives[i].queue));
	drain_drives(v);
	vmm_scsi_destroy(v->scsi);
	/* every destroy takes NULL: teardown also undoes a build that stopped half way */
	fw_cfg_destroy(v->fw);
	misc_ports_destroy(v->misc);
	serial_destroy(v->serial);
	serial_backend_close(v->serial_backend);
	serial_backend_close(v->debugcon_backend);
	i8042_destroy(v->kbd);
	cmos_destroy(v->cmos);
	piix_destroy(v->piix);
	event_loop_destroy(v->loop);
	vm_destroy(v->vm);
	for (unsigned i = 0; i < v->ndrives; i++) {
		vdisk_close(v->drives[i].disk);
		free(v->drives[i].hot.path);
	}
	free(v->firmware);
	free_kernel(&v->kernel);
}

int vmm_run(const struct vmm_run_config *cfg)
{
	if (has_scsi(cfg) && cfg->synic == HYPERV_SYNIC_OFF)
		return fail(NULL, "SCSI controllers are served over VMBus, which needs the "
				  "Hyper-V interface: drop --synic off");
	struct vmm *v = calloc(1, sizeof(*v));
	if (!v)
		return fail(NULL, "out of memory");
	v->cfg = cfg;
	int status = build(v);
	if (!status)
		status = run_vm(v);
	teardown(v);
	free(v);
	return status;
}
