/* A boot sector for the firmware boot tests: SeaBIOS loads it from an IDE disk (MBR, at
 * 0x7C00) or from an El Torito ISO on the IDE DVD (no-emulation image), with DL = the
 * drive it booted from. It reads `count` sectors from `start_lba` through INT 13h
 * extended reads, folds them into a checksum (h = rol(h, 5) ^ dword, from 0x12345678,
 * over every little-endian dword in order), prints
 *     hvboot: sum XXXXXXXX sectors NNNNNNNN
 * on COM1 (polled 16550, no BIOS console needed), optionally writes one sector holding
 * "hvboot-wrote" and the checksum at `write_lba` (INT 13h extended write), and ends the VM
 * through the test-exit port: 0 on success, 1 when an INT 13h call failed (after printing
 * "hvboot: error AH=XX").
 *
 * The test patches the parameter block at offset 0x1E0 before building the image (the sector has no
 * partition table; SeaBIOS needs only the 0xAA55 signature).
 */
#include "boot.h"

	.code16
	.text

	.set COM1, 0x3F8
	.set TEST_EXIT, 0x501
	.set BUF_SEG, 0x1000 /* reads land at 0x10000 */
	.set PARAMS, 0x1E0

	boot_entry
	movb %dl, boot_drive

	movw $msg_start, %si
	call com1_puts

	/* INT 13h extensions present? */
	movb $0x41, %ah
	movw $0x55AA, %bx
	movb boot_drive, %dl
	int $0x13
	jc fail
	cmpw $0xAA55, %bx
	jne fail

	movl $0x12345678, %ebp     /* running checksum */
	movl params_start, %eax
	movl %eax, dap_lba
	movl params_count, %ecx    /* sectors left */

read_loop:
	jecxz read_done
	movw params_chunk, %ax     /* sectors per call */
	movzwl %ax, %eax
	cmpl %eax, %ecx
	jae 1f
	movl %ecx, %eax
1:	movw %ax, dap_count
	pushl %ecx
	movb $0x42, %ah
	movb boot_drive, %dl
	movw $dap, %si
	int $0x13
	popl %ecx
	jc fail

	/* fold dap_count * sector_size bytes at BUF_SEG:0 into %ebp */
	movzwl dap_count, %eax
	movzwl params_sector_size, %edx
	imull %edx, %eax
	shrl $2, %eax              /* dwords */
	pushl %ecx
	movl %eax, %ecx
	pushw %ds
	movw $BUF_SEG, %ax
	movw %ax, %ds
	xorw %si, %si
2:	roll $5, %ebp
	lodsl
	xorl %eax, %ebp
	decl %ecx
	jnz 2b
	popw %ds
	popl %ecx

	movzwl dap_count, %eax
	addl %eax, dap_lba
	subl %eax, %ecx
	jmp read_loop

read_done:
	movw $msg_sum, %si
	call com1_puts
	movl %ebp, %eax
	call com1_puthex
	movw $msg_sectors, %si
	call com1_puts
	movl params_count, %eax
	call com1_puthex
	movw $msg_crlf, %si
	call com1_puts

	/* optional write-back of one sector: "hvboot-wrote" + checksum, rest zero */
	movl params_write_lba, %eax
	testl %eax, %eax
	jz done
	movl %eax, dap_lba
	movw $1, dap_count
	pushw %es
	movw $BUF_SEG, %ax
	movw %ax, %es
	xorw %di, %di
	movw params_sector_size, %cx
	xorb %al, %al
	rep stosb
	xorw %di, %di
	movw $wrote_tag, %si
	movw $12, %cx
	rep movsb
	movl %ebp, %eax
	stosl
	popw %es
	movw $0x4300, %ax          /* extended write, no verify */
	movb boot_drive, %dl
	movw $dap, %si
	int $0x13
	jc fail
	movw $msg_wrote, %si
	call com1_puts

done:
	movb $0, %al
	jmp test_exit

fail:
	pushw %ax
	movw $msg_error, %si
	call com1_puts
	popw %ax
	movb %ah, %al
	movzbl %al, %eax
	call com1_puthex
	movw $msg_crlf, %si
	call com1_puts
	movb $1, %al
	jmp test_exit

	com1_routines

msg_start:   .asciz "hvboot: start\r\n"
msg_sum:     .asciz "hvboot: sum "
msg_sectors: .asciz " sectors "
msg_wrote:   .asciz "hvboot: wrote\r\n"
msg_error:   .asciz "hvboot: error AH="
msg_crlf:    .asciz "\r\n"
wrote_tag:   .ascii "hvboot-wrote"

boot_drive:  .byte 0
	.balign 4
dap:         .byte 16, 0  /* disk address packet: size, reserved */
dap_count:   .word 0
dap_buf:     .word 0, BUF_SEG
dap_lba:     .long 0, 0

	.org PARAMS
params_start:       .long 1    /* first sector to read */
params_count:       .long 0    /* sectors to read */
params_write_lba:   .long 0    /* 0: no write-back */
params_sector_size: .word 512  /* 512 for a disk, 2048 for a DVD */
params_chunk:       .word 16   /* sectors per INT 13h call (chunk * size <= 64 KiB) */

	.org 510
	.byte 0x55, 0xAA
