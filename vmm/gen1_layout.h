/* The generation 1 platform's fixed addresses: what the devices answer on and what the
 * ACPI tables, e820 map and fw_cfg files describe. One place, so the tables the guest
 * reads and the devices it finds cannot disagree.
 *
 * Layout follows the i440FX + PIIX3/PIIX4 PC that SeaBIOS knows: host bridge 00:00.0,
 * PIIX function 0 (ISA bridge) at 00:01.0, IDE at 00:01.1, ACPI/PM at 00:01.3.
 *
 * Generation 2 uses the same layout without the IDE function: OVMF needs a host bridge it
 * knows (i440FX or Q35), the PM timer, the RTC and fw_cfg, and finds its serial console
 * through the ISA bridge. Only the PM block's address differs (GEN2_PM_BASE).
 */
#ifndef HV_GEN1_LAYOUT_H
#define HV_GEN1_LAYOUT_H

/* ---- memory ---- */
/* Guest RAM below 4 GiB ends at min(ram, GEN1_PCI_HOLE_START); the rest is mapped above 4 GiB. */
#define GEN1_PCI_HOLE_START 0xC0000000ull /* 32-bit PCI MMIO window: [3 GiB, IOAPIC) */
#define GEN1_PCI_MMIO_END   0xFEC00000ull /* exclusive: the IOAPIC starts here */
#define GEN1_HIGH_RAM_START 0x100000000ull
#define GEN1_IOAPIC_BASE    0xFEC00000ull
#define GEN1_LAPIC_BASE	    0xFEE00000ull
/* KVM needs these for real mode without unrestricted guest (reserved in e820). */
#define GEN1_KVM_IDENTITY_MAP 0xFEFFC000ull
#define GEN1_KVM_TSS	      0xFEFFD000ull
#define GEN1_KVM_RESERVED_LEN 0x4000ull
/* The firmware image is mapped so it ends at 4 GiB; its last 128 KiB also appear at
 * 0xE0000-0xFFFFF (through the PAM registers). */
#define GEN1_BIOS_LOW_BASE 0xE0000ull
#define GEN1_BIOS_LOW_SIZE 0x20000ull

/* ---- PCI (bus 0) ---- */
#define GEN1_PCI_CONFIG_ADDR 0xCF8
#define GEN1_PCI_CONFIG_DATA 0xCFC /* 4 ports */
#define GEN1_PCI_DEV_HOST    0	   /* i440FX 8086:1237 */
#define GEN1_PCI_DEV_PIIX    1	   /* functions: 0 ISA 8086:7000, 1 IDE 8086:7010, 3 PM 8086:7113 */
#define GEN1_PCI_FN_ISA	     0
#define GEN1_PCI_FN_IDE	     1
#define GEN1_PCI_FN_PM	     3
/* PCI interrupt links A-D (PIIX PIRQRC 0x60-0x63) are routed by the firmware to these ISA
 * IRQs (SeaBIOS and OVMF both use 10, 10, 11, 11); the DSDT offers the same choices. */
#define GEN1_PIRQ_DEFAULT \
	{ 10, 10, 11, 11 }
/* The ISA IRQs a link may be routed to: level-triggered, active high (MADT overrides), the
 * choices each link's _PRS offers. */
#define GEN1_PCI_IRQS \
	{ 5, 9, 10, 11 }

/* ---- ACPI / PM (PIIX4 function 3) ---- */
/* SeaBIOS programs PMBA to 0x600 when a table loader exists; the FADT says the same.
 * OVMF (generation 2) puts the block at 0xB000 on an i440FX; its FADT says so. */
#define GEN1_PM_BASE	    0x600
#define GEN2_PM_BASE	    0xB000
#define GEN1_PM1_EVT_OFFSET 0x00 /* PM1a status (2 bytes) + enable (2 bytes) */
#define GEN1_PM1_CNT_OFFSET 0x04 /* PM1a control (2 bytes): SCI_EN bit0, SLP_TYP 12:10, SLP_EN bit13 */
#define GEN1_PM_TMR_OFFSET  0x08 /* 24-bit timer at 3.579545 MHz (4 bytes) */
#define GEN1_PM_LEN	    0x40
#define GEN1_GPE0_BASE	    0xAFE0 /* GPE0 status (2 bytes) + enable (2 bytes) */
#define GEN1_GPE0_LEN	    4
#define GEN1_SCI_IRQ	    9
#define GEN1_SLP_TYP_S5	    0 /* the value in \_S5 and what PM1a_CNT.SLP_TYP must hold for power-off */
#define GEN1_PM_TIMER_HZ    3579545

/* ---- legacy ports and IRQs ---- */
#define GEN1_CMOS_PORT	    0x70 /* index 0x70, data 0x71 */
#define GEN1_RTC_IRQ	    8
#define GEN1_I8042_DATA	    0x60
#define GEN1_I8042_CMD	    0x64
#define GEN1_KBD_IRQ	    1  /* i8042 keyboard port */
#define GEN1_AUX_IRQ	    12 /* i8042 auxiliary (mouse) port */
#define GEN1_PORT61	    0x61 /* served by KVM's PIT (KVM_PIT_SPEAKER_DUMMY) */
#define GEN1_PORT92	    0x92 /* fast A20 and reset */
#define GEN1_RESET_CONTROL  0xCF9
#define GEN1_POST_PORT	    0x80 /* writes ignored */
#define GEN1_COM1_BASE	    0x3F8
#define GEN1_COM1_IRQ	    4
#define GEN1_ELCR_PORT	    0x4D0 /* 2 ports: edge/level control, ISA IRQs 0-15 */
#define GEN1_IDE0_CMD	    0x1F0
#define GEN1_IDE0_CTL	    0x3F6
#define GEN1_IDE0_IRQ	    14
#define GEN1_IDE1_CMD	    0x170
#define GEN1_IDE1_CTL	    0x376
#define GEN1_IDE1_IRQ	    15
#define GEN1_FW_CFG_PORT    0x510 /* selector 0x510, data 0x511, DMA 0x514-0x51B */
#define GEN1_DEBUGCON_PORT  0x402 /* SeaBIOS debug output when it reads back 0xE9 */
/* Test exit device (only with `vmm run --test-exit`): a 1-byte write of v stops the VM and
 * `vmm run` exits with status 64 + (v & 63). */
#define GEN1_TEST_EXIT_PORT 0x501
/* The user-space Hyper-V hypercall page ends in a 4-byte `out` here (vmm/hyperv.h); only
 * an access from the page itself is a hypercall, others reach no device. */
#define GEN1_HV_HCALL_PORT 0x4F0

#endif
