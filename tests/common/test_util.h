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

/* A seed from the environment variable name (any strtoull base), or one from the clock
 * when it is unset; never 0. Print it with any failure so the run can be repeated. */
uint64_t test_env_seed(const char *name);

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
#define assert_contains(haystack, needle)                                                          \
	do {                                                                                       \
		if (!strstr((haystack), (needle)))                                                 \
			fail_msg("expected \"%s\" in output:\n%s", (needle), (haystack));          \
	} while (0)

/* Plain file access, the independent oracle of what an image holds: exactly len bytes at
 * off, or the test fails. */
void test_file_read(const char *path, void *buf, size_t len, uint64_t off);
void test_file_write(const char *path, const void *buf, size_t len, uint64_t off);
/* malloc that fails the test instead of returning NULL (len 0 allowed). */
void *test_xmalloc(size_t len);
/* 4 KiB aligned (any O_DIRECT), filled with 0xA5 so stale contents show. */
void *test_aligned_buf(size_t len);
/* Fails with the first differing byte (its offset counted from base). */
void test_expect_equal(const void *got, const void *want, size_t len, const char *what,
		       uint64_t base);
/* got must equal test_fill_pattern(seed) at off. */
void test_expect_pattern(const void *got, size_t len, uint64_t off, uint32_t seed,
			 const char *what);

/* The vdisk binary ctest names in $VDISK; NULL (after a message) when it is not there, and
 * the test program should exit TEST_SKIP. */
const char *test_vdisk_binary(void);
/* A cmocka group teardown that removes test_tmpdir(). */
int test_teardown_tmpdir(void **state);

/* The findings of a check (a JSON array of {severity, message}) as "[severity] message"
 * lines in text (truncated to size), for failure messages. */
typedef struct json_t json_t;
void test_findings_text(json_t *findings, char *text, size_t size);

#endif
