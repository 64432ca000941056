/* What the Hyper-V payload (hyperv.S) and its test (tests/unit/vmm/test_hyperv_guest.c)
 * agree on: the RAM the payload uses and the values it sends. */
#ifndef HV_GUEST_HYPERV_PAYLOAD_H
#define HV_GUEST_HYPERV_PAYLOAD_H

/* RAM (identity-mapped by the payload's own page tables) */
#define HVP_IRQ_COUNT  0x800 /* SINT interrupts handled */
#define HVP_GP_COUNT   0x804 /* #GP faults taken (and skipped) */
#define HVP_IDT	       0x1000
#define HVP_PML4       0x20000
#define HVP_PDPT       0x21000
#define HVP_PD	       0x22000 /* four, mapping 4 GiB with 2 MiB pages */
#define HVP_HCALL_PAGE 0x30000
#define HVP_SIMP       0x31000
#define HVP_SIEFP      0x32000
#define HVP_INPUT      0x33000
#define HVP_STACK      0x70000

#define HVP_SINT	2	   /* VMBus's */
#define HVP_VECTOR	0xF3	   /* Linux's HYPERVISOR_CALLBACK_VECTOR */
#define HVP_OS_ID_HIGH	0x81000006 /* Linux 6.1's guest OS ID, high half */
#define HVP_OS_ID_LOW	0x01140000
#define HVP_POST_CONN	4 /* VMBus INITIATE_CONTACT for protocol >= 5.0 */
#define HVP_POST_TYPE	1
#define HVP_POST_TEXT	"hello, vmbus" /* 12 bytes, as 3 dwords below */
#define HVP_POST_DWORD0 0x6C6C6568
#define HVP_POST_DWORD1 0x76202C6F
#define HVP_POST_DWORD2 0x7375626D
#define HVP_POST_LEN	12
#define HVP_SIGNAL_CONN 0x18
#define HVP_EVENT_FLAG	5 /* the host sets this flag in answer to the signal */
#define HVP_EXIT	0x30
#define HVP_BAD_GPA	0x80000000 /* beyond the test's RAM */

#endif
