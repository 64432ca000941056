/* CMOS and RTC through ports 0x70/0x71, with a clock the test sets. Memory fields are
 * judged by decoding them the way SeaBIOS and OVMF do (REFERENCES-FIRMWARE §2.3, §3.3):
 * that decoding must give back the configured RAM. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <stdlib.h>

#include "cmos.h"
#include "gen1_layout.h"
#include "platform_test.h"

#define MIB (UINT64_C(1) << 20)
#define GIB (UINT64_C(1) << 30)
/* 2024-02-29 13:45:56 UTC, a Thursday */
#define LEAP_DAY 1709214356

struct rig {
	struct dev_bus bus;
	struct cmos *cmos;
	int64_t sec;
	long nsec;
};

static void fixed_clock(void *opaque, int64_t *sec, long *nsec)
{
	struct rig *r = opaque;
	*sec = r->sec;
	*nsec = r->nsec;
}

static struct rig *rig_new(uint64_t ram, unsigned cpus)
{
	struct rig *r = calloc(1, sizeof(*r));
	dev_bus_init(&r->bus);
	r->sec = LEAP_DAY;
	struct cmos_config cfg = { .bus = &r->bus,
				   .ram_bytes = ram,
				   .cpus = cpus,
				   .boot_order = { CMOS_BOOT_CDROM, CMOS_BOOT_DISK },
				   .clock = fixed_clock,
				   .clock_opaque = r };
	assert_int_equal(cmos_create(&cfg, &r->cmos), 0);
	return r;
}

static void rig_free(struct rig *r)
{
	cmos_destroy(r->cmos);
	dev_bus_destroy(&r->bus);
	free(r);
}

static int setup(void **state)
{
	*state = rig_new(512 * MIB, 2);
	return 0;
}

static int teardown(void **state)
{
	rig_free(*state);
	return 0;
}

static uint8_t cmos_get(struct rig *r, uint8_t index)
{
	bus_outb(&r->bus, 0x70, index);
	return bus_inb(&r->bus, 0x71);
}

static void cmos_set(struct rig *r, uint8_t index, uint8_t v)
{
	bus_outb(&r->bus, 0x70, index);
	bus_outb(&r->bus, 0x71, v);
}

/* ---- configuration bytes ---- */

static uint64_t seabios_low_ram(struct rig *r)
{
	uint64_t above_16m = cmos_get(r, 0x34) | (uint64_t)cmos_get(r, 0x35) << 8;
	if (above_16m)
		return above_16m * 65536 + 16 * MIB;
	return (cmos_get(r, 0x30) | (uint64_t)cmos_get(r, 0x31) << 8) * 1024 + MIB;
}

static uint64_t seabios_high_ram(struct rig *r)
{
	return (cmos_get(r, 0x5B) | (uint64_t)cmos_get(r, 0x5C) << 8 |
		(uint64_t)cmos_get(r, 0x5D) << 16) *
	       65536;
}

static void test_memory_fields_for_several_sizes(void **state)
{
	(void)state;
	static const uint64_t sizes[] = { 15 * MIB, 16 * MIB, 128 * MIB,	  512 * MIB,
					  3 * GIB,  4 * GIB,  8 * GIB + 64 * 1024 };
	for (size_t i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++) {
		struct rig *r = rig_new(sizes[i], 1);
		uint64_t low = sizes[i] < GEN1_PCI_HOLE_START ? sizes[i] : GEN1_PCI_HOLE_START;
		assert_int_equal(seabios_low_ram(r), low);
		assert_int_equal(seabios_high_ram(r), sizes[i] - low);
		/* base memory 640 KiB; extended memory in KiB above 1 MiB, capped at 0xFFFF */
		assert_int_equal(cmos_get(r, 0x15) | cmos_get(r, 0x16) << 8, 640);
		uint64_t ext = (low - MIB) / 1024 > 0xFFFF ? 0xFFFF : (low - MIB) / 1024;
		assert_int_equal(cmos_get(r, 0x17) | cmos_get(r, 0x18) << 8, ext);
		assert_int_equal(cmos_get(r, 0x30) | cmos_get(r, 0x31) << 8, ext);
		rig_free(r);
	}
}

static void test_checksum_cpus_and_boot_order(void **state)
{
	struct rig *r = *state;
	unsigned sum = 0;
	for (uint8_t i = 0x10; i < 0x2E; i++)
		sum += cmos_get(r, i);
	assert_int_equal(cmos_get(r, 0x2E) << 8 | cmos_get(r, 0x2F), sum);
	assert_int_equal(cmos_get(r, 0x5F) + 1, 2);
	/* SeaBIOS: nibbles of CMOS[0x3D] | (CMOS[0x38] & 0xF0) << 4, low nibble first */
	unsigned order = cmos_get(r, 0x3D) | (cmos_get(r, 0x38) & 0xF0u) << 4;
	assert_int_equal(order & 0xF, CMOS_BOOT_CDROM);
	assert_int_equal(order >> 4 & 0xF, CMOS_BOOT_DISK);
	assert_int_equal(order >> 8, 0);
}

static void test_invalid_configurations(void **state)
{
	(void)state;
	struct dev_bus bus;
	dev_bus_init(&bus);
	struct cmos *c;
	struct cmos_config cfg = { .bus = &bus, .ram_bytes = 64 * MIB, .cpus = 0 };
	assert_int_equal(cmos_create(&cfg, &c), -EINVAL);
	cfg.cpus = 257;
	assert_int_equal(cmos_create(&cfg, &c), -EINVAL);
	cfg.cpus = 1;
	cfg.boot_order[1] = CMOS_BOOT_DISK; /* after an empty first slot */
	assert_int_equal(cmos_create(&cfg, &c), -EINVAL);
	cfg.boot_order[0] = 9;
	assert_int_equal(cmos_create(&cfg, &c), -EINVAL);
	cfg.boot_order[0] = CMOS_BOOT_NETWORK;
	assert_int_equal(cmos_create(&cfg, &c), 0);
	struct cmos *again;
	assert_int_equal(cmos_create(&cfg, &again), -EEXIST); /* ports taken */
	cmos_destroy(c);
	dev_bus_destroy(&bus);
}

/* ---- the clock ---- */

static void expect_time(struct rig *r, const uint8_t want[8])
{
	static const uint8_t regs[8] = { 0x00, 0x02, 0x04, 0x06, 0x07, 0x08, 0x09, 0x32 };
	for (int i = 0; i < 8; i++)
		if (cmos_get(r, regs[i]) != want[i])
			fail_msg("register 0x%02x: 0x%02x, expected 0x%02x", regs[i],
				 cmos_get(r, regs[i]), want[i]);
}

static void test_bcd_binary_and_12_hour(void **state)
{
	struct rig *r = *state;
	/* sec, min, hour, weekday (Sunday = 1), day, month, year, century */
	static const uint8_t bcd[8] = { 0x56, 0x45, 0x13, 0x05, 0x29, 0x02, 0x24, 0x20 };
	static const uint8_t binary[8] = { 56, 45, 13, 5, 29, 2, 24, 20 };
	assert_int_equal(cmos_get(r, 0x0B), 0x02); /* 24-hour BCD */
	expect_time(r, bcd);
	cmos_set(r, 0x0B, 0x06);
	expect_time(r, binary);
	cmos_set(r, 0x0B, 0x04); /* binary, 12-hour: 13h is 1 PM */
	assert_int_equal(cmos_get(r, 0x04), 0x81);
	cmos_set(r, 0x0B, 0x00);
	assert_int_equal(cmos_get(r, 0x04), 0x81);
	r->sec = LEAP_DAY - 13 * 3600 - 45 * 60 - 56; /* midnight: 12 AM */
	assert_int_equal(cmos_get(r, 0x04), 0x12);
	r->sec += 12 * 3600; /* noon: 12 PM */
	assert_int_equal(cmos_get(r, 0x04), 0x92);
	/* the clock follows the host clock at read time */
	r->sec = LEAP_DAY + 10 * 3600 + 15 * 60; /* 2024-03-01 00:00:56, a Friday */
	cmos_set(r, 0x0B, 0x02);
	static const uint8_t next_day[8] = { 0x56, 0x00, 0x00, 0x06, 0x01, 0x03, 0x24, 0x20 };
	expect_time(r, next_day);
}

static void test_nmi_bit_is_stripped(void **state)
{
	struct rig *r = *state;
	assert_int_equal(cmos_get(r, 0x80 | 0x00), 0x56);
	assert_int_equal(cmos_get(r, 0x80 | 0x0D), 0x80);
	cmos_set(r, 0x80 | 0x40, 0xAB);
	assert_int_equal(cmos_get(r, 0x40), 0xAB);
	assert_int_equal(bus_inb(&r->bus, 0x70), 0xFF); /* the index is write-only */
	/* a word write is the index then the data, as two byte writes would be */
	bus_outw(&r->bus, 0x70, 0xCD41);
	assert_int_equal(cmos_get(r, 0x41), 0xCD);
}

static void test_setting_the_clock(void **state)
{
	struct rig *r = *state;
	cmos_set(r, 0x0B, 0x82); /* SET, 24-hour BCD */
	r->sec += 100;		 /* frozen while SET is on */
	assert_int_equal(cmos_get(r, 0x00), 0x56);
	cmos_set(r, 0x09, 0x25);
	cmos_set(r, 0x08, 0x12);
	cmos_set(r, 0x07, 0x31);
	cmos_set(r, 0x04, 0x23);
	cmos_set(r, 0x02, 0x59);
	cmos_set(r, 0x00, 0x58);
	static const uint8_t set[8] = { 0x58, 0x59, 0x23, 0x04, 0x31, 0x12, 0x25, 0x20 };
	expect_time(r, set); /* 2025-12-31 is a Wednesday */
	cmos_set(r, 0x0B, 0x02);
	r->sec += 3; /* runs on from the written time */
	static const uint8_t later[8] = { 0x01, 0x00, 0x00, 0x05, 0x01, 0x01, 0x26, 0x20 };
	expect_time(r, later);
	/* a write without SET moves the clock at once; the offset survives a reset */
	cmos_set(r, 0x32, 0x21);
	assert_int_equal(cmos_get(r, 0x32), 0x21);
	assert_int_equal(cmos_get(r, 0x09), 0x26);
	cmos_reset(r->cmos);
	assert_int_equal(cmos_get(r, 0x32), 0x21);
}

static void test_status_registers(void **state)
{
	struct rig *r = *state;
	assert_int_equal(cmos_get(r, 0x0A), 0x26);
	r->nsec = 999900000; /* inside the update window */
	assert_int_equal(cmos_get(r, 0x0A), 0xA6);
	r->nsec = 0;
	assert_int_equal(cmos_get(r, 0x0A), 0x26); /* and clear after it */
	cmos_set(r, 0x0A, 0xA6);		   /* UIP cannot be written */
	assert_int_equal(cmos_get(r, 0x0A), 0x26);
	cmos_set(r, 0x0A, 0x70); /* divider held in reset: no update in progress */
	r->nsec = 999900000;
	assert_int_equal(cmos_get(r, 0x0A), 0x70);
	cmos_set(r, 0x0D, 0x00); /* OVMF writes 0; VRT stays */
	assert_int_equal(cmos_get(r, 0x0D), 0x80);
	cmos_set(r, 0x0C, 0xFF);
	assert_int_equal(cmos_get(r, 0x0C), 0x00);
	/* the RTC counts as present when reg 0x08 is not 0xFF */
	assert_true(cmos_get(r, 0x08) != 0xFF);
}

static void test_hostile_writes(void **state)
{
	struct rig *r = *state;
	uint64_t seed = test_env_seed("TEST_SEED");
	for (int round = 0; round < 3000; round++) {
		cmos_set(r, (uint8_t)test_rnd(&seed), (uint8_t)test_rnd(&seed));
		(void)cmos_get(r, (uint8_t)test_rnd(&seed));
		bus_garbage(&r->bus, 0x70, 2, &seed);
	}
	/* impossible BCD in every time field, in both modes */
	for (uint8_t mode = 0; mode < 8; mode += 2) {
		cmos_set(r, 0x0B, mode);
		for (uint8_t reg = 0; reg < 10; reg++)
			cmos_set(r, reg, 0xFF);
		cmos_set(r, 0x32, 0xFF);
		for (uint8_t reg = 0; reg < 10; reg++)
			(void)cmos_get(r, reg);
	}
	assert_int_equal(cmos_get(r, 0x0D), 0x80);
	cmos_reset(r->cmos);
	assert_int_equal(cmos_get(r, 0x0B), 0x02);
	assert_int_equal(seabios_low_ram(r), 512 * MIB);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_memory_fields_for_several_sizes),
		cmocka_unit_test_setup_teardown(test_checksum_cpus_and_boot_order, setup, teardown),
		cmocka_unit_test(test_invalid_configurations),
		cmocka_unit_test_setup_teardown(test_bcd_binary_and_12_hour, setup, teardown),
		cmocka_unit_test_setup_teardown(test_nmi_bit_is_stripped, setup, teardown),
		cmocka_unit_test_setup_teardown(test_setting_the_clock, setup, teardown),
		cmocka_unit_test_setup_teardown(test_status_registers, setup, teardown),
		cmocka_unit_test_setup_teardown(test_hostile_writes, setup, teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
