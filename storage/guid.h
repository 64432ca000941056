/* GUIDs as Microsoft formats store them: the first three fields little-endian, the last
 * eight bytes as they are. struct guid holds the on-disk bytes, so it can be copied from
 * and to an image directly. */
#ifndef HV_STORAGE_GUID_H
#define HV_STORAGE_GUID_H

#include <stdbool.h>
#include <stdint.h>

#define GUID_STR_LEN 36 /* xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx */

struct guid {
	uint8_t bytes[16];
};

/* A random (version 4, RFC 4122 variant) GUID. Returns 0 or -errno. */
int guid_generate(struct guid *g);
/* Parses "xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx", optionally in braces, any hex case.
 * Returns 0 or -EINVAL. */
int guid_parse(const char *str, struct guid *g);
/* Writes the canonical lower-case form and a NUL: out needs GUID_STR_LEN + 1 bytes. */
void guid_format(const struct guid *g, char *out);
bool guid_equal(const struct guid *a, const struct guid *b);
bool guid_is_zero(const struct guid *g);

#endif
