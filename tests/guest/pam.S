/* PAM: the test loads a 128 KiB image whose first half is a pattern it knows, so
 * 0xE0000-0xEFFFF first shows that pattern (ROM). The payload switches 0xE0000-0xE3FFF to
 * RAM, copies 16 KiB of its own code there and reads it back, makes it read-only (a write
 * is dropped), returns it to ROM, and tries write-only (reads ROM, writes reach RAM). */
#include "payload.h"
	payload_start
	mov $0xE000, %ax
	mov %ax, %es
	log_es_dword 0

	pam_set 0xE0000, 3
	log_es_dword 0
	push %ds
	mov $0xF000, %ax
	mov %ax, %ds
	xor %si, %si
	xor %di, %di
	mov $0x2000, %cx
	rep movsw
	pop %ds
	log_es_dword 0
	log_es_dword 0x3FFC

	pam_set 0xE0000, 1
	movl $0x55AA55AA, %es:0
	log_es_dword 0

	pam_set 0xE0000, 0
	log_es_dword 0

	pam_set 0xE0000, 2
	movl $0x600DCAFE, %es:4
	log_es_dword 4
	pam_set 0xE0000, 1
	log_es_dword 4

	log_es_dword 0x4000
	exit_with 0x13
	reset_vector
