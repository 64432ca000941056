/* UTF-16LE <-> UTF-8 for the names and paths that VHD and VHDX store. */
#ifndef HV_STORAGE_UTF16_H
#define HV_STORAGE_UTF16_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

/* Decodes at most in_bytes of UTF-16LE (stopping early at a NUL code unit) into UTF-8
 * with a terminating NUL. Returns the UTF-8 length without the NUL, -EINVAL for an
 * unpaired surrogate or an odd byte count, -ENOSPC when out is too small. */
ssize_t utf16le_to_utf8(const uint8_t *in, size_t in_bytes, char *out, size_t out_size);

/* Encodes NUL-terminated UTF-8 as UTF-16LE without a terminator. Returns the number of
 * bytes written, -EINVAL for malformed UTF-8 (overlong forms, surrogates, > U+10FFFF,
 * truncated sequences), -ENOSPC when out is too small. */
ssize_t utf8_to_utf16le(const char *in, uint8_t *out, size_t out_size);

#endif
