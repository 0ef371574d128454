/*
 * CRC32C (Castagnoli, reflected polynomial 0x82F63B78), the checksum of the
 * store's log: it catches every burst of up to 32 flipped bits. A byte-wise
 * table, built once; the store checks a few bytes per fsync, not gigabytes.
 */
#include <pthread.h>

#include "store.h"

static uint32_t table[256];
static pthread_once_t table_once = PTHREAD_ONCE_INIT;

static void table_build(void)
{
    for (uint32_t i = 0; i < 256u; i++) {
        uint32_t c = i;
        for (int k = 0; k < 8; k++)
            c = (c & 1u) ? (c >> 1) ^ 0x82F63B78u : c >> 1;
        table[i] = c;
    }
}

uint32_t mqtt__crc32c(uint32_t crc, const uint8_t *p, size_t n)
{
    (void)pthread_once(&table_once, table_build);
    crc = ~crc;
    for (size_t i = 0; i < n; i++)
        crc = table[(crc ^ p[i]) & 0xFFu] ^ (crc >> 8);
    return ~crc;
}
