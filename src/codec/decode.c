/*
 * Codec decoding: turns the bytes a broker sends into mqtt_packet views and
 * rejects everything MQTT 3.1.1 forbids a server to send. This is the fuzz
 * target: every read is bounded by len, nothing is allocated, and errors are
 * found as early in the stream as the bytes allow.
 */
#include <string.h>

#include "codec.h"

static int fail(int status, const char *what, const char **why)
{
    *why = what;
    return status;
}

/* Judges the first byte alone, so a stream can be rejected after one byte. */
static int check_first_byte(uint8_t b, const char **why)
{
    uint8_t type = (uint8_t)(b & 0xF0u), flags = (uint8_t)(b & 0x0Fu);
    switch (type) {
    case MQTT_PUBLISH:
        if ((flags & 0x06u) == 0x06u) {
            return fail(MQTT_ERR_MALFORMED, "QoS 3 in PUBLISH", why);
        }
        if ((flags & 0x08u) != 0 && (flags & 0x06u) == 0) {
            return fail(MQTT_ERR_MALFORMED, "DUP set on QoS 0 PUBLISH", why);
        }
        return MQTT_OK;
    case MQTT_PUBREL:
        return flags == 0x02u ? MQTT_OK : fail(MQTT_ERR_MALFORMED, "PUBREL flags not 0010", why);
    case MQTT_CONNACK:
    case MQTT_PUBACK:
    case MQTT_PUBREC:
    case MQTT_PUBCOMP:
    case MQTT_SUBACK:
    case MQTT_UNSUBACK:
    case MQTT_PINGRESP:
        return flags == 0 ? MQTT_OK : fail(MQTT_ERR_MALFORMED, "reserved flags set", why);
    case MQTT_CONNECT:
    case MQTT_SUBSCRIBE:
    case MQTT_UNSUBSCRIBE:
    case MQTT_PINGREQ:
    case MQTT_DISCONNECT:
        return fail(MQTT_ERR_PROTOCOL, "packet type a server must not send", why);
    default:
        return fail(MQTT_ERR_PROTOCOL, "reserved packet type", why);
    }
}

/* Remaining-length rules per type, checked before the body arrives. */
static int check_remaining(uint8_t type, uint32_t rl, const char **why)
{
    switch (type) {
    case MQTT_CONNACK:
    case MQTT_PUBACK:
    case MQTT_PUBREC:
    case MQTT_PUBREL:
    case MQTT_PUBCOMP:
    case MQTT_UNSUBACK:
        return rl == 2 ? MQTT_OK : fail(MQTT_ERR_MALFORMED, "remaining length not 2", why);
    case MQTT_SUBACK:
        return rl >= 3 ? MQTT_OK : fail(MQTT_ERR_MALFORMED, "SUBACK without return codes", why);
    case MQTT_PINGRESP:
        return rl == 0 ? MQTT_OK : fail(MQTT_ERR_MALFORMED, "PINGRESP with a body", why);
    default: /* PUBLISH: topic length at least */
        return rl >= 2 ? MQTT_OK : fail(MQTT_ERR_MALFORMED, "PUBLISH too short", why);
    }
}

/* The analyzer cannot see that mqtt__decode_fixed_header (another file) fails on
 * an empty buffer, so it thinks a body may be NULL: the NOLINTs below. */
static uint16_t get_u16(const uint8_t *p)
{
    /* NOLINTNEXTLINE(clang-analyzer-core.NullDereference): p is never NULL */
    return (uint16_t)((unsigned)p[0] << 8 | p[1]);
}

static int decode_connack(const uint8_t *b, mqtt_packet *pkt, const char **why)
{
    /* NOLINTNEXTLINE(clang-analyzer-core.NullDereference): b is never NULL */
    if ((b[0] & 0xFEu) != 0) {
        return fail(MQTT_ERR_MALFORMED, "reserved CONNACK flags set", why);
    }
    if (b[1] > 5) {
        return fail(MQTT_ERR_MALFORMED, "CONNACK return code over 5", why);
    }
    if (b[0] != 0 && b[1] != 0) {
        return fail(MQTT_ERR_MALFORMED, "session present on a refused CONNACK", why);
    }
    pkt->session_present = b[0] != 0;
    pkt->return_code = b[1];
    return MQTT_OK;
}

static int decode_publish(const uint8_t *b, size_t rl, mqtt_packet *pkt, const char **why)
{
    size_t tlen = get_u16(b), pos;
    const char *problem = NULL;
    pkt->qos = (uint8_t)((pkt->flags >> 1) & 0x03u);
    pkt->retain = (pkt->flags & 0x01u) != 0;
    pkt->dup = (pkt->flags & 0x08u) != 0;
    if (tlen > rl - 2) {
        return fail(MQTT_ERR_MALFORMED, "topic runs past the packet", why);
    }
    if (mqtt__check_topic_name(b + 2, tlen, &problem) != MQTT_OK) {
        return fail(MQTT_ERR_MALFORMED, problem, why);
    }
    pkt->topic.data = b + 2;
    pkt->topic.len = tlen;
    pos = 2 + tlen;
    if (pkt->qos > 0) {
        if (rl - pos < 2) {
            return fail(MQTT_ERR_MALFORMED, "packet id runs past the packet", why);
        }
        pkt->packet_id = get_u16(b + pos);
        if (pkt->packet_id == 0) {
            return fail(MQTT_ERR_MALFORMED, "packet id 0", why);
        }
        pos += 2;
    }
    pkt->payload.data = b + pos;
    pkt->payload.len = rl - pos;
    return MQTT_OK;
}

static int decode_suback(const uint8_t *b, size_t rl, mqtt_packet *pkt, const char **why)
{
    for (size_t i = 2; i < rl; i++) {
        if (b[i] > 2 && b[i] != 0x80u) {
            return fail(MQTT_ERR_MALFORMED, "bad SUBACK return code", why);
        }
    }
    pkt->granted.data = b + 2;
    pkt->granted.len = rl - 2;
    return MQTT_OK;
}

/* Decodes the body of a packet whose header and length already passed. */
static int decode_body(const uint8_t *b, size_t rl, mqtt_packet *pkt, const char **why)
{
    switch (pkt->type) {
    case MQTT_CONNACK:
        return decode_connack(b, pkt, why);
    case MQTT_PUBLISH:
        return decode_publish(b, rl, pkt, why);
    case MQTT_PINGRESP:
        return MQTT_OK;
    default: /* acks, SUBACK, UNSUBACK: a packet id first */
        pkt->packet_id = get_u16(b);
        if (pkt->packet_id == 0) {
            return fail(MQTT_ERR_MALFORMED, "packet id 0", why);
        }
        return pkt->type == MQTT_SUBACK ? decode_suback(b, rl, pkt, why) : MQTT_OK;
    }
}

int mqtt__decode_packet(const uint8_t *buf, size_t len, size_t max_packet, mqtt_packet *pkt,
                        size_t *consumed, const char **why)
{
    const char *ignored = NULL;
    mqtt_fixed_header h;
    size_t need = 0, total;
    int rc;
    if (why == NULL) {
        why = &ignored;
    }
    if ((buf == NULL && len > 0) || pkt == NULL || consumed == NULL) {
        return fail(MQTT_ERR_INVAL, "invalid argument", why);
    }
    memset(pkt, 0, sizeof *pkt);
    if (len > 0 && (rc = check_first_byte(buf[0], why)) != MQTT_OK) {
        return rc;
    }
    rc = mqtt__decode_fixed_header(buf, len, &h, &need, why);
    if (rc != MQTT_OK) {
        if (rc == MQTT_ERR_INCOMPLETE) {
            *consumed = need;
        }
        return rc;
    }
    total = h.header_len + h.remaining;
    /* Judged from the header alone so a huge packet is refused, not awaited. 0: no limit. */
    if (max_packet != 0 && total > max_packet) {
        return fail(MQTT_ERR_TOO_LARGE, "the packet is larger than maximum_packet_size", why);
    }
    if ((rc = check_remaining(h.type, h.remaining, why)) != MQTT_OK) {
        return rc;
    }
    if (len < total) {
        *consumed = total;
        return MQTT_ERR_INCOMPLETE;
    }
    pkt->type = h.type;
    pkt->flags = h.flags;
    rc = decode_body(buf + h.header_len, h.remaining, pkt, why);
    if (rc == MQTT_OK) {
        *consumed = total;
    }
    return rc;
}
