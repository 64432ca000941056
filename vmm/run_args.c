#include "run_args.h"

#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "gen1_layout.h"
#include "size.h"

#define STRINGIFY_(x)  #x
#define STRINGIFY(x)   STRINGIFY_(x)
#define TEST_EXIT_PORT STRINGIFY(GEN1_TEST_EXIT_PORT)

#define DEFAULT_MEMORY (1ull << 30)
#define MEMORY_UNIT    (1ull << 20) /* guest RAM is a whole number of MiB */
#define HUGEPAGE_SIZE  (2ull << 20)
/* Half of x86-64's 47-bit user address space: the rest stays for the VMM itself. */
#define MAX_MAPPABLE (1ull << 46)

/* clang-format off: one line of help per line of source */
static const char help_text[] =
	"Usage: vmm run [OPTIONS]\n"
	"\n"
	"Runs a virtual machine until it powers off.\n"
	"\n"
	"Machine:\n"
	"  --gen 1|2            generation: 1 is BIOS with IDE, 2 is UEFI with SCSI (default 1)\n"
	"  --memory SIZE        guest RAM, a whole number of MiB, at least 16M (default 1G)\n"
	"  --cpus N             virtual processors, 1 to 64 (default 1)\n"
	"  --hugepages          back guest RAM with 2M huge pages (SIZE then a multiple of 2M)\n"
	"  --firmware FILE      firmware image (default " VMM_DEFAULT_FW_GEN1 " for\n"
	"                       generation 1, " VMM_DEFAULT_FW_GEN2 " for generation 2)\n"
	"  --uefi-vars FILE|none\n"
	"                       generation 2: the UEFI variable store the firmware starts from\n"
	"                       (default " VMM_DEFAULT_UEFI_VARS "; OVMF_VARS_4M.ms.fd has\n"
	"                       Secure Boot on); the file is not changed, variables the guest\n"
	"                       sets last until the VM stops; none for a --firmware image\n"
	"                       that holds its own store\n"
	"  --synic auto|kernel|user|off\n"
	"                       the Hyper-V interface (CPUID, MSRs, hypercalls, SynIC) that\n"
	"                       VMBus needs: kernel is KVM's SynIC, user the VMM's own, auto\n"
	"                       (default) kernel when KVM has it, off none at all\n"
	"\n"
	"Storage (BUS:C:L names a controller and a location on it):\n"
	"  --disk BUS:C:L=FILE[,ro][,cache=MODE]\n"
	"                       attach a raw, VHD or VHDX image; ro attaches it read-only; MODE\n"
	"                       is direct (default, bypasses the host page cache) or writeback\n"
	"  --dvd BUS:C:L[=FILE] attach a DVD drive holding an ISO image (empty without FILE)\n"
	"  --boot disk|dvd|LIST boot order, for example dvd,disk (default: the firmware's);\n"
	"                       generation 1 only\n"
	"    BUS:C:L is ide:C:L for generation 1 (C and L 0 or 1), or scsi:C:L (C 0 to 3,\n"
	"    L 0 to 63; synthetic SCSI on VMBus, both generations). Write a comma in FILE\n"
	"    twice (\",,\").\n"
	"  --scsi-controller N  a SCSI controller N (0 to 3) even without disks, for disks\n"
	"                       attached later with 'vmm ctl SOCK scsi-add'\n"
	"\n"
	"Direct kernel boot (instead of booting from a drive; on generation 2 the way to\n"
	"boot, as the UEFI firmware has no driver for synthetic SCSI):\n"
	"  --kernel FILE        a Linux kernel (bzImage; generation 2 runs it as an EFI program)\n"
	"  --initrd FILE        its initial RAM disk (needs --kernel)\n"
	"  --append TEXT        its command line (needs --kernel)\n"
	"\n"
	"Console, control and testing:\n"
	"  --serial stdio|file:PATH|unix:PATH|none\n"
	"                       where COM1 goes (default none); unix:PATH listens on a socket\n"
	"  --debugcon FILE      write the firmware's debug port output to FILE\n"
	"  --control SOCK       accept 'vmm ctl SOCK ...' requests on a Unix socket\n"
	"  --no-reboot          end the run (status 1) when the guest resets\n"
	"  --test-exit          let the guest end the run by writing a byte V to "
	"port " TEST_EXIT_PORT "\n"
	"  --stats              at the end, print VM exits and each drive's I/O counters as\n"
	"                       one JSON line on stderr\n"
	"  -h, --help           show this help\n"
	"\n"
	"Exit statuses:\n"
	"  0          the guest powered off, or 'vmm ctl SOCK quit'\n"
	"  1          the guest reset and --no-reboot was given\n"
	"  2          the VMM failed (a message says why)\n"
	"  3          the command line is wrong\n"
	"  64+(V&63)  the guest wrote V to the test-exit port (--test-exit)\n"
	"\n"
	"Examples:\n"
	"  vmm run --gen 1 --memory 1G --cpus 2 --disk ide:0:0=disk.vhdx \\\n"
	"          --dvd ide:1:0=install.iso --boot dvd,disk --serial stdio\n"
	"  vmm run --memory 512M --disk ide:0:0=base.vhdx,ro \\\n"
	"          --disk ide:0:1=data.vhdx,cache=writeback --control /run/vm1.sock\n"
	"  vmm run --memory 256M --kernel vmlinuz --initrd initrd.img \\\n"
	"          --append \"console=ttyS0\" --serial stdio --no-reboot\n"
	"  vmm run --gen 2 --cpus 2 --kernel vmlinuz --initrd initrd.img \\\n"
	"          --append \"console=ttyS0\" --disk scsi:0:0=data.vhdx \\\n"
	"          --dvd scsi:0:1=tools.iso --serial stdio\n";
/* clang-format on */

const char *vmm_run_help(void)
{
	return help_text;
}

const char *vmm_default_firmware(unsigned gen)
{
	return gen == 2 ? VMM_DEFAULT_FW_GEN2 : VMM_DEFAULT_FW_GEN1;
}

void vmm_location_format(const struct vmm_location *loc, char *out, size_t out_size)
{
	snprintf(out, out_size, "%s:%u:%u", loc->bus == VMM_BUS_IDE ? "ide" : "scsi",
		 loc->controller, loc->lun);
}

void vmm_host_limits_probe(struct vmm_host_limits *out)
{
	long pages = sysconf(_SC_PHYS_PAGES), page = sysconf(_SC_PAGESIZE);
	out->ram_bytes = pages > 0 && page > 0 ? (uint64_t)pages * (uint64_t)page : UINT64_MAX;
	out->map_bytes = MAX_MAPPABLE;
	struct rlimit as;
	if (getrlimit(RLIMIT_AS, &as) == 0 && as.rlim_cur != RLIM_INFINITY &&
	    as.rlim_cur < out->map_bytes)
		out->map_bytes = as.rlim_cur;
}

/* ---- the parser ---- */

struct parser {
	struct vmm_run_config *cfg;
	const struct vmm_host_limits *host;
	char *err;
	size_t err_size;
};

struct run_option {
	const char *name;  /* without the leading "--" */
	const char *value; /* what the value is called in messages; NULL for a flag */
	int (*apply)(struct parser *p, const struct run_option *opt, const char *value);
	size_t field; /* the char * or bool the generic handlers set */
	bool repeatable;
};

static int fail(struct parser *p, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static int fail(struct parser *p, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(p->err, p->err_size, fmt, ap);
	va_end(ap);
	return -EINVAL;
}

/* A decimal number without sign, spaces or leading junk, at most max. */
static bool parse_decimal(const char *text, size_t len, unsigned max, unsigned *out)
{
	if (len == 0 || len > 9)
		return false;
	unsigned v = 0;
	for (size_t i = 0; i < len; i++) {
		if (text[i] < '0' || text[i] > '9')
			return false;
		v = v * 10 + (unsigned)(text[i] - '0');
	}
	if (v > max)
		return false;
	*out = v;
	return true;
}

static int set_string(struct parser *p, char **field, const char *text, size_t len)
{
	free(*field);
	*field = strndup(text, len);
	if (!*field)
		return fail(p, "out of memory");
	return 0;
}

static int opt_string(struct parser *p, const struct run_option *opt, const char *value)
{
	if (!*value)
		return fail(p, "--%s needs a non-empty %s", opt->name, opt->value);
	return set_string(p, (char **)((char *)p->cfg + opt->field), value, strlen(value));
}

static int opt_flag(struct parser *p, const struct run_option *opt, const char *value)
{
	(void)value;
	*(bool *)((char *)p->cfg + opt->field) = true;
	return 0;
}

static int opt_gen(struct parser *p, const struct run_option *opt, const char *value)
{
	(void)opt;
	if (!strcmp(value, "1") || !strcmp(value, "2")) {
		p->cfg->gen = (unsigned)(value[0] - '0');
		return 0;
	}
	return fail(p, "--gen '%s' must be 1 (BIOS, IDE) or 2 (UEFI, SCSI)", value);
}

static int opt_memory(struct parser *p, const struct run_option *opt, const char *value)
{
	(void)opt;
	int ret = size_parse(value, &p->cfg->memory_bytes);
	if (ret == 0 && p->cfg->memory_bytes % MEMORY_UNIT == 0)
		return 0;
	if (ret == 0)
		return fail(p, "--memory '%s' is not a whole number of MiB (examples: 512M, 1G)",
			    value);
	return fail(p, "--memory '%s' is not a size (examples: 512M, 1G)", value);
}

static int opt_scsi_controller(struct parser *p, const struct run_option *opt, const char *value)
{
	unsigned n;
	if (!parse_decimal(value, strlen(value), VMM_SCSI_CONTROLLERS - 1, &n))
		return fail(p, "--%s '%s' must be a controller number from 0 to %u", opt->name,
			    value, VMM_SCSI_CONTROLLERS - 1);
	p->cfg->scsi_controllers |= 1u << n;
	return 0;
}

static int opt_cpus(struct parser *p, const struct run_option *opt, const char *value)
{
	(void)opt;
	if (parse_decimal(value, strlen(value), VMM_MAX_CPUS, &p->cfg->cpus) && p->cfg->cpus)
		return 0;
	return fail(p, "--cpus '%s' must be a whole number from 1 to %u", value, VMM_MAX_CPUS);
}

/* "ide:C:L" or "scsi:C:L", len bytes of text. */
static int parse_location(struct parser *p, const char *opt, const char *text, size_t len,
			  struct vmm_location *loc)
{
	static const struct {
		const char *prefix, *name;
		enum vmm_bus bus;
		unsigned controllers, locations;
	} buses[] = {
		{ "ide:", "IDE", VMM_BUS_IDE, VMM_IDE_CONTROLLERS, VMM_IDE_LOCATIONS },
		{ "scsi:", "SCSI", VMM_BUS_SCSI, VMM_SCSI_CONTROLLERS, VMM_SCSI_LOCATIONS },
	};
	for (unsigned i = 0; i < sizeof(buses) / sizeof(buses[0]); i++) {
		size_t plen = strlen(buses[i].prefix);
		if (len < plen || strncmp(text, buses[i].prefix, plen))
			continue;
		const char *c = text + plen, *end = text + len;
		const char *colon = memchr(c, ':', (size_t)(end - c));
		if (!colon || !parse_decimal(c, (size_t)(colon - c), 999, &loc->controller) ||
		    !parse_decimal(colon + 1, (size_t)(end - colon - 1), 999, &loc->lun))
			break;
		loc->bus = buses[i].bus;
		if (loc->controller >= buses[i].controllers)
			return fail(p, "--%s '%.*s': %s controller %u does not exist (0 to %u)",
				    opt, (int)len, text, buses[i].name, loc->controller,
				    buses[i].controllers - 1);
		if (loc->lun >= buses[i].locations)
			return fail(p, "--%s '%.*s': %s location %u does not exist (0 to %u)", opt,
				    (int)len, text, buses[i].name, loc->lun,
				    buses[i].locations - 1);
		return 0;
	}
	return fail(p, "--%s '%.*s' is not a location: write ide:C:L or scsi:C:L", opt, (int)len,
		    text);
}

/* Copies the image path (",," stands for a comma) from *text up to the first single comma,
 * leaving *text on that comma or the end. */
static int take_path(struct parser *p, const char **text, char **out)
{
	const char *s = *text;
	char *path = malloc(strlen(s) + 1), *d = path;
	if (!path)
		return fail(p, "out of memory");
	while (*s && !(s[0] == ',' && s[1] != ',')) {
		*d++ = *s;
		s += s[0] == ',' ? 2 : 1;
	}
	*d = 0;
	*text = s;
	*out = path;
	return 0;
}

static int apply_drive_setting(struct parser *p, const char *opt, const char *loc,
			       struct vmm_drive *drive, const char *setting, size_t len)
{
	static const char cache[] = "cache=";
	size_t clen = strlen(cache);
	if (len == 2 && !strncmp(setting, "ro", 2)) {
		drive->read_only = true;
		return 0;
	}
	if (len > clen && !strncmp(setting, cache, clen)) {
		const char *mode = setting + clen;
		if (len - clen == 6 && !strncmp(mode, "direct", 6))
			drive->cache = VDISK_CACHE_DIRECT;
		else if (len - clen == 9 && !strncmp(mode, "writeback", 9))
			drive->cache = VDISK_CACHE_WRITEBACK;
		else
			return fail(p, "--%s %s: unknown cache mode '%.*s' (direct, writeback)",
				    opt, loc, (int)(len - clen), mode);
		return 0;
	}
	return fail(p, "--%s %s: unknown setting '%.*s' (ro, cache=direct, cache=writeback)", opt,
		    loc, (int)len, setting);
}

static const char *drive_option(enum vmm_drive_kind kind)
{
	return kind == VMM_DRIVE_DVD ? "dvd" : "disk";
}

static int refuse_taken_location(struct parser *p, const char *opt, const struct vmm_drive *d)
{
	const struct vmm_run_config *cfg = p->cfg;
	for (unsigned i = 0; i < cfg->ndrives; i++) {
		const struct vmm_location *o = &cfg->drives[i].loc;
		if (o->bus != d->loc.bus || o->controller != d->loc.controller ||
		    o->lun != d->loc.lun)
			continue;
		char loc[VMM_LOCATION_TEXT_MAX];
		vmm_location_format(o, loc, sizeof(loc));
		return fail(p,
			    "--%s %s: that location already holds the drive of --%s %s; each "
			    "location holds one drive",
			    opt, loc, drive_option(cfg->drives[i].kind), loc);
	}
	return 0;
}

/* Stores a drive in the configuration, which from then on owns its path. */
static struct vmm_drive *store_drive(struct parser *p, const struct vmm_drive *d)
{
	struct vmm_drive *stored = &p->cfg->drives[p->cfg->ndrives++];
	*stored = *d;
	return stored;
}

/* FILE[,SETTING...] after the '=' of --disk/--dvd LOCATION=. */
static int parse_drive_file(struct parser *p, const char *opt, const char *loc, struct vmm_drive *d,
			    const char *text)
{
	if (!*d->path)
		return fail(p, "--%s %s= names no image: write --%s %s=FILE", opt, loc, opt, loc);
	while (*text == ',') {
		const char *setting = text + 1;
		text = setting + strcspn(setting, ",");
		int ret = apply_drive_setting(p, opt, loc, d, setting, (size_t)(text - setting));
		if (ret < 0)
			return ret;
	}
	if (d->kind == VMM_DRIVE_DVD)
		d->read_only = true;
	return 0;
}

static int add_drive(struct parser *p, enum vmm_drive_kind kind, const char *value)
{
	const char *opt = drive_option(kind);
	struct vmm_drive d = { .kind = kind, .read_only = kind == VMM_DRIVE_DVD };
	const char *eq = strchr(value, '=');
	int ret = parse_location(p, opt, value, eq ? (size_t)(eq - value) : strlen(value), &d.loc);
	if (ret == 0)
		ret = refuse_taken_location(p, opt, &d);
	if (ret < 0)
		return ret;
	char loc[VMM_LOCATION_TEXT_MAX];
	vmm_location_format(&d.loc, loc, sizeof(loc));
	if (!eq && kind == VMM_DRIVE_DISK)
		return fail(p, "--disk %s names no image: write --disk %s=FILE", loc, loc);
	if (!eq) {
		store_drive(p, &d);
		return 0;
	}
	const char *rest = eq + 1;
	ret = take_path(p, &rest, &d.path);
	if (ret < 0)
		return ret;
	return parse_drive_file(p, opt, loc, store_drive(p, &d), rest);
}

static int opt_disk(struct parser *p, const struct run_option *opt, const char *value)
{
	(void)opt;
	return add_drive(p, VMM_DRIVE_DISK, value);
}

static int opt_dvd(struct parser *p, const struct run_option *opt, const char *value)
{
	(void)opt;
	return add_drive(p, VMM_DRIVE_DVD, value);
}

/* A Unix socket path must fit sun_path with its NUL. */
static int check_socket_path(struct parser *p, const char *opt, const char *path)
{
	if (strlen(path) < sizeof(((struct sockaddr_un *)0)->sun_path))
		return 0;
	return fail(p, "--%s: the socket path '%s' is longer than %zu bytes; use a shorter one",
		    opt, path, sizeof(((struct sockaddr_un *)0)->sun_path) - 1);
}

static int opt_serial(struct parser *p, const struct run_option *opt, const char *value)
{
	static const struct {
		const char *text;
		enum vmm_serial_kind kind;
		bool has_path;
	} kinds[] = { { "none", VMM_SERIAL_NONE, false },
		      { "stdio", VMM_SERIAL_STDIO, false },
		      { "file:", VMM_SERIAL_FILE, true },
		      { "unix:", VMM_SERIAL_UNIX, true } };
	for (unsigned i = 0; i < sizeof(kinds) / sizeof(kinds[0]); i++) {
		size_t n = strlen(kinds[i].text);
		if (kinds[i].has_path ? strncmp(value, kinds[i].text, n)
				      : strcmp(value, kinds[i].text))
			continue;
		p->cfg->serial = kinds[i].kind;
		if (!kinds[i].has_path)
			return 0;
		if (!value[n])
			return fail(p, "--serial %s needs a path: write --serial %sPATH", value,
				    value);
		if (kinds[i].kind == VMM_SERIAL_UNIX) {
			int ret = check_socket_path(p, opt->name, value + n);
			if (ret < 0)
				return ret;
		}
		return set_string(p, &p->cfg->serial_path, value + n, strlen(value + n));
	}
	return fail(p, "--serial '%s' is not a serial backend (stdio, file:PATH, unix:PATH, none)",
		    value);
}

static int opt_control(struct parser *p, const struct run_option *opt, const char *value)
{
	int ret = check_socket_path(p, opt->name, value);
	return ret < 0 ? ret : opt_string(p, opt, value);
}

static int opt_boot(struct parser *p, const struct run_option *opt, const char *value)
{
	(void)opt;
	struct vmm_run_config *cfg = p->cfg;
	const char *s = value;
	cfg->nboot = 0;
	for (;;) {
		size_t len = strcspn(s, ",");
		enum vmm_boot_device dev;
		if (len == 4 && !strncmp(s, "disk", 4))
			dev = VMM_BOOT_DISK;
		else if (len == 3 && !strncmp(s, "dvd", 3))
			dev = VMM_BOOT_DVD;
		else
			return fail(
				p,
				"--boot '%s': '%.*s' is not a boot device (disk, dvd, or a list "
				"such as dvd,disk)",
				value, (int)len, s);
		for (unsigned i = 0; i < cfg->nboot; i++)
			if (cfg->boot[i] == dev)
				return fail(p, "--boot '%s' names %.*s twice", value, (int)len, s);
		cfg->boot[cfg->nboot++] = dev;
		if (!s[len])
			return 0;
		s += len + 1;
	}
}

static int opt_synic(struct parser *p, const struct run_option *opt, const char *value)
{
	(void)opt;
	static const struct {
		const char *name;
		enum hyperv_synic_mode mode;
	} modes[] = { { "auto", HYPERV_SYNIC_AUTO },
		      { "kernel", HYPERV_SYNIC_KERNEL },
		      { "user", HYPERV_SYNIC_USER },
		      { "off", HYPERV_SYNIC_OFF } };
	for (unsigned i = 0; i < sizeof(modes) / sizeof(modes[0]); i++) {
		if (!strcmp(value, modes[i].name)) {
			p->cfg->synic = modes[i].mode;
			return 0;
		}
	}
	return fail(p, "--synic '%s' must be auto, kernel (KVM's SynIC), user (the VMM's) or off",
		    value);
}

#define FIELD(name) offsetof(struct vmm_run_config, name)

static const struct run_option options[] = {
	{ "gen", "GENERATION", opt_gen, 0, false },
	{ "memory", "SIZE", opt_memory, 0, false },
	{ "cpus", "N", opt_cpus, 0, false },
	{ "disk", "BUS:C:L=FILE", opt_disk, 0, true },
	{ "dvd", "BUS:C:L[=FILE]", opt_dvd, 0, true },
	{ "scsi-controller", "N", opt_scsi_controller, 0, true },
	{ "boot", "ORDER", opt_boot, 0, false },
	{ "serial", "BACKEND", opt_serial, 0, false },
	{ "kernel", "FILE", opt_string, FIELD(kernel), false },
	{ "initrd", "FILE", opt_string, FIELD(initrd), false },
	{ "append", "TEXT", opt_string, FIELD(append), false },
	{ "control", "SOCK", opt_control, FIELD(control), false },
	{ "firmware", "FILE", opt_string, FIELD(firmware), false },
	{ "uefi-vars", "FILE", opt_string, FIELD(uefi_vars), false },
	{ "synic", "MODE", opt_synic, 0, false },
	{ "debugcon", "FILE", opt_string, FIELD(debugcon), false },
	{ "no-reboot", NULL, opt_flag, FIELD(no_reboot), false },
	{ "test-exit", NULL, opt_flag, FIELD(test_exit), false },
	{ "hugepages", NULL, opt_flag, FIELD(hugepages), false },
	{ "stats", NULL, opt_flag, FIELD(stats), false },
};
#define NOPTIONS (sizeof(options) / sizeof(options[0]))
_Static_assert(NOPTIONS <= 32, "the seen mask has 32 bits");

static const struct run_option *find_option(const char *name, size_t len)
{
	for (unsigned i = 0; i < NOPTIONS; i++)
		if (strlen(options[i].name) == len && !strncmp(options[i].name, name, len))
			return &options[i];
	return NULL;
}

/* Applies argv[*i] (and its value, which may be the next argument), advancing *i. */
static int parse_one(struct parser *p, int argc, char *const *argv, int *i, uint32_t *seen)
{
	const char *arg = argv[*i];
	if (arg[0] != '-' || !strcmp(arg, "--"))
		return fail(p, "unexpected argument '%s': vmm run takes only options", arg);
	if (arg[1] != '-')
		return fail(p, "unknown option '%s'", arg);
	const char *name = arg + 2, *eq = strchr(name, '=');
	size_t len = eq ? (size_t)(eq - name) : strlen(name);
	const struct run_option *opt = find_option(name, len);
	if (!opt)
		return fail(p, "unknown option '%.*s'", (int)(len + 2), arg);
	uint32_t bit = 1u << (opt - options);
	if ((*seen & bit) && !opt->repeatable)
		return fail(p, "--%s is given twice; give it once", opt->name);
	*seen |= bit;
	const char *value = eq ? eq + 1 : NULL;
	if (!opt->value && value)
		return fail(p, "--%s takes no value", opt->name);
	if (opt->value && !value) {
		if (*i + 1 >= argc)
			return fail(p, "--%s needs a value (%s)", opt->name, opt->value);
		value = argv[++*i];
	}
	(*i)++;
	return opt->apply(p, opt, value);
}

static int check_memory(struct parser *p)
{
	const struct vmm_run_config *cfg = p->cfg;
	char want[32], have[32];
	size_format(cfg->memory_bytes, want, sizeof(want));
	if (cfg->memory_bytes < VMM_MIN_MEMORY)
		return fail(p, "--memory %s is too small: a VM needs at least 16M", want);
	if (cfg->hugepages && cfg->memory_bytes % HUGEPAGE_SIZE)
		return fail(p, "--memory %s is not a multiple of 2M, which --hugepages needs",
			    want);
	if (cfg->memory_bytes > p->host->map_bytes) {
		size_format(p->host->map_bytes, have, sizeof(have));
		return fail(p, "--memory %s is more than this host can map (at most %s)", want,
			    have);
	}
	if (cfg->memory_bytes > p->host->ram_bytes) {
		size_format(p->host->ram_bytes, have, sizeof(have));
		return fail(p, "--memory %s is more than this host's RAM (%s); give the VM less",
			    want, have);
	}
	return 0;
}

static int check_drives(struct parser *p)
{
	const struct vmm_run_config *cfg = p->cfg;
	for (unsigned i = 0; i < cfg->ndrives; i++) {
		const struct vmm_drive *d = &cfg->drives[i];
		if (cfg->gen != 2 || d->loc.bus != VMM_BUS_IDE)
			continue;
		return fail(p, "--%s ide:%u:%u: generation 2 has no IDE controller; use scsi:C:L",
			    drive_option(d->kind), d->loc.controller, d->loc.lun);
	}
	return 0;
}

static bool has_drive(const struct vmm_run_config *cfg, enum vmm_drive_kind kind)
{
	for (unsigned i = 0; i < cfg->ndrives; i++)
		if (cfg->drives[i].kind == kind)
			return true;
	return false;
}

static int check_boot(struct parser *p)
{
	const struct vmm_run_config *cfg = p->cfg;
	if (cfg->nboot && cfg->gen == 2)
		return fail(p, "--boot: generation 2 boots with --kernel; its UEFI firmware has no "
			       "driver for synthetic SCSI disks or DVDs");
	if (cfg->nboot && cfg->kernel)
		return fail(p, "--boot and --kernel conflict: --kernel starts the kernel without "
			       "the firmware's boot order; drop one");
	for (unsigned i = 0; i < cfg->nboot; i++) {
		enum vmm_drive_kind kind =
			cfg->boot[i] == VMM_BOOT_DVD ? VMM_DRIVE_DVD : VMM_DRIVE_DISK;
		if (!has_drive(cfg, kind))
			return fail(p, "--boot %s: no %s is attached; add --%s BUS:C:L=FILE",
				    drive_option(kind),
				    kind == VMM_DRIVE_DVD ? "DVD drive" : "disk",
				    drive_option(kind));
	}
	if (cfg->initrd && !cfg->kernel)
		return fail(p, "--initrd needs --kernel");
	if (cfg->append && !cfg->kernel)
		return fail(p, "--append needs --kernel");
	return 0;
}

/* Generation 2's store defaults to OVMF's empty one; generation 1's firmware has none. */
static int check_uefi_vars(struct parser *p)
{
	struct vmm_run_config *cfg = p->cfg;
	if (cfg->gen == 1 && cfg->uefi_vars)
		return fail(p, "--uefi-vars is for generation 2 (UEFI); add --gen 2 or drop it");
	if (cfg->gen == 1)
		return 0;
	if (cfg->synic == HYPERV_SYNIC_OFF)
		return fail(p, "--synic off: generation 2's storage is synthetic SCSI on VMBus, "
			       "which needs the Hyper-V interface");
	if (!cfg->uefi_vars)
		return set_string(p, &cfg->uefi_vars, VMM_DEFAULT_UEFI_VARS,
				  strlen(VMM_DEFAULT_UEFI_VARS));
	if (strcmp(cfg->uefi_vars, "none"))
		return 0;
	free(cfg->uefi_vars);
	cfg->uefi_vars = NULL;
	return 0;
}

/* What no single option can check: how options combine, and the host's limits. */
static int check_config(struct parser *p)
{
	int ret = check_memory(p);
	if (ret == 0)
		ret = check_drives(p);
	if (ret == 0)
		ret = check_boot(p);
	if (ret == 0)
		ret = check_uefi_vars(p);
	if (ret == 0 && !p->cfg->firmware)
		ret = set_string(p, &p->cfg->firmware, vmm_default_firmware(p->cfg->gen),
				 strlen(vmm_default_firmware(p->cfg->gen)));
	return ret;
}

static bool asks_for_help(int argc, char *const *argv)
{
	for (int i = 0; i < argc; i++)
		if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h"))
			return true;
	return false;
}

int vmm_run_args_parse(int argc, char *const *argv, const struct vmm_host_limits *host,
		       struct vmm_run_config *cfg, char *err, size_t err_size)
{
	struct parser p = { .cfg = cfg, .host = host, .err = err, .err_size = err_size };
	memset(cfg, 0, sizeof(*cfg));
	cfg->gen = 1;
	cfg->memory_bytes = DEFAULT_MEMORY;
	cfg->cpus = 1;
	cfg->serial = VMM_SERIAL_NONE;
	cfg->synic = HYPERV_SYNIC_AUTO;
	if (err_size)
		err[0] = 0;
	if (asks_for_help(argc, argv)) {
		cfg->help = true;
		return 0;
	}
	uint32_t seen = 0;
	for (int i = 0; i < argc;) {
		int ret = parse_one(&p, argc, argv, &i, &seen);
		if (ret < 0)
			return ret;
	}
	return check_config(&p);
}

void vmm_run_config_free(struct vmm_run_config *cfg)
{
	for (unsigned i = 0; i < cfg->ndrives; i++)
		free(cfg->drives[i].path);
	char **strings[] = { &cfg->serial_path, &cfg->kernel,	&cfg->initrd,	&cfg->append,
			     &cfg->control,	&cfg->firmware, &cfg->debugcon, &cfg->uefi_vars };
	for (unsigned i = 0; i < sizeof(strings) / sizeof(strings[0]); i++) {
		free(*strings[i]);
		*strings[i] = NULL;
	}
	cfg->ndrives = 0;
}

/* ---- files ---- */

static int check_file(const char *what, const char *path, bool writable, struct stat *st, char *err,
		      size_t err_size)
{
	int ret = 0;
	if (stat(path, st) < 0)
		ret = -errno;
	else if (S_ISDIR(st->st_mode))
		ret = -EISDIR;
	else if (access(path, writable ? R_OK | W_OK : R_OK) < 0)
		ret = -errno;
	if (ret == 0)
		return 0;
	const char *hint = "";
	if (ret == -EISDIR)
		hint = "; name a file, not a directory";
	else if ((ret == -EACCES || ret == -EROFS) && writable)
		hint = "; attach it read-only with ,ro or fix its permissions";
	snprintf(err, err_size, "%s '%s': %s%s", what, path, strerror(-ret), hint);
	return ret;
}

static int check_drive_files(const struct vmm_run_config *cfg, char *err, size_t err_size)
{
	struct stat st[VMM_MAX_DRIVES];
	for (unsigned i = 0; i < cfg->ndrives; i++) {
		const struct vmm_drive *d = &cfg->drives[i];
		if (!d->path)
			continue;
		char what[32 + VMM_LOCATION_TEXT_MAX], loc[VMM_LOCATION_TEXT_MAX];
		vmm_location_format(&d->loc, loc, sizeof(loc));
		snprintf(what, sizeof(what), "--%s %s", drive_option(d->kind), loc);
		int ret = check_file(what, d->path, !d->read_only, &st[i], err, err_size);
		if (ret < 0)
			return ret;
		for (unsigned j = 0; j < i; j++) {
			const struct vmm_drive *o = &cfg->drives[j];
			if (!o->path || st[j].st_dev != st[i].st_dev ||
			    st[j].st_ino != st[i].st_ino || (d->read_only && o->read_only))
				continue;
			char oloc[VMM_LOCATION_TEXT_MAX];
			vmm_location_format(&o->loc, oloc, sizeof(oloc));
			snprintf(err, err_size,
				 "%s: '%s' is already attached at %s; an image written through one "
				 "drive cannot be attached twice",
				 what, d->path, oloc);
			return -EBUSY;
		}
	}
	return 0;
}

int vmm_run_config_check_files(const struct vmm_run_config *cfg, char *err, size_t err_size)
{
	const struct {
		const char *what, *path;
	} files[] = { { "--kernel", cfg->kernel },
		      { "--initrd", cfg->initrd },
		      { "--firmware", cfg->firmware },
		      { "--uefi-vars", cfg->uefi_vars } };
	struct stat st;
	for (unsigned i = 0; i < sizeof(files) / sizeof(files[0]); i++) {
		if (!files[i].path)
			continue;
		int ret = check_file(files[i].what, files[i].path, false, &st, err, err_size);
		if (ret < 0)
			return ret;
	}
	return check_drive_files(cfg, err, err_size);
}
