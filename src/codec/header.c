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

int mqtt__varint_decode(const uint8_t *b, size_t n, uint32_t *v, size_t *used)
{
    uint32_t value = 0;
    for (size_t i = 0; i < VARINT_MAX_BYTES; i++) {
        if (i >= n) {
            *used = n;
            return MQTT_ERR_INCOMPLETE;
        }
        value |= (uint32_t)(b[i] & 0x7Fu) << (7u * i);
        if ((b[i] & 0x80u) == 0) {
            *v = value;
            *used = i + 1;
            return MQTT_OK;
        }
    }
    return MQTT_ERR_MALFORMED;
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
    size_t used = 0;
    int rc;
    if ((buf == NULL && len > 0) || h == NULL) {
        if (why != NULL) {
            *why = "invalid argument";
        }
        return MQTT_ERR_INVAL;
    }
    rc = len == 0 ? MQTT_ERR_INCOMPLETE : mqtt__varint_decode(buf + 1, len - 1, &value, &used);
    if (rc == MQTT_OK) {
        h->type = (uint8_t)(buf[0] & 0xF0u);
        h->flags = (uint8_t)(buf[0] & 0x0Fu);
        h->remaining = value;
        h->header_len = used + 1;
    } else if (rc == MQTT_ERR_INCOMPLETE && need != NULL) {
        *need = used + 2;
    } else if (rc == MQTT_ERR_MALFORMED && why != NULL) {
        *why = "remaining length over 4 bytes";
    }
    return rc;
}
