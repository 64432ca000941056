/* An interrupt through the PIC in real mode: the payload programs both 8259s (vectors
 * 0x20/0x28), unmasks only TEST_IRQ, says it is ready and halts with interrupts on; the
 * handler acknowledges the device, sends EOI and logs its vector. */
#include "payload.h"
#define VECTOR (0x20 + TEST_IRQ)
	payload_start
	movw $irq_handler, VECTOR * 4
	movw $0xF000, VECTOR * 4 + 2
	movb $0, RAM_IRQ_FLAG

	mov $0x11, %al /* ICW1: edge, cascade, ICW4 follows */
	out %al, $0x20
	out %al, $0xA0
	mov $0x20, %al /* ICW2: vector bases */
	out %al, $0x21
	mov $0x28, %al
	out %al, $0xA1
	mov $0x04, %al /* ICW3: slave on IRQ 2 */
	out %al, $0x21
	mov $0x02, %al
	out %al, $0xA1
	mov $0x01, %al /* ICW4: 8086 mode */
	out %al, $0x21
	out %al, $0xA1
	mov $(0xFF & ~(1 << TEST_IRQ)), %al
	out %al, $0x21
	mov $0xFF, %al
	out %al, $0xA1

	mov $TEST_IRQ_READY, %dx
	out %al, %dx
wait:
	sti
	hlt
	cli
	cmpb $0, RAM_IRQ_FLAG
	je wait
	mov RAM_IRQ_FLAG, %al
	log al
	exit_with 0x14

irq_handler:
	push %ax
	push %dx
	incb RAM_IRQ_FLAG
	mov $TEST_IRQ_ACK, %dx
	out %al, %dx
	mov $0x20, %al
	out %al, $0x20
	mov $VECTOR, %al
	log al
	pop %dx
	pop %ax
	iret
	reset_vector
