/* Helpers for tests that run command-line tools (include after cmocka.h); assert_contains
 * and test_run_vdisk are in test_util.h. */
#ifndef HV_TEST_CLI_H
#define HV_TEST_CLI_H

#include <stdbool.h>
#include <string.h>

#include "test_util.h"

/* Whether a tool is on the PATH. */
static inline bool test_have(const char *tool)
{
	return test_run(NULL, 0, "command -v %s >/dev/null", tool) == 0;
}

#endif
