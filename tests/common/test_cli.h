/* Helpers for tests that run the vdisk command line (include after cmocka.h). */
#ifndef HV_TEST_CLI_H
#define HV_TEST_CLI_H

#include <stdbool.h>
#include <string.h>

#include "test_util.h"

/* Fails the test unless needle occurs in haystack (the output of a command). */
#define assert_contains(haystack, needle)                                                          \
	do {                                                                                       \
		if (!strstr((haystack), (needle)))                                                 \
			fail_msg("expected \"%s\" in output:\n%s", (needle), (haystack));          \
	} while (0)

/* Whether a tool is on the PATH. */
static inline bool test_have(const char *tool)
{
	return test_run(NULL, 0, "command -v %s >/dev/null", tool) == 0;
}

#endif
