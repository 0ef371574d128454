/*
 * CRC32C (Castagnoli, reflected polynomial 0x82F63B78), the checksum of the
 * store's log: it catches every burst of up to 32 flipped bits. Slicing by
 * 8 (eight tables, eight bytes a step), built once; recovery checks every
 * byte of the log, so its speed is the checksum's speed.
 */
#include <pthread.h>

#include "store.h"

static uint32_t table[8][256];
static pthread_once_t table_once = PTHREAD_ONCE_INIT;

static void table_build(void)
{
    for (uint32_t i = 0; i < 256u; i++) {
        uint32_t c = i;
        for (int k = 0; k < 8; k++)
            c = (c & 1u) ? (c >> 1) ^ 0x82F63B78u : c >> 1;
        table[0][i] = c;
    }
    for (uint32_t i = 0; i < 256u; i++)
        for (int k = 1; k < 8; k++)
            table[k][i] = (table[k - 1][i] >> 8) ^ table[0][table[k - 1][i] & 0xFFu];
}

uint32_t mqtt__crc32c(uint32_t crc, const uint8_t *p, size_t n)
{
    (void)pthread_once(&table_once, table_build);
    crc = ~crc;
    for (; n >= 8; p += 8, n -= 8) {
        uint32_t lo = crc ^ ((uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 |
                             (uint32_t)p[3] << 24);
        crc = table[7][lo & 0xFFu] ^ table[6][(lo >> 8) & 0xFFu] ^ table[5][(lo >> 16) & 0xFFu] ^
              table[4][lo >> 24] ^ table[3][p[4]] ^ table[2][p[5]] ^ table[1][p[6]] ^
              table[0][p[7]];
    }
    for (; n > 0; p++, n--)
        crc = table[0][(crc ^ *p) & 0xFFu] ^ (crc >> 8);
    return ~crc;
}
