/*
 * The public calls' arguments: the versioned option structs (defaults, and
 * reading a caller's struct only as far as its struct_size), and messages,
 * subscriptions and property arrays checked against the protocol tables
 * before anything is queued, in the words mqtt_last_error() gives. Pure:
 * no lock, no client state.
 */
#include <string.h>

#include "client_internal.h"

static const char v311_only[] = "the client speaks MQTT 3.1.1";

static void options_defaults(mqtt_options *o)
{
    memset(o, 0, sizeof *o);
    o->struct_size = sizeof *o;
    o->clean_session = true;
    o->max_inflight = 20;
    o->max_queued = 100000;
    o->max_queued_bytes = 256u * 1024u * 1024u;
    o->max_event_bytes = 64u * 1024u * 1024u;
    o->reconnect = true;
    o->reconnect_min = 1.0;
    o->reconnect_max = 30.0;
    o->connect_timeout = 10.0;
    o->disconnect_timeout = 5.0;
    o->max_packet = (size_t)MQTT_MAX_REMAINING + 5;
    o->protocol = MQTT_V311;
}

int mqtt_options_init_v(mqtt_options *o, size_t size)
{
    mqtt_options d;
    options_defaults(&d);
    return mqtt__struct_init(o, size, &d, sizeof d, MQTT_OPTIONS_MIN_SIZE);
}

static void connect_options_defaults(mqtt_connect_options *o)
{
    memset(o, 0, sizeof *o);
    o->struct_size = sizeof *o;
    o->port = 1883;
    o->keepalive = 60;
}

int mqtt_connect_options_init_v(mqtt_connect_options *o, size_t size)
{
    mqtt_connect_options d;
    connect_options_defaults(&d);
    return mqtt__struct_init(o, size, &d, sizeof d, MQTT_CONNECT_OPTIONS_MIN_SIZE);
}

int mqtt__connect_options_read(mqtt_connect_options *dst, const mqtt_connect_options *src)
{
    mqtt__refusal_clear();
    connect_options_defaults(dst);
    int rc = mqtt__struct_read(dst, sizeof *dst, src, MQTT_CONNECT_OPTIONS_MIN_SIZE,
                               "connect options");
    if (rc != MQTT_OK)
        return rc;
    /* Fields past the caller's struct_size keep their defaults, also one the
     * size ends inside of. */
    size_t n = src->struct_size;
    if (n < offsetof(mqtt_connect_options, server_count))
        dst->servers = NULL;
    if (n < offsetof(mqtt_connect_options, proxy))
        dst->server_count = 0;
    if (n < offsetof(mqtt_connect_options, ws_headers))
        dst->proxy = NULL;
    if (n < offsetof(mqtt_connect_options, ws_header_count))
        dst->ws_headers = NULL;
    if (n < offsetof(mqtt_connect_options, follow_redirects))
        dst->ws_header_count = 0;
    if (n < sizeof *dst)
        dst->follow_redirects = false;
    return mqtt__servers_check(dst);
}

/* The name of the packet a property array is for, in messages. */
static const char *packet_word(int packet_type)
{
    return packet_type == MQTT_WILL_PROPERTIES ? "will" : mqtt_packet_name(packet_type);
}

int mqtt__check_props(const mqtt_property *p, size_t n, int packet_type, int protocol)
{
    size_t bad = 0;
    const char *why = NULL;
    if (n == 0)
        return MQTT_OK;
    if (mqtt__props_validate(p, n, (uint8_t)packet_type, &bad, &why) != MQTT_OK) {
        const char *name = p ? mqtt_property_name(p[bad].id) : NULL;
        if (!name)
            return mqtt__refuse(MQTT_ERR_INVAL, "%s properties: %s", packet_word(packet_type),
                                why);
        return mqtt__refuse(MQTT_ERR_INVAL, "%s property %s: %s", packet_word(packet_type), name,
                            why);
    }
    if (protocol == MQTT_V311)
        return mqtt__refuse(MQTT_ERR_INVAL, "%s properties need MQTT 5.0; %s",
                            packet_word(packet_type), v311_only);
    return MQTT_OK;
}

int mqtt__check_message(const mqtt_message *m, int protocol, bool will)
{
    const char *why = NULL;
    size_t max_payload = will ? 65535u : MQTT_MAX_PAYLOAD;
    if (!m)
        return mqtt__refuse(MQTT_ERR_INVAL, "message: NULL");
    if (mqtt__check_topic_name((const uint8_t *)m->topic, m->topic_len, &why) != MQTT_OK)
        return mqtt__refuse(MQTT_ERR_INVAL, "topic: %s", why);
    if (m->qos < 0 || m->qos > 2)
        return mqtt__refuse(MQTT_ERR_INVAL, "qos %d: must be 0, 1 or 2", m->qos);
    if (m->payload_len > max_payload)
        return mqtt__refuse(MQTT_ERR_INVAL, "payload: %zu bytes, more than %zu", m->payload_len,
                            max_payload);
    if (m->payload_len && !m->payload)
        return mqtt__refuse(MQTT_ERR_INVAL, "payload: NULL with payload_len %zu", m->payload_len);
    for (size_t i = 0; !will && m->props && i < m->prop_count; i++) {
        if (m->props[i].id == MQTT_PROP_SUBSCRIPTION_IDENTIFIER) /* MQTT-3.3.4-6 */
            return mqtt__refuse(MQTT_ERR_INVAL, "PUBLISH property subscription_identifier: "
                                                "property not allowed from a client");
    }
    return mqtt__check_props(m->props, m->prop_count, will ? MQTT_WILL_PROPERTIES : MQTT_PUBLISH,
                             protocol);
}

/* One subscription entry into its wire form; i names it in messages. */
static int check_entry(const mqtt_subscription *s, size_t i, bool unsub, int protocol,
                       mqtt_sub_entry *e)
{
    const char *why = NULL;
    if (mqtt__check_topic_filter((const uint8_t *)s->filter, s->filter_len, &why) != MQTT_OK)
        return mqtt__refuse(MQTT_ERR_INVAL, "filter %zu: %s", i + 1, why);
    e->filter.data = (const uint8_t *)s->filter;
    e->filter.len = s->filter_len;
    e->qos = 0;
    if (unsub)
        return MQTT_OK; /* the same array may serve both: UNSUBSCRIBE reads filters only */
    bool v5_options = s->no_local || s->retain_as_published || s->retain_handling != 0;
    if (s->qos < 0 || s->qos > 2)
        return mqtt__refuse(MQTT_ERR_INVAL, "filter %zu: qos %d must be 0, 1 or 2", i + 1,
                            s->qos);
    if (s->retain_handling < 0 || s->retain_handling > 2)
        return mqtt__refuse(MQTT_ERR_INVAL, "filter %zu: retain_handling %d must be 0, 1 or 2",
                            i + 1, s->retain_handling);
    if (v5_options && protocol == MQTT_V311)
        return mqtt__refuse(MQTT_ERR_INVAL,
                            "filter %zu: no_local, retain_as_published and retain_handling need "
                            "MQTT 5.0; %s",
                            i + 1, v311_only);
    e->qos = (uint8_t)((unsigned)s->qos | (s->no_local ? MQTT_SUB_NO_LOCAL : 0u) |
                       (s->retain_as_published ? MQTT_SUB_RETAIN_AS_PUBLISHED : 0u) |
                       (unsigned)s->retain_handling << 4);
    return MQTT_OK;
}

int mqtt__check_subscriptions(const mqtt_subscription *subs, size_t n, bool unsub, int protocol,
                              mqtt_sub_entry *e)
{
    for (size_t i = 0; i < n; i++) {
        int rc = check_entry(&subs[i], i, unsub, protocol, &e[i]);
        if (rc != MQTT_OK)
            return rc;
    }
    return MQTT_OK;
}

static int check_protocol(const mqtt_options *o)
{
    if (o->protocol != MQTT_V311 && o->protocol != MQTT_V5 && o->protocol != MQTT_PROTOCOL_AUTO)
        return mqtt__refuse(MQTT_ERR_INVAL,
                            "protocol %d: must be MQTT_V311, MQTT_V5 or MQTT_PROTOCOL_AUTO",
                            o->protocol);
    if (o->topic_alias < MQTT_ALIAS_AUTO || o->topic_alias > MQTT_ALIAS_MANUAL)
        return mqtt__refuse(MQTT_ERR_INVAL, "topic_alias %d: must be a MQTT_ALIAS_* value",
                            o->topic_alias);
    return mqtt__check_props(o->connect_props, o->connect_prop_count, MQTT_CONNECT, o->protocol);
}

static int check_client_id(const mqtt_options *o)
{
    if (o->client_id_len > 65535)
        return mqtt__refuse(MQTT_ERR_INVAL, "client_id: longer than 65535 bytes");
    if (o->client_id_len && !o->client_id)
        return mqtt__refuse(MQTT_ERR_INVAL, "client_id: NULL with client_id_len %zu",
                            o->client_id_len);
    if (o->client_id_len && !mqtt__utf8_valid((const uint8_t *)o->client_id, o->client_id_len))
        return mqtt__refuse(MQTT_ERR_INVAL, "client_id: not valid UTF-8");
    /* MQTT 5.0 lets the broker assign an id to a persistent session. */
    if (o->client_id_len == 0 && !o->clean_session && o->protocol == MQTT_V311)
        return mqtt__refuse(MQTT_ERR_INVAL, "client_id: empty needs clean_session");
    return MQTT_OK;
}

int mqtt__options_read(mqtt_options *dst, const mqtt_options *src)
{
    options_defaults(dst);
    if (!src)
        return MQTT_OK;
    int rc = mqtt__struct_read(dst, sizeof *dst, src, MQTT_OPTIONS_MIN_SIZE, "options");
    if (rc != MQTT_OK)
        return rc;
    /* Fields past the caller's struct_size keep their defaults, also one the
     * size ends inside of (a field ends where the next one starts). */
    size_t n = src->struct_size;
    if (n < offsetof(mqtt_options, connect_props))
        dst->protocol = MQTT_V311;
    if (n < offsetof(mqtt_options, connect_prop_count))
        dst->connect_props = NULL;
    if (n < offsetof(mqtt_options, topic_alias))
        dst->connect_prop_count = 0;
    if (n < offsetof(mqtt_options, store))
        dst->topic_alias = MQTT_ALIAS_AUTO;
    if (n < offsetof(mqtt_options, store_sync))
        dst->store = NULL;
    if (n < sizeof *dst)
        dst->store_sync = MQTT_SYNC_ALWAYS;
    rc = check_client_id(dst);
    if (rc == MQTT_OK && (dst->store_sync < MQTT_SYNC_ALWAYS || dst->store_sync > MQTT_SYNC_NEVER))
        rc = mqtt__refuse(MQTT_ERR_INVAL, "store_sync: must be MQTT_SYNC_ALWAYS, _BATCH or _NEVER");
    if (rc == MQTT_OK && dst->store && !dst->store[0])
        rc = mqtt__refuse(MQTT_ERR_INVAL, "store: an empty path");
    if (rc == MQTT_OK && (dst->reconnect_min <= 0 || dst->reconnect_max < dst->reconnect_min))
        rc = mqtt__refuse(MQTT_ERR_INVAL, "reconnect_min/reconnect_max: need 0 < min <= max");
    if (rc == MQTT_OK && dst->connect_timeout <= 0)
        rc = mqtt__refuse(MQTT_ERR_INVAL, "connect_timeout: must be above 0");
    return rc == MQTT_OK ? check_protocol(dst) : rc;
}
