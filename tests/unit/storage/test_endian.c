#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <string.h>

#include "endian.h"

#define GUARD 0xA5
#define BUF   32

/* Checks that exactly bytes [off, off + n) of buf hold expect and the rest is untouched. */
static void check_bytes(const uint8_t *buf, size_t off, const uint8_t *expect, size_t n)
{
	for (size_t i = 0; i < BUF; i++) {
		if (i >= off && i < off + n)
			assert_int_equal(buf[i], expect[i - off]);
		else
			assert_int_equal(buf[i], GUARD);
	}
}

static void test_le16(void **state)
{
	static const uint8_t expect[] = { 0x34, 0x12 };
	uint8_t buf[BUF];

	(void)state;
	for (size_t off = 0; off < 9; off++) {
		memset(buf, GUARD, sizeof(buf));
		store_le16(buf + off, 0x1234);
		check_bytes(buf, off, expect, sizeof(expect));
		assert_int_equal(load_le16(buf + off), 0x1234);
	}
	memset(buf, GUARD, sizeof(buf));
	store_le16(buf + 3, 0xFFFE);
	assert_int_equal(buf[3], 0xFE);
	assert_int_equal(buf[4], 0xFF);
	assert_int_equal(load_le16(buf + 3), 0xFFFE);
}

static void test_be16(void **state)
{
	static const uint8_t expect[] = { 0x12, 0x34 };
	uint8_t buf[BUF];

	(void)state;
	for (size_t off = 0; off < 9; off++) {
		memset(buf, GUARD, sizeof(buf));
		store_be16(buf + off, 0x1234);
		check_bytes(buf, off, expect, sizeof(expect));
		assert_int_equal(load_be16(buf + off), 0x1234);
	}
	memset(buf, GUARD, sizeof(buf));
	store_be16(buf + 5, 0xFFFE);
	assert_int_equal(buf[5], 0xFF);
	assert_int_equal(buf[6], 0xFE);
	assert_int_equal(load_be16(buf + 5), 0xFFFE);
}

static void test_le32(void **state)
{
	static const uint8_t expect[] = { 0x78, 0x56, 0x34, 0x12 };
	static const uint8_t high[] = { 0x01, 0x00, 0x00, 0x80 };
	uint8_t buf[BUF];

	(void)state;
	for (size_t off = 0; off < 9; off++) {
		memset(buf, GUARD, sizeof(buf));
		store_le32(buf + off, 0x12345678u);
		check_bytes(buf, off, expect, sizeof(expect));
		assert_int_equal(load_le32(buf + off), 0x12345678u);

		memset(buf, GUARD, sizeof(buf));
		store_le32(buf + off, 0x80000001u);
		check_bytes(buf, off, high, sizeof(high));
		assert_int_equal(load_le32(buf + off), 0x80000001u);
	}
}

static void test_be32(void **state)
{
	static const uint8_t expect[] = { 0x12, 0x34, 0x56, 0x78 };
	static const uint8_t high[] = { 0x80, 0x00, 0x00, 0x01 };
	uint8_t buf[BUF];

	(void)state;
	for (size_t off = 0; off < 9; off++) {
		memset(buf, GUARD, sizeof(buf));
		store_be32(buf + off, 0x12345678u);
		check_bytes(buf, off, expect, sizeof(expect));
		assert_int_equal(load_be32(buf + off), 0x12345678u);

		memset(buf, GUARD, sizeof(buf));
		store_be32(buf + off, 0x80000001u);
		check_bytes(buf, off, high, sizeof(high));
		assert_int_equal(load_be32(buf + off), 0x80000001u);
	}
}

static void test_le64(void **state)
{
	static const uint8_t expect[] = { 0xEF, 0xCD, 0xAB, 0x89, 0x67, 0x45, 0x23, 0x01 };
	static const uint8_t high[] = { 0x02, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0xFF };
	uint8_t buf[BUF];

	(void)state;
	for (size_t off = 0; off < 17; off++) {
		memset(buf, GUARD, sizeof(buf));
		store_le64(buf + off, 0x0123456789ABCDEFull);
		check_bytes(buf, off, expect, sizeof(expect));
		assert_true(load_le64(buf + off) == 0x0123456789ABCDEFull);

		memset(buf, GUARD, sizeof(buf));
		store_le64(buf + off, 0xFF00000000000002ull);
		check_bytes(buf, off, high, sizeof(high));
		assert_true(load_le64(buf + off) == 0xFF00000000000002ull);
	}
}

static void test_be64(void **state)
{
	static const uint8_t expect[] = { 0x01, 0x23, 0x45, 0x67, 0x89, 0xAB, 0xCD, 0xEF };
	static const uint8_t high[] = { 0xFF, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x02 };
	uint8_t buf[BUF];

	(void)state;
	for (size_t off = 0; off < 17; off++) {
		memset(buf, GUARD, sizeof(buf));
		store_be64(buf + off, 0x0123456789ABCDEFull);
		check_bytes(buf, off, expect, sizeof(expect));
		assert_true(load_be64(buf + off) == 0x0123456789ABCDEFull);

		memset(buf, GUARD, sizeof(buf));
		store_be64(buf + off, 0xFF00000000000002ull);
		check_bytes(buf, off, high, sizeof(high));
		assert_true(load_be64(buf + off) == 0xFF00000000000002ull);
	}
}

/* Loads of fixed bytes, and the same bytes read both ways. */
static void test_loads(void **state)
{
	static const uint8_t bytes[] = { 0x00, 0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x07, 0x08,
					 0x80, 0xFF };

	(void)state;
	assert_int_equal(load_le16(bytes + 1), 0x0201);
	assert_int_equal(load_be16(bytes + 1), 0x0102);
	assert_int_equal(load_le16(bytes + 9), 0xFF80);
	assert_int_equal(load_be16(bytes + 9), 0x80FF);
	assert_int_equal(load_le32(bytes + 1), 0x04030201u);
	assert_int_equal(load_be32(bytes + 1), 0x01020304u);
	assert_int_equal(load_le32(bytes + 7), 0xFF800807u);
	assert_int_equal(load_be32(bytes + 7), 0x070880FFu);
	assert_true(load_le64(bytes + 1) == 0x0807060504030201ull);
	assert_true(load_be64(bytes + 1) == 0x0102030405060708ull);
	assert_true(load_le64(bytes + 3) == 0xFF80080706050403ull);
	assert_true(load_be64(bytes + 3) == 0x03040506070880FFull);
}

/* Store then load is the identity for values with every bit position exercised. */
static void test_round_trips(void **state)
{
	uint8_t buf[BUF];

	(void)state;
	for (int bit = 0; bit < 64; bit++) {
		uint64_t v = (1ull << bit) | (0x5A5A5A5A5A5A5A5Aull >> (63 - bit));
		size_t off = (size_t)bit % 13;

		store_le16(buf + off, (uint16_t)v);
		assert_int_equal(load_le16(buf + off), (uint16_t)v);
		assert_int_equal(load_be16(buf + off), __builtin_bswap16((uint16_t)v));
		store_be16(buf + off, (uint16_t)v);
		assert_int_equal(load_be16(buf + off), (uint16_t)v);
		store_le32(buf + off, (uint32_t)v);
		assert_int_equal(load_le32(buf + off), (uint32_t)v);
		assert_int_equal(load_be32(buf + off), __builtin_bswap32((uint32_t)v));
		store_be32(buf + off, (uint32_t)v);
		assert_int_equal(load_be32(buf + off), (uint32_t)v);
		store_le64(buf + off, v);
		assert_true(load_le64(buf + off) == v);
		assert_true(load_be64(buf + off) == __builtin_bswap64(v));
		store_be64(buf + off, v);
		assert_true(load_be64(buf + off) == v);
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_le16),
		cmocka_unit_test(test_be16),
		cmocka_unit_test(test_le32),
		cmocka_unit_test(test_be32),
		cmocka_unit_test(test_le64),
		cmocka_unit_test(test_be64),
		cmocka_unit_test(test_loads),
		cmocka_unit_test(test_round_trips),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
