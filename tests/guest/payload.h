/* What the guest payloads and test_vm.c agree on: the test devices' ports and MMIO range,
 * and the RAM the payloads use. Assembler macros below are shared by the payloads.
 *
 * A payload is a 64 KiB flat image linked at offset 0 of segment F000: loaded as the
 * firmware, it appears at 0xFFFF0000 (reset vector at its offset 0xFFF0) and, through the
 * PAM's power-on "ROM" state, at 0xF0000, where its far jump continues.
 */
#ifndef HV_GUEST_PAYLOAD_H
#define HV_GUEST_PAYLOAD_H

#include "gen1_layout.h"

#define PAYLOAD_SIZE 0x10000

/* test devices (test_vm.c) */
#define TEST_EXIT_PORT	GEN1_TEST_EXIT_PORT /* 1-byte write v: VM_STOP_TEST_EXIT, v */
#define TEST_LOG_PORT	0x700 /* writes of 1, 2, 4 bytes are recorded in order */
#define TEST_SRC_PORT	0x704 /* reads return the next value of a sequence the test knows */
#define TEST_RESET_PORT 0x708 /* any write: vm_request_reset */
#define TEST_PAM_PORT	0x70C /* 4-byte write base | mode: vm_set_pam(base, 16 KiB, mode) */
#define TEST_IRQ_READY	0x710 /* write: the payload waits for an interrupt */
#define TEST_IRQ_ACK	0x711 /* write: the handler ran, the device lowers its line */
#define TEST_MMIO_BASE	0xC0001000 /* 256 bytes: writes recorded, reads a known function */
#define TEST_MMIO_UNMAPPED 0xC0100000
#define TEST_IRQ	5 /* ISA IRQ the interrupt test raises */

/* guest RAM the payloads use */
#define RAM_AP_FLAG	 0x500 /* the AP stores AP_FLAG_VALUE here */
#define RAM_IRQ_FLAG	 0x504
#define RAM_RUN_COUNTER	 0x600 /* incremented on every run: survives warm resets */
#define RAM_SPIN_COUNTER 0x700
#define RAM_STRING_BUF	 0x1000
#define AP_FLAG_VALUE	 0x5A
#define AP_ENTRY	 0xF000 /* offset in the image of the AP's SIPI entry (vector 0xFF) */

#ifdef __ASSEMBLER__
/* The payload's entry (where the reset vector jumps): real mode, interrupts off,
 * DS = ES = SS = 0, stack below 0x7000. */
.macro payload_start
	.code16
	.globl start
start:
	cli
	cld
	xor %ax, %ax
	mov %ax, %ds
	mov %ax, %es
	mov %ax, %ss
	mov $0x7000, %sp
.endm

/* out of \reg (al, ax or eax) to the log port */
.macro log reg
	mov $TEST_LOG_PORT, %dx
	out %\reg, %dx
.endm

.macro log_es_dword offset
	mov %es:\offset, %eax
	log eax
.endm

/* Counts this run in RAM (kept across warm resets), logs the count and jumps to \later on
 * every run but the first. */
.macro count_run later
	incw RAM_RUN_COUNTER
	mov RAM_RUN_COUNTER, %ax
	log ax
	cmpw $1, RAM_RUN_COUNTER
	jne \later
.endm

.macro exit_with val
	mov $\val, %al
	mov $TEST_EXIT_PORT, %dx
	out %al, %dx
1:	hlt
	jmp 1b
.endm

.macro pam_set base, mode
	mov $(\base | \mode), %eax
	mov $TEST_PAM_PORT, %dx
	out %eax, %dx
.endm

/* From real mode to 32-bit protected mode with flat 4 GiB code and data segments. The GDT
 * lives in ROM, so its descriptors come with the accessed bit already set: loading a
 * segment would otherwise write that bit into read-only memory, which KVM retries forever. */
.macro enter_pm32
	lgdtl %cs:pm32_gdt_desc
	mov %cr0, %eax
	or $1, %eax
	mov %eax, %cr0
	ljmpl $0x08, $(0xF0000 + pm32_entry)
pm32_gdt:
	.quad 0
	.quad 0x00CF9B000000FFFF /* 0x08: code, base 0, 4 GiB, 32-bit */
	.quad 0x00CF93000000FFFF /* 0x10: data */
pm32_gdt_desc:
	.word 23
	.long 0xF0000 + pm32_gdt
	.code32
pm32_entry:
	mov $0x10, %ax
	mov %ax, %ds
	mov %ax, %es
	mov %ax, %ss
	mov $0x7000, %esp
.endm

/* The reset vector: a far jump to start, in the low alias. Ends the 64 KiB image. */
.macro reset_vector
	.code16
	.org 0xFFF0
	ljmp $0xF000, $start
	.org PAYLOAD_SIZE
.endm
#endif

#endif
