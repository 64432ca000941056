#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdlib.h>
#include <string.h>

#include "crc32c.h"
#include "endian.h"
#include "test_util.h"

/* Bit-at-a-time reference, independent of the table and instruction paths. */
static uint32_t crc32c_ref(uint32_t crc, const void *buf, size_t len)
{
	const uint8_t *p = buf;

	crc = ~crc;
	while (len--) {
		crc ^= *p++;
		for (int bit = 0; bit < 8; bit++)
			crc = (crc & 1) ? (crc >> 1) ^ 0x82F63B78u : crc >> 1;
	}
	return ~crc;
}

typedef uint32_t (*crc_fn)(uint32_t crc, const void *buf, size_t len);

/* The implementations that can run here: crc32c, crc32c_sw, and crc32c_hw if supported. */
static size_t impls(crc_fn fns[3])
{
	size_t n = 0;

	fns[n++] = crc32c;
	fns[n++] = crc32c_sw;
	if (crc32c_hw_available())
		fns[n++] = crc32c_hw;
	return n;
}

static void check_vector(const void *buf, size_t len, uint32_t expect)
{
	crc_fn fns[3];
	size_t n = impls(fns);

	assert_int_equal(crc32c_ref(0, buf, len), expect);
	for (size_t i = 0; i < n; i++)
		assert_int_equal(fns[i](0, buf, len), expect);
}

static void test_check_string(void **state)
{
	(void)state;
	check_vector("123456789", 9, 0xE3069283u);
}

static void test_rfc3720_vectors(void **state)
{
	uint8_t buf[32];

	(void)state;
	memset(buf, 0x00, sizeof(buf));
	check_vector(buf, sizeof(buf), 0x8A9136AAu);
	memset(buf, 0xFF, sizeof(buf));
	check_vector(buf, sizeof(buf), 0x62A8AB43u);
	for (int i = 0; i < 32; i++)
		buf[i] = (uint8_t)i;
	check_vector(buf, sizeof(buf), 0x46DD794Eu);
	for (int i = 0; i < 32; i++)
		buf[i] = (uint8_t)(31 - i);
	check_vector(buf, sizeof(buf), 0x113FDB5Cu);
}

static void test_empty(void **state)
{
	crc_fn fns[3];
	size_t n = impls(fns);

	(void)state;
	for (size_t i = 0; i < n; i++) {
		assert_int_equal(fns[i](0, "", 0), 0);
		assert_int_equal(fns[i](0, NULL, 0), 0);
		/* Feeding nothing leaves a running value unchanged. */
		assert_int_equal(fns[i](0xE3069283u, "x", 0), 0xE3069283u);
	}
}

static void test_chaining(void **state)
{
	static uint8_t buf[1000];
	crc_fn fns[3];
	size_t n = impls(fns);

	(void)state;
	test_fill_pattern(buf, sizeof(buf), 0, 1);
	uint32_t whole = crc32c_ref(0, buf, sizeof(buf));

	for (size_t f = 0; f < n; f++) {
		assert_int_equal(fns[f](0, buf, sizeof(buf)), whole);
		for (size_t split = 0; split <= sizeof(buf); split += 37) {
			uint32_t c = fns[f](0, buf, split);

			assert_int_equal(fns[f](c, buf + split, sizeof(buf) - split), whole);
		}
		/* One byte at a time. */
		uint32_t c = 0;

		for (size_t i = 0; i < sizeof(buf); i++)
			c = fns[f](c, buf + i, 1);
		assert_int_equal(c, whole);
	}
	assert_int_equal(crc32c(crc32c(0, "1234", 4), "56789", 5), 0xE3069283u);
}

/* Appending a message's CRC (little-endian) gives the fixed CRC-32C residue. */
static void test_residue(void **state)
{
	uint8_t buf[260];

	(void)state;
	for (size_t len = 0; len <= 256; len += 17) {
		test_fill_pattern(buf, len, 0, 7);
		store_le32(buf + len, crc32c(0, buf, len));
		assert_int_equal(crc32c(0, buf, len + 4), 0x48674BC7u);
	}
}

static void test_sw_matches_reference(void **state)
{
	enum { MAX = 4096 + 64 };
	uint8_t *buf = malloc(MAX + 8);

	(void)state;
	assert_non_null(buf);
	test_fill_pattern(buf, MAX + 8, 0, 42);
	for (size_t len = 0; len <= MAX; len += len < 300 ? 1 : 61) {
		for (size_t off = 0; off < 8; off++) {
			uint32_t seed = (uint32_t)(len * 8 + off);
			uint32_t expect = crc32c_ref(seed, buf + off, len);

			assert_int_equal(crc32c_sw(seed, buf + off, len), expect);
			assert_int_equal(crc32c(seed, buf + off, len), expect);
		}
	}
	free(buf);
}

static void test_hw_matches_sw(void **state)
{
	enum { MAX = 65536 + 64 };

	(void)state;
	if (!crc32c_hw_available()) {
		skip();
		return;
	}
	uint8_t *buf = malloc(MAX + 8);

	assert_non_null(buf);
	test_fill_pattern(buf, MAX + 8, 0, 99);
	for (size_t len = 0; len <= MAX; len += len < 600 ? 1 : 509) {
		for (size_t off = 0; off < 8; off++) {
			uint32_t seed = (uint32_t)(len ^ (off << 24));

			assert_int_equal(crc32c_hw(seed, buf + off, len),
					 crc32c_sw(seed, buf + off, len));
		}
	}
	/* Also from fully random content and starting values. */
	srand(12345);
	for (int iter = 0; iter < 200; iter++) {
		size_t len = (size_t)rand() % 5000;
		size_t off = (size_t)rand() % 8;
		uint32_t seed = (uint32_t)rand();

		for (size_t i = 0; i < len; i++)
			buf[off + i] = (uint8_t)rand();
		assert_int_equal(crc32c_hw(seed, buf + off, len), crc32c_sw(seed, buf + off, len));
	}
	free(buf);
}

/* How VHDX checksums its headers and region tables: the CRC over the 4 KiB structure with
 * the 4-byte checksum field (offset 4) zeroed, stored little-endian in that field. */
static void test_vhdx_header_checksum(void **state)
{
	uint8_t hdr[4096];

	(void)state;
	for (size_t i = 0; i < sizeof(hdr); i++)
		hdr[i] = (uint8_t)(i * 7 + 3);
	memcpy(hdr, "head", 4);
	memset(hdr + 4, 0, 4);
	uint32_t sum = crc32c(0, hdr, sizeof(hdr));

	assert_int_equal(sum, 0x9F0C11EEu); /* computed independently */
	assert_int_equal(crc32c_sw(0, hdr, sizeof(hdr)), sum);
	store_le32(hdr + 4, sum);

	/* Verification: take the stored value, zero the field, recompute. */
	uint8_t copy[4096];

	memcpy(copy, hdr, sizeof(copy));
	uint32_t stored = load_le32(copy + 4);

	memset(copy + 4, 0, 4);
	assert_int_equal(crc32c(0, copy, sizeof(copy)), stored);

	/* A single flipped bit anywhere is caught. */
	for (size_t bit = 0; bit < sizeof(copy) * 8; bit += 509) {
		if (bit / 8 >= 4 && bit / 8 < 8)
			continue;
		copy[bit / 8] ^= (uint8_t)(1u << (bit % 8));
		assert_int_not_equal(crc32c(0, copy, sizeof(copy)), stored);
		copy[bit / 8] ^= (uint8_t)(1u << (bit % 8));
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_check_string),
		cmocka_unit_test(test_rfc3720_vectors),
		cmocka_unit_test(test_empty),
		cmocka_unit_test(test_chaining),
		cmocka_unit_test(test_residue),
		cmocka_unit_test(test_sw_matches_reference),
		cmocka_unit_test(test_hw_matches_sw),
		cmocka_unit_test(test_vhdx_header_checksum),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
