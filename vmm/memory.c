/* Guest memory: RAM (with the PCI hole below 4 GiB and the legacy video window at 640 KiB),
 * the firmware ROM ending at 4 GiB, and the PAM-controlled shadow area 0xC0000-0xFFFFF.
 *
 * Each 16 KiB PAM granule is always backed by a KVM slot: the RAM behind it (read-only when
 * writes are off) or the "ROM view" (a host buffer holding the firmware's last 128 KiB at
 * 0xE0000-0xFFFFF and all ones below). Writes to read-only slots come back as MMIO exits and
 * are stored into RAM or dropped here. Changing a granule deletes and re-adds its slot;
 * accesses in between also exit and are emulated from the same state.
 */
#include "vm_internal.h"

#include <errno.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>

#include "arith.h"
#include "errmsg.h"
#include "gen1_layout.h"

#define PAGE_SIZE     4096ull
#define HUGEPAGE_SIZE (2ull << 20)
#define FOUR_GIB      0x100000000ull
#define ROM_VIEW_SIZE (PAM_END - PAM_BASE)

static void *map_anonymous(size_t size, bool hugepages)
{
	/* huge pages are reserved at mmap time, so a shortage fails here and not on first use */
	int flags = MAP_PRIVATE | MAP_ANONYMOUS | (hugepages ? MAP_HUGETLB : MAP_NORESERVE);
	void *p = mmap(NULL, size, PROT_READ | PROT_WRITE, flags, -1, 0);
	if (p == MAP_FAILED)
		return NULL;
	/* Without --hugepages, transparent huge pages where the host offers them: fewer TLB
	 * misses, and a guest's DMA buffer is then one contiguous segment for the disk (a
	 * 1 MiB buffer of 4 KiB pages is 256 segments, more than a virtio disk takes). */
	if (!hugepages)
		madvise(p, size, MADV_HUGEPAGE);
	return p;
}

static int check_config(const struct vm_config *cfg, char *err, size_t err_size)
{
	if (cfg->ram_bytes < VM_MIN_RAM || cfg->ram_bytes % PAGE_SIZE)
		return vdisk_errorf(
			err, err_size, -EINVAL,
			"RAM size %llu: must be a multiple of 4 KiB and at least %u MiB",
			(unsigned long long)cfg->ram_bytes, VM_MIN_RAM >> 20);
	if (!cfg->firmware || !cfg->firmware_size || cfg->firmware_size > VM_MAX_FIRMWARE)
		return vdisk_errorf(err, err_size, -EINVAL,
				    "firmware image of %zu bytes: must be 1 byte to %u MiB",
				    cfg->firmware_size, VM_MAX_FIRMWARE >> 20);
	return 0;
}

/* The firmware copy KVM maps ending at 4 GiB (padded at the front with all ones to whole
 * pages), and the view of the shadow area that PAM "ROM" modes show. */
static int map_firmware(struct vm *vm, char *err, size_t err_size)
{
	const struct vm_config *cfg = &vm->cfg;
	vm->fw_map_size = round_up(cfg->firmware_size, PAGE_SIZE);
	vm->fw = map_anonymous(vm->fw_map_size, false);
	vm->rom_view = map_anonymous(ROM_VIEW_SIZE, false);
	if (!vm->fw || !vm->rom_view)
		return vdisk_errorf(err, err_size, -ENOMEM, "cannot map %zu bytes for the firmware",
				    vm->fw_map_size);
	size_t pad = vm->fw_map_size - cfg->firmware_size;
	memset(vm->fw, 0xFF, pad);
	memcpy(vm->fw + pad, cfg->firmware, cfg->firmware_size);
	memset(vm->rom_view, 0xFF, ROM_VIEW_SIZE);
	size_t alias = min_u64(cfg->firmware_size, GEN1_BIOS_LOW_SIZE);
	memcpy(vm->rom_view + ROM_VIEW_SIZE - alias,
	       (const uint8_t *)cfg->firmware + cfg->firmware_size - alias, alias);
	return 0;
}

static int map_ram(struct vm *vm, char *err, size_t err_size)
{
	const struct vm_config *cfg = &vm->cfg;
	vm->low_ram = min_u64(cfg->ram_bytes, GEN1_PCI_HOLE_START);
	vm->high_ram = cfg->ram_bytes - vm->low_ram;
	vm->ram_map_size =
		cfg->hugepages ? round_up(cfg->ram_bytes, HUGEPAGE_SIZE) : cfg->ram_bytes;
	vm->ram = map_anonymous(vm->ram_map_size, cfg->hugepages);
	if (!vm->ram && cfg->hugepages)
		return vdisk_errorf(err, err_size, -ENOMEM,
				    "cannot map %zu MiB of 2 MiB huge pages for guest RAM: reserve "
				    "them in /proc/sys/vm/nr_hugepages or run without huge pages",
				    vm->ram_map_size >> 20);
	if (!vm->ram)
		return vdisk_errorf(err, err_size, -ENOMEM, "cannot map %zu MiB of guest RAM",
				    vm->ram_map_size >> 20);
	/* Devices may DMA into the shadow area (SeaBIOS loads fw_cfg files there while it is
	 * writable): it is RAM for them whatever the PAM says. */
	struct guest_mem *m = &vm->mem;
	int ret = guest_mem_add(m, 0, LOW_RAM_END, vm->ram);
	if (!ret)
		ret = guest_mem_add(m, PAM_BASE, vm->low_ram - PAM_BASE, vm->ram + PAM_BASE);
	if (!ret && vm->high_ram)
		ret = guest_mem_add(m, GEN1_HIGH_RAM_START, vm->high_ram, vm->ram + vm->low_ram);
	return ret;
}

int memory_create(struct vm *vm, char *err, size_t err_size)
{
	int ret = check_config(&vm->cfg, err, err_size);
	if (!ret)
		ret = map_firmware(vm, err, err_size);
	if (!ret)
		ret = map_ram(vm, err, err_size);
	return ret;
}

void memory_destroy(struct vm *vm)
{
	if (vm->ram)
		munmap(vm->ram, vm->ram_map_size);
	if (vm->fw)
		munmap(vm->fw, vm->fw_map_size);
	if (vm->rom_view)
		munmap(vm->rom_view, ROM_VIEW_SIZE);
}

static int set_slot(struct vm *vm, unsigned slot, uint64_t gpa, uint64_t size, void *host,
		    bool readonly)
{
	struct kvm_userspace_memory_region r = {
		.slot = slot,
		.flags = readonly ? KVM_MEM_READONLY : 0,
		.guest_phys_addr = gpa,
		.memory_size = size,
		.userspace_addr = (uintptr_t)host,
	};
	return ioctl(vm->vm_fd, KVM_SET_USER_MEMORY_REGION, &r) < 0 ? -errno : 0;
}

static int install_granule(struct vm *vm, unsigned g)
{
	uint64_t gpa = PAM_BASE + g * PAM_GRANULE;
	unsigned mode = vm->pam_mode[g];
	if (mode & 1)
		return set_slot(vm, SLOT_PAM_FIRST + g, gpa, PAM_GRANULE, vm->ram + gpa,
				!(mode & 2));
	return set_slot(vm, SLOT_PAM_FIRST + g, gpa, PAM_GRANULE, vm->rom_view + (gpa - PAM_BASE),
			true);
}

int memory_install_slots(struct vm *vm)
{
	int ret = set_slot(vm, SLOT_LOW_RAM, 0, LOW_RAM_END, vm->ram, false);
	if (!ret)
		ret = set_slot(vm, SLOT_MID_RAM, PAM_END, vm->low_ram - PAM_END, vm->ram + PAM_END,
			       false);
	if (!ret && vm->high_ram)
		ret = set_slot(vm, SLOT_HIGH_RAM, GEN1_HIGH_RAM_START, vm->high_ram,
			       vm->ram + vm->low_ram, false);
	if (!ret)
		ret = set_slot(vm, SLOT_FIRMWARE, FOUR_GIB - vm->fw_map_size, vm->fw_map_size,
			       vm->fw, true);
	pthread_mutex_lock(&vm->pam_lock);
	for (unsigned g = 0; g < PAM_GRANULES && !ret; g++)
		ret = install_granule(vm, g);
	pthread_mutex_unlock(&vm->pam_lock);
	return ret;
}

void memory_reset_pam(struct vm *vm)
{
	pthread_mutex_lock(&vm->pam_lock);
	memset(vm->pam_mode, 0, sizeof(vm->pam_mode));
	pthread_mutex_unlock(&vm->pam_lock);
}

void vm_set_pam(struct vm *vm, uint64_t base, uint64_t len, unsigned mode)
{
	if (base < PAM_BASE || len > PAM_END - base || base + len > PAM_END)
		return;
	mode &= 3;
	pthread_rwlock_rdlock(&vm->vm_fd_lock);
	pthread_mutex_lock(&vm->pam_lock);
	unsigned first = (unsigned)((base - PAM_BASE) / PAM_GRANULE);
	uint64_t end = base + len;
	for (unsigned g = first; g < PAM_GRANULES && PAM_BASE + g * PAM_GRANULE < end; g++) {
		if (vm->pam_mode[g] == mode)
			continue;
		vm->pam_mode[g] = mode;
		/* KVM cannot change a slot's flags in place: delete, then add. */
		int ret = set_slot(vm, SLOT_PAM_FIRST + g, 0, 0, NULL, false);
		if (!ret)
			ret = install_granule(vm, g);
		if (ret)
			vm_stop_error(vm, "cannot remap PAM granule 0x%llx: %s",
				      (unsigned long long)(PAM_BASE + g * PAM_GRANULE),
				      strerror(-ret));
	}
	pthread_mutex_unlock(&vm->pam_lock);
	pthread_rwlock_unlock(&vm->vm_fd_lock);
}

static void pam_access(struct vm *vm, uint64_t gpa, uint8_t *data, unsigned len, bool write)
{
	pthread_mutex_lock(&vm->pam_lock);
	for (unsigned i = 0; i < len && gpa + i < PAM_END; i++) {
		uint64_t a = gpa + i;
		unsigned mode = vm->pam_mode[(a - PAM_BASE) / PAM_GRANULE];
		if (write && (mode & 2))
			vm->ram[a] = data[i];
		else if (!write)
			data[i] = (mode & 1) ? vm->ram[a] : vm->rom_view[a - PAM_BASE];
	}
	pthread_mutex_unlock(&vm->pam_lock);
}

bool memory_handle_mmio(struct vm *vm, uint64_t gpa, uint8_t *data, unsigned len, bool write)
{
	if (gpa >= PAM_BASE && gpa < PAM_END) {
		pam_access(vm, gpa, data, len, write);
		return true;
	}
	uint64_t fw_base = FOUR_GIB - vm->fw_map_size;
	if (gpa >= fw_base && gpa < FOUR_GIB) {
		if (!write) /* only while KVM has no slot there, which never happens */
			for (unsigned i = 0; i < len; i++)
				data[i] = gpa + i < FOUR_GIB ? vm->fw[gpa + i - fw_base] : 0xFF;
		return true; /* writes to the ROM are dropped */
	}
	return false;
}
