/*
 * The DSDT: the i440FX host bridge with its windows and interrupt routing, the four PIIX
 * PCI interrupt links, the ISA devices the platform has, and \_S5. Addresses come from
 * gen1_layout.h (through the generated gen1_layout.asi); processors are declared by the
 * SSDT acpi.c builds for the VM's CPU count.
 *
 * Built three times: for generation 1, for generation 1 with VMBUS defined (the ISA bridge
 * also holds the VMBus device, for VMs with the Hyper-V interface: Linux's hv_vmbus finds
 * the bus only here), and for generation 2 (GEN2 and VMBUS defined). The two generations'
 * devices differ only on PCI (no IDE function in generation 2), which the DSDT does not
 * list.
 */
#include "gen1_layout.asi"

#ifdef GEN2
DefinitionBlock ("", "DSDT", 2, "HVSTCK", "HVGEN2", 1)
#else
DefinitionBlock ("", "DSDT", 2, "HVSTCK", "HVGEN1", 1)
#endif
{
    Scope (\_SB)
    {
        Device (PCI0)
        {
            Name (_HID, EisaId ("PNP0A03"))
            Name (_UID, Zero)
            Name (_CRS, ResourceTemplate ()
            {
                WordBusNumber (ResourceProducer, MinFixed, MaxFixed, PosDecode,
                    0x0000, 0x0000, 0x00FF, 0x0000, 0x0100)
                IO (Decode16, GEN1_PCI_CONFIG_ADDR, GEN1_PCI_CONFIG_ADDR, 0x01, 0x08)
                WordIO (ResourceProducer, MinFixed, MaxFixed, PosDecode, EntireRange,
                    0x0000, 0x0000, 0x0CF7, 0x0000, 0x0CF8)
                WordIO (ResourceProducer, MinFixed, MaxFixed, PosDecode, EntireRange,
                    0x0000, 0x0D00, 0xFFFF, 0x0000, 0xF300)
                // Legacy VGA memory
                DWordMemory (ResourceProducer, PosDecode, MinFixed, MaxFixed, Cacheable,
                    ReadWrite, 0x00000000, 0x000A0000, 0x000BFFFF, 0x00000000, 0x00020000)
                // The 32-bit PCI hole, up to the IOAPIC
                DWordMemory (ResourceProducer, PosDecode, MinFixed, MaxFixed, NonCacheable,
                    ReadWrite, 0x00000000, GEN1_PCI_HOLE_START, GEN1_PCI_MMIO_LAST,
                    0x00000000, GEN1_PCI_MMIO_LEN)
            })

            /*
             * Every slot's INTA-INTD, as the i440FX swizzles them and as SeaBIOS assigns
             * INTERRUPT_LINE: pin p (0 = INTA) of slot s uses link (s - 1 + p) mod 4.
             * Entry i of the 128 is slot i / 4, pin i mod 4.
             */
            Method (_PRT, 0, NotSerialized)
            {
                Local0 = Package (0x80) {}
                Local1 = Zero
                While (Local1 < 0x80)
                {
                    Local2 = Local1 >> 2
                    Local3 = (Local1 + Local2 + 3) & 3
                    If (Local3 == Zero)
                    {
                        Local4 = Package (0x04) { Zero, Zero, LNKA, Zero }
                    }
                    ElseIf (Local3 == One)
                    {
                        Local4 = Package (0x04) { Zero, Zero, LNKB, Zero }
                    }
                    ElseIf (Local3 == 2)
                    {
                        Local4 = Package (0x04) { Zero, Zero, LNKC, Zero }
                    }
                    Else
                    {
                        Local4 = Package (0x04) { Zero, Zero, LNKD, Zero }
                    }
                    Local4 [Zero] = (Local2 << 16) | 0xFFFF
                    Local4 [One] = Local1 & 3
                    Local0 [Local1] = Local4
                    Local1++
                }
                Return (Local0)
            }

            // PIIX function 0: the PCI-to-ISA bridge
            Device (ISA)
            {
                Name (_ADR, (GEN1_PCI_DEV_PIIX << 16) | GEN1_PCI_FN_ISA)

                // PIRQRC[A-D]: bit 7 disables the link, bits 3:0 are its ISA IRQ
                OperationRegion (PIRQ, PCI_Config, 0x60, 0x04)
                Field (PIRQ, ByteAcc, NoLock, Preserve)
                {
                    PRQA, 8,
                    PRQB, 8,
                    PRQC, 8,
                    PRQD, 8
                }

                Device (RTC)
                {
                    Name (_HID, EisaId ("PNP0B00"))
                    Name (_CRS, ResourceTemplate ()
                    {
                        IO (Decode16, GEN1_CMOS_PORT, GEN1_CMOS_PORT, 0x10, 0x02)
                        IRQNoFlags () { GEN1_RTC_IRQ }
                    })
                }

                Device (KBD)
                {
                    Name (_HID, EisaId ("PNP0303"))
                    Name (_CRS, ResourceTemplate ()
                    {
                        IO (Decode16, GEN1_I8042_DATA, GEN1_I8042_DATA, 0x01, 0x01)
                        IO (Decode16, GEN1_I8042_CMD, GEN1_I8042_CMD, 0x01, 0x01)
                        IRQNoFlags () { 1 }
                    })
                }

                Device (COM1)
                {
                    Name (_HID, EisaId ("PNP0501"))
                    Name (_UID, One)
                    Name (_CRS, ResourceTemplate ()
                    {
                        IO (Decode16, GEN1_COM1_BASE, GEN1_COM1_BASE, 0x00, 0x08)
                        IRQNoFlags () { GEN1_COM1_IRQ }
                    })
                }

                /*
                 * VMBus (VMBUS builds only), where Hyper-V's generation 1 firmware
                 * puts it. Linux matches the strings "VMBUS" and "VMBus" (exact case) in
                 * _HID or _CID; iasl takes only 7- or 8-character _HID names, hence the
                 * method. Linux requires a _CRS and takes MMIO windows from the nearest
                 * ancestor's (PCI0); on x86 it uses no interrupt from it (the SINT vector
                 * is fixed), so the template is empty (only its end tag) and claims no IRQ.
                 * (Comments stay outside the #ifdef: iasl 20200925 loops on a block
                 * comment inside a skipped block.)
                 */
#ifdef VMBUS
                Device (VMBS)
                {
                    Method (_HID, 0, NotSerialized) { Return ("VMBus") }
                    Name (_CID, "VMBUS")
                    Name (_UID, Zero)
                    Name (_DDN, "VMBUS")
                    Name (_STA, 0x0F)
                    Name (_CRS, Buffer (0x02) { 0x79, 0x00 })
                }
#endif
            }
        }

        // ---- PCI interrupt links; Arg0 is the link's PIRQRC value ----

        Name (PRSI, ResourceTemplate ()
        {
            Interrupt (ResourceConsumer, Level, ActiveHigh, Shared) GEN1_PCI_IRQS
        })

        // _STA: present and functioning; enabled unless routing is off
        Method (IQST, 1, NotSerialized)
        {
            If (Arg0 & 0x80)
            {
                Return (0x09)
            }
            Return (0x0B)
        }

        // _CRS: the routed IRQ, or none (0) when routing is off. The template is copied; the
        // IRQ goes in its first interrupt number (byte 5).
        Name (CRSI, ResourceTemplate ()
        {
            Interrupt (ResourceConsumer, Level, ActiveHigh, Shared) { 0 }
        })
        Method (IQCR, 1, NotSerialized)
        {
            Local0 = CRSI
            If (!(Arg0 & 0x80))
            {
                Local0 [0x05] = Arg0 & 0x0F
            }
            Return (Local0)
        }

        // _SRS: the IRQ an OS chose from PRSI
        Method (IQSR, 1, NotSerialized)
        {
            Return (DerefOf (Arg0 [0x05]) & 0x0F)
        }

        Device (LNKA)
        {
            Name (_HID, EisaId ("PNP0C0F"))
            Name (_UID, One)
            Method (_STA, 0, NotSerialized) { Return (IQST (\_SB.PCI0.ISA.PRQA)) }
            Method (_PRS, 0, NotSerialized) { Return (PRSI) }
            Method (_CRS, 0, NotSerialized) { Return (IQCR (\_SB.PCI0.ISA.PRQA)) }
            Method (_SRS, 1, NotSerialized) { \_SB.PCI0.ISA.PRQA = IQSR (Arg0) }
            Method (_DIS, 0, NotSerialized) { \_SB.PCI0.ISA.PRQA |= 0x80 }
        }

        Device (LNKB)
        {
            Name (_HID, EisaId ("PNP0C0F"))
            Name (_UID, 2)
            Method (_STA, 0, NotSerialized) { Return (IQST (\_SB.PCI0.ISA.PRQB)) }
            Method (_PRS, 0, NotSerialized) { Return (PRSI) }
            Method (_CRS, 0, NotSerialized) { Return (IQCR (\_SB.PCI0.ISA.PRQB)) }
            Method (_SRS, 1, NotSerialized) { \_SB.PCI0.ISA.PRQB = IQSR (Arg0) }
            Method (_DIS, 0, NotSerialized) { \_SB.PCI0.ISA.PRQB |= 0x80 }
        }

        Device (LNKC)
        {
            Name (_HID, EisaId ("PNP0C0F"))
            Name (_UID, 3)
            Method (_STA, 0, NotSerialized) { Return (IQST (\_SB.PCI0.ISA.PRQC)) }
            Method (_PRS, 0, NotSerialized) { Return (PRSI) }
            Method (_CRS, 0, NotSerialized) { Return (IQCR (\_SB.PCI0.ISA.PRQC)) }
            Method (_SRS, 1, NotSerialized) { \_SB.PCI0.ISA.PRQC = IQSR (Arg0) }
            Method (_DIS, 0, NotSerialized) { \_SB.PCI0.ISA.PRQC |= 0x80 }
        }

        Device (LNKD)
        {
            Name (_HID, EisaId ("PNP0C0F"))
            Name (_UID, 4)
            Method (_STA, 0, NotSerialized) { Return (IQST (\_SB.PCI0.ISA.PRQD)) }
            Method (_PRS, 0, NotSerialized) { Return (PRSI) }
            Method (_CRS, 0, NotSerialized) { Return (IQCR (\_SB.PCI0.ISA.PRQD)) }
            Method (_SRS, 1, NotSerialized) { \_SB.PCI0.ISA.PRQD = IQSR (Arg0) }
            Method (_DIS, 0, NotSerialized) { \_SB.PCI0.ISA.PRQD |= 0x80 }
        }
    }

    // Soft off: PM1a_CNT.SLP_TYP values for PM1a and PM1b
    Name (_S5, Package (0x04) { GEN1_SLP_TYP_S5, GEN1_SLP_TYP_S5, Zero, Zero })
}
