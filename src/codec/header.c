/*
 * Codec fixed header: the remaining-length varint (MQTT 3.1.1 section
 * 2.2.3) and decoding of the first 2..5 bytes of every packet. Knows nothing
 * of packet types; the packet decoder judges type and flags.
 */
#include "codec.h"

/* The varint holds at most 4 bytes of 7 bits each. */
#define VARINT_MAX_BYTES 4u

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

/*
 * Non-minimal encodings (0x80 0x00 for 0) are accepted as the 3.1.1 text
 * does not forbid them; a continuation bit on the 4th varint byte is
 * malformed, and is reported without waiting for a 5th byte.
 */
int mqtt__decode_fixed_header(const uint8_t *buf, size_t len, mqtt_fixed_header *h,
                              size_t *need, const char **why)
{
    uint32_t value = 0;
    if ((buf == NULL && len > 0) || h == NULL) {
        if (why != NULL) {
            *why = "invalid argument";
        }
        return MQTT_ERR_INVAL;
    }
    for (size_t i = 0; i < VARINT_MAX_BYTES; i++) {
        size_t pos = 1 + i;
        if (pos >= len) {
            if (need != NULL) {
                *need = pos + 1;
            }
            return MQTT_ERR_INCOMPLETE;
        }
        value |= (uint32_t)(buf[pos] & 0x7Fu) << (7u * i);
        if ((buf[pos] & 0x80u) == 0) {
            h->type = (uint8_t)(buf[0] & 0xF0u);
            h->flags = (uint8_t)(buf[0] & 0x0Fu);
            h->remaining = value;
            h->header_len = pos + 1;
            return MQTT_OK;
        }
    }
    if (why != NULL) {
        *why = "remaining length over 4 bytes";
    }
    return MQTT_ERR_MALFORMED;
}
