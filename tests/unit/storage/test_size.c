#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "size.h"

#define ARRAY_SIZE(a) (sizeof(a) / sizeof((a)[0]))
#define KiB 1024ULL
#define MiB (1024 * KiB)
#define GiB (1024 * MiB)
#define TiB (1024 * GiB)
#define PiB (1024 * TiB)
#define EiB (1024 * PiB)

struct parse_case {
	const char *text;
	int ret;
	uint64_t value; /* when ret == 0 */
};

static void check_parse(const struct parse_case *c)
{
	uint64_t v = 0xDEADBEEFCAFEF00DULL;
	int ret = size_parse(c->text, &v);
	if (ret != c->ret || (ret == 0 && v != c->value))
		fail_msg("size_parse(\"%s\") = %d, %llu; expected %d, %llu", c->text, ret,
			 (unsigned long long)v, c->ret, (unsigned long long)c->value);
	if (ret != 0 && v != 0xDEADBEEFCAFEF00DULL)
		fail_msg("size_parse(\"%s\") failed but wrote %llu", c->text, (unsigned long long)v);
}

static void test_parse_plain(void **state)
{
	static const struct parse_case cases[] = {
		{ "0", 0, 0 },
		{ "1", 0, 1 },
		{ "512", 0, 512 },
		{ "4096", 0, 4096 },
		{ "4096B", 0, 4096 },
		{ "4096b", 0, 4096 },
		{ "007", 0, 7 },
		{ "18446744073709551615", 0, UINT64_MAX },
		{ "18446744073709551614", 0, UINT64_MAX - 1 },
	};

	(void)state;
	for (size_t i = 0; i < ARRAY_SIZE(cases); i++)
		check_parse(&cases[i]);
}

static void test_parse_suffixes(void **state)
{
	static const struct parse_case cases[] = {
		{ "4k", 0, 4 * KiB },
		{ "4K", 0, 4 * KiB },
		{ "4KiB", 0, 4 * KiB },
		{ "4kib", 0, 4 * KiB },
		{ "4KB", 0, 4 * KiB },
		{ "4kb", 0, 4 * KiB },
		{ "1M", 0, MiB },
		{ "10G", 0, 10 * GiB },
		{ "10GiB", 0, 10 * GiB },
		{ "2T", 0, 2 * TiB },
		{ "3P", 0, 3 * PiB },
		{ "1E", 0, EiB },
		{ "15E", 0, 15 * EiB },
		{ "0K", 0, 0 },
		{ "0E", 0, 0 },
		{ "16383P", 0, 16383 * PiB },
		{ "17179869183G", 0, 17179869183ULL * GiB },
	};

	(void)state;
	for (size_t i = 0; i < ARRAY_SIZE(cases); i++)
		check_parse(&cases[i]);
}

static void test_parse_fractions(void **state)
{
	static const struct parse_case cases[] = {
		{ "1.5k", 0, 1536 },
		{ "1.5K", 0, 1536 },
		{ "0.5k", 0, 512 },
		{ "1.50k", 0, 1536 },
		{ "1.25M", 0, 1310720 },
		{ "1.5T", 0, 3 * TiB / 2 },
		{ "1.5TiB", 0, 3 * TiB / 2 },
		{ "0.125G", 0, 128 * MiB },
		{ "15.5E", 0, 15 * EiB + EiB / 2 },
		{ "1.0", 0, 1 },  /* a zero fraction of bytes is still whole */
		{ "2.000B", 0, 2 },
		/* Fractions that are not a whole number of bytes. */
		{ "1.1k", -EINVAL, 0 }, /* 1126.4 */
		{ "1.05k", -EINVAL, 0 }, /* 1075.2 */
		{ "1.3b", -EINVAL, 0 },
		{ "1.3B", -EINVAL, 0 },
		{ "1.5", -EINVAL, 0 },
		{ "0.1", -EINVAL, 0 },
		/* Malformed fractions. */
		{ "1.x", -EINVAL, 0 },
		{ "1.", -EINVAL, 0 },
		{ "1.k", -EINVAL, 0 },
		{ ".5k", -EINVAL, 0 },
		{ "1.5.5k", -EINVAL, 0 },
	};

	(void)state;
	for (size_t i = 0; i < ARRAY_SIZE(cases); i++)
		check_parse(&cases[i]);
}

static void test_parse_range(void **state)
{
	static const struct parse_case cases[] = {
		{ "16E", -ERANGE, 0 },
		{ "16EiB", -ERANGE, 0 },
		{ "16384P", -ERANGE, 0 },
		{ "17179869184G", -ERANGE, 0 },
		{ "18446744073709551616", -ERANGE, 0 },
		{ "18446744073709551620", -ERANGE, 0 },
		{ "99999999999999999999999", -ERANGE, 0 },
		{ "16.5E", -ERANGE, 0 },
		{ "15.9999999999E", -EINVAL, 0 }, /* not whole bytes */
	};

	(void)state;
	for (size_t i = 0; i < ARRAY_SIZE(cases); i++)
		check_parse(&cases[i]);
	/* Near the top: the whole part fills 54 bits, the fraction the rest. */
	uint64_t v;
	assert_int_equal(size_parse("18014398509481983.5k", &v), 0);
	assert_true(v == UINT64_MAX - 511);
	assert_int_equal(size_parse("18014398509481983.9990234375k", &v), 0);
	assert_true(v == UINT64_MAX);
	assert_int_equal(size_parse("18014398509481984k", &v), -ERANGE);
}

static void test_parse_malformed(void **state)
{
	static const struct parse_case cases[] = {
		{ "", -EINVAL, 0 },
		{ "abc", -EINVAL, 0 },
		{ "-1", -EINVAL, 0 },
		{ "+1", -EINVAL, 0 },
		{ " 1", -EINVAL, 0 },
		{ "1 ", -EINVAL, 0 },
		{ "1 K", -EINVAL, 0 },
		{ "10Q", -EINVAL, 0 },
		{ "10KK", -EINVAL, 0 },
		{ "10KiBx", -EINVAL, 0 },
		{ "10iB", -EINVAL, 0 },
		{ "10Ki", -EINVAL, 0 },
		{ "10BB", -EINVAL, 0 },
		{ "0x10", -EINVAL, 0 },
		{ "1e3", -EINVAL, 0 },
		{ "K", -EINVAL, 0 },
	};

	(void)state;
	for (size_t i = 0; i < ARRAY_SIZE(cases); i++)
		check_parse(&cases[i]);
	uint64_t v = 42;
	assert_int_equal(size_parse(NULL, &v), -EINVAL);
	assert_true(v == 42);
}

struct format_case {
	uint64_t bytes;
	const char *text;
};

static void test_format(void **state)
{
	static const struct format_case cases[] = {
		{ 0, "0 B" },
		{ 1, "1 B" },
		{ 512, "512 B" },
		{ 1023, "1023 B" },
		{ 1024, "1 KiB" },
		{ 1536, "1.5 KiB" },
		{ 4096, "4 KiB" },
		{ 100 * KiB, "100 KiB" },
		{ MiB, "1 MiB" },
		{ MiB + MiB / 2, "1.5 MiB" },
		{ 10 * GiB, "10 GiB" },
		{ 3 * TiB / 2, "1.5 TiB" },
		{ 127 * GiB, "127 GiB" },
		{ 1000 * MiB, "1000 MiB" },
		{ 1023 * MiB, "1023 MiB" },
		{ 2 * PiB, "2 PiB" },
		{ EiB, "1 EiB" },
		{ 15 * EiB, "15 EiB" },
		{ 1234567, "1.18 MiB" },
		{ 10 * GiB + 1, "10 GiB" }, /* 3 significant digits */
		{ 1025, "1 KiB" },
		{ 1100, "1.07 KiB" },
		{ 1000 * KiB + 512, "1000 KiB" },
		{ 999 * GiB + GiB / 2 + 1, "1000 GiB" },
		{ UINT64_MAX, "16 EiB" },
	};
	char out[64];

	(void)state;
	for (size_t i = 0; i < ARRAY_SIZE(cases); i++) {
		memset(out, 'X', sizeof(out));
		size_format(cases[i].bytes, out, sizeof(out));
		if (strcmp(out, cases[i].text))
			fail_msg("size_format(%llu) = \"%s\", expected \"%s\"",
				 (unsigned long long)cases[i].bytes, out, cases[i].text);
	}
}

/* Every value between 999 and 1024 units reads as a plain number, never as "1e+03". */
static void test_format_no_exponent(void **state)
{
	char out[64];

	(void)state;
	for (unsigned shift = 10; shift <= 60; shift += 10) {
		for (uint64_t n = 990; n < 1024; n++) {
			uint64_t unit = 1ULL << shift;
			uint64_t vals[] = { n * unit, n * unit + unit / 3, n * unit + unit - 1 };
			for (size_t i = 0; i < ARRAY_SIZE(vals); i++) {
				if (shift == 60 && n >= 16)
					break;
				size_format(vals[i], out, sizeof(out));
				if (strchr(out, 'e') || strchr(out, '+'))
					fail_msg("size_format(%llu) = \"%s\"",
						 (unsigned long long)vals[i], out);
			}
		}
	}
}

static void test_format_truncates(void **state)
{
	char out[8];

	(void)state;
	memset(out, 'X', sizeof(out));
	size_format(10 * GiB, out, 4);
	assert_string_equal(out, "10 ");
	assert_int_equal(out[4], 'X');
	size_format(1536, out, 1);
	assert_string_equal(out, "");
}

/* What size_format prints, size_parse reads back (when it is exact). */
static void test_round_trip(void **state)
{
	static const uint64_t values[] = { 0,	    1,	      512,	1024,	  1536,
					   4 * KiB, 1 * MiB,  10 * GiB, 127 * GiB, 3 * TiB / 2,
					   2 * PiB, 15 * EiB, 1023 * MiB };
	char out[64];

	(void)state;
	for (size_t i = 0; i < ARRAY_SIZE(values); i++) {
		uint64_t v;
		size_format(values[i], out, sizeof(out));
		/* "1.5 KiB" -> "1.5KiB" */
		char compact[64];
		size_t k = 0;
		for (const char *p = out; *p; p++)
			if (*p != ' ')
				compact[k++] = *p;
		compact[k] = 0;
		assert_int_equal(size_parse(compact, &v), 0);
		if (v != values[i])
			fail_msg("%llu -> \"%s\" -> %llu", (unsigned long long)values[i], out,
				 (unsigned long long)v);
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_parse_plain),
		cmocka_unit_test(test_parse_suffixes),
		cmocka_unit_test(test_parse_fractions),
		cmocka_unit_test(test_parse_range),
		cmocka_unit_test(test_parse_malformed),
		cmocka_unit_test(test_format),
		cmocka_unit_test(test_format_no_exponent),
		cmocka_unit_test(test_format_truncates),
		cmocka_unit_test(test_round_trip),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
