/* Jumps into the legacy video window, which is neither RAM nor ROM: KVM cannot fetch
 * instructions there and reports an internal error, which must stop the VM cleanly. */
#include "payload.h"
	payload_start
	mov $0x42, %al
	log al
	ljmp $0xA000, $0
	reset_vector
