#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <string.h>

#include "guid.h"

#define SAMPLE_STR "2dc27766-f623-4200-9d64-115e9bfd4a08"

static const uint8_t sample_bytes[16] = {
	0x66, 0x77, 0xC2, 0x2D, 0x23, 0xF6, 0x00, 0x42,
	0x9D, 0x64, 0x11, 0x5E, 0x9B, 0xFD, 0x4A, 0x08,
};

static void test_byte_order(void **state)
{
	struct guid g;

	(void)state;
	assert_int_equal(guid_parse("2DC27766-F623-4200-9D64-115E9BFD4A08", &g), 0);
	assert_memory_equal(g.bytes, sample_bytes, 16);
}

static void test_format(void **state)
{
	struct guid g;
	char out[GUID_STR_LEN + 1];

	(void)state;
	memcpy(g.bytes, sample_bytes, 16);
	memset(out, 'X', sizeof(out));
	guid_format(&g, out);
	assert_string_equal(out, SAMPLE_STR);
	assert_int_equal(strlen(out), GUID_STR_LEN);
}

static void test_round_trip(void **state)
{
	static const char *const strs[] = {
		SAMPLE_STR,
		"00000000-0000-0000-0000-000000000000",
		"ffffffff-ffff-ffff-ffff-ffffffffffff",
		"01234567-89ab-cdef-0123-456789abcdef",
		"caa16737-fa36-4d43-b3b6-33f0aa44e76b", /* VHDX file parameters item */
	};
	char out[GUID_STR_LEN + 1];

	(void)state;
	for (size_t i = 0; i < sizeof(strs) / sizeof(strs[0]); i++) {
		struct guid g, g2;

		assert_int_equal(guid_parse(strs[i], &g), 0);
		guid_format(&g, out);
		assert_string_equal(out, strs[i]);
		assert_int_equal(guid_parse(out, &g2), 0);
		assert_true(guid_equal(&g, &g2));
	}

	/* Every byte value in every position survives format then parse. */
	for (int v = 0; v < 256; v++) {
		struct guid g, g2;

		for (int i = 0; i < 16; i++)
			g.bytes[i] = (uint8_t)(v + 17 * i);
		guid_format(&g, out);
		assert_int_equal(guid_parse(out, &g2), 0);
		assert_memory_equal(g.bytes, g2.bytes, 16);
	}
}

static void test_case_and_braces(void **state)
{
	struct guid g;

	(void)state;
	assert_int_equal(guid_parse("{2DC27766-F623-4200-9D64-115E9BFD4A08}", &g), 0);
	assert_memory_equal(g.bytes, sample_bytes, 16);
	memset(&g, 0, sizeof(g));
	assert_int_equal(guid_parse("{2dc27766-f623-4200-9d64-115e9bfd4a08}", &g), 0);
	assert_memory_equal(g.bytes, sample_bytes, 16);
	memset(&g, 0, sizeof(g));
	assert_int_equal(guid_parse("2Dc27766-f623-4200-9D64-115e9BFD4a08", &g), 0);
	assert_memory_equal(g.bytes, sample_bytes, 16);
}

static void test_rejects(void **state)
{
	static const char *const bad[] = {
		"",
		"{}",
		"2dc27766-f623-4200-9d64-115e9bfd4a0",	  /* too short */
		"2dc27766-f623-4200-9d64-115e9bfd4a088",  /* too long */
		"2dc27766-f623-4200-9d64-115e9bfd4a08 ",  /* trailing space */
		" 2dc27766-f623-4200-9d64-115e9bfd4a08",  /* leading space */
		"2dc27766f623-4200-9d64-115e9bfd4a08a",	  /* dash missing */
		"2dc27766-f6234-200-9d64-115e9bfd4a08",	  /* dash moved */
		"2dc27766-f623-4200-9d64_115e9bfd4a08",	  /* wrong separator */
		"2dc2776g-f623-4200-9d64-115e9bfd4a08",	  /* non-hex */
		"2dc27766-f623-4200-9d64-115e9bfd4a0z",	  /* non-hex at the end */
		"2dc27766-f623-4200-9d64-115e9bfd4a-8",	  /* dash where a digit goes */
		"+dc27766-f623-4200-9d64-115e9bfd4a08",	  /* sign */
		"{2dc27766-f623-4200-9d64-115e9bfd4a08",  /* unbalanced */
		"2dc27766-f623-4200-9d64-115e9bfd4a08}",  /* unbalanced */
		"{2dc27766-f623-4200-9d64-115e9bfd4a08}}", /* extra brace */
		"(2dc27766-f623-4200-9d64-115e9bfd4a08)", /* wrong brackets */
		"}2dc27766-f623-4200-9d64-115e9bfd4a08{", /* reversed braces */
		"{{dc27766-f623-4200-9d64-115e9bfd4a0}}", /* braces inside */
		"2dc27766-f623-4200-9d64-115e9bfd4a08\n",
		"0x2dc27766-f623-4200-9d64-115e9bfd4a",
		"2dc27766f6234200 9d64115e9bfd4a08",
		"2dc27766f62342009d64115e9bfd4a08",
	};
	struct guid g;

	(void)state;
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		memcpy(g.bytes, sample_bytes, 16);
		assert_int_equal(guid_parse(bad[i], &g), -EINVAL);
	}
	assert_int_equal(guid_parse(NULL, &g), -EINVAL);

	/* An embedded NUL ends the string early. */
	char buf[40];

	memcpy(buf, SAMPLE_STR, sizeof(SAMPLE_STR));
	buf[20] = '\0';
	assert_int_equal(guid_parse(buf, &g), -EINVAL);
}

static void test_generate(void **state)
{
	enum { N = 64 };
	struct guid g[N];
	char out[GUID_STR_LEN + 1];

	(void)state;
	for (int i = 0; i < N; i++) {
		assert_int_equal(guid_generate(&g[i]), 0);
		assert_false(guid_is_zero(&g[i]));
		/* Version 4 in the top nibble of data3 (little-endian: byte 7). */
		assert_int_equal(g[i].bytes[7] >> 4, 4);
		/* RFC 4122 variant 10xx in data4[0]. */
		assert_int_equal(g[i].bytes[8] >> 6, 2);
		/* The same seen in the text form: xxxxxxxx-xxxx-4xxx-[89ab]xxx-... */
		guid_format(&g[i], out);
		assert_int_equal(out[14], '4');
		assert_non_null(strchr("89ab", out[19]));
		for (int j = 0; j < i; j++)
			assert_false(guid_equal(&g[i], &g[j]));
	}
}

static void test_equal_and_zero(void **state)
{
	struct guid a, b, zero;

	(void)state;
	memset(&zero, 0, sizeof(zero));
	assert_true(guid_is_zero(&zero));
	assert_int_equal(guid_parse("00000000-0000-0000-0000-000000000000", &a), 0);
	assert_true(guid_is_zero(&a));
	assert_true(guid_equal(&a, &zero));

	memcpy(a.bytes, sample_bytes, 16);
	memcpy(b.bytes, sample_bytes, 16);
	assert_true(guid_equal(&a, &b));
	assert_false(guid_is_zero(&a));
	for (int i = 0; i < 16; i++) {
		b.bytes[i] ^= 1;
		assert_false(guid_equal(&a, &b));
		b.bytes[i] ^= 1;

		memset(&zero, 0, sizeof(zero));
		zero.bytes[i] = 0x80;
		assert_false(guid_is_zero(&zero));
	}
	assert_true(guid_equal(&a, &b));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_byte_order),
		cmocka_unit_test(test_format),
		cmocka_unit_test(test_round_trip),
		cmocka_unit_test(test_case_and_braces),
		cmocka_unit_test(test_rejects),
		cmocka_unit_test(test_generate),
		cmocka_unit_test(test_equal_and_zero),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
