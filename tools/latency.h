/* Latency histogram with log-linear buckets (64 per power of two, ~1.6% resolution), so
 * percentiles need no stored samples and threads merge by adding counts. */
#ifndef HV_TOOLS_LATENCY_H
#define HV_TOOLS_LATENCY_H

#include <stdint.h>

#define LATENCY_BUCKETS (59 * 64) /* bucket_of(UINT64_MAX) == 59 * 64 - 1 */

struct latency {
	uint64_t count;
	uint64_t sum_ns;
	uint64_t min_ns;
	uint64_t max_ns;
	uint64_t buckets[LATENCY_BUCKETS];
};

void latency_init(struct latency *l);
void latency_add(struct latency *l, uint64_t ns);
void latency_merge(struct latency *into, const struct latency *from);
/* The value below which a fraction p (0..1) of the samples fall; 0 when empty. */
uint64_t latency_percentile(const struct latency *l, double p);
double latency_mean(const struct latency *l);

#endif
