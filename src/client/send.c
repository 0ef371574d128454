/*
 * The send path: session records are encoded into the client's outgoing
 * buffer, where the loop's writer takes it, with the codec's encoders: the
 * packet's size first, one reserve, then the packet written in place, so the
 * payload goes from the record to the buffer in one copy. What is sent and
 * when is the session's to decide.
 */
#include "alloc.h"
#include "send.h"

/* The record's own packet under 3.1.1: PUBLISH, SUBSCRIBE or UNSUBSCRIBE. */
static int send_packet_v311(mqtt_buf *out, const mqtt_record *r, const mqtt_sub_entry *e)
{
    mqtt_bytes topic = mqtt__record_topic(r), payload = mqtt__record_payload(r);
    size_t size = 0;
    if (r->kind == MQTT_REC_PUBLISH)
        size = mqtt__publish_size(topic.len, payload.len, r->qos);
    else if (r->kind == MQTT_REC_SUBSCRIBE)
        size = mqtt__subscribe_size(e, r->entry_count);
    else if (r->kind == MQTT_REC_UNSUBSCRIBE)
        size = mqtt__unsubscribe_size(e, r->entry_count);
    if (size == 0)
        return MQTT_ERR_INVAL;
    int rc = mqtt__buf_reserve(out, size);
    if (rc != MQTT_OK)
        return rc;
    uint8_t *at = out->data + out->len;
    if (r->kind == MQTT_REC_PUBLISH)
        out->len += mqtt__encode_publish(at, topic.data, topic.len, payload.data, payload.len,
                                         r->qos, r->retain, r->dup, r->packet_id);
    else if (r->kind == MQTT_REC_SUBSCRIBE)
        out->len += mqtt__encode_subscribe(at, r->packet_id, e, r->entry_count);
    else
        out->len += mqtt__encode_unsubscribe(at, r->packet_id, e, r->entry_count);
    return MQTT_OK;
}

/* Under 3.1.1 ("auto" fell back) a subscription keeps its QoS alone. */
static int send_packet(mqtt_buf *out, const mqtt_record *r)
{
    const mqtt_sub_entry *e = mqtt__record_entries(r);
    bool v5 = false;
    for (size_t i = 0; r->kind == MQTT_REC_SUBSCRIBE && i < r->entry_count; i++)
        v5 = v5 || e[i].qos > 2;
    if (!v5)
        return send_packet_v311(out, r, e);
    mqtt_sub_entry *copy = mqtt__calloc(r->entry_count, sizeof *copy);
    if (!copy)
        return MQTT_ERR_NOMEM;
    for (size_t i = 0; i < r->entry_count; i++) {
        copy[i] = e[i];
        copy[i].qos = MQTT_SUB_QOS(e[i].qos);
    }
    int rc = send_packet_v311(out, r, copy);
    mqtt__free(copy);
    return rc;
}

/* MQTT 5.0 properties of a record as an array, with room for one more (the
 * topic alias decided at sending); a caller's alias is taken out into
 * *requested. Small sets live in the caller's stack array. */
#define PROPS_STACK 16
static mqtt_property *unpack_props(const mqtt_record *r, mqtt_property *stack, size_t *n,
                                   uint32_t *requested)
{
    mqtt_bytes block = mqtt__record_props(r);
    size_t have = mqtt__props_unpack(block, stack, PROPS_STACK - 1);
    mqtt_property *p = stack;
    if (have > PROPS_STACK - 1) {
        p = mqtt__calloc(have + 1, sizeof *p);
        if (!p)
            return NULL;
        mqtt__props_unpack(block, p, have);
    }
    size_t k = 0;
    for (size_t i = 0; i < have; i++) {
        if (p[i].id == MQTT_PROP_TOPIC_ALIAS)
            *requested = p[i].value;
        else
            p[k++] = p[i];
    }
    *n = k;
    return p;
}

/* A PUBLISH under 5.0: the alias is decided once room for the packet with
 * its topic and an alias is sure, so a table entry never outlives a failed
 * write. */
/* The record keeps message_expiry_interval as a deadline on the wall clock
 * (client.c), which a store keeps meaningful across a restart: it goes out as the interval that remains, and a message
 * never written that is past it is not sent at all. */
static int expiry_remaining(mqtt_property *p, size_t n, mqtt_qos_action action)
{
    for (size_t i = 0; i < n; i++) {
        if (p[i].id != MQTT_PROP_MESSAGE_EXPIRY_INTERVAL)
            continue;
        double now = mqtt__wall_now();
        if (now >= (double)p[i].value) {
            if (action == MQTT_QA_SEND)
                return MQTT_ERR_TIMEOUT;
            p[i].value = 0;
        } else {
            double left = (double)p[i].value - now;
            p[i].value = (uint32_t)left;
            p[i].value += (double)p[i].value < left; /* whole seconds, rounded up */
        }
    }
    return MQTT_OK;
}

/* pick: the alias the caller decided and checked under this lock hold, or
 * NULL to decide and check it here. */
static int publish_v5(mqtt_buf *out, mqtt_client *c, mqtt_publish_params pp, mqtt_property *p,
                      size_t n, uint32_t requested, const mqtt_alias_pick *pick)
{
    pp.props = p;
    p[n].id = MQTT_PROP_TOPIC_ALIAS;
    /* At most: the topic and an alias (3 bytes) both go. */
    size_t worst_props = mqtt__props_encode(NULL, p, n) + 3;
    size_t worst = mqtt__v5_publish_len(pp.topic.len, pp.payload.len, pp.qos, worst_props);
    if (worst == 0)
        return MQTT_ERR_INVAL;
    int rc = mqtt__buf_reserve(out, worst);
    if (rc != MQTT_OK)
        return rc;
    /* The broker's limit may have shrunk since the call checked it (a new
     * CONNACK), or the alias may have gone (least recently used): what goes
     * out is checked again, before the alias table changes. */
    mqtt_alias_pick here = pick ? *pick : mqtt__v5_alias_peek(c, pp.topic, requested);
    if (!pick) {
        size_t size = mqtt__v5_publish_len(here.with_topic ? pp.topic.len : 0, pp.payload.len,
                                           pp.qos, worst_props - (here.alias ? 0 : 3));
        if (c->sh.server.max_packet && size > c->sh.server.max_packet)
            return MQTT_ERR_TOO_LARGE;
    }
    uint16_t alias = mqtt__v5_alias_take(c, pp.topic, here);
    p[n].value = alias;
    pp.nprops = n + (alias != 0);
    if (alias && !here.with_topic)
        pp.topic.len = 0;
    out->len += mqtt__encode_publish_v(out->data + out->len, MQTT_V5, &pp);
    return MQTT_OK;
}

static int send_publish_v5(mqtt_buf *out, const mqtt_record *r, mqtt_client *c,
                           mqtt_property *p, size_t n, uint32_t requested)
{
    mqtt_publish_params pp = {mqtt__record_topic(r), mqtt__record_payload(r), r->qos, r->retain,
                              r->dup, r->packet_id, NULL, 0};
    return publish_v5(out, c, pp, p, n, requested, NULL);
}

int mqtt__send_message_v5(mqtt_buf *out, mqtt_client *c, const mqtt_message *m,
                          mqtt_alias_pick pick)
{
    mqtt_property stack[PROPS_STACK], *p = stack;
    if (m->prop_count > PROPS_STACK - 1) {
        p = mqtt__calloc(m->prop_count + 1, sizeof *p);
        if (!p)
            return MQTT_ERR_NOMEM;
    }
    size_t n = 0;
    uint32_t requested = 0;
    for (size_t i = 0; i < m->prop_count; i++) {
        if (m->props[i].id == MQTT_PROP_TOPIC_ALIAS)
            requested = m->props[i].value;
        else
            p[n++] = m->props[i];
    }
    mqtt_publish_params pp = {{(const uint8_t *)m->topic, m->topic_len},
                              {m->payload, m->payload_len}, 0, m->retain, false, 0, NULL, 0};
    int rc = publish_v5(out, c, pp, p, n, requested, &pick);
    if (p != stack)
        mqtt__free(p);
    return rc;
}

static int send_sub_v5(mqtt_buf *out, const mqtt_record *r, const mqtt_property *p, size_t n)
{
    uint8_t type = r->kind == MQTT_REC_SUBSCRIBE ? MQTT_SUBSCRIBE : MQTT_UNSUBSCRIBE;
    mqtt_sub_params sp = {r->packet_id, mqtt__record_entries(r), r->entry_count, p, n};
    size_t size = mqtt__sub_size_v(MQTT_V5, type, &sp);
    if (size == 0)
        return MQTT_ERR_INVAL;
    int rc = mqtt__buf_reserve(out, size);
    if (rc == MQTT_OK)
        out->len += mqtt__encode_sub_v(out->data + out->len, MQTT_V5, type, &sp);
    return rc;
}

static int send_packet_v5(mqtt_buf *out, const mqtt_record *r, mqtt_client *c,
                          mqtt_qos_action action)
{
    mqtt_property stack[PROPS_STACK];
    size_t n = 0;
    uint32_t requested = 0;
    mqtt_property *p = unpack_props(r, stack, &n, &requested);
    if (!p)
        return MQTT_ERR_NOMEM;
    int rc = r->kind == MQTT_REC_PUBLISH ? expiry_remaining(p, n, action) : MQTT_OK;
    if (rc == MQTT_OK)
        rc = r->kind == MQTT_REC_PUBLISH ? send_publish_v5(out, r, c, p, n, requested)
                                         : send_sub_v5(out, r, p, n);
    if (p != stack)
        mqtt__free(p);
    return rc;
}

static int send_pubrel(mqtt_buf *out, const mqtt_record *r)
{
    uint8_t b[4]; /* a success PUBREL is the same 4 bytes under both versions */
    return mqtt__buf_append(out, b, mqtt__encode_ack(b, MQTT_PUBREL, r->packet_id));
}

int mqtt__send_record(mqtt_buf *out, const mqtt_record *r, mqtt_qos_action action,
                      mqtt_client *c)
{
    if (out == NULL || r == NULL)
        return MQTT_ERR_INVAL;
    switch (action) {
    case MQTT_QA_SEND:
    case MQTT_QA_RESEND:
        if (c && c->sh.version == MQTT_V5)
            return send_packet_v5(out, r, c, action);
        return send_packet(out, r);
    case MQTT_QA_PUBREL:
        return send_pubrel(out, r);
    default:
        return MQTT_ERR_INVAL;
    }
}

int mqtt__pump(mqtt_client *c)
{
    bool was_empty = c->sh.out.len == 0;
    mqtt_qos_action action;
    const mqtt_record *r;
    while ((r = mqtt__session_next(c->sh.session, &action)) != NULL) {
        int rc = mqtt__send_record(&c->sh.out, r, action, c);
        uint64_t key = mqtt__persist_sending(c, r);
        /* Expired, or a QoS 0 record sent: freed by the session; the others
         * stay, in their new state. A restart that finds the state before
         * sending sends it again with the same id: a broker takes that as
         * the same message, so this change need not reach the disk first. */
        bool gone = rc == MQTT_ERR_TIMEOUT || rc == MQTT_ERR_TOO_LARGE ||
                    (rc == MQTT_OK && r->qos == 0);
        if (key && gone)
            mqtt__persist_forget(c, r);
        if (rc == MQTT_ERR_TIMEOUT || rc == MQTT_ERR_TOO_LARGE) {
            /* Past its message expiry, or over the broker's maximum packet
             * size now: 5.0 forbids sending it (MQTT-3.1.2-24). */
            if (rc == MQTT_ERR_TIMEOUT)
                c->sh.expired++;
            else
                mqtt__log(c, 2, "dropped mid %u: over the broker's maximum packet size",
                          r->packet_id);
            mqtt__session_expire(c->sh.session);
            mqtt__persist_sent(c, key, NULL, false);
            continue;
        }
        if (rc != MQTT_OK)
            return -1;
        bool first = action == MQTT_QA_SEND;
        mqtt__session_sent(c->sh.session);
        if (first || gone)
            mqtt__persist_sent(c, key, gone ? NULL : r, gone); /* QoS 0: at most once */
    }
    return was_empty && c->sh.out.len > 0;
}
