/*
 * Fuzz target: mqtt__decode_fixed_header and the remaining-length varint.
 * Checks what codec.h promises for every input: OK headers are 2..5 bytes
 * inside the input and re-encode to the same value, INCOMPLETE asks for more
 * than it was given, MALFORMED only for a fifth length byte; every shorter
 * prefix of a decodable header is INCOMPLETE. Never reads past len (ASan).
 */
#include <string.h>

#include "codec.h"
#include "fuzz_util.h"

/* The decoder on an exact-size heap copy, so ASan sees any read past len. */
static int decode(const uint8_t *data, size_t len, mqtt_fixed_header *h, size_t *need,
                  const char **why)
{
    uint8_t *copy = len ? malloc(len) : NULL;
    if (len)
        memcpy(copy, data, len);
    *need = 0;
    *why = NULL;
    int rc = mqtt__decode_fixed_header(copy, len, h, need, why);
    free(copy);
    return rc;
}

static void check_varint(uint32_t v)
{
    uint8_t out[8] = {0}, hdr[8] = {0x30};
    size_t n = mqtt__varint_size(v);
    FZ_CHECK((n == 0) == (v > MQTT_MAX_REMAINING));
    FZ_CHECK(mqtt__varint_encode(out, v) == n);
    if (n == 0)
        return;
    mqtt_fixed_header h;
    memcpy(hdr + 1, out, n);
    FZ_CHECK(mqtt__decode_fixed_header(hdr, 1 + n, &h, NULL, NULL) == MQTT_OK);
    FZ_CHECK(h.remaining == v && h.header_len == 1 + n);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t len)
{
    mqtt_fixed_header h, h2;
    size_t need, need2;
    const char *why, *why2;
    int rc = decode(data, len, &h, &need, &why);

    /* The answer depends on the first five bytes only. */
    if (len > 5) {
        FZ_CHECK(decode(data, 5, &h2, &need2, &why2) == rc);
    }
    switch (rc) {
    case MQTT_OK:
        FZ_CHECK(h.header_len >= 2 && h.header_len <= 5 && h.header_len <= len);
        FZ_CHECK(h.remaining <= MQTT_MAX_REMAINING);
        FZ_CHECK(h.type == (data[0] & 0xF0) && h.flags == (data[0] & 0x0F));
        for (size_t i = 1; i + 1 < h.header_len; i++)
            FZ_CHECK(data[i] & 0x80);
        FZ_CHECK((data[h.header_len - 1] & 0x80) == 0);
        /* Non-minimal encodings are accepted; the minimal one is never longer. */
        FZ_CHECK(mqtt__varint_size(h.remaining) <= h.header_len - 1);
        if (mqtt__varint_size(h.remaining) == h.header_len - 1) {
            uint8_t enc[4];
            FZ_CHECK(mqtt__varint_encode(enc, h.remaining) == h.header_len - 1);
            FZ_CHECK(memcmp(enc, data + 1, h.header_len - 1) == 0);
        }
        for (size_t k = 0; k < h.header_len; k++) {
            FZ_CHECK(decode(data, k, &h2, &need2, &why2) == MQTT_ERR_INCOMPLETE);
            FZ_CHECK(need2 == (k < 2 ? 2 : k + 1));
        }
        /* The same header through NULL need/why. */
        FZ_CHECK(mqtt__decode_fixed_header(data, h.header_len, &h2, NULL, NULL) == MQTT_OK);
        FZ_CHECK(h.type == h2.type && h.flags == h2.flags && h.remaining == h2.remaining &&
                 h.header_len == h2.header_len);
        break;
    case MQTT_ERR_INCOMPLETE:
        FZ_CHECK(len < 5 && need > len && need <= 5);
        FZ_CHECK(need == (len < 2 ? 2 : len + 1));
        for (size_t i = 1; i < len; i++)
            FZ_CHECK(data[i] & 0x80);
        break;
    case MQTT_ERR_MALFORMED:
        FZ_CHECK(len >= 5 && why != NULL && why[0] != '\0');
        for (size_t i = 1; i < 5; i++)
            FZ_CHECK(data[i] & 0x80);
        break;
    default:
        FZ_CHECK(!"unexpected status");
    }
    FZ_CHECK(mqtt__decode_fixed_header(data, len, NULL, &need, &why) == MQTT_ERR_INVAL);

    /* The input's first four bytes as a value to encode. */
    uint32_t v = 0;
    for (size_t i = 0; i < 4 && i < len; i++)
        v = v << 8 | data[i];
    check_varint(v);
    check_varint(v >> 4);
    return 0;
}
