/* A triple fault: in protected mode with an empty interrupt table, ud2 faults, the fault
 * faults, and the CPU shuts down, which the VM treats as a reset. The second run exits. */
#include "payload.h"
	payload_start
	count_run second_run
	enter_pm32
	lidtl empty_idt + 0xF0000
	ud2
1:	jmp 1b
	.code16
second_run:
	exit_with 0x17
empty_idt:
	.word 0
	.long 0
	reset_vector
