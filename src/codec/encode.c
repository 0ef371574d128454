/*
 * Codec encoding: writes the packets a client sends (CONNECT, PUBLISH, the
 * QoS acks, SUBSCRIBE, UNSUBSCRIBE, PINGREQ, DISCONNECT) into the caller's
 * buffer. Each encoder's size twin decides whether the packet can exist at
 * all; an encoder writes nothing when its twin says 0.
 */
#include <string.h>

#include "codec.h"

#define MAX_STRING 65535u

static uint8_t *put_u16(uint8_t *p, uint16_t v)
{
    p[0] = (uint8_t)(v >> 8);
    p[1] = (uint8_t)(v & 0xFFu);
    return p + 2;
}

/* A length-prefixed string; data NULL is written as "". */
static uint8_t *put_string(uint8_t *p, mqtt_bytes s)
{
    size_t len = s.data == NULL ? 0 : s.len;
    p = put_u16(p, (uint16_t)len);
    if (len > 0) {
        memcpy(p, s.data, len);
    }
    return p + len;
}

static uint8_t *put_header(uint8_t *p, uint8_t first, size_t remaining)
{
    *p++ = first;
    return p + mqtt__varint_encode(p, (uint32_t)remaining);
}

/* Whole packet size for a remaining length; 0 past MQTT_MAX_REMAINING. */
static size_t packet_size(size_t remaining)
{
    if (remaining > MQTT_MAX_REMAINING) {
        return 0;
    }
    return 1 + mqtt__varint_size((uint32_t)remaining) + remaining;
}

/* Bytes a length-prefixed string takes, accumulated into *sum; false if too long. */
static bool add_string(size_t *sum, mqtt_bytes s)
{
    size_t len = s.data == NULL ? 0 : s.len;
    *sum += 2 + len;
    return len <= MAX_STRING;
}

/* ---- CONNECT --------------------------------------------------------- */

static bool has_password(const mqtt_connect_params *p)
{
    /* MQTT-3.1.2-22: no password without a user name. */
    return p->username.data != NULL && p->password.data != NULL;
}

static size_t connect_remaining(const mqtt_connect_params *p)
{
    size_t rl = 10; /* protocol name, level, flags, keepalive */
    bool ok = add_string(&rl, p->client_id);
    if (p->will) {
        ok = ok && p->will_qos <= 2;
        ok = add_string(&rl, p->will_topic) && ok;
        ok = add_string(&rl, p->will_payload) && ok;
    }
    if (p->username.data != NULL) {
        ok = add_string(&rl, p->username) && ok;
    }
    if (has_password(p)) {
        ok = add_string(&rl, p->password) && ok;
    }
    return ok ? rl : MQTT_MAX_REMAINING + 1u;
}

size_t mqtt__connect_size(const mqtt_connect_params *p)
{
    return p == NULL ? 0 : packet_size(connect_remaining(p));
}

static uint8_t connect_flags(const mqtt_connect_params *p)
{
    unsigned f = 0;
    if (p->clean_session) {
        f |= 0x02u;
    }
    if (p->will) {
        f |= 0x04u | (unsigned)p->will_qos << 3;
        if (p->will_retain) {
            f |= 0x20u;
        }
    }
    if (has_password(p)) {
        f |= 0x40u;
    }
    if (p->username.data != NULL) {
        f |= 0x80u;
    }
    return (uint8_t)f;
}

size_t mqtt__encode_connect(uint8_t *out, const mqtt_connect_params *p)
{
    static const uint8_t proto[] = {0x00, 0x04, 'M', 'Q', 'T', 'T', 0x04};
    size_t size = mqtt__connect_size(p);
    uint8_t *o = out;
    if (size == 0 || out == NULL) {
        return 0;
    }
    o = put_header(o, MQTT_CONNECT, connect_remaining(p));
    memcpy(o, proto, sizeof proto);
    o += sizeof proto;
    *o++ = connect_flags(p);
    o = put_u16(o, p->keepalive);
    o = put_string(o, p->client_id);
    if (p->will) {
        /* An empty will payload still takes its 2-byte zero length. */
        o = put_string(o, p->will_topic);
        o = put_string(o, p->will_payload);
    }
    if (p->username.data != NULL) {
        o = put_string(o, p->username);
    }
    if (has_password(p)) {
        o = put_string(o, p->password);
    }
    return (size_t)(o - out);
}

/* ---- PUBLISH --------------------------------------------------------- */

size_t mqtt__publish_size(size_t topic_len, size_t payload_len, uint8_t qos)
{
    if (topic_len > MAX_STRING || qos > 2 || payload_len > MQTT_MAX_REMAINING) {
        return 0;
    }
    return packet_size(2 + topic_len + (qos > 0 ? 2u : 0u) + payload_len);
}

size_t mqtt__encode_publish(uint8_t *out, const uint8_t *topic, size_t topic_len,
                            const uint8_t *payload, size_t payload_len, uint8_t qos, bool retain,
                            bool dup, uint16_t packet_id)
{
    size_t size = mqtt__publish_size(topic_len, payload_len, qos);
    unsigned first = MQTT_PUBLISH | (unsigned)qos << 1;
    mqtt_bytes t = {topic, topic_len};
    uint8_t *o = out;
    if (size == 0 || out == NULL || (topic == NULL && topic_len > 0) ||
        (payload == NULL && payload_len > 0)) {
        return 0;
    }
    /* MQTT-3.3.1-2: DUP must be 0 on QoS 0, whatever the caller asks. */
    first |= (dup && qos > 0 ? 0x08u : 0u) | (retain ? 0x01u : 0u);
    o = put_header(o, (uint8_t)first, 2 + topic_len + (qos > 0 ? 2u : 0u) + payload_len);
    o = put_string(o, t);
    if (qos > 0) {
        o = put_u16(o, packet_id);
    }
    if (payload_len > 0) {
        memcpy(o, payload, payload_len);
    }
    return (size_t)(o - out) + payload_len;
}

/* ---- acks, PINGREQ, DISCONNECT --------------------------------------- */

size_t mqtt__encode_ack(uint8_t out[4], uint8_t type, uint16_t packet_id)
{
    unsigned first = type & 0xF0u;
    if (first == MQTT_PUBREL) {
        first |= 0x02u; /* MQTT-3.6.1-1 */
    }
    out[0] = (uint8_t)first;
    out[1] = 2;
    put_u16(out + 2, packet_id);
    return 4;
}

size_t mqtt__encode_empty(uint8_t out[2], uint8_t type)
{
    out[0] = (uint8_t)(type & 0xF0u);
    out[1] = 0;
    return 2;
}

/* ---- SUBSCRIBE, UNSUBSCRIBE ------------------------------------------ */

/* Remaining length of a (UN)SUBSCRIBE; over MQTT_MAX_REMAINING when impossible. */
static size_t sub_remaining(const mqtt_sub_entry *e, size_t n, bool with_qos)
{
    size_t rl = 2; /* packet id */
    if (e == NULL || n == 0) {
        return MQTT_MAX_REMAINING + 1u; /* MQTT-3.8.3-3, 3.10.3-2: at least one filter */
    }
    for (size_t i = 0; i < n; i++) {
        if (!add_string(&rl, e[i].filter) || (with_qos && e[i].qos > 2) ||
            rl > MQTT_MAX_REMAINING) {
            return MQTT_MAX_REMAINING + 1u;
        }
        rl += with_qos ? 1u : 0u;
    }
    return rl;
}

static size_t encode_sub(uint8_t *out, uint8_t first, uint16_t packet_id,
                         const mqtt_sub_entry *e, size_t n, bool with_qos)
{
    size_t rl = sub_remaining(e, n, with_qos);
    uint8_t *o = out;
    if (packet_size(rl) == 0 || out == NULL) {
        return 0;
    }
    o = put_header(o, first, rl);
    o = put_u16(o, packet_id);
    for (size_t i = 0; i < n; i++) {
        o = put_string(o, e[i].filter);
        if (with_qos) {
            *o++ = e[i].qos;
        }
    }
    return (size_t)(o - out);
}

size_t mqtt__subscribe_size(const mqtt_sub_entry *e, size_t n)
{
    return packet_size(sub_remaining(e, n, true));
}

size_t mqtt__encode_subscribe(uint8_t *out, uint16_t packet_id, const mqtt_sub_entry *e, size_t n)
{
    return encode_sub(out, MQTT_SUBSCRIBE | 0x02u, packet_id, e, n, true);
}

size_t mqtt__unsubscribe_size(const mqtt_sub_entry *e, size_t n)
{
    return packet_size(sub_remaining(e, n, false));
}

size_t mqtt__encode_unsubscribe(uint8_t *out, uint16_t packet_id, const mqtt_sub_entry *e,
                                size_t n)
{
    return encode_sub(out, MQTT_UNSUBSCRIBE | 0x02u, packet_id, e, n, false);
}
