/* Integer helpers every format and tool needs for sizes and offsets. */
#ifndef HV_STORAGE_ARITH_H
#define HV_STORAGE_ARITH_H

#include <stdbool.h>
#include <stdint.h>

static inline uint64_t min_u64(uint64_t a, uint64_t b)
{
	return a < b ? a : b;
}

static inline uint64_t max_u64(uint64_t a, uint64_t b)
{
	return a > b ? a : b;
}

/* v rounded up to a multiple of align (align > 0; the caller keeps v far from overflow). */
static inline uint64_t round_up(uint64_t v, uint64_t align)
{
	return (v + align - 1) / align * align;
}

/* v / d rounded up, without overflow. */
static inline uint64_t div_round_up(uint64_t v, uint64_t d)
{
	return v / d + (v % d != 0);
}

static inline bool is_power_of_two(uint64_t v)
{
	return v && !(v & (v - 1));
}

/* Whether [a, a + alen) and [b, b + blen) share a byte; empty ranges share none. */
static inline bool ranges_overlap(uint64_t a, uint64_t alen, uint64_t b, uint64_t blen)
{
	return alen && blen && a < b + blen && b < a + alen;
}

#endif
