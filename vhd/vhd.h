/* The VHD format driver. */
#ifndef HV_VHD_H
#define HV_VHD_H

/* Adds VHD to the storage/ format registry; call once before opening images. */
int vhd_register(void);

#endif
