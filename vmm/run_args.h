/* `vmm run`: its options parsed and validated into one configuration, and the entry point
 * that turns a configuration into a running VM.
 *
 * Drives are addressed the way Hyper-V addresses them: a controller and a location on it,
 * written BUS:C:L ("ide:0:1" is IDE controller 0, location 1; "scsi:0:5" is SCSI controller
 * 0, LUN 5). Generation 1 has two IDE controllers with two locations each; generation 2 has
 * no IDE, only SCSI.
 */
#ifndef HV_VMM_RUN_ARGS_H
#define HV_VMM_RUN_ARGS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "hyperv.h"
#include "vdisk.h"

/* Exit statuses of `vmm run` besides the project's CLI_EXIT_OK (the guest powered off or
 * `quit`), CLI_EXIT_FAIL (the VMM failed) and CLI_EXIT_USAGE (tools/cli.h). */
enum {
	VMM_EXIT_RESET = 1,	/* the guest reset and --no-reboot was given */
	VMM_EXIT_TEST_BASE = 64 /* + (v & 63): the guest wrote v to the test-exit port */
};

enum vmm_bus { VMM_BUS_IDE, VMM_BUS_SCSI };

#define VMM_IDE_CONTROLLERS  2
#define VMM_IDE_LOCATIONS    2
#define VMM_SCSI_CONTROLLERS 4
#define VMM_SCSI_LOCATIONS   64
#define VMM_MAX_DRIVES                                                                             \
	(VMM_IDE_CONTROLLERS * VMM_IDE_LOCATIONS + VMM_SCSI_CONTROLLERS * VMM_SCSI_LOCATIONS)

struct vmm_location {
	enum vmm_bus bus;
	unsigned controller;
	unsigned lun; /* the location on the controller */
};

/* "ide:0:1" (at most 16 bytes with the NUL). */
#define VMM_LOCATION_TEXT_MAX 16
void vmm_location_format(const struct vmm_location *loc, char *out, size_t out_size);

enum vmm_drive_kind { VMM_DRIVE_DISK, VMM_DRIVE_DVD };

struct vmm_drive {
	enum vmm_drive_kind kind;
	struct vmm_location loc;
	char *path;	/* the image; NULL for a DVD drive with no medium */
	bool read_only; /* always true for a DVD */
	enum vdisk_cache_mode cache;
};

enum vmm_serial_kind { VMM_SERIAL_NONE, VMM_SERIAL_STDIO, VMM_SERIAL_FILE, VMM_SERIAL_UNIX };

enum vmm_boot_device { VMM_BOOT_DISK, VMM_BOOT_DVD };
#define VMM_BOOT_MAX 2

struct vmm_run_config {
	bool help; /* --help was asked for: nothing else was parsed */
	unsigned gen;
	uint64_t memory_bytes;
	unsigned cpus;
	struct vmm_drive drives[VMM_MAX_DRIVES]; /* in command-line order */
	unsigned ndrives;
	unsigned scsi_controllers; /* bit n: --scsi-controller n (present even without disks) */
	enum vmm_serial_kind serial;
	char *serial_path; /* file:PATH, unix:PATH */
	char *kernel, *initrd, *append;
	char *control;	/* the control socket's path, or NULL */
	char *firmware; /* never NULL after a successful parse: the platform's default */
	/* Generation 2: the UEFI variable store mapped below the firmware, or NULL (--uefi-vars
	 * none: the firmware image holds its own). Generation 1: always NULL. */
	char *uefi_vars;
	char *debugcon; /* file for the firmware's debug port (GEN1_DEBUGCON_PORT), or NULL */
	enum vmm_boot_device boot[VMM_BOOT_MAX]; /* firmware boot order; nboot 0: default */
	unsigned nboot;
	bool no_reboot, test_exit, hugepages;
	bool stats; /* print exit and I/O counters as one JSON line on stderr at the end */
	enum hyperv_synic_mode synic; /* --synic; HYPERV_SYNIC_AUTO unless given */
};

/* What this host can give a VM: the bound for --memory. */
struct vmm_host_limits {
	uint64_t ram_bytes; /* physical RAM */
	uint64_t map_bytes; /* address space one process may map */
};

void vmm_host_limits_probe(struct vmm_host_limits *out);

#define VMM_MIN_MEMORY (16ull << 20)
#define VMM_MAX_CPUS   64

/* Parses the arguments that follow `vmm run` (argv[0] is the first option) into cfg,
 * which vmm_run_config_free releases also after a failure. Returns 0 (with cfg->help set
 * when --help was given), -EINVAL with a message in err naming the option and what to do,
 * or -ENOMEM. host bounds --memory. argv is not modified. */
int vmm_run_args_parse(int argc, char *const *argv, const struct vmm_host_limits *host,
		       struct vmm_run_config *cfg, char *err, size_t err_size);
void vmm_run_config_free(struct vmm_run_config *cfg);

/* Checks that the files a parsed configuration names are usable before a VM is built:
 * images, kernel, initrd and firmware exist and are readable regular files, writable disks
 * are writable, and no image is attached twice where either attachment writes. Returns 0
 * or -errno with a message in err. */
int vmm_run_config_check_files(const struct vmm_run_config *cfg, char *err, size_t err_size);

/* The text of `vmm run --help`. */
const char *vmm_run_help(void);

/* The firmware used when --firmware is not given. */
#define VMM_DEFAULT_FW_GEN1 "/usr/share/seabios/bios.bin"
#define VMM_DEFAULT_FW_GEN2 "/usr/share/OVMF/OVMF_CODE_4M.fd"
const char *vmm_default_firmware(unsigned gen);
/* The generation 2 variable store used when --uefi-vars is not given: OVMF's empty one (no
 * Secure Boot keys). */
#define VMM_DEFAULT_UEFI_VARS "/usr/share/OVMF/OVMF_VARS_4M.fd"

/* Builds and runs the VM; returns the exit status of `vmm run` (see the enum above) after
 * printing any failure. */
int vmm_run(const struct vmm_run_config *cfg);

#endif
