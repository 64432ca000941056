/* CRC-32C (Castagnoli, reflected polynomial 0x82F63B78): a slice-by-8 table implementation
 * and one using the SSE4.2 crc32 instruction, chosen once at run time. */
#include "crc32c.h"

#include <pthread.h>
#include <string.h>

#include "endian.h"

#if defined(__x86_64__) || defined(__i386__)
#define HAVE_SSE42_PATH 1
#include <nmmintrin.h>
#else
#define HAVE_SSE42_PATH 0
#endif

#define CRC32C_POLY 0x82F63B78u

/* table[k][b]: the CRC register after feeding byte b followed by k zero bytes. */
static uint32_t table[8][256];
static pthread_once_t table_once = PTHREAD_ONCE_INIT;

static void build_tables(void)
{
	for (unsigned int b = 0; b < 256; b++) {
		uint32_t crc = b;

		for (int bit = 0; bit < 8; bit++)
			crc = (crc >> 1) ^ (CRC32C_POLY & -(crc & 1));
		table[0][b] = crc;
	}
	for (unsigned int b = 0; b < 256; b++) {
		for (int k = 1; k < 8; k++) {
			uint32_t prev = table[k - 1][b];

			table[k][b] = (prev >> 8) ^ table[0][prev & 0xff];
		}
	}
}

static uint32_t sw_bytes(uint32_t crc, const uint8_t *p, size_t len)
{
	while (len--)
		crc = (crc >> 8) ^ table[0][(crc ^ *p++) & 0xff];
	return crc;
}

uint32_t crc32c_sw(uint32_t crc, const void *buf, size_t len)
{
	const uint8_t *p = buf;

	pthread_once(&table_once, build_tables);
	crc = ~crc;
	while (len >= 8) {
		uint64_t w = load_le64(p) ^ crc;

		crc = table[7][w & 0xff] ^ table[6][(w >> 8) & 0xff] ^ table[5][(w >> 16) & 0xff] ^
		      table[4][(w >> 24) & 0xff] ^ table[3][(w >> 32) & 0xff] ^
		      table[2][(w >> 40) & 0xff] ^ table[1][(w >> 48) & 0xff] ^ table[0][w >> 56];
		p += 8;
		len -= 8;
	}
	return ~sw_bytes(crc, p, len);
}

#if HAVE_SSE42_PATH

__attribute__((target("sse4.2"))) static uint32_t hw_bytes(uint32_t crc, const uint8_t *p,
							   size_t len)
{
	while (len--)
		crc = _mm_crc32_u8(crc, *p++);
	return crc;
}

__attribute__((target("sse4.2"))) uint32_t crc32c_hw(uint32_t crc, const void *buf, size_t len)
{
	const uint8_t *p = buf;
	size_t head = (size_t)(-(uintptr_t)p & 7);

	if (!len)
		return crc;
	crc = ~crc;
	if (head > len)
		head = len;
	crc = hw_bytes(crc, p, head);
	p += head;
	len -= head;
#ifdef __x86_64__
	uint64_t crc64 = crc;

	for (; len >= 8; p += 8, len -= 8) {
		uint64_t w;

		memcpy(&w, p, sizeof(w));
		crc64 = _mm_crc32_u64(crc64, w);
	}
	crc = (uint32_t)crc64;
#else
	for (; len >= 4; p += 4, len -= 4) {
		uint32_t w;

		memcpy(&w, p, sizeof(w));
		crc = _mm_crc32_u32(crc, w);
	}
#endif
	return ~hw_bytes(crc, p, len);
}

bool crc32c_hw_available(void)
{
	__builtin_cpu_init();
	return __builtin_cpu_supports("sse4.2");
}

#else /* !HAVE_SSE42_PATH */

uint32_t crc32c_hw(uint32_t crc, const void *buf, size_t len)
{
	return crc32c_sw(crc, buf, len);
}

bool crc32c_hw_available(void)
{
	return false;
}

#endif

static uint32_t (*impl)(uint32_t crc, const void *buf, size_t len);
static pthread_once_t impl_once = PTHREAD_ONCE_INIT;

static void choose_impl(void)
{
	impl = crc32c_hw_available() ? crc32c_hw : crc32c_sw;
}

uint32_t crc32c(uint32_t crc, const void *buf, size_t len)
{
	pthread_once(&impl_once, choose_impl);
	return impl(crc, buf, len);
}
