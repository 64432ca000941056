/* Two vCPUs: the BSP enables its LAPIC and sends INIT then a SIPI with vector 0xFF to all
 * other CPUs; the AP starts at 0xFF000 (AP_ENTRY in this image), logs 0x80 | its APIC ID
 * from CPUID and sets a flag; the BSP waits for the flag and logs its own APIC ID. */
#include "payload.h"
#define LAPIC	   0xFEE00000
#define LAPIC_SVR  0xF0
#define LAPIC_ICR  0x300
#define ICR_OTHERS (3 << 18)
#define ICR_BUSY   (1 << 12)
	payload_start
	enter_pm32
	mov $LAPIC, %ebx
	movl $0x1FF, LAPIC_SVR(%ebx)
	movl $(ICR_OTHERS | 0x4500), LAPIC_ICR(%ebx) /* INIT */
	call wait_icr
	movl $(ICR_OTHERS | 0x4600 | (AP_ENTRY >> 12) | 0xF0), LAPIC_ICR(%ebx) /* SIPI */
	call wait_icr

	mov $2000000, %ecx
wait_ap:
	cmpb $AP_FLAG_VALUE, RAM_AP_FLAG
	je ap_started
	loop wait_ap
ap_started:
	mov $1, %eax
	cpuid
	shr $24, %ebx
	mov %bl, %al
	log al
	mov RAM_AP_FLAG, %al
	log al
	exit_with 0x15

wait_icr:
	testl $ICR_BUSY, LAPIC_ICR(%ebx)
	jnz wait_icr
	ret

	.code16
	.org AP_ENTRY
ap_entry:
	cli
	xor %ax, %ax
	mov %ax, %ds
	mov $1, %eax
	cpuid
	shr $24, %ebx
	mov %bl, %al
	or $0x80, %al
	log al
	movb $AP_FLAG_VALUE, RAM_AP_FLAG
1:	hlt
	jmp 1b
	reset_vector
