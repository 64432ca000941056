#include "geometry.h"

void vdisk_chs_geometry(uint64_t total, uint16_t *cylinders, uint8_t *heads, uint8_t *sectors)
{
	uint32_t spt, h, cth;

	if (total > VDISK_MAX_CHS_SECTORS)
		total = VDISK_MAX_CHS_SECTORS;
	if (total >= UINT64_C(65535) * 16 * 63) {
		spt = 255;
		h = 16;
		cth = (uint32_t)(total / spt);
	} else {
		spt = 17;
		cth = (uint32_t)(total / spt);
		h = (cth + 1023) / 1024;
		if (h < 4)
			h = 4;
		if (cth >= h * 1024 || h > 16) {
			spt = 31;
			h = 16;
			cth = (uint32_t)(total / spt);
		}
		if (cth >= h * 1024) {
			spt = 63;
			h = 16;
			cth = (uint32_t)(total / spt);
		}
	}
	*cylinders = (uint16_t)(cth / h);
	*heads = (uint8_t)h;
	*sectors = (uint8_t)spt;
}
