/* Direct Linux boot's pure half: the bzImage setup header parsed from images built here
 * with known values (and from a real Debian kernel when one is on the machine), every
 * refusal, the addresses chosen for RAM sizes around the limits, the header bytes patched
 * (checked at the offsets boot.rst gives, not through the module's own names), and the
 * fw_cfg items read back through the device's ports the way the loader ROM names them.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <glob.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "dev.h"
#include "endian.h"
#include "fw_cfg.h"
#include "gen1_layout.h"
#include "linux_boot.h"
#include "test_util.h"

#define MIB	   (1u << 20)
#define PAGE	   4096u
#define PM_BYTES   8192u /* the made-up protected-mode part */
#define PROTO_2_15 0x020F

/* The values a made-up kernel carries. */
struct image_spec {
	uint8_t setup_sects;
	uint16_t version;
	uint8_t loadflags;
	uint32_t syssize; /* 16-byte units */
	uint32_t code32_start;
	uint32_t initrd_addr_max;
	uint32_t kernel_alignment;
	uint8_t relocatable;
	uint32_t cmdline_size;
	uint64_t pref_address;
	uint32_t init_size;
	size_t pm_bytes;
};

static struct image_spec modern(void)
{
	return (struct image_spec){ .setup_sects = 27,
				    .version = PROTO_2_15,
				    .loadflags = 0x01,
				    .syssize = PM_BYTES / 16,
				    .code32_start = 0x100000,
				    .initrd_addr_max = 0x7FFFFFFF,
				    .kernel_alignment = 0x200000,
				    .relocatable = 1,
				    .cmdline_size = 2047,
				    .pref_address = 0x1000000,
				    .init_size = 0x100000,
				    .pm_bytes = PM_BYTES };
}

static size_t setup_bytes(const struct image_spec *s)
{
	return ((s->setup_sects ? s->setup_sects : 4u) + 1) * 512u;
}

/* A bzImage-shaped buffer: pattern everywhere, the header at the offsets boot.rst gives. */
static uint8_t *make_image(const struct image_spec *s, size_t *size)
{
	*size = setup_bytes(s) + s->pm_bytes;
	uint8_t *p = test_xmalloc(*size);
	test_fill_pattern(p, *size, 0, 0xB2);
	p[0x1F1] = s->setup_sects;
	store_le32(p + 0x1F4, s->syssize);
	store_le16(p + 0x1FA, 0x0000);
	store_le16(p + 0x1FE, 0xAA55);
	p[0x200] = 0xEB;
	p[0x201] = 0x6A;
	memcpy(p + 0x202, "HdrS", 4);
	store_le16(p + 0x206, s->version);
	p[0x210] = 0;
	p[0x211] = s->loadflags;
	store_le32(p + 0x214, s->code32_start);
	store_le32(p + 0x218, 0);
	store_le32(p + 0x21C, 0);
	store_le16(p + 0x224, 0);
	store_le32(p + 0x228, 0);
	store_le32(p + 0x22C, s->initrd_addr_max);
	store_le32(p + 0x230, s->kernel_alignment);
	p[0x234] = s->relocatable;
	store_le32(p + 0x238, s->cmdline_size);
	store_le64(p + 0x258, s->pref_address);
	store_le32(p + 0x260, s->init_size);
	return p;
}

static int parse_spec(const struct image_spec *s, struct linux_boot_header *h, char *err,
		      size_t err_size)
{
	size_t size;
	uint8_t *p = make_image(s, &size);
	int ret = linux_boot_parse(p, size, h, err, err_size);
	free(p);
	return ret;
}

/* ---- parsing ---- */

static void test_parse_modern(void **state)
{
	(void)state;
	struct image_spec s = modern();
	struct linux_boot_header h;
	char err[256] = "";
	assert_int_equal(parse_spec(&s, &h, err, sizeof(err)), 0);
	assert_int_equal(h.version, PROTO_2_15);
	assert_int_equal(h.setup_size, 28 * 512);
	assert_int_equal(h.kernel_size, PM_BYTES);
	assert_int_equal(h.loadflags, 0x01);
	assert_int_equal(h.code32_start, 0x100000);
	assert_int_equal(h.initrd_addr_max, 0x7FFFFFFF);
	assert_int_equal(h.kernel_alignment, 0x200000);
	assert_true(h.relocatable);
	assert_int_equal(h.cmdline_size, 2047);
	assert_int_equal(h.pref_address, 0x1000000);
	assert_int_equal(h.init_size, 0x100000);
}

/* setup_sects 0 means 4; protocol 2.06-2.09 has no pref_address or init_size. */
static void test_parse_defaults_and_older_protocol(void **state)
{
	(void)state;
	struct image_spec s = modern();
	s.setup_sects = 0;
	s.version = 0x0206;
	struct linux_boot_header h;
	char err[256];
	assert_int_equal(parse_spec(&s, &h, err, sizeof(err)), 0);
	assert_int_equal(h.setup_size, 5 * 512);
	assert_int_equal(h.pref_address, 0);
	assert_int_equal(h.init_size, 0);
}

/* A file longer than syssize says (Debian appends a signature) loads whole. */
static void test_parse_trailing_bytes(void **state)
{
	(void)state;
	struct image_spec s = modern();
	s.pm_bytes = PM_BYTES + 1472;
	struct linux_boot_header h;
	char err[256];
	assert_int_equal(parse_spec(&s, &h, err, sizeof(err)), 0);
	assert_int_equal(h.kernel_size, PM_BYTES + 1472);
}

static void expect_parse_refusal(const struct image_spec *s, const char *why)
{
	struct linux_boot_header h;
	char err[256] = "";
	assert_int_equal(parse_spec(s, &h, err, sizeof(err)), -EINVAL);
	assert_contains(err, why);
}

static void test_parse_refusals(void **state)
{
	(void)state;
	struct image_spec s = modern();
	s.version = 0x0205;
	expect_parse_refusal(&s, "boot protocol 2.05");
	s = modern();
	s.loadflags = 0;
	expect_parse_refusal(&s, "zImage");
	s = modern();
	s.setup_sects = 64; /* 65 sectors: over 32 KiB */
	expect_parse_refusal(&s, "real-mode setup");
	s = modern();
	s.syssize = PM_BYTES / 16 + 1;
	expect_parse_refusal(&s, "truncated");
	s = modern();
	s.pm_bytes = 0;
	s.syssize = 0;
	expect_parse_refusal(&s, "truncated");
	s = modern();
	s.kernel_alignment = 0x300000;
	expect_parse_refusal(&s, "not a power of two");
	s = modern();
	s.kernel_alignment = 0;
	expect_parse_refusal(&s, "not a power of two");
	s = modern();
	s.relocatable = 0;
	s.code32_start = 0x200000;
	expect_parse_refusal(&s, "not relocatable");
}

static void test_parse_not_linux(void **state)
{
	(void)state;
	struct image_spec s = modern();
	size_t size;
	uint8_t *p = make_image(&s, &size);
	struct linux_boot_header h;
	char err[256];
	assert_int_equal(linux_boot_parse(p, 0x205, &h, err, sizeof(err)), -EINVAL);
	assert_contains(err, "not a Linux kernel");
	memcpy(p + 0x202, "HdrT", 4);
	assert_int_equal(linux_boot_parse(p, size, &h, err, sizeof(err)), -EINVAL);
	assert_contains(err, "not a Linux kernel");
	memcpy(p + 0x202, "HdrS", 4);
	store_le16(p + 0x1FE, 0x55AA);
	assert_int_equal(linux_boot_parse(p, size, &h, err, sizeof(err)), -EINVAL);
	/* a file cut inside its setup */
	store_le16(p + 0x1FE, 0xAA55);
	assert_int_equal(linux_boot_parse(p, setup_bytes(&s) - 1, &h, err, sizeof(err)), -EINVAL);
	assert_contains(err, "truncated");
	free(p);
}

/* Fuzz the header bytes: whatever they hold, parse and plan return 0 or an error and
 * never read past the buffer (the sanitizer build checks). */
static void test_parse_hostile_headers(void **state)
{
	(void)state;
	uint64_t seed = test_env_seed("LINUX_BOOT_SEED");
	struct image_spec s = modern();
	size_t size;
	uint8_t *p = make_image(&s, &size);
	for (int i = 0; i < 20000; i++) {
		uint8_t *q = test_xmalloc(size);
		memcpy(q, p, size);
		for (int j = 0; j < 6; j++)
			q[0x1F1 + test_rnd_below(&seed, 0x80)] = (uint8_t)test_rnd(&seed);
		size_t cut = (size_t)test_rnd_below(&seed, size + 1);
		struct linux_boot_header h;
		struct linux_boot_layout l;
		char err[256];
		if (linux_boot_parse(q, cut, &h, err, sizeof(err)) == 0) {
			assert_true(h.setup_size <= LINUX_BOOT_MAX_SETUP);
			assert_true(h.setup_size + h.kernel_size == cut);
			(void)linux_boot_plan(&h, test_rnd(&seed) & 0xFFFFFFFF,
					      (size_t)test_rnd_below(&seed, 5000),
					      test_rnd_below(&seed, 1ull << 32), &l, err,
					      sizeof(err));
		}
		free(q);
	}
	free(p);
}

/* A real kernel, when the machine has one: /boot, or the nested rig's cache. */
static const char *find_real_kernel(glob_t *g)
{
	const char *home = getenv("HOME");
	char rig[512];
	snprintf(rig, sizeof(rig), "%s/.cache/hvstack-rig/*/vmlinuz", home ? home : "/root");
	if (glob("/boot/vmlinuz-*", 0, NULL, g) == 0 && g->gl_pathc)
		return g->gl_pathv[0];
	globfree(g);
	if (glob(rig, 0, NULL, g) == 0 && g->gl_pathc)
		return g->gl_pathv[0];
	return NULL;
}

static void test_parse_real_kernel(void **state)
{
	(void)state;
	glob_t g = { 0 };
	const char *path = find_real_kernel(&g);
	if (!path) {
		globfree(&g);
		print_message("no /boot/vmlinuz-* or rig vmlinuz here: skipped\n");
		skip();
	}
	uint8_t *p;
	size_t size;
	assert_int_equal(linux_boot_read_file(path, LINUX_BOOT_MAX_KERNEL_FILE, &p, &size), 0);
	struct linux_boot_header h;
	char err[256] = "";
	if (linux_boot_parse(p, size, &h, err, sizeof(err)) != 0)
		fail_msg("%s: %s", path, err);
	assert_true(h.version >= 0x0206);
	assert_int_equal(h.setup_size, (p[0x1F1] + 1u) * 512u);
	assert_int_equal(h.kernel_size, size - h.setup_size);
	assert_true(h.kernel_size >= load_le32(p + 0x1F4) * 16ull);
	/* its version string sits where kernel_version points, inside the setup */
	uint16_t kver = load_le16(p + 0x20E);
	assert_true(kver + 0x200u < h.setup_size);
	assert_true(p[kver + 0x200] >= '2' && p[kver + 0x200] <= '9');

	/* A 35 MiB initrd (the rig's size) in 512 MiB: above the kernel's start-up footprint,
	 * below initrd_addr_max; in 64 MiB the kernel alone does not fit. */
	struct linux_boot_layout l;
	uint32_t initrd = 35 * MIB;
	assert_int_equal(linux_boot_plan(&h, 512ull * MIB, 20, initrd, &l, err, sizeof(err)), 0);
	assert_true(l.initrd_addr >= h.pref_address + h.init_size);
	assert_true((uint64_t)l.initrd_addr + initrd - 1 <= h.initrd_addr_max);
	assert_true((uint64_t)l.initrd_addr + initrd <= 511ull * MIB);
	assert_int_equal(linux_boot_plan(&h, 64ull * MIB, 20, initrd, &l, err, sizeof(err)),
			 -ENOSPC);
	free(p);
	globfree(&g);
}

/* ---- addresses ---- */

static struct linux_boot_header modern_header(void)
{
	struct image_spec s = modern();
	struct linux_boot_header h;
	char err[256];
	assert_int_equal(parse_spec(&s, &h, err, sizeof(err)), 0);
	return h;
}

static void test_plan_fixed_addresses(void **state)
{
	(void)state;
	struct linux_boot_header h = modern_header();
	struct linux_boot_layout l;
	char err[256];
	assert_int_equal(linux_boot_plan(&h, 64ull * MIB, 13, 0, &l, err, sizeof(err)), 0);
	assert_int_equal(l.setup_addr, 0x10000);
	assert_int_equal(l.cmdline_addr, 0x20000);
	assert_int_equal(l.kernel_addr, 0x100000);
	assert_int_equal(l.cmdline_len, 14);
	assert_int_equal(l.initrd_addr, 0);
	assert_int_equal(l.initrd_size, 0);
	/* relocatable: runs from max(align_up(1 MiB, 2 MiB), pref_address) for init_size */
	assert_int_equal(l.kernel_end, 0x1000000 + 0x100000);
}

/* RAM is the limit: the initrd ends a byte short of RAM less the firmware's reserve. The
 * smallest RAM that holds it, and a page less. */
static void test_plan_initrd_ram_boundary(void **state)
{
	(void)state;
	struct linux_boot_header h = modern_header();
	struct linux_boot_layout l;
	char err[512] = "";
	const uint32_t size = 10 * MIB;
	const uint64_t kernel_end = 17 * MIB;
	uint64_t ram = kernel_end + size + LINUX_BOOT_FW_RESERVE + PAGE;
	assert_int_equal(linux_boot_plan(&h, ram, 0, size, &l, err, sizeof(err)), 0);
	assert_int_equal(l.initrd_addr, kernel_end);
	assert_int_equal(l.initrd_size, size);
	assert_int_equal(l.initrd_limit, ram - LINUX_BOOT_FW_RESERVE - 1);
	assert_int_equal(linux_boot_plan(&h, ram - PAGE, 0, size, &l, err, sizeof(err)), -ENOSPC);
	assert_contains(err, "does not fit");
	assert_contains(err, "give the VM more memory");

	/* A size that is not a page multiple still starts on a page. */
	assert_int_equal(linux_boot_plan(&h, 256ull * MIB, 0, size + 3, &l, err, sizeof(err)), 0);
	assert_int_equal(l.initrd_addr % PAGE, 0);
	assert_true((uint64_t)l.initrd_addr + size + 3 <= 255ull * MIB - 1);
	assert_true((uint64_t)l.initrd_addr + size + 3 > 255ull * MIB - 1 - PAGE);
}

/* initrd_addr_max is the limit (3 GiB of RAM below 4 GiB): the initrd ends in the page of
 * initrd_addr_max, where the loader ROM leaves it. */
static void test_plan_initrd_addr_max_limit(void **state)
{
	(void)state;
	struct linux_boot_header h = modern_header();
	struct linux_boot_layout l;
	char err[512];
	const uint32_t size = 33 * MIB + 5;
	assert_int_equal(linux_boot_plan(&h, GEN1_PCI_HOLE_START, 0, size, &l, err, sizeof(err)),
			 0);
	assert_int_equal(l.initrd_limit, 0x7FFFFFFF);
	assert_int_equal(l.initrd_addr, (0x7FFFFFFFu - size) & ~(PAGE - 1));
	assert_int_equal((l.initrd_addr + size) & ~(PAGE - 1), 0x7FFFF000);
	assert_true((uint64_t)l.initrd_addr + size - 1 <= 0x7FFFFFFF);

	/* A smaller initrd_addr_max (an old kernel's 0x37FFFFFF) the same way. */
	h.initrd_addr_max = 0x37FFFFFF;
	assert_int_equal(linux_boot_plan(&h, 2048ull * MIB, 0, size, &l, err, sizeof(err)), 0);
	assert_int_equal((l.initrd_addr + size) & ~(PAGE - 1), 0x37FFF000);
}

/* An initrd_addr_max that is not the last byte of a page: whether the ROM keeps the initrd
 * depends on the size; when it would not, the boot is refused rather than the initrd
 * moved above initrd_addr_max. */
static void test_plan_odd_initrd_addr_max(void **state)
{
	(void)state;
	struct linux_boot_header h = modern_header();
	h.initrd_addr_max = 0x01FFF7FF;
	struct linux_boot_layout l;
	char err[512] = "";
	assert_int_equal(linux_boot_plan(&h, 64ull * MIB, 0, 0x1000, &l, err, sizeof(err)), 0);
	assert_int_equal((l.initrd_addr + 0x1000) & ~(PAGE - 1), 0x01FFF000);
	assert_int_equal(linux_boot_plan(&h, 64ull * MIB, 0, 0x1800, &l, err, sizeof(err)),
			 -ENOSPC);
	assert_contains(err, "initrd_addr_max");
	/* Below RAM's own limit the ROM moves it anyway, and that is fine. */
	assert_int_equal(linux_boot_plan(&h, 30ull * MIB, 0, 0x1800, &l, err, sizeof(err)), 0);
}

static void test_plan_kernel_does_not_fit(void **state)
{
	(void)state;
	struct linux_boot_header h = modern_header();
	struct linux_boot_layout l;
	char err[512] = "";
	/* needs RAM to 17 MiB plus the reserve */
	assert_int_equal(linux_boot_plan(&h, 18ull * MIB, 0, 0, &l, err, sizeof(err)), 0);
	assert_int_equal(linux_boot_plan(&h, 18ull * MIB - PAGE, 0, 0, &l, err, sizeof(err)),
			 -ENOSPC);
	assert_contains(err, "the kernel needs RAM up to 17.0 MiB");
	assert_int_equal(linux_boot_plan(&h, 0, 0, 0, &l, err, sizeof(err)), -ENOSPC);

	/* not relocatable, no init_size (2.06): only the image at 1 MiB counts */
	struct image_spec s = modern();
	s.version = 0x0206;
	s.relocatable = 0;
	assert_int_equal(parse_spec(&s, &h, err, sizeof(err)), 0);
	assert_int_equal(linux_boot_plan(&h, 16ull * MIB, 0, 0, &l, err, sizeof(err)), 0);
	assert_int_equal(l.kernel_end, 0x100000 + PM_BYTES);
}

static void test_plan_cmdline_length(void **state)
{
	(void)state;
	struct linux_boot_header h = modern_header();
	struct linux_boot_layout l;
	char err[512] = "";
	assert_int_equal(linux_boot_plan(&h, 64ull * MIB, 2047, 0, &l, err, sizeof(err)), 0);
	assert_int_equal(l.cmdline_len, 2048);
	assert_int_equal(linux_boot_plan(&h, 64ull * MIB, 2048, 0, &l, err, sizeof(err)), -E2BIG);
	assert_contains(err, "2048 characters");
	/* a kernel that claims more than fits between 0x20000 and the heap's end gets 64 KiB */
	h.cmdline_size = 0xFFFFFFFF;
	assert_int_equal(linux_boot_plan(&h, 64ull * MIB, 0x10000 - 1, 0, &l, err, sizeof(err)), 0);
	assert_int_equal(linux_boot_plan(&h, 64ull * MIB, 0x10000, 0, &l, err, sizeof(err)),
			 -E2BIG);
}

/* ---- patching ---- */

static void test_patch_setup(void **state)
{
	(void)state;
	struct image_spec s = modern();
	size_t size;
	uint8_t *orig = make_image(&s, &size);
	struct linux_boot_header h;
	struct linux_boot_layout l;
	char err[256];
	assert_int_equal(linux_boot_parse(orig, size, &h, err, sizeof(err)), 0);
	assert_int_equal(linux_boot_plan(&h, 128ull * MIB, 5, 3 * MIB, &l, err, sizeof(err)), 0);
	uint8_t *setup = test_xmalloc(h.setup_size);
	memcpy(setup, orig, h.setup_size);
	linux_boot_patch_setup(setup, &h, &l);

	assert_int_equal(load_le16(setup + 0x1FA), 0xFFFF);	   /* vid_mode: normal */
	assert_int_equal(setup[0x210], 0xFF);			   /* type_of_loader */
	assert_int_equal(setup[0x211], 0x81);			   /* LOADED_HIGH | CAN_USE_HEAP */
	assert_int_equal(load_le32(setup + 0x214), 0x100000);	   /* code32_start */
	assert_int_equal(load_le32(setup + 0x218), l.initrd_addr); /* ramdisk_image */
	assert_int_equal(load_le32(setup + 0x21C), 3 * MIB);	   /* ramdisk_size */
	assert_int_equal(load_le16(setup + 0x224), 0x20000 - 0x10000 - 0x200); /* heap_end_ptr */
	assert_int_equal(load_le32(setup + 0x228), 0x20000);		       /* cmd_line_ptr */
	/* nothing else moved */
	static const struct {
		unsigned off, len;
	} written[] = { { 0x1FA, 2 }, { 0x210, 2 }, { 0x214, 12 }, { 0x224, 2 }, { 0x228, 4 } };
	for (size_t i = 0; i < sizeof(written) / sizeof(written[0]); i++)
		memcpy(setup + written[i].off, orig + written[i].off, written[i].len);
	test_expect_equal(setup, orig, h.setup_size, "setup outside the written fields", 0);
	free(setup);
	free(orig);
}

/* ---- the option ROM ---- */

static uint8_t *make_rom(size_t sectors)
{
	uint8_t *rom = test_xmalloc(sectors * 512);
	test_fill_pattern(rom, sectors * 512, 0, 0x50);
	rom[0] = 0x55;
	rom[1] = 0xAA;
	rom[2] = (uint8_t)sectors;
	uint8_t sum = 0;
	rom[sectors * 512 - 1] = 0;
	for (size_t i = 0; i < sectors * 512; i++)
		sum += rom[i];
	rom[sectors * 512 - 1] = (uint8_t)-sum;
	return rom;
}

static void test_check_rom(void **state)
{
	(void)state;
	char err[256] = "";
	uint8_t *rom = make_rom(3);
	assert_int_equal(linux_boot_check_rom(rom, 3 * 512, err, sizeof(err)), 0);
	assert_int_equal(linux_boot_check_rom(rom, 3 * 512 - 1, err, sizeof(err)), -EINVAL);
	assert_contains(err, "header says 1536 bytes");
	assert_int_equal(linux_boot_check_rom(rom, 2, err, sizeof(err)), -EINVAL);
	rom[100] ^= 1;
	assert_int_equal(linux_boot_check_rom(rom, 3 * 512, err, sizeof(err)), -EINVAL);
	assert_contains(err, "checksum");
	rom[100] ^= 1;
	rom[2] = 0;
	assert_int_equal(linux_boot_check_rom(rom, 3 * 512, err, sizeof(err)), -EINVAL);
	rom[0] = 0;
	assert_int_equal(linux_boot_check_rom(rom, 3 * 512, err, sizeof(err)), -EINVAL);
	assert_contains(err, "signature");
	free(rom);

	/* Debian's, when installed */
	uint8_t *real;
	size_t size;
	if (linux_boot_read_file(LINUX_BOOT_DEFAULT_ROM, LINUX_BOOT_MAX_ROM_FILE, &real, &size) ==
	    0) {
		if (linux_boot_check_rom(real, size, err, sizeof(err)) != 0)
			fail_msg("%s: %s", LINUX_BOOT_DEFAULT_ROM, err);
		free(real);
	}
}

/* ---- fw_cfg ---- */

struct rig {
	struct guest_mem mem;
	uint8_t *ram;
	struct dev_bus bus;
	struct fw_cfg *fw;
};

static void rig_init(struct rig *r)
{
	memset(r, 0, sizeof(*r));
	r->ram = test_xmalloc(MIB);
	assert_int_equal(guest_mem_add(&r->mem, 0, MIB, r->ram), 0);
	dev_bus_init(&r->bus);
	assert_int_equal(fw_cfg_create(&r->mem, &r->fw), 0);
	assert_int_equal(fw_cfg_register(r->fw, &r->bus, GEN1_FW_CFG_PORT), 0);
}

static void rig_fini(struct rig *r)
{
	fw_cfg_destroy(r->fw);
	dev_bus_destroy(&r->bus);
	free(r->ram);
}

/* An item's bytes through the selector and data ports. */
static void read_item(struct rig *r, uint16_t key, void *buf, size_t len)
{
	dev_bus_write(&r->bus, DEV_PIO, GEN1_FW_CFG_PORT, 2, key);
	uint8_t *p = buf;
	for (size_t i = 0; i < len; i++)
		p[i] = (uint8_t)dev_bus_read(&r->bus, DEV_PIO, GEN1_FW_CFG_PORT + 1, 1);
}

static uint32_t read_u32(struct rig *r, uint16_t key)
{
	uint8_t b[4];
	read_item(r, key, b, sizeof(b));
	return load_le32(b);
}

/* The item's size is what it holds: one byte more reads as the 0 past its end. */
static void expect_item(struct rig *r, uint16_t key, const void *want, size_t len, const char *what)
{
	uint8_t *got = test_xmalloc(len + 1);
	read_item(r, key, got, len + 1);
	test_expect_equal(got, want, len, what, 0);
	assert_int_equal(got[len], 0);
	free(got);
}

/* A made-up kernel and ROM published on a fresh fw_cfg with initrd and cmdline. */
struct published {
	uint8_t *kernel, *rom;
	struct linux_boot_input in;
	struct linux_boot_header h;
	struct linux_boot_layout l;
	struct rig r;
};

static void publish(struct published *p, const uint8_t *initrd, size_t initrd_size,
		    const char *cmdline)
{
	struct image_spec s = modern();
	size_t ksize;
	p->kernel = make_image(&s, &ksize);
	p->rom = make_rom(3);
	p->in = (struct linux_boot_input){ .kernel = p->kernel,
					   .kernel_size = ksize,
					   .initrd = initrd,
					   .initrd_size = initrd_size,
					   .cmdline = cmdline,
					   .rom = p->rom,
					   .rom_size = 3 * 512 };
	char err[256];
	assert_int_equal(linux_boot_parse(p->kernel, ksize, &p->h, err, sizeof(err)), 0);
	assert_int_equal(linux_boot_plan(&p->h, 256ull * MIB, cmdline ? strlen(cmdline) : 0,
					 initrd_size, &p->l, err, sizeof(err)),
			 0);
	rig_init(&p->r);
	assert_int_equal(linux_boot_publish(p->r.fw, &p->in, &p->h, &p->l), 0);
}

static void unpublish(struct published *p)
{
	rig_fini(&p->r);
	free(p->rom);
	free(p->kernel);
}

static void test_publish_items(void **state)
{
	(void)state;
	const size_t isize = 300 * 1024 + 1;
	uint8_t *initrd = test_xmalloc(isize);
	test_fill_pattern(initrd, isize, 0, 0x1D);
	const char *cmdline = "console=ttyS0 quiet";
	struct published p;
	publish(&p, initrd, isize, cmdline);
	struct rig *r = &p.r;

	/* in the order the ROM reads them */
	assert_int_equal(read_u32(r, 0x16), 0x10000);
	assert_int_equal(read_u32(r, 0x17), p.h.setup_size);
	uint8_t *setup = test_xmalloc(p.h.setup_size);
	memcpy(setup, p.kernel, p.h.setup_size);
	linux_boot_patch_setup(setup, &p.h, &p.l);
	expect_item(r, 0x18, setup, p.h.setup_size, "setup data");
	assert_int_equal(read_u32(r, 0x0A), p.l.initrd_addr);
	assert_int_equal(read_u32(r, 0x0B), isize);
	expect_item(r, 0x12, initrd, isize, "initrd data");
	assert_int_equal(read_u32(r, 0x07), 0x100000);
	assert_int_equal(read_u32(r, 0x08), PM_BYTES);
	expect_item(r, 0x11, p.kernel + p.h.setup_size, PM_BYTES, "kernel data");
	assert_int_equal(read_u32(r, 0x13), 0x20000);
	assert_int_equal(read_u32(r, 0x14), strlen(cmdline) + 1);
	expect_item(r, 0x15, cmdline, strlen(cmdline) + 1, "command line");
	uint8_t rom_back[3 * 512];
	assert_int_equal(
		fw_cfg_read_file(r->fw, "genroms/linuxboot_dma.bin", rom_back, sizeof(rom_back)),
		3 * 512);
	test_expect_equal(rom_back, p.rom, sizeof(rom_back), "ROM file", 0);
	/* publishing twice is refused by fw_cfg, not duplicated */
	assert_int_equal(linux_boot_publish(r->fw, &p.in, &p.h, &p.l), -EEXIST);
	unpublish(&p);
	free(setup);
	free(initrd);
}

/* No initrd and no command line: zero address and size, an empty string. */
static void test_publish_without_initrd(void **state)
{
	(void)state;
	struct published p;
	publish(&p, NULL, 0, NULL);
	assert_int_equal(read_u32(&p.r, 0x0A), 0);
	assert_int_equal(read_u32(&p.r, 0x0B), 0);
	assert_int_equal(read_u32(&p.r, 0x14), 1);
	expect_item(&p.r, 0x15, "", 1, "empty command line");
	unpublish(&p);
}

/* ---- files ---- */

static void test_read_file(void **state)
{
	(void)state;
	uint8_t *buf;
	size_t len;
	assert_int_equal(linux_boot_read_file(test_path("missing"), 100, &buf, &len), -ENOENT);
	assert_null(buf);
	assert_int_equal(linux_boot_read_file(test_tmpdir(), 100, &buf, &len), -EINVAL);
	const char *path = test_path("file");
	test_write_file(path, 5000, 0xF11E);
	assert_int_equal(linux_boot_read_file(path, 4999, &buf, &len), -EFBIG);
	assert_null(buf);
	assert_int_equal(len, 5000);
	assert_int_equal(linux_boot_read_file(path, 5000, &buf, &len), 0);
	assert_int_equal(len, 5000);
	test_expect_pattern(buf, len, 0, 0xF11E, "file read back");
	free(buf);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_parse_modern),
		cmocka_unit_test(test_parse_defaults_and_older_protocol),
		cmocka_unit_test(test_parse_trailing_bytes),
		cmocka_unit_test(test_parse_refusals),
		cmocka_unit_test(test_parse_not_linux),
		cmocka_unit_test(test_parse_hostile_headers),
		cmocka_unit_test(test_parse_real_kernel),
		cmocka_unit_test(test_plan_fixed_addresses),
		cmocka_unit_test(test_plan_initrd_ram_boundary),
		cmocka_unit_test(test_plan_initrd_addr_max_limit),
		cmocka_unit_test(test_plan_odd_initrd_addr_max),
		cmocka_unit_test(test_plan_kernel_does_not_fit),
		cmocka_unit_test(test_plan_cmdline_length),
		cmocka_unit_test(test_patch_setup),
		cmocka_unit_test(test_check_rom),
		cmocka_unit_test(test_publish_items),
		cmocka_unit_test(test_publish_without_initrd),
		cmocka_unit_test(test_read_file),
	};
	return cmocka_run_group_tests(tests, NULL, test_teardown_tmpdir);
}
