/* Small ports of the generation 1 platform, each registered only when the configuration
 * asks for it:
 * - POST codes (GEN1_POST_PORT, 0x80): writes ignored, reads all ones.
 * - Debug console (GEN1_DEBUGCON_PORT, 0x402): reads 0xE9 (how firmware finds it), written
 *   bytes go to a serial backend (or are discarded without one).
 * - Test exit (GEN1_TEST_EXIT_PORT, 0x501): a 1-byte write of v calls the test_exit hook
 *   with v; other access sizes are ignored.
 */
#ifndef HV_MISC_PORTS_H
#define HV_MISC_PORTS_H

#include <stdbool.h>

#include "dev.h"
#include "platform_hooks.h"

struct misc_ports;
struct serial_backend;

struct misc_ports_config {
	struct dev_bus *bus;
	struct platform_hooks hooks; /* test_exit */
	bool post;
	bool debugcon;
	struct serial_backend *debugcon_output; /* may be NULL; stays the caller's */
	bool test_exit;
};

/* Returns 0, -EINVAL, -ENOMEM or the dev_bus error (after which the bus may hold ranges of
 * the discarded ports: discard the bus too). */
int misc_ports_create(const struct misc_ports_config *cfg, struct misc_ports **out);
/* After the VM stopped dispatching to the bus. */
void misc_ports_destroy(struct misc_ports *m);

#endif
