/* `vmm run` options: every option lands in the configuration, every mistake is refused with
 * a message naming the option, the help describes every option and its examples parse,
 * and the file checks catch what would otherwise fail inside a half-built VM. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "gen1_layout.h"
#include "run_args.h"
#include "test_util.h"

static const struct vmm_host_limits host = { .ram_bytes = 8ull << 30, .map_bytes = 1ull << 40 };
static char err[512];

/* Parses args split at spaces (and at newlines, for long lines). */
static int parse(struct vmm_run_config *cfg, const char *args)
{
	static char buf[4096];
	char *argv[64];
	int argc = 0;
	snprintf(buf, sizeof(buf), "%s", args);
	for (char *tok = strtok(buf, " \n"); tok && argc < 64; tok = strtok(NULL, " \n"))
		argv[argc++] = tok;
	return vmm_run_args_parse(argc, argv, &host, cfg, err, sizeof(err));
}

/* --scsi-controller: a controller without disks, repeatable, one bit per number. */
static void test_scsi_controllers(void **state)
{
	(void)state;
	struct vmm_run_config cfg;
	assert_int_equal(parse(&cfg, ""), 0);
	assert_int_equal(cfg.scsi_controllers, 0);
	vmm_run_config_free(&cfg);
	assert_int_equal(parse(&cfg, "--scsi-controller 3 --scsi-controller=0 --scsi-controller 3"),
			 0);
	assert_int_equal(cfg.scsi_controllers, 1u << 0 | 1u << 3);
	assert_int_equal(cfg.ndrives, 0);
	vmm_run_config_free(&cfg);
}

static void test_synic_modes(void **state)
{
	(void)state;
	const struct {
		const char *args;
		enum hyperv_synic_mode mode;
	} cases[] = { { "--synic auto", HYPERV_SYNIC_AUTO },
		      { "--synic kernel", HYPERV_SYNIC_KERNEL },
		      { "--synic=user", HYPERV_SYNIC_USER },
		      { "--synic off", HYPERV_SYNIC_OFF } };
	for (unsigned i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct vmm_run_config cfg;
		assert_int_equal(parse(&cfg, cases[i].args), 0);
		assert_int_equal(cfg.synic, cases[i].mode);
		vmm_run_config_free(&cfg);
	}
}

static void test_defaults(void **state)
{
	(void)state;
	struct vmm_run_config cfg;
	assert_int_equal(parse(&cfg, ""), 0);
	assert_false(cfg.help);
	assert_int_equal(cfg.gen, 1);
	assert_int_equal(cfg.memory_bytes, 1ull << 30);
	assert_int_equal(cfg.cpus, 1);
	assert_int_equal(cfg.ndrives, 0);
	assert_int_equal(cfg.nboot, 0);
	assert_int_equal(cfg.serial, VMM_SERIAL_NONE);
	assert_string_equal(cfg.firmware, "/usr/share/seabios/bios.bin");
	assert_null(cfg.kernel);
	assert_null(cfg.control);
	assert_false(cfg.no_reboot || cfg.test_exit || cfg.hugepages);
	assert_int_equal(cfg.synic, HYPERV_SYNIC_AUTO);
	vmm_run_config_free(&cfg);

	assert_null(cfg.uefi_vars);
	vmm_run_config_free(&cfg);

	assert_int_equal(parse(&cfg, "--gen 2"), 0);
	assert_string_equal(cfg.firmware, "/usr/share/OVMF/OVMF_CODE_4M.fd");
	assert_string_equal(cfg.uefi_vars, "/usr/share/OVMF/OVMF_VARS_4M.fd");
	vmm_run_config_free(&cfg);
	assert_int_equal(parse(&cfg, "--gen 2 --uefi-vars /x/VARS.ms.fd"), 0);
	assert_string_equal(cfg.uefi_vars, "/x/VARS.ms.fd");
	vmm_run_config_free(&cfg);
	/* none: the firmware image holds its own store */
	assert_int_equal(parse(&cfg, "--uefi-vars none --gen 2 --firmware OVMF.fd"), 0);
	assert_null(cfg.uefi_vars);
	assert_string_equal(cfg.firmware, "OVMF.fd");
	vmm_run_config_free(&cfg);
}

static void expect_drive(const struct vmm_drive *d, enum vmm_drive_kind kind, enum vmm_bus bus,
			 unsigned c, unsigned l, const char *path, bool ro,
			 enum vdisk_cache_mode cache)
{
	assert_int_equal(d->kind, kind);
	assert_int_equal(d->loc.bus, bus);
	assert_int_equal(d->loc.controller, c);
	assert_int_equal(d->loc.lun, l);
	if (path)
		assert_string_equal(d->path, path);
	else
		assert_null(d->path);
	assert_int_equal(d->read_only, ro);
	assert_int_equal(d->cache, cache);
}

static void test_every_option(void **state)
{
	(void)state;
	struct vmm_run_config cfg;
	assert_int_equal(parse(&cfg,
			       "--gen 1 --memory 512M --cpus 2 --disk ide:0:0=a.vhdx "
			       "--disk ide:0:1=b,,c.vhdx,ro,cache=writeback "
			       "--dvd ide:1:0=x.iso,cache=writeback --dvd ide:1:1 "
			       "--serial file:/tmp/com1.log --kernel vmlinuz --initrd initrd.img "
			       "--append console=ttyS0 --control /tmp/vm.sock --firmware fw.bin "
			       "--debugcon debug.log --no-reboot --test-exit --hugepages"),
			 0);
	assert_false(cfg.help);
	assert_int_equal(cfg.gen, 1);
	assert_int_equal(cfg.memory_bytes, 512ull << 20);
	assert_int_equal(cfg.cpus, 2);
	assert_int_equal(cfg.ndrives, 4);
	expect_drive(&cfg.drives[0], VMM_DRIVE_DISK, VMM_BUS_IDE, 0, 0, "a.vhdx", false,
		     VDISK_CACHE_DIRECT);
	expect_drive(&cfg.drives[1], VMM_DRIVE_DISK, VMM_BUS_IDE, 0, 1, "b,c.vhdx", true,
		     VDISK_CACHE_WRITEBACK);
	expect_drive(&cfg.drives[2], VMM_DRIVE_DVD, VMM_BUS_IDE, 1, 0, "x.iso", true,
		     VDISK_CACHE_WRITEBACK);
	expect_drive(&cfg.drives[3], VMM_DRIVE_DVD, VMM_BUS_IDE, 1, 1, NULL, true,
		     VDISK_CACHE_DIRECT);
	assert_int_equal(cfg.serial, VMM_SERIAL_FILE);
	assert_string_equal(cfg.serial_path, "/tmp/com1.log");
	assert_string_equal(cfg.kernel, "vmlinuz");
	assert_string_equal(cfg.initrd, "initrd.img");
	assert_string_equal(cfg.append, "console=ttyS0");
	assert_string_equal(cfg.control, "/tmp/vm.sock");
	assert_string_equal(cfg.firmware, "fw.bin");
	assert_string_equal(cfg.debugcon, "debug.log");
	assert_true(cfg.no_reboot && cfg.test_exit && cfg.hugepages);
	vmm_run_config_free(&cfg);
	assert_null(cfg.kernel);
}

static void test_values_after_equals_and_later_forms(void **state)
{
	(void)state;
	struct vmm_run_config cfg;
	/* --opt=value, the boot order, the other serial backends, SCSI on generation 2 */
	assert_int_equal(parse(&cfg, "--memory=2G --cpus=64 --disk=ide:1:1=d.raw --dvd ide:0:0=x "
				     "--boot=dvd,disk --serial=stdio"),
			 0);
	assert_int_equal(cfg.memory_bytes, 2ull << 30);
	assert_int_equal(cfg.cpus, 64);
	assert_int_equal(cfg.nboot, 2);
	assert_int_equal(cfg.boot[0], VMM_BOOT_DVD);
	assert_int_equal(cfg.boot[1], VMM_BOOT_DISK);
	assert_int_equal(cfg.serial, VMM_SERIAL_STDIO);
	expect_drive(&cfg.drives[0], VMM_DRIVE_DISK, VMM_BUS_IDE, 1, 1, "d.raw", false,
		     VDISK_CACHE_DIRECT);
	vmm_run_config_free(&cfg);

	assert_int_equal(parse(&cfg, "--serial unix:/tmp/com1.sock --boot disk --disk ide:0:0=a"),
			 0);
	assert_int_equal(cfg.serial, VMM_SERIAL_UNIX);
	assert_string_equal(cfg.serial_path, "/tmp/com1.sock");
	assert_int_equal(cfg.nboot, 1);
	assert_int_equal(cfg.boot[0], VMM_BOOT_DISK);
	vmm_run_config_free(&cfg);

	assert_int_equal(parse(&cfg, "--serial none --gen 2 --disk scsi:3:63=a,cache=direct "
				     "--dvd scsi:0:0=b --memory 16M"),
			 0);
	assert_int_equal(cfg.serial, VMM_SERIAL_NONE);
	assert_int_equal(cfg.memory_bytes, VMM_MIN_MEMORY);
	expect_drive(&cfg.drives[0], VMM_DRIVE_DISK, VMM_BUS_SCSI, 3, 63, "a", false,
		     VDISK_CACHE_DIRECT);
	expect_drive(&cfg.drives[1], VMM_DRIVE_DVD, VMM_BUS_SCSI, 0, 0, "b", true,
		     VDISK_CACHE_DIRECT);
	vmm_run_config_free(&cfg);
}

/* Every location of every controller at once: the limits are the limits. */
static void test_all_locations(void **state)
{
	(void)state;
	static char args[VMM_MAX_DRIVES][24];
	char *argv[VMM_MAX_DRIVES * 2 + 2];
	int argc = 0;
	argv[argc++] = "--gen";
	argv[argc++] = "2";
	for (unsigned c = 0; c < VMM_SCSI_CONTROLLERS; c++) {
		for (unsigned l = 0; l < VMM_SCSI_LOCATIONS; l++) {
			char *a = args[c * VMM_SCSI_LOCATIONS + l];
			snprintf(a, sizeof(args[0]), "scsi:%u:%u=d%u", c, l, l);
			argv[argc++] = "--disk";
			argv[argc++] = a;
		}
	}
	struct vmm_run_config cfg;
	assert_int_equal(vmm_run_args_parse(argc, argv, &host, &cfg, err, sizeof(err)), 0);
	assert_int_equal(cfg.ndrives, VMM_SCSI_CONTROLLERS * VMM_SCSI_LOCATIONS);
	vmm_run_config_free(&cfg);
}

static const struct {
	const char *args, *message;
} refusals[] = {
	{ "--frob", "unknown option '--frob'" },
	{ "--frob=1", "unknown option '--frob'" },
	{ "-x", "unknown option '-x'" },
	{ "stray", "unexpected argument 'stray': vmm run takes only options" },
	{ "--", "unexpected argument '--'" },
	{ "--memory", "--memory needs a value (SIZE)" },
	{ "--disk", "--disk needs a value (BUS:C:L=FILE)" },
	{ "--no-reboot=yes", "--no-reboot takes no value" },
	{ "--memory 1G --memory 2G", "--memory is given twice; give it once" },
	{ "--test-exit --test-exit", "--test-exit is given twice" },
	{ "--gen 3", "--gen '3' must be 1 (BIOS, IDE) or 2 (UEFI, SCSI)" },
	{ "--gen 01", "--gen '01' must be 1" },
	{ "--memory 1X", "--memory '1X' is not a size (examples: 512M, 1G)" },
	{ "--memory -1G", "--memory '-1G' is not a size" },
	{ "--memory 100000000000000000000", "--memory '100000000000000000000' is not a size" },
	{ "--memory 1000000", "--memory '1000000' is not a whole number of MiB" },
	{ "--memory 8M", "--memory 8 MiB is too small: a VM needs at least 16M" },
	{ "--memory 17M --hugepages", "--memory 17 MiB is not a multiple of 2M" },
	{ "--memory 2T", "--memory 2 TiB is more than this host can map (at most 1 TiB)" },
	{ "--memory 9G", "--memory 9 GiB is more than this host's RAM (8 GiB); give the VM less" },
	{ "--cpus 0", "--cpus '0' must be a whole number from 1 to 64" },
	{ "--synic on",
	  "--synic 'on' must be auto, kernel (KVM's SynIC), user (the VMM's) or off" },
	{ "--synic USER", "--synic 'USER' must be auto" },
	{ "--synic", "--synic needs a value (MODE)" },
	{ "--synic off --synic user", "--synic is given twice; give it once" },
	{ "--cpus 65", "--cpus '65' must be a whole number from 1 to 64" },
	{ "--cpus -1", "--cpus '-1' must be" },
	{ "--cpus 2x", "--cpus '2x' must be" },
	{ "--cpus 4294967298", "--cpus '4294967298' must be" },
	{ "--disk sata:0:0=a", "--disk 'sata:0:0' is not a location: write ide:C:L or scsi:C:L" },
	{ "--disk ide:0=a", "--disk 'ide:0' is not a location" },
	{ "--disk ide::0=a", "--disk 'ide::0' is not a location" },
	{ "--disk ide:0:0x=a", "--disk 'ide:0:0x' is not a location" },
	{ "--disk ide:+0:0=a", "--disk 'ide:+0:0' is not a location" },
	{ "--disk IDE:0:0=a", "--disk 'IDE:0:0' is not a location" },
	{ "--disk ide:2:0=a", "--disk 'ide:2:0': IDE controller 2 does not exist (0 to 1)" },
	{ "--disk ide:0:2=a", "--disk 'ide:0:2': IDE location 2 does not exist (0 to 1)" },
	{ "--dvd scsi:4:0=a", "--dvd 'scsi:4:0': SCSI controller 4 does not exist (0 to 3)" },
	{ "--disk scsi:0:64=a", "--disk 'scsi:0:64': SCSI location 64 does not exist (0 to 63)" },
	{ "--disk ide:0:0", "--disk ide:0:0 names no image: write --disk ide:0:0=FILE" },
	{ "--disk ide:0:0=", "--disk ide:0:0= names no image" },
	{ "--disk ide:0:0=,ro", "--disk ide:0:0= names no image" },
	{ "--dvd ide:1:0=", "--dvd ide:1:0= names no image: write --dvd ide:1:0=FILE" },
	{ "--disk ide:0:0=a,rw", "--disk ide:0:0: unknown setting 'rw' (ro, cache=direct, "
				 "cache=writeback)" },
	{ "--disk ide:0:0=a,", "--disk ide:0:0: unknown setting ''" },
	{ "--disk ide:0:0=a,cache=none", "--disk ide:0:0: unknown cache mode 'none' (direct, "
					 "writeback)" },
	{ "--disk ide:0:0=a --dvd ide:0:0=b", "--dvd ide:0:0: that location already holds the "
					      "drive of --disk ide:0:0; each location holds one "
					      "drive" },
	{ "--dvd ide:1:1 --disk ide:1:1=b", "--disk ide:1:1: that location already holds the drive "
					    "of --dvd ide:1:1" },
	{ "--gen 2 --disk ide:0:0=a", "--disk ide:0:0: generation 2 has no IDE controller; use "
				      "scsi:C:L" },
	{ "--dvd ide:1:0=a --gen 2", "--dvd ide:1:0: generation 2 has no IDE controller" },
	{ "--uefi-vars v.fd", "--uefi-vars is for generation 2 (UEFI); add --gen 2 or drop it" },
	{ "--gen 2 --synic off", "--synic off: generation 2's storage is synthetic SCSI on VMBus, "
				 "which needs the Hyper-V interface" },
	{ "--gen 2 --disk scsi:0:0=a --boot disk", "--boot: generation 2 boots with --kernel; its "
						   "UEFI firmware has no driver for synthetic "
						   "SCSI disks or DVDs" },
	{ "--gen 2 --uefi-vars", "--uefi-vars needs a value" },
	{ "--serial tcp:1", "--serial 'tcp:1' is not a serial backend (stdio, file:PATH, "
			    "unix:PATH, none)" },
	{ "--serial file:", "--serial file: needs a path: write --serial file:PATH" },
	{ "--serial unix:", "--serial unix: needs a path" },
	{ "--serial unix:/tmp/"
	  "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
	  "aaaa"
	  "aaaaaaaaaaaaaa",
	  "--serial: the socket path '/tmp/aaa" },
	{ "--control /tmp/"
	  "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
	  "aaaa"
	  "aaaaaaaaaaaaaa",
	  "is longer than 107 bytes; use a shorter one" },
	{ "--boot net", "--boot 'net': 'net' is not a boot device (disk, dvd, or a list such as "
			"dvd,disk)" },
	{ "--boot dvd,", "--boot 'dvd,': '' is not a boot device" },
	{ "--boot disk,disk", "--boot 'disk,disk' names disk twice" },
	{ "--boot dvd --disk ide:0:0=a", "--boot dvd: no DVD drive is attached; add --dvd "
					 "BUS:C:L=FILE" },
	{ "--boot dvd,disk --dvd ide:1:0", "--boot disk: no disk is attached; add --disk "
					   "BUS:C:L=FILE" },
	{ "--boot disk --disk ide:0:0=a --kernel k", "--boot and --kernel conflict" },
	{ "--initrd i", "--initrd needs --kernel" },
	{ "--append quiet", "--append needs --kernel" },
	{ "--kernel=", "--kernel needs a non-empty FILE" },
	{ "--scsi-controller 4", "--scsi-controller '4' must be a controller number from 0 to 3" },
	{ "--scsi-controller -1", "--scsi-controller '-1' must be a controller number" },
	{ "--scsi-controller=", "--scsi-controller '' must be a controller number" },
	{ "--scsi-controller 0x1", "--scsi-controller '0x1' must be a controller number" },
	{ "--firmware=", "--firmware needs a non-empty FILE" },
};

static void test_refusals(void **state)
{
	(void)state;
	for (unsigned i = 0; i < sizeof(refusals) / sizeof(refusals[0]); i++) {
		struct vmm_run_config cfg;
		int ret = parse(&cfg, refusals[i].args);
		if (ret != -EINVAL || !strstr(err, refusals[i].message))
			fail_msg("'%s': got %d '%s', expected -EINVAL '%s'", refusals[i].args, ret,
				 err, refusals[i].message);
		vmm_run_config_free(&cfg);
	}
}

static void test_help(void **state)
{
	(void)state;
	struct vmm_run_config cfg;
	/* --help wins over anything else on the line, even mistakes */
	assert_int_equal(parse(&cfg, "--memory 1X --help --frob"), 0);
	assert_true(cfg.help);
	vmm_run_config_free(&cfg);
	assert_int_equal(parse(&cfg, "-h"), 0);
	assert_true(cfg.help);
	vmm_run_config_free(&cfg);

	const char *help = vmm_run_help();
	static const char *const mentioned[] = { "Usage: vmm run",
						 "--gen 1|2",
						 "--memory SIZE",
						 "--cpus N",
						 "--hugepages",
						 "--firmware FILE",
						 "--synic auto|kernel|user|off",
						 "--disk BUS:C:L=FILE[,ro][,cache=MODE]",
						 "--dvd BUS:C:L[=FILE]",
						 "--boot disk|dvd|LIST",
						 "--kernel FILE",
						 "--initrd FILE",
						 "--append TEXT",
						 "--serial stdio|file:PATH|unix:PATH|none",
						 "--debugcon FILE",
						 "--control SOCK",
						 "--no-reboot",
						 "--test-exit",
						 "--help",
						 "ide:C:L",
						 "scsi:C:L",
						 "writeback",
						 "Exit statuses",
						 "64+(V&63)",
						 "Examples" };
	for (unsigned i = 0; i < sizeof(mentioned) / sizeof(mentioned[0]); i++)
		assert_contains(help, mentioned[i]);
	char port[16];
	snprintf(port, sizeof(port), "port 0x%X", GEN1_TEST_EXIT_PORT);
	assert_contains(help, port);
}

/* The examples in the help are joined (lines ending in a backslash) and must parse. */
static void test_help_examples_parse(void **state)
{
	(void)state;
	const char *line = strstr(vmm_run_help(), "Examples:\n");
	assert_non_null(line);
	char example[1024] = "";
	unsigned parsed = 0;
	for (line = strchr(line, '\n') + 1; *line; line = strchr(line, '\n') + 1) {
		size_t len = strcspn(line, "\n");
		char text[256];
		snprintf(text, sizeof(text), "%.*s", (int)len, line);
		bool more = len && text[len - 1] == '\\';
		if (more)
			text[len - 1] = 0;
		strncat(example, text, sizeof(example) - strlen(example) - 1);
		if (more)
			continue;
		const char *args = strstr(example, "vmm run ");
		assert_non_null(args);
		char unquoted[1024], *d = unquoted;
		for (const char *s = args + strlen("vmm run "); *s; s++)
			if (*s != '"')
				*d++ = *s;
		*d = 0;
		struct vmm_run_config cfg;
		if (parse(&cfg, unquoted) != 0)
			fail_msg("example '%s': %s", example, err);
		vmm_run_config_free(&cfg);
		parsed++;
		example[0] = 0;
	}
	assert_true(parsed >= 3);
}

static void test_location_format(void **state)
{
	(void)state;
	char text[VMM_LOCATION_TEXT_MAX];
	vmm_location_format(&(struct vmm_location){ VMM_BUS_IDE, 1, 0 }, text, sizeof(text));
	assert_string_equal(text, "ide:1:0");
	vmm_location_format(&(struct vmm_location){ VMM_BUS_SCSI, 3, 63 }, text, sizeof(text));
	assert_string_equal(text, "scsi:3:63");
}

/* The probe against /proc/meminfo, which counts a little less than the installed pages. */
static void test_host_limits(void **state)
{
	(void)state;
	struct vmm_host_limits lim;
	vmm_host_limits_probe(&lim);
	FILE *f = fopen("/proc/meminfo", "r");
	assert_non_null(f);
	unsigned long long kib = 0;
	assert_int_equal(fscanf(f, "MemTotal: %llu kB", &kib), 1);
	fclose(f);
	assert_true(lim.ram_bytes >= kib * 1024);
	assert_true(lim.ram_bytes - kib * 1024 < lim.ram_bytes / 5);
	assert_true(lim.map_bytes > 0 && lim.map_bytes <= 1ull << 46);
}

/* ---- vmm_run_config_check_files ---- */

static int check(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static int check(const char *fmt, ...)
{
	char args[2048];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(args, sizeof(args), fmt, ap);
	va_end(ap);
	struct vmm_run_config cfg;
	int ret = parse(&cfg, args);
	if (ret != 0)
		fail_msg("'%s' does not parse: %s", args, err);
	ret = vmm_run_config_check_files(&cfg, err, sizeof(err));
	vmm_run_config_free(&cfg);
	return ret;
}

static void test_check_files(void **state)
{
	(void)state;
	const char *a = test_path("a.raw"), *b = test_path("b.raw"),
		   *alias = test_path("a-link.raw");
	const char *fw = test_path("fw.bin"), *missing = test_path("missing.raw");
	test_write_file(a, 4096, 1);
	test_write_file(b, 4096, 2);
	test_write_file(fw, 4096, 3);
	unlink(alias);
	assert_int_equal(link(a, alias), 0);

	assert_int_equal(check("--firmware %s --disk ide:0:0=%s --disk ide:0:1=%s", fw, a, b), 0);
	assert_int_equal(
		check("--firmware %s --disk ide:0:0=%s,ro --disk ide:0:1=%s,ro", fw, a, alias), 0);
	assert_int_equal(check("--firmware %s --dvd ide:1:0 --kernel %s --initrd %s", fw, a, b), 0);

	assert_int_equal(check("--firmware %s --disk ide:0:0=%s", fw, missing), -ENOENT);
	assert_contains(err, "--disk ide:0:0 '");
	assert_contains(err, "missing.raw': No such file or directory");
	assert_int_equal(check("--firmware %s --dvd ide:1:0=%s", fw, test_tmpdir()), -EISDIR);
	assert_contains(err, "--dvd ide:1:0");
	assert_contains(err, "name a file, not a directory");
	assert_int_equal(check("--firmware %s", missing), -ENOENT);
	assert_contains(err, "--firmware '");
	assert_int_equal(check("--firmware %s --kernel %s", fw, missing), -ENOENT);
	assert_contains(err, "--kernel '");
	assert_int_equal(check("--firmware %s --kernel %s --initrd %s", fw, a, missing), -ENOENT);
	assert_contains(err, "--initrd '");

	/* one image behind two drives, one of them writing: the same file by another name too */
	assert_int_equal(check("--firmware %s --disk ide:0:0=%s --disk ide:1:1=%s", fw, a, a),
			 -EBUSY);
	assert_contains(err, "--disk ide:1:1: '");
	assert_contains(err, "is already attached at ide:0:0");
	assert_int_equal(
		check("--firmware %s --disk ide:0:0=%s,ro --disk ide:0:1=%s", fw, a, alias),
		-EBUSY);
	assert_int_equal(check("--firmware %s --disk ide:0:0=%s --dvd ide:1:0=%s", fw, a, alias),
			 -EBUSY);
	assert_contains(err, "--dvd ide:1:0");

	/* root may write anything: the permission check is only observable for other users */
	if (geteuid() != 0) {
		assert_int_equal(chmod(b, 0444), 0);
		assert_int_equal(check("--firmware %s --disk ide:0:0=%s", fw, b), -EACCES);
		assert_contains(err, "attach it read-only with ,ro");
		assert_int_equal(check("--firmware %s --disk ide:0:0=%s,ro", fw, b), 0);
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_defaults),
		cmocka_unit_test(test_synic_modes),
		cmocka_unit_test(test_scsi_controllers),
		cmocka_unit_test(test_every_option),
		cmocka_unit_test(test_values_after_equals_and_later_forms),
		cmocka_unit_test(test_all_locations),
		cmocka_unit_test(test_refusals),
		cmocka_unit_test(test_help),
		cmocka_unit_test(test_help_examples_parse),
		cmocka_unit_test(test_location_format),
		cmocka_unit_test(test_host_limits),
		cmocka_unit_test(test_check_files),
	};
	return cmocka_run_group_tests(tests, NULL, test_teardown_tmpdir);
}
