/*
 * Fuzz target: mqtt__decode_packet, every packet type a broker may send.
 * The input is a byte stream decoded packet after packet as the I/O thread
 * does. Each OK packet must be self-consistent, re-encode to the same bytes
 * (PUBLISH and the acks through the codec's encoders, the others by hand),
 * decode again to the same fields, and every prefix of it must be INCOMPLETE;
 * an error must not change when more bytes follow. Never reads past len.
 */
#include <string.h>

#include "codec.h"
#include "fuzz_util.h"

static int decode(const uint8_t *b, size_t len, size_t max_packet, mqtt_packet *p, size_t *used,
                  const char **why)
{
    *used = 0;
    *why = NULL;
    return mqtt__decode_packet(b, len, max_packet, p, used, why);
}

static bool same_view(mqtt_bytes a, mqtt_bytes b)
{
    return a.len == b.len && (a.len == 0 || memcmp(a.data, b.data, a.len) == 0);
}

/* Every field but the views' addresses. */
static bool same_packet(const mqtt_packet *a, const mqtt_packet *b)
{
    return a->type == b->type && a->flags == b->flags && a->packet_id == b->packet_id &&
           a->session_present == b->session_present && a->return_code == b->return_code &&
           a->qos == b->qos && a->retain == b->retain && a->dup == b->dup &&
           same_view(a->topic, b->topic) && same_view(a->payload, b->payload) &&
           same_view(a->granted, b->granted);
}

/* View v lies inside [b, b + n). */
static bool inside(mqtt_bytes v, const uint8_t *b, size_t n)
{
    return v.data == NULL || (v.data >= b && v.len <= n && v.data - b <= (ptrdiff_t)(n - v.len));
}

/* The packet's minimal encoding, into out (big enough); its size. */
static size_t encode(uint8_t *out, const mqtt_packet *p)
{
    size_t n = 0, body = 0;
    switch (p->type) {
    case MQTT_PUBLISH:
        return mqtt__encode_publish(out, p->topic.data, p->topic.len, p->payload.data,
                                    p->payload.len, p->qos, p->retain, p->dup, p->packet_id);
    case MQTT_PUBACK:
    case MQTT_PUBREC:
    case MQTT_PUBREL:
    case MQTT_PUBCOMP:
    case MQTT_UNSUBACK:
        return mqtt__encode_ack(out, p->type, p->packet_id);
    case MQTT_CONNACK:
        out[0] = MQTT_CONNACK;
        out[1] = 2;
        out[2] = p->session_present ? 1 : 0;
        out[3] = p->return_code;
        return 4;
    case MQTT_PINGRESP:
        out[0] = MQTT_PINGRESP;
        out[1] = 0;
        return 2;
    case MQTT_SUBACK:
        body = 2 + p->granted.len;
        out[0] = MQTT_SUBACK;
        n = 1 + mqtt__varint_encode(out + 1, (uint32_t)body);
        out[n++] = (uint8_t)(p->packet_id >> 8);
        out[n++] = (uint8_t)p->packet_id;
        memcpy(out + n, p->granted.data, p->granted.len);
        return n + p->granted.len;
    default:
        FZ_CHECK(!"decoded a type a client never receives");
        return 0;
    }
}

static void check_fields(const mqtt_packet *p, const uint8_t *b, size_t n)
{
    mqtt_fixed_header h;
    FZ_CHECK(mqtt__decode_fixed_header(b, n, &h, NULL, NULL) == MQTT_OK);
    FZ_CHECK(h.header_len + h.remaining == n && p->type == h.type && p->flags == h.flags);
    FZ_CHECK(inside(p->topic, b, n) && inside(p->payload, b, n) && inside(p->granted, b, n));
    switch (p->type) {
    case MQTT_PUBLISH:
        FZ_CHECK(p->qos <= 2 && p->qos == ((p->flags >> 1) & 3));
        FZ_CHECK(p->retain == (p->flags & 1) && p->dup == ((p->flags & 8) != 0));
        FZ_CHECK(!p->dup || p->qos > 0);
        FZ_CHECK((p->packet_id != 0) == (p->qos > 0));
        FZ_CHECK(mqtt__check_topic_name(p->topic.data, p->topic.len, NULL) == MQTT_OK);
        FZ_CHECK(p->topic.data == b + h.header_len + 2);
        FZ_CHECK(p->payload.data != NULL && p->payload.data + p->payload.len == b + n);
        FZ_CHECK(2 + p->topic.len + (p->qos ? 2u : 0u) + p->payload.len == h.remaining);
        break;
    case MQTT_CONNACK:
        FZ_CHECK(p->flags == 0 && h.remaining == 2 && p->return_code <= 5);
        FZ_CHECK(!p->session_present || p->return_code == 0);
        break;
    case MQTT_SUBACK:
        FZ_CHECK(p->granted.len >= 1 && p->granted.len + 2 == h.remaining);
        for (size_t i = 0; i < p->granted.len; i++) {
            uint8_t g = p->granted.data[i];
            FZ_CHECK(g <= 2 || g == 0x80);
        }
        FZ_CHECK(p->packet_id != 0);
        break;
    case MQTT_PINGRESP:
        FZ_CHECK(h.remaining == 0 && p->flags == 0);
        break;
    default:
        FZ_CHECK(h.remaining == 2 && p->packet_id != 0);
        FZ_CHECK(p->flags == (p->type == MQTT_PUBREL ? 2 : 0));
        FZ_CHECK(p->type == MQTT_PUBACK || p->type == MQTT_PUBREC || p->type == MQTT_PUBREL ||
                 p->type == MQTT_PUBCOMP || p->type == MQTT_UNSUBACK);
    }
}

/* A heap copy of exactly n bytes, so ASan sees any read past them. */
static uint8_t *exact_copy(const uint8_t *b, size_t n)
{
    uint8_t *c = malloc(n ? n : 1);
    memcpy(c, b, n);
    return c;
}

/* An OK packet b[0..n): prefixes, limits, re-encoding, decoding again. */
static void check_ok(const mqtt_packet *p, const uint8_t *b, size_t n)
{
    mqtt_packet q;
    size_t used;
    const char *why;
    mqtt_fixed_header h;
    check_fields(p, b, n);
    FZ_CHECK(mqtt__decode_fixed_header(b, n, &h, NULL, NULL) == MQTT_OK);

    /* Each prefix is INCOMPLETE and asks for more than it has, never past the end;
     * small packets get exact-size copies of every prefix. */
    for (size_t k = 0; k < n; k++) {
        uint8_t *c = n <= 512 ? exact_copy(b, k) : NULL;
        FZ_CHECK(decode(c ? c : b, k, 0, &q, &used, &why) == MQTT_ERR_INCOMPLETE);
        FZ_CHECK(used > k && used <= n);
        if (k >= h.header_len)
            FZ_CHECK(used == n);
        free(c);
    }
    /* max_packet: the exact size passes, one byte less refuses. */
    FZ_CHECK(decode(b, n, n, &q, &used, &why) == MQTT_OK && used == n);
    FZ_CHECK(decode(b, n, n - 1, &q, &used, &why) == MQTT_ERR_TOO_LARGE && why != NULL);

    /* Re-encoding gives the same first byte and body; the same bytes when the
     * input's remaining length was minimal. */
    uint8_t *enc = malloc(n + 8);
    size_t m = encode(enc, p);
    size_t body = h.remaining;
    FZ_CHECK(m >= 2 && m - body >= 2 && enc[0] == b[0]);
    FZ_CHECK(memcmp(enc + (m - body), b + h.header_len, body) == 0);
    if (mqtt__varint_size(h.remaining) == h.header_len - 1)
        FZ_CHECK(m == n && memcmp(enc, b, n) == 0);
    FZ_CHECK(decode(enc, m, 0, &q, &used, &why) == MQTT_OK && used == m);
    FZ_CHECK(same_packet(p, &q));
    free(enc);
}

/* An error must stay the same error with more bytes behind it. */
static void check_error(int rc, const uint8_t *b, size_t len, const char *why)
{
    mqtt_packet q;
    size_t used;
    const char *why2;
    FZ_CHECK(rc == MQTT_ERR_MALFORMED || rc == MQTT_ERR_PROTOCOL);
    FZ_CHECK(why != NULL && why[0] != '\0');
    uint8_t *more = malloc(len + 3);
    memcpy(more, b, len);
    memset(more + len, 0xA5, 3);
    FZ_CHECK(decode(more, len + 3, 0, &q, &used, &why2) == rc);
    FZ_CHECK(strcmp(why, why2) == 0);
    free(more);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t len)
{
    /* Decode the input as a stream, as the I/O thread does. libFuzzer's buffer is
     * exactly len bytes, so a read past the stream's end is caught as it is. */
    size_t off = 0;
    for (;;) {
        size_t rest = len - off, used;
        const char *why;
        mqtt_packet p;
        int rc = decode(data + off, rest, 0, &p, &used, &why);
        if (rc == MQTT_ERR_INCOMPLETE) {
            FZ_CHECK(used > rest);
            break;
        }
        if (rc != MQTT_OK) {
            check_error(rc, data + off, rest, why);
            break;
        }
        FZ_CHECK(used >= 2 && used <= rest);
        /* Decoding exactly the packet, alone, gives the same answer. */
        uint8_t *b = exact_copy(data + off, used);
        mqtt_packet q;
        size_t used2;
        FZ_CHECK(decode(b, used, 0, &q, &used2, &why) == MQTT_OK && used2 == used);
        FZ_CHECK(same_packet(&p, &q));
        check_ok(&q, b, used);
        free(b);
        off += used;
    }
    return 0;
}
