#include "dev.h"

#include <errno.h>
#include <string.h>

/* ---- guest memory ---- */

int guest_mem_add(struct guest_mem *mem, uint64_t gpa, uint64_t size, void *host)
{
	if (!size || gpa + size < gpa || !host)
		return -EINVAL;
	if (mem->nregions == GUEST_MEM_MAX_REGIONS)
		return -ENOSPC;
	if (mem->nregions) {
		const struct guest_mem_region *last = &mem->regions[mem->nregions - 1];
		if (gpa < last->gpa + last->size)
			return -EINVAL;
	}
	mem->regions[mem->nregions++] = (struct guest_mem_region){ gpa, size, host };
	return 0;
}

static const struct guest_mem_region *region_of(const struct guest_mem *mem, uint64_t gpa)
{
	for (unsigned i = 0; i < mem->nregions; i++) {
		const struct guest_mem_region *r = &mem->regions[i];
		if (gpa >= r->gpa && gpa - r->gpa < r->size)
			return r;
	}
	return NULL;
}

int guest_mem_iov(const struct guest_mem *mem, uint64_t gpa, uint64_t len, struct iovec *iov,
		  int max, int *count)
{
	int n = *count;
	size_t last_len = n > 0 ? iov[n - 1].iov_len : 0; /* restored on error */
	int ret = gpa + len < gpa ? -EFAULT : 0;
	while (len && ret == 0) {
		const struct guest_mem_region *r = region_of(mem, gpa);
		if (!r) {
			ret = -EFAULT;
			break;
		}
		uint64_t in = r->size - (gpa - r->gpa);
		uint64_t take = len < in ? len : in;
		uint8_t *host = r->host + (gpa - r->gpa);
		if (n > 0 && (uint8_t *)iov[n - 1].iov_base + iov[n - 1].iov_len == host) {
			iov[n - 1].iov_len += take;
		} else if (n < max) {
			iov[n++] = (struct iovec){ host, take };
		} else {
			ret = -E2BIG;
			break;
		}
		gpa += take;
		len -= take;
	}
	if (ret < 0) {
		if (*count > 0)
			iov[*count - 1].iov_len = last_len;
		return ret;
	}
	*count = n;
	return 0;
}

/* Walks the regions of [gpa, gpa + len), checking all of it before touching any. */
static int copy(const struct guest_mem *mem, uint64_t gpa, void *buf, size_t len, bool to_guest)
{
	enum { PIECES = 16 };
	struct iovec iov[PIECES];
	int n = 0;
	int ret = guest_mem_iov(mem, gpa, len, iov, PIECES, &n);
	if (ret < 0)
		return ret == -E2BIG ? -EFAULT : ret;
	uint8_t *p = buf;
	for (int i = 0; i < n; i++) {
		if (to_guest)
			memcpy(iov[i].iov_base, p, iov[i].iov_len);
		else
			memcpy(p, iov[i].iov_base, iov[i].iov_len);
		p += iov[i].iov_len;
	}
	return 0;
}

int guest_mem_read(const struct guest_mem *mem, uint64_t gpa, void *buf, size_t len)
{
	return copy(mem, gpa, buf, len, false);
}

int guest_mem_write(const struct guest_mem *mem, uint64_t gpa, const void *buf, size_t len)
{
	return copy(mem, gpa, (void *)buf, len, true);
}

/* ---- dispatch ---- */

void dev_bus_init(struct dev_bus *bus)
{
	memset(bus, 0, sizeof(*bus));
	pthread_rwlock_init(&bus->lock, NULL);
}

void dev_bus_destroy(struct dev_bus *bus)
{
	pthread_rwlock_destroy(&bus->lock);
}

static bool overlaps(const struct dev_bus *bus, enum dev_space space, uint64_t base, uint64_t len,
		     const struct dev_range *except)
{
	for (unsigned i = 0; i < bus->nranges; i++) {
		const struct dev_range *r = &bus->ranges[i];
		if (r != except && r->space == space && base < r->base + r->len &&
		    r->base < base + len)
			return true;
	}
	return false;
}

int dev_bus_register(struct dev_bus *bus, enum dev_space space, uint64_t base, uint64_t len,
		     const struct dev_ops *ops, void *opaque, const char *name)
{
	if (!len || base + len < base || !ops)
		return -EINVAL;
	pthread_rwlock_wrlock(&bus->lock);
	int ret = 0;
	if (bus->nranges == DEV_BUS_MAX_RANGES)
		ret = -ENOSPC;
	else if (overlaps(bus, space, base, len, NULL))
		ret = -EEXIST;
	else
		bus->ranges[bus->nranges++] =
			(struct dev_range){ space, base, len, ops, opaque, name };
	pthread_rwlock_unlock(&bus->lock);
	return ret;
}

int dev_bus_move(struct dev_bus *bus, enum dev_space space, const struct dev_ops *ops, void *opaque,
		 uint64_t new_base)
{
	pthread_rwlock_wrlock(&bus->lock);
	int ret = -ENOENT;
	for (unsigned i = 0; i < bus->nranges; i++) {
		struct dev_range *r = &bus->ranges[i];
		if (r->space != space || r->ops != ops || r->opaque != opaque)
			continue;
		if (new_base + r->len < new_base)
			ret = -EINVAL;
		else if (overlaps(bus, space, new_base, r->len, r))
			ret = -EEXIST;
		else {
			r->base = new_base;
			ret = 0;
		}
		break;
	}
	pthread_rwlock_unlock(&bus->lock);
	return ret;
}

/* Copies the range holding the whole access (so the handler runs without the lock). */
static bool find(struct dev_bus *bus, enum dev_space space, uint64_t addr, unsigned size,
		 struct dev_range *out)
{
	bool found = false;
	pthread_rwlock_rdlock(&bus->lock);
	for (unsigned i = 0; i < bus->nranges && !found; i++) {
		const struct dev_range *r = &bus->ranges[i];
		if (r->space == space && addr >= r->base && addr - r->base < r->len &&
		    size <= r->len - (addr - r->base)) {
			*out = *r;
			found = true;
		}
	}
	if (!found)
		__atomic_add_fetch(&bus->unhandled, 1, __ATOMIC_RELAXED);
	pthread_rwlock_unlock(&bus->lock);
	return found;
}

uint64_t dev_bus_read(struct dev_bus *bus, enum dev_space space, uint64_t addr, unsigned size)
{
	struct dev_range r;
	uint64_t ones = size >= 8 ? UINT64_MAX : (UINT64_C(1) << (size * 8)) - 1;
	if (!find(bus, space, addr, size, &r) || !r.ops->read)
		return ones;
	return r.ops->read(r.opaque, addr - r.base, size) & ones;
}

void dev_bus_write(struct dev_bus *bus, enum dev_space space, uint64_t addr, unsigned size,
		   uint64_t value)
{
	struct dev_range r;
	if (find(bus, space, addr, size, &r) && r.ops->write)
		r.ops->write(r.opaque, addr - r.base, size, value);
}
