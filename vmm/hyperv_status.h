/* Hypercall status codes of the Hyper-V TLFS, shared by the VMM's hypercall handling
 * (hyperv.c) and the VMBus host (scsi-vsp/), which answers HvPostMessage and HvSignalEvent. */
#ifndef HV_HYPERV_STATUS_H
#define HV_HYPERV_STATUS_H

#define HV_STATUS_SUCCESS		  0
#define HV_STATUS_INVALID_HYPERCALL_CODE  2
#define HV_STATUS_INVALID_HYPERCALL_INPUT 3
#define HV_STATUS_INVALID_ALIGNMENT	  4
#define HV_STATUS_INVALID_PARAMETER	  5
#define HV_STATUS_ACCESS_DENIED		  6
#define HV_STATUS_INSUFFICIENT_MEMORY	  11
#define HV_STATUS_INVALID_PORT_ID	  17
#define HV_STATUS_INVALID_CONNECTION_ID	  18
#define HV_STATUS_INSUFFICIENT_BUFFERS	  19

#endif
