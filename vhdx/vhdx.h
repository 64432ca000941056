/* The VHDX format driver. */
#ifndef HV_VHDX_H
#define HV_VHDX_H

/* Adds VHDX to the storage/ format registry; call once before opening images. */
int vhdx_register(void);

#endif
