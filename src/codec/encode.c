/*
 * Codec encoding: writes every packet type under 3.1.1 or 5.0 into the
 * caller's buffer. Each packet has one body function run twice, first by a
 * counting writer (the size twin, and whether the packet can exist at all),
 * then by one that writes; an encoder writes nothing when its twin says 0.
 * The 3.1.1 entry points the client uses are thin wrappers at the end.
 */
#include "wire.h"

typedef void body_fn(mqtt_writer *w, const void *params, uint8_t version);

/* 0 (unset) means 3.1.1; anything but 4 and 5 cannot be encoded. */
static uint8_t level_of(uint8_t version)
{
    return version == 0 ? MQTT_V311 : version;
}

/* Runs the body on a counting writer: false when the packet cannot exist.
 * These three are inlined into each encoder with its body known, so the
 * counting pass folds to arithmetic and the writing pass to plain stores. */
MQTT__INLINE bool body_len(body_fn *body, const void *params, uint8_t version, size_t *rl)
{
    mqtt_writer w = {NULL, 0, true};
    version = level_of(version);
    w.ok = version == MQTT_V311 || version == MQTT_V5;
    body(&w, params, version);
    *rl = w.n;
    return w.ok && w.n <= MQTT_MAX_REMAINING;
}

/* Whole packet size for a body; 0 when it cannot be encoded. */
MQTT__INLINE size_t size_of(body_fn *body, const void *params, uint8_t version)
{
    size_t rl = 0;
    if (!body_len(body, params, version, &rl))
        return 0;
    return 1 + mqtt__varint_size((uint32_t)rl) + rl;
}

/* NOLINTNEXTLINE(readability-non-const-parameter): written through the writer */
MQTT__INLINE size_t encode(uint8_t *out, uint8_t first, body_fn *body, const void *params,
                     uint8_t version)
{
    size_t rl = 0;
    mqtt_writer w = {out, 0, true};
    if (out == NULL || !body_len(body, params, version, &rl))
        return 0;
    w_u8(&w, first);
    w_varint(&w, rl);
    body(&w, params, level_of(version));
    return w.n;
}

/* Properties exist under 5.0 only. Inlined: the common blocks, none or a
 * PUBLISH's topic alias alone, fold to a few stores in each pass. */
MQTT__INLINE void w_props_v(mqtt_writer *w, uint8_t version, const mqtt_property *p, size_t n,
                            uint8_t packet_type)
{
    if (version != MQTT_V5) {
        w->ok = w->ok && n == 0;
    } else if (n == 0 || (n == 1 && p != NULL && p->id == MQTT_PROP_TOPIC_ALIAS &&
                          packet_type == MQTT_PUBLISH)) {
        w->ok = w->ok && (n == 0 || (p->value >= 1 && p->value <= 0xFFFFu));
        w_u8(w, n ? 3u : 0u);
        if (n) {
            w_u8(w, MQTT_PROP_TOPIC_ALIAS);
            w_u16(w, p->value);
        }
    } else {
        /* A copy escapes instead of w, so the inlined writes keep w in registers. */
        mqtt_writer sub = *w;
        mqtt__w_props(&sub, p, n, packet_type);
        *w = sub;
    }
}

/* ---- CONNECT --------------------------------------------------------- */

static bool has_password(const mqtt_connect_params *p, uint8_t version)
{
    /* MQTT-3.1.2-22: no password without a user name under 3.1.1. */
    return p->password.data != NULL && (p->username.data != NULL || version == MQTT_V5);
}

static uint8_t connect_flags(const mqtt_connect_params *p, uint8_t version)
{
    unsigned f = 0;
    if (p->clean_session)
        f |= 0x02u;
    if (p->will) {
        f |= 0x04u | (unsigned)p->will_qos << 3;
        if (p->will_retain)
            f |= 0x20u;
    }
    if (has_password(p, version))
        f |= 0x40u;
    if (p->username.data != NULL)
        f |= 0x80u;
    return (uint8_t)f;
}

static void connect_body(mqtt_writer *w, const void *params, uint8_t version)
{
    const mqtt_connect_params *p = params;
    w_bytes(w, (const uint8_t *)"MQTT", 4);
    w_u8(w, version);
    w_u8(w, connect_flags(p, version));
    w_u16(w, p->keepalive);
    w_props_v(w, version, p->props, p->nprops, MQTT_CONNECT);
    w_string(w, p->client_id);
    if (p->will) {
        w->ok = w->ok && p->will_qos <= 2;
        w_props_v(w, version, p->will_props, p->will_nprops, MQTT_WILL_PROPERTIES);
        /* An empty will payload still takes its 2-byte zero length. */
        w_string(w, p->will_topic);
        w_string(w, p->will_payload);
    } else if (p->will_nprops > 0) {
        w->ok = false;
    }
    if (p->username.data != NULL)
        w_string(w, p->username);
    if (has_password(p, version))
        w_string(w, p->password);
}

size_t mqtt__connect_size(const mqtt_connect_params *p)
{
    return p == NULL ? 0 : size_of(connect_body, p, p->version);
}

size_t mqtt__encode_connect(uint8_t *out, const mqtt_connect_params *p)
{
    return p == NULL ? 0 : encode(out, MQTT_CONNECT, connect_body, p, p->version);
}

/* ---- PUBLISH --------------------------------------------------------- */

MQTT__INLINE void publish_body(mqtt_writer *w, const void *params, uint8_t version)
{
    const mqtt_publish_params *p = params;
    w->ok = w->ok && p->qos <= 2 && p->payload.len <= MQTT_MAX_REMAINING &&
            (p->topic.data != NULL || p->topic.len == 0);
    w_string(w, p->topic);
    if (p->qos > 0)
        w_u16(w, p->packet_id);
    w_props_v(w, version, p->props, p->nprops, MQTT_PUBLISH);
    w_raw(w, p->payload.data, p->payload.len);
}

static uint8_t publish_first(const mqtt_publish_params *p)
{
    unsigned first = MQTT_PUBLISH | (unsigned)(p->qos & 3u) << 1;
    /* MQTT-3.3.1-2: DUP must be 0 on QoS 0, whatever the caller asks. */
    first |= (p->dup && p->qos > 0 ? 0x08u : 0u) | (p->retain ? 0x01u : 0u);
    return (uint8_t)first;
}

/* Inlined into the 3.1.1 wrappers too: the client's publish path, where the
 * level is a constant and the properties vanish. */
MQTT__INLINE size_t publish_size(uint8_t version, const mqtt_publish_params *p)
{
    return p == NULL ? 0 : size_of(publish_body, p, version);
}

MQTT__INLINE size_t publish_encode(uint8_t *out, uint8_t version, const mqtt_publish_params *p)
{
    return p == NULL ? 0 : encode(out, publish_first(p), publish_body, p, version);
}

size_t mqtt__publish_size_v(uint8_t version, const mqtt_publish_params *p)
{
    return publish_size(version, p);
}

size_t mqtt__encode_publish_v(uint8_t *out, uint8_t version, const mqtt_publish_params *p)
{
    /* The client's 5.0 path, with the level a constant; a local copy of the
     * parameters, which the bytes written cannot alias. */
    if (p != NULL && version == MQTT_V5) {
        const mqtt_publish_params q = *p;
        return publish_encode(out, MQTT_V5, &q);
    }
    return publish_encode(out, version, p);
}

/* ---- acks, DISCONNECT, AUTH, PINGREQ, PINGRESP ------------------------ */

static void ack_body(mqtt_writer *w, const void *params, uint8_t version)
{
    const mqtt_ack_params *p = params;
    bool with_id = p->type >= MQTT_PUBACK && p->type <= MQTT_PUBCOMP;
    bool full = p->nprops > 0 || (p->type == MQTT_AUTH && p->reason_code != 0);
    if (p->type == MQTT_PINGREQ || p->type == MQTT_PINGRESP) {
        w->ok = w->ok && p->reason_code == 0 && p->nprops == 0;
        return;
    }
    w->ok = w->ok && (with_id || p->type == MQTT_DISCONNECT || p->type == MQTT_AUTH);
    if (with_id)
        w_u16(w, p->packet_id);
    if (version != MQTT_V5) {
        w->ok = w->ok && p->reason_code == 0 && p->nprops == 0 && p->type != MQTT_AUTH;
        return;
    }
    if (p->reason_code == 0 && !full)
        return;
    w->ok = w->ok && mqtt__reason_valid(p->reason_code, p->type);
    w_u8(w, p->reason_code);
    if (full)
        mqtt__w_props(w, p->props, p->nprops, p->type);
}

size_t mqtt__ack_size_v(uint8_t version, const mqtt_ack_params *p)
{
    return p == NULL ? 0 : size_of(ack_body, p, version);
}

size_t mqtt__encode_ack_v(uint8_t *out, uint8_t version, const mqtt_ack_params *p)
{
    if (p == NULL)
        return 0;
    return encode(out, (uint8_t)(p->type | (p->type == MQTT_PUBREL ? 0x02u : 0u)), ack_body, p,
                  version);
}

/* ---- SUBSCRIBE, UNSUBSCRIBE ------------------------------------------ */

/* 3.1.1: the QoS alone; 5.0: reserved bits 6-7 clear, retain handling 0..2. */
static uint8_t sub_options(mqtt_writer *w, const mqtt_sub_entry *e, uint8_t version)
{
    uint8_t o = e->qos;
    if (version == MQTT_V5)
        w->ok = w->ok && (o & 0xC0u) == 0 && MQTT_SUB_RETAIN_HANDLING(o) <= 2;
    else
        w->ok = w->ok && o <= 2;
    w->ok = w->ok && MQTT_SUB_QOS(o) <= 2;
    return o;
}

static void sub_body(mqtt_writer *w, const mqtt_sub_params *p, uint8_t version, uint8_t type)
{
    /* MQTT-3.8.3-3, 3.10.3-2: at least one filter. */
    w->ok = w->ok && p->e != NULL && p->n > 0;
    w_u16(w, p->packet_id);
    w_props_v(w, version, p->props, p->nprops, type);
    for (size_t i = 0; w->ok && i < p->n; i++) {
        w_string(w, p->e[i].filter);
        if (type == MQTT_SUBSCRIBE)
            w_u8(w, sub_options(w, &p->e[i], version));
        w->ok = w->ok && w->n <= MQTT_MAX_REMAINING;
    }
}

static void subscribe_body(mqtt_writer *w, const void *params, uint8_t version)
{
    sub_body(w, params, version, MQTT_SUBSCRIBE);
}

static void unsubscribe_body(mqtt_writer *w, const void *params, uint8_t version)
{
    sub_body(w, params, version, MQTT_UNSUBSCRIBE);
}

static body_fn *sub_body_of(uint8_t type)
{
    if (type == MQTT_SUBSCRIBE)
        return subscribe_body;
    return type == MQTT_UNSUBSCRIBE ? unsubscribe_body : NULL;
}

size_t mqtt__sub_size_v(uint8_t version, uint8_t type, const mqtt_sub_params *p)
{
    body_fn *body = sub_body_of(type);
    return p == NULL || body == NULL ? 0 : size_of(body, p, version);
}

size_t mqtt__encode_sub_v(uint8_t *out, uint8_t version, uint8_t type, const mqtt_sub_params *p)
{
    body_fn *body = sub_body_of(type);
    return p == NULL || body == NULL ? 0 : encode(out, type | 0x02u, body, p, version);
}

/* ---- CONNACK, SUBACK, UNSUBACK (what a broker sends) ------------------- */

static void reply_codes(mqtt_writer *w, const mqtt_reply_params *p, bool v5)
{
    w->ok = w->ok && p->codes.len > 0 && (p->codes.data != NULL || p->codes.len == 0);
    for (size_t i = 0; w->ok && i < p->codes.len; i++)
        w->ok = mqtt__code_ok(p->codes.data[i], p->type, v5);
    w_raw(w, p->codes.data, p->codes.len);
}

static void reply_body(mqtt_writer *w, const void *params, uint8_t version)
{
    const mqtt_reply_params *p = params;
    bool v5 = version == MQTT_V5;
    if (p->type == MQTT_CONNACK) {
        w->ok = w->ok && (v5 ? mqtt__reason_valid(p->reason_code, MQTT_CONNACK)
                             : p->reason_code <= 5) &&
                (!p->session_present || p->reason_code == 0);
        w_u8(w, p->session_present ? 1u : 0u);
        w_u8(w, p->reason_code);
        w_props_v(w, version, p->props, p->nprops, MQTT_CONNACK);
        return;
    }
    w->ok = w->ok && (p->type == MQTT_SUBACK || p->type == MQTT_UNSUBACK);
    w_u16(w, p->packet_id);
    w_props_v(w, version, p->props, p->nprops, p->type);
    if (p->type == MQTT_SUBACK || v5)
        reply_codes(w, p, v5);
    else
        w->ok = w->ok && p->codes.len == 0;
}

size_t mqtt__reply_size_v(uint8_t version, const mqtt_reply_params *p)
{
    return p == NULL ? 0 : size_of(reply_body, p, version);
}

size_t mqtt__encode_reply_v(uint8_t *out, uint8_t version, const mqtt_reply_params *p)
{
    return p == NULL ? 0 : encode(out, p->type, reply_body, p, version);
}

/* ---- the 3.1.1 entry points of the client ------------------------------ */

/* A size twin never reads the bytes: any non-NULL address stands for them. */
static const uint8_t unread[1];

size_t mqtt__publish_size(size_t topic_len, size_t payload_len, uint8_t qos)
{
    const mqtt_publish_params p = {{unread, topic_len}, {unread, payload_len}, qos, false,
                                   false, 0, NULL, 0};
    return publish_size(MQTT_V311, &p);
}

size_t mqtt__encode_publish(uint8_t *out, const uint8_t *topic, size_t topic_len,
                            const uint8_t *payload, size_t payload_len, uint8_t qos, bool retain,
                            bool dup, uint16_t packet_id)
{
    const mqtt_publish_params p = {{topic, topic_len}, {payload, payload_len}, qos, retain, dup,
                                   packet_id, NULL, 0};
    return publish_encode(out, MQTT_V311, &p);
}

size_t mqtt__encode_ack(uint8_t out[4], uint8_t type, uint16_t packet_id)
{
    const mqtt_ack_params p = {(uint8_t)(type & 0xF0u), packet_id, 0, NULL, 0};
    /* A 3.1.1 UNSUBACK has the same shape; it is a broker's reply. */
    const mqtt_reply_params u = {MQTT_UNSUBACK, packet_id, false, 0, NULL, 0, {NULL, 0}};
    if (p.type == MQTT_UNSUBACK)
        return mqtt__encode_reply_v(out, MQTT_V311, &u);
    return mqtt__encode_ack_v(out, MQTT_V311, &p);
}

size_t mqtt__encode_empty(uint8_t out[2], uint8_t type)
{
    const mqtt_ack_params p = {(uint8_t)(type & 0xF0u), 0, 0, NULL, 0};
    return mqtt__encode_ack_v(out, MQTT_V311, &p);
}

size_t mqtt__subscribe_size(const mqtt_sub_entry *e, size_t n)
{
    const mqtt_sub_params p = {0, e, n, NULL, 0};
    return mqtt__sub_size_v(MQTT_V311, MQTT_SUBSCRIBE, &p);
}

size_t mqtt__encode_subscribe(uint8_t *out, uint16_t packet_id, const mqtt_sub_entry *e, size_t n)
{
    const mqtt_sub_params p = {packet_id, e, n, NULL, 0};
    return mqtt__encode_sub_v(out, MQTT_V311, MQTT_SUBSCRIBE, &p);
}

size_t mqtt__unsubscribe_size(const mqtt_sub_entry *e, size_t n)
{
    const mqtt_sub_params p = {0, e, n, NULL, 0};
    return mqtt__sub_size_v(MQTT_V311, MQTT_UNSUBSCRIBE, &p);
}

size_t mqtt__encode_unsubscribe(uint8_t *out, uint16_t packet_id, const mqtt_sub_entry *e,
                                size_t n)
{
    const mqtt_sub_params p = {packet_id, e, n, NULL, 0};
    return mqtt__encode_sub_v(out, MQTT_V311, MQTT_UNSUBSCRIBE, &p);
}
