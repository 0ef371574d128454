/*
 * MQTT 5.0's part of the client: what a CONNACK announces and how the calls
 * follow it, the CONNECT's properties, and topic aliases both ways. The rest
 * of the client asks here and stays the same for 3.1.1.
 */
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "alloc.h"
#include "client_internal.h"

/* Outgoing aliases kept at most, whatever the broker allows: the lookup is a
 * scan, and a few dozen hot topics are what aliases pay for. */
#define ALIAS_SLOTS_MAX 128

int mqtt__v5_props_block(mqtt_buf *b, const mqtt_property *p, size_t n)
{
    b->len = 0;
    int rc = mqtt__buf_reserve(b, mqtt__props_encode(NULL, p, n));
    if (rc == MQTT_OK)
        b->len = mqtt__props_encode(b->data, p, n);
    return rc;
}

static mqtt_bytes buf_view(const mqtt_buf *b)
{
    return (mqtt_bytes){b->len ? b->data : NULL, b->len};
}

static uint32_t prop_u32(mqtt_bytes props, uint8_t id, uint32_t dflt)
{
    mqtt_property pr;
    return mqtt__prop_find(props, id, &pr) ? pr.value : dflt;
}

static void limits_default(server_limits *l)
{
    memset(l, 0, sizeof *l);
    l->receive_max = 65535;
    l->max_qos = 2;
    l->retain = l->wildcard = l->sub_ids = l->shared = true;
}

int mqtt__v5_connack(mqtt_client *c, const mqtt_packet *p)
{
    server_limits *l = &c->sh.server;
    mqtt_bytes pr = p->props;
    limits_default(l);
    c->sh.server_props.len = 0;
    c->sh.version = p->version == MQTT_V5 ? MQTT_V5 : MQTT_V311;
    if (p->version != MQTT_V5) {
        mqtt__session_set_window(c->sh.session, 0);
        return MQTT_OK;
    }
    l->max_packet = prop_u32(pr, MQTT_PROP_MAXIMUM_PACKET_SIZE, 0);
    l->receive_max = (uint16_t)prop_u32(pr, MQTT_PROP_RECEIVE_MAXIMUM, 65535);
    l->alias_max = (uint16_t)prop_u32(pr, MQTT_PROP_TOPIC_ALIAS_MAXIMUM, 0);
    l->max_qos = (uint8_t)prop_u32(pr, MQTT_PROP_MAXIMUM_QOS, 2);
    l->retain = prop_u32(pr, MQTT_PROP_RETAIN_AVAILABLE, 1) != 0;
    l->wildcard = prop_u32(pr, MQTT_PROP_WILDCARD_SUBSCRIPTION_AVAILABLE, 1) != 0;
    l->sub_ids = prop_u32(pr, MQTT_PROP_SUBSCRIPTION_IDENTIFIER_AVAILABLE, 1) != 0;
    l->shared = prop_u32(pr, MQTT_PROP_SHARED_SUBSCRIPTION_AVAILABLE, 1) != 0;
    mqtt__session_set_window(c->sh.session, l->receive_max);
    /* MQTT-3.2.2-21: the broker's keep alive replaces the client's. */
    c->io.keepalive = (uint16_t)prop_u32(pr, MQTT_PROP_SERVER_KEEP_ALIVE, c->io.keepalive);
    mqtt_property id;
    int rc = MQTT_OK;
    if (mqtt__prop_find(pr, MQTT_PROP_ASSIGNED_CLIENT_IDENTIFIER, &id)) {
        c->sh.assigned_id.len = 0;
        rc = mqtt__buf_append(&c->sh.assigned_id, id.data, id.len);
    }
    if (rc == MQTT_OK && pr.data)
        rc = mqtt__buf_append(&c->sh.server_props, pr.data, pr.len);
    return rc;
}

/* A 5.0 PUBLISH's size from its parts; 0 past the protocol's limit. */
size_t mqtt__v5_publish_len(size_t topic_len, size_t payload_len, int qos, size_t props_len)
{
    size_t rl = 2 + topic_len + (qos ? 2u : 0u) + mqtt__varint_size((uint32_t)props_len) +
                props_len + payload_len;
    return rl > MQTT_MAX_REMAINING ? 0 : 1 + mqtt__varint_size((uint32_t)rl) + rl;
}

/* A refusal the broker's announcements call for, with the code it would give. */
static int not_allowed(int reason, const char *what)
{
    mqtt__refusal_reason(reason);
    return mqtt__refuse(MQTT_ERR_NOT_ALLOWED, "%s: the broker announced 0x%02X %s", what,
                        (unsigned)reason, mqtt_reason_name(reason, 0));
}

bool mqtt__props_value(const mqtt_property *p, size_t n, uint8_t id, uint32_t *value)
{
    for (size_t i = 0; p && i < n; i++) {
        if (p[i].id == id) {
            *value = p[i].value;
            return true;
        }
    }
    return false;
}

/* MANUAL takes the caller's alias (*alias, 0 when none), within the
 * broker's maximum; the other modes decide aliases themselves. */
static int check_alias(const mqtt_client *c, const mqtt_message *m, uint32_t *alias_out)
{
    uint32_t alias = 0;
    *alias_out = 0;
    if (!mqtt__props_value(m->props, m->prop_count, MQTT_PROP_TOPIC_ALIAS, &alias))
        return MQTT_OK;
    *alias_out = alias;
    if (c->set.opt.topic_alias != MQTT_ALIAS_MANUAL)
        return mqtt__refuse(MQTT_ERR_INVAL,
                            "PUBLISH property topic_alias: needs options.topic_alias = manual");
    if (c->sh.version == MQTT_V5 && alias > c->sh.server.alias_max)
        return mqtt__refuse(MQTT_ERR_INVAL,
                            "PUBLISH property topic_alias: %u is above the broker's maximum %u",
                            (unsigned)alias, (unsigned)c->sh.server.alias_max);
    return MQTT_OK;
}

int mqtt__v5_check_publish(const mqtt_client *c, const mqtt_message *m, size_t props_len,
                           mqtt_alias_pick *pick)
{
    uint32_t requested;
    int rc = check_alias(c, m, &requested);
    if (rc != MQTT_OK || c->sh.version != MQTT_V5)
        return rc;
    const server_limits *l = &c->sh.server;
    /* The alias is decided first, so the size is what would really go out. */
    *pick = mqtt__v5_alias_peek(c, (mqtt_bytes){(const uint8_t *)m->topic, m->topic_len},
                                requested);
    size_t size = mqtt__v5_publish_len(pick->with_topic ? m->topic_len : 0, m->payload_len,
                                       m->qos, props_len + (pick->alias ? 3u : 0u));
    if ((uint8_t)m->qos > l->max_qos)
        return not_allowed(MQTT_RC_QOS_NOT_SUPPORTED, "qos");
    if (m->retain && !l->retain)
        return not_allowed(MQTT_RC_RETAIN_NOT_SUPPORTED, "retain");
    if (size == 0 || (l->max_packet && size > l->max_packet))
        return not_allowed(MQTT_RC_PACKET_TOO_LARGE, "message");
    return MQTT_OK;
}

static bool has_wildcard(const char *f, size_t len)
{
    return memchr(f, '+', len) != NULL || memchr(f, '#', len) != NULL;
}

int mqtt__v5_check_subscribe(const mqtt_client *c, const mqtt_subscription *subs, size_t n,
                             bool unsub, bool ids, size_t size)
{
    const server_limits *l = &c->sh.server;
    if (c->sh.version != MQTT_V5)
        return MQTT_OK;
    if (l->max_packet && size > l->max_packet)
        return not_allowed(MQTT_RC_PACKET_TOO_LARGE, unsub ? "unsubscribe" : "subscribe");
    if (unsub)
        return MQTT_OK;
    if (ids && !l->sub_ids)
        return not_allowed(MQTT_RC_SUBSCRIPTION_IDENTIFIERS_NOT_SUPPORTED,
                           "subscription_identifier");
    for (size_t i = 0; i < n; i++) {
        size_t start = mqtt_shared_filter_start(subs[i].filter, subs[i].filter_len);
        if (start > 0 && !l->shared)
            return not_allowed(MQTT_RC_SHARED_SUBSCRIPTIONS_NOT_SUPPORTED, "filter");
        if (!l->wildcard && has_wildcard(subs[i].filter + start, subs[i].filter_len - start))
            return not_allowed(MQTT_RC_WILDCARD_SUBSCRIPTIONS_NOT_SUPPORTED, "filter");
    }
    return MQTT_OK;
}

int mqtt__v5_connect_props(const mqtt_client *c, mqtt_property **out, size_t *n)
{
    mqtt_bytes block = buf_view(&c->sh.connect_props);
    mqtt_property given;
    size_t have = mqtt__props_unpack(block, NULL, 0);
    /* A persistent session lasts as under 3.1.1 unless the user said otherwise. */
    bool forever = !c->set.opt.clean_session &&
                   !mqtt__prop_find(block, MQTT_PROP_SESSION_EXPIRY_INTERVAL, &given);
    /* options.maximum_packet_size is announced too, unless the properties say. */
    bool limit = c->set.opt.max_packet < (size_t)MQTT_MAX_REMAINING + 5 &&
                 !mqtt__prop_find(block, MQTT_PROP_MAXIMUM_PACKET_SIZE, &given);
    *out = NULL;
    *n = have + forever + limit;
    if (*n == 0)
        return MQTT_OK;
    mqtt_property *a = mqtt__calloc(*n, sizeof *a);
    if (!a)
        return MQTT_ERR_NOMEM;
    mqtt__props_unpack(block, a, have);
    if (forever)
        a[have++] = (mqtt_property){.id = MQTT_PROP_SESSION_EXPIRY_INTERVAL, .value = UINT32_MAX};
    if (limit)
        a[have] = (mqtt_property){.id = MQTT_PROP_MAXIMUM_PACKET_SIZE,
                                  .value = (uint32_t)c->set.opt.max_packet};
    *out = a;
    return MQTT_OK;
}

bool mqtt__v5_receive_room(mqtt_client *c)
{
    mqtt_session_counts n;
    mqtt__session_counts(c->sh.session, &n);
    if (n.incoming < c->io.receive_max)
        return true;
    c->io.lost_reason = MQTT_RC_RECEIVE_MAXIMUM_EXCEEDED; /* MQTT-3.3.4-9 */
    return false;
}

int mqtt__v5_alias_in(mqtt_client *c, mqtt_packet *p, uint8_t *reason, const char **why)
{
    mqtt_property a;
    if (!mqtt__prop_find(p->props, MQTT_PROP_TOPIC_ALIAS, &a)) {
        if (p->topic.len > 0)
            return MQTT_OK;
        *reason = MQTT_RC_PROTOCOL_ERROR;
        *why = "PUBLISH without a topic or a topic alias";
        return MQTT_ERR_PROTOCOL;
    }
    if (a.value == 0 || a.value > c->io.alias_in_max) { /* MQTT-3.3.2-9, -10 */
        *reason = MQTT_RC_TOPIC_ALIAS_INVALID;
        *why = "topic alias 0 or above the maximum the client announced";
        return MQTT_ERR_PROTOCOL;
    }
    if (!c->io.alias_in)
        c->io.alias_in = mqtt__calloc(c->io.alias_in_max, sizeof *c->io.alias_in);
    if (!c->io.alias_in) {
        *why = "no memory for topic aliases";
        return MQTT_ERR_NOMEM;
    }
    mqtt_buf *slot = &c->io.alias_in[a.value - 1];
    if (p->topic.len > 0) {
        slot->len = 0;
        if (mqtt__buf_append(slot, p->topic.data, p->topic.len) != MQTT_OK) {
            *why = "no memory for topic aliases";
            return MQTT_ERR_NOMEM;
        }
    } else if (slot->len == 0) {
        *reason = MQTT_RC_PROTOCOL_ERROR;
        *why = "a topic alias the broker never set";
        return MQTT_ERR_PROTOCOL;
    }
    p->topic = (mqtt_bytes){slot->data, slot->len};
    return MQTT_OK;
}

/* The slot topic occupies, or the one to give it: a free slot, else the
 * least recently used. */
static size_t alias_slot_for(const mqtt_client *c, mqtt_bytes topic, size_t slots, bool *known)
{
    size_t victim = 0;
    for (size_t i = 0; c->sh.alias_out && i < slots; i++) {
        const alias_slot *s = &c->sh.alias_out[i];
        if (s->topic && s->len == topic.len && memcmp(s->topic, topic.data, topic.len) == 0) {
            *known = true;
            return i;
        }
        const alias_slot *v = &c->sh.alias_out[victim];
        if (v->topic && (!s->topic || s->used < v->used))
            victim = i;
    }
    *known = false;
    return victim;
}

static bool alias_set(alias_slot *s, mqtt_bytes topic)
{
    char *copy = mqtt__malloc(topic.len ? topic.len : 1);
    if (!copy)
        return false;
    memcpy(copy, topic.data, topic.len);
    mqtt__free(s->topic);
    s->topic = copy;
    s->len = (uint16_t)topic.len;
    return true;
}

/* Slots the mode uses on this connection: 0 when no alias goes out. */
static size_t alias_slots(const mqtt_client *c, uint32_t requested)
{
    size_t max = c->sh.server.alias_max;
    if (c->sh.version != MQTT_V5 || c->set.opt.topic_alias == MQTT_ALIAS_OFF)
        return 0;
    if (c->set.opt.topic_alias == MQTT_ALIAS_MANUAL)
        return requested == 0 || requested > max ? 0 : max;
    return max < ALIAS_SLOTS_MAX ? max : ALIAS_SLOTS_MAX;
}

/* The slot the alias would take (slots > 0) and whether the broker knows topic there. */
static size_t alias_lookup(const mqtt_client *c, mqtt_bytes topic, uint32_t requested,
                           size_t slots, bool *known)
{
    if (c->set.opt.topic_alias != MQTT_ALIAS_MANUAL)
        return alias_slot_for(c, topic, slots, known);
    const alias_slot *s = c->sh.alias_out ? &c->sh.alias_out[requested - 1] : NULL;
    *known = s && s->topic && s->len == topic.len && memcmp(s->topic, topic.data, topic.len) == 0;
    return requested - 1;
}

mqtt_alias_pick mqtt__v5_alias_peek(const mqtt_client *c, mqtt_bytes topic, uint32_t requested)
{
    size_t slots = alias_slots(c, requested);
    bool known = false;
    if (slots == 0)
        return (mqtt_alias_pick){0, true};
    size_t i = alias_lookup(c, topic, requested, slots, &known);
    return (mqtt_alias_pick){(uint16_t)(i + 1), !known};
}

uint16_t mqtt__v5_alias_take(mqtt_client *c, mqtt_bytes topic, mqtt_alias_pick pick)
{
    if (pick.alias == 0)
        return 0;
    if (!c->sh.alias_out) {
        size_t slots = alias_slots(c, pick.alias);
        c->sh.alias_out = mqtt__calloc(slots, sizeof(alias_slot));
        if (!c->sh.alias_out)
            return 0;
        c->sh.alias_count = (uint16_t)slots;
    }
    alias_slot *s = &c->sh.alias_out[pick.alias - 1];
    if (pick.with_topic && !alias_set(s, topic))
        return 0;
    s->used = ++c->sh.alias_tick;
    return pick.alias;
}

void mqtt__v5_alias_reset(mqtt_client *c)
{
    for (size_t i = 0; c->sh.alias_out && i < c->sh.alias_count; i++)
        mqtt__free(c->sh.alias_out[i].topic);
    mqtt__free(c->sh.alias_out);
    c->sh.alias_out = NULL;
    c->sh.alias_count = 0;
    for (size_t i = 0; c->io.alias_in && i < c->io.alias_in_max; i++)
        mqtt__buf_free(&c->io.alias_in[i]);
    mqtt__free(c->io.alias_in);
    c->io.alias_in = NULL;
}

/* Texts that end a connection outlive the handler that made them. */
static _Thread_local char why_text[256];

static void broker_disconnect(mqtt_client *c, const mqtt_packet *p, const char **why)
{
    const char *name = mqtt_reason_name(p->reason_code, MQTT_DISCONNECT);
    mqtt_property ref, rs;
    int n = snprintf(why_text, sizeof why_text, "the broker disconnected: %s (0x%02X)",
                     name ? name : "unknown reason", (unsigned)p->reason_code);
    if (n > 0 && (size_t)n < sizeof why_text &&
        mqtt__prop_find(p->props, MQTT_PROP_REASON_STRING, &rs))
        n += snprintf(why_text + n, sizeof why_text - (size_t)n, ": %.*s", (int)rs.len,
                      (const char *)rs.data);
    if (n > 0 && (size_t)n < sizeof why_text &&
        mqtt__prop_find(p->props, MQTT_PROP_SERVER_REFERENCE, &ref))
        snprintf(why_text + n, sizeof why_text - (size_t)n, "; server reference %.*s",
                 (int)ref.len, (const char *)ref.data);
    c->io.lost_reason = p->reason_code;
    c->io.lost_props = p->props;
    c->io.lost_from_broker = true;
    *why = why_text;
}

int mqtt__v5_handle(mqtt_client *c, const mqtt_packet *p, const char **why)
{
    if (p->type == MQTT_DISCONNECT) {
        broker_disconnect(c, p, why);
        return MQTT_ERR_CLOSED;
    }
    if (p->type == MQTT_AUTH) {
        mqtt_event *ev = mqtt__event_ack(MQTT_EV_AUTH, 0, p);
        if (!ev) {
            *why = "no memory to queue an event or a reply";
            return MQTT_ERR_NOMEM;
        }
        mqtt__event_push(c, ev);
        return MQTT_OK;
    }
    *why = p->type == MQTT_CONNACK ? "unexpected second CONNACK" : "unexpected packet type";
    c->io.lost_reason = MQTT_RC_PROTOCOL_ERROR;
    return MQTT_ERR_PROTOCOL;
}

/* The reason code 5.0 gives a broker's fault the client found. */
static int fault_reason(const mqtt_client *c, int status)
{
    if (c->io.lost_reason >= 0)
        return c->io.lost_reason;
    if (status == MQTT_ERR_MALFORMED)
        return MQTT_RC_MALFORMED_PACKET;
    if (status == MQTT_ERR_TOO_LARGE)
        return MQTT_RC_PACKET_TOO_LARGE;
    return status == MQTT_ERR_PROTOCOL ? MQTT_RC_PROTOCOL_ERROR : -1;
}

void mqtt__v5_answer_fault(mqtt_client *c, int status)
{
    if (c->io.version != MQTT_V5 || status == MQTT_ERR_CLOSED || !c->io.tr)
        return;
    int reason = fault_reason(c, status);
    c->io.lost_reason = reason;
    /* Best effort, never blocking, after the replies already made (whole
     * packets); not while the writer is inside a packet, or the broker
     * would read it as the rest of that one. */
    if (reason < 0 || c->sh.wpos != c->sh.wbuf.len)
        return;
    mqtt_ack_params a = {MQTT_DISCONNECT, 0, (uint8_t)reason, NULL, 0};
    uint8_t b[3];
    size_t n = mqtt__encode_ack_v(b, MQTT_V5, &a);
    if (mqtt__buf_append(&c->sh.out, b, n) == MQTT_OK)
        (void)c->io.tr->ops->write(c->io.tr, c->sh.out.data, c->sh.out.len);
}

size_t mqtt__v5_disconnect_short(const mqtt_client *c, uint8_t out[3])
{
    bool v5 = c->io.version == MQTT_V5;
    if (v5 && c->sh.disconnect_props.len > 0)
        return 0;
    /* Under 3.1.1 ("auto" fell back) a DISCONNECT has no reason code. */
    mqtt_ack_params a = {MQTT_DISCONNECT, 0, v5 ? c->sh.disconnect_reason : 0, NULL, 0};
    return mqtt__encode_ack_v(out, v5 ? MQTT_V5 : MQTT_V311, &a);
}

/* An ack-shaped packet's size under the broker's maximum packet size: the
 * reason string and user properties are left out when they would take it
 * over (MQTT-3.14.2-3/4 for DISCONNECT, MQTT-3.15.2-2/3 for AUTH), a->props
 * then pointing into *owned (the caller frees it). 0 when it cannot exist. */
static size_t fit_to_broker(const mqtt_client *c, mqtt_ack_params *a, mqtt_property **owned)
{
    *owned = NULL;
    size_t size = mqtt__ack_size_v(MQTT_V5, a);
    uint32_t max = c->sh.server.max_packet;
    if (size == 0 || max == 0 || size <= max || a->nprops == 0)
        return size;
    mqtt_property *keep = mqtt__calloc(a->nprops, sizeof *keep);
    if (!keep)
        return size; /* the packet as it is: the broker's refusal beats losing the call */
    size_t n = 0;
    for (size_t i = 0; i < a->nprops; i++)
        if (a->props[i].id != MQTT_PROP_REASON_STRING && a->props[i].id != MQTT_PROP_USER_PROPERTY)
            keep[n++] = a->props[i];
    *owned = keep;
    a->props = keep;
    a->nprops = n;
    return mqtt__ack_size_v(MQTT_V5, a);
}

int mqtt__v5_disconnect_packet(const mqtt_client *c, mqtt_buf *b)
{
    mqtt_property stack[16], *p = stack;
    mqtt_bytes block = {c->sh.disconnect_props.data, c->sh.disconnect_props.len};
    size_t n = mqtt__props_unpack(block, stack, 16);
    if (n > 16) {
        p = mqtt__calloc(n, sizeof *p);
        if (!p)
            return MQTT_ERR_NOMEM;
        mqtt__props_unpack(block, p, n);
    }
    mqtt_ack_params a = {MQTT_DISCONNECT, 0, c->sh.disconnect_reason, p, n};
    uint8_t version = c->io.version == MQTT_V5 ? MQTT_V5 : MQTT_V311;
    mqtt_property *fitted = NULL;
    size_t size = version == MQTT_V5 ? fit_to_broker(c, &a, &fitted) : mqtt__ack_size_v(version, &a);
    int rc = size ? mqtt__buf_reserve(b, size) : MQTT_ERR_INVAL;
    if (rc == MQTT_OK)
        b->len += mqtt__encode_ack_v(b->data + b->len, version, &a);
    mqtt__free(fitted);
    if (p != stack)
        mqtt__free(p);
    return rc;
}

size_t mqtt__v5_props_len(const mqtt_message *m)
{
    size_t n = mqtt__props_encode(NULL, m->props, m->prop_count);
    uint32_t alias;
    /* The caller's alias is the client's to send or not (3 bytes: id, value). */
    return mqtt__props_value(m->props, m->prop_count, MQTT_PROP_TOPIC_ALIAS, &alias) ? n - 3 : n;
}


/* ---- the public MQTT 5.0 calls ------------------------------------------ */

static int check_v5_call(const mqtt_client *c, const char *what)
{
    if (c->set.opt.protocol == MQTT_V311)
        return mqtt__refuse(MQTT_ERR_INVAL, "%s: needs MQTT 5.0; the client speaks MQTT 3.1.1",
                            what);
    return MQTT_OK;
}

int mqtt_client_disconnect(mqtt_client *c)
{
    return mqtt_client_disconnect_v(c, 0, NULL, 0);
}

int mqtt_client_disconnect_v(mqtt_client *c, int reason_code, const mqtt_property *props,
                             size_t prop_count)
{
    if (mqtt__foreign(c))
        return MQTT_ERR_STATE;
    mqtt__refusal_clear();
    int rc = MQTT_OK;
    if (reason_code < 0 || reason_code > 255 ||
        !mqtt__reason_valid((uint8_t)reason_code, MQTT_DISCONNECT))
        rc = mqtt__refuse(MQTT_ERR_INVAL, "reason code %d: not a DISCONNECT reason code",
                          reason_code);
    if (rc == MQTT_OK && reason_code != 0)
        rc = check_v5_call(c, "a DISCONNECT reason code");
    if (rc == MQTT_OK)
        rc = mqtt__check_props(props, prop_count, MQTT_DISCONNECT, c->set.opt.protocol);
    if (rc != MQTT_OK)
        return rc;
    uint32_t expiry = 0;
    mqtt__props_value(props, prop_count, MQTT_PROP_SESSION_EXPIRY_INTERVAL, &expiry);
    pthread_mutex_lock(&c->mu);
    /* 3.14.2.2.2: a session that was to end with the connection cannot be kept now. */
    if (expiry > 0 && c->sh.connect_expiry_zero) {
        pthread_mutex_unlock(&c->mu);
        return mqtt__refuse(MQTT_ERR_INVAL,
                            "DISCONNECT property session_expiry_interval: the connection's "
                            "CONNECT asked for 0, so it must stay 0 (MQTT 5.0 3.14.2.2.2)");
    }
    c->sh.disconnect_reason = (uint8_t)reason_code;
    rc = mqtt__v5_props_block(&c->sh.disconnect_props, props, prop_count);
    pthread_mutex_unlock(&c->mu);
    return rc == MQTT_OK ? mqtt__disconnect(c) : rc;
}

int mqtt_client_protocol(mqtt_client *c)
{
    if (mqtt__foreign(c))
        return 0;
    pthread_mutex_lock(&c->mu);
    int v = c->sh.version;
    pthread_mutex_unlock(&c->mu);
    return v;
}

int mqtt_client_set_connect_properties(mqtt_client *c, const mqtt_property *props,
                                       size_t prop_count)
{
    if (mqtt__foreign(c))
        return MQTT_ERR_STATE;
    mqtt__refusal_clear();
    int rc = mqtt__check_props(props, prop_count, MQTT_CONNECT, c->set.opt.protocol);
    if (rc != MQTT_OK)
        return rc;
    pthread_mutex_lock(&c->mu);
    rc = mqtt__v5_props_block(&c->sh.connect_props, props, prop_count);
    pthread_mutex_unlock(&c->mu);
    return rc;
}

int mqtt_client_server_properties(mqtt_client *c, uint8_t *buf, size_t cap, size_t *len)
{
    if (mqtt__foreign(c))
        return MQTT_ERR_STATE;
    pthread_mutex_lock(&c->mu);
    size_t n = c->sh.server_props.len;
    if (n <= cap && n)
        memcpy(buf, c->sh.server_props.data, n);
    pthread_mutex_unlock(&c->mu);
    if (len)
        *len = n;
    return n <= cap ? MQTT_OK : MQTT_ERR_NOMEM;
}

bool mqtt_properties_next(const uint8_t *block, size_t len, size_t *pos, mqtt_property *out)
{
    if (!block || !pos || !out || *pos >= len)
        return false;
    mqtt_prop_iter it = {block + *pos, block + len};
    if (!mqtt__prop_next(&it, out))
        return false;
    *pos = (size_t)(it.p - block);
    return true;
}

size_t mqtt_client_id(mqtt_client *c, char *buf, size_t cap)
{
    if (mqtt__foreign(c))
        return 0;
    pthread_mutex_lock(&c->mu);
    const mqtt_buf *id = c->sh.assigned_id.len ? &c->sh.assigned_id : &c->set.client_id;
    size_t n = id->len;
    if (buf && cap)
        memcpy(buf, id->data, n < cap ? n : cap);
    pthread_mutex_unlock(&c->mu);
    return n;
}

int mqtt_client_auth(mqtt_client *c, int reason_code, const mqtt_property *props,
                     size_t prop_count)
{
    if (mqtt__foreign(c))
        return MQTT_ERR_STATE;
    mqtt__refusal_clear();
    int rc = check_v5_call(c, "AUTH");
    if (rc == MQTT_OK && reason_code != MQTT_RC_CONTINUE_AUTHENTICATION &&
        reason_code != MQTT_RC_RE_AUTHENTICATE)
        rc = mqtt__refuse(MQTT_ERR_INVAL, "AUTH reason code %d: must be 0x18 or 0x19",
                          reason_code);
    if (rc == MQTT_OK)
        rc = mqtt__check_props(props, prop_count, MQTT_AUTH, MQTT_V5);
    if (rc != MQTT_OK)
        return rc;
    mqtt_ack_params a = {MQTT_AUTH, 0, (uint8_t)reason_code, props, prop_count};
    mqtt_property *fitted = NULL;
    pthread_mutex_lock(&c->mu);
    size_t size = fit_to_broker(c, &a, &fitted);
    bool live = c->sh.state == ST_CONNECTED || c->sh.state == ST_CONNECTING;
    bool wake = live && c->sh.out.len == 0;
    rc = !live ? MQTT_ERR_NO_CONN : size ? mqtt__buf_reserve(&c->sh.out, size) : MQTT_ERR_INVAL;
    if (rc == MQTT_OK)
        c->sh.out.len += mqtt__encode_ack_v(c->sh.out.data + c->sh.out.len, MQTT_V5, &a);
    pthread_mutex_unlock(&c->mu);
    mqtt__free(fitted);
    if (rc == MQTT_OK && wake)
        mqtt__wake(c);
    return rc;
}
