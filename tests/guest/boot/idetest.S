/* idetest: a guest program that drives the PIIX IDE registers directly, booted by SeaBIOS
 * from the IDE disk at ide:0:0.
 *
 * The image is IMAGE_BYTES long, linked flat at 0x7C00: the boot sector (sector 0) loads the
 * rest from sectors 1.. with INT 13h, then the program runs the steps the parameter block
 * (at file offset 0x200, patched by the test) selects, in the order of the step table. No
 * BIOS service is used after loading: COM1 is polled, the PICs are programmed here, the PIT
 * (left at 18.2 Hz by SeaBIOS) bounds every wait. Each step prints one line on COM1,
 *     idetest: STEP ok|fail key=HEX ...
 * and the program ends with "idetest: done failed=NN" and a write of the number of failed
 * steps to the test-exit port (62: the load failed, 63: no parameter block).
 *
 * Checksums ("sum=") fold every little-endian dword of the data, in transfer order, into
 * h = rol(h, 5) ^ dword starting from 0x12345678, like bootsect.S. The data the program
 * writes is its own pattern: dword i of a write seeded s is x_i, x_0 = s,
 * x_{i+1} = x_i * 1664525 + 1013904223 (mod 2^32).
 *
 * Disk sectors the steps use (LBA relative to data_lba, which holds the test's pattern):
 *   pio-read      +0, 16 sectors      READ SECTORS, rep insw, polled (nIEN set)
 *   pio-read-ext  +16, 16 sectors     READ SECTORS EXT, rep insd, one interrupt per sector
 *   pio-multiple  +32, 32 sectors     SET MULTIPLE MODE 8, READ MULTIPLE, interrupts
 *   dma-read      +64, 16 sectors     READ DMA, one PRD entry
 *   dma-read-sg   +80, 64 sectors     READ DMA EXT, five entries of odd word counts
 *   err-prd       +64, 8 sectors      the read that shows the VM still works
 *   loop-dma/pio  +(i % 16) * 8, 8 sectors each
 * and relative to scratch_lba (zero on the disk before the run):
 *   pio-write     +0, 8 sectors       WRITE SECTORS of pattern seed
 *   dma-write     +16, 32 sectors     WRITE DMA EXT of pattern seed + 1
 *   err-prd       +64, 8 sectors      a WRITE DMA from outside RAM: must stay zero
 * The ATAPI steps read the DVD at ide:1:0 from iso_lba: +0 (8 sectors, PIO, limit FFFEh),
 * +8 (2 sectors, PIO, limit 0123h), +16 (16 sectors, DMA).
 */
#include "boot.h"
#include "gen1_layout.h"

	.code16
	.text

	.set COM1, GEN1_COM1_BASE
	.set TEST_EXIT, GEN1_TEST_EXIT_PORT
	.set IDE0_CMD, GEN1_IDE0_CMD
	.set IDE0_CTL, GEN1_IDE0_CTL
	.set IDE1_CMD, GEN1_IDE1_CMD
	.set IDE1_CTL, GEN1_IDE1_CTL
	.set PCI_ADDR, GEN1_PCI_CONFIG_ADDR
	.set PCI_DATA, GEN1_PCI_CONFIG_DATA
	/* the 8259s, programmed with the BIOS vector bases: IRQ 0-7 at 08h, IRQ 8-15 at 70h */
	.set PIC1, 0x20
	.set PIC2, 0xA0
	.set IDE0_VECTOR, 0x70 + GEN1_IDE0_IRQ - 8
	.set IDE1_VECTOR, 0x70 + GEN1_IDE1_IRQ - 8
	.set PIC2_MASK, ~(1 << (GEN1_IDE0_IRQ - 8) | 1 << (GEN1_IDE1_IRQ - 8)) & 0xFF

	.set IMAGE_BYTES, 0x2000 /* the whole program; the boot sector loads the rest */
	.set LOAD_SECTORS, IMAGE_BYTES / 512 - 1
	.set PARAMS_MAGIC, 0x50454449 /* "IDEP" */
	.set TIMEOUT_TICKS, 91	      /* 5 s of 18.2 Hz timer ticks */
	.set DETAIL_MAX, 160	      /* characters of a step's detail */

	/* conventional memory SeaBIOS leaves free */
	.set PIO_SEG, 0x1000   /* 0x10000: PIO data, IDENTIFY data (64 KiB) */
	.set CHECK_SEG, 0x2000 /* 0x20000: PIO write source, read-backs */
	.set DMA_BUF, 0x30000  /* single-entry DMA transfers (32 KiB) */
	.set GATHER_BUF, 0x60000
	.set WRITE_BUF, 0x70000

	/* ATA status and control bits */
	.set ST_ERR, 0x01
	.set ST_DRQ, 0x08
	.set ST_DRDY, 0x40
	.set ST_BSY, 0x80
	.set CTL_NIEN, 0x02
	.set CTL_SRST, 0x04
	/* bus master */
	.set BM_START, 0x01
	.set BM_TO_MEMORY, 0x08
	.set BM_ACTIVE, 0x01
	.set BM_ERROR, 0x02
	.set BM_IRQ, 0x04
	.set PRD_EOT, 0x80000000
	/* pio_read modes */
	.set PIO_IRQ, 0x01
	.set PIO_WIDE, 0x02
	.set PIO_POLLED, 1 << 8 /* one sector per block, polled, 16-bit */

	/* ends the step as failed, giving the reason */
	.macro FAIL why
	movw $\why, why_ptr
	jmp step_failed
	.endm

/* ---- sector 0: load the rest ---- */
	boot_entry
	movb $0x42, %ah
	movw $dap, %si
	int $0x13 /* DL: the drive SeaBIOS booted from */
	movb $62, %al
	jc exit_now
	movb $63, %al
	cmpl $PARAMS_MAGIC, p_magic
	jne exit_now
	jmp main
exit_now:
	movw $TEST_EXIT, %dx
	outb %al, %dx
	cli
1:	hlt
	jmp 1b

	.balign 4
dap:	.byte 16, 0
	.word LOAD_SECTORS
	.word 0x7E00, 0
	.long 1, 0

	.org 510
	.byte 0x55, 0xAA

/* ---- the parameter block (file offset 0x200), patched by the test ---- */
p_magic:	.long 0 /* PARAMS_MAGIC */
p_steps:	.long 0 /* bit i runs step i of the step table */
p_sectors:	.long 0, 0 /* disk size in 512-byte sectors */
p_data_lba:	.long 0
p_scratch_lba:	.long 0
p_iso_sectors:	.long 0
p_iso_lba:	.long 0
p_bad_addr:	.long 0 /* a guest-physical address outside RAM, 4-byte aligned */
p_dma_loops:	.long 0
p_pio_loops:	.long 0
p_seed:		.long 0
p_edge_addr:	.long 0 /* 2 KiB below the end of guest RAM */
	.org 0x240

/* ---- main ---- */
main:
	call setup_interrupts
	movw $s_start, %si
	call com1_puts
	movw $steps, %bx
next_step:
	movw 2(%bx), %si
	testw %si, %si
	jz all_done
	movb (%bx), %cl
	movl $1, %eax
	shll %cl, %eax
	testl %eax, p_steps
	jz 1f
	pushw %bx
	call run_step
	popw %bx
1:	addw $6, %bx
	jmp next_step
all_done:
	movw $s_done, %si
	call com1_puts
	movzbl failed, %eax
	movb $2, %cl
	call com_hex
	movw $s_crlf, %si
	call com1_puts
	movb failed, %al
	cmpb $61, %al
	jbe exit_now
	movb $61, %al
	jmp exit_now

/* run_step: bx = step table entry. Prints the step's line; counts a failure. */
run_step:
	movw $0, detail_len
	movb $0, detail
	movw $0, why_ptr
	pushw 2(%bx)
	call call_step
	popw %si
	pushf
	xorw %ax, %ax
	movw %ax, %ds
	movw %ax, %es
	movw %si, %ax
	movw $s_prefix, %si
	call com1_puts
	movw %ax, %si
	call com1_puts
	popf
	movw $s_ok, %si
	jnc 1f
	incb failed
	movw $s_fail, %si
1:	call com1_puts
	movw $detail, %si
	call com1_puts
	movw $s_crlf, %si
	call com1_puts
	ret

/* call_step: runs the step whose routine follows its name (bx = entry). The step returns
 * with CF clear, or jumps to step_failed from any depth. */
call_step:
	movw %sp, step_sp
	jmp *4(%bx)

step_failed:
	movw step_sp, %sp
	xorw %ax, %ax
	movw %ax, %ds
	movw %ax, %es
	sti
	movw why_ptr, %si
	testw %si, %si
	jz 1f
	pushw %si
	movw $s_why, %si
	call d_str
	popw %si
	call d_str
1:	call quiesce
	stc
	ret

/* quiesce: after a failed step, both channels with nIEN set and their bus masters stopped. */
quiesce:
	movb $CTL_NIEN, %al
	movw $IDE0_CTL, %dx
	outb %al, %dx
	movw $IDE1_CTL, %dx
	outb %al, %dx
	movw bm_base, %dx
	testw %dx, %dx
	jz 1f
	xorb %al, %al
	outb %al, %dx
	addw $8, %dx
	outb %al, %dx
1:	ret

/* ---- interrupts and time ---- */

setup_interrupts:
	cli
	movw $timer_isr, 0x08 * 4
	movw $0, 0x08 * 4 + 2
	movw $ide0_isr, IDE0_VECTOR * 4
	movw $0, IDE0_VECTOR * 4 + 2
	movw $ide1_isr, IDE1_VECTOR * 4
	movw $0, IDE1_VECTOR * 4 + 2
	/* both 8259s from scratch: edge triggered, vectors 08h and 70h, cascade on IRQ 2 */
	movb $0x11, %al
	outb %al, $PIC1
	outb %al, $PIC2
	movb $0x08, %al
	outb %al, $PIC1 + 1
	movb $0x70, %al
	outb %al, $PIC2 + 1
	movb $0x04, %al
	outb %al, $PIC1 + 1
	movb $0x02, %al
	outb %al, $PIC2 + 1
	movb $0x01, %al
	outb %al, $PIC1 + 1
	outb %al, $PIC2 + 1
	movb $0xFA, %al /* open: IRQ 0 (timer), IRQ 2 (cascade) */
	outb %al, $PIC1 + 1
	movb $PIC2_MASK, %al /* open: the IDE channels' IRQs */
	outb %al, $PIC2 + 1
	call quiesce
	sti
	ret

timer_isr:
	incl %cs:ticks
	pushw %ax
	movb $0x20, %al
	outb %al, $PIC1
	popw %ax
	iret

ide0_isr:
	incw %cs:irq_count
	jmp ide_eoi
ide1_isr:
	incw %cs:irq_count + 2
ide_eoi:
	pushw %ax
	movb $0x20, %al
	outb %al, $PIC2
	outb %al, $PIC1
	popw %ax
	iret

/* deadline_set: the current wait may last TIMEOUT_TICKS. */
deadline_set:
	pushl %eax
	movl ticks, %eax
	addl $TIMEOUT_TICKS, %eax
	movl %eax, deadline
	popl %eax
	ret

/* deadline_check: fails the step (reason: why_ptr) once the deadline has passed. */
deadline_check:
	pushl %eax
	movl ticks, %eax
	cmpl deadline, %eax
	popl %eax
	jae step_failed
	ret

/* sleep_ticks: waits cx timer ticks. */
sleep_ticks:
	pushl %eax
	movzwl %cx, %eax
	addl ticks, %eax
1:	hlt
	cmpl ticks, %eax
	ja 1b
	popl %eax
	ret

/* ---- the current channel ---- */

/* use_channel: al = 0 or 1; unit 0. */
use_channel:
	movw $IDE0_CMD, ch_cmd
	movw $IDE0_CTL, ch_ctl
	movw bm_base, %dx
	movw $irq_count, ch_irq
	testb %al, %al
	jz 1f
	movw $IDE1_CMD, ch_cmd
	movw $IDE1_CTL, ch_ctl
	addw $8, %dx
	movw $irq_count + 2, ch_irq
1:	cmpw $0, bm_base
	jne 2f
	xorw %dx, %dx
2:	movw %dx, ch_bm
	movb $0, ch_unit
	ret

/* port dx = ch_cmd + register al */
cmd_port:
	movw ch_cmd, %dx
	addb %al, %dl
	adcb $0, %dh
	ret

/* reg_read: al = register al of the command block. */
reg_read:
	pushw %dx
	call cmd_port
	inb %dx, %al
	popw %dx
	ret

/* reg_write: register bl := al. */
reg_write:
	pushw %dx
	pushw %ax
	movb %bl, %al
	call cmd_port
	popw %ax
	outb %al, %dx
	popw %dx
	ret

/* status: al = status (acknowledges the interrupt). */
status:
	movb $7, %al
	jmp reg_read

alt_status:
	pushw %dx
	movw ch_ctl, %dx
	inb %dx, %al
	popw %dx
	ret

set_control:
	pushw %dx
	movw ch_ctl, %dx
	outb %al, %dx
	popw %dx
	ret

/* irq_enable: acknowledges, clears nIEN and forgets interrupts already counted. */
irq_enable:
	pushw %ax
	pushw %bx
	call status
	xorb %al, %al
	call set_control
	movw ch_irq, %bx
	movw (%bx), %bx
	movw %bx, irq_seen
	popw %bx
	popw %ax
	ret

irq_disable:
	pushw %ax
	movb $CTL_NIEN, %al
	call set_control
	popw %ax
	ret

/* wait_irq: waits for an interrupt of the channel not yet seen. */
wait_irq:
	pushw %ax
	pushw %bx
	movw $w_irq, why_ptr
	call deadline_set
	movw ch_irq, %bx
1:	cli
	movw (%bx), %ax
	cmpw irq_seen, %ax
	jne 2f
	call deadline_check
	sti
	hlt
	jmp 1b
2:	movw %ax, irq_seen
	sti
	popw %bx
	popw %ax
	ret

/* wait_not_busy: polls the alternate status until BSY clears; al = status. */
wait_not_busy:
	movw $w_busy, why_ptr
	call deadline_set
1:	call alt_status
	testb $ST_BSY, %al
	jz 2f
	call deadline_check
	jmp 1b
2:	ret

/* wait_drq: polls until BSY clears with DRQ set; ERR fails the step. */
wait_drq:
	movw $w_drq, why_ptr
	call deadline_set
1:	call alt_status
	testb $ST_BSY, %al
	jnz 2f
	testb $ST_ERR, %al
	jnz fail_device
	testb $ST_DRQ, %al
	jnz 3f
2:	call deadline_check
	jmp 1b
3:	ret

/* irq_drq: after an interrupt, the status must show DRQ without ERR (acknowledges). */
irq_drq:
	call wait_irq
	call status
	testb $ST_ERR, %al
	jnz fail_device
	testb $ST_DRQ, %al
	jz fail_no_drq
	ret
fail_no_drq:
	call d_status
	FAIL w_no_drq

/* expect_idle: the command ended cleanly: BSY, DRQ and ERR clear, DRDY set. */
expect_idle:
	call status
	testb $ST_ERR, %al
	jnz fail_device
	testb $ST_BSY | ST_DRQ, %al
	jnz fail_not_idle
	testb $ST_DRDY, %al
	jz fail_not_idle
	ret
fail_not_idle:
	call d_status
	FAIL w_not_idle

/* fail_device: the device reported an error: its status (al) and error register. */
fail_device:
	call d_status
	FAIL w_device_error

/* d_status: appends st=(al) err=(error register). */
d_status:
	pushl %eax
	movzbl %al, %eax
	movw $k_st, %si
	call d_byte
	movb $1, %al
	call reg_read
	movw $k_err, %si
	call d_byte
	popl %eax
	ret

/* ata_issue: eax = LBA, cx = sector count, bl = command, bh = 1 for a 48-bit command.
 * Selects ch_unit, waits for it, writes the taskfile and the command. */
ata_issue:
	pushal
	movl %eax, %esi
	movb $0x40, %al
	testb %bh, %bh
	jnz 1f
	movl %esi, %eax
	shrl $24, %eax
	andb $0x0F, %al
	orb $0xE0, %al
1:	orb ch_unit, %al
	pushw %bx
	movb $6, %bl
	call reg_write
	call wait_not_busy
	popw %bx
	testb %bh, %bh
	jz 2f
	/* 48-bit: the high bytes first (they move to the HOB registers) */
	pushw %bx
	movb %ch, %al
	movb $2, %bl
	call reg_write
	movl %esi, %eax
	shrl $24, %eax
	incb %bl
	call reg_write
	xorb %al, %al
	incb %bl
	call reg_write
	incb %bl
	call reg_write
	popw %bx
2:	pushw %bx
	xorb %al, %al
	movb $1, %bl
	call reg_write
	movb %cl, %al
	incb %bl
	call reg_write
	movl %esi, %eax
	incb %bl
	call reg_write
	movb %ah, %al
	incb %bl
	call reg_write
	shrl $16, %eax
	incb %bl
	call reg_write
	popw %bx
	movb %bl, %al
	movb $7, %bl
	call reg_write
	popal
	ret

/* pio_read: eax = LBA, cx = sectors, bl = command, bh = 1 for 48-bit, dh = sectors per
 * DRQ block, dl = PIO_IRQ (an interrupt per block; else polled with nIEN set) | PIO_WIDE
 * (32-bit data port reads); the data lands at PIO_SEG:0. Ends with the device idle;
 * pio_irqs counts the interrupts the command raised. */
pio_read:
	pushal
	movw %cx, pio_left
	movb %dl, pio_mode
	movb %dh, pio_block
	movw ch_irq, %si
	pushw (%si)
	testb $PIO_IRQ, pio_mode
	jz 1f
	call irq_enable
1:	call ata_issue
	pushw %es
	movw $PIO_SEG, %ax
	movw %ax, %es
	xorw %di, %di
2:	testb $PIO_IRQ, pio_mode
	jz 3f
	call irq_drq
	jmp 4f
3:	call wait_drq
4:	movzbw pio_block, %cx
	cmpw pio_left, %cx
	jbe 5f
	movw pio_left, %cx
5:	subw %cx, pio_left
	shlw $8, %cx /* words */
	movw ch_cmd, %dx
	testb $PIO_WIDE, pio_mode
	jz 6f
	shrw $1, %cx
	rep insl
	jmp 7f
6:	rep insw
7:	cmpw $0, pio_left
	jne 2b
	popw %es
	call wait_not_busy
	call expect_idle
	call irq_disable
	movw ch_irq, %si
	movw (%si), %ax
	popw %dx
	subw %dx, %ax
	movw %ax, pio_irqs
	popal
	ret

/* sum_pio: the checksum of cx sectors at PIO_SEG:0, appended as sum=. */
sum_pio:
	movzwl %cx, %ecx
	shll $9, %ecx
	movl $PIO_SEG << 4, %eax
	jmp sum_of

/* d_irqs: appends irqs= (of the last pio_read). */
d_irqs:
	movzwl pio_irqs, %eax
	movw $k_irqs, %si
	jmp d_byte

/* pio_write: eax = LBA, cx sectors, bl = command, from CHECK_SEG:0, polled, one sector
 * per DRQ block. */
pio_write:
	pushal
	movw %cx, pio_left
	call ata_issue
	pushw %ds
	xorw %si, %si
1:	call wait_drq
	movw $256, %cx
	movw ch_cmd, %dx
	movw $CHECK_SEG, %ax
	movw %ax, %ds
	rep outsw
	xorw %ax, %ax
	movw %ax, %ds
	decw pio_left
	jnz 1b
	popw %ds
	call wait_not_busy
	call expect_idle
	popal
	ret

/* ---- bus-master DMA ---- */

/* dma_ata: eax = LBA, cx = sectors, bl = command, bh = 1 for 48-bit; the PRD table at
 * dma_prd, direction dma_dir (BM_TO_MEMORY or 0); dma_early: the engine starts before
 * the command. Waits for the interrupt; al = status, ah = bus-master status. */
dma_ata:
	pushw %bx
	pushw %cx
	call bm_prepare
	call irq_enable
	cmpb $0, dma_early
	je 1f
	call bm_start
1:	popw %cx
	popw %bx
	call ata_issue
	cmpb $0, dma_early
	jne 2f
	call bm_start
2:	call wait_irq
	jmp bm_finish

/* bm_prepare: engine stopped in dma_dir, status bits cleared, table at dma_prd. */
bm_prepare:
	pushl %eax
	pushw %dx
	movw ch_bm, %dx
	testw %dx, %dx
	jz fail_no_bm
	movb dma_dir, %al
	outb %al, %dx
	addw $2, %dx
	movb $BM_ERROR | BM_IRQ, %al
	outb %al, %dx
	addw $2, %dx
	movl dma_prd, %eax
	outl %eax, %dx
	popw %dx
	popl %eax
	ret
fail_no_bm:
	FAIL w_no_bm

bm_start:
	pushw %ax
	pushw %dx
	movw ch_bm, %dx
	movb dma_dir, %al
	orb $BM_START, %al
	outb %al, %dx
	popw %dx
	popw %ax
	ret

/* bm_finish: after the interrupt: ah = bus-master status, engine stopped, al = status
 * (acknowledged), bus-master status cleared. */
bm_finish:
	pushw %dx
	movw ch_bm, %dx
	addw $2, %dx
	inb %dx, %al
	movb %al, %ah
	subw $2, %dx
	movb dma_dir, %al
	outb %al, %dx
	call status
	pushw %ax
	movw ch_bm, %dx
	addw $2, %dx
	movb $BM_ERROR | BM_IRQ, %al
	outb %al, %dx
	call irq_disable
	popw %ax
	popw %dx
	ret

/* expect_dma_ok: ah/al from bm_finish say the transfer completed without error. */
expect_dma_ok:
	pushw %ax
	andb $BM_ACTIVE | BM_ERROR | BM_IRQ, %ah
	cmpb $BM_IRQ, %ah
	popw %ax
	jne fail_bm_status
	testb $ST_ERR, %al
	jnz fail_device
	testb $ST_BSY | ST_DRQ, %al
	jnz fail_not_idle
	ret
fail_bm_status:
	call d_bm
	FAIL w_bm_status

/* d_bm: appends bm=(ah) st=(al). */
d_bm:
	pushl %eax
	movzbl %ah, %eax
	movw $k_bm, %si
	call d_byte
	popl %eax
	pushl %eax
	movzbl %al, %eax
	movw $k_st, %si
	call d_byte
	popl %eax
	ret

/* dma_read_one: reads cx sectors at eax (bl/bh as dma_ata) into DMA_BUF with one entry. */
dma_read_one:
	pushl %edx
	movzwl %cx, %edx
	shll $9, %edx
	orl $PRD_EOT, %edx
	movl %edx, prd_one + 4
	movl $DMA_BUF, prd_one
	movl $prd_one, dma_prd
	movb $BM_TO_MEMORY, dma_dir
	popl %edx
	call dma_ata
	jmp expect_dma_ok

/* ---- memory walks ---- */

/* walk_phys: calls walk_fn for each piece (at most 32 KiB) of the eax..eax+ecx range with
 * es:di = the piece, cx = its length. */
walk_phys:
	pushal
	pushw %es
	movl %eax, walk_addr
	movl %ecx, walk_left
1:	movl walk_left, %ecx
	jecxz 3f
	cmpl $0x8000, %ecx
	jbe 2f
	movl $0x8000, %ecx
2:	subl %ecx, walk_left
	movl walk_addr, %eax
	addl %ecx, walk_addr
	movl %eax, %edx
	shrl $4, %edx
	movw %dx, %es
	andw $15, %ax
	movw %ax, %di
	call *walk_fn
	jmp 1b
3:	popw %es
	popal
	ret

/* fold: hash = fold of the dwords at eax, ecx bytes (a multiple of 4). */
fold:
	movw $fold_piece, walk_fn
	jmp walk_phys
fold_piece:
	movl hash, %edx
	shrw $2, %cx
1:	roll $5, %edx
	xorl %es:(%di), %edx
	addw $4, %di
	loop 1b
	movl %edx, hash
	ret

hash_reset:
	movl $0x12345678, hash
	ret

/* fill: the pattern from pat_state at eax, ecx bytes (a multiple of 4). */
fill:
	movw $fill_piece, walk_fn
	jmp walk_phys
fill_piece:
	movl pat_state, %edx
	shrw $2, %cx
1:	movl %edx, %es:(%di)
	imull $1664525, %edx, %edx
	addl $1013904223, %edx
	addw $4, %di
	loop 1b
	movl %edx, pat_state
	ret

/* copy: ecx bytes from eax to copy_dst. */
copy:
	movw $copy_piece, walk_fn
	jmp walk_phys
copy_piece:
	pushw %ds
	movl copy_dst, %eax
	movzwl %cx, %edx
	addl %edx, copy_dst
	movw %es, %dx
	movw %dx, %ds
	movw %di, %si
	movl %eax, %edx
	shrl $4, %edx
	movw %dx, %es
	andw $15, %ax
	movw %ax, %di
	rep movsb
	popw %ds
	ret

/* gather: copies the buffers of the PRD table at si, in order, to eax; ecx = bytes. */
gather:
	movl %eax, copy_dst
	xorl %ecx, %ecx
1:	movl (%si), %eax
	movzwl 4(%si), %edx
	addl %edx, %ecx
	pushl %ecx
	movl %edx, %ecx
	call copy
	popl %ecx
	testb $0x80, 7(%si)
	jnz 2f
	addw $8, %si
	jmp 1b
2:	ret

/* sum_of: hash of ecx bytes at eax; eax = the hash, also appended as sum=. */
sum_of:
	call hash_reset
	call fold
	movl hash, %eax
	movw $k_sum, %si
	jmp d_long

/* ---- output ---- */

	com1_routines

/* com_hex: eax as cl hex digits on COM1. */
com_hex:
	pushw %di
	movw $hex_tmp, %di
	call hex_digits
	movb $0, (%di)
	movw $hex_tmp, %si
	call com1_puts
	popw %di
	ret

/* hex_digits: eax as cl hex digits at di (advanced). */
hex_digits:
	pushal
	movb $8, %ch
	subb %cl, %ch
	shlb $2, %ch
	xchgb %cl, %ch
	roll %cl, %eax
	movb %ch, %cl
	xorb %ch, %ch
1:	roll $4, %eax
	movb %al, %bl
	andb $0x0F, %bl
	addb $'0', %bl
	cmpb $'9', %bl
	jbe 2f
	addb $'A' - '9' - 1, %bl
2:	movb %bl, (%di)
	incw %di
	loop 1b
	movw %di, hex_end
	popal
	movw hex_end, %di
	ret

/* d_str: appends the string at si to the step's detail. */
d_str:
	pushal
	movw detail_len, %di
	addw $detail, %di
1:	lodsb
	cmpw $detail + DETAIL_MAX, %di
	jae 2f
	movb %al, (%di)
	incw %di
	testb %al, %al
	jnz 1b
	decw %di
2:	movb $0, (%di)
	subw $detail, %di
	movw %di, detail_len
	popal
	ret

/* d_kv: appends " KEY=" (si) and eax as cl hex digits. */
d_kv:
	pushal
	pushw %si
	movw $s_space, %si
	call d_str
	popw %si
	call d_str
	movw $s_equals, %si
	call d_str
	movw $hex_tmp, %di
	call hex_digits
	movb $0, (%di)
	movw $hex_tmp, %si
	call d_str
	popal
	ret

d_byte:
	pushw %cx
	movb $2, %cl
	call d_kv
	popw %cx
	ret

d_word:
	pushw %cx
	movb $4, %cl
	call d_kv
	popw %cx
	ret

d_long:
	pushw %cx
	movb $8, %cl
	call d_kv
	popw %cx
	ret

/* ---- step 0: pci ---- */

/* pci_read: eax = config dword at register bl of devfn bh. */
pci_read:
	pushw %dx
	call pci_select
	movw $PCI_DATA, %dx
	inl %dx, %eax
	popw %dx
	ret

pci_select:
	movzbl %bh, %eax
	shll $8, %eax
	movb %bl, %al
	andb $0xFC, %al
	orl $0x80000000, %eax
	movw $PCI_ADDR, %dx
	outl %eax, %dx
	ret

step_pci:
	movw $0, %bx
1:	call pci_read
	cmpl $0x70108086, %eax
	je 2f
	incb %bh
	jnz 1b
	FAIL w_no_ide_function
2:	movzbl %bh, %eax
	movw $k_devfn, %si
	call d_byte
	movb $0x08, %bl
	call pci_read
	shrl $16, %eax
	cmpw $0x0101, %ax /* mass storage, IDE */
	jne fail_class
	movb $0x20, %bl
	call pci_read
	movw $k_bar4, %si
	call d_long
	testb $1, %al /* an I/O BAR */
	jz fail_bar
	andw $0xFFFC, %ax
	jz fail_bar
	movw %ax, bm_base
	/* command register: I/O space and bus master on */
	movb $0x04, %bl
	call pci_select
	movw $PCI_DATA, %dx
	inw %dx, %ax
	orw $0x0005, %ax
	outw %ax, %dx
	inw %dx, %ax
	movzwl %ax, %eax
	movw $k_cmd, %si
	call d_word
	andw $0x0005, %ax
	cmpw $0x0005, %ax
	jne fail_command
	ret
fail_class:
	FAIL w_class
fail_bar:
	FAIL w_bar
fail_command:
	FAIL w_command

/* ---- step 1: identify ---- */

/* identify: command bl (ECh or A1h) to the current device, polled; the data at
 * PIO_SEG:0 (es = PIO_SEG on return) with its integrity word checked. */
identify:
	xorl %eax, %eax
	movw $1, %cx
	xorb %bh, %bh
	movw $PIO_POLLED, %dx
	call pio_read
	movw $PIO_SEG, %ax
	movw %ax, %es
	cmpb $0xA5, %es:510
	jne fail_integrity
	xorw %si, %si
	xorb %al, %al
1:	addb %es:(%si), %al
	incw %si
	cmpw $512, %si
	jb 1b
	testb %al, %al
	jnz fail_integrity
	ret
fail_integrity:
	FAIL w_integrity

step_identify:
	movb $0, %al
	call use_channel
	movb $0xEC, %bl
	call identify
	testw $0x8000, %es:0 /* an ATA device */
	jnz fail_identify_kind
	movl %es:120, %eax /* words 60-61 */
	movw $k_lba28, %si
	call d_long
	movl p_sectors, %edx
	cmpl $0, p_sectors + 4
	jne 1f
	cmpl $0x0FFFFFFF, %edx
	jb 2f
1:	movl $0x0FFFFFFF, %edx
2:	cmpl %edx, %eax
	jne fail_capacity
	movl %es:200, %eax /* words 100-103 */
	movl %es:204, %edx
	movw $k_lba48, %si
	call d_long
	cmpl p_sectors, %eax
	jne fail_capacity
	cmpl p_sectors + 4, %edx
	jne fail_capacity
	testw $0x0400, %es:166 /* word 83: 48-bit addresses */
	jz fail_capacity
	ret
fail_identify_kind:
	FAIL w_kind
fail_capacity:
	FAIL w_capacity

/* ---- steps 2-5: ATA PIO ---- */

step_pio_read:
	movb $0, %al
	call use_channel
	movl p_data_lba, %eax
	movw $16, %cx
	movw $0x0020, %bx /* READ SECTORS */
	movw $PIO_POLLED, %dx
	call pio_read
	jmp sum_pio

step_pio_read_ext:
	movb $0, %al
	call use_channel
	movl p_data_lba, %eax
	addl $16, %eax
	movw $16, %cx
	movw $0x0124, %bx /* READ SECTORS EXT */
	movw $1 << 8 | PIO_IRQ | PIO_WIDE, %dx
	call pio_read
	call sum_pio
	jmp d_irqs

step_pio_write:
	movb $0, %al
	call use_channel
	movl p_seed, %eax
	movl %eax, pat_state
	movl $CHECK_SEG << 4, %eax
	movl $8 * 512, %ecx
	call fill
	call hash_reset
	call fold
	movl hash, %eax
	movl %eax, sum_written
	movl p_scratch_lba, %eax
	movw $8, %cx
	movw $0x0030, %bx /* WRITE SECTORS */
	call pio_write
	/* read it back through the other path */
	movl p_scratch_lba, %eax
	movw $8, %cx
	movw $0x0020, %bx
	movw $PIO_POLLED, %dx
	call pio_read
	call sum_pio
	cmpl sum_written, %eax
	jne fail_readback
	ret
fail_readback:
	FAIL w_readback

step_pio_multiple:
	movb $0, %al
	call use_channel
	xorl %eax, %eax
	movw $8, %cx
	movw $0x00C6, %bx /* SET MULTIPLE MODE: 8 sectors per block */
	call ata_issue
	call wait_not_busy
	call expect_idle
	movb $0xEC, %bl
	call identify
	movzwl %es:118, %eax /* word 59: multiple setting valid, 8 */
	movw $k_w59, %si
	call d_word
	cmpw $0x0108, %ax
	jne fail_multiple
	movl p_data_lba, %eax
	addl $32, %eax
	movw $32, %cx
	movw $0x00C4, %bx /* READ MULTIPLE */
	movw $8 << 8 | PIO_IRQ, %dx
	call pio_read
	call sum_pio
	jmp d_irqs
fail_multiple:
	FAIL w_multiple

/* ---- steps 6-8: DMA ---- */

step_dma_read:
	movb $0, %al
	call use_channel
	movb $0, dma_early
	movl p_data_lba, %eax
	addl $64, %eax
	movw $16, %cx
	movw $0x00C8, %bx /* READ DMA */
	call dma_read_one
	call d_bm
	movl $DMA_BUF, %eax
	movl $16 * 512, %ecx
	call sum_of
	ret

step_dma_read_sg:
	movb $0, %al
	call use_channel
	movb $1, dma_early
	movl $prd_scatter, dma_prd
	movb $BM_TO_MEMORY, dma_dir
	movl p_data_lba, %eax
	addl $80, %eax
	movw $64, %cx
	movw $0x0125, %bx /* READ DMA EXT */
	call dma_ata
	call expect_dma_ok
	call d_bm
	movw $prd_scatter, %si
	movl $GATHER_BUF, %eax
	call gather
	movl %ecx, %eax
	movw $k_bytes, %si
	call d_long
	cmpl $64 * 512, %ecx
	jne fail_prd_length
	movl $GATHER_BUF, %eax
	call sum_of
	ret
fail_prd_length:
	FAIL w_prd_length

step_dma_write:
	movb $0, %al
	call use_channel
	movl p_seed, %eax
	incl %eax
	movl %eax, pat_state
	movl $WRITE_BUF, %eax
	movl $32 * 512, %ecx
	call fill
	call hash_reset
	call fold
	movl hash, %eax
	movl %eax, sum_written
	movb $0, dma_early
	movl $prd_write, dma_prd
	movb $0, dma_dir
	movl p_scratch_lba, %eax
	addl $16, %eax
	movw $32, %cx
	movw $0x0135, %bx /* WRITE DMA EXT */
	call dma_ata
	call expect_dma_ok
	call d_bm
	/* read it back with DMA into another buffer */
	movl p_scratch_lba, %eax
	addl $16, %eax
	movw $32, %cx
	movw $0x0125, %bx
	call dma_read_one
	movl $DMA_BUF, %eax
	movl $32 * 512, %ecx
	call sum_of
	cmpl sum_written, %eax
	jne fail_readback
	ret

/* PRD edge cases: an entry with count 0 moves 64 KiB; a table longer than the transfer
 * leaves the engine active (PIIX: Active stays set, Interrupt set). */
step_dma_prd_edges:
	movb $0, %al
	call use_channel
	movb $0, dma_early
	movb $BM_TO_MEMORY, dma_dir
	movl $prd_64k, dma_prd
	movl p_data_lba, %eax
	movw $128, %cx
	movw $0x00C8, %bx
	call dma_ata
	call expect_dma_ok
	call d_bm
	movl prd_64k, %eax
	movl $0x10000, %ecx
	call sum_of
	movl $prd_longer, dma_prd
	movl p_data_lba, %eax
	addl $64, %eax
	movw $8, %cx
	movw $0x00C8, %bx
	call dma_ata
	call d_bm
	pushw %ax
	andb $BM_ACTIVE | BM_ERROR | BM_IRQ, %ah
	cmpb $BM_ACTIVE | BM_IRQ, %ah
	popw %ax
	jne fail_bm_status_quiet
	testb $ST_ERR | ST_BSY | ST_DRQ, %al
	jnz fail_device
	movl $DMA_BUF, %eax
	movl $8 * 512, %ecx
	call sum_of
	ret
fail_bm_status_quiet:
	FAIL w_bm_status

/* ---- steps 9-11: errors ---- */

/* expect_error: the command ended with ERR, no DRQ, and IDNF or ABRT in the error
 * register; appends st= and err=. */
expect_error:
	call wait_not_busy
	call status
	call d_status
	testb $ST_DRQ, %al
	jnz fail_range
	testb $ST_ERR, %al
	jz fail_range
	movb $1, %al
	call reg_read
	testb $0x14, %al
	jz fail_range
	ret
fail_range:
	FAIL w_no_error

step_err_range:
	movb $0, %al
	call use_channel
	/* READ SECTORS EXT of the last sector and the one after it */
	movl p_sectors, %eax
	decl %eax
	movw $2, %cx
	movw $0x0124, %bx
	call ata_issue
	call expect_error
	/* READ SECTORS (28-bit) of the sector after the end */
	cmpl $0, p_sectors + 4
	jne 1f
	movl p_sectors, %eax
	cmpl $0x0FFFFFFF, %eax
	jae 1f
	movw $1, %cx
	movw $0x0020, %bx
	call ata_issue
	call expect_error
1:	ret

step_err_prd:
	movb $0, %al
	call use_channel
	movb $0, dma_early
	movb $BM_TO_MEMORY, dma_dir
	/* an entry pointing outside guest RAM */
	movl p_bad_addr, %eax
	movl %eax, prd_bad
	movl $prd_bad, dma_prd
	movl p_data_lba, %eax
	movw $8, %cx
	movw $0x00C8, %bx
	call dma_ata
	call expect_bm_error
	/* the table itself outside guest RAM */
	movl p_bad_addr, %eax
	movl %eax, dma_prd
	movl p_data_lba, %eax
	movw $8, %cx
	movw $0x00C8, %bx
	call dma_ata
	call expect_bm_error
	/* a write from outside guest RAM must not reach the disk */
	movb $0, dma_dir
	movl $prd_bad, dma_prd
	movl p_scratch_lba, %eax
	addl $64, %eax
	movw $8, %cx
	movw $0x00CA, %bx /* WRITE DMA */
	call dma_ata
	call expect_bm_error
	/* an entry that starts in RAM and runs past its end */
	movl p_edge_addr, %eax
	movl %eax, prd_bad
	movb $BM_TO_MEMORY, dma_dir
	movl p_data_lba, %eax
	movw $8, %cx
	movw $0x00C8, %bx
	call dma_ata
	call expect_bm_error
	/* the error bit clears on a write of 1 */
	movw ch_bm, %dx
	addw $2, %dx
	inb %dx, %al
	testb $BM_ERROR | BM_IRQ, %al
	jnz fail_bm_clear
	/* and the VM still works */
	movl p_data_lba, %eax
	addl $64, %eax
	movw $8, %cx
	movw $0x00C8, %bx
	call dma_read_one
	movl $DMA_BUF, %eax
	movl $8 * 512, %ecx
	call sum_of
	ret
fail_bm_clear:
	FAIL w_bm_clear

/* expect_bm_error: the bus master reports the error and the device aborted. */
expect_bm_error:
	call d_bm
	testb $BM_ERROR, %ah
	jz 1f
	testb $BM_ACTIVE, %ah
	jnz 1f
	testb $ST_ERR, %al
	jz 1f
	ret
1:	FAIL w_no_bm_error

/* absent: status of device 1 on channel al before and after a command; al = status. */
absent:
	call use_channel
	movb $0x10, ch_unit
	movb $0xB0, %al
	movb $6, %bl
	call reg_write
	call status
	movb %al, %bh
	movb $0xEC, %al /* IDENTIFY DEVICE */
	movb $7, %bl
	call reg_write
	movw $2, %cx
	call sleep_ticks
	call alt_status
	cmpb %al, %bh
	jne fail_absent
	call status
	cmpb %al, %bh
	jne fail_absent
	pushw %ax
	movb $0xA0, %al /* back to device 0 */
	movb $6, %bl
	call reg_write
	popw %ax
	cmpb $0x00, %al /* device 0 answers for an absent device 1 */
	je 1f
	cmpb $0xFF, %al /* nobody drives an empty channel's bus */
	jne fail_absent
1:	ret
fail_absent:
	call d_status
	FAIL w_absent

step_err_absent:
	movb $0, %al
	call absent
	movzbl %al, %eax
	movw $k_c0d1, %si
	call d_byte
	movb $1, %al
	call absent
	movzbl %al, %eax
	movw $k_c1d1, %si
	call d_byte
	ret

/* ---- steps 12-18: the ATAPI DVD drive at ide:1:0 ---- */

/* atapi_packet: sends the 12-byte packet at si with byte count limit cx; al = features
 * (bit 0: DMA). Returns once the device took the packet. */
atapi_packet:
	pushal
	movb %al, %ah
	call wait_not_busy
	movb $0xA0, %al
	orb ch_unit, %al
	movb $6, %bl
	call reg_write
	call wait_not_busy
	movb %ah, %al
	movb $1, %bl
	call reg_write
	xorb %al, %al
	incb %bl
	call reg_write
	movb %cl, %al
	movb $4, %bl
	call reg_write
	movb %ch, %al
	incb %bl
	call reg_write
	movb $0xA0, %al /* PACKET */
	movb $7, %bl
	call reg_write
	call wait_drq
	movb $2, %al
	call reg_read
	andb $3, %al
	cmpb $1, %al /* interrupt reason: command packet, to the device */
	jne fail_reason
	movw ch_cmd, %dx
	movw $6, %cx
	rep outsw
	popal
	ret
fail_reason:
	FAIL w_reason

/* atapi_pio_in: the data of the packet command just sent, at PIO_SEG:0, at most ecx
 * bytes, DRQ blocks no larger than the limit cx had. Returns at the end of the command
 * with al = status (acknowledged); xfer_bytes and xfer_blocks count what came. */
atapi_pio_in:
	pushw %es
	movl %ecx, xfer_max
	movl $0, xfer_bytes
	movw $0, xfer_blocks
	movw $PIO_SEG, %ax
	movw %ax, %es
1:	call wait_irq
	call status
	testb $ST_DRQ, %al
	jz 3f
	movb $2, %al
	call reg_read
	andb $3, %al
	cmpb $2, %al /* data, to the host */
	jne fail_reason
	movb $4, %al
	call reg_read
	movb %al, %cl
	movb $5, %al
	call reg_read
	movb %al, %ch
	jcxz fail_block
	cmpw xfer_limit, %cx
	ja fail_block
	movzwl %cx, %eax
	addl xfer_bytes, %eax
	cmpl xfer_max, %eax
	ja fail_block
	movw xfer_bytes, %di
	movl %eax, xfer_bytes
	incw xfer_blocks
	incw %cx /* an odd block ends with a padded word */
	shrw $1, %cx
	movw ch_cmd, %dx
	rep insw
	jmp 1b
3:	popw %es
	ret
fail_block:
	movzwl %cx, %eax
	movw $k_block, %si
	call d_word
	FAIL w_block

/* atapi_command: packet si, data in up to ecx bytes with limit dx (PIO), or none. Ends
 * with the status checked: a CHECK CONDITION fails the step with its sense key. */
atapi_command:
	movw %dx, xfer_limit
	cmpw $2, %dx
	jb 1f
	cmpw $0xFFFF, %dx
	jne 2f
1:	movw $0xFFFE, xfer_limit /* what the device uses for 0, 1 and FFFFh */
2:	pushl %ecx
	call irq_enable
	movw %dx, %cx
	xorb %al, %al
	call atapi_packet
	popl %ecx
	call atapi_pio_in
	call irq_disable
	/* fall through */
expect_packet_done:
	testb $ST_ERR, %al
	jnz fail_check_condition
	testb $ST_BSY | ST_DRQ, %al
	jnz fail_not_idle
	movb $2, %al
	call reg_read
	andb $3, %al
	cmpb $3, %al /* command complete */
	jne fail_reason
	ret
fail_check_condition:
	call d_status
	FAIL w_check_condition

/* read10: the READ(10) packet for cx sectors at eax, in cdb. */
read10:
	movb $0x28, cdb
	bswapl %eax
	movl %eax, cdb + 2
	xchgb %cl, %ch
	movw %cx, cdb + 7
	xchgb %cl, %ch
	ret

step_atapi_signature:
	movb $1, %al
	call use_channel
	/* software reset: SRST for a while, then released */
	movb $CTL_SRST | CTL_NIEN, %al
	call set_control
	movw $1, %cx
	call sleep_ticks
	movb $CTL_NIEN, %al
	call set_control
	call wait_not_busy
	call signature
	/* an ATA IDENTIFY DEVICE is aborted and leaves the signature */
	xorl %eax, %eax
	xorw %cx, %cx
	movw $0x00EC, %bx
	call ata_issue
	call wait_not_busy
	call status
	testb $ST_ERR, %al
	jz fail_signature
	movb $1, %al
	call reg_read
	testb $0x04, %al
	jz fail_signature
	jmp signature

/* signature: the packet device signature in sector count, LBA low/mid/high. */
signature:
	movb $2, %al
	call reg_read
	movb %al, %dl
	movb $3, %al
	call reg_read
	movb %al, %dh
	shll $16, %edx
	movb $4, %al
	call reg_read
	movb %al, %dl
	movb $5, %al
	call reg_read
	movb %al, %dh
	movl %edx, %eax
	movw $k_sig, %si
	call d_long
	cmpl $0x0101EB14, %eax
	jne fail_signature
	ret
fail_signature:
	FAIL w_signature

step_atapi_identify:
	movb $1, %al
	call use_channel
	movb $0xA1, %bl /* IDENTIFY PACKET DEVICE */
	call identify
	movzwl %es:0, %eax
	movw $k_w0, %si
	call d_word
	movw %ax, %dx
	andw $0xC000, %dx
	cmpw $0x8000, %dx /* ATAPI */
	jne fail_identify_kind
	movw %ax, %dx
	andw $0x1F00, %dx
	cmpw $0x0500, %dx /* CD/DVD device */
	jne fail_identify_kind
	testw $0x0003, %ax /* 12-byte packets */
	jnz fail_identify_kind
	ret

step_atapi_ready:
	movb $1, %al
	call use_channel
	movb $0, first_sense
	movw $0, xfer_blocks
	xorw %bx, %bx /* tries */
1:	incw %bx
	cmpw $8, %bx
	ja fail_never_ready
	call irq_enable
	movw $cdb_tur, %si
	xorw %cx, %cx
	xorb %al, %al
	call atapi_packet
	call wait_irq
	call status
	call irq_disable
	testb $ST_ERR, %al
	jz 2f
	movb $1, %al
	call reg_read
	shrb $4, %al /* sense key */
	cmpb $0, first_sense
	jne 1b
	movb %al, first_sense
	jmp 1b
2:	call expect_packet_done
	movzwl %bx, %eax
	movw $k_tries, %si
	call d_byte
	movzbl first_sense, %eax
	movw $k_first_sense, %si
	call d_byte
	ret
fail_never_ready:
	FAIL w_never_ready

step_atapi_capacity:
	movb $1, %al
	call use_channel
	movw $cdb_capacity, %si
	movl $8, %ecx
	movw $0xFFFE, %dx
	call atapi_command
	movl xfer_bytes, %eax
	cmpl $8, %eax
	jne fail_capacity
	movw $PIO_SEG, %ax
	movw %ax, %es
	movl %es:0, %eax
	bswapl %eax
	movw $k_last, %si
	call d_long
	movl p_iso_sectors, %edx
	decl %edx
	cmpl %edx, %eax
	jne fail_capacity
	movl %es:4, %eax
	bswapl %eax
	movw $k_block, %si
	call d_long
	cmpl $2048, %eax
	jne fail_capacity
	ret

/* atapi_read_pio: cx sectors at iso_lba + eax with byte count limit dx. */
atapi_read_pio:
	pushw %dx
	pushl %eax
	movb $1, %al
	call use_channel
	popl %eax
	popw %dx
	pushw %cx
	addl p_iso_lba, %eax
	call read10
	popw %cx
	movzwl %cx, %ecx
	shll $11, %ecx
	pushl %ecx
	movw $cdb, %si
	call atapi_command
	popl %ecx
	cmpl xfer_bytes, %ecx
	jne fail_short
	movzwl xfer_blocks, %eax
	movw $k_blocks, %si
	call d_word
	movl $PIO_SEG << 4, %eax
	call sum_of
	ret
fail_short:
	FAIL w_short

step_atapi_read_pio:
	xorl %eax, %eax
	movw $8, %cx
	movw $0xFFFE, %dx
	jmp atapi_read_pio

step_atapi_read_odd:
	movl $8, %eax
	movw $2, %cx
	movw $0x0123, %dx
	jmp atapi_read_pio

step_atapi_read_dma:
	movb $1, %al
	call use_channel
	movl $16, %eax
	addl p_iso_lba, %eax
	movw $16, %cx
	call read10
	movl $DMA_BUF, prd_one
	movl $PRD_EOT | 16 * 2048, prd_one + 4
	movl $prd_one, dma_prd
	movb $BM_TO_MEMORY, dma_dir
	call bm_prepare
	call irq_enable
	call bm_start
	movw $cdb, %si
	xorw %cx, %cx
	movb $1, %al /* DMA */
	call atapi_packet
	call wait_irq
	call bm_finish
	call expect_dma_ok
	call d_bm
	call expect_packet_done
	movl $DMA_BUF, %eax
	movl $16 * 2048, %ecx
	call sum_of
	ret

/* READ(10) of the last sector and the one after it: CHECK CONDITION, ILLEGAL REQUEST,
 * no data. */
step_atapi_err_range:
	movb $1, %al
	call use_channel
	movl p_iso_sectors, %eax
	decl %eax
	movw $2, %cx
	call read10
	movw $0xFFFE, xfer_limit
	call irq_enable
	movw $cdb, %si
	movw $0xFFFE, %cx
	xorb %al, %al
	call atapi_packet
	xorl %ecx, %ecx /* no data may come */
	call atapi_pio_in
	call irq_disable
	call d_status
	testb $ST_ERR, %al
	jz fail_range
	movb $1, %al
	call reg_read
	shrb $4, %al
	cmpb $5, %al /* ILLEGAL REQUEST */
	jne fail_range
	ret

/* ---- steps 19-20: exits per I/O (21 and 22 are above) ---- */

/* the sectors of iteration ecx of a loop: 8 at data_lba + (ecx % 16) * 8 */
loop_lba:
	movl %ecx, %eax
	andl $15, %eax
	shll $3, %eax
	addl p_data_lba, %eax
	ret

/* repeat: calls bx with ecx = 0, 1, .. below the count at si; appends n=. */
repeat:
	xorl %ecx, %ecx
1:	cmpl (%si), %ecx
	jae 2f
	pushal
	call *%bx
	popal
	incl %ecx
	jmp 1b
2:	movl %ecx, %eax
	movw $k_n, %si
	jmp d_long

step_loop_dma:
	movb $0, %al
	call use_channel
	movb $0, dma_early
	movw $p_dma_loops, %si
	movw $dma_read_4k, %bx
	jmp repeat
dma_read_4k:
	call loop_lba
	movw $8, %cx
	movw $0x00C8, %bx /* READ DMA */
	jmp dma_read_one

step_loop_pio:
	movb $0, %al
	call use_channel
	movw $p_pio_loops, %si
	movw $pio_read_4k, %bx
	jmp repeat
pio_read_4k:
	call loop_lba
	movw $8, %cx
	movw $0x0020, %bx /* READ SECTORS */
	movw $1 << 8 | PIO_IRQ, %dx
	jmp pio_read

/* ---- data ---- */

	/* the step table: bit, name, routine */
	.macro STEP bit, name, routine
	.byte \bit, 0
	.word \name, \routine
	.endm
steps:
	STEP 0, n_pci, step_pci
	STEP 1, n_identify, step_identify
	STEP 2, n_pio_read, step_pio_read
	STEP 3, n_pio_read_ext, step_pio_read_ext
	STEP 4, n_pio_write, step_pio_write
	STEP 5, n_pio_multiple, step_pio_multiple
	STEP 6, n_dma_read, step_dma_read
	STEP 7, n_dma_read_sg, step_dma_read_sg
	STEP 8, n_dma_write, step_dma_write
	STEP 21, n_dma_prd_edges, step_dma_prd_edges
	STEP 9, n_err_range, step_err_range
	STEP 10, n_err_prd, step_err_prd
	STEP 11, n_err_absent, step_err_absent
	STEP 12, n_atapi_signature, step_atapi_signature
	STEP 13, n_atapi_identify, step_atapi_identify
	STEP 14, n_atapi_ready, step_atapi_ready
	STEP 15, n_atapi_capacity, step_atapi_capacity
	STEP 16, n_atapi_read_pio, step_atapi_read_pio
	STEP 17, n_atapi_read_odd, step_atapi_read_odd
	STEP 18, n_atapi_read_dma, step_atapi_read_dma
	STEP 22, n_atapi_err_range, step_atapi_err_range
	STEP 19, n_loop_dma, step_loop_dma
	STEP 20, n_loop_pio, step_loop_pio
	.byte 0, 0
	.word 0, 0

	/* PRD tables: 4-byte aligned, within 64 KiB, entries within 64 KiB */
	.balign 8
prd_one:
	.long DMA_BUF, PRD_EOT
prd_bad:
	.long 0, PRD_EOT | 8 * 512
prd_64k: /* count 0: 64 KiB, from a 64 KiB boundary */
	.long 0x40000, PRD_EOT
prd_longer: /* 8 KiB offered for a 4 KiB transfer */
	.long DMA_BUF, PRD_EOT | 0x2000
	/* 32 KiB in five scattered pieces of odd word counts, out of address order */
prd_scatter:
	.long 0x4F000, 0x0FFE
	.long 0x47002, 0x0002
	.long 0x52000, 0x3000
	.long 0x40010, 0x1FFE
	.long 0x58000, PRD_EOT | 0x2002
	/* 16 KiB from one buffer, split at an odd word count */
prd_write:
	.long WRITE_BUF, 0x1002
	.long WRITE_BUF + 0x1002, PRD_EOT | 0x2FFE

cdb_tur:	.fill 12, 1, 0
cdb_capacity:	.byte 0x25
	.fill 11, 1, 0
cdb:		.fill 12, 1, 0

n_pci:			.asciz "pci"
n_identify:		.asciz "identify"
n_pio_read:		.asciz "pio-read"
n_pio_read_ext:		.asciz "pio-read-ext"
n_pio_write:		.asciz "pio-write"
n_pio_multiple:		.asciz "pio-multiple"
n_dma_read:		.asciz "dma-read"
n_dma_read_sg:		.asciz "dma-read-sg"
n_dma_write:		.asciz "dma-write"
n_dma_prd_edges:	.asciz "dma-prd-edges"
n_err_range:		.asciz "err-range"
n_err_prd:		.asciz "err-prd"
n_err_absent:		.asciz "err-absent"
n_atapi_signature:	.asciz "atapi-signature"
n_atapi_identify:	.asciz "atapi-identify"
n_atapi_ready:		.asciz "atapi-ready"
n_atapi_capacity:	.asciz "atapi-capacity"
n_atapi_read_pio:	.asciz "atapi-read-pio"
n_atapi_read_odd:	.asciz "atapi-read-odd"
n_atapi_read_dma:	.asciz "atapi-read-dma"
n_atapi_err_range:	.asciz "atapi-err-range"
n_loop_dma:		.asciz "loop-dma"
n_loop_pio:		.asciz "loop-pio"

s_start:	.asciz "idetest: start\r\n"
s_done:		.asciz "idetest: done failed="
s_prefix:	.asciz "idetest: "
s_ok:		.asciz " ok"
s_fail:		.asciz " fail"
s_why:		.asciz " why="
s_crlf:		.asciz "\r\n"
s_space:	.asciz " "
s_equals:	.asciz "="

k_sum:		.asciz "sum"
k_st:		.asciz "st"
k_err:		.asciz "err"
k_bm:		.asciz "bm"
k_devfn:	.asciz "devfn"
k_bar4:		.asciz "bar4"
k_cmd:		.asciz "cmd"
k_lba28:	.asciz "lba28"
k_lba48:	.asciz "lba48"
k_irqs:		.asciz "irqs"
k_w59:		.asciz "w59"
k_w0:		.asciz "w0"
k_bytes:	.asciz "bytes"
k_c0d1:		.asciz "c0d1"
k_c1d1:		.asciz "c1d1"
k_sig:		.asciz "sig"
k_tries:	.asciz "tries"
k_first_sense:	.asciz "first-sense"
k_last:		.asciz "last"
k_block:	.asciz "block"
k_blocks:	.asciz "blocks"
k_n:		.asciz "n"

w_irq:			.asciz "no-interrupt"
w_busy:			.asciz "busy"
w_drq:			.asciz "no-drq"
w_no_drq:		.asciz "interrupt-without-drq"
w_not_idle:		.asciz "not-idle"
w_device_error:		.asciz "device-error"
w_no_bm:		.asciz "no-bus-master"
w_bm_status:		.asciz "bus-master-status"
w_no_ide_function:	.asciz "no-8086:7010"
w_class:		.asciz "class"
w_bar:			.asciz "bar4"
w_command:		.asciz "command-register"
w_integrity:		.asciz "integrity-word"
w_kind:			.asciz "device-kind"
w_capacity:		.asciz "capacity"
w_readback:		.asciz "read-back-differs"
w_multiple:		.asciz "multiple-mode"
w_prd_length:		.asciz "prd-length"
w_no_error:		.asciz "no-error"
w_bm_clear:		.asciz "bus-master-status-stuck"
w_no_bm_error:		.asciz "no-bus-master-error"
w_absent:		.asciz "absent-device"
w_reason:		.asciz "interrupt-reason"
w_block:		.asciz "drq-block"
w_check_condition:	.asciz "check-condition"
w_signature:		.asciz "signature"
w_never_ready:		.asciz "never-ready"
w_short:		.asciz "short-transfer"

	.balign 4
ticks:		.long 0
deadline:	.long 0
irq_count:	.word 0, 0 /* interrupts seen on IRQ 14 and IRQ 15 */
irq_seen:	.word 0
failed:		.byte 0
bm_base:	.word 0
ch_cmd:		.word 0
ch_ctl:		.word 0
ch_bm:		.word 0
ch_irq:		.word 0
ch_unit:	.byte 0
step_sp:	.word 0
why_ptr:	.word 0
pio_left:	.word 0
pio_irqs:	.word 0
pio_block:	.byte 0
pio_mode:	.byte 0
	.balign 4
dma_prd:	.long 0
dma_dir:	.byte 0
dma_early:	.byte 0
	.balign 4
hash:		.long 0
pat_state:	.long 0
sum_written:	.long 0
copy_dst:	.long 0
walk_addr:	.long 0
walk_left:	.long 0
walk_fn:	.word 0
xfer_max:	.long 0
xfer_bytes:	.long 0
xfer_blocks:	.word 0
xfer_limit:	.word 0
first_sense:	.byte 0
hex_end:	.word 0
hex_tmp:	.fill 12, 1, 0
detail_len:	.word 0
detail:		.fill DETAIL_MAX + 1, 1, 0

	.org IMAGE_BYTES
