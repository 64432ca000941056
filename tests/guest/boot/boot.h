/* What the boot programs (boot sectors SeaBIOS loads at 0x7C00, 16-bit real mode) share:
 * their entry and their COM1 output (polled 16550, no BIOS service). The includer sets the
 * symbol COM1 to the port base and places the routines with com1_routines. */
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
.endm
#endif

#endif
