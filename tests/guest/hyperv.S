/* The Hyper-V interface from a 64-bit guest, the way Linux uses it: CPUID leaves, guest OS
 * ID, the hypercall page, SynIC setup, HvPostMessage to the host, host messages arriving
 * in the SIMP slot with the SINT interrupt (EOM when the slot was wanted again), an event
 * flag after HvSignalEvent, #GP on bad MSR writes, a stray write to the hypercall port,
 * and hostile hypercall inputs. The
 * payload enters long mode itself: flat GDT, 4 GiB identity map with 2 MiB pages. */
#include "payload.h"
#include "hyperv_payload.h"

#define MSR_EFER      0xC0000080
#define EFER_LME      (1 << 8)
#define LAPIC_SVR     0xFEE000F0
#define LAPIC_EOI     0xFEE000B0
#define GUEST_OS_ID   0x40000000
#define HYPERCALL     0x40000001
#define VP_INDEX      0x40000002
#define SCONTROL      0x40000080
#define SIEFP	      0x40000082
#define SIMP	      0x40000083
#define EOM	      0x40000084
#define SINT0	      0x40000090
#define SLOT	      (HVP_SIMP + 256 * HVP_SINT)
#define SIEF_AREA     (HVP_SIEFP + 256 * HVP_SINT)
#define CODE64	      0x18
#define ROM	      0xF0000

/* out of \reg to the log port, keeping RDX */
.macro log64 reg
	push %rdx
	log \reg
	pop %rdx
.endm

.macro cpuid_leaf leaf
	mov $\leaf, %eax
	xor %ecx, %ecx
	cpuid
.endm

.macro wrmsr_imm msr, high, low
	mov $\msr, %ecx
	mov $\high, %edx
	mov $\low, %eax
	wrmsr
.endm

/* IDT gate \vector -> \handler (where this code runs, below 4 GiB), 64-bit interrupt gate */
.macro gate vector, handler
	lea \handler(%rip), %rax
	mov %ax, HVP_IDT + 16 * \vector
	movw $CODE64, HVP_IDT + 16 * \vector + 2
	movw $0x8E00, HVP_IDT + 16 * \vector + 4
	shr $16, %eax
	mov %ax, HVP_IDT + 16 * \vector + 6
	movl $0, HVP_IDT + 16 * \vector + 8
	movl $0, HVP_IDT + 16 * \vector + 12
.endm

/* a hypercall through the page: control, input */
.macro hcall control, input
	mov $\control, %rcx
	mov $\input, %rdx
	xor %r8, %r8
	mov $HVP_HCALL_PAGE, %eax
	call *%rax
.endm

.macro post_input size, conn=HVP_POST_CONN
	movl $\conn, HVP_INPUT
	movl $0, HVP_INPUT + 4
	movl $HVP_POST_TYPE, HVP_INPUT + 8
	movl $\size, HVP_INPUT + 12
	movl $HVP_POST_DWORD0, HVP_INPUT + 16
	movl $HVP_POST_DWORD1, HVP_INPUT + 20
	movl $HVP_POST_DWORD2, HVP_INPUT + 24
.endm

.macro wait_irqs n
1:	sti
	hlt
	cli
	cmpl $\n, HVP_IRQ_COUNT
	jb 1b
.endm

	payload_start
	lgdtl %cs:gdt_desc
	mov %cr0, %eax
	or $1, %eax
	mov %eax, %cr0
	ljmpl $0x08, $(ROM + pm32)

	.code32
pm32:
	mov $0x10, %ax
	mov %ax, %ds
	mov %ax, %es
	mov %ax, %ss
	mov $HVP_STACK, %esp
	movl $(HVP_PDPT | 3), HVP_PML4
	movl $0, HVP_PML4 + 4
	xor %ecx, %ecx
1:	mov %ecx, %eax /* PDPT entry i = PD i */
	shl $12, %eax
	add $(HVP_PD | 3), %eax
	mov %eax, HVP_PDPT(, %ecx, 8)
	movl $0, HVP_PDPT + 4(, %ecx, 8)
	inc %ecx
	cmp $4, %ecx
	jb 1b
	xor %ecx, %ecx
2:	mov %ecx, %eax /* PD entry j maps 2 MiB page j */
	shl $21, %eax
	or $0x83, %eax
	mov %eax, HVP_PD(, %ecx, 8)
	movl $0, HVP_PD + 4(, %ecx, 8)
	inc %ecx
	cmp $2048, %ecx
	jb 2b
	mov %cr4, %eax
	or $(1 << 5), %eax /* PAE */
	mov %eax, %cr4
	mov $HVP_PML4, %eax
	mov %eax, %cr3
	mov $MSR_EFER, %ecx
	rdmsr
	or $EFER_LME, %eax
	wrmsr
	mov %cr0, %eax
	or $(1 << 31), %eax
	mov %eax, %cr0
	ljmp $CODE64, $(ROM + lm64)

	.code64
lm64:
	mov $HVP_STACK, %rsp
	gate 13, gp_handler
	gate HVP_VECTOR, sint_handler
	lidt idt_desc(%rip)

	/* the leaves */
	cpuid_leaf 0x40000000
	log64 eax
	mov %ebx, %eax
	log64 eax
	mov %ecx, %eax
	log64 eax
	mov %edx, %eax
	log64 eax
	cpuid_leaf 0x40000001
	log64 eax
	cpuid_leaf 0x40000003
	push %rdx
	log64 eax
	mov %ebx, %eax
	log64 eax
	pop %rax
	log64 eax
	cpuid_leaf 0x40000004
	log64 eax
	cpuid_leaf 0x40000100 /* no KVM signature above Hyper-V's */
	mov %ebx, %eax
	log64 eax

	/* VP index, guest OS ID, hypercall page */
	mov $VP_INDEX, %ecx
	rdmsr
	log64 eax
	wrmsr_imm GUEST_OS_ID, HVP_OS_ID_HIGH, HVP_OS_ID_LOW
	mov $GUEST_OS_ID, %ecx
	rdmsr
	mov %edx, %eax
	log64 eax
	wrmsr_imm HYPERCALL, 0, (HVP_HCALL_PAGE | 1)
	mov $HYPERCALL, %ecx
	rdmsr
	log64 eax

	/* writes the TLFS forbids: each #GPs (the handler skips it) */
	wrmsr_imm VP_INDEX, 0, 1
	wrmsr_imm (SINT0 + HVP_SINT), 0, (HVP_VECTOR | (1 << 17)) /* AutoEOI */
	wrmsr_imm (SINT0 + HVP_SINT), 0, 5 /* unmasked vector below 16 */
	wrmsr_imm SCONTROL, 0, 3 /* reserved bit */
	mov $0x400000FF, %ecx
	rdmsr
	mov HVP_GP_COUNT, %eax
	log64 eax

	/* the SynIC, in Linux's order, and the LAPIC */
	wrmsr_imm SIMP, 0, (HVP_SIMP | 1)
	wrmsr_imm SIEFP, 0, (HVP_SIEFP | 1)
	wrmsr_imm (SINT0 + HVP_SINT), 0, HVP_VECTOR
	wrmsr_imm SCONTROL, 0, 1
	mov $LAPIC_SVR, %ebx
	movl $0x1FF, (%rbx)

	/* the hypercall port written from outside the page is no hypercall */
	post_input HVP_POST_LEN
	mov $0x5C, %ecx
	mov $HVP_INPUT, %r11d
	mov $GEN1_HV_HCALL_PORT, %dx
	out %eax, %dx

	/* HvPostMessage: the host answers with two messages, the second after EOM */
	hcall 0x5C, HVP_INPUT
	log64 eax
	wait_irqs 2
	mov HVP_IRQ_COUNT, %eax
	log64 eax

	/* HvSignalEvent (fast): the host answers by setting an event flag */
	hcall 0x1005D, HVP_SIGNAL_CONN
	log64 eax
	wait_irqs 3

	/* hostile inputs, each with its status */
	post_input 241
	hcall 0x5C, HVP_INPUT
	log64 eax
	post_input HVP_POST_LEN
	hcall 0x5C, (HVP_INPUT + 4)
	log64 eax
	hcall 0x5C, HVP_BAD_GPA
	log64 eax
	hcall 0x1005C, HVP_INPUT
	log64 eax
	hcall 0x99, HVP_INPUT
	log64 eax
	exit_with HVP_EXIT

/* #GP from rdmsr/wrmsr (2 bytes): count it, skip the instruction */
gp_handler:
	add $8, %rsp
	addq $2, (%rsp)
	incl HVP_GP_COUNT
	iretq

/* SINT2: log a message (type, first dword), free the slot, EOM if the host is waiting;
 * log and clear the event flags; EOI. */
sint_handler:
	push %rax
	push %rcx
	push %rdx
	mov SLOT, %eax
	test %eax, %eax
	jz 1f
	log64 eax
	mov SLOT + 16, %eax
	log64 eax
	xor %eax, %eax
	xchg %eax, SLOT /* free the slot (a locked write), then look at the flag */
	testb $1, SLOT + 5
	jz 1f
	wrmsr_imm EOM, 0, 0
1:	xor %eax, %eax
	xchg %eax, SIEF_AREA
	test %eax, %eax
	jz 2f
	log64 eax
2:	incl HVP_IRQ_COUNT
	mov $LAPIC_EOI, %eax
	movl $0, (%rax)
	pop %rdx
	pop %rcx
	pop %rax
	iretq

	.balign 8
gdt:
	.quad 0
	.quad 0x00CF9B000000FFFF /* 0x08: 32-bit code (accessed bit preset: ROM) */
	.quad 0x00CF93000000FFFF /* 0x10: data */
	.quad 0x00AF9B000000FFFF /* 0x18: 64-bit code */
gdt_desc:
	.word 31
	.long ROM + gdt
idt_desc:
	.word 0xFFF
	.quad HVP_IDT
	reset_vector
