#include "pci.h"

#include <errno.h>
#include <string.h>

#include "arith.h"
#include "gen1_layout.h"

#define CONFIG_ENABLE	0x80000000u
#define ADDRESS_MASK	0x80FFFFFCu /* enable, bus, device, function, register; reserved bits 0 */
#define PARKED_SPACE	(UINT64_C(1) << 60)
#define PORT_SPACE_END	0x10000u
#define BAR_IO_ADDRESS	0xFFFFFFFCu
#define BAR_MEM_ADDRESS 0xFFFFFFF0u

#define STATUS_ERROR_BITS 0xF900u /* parity, signaled/received aborts, SERR, master data parity */
#define COMMAND_WRITABLE  0x0547u /* I/O, memory, master, parity response, SERR, INTx disable */

uint64_t pci_parked_base(unsigned devfn, unsigned slot)
{
	return PARKED_SPACE + ((uint64_t)(devfn & 0xFF) * 16 + (slot & 15)) * (UINT64_C(1) << 32);
}

uint32_t pci_config_get(const struct pci_function *fn, unsigned offset, unsigned size)
{
	uint32_t v = 0;
	for (unsigned i = 0; i < size && i < 4 && offset + i < PCI_CONFIG_SIZE; i++)
		v |= (uint32_t)fn->config[offset + i] << (8 * i);
	return v;
}

static void set_bytes(uint8_t *bytes, unsigned offset, unsigned len, uint32_t value)
{
	for (unsigned i = 0; i < len && i < 4 && offset + i < PCI_CONFIG_SIZE; i++)
		bytes[offset + i] = (uint8_t)(value >> (8 * i));
}

void pci_function_define(struct pci_function *fn, unsigned offset, unsigned len, uint32_t value,
			 uint32_t mask)
{
	set_bytes(fn->config, offset, len, value);
	set_bytes(fn->power_on, offset, len, value);
	set_bytes(fn->wmask, offset, len, mask);
}

void pci_function_init(struct pci_function *fn, const struct pci_function_id *id,
		       const struct pci_function_ops *ops, void *opaque)
{
	memset(fn, 0, sizeof(*fn));
	fn->ops = ops;
	fn->opaque = opaque;
	memset(fn->wmask + PCI_HEADER_END, 0xFF, PCI_CONFIG_SIZE - PCI_HEADER_END);
	pci_function_define(fn, PCI_VENDOR_ID, 2, id->vendor, 0);
	pci_function_define(fn, PCI_DEVICE_ID, 2, id->device, 0);
	pci_function_define(fn, PCI_COMMAND, 2, 0, COMMAND_WRITABLE);
	pci_function_define(fn, PCI_STATUS, 2, 0x0200, 0); /* DEVSEL medium */
	set_bytes(fn->w1cmask, PCI_STATUS, 2, STATUS_ERROR_BITS);
	pci_function_define(fn, PCI_REVISION_ID, 4, id->revision | id->class_code << 8, 0);
	pci_function_define(fn, 0x0C, 2, 0, 0xFFFF); /* cache line size, latency timer */
	pci_function_define(fn, PCI_HEADER_TYPE, 1, id->header_type, 0);
	pci_function_define(fn, PCI_SUBSYSTEM_VID, 2, id->subsystem_vendor, 0);
	pci_function_define(fn, PCI_SUBSYSTEM_ID, 2, id->subsystem, 0);
	pci_function_define(fn, PCI_INTERRUPT_LINE, 1, 0, 0xFF);
	pci_function_define(fn, PCI_INTERRUPT_PIN, 1, id->interrupt_pin, 0);
}

int pci_function_set_bar(struct pci_function *fn, unsigned bar, uint32_t size, enum dev_space space,
			 const struct dev_ops *ops, void *opaque, const char *name)
{
	bool io = space == DEV_PIO;
	if (bar >= PCI_NUM_BARS || !is_power_of_two(size) || size < (io ? 4u : 16u) || !ops ||
	    fn->bus)
		return -EINVAL;
	uint32_t address_bits = io ? BAR_IO_ADDRESS : BAR_MEM_ADDRESS;
	pci_function_define(fn, PCI_BAR0 + 4 * bar, 4, io ? PCI_BAR_IO : 0,
			    address_bits & ~(size - 1));
	fn->bars[bar] = (struct pci_bar){
		.size = size, .space = space, .ops = ops, .opaque = opaque, .name = name
	};
	return 0;
}

uint64_t pci_place_range(struct dev_bus *bus, enum dev_space space, const struct dev_ops *ops,
			 void *opaque, bool decode, uint64_t base, uint64_t parked)
{
	if (decode && dev_bus_move(bus, space, ops, opaque, base) == 0)
		return base;
	dev_bus_move(bus, space, ops, opaque, parked);
	return parked;
}

/* Where the guest asks BAR bar to decode, or false when it does not (decode off in the
 * command register, address 0, or a range that leaves its address space). */
static bool bar_target(const struct pci_function *fn, unsigned bar, uint64_t *base)
{
	const struct pci_bar *b = &fn->bars[bar];
	uint16_t command = (uint16_t)pci_config_get(fn, PCI_COMMAND, 2);
	uint32_t reg = pci_config_get(fn, PCI_BAR0 + 4 * bar, 4);
	uint64_t end_of_space = UINT64_C(1) << 32;
	if (b->space == DEV_PIO) {
		*base = reg & BAR_IO_ADDRESS;
		end_of_space = PORT_SPACE_END;
		if (!(command & PCI_COMMAND_IO))
			return false;
	} else {
		*base = reg & BAR_MEM_ADDRESS;
		if (!(command & PCI_COMMAND_MEMORY))
			return false;
	}
	return *base != 0 && *base + b->size <= end_of_space;
}

static void update_bars(struct pci_function *fn)
{
	for (unsigned i = 0; i < PCI_NUM_BARS; i++) {
		struct pci_bar *b = &fn->bars[i];
		uint64_t base = 0;
		if (!b->size)
			continue;
		bool decode = bar_target(fn, i, &base);
		if (decode == b->decoded && (!decode || base == b->base))
			continue;
		b->base = pci_place_range(fn->bus, b->space, b->ops, b->opaque, decode, base,
					  pci_parked_base(fn->devfn, i));
		b->decoded = decode && b->base == base;
	}
}

uint32_t pci_function_read(struct pci_function *fn, unsigned offset, unsigned size)
{
	return pci_config_get(fn, offset, size);
}

void pci_function_write(struct pci_function *fn, unsigned offset, unsigned size, uint32_t value)
{
	unsigned len = 0;
	for (; len < size && len < 4 && offset + len < PCI_CONFIG_SIZE; len++) {
		unsigned at = offset + len;
		uint8_t v = (uint8_t)(value >> (8 * len));
		uint8_t b = (uint8_t)((fn->config[at] & ~fn->wmask[at]) | (v & fn->wmask[at]));
		fn->config[at] = (uint8_t)(b & ~(v & fn->w1cmask[at]));
	}
	if (!len)
		return;
	if (fn->bus && (ranges_overlap(offset, len, PCI_COMMAND, 2) ||
			ranges_overlap(offset, len, PCI_BAR0, 4 * PCI_NUM_BARS)))
		update_bars(fn);
	if (fn->ops && fn->ops->config_changed)
		fn->ops->config_changed(fn->opaque, fn, offset, len);
}

void pci_function_reset(struct pci_function *fn)
{
	memcpy(fn->config, fn->power_on, PCI_CONFIG_SIZE);
	if (fn->bus)
		update_bars(fn);
	if (fn->ops && fn->ops->config_changed)
		fn->ops->config_changed(fn->opaque, fn, 0, PCI_CONFIG_SIZE);
}

/* ---- the host ---- */

static struct pci_function *addressed_function(struct pci_host *host, unsigned *reg)
{
	uint32_t a = host->address;
	if (!(a & CONFIG_ENABLE) || (a >> 16 & 0xFF) != 0) /* bus 0 only */
		return NULL;
	*reg = a & 0xFC;
	return host->functions[a >> 8 & 0xFF];
}

static unsigned ones(unsigned size)
{
	return size >= 4 ? 0xFFFFFFFFu : (1u << (8 * size)) - 1;
}

/* 0xCF8-0xCFB: the dword at 0xCF8 is the address register; byte 0xCF9 is reset control. */
static uint64_t address_read(void *opaque, uint64_t offset, unsigned size)
{
	struct pci_host *host = opaque;
	if (offset == 1 && size == 1 && host->port_cf9_ops)
		return host->port_cf9_ops->read(host->port_cf9_opaque, 0, 1);
	if (offset != 0 || size != 4)
		return ones(size);
	pthread_mutex_lock(&host->lock);
	uint32_t v = host->address;
	pthread_mutex_unlock(&host->lock);
	return v;
}

static void address_write(void *opaque, uint64_t offset, unsigned size, uint64_t value)
{
	struct pci_host *host = opaque;
	if (offset == 1 && size == 1 && host->port_cf9_ops) {
		host->port_cf9_ops->write(host->port_cf9_opaque, 0, 1, value);
		return;
	}
	if (offset != 0 || size != 4)
		return;
	pthread_mutex_lock(&host->lock);
	host->address = (uint32_t)value & ADDRESS_MASK;
	pthread_mutex_unlock(&host->lock);
}

static uint64_t data_read(void *opaque, uint64_t offset, unsigned size)
{
	struct pci_host *host = opaque;
	uint32_t v = ones(size);
	unsigned reg = 0;
	pthread_mutex_lock(&host->lock);
	struct pci_function *fn = addressed_function(host, &reg);
	if (fn && offset < 4)
		v = pci_function_read(fn, reg + (unsigned)offset,
				      (unsigned)min_u64(size, 4 - offset));
	pthread_mutex_unlock(&host->lock);
	return v;
}

static void data_write(void *opaque, uint64_t offset, unsigned size, uint64_t value)
{
	struct pci_host *host = opaque;
	unsigned reg = 0;
	pthread_mutex_lock(&host->lock);
	struct pci_function *fn = addressed_function(host, &reg);
	if (fn && offset < 4)
		pci_function_write(fn, reg + (unsigned)offset, (unsigned)min_u64(size, 4 - offset),
				   (uint32_t)value);
	pthread_mutex_unlock(&host->lock);
}

static const struct dev_ops address_ops = { address_read, address_write };
static const struct dev_ops data_ops = { data_read, data_write };

int pci_host_init(struct pci_host *host, struct dev_bus *bus, const struct dev_ops *cf9_ops,
		  void *cf9_opaque)
{
	memset(host, 0, sizeof(*host));
	host->bus = bus;
	host->port_cf9_ops = cf9_ops;
	host->port_cf9_opaque = cf9_opaque;
	pthread_mutex_init(&host->lock, NULL);
	int ret = dev_bus_register(bus, DEV_PIO, GEN1_PCI_CONFIG_ADDR, 4, &address_ops, host,
				   "pci-address");
	if (ret == 0)
		ret = dev_bus_register(bus, DEV_PIO, GEN1_PCI_CONFIG_DATA, 4, &data_ops, host,
				       "pci-data");
	if (ret < 0)
		pthread_mutex_destroy(&host->lock);
	return ret;
}

void pci_host_destroy(struct pci_host *host)
{
	pthread_mutex_destroy(&host->lock);
}

/* Takes over a range already registered for the BAR's (ops, opaque), or registers one;
 * either way it starts parked. */
static int attach_bar(struct pci_function *fn, unsigned bar)
{
	struct pci_bar *b = &fn->bars[bar];
	b->base = pci_parked_base(fn->devfn, bar);
	b->decoded = false;
	int ret = dev_bus_move(fn->bus, b->space, b->ops, b->opaque, b->base);
	if (ret == -ENOENT)
		ret = dev_bus_register(fn->bus, b->space, b->base, b->size, b->ops, b->opaque,
				       b->name);
	return ret;
}

int pci_host_add(struct pci_host *host, unsigned devfn, struct pci_function *fn)
{
	if (devfn >= PCI_MAX_DEVFN || fn->bus)
		return -EINVAL;
	pthread_mutex_lock(&host->lock);
	int ret = host->functions[devfn] ? -EBUSY : 0;
	if (ret == 0) {
		fn->bus = host->bus;
		fn->devfn = devfn;
		for (unsigned i = 0; i < PCI_NUM_BARS && ret == 0; i++)
			if (fn->bars[i].size)
				ret = attach_bar(fn, i);
		if (ret == 0)
			host->functions[devfn] = fn;
		else
			fn->bus = NULL;
	}
	pthread_mutex_unlock(&host->lock);
	return ret;
}

void pci_host_reset(struct pci_host *host)
{
	pthread_mutex_lock(&host->lock);
	host->address = 0;
	for (unsigned i = 0; i < PCI_MAX_DEVFN; i++)
		if (host->functions[i])
			pci_function_reset(host->functions[i]);
	pthread_mutex_unlock(&host->lock);
}
