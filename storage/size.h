/* Human sizes: "10G", "512", "1.5T", "4096B" and back. */
#ifndef HV_STORAGE_SIZE_H
#define HV_STORAGE_SIZE_H

#include <stddef.h>
#include <stdint.h>

/* Parses a byte count with an optional binary suffix (K, M, G, T, P, E, optionally
 * followed by "iB" or "B", any case; "B" alone means bytes). Fractions are allowed with a
 * suffix when the result is a whole number of bytes. Returns 0, -EINVAL for malformed
 * text, -ERANGE when the value does not fit in 64 bits. */
int size_parse(const char *text, uint64_t *out);

/* "10 GiB", "1.5 MiB", "512 B": at most 3 significant decimals, into out. */
void size_format(uint64_t bytes, char *out, size_t out_size);

#endif
