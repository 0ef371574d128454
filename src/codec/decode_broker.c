/*
 * Codec decoding of what only a client sends: CONNECT (3.1.1 or 5.0, by its
 * own protocol level), SUBSCRIBE and UNSUBSCRIBE. Used by the broker role
 * (tests, the fake broker). Same rules as decode.c: bounded reads, views
 * into the input, no allocation.
 */
#include "wire.h"

#define fail mqtt__fail

/* A two-byte length and a UTF-8 string. */
static int read_string(mqtt_reader *r, mqtt_bytes *s, const char *what, const char **why)
{
    if (!r_bytes(r, s))
        return fail(MQTT_ERR_MALFORMED, "string runs past the packet", why);
    if (!mqtt__utf8_valid(s->data, s->len))
        return fail(MQTT_ERR_MALFORMED, what, why);
    return MQTT_OK;
}

/* Protocol name and level, flags, keepalive: the variable header up to properties. */
static int connect_header(mqtt_reader *r, mqtt_packet *pkt, uint8_t *flags, const char **why)
{
    mqtt_connect_params *c = &pkt->connect;
    mqtt_bytes name = {NULL, 0};
    uint8_t level = 0;
    if (!r_bytes(r, &name) || name.len != 4 || memcmp(name.data, "MQTT", 4) != 0)
        return fail(MQTT_ERR_PROTOCOL, "protocol name not MQTT", why);
    if (!r_u8(r, &level) || (level != MQTT_V311 && level != MQTT_V5))
        return fail(MQTT_ERR_PROTOCOL, "unsupported protocol level", why);
    if (!r_u8(r, flags) || !r_u16(r, &c->keepalive))
        return fail(MQTT_ERR_MALFORMED, "CONNECT header runs past the packet", why);
    if ((*flags & 0x01u) != 0)
        return fail(MQTT_ERR_MALFORMED, "reserved CONNECT flag set", why);
    if ((*flags & 0x04u) == 0 && (*flags & 0x38u) != 0)
        return fail(MQTT_ERR_MALFORMED, "will QoS or retain without a will", why);
    if (((*flags >> 3) & 0x03u) == 3)
        return fail(MQTT_ERR_MALFORMED, "will QoS 3", why);
    if (level == MQTT_V311 && (*flags & 0xC0u) == 0x40u)
        return fail(MQTT_ERR_MALFORMED, "password without a user name", why);
    pkt->version = level;
    c->version = level;
    c->clean_session = (*flags & 0x02u) != 0;
    c->will = (*flags & 0x04u) != 0;
    c->will_qos = (uint8_t)((*flags >> 3) & 0x03u);
    c->will_retain = (*flags & 0x20u) != 0;
    return MQTT_OK;
}

static int connect_will(mqtt_reader *r, mqtt_packet *pkt, const char **why)
{
    mqtt_connect_params *c = &pkt->connect;
    const char *problem = NULL;
    int rc;
    if (pkt->version == MQTT_V5 &&
        (rc = mqtt__r_props(r, MQTT_WILL_PROPERTIES, &pkt->will_props, why)) != MQTT_OK)
        return rc;
    if (!r_bytes(r, &c->will_topic) || !r_bytes(r, &c->will_payload))
        return fail(MQTT_ERR_MALFORMED, "will runs past the packet", why);
    if (mqtt__check_topic_name(c->will_topic.data, c->will_topic.len, &problem) != MQTT_OK)
        return fail(MQTT_ERR_MALFORMED, problem, why);
    return MQTT_OK;
}

int mqtt__decode_connect(mqtt_reader *r, mqtt_packet *pkt, const char **why)
{
    mqtt_connect_params *c = &pkt->connect;
    uint8_t flags = 0;
    int rc;
    memset(c, 0, sizeof *c);
    pkt->will_props.data = NULL;
    pkt->will_props.len = 0;
    if ((rc = connect_header(r, pkt, &flags, why)) != MQTT_OK)
        return rc;
    if (pkt->version == MQTT_V5 &&
        (rc = mqtt__r_props(r, MQTT_CONNECT, &pkt->props, why)) != MQTT_OK)
        return rc;
    if ((rc = read_string(r, &c->client_id, "client identifier not valid UTF-8", why)) != MQTT_OK)
        return rc;
    if (c->will && (rc = connect_will(r, pkt, why)) != MQTT_OK)
        return rc;
    if ((flags & 0x80u) != 0 &&
        (rc = read_string(r, &c->username, "user name not valid UTF-8", why)) != MQTT_OK)
        return rc;
    if ((flags & 0x40u) != 0 && !r_bytes(r, &c->password))
        return fail(MQTT_ERR_MALFORMED, "password runs past the packet", why);
    return mqtt__check_end(r, why);
}

/* One entry: a filter and, for SUBSCRIBE, its options byte. */
static bool parse_entry(mqtt_reader *r, bool options, mqtt_sub_entry *e)
{
    e->qos = 0;
    return r_bytes(r, &e->filter) && (!options || r_u8(r, &e->qos));
}

static int check_entry(const mqtt_sub_entry *e, bool v5, const char **why)
{
    const char *problem = NULL;
    if (mqtt__check_topic_filter(e->filter.data, e->filter.len, &problem) != MQTT_OK)
        return fail(MQTT_ERR_MALFORMED, problem, why);
    if ((e->qos & (v5 ? 0xC0u : 0xFCu)) != 0)
        return fail(MQTT_ERR_MALFORMED, "reserved subscription option bits set", why);
    if (MQTT_SUB_QOS(e->qos) == 3)
        return fail(MQTT_ERR_MALFORMED, "subscription QoS 3", why);
    if (MQTT_SUB_RETAIN_HANDLING(e->qos) == 3)
        return fail(MQTT_ERR_PROTOCOL, "retain handling 3", why);
    if ((e->qos & MQTT_SUB_NO_LOCAL) != 0 &&
        mqtt_shared_filter_start((const char *)e->filter.data, e->filter.len) != 0)
        return fail(MQTT_ERR_PROTOCOL, "no local on a shared subscription", why);
    return MQTT_OK;
}

int mqtt__decode_sub(mqtt_reader *r, mqtt_packet *pkt, const char **why)
{
    bool options = pkt->type == MQTT_SUBSCRIBE;
    int rc;
    if (!r_u16(r, &pkt->packet_id))
        return fail(MQTT_ERR_MALFORMED, "packet id runs past the packet", why);
    if (pkt->packet_id == 0)
        return fail(MQTT_ERR_MALFORMED, "packet id 0", why);
    if (pkt->version == MQTT_V5 && (rc = mqtt__r_props(r, pkt->type, &pkt->props, why)) != MQTT_OK)
        return rc;
    if (r_left(r) == 0)
        return fail(MQTT_ERR_PROTOCOL, "no topic filters", why);
    pkt->entries.data = r->b + r->pos;
    pkt->entries.len = r_left(r);
    while (r_left(r) > 0) {
        mqtt_sub_entry e;
        if (!parse_entry(r, options, &e))
            return fail(MQTT_ERR_MALFORMED, "topic filter runs past the packet", why);
        if ((rc = check_entry(&e, pkt->version == MQTT_V5, why)) != MQTT_OK)
            return rc;
    }
    return MQTT_OK;
}

void mqtt__sub_iter_init(mqtt_sub_iter *it, const mqtt_packet *pkt)
{
    it->p = pkt->entries.data;
    it->end = pkt->entries.data == NULL ? NULL : pkt->entries.data + pkt->entries.len;
    it->options = pkt->type == MQTT_SUBSCRIBE;
}

bool mqtt__sub_next(mqtt_sub_iter *it, mqtt_sub_entry *e)
{
    mqtt_reader r = {it->p, (size_t)(it->end - it->p), 0};
    if (it->p == NULL || it->p >= it->end || !parse_entry(&r, it->options, e))
        return false;
    it->p += r.pos;
    return true;
}
