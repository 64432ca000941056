/* UTF-16LE <-> UTF-8 conversion with strict validation on both sides. */
#include "utf16.h"

#include <errno.h>
#include <stdbool.h>

#include "endian.h"

#define SURROGATE_HIGH_FIRST 0xD800u
#define SURROGATE_LOW_FIRST  0xDC00u
#define SURROGATE_LAST	     0xDFFFu

static bool is_high_surrogate(uint32_t u)
{
	return u >= SURROGATE_HIGH_FIRST && u < SURROGATE_LOW_FIRST;
}

static bool is_low_surrogate(uint32_t u)
{
	return u >= SURROGATE_LOW_FIRST && u <= SURROGATE_LAST;
}

static size_t utf8_len(uint32_t cp)
{
	if (cp < 0x80)
		return 1;
	if (cp < 0x800)
		return 2;
	if (cp < 0x10000)
		return 3;
	return 4;
}

static void put_utf8(char *out, uint32_t cp, size_t len)
{
	static const uint8_t lead[5] = { 0, 0x00, 0xC0, 0xE0, 0xF0 };

	for (size_t i = len - 1; i > 0; i--) {
		out[i] = (char)(0x80 | (cp & 0x3F));
		cp >>= 6;
	}
	out[0] = (char)(lead[len] | cp);
}

/* Reads the code point starting at unit i of n, advancing i. Returns it or -EINVAL. */
static int32_t next_utf16(const uint8_t *in, size_t n, size_t *i)
{
	uint32_t u = load_le16(in + 2 * *i);

	(*i)++;
	if (is_low_surrogate(u))
		return -EINVAL;
	if (!is_high_surrogate(u))
		return (int32_t)u;
	if (*i >= n)
		return -EINVAL;
	uint32_t lo = load_le16(in + 2 * *i);

	if (!is_low_surrogate(lo))
		return -EINVAL;
	(*i)++;
	return (int32_t)(0x10000 + ((u - SURROGATE_HIGH_FIRST) << 10) + (lo - SURROGATE_LOW_FIRST));
}

static ssize_t decode_utf16(const uint8_t *in, size_t in_bytes, char *out, size_t out_size)
{
	size_t n = in_bytes / 2;
	size_t used = 0;

	if (in_bytes % 2)
		return -EINVAL;
	for (size_t i = 0; i < n;) {
		if (load_le16(in + 2 * i) == 0)
			break;
		int32_t cp = next_utf16(in, n, &i);

		if (cp < 0)
			return cp;
		size_t len = utf8_len((uint32_t)cp);

		if (out_size - used < len + 1)
			return -ENOSPC;
		put_utf8(out + used, (uint32_t)cp, len);
		used += len;
	}
	if (out_size - used < 1)
		return -ENOSPC;
	out[used] = '\0';
	return (ssize_t)used;
}

ssize_t utf16le_to_utf8(const uint8_t *in, size_t in_bytes, char *out, size_t out_size)
{
	ssize_t ret = decode_utf16(in, in_bytes, out, out_size);

	if (ret < 0 && out_size)
		out[0] = '\0';
	return ret;
}

/* Bounds for the first continuation byte, which rule out overlong forms, surrogates
 * (ED A0..BF) and values above U+10FFFF (F4 90.. and up). */
static bool first_cont_ok(uint8_t lead, uint8_t c)
{
	switch (lead) {
	case 0xE0:
		return c >= 0xA0 && c <= 0xBF;
	case 0xED:
		return c >= 0x80 && c <= 0x9F;
	case 0xF0:
		return c >= 0x90 && c <= 0xBF;
	case 0xF4:
		return c >= 0x80 && c <= 0x8F;
	default:
		return c >= 0x80 && c <= 0xBF;
	}
}

/* Decodes one code point at *s, advancing *s. Returns it or -EINVAL. */
static int32_t next_utf8(const uint8_t **s)
{
	const uint8_t *p = *s;
	uint8_t lead = p[0];
	size_t len;
	uint32_t cp;

	if (lead < 0x80) {
		*s = p + 1;
		return lead;
	}
	if (lead >= 0xC2 && lead <= 0xDF) {
		len = 2;
		cp = lead & 0x1F;
	} else if (lead >= 0xE0 && lead <= 0xEF) {
		len = 3;
		cp = lead & 0x0F;
	} else if (lead >= 0xF0 && lead <= 0xF4) {
		len = 4;
		cp = lead & 0x07;
	} else {
		return -EINVAL; /* stray continuation, C0/C1 overlong lead, or F5..FF */
	}
	if (!first_cont_ok(lead, p[1]))
		return -EINVAL;
	/* A NUL terminator fails the continuation test, so nothing is read past it. */
	for (size_t i = 1; i < len; i++) {
		if ((p[i] & 0xC0) != 0x80)
			return -EINVAL;
		cp = cp << 6 | (p[i] & 0x3F);
	}
	*s = p + len;
	return (int32_t)cp;
}

static void put_utf16(uint8_t *out, uint32_t cp)
{
	if (cp < 0x10000) {
		store_le16(out, (uint16_t)cp);
		return;
	}
	cp -= 0x10000;
	store_le16(out, (uint16_t)(SURROGATE_HIGH_FIRST + (cp >> 10)));
	store_le16(out + 2, (uint16_t)(SURROGATE_LOW_FIRST + (cp & 0x3FF)));
}

ssize_t utf8_to_utf16le(const char *in, uint8_t *out, size_t out_size)
{
	const uint8_t *s = (const uint8_t *)in;
	size_t used = 0;

	while (*s) {
		int32_t cp = next_utf8(&s);

		if (cp < 0)
			return cp;
		size_t len = cp < 0x10000 ? 2 : 4;

		if (out_size - used < len)
			return -ENOSPC;
		put_utf16(out + used, (uint32_t)cp);
		used += len;
	}
	return (ssize_t)used;
}
