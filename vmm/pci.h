/* PCI bus 0 behind configuration mechanism #1 (ports 0xCF8 address, 0xCFC-0xCFF data), and
 * the generic type-0 configuration header every function shares.
 *
 * A function keeps its 256-byte configuration space with two masks: the bits a guest write
 * may change and the bits a written 1 clears (status). Everything else is read-only, so
 * identity fields, class codes and the low type bits of BARs cannot be overwritten. BARs
 * are sized by their write mask (write ~0, read back the size mask) and, when the guest
 * programs one and enables its decode in the command register, the range bound to it is
 * moved on the dev_bus to the programmed address. An undecoded BAR's range is parked at an
 * address no guest access can reach (above the 16-bit port space, above any physical
 * address), because dev_bus ranges are never unregistered.
 *
 * Device-specific registers (0x40-0xFF) are plain writable storage unless the function
 * narrows their mask; a function reacts to writes through its config_changed callback.
 * Reset restores the power-on image and reports the whole space as changed.
 */
#ifndef HV_PCI_H
#define HV_PCI_H

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>

#include "dev.h"

#define PCI_CONFIG_SIZE	   256
#define PCI_NUM_BARS	   6
#define PCI_DEVFN(dev, fn) ((unsigned)(dev) << 3 | (unsigned)(fn))

/* Standard header offsets and bits used by the platform. */
#define PCI_VENDOR_ID	   0x00
#define PCI_DEVICE_ID	   0x02
#define PCI_COMMAND	   0x04
#define PCI_STATUS	   0x06
#define PCI_REVISION_ID	   0x08
#define PCI_CLASS_PROG	   0x09
#define PCI_HEADER_TYPE	   0x0E
#define PCI_BAR0	   0x10
#define PCI_SUBSYSTEM_VID  0x2C
#define PCI_SUBSYSTEM_ID   0x2E
#define PCI_INTERRUPT_LINE 0x3C
#define PCI_INTERRUPT_PIN  0x3D
#define PCI_HEADER_END	   0x40 /* device-specific registers start here */

#define PCI_COMMAND_IO	    0x0001
#define PCI_COMMAND_MEMORY  0x0002
#define PCI_COMMAND_MASTER  0x0004
#define PCI_HEADER_MULTI_FN 0x80
#define PCI_BAR_IO	    0x1 /* BAR bit0: I/O space */

/* Where undecoded ranges wait: above 2^60, which neither a port number nor a guest physical
 * address reaches. Each (devfn, slot) has its own 4 GiB so parked ranges never overlap;
 * slots 0-5 are the BARs, higher slots are free for non-BAR decoders (e.g. PIIX4 PMBA). */
uint64_t pci_parked_base(unsigned devfn, unsigned slot);

struct pci_function_id {
	uint16_t vendor, device;
	uint8_t revision;
	uint32_t class_code; /* class << 16 | subclass << 8 | prog-if */
	uint8_t header_type; /* 0, or PCI_HEADER_MULTI_FN on function 0 of a multi-function device
			      */
	uint16_t subsystem_vendor, subsystem;
	uint8_t interrupt_pin; /* 0 none, 1-4 INTA-INTD */
};

struct pci_function;

struct pci_function_ops {
	/* Called after the guest wrote [offset, offset + len) (the stored value already
	 * reflects the masks) and after reset with (0, PCI_CONFIG_SIZE). Runs with the host's
	 * configuration lock held; may call dev_bus_move. */
	void (*config_changed)(void *opaque, struct pci_function *fn, unsigned offset,
			       unsigned len);
};

struct pci_bar {
	uint32_t size; /* 0: not implemented (reads 0, not writable) */
	enum dev_space space;
	const struct dev_ops *ops; /* the range decoded at the BAR's address */
	void *opaque;
	const char *name;
	bool decoded;
	uint64_t base; /* where the range is now (parked when !decoded) */
};

struct pci_function {
	uint8_t config[PCI_CONFIG_SIZE];
	uint8_t wmask[PCI_CONFIG_SIZE];	  /* bits a guest write may change */
	uint8_t w1cmask[PCI_CONFIG_SIZE]; /* bits a written 1 clears */
	uint8_t power_on[PCI_CONFIG_SIZE];
	struct pci_bar bars[PCI_NUM_BARS];
	const struct pci_function_ops *ops;
	void *opaque;
	struct dev_bus *bus; /* set when added to a host */
	unsigned devfn;
};

/* Fills in the header: identity fields read-only; command (I/O, memory, bus master, parity,
 * SERR, INTx disable), cache line size, latency timer and INTERRUPT_LINE writable; status
 * error bits write-1-to-clear; device-specific registers writable. */
void pci_function_init(struct pci_function *fn, const struct pci_function_id *id,
		       const struct pci_function_ops *ops, void *opaque);

/* Declares BAR bar (0-5): size a power of two (>= 4 for I/O, >= 16 for memory), decoding
 * ops/opaque. The range is registered (parked) when the function is added to a host, or
 * adopted if one is already registered for (ops, opaque). Returns 0 or -EINVAL. */
int pci_function_set_bar(struct pci_function *fn, unsigned bar, uint32_t size, enum dev_space space,
			 const struct dev_ops *ops, void *opaque, const char *name);

/* Sets the guest-writable bits of bytes [offset, offset + len) to mask (little-endian) and
 * their value to value; both become part of the power-on image. For device-specific
 * registers and presets. */
void pci_function_define(struct pci_function *fn, unsigned offset, unsigned len, uint32_t value,
			 uint32_t mask);

/* Configuration space access as a configuration cycle does it: up to 4 bytes, clipped to
 * the space. */
uint32_t pci_function_read(struct pci_function *fn, unsigned offset, unsigned size);
void pci_function_write(struct pci_function *fn, unsigned offset, unsigned size, uint32_t value);

/* Back to the power-on image; BAR ranges parked; config_changed(0, PCI_CONFIG_SIZE). */
void pci_function_reset(struct pci_function *fn);

/* Little-endian field readers for devices' own use. */
uint32_t pci_config_get(const struct pci_function *fn, unsigned offset, unsigned size);

/* Moves the range registered for (ops, opaque) to base when decode is true, otherwise (or
 * when base is taken by another range) to parked. Returns where the range ended up. */
uint64_t pci_place_range(struct dev_bus *bus, enum dev_space space, const struct dev_ops *ops,
			 void *opaque, bool decode, uint64_t base, uint64_t parked);

/* ---- the host: configuration mechanism #1, bus 0 ---- */

#define PCI_MAX_DEVFN 256

struct pci_host {
	pthread_mutex_t lock; /* the address register and every function's configuration */
	uint32_t address;     /* 0xCF8 */
	struct pci_function *functions[PCI_MAX_DEVFN];
	struct dev_bus *bus;
	/* Byte accesses to 0xCF9 share the 0xCF8 dword and go here (PIIX reset control). */
	const struct dev_ops *port_cf9_ops;
	void *port_cf9_opaque;
};

/* Registers 0xCF8-0xCFF on bus. cf9_ops may be NULL. Returns 0 or -errno. */
int pci_host_init(struct pci_host *host, struct dev_bus *bus, const struct dev_ops *cf9_ops,
		  void *cf9_opaque);
void pci_host_destroy(struct pci_host *host);

/* Puts fn at devfn on bus 0 and registers (parked) its BAR ranges. Returns 0, -EINVAL,
 * -EBUSY (slot taken) or a dev_bus error. */
int pci_host_add(struct pci_host *host, unsigned devfn, struct pci_function *fn);

/* Resets the address register and every function. */
void pci_host_reset(struct pci_host *host);

#endif
