/*
 * Codec decoding: turns bytes into mqtt_packet views under protocol level 4
 * or 5, for either role, and rejects everything the protocol forbids that
 * side to send. This is the fuzz target: every read is bounded by len,
 * nothing is allocated, and errors are found as early in the stream as the
 * bytes allow. CONNECT and (UN)SUBSCRIBE bodies live in decode_broker.c.
 */
#include <stddef.h>

#include "wire.h"

#define fail mqtt__fail
/* Inlined into both entry points, so the 3.1.1 client path (the receive rate)
 * is compiled with its version and role known and pays for neither. */
#define HOT MQTT__INLINE
#define BIT(type) ((uint32_t)MQTT_PACKET_BIT(type))

/* The packet types each role may receive, under 3.1.1 and under 5.0. */
#define FROM_BROKER                                                                      \
    (BIT(MQTT_CONNACK) | BIT(MQTT_PUBLISH) | BIT(MQTT_PUBACK) | BIT(MQTT_PUBREC) |         \
     BIT(MQTT_PUBREL) | BIT(MQTT_PUBCOMP) | BIT(MQTT_SUBACK) | BIT(MQTT_UNSUBACK) |        \
     BIT(MQTT_PINGRESP))
#define FROM_CLIENT                                                                      \
    (BIT(MQTT_CONNECT) | BIT(MQTT_PUBLISH) | BIT(MQTT_PUBACK) | BIT(MQTT_PUBREC) |         \
     BIT(MQTT_PUBREL) | BIT(MQTT_PUBCOMP) | BIT(MQTT_SUBSCRIBE) | BIT(MQTT_UNSUBSCRIBE) |  \
     BIT(MQTT_PINGREQ) | BIT(MQTT_DISCONNECT))
static const uint32_t receivable[2][2] = {
    {FROM_BROKER, FROM_BROKER | BIT(MQTT_DISCONNECT) | BIT(MQTT_AUTH)},
    {FROM_CLIENT, FROM_CLIENT | BIT(MQTT_AUTH)},
};

static const mqtt_packet zero_packet;

HOT bool is_v5(const mqtt_decode_opts *o)
{
    return o->version == MQTT_V5;
}

HOT int check_flags(uint8_t type, uint8_t flags, const char **why)
{
    switch (type) {
    case MQTT_PUBLISH:
        if ((flags & 0x06u) == 0x06u)
            return fail(MQTT_ERR_MALFORMED, "QoS 3 in PUBLISH", why);
        if ((flags & 0x08u) != 0 && (flags & 0x06u) == 0)
            return fail(MQTT_ERR_MALFORMED, "DUP set on QoS 0 PUBLISH", why);
        return MQTT_OK;
    case MQTT_PUBREL:
        return flags == 0x02u ? MQTT_OK : fail(MQTT_ERR_MALFORMED, "PUBREL flags not 0010", why);
    case MQTT_SUBSCRIBE:
    case MQTT_UNSUBSCRIBE:
        return flags == 0x02u ? MQTT_OK
                              : fail(MQTT_ERR_MALFORMED, "(UN)SUBSCRIBE flags not 0010", why);
    default:
        return flags == 0 ? MQTT_OK : fail(MQTT_ERR_MALFORMED, "reserved flags set", why);
    }
}

/* Judges the first byte alone, so a stream can be rejected after one byte. A
 * broker's CONNECT is judged whatever version the options say. */
HOT int check_first_byte(uint8_t b, const mqtt_decode_opts *o, const char **why)
{
    uint8_t type = (uint8_t)(b & 0xF0u);
    bool v5 = is_v5(o) || type == MQTT_CONNECT;
    if ((receivable[o->role][v5] & BIT(type)) == 0) {
        if (type == 0 || (type == MQTT_AUTH && !v5))
            return fail(MQTT_ERR_PROTOCOL, "reserved packet type", why);
        return fail(MQTT_ERR_PROTOCOL,
                    o->role == MQTT_ROLE_CLIENT ? "packet type a server must not send"
                                                : "packet type a client must not send",
                    why);
    }
    return check_flags(type, (uint8_t)(b & 0x0Fu), why);
}

/* Remaining-length rules per type, checked before the body arrives. */
HOT int check_remaining(uint8_t type, uint32_t rl, bool v5, const char **why)
{
    switch (type) {
    case MQTT_CONNACK:
    case MQTT_PUBACK:
    case MQTT_PUBREC:
    case MQTT_PUBREL:
    case MQTT_PUBCOMP:
    case MQTT_UNSUBACK:
        if (v5 ? rl >= 2 : rl == 2)
            return MQTT_OK;
        return fail(MQTT_ERR_MALFORMED, v5 ? "remaining length under 2" : "remaining length not 2",
                    why);
    case MQTT_SUBACK:
        return rl >= 3 ? MQTT_OK : fail(MQTT_ERR_MALFORMED, "SUBACK without return codes", why);
    case MQTT_PINGRESP:
        return rl == 0 ? MQTT_OK : fail(MQTT_ERR_MALFORMED, "PINGRESP with a body", why);
    case MQTT_PINGREQ:
        return rl == 0 ? MQTT_OK : fail(MQTT_ERR_MALFORMED, "PINGREQ with a body", why);
    case MQTT_DISCONNECT:
        return v5 || rl == 0 ? MQTT_OK : fail(MQTT_ERR_MALFORMED, "DISCONNECT with a body", why);
    case MQTT_PUBLISH:
        return rl >= 2 ? MQTT_OK : fail(MQTT_ERR_MALFORMED, "PUBLISH too short", why);
    default: /* CONNECT, (UN)SUBSCRIBE, AUTH: judged by their bodies */
        return MQTT_OK;
    }
}

static int decode_connack(mqtt_reader *r, mqtt_packet *pkt, const char **why)
{
    uint8_t flags = 0, code = 0;
    (void)r_u8(r, &flags); /* remaining length is at least 2 */
    (void)r_u8(r, &code);
    if ((flags & 0xFEu) != 0)
        return fail(MQTT_ERR_MALFORMED, "reserved CONNACK flags set", why);
    if (pkt->version == MQTT_V5 ? !mqtt__reason_valid(code, MQTT_CONNACK) : code > 5)
        return fail(MQTT_ERR_MALFORMED,
                    pkt->version == MQTT_V5 ? "bad CONNACK reason code"
                                            : "CONNACK return code over 5",
                    why);
    if (flags != 0 && code != 0)
        return fail(MQTT_ERR_MALFORMED, "session present on a refused CONNACK", why);
    pkt->session_present = flags != 0;
    pkt->return_code = code;
    if (pkt->version != MQTT_V5)
        return MQTT_OK;
    pkt->reason_code = code;
    int rc = mqtt__r_props(r, MQTT_CONNACK, &pkt->props, why);
    return rc != MQTT_OK ? rc : mqtt__check_end(r, why);
}

/* A 5.0 topic may be empty when a topic_alias stands for it. */
HOT int check_publish_topic(const mqtt_packet *pkt, const char **why)
{
    const char *problem = NULL;
    mqtt_property alias;
    if (pkt->topic.len == 0 && pkt->version == MQTT_V5) {
        if (mqtt__prop_find(pkt->props, MQTT_PROP_TOPIC_ALIAS, &alias))
            return MQTT_OK;
        return fail(MQTT_ERR_PROTOCOL, "empty topic without a topic alias", why);
    }
    if (mqtt__check_topic_name(pkt->topic.data, pkt->topic.len, &problem) != MQTT_OK)
        return fail(MQTT_ERR_MALFORMED, problem, why);
    return MQTT_OK;
}

HOT int decode_publish(mqtt_reader *r, mqtt_packet *pkt, const char **why)
{
    bool v5 = pkt->version == MQTT_V5;
    int rc;
    pkt->qos = (uint8_t)((pkt->flags >> 1) & 0x03u);
    pkt->retain = (pkt->flags & 0x01u) != 0;
    pkt->dup = (pkt->flags & 0x08u) != 0;
    if (!r_bytes(r, &pkt->topic))
        return fail(MQTT_ERR_MALFORMED, "topic runs past the packet", why);
    if (!v5 && (rc = check_publish_topic(pkt, why)) != MQTT_OK)
        return rc;
    if (pkt->qos > 0) {
        if (!r_u16(r, &pkt->packet_id))
            return fail(MQTT_ERR_MALFORMED, "packet id runs past the packet", why);
        if (pkt->packet_id == 0)
            return fail(MQTT_ERR_MALFORMED, "packet id 0", why);
    }
    if (v5 && ((rc = mqtt__r_props(r, MQTT_PUBLISH, &pkt->props, why)) != MQTT_OK ||
               (rc = check_publish_topic(pkt, why)) != MQTT_OK))
        return rc;
    pkt->payload.data = r->b + r->pos;
    pkt->payload.len = r_left(r);
    return MQTT_OK;
}

/* What follows a 5.0 reason code: nothing, or properties and nothing. */
static int decode_reason(mqtt_reader *r, mqtt_packet *pkt, bool has_code, const char **why)
{
    int rc;
    if (!has_code)
        return MQTT_OK;
    (void)r_u8(r, &pkt->reason_code);
    if (!mqtt__reason_valid(pkt->reason_code, pkt->type))
        return fail(MQTT_ERR_MALFORMED, "reason code not allowed in this packet", why);
    if (r_left(r) == 0)
        return MQTT_OK;
    if ((rc = mqtt__r_props(r, pkt->type, &pkt->props, why)) != MQTT_OK)
        return rc;
    return mqtt__check_end(r, why);
}

/* SUBACK, and UNSUBACK under 5.0: properties, then at least one code. */
static int decode_codes(mqtt_reader *r, mqtt_packet *pkt, const char **why)
{
    bool v5 = pkt->version == MQTT_V5;
    int rc;
    if (v5 && (rc = mqtt__r_props(r, pkt->type, &pkt->props, why)) != MQTT_OK)
        return rc;
    if (r_left(r) == 0)
        return fail(MQTT_ERR_PROTOCOL, "no reason codes", why);
    for (size_t i = r->pos; i < r->n; i++) {
        uint8_t c = r->b[i];
        if (!mqtt__code_ok(c, pkt->type, v5))
            return fail(MQTT_ERR_MALFORMED, v5 ? "reason code not allowed in this packet"
                                               : "bad SUBACK return code", why);
    }
    pkt->granted.data = r->b + r->pos;
    pkt->granted.len = r_left(r);
    return MQTT_OK;
}

/* Acks, SUBACK, UNSUBACK: a packet id first. */
static int decode_with_id(mqtt_reader *r, mqtt_packet *pkt, const char **why)
{
    (void)r_u16(r, &pkt->packet_id); /* remaining length is at least 2 */
    if (pkt->packet_id == 0)
        return fail(MQTT_ERR_MALFORMED, "packet id 0", why);
    if (pkt->type == MQTT_SUBACK || (pkt->type == MQTT_UNSUBACK && pkt->version == MQTT_V5))
        return decode_codes(r, pkt, why);
    return decode_reason(r, pkt, pkt->version == MQTT_V5 && r_left(r) > 0, why);
}

/* Decodes the body of a packet whose header and length already passed. */
HOT int decode_body(mqtt_reader *r, mqtt_packet *pkt, const char **why)
{
    switch (pkt->type) {
    case MQTT_PUBLISH:
        return decode_publish(r, pkt, why);
    case MQTT_CONNACK:
        return decode_connack(r, pkt, why);
    case MQTT_PINGRESP:
    case MQTT_PINGREQ:
        return MQTT_OK;
    case MQTT_DISCONNECT:
        return decode_reason(r, pkt, r_left(r) > 0, why);
    case MQTT_AUTH:
        if (r_left(r) == 1)
            return fail(MQTT_ERR_MALFORMED, "AUTH without a property length", why);
        return decode_reason(r, pkt, r_left(r) > 0, why);
    case MQTT_CONNECT:
        return mqtt__decode_connect(r, pkt, why);
    case MQTT_SUBSCRIBE:
    case MQTT_UNSUBSCRIBE:
        return mqtt__decode_sub(r, pkt, why);
    default:
        return decode_with_id(r, pkt, why);
    }
}

/* What only the sender's side forbids: a client's PUBLISH carries no
 * subscription identifier (MQTT-3.3.4-6). */
static int check_from_client(const mqtt_packet *pkt, const char **why)
{
    mqtt_property id;
    if (pkt->type == MQTT_PUBLISH &&
        mqtt__prop_find(pkt->props, MQTT_PROP_SUBSCRIPTION_IDENTIFIER, &id))
        return fail(MQTT_ERR_PROTOCOL, "subscription identifier in a client's PUBLISH", why);
    return MQTT_OK;
}

/* Header and length checks; MQTT_OK when buf holds the whole packet. */
HOT int frame(const uint8_t *buf, size_t len, const mqtt_decode_opts *o, mqtt_fixed_header *h,
                 size_t *consumed, const char **why)
{
    size_t need = 0, total;
    int rc;
    if (buf == NULL) { /* then len is 0: a fixed header needs 2 bytes */
        *consumed = 2;
        return MQTT_ERR_INCOMPLETE;
    }
    if (len > 0 && (rc = check_first_byte(buf[0], o, why)) != MQTT_OK)
        return rc;
    rc = mqtt__fixed_header_inline(buf, len, h, &need, why);
    if (rc != MQTT_OK) {
        if (rc == MQTT_ERR_INCOMPLETE)
            *consumed = need;
        return rc;
    }
    total = h->header_len + h->remaining;
    /* Judged from the header alone so a huge packet is refused, not awaited. 0: no limit. */
    if (o->max_packet != 0 && total > o->max_packet)
        return fail(MQTT_ERR_TOO_LARGE, "the packet is larger than maximum_packet_size", why);
    if ((rc = check_remaining(h->type, h->remaining, is_v5(o), why)) != MQTT_OK)
        return rc;
    *consumed = total;
    return len < total ? MQTT_ERR_INCOMPLETE : MQTT_OK;
}

HOT int decode(const uint8_t *buf, size_t len, const mqtt_decode_opts *o, mqtt_packet *pkt,
               size_t *consumed, const char **why)
{
    const char *ignored = NULL;
    mqtt_fixed_header h;
    size_t total = 0;
    int rc;
    if (why == NULL)
        why = &ignored;
    if ((buf == NULL && len > 0) || o == NULL || pkt == NULL || consumed == NULL ||
        o->role > MQTT_ROLE_BROKER)
        return fail(MQTT_ERR_INVAL, "invalid argument", why);
    /* The fields of CONNECT and (UN)SUBSCRIBE come last and are set only for
     * those. A copy of a constant compiles to a few vector stores where
     * memset of this size becomes a slow `rep stos` on the receive path. */
    memcpy(pkt, &zero_packet, offsetof(mqtt_packet, entries));
    rc = frame(buf, len, o, &h, &total, why);
    if (rc == MQTT_ERR_INCOMPLETE)
        *consumed = total;
    if (rc != MQTT_OK)
        return rc;
    mqtt_reader r = {buf + h.header_len, h.remaining, 0};
    pkt->type = h.type;
    pkt->flags = h.flags;
    pkt->version = is_v5(o) ? MQTT_V5 : MQTT_V311;
    rc = decode_body(&r, pkt, why);
    if (rc == MQTT_OK && o->role == MQTT_ROLE_BROKER)
        rc = check_from_client(pkt, why);
    if (rc == MQTT_OK)
        *consumed = total;
    return rc;
}

int mqtt__decode_packet(const uint8_t *buf, size_t len, size_t max_packet, mqtt_packet *pkt,
                        size_t *consumed, const char **why)
{
    const mqtt_decode_opts o = {MQTT_V311, MQTT_ROLE_CLIENT, max_packet};
    return decode(buf, len, &o, pkt, consumed, why);
}

int mqtt__decode(const uint8_t *buf, size_t len, const mqtt_decode_opts *o, mqtt_packet *pkt,
                 size_t *consumed, const char **why)
{
    return decode(buf, len, o, pkt, consumed, why);
}
