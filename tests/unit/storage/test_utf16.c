#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <stdbool.h>
#include <string.h>

#include "utf16.h"

#define ARRAY_SIZE(a) (sizeof(a) / sizeof((a)[0]))

/* Code units to UTF-16LE bytes; returns the byte count. */
static size_t units_to_le(const uint16_t *units, size_t n, uint8_t *out)
{
	for (size_t i = 0; i < n; i++) {
		out[2 * i] = (uint8_t)units[i];
		out[2 * i + 1] = (uint8_t)(units[i] >> 8);
	}
	return 2 * n;
}

/* Checks that units decode to utf8 and that utf8 encodes back to units. */
static void check_both_ways(const uint16_t *units, size_t n, const char *utf8)
{
	uint8_t le[64], back[64];
	char out[64];
	size_t bytes = units_to_le(units, n, le);

	memset(out, 'X', sizeof(out));
	assert_int_equal(utf16le_to_utf8(le, bytes, out, sizeof(out)), strlen(utf8));
	assert_string_equal(out, utf8);

	memset(back, 0xAA, sizeof(back));
	assert_int_equal(utf8_to_utf16le(utf8, back, sizeof(back)), bytes);
	assert_memory_equal(back, le, bytes);
	assert_int_equal(back[bytes], 0xAA); /* no terminator written */
}

static void test_ascii(void **state)
{
	static const uint16_t units[] = { 'd', 'i', 's', 'k', '.', 'v', 'h', 'd', 'x' };

	(void)state;
	check_both_ways(units, ARRAY_SIZE(units), "disk.vhdx");
	check_both_ways(NULL, 0, "");
}

static void test_bmp(void **state)
{
	static const uint16_t e_acute[] = { 0x00E9 };
	static const uint16_t zhong[] = { 0x4E2D };
	static const uint16_t mixed[] = { 'a', 0x00E9, 0x4E2D, 'z' };
	static const uint16_t edges[] = { 0x007F, 0x0080, 0x07FF, 0x0800, 0xD7FF, 0xE000, 0xFFFD,
					  0xFFFF };

	(void)state;
	check_both_ways(e_acute, 1, "\xC3\xA9");
	check_both_ways(zhong, 1, "\xE4\xB8\xAD");
	check_both_ways(mixed, ARRAY_SIZE(mixed), "a\xC3\xA9\xE4\xB8\xADz");
	check_both_ways(edges, ARRAY_SIZE(edges),
			"\x7F\xC2\x80\xDF\xBF\xE0\xA0\x80\xED\x9F\xBF\xEE\x80\x80\xEF\xBF\xBD"
			"\xEF\xBF\xBF");

	/* Exact bytes for "é": E9 00 in UTF-16LE. */
	uint8_t out[4];

	assert_int_equal(utf8_to_utf16le("\xC3\xA9", out, sizeof(out)), 2);
	assert_int_equal(out[0], 0xE9);
	assert_int_equal(out[1], 0x00);
}

static void test_supplementary(void **state)
{
	static const uint16_t grin[] = { 0xD83D, 0xDE00 };
	static const uint16_t edges[] = { 0xD800, 0xDC00, 0xDBFF, 0xDFFF };
	static const uint16_t mixed[] = { 'x', 0xD83D, 0xDE00, 0x4E2D, 0xD83D, 0xDE00 };

	(void)state;
	check_both_ways(grin, 2, "\xF0\x9F\x98\x80"); /* U+1F600 */
	check_both_ways(edges, 4, "\xF0\x90\x80\x80\xF4\x8F\xBF\xBF"); /* U+10000, U+10FFFF */
	check_both_ways(mixed, ARRAY_SIZE(mixed), "x\xF0\x9F\x98\x80\xE4\xB8\xAD\xF0\x9F\x98\x80");

	uint8_t out[4];

	assert_int_equal(utf8_to_utf16le("\xF0\x9F\x98\x80", out, sizeof(out)), 4);
	assert_int_equal(out[0], 0x3D);
	assert_int_equal(out[1], 0xD8);
	assert_int_equal(out[2], 0x00);
	assert_int_equal(out[3], 0xDE);
}

static void test_stop_at_nul(void **state)
{
	static const uint16_t units[] = { 'A', 0, 'B', 0xDC00 };
	static const uint16_t padded[] = { 0x4E2D, 0, 0, 0 };
	uint8_t le[16];
	char out[16];

	(void)state;
	size_t n = units_to_le(units, ARRAY_SIZE(units), le);

	/* Stops at the NUL: what follows (even an unpaired surrogate) is not looked at. */
	assert_int_equal(utf16le_to_utf8(le, n, out, sizeof(out)), 1);
	assert_string_equal(out, "A");

	n = units_to_le(padded, ARRAY_SIZE(padded), le);
	assert_int_equal(utf16le_to_utf8(le, n, out, sizeof(out)), 3);
	assert_string_equal(out, "\xE4\xB8\xAD");

	/* A leading NUL gives the empty string. */
	assert_int_equal(utf16le_to_utf8(le + 2, n - 2, out, sizeof(out)), 0);
	assert_string_equal(out, "");

	/* in_bytes bounds the input even without a NUL. */
	n = units_to_le(units, 1, le);
	assert_int_equal(utf16le_to_utf8(le, n, out, sizeof(out)), 1);
	assert_string_equal(out, "A");
}

static void expect_utf16_einval(const uint16_t *units, size_t n)
{
	uint8_t le[32];
	char out[64];
	size_t bytes = units_to_le(units, n, le);

	assert_int_equal(utf16le_to_utf8(le, bytes, out, sizeof(out)), -EINVAL);
}

static void test_lone_surrogates(void **state)
{
	static const uint16_t high_alone[] = { 0xD83D };
	static const uint16_t high_then_char[] = { 0xD83D, 'a' };
	static const uint16_t high_then_nul[] = { 0xD83D, 0 };
	static const uint16_t high_high_low[] = { 0xD83D, 0xD83D, 0xDE00 };
	static const uint16_t low_alone[] = { 0xDE00 };
	static const uint16_t low_high[] = { 0xDE00, 0xD83D };
	static const uint16_t after_text[] = { 'o', 'k', 0xDFFF, 'x' };
	static const uint16_t pair_then_low[] = { 0xD83D, 0xDE00, 0xDE00 };

	(void)state;
	expect_utf16_einval(high_alone, ARRAY_SIZE(high_alone));
	expect_utf16_einval(high_then_char, ARRAY_SIZE(high_then_char));
	expect_utf16_einval(high_then_nul, ARRAY_SIZE(high_then_nul));
	expect_utf16_einval(high_high_low, ARRAY_SIZE(high_high_low));
	expect_utf16_einval(low_alone, ARRAY_SIZE(low_alone));
	expect_utf16_einval(low_high, ARRAY_SIZE(low_high));
	expect_utf16_einval(after_text, ARRAY_SIZE(after_text));
	expect_utf16_einval(pair_then_low, ARRAY_SIZE(pair_then_low));

	/* A valid pair cut in half by in_bytes. */
	static const uint16_t grin[] = { 0xD83D, 0xDE00 };
	uint8_t le[4];
	char out[16];

	units_to_le(grin, 2, le);
	assert_int_equal(utf16le_to_utf8(le, 2, out, sizeof(out)), -EINVAL);
	assert_int_equal(utf16le_to_utf8(le, 4, out, sizeof(out)), 4);
}

static void test_odd_byte_count(void **state)
{
	static const uint8_t le[] = { 'a', 0, 'b', 0, 'c' };
	char out[16];

	(void)state;
	assert_int_equal(utf16le_to_utf8(le, 5, out, sizeof(out)), -EINVAL);
	assert_int_equal(utf16le_to_utf8(le, 3, out, sizeof(out)), -EINVAL);
	assert_int_equal(utf16le_to_utf8(le, 1, out, sizeof(out)), -EINVAL);
	assert_int_equal(utf16le_to_utf8(le, 4, out, sizeof(out)), 2);
	assert_string_equal(out, "ab");
}

static void test_invalid_utf8(void **state)
{
	static const char *const bad[] = {
		"\xC0\x80",	    /* overlong NUL */
		"\xC1\xBF",	    /* overlong U+007F */
		"\xE0\x80\x80",	    /* overlong */
		"\xE0\x9F\xBF",	    /* overlong U+07FF */
		"\xF0\x80\x80\x80", /* overlong */
		"\xF0\x8F\xBF\xBF", /* overlong U+FFFF */
		"\xED\xA0\x80",	    /* U+D800 */
		"\xED\xBF\xBF",	    /* U+DFFF */
		"\xED\xA0\xBD\xED\xB8\x80", /* CESU-8 surrogate pair */
		"\xF4\x90\x80\x80", /* U+110000 */
		"\xF5\x80\x80\x80",
		"\xF8\x88\x80\x80\x80",
		"\xFE",
		"\xFF",
		"\x80",		/* stray continuation */
		"a\xBF",
		"\xC3",		/* truncated */
		"\xE4\xB8",	/* truncated */
		"\xF0\x9F\x98", /* truncated */
		"ok\xE4\xB8",
		"\xC3" "a",	/* bad continuation */
		"\xE4" "a\xAD",
		"\xE4\xB8" "a",
		"\xF0\x9F\x98" "a",
		"\xF0\x9F\xC3\xA9",
		"\xC3\xA9\xC3",
	};
	uint8_t out[64];

	(void)state;
	for (size_t i = 0; i < ARRAY_SIZE(bad); i++)
		assert_int_equal(utf8_to_utf16le(bad[i], out, sizeof(out)), -EINVAL);
}

static void test_enospc(void **state)
{
	static const uint16_t zhong[] = { 0x4E2D, 'a' };
	static const uint16_t grin[] = { 0xD83D, 0xDE00 };
	uint8_t le[8];
	char out[16];
	uint8_t u16[16];
	size_t n;

	(void)state;
	/* UTF-16 -> UTF-8 needs room for the bytes plus the NUL. */
	n = units_to_le(zhong, 2, le);
	for (size_t size = 0; size < 5; size++) {
		memset(out, 'X', sizeof(out));
		assert_int_equal(utf16le_to_utf8(le, n, out, size), -ENOSPC);
		assert_int_equal(out[size], 'X'); /* nothing past out_size */
	}
	assert_int_equal(utf16le_to_utf8(le, n, out, 5), 4);
	assert_string_equal(out, "\xE4\xB8\xAD" "a");

	n = units_to_le(grin, 2, le);
	assert_int_equal(utf16le_to_utf8(le, n, out, 4), -ENOSPC);
	assert_int_equal(utf16le_to_utf8(le, n, out, 5), 4);
	assert_int_equal(utf16le_to_utf8(le, 0, out, 0), -ENOSPC);
	assert_int_equal(utf16le_to_utf8(le, 0, out, 1), 0);

	/* UTF-8 -> UTF-16: no terminator, and a pair is never split. */
	for (size_t size = 0; size < 4; size++) {
		memset(u16, 0xAA, sizeof(u16));
		assert_int_equal(utf8_to_utf16le("ab", u16, size), -ENOSPC);
		assert_int_equal(u16[size], 0xAA);
	}
	assert_int_equal(utf8_to_utf16le("ab", u16, 4), 4);
	for (size_t size = 0; size < 4; size++) {
		memset(u16, 0xAA, sizeof(u16));
		assert_int_equal(utf8_to_utf16le("\xF0\x9F\x98\x80", u16, size), -ENOSPC);
		for (size_t i = 0; i < sizeof(u16); i++)
			assert_int_equal(u16[i], 0xAA);
	}
	assert_int_equal(utf8_to_utf16le("x\xF0\x9F\x98\x80", u16, 5), -ENOSPC);
	assert_int_equal(utf8_to_utf16le("x\xF0\x9F\x98\x80", u16, 6), 6);
	assert_int_equal(utf8_to_utf16le("", u16, 0), 0);
}

/* Every Unicode scalar value, both directions, against the textbook encodings. */
static void test_all_scalar_values(void **state)
{
	(void)state;
	for (uint32_t cp = 1; cp <= 0x10FFFF; cp++) {
		if (cp >= 0xD800 && cp <= 0xDFFF)
			continue;
		uint16_t units[2];
		size_t nu = 1;
		uint8_t utf8[5];
		size_t n8;

		if (cp < 0x10000) {
			units[0] = (uint16_t)cp;
		} else {
			units[0] = (uint16_t)(0xD800 + ((cp - 0x10000) >> 10));
			units[1] = (uint16_t)(0xDC00 + ((cp - 0x10000) & 0x3FF));
			nu = 2;
		}
		if (cp < 0x80) {
			utf8[0] = (uint8_t)cp;
			n8 = 1;
		} else if (cp < 0x800) {
			utf8[0] = (uint8_t)(0xC0 | cp >> 6);
			utf8[1] = (uint8_t)(0x80 | (cp & 0x3F));
			n8 = 2;
		} else if (cp < 0x10000) {
			utf8[0] = (uint8_t)(0xE0 | cp >> 12);
			utf8[1] = (uint8_t)(0x80 | (cp >> 6 & 0x3F));
			utf8[2] = (uint8_t)(0x80 | (cp & 0x3F));
			n8 = 3;
		} else {
			utf8[0] = (uint8_t)(0xF0 | cp >> 18);
			utf8[1] = (uint8_t)(0x80 | (cp >> 12 & 0x3F));
			utf8[2] = (uint8_t)(0x80 | (cp >> 6 & 0x3F));
			utf8[3] = (uint8_t)(0x80 | (cp & 0x3F));
			n8 = 4;
		}
		utf8[n8] = 0;

		uint8_t le[4], back[4];
		char out[5];
		size_t nb = units_to_le(units, nu, le);

		if (utf16le_to_utf8(le, nb, out, sizeof(out)) != (ssize_t)n8 ||
		    memcmp(out, utf8, n8 + 1) != 0)
			fail_msg("UTF-16 -> UTF-8 wrong for U+%04X", (unsigned int)cp);
		if (utf8_to_utf16le((const char *)utf8, back, sizeof(back)) != (ssize_t)nb ||
		    memcmp(back, le, nb) != 0)
			fail_msg("UTF-8 -> UTF-16 wrong for U+%04X", (unsigned int)cp);
	}
}

/* Every 3-byte sequence E0..EF xx xx decodes only when it is a valid non-surrogate form. */
static void test_three_byte_space(void **state)
{
	(void)state;
	for (unsigned int a = 0xE0; a <= 0xEF; a++) {
		for (unsigned int b = 0x01; b <= 0xFF; b++) {
			for (unsigned int c = 0x01; c <= 0xFF; c++) {
				char s[4] = { (char)a, (char)b, (char)c, 0 };
				uint8_t out[4];
				bool cont = (b & 0xC0) == 0x80 && (c & 0xC0) == 0x80;
				uint32_t cp = (a & 0x0F) << 12 | (b & 0x3F) << 6 | (c & 0x3F);
				bool valid = cont && cp >= 0x800 && !(cp >= 0xD800 && cp <= 0xDFFF);
				ssize_t ret = utf8_to_utf16le(s, out, sizeof(out));

				if (ret != (valid ? 2 : -EINVAL))
					fail_msg("%02X %02X %02X gave %zd", a, b, c, ret);
			}
		}
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_ascii),
		cmocka_unit_test(test_bmp),
		cmocka_unit_test(test_supplementary),
		cmocka_unit_test(test_stop_at_nul),
		cmocka_unit_test(test_lone_surrogates),
		cmocka_unit_test(test_odd_byte_count),
		cmocka_unit_test(test_invalid_utf8),
		cmocka_unit_test(test_enospc),
		cmocka_unit_test(test_all_scalar_values),
		cmocka_unit_test(test_three_byte_space),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
