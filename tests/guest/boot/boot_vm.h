/* What the firmware boot tests share: the checksum their guest programs print, a run of
 * `vmm run` on a generation 1 VM with the serial log in a file, and the checks that decide
 * whether a test program can run on this machine. */
#ifndef HV_BOOT_VM_H
#define HV_BOOT_VM_H

#include <stddef.h>
#include <stdint.h>

#define BOOT_VM_EXIT_OK	   64 /* the guest wrote 0 to the test-exit port */
#define BOOT_VM_MEMORY_MIB 64 /* the VM's RAM */

/* h = rol(h, 5) ^ dword over every little-endian dword of data, from 0x12345678: what
 * bootsect.S and idetest.S print as their sums. */
uint32_t boot_fold(const uint8_t *data, size_t len);

/* Runs `vmm run --gen 1 --memory BOOT_VM_MEMORY_MIB --cpus 1 ARGS --serial file:... --test-exit
 * --no-reboot` (args: the drives and any other option) under a time limit. Returns the
 * exit status; log holds the serial output (NUL-terminated, truncated) and out what vmm
 * printed, both shown when the status is not BOOT_VM_EXIT_OK. */
int boot_run_vm(const char *args, char *log, size_t log_size, char *out, size_t out_size);

/* The same with guest resets carried out (no --no-reboot), ended after timeout_s. */
int boot_run_vm_rebooting(const char *args, unsigned timeout_s, char *log, size_t log_size,
			  char *out, size_t out_size);

/* The vmm binary ($VMM), the guest program ($program_env, returned in program), a usable
 * /dev/kvm and the vdisk binary: 0 when all are there, else TEST_SKIP after saying what is
 * missing. */
int boot_test_init(const char *program_env, const char **program);

#endif
