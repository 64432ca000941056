/* COM1 output for the boot programs (16-bit real mode, polled 16550, no BIOS service): the
 * includer sets the symbol COM1 to the port base and places the routines where it wants
 * them with com1_routines. */
#ifndef HV_BOOT_COM1_H
#define HV_BOOT_COM1_H

#ifdef __ASSEMBLER__
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
