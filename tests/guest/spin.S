/* Counts in RAM forever, for pause/resume: the count must freeze while the VM is paused. */
#include "payload.h"
	payload_start
1:	incl RAM_SPIN_COUNTER
	jmp 1b
	reset_vector
