/*
 * The send path: session records are encoded into the client's outgoing
 * buffer, where the loop's writer takes it, with the codec's encoders: the
 * packet's size first, one reserve, then the packet written in place, so the
 * payload goes from the record to the buffer in one copy. What is sent and
 * when is the session's to decide.
 */
#include "send.h"

/* The record's own packet: PUBLISH, SUBSCRIBE or UNSUBSCRIBE. */
static int send_packet(mqtt_buf *out, const mqtt_record *r)
{
    mqtt_bytes topic = mqtt__record_topic(r), payload = mqtt__record_payload(r);
    const mqtt_sub_entry *e = mqtt__record_entries(r);
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

int mqtt__send_record(mqtt_buf *out, const mqtt_record *r, mqtt_qos_action action)
{
    if (out == NULL || r == NULL)
        return MQTT_ERR_INVAL;
    switch (action) {
    case MQTT_QA_SEND:
    case MQTT_QA_RESEND:
        return send_packet(out, r);
    case MQTT_QA_PUBREL: {
        uint8_t b[4];
        return mqtt__buf_append(out, b, mqtt__encode_ack(b, MQTT_PUBREL, r->packet_id));
    }
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
        if (mqtt__send_record(&c->sh.out, r, action) != MQTT_OK)
            return -1;
        mqtt__session_sent(c->sh.session);
    }
    return was_empty && c->sh.out.len > 0;
}
