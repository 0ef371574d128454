/*
 * Encodes session records into the outgoing buffer with the codec's
 * encoders: the packet's size first, one reserve, then the packet written in
 * place, so the payload goes from the record to the buffer in one copy. It
 * decides nothing about what is sent or when: the session does.
 */
#include "send.h"

/* The record's own packet: PUBLISH, SUBSCRIBE or UNSUBSCRIBE. */
static int send_packet(mqtt_buf *out, const mqtt_record *r)
{
    size_t size;
    switch (r->kind) {
    case MQTT_REC_PUBLISH:
        size = mqtt__publish_size(r->topic.len, r->payload.len, r->qos);
        break;
    case MQTT_REC_SUBSCRIBE:
        size = mqtt__subscribe_size(r->entries, r->entry_count);
        break;
    case MQTT_REC_UNSUBSCRIBE:
        size = mqtt__unsubscribe_size(r->entries, r->entry_count);
        break;
    default:
        size = 0;
        break;
    }
    if (size == 0)
        return MQTT_ERR_INVAL;
    int rc = mqtt__buf_reserve(out, size);
    if (rc != MQTT_OK)
        return rc;
    uint8_t *at = out->data + out->len;
    if (r->kind == MQTT_REC_PUBLISH)
        out->len += mqtt__encode_publish(at, r->topic.data, r->topic.len, r->payload.data,
                                         r->payload.len, r->qos, r->retain, r->dup,
                                         r->packet_id);
    else if (r->kind == MQTT_REC_SUBSCRIBE)
        out->len += mqtt__encode_subscribe(at, r->packet_id, r->entries, r->entry_count);
    else
        out->len += mqtt__encode_unsubscribe(at, r->packet_id, r->entries, r->entry_count);
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
