/* rt/crc32c.h: CRC-32C (Castagnoli), with the SSE4.2 instruction where the CPU has it. */
#ifndef RT_CRC32C_H
#define RT_CRC32C_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* CRC-32C of buf, continuing from `crc` (0 to start): rt_crc32c(rt_crc32c(0, a), b) is the
 * CRC of a followed by b. Picks the hardware path once, at first use. */
uint32_t rt_crc32c(uint32_t crc, const void *buf, size_t len);

/* The two implementations, for tests and benchmarks. rt_crc32c_hw() must only be called
 * when rt_crc32c_hw_available(). */
uint32_t rt_crc32c_sw(uint32_t crc, const void *buf, size_t len);
uint32_t rt_crc32c_hw(uint32_t crc, const void *buf, size_t len);
bool rt_crc32c_hw_available(void);

#endif
