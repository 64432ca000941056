/* The vmm command line as a user meets it: help, exit statuses and messages of `vmm`,
 * `vmm run` (which stops before building a VM while run.c is a stub) and `vmm ctl`. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "control.h"
#include "test_util.h"

static const char *vmm;
static char out[65536];

#define run(...) test_run(out, sizeof(out), __VA_ARGS__)

static void test_top_level(void **state)
{
	(void)state;
	assert_int_equal(run("'%s'", vmm), 3);
	assert_contains(out, "Usage: vmm COMMAND");
	assert_int_equal(run("'%s' --help", vmm), 0);
	assert_contains(out, "  run ");
	assert_contains(out, "  ctl ");
	assert_int_equal(run("'%s' frob", vmm), 3);
	assert_contains(out, "vmm: unknown command 'frob'\nTry 'vmm --help'.");
}

static void test_run_help(void **state)
{
	(void)state;
	assert_int_equal(run("'%s' run --help", vmm), 0);
	assert_contains(out, "Usage: vmm run [OPTIONS]");
	assert_contains(out, "Exit statuses:");
	assert_contains(out, "64+(V&63)");
	assert_contains(out, "Examples:");
	assert_int_equal(run("'%s' run --cpus 99 -h", vmm), 0);
	assert_contains(out, "Usage: vmm run");
}

static void test_run_usage_errors(void **state)
{
	(void)state;
	static const struct {
		const char *args, *message;
	} cases[] = {
		{ "--cpus 0", "vmm: run: --cpus '0' must be a whole number from 1 to 64" },
		{ "--memory lots", "vmm: run: --memory 'lots' is not a size" },
		{ "--gen 2 --disk ide:0:0=a.vhdx", "generation 2 has no IDE controller" },
		{ "--disk ide:0:0=a --dvd ide:0:0=b", "that location already holds" },
		{ "--serial tcp:4444", "is not a serial backend" },
		{ "disk.vhdx", "unexpected argument 'disk.vhdx'" },
	};
	for (unsigned i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		int status = run("'%s' run %s", vmm, cases[i].args);
		if (status != 3 || !strstr(out, cases[i].message) ||
		    !strstr(out, "Try 'vmm run --help'."))
			fail_msg("vmm run %s: status %d, output:\n%s", cases[i].args, status, out);
	}
}

static void test_run_failures(void **state)
{
	(void)state;
	const char *disk = test_path("disk.raw"), *fw = test_path("fw.bin");
	test_write_file(disk, 1 << 20, 1);
	test_write_file(fw, 4096, 2);
	assert_int_equal(run("'%s' run --memory 64M --firmware %s --disk ide:0:0=%s", vmm, fw,
			     test_path("missing.vhdx")),
			 2);
	assert_contains(out, "vmm: run: --disk ide:0:0 '");
	assert_contains(out, "No such file or directory");
	assert_int_equal(run("'%s' run --memory 64M --firmware %s --disk ide:0:0=%s "
			     "--disk ide:0:1=%s",
			     vmm, fw, disk, disk),
			 2);
	assert_contains(out, "is already attached at ide:0:0");
	/* a generation 2 variable store must be whole sectors, as the firmware must */
	const char *vars = test_path("vars.fd");
	test_write_file(vars, 1000, 3);
	assert_int_equal(run("'%s' run --gen 2 --memory 64M --firmware %s --uefi-vars %s "
			     "--disk scsi:0:3=%s",
			     vmm, fw, vars, disk),
			 2);
	assert_contains(out, "vars.fd': is not a UEFI variable store: 1000 bytes");
	assert_int_equal(run("'%s' run --memory 64M --firmware %s --dvd scsi:0:3", vmm, fw), 2);
	assert_contains(out, "--dvd scsi:0:3: a SCSI DVD drive needs its image");
	assert_int_equal(run("'%s' run --memory 64M --firmware %s --disk scsi:0:3=%s --synic off",
			     vmm, fw, disk),
			 2);
	assert_contains(out, "needs the Hyper-V interface: drop --synic off");
	/* A valid configuration runs: a firmware whose reset vector writes 42 to the test-exit
	 * port (mov al, 42; mov dx, 0x501; out dx, al; hlt) ends the VM with 64 + 42. */
	if (access("/dev/kvm", R_OK | W_OK) != 0)
		return;
	static const uint8_t reset_vector[] = { 0xB0, 42, 0xBA, 0x01, 0x05, 0xEE, 0xF4 };
	test_file_write(fw, reset_vector, sizeof(reset_vector), 4096 - 16);
	assert_int_equal(run("'%s' run --memory 64M --firmware %s --disk ide:0:0=%s --serial none "
			     "--test-exit --no-reboot",
			     vmm, fw, disk),
			 64 + 42);
}

/* The two generations' chipsets, seen by a firmware whose reset vector reads the vendor ID
 * of PCI 00:01.1 (the IDE function) and writes its low byte to the test-exit port:
 *   mov eax, 0x80000900; mov dx, 0xCF8; out dx, eax; mov dx, 0xCFC; in eax, dx;
 *   mov dx, 0x501; out dx, al; hlt
 * Generation 1 answers Intel's 0x8086, generation 2 has no such function (all ones). On
 * generation 2 the firmware must also sit at the top of 4 GiB with the variable store
 * below it, or the reset vector is not this code. */
static void test_generations_platform(void **state)
{
	(void)state;
	if (access("/dev/kvm", R_OK | W_OK) != 0)
		skip();
	static const uint8_t reset_vector[] = { 0x66, 0xB8, 0x00, 0x09, 0x00, 0x80, 0xBA,
						0xF8, 0x0C, 0x66, 0xEF, 0xBA, 0xFC, 0x0C,
						0x66, 0xED, 0xBA, 0x01, 0x05, 0xEE, 0xF4 };
	const char *fw = test_path("pci-fw.bin"), *vars = test_path("pci-vars.fd");
	const char *disk = test_path("pci-disk.raw");
	test_write_file(fw, 4096, 4);
	test_file_write(fw, reset_vector, sizeof(reset_vector), 4096 - 64);
	/* at the reset vector (IP 0xFFF0): jmp short back to the code at 0xFFC0 */
	static const uint8_t jump[] = { 0xEB, 0xCE };
	test_file_write(fw, jump, sizeof(jump), 4096 - 16);
	test_write_file(vars, 8192, 5);
	test_write_file(disk, 1 << 20, 6);
	assert_int_equal(run("'%s' run --memory 64M --firmware %s --serial none --test-exit "
			     "--no-reboot",
			     vmm, fw),
			 64 + (0x86 & 63));
	assert_int_equal(run("'%s' run --gen 2 --memory 64M --firmware %s --uefi-vars %s "
			     "--disk scsi:0:0=%s --serial none --test-exit --no-reboot",
			     vmm, fw, vars, disk),
			 64 + (0xFF & 63));
}

static void test_ctl_help_and_usage(void **state)
{
	(void)state;
	assert_int_equal(run("'%s' ctl --help", vmm), 0);
	assert_contains(out, "Usage: vmm ctl");
	const struct control_command *cmd;
	for (unsigned i = 0; (cmd = control_command_at(i)); i++) {
		char line[128];
		snprintf(line, sizeof(line), "  %-13s %s\n", cmd->name, cmd->summary);
		assert_contains(out, line);
	}
	assert_contains(out, "location=VALUE (optional)");
	assert_contains(out, "Exit statuses:");
	assert_int_equal(run("'%s' ctl /tmp/x.sock query-status --help", vmm), 0);
	assert_contains(out, "Usage: vmm ctl");

	assert_int_equal(run("'%s' ctl", vmm), 3);
	assert_contains(out, "vmm: ctl: missing SOCK and COMMAND");
	assert_int_equal(run("'%s' ctl --yaml a b", vmm), 3);
	assert_contains(out, "unknown option '--yaml'");
	assert_int_equal(run("'%s' ctl --timeout 0 a b", vmm), 3);
	assert_contains(out, "--timeout '0' must be a whole number from 1 to 3600");
	assert_int_equal(run("'%s' ctl a --timeout", vmm), 3);
	assert_int_equal(run("'%s' ctl --timeout", vmm), 3);
	assert_contains(out, "--timeout needs a value");
}

int main(void)
{
	vmm = getenv("VMM");
	if (!vmm || access(vmm, X_OK) != 0) {
		fprintf(stderr, "VMM must name the vmm binary (run through ctest)\n");
		return TEST_SKIP;
	}
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_top_level),
		cmocka_unit_test(test_run_help),
		cmocka_unit_test(test_run_usage_errors),
		cmocka_unit_test(test_run_failures),
		cmocka_unit_test(test_generations_platform),
		cmocka_unit_test(test_ctl_help_and_usage),
	};
	return cmocka_run_group_tests(tests, NULL, test_teardown_tmpdir);
}
