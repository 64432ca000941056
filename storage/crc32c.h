/* CRC-32C (Castagnoli), as VHDX uses it: crc32c(0, buf, len) is the standard value
 * (0xE3069283 for "123456789"). The SSE4.2 instruction is used when the CPU has it. */
#ifndef HV_STORAGE_CRC32C_H
#define HV_STORAGE_CRC32C_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Continue a CRC: pass the previous result (0 to start). */
uint32_t crc32c(uint32_t crc, const void *buf, size_t len);

/* The two implementations, exposed so tests can check both agree. */
uint32_t crc32c_sw(uint32_t crc, const void *buf, size_t len);
uint32_t crc32c_hw(uint32_t crc, const void *buf, size_t len);
bool crc32c_hw_available(void);

#endif
