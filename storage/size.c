#include "size.h"

#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

static int suffix_shift(const char *s, unsigned *shift)
{
	static const char units[] = "KMGTPE";
	if (!*s || !strcasecmp(s, "B")) {
		*shift = 0;
		return 0;
	}
	const char *u = strchr(units, toupper((unsigned char)*s));
	if (!u)
		return -EINVAL;
	const char *rest = s + 1;
	if (*rest && strcasecmp(rest, "B") && strcasecmp(rest, "iB"))
		return -EINVAL;
	*shift = 10 * (unsigned)(u - units + 1);
	return 0;
}

int size_parse(const char *text, uint64_t *out)
{
	const char *p = text;
	if (!p || !isdigit((unsigned char)*p))
		return -EINVAL;
	uint64_t whole = 0;
	for (; isdigit((unsigned char)*p); p++) {
		unsigned d = (unsigned)(*p - '0');
		if (whole > (UINT64_MAX - d) / 10)
			return -ERANGE;
		whole = whole * 10 + d;
	}
	/* Fraction: kept as numerator/denominator, at most 18 digits. */
	uint64_t frac = 0, denom = 1;
	if (*p == '.') {
		p++;
		if (!isdigit((unsigned char)*p))
			return -EINVAL;
		for (; isdigit((unsigned char)*p); p++) {
			if (denom >= 1000000000000000000ULL)
				return -EINVAL;
			frac = frac * 10 + (uint64_t)(*p - '0');
			denom *= 10;
		}
	}
	unsigned shift;
	if (suffix_shift(p, &shift) < 0)
		return -EINVAL;
	if (shift && whole > (UINT64_MAX >> shift))
		return -ERANGE;
	uint64_t value = whole << shift;
	if (frac) {
		/* frac/denom of 2^shift must be a whole number of bytes */
		unsigned __int128 part = ((unsigned __int128)frac << shift);
		if (part % denom)
			return -EINVAL;
		uint64_t add = (uint64_t)(part / denom);
		if (value > UINT64_MAX - add)
			return -ERANGE;
		value += add;
	}
	*out = value;
	return 0;
}

void size_format(uint64_t bytes, char *out, size_t out_size)
{
	static const char *const units[] = {"B", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB"};
	unsigned u = 0;
	double v = (double)bytes;
	while (v >= 1024 && u < 6) {
		v /= 1024;
		u++;
	}
	if (u == 0)
		snprintf(out, out_size, "%llu B", (unsigned long long)bytes);
	else if (bytes % (1ULL << (10 * u)) == 0)
		snprintf(out, out_size, "%llu %s", (unsigned long long)(bytes >> (10 * u)),
			 units[u]);
	else if (v >= 999.5) /* %.3g would print "1e+03" */
		snprintf(out, out_size, "%.0f %s", v, units[u]);
	else
		snprintf(out, out_size, "%.3g %s", v, units[u]);
}
