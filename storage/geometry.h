/* CHS geometry of a disk by the algorithm of the VHD specification (appendix "CHS
 * calculation"), which Hyper-V also reports through emulated IDE: one answer for the VHD
 * footer and the IDE IDENTIFY data, so a guest sees the geometry its image records. */
#ifndef HV_STORAGE_GEOMETRY_H
#define HV_STORAGE_GEOMETRY_H

#include <stdint.h>

/* The largest sector count CHS can describe (65535 cylinders, 16 heads, 255 sectors). */
#define VDISK_MAX_CHS_SECTORS (UINT64_C(65535) * 16 * 255)

/* Geometry for a disk of total 512-byte sectors (capped at VDISK_MAX_CHS_SECTORS). */
void vdisk_chs_geometry(uint64_t total, uint16_t *cylinders, uint8_t *heads, uint8_t *sectors);

#endif
