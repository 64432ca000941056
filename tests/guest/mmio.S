/* MMIO from 32-bit protected mode: writes and reads of 1, 2 and 4 bytes to a registered
 * range, reads of unmapped MMIO (all ones), and writes to the firmware ROM through both of
 * its aliases, which must be dropped. */
#include "payload.h"
	payload_start
	enter_pm32
	mov $TEST_MMIO_BASE, %ebx
	movb $0x12, (%ebx)
	movw $0x3456, 2(%ebx)
	movl $0x789ABCDE, 4(%ebx)
	movb 8(%ebx), %al
	log al
	movw 10(%ebx), %ax
	log ax
	movl 12(%ebx), %eax
	log eax

	movl TEST_MMIO_UNMAPPED, %eax
	log eax
	movb TEST_MMIO_UNMAPPED + 5, %al
	log al
	movl $0x11111111, TEST_MMIO_UNMAPPED

	mov $(0xFFFF0000 + rom_probe), %ebx
	movl $0x11111111, (%ebx)
	movl (%ebx), %eax
	log eax
	mov $(0xF0000 + rom_probe), %ebx
	movl $0x22222222, (%ebx)
	movl (%ebx), %eax
	log eax
	exit_with 0x12
rom_probe:
	.long 0xCAFEF00D
	reset_vector
