/*
 * Codec fixed header: the remaining-length varint (MQTT 3.1.1 section
 * 2.2.3, also MQTT 5.0's variable byte integer) and decoding of the first
 * 2..5 bytes of every packet. Knows nothing of packet types; the packet
 * decoder judges type and flags. The decoding bodies live in wire.h, so the
 * receive path inlines them; these are the entry points for other layers.
 */
#include "wire.h"


size_t mqtt__varint_size(uint32_t v)
{
    if (v <= 127u) {
        return 1;
    }
    if (v <= 16383u) {
        return 2;
    }
    if (v <= 2097151u) {
        return 3;
    }
    return v <= MQTT_MAX_REMAINING ? 4 : 0;
}

size_t mqtt__varint_encode(uint8_t *out, uint32_t v)
{
    size_t n = 0;
    if (v > MQTT_MAX_REMAINING) {
        return 0;
    }
    do {
        uint8_t b = (uint8_t)(v & 0x7Fu);
        v >>= 7;
        if (v != 0) {
            b = (uint8_t)(b | 0x80u);
        }
        out[n++] = b;
    } while (v != 0);
    return n;
}

int mqtt__decode_fixed_header(const uint8_t *buf, size_t len, mqtt_fixed_header *h,
                              size_t *need, const char **why)
{
    return mqtt__fixed_header_inline(buf, len, h, need, why);
}
