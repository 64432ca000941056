/* GUIDs in Microsoft's on-disk byte order: data1 (u32), data2 (u16) and data3 (u16)
 * little-endian, then data4 (8 bytes) as written in the string. */
#include "guid.h"

#include <errno.h>
#include <string.h>
#include <sys/random.h>

/* The string shows the 16 bytes in text order; this maps text position to on-disk byte. */
static const uint8_t disk_index[16] = { 3, 2, 1, 0, 5, 4, 7, 6, 8, 9, 10, 11, 12, 13, 14, 15 };

static bool is_dash_pos(size_t i)
{
	return i == 8 || i == 13 || i == 18 || i == 23;
}

static int hex_value(char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

static int fill_random(void *buf, size_t len)
{
	uint8_t *p = buf;

	while (len) {
		ssize_t n = getrandom(p, len, 0);

		if (n < 0) {
			if (errno == EINTR)
				continue;
			return -errno;
		}
		p += n;
		len -= (size_t)n;
	}
	return 0;
}

int guid_generate(struct guid *g)
{
	int ret = fill_random(g->bytes, sizeof(g->bytes));

	if (ret)
		return ret;
	g->bytes[7] = (uint8_t)((g->bytes[7] & 0x0f) | 0x40); /* version 4: data3 high nibble */
	g->bytes[8] = (uint8_t)((g->bytes[8] & 0x3f) | 0x80); /* RFC 4122 variant: 10xx */
	return 0;
}

/* Parses exactly GUID_STR_LEN characters at s (the caller has checked the length). */
static int parse_body(const char *s, struct guid *g)
{
	uint8_t text[16];
	size_t n = 0;

	for (size_t i = 0; i < GUID_STR_LEN; i++) {
		if (is_dash_pos(i)) {
			if (s[i] != '-')
				return -EINVAL;
			continue;
		}
		int hi = hex_value(s[i]);
		int lo = hex_value(s[i + 1]);

		if (hi < 0 || lo < 0)
			return -EINVAL;
		text[n++] = (uint8_t)(hi << 4 | lo);
		i++;
	}
	for (size_t i = 0; i < 16; i++)
		g->bytes[disk_index[i]] = text[i];
	return 0;
}

int guid_parse(const char *str, struct guid *g)
{
	if (!str)
		return -EINVAL;
	size_t len = strnlen(str, GUID_STR_LEN + 3);

	if (len == GUID_STR_LEN + 2 && str[0] == '{' && str[len - 1] == '}')
		return parse_body(str + 1, g);
	if (len == GUID_STR_LEN)
		return parse_body(str, g);
	return -EINVAL;
}

void guid_format(const struct guid *g, char *out)
{
	static const char digits[] = "0123456789abcdef";
	size_t n = 0;

	for (size_t i = 0; i < 16; i++) {
		uint8_t b = g->bytes[disk_index[i]];

		if (is_dash_pos(n))
			out[n++] = '-';
		out[n++] = digits[b >> 4];
		out[n++] = digits[b & 0x0f];
	}
	out[n] = '\0';
}

bool guid_equal(const struct guid *a, const struct guid *b)
{
	return memcmp(a->bytes, b->bytes, sizeof(a->bytes)) == 0;
}

bool guid_is_zero(const struct guid *g)
{
	static const struct guid zero;

	return guid_equal(g, &zero);
}
