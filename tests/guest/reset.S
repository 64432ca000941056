/* A warm reset requested through a device: the first run counts itself in RAM, switches
 * 0xE0000 to RAM and marks it, then asks for a reset; the second run sees its counter (RAM
 * kept) and 0xE0000 back in ROM (PAM at its power-on state), and exits. */
#include "payload.h"
	payload_start
	mov $0xE000, %ax
	mov %ax, %es
	count_run second_run
	log_es_dword 0
	pam_set 0xE0000, 3
	movl $0x12345678, %es:0
	mov $TEST_RESET_PORT, %dx
	out %al, %dx
1:	jmp 1b
second_run:
	log_es_dword 0
	exit_with 0x16
	reset_vector
