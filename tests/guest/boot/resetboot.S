/* A boot sector that resets the machine the way a guest kernel can leave it: with a
 * command in progress on the IDE disk. SeaBIOS loads it from ide:0:0. The state sector
 * (LBA 1) tells the boots apart:
 *   first boot (state byte 0): writes state 1 through INT 13h, prints
 *       "hvreset: resetting", issues READ DMA to the primary master without starting the
 *       bus master (the channel is busy, waiting for it), and resets the machine with the
 *       method of the parameter block: 1 = the reset control register (0xCF9),
 *       2 = a triple fault, 3 = the keyboard controller's reset line;
 *   second boot (state byte 1): prints "hvreset: rebooted" and ends the VM with status 0
 *       through the test-exit port.
 * A platform that keeps the channel busy across the reset never gets here: SeaBIOS waits
 * for the channel to leave busy before it resets it, finds no disk and retries forever.
 */
#include "boot.h"
#include "gen1_layout.h"

	.code16
	.text

	.set COM1, GEN1_COM1_BASE
	.set TEST_EXIT, GEN1_TEST_EXIT_PORT
	.set IDE0_CMD, GEN1_IDE0_CMD
	.set RESET_CONTROL, 0xCF9
	.set BUF_SEG, 0x1000
	.set PARAMS, 0x1F0

	boot_entry
	movb %dl, boot_drive
	movb $0x42, %ah /* read the state sector */
	movw $dap, %si
	int $0x13
	jc fail
	pushw %ds
	movw $BUF_SEG, %ax
	movw %ax, %ds
	movb 0, %al
	popw %ds
	testb %al, %al
	jnz rebooted

	pushw %es /* state 1, written back */
	movw $BUF_SEG, %ax
	movw %ax, %es
	movb $1, %es:0
	popw %es
	movw $0x4300, %ax
	movb boot_drive, %dl
	movw $dap, %si
	int $0x13
	jc fail
	movw $msg_resetting, %si
	call com1_puts

	cli
	movw $IDE0_CMD + 6, %dx /* master, LBA 0, 8 sectors, READ DMA */
	movb $0xE0, %al
	outb %al, %dx
	movw $IDE0_CMD + 2, %dx
	movb $8, %al
	outb %al, %dx
	xorb %al, %al
	incw %dx
	outb %al, %dx
	incw %dx
	outb %al, %dx
	incw %dx
	outb %al, %dx
	movw $IDE0_CMD + 7, %dx
	movb $0xC8, %al
	outb %al, %dx

	cmpb $2, params_method
	je triple_fault

	cmpb $3, params_method
	je keyboard_reset
	movw $RESET_CONTROL, %dx
	movb $0x06, %al /* system reset */
	outb %al, %dx
	jmp halt

keyboard_reset: /* the i8042's reset line, pulsed */
	movb $0xFE, %al
	outb %al, $0x64
	jmp halt

/* In protected mode with an empty interrupt table (real-mode delivery ignores the limit):
 * ud2 faults, the fault cannot be delivered, nor the double fault, and the CPU shuts
 * down. */
triple_fault:
	lgdt gdt_desc
	movl %cr0, %eax
	orb $1, %al
	movl %eax, %cr0
	ljmp $8, $pm32
	.code32
pm32:
	lidt null_idt
	ud2
	.code16

halt:	hlt
	jmp halt

rebooted:
	movw $msg_rebooted, %si
	movb $0, %al
	jmp say_and_exit
fail:
	movw $msg_error, %si
	movb $1, %al
say_and_exit: /* prints %si, ends the VM with status %al */
	pushw %ax
	call com1_puts
	popw %ax
	jmp test_exit

	com1_routines

msg_resetting: .asciz "hvreset: resetting\r\n"
msg_rebooted:  .asciz "hvreset: rebooted\r\n"
msg_error:     .asciz "hvreset: INT 13h failed\r\n"

boot_drive:    .byte 0
	.balign 4
null_idt:      .word 0
	.long 0
gdt:           .quad 0
	.quad 0x00CF9A000000FFFF /* 08h: flat 32-bit code */
gdt_desc:      .word gdt_desc - gdt - 1
	.long gdt
dap:           .byte 16, 0 /* the state sector: LBA 1 at BUF_SEG:0 */
	.word 1
	.word 0, BUF_SEG
	.long 1, 0

	.org PARAMS
params_method: .byte 0 /* 1: reset control register, 2: triple fault, 3: i8042 */

	.org 510
	.byte 0x55, 0xAA
