/* Port I/O: writes of 1, 2 and 4 bytes, reads of each size echoed back, `rep outsb` of a
 * string in ROM and `rep insw` into RAM (one exit each with count > 1). */
#include "payload.h"
	payload_start
	mov $0xA5, %al
	log al
	mov $0xBEEF, %ax
	log ax
	mov $0xDEADBEEF, %eax
	log eax

	mov $TEST_SRC_PORT, %dx
	in %dx, %al
	log al
	mov $TEST_SRC_PORT, %dx
	in %dx, %ax
	log ax
	mov $TEST_SRC_PORT, %dx
	in %dx, %eax
	log eax

	push %ds
	mov $0xF000, %ax
	mov %ax, %ds
	mov $message, %si
	mov $(message_end - message), %cx
	mov $TEST_LOG_PORT, %dx
	rep outsb
	pop %ds

	mov $RAM_STRING_BUF, %di
	mov $8, %cx
	mov $TEST_SRC_PORT, %dx
	rep insw

	exit_with 0x11
message:
	.ascii "string I/O works"
message_end:
	reset_vector
