#include "latency.h"

#include <string.h>

void latency_init(struct latency *l)
{
	memset(l, 0, sizeof(*l));
	l->min_ns = UINT64_MAX;
}

/* Values below 128 have a bucket each; above, 64 buckets per power of two. */
static unsigned bucket_of(uint64_t v)
{
	if (v < 128)
		return (unsigned)v;
	unsigned msb = 63 - (unsigned)__builtin_clzll(v);
	return (msb - 6) * 64 + (unsigned)(v >> (msb - 6));
}

/* The middle of a bucket's range. */
static uint64_t bucket_value(unsigned idx)
{
	if (idx < 128)
		return idx;
	unsigned msb = idx / 64 + 5;
	uint64_t low = (uint64_t)(idx % 64 + 64) << (msb - 6);
	return low + ((1ULL << (msb - 6)) >> 1);
}

void latency_add(struct latency *l, uint64_t ns)
{
	l->count++;
	l->sum_ns += ns;
	if (ns < l->min_ns)
		l->min_ns = ns;
	if (ns > l->max_ns)
		l->max_ns = ns;
	l->buckets[bucket_of(ns)]++;
}

void latency_merge(struct latency *into, const struct latency *from)
{
	into->count += from->count;
	into->sum_ns += from->sum_ns;
	if (from->min_ns < into->min_ns)
		into->min_ns = from->min_ns;
	if (from->max_ns > into->max_ns)
		into->max_ns = from->max_ns;
	for (unsigned i = 0; i < LATENCY_BUCKETS; i++)
		into->buckets[i] += from->buckets[i];
}

uint64_t latency_percentile(const struct latency *l, double p)
{
	if (!l->count)
		return 0;
	uint64_t rank = (uint64_t)(p * (double)l->count + 0.5);
	if (rank < 1)
		rank = 1;
	uint64_t seen = 0;
	for (unsigned i = 0; i < LATENCY_BUCKETS; i++) {
		seen += l->buckets[i];
		if (seen >= rank) {
			uint64_t v = bucket_value(i);
			return v < l->min_ns ? l->min_ns : v > l->max_ns ? l->max_ns : v;
		}
	}
	return l->max_ns;
}

double latency_mean(const struct latency *l)
{
	return l->count ? (double)l->sum_ns / (double)l->count : 0;
}
