/* Shared helpers for the cmocka unit tests. */
#ifndef HV_TEST_UTIL_H
#define HV_TEST_UTIL_H

#include <stddef.h>
#include <stdint.h>

#define TEST_SKIP 77 /* exit code ctest reports as "skipped" (SKIP_RETURN_CODE) */

/* A fresh directory for this test program's files (under $TEST_TMPDIR or /tmp),
 * removed with its contents by test_tmpdir_remove(). Never fails: aborts the test. */
const char *test_tmpdir(void);
void test_tmpdir_remove(void);
/* test_tmpdir()/name in a static buffer rotated among 8 slots. */
const char *test_path(const char *name);

/* A 64-bit mixer (splitmix64's finaliser) and a generator built on it: state advances by
 * a constant, each value is the mix of the state. */
uint64_t test_mix64(uint64_t x);
uint64_t test_rnd(uint64_t *state);
/* Uniform enough below n (0 when n is 0). */
uint64_t test_rnd_below(uint64_t *state, uint64_t n);

/* Deterministic pattern: byte at absolute offset off of a stream seeded by seed. */
void test_fill_pattern(void *buf, size_t len, uint64_t off, uint32_t seed);
/* Writes size bytes of test_fill_pattern(seed) to path. */
void test_write_file(const char *path, uint64_t size, uint32_t seed);

/* Runs a shell command, capturing stdout+stderr (NUL-terminated, truncated to out_size)
 * when out is not NULL. Returns the exit status, or -1 when it died by a signal. */
int test_run(char *out, size_t out_size, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

/* Runs the vdisk binary named by $VDISK (hv_unit_test sets it) with the given arguments,
 * like test_run. */
int test_run_vdisk(char *out, size_t out_size, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

/* Fails a cmocka test unless haystack contains needle, showing both. */
#define assert_contains(haystack, needle)                                                  \
	do {                                                                               \
		if (!strstr((haystack), (needle)))                                         \
			fail_msg("expected \"%s\" in output:\n%s", (needle), (haystack)); \
	} while (0)

#endif
