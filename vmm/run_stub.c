/* Stands in for vmm_run until the VM assembly exists: `vmm run` parses and checks its
 * options, then says that it cannot build the VM yet. */
#include <stdio.h>

#include "cli.h"
#include "run_args.h"

int vmm_run(const struct vmm_run_config *cfg)
{
	(void)cfg;
	fprintf(stderr, "vmm: run: the options are valid, but running a VM is not available yet "
			"in this build\n");
	return CLI_EXIT_FAIL;
}
