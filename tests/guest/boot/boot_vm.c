/* Helpers of the firmware boot tests (boot_vm.h). */
#include "boot_vm.h"

#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "endian.h"
#include "test_util.h"

#define VM_TIMEOUT_S 120

static const char *vmm_binary;

uint32_t boot_fold(const uint8_t *data, size_t len)
{
	uint32_t h = 0x12345678;
	for (size_t i = 0; i + 4 <= len; i += 4)
		h = (h << 5 | h >> 27) ^ load_le32(data + i);
	return h;
}

static int run_vm(const char *args, unsigned timeout_s, const char *reboot_option, char *log,
		  size_t log_size, char *out, size_t out_size)
{
	const char *serial = test_path("serial.log");
	unlink(serial);
	if (!vmm_binary)
		vmm_binary = getenv("VMM");
	int status =
		test_run(out, out_size,
			 "timeout %u '%s' run --gen 1 --memory %uM --cpus 1 %s "
			 "--serial file:%s --test-exit %s",
			 timeout_s, vmm_binary, BOOT_VM_MEMORY_MIB, args, serial, reboot_option);
	FILE *f = fopen(serial, "r");
	size_t n = f ? fread(log, 1, log_size - 1, f) : 0;
	log[n] = 0;
	if (f)
		fclose(f);
	if (status != BOOT_VM_EXIT_OK)
		print_message("vmm exited %d\n%s\nserial:\n%s\n", status, out, log);
	return status;
}

int boot_run_vm(const char *args, char *log, size_t log_size, char *out, size_t out_size)
{
	return run_vm(args, VM_TIMEOUT_S, "--no-reboot", log, log_size, out, out_size);
}

int boot_run_vm_rebooting(const char *args, unsigned timeout_s, char *log, size_t log_size,
			  char *out, size_t out_size)
{
	return run_vm(args, timeout_s, "", log, log_size, out, out_size);
}

int boot_test_init(const char *program_env, const char **program)
{
	vmm_binary = getenv("VMM");
	*program = getenv(program_env);
	if (!vmm_binary || !*program || access(vmm_binary, X_OK) != 0) {
		printf("skipped: VMM and %s must name the built vmm and guest program\n",
		       program_env);
		return TEST_SKIP;
	}
	if (access("/dev/kvm", R_OK | W_OK) != 0) {
		printf("skipped: /dev/kvm is not usable (%s)\n", strerror(errno));
		return TEST_SKIP;
	}
	return test_vdisk_binary() ? 0 : TEST_SKIP;
}
