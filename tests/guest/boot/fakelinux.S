/* A fake Linux kernel for the direct-boot test: a bzImage-shaped file whose setup header
 * is valid (protocol 2.15, relocatable, LOADED_HIGH) and whose real-mode setup, entered the
 * way the boot protocol says (CS = setup segment + 0x20, IP = 0, DS = ES = SS = the setup
 * segment), reports on COM1 (polled 16550) what the boot loader gave it:
 *     fakelinux: setup SSSSSSSS loader LL flags FF heap HHHH vid VVVV
 *     fakelinux: cmdline [<the string at cmd_line_ptr>]
 *     fakelinux: initrd AAAAAAAA size NNNNNNNN sum CCCCCCCC
 *     fakelinux: kernel AAAAAAAA head <16 bytes in hex> sum CCCCCCCC
 *     fakelinux: done
 * then writes 0 to the test-exit port (1 after "fakelinux: error" when a BIOS copy
 * failed). A sum folds the bytes, zero-padded to whole dwords, as h = rol(h, 5) ^ dword
 * from 0x12345678; the kernel sum covers syssize * 16 bytes from code32_start. Memory
 * above 1 MiB is read through INT 15h AH=87h (the BIOS block move) into a buffer at
 * BUF_LINEAR, 32 KiB at a time.
 *
 * The test patches initrd_addr_max and cmdline_size in a copy before booting it.
 */
#include "boot.h"

	.code16
	.text
	.globl _start

	.set COM1, 0x3F8
	.set TEST_EXIT, 0x501
	.set SETUP_SECTS, 7
	.set SETUP_SIZE, (SETUP_SECTS + 1) * 512
	.set BUF_LINEAR, 0x30000
	.set BUF_SEG, BUF_LINEAR >> 4
	.set CHUNK, 0x8000
	.set CMDLINE_MAX, 4096
	.set PM_DWORDS, 2048
	.set PM_SIZE, PM_DWORDS * 4

_start:
	/* The boot sector: never run, the loader enters at 0x200. */
	.org 0x1F1
setup_sects:	.byte SETUP_SECTS
root_flags:	.word 0
syssize:	.long PM_SIZE / 16
ram_size:	.word 0
vid_mode:	.word 0x0000 /* the loader must write 0xFFFF */
root_dev:	.word 0
boot_flag:	.word 0xAA55

	/* 0x200: the header proper, behind its jump */
jump:		.byte 0xEB, setup_entry - header
header:		.ascii "HdrS"
version:	.word 0x020F
realmode_swtch:	.long 0
start_sys_seg:	.word 0x1000
kernel_version:	.word version_string - 0x200
type_of_loader:	.byte 0
loadflags:	.byte 0x01 /* LOADED_HIGH */
setup_move_size: .word 0x8000
code32_start:	.long 0x100000
ramdisk_image:	.long 0
ramdisk_size:	.long 0
bootsect_kludge: .long 0
heap_end_ptr:	.word 0
ext_loader_ver:	.byte 0
ext_loader_type: .byte 0
cmd_line_ptr:	.long 0
initrd_addr_max: .long 0x7FFFFFFF
kernel_alignment: .long 0x200000
relocatable_kernel: .byte 1
min_alignment:	.byte 21
xloadflags:	.word 0
cmdline_size:	.long 0x7FF
hardware_subarch: .long 0
hardware_subarch_data: .quad 0
payload_offset:	.long 0
payload_length:	.long 0
setup_data:	.quad 0
pref_address:	.quad 0x1000000
init_size:	.long 0x100000
handover_offset: .long 0
kernel_info_offset: .long 0

setup_entry:
	cli
	cld
	movw %ds, %ax
	movw %ax, %es

	movw $msg_setup, %si
	call com1_puts
	movw %ds, %ax
	movzwl %ax, %eax
	shll $4, %eax
	call puthex32
	movw $msg_loader, %si
	call com1_puts
	movb type_of_loader, %al
	call puthex8
	movw $msg_flags, %si
	call com1_puts
	movb loadflags, %al
	call puthex8
	movw $msg_heap, %si
	call com1_puts
	movw heap_end_ptr, %ax
	call puthex16
	movw $msg_vid, %si
	call com1_puts
	movw vid_mode, %ax
	call puthex16
	call crlf

	call print_cmdline

	movw $msg_initrd, %si
	call com1_puts
	movl ramdisk_image, %eax
	call puthex32
	movw $msg_size, %si
	call com1_puts
	movl ramdisk_size, %eax
	call puthex32
	movl ramdisk_image, %eax
	movl ramdisk_size, %ecx
	call sum_range
	call print_sum

	movw $msg_kernel, %si
	call com1_puts
	movl code32_start, %eax
	call puthex32
	movw $msg_head, %si
	call com1_puts
	movl code32_start, %eax
	movl $16, %ecx
	call copy_chunk
	call print_head
	movl code32_start, %eax
	movl syssize, %ecx
	shll $4, %ecx
	call sum_range
	call print_sum

	movw $msg_done, %si
	call com1_puts
	movb $0, %al
	jmp test_exit

fail:
	movw $msg_error, %si
	call com1_puts
	movb $1, %al
	jmp test_exit

/* print_cmdline: the string at the linear cmd_line_ptr (below 1 MiB), at most CMDLINE_MAX
 * characters, between brackets. */
print_cmdline:
	movw $msg_cmdline, %si
	call com1_puts
	movl cmd_line_ptr, %eax
	cmpl $0x100000, %eax
	jae 2f
	pushw %ds
	movl %eax, %ebx
	shrl $4, %ebx
	movw %bx, %ds
	andw $0x0F, %ax
	movw %ax, %si
	movw $CMDLINE_MAX, %cx
1:	lodsb
	testb %al, %al
	jz 3f
	call com1_putc
	loop 1b
3:	popw %ds
2:	movw $msg_close, %si
	call com1_puts
	ret

/* sum_range: folds ECX bytes at linear EAX into EBP (from 0x12345678). */
sum_range:
	movl $0x12345678, %ebp
1:	testl %ecx, %ecx
	jz 4f
	movl %ecx, %edx
	cmpl $CHUNK, %edx
	jbe 2f
	movl $CHUNK, %edx
2:	pushl %eax
	pushl %ecx
	pushl %edx
	movl %edx, %ecx
	call copy_chunk
	popl %edx
	/* fold (EDX + 3) / 4 dwords of the buffer */
	pushw %ds
	movw $BUF_SEG, %ax
	movw %ax, %ds
	xorw %si, %si
	movl %edx, %ecx
	addl $3, %ecx
	shrl $2, %ecx
3:	roll $5, %ebp
	lodsl
	xorl %eax, %ebp
	decl %ecx
	jnz 3b
	popw %ds
	popl %ecx
	popl %eax
	addl %edx, %eax
	subl %edx, %ecx
	jmp 1b
4:	ret

/* copy_chunk: ECX (1..CHUNK) bytes at linear EAX to BUF_LINEAR through INT 15h AH=87h,
 * with the bytes up to the next dword boundary zeroed. Jumps to fail when the BIOS
 * refuses. */
copy_chunk:
	movl $BUF_LINEAR, %ebx
	movw %ax, move_src + 2
	shrl $16, %eax
	movb %al, move_src + 4
	movb %ah, move_src + 7
	movw %bx, move_dst + 2
	shrl $16, %ebx
	movb %bl, move_dst + 4
	movb %bh, move_dst + 7
	pushl %ecx
	incl %ecx
	shrl $1, %ecx /* words */
	movw $move_gdt, %si
	movb $0x87, %ah
	int $0x15
	popl %ecx
	jc fail
	testb %ah, %ah
	jnz fail
	/* zero [ECX, round_up(ECX, 4)) in the buffer */
	pushw %es
	movw $BUF_SEG, %ax
	movw %ax, %es
	movw %cx, %di
1:	testw $3, %di
	jz 2f
	movb $0, %es:(%di)
	incw %di
	jmp 1b
2:	popw %es
	ret

/* print_head: the first 16 bytes of the buffer in hex. */
print_head:
	pushw %ds
	movw $BUF_SEG, %ax
	movw %ax, %ds
	xorw %si, %si
	movw $16, %cx
1:	lodsb
	call puthex8
	loop 1b
	popw %ds
	ret

print_sum:
	movw $msg_sum, %si
	call com1_puts
	movl %ebp, %eax
	call puthex32
crlf:
	movw $msg_crlf, %si
	jmp com1_puts

	com1_routines

/* puthex32/16/8: EAX, AX, AL as 8, 4 or 2 hex digits; CX kept */
puthex32:
	pushw %cx
	call com1_puthex
	popw %cx
	ret
puthex16:
	pushw %cx
	shll $16, %eax
	movw $4, %cx
	call com1_puthex_cx
	popw %cx
	ret
puthex8:
	pushw %cx
	shll $24, %eax
	movw $2, %cx
	call com1_puthex_cx
	popw %cx
	ret

msg_setup:   .asciz "fakelinux: setup "
msg_loader:  .asciz " loader "
msg_flags:   .asciz " flags "
msg_heap:    .asciz " heap "
msg_vid:     .asciz " vid "
msg_cmdline: .asciz "fakelinux: cmdline ["
msg_close:   .asciz "]\r\n"
msg_initrd:  .asciz "fakelinux: initrd "
msg_size:    .asciz " size "
msg_kernel:  .asciz "fakelinux: kernel "
msg_head:    .asciz " head "
msg_sum:     .asciz " sum "
msg_done:    .asciz "fakelinux: done\r\n"
msg_error:   .asciz "fakelinux: error\r\n"
msg_crlf:    .asciz "\r\n"
version_string: .asciz "fakelinux (hvstack direct-boot test)"

/* The INT 15h AH=87h descriptor table: null, GDT (the BIOS fills it), source, destination,
 * code and stack (the BIOS fills them). Source and destination: 64 KiB limit, data
 * read/write, base bytes 2-4 and 7 written by copy_chunk. */
	.balign 8
move_gdt:
	.quad 0
	.quad 0
move_src:
	.word 0xFFFF, 0
	.byte 0, 0x93, 0, 0
move_dst:
	.word 0xFFFF, 0
	.byte 0, 0x93, 0, 0
	.quad 0
	.quad 0

	.org SETUP_SIZE
/* The protected-mode "kernel": 8 KiB of a generator's output (x = x * 1664525 +
 * 1013904223), never run, only loaded and summed. */
pm_start:
	.set x, 0x4C494E58
	.rept PM_DWORDS
	.set x, (x * 1664525 + 1013904223) & 0xFFFFFFFF
	.long x
	.endr
pm_end:
