/* ACPI tables for the generation 1 and 2 platforms, handed to the firmware through fw_cfg with a
 * table loader (see table_loader.h), as QEMU does for SeaBIOS and OVMF:
 *   etc/acpi/rsdp    the RSDP (revision 2), allocated in the F segment, 16-byte aligned;
 *   etc/acpi/tables  FACS, DSDT, FADT, MADT, SSDT, RSDT, XSDT, allocated high, 64-aligned;
 *   etc/table-loader the commands: every pointer between tables is an ADD_POINTER and
 *                    every checksum an ADD_CHECKSUM the firmware computes.
 * The DSDT (dsdt.asl) is compiled by iasl at build time; the SSDT declares one
 * processor device (ACPI0007, _UID n) per MADT LAPIC entry. Generation 2 differs in the
 * FADT's PM block (GEN2_PM_BASE, where OVMF puts it), the VMBus device (always there) and
 * the OEM table ID (HVGEN2).
 */
#ifndef HV_VMM_ACPI_H
#define HV_VMM_ACPI_H

#include <stdbool.h>

#include "fw_cfg.h"

#define ACPI_RSDP_FILE	 "etc/acpi/rsdp"
#define ACPI_TABLES_FILE "etc/acpi/tables"
/* xAPIC IDs 0..254 (255 is the broadcast ID). */
#define ACPI_MAX_CPUS 255

/* Adds the three files for a generation gen (1 or 2) VM with ncpus vCPUs (APIC IDs
 * 0..ncpus-1) to fw; vmbus puts the VMBus device in a generation 1 DSDT (only for a VM with
 * the Hyper-V interface). Returns 0, -EINVAL for gen or ncpus (1..ACPI_MAX_CPUS) out of
 * range, -ENOMEM, or fw_cfg_add_file's error. */
int acpi_add_tables(struct fw_cfg *fw, unsigned gen, unsigned ncpus, bool vmbus);

#endif
