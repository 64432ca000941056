/* What the 16-bit boot programs (boot sectors SeaBIOS loads at 0x7C00, the fake kernel's
 * real-mode setup) share: their entry and their COM1 output (polled 16550, no BIOS
 * service) and the end of the run. The includer sets the symbols COM1 and TEST_EXIT to the
 * ports and places the routines with com1_routines. */
#ifndef HV_BOOT_H
#define HV_BOOT_H

#ifdef __ASSEMBLER__
/* _start: CS:IP = 0:7C00 (some BIOSes jump to 07C0:0000), DS = ES = SS = 0, the stack
 * below the boot sector, string operations forward, interrupts on; DL is kept. */
.macro boot_entry
	.globl _start
_start:
	cli
	ljmp $0, $1f
1:	cld
	xorw %ax, %ax
	movw %ax, %ds
	movw %ax, %es
	movw %ax, %ss
	movw $0x7C00, %sp
	sti
.endm

.macro com1_routines
/* com1_puts: prints the NUL-terminated string at %si (left past it) */
com1_puts:
	pushw %ax
1:	lodsb
	testb %al, %al
	jz 2f
	call com1_putc
	jmp 1b
2:	popw %ax
	ret

/* com1_putc: %al to COM1, once the transmitter holding register is empty */
com1_putc:
	pushw %dx
	pushw %ax
	movw $COM1 + 5, %dx
1:	inb %dx, %al
	testb $0x20, %al
	jz 1b
	popw %ax
	movw $COM1, %dx
	outb %al, %dx
	popw %dx
	ret

/* com1_puthex: %eax as 8 hex digits; com1_puthex_cx: its top %cx digits (%cx clobbered) */
com1_puthex:
	movw $8, %cx
com1_puthex_cx:
1:	roll $4, %eax
	pushl %eax
	andb $0x0F, %al
	addb $'0', %al
	cmpb $'9', %al
	jbe 2f
	addb $'A' - '9' - 1, %al
2:	call com1_putc
	popl %eax
	loop 1b
	ret

/* test_exit: stops the VM with status %al (`vmm run --test-exit`); does not return */
test_exit:
	movw $TEST_EXIT, %dx
	outb %al, %dx
	cli
1:	hlt
	jmp 1b
.endm
#endif

#endif
